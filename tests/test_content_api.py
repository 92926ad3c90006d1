"""Content API against a real agent through its socket: resumable writes (also across an
agent restart), digest and size checks, reads with offsets, labels, statuses, namespaces
and the bad input of every call."""

from __future__ import annotations

import hashlib
import os
import stat
import time

import grpc
import pytest
from content_support import (
    COMMIT,
    EMPTY_DIGEST,
    GC_ON_REQUEST,
    STAT,
    WRITE,
    MiB,
    WriteSession,
    blob_path,
    digest_of,
    ingest_dirs,
    open_write,
    read_all,
    remove_namespace,
    write_blob,
)
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_helpers import (
    EventReader,
    assert_error,
    channel,
    namespace_for,
    needs_root,
    ns_md,
    restartable_agents,
    rpc_error,
    running_agent,
)

from agent.api.containerd.events import content_pb2 as events
from agent.api.containerd.services.content.v1 import content_pb2 as api
from agent.api.containerd.services.content.v1 import content_pb2_grpc as api_grpc
from agent.api.containerd.services.namespaces.v1 import namespace_pb2 as napi
from agent.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as napi_grpc

pytestmark = needs_root

Code = grpc.StatusCode
BAD_DIGEST = "sha256:xyz"
UNKNOWN_DIGEST = "sha256:" + "ab" * 32


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
    return api_grpc.ContentStub(ch)


@pytest.fixture
def ns(request, ch):
    name = namespace_for(request.node.name)
    yield name
    remove_namespace(ch, name)


@pytest.fixture
def agents(agent_factory):
    yield from restartable_agents(agent_factory)


def status(stub, ns, ref):
    return stub.Status(api.StatusRequest(ref=ref), metadata=ns_md(ns)).status


def statuses(stub, ns, *filters):
    resp = stub.ListStatuses(api.ListStatusesRequest(filters=list(filters)), metadata=ns_md(ns))
    return [(s.ref, s.offset, s.total, s.expected) for s in resp.statuses]


def info(stub, ns, digest):
    return stub.Info(api.InfoRequest(digest=digest), metadata=ns_md(ns)).info


def listed(stub, ns, *filters):
    out = []
    for batch in stub.List(api.ListContentRequest(filters=list(filters)), metadata=ns_md(ns)):
        out += [(i.digest, i.size, dict(i.labels)) for i in batch.info]
    return out


def test_100mib_write_aborted_half_way_resumes_by_ref(agent, stub, ns):
    """The acceptance: write 100 MiB in chunks, abort half-way, resume by ref, commit with
    the right digest; the blob reads back byte for byte."""
    data = os.urandom(100 * MiB)
    digest = digest_of(data)
    half = 50 * MiB
    ref = "big-blob"

    first = WriteSession(stub, ns)
    reply = first.send(action=STAT, ref=ref, total=len(data), expected=digest)
    assert (reply.action, reply.offset, reply.total, reply.digest) == (
        STAT, 0, len(data), EMPTY_DIGEST)
    for offset in range(0, half, MiB):
        reply = first.send(action=WRITE, offset=offset, data=data[offset:offset + MiB])
        assert (reply.action, reply.offset) == (WRITE, offset + MiB)
    assert reply.digest == digest_of(data[:half])
    first.cancel()  # the client goes away half-way

    st = status(stub, ns, ref)
    assert (st.ref, st.offset, st.total, st.expected) == (ref, half, len(data), digest)

    second, reply = open_write(stub, ns, action=STAT, ref=ref, total=len(data), expected=digest)
    with second:
        assert (reply.offset, reply.total, reply.digest) == (half, len(data), digest_of(data[:half]))
        for offset in range(half, len(data), MiB):
            reply = second.send(action=WRITE, offset=offset, data=data[offset:offset + MiB])
            assert reply.offset == offset + MiB
        reply = second.send(action=COMMIT, offset=len(data), total=len(data), expected=digest)
    assert (reply.action, reply.offset, reply.digest) == (COMMIT, len(data), digest)

    chunks = read_all(stub, ns, digest)
    assert [c.offset for c in chunks] == list(range(0, len(data), MiB))
    assert all(len(c.data) == MiB for c in chunks)
    back = b"".join(c.data for c in chunks)
    assert hashlib.sha256(back).hexdigest() == digest[len("sha256:"):]
    assert back == data
    assert info(stub, ns, digest).size == len(data)
    st_blob = os.stat(blob_path(agent, digest))
    assert st_blob.st_size == len(data)
    assert stat.S_IMODE(st_blob.st_mode) == 0o444
    assert statuses(stub, ns) == []
    assert ingest_dirs(agent) == []


