/* cgroup v1: a task's controller directories -> io.containerd.cgroups.v1.Metrics.
 * The files and their meaning follow containerd/cgroups v1.0.4 (the library containerd 1.6
 * reads v1 stats with), so `ctr task metrics` shows the same numbers against either. */
#include "cgread.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Field numbers of proto/cgroups/v1/metrics.proto. */
enum { M_HUGETLB = 1, M_PIDS = 2, M_CPU = 3, M_MEMORY = 4, M_BLKIO = 5, M_OOM = 9 };
enum { HUGETLB_USAGE = 1, HUGETLB_MAX = 2, HUGETLB_FAILCNT = 3, HUGETLB_PAGESIZE = 4 };
enum { PIDS_CURRENT = 1, PIDS_LIMIT = 2 };
enum { CPU_USAGE = 1, CPU_THROTTLING = 2 };
enum { USAGE_TOTAL = 1, USAGE_KERNEL = 2, USAGE_USER = 3, USAGE_PER_CPU = 4 };
enum { MEM_STAT_LAST = 32, MEM_USAGE = 33 }; /* 1..32 from memory.stat; entries 33..36 */
enum { BLKIO_OP = 1, BLKIO_DEVICE = 2, BLKIO_MAJOR = 3, BLKIO_MINOR = 4, BLKIO_VALUE = 5 };

/* MemoryStat 1..32: key in memory.stat -> field. */
static const struct cgf_key memory_stat_keys[] = {
    CGF_KEY("cache", 1),
    CGF_KEY("rss", 2),
    CGF_KEY("rss_huge", 3),
    CGF_KEY("mapped_file", 4),
    CGF_KEY("dirty", 5),
    CGF_KEY("writeback", 6),
    CGF_KEY("pgpgin", 7),
    CGF_KEY("pgpgout", 8),
    CGF_KEY("pgfault", 9),
    CGF_KEY("pgmajfault", 10),
    CGF_KEY("inactive_anon", 11),
    CGF_KEY("active_anon", 12),
    CGF_KEY("inactive_file", 13),
    CGF_KEY("active_file", 14),
    CGF_KEY("unevictable", 15),
    CGF_KEY("hierarchical_memory_limit", 16),
    CGF_KEY("hierarchical_memsw_limit", 17),
    CGF_KEY("total_cache", 18),
    CGF_KEY("total_rss", 19),
    CGF_KEY("total_rss_huge", 20),
    CGF_KEY("total_mapped_file", 21),
    CGF_KEY("total_dirty", 22),
    CGF_KEY("total_writeback", 23),
    CGF_KEY("total_pgpgin", 24),
    CGF_KEY("total_pgpgout", 25),
    CGF_KEY("total_pgfault", 26),
    CGF_KEY("total_pgmajfault", 27),
    CGF_KEY("total_inactive_anon", 28),
    CGF_KEY("total_active_anon", 29),
    CGF_KEY("total_inactive_file", 30),
    CGF_KEY("total_active_file", 31),
    CGF_KEY("total_unevictable", 32),
};

/* MemoryOomControl, from memory.oom_control. */
static const struct cgf_key oom_keys[] = {
    CGF_KEY("oom_kill_disable", 1),
    CGF_KEY("under_oom", 2),
    CGF_KEY("oom_kill", 3),
};

/* Throttle, from cpu.stat (nr_bursts and burst_time have no field). */
static const struct cgf_key throttle_keys[] = {
    CGF_KEY("nr_periods", 1),
    CGF_KEY("nr_throttled", 2),
    CGF_KEY("throttled_time", 3),
};

/* cpuacct.stat, in USER_HZ ticks. */
enum { TICKS_USER = 0, TICKS_SYSTEM = 1 };
static const struct cgf_key cpuacct_keys[] = {
    CGF_KEY("user", TICKS_USER),
    CGF_KEY("system", TICKS_SYSTEM),
};

/* MemoryEntry fields 1..4 (limit, usage, max, failcnt) for MemoryStat usage, swap, kernel
 * and kernel_tcp (fields 33..36). Only the first is required: swap accounting and kmem come
 * and go with kernel versions and boot options. */
