"""The namespace store: names and their labels.

A namespace comes into existence explicitly (Namespaces/Create) or implicitly on the first
write into it (a container or lease create calls `ensure` inside its own transaction). It
can be deleted only when empty: every store that keeps per-namespace objects registers a
check with `MetadataDB.register_namespace_check`, and Delete names the kinds still there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from agent import identifiers
from agent.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from agent.metadata import labels as labelrules

if TYPE_CHECKING:
    from agent.metadata.db import MetadataDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY,
    labels BLOB
) WITHOUT ROWID
"""

_WHAT = "namespace.Labels"


class NamespaceStore:
    def __init__(self, db: MetadataDB):
        self._db = db
        db.create_tables(SCHEMA)

    def ensure(self, name: str) -> None:
        """Create the namespace if it does not exist (call inside the writer's transaction)."""
        self._db.conn.execute(
            "INSERT INTO namespaces (name, labels) VALUES (?, NULL) ON CONFLICT DO NOTHING",
            (name,),
        )

    def exists(self, name: str) -> bool:
        row = self._db.conn.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,))
        return row.fetchone() is not None

    def labels(self, name: str) -> dict[str, str] | None:
        """The namespace's labels, or None when it does not exist."""
        row = self._db.conn.execute(
            "SELECT labels FROM namespaces WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else labelrules.decode(row[0])

    def list(self) -> list[tuple[str, dict[str, str]]]:
        rows = self._db.conn.execute("SELECT name, labels FROM namespaces ORDER BY name")
        return [(name, labelrules.decode(raw)) for name, raw in rows]

    def create(self, name: str, labels: Mapping[str, str]) -> dict[str, str]:
        identifiers.validate(name, "namespace")
        labelrules.validate(labels, _WHAT)
        stored = labelrules.without_empty(labels)
        with self._db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO namespaces (name, labels) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (name, labelrules.encode(stored)),
            )
            if cur.rowcount == 0:
                raise AlreadyExists(f'namespace "{name}": already exists')
        return stored

    def update(self, name: str, labels: Mapping[str, str], paths: list[str]) -> dict[str, str]:
        """Apply a label update and return the namespace's labels after it.

        No paths replaces every label; `labels` does the same; `labels.<key>` sets or (with an
        empty or missing value) removes one label. A namespace that does not exist yet is
        created, as containerd does."""
        identifiers.validate(name, "namespace")
        for path in paths:
            if path != "labels" and not path.startswith("labels."):
                raise InvalidArgument(f'cannot update "{path}" field')
        with self._db.transaction() as conn:
            self.ensure(name)
            current = self.labels(name) or {}
            if not paths or "labels" in paths:
                labelrules.validate(labels, _WHAT)
                current = dict(labels)
            for path in paths:
                if path.startswith("labels."):
                    key = path[len("labels."):]
                    value = labels.get(key, "")
                    labelrules.validate_one(key, value, _WHAT)
                    current[key] = value
            current = labelrules.without_empty(current)
            conn.execute(
                "UPDATE namespaces SET labels = ? WHERE name = ?",
                (labelrules.encode(current), name),
            )
        return current

    def delete(self, name: str) -> None:
        identifiers.validate(name, "namespace")
        with self._db.transaction() as conn:
            users = self._db.namespace_users(name)
            if users:
                raise FailedPrecondition(
                    f'namespace "{name}" must be empty, but it still has {", ".join(users)}: '
                    "failed precondition"
                )
            cur = conn.execute("DELETE FROM namespaces WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise NotFound(f'namespace "{name}": not found')

