"""The image store: image records per namespace (name, labels, target descriptor with its
annotations, times), as containerd's metadata keeps them; images are what keep content
from being collected.

Rules follow containerd's: a target needs a valid digest, a positive size and a media
type; labels are bounded; the server sets the times; Update honours the field mask
(`labels`, `labels.<key>`, `target`, `annotations`, `annotations.<key>`). Names are
stricter than containerd's "not empty": at most MAX_NAME_LENGTH characters with no
whitespace or control characters, which every reference (`docker.io/library/x:tag`,
`containerd.io/checkpoint/<id>:<time>`, `sha256:<hex>`) satisfies."""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent import filters
from agent.api.containerd.services.images.v1.images_pb2 import Image
from agent.errors import AlreadyExists, InvalidArgument, NotFound
from agent.metadata import labels as labelrules
from agent.metadata.leases import parse_digest

if TYPE_CHECKING:
    import sqlite3

    from agent.metadata.db import MetadataDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    namespace TEXT NOT NULL REFERENCES namespaces (name),
    name TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID
"""

MAX_NAME_LENGTH = 4096
_NAME = re.compile(r"[^\s\x00-\x1f\x7f]+\Z")

_STORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def store_for(db: MetadataDB) -> ImageStore:
    """The one image store of a database (the images service and the collector share it)."""
    store = _STORES.get(db)
    if store is None:
        store = _STORES[db] = ImageStore(db)
    return store


class ImageStore:
    def __init__(self, db: MetadataDB):
        self._db = db
        db.create_tables(SCHEMA)
        db.register_namespace_check("images", _has_images)

    def get(self, namespace: str, name: str) -> Image:
        row = self._db.conn.execute(
            "SELECT record FROM images WHERE namespace = ? AND name = ?", (namespace, name)
        ).fetchone()
        if row is None:
            raise NotFound(f'image "{name}": not found')
        return Image.FromString(row[0])

    def list(self, namespace: str, filter_strings: Iterable[str] = ()) -> list[Image]:
        flt = filters.parse_all(filter_strings)
        rows = self._db.conn.execute(
            "SELECT record FROM images WHERE namespace = ? ORDER BY name", (namespace,)
        )
        found = [Image.FromString(raw) for (raw,) in rows]
        if flt.alternatives:
            found = [i for i in found if flt.match(_adaptor(i))]
        return found

    def create(self, namespace: str, image: Image) -> Image:
        record = Image()
        record.CopyFrom(image)
        _drop_empty(record)
        _validate(record)
        now = time.time_ns()
        _stamp(record, now, created=True)
        with self._db.transaction() as conn:
            self._db.namespaces.ensure(namespace)
            cur = conn.execute(
                "INSERT INTO images (namespace, name, record) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (namespace, record.name, record.SerializeToString()),
            )
            if cur.rowcount == 0:
                raise AlreadyExists(f'image "{record.name}": already exists')
        return record

    def update(self, namespace: str, image: Image, paths: Iterable[str] = ()) -> Image:
        """Apply the fields named by `paths` (everything when empty) and return the record."""
        if not image.name:
            raise InvalidArgument("image name is required for update: invalid argument")
        paths = list(paths)
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT record FROM images WHERE namespace = ? AND name = ?",
                (namespace, image.name),
            ).fetchone()
            if row is None:
                raise NotFound(f'image "{image.name}": not found')
            current = Image.FromString(row[0])
            if paths:
                updated = Image()
                updated.CopyFrom(current)
                for path in paths:
                    _apply(updated, image, path)
            else:
                updated = Image()
                updated.CopyFrom(image)
            _drop_empty(updated)
            _validate(updated)
            updated.created_at.CopyFrom(current.created_at)
            _stamp(updated, time.time_ns(), created=False)
            conn.execute(
                "UPDATE images SET record = ? WHERE namespace = ? AND name = ?",
                (updated.SerializeToString(), namespace, image.name),
            )
        return updated

    def delete(self, namespace: str, name: str) -> None:
        with self._db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM images WHERE namespace = ? AND name = ?", (namespace, name)
            )
            if cur.rowcount == 0:
                raise NotFound(f'image "{name}": not found')


def _apply(updated: Image, given: Image, path: str) -> None:
    if path.startswith("labels."):
        key = path[len("labels."):]
        updated.labels[key] = given.labels.get(key, "")  # "" removes it
    elif path.startswith("annotations."):
        key = path[len("annotations."):]
        updated.target.annotations[key] = given.target.annotations.get(key, "")
    elif path == "labels":
        updated.labels.clear()
        updated.labels.update(given.labels)
    elif path == "target":
        # The target is replaced as a unit, as containerd does.
        updated.target.CopyFrom(given.target)
    elif path == "annotations":
        updated.target.annotations.clear()
        updated.target.annotations.update(given.target.annotations)
    else:
        raise InvalidArgument(
            f'cannot update "{path}" field on image "{given.name}": invalid argument'
        )


def _drop_empty(image: Image) -> None:
    for mapping in (image.labels, image.target.annotations):
        for key in [k for k, v in mapping.items() if not v]:
            del mapping[key]


def _validate(image: Image) -> None:
    name = image.name
    if not name:
        raise InvalidArgument("image name must not be empty: invalid argument")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"image name is {len(name)} characters; at most {MAX_NAME_LENGTH} are allowed: "
            "invalid argument"
        )
    if _NAME.match(name) is None:
        raise InvalidArgument(
            f"image name {name!r} must not contain whitespace or control characters: "
            "invalid argument"
        )
    labelrules.validate(image.labels, "image.Labels")
    target = image.target
    parse_digest(target.digest, f'Target.Digest "{target.digest}" invalid')
    if target.size <= 0:
        raise InvalidArgument("Target.Size must be greater than zero: invalid argument")
    if not target.media_type:
        raise InvalidArgument("Target.MediaType must be set: invalid argument")


def _stamp(image: Image, now_ns: int, created: bool) -> None:
    image.updated_at.FromNanoseconds(now_ns)
    if created:
        image.created_at.CopyFrom(image.updated_at)


def _has_images(conn: sqlite3.Connection, namespace: str) -> bool:
    row = conn.execute("SELECT 1 FROM images WHERE namespace = ? LIMIT 1", (namespace,))
    return row.fetchone() is not None


def _adaptor(image: Image) -> filters.Adaptor:
    """containerd's image fields: name, target.digest, target.mediatype, labels.<key>,
    annotations.<key>."""

    def field(path: tuple[str, ...]) -> tuple[str, bool]:
        head = path[0]
        if head == "name":
            return image.name, bool(image.name)
        if head == "target" and len(path) >= 2:
            if path[1] == "digest":
                return image.target.digest, bool(image.target.digest)
            if path[1] == "mediatype":
                return image.target.media_type, bool(image.target.media_type)
            return "", False
        if head in ("labels", "annotations") and len(path) >= 2:
            mapping = image.labels if head == "labels" else image.target.annotations
            key = ".".join(path[1:])
            if key in mapping:
                return mapping[key], True
        return "", False

    return field
