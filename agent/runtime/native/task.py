"""A task of the native runtime: the container's init process, its execs, its cgroup."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from signal import SIGKILL
from typing import TYPE_CHECKING, Any

import orjson

from agent import identifiers
from agent.api.containerd.events import task_pb2 as ev
from agent.cgroups import resources as cgroup_resources
from agent.cgroups.base import Cgroup
from agent.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from agent.runtime.native import checkpoint, errmap, stdio
from agent.runtime.native import protocol as P
from agent.runtime.native import spec as specmod
from agent.runtime.native.process import NativeProcess, check_signal
from agent.runtime.native.supervisor import SupervisorError
from agent.runtime.task import IO, UNKNOWN_EXIT_STATUS, Exit, ProcessInfo, Status, Task

if TYPE_CHECKING:
    from agent.runtime.native.runtime import NativeRuntime

# How long a failed start waits for the supervisor to confirm the child is gone.
REAP_WAIT = 5.0


class ExecProcess(NativeProcess):
    """A process started inside a running task (`ctr task exec`)."""

    def __init__(self, task: "NativeTask", exec_id: str, spec: specmod.ProcessSpec, io: IO):
        super().__init__(task, exec_id, f"{task.key}/{exec_id}", io)
        self.spec = spec
        self.stdin_closed = False
        self.start_failed = False
        self._gone = asyncio.get_running_loop().create_future()  # the supervisor is done with it

    async def start(self) -> int:
        if self._deleting:
            raise NotFound(f"process does not exist {self.id}")
        if self.status == Status.STOPPED or self.start_failed:
            raise FailedPrecondition(f"cannot start exec {self.id}: it has already run")
        if self.pid or self._starting:
            raise FailedPrecondition(f"cannot start exec {self.id}: it is already running")
        task_status = self.task.status
        if task_status in (Status.PAUSED, Status.PAUSING):
            raise FailedPrecondition(f"cannot start exec {self.id}: the task is paused")
        if task_status != Status.RUNNING:
            raise FailedPrecondition(f"cannot start exec {self.id}: the task is {task_status.name.lower()}")
        payload = P.Payload().str(P.T_KEY, self.key).str(P.T_PARENT_KEY, self.task.key)
        payload.bytes(P.T_ANNOTATION, self.record())
        self.spec.add_to(payload)
        opened = stdio.open_into(payload, self.io, stdin_closed=self.stdin_closed)
        try:
            procs_fds, dir_fd = self.runtime.join_cache.files(self.task.cgroup)  # kept open
        except OSError as e:
            opened.close()
            raise FailedPrecondition(f"cannot start exec {self.id}: joining the cgroup of task "
                                     f"{self.task.id}: {e.strerror}") from None
        for fd in procs_fds:
            payload.fd(P.T_CGROUP_PROCS, fd)
        if dir_fd is not None:
            payload.fd(P.T_CGROUP_DIR, dir_fd)
        self._begin_start()
        try:
            try:
                pid = await self.runtime.supervisor.exec(payload)
            except Exception as e:
                self.start_failed = True
                self.status = Status.STOPPED
                if isinstance(e, SupervisorError) and e.pid:
                    self.pid = e.pid
                else:
                    self._mark_gone()  # no child was made: no exit will follow
                raise errmap.to_agent_error(e, f"exec {self.spec.args[0]!r} in task {self.task.id}") from None
            finally:
                opened.close()
            self.pid = pid
            self.status = Status.RUNNING
            self.runtime.publish(self.task.namespace, "/tasks/exec-started",
                                 ev.TaskExecStarted(container_id=self.task.id, exec_id=self.id, pid=pid))
        finally:
            self._end_start()  # whatever happened: calls waiting on this Start go on
        return pid

    def on_exit(self, exit: Exit, publish: bool = True) -> None:
        super().on_exit(exit, publish=publish and not self.start_failed)
        if not self._starting:
            self._mark_gone()

    async def close_io(self) -> None:
        if self._starting:
            # Start has handed stdin over already: close it once the process exists. ctr
            # sends CloseIO as soon as its input ends, which for `echo x | ctr task exec`
            # is while Start is still on its way.
            await self._start_done.wait()
        if self.pid == 0 and not self.start_failed:
            self.stdin_closed = True  # remembered: the process starts with stdin at EOF
            return
        await super().close_io()

    def abandon(self, at_ns: int) -> None:
        """The task's init exited before this exec was started: it never can be now, so it
        ends here, with containerd's unknown exit status (no /tasks/exit: it never ran)."""
        if self.pid or self.exit is not None or self._starting:
            return
        self.on_exit(Exit(0, UNKNOWN_EXIT_STATUS, at_ns), publish=False)

    def _mark_gone(self) -> None:
        if not self._gone.done():
            self._gone.set_result(None)

    def record(self) -> bytes:
        """What the supervisor keeps for this exec, so a restarted agent can take it back."""
        io = self.io
        return orjson.dumps({"v": 1, "io": [io.stdin, io.stdout, io.stderr, io.terminal]})

    async def kill(self, signal: int, all: bool = False) -> None:
        check_signal(signal)
        if self.pid == 0 and not self.start_failed:
            raise FailedPrecondition(f"process {self.id} not created: it was never started")
        await super().kill(signal, all)

    async def delete(self) -> Exit:
        if self._starting:
            # Decided by the Start under way: a started exec is refused below, a failed one
            # is deleted. Deleting it as never started would lose a running process.
            await self._start_done.wait()
        self._require_not_running("delete")
        return await self._delete_once(f"process does not exist {self.id}")

    async def _delete(self) -> Exit:
        if self.pid == 0 and not self.start_failed:
            # Never started: nothing runs; anyone waiting learns it will never exit.
            self._abort_waiters(NotFound(f"process {self.id} was deleted before it started"))
            self.task.remove_exec(self.id)
            return self.exit or Exit(0, 0, time.time_ns())
        if self.start_failed and not self._gone.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._gone), REAP_WAIT)
            except asyncio.TimeoutError:
                pass
        if self.exit is not None or self.start_failed:
            # Awaited: once DeleteProcess answers, the supervisor has dropped the record, so an
            # agent killed right after does not find the deleted exec again at its restart.
            await self._forget(f"deleting exec {self.id}")
        self.task.remove_exec(self.id)
        if self.exit is None:
            self._abort_waiters(NotFound(f"process {self.id} failed to start and was deleted"))
            return Exit(self.pid, 127, time.time_ns())
        return self.exit


