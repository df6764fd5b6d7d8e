/*
 * rig: the proxy on a loop and a scripted QEMU peer (see rig.h).
 */
#include "rig.h"

#include <check.h>
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "address.h"
#include "listener.h"
#include "router.h"
#include "upstream.h"
#include "util.h"

const char rig_greeting[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
    "\"major\": 7}, \"package\": \"test\"}, \"capabilities\": [\"oob\"]}}\r\n";

void rig_spin(struct rig *r, int ms)
{
    for (int i = 0; i < ms; i++) {
        event_base_loop(r->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    event_base_loop(r->base, EVLOOP_NONBLOCK);
}

static int unix_listen(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    return fd;
}

int rig_unix_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

char *rig_drain(int fd)
{
    struct strbuf sb = STRBUF_INIT;
    char buf[4096];
    struct pollfd p = { .fd = fd, .events = POLLIN };

    while (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            break;
        }
        strbuf_add(&sb, buf, (size_t)n);
    }
    return strbuf_detach(&sb, NULL);
}

void rig_send(int fd, const char *s)
{
    ck_assert(write_all(fd, s, strlen(s)));
}

void rig_expect(struct rig *r, int fd, const char *want)
{
    char *got;
    rig_spin(r, 20);
    got = rig_drain(fd);
    ck_assert_str_eq(got, want);
    free(got);
}

char *rig_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct strbuf sb = STRBUF_INIT;
    char buf[65536];
    size_t n;

    ck_assert_msg(f != NULL, "cannot open %s", path);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        strbuf_add(&sb, buf, n);
    }
    fclose(f);
    return strbuf_detach(&sb, len);
}

void rig_init(struct rig *r, unsigned extras)
{
    struct router_options opts = { .max_message = 1 << 20,
                                   .reconnect = false };
    struct address addr;
    char *error = NULL;

    memset(r, 0, sizeof(*r));
    strcpy(r->dir, "/tmp/qmproxy-unit-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(r->dir));
    snprintf(r->qemu_path, sizeof(r->qemu_path), "%s/qemu.sock", r->dir);
    snprintf(r->proxy_path, sizeof(r->proxy_path), "%s/proxy.sock", r->dir);
    r->qemu_listen = unix_listen(r->qemu_path);
    r->qemu = -1;

    r->base = event_base_new();
    r->router = router_new(r->base, NULL, &opts);
    ck_assert_ptr_null(address_parse(r->qemu_path, 0, &addr));
    r->up = upstream_new(r->base, &addr, &router_upstream_callbacks,
                         r->router, NULL);
    address_clear(&addr);
    router_set_upstream(r->router, r->up);
    ck_assert_ptr_null(address_parse(r->proxy_path, ADDRESS_ALLOW_NAME
                                     | ADDRESS_ALLOW_FD, &addr));
    r->listener = listener_new(r->base, &addr, 0600, router_accept,
                               r->router, &error);
    ck_assert_ptr_nonnull(r->listener);
    address_clear(&addr);
    router_add_listener(r->router, r->listener, extras);
}

void rig_connect(struct rig *r, const char *greeting)
{
    char *caps;

    upstream_connect(r->up, 1000);
    rig_spin(r, 5);  /* the connection is made from the loop */
    r->qemu = accept(r->qemu_listen, NULL, NULL);
    ck_assert_int_ge(r->qemu, 0);
    rig_send(r->qemu, greeting);
    rig_spin(r, 20);
    caps = rig_drain(r->qemu);
    ck_assert_str_eq(caps, "{\"execute\": \"qmp_capabilities\", "
                           "\"arguments\": {\"enable\": [\"oob\"]}}");
    free(caps);
    rig_send(r->qemu, "{\"return\": {}}\r\n");
    rig_spin(r, 20);
    ck_assert(upstream_is_ready(r->up));
}

void rig_up(struct rig *r)
{
    char *queries;

    rig_init(r, 0);
    rig_connect(r, rig_greeting);
    /* the chain model asks about the disks before clients are let in */
    queries = rig_drain(r->qemu);
    ck_assert_ptr_nonnull(strstr(queries, "query-block"));
    ck_assert_ptr_nonnull(strstr(queries, "x-debug-query-block-graph"));
    free(queries);
    rig_send(r->qemu, "{\"return\": []}\r\n{\"return\": []}\r\n"
                      "{\"return\": []}\r\n"
                      "{\"return\": {\"nodes\": [], \"edges\": []}}\r\n");
    rig_spin(r, 20);
}

int rig_client(struct rig *r)
{
    return rig_client_caps(r, false);
}

int rig_client_caps(struct rig *r, bool oob)
{
    int fd = rig_unix_connect(r->proxy_path);
    char *s, *greeting;
    size_t len;
    const char *raw = upstream_greeting(r->up, &len);

    rig_spin(r, 20);
    s = rig_drain(fd);
    greeting = xstrndup(raw, len);  /* the client gets QEMU's own */
    ck_assert_str_eq(s, greeting);
    free(greeting);
    free(s);
    rig_send(fd, oob ? "{\"execute\": \"qmp_capabilities\", \"arguments\": "
                       "{\"enable\": [\"oob\"]}}"
                     : "{\"execute\": \"qmp_capabilities\"}");
    rig_expect(r, fd, "{\"return\": {}}\r\n");
    return fd;
}

void rig_down(struct rig *r)
{
    if (r->qemu >= 0) {
        close(r->qemu);
    }
    close(r->qemu_listen);
    listener_free(r->listener);
    upstream_free(r->up);
    router_free(r->router);
    event_base_free(r->base);
    unlink(r->qemu_path);
    rmdir(r->dir);
}
