/*
 * The upstream connection reading QEMU's lines, alone on an event loop with
 * a scripted peer in QEMU's place: what it does with a line it cannot
 * route, and with a greeting where none is due.  Run under tests/run.sh --sanitize, ASan checks every byte it
 * reads (its diagnostics quote QEMU's line).
 */
#include <check.h>

#include "check_main.h"
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "address.h"
#include "upstream.h"
#include "util.h"

static const char greeting[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
    "\"major\": 7}, \"package\": \"test\"}, \"capabilities\": []}}\r\n";

static bool ready;
static char *lost_why;

static void on_ready(void *opaque)
{
    (void)opaque;
    ready = true;
}

static void on_lost(void *opaque, const char *why)
{
    (void)opaque;
    free(lost_why);
    lost_why = xstrdup(why);
}

static int events;

static void on_event(void *opaque, const char *raw, size_t len,
                     const struct js_text *t)
{
    (void)opaque;
    (void)raw;
    (void)len;
    (void)t;
    events++;
}

static const struct upstream_callbacks callbacks = {
    .ready = on_ready, .lost = on_lost, .event = on_event,
};

static void spin(struct event_base *base, int ms)
{
    for (int i = 0; i < ms; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t n = write(fd, s, len);
        ck_assert_int_gt(n, 0);
        s += n;
        len -= (size_t)n;
    }
}

/* QEMU's end of the monitor, listening, and the upstream to it. */
struct peer {
    char dir[32], path[64];
    struct event_base *base;
    struct upstream *up;
    int lfd, qemu;
};

static void peer_init(struct peer *p)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct address addr;

    strcpy(p->dir, "/tmp/qmproxy-upstream-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p->dir));
    snprintf(p->path, sizeof(p->path), "%s/qmp", p->dir);
    strncpy(sa.sun_path, p->path, sizeof(sa.sun_path) - 1);
    p->qemu = -1;
    p->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(p->lfd, 1), 0);
    p->base = event_base_new();
    ck_assert_ptr_null(address_parse(p->path, 0, &addr));
    p->up = upstream_new(p->base, &addr, &callbacks, NULL, NULL);
    address_clear(&addr);
    ready = false;
    events = 0;
    free(lost_why);
    lost_why = NULL;
}

static void peer_free(struct peer *p)
{
    if (p->qemu >= 0) {
        close(p->qemu);
    }
    spin(p->base, 5);
    upstream_free(p->up);
    close(p->lfd);
    unlink(p->path);
    rmdir(p->dir);
    event_base_free(p->base);
}

/* The connection the upstream made (it connects from its loop). */
static int peer_accept(struct peer *p)
{
    struct pollfd pf = { .fd = p->lfd, .events = POLLIN };

    for (int i = 0; i < 500 && poll(&pf, 1, 0) == 0; i++) {
        spin(p->base, 1);
    }
    p->qemu = accept(p->lfd, NULL, NULL);
    ck_assert_int_ge(p->qemu, 0);
    return p->qemu;
}

/* What the upstream sent since, and whether it then closed. */
static char *peer_read(struct peer *p, bool *closed)
{
    struct strbuf sb = STRBUF_INIT;
    char buf[4096];
    struct pollfd pf = { .fd = p->qemu, .events = POLLIN };
    ssize_t n = 1;

    spin(p->base, 20);
    *closed = false;
    while (poll(&pf, 1, 0) == 1 && (n = read(p->qemu, buf, sizeof(buf))) > 0) {
        strbuf_add(&sb, buf, (size_t)n);
    }
    *closed = n == 0;
    return strbuf_detach(&sb, NULL);
}

/* QEMU greets the connection; the upstream asks for capabilities. */
static void peer_greet(struct peer *p)
{
    bool closed;
    char *got;

    send_all(p->qemu, greeting, strlen(greeting));
    got = peer_read(p, &closed);
    ck_assert_str_eq(got, "{\"execute\": \"qmp_capabilities\"}");
    ck_assert(!closed);
    free(got);
}

