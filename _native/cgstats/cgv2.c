/* cgroup v2: a task's one directory -> io.containerd.cgroups.v2.Metrics, with the meaning
 * containerd/cgroups v1.0.4 gives the files ("max" is UINT64_MAX; absent files are zeros). */
#include "cgread.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Field numbers of proto/cgroups/v2/metrics.proto. */
enum { M_PIDS = 1, M_CPU = 2, M_MEMORY = 4, M_IO = 6, M_HUGETLB = 7, M_MEMORY_EVENTS = 8 };
enum { PIDS_CURRENT = 1, PIDS_LIMIT = 2 };
enum { IO_USAGE = 1 };
enum { HUGETLB_CURRENT = 1, HUGETLB_MAX = 2, HUGETLB_PAGESIZE = 3 };
enum { MEM_USAGE = 32, MEM_USAGE_LIMIT = 33, MEM_SWAP_USAGE = 34, MEM_SWAP_LIMIT = 35 };

/* CPUStat, from cpu.stat (microseconds and counts). */
static const struct cgf_key cpu_keys[] = {
    CGF_KEY("usage_usec", 1),   CGF_KEY("user_usec", 2),    CGF_KEY("system_usec", 3),
    CGF_KEY("nr_periods", 4),   CGF_KEY("nr_throttled", 5), CGF_KEY("throttled_usec", 6),
};

/* MemoryStat 1..31, from memory.stat. Keys newer kernels renamed (workingset_refault became
 * workingset_refault_anon/_file) stay 0, as in containerd. */
static const struct cgf_key memory_keys[] = {
    CGF_KEY("anon", 1),
    CGF_KEY("file", 2),
    CGF_KEY("kernel_stack", 3),
    CGF_KEY("slab", 4),
    CGF_KEY("sock", 5),
    CGF_KEY("shmem", 6),
    CGF_KEY("file_mapped", 7),
    CGF_KEY("file_dirty", 8),
    CGF_KEY("file_writeback", 9),
    CGF_KEY("anon_thp", 10),
    CGF_KEY("inactive_anon", 11),
    CGF_KEY("active_anon", 12),
    CGF_KEY("inactive_file", 13),
    CGF_KEY("active_file", 14),
    CGF_KEY("unevictable", 15),
    CGF_KEY("slab_reclaimable", 16),
    CGF_KEY("slab_unreclaimable", 17),
    CGF_KEY("pgfault", 18),
    CGF_KEY("pgmajfault", 19),
    CGF_KEY("workingset_refault", 20),
    CGF_KEY("workingset_activate", 21),
    CGF_KEY("workingset_nodereclaim", 22),
    CGF_KEY("pgrefill", 23),
    CGF_KEY("pgscan", 24),
    CGF_KEY("pgsteal", 25),
    CGF_KEY("pgactivate", 26),
    CGF_KEY("pgdeactivate", 27),
    CGF_KEY("pglazyfree", 28),
    CGF_KEY("pglazyfreed", 29),
    CGF_KEY("thp_fault_alloc", 30),
    CGF_KEY("thp_collapse_alloc", 31),
};

/* MemoryEvents, from memory.events. */
static const struct cgf_key event_keys[] = {
    CGF_KEY("low", 1), CGF_KEY("high", 2), CGF_KEY("max", 3), CGF_KEY("oom", 4),
    CGF_KEY("oom_kill", 5),
};

/* IOEntry 3..6 from the "key=value" pairs of an io.stat line. */
static const struct cgf_key io_keys[] = {
    CGF_KEY("rbytes", 3), CGF_KEY("wbytes", 4), CGF_KEY("rios", 5), CGF_KEY("wios", 6),
};

struct v2task {
    const char *dir;
    int fd;
    struct cgbuf *b;
    struct pb *out;
    struct nerr *e;
    const struct cgctx *c;
};

#define TRY(expr)                                                                              \
    do {                                                                                       \
        int r_ = (expr);                                                                       \
        if (r_ != READ_OK)                                                                     \
            return r_;                                                                         \
    } while (0)

