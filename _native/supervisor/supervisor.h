/* Shared state of the supervisor: the process table, the epoll loop and the agent link. */
#ifndef SV_SUPERVISOR_H
#define SV_SUPERVISOR_H

#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "wire.h"

enum watch_kind {
    W_LISTEN = 1,
    W_CLIENT,
    W_SIGNAL,
    W_PIDFD,
    W_SYNC,
    W_CHANNEL,
};

struct proc;
struct channel;

/* What an epoll event points at. */
struct watch {
    enum watch_kind kind;
    struct proc *proc;
    struct channel *channel; /* W_CHANNEL */
};

/* Stdio relays (relay.c): one channel per stream, each copying src -> dst. */
enum { CH_IN = 0, CH_OUT = 1, CH_ERR = 2 };

struct channel {
    struct proc *proc;
    int kind;
    int src, dst; /* owned; -1 when absent or closed */
    uint32_t ev_src, ev_dst;
    struct watch w_src, w_dst;
    char *buf; /* allocated on first use */
    size_t len, off;
    int src_done;   /* EOF/EIO on src (or CloseIO and the fifo is empty) */
    int closing;    /* input: CloseIO asked; read what is there, then EOF */
    int dst_is_tty; /* input to a pty: EOF is typed, not a hang-up */
    int idle;       /* the source had nothing more to read and all read is written */
    int done;
};

struct relay {
    struct channel ch[3];
    int master;      /* a pty master kept for resizing, -1 without a terminal */
    int pending_in;  /* terminal not there yet: the stdin fifo to relay into it */
    int pending_out; /* ... and the stdout fifo to relay it to */
};

/* What a new process's relay copies between (-1 for what is absent). */
struct relay_fds {
    int terminal;
    int in_src, in_dst;   /* stdin fifo -> pipe to the process */
    int out_src, out_dst; /* pipe from the process -> stdout fifo */
    int err_src, err_dst;
};

enum pending_op { P_NONE = 0, P_CREATE, P_START, P_EXEC, P_FORGET, P_RESTORE };

struct proc {
    struct proc *next_key; /* hash chains */
    struct proc *next_pid;
    struct proc *all_next, *all_prev;
    char *key;
    char *task_key; /* the init's key for an exec, own key for an init */
    int is_exec;
    int state; /* SV_STATE_* */
    pid_t pid;
    int pidfd;
    int sync_fd;
    int has_pidns;
    int terminal;
    int stdin_hold, stdout_hold, stderr_hold;
    char *annotation; /* the agent's record of this process, returned by LIST */
    size_t annotation_len;
    int exit_acked;   /* the agent has published this exit */
    int restoring;    /* pid is criu's, restoring this init; then the init's own */
    int restored;     /* made by criu: stopped, Start continues it (no sync socket) */
    char *pidfile;
    struct relay *relay;
    struct watch w_pidfd, w_sync;

    enum pending_op pending;
    uint32_t pending_id;
    uint64_t pending_conn;
    int spawn_failed; /* CREATE failed: drop the record once reaped, tell nobody */
    int exec_error_code;
    char *exec_error;

    int reaped;
    int exit_code;
    int wait_status;
    int64_t exited_at_ns;
    int64_t relay_deadline_ns; /* CLOCK_MONOTONIC */
    int exit_sent;
};

/* procs.c */
struct proc *proc_new(const char *key, const char *task_key);
struct proc *proc_by_key(const char *key);
struct proc *proc_by_pid(pid_t pid);
void proc_set_pid(struct proc *p, pid_t pid);
void proc_change_pid(struct proc *p, pid_t pid);
void proc_free(struct proc *p);
struct proc *proc_first(void);
/* Set when the supervisor should leave its loop (SHUTDOWN, or the agent gone with nothing held). */
extern int sv_shutdown_requested;
int proc_count(void);
int proc_live_execs(const char *task_key);

/* loop.c */
int loop_add(int fd, uint32_t events, struct watch *w);
int loop_mod(int fd, uint32_t events, struct watch *w);
void loop_del(int fd);
int64_t now_ns(void);
int64_t mono_ns(void);

/* link.c: the agent connection */
void link_reply_error(uint32_t id, int code, const char *msg);
void link_send(struct sv_buf *b);
uint64_t link_conn(void);
void link_accept(int listen_fd);
void link_on_event(uint32_t events);
void link_flush(void);

/* handlers.c */
void handle_packet(struct sv_packet *pkt);
void handle_sync(struct proc *p);
void reap(struct proc *p);
void reap_orphans(void);
void maybe_notify_exit(struct proc *p);
void forget_when_drained(struct proc *p);
void check_deadlines(int64_t now);
void drain_over(struct proc *p);
int64_t next_deadline(void);

/* restore.c */
void handle_restore(struct sv_packet *pkt);
void restore_finished(struct proc *p, int exit_code);

/* handlers.c, for restore.c */
void settle(struct proc *p, int code, const char *msg);
void set_pending(struct proc *p, enum pending_op op, uint32_t id);

/* relay.c */
struct relay *relay_new(struct proc *p, const struct relay_fds *f);
int relay_attach_terminal(struct relay *r, struct proc *p, int master);
void relay_on_event(struct channel *c);
void relay_close_stdin(struct relay *r);
int relay_resize(struct relay *r, unsigned width, unsigned height);
int relay_has_terminal(const struct relay *r);
int relay_done(const struct relay *r);
int relay_caught_up(struct relay *r);
void relay_process_exited(struct relay *r);
void relay_finish(struct relay *r);
void relay_free(struct relay *r);

extern int sv_self_pidns; /* to return to after spawning into a task's pid namespace */
extern uint8_t *sv_recv_buf;

#endif
