"""The client: the generated stubs on one channel, the namespace header on every call, and
short helpers for the calls people make. Errors are grpc.aio.AioRpcError as they come."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
from google.protobuf import empty_pb2

from agent.api.containerd.services.containers.v1 import containers_pb2 as cpb
from agent.api.containerd.services.containers.v1 import containers_pb2_grpc as cgrpc
from agent.api.containerd.services.content.v1 import content_pb2_grpc
from agent.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from agent.api.containerd.services.images.v1 import images_pb2_grpc
from agent.api.containerd.services.introspection.v1 import introspection_pb2_grpc
from agent.api.containerd.services.leases.v1 import leases_pb2_grpc
from agent.api.containerd.services.namespaces.v1 import namespace_pb2_grpc
from agent.api.containerd.services.tasks.v1 import tasks_pb2 as tpb
from agent.api.containerd.services.tasks.v1 import tasks_pb2_grpc as tgrpc
from agent.api.containerd.services.version.v1 import version_pb2_grpc
from agent.api.runc import options_pb2

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
DEFAULT_RUNTIME = "io.containerd.runc.v2"
RUNC_OPTIONS_URL = "containerd.runc.v1.Options"
MAX_MESSAGE = 16 << 20


class Client:
    def __init__(self, address: str, namespace: str = "default"):
        target = address if address.startswith("unix:") else f"unix://{address}"
        self.channel = grpc.aio.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ])
        self.namespace = namespace
        self.tasks = tgrpc.TasksStub(self.channel)
        self.containers = cgrpc.ContainersStub(self.channel)
        self.events = events_pb2_grpc.EventsStub(self.channel)
        self.namespaces = namespace_pb2_grpc.NamespacesStub(self.channel)
        self.leases = leases_pb2_grpc.LeasesStub(self.channel)
        self.content = content_pb2_grpc.ContentStub(self.channel)
        self.images = images_pb2_grpc.ImagesStub(self.channel)
        self.version = version_pb2_grpc.VersionStub(self.channel)
        self.introspection = introspection_pb2_grpc.IntrospectionStub(self.channel)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    def md(self, namespace: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("containerd-namespace", namespace or self.namespace),)

    # -- containers --------------------------------------------------------------------------

    async def create_container(self, container_id: str, spec: dict[str, Any],
                               runtime: str = DEFAULT_RUNTIME,
                               labels: dict[str, str] | None = None,
                               runc_root: str = "") -> cpb.Container:
        """runc_root sets runc's state root in the runtime options (containerd + runc only;
        our runtime has no use for it), so several containerd instances stay apart."""
        c = cpb.Container(id=container_id, labels=labels or {})
        c.runtime.name = runtime
        c.runtime.options.type_url = RUNC_OPTIONS_URL
        if runc_root:
            c.runtime.options.value = options_pb2.Options(root=runc_root).SerializeToString()
        c.spec.type_url = SPEC_TYPE_URL
        c.spec.value = orjson.dumps(spec)
        resp = await self.containers.Create(cpb.CreateContainerRequest(container=c),
                                            metadata=self.md())
        return resp.container

    async def delete_container(self, container_id: str) -> None:
        await self.containers.Delete(cpb.DeleteContainerRequest(id=container_id),
                                     metadata=self.md())

    # -- tasks -------------------------------------------------------------------------------

    async def create_task(self, container_id: str, stdin: str = "", stdout: str = "",
                          stderr: str = "", terminal: bool = False) -> int:
        resp = await self.tasks.Create(tpb.CreateTaskRequest(
            container_id=container_id, stdin=stdin, stdout=stdout, stderr=stderr,
            terminal=terminal), metadata=self.md())
        return resp.pid

    async def start(self, container_id: str, exec_id: str = "") -> int:
        resp = await self.tasks.Start(tpb.StartRequest(container_id=container_id, exec_id=exec_id),
                                      metadata=self.md())
        return resp.pid

    async def wait(self, container_id: str, exec_id: str = "") -> tpb.WaitResponse:
        return await self.tasks.Wait(tpb.WaitRequest(container_id=container_id, exec_id=exec_id),
                                     metadata=self.md())

    async def kill(self, container_id: str, signal: int, exec_id: str = "",
                   all: bool = False) -> None:
        await self.tasks.Kill(tpb.KillRequest(container_id=container_id, exec_id=exec_id,
                                              signal=signal, all=all), metadata=self.md())

    async def get(self, container_id: str, exec_id: str = "") -> Any:
        resp = await self.tasks.Get(tpb.GetRequest(container_id=container_id, exec_id=exec_id),
                                    metadata=self.md())
        return resp.process

    async def list_tasks(self) -> list[Any]:
        return list((await self.tasks.List(tpb.ListTasksRequest(), metadata=self.md())).tasks)

    async def delete_task(self, container_id: str) -> tpb.DeleteResponse:
        return await self.tasks.Delete(tpb.DeleteTaskRequest(container_id=container_id),
                                       metadata=self.md())

    async def exec(self, container_id: str, exec_id: str, process: dict[str, Any],
                   stdin: str = "", stdout: str = "", stderr: str = "",
                   terminal: bool = False) -> None:
        req = tpb.ExecProcessRequest(container_id=container_id, exec_id=exec_id, stdin=stdin,
                                     stdout=stdout, stderr=stderr, terminal=terminal)
        req.spec.type_url = PROCESS_TYPE_URL
        req.spec.value = orjson.dumps(process)
        await self.tasks.Exec(req, metadata=self.md())

    async def delete_process(self, container_id: str, exec_id: str) -> tpb.DeleteResponse:
        return await self.tasks.DeleteProcess(
            tpb.DeleteProcessRequest(container_id=container_id, exec_id=exec_id),
            metadata=self.md())

    async def resize(self, container_id: str, width: int, height: int, exec_id: str = "") -> None:
        await self.tasks.ResizePty(tpb.ResizePtyRequest(
            container_id=container_id, exec_id=exec_id, width=width, height=height),
            metadata=self.md())

    async def close_stdin(self, container_id: str, exec_id: str = "") -> None:
        await self.tasks.CloseIO(tpb.CloseIORequest(container_id=container_id, exec_id=exec_id,
                                                    stdin=True), metadata=self.md())

    async def pause(self, container_id: str) -> None:
        await self.tasks.Pause(tpb.PauseTaskRequest(container_id=container_id), metadata=self.md())

    async def resume(self, container_id: str) -> None:
        await self.tasks.Resume(tpb.ResumeTaskRequest(container_id=container_id),
                                metadata=self.md())

    async def pids(self, container_id: str) -> list[Any]:
        resp = await self.tasks.ListPids(tpb.ListPidsRequest(container_id=container_id),
                                         metadata=self.md())
        return list(resp.processes)

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        req = tpb.UpdateTaskRequest(container_id=container_id)
        req.resources.type_url = RESOURCES_TYPE_URL
        req.resources.value = orjson.dumps(resources)
        await self.tasks.Update(req, metadata=self.md())

    async def metrics(self, filters: list[str]) -> list[Any]:
        resp = await self.tasks.Metrics(tpb.MetricsRequest(filters=filters), metadata=self.md())
        return list(resp.metrics)

    def subscribe(self, filters: list[str] | None = None):
        """A stream of event envelopes; iterate with `async for`, cancel to stop."""
        return self.events.Subscribe(events_pb2.SubscribeRequest(filters=filters or []),
                                     metadata=self.md())

    async def server_version(self) -> str:
        return (await self.version.Version(empty_pb2.Empty(), metadata=self.md())).version
