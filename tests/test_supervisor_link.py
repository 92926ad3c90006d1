"""The agent's side of the supervisor link when the link is full: requests go out in the order
they were made, each with its own descriptors, and one cancelled while it waited is never sent
(its descriptor numbers may belong to other files by then)."""

from __future__ import annotations

import array
import asyncio
import os
import socket

from agent.runtime.native import protocol as P
from agent.runtime.native.supervisor import Supervisor


def _receive_all(peer: socket.socket) -> list[tuple[int, str, bytes]]:
    """(message id, key, first bytes of the file behind its descriptor) of each packet."""
    got = []
    peer.setblocking(False)
    while True:
        try:
            data, anc, _flags, _ = peer.recvmsg(P.MAX_PACKET, socket.CMSG_SPACE(64 * 4))
        except BlockingIOError:
            return got
        _type, msg_id, offset = P.parse_header(data)
        key = P.text(P.decode(data, offset)[P.T_KEY])
        head = b""
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for fd in array.array("i", raw[: len(raw) - len(raw) % 4]):
                    head = os.pread(fd, 16, 0)
                    os.close(fd)
        if key.startswith("filler"):
            continue
        got.append((msg_id, key, head))


def _file_with(tmp_path, name: str, text: bytes) -> int:
    path = tmp_path / name
    path.write_bytes(text)
    return os.open(path, os.O_RDONLY)


def test_full_link_keeps_order_and_drops_cancelled_requests(tmp_path):
    async def body():
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        sv = Supervisor(str(tmp_path))
        sv._loop = asyncio.get_running_loop()
        sv.sock = ours
        sv._loop.add_reader(ours.fileno(), sv._on_readable)
        fillers = []
        while not sv._outbox:  # fill the link until requests queue
            fillers.append(sv.send(P.KILL, P.Payload().str(P.T_KEY, f"filler{len(fillers)}")))
        a = _file_with(tmp_path, "a", b"file-a")
        first = sv.send(P.START, P.Payload().str(P.T_KEY, "first").fd(P.T_STDOUT_FD, a))
        os.close(a)  # the caller's copy goes; the queued request keeps its own
        c = _file_with(tmp_path, "c", b"file-c")
        cancelled = sv.send(P.START, P.Payload().str(P.T_KEY, "cancelled").fd(P.T_STDOUT_FD, c))
        cancelled.cancel()
        os.close(c)
        b = _file_with(tmp_path, "b", b"file-b")  # may reuse the number c had
        last = sv.send(P.START, P.Payload().str(P.T_KEY, "last").fd(P.T_STDOUT_FD, b))
        os.close(b)
        fds_before = len(os.listdir("/proc/self/fd"))
        got = []
        for _ in range(200):
            got += await asyncio.get_running_loop().run_in_executor(None, _receive_all, peer)
            await asyncio.sleep(0.01)
            if not sv._outbox:
                got += _receive_all(peer)
                break
        assert [(key, head) for _id, key, head in got] == [("first", b"file-a"),
                                                           ("last", b"file-b")]
        assert not first.done() and not last.done()  # still waiting for their answers
        assert len(os.listdir("/proc/self/fd")) == fds_before - 3  # the queue's copies closed
        sv.close()
        peer.close()
        assert all(f.done() for f in fillers + [first, last])
        for f in fillers + [first, last]:
            f.exception()

    asyncio.run(body())
