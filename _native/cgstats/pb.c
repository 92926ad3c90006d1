#include "pb.h"

#include <stdlib.h>
#include <string.h>

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

void pb_init(struct pb *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void pb_free(struct pb *b)
{
    free(b->p);
    pb_init(b);
}

uint8_t *pb_take(struct pb *b, size_t *len)
{
    uint8_t *p = b->p;
    *len = b->len;
    pb_init(b);
    return p;
}

/* Make room for `more` bytes; on failure set oom and return 0 (writers then do nothing). */
static int reserve(struct pb *b, size_t more)
{
    size_t want, cap;
    uint8_t *np;
    if (b->oom)
        return 0;
    want = b->len + more;
    if (want <= b->cap)
        return 1;
    cap = b->cap ? b->cap : 512;
    while (cap < want)
        cap *= 2;
    np = realloc(b->p, cap);
    if (!np) {
        b->oom = 1;
        return 0;
    }
    b->p = np;
    b->cap = cap;
    return 1;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static void put_varint(uint8_t *dst, uint64_t v)
{
    while (v >= 0x80) {
        *dst++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *dst = (uint8_t)v;
}

void pb_varint(struct pb *b, uint64_t v)
{
    size_t n = varint_size(v);
    if (!reserve(b, n))
        return;
    put_varint(b->p + b->len, v);
    b->len += n;
}

static void tag(struct pb *b, uint32_t field, unsigned wire)
{
    pb_varint(b, ((uint64_t)field << 3) | wire);
}

void pb_uint(struct pb *b, uint32_t field, uint64_t v)
{
    if (v == 0)
        return;
    tag(b, field, WIRE_VARINT);
    pb_varint(b, v);
}

void pb_str(struct pb *b, uint32_t field, const char *s, size_t n)
{
    if (n == 0)
        return;
    tag(b, field, WIRE_LEN);
    pb_varint(b, n);
    if (!reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* The length is not known yet: keep one byte for it (most of our sub-messages are shorter
 * than 128 bytes) and move the content in pb_end when the length needs more. */
size_t pb_begin(struct pb *b, uint32_t field)
{
    size_t mark;
    tag(b, field, WIRE_LEN);
    mark = b->len;
    if (reserve(b, 1))
        b->p[b->len++] = 0;
    return mark;
}

void pb_end(struct pb *b, size_t mark)
{
    size_t body, n;
    if (b->oom)
        return;
    body = b->len - mark - 1;
    n = varint_size(body);
    if (n > 1) {
        if (!reserve(b, n - 1))
            return;
        memmove(b->p + mark + n, b->p + mark + 1, body);
        b->len += n - 1;
    }
    put_varint(b->p + mark, body);
}

void pb_truncate(struct pb *b, size_t len)
{
    if (len < b->len)
        b->len = len;
}
