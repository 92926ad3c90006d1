"""Containers API against a real agent: exact records, field masks, filters, errors, namespaces."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf.any_pb2 import Any
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_helpers import (
    RUNC_OPTIONS_TYPE,
    SPEC_TYPE,
    assert_error,
    channel,
    ctr_container,
    namespace_for,
    needs_root,
    ns_md,
    restartable_agents,
    rpc_error,
    running_agent,
    spec_any,
)

from agent.api.containerd.services.containers.v1 import containers_pb2 as api
from agent.api.containerd.services.containers.v1 import containers_pb2_grpc as api_grpc

pytestmark = needs_root

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture
def restart(agent_factory):
    yield from restartable_agents(agent_factory)


@pytest.fixture(scope="module")
def agent():
    with running_agent() as a:
        yield a


@pytest.fixture(scope="module")
def stub(agent):
    ch = channel(agent)
    yield api_grpc.ContainersStub(ch)
    ch.close()


@pytest.fixture
def ns(request):
    return namespace_for(request.node.name)


def create(stub, ns, c):
    return stub.Create(api.CreateContainerRequest(container=c), metadata=ns_md(ns)).container


def get(stub, ns, cid):
    return stub.Get(api.GetContainerRequest(id=cid), metadata=ns_md(ns)).container


def ids(containers):
    return [c.id for c in containers]


def test_create_fills_times_and_keeps_every_field(stub, ns):
    before = time.time()
    sent = ctr_container("c1", labels={"a": "1", "b": "2"}, image="docker.io/library/busybox",
                         snapshotter="overlayfs", snapshot_key="c1-snap")
    sent.extensions["ext"].CopyFrom(Any(type_url="example.Ext", value=b"\x08\x01"))
    created = create(stub, ns, sent)
    after = time.time()

    assert created.id == "c1"
    assert dict(created.labels) == {"a": "1", "b": "2"}
    assert created.image == "docker.io/library/busybox"
    assert created.runtime.name == "io.containerd.runc.v2"
    assert created.runtime.options.type_url == RUNC_OPTIONS_TYPE
    assert created.runtime.options.value == b""
    assert created.spec.type_url == SPEC_TYPE
    assert created.spec.value == sent.spec.value
    assert created.snapshotter == "overlayfs"
    assert created.snapshot_key == "c1-snap"
    assert created.extensions["ext"].type_url == "example.Ext"
    assert created.extensions["ext"].value == b"\x08\x01"
    # ctr sends Go's zero time; the server sets its own clock.
    assert created.created_at == created.updated_at
    assert before - 1 <= created.created_at.seconds <= after + 1
    assert get(stub, ns, "c1") == created


def test_create_drops_empty_label_values(stub, ns):
    created = create(stub, ns, ctr_container("c1", labels={"keep": "v", "empty": ""}))
    assert dict(created.labels) == {"keep": "v"}
    assert dict(get(stub, ns, "c1").labels) == {"keep": "v"}


def test_create_twice_is_already_exists_and_keeps_the_first(stub, ns):
    first = create(stub, ns, ctr_container("dup", image="first"))
    err = rpc_error(create, stub, ns, ctr_container("dup", image="second"))
    assert_error(err, grpc.StatusCode.ALREADY_EXISTS, 'container "dup": already exists')
    assert get(stub, ns, "dup") == first


def test_get_missing_is_not_found_with_containerd_message(stub, ns):
    err = rpc_error(get, stub, ns, "nope")
    assert_error(err, NOT_FOUND, f'container "nope" in namespace "{ns}": not found')


def test_same_id_in_two_namespaces_is_two_containers(stub, ns):
    a, b, c = f"{ns}-a", f"{ns}-b", f"{ns}-c"
    create(stub, a, ctr_container("same", image="image-a"))
    create(stub, b, ctr_container("same", image="image-b", labels={"in": "b"}))
    assert get(stub, a, "same").image == "image-a"
    got_b = get(stub, b, "same")
    assert (got_b.image, dict(got_b.labels)) == ("image-b", {"in": "b"})
    assert_error(rpc_error(get, stub, c, "same"), NOT_FOUND,
                 f'container "same" in namespace "{c}": not found')
    stub.Delete(api.DeleteContainerRequest(id="same"), metadata=ns_md(a))
    assert get(stub, b, "same").image == "image-b"
    assert ids(stub.List(api.ListContainersRequest(), metadata=ns_md(a)).containers) == []


@pytest.mark.parametrize("bad_id", ["a/b", "..", "a..b", "-a", "a" * 77, "a b", "é"])
def test_create_refuses_invalid_ids(stub, ns, bad_id):
    err = rpc_error(create, stub, ns, ctr_container(bad_id))
    assert err.code() == INVALID
    assert err.details().startswith("create container failed validation: container.ID: ")


def test_create_accepts_the_longest_id(stub, ns):
    assert create(stub, ns, ctr_container("a" * 76)).id == "a" * 76


@pytest.mark.parametrize("change, message", [
    (lambda c: c.ClearField("spec"), "container.Spec must be set"),
    (lambda c: c.ClearField("runtime"), "container.Runtime.Name must be set"),
    (lambda c: setattr(c, "snapshot_key", "k"),
     "container.Snapshotter must be set if container.SnapshotKey is set"),
    (lambda c: c.extensions[""].CopyFrom(Any(type_url="x")),
     "container.Extension keys must not be zero-length"),
])
def test_create_validation_messages(stub, ns, change, message):
    c = ctr_container("c1")
    change(c)
    err = rpc_error(create, stub, ns, c)
    assert_error(err, INVALID, f"create container failed validation: {message}: invalid argument")
    assert_error(rpc_error(get, stub, ns, "c1"), NOT_FOUND)


def test_label_size_limit_is_4096_bytes_of_key_and_value(stub, ns):
    create(stub, ns, ctr_container("fits", labels={"k": "v" * 4095}))
    err = rpc_error(create, stub, ns, ctr_container("big", labels={"key": "v" * 4094}))
    assert_error(err, INVALID,
                 "create container failed validation: containers.Labels: label key and value "
                 "greater than maximum size (4096 bytes), key: key: invalid argument")


def test_list_is_sorted_and_filters_like_containerd(stub, ns):
    create(stub, ns, ctr_container("web", image="nginx", labels={"tier": "front", "a.b": "x"}))
    create(stub, ns, ctr_container("db", image="postgres", labels={"tier": "back"}))
    other = ctr_container("job")
    other.runtime.name = "io.containerd.other.v1"
    create(stub, ns, other)

    def listed(*filters):
        resp = stub.List(api.ListContainersRequest(filters=list(filters)), metadata=ns_md(ns))
        return ids(resp.containers)

    assert listed() == ["db", "job", "web"]
    assert listed("id==web") == ["web"]
    assert listed("image==postgres") == ["db"]
    assert listed("image") == ["db", "web"]  # present: image set
    assert listed('labels."tier"==front') == ["web"]
    assert listed("labels.tier==back") == ["db"]
    assert listed('labels."a.b"==x') == ["web"]
    assert listed("labels.tier!=front") == ["db", "job"]
    assert listed("runtime.name==io.containerd.other.v1") == ["job"]
    assert listed('id~="^(web|db)$"') == ["db", "web"]
    assert listed("image==nginx,labels.tier==back") == []
    assert listed("image==nginx", "image==postgres") == ["db", "web"]  # several: OR
    assert listed("image==nginx|id==job") == ["job", "web"]
    assert listed("snapshotter==overlayfs") == []  # not a container filter field


def test_list_stream_sends_one_message_per_container(stub, ns):
    for cid in ("s2", "s1", "s3"):
        create(stub, ns, ctr_container(cid, labels={"n": cid}))
    streamed = [m.container for m in stub.ListStream(
        api.ListContainersRequest(filters=["labels.n!=s2"]), metadata=ns_md(ns))]
    assert ids(streamed) == ["s1", "s3"]
    assert streamed[0] == get(stub, ns, "s1")


@pytest.mark.parametrize("bad", ["id==", "labels.", "id~=(", "==x", "id=x"])
def test_malformed_filters_are_invalid_argument(stub, ns, bad):
    err = rpc_error(stub.List, api.ListContainersRequest(filters=[bad]), metadata=ns_md(ns))
    assert err.code() == INVALID
    err = rpc_error(lambda: list(stub.ListStream(api.ListContainersRequest(filters=[bad]),
                                                 metadata=ns_md(ns))))
    assert err.code() == INVALID


def update(stub, ns, c, *paths):
    req = api.UpdateContainerRequest(container=c)
    if paths:
        req.update_mask.CopyFrom(FieldMask(paths=list(paths)))
    return stub.Update(req, metadata=ns_md(ns)).container


def test_update_with_label_paths(stub, ns):
    original = create(stub, ns, ctr_container("c1", labels={"keep": "1", "drop": "2"}))
    time.sleep(0.01)
    change = api.Container(id="c1", labels={"new": "3", "keep": "ignored-not-in-mask"})
    updated = update(stub, ns, change, "labels.new", "labels.drop")
    assert dict(updated.labels) == {"keep": "1", "new": "3"}
    # Everything else is untouched, created_at included; updated_at moves on.
    assert updated.spec == original.spec and updated.runtime == original.runtime
    assert updated.created_at == original.created_at
    assert (updated.updated_at.seconds, updated.updated_at.nanos) > (
        original.updated_at.seconds, original.updated_at.nanos)
    assert get(stub, ns, "c1") == updated


def test_update_labels_path_replaces_all(stub, ns):
    create(stub, ns, ctr_container("c1", labels={"a": "1"}, image="img"))
    updated = update(stub, ns, api.Container(id="c1", labels={"b": "2", "c": ""}), "labels")
    assert dict(updated.labels) == {"b": "2"}
    assert updated.image == "img"


def test_update_image_spec_snapshotkey_extensions(stub, ns):
    create(stub, ns, ctr_container("c1", image="old", snapshotter="overlayfs"))
    change = api.Container(id="c1", image="new", spec=spec_any(b'{"new":true}'),
                           snapshot_key="k2")
    change.extensions["e"].CopyFrom(Any(type_url="x.E", value=b"1"))
    updated = update(stub, ns, change, "image", "spec", "snapshotkey", "extensions")
    assert (updated.image, updated.spec.value, updated.snapshot_key) == (
        "new", b'{"new":true}', "k2")
    assert dict(updated.extensions)["e"].value == b"1"
    updated = update(stub, ns, api.Container(id="c1"), "extensions.e")
    assert len(updated.extensions) == 0


@pytest.mark.parametrize("path", ["runtime", "snapshotter", "id", "created_at", "bogus"])
def test_update_refuses_immutable_and_unknown_paths(stub, ns, path):
    original = create(stub, ns, ctr_container("c1"))
    change = ctr_container("c1", image="changed", snapshotter="other")
    err = rpc_error(update, stub, ns, change, "image", path)
    assert_error(err, INVALID, f'cannot update "{path}" field on "c1": invalid argument')
    assert get(stub, ns, "c1") == original  # a refused update changes nothing


def test_update_without_mask_replaces_mutable_fields(stub, ns):
    original = create(stub, ns, ctr_container("c1", labels={"a": "1"}, image="old",
                                               snapshotter="overlayfs", snapshot_key="k1"))
    change = ctr_container("c1", labels={"b": "2"}, image="new", snapshotter="overlayfs",
                           snapshot_key="k2", spec=spec_any(b"{}"))
    change.runtime.options.value = b"\x08\x01"  # runtime options are not replaced
    updated = update(stub, ns, change)
    assert dict(updated.labels) == {"b": "2"}
    assert (updated.image, updated.snapshot_key, updated.spec.value) == ("new", "k2", b"{}")
    assert updated.runtime == original.runtime


def test_update_without_mask_refuses_changed_runtime_or_snapshotter(stub, ns):
    create(stub, ns, ctr_container("c1", snapshotter="overlayfs"))
    change = ctr_container("c1", snapshotter="native")
    assert_error(rpc_error(update, stub, ns, change), INVALID,
                 "container.Snapshotter field is immutable: invalid argument")
    change = ctr_container("c1", snapshotter="overlayfs")
    change.runtime.name = "io.containerd.other.v1"
    assert_error(rpc_error(update, stub, ns, change), INVALID,
                 "container.Runtime.Name field is immutable: invalid argument")


def test_update_that_fails_validation_changes_nothing(stub, ns):
    original = create(stub, ns, ctr_container("c1"))
    err = rpc_error(update, stub, ns, api.Container(id="c1"), "spec")
    assert_error(err, INVALID,
                 "update failed validation: container.Spec must be set: invalid argument")
    assert get(stub, ns, "c1") == original


def test_update_missing_and_without_id(stub, ns):
    create(stub, ns, ctr_container("exists"))
    assert_error(rpc_error(update, stub, ns, ctr_container("nope"), "image"), NOT_FOUND,
                 'container "nope": not found')
    assert_error(rpc_error(update, stub, f"{ns}-empty", ctr_container("nope"), "image"),
                 NOT_FOUND, f'cannot update container "nope" in namespace "{ns}-empty": '
                 "not found")
    assert_error(rpc_error(update, stub, ns, api.Container(image="x"), "image"), INVALID,
                 "Container.ID required")


def test_delete(stub, ns):
    create(stub, ns, ctr_container("c1"))
    create(stub, ns, ctr_container("c2"))
    stub.Delete(api.DeleteContainerRequest(id="c1"), metadata=ns_md(ns))
    assert_error(rpc_error(get, stub, ns, "c1"), NOT_FOUND)
    assert ids(stub.List(api.ListContainersRequest(), metadata=ns_md(ns)).containers) == ["c2"]
    err = rpc_error(stub.Delete, api.DeleteContainerRequest(id="c1"), metadata=ns_md(ns))
    assert_error(err, NOT_FOUND, "container c1: not found")
    # The id is free again.
    assert create(stub, ns, ctr_container("c1")).id == "c1"


def test_namespace_header_is_required_and_validated(stub):
    err = rpc_error(stub.Get, api.GetContainerRequest(id="x"))
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "namespace is required")
    err = rpc_error(stub.List, api.ListContainersRequest(), metadata=ns_md(""))
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "namespace is required")
    for bad in ("a/b", "..", "a" * 77):
        err = rpc_error(stub.Create, api.CreateContainerRequest(container=ctr_container("x")),
                        metadata=ns_md(bad))
        assert err.code() == INVALID, bad


def test_records_survive_an_agent_restart(restart):
    first = restart().start()
    with channel(first) as ch:
        created = create(api_grpc.ContainersStub(ch), "persist", ctr_container(
            "kept", labels={"x": "y"}))
    first.stop()
    second = restart(base=first.base).start()
    with channel(second) as ch:
        assert get(api_grpc.ContainersStub(ch), "persist", "kept") == created
