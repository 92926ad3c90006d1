"""Images API against a real agent: records as `ctr task checkpoint` makes them, update
masks, filters, events, validation, and per-namespace rules."""

from __future__ import annotations

import time

import grpc
import pytest
from content_support import GC_ON_REQUEST, remove_namespace
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_helpers import (
    EventReader,
    assert_error,
    channel,
    namespace_for,
    needs_root,
    ns_md,
    rpc_error,
    running_agent,
)

from agent.api.containerd.events import image_pb2 as events
from agent.api.containerd.services.images.v1 import images_pb2 as api
from agent.api.containerd.services.images.v1 import images_pb2_grpc as api_grpc
from agent.api.containerd.services.namespaces.v1 import namespace_pb2 as napi
from agent.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as napi_grpc
from agent.api.containerd.types.descriptor_pb2 import Descriptor

pytestmark = needs_root

Code = grpc.StatusCode
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
CHECKPOINT = "containerd.io/checkpoint/c1:12-03-2026-15:04:05"


@pytest.fixture(scope="module")
def agent():
    with running_agent(GC_ON_REQUEST) as a:
        yield a


@pytest.fixture(scope="module")
def ch(agent):
    c = channel(agent)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(ch):
    return api_grpc.ImagesStub(ch)


@pytest.fixture
def ns(request, ch):
    name = namespace_for(request.node.name)
    yield name
    remove_namespace(ch, name)


def image(name=CHECKPOINT, digest=D1, size=314, media_type=INDEX, labels=None,
          annotations=None):
    return api.Image(name=name, labels=labels or {}, target=Descriptor(
        media_type=media_type, digest=digest, size=size, annotations=annotations or {}))


def create(stub, ns, img):
    return stub.Create(api.CreateImageRequest(image=img), metadata=ns_md(ns)).image


def names(stub, ns, *filters):
    resp = stub.List(api.ListImagesRequest(filters=list(filters)), metadata=ns_md(ns))
    return [i.name for i in resp.images]


def update(stub, ns, img, *paths):
    req = api.UpdateImageRequest(image=img)
    if paths:
        req.update_mask.CopyFrom(FieldMask(paths=list(paths)))
    return stub.Update(req, metadata=ns_md(ns)).image


def test_create_as_ctr_checkpoint_does(stub, ns):
    before = time.time()
    created = create(stub, ns, image(labels={"containerd.io/checkpoint": "true"}))
    assert created.name == CHECKPOINT
    assert dict(created.labels) == {"containerd.io/checkpoint": "true"}
    assert (created.target.media_type, created.target.digest, created.target.size) == (
        INDEX, D1, 314)
    assert before - 1 <= created.created_at.seconds <= time.time() + 1
    assert created.created_at == created.updated_at
    got = stub.Get(api.GetImageRequest(name=CHECKPOINT), metadata=ns_md(ns)).image
    assert got == created
    assert list(stub.List(api.ListImagesRequest(), metadata=ns_md(ns)).images) == [created]
    err = rpc_error(create, stub, ns, image(digest=D2))
    assert_error(err, Code.ALREADY_EXISTS, f'image "{CHECKPOINT}": already exists')
    assert stub.Get(api.GetImageRequest(name=CHECKPOINT), metadata=ns_md(ns)).image == created


@pytest.mark.parametrize("bad, code, message", [
    (image(name=""), Code.INVALID_ARGUMENT, "Image.Name required"),
    (image(name="has space"), Code.INVALID_ARGUMENT,
     ("image name 'has space' must not contain whitespace or control characters: "
      "invalid argument")),
    (image(name="x" * 4097), Code.INVALID_ARGUMENT,
     "image name is 4097 characters; at most 4096 are allowed: invalid argument"),
    (image(digest=""), Code.INVALID_ARGUMENT,
     'Target.Digest "" invalid: invalid checksum digest format: invalid argument'),
    (image(digest="sha256:abc"), Code.INVALID_ARGUMENT,
     'Target.Digest "sha256:abc" invalid: invalid checksum digest length: invalid argument'),
    (image(size=0), Code.INVALID_ARGUMENT,
     "Target.Size must be greater than zero: invalid argument"),
    (image(media_type=""), Code.INVALID_ARGUMENT, "Target.MediaType must be set: invalid argument"),
    (image(labels={"k": "v" * 4096}), Code.INVALID_ARGUMENT, None),
])
def test_bad_create_stores_nothing(stub, ns, bad, code, message):
    assert_error(rpc_error(create, stub, ns, bad), code, message)
    assert names(stub, ns) == []


def test_update_masks(stub, ns):
    created = create(stub, ns, image(labels={"a": "1", "b": "2"}, annotations={"x": "1"}))
    got = update(stub, ns, image(labels={"a": "9"}), "labels.a")
    assert dict(got.labels) == {"a": "9", "b": "2"}
    assert got.created_at == created.created_at
    assert (got.updated_at.seconds, got.updated_at.nanos) > (created.updated_at.seconds,
                                                             created.updated_at.nanos)
    got = update(stub, ns, image(labels={}), "labels.b")
    assert dict(got.labels) == {"a": "9"}
    got = update(stub, ns, image(labels={"c": "3"}), "labels")
    assert dict(got.labels) == {"c": "3"}
    got = update(stub, ns, image(annotations={"y": "2"}), "annotations.y")
    assert dict(got.target.annotations) == {"x": "1", "y": "2"}
    got = update(stub, ns, image(annotations={"z": "3"}), "annotations")
    assert dict(got.target.annotations) == {"z": "3"}
    got = update(stub, ns, image(digest=D2, size=7, media_type=MANIFEST), "target")
    assert (got.target.media_type, got.target.digest, got.target.size,
            dict(got.target.annotations)) == (MANIFEST, D2, 7, {})
    assert dict(got.labels) == {"c": "3"}
    # No mask: everything is replaced, the creation time kept.
    got = update(stub, ns, image(labels={"only": "this"}))
    assert (dict(got.labels), got.target.digest, got.target.size) == ({"only": "this"}, D1, 314)
    assert got.created_at == created.created_at
    assert stub.Get(api.GetImageRequest(name=CHECKPOINT), metadata=ns_md(ns)).image == got


