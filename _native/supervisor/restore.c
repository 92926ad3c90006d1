/* RESTORE: an init brought back from a checkpoint. The supervisor runs `criu restore` (its
 * command line comes from the agent) as its own child, with the new stdio pipes at fds 3, 4
 * and 5 for criu's --inherit-fd. With --restore-sibling the restored init becomes a child
 * of the supervisor too, and with --leave-stopped it waits, stopped, for Start. When criu
 * exits the record switches from criu to the init, whose pid criu wrote to the pidfile. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "child.h"
#include "spawn.h"

#define RESTORE_FD_BASE 3 /* stdin, stdout, stderr pipes at 3, 4, 5 in criu */

static void __attribute__((noreturn)) run_criu(struct spawn_config *cfg)
{
    int ends[3] = {cfg->proc_stdin, cfg->proc_stdout, cfg->proc_stderr};
    int i, devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    sigset_t none;

    for (i = 1; i < NSIG; i++)
        signal(i, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Lift our pipe ends out of the way, then put them where the command line says. */
    for (i = 0; i < 3; i++)
        if (ends[i] >= 0)
            ends[i] = fcntl(ends[i], F_DUPFD, 64);
    for (i = 0; i < 3; i++) {
        dup2(devnull, i);
        if (ends[i] >= 0)
            dup2(ends[i], RESTORE_FD_BASE + i);
        else
            dup2(devnull, RESTORE_FD_BASE + i);
    }
    syscall(SYS_close_range, (unsigned)(RESTORE_FD_BASE + 3), ~0U, 0);
    setsid();
    execve(cfg->args[0], (char *const *)cfg->args, (char *const *)cfg->env);
    _exit(127);
}

void handle_restore(struct sv_packet *pkt)
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
    if (!cfg.pidfile)
        return refuse(pkt, &cfg, &sp, EINVAL, "restore needs a pidfile");
    if (cfg.terminal)
        return refuse(pkt, &cfg, &sp, EOPNOTSUPP, "a task with a terminal cannot be restored");
    if (proc_by_key(cfg.key))
        return refuse(pkt, &cfg, &sp, EEXIST, "a process with this key exists");
    if (spawn_prepare(&sp, &cfg, &e) < 0)
        return refuse(pkt, &cfg, &sp, e.code, e.msg);
    close_fd(&sp.sv[0]); /* criu has nothing to tell us but its exit status */
    close_fd(&sp.sv[1]);
    pid = clone3_pidfd(0, -1, &pidfd);
    if (pid == 0)
        run_criu(&cfg);
    if (pid < 0) {
        nerr_sys(&e, errno, "starting criu");
        return refuse(pkt, &cfg, &sp, e.code, e.msg);
    }
    p = proc_new(cfg.key, cfg.key);
    if (!p || !(p->pidfile = strdup(cfg.pidfile))) {
        if (p)
            proc_free(p);
        abandon_child(pid, pidfd);
        return refuse(pkt, &cfg, &sp, ENOMEM, "supervisor out of memory");
    }
    p->restoring = 1;
    p->has_pidns = (cfg.clone_flags & CLONE_NEWPID) != 0;
    adopt_child(p, &cfg, &sp, pid, pidfd);
    set_pending(p, P_RESTORE, pkt->hdr.id);
    spawn_cleanup(&sp);
    config_free(&cfg);
}

static pid_t read_pidfile(const char *path)
{
    char buf[32];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return (pid_t)strtol(buf, NULL, 10);
}

/* criu has exited: hold the restored init in its place, or fail the request. */
void restore_finished(struct proc *p, int exit_code)
{
    char msg[NERR_MSG_MAX];
    pid_t pid = exit_code == 0 ? read_pidfile(p->pidfile) : -1;
    int pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;

    if (pidfd < 0) {
        if (exit_code != 0)
            snprintf(msg, sizeof(msg), "criu restore failed with status %d", exit_code);
        else
            snprintf(msg, sizeof(msg), "criu restore left no process (pidfile %s)", p->pidfile);
        p->spawn_failed = 1; /* nothing to report later: the request fails here */
        settle(p, EIO, msg);
        return;
    }
    fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    p->restoring = 0;
    p->restored = 1;
    p->reaped = 0;
    p->pidfd = pidfd;
    p->state = SV_STATE_CREATED;
    proc_change_pid(p, pid);
    loop_add(pidfd, EPOLLIN, &p->w_pidfd);
    settle(p, 0, NULL);
}
