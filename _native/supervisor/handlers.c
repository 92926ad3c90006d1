/* Requests from the agent, messages from children, and exits. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "spawn.h"
#include "supervisor.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define NS_MASK (CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | \
                 CLONE_NEWCGROUP)
/* The namespaces an exec joins (its pid namespace is entered by the supervisor). */
#define EXEC_NS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP)
/* Exit time left for a terminal relay to drain before the exit is reported anyway. */
#define RELAY_DRAIN_NS (30LL * 1000000000LL)

int sv_shutdown_requested;

/* Processes whose exit waits for their terminal output to drain (a deadline is running):
 * usually none, and then the main loop has no deadline to look for. */
static int draining;

void drain_over(struct proc *p)
{
    if (p->relay_deadline_ns) {
        p->relay_deadline_ns = 0;
        draining--;
    }
}

static const char *field_str(const struct sv_field *f, char *buf, size_t size)
{
    size_t n = f->len < size - 1 ? f->len : size - 1;
    memcpy(buf, f->val, n);
    buf[n] = '\0';
    return buf;
}

/* Read KEY and a few scalar fields of a simple request. */
struct simple_req {
    char key[256];
    uint64_t signal, width, height, force;
    int has_key;
};

static int parse_simple(struct sv_packet *pkt, struct simple_req *r)
{
    struct sv_iter it;
    struct sv_field f;
    int rc;
    memset(r, 0, sizeof(*r));
    sv_iter_init(&it, pkt->payload, pkt->hdr.length);
    while ((rc = sv_iter_next(&it, &f)) > 0) {
        switch (f.tag) {
        case T_KEY: field_str(&f, r->key, sizeof(r->key)); r->has_key = 1; break;
        case T_SIGNAL: r->signal = sv_field_u64(&f); break;
        case T_WIDTH: r->width = sv_field_u64(&f); break;
        case T_HEIGHT: r->height = sv_field_u64(&f); break;
        case T_FORCE: r->force = sv_field_u64(&f); break;
        default: break;
        }
    }
    return rc;
}

static void reply_pid(uint32_t id, pid_t pid)
{
    struct sv_buf b = {0};
    sv_buf_start(&b, SV_REPLY, id);
    sv_put_u64(&b, T_ERRNO, 0);
    sv_put_u64(&b, T_PID, (uint64_t)pid);
    link_send(&b);
    sv_buf_free(&b);
}

static void reply_ok(uint32_t id)
{
    struct sv_buf b = {0};
    sv_buf_start(&b, SV_REPLY, id);
    sv_put_u64(&b, T_ERRNO, 0);
    link_send(&b);
    sv_buf_free(&b);
}

/* Answer the request a process is waiting on, if it still belongs to this connection. */
void settle(struct proc *p, int code, const char *msg)
{
    if (p->pending == P_NONE)
        return;
    if (p->pending_conn == link_conn()) {
        if (code) {
            /* With the pid: a child existed, so its exit will be reported too. */
            struct sv_buf b = {0};
            sv_buf_start(&b, SV_REPLY, p->pending_id);
            sv_put_u64(&b, T_ERRNO, (uint64_t)code);
            sv_put_str(&b, T_ERRMSG, msg ? msg : "failed");
            sv_put_u64(&b, T_PID, (uint64_t)p->pid);
            link_send(&b);
            sv_buf_free(&b);
        }
        else if (p->pending == P_FORGET)
            reply_ok(p->pending_id);
        else
            reply_pid(p->pending_id, p->pid);
    }
    p->pending = P_NONE;
}

void set_pending(struct proc *p, enum pending_op op, uint32_t id)
{
    p->pending = op;
    p->pending_id = id;
    p->pending_conn = link_conn();
}

