"""What the init and exec processes of the native runtime share: state, exits, waiters.

Exits come from the supervisor as events. An exit that arrives while the process's Start is
still being answered is held back until Start has published `/tasks/start` (or
`/tasks/exec-started`), so every client sees a process start before it exits."""

from __future__ import annotations

import asyncio
import signal as signals
from typing import TYPE_CHECKING

from agent.api.containerd.events import task_pb2 as ev
from agent.errors import FailedPrecondition, InvalidArgument, NotFound
from agent.runtime.native import errmap
from agent.runtime.native.supervisor import SupervisorError
from agent.runtime.task import IO, Exit, Process, ProcessState, Status

if TYPE_CHECKING:
    from agent.runtime.native.task import NativeTask


def check_signal(sig: int) -> None:
    if not 1 <= sig <= 64:
        raise InvalidArgument(f"signal {sig} is out of range (1 to 64)")


class NativeProcess(Process):
    def __init__(self, task: "NativeTask", process_id: str, key: str, io: IO):
        self.task = task
        self.id = process_id
        self.key = key
        self.io = io
        self.pid = 0
        self.status = Status.CREATED
        self.exit: Exit | None = None
        self.exit_published = False
        self._waiters: list[asyncio.Future] = []
        self._starting = False
        self._start_done = asyncio.Event()  # set once a Start has answered, either way
        self._held_exit: Exit | None = None
        self._deleting = False  # a Delete has taken it: no Start, and a second one finds nothing

    @property
    def runtime(self):
        return self.task.runtime

    def state(self) -> ProcessState:
        status = self.status
        # An exec follows its container's pause state, also one not started yet (as
        # containerd's runc shim reports it); an exited one stays STOPPED.
        if status in (Status.RUNNING, Status.CREATED) and self.task is not self \
                and self.task.status in (Status.PAUSED, Status.PAUSING):
            status = self.task.status
        return ProcessState(self.id, self.pid, status, self.io, self.exit)

    async def wait(self) -> Exit:
        if self.exit is not None:
            return self.exit
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return await fut

    def _abort_waiters(self, exc: Exception) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._waiters.clear()

    # -- exits ----------------------------------------------------------------------------

    def on_exit(self, exit: Exit, publish: bool = True) -> None:
        """The supervisor reported this process's exit."""
        if self.exit is not None:
            return
        if self._starting:
            self._held_exit = exit
            return
        self.exit = exit
        self.status = Status.STOPPED
        if publish and not self.exit_published:
            self.exit_published = True
            self.publish_exit()
        # Published (or deliberately not): after a restart it is not published again.
        if self.pid:
            self.runtime.acknowledge_exit(self.key)
        self.exited()
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(exit)
        self._waiters.clear()

    def publish_exit(self) -> None:
        assert self.exit is not None
        msg = ev.TaskExit(container_id=self.task.id, id=self.id, pid=self.exit.pid,
                          exit_status=self.exit.status)
        msg.exited_at.FromNanoseconds(self.exit.timestamp_ns)
        self.runtime.publish(self.task.namespace, "/tasks/exit", msg)

    def exited(self) -> None:
        """Hook for subclasses: after the exit is recorded, before waiters wake."""

    def _begin_start(self) -> None:
        self._starting = True
        self._start_done.clear()

    def _end_start(self) -> None:
        """Start has published its event: deliver an exit that came in meanwhile."""
        self._starting = False
        self._start_done.set()
        held, self._held_exit = self._held_exit, None
        if held is not None:
            self.on_exit(held)

    # -- signals and terminal ---------------------------------------------------------------

    async def kill(self, signal: int, all: bool = False) -> None:
        check_signal(signal)
        if self.status == Status.STOPPED or self.exit is not None:
            raise NotFound("process already finished")
        try:
            await self.runtime.supervisor.kill(self.key, signal)
        except SupervisorError as e:
            raise errmap.to_agent_error(e, f"signal {signals.Signals(signal).name if signal < 32 else signal}") from None

    async def resize_pty(self, width: int, height: int) -> None:
        if self.pid == 0 or self.exit is not None or not self.io.terminal:
            return  # a resize racing start or exit, or without a terminal, is a no-op
        try:
            await self.runtime.supervisor.resize(self.key, width, height)
        except SupervisorError as e:
            raise errmap.to_agent_error(e, "resizing the terminal") from None

    async def close_io(self) -> None:
        if self.exit is not None or self.pid == 0:
            return
        try:
            await self.runtime.supervisor.close_stdin(self.key)
        except SupervisorError as e:
            raise errmap.to_agent_error(e, "closing stdin") from None

    async def _forget(self, doing: str) -> None:
        """Have the supervisor drop this process's record (one it does not hold is fine)."""
        try:
            await self.runtime.forget_process(self.key)
        except SupervisorError as e:
            raise errmap.to_agent_error(e, doing) from None

    async def _delete_once(self, gone: str) -> Exit:
        """The subclass's _delete(), for one Delete at a time: another one meanwhile is
        NotFound(gone); a failed one leaves the process to be deleted again."""
        if self._deleting:
            raise NotFound(gone)
        self._deleting = True
        try:
            return await self._delete()
        except BaseException:
            self._deleting = False
            raise

    async def _delete(self) -> Exit:
        raise NotImplementedError

    def _require_not_running(self, what: str) -> None:
        if self.status in (Status.RUNNING, Status.PAUSED, Status.PAUSING):
            raise FailedPrecondition(f"cannot {what} a running process; kill it and wait first")
