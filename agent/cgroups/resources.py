"""OCI LinuxResources, checked and normalised before any cgroup file is written.

Values follow the OCI runtime spec: memory in bytes (-1 = unlimited; `swap` is memory plus
swap), cpu shares/quota/period, cpuset strings, pids limit (<= 0 = unlimited), blkio weight.
Anything malformed, negative where the spec forbids it, or beyond what the kernel accepts
raises InvalidArgument naming the field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agent.errors import InvalidArgument

UNLIMITED = -1
MAX_BYTES = 1 << 62  # beyond anything the kernel can account
_CPUSET = re.compile(r"\A\d+(-\d+)?(,\d+(-\d+)?)*\Z")


@dataclass
class DeviceRule:
    allow: bool
    type: str  # "a", "c", "b"
    major: int | None
    minor: int | None
    access: str  # subset of "rwm"

    def v1_line(self) -> str:
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        if self.type == "a":
            return f"a {major}:{minor} {self.access}"
        return f"{self.type} {major}:{minor} {self.access}"


@dataclass
class Resources:
    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    memory_swappiness: int | None = None
    disable_oom_killer: bool | None = None
    check_before_update: bool = False
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    blkio_weight: int | None = None
    hugepage_limits: dict[str, int] = field(default_factory=dict)
    devices: list[DeviceRule] | None = None
    unified: dict[str, str] = field(default_factory=dict)


def _int(section: dict, key: str, where: str, lo: int, hi: int) -> int | None:
    if key not in section or section[key] is None:
        return None
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{where}.{key} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise InvalidArgument(f"{where}.{key}={value} is out of range [{lo}, {hi}]")
    return value


def _bytes(section: dict, key: str, where: str) -> int | None:
    value = _int(section, key, where, -1, MAX_BYTES)
    if value is not None and 0 <= value < 4096 and value != 0:
        raise InvalidArgument(f"{where}.{key}={value} is below the 4096-byte minimum")
    return value


def _section(raw: dict, key: str) -> dict:
    section = raw.get(key) or {}
    if not isinstance(section, dict):
        raise InvalidArgument(f"resources.{key} must be an object")
    return section


def parse(raw: Any) -> Resources:
    """Parse the `linux.resources` object of a spec (or an Update request)."""
    if raw is None:
        return Resources()
    if not isinstance(raw, dict):
        raise InvalidArgument("resources must be a JSON object")
    r = Resources()
    mem = _section(raw, "memory")
    r.memory_limit = _bytes(mem, "limit", "memory")
    r.memory_reservation = _bytes(mem, "reservation", "memory")
    r.memory_swap = _bytes(mem, "swap", "memory")
    r.memory_swappiness = _int(mem, "swappiness", "memory", 0, 100)
    if "disableOOMKiller" in mem:
        r.disable_oom_killer = bool(mem["disableOOMKiller"])
    r.check_before_update = bool(mem.get("checkBeforeUpdate", False))
    if (r.memory_limit not in (None, UNLIMITED) and r.memory_swap not in (None, UNLIMITED, 0)
            and r.memory_swap < r.memory_limit):
        raise InvalidArgument(
            f"memory.swap={r.memory_swap} must be at least memory.limit={r.memory_limit} "
            "(it counts memory plus swap)"
        )
    cpu = _section(raw, "cpu")
    r.cpu_shares = _int(cpu, "shares", "cpu", 0, 262144)
    if r.cpu_shares is not None and r.cpu_shares != 0 and r.cpu_shares < 2:
        raise InvalidArgument(f"cpu.shares={r.cpu_shares} is below the minimum of 2")
    r.cpu_quota = _int(cpu, "quota", "cpu", -1, 1 << 50)
    if r.cpu_quota is not None and 0 <= r.cpu_quota < 1000 and r.cpu_quota != 0:
        raise InvalidArgument(f"cpu.quota={r.cpu_quota} is below the 1000us minimum")
    r.cpu_period = _int(cpu, "period", "cpu", 0, 1_000_000)
    if r.cpu_period is not None and r.cpu_period != 0 and r.cpu_period < 1000:
        raise InvalidArgument(f"cpu.period={r.cpu_period} is below the 1000us minimum")
    for key, attr in (("cpus", "cpuset_cpus"), ("mems", "cpuset_mems")):
        value = cpu.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or not _CPUSET.match(value):
            raise InvalidArgument(f"cpu.{key}={value!r} is not a list like '0-3,5'")
        setattr(r, attr, value)
    pids = _section(raw, "pids")
    r.pids_limit = _int(pids, "limit", "pids", -(1 << 62), 1 << 22)
    blkio = _section(raw, "blockIO")
    r.blkio_weight = _int(blkio, "weight", "blockIO", 0, 1000)
    if r.blkio_weight is not None and 0 < r.blkio_weight < 10:
        raise InvalidArgument(f"blockIO.weight={r.blkio_weight} must be 10 to 1000")
    hugepages = raw.get("hugepageLimits") or []
    if not isinstance(hugepages, list):
        raise InvalidArgument("resources.hugepageLimits must be a list")
    for h in hugepages:
        if not isinstance(h, dict) or not isinstance(h.get("pageSize"), str):
            raise InvalidArgument("each hugepageLimits entry needs a pageSize string")
        if not re.match(r"\A\d+[KMG]B\Z", h["pageSize"]):
            raise InvalidArgument(f"hugepageLimits pageSize {h['pageSize']!r} is malformed")
        limit = _int(h, "limit", "hugepageLimits", 0, MAX_BYTES)
        r.hugepage_limits[h["pageSize"]] = limit or 0
    if "devices" in raw and raw["devices"] is not None:
        r.devices = parse_devices(raw["devices"])
    unified = raw.get("unified") or {}
    if not isinstance(unified, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in unified.items()
    ):
        raise InvalidArgument("resources.unified must map file names to strings")
    for key in unified:
        if "/" in key or key.startswith(".") or key.startswith("cgroup."):
            raise InvalidArgument(f"resources.unified key {key!r} is not a controller file")
    r.unified = dict(unified)
    return r


def parse_devices(raw: Any) -> list[DeviceRule]:
    if not isinstance(raw, list):
        raise InvalidArgument("resources.devices must be a list")
    rules = []
    for d in raw:
        if not isinstance(d, dict):
            raise InvalidArgument("each resources.devices entry must be an object")
        kind = d.get("type") or "a"
        if kind not in ("a", "c", "b"):
            raise InvalidArgument(f"device rule type {kind!r} must be a, c or b")
        access = d.get("access") or "rwm"
        if not isinstance(access, str) or not access or set(access) - set("rwm"):
            raise InvalidArgument(f"device rule access {access!r} must be letters of 'rwm'")
        numbers = []
        for key in ("major", "minor"):
            value = d.get(key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidArgument(f"device rule {key}={value!r} must be a non-negative integer")
            numbers.append(value)
        rules.append(DeviceRule(bool(d.get("allow", False)), kind, numbers[0], numbers[1], access))
    return rules


# The devices a container always gets, whatever its spec says (runc's defaults): the
# pseudo-devices, terminals, and mknod (but not use) of any node.
DEFAULT_ALLOWED = [
    DeviceRule(True, "c", None, None, "m"),
    DeviceRule(True, "b", None, None, "m"),
    DeviceRule(True, "c", 1, 3, "rwm"),   # null
    DeviceRule(True, "c", 1, 5, "rwm"),   # zero
    DeviceRule(True, "c", 1, 7, "rwm"),   # full
    DeviceRule(True, "c", 1, 8, "rwm"),   # random
    DeviceRule(True, "c", 1, 9, "rwm"),   # urandom
    DeviceRule(True, "c", 5, 0, "rwm"),   # tty
    DeviceRule(True, "c", 5, 1, "rwm"),   # console
    DeviceRule(True, "c", 5, 2, "rwm"),   # ptmx
    DeviceRule(True, "c", 136, None, "rwm"),  # pts
]


def effective_device_rules(spec_rules: list[DeviceRule] | None) -> list[DeviceRule]:
    """The spec's rules in order, then the defaults (as runc does). A spec that starts with
    a deny-all (containerd's default spec does) therefore gets exactly its list plus these."""
    return list(spec_rules or []) + DEFAULT_ALLOWED
