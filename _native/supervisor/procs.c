/* The process table: every init and exec the supervisor holds, by key and by pid. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervisor.h"

#define BUCKETS 4096

static struct proc *by_key[BUCKETS];
static struct proc *by_pid[BUCKETS];
static struct proc *all_head, *all_tail; /* in creation order */
static int count;

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % BUCKETS;
}

static unsigned hash_pid(pid_t pid)
{
    return (unsigned)pid % BUCKETS;
}

struct proc *proc_new(const char *key, const char *task_key)
{
    struct proc *p = calloc(1, sizeof(*p));
    unsigned h;
    if (!p)
        return NULL;
    p->key = strdup(key);
    p->task_key = strdup(task_key);
    if (!p->key || !p->task_key) {
        free(p->key);
        free(p->task_key);
        free(p);
        return NULL;
    }
    p->pidfd = p->sync_fd = -1;
    p->stdin_hold = p->stdout_hold = p->stderr_hold = -1;
    p->w_pidfd.kind = W_PIDFD;
    p->w_pidfd.proc = p;
    p->w_sync.kind = W_SYNC;
    p->w_sync.proc = p;
    h = hash_str(key);
    p->next_key = by_key[h];
    by_key[h] = p;
    p->all_prev = all_tail;
    if (all_tail)
        all_tail->all_next = p;
    else
        all_head = p;
    all_tail = p;
    count++;
    return p;
}

struct proc *proc_by_key(const char *key)
{
    struct proc *p;
    for (p = by_key[hash_str(key)]; p; p = p->next_key)
        if (strcmp(p->key, key) == 0)
            return p;
    return NULL;
}

struct proc *proc_by_pid(pid_t pid)
{
    struct proc *p;
    for (p = by_pid[hash_pid(pid)]; p; p = p->next_pid)
        if (p->pid == pid && !p->reaped)
            return p;
    return NULL;
}

void proc_set_pid(struct proc *p, pid_t pid)
{
    unsigned h = hash_pid(pid);
    p->pid = pid;
    p->next_pid = by_pid[h];
    by_pid[h] = p;
}

static void unlink_pid(struct proc *p);

void proc_change_pid(struct proc *p, pid_t pid)
{
    unlink_pid(p);
    proc_set_pid(p, pid);
}

static void unlink_key(struct proc *p)
{
    struct proc **pp;
    for (pp = &by_key[hash_str(p->key)]; *pp; pp = &(*pp)->next_key)
        if (*pp == p) {
            *pp = p->next_key;
            return;
        }
}

static void unlink_pid(struct proc *p)
{
    struct proc **pp;
    if (!p->pid)
        return;
    for (pp = &by_pid[hash_pid(p->pid)]; *pp; pp = &(*pp)->next_pid)
        if (*pp == p) {
            *pp = p->next_pid;
            return;
        }
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

void proc_free(struct proc *p)
{
    drain_over(p);
    unlink_key(p);
    unlink_pid(p);
    if (p->all_prev)
        p->all_prev->all_next = p->all_next;
    else
        all_head = p->all_next;
    if (p->all_next)
        p->all_next->all_prev = p->all_prev;
    else
        all_tail = p->all_prev;
    if (p->pidfd >= 0)
        loop_del(p->pidfd);
    if (p->sync_fd >= 0)
        loop_del(p->sync_fd);
    close_fd(&p->pidfd);
    close_fd(&p->sync_fd);
    close_fd(&p->stdin_hold);
    close_fd(&p->stdout_hold);
    close_fd(&p->stderr_hold);
    if (p->relay)
        relay_free(p->relay);
    free(p->exec_error);
    free(p->annotation);
    free(p->pidfile);
    free(p->key);
    free(p->task_key);
    free(p);
    count--;
}

struct proc *proc_first(void)
{
    return all_head;
}

int proc_count(void)
{
    return count;
}

int proc_live_execs(const char *task_key)
{
    struct proc *p;
    int n = 0;
    for (p = all_head; p; p = p->all_next)
        if (p->is_exec && !p->exit_sent && p->state != 0 && strcmp(p->task_key, task_key) == 0 &&
            !p->spawn_failed)
            n++;
    return n;
}
