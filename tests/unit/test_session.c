/*
 * Reply slots and in-order routing, with the real session, router and
 * upstream on an event loop and a scripted peer in QEMU's place.  A fake
 * QEMU is right here: the point is to hold a reply back at a chosen moment,
 * which a real QEMU cannot be asked to do.
 */
#include <check.h>

#include "check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rig.h"

/* An error the proxy answers at once waits behind an earlier command. */
START_TEST(test_local_reply_waits_its_turn)
{
    struct rig r;
    int c;
    char *up;

    rig_up(&r);
    c = rig_client(&r);
    rig_send(c, "{\"execute\":\"a\",\"id\":1}garbage {\"execute\":\"c\","
                "\"id\":3}");
    rig_spin(&r, 20);
    /* QEMU got a, byte for byte; c waits for the replies before it, as
     * QEMU itself reads a client without oob one command at a time */
    up = rig_drain(r.qemu);
    ck_assert_str_eq(up, "{\"execute\":\"a\",\"id\":1}");
    free(up);
    rig_expect(&r, c, "");  /* the error must not overtake a's reply */
    rig_send(r.qemu, "{\"return\": \"A\", \"id\": 1}\r\n");
    rig_expect(&r, c, "{\"return\": \"A\", \"id\": 1}\r\n"
                  "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                  "\"JSON parse error, invalid keyword 'garbage'\"}}\r\n");
    /* then c, never the garbage */
    up = rig_drain(r.qemu);
    ck_assert_str_eq(up, "{\"execute\":\"c\",\"id\":3}");
    free(up);
    rig_send(r.qemu, "{\"return\": \"C\", \"id\": 3}\r\n");
    rig_expect(&r, c, "{\"return\": \"C\", \"id\": 3}\r\n");
    close(c);
    rig_spin(&r, 10);
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
    x = rig_client(&r);
    y = rig_client(&r);
    rig_send(x, "{\"execute\":\"q\"}");
    rig_spin(&r, 10);
    rig_send(y, "{\"execute\":\"q\"}");
    rig_spin(&r, 10);
    rig_send(x, "{\"execute\":\"q\",\"id\":\"same\"}");
    rig_spin(&r, 10);
    rig_send(y, "{\"execute\":\"q\",\"id\":\"same\"}");
    rig_spin(&r, 20);
    /* each client's second command waits for the reply to its first */
    up = rig_drain(r.qemu);
    ck_assert_str_eq(up, "{\"execute\":\"q\"}{\"execute\":\"q\"}");
    free(up);
    /* an event in the middle goes to both */
    rig_send(r.qemu, "{\"return\": 1}\r\n{\"timestamp\": {\"seconds\": 1, "
                     "\"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                     "{\"return\": 2}\r\n");
    rig_spin(&r, 20);
    up = rig_drain(r.qemu);
    ck_assert_str_eq(up, "{\"execute\":\"q\",\"id\":\"same\"}"
                         "{\"execute\":\"q\",\"id\":\"same\"}");
    free(up);
    rig_send(r.qemu, "{\"return\": 3, \"id\": \"same\"}\r\n"
                     "{\"return\": 4, \"id\": \"same\"}\r\n");
    rig_spin(&r, 20);
    char *gx = rig_drain(x), *gy = rig_drain(y);
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
    rig_spin(&r, 10);
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
    x = rig_client(&r);
    y = rig_client(&r);
    rig_send(x, "{\"execute\":\"slow\"}");
    rig_spin(&r, 10);
    rig_send(y, "{\"execute\":\"fast\"}");
    rig_spin(&r, 10);
    up = rig_drain(r.qemu);
    free(up);
    close(x);
    rig_spin(&r, 10);
    rig_send(r.qemu, "{\"return\": \"for x\"}\r\n{\"return\": \"for y\"}\r\n");
    rig_expect(&r, y, "{\"return\": \"for y\"}\r\n");
    close(y);
    rig_spin(&r, 10);
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
    c = rig_unix_connect(r.proxy_path);
    rig_spin(&r, 20);
    free(rig_drain(c));
    rig_send(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": "
                "{\"enable\": [\"oob\"]}}");
    rig_expect(&r, c, "{\"return\": {}}\r\n");
    rig_send(c, "{\"exec-oob\": \"x\", \"id\": {\"b\": 1, \"a\": 2}}");
    rig_spin(&r, 20);
    up = rig_drain(r.qemu);
    id_start = strstr(up, "\"qmproxy-oob-");
    ck_assert_ptr_nonnull(id_start);
    id_end = strchr(id_start + 1, '"');
    snprintf(reply, sizeof(reply), "{\"return\": {}, \"id\": %.*s}\r\n",
             (int)(id_end - id_start + 1), id_start);
    rig_send(r.qemu, reply);
    /* QEMU would have echoed the id in its own member order */
    rig_expect(&r, c, "{\"return\": {}, \"id\": {\"a\": 2, \"b\": 1}}\r\n");
    free(up);
    close(c);
    rig_spin(&r, 10);
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
