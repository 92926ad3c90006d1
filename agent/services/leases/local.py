"""The leases service behaviour (`io.containerd.service.v1.leases-service`).

A lease's `containerd.io/gc.expire` label is stored as given; acting on it is the garbage
collector's job. `Delete` with `sync` waits for a collection when a GC plugin is loaded and
offers `schedule_and_wait()`; without one there is nothing to wait for."""

from __future__ import annotations

import inspect
from typing import Any

from agent import plugin
from agent.api.containerd.services.leases.v1 import leases_pb2 as api
from agent.metadata.db import MetadataDB


class LeasesLocal:
    def __init__(self, db: MetadataDB, gc: Any = None):
        self.store = db.leases
        self.gc = gc

    def create(self, namespace: str, req: api.CreateRequest) -> api.CreateResponse:
        return api.CreateResponse(lease=self.store.create(namespace, req.id, req.labels))

    async def delete(self, namespace: str, req: api.DeleteRequest) -> None:
        self.store.delete(namespace, req.id)
        if req.sync and self.gc is not None:
            wait = getattr(self.gc, "schedule_and_wait", None)
            if wait is not None:
                result = wait()
                if inspect.isawaitable(result):
                    await result

    def list(self, namespace: str, req: api.ListRequest) -> api.ListResponse:
        return api.ListResponse(leases=self.store.list(namespace, req.filters))

    def add_resource(self, namespace: str, req: api.AddResourceRequest) -> None:
        self.store.add_resource(namespace, req.id, req.resource.type, req.resource.id)

    def delete_resource(self, namespace: str, req: api.DeleteResourceRequest) -> None:
        self.store.delete_resource(namespace, req.id, req.resource.type, req.resource.id)

    def list_resources(self, namespace: str, req: api.ListResourcesRequest
                       ) -> api.ListResourcesResponse:
        return api.ListResourcesResponse(resources=self.store.list_resources(namespace, req.id))


def _init(ic: plugin.InitContext) -> LeasesLocal:
    # Optional: a GC plugin that is absent or failed to load leaves leases working.
    loaded = [p.instance for p in ic.plugins.by_type(plugin.GC).values() if p.ok]
    return LeasesLocal(ic.get(plugin.METADATA), loaded[0] if loaded else None)


plugin.register(plugin.Registration(
    type=plugin.SERVICE,
    id="leases-service",
    requires=(plugin.METADATA,),
    optional=(plugin.GC,),
    init=_init,
))
