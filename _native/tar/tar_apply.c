/* apply: read a tar stream (ustar, pax 'x'/'g', GNU 'L'/'K') and hand each entry to the
 * extractor. This file only parses; every filesystem change happens in tar_extract.c. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tar.h"
#include "tar_extract.h"
#include "tar_header.h"
#include "tar_io.h"
#include "tar_pax.h"

/* A bound on what a hostile header can make us allocate; xattrs are at most 64 KiB each. */
#define PAX_MAX (16u << 20)

struct applier {
    struct tar_in in;
    struct extractor x;
    struct pax_attrs global, local; /* strings point into gdata and ldata */
    char *gdata, *ldata;
    size_t gcap, lcap;
    int has_longname, has_longlink;
    uint64_t entries;
    char longname[PATH_MAX + 1];
    char longlink[PATH_MAX + 1];
    char hname[257]; /* prefix "/" name */
    char hlink[101];
};

static int bad_header(uint64_t at, const char *what, struct nerr *e)
{
    return nerr_set(e, EINVAL, "header at byte %llu: %s", (unsigned long long)at, what);
}

/* Read the next header block into h; *end is set at an end-of-archive (zero) block. */
static int next_header(struct applier *a, struct tar_ustar *h, int *end, struct nerr *e)
{
    uint64_t at = a->in.offset;
    ssize_t got = tin_fill(&a->in, TAR_BLOCK, e);
    if (got < 0)
        return -1;
    if (got < TAR_BLOCK)
        return nerr_set(e, EINVAL, "archive is truncated at byte %llu (%s)",
                        (unsigned long long)(at + (uint64_t)got),
                        got ? "inside a header" : "no end-of-archive blocks");
    memcpy(h, a->in.buf + a->in.pos, TAR_BLOCK);
    tin_consume(&a->in, TAR_BLOCK);
    *end = tar_is_zero_block(h);
    if (*end)
        return 0;
    switch (tar_verify(h)) {
    case -1:
        return bad_header(at, "bad checksum", e);
    case -2:
        return bad_header(at, "not a ustar header", e);
    }
    return 0;
}

/* The data of an extension header (pax records, GNU long name) into *buf, NUL-terminated. */
static int read_ext(struct applier *a, uint64_t size, uint64_t max, int too_big, char **buf,
                    size_t *cap, const char *what, struct nerr *e)
{
    if (size > max)
        return nerr_set(e, too_big, "%s of %llu bytes refused", what, (unsigned long long)size);
    if (size + 1 > *cap) {
        char *p = realloc(*buf, size + 1);
        if (!p)
            return nerr_sys(e, ENOMEM, "%s", what);
        *buf = p;
        *cap = size + 1;
    }
    if (tin_read(&a->in, *buf, size, e) < 0 || tin_skip(&a->in, TAR_PAD(size), e) < 0)
        return nerr_wrap(e, "%s", what);
    (*buf)[size] = '\0';
    return 0;
}

static int read_long(struct applier *a, uint64_t size, char *out, const char *what,
                     struct nerr *e)
{
    char *buf = NULL;
    size_t cap = 0;
    int r = read_ext(a, size, PATH_MAX, ENAMETOOLONG, &buf, &cap, what, e);
    if (r == 0)
        strcpy(out, buf); /* up to its first NUL, which GNU writes at the end */
    free(buf);
    return r;
}

static int numeric(const char *field, size_t len, const char *what, uint64_t *v,
                   struct nerr *e)
{
    if (tar_get_num(field, len, v) < 0)
        return nerr_set(e, EINVAL, "bad %s field", what);
    return 0;
}

/* Header fields, overridden by the global then the entry's own pax records. */
static int build_entry(struct applier *a, const struct tar_ustar *h, uint64_t size,
                       struct tar_entry *ent, struct nerr *e)
{
    const struct pax_attrs *g = &a->global, *l = &a->local;
    uint64_t mode, uid, gid;
    int64_t mtime;

    if (numeric(h->mode, sizeof(h->mode), "mode", &mode, e) < 0 ||
        numeric(h->uid, sizeof(h->uid), "uid", &uid, e) < 0 ||
        numeric(h->gid, sizeof(h->gid), "gid", &gid, e) < 0)
        return -1;
    if (tar_get_time(h->mtime, sizeof(h->mtime), &mtime) < 0)
        return nerr_set(e, EINVAL, "bad mtime field");
    if (uid >= UINT32_MAX || gid >= UINT32_MAX)
        return nerr_set(e, EINVAL, "uid or gid out of range");
    memset(ent, 0, sizeof(*ent));
    ent->type = h->typeflag;
    ent->mode = (mode_t)(mode & 07777);

