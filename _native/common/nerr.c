#include "nerr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int nerr_set(struct nerr *e, int code, const char *fmt, ...)
{
    va_list ap;
    if (!e)
        return -1;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

int nerr_sys(struct nerr *e, int code, const char *fmt, ...)
{
    va_list ap;
    size_t n;
    if (!e)
        return -1;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    n = strlen(e->msg);
    if (n < sizeof(e->msg))
        snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(code));
    return -1;
}

int nerr_wrap(struct nerr *e, const char *fmt, ...)
{
    char prefix[NERR_MSG_MAX];
    char inner[NERR_MSG_MAX];
    va_list ap;
    if (!e)
        return -1;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(inner, e->msg, sizeof(inner));
    snprintf(e->msg, sizeof(e->msg), "%.200s: %.300s", prefix, inner);
    return -1;
}

void nerr_clear(struct nerr *e)
{
    if (e) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}
