/* diff: walk a directory through dir fds (openat/fstatat/readlinkat, never a full path) and
 * write it as a POSIX pax tar stream in sorted order. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tar.h"
#include "tar_header.h"
#include "tar_io.h"
#include "tar_linkmap.h"
#include "tar_pax.h"

#define XATTR_BUF (64u << 10) /* XATTR_LIST_MAX and XATTR_SIZE_MAX on Linux */

struct differ {
    struct tar_out out;
    struct pax_buf pax;
    struct linkmap links;
    char *xnames, *xvalue;
    const char *xsorted[XATTR_BUF / 4]; /* every name has a namespace prefix: >= 4 bytes each */
    int archive_is_file; /* the output is a regular file that might sit inside the tree */
    dev_t archive_dev;
    ino_t archive_ino;
    uint64_t entries;
    char path[PATH_MAX + 1]; /* relative name of the entry being written */
    char link[PATH_MAX];
};

struct name_ref {
    const char *name;
    unsigned char type; /* d_type, DT_UNKNOWN when the filesystem does not say */
};

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct name_ref *)a)->name, ((const struct name_ref *)b)->name);
}

/* All names in a directory except . and .., sorted bytewise; *buf owns the strings. */
static int list_dir(int fd, char **buf, struct name_ref **refs, size_t *count, struct nerr *e)
{
    size_t cap = 32u << 10, len = 0, n = 0, nref = 0;
    char *b = malloc(cap);
    struct name_ref *r = NULL;
    if (!b)
        return nerr_sys(e, ENOMEM, "list directory");
    for (;;) {
        if (cap - len < 4096) {
            char *nb = realloc(b, cap * 2);
            if (!nb)
                goto nomem;
            b = nb;
            cap *= 2;
        }
        ssize_t got = getdents64(fd, b + len, cap - len);
        if (got < 0) {
            int err = errno;
            free(b);
            return nerr_sys(e, err, "getdents64");
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    for (size_t off = 0; off < len; off += ((struct dirent64 *)(b + off))->d_reclen)
        nref++;
    r = malloc((nref ? nref : 1) * sizeof(*r));
    if (!r)
        goto nomem;
    for (size_t off = 0; off < len;) {
        struct dirent64 *de = (struct dirent64 *)(b + off);
        off += de->d_reclen;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        r[n++] = (struct name_ref){de->d_name, de->d_type};
    }
    qsort(r, n, sizeof(*r), by_name);
    *buf = b;
    *refs = r;
    *count = n;
    return 0;
nomem:
    free(b);
    free(r);
    return nerr_sys(e, ENOMEM, "list directory");
}

static int by_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Add a SCHILY.xattr record for each xattr, in name order. fd is the open file, or -1 to go
 * by name through /proc (symlinks and FIFOs, which we do not open). */
static int add_xattrs(struct differ *d, int fd, int dirfd, const char *base, struct nerr *e)
{
    char proc[64 + NAME_MAX], key[sizeof(PAX_XATTR_PREFIX) + XATTR_NAME_MAX];
    const char **names = d->xsorted;
    size_t count = 0;
    ssize_t n;

    if (fd < 0) {
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dirfd, base);
        n = llistxattr(proc, d->xnames, XATTR_BUF);
    } else {
        n = flistxattr(fd, d->xnames, XATTR_BUF);
    }
    if (n < 0)
        return errno == ENOTSUP ? 0 : nerr_sys(e, errno, "listxattr");
    for (ssize_t i = 0; i < n && count < XATTR_BUF / 4; i += (ssize_t)strlen(d->xnames + i) + 1)
        names[count++] = d->xnames + i;
    qsort(names, count, sizeof(*names), by_cstr);
    for (size_t i = 0; i < count; i++) {
        ssize_t v = fd < 0 ? lgetxattr(proc, names[i], d->xvalue, XATTR_BUF)
                           : fgetxattr(fd, names[i], d->xvalue, XATTR_BUF);
        if (v < 0 && errno == ENODATA)
            continue; /* removed since it was listed */
        if (v < 0)
            return nerr_sys(e, errno, "getxattr %s", names[i]);
        if (strchr(names[i], '='))
            return nerr_set(e, EINVAL, "xattr %s: a '=' cannot be stored in a pax record",
                            names[i]);
        snprintf(key, sizeof(key), "%s%s", PAX_XATTR_PREFIX, names[i]);
        if (pax_add(&d->pax, key, d->xvalue, (size_t)v) < 0)
            return nerr_sys(e, ENOMEM, "pax record");
    }
    return 0;
}

static int same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* The pax 'x' block that carries d->pax for the entry that follows. */
static int put_pax(struct differ *d, const char *name, const struct stat *st, struct nerr *e)
{
    struct tar_ustar h;
    char pname[sizeof(h.name) + 1];
    size_t end = strlen(name), start;

    /* Only readers without pax support see this name: "PaxHeaders/<last component>". */
    if (end > 1 && name[end - 1] == '/')
        end--;
    for (start = end; start > 0 && name[start - 1] != '/'; start--)
        ;
    int n = snprintf(pname, sizeof(pname), "PaxHeaders/%.*s", (int)(end - start), name + start);
    memset(&h, 0, sizeof(h));
    memcpy(h.name, pname, (size_t)n < sizeof(h.name) ? (size_t)n : sizeof(h.name));
    tar_put_num(h.mode, sizeof(h.mode), 0644);
    tar_put_num(h.uid, sizeof(h.uid), 0);
    tar_put_num(h.gid, sizeof(h.gid), 0);
    tar_put_num(h.size, sizeof(h.size), d->pax.len);
    tar_put_num(h.mtime, sizeof(h.mtime),
                st->st_mtim.tv_sec > 0 ? (uint64_t)st->st_mtim.tv_sec : 0);
    h.typeflag = TAR_PAX;
    tar_seal(&h);
    if (tout_write(&d->out, &h, sizeof(h), e) < 0 ||
        tout_write(&d->out, d->pax.data, d->pax.len, e) < 0 ||
        tout_zeros(&d->out, TAR_PAD(d->pax.len), e) < 0)
        return -1;
    d->pax.len = 0;
    return 0;
}

/* One entry's header (plus a pax block for whatever ustar cannot hold). d->pax may already
 * hold the entry's xattr records. */
static int put_header(struct differ *d, size_t nlen, char type, const struct stat *st,
                      uint64_t size, const char *link, size_t llen, struct nerr *e)
{
    struct tar_ustar h;
    const char *name = d->path;
    int ok = 0;

    memset(&h, 0, sizeof(h));
    if (tar_put_name(&h, name, nlen) < 0) {
        ok |= pax_add(&d->pax, "path", name, nlen);
        memcpy(h.name, name, sizeof(h.name));
    }
    if (llen > sizeof(h.linkname))
        ok |= pax_add(&d->pax, "linkpath", link, llen);
    memcpy(h.linkname, link, llen < sizeof(h.linkname) ? llen : sizeof(h.linkname));
    tar_put_num(h.mode, sizeof(h.mode), st->st_mode & 07777);
    if (!tar_put_num(h.uid, sizeof(h.uid), st->st_uid))
        ok |= pax_add_u64(&d->pax, "uid", st->st_uid);
    if (!tar_put_num(h.gid, sizeof(h.gid), st->st_gid))
        ok |= pax_add_u64(&d->pax, "gid", st->st_gid);
    if (!tar_put_num(h.size, sizeof(h.size), size))
        ok |= pax_add_u64(&d->pax, "size", size);
    /* The ustar field holds whole non-negative seconds; pax carries the exact value. */
    if (st->st_mtim.tv_sec < 0 ||
        !tar_put_num(h.mtime, sizeof(h.mtime), (uint64_t)st->st_mtim.tv_sec) ||
        st->st_mtim.tv_nsec) {
        if (st->st_mtim.tv_sec < 0)
            tar_put_num(h.mtime, sizeof(h.mtime), 0);
        ok |= pax_add_time(&d->pax, "mtime", &st->st_mtim);
    }
    /* Apply sets atime = mtime when no atime is given, so only a different one is recorded. */
    if (!same_time(&st->st_atim, &st->st_mtim))
        ok |= pax_add_time(&d->pax, "atime", &st->st_atim);
    if (ok < 0)
        return nerr_sys(e, ENOMEM, "pax record");
    tar_put_num(h.devmajor, sizeof(h.devmajor), 0);
    tar_put_num(h.devminor, sizeof(h.devminor), 0);
    h.typeflag = type;
    tar_seal(&h);
    if (d->pax.len && put_pax(d, name, st, e) < 0)
        return -1;
    d->entries++;
    return tout_write(&d->out, &h, sizeof(h), e);
}

static int put_file(struct differ *d, int fd, const struct stat *st, size_t len, struct nerr *e)
{
    if (d->archive_is_file && st->st_dev == d->archive_dev && st->st_ino == d->archive_ino)
        return 0; /* the archive we are writing: archiving it would never end well */
    if (st->st_nlink > 1) {
        const char *first;
        int r = linkmap_get_or_put(&d->links, st->st_dev, st->st_ino, d->path, &first);
        if (r < 0)
            return nerr_sys(e, ENOMEM, "remember hardlink");
        if (r == 1)
            return put_header(d, len, TAR_LNK, st, 0, first, strlen(first), e);
    }
    if (add_xattrs(d, fd, -1, NULL, e) < 0 ||
        put_header(d, len, TAR_REG, st, (uint64_t)st->st_size, "", 0, e) < 0)
        return -1;
    return tout_copy_file(&d->out, fd, (uint64_t)st->st_size, e);
}

static int put_symlink(struct differ *d, int dirfd, const char *base, const struct stat *st,
                       size_t len, struct nerr *e)
{
    ssize_t n = readlinkat(dirfd, base, d->link, sizeof(d->link));
    if (n < 0)
        return nerr_sys(e, errno, "readlinkat");
    if ((size_t)n == sizeof(d->link))
        return nerr_set(e, ENAMETOOLONG, "readlinkat: target longer than PATH_MAX");
    if (add_xattrs(d, -1, dirfd, base, e) < 0)
        return -1;
    return put_header(d, len, TAR_SYM, st, 0, d->link, (size_t)n, e);
}

/* Open a file or directory to read it; O_NONBLOCK keeps a FIFO swapped in from blocking us. */
static int open_entry(int dirfd, const char *base)
{
    int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    int fd = openat(dirfd, base, flags | O_NOATIME); /* reading must not change what we record */
    if (fd < 0 && errno == EPERM)
        fd = openat(dirfd, base, flags); /* O_NOATIME needs ownership or CAP_FOWNER */
    return fd;
}

static int walk(struct differ *d, int dirfd, size_t plen, struct nerr *e);

static int visit(struct differ *d, int dirfd, const struct name_ref *ent, size_t plen,
                 struct nerr *e)
{
    size_t nlen = strlen(ent->name), len = plen + nlen;
    struct stat st;
    int fd = -1, r;

    /* + 1: a directory is written with a trailing '/' */
    if (len + 1 >= PATH_MAX)
        return nerr_set(e, ENAMETOOLONG, "%.*s%.50s: path longer than PATH_MAX",
                        (int)(plen < 200 ? plen : 200), d->path, ent->name);
    memcpy(d->path + plen, ent->name, nlen + 1);
    /* Files and dirs are opened first and fstat'ed, so what we record is what we read. */
    int need_open = ent->type == DT_REG || ent->type == DT_DIR;
    if (!need_open) {
        if (fstatat(dirfd, ent->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            nerr_sys(e, errno, "fstatat");
            goto out;
        }
        need_open = S_ISREG(st.st_mode) || S_ISDIR(st.st_mode);
    }
    if (need_open) {
        fd = open_entry(dirfd, ent->name);
        if (fd < 0 || fstat(fd, &st) < 0) {
            nerr_sys(e, errno, "open");
            goto out;
        }
    }
    switch (st.st_mode & S_IFMT) {
    case S_IFREG:
        r = put_file(d, fd, &st, len, e);
        break;
    case S_IFDIR:
        d->path[len] = '/';
        d->path[len + 1] = '\0';
        if (add_xattrs(d, fd, -1, NULL, e) < 0 ||
            put_header(d, len + 1, TAR_DIR, &st, 0, "", 0, e) < 0)
            goto out;
        r = walk(d, fd, len + 1, e);
        close(fd);
        return r; /* errors below this directory already name their own entry */
    case S_IFLNK:
        r = put_symlink(d, dirfd, ent->name, &st, len, e);
        break;
    case S_IFIFO:
        r = add_xattrs(d, -1, dirfd, ent->name, e);
        if (r == 0)
            r = put_header(d, len, TAR_FIFO, &st, 0, "", 0, e);
        break;
    case S_IFSOCK:
        r = 0; /* a socket is only meaningful while its server runs; GNU tar skips them too */
        break;
    default:
        r = nerr_set(e, ENOTSUP, "device node: not archived (apply refuses device nodes)");
        break;
    }
    if (fd >= 0)
        close(fd);
    return r < 0 ? nerr_wrap(e, "%s", d->path) : 0;
out:
    if (fd >= 0)
        close(fd);
    return nerr_wrap(e, "%s", d->path);
}

static int walk(struct differ *d, int dirfd, size_t plen, struct nerr *e)
{
    char *buf = NULL;
    struct name_ref *refs = NULL;
    size_t n = 0;
    int r = 0;

    if (list_dir(dirfd, &buf, &refs, &n, e) < 0)
        return plen ? nerr_wrap(e, "%.*s", (int)plen, d->path) : -1;
    for (size_t i = 0; i < n && r == 0; i++)
        r = visit(d, dirfd, &refs[i], plen, e);
    free(refs);
    free(buf);
    return r;
}

int tar_diff(int dirfd, int out_fd, struct tar_counts *counts, struct nerr *e)
{
    struct differ *d = calloc(1, sizeof(*d));
    struct stat st;
    int root = -1, r = -1;

    nerr_clear(e);
    if (!d)
        return nerr_sys(e, ENOMEM, "tar diff");
    d->xnames = malloc(XATTR_BUF);
    d->xvalue = malloc(XATTR_BUF);
    if (!d->xnames || !d->xvalue) {
        nerr_sys(e, ENOMEM, "tar diff");
        goto done;
    }
    if (fstat(out_fd, &st) < 0) {
        nerr_sys(e, errno, "tar diff: fstat archive");
        goto done;
    }
    d->archive_is_file = S_ISREG(st.st_mode);
    d->archive_dev = st.st_dev;
    d->archive_ino = st.st_ino;
    /* Our own fd for the root, so the caller's fd offset is not consumed by getdents. */
    root = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        nerr_sys(e, errno, "tar diff: open source directory");
        goto done;
    }
    if (tout_open(&d->out, out_fd, e) < 0)
        goto done;
    if (walk(d, root, 0, e) < 0 || tout_zeros(&d->out, 2 * TAR_BLOCK, e) < 0 ||
        tout_flush(&d->out, e) < 0) {
        nerr_wrap(e, "tar diff");
        goto done;
    }
    if (counts) {
        counts->entries = d->entries;
        counts->bytes = d->out.total;
    }
    r = 0;
done:
    if (root >= 0)
        close(root);
    tout_close(&d->out);
    pax_buf_free(&d->pax);
    linkmap_free(&d->links);
    free(d->xnames);
    free(d->xvalue);
    free(d);
    return r;
}
