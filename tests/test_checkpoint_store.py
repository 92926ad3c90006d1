"""A checkpoint's image tar goes into the content store only whole: when writing the tar
fails, nothing is committed (a stream cut short must not become a stored checkpoint)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from agent.services.tasks import checkpoints


class FakeWriter:
    def __init__(self):
        self.data = bytearray()
        self.closed = False

    async def write(self, chunk: bytes) -> None:
        self.data += chunk

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def close(self) -> None:
        self.closed = True


class FakeContent:
    def __init__(self):
        self.writers: list[FakeWriter] = []
        self.committed: list[bytes] = []

    async def writer(self, namespace, ref, lease=None):
        self.writers.append(FakeWriter())
        return self.writers[-1]

    async def commit(self, writer, size, lease=None):
        assert size == len(writer.data)
        self.committed.append(bytes(writer.data))


def test_a_failed_tar_commits_nothing(tmp_path):
    content = FakeContent()
    with pytest.raises(Exception) as e:
        asyncio.run(checkpoints.store_image(content, "ns", str(tmp_path / "missing"), None))
    assert "missing" in str(e.value)
    assert content.committed == []
    assert [w.closed for w in content.writers] == [True]


def test_a_whole_tar_is_committed(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "pages-1.img").write_bytes(b"x" * 100_000)
    content = FakeContent()
    desc = asyncio.run(checkpoints.store_image(content, "ns", str(tmp_path / "img"), None))
    assert len(content.committed) == 1
    blob = content.committed[0]
    assert desc.size == len(blob) and desc.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert b"pages-1.img" in blob and blob.count(b"x" * 1000) >= 100
