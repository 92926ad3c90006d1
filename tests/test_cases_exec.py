"""Acceptance cases B01, B02, B03, B04, B06, B07, B10 and B18 of cases/lifecycle.md (exec,
stdio and terminals), step by step as the cases give them, in namespace `test`."""

from __future__ import annotations

import asyncio
import os
import tempfile

import grpc
from exec_support import (
    EventLog,
    container,
    process_spec,
    start_exec,
    state_of,
    supervisor_pid,
    zombies_under,
)
from grpc_helpers import needs_root
from helpers import code_of, error_of, leftovers, remove, run, start_container

from agent.client import Client, default_spec
from agent.client.fifo import FifoSet

pytestmark = needs_root

RUNNING, CREATED, STOPPED, PAUSED = 2, 1, 3, 4
NO_PIDNS = ("ipc", "uts", "mount", "network")
ORPHANING = ["/bin/sh", "-c", "sleep 2 >/dev/null 2>&1 & exit 5"]


def test_b01_exec_orphans_are_reaped(agent, rootfs):
    async def exec_orphaning(c: Client, cid: str, eid: str, args: list[str]) -> tuple[int, bytes]:
        fifos, pid = await start_exec(c, cid, eid, args)
        try:
            reader = asyncio.ensure_future(fifos.read(fifos.stdout))
            # The background sleep (2 s) does not hold the answer back.
            waited = await asyncio.wait_for(c.wait(cid, eid), 1)
            assert waited.exit_status == 5
            deleted = await c.delete_process(cid, eid)
            assert (deleted.id, deleted.pid, deleted.exit_status) == (eid, pid, 5)
            assert state_of(pid) is None  # gone from /proc, not a zombie
            return pid, await asyncio.wait_for(reader, 5)
        finally:
            fifos.close()

    async def body():
        async with Client(agent.address, "test") as c:
            try:
                await start_container(c, "c1", ["/bin/sleep", "3600"], rootfs)
                await exec_orphaning(c, "c1", "e1", ORPHANING)

                await start_container(c, "c2", ["/bin/sleep", "3600"], rootfs,
                                      namespaces=NO_PIDNS)
                await exec_orphaning(c, "c2", "e2", ORPHANING)
                # The same again, told where its orphan is (a host pid: no pid namespace).
                _, out = await exec_orphaning(
                    c, "c2", "e3", ["/bin/sh", "-c", "sleep 2 >/dev/null 2>&1 & echo $!; exit 5"])
                orphan = int(out)
                assert state_of(orphan) == "S"
                await asyncio.sleep(4)
                assert state_of(orphan) is None  # the supervisor, its new parent, reaped it
                sup = supervisor_pid(agent)
                assert zombies_under(agent.proc.pid, sup) == []

                for cid in ("c1", "c2"):
                    await c.kill(cid, 9)
                for cid in ("c1", "c2"):
                    assert (await asyncio.wait_for(c.wait(cid), 5)).exit_status == 137
                    assert (await c.delete_task(cid)).exit_status == 137
                    assert leftovers(agent, "test", cid) == []
            finally:
                await remove(c, "c1")
                await remove(c, "c2")

    run(body())


def test_b02_exec_output_is_never_truncated(agent, rootfs):
    expected = {
        False: b"".join(b"%d\n" % i for i in range(1, 200001)),
        True: b"".join(b"%d\r\n" % i for i in range(1, 200001)),
    }

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            for terminal in (False, True):
                for i in range(20):
                    eid = f"e{i}-{'tty' if terminal else 'pipe'}"
                    fifos = FifoSet(eid, stdin=False, stderr=False)
                    try:
                        fifos.open_readers()
                        await c.exec("c1", eid, process_spec(["/bin/seq", "1", "200000"],
                                                             terminal=terminal),
                                     stdout=fifos.stdout, terminal=terminal)
                        await c.start("c1", eid)
                        # Read from now on (before Start no writer exists: a read is EOF).
                        reader = asyncio.ensure_future(fifos.read(fifos.stdout))
                        waited = await asyncio.wait_for(c.wait("c1", eid), 60)
                        assert waited.exit_status == 0
                        again = await asyncio.wait_for(c.wait("c1", eid), 5)  # never blocks
                        assert again.exit_status == 0
                        assert (await c.delete_process("c1", eid)).exit_status == 0
                        out = await asyncio.wait_for(reader, 30)
                        assert out == expected[terminal], (
                            f"{eid}: {len(out)} bytes, ends {out[-20:]!r}")
                    finally:
                        fifos.close()

    run(body())


