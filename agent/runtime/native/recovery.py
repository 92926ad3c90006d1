"""Taking tasks back when the agent starts (the seed's init loop that re-monitors every
runtime task), and cleaning up what a crash left half-made.

The supervisor holds every process with the record the agent gave it at create time, and
each exit with whether the agent has published it. So after a restart, crash or upgrade:
every task comes back with its pid, state and execs; exits that happened while the agent
was down are published now, once, execs before their init; and anything without a record
(processes, cgroups, task directories) is removed and logged."""

from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING

import orjson

from agent import identifiers
from agent.runtime.native import protocol as P
from agent.runtime.native.supervisor import ProcInfo
from agent.runtime.native.task import ExecProcess, NativeTask
from agent.runtime.task import IO, Exit, Status

if TYPE_CHECKING:
    from agent.runtime.native.runtime import NativeRuntime

log = logging.getLogger(__name__)


def _io(raw: list) -> IO:
    stdin, stdout, stderr, terminal = raw
    return IO(str(stdin), str(stdout), str(stderr), bool(terminal))


def _record(info: ProcInfo) -> dict | None:
    try:
        record = orjson.loads(info.annotation) if info.annotation else None
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and record.get("v") == 1 else None


def _restore_state(proc, info: ProcInfo) -> Exit | None:
    """Pid and state from the supervisor; returns the exit still to publish, if any."""
    proc.pid = info.pid
    if info.state == P.STATE_CREATED:
        proc.status = Status.CREATED
        return None
    proc.status = Status.RUNNING
    if info.state != P.STATE_EXITED:
        return None
    exit = Exit(info.pid, info.exit_code, info.exited_at_ns)
    if info.exit_acked:
        proc.exit = exit
        proc.status = Status.STOPPED
        proc.exit_published = True
        return None
    return exit


async def recover(runtime: "NativeRuntime") -> None:
    runtime.held_exits = []
    try:
        procs = await runtime.supervisor.list()
        pending = _take_back(runtime, procs)
        for stray in _strays(runtime, procs):
            await _remove_stray(runtime, stray)
    finally:
        held, runtime.held_exits = runtime.held_exits, None
    # Exits that happened while the agent was down: published now, execs first.
    for proc, exit in pending:
        proc.on_exit(exit)
    for event in held:
        runtime.on_supervisor_exit(event)
    await _clean_cgroups(runtime)
    _clean_directories(runtime)
    if runtime.tasks(None):
        log.info("took back %d tasks after a restart", len(runtime.tasks(None)))


def _take_back(runtime: "NativeRuntime", procs: list[ProcInfo]) -> list:
    pending_execs: list = []
    pending_inits: list = []
    for info in procs:
        parts = info.key.split("/")
        record = _record(info)
        if len(parts) != 2 or record is None or [record.get("ns"), record.get("id")] != parts:
            continue
        task = NativeTask(runtime, parts[0], parts[1], record.get("bundle", ""),
                          runtime.cgroups.at(record["cgroup"]), _io(record["io"]),
                          bool(record.get("pidns")), record.get("rootfs", ""),
                          record.get("runtime", ""))
        task.created_at_ns = int(record.get("created", 0))
        task.binds = list(record.get("binds", []))
        task.restored = bool(record.get("restored", False))
        exit = _restore_state(task, info)
        if task.status == Status.RUNNING and exit is None and _frozen(task):
            if _sigkill_pending(task.pid):
                task.thaw_for_pending_kill()  # a frozen process never acts on it on v1
            else:
                task.status = Status.PAUSED
        runtime.adopt(task)
        if exit is not None:
            pending_inits.append((task, exit))
    for info in procs:
        parts = info.key.split("/")
        if len(parts) != 3:
            continue
        task = runtime._tasks.get((parts[0], parts[1]))
        record = _record(info)
        if task is None or record is None:
            continue
        proc = ExecProcess(task, parts[2], None, _io(record["io"]))
        exit = _restore_state(proc, info)
        task.execs[proc.id] = proc
        if exit is not None:
            pending_execs.append((proc, exit))
    return pending_execs + pending_inits


def _sigkill_pending(pid: int) -> bool:
    """Whether SIGKILL waits for the process (its own or its thread group's pending set)."""
    bit = 1 << (9 - 1)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & bit:
                    return True
    except (OSError, ValueError, IndexError):
        pass
    return False


def _frozen(task: NativeTask) -> bool:
    try:
        return task.cgroup.freeze_state() == "FROZEN"
    except OSError:
        return False


def _strays(runtime: "NativeRuntime", procs: list[ProcInfo]) -> list[ProcInfo]:
    held = set()
    for task in runtime.tasks(None):
        held.add(task.key)
        held.update(e.key for e in task.execs.values())
    return [info for info in procs if info.key not in held]


async def _remove_stray(runtime: "NativeRuntime", info: ProcInfo) -> None:
    """A process the supervisor holds without a usable record: it cannot be a task."""
    log.warning("removing process %s (pid %d): it has no task record", info.key, info.pid)
    if info.state != P.STATE_EXITED:
        try:
            await runtime.supervisor.kill(info.key, 9)
        except Exception:
            pass
        return  # its exit comes as an event; the supervisor drops it when forgotten later
    try:
        await runtime.forget_process(info.key)
    except Exception as e:
        log.error("forgetting stray process %s: %s", info.key, e)


async def _clean_cgroups(runtime: "NativeRuntime") -> None:
    """Task cgroups under our parent that no task owns (a crash during Create or Delete)."""
    cgroups = runtime.cgroups
    owned = {t.cgroup.path for t in runtime.tasks(None)}
    for path in sorted(cgroups.task_paths() - owned):
        _parent, ns, task_id = path.rsplit("/", 2)
        if not (identifiers.is_valid(ns) and identifiers.is_valid(task_id)):
            continue  # not a name of ours: leave it
        log.warning("removing cgroup %s: no task owns it", path)
        try:
            await cgroups.at(path).delete()
        except Exception as e:
            log.error("removing cgroup %s: %s", path, e)


def _clean_directories(runtime: "NativeRuntime") -> None:
    """Task directories (rootfs mount points) that no task owns."""
    owned = {t.bundle for t in runtime.tasks(None) if t.bundle}
    try:
        namespaces = os.listdir(runtime.state_dir)
    except FileNotFoundError:
        return
    for ns in namespaces:
        ns_dir = os.path.join(runtime.state_dir, ns)
        if not identifiers.is_valid(ns) or not os.path.isdir(ns_dir) or os.path.islink(ns_dir):
            continue
        for task_id in os.listdir(ns_dir):
            path = os.path.join(ns_dir, task_id)
            if path in owned or not identifiers.is_valid(task_id):
                continue
            log.warning("removing task directory %s: no task owns it", path)
            shutil.rmtree(path, ignore_errors=True)
