"""The namespaces service behaviour (`io.containerd.service.v1.namespaces-service`), with a
`/namespaces/*` event after each change.

As in containerd, Get of a namespace that does not exist yet answers with no labels rather
than NotFound: containerd's Go client reads the default namespace's labels when it connects,
before anything was ever written there."""

from __future__ import annotations

from agent import filters, identifiers, plugin
from agent.api.containerd.events import namespace_pb2 as events
from agent.api.containerd.services.namespaces.v1 import namespace_pb2 as api
from agent.events.exchange import Exchange
from agent.metadata.db import MetadataDB


class NamespacesLocal:
    def __init__(self, db: MetadataDB, exchange: Exchange):
        self.store = db.namespaces
        self.exchange = exchange

    def get(self, req: api.GetNamespaceRequest) -> api.GetNamespaceResponse:
        identifiers.validate(req.name, "namespace")
        labels = self.store.labels(req.name) or {}
        return api.GetNamespaceResponse(namespace=api.Namespace(name=req.name, labels=labels))

    def list(self, req: api.ListNamespacesRequest) -> api.ListNamespacesResponse:
        flt = filters.parse_all([req.filter] if req.filter else [])
        found = [
            api.Namespace(name=name, labels=labels)
            for name, labels in self.store.list()
            if not flt.alternatives or flt.match(filters.label_adaptor(labels, {"name": name}))
        ]
        return api.ListNamespacesResponse(namespaces=found)

    def create(self, caller: str | None, req: api.CreateNamespaceRequest
               ) -> api.CreateNamespaceResponse:
        name = req.namespace.name
        labels = self.store.create(name, req.namespace.labels)
        self.exchange.publish(caller or name, "/namespaces/create",
                              events.NamespaceCreate(name=name, labels=labels))
        return api.CreateNamespaceResponse(namespace=api.Namespace(name=name, labels=labels))

    def update(self, caller: str | None, req: api.UpdateNamespaceRequest
               ) -> api.UpdateNamespaceResponse:
        name = req.namespace.name
        labels = self.store.update(name, req.namespace.labels, list(req.update_mask.paths))
        self.exchange.publish(caller or name, "/namespaces/update",
                              events.NamespaceUpdate(name=name, labels=labels))
        return api.UpdateNamespaceResponse(namespace=api.Namespace(name=name, labels=labels))

    def delete(self, req: api.DeleteNamespaceRequest) -> None:
        self.store.delete(req.name)
        # containerd publishes the delete inside the deleted namespace.
        self.exchange.publish(req.name, "/namespaces/delete",
                              events.NamespaceDelete(name=req.name))


plugin.register(plugin.Registration(
    type=plugin.SERVICE,
    id="namespaces-service",
    requires=(plugin.METADATA, plugin.EVENT),
    init=lambda ic: NamespacesLocal(ic.get(plugin.METADATA), ic.get(plugin.EVENT)),
))
