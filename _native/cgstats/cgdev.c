/* Device names for blkio entries, from /proc/partitions. */
#include "cgread.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARTITIONS "/proc/partitions"

/* "major minor #blocks name" after two header lines; the first line of a device wins, as in
 * containerd. */
static int parse_line(const char *p, const char *end, struct cgdev *d)
{
    uint64_t major, minor, blocks;
    const char *name;
    if (cgf_parse_u64(&p, end, &major) < 0 || cgf_parse_u64(&p, end, &minor) < 0 ||
        cgf_parse_u64(&p, end, &blocks) < 0)
        return -1;
    while (p < end && *p == ' ')
        p++;
    name = p;
    while (p < end && *p != ' ')
        p++;
    if (p == name || major > UINT32_MAX || minor > UINT32_MAX)
        return -1;
    d->major = (uint32_t)major;
    d->minor = (uint32_t)minor;
    snprintf(d->path, sizeof(d->path), "/dev/%.*s", (int)(p - name), name);
    return 0;
}

int cgdevs_load(struct cgdevs *d, struct nerr *e)
{
    char stack[8192];
    struct cgbuf b;
    size_t len, cap = 0, line_no = 0;
    const char *p, *end;
    int dirfd, r;

    d->v = NULL;
    d->n = 0;
    dirfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return nerr_sys(e, errno, "open /proc for the block device names");
    cgbuf_init(&b, stack, sizeof(stack));
    r = cgf_read(dirfd, "/proc", "partitions", &b, &len, e);
    close(dirfd);
    if (r == CGF_MISSING)
        r = nerr_set(e, ENOENT, "read " PARTITIONS ": the file is missing");
    if (r < 0)
        goto out;
    p = b.p;
    end = p + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        struct cgdev dev;
        if (!eol)
            eol = end;
        if (line_no++ >= 2 && eol > p && parse_line(p, eol, &dev) == 0 &&
            !cgdevs_path(d, dev.major, dev.minor)) {
            if (d->n == cap) {
                struct cgdev *nv;
                cap = cap ? cap * 2 : 16;
                nv = realloc(d->v, cap * sizeof(*nv));
                if (!nv) {
                    r = nerr_sys(e, ENOMEM, "list the block devices of " PARTITIONS);
                    cgdevs_free(d);
                    goto out;
                }
                d->v = nv;
            }
            d->v[d->n++] = dev;
        }
        p = eol + 1;
    }
    r = 0;
out:
    cgbuf_free(&b);
    return r;
}

const char *cgdevs_path(const struct cgdevs *d, uint64_t major, uint64_t minor)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].major == major && d->v[i].minor == minor)
            return d->v[i].path;
    return NULL;
}

void cgdevs_free(struct cgdevs *d)
{
    free(d->v);
    d->v = NULL;
    d->n = 0;
}
