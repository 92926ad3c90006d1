/* The spawn configuration of one process, decoded from a CREATE or EXEC packet.
 * The agent has already validated the OCI spec and turned it into plain values. */
#ifndef SV_CONFIG_H
#define SV_CONFIG_H

#include <stdint.h>
#include <sys/types.h>

#include "nerr.h"
#include "wire.h"

struct sv_mount {
    const char *dest;
    const char *type;
    const char *source;
    const char *data;
    uint64_t flags;
    uint64_t propagation;
    int bind;
    int recursive_ro;
};

struct sv_device {
    const char *path;
    char type;
    uint64_t major, minor, mode, uid, gid;
};

struct sv_rlimit {
    uint64_t resource, soft, hard;
};

struct sv_nsjoin {
    int nstype;
    int fd;
};

#define SV_MAX_NS_JOIN 8
#define SV_MAX_CGROUPS 16

struct spawn_config {
    char *arena; /* every string and array below lives here */
    const char *key;
    const char *parent_key;
    uint64_t clone_flags;
    struct sv_nsjoin ns_join[SV_MAX_NS_JOIN];
    int n_ns_join;
    int cgroup_procs[SV_MAX_CGROUPS];
    int n_cgroup_procs;
    int cgroup_dir;

    const char *rootfs;
    struct sv_mount *rootfs_mounts;
    int n_rootfs_mounts;
    int root_readonly;
    uint64_t root_propagation;
    struct sv_mount *mounts;
    int n_mounts;
    struct sv_device *devices;
    int n_devices;
    int default_devices;
    const char **masked;
    int n_masked;
    const char **readonly;
    int n_readonly;
    const char *hostname;
    const char *domainname;
    const char **sysctls;
    int n_sysctls;

    const char **args; /* NULL-terminated */
    int n_args;
    const char **env;  /* NULL-terminated */
    int n_env;
    const char *cwd;
    uint32_t uid, gid;
    gid_t *gids;
    int n_gids;
    int has_umask;
    uint32_t umask;
    struct sv_rlimit *rlimits;
    int n_rlimits;
    int has_caps;
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    int no_new_privs;
    int has_oom_score_adj;
    int64_t oom_score_adj;
    int terminal;
    uint32_t width, height;
    int loopback_up;

    /* The client's fifos (-1 when absent): relayed by the supervisor. */
    int stdin_fifo, stdout_fifo, stderr_fifo;
    int stdin_hold, stdout_hold, stderr_hold;
    /* The process's own ends, pipes the supervisor makes before cloning (-1: /dev/null). */
    int proc_stdin, proc_stdout, proc_stderr;
    char *annotation;
    size_t annotation_len;
    const char *pidfile; /* RESTORE only */
};

/* Decode payload into cfg, taking the referenced fds out of pkt. */
int config_decode(struct spawn_config *cfg, struct sv_packet *pkt, struct nerr *e);
/* Close every fd the config still owns and free its memory. */
void config_free(struct spawn_config *cfg);
/* Close the fds that belong to the child only (after the child has them). */
void config_close_child_fds(struct spawn_config *cfg);

#endif