def test_wrong_digest_stores_nothing(agent, stub, ns):
    data = b"the checkpoint index" * 1000
    wrong = digest_of(b"something else")
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="wrong", total=len(data))
        s.send(action=WRITE, offset=0, data=data)
        err = rpc_error(s.send, action=COMMIT, offset=len(data), total=len(data), expected=wrong)
    assert_error(err, Code.FAILED_PRECONDITION,
                 f"unexpected commit digest {digest_of(data)}, expected {wrong}: "
                 "failed precondition")
    assert not os.path.exists(blob_path(agent, digest_of(data)))
    assert not os.path.exists(blob_path(agent, wrong))
    for digest in (digest_of(data), wrong):
        assert_error(rpc_error(info, stub, ns, digest), Code.NOT_FOUND,
                     f"content digest {digest}: not found")
    assert listed(stub, ns) == []
    # The ingest stays (it can be resumed or aborted), then Abort leaves nothing.
    assert statuses(stub, ns) == [("wrong", len(data), len(data), "")]
    stub.Abort(api.AbortRequest(ref="wrong"), metadata=ns_md(ns))
    assert statuses(stub, ns) == []
    assert ingest_dirs(agent) == []


def test_wrong_total_on_commit_stores_nothing(agent, stub, ns):
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="short")
        s.send(action=WRITE, offset=0, data=b"12345")
        err = rpc_error(s.send, action=COMMIT, offset=5, total=6)
    assert_error(err, Code.FAILED_PRECONDITION,
                 '"short" failed size validation: 5 != 6: failed precondition')
    assert listed(stub, ns) == []
    assert not os.path.exists(blob_path(agent, digest_of(b"12345")))
    assert statuses(stub, ns) == [("short", 5, 0, "")]


def test_resume_after_agent_restart(agents):
    first = agents(GC_ON_REQUEST).start()
    ns = "restart"
    data = os.urandom(3 * MiB + 17)
    digest = digest_of(data)
    ch = channel(first)
    stub = api_grpc.ContentStub(ch)
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="across", total=len(data), expected=digest)
        s.send(action=WRITE, offset=0, data=data[:2 * MiB])
    ch.close()
    first.stop()

    second = agents(GC_ON_REQUEST, base=first.base).start()
    ch = channel(second)
    stub = api_grpc.ContentStub(ch)
    try:
        assert statuses(stub, ns) == [("across", 2 * MiB, len(data), digest)]
        session, reply = open_write(stub, ns, action=STAT, ref="across")
        with session:
            # The running hash is rebuilt from the data on disk.
            assert (reply.offset, reply.total, reply.digest) == (
                2 * MiB, len(data), digest_of(data[:2 * MiB]))
            reply = session.send(action=WRITE, offset=2 * MiB, data=data[2 * MiB:])
            assert reply.offset == len(data)
            reply = session.send(action=COMMIT, offset=len(data), total=len(data),
                                 expected=digest)
        assert reply.digest == digest
        assert b"".join(c.data for c in read_all(stub, ns, digest)) == data
    finally:
        remove_namespace(ch, ns)
        ch.close()


