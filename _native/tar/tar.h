/* Native tar for checkpoints: write a directory as a POSIX (pax) tar stream, and extract a
 * stream into a directory without ever writing outside it.
 *
 * Errors follow nerr.h. The codes callers can rely on:
 *   EPERM         the archive asks for something refused for safety (absolute or `..` names,
 *                 a path through a symlink that leaves the target, device nodes, hardlinks to
 *                 non-regular files); the message names the entry.
 *   EINVAL        the stream is not a well-formed archive (bad checksum, bad field, truncated).
 *   ENAMETOOLONG  a name or link target of PATH_MAX bytes or more.
 *   ENOTSUP       an entry type or encoding we do not support (sparse files, multi-volume).
 *   anything else the syscall that failed, named in the message.
 */
#ifndef TASKAGENT_TAR_H
#define TASKAGENT_TAR_H

#include <stdint.h>

#include "nerr.h"

struct tar_counts {
    uint64_t entries; /* files, dirs, links and fifos written or extracted */
    uint64_t bytes;   /* archive bytes written or read */
};

/* Write the tree under dirfd (not the directory itself) to out_fd: sorted names, depth first,
 * directories as "name/". Regular files, dirs, symlinks, hardlinks (by dev/ino) and FIFOs are
 * archived with mode, numeric owner, nanosecond mtime, atime and all xattrs; sockets are
 * skipped (they cannot be archived); device nodes are an error (apply would refuse them).
 * The archive file itself is skipped if it lies inside the tree. */
int tar_diff(int dirfd, int out_fd, struct tar_counts *counts, struct nerr *e);

/* Extract the archive read from in_fd (a pipe is fine: no seeking) under dirfd. Each entry's
 * parent is resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV):
 * a path that would leave the target through `..`, a symlink or a mount point is refused, never
 * clamped (see tar_beneath.h). On error extraction stops and what was extracted so far stays in
 * the target; nothing outside it is touched. */
int tar_apply(int in_fd, int dirfd, struct tar_counts *counts, struct nerr *e);

#endif
