/* Making processes (spawn.c), shared by CREATE, EXEC and RESTORE. */
#ifndef SV_SPAWN_H
#define SV_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "supervisor.h"

/* What a spawn needs besides its config: the sync socket, and the far ends of the pipes the
 * process gets as its stdio (the relay copies between them and the client's fifos). */
struct spawn {
    int sv[2];
    struct relay_fds rf;
};

pid_t clone3_pidfd(uint64_t flags, int cgroup_fd, int *pidfd);
void spawn_init(struct spawn *sp);
void close_fd(int *fd);
void spawn_cleanup(struct spawn *sp);
int spawn_prepare(struct spawn *sp, struct spawn_config *cfg, struct nerr *e);
void spawn_child_side(struct spawn *sp);
void adopt_child(struct proc *p, struct spawn_config *cfg, struct spawn *sp, pid_t pid, int pidfd);
void refuse(struct sv_packet *pkt, struct spawn_config *cfg, struct spawn *sp, int code,
            const char *msg);
void abandon_child(pid_t pid, int pidfd);

#endif
