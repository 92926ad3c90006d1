"""The content service behaviour (`io.containerd.service.v1.content-service`).

Write follows containerd's server: the first request names the ref (and may give the total
and expected digest) and opens the ingest; every request then gets exactly one reply.
STAT reports offset, total, running digest and times. WRITE appends at the given offset
(0 starts over, as in containerd; any other offset but the current one is refused) and
answers the new offset and running digest. COMMIT may carry a last piece of data, checks
total and expected digest, stores its labels, answers digest and offset, and ends the
stream. An expected digest the namespace already holds ends the write with AlreadyExists,
which containerd's clients treat as success."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from agent import plugin
from agent.api.containerd.events import content_pb2 as events
from agent.api.containerd.services.content.v1 import content_pb2 as api
from agent.content.ingest import IngestWriter
from agent.content.store import ContentStore, validate_digest
from agent.errors import AlreadyExists, InvalidArgument
from agent.events.exchange import Exchange

LIST_BATCH = 100  # infos per List message, as containerd sends them

STAT, WRITE, COMMIT = api.STAT, api.WRITE, api.COMMIT


class ContentLocal:
    def __init__(self, store: ContentStore, exchange: Exchange):
        self.store = store
        self.exchange = exchange

    def info(self, namespace: str, req: api.InfoRequest) -> api.InfoResponse:
        return api.InfoResponse(info=self.store.info(namespace, req.digest))

    def update(self, namespace: str, req: api.UpdateRequest) -> api.UpdateResponse:
        return api.UpdateResponse(
            info=self.store.update(namespace, req.info, req.update_mask.paths))

    def list(self, namespace: str, req: api.ListContentRequest
             ) -> Iterator[api.ListContentResponse]:
        found = self.store.list(namespace, req.filters)
        for start in range(0, len(found), LIST_BATCH):
            yield api.ListContentResponse(info=found[start:start + LIST_BATCH])

    def delete(self, namespace: str, req: api.DeleteContentRequest, lease: str | None) -> None:
        self.store.delete(namespace, req.digest, lease)
        self.exchange.publish(namespace, "/content/delete",
                              events.ContentDelete(digest=req.digest))

    async def read(self, namespace: str, req: api.ReadContentRequest
                   ) -> AsyncIterator[api.ReadContentResponse]:
        async for offset, data in self.store.read(namespace, req.digest, req.offset, req.size):
            yield api.ReadContentResponse(offset=offset, data=data)

    def status(self, namespace: str, req: api.StatusRequest) -> api.StatusResponse:
        return api.StatusResponse(status=self.store.status(namespace, req.ref))

    def list_statuses(self, namespace: str, req: api.ListStatusesRequest
                      ) -> api.ListStatusesResponse:
        return api.ListStatusesResponse(statuses=self.store.list_statuses(namespace, req.filters))

    def abort(self, namespace: str, req: api.AbortRequest) -> None:
        self.store.abort(namespace, req.ref)

    async def write(self, namespace: str, lease: str | None,
                    requests: AsyncIterator[api.WriteContentRequest]
                    ) -> AsyncIterator[api.WriteContentResponse]:
        req = await anext(requests, None)
        if req is None:
            return
        if not req.ref:
            raise InvalidArgument("first message must have a reference")
        ref, total, expected = req.ref, req.total, req.expected
        w = await self.store.writer(namespace, ref, total, expected, lease)
        try:
            while True:
                if req.expected:
                    validate_digest(req.expected)
                    expected = req.expected
                    if self.store.records.exists(namespace, expected):
                        w.close()
                        self.store.abort(namespace, ref)
                        raise AlreadyExists(f"blob with expected digest {expected} exists")
                if req.total < 0:
                    raise InvalidArgument(f"total {req.total} is negative: invalid argument")
                if req.total > 0:
                    total = req.total
                reply = await self._step(w, req, total, expected, lease)
                yield reply
                if req.action == COMMIT:
                    return
                req = await anext(requests, None)
                if req is None:
                    return
        finally:
            w.close()

    async def _step(self, w: IngestWriter, req: api.WriteContentRequest, total: int,
                    expected: str, lease: str | None) -> api.WriteContentResponse:
        reply = api.WriteContentResponse(action=req.action, offset=w.offset, total=total)
        if req.action == STAT:
            status = self.store.status(w.ingest.namespace, w.ingest.ref)
            reply.digest = w.digest
            reply.total = total or status.total
            reply.started_at.CopyFrom(status.started_at)
            reply.updated_at.CopyFrom(status.updated_at)
            return reply
        if req.action not in (WRITE, COMMIT):
            raise InvalidArgument(f"unknown write action {req.action}: invalid argument")
        if req.offset < 0:
            raise InvalidArgument(f"write offset {req.offset} is negative: invalid argument")
        if req.offset > 0 and req.offset != w.offset:
            raise InvalidArgument(
                f"write @{req.offset} must occur at current offset {w.offset}: invalid argument"
            )
        # Offset 0 restarts the ingest (containerd's truncate); a COMMIT without data and
        # offset is taken to mean "commit what is there", never "throw it away".
        if req.offset == 0 and w.offset > 0 and (req.action == WRITE or req.data):
            await w.truncate()
        if req.data:
            await w.write(req.data)
        reply.offset = w.offset
        if req.action == COMMIT:
            reply.digest = await self.store.commit(w, total, expected, req.labels, lease)
        else:
            reply.digest = w.digest
        return reply


plugin.register(plugin.Registration(
    type=plugin.SERVICE,
    id="content-service",
    requires=(plugin.CONTENT, plugin.EVENT),
    init=lambda ic: ContentLocal(ic.get(plugin.CONTENT), ic.get(plugin.EVENT)),
))