def test_read_offsets_and_sizes(stub, ns):
    data = bytes(range(256)) * (3 * 4096) + b"tail!"  # 3 MiB + 5 bytes
    digest = write_blob(stub, ns, data)
    whole = read_all(stub, ns, digest)
    assert [(c.offset, len(c.data)) for c in whole] == [
        (0, MiB), (MiB, MiB), (2 * MiB, MiB), (3 * MiB, 5)]
    middle = read_all(stub, ns, digest, offset=MiB - 3, size=10)
    assert [(c.offset, c.data) for c in middle] == [(MiB - 3, data[MiB - 3:MiB + 7])]
    # A size past the end reads to the end; offset == size reads nothing.
    assert [(c.offset, c.data) for c in read_all(stub, ns, digest, len(data) - 2, 100)] == [
        (len(data) - 2, b"l!")]
    assert read_all(stub, ns, digest, offset=len(data)) == []
    assert b"".join(c.data for c in read_all(stub, ns, digest, offset=5)) == data[5:]

    assert_error(rpc_error(read_all, stub, ns, digest, offset=len(data) + 1),
                 Code.INVALID_ARGUMENT,
                 f"read past object length {len(data)} bytes (offset {len(data) + 1}): "
                 "invalid argument")
    assert_error(rpc_error(read_all, stub, ns, digest, offset=-1), Code.INVALID_ARGUMENT,
                 "read offset -1 is negative: invalid argument")
    assert_error(rpc_error(read_all, stub, ns, digest, size=-1), Code.INVALID_ARGUMENT,
                 "read size -1 is negative: invalid argument")
    assert_error(rpc_error(read_all, stub, ns, UNKNOWN_DIGEST), Code.NOT_FOUND,
                 f"content digest {UNKNOWN_DIGEST}: not found")
    assert_error(rpc_error(read_all, stub, ns, BAD_DIGEST), Code.INVALID_ARGUMENT,
                 f'"{BAD_DIGEST}" failed validation: invalid checksum digest length: '
                 "invalid argument")


def test_info_list_and_labels(stub, ns):
    before = time.time()
    a = write_blob(stub, ns, b"alpha", labels={"kind": "a", "containerd.io/gc.root": "x"})
    b = write_blob(stub, ns, b"bravo!", labels={"kind": "b"})
    got = info(stub, ns, a)
    assert (got.digest, got.size, dict(got.labels)) == (
        a, 5, {"kind": "a", "containerd.io/gc.root": "x"})
    assert before - 1 <= got.created_at.seconds <= time.time() + 1
    assert got.created_at == got.updated_at

    assert listed(stub, ns) == sorted([(a, 5, {"kind": "a", "containerd.io/gc.root": "x"}),
                                       (b, 6, {"kind": "b"})])
    assert listed(stub, ns, f"digest=={a}") == [(a, 5, {"kind": "a",
                                                       "containerd.io/gc.root": "x"})]
    assert [d for d, _, _ in listed(stub, ns, 'labels.kind==b')] == [b]
    assert [d for d, _, _ in listed(stub, ns, 'labels."containerd.io/gc.root"')] == [a]
    assert [d for d, _, _ in listed(stub, ns, "size==6")] == [b]
    assert sorted(d for d, _, _ in listed(stub, ns, "labels.kind==a", "labels.kind==b")) == \
        sorted([a, b])
    assert_error(rpc_error(listed, stub, ns, "labels.kind=="), Code.INVALID_ARGUMENT)

    # Update: one label, then all labels, then no mask (replace); times move forward.
    upd = stub.Update(api.UpdateRequest(info=api.Info(digest=b, labels={"new": "1"}),
                                        update_mask=FieldMask(paths=["labels.new"])),
                      metadata=ns_md(ns)).info
    assert dict(upd.labels) == {"kind": "b", "new": "1"}
    assert upd.created_at == info(stub, ns, b).created_at
    assert (upd.updated_at.seconds, upd.updated_at.nanos) > (
        upd.created_at.seconds, upd.created_at.nanos)
    upd = stub.Update(api.UpdateRequest(info=api.Info(digest=b, labels={}),
                                        update_mask=FieldMask(paths=["labels.kind"])),
                      metadata=ns_md(ns)).info
    assert dict(upd.labels) == {"new": "1"}
    upd = stub.Update(api.UpdateRequest(info=api.Info(digest=b, labels={"x": "y"}),
                                        update_mask=FieldMask(paths=["labels"])),
                      metadata=ns_md(ns)).info
    assert dict(upd.labels) == {"x": "y"}
    upd = stub.Update(api.UpdateRequest(info=api.Info(digest=b, labels={"z": "1"})),
                      metadata=ns_md(ns)).info
    assert (upd.size, dict(upd.labels)) == (6, {"z": "1"})
    assert dict(info(stub, ns, b).labels) == {"z": "1"}


