"""Exec: a process started inside a running task, through the Tasks API. It joins the init's
namespaces and cgroup, runs the process spec of the request, reports its own events, and
its id stays taken until DeleteProcess."""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
import pytest
from exec_support import (
    EventLog,
    container,
    counts_settled,
    fd_and_thread_counts,
    no_leak,
    process_spec,
    run_exec,
    start_exec,
    state_of,
    supervisor_pid,
    zombies_under,
)
from grpc_helpers import needs_root
from helpers import code_of, ctr, error_of, need_ctr, read_file, remove, run, start_container
from polling import settle

from agent.client import Client, default_spec
from agent.client.fifo import FifoSet

pytestmark = needs_root

NS_TYPES = ("pid", "mnt", "net", "ipc", "uts")


def test_exec_joins_the_task_namespaces_cgroup_and_root(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs) as init:
            fifos, pid = await start_exec(c, "c1", "e1", ["/bin/sleep", "3600"])
            try:
                for ns in NS_TYPES:
                    assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}")
                assert read_file(f"/proc/{pid}/cgroup") == read_file(f"/proc/{init}/cgroup")
                assert (os.stat(f"/proc/{pid}/root/bin/busybox").st_ino
                        == os.stat(os.path.join(rootfs, "bin/busybox")).st_ino)
                # pid 1 is the init inside, and the exec is another pid of that namespace.
                nspid = next(line.split()[1:] for line in read_file(f"/proc/{pid}/status").splitlines()
                             if line.startswith("NSpid:"))
                assert nspid[0] == str(pid) and len(nspid) == 2 and int(nspid[1]) > 1
                assert (await c.get("c1", "e1")).pid == pid
                await c.kill("c1", 9, exec_id="e1")
                assert (await c.wait("c1", "e1")).exit_status == 137
                await c.delete_process("c1", "e1")
            finally:
                fifos.close()

            status, out, err, _ = await run_exec(c, "c1", "e2", ["/bin/sh", "-c", "echo $$; exit 5"])
            assert (status, err) == (5, b"")
            assert int(out) > 1  # a pid of the container's namespace, not the host's

    run(body())


def test_exec_applies_the_process_spec(agent, rootfs):
    os.chmod(rootfs, 0o755)  # the fixture's directory is 0700: no way in for uid 1000

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            # env as given, PATH looked up in it, cwd.
            status, out, err, _ = await run_exec(c, "c1", "env", ["env"],
                                                 env=["FOO=bar baz", "PATH=/bin"], cwd="/tmp")
            assert (status, out, err) == (0, b"FOO=bar baz\nPATH=/bin\n", b"")
            status, out, _, _ = await run_exec(c, "c1", "cwd", ["/bin/pwd"], cwd="/etc")
            assert (status, out) == (0, b"/etc\n")

            # user, groups, umask and no_new_privs.
            script = ("grep -E '^(Uid|Gid|Groups|NoNewPrivs):' /proc/self/status | tr -s '\\t ' ' ';"
                      " umask; grep 'open files' /proc/self/limits | tr -s ' '")
            status, out, _, _ = await run_exec(
                c, "c1", "user", ["/bin/sh", "-c", script],
                user={"uid": 1000, "gid": 1001, "additionalGids": [2000, 3000], "umask": 0o027},
                rlimits=[{"type": "RLIMIT_NOFILE", "soft": 77, "hard": 88}],
                noNewPrivileges=True)
            assert status == 0
            assert out.decode().splitlines() == [
                "Uid: 1000 1000 1000 1000", "Gid: 1001 1001 1001 1001", "Groups: 2000 3000 ",
                "NoNewPrivs: 1", "0027", "Max open files 77 88 files "]

            # capabilities: CAP_CHOWN (0) and CAP_KILL (5) only; no_new_privs off.
            caps = ["CAP_CHOWN", "CAP_KILL"]
            status, out, _, _ = await run_exec(
                c, "c1", "caps",
                ["/bin/sh", "-c", "grep -E '^(CapPrm|CapEff|CapBnd|NoNewPrivs):' /proc/self/status"],
                capabilities={"bounding": caps, "effective": caps, "permitted": caps},
                noNewPrivileges=False)
            assert status == 0
            assert out.decode().split() == ["CapPrm:", "0000000000000021", "CapEff:",
                                            "0000000000000021", "CapBnd:", "0000000000000021",
                                            "NoNewPrivs:", "0"]

    run(body())


