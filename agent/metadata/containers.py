"""The container store: one row per (namespace, id) holding the serialized `Container`
message (labels, image, runtime name and options, spec, snapshotter, snapshot key,
timestamps, extensions), so a Get is one indexed read and one parse.

Rules follow containerd's metadata store: ids are identifiers, a spec and a runtime name
are required, labels are bounded, the server sets created_at/updated_at, and Update honours
the field mask with the same paths (runtime and snapshotter are immutable)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent import filters, identifiers
from agent.api.containerd.services.containers.v1.containers_pb2 import Container
from agent.errors import AlreadyExists, InvalidArgument, NotFound
from agent.metadata import labels as labelrules

if TYPE_CHECKING:
    import sqlite3

    from agent.metadata.db import MetadataDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    namespace TEXT NOT NULL REFERENCES namespaces (name),
    id TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID
"""

# Fields a mask-less Update replaces (containerd's list; "snapshotkey" is its path name).
_FULL_UPDATE = ("labels", "spec", "extensions", "image", "snapshotkey")


class ContainerStore:
    def __init__(self, db: MetadataDB):
        self._db = db
        # (namespace, id) -> runtime name: every task call asks which runtime holds the
        # container's task, and the stored record (spec included) is large to read and parse.
        # Only this store writes the table (the agent holds the state lock), so its own
        # writes are all that invalidate it.
        self._runtime_names: dict[tuple[str, str], str] = {}
        db.create_tables(SCHEMA)
        db.register_namespace_check("containers", _has_containers)

    def get(self, namespace: str, container_id: str) -> Container:
        row = self._db.conn.execute(
            "SELECT record FROM containers WHERE namespace = ? AND id = ?",
            (namespace, container_id),
        ).fetchone()
        if row is None:
            raise NotFound(f'container "{container_id}" in namespace "{namespace}": not found')
        return Container.FromString(row[0])

    def runtime_name(self, namespace: str, container_id: str) -> str:
        """The container's runtime name; NotFound as get() when there is no container."""
        key = (namespace, container_id)
        try:
            return self._runtime_names[key]
        except KeyError:
            pass
        name = self.get(namespace, container_id).runtime.name
        if not self._db.in_transaction():  # never remember what a rollback could undo
            self._runtime_names[key] = name
        return name

    def list(self, namespace: str, filter_strings: Iterable[str] = ()) -> list[Container]:
        flt = filters.parse_all(filter_strings)
        rows = self._db.conn.execute(
            "SELECT record FROM containers WHERE namespace = ? ORDER BY id", (namespace,)
        )
        found = [Container.FromString(raw) for (raw,) in rows]
        if flt.alternatives:
            found = [c for c in found if flt.match(_adaptor(c))]
        return found

    def create(self, namespace: str, container: Container) -> Container:
        record = Container()
        record.CopyFrom(container)
        _drop_empty_labels(record)
        _validate(record, "create container failed validation")
        _stamp(record, created=True)
        with self._db.transaction() as conn:
            self._db.namespaces.ensure(namespace)
            cur = conn.execute(
                "INSERT INTO containers (namespace, id, record) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (namespace, record.id, record.SerializeToString()),
            )
            if cur.rowcount == 0:
                raise AlreadyExists(f'container "{record.id}": already exists')
        return record

    def update(self, namespace: str, container: Container, paths: Iterable[str] = ()
               ) -> Container:
        """Apply the fields named by `paths` (all mutable ones when empty) and return the
        stored record."""
        if not container.id:
            raise InvalidArgument("Container.ID required")
        paths = list(paths)
        self._runtime_names.pop((namespace, container.id), None)
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT record FROM containers WHERE namespace = ? AND id = ?",
                (namespace, container.id),
            ).fetchone()
            if row is None:
                raise self._missing("update", namespace, container.id)
            updated = Container.FromString(row[0])
            if not paths:
                # Immutable fields must match on a full replace, so that they can become
                # mutable later without changing what such a request means.
                if updated.snapshotter != container.snapshotter:
                    raise InvalidArgument(
                        "container.Snapshotter field is immutable: invalid argument")
                if updated.runtime.name != container.runtime.name:
                    raise InvalidArgument(
                        "container.Runtime.Name field is immutable: invalid argument")
                paths = list(_FULL_UPDATE)
            for path in paths:
                _apply(updated, container, path)
            _drop_empty_labels(updated)
            _validate(updated, "update failed validation")
            _stamp(updated, created=False)
            conn.execute(
                "UPDATE containers SET record = ? WHERE namespace = ? AND id = ?",
                (updated.SerializeToString(), namespace, container.id),
            )
        return updated

    def delete(self, namespace: str, container_id: str) -> None:
        self._runtime_names.pop((namespace, container_id), None)
        with self._db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM containers WHERE namespace = ? AND id = ?",
                (namespace, container_id),
            )
            if cur.rowcount == 0:
                raise self._missing("delete", namespace, container_id)

    def _missing(self, verb: str, namespace: str, container_id: str) -> NotFound:
        # containerd's two messages: one when the namespace holds nothing at all.
        if not self._db.namespaces.exists(namespace):
            return NotFound(
                f'cannot {verb} container "{container_id}" in namespace "{namespace}": not found'
            )
        if verb == "delete":
            return NotFound(f"container {container_id}: not found")
        return NotFound(f'container "{container_id}": not found')


