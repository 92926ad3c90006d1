"""When garbage collection runs: a background task on the event loop.

- After deletions (of content, images, leases or their resources, containers) and updates
  of records whose labels or target hold references: the metadata database tells us
  through temporary SQLite triggers on this connection, so stores owned by other parts of
  the agent need no hooks. The collection runs `schedule_delay` after
  the first deletion, so a burst of deletions costs one pass, and never sooner after the
  previous pass than the pause threshold allows (as containerd: with an average pass of
  `t`, the next one waits `t / pause_threshold - t`, keeping collection under that share
  of the time).
- Periodically, every `interval`, so leases that expire with nothing deleted are acted on.
- On request: `schedule_and_wait()` (Leases.Delete and Images.Delete with `sync`) starts a
  pass at once and returns its stats when a pass that began after the call ends."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agent.errors import Unknown
from agent.gc.collector import Collector, Stats
from agent.metadata.db import MetadataDB

log = logging.getLogger(__name__)

# Tables whose deletions, and updates, can leave content without a reference.
DELETES_WATCHED = ("content_info", "images", "leases", "lease_resources", "containers")
UPDATES_WATCHED = ("content_info", "images", "containers")


class GCScheduler:
    def __init__(self, collector: Collector, *, pause_threshold: float = 0.02,
                 schedule_delay: float = 0.1, startup_delay: float = 0.1,
                 interval: float = 60.0):
        self.collector = collector
        # containerd bounds the threshold to (0, 0.5] so collection cannot take over.
        self.pause_threshold = min(max(pause_threshold, 0.0), 0.5)
        self.schedule_delay = max(schedule_delay, 0.0)
        self.startup_delay = max(startup_delay, 0.0)
        self.interval = max(interval, 0.001)
        self.collections = 0
        self.last_stats: Stats | None = None
        self._total_time = 0.0
        self._last_end = 0.0
        self._dirty_since: float | None = None
        self._waiters: list[asyncio.Future] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def watch(self, db: MetadataDB) -> None:
        """Mark the collector dirty whenever a watched row is deleted or updated."""
        db.conn.create_function("agent_gc_changed", 0, self._changed)
        watched = [("DELETE", t) for t in DELETES_WATCHED] + [("UPDATE", t) for t in UPDATES_WATCHED]
        for event, table in watched:
            db.conn.execute(
                f"CREATE TEMP TRIGGER IF NOT EXISTS agent_gc_{event.lower()}_{table} "
                f"AFTER {event} ON main.{table} BEGIN SELECT agent_gc_changed(); END"
            )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gc-scheduler")

    def mark_dirty(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
            self._wake.set()

    async def schedule_and_wait(self) -> Stats:
        """Collect now; return the stats of a pass that started after this call."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake.set()
        return await fut

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(Unknown("the garbage collector stopped"))

    def _changed(self) -> None:
        # Called from inside SQLite on the loop thread, once per changed row.
        if not self.collector.sweeping:
            self.mark_dirty()

    def _pause_gap(self) -> float:
        if not self.collections or self.pause_threshold == 0.0:
            return 0.0
        average = self._total_time / self.collections
        return average / self.pause_threshold - average

    def _due(self, periodic: float) -> float:
        if self._waiters:
            return time.monotonic()
        due = periodic
        if self._dirty_since is not None:
            due = min(due, max(self._dirty_since + self.schedule_delay,
                               self._last_end + self._pause_gap()))
        return due

    async def _run(self) -> None:
        periodic = time.monotonic() + self.startup_delay
        while True:
            wait = self._due(periodic) - time.monotonic()
            if wait > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
                continue
            await self._collect()
            periodic = time.monotonic() + self.interval

    async def _collect(self) -> None:
        waiters, self._waiters = self._waiters, []
        self._dirty_since = None
        try:
            stats = await self.collector.collect()
        except Exception as e:
            log.exception("garbage collection failed")
            self._last_end = time.monotonic() + 1.0  # containerd retries a second later
            _settle(waiters, error=Unknown(f"garbage collection failed: {e}"))
            return
        self._last_end = time.monotonic()
        self.collections += 1
        self._total_time += stats.elapsed
        self.last_stats = stats
        log.debug("garbage collected in %.3f ms: %s", stats.elapsed * 1000, stats)
        _settle(waiters, result=stats)


def _settle(waiters: list[asyncio.Future], result: Any = None,
            error: BaseException | None = None) -> None:
    for fut in waiters:
        if fut.done():  # the caller went away
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
