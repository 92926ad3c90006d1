"""The gRPC face of the tasks service: one line per method, handing the request to the
`tasks-service` plugin (containerd's `tasks` gRPC plugin)."""

from __future__ import annotations

from google.protobuf import empty_pb2

from agent import plugin
from agent.api.containerd.services.tasks.v1 import tasks_pb2_grpc
from agent.server.context import namespace
from agent.services.tasks.local import TasksLocal

EMPTY = empty_pb2.Empty()


class TasksService(tasks_pb2_grpc.TasksServicer):
    def __init__(self, local: TasksLocal):
        self.local = local

    def register(self, server) -> None:
        tasks_pb2_grpc.add_TasksServicer_to_server(self, server)

    async def Create(self, request, context):
        return await self.local.create(namespace(), request)

    async def Start(self, request, context):
        return await self.local.start(namespace(), request)

    async def Delete(self, request, context):
        return await self.local.delete(namespace(), request)

    async def DeleteProcess(self, request, context):
        return await self.local.delete_process(namespace(), request)

    async def Get(self, request, context):
        return await self.local.get(namespace(), request)

    async def List(self, request, context):
        return await self.local.list(namespace(), request)

    async def Kill(self, request, context):
        await self.local.kill(namespace(), request)
        return EMPTY

    async def Exec(self, request, context):
        await self.local.exec(namespace(), request)
        return EMPTY

    async def ResizePty(self, request, context):
        await self.local.resize_pty(namespace(), request)
        return EMPTY

    async def CloseIO(self, request, context):
        await self.local.close_io(namespace(), request)
        return EMPTY

    async def Pause(self, request, context):
        await self.local.pause(namespace(), request)
        return EMPTY

    async def Resume(self, request, context):
        await self.local.resume(namespace(), request)
        return EMPTY

    async def ListPids(self, request, context):
        return await self.local.list_pids(namespace(), request)

    async def Checkpoint(self, request, context):
        return await self.local.checkpoint(namespace(), request)

    async def Update(self, request, context):
        await self.local.update(namespace(), request)
        return EMPTY

    async def Metrics(self, request, context):
        return await self.local.metrics(namespace(), request)

    async def Wait(self, request, context):
        return await self.local.wait(namespace(), request)


plugin.register(plugin.Registration(
    type=plugin.GRPC,
    id="tasks",
    init=lambda ic: TasksService(ic.get_by_id(plugin.SERVICE, "tasks-service")),
    requires=(plugin.SERVICE,),
))
