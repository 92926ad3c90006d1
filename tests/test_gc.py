"""Garbage collection against a real agent: what leases, images, containers and labels keep,
what goes when they go, and when the collector runs by itself."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from content_support import (
    COMMIT,
    GC_PLUGIN,
    STAT,
    WRITE,
    WriteSession,
    blob_path,
    ingest_dirs,
    remove_namespace,
    write_blob,
)
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_helpers import (
    NO_REQUIRED_PLUGINS,
    assert_error,
    channel,
    ctr_container,
    namespace_for,
    needs_root,
    ns_md,
    rpc_error,
    running_agent,
)
from polling import poll_until

from agent.api.containerd.services.containers.v1 import containers_pb2 as capi
from agent.api.containerd.services.containers.v1 import containers_pb2_grpc as capi_grpc
from agent.api.containerd.services.content.v1 import content_pb2 as api
from agent.api.containerd.services.content.v1 import content_pb2_grpc as api_grpc
from agent.api.containerd.services.images.v1 import images_pb2 as iapi
from agent.api.containerd.services.images.v1 import images_pb2_grpc as iapi_grpc
from agent.api.containerd.services.leases.v1 import leases_pb2 as lapi
from agent.api.containerd.services.leases.v1 import leases_pb2_grpc as lapi_grpc
from agent.api.containerd.types.descriptor_pb2 import Descriptor

pytestmark = needs_root

Code = grpc.StatusCode
INDEX = "application/vnd.oci.image.index.v1+json"
ROOT = "containerd.io/gc.root"
REF = "containerd.io/gc.ref.content"
EXPIRE = "containerd.io/gc.expire"
# A short period, so the test of expiry without any request sees the periodic pass.
CONFIG = NO_REQUIRED_PLUGINS + f'[plugins."{GC_PLUGIN}"]\n  interval = "300ms"\n'


@pytest.fixture(scope="module")
def agent():
    with running_agent(CONFIG) as a:
        yield a


@pytest.fixture(scope="module")
def ch(agent):
    c = channel(agent)
    yield c
    c.close()


@pytest.fixture(scope="module")
def content(ch):
    return api_grpc.ContentStub(ch)


@pytest.fixture(scope="module")
def leases(ch):
    return lapi_grpc.LeasesStub(ch)


@pytest.fixture(scope="module")
def images(ch):
    return iapi_grpc.ImagesStub(ch)


@pytest.fixture
def ns(request, ch):
    name = namespace_for(request.node.name)
    yield name
    remove_namespace(ch, name)


def lease(leases, ns, lease_id, **labels):
    return leases.Create(lapi.CreateRequest(id=lease_id, labels=labels), metadata=ns_md(ns)).lease


def delete_lease(leases, ns, lease_id, sync=True):
    leases.Delete(lapi.DeleteRequest(id=lease_id, sync=sync), metadata=ns_md(ns))


def collect(leases, ns):
    """A full collection, through the public API: delete a lease with sync."""
    lease(leases, ns, "gc-trigger")
    delete_lease(leases, ns, "gc-trigger")


def present(content, ns, *digests):
    out = []
    for digest in digests:
        try:
            content.Info(api.InfoRequest(digest=digest), metadata=ns_md(ns))
            out.append(True)
        except grpc.RpcError as e:
            assert e.code() == Code.NOT_FOUND
            out.append(False)
    return out


def resources(leases, ns, lease_id):
    resp = leases.ListResources(lapi.ListResourcesRequest(id=lease_id), metadata=ns_md(ns))
    return [(r.type, r.id) for r in resp.resources]


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_lease_keeps_content_until_deleted(agent, content, leases, ns):
    lease(leases, ns, "work")
    digest = write_blob(content, ns, b"leased bytes", ref="leased", lease="work")
    # Written under the lease: the ingest became content of the lease.
    assert resources(leases, ns, "work") == [("content", digest)]
    collect(leases, ns)
    assert present(content, ns, digest) == [True]
    delete_lease(leases, ns, "work")  # sync: returns after a collection
    assert present(content, ns, digest) == [False]
    assert not os.path.exists(blob_path(agent, digest))


def test_deleting_a_lease_collects_without_sync(agent, content, leases, ns):
    lease(leases, ns, "async")
    digest = write_blob(content, ns, b"collected soon", lease="async")
    delete_lease(leases, ns, "async", sync=False)
    poll_until(lambda: present(content, ns, digest) == [False], "the blob collected")
    assert not os.path.exists(blob_path(agent, digest))


def test_expired_lease_is_removed_with_its_content(agent, content, leases, ns):
    expires = datetime.now(UTC) + timedelta(seconds=3)  # whole seconds on the wire
    lease(leases, ns, "short", **{EXPIRE: rfc3339(expires)})
    lease(leases, ns, "odd", **{EXPIRE: "tomorrow"})  # unparsable: ignored, as containerd
    short = write_blob(content, ns, b"expires", lease="short")
    odd = write_blob(content, ns, b"kept by a lease with a bad label", lease="odd")
    collect(leases, ns)
    assert present(content, ns, short, odd) == [True, True]
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.1)
    # The periodic pass (300 ms here) acts on the expiry with no request at all.
    poll_until(lambda: present(content, ns, short) == [False], "the expired lease's blob collected")
    assert present(content, ns, short, odd) == [False, True]
    assert not os.path.exists(blob_path(agent, short))
    ids = [x.id for x in leases.List(lapi.ListRequest(), metadata=ns_md(ns)).leases]
    assert ids == ["odd"]


def test_images_and_label_chains_keep_content(agent, content, leases, images, ns):
    lease(leases, ns, "pull")
    leaf = write_blob(content, ns, b"leaf layer", lease="pull")
    middle = write_blob(content, ns, b"manifest", lease="pull", labels={f"{REF}.l0": leaf})
    top = write_blob(content, ns, b"index", lease="pull", labels={f"{REF}/m": middle})
    loose = write_blob(content, ns, b"nobody wants me", lease="pull")
    rooted_child = write_blob(content, ns, b"child of a root", lease="pull")
    rooted = write_blob(content, ns, b"root", lease="pull",
                        labels={ROOT: "2030-01-01T00:00:00Z", REF: rooted_child})
    images.Create(iapi.CreateImageRequest(image=iapi.Image(
        name="example.com/chain:1", target=Descriptor(media_type=INDEX, digest=top, size=5))),
        metadata=ns_md(ns))
    delete_lease(leases, ns, "pull")
    assert present(content, ns, leaf, middle, top, loose, rooted, rooted_child) == [
        True, True, True, False, True, True]
    assert not os.path.exists(blob_path(agent, loose))

    images.Delete(iapi.DeleteImageRequest(name="example.com/chain:1", sync=True),
                  metadata=ns_md(ns))
    assert present(content, ns, leaf, middle, top, rooted, rooted_child) == [
        False, False, False, True, True]
    for digest in (leaf, middle, top):
        assert not os.path.exists(blob_path(agent, digest))

    # Removing the root label frees the root and what it references.
    content.Update(api.UpdateRequest(info=api.Info(digest=rooted),
                                     update_mask=FieldMask(paths=[f"labels.{ROOT}"])),
                   metadata=ns_md(ns))
    collect(leases, ns)
    assert present(content, ns, rooted, rooted_child) == [False, False]


def test_container_labels_keep_content(content, leases, ch, ns):
    lease(leases, ns, "c")
    digest = write_blob(content, ns, b"checkpoint config", lease="c")
    containers = capi_grpc.ContainersStub(ch)
    containers.Create(capi.CreateContainerRequest(
        container=ctr_container("keeper", labels={f"{REF}.checkpoint": digest})),
        metadata=ns_md(ns))
    delete_lease(leases, ns, "c")
    assert present(content, ns, digest) == [True]
    containers.Delete(capi.DeleteContainerRequest(id="keeper"), metadata=ns_md(ns))
    collect(leases, ns)
    assert present(content, ns, digest) == [False]


def test_flat_lease_does_not_follow_references(content, leases, ns):
    lease(leases, ns, "tmp")
    child = write_blob(content, ns, b"child", lease="tmp")
    parent = write_blob(content, ns, b"parent", lease="tmp", labels={REF: child})
    lease(leases, ns, "flat", **{"containerd.io/gc.flat": "x"})
    leases.AddResource(lapi.AddResourceRequest(id="flat", resource=lapi.Resource(
        type="content", id=parent)), metadata=ns_md(ns))
    delete_lease(leases, ns, "tmp")
    assert present(content, ns, parent, child) == [True, False]


def test_ingests_follow_their_lease(agent, content, leases, ns):
    lease(leases, ns, "partial")
    with WriteSession(content, ns, lease="partial") as s:
        s.send(action=STAT, ref="leased-ingest", total=10)
        s.send(action=WRITE, offset=0, data=b"12345")
    with WriteSession(content, ns) as s:  # no lease: kept for 24 hours
        s.send(action=STAT, ref="free-ingest")
    assert resources(leases, ns, "partial") == [("ingests", "leased-ingest")]
    collect(leases, ns)
    refs = [s.ref for s in content.ListStatuses(api.ListStatusesRequest(),
                                                metadata=ns_md(ns)).statuses]
    assert refs == ["free-ingest", "leased-ingest"]
    delete_lease(leases, ns, "partial")
    refs = [s.ref for s in content.ListStatuses(api.ListStatusesRequest(),
                                                metadata=ns_md(ns)).statuses]
    assert refs == ["free-ingest"]
    assert len(ingest_dirs(agent)) == 1
    content.Abort(api.AbortRequest(ref="free-ingest"), metadata=ns_md(ns))
    assert ingest_dirs(agent) == []


def test_writing_under_a_missing_lease_is_refused(content, ns):
    with WriteSession(content, ns, lease="no-such-lease") as s:
        err = rpc_error(s.send, action=STAT, ref="orphan")
    assert_error(err, Code.NOT_FOUND, 'lease "no-such-lease": not found')
    assert list(content.ListStatuses(api.ListStatusesRequest(),
                                     metadata=ns_md(ns)).statuses) == []


def test_blob_shared_by_namespaces_stays_while_one_sees_it(agent, content, leases, ch,
                                                            request):
    a, b = namespace_for(request.node.name + "-a"), namespace_for(request.node.name + "-b")
    try:
        lease(leases, a, "la")
        lease(leases, b, "lb")
        digest = write_blob(content, a, b"in two namespaces", lease="la")
        with WriteSession(content, b, lease="lb") as s:  # shared: no bytes sent
            reply = s.send(action=STAT, ref="copy", expected=digest)
            assert reply.offset == len(b"in two namespaces")
            s.send(action=COMMIT, offset=reply.offset, expected=digest)
        delete_lease(leases, a, "la")
        assert present(content, a, digest) == [False]
        assert present(content, b, digest) == [True]
        assert os.path.exists(blob_path(agent, digest))
        delete_lease(leases, b, "lb")
        assert present(content, b, digest) == [False]
        assert not os.path.exists(blob_path(agent, digest))
    finally:
        remove_namespace(ch, a)
        remove_namespace(ch, b)


def test_commit_under_lease_then_already_exists_leases_it_too(content, leases, ns):
    lease(leases, ns, "first")
    digest = write_blob(content, ns, b"twice", lease="first")
    lease(leases, ns, "second")
    with WriteSession(content, ns, lease="second") as s:
        err = rpc_error(s.send, action=STAT, ref="again", expected=digest)
    assert err.code() == Code.ALREADY_EXISTS
    # The second client's lease now protects what it asked for, as in containerd.
    assert resources(leases, ns, "second") == [("content", digest)]
    delete_lease(leases, ns, "first")
    assert present(content, ns, digest) == [True]
    delete_lease(leases, ns, "second")
    assert present(content, ns, digest) == [False]
