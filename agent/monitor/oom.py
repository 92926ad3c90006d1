"""The task monitor: one `/tasks/oom` per OOM kill in a task's memory cgroup.

A notification only says "look": on v1 the memory.oom_control eventfd (registered through
cgroup.event_control), on v2 an inotify IN_MODIFY on memory.events. What is published is
the increase of the kernel's `oom_kill` counter, so each kill gives exactly one event and
spurious wake-ups (cgroup removal signals the v1 eventfd too) give none."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from agent.api.containerd.events import task_pb2 as ev
from agent.native import inotify
from agent.runtime.task import Task, TaskMonitor

log = logging.getLogger(__name__)

RECHECK_DELAYS = (0.002, 0.01, 0.05, 0.2, 1.0)


def oom_kill_count(path: str) -> int | None:
    """The `oom_kill` line of memory.oom_control (v1) or memory.events (v2)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)  # a few short lines
        finally:
            os.close(fd)
    except OSError:
        return None
    for line in data.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"oom_kill":
            return int(value)
    return 0


@dataclass
class Watch:
    task: Task
    counter_path: str
    seen: int
    eventfd: int = -1  # v1
    wd: int = -1       # v2


class OomMonitor(TaskMonitor):
    def __init__(self, publisher):
        self.publisher = publisher
        self.loop = asyncio.get_event_loop()
        self.watches: dict[int, Watch] = {}  # id(task) -> watch
        self.by_wd: dict[int, Watch] = {}
        self.inotify_fd = -1

    def monitor(self, task: Task, labels: dict[str, str] | None = None) -> None:
        cgroup = getattr(task, "cgroup", None)
        if cgroup is None or id(task) in self.watches:
            return
        try:
            if cgroup.version == 1:
                watch = self._watch_v1(task, cgroup.oom_control_path())
            else:
                watch = self._watch_v2(task, cgroup.memory_events_path())
        except OSError as e:
            log.warning("cannot watch task %s for OOM kills: %s", getattr(task, "id", "?"), e)
            return
        if watch is not None:
            self.watches[id(task)] = watch
            log.debug("watching %s for OOM kills at %s", task.id, watch.counter_path)

    def _watch_v1(self, task: Task, oom_control: str) -> Watch | None:
        seen = oom_kill_count(oom_control)
        if seen is None:
            return None
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        control = os.open(oom_control, os.O_RDONLY | os.O_CLOEXEC)
        try:
            event_control = os.path.join(os.path.dirname(oom_control), "cgroup.event_control")
            fd = os.open(event_control, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, f"{efd} {control}".encode())
            finally:
                os.close(fd)
        except OSError:
            os.close(efd)
            raise
        finally:
            os.close(control)
        watch = Watch(task, oom_control, seen, eventfd=efd)
        self.loop.add_reader(efd, self._on_eventfd, watch)
        return watch

    def _watch_v2(self, task: Task, memory_events: str) -> Watch | None:
        seen = oom_kill_count(memory_events)
        if seen is None:
            return None  # no memory controller in this tree
        if self.inotify_fd < 0:
            self.inotify_fd = inotify.init()
            self.loop.add_reader(self.inotify_fd, self._on_inotify)
        wd = inotify.add_watch(self.inotify_fd, memory_events, inotify.IN_MODIFY)
        watch = Watch(task, memory_events, seen, wd=wd)
        self.by_wd[wd] = watch
        return watch

    def _on_eventfd(self, watch: Watch) -> None:
        try:
            os.eventfd_read(watch.eventfd)
        except BlockingIOError:
            return
        if not self._check(watch):
            # v1 notifies when the cgroup runs out of memory, just before the kill is counted.
            for delay in RECHECK_DELAYS:
                self.loop.call_later(delay, self._check, watch)

    def _on_inotify(self) -> None:
        for wd, _mask in inotify.read_events(self.inotify_fd):
            watch = self.by_wd.get(wd)
            if watch is not None:
                self._check(watch)

    def _check(self, watch: Watch) -> bool:
        """Publish one event per new kill; True when there were any."""
        count = oom_kill_count(watch.counter_path)
        if count is None or count <= watch.seen:
            return False
        task = watch.task
        for _ in range(count - watch.seen):
            self.publisher.publish(task.namespace, "/tasks/oom", ev.TaskOOM(container_id=task.id))
        watch.seen = count
        return True

    def before_exit(self, task: Task) -> None:
        """Called as a task's init exits, before `/tasks/exit`: a kill whose notification
        is still on its way is reported first."""
        watch = self.watches.get(id(task))
        if watch is not None:
            self._check(watch)

    def stop(self, task: Task) -> None:
        watch = self.watches.pop(id(task), None)
        if watch is None:
            return
        if watch.eventfd >= 0:
            self.loop.remove_reader(watch.eventfd)
            os.close(watch.eventfd)
        if watch.wd >= 0:
            self.by_wd.pop(watch.wd, None)
            inotify.rm_watch(self.inotify_fd, watch.wd)

    def close(self) -> None:
        for watch in list(self.watches.values()):
            self.stop(watch.task)
        if self.inotify_fd >= 0:
            self.loop.remove_reader(self.inotify_fd)
            os.close(self.inotify_fd)
            self.inotify_fd = -1
