/* One call for many tasks: the tasks are shared out to a few worker threads (each task costs
 * tens of open/read/close syscalls, which run in parallel on different CPUs), results land
 * in the caller's array in task order. */
#include "cgread.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 16
#define TASKS_PER_THREAD 64 /* fewer than this per worker is not worth a thread */
#define AUTO_THREADS_MAX 4
#define SCRATCH 16384 /* every cgroup stat file we know fits; larger ones move to the heap */

struct job {
    int version;
    const struct cgv1_task *v1;
    const char *const *v2;
    size_t n;
    const struct cgctx *ctx;
    struct cgstats_result *out;
    atomic_size_t next;
    atomic_int failed;
};

struct worker {
    struct job *job;
    pthread_t thread;
    int started;
    int failed;
    size_t failed_at;
    struct nerr err;
};

/* Copy the encoded message out at its exact size; the worker's buffer is reused. */
static int keep(struct pb *pb, struct cgstats_result *res, struct nerr *e)
{
    if (pb->oom)
        return nerr_sys(e, ENOMEM, "encode the metrics message");
    res->data = malloc(pb->len ? pb->len : 1);
    if (!res->data)
        return nerr_sys(e, ENOMEM, "keep a %zu-byte metrics message", pb->len);
    memcpy(res->data, pb->p, pb->len);
    res->len = pb->len;
    res->state = CGSTATS_OK;
    return 0;
}

static void run(struct worker *w)
{
    struct job *job = w->job;
    char stack[SCRATCH];
    struct cgbuf b;
    struct pb pb;

    cgbuf_init(&b, stack, sizeof(stack));
    pb_init(&pb);
    while (!atomic_load_explicit(&job->failed, memory_order_relaxed)) {
        size_t i = atomic_fetch_add(&job->next, 1);
        int r;
        if (i >= job->n)
            break;
        pb.len = 0;
        if (job->version == 1)
            r = cgv1_read_task(&job->v1[i], job->ctx, &b, &pb, &w->err);
        else
            r = cgv2_read_task(job->v2[i], job->ctx, &b, &pb, &w->err);
        if (r == READ_OK)
            r = keep(&pb, &job->out[i], &w->err);
        if (r < 0) {
            w->failed = 1;
            w->failed_at = i;
            atomic_store(&job->failed, 1);
            break;
        }
        /* READ_GONE: out[i] stays {NULL, 0, CGSTATS_GONE} */
    }
    pb_free(&pb);
    cgbuf_free(&b);
}

static void *thread_main(void *arg)
{
    run(arg);
    return NULL;
}

static int pick_threads(int asked, size_t n)
{
    long cpus;
    size_t t;
    if (asked > 0)
        t = (size_t)asked;
    else {
        cpus = sysconf(_SC_NPROCESSORS_ONLN);
        t = cpus > 0 ? (size_t)cpus : 1;
        if (t > AUTO_THREADS_MAX)
            t = AUTO_THREADS_MAX;
        if (t > (n + TASKS_PER_THREAD - 1) / TASKS_PER_THREAD)
            t = (n + TASKS_PER_THREAD - 1) / TASKS_PER_THREAD;
    }
    if (t > MAX_THREADS)
        t = MAX_THREADS;
    if (t > n)
        t = n;
    return t ? (int)t : 1;
}

static int run_batch(struct job *job, int threads, struct nerr *e)
{
    struct worker w[MAX_THREADS];
    int nw = pick_threads(threads, job->n), i, failed = -1;

    memset(w, 0, sizeof(w));
    for (i = 0; i < nw; i++)
        w[i].job = job;
    /* The calling thread is worker 0; a thread that cannot be started just leaves its share
     * to the others. */
    for (i = 1; i < nw; i++)
        w[i].started = pthread_create(&w[i].thread, NULL, thread_main, &w[i]) == 0;
    run(&w[0]);
    for (i = 1; i < nw; i++)
        if (w[i].started)
            pthread_join(w[i].thread, NULL);
    for (i = 0; i < nw; i++)
        if (w[i].failed && (failed < 0 || w[i].failed_at < w[failed].failed_at))
            failed = i;
    if (failed < 0)
        return 0;
    *e = w[failed].err;
    cgstats_free(job->out, job->n);
    return -1;
}

static int setup(struct cgctx *ctx, const struct cgstats_opts *o, int need_devs,
                 struct cgstats_result *out, size_t n, struct nerr *e)
{
    long hz = sysconf(_SC_CLK_TCK);
    ctx->opts = o;
    ctx->clk_tck = hz > 0 ? (uint64_t)hz : 100;
    ctx->devs.v = NULL;
    ctx->devs.n = 0;
    for (size_t i = 0; i < n; i++) {
        out[i].data = NULL;
        out[i].len = 0;
        out[i].state = CGSTATS_GONE;
    }
    if (need_devs && cgdevs_load(&ctx->devs, e) < 0)
        return -1;
    return 0;
}

int cgstats_read_v1(const struct cgv1_task *tasks, size_t n, const struct cgstats_opts *o,
                    struct cgstats_result *out, struct nerr *e)
{
    struct cgctx ctx;
    struct job job = {.version = 1, .v1 = tasks, .n = n, .ctx = &ctx, .out = out};
    int need_devs = 0, r;

    nerr_clear(e);
    for (size_t i = 0; i < n && !need_devs; i++)
        need_devs = tasks[i].dir[CGV1_BLKIO] != NULL;
    if (setup(&ctx, o, need_devs, out, n, e) < 0)
        return -1;
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, 0);
    r = run_batch(&job, o->threads, e);
    cgdevs_free(&ctx.devs);
    return r;
}

int cgstats_read_v2(const char *const *dirs, size_t n, const struct cgstats_opts *o,
                    struct cgstats_result *out, struct nerr *e)
{
    struct cgctx ctx;
    struct job job = {.version = 2, .v2 = dirs, .n = n, .ctx = &ctx, .out = out};

    nerr_clear(e);
    if (setup(&ctx, o, 0, out, n, e) < 0)
        return -1;
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, 0);
    return run_batch(&job, o->threads, e);
}

void cgstats_free(struct cgstats_result *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(out[i].data);
        out[i].data = NULL;
        out[i].len = 0;
        out[i].state = CGSTATS_GONE;
    }
}
