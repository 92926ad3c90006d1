/* taskagent-supervisor: one per host. The parent of every container process; it spawns them
 * on the agent's request, reaps them (and any orphan) through one epoll set, keeps exit
 * statuses until the agent takes them, and holds stdio so containers keep running and
 * writing while the agent is stopped, upgraded or crashed.
 *
 * Usage: taskagent-supervisor --listen-fd N [--hold-fd M]
 *   N: a listening SOCK_SEQPACKET unix socket;
 *   M: kept open for the supervisor's life (the agent's claim on its cgroup parent). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "child.h"
#include "supervisor.h"

extern int sv_epoll;

int sv_self_pidns = -1;
uint8_t *sv_recv_buf;
int64_t sv_started_at;

/* The socket file we were started on, to remove at exit while it is still ours (a new
 * supervisor may have bound a new one at the same path since). */
static char own_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static struct stat own_stat;

static void remember_socket(int listen_fd)
{
    struct sockaddr_un addr;
    socklen_t len = sizeof(addr);
    memset(&addr, 0, sizeof(addr));
    if (getsockname(listen_fd, (struct sockaddr *)&addr, &len) < 0 || addr.sun_family != AF_UNIX ||
        addr.sun_path[0] == '\0')
        return;
    memcpy(own_path, addr.sun_path, sizeof(own_path) - 1);
    if (stat(own_path, &own_stat) < 0)
        own_path[0] = '\0';
}

static void remove_socket(void)
{
    struct stat now;
    if (own_path[0] && stat(own_path, &now) == 0 && now.st_dev == own_stat.st_dev &&
        now.st_ino == own_stat.st_ino)
        unlink(own_path);
}

static int parse_args(int argc, char **argv, int *hold_fd)
{
    int i, listen_fd = -1;
    for (i = 1; i < argc - 1; i++) {
        if (strcmp(argv[i], "--listen-fd") == 0)
            listen_fd = atoi(argv[++i]);
        else if (strcmp(argv[i], "--hold-fd") == 0)
            *hold_fd = atoi(argv[++i]);
    }
    return listen_fd;
}

static void keep_std_fds(void)
{
    int fd;
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
        ;
    if (fd > 2)
        close(fd);
}

static int setup(int listen_fd, int *sigfd)
{
    struct rlimit rl;
    sigset_t mask;
    static struct watch w_listen = {.kind = W_LISTEN}, w_signal = {.kind = W_SIGNAL};

    getrlimit(RLIMIT_NOFILE, &sv_original_nofile);
    rl = sv_original_nofile;
    rl.rlim_cur = rl.rlim_max; /* one fd per pidfd and held fifo: thousands of tasks */
    setrlimit(RLIMIT_NOFILE, &rl);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
        perror("supervisor: becoming a subreaper");
        return -1;
    }
    child_probe_signals(); /* before SIGPIPE is ignored below: what children undo */
    process_probe_caps();
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    *sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    sv_self_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    sv_epoll = epoll_create1(EPOLL_CLOEXEC);
    sv_recv_buf = malloc(SV_MAX_PACKET);
    if (*sigfd < 0 || sv_self_pidns < 0 || sv_epoll < 0 || !sv_recv_buf) {
        perror("supervisor: setting up");
        return -1;
    }
    fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
    fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
    loop_add(listen_fd, EPOLLIN, &w_listen);
    loop_add(*sigfd, EPOLLIN, &w_signal);
    sv_started_at = now_ns();
    return 0;
}

/* Returns 1 when the supervisor should stop. */
static int on_signals(int sigfd)
{
    struct signalfd_siginfo si;
    int stop = 0;
    while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            stop = 1;
    }
    reap_orphans();
    return stop;
}

int main(int argc, char **argv)
{
    struct epoll_event events[256];
    int hold_fd = -1;
    int listen_fd = parse_args(argc, argv, &hold_fd);
    int sigfd = -1, stop = 0;

    if (listen_fd < 0) {
        fprintf(stderr, "usage: %s --listen-fd N [--hold-fd M]\n", argv[0]);
        return 2;
    }
    if (hold_fd > 2)
        fcntl(hold_fd, F_SETFD, FD_CLOEXEC); /* ours alone: never inherited by criu */
    keep_std_fds();
    if (setup(listen_fd, &sigfd) < 0)
        return 1;
    remember_socket(listen_fd);
    while (!stop) {
        int64_t deadline = next_deadline();
        int timeout = -1, n, i;
        if (deadline) {
            int64_t left = (deadline - mono_ns()) / 1000000;
            timeout = left < 0 ? 0 : (int)(left > 60000 ? 60000 : left + 1);
        }
        n = epoll_wait(sv_epoll, events, 256, timeout);
        if (n < 0 && errno != EINTR) {
            perror("supervisor: epoll_wait");
            return 1;
        }
        for (i = 0; i < n; i++) {
            struct watch *w = events[i].data.ptr;
            switch (w->kind) {
            case W_LISTEN: link_accept(listen_fd); break;
            case W_CLIENT: link_on_event(events[i].events); break;
            case W_SIGNAL: stop = on_signals(sigfd); break;
            case W_PIDFD: reap(w->proc); break;
            case W_SYNC: handle_sync(w->proc); break;
            case W_CHANNEL: relay_on_event(w->channel); break;
            }
            /* A handler above may have freed a process another event points at. */
            if (w->kind == W_CLIENT || w->kind == W_SIGNAL || w->kind == W_PIDFD)
                break;
        }
        check_deadlines(mono_ns());
        if (sv_shutdown_requested) {
            link_flush();
            stop = 1;
        }
    }
    remove_socket();
    return 0;
}
