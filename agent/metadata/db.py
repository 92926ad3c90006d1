"""The metadata database: one SQLite file, `<root>/io.containerd.metadata.v1.sqlite/meta.db`,
holding namespaces, containers and leases (and, through the same connection, whatever later
stores such as images add).

How it is used: one connection, opened in WAL mode with foreign keys on, used only from the
asyncio event loop thread. Every call is a handful of indexed statements that finish in tens
of microseconds, so they run inline on the loop; nothing here awaits. Writes go through
`MetadataDB.transaction()`, which makes a group of statements atomic (nested use becomes a
savepoint) and turns a database failure (disk full, file unwritable) into `Unavailable`.

Durability (the README repeats this):

- Agent crash (the process is killed, even in the middle of a request): every transaction
  that returned to its caller is on disk; a request that was cut off left nothing behind.
  SQLite's write-ahead log makes each transaction all or nothing.
- Power cut or kernel crash: with the default `synchronous = "normal"` the database is
  always consistent when the host comes back, but the transactions committed in the last
  moments before the cut (those not yet checkpointed or synced) may be missing. A client
  that saw success for them will find the records gone, as if the calls never happened.
  Set `synchronous = "full"` in `[plugins."io.containerd.metadata.v1.sqlite"]` to sync the
  log on every commit: nothing acknowledged is lost, at the cost of one fsync per write.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from agent.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

SYNCHRONOUS_MODES = ("normal", "full")

# A check that tells whether a namespace still holds objects of one kind.
NamespaceCheck = Callable[[sqlite3.Connection, str], bool]


class MetadataDB:
    """The open database plus the stores built on it (`namespaces`, `containers`, `leases`)."""

    def __init__(self, path: str, synchronous: str = "normal"):
        if synchronous not in SYNCHRONOUS_MODES:
            raise InvalidArgument(
                f"metadata synchronous mode {synchronous!r} is not one of "
                f"{', '.join(SYNCHRONOUS_MODES)}"
            )
        self.path = path
        # isolation_level=None: no implicit transactions, ours are explicit.
        self.conn = sqlite3.connect(path, isolation_level=None, cached_statements=256)
        self._depth = 0
        self._checks: list[tuple[str, NamespaceCheck]] = []
        try:
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise Unavailable(f"metadata database {path} cannot use WAL mode (got {mode})")
            self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as e:
            self.conn.close()
            raise Unavailable(f"metadata database {path}: {e}") from None

        # Imported here: the stores need the open database, and each one owns its tables.
        from agent.metadata.containers import ContainerStore
        from agent.metadata.leases import LeaseStore
        from agent.metadata.namespaces import NamespaceStore

        self.namespaces = NamespaceStore(self)
        self.containers = ContainerStore(self)
        self.leases = LeaseStore(self)

    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the body atomically; an exception rolls back everything it wrote."""
        if self._depth:
            yield from self._savepoint()
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise Unavailable(f"metadata database {self.path}: {e}") from None
        self._depth = 1
        try:
            yield self.conn
        except BaseException as e:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError):
                raise Unavailable(f"metadata database {self.path}: {e}") from None
            raise
        self._depth = 0
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise Unavailable(f"metadata database {self.path}: {e}") from None

    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        name = f"sp{self._depth}"
        self._depth += 1
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        finally:
            self._depth -= 1
        self.conn.execute(f"RELEASE {name}")

    def create_tables(self, statements: str) -> None:
        """Create a store's tables if they are missing (each statement `IF NOT EXISTS`)."""
        try:
            with self.transaction() as conn:
                for statement in statements.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        except sqlite3.Error as e:
            raise Unavailable(f"metadata database {self.path}: {e}") from None

    def register_namespace_check(self, kind: str, check: NamespaceCheck) -> None:
        """Add a kind of object (e.g. "images") that keeps a namespace from being deleted."""
        self._checks.append((kind, check))

    def namespace_users(self, namespace: str) -> list[str]:
        """The kinds of object the namespace still holds, in registration order."""
        return [kind for kind, check in self._checks if check(self.conn, namespace)]

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error as e:
            log.warning("closing metadata database %s: %s", self.path, e)
