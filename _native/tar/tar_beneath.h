/* Archive names made safe, and resolved strictly inside the extraction target.
 *
 * Names are cleaned first (no absolute names, no `..`, shorter than PATH_MAX). Every path is
 * then resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
 * relative to the target: a symlink on the way that points outside (absolute, or `..` past the
 * target), or a mount point (a bind mount could lead anywhere), makes the kernel fail with
 * EXDEV, which we report as a refusal (EPERM). We refuse rather than clamp (RESOLVE_IN_ROOT)
 * because an archive that writes through such a link is hostile or broken, and silently
 * redirecting its writes would hide that. Symlinks that stay inside are followed. Only parents
 * are resolved this way; the final component is always created or changed with *at calls that
 * do not follow it. */
#ifndef TASKAGENT_TAR_BENEATH_H
#define TASKAGENT_TAR_BENEATH_H

#include <limits.h>
#include <stddef.h>

#include "nerr.h"

/* Copy raw into out (PATH_MAX bytes) as a relative path without "." or empty components or a
 * trailing '/'. Returns its length (0 means the target itself) or -1: EPERM for an absolute
 * name or a `..` component, ENAMETOOLONG for PATH_MAX bytes or more. */
int tar_clean_name(const char *raw, char *out, struct nerr *e);

struct beneath {
    int root;             /* the target directory */
    int cached;           /* O_PATH fd of cached_path, -1 when none */
    size_t cached_len;
    char cached_path[PATH_MAX];
};

void beneath_init(struct beneath *b, int root);
/* Drop the cached parent; call after removing anything, since the cached dir may be gone. */
void beneath_forget(struct beneath *b);
void beneath_close(struct beneath *b);

/* The parent directory of a cleaned name, creating missing directories (mode 0755) on the
 * way. Returns a dir fd owned by b (do not close) and points *base at the last component. */
int beneath_parent(struct beneath *b, const char *rel, size_t len, const char **base,
                   struct nerr *e);

/* openat2 of a cleaned name beneath the target with the given open flags; the caller closes
 * the fd. An empty name opens the target itself. */
int beneath_open(struct beneath *b, const char *rel, int flags, struct nerr *e);

#endif
