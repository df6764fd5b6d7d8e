/*
 * Reply slots and in-order routing, with the real session, router and
 * upstream on an event loop and a scripted peer in QEMU's place.  A fake
 * QEMU is right here: the point is to hold a reply back at a chosen moment,
 * which a real QEMU cannot be asked to do.
 */
#include <check.h>

#include "check_main.h"
#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "listener.h"
#include "router.h"
#include "upstream.h"
#include "util.h"

static const char greeting[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
    "\"major\": 7}, \"package\": \"test\"}, \"capabilities\": [\"oob\"]}}\r\n";

struct rig {
    struct event_base *base;
    struct router *router;
    struct upstream *up;
    struct listener *listener;
    char dir[40], qemu_path[96], proxy_path[96];
    int qemu_listen, qemu;
};

static void spin(struct rig *r, int ms)
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

static int unix_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Whatever is readable now, as a string (empty when nothing). */
static char *drain(int fd)
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

static void send_str(int fd, const char *s)
{
    ck_assert(write_all(fd, s, strlen(s)));
}

static void expect(struct rig *r, int fd, const char *want)
{
    char *got;
    spin(r, 20);
    got = drain(fd);
    ck_assert_str_eq(got, want);
    free(got);
}

static void rig_up(struct rig *r)
{
    struct router_options opts = { .max_message = 0, .reconnect = false };
    struct address addr;
    char *error = NULL;

    memset(r, 0, sizeof(*r));
    strcpy(r->dir, "/tmp/qmproxy-unit-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(r->dir));
    snprintf(r->qemu_path, sizeof(r->qemu_path), "%s/qemu.sock", r->dir);
    snprintf(r->proxy_path, sizeof(r->proxy_path), "%s/proxy.sock", r->dir);
    r->qemu_listen = unix_listen(r->qemu_path);

    r->base = event_base_new();
    opts.max_message = 1 << 20;
    r->router = router_new(r->base, NULL, &opts);
    ck_assert(address_parse(r->qemu_path, 0, &addr, &error));
    r->up = upstream_new(r->base, &addr, &router_upstream_callbacks,
                         r->router, NULL);
    address_clear(&addr);
    router_set_upstream(r->router, r->up);
    ck_assert(address_parse(r->proxy_path, ADDRESS_ALLOW_NAME | ADDRESS_ALLOW_FD,
                            &addr, &error));
    r->listener = listener_new(r->base, &addr, 0600, router_accept,
                               r->router, &error);
    ck_assert_ptr_nonnull(r->listener);
    address_clear(&addr);
    router_add_listener(r->router, r->listener, 0);

    /* play QEMU's part of the handshake */
    upstream_connect(r->up, 1000);
    spin(r, 5);  /* the connection is made from the loop */
    r->qemu = accept(r->qemu_listen, NULL, NULL);
    ck_assert_int_ge(r->qemu, 0);
    send_str(r->qemu, greeting);
    spin(r, 20);
    char *caps = drain(r->qemu);
    ck_assert_str_eq(caps, "{\"execute\": \"qmp_capabilities\", \"arguments\": "
                           "{\"enable\": [\"oob\"]}}");
    free(caps);
    send_str(r->qemu, "{\"return\": {}}\r\n");
    spin(r, 20);
    ck_assert(upstream_is_ready(r->up));
    /* the chain model asks about the disks before clients are let in */
    char *queries = drain(r->qemu);
    ck_assert_ptr_nonnull(strstr(queries, "query-block"));
    ck_assert_ptr_nonnull(strstr(queries, "x-debug-query-block-graph"));
    free(queries);
    send_str(r->qemu, "{\"return\": []}\r\n{\"return\": []}\r\n"
                      "{\"return\": []}\r\n"
                      "{\"return\": {\"nodes\": [], \"edges\": []}}\r\n");
    spin(r, 20);
}

static int client(struct rig *r)
{
    int fd = unix_connect(r->proxy_path);
    char *s;

    spin(r, 20);
    s = drain(fd);
    ck_assert_str_eq(s, greeting);
    free(s);
    send_str(fd, "{\"execute\": \"qmp_capabilities\"}");
    expect(r, fd, "{\"return\": {}}\r\n");
    return fd;
}

static void rig_down(struct rig *r)
{
    close(r->qemu);
    close(r->qemu_listen);
    listener_free(r->listener);
    upstream_free(r->up);
    router_free(r->router);
    event_base_free(r->base);
    unlink(r->qemu_path);
    rmdir(r->dir);
}

/* An error the proxy answers at once waits behind an earlier command. */
START_TEST(test_local_reply_waits_its_turn)
{
    struct rig r;
    int c;
    char *up;

    rig_up(&r);
    c = client(&r);
    send_str(c, "{\"execute\":\"a\",\"id\":1}garbage {\"execute\":\"c\","
                "\"id\":3}");
    spin(&r, 20);
    /* QEMU got a, byte for byte; c waits for the replies before it, as
     * QEMU itself reads a client without oob one command at a time */
    up = drain(r.qemu);
    ck_assert_str_eq(up, "{\"execute\":\"a\",\"id\":1}");
    free(up);
    expect(&r, c, "");  /* the error must not overtake a's reply */
    send_str(r.qemu, "{\"return\": \"A\", \"id\": 1}\r\n");
    expect(&r, c, "{\"return\": \"A\", \"id\": 1}\r\n"
                  "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                  "\"JSON parse error, invalid keyword 'garbage'\"}}\r\n");
    /* then c, never the garbage */
    up = drain(r.qemu);
    ck_assert_str_eq(up, "{\"execute\":\"c\",\"id\":3}");
    free(up);
    send_str(r.qemu, "{\"return\": \"C\", \"id\": 3}\r\n");
    expect(&r, c, "{\"return\": \"C\", \"id\": 3}\r\n");
    close(c);
    spin(&r, 10);
    rig_down(&r);
}
END_TEST

/* Two clients, identical ids, no ids: QEMU's order decides. */
START_TEST(test_fifo_routing_between_clients)
{
    struct rig r;
    int x, y;
    char *up;

    rig_up(&r);
    x = client(&r);
    y = client(&r);
    send_str(x, "{\"execute\":\"q\"}");
    spin(&r, 10);
    send_str(y, "{\"execute\":\"q\"}");
    spin(&r, 10);
    send_str(x, "{\"execute\":\"q\",\"id\":\"same\"}");
    spin(&r, 10);
    send_str(y, "{\"execute\":\"q\",\"id\":\"same\"}");
    spin(&r, 20);
    /* each client's second command waits for the reply to its first */
    up = drain(r.qemu);
    ck_assert_str_eq(up, "{\"execute\":\"q\"}{\"execute\":\"q\"}");
    free(up);
    /* an event in the middle goes to both */
    send_str(r.qemu, "{\"return\": 1}\r\n{\"timestamp\": {\"seconds\": 1, "
                     "\"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                     "{\"return\": 2}\r\n");
    spin(&r, 20);
    up = drain(r.qemu);
    ck_assert_str_eq(up, "{\"execute\":\"q\",\"id\":\"same\"}"
                         "{\"execute\":\"q\",\"id\":\"same\"}");
    free(up);
    send_str(r.qemu, "{\"return\": 3, \"id\": \"same\"}\r\n"
                     "{\"return\": 4, \"id\": \"same\"}\r\n");
    spin(&r, 20);
    char *gx = drain(x), *gy = drain(y);
    ck_assert_str_eq(gx, "{\"return\": 1}\r\n{\"timestamp\": {\"seconds\": 1, "
                         "\"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                         "{\"return\": 3, \"id\": \"same\"}\r\n");
    ck_assert_str_eq(gy, "{\"timestamp\": {\"seconds\": 1, "
                         "\"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                         "{\"return\": 2}\r\n{\"return\": 4, \"id\": \"same\"}"
                         "\r\n");
    free(gx);
    free(gy);
    close(x);
    close(y);
    spin(&r, 10);
    rig_down(&r);
}
END_TEST

/* A client that leaves with a command in flight: its reply is dropped and
 * the next client's reply still finds its way. */
START_TEST(test_reply_of_departed_client_dropped)
{
    struct rig r;
    int x, y;
    char *up;

    rig_up(&r);
    x = client(&r);
    y = client(&r);
    send_str(x, "{\"execute\":\"slow\"}");
    spin(&r, 10);
    send_str(y, "{\"execute\":\"fast\"}");
    spin(&r, 10);
    up = drain(r.qemu);
    free(up);
    close(x);
    spin(&r, 10);
    send_str(r.qemu, "{\"return\": \"for x\"}\r\n{\"return\": \"for y\"}\r\n");
    expect(&r, y, "{\"return\": \"for y\"}\r\n");
    close(y);
    spin(&r, 10);
    rig_down(&r);
}
END_TEST

/* exec-oob goes up under the proxy's id and comes back under the client's. */
START_TEST(test_oob_id_swap)
{
    struct rig r;
    int c;
    char *up, *id_start, *id_end;
    char reply[256];

    rig_up(&r);
    c = unix_connect(r.proxy_path);
    spin(&r, 20);
    free(drain(c));
    send_str(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": "
                "{\"enable\": [\"oob\"]}}");
    expect(&r, c, "{\"return\": {}}\r\n");
    send_str(c, "{\"exec-oob\": \"x\", \"id\": {\"b\": 1, \"a\": 2}}");
    spin(&r, 20);
    up = drain(r.qemu);
    id_start = strstr(up, "\"qmproxy-oob-");
    ck_assert_ptr_nonnull(id_start);
    id_end = strchr(id_start + 1, '"');
    snprintf(reply, sizeof(reply), "{\"return\": {}, \"id\": %.*s}\r\n",
             (int)(id_end - id_start + 1), id_start);
    send_str(r.qemu, reply);
    /* QEMU would have echoed the id in its own member order */
    expect(&r, c, "{\"return\": {}, \"id\": {\"a\": 2, \"b\": 1}}\r\n");
    free(up);
    close(c);
    spin(&r, 10);
    rig_down(&r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("slots");

    tcase_add_test(tc, test_local_reply_waits_its_turn);
    tcase_add_test(tc, test_fifo_routing_between_clients);
    tcase_add_test(tc, test_reply_of_departed_client_dropped);
    tcase_add_test(tc, test_oob_id_swap);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
