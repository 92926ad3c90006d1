/* Native cgroup-stats reader: cgroup files of many tasks in, containerd's serialized
 * cgroups Metrics messages out (io.containerd.cgroups.v1.Metrics on v1 hosts,
 * io.containerd.cgroups.v2.Metrics on v2), in one call that never touches Python. */
#ifndef TASKAGENT_CGSTATS_H
#define TASKAGENT_CGSTATS_H

#include <stddef.h>
#include <stdint.h>

#include "nerr.h"

/* The v1 controllers the reader looks at; a task's directory per controller. */
enum cgv1_controller {
    CGV1_HUGETLB,
    CGV1_PIDS,
    CGV1_CPU,
    CGV1_CPUACCT,
    CGV1_MEMORY,
    CGV1_BLKIO,
    CGV1_NCTRL
};

struct cgv1_task {
    const char *dir[CGV1_NCTRL]; /* NULL: the controller is not there for this task */
};

struct cgstats_opts {
    const char *const *hugetlb_sizes; /* page sizes as containerd names them: "2MB", "1GB" */
    size_t n_hugetlb;
    int threads; /* workers for the batch; 0 picks from the CPU count and the batch size */
};

enum { CGSTATS_GONE = 0, CGSTATS_OK = 1 };

struct cgstats_result {
    uint8_t *data; /* the serialized Metrics (malloc'd), NULL when gone */
    size_t len;
    int state; /* CGSTATS_OK, or CGSTATS_GONE when the task's cgroup no longer exists */
};

/* Fill out[0..n) for tasks[0..n). Returns 0, or -1 with e set (errno and the failing step
 * of the first task, in batch order, that failed for a reason other than being gone); on
 * failure nothing is left allocated in out. A cgroup that is gone is not a failure. */
int cgstats_read_v1(const struct cgv1_task *tasks, size_t n, const struct cgstats_opts *o,
                    struct cgstats_result *out, struct nerr *e);
int cgstats_read_v2(const char *const *dirs, size_t n, const struct cgstats_opts *o,
                    struct cgstats_result *out, struct nerr *e);

void cgstats_free(struct cgstats_result *out, size_t n);

#endif
