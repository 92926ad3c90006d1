"""The agent's link to the native supervisor (one per host, per state directory).

The agent starts the supervisor when none answers on its socket and re-attaches to the
running one otherwise, so containers outlive agent restarts. Requests are answered in any
order (matched by id); exits arrive as events whenever a held process ends."""

from __future__ import annotations

import array
import collections
import asyncio
import errno
import logging
import os
import socket
import subprocess
from dataclasses import dataclass
from typing import Callable

from agent.native import SUPERVISOR_BINARY
from agent.runtime.native import protocol as P

log = logging.getLogger(__name__)

_CMSG_SPACE = socket.CMSG_SPACE(P.MAX_FDS * 4)


class SupervisorError(Exception):
    """A refused request. `pid` is set when a child process was made (and failed): its exit
    will be reported like any other."""

    def __init__(self, code: int, message: str, pid: int = 0):
        super().__init__(message)
        self.errno = code
        self.message = message
        self.pid = pid


class SupervisorLost(SupervisorError):
    """The supervisor went away (crashed or was killed): every request fails with it."""

    def __init__(self, message: str):
        super().__init__(errno.ENOTCONN, message)


@dataclass
class ExitEvent:
    key: str
    pid: int
    exit_code: int
    wait_status: int
    exited_at_ns: int


@dataclass
class ProcInfo:
    key: str
    pid: int
    state: int
    terminal: bool
    exit_code: int
    exited_at_ns: int
    exit_acked: bool
    annotation: bytes


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def socket_path(state: str) -> str:
    return os.path.join(state, "supervisor.sock")