def test_b03_closeio_delivers_stdin_eof(agent, rootfs):
    """Choice for step 4: CloseIO before Start is accepted and remembered; the exec then
    starts with its stdin at EOF."""

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            # 1-3
            fifos, _ = await start_exec(c, "c1", "e1", ["/bin/cat"], stdin=True)
            try:
                reader = asyncio.ensure_future(fifos.read(fifos.stdout))
                os.write(fifos.open_stdin(), b"ping\n")
                fifos.close_stdin()
                await asyncio.sleep(1)
                assert (await c.get("c1", "e1")).status == RUNNING
                await c.close_stdin("c1", "e1")
                assert (await asyncio.wait_for(c.wait("c1", "e1"), 2)).exit_status == 0
                assert await asyncio.wait_for(reader, 2) == b"ping\n"
                await c.delete_process("c1", "e1")
            finally:
                fifos.close()

            # 4: CloseIO between Exec and Start.
            fifos = FifoSet("e2")
            try:
                fifos.open_readers()
                await c.exec("c1", "e2", process_spec(["/bin/cat"]), fifos.stdin, fifos.stdout,
                             fifos.stderr)
                await c.close_stdin("c1", "e2")
                await c.start("c1", "e2")
                assert (await asyncio.wait_for(c.wait("c1", "e2"), 2)).exit_status == 0
                assert await asyncio.wait_for(fifos.read(fifos.stdout), 2) == b""
                await c.delete_process("c1", "e2")
            finally:
                fifos.close()

            # 5
            await c.exec("c1", "e3", process_spec(["/bin/sleep", "3600"]))
            await c.start("c1", "e3")
            await c.close_stdin("c1", "e3")  # no stdin: OK, nothing happens
            assert (await c.get("c1", "e3")).status == RUNNING
            e = await error_of(c.close_stdin("c1", "nosuch"))
            assert e.code() == grpc.StatusCode.NOT_FOUND
            assert e.details() == "process does not exist nosuch"
            await c.kill("c1", 9, exec_id="e3")
            await c.wait("c1", "e3")
            await c.delete_process("c1", "e3")

    run(body())


def test_b04_fifos_without_readers_and_missing_binaries_never_hang(agent, rootfs):
    async def body():
        tmp = tempfile.mkdtemp(prefix="b04-")
        noreader = os.path.join(tmp, "noreader")
        os.mkfifo(noreader)
        async with Client(agent.address, "test") as c:
            stop = asyncio.Event()

            async def poll_list():
                # Listing never waits on the fifo nobody reads: each List is bounded.
                while not stop.is_set():
                    await asyncio.wait_for(c.list_tasks(), 1)
                    await asyncio.sleep(0.2)

            poller = asyncio.ensure_future(poll_list())
            try:
                # 1-2
                spec = default_spec(["/bin/sh", "-c", "echo hi; exit 0"], rootfs,
                                    namespace="test", id="c1")
                await c.create_container("c1", spec)
                await asyncio.wait_for(c.create_task("c1", stdout=noreader), 2)
                await c.start("c1")
                assert (await asyncio.wait_for(c.wait("c1"), 5)).exit_status == 0
                assert (await asyncio.wait_for(c.delete_task("c1"), 3)).exit_status == 0
                await asyncio.sleep(0.5)
                stop.set()
                await poller

                # 3
                await start_container(c, "c2", ["/bin/sleep", "3600"], rootfs)
                sup = supervisor_pid(agent)
                for _round in range(2):
                    fifos = FifoSet("x1", stdin=False)
                    try:
                        fifos.open_readers()
                        await c.exec("c2", "x1", process_spec(["/no/such/binary"]),
                                     stdout=fifos.stdout, stderr=fifos.stderr)
                        e = await error_of(asyncio.wait_for(c.start("c2", "x1"), 2))
                        assert e.code() != grpc.StatusCode.OK
                        assert "/no/such/binary" in e.details()
                        assert "no such file or directory" in e.details().lower()
                        try:
                            assert (await c.get("c2", "x1")).status == STOPPED
                        except grpc.aio.AioRpcError as err:
                            assert err.code() == grpc.StatusCode.NOT_FOUND
                        await c.delete_process("c2", "x1")
                        assert zombies_under(sup, agent.proc.pid) == []
                    finally:
                        fifos.close()
            finally:
                stop.set()
                await asyncio.gather(poller, return_exceptions=True)
                await remove(c, "c1")
                await remove(c, "c2")
                os.unlink(noreader)
                os.rmdir(tmp)

    run(body())


def test_b06_exec_id_reused_only_after_delete(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, EventLog(c) as log, \
                container(c, "c1", rootfs):
            sleep = process_spec(["/bin/sleep", "3600"])
            await c.exec("c1", "e1", sleep)
            first = await c.start("c1", "e1")
            assert await code_of(c.exec("c1", "e1", sleep)) == grpc.StatusCode.ALREADY_EXISTS
            await c.kill("c1", 9, exec_id="e1")
            assert (await c.wait("c1", "e1")).exit_status == 137
            assert await code_of(c.exec("c1", "e1", sleep)) == grpc.StatusCode.ALREADY_EXISTS
            deleted = await c.delete_process("c1", "e1")
            assert (deleted.exit_status, deleted.pid) == (137, first)
            await c.exec("c1", "e1", process_spec(["/bin/true"]))
            second = await c.start("c1", "e1")
            assert second != first
            assert (await c.wait("c1", "e1")).exit_status == 0
            e = await error_of(c.exec("c1", "", sleep))
            assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "exec id cannot be empty")
            await c.delete_process("c1", "e1")
            await log.mark()
            got = [(t, m.exec_id if t != "/tasks/exit" else m.id,
                    m.pid if t != "/tasks/exec-added" else None,
                    m.exit_status if t == "/tasks/exit" else None)
                   for t, m in log.of("c1") if t.startswith("/tasks/exec") or t == "/tasks/exit"]
            assert got == [
                ("/tasks/exec-added", "e1", None, None),
                ("/tasks/exec-started", "e1", first, None),
                ("/tasks/exit", "e1", first, 137),
                ("/tasks/exec-added", "e1", None, None),
                ("/tasks/exec-started", "e1", second, None),
                ("/tasks/exit", "e1", second, 0),
            ]

    run(body())


