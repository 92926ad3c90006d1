/* The container's filesystem: rootfs mounts, the spec's mounts, /dev, pivot_root, then
 * sysctls, read-only and masked paths. Runs in the child, inside its new mount namespace.
 * Every path from the spec is resolved inside the rootfs (openat2 RESOLVE_IN_ROOT), so a
 * symlink in the image can never send a mount or a device node outside it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "child.h"

static int openat2_in_root(int rootfd, const char *path, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    while (*path == '/')
        path++;
    if (*path == '\0')
        path = ".";
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

/* Make sure `path` exists inside the root (as a directory or an empty file) and return an
 * O_PATH fd to it. Missing parents are created as directories. */
static int ensure_in_root(int rootfd, const char *path, int want_dir, struct nerr *e)
{
    char buf[PATH_MAX];
    char *p;
    int fd;

    fd = openat2_in_root(rootfd, path, O_PATH);
    if (fd >= 0)
        return fd;
    if (errno != ENOENT)
        return nerr_sys(e, errno, "resolving %s in the rootfs", path);
    if (strlen(path) >= sizeof(buf))
        return nerr_set(e, ENAMETOOLONG, "resolving %s in the rootfs: path too long", path);
    strcpy(buf, path);
    /* Walk the components, creating each missing one. */
    for (p = buf; *p == '/'; p++)
        ;
    while (*p) {
        char *slash = strchr(p, '/');
        int last = slash == NULL;
        int parent, r;
        char saved = 0;
        if (!last) {
            saved = *slash;
            *slash = '\0';
        }
        fd = openat2_in_root(rootfd, buf, O_PATH);
        if (fd < 0 && errno == ENOENT) {
            char *base = strrchr(buf, '/');
            const char *name;
            if (base) {
                *base = '\0';
                parent = openat2_in_root(rootfd, buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
                *base = '/';
                name = base + 1;
            } else {
                parent = openat2_in_root(rootfd, ".", O_PATH | O_DIRECTORY);
                name = buf;
            }
            if (parent < 0)
                return nerr_sys(e, errno, "creating %s in the rootfs: opening parent", path);
            if (last && !want_dir) {
                r = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                           0644);
                if (r >= 0)
                    close(r);
            } else {
                r = mkdirat(parent, name, 0755);
            }
            close(parent);
            if (r < 0 && errno != EEXIST)
                return nerr_sys(e, errno, "creating %s in the rootfs", path);
            fd = openat2_in_root(rootfd, buf, O_PATH);
        }
        if (fd < 0)
            return nerr_sys(e, errno, "resolving %s in the rootfs", path);
        if (last)
            return fd;
        close(fd);
        *slash = saved;
        p = slash + 1;
        while (*p == '/')
            p++;
    }
    return openat2_in_root(rootfd, path, O_PATH);
}

static void fd_path(char *out, size_t size, int fd)
{
    snprintf(out, size, "/proc/self/fd/%d", fd);
}

static int is_dir_path(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

#define REMOUNT_FLAGS (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | \
                       MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME)

/* A mount's id, or 0. */
static unsigned long long mount_id_of(int fd, int *is_root)
{
    struct statx st;

    if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &st) < 0 || !(st.stx_mask & STATX_MNT_ID))
        return 0;
    *is_root = !(st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) ||
               (st.stx_attributes & STATX_ATTR_MOUNT_ROOT);
    return st.stx_mnt_id;
}

/* Whether top is the root of a mount made directly on what beneath is: its line in
   /proc/self/mountinfo names beneath's mount as its parent and beneath's path as its mount
   point (the mount just made there, the newest on that spot). */
static int is_mounted_on(int beneath, int top)
{
    char link[64], where[PATH_MAX], line[4096 + PATH_MAX];
    unsigned long long under_id, top_id, id, parent;
    int under_root, top_root, found = 0;
    ssize_t n;
    FILE *f;

    under_id = mount_id_of(beneath, &under_root);
    top_id = mount_id_of(top, &top_root);
    if (!under_id || !top_id || under_id == top_id || !top_root)
        return 0;
    fd_path(link, sizeof(link), beneath);
    n = readlink(link, where, sizeof(where) - 1);
    if (n <= 0)
        return 0;
    where[n] = '\0';
    f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        char point[PATH_MAX];
        /* id parent major:minor root mount-point ...; the mount point has \ooo escapes, so
           one with a space, tab, newline or backslash never matches (refused, not wrong). */
        if (sscanf(line, "%llu %llu %*s %*s %4095s", &id, &parent, point) == 3 &&
            id == top_id) {
            found = parent == under_id && strcmp(point, where) == 0;
            break;
        }
    }
    fclose(f);
    return found;
}

