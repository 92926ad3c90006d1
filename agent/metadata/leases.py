"""The lease store: leases per namespace, with labels, a creation time, and the resources
each one holds (content digests, ingest refs, snapshots) so garbage collection keeps them.

Lease ids are not identifiers: containerd's clients generate `<nanoseconds>-<base64url>`,
which may contain "_-" runs, so any non-empty string up to MAX_ID_LENGTH is accepted (ids
are never used in paths). Resource types follow containerd: `content` (the id must be a
digest), `ingests`, and `snapshots/<snapshotter>`."""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from agent import filters
from agent.api.containerd.services.leases.v1.leases_pb2 import Lease, Resource
from agent.errors import AlreadyExists, InvalidArgument, NotFound, NotImplementedYet
from agent.metadata import labels as labelrules

if TYPE_CHECKING:
    import sqlite3

    from agent.metadata.db import MetadataDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    namespace TEXT NOT NULL REFERENCES namespaces (name),
    id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    labels BLOB,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lease_resources (
    namespace TEXT NOT NULL,
    lease TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (namespace, lease, type, id),
    FOREIGN KEY (namespace, lease) REFERENCES leases (namespace, id) ON DELETE CASCADE
) WITHOUT ROWID
"""

MAX_ID_LENGTH = 1024

# Digest algorithms containerd accepts, with the length of their hex encoding.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+\Z")


class LeaseStore:
    def __init__(self, db: MetadataDB):
        self._db = db
        db.create_tables(SCHEMA)
        db.register_namespace_check("leases", _has_leases)

    def create(self, namespace: str, lease_id: str, labels: Mapping[str, str]) -> Lease:
        """Create a lease; an empty id gets a generated one in containerd's format."""
        lease_id = lease_id or generate_id()
        if len(lease_id) > MAX_ID_LENGTH:
            raise InvalidArgument(
                f"lease id is {len(lease_id)} characters; at most {MAX_ID_LENGTH} are allowed"
            )
        labelrules.validate(labels, "lease.Labels")
        stored = labelrules.without_empty(labels)
        now = time.time_ns()
        with self._db.transaction() as conn:
            self._db.namespaces.ensure(namespace)
            cur = conn.execute(
                "INSERT INTO leases (namespace, id, created_at, labels) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (namespace, lease_id, now, labelrules.encode(stored)),
            )
            if cur.rowcount == 0:
                raise AlreadyExists(f'lease "{lease_id}": already exists')
        return _lease(lease_id, now, stored)

    def delete(self, namespace: str, lease_id: str) -> None:
        with self._db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f'lease "{lease_id}": not found')

    def list(self, namespace: str, filter_strings: Iterable[str] = ()) -> list[Lease]:
        flt = filters.parse_all(filter_strings)
        rows = self._db.conn.execute(
            "SELECT id, created_at, labels FROM leases WHERE namespace = ? ORDER BY id",
            (namespace,),
        )
        found = []
        for lease_id, created_at, raw in rows:
            labels = labelrules.decode(raw)
            if flt.alternatives and not flt.match(
                filters.label_adaptor(labels, {"id": lease_id})
            ):
                continue
            found.append(_lease(lease_id, created_at, labels))
        return found

    def add_resource(self, namespace: str, lease_id: str, rtype: str, rid: str) -> None:
        with self._db.transaction() as conn:
            self._require(namespace, lease_id)
            rtype, rid = parse_resource(rtype, rid)
            conn.execute(
                "INSERT INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (namespace, lease_id, rtype, rid),
            )

    def delete_resource(self, namespace: str, lease_id: str, rtype: str, rid: str) -> None:
        """Remove a resource from a lease; one the lease does not hold is not an error."""
        with self._db.transaction() as conn:
            self._require(namespace, lease_id)
            rtype, rid = parse_resource(rtype, rid)
            conn.execute(
                "DELETE FROM lease_resources "
                "WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
                (namespace, lease_id, rtype, rid),
            )

    def list_resources(self, namespace: str, lease_id: str) -> list[Resource]:
        self._require(namespace, lease_id)
        # containerd's order: content, then ingests, then snapshots by snapshotter.
        rows = self._db.conn.execute(
            "SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ? "
            "ORDER BY CASE type WHEN 'content' THEN 0 WHEN 'ingests' THEN 1 ELSE 2 END, "
            "type, id",
            (namespace, lease_id),
        )
        return [Resource(id=rid, type=rtype) for rtype, rid in rows]

    def _require(self, namespace: str, lease_id: str) -> None:
        row = self._db.conn.execute(
            "SELECT 1 FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id)
        ).fetchone()
        if row is None:
            raise NotFound(f'lease "{lease_id}": not found')


def generate_id() -> str:
    """containerd's random lease id: the clock's nanoseconds and 3 random bytes."""
    suffix = base64.urlsafe_b64encode(os.urandom(3)).decode()
    return f"{time.time_ns() % 1_000_000_000}-{suffix}"


def parse_resource(rtype: str, rid: str) -> tuple[str, str]:
    """Validate a lease resource and return it in its stored form."""
    if not rtype:
        raise InvalidArgument("resource type must be set (content, ingests or snapshots/<name>)")
    keys = rtype.split("/")
    if keys[0] in ("content", "ingests"):
        if len(keys) != 1:
            raise InvalidArgument(f"invalid resource type {rtype}: invalid argument")
        if keys[0] == "content":
            rid = parse_digest(rid, f"invalid content resource id {rid}")
    elif keys[0] == "snapshots":
        if len(keys) != 2 or not keys[1]:
            raise InvalidArgument(f"invalid snapshot resource type {rtype}: invalid argument")
    else:
        raise NotImplementedYet(f"resource type {rtype} not supported yet: not implemented")
    if not rid:
        raise InvalidArgument(f"resource id must be set for resource type {rtype}")
    return rtype, rid


def parse_digest(value: str, context: str) -> str:
    """Check `<algorithm>:<hex>` as go-digest's Parse does; returns the digest unchanged."""
    algorithm, sep, encoded = value.partition(":")
    if not algorithm or not sep or not encoded:
        raise InvalidArgument(f"{context}: invalid checksum digest format: invalid argument")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        raise InvalidArgument(f"{context}: unsupported digest algorithm: invalid argument")
    if len(encoded) != length:
        raise InvalidArgument(f"{context}: invalid checksum digest length: invalid argument")
    if not _HEX.match(encoded):
        raise InvalidArgument(f"{context}: invalid checksum digest format: invalid argument")
    return value


def _has_leases(conn: sqlite3.Connection, namespace: str) -> bool:
    row = conn.execute("SELECT 1 FROM leases WHERE namespace = ? LIMIT 1", (namespace,))
    return row.fetchone() is not None


def _lease(lease_id: str, created_ns: int, labels: Mapping[str, str]) -> Lease:
    lease = Lease(id=lease_id, labels=labels)
    lease.created_at.FromNanoseconds(created_ns)
    return lease