static const char *const memory_entry_files[4][4] = {
    {"memory.limit_in_bytes", "memory.usage_in_bytes", "memory.max_usage_in_bytes",
     "memory.failcnt"},
    {"memory.memsw.limit_in_bytes", "memory.memsw.usage_in_bytes",
     "memory.memsw.max_usage_in_bytes", "memory.memsw.failcnt"},
    {"memory.kmem.limit_in_bytes", "memory.kmem.usage_in_bytes",
     "memory.kmem.max_usage_in_bytes", "memory.kmem.failcnt"},
    {"memory.kmem.tcp.limit_in_bytes", "memory.kmem.tcp.usage_in_bytes",
     "memory.kmem.tcp.max_usage_in_bytes", "memory.kmem.tcp.failcnt"},
};

/* BlkIOStat fields 1..8 from the CFQ files; containerd falls back to the throttle files
 * (fields 1 and 2 only) when the kernel has no CFQ or the CFQ files list nothing. */
static const char *const blkio_cfq_files[8] = {
    "blkio.io_service_bytes_recursive", "blkio.io_serviced_recursive",
    "blkio.io_queued_recursive",        "blkio.io_service_time_recursive",
    "blkio.io_wait_time_recursive",     "blkio.io_merged_recursive",
    "blkio.time_recursive",             "blkio.sectors_recursive",
};
static const char *const blkio_throttle_files[2] = {
    "blkio.throttle.io_service_bytes",
    "blkio.throttle.io_serviced",
};

/* One task's open controller directories. */
struct v1task {
    const struct cgv1_task *t;
    const struct cgctx *c;
    struct cgbuf *b;
    struct pb *out;
    struct nerr *e;
    int fd[CGV1_NCTRL];
};

#define TRY(expr)                                                                              \
    do {                                                                                       \
        int r_ = (expr);                                                                       \
        if (r_ != READ_OK)                                                                     \
            return r_;                                                                         \
    } while (0)

/* A file that must be there when its controller is. */
static int need_u64(struct v1task *k, int ctrl, const char *name, uint64_t if_max, uint64_t *v)
{
    int r = cgf_read_u64(k->fd[ctrl], k->t->dir[ctrl], name, k->b, if_max, v, k->e);
    if (r == CGF_MISSING)
        return cg_required_missing(k->t->dir[ctrl], name, k->e);
    return r;
}

static int need_file(struct v1task *k, int ctrl, const char *name, size_t *len)
{
    int r = cgf_read(k->fd[ctrl], k->t->dir[ctrl], name, k->b, len, k->e);
    if (r == CGF_MISSING)
        return cg_required_missing(k->t->dir[ctrl], name, k->e);
    return r;
}

/* Read a "key value" file into vals; CGF_MISSING passes through for optional files. */
static int read_kv(struct v1task *k, int ctrl, const char *name, const struct cgf_key *keys,
                   size_t nkeys, uint64_t *vals, int required)
{
    size_t len;
    int r = required ? need_file(k, ctrl, name, &len)
                     : cgf_read(k->fd[ctrl], k->t->dir[ctrl], name, k->b, &len, k->e);
    if (r != CGF_OK)
        return r;
    if (cgf_parse_kv(k->b->p, len, keys, nkeys, vals, k->t->dir[ctrl], name, k->e) < 0)
        return -1;
    return READ_OK;
}

/* One page size's usage, max usage and failcnt; CGF_MISSING when the kernel's hugetlb
 * cgroup does not have this size. */
static int read_hugetlb_size(struct v1task *k, const char *size, uint64_t v[3])
{
    static const char *const files[3] = {"usage_in_bytes", "max_usage_in_bytes", "failcnt"};
    for (int f = 0; f < 3; f++) {
        char name[96];
        int r;
        snprintf(name, sizeof(name), "hugetlb.%s.%s", size, files[f]);
        r = cgf_read_u64(k->fd[CGV1_HUGETLB], k->t->dir[CGV1_HUGETLB], name, k->b, 0, &v[f],
                         k->e);
        if (r != CGF_OK)
            return r;
    }
    return CGF_OK;
}

