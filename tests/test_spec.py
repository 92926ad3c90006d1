"""OCI spec checking: bad specs are refused before anything is made."""

from __future__ import annotations

import copy

import pytest

from agent.client import default_spec
from agent.errors import InvalidArgument, NotImplementedYet
from agent.runtime.native import spec as S

BASE = default_spec(["/bin/sh", "-c", "true"], "/tmp/rootfs", hostname="h")


def _with(path, value):
    spec = copy.deepcopy(BASE)
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return spec


def test_default_spec_parses():
    parsed = S.parse(BASE, "/bundle")
    assert parsed.process.args == ["/bin/sh", "-c", "true"]
    assert parsed.clone_flags == (S.CLONE_NEWPID | S.CLONE_NEWIPC | S.CLONE_NEWUTS
                                  | S.CLONE_NEWNS | S.CLONE_NEWNET)
    assert parsed.hostname == "h"
    assert parsed.default_devices is True
    assert parsed.process.caps["bounding"] == sum(1 << S.CAP_BITS[c] for c in
                                                  BASE["process"]["capabilities"]["bounding"])
    assert parsed.process.rlimits == [(7, 1024, 1024)]
    proc = next(m for m in parsed.mounts if m.destination == "/proc")
    assert proc.flags == S.MS_NOSUID | S.MS_NOEXEC | S.MS_NODEV
    sysfs = next(m for m in parsed.mounts if m.destination == "/sys")
    assert sysfs.flags & S.MS_RDONLY
    dev = next(m for m in parsed.mounts if m.destination == "/dev")
    assert dev.data == "mode=755,size=65536k"


@pytest.mark.parametrize("path,value", [
    (("process", "args"), []),
    (("process", "args"), "sh"),
    (("process", "args"), [1]),
    (("process", "env"), ["NOEQUALS"]),
    (("process", "cwd"), "relative"),
    (("process", "user", "uid"), -1),
    (("process", "rlimits"), [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
    (("process", "rlimits"), [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 1}]),
    (("process", "capabilities", "bounding"), ["CAP_BOGUS"]),
    (("process", "oomScoreAdj"), 5000),
    (("linux", "namespaces"), [{"type": "pid"}]),
    (("linux", "namespaces"), [{"type": "mount"}, {"type": "mount"}]),
    (("linux", "namespaces"), [{"type": "mount"}, {"type": "bogus"}]),
    (("linux", "sysctl"), {"../x": "1"}),
    (("mounts",), [{"destination": "rel", "type": "tmpfs"}]),
    (("mounts",), [{"destination": "/x", "type": "bind", "source": "/no/such/source"}]),
    (("linux", "devices"), [{"path": "/dev/x", "type": "z"}]),
])
def test_invalid_specs(path, value):
    with pytest.raises(InvalidArgument):
        S.parse(_with(path, value), "/bundle")


@pytest.mark.parametrize("path,value", [
    (("linux", "seccomp"), {"defaultAction": "SCMP_ACT_ERRNO"}),
    (("linux", "namespaces"), [{"type": "mount"}, {"type": "user"}]),
    (("hooks",), {"prestart": [{"path": "/bin/true"}]}),
    (("process", "apparmorProfile"), "docker-default"),
])
def test_unsupported_features_are_named(path, value):
    with pytest.raises(NotImplementedYet) as e:
        S.parse(_with(path, value), "/bundle")
    assert path[-1] in str(e.value) or "user" in str(e.value)


def test_not_an_object():
    with pytest.raises(InvalidArgument):
        S.parse(["not", "an", "object"], "/bundle")
