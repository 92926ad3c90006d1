"""The OCI spec a client sends for a container made from a plain rootfs directory: the same
shape as `ctr run --rootfs` makes, so both daemons get identical requests."""

from __future__ import annotations

from typing import Any

DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
          "/proc/scsi"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEVICES = [
    {"allow": False, "access": "rwm"},
    *({"allow": True, "type": "c", "major": a, "minor": b, "access": "rwm"}
      for a, b in ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
]


def default_spec(args: list[str], rootfs: str, *, namespace: str = "default", id: str = "",
                 hostname: str | None = None, env: list[str] | None = None,
                 terminal: bool = False, cwd: str = "/",
                 namespaces: tuple[str, ...] = ("pid", "ipc", "uts", "mount", "network"),
                 resources: dict[str, Any] | None = None) -> dict[str, Any]:
    caps = list(DEFAULT_CAPS)
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        ],
        "linux": {
            "resources": {"devices": [dict(d) for d in DEVICES], "cpu": {"shares": 1024}},
            "cgroupsPath": f"/{namespace}/{id}",
            "namespaces": [{"type": t} for t in namespaces],
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READONLY),
        },
    }
    if env is not None:
        spec["process"]["env"] = list(env)
    elif terminal:
        spec["process"]["env"] = ["TERM=xterm"]
    if hostname:
        spec["hostname"] = hostname
    if resources:
        spec["linux"]["resources"].update(resources)
    return spec
