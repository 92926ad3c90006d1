/* Process attributes applied in the child just before exec: terminal, stdio, limits,
 * identity, capabilities, no_new_privs, working directory and the program's path. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "child.h"

static int send_fd(int sock, int kind, int fd, struct nerr *e)
{
    struct child_msg m;
    struct msghdr msg;
    struct iovec iov;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct cmsghdr *c;

    memset(&m, 0, sizeof(m));
    m.kind = kind;
    memset(&msg, 0, sizeof(msg));
    memset(&control, 0, sizeof(control));
    iov.iov_base = &m;
    iov.iov_len = sizeof(m);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0)
        return nerr_sys(e, errno, "sending the terminal to the supervisor");
    return 0;
}

/* Bind the pty numbered n of the container's devpts over /dev/console: an empty file made
 * for it if missing, in place of a symbolic link (a mount would follow it). */
static int bind_console(int n, struct nerr *e)
{
    char pts[32];
    struct stat st;
    int fd;
    if (lstat("/dev/console", &st) == 0 && S_ISLNK(st.st_mode) && unlink("/dev/console") < 0)
        return nerr_sys(e, errno, "terminal: removing the link /dev/console");
    fd = open("/dev/console", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0)
        close(fd);
    else if (errno != EEXIST)
        return nerr_sys(e, errno, "terminal: making /dev/console");
    snprintf(pts, sizeof(pts), "/dev/pts/%d", n);
    if (mount(pts, "/dev/console", NULL, MS_BIND, NULL) < 0)
        return nerr_sys(e, errno, "terminal: binding %s over /dev/console", pts);
    return 0;
}

/* Open a pty inside the container's devpts, hand the master to the supervisor and make the
 * slave our controlling terminal and stdio. */
int process_setup_terminal(struct spawn_config *cfg, int sync_fd, int console, struct nerr *e)
{
    int master, slave, unlock = 0, n;
    struct winsize ws;

    master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return nerr_sys(e, errno, "terminal: opening /dev/ptmx in the container");
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) {
        close(master);
        return nerr_sys(e, errno, "terminal: unlocking the pty");
    }
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (slave < 0) {
        close(master);
        return nerr_sys(e, errno, "terminal: opening the pty peer");
    }
    if (console) {
        int r = ioctl(master, TIOCGPTN, &n) < 0
                    ? nerr_sys(e, errno, "terminal: reading the pty's number")
                    : bind_console(n, e);
        if (r < 0) {
            close(master);
            close(slave);
            return -1;
        }
    }
    if (cfg->width && cfg->height) {
        memset(&ws, 0, sizeof(ws));
        ws.ws_col = (unsigned short)cfg->width;
        ws.ws_row = (unsigned short)cfg->height;
        ioctl(master, TIOCSWINSZ, &ws);
    }
    if (send_fd(sync_fd, CHILD_PTY, master, e) < 0) {
        close(master);
        close(slave);
        return -1;
    }
    close(master);
    if (setsid() < 0 && errno != EPERM)
        return nerr_sys(e, errno, "terminal: setsid");
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        return nerr_sys(e, errno, "terminal: making the pty the controlling terminal");
    if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
        return nerr_sys(e, errno, "terminal: attaching stdio");
    if (slave > 2)
        close(slave);
    return 0;
}

int process_setup_stdio(struct spawn_config *cfg, int devnull, struct nerr *e)
{
    int fds[3] = {cfg->proc_stdin, cfg->proc_stdout, cfg->proc_stderr};
    int i;
    /* Our pipes, or /dev/null where the client gave no fifo. */
    for (i = 0; i < 3; i++)
        if (dup2(fds[i] >= 0 ? fds[i] : devnull, i) < 0)
            return nerr_sys(e, errno, "attaching fd %d", i);
    return 0;
}

static int apply_rlimits(struct spawn_config *cfg, struct nerr *e)
{
    int i;
    /* The supervisor raised its own fd limit; give the container the original back. */
    if (setrlimit(RLIMIT_NOFILE, &sv_original_nofile) < 0)
        return nerr_sys(e, errno, "restoring RLIMIT_NOFILE");
    for (i = 0; i < cfg->n_rlimits; i++) {
        struct rlimit rl = {(rlim_t)cfg->rlimits[i].soft, (rlim_t)cfg->rlimits[i].hard};
        if (setrlimit((int)cfg->rlimits[i].resource, &rl) < 0)
            return nerr_sys(e, errno, "setrlimit %d to %llu/%llu", (int)cfg->rlimits[i].resource,
                            (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    }
    return 0;
}

/* The kernel's highest capability, probed once by the supervisor (42 prctl calls that
 * every child used to make twice). */
static int kernel_last_cap = 63;

void process_probe_caps(void)
{
    int cap;
    for (cap = 0; cap < 64; cap++)
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) {
            kernel_last_cap = cap - 1;
            return;
        }
    kernel_last_cap = 63;
}

static int last_cap(void)
{
    return kernel_last_cap;
}

static int apply_caps(struct spawn_config *cfg, struct nerr *e)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    int cap, last = last_cap();

    memset(data, 0, sizeof(data));
    data[0].effective = (uint32_t)cfg->cap_effective;
    data[1].effective = (uint32_t)(cfg->cap_effective >> 32);
    data[0].permitted = (uint32_t)cfg->cap_permitted;
    data[1].permitted = (uint32_t)(cfg->cap_permitted >> 32);
    data[0].inheritable = (uint32_t)cfg->cap_inheritable;
    data[1].inheritable = (uint32_t)(cfg->cap_inheritable >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0)
        return nerr_sys(e, errno, "setting capabilities");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return nerr_sys(e, errno, "clearing ambient capabilities");
    for (cap = 0; cap <= last; cap++) {
        if (!(cfg->cap_ambient & (1ULL << cap)))
            continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            return nerr_sys(e, errno, "raising ambient capability %d", cap);
    }
    return 0;
}