def test_bad_info_update_delete(stub, ns):
    digest = write_blob(stub, ns, b"kept", labels={"k": "v"})
    md = ns_md(ns)
    for call, req in ((stub.Info, api.InfoRequest(digest=BAD_DIGEST)),
                      (stub.Delete, api.DeleteContentRequest(digest=BAD_DIGEST)),
                      (stub.Info, api.InfoRequest(digest="")),
                      (stub.Update, api.UpdateRequest(info=api.Info(digest="md5:00")))):
        assert_error(rpc_error(call, req, metadata=md), Code.INVALID_ARGUMENT)
    assert_error(rpc_error(stub.Delete, api.DeleteContentRequest(digest=UNKNOWN_DIGEST),
                           metadata=md),
                 Code.NOT_FOUND, f"content digest {UNKNOWN_DIGEST}: not found")
    assert_error(rpc_error(stub.Update, api.UpdateRequest(info=api.Info(digest=UNKNOWN_DIGEST)),
                           metadata=md),
                 Code.NOT_FOUND, f"content digest {UNKNOWN_DIGEST}: not found")
    assert_error(rpc_error(stub.Update, api.UpdateRequest(
        info=api.Info(digest=digest, size=1), update_mask=FieldMask(paths=["size"])),
        metadata=md), Code.INVALID_ARGUMENT,
        f'cannot update "size" field on content info "{digest}": invalid argument')
    huge = {"big": "x" * 5000}
    assert_error(rpc_error(stub.Update, api.UpdateRequest(info=api.Info(digest=digest,
                                                                        labels=huge)),
                           metadata=md), Code.INVALID_ARGUMENT)
    assert_error(rpc_error(stub.Info, api.InfoRequest(digest=digest)), Code.FAILED_PRECONDITION,
                 "namespace is required")
    got = info(stub, ns, digest)
    assert (got.size, dict(got.labels)) == (4, {"k": "v"})  # nothing changed


def test_delete_publishes_event_and_removes_blob(agent, stub, ns):
    digest = write_blob(stub, ns, b"short-lived")
    assert os.path.exists(blob_path(agent, digest))
    reader = EventReader(agent, [f"namespace=={ns}"])
    try:
        reader.ready(agent, ns)
        stub.Delete(api.DeleteContentRequest(digest=digest), metadata=ns_md(ns))
        env = reader.take(1, "/content/")[0]
    finally:
        reader.close()
    assert (env.namespace, env.topic, env.event.type_url) == (
        ns, "/content/delete", "containerd.events.ContentDelete")
    assert events.ContentDelete.FromString(env.event.value).digest == digest
    assert not os.path.exists(blob_path(agent, digest))
    assert_error(rpc_error(info, stub, ns, digest), Code.NOT_FOUND)
    assert_error(rpc_error(stub.Delete, api.DeleteContentRequest(digest=digest),
                           metadata=ns_md(ns)), Code.NOT_FOUND)


