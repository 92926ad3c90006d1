"""The frozen anchor cgroup that keeps v1 Pause/Resume cheap: frozen while the agent serves,
never taken for a task's leftover, removed when the agent stops, and absent when turned off."""

from __future__ import annotations

import os
import signal

import pytest

from agent.cgroups import Cgroups
from agent.cgroups.anchor import ANCHOR_NAME
from agent.client import Client
from helpers import read_file, remove, run, start_container

NS = "anchor"
FREEZER = "/sys/fs/cgroup/freezer"

if not os.path.isdir(FREEZER) or Cgroups().driver != "v1":
    pytest.skip("the anchor is for the cgroup v1 freezer, which this host's driver does not use",
                allow_module_level=True)


def _anchor(agent) -> str:
    return os.path.join(FREEZER, agent.cgroup_parent, ANCHOR_NAME)


def test_anchor_is_frozen_while_serving_survives_a_crash_and_goes_at_stop(agent_factory, rootfs):
    agent = agent_factory().start()
    anchor = _anchor(agent)
    assert read_file(os.path.join(anchor, "freezer.state")).strip() == "FROZEN"
    assert os.listdir(anchor) and read_file(os.path.join(anchor, "tasks")) == ""
    task_freezer = os.path.join(FREEZER, agent.cgroup_parent, NS, "a1", "freezer.state")

    async def pause_and_resume(address):
        async with Client(address, NS) as client:
            await client.pause("a1")
            paused = ((await client.get("a1")).status, read_file(task_freezer).strip())
            await client.resume("a1")
            resumed = ((await client.get("a1")).status, read_file(task_freezer).strip())
            return paused, resumed

    async def start(address):
        async with Client(address, NS) as client:
            return await start_container(client, "a1", ["/bin/sleep", "3600"], rootfs)

    pid = run(start(agent.address))
    assert run(pause_and_resume(agent.address)) == ((4, "FROZEN"), (2, "THAWED"))

    # A crash leaves the anchor; the next agent takes it over and does not count it as a
    # leftover task cgroup (the running task is kept).
    agent.proc.kill()
    agent.wait(30)
    assert read_file(os.path.join(anchor, "freezer.state")).strip() == "FROZEN"
    again = agent_factory(base=agent.base).start()
    assert read_file(os.path.join(anchor, "freezer.state")).strip() == "FROZEN"
    assert run(pause_and_resume(again.address)) == ((4, "FROZEN"), (2, "THAWED"))
    os.kill(pid, 0)  # still running

    again.signal(signal.SIGTERM)
    assert again.wait(30) == 0
    assert not os.path.exists(anchor)
    assert os.path.isdir(os.path.dirname(task_freezer))  # the task's own cgroup stays
    again = agent_factory(base=agent.base).start()

    async def cleanup():
        async with Client(again.address, NS) as client:
            await remove(client, "a1")

    run(cleanup())


def test_anchor_turned_off(agent_factory, rootfs):
    # One left by a crash is removed by an agent that does not want it.
    crashed = agent_factory().start()
    assert os.path.isdir(_anchor(crashed))
    crashed.proc.kill()
    crashed.wait(30)
    agent = agent_factory(base=crashed.base, runtime_options={"freezer_anchor": False}).start()
    assert not os.path.exists(_anchor(agent))

    async def pause_and_resume():
        async with Client(agent.address, NS) as client:
            await start_container(client, "a2", ["/bin/sleep", "3600"], rootfs)
            await client.pause("a2")
            paused = (await client.get("a2")).status
            await client.resume("a2")
            resumed = (await client.get("a2")).status
            await remove(client, "a2")
            return paused, resumed

    assert run(pause_and_resume()) == (4, 2)
    assert not os.path.exists(_anchor(agent))
