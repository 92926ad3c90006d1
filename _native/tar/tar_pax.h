/* PAX extended header records ("<len> <key>=<value>\n"): building them and parsing them. */
#ifndef TASKAGENT_TAR_PAX_H
#define TASKAGENT_TAR_PAX_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "nerr.h"

/* Prefix of the xattr records, as GNU tar, Go's archive/tar and containerd write them. */
#define PAX_XATTR_PREFIX "SCHILY.xattr."

/* A growing buffer of records for one entry. */
struct pax_buf {
    char *data;
    size_t len, cap;
};

/* Append one record; -1 with errno ENOMEM on allocation failure. */
int pax_add(struct pax_buf *b, const char *key, const char *val, size_t vlen);
int pax_add_u64(struct pax_buf *b, const char *key, uint64_t v);
/* Seconds with up to nine fraction digits, trailing zeros dropped ("mtime=1.5"). */
int pax_add_time(struct pax_buf *b, const char *key, const struct timespec *t);
void pax_buf_free(struct pax_buf *b);

/* What a parsed set of records says; strings point into the parsed (and modified) buffer. */
enum {
    PAX_HAS_PATH = 1 << 0,
    PAX_HAS_LINKPATH = 1 << 1,
    PAX_HAS_SIZE = 1 << 2,
    PAX_HAS_UID = 1 << 3,
    PAX_HAS_GID = 1 << 4,
    PAX_HAS_MTIME = 1 << 5,
    PAX_HAS_ATIME = 1 << 6,
};

struct pax_xattr {
    const char *name; /* NUL-terminated */
    const char *value;
    size_t len;
};

struct pax_attrs {
    unsigned has;
    const char *path;     /* NUL-terminated, no embedded NUL */
    const char *linkpath; /* NUL-terminated, no embedded NUL */
    uint64_t size, uid, gid;
    struct timespec mtime, atime;
    struct pax_xattr *xattrs;
    size_t nxattrs, xcap;
};

/* Parse len bytes of records into a (adding to what it holds). The buffer is modified in place
 * and must outlive a. Unknown keys are ignored; GNU sparse records are refused because skipping
 * them would silently extract wrong content. */
int pax_parse(char *data, size_t len, struct pax_attrs *a, struct nerr *e);

/* Forget the values but keep the xattr array's memory. */
void pax_attrs_clear(struct pax_attrs *a);
void pax_attrs_free(struct pax_attrs *a);

#endif
