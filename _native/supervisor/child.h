/* What runs in a freshly cloned process before it becomes the container's program.
 * Each step reports failure to the supervisor over the sync socket and exits 127. */
#ifndef SV_CHILD_H
#define SV_CHILD_H

#include <sys/resource.h>

#include "config.h"
#include "nerr.h"

/* Messages from the child on its sync socket. */
enum { CHILD_READY = 1, CHILD_ERROR = 2, CHILD_PTY = 3 };

struct child_msg {
    int kind;
    int code;
    char msg[NERR_MSG_MAX];
};

/* Limits the supervisor started with; children get these back before the spec's own. */
extern struct rlimit sv_original_nofile;

/* Taken once at the supervisor's start, before it ignores SIGPIPE: what children undo. */
void child_probe_signals(void);
void process_probe_caps(void);

/* Container init: set up namespaces' contents, report READY, wait for START, exec. */
void child_init_main(struct spawn_config *cfg, int sync_fd) __attribute__((noreturn));

/* Exec process: join the task (pid namespace already joined by the caller), exec at once. */
void child_exec_main(struct spawn_config *cfg, int sync_fd, int target_pidfd, int ns_flags)
    __attribute__((noreturn));

/* Filesystem of a new container (container.c). Runs in the child's new mount namespace. */
int container_prepare_rootfs(struct spawn_config *cfg, struct nerr *e);
int container_pivot(struct spawn_config *cfg, struct nerr *e);
int container_finish(struct spawn_config *cfg, struct nerr *e);

/* Process attributes (process.c). */
/* console: the pty is also bound over /dev/console (a container's init, as runc does). */
int process_setup_terminal(struct spawn_config *cfg, int sync_fd, int console, struct nerr *e);
int process_setup_stdio(struct spawn_config *cfg, int devnull, struct nerr *e);
/* make_cwd: a container's init gets a working directory that is missing made (as runc
 * does); an exec does not, and fails naming it. */
int process_finalize(struct spawn_config *cfg, int make_cwd, struct nerr *e);
int process_resolve(struct spawn_config *cfg, char *path, size_t size, struct nerr *e);

#endif