/* Connected, greeted and negotiated. */
static void peer_up(struct peer *p)
{
    upstream_connect(p->up, 5000);
    peer_accept(p);
    peer_greet(p);
    send_all(p->qemu, "{\"return\": {}}\r\n", 16);
    spin(p->base, 20);
    ck_assert(ready);
    ck_assert(upstream_is_ready(p->up));
}

/*
 * A short line QEMU sends that answers nothing, as the very last bytes of
 * upstream's read buffer (16 KiB, filled by one read): its warning quotes
 * the line with "%.200s", which must stop at the line's end, not run on
 * past the buffer (the line is not NUL-terminated).
 */
START_TEST(unrouted_line_at_the_end_of_the_buffer)
{
    struct peer p;
    static const char last[] = "{\"return\": 7}\r\n";
    struct strbuf sb = STRBUF_INIT;

    peer_init(&p);
    peer_up(&p);

    /* an event padding the buffer, then the short line, 16 KiB in all */
    strbuf_adds(&sb, "{\"event\": \"PAD\", \"data\": \"");
    while (sb.len < 16384 - strlen(last) - 4) {
        strbuf_addc(&sb, 'x');
    }
    strbuf_adds(&sb, "\"}\r\n");
    strbuf_adds(&sb, last);
    ck_assert_uint_eq(sb.len, 16384);
    send_all(p.qemu, sb.buf, sb.len);
    spin(p.base, 20);
    ck_assert_uint_eq(upstream_inflight(p.up), 0);

    strbuf_release(&sb);
    peer_free(&p);
}
END_TEST

/*
 * QEMU 7.2 can greet twice on one connection when it is made while the
 * monitor is being set up, and then reads nothing: the proxy's
 * qmp_capabilities went unanswered and its clients waited forever.  The
 * upstream closes that connection and makes another, which QEMU (its
 * monitor set up by then) greets once and serves.  What came after the
 * second greeting on the first connection is nobody's.
 */
START_TEST(second_greeting_in_the_handshake_connects_again)
{
    struct peer p;
    bool closed;
    char *got;

    peer_init(&p);
    upstream_connect(p.up, 5000);
    peer_accept(&p);
    peer_greet(&p);
    /* the second greeting, and a reply in the same write: not taken */
    send_all(p.qemu, greeting, strlen(greeting));
    send_all(p.qemu, "{\"return\": {}}\r\n", 16);
    got = peer_read(&p, &closed);
    ck_assert_str_eq(got, "");
    ck_assert_msg(closed, "the connection greeted twice stays open");
    ck_assert(!ready);
    ck_assert_ptr_null(lost_why);   /* not up yet: nothing was lost */
    free(got);
    close(p.qemu);

    /* the next connection is greeted once and negotiated */
    peer_accept(&p);
    peer_greet(&p);
    send_all(p.qemu, "{\"return\": {}}\r\n", 16);
    spin(p.base, 20);
    ck_assert(ready);
    ck_assert(upstream_is_ready(p.up));
    peer_free(&p);
}
END_TEST

/* Once up, a greeting means QEMU's monitor went back to negotiation:
 * every command would now be refused, so the session is lost (and the
 * router reconnects or exits as configured), said so. */
START_TEST(second_greeting_once_up_loses_the_session)
{
    struct peer p;
    bool closed;
    char *got;

    peer_init(&p);
    peer_up(&p);
    /* the greeting, and an event in the same write: not delivered */
    send_all(p.qemu, greeting, strlen(greeting));
    send_all(p.qemu, "{\"event\": \"STOP\"}\r\n", 19);
    got = peer_read(&p, &closed);
    ck_assert_int_eq(events, 0);
    ck_assert(closed);
    ck_assert(!upstream_is_ready(p.up));
    ck_assert_ptr_nonnull(lost_why);
    ck_assert_msg(strstr(lost_why, "greeted a second time"), "%s", lost_why);
    free(got);
    peer_free(&p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("upstream_lines");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, unrouted_line_at_the_end_of_the_buffer);
    tcase_add_test(tc, second_greeting_in_the_handshake_connects_again);
    tcase_add_test(tc, second_greeting_once_up_loses_the_session);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
