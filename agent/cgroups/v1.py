"""cgroup v1: one directory per controller hierarchy; the freezer hierarchy pauses."""

from __future__ import annotations

import errno
import os

from agent.cgroups import base
from agent.cgroups.base import Cgroup, Writes, read_text, write_text
from agent.cgroups.hierarchy import Hierarchy
from agent.cgroups.resources import Resources, effective_device_rules
from agent.errors import FailedPrecondition

_ready_parents: set[str] = set()


class V1Cgroup(Cgroup):
    version = 1

    def __init__(self, hierarchy: Hierarchy, path: str):
        super().__init__(path)
        self.h = hierarchy
        # Made for every task (and for each one taken back at a restart): kept cheap.
        rel = "/" + self.path
        self.dirs = {c: m + rel for c, m in hierarchy.v1.items()}
        self.mount_dirs = [m + rel for m in hierarchy.v1_mounts()]

    def _dir(self, controller: str) -> str | None:
        return self.dirs.get(controller)

    def create(self, resources: Resources) -> None:
        made: list[str] = []
        cpuset_mount = self.h.v1.get("cpuset")
        try:
            for d in self.mount_dirs:
                is_cpuset = cpuset_mount is not None and d.startswith(cpuset_mount + "/")
                _make_parents(os.path.dirname(d), is_cpuset)
                try:
                    os.mkdir(d, 0o755)
                except FileExistsError:
                    raise FailedPrecondition(f"cgroup {d} already exists") from None
                except FileNotFoundError:  # a parent was removed behind our back
                    _forget_parents()
                    _make_parents(os.path.dirname(d), is_cpuset)
                    os.mkdir(d, 0o755)
                made.append(d)
            cpuset = self._dir("cpuset")
            if cpuset:
                _inherit_cpuset(cpuset)  # filled by the kernel already, unless a parent lost
                #                          its clone_children behind our back
            self._apply_devices(resources)
            self.apply(resources)
        except BaseException:
            for d in reversed(made):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise

    def _apply_devices(self, resources: Resources) -> None:
        devices = self._dir("devices")
        if devices is None:
            return
        # The kernel takes one rule per write; each file is opened once for all of them.
        fds: dict[str, int] = {}
        try:
            for rule in effective_device_rules(resources.devices):
                target = "devices.allow" if rule.allow else "devices.deny"
                fd = fds.get(target)
                if fd is None:
                    fd = fds[target] = os.open(os.path.join(devices, target),
                                               os.O_WRONLY | os.O_CLOEXEC)
                os.write(fd, rule.v1_line().encode())
        finally:
            for fd in fds.values():
                os.close(fd)

    def join_files(self) -> tuple[list[int], int | None]:
        fds: list[int] = []
        try:
            for d in self.mount_dirs:
                # The new process writes "0" (itself) to each. Through `tasks` that moves the
                # writing thread alone, which skips the kernel's global threadgroup lock and
                # its RCU grace period (5-10 ms through cgroup.procs); the process has one
                # thread, so it moves whole.
                fds.append(os.open(os.path.join(d, "tasks"), os.O_WRONLY | os.O_CLOEXEC))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds, None

    def memory_usage(self) -> int:
        return int(read_text(os.path.join(self.dirs["memory"], "memory.usage_in_bytes")))

    def apply(self, r: Resources, *, update: bool = False) -> None:
        w = Writes(rollback=update)
        mem = self._dir("memory")
        if mem:
            if r.check_before_update and r.memory_limit not in (None, -1):
                usage = self.memory_usage()
                if r.memory_limit < usage:
                    raise FailedPrecondition(
                        f"memory limit {r.memory_limit} is below the current usage {usage}"
                    )
            self._memory_writes(w, mem, r)
            if r.memory_reservation is not None:
                w.add(os.path.join(mem, "memory.soft_limit_in_bytes"), str(r.memory_reservation),
                      "memory.reservation")
            if r.memory_swappiness is not None:
                w.add(os.path.join(mem, "memory.swappiness"), str(r.memory_swappiness),
                      "memory.swappiness")
            if r.disable_oom_killer is not None:
                w.add(os.path.join(mem, "memory.oom_control"), "1" if r.disable_oom_killer else "0",
                      "memory.disableOOMKiller")
        cpu = self._dir("cpu")
        if cpu:
            if r.cpu_shares:
                w.add(os.path.join(cpu, "cpu.shares"), str(r.cpu_shares), "cpu.shares")
            if r.cpu_period:
                w.add(os.path.join(cpu, "cpu.cfs_period_us"), str(r.cpu_period), "cpu.period")
            if r.cpu_quota is not None and r.cpu_quota != 0:
                w.add(os.path.join(cpu, "cpu.cfs_quota_us"), str(r.cpu_quota), "cpu.quota")
        cpuset = self._dir("cpuset")
        if cpuset:
            if r.cpuset_cpus:
                w.add(os.path.join(cpuset, "cpuset.cpus"), r.cpuset_cpus, "cpu.cpus")
            if r.cpuset_mems:
                w.add(os.path.join(cpuset, "cpuset.mems"), r.cpuset_mems, "cpu.mems")
        pids = self._dir("pids")
        if pids and r.pids_limit is not None:
            value = "max" if r.pids_limit <= 0 else str(r.pids_limit)
            w.add(os.path.join(pids, "pids.max"), value, "pids.limit")
        blkio = self._dir("blkio")
        if r.blkio_weight:
            if not blkio or not os.path.exists(os.path.join(blkio, "blkio.weight")):
                raise FailedPrecondition("blockIO.weight needs blkio.weight, which this host lacks")
            w.add(os.path.join(blkio, "blkio.weight"), str(r.blkio_weight), "blockIO.weight")
        hugetlb = self._dir("hugetlb")
        for size, limit in r.hugepage_limits.items():
            if not hugetlb:
                raise FailedPrecondition("hugepageLimits need the hugetlb controller")
            w.add(os.path.join(hugetlb, f"hugetlb.{size}.limit_in_bytes"), str(limit),
                  f"hugepageLimits[{size}]")
        if r.unified:
            raise FailedPrecondition("resources.unified needs a cgroup v2 host")
        w.apply()

    def _memory_writes(self, w: Writes, mem: str, r: Resources) -> None:
        limit_file = os.path.join(mem, "memory.limit_in_bytes")
        swap_file = os.path.join(mem, "memory.memsw.limit_in_bytes")
        has_swap = os.path.exists(swap_file)
        limit, swap = r.memory_limit, r.memory_swap
        if swap is not None and swap != 0 and not has_swap:
            if swap != -1 and swap != limit:
                raise FailedPrecondition("memory.swap needs swap accounting, which this host lacks")
            swap = None
        if limit is None and swap in (None, 0):
            return
        if swap in (None, 0) and limit is not None and has_swap and limit == -1:
            swap = -1  # lifting the memory limit lifts memory+swap too
        # memory+swap may never be below memory: order the two writes accordingly.
        if swap not in (None, 0) and limit is not None:
            current_swap = int(read_text(swap_file))
            if limit == -1 or limit > current_swap:
                w.add(swap_file, str(swap), "memory.swap")
                w.add(limit_file, str(limit), "memory.limit")
            else:
                w.add(limit_file, str(limit), "memory.limit")
                w.add(swap_file, str(swap), "memory.swap")
        elif limit is not None:
            w.add(limit_file, str(limit), "memory.limit")
        else:
            w.add(swap_file, str(swap), "memory.swap")

    def pids(self) -> list[int]:
        return base.read_pids(os.path.join(self.dirs["freezer"], "cgroup.procs"))

    def _freeze_write(self, frozen: bool) -> None:
        write_text(os.path.join(self.dirs["freezer"], "freezer.state"),
                   "FROZEN" if frozen else "THAWED")

    def freeze_state(self) -> str:
        return read_text(os.path.join(self.dirs["freezer"], "freezer.state")).strip()

    def _rmdirs(self) -> None:
        for d in self.mount_dirs:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass

    def stat_dirs(self) -> dict[str, str]:
        return dict(self.dirs)

    def freezer_dir(self) -> str:
        return self.dirs["freezer"]

    def controllers(self) -> list[str]:
        return sorted(self.dirs)

    def oom_control_path(self) -> str:
        return os.path.join(self.dirs["memory"], "memory.oom_control")


def _make_parents(path: str, is_cpuset: bool) -> None:
    """Create the parent levels (agent root, namespace) once, cpusets filled in."""
    if path in _ready_parents:
        return
    parent = os.path.dirname(path)
    if parent != path and not os.path.isdir(parent):
        _make_parents(parent, is_cpuset)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    if is_cpuset:
        _inherit_cpuset(path)
        # The kernel then copies cpus and mems into each new child as it makes it: 0.15 ms
        # less per Create than writing them after the mkdir (they are only read then).
        try:
            write_text(os.path.join(path, "cgroup.clone_children"), "1")
        except OSError:
            pass
    _ready_parents.add(path)


def _forget_parents() -> None:
    _ready_parents.clear()


def _inherit_cpuset(path: str) -> None:
    """A new v1 cpuset starts empty (clone_children=0) and cannot hold tasks until filled."""
    parent = os.path.dirname(path)
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = os.path.join(path, name)
        try:
            if read_text(own).strip():
                continue
            write_text(own, read_text(os.path.join(parent, name)).strip() or "\n")
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
