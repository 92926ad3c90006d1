"""The descriptors an exec joins its task's cgroups through, kept open for the tasks that
ran an exec most recently.

Opening a task's eight v1 `tasks` files took 0.15 ms of every exec's Start. Kept open they
cost a descriptor and about 0.5 KiB of kernel memory each (eight per task on v1, one on v2),
so the cache holds at most a quarter of the agent's descriptor limit, and never more than
1,024. A task's are closed before its cgroup is removed: an open file would keep the
removed cgroup alive in the kernel."""

from __future__ import annotations

import os
import resource
from collections import OrderedDict

from agent.cgroups.base import Cgroup

MAX_FDS = 1024


def default_budget() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_FDS
    return min(MAX_FDS, soft // 4)


class JoinCache:
    def __init__(self, max_fds: int | None = None):
        self.max_fds = default_budget() if max_fds is None else max_fds
        self.fds_open = 0
        # id(cgroup) -> (cgroup, tasks-file fds, directory fd); the cgroup is held so that
        # its id cannot be reused by another while the entry lives.
        self._open: OrderedDict[int, tuple[Cgroup, list[int], int | None]] = OrderedDict()

    def files(self, cgroup: Cgroup) -> tuple[list[int], int | None]:
        """The cgroup's join descriptors. They stay the cache's: the caller must not close
        them, and uses them before it next awaits (a later call may close them)."""
        entry = self._open.get(id(cgroup))
        if entry is not None:
            self._open.move_to_end(id(cgroup))
            return entry[1], entry[2]
        fds, dir_fd = cgroup.join_files()
        self._open[id(cgroup)] = entry = (cgroup, fds, dir_fd)
        self.fds_open += _count(entry)
        # The entry just made stays, even alone over the budget: its caller is about to
        # send these descriptors.
        while self.fds_open > self.max_fds and len(self._open) > 1:
            self._close(self._open.popitem(last=False)[1])
        return fds, dir_fd

    def drop(self, cgroup: Cgroup) -> None:
        entry = self._open.pop(id(cgroup), None)
        if entry is not None:
            self._close(entry)

    def close(self) -> None:
        while self._open:
            self._close(self._open.popitem()[1])

    def __len__(self) -> int:
        return len(self._open)

    def _close(self, entry: tuple[Cgroup, list[int], int | None]) -> None:
        self.fds_open -= _count(entry)
        _cgroup, fds, dir_fd = entry
        for fd in fds + ([dir_fd] if dir_fd is not None else []):
            os.close(fd)


def _count(entry: tuple[Cgroup, list[int], int | None]) -> int:
    return len(entry[1]) + (entry[2] is not None)
