/* The two child programs: a container's init (set up, report READY, wait for START, exec)
 * and an exec process (join the task, exec at once). Failures go back over the sync socket
 * as "step: detail" and the child exits 127; the supervisor turns that into the RPC error. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "child.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct rlimit sv_original_nofile;

static void report(int sync_fd, int kind, const struct nerr *e)
{
    struct child_msg m;
    memset(&m, 0, sizeof(m));
    m.kind = kind;
    if (e) {
        m.code = e->code;
        memcpy(m.msg, e->msg, sizeof(m.msg));
    }
    (void)send(sync_fd, &m, sizeof(m), MSG_NOSIGNAL);
}

static void __attribute__((noreturn)) fail(int sync_fd, const struct nerr *e)
{
    report(sync_fd, CHILD_ERROR, e);
    _exit(127);
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Close every inherited fd (other tasks' fifos, the supervisor's sockets) except ours. */
static void close_others(struct spawn_config *cfg, int sync_fd, int extra)
{
    int keep[SV_MAX_NS_JOIN + SV_MAX_CGROUPS + 8];
    int n = 0, i, from = 3;

    keep[n++] = sync_fd;
    if (extra >= 0)
        keep[n++] = extra;
    for (i = 0; i < cfg->n_ns_join; i++)
        keep[n++] = cfg->ns_join[i].fd;
    for (i = 0; i < cfg->n_cgroup_procs; i++)
        keep[n++] = cfg->cgroup_procs[i];
    if (cfg->proc_stdin >= 0)
        keep[n++] = cfg->proc_stdin;
    if (cfg->proc_stdout >= 0)
        keep[n++] = cfg->proc_stdout;
    if (cfg->proc_stderr >= 0)
        keep[n++] = cfg->proc_stderr;
    qsort(keep, (size_t)n, sizeof(int), cmp_int);
    for (i = 0; i < n; i++) {
        if (keep[i] > from)
            syscall(SYS_close_range, (unsigned)from, (unsigned)(keep[i] - 1), 0);
        if (keep[i] >= from)
            from = keep[i] + 1;
    }
    syscall(SYS_close_range, (unsigned)from, ~0U, 0);
}

/* Signals ignored in the supervisor: those it was started with ignored, and SIGPIPE. It
 * installs no handlers, and exec resets handlers anyway, so these are all a child must
 * set back to default (one call each, not one per signal number). */
static sigset_t ignored_signals;

void child_probe_signals(void)
{
    struct sigaction old;
    int sig;
    sigemptyset(&ignored_signals);
    for (sig = 1; sig < NSIG; sig++)
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            sigaddset(&ignored_signals, sig);
    sigaddset(&ignored_signals, SIGPIPE);
}

/* The supervisor blocks and ignores signals for itself; a container starts clean. */
static void reset_signals(void)
{
    sigset_t none;
    int sig;
    for (sig = 1; sig < NSIG; sig++)
        if (sigismember(&ignored_signals, sig) == 1)
            signal(sig, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Writes "0" (this thread, the only one) into each v1 hierarchy's tasks file. */
static int join_cgroups(struct spawn_config *cfg, struct nerr *e)
{
    int i;
    for (i = 0; i < cfg->n_cgroup_procs; i++) {
        if (write(cfg->cgroup_procs[i], "0", 1) < 0)
            return nerr_sys(e, errno, "joining the task's cgroup");
        close(cfg->cgroup_procs[i]);
        cfg->cgroup_procs[i] = -1;
    }
    return 0;
}

static int join_namespaces(struct spawn_config *cfg, struct nerr *e)
{
    int i;
    for (i = 0; i < cfg->n_ns_join; i++) {
        if (setns(cfg->ns_join[i].fd, cfg->ns_join[i].nstype) < 0)
            return nerr_sys(e, errno, "joining namespace (type 0x%x)", cfg->ns_join[i].nstype);
        close(cfg->ns_join[i].fd);
        cfg->ns_join[i].fd = -1;
    }
    return 0;
}

static int loopback_up(struct nerr *e)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return nerr_sys(e, errno, "bringing up loopback: socket");
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        close(s);
        return nerr_sys(e, errno, "bringing up loopback: reading flags");
    }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
        close(s);
        return nerr_sys(e, errno, "bringing up loopback");
    }
    close(s);
    return 0;
}