def test_statuses_and_abort(agent, stub, ns):
    expected = digest_of(b"abcdef")
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="ref-a", total=6, expected=expected)
        s.send(action=WRITE, offset=0, data=b"abc")
    before = time.time()
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="ref-b")
    assert statuses(stub, ns) == [("ref-a", 3, 6, expected), ("ref-b", 0, 0, "")]
    assert statuses(stub, ns, "ref==ref-a") == [("ref-a", 3, 6, expected)]
    assert [r for r, *_ in statuses(stub, ns, "ref~=^ref-")] == ["ref-a", "ref-b"]
    assert statuses(stub, ns, "ref==none") == []
    assert_error(rpc_error(statuses, stub, ns, "ref=="), Code.INVALID_ARGUMENT)
    st = status(stub, ns, "ref-b")
    assert (st.ref, st.offset, st.total, st.expected) == ("ref-b", 0, 0, "")
    assert before - 1 <= st.started_at.seconds <= time.time() + 1
    assert (st.updated_at.seconds, st.updated_at.nanos) >= (st.started_at.seconds,
                                                            st.started_at.nanos)

    stub.Abort(api.AbortRequest(ref="ref-a"), metadata=ns_md(ns))
    assert statuses(stub, ns) == [("ref-b", 0, 0, "")]
    assert_error(rpc_error(status, stub, ns, "ref-a"), Code.NOT_FOUND,
                 'could not get status for ref "ref-a": reference ref-a: not found')
    assert_error(rpc_error(stub.Abort, api.AbortRequest(ref="ref-a"), metadata=ns_md(ns)),
                 Code.NOT_FOUND, "reference ref-a: not found")
    assert_error(rpc_error(stub.Abort, api.AbortRequest(ref=""), metadata=ns_md(ns)),
                 Code.INVALID_ARGUMENT, "ref must not be empty: invalid argument")
    assert_error(rpc_error(status, stub, ns, ""), Code.INVALID_ARGUMENT)
    stub.Abort(api.AbortRequest(ref="ref-b"), metadata=ns_md(ns))
    assert statuses(stub, ns) == []
    assert ingest_dirs(agent) == []


def test_write_protocol_errors_change_nothing(stub, ns):
    with WriteSession(stub, ns) as s:
        assert_error(rpc_error(s.send, action=STAT), Code.INVALID_ARGUMENT,
                     "first message must have a reference")
    with WriteSession(stub, ns) as s:
        assert_error(rpc_error(s.send, action=STAT, ref="r", expected=BAD_DIGEST),
                     Code.INVALID_ARGUMENT)
    with WriteSession(stub, ns) as s:
        assert_error(rpc_error(s.send, action=STAT, ref="r", total=-1), Code.INVALID_ARGUMENT,
                     "total -1 is negative: invalid argument")
    assert statuses(stub, ns) == []

    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="r")
        assert s.send(action=WRITE, offset=0, data=b"0123").offset == 4
        err = rpc_error(s.send, action=WRITE, offset=6, data=b"gap")
    assert_error(err, Code.INVALID_ARGUMENT,
                 "write @6 must occur at current offset 4: invalid argument")
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="r")
        assert_error(rpc_error(s.send, action=WRITE, offset=2, data=b"overlap"),
                     Code.INVALID_ARGUMENT,
                     "write @2 must occur at current offset 4: invalid argument")
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="r")
        assert_error(rpc_error(s.send, action=WRITE, offset=-4, data=b"x"),
                     Code.INVALID_ARGUMENT, "write offset -4 is negative: invalid argument")
    assert statuses(stub, ns) == [("r", 4, 0, "")]

    # A second writer of a ref in use is told to come back later.
    with WriteSession(stub, ns) as holder:
        holder.send(action=STAT, ref="r")
        with WriteSession(stub, ns) as other:
            err = rpc_error(other.send, action=STAT, ref="r")
        assert err.code() == Code.UNAVAILABLE
        assert err.details().startswith("ref r locked for "), err.details()
        # Offset 0 starts over, as containerd's server does.
        reply = holder.send(action=WRITE, offset=0, data=b"xy")
        assert (reply.offset, reply.digest) == (2, digest_of(b"xy"))
        reply = holder.send(action=COMMIT, offset=2, total=2, labels={"l": "v"})
        assert (reply.offset, reply.digest) == (2, digest_of(b"xy"))
    assert listed(stub, ns) == [(digest_of(b"xy"), 2, {"l": "v"})]
    assert statuses(stub, ns) == []


