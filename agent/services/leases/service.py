"""The gRPC face of the leases service (`io.containerd.grpc.v1.leases`)."""

from __future__ import annotations

import grpc
from google.protobuf.empty_pb2 import Empty

from agent import plugin
from agent.api.containerd.services.leases.v1 import leases_pb2 as api
from agent.api.containerd.services.leases.v1 import leases_pb2_grpc as api_grpc
from agent.server import context
from agent.services.leases.local import LeasesLocal


class LeasesService(api_grpc.LeasesServicer):
    def __init__(self, local: LeasesLocal):
        self.local = local

    def register(self, server: grpc.aio.Server) -> None:
        api_grpc.add_LeasesServicer_to_server(self, server)

    async def Create(self, request: api.CreateRequest, ctx: grpc.aio.ServicerContext
                     ) -> api.CreateResponse:
        return self.local.create(context.namespace(), request)

    async def Delete(self, request: api.DeleteRequest, ctx: grpc.aio.ServicerContext) -> Empty:
        await self.local.delete(context.namespace(), request)
        return Empty()

    async def List(self, request: api.ListRequest, ctx: grpc.aio.ServicerContext
                   ) -> api.ListResponse:
        return self.local.list(context.namespace(), request)

    async def AddResource(self, request: api.AddResourceRequest, ctx: grpc.aio.ServicerContext
                          ) -> Empty:
        self.local.add_resource(context.namespace(), request)
        return Empty()

    async def DeleteResource(self, request: api.DeleteResourceRequest,
                             ctx: grpc.aio.ServicerContext) -> Empty:
        self.local.delete_resource(context.namespace(), request)
        return Empty()

    async def ListResources(self, request: api.ListResourcesRequest,
                            ctx: grpc.aio.ServicerContext) -> api.ListResourcesResponse:
        return self.local.list_resources(context.namespace(), request)


plugin.register(plugin.Registration(
    type=plugin.GRPC,
    id="leases",
    requires=(plugin.SERVICE,),
    init=lambda ic: LeasesService(ic.get_by_id(plugin.SERVICE, "leases-service")),
))
