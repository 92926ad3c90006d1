"""What an agent owns and gives back: its cgroup parent (one agent each), its supervisor (gone
with the agent when it holds nothing), and nothing left by a start that was refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from conftest import RUNTIME_URI
from helpers import remove, run, start_container
from polling import poll_until

from agent.client import Client

NS = "own"


def _v1_or_v2_dirs(parent: str) -> list[str]:
    """The parent's directory in every hierarchy that has it."""
    tops = [os.path.join("/sys/fs/cgroup", h) for h in os.listdir("/sys/fs/cgroup")]
    return [os.path.join(t, parent) for t in tops if os.path.isdir(os.path.join(t, parent))]


def _supervisor_pid(agent) -> int:
    with open(f"/proc/{agent.proc.pid}/task/{agent.proc.pid}/children") as f:
        for pid in f.read().split():
            if os.readlink(f"/proc/{pid}/exe").endswith("taskagent-supervisor"):
                return int(pid)
    raise AssertionError("the agent started no supervisor")


def _gone(pid: int) -> bool:
    """Exited (gone, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_second_agent_on_the_same_cgroup_parent_refuses_and_harms_nothing(
        agent_factory, rootfs):
    first = agent_factory().start()

    async def start_one():
        async with Client(first.address, NS) as client:
            return await start_container(client, "k1", ["/bin/sleep", "3600"], rootfs)

    pid = run(start_one())
    sv_pid = _supervisor_pid(first)
    second = agent_factory(runtime_options={"cgroup_parent": first.cgroup_parent})
    with open(second.log_path, "ab") as log:
        r = subprocess.run([sys.executable, "-m", "agent", "serve", "--address", second.address,
                            "--root", second.root, "--state", second.state, "--config",
                            second.config], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=60, cwd="/")
        log.write(r.stderr)
    assert r.returncode == 1
    last = r.stderr.decode().strip().splitlines()[-1]
    assert last.endswith(
        f"cgroup parent '{first.cgroup_parent}' is held by another agent's supervisor "
        f"(pid {sv_pid}); give each agent its own cgroup_parent"), last
    # The refused agent made nothing: no state, no root, no supervisor.
    assert not os.path.exists(second.state) and not os.path.exists(second.root)
    # The first agent's container runs on, in its cgroup.
    assert os.path.exists(f"/proc/{pid}")
    with open(f"/proc/{pid}/cgroup") as f:
        assert f"/{first.cgroup_parent}/{NS}/k1" in f.read()
    assert _supervisor_pid(first) == sv_pid

    async def clean():
        async with Client(first.address, NS) as client:
            await remove(client, "k1")

    run(clean())


def test_the_supervisor_leaves_with_its_agent_when_it_holds_nothing(agent_factory, rootfs):
    agent = agent_factory().start()

    async def lifecycle():
        async with Client(agent.address, NS) as client:
            await start_container(client, "k2", ["/bin/true"], rootfs)
            await client.wait("k2")
            await remove(client, "k2")

    run(lifecycle())
    sv_pid = _supervisor_pid(agent)
    assert _v1_or_v2_dirs(agent.cgroup_parent) != []
    sock = os.path.join(agent.state, RUNTIME_URI, "supervisor.sock")
    assert os.path.exists(sock)
    agent.stop()
    poll_until(lambda: _gone(sv_pid), "the supervisor exiting")
    assert not os.path.exists(sock)  # it removed its own socket
    # Nothing of the agent is left in the cgroup tree either.
    assert _v1_or_v2_dirs(agent.cgroup_parent) == []


def test_the_supervisor_stays_while_it_holds_a_container(agent_factory, rootfs):
    agent = agent_factory().start()

    async def start_one():
        async with Client(agent.address, NS) as client:
            return await start_container(client, "k3", ["/bin/sleep", "3600"], rootfs)

    pid = run(start_one())
    sv_pid = _supervisor_pid(agent)
    agent.proc.terminate()
    agent.wait(30)
    time.sleep(0.3)
    assert not _gone(sv_pid) and os.path.exists(f"/proc/{pid}")
    again = agent_factory(base=agent.base).start()

    async def take_back():
        async with Client(again.address, NS) as client:
            assert [(t.id, t.pid, t.status) for t in await client.list_tasks()] == [
                ("k3", pid, 2)]
            await remove(client, "k3")

    run(take_back())


def test_supervisor_stop_refuses_while_its_agent_runs(agent, rootfs):
    r = subprocess.run([sys.executable, "-m", "agent", "supervisor", "stop", "--state",
                        agent.state, "--force"], capture_output=True, timeout=60, cwd="/")
    assert r.returncode == 1
    assert r.stderr.decode() == (f"taskagent: an agent (pid {agent.proc.pid}) is running with "
                                 f"state directory {agent.state}; stop it first\n")
    # The agent kept its supervisor link: it still runs containers.

    async def lifecycle():
        async with Client(agent.address, NS) as client:
            await start_container(client, "k4", ["/bin/true"], rootfs)
            assert (await client.wait("k4")).exit_status == 0
            await remove(client, "k4")

    run(lifecycle())
    assert "the supervisor connection was lost" not in agent.read_log()


def test_a_creation_cut_short_leaves_no_cgroup_after_restart(agent_factory, rootfs):
    """A crash between the first and last hierarchy of a task's cgroup leaves directories in
    some hierarchies only; the next start removes them."""
    agent = agent_factory().start()

    async def one():  # makes the namespace level everywhere
        async with Client(agent.address, NS) as client:
            await start_container(client, "k5", ["/bin/true"], rootfs)
            await client.wait("k5")
            await remove(client, "k5")

    run(one())
    agent.proc.kill()
    agent.wait(30)
    tops = _v1_or_v2_dirs(agent.cgroup_parent)
    half = [os.path.join(top, NS, "cut") for top in tops[: max(1, len(tops) // 2)]]
    for d in half:
        os.mkdir(d)
    again = agent_factory(base=agent.base).start()
    assert [d for d in half if os.path.exists(d)] == []
    assert f"removing cgroup {agent.cgroup_parent}/{NS}/cut: no task owns it" in again.read_log()


def test_runtime_state_lives_under_the_agent_state(agent):
    # The supervisor's socket is private to root, inside the agent's state directory.
    sock = os.path.join(agent.state, RUNTIME_URI, "supervisor.sock")
    assert os.stat(sock).st_mode & 0o777 == 0o600
