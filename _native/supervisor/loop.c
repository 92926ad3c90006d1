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

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
