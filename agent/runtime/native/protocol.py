"""The agent side of the supervisor protocol (the C side is _native/include/supervisor_proto.h;
a test checks that the numbers here match it).

A packet is a 16-byte header (magic, version, type, id, payload length) and a payload of
fields: u16 tag, u16 zero, u32 length, value. Integers are u64 little-endian, strings raw
bytes, records nested payloads. File descriptors ride beside the packet (SCM_RIGHTS) and
fields refer to them by index."""

from __future__ import annotations

import struct
from typing import Iterator

MAGIC = 0x56534154
VERSION = 1
MAX_PACKET = 1 << 20
MAX_FDS = 32

HEADER = struct.Struct("<IHHII")
FIELD = struct.Struct("<HHI")
U64_FIELD = struct.Struct("<HHIQ")

# Message types.
HELLO = 1
CREATE = 2
START = 3
EXEC = 4
KILL = 5
RESIZE = 6
CLOSE_STDIN = 7
FORGET = 8
LIST = 9
SHUTDOWN = 10
ACK_EXIT = 11
RESTORE = 12
REPLY = 64
EV_EXIT = 65

# Field tags.
T_VERSION = 1
T_PID = 2
T_ERRNO = 3
T_ERRMSG = 4
T_KEY = 5
T_PARENT_KEY = 6
T_SIGNAL = 7
T_WIDTH = 9
T_HEIGHT = 10
T_FORCE = 11
T_STARTED_AT = 12
T_WAIT_STATUS = 20
T_EXIT_CODE = 21
T_EXITED_AT = 22
T_STATE = 23
T_PROC = 24
T_START_TIME = 25
T_ANNOTATION = 26
T_EXIT_ACKED = 27
T_CURSOR = 28
T_PIDFILE = 29
T_CLONE_FLAGS = 30
T_NS_JOIN = 31
T_NS_TYPE = 32
T_FD = 33
T_CGROUP_PROCS = 34
T_CGROUP_DIR = 35
T_ROOTFS = 40
T_ROOTFS_MOUNT = 41
T_ROOT_READONLY = 42
T_ROOT_PROPAGATION = 43
T_MOUNT = 44
T_M_DEST = 45
T_M_TYPE = 46
T_M_SOURCE = 47
T_M_FLAGS = 48
T_M_DATA = 49
T_M_PROPAGATION = 50
T_M_BIND = 51
T_M_RECURSIVE_RO = 52
T_DEVICE = 53
T_DEV_TYPE = 54
T_DEV_MAJOR = 55
T_DEV_MINOR = 56
T_DEV_MODE = 57
T_DEFAULT_DEVICES = 58
T_MASKED = 59
T_READONLY_PATH = 60
T_HOSTNAME = 61
T_DOMAINNAME = 62
T_SYSCTL = 63
T_ARG = 70
T_ENV = 71
T_CWD = 72
T_UID = 73
T_GID = 74
T_ADDITIONAL_GID = 75
T_UMASK = 76
T_RLIMIT = 77
T_CAP_BOUNDING = 78
T_CAP_EFFECTIVE = 79
T_CAP_PERMITTED = 80
T_CAP_INHERITABLE = 81
T_CAP_AMBIENT = 82
T_NO_NEW_PRIVS = 83
T_OOM_SCORE_ADJ = 84
T_TERMINAL = 85
T_LOOPBACK_UP = 86
T_STDIN_FD = 90
T_STDOUT_FD = 91
T_STDERR_FD = 92
T_STDIN_HOLD = 93
T_STDOUT_HOLD = 94
T_STDERR_HOLD = 95

STATE_CREATED = 1
STATE_RUNNING = 2
STATE_EXITED = 3


class Payload:
    """Builder of a payload; fds added with `fd()` are sent beside the packet."""

    __slots__ = ("parts", "fds")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.fds: list[int] = []

    def u64(self, tag: int, value: int) -> "Payload":
        self.parts.append(U64_FIELD.pack(tag, 0, 8, value & 0xFFFFFFFFFFFFFFFF))
        return self

    def bytes(self, tag: int, value: bytes) -> "Payload":
        self.parts.append(FIELD.pack(tag, 0, len(value)))
        self.parts.append(value)
        return self

    def str(self, tag: int, value: str) -> "Payload":
        return self.bytes(tag, value.encode())

    def strs(self, tag: int, values) -> "Payload":
        for v in values:
            self.str(tag, v)
        return self

    def nested(self, tag: int, inner: "Payload") -> "Payload":
        """A record inside this payload; a record never carries fds of its own (use
        `add_fd` and put the index in the record instead)."""
        assert not inner.fds, "nested records refer to the outer packet's fds"
        return self.bytes(tag, inner.encode())

    def add_fd(self, fd: int) -> int:
        self.fds.append(fd)
        return len(self.fds) - 1

    def fd(self, tag: int, fd: int) -> "Payload":
        self.fds.append(fd)
        return self.u64(tag, len(self.fds) - 1)

    def encode(self) -> bytes:
        return b"".join(self.parts)


def packet(msg_type: int, msg_id: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, VERSION, msg_type, msg_id, len(payload)) + payload


def parse_header(data: bytes) -> tuple[int, int, int]:
    """(type, id, payload offset); raises ValueError on a bad packet."""
    if len(data) < HEADER.size:
        raise ValueError("short packet from supervisor")
    magic, _version, msg_type, msg_id, length = HEADER.unpack_from(data)
    if magic != MAGIC or length != len(data) - HEADER.size:
        raise ValueError("bad packet from supervisor")
    return msg_type, msg_id, HEADER.size


def fields(data: bytes | memoryview, offset: int = 0, end: int | None = None
           ) -> Iterator[tuple[int, memoryview]]:
    view = memoryview(data)
    end = len(view) if end is None else end
    while offset < end:
        tag, _zero, length = FIELD.unpack_from(view, offset)
        offset += FIELD.size
        yield tag, view[offset:offset + length]
        offset += length


def decode(data: bytes | memoryview, offset: int = 0) -> dict[int, object]:
    """Fields as {tag: value}: u64-sized values stay raw bytes; repeated tags become lists."""
    out: dict[int, object] = {}
    for tag, value in fields(data, offset):
        raw = bytes(value)
        prev = out.get(tag)
        if prev is None:
            out[tag] = raw
        elif isinstance(prev, list):
            prev.append(raw)
        else:
            out[tag] = [prev, raw]
    return out


def u64(raw: object) -> int:
    return int.from_bytes(raw, "little") if raw else 0  # type: ignore[arg-type]


def text(raw: object) -> str:
    return raw.decode(errors="replace") if raw else ""  # type: ignore[union-attr]
