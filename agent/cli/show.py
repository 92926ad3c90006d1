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
