"""Our CLI's `exec` and `ps` against a running container (`exec -t` is in test_tty.py)."""

from __future__ import annotations

import subprocess
import sys

import grpc
from exec_support import container, process_spec
from grpc_helpers import needs_root
from helpers import code_of, run

from agent.client import Client

pytestmark = needs_root


def cli(agent, command: str, *args: str, input: bytes | None = None
        ) -> subprocess.CompletedProcess:
    """`python -m agent COMMAND -a SOCK -n test ARGS...`, run outside the checkout as the agent
    itself is (the package under test is the one imported)."""
    return subprocess.run(["timeout", "-k", "5", "60", sys.executable, "-m", "agent", command,
                           "-a", agent.address, "-n", "test", *args],
                          input=input, capture_output=True, cwd=agent.base, check=False)


def test_cli_exec_output_and_exit_code(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            r = cli(agent, "exec", "--exec-id", "x1", "c1", "/bin/sh", "-c",
                    "echo out; echo err >&2; exit 4")
            assert (r.returncode, r.stdout, r.stderr) == (4, b"out\n", b"err\n")
            # The CLI deleted its exec: the id is free again.
            assert await code_of(c.get("c1", "x1")) == grpc.StatusCode.NOT_FOUND
            # -i forwards stdin, and its EOF reaches the process (CloseIO).
            r = cli(agent, "exec", "-i", "--exec-id", "x1", "c1", "/bin/cat", input=b"a\nb\n")
            assert (r.returncode, r.stdout, r.stderr) == (0, b"a\nb\n", b"")
            # A failure is one line naming the cause and the code, exit 1, nothing left.
            r = cli(agent, "exec", "--exec-id", "x2", "c1", "/no/such/binary")
            assert r.returncode == 1
            lines = r.stderr.decode().splitlines()
            assert len(lines) == 1 and lines[0].startswith("taskagent: ")
            assert "/no/such/binary" in lines[0] and lines[0].endswith("(failed_precondition)")
            assert await code_of(c.get("c1", "x2")) == grpc.StatusCode.NOT_FOUND
            r = cli(agent, "exec", "--exec-id", "x3", "nosuch", "/bin/true")
            assert r.returncode == 1 and r.stderr.decode().endswith("(not_found)\n")
            assert (await c.get("c1")).status == 2

    run(body())


def test_cli_ps_names_the_execs(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs) as init:
            await c.exec("c1", "e1", process_spec(["/bin/sleep", "3600"]))
            e1 = await c.start("c1", "e1")
            await c.exec("c1", "e2", process_spec(["/bin/sleep", "3600"]))
            e2 = await c.start("c1", "e2")
            r = cli(agent, "ps", "c1")
            assert r.returncode == 0, r.stderr
            lines = r.stdout.decode().splitlines()
            assert lines[0].split() == ["PID", "INFO"]
            assert sorted(line.split() for line in lines[1:]) == sorted(
                [[str(init), "-"], [str(e1), "e1"], [str(e2), "e2"]])
            r = cli(agent, "ps", "nosuch")
            assert r.returncode == 1 and r.stderr.decode().endswith("(not_found)\n")

    run(body())


def test_cli_kill_an_exec(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            await c.exec("c1", "e1", process_spec(["/bin/sleep", "3600"]))
            await c.start("c1", "e1")
            r = cli(agent, "kill", "--exec-id", "e1", "-s", "SIGTERM", "c1")
            assert r.returncode == 0, r.stderr
            assert (await c.wait("c1", "e1")).exit_status == 143
            assert (await c.get("c1")).status == 2  # the init runs on
            await c.delete_process("c1", "e1")

    run(body())

