/* Inside the cgroup-stats reader: what the batch shares with the per-task readers. */
#ifndef TASKAGENT_CGSTATS_CGREAD_H
#define TASKAGENT_CGSTATS_CGREAD_H

#include <errno.h>
#include <stdint.h>

#include "cgfile.h"
#include "cgstats.h"
#include "nerr.h"
#include "pb.h"

/* Block device names from /proc/partitions, for BlkIOEntry.device ("/dev/sda"), as
 * containerd fills it; read once per batch rather than once per task. */
struct cgdev {
    uint32_t major, minor;
    char path[48];
};

struct cgdevs {
    struct cgdev *v;
    size_t n;
};

int cgdevs_load(struct cgdevs *d, struct nerr *e);
const char *cgdevs_path(const struct cgdevs *d, uint64_t major, uint64_t minor);
void cgdevs_free(struct cgdevs *d);

/* Read-only during a batch, shared by its workers. */
struct cgctx {
    const struct cgstats_opts *opts;
    struct cgdevs devs;
    uint64_t clk_tck; /* USER_HZ: the unit of cpuacct.stat */
};

/* Per-task results besides -1 (an error, in e). */
enum { READ_OK = 0, READ_GONE = 2 };

/* Append one task's serialized Metrics to out (empty on entry). */
int cgv1_read_task(const struct cgv1_task *t, const struct cgctx *c, struct cgbuf *b,
                   struct pb *out, struct nerr *e);
int cgv2_read_task(const char *dir, const struct cgctx *c, struct cgbuf *b, struct pb *out,
                   struct nerr *e);

/* A required file is missing: the task is gone if its whole directory went away (it ended
 * and was cleaned up while we read), otherwise that is an error. */
static inline int cg_required_missing(const char *dir, const char *name, struct nerr *e)
{
    if (cgf_dir_gone(dir))
        return READ_GONE;
    return nerr_set(e, ENOENT, "read %s/%s: the file is missing", dir, name);
}

#endif