def test_processes_start_with_no_signal_ignored_or_blocked(agent_factory, rootfs):
    """The supervisor ignores SIGPIPE and blocks the signals it reads; an agent started under
    nohup passes SIGHUP ignored on to it. None of that reaches a container's processes."""
    agent = agent_factory().start(ignored_signals=(signal.SIGHUP, signal.SIGUSR1))
    show = ["/bin/grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"]
    clean = ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]

    async def body():
        async with Client(agent.address, "test") as c:
            fifos = FifoSet("sig", stdin=False)
            try:
                await c.create_container("sig", default_spec(show, rootfs, namespace="test", id="sig"))
                fifos.open_readers()
                await c.create_task("sig", "", fifos.stdout, fifos.stderr)
                await c.start("sig")
                assert (await fifos.read(fifos.stdout)).decode().split() == clean
                assert (await c.wait("sig")).exit_status == 0
            finally:
                fifos.close()
                await remove(c, "sig")
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            status, out, _, _ = await run_exec(c, "c1", "sig", show)
            assert (status, out.decode().split()) == (0, clean)

    run(body())
    # What the test is about: the supervisor itself does ignore them.
    status = read_file(f"/proc/{supervisor_pid(agent)}/status").splitlines()
    ignored = int(next(line.split()[1] for line in status if line.startswith("SigIgn:")), 16)
    assert ignored & (1 << (signal.SIGHUP - 1)) and ignored & (1 << (signal.SIGUSR1 - 1))


def test_exec_events_get_and_wait(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs), \
                EventLog(c) as log:
            fifos = None
            try:
                await c.exec("c1", "e1", process_spec(["/bin/sleep", "3600"]))
                created = await c.get("c1", "e1")
                assert (created.id, created.pid, created.status) == ("e1", 0, 1)  # CREATED
                # Wait before Start blocks until the exit (ctr sends them together).
                early = asyncio.ensure_future(c.wait("c1", "e1"))
                await asyncio.sleep(0.2)
                assert not early.done()
                pid = await c.start("c1", "e1")
                running = await c.get("c1", "e1")
                assert (running.id, running.pid, running.status) == ("e1", pid, 2)  # RUNNING
                await asyncio.sleep(0.2)
                assert not early.done()
                await c.kill("c1", 15, exec_id="e1")
                waited = await asyncio.wait_for(early, 5)
                assert waited.exit_status == 143
                # A Wait on an exited process answers at once (never blocks), with the same exit.
                again = await asyncio.wait_for(c.wait("c1", "e1"), 5)
                assert (again.exit_status, again.exited_at) == (143, waited.exited_at)
                stopped = await c.get("c1", "e1")
                assert (stopped.status, stopped.pid, stopped.exit_status) == (3, pid, 143)
                assert stopped.exited_at == waited.exited_at
                deleted = await c.delete_process("c1", "e1")
                assert (deleted.id, deleted.pid, deleted.exit_status) == ("e1", pid, 143)
                assert deleted.exited_at == waited.exited_at
                assert await code_of(c.get("c1", "e1")) == grpc.StatusCode.NOT_FOUND
                await log.mark()
                got = [(t, m) for t, m in log.of("c1")]
                assert [t for t, _ in got] == ["/tasks/exec-added", "/tasks/exec-started",
                                               "/tasks/exit"]
                added, started, exited = (m for _, m in got)
                assert (added.container_id, added.exec_id) == ("c1", "e1")
                assert (started.exec_id, started.pid) == ("e1", pid)
                assert (exited.id, exited.pid, exited.exit_status) == ("e1", pid, 143)
                assert exited.exited_at == waited.exited_at
            finally:
                if fifos:
                    fifos.close()

    run(body())


