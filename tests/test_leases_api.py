"""Leases API against a real agent: leases, their labels and resources, per namespace."""

from __future__ import annotations

import re
import time

import grpc
import pytest
from grpc_helpers import (
    assert_error,
    channel,
    namespace_for,
    needs_root,
    ns_md,
    rpc_error,
    running_agent,
)

from agent.api.containerd.services.leases.v1 import leases_pb2 as api
from agent.api.containerd.services.leases.v1 import leases_pb2_grpc as api_grpc

pytestmark = needs_root

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def agent():
    with running_agent() as a:
        yield a


@pytest.fixture(scope="module")
def stub(agent):
    ch = channel(agent)
    yield api_grpc.LeasesStub(ch)
    ch.close()


@pytest.fixture
def ns(request):
    return namespace_for(request.node.name)


def create(stub, ns, lease_id="", **labels):
    return stub.Create(api.CreateRequest(id=lease_id, labels=labels), metadata=ns_md(ns)).lease


def listed(stub, ns, *filters):
    return [lease.id for lease in stub.List(api.ListRequest(filters=list(filters)),
                                            metadata=ns_md(ns)).leases]


def resources(stub, ns, lease_id):
    resp = stub.ListResources(api.ListResourcesRequest(id=lease_id), metadata=ns_md(ns))
    return [(r.type, r.id) for r in resp.resources]


def add(stub, ns, lease_id, rtype, rid):
    stub.AddResource(api.AddResourceRequest(id=lease_id, resource=api.Resource(
        type=rtype, id=rid)), metadata=ns_md(ns))


def test_create_as_ctr_does(stub, ns):
    before = time.time()
    lease = create(stub, ns, "1234567-a_-Z", **{"containerd.io/gc.expire": "2030-01-01T00:00:00Z"})
    assert lease.id == "1234567-a_-Z"  # ctr's ids are not identifiers: "_-" must pass
    assert dict(lease.labels) == {"containerd.io/gc.expire": "2030-01-01T00:00:00Z"}
    assert before - 1 <= lease.created_at.seconds <= time.time() + 1
    got = stub.List(api.ListRequest(), metadata=ns_md(ns)).leases
    assert list(got) == [lease]


def test_create_without_id_generates_one(stub, ns):
    a, b = create(stub, ns), create(stub, ns)
    assert re.fullmatch(r"\d+-[A-Za-z0-9_-]{4}", a.id), a.id
    assert a.id != b.id
    assert sorted(listed(stub, ns)) == sorted([a.id, b.id])


def test_create_twice_is_already_exists(stub, ns):
    create(stub, ns, "l1", a="1")
    err = rpc_error(create, stub, ns, "l1", a="2")
    assert_error(err, grpc.StatusCode.ALREADY_EXISTS, 'lease "l1": already exists')
    assert dict(stub.List(api.ListRequest(), metadata=ns_md(ns)).leases[0].labels) == {"a": "1"}


def test_list_filters(stub, ns):
    create(stub, ns, "l1", kind="build")
    create(stub, ns, "l2", kind="pull")
    create(stub, ns, "l3")
    assert listed(stub, ns) == ["l1", "l2", "l3"]
    assert listed(stub, ns, "id==l2") == ["l2"]
    assert listed(stub, ns, "labels.kind==build") == ["l1"]
    assert listed(stub, ns, 'labels."kind"') == ["l1", "l2"]
    assert listed(stub, ns, "labels.kind!=build") == ["l2", "l3"]
    assert listed(stub, ns, "id==l1", "id==l3") == ["l1", "l3"]
    err = rpc_error(listed, stub, ns, "id==")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_leases_are_per_namespace(stub, ns):
    create(stub, f"{ns}-a", "same", side="a")
    create(stub, f"{ns}-b", "same", side="b")
    assert listed(stub, f"{ns}-c") == []
    stub.Delete(api.DeleteRequest(id="same"), metadata=ns_md(f"{ns}-a"))
    assert listed(stub, f"{ns}-a") == []
    assert listed(stub, f"{ns}-b") == ["same"]
    err = rpc_error(resources, stub, f"{ns}-a", "same")
    assert_error(err, grpc.StatusCode.NOT_FOUND, 'lease "same": not found')


