"""Client commands for people. Each opens a Client on the agent's socket, does one thing
and prints what a person wants to see; exit codes follow the container where one runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

import grpc

from agent import config


def _address(args: argparse.Namespace) -> str:
    # -a goes before the command (as with ctr) or after it.
    return (args.address or getattr(args, "global_address", None)
            or os.environ.get("TASKAGENT_ADDRESS") or config.DEFAULT_ADDRESS)


def _namespace(args: argparse.Namespace) -> str:
    return (args.namespace or getattr(args, "global_namespace", None)
            or os.environ.get("TASKAGENT_NAMESPACE")
            or os.environ.get("CONTAINERD_NAMESPACE") or "default")


def _client(args: argparse.Namespace):
    from agent.client import Client

    return Client(_address(args), _namespace(args))


def _run_async(coro, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(coro)
    except grpc.aio.AioRpcError as e:
        print(f"taskagent: {_explain(e, _address(args))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _explain(e: grpc.aio.AioRpcError, address: str) -> str:
    """One line for a failed call: the agent's message and its code (once)."""
    details, code = e.details() or "", e.code().name.lower()
    if e.code() == grpc.StatusCode.UNAVAILABLE and "connect" in details:
        if "Permission denied" in details:
            return (f"cannot reach the agent at {address}: permission denied (the socket "
                    "is for root and the group set by [grpc] gid)")
        if "No such file" in details or "Connection refused" in details:
            return f"cannot reach the agent at {address}: no agent is serving there"
        return f"cannot reach the agent at {address}: {details}"
    words = ": " + code.replace("_", " ")
    if details.endswith(words):  # containerd's style ends messages with the kind of error
        details = details[: -len(words)]
    return f"{details} ({code})"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", "-a", help="the agent's socket (default: $TASKAGENT_ADDRESS "
                   f"or {config.DEFAULT_ADDRESS})")
    p.add_argument("--namespace", "-n", help="namespace (default: $TASKAGENT_NAMESPACE or default)")


# -- run and exec --------------------------------------------------------------------------

async def _run(args: argparse.Namespace) -> int:
    from agent.cli import attach

    from agent.client import default_spec

    if not args.command:
        print("taskagent run: give the command after the id (use -- before its options)",
              file=sys.stderr)
        return 2
    ns = _namespace(args)
    spec = default_spec(args.command, os.path.abspath(args.rootfs), namespace=ns, id=args.id,
                        hostname=args.hostname, terminal=args.tty,
                        env=args.env or (["TERM=xterm"] if args.tty else None))
    async with _client(args) as client:
        making = asyncio.ensure_future(client.create_container(args.id, spec))
        try:
            await asyncio.shield(making)
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C) while the container was being made: once the agent has
            # answered, --rm removes what it made (and only that).
            with contextlib.suppress(grpc.aio.AioRpcError):
                await making
                if args.rm and not args.detach:
                    await _delete_quietly(client, args.id)
            raise
        try:
            if args.detach:
                await client.create_task(args.id)
                pid = await client.start(args.id)
                print(pid)
                return 0
            session = attach.Session(client, args.id, interactive=args.interactive or args.tty,
                                     terminal=args.tty)
            return await session.run_task()
        except grpc.aio.AioRpcError:
            # No task was made (a missing rootfs, say): the container goes again with it.
            if not await _has_task(client, args.id):
                await _delete_quietly(client, args.id)
            raise
        finally:
            if args.rm and not args.detach:
                await _remove_with_task(client, args.id)


async def _has_task(client, container_id: str) -> bool:
    try:
        await client.get(container_id)
        return True
    except grpc.aio.AioRpcError as e:
        return e.code() != grpc.StatusCode.NOT_FOUND


