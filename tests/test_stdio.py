"""stdio between a process and its client's fifos: nothing lost or reordered however fast the
process exits, EOF only after the last byte, stdin EOF only through CloseIO (or when every
writer is gone), with and without a terminal."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import stat
import subprocess

import grpc
import pytest
from exec_support import container, process_spec, run_exec, start_exec, supervisor_pid
from grpc_helpers import needs_root
from helpers import code_of, ctr, need_ctr, remove, run, start_container, with_fifo_dir

from agent.client import Client
from agent.client.fifo import FifoSet

pytestmark = needs_root


async def write_all(fd: int, data: bytes) -> None:
    """Write to a blocking fifo fd off the event loop."""
    await asyncio.get_running_loop().run_in_executor(None, _write_all, fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def test_stdout_and_stderr_exact_for_fast_exits(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            for i in range(30):
                status, out, err, _ = await run_exec(
                    c, "c1", f"e{i}", ["/bin/sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3"])
                assert (status, out, err) == (3, b"out1\nout2\n", b"err1\n"), i

    run(body())


def test_binary_output_is_byte_exact(agent, rootfs):
    with open(os.path.join(rootfs, "bin", "busybox"), "rb") as f:
        expected = f.read()

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            for i in range(3):
                status, out, err, _ = await run_exec(c, "c1", f"b{i}", ["/bin/cat", "/bin/busybox"])
                assert (status, err) == (0, b"")
                assert len(out) == len(expected) and out == expected

    run(body())


def test_stdin_is_relayed_whole_and_closeio_gives_eof_after_it(agent, rootfs):
    """Input written before CloseIO reaches the process, even when the process is slow to
    read it (the fifo still holds it when CloseIO arrives), and then the process sees EOF."""
    data = os.urandom(120_000)

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            fifos, _ = await start_exec(c, "c1", "e1", ["/bin/sh", "-c", "sleep 1; exec cat"],
                                        stdin=True)
            try:
                reader = asyncio.ensure_future(fifos.read(fifos.stdout))
                await write_all(fifos.open_stdin(), data)
                await c.close_stdin("c1", "e1")
                fifos.close_stdin()
                waited = await asyncio.wait_for(c.wait("c1", "e1"), 10)
                out = await asyncio.wait_for(reader, 10)
                assert waited.exit_status == 0
                assert len(out) == len(data) and hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
                await c.delete_process("c1", "e1")
            finally:
                fifos.close()

    run(body())


def test_closeio_while_the_client_keeps_its_end_open(agent, rootfs):
    """CloseIO alone is EOF for the process, whatever the client still holds."""

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            fifos, _ = await start_exec(c, "c1", "e1", ["/bin/cat"], stdin=True)
            try:
                reader = asyncio.ensure_future(fifos.read(fifos.stdout))
                wfd = fifos.open_stdin()
                os.write(wfd, b"one\n")
                await asyncio.sleep(0.3)
                assert not reader.done()
                await c.close_stdin("c1", "e1")
                assert (await asyncio.wait_for(c.wait("c1", "e1"), 5)).exit_status == 0
                assert await asyncio.wait_for(reader, 5) == b"one\n"
                await c.delete_process("c1", "e1")
                # A second CloseIO, and one on an exited process, are no-ops.
                await c.exec("c1", "e2", process_spec(["/bin/true"]))
                await c.close_stdin("c1", "e2")
                await c.close_stdin("c1", "e2")
                await c.delete_process("c1", "e2")
                assert await code_of(c.close_stdin("c1", "e2")) == grpc.StatusCode.NOT_FOUND
            finally:
                fifos.close()

    run(body())


def test_client_closing_its_end_is_not_eof(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            fifos, _ = await start_exec(c, "c1", "e1", ["/bin/cat"], stdin=True)
            try:
                reader = asyncio.ensure_future(fifos.read(fifos.stdout))
                os.write(fifos.open_stdin(), b"ping\n")
                fifos.close_stdin()
                await asyncio.sleep(1)
                assert (await c.get("c1", "e1")).status == 2  # still RUNNING
                # A client may come back and write more (ctr attaching again).
                os.write(fifos.open_stdin(), b"pong\n")
                fifos.close_stdin()
                await c.close_stdin("c1", "e1")
                assert (await asyncio.wait_for(c.wait("c1", "e1"), 5)).exit_status == 0
                assert await asyncio.wait_for(reader, 5) == b"ping\npong\n"
                await c.delete_process("c1", "e1")
            finally:
                fifos.close()

    run(body())


def test_closeio_on_the_init(agent, rootfs):
    """CloseIO without an exec id acts on the init (`ctr run` with piped stdin)."""

    async def body():
        async with Client(agent.address, "test") as c:
            fifos = FifoSet("c1")
            try:
                await start_container(c, "c1", ["/bin/cat"], rootfs, fifos=fifos)
                reader = asyncio.ensure_future(fifos.read(fifos.stdout))
                os.write(fifos.open_stdin(), b"to init\n")
                await c.close_stdin("c1")
                assert (await asyncio.wait_for(c.wait("c1"), 5)).exit_status == 0
                assert await asyncio.wait_for(reader, 5) == b"to init\n"
            finally:
                fifos.close()
                await remove(c, "c1")

    run(body())


def test_terminal_input_and_output_are_exact(agent, rootfs):
    """Through a pty in raw mode: 100,000 bytes in, their digest out; then CRLF output."""
    data = bytes(range(32, 127)) * 1053  # printable: 100,035 bytes
    data = data[:100_000]

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            script = "stty raw -echo; echo ready; head -c 100000 | sha256sum"
            fifos, _ = await start_exec(c, "c1", "t1", ["/bin/sh", "-c", script], terminal=True,
                                        stdin=True)
            try:
                got = bytearray()
                ready = asyncio.get_running_loop().create_future()

                def sink(chunk: bytes) -> None:
                    got.extend(chunk)
                    if b"ready" in got and not ready.done():
                        ready.set_result(None)

                reader = asyncio.ensure_future(fifos.read(fifos.stdout, sink))
                wfd = fifos.open_stdin()
                await asyncio.wait_for(ready, 5)
                await write_all(wfd, data)
                assert (await asyncio.wait_for(c.wait("c1", "t1"), 10)).exit_status == 0
                await asyncio.wait_for(reader, 10)
                digest = hashlib.sha256(data).hexdigest()
                # raw mode turned output processing off: plain newlines after "ready".
                assert bytes(got) == f"ready\n{digest}  -\n".encode()
                await c.delete_process("c1", "t1")
            finally:
                fifos.close()

            status, out, _, _ = await run_exec(c, "c1", "t2", ["/bin/sh", "-c", "echo a; echo b"],
                                               terminal=True)
            assert (status, out) == (0, b"a\r\nb\r\n")

    run(body())


def test_terminal_closeio_sends_eof(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            fifos, _ = await start_exec(c, "c1", "t1", ["/bin/sh", "-c", "stty -echo; cat; echo done"],
                                        terminal=True, stdin=True)
            try:
                reader = asyncio.ensure_future(fifos.read(fifos.stdout))
                wfd = fifos.open_stdin()
                await asyncio.sleep(0.3)  # stty has run: the input is not echoed
                os.write(wfd, b"line\n")
                await c.close_stdin("c1", "t1")
                assert (await asyncio.wait_for(c.wait("c1", "t1"), 5)).exit_status == 0
                assert await asyncio.wait_for(reader, 5) == b"line\r\ndone\r\n"
                await c.delete_process("c1", "t1")
            finally:
                fifos.close()

    run(body())


def test_no_stdio_at_all(agent, rootfs):
    """Empty fifo paths (ctr --null-io): the process gets /dev/null on 0, 1 and 2."""

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            await c.exec("c1", "n1", process_spec(["/bin/sleep", "3600"]))
            pid = await c.start("c1", "n1")
            assert [os.readlink(f"/proc/{pid}/fd/{i}") for i in range(3)] == ["/dev/null"] * 3
            assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
            await c.close_stdin("c1", "n1")  # no stdin: a no-op
            await c.kill("c1", 9, exec_id="n1")
            assert (await asyncio.wait_for(c.wait("c1", "n1"), 5)).exit_status == 137
            await c.delete_process("c1", "n1")

    run(body())


@pytest.mark.ctr
def test_ctr_run_with_piped_stdin(agent, rootfs):
    need_ctr()
    pipeline = (f"(sleep 1; echo foo) | timeout -k 5 60 ctr -a {agent.address} "
                f"run --rm --rootfs {rootfs} c2 /bin/cat")
    r = subprocess.run(["sh", "-c", pipeline], capture_output=True, check=False)
    assert (r.returncode, r.stdout) == (0, b"foo\n"), r.stderr


@pytest.mark.ctr
def test_ctr_exec_with_piped_stdin(agent, rootfs):
    need_ctr()
    r = ctr(agent.address, "run", "-d", "--rootfs", rootfs, "c1", "/bin/sleep", "1000")
    assert r.returncode == 0, r.stderr
    try:
        data = b"".join(b"%d\n" % i for i in range(20000))
        pipeline = (f"(sleep 1; cat) | timeout -k 5 60 ctr -a {agent.address} "
                    "t exec --exec-id x1 c1 /bin/sh -c 'cat; exit 4'")
        r = subprocess.run(["sh", "-c", pipeline], input=data, capture_output=True, check=False)
        assert (r.returncode, r.stdout) == (4, data), r.stderr
    finally:
        ctr(agent.address, "t", "kill", "-s", "SIGKILL", "c1")
        ctr(agent.address, "t", "delete", "-f", "c1")
        ctr(agent.address, "c", "rm", "c1")


@pytest.mark.ctr
def test_ctr_exec_with_stdin_that_ends_at_once(agent, rootfs):
    """`printf x | ctr task exec ...`: ctr's CloseIO comes as soon as its input ends, while
    the exec's Start is still on its way; the process still gets its EOF."""
    need_ctr()
    r = ctr(agent.address, "run", "-d", "--rootfs", rootfs, "c1", "/bin/sleep", "1000")
    assert r.returncode == 0, r.stderr
    try:
        for i in range(10):
            pipeline = (f"printf 'line {i}' | timeout -k 5 60 ctr -a {agent.address} "
                        f"t exec --exec-id x{i} c1 /bin/sh -c 'cat; exit 4'")
            r = subprocess.run(["sh", "-c", pipeline], capture_output=True, check=False)
            assert (r.returncode, r.stdout) == (4, b"line %d" % i), r.stderr
    finally:
        ctr(agent.address, "t", "kill", "-s", "SIGKILL", "c1")
        ctr(agent.address, "t", "delete", "-f", "c1")
        ctr(agent.address, "c", "rm", "c1")


