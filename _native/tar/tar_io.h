/* Buffered tar streams over plain fds: a writer for diff and a reader for apply. Both work on
 * pipes (no seeking, non-blocking fds are waited on with poll) and move file data in the kernel
 * (sendfile, splice, copy_file_range) when the fds allow it. */
#ifndef TASKAGENT_TAR_IO_H
#define TASKAGENT_TAR_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "nerr.h"

struct tar_out {
    int fd;
    int direct;      /* sendfile into fd still believed to work */
    char *buf;
    size_t cap, len;
    uint64_t total;  /* bytes of archive produced so far */
};

int tout_open(struct tar_out *o, int fd, struct nerr *e);
void tout_close(struct tar_out *o);
int tout_write(struct tar_out *o, const void *p, size_t n, struct nerr *e);
int tout_zeros(struct tar_out *o, size_t n, struct nerr *e);
int tout_flush(struct tar_out *o, struct nerr *e);
/* Append exactly size bytes read from fd's current offset, then the block padding. A file that
 * ends early is an error (the header already promised size bytes). */
int tout_copy_file(struct tar_out *o, int fd, uint64_t size, struct nerr *e);

enum tar_in_kind { TIN_OTHER, TIN_PIPE, TIN_FILE };

struct tar_in {
    int fd;
    enum tar_in_kind kind;
    int direct;           /* splice/copy_file_range from fd still believed to work */
    char *buf;
    size_t cap, pos, len; /* unread bytes are buf[pos..len) */
    uint64_t offset;      /* stream offset of buf[pos], for messages */
};

int tin_open(struct tar_in *in, int fd, struct nerr *e);
void tin_close(struct tar_in *in);
/* Make n bytes (n <= cap) readable at buf + pos. Returns how many are, fewer only at end of
 * stream, or -1 on a read error. */
ssize_t tin_fill(struct tar_in *in, size_t n, struct nerr *e);
void tin_consume(struct tar_in *in, size_t n);
/* Read exactly n bytes into dst; the end of the stream before that is an error. */
int tin_read(struct tar_in *in, void *dst, size_t n, struct nerr *e);
/* Move exactly n bytes of the stream into out_fd at its current offset. */
int tin_copy(struct tar_in *in, int out_fd, uint64_t n, struct nerr *e);
int tin_skip(struct tar_in *in, uint64_t n, struct nerr *e);
/* Read and drop whatever follows the end of the archive, so a producer on the other end of a
 * pipe never sees EPIPE for its trailing padding. */
int tin_drain(struct tar_in *in, struct nerr *e);

#endif
