"""The native runtime: tasks made by our supervisor, in cgroups we manage.

A task's record (what a restarted agent needs to take it back) is kept by the supervisor
with the process itself, so creating a task writes no file: the process and its record
exist together or not at all. A task gets a directory of its own (`<state>/<ns>/<id>/`)
only when its rootfs comes as mounts that need a mount point."""

from __future__ import annotations

import asyncio
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
from agent.cgroups.anchor import FreezerAnchor
from agent.cgroups.join_cache import JoinCache
from agent.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from agent.runtime.native import checkpoint, errmap, stdio
from agent.runtime.native.criu import Criu
from agent.runtime.native import protocol as P
from agent.runtime.native import spec as specmod
from agent.runtime.native.supervisor import ExitEvent, Supervisor, SupervisorError
from agent.runtime.native.task import NativeTask
from agent.runtime.task import UNKNOWN_EXIT_STATUS, CreateOpts, Exit, PlatformRuntime

log = logging.getLogger(__name__)

REATTACH_DELAY = 0.5


class NativeRuntime(PlatformRuntime):
    id = "io.containerd.runtime.v2.native"

    def __init__(self, state_dir: str, cgroups: Cgroups, publisher: Any, supervisor: Supervisor):
        self.state_dir = state_dir
        self.cgroups = cgroups
        self.publisher = publisher
        self.supervisor = supervisor
        self._tasks: dict[tuple[str, str], NativeTask] = {}
        # Called with a task as its init exits, before `/tasks/exit` (the OOM monitor).
        self.exit_hooks: list = []
        self._acks: set[asyncio.Task] = set()
        # While tasks are being taken back after a restart, exits wait here for them.
        self.held_exits: list[ExitEvent] | None = None
        self.exports: dict[str, str] = {}  # the plugin's, for introspection
        self.criu = Criu()
        self.freezer_anchor: FreezerAnchor | None = None
        self.join_cache = JoinCache()
        supervisor.on_exit = self.on_supervisor_exit
        supervisor.on_lost = self.on_supervisor_lost

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

    def adopt(self, task: NativeTask) -> None:
        """Hold a task (a new one, or one taken back after a restart)."""
        self._tasks[(task.namespace, task.id)] = task

    # -- exits ------------------------------------------------------------------------------

    def on_supervisor_exit(self, event: ExitEvent) -> None:
        if self.held_exits is not None:
            self.held_exits.append(event)
            return
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

    def acknowledge_exit(self, key: str) -> None:
        """Tell the supervisor an exit was handled, so a restarted agent does not publish it
        again. Off the caller's path; a lost ack only means one repeated event."""
        async def ack() -> None:
            try:
                await self.supervisor.ack_exit(key)
            except Exception as e:
                log.debug("acknowledging the exit of %s: %s", key, e)

        task = asyncio.ensure_future(ack())
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    def on_supervisor_lost(self) -> None:
        """The link to the supervisor broke. If the supervisor lives (another client took the
        link), attach again and catch up on exits. If it died, its containers run on
        (re-parented to init) but their exit statuses can never be known: every live process
        ends here, honestly, with containerd's unknown status 255; new tasks get a new one."""
        if self.supervisor.alive():
            # Another client took the link (`taskagent supervisor stop`, say): let it finish.
            log.error("the supervisor dropped our link; attaching again")
            asyncio.get_running_loop().call_later(
                REATTACH_DELAY, lambda: asyncio.ensure_future(self._reattach()))
            return
        now = time.time_ns()
        for task in list(self._tasks.values()):
            for proc in list(task.execs.values()) + [task]:
                if proc.exit is None and proc.pid:
                    log.warning("task %s: process %s is orphaned by the supervisor's death; "
                                "its exit status is unknown", task.key, proc.id)
                    proc.on_exit(Exit(proc.pid, UNKNOWN_EXIT_STATUS, now))
        asyncio.ensure_future(self._reattach())

    async def _reattach(self) -> None:
        try:
            await self.supervisor.connect()
            self.exports["supervisor_pid"] = str(self.supervisor.pid)
            for info in await self.supervisor.list():  # exits missed while detached
                if info.state == P.STATE_EXITED and not info.exit_acked:
                    self.on_supervisor_exit(ExitEvent(info.key, info.pid, info.exit_code, 0,
                                                      info.exited_at_ns))
        except Exception as e:
            log.error("attaching to a supervisor: %s", e)

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
            bundle = ""
            rootfs = spec.root_path
            mounts = []
            if not rootfs:
                raise InvalidArgument("the spec has no root.path and the request no rootfs mounts")
            if not os.path.isdir(rootfs):
                raise InvalidArgument(f"rootfs {rootfs} does not exist or is not a directory")
        # A task being created is reserved at once, so a concurrent Create gets AlreadyExists.
        task = NativeTask(self, namespace, task_id, bundle, self.cgroups.for_task(namespace, task_id),
                          opts.io, spec.has_pidns, rootfs, opts.runtime)
        task.binds = [m.destination for m in spec.mounts if m.bind]
        if opts.checkpoint:
            await self.criu.require()
            if terminal:
                raise InvalidArgument("a task with a terminal cannot be restored")
            task.restored = True
        self.adopt(task)
        try:
            await self._spawn_init(task, spec, resources, mounts, opts.checkpoint)
        except BaseException:
            self._forget(task)
            raise
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
                          checkpoint_dir: str = "") -> None:
        if task.bundle:
            os.makedirs(os.path.dirname(task.bundle), mode=0o711, exist_ok=True)
            if os.path.lexists(task.bundle):
                shutil.rmtree(task.bundle)  # left by a task that did not finish its create
            os.mkdir(task.bundle, 0o711)
            os.mkdir(task.rootfs, 0o755)
        fds: list[int] = []
        opened = None
        cgroup_made = False
        try:
            task.cgroup.create(resources)
            cgroup_made = True
            payload = specmod.init_payload(task.key, spec, task.rootfs)
            payload.bytes(P.T_ANNOTATION, task.record())
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
            if checkpoint_dir:
                if mounts or spec.ns_paths:
                    raise InvalidArgument("restoring with rootfs mounts or joined namespaces "
                                          "is not supported")
                await self._restore(task, spec, checkpoint_dir)
                return
            opened = stdio.open_into(payload, task.io)
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
            if task.bundle:
                shutil.rmtree(task.bundle, ignore_errors=True)
            raise
        finally:
            for fd in fds:
                os.close(fd)
            if opened is not None:
                opened.close()

    async def _restore(self, task: NativeTask, spec: specmod.ContainerSpec, image_dir: str) -> None:
        """Bring the task back from a checkpoint; its cgroup is made already."""
        descriptors = checkpoint.read_descriptors(image_dir)
        root = os.path.join(image_dir, "criu-root")
        pidfile = os.path.join(image_dir, "restore.pid")
        binds = {m.destination: m.source for m in spec.mounts if m.bind}
        argv = checkpoint.restore_argv(await self.criu.require(), image_dir, root, pidfile,
                                       task.cgroup.path, descriptors, binds, False)
        payload = checkpoint.restore_payload(task.key, task.record(), argv, pidfile,
                                             task.has_pidns)
        opened = stdio.open_into(payload, task.io)
        try:
            await checkpoint.bind_root(task.rootfs, root)
            task.pid = await self.supervisor.restore(payload)
        except FailedPrecondition:
            raise
        except Exception as e:
            log_path = os.path.join(image_dir, checkpoint.RESTORE_LOG)
            cause = checkpoint.first_error(log_path)
            kept = checkpoint.keep_log(log_path, os.path.join(
                self.state_dir, "logs", f"restore-{task.namespace}-{task.id}.log"))
            raise errmap.to_agent_error(e, f"restoring task {task.id}: {cause or 'see the log'}"
                                        + (f" (log: {kept})" if kept else "")) from None
        finally:
            opened.close()
            await checkpoint.unbind_root(root)

    async def delete(self, namespace: str, task_id: str) -> Exit:
        task = self.get(namespace, task_id)
        exit = await task.delete()
        self._forget(task)
        if task.bundle:
            shutil.rmtree(task.bundle, ignore_errors=True)
        msg = ev.TaskDelete(container_id=task_id, pid=exit.pid, exit_status=exit.status)
        msg.exited_at.FromNanoseconds(exit.timestamp_ns)
        self.publish(namespace, "/tasks/delete", msg)
        return exit

    def _forget(self, task: NativeTask) -> None:
        if self._tasks.get((task.namespace, task.id)) is task:
            del self._tasks[(task.namespace, task.id)]
        self.join_cache.drop(task.cgroup)

    async def forget_process(self, key: str) -> None:
        """Tell the supervisor to drop a process record; gone already is fine."""
        try:
            await self.supervisor.forget(key)
        except SupervisorError as e:
            if e.errno != 2:  # ENOENT: it holds nothing under that key
                raise

    def use_freezer_anchor(self, wanted: bool) -> None:
        """Hold the v1 freezer anchor; when it is not wanted, remove one that an agent which
        crashed left behind."""
        anchor = FreezerAnchor(self.cgroups.hierarchy.v1["freezer"], self.cgroups.parent)
        if not wanted:
            anchor.release()
        elif anchor.hold():
            self.freezer_anchor = anchor

    def close(self) -> None:
        self.join_cache.close()
        if self.freezer_anchor is not None:
            self.freezer_anchor.release()
            self.freezer_anchor = None
        if not self._tasks:
            self.cgroups.remove_empty_parents()  # nothing of ours is left in the cgroup tree
        self.supervisor.close()

