"""The task lifecycle through our Python client: cases B05, B08 (running and created parts),
B14, B22, B25 of cases/lifecycle.md, and the bad inputs of the core issue."""

from __future__ import annotations

import asyncio
import os

import grpc
import orjson

from agent.api.containerd.events import task_pb2 as ev
from agent.api.containerd.services.containers.v1 import containers_pb2 as cpb
from agent.api.containerd.services.tasks.v1 import tasks_pb2 as tpb
from agent.client import Client, default_spec
from agent.client.fifo import FifoSet
from exec_support import state_of
from helpers import code_of, error_of, leftovers, remove, run, start_container, subscribed
from polling import settle

NS = "test"
C = grpc.StatusCode




def test_full_lifecycle_values(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            async with subscribed(client, [f"namespace=={NS}"]) as events:
                spec = default_spec(["/bin/sh", "-c", "exit 3"], rootfs, namespace=NS, id="l1")
                await client.create_container("l1", spec)
                pid = await client.create_task("l1")
                created = await client.get("l1")
                assert (created.id, created.pid, created.status) == ("l1", pid, 1)
                assert await client.start("l1") == pid
                waited = await client.wait("l1")
                assert waited.exit_status == 3
                stopped = await client.get("l1")
                assert (stopped.status, stopped.exit_status) == (3, 3)
                assert stopped.exited_at.seconds == waited.exited_at.seconds
                deleted = await client.delete_task("l1")
                assert (deleted.id, deleted.pid, deleted.exit_status) == ("", pid, 3)
                assert deleted.exited_at == waited.exited_at
                await client.delete_container("l1")
                await asyncio.sleep(0.2)
                topics = [e.topic for e in events]
                assert topics == ["/containers/create", "/tasks/create", "/tasks/start",
                                  "/tasks/exit", "/tasks/delete", "/containers/delete"]
                exit_event = ev.TaskExit.FromString(events[3].event.value)
                assert events[3].event.type_url == "containerd.events.TaskExit"
                assert (exit_event.container_id, exit_event.id, exit_event.pid,
                        exit_event.exit_status) == ("l1", "l1", pid, 3)
                assert leftovers(agent, NS, "l1", pid) == []

    run(scenario())


def test_hostname_and_isolation_from_our_spec(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            from agent.client.fifo import FifoSet

            fifos = FifoSet("h1", stdin=False)
            try:
                await start_container(client, "h1", ["/bin/sh", "-c",
                                      "hostname; cat /proc/sys/net/ipv4/ip_forward; ip link show lo"
                                      " | head -1; id -u"], rootfs, fifos, hostname="box-1")
                out = await fifos.read(fifos.stdout)
                assert (await client.wait("h1")).exit_status == 0
                lines = out.decode().splitlines()
                assert lines[0] == "box-1"
                assert "LOOPBACK,UP" in lines[2]
                assert lines[3] == "0"
            finally:
                fifos.close()
                await remove(client, "h1")

    run(scenario())


def test_b05_start_twice_create_twice(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            async with subscribed(client, [f"namespace=={NS}"]) as events:
                try:
                    pid = await start_container(client, "b5", ["/bin/sleep", "3600"], rootfs)
                    err = await error_of(client.start("b5"))
                    assert err.code() == C.FAILED_PRECONDITION
                    assert await code_of(client.create_task("b5")) == C.ALREADY_EXISTS
                    proc = await client.get("b5")
                    assert (proc.status, proc.pid) == (2, pid)
                    await client.exec("b5", "e1", {"args": ["/bin/sleep", "3600"], "cwd": "/"})
                    epid = await client.start("b5", "e1")
                    assert await code_of(client.start("b5", "e1")) == C.FAILED_PRECONDITION
                    assert (await client.get("b5", "e1")).pid == epid
                    await client.kill("b5", 9)
                    assert (await client.wait("b5")).exit_status == 137
                    err = await error_of(client.start("b5"))
                    assert err.code() == C.FAILED_PRECONDITION
                    assert "stopped" in err.details()
                    await asyncio.sleep(0.2)
                    topics = [e.topic for e in events]
                    assert topics.count("/tasks/create") == 1
                    assert topics.count("/tasks/start") == 1
                finally:
                    await remove(client, "b5")

    run(scenario())


def test_b08_delete_running_paused_created(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            async with subscribed(client, [f"namespace=={NS}"]) as events:
                try:
                    pid = await start_container(client, "b8", ["/bin/sleep", "3600"], rootfs)
                    assert await code_of(client.delete_task("b8")) == C.FAILED_PRECONDITION
                    got = await client.get("b8")
                    assert (got.status, got.pid) == (2, pid)
                    await client.pause("b8")
                    assert await code_of(client.delete_task("b8")) == C.FAILED_PRECONDITION
                    assert (await client.get("b8")).status == 4
                    await client.resume("b8")
                    await client.kill("b8", 9)
                    await client.wait("b8")
                    deleted = await client.delete_task("b8")
                    assert (deleted.exit_status, deleted.pid) == (137, pid)
                    assert deleted.exited_at.seconds > 0
                    assert await code_of(client.delete_task("b8")) == C.NOT_FOUND
                    assert leftovers(agent, NS, "b8", pid) == []
                    await asyncio.sleep(0.2)
                    assert [e.topic for e in events].count("/tasks/delete") == 1

                    spec = default_spec(["/bin/sleep", "3600"], rootfs, namespace=NS, id="b8c")
                    await client.create_container("b8c", spec)
                    cpid = await client.create_task("b8c")
                    assert os.path.exists(f"/proc/{cpid}")
                    await client.delete_task("b8c")
                    assert await code_of(client.get("b8c")) == C.NOT_FOUND
                    assert leftovers(agent, NS, "b8c", cpid) == []
                finally:
                    await remove(client, "b8")
                    await remove(client, "b8c")

    run(scenario())


def test_b14_exit_status_convention(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            async with subscribed(client, [f"namespace=={NS}"]) as events:
                try:
                    await start_container(client, "a", ["/bin/sh", "-c", "exit 3"], rootfs)
                    await start_container(client, "b", ["/bin/sh", "-c", "exit 300"], rootfs)
                    assert (await client.wait("a")).exit_status == 3
                    assert (await client.wait("b")).exit_status == 44
                    await start_container(client, "c", ["/bin/sleep", "3600"], rootfs)
                    await client.kill("c", 15)
                    await asyncio.sleep(1)
                    assert (await client.get("c")).status == 2  # pid 1 ignores an unhandled SIGTERM
                    await client.kill("c", 9)
                    assert (await client.wait("c")).exit_status == 137
                    await start_container(client, "d", ["/bin/sleep", "3600"], rootfs)
                    await client.exec("d", "e1", {"args": ["/bin/sleep", "3600"], "cwd": "/"})
                    await client.start("d", "e1")
                    await client.kill("d", 15, exec_id="e1")
                    assert (await client.wait("d", "e1")).exit_status == 143
                    await client.exec("d", "e2",
                                      {"args": ["/bin/sh", "-c", "kill -SEGV $$"], "cwd": "/"})
                    await client.start("d", "e2")
                    assert (await client.wait("d", "e2")).exit_status == 139
                    assert (await client.delete_task("a")).exit_status == 3
                    assert (await client.delete_task("b")).exit_status == 44
                    await asyncio.sleep(0.2)
                    exits = {}
                    for e in events:
                        if e.topic == "/tasks/exit":
                            m = ev.TaskExit.FromString(e.event.value)
                            exits[m.id] = m.exit_status
                    assert exits == {"a": 3, "b": 44, "c": 137, "e1": 143, "e2": 139}
                finally:
                    for cid in "abcd":
                        await remove(client, cid)

    run(scenario())


def test_b22_namespaces_isolated(agent, rootfs):
    async def scenario():
        a, b, c = Client(agent.address, "ns-a"), Client(agent.address, "ns-b"), Client(agent.address, "ns-c")
        try:
            pa = await start_container(a, "web", ["/bin/sleep", "3600"], rootfs)
            pb = await start_container(b, "web", ["/bin/sleep", "3600"], rootfs)
            assert pa != pb
            assert [t.id for t in await a.list_tasks()] == ["web"]
            await a.kill("web", 9)
            await a.wait("web")
            assert (await b.get("web")).status == 2
            assert await c.list_tasks() == []
            assert await code_of(c.get("web")) == C.NOT_FOUND
            missing = await error_of(b.tasks.List(tpb.ListTasksRequest()))
            assert missing.code() == C.FAILED_PRECONDITION
            assert missing.details() == "namespace is required"
            bad = await error_of(b.tasks.List(tpb.ListTasksRequest(),
                                              metadata=(("containerd-namespace", "a/b"),)))
            assert bad.code() == C.INVALID_ARGUMENT
        finally:
            for client in (a, b):
                await remove(client, "web")
            for client in (a, b, c):
                await client.close()

    run(scenario())


def test_b25_invalid_ids(agent, rootfs):
    canary = os.path.join(os.path.dirname(agent.state), "canary")
    with open(canary, "w") as f:
        f.write("keep")

    async def scenario():
        async with Client(agent.address, NS) as client:
            for bad in ("..", "../../tmp/x", "a/b", "-a", "a..b", ""):
                assert await code_of(client.create_task(bad)) == C.INVALID_ARGUMENT, bad
                for call in (client.delete_task(bad), client.kill(bad, 9), client.start(bad)):
                    assert await code_of(call) in (C.INVALID_ARGUMENT, C.NOT_FOUND), bad
                spec = default_spec(["/bin/true"], rootfs)
                c = cpb.Container(id=bad)
                c.runtime.name = "io.containerd.runc.v2"
                c.spec.value = orjson.dumps(spec)
                assert await code_of(client.containers.Create(
                    cpb.CreateContainerRequest(container=c), metadata=client.md())) == C.INVALID_ARGUMENT
            ok_id = "a" * 76
            await client.create_container(ok_id, default_spec(["/bin/true"], rootfs))
            assert await client.create_task(ok_id) > 0
            await remove(client, ok_id)
            spec = default_spec(["/bin/true"], rootfs)
            assert await code_of(client.create_container("a" * 77, spec)) == C.INVALID_ARGUMENT
            pid = await start_container(client, "b25", ["/bin/sleep", "3600"], rootfs)
            for bad in ("../e", ""):
                assert await code_of(client.exec("b25", bad, {"args": ["/bin/true"]})) == \
                    C.INVALID_ARGUMENT
            await remove(client, "b25")
            assert leftovers(agent, NS, "b25", pid) == []
        bad_ns = Client(agent.address, "a/b")
        try:
            assert await code_of(bad_ns.list_tasks()) == C.INVALID_ARGUMENT
        finally:
            await bad_ns.close()

    run(scenario())
    with open(canary) as f:
        assert f.read() == "keep"
    assert sorted(os.listdir(os.path.dirname(agent.state))) == sorted(
        ["agent.log", "canary", "config.toml", "root", "run", "state"])


def test_bad_inputs_leave_nothing(agent, rootfs, tmp_path):
    async def scenario():
        async with Client(agent.address, NS) as client:
            assert await code_of(client.create_task("nosuch")) == C.NOT_FOUND
            assert await code_of(client.start("nosuch")) == C.NOT_FOUND
            pid = await start_container(client, "dup", ["/bin/sleep", "3600"], rootfs)
            assert await code_of(client.create_task("dup")) == C.ALREADY_EXISTS
            for sig in (0, 65, 1000):
                assert await code_of(client.kill("dup", sig)) == C.INVALID_ARGUMENT
            assert (await client.get("dup")).status == 2
            await remove(client, "dup")
            assert leftovers(agent, NS, "dup", pid) == []

            c = cpb.Container(id="notjson")
            c.runtime.name = "io.containerd.runc.v2"
            c.spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
            c.spec.value = b"{this is not json"
            await client.containers.Create(cpb.CreateContainerRequest(container=c),
                                           metadata=client.md())
            assert await code_of(client.create_task("notjson")) == C.INVALID_ARGUMENT
            await client.delete_container("notjson")

            missing_root = str(tmp_path / "no-such-rootfs")
            await client.create_container("noroot", default_spec(["/bin/true"], missing_root))
            err = await error_of(client.create_task("noroot"))
            assert err.code() == C.INVALID_ARGUMENT
            assert missing_root in err.details()
            assert leftovers(agent, NS, "noroot") == []
            await client.delete_container("noroot")

            await client.create_container("nobin", default_spec(["/bin/no-such-binary"], rootfs))
            err = await error_of(client.create_task("nobin"))
            assert err.code() == C.FAILED_PRECONDITION
            assert "/bin/no-such-binary" in err.details()
            assert leftovers(agent, NS, "nobin") == []
            await client.delete_container("nobin")

            # The agent keeps serving after all of it.
            await start_container(client, "after", ["/bin/true"], rootfs)
            assert (await client.wait("after")).exit_status == 0
            await remove(client, "after")

    run(scenario())


def test_delete_kills_what_the_init_left_in_its_cgroup(agent, rootfs):
    """Without a pid namespace the init's children outlive it. Delete finds the cgroup busy,
    kills them, and removes the cgroup: nothing is left."""
    async def body():
        async with Client(agent.address, "test") as c:
            fifos = FifoSet("bg", stdin=False)
            try:
                await start_container(c, "bg", ["/bin/sh", "-c", "sleep 3600 >/dev/null 2>&1 &"
                                                " echo $!"], rootfs, fifos=fifos,
                                      namespaces=("ipc", "uts", "mount", "network"))
                child = int(await fifos.read(fifos.stdout))
                assert (await asyncio.wait_for(c.wait("bg"), 10)).exit_status == 0
                assert state_of(child) == "S"  # outlived the init, in the task's cgroup
                assert (await c.delete_task("bg")).exit_status == 0
                # Killed; the supervisor, its new parent, reaps it.
                assert await settle(lambda: state_of(child) is None)
                assert leftovers(agent, "test", "bg") == []
            finally:
                fifos.close()
                await remove(c, "bg")

    run(body())
