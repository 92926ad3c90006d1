"""Committed blobs on disk: `<root>/blobs/<algorithm>/<hex>`.

A blob is written once: its bytes are first written and synced in an ingest directory on
the same filesystem, then renamed into place, so a blob file is always complete. Blob files
are made read-only. They are shared by every namespace; which namespaces may see one is
the metadata's business (`agent.content.records`)."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from agent.errors import NotFound

# Reads and syncs run here so the event loop never waits on the disk.
IO_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="content-io")

READ_CHUNK = 1 << 20  # containerd's buffer; also keeps each Read message far below 16 MiB


class BlobStore:
    def __init__(self, root: str):
        self.dir = os.path.join(root, "blobs")
        os.makedirs(os.path.join(self.dir, "sha256"), mode=0o755, exist_ok=True)

    def path(self, digest: str) -> str:
        """The file of a digest that the caller has already validated."""
        algorithm, _, encoded = digest.partition(":")
        return os.path.join(self.dir, algorithm, encoded)

    def size(self, digest: str) -> int | None:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            return None

    def install(self, digest: str, source: str) -> bool:
        """Rename a finished, synced file into place; False (and nothing moved) when the
        blob is already there."""
        target = self.path(digest)
        if os.path.exists(target):
            return False
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.chmod(source, 0o444)
        os.rename(source, target)
        return True

    def remove(self, digest: str) -> bool:
        try:
            os.unlink(self.path(digest))
            return True
        except FileNotFoundError:
            return False

    def digests(self) -> list[str]:
        """Every blob on disk, as `<algorithm>:<hex>`."""
        found = []
        for algorithm in os.listdir(self.dir):
            base = os.path.join(self.dir, algorithm)
            if os.path.isdir(base):
                found += [f"{algorithm}:{name}" for name in os.listdir(base)]
        return found

    async def sync_dir(self, digest: str) -> None:
        """Make a rename into the blob directory durable."""
        await asyncio.wrap_future(IO_POOL.submit(_fsync_dir, os.path.dirname(self.path(digest))))

    async def read(self, digest: str, offset: int, size: int) -> AsyncIterator[tuple[int, bytes]]:
        """Yield (offset, bytes) chunks of at most READ_CHUNK covering [offset, offset+size)."""
        try:
            fd = os.open(self.path(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from the store: not found") from None
        try:
            end = offset + size
            while offset < end:
                want = min(READ_CHUNK, end - offset)
                data = await asyncio.wrap_future(IO_POOL.submit(os.pread, fd, want, offset))
                if not data:
                    raise OSError(errno.EIO, f"blob {digest} ended at {offset} bytes")
                yield offset, data
                offset += len(data)
        finally:
            os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