async def _remove_with_task(client, container_id: str) -> None:
    """--rm on the way out, also when interrupted (Ctrl-C) with the task still running: the
    task is killed and deleted before its container, which would otherwise leave a task
    that no call can reach by its container's id."""
    if await _has_task(client, container_id):
        with contextlib.suppress(grpc.aio.AioRpcError):
            await client.kill(container_id, signal.SIGKILL, all=True)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.TimeoutError):
            await asyncio.wait_for(client.wait(container_id), 10)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await client.delete_task(container_id)
    await _delete_quietly(client, container_id)


async def _delete_quietly(client, container_id: str) -> None:
    try:
        await client.delete_container(container_id)
    except grpc.aio.AioRpcError:
        pass


async def _exec(args: argparse.Namespace) -> int:
    from agent.cli import attach

    import orjson

    from agent.api.containerd.services.containers.v1 import containers_pb2

    async with _client(args) as client:
        container = await client.containers.Get(
            containers_pb2.GetContainerRequest(id=args.id), metadata=client.md())
        # The container's own process, with the command and terminal replaced (as ctr does).
        process = orjson.loads(container.container.spec.value).get("process", {})
        process["args"] = args.command
        process["terminal"] = args.tty
        if args.tty:
            process.setdefault("env", ["TERM=xterm"])
        session = attach.Session(client, args.id, exec_id=args.exec_id,
                                 interactive=args.interactive or args.tty, terminal=args.tty)
        return await session.run_exec(process)


# -- listing and control ---------------------------------------------------------------------

async def _ls(args: argparse.Namespace) -> int:
    from agent.cli import show

    async with _client(args) as client:
        show.table(["TASK", "PID", "STATUS"],
                   [[t.id, t.pid, show.status(t.status)] for t in await client.list_tasks()])
    return 0


async def _ps(args: argparse.Namespace) -> int:
    from agent.cli import show

    async with _client(args) as client:
        rows = []
        for p in await client.pids(args.id):
            rows.append([p.pid, show.process_info(p)])
        show.table(["PID", "INFO"], rows)
    return 0


async def _kill(args: argparse.Namespace) -> int:
    from agent.cli import show

    async with _client(args) as client:
        await client.kill(args.id, show.signal_number(args.signal), exec_id=args.exec_id,
                          all=args.all)
    return 0


