"""The tasks service's behaviour (containerd's tasks `local`): look the container up, pick
its runtime, act on the task, answer in containerd's messages.

Registered as the service plugin `tasks-service`, which requires the event, runtime and
metadata plugins and uses the task monitor when one is loaded (a no-op one otherwise)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from typing import Any

import orjson

from agent import filters, identifiers, plugin
from agent.cancellation import finish, uncancellable
from agent.api.containerd.services.tasks.v1 import tasks_pb2 as api
from agent.api.containerd.types.task import task_pb2 as types
from agent.api.runc import options_pb2
from agent.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from agent.server import context as reqctx
from agent.server.rpcstats import EXIT_DELIVERY
from agent.services.tasks import checkpoints
from agent.native import cgstats
from agent.runtime.task import IO, CreateOpts, Exit, Mount, PlatformRuntime, Task, TaskMonitor

log = logging.getLogger(__name__)

DEFAULT_RUNTIME = "native"
PROCESS_DETAILS_URL = "containerd.runc.v1.ProcessDetails"


def _process_message(state: Any) -> types.Process:
    p = types.Process(id=state.id, pid=state.pid, status=int(state.status),
                      stdin=state.io.stdin, stdout=state.io.stdout, stderr=state.io.stderr,
                      terminal=state.io.terminal)
    if state.exit is not None:
        p.exit_status = state.exit.status
        p.exited_at.FromNanoseconds(state.exit.timestamp_ns)
    return p


_PROM = (
    ("taskagent_task_memory_usage_bytes", "gauge", "Memory in use by the task's cgroup."),
    ("taskagent_task_memory_limit_bytes", "gauge", "Memory limit of the task's cgroup."),
    ("taskagent_task_cpu_usage_seconds_total", "counter", "CPU time used by the task."),
    ("taskagent_task_pids", "gauge", "Processes in the task's cgroup."),
)


async def _read_stats(version: int, batch: list[Task]) -> list[bytes | None]:
    """Each task's encoded cgroup metrics (None where its cgroup is gone)."""
    dirs = [t.stats_dirs() for t in batch]
    if len(batch) > 32:  # a big batch reads off the event loop (the GIL is released)
        return await asyncio.get_running_loop().run_in_executor(
            None, cgstats.read_many, version, dirs)
    return cgstats.read_many(version, dirs)


async def _cgroup_lines(tasks: list[Task]) -> list[str]:
    """Each task's cgroup figures for Prometheus, from the same reader as Metrics."""
    from agent.api.cgroups.v1 import metrics_pb2 as v1
    from agent.api.cgroups.v2 import metrics_pb2 as v2

    values: dict[str, list[str]] = {name: [] for name, _, _ in _PROM}
    for version, batch in _by_cgroup_version(tasks).items():
        for task, data in zip(batch, await _read_stats(version, batch)):
            if data is None:
                continue
            labels = f'namespace="{task.namespace}",id="{task.id}"'
            if version == 1:
                m = v1.Metrics.FromString(data)
                figures = (m.memory.usage.usage, m.memory.usage.limit,
                           m.cpu.usage.total / 1e9, m.pids.current)
            else:
                m = v2.Metrics.FromString(data)
                figures = (m.memory.usage, m.memory.usage_limit, m.cpu.usage_usec / 1e6,
                           m.pids.current)
            for (name, _, _), value in zip(_PROM, figures):
                values[name].append(f"{name}{{{labels}}} {value}")
    lines = []
    for name, kind, text in _PROM:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *values[name]]
    return lines


def _by_cgroup_version(tasks: list[Task]) -> dict[int, list[Task]]:
    out: dict[int, list[Task]] = {}
    for t in tasks:
        cgroup = getattr(t, "cgroup", None)
        if cgroup is not None:
            out.setdefault(cgroup.version, []).append(t)
    return out


def _delete_response(exit: Exit, process_id: str = "") -> api.DeleteResponse:
    r = api.DeleteResponse(id=process_id, pid=exit.pid, exit_status=exit.status)
    r.exited_at.FromNanoseconds(exit.timestamp_ns)
    return r


