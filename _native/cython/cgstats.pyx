# Thin wrappers over _native/cgstats: gather the paths with the GIL, read the whole batch
# without it, then turn the C results into bytes (or None for a task whose cgroup is gone).
import os

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.stdint cimport uint8_t


cdef extern from "nerr.h":
    struct nerr:
        int code
        char msg[512]


cdef extern from "cgstats.h":
    enum:
        CGV1_HUGETLB
        CGV1_PIDS
        CGV1_CPU
        CGV1_CPUACCT
        CGV1_MEMORY
        CGV1_BLKIO
        CGV1_NCTRL
        CGSTATS_GONE
        CGSTATS_OK

    struct cgv1_task:
        const char *dir[6]

    struct cgstats_opts:
        const char *const *hugetlb_sizes
        size_t n_hugetlb
        int threads

    struct cgstats_result:
        uint8_t *data
        size_t len
        int state

    int cgstats_read_v1(const cgv1_task *tasks, size_t n, const cgstats_opts *o,
                        cgstats_result *out, nerr *e) nogil
    int cgstats_read_v2(const char *const *dirs, size_t n, const cgstats_opts *o,
                        cgstats_result *out, nerr *e) nogil
    void cgstats_free(cgstats_result *out, size_t n) nogil


class CgroupStatsError(OSError):
    """Reading a task's cgroup files failed for a reason other than the cgroup being gone:
    errno plus a message naming the file and the step."""


# The v1 controllers the reader uses; other keys of a task's dict (cpuset, freezer...) are
# ignored, so a cgroup manager's full controller->directory map can be passed as is.
V1_CONTROLLERS = {
    "hugetlb": CGV1_HUGETLB,
    "pids": CGV1_PIDS,
    "cpu": CGV1_CPU,
    "cpuacct": CGV1_CPUACCT,
    "memory": CGV1_MEMORY,
    "blkio": CGV1_BLKIO,
}

assert CGV1_NCTRL == 6


cdef class _Opts:
    """The options struct and the byte strings its pointers point into."""
    cdef cgstats_opts opts
    cdef const char **sizes
    cdef list keep

    def __cinit__(self, hugetlb_sizes, int threads):
        cdef Py_ssize_t i
        self.keep = [os.fsencode(s) for s in hugetlb_sizes]
        for s in self.keep:
            if not s or b"/" in s or b"\0" in s or len(s) > 32:
                raise ValueError(f"bad hugetlb page size {s!r}")
        self.sizes = <const char **>PyMem_Calloc(len(self.keep) + 1, sizeof(char *))
        if self.sizes == NULL:
            raise MemoryError()
        for i in range(len(self.keep)):
            self.sizes[i] = <bytes>self.keep[i]
        self.opts.hugetlb_sizes = self.sizes
        self.opts.n_hugetlb = len(self.keep)
        self.opts.threads = threads

    def __dealloc__(self):
        PyMem_Free(self.sizes)


cdef bytes _path(p):
    b = os.fsencode(p)
    if b"\0" in b:
        raise ValueError(f"cgroup directory {p!r} contains a NUL byte")
    return b


cdef list _collect(cgstats_result *res, Py_ssize_t n):
    cdef list out = [None] * n
    cdef Py_ssize_t i
    for i in range(n):
        if res[i].state == CGSTATS_OK:
            out[i] = PyBytes_FromStringAndSize(<char *>res[i].data, res[i].len)
    return out


cdef _raise(nerr *e):
    raise CgroupStatsError(e.code, e.msg.decode("utf-8", "surrogateescape"))


def read_v1(list tasks, hugetlb_sizes=(), int threads=0):
    """Serialized io.containerd.cgroups.v1.Metrics for each task, in order; None for a task
    whose cgroup is gone. A task is a dict controller -> directory (missing controllers are
    left out of the message)."""
    cdef Py_ssize_t n = len(tasks), i
    cdef int idx, r
    cdef nerr e
    cdef _Opts o = _Opts(hugetlb_sizes, threads)
    cdef list keep = []
    cdef cgv1_task *ct = NULL
    cdef cgstats_result *res = NULL
    if n == 0:
        return []
    ct = <cgv1_task *>PyMem_Calloc(n, sizeof(cgv1_task))
    res = <cgstats_result *>PyMem_Calloc(n, sizeof(cgstats_result))
    try:
        if ct == NULL or res == NULL:
            raise MemoryError()
        for i in range(n):
            for name, d in tasks[i].items():
                ctrl = V1_CONTROLLERS.get(name)
                if ctrl is None or d is None:
                    continue
                b = _path(d)
                keep.append(b)
                idx = ctrl
                ct[i].dir[idx] = <bytes>b
        with nogil:
            r = cgstats_read_v1(ct, n, &o.opts, res, &e)
        if r < 0:
            _raise(&e)
        try:
            return _collect(res, n)
        finally:
            cgstats_free(res, n)
    finally:
        PyMem_Free(ct)
        PyMem_Free(res)


def read_v2(list dirs, hugetlb_sizes=(), int threads=0):
    """Serialized io.containerd.cgroups.v2.Metrics for each cgroup directory, in order; None
    for one that is gone."""
    cdef Py_ssize_t n = len(dirs), i
    cdef int r
    cdef nerr e
    cdef _Opts o = _Opts(hugetlb_sizes, threads)
    cdef list keep = []
    cdef const char **cd = NULL
    cdef cgstats_result *res = NULL
    if n == 0:
        return []
    cd = <const char **>PyMem_Calloc(n, sizeof(char *))
    res = <cgstats_result *>PyMem_Calloc(n, sizeof(cgstats_result))
    try:
        if cd == NULL or res == NULL:
            raise MemoryError()
        for i in range(n):
            b = _path(dirs[i])
            keep.append(b)
            cd[i] = <bytes>b
        with nogil:
            r = cgstats_read_v2(cd, n, &o.opts, res, &e)
        if r < 0:
            _raise(&e)
        try:
            return _collect(res, n)
        finally:
            cgstats_free(res, n)
    finally:
        PyMem_Free(cd)
        PyMem_Free(res)
