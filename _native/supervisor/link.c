/* The connection to the agent: one at a time (a new agent replaces the old link), replies
 * and exit events queued when the socket is full so that the loop never blocks on it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "supervisor.h"

struct queued {
    struct queued *next;
    size_t len;
    uint8_t data[];
};

static int client = -1;
static uint64_t conn_id;
static struct watch w_client = {.kind = W_CLIENT};
static struct queued *q_head, *q_tail;
static size_t q_bytes;

/* An agent that stops reading for this long a backlog is dropped; it re-syncs with LIST. */
#define MAX_QUEUED (64u << 20)

uint64_t link_conn(void)
{
    return client >= 0 ? conn_id : 0;
}

static void drop_client(void)
{
    struct queued *q;
    if (client >= 0) {
        loop_del(client);
        close(client);
        client = -1;
    }
    while ((q = q_head)) {
        q_head = q->next;
        free(q);
    }
    q_tail = NULL;
    q_bytes = 0;
}

/* The agent went away. With processes held we wait for the next one; with none there is
 * nothing to keep, and the next agent simply starts a new supervisor. */
static void agent_gone(void)
{
    drop_client();
    if (proc_count() == 0)
        sv_shutdown_requested = 1;
}

void link_accept(int listen_fd)
{
    int fd;
    while ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        /* Only root may drive the supervisor (the socket is private too). */
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != 0) {
            close(fd);
            continue;
        }
        drop_client();
        client = fd;
        conn_id++;
        loop_add(client, EPOLLIN, &w_client);
    }
}

void link_flush(void)
{
    while (q_head && client >= 0) {
        ssize_t n = send(client, q_head->data, q_head->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                loop_mod(client, EPOLLIN | EPOLLOUT, &w_client);
                return;
            }
            drop_client();
            return;
        }
        q_bytes -= q_head->len;
        {
            struct queued *done = q_head;
            q_head = done->next;
            if (!q_head)
                q_tail = NULL;
            free(done);
        }
    }
    if (client >= 0)
        loop_mod(client, EPOLLIN, &w_client);
}

void link_send(struct sv_buf *b)
{
    struct queued *q;
    uint32_t len;
    if (client < 0 || b->failed)
        return;
    len = (uint32_t)(b->len - sizeof(struct sv_header));
    memcpy(b->data + offsetof(struct sv_header, length), &len, 4);
    if (!q_head) {
        ssize_t n = send(client, b->data, b->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
            drop_client();
            return;
        }
    }
    if (q_bytes + b->len > MAX_QUEUED) {
        fprintf(stderr, "supervisor: agent is not reading; dropping its connection\n");
        drop_client();
        return;
    }
    q = malloc(sizeof(*q) + b->len);
    if (!q) {
        drop_client();
        return;
    }
    q->next = NULL;
    q->len = b->len;
    memcpy(q->data, b->data, b->len);
    if (q_tail)
        q_tail->next = q;
    else
        q_head = q;
    q_tail = q;
    q_bytes += b->len;
    loop_mod(client, EPOLLIN | EPOLLOUT, &w_client);
}

void link_reply_error(uint32_t id, int code, const char *msg)
{
    struct sv_buf b = {0};
    sv_buf_start(&b, SV_REPLY, id);
    sv_put_u64(&b, T_ERRNO, (uint64_t)(code ? code : EIO));
    sv_put_str(&b, T_ERRMSG, msg);
    link_send(&b);
    sv_buf_free(&b);
}

void link_on_event(uint32_t events)
{
    struct sv_packet pkt;
    struct nerr e;
    if (client < 0)
        return;
    if (events & EPOLLOUT)
        link_flush();
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        int r;
        if (client < 0)
            return;
        r = sv_recv(client, sv_recv_buf, &pkt, &e);
        if (r == 0) {
            agent_gone();
            return;
        }
        if (r < 0) {
            if (e.code == EAGAIN || e.code == EWOULDBLOCK)
                return;
            fprintf(stderr, "supervisor: %s; dropping the agent connection\n", e.msg);
            agent_gone();
            return;
        }
        handle_packet(&pkt);
        sv_close_fds(&pkt);
    }
}
