"""Checkpoint and restore of a task with CRIU.

Dump: criu freezes the task's cgroup, writes the images of the whole process tree (its own
namespaces, mounts, tmpfs contents, pipes) and, unless asked to exit, lets it run on. The
task's stdio are pipes of the supervisor's; their identities go to descriptors.json so the
restore can attach new pipes in their place (criu --inherit-fd).

Restore: the supervisor runs `criu restore` as its child, detached and as a sibling, so
the restored init becomes the supervisor's child; it stays stopped until Start."""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass, field

from agent.errors import FailedPrecondition, InvalidArgument, Unknown
from agent.runtime.native import protocol as P
from agent.runtime.native.tools import run_tool

log = logging.getLogger(__name__)

DESCRIPTORS = "descriptors.json"
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"
CGROUP_MODES = {"", "soft", "full", "strict", "ignore"}


@dataclass
class CheckpointRequest:
    image_path: str
    work_path: str = ""
    exit: bool = False
    open_tcp: bool = False
    external_unix_sockets: bool = False
    terminal: bool = False
    file_locks: bool = False
    empty_namespaces: list[str] = field(default_factory=list)
    cgroups_mode: str = ""

    def check(self) -> None:
        if self.cgroups_mode not in CGROUP_MODES:
            raise InvalidArgument(f"cgroups mode {self.cgroups_mode!r} is not one of "
                                  "soft, full, strict, ignore")
        for ns in self.empty_namespaces:
            if ns != "network":
                raise InvalidArgument(f"empty namespace {ns!r}: only network is supported")
        for path in (self.image_path, self.work_path):
            if path and not os.path.isabs(path):
                raise InvalidArgument(f"checkpoint path {path!r} must be absolute")


def stdio_descriptors(pid: int) -> list[str]:
    """What fds 0, 1 and 2 of the process are ("pipe:[1234]", "/dev/null", ...)."""
    out = []
    for fd in range(3):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            out.append("")
    return out


def dump_argv(criu: str, pid: int, rootfs: str, freezer_dir: str, req: CheckpointRequest,
              binds: list[str], controllers: list[str]) -> list[str]:
    work = req.work_path or req.image_path
    argv = [criu, "dump", "--tree", str(pid), "--images-dir", req.image_path,
            "--work-dir", work, "--log-file", DUMP_LOG, "-v4", "--root", rootfs,
            "--manage-cgroups=" + (req.cgroups_mode or "soft"), "--freeze-cgroup", freezer_dir,
            "--network-lock", "iptables"]
    if controllers:
        # Only the hierarchies the task's cgroup lives in (a hybrid host's cgroup2 tree
        # holds none of ours: restoring its properties would fail).
        for controller in controllers:
            argv += ["--cgroup-dump-controller", controller]
    if not req.exit:
        argv.append("--leave-running")
    for flag, on in (("--tcp-established", req.open_tcp), ("--ext-unix-sk",
                     req.external_unix_sockets), ("--shell-job", req.terminal),
                     ("--file-locks", req.file_locks)):
        if on:
            argv.append(flag)
    for dest in binds:  # host paths bound in: not part of the image, named on restore
        argv += ["--external", f"mnt[{dest}]:{dest}"]
    return argv


def restore_argv(criu: str, image_dir: str, root: str, pidfile: str, cgroup_path: str,
                 descriptors: list[str], binds: dict[str, str], empty_net: bool) -> list[str]:
    argv = [criu, "restore", "--images-dir", image_dir, "--work-dir", image_dir,
            "--log-file", RESTORE_LOG, "-v4", "--root", root, "--restore-detached",
            "--restore-sibling", "--leave-stopped", "--pidfile", pidfile,
            "--manage-cgroups=soft", "--cgroup-root", "/" + cgroup_path.strip("/"),
            "--network-lock", "iptables"]
    for i, what in enumerate(descriptors[:3]):
        if what.startswith("pipe:"):
            argv += ["--inherit-fd", f"fd[{3 + i}]:{what}"]
    for dest, source in binds.items():
        argv += ["--external", f"mnt[{dest}]:{source}"]
    if empty_net:
        argv += ["--empty-ns", "net"]
    return argv


async def run_criu(argv: list[str], log_dir: str, log_name: str, what: str,
                   keep_as: str) -> None:
    """Run criu; on failure the error names the cause and where its log was kept."""
    log.debug("running %s", " ".join(argv))
    proc = await run_tool(argv)
    err = proc.stderr
    if proc.returncode == 0:
        return
    log_path = os.path.join(log_dir, log_name)
    if proc.returncode < 0:
        cause = f"criu was killed by {signal.Signals(-proc.returncode).name}"
    else:
        cause = first_error(log_path) or err.decode().strip() or f"status {proc.returncode}"
    kept = keep_log(log_path, keep_as)
    raise Unknown(f"criu {what} failed: {cause}" + (f" (log: {kept})" if kept else ""))


# criu logs these on every run here, failing or not; they explain nothing.
_NOISE = ("Can't setup RLIMIT_NOFILE",)


def first_error(log_path: str) -> str:
    """The first error criu logged (the cause; later ones follow from it)."""
    try:
        with open(log_path, errors="replace") as f:
            lines = [line.strip() for line in f
                     if "Error (" in line and not any(n in line for n in _NOISE)]
    except OSError:
        return ""
    return lines[0] if lines else ""


def keep_log(log_path: str, keep_as: str) -> str:
    """Copy a failed run's log somewhere that outlives the work directory."""
    try:
        os.makedirs(os.path.dirname(keep_as), mode=0o700, exist_ok=True)
        with open(log_path, "rb") as src, open(keep_as, "wb") as dst:
            dst.write(src.read())
        return keep_as
    except OSError:
        return ""


def write_descriptors(image_dir: str, descriptors: list[str]) -> None:
    with open(os.path.join(image_dir, DESCRIPTORS), "w") as f:
        json.dump(descriptors, f)


def read_descriptors(image_dir: str) -> list[str]:
    try:
        with open(os.path.join(image_dir, DESCRIPTORS)) as f:
            value = json.load(f)
    except (OSError, ValueError):
        raise FailedPrecondition(f"checkpoint in {image_dir} has no readable {DESCRIPTORS}"
                                 ) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FailedPrecondition(f"{DESCRIPTORS} of the checkpoint is malformed")
    return value


async def bind_root(rootfs: str, target: str) -> None:
    """criu restores into a root that is a mount point of its own."""
    os.makedirs(target, exist_ok=True)
    done = await run_tool(["mount", "--bind", rootfs, target])
    if done.returncode != 0:
        raise FailedPrecondition(f"bind-mounting the rootfs {rootfs} for the restore: "
                                 f"{done.stderr.decode(errors='replace').strip()}")


async def unbind_root(target: str) -> None:
    await run_tool(["umount", "-l", target])
    try:
        os.rmdir(target)
    except OSError:
        pass


def restore_payload(key: str, record: bytes, argv: list[str], pidfile: str,
                    has_pidns: bool) -> P.Payload:
    p = P.Payload().str(P.T_KEY, key).bytes(P.T_ANNOTATION, record)
    p.strs(P.T_ARG, argv).str(P.T_ENV, "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
    p.str(P.T_PIDFILE, pidfile)
    if has_pidns:
        p.u64(P.T_CLONE_FLAGS, 0x20000000)  # CLONE_NEWPID: execs enter the restored pidns
    return p
