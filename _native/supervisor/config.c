#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A bump allocator over one block sized from the payload: strings plus arrays. */
struct arena {
    char *base;
    size_t used, cap;
};

static void *arena_alloc(struct arena *a, size_t n)
{
    void *p;
    n = (n + 7) & ~(size_t)7;
    if (a->used + n > a->cap)
        return NULL;
    p = a->base + a->used;
    a->used += n;
    return p;
}

static const char *arena_str(struct arena *a, const struct sv_field *f)
{
    char *s = arena_alloc(a, f->len + 1);
    if (!s)
        return NULL;
    memcpy(s, f->val, f->len);
    s[f->len] = '\0';
    return s;
}

struct counts {
    int rootfs_mounts, mounts, devices, masked, readonly, sysctls, args, env, gids, rlimits;
};

static int count_fields(const uint8_t *payload, size_t len, struct counts *c)
{
    struct sv_iter it;
    struct sv_field f;
    int r;
    memset(c, 0, sizeof(*c));
    sv_iter_init(&it, payload, len);
    while ((r = sv_iter_next(&it, &f)) > 0) {
        switch (f.tag) {
        case T_ROOTFS_MOUNT: c->rootfs_mounts++; break;
        case T_MOUNT: c->mounts++; break;
        case T_DEVICE: c->devices++; break;
        case T_MASKED: c->masked++; break;
        case T_READONLY_PATH: c->readonly++; break;
        case T_SYSCTL: c->sysctls++; break;
        case T_ARG: c->args++; break;
        case T_ENV: c->env++; break;
        case T_ADDITIONAL_GID: c->gids++; break;
        case T_RLIMIT: c->rlimits++; break;
        default: break;
        }
    }
    return r;
}

static int decode_mount(struct arena *a, const struct sv_field *outer, struct sv_mount *m)
{
    struct sv_iter it;
    struct sv_field f;
    int r;
    memset(m, 0, sizeof(*m));
    sv_iter_init(&it, outer->val, outer->len);
    while ((r = sv_iter_next(&it, &f)) > 0) {
        switch (f.tag) {
        case T_M_DEST: m->dest = arena_str(a, &f); break;
        case T_M_TYPE: m->type = arena_str(a, &f); break;
        case T_M_SOURCE: m->source = arena_str(a, &f); break;
        case T_M_DATA: m->data = arena_str(a, &f); break;
        case T_M_FLAGS: m->flags = sv_field_u64(&f); break;
        case T_M_PROPAGATION: m->propagation = sv_field_u64(&f); break;
        case T_M_BIND: m->bind = (int)sv_field_u64(&f); break;
        case T_M_RECURSIVE_RO: m->recursive_ro = (int)sv_field_u64(&f); break;
        default: break;
        }
    }
    return r < 0 || !m->dest ? -1 : 0;
}

static int decode_device(struct arena *a, const struct sv_field *outer, struct sv_device *d)
{
    struct sv_iter it;
    struct sv_field f;
    int r;
    memset(d, 0, sizeof(*d));
    sv_iter_init(&it, outer->val, outer->len);
    while ((r = sv_iter_next(&it, &f)) > 0) {
        switch (f.tag) {
        case T_M_DEST: d->path = arena_str(a, &f); break;
        case T_DEV_TYPE: d->type = (char)sv_field_u64(&f); break;
        case T_DEV_MAJOR: d->major = sv_field_u64(&f); break;
        case T_DEV_MINOR: d->minor = sv_field_u64(&f); break;
        case T_DEV_MODE: d->mode = sv_field_u64(&f); break;
        case T_UID: d->uid = sv_field_u64(&f); break;
        case T_GID: d->gid = sv_field_u64(&f); break;
        default: break;
        }
    }
    return r < 0 || !d->path ? -1 : 0;
}

static int decode_nsjoin(const struct sv_field *outer, struct sv_packet *pkt, struct sv_nsjoin *j)
{
    struct sv_iter it;
    struct sv_field f;
    int r;
    j->nstype = 0;
    j->fd = -1;
    sv_iter_init(&it, outer->val, outer->len);
    while ((r = sv_iter_next(&it, &f)) > 0) {
        if (f.tag == T_NS_TYPE)
            j->nstype = (int)sv_field_u64(&f);
        else if (f.tag == T_FD)
            j->fd = sv_take_fd(pkt, sv_field_u64(&f));
    }
    return r < 0 || j->fd < 0 ? -1 : 0;
}