    if (l->has & PAX_HAS_PATH)
        ent->raw = l->path;
    else if (g->has & PAX_HAS_PATH)
        ent->raw = g->path;
    else if (a->has_longname)
        ent->raw = a->longname;
    else {
        tar_get_name(h, a->hname);
        ent->raw = a->hname;
    }
    if (l->has & PAX_HAS_LINKPATH)
        ent->linkraw = l->linkpath;
    else if (g->has & PAX_HAS_LINKPATH)
        ent->linkraw = g->linkpath;
    else if (a->has_longlink)
        ent->linkraw = a->longlink;
    else {
        memcpy(a->hlink, h->linkname, sizeof(h->linkname));
        a->hlink[sizeof(h->linkname)] = '\0';
        ent->linkraw = a->hlink;
    }
    ent->size = l->has & PAX_HAS_SIZE ? l->size : g->has & PAX_HAS_SIZE ? g->size : size;
    ent->uid = (uid_t)(l->has & PAX_HAS_UID ? l->uid : g->has & PAX_HAS_UID ? g->uid : uid);
    ent->gid = (gid_t)(l->has & PAX_HAS_GID ? l->gid : g->has & PAX_HAS_GID ? g->gid : gid);
    if (l->has & PAX_HAS_MTIME)
        ent->mtime = l->mtime;
    else if (g->has & PAX_HAS_MTIME)
        ent->mtime = g->mtime;
    else
        ent->mtime = (struct timespec){(time_t)mtime, 0};
    /* Without an atime record, atime = mtime: deterministic, and what diff relies on. */
    ent->atime = l->has & PAX_HAS_ATIME ? l->atime : g->has & PAX_HAS_ATIME ? g->atime
                                                                           : ent->mtime;
    ent->xattrs[0] = g->xattrs;
    ent->nxattrs[0] = g->nxattrs;
    ent->xattrs[1] = l->xattrs;
    ent->nxattrs[1] = l->nxattrs;
    return 0;
}

/* Types that never carry data, whatever their size field says (as Go's archive/tar reads). */
static int header_only(char type)
{
    return type == TAR_LNK || type == TAR_SYM || type == TAR_CHR || type == TAR_BLK ||
           type == TAR_DIR || type == TAR_FIFO;
}

static int one_entry(struct applier *a, const struct tar_ustar *h, uint64_t size, struct nerr *e)
{
    struct tar_entry ent;
    if (build_entry(a, h, size, &ent, e) < 0)
        return nerr_wrap(e, "header at byte %llu", (unsigned long long)(a->in.offset - TAR_BLOCK));
    uint64_t data = header_only(ent.type) ? 0 : ent.size;
    uint64_t start = a->in.offset;
    if (extract_entry(&a->x, &ent, &a->in, e) < 0)
        return nerr_wrap(e, "entry \"%.150s\"", ent.raw);
    /* The extractor consumed a regular file's data; skip what is left and the padding. */
    if (tin_skip(&a->in, data - (a->in.offset - start) + TAR_PAD(data), e) < 0)
        return nerr_wrap(e, "entry \"%.150s\"", ent.raw);
    pax_attrs_clear(&a->local);
    a->has_longname = a->has_longlink = 0;
    a->entries++;
    return 0;
}

static int run(struct applier *a, struct nerr *e)
{
    for (;;) {
        struct tar_ustar h;
        uint64_t size;
        int end = 0;
        if (next_header(a, &h, &end, e) < 0)
            return -1;
        if (end)
            break;
        if (tar_get_num(h.size, sizeof(h.size), &size) < 0 || size > INT64_MAX)
            return bad_header(a->in.offset - TAR_BLOCK, "bad size field", e);
        switch (h.typeflag) {
        case TAR_PAX:
            /* Records point into ldata; a second 'x' would overwrite them. */
            if (a->local.has || a->local.nxattrs)
                return bad_header(a->in.offset - TAR_BLOCK, "two pax headers in a row", e);
            if (read_ext(a, size, PAX_MAX, EINVAL, &a->ldata, &a->lcap, "pax header", e) < 0 ||
                pax_parse(a->ldata, size, &a->local, e) < 0)
                return -1;
            break;
        case TAR_GPAX:
            /* A new global header replaces the previous one rather than merging into it. */
            pax_attrs_clear(&a->global);
            if (read_ext(a, size, PAX_MAX, EINVAL, &a->gdata, &a->gcap, "global pax header",
                         e) < 0 ||
                pax_parse(a->gdata, size, &a->global, e) < 0)
                return -1;
            break;
        case TAR_GNU_LONGNAME:
            if (read_long(a, size, a->longname, "GNU long name", e) < 0)
                return -1;
            a->has_longname = 1;
            break;
        case TAR_GNU_LONGLINK:
            if (read_long(a, size, a->longlink, "GNU long link name", e) < 0)
                return -1;
            a->has_longlink = 1;
            break;
        default:
            if (one_entry(a, &h, size, e) < 0)
                return -1;
        }
    }
    /* The second zero block and any record padding: read whatever the producer still sends. */
    if (tin_drain(&a->in, e) < 0)
        return -1;
    return extract_finish(&a->x, e);
}

int tar_apply(int in_fd, int dirfd, struct tar_counts *counts, struct nerr *e)
{
    struct applier *a = calloc(1, sizeof(*a));
    struct stat st;
    int r = -1;

    nerr_clear(e);
    if (!a)
        return nerr_sys(e, ENOMEM, "tar apply");
    extract_init(&a->x, dirfd);
    if (fstat(dirfd, &st) < 0) {
        nerr_sys(e, errno, "tar apply: fstat target");
        goto done;
    }
    if (!S_ISDIR(st.st_mode)) {
        nerr_set(e, ENOTDIR, "tar apply: the target is not a directory");
        goto done;
    }
    if (tin_open(&a->in, in_fd, e) < 0)
        goto done;
    if (run(a, e) < 0) {
        nerr_wrap(e, "tar apply");
        goto done;
    }
    if (counts) {
        counts->entries = a->entries;
        counts->bytes = a->in.offset;
    }
    r = 0;
done:
    tin_close(&a->in);
    extract_free(&a->x);
    pax_attrs_free(&a->global);
    pax_attrs_free(&a->local);
    free(a->gdata);
    free(a->ldata);
    free(a);
    return r;
}
