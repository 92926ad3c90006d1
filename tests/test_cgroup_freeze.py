"""A freeze that does not complete in time is undone and reported."""

from __future__ import annotations

import asyncio

import pytest

from agent.cgroups.base import Cgroup
from agent.errors import FailedPrecondition


class StuckCgroup(Cgroup):
    """A cgroup whose tasks never finish freezing (one stuck in the kernel, say)."""

    version = 1

    def __init__(self):
        super().__init__("stuck")
        self.writes: list[bool] = []

    def _freeze_write(self, frozen):
        self.writes.append(frozen)

    def freeze_state(self):
        return "FREEZING" if self.writes and self.writes[-1] else "THAWED"

    def create(self, resources): ...
    def join_files(self): ...
    def apply(self, resources, *, update=False): ...
    def pids(self): return []
    def exists(self): return True
    def _rmdirs(self): ...
    def memory_usage(self): return 0
    def stat_dirs(self): return {}
    def freezer_dir(self): return ""


def test_freeze_times_out_and_thaws():
    cg = StuckCgroup()
    with pytest.raises(FailedPrecondition) as e:
        asyncio.run(cg.freeze(timeout=0.05))
    assert "did not complete" in str(e.value) and "thawed again" in str(e.value)
    assert cg.writes[0] is True and cg.writes[-1] is False
    assert cg.freeze_state() == "THAWED"
