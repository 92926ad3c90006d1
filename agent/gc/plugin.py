"""Registers the garbage collector (`io.containerd.gc.v1.scheduler`).

Its instance is the `GCScheduler`, which offers `schedule_and_wait()` to the services that
delete with `sync`. Durations in the config are seconds, or strings such as "100ms",
"60s", "5m"."""

from __future__ import annotations

import re

from agent import plugin
from agent.gc.collector import Collector
from agent.gc.scheduler import GCScheduler

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)\Z")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(value: object, key: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"gc config {key} = {value!r} is not a duration (e.g. \"100ms\", \"60s\")")


def _init(ic: plugin.InitContext) -> GCScheduler:
    db = ic.get(plugin.METADATA)
    cfg = ic.config
    scheduler = GCScheduler(
        Collector(db, ic.get(plugin.CONTENT)),
        pause_threshold=float(cfg["pause_threshold"]),
        schedule_delay=seconds(cfg["schedule_delay"], "schedule_delay"),
        startup_delay=seconds(cfg["startup_delay"], "startup_delay"),
        interval=seconds(cfg["interval"], "interval"),
    )
    scheduler.watch(db)
    scheduler.start()
    ic.exports.update({
        "PauseThreshold": str(scheduler.pause_threshold),
        "ScheduleDelay": f"{scheduler.schedule_delay}s",
        "StartupDelay": f"{scheduler.startup_delay}s",
        "Interval": f"{scheduler.interval}s",
    })
    return scheduler


plugin.register(plugin.Registration(
    type=plugin.GC,
    id="scheduler",
    requires=(plugin.METADATA, plugin.CONTENT),
    init=_init,
    config={
        # Largest share of time collection may take (containerd's default and bound 0.5).
        "pause_threshold": 0.02,
        # Wait after the first deletion, so a burst of deletions costs one pass.
        "schedule_delay": "100ms",
        "startup_delay": "100ms",
        # A pass at least this often, so expired leases are acted on.
        "interval": "60s",
    },
    close=lambda scheduler: scheduler.close(),
))
