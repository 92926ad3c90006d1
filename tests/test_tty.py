"""Terminals end to end, driven through tmux as a person would: `ctr run -t`, `ctr task exec
-t` and our CLI's `run -t` / `exec -t`. Typed commands run and echo, `stty size` shows the
size the client set with ResizePty (first its own, then after a window resize), and `exit 3`
ends the client with 3. Each test has its own tmux server (-S), killed at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import grpc
import pytest
from grpc_helpers import needs_root
from helpers import code_of, ctr, need_ctr, run, with_fifo_dir
from polling import poll_until

from agent.client import Client

pytestmark = needs_root

TMUX = shutil.which("tmux")


class Tmux:
    """One private tmux server with one session running `command`."""

    def __init__(self, command: str, width: int = 120, height: int = 40):
        if TMUX is None:
            pytest.skip("tmux is not installed")
        self.dir = tempfile.mkdtemp(prefix="tty-test-")
        self.server = os.path.join(self.dir, "tmux.sock")  # our own server, nobody else's
        self.rc_path = os.path.join(self.dir, "rc")
        # The pane outlives the client so its screen can still be read.
        wrapped = f"{command}; echo $? > {self.rc_path}; exec sleep 600"
        self.tmux("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height),
                  wrapped)

    def tmux(self, *args: str) -> str:
        r = subprocess.run([TMUX, "-S", self.server, *args], capture_output=True, timeout=10,
                           check=True)
        return r.stdout.decode(errors="replace")

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "main", "-l", text)
        self.tmux("send-keys", "-t", "main", "Enter")

    def screen(self) -> list[str]:
        return [line.rstrip() for line in self.tmux("capture-pane", "-p", "-t", "main").splitlines()]

    def wait_for(self, *lines: str, tries: int = 300) -> None:
        """Wait until `lines` appear on the screen one right after the other."""
        n = len(lines)

        def shown() -> bool:
            screen = self.screen()
            return any(tuple(screen[i:i + n]) == lines for i in range(len(screen) - n + 1))

        try:
            poll_until(shown, f"{lines!r} on the screen", tries=tries, interval=0.05)
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n" + "\n".join(self.screen())) from None

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", "main", "-x", str(width), "-y", str(height))

    def exit_code(self) -> int:
        def written() -> str:
            try:
                with open(self.rc_path) as f:
                    return f.read().strip()
            except FileNotFoundError:
                return ""

        try:
            return int(poll_until(written, "the client's exit code", tries=300, interval=0.05))
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n" + "\n".join(self.screen())) from None

    def close(self) -> None:
        subprocess.run([TMUX, "-S", self.server, "kill-server"], capture_output=True, timeout=10,
                       check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def drive_shell(session: Tmux) -> None:
    """The same conversation for every client: prompt, a typed command that echoes, sizes
    before and after a window resize, and `exit 3`."""
    session.wait_for("/ #", tries=400)
    session.type("echo hel''lo; stty size")
    # The shell echoes what was typed, then runs it: the size is the client's own.
    session.wait_for("/ # echo hel''lo; stty size", "hello", "40 120", "/ #")
    session.resize(100, 30)
    time.sleep(0.5)  # SIGWINCH reaches the client, which sends ResizePty
    session.type("stty size")
    session.wait_for("/ # stty size", "30 100", "/ #")
    session.type("exit 3")
    assert session.exit_code() == 3


def cli(agent) -> str:
    """Our CLI as a shell command line, importing the agent package as the tests do."""
    env = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    return f"cd {agent.base} && {env}timeout --foreground -k 5 60 {sys.executable} -m agent"


@pytest.fixture
def c1(agent, rootfs):
    """A detached container to exec into (through ctr), removed afterwards."""
    need_ctr()
    r = ctr(agent.address, "run", "-d", "--rootfs", rootfs, "c1", "/bin/sleep", "3600")
    assert r.returncode == 0, r.stderr
    yield "c1"
    ctr(agent.address, "t", "kill", "-s", "SIGKILL", "c1")
    ctr(agent.address, "t", "delete", "-f", "c1")
    ctr(agent.address, "c", "rm", "c1")


def tasks_and_execs(agent) -> list[str]:
    return ctr(agent.address, "t", "ls", "-q").stdout.decode().split()


@pytest.mark.ctr
def test_ctr_run_tty(agent, rootfs):
    need_ctr()
    args = with_fifo_dir(agent.address, ["run", "-t", "--rm", "--rootfs", rootfs, "c3", "/bin/sh"])
    session = Tmux(f"timeout --foreground -k 5 60 ctr -a {agent.address} {' '.join(args)}")
    try:
        drive_shell(session)
    finally:
        session.close()
    assert tasks_and_execs(agent) == []
    assert ctr(agent.address, "c", "ls", "-q").stdout == b""


@pytest.mark.ctr
def test_ctr_exec_tty(agent, c1):
    args = with_fifo_dir(agent.address, ["t", "exec", "-t", "--exec-id", "t1", c1, "/bin/sh"])
    session = Tmux(f"timeout --foreground -k 5 60 ctr -a {agent.address} {' '.join(args)}")
    try:
        drive_shell(session)
    finally:
        session.close()
    # The exec is gone (ctr deleted it), the task runs on.
    r = ctr(agent.address, "t", "delete", "--exec-id", "t1", c1)
    assert r.returncode == 1 and b"not found" in r.stderr
    assert tasks_and_execs(agent) == ["c1"]


def test_cli_run_tty(agent, rootfs):
    session = Tmux(f"{cli(agent)} run -a {agent.address} -t --rm --rootfs {rootfs} c4 /bin/sh")
    try:
        drive_shell(session)
    finally:
        session.close()

    async def gone():
        async with Client(agent.address) as c:
            assert await c.list_tasks() == []
            assert await code_of(c.get("c4")) == grpc.StatusCode.NOT_FOUND

    run(gone())


@pytest.mark.ctr
def test_cli_exec_tty(agent, c1):
    session = Tmux(f"{cli(agent)} exec -a {agent.address} -t --exec-id t2 {c1} /bin/sh")
    try:
        drive_shell(session)
    finally:
        session.close()
    r = ctr(agent.address, "t", "delete", "--exec-id", "t2", c1)
    assert r.returncode == 1 and b"not found" in r.stderr