def _json(value: bytes, what: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(f"{what} is not valid JSON: {e}") from None


class TasksLocal:
    def __init__(self, runtimes: dict[str, PlatformRuntime], default: PlatformRuntime,
                 containers: Any, monitor: TaskMonitor, content: Any = None,
                 work_dir: str = ""):
        self.runtimes = runtimes
        self.default = default
        self.containers = containers
        self.monitor = monitor
        self.content = content  # the content store, for checkpoint images
        self.work_dir = work_dir  # where checkpoint images are made and unpacked

    # -- lookups -------------------------------------------------------------------------------

    def runtime_for(self, name: str) -> PlatformRuntime:
        # One runtime to rule them all: names we do not know (io.containerd.runc.v2) go to
        # the default, as containerd sends them to its v2 task manager.
        return self.runtimes.get(name) or self.default

    def _container(self, ns: str, container_id: str) -> Any:
        identifiers.validate(container_id, "container id")
        return self.containers.get(ns, container_id)

    def _runtime_of(self, ns: str, container_id: str) -> Any:
        """The runtime holding the container's task (NotFound without the container)."""
        identifiers.validate(container_id, "container id")
        return self.runtime_for(self.containers.runtime_name(ns, container_id))

    def _task(self, ns: str, container_id: str) -> Task:
        return self._runtime_of(ns, container_id).get(ns, container_id)

    def _process(self, ns: str, container_id: str, exec_id: str):
        task = self._task(ns, container_id)
        return task.process(exec_id) if exec_id else task

    def all_tasks(self, ns: str | None) -> list[Task]:
        seen: list[Task] = []
        for rt in {id(r): r for r in [*self.runtimes.values(), self.default]}.values():
            seen.extend(rt.tasks(ns))
        return seen

    async def prometheus_lines(self) -> list[str]:
        tasks = self.all_tasks(None)
        counts: dict[str, int] = {}
        for task in tasks:
            name = types.Status.Name(int(task.state().status)).lower()
            counts[name] = counts.get(name, 0) + 1
        lines = ["# HELP taskagent_tasks Tasks by state.", "# TYPE taskagent_tasks gauge"]
        for name in ("created", "running", "paused", "pausing", "stopped"):
            lines.append(f'taskagent_tasks{{state="{name}"}} {counts.get(name, 0)}')
        return lines + await _cgroup_lines(tasks)

    # -- the lifecycle ---------------------------------------------------------------------------

    async def create(self, ns: str, r: api.CreateTaskRequest) -> api.CreateTaskResponse:
        container = self._container(ns, r.container_id)
        runtime = self.runtime_for(container.runtime.name)
        try:
            runtime.get(ns, r.container_id)
            raise AlreadyExists(f"task {r.container_id}: already exists")
        except NotFound:
            pass
        if not container.spec.value:
            raise InvalidArgument(f"container {r.container_id} has no spec")
        spec = _json(container.spec.value, "the container's spec")
        opts = CreateOpts(
            spec=spec,
            io=IO(r.stdin, r.stdout, r.stderr, r.terminal),
            rootfs=[Mount(m.type, m.source, m.target, list(m.options)) for m in r.rootfs],
            runtime=container.runtime.name,
            task_options=r.options if r.HasField("options") else None,
        )
        restore_dir = ""
        if r.HasField("checkpoint") and r.checkpoint.digest:
            if self.content is None:
                raise FailedPrecondition("restoring needs the content store, which is not loaded")
            restore_dir = self._scratch("restore")
            try:
                await checkpoints.unpack(self.content, ns, r.checkpoint, restore_dir)
            except BaseException:
                shutil.rmtree(restore_dir, ignore_errors=True)
                raise
            opts.checkpoint = restore_dir
        try:
            task, cancelled = await finish(runtime.create(ns, r.container_id, opts))
        finally:
            if restore_dir:
                shutil.rmtree(restore_dir, ignore_errors=True)
        if cancelled:
            # The client is gone before it learnt of the task: take it back down, as a failed
            # Create leaves nothing.
            try:
                await uncancellable(runtime.delete(ns, r.container_id))
            except Exception as e:
                log.error("removing task %s of a cancelled Create: %s", r.container_id, e)
            raise asyncio.CancelledError()
        self.monitor.monitor(task, {"runtime": container.runtime.name})
        return api.CreateTaskResponse(container_id=r.container_id, pid=task.state().pid)

    def _scratch(self, what: str) -> str:
        os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        return tempfile.mkdtemp(prefix=f"{what}-", dir=self.work_dir)

    async def start(self, ns: str, r: api.StartRequest) -> api.StartResponse:
        proc = self._process(ns, r.container_id, r.exec_id)
        return api.StartResponse(pid=await uncancellable(proc.start()))

    async def delete(self, ns: str, r: api.DeleteTaskRequest) -> api.DeleteResponse:
        runtime = self._runtime_of(ns, r.container_id)
        task = runtime.get(ns, r.container_id)

        async def delete() -> Exit:
            exit = await runtime.delete(ns, r.container_id)
            self.monitor.stop(task)
            return exit

        return _delete_response(await uncancellable(delete()))

    async def delete_process(self, ns: str, r: api.DeleteProcessRequest) -> api.DeleteResponse:
        if not r.exec_id:
            raise InvalidArgument("exec id cannot be empty")
        proc = self._task(ns, r.container_id).process(r.exec_id)
        return _delete_response(await uncancellable(proc.delete()), r.exec_id)

    async def get(self, ns: str, r: api.GetRequest) -> api.GetResponse:
        proc = self._process(ns, r.container_id, r.exec_id)
        return api.GetResponse(process=_process_message(proc.state()))

    async def list(self, ns: str, r: api.ListTasksRequest) -> api.ListTasksResponse:
        flt = filters.parse_all([r.filter] if r.filter else [])
        out = []
        for task in self.all_tasks(ns):
            state = task.state()
            fields = {"id": state.id, "pid": str(state.pid),
                      "status": types.Status.Name(int(state.status)).lower()}
            if flt.match(filters.label_adaptor({}, fields)):
                out.append(_process_message(state))
        out.sort(key=lambda p: p.id)
        return api.ListTasksResponse(tasks=out)

    async def kill(self, ns: str, r: api.KillRequest) -> None:
        proc = self._process(ns, r.container_id, r.exec_id)
        await uncancellable(proc.kill(r.signal, r.all))

    async def exec(self, ns: str, r: api.ExecProcessRequest) -> None:
        if not r.exec_id:
            raise InvalidArgument("exec id cannot be empty")
        identifiers.validate(r.exec_id, "exec id")
        task = self._task(ns, r.container_id)
        if not r.spec.value:
            raise InvalidArgument("exec needs a process spec")
        spec = _json(r.spec.value, "the exec process spec")
        await task.exec(r.exec_id, spec, IO(r.stdin, r.stdout, r.stderr, r.terminal))

    async def resize_pty(self, ns: str, r: api.ResizePtyRequest) -> None:
        proc = self._process(ns, r.container_id, r.exec_id)
        await proc.resize_pty(r.width, r.height)

    async def close_io(self, ns: str, r: api.CloseIORequest) -> None:
        proc = self._process(ns, r.container_id, r.exec_id)
        if r.stdin:
            await uncancellable(proc.close_io())

    async def pause(self, ns: str, r: api.PauseTaskRequest) -> None:
        await uncancellable(self._task(ns, r.container_id).pause())

    async def resume(self, ns: str, r: api.ResumeTaskRequest) -> None:
        await self._task(ns, r.container_id).resume()

    async def list_pids(self, ns: str, r: api.ListPidsRequest) -> api.ListPidsResponse:
        task = self._task(ns, r.container_id)
        out = []
        for info in await task.pids():
            p = types.ProcessInfo(pid=info.pid)
            if info.exec_id:
                p.info.type_url = PROCESS_DETAILS_URL
                p.info.value = options_pb2.ProcessDetails(exec_id=info.exec_id).SerializeToString()
            out.append(p)
        return api.ListPidsResponse(processes=out)

    async def update(self, ns: str, r: api.UpdateTaskRequest) -> None:
        task = self._task(ns, r.container_id)
        resources = None
        if r.HasField("resources") and r.resources.value:
            resources = _json(r.resources.value, "resources")
        await task.update(resources, dict(r.annotations))

    async def wait(self, ns: str, r: api.WaitRequest) -> api.WaitResponse:
        proc = self._process(ns, r.container_id, r.exec_id)
        waited = proc.state().exit is None
        exit = await proc.wait()
        if waited:  # the exit came while this Wait waited: how long it took to deliver
            EXIT_DELIVERY.record("exec" if r.exec_id else "task",
                                 max(0, time.time_ns() - exit.timestamp_ns), False)
        resp = api.WaitResponse(exit_status=exit.status)
        resp.exited_at.FromNanoseconds(exit.timestamp_ns)
        return resp

    async def metrics(self, ns: str, r: api.MetricsRequest) -> api.MetricsResponse:
        flt = filters.parse_all(r.filters)
        chosen: list[Task] = []
        for task in self.all_tasks(ns):
            fields = {"id": task.id, "namespace": task.namespace,
                      "runtime": getattr(task, "runtime_name", "")}
            if flt.match(filters.label_adaptor({}, fields)):
                chosen.append(task)
        out = api.MetricsResponse()
        for version, batch in _by_cgroup_version(chosen).items():
            data = await _read_stats(version, batch)
            now = time.time_ns()
            for task, value in zip(batch, data):
                if value is None:
                    continue  # its cgroup is gone: skipped, not an error for the whole call
                m = out.metrics.add(id=task.id)
                m.timestamp.FromNanoseconds(now)
                m.data.type_url = cgstats.type_url(version)
                m.data.value = value
        return out

    async def checkpoint(self, ns: str, r: api.CheckpointTaskRequest) -> api.CheckpointTaskResponse:
        container = self._container(ns, r.container_id)
        task = self.runtime_for(container.runtime.name).get(ns, r.container_id)
        if self.content is None:
            raise FailedPrecondition("checkpoint needs the content store, which is not loaded")
        scratch = self._scratch("checkpoint")
        try:
            req, kept = checkpoints.request_from(r.options if r.HasField("options") else None,
                                                 scratch)
            await uncancellable(task.checkpoint(req.image_path, req))  # criu runs to its end
            if kept:  # the client asked for the images in its own directory
                return api.CheckpointTaskResponse()
            lease = reqctx.lease()
            image = await checkpoints.store_image(self.content, ns, req.image_path, lease)
            config = await checkpoints.store_config(self.content, ns, container.spec, lease)
            return api.CheckpointTaskResponse(descriptors=[image, config])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


async def _init(ic: plugin.InitContext) -> TasksLocal:
    runtimes = {name: p.instance for name, p in ic.get_by_type(plugin.RUNTIME).items() if p.ok}
    if DEFAULT_RUNTIME not in runtimes:
        failed = ic.get_by_type(plugin.RUNTIME).get(DEFAULT_RUNTIME)
        why = f": {failed.error}" if failed is not None and failed.error is not None else ""
        raise RuntimeError(
            f"the default runtime {plugin.RUNTIME}.{DEFAULT_RUNTIME} did not load{why}")
    metadata = ic.get(plugin.METADATA)
    ic.get(plugin.EVENT)
    try:
        monitor = ic.get(plugin.TASK_MONITOR)
    except NotFound:
        monitor = TaskMonitor()
    named = dict(runtimes)
    for rt in runtimes.values():
        named[rt.id] = rt  # also reachable by its full name, io.containerd.runtime.v2.native
    try:
        content = ic.get(plugin.CONTENT)
    except NotFound:
        content = None
    local = TasksLocal(named, runtimes[DEFAULT_RUNTIME], metadata.containers, monitor, content,
                       os.path.join(ic.state, "checkpoints"))
    for rt in runtimes.values():
        if hasattr(rt, "exit_hooks"):
            rt.exit_hooks.append(monitor.before_exit)
    for task in local.all_tasks(None):
        monitor.monitor(task, None)  # tasks that survived a restart are watched again
    return local


plugin.register(plugin.Registration(
    type=plugin.SERVICE,
    id="tasks-service",
    init=_init,
    requires=(plugin.EVENT, plugin.RUNTIME, plugin.METADATA),
    optional=(plugin.TASK_MONITOR, plugin.CONTENT),
))
