"""The gRPC face of the containers service (`io.containerd.grpc.v1.containers`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.empty_pb2 import Empty

from agent import plugin
from agent.api.containerd.services.containers.v1 import containers_pb2 as api
from agent.api.containerd.services.containers.v1 import containers_pb2_grpc as api_grpc
from agent.server import context
from agent.services.containers.local import ContainersLocal


class ContainersService(api_grpc.ContainersServicer):
    def __init__(self, local: ContainersLocal):
        self.local = local

    def register(self, server: grpc.aio.Server) -> None:
        api_grpc.add_ContainersServicer_to_server(self, server)

    async def Get(self, request: api.GetContainerRequest, ctx: grpc.aio.ServicerContext
                  ) -> api.GetContainerResponse:
        return self.local.get(context.namespace(), request)

    async def List(self, request: api.ListContainersRequest, ctx: grpc.aio.ServicerContext
                   ) -> api.ListContainersResponse:
        return self.local.list(context.namespace(), request)

    async def ListStream(self, request: api.ListContainersRequest,
                         ctx: grpc.aio.ServicerContext) -> AsyncIterator[api.ListContainerMessage]:
        for message in self.local.list_stream(context.namespace(), request):
            yield message

    async def Create(self, request: api.CreateContainerRequest, ctx: grpc.aio.ServicerContext
                     ) -> api.CreateContainerResponse:
        return self.local.create(context.namespace(), request)

    async def Update(self, request: api.UpdateContainerRequest, ctx: grpc.aio.ServicerContext
                     ) -> api.UpdateContainerResponse:
        return self.local.update(context.namespace(), request)

    async def Delete(self, request: api.DeleteContainerRequest, ctx: grpc.aio.ServicerContext
                     ) -> Empty:
        self.local.delete(context.namespace(), request)
        return Empty()


plugin.register(plugin.Registration(
    type=plugin.GRPC,
    id="containers",
    requires=(plugin.SERVICE,),
    init=lambda ic: ContainersService(ic.get_by_id(plugin.SERVICE, "containers-service")),
))
