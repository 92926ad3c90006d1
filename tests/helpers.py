"""Helpers shared by the tests: a client bound to a test agent, running ctr bounded by a
hard kill, and checks that nothing of a task is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from typing import Any

import grpc
import pytest

from agent.client import Client, default_spec
from agent.client.fifo import FifoSet

CTR = shutil.which("ctr")
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")


def run(coro):
    return asyncio.run(coro)


def need_ctr() -> str:
    if CTR is None:
        pytest.skip("containerd's ctr is not installed (the README's test command installs it)")
    return CTR


def ctr(address: str, *args: str, timeout: int = 60, input: bytes | None = None,
        namespace: str | None = None, foreground: bool = False) -> subprocess.CompletedProcess:
    """Run ctr against our socket, bounded by a hard kill (ctr forwards SIGTERM)."""
    cmd = ["timeout"]
    if foreground:
        cmd.append("--foreground")
    cmd += ["-k", "5", str(timeout), need_ctr(), "-a", address]
    if namespace:
        cmd += ["-n", namespace]
    return subprocess.run(cmd + with_fifo_dir(address, args), input=input, capture_output=True)


# The ctr commands that make stdio fifos; by default ctr leaves them in /run/containerd/fifo.
_FIFO_COMMANDS = {("run",), ("task", "start"), ("t", "start"), ("task", "exec"), ("t", "exec"),
                  ("tasks", "start"), ("tasks", "exec")}


def with_fifo_dir(address: str, args) -> list[str]:
    """ctr's arguments with its fifos kept beside the socket (a test directory)."""
    args = list(args)
    for n in (1, 2):
        if tuple(args[:n]) in _FIFO_COMMANDS and "--fifo-dir" not in args:
            fifo_dir = os.path.join(os.path.dirname(address), "ctr-fifo")
            os.makedirs(fifo_dir, mode=0o700, exist_ok=True)
            return args[:n] + ["--fifo-dir", fifo_dir] + args[n:]
    return args


async def code_of(coro) -> grpc.StatusCode:
    """The status code a call fails with (the test fails if it succeeds)."""
    try:
        await coro
    except grpc.aio.AioRpcError as e:
        return e.code()
    raise AssertionError("the call succeeded but was expected to fail")


async def error_of(coro) -> grpc.aio.AioRpcError:
    try:
        await coro
    except grpc.aio.AioRpcError as e:
        return e
    raise AssertionError("the call succeeded but was expected to fail")


async def start_container(client: Client, cid: str, args: list[str], rootfs: str,
                          fifos: FifoSet | None = None, terminal: bool = False,
                          **spec_kw: Any) -> int:
    """Containers.Create, Tasks.Create, Tasks.Start; returns the pid."""
    spec = default_spec(args, rootfs, namespace=client.namespace, id=cid, terminal=terminal,
                        **spec_kw)
    await client.create_container(cid, spec)
    if fifos is not None:
        fifos.open_readers()
        await client.create_task(cid, fifos.stdin, fifos.stdout, fifos.stderr, terminal)
    else:
        await client.create_task(cid)
    return await client.start(cid)


async def remove(client: Client, cid: str) -> None:
    """Kill, wait, delete the task and the container, ignoring what is already gone."""
    try:
        proc = await client.get(cid)
        if proc.status in (2, 4, 5):  # running, paused, pausing
            await client.kill(cid, 9, all=True)
            await asyncio.wait_for(client.wait(cid), 10)
    except grpc.aio.AioRpcError:
        pass
    for call in (client.delete_task(cid), client.delete_container(cid)):
        try:
            await call
        except grpc.aio.AioRpcError:
            pass


def cgroup_paths(agent: Any, namespace: str, cid: str) -> list[str]:
    return [f"/sys/fs/cgroup/{c}/{agent.cgroup_parent}/{namespace}/{cid}" for c in V1_CONTROLLERS]


def leftovers(agent: Any, namespace: str, cid: str, pid: int | None = None) -> list[str]:
    """Everything of a task that should be gone after Delete, as readable strings."""
    found = [p for p in cgroup_paths(agent, namespace, cid) if os.path.exists(p)]
    bundle = os.path.join(agent.state, "io.containerd.runtime.v2.native", namespace, cid)
    if os.path.exists(bundle):
        found.append(bundle)
    if pid and os.path.exists(f"/proc/{pid}"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "?"
        found.append(f"process {pid} (state {state})")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if f"/{namespace}/{cid}/" in line or line.split()[4].endswith(f"/{cid}/rootfs"):
                found.append("mount " + line.split()[4])
    return found


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


MARK_TOPIC = "/test/mark"


@contextlib.asynccontextmanager
async def subscribed(client: Client, filters: list[str], keep_earlier: bool = False):
    """Events.Subscribe in the background for the body of the `async with`: yields the list the
    events arrive in, once the agent has registered the subscription; cancelled at the end."""
    events: list = []
    ready = asyncio.Event()
    sub = asyncio.ensure_future(collect_events(client, filters, events, ready, keep_earlier))
    waiting = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait([sub, waiting], return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            sub.result()  # the subscription failed: its error, not a hang
        yield events
    finally:
        waiting.cancel()
        sub.cancel()


async def collect_events(client: Client, filters: list[str], sink: list,
                         ready: asyncio.Event, keep_earlier: bool = False) -> None:
    """Read Events.Subscribe into sink; `ready` is set once the agent has registered the
    subscription (a marker published after that has come back), with sink emptied unless
    keep_earlier (events replayed to a new subscriber after a restart arrive first)."""
    from agent.api.containerd.services.events.v1 import events_pb2
    from google.protobuf.any_pb2 import Any as AnyPb

    stream = client.subscribe(filters)

    async def pump() -> None:
        async for env in stream:
            if env.topic != MARK_TOPIC:
                sink.append(env)
            else:
                marks.append(env)

    marks: list = []
    task = asyncio.ensure_future(pump())
    try:
        while not marks:
            await client.events.Publish(events_pb2.PublishRequest(
                topic=MARK_TOPIC, event=AnyPb(type_url="test.Mark", value=b"m")),
                metadata=client.md())
            for _ in range(20):
                if marks:
                    break
                await asyncio.sleep(0.01)
        if not keep_earlier:
            sink.clear()
        ready.set()
        await task
    finally:
        stream.cancel()
        task.cancel()
