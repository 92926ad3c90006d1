"""Pause/Resume, Update, ListPids and kill --all: cases B09, B11, B17 and the bad inputs of
the resource-control issue, on this host's cgroup v1 hierarchies."""

from __future__ import annotations

import asyncio
import os

import grpc

from agent.api.containerd.events import task_pb2 as ev
from agent.api.containerd.services.tasks.v1 import tasks_pb2 as tpb
from agent.api.runc import options_pb2
from agent.client import Client
from helpers import code_of, ctr, error_of, need_ctr, remove, run, start_container, subscribed

NS = "ctl"
C = grpc.StatusCode


def _state_letter(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _cg(agent, controller: str, cid: str, name: str) -> str:
    with open(f"/sys/fs/cgroup/{controller}/{agent.cgroup_parent}/{NS}/{cid}/{name}") as f:
        return f.read().strip()




def test_pause_resume_through_ctr(agent, rootfs):
    need_ctr()
    assert ctr(agent.address, "run", "-d", "--rootfs", rootfs, "c1", "/bin/sleep", "1000",
               namespace=NS).returncode == 0
    row = ctr(agent.address, "t", "ls", namespace=NS).stdout.decode().splitlines()[1].split()
    pid = int(row[1])
    assert ctr(agent.address, "t", "pause", "c1", namespace=NS).returncode == 0
    row = ctr(agent.address, "t", "ls", namespace=NS).stdout.decode().splitlines()[1].split()
    assert row[2] == "PAUSED"
    assert _cg(agent, "freezer", "c1", "freezer.state") == "FROZEN"
    assert ctr(agent.address, "t", "resume", "c1", namespace=NS).returncode == 0
    row = ctr(agent.address, "t", "ls", namespace=NS).stdout.decode().splitlines()[1].split()
    assert row[2] == "RUNNING"
    assert _cg(agent, "freezer", "c1", "freezer.state") == "THAWED"
    assert ctr(agent.address, "t", "pause", "c1", namespace=NS).returncode == 0
    assert ctr(agent.address, "t", "kill", "-a", "-s", "SIGKILL", "c1", namespace=NS).returncode == 0
    rm = ctr(agent.address, "t", "rm", "c1", namespace=NS)
    for _ in range(50):
        if rm.returncode == 0:
            break
        rm = ctr(agent.address, "t", "rm", "c1", namespace=NS)
    assert rm.returncode == 0 and b"exit code 137" in rm.stderr
    assert not os.path.exists(f"/proc/{pid}")
    ctr(agent.address, "c", "rm", "c1", namespace=NS)


def test_ps_lists_init_and_exec(agent, rootfs):
    need_ctr()
    assert ctr(agent.address, "run", "-d", "--rootfs", rootfs, "ps1", "/bin/sleep", "1000",
               namespace=NS).returncode == 0
    assert ctr(agent.address, "t", "exec", "-d", "--exec-id", "x1", "ps1", "/bin/sleep", "1001",
               namespace=NS).returncode == 0
    out = ctr(agent.address, "t", "ps", "ps1", namespace=NS)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.decode().splitlines()[1:]]
    infos = sorted(r[1] for r in rows)
    # ctr prints the decoded containerd.runc.v1.ProcessDetails of an exec
    assert infos == ["&ProcessDetails{ExecID:x1,XXX_unrecognized:[],}", "-"]
    ctr(agent.address, "t", "kill", "-a", "-s", "SIGKILL", "ps1", namespace=NS)
    ctr(agent.address, "t", "delete", "-f", "ps1", namespace=NS)
    ctr(agent.address, "c", "rm", "ps1", namespace=NS)


