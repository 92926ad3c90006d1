/* Encoding and decoding of protocol packets (see supervisor_proto.h). */
#ifndef SV_WIRE_H
#define SV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "nerr.h"
#include "supervisor_proto.h"

struct sv_field {
    uint16_t tag;
    uint32_t len;
    const uint8_t *val;
};

struct sv_iter {
    const uint8_t *p;
    const uint8_t *end;
};

void sv_iter_init(struct sv_iter *it, const void *payload, size_t len);
/* 1: a field was read; 0: end; -1: malformed payload. */
int sv_iter_next(struct sv_iter *it, struct sv_field *f);
uint64_t sv_field_u64(const struct sv_field *f);

/* A growable output buffer holding one packet (header first). */
struct sv_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    int failed; /* out of memory: the packet is not sent */
};

void sv_buf_start(struct sv_buf *b, uint16_t type, uint32_t id);
void sv_put_u64(struct sv_buf *b, uint16_t tag, uint64_t v);
void sv_put_bytes(struct sv_buf *b, uint16_t tag, const void *p, size_t n);
void sv_put_str(struct sv_buf *b, uint16_t tag, const char *s);
size_t sv_nest_begin(struct sv_buf *b, uint16_t tag);
void sv_nest_end(struct sv_buf *b, size_t mark);
void sv_buf_free(struct sv_buf *b);

/* Send the packet in b with optional fds. Returns 0 or -1 with e set. */
int sv_send(int sock, struct sv_buf *b, const int *fds, int nfds, struct nerr *e);

/* A received packet: header, payload and the fds that came with it (owned by the caller). */
struct sv_packet {
    struct sv_header hdr;
    uint8_t *payload;
    int fds[SV_MAX_FDS];
    int nfds;
};

/* Receive one packet into pkt (payload points into buf of SV_MAX_PACKET bytes).
 * Returns 1 on a packet, 0 on orderly close, -1 on error (EAGAIN included) with e set. */
int sv_recv(int sock, uint8_t *buf, struct sv_packet *pkt, struct nerr *e);

/* Take fd number `index` out of the packet (it is then the caller's to close); -1 if absent. */
int sv_take_fd(struct sv_packet *pkt, uint64_t index);
void sv_close_fds(struct sv_packet *pkt);

#endif