def test_bad_update_changes_nothing(stub, ns):
    created = create(stub, ns, image(labels={"a": "1"}))
    assert_error(rpc_error(update, stub, ns, image(), "name"), Code.INVALID_ARGUMENT,
                 f'cannot update "name" field on image "{CHECKPOINT}": invalid argument')
    assert_error(rpc_error(update, stub, ns, image(size=0), "target"), Code.INVALID_ARGUMENT,
                 "Target.Size must be greater than zero: invalid argument")
    assert_error(rpc_error(update, stub, ns, image(name="")), Code.INVALID_ARGUMENT,
                 "Image.Name required")
    assert_error(rpc_error(update, stub, ns, image(name="missing")), Code.NOT_FOUND,
                 'image "missing": not found')
    assert stub.Get(api.GetImageRequest(name=CHECKPOINT), metadata=ns_md(ns)).image == created


def test_list_filters(stub, ns):
    create(stub, ns, image(name="docker.io/library/busybox:latest", media_type=MANIFEST,
                           labels={"team": "a"}, annotations={"org.opencontainers.ref": "1"}))
    create(stub, ns, image(name=CHECKPOINT, digest=D2, labels={"containerd.io/checkpoint": "true"}))
    assert names(stub, ns) == sorted([CHECKPOINT, "docker.io/library/busybox:latest"])
    assert names(stub, ns, f"name=={CHECKPOINT}") == [CHECKPOINT]
    assert names(stub, ns, f"target.mediatype=={MANIFEST}") == ["docker.io/library/busybox:latest"]
    assert names(stub, ns, f"target.digest=={D2}") == [CHECKPOINT]
    assert names(stub, ns, 'labels."containerd.io/checkpoint"==true') == [CHECKPOINT]
    assert names(stub, ns, "labels.team==a") == ["docker.io/library/busybox:latest"]
    assert names(stub, ns, 'annotations."org.opencontainers.ref"') == [
        "docker.io/library/busybox:latest"]
    assert names(stub, ns, "name~=^docker", f"name=={CHECKPOINT}") == sorted(
        [CHECKPOINT, "docker.io/library/busybox:latest"])
    assert names(stub, ns, "name==none") == []
    assert_error(rpc_error(names, stub, ns, "name=="), Code.INVALID_ARGUMENT)


def test_get_and_delete_unknown(stub, ns):
    assert_error(rpc_error(stub.Get, api.GetImageRequest(name="nope"), metadata=ns_md(ns)),
                 Code.NOT_FOUND, 'image "nope": not found')
    assert_error(rpc_error(stub.Delete, api.DeleteImageRequest(name="nope"), metadata=ns_md(ns)),
                 Code.NOT_FOUND, 'image "nope": not found')
    assert_error(rpc_error(stub.List, api.ListImagesRequest()), Code.FAILED_PRECONDITION,
                 "namespace is required")


def test_events_in_order(agent, stub, ns):
    reader = EventReader(agent, [f"namespace=={ns}"])
    try:
        reader.ready(agent, ns)
        create(stub, ns, image(labels={"a": "1"}))
        update(stub, ns, image(labels={"a": "2"}), "labels")
        stub.Delete(api.DeleteImageRequest(name=CHECKPOINT), metadata=ns_md(ns))
        got = reader.take(3, "/images/")
    finally:
        reader.close()
    assert [(e.namespace, e.topic, e.event.type_url) for e in got] == [
        (ns, "/images/create", "containerd.services.images.v1.ImageCreate"),
        (ns, "/images/update", "containerd.services.images.v1.ImageUpdate"),
        (ns, "/images/delete", "containerd.services.images.v1.ImageDelete"),
    ]
    assert events.ImageCreate.FromString(got[0].event.value) == events.ImageCreate(
        name=CHECKPOINT, labels={"a": "1"})
    assert events.ImageUpdate.FromString(got[1].event.value) == events.ImageUpdate(
        name=CHECKPOINT, labels={"a": "2"})
    assert events.ImageDelete.FromString(got[2].event.value) == events.ImageDelete(
        name=CHECKPOINT)
    assert names(stub, ns) == []


def test_namespaces_are_separate(ch, stub, request):
    a, b = namespace_for(request.node.name + "-a"), namespace_for(request.node.name + "-b")
    try:
        create(stub, a, image())
        assert names(stub, b) == []
        assert_error(rpc_error(stub.Get, api.GetImageRequest(name=CHECKPOINT),
                               metadata=ns_md(b)), Code.NOT_FOUND)
        create(stub, b, image(digest=D2))  # the same name in another namespace
        assert stub.Get(api.GetImageRequest(name=CHECKPOINT),
                        metadata=ns_md(a)).image.target.digest == D1
        err = rpc_error(napi_grpc.NamespacesStub(ch).Delete, napi.DeleteNamespaceRequest(name=a))
        assert err.code() == Code.FAILED_PRECONDITION
        assert "images" in err.details()
        stub.Delete(api.DeleteImageRequest(name=CHECKPOINT, sync=True), metadata=ns_md(a))
        assert names(stub, a) == []
        assert names(stub, b) == [CHECKPOINT]
    finally:
        remove_namespace(ch, a)
        remove_namespace(ch, b)