def test_delete(stub, ns):
    create(stub, ns, "l1")
    stub.Delete(api.DeleteRequest(id="l1"), metadata=ns_md(ns))
    assert listed(stub, ns) == []
    err = rpc_error(stub.Delete, api.DeleteRequest(id="l1"), metadata=ns_md(ns))
    assert_error(err, grpc.StatusCode.NOT_FOUND, 'lease "l1": not found')
    stub.Delete(api.DeleteRequest(id=create(stub, ns).id, sync=True), metadata=ns_md(ns))


def test_resources(stub, ns):
    create(stub, ns, "l1")
    add(stub, ns, "l1", "snapshots/overlayfs", "snap-1")
    add(stub, ns, "l1", "ingests", "ingest-ref")
    add(stub, ns, "l1", "content", DIGEST)
    add(stub, ns, "l1", "content", DIGEST)  # adding twice holds it once
    add(stub, ns, "l1", "snapshots/native", "snap-0")
    assert resources(stub, ns, "l1") == [
        ("content", DIGEST), ("ingests", "ingest-ref"),
        ("snapshots/native", "snap-0"), ("snapshots/overlayfs", "snap-1"),
    ]
    stub.DeleteResource(api.DeleteResourceRequest(id="l1", resource=api.Resource(
        type="ingests", id="ingest-ref")), metadata=ns_md(ns))
    stub.DeleteResource(api.DeleteResourceRequest(id="l1", resource=api.Resource(
        type="ingests", id="never-added")), metadata=ns_md(ns))
    assert resources(stub, ns, "l1") == [
        ("content", DIGEST), ("snapshots/native", "snap-0"), ("snapshots/overlayfs", "snap-1"),
    ]
    # Deleting the lease releases what it held.
    stub.Delete(api.DeleteRequest(id="l1"), metadata=ns_md(ns))
    create(stub, ns, "l1")
    assert resources(stub, ns, "l1") == []


@pytest.mark.parametrize("rtype, rid, code, message", [
    ("content", "sha256:abc", grpc.StatusCode.INVALID_ARGUMENT,
     "invalid content resource id sha256:abc: invalid checksum digest length: invalid argument"),
    ("content", "md5:" + "a" * 32, grpc.StatusCode.INVALID_ARGUMENT,
     (f"invalid content resource id md5:{'a' * 32}: unsupported digest algorithm: "
      "invalid argument")),
    ("content", "nodigest", grpc.StatusCode.INVALID_ARGUMENT,
     "invalid content resource id nodigest: invalid checksum digest format: invalid argument"),
    ("content/x", DIGEST, grpc.StatusCode.INVALID_ARGUMENT,
     "invalid resource type content/x: invalid argument"),
    ("snapshots", "k", grpc.StatusCode.INVALID_ARGUMENT,
     "invalid snapshot resource type snapshots: invalid argument"),
    ("snapshots/a/b", "k", grpc.StatusCode.INVALID_ARGUMENT,
     "invalid snapshot resource type snapshots/a/b: invalid argument"),
    ("images", "x", grpc.StatusCode.UNIMPLEMENTED,
     "resource type images not supported yet: not implemented"),
    ("ingests", "", grpc.StatusCode.INVALID_ARGUMENT,
     "resource id must be set for resource type ingests"),
])
def test_invalid_resources(stub, ns, rtype, rid, code, message):
    create(stub, ns, "l1")
    assert_error(rpc_error(add, stub, ns, "l1", rtype, rid), code, message)
    assert resources(stub, ns, "l1") == []


def test_resource_calls_on_a_missing_lease_are_not_found(stub, ns):
    err = rpc_error(add, stub, ns, "nope", "content", DIGEST)
    assert_error(err, grpc.StatusCode.NOT_FOUND, 'lease "nope": not found')
    err = rpc_error(stub.DeleteResource, api.DeleteResourceRequest(
        id="nope", resource=api.Resource(type="content", id=DIGEST)), metadata=ns_md(ns))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_namespace_header_is_required(stub):
    err = rpc_error(stub.Create, api.CreateRequest(id="x"))
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "namespace is required")
    err = rpc_error(stub.List, api.ListRequest(), metadata=ns_md("a/b"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