def _has_containers(conn: sqlite3.Connection, namespace: str) -> bool:
    row = conn.execute("SELECT 1 FROM containers WHERE namespace = ? LIMIT 1", (namespace,))
    return row.fetchone() is not None


def _apply(updated: Container, given: Container, path: str) -> None:
    if path.startswith("labels."):
        key = path[len("labels."):]
        updated.labels[key] = given.labels.get(key, "")  # "" removes it
    elif path.startswith("extensions."):
        key = path[len("extensions."):]
        if key in given.extensions:
            updated.extensions[key].CopyFrom(given.extensions[key])
        elif key in updated.extensions:
            del updated.extensions[key]
    elif path == "labels":
        updated.labels.clear()
        updated.labels.update(given.labels)
    elif path == "spec":
        if given.HasField("spec"):
            updated.spec.CopyFrom(given.spec)
        else:
            updated.ClearField("spec")  # validation then refuses the update
    elif path == "extensions":
        updated.ClearField("extensions")
        for key, value in given.extensions.items():
            updated.extensions[key].CopyFrom(value)
    elif path == "image":
        updated.image = given.image
    elif path in ("snapshotkey", "snapshot_key"):
        updated.snapshot_key = given.snapshot_key
    else:
        raise InvalidArgument(f'cannot update "{path}" field on "{given.id}": invalid argument')


def _drop_empty_labels(c: Container) -> None:
    empty = [k for k, v in c.labels.items() if not v]
    for k in empty:
        del c.labels[k]


def _validate(c: Container, context: str) -> None:
    def fail(message: str) -> InvalidArgument:
        return InvalidArgument(f"{context}: {message}: invalid argument")

    if not identifiers.is_valid(c.id):
        try:
            identifiers.validate(c.id)
        except InvalidArgument as e:
            raise fail(f"container.ID: {e}") from None
    for key in c.extensions:
        if not key:
            raise fail("container.Extension keys must not be zero-length")
    try:
        labelrules.validate(c.labels, "containers.Labels")
    except InvalidArgument as e:
        raise InvalidArgument(f"{context}: {e}") from None
    if not c.runtime.name:
        raise fail("container.Runtime.Name must be set")
    if not c.HasField("spec"):
        raise fail("container.Spec must be set")
    if c.snapshot_key and not c.snapshotter:
        raise fail("container.Snapshotter must be set if container.SnapshotKey is set")


def _stamp(c: Container, created: bool) -> None:
    c.updated_at.FromNanoseconds(time.time_ns())
    if created:
        c.created_at.CopyFrom(c.updated_at)


def _adaptor(c: Container) -> filters.Adaptor:
    """containerd's container filter fields: id, image, runtime.name, labels.<key>."""

    def field(path: tuple[str, ...]) -> tuple[str, bool]:
        head = path[0]
        if head == "id":
            return c.id, bool(c.id)
        if head == "image":
            return c.image, bool(c.image)
        if head == "runtime":
            if len(path) > 1 and path[1] == "name":
                return c.runtime.name, bool(c.runtime.name)
            return "", False
        if head == "labels":
            key = ".".join(path[1:])
            if key in c.labels:
                return c.labels[key], True
        return "", False

    return field
