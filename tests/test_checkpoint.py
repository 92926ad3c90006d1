"""Checkpoint and restore with CRIU (case B19 and the checkpoint issue). These need a CRIU
that works on this kernel (4.1 or newer from 6.13 on): found as $TASKAGENT_CRIU, in PATH,
or at /opt/criu/criu; without one they skip, saying why."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tarfile
import tempfile

import grpc
import pytest

from agent.api.containerd.events import task_pb2 as ev
from agent.api.containerd.services.tasks.v1 import tasks_pb2 as tpb
from agent.api.runc import options_pb2
from agent.client import Client, default_spec
from agent.client.checkpoint import checkpoint as checkpoint_image
from agent.client.checkpoint import restore, read_blob
from helpers import code_of, ctr, error_of, need_ctr, remove, run, start_container, subscribed

NS = "cr"
C = grpc.StatusCode
COUNTER = ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /dev/shm/count; "
           "sleep 0.05; done"]


def _working_criu() -> str:
    candidates = [os.environ.get("TASKAGENT_CRIU", ""), shutil.which("criu") or "",
                  "/opt/criu/criu"]
    reasons = []
    for path in filter(None, candidates):
        if not os.access(path, os.X_OK):
            continue
        r = subprocess.run([path, "check"], capture_output=True, text=True)
        if r.returncode == 0:
            return path
        reasons.append(f"{path}: {(r.stdout + r.stderr).strip().splitlines()[-1:]}")
    pytest.skip("no working CRIU for this kernel (" + ("; ".join(reasons) or "none found")
                + "); CRIU 4.1+ is needed from Linux 6.13 on")


@pytest.fixture
def criu_agent(agent_factory):
    return agent_factory(runtime_options={"criu_path": _working_criu()}).start()


def _counter(pid: int) -> int:
    with open(f"/proc/{pid}/root/dev/shm/count") as f:
        return int(f.read())


def _checkpoint_request(cid: str, exit: bool = False) -> tpb.CheckpointTaskRequest:
    req = tpb.CheckpointTaskRequest(container_id=cid)
    req.options.type_url = "containerd.runc.v1.CheckpointOptions"
    req.options.value = options_pb2.CheckpointOptions(exit=exit).SerializeToString()
    return req


async def _wait_for_criu(client: Client) -> None:
    """The agent checks CRIU in the background at start; wait until it has."""
    from agent.api.containerd.services.introspection.v1 import introspection_pb2 as ipb

    for _ in range(200):
        plugins = await client.introspection.Plugins(ipb.PluginsRequest(filters=["id==native"]),
                                                     metadata=client.md())
        status = plugins.plugins[0].exports.get("criu", "")
        if status:
            assert status.endswith(": ok"), status
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the agent never finished checking CRIU")


def test_counter_continues_after_restore(criu_agent, rootfs):
    async def scenario():
        async with Client(criu_agent.address, NS) as client:
            await _wait_for_criu(client)
            try:
                pid = await start_container(client, "c1", COUNTER, rootfs)
                await asyncio.sleep(0.5)
                await client.pause("c1")
                at_checkpoint = _counter(pid)
                image = await checkpoint_image(client, "c1")
                assert (await client.get("c1")).status == 4  # a paused task stays paused
                assert _counter(pid) == at_checkpoint
                await client.kill("c1", 9, all=True)
                await client.wait("c1")
                await client.delete_task("c1")
                await client.delete_container("c1")
                new_pid = await restore(client, image, "c2")
                # Restored with the tmpfs as it was: it counts on from the checkpoint.
                await asyncio.sleep(0.5)
                later = _counter(new_pid)
                assert later > at_checkpoint
                assert (await client.get("c2")).status == 2
            finally:
                await remove(client, "c1")
                await remove(client, "c2")

    run(scenario())


def test_restored_task_starts_exactly_where_it_was(criu_agent, rootfs):
    async def scenario():
        async with Client(criu_agent.address, NS) as client:
            await _wait_for_criu(client)
            try:
                pid = await start_container(client, "e1", COUNTER, rootfs)
                await asyncio.sleep(0.3)
                await client.pause("e1")
                value = _counter(pid)
                resp = await client.tasks.Checkpoint(_checkpoint_request("e1"),
                                                     metadata=client.md())
                await remove(client, "e1")
                await client.create_container("e2", default_spec(COUNTER, rootfs, namespace=NS,
                                                                  id="e2"))
                create = tpb.CreateTaskRequest(container_id="e2", checkpoint=resp.descriptors[0])
                new_pid = (await client.tasks.Create(create, metadata=client.md())).pid
                assert (await client.get("e2")).status == 1  # created: stopped until Start
                assert _counter(new_pid) == value
                await client.start("e2")
                await asyncio.sleep(0.3)
                assert _counter(new_pid) > value
            finally:
                await remove(client, "e1")
                await remove(client, "e2")

    run(scenario())


def test_b19_checkpoint_leave_running_and_exit(criu_agent, rootfs):
    async def scenario():
        async with Client(criu_agent.address, NS) as client:
            await _wait_for_criu(client)
            async with subscribed(client, [f"namespace=={NS}"]) as events:
                try:
                    pid = await start_container(client, "k1", ["/bin/sleep", "3600"], rootfs)
                    resp = await client.tasks.Checkpoint(_checkpoint_request("k1"),
                                                         metadata=client.md())
                    assert [d.media_type for d in resp.descriptors] == [
                        "application/vnd.containerd.container.criu.checkpoint.criu.tar",
                        "application/vnd.containerd.container.checkpoint.config.v1+proto"]
                    data = await read_blob(client, resp.descriptors[0].digest)
                    with tempfile.NamedTemporaryFile() as f:
                        f.write(data)
                        f.flush()
                        listing = subprocess.run(["tar", "-tf", f.name], capture_output=True,
                                                 text=True, check=True).stdout.split()
                        assert "descriptors.json" in [n.lstrip("./") for n in listing]
                        with tarfile.open(f.name) as t:
                            assert any(n.endswith("pstree.img") for n in t.getnames())
                    k1 = await client.get("k1")
                    assert (k1.status, k1.pid) == (2, pid)
                    await client.tasks.Checkpoint(_checkpoint_request("k1", exit=True),
                                                  metadata=client.md())
                    waited = await asyncio.wait_for(client.wait("k1"), 10)
                    assert (await client.get("k1")).status == 3
                    await asyncio.sleep(0.3)
                    topics = [(e.topic, ev.TaskExit.FromString(e.event.value).id
                               if e.topic == "/tasks/exit" else "") for e in events]
                    assert topics.count(("/tasks/exit", "k1")) == 1
                    checkpointed = [e for e in events if e.topic == "/tasks/checkpointed"]
                    assert len(checkpointed) == 2
                    first = ev.TaskCheckpointed.FromString(checkpointed[0].event.value)
                    assert first.container_id == "k1"
                    assert waited.exit_status == 137  # criu ends the task after the dump

                    spec = default_spec(["/bin/sleep", "3600"], rootfs)
                    await client.create_container("k3", spec)
                    await client.create_task("k3")
                    assert await code_of(client.tasks.Checkpoint(_checkpoint_request("k3"),
                                                                 metadata=client.md())) == \
                        C.FAILED_PRECONDITION
                    assert await code_of(client.tasks.Checkpoint(_checkpoint_request("k1"),
                                                                 metadata=client.md())) == \
                        C.FAILED_PRECONDITION
                finally:
                    for cid in ("k1", "k3"):
                        await remove(client, cid)

    run(scenario())


def test_ctr_task_checkpoint(criu_agent, rootfs):
    need_ctr()
    assert ctr(criu_agent.address, "run", "-d", "--rootfs", rootfs, "t1", *COUNTER,
               namespace=NS).returncode == 0
    try:
        r = ctr(criu_agent.address, "t", "checkpoint", "t1", namespace=NS, timeout=120)
        assert r.returncode == 0, r.stderr
        name = r.stdout.decode().strip()
        assert name.startswith("containerd.io/checkpoint/t1:")
        images = ctr(criu_agent.address, "images", "ls", "-q", namespace=NS).stdout.decode()
        assert name in images.split()
        rows = ctr(criu_agent.address, "t", "ls", namespace=NS).stdout.decode().splitlines()
        assert rows[1].split()[2] == "RUNNING"
    finally:
        ctr(criu_agent.address, "t", "kill", "-s", "SIGKILL", "t1", namespace=NS)
        ctr(criu_agent.address, "t", "delete", "-f", "t1", namespace=NS)
        ctr(criu_agent.address, "c", "rm", "t1", namespace=NS)


def test_without_criu_checkpoint_is_refused_with_the_reason(agent_factory, rootfs):
    agent = agent_factory(runtime_options={"criu_path": "/nonexistent/criu"}).start()

    async def scenario():
        async with Client(agent.address, NS) as client:
            try:
                await start_container(client, "n1", ["/bin/sleep", "3600"], rootfs)
                err = await error_of(client.tasks.Checkpoint(_checkpoint_request("n1"),
                                                             metadata=client.md()))
                assert err.code() == C.FAILED_PRECONDITION
                assert "/nonexistent/criu" in err.details()
                assert (await client.get("n1")).status == 2  # nothing changed
            finally:
                await remove(client, "n1")

    run(scenario())


def test_cli_checkpoint_and_restore(criu_agent, rootfs):
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "agent", args[0], "-a", criu_agent.address,
                               "-n", NS, *args[1:]], capture_output=True, timeout=120, cwd="/")

    r = cli("run", "-d", "--rootfs", rootfs, "cli1", "--", *COUNTER)
    assert r.returncode == 0, r.stderr
    try:
        cp = cli("checkpoint", "--exit", "cli1")
        assert cp.returncode == 0, cp.stderr
        image = cp.stdout.decode().strip()
        assert image.startswith("checkpoint/cli1:")
        assert b"checkpointed cli1:" in cp.stderr
        rs = cli("restore", image, "cli2")
        assert rs.returncode == 0, rs.stderr
        pid = int(rs.stdout)
        assert b"restored cli2" in rs.stderr
        assert _counter(pid) > 0
    finally:
        for cid in ("cli1", "cli2"):
            cli("kill", "-s", "KILL", "--all", cid)
            for _ in range(20):
                if cli("delete", cid).returncode == 0:
                    break
