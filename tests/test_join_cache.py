"""The descriptors execs join their task's cgroups through: kept for the most recent tasks
only, and closed when the task goes, so that no removed cgroup stays pinned."""

from __future__ import annotations

import os

from exec_support import container, run_exec
from grpc_helpers import needs_root
from helpers import run

from agent.cgroups.join_cache import JoinCache
from agent.client import Client


class FakeCgroup:
    """Opens /dev/null where a cgroup would open its tasks files."""

    def __init__(self) -> None:
        self.opened = 0

    def join_files(self) -> tuple[list[int], int | None]:
        self.opened += 1
        return [os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC) for _ in range(2)], None


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_kept_for_the_most_recent_and_closed_when_evicted_or_dropped():
    cache = JoinCache(max_fds=4)  # two of these cgroups
    a, b, c = FakeCgroup(), FakeCgroup(), FakeCgroup()
    fa, _ = cache.files(a)
    assert cache.files(a) == (fa, None) and a.opened == 1  # the same descriptors again
    fb, _ = cache.files(b)
    cache.files(a)  # a is now the most recent, b the oldest
    fc, _ = cache.files(c)
    assert len(cache) == 2
    assert not any(map(_is_open, fb)) and all(map(_is_open, fa + fc))
    fb, _ = cache.files(b)  # opened again when needed; a, now the oldest, goes
    assert b.opened == 2 and len(cache) == 2
    assert not any(map(_is_open, fa)) and all(map(_is_open, fb + fc))
    cache.drop(c)
    assert not any(map(_is_open, fc)) and len(cache) == 1
    cache.drop(c)  # dropping what is not there is fine
    cache.close()
    assert len(cache) == 0 and not any(map(_is_open, fb))


def test_the_newest_entry_stays_even_alone_over_the_budget():
    cache = JoinCache(max_fds=1)
    a, b = FakeCgroup(), FakeCgroup()
    fa, _ = cache.files(a)
    assert all(map(_is_open, fa)) and cache.fds_open == 2
    fb, _ = cache.files(b)  # a goes; b, just opened for its caller, stays
    assert not any(map(_is_open, fa)) and all(map(_is_open, fb)) and len(cache) == 1
    cache.close()
    assert cache.fds_open == 0


@needs_root
def test_a_deleted_task_leaves_no_descriptor_into_its_cgroup(agent, rootfs):
    def cgroup_fds() -> list[str]:
        out = []
        for fd in os.listdir(f"/proc/{agent.proc.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{agent.proc.pid}/fd/{fd}")
            except OSError:
                continue
            if f"/{agent.cgroup_parent}/test/j1" in target:
                out.append(target)
        return out

    async def body():
        async with Client(agent.address, "test") as c:
            async with container(c, "j1", rootfs):
                status, _, _, _ = await run_exec(c, "j1", "e1", ["/bin/true"])
                assert status == 0
                held = cgroup_fds()
                # v1: a `tasks` file per hierarchy; v2: the cgroup's directory
                assert held and all(t.endswith(("/test/j1/tasks", "/test/j1")) for t in held)
            assert cgroup_fds() == []

    run(body())
