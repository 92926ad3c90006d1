"""containerd's own `ctr` (Debian's 1.6.20 at /usr/bin/ctr) against our socket: version,
plugins, namespaces and containers commands."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from google.protobuf.empty_pb2 import Empty
from grpc_helpers import channel, needs_root, running_agent

import agent as agent_pkg
from agent.api.containerd.services.introspection.v1 import introspection_pb2_grpc
from agent.api.containerd.services.namespaces.v1 import namespace_pb2 as napi
from agent.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as napi_grpc

CTR = "/usr/bin/ctr"

if not os.access(CTR, os.X_OK):
    print(f"skipping ctr tests: {CTR} is not installed (apt-get install containerd)")
    pytest.skip(f"{CTR} is not installed (Debian's containerd package provides it)",
                allow_module_level=True)

pytestmark = [needs_root, pytest.mark.ctr]

# Every plugin this part of the agent provides; others (tasks, runtime...) may appear too.
OURS = [
    ("io.containerd.event.v1", "exchange"),
    ("io.containerd.metadata.v1", "sqlite"),
    ("io.containerd.service.v1", "containers-service"),
    ("io.containerd.service.v1", "namespaces-service"),
    ("io.containerd.service.v1", "leases-service"),
    ("io.containerd.service.v1", "introspection-service"),
    ("io.containerd.grpc.v1", "containers"),
    ("io.containerd.grpc.v1", "namespaces"),
    ("io.containerd.grpc.v1", "leases"),
    ("io.containerd.grpc.v1", "events"),
    ("io.containerd.grpc.v1", "introspection"),
    ("io.containerd.grpc.v1", "version"),
]


@pytest.fixture(scope="module")
def agent():
    with running_agent() as a:
        yield a


def ctr(agent, *args: str, namespace: str = "default") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["timeout", "-k", "5", "30", CTR, "-a", agent.address, "-n", namespace, *args],
        check=False, capture_output=True, text=True, timeout=60,
    )


def rows(output: str) -> list[list[str]]:
    """A ctr table without its header, split on whitespace."""
    lines = [line.split() for line in output.splitlines() if line.strip()]
    return lines[1:]


def test_version(agent):
    r = ctr(agent, "version")
    assert r.returncode == 0, r.stderr
    server = r.stdout.split("Server:", 1)[1]
    with channel(agent) as ch:
        uuid = introspection_pb2_grpc.IntrospectionStub(ch).Server(Empty()).uuid
    assert f"Version:  {agent_pkg.__version__}\n" in server
    assert f"UUID: {uuid}" in server


def test_plugins_ls(agent):
    r = ctr(agent, "plugins", "ls")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:4] == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    table = {(row[0], row[1]): row[2:] for row in rows(r.stdout)}
    for key in OURS:
        assert table[key] == ["-", "ok"], key
    for (ptype, _), (platforms, status) in table.items():
        if ptype == "io.containerd.runtime.v2":
            assert platforms.startswith("linux/")


def test_plugins_ls_with_a_filter(agent):
    r = ctr(agent, "plugins", "ls", "type==io.containerd.metadata.v1")
    assert r.returncode == 0, r.stderr
    assert rows(r.stdout) == [["io.containerd.metadata.v1", "sqlite", "-", "ok"]]


def test_namespaces_ls(agent):
    with channel(agent) as ch:
        napi_grpc.NamespacesStub(ch).Create(napi.CreateNamespaceRequest(
            namespace=napi.Namespace(name="ctr-ns", labels={"team": "blue"})))
    r = ctr(agent, "namespaces", "ls")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["NAME", "LABELS"]
    assert ["ctr-ns", "team=blue"] in rows(r.stdout)
    r = ctr(agent, "namespaces", "ls", "-q")
    assert "ctr-ns" in r.stdout.split()


def test_containers_ls_is_empty(agent):
    r = ctr(agent, "c", "ls", namespace="ctr-empty")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["CONTAINER", "IMAGE", "RUNTIME"]


def test_container_create_info_ls_rm(agent, tmp_path):
    ns = "ctr-containers"
    r = ctr(agent, "c", "create", "--rootfs", str(tmp_path), "c1", "/bin/true", namespace=ns)
    assert r.returncode == 0, r.stderr
    r = ctr(agent, "c", "create", "--rootfs", str(tmp_path), "c1", "/bin/true", namespace=ns)
    assert r.returncode == 1
    assert 'container "c1": already exists' in r.stderr
    assert rows(ctr(agent, "c", "ls", namespace=ns).stdout) == [
        ["c1", "-", "io.containerd.runc.v2"]]
    info = json.loads(ctr(agent, "c", "info", "c1", namespace=ns).stdout)
    assert info["ID"] == "c1"
    assert info["Runtime"]["Name"] == "io.containerd.runc.v2"
    assert info["Spec"]["process"]["args"] == ["/bin/true"]
    assert info["Spec"]["root"]["path"] == str(tmp_path)
    assert info["CreatedAt"] == info["UpdatedAt"] and not info["CreatedAt"].startswith("0001")
    # ctr's lease was released, so only the container keeps the namespace.
    r = ctr(agent, "namespaces", "rm", ns)
    assert r.returncode == 1
    assert "must be empty, but it still has containers" in r.stderr
    r = ctr(agent, "c", "rm", "c1", namespace=ns)
    assert r.returncode == 0, r.stderr
    r = ctr(agent, "c", "info", "c1", namespace=ns)
    assert r.returncode == 1
    assert f'container "c1" in namespace "{ns}": not found' in r.stderr
    r = ctr(agent, "namespaces", "rm", ns)
    assert r.returncode == 0, r.stderr
