#include "tar_header.h"

#include <string.h>

int tar_put_num(char *field, size_t len, uint64_t v)
{
    /* Octal with len-1 digits and a NUL leaves room for values below 8^(len-1). */
    if (v < ((uint64_t)1 << (3 * (len - 1)))) {
        size_t i = len - 1;
        field[i] = '\0';
        while (i-- > 0) {
            field[i] = (char)('0' + (v & 7));
            v >>= 3;
        }
        return 1;
    }
    memset(field, 0, len);
    field[0] = (char)0x80;
    for (size_t i = len - 1; i > 0 && v; i--) {
        field[i] = (char)(v & 0xff);
        v >>= 8;
    }
    return 0;
}

int tar_get_num(const char *field, size_t len, uint64_t *v)
{
    const unsigned char *f = (const unsigned char *)field;
    uint64_t r = 0;
    size_t i = 0;

    if (f[0] & 0x80) {
        if (f[0] != 0x80)
            return -1; /* negative or out of range base-256 */
        for (i = 1; i < len; i++) {
            if (r >> 55)
                return -1;
            r = (r << 8) | f[i];
        }
        *v = r;
        return 0;
    }
    while (i < len && f[i] == ' ')
        i++;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
        if (r >> 60)
            return -1;
        r = (r << 3) | (uint64_t)(f[i] - '0');
    }
    for (; i < len; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return -1;
    *v = r;
    return 0;
}

int tar_get_time(const char *field, size_t len, int64_t *v)
{
    const unsigned char *f = (const unsigned char *)field;
    uint64_t r = 0;
    if (f[0] != 0xff) {
        if (tar_get_num(field, len, &r) < 0 || r > INT64_MAX)
            return -1;
        *v = (int64_t)r;
        return 0;
    }
    /* Two's complement: the low 8 bytes hold the value, the bytes above only sign bits. */
    for (size_t i = 1; i < len; i++) {
        if (i + 8 < len && f[i] != 0xff)
            return -1;
        if (i + 8 >= len)
            r = (r << 8) | f[i];
    }
    *v = (int64_t)r;
    return *v < 0 ? 0 : -1;
}

int tar_put_name(struct tar_ustar *h, const char *name, size_t len)
{
    if (len <= sizeof(h->name)) {
        memcpy(h->name, name, len);
        return 0;
    }
    /* Split at a '/' so the prefix takes at most 155 bytes and the rest at most 100. */
    for (size_t i = len - sizeof(h->name) - 1; i <= sizeof(h->prefix) && i < len - 1; i++) {
        if (name[i] == '/') {
            memcpy(h->prefix, name, i);
            memcpy(h->name, name + i + 1, len - i - 1);
            return 0;
        }
    }
    return -1;
}

static size_t field_len(const char *f, size_t max)
{
    const char *z = memchr(f, '\0', max);
    return z ? (size_t)(z - f) : max;
}

size_t tar_get_name(const struct tar_ustar *h, char *out)
{
    size_t n = 0;
    /* The prefix field only means a prefix in POSIX ustar; GNU uses that space for other data. */
    if (memcmp(h->magic, "ustar\0", 6) == 0 && h->prefix[0]) {
        n = field_len(h->prefix, sizeof(h->prefix));
        memcpy(out, h->prefix, n);
        out[n++] = '/';
    }
    size_t m = field_len(h->name, sizeof(h->name));
    memcpy(out + n, h->name, m);
    out[n + m] = '\0';
    return n + m;
}

static void checksums(const struct tar_ustar *h, unsigned long *usum, long *ssum)
{
    const unsigned char *u = (const unsigned char *)h;
    const signed char *s = (const signed char *)h;
    size_t lo = offsetof(struct tar_ustar, chksum), hi = lo + sizeof(h->chksum);
    *usum = 0;
    *ssum = 0;
    for (size_t i = 0; i < TAR_BLOCK; i++) {
        if (i >= lo && i < hi) {
            *usum += ' ';
            *ssum += ' ';
        } else {
            *usum += u[i];
            *ssum += s[i];
        }
    }
}

void tar_seal(struct tar_ustar *h)
{
    unsigned long usum;
    long ssum;
    memcpy(h->magic, "ustar\0", 6);
    memcpy(h->version, "00", 2);
    checksums(h, &usum, &ssum);
    tar_put_num(h->chksum, 7, usum); /* six digits and a NUL, then a space, as POSIX shows */
    h->chksum[7] = ' ';
}

int tar_verify(const struct tar_ustar *h)
{
    unsigned long usum;
    long ssum;
    uint64_t want;
    if (tar_get_num(h->chksum, sizeof(h->chksum), &want) < 0)
        return -1;
    checksums(h, &usum, &ssum);
    if (want != usum && (int64_t)want != ssum)
        return -1;
    if (memcmp(h->magic, "ustar\0", 6) == 0)
        return 0; /* POSIX */
    if (memcmp(h->magic, "ustar ", 6) == 0 && memcmp(h->version, " \0", 2) == 0)
        return 0; /* GNU */
    return -2;
}

int tar_is_zero_block(const void *block)
{
    const uint64_t *w = block;
    for (size_t i = 0; i < TAR_BLOCK / sizeof(*w); i++)
        if (w[i])
            return 0;
    return 1;
}