def test_b07_delete_process_of_created_running_and_exited(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, EventLog(c) as log, \
                container(c, "c1", rootfs):
            # 1-2: created, never started.
            await c.exec("c1", "e0", process_spec(["/bin/sleep", "3600"]))
            pending = asyncio.ensure_future(c.wait("c1", "e0"))
            await asyncio.sleep(0.2)
            e = await error_of(c.kill("c1", 9, exec_id="e0"))
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "not created" in e.details()
            await c.delete_process("c1", "e0")
            try:
                await asyncio.wait_for(pending, 2)
                raise AssertionError("Wait on a deleted, never-started exec returned a status")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.NOT_FOUND
            assert await code_of(c.get("c1", "e0")) == grpc.StatusCode.NOT_FOUND

            # 3: running, then exited.
            await c.exec("c1", "e2", process_spec(["/bin/sleep", "3600"]))
            pid = await c.start("c1", "e2")
            assert await code_of(c.delete_process("c1", "e2")) == \
                grpc.StatusCode.FAILED_PRECONDITION
            assert (await c.get("c1", "e2")).status == RUNNING
            await c.kill("c1", 9, exec_id="e2")
            assert (await c.wait("c1", "e2")).exit_status == 137
            deleted = await c.delete_process("c1", "e2")
            assert (deleted.id, deleted.pid, deleted.exit_status) == ("e2", pid, 137)
            assert await code_of(c.get("c1", "e2")) == grpc.StatusCode.NOT_FOUND
            await log.mark()
            assert "/tasks/delete" not in [t for t, _ in log.of("c1")]

    run(body())


def test_b10_exec_into_a_paused_task(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            await c.exec("c1", "e1", process_spec(["/bin/true"]))
            await c.pause("c1")
            try:
                e = await error_of(asyncio.wait_for(c.exec("c1", "e2", process_spec(["/bin/true"])),
                                                    1))
                assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "paused" in e.details()
                e = await error_of(asyncio.wait_for(c.start("c1", "e1"), 2))
                assert e.code() != grpc.StatusCode.OK
                assert (await c.get("c1", "e1")).status == PAUSED
            finally:
                await c.resume("c1")
            assert (await c.get("c1", "e1")).status == CREATED
            await c.exec("c1", "e3", process_spec(["/bin/true"]))
            await c.start("c1", "e3")
            assert (await asyncio.wait_for(c.wait("c1", "e3"), 5)).exit_status == 0
            await c.delete_process("c1", "e3")
            await c.delete_process("c1", "e1")
            assert await code_of(c.get("c1", "e2")) == grpc.StatusCode.NOT_FOUND  # never made

    run(body())


def test_b18_resize_pty_without_terminal_or_after_exit(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            # 1
            await c.resize("c1", 80, 24)
            # 2
            fifos, _ = await start_exec(c, "c1", "t1", ["/bin/sh"], terminal=True, stdin=True)
            try:
                got = bytearray()
                reader = asyncio.ensure_future(fifos.read(fifos.stdout, got.extend))
                await c.resize("c1", 100, 40, exec_id="t1")
                wfd = fifos.open_stdin()
                os.write(wfd, b"stty size\n")
                for _ in range(100):
                    if b"40 100" in got:
                        break
                    await asyncio.sleep(0.05)
                assert b"40 100\r\n" in got
                os.write(wfd, b"exit\n")
                assert (await asyncio.wait_for(c.wait("c1", "t1"), 5)).exit_status == 0
                await asyncio.wait_for(reader, 5)
                await c.delete_process("c1", "t1")
            finally:
                fifos.close()
            # 3
            fifos, _ = await start_exec(c, "c1", "t2", ["/bin/true"], terminal=True)
            try:
                reader = asyncio.ensure_future(fifos.read(fifos.stdout))
                assert (await asyncio.wait_for(c.wait("c1", "t2"), 5)).exit_status == 0
                await asyncio.wait_for(c.resize("c1", 90, 30, exec_id="t2"), 2)
                await asyncio.wait_for(reader, 5)
                await c.delete_process("c1", "t2")
            finally:
                fifos.close()
            # 4
            e = await error_of(c.resize("c1", 90, 30, exec_id="nosuch"))
            assert e.code() == grpc.StatusCode.NOT_FOUND

    run(body())
