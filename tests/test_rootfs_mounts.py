"""Tasks.Create with rootfs mounts from the request (bind and overlay), mounted on the
task's bundle inside its own mount namespace: nothing appears in the host's mount table."""

from __future__ import annotations

import os

from agent.api.containerd.services.tasks.v1 import tasks_pb2 as tpb
from agent.api.containerd.types import mount_pb2
from agent.client import Client, default_spec
from agent.client.fifo import FifoSet
from helpers import leftovers, remove, run

NS = "mnt"


def _host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


async def _run_with_mounts(client, agent, cid, mounts, script):
    spec = default_spec(["/bin/sh", "-c", script], "rootfs", namespace=NS, id=cid)
    await client.create_container(cid, spec)
    fifos = FifoSet(cid, stdin=False)
    try:
        fifos.open_readers()
        req = tpb.CreateTaskRequest(container_id=cid, stdout=fifos.stdout, stderr=fifos.stderr,
                                    rootfs=mounts)
        await client.tasks.Create(req, metadata=client.md())
        before = _host_mounts()
        await client.start(cid)
        out = await fifos.read(fifos.stdout)
        status = (await client.wait(cid)).exit_status
        await client.delete_task(cid)
        assert leftovers(agent, NS, cid) == []
        return status, out.decode(), before
    finally:
        fifos.close()
        await remove(client, cid)


def test_bind_rootfs_mount(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            mounts = [mount_pb2.Mount(type="bind", source=rootfs, options=["rbind", "ro"])]
            status, out, during = await _run_with_mounts(
                client, agent, "b1", mounts, "ls /bin/busybox; touch /x 2>/dev/null; echo rc=$?")
            assert status == 0
            assert out == "/bin/busybox\nrc=1\n"  # read-only, as the mount options say
            assert not any(p.endswith("/b1/rootfs") for p in during)

    run(scenario())


def test_overlay_rootfs_mount(agent, rootfs, tmp_path):
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()

    async def scenario():
        async with Client(agent.address, NS) as client:
            opts = [f"lowerdir={rootfs}", f"upperdir={upper}", f"workdir={work}"]
            mounts = [mount_pb2.Mount(type="overlay", source="overlay", options=opts)]
            status, out, during = await _run_with_mounts(
                client, agent, "o1", mounts, "echo written > /made-here; cat /made-here")
            assert (status, out) == (0, "written\n")
            assert not any(p.endswith("/o1/rootfs") for p in during)

    run(scenario())
    assert (upper / "made-here").read_text() == "written\n"
    assert not os.path.exists(os.path.join(rootfs, "made-here"))
