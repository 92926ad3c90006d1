/* Device rules of an OCI spec enforced on cgroup v2 by a BPF_PROG_TYPE_CGROUP_DEVICE program.
 *
 * Semantics (those of the v1 devices controller as runc applies them, made exact per access):
 *   - Rules are read in order and the LAST rule that matches decides. A rule matches a device
 *     when its type is 'a' or equals the device's ('c' or 'b'), and its major and minor are
 *     wildcards (-1) or equal the device's.
 *   - The decision is made for each access the request needs (an open for read and write needs
 *     'r' and 'w'; mknod needs 'm'): for each one, the last matching rule whose access letters
 *     include it decides. The request is allowed only when every needed access is allowed.
 *   - An access no rule decides is denied (default deny, like runc), and so is a request for an
 *     access bit the kernel may add in the future.
 *   - A rule of type 'a' is a reset, as the v1 controller reads "a": it matches every device and
 *     every access, whatever its major, minor and access letters say. Rules before the last 'a'
 *     rule therefore never matter and are left out of the program.
 *
 * Errors follow nerr.h. Codes callers can rely on:
 *   EINVAL  a malformed rule (type not a/c/b, access not letters of "rwm", number out of range)
 *   E2BIG   so many rules that the program would exceed BPF_MAXINSNS (4096) instructions
 *   anything else  from bpf(2), named in the message with the step (BPF_PROG_LOAD or
 *           BPF_PROG_ATTACH); a load failure adds the verifier's last line.
 */
#ifndef TASKAGENT_DEVICES_H
#define TASKAGENT_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include <linux/bpf.h>

#include "nerr.h"

#define DEV_WILDCARD (-1)

struct dev_rule {
    int allow;          /* nonzero: allow; zero: deny */
    char type;          /* 'a', 'c' or 'b' */
    int64_t major;      /* DEV_WILDCARD or 0..UINT32_MAX */
    int64_t minor;      /* DEV_WILDCARD or 0..UINT32_MAX */
    const char *access; /* letters of "rwm", at least one; NUL-terminated */
};

/* Generate the program for rules[0..n). On success *insns is malloc'ed (caller frees) and
 * *count is its length in instructions. */
int dev_program_build(const struct dev_rule *rules, size_t n, struct bpf_insn **insns,
                      size_t *count, struct nerr *e);

/* Generate, load (BPF_PROG_LOAD) and attach (BPF_PROG_ATTACH, BPF_CGROUP_DEVICE,
 * BPF_F_ALLOW_MULTI) the program to the cgroup2 directory cgroup_fd, then close the program fd:
 * the attachment holds the program until the cgroup is removed. Programs attached before stay
 * attached (the kernel runs all of them; every one must allow).
 *
 * When the load fails and log/log_size is given, the verifier's log is written there (NUL-
 * terminated, possibly cut) for the caller to show; log[0] is '\0' otherwise. */
int dev_filter_attach(int cgroup_fd, const struct dev_rule *rules, size_t n, char *log,
                      size_t log_size, struct nerr *e);

/* Load instructions as a BPF_PROG_TYPE_CGROUP_DEVICE program; returns its fd (O_CLOEXEC).
 * The log works as for dev_filter_attach. Used by dev_filter_attach, and by tests to check
 * that a failed load reports the verifier's words. */
int dev_prog_load(const struct bpf_insn *insns, size_t count, char *log, size_t log_size,
                  struct nerr *e);

#endif
