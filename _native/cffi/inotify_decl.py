"""The inotify declarations for cffi. setup.py compiles them at build time into
agent/native/_inotify_cffi.py (cffi's out-of-line ABI mode: libc is opened at run time and
nothing is parsed then)."""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef("""
    int inotify_init1(int flags);
    int inotify_add_watch(int fd, const char *pathname, uint32_t mask);
    int inotify_rm_watch(int fd, int wd);
""")
ffibuilder.set_source("_inotify_cffi", None)
