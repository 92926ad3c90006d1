"""Tar streams for checkpoints: write a directory as a tar stream, and extract one safely.

The work happens in C (`_native/tar/`) with the GIL released. Both directions stream: `diff`
can write to a pipe and `apply` reads a pipe without seeking.

The format is POSIX pax, as GNU tar writes with `--format=posix`: sorted names, numeric owners,
nanosecond times and xattrs as `SCHILY.xattr.<name>` records. `apply` also reads GNU tar's own
format (long names as 'L'/'K' entries).

Safety of `apply`: nothing is ever written outside `dest_dir`. Absolute names, `..` components,
paths through a symlink that leaves the target or through a mount point inside it (resolved with
openat2 RESOLVE_BENEATH | RESOLVE_NO_XDEV, so such archives are refused rather than clamped),
hardlinks to anything but a regular file inside the target, device nodes, names of PATH_MAX
bytes or more, bad checksums and truncated streams all raise `TarError` naming the entry. FIFOs
are extracted. On an error, extraction stops and what was extracted before it stays in
`dest_dir`: the caller owns that directory and removes it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, NamedTuple

from agent.native._tar import TarError, apply_fd, diff_fd

__all__ = ["TarCounts", "TarError", "apply", "diff"]

# A directory: a path, or an open directory fd (used as is, not closed).
DirArg = str | bytes | os.PathLike | int
# A stream: an fd (used as is, not closed) or a binary file object with a real fileno().
StreamArg = int | IO[bytes]


class TarCounts(NamedTuple):
    entries: int  # files, dirs, links and FIFOs written or extracted
    bytes: int  # archive bytes written or read


@contextlib.contextmanager
def _dir_fd(d: DirArg) -> Iterator[int]:
    if isinstance(d, int):
        yield d
        return
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def diff(src_dir: DirArg, out: StreamArg) -> TarCounts:
    """Write the tree under `src_dir` (not the directory itself) as a tar stream to `out`.

    Regular files, directories (as "name/"), symlinks, hardlinks (by device and inode, written
    as links to the first name), and FIFOs, in sorted name order, with mode, numeric uid/gid,
    mtime and atime to the nanosecond, and every xattr. Sockets are skipped; device nodes raise
    `TarError` (apply would refuse them). A file object's buffer is flushed first, and its
    position is brought up to date afterwards when it is seekable.
    """
    if isinstance(out, int):
        out_fd = out
    else:
        out.flush()
        out_fd = out.fileno()
    with _dir_fd(src_dir) as dfd:
        entries, nbytes = diff_fd(dfd, out_fd)
    if not isinstance(out, int) and out.seekable():
        out.seek(0, os.SEEK_CUR)  # the data went to the fd behind the object's back
    return TarCounts(entries, nbytes)


def apply(inp: StreamArg, dest_dir: DirArg) -> TarCounts:
    """Extract the tar stream read from `inp` into the existing directory `dest_dir`.

    Sets modes (setuid bits included, after the owner), owners (when running as root), mtimes,
    atimes (equal to the mtime when the archive has none) and xattrs. Existing entries with the
    same name are replaced (a non-empty directory is kept and updated). Everything after the
    end-of-archive blocks is read and dropped, so a producer on a pipe finishes cleanly. A
    seekable file object is read from its current position; for a pipe pass an fd or an
    unbuffered file object, since data already buffered in Python cannot be seen here.
    """
    if isinstance(inp, int):
        in_fd = inp
    else:
        in_fd = inp.fileno()
        if inp.seekable():
            os.lseek(in_fd, inp.tell(), os.SEEK_SET)
    with _dir_fd(dest_dir) as dfd:
        entries, nbytes = apply_fd(in_fd, dfd)
    return TarCounts(entries, nbytes)
