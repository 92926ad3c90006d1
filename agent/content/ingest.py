"""In-progress writes ("ingests"): one directory per (namespace, ref) under `<root>/ingest/`.

The directory is named by the sha256 of `<namespace>/<ref>` (namespaces hold no `/`), so
any ref gives a safe, fixed-length name. It holds `data`, the bytes written so far, and
`meta`, JSON with the namespace, ref, expected digest, total, start time and expiry. The
length of `data` is the offset and its mtime the updated time, so both survive a restart.

A running sha256 is kept in memory while the agent runs; after a restart the data is
hashed again the first time the ingest is opened. One writer at a time holds an ingest
(containerd's ref lock); a second one gets Unavailable and may retry.

A "shared" ingest is containerd's cross-namespace shortcut: its expected digest is already
on disk for another namespace, so it reports the blob as fully written and commits without
any data. Writing data to it first copies the blob in ("unsharing" it)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import orjson

from agent.content.blobs import IO_POOL, READ_CHUNK
from agent.errors import InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

MAX_REF_LENGTH = 1024
# Writes smaller than this run on the loop; bigger ones (and all hashing of them) in a thread.
INLINE_WRITE = 64 << 10


@dataclass(eq=False)
class Ingest:
    namespace: str
    ref: str
    path: str
    expected: str = ""
    total: int = 0
    started_ns: int = 0
    # When an ingest that no lease holds may be collected (ns since the epoch); 0: never by time.
    expires_ns: int = 0
    shared: bool = False
    shared_size: int = 0
    # In memory only: the running hash and offset (None until known after a restart).
    hasher: Any = None
    offset: int | None = None
    locked_since: float | None = None
    aborted: bool = False
    pending: list[Future] = field(default_factory=list)

    @property
    def data_path(self) -> str:
        return os.path.join(self.path, "data")

    @property
    def locked(self) -> bool:
        return self.locked_since is not None

    def current_offset(self) -> int:
        if self.shared:
            return self.shared_size
        if self.offset is not None:
            return self.offset
        try:
            return os.stat(self.data_path).st_size
        except FileNotFoundError:
            return 0

    def updated_ns(self) -> int:
        try:
            return max(os.stat(self.data_path).st_mtime_ns, self.started_ns)
        except FileNotFoundError:
            return self.started_ns


def validate_ref(ref: str) -> str:
    if not ref:
        raise InvalidArgument("ref must not be empty: invalid argument")
    if len(ref) > MAX_REF_LENGTH:
        raise InvalidArgument(
            f"ref is {len(ref)} characters; at most {MAX_REF_LENGTH} are allowed: invalid argument"
        )
    return ref


class IngestStore:
    """The ingest directories and their in-memory index, loaded once at start."""

    def __init__(self, root: str):
        self.dir = os.path.join(root, "ingest")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self._index: dict[tuple[str, str], Ingest] = {}
        for name in os.listdir(self.dir):
            ingest = _load(os.path.join(self.dir, name))
            if ingest is not None:
                self._index[(ingest.namespace, ingest.ref)] = ingest

    def get(self, namespace: str, ref: str) -> Ingest | None:
        return self._index.get((namespace, ref))

    def list(self, namespace: str) -> list[Ingest]:
        found = [i for (ns, _), i in self._index.items() if ns == namespace]
        return sorted(found, key=lambda i: i.ref)

    def all(self) -> list[Ingest]:
        return list(self._index.values())

    def namespaces(self) -> set[str]:
        return {ns for ns, _ in self._index}

    def create(self, namespace: str, ref: str, *, total: int, expected: str,
               expires_ns: int, shared_size: int | None) -> Ingest:
        """A new ingest directory with an empty data file (none when shared)."""
        key = hashlib.sha256(f"{namespace}/{ref}".encode()).hexdigest()
        path = os.path.join(self.dir, key)
        shutil.rmtree(path, ignore_errors=True)  # a leftover the index did not know
        os.mkdir(path, 0o700)
        ingest = Ingest(namespace, ref, path, expected=expected, total=total,
                        started_ns=time.time_ns(), expires_ns=expires_ns)
        if shared_size is not None:
            ingest.shared, ingest.shared_size = True, shared_size
            ingest.total = total or shared_size
        else:
            open(ingest.data_path, "wb").close()
            ingest.hasher, ingest.offset = hashlib.sha256(), 0
        save_meta(ingest)
        self._index[(namespace, ref)] = ingest
        return ingest

    def remove(self, ingest: Ingest) -> None:
        """Forget an ingest and delete its directory (a writer holding it sees `aborted`)."""
        ingest.aborted = True
        if self._index.get((ingest.namespace, ingest.ref)) is ingest:
            del self._index[(ingest.namespace, ingest.ref)]
        shutil.rmtree(ingest.path, ignore_errors=True)

    def orphans(self) -> list[str]:
        """Directories under ingest/ that belong to no known ingest (half-made or corrupt)."""
        known = {os.path.basename(i.path) for i in self._index.values()}
        return [os.path.join(self.dir, n) for n in os.listdir(self.dir) if n not in known]

    def lock(self, ingest: Ingest) -> None:
        if ingest.locked_since is not None:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ingest.locked_since))
            raise Unavailable(
                f"ref {ingest.ref} locked for {time.time() - ingest.locked_since:.3f}s "
                f"(since {since}): unavailable"
            )
        ingest.locked_since = time.time()


def save_meta(ingest: Ingest) -> None:
    """Write `meta` atomically (a crash leaves the old or the new one, never half)."""
    meta = {
        "namespace": ingest.namespace, "ref": ingest.ref, "expected": ingest.expected,
        "total": ingest.total, "started_ns": ingest.started_ns,
        "expires_ns": ingest.expires_ns, "shared": ingest.shared,
        "shared_size": ingest.shared_size,
    }
    tmp = os.path.join(ingest.path, "meta.tmp")
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(meta))
    os.rename(tmp, os.path.join(ingest.path, "meta"))


def _load(path: str) -> Ingest | None:
    try:
        with open(os.path.join(path, "meta"), "rb") as f:
            meta = orjson.loads(f.read())
        ingest = Ingest(
            str(meta["namespace"]), str(meta["ref"]), path, expected=str(meta["expected"]),
            total=int(meta["total"]), started_ns=int(meta["started_ns"]),
            expires_ns=int(meta["expires_ns"]), shared=bool(meta["shared"]),
            shared_size=int(meta["shared_size"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable ingest %s: %s", path, e)
        return None
    if not ingest.shared and not os.path.exists(ingest.data_path):
        return None
    return ingest


class IngestWriter:
    """The one open writer of an ingest: appends, restarts, hashes and syncs its data. It
    holds the ingest's lock until `close()`, which waits for a write still running in a
    thread (a client that went away mid-write) before letting the next writer in."""

    def __init__(self, ingest: Ingest, fd: int | None, blob_path: str):
        self.ingest = ingest
        self._fd = fd
        self._blob_path = blob_path  # the blob a shared ingest stands for
        self._closed = False

    @classmethod
    async def open(cls, ingest: Ingest, blob_path: str = "") -> IngestWriter:
        """Open a locked ingest for writing; rehash its data when the hash is not known."""
        if ingest.shared:
            return cls(ingest, None, blob_path)
        # O_CREAT: a data file lost to a failed commit simply starts the ingest over.
        fd = os.open(ingest.data_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if ingest.hasher is None or ingest.offset is None or size < ingest.offset:
                ingest.hasher, ingest.offset = await _run(ingest, _rehash, ingest.data_path)
            elif size > ingest.offset:
                os.ftruncate(fd, ingest.offset)  # bytes of a write that failed half-way
        except BaseException:
            os.close(fd)
            raise
        return cls(ingest, fd, blob_path)

    @property
    def offset(self) -> int:
        return self.ingest.current_offset()

    @property
    def digest(self) -> str:
        if self.ingest.shared:
            return self.ingest.expected
        return "sha256:" + self.ingest.hasher.hexdigest()

    def _check(self) -> None:
        if self.ingest.aborted:
            raise NotFound(f"ingest ref {self.ingest.ref!r} was aborted: not found")
        if self._closed:
            raise NotFound(f"ingest ref {self.ingest.ref!r} is closed: not found")

    async def write(self, data: bytes) -> None:
        self._check()
        if self.ingest.shared:
            await self._unshare(self.ingest.shared_size)
        if len(data) < INLINE_WRITE:
            _append(self.ingest, self._fd, data)
        else:
            await _run(self.ingest, _append, self.ingest, self._fd, data)

    async def truncate(self) -> None:
        """Start over from offset 0 (containerd's answer to a write at offset 0)."""
        self._check()
        if self.ingest.shared:
            await self._unshare(0)
            return
        os.ftruncate(self._fd, 0)
        self.ingest.hasher, self.ingest.offset = hashlib.sha256(), 0

    async def restart(self, total: int) -> None:
        """Drop what was written because the client now declares a different total."""
        await self.truncate()
        self.ingest.total = total
        save_meta(self.ingest)

    async def sync(self) -> None:
        """Make the data durable before it is renamed into the blob store."""
        self._check()
        if self._fd is not None:
            await _run(self.ingest, os.fsync, self._fd)
        self._check()

    async def _unshare(self, keep: int) -> None:
        """Turn a shared ingest into a real one holding the first `keep` bytes of its blob."""
        ingest = self.ingest
        fd = os.open(ingest.data_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o600)
        ingest.hasher, ingest.offset = hashlib.sha256(), 0
        ingest.shared, ingest.shared_size = False, 0
        self._fd = fd
        if keep:
            await _run(ingest, _copy_prefix, ingest, fd, self._blob_path, keep)
        save_meta(ingest)

    def close(self) -> None:
        """Release the lock, once no write of this writer is still running in a thread."""
        if self._closed:
            return
        self._closed = True
        running = [f for f in self.ingest.pending if not f.done()]
        if not running:
            self._release()
            return
        loop = asyncio.get_running_loop()
        left = [len(running)]

        def settle() -> None:  # on the loop, so the count needs no lock
            left[0] -= 1
            if left[0] == 0:
                self._release()

        for f in running:
            f.add_done_callback(lambda _: loop.call_soon_threadsafe(settle))

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.ingest.pending.clear()
        self.ingest.locked_since = None


async def _run(ingest: Ingest, fn: Callable, *args: Any) -> Any:
    """Run blocking file work in the content thread pool; remembered on the ingest so the
    lock is not released while it still runs."""
    fut = IO_POOL.submit(fn, *args)
    ingest.pending.append(fut)
    try:
        return await asyncio.wrap_future(fut)
    finally:
        if fut.done() and fut in ingest.pending:
            ingest.pending.remove(fut)


def _append(ingest: Ingest, fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, ingest.offset)
        ingest.hasher.update(view[:n])
        ingest.offset += n
        view = view[n:]


def _rehash(path: str) -> tuple[Any, int]:
    hasher, offset = hashlib.sha256(), 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(READ_CHUNK):
            hasher.update(chunk)
            offset += len(chunk)
    return hasher, offset


def _copy_prefix(ingest: Ingest, fd: int, blob: str, keep: int) -> None:
    with open(blob, "rb", buffering=0) as f:
        while keep > 0 and (chunk := f.read(min(READ_CHUNK, keep))):
            _append(ingest, fd, chunk)
            keep -= len(chunk)
