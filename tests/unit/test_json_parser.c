/*
 * Unit tests for json-parser: QEMU's first error, QEMU's literals and where
 * members sit, on the parser fed one text's tokens (lexed by json-lexer,
 * no streamer).
 */
#include <check.h>

#include "check_main.h"
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json-lexer.h"
#include "json-parser.h"
#include "util.h"

/* Parse one text: every token of input, then its end. */
static void parse(struct json_parser *p, bool values, const char *input)
{
    struct json_lexer lx;
    size_t scan = 0, len = strlen(input);
    int depth = 0;
    bool first = true;

    json_parser_init(p, values);
    json_lexer_init(&lx, 1024);
    for (;;) {
        enum json_token_type t = json_lexer_next(&lx, input, len, &scan,
                                                 SIZE_MAX);
        int prev = depth;

        if (t == JSON_NONE) {
            break;
        }
        ck_assert_int_ge(t, JSON_MIN);
        ck_assert_int_le(t, JSON_MAX);
        depth += t == JSON_LCURLY || t == JSON_LSQUARE;
        depth -= t == JSON_RCURLY || t == JSON_RSQUARE;
        json_parser_token(p, t, input, lx.tok_start, scan, first, prev,
                          depth);
        first = false;
    }
    json_parser_end(p);
}

static void check_error(const char *input, const char *want)
{
    struct json_parser p;

    parse(&p, true, input);
    ck_assert_msg(p.error && !strcmp(p.error, want), "%s: got %s, want %s",
                  input, p.error ? p.error : "(none)", want);
    json_parser_destroy(&p);
}

START_TEST(test_first_error_wins)
{
    /* each input has a later error too; QEMU reports the first */
    check_error("{\"a\" 1, 2: tru}", "JSON parse error, missing : in object pair");
    check_error("{1: tru}", "JSON parse error, key is not a string in object");
    check_error("[\"\\x\", tru]", "JSON parse error, invalid escape sequence in string");
    check_error("[tru, \"\\x\"]", "JSON parse error, invalid keyword 'tru'");
    check_error("{\"a\": 1, \"a\": 2, 3: 4}", "JSON parse error, duplicate key");
    /* a value is parsed before its key is found taken, as in QEMU */
    check_error("{\"a\": 1, \"a\": [1 2]}", "JSON parse error, expected separator in list");
    check_error("[1 2, {1: 2}]", "JSON parse error, expected separator in list");
    check_error("{\"a\": 1 \"b\"}", "JSON parse error, expected separator in dict");
    check_error("[1,,2]", "JSON parse error, expecting value");
    check_error("{,}", "JSON parse error, expecting value");
    check_error("{\"a\": }", "JSON parse error, expecting value");
    /* the text ended with the value incomplete */
    check_error("[1,", "JSON parse error, premature EOI");
    check_error("{\"a\"", "JSON parse error, premature EOI");
}
END_TEST

START_TEST(test_unicode)
{
    static const struct {
        const char *in, *error;
    } bad[] = {
        { "\"\\ud800\"", "JSON parse error, \\ud800 is not a valid Unicode character" },
        { "\"\\ud800\\u0041\"", "JSON parse error, \\ud800 is not a valid Unicode character" },
        { "\"\\udc00\"", "JSON parse error, \\udc00 is not a valid Unicode character" },
        { "\"\\u12\"", "JSON parse error, \\u12\" is not a valid Unicode character" },
        { "\"\xc3\"", "JSON parse error, invalid UTF-8 sequence in string" },
        { "\"\xe9t\xc3\xa9\"", "JSON parse error, invalid UTF-8 sequence in string" },
    };
    struct json_parser p;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        check_error(bad[i].in, bad[i].error);
    }
    /* modified UTF-8: \xC0\x80 and \u0000 are NUL, kept as \xC0\x80 */
    parse(&p, true, "['\xc0\x80\\u0000\\ud83d\\ude00\xc3\xa9']");
    ck_assert_ptr_null(p.error);
    ck_assert_int_eq(json_object_get_string_len(
                         json_object_array_get_idx(p.result, 0)), 10);
    ck_assert_mem_eq(json_object_get_string(
                         json_object_array_get_idx(p.result, 0)),
                     "\xc0\x80\xc0\x80\xf0\x9f\x98\x80\xc3\xa9", 11);
    json_parser_destroy(&p);
}
END_TEST

