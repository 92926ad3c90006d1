# Thin wrappers over _native/devices: turn rule objects into C structs, release the GIL around
# program generation and bpf(2), turn nerr into DeviceFilterError.
import errno

from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from posix.unistd cimport close


cdef extern from "nerr.h":
    struct nerr:
        int code
        char msg[512]


cdef extern from "<linux/bpf.h>":
    struct bpf_insn:
        unsigned char code


cdef extern from "devices.h":
    struct dev_rule:
        int allow
        char type
        int64_t major
        int64_t minor
        const char *access
    int dev_program_build(const dev_rule *rules, size_t n, bpf_insn **insns, size_t *count,
                          nerr *e) nogil
    int dev_filter_attach(int cgroup_fd, const dev_rule *rules, size_t n, char *log,
                          size_t log_size, nerr *e) nogil
    int dev_prog_load(const bpf_insn *insns, size_t count, char *log, size_t log_size,
                      nerr *e) nogil


DEF LOG_SIZE = 256 * 1024


class DeviceFilterError(OSError):
    """A device filter failure: errno plus a message naming the step. When the kernel refused
    the program, `verifier_log` holds what its verifier said (else it is empty)."""

    verifier_log = ""


cdef _raise(nerr *e, const char *log=NULL):
    err = DeviceFilterError(e.code, e.msg.decode("utf-8", "replace"))
    if log != NULL:
        err.verifier_log = (<bytes>log).decode("utf-8", "replace")
    raise err


cdef int64_t _number(object value, Py_ssize_t i, str what) except? -2:
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeviceFilterError(errno.EINVAL,
                                f"device rule {i}: {what} {value!r} is not an integer or None")
    if not 0 <= value <= 0xFFFFFFFF:
        raise DeviceFilterError(errno.EINVAL, f"device rule {i}: {what} {value} is out of range")
    return value


cdef dev_rule *_convert(object rules, list keep, size_t *n) except NULL:
    """C copies of the rules; `keep` holds the access strings alive while C reads them."""
    rules = list(rules)
    cdef Py_ssize_t count = len(rules)
    cdef dev_rule *out = <dev_rule *>malloc(sizeof(dev_rule) * (count if count > 0 else 1))
    if out == NULL:
        raise MemoryError()
    try:
        for i, rule in enumerate(rules):
            kind = rule.type
            if not isinstance(kind, str) or len(kind) != 1 or not kind.isascii():
                raise DeviceFilterError(errno.EINVAL,
                                        f"device rule {i}: type {kind!r} is not 'a', 'c' or 'b'")
            access = rule.access
            if not isinstance(access, str) or not access.isascii():
                raise DeviceFilterError(
                    errno.EINVAL, f"device rule {i}: access {access!r} is not letters of 'rwm'")
            raw = access.encode("ascii")
            keep.append(raw)
            out[i].allow = 1 if rule.allow else 0
            out[i].type = ord(kind)
            out[i].major = _number(rule.major, i, "major")
            out[i].minor = _number(rule.minor, i, "minor")
            out[i].access = raw
    except BaseException:
        free(out)
        raise
    n[0] = count
    return out


def program(rules):
    """The instructions (struct bpf_insn, 8 bytes each, host byte order) for `rules`."""
    cdef list keep = []
    cdef size_t n = 0, count = 0
    cdef dev_rule *c_rules = _convert(rules, keep, &n)
    cdef bpf_insn *insns = NULL
    cdef nerr e
    cdef int r
    with nogil:
        r = dev_program_build(c_rules, n, &insns, &count, &e)
    free(c_rules)
    if r < 0:
        _raise(&e)
    try:
        return (<char *>insns)[:count * sizeof(bpf_insn)]
    finally:
        free(insns)


def attach_filter(int cgroup_fd, rules):
    """Generate, load and attach the program for `rules` to the cgroup2 directory fd."""
    cdef list keep = []
    cdef size_t n = 0
    cdef dev_rule *c_rules = _convert(rules, keep, &n)
    cdef char *log = <char *>malloc(LOG_SIZE)
    cdef nerr e
    cdef int r
    if log == NULL:
        free(c_rules)
        raise MemoryError()
    with nogil:
        r = dev_filter_attach(cgroup_fd, c_rules, n, log, LOG_SIZE, &e)
    free(c_rules)
    try:
        if r < 0:
            _raise(&e, log)
    finally:
        free(log)


def load_check(bytes insns):
    """Load raw instructions as a device program and unload them again (tests use this to see
    how a refused program is reported)."""
    if len(insns) % sizeof(bpf_insn):
        raise DeviceFilterError(errno.EINVAL, "instructions must be a multiple of 8 bytes")
    cdef const char *raw = insns
    cdef size_t count = len(insns) // sizeof(bpf_insn)
    cdef char *log = <char *>malloc(LOG_SIZE)
    cdef nerr e
    cdef int fd
    if log == NULL:
        raise MemoryError()
    with nogil:
        fd = dev_prog_load(<const bpf_insn *>raw, count, log, LOG_SIZE, &e)
    try:
        if fd < 0:
            _raise(&e, log)
        close(fd)
    finally:
        free(log)
