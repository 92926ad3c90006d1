#include "tar_pax.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(struct pax_buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static size_t digits(size_t n)
{
    size_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

int pax_add(struct pax_buf *b, const char *key, const char *val, size_t vlen)
{
    size_t klen = strlen(key);
    size_t body = klen + vlen + 3; /* ' ', '=' and '\n' */
    /* The length counts its own digits, so settle it by iterating. */
    size_t total = body + digits(body);
    while (total != body + digits(total))
        total = body + digits(total);
    if (reserve(b, total + 1) < 0)
        return -1;
    int n = snprintf(b->data + b->len, total + 1, "%zu %s=", total, key);
    memcpy(b->data + b->len + n, val, vlen);
    b->data[b->len + total - 1] = '\n';
    b->len += total;
    return 0;
}

int pax_add_u64(struct pax_buf *b, const char *key, uint64_t v)
{
    char s[24];
    int n = snprintf(s, sizeof(s), "%" PRIu64, v);
    return pax_add(b, key, s, (size_t)n);
}

int pax_add_time(struct pax_buf *b, const char *key, const struct timespec *t)
{
    char s[48];
    int64_t sec = t->tv_sec;
    long nsec = t->tv_nsec;
    const char *sign = "";
    /* A negative time with a fraction is written as -(|sec| - 1).(1e9 - nsec). */
    if (sec < 0 && nsec > 0) {
        sec = -(sec + 1);
        nsec = 1000000000L - nsec;
        sign = "-";
    }
    int n = snprintf(s, sizeof(s), "%s%" PRId64, sign, sec);
    if (nsec) {
        n += snprintf(s + n, sizeof(s) - (size_t)n, ".%09ld", nsec);
        while (s[n - 1] == '0')
            n--;
    }
    return pax_add(b, key, s, (size_t)n);
}

void pax_buf_free(struct pax_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int parse_u64(const char *s, size_t n, uint64_t *v)
{
    uint64_t r = 0;
    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        r = r * 10 + (uint64_t)(s[i] - '0');
    }
    *v = r;
    return 0;
}

static int parse_time(const char *s, size_t n, struct timespec *t)
{
    int neg = n > 0 && s[0] == '-';
    const char *dot = memchr(s, '.', n);
    size_t ilen = (dot ? (size_t)(dot - s) : n) - (size_t)neg;
    uint64_t sec;
    long nsec = 0;

    if (parse_u64(s + neg, ilen, &sec) < 0 || sec > INT64_MAX / 2)
        return -1;
    if (dot) {
        size_t flen = n - (size_t)(dot - s) - 1;
        long scale = 100000000L;
        if (flen == 0)
            return -1;
        for (size_t i = 0; i < flen; i++) {
            char c = dot[1 + i];
            if (c < '0' || c > '9')
                return -1;
            nsec += (c - '0') * scale; /* digits past the ninth add 0: truncated, as GNU does */
            scale /= 10;
        }
    }
    if (neg && nsec) {
        t->tv_sec = -(int64_t)sec - 1;
        t->tv_nsec = 1000000000L - nsec;
    } else {
        t->tv_sec = neg ? -(int64_t)sec : (int64_t)sec;
        t->tv_nsec = nsec;
    }
    return 0;
}

static int add_xattr(struct pax_attrs *a, const char *name, const char *val, size_t len)
{
    if (a->nxattrs == a->xcap) {
        size_t cap = a->xcap ? a->xcap * 2 : 8;
        struct pax_xattr *x = realloc(a->xattrs, cap * sizeof(*x));
        if (!x)
            return -1;
        a->xattrs = x;
        a->xcap = cap;
    }
    a->xattrs[a->nxattrs++] = (struct pax_xattr){name, val, len};
    return 0;
}

/* One record whose key is NUL-terminated in place; val is terminated by the record's '\n',
 * which has also been replaced by a NUL. */
static int apply_record(struct pax_attrs *a, const char *key, const char *val, size_t vlen,
                        struct nerr *e)
{
    int bad = 0;
    if (strcmp(key, "path") == 0 || strcmp(key, "linkpath") == 0) {
        int is_path = key[0] == 'p';
        unsigned bit = is_path ? PAX_HAS_PATH : PAX_HAS_LINKPATH;
        if (memchr(val, '\0', vlen))
            return nerr_set(e, EINVAL, "pax record %s: contains a NUL byte", key);
        if (vlen == 0) { /* an empty value cancels an earlier (global) one */
            a->has &= ~bit;
            return 0;
        }
        if (is_path)
            a->path = val;
        else
            a->linkpath = val;
        a->has |= bit;
    } else if (strcmp(key, "size") == 0) {
        bad = parse_u64(val, vlen, &a->size) < 0 || a->size > INT64_MAX;
        a->has |= PAX_HAS_SIZE;
    } else if (strcmp(key, "uid") == 0) {
        bad = parse_u64(val, vlen, &a->uid) < 0 || a->uid >= UINT32_MAX;
        a->has |= PAX_HAS_UID;
    } else if (strcmp(key, "gid") == 0) {
        bad = parse_u64(val, vlen, &a->gid) < 0 || a->gid >= UINT32_MAX;
        a->has |= PAX_HAS_GID;
    } else if (strcmp(key, "mtime") == 0) {
        bad = parse_time(val, vlen, &a->mtime) < 0;
        a->has |= PAX_HAS_MTIME;
    } else if (strcmp(key, "atime") == 0) {
        bad = parse_time(val, vlen, &a->atime) < 0;
        a->has |= PAX_HAS_ATIME;
    } else if (strncmp(key, PAX_XATTR_PREFIX, sizeof(PAX_XATTR_PREFIX) - 1) == 0) {
        const char *name = key + sizeof(PAX_XATTR_PREFIX) - 1;
        if (!*name)
            return nerr_set(e, EINVAL, "pax record %s: empty xattr name", key);
        if (add_xattr(a, name, val, vlen) < 0)
            return nerr_sys(e, ENOMEM, "pax record %s", key);
    } else if (strncmp(key, "GNU.sparse.", 11) == 0) {
        return nerr_set(e, ENOTSUP, "pax record %s: sparse entries are not supported", key);
    }
    if (bad)
        return nerr_set(e, EINVAL, "pax record %s: bad value", key);
    return 0;
}

int pax_parse(char *data, size_t len, struct pax_attrs *a, struct nerr *e)
{
    size_t off = 0;
    while (off < len) {
        char *rec = data + off;
        size_t room = len - off, n = 0, i = 0;
        /* Some writers pad the data with NULs after the last record. */
        if (rec[0] == '\0')
            break;
        for (; i < room && rec[i] >= '0' && rec[i] <= '9' && i < 20; i++)
            n = n * 10 + (size_t)(rec[i] - '0');
        if (i == 0 || i >= room || rec[i] != ' ' || n <= i + 1 || n > room || rec[n - 1] != '\n')
            return nerr_set(e, EINVAL, "pax header: malformed record at offset %zu", off);
        char *key = rec + i + 1;
        char *eq = memchr(key, '=', (size_t)(rec + n - 1 - key));
        if (!eq || eq == key)
            return nerr_set(e, EINVAL, "pax header: record without key at offset %zu", off);
        *eq = '\0';
        rec[n - 1] = '\0';
        if (apply_record(a, key, eq + 1, (size_t)(rec + n - 1 - (eq + 1)), e) < 0)
            return -1;
        off += n;
    }
    return 0;
}

void pax_attrs_clear(struct pax_attrs *a)
{
    a->has = 0;
    a->nxattrs = 0;
}

void pax_attrs_free(struct pax_attrs *a)
{
    free(a->xattrs);
    a->xattrs = NULL;
    a->nxattrs = a->xcap = 0;
    a->has = 0;
}
