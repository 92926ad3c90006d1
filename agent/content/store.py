"""The content store (the `io.containerd.content.v1.content` plugin's instance).

On disk under the plugin's root: `blobs/sha256/<hex>` (written once, renamed into place
from an ingest) and `ingest/` (writes in progress, resumable by ref, also after a restart).
Per namespace, through the metadata database: which blobs a namespace sees, with their
labels and times (`agent.content.records`). A blob leaves the disk only when no namespace
sees it any more and no ingest stands for it.

As containerd does, content written or committed while the request carries a lease is
attached to that lease (`ingests/<ref>` while writing, `content/<digest>` once committed),
and an ingest that no lease holds expires after INGEST_EXPIRY.

All metadata work and renames run on the event loop (they are short and keep the
"row and file appear together" step atomic with respect to the collector); hashing,
syncing and reading big chunks run in a thread pool."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterable, Mapping

from agent import filters
from agent.api.containerd.services.content.v1.content_pb2 import Info, Status
from agent.content.blobs import BlobStore
from agent.content.ingest import Ingest, IngestStore, IngestWriter, save_meta, validate_ref
from agent.content.records import ContentRecords
from agent.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from agent.metadata import labels as labelrules
from agent.metadata.db import MetadataDB
from agent.metadata.leases import parse_digest

INGEST_EXPIRY_NS = 24 * 3600 * 1_000_000_000  # containerd's fixed expiry of unleased ingests

_WHAT = "info.Labels"


def validate_digest(value: str) -> str:
    """go-digest's Validate: `<algorithm>:<hex>` of a known algorithm and length."""
    return parse_digest(value, f'"{value}" failed validation')


