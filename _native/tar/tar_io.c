#include "tar_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tar_header.h"

#define BUF_SIZE (1u << 20)
/* Below this, one more copy through our buffer is cheaper than extra syscalls. */
#define DIRECT_MIN (128u << 10)
#define DIRECT_CHUNK (1u << 30)
/* Bigger pipes mean fewer wake-ups between producer and consumer. */
#define PIPE_SIZE (1 << 20)

/* Wait until a non-blocking fd is ready; callers retry their syscall afterwards. */
static int wait_fd(int fd, short events, struct nerr *e)
{
    struct pollfd p = {.fd = fd, .events = events};
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR)
            return nerr_sys(e, errno, "poll");
    return 0;
}

static void grow_pipe(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
        (void)fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE); /* best effort: a smaller pipe still works */
}

static int write_all(int fd, const char *p, size_t n, const char *what, struct nerr *e)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (wait_fd(fd, POLLOUT, e) < 0)
                    return -1;
                continue;
            }
            return nerr_sys(e, errno, "%s", what);
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int tout_open(struct tar_out *o, int fd, struct nerr *e)
{
    memset(o, 0, sizeof(*o));
    o->fd = fd;
    o->direct = 1;
    o->cap = BUF_SIZE;
    o->buf = malloc(o->cap);
    if (!o->buf)
        return nerr_sys(e, ENOMEM, "allocate write buffer");
    grow_pipe(fd);
    return 0;
}

void tout_close(struct tar_out *o)
{
    free(o->buf);
    o->buf = NULL;
}

int tout_flush(struct tar_out *o, struct nerr *e)
{
    if (o->len && write_all(o->fd, o->buf, o->len, "write archive", e) < 0)
        return -1;
    o->len = 0;
    return 0;
}

int tout_write(struct tar_out *o, const void *p, size_t n, struct nerr *e)
{
    const char *s = p;
    while (n) {
        if (o->len == o->cap && tout_flush(o, e) < 0)
            return -1;
        size_t k = o->cap - o->len < n ? o->cap - o->len : n;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        o->total += k;
        s += k;
        n -= k;
    }
    return 0;
}

int tout_zeros(struct tar_out *o, size_t n, struct nerr *e)
{
    static const char zero[TAR_BLOCK * 2];
    while (n) {
        size_t k = n < sizeof(zero) ? n : sizeof(zero);
        if (tout_write(o, zero, k, e) < 0)
            return -1;
        n -= k;
    }
    return 0;
}

static int shrank(struct nerr *e, uint64_t left)
{
    return nerr_set(e, EIO, "read file: it shrank while being archived (%llu bytes missing)",
                    (unsigned long long)left);
}

/* sendfile from the file into the archive fd; returns 1 if the fd does not take sendfile. */
static int out_sendfile(struct tar_out *o, int fd, uint64_t *left, struct nerr *e)
{
    if (tout_flush(o, e) < 0)
        return -1;
    while (*left) {
        ssize_t n = sendfile(o->fd, fd, NULL, *left < DIRECT_CHUNK ? *left : DIRECT_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (wait_fd(o->fd, POLLOUT, e) < 0)
                    return -1;
                continue;
            }
            if ((errno == EINVAL || errno == ENOSYS) && o->direct == 1) {
                o->direct = 0;
                return 1;
            }
            return nerr_sys(e, errno, "sendfile into archive");
        }
        if (n == 0)
            return shrank(e, *left);
        o->direct = 2; /* proven to work: later errors are real errors */
        *left -= (uint64_t)n;
        o->total += (uint64_t)n;
    }
    return 0;
}

int tout_copy_file(struct tar_out *o, int fd, uint64_t size, struct nerr *e)
{
    uint64_t left = size;
    if (size >= DIRECT_MIN && o->direct) {
        int r = out_sendfile(o, fd, &left, e);
        if (r < 0)
            return -1;
    }
    while (left) {
        if (o->len == o->cap && tout_flush(o, e) < 0)
            return -1;
        size_t room = o->cap - o->len;
        ssize_t n = read(fd, o->buf + o->len, left < room ? left : room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return nerr_sys(e, errno, "read file");
        }
        if (n == 0)
            return shrank(e, left);
        o->len += (size_t)n;
        o->total += (uint64_t)n;
        left -= (uint64_t)n;
    }
    return tout_zeros(o, TAR_PAD(size), e);
}

int tin_open(struct tar_in *in, int fd, struct nerr *e)
{
    struct stat st;
    memset(in, 0, sizeof(*in));
    in->fd = fd;
    if (fstat(fd, &st) < 0)
        return nerr_sys(e, errno, "fstat archive");
    in->kind = S_ISFIFO(st.st_mode) ? TIN_PIPE : S_ISREG(st.st_mode) ? TIN_FILE : TIN_OTHER;
    in->direct = in->kind != TIN_OTHER;
    in->cap = BUF_SIZE;
    in->buf = malloc(in->cap);
    if (!in->buf)
        return nerr_sys(e, ENOMEM, "allocate read buffer");
    if (in->kind == TIN_PIPE)
        grow_pipe(fd);
    return 0;
}

void tin_close(struct tar_in *in)
{
    free(in->buf);
    in->buf = NULL;
}