async def _delete(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        try:
            resp = await client.delete_task(args.id)
            print(f"{args.id}: exit status {resp.exit_status}")
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
        await client.delete_container(args.id)
    return 0


async def _pause(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        await client.pause(args.id)
    return 0


async def _resume(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        await client.resume(args.id)
    return 0


async def _update(args: argparse.Namespace) -> int:
    resources: dict = {}
    if args.memory is not None:
        resources.setdefault("memory", {})["limit"] = args.memory
    if args.memory_swap is not None:
        resources.setdefault("memory", {})["swap"] = args.memory_swap
    for key, value in (("shares", args.cpu_shares), ("quota", args.cpu_quota),
                       ("period", args.cpu_period), ("cpus", args.cpus)):
        if value is not None:
            resources.setdefault("cpu", {})[key] = value
    if args.pids_limit is not None:
        resources["pids"] = {"limit": args.pids_limit}
    if not resources:
        print("taskagent update: give at least one limit to change", file=sys.stderr)
        return 2
    async with _client(args) as client:
        await client.update(args.id, resources)
    return 0


async def _metrics(args: argparse.Namespace) -> int:
    from agent.cli import show

    async with _client(args) as client:
        metrics = await client.metrics([f"id=={args.id}"])
        if not metrics:
            print(f"taskagent: no metrics for {args.id}", file=sys.stderr)
            return 1
        show.table(["METRIC", "VALUE"], [[k, v] for k, v in show.metric_rows(metrics[0])])
    return 0


async def _top(args: argparse.Namespace) -> int:
    from agent.cli import show

    async with _client(args) as client:
        previous: dict[str, tuple[float, float]] = {}
        sampled = False
        while True:
            if args.once and not sampled:
                # CPU is a rate: one quiet sample first, the figures over the half second after.
                for m in await client.metrics([]):
                    at = m.timestamp.seconds + m.timestamp.nanos / 1e9
                    previous[m.id] = (at, show.metric_summary(m)["cpu_seconds"])
                sampled = True
                await asyncio.sleep(0.5)
            rows = []
            for m in await client.metrics([]):
                summary = show.metric_summary(m)
                at = m.timestamp.seconds + m.timestamp.nanos / 1e9
                cpu = ""
                if m.id in previous and at > previous[m.id][0]:
                    used = summary["cpu_seconds"] - previous[m.id][1]
                    cpu = f"{100 * used / (at - previous[m.id][0]):.1f}%"
                previous[m.id] = (at, summary["cpu_seconds"])
                rows.append([m.id, cpu or "-", show.size(summary["memory"]),
                             show.size(summary["limit"]), summary["pids"]])
            if not args.once:
                print("\033[H\033[J", end="")
            show.table(["TASK", "CPU", "MEMORY", "LIMIT", "PIDS"], sorted(rows))
            if args.once:
                return 0
            await asyncio.sleep(args.interval)


async def _checkpoint(args: argparse.Namespace) -> int:
    from agent.client.checkpoint import checkpoint

    async with _client(args) as client:
        name = await checkpoint(client, args.id, exit=args.exit,
                                progress=lambda line: print(line, file=sys.stderr))
        print(name)
    return 0


async def _restore(args: argparse.Namespace) -> int:
    from agent.client.checkpoint import restore

    async with _client(args) as client:
        pid = await restore(client, args.image, args.id,
                            rootfs=os.path.abspath(args.rootfs) if args.rootfs else None,
                            progress=lambda line: print(line, file=sys.stderr))
        print(pid)
    return 0


async def _events(args: argparse.Namespace) -> int:
    from agent.cli import show

    async with _client(args) as client:
        async for env in client.subscribe(args.filters):
            print(show.envelope(env), flush=True)
    return 0


def _supervisor_stop(args: argparse.Namespace) -> int:
    from agent.runtime.native import supervisor
    from agent.server.listen import agent_holding

    holder = agent_holding(args.state)
    if holder is not None:
        # The supervisor serves one agent at a time; taking its link would cut the agent off.
        print(f"taskagent: an agent (pid {holder}) is running with state directory "
              f"{args.state}; stop it first", file=sys.stderr)
        return 1
    state = os.path.join(args.state, "io.containerd.runtime.v2.native")
    try:
        stopped = supervisor.shutdown_sync(supervisor.socket_path(state), force=args.force)
    except supervisor.SupervisorError as e:
        print(f"taskagent: {e.message} (use --force to kill them)", file=sys.stderr)
        return 1
    print("supervisor stopped" if stopped else f"no supervisor is running for {state}")
    return 0


def add_client_commands(sub: argparse._SubParsersAction) -> None:
    sv = sub.add_parser("supervisor", help="the supervisor that holds the agent's containers")
    sv_sub = sv.add_subparsers(dest="supervisor_command", required=True)
    sv_stop = sv_sub.add_parser("stop", help="stop it (with --force: and every container it holds)")
    sv_stop.add_argument("--state", default=config.DEFAULT_STATE, help="the agent's state directory")
    sv_stop.add_argument("--force", action="store_true",
                         help="kill the containers it holds (otherwise it refuses while any run)")
    sv_stop.set_defaults(func=_supervisor_stop)

    run = sub.add_parser("run", help="run a container from a rootfs directory")
    _common(run)
    run.add_argument("--rootfs", required=True, help="root filesystem directory")
    run.add_argument("--rm", action="store_true", help="delete the container when it exits")
    run.add_argument("--detach", "-d", action="store_true", help="start and print the pid")
    run.add_argument("--tty", "-t", action="store_true", help="give it a terminal")
    run.add_argument("--interactive", "-i", action="store_true", help="forward stdin")
    run.add_argument("--hostname", help="the container's hostname")
    run.add_argument("--env", action="append", help="KEY=VALUE (repeatable)")
    run.add_argument("id")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=lambda a: _run_async(_run(_strip_dashes(a)), a))

    ex = sub.add_parser("exec", help="run a process in a running container")
    _common(ex)
    ex.add_argument("--exec-id", required=True)
    ex.add_argument("--tty", "-t", action="store_true")
    ex.add_argument("--interactive", "-i", action="store_true")
    ex.add_argument("id")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=lambda a: _run_async(_exec(_strip_dashes(a)), a))

    for name, fn, helptext in (("ls", _ls, "list tasks"),):
        p = sub.add_parser(name, help=helptext)
        _common(p)
        p.set_defaults(func=lambda a, fn=fn: _run_async(fn(a), a))
    for name, fn, helptext in (("ps", _ps, "list a task's processes"),
                               ("delete", _delete, "delete a stopped task and its container"),
                               ("pause", _pause, "freeze a task"),
                               ("resume", _resume, "thaw a task")):
        p = sub.add_parser(name, help=helptext)
        _common(p)
        p.add_argument("id")
        p.set_defaults(func=lambda a, fn=fn: _run_async(fn(a), a))

    kill = sub.add_parser("kill", help="signal a task or exec")
    _common(kill)
    kill.add_argument("--signal", "-s", default="SIGTERM")
    kill.add_argument("--exec-id", default="")
    kill.add_argument("--all", action="store_true", help="every process of the task")
    kill.add_argument("id")
    kill.set_defaults(func=lambda a: _run_async(_kill(a), a))

    update = sub.add_parser("update", help="change a running task's limits")
    _common(update)
    update.add_argument("--memory", type=int, help="memory limit in bytes (-1: none)")
    update.add_argument("--memory-swap", type=int, help="memory plus swap limit in bytes")
    update.add_argument("--cpu-shares", type=int)
    update.add_argument("--cpu-quota", type=int, help="microseconds per period (-1: none)")
    update.add_argument("--cpu-period", type=int, help="microseconds")
    update.add_argument("--cpus", help="the CPUs it may run on, e.g. 0-1")
    update.add_argument("--pids-limit", type=int)
    update.add_argument("id")
    update.set_defaults(func=lambda a: _run_async(_update(a), a))

    metrics = sub.add_parser("metrics", help="a task's cgroup figures")
    _common(metrics)
    metrics.add_argument("id")
    metrics.set_defaults(func=lambda a: _run_async(_metrics(a), a))

    top = sub.add_parser("top", help="CPU, memory and processes of every task, refreshed")
    _common(top)
    top.add_argument("--interval", type=float, default=2.0)
    top.add_argument("--once", action="store_true", help="print one table and exit")
    top.set_defaults(func=lambda a: _run_async(_top(a), a))

    cp = sub.add_parser("checkpoint", help="checkpoint a running task into an image (CRIU)")
    _common(cp)
    cp.add_argument("--exit", action="store_true", help="stop the task after the checkpoint")
    cp.add_argument("id")
    cp.set_defaults(func=lambda a: _run_async(_checkpoint(a), a))

    rs = sub.add_parser("restore", help="a new container running from a checkpoint image")
    _common(rs)
    rs.add_argument("--rootfs", help="root filesystem (default: the checkpointed one)")
    rs.add_argument("image", help="the checkpoint image name that `checkpoint` printed")
    rs.add_argument("id", help="the new container's id")
    rs.set_defaults(func=lambda a: _run_async(_restore(a), a))

    events = sub.add_parser("events", help="print events as they happen")
    _common(events)
    events.add_argument("filters", nargs="*")
    events.set_defaults(func=lambda a: _run_async(_events(a), a))


def _strip_dashes(args: argparse.Namespace) -> argparse.Namespace:
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    return args

