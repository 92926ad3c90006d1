"""The containers service behaviour (`io.containerd.service.v1.containers-service`):
container records in the metadata store, and a `/containers/*` event after each change."""

from __future__ import annotations

from collections.abc import Iterable

from agent import plugin
from agent.api.containerd.events import container_pb2 as events
from agent.api.containerd.services.containers.v1 import containers_pb2 as api
from agent.events.exchange import Exchange
from agent.metadata.db import MetadataDB


class ContainersLocal:
    def __init__(self, db: MetadataDB, exchange: Exchange):
        self.store = db.containers
        self.exchange = exchange

    def get(self, namespace: str, req: api.GetContainerRequest) -> api.GetContainerResponse:
        return api.GetContainerResponse(container=self.store.get(namespace, req.id))

    def list(self, namespace: str, req: api.ListContainersRequest
             ) -> api.ListContainersResponse:
        return api.ListContainersResponse(containers=self.store.list(namespace, req.filters))

    def list_stream(self, namespace: str, req: api.ListContainersRequest
                    ) -> Iterable[api.ListContainerMessage]:
        # The whole list is read before the first message, like containerd's view.
        found = self.store.list(namespace, req.filters)
        return (api.ListContainerMessage(container=c) for c in found)

    def create(self, namespace: str, req: api.CreateContainerRequest
               ) -> api.CreateContainerResponse:
        created = self.store.create(namespace, req.container)
        event = events.ContainerCreate(id=created.id, image=created.image)
        event.runtime.name = created.runtime.name
        if created.runtime.HasField("options"):
            event.runtime.options.CopyFrom(created.runtime.options)
        self.exchange.publish(namespace, "/containers/create", event)
        return api.CreateContainerResponse(container=created)

    def update(self, namespace: str, req: api.UpdateContainerRequest
               ) -> api.UpdateContainerResponse:
        updated = self.store.update(namespace, req.container, req.update_mask.paths)
        self.exchange.publish(namespace, "/containers/update", events.ContainerUpdate(
            id=updated.id, image=updated.image, labels=updated.labels,
            snapshot_key=updated.snapshot_key,
        ))
        return api.UpdateContainerResponse(container=updated)

    def delete(self, namespace: str, req: api.DeleteContainerRequest) -> None:
        self.store.delete(namespace, req.id)
        self.exchange.publish(namespace, "/containers/delete", events.ContainerDelete(id=req.id))


plugin.register(plugin.Registration(
    type=plugin.SERVICE,
    id="containers-service",
    requires=(plugin.METADATA, plugin.EVENT),
    init=lambda ic: ContainersLocal(ic.get(plugin.METADATA), ic.get(plugin.EVENT)),
))