static void handle_create(struct sv_packet *pkt)
{
    struct spawn_config cfg;
    struct spawn sp;
    struct nerr e;
    struct proc *p;
    int pidfd = -1;
    pid_t pid;

    spawn_init(&sp);
    if (config_decode(&cfg, pkt, &e) < 0) {
        link_reply_error(pkt->hdr.id, e.code, e.msg);
        return;
    }
    if (proc_by_key(cfg.key))
        return refuse(pkt, &cfg, &sp, EEXIST, "a process with this key exists");
    if (spawn_prepare(&sp, &cfg, &e) < 0)
        return refuse(pkt, &cfg, &sp, e.code, e.msg);
    pid = clone3_pidfd(cfg.clone_flags & NS_MASK, cfg.cgroup_dir, &pidfd);
    if (pid == 0) {
        int sync_fd = sp.sv[1];
        spawn_child_side(&sp);
        child_init_main(&cfg, sync_fd);
    }
    if (pid < 0) {
        nerr_sys(&e, errno, "clone3 of the container init");
        return refuse(pkt, &cfg, &sp, e.code, e.msg);
    }
    close_fd(&sp.sv[1]);
    p = proc_new(cfg.key, cfg.key);
    if (!p) {
        abandon_child(pid, pidfd);
        return refuse(pkt, &cfg, &sp, ENOMEM, "supervisor out of memory");
    }
    p->has_pidns = (cfg.clone_flags & CLONE_NEWPID) != 0;
    adopt_child(p, &cfg, &sp, pid, pidfd);
    set_pending(p, P_CREATE, pkt->hdr.id);
    spawn_cleanup(&sp);
    config_free(&cfg);
}

static void handle_exec(struct sv_packet *pkt)
{
    struct spawn_config cfg;
    struct spawn sp;
    struct nerr e;
    struct proc *p, *init;
    int pidfd = -1;
    pid_t pid;

    spawn_init(&sp);
    if (config_decode(&cfg, pkt, &e) < 0) {
        link_reply_error(pkt->hdr.id, e.code, e.msg);
        return;
    }
    init = cfg.parent_key ? proc_by_key(cfg.parent_key) : NULL;
    if (!init || init->is_exec)
        return refuse(pkt, &cfg, &sp, ENOENT, "the task's init process is not held here");
    if (init->reaped || init->state != SV_STATE_RUNNING)
        return refuse(pkt, &cfg, &sp, ESRCH, "the task's init process is not running");
    if (proc_by_key(cfg.key))
        return refuse(pkt, &cfg, &sp, EEXIST, "a process with this key exists");
    if (spawn_prepare(&sp, &cfg, &e) < 0)
        return refuse(pkt, &cfg, &sp, e.code, e.msg);
    /* setns(CLONE_NEWPID) changes where our next child is born, not where we live. */
    if (init->has_pidns && setns(init->pidfd, CLONE_NEWPID) < 0) {
        nerr_sys(&e, errno, "entering the task's pid namespace");
        return refuse(pkt, &cfg, &sp, e.code, e.msg);
    }
    pid = clone3_pidfd(0, cfg.cgroup_dir, &pidfd);
    if (pid == 0) {
        int sync_fd = sp.sv[1];
        spawn_child_side(&sp);
        child_exec_main(&cfg, sync_fd, init->pidfd, EXEC_NS);
    }
    if (init->has_pidns && setns(sv_self_pidns, CLONE_NEWPID) < 0)
        fprintf(stderr, "supervisor: returning to own pid namespace: %s\n", strerror(errno));
    if (pid < 0) {
        nerr_sys(&e, errno, "clone3 of the exec process");
        return refuse(pkt, &cfg, &sp, e.code, e.msg);
    }
    close_fd(&sp.sv[1]);
    p = proc_new(cfg.key, init->key);
    if (!p) {
        abandon_child(pid, pidfd);
        return refuse(pkt, &cfg, &sp, ENOMEM, "supervisor out of memory");
    }
    p->is_exec = 1;
    p->state = SV_STATE_CREATED;
    adopt_child(p, &cfg, &sp, pid, pidfd);
    set_pending(p, P_EXEC, pkt->hdr.id);
    spawn_cleanup(&sp);
    config_free(&cfg);
}