static int read_hugetlb(struct v1task *k)
{
    const struct cgstats_opts *o = k->c->opts;
    for (size_t i = 0; i < o->n_hugetlb; i++) {
        const char *size = o->hugetlb_sizes[i];
        uint64_t v[3] = {0, 0, 0};
        size_t m;
        int r = read_hugetlb_size(k, size, v);
        if (r < 0)
            return r;
        if (r == CGF_MISSING)
            continue;
        m = pb_begin(k->out, M_HUGETLB);
        pb_uint(k->out, HUGETLB_USAGE, v[0]);
        pb_uint(k->out, HUGETLB_MAX, v[1]);
        pb_uint(k->out, HUGETLB_FAILCNT, v[2]);
        pb_str(k->out, HUGETLB_PAGESIZE, size, strlen(size));
        pb_end(k->out, m);
    }
    return READ_OK;
}

static int read_pids(struct v1task *k)
{
    uint64_t current, limit;
    size_t m;
    TRY(need_u64(k, CGV1_PIDS, "pids.current", 0, &current));
    /* containerd reports an unlimited pids.max ("max") as 0 on v1 */
    TRY(need_u64(k, CGV1_PIDS, "pids.max", 0, &limit));
    m = pb_begin(k->out, M_PIDS);
    pb_uint(k->out, PIDS_CURRENT, current);
    pb_uint(k->out, PIDS_LIMIT, limit);
    pb_end(k->out, m);
    return READ_OK;
}

/* Ticks to ns without overflowing where t * 1e9 would (same result as containerd's
 * t * 1e9 / hz otherwise). */
static uint64_t ticks_to_ns(uint64_t t, uint64_t hz)
{
    return (t / hz) * 1000000000ull + (t % hz) * 1000000000ull / hz;
}

/* CPUUsage from cpuacct: total, kernel and user in ns, then one packed value per CPU. */
static int read_cpu_usage(struct v1task *k)
{
    uint64_t total, ticks[2] = {0, 0};
    size_t len, before, m, ncpu = 0;
    const char *p, *end;

    TRY(need_u64(k, CGV1_CPUACCT, "cpuacct.usage", 0, &total));
    TRY(read_kv(k, CGV1_CPUACCT, "cpuacct.stat", cpuacct_keys, 2, ticks, 1));
    pb_uint(k->out, USAGE_TOTAL, total);
    pb_uint(k->out, USAGE_KERNEL, ticks_to_ns(ticks[TICKS_SYSTEM], k->c->clk_tck));
    pb_uint(k->out, USAGE_USER, ticks_to_ns(ticks[TICKS_USER], k->c->clk_tck));

    TRY(need_file(k, CGV1_CPUACCT, "cpuacct.usage_percpu", &len));
    p = k->b->p;
    end = p + len;
    before = k->out->len;
    m = pb_begin(k->out, USAGE_PER_CPU);
    for (;;) {
        uint64_t v;
        while (p < end && (*p == ' ' || *p == '\n'))
            p++;
        if (p == end)
            break;
        if (cgf_parse_u64(&p, end, &v) < 0)
            return nerr_set(k->e, EINVAL, "parse %s/cpuacct.usage_percpu: bad number \"%.20s\"",
                            k->t->dir[CGV1_CPUACCT], p);
        pb_varint(k->out, v);
        ncpu++;
    }
    pb_end(k->out, m);
    if (ncpu == 0) /* an empty repeated field is left out, not written empty */
        pb_truncate(k->out, before);
    return READ_OK;
}

/* CPUStat is always written with its usage: ctr dereferences cpu.usage whenever cpu is set,
 * and containerd always sets both. */
static int read_cpu(struct v1task *k)
{
    size_t cpu = pb_begin(k->out, M_CPU), m;
    m = pb_begin(k->out, CPU_USAGE);
    if (k->fd[CGV1_CPUACCT] >= 0)
        TRY(read_cpu_usage(k));
    pb_end(k->out, m);

    m = pb_begin(k->out, CPU_THROTTLING);
    if (k->fd[CGV1_CPU] >= 0) {
        uint64_t v[4] = {0, 0, 0, 0};
        if (read_kv(k, CGV1_CPU, "cpu.stat", throttle_keys, 3, v, 0) < 0)
            return -1;
        for (uint32_t f = 1; f <= 3; f++)
            pb_uint(k->out, f, v[f]);
    }
    pb_end(k->out, m);
    pb_end(k->out, cpu);
    return READ_OK;
}