/* An optional one-number file: absent reads as 0, as containerd. */
static int want_u64(struct v2task *k, const char *name, uint64_t *v)
{
    int r = cgf_read_u64(k->fd, k->dir, name, k->b, UINT64_MAX, v, k->e);
    if (r == CGF_MISSING)
        *v = 0;
    return r < 0 ? r : READ_OK;
}

/* A "key value" file into vals; CGF_MISSING passes through (the caller decides). */
static int read_kv(struct v2task *k, const char *name, const struct cgf_key *keys, size_t nkeys,
                   uint64_t *vals)
{
    size_t len;
    int r = cgf_read(k->fd, k->dir, name, k->b, &len, k->e);
    if (r != CGF_OK)
        return r;
    if (cgf_parse_kv(k->b->p, len, keys, nkeys, vals, k->dir, name, k->e) < 0)
        return -1;
    return READ_OK;
}

static int read_pids(struct v2task *k)
{
    uint64_t current, limit;
    size_t m;
    TRY(want_u64(k, "pids.current", &current));
    TRY(want_u64(k, "pids.max", &limit));
    m = pb_begin(k->out, M_PIDS);
    pb_uint(k->out, PIDS_CURRENT, current);
    pb_uint(k->out, PIDS_LIMIT, limit);
    pb_end(k->out, m);
    return READ_OK;
}

/* cpu.stat is in every v2 cgroup: its absence means the cgroup is gone (or dir is not one). */
static int read_cpu(struct v2task *k)
{
    uint64_t v[7];
    size_t m;
    int r;
    memset(v, 0, sizeof(v));
    r = read_kv(k, "cpu.stat", cpu_keys, sizeof(cpu_keys) / sizeof(cpu_keys[0]), v);
    if (r == CGF_MISSING)
        return cg_required_missing(k->dir, "cpu.stat", k->e);
    if (r < 0)
        return r;
    m = pb_begin(k->out, M_CPU);
    for (uint32_t f = 1; f <= 6; f++)
        pb_uint(k->out, f, v[f]);
    pb_end(k->out, m);
    return READ_OK;
}

static int read_memory(struct v2task *k)
{
    uint64_t v[MEM_SWAP_LIMIT + 1];
    size_t m;
    int r;
    memset(v, 0, sizeof(v));
    r = read_kv(k, "memory.stat", memory_keys, sizeof(memory_keys) / sizeof(memory_keys[0]), v);
    if (r < 0)
        return r;
    TRY(want_u64(k, "memory.current", &v[MEM_USAGE]));
    TRY(want_u64(k, "memory.max", &v[MEM_USAGE_LIMIT]));
    TRY(want_u64(k, "memory.swap.current", &v[MEM_SWAP_USAGE]));
    TRY(want_u64(k, "memory.swap.max", &v[MEM_SWAP_LIMIT]));
    m = pb_begin(k->out, M_MEMORY);
    for (uint32_t f = 1; f <= MEM_SWAP_LIMIT; f++)
        pb_uint(k->out, f, v[f]);
    pb_end(k->out, m);
    return READ_OK;
}

/* io.stat lines: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N"; the d* keys
 * have no field. */