def test_closeio_while_the_exec_is_starting_is_applied(agent, rootfs):
    """CloseIO that arrives while the exec's Start waits on the supervisor (held stopped
    here) closes stdin once the process runs: it is neither lost nor refused."""
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            fifos = FifoSet("e1")
            fifos.open_readers()
            try:
                await c.exec("c1", "e1", process_spec(["/bin/sh", "-c", "cat; exit 5"]),
                             fifos.stdin, fifos.stdout, fifos.stderr)
                sup = supervisor_pid(agent)
                os.kill(sup, signal.SIGSTOP)
                try:
                    start = asyncio.ensure_future(c.start("c1", "e1"))
                    await asyncio.sleep(0.3)  # the agent has opened stdin and sent Start
                    os.write(fifos.open_stdin(), b"one\n")
                    close = asyncio.ensure_future(c.close_stdin("c1", "e1"))
                    await asyncio.sleep(0.3)
                    assert not close.done()  # it waits for Start, not refused
                finally:
                    os.kill(sup, signal.SIGCONT)
                assert await asyncio.wait_for(start, 10) > 0
                reader = asyncio.ensure_future(fifos.read(fifos.stdout))  # it has a writer now
                await asyncio.wait_for(close, 10)
                assert (await asyncio.wait_for(c.wait("c1", "e1"), 10)).exit_status == 5
                assert await asyncio.wait_for(reader, 10) == b"one\n"
                await c.delete_process("c1", "e1")
            finally:
                fifos.close()

    run(body())