/* The container's own /dev/null once we are inside its filesystem (a host one would be a
 * file from outside the container: CRIU could not checkpoint it); the host's if it has none. */
static int container_devnull(int host_devnull)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return host_devnull;
    close(host_devnull);
    return fd;
}

static void exec_now(struct spawn_config *cfg, int sync_fd, const char *path)
{
    struct nerr e;
    /* Everything left (the sync socket included) closes at exec: EOF there means success. */
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(path, (char *const *)cfg->args, (char *const *)cfg->env);
    nerr_sys(&e, errno, "exec: \"%s\"", cfg->args[0]);
    fail(sync_fd, &e);
}

void child_init_main(struct spawn_config *cfg, int sync_fd)
{
    struct nerr e;
    char path[PATH_MAX];
    int devnull;
    char go;
    ssize_t n;

    nerr_clear(&e);
    reset_signals();
    close_others(cfg, sync_fd, -1);
    if (join_cgroups(cfg, &e) < 0 || join_namespaces(cfg, &e) < 0)
        fail(sync_fd, &e);
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        nerr_sys(&e, errno, "opening /dev/null");
        fail(sync_fd, &e);
    }
    if ((cfg->clone_flags & CLONE_NEWNET) && cfg->loopback_up && loopback_up(&e) < 0)
        fail(sync_fd, &e);
    if (cfg->hostname && sethostname(cfg->hostname, strlen(cfg->hostname)) < 0) {
        nerr_sys(&e, errno, "setting hostname %s", cfg->hostname);
        fail(sync_fd, &e);
    }
    if (cfg->domainname && setdomainname(cfg->domainname, strlen(cfg->domainname)) < 0) {
        nerr_sys(&e, errno, "setting domainname %s", cfg->domainname);
        fail(sync_fd, &e);
    }
    if (container_prepare_rootfs(cfg, &e) < 0 || container_pivot(cfg, &e) < 0 ||
        container_finish(cfg, &e) < 0)
        fail(sync_fd, &e);
    devnull = container_devnull(devnull);
    if (cfg->terminal) {
        if (process_setup_terminal(cfg, sync_fd, 1, &e) < 0)
            fail(sync_fd, &e);
    } else {
        if (process_setup_stdio(cfg, devnull, &e) < 0)
            fail(sync_fd, &e);
        setsid();
    }
    close(devnull);
    if (process_finalize(cfg, 1, &e) < 0 || process_resolve(cfg, path, sizeof(path), &e) < 0)
        fail(sync_fd, &e);
    report(sync_fd, CHILD_READY, NULL);
    /* Created: wait here, stopped before exec, until Start (or until the supervisor lets go). */
    do {
        n = recv(sync_fd, &go, 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n != 1)
        _exit(127);
    exec_now(cfg, sync_fd, path);
    _exit(127);
}

void child_exec_main(struct spawn_config *cfg, int sync_fd, int target_pidfd, int ns_flags)
{
    struct nerr e;
    char path[PATH_MAX];
    int devnull;

    nerr_clear(&e);
    reset_signals();
    close_others(cfg, sync_fd, target_pidfd);
    if (join_cgroups(cfg, &e) < 0)
        fail(sync_fd, &e);
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        nerr_sys(&e, errno, "opening /dev/null");
        fail(sync_fd, &e);
    }
    /* Entering the mount namespace also moves root and cwd to the container's root. */
    if (ns_flags && setns(target_pidfd, ns_flags) < 0) {
        nerr_sys(&e, errno, "joining the task's namespaces");
        fail(sync_fd, &e);
    }
    close(target_pidfd);
    devnull = container_devnull(devnull);
    if (cfg->terminal) {
        if (process_setup_terminal(cfg, sync_fd, 0, &e) < 0)
            fail(sync_fd, &e);
    } else if (process_setup_stdio(cfg, devnull, &e) < 0) {
        fail(sync_fd, &e);
    }
    close(devnull);
    if (process_finalize(cfg, 0, &e) < 0 || process_resolve(cfg, path, sizeof(path), &e) < 0)
        fail(sync_fd, &e);
    exec_now(cfg, sync_fd, path);
    _exit(127);
}
