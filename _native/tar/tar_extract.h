/* Creating one archive entry inside the target, and its metadata, without following any link
 * out of it. The stream parsing lives in tar_apply.c; this file only touches the filesystem. */
#ifndef TASKAGENT_TAR_EXTRACT_H
#define TASKAGENT_TAR_EXTRACT_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "nerr.h"
#include "tar_beneath.h"
#include "tar_io.h"
#include "tar_pax.h"

struct tar_entry {
    char type;
    const char *raw;     /* the name as the archive spells it, for checks and messages */
    const char *linkraw; /* hardlink name or symlink target as the archive spells it */
    uint64_t size;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    struct timespec atime, mtime;
    const struct pax_xattr *xattrs[2]; /* global records first, then the entry's own */
    size_t nxattrs[2];
};

struct dir_fixup {
    char *path;
    mode_t mode;
    struct timespec times[2];
};

struct extractor {
    struct beneath at;
    int set_owner; /* only root can give files away; others keep their own uid, as GNU tar */
    int removed;   /* something was unlinked: the cached parent may be stale */
    struct dir_fixup *dirs;
    size_t ndirs, dcap;
    char name[PATH_MAX];
    char link[PATH_MAX];
};

void extract_init(struct extractor *x, int root);
/* Create one entry. A regular file's data is copied from in (exactly ent->size bytes); the
 * caller skips the data of other types and the padding. */
int extract_entry(struct extractor *x, const struct tar_entry *ent, struct tar_in *in,
                  struct nerr *e);
/* Directory modes and times, set last because creating entries inside changes them. */
int extract_finish(struct extractor *x, struct nerr *e);
void extract_free(struct extractor *x);

#endif
