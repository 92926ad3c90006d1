"""The gRPC face of the images service (`io.containerd.grpc.v1.images`)."""

from __future__ import annotations

import grpc
from google.protobuf.empty_pb2 import Empty

from agent import plugin
from agent.api.containerd.services.images.v1 import images_pb2 as api
from agent.api.containerd.services.images.v1 import images_pb2_grpc as api_grpc
from agent.server import context
from agent.services.images.local import ImagesLocal


class ImagesService(api_grpc.ImagesServicer):
    def __init__(self, local: ImagesLocal):
        self.local = local

    def register(self, server: grpc.aio.Server) -> None:
        api_grpc.add_ImagesServicer_to_server(self, server)

    async def Get(self, request: api.GetImageRequest, ctx: grpc.aio.ServicerContext
                  ) -> api.GetImageResponse:
        return self.local.get(context.namespace(), request)

    async def List(self, request: api.ListImagesRequest, ctx: grpc.aio.ServicerContext
                   ) -> api.ListImagesResponse:
        return self.local.list(context.namespace(), request)

    async def Create(self, request: api.CreateImageRequest, ctx: grpc.aio.ServicerContext
                     ) -> api.CreateImageResponse:
        return self.local.create(context.namespace(), request)

    async def Update(self, request: api.UpdateImageRequest, ctx: grpc.aio.ServicerContext
                     ) -> api.UpdateImageResponse:
        return self.local.update(context.namespace(), request)

    async def Delete(self, request: api.DeleteImageRequest, ctx: grpc.aio.ServicerContext
                     ) -> Empty:
        await self.local.delete(context.namespace(), request)
        return Empty()


plugin.register(plugin.Registration(
    type=plugin.GRPC,
    id="images",
    requires=(plugin.SERVICE,),
    init=lambda ic: ImagesService(ic.get_by_id(plugin.SERVICE, "images-service")),
))
