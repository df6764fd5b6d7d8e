/*
 * nbd-target: recognising, checking and writing out an NBD export named
 * as a copy's target.  One parsed form (struct nbd_target) for the three
 * ways a client may name it, so that whatever it wrote, QEMU gets the same
 * canonical string, and a mistake gets an error that says what to write.
 */
#include "nbd-target.h"

#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "util.h"

#define NBD_DEFAULT_PORT "10809"

struct nbd_target {
    char *host, *port;     /* TCP */
    char *socket;          /* or a unix socket */
    char *export;          /* NULL: the server's default export */
    json_object *extras;   /* tls-creds, tls-hostname, reconnect-delay,
                            * open-timeout: only the json: form keeps them */
};

static void nbd_target_release(struct nbd_target *t)
{
    free(t->host);
    free(t->port);
    free(t->socket);
    free(t->export);
    json_object_put(t->extras);
}

/* An empty export name is no export name (QEMU's reading of a URI). */
static void no_empty_export(struct nbd_target *t)
{
    if (t->export && !t->export[0]) {
        free(t->export);
        t->export = NULL;
    }
}

static bool all_digits(const char *s, size_t n)
{
    if (!n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

static char *check_port(const char *what, const char *port)
{
    long v = all_digits(port, strlen(port)) ? strtol(port, NULL, 10) : 0;
    return v >= 1 && v <= 65535 ? NULL
        : xasprintf("%s: NBD port '%s' is not a port number (1 to 65535)",
                    what, port);
}

static char *check_socket_path(const char *what, const char *path)
{
    return path[0] == '/' ? NULL
        : xasprintf("%s: the NBD server's unix socket '%s' must be an "
                    "absolute path", what, path);
}

/* nbd://HOST[:PORT][/EXPORT] and nbd+tcp://: no query. */
static char *parse_tcp_uri(const char *what, const char *uri,
                           const char *rest, struct nbd_target *t)
{
    size_t auth = strcspn(rest, "/?");
    const char *colon;

    if (strchr(rest, '?')) {
        return xasprintf("%s '%s': an NBD URI over TCP takes no query "
                         "(write nbd://HOST:PORT/EXPORT)", what, uri);
    }
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', auth);
        if (!close) {
            return xasprintf("%s '%s': an IPv6 address needs its closing "
                             "']'", what, uri);
        }
        t->host = xstrndup(rest + 1, (size_t)(close - rest - 1));
        colon = close + 1 < rest + auth && close[1] == ':' ? close + 1 : NULL;
        if (!colon && close + 1 != rest + auth) {
            return xasprintf("%s '%s': expected ':PORT' after the IPv6 "
                             "address", what, uri);
        }
    } else {
        colon = memchr(rest, ':', auth);
        t->host = xstrndup(rest, (size_t)((colon ? colon : rest + auth)
                                          - rest));
    }
    if (!t->host[0]) {
        return xasprintf("%s '%s': the NBD URI names no host (write "
                         "nbd://HOST:PORT/EXPORT, or nbd+unix:///EXPORT?"
                         "socket=PATH for a unix socket)", what, uri);
    }
    t->port = colon ? xstrndup(colon + 1, (size_t)(rest + auth - colon - 1))
                    : xstrdup(NBD_DEFAULT_PORT);
    if (rest[auth] == '/' && rest[auth + 1]) {
        t->export = xstrdup(rest + auth + 1);
    }
    return check_port(what, t->port);
}

/* nbd+unix:///[EXPORT]?socket=PATH */
static char *parse_unix_uri(const char *what, const char *uri,
                            const char *rest, struct nbd_target *t)
{
    size_t path = strcspn(rest, "?");

    if (rest[0] != '/' && rest[0] != '?') {
        return xasprintf("%s '%s': an nbd+unix URI names no host (three "
                         "slashes: nbd+unix:///EXPORT?socket=PATH)", what,
                         uri);
    }
    if (rest[path] != '?' || strncmp(rest + path + 1, "socket=", 7)
        || strchr(rest + path + 1, '&')) {
        return xasprintf("%s '%s': an nbd+unix URI takes exactly one query "
                         "parameter, socket=PATH (nbd+unix:///EXPORT?"
                         "socket=PATH)", what, uri);
    }
    if (path > 1) {
        t->export = xstrndup(rest + 1, path - 1);
    }
    t->socket = xstrdup(rest + path + 8);
    return check_socket_path(what, t->socket);
}

/* QEMU's older forms: nbd:unix:PATH[:exportname=E], nbd:HOST:PORT[:...] */
static char *parse_legacy(const char *what, const char *uri,
                          const char *rest, struct nbd_target *t)
{
    const char *name = strstr(rest, ":exportname=");
    size_t len = name ? (size_t)(name - rest) : strlen(rest);

    if (name) {
        t->export = xstrdup(name + 12);
    }
    if (!strncmp(rest, "unix:", 5)) {
        if (len <= 5) {
            return xasprintf("%s '%s': expected nbd:unix:SOCKET (or, better, "
                             "nbd+unix:///EXPORT?socket=SOCKET)", what, uri);
        }
        t->socket = xstrndup(rest + 5, len - 5);
        return check_socket_path(what, t->socket);
    }
    const char *colon = memchr(rest, ':', len);
    if (!colon || colon == rest) {
        return xasprintf("%s '%s': expected nbd:HOST:PORT (or, better, "
                         "nbd://HOST:PORT/EXPORT)", what, uri);
    }
    t->host = xstrndup(rest, (size_t)(colon - rest));
    t->port = xstrndup(colon + 1, (size_t)(rest + len - colon - 1));
    return check_port(what, t->port);
}

static const char *const extra_members[] = {
    "tls-creds", "tls-hostname", "reconnect-delay", "open-timeout", NULL
};

/* BlockdevOptionsNbd (its "driver", if any, must be nbd). */
static char *parse_object(const char *what, json_object *o,
                          struct nbd_target *t)
{
    json_object *server = NULL;
    const char *type;

    json_object_object_foreach(o, key, v) {
        bool extra = false;
        for (int i = 0; extra_members[i]; i++) {
            extra = extra || !strcmp(key, extra_members[i]);
        }
        if (extra) {
            if (!t->extras) {
                t->extras = json_object_new_object();
            }
            json_object_object_add(t->extras, key, json_object_get(v));
        } else if (!strcmp(key, "server")) {
            server = v;
        } else if (!strcmp(key, "export")) {
            if (!json_object_is_type(v, json_type_string)) {
                return xasprintf("%s: 'export' must be a string (the export's "
                                 "name)", what);
            }
            t->export = xstrdup(json_object_get_string(v));
        } else if (!strcmp(key, "driver")) {
            if (!json_object_is_type(v, json_type_string)
                || strcmp(json_object_get_string(v), "nbd")) {
                return xasprintf("%s: only an NBD export can be given as an "
                                 "object (driver 'nbd', or no driver); give "
                                 "any other target as a path", what);
            }
        } else {
            return xasprintf("%s: unknown member '%s' (an NBD target takes "
                             "server, export, tls-creds, tls-hostname, "
                             "reconnect-delay and open-timeout, as QEMU's "
                             "nbd driver)", what, key);
        }
    }
    if (!json_object_is_type(server, json_type_object)) {
        return xasprintf("%s: an NBD target needs 'server', {\"type\": "
                         "\"inet\", \"host\": H, \"port\": P} or {\"type\": "
                         "\"unix\", \"path\": SOCKET}", what);
    }
    type = jobj_str(server, "type");
    if (type && !strcmp(type, "inet")) {
        if (!jobj_str(server, "host") || !jobj_str(server, "port")) {
            return xasprintf("%s: an inet server needs 'host' and 'port' "
                             "(both strings, as in QEMU)", what);
        }
        t->host = xstrdup(jobj_str(server, "host"));
        t->port = xstrdup(jobj_str(server, "port"));
        return check_port(what, t->port);
    }
    if (type && !strcmp(type, "unix")) {
        if (!jobj_str(server, "path")) {
            return xasprintf("%s: a unix server needs 'path'", what);
        }
        t->socket = xstrdup(jobj_str(server, "path"));
        return check_socket_path(what, t->socket);
    }
    return xasprintf("%s: the NBD server's type must be 'inet' or 'unix'",
                     what);
}

/*
 * What QEMU calls the node (block/nbd.c's refresh_filename): the URI when
 * nothing but the server and export matter, else json:{} with the rest.
 */
static char *canonical(const struct nbd_target *t)
{
    json_object *o, *server;
    char *s;

    if (!t->extras) {
        /* QEMU leaves out the export when there is none (the server's
         * default), slash included */
        const char *open = strchr(t->host ? t->host : "", ':') ? "[" : "";
        const char *close = open[0] ? "]" : "";
        if (t->socket) {
            return t->export
                ? xasprintf("nbd+unix:///%s?socket=%s", t->export, t->socket)
                : xasprintf("nbd+unix://?socket=%s", t->socket);
        }
        return t->export
            ? xasprintf("nbd://%s%s%s:%s/%s", open, t->host, close, t->port,
                        t->export)
            : xasprintf("nbd://%s%s%s:%s", open, t->host, close, t->port);
    }
    o = json_object_new_object();
    server = json_object_new_object();
    jobj_add_str(o, "driver", "nbd");
    if (t->socket) {
        jobj_add_str(server, "type", "unix");
        jobj_add_str(server, "path", t->socket);
    } else {
        jobj_add_str(server, "type", "inet");
        jobj_add_str(server, "host", t->host);
        jobj_add_str(server, "port", t->port);
    }
    json_object_object_add(o, "server", server);
    jobj_add_str(o, "export", t->export);
    json_object_object_foreach(t->extras, key, v) {
        json_object_object_add(o, key, json_object_get(v));
    }
    s = xasprintf("json:%s", json_object_to_json_string_ext(
                      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return s;
}

static bool json_is_nbd(const char *target, json_object **parsed)
{
    json_object *o;

    *parsed = NULL;
    if (strncmp(target, "json:", 5)) {
        return false;
    }
    o = json_tokener_parse(target + 5);
    if (json_object_is_type(o, json_type_object)
        && jobj_str(o, "driver") && !strcmp(jobj_str(o, "driver"), "nbd")) {
        *parsed = o;
        return true;
    }
    json_object_put(o);
    return false;
}

bool nbd_target_is(const char *target)
{
    json_object *o;
    bool is = json_is_nbd(target, &o);

    json_object_put(o);
    return is || !strncmp(target, "nbd:", 4) || !strncmp(target, "nbd+", 4);
}

static char *parse_string(const char *what, const char *s,
                          struct nbd_target *t)
{
    json_object *o;
    char *err;

    if (!strncmp(s, "nbd://", 6)) {
        return parse_tcp_uri(what, s, s + 6, t);
    }
    if (!strncmp(s, "nbd+tcp://", 10)) {
        return parse_tcp_uri(what, s, s + 10, t);
    }
    if (!strncmp(s, "nbd+unix://", 11)) {
        return parse_unix_uri(what, s, s + 11, t);
    }
    if (json_is_nbd(s, &o)) {
        err = parse_object(what, o, t);
        json_object_put(o);
        return err;
    }
    if (!strncmp(s, "nbd:", 4)) {
        return parse_legacy(what, s, s + 4, t);
    }
    return xasprintf("%s '%s': not an NBD URI (nbd://HOST:PORT/EXPORT or "
                     "nbd+unix:///EXPORT?socket=PATH)", what, s);
}

static bool same(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

char *nbd_target_export_on(const char *what, const char *server,
                           const char *export, char **out)
{
    struct nbd_target t = { 0 };
    char *err;

    *out = NULL;
    err = nbd_target_is(server) ? parse_string(what, server, &t)
        : xasprintf("%s '%s' is not an NBD server (nbd://HOST[:PORT] or "
                    "nbd+unix://?socket=PATH)", what, server);
    no_empty_export(&t);
    if (!err && t.export) {
        err = xasprintf("%s '%s' names an export (%s); name the server "
                        "only: each disk's copy has an export of its own "
                        "(%s)", what, server, t.export, export);
    }
    if (!err) {
        t.export = xstrdup(export);
        *out = canonical(&t);
    }
    nbd_target_release(&t);
    return err;
}

bool nbd_target_names(const char *top, const char *target)
{
    struct nbd_target a = { 0 }, b = { 0 };
    char *ea, *eb;
    bool r;

    if (!top || !target) {
        return false;
    }
    if (!strcmp(top, target)) {
        return true;
    }
    if (!nbd_target_is(top) || !nbd_target_is(target)) {
        return false;
    }
    ea = parse_string("top", top, &a);
    eb = parse_string("target", target, &b);
    no_empty_export(&a);
    no_empty_export(&b);
    r = !ea && !eb && same(a.host, b.host) && same(a.port, b.port)
        && same(a.socket, b.socket) && same(a.export, b.export);
    free(ea);
    free(eb);
    nbd_target_release(&a);
    nbd_target_release(&b);
    return r;
}

char *nbd_target_resolve_string(const char *what, const char *target,
                                char **out)
{
    json_object *s = json_object_new_string(target);
    char *err = nbd_target_resolve(what, s, out);

    json_object_put(s);
    return err;
}

char *nbd_target_resolve(const char *what, json_object *target, char **out)
{
    struct nbd_target t = { 0 };
    char *err;

    *out = NULL;
    if (json_object_is_type(target, json_type_string)) {
        const char *s = json_object_get_string(target);
        if (!nbd_target_is(s)) {
            *out = xstrdup(s);   /* a file: the caller checks it */
            return NULL;
        }
        err = parse_string(what, s, &t);
    } else if (json_object_is_type(target, json_type_object)) {
        err = parse_object(what, target, &t);
    } else {
        err = xasprintf("Invalid parameter type for '%s', expected: string "
                        "or object (an image path, an NBD URI, or an NBD "
                        "server and export)", what);
    }
    if (!err) {
        no_empty_export(&t);
        *out = canonical(&t);
    }
    nbd_target_release(&t);
    return err;
}
