/* Stdio relays held by the supervisor, so they outlive the agent.
 *
 * Every process gets pipes (or a pty) of ours, never the client's fifos: a channel copies
 * stdin fifo -> process, and process -> stdout / stderr fifo. Going through our own pipes is
 * what lets CloseIO deliver EOF whatever the client still holds open, and what CRIU needs to
 * reconnect a restored process (it re-attaches pipes, not fifos of another mount namespace).
 *
 * A full destination pauses reading the source (backpressure, never loss). An output channel
 * ends only when its source reports EOF (every writer gone) or EIO (pty: every slave closed)
 * and its buffer is flushed; then it closes the client's fifo, so the client's EOF comes
 * after the last byte. Every fd is non-blocking and watched only while there is work for
 * it: a hung-up fd reports EPOLLHUP whatever we ask for, so idle fds leave the epoll set.
 * Each channel owns its two fds (a terminal's master is dup'ed for each use). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "supervisor.h"

#define CHANNEL_BUF 16384

static void set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static void watch_fd(int fd, uint32_t *current, uint32_t want, struct watch *w)
{
    if (fd < 0 || want == *current)
        return;
    if (want == 0)
        loop_del(fd);
    else if (*current == 0)
        loop_add(fd, want, w);
    else
        loop_mod(fd, want, w);
    *current = want;
}

static void close_watched(int *fd, uint32_t *current)
{
    if (*fd < 0)
        return;
    if (*current)
        loop_del(*fd);
    *current = 0;
    close(*fd);
    *fd = -1;
}

static int pending(const struct channel *c)
{
    return c->len > c->off;
}

static void refresh(struct channel *c)
{
    int read_more = c->src >= 0 && !c->src_done && !pending(c);
    watch_fd(c->src, &c->ev_src, read_more ? EPOLLIN : 0, &c->w_src);
    watch_fd(c->dst, &c->ev_dst, c->dst >= 0 && pending(c) ? EPOLLOUT : 0, &c->w_dst);
}

static void channel_close(struct channel *c)
{
    close_watched(&c->src, &c->ev_src);
    close_watched(&c->dst, &c->ev_dst);
    free(c->buf);
    c->buf = NULL;
    c->len = c->off = 0;
    c->src_done = 1;
    c->done = 1;
}

/* The source is over and everything read is written: pass EOF on. */
static void finish(struct channel *c)
{
    if (pending(c) || !c->src_done || c->done)
        return;
    if (c->dst >= 0 && c->dst_is_tty) {
        /* Input to a terminal: type its EOF character rather than hang it up. */
        struct termios t;
        char eof = 4;
        if (tcgetattr(c->dst, &t) == 0 && t.c_cc[VEOF])
            eof = (char)t.c_cc[VEOF];
        if (write(c->dst, &eof, 1) < 0) {
            /* the terminal is gone already: nobody waits for this EOF */
        }
    }
    channel_close(c);
}

/* Write what is buffered; 0 when the destination would block. */
static int flush(struct channel *c)
{
    while (pending(c)) {
        ssize_t n;
        if (c->dst < 0) {
            c->off = c->len; /* nobody to deliver to any more: drop */
            break;
        }
        n = write(c->dst, c->buf + c->off, c->len - c->off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            /* The reader is gone for good (a process that closed its stdin): keep reading
             * the source so its writer never blocks, and drop what comes. */
            close_watched(&c->dst, &c->ev_dst);
            c->off = c->len;
            break;
        }
        c->off += (size_t)n;
    }
    c->len = c->off = 0;
    return 1;
}

/* Copy until one side would block or the source ends. A closing input channel (CloseIO)
 * still reads its fifo until it is empty: a client writes its last bytes just before it
 * sends CloseIO, and those must not be lost. */
static void pump(struct channel *c)
{
    if (c->done)
        return;
    if (!c->buf && !(c->buf = malloc(CHANNEL_BUF)))
        return;
    for (;;) {
        ssize_t n;
        if (pending(c) && !flush(c))
            break;
        if (c->src < 0 || c->src_done)
            break;
        n = read(c->src, c->buf, CHANNEL_BUF);
        if (n > 0) {
            c->len = (size_t)n;
            c->off = 0;
            c->idle = 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (c->closing)
                c->src_done = 1;
            c->idle = 1; /* everything written so far is delivered */
            break;
        }
        c->src_done = 1; /* EOF, or EIO from a pty master: every writer is gone */
    }
    finish(c);
    if (!c->done)
        refresh(c);
}

/* Start one channel; it owns src and dst from now on. */
static void channel_open(struct channel *c, struct proc *p, int kind, int src, int dst, int tty)
{
    memset(c, 0, sizeof(*c));
    c->proc = p;
    c->kind = kind;
    c->src = src;
    c->dst = dst;
    c->dst_is_tty = tty;
    c->w_src.kind = W_CHANNEL;
    c->w_dst.kind = W_CHANNEL;
    c->w_src.proc = c->w_dst.proc = p;
    c->w_src.channel = c->w_dst.channel = c;
    if (src < 0) {
        c->src_done = 1;
    } else {
        set_nonblock(src);
    }
    if (dst >= 0)
        set_nonblock(dst);
    pump(c);
}

