"""Checkpoint images as the containerd client makes them (an OCI index of the CRIU tar and
the spec, recorded as an image), and restoring a container from one."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import orjson
from google.protobuf import any_pb2

from agent.api.containerd.services.content.v1 import content_pb2 as cpb
from agent.api.containerd.services.images.v1 import images_pb2 as ipb
from agent.api.containerd.services.tasks.v1 import tasks_pb2 as tpb
from agent.api.containerd.types import descriptor_pb2
from agent.api.runc import options_pb2

CHECKPOINT_MEDIA_TYPE = "application/vnd.containerd.container.criu.checkpoint.criu.tar"
CONFIG_MEDIA_TYPE = "application/vnd.containerd.container.checkpoint.config.v1+proto"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
OPTIONS_URL = "containerd.runc.v1.CheckpointOptions"


async def read_blob(client: Any, digest: str) -> bytes:
    out = bytearray()
    async for part in client.content.Read(cpb.ReadContentRequest(digest=digest),
                                          metadata=client.md()):
        out += part.data
    return bytes(out)


async def write_blob(client: Any, data: bytes, ref: str, labels: dict[str, str]) -> str:
    from agent.api.containerd.services.content.v1 import content_pb2

    async def requests():
        yield content_pb2.WriteContentRequest(action=content_pb2.STAT, ref=ref)
        yield content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref=ref, offset=0,
                                              data=data)
        yield content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref=ref,
                                              offset=len(data), total=len(data), labels=labels)

    digest = ""
    async for resp in client.content.Write(requests(), metadata=client.md()):
        digest = resp.digest or digest
    return digest


async def checkpoint(client: Any, container_id: str, exit: bool = False,
                     progress: Callable[[str], None] | None = None) -> str:
    """Tasks.Checkpoint, then the index and the image record; returns the image name."""
    req = tpb.CheckpointTaskRequest(container_id=container_id)
    req.options.type_url = OPTIONS_URL
    req.options.value = options_pb2.CheckpointOptions(exit=exit).SerializeToString()
    started = time.monotonic()
    resp = await client.tasks.Checkpoint(req, metadata=client.md())
    if progress:
        total = sum(d.size for d in resp.descriptors)
        progress(f"checkpointed {container_id}: {total / 1e6:.1f} MB in "
                 f"{time.monotonic() - started:.2f}s")
    manifests = [{"mediaType": d.media_type, "digest": d.digest, "size": d.size}
                 for d in resp.descriptors]
    index = json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()
    labels = {f"containerd.io/gc.ref.content.{i}": d.digest for i, d in enumerate(resp.descriptors)}
    digest = await write_blob(client, index, f"checkpoint-index-{container_id}", labels)
    name = f"checkpoint/{container_id}:{time.strftime('%Y%m%d-%H%M%S')}"
    image = ipb.Image(name=name, labels={"containerd.io/checkpoint": "true"},
                      target=descriptor_pb2.Descriptor(media_type=INDEX_MEDIA_TYPE, digest=digest,
                                                       size=len(index)))
    await client.images.Create(ipb.CreateImageRequest(image=image), metadata=client.md())
    return name


async def restore(client: Any, image_name: str, container_id: str, rootfs: str | None = None,
                  progress: Callable[[str], None] | None = None) -> int:
    """A new container and task from a checkpoint image; returns the restored init's pid."""
    image = (await client.images.Get(ipb.GetImageRequest(name=image_name),
                                     metadata=client.md())).image
    index = json.loads(await read_blob(client, image.target.digest))
    found = {m["mediaType"]: m for m in index.get("manifests", [])}
    if CHECKPOINT_MEDIA_TYPE not in found or CONFIG_MEDIA_TYPE not in found:
        raise ValueError(f"image {image_name} is not a task checkpoint")
    spec_any = any_pb2.Any.FromString(await read_blob(client, found[CONFIG_MEDIA_TYPE]["digest"]))
    spec = orjson.loads(spec_any.value)
    if rootfs:
        spec.setdefault("root", {})["path"] = rootfs
    spec.setdefault("linux", {})["cgroupsPath"] = f"/{client.namespace}/{container_id}"
    await client.create_container(container_id, spec)
    cp = found[CHECKPOINT_MEDIA_TYPE]
    if progress:
        progress(f"restoring {container_id} from {cp['size'] / 1e6:.1f} MB of images")
    started = time.monotonic()
    req = tpb.CreateTaskRequest(container_id=container_id, checkpoint=descriptor_pb2.Descriptor(
        media_type=cp["mediaType"], digest=cp["digest"], size=cp["size"]))
    await client.tasks.Create(req, metadata=client.md())
    pid = await client.start(container_id)
    if progress:
        progress(f"restored {container_id} (pid {pid}) in {time.monotonic() - started:.2f}s")
    return pid
