"""Calls that meet on one task: an exec's Start with its DeleteProcess or with a Pause, and
SIGKILL to a paused task. The supervisor is held stopped so that the second call arrives
while the first one waits on it."""

from __future__ import annotations

import asyncio
import signal

import grpc
from exec_support import container, process_spec, supervisor_stopped
from grpc_helpers import needs_root
from helpers import error_of, run

from agent.api.containerd.types.task import task_pb2
from agent.client import Client

pytestmark = needs_root

HOLD = 0.3  # seconds for the agent to act on a request it has been sent


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_delete_process_during_its_start_waits_and_is_refused(agent, rootfs):
    """DeleteProcess of an exec whose Start is under way is decided by that Start: started,
    the exec is running and DeleteProcess is refused; nothing runs untracked."""
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs) as init:
            await c.exec("c1", "e1", process_spec(["/bin/sleep", "3600"]))
            with supervisor_stopped(agent):
                start = asyncio.ensure_future(c.start("c1", "e1"))
                await asyncio.sleep(HOLD)
                delete = asyncio.ensure_future(c.delete_process("c1", "e1"))
                await asyncio.sleep(HOLD)
                assert not delete.done()  # it waits for the Start
            pid = await asyncio.wait_for(start, 10)
            err = await error_of(asyncio.wait_for(delete, 10))
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
            proc = await c.get("c1", "e1")
            assert (proc.pid, proc.status) == (pid, task_pb2.RUNNING)
            assert sorted(p.pid for p in await c.pids("c1")) == sorted([init, pid])
            await c.kill("c1", signal.SIGKILL, exec_id="e1")
            assert (await c.wait("c1", "e1")).exit_status == 137
            assert (await c.delete_process("c1", "e1")).exit_status == 137
            # The id is free again, in the agent and in the supervisor.
            await c.exec("c1", "e1", process_spec(["/bin/true"]))
            await c.start("c1", "e1")
            assert (await c.wait("c1", "e1")).exit_status == 0
            await c.delete_process("c1", "e1")

    run(body())


def test_pause_waits_for_an_exec_being_started(agent, rootfs):
    """A Pause that arrives while an exec's Start is under way freezes the task after that
    Start answered: the Start does not hang on a half-made process frozen in the cgroup."""
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            await c.exec("c1", "e1", process_spec(["/bin/sleep", "3600"]))
            with supervisor_stopped(agent):
                start = asyncio.ensure_future(c.start("c1", "e1"))
                await asyncio.sleep(HOLD)
                pause = asyncio.ensure_future(c.pause("c1"))
                await asyncio.sleep(HOLD)
                assert not pause.done()
            pid = await asyncio.wait_for(start, 10)
            await asyncio.wait_for(pause, 10)
            assert (await c.get("c1")).status == task_pb2.PAUSED
            assert (await c.get("c1", "e1")).status == task_pb2.PAUSED
            await c.resume("c1")
            proc = await c.get("c1", "e1")
            assert (proc.pid, proc.status) == (pid, task_pb2.RUNNING)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert f.read() == b"/bin/sleep\x003600\x00"
            await c.kill("c1", signal.SIGKILL, exec_id="e1")
            assert (await c.wait("c1", "e1")).exit_status == 137
            await c.delete_process("c1", "e1")

    run(body())


def test_sigkill_ends_a_paused_task(agent, rootfs):
    """As with runc: SIGKILL to a paused task's init (without --all) thaws the task, so the
    init dies (a frozen process never acts on it on cgroup v1) and the task stops with 137."""
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs) as init:
            await c.pause("c1")
            assert (await c.get("c1")).status == task_pb2.PAUSED
            await c.kill("c1", signal.SIGKILL)
            assert (await asyncio.wait_for(c.wait("c1"), 10)).exit_status == 137
            assert (await c.get("c1")).status == task_pb2.STOPPED
            assert not _alive(init)
            assert (await c.delete_task("c1")).exit_status == 137

    run(body())


def test_sigterm_to_a_paused_task_leaves_it_paused(agent, rootfs):
    """Only SIGKILL thaws (as runc): another signal waits, pending, for a resume."""
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs) as init:
            await c.pause("c1")
            await c.kill("c1", signal.SIGTERM)
            assert (await c.get("c1")).status == task_pb2.PAUSED
            assert _alive(init)
            await c.resume("c1")  # sleep, pid 1 without a handler, ignores SIGTERM
            assert (await c.get("c1")).status == task_pb2.RUNNING

    run(body())
