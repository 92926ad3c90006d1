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
    W_MASTER,
    W_TTY_IN,
    W_TTY_OUT,
    W_STDIN_PIPE,
};

struct proc;

/* What an epoll event points at. */
struct watch {
    enum watch_kind kind;
    struct proc *proc;
};

/* Stdio relays (relay.c): stdin fifo -> process, and pty master -> stdout fifo. */
struct relay {
    struct proc *proc;
    int master;  /* pty master, -1 without a terminal */
    int in_src;  /* the client's stdin fifo (read end) */
    int in_dst;  /* where input goes: the master, or our pipe to the process */
    int out_dst; /* the client's stdout fifo (write end), terminals only */
    uint32_t ev_master, ev_in_src, ev_in_dst, ev_out_dst;
    struct watch w_master, w_in, w_out, w_pipe;
    char out_buf[16384];
    size_t out_len, out_off;
    char in_buf[4096];
    size_t in_len, in_off;
    int in_closing;  /* CloseIO: deliver EOF once the buffer is flushed */
    int master_done; /* EIO/EOF seen on the master (or no output side at all) */
};

enum pending_op { P_NONE = 0, P_CREATE, P_START, P_EXEC, P_FORGET };

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
    int stdin_relay, tty_out; /* until the relay takes them */
    int stdin_closed;          /* CloseIO came before the terminal existed */
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
    int64_t relay_deadline_ns;
    int exit_sent;
};

/* procs.c */
struct proc *proc_new(const char *key, const char *task_key);
struct proc *proc_by_key(const char *key);
struct proc *proc_by_pid(pid_t pid);
void proc_set_pid(struct proc *p, pid_t pid);
void proc_free(struct proc *p);
struct proc *proc_first(void);
int proc_count(void);
int proc_live_execs(const char *task_key);

/* loop.c */
int loop_add(int fd, uint32_t events, struct watch *w);
int loop_mod(int fd, uint32_t events, struct watch *w);
void loop_del(int fd);
int64_t now_ns(void);

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
void check_deadlines(int64_t now);
int64_t next_deadline(void);

/* relay.c */
struct relay *relay_new_stdin(struct proc *p, int in_src, int pipe_w);
struct relay *relay_new_tty(struct proc *p, int master, int in_src, int out_dst);
void relay_on_event(struct relay *r, enum watch_kind kind, uint32_t events);
void relay_close_stdin(struct relay *r);
int relay_resize(struct relay *r, unsigned width, unsigned height);
int relay_has_terminal(const struct relay *r);
int relay_done(const struct relay *r);
void relay_process_exited(struct relay *r);
void relay_finish(struct relay *r);
void relay_free(struct relay *r);

extern int sv_self_pidns; /* to return to after spawning into a task's pid namespace */
extern uint8_t *sv_recv_buf;

#endif
