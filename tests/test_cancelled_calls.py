"""A client that gives up (hangs up, or its deadline passes) while the agent waits on the
supervisor: whatever the supervisor did is still recorded. A started exec stays tracked (it
can be killed, waited for and deleted by its id); a created task is taken back down, so its
id can be used again. The supervisor is held stopped while the call is cancelled so that the
cancellation lands while the agent waits on it."""

from __future__ import annotations

import asyncio
import signal

import grpc
from exec_support import HOLD, check_exec_id_is_free, container, process_spec, supervisor_stopped
from grpc_helpers import needs_root
from helpers import error_of, leftovers, remove, run

from agent.api.containerd.types.task import task_pb2
from agent.client import Client, default_spec

pytestmark = needs_root



async def poll(check, tries: int = 200, interval: float = 0.05):
    value = await check()
    for _ in range(tries):
        if value:
            break
        await asyncio.sleep(interval)
        value = await check()
    return value


def test_an_exec_whose_start_was_cancelled_stays_tracked(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs) as init:
            await c.exec("c1", "e1", process_spec(["/bin/sleep", "3600"]))
            with supervisor_stopped(agent):
                call = asyncio.ensure_future(c.start("c1", "e1"))
                await asyncio.sleep(HOLD)
                # The first Start is in progress: a second one is refused, not queued.
                err = await error_of(c.start("c1", "e1"))
                assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "already running" in err.details()
                call.cancel()
                await asyncio.sleep(HOLD)
            assert call.cancelled()

            async def running():
                p = await c.get("c1", "e1")
                return p if p.status == task_pb2.RUNNING and p.pid > 0 else None

            proc = await poll(running)
            assert proc, "the exec the supervisor started is not tracked"
            pids = sorted(p.pid for p in await c.pids("c1"))
            assert pids == sorted([init, proc.pid])
            await c.kill("c1", signal.SIGKILL, exec_id="e1")
            assert (await c.wait("c1", "e1")).exit_status == 137
            await c.delete_process("c1", "e1")
            assert [p.pid for p in await c.pids("c1")] == [init]
            await check_exec_id_is_free(c, "c1", "e1")

    run(body())


def test_a_task_create_cancelled_while_the_supervisor_works_is_taken_back(agent, rootfs):
    """The client gives up while the supervisor (held stopped) has the request: the agent
    waits for the supervisor's answer, then takes the new task back down. Nothing is left,
    and the id can be used again at once."""
    async def body():
        async with Client(agent.address, "test") as c:
            await c.create_container("c2", default_spec(["/bin/sh", "-c", "exit 3"], rootfs))
            try:
                with supervisor_stopped(agent):
                    call = asyncio.ensure_future(c.create_task("c2"))
                    await asyncio.sleep(HOLD)  # the agent has sent its request
                    call.cancel()
                    await asyncio.sleep(HOLD)  # and has seen the cancellation
                assert call.cancelled()

                async def gone():
                    try:
                        await c.get("c2")
                    except grpc.aio.AioRpcError as e:
                        return e.code() == grpc.StatusCode.NOT_FOUND and not leftovers(
                            agent, "test", "c2")
                    return False

                assert await poll(gone), leftovers(agent, "test", "c2")
                await c.create_task("c2")
                await c.start("c2")
                assert (await c.wait("c2")).exit_status == 3
                await c.delete_task("c2")
            finally:
                await remove(c, "c2")

    run(body())