static void handle_start(struct sv_packet *pkt, struct simple_req *r)
{
    struct proc *p = proc_by_key(r->key);
    char go = 1;
    if (!p || p->is_exec) {
        link_reply_error(pkt->hdr.id, ENOENT, "no such process");
        return;
    }
    if (p->state != SV_STATE_CREATED || p->pending != P_NONE || p->reaped) {
        link_reply_error(pkt->hdr.id, EBUSY, p->reaped ? "the process has exited"
                                                      : "the process is not waiting to start");
        return;
    }
    if (p->restored) {
        /* Stopped by criu: the agent continues the whole tree (SIGCONT to its cgroup). */
        p->state = SV_STATE_RUNNING;
        reply_pid(pkt->hdr.id, p->pid);
        return;
    }
    if (p->sync_fd < 0 || send(p->sync_fd, &go, 1, MSG_NOSIGNAL) != 1) {
        /* A created process that died (killed) before its exit was reaped has closed its
           end, or its sync channel is closed already: as for a reaped one. */
        int err = p->sync_fd < 0 ? EPIPE : errno;
        if (err == EPIPE || err == ECONNRESET)
            link_reply_error(pkt->hdr.id, EBUSY, "the process has exited");
        else
            link_reply_error(pkt->hdr.id, err, "releasing the created process");
        return;
    }
    set_pending(p, P_START, pkt->hdr.id);
}

static void handle_kill(struct sv_packet *pkt, struct simple_req *r)
{
    struct proc *p = proc_by_key(r->key);
    if (!p) {
        link_reply_error(pkt->hdr.id, ENOENT, "no such process");
        return;
    }
    if (p->reaped || p->pidfd < 0) {
        link_reply_error(pkt->hdr.id, ESRCH, "process already finished");
        return;
    }
    if (syscall(SYS_pidfd_send_signal, p->pidfd, (int)r->signal, NULL, 0) < 0) {
        int err = errno;
        link_reply_error(pkt->hdr.id, err, err == ESRCH ? "process already finished"
                                                        : "sending the signal");
        return;
    }
    reply_ok(pkt->hdr.id);
}

static void handle_resize(struct sv_packet *pkt, struct simple_req *r)
{
    struct proc *p = proc_by_key(r->key);
    if (!p) {
        link_reply_error(pkt->hdr.id, ENOENT, "no such process");
        return;
    }
    /* Without a terminal, or after exit, a resize is a no-op (clients race them freely). */
    if (p->relay && relay_has_terminal(p->relay) && !p->reaped && relay_resize(p->relay, (unsigned)r->width, (unsigned)r->height) < 0) {
        link_reply_error(pkt->hdr.id, errno, "setting the window size");
        return;
    }
    reply_ok(pkt->hdr.id);
}

static void handle_close_stdin(struct sv_packet *pkt, struct simple_req *r)
{
    struct proc *p = proc_by_key(r->key);
    if (!p) {
        link_reply_error(pkt->hdr.id, ENOENT, "no such process");
        return;
    }
    if (p->relay)
        relay_close_stdin(p->relay); /* also covers a terminal that is not there yet */
    if (p->stdin_hold >= 0) {
        close(p->stdin_hold);
        p->stdin_hold = -1;
    }
    reply_ok(pkt->hdr.id);
}

static void handle_forget(struct sv_packet *pkt, struct simple_req *r)
{
    struct proc *p = proc_by_key(r->key);
    if (!p) {
        link_reply_error(pkt->hdr.id, ENOENT, "no such process");
        return;
    }
    if (p->reaped && p->exit_sent) {
        if (p->relay && !relay_caught_up(p->relay)) {
            /* As containerd's shim waits for its copies before a delete: what the process
               wrote reaches the client first (the client reads at its own pace). */
            set_pending(p, P_FORGET, pkt->hdr.id);
            p->relay_deadline_ns = mono_ns() + RELAY_DRAIN_NS;
            draining++;
            return;
        }
        proc_free(p);
        reply_ok(pkt->hdr.id);
        return;
    }
    if (p->pending != P_NONE) {
        link_reply_error(pkt->hdr.id, EBUSY, "the process is being created or started");
        return;
    }
    if (p->state == SV_STATE_CREATED && !p->is_exec && !p->reaped) {
        /* Never started: stop it and answer once it is reaped. */
        p->spawn_failed = 1;
        syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
        set_pending(p, P_FORGET, pkt->hdr.id);
        return;
    }
    link_reply_error(pkt->hdr.id, EBUSY, "the process is running");
}

