/* Loading the device program with bpf(2) and attaching it to a cgroup2 directory. */
#include "devices.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Any string does: the program calls no helper at all, so no GPL-only one; this is ours. */
#define PROG_LICENSE "Apache-2.0"
#define PROG_NAME "taskagent_dev" /* shown by bpftool; < BPF_OBJ_NAME_LEN */
#define LOAD_TRIES 5              /* the verifier gives EAGAIN when a signal interrupts it */
#define LOG_MIN 128               /* the kernel refuses smaller log buffers */
#define LOG_MAX (UINT32_MAX >> 2) /* and larger ones */

static int sys_bpf(int cmd, union bpf_attr *attr)
{
    return (int)syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static int prog_load(const struct bpf_insn *insns, size_t count, char *log, size_t log_size)
{
    union bpf_attr a;
    int fd = -1;

    memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    a.insns = (uint64_t)(uintptr_t)insns;
    a.insn_cnt = (uint32_t)count;
    a.license = (uint64_t)(uintptr_t)PROG_LICENSE;
    memcpy(a.prog_name, PROG_NAME, sizeof(PROG_NAME));
    if (log) {
        a.log_buf = (uint64_t)(uintptr_t)log;
        a.log_size = (uint32_t)(log_size > LOG_MAX ? LOG_MAX : log_size);
        a.log_level = 1;
    }
    for (int tries = 0; tries < LOAD_TRIES; tries++) {
        fd = sys_bpf(BPF_PROG_LOAD, &a);
        if (fd >= 0 || errno != EAGAIN)
            break;
    }
    return fd;
}

/* The verifier's verdict is its last line, before the statistics it prints after it. */
static const char *verdict(char *log, size_t *len)
{
    static const char *const stats[] = {"processed ", "verification time ", "stack depth "};
    size_t end = strlen(log);
    for (;;) {
        size_t start;
        int is_stats = 0;
        while (end > 0 && (log[end - 1] == '\n' || log[end - 1] == ' '))
            end--;
        start = end;
        while (start > 0 && log[start - 1] != '\n')
            start--;
        for (size_t k = 0; k < sizeof(stats) / sizeof(stats[0]); k++)
            if (strncmp(log + start, stats[k], strlen(stats[k])) == 0)
                is_stats = 1;
        if (!is_stats || start == 0) {
            *len = is_stats ? 0 : end - start;
            return log + start;
        }
        end = start;
    }
}

int dev_prog_load(const struct bpf_insn *insns, size_t count, char *log, size_t log_size,
                  struct nerr *e)
{
    size_t len = 0;
    const char *line;
    int fd, err;

    if (log && log_size > 0)
        log[0] = '\0';
    /* Load without a log first (the common case, and cheaper); load again with the log only to
     * explain a failure. */
    fd = prog_load(insns, count, NULL, 0);
    if (fd >= 0)
        return fd;
    err = errno;
    if (!log || log_size < LOG_MIN)
        return nerr_sys(e, err, "BPF_PROG_LOAD of the device program (%zu instructions)", count);
    fd = prog_load(insns, count, log, log_size);
    if (fd >= 0) { /* the first failure was transient */
        log[0] = '\0';
        return fd;
    }
    log[log_size - 1] = '\0';
    line = verdict(log, &len);
    if (len == 0)
        return nerr_sys(e, err, "BPF_PROG_LOAD of the device program (%zu instructions)", count);
    return nerr_set(e, err, "BPF_PROG_LOAD of the device program (%zu instructions): %s; "
                    "verifier: %.*s", count, strerror(err), (int)(len > 300 ? 300 : len), line);
}

int dev_filter_attach(int cgroup_fd, const struct dev_rule *rules, size_t n, char *log,
                      size_t log_size, struct nerr *e)
{
    struct bpf_insn *insns;
    size_t count;
    union bpf_attr a;
    int prog_fd, err;

    if (log && log_size > 0)
        log[0] = '\0';
    if (dev_program_build(rules, n, &insns, &count, e) < 0)
        return -1;
    prog_fd = dev_prog_load(insns, count, log, log_size, e);
    free(insns);
    if (prog_fd < 0)
        return -1;

    memset(&a, 0, sizeof(a));
    a.target_fd = (uint32_t)cgroup_fd;
    a.attach_bpf_fd = (uint32_t)prog_fd;
    a.attach_type = BPF_CGROUP_DEVICE;
    a.attach_flags = BPF_F_ALLOW_MULTI;
    if (sys_bpf(BPF_PROG_ATTACH, &a) < 0) {
        err = errno;
        close(prog_fd);
        return nerr_sys(e, err, "BPF_PROG_ATTACH (device program) to cgroup fd %d", cgroup_fd);
    }
    close(prog_fd); /* the attachment holds the program for the cgroup's life */
    return 0;
}
