/* Generation of the BPF_PROG_TYPE_CGROUP_DEVICE program for a device rule list (semantics in
 * devices.h).
 *
 * Shape of the program (R1 = struct bpf_cgroup_dev_ctx *, R6 = accesses still undecided):
 *
 *     R6 = ctx->access_type >> 16           the accesses the request needs
 *     if R6 == 0 goto deny                  (no such request is known; be safe)
 *     if R6 & ~(m|r|w) goto deny            an access we cannot judge
 *   for each rule, last to first (stopping after an 'a' rule):
 *     R2 = ctx->access_type & 0xffff; if R2 != type goto next     (unless 'a')
 *     R2 = ctx->major; if R2 != major goto next                   (unless wildcard)
 *     R2 = ctx->minor; if R2 != minor goto next                   (unless wildcard)
 *     deny rule:   if R6 & access goto deny     a needed access is decided "no"
 *     allow rule:  R6 &= ~access; if R6 == 0 goto allow   every needed access decided "yes"
 *   next:
 *     ...
 *   deny:  return 0        what no rule decided is denied
 *   allow: return 1
 *
 * An 'a' rule is "goto deny" or "goto allow" outright and ends the list.
 *
 * Each rule reloads the ctx fields it compares rather than keeping them in registers: the
 * registers then carry nothing from one rule to the next except R6, so the verifier sees the
 * same state at every rule whichever way it got there and its work stays linear in the rules.
 * Comparisons of numbers are 32-bit (BPF_JMP32, Linux 5.1+) so any u32 major or minor is exact.
 */
#include "devices.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define ACC_ALL (BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE)
#define REG_CTX BPF_REG_1
#define REG_TMP BPF_REG_2
#define REG_UNDECIDED BPF_REG_6
#define MAX_INSNS_PER_RULE 9
#define FIXED_INSNS 8 /* prologue 4 + two labels of 2 */

enum target { TO_NONE, TO_NEXT, TO_DENY, TO_ALLOW };

struct emitter {
    struct bpf_insn *insns;
    unsigned char *target; /* per instruction: where its jump goes, patched once known */
    size_t n;
};

static void emit(struct emitter *m, unsigned char code, unsigned char dst, unsigned char src,
                 int16_t off, int32_t imm, enum target to)
{
    struct bpf_insn *i = &m->insns[m->n];
    memset(i, 0, sizeof(*i));
    i->code = code;
    i->dst_reg = dst & 0xf;
    i->src_reg = src & 0xf;
    i->off = off;
    i->imm = imm;
    m->target[m->n] = (unsigned char)to;
    m->n++;
}

static void load_ctx_word(struct emitter *m, int16_t offset)
{
    emit(m, BPF_LDX | BPF_MEM | BPF_W, REG_TMP, REG_CTX, offset, 0, TO_NONE);
}

/* Point every pending jump of kind `to` at instruction `at`. */
static void patch(struct emitter *m, enum target to, size_t at)
{
    for (size_t k = 0; k < m->n; k++) {
        if (m->target[k] == (unsigned char)to) {
            m->insns[k].off = (int16_t)(at - (k + 1));
            m->target[k] = TO_NONE;
        }
    }
}

static int parse_access(const char *s, int *bits)
{
    *bits = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        switch (*s) {
        case 'r': *bits |= BPF_DEVCG_ACC_READ; break;
        case 'w': *bits |= BPF_DEVCG_ACC_WRITE; break;
        case 'm': *bits |= BPF_DEVCG_ACC_MKNOD; break;
        default: return -1;
        }
    }
    return 0;
}

static int check_rule(const struct dev_rule *r, size_t idx, struct nerr *e)
{
    int bits;
    if (r->type != 'a' && r->type != 'c' && r->type != 'b') {
        if (isprint((unsigned char)r->type))
            return nerr_set(e, EINVAL, "device rule %zu: type '%c' is not 'a', 'c' or 'b'", idx,
                            r->type);
        return nerr_set(e, EINVAL, "device rule %zu: type %#x is not 'a', 'c' or 'b'", idx,
                        (unsigned char)r->type);
    }
    if (parse_access(r->access, &bits) < 0)
        return nerr_set(e, EINVAL, "device rule %zu: access \"%.16s\" is not letters of \"rwm\"",
                        idx, r->access ? r->access : "");
    if (r->major != DEV_WILDCARD && (r->major < 0 || r->major > (int64_t)UINT32_MAX))
        return nerr_set(e, EINVAL, "device rule %zu: major %lld is out of range", idx,
                        (long long)r->major);
    if (r->minor != DEV_WILDCARD && (r->minor < 0 || r->minor > (int64_t)UINT32_MAX))
        return nerr_set(e, EINVAL, "device rule %zu: minor %lld is out of range", idx,
                        (long long)r->minor);
    return 0;
}

