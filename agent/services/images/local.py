"""The images service behaviour (`io.containerd.service.v1.images-service`): image records
in the metadata store (no pulling or unpacking: `ctr task checkpoint` records its
checkpoint as an image), an `/images/*` event after each change, and Delete with `sync`
waiting for a garbage collection pass."""

from __future__ import annotations

import inspect
from typing import Any

from agent import plugin
from agent.api.containerd.events import image_pb2 as events
from agent.api.containerd.services.images.v1 import images_pb2 as api
from agent.errors import InvalidArgument
from agent.events.exchange import Exchange
from agent.metadata import images
from agent.metadata.db import MetadataDB


class ImagesLocal:
    def __init__(self, db: MetadataDB, exchange: Exchange, gc: Any = None):
        self.store = images.store_for(db)
        self.exchange = exchange
        self.gc = gc

    def get(self, namespace: str, req: api.GetImageRequest) -> api.GetImageResponse:
        return api.GetImageResponse(image=self.store.get(namespace, req.name))

    def list(self, namespace: str, req: api.ListImagesRequest) -> api.ListImagesResponse:
        return api.ListImagesResponse(images=self.store.list(namespace, req.filters))

    def create(self, namespace: str, req: api.CreateImageRequest) -> api.CreateImageResponse:
        if not req.image.name:
            raise InvalidArgument("Image.Name required")
        created = self.store.create(namespace, req.image)
        self.exchange.publish(namespace, "/images/create",
                              events.ImageCreate(name=created.name, labels=created.labels))
        return api.CreateImageResponse(image=created)

    def update(self, namespace: str, req: api.UpdateImageRequest) -> api.UpdateImageResponse:
        if not req.image.name:
            raise InvalidArgument("Image.Name required")
        updated = self.store.update(namespace, req.image, req.update_mask.paths)
        self.exchange.publish(namespace, "/images/update",
                              events.ImageUpdate(name=updated.name, labels=updated.labels))
        return api.UpdateImageResponse(image=updated)

    async def delete(self, namespace: str, req: api.DeleteImageRequest) -> None:
        self.store.delete(namespace, req.name)
        self.exchange.publish(namespace, "/images/delete", events.ImageDelete(name=req.name))
        if req.sync and self.gc is not None:
            result = self.gc.schedule_and_wait()
            if inspect.isawaitable(result):
                await result


def _init(ic: plugin.InitContext) -> ImagesLocal:
    # Optional: without a collector, images work and `sync` has nothing to wait for.
    loaded = [p.instance for p in ic.plugins.by_type(plugin.GC).values() if p.ok]
    return ImagesLocal(ic.get(plugin.METADATA), ic.get(plugin.EVENT),
                       loaded[0] if loaded else None)


plugin.register(plugin.Registration(
    type=plugin.SERVICE,
    id="images-service",
    requires=(plugin.METADATA, plugin.EVENT),
    optional=(plugin.GC,),
    init=_init,
))
