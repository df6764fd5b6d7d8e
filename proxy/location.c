/*
 * location: walking the arguments a command declares as locations.
 */
#include "location.h"

#include <string.h>

#include "util.h"

static char *walk(const struct location *loc, const char *path,
                  json_object *v, const char *key, location_fn fn,
                  void *opaque);

/* "**": this value and everything below it, against the rest of path. */
static char *walk_any_depth(const struct location *loc, const char *rest,
                            json_object *v, const char *key, location_fn fn,
                            void *opaque)
{
    char *r = walk(loc, rest, v, key, fn, opaque);

    if (r) {
        return r;
    }
    if (json_object_is_type(v, json_type_object)) {
        json_object_object_foreach(v, k, child) {
            r = walk_any_depth(loc, rest, child, k, fn, opaque);
            if (r) {
                return r;
            }
        }
    } else if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v) && !r; i++) {
            r = walk_any_depth(loc, rest, json_object_array_get_idx(v, i),
                               key, fn, opaque);
        }
    }
    return r;
}

/* path: what is left to match below v ("" when v is the place). */
static char *walk(const struct location *loc, const char *path,
                  json_object *v, const char *key, location_fn fn,
                  void *opaque)
{
    const char *dot;
    size_t n;
    char *r = NULL;

    if (!*path) {
        return fn(opaque, loc, key, v);
    }
    dot = strchr(path, '.');
    n = dot ? (size_t)(dot - path) : strlen(path);
    const char *rest = dot ? dot + 1 : path + n;
    if (n == 2 && !memcmp(path, "**", 2)) {
        return walk_any_depth(loc, rest, v, key, fn, opaque);
    }
    if (n == 1 && path[0] == '*') {
        if (json_object_is_type(v, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(v) && !r; i++) {
                r = walk(loc, rest, json_object_array_get_idx(v, i), key, fn,
                         opaque);
            }
        }
        return r;
    }
    if (json_object_is_type(v, json_type_object)) {
        char name[128];
        json_object *child;
        if (n >= sizeof(name)) {
            return NULL;
        }
        memcpy(name, path, n);
        name[n] = 0;
        if (json_object_object_get_ex(v, name, &child)) {
            return walk(loc, rest, child, name, fn, opaque);
        }
    }
    return NULL;
}

char *location_each(const struct location *locs, json_object *args,
                    location_fn fn, void *opaque)
{
    char *r = NULL;

    for (const struct location *l = locs; l && l->path && !r; l++) {
        r = walk(l, l->path, args, NULL, fn, opaque);
    }
    return r;
}
