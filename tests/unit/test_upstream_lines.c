/*
 * The upstream connection reading QEMU's lines, alone on an event loop with
 * a scripted peer in QEMU's place: what it does with a line it cannot
 * route.  Run under tests/run.sh --sanitize, ASan checks every byte it
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

static void on_ready(void *opaque)
{
    (void)opaque;
    ready = true;
}

static const struct upstream_callbacks callbacks = { .ready = on_ready };

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

/*
 * A short line QEMU sends that answers nothing, as the very last bytes of
 * upstream's read buffer (16 KiB, filled by one read): its warning quotes
 * the line with "%.200s", which must stop at the line's end, not run on
 * past the buffer (the line is not NUL-terminated).
 */
START_TEST(unrouted_line_at_the_end_of_the_buffer)
{
    char dir[] = "/tmp/qmproxy-upstream-XXXXXX", path[64];
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct event_base *base = event_base_new();
    struct address addr;
    struct upstream *up;
    int lfd, qemu;
    static const char last[] = "{\"return\": 7}\r\n";
    struct strbuf sb = STRBUF_INIT;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/qmp", dir);
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(lfd, 1), 0);
    ck_assert_ptr_null(address_parse(path, 0, &addr));
    up = upstream_new(base, &addr, &callbacks, NULL, NULL);
    address_clear(&addr);
    upstream_connect(up, 1000);
    spin(base, 5);
    qemu = accept(lfd, NULL, NULL);
    ck_assert_int_ge(qemu, 0);
    send_all(qemu, greeting, strlen(greeting));
    spin(base, 20);
    send_all(qemu, "{\"return\": {}}\r\n", 16);   /* qmp_capabilities */
    spin(base, 20);
    ck_assert(ready);
    {
        /* drop what the proxy wrote (its qmp_capabilities) */
        char buf[4096];
        struct pollfd p = { .fd = qemu, .events = POLLIN };
        while (poll(&p, 1, 0) == 1 && read(qemu, buf, sizeof(buf)) > 0) {
        }
    }

    /* an event padding the buffer, then the short line, 16 KiB in all */
    strbuf_adds(&sb, "{\"event\": \"PAD\", \"data\": \"");
    while (sb.len < 16384 - strlen(last) - 4) {
        strbuf_addc(&sb, 'x');
    }
    strbuf_adds(&sb, "\"}\r\n");
    strbuf_adds(&sb, last);
    ck_assert_uint_eq(sb.len, 16384);
    send_all(qemu, sb.buf, sb.len);
    spin(base, 20);
    ck_assert_uint_eq(upstream_inflight(up), 0);

    strbuf_release(&sb);
    close(qemu);
    spin(base, 5);
    upstream_free(up);
    close(lfd);
    unlink(path);
    rmdir(dir);
    event_base_free(base);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("upstream_lines");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, unrouted_line_at_the_end_of_the_buffer);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
