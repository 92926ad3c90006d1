"""containerd's own `ctr` (1.6.20) against our socket: content ingest / ls / get / rm and
images ls / rm. (The content and image calls of `ctr task checkpoint` need CRIU to get that
far; these commands drive the same Content/Write, Read, Info, List and Images calls.)"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from content_support import blob_path, digest_of, remove_namespace
from grpc_helpers import channel, needs_root, ns_md, running_agent
from helpers import with_fifo_dir

from agent.api.containerd.services.images.v1 import images_pb2 as iapi
from agent.api.containerd.services.images.v1 import images_pb2_grpc as iapi_grpc
from agent.api.containerd.types.descriptor_pb2 import Descriptor

CTR = shutil.which("ctr") or "/usr/bin/ctr"

if not os.access(CTR, os.X_OK):
    print(f"skipping ctr content tests: {CTR} is not installed (apt-get install containerd)")
    pytest.skip(f"{CTR} is not installed (Debian's containerd package provides it)",
                allow_module_level=True)

pytestmark = [needs_root, pytest.mark.ctr]

NS = "ctrcontent"
INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE = "example.com/checkpoint/c1:latest"
# An OCI index as `ctr task checkpoint` writes one (here without manifests).
DATA = b'{"schemaVersion":2,"mediaType":"' + INDEX.encode() + b'","manifests":[]}'
DIGEST = digest_of(DATA)


@pytest.fixture(scope="module")
def agent():
    with running_agent() as a:
        yield a


@pytest.fixture
def ch(agent):
    c = channel(agent)
    yield c
    remove_namespace(c, NS)
    c.close()


def ctr(agent, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["timeout", "-k", "5", "60", CTR, "-a", agent.address, "-n", NS,
         *with_fifo_dir(agent.address, args)],
        input=stdin, check=False, capture_output=True, timeout=90,
    )


def rows(output: bytes) -> list[list[str]]:
    """A ctr table without its header, split on whitespace."""
    lines = [line.split() for line in output.decode().splitlines() if line.strip()]
    return lines[1:]


def test_ingest_list_get_remove(agent, ch):
    # `ctr content ingest` writes inside a lease it deletes at the end; as with containerd,
    # content nothing refers to is then collected, so an image refers to it first.
    iapi_grpc.ImagesStub(ch).Create(iapi.CreateImageRequest(image=iapi.Image(
        name=IMAGE, labels={"containerd.io/checkpoint": "true"},
        target=Descriptor(media_type=INDEX, digest=DIGEST, size=len(DATA)))),
        metadata=ns_md(NS))

    done = ctr(agent, "content", "ingest", "--expected-size", str(len(DATA)),
               "--expected-digest", DIGEST, "checkpoint-index", stdin=DATA)
    assert done.returncode == 0, done.stderr
    assert os.path.exists(blob_path(agent, DIGEST))

    listed = ctr(agent, "content", "ls")
    assert listed.returncode == 0, listed.stderr
    assert [(r[0], r[1]) for r in rows(listed.stdout)] == [(DIGEST, f"{len(DATA)}B")]
    assert rows(listed.stdout)[0][-1] == "-"  # no labels

    got = ctr(agent, "content", "get", DIGEST)
    assert (got.returncode, got.stdout) == (0, DATA), got.stderr

    # A second ingest of the same bytes is "already exists", which ctr treats as success.
    again = ctr(agent, "content", "ingest", "--expected-digest", DIGEST, "again", stdin=DATA)
    assert again.returncode == 0, again.stderr

    images = ctr(agent, "images", "ls")
    assert images.returncode == 0, images.stderr
    assert [r[:3] + r[-1:] for r in rows(images.stdout)] == [
        [IMAGE, INDEX, DIGEST, "containerd.io/checkpoint=true"]]

    removed = ctr(agent, "content", "rm", DIGEST)
    assert (removed.returncode, removed.stdout.decode().split()) == (0, [DIGEST]), removed.stderr
    assert rows(ctr(agent, "content", "ls").stdout) == []
    assert not os.path.exists(blob_path(agent, DIGEST))

    gone = ctr(agent, "images", "rm", IMAGE)
    assert (gone.returncode, gone.stdout.decode().split()) == (0, [IMAGE]), gone.stderr
    assert rows(ctr(agent, "images", "ls").stdout) == []


def test_bad_inputs(agent, ch):
    missing = ctr(agent, "content", "get", "sha256:" + "ab" * 32)
    assert missing.returncode != 0
    assert b"not found" in missing.stderr
    wrong = ctr(agent, "content", "ingest", "--expected-digest", "sha256:" + "cd" * 32, "bad",
                stdin=b"not what was promised")
    assert wrong.returncode != 0
    assert b"unexpected commit digest" in wrong.stderr
    assert b"failed precondition" in wrong.stderr
    assert rows(ctr(agent, "content", "ls").stdout) == []
