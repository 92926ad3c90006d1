/* Inodes already archived, so a second name of the same file becomes a hardlink entry. */
#ifndef TASKAGENT_TAR_LINKMAP_H
#define TASKAGENT_TAR_LINKMAP_H

#include <stddef.h>
#include <sys/types.h>

struct link_slot {
    dev_t dev;
    ino_t ino;
    char *path; /* NULL when the slot is free */
};

struct linkmap {
    struct link_slot *slots;
    size_t cap, used;
};

/* Look (dev, ino) up; if absent, remember it with path and return 0. If present, set *first to
 * the path it was first archived under and return 1. -1 with errno ENOMEM on failure. */
int linkmap_get_or_put(struct linkmap *m, dev_t dev, ino_t ino, const char *path,
                       const char **first);
void linkmap_free(struct linkmap *m);

#endif
