/*
 * policy-locations: confining what the commands' declared locations name.
 * Files (and the sockets QEMU creates) must lie under an allowed folder
 * after every symbolic link is followed; NBD servers must be named by an
 * <allow nbd=.../>; any other protocol, block driver or URI scheme that
 * reaches outside the host's files is refused unless <allow protocol=.../>
 * names it; a block driver or scheme the policy does not know is refused.
 */
#include "policy-internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonobj.h"
#include "qemu-commands.h"
#include "util.h"

/* How many symlinks one path may go through, as the kernel allows. */
#define MAX_SYMLINKS 40

/* Drop the last component of an absolute path held in sb ("/" stays). */
static void strip_last(struct strbuf *sb)
{
    char *slash = strrchr(sb->buf, '/');

    sb->len = slash && slash != sb->buf ? (size_t)(slash - sb->buf) : 1;
    sb->buf[sb->len] = 0;
}

/*
 * Resolve an absolute path the way the kernel will when QEMU opens or
 * creates it: component by component, following every symlink, whether its
 * target exists or not (a dangling link in an allowed folder would
 * otherwise let QEMU create a file wherever it points), and ".." after the
 * links it follows.  Components that do not exist are taken as written.
 * NULL: too many links (the kernel would refuse with ELOOP).
 */
char *policy_resolve(const char *path)
{
    struct strbuf out = STRBUF_INIT, todo = STRBUF_INIT;
    int links = 0;
    bool missing = false;   /* a component did not exist: no more lookups */

    strbuf_adds(&out, "/");
    strbuf_adds(&todo, path);
    while (todo.len) {
        /* the next component of todo, removed from its front */
        size_t skip = strspn(todo.buf, "/");
        size_t n = strcspn(todo.buf + skip, "/");
        char *part = xstrndup(todo.buf + skip, n);
        struct stat st;

        memmove(todo.buf, todo.buf + skip + n, todo.len - skip - n + 1);
        todo.len -= skip + n;
        if (!part[0] || !strcmp(part, ".")) {
            free(part);
            continue;
        }
        if (!strcmp(part, "..")) {
            struct stat up;
            strip_last(&out);
            /* the kernel would have stopped at the missing component;
             * look again rather than trust what follows */
            missing = lstat(out.buf, &up) != 0;
            free(part);
            continue;
        }
        if (out.len > 1) {
            strbuf_addc(&out, '/');
        }
        strbuf_adds(&out, part);
        free(part);
        if (missing || lstat(out.buf, &st) != 0) {
            missing = true;
            continue;
        }
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t len = readlink(out.buf, target, sizeof(target) - 1);
            struct strbuf rest = STRBUF_INIT;

            if (len < 0 || ++links > MAX_SYMLINKS) {
                strbuf_release(&out);
                strbuf_release(&todo);
                return NULL;
            }
            target[len] = 0;
            strip_last(&out);
            if (target[0] == '/') {
                strbuf_release(&out);
                strbuf_adds(&out, "/");
            }
            /* the link's target, then what was left after the link */
            strbuf_adds(&rest, target);
            strbuf_addc(&rest, '/');
            strbuf_adds(&rest, todo.buf ? todo.buf : "");
            strbuf_release(&todo);
            todo = rest;
        }
    }
    strbuf_release(&todo);
    return strbuf_detach(&out, NULL);
}

static bool inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (!strcmp(dir, "/")) {
        return true;
    }
    return !strncmp(path, dir, n) && (path[n] == '/' || path[n] == 0);
}

/* A host file (or a socket QEMU creates): under an allowed folder. */
static char *check_file(const struct policy *p, const char *what,
                        const char *path)
{
    char *resolved, *err = NULL;
    bool ok = false;

    resolved = policy_resolve(path);
    if (!resolved) {
        return xasprintf("%s '%s' is not allowed by policy %s: it goes "
                         "through more than %d symbolic links", what, path,
                         p->path, MAX_SYMLINKS);
    }
    for (int i = 0; i < p->ndirs && !ok; i++) {
        ok = inside(resolved, p->dirs[i]);
    }
    if (!ok) {
        struct strbuf dirs = STRBUF_INIT;
        for (int i = 0; i < p->ndirs; i++) {
            strbuf_addf(&dirs, "%s%s", i ? ", " : "", p->dirs[i]);
        }
        err = xasprintf("%s '%s'%s%s%s is not allowed by policy %s: images "
                        "may be created or opened only under %s", what, path,
                        strcmp(resolved, path) ? " (that is " : "",
                        strcmp(resolved, path) ? resolved : "",
                        strcmp(resolved, path) ? ")" : "", p->path,
                        dirs.buf ? dirs.buf : "(no directory)");
        strbuf_release(&dirs);
    }
    free(resolved);
    return err;
}