static void put_proc(struct sv_buf *b, struct proc *p)
{
    size_t mark = sv_nest_begin(b, T_PROC);
    sv_put_str(b, T_KEY, p->key);
    sv_put_u64(b, T_PID, (uint64_t)p->pid);
    sv_put_u64(b, T_STATE, (uint64_t)(p->reaped ? SV_STATE_EXITED : p->state));
    sv_put_u64(b, T_TERMINAL, (uint64_t)p->terminal);
    if (p->reaped) {
        sv_put_u64(b, T_EXIT_CODE, (uint64_t)p->exit_code);
        sv_put_u64(b, T_WAIT_STATUS, (uint64_t)p->wait_status);
        sv_put_u64(b, T_EXITED_AT, (uint64_t)p->exited_at_ns);
        sv_put_u64(b, T_EXIT_ACKED, (uint64_t)p->exit_acked);
    }
    if (p->annotation_len)
        sv_put_bytes(b, T_ANNOTATION, p->annotation, p->annotation_len);
    sv_nest_end(b, mark);
}

/* Replies stay well under a socket buffer: a long list comes in pages. */
#define LIST_PAGE_BYTES (96 * 1024)

static void handle_list(struct sv_packet *pkt)
{
    struct sv_buf b = {0};
    struct sv_iter it;
    struct sv_field f;
    struct proc *p;
    uint64_t cursor = 0, index = 0;

    sv_iter_init(&it, pkt->payload, pkt->hdr.length);
    while (sv_iter_next(&it, &f) > 0)
        if (f.tag == T_CURSOR)
            cursor = sv_field_u64(&f);
    sv_buf_start(&b, SV_REPLY, pkt->hdr.id);
    sv_put_u64(&b, T_ERRNO, 0);
    for (p = proc_first(); p; p = p->all_next) {
        if (p->spawn_failed || p->pending == P_CREATE)
            continue;
        if (index++ < cursor)
            continue;
        if (b.len > LIST_PAGE_BYTES) {
            sv_put_u64(&b, T_CURSOR, index - 1);
            break;
        }
        put_proc(&b, p);
    }
    link_send(&b);
    sv_buf_free(&b);
}

static void handle_ack_exit(struct sv_packet *pkt, struct simple_req *r)
{
    struct proc *p = proc_by_key(r->key);
    if (!p) {
        link_reply_error(pkt->hdr.id, ENOENT, "no such process");
        return;
    }
    if (!p->reaped) {
        link_reply_error(pkt->hdr.id, EBUSY, "the process has not exited");
        return;
    }
    p->exit_acked = 1;
    reply_ok(pkt->hdr.id);
}

static void handle_hello(struct sv_packet *pkt)
{
    struct sv_buf b = {0};
    extern int64_t sv_started_at;
    sv_buf_start(&b, SV_REPLY, pkt->hdr.id);
    sv_put_u64(&b, T_ERRNO, 0);
    sv_put_u64(&b, T_VERSION, SV_VERSION);
    sv_put_u64(&b, T_PID, (uint64_t)getpid());
    sv_put_u64(&b, T_STARTED_AT, (uint64_t)sv_started_at);
    link_send(&b);
    sv_buf_free(&b);
}

static void handle_shutdown(struct sv_packet *pkt, struct simple_req *r)
{
    struct proc *p;
    int live = 0;
    for (p = proc_first(); p; p = p->all_next)
        if (!p->reaped)
            live++;
    if (live && !r->force) {
        link_reply_error(pkt->hdr.id, EBUSY, "processes are still running");
        return;
    }
    for (p = proc_first(); p; p = p->all_next)
        if (!p->reaped && p->pidfd >= 0)
            syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
    reply_ok(pkt->hdr.id);
    sv_shutdown_requested = 1;
}

void handle_packet(struct sv_packet *pkt)
{
    struct simple_req r;
    if (pkt->hdr.version < 1) {
        link_reply_error(pkt->hdr.id, EPROTO, "unsupported protocol version");
        return;
    }
    switch (pkt->hdr.type) {
    case SV_HELLO: handle_hello(pkt); return;
    case SV_CREATE: handle_create(pkt); return;
    case SV_EXEC: handle_exec(pkt); return;
    case SV_LIST: handle_list(pkt); return;
    case SV_RESTORE: handle_restore(pkt); return;
    default: break;
    }
    if (parse_simple(pkt, &r) < 0) {
        link_reply_error(pkt->hdr.id, EBADMSG, "malformed request");
        return;
    }
    switch (pkt->hdr.type) {
    case SV_START: handle_start(pkt, &r); return;
    case SV_KILL: handle_kill(pkt, &r); return;
    case SV_RESIZE: handle_resize(pkt, &r); return;
    case SV_CLOSE_STDIN: handle_close_stdin(pkt, &r); return;
    case SV_FORGET: handle_forget(pkt, &r); return;
    case SV_SHUTDOWN: handle_shutdown(pkt, &r); return;
    case SV_ACK_EXIT: handle_ack_exit(pkt, &r); return;
    default: link_reply_error(pkt->hdr.id, EOPNOTSUPP, "unknown request type"); return;
    }
}

