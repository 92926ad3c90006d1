#include "cgfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cgbuf_init(struct cgbuf *b, char *stack, size_t cap)
{
    b->p = stack;
    b->cap = cap;
    b->heap = 0;
}

void cgbuf_free(struct cgbuf *b)
{
    if (b->heap)
        free(b->p);
    b->p = NULL;
    b->cap = 0;
    b->heap = 0;
}

static int grow(struct cgbuf *b, size_t used, struct nerr *e)
{
    size_t cap = b->cap * 2;
    char *np = b->heap ? realloc(b->p, cap) : malloc(cap);
    if (!np)
        return nerr_sys(e, ENOMEM, "grow the file buffer to %zu bytes", cap);
    if (!b->heap)
        memcpy(np, b->p, used);
    b->p = np;
    b->cap = cap;
    b->heap = 1;
    return 0;
}

static int missing(int err)
{
    return err == ENOENT || err == ENODEV;
}

int cgf_open_dir(const char *dir, int *fd, struct nerr *e)
{
    *fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*fd >= 0)
        return CGF_OK;
    if (errno == ENOENT)
        return CGF_MISSING;
    return nerr_sys(e, errno, "open cgroup directory %s", dir);
}

int cgf_dir_gone(const char *dir)
{
    return access(dir, F_OK) < 0 && errno == ENOENT;
}

/* Cgroup stat files are single-record seq_files: one read hands over all the text that fits,
 * so a short read is the end and the usual extra read() that returns 0 can be saved. Past a
 * page, a seq_file may return less than asked before the end, so large files read on to 0. */
#define SHORT_READ_IS_END 3072

int cgf_read(int dirfd, const char *dir, const char *name, struct cgbuf *b, size_t *len,
             struct nerr *e)
{
    size_t used = 0;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (missing(errno))
            return CGF_MISSING;
        return nerr_sys(e, errno, "open %s/%s", dir, name);
    }
    for (;;) {
        size_t room = b->cap - 1 - used;
        ssize_t n;
        if (room == 0) {
            if (grow(b, used, e) < 0)
                goto fail;
            room = b->cap - 1 - used;
        }
        n = read(fd, b->p + used, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (missing(errno)) {
                close(fd);
                return CGF_MISSING;
            }
            nerr_sys(e, errno, "read %s/%s", dir, name);
            goto fail;
        }
        used += (size_t)n;
        if (n == 0 || ((size_t)n < room && used < SHORT_READ_IS_END))
            break;
    }
    close(fd);
    b->p[used] = '\0';
    *len = used;
    return CGF_OK;
fail:
    close(fd);
    return -1;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n';
}

int cgf_parse_u64(const char **pp, const char *end, uint64_t *v)
{
    const char *p = *pp;
    uint64_t x = 0;
    int neg = 0;
    const char *digits;
    while (p < end && is_blank(*p))
        p++;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    digits = p;
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (!neg && x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
        p++;
    }
    if (p == digits)
        return -1;
    *v = neg ? 0 : x;
    *pp = p;
    return 0;
}

int cgf_read_u64(int dirfd, const char *dir, const char *name, struct cgbuf *b, uint64_t if_max,
                 uint64_t *v, struct nerr *e)
{
    size_t len;
    const char *p, *end;
    int r = cgf_read(dirfd, dir, name, b, &len, e);
    if (r != CGF_OK)
        return r;
    p = b->p;
    end = p + len;
    while (p < end && is_blank(*p))
        p++;
    if (end - p >= 3 && memcmp(p, "max", 3) == 0) {
        *v = if_max;
        p += 3;
    } else if (cgf_parse_u64(&p, end, v) < 0) {
        return nerr_set(e, EINVAL, "parse %s/%s: not a number: \"%.40s\"", dir, name, b->p);
    }
    while (p < end && is_blank(*p))
        p++;
    if (p != end)
        return nerr_set(e, EINVAL, "parse %s/%s: trailing text: \"%.40s\"", dir, name, b->p);
    return CGF_OK;
}

/* Tables are in field order and kernels print keys in much the same order, so the search
 * starts after the last match: usually one comparison, a full pass only for keys we skip. */
const struct cgf_key *cgf_find_key(const struct cgf_key *keys, size_t nkeys, size_t *hint,
                                   const char *k, size_t klen)
{
    for (size_t i = 0; i < nkeys; i++) {
        size_t j = (*hint + i) % nkeys;
        if (keys[j].len == klen && memcmp(keys[j].name, k, klen) == 0) {
            *hint = j + 1;
            return &keys[j];
        }
    }
    return NULL;
}

int cgf_parse_kv(const char *s, size_t len, const struct cgf_key *keys, size_t nkeys,
                 uint64_t *vals, const char *dir, const char *name, struct nerr *e)
{
    const char *p = s, *end = s + len;
    size_t hint = 0;
    while (p < end) {
        const char *line = p, *eol = memchr(p, '\n', (size_t)(end - p));
        const char *k = p;
        const struct cgf_key *key;
        if (!eol)
            eol = end;
        while (p < eol && *p != ' ')
            p++;
        key = cgf_find_key(keys, nkeys, &hint, k, (size_t)(p - k));
        if (key) {
            uint64_t v;
            if (cgf_parse_u64(&p, eol, &v) < 0)
                goto bad;
            while (p < eol && (*p == ' ' || *p == '\t'))
                p++;
            if (p != eol)
                goto bad;
            vals[key->field] = v;
        }
        p = eol + (eol < end);
        continue;
    bad:
        return nerr_set(e, EINVAL, "parse %s/%s: bad line \"%.*s\"", dir, name,
                        (int)(eol - line > 80 ? 80 : eol - line), line);
    }
    return 0;
}
