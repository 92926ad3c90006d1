"""The container store's in-memory runtime names (asked by every task call) follow its
writes: a deleted container is NotFound again, a re-created one reports its new runtime, and a
rolled-back transaction leaves nothing remembered."""

from __future__ import annotations

import pytest

from agent.api.containerd.services.containers.v1.containers_pb2 import Container
from agent.errors import NotFound
from agent.metadata.db import MetadataDB


def _container(cid: str, runtime: str) -> Container:
    c = Container(id=cid)
    c.runtime.name = runtime
    c.spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
    c.spec.value = b"{}"
    return c


def test_runtime_names_follow_writes(tmp_path):
    db = MetadataDB(str(tmp_path / "meta.db"))
    store = db.containers
    with pytest.raises(NotFound):
        store.runtime_name("ns", "c1")
    store.create("ns", _container("c1", "io.containerd.runc.v2"))
    assert store.runtime_name("ns", "c1") == "io.containerd.runc.v2"
    with pytest.raises(NotFound):
        store.runtime_name("other", "c1")
    store.delete("ns", "c1")
    with pytest.raises(NotFound):
        store.runtime_name("ns", "c1")
    store.create("ns", _container("c1", "io.containerd.runtime.v2.native"))
    assert store.runtime_name("ns", "c1") == "io.containerd.runtime.v2.native"

    # Read inside a transaction that is then rolled back: not remembered.
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        with db.transaction():
            store.create("ns", _container("c2", "io.containerd.runc.v2"))
            assert store.runtime_name("ns", "c2") == "io.containerd.runc.v2"
            raise Abort()
    with pytest.raises(NotFound):
        store.runtime_name("ns", "c2")
