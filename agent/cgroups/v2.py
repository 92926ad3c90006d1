"""cgroup v2: one directory; cgroup.freeze pauses, cgroup.kill kills, CLONE_INTO_CGROUP
places new processes, and an eBPF program enforces the device rules."""

from __future__ import annotations

import os
import signal

from agent.cgroups import base
from agent.cgroups.base import Cgroup, Writes, read_text, write_text
from agent.cgroups.resources import Resources, effective_device_rules
from agent.errors import FailedPrecondition

_enabled_parents: set[str] = set()

# Controllers we enable for task cgroups when the host offers them.
WANTED = ("cpu", "cpuset", "memory", "io", "pids", "hugetlb")


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), as runc converts them."""
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    return 1 + (weight - 10) * 9999 // 990


class V2Cgroup(Cgroup):
    version = 2

    def __init__(self, mount: str, path: str):
        super().__init__(path)
        self.mount = mount
        self.dir = os.path.join(mount, self.path)

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def create(self, resources: Resources) -> None:
        parent = os.path.dirname(self.path)
        _prepare_parents(self.mount, parent)
        try:
            os.mkdir(self.dir, 0o755)
        except FileExistsError:
            raise FailedPrecondition(f"cgroup {self.dir} already exists") from None
        except FileNotFoundError:  # a parent was removed behind our back
            _enabled_parents.discard(os.path.join(self.mount, parent))
            _prepare_parents(self.mount, parent)
            os.mkdir(self.dir, 0o755)
        try:
            self.apply(resources)
            self._attach_device_filter(resources)
        except BaseException:
            try:
                os.rmdir(self.dir)
            except OSError:
                pass
            raise

    def _attach_device_filter(self, resources: Resources) -> None:
        from agent.native import devices

        rules = effective_device_rules(resources.devices)
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            devices.attach_filter(fd, rules)
        finally:
            os.close(fd)

    def join_files(self) -> tuple[list[int], int | None]:
        return [], os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def memory_usage(self) -> int:
        return int(read_text(self._file("memory.current")))

    def apply(self, r: Resources, *, update: bool = False) -> None:
        w = Writes(rollback=update)
        need = []
        if r.check_before_update and r.memory_limit not in (None, -1):
            usage = self.memory_usage()
            if r.memory_limit < usage:
                raise FailedPrecondition(
                    f"memory limit {r.memory_limit} is below the current usage {usage}"
                )
        if r.memory_limit is not None:
            need.append(("memory.max", _max(r.memory_limit), "memory.limit"))
        if r.memory_swap not in (None, 0):
            if r.memory_swap == -1:
                swap = "max"
            elif r.memory_limit not in (None, -1):
                swap = str(r.memory_swap - r.memory_limit)
            else:
                raise FailedPrecondition("memory.swap needs memory.limit on cgroup v2")
            need.append(("memory.swap.max", swap, "memory.swap"))
        if r.memory_reservation is not None:
            need.append(("memory.low", _max(r.memory_reservation), "memory.reservation"))
        if r.cpu_shares:
            need.append(("cpu.weight", str(shares_to_weight(r.cpu_shares)), "cpu.shares"))
        if r.cpu_quota not in (None, 0) or r.cpu_period:
            quota = "max" if r.cpu_quota in (None, 0, -1) else str(r.cpu_quota)
            period = str(r.cpu_period or 100000)
            need.append(("cpu.max", f"{quota} {period}", "cpu.quota"))
        if r.cpuset_cpus:
            need.append(("cpuset.cpus", r.cpuset_cpus, "cpu.cpus"))
        if r.cpuset_mems:
            need.append(("cpuset.mems", r.cpuset_mems, "cpu.mems"))
        if r.pids_limit is not None:
            need.append(("pids.max", "max" if r.pids_limit <= 0 else str(r.pids_limit),
                         "pids.limit"))
        if r.blkio_weight:
            need.append(("io.weight", f"default {blkio_to_io_weight(r.blkio_weight)}",
                         "blockIO.weight"))
        for size, limit in r.hugepage_limits.items():
            need.append((f"hugetlb.{size}.max", str(limit), f"hugepageLimits[{size}]"))
        for name, value in r.unified.items():
            need.append((name, value, f"unified[{name}]"))
        for name, value, what in need:
            path = self._file(name)
            if not os.path.exists(path):
                controller = name.split(".")[0]
                raise FailedPrecondition(
                    f"{what} needs the {controller} controller, which this cgroup v2 tree lacks"
                )
            w.add(path, value, what)
        w.apply()

    def pids(self) -> list[int]:
        return base.read_pids(self._file("cgroup.procs"))

    def _freeze_write(self, frozen: bool) -> None:
        write_text(self._file("cgroup.freeze"), "1" if frozen else "0")

    def freeze_state(self) -> str:
        wanted = read_text(self._file("cgroup.freeze")).strip() == "1"
        frozen = False
        for line in read_text(self._file("cgroup.events")).splitlines():
            key, _, value = line.partition(" ")
            if key == "frozen":
                frozen = value.strip() == "1"
        if frozen:
            return "FROZEN"
        return "FREEZING" if wanted else "THAWED"

    def signal_all(self, sig: int) -> None:
        kill_file = self._file("cgroup.kill")
        if sig == signal.SIGKILL and os.path.exists(kill_file):
            write_text(kill_file, "1")  # fatal signals reach frozen tasks on v2
            return
        super().signal_all(sig)

    def _rmdirs(self) -> None:
        try:
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass

    def stat_dirs(self) -> str:
        return self.dir

    def freezer_dir(self) -> str:
        return self.dir

    def memory_events_path(self) -> str:
        return self._file("memory.events")


def _max(value: int) -> str:
    return "max" if value == -1 else str(value)


def _prepare_parents(mount: str, rel: str) -> None:
    """Create the parent levels and enable the wanted controllers for their children."""
    key = os.path.join(mount, rel)
    if key in _enabled_parents:
        return
    current = mount
    for part in [p for p in rel.split("/") if p]:
        _enable_subtree(current)
        current = os.path.join(current, part)
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            pass
    _enable_subtree(current)
    _enabled_parents.add(key)


def _enable_subtree(path: str) -> None:
    try:
        available = read_text(os.path.join(path, "cgroup.controllers")).split()
        enabled = read_text(os.path.join(path, "cgroup.subtree_control")).split()
    except OSError:
        return
    missing = [c for c in WANTED if c in available and c not in enabled]
    if missing:
        write_text(os.path.join(path, "cgroup.subtree_control"),
                   " ".join("+" + c for c in missing))
