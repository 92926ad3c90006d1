"""Cgroup managers for v1 and v2 hosts behind one interface (see base.Cgroup)."""

from __future__ import annotations

import fcntl
import os

from agent.cgroups.base import Cgroup
from agent.cgroups.hierarchy import Hierarchy, detect
from agent.cgroups.v1 import V1Cgroup
from agent.cgroups.v2 import V2Cgroup


class CgroupDriverError(Exception):
    pass


class Cgroups:
    """Makes the cgroup of each task at <parent>/<namespace>/<id> on the chosen driver.

    driver: "auto" (v2 when the cgroup2 tree carries the controllers, else v1), "v1" or
    "v2"; v2_mount overrides where the cgroup2 tree is (a hybrid host's /sys/fs/cgroup/unified)."""

    def __init__(self, driver: str = "auto", parent: str = "taskagent", v2_mount: str = ""):
        self.hierarchy: Hierarchy = detect()
        self.parent = parent.strip("/")
        if not self.parent or ".." in self.parent.split("/"):
            raise CgroupDriverError(f"cgroup parent {parent!r} must be a relative path")
        if driver == "auto":
            driver = "v2" if self.hierarchy.v2_is_unified else "v1"
        if driver == "v1" and not self.hierarchy.v1_usable:
            raise CgroupDriverError("cgroup v1 driver chosen, but the host lacks v1 controllers")
        self.v2_mount = v2_mount or self.hierarchy.v2 or ""
        if driver == "v2" and not (self.v2_mount and os.path.isdir(self.v2_mount)):
            raise CgroupDriverError("cgroup v2 driver chosen, but no cgroup2 tree is mounted")
        if driver not in ("v1", "v2"):
            raise CgroupDriverError(f"unknown cgroup driver {driver!r}")
        self.driver = driver

    def path_for(self, namespace: str, task_id: str) -> str:
        return f"{self.parent}/{namespace}/{task_id}"

    def for_task(self, namespace: str, task_id: str) -> Cgroup:
        return self.at(self.path_for(namespace, task_id))

    def at(self, path: str) -> Cgroup:
        if self.driver == "v1":
            return V1Cgroup(self.hierarchy, path)
        return V2Cgroup(self.v2_mount, path)

    def claim(self) -> int:
        """Lock the parent cgroup and return the locked descriptor; whoever keeps it open owns
        the parent. Two agents sharing one would each take the other's task cgroups for
        leftovers of a crash and remove them."""
        directory = self._claim_dir()
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _open_by(directory, os.getpid()) or _flock_holder(os.fstat(fd))
            os.close(fd)
            raise CgroupDriverError(
                f"cgroup parent {self.parent!r} is held by another agent's supervisor "
                f"(pid {holder}); give each agent its own cgroup_parent") from None
        return fd

    def _tops(self) -> list[str]:
        """The parent's directory in every hierarchy the driver uses."""
        if self.driver == "v1":
            return [os.path.join(m, self.parent) for m in self.hierarchy.v1_mounts()]
        return [os.path.join(self.v2_mount, self.parent)]

    def task_paths(self) -> set[str]:
        """Every <parent>/<namespace>/<id> present in any hierarchy (a creation cut short
        can leave one in some hierarchies only)."""
        found: set[str] = set()
        for top in self._tops():
            try:
                namespaces = os.listdir(top)
            except OSError:
                continue
            for ns in namespaces:
                try:
                    ids = os.listdir(os.path.join(top, ns))
                except OSError:  # not a directory, or gone
                    continue
                found.update(f"{self.parent}/{ns}/{i}" for i in ids
                             if os.path.isdir(os.path.join(top, ns, i)))
        return found

    def remove_empty_parents(self) -> None:
        """Remove the parent and its namespace levels where they are empty (the agent stops
        holding no task); a level still in use stays."""
        for top in self._tops():
            try:
                levels = [os.path.join(top, n) for n in os.listdir(top)]
            except OSError:
                continue
            for d in [d for d in levels if os.path.isdir(d)] + [top]:
                try:
                    os.rmdir(d)
                except OSError:
                    pass

    def _claim_dir(self) -> str:
        if self.driver == "v1":
            return os.path.join(self.hierarchy.v1["freezer"], self.parent)
        return os.path.join(self.v2_mount, self.parent)


def _open_by(directory: str, me: int) -> str:
    """The pids of other processes holding the directory open (the supervisor keeps its lock
    that way), comma-separated; empty when none is found."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == directory:
                    found.append(pid)
                    break
            except OSError:
                continue
    return ",".join(found)


def _flock_holder(st: os.stat_result) -> str:
    """The pid /proc/locks gives for the flock on this inode: the process that took it, which
    may have passed it on ("unknown" when not found)."""
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return fields[4]
    except OSError:
        pass
    return "unknown"