def test_second_commit_of_same_content_already_exists(agent, stub, ns):
    digest = write_blob(stub, ns, b"same bytes", labels={"first": "1"})
    # Announced with its digest: refused at once, nothing written.
    with WriteSession(stub, ns) as s:
        err = rpc_error(s.send, action=STAT, ref="again", total=10, expected=digest)
    assert_error(err, Code.ALREADY_EXISTS, f"content {digest}: already exists")
    # Written without announcing it: the commit finds it (ctr tolerates this too).
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="again")
        s.send(action=WRITE, offset=0, data=b"same bytes")
        err = rpc_error(s.send, action=COMMIT, offset=10, total=10, labels={"second": "2"})
    assert_error(err, Code.ALREADY_EXISTS, f"content {digest}: already exists")
    # An expected digest on a later request ends the write the same way.
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="again")
        err = rpc_error(s.send, action=WRITE, offset=0, data=b"same", expected=digest)
    assert_error(err, Code.ALREADY_EXISTS, f"blob with expected digest {digest} exists")
    assert listed(stub, ns) == [(digest, 10, {"first": "1"})]
    assert statuses(stub, ns) == []
    assert ingest_dirs(agent) == []


def test_oversized_commit_labels_store_nothing(agent, stub, ns):
    with WriteSession(stub, ns) as s:
        s.send(action=STAT, ref="labels")
        s.send(action=WRITE, offset=0, data=b"data")
        err = rpc_error(s.send, action=COMMIT, offset=4, labels={"k": "v" * 5000})
    assert err.code() == Code.INVALID_ARGUMENT
    assert listed(stub, ns) == []
    assert not os.path.exists(blob_path(agent, digest_of(b"data")))
    assert statuses(stub, ns) == [("labels", 4, 0, "")]


def test_namespaces_see_their_own_content(agent, ch, stub, request):
    a, b = namespace_for(request.node.name + "-a"), namespace_for(request.node.name + "-b")
    try:
        data = b"shared between namespaces"
        digest = write_blob(stub, a, data, labels={"owner": "a"})
        assert_error(rpc_error(info, stub, b, digest), Code.NOT_FOUND)
        assert listed(stub, b) == []
        assert_error(rpc_error(read_all, stub, b, digest), Code.NOT_FOUND)
        assert_error(rpc_error(stub.Delete, api.DeleteContentRequest(digest=digest),
                               metadata=ns_md(b)), Code.NOT_FOUND)
        # Same ref in both namespaces: two independent ingests.
        with WriteSession(stub, a) as s:
            s.send(action=STAT, ref="same-ref")
            s.send(action=WRITE, offset=0, data=b"in a")
        assert statuses(stub, b) == []
        # b announces the digest: the bytes are on disk already, nothing has to travel.
        with WriteSession(stub, b) as s:
            reply = s.send(action=STAT, ref="same-ref", total=len(data), expected=digest)
            assert (reply.offset, reply.total, reply.digest) == (len(data), len(data), digest)
            reply = s.send(action=COMMIT, offset=len(data), total=len(data), expected=digest,
                           labels={"owner": "b"})
            assert (reply.offset, reply.digest) == (len(data), digest)
        assert dict(info(stub, a, digest).labels) == {"owner": "a"}
        assert dict(info(stub, b, digest).labels) == {"owner": "b"}
        assert statuses(stub, a) == [("same-ref", 4, 0, "")]
        # A namespace holding content cannot be deleted.
        err = rpc_error(napi_grpc.NamespacesStub(ch).Delete, napi.DeleteNamespaceRequest(name=a))
        assert err.code() == Code.FAILED_PRECONDITION
        assert "content" in err.details()
        # The blob leaves the disk only when no namespace sees it.
        stub.Delete(api.DeleteContentRequest(digest=digest), metadata=ns_md(a))
        assert os.path.exists(blob_path(agent, digest))
        assert b"".join(c.data for c in read_all(stub, b, digest)) == data
        stub.Delete(api.DeleteContentRequest(digest=digest), metadata=ns_md(b))
        assert not os.path.exists(blob_path(agent, digest))
    finally:
        remove_namespace(ch, a)
        remove_namespace(ch, b)