def test_b09_kill_all_of_a_paused_task(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            async with subscribed(client, [f"namespace=={NS}"]) as events:
                try:
                    await start_container(client, "b9", ["/bin/sleep", "3600"], rootfs)
                    await client.exec("b9", "e1", {"args": ["/bin/sleep", "3600"], "cwd": "/"})
                    epid = await client.start("b9", "e1")
                    await client.pause("b9")
                    assert _state_letter(epid) in ("D", "S")  # frozen tasks sleep in the freezer
                    await client.kill("b9", 9, all=True)
                    w_init = await asyncio.wait_for(client.wait("b9"), 5)
                    w_exec = await asyncio.wait_for(client.wait("b9", "e1"), 5)
                    assert (w_init.exit_status, w_exec.exit_status) == (137, 137)
                    assert (await client.get("b9")).status == 3
                    assert _cg(agent, "freezer", "b9", "freezer.state") == "THAWED"
                    await client.delete_task("b9")
                    assert not os.path.exists(
                        f"/sys/fs/cgroup/freezer/{agent.cgroup_parent}/{NS}/b9")
                    await asyncio.sleep(0.2)
                    seen = []
                    for e in events:
                        if e.topic == "/tasks/exit":
                            seen.append(("exit", ev.TaskExit.FromString(e.event.value).id))
                        elif e.topic in ("/tasks/paused", "/tasks/resumed"):
                            seen.append((e.topic, ""))
                    assert seen == [("/tasks/paused", ""), ("exit", "e1"), ("exit", "b9")]
                finally:
                    await remove(client, "b9")

    run(scenario())


def test_b11_listpids_running_paused_stopped(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            try:
                await start_container(client, "b11", ["/bin/sh", "-c",
                                      "sleep 3600 & exec sleep 3601"], rootfs)
                await client.exec("b11", "e1", {"args": ["/bin/sleep", "3602"], "cwd": "/"})
                epid = await client.start("b11", "e1")
                await asyncio.sleep(0.3)
                procs = await client.pids("b11")
                assert len(procs) == 3
                details = {p.pid: p.info for p in procs}
                assert details[epid].type_url == "containerd.runc.v1.ProcessDetails"
                assert options_pb2.ProcessDetails.FromString(details[epid].value).exec_id == "e1"
                assert sum(1 for p in procs if p.info.type_url) == 1
                await client.pause("b11")
                paused = await asyncio.wait_for(client.pids("b11"), 1)
                assert sorted(p.pid for p in paused) == sorted(p.pid for p in procs)
                await client.resume("b11")
                await client.kill("b11", 9, all=True)
                await client.wait("b11")
                assert await client.pids("b11") == []
                await client.delete_task("b11")
                assert await code_of(client.pids("b11")) == C.NOT_FOUND
            finally:
                await remove(client, "b11")

    run(scenario())


def test_b17_update_memory_below_usage(agent, rootfs):
    mib = 1024 * 1024
    hog = "a=$(head -c 67108864 /dev/zero | tr '\\0' x); sleep 3600"

    async def scenario():
        async with Client(agent.address, NS) as client:
            try:
                await start_container(client, "u1", ["/bin/sh", "-c", hog], rootfs,
                                      resources={"memory": {"limit": 256 * mib, "swap": 256 * mib}})
                for _ in range(200):
                    if int(_cg(agent, "memory", "u1", "memory.usage_in_bytes")) >= 64 * mib:
                        break
                    await asyncio.sleep(0.05)
                assert int(_cg(agent, "memory", "u1", "memory.usage_in_bytes")) >= 64 * mib
                low = {"memory": {"limit": 16 * mib, "swap": 16 * mib, "checkBeforeUpdate": True}}
                err = await error_of(client.update("u1", low))
                assert err.code() == C.FAILED_PRECONDITION
                assert "usage" in err.details()
                assert int(_cg(agent, "memory", "u1", "memory.limit_in_bytes")) == 256 * mib
                assert int(_cg(agent, "memory", "u1", "memory.memsw.limit_in_bytes")) == 256 * mib
                assert (await client.get("u1")).status == 2
                low = {"memory": {"limit": 16 * mib, "swap": 16 * mib}}
                err = await error_of(client.update("u1", low))
                assert err.code() == C.FAILED_PRECONDITION  # v1: the kernel refuses (EBUSY)
                assert int(_cg(agent, "memory", "u1", "memory.limit_in_bytes")) == 256 * mib
                assert int(_cg(agent, "memory", "u1", "memory.memsw.limit_in_bytes")) == 256 * mib
                await client.update("u1", {"memory": {"limit": 512 * mib, "swap": 512 * mib},
                                           "cpu": {"shares": 512, "quota": 50000,
                                                   "period": 100000},
                                           "pids": {"limit": 100}})
                assert int(_cg(agent, "memory", "u1", "memory.limit_in_bytes")) == 512 * mib
                assert _cg(agent, "cpu", "u1", "cpu.shares") == "512"
                assert _cg(agent, "cpu", "u1", "cpu.cfs_quota_us") == "50000"
                assert _cg(agent, "pids", "u1", "pids.max") == "100"
                await client.kill("u1", 9, all=True)
                await client.wait("u1")
                assert await code_of(client.update("u1", {"pids": {"limit": 10}})) == \
                    C.FAILED_PRECONDITION
            finally:
                await remove(client, "u1")

    run(scenario())


def test_bad_control_inputs(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            try:
                await start_container(client, "bad", ["/bin/sleep", "3600"], rootfs)
                req = tpb.UpdateTaskRequest(container_id="bad")
                req.resources.type_url = "x"
                req.resources.value = b"{not json"
                assert await code_of(client.tasks.Update(req, metadata=client.md())) == \
                    C.INVALID_ARGUMENT
                for resources in ({"memory": {"limit": -5}}, {"memory": {"limit": "lots"}},
                                  {"cpu": {"shares": 1}}, {"cpu": {"cpus": "0-x"}},
                                  {"pids": {"limit": 1 << 40}}, {"blockIO": {"weight": 5000}},
                                  {"memory": {"limit": (1 << 63) - 1}}, ["not", "an", "object"]):
                    assert await code_of(client.update("bad", resources)) == C.INVALID_ARGUMENT, \
                        resources
                assert await code_of(client.resume("bad")) == C.FAILED_PRECONDITION
                await client.pause("bad")
                assert await code_of(client.pause("bad")) == C.FAILED_PRECONDITION
                await client.resume("bad")
                await client.kill("bad", 9)
                await client.wait("bad")
                assert await code_of(client.pause("bad")) == C.FAILED_PRECONDITION
                assert await code_of(client.resume("bad")) == C.FAILED_PRECONDITION
                stream = client.subscribe(["topic~=("])
                err = await error_of(stream.read())
                assert err.code() == C.INVALID_ARGUMENT
                assert await client.server_version()  # still serving
            finally:
                await remove(client, "bad")

    run(scenario())


def test_events_of_a_ctr_run(agent, rootfs):
    need_ctr()
    import subprocess

    watcher = subprocess.Popen(["timeout", "-k", "5", "60", "ctr", "-a", agent.address, "events"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import time

        time.sleep(0.5)
        r = ctr(agent.address, "run", "--rm", "--rootfs", rootfs, "ev1", "/bin/true",
                namespace=NS)
        assert r.returncode == 0, r.stderr
        time.sleep(0.5)
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=30)
    # "<date> <time> +0000 UTC <namespace> <topic> <event JSON>"
    rows = [line.split(None, 6) for line in out.decode().splitlines()]
    topics = [r[5] for r in rows if len(r) == 7 and r[4] == NS]
    assert topics == ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit",
                      "/tasks/delete", "/containers/delete"]