static int recv_child_msg(int fd, struct child_msg *m, int *passed_fd)
{
    struct msghdr msg;
    struct iovec iov;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct cmsghdr *c;
    ssize_t n;

    memset(&msg, 0, sizeof(msg));
    memset(m, 0, sizeof(*m));
    iov.iov_base = m;
    iov.iov_len = sizeof(*m);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    *passed_fd = -1;
    do {
        n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n <= 0)
        return (int)n;
    for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            memcpy(passed_fd, CMSG_DATA(c), sizeof(int));
    return 1;
}

static void close_sync(struct proc *p)
{
    if (p->sync_fd >= 0) {
        loop_del(p->sync_fd);
        close(p->sync_fd);
        p->sync_fd = -1;
    }
}

/* Messages from a child: READY, ERROR, PTY; EOF means it has exec'd (or died). */
void handle_sync(struct proc *p)
{
    struct child_msg m;
    int fd, r;
    while (p->sync_fd >= 0) {
        r = recv_child_msg(p->sync_fd, &m, &fd);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            r = 0;
        }
        if (r == 0) {
            close_sync(p);
            if (p->exec_error) {
                settle(p, p->exec_error_code, p->exec_error);
            } else if (p->pending == P_START || p->pending == P_EXEC) {
                /* EOF without an error: exec closed the socket (CLOEXEC). The process may
                 * already have exited too; that exit is reported after this answer. */
                p->state = SV_STATE_RUNNING;
                settle(p, 0, NULL);
            } else if (p->pending == P_CREATE) {
                settle(p, ECHILD, "the container init exited during setup");
                p->spawn_failed = 1;
            }
            return;
        }
        switch (m.kind) {
        case CHILD_READY:
            p->state = SV_STATE_CREATED;
            settle(p, 0, NULL);
            break;
        case CHILD_ERROR:
            m.msg[sizeof(m.msg) - 1] = '\0';
            if (p->pending == P_CREATE)
                p->spawn_failed = 1;
            free(p->exec_error);
            p->exec_error = strdup(m.msg);
            p->exec_error_code = m.code ? m.code : EIO;
            settle(p, p->exec_error_code, m.msg);
            break;
        case CHILD_PTY:
            if (fd >= 0 && p->relay && p->terminal && !relay_has_terminal(p->relay)) {
                if (relay_attach_terminal(p->relay, p, fd) < 0)
                    close(fd);
            } else if (fd >= 0) {
                close(fd);
            }
            break;
        default:
            if (fd >= 0)
                close(fd);
            break;
        }
    }
}

static void exit_of(const siginfo_t *si, struct proc *p)
{
    if (si->si_code == CLD_EXITED) {
        p->exit_code = si->si_status & 0xff;
        p->wait_status = (si->si_status & 0xff) << 8;
    } else {
        p->exit_code = 128 + si->si_status;
        p->wait_status = si->si_status | (si->si_code == CLD_DUMPED ? 0x80 : 0);
    }
}

static void kill_task_execs(struct proc *init)
{
    struct proc *q;
    for (q = proc_first(); q; q = q->all_next)
        if (q->is_exec && !q->reaped && q->pidfd >= 0 && strcmp(q->task_key, init->key) == 0)
            syscall(SYS_pidfd_send_signal, q->pidfd, SIGKILL, NULL, 0);
}

