"""OCI runtime spec -> supervisor spawn fields.

Everything a client can get wrong is checked here, before any process, cgroup or mount
exists: the shape of the JSON, namespaces, capabilities, rlimits, mounts and their options.
The supervisor then only executes plain values."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from agent.errors import InvalidArgument, NotImplementedYet
from agent.runtime.native import protocol as P

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACES = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "cgroup": CLONE_NEWCGROUP,
}

CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
CAP_BITS = {name: i for i, name in enumerate(CAPABILITIES)}

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# option -> (flags to clear, flags to set)
_MOUNT_FLAGS = {
    "async": (MS_SYNCHRONOUS, 0), "atime": (MS_NOATIME, 0), "bind": (0, MS_BIND),
    "defaults": (0, 0), "dev": (MS_NODEV, 0), "diratime": (MS_NODIRATIME, 0),
    "dirsync": (0, MS_DIRSYNC), "exec": (MS_NOEXEC, 0), "mand": (0, MS_MANDLOCK),
    "noatime": (0, MS_NOATIME), "nodev": (0, MS_NODEV), "nodiratime": (0, MS_NODIRATIME),
    "noexec": (0, MS_NOEXEC), "nomand": (MS_MANDLOCK, 0), "norelatime": (MS_RELATIME, 0),
    "nostrictatime": (MS_STRICTATIME, 0), "nosuid": (0, MS_NOSUID),
    "rbind": (0, MS_BIND | MS_REC), "relatime": (0, MS_RELATIME), "ro": (0, MS_RDONLY),
    "rw": (MS_RDONLY, 0), "strictatime": (0, MS_STRICTATIME), "suid": (MS_NOSUID, 0),
    "sync": (0, MS_SYNCHRONOUS),
}
_PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}

MAX_ARGS = 4096
MAX_STRING = 1 << 16


@dataclass
class ParsedMount:
    destination: str
    type: str
    source: str
    flags: int
    propagation: int
    data: str
    bind: bool


@dataclass
class ProcessSpec:
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    additional_gids: list[int]
    umask: int | None
    rlimits: list[tuple[int, int, int]]
    caps: dict[str, int] | None
    no_new_privs: bool
    oom_score_adj: int | None
    terminal: bool
    width: int = 0
    height: int = 0

    def add_to(self, p: P.Payload) -> None:
        p.strs(P.T_ARG, self.args).strs(P.T_ENV, self.env).str(P.T_CWD, self.cwd)
        p.u64(P.T_UID, self.uid).u64(P.T_GID, self.gid)
        for g in self.additional_gids:
            p.u64(P.T_ADDITIONAL_GID, g)
        if self.umask is not None:
            p.u64(P.T_UMASK, self.umask)
        for res, soft, hard in self.rlimits:
            p.bytes(P.T_RLIMIT, res.to_bytes(8, "little") + soft.to_bytes(8, "little")
                    + hard.to_bytes(8, "little"))
        if self.caps is not None:
            p.u64(P.T_CAP_BOUNDING, self.caps["bounding"])
            p.u64(P.T_CAP_EFFECTIVE, self.caps["effective"])
            p.u64(P.T_CAP_PERMITTED, self.caps["permitted"])
            p.u64(P.T_CAP_INHERITABLE, self.caps["inheritable"])
            p.u64(P.T_CAP_AMBIENT, self.caps["ambient"])
        if self.no_new_privs:
            p.u64(P.T_NO_NEW_PRIVS, 1)
        if self.oom_score_adj is not None:
            p.u64(P.T_OOM_SCORE_ADJ, self.oom_score_adj)
        if self.terminal:
            p.u64(P.T_TERMINAL, 1)
            if self.width and self.height:
                p.u64(P.T_WIDTH, self.width).u64(P.T_HEIGHT, self.height)


@dataclass
class ContainerSpec:
    """What the runtime needs from a spec, validated."""

    process: ProcessSpec
    root_path: str
    root_readonly: bool
    clone_flags: int
    ns_paths: list[tuple[int, str]]
    hostname: str
    domainname: str
    mounts: list[ParsedMount]
    devices: list[dict[str, Any]]
    masked: list[str]
    readonly: list[str]
    sysctls: dict[str, str]
    root_propagation: int
    resources: Any  # raw linux.resources, parsed by agent.cgroups.resources
    default_devices: bool = field(default=True)

    @property
    def has_pidns(self) -> bool:
        return bool(self.clone_flags & CLONE_NEWPID)


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise InvalidArgument(msg)


# The checks below test first and build their error message only on failure: a spec holds a
# few hundred strings, and formatting every message up front was most of parsing's time.

def _good_str(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_STRING and "\x00" not in value


def _str(value: Any, where: str, *, allow_empty: bool = True) -> str:
    if _good_str(value) and (allow_empty or value):
        return value
    _require(isinstance(value, str), f"{where} must be a string")
    _require(allow_empty or value != "", f"{where} must not be empty")
    _require(len(value) <= MAX_STRING, f"{where} is longer than {MAX_STRING} characters")
    raise InvalidArgument(f"{where} contains a NUL byte")


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(f"{where} must be a list of strings")
    if len(value) > MAX_ARGS:
        raise InvalidArgument(f"{where} has more than {MAX_ARGS} entries")
    for i, v in enumerate(value):
        if not _good_str(v):
            _str(v, f"{where}[{i}]")
    return list(value)


def _uint(value: Any, where: str, hi: int = (1 << 32) - 1) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= hi):
        raise InvalidArgument(f"{where} must be an integer from 0 to {hi}")
    return value


def _abs_path(value: Any, where: str) -> str:
    path = _str(value, where, allow_empty=False)
    if not path.startswith("/"):
        raise InvalidArgument(f"{where} {path!r} must be an absolute path")
    return os.path.normpath(path)


def parse_process(proc: Any, where: str = "process") -> ProcessSpec:
    _require(isinstance(proc, dict), f"{where} must be an object")
    args = _str_list(proc.get("args"), f"{where}.args")
    _require(len(args) > 0 and args[0] != "", f"{where}.args must name a program")
    env = _str_list(proc.get("env"), f"{where}.env")
    for e in env:
        _require("=" in e, f"{where}.env entry {e!r} must be KEY=VALUE")
    cwd = proc.get("cwd") or "/"
    cwd = _abs_path(cwd, f"{where}.cwd")
    user = proc.get("user") or {}
    _require(isinstance(user, dict), f"{where}.user must be an object")
    uid = _uint(user.get("uid", 0), f"{where}.user.uid")
    gid = _uint(user.get("gid", 0), f"{where}.user.gid")
    gids = [_uint(g, f"{where}.user.additionalGids") for g in (user.get("additionalGids") or [])]
    umask = user.get("umask")
    if umask is not None:
        umask = _uint(umask, f"{where}.user.umask", 0o777)
    rlimits = []
    for i, r in enumerate(proc.get("rlimits") or []):
        _require(isinstance(r, dict), f"{where}.rlimits[{i}] must be an object")
        name = r.get("type")
        _require(name in RLIMITS, f"{where}.rlimits[{i}].type {name!r} is not a known rlimit")
        soft = _uint(r.get("soft", 0), f"{where}.rlimits[{i}].soft", (1 << 64) - 1)
        hard = _uint(r.get("hard", 0), f"{where}.rlimits[{i}].hard", (1 << 64) - 1)
        _require(soft <= hard, f"{where}.rlimits[{i}]: soft {soft} is above hard {hard}")
        rlimits.append((RLIMITS[name], soft, hard))
    caps = None
    if proc.get("capabilities") is not None:
        caps = _parse_caps(proc["capabilities"], f"{where}.capabilities")
    oom = proc.get("oomScoreAdj")
    if oom is not None:
        _require(isinstance(oom, int) and -1000 <= oom <= 1000,
                 f"{where}.oomScoreAdj must be from -1000 to 1000")
    for key in ("apparmorProfile", "selinuxLabel"):
        if proc.get(key):
            raise NotImplementedYet(f"{where}.{key} is not supported by this runtime")
    size = proc.get("consoleSize") or {}
    return ProcessSpec(
        args=args, env=env, cwd=cwd, uid=uid, gid=gid, additional_gids=gids, umask=umask,
        rlimits=rlimits, caps=caps, no_new_privs=bool(proc.get("noNewPrivileges", False)),
        oom_score_adj=oom, terminal=bool(proc.get("terminal", False)),
        width=_uint(size.get("width", 0), "consoleSize.width", 65535),
        height=_uint(size.get("height", 0), "consoleSize.height", 65535),
    )


def _parse_caps(raw: Any, where: str) -> dict[str, int]:
    _require(isinstance(raw, dict), f"{where} must be an object")
    out = {}
    for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        mask = 0
        for name in _str_list(raw.get(kind), f"{where}.{kind}"):
            bit = CAP_BITS.get(name)
            _require(bit is not None, f"{where}.{kind}: unknown capability {name!r}")
            mask |= 1 << bit
        out[kind] = mask
    return out


def _parse_mount_options(options: list[str], where: str) -> tuple[int, int, str, bool]:
    flags = prop = 0
    data = []
    bind = False
    for opt in options:
        if opt in _MOUNT_FLAGS:
            clear, setf = _MOUNT_FLAGS[opt]
            flags = (flags & ~clear) | setf
            if setf & MS_BIND:
                bind = True
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        elif opt in ("rro", "rrw", "idmap", "ridmap"):
            raise NotImplementedYet(f"{where}: mount option {opt!r} is not supported")
        else:
            _require("," not in opt, f"{where}: mount option {opt!r} contains a comma")
            data.append(opt)
    return flags, prop, ",".join(data), bind


def _parse_mounts(raw: Any, bundle: str) -> list[ParsedMount]:
    if raw is None:
        return []
    _require(isinstance(raw, list), "mounts must be a list")
    out = []
    for i, m in enumerate(raw):
        where = f"mounts[{i}]"
        _require(isinstance(m, dict), f"{where} must be an object")
        dest = _abs_path(m.get("destination"), f"{where}.destination")
        mtype = _str(m.get("type") or "", f"{where}.type")
        source = _str(m.get("source") or "", f"{where}.source")
        flags, prop, data, bind = _parse_mount_options(
            _str_list(m.get("options"), f"{where}.options"), where)
        if mtype == "bind":
            bind = True
        if bind:
            _require(source != "", f"{where}: a bind mount needs a source")
            if not source.startswith("/"):
                source = os.path.join(bundle, source)
            _require(os.path.exists(source), f"{where}: bind source {source} does not exist")
        else:
            _require(mtype != "", f"{where}.type is required for a non-bind mount")
        out.append(ParsedMount(dest, mtype, source, flags, prop, data, bind))
    return out


def parse(spec: Any, bundle: str) -> ContainerSpec:
    _require(isinstance(spec, dict), "the spec must be a JSON object")
    for key in ("hooks",):
        if spec.get(key):
            raise NotImplementedYet(f"spec.{key} is not supported by this runtime")
    linux = spec.get("linux") or {}
    _require(isinstance(linux, dict), "linux must be an object")
    if linux.get("seccomp"):
        raise NotImplementedYet("linux.seccomp is not supported by this runtime")
    for key in ("uidMappings", "gidMappings", "intelRdt"):
        if linux.get(key):
            raise NotImplementedYet(f"linux.{key} is not supported by this runtime")
    process = parse_process(spec.get("process"))
    root = spec.get("root") or {}
    _require(isinstance(root, dict), "root must be an object")
    root_path = _str(root.get("path") or "", "root.path")
    if root_path and not root_path.startswith("/"):
        root_path = os.path.join(bundle, root_path)
    clone_flags = 0
    ns_paths = []
    seen = set()
    for i, ns in enumerate(linux.get("namespaces") or []):
        _require(isinstance(ns, dict), f"linux.namespaces[{i}] must be an object")
        kind = ns.get("type")
        if kind in ("user", "time"):
            raise NotImplementedYet(f"{kind} namespaces are not supported by this runtime")
        _require(kind in NAMESPACES, f"linux.namespaces[{i}].type {kind!r} is unknown")
        _require(kind not in seen, f"linux.namespaces lists {kind} twice")
        seen.add(kind)
        if ns.get("path"):
            ns_paths.append((NAMESPACES[kind], _abs_path(ns["path"], f"linux.namespaces[{i}].path")))
        else:
            clone_flags |= NAMESPACES[kind]
    _require("mount" in seen, "linux.namespaces must include a mount namespace")
    _require(not (clone_flags & CLONE_NEWNS) or all(t != CLONE_NEWNS for t, _ in ns_paths),
             "mount namespace given twice")
    devices = []
    for i, d in enumerate(linux.get("devices") or []):
        where = f"linux.devices[{i}]"
        _require(isinstance(d, dict), f"{where} must be an object")
        _require(d.get("type") in ("c", "b", "u", "p"), f"{where}.type must be c, b, u or p")
        devices.append({
            "path": _abs_path(d.get("path"), f"{where}.path"),
            "type": d["type"],
            "major": _uint(d.get("major", 0), f"{where}.major"),
            "minor": _uint(d.get("minor", 0), f"{where}.minor"),
            "mode": _uint(d.get("fileMode", 0o666), f"{where}.fileMode", 0o7777),
            "uid": _uint(d.get("uid", 0), f"{where}.uid"),
            "gid": _uint(d.get("gid", 0), f"{where}.gid"),
        })
    sysctls = linux.get("sysctl") or {}
    _require(isinstance(sysctls, dict), "linux.sysctl must be an object")
    for k, v in sysctls.items():
        _require(isinstance(v, str), f"linux.sysctl[{k}] must be a string")
        _require(all(part and part not in (".", "..") for part in k.split(".")) and "/" not in k,
                 f"linux.sysctl key {k!r} is malformed")
    propagation = linux.get("rootfsPropagation") or ""
    _require(propagation == "" or propagation in _PROPAGATION,
             f"linux.rootfsPropagation {propagation!r} is unknown")
    mounts = _parse_mounts(spec.get("mounts"), bundle)
    return ContainerSpec(
        process=process,
        root_path=root_path,
        root_readonly=bool(root.get("readonly", False)),
        clone_flags=clone_flags,
        ns_paths=ns_paths,
        hostname=_str(spec.get("hostname") or "", "hostname"),
        domainname=_str(spec.get("domainname") or "", "domainname"),
        mounts=mounts,
        devices=devices,
        masked=[_abs_path(p, "linux.maskedPaths") for p in linux.get("maskedPaths") or []],
        readonly=[_abs_path(p, "linux.readonlyPaths") for p in linux.get("readonlyPaths") or []],
        sysctls={k: v for k, v in sysctls.items()},
        root_propagation=_PROPAGATION.get(propagation, 0),
        resources=linux.get("resources"),
        default_devices=any(m.destination == "/dev" and not m.bind for m in mounts),
    )


def _mount_payload(m: ParsedMount) -> P.Payload:
    p = P.Payload().str(P.T_M_DEST, m.destination).str(P.T_M_TYPE, m.type)
    p.str(P.T_M_SOURCE, m.source).u64(P.T_M_FLAGS, m.flags)
    if m.propagation:
        p.u64(P.T_M_PROPAGATION, m.propagation)
    if m.data:
        p.str(P.T_M_DATA, m.data)
    if m.bind:
        p.u64(P.T_M_BIND, 1)
    return p


def rootfs_mount_payload(mtype: str, source: str, options: list[str]) -> P.Payload:
    """A request rootfs mount (bind or overlay), mounted on the bundle's rootfs."""
    _require(mtype in ("bind", "overlay", "tmpfs"),
             f"rootfs mount type {mtype!r} is not supported (bind, overlay or tmpfs)")
    flags, _prop, data, bind = _parse_mount_options(options, "rootfs mount")
    bind = bind or mtype == "bind"
    if bind:
        _require(os.path.isdir(source), f"rootfs bind source {source} is not a directory")
    p = P.Payload().str(P.T_M_DEST, "/").str(P.T_M_TYPE, mtype).str(P.T_M_SOURCE, source)
    p.u64(P.T_M_FLAGS, flags | (MS_BIND if bind else 0))
    if data:
        p.str(P.T_M_DATA, data)
    if bind:
        p.u64(P.T_M_BIND, 1)
    return p