/* MemoryStat: memory.stat, then the four MemoryEntry messages, all four always written
 * (ctr dereferences usage). memory.oom_control is kept for field 9, written last. */
static int read_memory(struct v1task *k, uint64_t *oom, int *have_oom)
{
    uint64_t stat[MEM_STAT_LAST + 1];
    size_t mem;
    int r;

    memset(stat, 0, sizeof(stat));
    TRY(read_kv(k, CGV1_MEMORY, "memory.stat", memory_stat_keys,
                sizeof(memory_stat_keys) / sizeof(memory_stat_keys[0]), stat, 1));
    mem = pb_begin(k->out, M_MEMORY);
    for (uint32_t f = 1; f <= MEM_STAT_LAST; f++)
        pb_uint(k->out, f, stat[f]);
    for (int i = 0; i < 4; i++) {
        size_t m = pb_begin(k->out, MEM_USAGE + (uint32_t)i);
        for (int j = 0; j < 4; j++) {
            uint64_t v = 0;
            const char *name = memory_entry_files[i][j];
            if (i == 0) {
                TRY(need_u64(k, CGV1_MEMORY, name, 0, &v));
            } else {
                r = cgf_read_u64(k->fd[CGV1_MEMORY], k->t->dir[CGV1_MEMORY], name, k->b, 0, &v,
                                 k->e);
                if (r < 0)
                    return r;
            }
            pb_uint(k->out, (uint32_t)j + 1, v);
        }
        pb_end(k->out, m);
    }
    pb_end(k->out, mem);

    r = read_kv(k, CGV1_MEMORY, "memory.oom_control", oom_keys, 3, oom, 0);
    if (r < 0)
        return r;
    *have_oom = r == CGF_OK;
    return READ_OK;
}

/* A whole token as a number. */
static int token_u64(const char *tok, size_t len, uint64_t *v)
{
    const char *p = tok;
    return cgf_parse_u64(&p, tok + len, v) < 0 || p != tok + len ? -1 : 0;
}

/* Lines "MAJ:MIN Op N", "MAJ:MIN N" (no op) or "Total N" (skipped), each a BlkIOEntry. */
static int parse_blkio(struct v1task *k, const char *name, uint32_t field, size_t len,
                       size_t *entries)
{
    const char *p = k->b->p, *end = p + len;
    while (p < end) {
        const char *line = p, *eol = memchr(p, '\n', (size_t)(end - p));
        const char *tok[4];
        size_t tlen[4], n = 0;
        uint64_t major, minor, value;
        const char *op = "";
        size_t oplen = 0, m;
        const char *dev;
        if (!eol)
            eol = end;
        while (p < eol) { /* split on ' ' and ':' as containerd does */
            while (p < eol && (*p == ' ' || *p == ':'))
                p++;
            if (p == eol)
                break;
            if (n == 4)
                goto bad;
            tok[n] = p;
            while (p < eol && *p != ' ' && *p != ':')
                p++;
            tlen[n] = (size_t)(p - tok[n]);
            n++;
        }
        p = eol + (eol < end);
        if (n == 0 || (n == 2 && tlen[0] == 5 && memcmp(tok[0], "Total", 5) == 0))
            continue;
        if (n < 3)
            goto bad;
        if (token_u64(tok[0], tlen[0], &major) < 0 || token_u64(tok[1], tlen[1], &minor) < 0 ||
            token_u64(tok[n - 1], tlen[n - 1], &value) < 0)
            goto bad;
        if (n == 4) {
            op = tok[2];
            oplen = tlen[2];
        }
        dev = cgdevs_path(&k->c->devs, major, minor);
        m = pb_begin(k->out, field);
        pb_str(k->out, BLKIO_OP, op, oplen);
        if (dev)
            pb_str(k->out, BLKIO_DEVICE, dev, strlen(dev));
        pb_uint(k->out, BLKIO_MAJOR, major);
        pb_uint(k->out, BLKIO_MINOR, minor);
        pb_uint(k->out, BLKIO_VALUE, value);
        pb_end(k->out, m);
        (*entries)++;
        continue;
    bad:
        return nerr_set(k->e, EINVAL, "parse %s/%s: bad line \"%.*s\"", k->t->dir[CGV1_BLKIO],
                        name, (int)(eol - line > 80 ? 80 : eol - line), line);
    }
    return READ_OK;
}

