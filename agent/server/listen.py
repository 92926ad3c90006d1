"""Preparing the unix socket: a private directory, stale sockets replaced, and a refusal
when another agent is already serving there."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat


class ListenError(Exception):
    """The socket cannot be served; the message is the one line for the operator."""


def prepare_socket_path(path: str) -> None:
    if not os.path.isabs(path):
        raise ListenError(f"socket address {path} must be an absolute path")
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o711, exist_ok=True)
    st = os.stat(directory)
    if st.st_mode & stat.S_IWOTH:
        raise ListenError(
            f"socket directory {directory} is world-writable; use a directory only root can write"
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"{path} exists and is not a socket; refusing to replace it")
    if _is_live(path):
        raise ListenError(f"another agent is already serving on {path}")
    os.unlink(path)  # stale: left behind by an agent that died


def _is_live(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise ListenError(f"cannot probe existing socket {path}: {e}") from None
    finally:
        probe.close()


def lock_state_dir(state: str) -> int:
    """Hold an exclusive lock on the state directory for the agent's lifetime."""
    os.makedirs(state, mode=0o711, exist_ok=True)
    fd = os.open(os.path.join(state, "agent.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ListenError(
            f"another agent (pid {holder}) is running with state directory {state}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def agent_holding(state: str) -> str | None:
    """The pid (as written) of the agent holding the state directory's lock, or None."""
    try:
        fd = os.open(os.path.join(state, "agent.lock"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)


def binding_path(path: str) -> str:
    """A private name beside the socket to bind under before it is renamed into place."""
    binding = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}")
    try:
        os.unlink(binding)
    except FileNotFoundError:
        pass
    return binding


def secure_socket(path: str, gid: int) -> None:
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)
