"""Shared fixtures: a busybox rootfs, and agents started on temporary sockets and
directories, stopped (with the supervisor they started) after each test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: the agent creates namespaces and cgroups")
        for item in items:
            if "needs_root" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory) -> str:
    """A minimal root filesystem: busybox-static and its applets, plus the usual dirs."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (the README's test command installs it)")
    root = tmp_path_factory.mktemp("rootfs")
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "run", "root"):
        (root / d).mkdir()
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    for name in applets.stdout.split():
        if name != "busybox":
            os.symlink("busybox", root / "bin" / name)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return str(root)


RUNTIME_URI = "io.containerd.runtime.v2.native"


class AgentProcess:
    """One agent on a private socket, state, root and cgroup parent; `stop()` also ends
    its supervisor and removes its cgroup parent."""

    def __init__(self, base: str, config_text: str | None = None,
                 runtime_options: dict | None = None):
        self.base = base
        self.address = os.path.join(base, "run", "agent.sock")
        self.root = os.path.join(base, "root")
        self.state = os.path.join(base, "state")
        self.log_path = os.path.join(base, "agent.log")
        self.cgroup_parent = "taskagent-test-" + os.path.basename(base).rsplit("-", 1)[-1]
        options = {"cgroup_parent": self.cgroup_parent, **(runtime_options or {})}
        self.cgroup_parent = options["cgroup_parent"]
        lines = [f'[plugins."{RUNTIME_URI}"]']
        lines += [f"  {k} = {_toml(v)}" for k, v in options.items()]
        self.config = os.path.join(base, "config.toml")
        with open(self.config, "w") as f:
            f.write((config_text or "") + "\n" + "\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self, tries: int = 1500, ignored_signals: tuple[int, ...] = ()) -> "AgentProcess":
        """ignored_signals: the agent starts with these ignored (as under nohup), and so does
        the supervisor it starts."""
        os.makedirs(os.path.dirname(self.address), mode=0o700, exist_ok=True)
        cmd = [sys.executable, "-m", "agent", "serve", "--address", self.address,
               "--root", self.root, "--state", self.state, "--log-level", "debug"]
        if self.config:
            cmd += ["--config", self.config]
        self.log = open(self.log_path, "ab")
        # cwd outside the checkout: `python -m agent` must import the installed package.
        if ignored_signals:  # through a shell: no Python runs between fork and exec
            names = " ".join(signal.Signals(s).name[3:] for s in ignored_signals)
            cmd = ["/bin/sh", "-c", f"trap '' {names}; exec \"$0\" \"$@\""] + cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.base)
        for _ in range(tries):
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.read_log()}")
            if _accepts(self.address):
                return self
            time.sleep(0.02)
        raise RuntimeError(f"agent did not start serving after {tries} tries:\n{self.read_log()}")

    def read_log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        stop_supervisor(self.state)
        remove_cgroup_tree(self.cgroup_parent)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def remove_cgroup_tree(parent: str) -> None:
    """Remove a test agent's cgroup parent in every hierarchy, deepest first."""
    roots = [os.path.join("/sys/fs/cgroup", c, parent) for c in os.listdir("/sys/fs/cgroup")]
    roots.append(os.path.join("/sys/fs/cgroup/unified", parent))
    for root in roots:
        if not os.path.isdir(root):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def _accepts(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def stop_supervisor(state: str) -> None:
    """Ask the supervisor this agent started to kill what it holds and exit."""
    from agent.runtime.native import supervisor

    path = supervisor.socket_path(os.path.join(state, RUNTIME_URI))
    if os.path.exists(path):
        supervisor.shutdown_sync(path, force=True)


@pytest.fixture
def agent_factory():
    made: list[AgentProcess] = []
    dirs: list[str] = []

    def make(config_text: str | None = None, base: str | None = None,
             runtime_options: dict | None = None) -> AgentProcess:
        if base is None:
            base = tempfile.mkdtemp(prefix="taskagent-test-")
            dirs.append(base)
        a = AgentProcess(base, config_text, runtime_options)
        made.append(a)
        return a

    yield make
    for a in reversed(made):  # a restarted agent (same state) goes before the one it replaced
        a.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def agent(agent_factory) -> AgentProcess:
    return agent_factory().start()
