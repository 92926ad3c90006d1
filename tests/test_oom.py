"""Case B15: one /tasks/oom per OOM kill, none for a plain SIGKILL."""

from __future__ import annotations

import asyncio
import os

from agent.api.containerd.events import task_pb2 as ev
from agent.client import Client
from helpers import remove, run, start_container, subscribed

NS = "oom"
LIMIT = 32 * 1024 * 1024
HOG = ["/bin/sh", "-c", "a=x; while :; do a=$a$a; done"]




def _decoded(events: list) -> list[tuple[str, str, int]]:
    out = []
    for e in events:
        if e.topic == "/tasks/oom":
            out.append(("oom", ev.TaskOOM.FromString(e.event.value).container_id, 0))
        elif e.topic == "/tasks/exit":
            m = ev.TaskExit.FromString(e.event.value)
            out.append(("exit", m.id, m.exit_status))
    return out


def _memory_dir(agent, cid: str) -> str:
    return f"/sys/fs/cgroup/memory/{agent.cgroup_parent}/{NS}/{cid}"


def test_b15_oom_kill_then_exit(agent, rootfs):
    resources = {"memory": {"limit": LIMIT, "swap": LIMIT}}

    async def scenario():
        async with Client(agent.address, NS) as client:
            async with subscribed(client, [f"namespace=={NS}"]) as events:
                try:
                    await start_container(client, "o1", HOG, rootfs, resources=resources)
                    assert (await asyncio.wait_for(client.wait("o1"), 60)).exit_status == 137
                    with open(os.path.join(_memory_dir(agent, "o1"), "memory.oom_control")) as f:
                        kills = int(dict(line.split() for line in f)["oom_kill"])
                    assert kills >= 1
                    await asyncio.sleep(0.3)
                    seen = _decoded(events)
                    assert seen.count(("oom", "o1", 0)) == kills
                    assert ("exit", "o1", 137) in seen
                    assert seen.index(("oom", "o1", 0)) < seen.index(("exit", "o1", 137))

                    # Nested under a parent with the same limit: the namespace level here.
                    parent = os.path.dirname(_memory_dir(agent, "o1"))
                    with open(os.path.join(parent, "memory.limit_in_bytes"), "w") as f:
                        f.write(str(LIMIT))
                    events.clear()
                    await start_container(client, "o2", HOG, rootfs, resources=resources)
                    assert (await asyncio.wait_for(client.wait("o2"), 60)).exit_status == 137
                    await asyncio.sleep(0.3)
                    seen = _decoded(events)
                    assert ("oom", "o2", 0) in seen and ("exit", "o2", 137) in seen
                    with open(os.path.join(parent, "memory.limit_in_bytes"), "w") as f:
                        f.write("-1")

                    events.clear()
                    await start_container(client, "k1", ["/bin/sleep", "3600"], rootfs,
                                          resources=resources)
                    await client.kill("k1", 9)
                    assert (await client.wait("k1")).exit_status == 137
                    await asyncio.sleep(0.3)
                    assert _decoded(events) == [("exit", "k1", 137)]
                finally:
                    for cid in ("o1", "o2", "k1"):
                        await remove(client, cid)

    run(scenario())