static int read_io(struct v2task *k)
{
    size_t len, io;
    const char *p, *end;
    int r = cgf_read(k->fd, k->dir, "io.stat", k->b, &len, k->e);
    if (r < 0)
        return r;
    io = pb_begin(k->out, M_IO);
    if (r == CGF_MISSING) {
        pb_end(k->out, io);
        return READ_OK;
    }
    p = k->b->p;
    end = p + len;
    while (p < end) {
        const char *line = p, *eol = memchr(p, '\n', (size_t)(end - p));
        uint64_t v[7];
        size_t m, hint = 0;
        if (!eol)
            eol = end;
        memset(v, 0, sizeof(v));
        if (eol == line) {
            p = eol + 1;
            continue;
        }
        if (cgf_parse_u64(&p, eol, &v[1]) < 0 || p == eol || *p++ != ':' ||
            cgf_parse_u64(&p, eol, &v[2]) < 0)
            goto bad;
        while (p < eol) {
            const char *key, *eq;
            const struct cgf_key *key_entry;
            while (p < eol && *p == ' ')
                p++;
            if (p == eol)
                break;
            key = p;
            eq = memchr(p, '=', (size_t)(eol - p));
            if (!eq)
                goto bad;
            p = eq + 1;
            key_entry = cgf_find_key(io_keys, sizeof(io_keys) / sizeof(io_keys[0]), &hint, key,
                                     (size_t)(eq - key));
            if (key_entry && (cgf_parse_u64(&p, eol, &v[key_entry->field]) < 0 ||
                              (p < eol && *p != ' ')))
                goto bad;
            while (p < eol && *p != ' ') /* the value of a key we skip */
                p++;
        }
        m = pb_begin(k->out, IO_USAGE);
        for (uint32_t f = 1; f <= 6; f++)
            pb_uint(k->out, f, v[f]);
        pb_end(k->out, m);
        p = eol + (eol < end);
        continue;
    bad:
        return nerr_set(k->e, EINVAL, "parse %s/io.stat: bad line \"%.*s\"", k->dir,
                        (int)(eol - line > 80 ? 80 : eol - line), line);
    }
    pb_end(k->out, io);
    return READ_OK;
}

/* hugetlb.<size>.current and .max for the sizes the host has; a size with neither file is
 * left out (the hugetlb controller is not enabled for this cgroup). */
static int read_hugetlb(struct v2task *k)
{
    const struct cgstats_opts *o = k->c->opts;
    for (size_t i = 0; i < o->n_hugetlb; i++) {
        const char *size = o->hugetlb_sizes[i];
        uint64_t v[2] = {0, 0};
        int found = 0;
        size_t m;
        for (int f = 0; f < 2; f++) {
            char name[96];
            int r;
            snprintf(name, sizeof(name), "hugetlb.%s.%s", size, f == 0 ? "current" : "max");
            r = cgf_read_u64(k->fd, k->dir, name, k->b, UINT64_MAX, &v[f], k->e);
            if (r < 0)
                return r;
            if (r == CGF_OK)
                found = 1;
            else
                v[f] = 0;
        }
        if (!found)
            continue;
        m = pb_begin(k->out, M_HUGETLB);
        pb_uint(k->out, HUGETLB_CURRENT, v[0]);
        pb_uint(k->out, HUGETLB_MAX, v[1]);
        pb_str(k->out, HUGETLB_PAGESIZE, size, strlen(size));
        pb_end(k->out, m);
    }
    return READ_OK;
}

/* Written only when memory.events exists, as containerd. */
static int read_memory_events(struct v2task *k)
{
    uint64_t v[6];
    size_t m;
    int r;
    memset(v, 0, sizeof(v));
    r = read_kv(k, "memory.events", event_keys, sizeof(event_keys) / sizeof(event_keys[0]), v);
    if (r < 0)
        return r;
    if (r == CGF_MISSING)
        return READ_OK;
    m = pb_begin(k->out, M_MEMORY_EVENTS);
    for (uint32_t f = 1; f <= 5; f++)
        pb_uint(k->out, f, v[f]);
    pb_end(k->out, m);
    return READ_OK;
}

/* Fields in ascending order. RdmaStat (5) is not read: containerd writes it, empty unless
 * the rare rdma controller is on, and no client we know reads it. */
int cgv2_read_task(const char *dir, const struct cgctx *c, struct cgbuf *b, struct pb *out,
                   struct nerr *e)
{
    struct v2task k = {.dir = dir, .b = b, .out = out, .e = e, .c = c};
    int r = cgf_open_dir(dir, &k.fd, e);
    if (r == CGF_MISSING)
        return READ_GONE;
    if (r < 0)
        return r;
    r = read_pids(&k);
    if (r == READ_OK)
        r = read_cpu(&k);
    if (r == READ_OK)
        r = read_memory(&k);
    if (r == READ_OK)
        r = read_io(&k);
    if (r == READ_OK)
        r = read_hugetlb(&k);
    if (r == READ_OK)
        r = read_memory_events(&k);
    close(k.fd);
    return r;
}