static void emit_rule(struct emitter *m, const struct dev_rule *r)
{
    int access;
    parse_access(r->access, &access);
    if (r->type != 'a') {
        load_ctx_word(m, offsetof(struct bpf_cgroup_dev_ctx, access_type));
        emit(m, BPF_ALU | BPF_AND | BPF_K, REG_TMP, 0, 0, 0xffff, TO_NONE);
        emit(m, BPF_JMP32 | BPF_JNE | BPF_K, REG_TMP, 0, 0,
             r->type == 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK, TO_NEXT);
        if (r->major != DEV_WILDCARD) {
            load_ctx_word(m, offsetof(struct bpf_cgroup_dev_ctx, major));
            emit(m, BPF_JMP32 | BPF_JNE | BPF_K, REG_TMP, 0, 0, (int32_t)(uint32_t)r->major,
                 TO_NEXT);
        }
        if (r->minor != DEV_WILDCARD) {
            load_ctx_word(m, offsetof(struct bpf_cgroup_dev_ctx, minor));
            emit(m, BPF_JMP32 | BPF_JNE | BPF_K, REG_TMP, 0, 0, (int32_t)(uint32_t)r->minor,
                 TO_NEXT);
        }
    } else {
        access = ACC_ALL;
    }
    if (!r->allow) {
        emit(m, BPF_JMP | BPF_JSET | BPF_K, REG_UNDECIDED, 0, 0, access, TO_DENY);
    } else {
        emit(m, BPF_ALU64 | BPF_AND | BPF_K, REG_UNDECIDED, 0, 0, ~access, TO_NONE);
        emit(m, BPF_JMP | BPF_JEQ | BPF_K, REG_UNDECIDED, 0, 0, 0, TO_ALLOW);
    }
    patch(m, TO_NEXT, m->n);
}

int dev_program_build(const struct dev_rule *rules, size_t n, struct bpf_insn **insns,
                      size_t *count, struct nerr *e)
{
    struct emitter m = {0};
    size_t first = 0; /* rules before the last 'a' rule are overridden by it */
    size_t cap;

    *insns = NULL;
    *count = 0;
    for (size_t k = 0; k < n; k++) {
        if (check_rule(&rules[k], k, e) < 0)
            return -1;
        if (rules[k].type == 'a')
            first = k;
    }
    if (n - first > (BPF_MAXINSNS - FIXED_INSNS) / 2) /* cheap bound before allocating */
        return nerr_set(e, E2BIG, "device program: %zu rules are too many", n - first);
    cap = FIXED_INSNS + MAX_INSNS_PER_RULE * (n - first);
    m.insns = calloc(cap, sizeof(*m.insns));
    m.target = calloc(cap, 1);
    if (!m.insns || !m.target) {
        free(m.insns);
        free(m.target);
        return nerr_set(e, ENOMEM, "device program: allocating %zu instructions", cap);
    }

    emit(&m, BPF_LDX | BPF_MEM | BPF_W, REG_UNDECIDED, REG_CTX,
         offsetof(struct bpf_cgroup_dev_ctx, access_type), 0, TO_NONE);
    emit(&m, BPF_ALU64 | BPF_RSH | BPF_K, REG_UNDECIDED, 0, 0, 16, TO_NONE);
    emit(&m, BPF_JMP | BPF_JEQ | BPF_K, REG_UNDECIDED, 0, 0, 0, TO_DENY);
    emit(&m, BPF_JMP | BPF_JSET | BPF_K, REG_UNDECIDED, 0, 0, ~ACC_ALL, TO_DENY);
    for (size_t k = n; k > first; k--)
        emit_rule(&m, &rules[k - 1]);

    patch(&m, TO_DENY, m.n); /* also where an undecided request falls through to */
    emit(&m, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0, TO_NONE);
    emit(&m, BPF_JMP | BPF_EXIT, 0, 0, 0, 0, TO_NONE);
    patch(&m, TO_ALLOW, m.n);
    emit(&m, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1, TO_NONE);
    emit(&m, BPF_JMP | BPF_EXIT, 0, 0, 0, 0, TO_NONE);
    free(m.target);

    if (m.n > BPF_MAXINSNS) {
        free(m.insns);
        return nerr_set(e, E2BIG, "device program: %zu rules need %zu instructions, more than %d",
                        n - first, m.n, BPF_MAXINSNS);
    }
    *insns = m.insns;
    *count = m.n;
    return 0;
}
