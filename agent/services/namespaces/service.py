"""The gRPC face of the namespaces service (`io.containerd.grpc.v1.namespaces`).

Namespaces calls need no `containerd-namespace` header; when one is sent it becomes the
namespace of the create and update events, as in containerd."""

from __future__ import annotations

import grpc
from google.protobuf.empty_pb2 import Empty

from agent import plugin
from agent.api.containerd.services.namespaces.v1 import namespace_pb2 as api
from agent.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as api_grpc
from agent.server import context
from agent.services.namespaces.local import NamespacesLocal


class NamespacesService(api_grpc.NamespacesServicer):
    def __init__(self, local: NamespacesLocal):
        self.local = local

    def register(self, server: grpc.aio.Server) -> None:
        api_grpc.add_NamespacesServicer_to_server(self, server)

    async def Get(self, request: api.GetNamespaceRequest, ctx: grpc.aio.ServicerContext
                  ) -> api.GetNamespaceResponse:
        return self.local.get(request)

    async def List(self, request: api.ListNamespacesRequest, ctx: grpc.aio.ServicerContext
                   ) -> api.ListNamespacesResponse:
        return self.local.list(request)

    async def Create(self, request: api.CreateNamespaceRequest, ctx: grpc.aio.ServicerContext
                     ) -> api.CreateNamespaceResponse:
        return self.local.create(context.namespace_or_none(), request)

    async def Update(self, request: api.UpdateNamespaceRequest, ctx: grpc.aio.ServicerContext
                     ) -> api.UpdateNamespaceResponse:
        return self.local.update(context.namespace_or_none(), request)

    async def Delete(self, request: api.DeleteNamespaceRequest, ctx: grpc.aio.ServicerContext
                     ) -> Empty:
        self.local.delete(request)
        return Empty()


plugin.register(plugin.Registration(
    type=plugin.GRPC,
    id="namespaces",
    requires=(plugin.SERVICE,),
    init=lambda ic: NamespacesService(ic.get_by_id(plugin.SERVICE, "namespaces-service")),
))
