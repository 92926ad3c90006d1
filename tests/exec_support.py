"""Shared by the exec, stdio, terminal and B-case tests: a process spec as ctr builds it for
`ctr task exec`, an event log, running one exec to completion with its output, and the
process accounting (fds, threads, zombies) of an agent and the supervisor it started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any, Self

import grpc
from google.protobuf.any_pb2 import Any as AnyPb
from helpers import remove, start_container
from polling import settle

from agent.api.containerd.events import task_pb2 as ev
from agent.api.containerd.services.events.v1 import events_pb2
from agent.client import Client, default_spec
from agent.client.fifo import FifoSet

MARK_TOPIC = "/test/mark"
EVENT_TYPES = {
    "containerd.events.TaskCreate": ev.TaskCreate,
    "containerd.events.TaskStart": ev.TaskStart,
    "containerd.events.TaskExit": ev.TaskExit,
    "containerd.events.TaskDelete": ev.TaskDelete,
    "containerd.events.TaskExecAdded": ev.TaskExecAdded,
    "containerd.events.TaskExecStarted": ev.TaskExecStarted,
    "containerd.events.TaskPaused": ev.TaskPaused,
    "containerd.events.TaskResumed": ev.TaskResumed,
}


def process_spec(args: list[str], *, terminal: bool = False, env: list[str] | None = None,
                 **fields: Any) -> dict[str, Any]:
    """The container's process (as `ctr run --rootfs` makes it) with args, terminal and any
    other field replaced: what `ctr task exec` sends."""
    proc = default_spec(args, "/", terminal=terminal, env=env)["process"]
    proc.update(fields)
    return proc


class EventLog:
    """Events/Subscribe read in the background; `async with` returns once the agent has
    registered the subscription (a marker published after it has come back)."""

    def __init__(self, client: Client, filters: list[str] | None = None):
        self.client = client
        self.filters = filters
        self.envelopes: list[Any] = []
        self._call = None
        self._task: asyncio.Task | None = None
        self._marks = 0

    async def __aenter__(self) -> Self:
        self._call = self.client.subscribe(self.filters)
        self._task = asyncio.ensure_future(self._read())
        await self.mark()
        self.envelopes.clear()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self._task

    async def _read(self) -> None:
        async for env in self._call:
            self.envelopes.append(env)

    async def mark(self, timeout: float = 10.0) -> None:
        """Publish a marker and wait for it: every event published before is then here.
        The first may go out before the agent has registered the subscription, so it is
        published again until one arrives."""
        self._marks += 1
        name = f"m{self._marks}".encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await self.client.events.Publish(events_pb2.PublishRequest(
                topic=MARK_TOPIC, event=AnyPb(type_url="test.Mark", value=name)),
                metadata=self.client.md())
            for _ in range(20):
                if any(e.topic == MARK_TOPIC and e.event.value == name for e in self.envelopes):
                    return
                await asyncio.sleep(0.01)
        raise AssertionError("the event subscription never saw its marker")

    def of(self, container_id: str) -> list[tuple[str, Any]]:
        """(topic, decoded event) of one container, in order."""
        out = []
        for env in self.envelopes:
            cls = EVENT_TYPES.get(env.event.type_url)
            if cls is None:
                continue
            msg = cls.FromString(env.event.value)
            if getattr(msg, "container_id", None) == container_id:
                out.append((env.topic, msg))
        return out


@contextlib.asynccontextmanager
async def container(client: Client, cid: str, rootfs: str, args: list[str] | None = None,
                    **spec_kw: Any) -> AsyncIterator[int]:
    """A running container (default: sleep 3600) that is killed and removed on the way out,
    whatever happened; yields the init's pid."""
    try:
        yield await start_container(client, cid, args or ["/bin/sleep", "3600"], rootfs,
                                    **spec_kw)
    finally:
        await remove(client, cid)


async def start_exec(client: Client, cid: str, eid: str, args: list[str], *,
                     terminal: bool = False, stdin: bool = False, stderr: bool = True,
                     **fields: Any) -> tuple[FifoSet, int]:
    """Exec + Start with fresh fifos (readers open before Exec); returns them and the pid.
    The caller reads and closes the fifos."""
    fifos = FifoSet(eid, stdin=stdin, stderr=stderr and not terminal)
    fifos.open_readers()
    try:
        await client.exec(cid, eid, process_spec(args, terminal=terminal, **fields),
                          fifos.stdin, fifos.stdout, fifos.stderr, terminal)
        pid = await client.start(cid, eid)
    except BaseException:
        fifos.close()
        raise
    return fifos, pid