static int drop_bounding(struct spawn_config *cfg, struct nerr *e)
{
    int cap, last = last_cap();
    for (cap = 0; cap <= last; cap++) {
        if (cfg->cap_bounding & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return nerr_sys(e, errno, "dropping capability %d from the bounding set", cap);
    }
    return 0;
}

static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    char *p;
    if (strlen(path) >= sizeof(buf))
        return -1;
    strcpy(buf, path);
    for (p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    return mkdir(buf, 0755);
}

int process_finalize(struct spawn_config *cfg, int make_cwd, struct nerr *e)
{
    const char *cwd = cfg->cwd && cfg->cwd[0] ? cfg->cwd : "/";

    if (cfg->has_oom_score_adj) {
        char v[32];
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        int n = snprintf(v, sizeof(v), "%lld", (long long)cfg->oom_score_adj);
        if (fd < 0 || write(fd, v, (size_t)n) < 0) {
            int err = errno;
            if (fd >= 0)
                close(fd);
            return nerr_sys(e, err, "setting oom_score_adj to %s", v);
        }
        close(fd);
    }
    if (apply_rlimits(cfg, e) < 0)
        return -1;
    if (chdir(cwd) < 0) {
        if (make_cwd)
            mkdir_p(cwd);
        if (!make_cwd || chdir(cwd) < 0)
            return nerr_sys(e, errno, "chdir to the working directory %s", cwd);
    }
    if (cfg->has_caps && drop_bounding(cfg, e) < 0)
        return -1;
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return nerr_sys(e, errno, "keeping capabilities across the user switch");
    if (setgroups((size_t)cfg->n_gids, cfg->gids) < 0)
        return nerr_sys(e, errno, "setting additional groups");
    if (setresgid(cfg->gid, cfg->gid, cfg->gid) < 0)
        return nerr_sys(e, errno, "setting gid %u", cfg->gid);
    if (setresuid(cfg->uid, cfg->uid, cfg->uid) < 0)
        return nerr_sys(e, errno, "setting uid %u", cfg->uid);
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        return nerr_sys(e, errno, "clearing keep-capabilities");
    if (cfg->has_caps && apply_caps(cfg, e) < 0)
        return -1;
    if (cfg->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return nerr_sys(e, errno, "setting no_new_privs");
    umask(cfg->has_umask ? (mode_t)cfg->umask : 022);
    /* Again as the target user: a directory root could enter may be closed to it. */
    if (chdir(cwd) < 0)
        return nerr_sys(e, errno, "chdir to the working directory %s as uid %u", cwd, cfg->uid);
    return 0;
}

static const char *env_path(struct spawn_config *cfg)
{
    int i;
    for (i = 0; i < cfg->n_env; i++)
        if (strncmp(cfg->env[i], "PATH=", 5) == 0)
            return cfg->env[i] + 5;
    return NULL;
}

/* The program's path as exec will see it, checked now so a missing binary is an error of
 * Create or Start rather than a silent exit 127. PATH comes from the process's own env. */
int process_resolve(struct spawn_config *cfg, char *out, size_t size, struct nerr *e)
{
    const char *name = cfg->args[0];
    const char *path, *p;
    struct stat st;

    if (strchr(name, '/')) {
        if (stat(name, &st) < 0)
            return nerr_sys(e, errno, "exec: \"%s\"", name);
        if (S_ISDIR(st.st_mode))
            return nerr_set(e, EACCES, "exec: \"%s\": is a directory", name);
        if (access(name, X_OK) < 0)
            return nerr_sys(e, errno, "exec: \"%s\"", name);
        snprintf(out, size, "%s", name);
        return 0;
    }
    path = env_path(cfg);
    for (p = path; p && *p;) {
        const char *colon = strchr(p, ':');
        size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
        if (dlen == 0)
            snprintf(out, size, "./%s", name);
        else
            snprintf(out, size, "%.*s/%s", (int)dlen, p, name);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
            return 0;
        p = colon ? colon + 1 : NULL;
    }
    return nerr_set(e, ENOENT, "exec: \"%s\": executable file not found in $PATH", name);
}