static bool protocol_allowed(const struct policy *p, const char *name)
{
    for (int i = 0; i < p->nprotocols; i++) {
        if (!strcmp(p->protocols[i], name)) {
            return true;
        }
    }
    return false;
}

static char *refuse_protocol(const struct policy *p, const char *what,
                             const char *name, const char *value)
{
    return xasprintf("%s '%s' is not allowed by policy %s: it reaches "
                     "outside the host's files by %s, which the policy does "
                     "not allow (add <allow protocol=\"%s\"/> under "
                     "<paths> to allow it)", what, value, p->path, name,
                     name);
}

/*
 * An NBD server, "unix:PATH", "tcp:HOST:PORT" or "vsock:CID:PORT": named
 * by an <allow nbd=.../>, or (a unix socket) under an allowed folder.
 */
static char *check_nbd(const struct policy *p, const char *what,
                       const char *endpoint)
{
    char *resolved = NULL;
    bool ok = false;

    if (!strncmp(endpoint, "unix:", 5)) {
        resolved = policy_resolve(endpoint + 5);
        for (int i = 0; resolved && i < p->ndirs && !ok; i++) {
            ok = inside(resolved, p->dirs[i]);
        }
    }
    for (int i = 0; i < p->nnbd && !ok; i++) {
        if (resolved && !strncmp(p->nbd[i], "unix:", 5)) {
            ok = !strcmp(p->nbd[i] + 5, resolved);
        } else {
            ok = !strcasecmp(p->nbd[i], endpoint);
        }
    }
    free(resolved);
    return ok ? NULL
        : xasprintf("%s: the NBD server %s is not allowed by policy %s (add "
                    "<allow nbd=\"%s\"/> under <paths>)", what, endpoint,
                    p->path, endpoint);
}

/* A SocketAddress, flat ({type, path}) or legacy ({type, data: {...}}),
 * as the endpoint form check_nbd takes; NULL for fd (the client's own). */
static char *socket_endpoint(json_object *addr, bool *fd)
{
    json_object *data = jobj_typed(addr, "data", json_type_object);
    json_object *a = data ? data : addr;
    const char *type = jobj_str(addr, "type");

    *fd = type && !strcmp(type, "fd");
    if (!type || *fd) {
        return NULL;
    }
    if (!strcmp(type, "unix") && jobj_str(a, "path")) {
        return xasprintf("unix:%s", jobj_str(a, "path"));
    }
    if (!strcmp(type, "inet") && jobj_str(a, "host")) {
        return xasprintf("tcp:%s:%s", jobj_str(a, "host"),
                         jobj_str(a, "port") ? jobj_str(a, "port") : "");
    }
    if (!strcmp(type, "vsock") && jobj_str(a, "cid")) {
        return xasprintf("vsock:%s:%s", jobj_str(a, "cid"),
                         jobj_str(a, "port") ? jobj_str(a, "port") : "");
    }
    return xasprintf("%s:?", type);
}

static char *check_socket(const struct policy *p, const char *what,
                          json_object *addr)
{
    bool fd;
    char *endpoint, *err;

    if (!json_object_is_type(addr, json_type_object)) {
        return NULL;  /* QEMU refuses it in its own words */
    }
    endpoint = socket_endpoint(addr, &fd);
    if (fd) {
        return NULL;
    }
    if (!endpoint) {
        return xasprintf("%s: a socket address qmproxy's policy does not "
                         "understand is not allowed under a path policy",
                         what);
    }
    err = check_nbd(p, what, endpoint);
    free(endpoint);
    return err;
}

