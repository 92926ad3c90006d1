"""Calls that meet on one task: an exec's Start with its DeleteProcess or with a Pause, and
SIGKILL to a paused task. The supervisor is held stopped so that the second call arrives
while the first one waits on it."""

from __future__ import annotations

import asyncio
import signal

import grpc
from exec_support import (
    HOLD,
    check_exec_id_is_free,
    container,
    created_container,
    process_spec,
    supervisor_stopped,
)
from grpc_helpers import needs_root
from helpers import code_of, error_of, remove, run, start_container

from agent.api.containerd.types.task import task_pb2
from agent.client import Client

pytestmark = needs_root


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
            await check_exec_id_is_free(c, "c1", "e1")

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


def test_exec_start_and_delete_process_sent_together_never_both_succeed(agent, rootfs):
    """DeleteProcess and Start of a created exec, sent at once, either order: one of them
    wins. A deleted exec is never started, and a started one is never deleted while it runs,
    so no process runs untracked and the id is free after each round."""
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs) as init:
            for i in range(40):
                await c.exec("c1", "e1", process_spec(["/bin/sleep", "3600"]))
                calls = (c.delete_process("c1", "e1"), c.start("c1", "e1"))
                if i % 2:
                    calls = calls[::-1]
                results = await asyncio.gather(*calls, return_exceptions=True)
                if i % 2:
                    results = results[::-1]
                deleted, started = results
                codes = [r.code() if isinstance(r, grpc.aio.AioRpcError) else None
                         for r in (deleted, started)]
                assert codes in ([None, grpc.StatusCode.NOT_FOUND],
                                 [grpc.StatusCode.FAILED_PRECONDITION, None]), (i, results)
                pids = sorted(p.pid for p in await c.pids("c1"))
                if codes[1] is None:  # started: tracked, then ended and deleted
                    assert pids == sorted([init, started])
                    await c.kill("c1", signal.SIGKILL, exec_id="e1")
                    assert (await c.wait("c1", "e1")).exit_status == 137
                    await c.delete_process("c1", "e1")
                else:
                    assert pids == [init]
                assert await code_of(c.get("c1", "e1")) == grpc.StatusCode.NOT_FOUND

    run(body())


def test_kill_and_pause_sent_together_end_the_task(agent, rootfs):
    """SIGKILL and a Pause at once, either order: the task ends with 137 and is not left
    paused with its init frozen (a Pause after the SIGKILL is refused or undone)."""
    async def body():
        async with Client(agent.address, "test") as c:
            for i in range(20):
                cid = f"k{i}"
                await start_container(c, cid, ["/bin/sleep", "3600"], rootfs)
                try:
                    waiter = asyncio.ensure_future(c.wait(cid))
                    calls = (c.kill(cid, signal.SIGKILL), c.pause(cid))
                    results = await asyncio.gather(*(calls if i % 2 else calls[::-1]),
                                                   return_exceptions=True)
                    for r in results:
                        assert not isinstance(r, grpc.aio.AioRpcError) or \
                            r.code() == grpc.StatusCode.FAILED_PRECONDITION, (i, r)
                    assert (await asyncio.wait_for(waiter, 10)).exit_status == 137
                    assert (await c.get(cid)).status == task_pb2.STOPPED
                finally:
                    await remove(c, cid)

    run(body())


def test_two_deletes_at_once_one_wins(agent, rootfs):
    """Two Deletes of one stopped task (or two DeleteProcess of one exited exec) at once: one
    answers with the exit, the other NOT_FOUND; a task made again under the id is untouched."""
    async def body():
        async with Client(agent.address, "test") as c:
            for i in range(10):
                await start_container(c, "d1", ["/bin/sleep", "3600"], rootfs)
                await c.exec("d1", "x", process_spec(["/bin/true"]))
                await c.start("d1", "x")
                assert (await c.wait("d1", "x")).exit_status == 0
                results = await asyncio.gather(c.delete_process("d1", "x"),
                                               c.delete_process("d1", "x"),
                                               return_exceptions=True)
                assert sorted(type(r).__name__ for r in results) == \
                    ["AioRpcError", "DeleteResponse"], results
                assert [r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)] == \
                    [grpc.StatusCode.NOT_FOUND]
                await c.kill("d1", signal.SIGKILL)
                await c.wait("d1")
                results = await asyncio.gather(c.delete_task("d1"), c.delete_task("d1"),
                                               return_exceptions=True)
                assert [r.exit_status for r in results if not isinstance(r, Exception)] == [137]
                assert [r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)] == \
                    [grpc.StatusCode.NOT_FOUND]
                # The id is free: a new task under it runs untouched.
                await c.create_task("d1")
                pid = await c.start("d1")
                proc = await c.get("d1")
                assert (proc.pid, proc.status) == (pid, task_pb2.RUNNING)
                await remove(c, "d1")

    run(body())


def test_wait_on_a_created_task_answers_when_it_is_deleted(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c:
            async with created_container(c, "w1", rootfs):
                await c.create_task("w1")
                waiter = asyncio.ensure_future(c.wait("w1"))
                await asyncio.sleep(HOLD)
                deleted = await c.delete_task("w1")
                assert deleted.exit_status == 137
                assert (await asyncio.wait_for(waiter, 10)).exit_status == 137

    run(body())


def test_start_of_a_created_task_killed_meanwhile_fails_cleanly_or_starts(agent, rootfs):
    """The created init killed just as it is started: Start either answers
    FAILED_PRECONDITION (the death was seen first) or succeeds (the release was sent while
    the process was still exiting), never an unknown error; the task ends with 137."""
    async def body():
        async with Client(agent.address, "test") as c:
            for i in range(30):
                cid = f"s{i}"
                async with created_container(c, cid, rootfs):
                    await c.create_task(cid)
                    killed, started = await asyncio.gather(
                        c.kill(cid, signal.SIGKILL), c.start(cid), return_exceptions=True)
                    assert killed is None, (i, killed)
                    assert not isinstance(started, Exception) or (
                        isinstance(started, grpc.aio.AioRpcError)
                        and started.code() == grpc.StatusCode.FAILED_PRECONDITION), (i, started)
                    assert (await asyncio.wait_for(c.wait(cid), 10)).exit_status == 137

    run(body())


def test_start_while_create_is_under_way_is_refused_and_changes_nothing(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c:
            async with created_container(c, "cr1", rootfs):
                with supervisor_stopped(agent):
                    create = asyncio.ensure_future(c.create_task("cr1"))
                    await asyncio.sleep(HOLD)
                    err = await error_of(c.start("cr1"))
                    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
                    assert "still being created" in err.details()
                pid = await asyncio.wait_for(create, 10)
                proc = await c.get("cr1")
                assert (proc.pid, proc.status) == (pid, task_pb2.CREATED)
                assert await c.start("cr1") == pid
                assert (await c.get("cr1")).status == task_pb2.RUNNING

    run(body())
