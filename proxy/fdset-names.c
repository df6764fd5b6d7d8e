/*
 * fdset-names: a short list of (fd set id, path); operations hand over a
 * few images each, so a linear search is all it needs.
 */
#include "fdset-names.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct fdset_name {
    int64_t id;
    char *path;
};

static struct fdset_name *names;
static int nnames;
static unsigned counter;

int64_t fdset_names_next_id(unsigned tag)
{
    counter = (counter + 1) & 0xffff;
    return FDSET_NAMES_FIRST + ((int64_t)(tag & 0xfff) << 16) + counter;
}

void fdset_names_set(int64_t id, const char *path)
{
    for (int i = 0; i < nnames; i++) {
        if (names[i].id == id) {
            str_set(&names[i].path, path);
            return;
        }
    }
    names = xrealloc(names, sizeof(*names) * (size_t)(nnames + 1));
    names[nnames].id = id;
    names[nnames].path = xstrdup(path);
    nnames++;
}

const char *fdset_names_path(const char *qemu_name)
{
    const char *digits;
    char *end;
    long long id;

    if (!qemu_name || strncmp(qemu_name, "/dev/fdset/", 11)) {
        return NULL;
    }
    digits = qemu_name + 11;
    id = strtoll(digits, &end, 10);
    if (end == digits || *end) {
        return NULL;
    }
    for (int i = 0; i < nnames; i++) {
        if (names[i].id == id) {
            return names[i].path;
        }
    }
    return NULL;
}

void fdset_names_clear(void)
{
    for (int i = 0; i < nnames; i++) {
        free(names[i].path);
    }
    free(names);
    names = NULL;
    nnames = 0;
}

int fdset_names_count(void)
{
    return nnames;
}

void fdset_names_at(int i, int64_t *id, const char **path)
{
    *id = names[i].id;
    *path = names[i].path;
}

bool fdset_names_handed_over(const char *path)
{
    for (int i = 0; path && i < nnames; i++) {
        if (!strcmp(names[i].path, path)) {
            return true;
        }
    }
    return false;
}
