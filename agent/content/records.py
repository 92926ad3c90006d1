"""Which namespaces see which blobs: one row per (namespace, digest) in the metadata
database with the size, labels and times, as containerd's metadata content store keeps
them. Blobs are shared on disk; Info, List, Update and Delete work on these rows, so
labels and visibility are per namespace."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from agent import filters
from agent.api.containerd.services.content.v1.content_pb2 import Info
from agent.metadata import labels as labelrules

if TYPE_CHECKING:
    from agent.metadata.db import MetadataDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS content_info (
    namespace TEXT NOT NULL REFERENCES namespaces (name),
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    labels BLOB,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS content_info_by_digest ON content_info (digest)
"""

_COLUMNS = "digest, size, labels, created_at, updated_at"


class ContentRecords:
    def __init__(self, db: MetadataDB):
        self._db = db
        db.create_tables(SCHEMA)

    def get(self, namespace: str, digest: str) -> Info | None:
        row = self._db.conn.execute(
            f"SELECT {_COLUMNS} FROM content_info WHERE namespace = ? AND digest = ?",
            (namespace, digest),
        ).fetchone()
        return None if row is None else _info(*row)

    def exists(self, namespace: str, digest: str) -> bool:
        row = self._db.conn.execute(
            "SELECT 1 FROM content_info WHERE namespace = ? AND digest = ?", (namespace, digest)
        )
        return row.fetchone() is not None

    def list(self, namespace: str, filter_strings: Iterable[str] = ()) -> list[Info]:
        flt = filters.parse_all(filter_strings)
        rows = self._db.conn.execute(
            f"SELECT {_COLUMNS} FROM content_info WHERE namespace = ? ORDER BY digest",
            (namespace,),
        )
        found = [_info(*row) for row in rows]
        if flt.alternatives:
            found = [i for i in found if flt.match(_adaptor(i))]
        return found

    def labels(self, namespace: str) -> dict[str, dict[str, str]]:
        """Every digest of a namespace with its labels (what the collector walks)."""
        rows = self._db.conn.execute(
            "SELECT digest, labels FROM content_info WHERE namespace = ?", (namespace,)
        )
        return {digest: labelrules.decode(raw) for digest, raw in rows}

    def insert(self, namespace: str, digest: str, size: int, labels: Mapping[str, str],
               now_ns: int) -> bool:
        """Add a row (inside the caller's transaction); False when it was already there."""
        cur = self._db.conn.execute(
            "INSERT INTO content_info (namespace, digest, size, labels, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (namespace, digest, size, labelrules.encode(labelrules.without_empty(labels)),
             now_ns, now_ns),
        )
        return cur.rowcount == 1

    def set_labels(self, namespace: str, digest: str, labels: Mapping[str, str],
                   now_ns: int) -> None:
        self._db.conn.execute(
            "UPDATE content_info SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
            (labelrules.encode(labelrules.without_empty(labels)), now_ns, namespace, digest),
        )

    def delete(self, namespace: str, digest: str) -> bool:
        cur = self._db.conn.execute(
            "DELETE FROM content_info WHERE namespace = ? AND digest = ?", (namespace, digest)
        )
        return cur.rowcount == 1

    def referenced(self, digest: str) -> bool:
        """Whether any namespace still sees this blob."""
        row = self._db.conn.execute("SELECT 1 FROM content_info WHERE digest = ? LIMIT 1",
                                    (digest,))
        return row.fetchone() is not None

    def all_digests(self) -> set[str]:
        return {d for (d,) in self._db.conn.execute("SELECT DISTINCT digest FROM content_info")}

    def has_any(self, namespace: str) -> bool:
        row = self._db.conn.execute(
            "SELECT 1 FROM content_info WHERE namespace = ? LIMIT 1", (namespace,)
        )
        return row.fetchone() is not None


def _info(digest: str, size: int, raw: bytes | None, created: int, updated: int) -> Info:
    info = Info(digest=digest, size=size, labels=labelrules.decode(raw))
    info.created_at.FromNanoseconds(created)
    info.updated_at.FromNanoseconds(updated)
    return info


def _adaptor(info: Info) -> filters.Adaptor:
    """containerd's content fields (digest, labels.<key>), plus size as a decimal string."""
    return filters.label_adaptor(dict(info.labels),
                                 {"digest": info.digest, "size": str(info.size)})
