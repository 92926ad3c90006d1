/* The supervisor's one epoll set. */
#include <sys/epoll.h>
#include <time.h>

#include "supervisor.h"

int sv_epoll = -1;

int loop_add(int fd, uint32_t events, struct watch *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(sv_epoll, EPOLL_CTL_ADD, fd, &ev);
}

int loop_mod(int fd, uint32_t events, struct watch *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(sv_epoll, EPOLL_CTL_MOD, fd, &ev);
}

void loop_del(int fd)
{
    epoll_ctl(sv_epoll, EPOLL_CTL_DEL, fd, NULL);
}

static int64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Wall-clock time, for what is reported (exit times). */
int64_t now_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

/* For deadlines: a step of the wall clock neither stretches nor cuts them. */
int64_t mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}