START_TEST(test_numbers)
{
    static const struct {
        const char *in;
        json_type type;
        const char *out;
    } cases[] = {
        { "9223372036854775807", json_type_int, "9223372036854775807" },
        { "-9223372036854775808", json_type_int, "-9223372036854775808" },
        { "9223372036854775808", json_type_int, "9223372036854775808" },
        { "18446744073709551615", json_type_int, "18446744073709551615" },
        { "18446744073709551616", json_type_double, "18446744073709551616" },
        { "-9223372036854775809", json_type_double, "-9223372036854775808" },
        { "-0", json_type_int, "0" },
        { "2.5e1", json_type_double, "25" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct json_parser p;
        char *in = xasprintf("[%s]", cases[i].in);
        json_object *v;
        char out[64];

        parse(&p, true, in);
        ck_assert_msg(!p.error, "%s: %s", in, p.error);
        v = json_object_array_get_idx(p.result, 0);
        ck_assert_msg(json_object_is_type(v, cases[i].type), "%s: type %d",
                      in, json_object_get_type(v));
        if (cases[i].type == json_type_double) {
            snprintf(out, sizeof(out), "%.0f", json_object_get_double(v));
        } else if (cases[i].in[0] == '-') {
            snprintf(out, sizeof(out), "%" PRId64, json_object_get_int64(v));
        } else {
            snprintf(out, sizeof(out), "%" PRIu64, json_object_get_uint64(v));
        }
        ck_assert_msg(!strcmp(out, cases[i].out), "%s: got %s", in, out);
        json_parser_destroy(&p);
        free(in);
    }
}
END_TEST

START_TEST(test_members)
{
    const char *in = "{\"a\": [1, {\"b\": 2}], 'c' : \"x\", \"d\": {}}";

    /* the same spans with and without values */
    for (int values = 0; values <= 1; values++) {
        struct json_parser p;
        struct js_member m[JSONSTREAM_MAX_MEMBERS];

        parse(&p, values, in);
        ck_assert(p.is_object);
        ck_assert_int_eq(p.nmembers, 3);
        json_parser_members(&p, 1, m);
        /* offsets from 1: "a" at 1..4 is 0..3, its [...] 6..19 is 5..18 */
        ck_assert_uint_eq(m[0].key_start, 0);
        ck_assert_uint_eq(m[0].key_end, 3);
        ck_assert_uint_eq(m[0].value_start, 5);
        ck_assert_uint_eq(m[0].value_end, 18);
        ck_assert_uint_eq(m[1].key_start, 20);
        ck_assert_uint_eq(m[1].value_start, 26);
        ck_assert_uint_eq(m[1].value_end, 29);
        ck_assert_uint_eq(m[2].value_start, 36);
        ck_assert_uint_eq(m[2].value_end, 38);
        ck_assert(values ? p.result != NULL : p.result == NULL);
        json_parser_destroy(&p);
    }
}
END_TEST

START_TEST(test_members_overflow)
{
    struct strbuf sb = STRBUF_INIT;
    struct json_parser p;

    strbuf_addc(&sb, '{');
    for (int i = 0; i < JSONSTREAM_MAX_MEMBERS + 2; i++) {
        strbuf_addf(&sb, "%s\"k%d\": %d", i ? ", " : "", i, i);
    }
    strbuf_addc(&sb, '}');
    parse(&p, false, sb.buf);
    ck_assert_int_eq(p.nmembers, JSONSTREAM_MAX_MEMBERS);
    ck_assert(p.members_overflow);
    json_parser_destroy(&p);

    /* not an object: no members */
    parse(&p, false, "[{\"a\": 1}]");
    ck_assert(!p.is_object);
    ck_assert_int_eq(p.nmembers, 0);
    json_parser_destroy(&p);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_reset)
{
    struct json_parser p;

    parse(&p, true, "{\"a\": tru");
    ck_assert_ptr_nonnull(p.error);
    json_parser_reset(&p);
    ck_assert_ptr_null(p.error);
    ck_assert_int_eq(p.nmembers, 0);
    ck_assert_int_eq(p.top_state, PS_TOP);
    json_parser_destroy(&p);
}
END_TEST

START_TEST(test_decode_string)
{
    char *error = NULL;
    json_object *s = json_parser_decode_string("'\\u0069d'", 9, &error);

    ck_assert_ptr_null(error);
    ck_assert_str_eq(json_object_get_string(s), "id");
    json_object_put(s);
    ck_assert_ptr_null(json_parser_decode_string("\"\\q\"", 4, &error));
    ck_assert_str_eq(error, "JSON parse error, invalid escape sequence in string");
    free(error);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("json-parser");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_first_error_wins);
    tcase_add_test(tc, test_unicode);
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_members);
    tcase_add_test(tc, test_members_overflow);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_decode_string);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
