"""Introspection and Version against a real agent: plugin statuses, filters, a stable UUID."""

from __future__ import annotations

import os
import platform
import uuid

import grpc
import pytest
from google.protobuf.empty_pb2 import Empty
from grpc_helpers import (
    NO_REQUIRED_PLUGINS,
    channel,
    needs_root,
    restartable_agents,
    rpc_error,
    running_agent,
)

import agent as agent_pkg
from agent import plugin
from agent.api.containerd.services.introspection.v1 import introspection_pb2 as api
from agent.api.containerd.services.introspection.v1 import introspection_pb2_grpc as api_grpc
from agent.api.containerd.services.version.v1 import version_pb2_grpc
from agent.errors import NotFound
from agent.services.introspection.local import host_platform, init_error

OURS = {
    (plugin.EVENT, "exchange"): [],
    (plugin.METADATA, "sqlite"): [],
    (plugin.SERVICE, "containers-service"): [plugin.METADATA, plugin.EVENT],
    (plugin.SERVICE, "namespaces-service"): [plugin.METADATA, plugin.EVENT],
    (plugin.SERVICE, "leases-service"): [plugin.METADATA, plugin.GC],
    (plugin.SERVICE, "introspection-service"): [],
    (plugin.GRPC, "containers"): [plugin.SERVICE],
    (plugin.GRPC, "namespaces"): [plugin.SERVICE],
    (plugin.GRPC, "leases"): [plugin.SERVICE],
    (plugin.GRPC, "introspection"): [plugin.SERVICE],
    (plugin.GRPC, "events"): [plugin.EVENT],
    (plugin.GRPC, "version"): [],
}


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
    yield api_grpc.IntrospectionStub(ch)
    ch.close()


def plugins(stub, *filters):
    return list(stub.Plugins(api.PluginsRequest(filters=list(filters))).plugins)


@needs_root
def test_our_plugins_are_listed_ok_with_their_requirements(stub):
    found = {(p.type, p.id): p for p in plugins(stub)}
    for key, requires in OURS.items():
        p = found[key]
        assert not p.HasField("init_err"), (key, p.init_err)
        assert list(p.requires) == requires, key
        assert list(p.platforms) == []
    # Init order: each plugin after the types it requires.
    order = [(p.type, p.id) for p in plugins(stub)]
    assert order.index((plugin.METADATA, "sqlite")) < order.index(
        (plugin.SERVICE, "containers-service")) < order.index((plugin.GRPC, "containers"))


@needs_root
def test_runtime_plugins_name_the_host_platform(stub):
    runtimes = plugins(stub, f"type=={plugin.RUNTIME}")
    assert [p.id for p in runtimes] == ["native"]
    for p in runtimes:
        assert list(p.platforms) == [host_platform()]
    assert host_platform().os == "linux"
    if platform.machine() == "x86_64":
        assert host_platform().architecture == "amd64"


@needs_root
def test_plugin_filters(stub):
    grpc_ids = {p.id for p in plugins(stub, f"type=={plugin.GRPC}")}
    assert {"containers", "namespaces", "leases", "introspection", "events", "version"} <= grpc_ids
    assert all(p.type == plugin.GRPC for p in plugins(stub, f"type=={plugin.GRPC}"))
    assert [(p.type, p.id) for p in plugins(stub, "id==containers")] == [
        (plugin.GRPC, "containers")]
    assert [p.id for p in plugins(stub, f"type=={plugin.SERVICE},id==leases-service")] == [
        "leases-service"]
    both = plugins(stub, "id==version", "id==sqlite")
    assert sorted(p.id for p in both) == ["sqlite", "version"]
    assert plugins(stub, 'id~="^contain"') == plugins(stub, "id~=^contain")
    # Lists cannot be matched by containerd's filters, so these never match.
    assert plugins(stub, "platforms==linux/amd64") == []
    assert plugins(stub, "capabilities") == []
    err = rpc_error(plugins, stub, "id==")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


@needs_root
def test_a_failed_plugin_carries_its_error_and_so_do_its_dependents():
    config = NO_REQUIRED_PLUGINS + (
        '[plugins."io.containerd.metadata.v1.sqlite"]\nsynchronous = "sometimes"\n')
    with running_agent(config) as a, channel(a) as ch:
        found = {(p.type, p.id): p for p in plugins(api_grpc.IntrospectionStub(ch))}
    meta = found[(plugin.METADATA, "sqlite")]
    assert meta.init_err.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert meta.init_err.message == (
        "metadata synchronous mode 'sometimes' is not one of normal, full")
    for key in ((plugin.SERVICE, "containers-service"), (plugin.GRPC, "containers")):
        assert found[key].init_err.message == meta.init_err.message
    assert not found[(plugin.GRPC, "version")].HasField("init_err")


def test_init_error_statuses():
    skipped = init_error(plugin.SkipPlugin("no cgroup v1 here"))
    assert (skipped.code, skipped.message) == (2, "skip plugin: no cgroup v1 here")
    assert init_error(NotFound("gone")).code == grpc.StatusCode.NOT_FOUND.value[0]
    assert init_error(OSError(13, "Permission denied")).code == 2


@needs_root
def test_server_uuid_is_stable_across_restarts(restart):
    first = restart().start()
    with channel(first) as ch:
        u1 = api_grpc.IntrospectionStub(ch).Server(Empty()).uuid
        assert api_grpc.IntrospectionStub(ch).Server(Empty()).uuid == u1
    assert str(uuid.UUID(u1)) == u1
    path = os.path.join(first.root, f"{plugin.SERVICE}.introspection-service", "uuid")
    with open(path) as f:
        assert f.read() == u1
    first.stop()
    second = restart(base=first.base).start()
    with channel(second) as ch:
        assert api_grpc.IntrospectionStub(ch).Server(Empty()).uuid == u1
    other = restart().start()
    with channel(other) as ch:
        assert api_grpc.IntrospectionStub(ch).Server(Empty()).uuid != u1


@needs_root
def test_version(agent):
    with channel(agent) as ch:
        resp = version_pb2_grpc.VersionStub(ch).Version(Empty())
    assert resp.version == agent_pkg.__version__
    assert resp.revision
