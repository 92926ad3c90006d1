"""Checkpoint images in the content store: the CRIU image directory as a tar blob
(written with the native tar, streamed, never whole in memory) and the container's spec
beside it, as containerd stores them; and the way back, a blob applied into a directory."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from agent.api.containerd.types import descriptor_pb2
from agent.api.runc import options_pb2
from agent.errors import AlreadyExists, InvalidArgument
from agent.native import tar
from agent.runtime.native.checkpoint import CheckpointRequest

CHECKPOINT_MEDIA_TYPE = "application/vnd.containerd.container.criu.checkpoint.criu.tar"
CONFIG_MEDIA_TYPE = "application/vnd.containerd.container.checkpoint.config.v1+proto"
OPTIONS_TYPE = "containerd.runc.v1.CheckpointOptions"
CHUNK = 1 << 20


def request_from(options: Any, default_image_path: str) -> tuple[CheckpointRequest, bool]:
    """The CRIU request for containerd's runc CheckpointOptions; True when the images stay
    where the client asked (image_path) instead of going to the content store."""
    opts = options_pb2.CheckpointOptions()
    if options is not None and options.value:
        if not options.type_url.endswith(OPTIONS_TYPE):
            raise InvalidArgument(f"checkpoint options of type {options.type_url!r} are not "
                                  f"{OPTIONS_TYPE}")
        opts = options_pb2.CheckpointOptions.FromString(options.value)
    req = CheckpointRequest(
        image_path=opts.image_path or default_image_path, work_path=opts.work_path,
        exit=opts.exit, open_tcp=opts.open_tcp,
        external_unix_sockets=opts.external_unix_sockets, terminal=opts.terminal,
        file_locks=opts.file_locks, empty_namespaces=list(opts.empty_namespaces),
        cgroups_mode=opts.cgroups_mode)
    return req, bool(opts.image_path)


async def _write(content: Any, namespace: str, chunks, lease: str | None,
                 produced: asyncio.Future | None = None) -> tuple[str, int]:
    """Store the chunks as one blob. `produced` is what makes them: its failure (a stream cut
    short) raises before anything is committed."""
    writer = await content.writer(namespace, f"checkpoint-{uuid.uuid4().hex}", lease=lease)
    size = 0
    try:
        async for chunk in chunks:
            await writer.write(chunk)
            size += len(chunk)
        if produced is not None:
            await produced
        digest = writer.digest
        try:
            await content.commit(writer, size, lease=lease)
        except AlreadyExists:
            pass  # the very same bytes are stored already
        return digest, size
    except BaseException:
        writer.close()
        raise


async def store_image(content: Any, namespace: str, image_dir: str, lease: str | None
                      ) -> descriptor_pb2.Descriptor:
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()

    def diff() -> None:
        try:
            tar.diff(image_dir, write_fd)
        finally:
            os.close(write_fd)

    producing = loop.run_in_executor(None, diff)
    stream = asyncio.StreamReader(limit=CHUNK)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream),
                                                os.fdopen(read_fd, "rb", 0))

    async def chunks():
        while chunk := await stream.read(CHUNK):
            yield chunk

    try:
        digest, size = await _write(content, namespace, chunks(), lease, producing)
    finally:
        transport.close()  # a producer still writing then fails, and stops
        await asyncio.wait([producing])
        if not producing.cancelled():
            producing.exception()  # raised above when it mattered; retrieved here either way
    return descriptor_pb2.Descriptor(media_type=CHECKPOINT_MEDIA_TYPE, digest=digest, size=size)


async def store_config(content: Any, namespace: str, spec_any: Any, lease: str | None
                       ) -> descriptor_pb2.Descriptor:
    data = spec_any.SerializeToString()

    async def chunks():
        yield data

    digest, size = await _write(content, namespace, chunks(), lease)
    return descriptor_pb2.Descriptor(media_type=CONFIG_MEDIA_TYPE, digest=digest, size=size)


async def unpack(content: Any, namespace: str, desc: Any, dest: str) -> None:
    if desc.media_type != CHECKPOINT_MEDIA_TYPE:
        raise InvalidArgument(f"unsupported checkpoint type {desc.media_type!r}")
    content.info(namespace, desc.digest)  # NotFound when this namespace does not have it
    path = content.blobs.path(desc.digest)

    def apply() -> None:
        with open(path, "rb") as blob:
            tar.apply(blob, dest)

    await asyncio.get_running_loop().run_in_executor(None, apply)