class ContentStore:
    def __init__(self, root: str, db: MetadataDB):
        self.db = db
        self.blobs = BlobStore(root)
        self.ingests = IngestStore(root)
        self.records = ContentRecords(db)
        db.register_namespace_check("content", self._namespace_has_content)

    # Committed content, as one namespace sees it.

    def info(self, namespace: str, digest: str) -> Info:
        validate_digest(digest)
        info = self.records.get(namespace, digest)
        if info is None:
            raise NotFound(f"content digest {digest}: not found")
        return info

    def list(self, namespace: str, filter_strings: Iterable[str] = ()) -> list[Info]:
        return self.records.list(namespace, filter_strings)

    def update(self, namespace: str, info: Info, paths: Iterable[str] = ()) -> Info:
        """Labels are the only mutable field: no paths or `labels` replace them all,
        `labels.<key>` sets one (an empty value removes it)."""
        digest = validate_digest(info.digest)
        paths = list(paths)
        for path in paths:
            if path != "labels" and not path.startswith("labels."):
                raise InvalidArgument(
                    f'cannot update "{path}" field on content info "{digest}": invalid argument'
                )
        with self.db.transaction():
            current = self.records.get(namespace, digest)
            if current is None:
                raise NotFound(f"content digest {digest}: not found")
            labels = dict(current.labels)
            if not paths or "labels" in paths:
                labels = dict(info.labels)
            for path in paths:
                if path.startswith("labels."):
                    key = path[len("labels."):]
                    labels[key] = info.labels.get(key, "")
            labelrules.validate(labels, _WHAT)
            self.records.set_labels(namespace, digest, labels, time.time_ns())
            return self.records.get(namespace, digest)  # type: ignore[return-value]

    def delete(self, namespace: str, digest: str, lease: str | None = None) -> None:
        """Remove the namespace's view of a blob (and it from the request's lease); the
        file goes too when no other namespace sees it."""
        validate_digest(digest)
        with self.db.transaction():
            if not self.records.delete(namespace, digest):
                raise NotFound(f"content digest {digest}: not found")
            if lease:
                self._drop_from_lease(namespace, lease, "content", digest)
        self.release_blob(digest)

    async def read(self, namespace: str, digest: str, offset: int = 0, size: int = 0
                   ) -> AsyncIterator[tuple[int, bytes]]:
        """Chunks of [offset, offset+size); size 0 (or past the end) reads to the end."""
        info = self.info(namespace, digest)
        if offset < 0:
            raise InvalidArgument(f"read offset {offset} is negative: invalid argument")
        if size < 0:
            raise InvalidArgument(f"read size {size} is negative: invalid argument")
        if offset > info.size:
            raise InvalidArgument(
                f"read past object length {info.size} bytes (offset {offset}): invalid argument"
            )
        if size == 0 or offset + size > info.size:
            size = info.size - offset
        async for chunk in self.blobs.read(digest, offset, size):
            yield chunk

    # Writes in progress.

    def status(self, namespace: str, ref: str) -> Status:
        ingest = self.ingests.get(namespace, validate_ref(ref))
        if ingest is None:
            raise NotFound(f'could not get status for ref "{ref}": reference {ref}: not found')
        return _status(ingest)

    def list_statuses(self, namespace: str, filter_strings: Iterable[str] = ()) -> list[Status]:
        flt = filters.parse_all(filter_strings)
        found = [_status(i) for i in self.ingests.list(namespace)]
        if flt.alternatives:
            found = [s for s in found if flt.match(filters.label_adaptor({}, {"ref": s.ref}))]
        return found

    def abort(self, namespace: str, ref: str) -> None:
        """Drop an ingest and its data; a writer still holding it fails on its next step."""
        ingest = self.ingests.get(namespace, validate_ref(ref))
        if ingest is None:
            raise NotFound(f"reference {ref}: not found")
        self.ingests.remove(ingest)
        if ingest.shared:
            self.release_blob(ingest.expected)

    async def writer(self, namespace: str, ref: str, total: int = 0, expected: str = "",
                     lease: str | None = None) -> IngestWriter:
        """Open (or resume) the ingest `ref` for writing; Unavailable while another writer
        holds it, AlreadyExists when `expected` is already committed in this namespace."""
        validate_ref(ref)
        if total < 0:
            raise InvalidArgument(f"total {total} is negative: invalid argument")
        if expected:
            validate_digest(expected)
            if self.records.exists(namespace, expected):
                if lease:  # as containerd: the client's lease now protects what it wanted
                    self.db.leases.add_resource(namespace, lease, "content", expected)
                raise AlreadyExists(f"content {expected}: already exists")
        ingest = self.ingests.get(namespace, ref)
        if ingest is not None:
            self.ingests.lock(ingest)
        try:
            with self.db.transaction():
                self.db.namespaces.ensure(namespace)
                if lease:
                    self.db.leases.add_resource(namespace, lease, "ingests", ref)
            if ingest is None:
                ingest = self._create_ingest(namespace, ref, total, expected, lease)
                self.ingests.lock(ingest)
            elif expected and expected != ingest.expected and not ingest.shared:
                ingest.expected = expected
                save_meta(ingest)
            w = await IngestWriter.open(ingest, self.blobs.path(ingest.expected)
                                        if ingest.shared else "")
        except BaseException:
            if ingest is not None:
                ingest.locked_since = None
            raise
        if total > 0 and total != ingest.total:
            try:
                if ingest.total > 0:
                    await w.restart(total)  # containerd starts over on a changed total
                else:
                    ingest.total = total
                    save_meta(ingest)
            except BaseException:
                w.close()
                raise
        return w

    def _create_ingest(self, namespace: str, ref: str, total: int, expected: str,
                       lease: str | None) -> Ingest:
        shared_size = None
        if expected:
            on_disk = self.blobs.size(expected)
            if on_disk is not None and total in (0, on_disk):
                shared_size = on_disk  # another namespace has it: no bytes need to travel
        expires = 0 if lease else time.time_ns() + INGEST_EXPIRY_NS
        return self.ingests.create(namespace, ref, total=total, expected=expected,
                                   expires_ns=expires, shared_size=shared_size)

    async def commit(self, w: IngestWriter, size: int = 0, expected: str = "",
                     labels: Mapping[str, str] | None = None, lease: str | None = None) -> str:
        """Verify size and digest, move the data into the blob store and make it visible in
        the namespace. A wrong size or digest is FailedPrecondition and changes nothing
        (the ingest stays, to be resumed or aborted). Content the namespace already has is
        AlreadyExists, after the ingest is dropped and the lease updated (as containerd)."""
        ingest = w.ingest
        labels = dict(labels or {})
        labelrules.validate(labels, "commit labels")
        if expected:
            validate_digest(expected)
        offset = w.offset
        if size > 0 and size != offset:
            raise FailedPrecondition(
                f'"{ingest.ref}" failed size validation: {offset} != {size}: failed precondition'
            )
        digest = w.digest
        if expected and expected != digest:
            raise FailedPrecondition(
                f"unexpected commit digest {digest}, expected {expected}: failed precondition"
            )
        await w.sync()
        namespace, now = ingest.namespace, time.time_ns()
        with self.db.transaction():
            self.db.namespaces.ensure(namespace)
            added = self.records.insert(namespace, digest, offset, labels, now)
            if lease:
                self._drop_from_lease(namespace, lease, "ingests", ingest.ref)
                self.db.leases.add_resource(namespace, lease, "content", digest)
            installed = not ingest.shared and self.blobs.install(digest, ingest.data_path)
        w.close()
        self.ingests.remove(ingest)
        if installed:
            await self.blobs.sync_dir(digest)
        if not added:
            raise AlreadyExists(f"content {digest}: already exists")
        return digest

    # For the collector and for deletes.

    def release_blob(self, digest: str) -> bool:
        """Remove a blob from disk when no namespace sees it and no ingest stands for it."""
        if self.records.referenced(digest):
            return False
        if any(i.shared and i.expected == digest for i in self.ingests.all()):
            return False
        return self.blobs.remove(digest)

    def sweep_disk(self) -> tuple[int, int]:
        """Remove blobs no namespace sees and ingest directories nothing knows; returns how
        many of each went."""
        keep = self.records.all_digests()
        keep |= {i.expected for i in self.ingests.all() if i.shared}
        blobs = 0
        for digest in self.blobs.digests():
            if digest not in keep and self.blobs.remove(digest):
                blobs += 1
        orphans = self.ingests.orphans()
        for path in orphans:
            shutil.rmtree(path, ignore_errors=True)
        return blobs, len(orphans)

    def _drop_from_lease(self, namespace: str, lease: str, rtype: str, rid: str) -> None:
        try:
            self.db.leases.delete_resource(namespace, lease, rtype, rid)
        except NotFound:
            pass  # containerd ignores a lease that is gone here

    def _namespace_has_content(self, conn: object, namespace: str) -> bool:
        return self.records.has_any(namespace) or bool(self.ingests.list(namespace))


def _status(ingest: Ingest) -> Status:
    st = Status(ref=ingest.ref, offset=ingest.current_offset(), total=ingest.total,
                expected=ingest.expected)
    st.started_at.FromNanoseconds(ingest.started_ns)
    st.updated_at.FromNanoseconds(ingest.updated_ns())
    return st
