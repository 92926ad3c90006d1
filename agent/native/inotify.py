"""inotify, which Python's standard library lacks, bound with cffi in out-of-line ABI mode
(declarations compiled at build time from _native/cffi/inotify_decl.py; libc is opened at run
time). Used to watch cgroup v2 event files."""

from __future__ import annotations

import os
import struct

from agent.native._inotify_cffi import ffi as _ffi

IN_MODIFY = 0x00000002
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")

_libc = _ffi.dlopen(None)


def init() -> int:
    fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        err = _ffi.errno
        raise OSError(err, f"inotify_init1: {os.strerror(err)}")
    return fd


def add_watch(fd: int, path: str, mask: int) -> int:
    wd = _libc.inotify_add_watch(fd, path.encode(), mask)
    if wd < 0:
        err = _ffi.errno
        raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
    return wd


def rm_watch(fd: int, wd: int) -> None:
    _libc.inotify_rm_watch(fd, wd)


def read_events(fd: int) -> list[tuple[int, int]]:
    """(watch descriptor, mask) of every pending event; [] when none are pending."""
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return []
    out = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        out.append((wd, mask))
        offset += _EVENT.size + length
    return out
