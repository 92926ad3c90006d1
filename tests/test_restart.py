"""Containers survive agent restarts and crashes (case B20 and the restart issue): tasks come
back with their pids and states, exits that happened while the agent was down are reported
once with their real status, and a crash in the middle of work leaves nothing half-made."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import pytest

from agent.api.containerd.events import task_pb2 as ev
from agent.api.containerd.services.containers.v1 import containers_pb2 as cpb
from agent.api.containerd.services.introspection.v1 import introspection_pb2 as ipb
from agent.client import Client
from agent.client.fifo import FifoSet
from helpers import leftovers, remove, run, start_container, subscribed

NS = "rs"
C = grpc.StatusCode


def _start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])


def _restart(agent_factory, agent, how: int, down: float):
    if how == signal.SIGKILL:
        agent.proc.kill()
    else:
        agent.signal(how)
    agent.wait(30)
    time.sleep(down)
    return agent_factory(base=agent.base).start()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_b20_tasks_survive_a_restart(agent_factory, rootfs, how):
    agent = agent_factory().start()

    async def before():
        async with Client(agent.address, NS) as client:
            p1 = await start_container(client, "r1", ["/bin/sleep", "3600"], rootfs)
            p2 = await start_container(client, "r2", ["/bin/sh", "-c", "sleep 4; exit 7"], rootfs)
            return p1, p2

    p1, p2 = run(before())
    started = _start_time(p1)
    time.sleep(1)
    again = _restart(agent_factory, agent, how, down=8)
    assert _start_time(p1) == started  # the same process kept running

    async def after():
        async with Client(again.address, NS) as client:
            # Subscribed after the restart: the backlog is replayed.
            async with subscribed(client, [f"namespace=={NS}"], keep_earlier=True) as events:
                try:
                    listed = {t.id: (t.pid, t.status, t.exit_status)
                              for t in await client.list_tasks()}
                    assert listed == {"r1": (p1, 2, 0), "r2": (p2, 3, 7)}
                    r1 = await client.get("r1")
                    assert (r1.id, r1.pid, r1.status) == ("r1", p1, 2)
                    waited = await asyncio.wait_for(client.wait("r2"), 1)
                    assert waited.exit_status == 7
                    await client.kill("r1", 9)
                    assert (await client.wait("r1")).exit_status == 137
                    assert not os.path.exists(f"/proc/{p1}")  # the re-adopted handle signalled P1
                    assert (await client.delete_task("r1")).exit_status == 137
                    assert (await client.delete_task("r2")).exit_status == 7
                    await asyncio.sleep(0.3)
                    exits = [ev.TaskExit.FromString(e.event.value) for e in events
                             if e.topic == "/tasks/exit"]
                    assert [(x.id, x.exit_status) for x in exits] == [("r2", 7), ("r1", 137)]
                    for cid, pid in (("r1", p1), ("r2", p2)):
                        await client.delete_container(cid)
                        assert leftovers(again, NS, cid, pid) == []
                finally:
                    for cid in ("r1", "r2"):
                        await remove(client, cid)

    run(after())


def test_running_tasks_keep_working_after_a_crash(agent_factory, rootfs):
    """Three running tasks, one with an exec streaming output; kill -9, 5 s down, restart:
    same pids and states; no gap in the stream; Wait, Kill, Exec, Pause, Metrics, Delete."""
    agent = agent_factory().start()
    fifos = FifoSet("stream", stdin=False)
    lines: list[bytes] = []

    async def before():
        async with Client(agent.address, NS) as client:
            pids = {}
            for cid in ("t1", "t2", "t3"):
                pids[cid] = await start_container(client, cid, ["/bin/sleep", "3600"], rootfs)
            fifos.open_readers()
            await client.exec("t1", "s1", {"args": ["/bin/sh", "-c", "i=0; while [ $i -lt 150 ];"
                                                     " do echo $i; i=$((i+1)); sleep 0.1; done"],
                                           "cwd": "/"}, stdout=fifos.stdout)
            await client.start("t1", "s1")
            return pids

    pids = run(before())

    async def read_stream():
        await fifos.read(fifos.stdout, lambda data: lines.append(data))

    import threading

    reader = threading.Thread(target=lambda: asyncio.run(read_stream()), daemon=True)
    reader.start()
    time.sleep(1)
    again = _restart(agent_factory, agent, signal.SIGKILL, down=5)

    async def after():
        async with Client(again.address, NS) as client:
            try:
                listed = {t.id: (t.pid, t.status) for t in await client.list_tasks()}
                assert listed == {cid: (pid, 2) for cid, pid in pids.items()}
                assert (await client.get("t1", "s1")).status == 2
                assert (await asyncio.wait_for(client.wait("t1", "s1"), 30)).exit_status == 0
                await client.exec("t2", "x1", {"args": ["/bin/sh", "-c", "exit 4"], "cwd": "/"})
                await client.start("t2", "x1")
                assert (await client.wait("t2", "x1")).exit_status == 4
                await client.pause("t3")
                assert (await client.get("t3")).status == 4
                await client.resume("t3")
                metrics = await client.metrics([])
                assert sorted(m.id for m in metrics) == ["t1", "t2", "t3"]
                for cid in ("t1", "t2", "t3"):
                    await client.kill(cid, 9)
                    assert (await client.wait(cid)).exit_status == 137
                    await client.delete_task(cid)
                    await client.delete_container(cid)
                    assert leftovers(again, NS, cid, pids[cid]) == []
            finally:
                for cid in ("t1", "t2", "t3"):
                    await remove(client, cid)

    try:
        run(after())
        reader.join(30)
        assert b"".join(lines) == b"".join(f"{i}\n".encode() for i in range(150))
    finally:
        fifos.close()


def test_restart_after_a_crash_in_the_middle_of_lifecycles(agent_factory, rootfs):
    """kill -9 while 200 lifecycles run concurrently: after the restart every task is whole
    or gone, and no process, cgroup, task directory or supervisor record is left over."""
    agent = agent_factory().start()

    async def churn():
        async with Client(agent.address, NS) as client:
            async def one(i):
                cid = f"c{i}"
                try:
                    await start_container(client, cid, ["/bin/sleep", "3600"], rootfs)
                    await client.kill(cid, 9)
                    await client.wait(cid)
                    await client.delete_task(cid)
                    await client.delete_container(cid)
                except grpc.aio.AioRpcError:
                    pass

            tasks = [asyncio.ensure_future(one(i)) for i in range(200)]
            await asyncio.sleep(1.5)
            agent.proc.kill()  # mid-flight
            await asyncio.gather(*tasks, return_exceptions=True)

    run(churn())
    agent.wait(30)
    again = agent_factory(base=agent.base).start()

    async def after():
        async with Client(again.address, NS) as client:
            tasks = {t.id: t for t in await client.list_tasks()}
            listed = await client.containers.List(cpb.ListContainersRequest(), metadata=client.md())
            containers = {c.id for c in listed.containers}
            # Whole: a task has its container, its process (or its exit) and its cgroup.
            for cid, t in tasks.items():
                assert cid in containers
                if t.status in (1, 2):
                    assert os.path.exists(f"/proc/{t.pid}")
            for cid in list(tasks):
                await remove(client, cid)
            for cid in containers:
                await remove(client, cid)
            for i in range(200):
                assert leftovers(again, NS, f"c{i}") == [], f"c{i}"
            # The supervisor holds no process any more: none of its children is left.
            plugins = await client.introspection.Plugins(
                ipb.PluginsRequest(filters=["id==native"]), metadata=client.md())
            sv_pid = int(plugins.plugins[0].exports["supervisor_pid"])
            with open(f"/proc/{sv_pid}/task/{sv_pid}/children") as f:
                assert f.read().split() == []

    run(after())


def test_supervisor_death_is_reported_honestly(agent_factory, rootfs):
    agent = agent_factory().start()

    async def scenario():
        async with Client(agent.address, NS) as client:
            try:
                pid = await start_container(client, "o1", ["/bin/sleep", "3600"], rootfs)
                plugins = await client.introspection.Plugins(
                    ipb.PluginsRequest(filters=["id==native"]), metadata=client.md())
                sv_pid = int(plugins.plugins[0].exports["supervisor_pid"])
                os.kill(sv_pid, signal.SIGKILL)
                waited = await asyncio.wait_for(client.wait("o1"), 10)
                assert waited.exit_status == 255  # unknown, never 0
                assert os.path.exists(f"/proc/{pid}")  # the container itself keeps running
                # New tasks work with a new supervisor.
                await start_container(client, "n1", ["/bin/sh", "-c", "exit 3"], rootfs)
                assert (await client.wait("n1")).exit_status == 3
                # Deleting the orphaned task stops what is left of it.
                await client.delete_task("o1")
                for _ in range(100):
                    if not os.path.exists(f"/proc/{pid}"):
                        break
                    await asyncio.sleep(0.05)
                assert leftovers(agent, NS, "o1") == []
            finally:
                await remove(client, "o1")
                await remove(client, "n1")

    run(scenario())


def test_metadata_survives_an_agent_crash(agent_factory):
    agent = agent_factory().start()

    async def write():
        async with Client(agent.address, NS) as client:
            for i in range(20):
                await client.create_container(f"m{i}", {"process": {"args": ["/bin/true"]}},
                                              labels={"n": str(i)})

    run(write())
    agent.proc.kill()  # no clean shutdown: only what was committed counts
    agent.wait(30)
    again = agent_factory(base=agent.base).start()

    async def read():
        async with Client(again.address, NS) as client:
            listed = (await client.containers.List(cpb.ListContainersRequest(),
                                                   metadata=client.md())).containers
            assert sorted((c.id, c.labels["n"]) for c in listed) == sorted(
                (f"m{i}", str(i)) for i in range(20))

    run(read())


def test_a_paused_task_killed_as_the_agent_dies_ends_after_the_restart(agent_factory, rootfs):
    """SIGKILL reached a paused task's init, but the agent went (kill -9) before thawing the
    task, so the init waits frozen with SIGKILL pending: the restarted agent thaws it, and the
    task ends with 137 instead of staying paused for good. A plainly paused one stays paused."""
    agent = agent_factory().start()

    async def before():
        async with Client(agent.address, NS) as client:
            pids = {cid: await start_container(client, cid, ["/bin/sleep", "3600"], rootfs)
                    for cid in ("k1", "p1")}
            for cid in pids:
                await client.pause(cid)
            return pids

    pids = run(before())
    os.kill(pids["k1"], signal.SIGKILL)  # as the agent would have: pending while frozen
    again = _restart(agent_factory, agent, signal.SIGKILL, down=0)

    async def after():
        async with Client(again.address, NS) as client:
            try:
                assert (await asyncio.wait_for(client.wait("k1"), 10)).exit_status == 137
                assert (await client.get("k1")).status == 3  # STOPPED
                assert (await client.get("p1")).status == 4  # PAUSED
                assert os.path.exists(f"/proc/{pids['p1']}")
                await client.resume("p1")
                assert (await client.get("p1")).status == 2
            finally:
                for cid in ("k1", "p1"):
                    await remove(client, cid)

    run(after())