int config_decode(struct spawn_config *cfg, struct sv_packet *pkt, struct nerr *e)
{
    struct counts c;
    struct arena a;
    struct sv_iter it;
    struct sv_field f;
    size_t len = pkt->hdr.length;
    int r, fail = 0;
    int i_rm = 0, i_m = 0, i_d = 0, i_mask = 0, i_ro = 0, i_sys = 0, i_arg = 0, i_env = 0,
        i_gid = 0, i_rl = 0;

    memset(cfg, 0, sizeof(*cfg));
    cfg->cgroup_dir = cfg->stdin_fifo = cfg->stdout_fifo = cfg->stderr_fifo = -1;
    cfg->stdin_hold = cfg->stdout_hold = cfg->stderr_hold = -1;
    cfg->proc_stdin = cfg->proc_stdout = cfg->proc_stderr = -1;
    if (count_fields(pkt->payload, len, &c) < 0)
        return nerr_set(e, EBADMSG, "decoding spawn request: malformed payload");

    a.cap = len * 2 + 64 +
            sizeof(struct sv_mount) * (size_t)(c.rootfs_mounts + c.mounts) +
            sizeof(struct sv_device) * (size_t)c.devices +
            sizeof(char *) * (size_t)(c.masked + c.readonly + c.sysctls + c.args + c.env + 2) +
            sizeof(gid_t) * (size_t)c.gids + sizeof(struct sv_rlimit) * (size_t)c.rlimits + 256;
    a.used = 0;
    a.base = malloc(a.cap);
    if (!a.base)
        return nerr_set(e, ENOMEM, "decoding spawn request: out of memory");
    cfg->arena = a.base;
    cfg->rootfs_mounts = arena_alloc(&a, sizeof(struct sv_mount) * (size_t)c.rootfs_mounts);
    cfg->mounts = arena_alloc(&a, sizeof(struct sv_mount) * (size_t)c.mounts);
    cfg->devices = arena_alloc(&a, sizeof(struct sv_device) * (size_t)c.devices);
    cfg->masked = arena_alloc(&a, sizeof(char *) * (size_t)c.masked);
    cfg->readonly = arena_alloc(&a, sizeof(char *) * (size_t)c.readonly);
    cfg->sysctls = arena_alloc(&a, sizeof(char *) * (size_t)c.sysctls);
    cfg->args = arena_alloc(&a, sizeof(char *) * (size_t)(c.args + 1));
    cfg->env = arena_alloc(&a, sizeof(char *) * (size_t)(c.env + 1));
    cfg->gids = arena_alloc(&a, sizeof(gid_t) * (size_t)c.gids);
    cfg->rlimits = arena_alloc(&a, sizeof(struct sv_rlimit) * (size_t)c.rlimits);

    sv_iter_init(&it, pkt->payload, len);
    while (!fail && (r = sv_iter_next(&it, &f)) > 0) {
        switch (f.tag) {
        case T_KEY: cfg->key = arena_str(&a, &f); break;
        case T_PARENT_KEY: cfg->parent_key = arena_str(&a, &f); break;
        case T_CLONE_FLAGS: cfg->clone_flags = sv_field_u64(&f); break;
        case T_NS_JOIN:
            if (cfg->n_ns_join >= SV_MAX_NS_JOIN ||
                decode_nsjoin(&f, pkt, &cfg->ns_join[cfg->n_ns_join]) < 0)
                fail = 1;
            else
                cfg->n_ns_join++;
            break;
        case T_CGROUP_PROCS:
            if (cfg->n_cgroup_procs >= SV_MAX_CGROUPS)
                fail = 1;
            else if ((cfg->cgroup_procs[cfg->n_cgroup_procs] = sv_take_fd(pkt, sv_field_u64(&f))) < 0)
                fail = 1;
            else
                cfg->n_cgroup_procs++;
            break;
        case T_CGROUP_DIR: cfg->cgroup_dir = sv_take_fd(pkt, sv_field_u64(&f)); break;
        case T_ROOTFS: cfg->rootfs = arena_str(&a, &f); break;
        case T_ROOTFS_MOUNT: fail = decode_mount(&a, &f, &cfg->rootfs_mounts[i_rm++]) < 0; break;
        case T_ROOT_READONLY: cfg->root_readonly = (int)sv_field_u64(&f); break;
        case T_ROOT_PROPAGATION: cfg->root_propagation = sv_field_u64(&f); break;
        case T_MOUNT: fail = decode_mount(&a, &f, &cfg->mounts[i_m++]) < 0; break;
        case T_DEVICE: fail = decode_device(&a, &f, &cfg->devices[i_d++]) < 0; break;
        case T_DEFAULT_DEVICES: cfg->default_devices = (int)sv_field_u64(&f); break;
        case T_MASKED: cfg->masked[i_mask++] = arena_str(&a, &f); break;
        case T_READONLY_PATH: cfg->readonly[i_ro++] = arena_str(&a, &f); break;
        case T_HOSTNAME: cfg->hostname = arena_str(&a, &f); break;
        case T_PIDFILE: cfg->pidfile = arena_str(&a, &f); break;
        case T_DOMAINNAME: cfg->domainname = arena_str(&a, &f); break;
        case T_SYSCTL: cfg->sysctls[i_sys++] = arena_str(&a, &f); break;
        case T_ARG: cfg->args[i_arg++] = arena_str(&a, &f); break;
        case T_ENV: cfg->env[i_env++] = arena_str(&a, &f); break;
        case T_CWD: cfg->cwd = arena_str(&a, &f); break;
        case T_UID: cfg->uid = (uint32_t)sv_field_u64(&f); break;
        case T_GID: cfg->gid = (uint32_t)sv_field_u64(&f); break;
        case T_ADDITIONAL_GID: cfg->gids[i_gid++] = (gid_t)sv_field_u64(&f); break;
        case T_UMASK: cfg->has_umask = 1; cfg->umask = (uint32_t)sv_field_u64(&f); break;
        case T_RLIMIT:
            if (f.len != 24) {
                fail = 1;
                break;
            }
            memcpy(&cfg->rlimits[i_rl++], f.val, 24);
            break;
        case T_CAP_BOUNDING: cfg->has_caps = 1; cfg->cap_bounding = sv_field_u64(&f); break;
        case T_CAP_EFFECTIVE: cfg->has_caps = 1; cfg->cap_effective = sv_field_u64(&f); break;
        case T_CAP_PERMITTED: cfg->has_caps = 1; cfg->cap_permitted = sv_field_u64(&f); break;
        case T_CAP_INHERITABLE: cfg->has_caps = 1; cfg->cap_inheritable = sv_field_u64(&f); break;
        case T_CAP_AMBIENT: cfg->has_caps = 1; cfg->cap_ambient = sv_field_u64(&f); break;
        case T_NO_NEW_PRIVS: cfg->no_new_privs = (int)sv_field_u64(&f); break;
        case T_OOM_SCORE_ADJ:
            cfg->has_oom_score_adj = 1;
            cfg->oom_score_adj = (int64_t)sv_field_u64(&f);
            break;
        case T_TERMINAL: cfg->terminal = (int)sv_field_u64(&f); break;
        case T_WIDTH: cfg->width = (uint32_t)sv_field_u64(&f); break;
        case T_HEIGHT: cfg->height = (uint32_t)sv_field_u64(&f); break;
        case T_LOOPBACK_UP: cfg->loopback_up = (int)sv_field_u64(&f); break;
        case T_STDIN_FD: cfg->stdin_fifo = sv_take_fd(pkt, sv_field_u64(&f)); break;
        case T_STDOUT_FD: cfg->stdout_fifo = sv_take_fd(pkt, sv_field_u64(&f)); break;
        case T_STDERR_FD: cfg->stderr_fifo = sv_take_fd(pkt, sv_field_u64(&f)); break;
        case T_ANNOTATION:
            cfg->annotation = arena_alloc(&a, f.len + 1);
            if (!cfg->annotation) {
                fail = 1;
                break;
            }
            memcpy(cfg->annotation, f.val, f.len);
            cfg->annotation_len = f.len;
            break;
        case T_STDIN_HOLD: cfg->stdin_hold = sv_take_fd(pkt, sv_field_u64(&f)); break;
        case T_STDOUT_HOLD: cfg->stdout_hold = sv_take_fd(pkt, sv_field_u64(&f)); break;
        case T_STDERR_HOLD: cfg->stderr_hold = sv_take_fd(pkt, sv_field_u64(&f)); break;
        default: break;
        }
    }
    cfg->n_rootfs_mounts = i_rm;
    cfg->n_mounts = i_m;
    cfg->n_devices = i_d;
    cfg->n_masked = i_mask;
    cfg->n_readonly = i_ro;
    cfg->n_sysctls = i_sys;
    cfg->n_args = i_arg;
    cfg->n_env = i_env;
    cfg->n_gids = i_gid;
    cfg->n_rlimits = i_rl;
    cfg->args[i_arg] = NULL;
    cfg->env[i_env] = NULL;
    if (fail || r < 0) {
        config_free(cfg);
        return nerr_set(e, EBADMSG, "decoding spawn request: malformed field");
    }
    if (!cfg->key || cfg->n_args == 0) {
        config_free(cfg);
        return nerr_set(e, EINVAL, "decoding spawn request: key and args are required");
    }
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

void config_close_child_fds(struct spawn_config *cfg)
{
    int i;
    for (i = 0; i < cfg->n_ns_join; i++)
        close_fd(&cfg->ns_join[i].fd);
    for (i = 0; i < cfg->n_cgroup_procs; i++)
        close_fd(&cfg->cgroup_procs[i]);
    cfg->n_cgroup_procs = 0;
    cfg->n_ns_join = 0;
    close_fd(&cfg->cgroup_dir);
    close_fd(&cfg->proc_stdin);
    close_fd(&cfg->proc_stdout);
    close_fd(&cfg->proc_stderr);
}

void config_free(struct spawn_config *cfg)
{
    config_close_child_fds(cfg);
    close_fd(&cfg->stdin_hold);
    close_fd(&cfg->stdout_hold);
    close_fd(&cfg->stderr_hold);
    close_fd(&cfg->stdin_fifo);
    close_fd(&cfg->stdout_fifo);
    close_fd(&cfg->stderr_fifo);
    free(cfg->arena);
    cfg->arena = NULL;
}