@pytest.mark.ctr
def test_ctr_exec_seq_20_times_with_and_without_a_terminal(agent, rootfs):
    need_ctr()
    lines = b"".join(b"%d\n" % i for i in range(1, 200001))
    r = ctr(agent.address, "run", "-d", "--rootfs", rootfs, "c1", "/bin/sleep", "1000")
    assert r.returncode == 0, r.stderr
    try:
        for i in range(20):
            r = ctr(agent.address, "t", "exec", "--exec-id", f"p{i}", "c1", "/bin/seq", "1",
                    "200000")
            assert (r.returncode, r.stdout == lines) == (0, True), (i, len(r.stdout), r.stderr)
        for i in range(20):
            # ctr -t needs a terminal of its own: script(1) gives it one, whose output
            # processing adds a second CR to each of the container's CRLFs.
            cmd = (f"timeout --foreground -k 5 60 {need_ctr()} -a {agent.address} "
                   + " ".join(with_fifo_dir(agent.address, ["t", "exec", "-t", "--exec-id",
                                                            f"t{i}", "c1", "/bin/seq", "1",
                                                            "200000"])))
            # Its stdin stays open and silent (at EOF, script would type into the terminal).
            quiet, hold = os.pipe()
            try:
                r = subprocess.run(["script", "-qec", cmd, "/dev/null"], stdin=quiet,
                                   capture_output=True, check=False, timeout=90)
            finally:
                os.close(quiet)
                os.close(hold)
            assert r.returncode == 0, (i, r.stderr)
            assert r.stdout.replace(b"\r", b"") == lines, (i, len(r.stdout), r.stdout[-30:])
            assert r.stdout.count(b"\r\r\n") == 200000
    finally:
        ctr(agent.address, "t", "kill", "-s", "SIGKILL", "c1")
        ctr(agent.address, "t", "delete", "-f", "c1")
        ctr(agent.address, "c", "rm", "c1")


