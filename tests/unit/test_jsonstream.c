/*
 * Unit tests for jsonstream: where texts end, what they mean, and the
 * errors QEMU would give, whatever the stream is cut into.
 */
#include <check.h>

#include "check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonstream.h"
#include "qjson.h"
#include "util.h"

/* What the stream emitted, one entry per text or error. */
struct collected {
    int n;
    char *raw[4096];
    char *error[4096];
    char *value[4096];      /* qjson of the value, or NULL */
    int nmembers[4096];
    size_t member_value_start[4096];
    size_t member_value_end[4096];
};

static bool collect(void *opaque, const struct js_text *t)
{
    struct collected *c = opaque;

    ck_assert_int_lt(c->n, 4096);
    c->raw[c->n] = xstrndup(t->raw, t->len);
    c->error[c->n] = t->error ? xstrdup(t->error) : NULL;
    c->value[c->n] = t->has_value ? qjson_to_string(t->value) : NULL;
    c->nmembers[c->n] = t->nmembers;
    if (t->nmembers) {
        c->member_value_start[c->n] = t->members[0].value_start;
        c->member_value_end[c->n] = t->members[0].value_end;
    }
    c->n++;
    return true;
}

static void collected_free(struct collected *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->raw[i]);
        free(c->error[i]);
        free(c->value[i]);
    }
    c->n = 0;
}

static struct collected *run(bool values, const char *input, size_t len,
                             size_t max)
{
    struct collected *c = xcalloc(1, sizeof(*c));
    struct jsonstream *js = jsonstream_new(values, max, collect, c);
    jsonstream_feed(js, input, len);
    jsonstream_free(js);
    return c;
}

