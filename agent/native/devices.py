"""Device rules on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the task cgroup.

The program is generated, loaded and attached in C (`_native/devices/`) with the GIL released.

Semantics (the v1 devices controller's, as runc applies them, decided per access):

- Rules are read in order and the LAST matching rule decides. A rule matches a device when its
  type is "a" or the device's ("c" or "b") and its major and minor are None (any) or equal.
- Each access a request needs is decided on its own: opening for reading and writing needs
  "r" and "w", mknod needs "m"; for each, the last matching rule that names it decides, and the
  request goes through only if every needed access is allowed.
- What no rule decides is denied.
- An "a" rule is a reset, as the v1 controller reads it: it covers every device and every
  access whatever its numbers and letters, so the rules before it no longer matter.

A denied open or mknod fails with EPERM. The kernel runs every program attached to the cgroup
and its ancestors; all must allow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent.native._devices import DeviceFilterError
from agent.native._devices import attach_filter as _attach_filter
from agent.native._devices import program as _program

if TYPE_CHECKING:
    from agent.cgroups.resources import DeviceRule

__all__ = ["INSN_SIZE", "DeviceFilterError", "attach_filter", "program"]

INSN_SIZE = 8  # bytes in one struct bpf_insn


def attach_filter(cgroup_dir_fd: int, rules: Iterable[DeviceRule]) -> None:
    """Enforce `rules` on the cgroup2 directory open as `cgroup_dir_fd` (not closed here).

    The program is attached with BPF_F_ALLOW_MULTI and its fd closed: it lives as long as the
    cgroup. Programs attached before stay attached, so a second call narrows what is allowed
    rather than replacing the first program.

    Raises DeviceFilterError: EINVAL for a malformed rule (type not a/c/b, access not letters
    of "rwm", a number outside 0..2**32-1), E2BIG for a list too long for one program, or the
    errno of the bpf(2) step that failed; when the kernel refuses the program, the message ends
    with the verifier's verdict and `verifier_log` holds its whole log.
    """
    _attach_filter(cgroup_dir_fd, rules)


def program(rules: Iterable[DeviceRule]) -> bytes:
    """The program `attach_filter` would load for `rules`: struct bpf_insn records of
    INSN_SIZE bytes in host byte order. Validates the rules as `attach_filter` does."""
    return _program(rules)