def test_exec_stdio_paths_are_reported(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            fifos, _pid = await start_exec(c, "c1", "e1", ["/bin/cat"], stdin=True)
            try:
                p = await c.get("c1", "e1")
                assert (p.stdin, p.stdout, p.stderr, p.terminal) == (
                    fifos.stdin, fifos.stdout, fifos.stderr, False)
                await c.close_stdin("c1", "e1")
                assert (await asyncio.wait_for(c.wait("c1", "e1"), 5)).exit_status == 0
                await c.delete_process("c1", "e1")
            finally:
                fifos.close()

    run(body())


@pytest.mark.parametrize("pidns", [True, False], ids=["own-pidns", "host-pidns"])
def test_init_exit_ends_every_exec(agent, rootfs, pidns):
    """When the init exits, every exec is killed, each Wait returns, and the exec exits are
    published before the init's."""
    namespaces = ("pid", "ipc", "uts", "mount", "network") if pidns else (
        "ipc", "uts", "mount", "network")

    async def body():
        async with Client(agent.address, "test") as c, EventLog(c) as log, \
                container(c, "c1", rootfs, namespaces=namespaces) as init:
            pids = {}
            for eid in ("e1", "e2"):
                fifos, pids[eid] = await start_exec(c, "c1", eid, ["/bin/sleep", "3600"])
                fifos.close()
            # e3 is never started: once the init is gone it never can be, and its Wait ends
            # with containerd's unknown exit status.
            await c.exec("c1", "e3", process_spec(["/bin/true"]))
            waits = [asyncio.ensure_future(c.wait("c1", e)) for e in ("e1", "e2", "e3", "")]
            await asyncio.sleep(0.1)
            await c.kill("c1", 9)  # the init only
            done = await asyncio.wait_for(asyncio.gather(*waits), 5)
            assert [w.exit_status for w in done] == [137, 137, 255, 137]
            for eid in ("e1", "e2"):
                assert (await c.get("c1", eid)).status == 3
                assert (await c.delete_process("c1", eid)).exit_status == 137
                assert await settle(lambda p=pids[eid]: state_of(p) is None)
            e3 = await c.get("c1", "e3")
            assert (e3.status, e3.pid, e3.exit_status) == (3, 0, 255)
            assert await code_of(c.start("c1", "e3")) == grpc.StatusCode.FAILED_PRECONDITION
            assert (await c.delete_process("c1", "e3")).exit_status == 255
            await log.mark()
            exits = [(m.id, m.pid) for t, m in log.of("c1") if t == "/tasks/exit"]
            assert sorted(exits[:2]) == sorted([("e1", pids["e1"]), ("e2", pids["e2"])])
            assert exits[2:] == [("c1", init)]  # none for e3, which never ran

    run(body())


def test_exec_refused_by_task_state(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c:
            p = process_spec(["/bin/true"])
            e = await error_of(c.exec("nosuch", "e1", p))
            assert e.code() == grpc.StatusCode.NOT_FOUND
            spec = default_spec(["/bin/sleep", "3600"], rootfs, namespace="test", id="c2")
            await c.create_container("c2", spec)
            try:
                # A container without a task.
                e = await error_of(c.exec("c2", "e1", p))
                assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "task c2 not found")
                # Created, not started.
                await c.create_task("c2")
                e = await error_of(c.exec("c2", "e1", p))
                assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "created" in e.details()
                await c.start("c2")
                # Stopped.
                await c.kill("c2", 9)
                await c.wait("c2")
                e = await error_of(c.exec("c2", "e1", p))
                assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "stopped" in e.details()
                assert await code_of(c.get("c2", "e1")) == grpc.StatusCode.NOT_FOUND
            finally:
                await remove(c, "c2")

    run(body())


def test_exec_id_rules(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs), \
                EventLog(c) as log:
            p = process_spec(["/bin/sleep", "3600"])
            for bad in ("", "../e", "a/b", "-a", "a..b", "e" * 77):
                e = await error_of(c.exec("c1", bad, p))
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            e = await error_of(c.exec("c1", "", p))
            assert e.details() == "exec id cannot be empty"
            await c.exec("c1", "e" * 76, process_spec(["/bin/true"]))
            await c.delete_process("c1", "e" * 76)

            await c.exec("c1", "e1", p)
            e = await error_of(c.exec("c1", "e1", p))
            assert e.code() == grpc.StatusCode.ALREADY_EXISTS
            await c.start("c1", "e1")
            assert await code_of(c.exec("c1", "e1", p)) == grpc.StatusCode.ALREADY_EXISTS
            await c.kill("c1", 9, exec_id="e1")
            assert (await c.wait("c1", "e1")).exit_status == 137
            assert await code_of(c.exec("c1", "e1", p)) == grpc.StatusCode.ALREADY_EXISTS
            await c.delete_process("c1", "e1")
            await c.exec("c1", "e1", process_spec(["/bin/true"]))
            await c.start("c1", "e1")
            assert (await c.wait("c1", "e1")).exit_status == 0
            await c.delete_process("c1", "e1")
            await log.mark()
            topics = [t for t, m in log.of("c1") if getattr(m, "exec_id", "e1") == "e1"
                      and getattr(m, "id", "e1") == "e1"]
            assert topics == ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"] * 2

    run(body())


def test_exec_bad_specs(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            from agent.api.containerd.services.tasks.v1 import tasks_pb2 as tpb

            req = tpb.ExecProcessRequest(container_id="c1", exec_id="e1")
            e = await error_of(c.tasks.Exec(req, metadata=c.md()))
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT  # no spec
            req.spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process"
            req.spec.value = b"{not json"
            e = await error_of(c.tasks.Exec(req, metadata=c.md()))
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
            for bad in ({"args": []}, {"args": [""]}, {"args": "sh"},
                        {"args": ["/bin/true"], "env": ["NOEQUALS"]},
                        {"args": ["/bin/true"], "cwd": "relative"},
                        {"args": ["/bin/true"], "user": {"uid": -1}},
                        {"args": ["/bin/true"], "rlimits": [{"type": "RLIMIT_BOGUS"}]},
                        {"args": ["/bin/true"], "capabilities": {"bounding": ["CAP_BOGUS"]}}):
                e = await error_of(c.exec("c1", "e1", bad))
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            # None of them took the id.
            await c.exec("c1", "e1", process_spec(["/bin/true"]))
            await c.delete_process("c1", "e1")

    run(body())


def test_delete_process_and_kill_rules(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            assert await code_of(c.delete_process("c1", "nosuch")) == grpc.StatusCode.NOT_FOUND
            assert await code_of(c.delete_process("c1", "")) == grpc.StatusCode.INVALID_ARGUMENT
            assert await code_of(c.kill("c1", 9, exec_id="nosuch")) == grpc.StatusCode.NOT_FOUND
            await c.exec("c1", "e1", process_spec(["/bin/sleep", "3600"]))
            e = await error_of(c.kill("c1", 9, exec_id="e1"))
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
            pid = await c.start("c1", "e1")
            e = await error_of(c.delete_process("c1", "e1"))
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert (await c.get("c1", "e1")).status == 2
            assert state_of(pid) == "S"
            for bad in (0, 65, 1000):
                e = await error_of(c.kill("c1", bad, exec_id="e1"))
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert state_of(pid) == "S"
            await c.kill("c1", 9, exec_id="e1")
            assert (await c.wait("c1", "e1")).exit_status == 137
            e = await error_of(c.kill("c1", 9, exec_id="e1"))
            assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "process already finished")
            assert (await c.delete_process("c1", "e1")).exit_status == 137
            assert await code_of(c.delete_process("c1", "e1")) == grpc.StatusCode.NOT_FOUND
            assert state_of(pid) is None

    run(body())


def test_exec_of_a_missing_program(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            sup = supervisor_pid(agent)
            for args in (["/no/such/binary"], ["nosuchprog"]):
                for _round in range(2):  # the id can be used again after DeleteProcess
                    await c.exec("c1", "x1", process_spec(args, env=["PATH=/bin"]))
                    waiter = asyncio.ensure_future(c.wait("c1", "x1"))
                    e = await error_of(asyncio.wait_for(c.start("c1", "x1"), 2))
                    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
                    assert args[0] in e.details()
                    p = await c.get("c1", "x1")
                    assert p.status == 3  # STOPPED
                    assert await settle(lambda: not zombies_under(sup, agent.proc.pid))
                    if p.pid:
                        assert await settle(lambda pid=p.pid: state_of(pid) is None)
                    await c.delete_process("c1", "x1")
                    # The Wait pending on a failed start ends rather than hangs.
                    try:
                        await asyncio.wait_for(waiter, 5)
                    except grpc.aio.AioRpcError as err:
                        assert err.code() == grpc.StatusCode.NOT_FOUND
                    assert await code_of(c.get("c1", "x1")) == grpc.StatusCode.NOT_FOUND
            # The task is undisturbed.
            status, out, _, _ = await run_exec(c, "c1", "ok", ["/bin/echo", "fine"])
            assert (status, out) == (0, b"fine\n")

    run(body())


def test_exec_with_a_missing_working_directory_fails_and_makes_nothing(agent, rootfs):
    """As runc: a container's init gets a missing working directory made, an exec does not
    (its Start fails naming the directory, and the rootfs is left as it was)."""
    async def body():
        async with Client(agent.address, "test") as c, \
                container(c, "c1", rootfs):
            made = os.path.join(rootfs, "made-for-init")
            assert not os.path.exists(os.path.join(rootfs, "not-there"))
            await c.exec("c1", "x1", process_spec(["/bin/pwd"], cwd="/not-there"))
            e = await error_of(asyncio.wait_for(c.start("c1", "x1"), 5))
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "working directory /not-there" in e.details()
            assert not os.path.exists(os.path.join(rootfs, "not-there"))
            await c.delete_process("c1", "x1")
            status, out, _, _ = await run_exec(c, "c1", "ok", ["/bin/pwd"], cwd="/etc")
            assert (status, out) == (0, b"/etc\n")
        async with Client(agent.address, "test") as c, \
                container(c, "c2", rootfs, ["/bin/sleep", "3600"], cwd="/made-for-init"):
            try:
                assert os.path.isdir(made)
            finally:
                os.rmdir(made)

    run(body())


def test_exec_leaves_no_leak_after_1000_runs(agent, rootfs):
    """1,000 execs of /bin/true (Exec, Start, Wait, DeleteProcess): the agent and the
    supervisor end with the fds they had, the supervisor with its threads and the agent with
    no more threads (see no_leak), and no zombie anywhere below them."""

    async def one(c: Client, eid: str) -> None:
        await c.exec("c1", eid, process_spec(["/bin/true"]))
        waiter = asyncio.ensure_future(c.wait("c1", eid))
        await c.start("c1", eid)
        assert (await waiter).exit_status == 0
        assert (await c.delete_process("c1", eid)).exit_status == 0

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs) as init:
            sup = supervisor_pid(agent)
            for i in range(20):  # warm up: lazily made things (threads, caches) exist now
                await one(c, f"w{i}")
            await asyncio.sleep(0.5)
            before = fd_and_thread_counts(agent.proc.pid, sup)
            for i in range(1000):
                await one(c, f"e{i}")
            after = await counts_settled(before, agent.proc.pid, sup)
            assert no_leak(after, before), (before, after)
            assert zombies_under(agent.proc.pid, sup, init) == []
            assert (await c.get("c1")).status == 2
            # nothing left in the container either
            assert read_file(f"/proc/{init}/task/{init}/children").split() == []

    run(body())


def test_exec_stdio_and_terminals_leave_no_leak(agent, rootfs):
    """As above with fifos (stdin ended by CloseIO) and terminals, cat echoing a line: 300
    execs leave the agent's and the supervisor's fd and thread counts as no_leak says."""

    async def one(c: Client, i: int) -> None:
        terminal = i % 2 == 1
        fifos, _ = await start_exec(c, "c1", f"s{i}", ["/bin/cat"], terminal=terminal,
                                    stdin=True)
        try:
            reader = asyncio.ensure_future(fifos.read(fifos.stdout))
            os.write(fifos.open_stdin(), b"x\n")  # a whole line: EOF then comes at a line start
            await c.close_stdin("c1", f"s{i}")
            assert (await asyncio.wait_for(c.wait("c1", f"s{i}"), 5)).exit_status == 0
            out = await asyncio.wait_for(reader, 5)
            assert out == (b"x\r\nx\r\n" if terminal else b"x\n"), (i, out)
            await c.delete_process("c1", f"s{i}")
        finally:
            fifos.close()

    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs) as init:
            sup = supervisor_pid(agent)
            for i in range(10):
                await one(c, 1000 + i)
            await asyncio.sleep(0.5)
            before = fd_and_thread_counts(agent.proc.pid, sup)
            for i in range(300):
                await one(c, i)
            after = await counts_settled(before, agent.proc.pid, sup)
            assert no_leak(after, before), (before, after)
            assert zombies_under(agent.proc.pid, sup, init) == []

    run(body())


def test_start_twice_and_after_exit(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            await c.exec("c1", "e1", process_spec(["/bin/sleep", "3600"]))
            pid = await c.start("c1", "e1")
            assert await code_of(c.start("c1", "e1")) == grpc.StatusCode.FAILED_PRECONDITION
            assert (await c.get("c1", "e1")).pid == pid
            await c.kill("c1", 9, exec_id="e1")
            await c.wait("c1", "e1")
            assert await code_of(c.start("c1", "e1")) == grpc.StatusCode.FAILED_PRECONDITION
            await c.delete_process("c1", "e1")

    run(body())


def test_task_delete_after_exit_takes_its_execs(agent, rootfs):
    """Deleting the task also removes its exited and never-started execs."""

    async def body():
        async with Client(agent.address, "test") as c:
            try:
                await start_container(c, "c1", ["/bin/sleep", "3600"], rootfs)
                fifos, pid = await start_exec(c, "c1", "e1", ["/bin/sleep", "3600"])
                fifos.close()
                await c.exec("c1", "e2", process_spec(["/bin/true"]))
                await c.kill("c1", 9)
                assert (await c.wait("c1")).exit_status == 137
                # e3 is made after the exit: refused, so only e1 and e2 remain to take.
                assert await code_of(c.exec("c1", "e3", process_spec(["/bin/true"]))) == \
                    grpc.StatusCode.FAILED_PRECONDITION
                assert (await c.delete_task("c1")).exit_status == 137
                assert state_of(pid) is None
                assert await code_of(c.get("c1", "e1")) == grpc.StatusCode.NOT_FOUND
                assert await code_of(c.get("c1", "e2")) == grpc.StatusCode.NOT_FOUND
            finally:
                await remove(c, "c1")

    run(body())


@pytest.mark.ctr
def test_ctr_exec_prints_a_pid_and_exits_with_its_code(agent, rootfs):
    need_ctr()
    r = ctr(agent.address, "run", "-d", "--rootfs", rootfs, "c1", "/bin/sleep", "1000")
    assert r.returncode == 0, r.stderr
    try:
        r = ctr(agent.address, "t", "exec", "--exec-id", "e1", "c1", "/bin/sh", "-c",
                "echo $$; exit 5")
        assert r.returncode == 5, r.stderr
        assert r.stdout.decode().strip().isdigit() and int(r.stdout) > 1
        # ctr deleted it: the id is free, and a second run gets another pid of the task.
        r2 = ctr(agent.address, "t", "exec", "--exec-id", "e1", "c1", "/bin/sh", "-c",
                 "echo $$; exit 0")
        assert r2.returncode == 0, r2.stderr
        assert int(r2.stdout) != int(r.stdout)
        # Detached: the exec is listed by ps with its id until it is killed and deleted.
        assert ctr(agent.address, "t", "exec", "-d", "--exec-id", "d1", "c1",
                   "/bin/sleep", "1000").returncode == 0
        rows = [line.split() for line in
                ctr(agent.address, "t", "ps", "c1").stdout.decode().splitlines()[1:]]
        assert len(rows) == 2 and any("ExecID:d1" in " ".join(row) for row in rows)
        assert ctr(agent.address, "t", "kill", "--exec-id", "d1", "-s", "SIGKILL",
                   "c1").returncode == 0
        for _ in range(100):
            r = ctr(agent.address, "t", "delete", "--exec-id", "d1", "c1")
            if b"running" not in r.stderr:
                break
        assert (r.returncode, r.stderr) == (137, b"")  # ctr exits with the exec's status
        gone = ctr(agent.address, "t", "delete", "--exec-id", "d1", "c1")
        assert gone.returncode == 1 and b"not found" in gone.stderr
        missing = ctr(agent.address, "t", "exec", "--exec-id", "m1", "c1", "/no/such/binary")
        assert missing.returncode != 0 and b"/no/such/binary" in missing.stderr
        again = ctr(agent.address, "t", "exec", "--exec-id", "m1", "c1", "/bin/true")
        assert again.returncode == 0, again.stderr  # ctr deleted the failed one
    finally:
        ctr(agent.address, "t", "kill", "-s", "SIGKILL", "c1")
        ctr(agent.address, "t", "delete", "-f", "c1")
        ctr(agent.address, "c", "rm", "c1")


def test_exec_of_a_missing_program_with_a_terminal(agent, rootfs):
    async def body():
        async with Client(agent.address, "test") as c, container(c, "c1", rootfs):
            sup = supervisor_pid(agent)
            for _round in range(2):
                fifos = FifoSet("x1", stderr=False)
                try:
                    fifos.open_readers()
                    await c.exec("c1", "x1", process_spec(["/no/such/binary"], terminal=True),
                                 fifos.stdin, fifos.stdout, "", terminal=True)
                    e = await error_of(asyncio.wait_for(c.start("c1", "x1"), 2))
                    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
                    assert "/no/such/binary" in e.details()
                    assert (await c.get("c1", "x1")).status == 3
                    await asyncio.wait_for(c.delete_process("c1", "x1"), 2)
                    assert await settle(lambda: not zombies_under(sup, agent.proc.pid))
                finally:
                    fifos.close()
            status, out, _, _ = await run_exec(c, "c1", "x1", ["/bin/echo", "ok"], terminal=True)
            assert (status, out) == (0, b"ok\r\n")

    run(body())