class Supervisor:
    def __init__(self, state_dir: str, binary: str = SUPERVISOR_BINARY,
                 on_exit: Callable[[ExitEvent], None] | None = None,
                 on_lost: Callable[[], None] | None = None,
                 claim: Callable[[], int] | None = None):
        self.state_dir = state_dir
        # Called before starting a supervisor: a locked descriptor the supervisor keeps open
        # for its life (the claim on the cgroup parent); it raises when another holds it.
        self.claim = claim
        self.binary = binary
        self.on_exit = on_exit
        self.on_lost = on_lost
        self.sock: socket.socket | None = None
        self.pid = 0
        self.version = 0
        self.started_at_ns = 0
        self.started_here = False
        self._child: subprocess.Popen | None = None
        self._next_id = 1
        self._pending: dict[int, asyncio.Future] = {}
        self._outbox: collections.deque[tuple[int, asyncio.Future, bytes, list[int]]] = \
            collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting = False

    # -- connection -------------------------------------------------------------------

    async def connect(self) -> None:
        """Attach to the running supervisor or start one."""
        self._loop = asyncio.get_running_loop()
        path = socket_path(self.state_dir)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self._connecting = True
        self.started_here = False
        try:
            for attempt in range(3):
                try:
                    await self._attach(path)
                    break
                except SupervisorLost:
                    # A supervisor holding nothing leaves when its agent does; one found in
                    # that moment closes on us, and the next attempt starts a new one.
                    if self.started_here or attempt == 2:
                        raise
                    await asyncio.sleep(0.01 * (attempt + 1))
        finally:
            self._connecting = False
        log.info("supervisor pid %d (protocol %d, %s)", self.pid, self.version,
                 "started" if self.started_here else "re-attached")

    async def _attach(self, path: str) -> None:
        sock = _try_connect(path)
        if sock is None:
            self._spawn(path)
            sock = _try_connect(path)
            if sock is None:
                raise SupervisorLost(f"supervisor did not accept on {path}")
        self.sock = sock
        self._loop.add_reader(sock.fileno(), self._on_readable)
        reply = await self.request(P.HELLO, P.Payload().u64(P.T_VERSION, P.VERSION))
        self.version = P.u64(reply.get(P.T_VERSION))
        self.pid = P.u64(reply.get(P.T_PID))
        self.started_at_ns = P.u64(reply.get(P.T_STARTED_AT))

    def _spawn(self, path: str) -> None:
        if not os.access(self.binary, os.X_OK):
            raise SupervisorLost(f"supervisor binary {self.binary} is missing; reinstall the package")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        held = self.claim() if self.claim else -1
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(64)
            logf = os.open(os.path.join(self.state_dir, "supervisor.log"),
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                # Its own session: signals to the agent's process group never reach it.
                args = [self.binary, "--listen-fd", str(listener.fileno())]
                if held >= 0:
                    args += ["--hold-fd", str(held)]
                self._child = subprocess.Popen(
                    args, pass_fds=(listener.fileno(),) + ((held,) if held >= 0 else ()),
                    stdin=subprocess.DEVNULL, stdout=logf,
                    stderr=logf, start_new_session=True, close_fds=True, cwd="/",
                )
            finally:
                os.close(logf)
        finally:
            listener.close()
            if held >= 0:
                os.close(held)  # the supervisor's copy keeps the lock
        self.started_here = True

    def alive(self) -> bool:
        """Whether the supervisor process still runs (not gone, not a zombie)."""
        if not self.pid:
            return False
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                is_ours = f.read().split(b"\0", 1)[0].endswith(b"taskagent-supervisor")
        except OSError:
            return False
        return is_ours and fields[1].split()[0] != b"Z"

    def close(self) -> None:
        """Detach; the supervisor and its processes keep running."""
        if self.sock is not None and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            if self._outbox:
                self._loop.remove_writer(self.sock.fileno())
                for *_, fds in self._outbox:
                    _close_all(fds)
                self._outbox.clear()
            self.sock.close()
            self.sock = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(SupervisorLost("agent detached from the supervisor"))
        self._pending.clear()

    def _lost(self) -> None:
        log.error("the supervisor connection was lost")
        self.close()
        if self._child is not None:
            self._child.poll()  # reap it if it was ours
        if self.on_lost and not self._connecting:
            self.on_lost()

    # -- requests -----------------------------------------------------------------------

    async def request(self, msg_type: int, payload: P.Payload) -> dict:
        return await self.send(msg_type, payload)

    def send(self, msg_type: int, payload: P.Payload) -> asyncio.Future:
        """Send a request now, in order with every other, and return the future of its
        reply. The caller may close the payload's descriptors once this returns."""
        if self.sock is None:
            raise SupervisorLost("not connected to the supervisor")
        msg_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        data = P.packet(msg_type, msg_id, payload.encode())
        fut = self._loop.create_future()
        self._pending[msg_id] = fut
        if not self._outbox:
            try:
                self._sendmsg(data, payload.fds)
                return fut
            except BlockingIOError:
                pass
            except OSError as e:
                self._pending.pop(msg_id, None)
                self._lost()
                raise SupervisorLost(f"sending to the supervisor: {e}") from None
        # The link is full: queued, and sent in order as it drains. The queue keeps copies of
        # the descriptors, since the caller closes its own when its request ends; a request
        # cancelled while queued is never sent.
        self._outbox.append((msg_id, fut, data, [os.dup(fd) for fd in payload.fds]))
        if len(self._outbox) == 1:
            self._loop.add_writer(self.sock.fileno(), self._flush)
        return fut

    def _sendmsg(self, data: bytes, fds: list[int]) -> None:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self.sock.sendmsg([data], ancillary)

    def _flush(self) -> None:
        while self._outbox and self.sock is not None:
            msg_id, fut, data, fds = self._outbox[0]
            if not fut.done():
                try:
                    self._sendmsg(data, fds)
                except BlockingIOError:
                    return
                except OSError:
                    self._lost()  # fails every pending reply
                    return
            else:
                self._pending.pop(msg_id, None)
            self._outbox.popleft()
            _close_all(fds)
        if self.sock is not None:
            self._loop.remove_writer(self.sock.fileno())

    def _on_readable(self) -> None:
        while self.sock is not None:
            try:
                data, ancdata, flags, _ = self.sock.recvmsg(P.MAX_PACKET, _CMSG_SPACE)
            except BlockingIOError:
                return
            except OSError:
                self._lost()
                return
            _close_passed_fds(ancdata)
            if not data:
                self._lost()
                return
            try:
                self._dispatch(data)
            except Exception:
                log.exception("handling a supervisor message")

    def _dispatch(self, data: bytes) -> None:
        msg_type, msg_id, offset = P.parse_header(data)
        fields = P.decode(data, offset)
        if msg_type == P.REPLY:
            fut = self._pending.pop(msg_id, None)
            if fut is None or fut.done():
                return
            code = P.u64(fields.get(P.T_ERRNO))
            if code:
                fut.set_exception(SupervisorError(code, P.text(fields.get(P.T_ERRMSG)),
                                                  P.u64(fields.get(P.T_PID))))
            else:
                fut.set_result(fields)
        elif msg_type == P.EV_EXIT and self.on_exit is not None:
            self.on_exit(ExitEvent(
                key=P.text(fields.get(P.T_KEY)),
                pid=P.u64(fields.get(P.T_PID)),
                exit_code=P.u64(fields.get(P.T_EXIT_CODE)),
                wait_status=P.u64(fields.get(P.T_WAIT_STATUS)),
                exited_at_ns=P.u64(fields.get(P.T_EXITED_AT)),
            ))

    # -- operations ---------------------------------------------------------------------

    async def create(self, payload: P.Payload) -> int:
        return P.u64((await self.request(P.CREATE, payload)).get(P.T_PID))

    async def restore(self, payload: P.Payload) -> int:
        return P.u64((await self.request(P.RESTORE, payload)).get(P.T_PID))

    async def start(self, key: str) -> int:
        reply = await self.request(P.START, P.Payload().str(P.T_KEY, key))
        return P.u64(reply.get(P.T_PID))

    async def exec(self, payload: P.Payload) -> int:
        return P.u64((await self.request(P.EXEC, payload)).get(P.T_PID))

    async def kill(self, key: str, signal: int) -> None:
        await self.request(P.KILL, P.Payload().str(P.T_KEY, key).u64(P.T_SIGNAL, signal))

    async def resize(self, key: str, width: int, height: int) -> None:
        await self.request(P.RESIZE, P.Payload().str(P.T_KEY, key).u64(P.T_WIDTH, width)
                           .u64(P.T_HEIGHT, height))

    async def close_stdin(self, key: str) -> None:
        await self.request(P.CLOSE_STDIN, P.Payload().str(P.T_KEY, key))

    async def forget(self, key: str) -> None:
        await self.request(P.FORGET, P.Payload().str(P.T_KEY, key))

    async def ack_exit(self, key: str) -> None:
        await self.request(P.ACK_EXIT, P.Payload().str(P.T_KEY, key))

    async def list(self) -> list[ProcInfo]:
        """Every process the supervisor holds, in creation order (fetched in pages)."""
        out: list[ProcInfo] = []
        cursor = 0
        while True:
            reply = await self.request(P.LIST, P.Payload().u64(P.T_CURSOR, cursor))
            procs = reply.get(P.T_PROC) or []
            for raw in procs if isinstance(procs, list) else [procs]:
                f = P.decode(raw)
                out.append(ProcInfo(
                    key=P.text(f.get(P.T_KEY)), pid=P.u64(f.get(P.T_PID)),
                    state=P.u64(f.get(P.T_STATE)), terminal=bool(P.u64(f.get(P.T_TERMINAL))),
                    exit_code=P.u64(f.get(P.T_EXIT_CODE)),
                    exited_at_ns=P.u64(f.get(P.T_EXITED_AT)),
                    exit_acked=bool(P.u64(f.get(P.T_EXIT_ACKED))),
                    annotation=bytes(f.get(P.T_ANNOTATION) or b""),
                ))
            if P.T_CURSOR not in reply:
                return out
            cursor = P.u64(reply[P.T_CURSOR])


def _try_connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return None
        raise
    s.setblocking(False)
    return s


def _close_passed_fds(ancdata) -> None:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            for fd in fds:
                os.close(fd)


def shutdown_sync(path: str, force: bool = True, timeout: float = 10.0) -> bool:
    """Stop a supervisor from outside the event loop (tests, uninstall): kill what it holds
    (when forced) and wait for it to exit. Returns False when none was running."""
    sock = _try_connect(path)
    if sock is None:
        return False
    sock.setblocking(True)
    sock.settimeout(timeout)
    pid = 0
    try:
        sock.send(P.packet(P.HELLO, 1, P.Payload().u64(P.T_VERSION, P.VERSION).encode()))
        while True:
            data = sock.recv(P.MAX_PACKET)
            msg_type, msg_id, off = P.parse_header(data)
            if msg_type == P.REPLY and msg_id == 1:
                pid = P.u64(P.decode(data, off).get(P.T_PID))
                break
        sock.send(P.packet(P.SHUTDOWN, 2, P.Payload().u64(P.T_FORCE, int(force)).encode()))
        while True:
            data = sock.recv(P.MAX_PACKET)
            if not data:
                break
            msg_type, msg_id, off = P.parse_header(data)
            if msg_type == P.REPLY and msg_id == 2:
                fields = P.decode(data, off)
                if P.u64(fields.get(P.T_ERRNO)):
                    raise SupervisorError(P.u64(fields.get(P.T_ERRNO)),
                                          P.text(fields.get(P.T_ERRMSG)))
        _wait_gone(pid, timeout)
        return True
    except (ConnectionResetError, BrokenPipeError):
        # It was leaving already (nothing held, its agent gone) and closed on us.
        _wait_gone(pid, timeout)
        return bool(pid)
    finally:
        sock.close()


def _wait_gone(pid: int, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return  # exited; only its parent's reaping is left
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        try:  # it may be our own child (the tests start agents that start it)
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.01)
