"""The descriptors an exec joins its task's cgroups through, kept open for the tasks that
ran an exec most recently.

Opening a task's eight v1 `tasks` files took 0.15 ms of every exec's Start. Kept open they
cost about 0.5 KiB of kernel memory and one descriptor each, so only the last `capacity`
tasks keep theirs. A task's are closed before its cgroup is removed: an open file would keep
the removed cgroup alive in the kernel."""

from __future__ import annotations

import os
from collections import OrderedDict

from agent.cgroups.base import Cgroup

CAPACITY = 128


class JoinCache:
    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        # id(cgroup) -> (cgroup, tasks-file fds, directory fd); the cgroup is held so that
        # its id cannot be reused by another while the entry lives.
        self._open: OrderedDict[int, tuple[Cgroup, list[int], int | None]] = OrderedDict()

    def files(self, cgroup: Cgroup) -> tuple[list[int], int | None]:
        """The cgroup's join descriptors. They stay the cache's: the caller must not close
        them."""
        entry = self._open.get(id(cgroup))
        if entry is not None:
            self._open.move_to_end(id(cgroup))
            return entry[1], entry[2]
        fds, dir_fd = cgroup.join_files()
        self._open[id(cgroup)] = (cgroup, fds, dir_fd)
        while len(self._open) > self.capacity:
            _close(self._open.popitem(last=False)[1])
        return fds, dir_fd

    def drop(self, cgroup: Cgroup) -> None:
        entry = self._open.pop(id(cgroup), None)
        if entry is not None:
            _close(entry)

    def close(self) -> None:
        while self._open:
            _close(self._open.popitem()[1])

    def __len__(self) -> int:
        return len(self._open)


def _close(entry: tuple[Cgroup, list[int], int | None]) -> None:
    _cgroup, fds, dir_fd = entry
    for fd in fds + ([dir_fd] if dir_fd is not None else []):
        os.close(fd)