async def run_exec(client: Client, cid: str, eid: str, args: list[str], *,
                   terminal: bool = False, timeout: float = 30.0, **fields: Any
                   ) -> tuple[int, bytes, bytes, int]:
    """One exec from Exec to DeleteProcess: (exit status, stdout, stderr, pid). Output is
    read to EOF before DeleteProcess, as ctr does."""
    fifos, pid = await start_exec(client, cid, eid, args, terminal=terminal, **fields)
    try:
        reads = [fifos.read(fifos.stdout)]
        if fifos.stderr:
            reads.append(fifos.read(fifos.stderr))
        waited, *outs = await asyncio.wait_for(
            asyncio.gather(client.wait(cid, eid), *reads), timeout)
        deleted = await client.delete_process(cid, eid)
        assert (deleted.id, deleted.pid, deleted.exit_status) == (eid, pid, waited.exit_status)
    finally:
        fifos.close()
    return waited.exit_status, outs[0], outs[1] if len(outs) > 1 else b"", pid


# -- process accounting -------------------------------------------------------------------------

def children_of(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(name))
    return out


def supervisor_pid(agent: Any) -> int:
    """The supervisor the test agent started: its child running the supervisor binary."""
    for pid in children_of(agent.proc.pid):
        try:
            if os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "taskagent-supervisor":
                return pid
        except OSError:
            continue
    raise AssertionError(f"agent {agent.proc.pid} has no supervisor child")


@contextlib.asynccontextmanager
async def created_container(client: Client, cid: str, rootfs: str,
                            args: list[str] | None = None) -> AsyncIterator[None]:
    """A container record (default: sleep 3600) with no task yet; it and any task made for
    it are removed on the way out, whatever happened."""
    await client.create_container(cid, default_spec(args or ["/bin/sleep", "3600"], rootfs,
                                                    namespace=client.namespace, id=cid))
    try:
        yield
    finally:
        await remove(client, cid)


async def check_exec_id_is_free(client: Client, cid: str, eid: str) -> None:
    """The exec id can be used again, in the agent and in its supervisor: an exec of
    /bin/true under it runs, exits 0 and is deleted."""
    await client.exec(cid, eid, process_spec(["/bin/true"]))
    await client.start(cid, eid)
    assert (await client.wait(cid, eid)).exit_status == 0
    await client.delete_process(cid, eid)


# Seconds for the agent to act on a request or a cancellation it has been sent.
HOLD = 0.3


@contextlib.contextmanager
def supervisor_stopped(agent):
    """The agent's supervisor held stopped: a request sent meanwhile is answered only after."""
    sup = supervisor_pid(agent)
    os.kill(sup, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(sup, signal.SIGCONT)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError(f"no Threads line for {pid}")


def fd_and_thread_counts(*pids: int) -> list[tuple[int, int]]:
    return [(fd_count(p), thread_count(p)) for p in pids]


def no_leak(now: list[tuple[int, int]], before: list[tuple[int, int]]) -> bool:
    """Counts of (agent, supervisor): the same descriptors for both and the same threads for
    the supervisor; no more threads than before for the agent. grpc's worker pool in the agent
    (its "event_engine" threads) adds a worker when all have been busy for a second and retires
    one after 20 s idle, so a busy run may leave one for that long, or end with one fewer."""
    (fd, threads), (bfd, bthreads) = now[0], before[0]
    return fd == bfd and threads <= bthreads and now[1:] == before[1:]


async def counts_settled(before: list[tuple[int, int]], agent_pid: int, sup_pid: int
                         ) -> list[tuple[int, int]]:
    """The fd and thread counts of the agent and its supervisor once no_leak(before) holds,
    or as they are after 40 s (grpc's idle limit, 20 s, plus its workers' up to 3 s between
    checks, with room); a leak stays."""
    await settle(lambda: no_leak(fd_and_thread_counts(agent_pid, sup_pid), before), tries=800,
                 interval=0.05)
    return fd_and_thread_counts(agent_pid, sup_pid)


def state_of(pid: int) -> str | None:
    """The process's state letter, or None when it has left /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def zombies_under(*parents: int) -> list[int]:
    """Zombie children of the given processes."""
    return [c for p in parents for c in children_of(p) if state_of(c) == "Z"]

