"""Helpers for the content, images and GC tests: a Content/Write stream driven one request
at a time (as containerd's client drives it), blob paths, and namespace clean-up."""

from __future__ import annotations

import hashlib
import os
import queue
import time
from typing import Self

import grpc
from conftest import AgentProcess
from grpc_helpers import NO_REQUIRED_PLUGINS, ns_md

from agent.api.containerd.services.content.v1 import content_pb2 as capi
from agent.api.containerd.services.content.v1 import content_pb2_grpc as capi_grpc
from agent.api.containerd.services.images.v1 import images_pb2 as iapi
from agent.api.containerd.services.images.v1 import images_pb2_grpc as iapi_grpc
from agent.api.containerd.services.leases.v1 import leases_pb2 as lapi
from agent.api.containerd.services.leases.v1 import leases_pb2_grpc as lapi_grpc
from agent.api.containerd.services.namespaces.v1 import namespace_pb2 as napi
from agent.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as napi_grpc

STAT, WRITE, COMMIT = capi.STAT, capi.WRITE, capi.COMMIT
MiB = 1 << 20
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()
CONTENT_PLUGIN_DIR = "io.containerd.content.v1.content"
GC_PLUGIN = "io.containerd.gc.v1.scheduler"

# Collection only on request (deletes with sync): content written outside any lease is
# garbage by containerd's rules, and API tests must not lose it while they look at it.
# test_gc.py covers the collector's own timing.
GC_ON_REQUEST = NO_REQUIRED_PLUGINS + (
    f'[plugins."{GC_PLUGIN}"]\n'
    '  startup_delay = "1h"\n  schedule_delay = "1h"\n  interval = "1h"\n'
)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def metadata(namespace: str, lease: str | None = None) -> tuple[tuple[str, str], ...]:
    md = ns_md(namespace)
    return md + ((("containerd-lease", lease),) if lease else ())


class WriteSession:
    """One Content/Write stream: `send` puts one request and reads its one reply."""

    def __init__(self, stub: capi_grpc.ContentStub, namespace: str, lease: str | None = None):
        self._requests: queue.Queue = queue.Queue()
        self.call = stub.Write(iter(self._requests.get, None), metadata=metadata(namespace, lease))

    def send(self, **fields: object) -> capi.WriteContentResponse:
        self._requests.put(capi.WriteContentRequest(**fields))
        return next(self.call)

    def close(self) -> None:
        """Half-close the request side (ends the request thread of the grpc client)."""
        self._requests.put(None)

    def cancel(self) -> None:
        """The client goes away mid-stream."""
        self.call.cancel()
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self.call.cancel()


def open_write(stub: capi_grpc.ContentStub, namespace: str, lease: str | None = None,
               tries: int = 500, **first: object
               ) -> tuple[WriteSession, capi.WriteContentResponse]:
    """Start a stream with `first`, retrying while the ref is still locked by a writer that
    went away (UNAVAILABLE), as containerd's client does."""
    for attempt in range(tries):
        session = WriteSession(stub, namespace, lease)
        try:
            return session, session.send(**first)
        except grpc.RpcError as e:
            session.close()
            if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == tries - 1:
                raise
            time.sleep(0.02)
    raise AssertionError("unreachable")


def write_blob(stub: capi_grpc.ContentStub, namespace: str, data: bytes, ref: str = "",
               labels: dict[str, str] | None = None, lease: str | None = None,
               chunk: int = MiB) -> str:
    """Write and commit `data` (with its expected digest); returns the digest."""
    digest = digest_of(data)
    ref = ref or f"ref-{digest[7:19]}"
    session, reply = open_write(stub, namespace, lease, action=STAT, ref=ref,
                                total=len(data), expected=digest)
    with session:
        offset = reply.offset
        while offset < len(data):
            reply = session.send(action=WRITE, offset=offset, data=data[offset:offset + chunk])
            offset = reply.offset
        reply = session.send(action=COMMIT, offset=offset, total=len(data), expected=digest,
                             labels=labels or {})
    assert (reply.digest, reply.offset) == (digest, len(data))
    return digest


def blob_path(agent: AgentProcess, digest: str) -> str:
    algorithm, hexpart = digest.split(":", 1)
    return os.path.join(agent.root, CONTENT_PLUGIN_DIR, "blobs", algorithm, hexpart)


def ingest_dirs(agent: AgentProcess) -> list[str]:
    return sorted(os.listdir(os.path.join(agent.root, CONTENT_PLUGIN_DIR, "ingest")))


def read_all(stub: capi_grpc.ContentStub, namespace: str, digest: str, offset: int = 0,
             size: int = 0) -> list[capi.ReadContentResponse]:
    return list(stub.Read(capi.ReadContentRequest(digest=digest, offset=offset, size=size),
                          metadata=ns_md(namespace)))


def remove_namespace(ch: grpc.Channel, namespace: str) -> None:
    """Delete everything a test left in a namespace, then the namespace."""
    md = ns_md(namespace)
    images = iapi_grpc.ImagesStub(ch)
    for image in images.List(iapi.ListImagesRequest(), metadata=md).images:
        images.Delete(iapi.DeleteImageRequest(name=image.name), metadata=md)
    leases = lapi_grpc.LeasesStub(ch)
    for lease in leases.List(lapi.ListRequest(), metadata=md).leases:
        leases.Delete(lapi.DeleteRequest(id=lease.id), metadata=md)
    content = capi_grpc.ContentStub(ch)
    for status in content.ListStatuses(capi.ListStatusesRequest(), metadata=md).statuses:
        content.Abort(capi.AbortRequest(ref=status.ref), metadata=md)
    for batch in content.List(capi.ListContentRequest(), metadata=md):
        for info in batch.info:
            content.Delete(capi.DeleteContentRequest(digest=info.digest), metadata=md)
    try:
        napi_grpc.NamespacesStub(ch).Delete(napi.DeleteNamespaceRequest(name=namespace))
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
