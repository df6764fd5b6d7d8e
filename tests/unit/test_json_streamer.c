/*
 * Unit tests for json-streamer: where texts end, QEMU's limits and their
 * error texts, given tokens directly (no lexer).
 */
#include <check.h>

#include "check_main.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json-streamer.h"
#include "util.h"

/* One-byte tokens: each byte of buf is a token of the type it spells. */
static enum json_token_type byte_token(char c)
{
    switch (c) {
    case '{': return JSON_LCURLY;
    case '}': return JSON_RCURLY;
    case '[': return JSON_LSQUARE;
    case ']': return JSON_RSQUARE;
    case ':': return JSON_COLON;
    case ',': return JSON_COMMA;
    case '"': return JSON_STRING;   /* stands for a string */
    default: return JSON_INTEGER;   /* stands for a number */
    }
}

/* Feed buf's one-byte tokens until a verdict other than MORE; its index. */
static size_t feed_until(struct json_streamer *st, const char *buf,
                         size_t from, size_t len,
                         enum json_streamer_verdict *verdict)
{
    for (size_t i = from; i < len; i++) {
        *verdict = json_streamer_token(st, buf, byte_token(buf[i]), i, i + 1);
        if (*verdict != JSON_STREAMER_MORE) {
            return i;
        }
    }
    *verdict = JSON_STREAMER_MORE;
    return len;
}

/* A token that leaves the text open. */
static void more(struct json_streamer *st, const char *buf,
                 enum json_token_type type, size_t start, size_t end)
{
    ck_assert_int_eq(json_streamer_token(st, buf, type, start, end),
                     JSON_STREAMER_MORE);
}

/* The verdict was an error: QEMU's text, covering [from, to). */
static void check_error(const struct json_streamer *st,
                        enum json_streamer_verdict v, const char *error,
                        size_t from, size_t to)
{
    ck_assert_int_eq(v, JSON_STREAMER_ERROR);
    ck_assert_str_eq(st->error, error);
    ck_assert_uint_eq(st->error_from, from);
    ck_assert_uint_eq(st->error_to, to);
}

START_TEST(test_text_ends_when_balanced)
{
    const char *buf = "[1,[2]]{1:2}3]";
    struct json_streamer st;
    enum json_streamer_verdict v;
    size_t i;

    json_streamer_init(&st, false, 0x1000);
    ck_assert(!json_streamer_in_text(&st));
    i = feed_until(&st, buf, 0, strlen(buf), &v);
    ck_assert_int_eq(v, JSON_STREAMER_TEXT);
    ck_assert_uint_eq(i, 6);
    ck_assert_uint_eq(st.text_start, 0);
    ck_assert_uint_eq(st.last_token_end, 7);
    json_streamer_reset(&st);

    i = feed_until(&st, buf, 7, strlen(buf), &v);
    ck_assert_int_eq(v, JSON_STREAMER_TEXT);
    ck_assert_uint_eq(st.text_start, 7);
    ck_assert_uint_eq(st.last_token_end, 12);
    json_streamer_reset(&st);

    /* a scalar is a text by itself; so is a closing bracket (negative) */
    i = feed_until(&st, buf, 12, strlen(buf), &v);
    ck_assert_int_eq(v, JSON_STREAMER_TEXT);
    ck_assert_uint_eq(i, 12);
    json_streamer_reset(&st);
    i = feed_until(&st, buf, 13, strlen(buf), &v);
    ck_assert_int_eq(v, JSON_STREAMER_TEXT);
    ck_assert_uint_eq(i, 13);
    json_streamer_reset(&st);
    ck_assert(!json_streamer_in_text(&st));
    json_streamer_destroy(&st);
}
END_TEST

START_TEST(test_nesting_limit)
{
    struct strbuf sb = STRBUF_INIT;
    struct json_streamer st;
    enum json_streamer_verdict v;
    size_t i;

    for (int d = 0; d < 1025; d++) {
        strbuf_addc(&sb, d % 2 ? '{' : '[');
    }
    json_streamer_init(&st, true, (size_t)64 << 20);
    /* 1024 open is allowed; the 1025th is QEMU's error, covering the text */
    i = feed_until(&st, sb.buf, 0, sb.len, &v);
    ck_assert_uint_eq(i, 1024);
    check_error(&st, v, "JSON nesting depth limit exceeded", 0, 1025);
    /* the streamer started afresh: a closing brace is a text of its own */
    ck_assert(!json_streamer_in_text(&st));
    ck_assert_int_eq(json_streamer_token(&st, "}", JSON_RCURLY, 0, 1),
                     JSON_STREAMER_TEXT);
    ck_assert_str_eq(st.parser.error, "JSON parse error, expecting value");
    json_streamer_reset(&st);
    json_streamer_destroy(&st);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_token_count_limit)
{
    size_t max = JSONSTREAM_MAX_TOKEN_COUNT;
    size_t len = 1 + 2 * max;
    char *buf = xmalloc(len);
    struct json_streamer st;
    enum json_streamer_verdict v;
    size_t i;

    /* "[1,1,1,...": token number 2 Mi + 1 is one too many */
    buf[0] = '[';
    for (size_t j = 1; j < len; j += 2) {
        buf[j] = '1';
        buf[j + 1] = ',';
    }
    json_streamer_init(&st, false, (size_t)64 << 20);
    i = feed_until(&st, buf, 0, len, &v);
    ck_assert_uint_eq(i, max);
    check_error(&st, v, "JSON token count limit exceeded", 0, max + 1);
    json_streamer_destroy(&st);
    free(buf);
}
END_TEST

