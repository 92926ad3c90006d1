/* Stdio relays held by the supervisor, so they outlive the agent.
 *
 * Input: the client's stdin fifo -> the process (a pipe, or the pty master). Going through
 * our own pipe is what lets CloseIO deliver EOF whatever the client still holds open.
 * Output (terminals only): pty master -> the client's stdout fifo. A full fifo pauses reading
 * the master (backpressure, never loss); output ends only when the master reports that every
 * slave is closed, so the client's EOF comes after the last byte.
 * Every fd is non-blocking and watched only while there is work for it: a hung-up fd reports
 * EPOLLHUP whatever we ask for, so idle fds leave the epoll set instead of spinning. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "supervisor.h"

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

static int pending_in(const struct relay *r)
{
    return r->in_len > r->in_off;
}

static int pending_out(const struct relay *r)
{
    return r->out_len > r->out_off;
}

/* Recompute what each fd is watched for. */
static void refresh(struct relay *r)
{
    uint32_t master_want = 0;
    if (r->master >= 0) {
        if (!r->master_done && !pending_out(r))
            master_want |= EPOLLIN;
        if (r->in_dst == r->master && pending_in(r))
            master_want |= EPOLLOUT;
    }
    watch_fd(r->master, &r->ev_master, master_want, &r->w_master);
    watch_fd(r->in_src, &r->ev_in_src, r->in_src >= 0 && !pending_in(r) && !r->in_closing
                                           ? EPOLLIN : 0, &r->w_in);
    if (r->in_dst != r->master)
        watch_fd(r->in_dst, &r->ev_in_dst, pending_in(r) ? EPOLLOUT : 0, &r->w_pipe);
    watch_fd(r->out_dst, &r->ev_out_dst, pending_out(r) ? EPOLLOUT : 0, &r->w_out);
}

static void init_watches(struct relay *r, struct proc *p)
{
    r->proc = p;
    r->w_master.kind = W_MASTER;
    r->w_in.kind = W_TTY_IN;
    r->w_out.kind = W_TTY_OUT;
    r->w_pipe.kind = W_STDIN_PIPE;
    r->w_master.proc = r->w_in.proc = r->w_out.proc = r->w_pipe.proc = p;
    r->master = r->in_src = r->in_dst = r->out_dst = -1;
}

struct relay *relay_new_stdin(struct proc *p, int in_src, int pipe_w)
{
    struct relay *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    init_watches(r, p);
    r->in_src = in_src;
    r->in_dst = pipe_w;
    r->master_done = 1; /* no output side */
    set_nonblock(in_src);
    set_nonblock(pipe_w);
    refresh(r);
    return r;
}

void relay_attach_master(struct relay *r, int master, int out_dst)
{
    r->master = master;
    r->in_dst = r->in_src >= 0 ? master : -1;
    r->out_dst = out_dst;
    r->master_done = 0;
    set_nonblock(master);
    if (out_dst >= 0)
        set_nonblock(out_dst);
    refresh(r);
}

struct relay *relay_new_tty(struct proc *p, int master, int in_src, int out_dst)
{
    struct relay *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    init_watches(r, p);
    r->in_src = in_src;
    if (in_src >= 0)
        set_nonblock(in_src);
    relay_attach_master(r, master, out_dst);
    return r;
}

/* Write pending output to the client's fifo; 0 when all of it went. */
static int flush_out(struct relay *r)
{
    while (pending_out(r)) {
        ssize_t n;
        if (r->out_dst < 0) {
            r->out_off = r->out_len; /* nobody to deliver to */
            break;
        }
        n = write(r->out_dst, r->out_buf + r->out_off, r->out_len - r->out_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return -1;
            close_watched(&r->out_dst, &r->ev_out_dst); /* the client is gone for good */
            continue;
        }
        r->out_off += (size_t)n;
    }
    r->out_len = r->out_off = 0;
    return 0;
}

static void read_master(struct relay *r)
{
    while (!pending_out(r) && !r->master_done) {
        ssize_t n = read(r->master, r->out_buf, sizeof(r->out_buf));
        if (n > 0) {
            r->out_len = (size_t)n;
            r->out_off = 0;
            if (flush_out(r) < 0)
                return;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            r->master_done = 1; /* EIO: no slave fd remains */
        } else {
            return;
        }
    }
}