static char *check_node(const struct policy *p, json_object *node);

/*
 * An NBD URI (nbd://HOST[:PORT]/EXPORT, nbd+tcp://, nbd+unix:///EXPORT?
 * socket=PATH, nbd:unix:PATH[:exportname=E], nbd:HOST:PORT[:...]) as the
 * endpoint check_nbd takes; NULL if it is not one.
 */
static char *nbd_uri_endpoint(const char *uri)
{
    const char *rest;

    if (!strncmp(uri, "nbd+unix://", 11)) {
        const char *sock = strstr(uri, "socket=");
        return sock ? xasprintf("unix:%.*s", (int)strcspn(sock + 7, "&"),
                                sock + 7)
                    : xstrdup("unix:?");
    }
    if (!strncmp(uri, "nbd://", 6) || !strncmp(uri, "nbd+tcp://", 10)) {
        rest = strstr(uri, "://") + 3;
        size_t hp = strcspn(rest, "/?");
        const char *colon = memchr(rest, ':', hp);
        if (rest[0] == '[') {   /* [v6]:port */
            const char *close = memchr(rest, ']', hp);
            colon = close && close + 1 < rest + hp && close[1] == ':'
                ? close + 1 : NULL;
            return xasprintf("tcp:%.*s:%.*s",
                             (int)((close ? close : rest + hp) - rest - 1),
                             rest + 1, colon ? (int)(rest + hp - colon - 1)
                                             : 5,
                             colon ? colon + 1 : "10809");
        }
        return xasprintf("tcp:%.*s:%.*s",
                         (int)((colon ? colon : rest + hp) - rest), rest,
                         colon ? (int)(rest + hp - colon - 1) : 5,
                         colon ? colon + 1 : "10809");
    }
    if (!strncmp(uri, "nbd:unix:", 9)) {
        rest = uri + 9;
        return xasprintf("unix:%.*s", (int)strcspn(rest, ":"), rest);
    }
    if (!strncmp(uri, "nbd:", 4)) {
        rest = uri + 4;
        size_t host = strcspn(rest, ":");
        const char *port = rest[host] ? rest + host + 1 : "10809";
        return xasprintf("tcp:%.*s:%.*s", (int)host, rest,
                         (int)strcspn(port, ":"), port);
    }
    return NULL;
}

/* The scheme of "scheme:..." (owned), or NULL for a plain path. */
static char *scheme_of(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789+-_.");
    return n && s[n] == ':' ? xstrndup(s, n) : NULL;
}

/* A string that names a file: a path, or a protocol's URI. */
const char *policy_folder_of(const struct policy *p, const char *path,
                             const char **rest)
{
    for (int i = 0; p && p->has_paths && i < p->ndirs; i++) {
        const char *dir = p->dirs[i];
        size_t n = strcmp(dir, "/") ? strlen(dir) : 0;
        if (!strncmp(path, dir, n) && path[n] == '/') {
            *rest = path + n + strspn(path + n, "/");
            return dir;
        }
    }
    return NULL;
}

char *policy_check_path(const struct policy *p, const char *what,
                        const char *path)
{
    char *scheme, *endpoint, *err;

    if (!p || !p->has_paths || !path) {
        return NULL;
    }
    if (path[0] == '/') {
        return check_file(p, what, path);
    }
    if (!strncmp(path, "json:", 5)) {
        /* a whole node's options in a string: judge them as a node */
        json_object *node = json_tokener_parse(path + 5);
        err = node ? check_node(p, node)
                   : xasprintf("%s '%s': json: options qmproxy's policy "
                               "cannot read are not allowed", what, path);
        json_object_put(node);
        return err;
    }
    endpoint = nbd_uri_endpoint(path);
    if (endpoint) {
        err = check_nbd(p, what, endpoint);
        free(endpoint);
        return err;
    }
    scheme = scheme_of(path);
    if (!scheme) {
        return xasprintf("%s '%s' is not allowed by policy %s: only absolute "
                         "paths, NBD servers and allowed protocols are (no "
                         "relative paths)", what, path, p->path);
    }
    err = qemu_block_driver_reach(scheme) == DRIVER_UNKNOWN
        ? xasprintf("%s '%s' is not allowed by policy %s: qmproxy's policy "
                    "does not know the protocol %s", what, path, p->path,
                    scheme)
        : protocol_allowed(p, scheme) ? NULL
                                      : refuse_protocol(p, what, scheme, path);
    free(scheme);
    return err;
}

