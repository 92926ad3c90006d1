"""What cgroup hierarchies this host has: v1 controllers (each at its mount point) and/or a
v2 tree. Read once from /proc/self/mountinfo."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# v1 controllers a task cgroup is made in (those the host mounts).
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                  "hugetlb")
# The ones without which tasks cannot be managed on a v1 host.
V1_REQUIRED = ("memory", "freezer", "pids", "devices", "cpu")


@dataclass
class Hierarchy:
    v1: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    v2: str | None = None  # the cgroup2 mount point, if any
    v2_controllers: tuple[str, ...] = ()
    _mounts: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def v1_usable(self) -> bool:
        return all(c in self.v1 for c in V1_REQUIRED)

    @property
    def v2_is_unified(self) -> bool:
        """A pure v2 host: the cgroup2 tree carries the controllers."""
        return self.v2 is not None and "memory" in self.v2_controllers

    def v1_mounts(self) -> list[str]:
        """Distinct mount points of the controllers we use (co-mounted ones appear once)."""
        key = tuple(sorted(self.v1.items()))
        if self._mounts is None or self._mounts[0] != key:
            seen: list[str] = []
            for c in V1_CONTROLLERS:
                mnt = self.v1.get(c)
                if mnt and mnt not in seen:
                    seen.append(mnt)
            self._mounts = (key, seen)
        return self._mounts[1]


def detect(mountinfo: str = "/proc/self/mountinfo") -> Hierarchy:
    h = Hierarchy()
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts = left.split()
            fstype, _source, super_opts = (right.split() + ["", "", ""])[:3]
            mount_point = parts[4].replace("\\040", " ")
            if fstype == "cgroup":
                for opt in super_opts.split(","):
                    if opt in V1_CONTROLLERS and opt not in h.v1:
                        h.v1[opt] = mount_point
            elif fstype == "cgroup2" and h.v2 is None:
                h.v2 = mount_point
    if h.v2 is not None:
        try:
            with open(os.path.join(h.v2, "cgroup.controllers")) as f:
                h.v2_controllers = tuple(f.read().split())
        except OSError:
            h.v2_controllers = ()
    return h
