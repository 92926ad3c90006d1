/* One error convention for all native code: errno plus a message naming the step that failed.
 * Functions return -1 (or NULL) and fill a struct nerr; callers add context with nerr_wrap. */
#ifndef TASKAGENT_NERR_H
#define TASKAGENT_NERR_H

#include <stddef.h>

#define NERR_MSG_MAX 512

struct nerr {
    int code;                 /* errno value, 0 when unset */
    char msg[NERR_MSG_MAX];   /* "step: detail" for a person to act on */
};

/* Record code and a formatted message; always returns -1 so callers can `return nerr_set(...)`. */
int nerr_set(struct nerr *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Like nerr_set, with strerror(code) appended as ": <text>". */
int nerr_sys(struct nerr *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix the existing message with more context ("outer: inner"); returns -1. */
int nerr_wrap(struct nerr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void nerr_clear(struct nerr *e);

#endif
