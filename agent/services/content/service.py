"""The gRPC face of the content service (`io.containerd.grpc.v1.content`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.empty_pb2 import Empty

from agent import plugin
from agent.api.containerd.services.content.v1 import content_pb2 as api
from agent.api.containerd.services.content.v1 import content_pb2_grpc as api_grpc
from agent.server import context
from agent.services.content.local import ContentLocal


class ContentService(api_grpc.ContentServicer):
    def __init__(self, local: ContentLocal):
        self.local = local

    def register(self, server: grpc.aio.Server) -> None:
        api_grpc.add_ContentServicer_to_server(self, server)

    async def Info(self, request: api.InfoRequest, ctx: grpc.aio.ServicerContext
                   ) -> api.InfoResponse:
        return self.local.info(context.namespace(), request)

    async def Update(self, request: api.UpdateRequest, ctx: grpc.aio.ServicerContext
                     ) -> api.UpdateResponse:
        return self.local.update(context.namespace(), request)

    async def List(self, request: api.ListContentRequest, ctx: grpc.aio.ServicerContext
                   ) -> AsyncIterator[api.ListContentResponse]:
        for message in self.local.list(context.namespace(), request):
            yield message

    async def Delete(self, request: api.DeleteContentRequest, ctx: grpc.aio.ServicerContext
                     ) -> Empty:
        self.local.delete(context.namespace(), request, context.lease())
        return Empty()

    async def Read(self, request: api.ReadContentRequest, ctx: grpc.aio.ServicerContext
                   ) -> AsyncIterator[api.ReadContentResponse]:
        async for message in self.local.read(context.namespace(), request):
            yield message

    async def Status(self, request: api.StatusRequest, ctx: grpc.aio.ServicerContext
                     ) -> api.StatusResponse:
        return self.local.status(context.namespace(), request)

    async def ListStatuses(self, request: api.ListStatusesRequest,
                           ctx: grpc.aio.ServicerContext) -> api.ListStatusesResponse:
        return self.local.list_statuses(context.namespace(), request)

    async def Write(self, request_iterator: AsyncIterator[api.WriteContentRequest],
                    ctx: grpc.aio.ServicerContext) -> AsyncIterator[api.WriteContentResponse]:
        async for reply in self.local.write(context.namespace(), context.lease(),
                                            request_iterator):
            yield reply

    async def Abort(self, request: api.AbortRequest, ctx: grpc.aio.ServicerContext) -> Empty:
        self.local.abort(context.namespace(), request)
        return Empty()


plugin.register(plugin.Registration(
    type=plugin.GRPC,
    id="content",
    requires=(plugin.SERVICE,),
    init=lambda ic: ContentService(ic.get_by_id(plugin.SERVICE, "content-service")),
))
