"""Cgroup managers for v1 and v2 hosts behind one interface (see base.Cgroup)."""

from __future__ import annotations

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
