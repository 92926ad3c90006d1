#include "tar_extract.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tar_header.h"

void extract_init(struct extractor *x, int root)
{
    memset(x, 0, sizeof(*x));
    beneath_init(&x->at, root);
    x->set_owner = geteuid() == 0;
}

void extract_free(struct extractor *x)
{
    for (size_t i = 0; i < x->ndirs; i++)
        free(x->dirs[i].path);
    free(x->dirs);
    x->dirs = NULL;
    x->ndirs = x->dcap = 0;
    beneath_close(&x->at);
}

/* Make room for a new entry at parent/base: whatever is there (file, symlink, empty dir) goes.
 * Only the name is removed; a symlink's target is never touched. */
static int remove_existing(struct extractor *x, int parent, const char *base, struct nerr *e)
{
    x->removed = 1;
    if (unlinkat(parent, base, 0) == 0)
        return 0;
    if (errno == EISDIR && unlinkat(parent, base, AT_REMOVEDIR) == 0)
        return 0;
    return nerr_sys(e, errno, "remove existing %s", base);
}

/* Path of parent/base for the *xattr calls that have no dir-fd form in glibc: /proc resolves
 * the fd itself, and l*xattr does not follow base. */
static void proc_path(char *out, size_t n, int parent, const char *base)
{
    snprintf(out, n, "/proc/self/fd/%d/%s", parent, base);
}

/* xattrs onto fd, or by name (fd < 0) onto parent/base without following it. */
static int set_xattrs(const struct tar_entry *ent, int fd, int parent, const char *base,
                      struct nerr *e)
{
    char proc[64 + NAME_MAX];
    if (fd < 0)
        proc_path(proc, sizeof(proc), parent, base);
    for (int g = 0; g < 2; g++) {
        for (size_t i = 0; i < ent->nxattrs[g]; i++) {
            const struct pax_xattr *xa = &ent->xattrs[g][i];
            int r = fd >= 0 ? fsetxattr(fd, xa->name, xa->value, xa->len, 0)
                            : lsetxattr(proc, xa->name, xa->value, xa->len, 0);
            if (r < 0)
                return nerr_sys(e, errno, "setxattr %.100s", xa->name);
        }
    }
    return 0;
}

/* Owner, xattrs, mode and times on an open file, in that order: chown clears setuid bits and
 * file capabilities, so the mode and the xattrs come after it. */
static int set_meta_fd(struct extractor *x, const struct tar_entry *ent, int fd, int times,
                       struct nerr *e)
{
    struct timespec ts[2] = {ent->atime, ent->mtime};
    if (x->set_owner && fchown(fd, ent->uid, ent->gid) < 0)
        return nerr_sys(e, errno, "fchown");
    if (set_xattrs(ent, fd, -1, NULL, e) < 0)
        return -1;
    if (!times) /* directories: mode and times come last, in extract_finish */
        return 0;
    if (fchmod(fd, ent->mode) < 0)
        return nerr_sys(e, errno, "fchmod");
    if (futimens(fd, ts) < 0)
        return nerr_sys(e, errno, "futimens");
    return 0;
}

static int make_file(struct extractor *x, const struct tar_entry *ent, struct tar_in *in,
                     int parent, const char *base, struct nerr *e)
{
    /* O_EXCL|O_NOFOLLOW: we only ever write a file we just created, never an existing one
     * (which could be a hardlink to something we must not change) or a symlink's target. */
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(parent, base, flags, 0600);
    if (fd < 0 && errno == EEXIST) {
        if (remove_existing(x, parent, base, e) < 0)
            return -1;
        fd = openat(parent, base, flags, 0600);
    }
    if (fd < 0)
        return nerr_sys(e, errno, "create file");
    int r = tin_copy(in, fd, ent->size, e);
    if (r == 0)
        r = set_meta_fd(x, ent, fd, 1, e);
    close(fd);
    return r;
}

