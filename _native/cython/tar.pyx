# Thin wrappers over _native/tar: release the GIL around the C work, turn nerr into TarError.
from libc.stdint cimport uint64_t


cdef extern from "nerr.h":
    struct nerr:
        int code
        char msg[512]


cdef extern from "tar.h":
    struct tar_counts:
        uint64_t entries
        uint64_t bytes
    int tar_diff(int dirfd, int out_fd, tar_counts *counts, nerr *e) nogil
    int tar_apply(int in_fd, int dirfd, tar_counts *counts, nerr *e) nogil


class TarError(OSError):
    """A tar diff or apply failure: errno plus a message naming the step and the entry."""


cdef _raise(nerr *e):
    raise TarError(e.code, e.msg.decode("utf-8", "surrogateescape"))


def diff_fd(int dirfd, int out_fd):
    """Write the tree under dirfd to out_fd; returns (entries, archive bytes)."""
    cdef nerr e
    cdef tar_counts c
    cdef int r
    with nogil:
        r = tar_diff(dirfd, out_fd, &c, &e)
    if r < 0:
        _raise(&e)
    return c.entries, c.bytes


def apply_fd(int in_fd, int dirfd):
    """Extract the archive read from in_fd under dirfd; returns (entries, archive bytes)."""
    cdef nerr e
    cdef tar_counts c
    cdef int r
    with nogil:
        r = tar_apply(in_fd, dirfd, &c, &e)
    if r < 0:
        _raise(&e)
    return c.entries, c.bytes
