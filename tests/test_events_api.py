"""Events API against a real agent: container and namespace events in order, Publish,
Forward and Subscribe filters."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf.any_pb2 import Any
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_helpers import (
    READY_TOPIC,
    RUNC_OPTIONS_TYPE,
    EventReader,
    assert_error,
    channel,
    ctr_container,
    namespace_for,
    needs_root,
    ns_md,
    rpc_error,
    running_agent,
)

from agent.api.containerd.events import container_pb2, namespace_pb2, task_pb2
from agent.api.containerd.services.containers.v1 import containers_pb2 as capi
from agent.api.containerd.services.containers.v1 import containers_pb2_grpc as capi_grpc
from agent.api.containerd.services.events.v1 import events_pb2 as api
from agent.api.containerd.services.events.v1 import events_pb2_grpc as api_grpc
from agent.api.containerd.services.namespaces.v1 import namespace_pb2 as napi
from agent.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as napi_grpc

pytestmark = needs_root

READY = f'topic=="{READY_TOPIC}"'


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
def ns(request):
    return namespace_for(request.node.name)


@pytest.fixture
def subscribe(agent):
    readers = []

    def make(*filters):
        reader = EventReader(agent, list(filters) + [READY] if filters else [])
        readers.append(reader)
        reader.ready(agent)
        return reader

    yield make
    for r in readers:
        r.close()


def ts(env):
    return (env.timestamp.seconds, env.timestamp.nanos)


def test_container_events_arrive_in_order_with_their_payloads(ch, ns, subscribe):
    reader = subscribe()
    containers = capi_grpc.ContainersStub(ch)
    md = ns_md(ns)
    before = time.time_ns()
    containers.Create(capi.CreateContainerRequest(container=ctr_container(
        "c1", image="busybox")), metadata=md)
    created = time.time_ns()
    update = capi.UpdateContainerRequest(container=capi.Container(id="c1", labels={"k": "v"}))
    update.update_mask.CopyFrom(FieldMask(paths=["labels.k"]))
    containers.Update(update, metadata=md)
    containers.Delete(capi.DeleteContainerRequest(id="c1"), metadata=md)

    got = reader.take(3, "/containers/")
    assert [(e.namespace, e.topic, e.event.type_url) for e in got] == [
        (ns, "/containers/create", "containerd.events.ContainerCreate"),
        (ns, "/containers/update", "containerd.events.ContainerUpdate"),
        (ns, "/containers/delete", "containerd.events.ContainerDelete"),
    ]
    assert ts(got[0]) <= ts(got[1]) <= ts(got[2])
    # Stamped by the agent while it made the container, on the same clock as ours.
    assert before <= got[0].timestamp.ToNanoseconds() <= created
    create = container_pb2.ContainerCreate.FromString(got[0].event.value)
    assert (create.id, create.image, create.runtime.name) == ("c1", "busybox",
                                                             "io.containerd.runc.v2")
    assert create.runtime.options.type_url == RUNC_OPTIONS_TYPE
    upd = container_pb2.ContainerUpdate.FromString(got[1].event.value)
    assert (upd.id, upd.image, dict(upd.labels)) == ("c1", "busybox", {"k": "v"})
    assert container_pb2.ContainerDelete.FromString(got[2].event.value).id == "c1"


def test_failed_calls_publish_nothing(ch, ns, subscribe):
    reader = subscribe()
    containers = capi_grpc.ContainersStub(ch)
    bad = ctr_container("c1")
    bad.ClearField("spec")
    rpc_error(containers.Create, capi.CreateContainerRequest(container=bad), metadata=ns_md(ns))
    rpc_error(containers.Delete, capi.DeleteContainerRequest(id="c1"), metadata=ns_md(ns))
    containers.Create(capi.CreateContainerRequest(container=ctr_container("c2")),
                      metadata=ns_md(ns))
    env = reader.take(1, "/containers/")[0]
    assert container_pb2.ContainerCreate.FromString(env.event.value).id == "c2"


def test_namespace_events(ch, ns, subscribe):
    reader = subscribe("topic~=^/namespaces/")
    stub = napi_grpc.NamespacesStub(ch)
    stub.Create(napi.CreateNamespaceRequest(namespace=napi.Namespace(
        name=ns, labels={"a": "1"})), metadata=ns_md("caller"))
    stub.Update(napi.UpdateNamespaceRequest(namespace=napi.Namespace(
        name=ns, labels={"b": "2"})))
    stub.Delete(napi.DeleteNamespaceRequest(name=ns))
    got = reader.take(3)
    assert [(e.namespace, e.topic) for e in got] == [
        ("caller", "/namespaces/create"), (ns, "/namespaces/update"), (ns, "/namespaces/delete")]
    created = namespace_pb2.NamespaceCreate.FromString(got[0].event.value)
    assert (created.name, dict(created.labels)) == (ns, {"a": "1"})
    updated = namespace_pb2.NamespaceUpdate.FromString(got[1].event.value)
    assert (updated.name, dict(updated.labels)) == (ns, {"b": "2"})
    assert namespace_pb2.NamespaceDelete.FromString(got[2].event.value).name == ns


def test_subscribe_filters_on_topic_namespace_and_event_fields(ch, ns, subscribe):
    deletes = subscribe('topic=="/containers/delete"')
    in_ns = subscribe(f"namespace=={ns}-b")
    by_id = subscribe("event.id==pick")
    containers = capi_grpc.ContainersStub(ch)
    for space in (f"{ns}-a", f"{ns}-b"):
        for cid in ("pick", "other"):
            containers.Create(capi.CreateContainerRequest(container=ctr_container(cid)),
                              metadata=ns_md(space))
            containers.Delete(capi.DeleteContainerRequest(id=cid), metadata=ns_md(space))

    got = deletes.take(4)
    assert [(e.namespace, e.topic) for e in got] == [
        (f"{ns}-a", "/containers/delete"), (f"{ns}-a", "/containers/delete"),
        (f"{ns}-b", "/containers/delete"), (f"{ns}-b", "/containers/delete")]
    got = in_ns.take(4)
    assert {e.namespace for e in got} == {f"{ns}-b"}
    assert [e.topic for e in got] == ["/containers/create", "/containers/delete"] * 2
    got = by_id.take(4)
    assert [(e.namespace, e.topic) for e in got] == [
        (f"{ns}-a", "/containers/create"), (f"{ns}-a", "/containers/delete"),
        (f"{ns}-b", "/containers/create"), (f"{ns}-b", "/containers/delete")]


def test_publish_forwards_the_any_as_is_and_decodes_known_types(ch, ns, subscribe):
    reader = subscribe("event.container_id==c9")
    exit_event = task_pb2.TaskExit(container_id="c9", id="c9", pid=42, exit_status=3)
    sent = Any(type_url="containerd.events.TaskExit", value=exit_event.SerializeToString())
    stub = api_grpc.EventsStub(ch)
    before = time.time_ns()
    stub.Publish(api.PublishRequest(topic="/tasks/exit", event=sent), metadata=ns_md(ns))
    published = time.time_ns()
    # Unknown types still travel, but cannot match an event field filter.
    stub.Publish(api.PublishRequest(topic="/custom/thing", event=Any(
        type_url="example.Unknown", value=b"\x0a\x02c9")), metadata=ns_md(ns))
    env = reader.take(1)[0]
    assert (env.namespace, env.topic) == (ns, "/tasks/exit")
    assert env.event == sent
    assert before <= env.timestamp.ToNanoseconds() <= published  # stamped when published


@pytest.mark.parametrize("topic", ["", "tasks/exit", "/", "/tasks//exit", "/tasks/ex it",
                                   "/tasks/" + "x" * 77])
def test_publish_refuses_bad_topics(ch, ns, topic):
    err = rpc_error(api_grpc.EventsStub(ch).Publish, api.PublishRequest(
        topic=topic, event=Any(type_url="x")), metadata=ns_md(ns))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(f"envelope topic {topic!r}: ")


def test_publish_needs_a_namespace(ch):
    err = rpc_error(api_grpc.EventsStub(ch).Publish, api.PublishRequest(
        topic="/a/b", event=Any(type_url="x")))
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "namespace is required")


def test_forward_keeps_the_envelope(ch, subscribe):
    reader = subscribe("topic==/forwarded/event")
    env = api.Envelope(namespace="elsewhere", topic="/forwarded/event",
                       event=Any(type_url="containerd.events.TaskOOM",
                                 value=task_pb2.TaskOOM(container_id="x").SerializeToString()))
    env.timestamp.seconds, env.timestamp.nanos = 1_600_000_000, 123
    api_grpc.EventsStub(ch).Forward(api.ForwardRequest(envelope=env))
    assert reader.take(1)[0] == env


@pytest.mark.parametrize("change, message", [
    (lambda e: setattr(e, "namespace", "a/b"), "event envelope has invalid namespace"),
    (lambda e: setattr(e, "topic", "nope"), "envelope topic 'nope'"),
    (lambda e: e.ClearField("timestamp"), "timestamp must be set on forwarded event"),
    (lambda e: setattr(e.timestamp, "seconds", -62135596800),
     "timestamp must be set on forwarded event"),
])
def test_forward_refuses_bad_envelopes(ch, change, message):
    env = api.Envelope(namespace="ns", topic="/a/b", event=Any(type_url="x"))
    env.timestamp.seconds = 1_600_000_000
    change(env)
    err = rpc_error(api_grpc.EventsStub(ch).Forward, api.ForwardRequest(envelope=env))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(message)


def test_subscribe_with_a_malformed_filter_is_invalid_argument(ch):
    call = api_grpc.EventsStub(ch).Subscribe(api.SubscribeRequest(filters=["topic=="]))
    err = rpc_error(lambda: next(call))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_subscribe_never_ends_on_its_own(agent):
    reader = EventReader(agent)
    reader.ready(agent)
    time.sleep(1.0)
    assert not reader.call.done()
    assert reader.events.empty()
    reader.close()
    assert reader.call.code() == grpc.StatusCode.CANCELLED