async def _starts_done(execs) -> None:
    """Until the Starts under way of these execs have answered."""
    starting = [e._start_done.wait() for e in execs if e._starting]
    if starting:
        await asyncio.gather(*starting)


class NativeTask(NativeProcess, Task):
    def __init__(self, runtime: "NativeRuntime", namespace: str, task_id: str, bundle: str,
                 cgroup: Cgroup, io: IO, has_pidns: bool, rootfs: str, runtime_name: str = ""):
        self.namespace = namespace
        self._runtime = runtime
        super().__init__(self, task_id, f"{namespace}/{task_id}", io)
        self.bundle = bundle  # "" unless the task has a directory of its own (rootfs mounts)
        self.cgroup = cgroup
        self.has_pidns = has_pidns
        self.binds: list[str] = []  # destinations of host bind mounts (external to a checkpoint)
        self.restored = False  # made from a checkpoint: stopped until Start continues it
        self.rootfs = rootfs
        self.execs: dict[str, ExecProcess] = {}
        self.created_at_ns = time.time_ns()
        self.start_failed = False
        self.runtime_name = runtime_name  # the container's runtime name, for Metrics filters
        self._sigkill_sent = False  # the init was sent SIGKILL: it is dying, not to be paused

    def record(self) -> bytes:
        """What the supervisor keeps with the init, so a restarted agent can take it back."""
        io = self.io
        return orjson.dumps({
            "v": 1, "ns": self.namespace, "id": self.id, "bundle": self.bundle,
            "rootfs": self.rootfs, "cgroup": self.cgroup.path, "pidns": self.has_pidns,
            "io": [io.stdin, io.stdout, io.stderr, io.terminal],
            "created": self.created_at_ns, "runtime": self.runtime_name, "binds": self.binds,
            "restored": self.restored,
        })

    @property
    def runtime(self) -> "NativeRuntime":
        return self._runtime

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        if self._starting:
            raise FailedPrecondition(f"task {self.id} is already starting")
        if self._deleting:
            raise NotFound(f"task {self.id} is being deleted")
        if self.pid == 0 and self.status == Status.CREATED:
            # Reserved by a Create still under way: its process does not exist yet.
            raise FailedPrecondition(f"task {self.id} is still being created")
        if self.status != Status.CREATED:
            what = "stopped" if self.status == Status.STOPPED else "running"
            raise FailedPrecondition(f"cannot start a {what} process (task {self.id})")
        self._begin_start()
        try:
            try:
                pid = await self.runtime.supervisor.start(self.key)
            except Exception as e:
                self.start_failed = True
                self.status = Status.STOPPED
                raise errmap.to_agent_error(e, f"starting task {self.id}") from None
            if self.restored:
                self.cgroup.signal_all(signal.SIGCONT)  # criu left the whole tree stopped
            self.status = Status.RUNNING
            self.runtime.publish(self.namespace, "/tasks/start",
                                 ev.TaskStart(container_id=self.id, pid=pid))
        finally:
            self._end_start()  # whatever happened: an exit held back meanwhile is delivered
        return pid

    def on_exit(self, exit: Exit, publish: bool = True) -> None:
        if self.exit is None and not self._starting:
            for hook in self.runtime.exit_hooks:
                hook(self)
        super().on_exit(exit, publish=publish and not self.start_failed)
        if self.exit is not None:  # recorded (not held back while Start answers)
            # Running execs were killed with the init (the supervisor reported their exits
            # first); the ones never started would otherwise leave their Waits hanging.
            for ex in list(self.execs.values()):
                ex.abandon(self.exit.timestamp_ns)

    async def kill(self, signal: int, all: bool = False) -> None:
        check_signal(signal)
        if signal == SIGKILL:
            self._sigkill_sent = True  # before sending: a Pause from now on gives up
        if all:
            if self.exit is not None:
                raise NotFound("process already finished")
            self.cgroup.signal_all(signal)  # thaws after a SIGKILL
        else:
            await super().kill(signal)
        if signal == SIGKILL and self.status == Status.PAUSED:
            # As runc: a frozen init never acts on SIGKILL on cgroup v1, so the task is thawed
            # for it (its exit then follows). A Pause still freezing thaws it itself.
            if not all:
                self.cgroup.thaw()
            self.status = Status.RUNNING

    def thaw_for_pending_kill(self) -> None:
        """Found frozen with SIGKILL pending for its init (killed while paused by an agent that
        went before thawing it): thawed, so that it dies, and never paused again."""
        self._sigkill_sent = True
        self.cgroup.thaw()

    async def delete(self) -> Exit:
        """Remove the task: refused while it runs; a created task's init is stopped."""
        if self._starting:
            raise FailedPrecondition(f"task {self.id} is starting")
        self._require_not_running("delete")
        return await self._delete_once(f"task {self.id} is being deleted")

    async def _delete(self) -> Exit:
        if self.status == Status.CREATED:
            await self._forget(f"deleting task {self.id}")  # kills and reaps the waiting init
            exit = self.exit or Exit(self.pid, 137, time.time_ns())
            self.on_exit(exit, publish=False)  # a Wait on the created task answers
        else:
            if self.exit is None:  # start failed; the supervisor reports the exit soon
                try:
                    await asyncio.wait_for(self.wait(), REAP_WAIT)
                except (asyncio.TimeoutError, Exception):
                    pass
            exit = self.exit or Exit(self.pid, 127, time.time_ns())
            # An exec Start under way may yet have made a process: known before it is forgotten.
            await _starts_done(self.execs.values())
            for ex in list(self.execs.values()):
                if ex.pid:
                    try:
                        await ex.wait() if ex.exit is None and not ex.start_failed else None
                        await self.runtime.forget_process(ex.key)
                    except SupervisorError:
                        pass
                ex._abort_waiters(NotFound(f"process {ex.id} was deleted with its task"))
            self.execs.clear()
            await self._forget(f"deleting task {self.id}")
        self.runtime.join_cache.drop(self.cgroup)
        await self.cgroup.delete()
        return exit

    # -- execs -------------------------------------------------------------------------------

    async def exec(self, exec_id: str, spec: dict[str, Any], io: IO) -> ExecProcess:
        if exec_id == "":
            raise InvalidArgument("exec id cannot be empty")
        identifiers.validate(exec_id, "exec id")
        if exec_id in self.execs:
            raise AlreadyExists(f"exec id {exec_id}: already exists")
        if self.status == Status.STOPPED or self.exit is not None:
            raise FailedPrecondition(f"cannot exec in a stopped state (task {self.id})")
        if self.status in (Status.PAUSED, Status.PAUSING):
            raise FailedPrecondition(f"cannot exec in a paused state (task {self.id})")
        if self.status != Status.RUNNING:
            raise FailedPrecondition(f"cannot exec in a created state (task {self.id} is not started)")
        pspec = specmod.parse_process(spec, "exec process")
        pspec.terminal = pspec.terminal or io.terminal
        io.terminal = pspec.terminal
        stdio.check_io(io)
        proc = ExecProcess(self, exec_id, pspec, io)
        self.execs[exec_id] = proc
        self.runtime.publish(self.namespace, "/tasks/exec-added",
                             ev.TaskExecAdded(container_id=self.id, exec_id=exec_id))
        return proc

    def process(self, exec_id: str) -> ExecProcess:
        proc = self.execs.get(exec_id)
        if proc is None:
            raise NotFound(f"process does not exist {exec_id}")
        return proc

    def remove_exec(self, exec_id: str) -> None:
        self.execs.pop(exec_id, None)

    # -- the whole container -------------------------------------------------------------------

    async def pids(self) -> list[ProcessInfo]:
        if self.exit is not None:
            return []
        by_pid = {e.pid: e.id for e in self.execs.values() if e.pid and e.exit is None}
        return [ProcessInfo(pid, by_pid.get(pid, "")) for pid in self.cgroup.pids()]

    async def pause(self) -> None:
        if self.status in (Status.PAUSED, Status.PAUSING):
            raise FailedPrecondition(f"task {self.id} is already paused")
        if self.status != Status.RUNNING:
            raise FailedPrecondition(f"cannot pause a {self.status.name.lower()} task ({self.id})")
        if self._sigkill_sent:
            raise FailedPrecondition(f"cannot pause task {self.id}: it is being killed")
        self.status = Status.PAUSING
        try:
            # An exec being started would be frozen half-made, and its Start would hang until
            # a resume: let those finish first (new ones are refused while PAUSING).
            await _starts_done(self.execs.values())
            await self.cgroup.freeze()
        except BaseException:
            if self.status == Status.PAUSING:
                self.status = Status.RUNNING
            raise
        if self.exit is not None or self._sigkill_sent:
            # The init exited or was killed while we froze: a stopped task is never marked
            # paused, and a killed one must be thawed to die.
            self.cgroup.thaw()
            if self.status == Status.PAUSING:
                self.status = Status.RUNNING
            raise FailedPrecondition(f"task {self.id} exited or was killed while pausing")
        self.status = Status.PAUSED
        self.runtime.publish(self.namespace, "/tasks/paused", ev.TaskPaused(container_id=self.id))

    async def resume(self) -> None:
        if self.status != Status.PAUSED:
            raise FailedPrecondition(f"cannot resume task {self.id}: it is not paused")
        self.cgroup.thaw()
        self.status = Status.RUNNING
        self.runtime.publish(self.namespace, "/tasks/resumed", ev.TaskResumed(container_id=self.id))

    async def update(self, resources: Any, annotations: dict[str, str]) -> None:
        if self.exit is not None or self.status == Status.STOPPED:
            raise FailedPrecondition(f"cannot update a stopped task ({self.id})")
        if resources is None:
            return
        parsed = cgroup_resources.parse(resources)
        if parsed.devices is not None:
            raise InvalidArgument("device rules cannot be changed by Update")
        self.cgroup.apply(parsed, update=True)

    async def checkpoint(self, path: str, options: Any) -> None:
        """Dump the task with CRIU into `path` (options: a checkpoint.CheckpointRequest)."""
        req: checkpoint.CheckpointRequest = options
        req.check()
        if self.status == Status.CREATED:
            raise FailedPrecondition(f"cannot checkpoint a task in created state ({self.id})")
        if self.exit is not None or self.status == Status.STOPPED:
            raise FailedPrecondition(f"cannot checkpoint a stopped task ({self.id})")
        if self.io.terminal:
            raise FailedPrecondition(f"cannot checkpoint task {self.id}: it has a terminal")
        criu = await self.runtime.criu.require()
        was_paused = self.status == Status.PAUSED
        os.makedirs(path, mode=0o700, exist_ok=True)
        checkpoint.write_descriptors(path, checkpoint.stdio_descriptors(self.pid))
        argv = checkpoint.dump_argv(criu, self.pid, self.rootfs, self.cgroup.freezer_dir(), req,
                                    self.binds, self.cgroup.controllers())
        await checkpoint.run_criu(
            argv, req.work_path or path, checkpoint.DUMP_LOG, "dump",
            keep_as=os.path.join(self.runtime.state_dir, "logs",
                                 f"dump-{self.namespace}-{self.id}.log"))
        if was_paused and not req.exit and self.exit is None and self.status == Status.PAUSED:
            # criu thaws what it froze: a task still paused stays so (one resumed or killed
            # meanwhile is not frozen again).
            await self.cgroup.freeze()
        self.runtime.publish(self.namespace, "/tasks/checkpointed",
                             ev.TaskCheckpointed(container_id=self.id, checkpoint=path))

    def stats_dirs(self) -> dict[str, str] | str:
        return self.cgroup.stat_dirs()
