"""Metrics: values that match the cgroup files (through ctr and our client), filters
(case B23), namespaces, and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import grpc

from agent.api.cgroups.v1 import metrics_pb2 as v1
from agent.api.containerd.services.tasks.v1 import tasks_pb2 as tpb
from agent.client import Client
from helpers import code_of, ctr, need_ctr, remove, run, start_container

NS = "met"
C = grpc.StatusCode
MIB = 1024 * 1024


def _cg(agent, controller: str, cid: str, name: str) -> str:
    with open(f"/sys/fs/cgroup/{controller}/{agent.cgroup_parent}/{NS}/{cid}/{name}") as f:
        return f.read().strip()


def test_metrics_match_the_cgroup_files(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client:
            try:
                await start_container(client, "m1", ["/bin/sh", "-c", "sleep 3600 & sleep 3601; true"],
                                      rootfs, resources={"memory": {"limit": 64 * MIB},
                                                         "pids": {"limit": 50}})
                await asyncio.sleep(0.3)
                before = int(_cg(agent, "memory", "m1", "memory.usage_in_bytes"))
                metrics = await client.metrics(["id==m1"])
                after = int(_cg(agent, "memory", "m1", "memory.usage_in_bytes"))
                assert [m.id for m in metrics] == ["m1"]
                assert metrics[0].data.type_url == "io.containerd.cgroups.v1.Metrics"
                m = v1.Metrics.FromString(metrics[0].data.value)
                assert min(before, after) - 64 * 1024 <= m.memory.usage.usage <= \
                    max(before, after) + 64 * 1024
                assert m.memory.usage.limit == 64 * MIB
                assert m.pids.current == int(_cg(agent, "pids", "m1", "pids.current")) == 3
                assert m.pids.limit == 50
                assert len(m.cpu.usage.per_cpu) == len(_cg(agent, "cpuacct", "m1",
                                                           "cpuacct.usage_percpu").split())
                assert m.cpu.usage.total > 0
            finally:
                await remove(client, "m1")

    run(scenario())


def test_ctr_metrics_prints_the_files(agent, rootfs):
    need_ctr()
    assert ctr(agent.address, "run", "-d", "--memory-limit", str(48 * MIB), "--rootfs", rootfs,
               "cm1", "/bin/sleep", "1000", namespace=NS).returncode == 0
    try:
        out = ctr(agent.address, "t", "metrics", "cm1", namespace=NS)
        assert out.returncode == 0, out.stderr
        table = dict(line.split(None, 1) for line in out.stdout.decode().splitlines()[3:]
                     if line.strip())
        assert int(table["memory.limit_in_bytes"]) == 48 * MIB
        assert int(table["pids.current"]) == 1
        assert int(table["pids.limit"]) == 0
        assert table["cpuacct.usage_percpu"].startswith("[")
    finally:
        ctr(agent.address, "t", "kill", "-s", "SIGKILL", "cm1", namespace=NS)
        ctr(agent.address, "t", "delete", "-f", "cm1", namespace=NS)
        ctr(agent.address, "c", "rm", "cm1", namespace=NS)


def test_b23_metrics_filters(agent, rootfs):
    async def scenario():
        async with Client(agent.address, NS) as client, Client(agent.address, "other") as other:
            try:
                for cid in ("f1", "f2", "f3"):
                    await start_container(client, cid, ["/bin/sleep", "3600"], rootfs)
                await start_container(other, "f1", ["/bin/sleep", "3600"], rootfs)

                async def ids(filters):
                    return sorted(m.id for m in await client.metrics(filters))

                assert await ids(["id==f1"]) == ["f1"]
                assert await ids(["id==f1", "id==f2"]) == ["f1", "f2"]
                assert await ids([f"id==f1,namespace=={NS}"]) == ["f1"]
                assert await ids(["namespace==other"]) == []
                assert await ids([]) == ["f1", "f2", "f3"]
                assert await code_of(client.metrics(["id~=("])) == C.INVALID_ARGUMENT
                listed = await client.tasks.List(tpb.ListTasksRequest(filter="id==f1"),
                                                 metadata=client.md())
                assert [t.id for t in listed.tasks] == ["f1"]
                # A task whose cgroup is gone is skipped, not an error for the whole call.
                await client.kill("f3", 9)
                await client.wait("f3")
                await client.delete_task("f3")
                assert await ids([]) == ["f1", "f2"]
            finally:
                for cid in ("f1", "f2", "f3"):
                    await remove(client, cid)
                await remove(other, "f1")

    run(scenario())


def test_prometheus_endpoint(agent_factory, rootfs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = agent_factory(f'[metrics]\n  address = "127.0.0.1:{port}"\n').start()

    async def scenario():
        async with Client(agent.address, NS) as client:
            try:
                await start_container(client, "p1", ["/bin/sleep", "3600"], rootfs,
                                      resources={"memory": {"limit": 32 * MIB}})
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10
                                              ).read().decode()
                lines = dict(line.rsplit(" ", 1) for line in text.splitlines()
                             if line and not line.startswith("#"))
                assert lines['taskagent_tasks{state="running"}'] == "1"
                assert int(lines['taskagent_rpc_requests_total{method="/containerd.services.'
                                 'tasks.v1.Tasks/Start"}']) == 1
                label = f'{{namespace="{NS}",id="p1"}}'
                assert int(lines["taskagent_task_memory_limit_bytes" + label]) == 32 * MIB
                assert int(lines["taskagent_task_pids" + label]) == 1
                assert float(lines['taskagent_rpc_duration_seconds_count{method="/containerd.'
                                   'services.tasks.v1.Tasks/Create"}']) == 1
                assert 'taskagent_exit_delivery_seconds_count{process="task"}' not in lines
                # A Wait in place before the exit counts its delivery; a late Wait does not.
                waiter = asyncio.ensure_future(client.wait("p1"))
                await asyncio.sleep(0.2)
                await client.kill("p1", 9)
                exited = await waiter
                await client.wait("p1")
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10
                                              ).read().decode()
                lines = dict(line.rsplit(" ", 1) for line in text.splitlines()
                             if line and not line.startswith("#"))
                assert exited.exit_status == 137
                assert lines['taskagent_exit_delivery_seconds_count{process="task"}'] == "1"
                assert 0 < float(lines['taskagent_exit_delivery_seconds_sum{process="task"}']) < 5
            finally:
                await remove(client, "p1")

    run(scenario())
