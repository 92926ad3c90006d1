"""One garbage collection pass: mark and sweep, one namespace at a time, as containerd's
metadata collector decides what is still used.

Roots of a namespace:
- images: their target digest and the content their `containerd.io/gc.ref.content*` labels name;
- containers: the content their `containerd.io/gc.ref.content*` labels name;
- leases that have not expired (`containerd.io/gc.expire`, RFC 3339, in the past means
  expired; an unparsable value is ignored, as containerd does): the content and ingests
  they hold (a lease labelled `containerd.io/gc.flat` keeps its content but not what that
  content's labels reference);
- content labelled `containerd.io/gc.root`;
- ingests being written, held by a live lease, or not yet past their expiry.

From the roots, content labels `containerd.io/gc.ref.content`, `...content.<name>` and
`...content/<name>` are followed transitively. Unmarked content leaves the namespace,
expired leases are deleted and unmarked ingests aborted. A blob leaves the disk when no
namespace sees it any more.

Each namespace is marked and swept in one synchronous step (one transaction, no awaits),
so no request can slip a new reference in between; the loop gets control back between
namespaces."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from agent.content.store import ContentStore
from agent.metadata import images
from agent.metadata.db import MetadataDB

log = logging.getLogger(__name__)

LABEL_ROOT = "containerd.io/gc.root"
LABEL_CONTENT_REF = "containerd.io/gc.ref.content"
LABEL_EXPIRE = "containerd.io/gc.expire"
LABEL_FLAT = "containerd.io/gc.flat"

# What Go's time.Parse(time.RFC3339, ...) accepts.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")


@dataclass
class Stats:
    content: int = 0  # (namespace, digest) views removed
    blobs: int = 0  # files removed from disk
    ingests: int = 0
    leases: int = 0
    elapsed: float = 0.0  # seconds


def content_refs(labels: Mapping[str, str]) -> Iterator[str]:
    """The digests a set of labels references for the collector."""
    for key, value in labels.items():
        if key.startswith(LABEL_CONTENT_REF):
            rest = key[len(LABEL_CONTENT_REF):]
            if not rest or rest[0] in "./":
                yield value


def expired(value: str | None, now: datetime) -> bool:
    if value is None:
        return False
    if not _RFC3339.match(value):
        log.info("ignoring invalid lease expiration value %r", value)
        return False
    return datetime.fromisoformat(value) < now


class Collector:
    def __init__(self, db: MetadataDB, content: ContentStore):
        self.db = db
        self.content = content
        self.images = images.store_for(db)
        # True while this collector itself deletes rows (so they are not seen as new work).
        self.sweeping = False

    async def collect(self) -> Stats:
        started = time.monotonic()
        stats = Stats()
        names = {name for name, _ in self.db.namespaces.list()}
        for namespace in sorted(names | self.content.ingests.namespaces()):
            self._collect_namespace(namespace, stats)
            await asyncio.sleep(0)
        with self._quiet():
            blobs, _ = self.content.sweep_disk()
        stats.blobs += blobs
        stats.elapsed = time.monotonic() - started
        return stats

    def _collect_namespace(self, namespace: str, stats: Stats) -> None:
        now = datetime.now().astimezone()
        now_ns = time.time_ns()
        labels = self.content.records.labels(namespace)
        roots: list[str] = []
        flat: set[str] = set()
        held_ingests: set[str] = set()
        dead_leases: list[str] = []
        for lease in self.db.leases.list(namespace):
            if expired(lease.labels.get(LABEL_EXPIRE), now):
                dead_leases.append(lease.id)
                continue
            is_flat = LABEL_FLAT in lease.labels
            for res in self.db.leases.list_resources(namespace, lease.id):
                if res.type == "content":
                    if is_flat:
                        flat.add(res.id)
                    else:
                        roots.append(res.id)
                elif res.type == "ingests":
                    held_ingests.add(res.id)
        for image in self.images.list(namespace):
            roots.append(image.target.digest)
            roots.extend(content_refs(image.labels))
        for container in self.db.containers.list(namespace):
            roots.extend(content_refs(container.labels))
        roots.extend(d for d, lbl in labels.items() if LABEL_ROOT in lbl)
        dead_ingests = []
        for ingest in self.content.ingests.list(namespace):
            if ingest.locked or ingest.ref in held_ingests or ingest.expires_ns > now_ns:
                if ingest.shared:
                    roots.append(ingest.expected)
            else:
                dead_ingests.append(ingest)

        live = _mark(roots, labels) | flat
        dead = [d for d in labels if d not in live]
        with self._quiet(), self.db.transaction():
            for digest in dead:
                self.content.records.delete(namespace, digest)
            for lease_id in dead_leases:
                self.db.leases.delete(namespace, lease_id)
        with self._quiet():
            for ingest in dead_ingests:
                self.content.ingests.remove(ingest)
            for digest in dead:
                if self.content.release_blob(digest):
                    stats.blobs += 1
        stats.content += len(dead)
        stats.leases += len(dead_leases)
        stats.ingests += len(dead_ingests)
        if dead or dead_leases or dead_ingests:
            log.debug("gc %s: removed content %s, leases %s, ingests %s", namespace, dead,
                      dead_leases, [i.ref for i in dead_ingests])

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        self.sweeping = True
        try:
            yield
        finally:
            self.sweeping = False


def _mark(roots: Iterable[str], labels: Mapping[str, Mapping[str, str]]) -> set[str]:
    """Every digest reachable from the roots through content reference labels."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        digest = stack.pop()
        if digest in seen:
            continue
        seen.add(digest)
        found = labels.get(digest)
        if found:
            stack.extend(content_refs(found))
    return seen