def test_fast_exits_with_a_terminal(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            for i in range(50):
                status, out, _, _ = await run_exec(c, "c1", f"t{i}", ["/bin/echo", f"x{i}"],
                                                   terminal=True)
                assert (status, out) == (0, f"x{i}\r\n".encode())

    run(body())


def test_concurrent_execs_keep_their_output_apart(agent, rootfs):
    async def one(c: Client, i: int) -> None:
        terminal = i % 2 == 1
        status, out, err, _ = await run_exec(
            c, "c1", f"p{i}", ["/bin/sh", "-c", f"seq 1 {5000 + i}; echo e{i} >&2; exit {i}"],
            terminal=terminal, env=["PATH=/bin"])
        nl = b"\r\n" if terminal else b"\n"
        expected = b"".join(b"%d%s" % (n, nl) for n in range(1, 5001 + i))
        if terminal:
            assert (status, out, err) == (i, expected + b"e%d\r\n" % i, b"")
        else:
            assert (status, out, err) == (i, expected, b"e%d\n" % i)

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            await asyncio.gather(*(one(c, i) for i in range(30)))

    run(body())


def _session_tty(pid: int) -> tuple[int, int, int, int]:
    """(pid, session id, controlling tty number, foreground process group) from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return pid, int(fields[3]), int(fields[4]), int(fields[5])


def test_a_terminal_is_the_controlling_terminal(agent, rootfs):
    """terminal=true, for the init and for an exec: a session of its own whose controlling
    terminal is the pty (setsid + TIOCSCTTY), for the init also bound over /dev/console;
    ResizePty sets the pty's size."""

    async def body():
        async with Client(agent.address, "test") as c:
            fifos = FifoSet("c1", stderr=False)
            try:
                init = await start_container(c, "c1", ["/bin/sh"], rootfs, fifos=fifos,
                                             terminal=True)
                reader = asyncio.ensure_future(fifos.read(fifos.stdout))
                pid, sid, tty_nr, tpgid = _session_tty(init)
                assert (sid, tpgid) == (pid, pid) and tty_nr != 0
                # As runc: the init's pty is also the container's /dev/console.
                console = os.stat(f"/proc/{init}/root/dev/console")
                tty = os.stat(f"/proc/{init}/fd/0")
                assert stat.S_ISCHR(console.st_mode)
                assert (console.st_dev, console.st_ino) == (tty.st_dev, tty.st_ino)
                t_fifos, t_pid = await start_exec(c, "c1", "t1", ["/bin/sleep", "3600"],
                                                  terminal=True)
                t_fifos.close()
                pid, sid, exec_tty, tpgid = _session_tty(t_pid)
                assert (sid, tpgid) == (pid, pid) and exec_tty not in (0, tty_nr)
                await c.resize("c1", 132, 43)
                wfd = fifos.open_stdin()
                os.write(wfd, b"stty size; exit 6\n")
                assert (await asyncio.wait_for(c.wait("c1"), 5)).exit_status == 6
                assert b"\r\n43 132\r\n" in await asyncio.wait_for(reader, 5)
                assert (await c.wait("c1", "t1")).exit_status == 137  # ended with its init
            finally:
                fifos.close()
                await remove(c, "c1")

    run(body())


def test_delete_process_waits_until_the_output_written_is_delivered(agent, rootfs):
    """An exec writes more than the client's fifo holds and exits; its client reads only
    after sending DeleteProcess (as a slow reader would). DeleteProcess answers once all the
    output the process wrote has reached the fifo, as containerd's shim waits for its copies:
    nothing is dropped at delete."""
    expected = b"".join(b"%d\n" % i for i in range(1, 20001))  # 108,894 bytes
    assert len(expected) > 65536  # more than a fifo holds: the rest waits in the relay

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            fifos = FifoSet("d1", stdin=False, stderr=False)
            try:
                fifos.open_readers()
                await c.exec("c1", "d1", process_spec(["/bin/seq", "1", "20000"]),
                             stdout=fifos.stdout)
                await c.start("c1", "d1")
                assert (await asyncio.wait_for(c.wait("c1", "d1"), 30)).exit_status == 0
                deleting = asyncio.ensure_future(c.delete_process("c1", "d1"))
                await asyncio.sleep(0.3)
                assert not deleting.done()  # the relay still holds output for the fifo
                out = await asyncio.wait_for(fifos.read(fifos.stdout), 30)
                assert (await asyncio.wait_for(deleting, 30)).exit_status == 0
                assert out == expected, f"{len(out)} bytes, ends {out[-20:]!r}"
            finally:
                fifos.close()

    run(body())
