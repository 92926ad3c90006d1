/* Reading cgroup files: one open + read into a caller's buffer, no allocation on the usual
 * path, and the small parsers the stat files need ("N", "max", "key N" lines). */
#ifndef TASKAGENT_CGSTATS_CGFILE_H
#define TASKAGENT_CGSTATS_CGFILE_H

#include <stddef.h>
#include <stdint.h>

#include "nerr.h"

/* A worker's scratch buffer: starts as the worker's stack array and moves to the heap only
 * for a file that does not fit (a blkio file on a host with hundreds of disks, say). */
struct cgbuf {
    char *p;
    size_t cap;
    int heap;
};

void cgbuf_init(struct cgbuf *b, char *stack, size_t cap);
void cgbuf_free(struct cgbuf *b);

/* Results of the readers besides -1 (an error, in the nerr). */
enum {
    CGF_OK = 0,
    CGF_MISSING = 1, /* ENOENT or ENODEV: the file is not there, or its cgroup was removed */
};

/* Open the cgroup directory `dir` for openat; CGF_MISSING when it does not exist. */
int cgf_open_dir(const char *dir, int *fd, struct nerr *e);

/* Is `dir` gone? Decides whether a missing required file means "the task ended" (the whole
 * directory went away) or a real error (the directory is there, the file is not). */
int cgf_dir_gone(const char *dir);

/* Read the file `name` in the directory open as dirfd (`dir` names it in messages) whole
 * into b, NUL-terminated, its length in *len. */
int cgf_read(int dirfd, const char *dir, const char *name, struct cgbuf *b, size_t *len,
             struct nerr *e);

/* A file holding one number, or "max" (stored as if_max). */
int cgf_read_u64(int dirfd, const char *dir, const char *name, struct cgbuf *b, uint64_t if_max,
                 uint64_t *v, struct nerr *e);

/* Parse a decimal number at *pp (blanks before it skipped) and advance *pp past it. As
 * containerd, a negative number reads as 0. Returns 0, or -1 when there is no number or it
 * does not fit 64 bits. */
int cgf_parse_u64(const char **pp, const char *end, uint64_t *v);

/* A key of a "key value" file and the message field its value goes to. */
struct cgf_key {
    const char *name;
    uint8_t len;
    uint8_t field;
};
#define CGF_KEY(name, field) { name, sizeof(name) - 1, field }

/* The entry for key k (klen bytes), or NULL. *hint (start at 0) carries the position of the
 * last match from one call to the next. */
const struct cgf_key *cgf_find_key(const struct cgf_key *keys, size_t nkeys, size_t *hint,
                                   const char *k, size_t klen);

/* Parse the "key value" lines of s: vals[field] = value for each key in keys; other keys are
 * skipped (kernels add keys over time). Returns 0, or -1 with EINVAL when a known key's
 * value is not a number (dir/name, the file, is named in the message). */
int cgf_parse_kv(const char *s, size_t len, const struct cgf_key *keys, size_t nkeys,
                 uint64_t *vals, const char *dir, const char *name, struct nerr *e);

#endif