def init_payload(key: str, spec: ContainerSpec, rootfs: str) -> P.Payload:
    p = P.Payload().str(P.T_KEY, key).u64(P.T_CLONE_FLAGS, spec.clone_flags)
    p.str(P.T_ROOTFS, rootfs)
    if spec.root_readonly:
        p.u64(P.T_ROOT_READONLY, 1)
    if spec.root_propagation:
        p.u64(P.T_ROOT_PROPAGATION, spec.root_propagation)
    for m in spec.mounts:
        p.nested(P.T_MOUNT, _mount_payload(m))
    for d in spec.devices:
        dev = P.Payload().str(P.T_M_DEST, d["path"]).u64(P.T_DEV_TYPE, ord(d["type"]))
        dev.u64(P.T_DEV_MAJOR, d["major"]).u64(P.T_DEV_MINOR, d["minor"])
        dev.u64(P.T_DEV_MODE, d["mode"]).u64(P.T_UID, d["uid"]).u64(P.T_GID, d["gid"])
        p.nested(P.T_DEVICE, dev)
    if spec.default_devices:
        p.u64(P.T_DEFAULT_DEVICES, 1)
    p.strs(P.T_MASKED, spec.masked).strs(P.T_READONLY_PATH, spec.readonly)
    if spec.hostname:
        p.str(P.T_HOSTNAME, spec.hostname)
    if spec.domainname:
        p.str(P.T_DOMAINNAME, spec.domainname)
    p.strs(P.T_SYSCTL, [f"{k}={v}" for k, v in spec.sysctls.items()])
    if spec.clone_flags & CLONE_NEWNET:
        p.u64(P.T_LOOPBACK_UP, 1)
    spec.process.add_to(p)
    return p