/* Entries of each file into field i + 1. A kernel without CFQ has none of the CFQ files, so
 * a missing first file ends the list early instead of trying the other seven. */
static int read_blkio_files(struct v1task *k, const char *const *files, size_t nfiles,
                            size_t *entries)
{
    for (size_t i = 0; i < nfiles; i++) {
        size_t len;
        int r = cgf_read(k->fd[CGV1_BLKIO], k->t->dir[CGV1_BLKIO], files[i], k->b, &len, k->e);
        if (r < 0)
            return r;
        if (r == CGF_MISSING) {
            if (i == 0)
                break;
            continue;
        }
        TRY(parse_blkio(k, files[i], (uint32_t)i + 1, len, entries));
    }
    return READ_OK;
}

static int read_blkio(struct v1task *k)
{
    size_t blkio = pb_begin(k->out, M_BLKIO);
    size_t start = k->out->len, entries = 0;
    TRY(read_blkio_files(k, blkio_cfq_files, 8, &entries));
    if (entries == 0) {
        pb_truncate(k->out, start);
        TRY(read_blkio_files(k, blkio_throttle_files, 2, &entries));
    }
    pb_end(k->out, blkio);
    return READ_OK;
}

static int read_all(struct v1task *k)
{
    uint64_t oom[4] = {0, 0, 0, 0};
    int have_oom = 0;
    if (k->fd[CGV1_HUGETLB] >= 0)
        TRY(read_hugetlb(k));
    if (k->fd[CGV1_PIDS] >= 0)
        TRY(read_pids(k));
    TRY(read_cpu(k));
    if (k->fd[CGV1_MEMORY] >= 0)
        TRY(read_memory(k, oom, &have_oom));
    if (k->fd[CGV1_BLKIO] >= 0)
        TRY(read_blkio(k));
    if (have_oom) {
        size_t m = pb_begin(k->out, M_OOM);
        for (uint32_t f = 1; f <= 3; f++)
            pb_uint(k->out, f, oom[f]);
        pb_end(k->out, m);
    }
    return READ_OK;
}

int cgv1_read_task(const struct cgv1_task *t, const struct cgctx *c, struct cgbuf *b,
                   struct pb *out, struct nerr *e)
{
    struct v1task k = {.t = t, .c = c, .b = b, .out = out, .e = e};
    int r = READ_OK, i;

    for (i = 0; i < CGV1_NCTRL; i++)
        k.fd[i] = -1;
    /* Open every directory first: one that is gone means the task is gone. Co-mounted
     * controllers (cpu,cpuacct) share a directory and an fd. */
    for (i = 0; i < CGV1_NCTRL && r == READ_OK; i++) {
        int j;
        if (!t->dir[i])
            continue;
        for (j = 0; j < i; j++)
            if (t->dir[j] && k.fd[j] >= 0 && strcmp(t->dir[j], t->dir[i]) == 0)
                break;
        if (j < i) {
            k.fd[i] = k.fd[j];
            continue;
        }
        r = cgf_open_dir(t->dir[i], &k.fd[i], e);
        if (r == CGF_MISSING)
            r = READ_GONE;
    }
    if (r == READ_OK)
        r = read_all(&k);
    for (i = 0; i < CGV1_NCTRL; i++) {
        int j;
        if (k.fd[i] < 0)
            continue;
        for (j = 0; j < i; j++)
            if (k.fd[j] == k.fd[i])
                break;
        if (j == i)
            close(k.fd[i]);
    }
    return r;
}
