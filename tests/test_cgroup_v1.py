"""The cgroup v1 driver's own mechanics, on this host's v1 hierarchies: a new task's cpuset
is filled in from its parent (the kernel copies it: the agent sets cgroup.clone_children on
the levels it makes), also after those levels were removed behind the agent's back, and its
device rules land as written."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent.cgroups import hierarchy
from agent.cgroups.resources import DeviceRule, Resources
from agent.cgroups.v1 import V1Cgroup


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


@pytest.fixture
def v1_top():
    """A private top level in every v1 hierarchy; everything under it is removed after."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test makes cgroups")
    h = hierarchy.detect()
    if "cpuset" not in h.v1 or "devices" not in h.v1:
        pytest.skip("this host has no v1 cpuset and devices hierarchies")
    top = f"taskagent-test-v1-{os.getpid()}"
    yield h, top
    for mount in h.v1_mounts():
        root = os.path.join(mount, top)
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
            os.rmdir(dirpath)


def _joins(cg: V1Cgroup) -> None:
    """A process can be moved into every hierarchy of the cgroup (an empty cpuset refuses)."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        for d in cg.mount_dirs:
            with open(os.path.join(d, "tasks"), "w") as f:
                f.write(str(proc.pid))
        assert cg.pids() == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_a_new_cpuset_is_filled_from_its_parent(v1_top):
    h, top = v1_top
    cg = V1Cgroup(h, f"{top}/ns/a")
    cg.create(Resources())
    cpuset_parent = os.path.join(h.v1["cpuset"], top, "ns")
    assert _read(os.path.join(cpuset_parent, "cgroup.clone_children")) == "1\n"
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = _read(os.path.join(cg.dirs["cpuset"], name))
        assert own.strip() != ""
        assert own == _read(os.path.join(cpuset_parent, name))
    _joins(cg)


def test_parents_removed_behind_the_agents_back_are_made_again(v1_top):
    h, top = v1_top
    first = V1Cgroup(h, f"{top}/ns/a")
    first.create(Resources())
    for mount in h.v1_mounts():
        os.rmdir(os.path.join(mount, top, "ns", "a"))
        os.rmdir(os.path.join(mount, top, "ns"))  # the cached parents are gone
    second = V1Cgroup(h, f"{top}/ns/b")
    second.create(Resources())
    assert _read(os.path.join(h.v1["cpuset"], top, "ns", "cgroup.clone_children")) == "1\n"
    assert _read(os.path.join(second.dirs["cpuset"], "cpuset.cpus")).strip() != ""
    _joins(second)


def test_device_rules_are_written_in_order(v1_top):
    h, top = v1_top
    cg = V1Cgroup(h, f"{top}/ns/d")
    cg.create(Resources())  # no rules of its own: deny-all is not implied, the defaults add
    listed = _read(os.path.join(cg.dirs["devices"], "devices.list")).splitlines()
    # A new devices cgroup starts as its parent (allow all), so the default allow rules change
    # nothing; with a deny-all first they become exactly the list.
    assert listed == ["a *:* rwm"]
    denied = V1Cgroup(h, f"{top}/ns/e")
    denied.create(Resources(devices=[DeviceRule(False, "a", None, None, "rwm")]))
    assert _read(os.path.join(denied.dirs["devices"], "devices.list")).splitlines() == [
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
        "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"]


def test_a_parent_that_stopped_filling_its_children_is_made_up_for(v1_top):
    h, top = v1_top
    first = V1Cgroup(h, f"{top}/ns/a")
    first.create(Resources())
    with open(os.path.join(h.v1["cpuset"], top, "ns", "cgroup.clone_children"), "w") as f:
        f.write("0")  # behind the agent's back
    second = V1Cgroup(h, f"{top}/ns/b")
    second.create(Resources())
    assert _read(os.path.join(second.dirs["cpuset"], "cpuset.cpus")).strip() != ""
    _joins(second)