struct relay *relay_new(struct proc *p, const struct relay_fds *f)
{
    struct relay *r = calloc(1, sizeof(*r));
    int i;
    if (!r)
        return NULL;
    for (i = 0; i < 3; i++) {
        r->ch[i].src = r->ch[i].dst = -1;
        r->ch[i].done = 1;
    }
    r->master = -1;
    r->pending_in = r->pending_out = -1;
    if (f->terminal) {
        /* The terminal is made inside the container; until it arrives, keep the fifos. */
        r->pending_in = f->in_src;
        r->pending_out = f->out_dst;
        if (f->err_dst >= 0)
            close(f->err_dst);
        return r;
    }
    if (f->in_src >= 0 || f->in_dst >= 0)
        channel_open(&r->ch[CH_IN], p, CH_IN, f->in_src, f->in_dst, 0);
    if (f->out_src >= 0)
        channel_open(&r->ch[CH_OUT], p, CH_OUT, f->out_src, f->out_dst, 0);
    else if (f->out_dst >= 0)
        close(f->out_dst);
    if (f->err_src >= 0)
        channel_open(&r->ch[CH_ERR], p, CH_ERR, f->err_src, f->err_dst, 0);
    else if (f->err_dst >= 0)
        close(f->err_dst);
    return r;
}

/* The terminal arrived: its master is the source of the output and the destination of the
 * input. Returns -1 when a dup fails (the caller then drops the terminal). */
int relay_attach_terminal(struct relay *r, struct proc *p, int master)
{
    int for_input = -1, for_resize = dup(master);
    if (for_resize < 0)
        return -1;
    if (r->pending_in >= 0 && (for_input = fcntl(master, F_DUPFD_CLOEXEC, 0)) < 0) {
        close(for_resize);
        return -1;
    }
    r->master = for_resize;
    fcntl(r->master, F_SETFD, FD_CLOEXEC);
    channel_open(&r->ch[CH_OUT], p, CH_OUT, master, r->pending_out, 0);
    r->pending_out = -1;
    if (r->pending_in >= 0) {
        channel_open(&r->ch[CH_IN], p, CH_IN, r->pending_in, for_input, 1);
        r->pending_in = -1;
    }
    return 0;
}

void relay_on_event(struct channel *c)
{
    struct proc *p = c->proc;
    pump(c);
    if (p->relay && relay_done(p->relay))
        maybe_notify_exit(p);
    if (p->pending == P_FORGET && p->relay && relay_caught_up(p->relay))
        forget_when_drained(p); /* may free p and its relay: nothing of them after this */
}

void relay_close_stdin(struct relay *r)
{
    struct channel *in = &r->ch[CH_IN];
    if (r->pending_in >= 0) {
        close(r->pending_in); /* no terminal yet: it will start with stdin at EOF */
        r->pending_in = -1;
    }
    if (in->done)
        return;
    in->closing = 1;
    pump(in);
}

int relay_resize(struct relay *r, unsigned width, unsigned height)
{
    struct winsize ws;
    if (r->master < 0)
        return 0;
    memset(&ws, 0, sizeof(ws));
    ws.ws_col = (unsigned short)width;
    ws.ws_row = (unsigned short)height;
    return ioctl(r->master, TIOCSWINSZ, &ws);
}

int relay_has_terminal(const struct relay *r)
{
    return r->master >= 0;
}

/* Every output byte is delivered and the client has its EOF. */
int relay_done(const struct relay *r)
{
    return r->ch[CH_OUT].done && r->ch[CH_ERR].done;
}

/* Every output byte written so far is delivered (what a writer left behind, a child of the
 * process say, may write later is not waited for). */
int relay_caught_up(struct relay *r)
{
    int i;
    for (i = CH_OUT; i <= CH_ERR; i++)
        pump(&r->ch[i]); /* what is in the pipe now, not what the last event saw */
    for (i = CH_OUT; i <= CH_ERR; i++)
        if (!r->ch[i].done && !r->ch[i].idle)
            return 0;
    return 1;
}

/* The process has exited: its stdin is of no use any more; output drains on. */
void relay_process_exited(struct relay *r)
{
    if (r->pending_in >= 0) {
        close(r->pending_in);
        r->pending_in = -1;
    }
    channel_close(&r->ch[CH_IN]);
}

/* Give up draining (the deadline passed): drop what is left and close the client's side. */
void relay_finish(struct relay *r)
{
    int i;
    for (i = 0; i < 3; i++)
        channel_close(&r->ch[i]);
}

void relay_free(struct relay *r)
{
    relay_finish(r);
    if (r->master >= 0)
        close(r->master);
    if (r->pending_in >= 0)
        close(r->pending_in);
    if (r->pending_out >= 0)
        close(r->pending_out);
    free(r);
}
