"""The cgroup v2 driver, on this host's cgroup2 tree (a hybrid host: the tree carries no
memory or cpu controller, so resource limits are tested with recorded files elsewhere and
here the v2 mechanisms are: CLONE_INTO_CGROUP, cgroup.freeze, cgroup.kill, the eBPF device
filter). On a pure v2 host the same tests run on /sys/fs/cgroup."""

from __future__ import annotations

import asyncio
import os

import pytest

from agent.client import Client, default_spec
from agent.client.fifo import FifoSet
from agent.monitor.oom import OomMonitor
from helpers import remove, run

NS = "v2"


def _v2_mount() -> str:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    pytest.skip("this host has no cgroup2 tree mounted")


@pytest.fixture
def v2_agent(agent_factory):
    mount = _v2_mount()
    return agent_factory(runtime_options={"cgroup_driver": "v2", "cgroup_v2_mount": mount}
                         ).start(), mount


def _spec(cid, args, rootfs):
    spec = default_spec(args, rootfs, namespace=NS, id=cid)
    spec["linux"]["resources"].pop("cpu")  # no cpu controller in a hybrid host's tree
    return spec


def test_lifecycle_on_v2(v2_agent, rootfs):
    agent, mount = v2_agent
    cgdir = os.path.join(mount, agent.cgroup_parent, NS)

    async def scenario():
        async with Client(agent.address, NS) as client:
            fifos = FifoSet("a1", stdin=False)
            try:
                await client.create_container("a1", _spec("a1", [
                    "/bin/sh", "-c", "grep '^0::' /proc/self/cgroup; head -c1 /dev/zero | wc -c;"
                    " mknod /tmp/sda b 8 0 && head -c1 /tmp/sda; echo rc=$?"], rootfs))
                fifos.open_readers()
                await client.create_task("a1", "", fifos.stdout, fifos.stderr)
                await client.start("a1")
                out = (await fifos.read(fifos.stdout)).decode().splitlines()
                err = (await fifos.read(fifos.stderr)).decode()
                assert (await client.wait("a1")).exit_status == 0
                # The spec has no cgroup namespace, so the container sees the full path.
                assert out[0] == f"0::/{agent.cgroup_parent}/{NS}/a1"
                assert out[1:] == ["1", "rc=1"]
                assert "Operation not permitted" in err
                await client.delete_task("a1")
                assert not os.path.exists(os.path.join(cgdir, "a1"))
            finally:
                fifos.close()
                await remove(client, "a1")

    run(scenario())


def test_pause_and_kill_all_on_v2(v2_agent, rootfs):
    agent, mount = v2_agent
    cgdir = os.path.join(mount, agent.cgroup_parent, NS, "p1")

    async def scenario():
        async with Client(agent.address, NS) as client:
            try:
                await client.create_container("p1", _spec("p1", ["/bin/sleep", "3600"], rootfs))
                await client.create_task("p1")
                await client.start("p1")
                await client.exec("p1", "e1", {"args": ["/bin/sleep", "3601"], "cwd": "/"})
                await client.start("p1", "e1")
                await client.pause("p1")
                with open(os.path.join(cgdir, "cgroup.events")) as f:
                    assert "frozen 1" in f.read().splitlines()
                assert (await client.get("p1")).status == 4
                assert len(await client.pids("p1")) == 2
                await client.kill("p1", 9, all=True)  # cgroup.kill: frozen tasks die too
                assert (await asyncio.wait_for(client.wait("p1"), 5)).exit_status == 137
                assert (await asyncio.wait_for(client.wait("p1", "e1"), 5)).exit_status == 137
                await client.delete_task("p1")
                assert not os.path.exists(cgdir)
            finally:
                await remove(client, "p1")

    run(scenario())


def test_v2_oom_watch_reads_memory_events(tmp_path):
    """The v2 OOM path (inotify on memory.events, oom_kill counter), on a recorded file."""
    events_file = tmp_path / "memory.events"
    events_file.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    published = []

    class Publisher:
        def publish(self, ns, topic, msg):
            published.append((ns, topic, msg.container_id))

    class FakeCgroup:
        version = 2

        def memory_events_path(self):
            return str(events_file)

    class FakeTask:
        namespace, id, cgroup = "ns", "t1", FakeCgroup()

    async def scenario():
        monitor = OomMonitor(Publisher())
        task = FakeTask()
        monitor.monitor(task)
        events_file.write_text("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if published:
                break
        events_file.write_text("low 0\nhigh 0\nmax 6\noom 3\noom_kill 2\n")  # no new kill
        await asyncio.sleep(0.1)
        monitor.stop(task)
        monitor.close()

    asyncio.run(scenario())
    assert published == [("ns", "/tasks/oom", "t1"), ("ns", "/tasks/oom", "t1")]


def test_v2_parents_removed_behind_the_agents_back_are_made_again():
    from agent.cgroups.resources import Resources
    from agent.cgroups.v2 import V2Cgroup

    if os.geteuid() != 0:
        pytest.skip("needs root: the test makes cgroups")
    mount = _v2_mount()
    top = f"taskagent-test-v2parents-{os.getpid()}"
    first, second = V2Cgroup(mount, f"{top}/ns/a"), V2Cgroup(mount, f"{top}/ns/b")
    try:
        first.create(Resources())
        os.rmdir(first.dir)
        os.rmdir(os.path.join(mount, top, "ns"))  # the cached parents are gone
        os.rmdir(os.path.join(mount, top))
        second.create(Resources())
        assert os.path.isdir(second.dir)
    finally:
        for d in (second.dir, first.dir, os.path.join(mount, top, "ns"), os.path.join(mount, top)):
            if os.path.isdir(d):
                os.rmdir(d)
