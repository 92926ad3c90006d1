"""cgroup statistics of many tasks in one native call, as containerd's Metrics messages.

`read_many` returns, per task, the serialized `io.containerd.cgroups.v1.Metrics` (v1 hosts)
or `io.containerd.cgroups.v2.Metrics` (v2 hosts): the bytes go straight into a
`google.protobuf.Any` with `V1_TYPE_URL` / `V2_TYPE_URL` (no `type.googleapis.com/` prefix,
as containerd writes them) and on into `types.Metric.data`. The C reader (`_native/cgstats/`)
opens and parses the cgroup files and encodes the message itself, for the whole batch with
the GIL released and the tasks shared out to a few threads.

What is read, with containerd/cgroups v1.0.4's meaning (so `ctr task metrics` shows the same
numbers it shows against containerd):

- v1, per controller directory given: hugetlb (usage, max usage, failcnt per page size),
  pids (current; limit, "max" as 0), cpu (cpuacct.usage, cpuacct.stat user/system converted
  from USER_HZ ticks to ns, cpuacct.usage_percpu, cpu.stat throttling; `cpu` and its `usage`
  are always set because ctr dereferences them), memory (every memory.stat field incl.
  total_*, and usage/limit/max/failcnt for memory, memsw, kmem and kmem.tcp, the four entries
  always set), blkio (the CFQ *_recursive files, else the throttle files, with device names
  from /proc/partitions) and memory.oom_control.
- v2, one directory: pids ("max" as 2**64-1), cpu.stat, memory.stat plus memory.current/max
  and memory.swap.current/max ("max" as 2**64-1), io.stat, hugetlb.<size>.current/max and
  memory.events. Absent files read as zeros, as in containerd; the cpu section is filled
  from cpu.stat even when the cpu controller is not enabled (containerd leaves it at zero).

A task whose cgroup is gone (it ended and was cleaned up: any of its directories is missing,
or vanishes during the read) gives None in its place; any other failure raises
`CgroupStatsError` (an OSError: errno plus the file and the step) for the whole call. So pass
directories only for the controllers the host mounts.

Cost: every file is an open, a read and a close; a full v1 task is ~26 files in 5 directories
and a v2 task ~14 files in one, and the kernel's side of those syscalls is >90% of the time
(see benchmarks/bench_cgstats.py for the figures).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence

from agent.native._cgstats import V1_CONTROLLERS as _V1_INDEX
from agent.native._cgstats import CgroupStatsError, read_v1, read_v2

__all__ = [
    "V1_CONTROLLERS",
    "V1_TYPE_URL",
    "V2_TYPE_URL",
    "CgroupStatsError",
    "hugepage_sizes",
    "read_many",
    "type_url",
]

V1_TYPE_URL = "io.containerd.cgroups.v1.Metrics"
V2_TYPE_URL = "io.containerd.cgroups.v2.Metrics"

HUGEPAGES_DIR = "/sys/kernel/mm/hugepages"

# The v1 controllers the reader looks at.
V1_CONTROLLERS = frozenset(_V1_INDEX)

Path = str | bytes | os.PathLike


def type_url(version: int) -> str:
    """The Any type URL of the Metrics message `read_many(version, ...)` returns."""
    if version == 1:
        return V1_TYPE_URL
    if version == 2:
        return V2_TYPE_URL
    raise ValueError(f"cgroup version must be 1 or 2, not {version!r}")


def _size_name(size: int) -> str:
    # containerd's units.CustomSize("%g%s", size, 1024, B..PB); for the power-of-two sizes
    # hugepages come in it is also the kernel's name in hugetlb.<size>.* files.
    units = ("B", "KB", "MB", "GB", "TB", "PB")
    value, i = float(size), 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:g}{units[i]}"


@functools.cache
def hugepage_sizes(hugepages_dir: str = HUGEPAGES_DIR) -> tuple[str, ...]:
    """The host's huge page sizes as the hugetlb cgroup files name them ("2MB", "1GB"), in
    the order containerd lists them (by the sysfs directory name); () when there are none."""
    try:
        names = sorted(os.listdir(hugepages_dir))
    except OSError:
        return ()
    sizes = []
    for name in names:
        m = re.fullmatch(r"hugepages-(\d+)kB", name)
        if m:
            sizes.append(_size_name(int(m.group(1)) * 1024))
    return tuple(sizes)


def read_many(
    version: int,
    dirs_list: Sequence[Mapping[str, Path]] | Sequence[Path],
    *,
    hugetlb_sizes: Sequence[str] | None = None,
    threads: int = 0,
) -> list[bytes | None]:
    """Serialized cgroups Metrics for each task of `dirs_list`, in order (None: gone).

    version 1: each item maps a v1 controller to the task's directory in that hierarchy
    ({"memory": "/sys/fs/cgroup/memory/taskagent/ns/id", "cpu": ..., ...}); the reader uses
    memory, cpu, cpuacct, pids, blkio and hugetlb and ignores other keys, and a controller
    left out is left out of the message. version 2: each item is the task's directory.

    `hugetlb_sizes` defaults to the host's (`hugepage_sizes()`); `threads` 0 lets the reader
    choose (up to 4, about one per 64 tasks, never more than the CPUs online).
    """
    if threads < 0:
        raise ValueError("threads must be >= 0")
    sizes = hugepage_sizes() if hugetlb_sizes is None else tuple(hugetlb_sizes)
    if version == 1:
        tasks = [d if isinstance(d, dict) else dict(d) for d in dirs_list]
        return read_v1(tasks, sizes, threads)
    if version == 2:
        return read_v2(list(dirs_list), sizes, threads)
    raise ValueError(f"cgroup version must be 1 or 2, not {version!r}")