/* One read into the free space of the buffer; returns bytes read, 0 at end, -1 on error. */
static ssize_t read_some(struct tar_in *in, struct nerr *e)
{
    for (;;) {
        ssize_t r = read(in->fd, in->buf + in->len, in->cap - in->len);
        if (r >= 0) {
            in->len += (size_t)r;
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return nerr_sys(e, errno, "read archive");
        if (wait_fd(in->fd, POLLIN, e) < 0)
            return -1;
    }
}

ssize_t tin_fill(struct tar_in *in, size_t n, struct nerr *e)
{
    if (in->len - in->pos >= n)
        return (ssize_t)n;
    if (in->pos == in->len) {
        in->pos = in->len = 0;
    } else if (in->cap - in->pos < n) {
        memmove(in->buf, in->buf + in->pos, in->len - in->pos);
        in->len -= in->pos;
        in->pos = 0;
    }
    while (in->len - in->pos < n) {
        ssize_t r = read_some(in, e);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
    }
    return (ssize_t)(in->len - in->pos < n ? in->len - in->pos : n);
}

void tin_consume(struct tar_in *in, size_t n)
{
    in->pos += n;
    in->offset += n;
}

static int truncated(struct tar_in *in, struct nerr *e)
{
    return nerr_set(e, EINVAL, "archive is truncated at byte %llu",
                    (unsigned long long)in->offset);
}

int tin_read(struct tar_in *in, void *dst, size_t n, struct nerr *e)
{
    char *d = dst;
    while (n) {
        size_t want = n < in->cap ? n : in->cap;
        ssize_t got = tin_fill(in, want, e);
        if (got < 0)
            return -1;
        if ((size_t)got < want)
            return truncated(in, e);
        memcpy(d, in->buf + in->pos, (size_t)got);
        tin_consume(in, (size_t)got);
        d += got;
        n -= (size_t)got;
    }
    return 0;
}

static int unsupported(int err)
{
    return err == EINVAL || err == ENOSYS || err == EXDEV || err == EOPNOTSUPP;
}

/* Kernel-side copy from the archive fd; returns 1 when this fd pair cannot do it. Pipes use
 * splice; files try copy_file_range first and sendfile when that refuses (e.g. across
 * filesystems). */
static int in_direct(struct tar_in *in, int out_fd, uint64_t *left, struct nerr *e)
{
    int use_sendfile = 0, moved = 0;
    while (*left) {
        size_t chunk = *left < DIRECT_CHUNK ? *left : DIRECT_CHUNK;
        ssize_t n;
        if (in->kind == TIN_PIPE)
            n = splice(in->fd, NULL, out_fd, NULL, chunk, SPLICE_F_MOVE);
        else if (!use_sendfile)
            n = copy_file_range(in->fd, NULL, out_fd, NULL, chunk, 0);
        else
            n = sendfile(out_fd, in->fd, NULL, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (wait_fd(in->fd, POLLIN, e) < 0)
                    return -1;
                continue;
            }
            if (in->kind == TIN_FILE && !use_sendfile && unsupported(errno)) {
                use_sendfile = 1;
                continue;
            }
            if (!moved && unsupported(errno))
                return 1;
            return nerr_sys(e, errno, "copy archive data to file");
        }
        if (n == 0)
            return truncated(in, e);
        moved = 1;
        *left -= (uint64_t)n;
        in->offset += (uint64_t)n;
    }
    return 0;
}

int tin_copy(struct tar_in *in, int out_fd, uint64_t n, struct nerr *e)
{
    /* Whatever is already buffered goes first, straight from the buffer. */
    size_t have = in->len - in->pos;
    size_t k = n < have ? (size_t)n : have;
    if (k && write_all(out_fd, in->buf + in->pos, k, "write file", e) < 0)
        return -1;
    tin_consume(in, k);
    n -= k;
    if (n >= DIRECT_MIN && in->direct) {
        int r = in_direct(in, out_fd, &n, e);
        if (r < 0)
            return -1;
        if (r == 1)
            in->direct = 0; /* no kernel copy for this pair: stop trying */
    }
    while (n) {
        size_t want = n < in->cap ? (size_t)n : in->cap;
        ssize_t got = tin_fill(in, 1, e); /* whatever arrives, without waiting for more */
        if (got < 0)
            return -1;
        if (got == 0)
            return truncated(in, e);
        have = in->len - in->pos;
        k = want < have ? want : have;
        if (write_all(out_fd, in->buf + in->pos, k, "write file", e) < 0)
            return -1;
        tin_consume(in, k);
        n -= k;
    }
    return 0;
}

int tin_skip(struct tar_in *in, uint64_t n, struct nerr *e)
{
    while (n) {
        ssize_t got = tin_fill(in, 1, e);
        if (got < 0)
            return -1;
        if (got == 0)
            return truncated(in, e);
        size_t have = in->len - in->pos;
        size_t k = n < have ? (size_t)n : have;
        tin_consume(in, k);
        n -= k;
    }
    return 0;
}

int tin_drain(struct tar_in *in, struct nerr *e)
{
    in->offset += in->len - in->pos;
    for (;;) {
        in->pos = in->len = 0;
        ssize_t r = read_some(in, e);
        if (r <= 0)
            return (int)r;
        in->offset += (uint64_t)r;
    }
}