/* Input is over: deliver EOF to the process (close our end of its stdin pipe, or type the
 * terminal's EOF character) and stop reading the client's fifo. */
static void deliver_eof(struct relay *r)
{
    close_watched(&r->in_src, &r->ev_in_src);
    if (r->in_dst >= 0 && r->in_dst == r->master) {
        struct termios t;
        char eof = 4; /* ^D unless the terminal says otherwise */
        if (tcgetattr(r->master, &t) == 0 && t.c_cc[VEOF])
            eof = (char)t.c_cc[VEOF];
        if (write(r->master, &eof, 1) < 0) {
            /* the terminal is gone already: nobody waits for this EOF */
        }
        r->in_dst = -1;
    } else if (r->in_dst >= 0) {
        close_watched(&r->in_dst, &r->ev_in_dst);
    }
}

/* Write buffered input to the process; 0 when it would block, 1 when the buffer is empty. */
static int write_input(struct relay *r)
{
    while (pending_in(r)) {
        ssize_t n;
        if (r->in_dst < 0)
            break;
        n = write(r->in_dst, r->in_buf + r->in_off, r->in_len - r->in_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            break; /* the process stopped reading for good: drop input */
        }
        r->in_off += (size_t)n;
    }
    r->in_len = r->in_off = 0;
    return 1;
}

/* Copy the client's input to the process until one side would block. Once closing (CloseIO,
 * or every writer gone) the fifo is still read until it is empty, then EOF is delivered:
 * a client writes its last bytes before it sends CloseIO, and those must not be lost. */
static void pump_input(struct relay *r)
{
    for (;;) {
        ssize_t n;
        if (pending_in(r) && !write_input(r))
            return; /* the process is not reading: wait for room */
        if (r->in_src < 0)
            break;
        n = read(r->in_src, r->in_buf, sizeof(r->in_buf));
        if (n > 0) {
            r->in_len = (size_t)n;
            r->in_off = 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (!r->in_closing)
                return;
            break;
        }
        r->in_closing = 1; /* EOF: every writer is gone, our hold included */
        break;
    }
    if (r->in_closing)
        deliver_eof(r);
}

void relay_on_event(struct relay *r, enum watch_kind kind, uint32_t events)
{
    switch (kind) {
    case W_MASTER:
        if ((events & EPOLLOUT) && r->in_dst == r->master)
            pump_input(r);
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            read_master(r);
        break;
    case W_TTY_IN:
        pump_input(r);
        break;
    case W_STDIN_PIPE:
        if (events & (EPOLLERR | EPOLLHUP))
            r->in_len = r->in_off = 0; /* the process closed its stdin: drop what waits */
        pump_input(r);
        break;
    case W_TTY_OUT:
        if (flush_out(r) == 0)
            read_master(r);
        break;
    default:
        break;
    }
    if (r->master_done && !pending_out(r))
        close_watched(&r->out_dst, &r->ev_out_dst);
    refresh(r);
    if (relay_done(r))
        maybe_notify_exit(r->proc);
}

void relay_close_stdin(struct relay *r)
{
    r->in_closing = 1;
    pump_input(r);
    refresh(r);
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

int relay_done(const struct relay *r)
{
    return r->master_done && !pending_out(r);
}

/* The process has exited: its stdin is of no use any more. */
void relay_process_exited(struct relay *r)
{
    r->in_len = r->in_off = 0;
    close_watched(&r->in_src, &r->ev_in_src);
    if (r->in_dst != r->master)
        close_watched(&r->in_dst, &r->ev_in_dst);
    r->in_dst = -1;
    refresh(r);
}

/* Give up draining (the deadline passed): drop what is left and close the client's side. */
void relay_finish(struct relay *r)
{
    r->master_done = 1;
    r->out_len = r->out_off = 0;
    close_watched(&r->out_dst, &r->ev_out_dst);
    refresh(r);
}

void relay_free(struct relay *r)
{
    close_watched(&r->in_src, &r->ev_in_src);
    if (r->in_dst != r->master)
        close_watched(&r->in_dst, &r->ev_in_dst);
    close_watched(&r->out_dst, &r->ev_out_dst);
    close_watched(&r->master, &r->ev_master);
    free(r);
}
