/*
 * Unit tests for linestream, QEMU's side of the monitor: a message a line
 * whatever it holds (inf, nan, garbage), split at any byte boundary, with
 * its top-level members located leniently.
 */
#include <check.h>

#include "check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linestream.h"
#include "qmp.h"
#include "util.h"

struct seen {
    int n;
    char *texts[512];
    enum qmp_kind kinds[512];
    char *ids[512];
    bool crlf[512];
};

static bool collect(void *opaque, const struct js_text *t)
{
    struct seen *s = opaque;
    const struct js_member *id = js_text_member(t, "id");

    ck_assert_ptr_null(t->error);
    ck_assert_int_lt(s->n, 512);
    s->texts[s->n] = xstrndup(t->raw, t->len);
    s->kinds[s->n] = qmp_classify(t);
    s->ids[s->n] = id ? xstrndup(t->raw + id->value_start,
                                 id->value_end - id->value_start) : NULL;
    s->crlf[s->n] = t->after >= 2 && t->raw[t->len] == '\r'
        && t->raw[t->len + 1] == '\n';
    s->n++;
    return true;
}

static void seen_free(struct seen *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->texts[i]);
        free(s->ids[i]);
    }
    memset(s, 0, sizeof(*s));
}

/* Feed data in pieces of at most chunk bytes. */
static void feed(struct seen *s, const char *data, size_t len, size_t chunk)
{
    struct linestream *ls = linestream_new(collect, s);

    for (size_t off = 0; off < len;) {
        size_t avail, n = len - off < chunk ? len - off : chunk;
        char *room = linestream_reserve(ls, n, &avail);
        ck_assert_uint_ge(avail, n);
        memcpy(room, data + off, n);
        ck_assert(linestream_commit(ls, n));
        off += n;
    }
    linestream_free(ls);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;

    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = xmalloc(*len + 1);
    ck_assert_uint_eq(fread(buf, 1, *len, f), *len);
    fclose(f);
    buf[*len] = 0;
    return buf;
}

START_TEST(test_transcript_at_every_boundary)
{
    size_t len;
    char *data = read_file(QMPROXY_TEST_DATA "/qemu-7.2-transcript.qmp",
                           &len);
    struct seen whole = { 0 }, part = { 0 };
    int lines = 0;

    for (size_t i = 0; i < len; i++) {
        lines += data[i] == '\n';
    }
    feed(&whole, data, len, len);
    ck_assert_int_eq(whole.n, lines);
    ck_assert_int_eq(whole.kinds[0], QMP_GREETING);
    /* one cut anywhere in the first few messages, then 1-byte feeding */
    for (size_t cut = 1; cut < 4096 && cut < len; cut += 7) {
        struct linestream *ls = linestream_new(collect, &part);
        size_t avail;
        memcpy(linestream_reserve(ls, cut, &avail), data, cut);
        linestream_commit(ls, cut);
        memcpy(linestream_reserve(ls, len - cut, &avail), data + cut,
               len - cut);
        linestream_commit(ls, len - cut);
        linestream_free(ls);
        ck_assert_int_eq(part.n, whole.n);
        for (int i = 0; i < whole.n; i++) {
            ck_assert_str_eq(part.texts[i], whole.texts[i]);
        }
        seen_free(&part);
    }
    feed(&part, data, len, 1);
    ck_assert_int_eq(part.n, whole.n);
    seen_free(&part);
    seen_free(&whole);
    free(data);
}
END_TEST

START_TEST(test_non_json_replies_are_one_message_each)
{
    static const char input[] =
        "{\"return\": {\"status\": \"running\"}, \"id\": -inf}\r\n"
        "{\"return\": {}, \"id\": [inf, {\"a\": nan}]}\r\n"
        "{\"id\": -nan, \"error\": {\"class\": \"GenericError\", "
        "\"desc\": \"x\"}}\r\n"
        "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
        "\"event\": \"STOP\"}\r\n"
        "{\"return\": {}, \"id\": \"}{\\\"]\"}\r\n"
        "{\"something\": else entirely}\r\n";
    struct seen s = { 0 };

    for (size_t chunk = 1; chunk <= sizeof(input); chunk++) {
        feed(&s, input, sizeof(input) - 1, chunk);
        ck_assert_int_eq(s.n, 6);
        ck_assert_int_eq(s.kinds[0], QMP_RETURN);
        ck_assert_str_eq(s.ids[0], "-inf");
        ck_assert_int_eq(s.kinds[1], QMP_RETURN);
        ck_assert_str_eq(s.ids[1], "[inf, {\"a\": nan}]");
        ck_assert_int_eq(s.kinds[2], QMP_ERROR);
        ck_assert_str_eq(s.ids[2], "-nan");
        ck_assert_int_eq(s.kinds[3], QMP_EVENT);
        ck_assert_str_eq(s.ids[4], "\"}{\\\"]\"");
        ck_assert_int_eq(s.kinds[5], QMP_UNKNOWN);
        for (int i = 0; i < s.n; i++) {
            ck_assert(s.crlf[i]);  /* QEMU's own CRLF can be forwarded */
        }
        seen_free(&s);
    }
}
END_TEST

START_TEST(test_blank_lines_and_bare_newlines)
{
    static const char input[] = "\r\n  \n{\"return\": {}}\n\r\n{\"return\": 1}";
    struct seen s = { 0 };

    feed(&s, input, sizeof(input) - 1, 3);
    /* the last line is not complete yet */
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.texts[0], "{\"return\": {}}");
    ck_assert(!s.crlf[0]);
    seen_free(&s);
}
END_TEST

START_TEST(test_large_message_then_memory_given_back)
{
    size_t big = 8u << 20, avail;
    struct seen s = { 0 };
    struct linestream *ls = linestream_new(collect, &s);
    char *room = linestream_reserve(ls, big + 32, &avail);

    memcpy(room, "{\"return\": \"", 12);
    memset(room + 12, 'x', big);
    memcpy(room + 12 + big, "\"}\r\n", 4);
    linestream_commit(ls, big + 16);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(strlen(s.texts[0]), big + 14);
    /* the next small read does not keep the 8 MiB buffer */
    linestream_reserve(ls, 16384, &avail);
    ck_assert_uint_le(avail, 1u << 20);
    linestream_free(ls);
    seen_free(&s);
}
END_TEST

static Suite *linestream_suite(void)
{
    Suite *s = suite_create("linestream");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_transcript_at_every_boundary);
    tcase_add_test(tc, test_non_json_replies_are_one_message_each);
    tcase_add_test(tc, test_blank_lines_and_bare_newlines);
    tcase_add_test(tc, test_large_message_then_memory_given_back);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(linestream_suite)
