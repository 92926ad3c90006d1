/* A minimal protobuf writer: exactly what the cgroups Metrics messages need (varint scalars,
 * strings, nested messages, packed uint64) and nothing else. Output is canonical proto3, as
 * Go's and Python's serializers write it: fields in the order the caller writes them (callers
 * go by ascending field number), zero scalars and empty strings left out. */
#ifndef TASKAGENT_CGSTATS_PB_H
#define TASKAGENT_CGSTATS_PB_H

#include <stddef.h>
#include <stdint.h>

struct pb {
    uint8_t *p;
    size_t len;
    size_t cap;
    int oom; /* an allocation failed: the bytes are incomplete and must not be used */
};

void pb_init(struct pb *b);
void pb_free(struct pb *b);

/* Hand the buffer to the caller (who frees it) and leave b empty. */
uint8_t *pb_take(struct pb *b, size_t *len);

/* A uint64 field (wire type 0); zero is not written, as proto3 does. */
void pb_uint(struct pb *b, uint32_t field, uint64_t v);

/* A string/bytes field (wire type 2); empty is not written. */
void pb_str(struct pb *b, uint32_t field, const char *s, size_t n);

/* Start a length-delimited field (a sub-message or a packed run); write its content, then
 * pb_end(b, mark). Unlike scalars, an empty sub-message is written: a set message field is
 * "present" even when empty, and containerd's clients check presence. */
size_t pb_begin(struct pb *b, uint32_t field);
void pb_end(struct pb *b, size_t mark);

/* Cut the output back to `len` bytes (undo a field that turned out empty). */
void pb_truncate(struct pb *b, size_t len);

/* A bare varint, for the elements of a packed run between pb_begin and pb_end. */
void pb_varint(struct pb *b, uint64_t v);

#endif
