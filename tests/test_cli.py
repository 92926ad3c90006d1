"""The `taskagent` command for people, against a real agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from helpers import ctr, leftovers
from polling import poll_until


def cli(agent, *args: str, input: bytes | None = None, timeout: int = 60):
    return subprocess.run([sys.executable, "-m", "agent", *args[:1], "-a", agent.address,
                           "-n", "cli", *args[1:]], capture_output=True, input=input,
                          timeout=timeout, cwd="/")


def test_run_prints_output_and_exits_with_its_code(agent, rootfs):
    r = cli(agent, "run", "--rm", "--rootfs", rootfs, "r1", "--", "/bin/sh", "-c",
            "echo out; echo err >&2; exit 4")
    assert (r.returncode, r.stdout, r.stderr) == (4, b"out\n", b"err\n")
    r = cli(agent, "run", "--rm", "-i", "--rootfs", rootfs, "r2", "--", "/bin/cat",
            input=b"piped through\n")
    assert (r.returncode, r.stdout) == (0, b"piped through\n")
    assert cli(agent, "ls").stdout.decode().splitlines() == ["TASK    PID    STATUS"]


def test_detached_control_commands(agent, rootfs):
    r = cli(agent, "run", "-d", "--rootfs", rootfs, "d1", "--", "/bin/sleep", "1000")
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout)
    rows = [line.split() for line in cli(agent, "ls").stdout.decode().splitlines()[1:]]
    assert rows == [["d1", str(pid), "RUNNING"]]
    assert cli(agent, "pause", "d1").returncode == 0
    assert cli(agent, "ls").stdout.decode().split()[-1] == "PAUSED"
    assert cli(agent, "resume", "d1").returncode == 0
    assert cli(agent, "update", "d1", "--memory", str(64 << 20), "--pids-limit", "20"
               ).returncode == 0
    metrics = dict(line.split(None, 1) for line in
                   cli(agent, "metrics", "d1").stdout.decode().splitlines()[1:])
    assert int(metrics["memory.limit_in_bytes"]) == 64 << 20
    assert int(metrics["pids.limit"]) == 20 and int(metrics["pids.current"]) == 1
    top = cli(agent, "top", "--once").stdout.decode().splitlines()
    assert top[0].split() == ["TASK", "CPU", "MEMORY", "LIMIT", "PIDS"]
    assert top[1].split()[0] == "d1" and top[1].split()[3] == "64.0MiB"
    assert top[1].split()[1].endswith("%")  # a rate over --once's own half second
    bad = cli(agent, "update", "d1", "--memory", "-7")
    assert bad.returncode == 1 and b"invalid_argument" in bad.stderr
    assert cli(agent, "kill", "-s", "KILL", "d1").returncode == 0
    deleted = cli(agent, "delete", "d1")
    for _ in range(50):
        if deleted.returncode == 0:
            break
        deleted = cli(agent, "delete", "d1")
    assert deleted.stdout == b"d1: exit status 137\n"
    assert cli(agent, "ls").stdout.decode().splitlines() == ["TASK    PID    STATUS"]


def test_global_options_go_before_the_command_too(agent, rootfs):
    r = cli(agent, "run", "-d", "--rootfs", rootfs, "g1", "--", "/bin/sleep", "1000")
    assert r.returncode == 0, r.stderr
    before = subprocess.run([sys.executable, "-m", "agent", "-a", agent.address, "-n", "cli",
                             "ls"], capture_output=True, timeout=60, cwd="/")
    assert before.returncode == 0, before.stderr
    assert [line.split()[0] for line in before.stdout.decode().splitlines()] == ["TASK", "g1"]
    assert cli(agent, "kill", "-s", "KILL", "g1").returncode == 0
    for _ in range(50):
        if cli(agent, "delete", "g1").returncode == 0:
            break


def test_an_unreachable_agent_is_named_in_one_line(tmp_path):
    missing = str(tmp_path / "none.sock")
    r = subprocess.run([sys.executable, "-m", "agent", "-a", missing, "ls"],
                       capture_output=True, timeout=60, cwd="/")
    assert (r.returncode, r.stderr.decode()) == (
        1, f"taskagent: cannot reach the agent at {missing}: no agent is serving there\n")


def test_a_run_that_cannot_make_its_task_leaves_no_container(agent, tmp_path):
    missing = str(tmp_path / "nope")
    r = cli(agent, "run", "-d", "--rootfs", missing, "n1", "--", "/bin/true")
    assert (r.returncode, r.stderr.decode()) == (
        1, f"taskagent: rootfs {missing} does not exist or is not a directory "
           "(invalid_argument)\n")
    r = cli(agent, "run", "--rootfs", missing, "n2", "--", "/bin/true")
    assert r.returncode == 1
    assert ctr(agent.address, "c", "ls", "-q", namespace="cli").stdout == b""


def test_run_and_exec_take_stdin_from_a_file_or_dev_null(agent, rootfs, tmp_path):
    """-i with stdin a regular file or /dev/null (epoll cannot watch either): forwarded by a
    thread, EOF passed on, the process's output and exit code as for a pipe."""
    data = tmp_path / "input"
    data.write_bytes(b"".join(b"line %d\n" % i for i in range(20000)))
    with open(data, "rb") as f:
        r = subprocess.run([sys.executable, "-m", "agent", "run", "-a", agent.address, "-n",
                            "cli", "--rm", "-i", "--rootfs", rootfs, "f1", "--", "/bin/cat"],
                           stdin=f, capture_output=True, timeout=60, cwd="/")
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout == data.read_bytes()
    with open(os.devnull, "rb") as f:
        r = subprocess.run([sys.executable, "-m", "agent", "run", "-a", agent.address, "-n",
                            "cli", "--rm", "-i", "--rootfs", rootfs, "f2", "--", "/bin/sh",
                            "-c", "cat; echo done"],
                           stdin=f, capture_output=True, timeout=60, cwd="/")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"done\n", b"")
    assert cli(agent, "ls").stdout.decode().splitlines() == ["TASK    PID    STATUS"]


def test_an_interrupted_run_rm_removes_its_task_and_container(agent, rootfs):
    """Ctrl-C (SIGINT) to `taskagent run --rm`: the task is killed and deleted, then its
    container; nothing is left that no call could reach."""
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-a", agent.address, "-n",
                             "cli", "--rm", "--rootfs", rootfs, "i1", "--", "/bin/sleep",
                             "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    try:
        poll_until(lambda: [line.split()[0] for line in
                            cli(agent, "ls").stdout.decode().splitlines()[1:]
                            if line.split()[2] == "RUNNING"] == ["i1"],
                   "the task i1 running", tries=300, interval=0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert cli(agent, "ls").stdout.decode().splitlines() == ["TASK    PID    STATUS"]
    assert ctr(agent.address, "c", "ls", "-q", namespace="cli").stdout == b""
    assert leftovers(agent, "cli", "i1") == []
