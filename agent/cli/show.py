"""Formatting for the client commands."""

from __future__ import annotations

import datetime
import signal as signals
from typing import Any

from agent.api.containerd.events import container_pb2, task_pb2 as task_events  # noqa: F401
from agent.api.containerd.types.task import task_pb2
from agent.api.runc import options_pb2


def table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("    ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def status(value: int) -> str:
    return task_pb2.Status.Name(value)


def process_info(p: Any) -> str:
    if p.info.type_url.endswith("ProcessDetails"):
        return options_pb2.ProcessDetails.FromString(p.info.value).exec_id
    return "-"


def signal_number(name: str) -> int:
    if name.isdigit():
        return int(name)
    name = name.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise SystemExit(f"taskagent: unknown signal {name}") from None


def envelope(env: Any) -> str:
    at = datetime.datetime.fromtimestamp(env.timestamp.seconds + env.timestamp.nanos / 1e9,
                                         datetime.timezone.utc)
    return f"{at.isoformat()} {env.namespace} {env.topic} {_event_text(env.event)}"


def _event_text(any_msg: Any) -> str:
    from google.protobuf import json_format, symbol_database

    try:
        cls = symbol_database.Default().GetSymbol(any_msg.type_url)
        msg = cls.FromString(any_msg.value)
        return json_format.MessageToJson(msg, indent=None)
    except Exception:
        return any_msg.type_url


def _decode_metric(m: Any):
    from agent.api.cgroups.v1 import metrics_pb2 as v1
    from agent.api.cgroups.v2 import metrics_pb2 as v2

    if m.data.type_url.endswith("cgroups.v1.Metrics"):
        return 1, v1.Metrics.FromString(m.data.value)
    return 2, v2.Metrics.FromString(m.data.value)


def metric_summary(m: Any) -> dict[str, float]:
    version, d = _decode_metric(m)
    if version == 1:
        return {"memory": d.memory.usage.usage, "limit": d.memory.usage.limit,
                "cpu_seconds": d.cpu.usage.total / 1e9, "pids": d.pids.current}
    return {"memory": d.memory.usage, "limit": d.memory.usage_limit,
            "cpu_seconds": d.cpu.usage_usec / 1e6, "pids": d.pids.current}


def metric_rows(m: Any) -> list[tuple[str, Any]]:
    version, d = _decode_metric(m)
    if version == 1:
        return [("memory.usage_in_bytes", d.memory.usage.usage),
                ("memory.limit_in_bytes", d.memory.usage.limit),
                ("memory.max_usage_in_bytes", d.memory.usage.max),
                ("memory.stat.cache", d.memory.cache), ("memory.stat.rss", d.memory.rss),
                ("cpuacct.usage", d.cpu.usage.total),
                ("cpuacct.usage_percpu", list(d.cpu.usage.per_cpu)),
                ("pids.current", d.pids.current), ("pids.limit", d.pids.limit)]
    return [("memory.current", d.memory.usage), ("memory.max", d.memory.usage_limit),
            ("memory.swap.current", d.memory.swap_usage), ("cpu.usage_usec", d.cpu.usage_usec),
            ("cpu.user_usec", d.cpu.user_usec), ("cpu.system_usec", d.cpu.system_usec),
            ("pids.current", d.pids.current), ("pids.max", d.pids.limit)]


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)
