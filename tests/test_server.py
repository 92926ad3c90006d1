"""The daemon itself: the socket, start-up refusals, clean stop, the default config."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import tomllib

import pytest

from agent.client import Client
from helpers import run


def _serve(*args: str, cwd: str = "/", user: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agent", "serve", *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, timeout=60, cwd=cwd)


def test_socket_is_private(agent):
    st = os.stat(agent.address)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert not os.stat(os.path.dirname(agent.address)).st_mode & stat.S_IWOTH


def test_a_burst_of_calls_is_served_whole(agent):
    """Thousands of calls at once all get their answer: none is dropped as CANCELLED while
    it waits for the server to take it up."""
    import agent as package

    async def burst() -> list:
        async with Client(agent.address, "test") as c:
            return await asyncio.gather(*(c.server_version() for _ in range(3000)),
                                        return_exceptions=True)

    answers = run(burst())
    assert [a for a in answers if a != package.__version__] == []


def test_second_agent_on_live_socket_refuses(agent, agent_factory):
    other = agent_factory()
    r = _serve("--address", agent.address, "--root", other.root, "--state", other.state)
    assert r.returncode == 1
    assert r.stderr.decode().strip().splitlines() == [
        f"taskagent: another agent is already serving on {agent.address}"]


def test_second_agent_on_same_state_refuses(agent, tmp_path):
    os.makedirs(tmp_path / "run", mode=0o700)
    r = _serve("--address", str(tmp_path / "run" / "s.sock"), "--root", agent.root,
               "--state", agent.state)
    assert r.returncode == 1
    line = r.stderr.decode().strip()
    assert line.startswith("taskagent: another agent (pid ")
    assert line.endswith(f"is running with state directory {agent.state}")


def test_stale_socket_is_replaced(agent_factory):
    a = agent_factory()
    os.makedirs(os.path.dirname(a.address), mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(a.address)
    stale.close()  # bound but nobody listens: what a killed agent leaves behind
    a.start()

    async def scenario():
        async with Client(a.address, "default") as client:
            assert await client.server_version()

    run(scenario())


def test_world_writable_socket_directory_refused(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    r = _serve("--address", str(d / "s.sock"), "--root", str(tmp_path / "root"),
               "--state", str(tmp_path / "state"))
    assert r.returncode == 1
    assert r.stderr.decode().strip() == (
        f"taskagent: socket directory {d} is world-writable; use a directory only root can write")


def test_non_root_refuses_with_one_line(tmp_path):
    if subprocess.run(["which", "setpriv"], capture_output=True).returncode != 0:
        pytest.skip("setpriv (util-linux) is not installed")
    os.chmod(tmp_path, 0o755)
    r = _serve("--address", str(tmp_path / "s.sock"), cwd=str(tmp_path), user="65534")
    assert r.returncode == 1
    assert r.stderr.decode().strip().splitlines() == [
        "taskagent: must run as root (it creates namespaces, cgroups and mounts)"]


def test_sigterm_stops_cleanly(agent_factory, rootfs):
    a = agent_factory().start()

    async def scenario():
        async with Client(a.address, "default") as client:
            await client.server_version()

    run(scenario())
    a.signal(signal.SIGTERM)
    assert a.wait(30) == 0
    assert not os.path.exists(a.address)
    assert "stopped" in a.read_log()


def test_missing_required_plugin_is_one_line(tmp_path):
    os.makedirs(tmp_path / "run", mode=0o700)
    cfg = tmp_path / "c.toml"
    cfg.write_text('disabled_plugins = ["io.containerd.event.v1.exchange"]\n')
    r = _serve("--address", str(tmp_path / "run" / "s.sock"), "--root", str(tmp_path / "root"),
               "--state", str(tmp_path / "state"), "--config", str(cfg))
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert lines[-1].startswith("taskagent: plugin ")
    assert "requires a plugin of type io.containerd.event.v1, and none is enabled" in lines[-1]
    assert not (tmp_path / "run" / "s.sock").exists()


def test_bad_runtime_option_is_one_line_and_leaves_nothing(tmp_path):
    os.makedirs(tmp_path / "run", mode=0o700)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[plugins."io.containerd.runtime.v2.native"]\n  freezer_anchor = "yes"\n'
                   '  cgroup_parent = "taskagent-test-badopt"\n')
    r = _serve("--address", str(tmp_path / "run" / "s.sock"), "--root", str(tmp_path / "root"),
               "--state", str(tmp_path / "state"), "--config", str(cfg))
    assert r.returncode == 1
    last = r.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("taskagent: ")
    assert "freezer_anchor must be true or false, not 'yes'" in last
    assert not (tmp_path / "run" / "s.sock").exists()
    assert not [h for h in os.listdir("/sys/fs/cgroup")
                if os.path.exists(os.path.join("/sys/fs/cgroup", h, "taskagent-test-badopt"))]


def test_config_default_is_complete_toml():
    r = subprocess.run([sys.executable, "-m", "agent", "config", "default"], capture_output=True,
                       check=True, cwd="/")
    cfg = tomllib.loads(r.stdout.decode())
    assert cfg["root"] == "/var/lib/taskagent"
    assert cfg["state"] == "/run/taskagent"
    assert cfg["grpc"]["address"] == "/run/taskagent/taskagent.sock"
    native = cfg["plugins"]["io.containerd.runtime.v2.native"]
    assert native["cgroup_driver"] == "auto"
    assert native["cgroup_parent"] == "taskagent"
    assert native["freezer_anchor"] is True
    assert cfg["plugins"]["io.containerd.metadata.v1.sqlite"]["synchronous"] == "normal"


def test_config_default_is_accepted_as_a_config_file(tmp_path):
    """What `config default` prints can be saved and given to --config as it is."""
    from agent import config

    r = subprocess.run([sys.executable, "-m", "agent", "config", "default"], capture_output=True,
                       check=True, cwd="/")
    path = tmp_path / "config.toml"
    path.write_bytes(r.stdout)
    cfg = config.load(str(path))
    assert (cfg.metrics_address, cfg.root, cfg.address) == (
        "", "/var/lib/taskagent", "/run/taskagent/taskagent.sock")