static int defer_dir(struct extractor *x, const struct tar_entry *ent, const char *path,
                     struct nerr *e)
{
    if (x->ndirs == x->dcap) {
        size_t cap = x->dcap ? x->dcap * 2 : 64;
        struct dir_fixup *d = realloc(x->dirs, cap * sizeof(*d));
        if (!d)
            return nerr_sys(e, ENOMEM, "remember directory");
        x->dirs = d;
        x->dcap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return nerr_sys(e, ENOMEM, "remember directory");
    x->dirs[x->ndirs++] = (struct dir_fixup){copy, ent->mode, {ent->atime, ent->mtime}};
    return 0;
}

static int make_dir(struct extractor *x, const struct tar_entry *ent, size_t len, struct nerr *e)
{
    const char *base;
    int fd;
    if (len == 0) {
        fd = beneath_open(&x->at, "", O_RDONLY | O_DIRECTORY, e); /* "./": the target itself */
    } else {
        int parent = beneath_parent(&x->at, x->name, len, &base, e);
        if (parent < 0)
            return -1;
        if (mkdirat(parent, base, 0700) < 0) {
            struct stat st;
            if (errno != EEXIST)
                return nerr_sys(e, errno, "mkdirat");
            if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return nerr_sys(e, errno, "fstatat");
            /* An existing directory is kept (and updated); anything else is replaced. */
            if (!S_ISDIR(st.st_mode)) {
                if (remove_existing(x, parent, base, e) < 0)
                    return -1;
                if (mkdirat(parent, base, 0700) < 0)
                    return nerr_sys(e, errno, "mkdirat");
            }
        }
        fd = openat(parent, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            nerr_sys(e, errno, "open directory");
    }
    if (fd < 0)
        return -1;
    int r = set_meta_fd(x, ent, fd, 0, e);
    close(fd);
    return r < 0 ? -1 : defer_dir(x, ent, x->name, e);
}

/* Owner, xattrs, (mode,) times by name, never following base: symlinks and FIFOs. */
static int set_meta_at(struct extractor *x, const struct tar_entry *ent, int parent,
                       const char *base, int chmod_too, struct nerr *e)
{
    struct timespec ts[2] = {ent->atime, ent->mtime};
    if (x->set_owner && fchownat(parent, base, ent->uid, ent->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return nerr_sys(e, errno, "fchownat");
    if (set_xattrs(ent, -1, parent, base, e) < 0)
        return -1;
    /* NOFOLLOW (glibc goes through an O_PATH fd): even if someone swapped base for a symlink
     * meanwhile, the mode never lands on what it points to. */
    if (chmod_too && fchmodat(parent, base, ent->mode, AT_SYMLINK_NOFOLLOW) < 0)
        return nerr_sys(e, errno, "fchmodat");
    if (utimensat(parent, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return nerr_sys(e, errno, "utimensat");
    return 0;
}

static int make_symlink(struct extractor *x, const struct tar_entry *ent, int parent,
                        const char *base, struct nerr *e)
{
    if (symlinkat(ent->linkraw, parent, base) < 0) {
        if (errno != EEXIST)
            return nerr_sys(e, errno, "symlinkat");
        if (remove_existing(x, parent, base, e) < 0)
            return -1;
        if (symlinkat(ent->linkraw, parent, base) < 0)
            return nerr_sys(e, errno, "symlinkat");
    }
    return set_meta_at(x, ent, parent, base, 0, e);
}

static int make_fifo(struct extractor *x, const struct tar_entry *ent, int parent,
                     const char *base, struct nerr *e)
{
    if (mknodat(parent, base, S_IFIFO | 0600, 0) < 0) {
        if (errno != EEXIST)
            return nerr_sys(e, errno, "mknodat");
        if (remove_existing(x, parent, base, e) < 0)
            return -1;
        if (mknodat(parent, base, S_IFIFO | 0600, 0) < 0)
            return nerr_sys(e, errno, "mknodat");
    }
    return set_meta_at(x, ent, parent, base, 1, e);
}

/* A hardlink may only point at a regular file inside the target: its name is cleaned like any
 * other, its parent resolved beneath the target, and the link itself is not followed. */
static int clean_link(struct extractor *x, const struct tar_entry *ent, struct nerr *e)
{
    int llen = tar_clean_name(ent->linkraw, x->link, e);
    if (llen < 0)
        return nerr_wrap(e, "hardlink target \"%.100s\"", ent->linkraw);
    if (llen == 0)
        return nerr_set(e, EPERM, "hardlink to the target directory refused");
    return llen;
}

/* x->link holds the cleaned target name (llen bytes), checked before anything was created. */
static int make_hardlink(struct extractor *x, const struct tar_entry *ent, size_t len,
                         size_t llen, int parent, const char *base, struct nerr *e)
{
    struct stat st;
    if (llen == len && memcmp(x->link, x->name, len) == 0)
        return 0; /* a link to itself: already there */
    char *slash = strrchr(x->link, '/');
    const char *lbase = slash ? slash + 1 : x->link;
    int lparent = x->at.root;
    if (slash) {
        *slash = '\0';
        lparent = beneath_open(&x->at, x->link, O_PATH | O_DIRECTORY, e);
        *slash = '/';
        if (lparent < 0)
            return nerr_wrap(e, "hardlink target \"%.100s\"", ent->linkraw);
    }
    int r = -1;
    if (fstatat(lparent, lbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
        nerr_sys(e, errno, "hardlink target \"%.100s\"", ent->linkraw);
    else if (!S_ISREG(st.st_mode))
        nerr_set(e, EPERM, "hardlink target \"%.100s\" is not a regular file; refused",
                 ent->linkraw);
    else if (linkat(lparent, lbase, parent, base, 0) == 0)
        r = 0;
    else if (errno != EEXIST)
        nerr_sys(e, errno, "linkat");
    else if (remove_existing(x, parent, base, e) == 0) {
        if (linkat(lparent, lbase, parent, base, 0) == 0)
            r = 0;
        else
            nerr_sys(e, errno, "linkat");
    }
    if (lparent != x->at.root)
        close(lparent);
    return r;
}

int extract_entry(struct extractor *x, const struct tar_entry *ent, struct tar_in *in,
                  struct nerr *e)
{
    const char *base;
    int len, llen = 0, parent, r;

    /* Everything that can be refused is refused before anything is created. */
    switch (ent->type) {
    case TAR_CHR:
    case TAR_BLK:
        return nerr_set(e, EPERM, "device node refused");
    case TAR_REG:
    case TAR_AREG:
    case TAR_CONT:
    case TAR_SYM:
    case TAR_LNK:
    case TAR_FIFO:
    case TAR_DIR:
        break;
    default:
        return nerr_set(e, ENOTSUP, "entry type '%c' is not supported", ent->type);
    }
    len = tar_clean_name(ent->raw, x->name, e);
    if (len < 0)
        return -1;
    if (len == 0 && ent->type != TAR_DIR)
        return nerr_set(e, EPERM, "only a directory may name the target itself");
    if (ent->type == TAR_LNK && (llen = clean_link(x, ent, e)) < 0)
        return -1;
    /* A symlink's target is data: it may point anywhere, since nothing is written through it. */
    if (ent->type == TAR_SYM && !ent->linkraw[0])
        return nerr_set(e, EINVAL, "symlink with an empty target");
    if (ent->type == TAR_SYM && strnlen(ent->linkraw, PATH_MAX) >= PATH_MAX)
        return nerr_set(e, ENAMETOOLONG, "symlink target of PATH_MAX bytes or more refused");
    x->removed = 0;
    if (ent->type == TAR_DIR) {
        r = make_dir(x, ent, (size_t)len, e);
        goto out;
    }
    parent = beneath_parent(&x->at, x->name, (size_t)len, &base, e);
    if (parent < 0)
        return -1;
    switch (ent->type) {
    case TAR_REG:
    case TAR_AREG:
    case TAR_CONT:
        r = make_file(x, ent, in, parent, base, e);
        break;
    case TAR_SYM:
        r = make_symlink(x, ent, parent, base, e);
        break;
    case TAR_LNK:
        r = make_hardlink(x, ent, (size_t)len, (size_t)llen, parent, base, e);
        break;
    default: /* TAR_FIFO; the other types were turned away above */
        /* Allowed: a FIFO is harmless until someone opens it, and containers use them. */
        r = make_fifo(x, ent, parent, base, e);
        break;
    }
out:
    if (x->removed)
        beneath_forget(&x->at); /* after the last use of parent, which it may own */
    return r;
}

int extract_finish(struct extractor *x, struct nerr *e)
{
    /* In archive order, so a directory listed twice ends with its last entry's values. */
    for (size_t i = 0; i < x->ndirs; i++) {
        struct dir_fixup *d = &x->dirs[i];
        int fd = beneath_open(&x->at, d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, e);
        if (fd < 0) {
            /* Replaced by a later entry (a file, a symlink) or removed: nothing to fix. */
            if (e->code == ENOENT || e->code == ENOTDIR || e->code == ELOOP) {
                nerr_clear(e);
                continue;
            }
            return nerr_wrap(e, "directory \"%.150s\"", d->path);
        }
        int r = fchmod(fd, d->mode) < 0 ? nerr_sys(e, errno, "fchmod")
                : futimens(fd, d->times) < 0 ? nerr_sys(e, errno, "futimens") : 0;
        close(fd);
        if (r < 0)
            return nerr_wrap(e, "directory \"%.150s\"", d->path);
    }
    return 0;
}
