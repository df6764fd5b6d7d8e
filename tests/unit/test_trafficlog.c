/*
 * Unit tests for the traffic log: the exact line format (formatting moved
 * to the writer thread and must not change a byte), exact accounting of
 * written and lost lines through a small ring, and lines reaching the file
 * without a flush (the writer's own timer).
 */
#include <check.h>

#include "check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "trafficlog.h"
#include "util.h"

static char *temp_path(void)
{
    char *path = xstrdup("/tmp/qmproxy-tlog-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    return path;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct strbuf sb = STRBUF_INIT;
    char chunk[65536];
    size_t n;

    ck_assert_ptr_nonnull(f);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        strbuf_add(&sb, chunk, n);
    }
    fclose(f);
    *len = sb.len;
    return sb.buf ? sb.buf : xstrdup("");
}

static size_t count_lines(const char *path)
{
    size_t len, n = 0;
    char *text = slurp(path, &len);
    for (size_t i = 0; i < len; i++) {
        n += text[i] == '\n';
    }
    free(text);
    return n;
}

static void record(struct trafficlog *tl, enum tlog_dir dir,
                   enum tlog_from from, const char *kind, unsigned client,
                   bool broadcast, const char *raw, bool malformed, int nfds,
                   int64_t latency)
{
    struct tlog_entry e = {
        .dir = dir, .from = from, .kind = kind, .client = client,
        .broadcast = broadcast, .raw = raw, .len = strlen(raw),
        .malformed = malformed, .nfds = nfds, .latency_us = latency,
    };
    trafficlog_record(tl, &e);
}

/* Each line, with its 27-character time replaced by T. */
static const char *const expected_lines[] = {
    "{\"time\": \"T\", \"dir\": \"in\", \"client\": 1, \"from\": \"client\", "
    "\"kind\": \"command\", \"fds\": 2, \"msg\": {\"execute\": \"getfd\", "
    "\"arguments\": {\"fdname\": \"x\"}}}",
    "{\"time\": \"T\", \"dir\": \"out\", \"client\": 1, \"from\": \"qemu\", "
    "\"kind\": \"reply\", \"latency_us\": 1234, \"msg\": {\"return\": {}}}",
    "{\"time\": \"T\", \"dir\": \"out\", \"from\": \"qemu\", \"kind\": "
    "\"event\", \"msg\": {\"event\": \"STOP\",  \"data\": {}}}",
    "{\"time\": \"T\", \"dir\": \"in\", \"client\": 3, \"from\": \"client\", "
    "\"kind\": \"command\", \"msg\": \"\\u00FF}\", \"malformed\": true}",
    "{\"time\": \"T\", \"dir\": \"in\", \"client\": 3, \"from\": \"client\", "
    "\"kind\": \"command\", \"msg\": { \"execute\": \"query-version\", "
    "\"id\": \"sq\" }}",
    "{\"time\": \"T\", \"dir\": \"in\", \"client\": 0, \"from\": \"qmproxy\", "
    "\"kind\": \"command\", \"msg\": {\"execute\": \"qmp_capabilities\"}}",
    "{\"time\": \"T\", \"note\": \"policy-reloaded\", \"detail\": \"/p.xml\"}",
};