START_TEST(test_size_limit)
{
    /* [ "abc" , "def" ]: QEMU counts the tokens' bytes, plus one */
    const char *buf = "[\"abc\",\"def\"]";
    struct json_streamer st;
    enum json_streamer_verdict v;

    /* 7 bytes so far + 5 + 1 > 12; the whole text needs its 13 plus one */
    for (size_t max = 12; max <= 14; max += 2) {
        json_streamer_init(&st, true, max);
        more(&st, buf, JSON_LSQUARE, 0, 1);
        more(&st, buf, JSON_STRING, 1, 6);
        more(&st, buf, JSON_COMMA, 6, 7);
        v = json_streamer_token(&st, buf, JSON_STRING, 7, 12);
        if (max == 12) {
            check_error(&st, v, "JSON token size limit exceeded", 0, 12);
        } else {
            ck_assert_int_eq(v, JSON_STREAMER_MORE);
            ck_assert_int_eq(json_streamer_token(&st, buf, JSON_RSQUARE, 12,
                                                 13), JSON_STREAMER_TEXT);
            ck_assert_ptr_null(st.parser.error);
            json_streamer_reset(&st);
        }
        json_streamer_destroy(&st);
    }
}
END_TEST

START_TEST(test_whitespace_bound)
{
    struct json_streamer st;

    json_streamer_init(&st, false, 100);
    ck_assert_uint_eq(json_streamer_ws_limit(&st), SIZE_MAX);
    more(&st, "  [", JSON_LSQUARE, 2, 3);
    ck_assert_uint_eq(json_streamer_ws_limit(&st), 2 + 200);
    /* what the lexer reports past that bound ends the text */
    check_error(&st, json_streamer_token(&st, "", JSON_WS_LIMIT, 202, 203),
                "JSON token size limit exceeded", 2, 203);
    ck_assert_uint_eq(json_streamer_ws_limit(&st), SIZE_MAX);
    json_streamer_destroy(&st);
}
END_TEST

START_TEST(test_refused_bytes)
{
    struct json_streamer st;

    json_streamer_init(&st, true, 100);
    /* alone: the error covers the refused bytes, printed up to a NUL */
    check_error(&st, json_streamer_token(&st, "-x\0y", JSON_ERROR, 0, 4),
                "JSON parse error, stray '-x'", 0, 4);
    /* inside a text: the error covers the text so far */
    more(&st, "{ #", JSON_LCURLY, 0, 1);
    check_error(&st, json_streamer_token(&st, "{ #", JSON_ERROR, 2, 3),
                "JSON parse error, stray '#'", 0, 3);
    /* so does a token the lexer gave up on */
    more(&st, "[ab", JSON_LSQUARE, 0, 1);
    check_error(&st, json_streamer_token(&st, "[ab", JSON_TOO_LONG, 1, 3),
                "JSON token size limit exceeded", 0, 3);
    json_streamer_destroy(&st);
}
END_TEST

START_TEST(test_shift)
{
    struct json_streamer st;

    json_streamer_init(&st, false, 100);
    more(&st, "  {\"a\"", JSON_LCURLY, 2, 3);
    more(&st, "  {\"a\"", JSON_STRING, 3, 6);
    json_streamer_shift(&st, 2);
    ck_assert_uint_eq(st.text_start, 0);
    ck_assert_uint_eq(st.last_token_end, 4);
    ck_assert_uint_eq(st.parser.members[0].key_start, 1);
    ck_assert_uint_eq(st.parser.members[0].key_end, 4);
    json_streamer_destroy(&st);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("json-streamer");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_text_ends_when_balanced);
    tcase_add_test(tc, test_nesting_limit);
    tcase_add_test(tc, test_token_count_limit);
    tcase_add_test(tc, test_size_limit);
    tcase_add_test(tc, test_whitespace_bound);
    tcase_add_test(tc, test_refused_bytes);
    tcase_add_test(tc, test_shift);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
