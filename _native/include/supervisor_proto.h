/* The agent <-> supervisor protocol, version 1.
 *
 * Transport: AF_UNIX SOCK_SEQPACKET; one message per packet; file descriptors travel as
 * SCM_RIGHTS beside the packet and are referred to by index from FD-typed fields.
 *
 * Packet = header + payload. Payload = fields, each: u16 tag, u16 zero, u32 length, value.
 * Integers are 8 bytes little-endian. Strings are raw bytes without a terminator. Nested
 * records (a mount, a process in a listing) are a field whose value is itself a payload.
 * Unknown tags are skipped, so either side may add fields without breaking the other.
 *
 * The agent (agent/runtime/native/protocol.py mirrors these numbers; a test compares them)
 * sends requests with an id; the supervisor answers each with REPLY and the same id, and
 * pushes EV_EXIT (id 0) whenever a process it holds has exited.
 */
#ifndef TASKAGENT_SUPERVISOR_PROTO_H
#define TASKAGENT_SUPERVISOR_PROTO_H

#include <stdint.h>

#define SV_MAGIC 0x56534154u /* "TASV" */
#define SV_VERSION 1
#define SV_MAX_PACKET (1u << 20)
#define SV_MAX_FDS 32

struct sv_header {
    uint32_t magic;
    uint16_t version;
    uint16_t type;
    uint32_t id;
    uint32_t length; /* payload bytes after the header */
};

/* Message types. */
enum {
    SV_HELLO = 1,       /* -> VERSION; <- VERSION, PID, STARTED_AT */
    SV_CREATE = 2,      /* create an init process, stopped before exec; <- PID */
    SV_START = 3,       /* let a created init exec; <- PID */
    SV_EXEC = 4,        /* create and run an exec process in a task; <- PID */
    SV_KILL = 5,        /* KEY, SIGNAL: signal one process through its pidfd */
    SV_RESIZE = 6,      /* KEY, WIDTH, HEIGHT */
    SV_CLOSE_STDIN = 7, /* KEY */
    SV_FORGET = 8,      /* KEY: drop an exited or never-started process and its fds */
    SV_LIST = 9,        /* CURSOR -> PROC records and the next CURSOR while more are left */
    SV_SHUTDOWN = 10,   /* FORCE: kill every process first; otherwise refused while any lives */
    SV_ACK_EXIT = 11,   /* KEY: the agent has published this exit (LIST reports it after) */
    SV_RESTORE = 12,    /* run criu restore (ARGs) for an init; <- PID of the restored init */
    SV_REPLY = 64,      /* ERRNO (0 = ok), ERRMSG, results */
    SV_EV_EXIT = 65,    /* KEY, PID, WAIT_STATUS, EXIT_CODE, EXITED_AT */
};

/* Field tags. */
enum {
    /* generic */
    T_VERSION = 1,
    T_PID = 2,
    T_ERRNO = 3,
    T_ERRMSG = 4,
    T_KEY = 5,
    T_PARENT_KEY = 6,
    T_SIGNAL = 7,
    T_WIDTH = 9,
    T_HEIGHT = 10,
    T_FORCE = 11,
    T_STARTED_AT = 12,
    /* exits and listings */
    T_WAIT_STATUS = 20,
    T_EXIT_CODE = 21,
    T_EXITED_AT = 22, /* ns since the epoch */
    T_STATE = 23,     /* SV_STATE_* */
    T_PROC = 24,      /* nested: KEY, PID, STATE, EXIT_CODE, EXITED_AT, TERMINAL, START_TIME */
    T_START_TIME = 25, /* the process's start time in clock ticks since boot (/proc/PID/stat) */
    T_ANNOTATION = 26, /* the agent's record of the process: kept, returned by LIST */
    T_EXIT_ACKED = 27,
    T_CURSOR = 28,     /* LIST: where to start; in the reply, where to go on (absent: done) */
    T_PIDFILE = 29,    /* RESTORE: where criu writes the restored init's pid */

    /* namespaces, cgroups */
    T_CLONE_FLAGS = 30, /* namespaces to create */
    T_NS_JOIN = 31,     /* nested: NS_TYPE, FD */
    T_NS_TYPE = 32,
    T_FD = 33,          /* index into the packet's fds */
    T_CGROUP_PROCS = 34, /* FD index of a v1 `tasks` file the new process writes itself into (repeated) */
    T_CGROUP_DIR = 35,   /* FD index of a v2 cgroup directory (CLONE_INTO_CGROUP) */

    /* filesystem */
    T_ROOTFS = 40,          /* absolute path of the root filesystem */
    T_ROOTFS_MOUNT = 41,    /* nested MOUNT record mounted on ROOTFS, in order */
    T_ROOT_READONLY = 42,
    T_ROOT_PROPAGATION = 43,
    T_MOUNT = 44,           /* nested MOUNT record */
    T_M_DEST = 45,
    T_M_TYPE = 46,
    T_M_SOURCE = 47,
    T_M_FLAGS = 48,
    T_M_DATA = 49,
    T_M_PROPAGATION = 50,
    T_M_BIND = 51,          /* source is a path to bind; create the target as its kind */
    T_M_RECURSIVE_RO = 52,
    T_DEVICE = 53,          /* nested: M_DEST (path), DEV_TYPE, DEV_MAJOR, DEV_MINOR, DEV_MODE, UID, GID */
    T_DEV_TYPE = 54,        /* 'c', 'b' or 'p' */
    T_DEV_MAJOR = 55,
    T_DEV_MINOR = 56,
    T_DEV_MODE = 57,
    T_DEFAULT_DEVICES = 58, /* create null, zero, full, random, urandom, tty and the /dev links */
    T_MASKED = 59,
    T_READONLY_PATH = 60,
    T_HOSTNAME = 61,
    T_DOMAINNAME = 62,
    T_SYSCTL = 63,          /* "key=value" */

    /* process */
    T_ARG = 70,
    T_ENV = 71,
    T_CWD = 72,
    T_UID = 73,
    T_GID = 74,
    T_ADDITIONAL_GID = 75,
    T_UMASK = 76,
    T_RLIMIT = 77,          /* 24 bytes: resource, soft, hard (u64 each) */
    T_CAP_BOUNDING = 78,
    T_CAP_EFFECTIVE = 79,
    T_CAP_PERMITTED = 80,
    T_CAP_INHERITABLE = 81,
    T_CAP_AMBIENT = 82,
    T_NO_NEW_PRIVS = 83,
    T_OOM_SCORE_ADJ = 84,   /* signed */
    T_TERMINAL = 85,
    T_LOOPBACK_UP = 86,

    /* stdio: the client's fifos. The process gets pipes (or a pty) of the supervisor's,
     * which relays them to and from these. */
    T_STDIN_FD = 90,    /* stdin fifo, read end */
    T_STDOUT_FD = 91,   /* stdout fifo, write end */
    T_STDERR_FD = 92,   /* stderr fifo, write end */
    T_STDIN_HOLD = 93,  /* stdin fifo, write end: a client closing its side is not EOF */
    T_STDOUT_HOLD = 94, /* stdout fifo, read end: no EPIPE when the client goes away */
    T_STDERR_HOLD = 95,
};

enum {
    SV_STATE_CREATED = 1,
    SV_STATE_RUNNING = 2,
    SV_STATE_EXITED = 3,
};

#endif