START_TEST(test_line_format)
{
    char *path = temp_path(), *error = NULL;
    struct trafficlog *tl = trafficlog_new(NULL, path, 0, &error);
    size_t len, nlines = sizeof(expected_lines) / sizeof(*expected_lines);

    ck_assert_ptr_nonnull(tl);
    record(tl, TLOG_IN, TLOG_FROM_CLIENT, "command", 1, false,
           "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"x\"}}",
           false, 2, -1);
    record(tl, TLOG_OUT, TLOG_FROM_QEMU, "reply", 1, false,
           "{\"return\": {}}\r\n", false, 0, 1234);
    record(tl, TLOG_OUT, TLOG_FROM_QEMU, "event", 0, true,
           "{\"event\": \"STOP\",\n\t\"data\": {}}", false, 0, -1);
    record(tl, TLOG_IN, TLOG_FROM_CLIENT, "command", 3, false,
           "\xc3\xbf}\r\n", true, 0, -1);
    record(tl, TLOG_IN, TLOG_FROM_CLIENT, "command", 3, false,
           "{'execute': 'query-version', 'id': 'sq'}", false, 0, -1);
    record(tl, TLOG_IN, TLOG_FROM_PROXY, "command", 0, false,
           "{\"execute\": \"qmp_capabilities\"}", false, 0, -1);
    trafficlog_note(tl, "policy-reloaded", "/p.xml");
    ck_assert(trafficlog_flush(tl, 10000));

    char *text = slurp(path, &len), *line = text;
    for (size_t i = 0; i < nlines; i++) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = 0;
        ck_assert_msg(!strncmp(line, "{\"time\": \"", 10) && nl - line > 38
                      && line[10 + 26] == 'Z' && line[10 + 19] == '.',
                      "line %zu: %s", i, line);
        struct strbuf sb = STRBUF_INIT;
        strbuf_add(&sb, line, 10);
        strbuf_adds(&sb, "T");
        strbuf_adds(&sb, line + 10 + 27);
        ck_assert_str_eq(sb.buf, expected_lines[i]);
        strbuf_release(&sb);
        line = nl + 1;
    }
    ck_assert_str_eq(line, "");
    free(text);
    trafficlog_free(tl);
    unlink(path);
    free(path);
}
END_TEST

/* Every line is either in the file or counted in a "lost" note. */
START_TEST(test_burst_accounted)
{
    char *path = temp_path(), *error = NULL;
    struct trafficlog *tl = trafficlog_new(NULL, path, 64 * 1024, &error);
    const char *msg = "{\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
                      "\"major\": 7}, \"package\": \"x\"}}";
    size_t n = 200000, len, lines = 0;
    unsigned long long noted = 0;

    ck_assert_ptr_nonnull(tl);
    for (size_t i = 0; i < n; i++) {
        record(tl, TLOG_OUT, TLOG_FROM_QEMU, "reply", 1, false, msg, false,
               0, 7);
    }
    ck_assert(trafficlog_flush(tl, 30000));
    char *text = slurp(path, &len);
    for (char *p = text; (p = strchr(p, '\n')); p++) {
        lines++;
    }
    for (char *p = text; (p = strstr(p, "\"note\": \"lost\", \"lines\": "));
         p++) {
        noted += strtoull(p + strlen("\"note\": \"lost\", \"lines\": "), NULL,
                          10);
        lines--;  /* the note is not a recorded line */
    }
    ck_assert_uint_eq(lines + noted, n);
    ck_assert_uint_eq(noted, trafficlog_dropped(tl));
    free(text);
    trafficlog_free(tl);
    unlink(path);
    free(path);
}
END_TEST

/* No flush, no more lines: the writer's timer brings them to the file. */
START_TEST(test_lines_arrive_unprompted)
{
    char *path = temp_path(), *error = NULL;
    struct trafficlog *tl = trafficlog_new(NULL, path, 0, &error);

    ck_assert_ptr_nonnull(tl);
    for (int i = 0; i < 10; i++) {
        record(tl, TLOG_IN, TLOG_FROM_CLIENT, "command", 1, false,
               "{\"execute\": \"query-status\"}", false, 0, -1);
    }
    /* bounded: 10 s, far above the writer's 20 ms */
    for (int tries = 0; tries < 1000 && count_lines(path) < 10; tries++) {
        usleep(10000);
    }
    ck_assert_uint_eq(count_lines(path), 10);
    trafficlog_free(tl);
    unlink(path);
    free(path);
}
END_TEST

static Suite *trafficlog_suite(void)
{
    Suite *s = suite_create("trafficlog");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_line_format);
    tcase_add_test(tc, test_burst_accounted);
    tcase_add_test(tc, test_lines_arrive_unprompted);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(trafficlog_suite)
