"""Namespaces API against a real agent: implicit creation, labels, guarded deletion."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_helpers import (
    assert_error,
    channel,
    ctr_container,
    namespace_for,
    needs_root,
    ns_md,
    rpc_error,
    running_agent,
)

from agent.api.containerd.services.containers.v1 import containers_pb2 as capi
from agent.api.containerd.services.containers.v1 import containers_pb2_grpc as capi_grpc
from agent.api.containerd.services.leases.v1 import leases_pb2 as lapi
from agent.api.containerd.services.leases.v1 import leases_pb2_grpc as lapi_grpc
from agent.api.containerd.services.namespaces.v1 import namespace_pb2 as api
from agent.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as api_grpc

pytestmark = needs_root


@pytest.fixture(scope="module")
def agent():
    with running_agent() as a:
        yield a


@pytest.fixture(scope="module")
def ch(agent):
    c = channel(agent)
    yield c
    c.close()


@pytest.fixture
def stub(ch):
    return api_grpc.NamespacesStub(ch)


@pytest.fixture
def ns(request):
    return namespace_for(request.node.name)


def names(stub):
    return [n.name for n in stub.List(api.ListNamespacesRequest()).namespaces]


def get_labels(stub, name):
    return dict(stub.Get(api.GetNamespaceRequest(name=name)).namespace.labels)


def test_a_container_create_brings_its_namespace_into_existence(stub, ch, ns):
    assert ns not in names(stub)
    capi_grpc.ContainersStub(ch).Create(
        capi.CreateContainerRequest(container=ctr_container("c1")), metadata=ns_md(ns))
    listed = {n.name: dict(n.labels) for n in stub.List(api.ListNamespacesRequest()).namespaces}
    assert listed[ns] == {}


def test_a_lease_create_brings_its_namespace_into_existence(stub, ch, ns):
    lapi_grpc.LeasesStub(ch).Create(lapi.CreateRequest(id="l1"), metadata=ns_md(ns))
    assert ns in names(stub)


def test_reads_do_not_create_namespaces(stub, ch, ns):
    capi_grpc.ContainersStub(ch).List(capi.ListContainersRequest(), metadata=ns_md(ns))
    assert ns not in names(stub)


def test_create_get_list(stub, ns):
    resp = stub.Create(api.CreateNamespaceRequest(
        namespace=api.Namespace(name=ns, labels={"team": "a", "empty": ""})))
    assert resp.namespace == api.Namespace(name=ns, labels={"team": "a"})
    assert get_labels(stub, ns) == {"team": "a"}
    listed = list(stub.List(api.ListNamespacesRequest()).namespaces)
    assert [n.name for n in listed] == sorted(n.name for n in listed)
    assert api.Namespace(name=ns, labels={"team": "a"}) in listed
    err = rpc_error(stub.Create, api.CreateNamespaceRequest(namespace=api.Namespace(name=ns)))
    assert_error(err, grpc.StatusCode.ALREADY_EXISTS, f'namespace "{ns}": already exists')


def test_list_filter(stub, ns):
    stub.Create(api.CreateNamespaceRequest(namespace=api.Namespace(
        name=ns, labels={"pick": "me"})))
    listed = stub.List(api.ListNamespacesRequest(filter="labels.pick==me")).namespaces
    assert [n.name for n in listed] == [ns]
    listed = stub.List(api.ListNamespacesRequest(filter=f"name=={ns}")).namespaces
    assert [n.name for n in listed] == [ns]


def test_get_of_an_unknown_namespace_answers_with_no_labels(stub, ns):
    # containerd does the same; its Go client reads the default namespace's labels on connect.
    assert stub.Get(api.GetNamespaceRequest(name=ns)).namespace == api.Namespace(name=ns)
    assert ns not in names(stub)


@pytest.mark.parametrize("bad", ["a/b", "..", "", "a" * 77])
def test_invalid_names_are_invalid_argument(stub, bad):
    for call, req in (
        (stub.Create, api.CreateNamespaceRequest(namespace=api.Namespace(name=bad))),
        (stub.Get, api.GetNamespaceRequest(name=bad)),
        (stub.Update, api.UpdateNamespaceRequest(namespace=api.Namespace(name=bad))),
        (stub.Delete, api.DeleteNamespaceRequest(name=bad)),
    ):
        assert rpc_error(call, req).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_update_labels(stub, ns):
    stub.Create(api.CreateNamespaceRequest(namespace=api.Namespace(
        name=ns, labels={"a": "1", "b": "2"})))

    def update(labels, *paths):
        req = api.UpdateNamespaceRequest(namespace=api.Namespace(name=ns, labels=labels))
        if paths:
            req.update_mask.CopyFrom(FieldMask(paths=list(paths)))
        return dict(stub.Update(req).namespace.labels)

    assert update({"c": "3", "a": "ignored"}, "labels.c", "labels.b") == {"a": "1", "c": "3"}
    assert get_labels(stub, ns) == {"a": "1", "c": "3"}
    assert update({"x": "9"}) == {"x": "9"}  # no mask: replace
    assert update({"y": "8"}, "labels") == {"y": "8"}
    assert get_labels(stub, ns) == {"y": "8"}
    err = rpc_error(update, {"y": "7"}, "name")
    assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, 'cannot update "name" field')
    assert get_labels(stub, ns) == {"y": "8"}


def test_update_creates_a_missing_namespace(stub, ns):
    req = api.UpdateNamespaceRequest(namespace=api.Namespace(name=ns, labels={"k": "v"}))
    assert stub.Update(req).namespace == api.Namespace(name=ns, labels={"k": "v"})
    assert ns in names(stub)


def test_delete_is_refused_while_the_namespace_holds_containers_or_leases(stub, ch, ns):
    containers = capi_grpc.ContainersStub(ch)
    leases = lapi_grpc.LeasesStub(ch)
    containers.Create(capi.CreateContainerRequest(container=ctr_container("c1")),
                      metadata=ns_md(ns))
    leases.Create(lapi.CreateRequest(id="l1"), metadata=ns_md(ns))
    err = rpc_error(stub.Delete, api.DeleteNamespaceRequest(name=ns))
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION,
                 f'namespace "{ns}" must be empty, but it still has containers, leases: '
                 "failed precondition")
    containers.Delete(capi.DeleteContainerRequest(id="c1"), metadata=ns_md(ns))
    err = rpc_error(stub.Delete, api.DeleteNamespaceRequest(name=ns))
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION,
                 f'namespace "{ns}" must be empty, but it still has leases: failed precondition')
    assert ns in names(stub)
    leases.Delete(lapi.DeleteRequest(id="l1"), metadata=ns_md(ns))
    stub.Delete(api.DeleteNamespaceRequest(name=ns))
    assert ns not in names(stub)
    err = rpc_error(stub.Delete, api.DeleteNamespaceRequest(name=ns))
    assert_error(err, grpc.StatusCode.NOT_FOUND, f'namespace "{ns}": not found')


def test_namespaces_calls_need_no_header(stub, ns):
    stub.Create(api.CreateNamespaceRequest(namespace=api.Namespace(name=ns)))
    stub.Get(api.GetNamespaceRequest(name=ns))
    stub.Delete(api.DeleteNamespaceRequest(name=ns))
