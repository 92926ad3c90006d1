#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FIELD_HEADER 8

void sv_iter_init(struct sv_iter *it, const void *payload, size_t len)
{
    it->p = payload;
    it->end = it->p + len;
}

int sv_iter_next(struct sv_iter *it, struct sv_field *f)
{
    uint32_t len;
    if (it->p == it->end)
        return 0;
    if ((size_t)(it->end - it->p) < FIELD_HEADER)
        return -1;
    memcpy(&f->tag, it->p, 2);
    memcpy(&len, it->p + 4, 4);
    if ((size_t)(it->end - it->p - FIELD_HEADER) < len)
        return -1;
    f->len = len;
    f->val = it->p + FIELD_HEADER;
    it->p += FIELD_HEADER + len;
    return 1;
}

uint64_t sv_field_u64(const struct sv_field *f)
{
    uint64_t v = 0;
    memcpy(&v, f->val, f->len < 8 ? f->len : 8);
    return v;
}

static void reserve(struct sv_buf *b, size_t extra)
{
    size_t want;
    uint8_t *p;
    if (b->failed || b->len + extra <= b->cap)
        return;
    want = b->cap ? b->cap * 2 : 512;
    while (want < b->len + extra)
        want *= 2;
    p = realloc(b->data, want);
    if (!p) {
        b->failed = 1;
        return;
    }
    b->data = p;
    b->cap = want;
}

void sv_buf_start(struct sv_buf *b, uint16_t type, uint32_t id)
{
    struct sv_header h = {SV_MAGIC, SV_VERSION, type, id, 0};
    b->len = 0;
    b->failed = 0;
    reserve(b, sizeof(h));
    if (b->failed)
        return;
    memcpy(b->data, &h, sizeof(h));
    b->len = sizeof(h);
}

static void put_field_header(struct sv_buf *b, uint16_t tag, uint32_t len)
{
    uint16_t zero = 0;
    reserve(b, FIELD_HEADER + len);
    if (b->failed)
        return;
    memcpy(b->data + b->len, &tag, 2);
    memcpy(b->data + b->len + 2, &zero, 2);
    memcpy(b->data + b->len + 4, &len, 4);
    b->len += FIELD_HEADER;
}

void sv_put_bytes(struct sv_buf *b, uint16_t tag, const void *p, size_t n)
{
    put_field_header(b, tag, (uint32_t)n);
    if (b->failed)
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

void sv_put_u64(struct sv_buf *b, uint16_t tag, uint64_t v)
{
    sv_put_bytes(b, tag, &v, 8);
}

void sv_put_str(struct sv_buf *b, uint16_t tag, const char *s)
{
    sv_put_bytes(b, tag, s, strlen(s));
}

size_t sv_nest_begin(struct sv_buf *b, uint16_t tag)
{
    put_field_header(b, tag, 0);
    return b->len;
}

void sv_nest_end(struct sv_buf *b, size_t mark)
{
    uint32_t len;
    if (b->failed)
        return;
    len = (uint32_t)(b->len - mark);
    memcpy(b->data + mark - 4, &len, 4);
}

void sv_buf_free(struct sv_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int sv_send(int sock, struct sv_buf *b, const int *fds, int nfds, struct nerr *e)
{
    struct msghdr msg;
    struct iovec iov;
    union {
        char buf[CMSG_SPACE(sizeof(int) * SV_MAX_FDS)];
        struct cmsghdr align;
    } control;
    uint32_t len;
    ssize_t n;

    if (b->failed)
        return nerr_set(e, ENOMEM, "building packet: out of memory");
    if (nfds > SV_MAX_FDS)
        return nerr_set(e, EINVAL, "sending packet: too many fds (%d)", nfds);
    len = (uint32_t)(b->len - sizeof(struct sv_header));
    memcpy(b->data + offsetof(struct sv_header, length), &len, 4);
    memset(&msg, 0, sizeof(msg));
    iov.iov_base = b->data;
    iov.iov_len = b->len;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        struct cmsghdr *c;
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return nerr_sys(e, errno, "sending packet");
    return 0;
}

int sv_recv(int sock, uint8_t *buf, struct sv_packet *pkt, struct nerr *e)
{
    struct msghdr msg;
    struct iovec iov;
    union {
        char buf[CMSG_SPACE(sizeof(int) * SV_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct cmsghdr *c;
    ssize_t n;

    memset(&msg, 0, sizeof(msg));
    iov.iov_base = buf;
    iov.iov_len = SV_MAX_PACKET;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    pkt->nfds = 0;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return nerr_sys(e, errno, "receiving packet");
    for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int room = SV_MAX_FDS - pkt->nfds;
            int i, *fds = (int *)CMSG_DATA(c);
            for (i = 0; i < count; i++) {
                if (i < room)
                    pkt->fds[pkt->nfds++] = fds[i];
                else
                    close(fds[i]);
            }
        }
    }
    if (n == 0) {
        sv_close_fds(pkt);
        return 0;
    }
    if ((size_t)n < sizeof(struct sv_header) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        sv_close_fds(pkt);
        return nerr_set(e, EBADMSG, "receiving packet: truncated packet of %zd bytes", n);
    }
    memcpy(&pkt->hdr, buf, sizeof(pkt->hdr));
    if (pkt->hdr.magic != SV_MAGIC || pkt->hdr.length != (size_t)n - sizeof(struct sv_header)) {
        sv_close_fds(pkt);
        return nerr_set(e, EBADMSG, "receiving packet: bad magic or length");
    }
    pkt->payload = buf + sizeof(struct sv_header);
    return 1;
}

int sv_take_fd(struct sv_packet *pkt, uint64_t index)
{
    int fd;
    if (index >= (uint64_t)pkt->nfds)
        return -1;
    fd = pkt->fds[index];
    pkt->fds[index] = -1;
    return fd;
}

void sv_close_fds(struct sv_packet *pkt)
{
    int i;
    for (i = 0; i < pkt->nfds; i++)
        if (pkt->fds[i] >= 0)
            close(pkt->fds[i]);
    pkt->nfds = 0;
}