static int mount_one(int rootfd, const struct sv_mount *m, struct nerr *e)
{
    char target[64];
    int want_dir = 1, fd, beneath, r;

    if (m->bind && m->source)
        want_dir = is_dir_path(m->source);
    fd = ensure_in_root(rootfd, m->dest, want_dir, e);
    if (fd < 0)
        return nerr_wrap(e, "mount %s", m->dest);
    fd_path(target, sizeof(target), fd);
    if (m->bind)
        r = mount(m->source, target, NULL, MS_BIND | (m->flags & MS_REC), NULL);
    else
        r = mount(m->source ? m->source : m->type, target, m->type,
                  m->flags & ~(unsigned long)MS_REMOUNT, m->data && m->data[0] ? m->data : NULL);
    if (r < 0) {
        int err = errno;
        close(fd);
        return nerr_sys(e, err, "mount %s (%s) on %s", m->source ? m->source : "none",
                        m->type ? m->type : "bind", m->dest);
    }
    if (!(m->bind && (m->flags & REMOUNT_FLAGS)) && !m->propagation) {
        close(fd);
        return 0;
    }
    /* Reopen: the descriptor above is of what lies beneath the new mount, and a remount or
       propagation change through it would reach the mount that holds the destination. */
    beneath = fd;
    fd = openat2_in_root(rootfd, m->dest, O_PATH);  /* looked up only: nothing is made */
    if (fd < 0) {
        int err = errno;
        close(beneath);
        return nerr_sys(e, err, "mount on %s: the destination does not lead to the new mount "
                        "when walked again", m->dest);
    }
    /* The path walked again may lead elsewhere now (a link in the image whose target passes
       through the new mount): it must lead to the new mount, or nothing is changed. */
    r = is_mounted_on(beneath, fd);
    close(beneath);
    if (!r) {
        close(fd);
        return nerr_set(e, EINVAL, "mount on %s: the destination does not lead to the new "
                        "mount when walked again", m->dest);
    }
    fd_path(target, sizeof(target), fd);
    /* A bind mount takes its flags (read-only, nosuid, ...) only from a remount of itself. */
    if (m->bind && (m->flags & REMOUNT_FLAGS) &&
        mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | (m->flags & REMOUNT_FLAGS), NULL) < 0) {
        int err = errno;
        close(fd);
        return nerr_sys(e, err, "remounting %s with its options", m->dest);
    }
    if (m->propagation && mount(NULL, target, NULL, m->propagation, NULL) < 0) {
        int err = errno;
        close(fd);
        return nerr_sys(e, err, "setting propagation of %s", m->dest);
    }
    close(fd);
    return 0;
}

struct default_dev {
    const char *name;
    unsigned maj, min;
};

