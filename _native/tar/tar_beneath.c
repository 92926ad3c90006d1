#include "tar_beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int tar_clean_name(const char *raw, char *out, struct nerr *e)
{
    size_t o = 0;
    const char *p = raw;

    if (strnlen(raw, PATH_MAX) >= PATH_MAX)
        return nerr_set(e, ENAMETOOLONG, "name of PATH_MAX (%d) bytes or more refused",
                        PATH_MAX);
    if (raw[0] == '/')
        return nerr_set(e, EPERM, "absolute name refused");
    while (*p) {
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - s);
        if (*p)
            p++;
        if (n == 0 || (n == 1 && s[0] == '.'))
            continue;
        /* Refused, not stripped: an archive that climbs out is hostile, not just untidy. */
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return nerr_set(e, EPERM, "'..' component refused");
        if (n > NAME_MAX)
            return nerr_set(e, ENAMETOOLONG, "component longer than NAME_MAX refused");
        if (o)
            out[o++] = '/';
        memcpy(out + o, s, n);
        o += n;
    }
    out[o] = '\0';
    return (int)o;
}

/* openat2 beneath dirfd; on failure e holds the errno (callers test e->code for ENOENT). */
static int open_beneath(int dirfd, const char *path, int flags, struct nerr *e)
{
    struct open_how how = {
        .flags = (unsigned long long)(flags | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    for (int tries = 0;; tries++) {
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        /* EAGAIN: a concurrent rename made the kernel unsure the walk stayed inside; retry. */
        if (errno == EINTR || (errno == EAGAIN && tries < 32))
            continue;
        if (errno == EXDEV)
            return nerr_set(e, EPERM, "%.200s: leads outside the target through a symlink "
                            "or a mount point; refused", path);
        if (errno == ENOSYS)
            return nerr_set(e, ENOSYS, "openat2 is not available (Linux 5.6 or later is "
                            "needed to extract safely)");
        return nerr_sys(e, errno, "openat2 %.200s", path);
    }
}

void beneath_init(struct beneath *b, int root)
{
    b->root = root;
    b->cached = -1;
    b->cached_len = 0;
}

void beneath_forget(struct beneath *b)
{
    if (b->cached >= 0)
        close(b->cached);
    b->cached = -1;
}

void beneath_close(struct beneath *b)
{
    beneath_forget(b);
}

/* Walk path (len bytes, writable, NUL at len) one component at a time, creating what is
 * missing. mkdirat runs in a parent already resolved beneath the target, and never follows
 * the new name, so nothing can be created outside. */
static int make_parents(struct beneath *b, char *path, size_t len, struct nerr *e)
{
    int prev = -1;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        char c = path[i];
        path[i] = '\0';
        int fd = open_beneath(b->root, path, O_PATH | O_DIRECTORY, e);
        if (fd < 0 && e->code == ENOENT) {
            nerr_clear(e);
            if (mkdirat(prev >= 0 ? prev : b->root, path + start, 0755) < 0 && errno != EEXIST)
                nerr_sys(e, errno, "mkdirat %.200s", path);
            else
                fd = open_beneath(b->root, path, O_PATH | O_DIRECTORY, e);
        }
        path[i] = c;
        if (prev >= 0)
            close(prev);
        if (fd < 0)
            return -1;
        prev = fd;
        start = i + 1;
    }
    return prev;
}

int beneath_parent(struct beneath *b, const char *rel, size_t len, const char **base,
                   struct nerr *e)
{
    const char *slash = memrchr(rel, '/', len);
    if (!slash) {
        *base = rel;
        return b->root;
    }
    size_t plen = (size_t)(slash - rel);
    *base = slash + 1;
    /* Archives list a directory's files together: the last parent is usually the next one. */
    if (b->cached >= 0 && plen == b->cached_len && memcmp(rel, b->cached_path, plen) == 0)
        return b->cached;
    beneath_forget(b);
    memcpy(b->cached_path, rel, plen);
    b->cached_path[plen] = '\0';
    int fd = open_beneath(b->root, b->cached_path, O_PATH | O_DIRECTORY, e);
    if (fd < 0 && e->code == ENOENT) {
        nerr_clear(e);
        fd = make_parents(b, b->cached_path, plen, e);
    }
    if (fd < 0)
        return -1;
    b->cached = fd;
    b->cached_len = plen;
    return fd;
}

int beneath_open(struct beneath *b, const char *rel, int flags, struct nerr *e)
{
    return open_beneath(b->root, rel[0] ? rel : ".", flags, e);
}