void reap(struct proc *p)
{
    siginfo_t si;
    if (p->reaped || p->pidfd < 0)
        return;
    memset(&si, 0, sizeof(si));
    if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
        return;
    p->reaped = 1;
    p->exited_at_ns = now_ns();
    exit_of(&si, p);
    loop_del(p->pidfd);
    close(p->pidfd);
    p->pidfd = -1;
    if (p->restoring) {
        restore_finished(p, p->exit_code);
        if (p->spawn_failed)
            proc_free(p);
        return;
    }
    /* A message sent just before exit (ERROR, or EOF after exec) comes first. */
    if (p->sync_fd >= 0)
        handle_sync(p);
    if (p->pending == P_FORGET) {
        settle(p, 0, NULL);
        proc_free(p);
        return;
    }
    if (p->spawn_failed) {
        settle(p, ECHILD, "the container init exited during setup");
        proc_free(p);
        return;
    }
    if (p->stdin_hold >= 0) {
        close(p->stdin_hold);
        p->stdin_hold = -1;
    }
    if (!p->is_exec && !p->has_pidns)
        kill_task_execs(p); /* no pid namespace to take them down with the init */
    if (p->relay) {
        relay_process_exited(p->relay);
        p->relay_deadline_ns = mono_ns() + RELAY_DRAIN_NS;
        draining++;
    }
    maybe_notify_exit(p);
}

/* Tell the agent about an exit once its output is drained and, for an init, once every exec
 * of its task has been reported: exits arrive in the order a client expects. */
void maybe_notify_exit(struct proc *p)
{
    struct sv_buf b = {0};
    if (!p->reaped || p->exit_sent)
        return;
    /* A terminal's output is drained before its exit is told: the pty is gone with the
     * process. Pipe output may outlive the exit (children still writing) and drains on. */
    if (p->terminal && p->relay && !relay_done(p->relay))
        return;
    if (!p->is_exec && proc_live_execs(p->key) > 0)
        return;
    p->exit_sent = 1;
    drain_over(p);
    sv_buf_start(&b, SV_EV_EXIT, 0);
    sv_put_str(&b, T_KEY, p->key);
    sv_put_u64(&b, T_PID, (uint64_t)p->pid);
    sv_put_u64(&b, T_EXIT_CODE, (uint64_t)p->exit_code);
    sv_put_u64(&b, T_WAIT_STATUS, (uint64_t)p->wait_status);
    sv_put_u64(&b, T_EXITED_AT, (uint64_t)p->exited_at_ns);
    link_send(&b);
    sv_buf_free(&b);
    if (p->is_exec) {
        struct proc *init = proc_by_key(p->task_key);
        if (init && init != p)
            maybe_notify_exit(init);
    }
}

/* SIGCHLD: reap whatever is ready. Tracked processes go through their pidfd; anything else
 * (orphans re-parented to us as subreaper) is reaped here so no zombie stays. */
void reap_orphans(void)
{
    for (;;) {
        siginfo_t si;
        struct proc *p;
        memset(&si, 0, sizeof(si));
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
            return;
        p = proc_by_pid(si.si_pid);
        if (p) {
            reap(p); /* may free p (a forgotten or failed spawn): do not touch it after */
            if (proc_by_pid(si.si_pid))
                return; /* cannot make progress now; the pidfd event will retry */
        } else {
            waitpid(si.si_pid, NULL, WNOHANG);
        }
    }
}

/* A forget waiting for the output to be delivered: answered and done once it is. */
void forget_when_drained(struct proc *p)
{
    if (p->pending != P_FORGET || !p->reaped || !p->exit_sent)
        return;
    settle(p, 0, NULL);
    proc_free(p);
}

/* Draining in either wait: the exit not told yet, or a forget not answered yet. */
static int drain_waits(const struct proc *p)
{
    return p->reaped && p->relay && p->relay_deadline_ns &&
           (!p->exit_sent || p->pending == P_FORGET);
}

void check_deadlines(int64_t now)
{
    struct proc *p, *next;
    if (!draining)
        return;
    for (p = proc_first(); p; p = next) {
        next = p->all_next;
        if (drain_waits(p) && now >= p->relay_deadline_ns) {
            relay_finish(p->relay);
            maybe_notify_exit(p);
            forget_when_drained(p);
        }
    }
}

int64_t next_deadline(void)
{
    struct proc *p;
    int64_t best = 0;
    if (!draining)
        return 0;
    for (p = proc_first(); p; p = p->all_next)
        if (drain_waits(p) && (!best || p->relay_deadline_ns < best))
            best = p->relay_deadline_ns;
    return best;
}