static const struct default_dev DEFAULT_DEVICES[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
    {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
};

static const char *const DEV_LINKS[][2] = {
    {"fd", "/proc/self/fd"},
    {"stdin", "/proc/self/fd/0"},
    {"stdout", "/proc/self/fd/1"},
    {"stderr", "/proc/self/fd/2"},
    {"ptmx", "pts/ptmx"},
};

/* One node in an open directory. The caller has set the umask to 0, so mknod usually gives
 * the exact permissions; chmod follows only when the node's mode differs (chown clears
 * set-id bits; a default ACL on the directory narrows the mode). */
static int make_node_at(int parent, const char *path, const char *name, char type,
                        unsigned maj, unsigned min, mode_t perm, uid_t uid, gid_t gid,
                        struct nerr *e)
{
    struct stat st;
    mode_t kind;
    int r;

    switch (type) {
    case 'c': case 'u': kind = S_IFCHR; break;
    case 'b': kind = S_IFBLK; break;
    case 'p': kind = S_IFIFO; break;
    default: return nerr_set(e, EINVAL, "device %s: unknown type '%c'", path, type);
    }
    unlinkat(parent, name, 0);
    r = mknodat(parent, name, kind | (perm & 07777), makedev(maj, min));
    if (r == 0)
        r = fchownat(parent, name, uid, gid, AT_SYMLINK_NOFOLLOW);
    if (r == 0 && fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (st.st_mode & 07777) != (perm & 07777)) {
        int nfd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        char p[64];
        if (nfd >= 0) {
            fd_path(p, sizeof(p), nfd);
            r = chmod(p, perm & 07777);
            close(nfd);
        }
    }
    if (r < 0)
        return nerr_sys(e, errno, "creating device %s", path);
    return 0;
}

static int make_node(int rootfd, const char *path, char type, unsigned maj, unsigned min,
                     mode_t perm, uid_t uid, gid_t gid, struct nerr *e)
{
    char parent_path[PATH_MAX];
    const char *base = strrchr(path, '/');
    int parent, r;

    if (!base || strlen(path) >= sizeof(parent_path))
        return nerr_set(e, EINVAL, "device %s: path must be absolute", path);
    memcpy(parent_path, path, (size_t)(base - path));
    parent_path[base - path] = '\0';
    parent = ensure_in_root(rootfd, parent_path[0] ? parent_path : "/", 1, e);
    if (parent < 0)
        return nerr_wrap(e, "device %s", path);
    r = make_node_at(parent, path, base + 1, type, maj, min, perm, uid, gid, e);
    close(parent);
    return r;
}

static int setup_dev(int rootfd, struct spawn_config *cfg, struct nerr *e)
{
    size_t i;
    int devfd;

    if (cfg->default_devices) {
        devfd = ensure_in_root(rootfd, "/dev", 1, e);
        if (devfd < 0)
            return nerr_wrap(e, "opening /dev in the rootfs");
        for (i = 0; i < sizeof(DEFAULT_DEVICES) / sizeof(DEFAULT_DEVICES[0]); i++) {
            char path[32];
            snprintf(path, sizeof(path), "/dev/%s", DEFAULT_DEVICES[i].name);
            if (make_node_at(devfd, path, DEFAULT_DEVICES[i].name, 'c', DEFAULT_DEVICES[i].maj,
                             DEFAULT_DEVICES[i].min, 0666, 0, 0, e) < 0) {
                close(devfd);
                return -1;
            }
        }
        for (i = 0; i < sizeof(DEV_LINKS) / sizeof(DEV_LINKS[0]); i++) {
            if (symlinkat(DEV_LINKS[i][1], devfd, DEV_LINKS[i][0]) < 0 && errno != EEXIST) {
                int err = errno;
                close(devfd);
                return nerr_sys(e, err, "creating /dev/%s", DEV_LINKS[i][0]);
            }
        }
        if (access("/proc/kcore", F_OK) == 0)
            symlinkat("/proc/kcore", devfd, "core");
        close(devfd);
    }
    for (i = 0; i < (size_t)cfg->n_devices; i++) {
        const struct sv_device *d = &cfg->devices[i];
        if (make_node(rootfd, d->path, d->type, (unsigned)d->major, (unsigned)d->minor,
                      (mode_t)d->mode, (uid_t)d->uid, (gid_t)d->gid, e) < 0)
            return -1;
    }
    return 0;
}

int container_prepare_rootfs(struct spawn_config *cfg, struct nerr *e)
{
    unsigned long prop = cfg->root_propagation ? cfg->root_propagation : (MS_SLAVE | MS_REC);
    int rootfd, i;

    /* Nothing we mount from here on may reach the host's mount table. */
    if (mount(NULL, "/", NULL, prop | MS_REC, NULL) < 0)
        return nerr_sys(e, errno, "making / %s", "non-shared");
    for (i = 0; i < cfg->n_rootfs_mounts; i++) {
        const struct sv_mount *m = &cfg->rootfs_mounts[i];
        unsigned long flags = m->flags;
        if (m->bind)
            flags |= MS_BIND;
        if (mount(m->source, cfg->rootfs, m->bind ? NULL : m->type, flags,
                  m->data && m->data[0] ? m->data : NULL) < 0)
            return nerr_sys(e, errno, "mounting rootfs %s (%s) on %s",
                            m->source ? m->source : "", m->type ? m->type : "", cfg->rootfs);
        /* A bind mount ignores ro/nosuid/... until it is remounted with them. */
        if (m->bind && (m->flags & REMOUNT_FLAGS) &&
            mount(NULL, cfg->rootfs, NULL, MS_BIND | MS_REMOUNT | (m->flags & REMOUNT_FLAGS),
                  NULL) < 0)
            return nerr_sys(e, errno, "remounting rootfs %s with its options", cfg->rootfs);
    }
    /* pivot_root needs the new root to be a mount point (rootfs mounts already made it one). */
    if (cfg->n_rootfs_mounts == 0 && mount(cfg->rootfs, cfg->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return nerr_sys(e, errno, "bind-mounting rootfs %s", cfg->rootfs);
    rootfd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return nerr_sys(e, errno, "opening rootfs %s", cfg->rootfs);
    for (i = 0; i < cfg->n_mounts; i++) {
        if (mount_one(rootfd, &cfg->mounts[i], e) < 0) {
            close(rootfd);
            return -1;
        }
    }
    {
        mode_t umask_was = umask(0); /* device nodes get exactly their modes */
        int r = setup_dev(rootfd, cfg, e);
        umask(umask_was);
        if (r < 0) {
            close(rootfd);
            return -1;
        }
    }
    close(rootfd);
    return 0;
}

int container_pivot(struct spawn_config *cfg, struct nerr *e)
{
    int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    int newroot = open(cfg->rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    int r = -1;

    if (oldroot < 0 || newroot < 0) {
        nerr_sys(e, errno, "pivot_root: opening roots");
        goto out;
    }
    if (fchdir(newroot) < 0) {
        nerr_sys(e, errno, "pivot_root: entering %s", cfg->rootfs);
        goto out;
    }
    /* pivot_root(".", ".") stacks the old root on top of the new one; unmount it lazily. */
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        nerr_sys(e, errno, "pivot_root into %s", cfg->rootfs);
        goto out;
    }
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) {
        nerr_sys(e, errno, "pivot_root: making the old root a slave");
        goto out;
    }
    if (umount2(".", MNT_DETACH) < 0) {
        nerr_sys(e, errno, "pivot_root: detaching the old root");
        goto out;
    }
    if (chdir("/") < 0) {
        nerr_sys(e, errno, "pivot_root: chdir /");
        goto out;
    }
    r = 0;
out:
    if (oldroot >= 0)
        close(oldroot);
    if (newroot >= 0)
        close(newroot);
    return r;
}

static int write_sysctl(const char *kv, struct nerr *e)
{
    char path[PATH_MAX];
    const char *eq = strchr(kv, '=');
    size_t klen, i;
    int fd;
    ssize_t n;

    if (!eq || eq == kv)
        return nerr_set(e, EINVAL, "sysctl %s: expected key=value", kv);
    klen = (size_t)(eq - kv);
    if (klen + 11 >= sizeof(path))
        return nerr_set(e, ENAMETOOLONG, "sysctl %s: key too long", kv);
    memcpy(path, "/proc/sys/", 10);
    for (i = 0; i < klen; i++)
        path[10 + i] = kv[i] == '.' ? '/' : kv[i];
    path[10 + klen] = '\0';
    if (strstr(path, "..")) {
        return nerr_set(e, EINVAL, "sysctl %.*s: invalid key", (int)klen, kv);
    }
    fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return nerr_sys(e, errno, "sysctl %.*s", (int)klen, kv);
    n = write(fd, eq + 1, strlen(eq + 1));
    if (n < 0) {
        int err = errno;
        close(fd);
        return nerr_sys(e, err, "sysctl %.*s: writing", (int)klen, kv);
    }
    close(fd);
    return 0;
}

static int readonly_path(const char *path, struct nerr *e)
{
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
        if (errno == ENOENT)
            return 0;
        return nerr_sys(e, errno, "read-only path %s: bind", path);
    }
    if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV |
              MS_NOEXEC | MS_REC, NULL) < 0)
        return nerr_sys(e, errno, "read-only path %s: remount", path);
    return 0;
}

static int masked_path(const char *path, struct nerr *e)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return nerr_sys(e, errno, "masked path %s", path);
    }
    if (S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", path, "tmpfs", MS_RDONLY, NULL) < 0)
            return nerr_sys(e, errno, "masked path %s: tmpfs", path);
    } else if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0) {
        return nerr_sys(e, errno, "masked path %s: bind /dev/null", path);
    }
    return 0;
}

int container_finish(struct spawn_config *cfg, struct nerr *e)
{
    int i;
    for (i = 0; i < cfg->n_sysctls; i++)
        if (write_sysctl(cfg->sysctls[i], e) < 0)
            return -1;
    for (i = 0; i < cfg->n_readonly; i++)
        if (readonly_path(cfg->readonly[i], e) < 0)
            return -1;
    for (i = 0; i < cfg->n_masked; i++)
        if (masked_path(cfg->masked[i], e) < 0)
            return -1;
    if (cfg->root_readonly &&
        mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
        return nerr_sys(e, errno, "remounting / read-only");
    return 0;
}
