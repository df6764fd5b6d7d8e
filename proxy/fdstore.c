/*
 * fdstore: named file descriptors, a short list.
 */
#include "fdstore.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

struct entry {
    char *name;
    int fd;
};

static struct entry *entries;
static size_t count;

static struct entry *find(const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (!strcmp(entries[i].name, name)) {
            return &entries[i];
        }
    }
    return NULL;
}

void fdstore_put(const char *name, int fd)
{
    struct entry *e = find(name);

    if (e) {
        close(e->fd);
        e->fd = fd;
        return;
    }
    entries = xrealloc(entries, sizeof(*entries) * (count + 1));
    entries[count].name = xstrdup(name);
    entries[count].fd = fd;
    count++;
}

int fdstore_get(const char *name)
{
    struct entry *e = find(name);
    return e ? e->fd : -1;
}

void fdstore_close(const char *name)
{
    struct entry *e = find(name);

    if (e) {
        close(e->fd);
        free(e->name);
        *e = entries[--count];
    }
}

void fdstore_forget_used(json_object *v)
{
    if (!count) {
        return;
    }
    switch (json_object_get_type(v)) {
    case json_type_string: {
        const char *s = json_object_get_string(v);
        if (!strncmp(s, "fd:", 3)) {
            s += 3;
        }
        fdstore_close(s);
        break;
    }
    case json_type_object: {
        json_object_object_foreach(v, key, val) {
            (void)key;
            fdstore_forget_used(val);
        }
        break;
    }
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            fdstore_forget_used(json_object_array_get_idx(v, i));
        }
        break;
    default:
        break;
    }
}

void fdstore_clear(void)
{
    for (size_t i = 0; i < count; i++) {
        close(entries[i].fd);
        free(entries[i].name);
    }
    free(entries);
    entries = NULL;
    count = 0;
}
