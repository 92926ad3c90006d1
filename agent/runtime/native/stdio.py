"""Opening a client's stdio fifos for a new process, without ever blocking.

Each fifo is opened from both ends, non-blocking: opening the read end first is always
immediate, and then the write end is too. The supervisor relays between these and pipes
of its own that the process gets; it keeps the other end as a hold (a read end on
stdout/stderr so nothing gets EPIPE when the client goes away; a write end on stdin so the
client closing its side is not EOF, only CloseIO is). Paths must be existing fifos:
anything else is refused before it is opened."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from agent.errors import InvalidArgument
from agent.runtime.native import protocol as P
from agent.runtime.task import IO

_RD = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_WR = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC


def check_fifo(path: str, what: str) -> None:
    if not path:
        return
    if "://" in path:
        raise InvalidArgument(f"{what} {path!r}: log URIs are not supported; pass a fifo path")
    if not os.path.isabs(path):
        raise InvalidArgument(f"{what} {path!r} must be an absolute path")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidArgument(f"{what} {path} does not exist") from None
    except OSError as e:
        raise InvalidArgument(f"{what} {path}: {e.strerror}") from None
    if not stat.S_ISFIFO(st.st_mode):
        raise InvalidArgument(f"{what} {path} is not a fifo")


def check_io(io: IO) -> None:
    check_fifo(io.stdin, "stdin")
    check_fifo(io.stdout, "stdout")
    check_fifo(io.stderr, "stderr")


@dataclass
class OpenedStdio:
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()


def _open(path: str, flags: int, opened: OpenedStdio, what: str) -> int:
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise InvalidArgument(f"opening {what} {path}: {e.strerror}") from None
    opened.fds.append(fd)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        raise InvalidArgument(f"{what} {path} is not a fifo")
    return fd


def open_into(payload: P.Payload, io: IO, stdin_closed: bool = False) -> OpenedStdio:
    """Open the fifos of `io` and add their fds to a spawn payload. The caller closes the
    returned fds once the supervisor has them (or on failure). Each is checked to be a fifo
    once open (Create and Exec checked the paths already, before anything was made)."""
    opened = OpenedStdio()
    try:
        if io.stdin and not stdin_closed:
            payload.fd(P.T_STDIN_FD, _open(io.stdin, _RD, opened, "stdin"))
            payload.fd(P.T_STDIN_HOLD, _open(io.stdin, _WR, opened, "stdin"))
        if io.stdout:
            payload.fd(P.T_STDOUT_HOLD, _open(io.stdout, _RD, opened, "stdout"))
            payload.fd(P.T_STDOUT_FD, _open(io.stdout, _WR, opened, "stdout"))
        if io.stderr and not io.terminal:
            payload.fd(P.T_STDERR_HOLD, _open(io.stderr, _RD, opened, "stderr"))
            payload.fd(P.T_STDERR_FD, _open(io.stderr, _WR, opened, "stderr"))
    except BaseException:
        opened.close()
        raise
    return opened
