"""The gRPC face of the introspection service (`io.containerd.grpc.v1.introspection`)."""

from __future__ import annotations

import grpc
from google.protobuf.empty_pb2 import Empty

from agent import plugin
from agent.api.containerd.services.introspection.v1 import introspection_pb2 as api
from agent.api.containerd.services.introspection.v1 import introspection_pb2_grpc as api_grpc
from agent.services.introspection.local import IntrospectionLocal


class IntrospectionService(api_grpc.IntrospectionServicer):
    def __init__(self, local: IntrospectionLocal):
        self.local = local

    def register(self, server: grpc.aio.Server) -> None:
        api_grpc.add_IntrospectionServicer_to_server(self, server)

    async def Plugins(self, request: api.PluginsRequest, ctx: grpc.aio.ServicerContext
                      ) -> api.PluginsResponse:
        return self.local.plugins(request)

    async def Server(self, request: Empty, ctx: grpc.aio.ServicerContext
                     ) -> api.ServerResponse:
        return self.local.server()


plugin.register(plugin.Registration(
    type=plugin.GRPC,
    id="introspection",
    requires=(plugin.SERVICE,),
    init=lambda ic: IntrospectionService(
        ic.get_by_id(plugin.SERVICE, "introspection-service")),
))
