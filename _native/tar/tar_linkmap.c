#include "tar_linkmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t slot_of(const struct linkmap *m, dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;
    return (size_t)(h ^ (h >> 29)) & (m->cap - 1);
}

static struct link_slot *find(const struct linkmap *m, dev_t dev, ino_t ino)
{
    size_t i = slot_of(m, dev, ino);
    while (m->slots[i].path && (m->slots[i].dev != dev || m->slots[i].ino != ino))
        i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

/* Keep the table at most half full so probes stay short. */
static int grow(struct linkmap *m)
{
    struct linkmap bigger = {.cap = m->cap ? m->cap * 2 : 256};
    bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
    if (!bigger.slots) {
        errno = ENOMEM;
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].path)
            *find(&bigger, m->slots[i].dev, m->slots[i].ino) = m->slots[i];
    free(m->slots);
    m->slots = bigger.slots;
    m->cap = bigger.cap;
    return 0;
}

int linkmap_get_or_put(struct linkmap *m, dev_t dev, ino_t ino, const char *path,
                       const char **first)
{
    if ((m->used + 1) * 2 > m->cap && grow(m) < 0)
        return -1;
    struct link_slot *s = find(m, dev, ino);
    if (s->path) {
        *first = s->path;
        return 1;
    }
    s->path = strdup(path);
    if (!s->path) {
        errno = ENOMEM;
        return -1;
    }
    s->dev = dev;
    s->ino = ino;
    m->used++;
    *first = NULL;
    return 0;
}

void linkmap_free(struct linkmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].path);
    free(m->slots);
    m->slots = NULL;
    m->cap = m->used = 0;
}