/* One block node, by where its driver reaches (its file names are
 * checked as files by their own locations). */
static char *check_node(const struct policy *p, json_object *node)
{
    const char *driver = jobj_str(node, "driver");

    if (!driver) {
        return NULL;
    }
    switch (qemu_block_driver_reach(driver)) {
    case DRIVER_LOCAL:
        return NULL;
    case DRIVER_NBD:
        return check_socket(p, "nbd server",
                            jobj_typed(node, "server", json_type_object));
    case DRIVER_ELSEWHERE:
        return protocol_allowed(p, driver) ? NULL
            : refuse_protocol(p, "block driver", driver, driver);
    case DRIVER_UNKNOWN:
        break;
    }
    return xasprintf("block driver '%s' is not allowed by policy %s: "
                     "qmproxy's policy does not know where it reaches",
                     driver, p->path);
}

/* migrate's uri and its kin: "scheme:rest". */
static char *check_uri(const struct policy *p, const char *what,
                       const char *uri)
{
    char *scheme = scheme_of(uri), *err;
    const char *rest;

    if (!scheme) {
        return xasprintf("%s '%s' is not allowed by policy %s: expected "
                         "scheme:...", what, uri, p->path);
    }
    rest = uri + strlen(scheme) + 1;
    if (!strcmp(scheme, "fd")) {
        err = NULL;  /* a descriptor the client passed */
    } else if (!strcmp(scheme, "unix") || !strcmp(scheme, "file")) {
        char *path = xstrndup(rest, strcspn(rest, ","));
        err = check_file(p, what, path[0] == '/' ? path : "(relative)");
        free(path);
    } else if (protocol_allowed(p, scheme)) {
        err = NULL;
    } else {
        err = refuse_protocol(p, what, scheme, uri);
    }
    free(scheme);
    return err;
}

static char *check_location(void *opaque, const struct location *loc,
                            const char *key, json_object *value)
{
    const struct policy *p = opaque;
    const char *what = key ? key : "argument";

    switch (loc->kind) {
    case LOCATION_FILE:
        return json_object_is_type(value, json_type_string)
            ? policy_check_path(p, what, json_object_get_string(value))
            : NULL;
    case LOCATION_BLOCK_NODE:
        return json_object_is_type(value, json_type_object)
            ? check_node(p, value) : NULL;
    case LOCATION_SOCKET:
        return check_socket(p, what, value);
    case LOCATION_URI:
        return json_object_is_type(value, json_type_string)
            ? check_uri(p, what, json_object_get_string(value)) : NULL;
    case LOCATION_PROGRAM:
        return protocol_allowed(p, "exec") || !json_object_is_type(
                   value, json_type_string)
            ? NULL : refuse_protocol(p, what, "exec",
                                     json_object_get_string(value));
    case LOCATION_ANYTHING:
        return xasprintf("%s can name any file, socket or program, which "
                         "qmproxy cannot check, so it is refused under the "
                         "path policy of %s; use the QMP command instead",
                         what, p->path);
    }
    return NULL;
}

char *policy_check_paths(const struct policy *p,
                         const struct location_lookup *lookup,
                         const char *command, json_object *args)
{
    const struct location *locs;
    const char *place;

    if (!p->has_paths || !lookup) {
        return NULL;
    }
    locs = lookup->declared(command);
    if (locs) {
        return location_each(locs, args, check_location, (void *)p);
    }
    /* a command nobody declared, that QEMU's schema says can name a
     * place: the policy cannot confine it, so it is not allowed */
    place = lookup->undeclared ? lookup->undeclared(lookup->opaque, command)
                               : NULL;
    if (place) {
        return xasprintf("command '%s' can name a place outside QEMU (its "
                         "argument %s) that qmproxy's policy does not know "
                         "how to check, so it is refused under the path "
                         "policy of %s", command, place, p->path);
    }
    return NULL;
}