static struct collected *runs(bool values, const char *input)
{
    return run(values, input, strlen(input), 0);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;

    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = xmalloc(*len + 1);
    ck_assert_uint_eq(fread(buf, 1, *len, f), *len);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

/* Every message of a recorded QEMU session, cut at every byte. */
START_TEST(test_transcript_every_boundary)
{
    size_t len;
    char *data = slurp(QMPROXY_TEST_DATA "/qemu-7.2-transcript.qmp", &len);
    struct collected *whole = run(false, data, len, 0);
    size_t prefix = len < 12000 ? len : 12000;
    int whole_in_prefix = 0;

    ck_assert_int_eq(whole->n, 230);
    for (int i = 0; i < whole->n; i++) {
        ck_assert_ptr_null(whole->error[i]);
        ck_assert(whole->raw[i][0] == '{');
    }
    /* how many whole messages the prefix holds */
    {
        struct collected *p = run(false, data, prefix, 0);
        whole_in_prefix = p->n;
        collected_free(p);
        free(p);
    }
    for (size_t cut = 1; cut < prefix; cut++) {
        struct collected c = { 0 };
        struct jsonstream *js = jsonstream_new(false, 0, collect, &c);
        jsonstream_feed(js, data, cut);
        jsonstream_feed(js, data + cut, prefix - cut);
        jsonstream_free(js);
        ck_assert_int_eq(c.n, whole_in_prefix);
        for (int i = 0; i < c.n; i++) {
            ck_assert_str_eq(c.raw[i], whole->raw[i]);
        }
        collected_free(&c);
    }
    /* the whole transcript in chunks of every small size */
    for (size_t chunk = 1; chunk <= 97; chunk += 3) {
        struct collected c = { 0 };
        struct jsonstream *js = jsonstream_new(false, 0, collect, &c);
        for (size_t off = 0; off < len; off += chunk) {
            jsonstream_feed(js, data + off, off + chunk > len ? len - off
                                                               : chunk);
        }
        jsonstream_free(js);
        ck_assert_int_eq(c.n, whole->n);
        for (int i = 0; i < c.n; i++) {
            ck_assert_str_eq(c.raw[i], whole->raw[i]);
        }
        collected_free(&c);
    }
    collected_free(whole);
    free(whole);
    free(data);
}
END_TEST

START_TEST(test_many_texts_no_delimiters)
{
    struct collected *c = runs(true, "{\"execute\":\"a\"}{\"execute\":\"b\"}"
                                     "[1]{}\"s\"{\"x\":{\"y\":[1,2]}}");
    ck_assert_int_eq(c->n, 6);
    ck_assert_str_eq(c->raw[0], "{\"execute\":\"a\"}");
    ck_assert_str_eq(c->raw[1], "{\"execute\":\"b\"}");
    ck_assert_str_eq(c->value[2], "[1]");
    ck_assert_str_eq(c->value[3], "{}");
    ck_assert_str_eq(c->value[4], "\"s\"");
    ck_assert_str_eq(c->value[5], "{\"x\": {\"y\": [1, 2]}}");
    collected_free(c);
    free(c);
}
END_TEST

START_TEST(test_members_located)
{
    struct collected *c = runs(false, "{\"return\": {\"a\": [1]}, \"id\": "
                                      "{\"x\": 1}}");
    ck_assert_int_eq(c->n, 1);
    ck_assert_int_eq(c->nmembers[0], 2);
    ck_assert_uint_eq(c->member_value_start[0], 11);
    ck_assert_uint_eq(c->member_value_end[0], 21);
    collected_free(c);
    free(c);
}
END_TEST

START_TEST(test_nesting)
{
    struct strbuf sb = STRBUF_INIT;
    struct collected *c;

    /* 1000 levels: a value (json-c's default depth of 32 would refuse) */
    for (int i = 0; i < 1000; i++) {
        strbuf_addc(&sb, '[');
    }
    for (int i = 0; i < 1000; i++) {
        strbuf_addc(&sb, ']');
    }
    c = run(true, sb.buf, sb.len, 0);
    ck_assert_int_eq(c->n, 1);
    ck_assert_ptr_null(c->error[0]);
    ck_assert_uint_eq(strlen(c->value[0]), 2000);
    collected_free(c);
    free(c);
    strbuf_release(&sb);

    /* 1024 objects deep is QEMU's limit; 1025 is an error */
    for (int depth = 1024; depth <= 1025; depth++) {
        for (int i = 0; i < depth; i++) {
            strbuf_adds(&sb, "{\"a\":");
        }
        strbuf_adds(&sb, "1");
        for (int i = 0; i < depth; i++) {
            strbuf_addc(&sb, '}');
        }
        c = run(true, sb.buf, sb.len, 0);
        if (depth == 1024) {
            ck_assert_int_eq(c->n, 1);
            ck_assert_ptr_null(c->error[0]);
        } else {
            /* the error, then each stray '}' as QEMU reports it */
            ck_assert_str_eq(c->error[0], "JSON nesting depth limit exceeded");
            ck_assert_int_gt(c->n, 1);
        }
        collected_free(c);
        free(c);
        strbuf_release(&sb);
    }
}
END_TEST

START_TEST(test_huge_strings)
{
    size_t n = 20u << 20;
    char *s = xmalloc(n + 64);
    struct collected *c;

    strcpy(s, "{\"execute\": \"");
    memset(s + 13, 'x', n);
    strcpy(s + 13 + n, "\"}");
    c = run(true, s, strlen(s), 0);
    ck_assert_int_eq(c->n, 1);
    ck_assert_ptr_null(c->error[0]);
    ck_assert_uint_eq(strlen(c->value[0]), n + 15);
    collected_free(c);
    free(c);

    /* over a 1 MiB cap: QEMU's size error, and the stream goes on */
    c = run(true, s, strlen(s), 1u << 20);
    ck_assert_int_ge(c->n, 1);
    ck_assert_str_eq(c->error[0], "JSON token size limit exceeded");
    collected_free(c);
    free(c);
    free(s);
}
END_TEST

START_TEST(test_garbage_then_recovery)
{
    struct collected *c = runs(true, "\xff garbage, {\"execute\": /x} "
                                     "{\"execute\": \"ok\"}");
    /* 0xFF: stray; skip to ','; ',' alone; the broken object; recovered */
    ck_assert_int_ge(c->n, 3);
    ck_assert_str_eq(c->error[0], "JSON parse error, stray '\xff'");
    ck_assert_ptr_nonnull(c->value[c->n - 1]);
    ck_assert_str_eq(c->value[c->n - 1], "{\"execute\": \"ok\"}");
    collected_free(c);
    free(c);
}
END_TEST

/* QEMU's parser errors, word for word (checked against QEMU 7.2). */
START_TEST(test_parse_errors)
{
    static const struct {
        const char *in, *error;
    } cases[] = {
        { "{\"a\" 1}", "JSON parse error, missing : in object pair" },
        { "{\"a\":1 \"b\":2}", "JSON parse error, expected separator in dict" },
        { "[1 2]", "JSON parse error, expected separator in list" },
        { "{1: 2}", "JSON parse error, key is not a string in object" },
        { "{{\"a\": 1}: 2}", "JSON parse error, key is not a string in object" },
        { "[1,]", "JSON parse error, expecting value" },
        { "{\"a\": tru}", "JSON parse error, invalid keyword 'tru'" },
        { "{\"a\": \"q\\x\"}", "JSON parse error, invalid escape sequence in string" },
        { "{\"a\": \"\\ud800\"}", "JSON parse error, \\ud800 is not a valid Unicode character" },
        { "{\"a\": \"\\u12G4\"}", "JSON parse error, \\u12G4 is not a valid Unicode character" },
        { "{\"a\": \"\xc3\"}", "JSON parse error, invalid UTF-8 sequence in string" },
        { "{\"a\": 1, \"a\": 2}", "JSON parse error, duplicate key" },
        { "]", "JSON parse error, expecting value" },
        { "01 ", "JSON parse error, stray '01'" },
        { "-01 ", "JSON parse error, stray '-01'" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct collected *c = runs(true, cases[i].in);
        ck_assert_msg(c->n >= 1, "%s: nothing emitted", cases[i].in);
        ck_assert_msg(c->error[0] && !strcmp(c->error[0], cases[i].error),
                      "%s: got %s", cases[i].in,
                      c->error[0] ? c->error[0] : "(no error)");
        collected_free(c);
        free(c);
    }
}
END_TEST

START_TEST(test_values_as_qemu)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "{'a': 'single \\' quoted'}", "{\"a\": \"single ' quoted\"}" },
        { "[18446744073709551615, -9223372036854775808, 1e3, -0]",
          "[18446744073709551615, -9223372036854775808, 1000, 0]" },
        { "[123456789012345678901234567890]", "[1.2345678901234568e+29]" },
        { "[1.5, 0.1]", "[1.5, 0.10000000000000001]" },
        { "[\"\\u00e9\\ud83d\\ude00\\u0000\"]", "[\"\\u00E9\\uD83D\\uDE00\\u0000\"]" },
        { "{\"b\": 1, \"a\": 2, \"id\": 3}", "{\"a\": 2, \"b\": 1, \"id\": 3}" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct collected *c = runs(true, cases[i].in);
        ck_assert_int_eq(c->n, 1);
        ck_assert_msg(c->value[0] && !strcmp(c->value[0], cases[i].out),
                      "%s: got %s (error %s)", cases[i].in,
                      c->value[0] ? c->value[0] : "-",
                      c->error[0] ? c->error[0] : "-");
        collected_free(c);
        free(c);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("jsonstream");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_transcript_every_boundary);
    tcase_add_test(tc, test_many_texts_no_delimiters);
    tcase_add_test(tc, test_members_located);
    tcase_add_test(tc, test_nesting);
    tcase_add_test(tc, test_huge_strings);
    tcase_add_test(tc, test_garbage_then_recovery);
    tcase_add_test(tc, test_parse_errors);
    tcase_add_test(tc, test_values_as_qemu);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
