/*
 * statefile: atomic, asynchronous saves of one JSON document.
 */
#include "statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define STATE_FORMAT "qmproxy-state"
#define STATE_VERSION 1

struct statefile {
    char *path;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    char *pending;        /* the next text to write; owned */
    size_t pending_len;
    bool stop;
};

static bool write_atomically(const char *path, const char *text, size_t len)
{
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    char *dircopy = xstrdup(path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write_all(fd, text, len) && fsync(fd) == 0;

    if (fd >= 0) {
        close(fd);
    }
    if (ok && rename(tmp, path) == 0) {
        /* the rename itself must reach the disk too */
        int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    } else {
        log_error("cannot save the state to %s: %s", path, strerror(errno));
        unlink(tmp);
        ok = false;
    }
    free(tmp);
    free(dircopy);
    return ok;
}

static void *writer(void *arg)
{
    struct statefile *sf = arg;

    pthread_mutex_lock(&sf->mu);
    for (;;) {
        while (!sf->pending && !sf->stop) {
            pthread_cond_wait(&sf->wake, &sf->mu);
        }
        if (!sf->pending) {
            break;
        }
        char *text = sf->pending;
        size_t len = sf->pending_len;
        sf->pending = NULL;
        pthread_mutex_unlock(&sf->mu);
        write_atomically(sf->path, text, len);
        free(text);
        pthread_mutex_lock(&sf->mu);
    }
    pthread_mutex_unlock(&sf->mu);
    return NULL;
}

struct statefile *statefile_new(const char *path)
{
    struct statefile *sf = xcalloc(1, sizeof(*sf));

    sf->path = xstrdup(path);
    pthread_mutex_init(&sf->mu, NULL);
    pthread_cond_init(&sf->wake, NULL);
    if (pthread_create(&sf->thread, NULL, writer, sf)) {
        log_error("cannot start the state writer thread");
        abort();
    }
    return sf;
}

void statefile_save(struct statefile *sf, json_object *state)
{
    json_object *doc = json_object_new_object();
    char when[40];
    size_t len;
    const char *s;

    format_rfc3339_us(when, sizeof(when));
    json_object_object_add(doc, "format", json_object_new_string(STATE_FORMAT));
    json_object_object_add(doc, "version", json_object_new_int(STATE_VERSION));
    json_object_object_add(doc, "saved", json_object_new_string(when));
    json_object_object_add(doc, "state", json_object_get(state));
    s = json_object_to_json_string_length(doc, JSON_C_TO_STRING_PRETTY
                                          | JSON_C_TO_STRING_NOSLASHESCAPE,
                                          &len);
    pthread_mutex_lock(&sf->mu);
    free(sf->pending);  /* a newer state replaces one not yet written */
    sf->pending = xmalloc(len + 1);
    memcpy(sf->pending, s, len);
    sf->pending[len] = '\n';
    sf->pending_len = len + 1;
    pthread_cond_signal(&sf->wake);
    pthread_mutex_unlock(&sf->mu);
    json_object_put(doc);
}

/* Move an untrustworthy file out of the way, keeping it for a person. */
static char *set_aside(const char *path, const char *why)
{
    char stamp[40], *dest;
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    dest = xasprintf("%s.corrupt-%s", path, stamp);
    if (rename(path, dest) < 0) {
        char *p = xasprintf("the state file %s cannot be trusted (%s) and "
                            "could not be moved aside (%s); starting from "
                            "QEMU's view", path, why, strerror(errno));
        free(dest);
        return p;
    }
    char *p = xasprintf("the state file %s cannot be trusted (%s); it was "
                        "moved to %s and the proxy starts from QEMU's view",
                        path, why, dest);
    free(dest);
    return p;
}

json_object *statefile_load(struct statefile *sf, char **problem)
{
    FILE *f = fopen(sf->path, "rb");
    struct strbuf sb = STRBUF_INIT;
    char buf[65536];
    size_t n;
    json_tokener *tok;
    json_object *doc, *v, *state;
    enum json_tokener_error jerr;
    char *why = NULL;

    *problem = NULL;
    if (!f) {
        if (errno != ENOENT) {
            *problem = xasprintf("cannot read the state file %s: %s",
                                 sf->path, strerror(errno));
        }
        return NULL;
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        strbuf_add(&sb, buf, n);
    }
    fclose(f);
    if (!sb.len) {
        *problem = set_aside(sf->path, "it is empty");
        return NULL;
    }
    tok = json_tokener_new_ex(1024);
    doc = json_tokener_parse_ex(tok, sb.buf, (int)sb.len);
    jerr = json_tokener_get_error(tok);
    if (!doc || jerr != json_tokener_success) {
        why = xasprintf("it is not complete JSON: %s at byte %zu of %zu",
                        json_tokener_error_desc(jerr),
                        json_tokener_get_parse_end(tok), sb.len);
    } else if (!json_object_object_get_ex(doc, "format", &v)
               || strcmp(json_object_get_string(v), STATE_FORMAT)) {
        why = xstrdup("it is not a qmproxy state file");
    } else if (!json_object_object_get_ex(doc, "version", &v)
               || json_object_get_int(v) != STATE_VERSION) {
        why = v ? xasprintf("it has version %s, this qmproxy writes %d",
                            json_object_get_string(v), STATE_VERSION)
                : xstrdup("it has no version");
    } else if (!json_object_object_get_ex(doc, "state", &state)
               || !json_object_is_type(state, json_type_object)) {
        why = xstrdup("it has no state object");
    }
    json_tokener_free(tok);
    strbuf_release(&sb);
    if (why) {
        *problem = set_aside(sf->path, why);
        free(why);
        json_object_put(doc);
        return NULL;
    }
    state = json_object_get(state);
    json_object_put(doc);
    return state;
}

void statefile_free(struct statefile *sf)
{
    if (!sf) {
        return;
    }
    pthread_mutex_lock(&sf->mu);
    sf->stop = true;
    pthread_cond_signal(&sf->wake);
    pthread_mutex_unlock(&sf->mu);
    pthread_join(sf->thread, NULL);
    pthread_mutex_destroy(&sf->mu);
    pthread_cond_destroy(&sf->wake);
    free(sf->pending);
    free(sf->path);
    free(sf);
}
