/* The 512-byte ustar header block: numeric fields, name splitting and checksums. */
#ifndef TASKAGENT_TAR_HEADER_H
#define TASKAGENT_TAR_HEADER_H

#include <stddef.h>
#include <stdint.h>

#define TAR_BLOCK 512

/* Round a data size up to whole blocks (the padding that follows every entry's data). */
#define TAR_PAD(n) ((TAR_BLOCK - ((n) % TAR_BLOCK)) % TAR_BLOCK)

/* Type flags we write or read. */
#define TAR_REG '0'
#define TAR_AREG '\0' /* pre-POSIX regular file */
#define TAR_LNK '1'
#define TAR_SYM '2'
#define TAR_CHR '3'
#define TAR_BLK '4'
#define TAR_DIR '5'
#define TAR_FIFO '6'
#define TAR_CONT '7'   /* contiguous file: a regular file everywhere that matters */
#define TAR_PAX 'x'    /* POSIX extended header for the next entry */
#define TAR_GPAX 'g'   /* POSIX extended header for all following entries */
#define TAR_GNU_LONGNAME 'L'
#define TAR_GNU_LONGLINK 'K'

struct tar_ustar {
    char name[100];
    char mode[8];
    char uid[8];
    char gid[8];
    char size[12];
    char mtime[12];
    char chksum[8];
    char typeflag;
    char linkname[100];
    char magic[6];
    char version[2];
    char uname[32];
    char gname[32];
    char devmajor[8];
    char devminor[8];
    char prefix[155];
    char pad[12];
};

_Static_assert(sizeof(struct tar_ustar) == TAR_BLOCK, "ustar header is one block");

/* Store v in a numeric field: NUL-terminated octal when it fits, base-256 otherwise (GNU and
 * every modern reader understand it). Returns 1 when octal fitted, 0 when base-256 was used so
 * the writer knows to add a PAX record for portable readers. */
int tar_put_num(char *field, size_t len, uint64_t v);

/* Parse an octal (space/NUL padded) or positive base-256 field. Returns -1 if malformed. */
int tar_get_num(const char *field, size_t len, uint64_t *v);

/* A time field, which GNU writes in negative base-256 for times before 1970. */
int tar_get_time(const char *field, size_t len, int64_t *v);

/* Place name (len bytes) into name/prefix. Returns 0, or -1 when it cannot fit (use PAX). */
int tar_put_name(struct tar_ustar *h, const char *name, size_t len);

/* Copy the name out of a header (prefix "/" name) into out (at least 257 bytes); returns length. */
size_t tar_get_name(const struct tar_ustar *h, char *out);

/* Fill magic and version (POSIX "ustar\0" "00") and the checksum; call last. */
void tar_seal(struct tar_ustar *h);

/* 0 when the checksum matches (unsigned, or the historic signed sum) and the magic is ustar
 * (POSIX or GNU); -1 for a bad checksum, -2 for a missing magic. */
int tar_verify(const struct tar_ustar *h);

/* 1 if all 512 bytes are zero (an end-of-archive block). */
int tar_is_zero_block(const void *block);

#endif
