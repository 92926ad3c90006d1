/* Making a process: clone3 with a pidfd, the sync socket, the stdio pipes the relay copies
 * to and from the client's fifos, and taking the child into the process table. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

pid_t clone3_pidfd(uint64_t flags, int cgroup_fd, int *pidfd)
{
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

void spawn_init(struct spawn *sp)
{
    sp->sv[0] = sp->sv[1] = -1;
    memset(&sp->rf, 0, sizeof(sp->rf));
    sp->rf.in_src = sp->rf.in_dst = sp->rf.out_src = sp->rf.out_dst = -1;
    sp->rf.err_src = sp->rf.err_dst = -1;
}

void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* In the parent, everything the relay does not own yet. */
void spawn_cleanup(struct spawn *sp)
{
    close_fd(&sp->sv[0]);
    close_fd(&sp->sv[1]);
    close_fd(&sp->rf.in_src);
    close_fd(&sp->rf.in_dst);
    close_fd(&sp->rf.out_src);
    close_fd(&sp->rf.out_dst);
    close_fd(&sp->rf.err_src);
    close_fd(&sp->rf.err_dst);
}

/* A pipe for one stdio stream: `proc_end` goes to the process, `ours` to the relay. */
static int stdio_pipe(int *proc_end, int *ours, int proc_reads, struct nerr *e)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return nerr_sys(e, errno, "creating a stdio pipe");
    *proc_end = proc_reads ? fds[0] : fds[1];
    *ours = proc_reads ? fds[1] : fds[0];
    return 0;
}

int spawn_prepare(struct spawn *sp, struct spawn_config *cfg, struct nerr *e)
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp->sv) < 0)
        return nerr_sys(e, errno, "creating the sync socket");
    sp->rf.terminal = cfg->terminal;
    /* The fifos move to the relay; the process gets our pipes (or, later, its pty). */
    sp->rf.in_src = cfg->stdin_fifo;
    sp->rf.out_dst = cfg->stdout_fifo;
    sp->rf.err_dst = cfg->stderr_fifo;
    cfg->stdin_fifo = cfg->stdout_fifo = cfg->stderr_fifo = -1;
    if (cfg->terminal)
        return 0;
    if (sp->rf.in_src >= 0 && stdio_pipe(&cfg->proc_stdin, &sp->rf.in_dst, 1, e) < 0)
        return -1;
    if (sp->rf.out_dst >= 0 && stdio_pipe(&cfg->proc_stdout, &sp->rf.out_src, 0, e) < 0)
        return -1;
    if (sp->rf.err_dst >= 0 && stdio_pipe(&cfg->proc_stderr, &sp->rf.err_src, 0, e) < 0)
        return -1;
    return 0;
}

/* In the child: only the sync socket's child end and its config's fds are its own. */
void spawn_child_side(struct spawn *sp)
{
    close_fd(&sp->sv[0]);
    sp->sv[1] = -1; /* kept by the child */
    spawn_cleanup(sp);
}

/* Common tail of CREATE and EXEC in the parent: record the child, start its relay, watch it.
 * Takes the sync socket and the relay's fds from sp. */
void adopt_child(struct proc *p, struct spawn_config *cfg, struct spawn *sp, pid_t pid,
                        int pidfd)
{
    proc_set_pid(p, pid);
    p->pidfd = pidfd;
    p->sync_fd = sp->sv[0];
    sp->sv[0] = -1;
    p->terminal = cfg->terminal;
    p->stdin_hold = cfg->stdin_hold;
    p->stdout_hold = cfg->stdout_hold;
    p->stderr_hold = cfg->stderr_hold;
    cfg->stdin_hold = cfg->stdout_hold = cfg->stderr_hold = -1;
    if (cfg->annotation_len && (p->annotation = malloc(cfg->annotation_len)) != NULL) {
        memcpy(p->annotation, cfg->annotation, cfg->annotation_len);
        p->annotation_len = cfg->annotation_len;
    }
    p->relay = relay_new(p, &sp->rf);
    if (p->relay)
        spawn_init(sp); /* the relay owns them now */
    loop_add(pidfd, EPOLLIN, &p->w_pidfd);
    if (p->sync_fd >= 0)
        loop_add(p->sync_fd, EPOLLIN, &p->w_sync);
}

void refuse(struct sv_packet *pkt, struct spawn_config *cfg, struct spawn *sp, int code,
                   const char *msg)
{
    link_reply_error(pkt->hdr.id, code, msg);
    spawn_cleanup(sp);
    config_free(cfg);
}

/* The parent could not keep a child it just made: stop it. */
void abandon_child(pid_t pid, int pidfd)
{
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    waitpid(pid, NULL, 0);
    close(pidfd);
}

