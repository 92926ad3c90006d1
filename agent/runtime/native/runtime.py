"""The native runtime: tasks made by our supervisor, in cgroups we manage, recorded under
`<state>/<namespace>/<id>/` (the task's bundle)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any

from agent import identifiers
from agent.api.containerd.events import task_pb2 as ev
from agent.api.containerd.types import mount_pb2
from agent.cgroups import Cgroups
from agent.cgroups import resources as cgroup_resources
from agent.errors import AlreadyExists, InvalidArgument, NotFound
from agent.runtime.native import errmap, state, stdio
from agent.runtime.native import protocol as P
from agent.runtime.native import spec as specmod
from agent.runtime.native.supervisor import ExitEvent, Supervisor
from agent.runtime.native.task import NativeTask
from agent.runtime.task import CreateOpts, Exit, PlatformRuntime

log = logging.getLogger(__name__)


class NativeRuntime(PlatformRuntime):
    id = "io.containerd.runtime.v2.native"

    def __init__(self, state_dir: str, cgroups: Cgroups, publisher: Any, supervisor: Supervisor):
        self.state_dir = state_dir
        self.cgroups = cgroups
        self.publisher = publisher
        self.supervisor = supervisor
        self._tasks: dict[tuple[str, str], NativeTask] = {}
        self._by_key: dict[str, NativeTask] = {}
        # Called with a task as its init exits, before `/tasks/exit` (the OOM monitor).
        self.exit_hooks: list = []
        supervisor.on_exit = self._on_exit

    def publish(self, namespace: str, topic: str, event: Any) -> None:
        self.publisher.publish(namespace, topic, event)

    # -- lookups ----------------------------------------------------------------------------

    def get(self, namespace: str, task_id: str) -> NativeTask:
        task = self._tasks.get((namespace, task_id))
        if task is None:
            raise NotFound(f"task {task_id} not found")
        return task

    def tasks(self, namespace: str | None) -> list[NativeTask]:
        if namespace is None:
            return list(self._tasks.values())
        return [t for (ns, _), t in self._tasks.items() if ns == namespace]

    # -- exits ------------------------------------------------------------------------------

    def _on_exit(self, event: ExitEvent) -> None:
        ns, _, rest = event.key.partition("/")
        task_id, _, exec_id = rest.partition("/")
        task = self._tasks.get((ns, task_id))
        if task is None:
            log.debug("exit of %s, which no task holds", event.key)
            return
        exit = Exit(event.pid, event.exit_code, event.exited_at_ns)
        if exec_id:
            proc = task.execs.get(exec_id)
            if proc is not None:
                proc.on_exit(exit)
        else:
            task.on_exit(exit)

    # -- create and delete --------------------------------------------------------------------

    def bundle_path(self, namespace: str, task_id: str) -> str:
        identifiers.validate(namespace, "namespace")
        identifiers.validate(task_id, "container id")
        return os.path.join(self.state_dir, namespace, task_id)

    async def create(self, namespace: str, task_id: str, opts: CreateOpts) -> NativeTask:
        if (namespace, task_id) in self._tasks:
            raise AlreadyExists(f"task {task_id}: already exists")
        bundle = self.bundle_path(namespace, task_id)
        spec = specmod.parse(opts.spec, bundle)
        resources = cgroup_resources.parse(spec.resources)
        terminal = opts.io.terminal or spec.process.terminal
        spec.process.terminal = terminal
        opts.io.terminal = terminal
        stdio.check_io(opts.io)
        if opts.rootfs:
            rootfs = os.path.join(bundle, "rootfs")
            mounts = [specmod.rootfs_mount_payload(m.type, m.source, m.options) for m in opts.rootfs]
        else:
            rootfs = spec.root_path
            mounts = []
            if not rootfs:
                raise InvalidArgument("the spec has no root.path and the request no rootfs mounts")
            if not os.path.isdir(rootfs):
                raise InvalidArgument(f"rootfs {rootfs} does not exist or is not a directory")
        # A task being created is reserved at once, so a concurrent Create gets AlreadyExists.
        task = NativeTask(self, namespace, task_id, bundle, self.cgroups.for_task(namespace, task_id),
                          opts.io, spec, rootfs)
        task.runtime_name = opts.runtime
        self._tasks[(namespace, task_id)] = task
        self._by_key[task.key] = task
        try:
            await self._spawn_init(task, spec, resources, mounts, opts)
        except BaseException:
            self._forget(task)
            raise
        task.start_time = state.process_start_time(task.pid)
        self.persist(task)
        msg = ev.TaskCreate(container_id=task_id, bundle=bundle, pid=task.pid)
        msg.io.stdin, msg.io.stdout, msg.io.stderr = opts.io.stdin, opts.io.stdout, opts.io.stderr
        msg.io.terminal = terminal
        for m in opts.rootfs:
            msg.rootfs.append(mount_pb2.Mount(type=m.type, source=m.source, target=m.target,
                                              options=m.options))
        self.publish(namespace, "/tasks/create", msg)
        return task

    async def _spawn_init(self, task: NativeTask, spec: specmod.ContainerSpec,
                          resources: cgroup_resources.Resources, mounts: list[P.Payload],
                          opts: CreateOpts) -> None:
        bundle = task.bundle
        os.makedirs(os.path.dirname(bundle), mode=0o711, exist_ok=True)
        if os.path.lexists(bundle):
            shutil.rmtree(bundle)  # left by a task that did not finish its create
        os.mkdir(bundle, 0o711)
        if mounts:
            os.mkdir(task.rootfs, 0o755)
        fds: list[int] = []
        opened = None
        cgroup_made = False
        try:
            task.cgroup.create(resources)
            cgroup_made = True
            payload = specmod.init_payload(task.key, spec, task.rootfs)
            for m in mounts:
                payload.nested(P.T_ROOTFS_MOUNT, m)
            for ns_type, path in spec.ns_paths:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise InvalidArgument(f"namespace path {path}: {e.strerror}") from None
                fds.append(fd)
                join = P.Payload().u64(P.T_NS_TYPE, ns_type).u64(P.T_FD, payload.add_fd(fd))
                payload.nested(P.T_NS_JOIN, join)
            procs_fds, dir_fd = task.cgroup.join_files()
            fds.extend(procs_fds)
            for fd in procs_fds:
                payload.fd(P.T_CGROUP_PROCS, fd)
            if dir_fd is not None:
                fds.append(dir_fd)
                payload.fd(P.T_CGROUP_DIR, dir_fd)
            opened = stdio.open_into(payload, opts.io)
            try:
                task.pid = await self.supervisor.create(payload)
            except Exception as e:
                raise errmap.to_agent_error(e, f"creating task {task.id}") from None
        except BaseException:
            if cgroup_made:
                try:
                    await task.cgroup.delete()
                except Exception as e:
                    log.error("removing the cgroup of failed task %s: %s", task.id, e)
            shutil.rmtree(bundle, ignore_errors=True)
            raise
        finally:
            for fd in fds:
                os.close(fd)
            if opened is not None:
                opened.close()

    async def delete(self, namespace: str, task_id: str) -> Exit:
        task = self.get(namespace, task_id)
        exit = await task.delete()
        self._forget(task)
        shutil.rmtree(task.bundle, ignore_errors=True)
        msg = ev.TaskDelete(container_id=task_id, pid=exit.pid, exit_status=exit.status)
        msg.exited_at.seconds, msg.exited_at.nanos = divmod(exit.timestamp_ns, 1_000_000_000)
        self.publish(namespace, "/tasks/delete", msg)
        return exit

    def _forget(self, task: NativeTask) -> None:
        if self._tasks.get((task.namespace, task.id)) is task:
            del self._tasks[(task.namespace, task.id)]
        self._by_key.pop(task.key, None)

    # -- records -------------------------------------------------------------------------------

    def persist(self, task: NativeTask) -> None:
        if (task.namespace, task.id) not in self._tasks or not os.path.isdir(task.bundle):
            return
        record = {
            "namespace": task.namespace,
            "id": task.id,
            "pid": task.pid,
            "start_time": task.start_time,
            "status": int(task.status),
            "created_at_ns": task.created_at_ns,
            "rootfs": task.rootfs,
            "cgroup": task.cgroup.path,
            "io": [task.io.stdin, task.io.stdout, task.io.stderr, task.io.terminal],
            "has_pidns": task.spec.has_pidns,
            "exit": _exit_record(task.exit),
            "exit_published": task.exit_published,
            "execs": {
                e.id: {
                    "pid": e.pid,
                    "status": int(e.status),
                    "io": [e.io.stdin, e.io.stdout, e.io.stderr, e.io.terminal],
                    "exit": _exit_record(e.exit),
                    "exit_published": e.exit_published,
                }
                for e in task.execs.values()
            },
            "updated_at_ns": time.time_ns(),
        }
        try:
            state.write(task.bundle, record)
        except OSError as e:
            log.error("recording task %s: %s", task.key, e)

    def close(self) -> None:
        self.supervisor.close()


def _exit_record(exit: Exit | None) -> list[int] | None:
    return None if exit is None else [exit.pid, exit.status, exit.timestamp_ns]

