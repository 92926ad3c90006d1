"""The call sequences the benchmarks time. Each takes a connected Client and the daemon it
talks to, and is the same code for both daemons: our API is containerd's."""

from __future__ import annotations

import asyncio
import time

from agent.client import Client, default_spec

NS = "bench"
LIFECYCLE_METHODS = [
    "/containerd.services.containers.v1.Containers/Create",
    "/containerd.services.tasks.v1.Tasks/Create",
    "/containerd.services.tasks.v1.Tasks/Start",
    "/containerd.services.tasks.v1.Tasks/Wait",
    "/containerd.services.tasks.v1.Tasks/Delete",
    "/containerd.services.containers.v1.Containers/Delete",
]
EXEC_METHODS = [
    "/containerd.services.tasks.v1.Tasks/Exec",
    "/containerd.services.tasks.v1.Tasks/Start",
    "/containerd.services.tasks.v1.Tasks/Wait",
    "/containerd.services.tasks.v1.Tasks/DeleteProcess",
]
PAUSE_METHODS = ["/containerd.services.tasks.v1.Tasks/Pause",
                 "/containerd.services.tasks.v1.Tasks/Resume"]
FLOOR_METHOD = "/containerd.services.version.v1.Version/Version"


def spec_for(cid: str, args: list[str], rootfs: str) -> dict:
    return default_spec(args, rootfs, namespace=NS, id=cid)


async def lifecycle(client: Client, cid: str, rootfs: str, runc_root: str,
                    args: tuple[str, ...] = ("/bin/true",)) -> float:
    """Containers.Create, Tasks.Create, Start, Wait, Delete, Containers.Delete; seconds."""
    spec = spec_for(cid, list(args), rootfs)
    t0 = time.perf_counter()
    await client.create_container(cid, spec, runc_root=runc_root)
    await client.create_task(cid)
    await client.start(cid)
    await client.wait(cid)
    await client.delete_task(cid)
    await client.delete_container(cid)
    return time.perf_counter() - t0


async def floor_call(client: Client) -> float:
    t0 = time.perf_counter()
    await client.server_version()
    return time.perf_counter() - t0


async def start_sleeper(client: Client, cid: str, rootfs: str, runc_root: str) -> int:
    await client.create_container(cid, spec_for(cid, ["/bin/sleep", "100000"], rootfs),
                                  runc_root=runc_root)
    await client.create_task(cid)
    return await client.start(cid)


async def stop_and_remove(client: Client, cid: str) -> None:
    try:
        await client.kill(cid, 9, all=True)
        await asyncio.wait_for(client.wait(cid), 30)
    except Exception:
        pass
    for call in (client.delete_task(cid), client.delete_container(cid)):
        try:
            await call
        except Exception:
            pass


async def exec_once(client: Client, cid: str, exec_id: str) -> float:
    process = {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}
    t0 = time.perf_counter()
    await client.exec(cid, exec_id, process)
    await client.start(cid, exec_id)
    await client.wait(cid, exec_id)
    await client.delete_process(cid, exec_id)
    return time.perf_counter() - t0


async def pause_resume(client: Client, cid: str) -> float:
    t0 = time.perf_counter()
    await client.pause(cid)
    await client.resume(cid)
    return time.perf_counter() - t0


async def exit_to_wait(client: Client, cid: str, rootfs: str, runc_root: str) -> float:
    """Seconds from the process's recorded exit to the client holding Wait's answer."""
    await start_sleeper(client, cid, rootfs, runc_root)
    waiter = asyncio.ensure_future(client.wait(cid))
    await asyncio.sleep(0.05)  # Wait is in place before the exit
    await client.kill(cid, 9)
    resp = await waiter
    received = time.time()
    exited = resp.exited_at.seconds + resp.exited_at.nanos / 1e9
    await client.delete_task(cid)
    await client.delete_container(cid)
    return received - exited


async def checkpoint_restore(client: Client, cid: str, rootfs: str, runc_root: str
                             ) -> tuple[float, float]:
    """Seconds for Tasks.Checkpoint (leave running) of a small running container, and for
    Tasks.Create from that checkpoint plus Start of a new container. As ctr does, a lease
    keeps the checkpoint's content from garbage collection (deleting the first container
    sets collection off) until the restore is done."""
    from agent.api.containerd.services.leases.v1 import leases_pb2
    from agent.api.containerd.services.tasks.v1 import tasks_pb2 as tpb
    from agent.api.runc import options_pb2

    lease = f"bench-{cid}"
    await client.leases.Create(leases_pb2.CreateRequest(id=lease), metadata=client.md())
    md = client.md() + (("containerd-lease", lease),)
    try:
        await start_sleeper(client, cid, rootfs, runc_root)
        req = tpb.CheckpointTaskRequest(container_id=cid)
        req.options.type_url = "containerd.runc.v1.CheckpointOptions"
        req.options.value = options_pb2.CheckpointOptions().SerializeToString()
        t0 = time.perf_counter()
        resp = await client.tasks.Checkpoint(req, metadata=md)
        t1 = time.perf_counter()
        await stop_and_remove(client, cid)
        new = cid + "r"
        await client.create_container(new, spec_for(new, ["/bin/sleep", "100000"], rootfs),
                                      runc_root=runc_root)
        t2 = time.perf_counter()
        await client.tasks.Create(tpb.CreateTaskRequest(container_id=new,
                                                        checkpoint=resp.descriptors[0]),
                                  metadata=md)
        await client.start(new)
        t3 = time.perf_counter()
        await stop_and_remove(client, new)
    finally:
        await client.leases.Delete(leases_pb2.DeleteRequest(id=lease), metadata=client.md())
    return t1 - t0, t3 - t2
