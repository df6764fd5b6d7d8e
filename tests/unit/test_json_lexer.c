/*
 * Unit tests for json-lexer: where QEMU's lexer ends each token, what it
 * refuses, how it recovers, and its size limit, on the lexer alone.
 */
#include <check.h>

#include "check_main.h"
#include <stdint.h>
#include <string.h>

#include "json-lexer.h"
#include "util.h"

static const char *type_name(enum json_token_type t)
{
    switch (t) {
    case JSON_ERROR: return "ERROR";
    case JSON_LCURLY: return "{";
    case JSON_RCURLY: return "}";
    case JSON_LSQUARE: return "[";
    case JSON_RSQUARE: return "]";
    case JSON_COLON: return ":";
    case JSON_COMMA: return ",";
    case JSON_INTEGER: return "INT";
    case JSON_FLOAT: return "FLOAT";
    case JSON_KEYWORD: return "KW";
    case JSON_STRING: return "STR";
    case JSON_TOO_LONG: return "TOO_LONG";
    case JSON_WS_LIMIT: return "WS_LIMIT";
    case JSON_NONE: return "NONE";
    }
    return "?";
}

/*
 * Everything the lexer reports for input, fed `chunk` bytes at a time
 * (0: at once), as "TYPE<bytes>" separated by spaces; a token still open
 * at the end shows as "...<bytes>".
 */
static char *lex(const char *input, size_t len, size_t chunk, size_t max,
                 size_t ws_limit)
{
    struct json_lexer lx;
    struct strbuf out = STRBUF_INIT;
    size_t scan = 0, avail = chunk ? 0 : len;

    json_lexer_init(&lx, max);
    for (;;) {
        enum json_token_type t = json_lexer_next(&lx, input, avail, &scan,
                                                 ws_limit);
        if (t == JSON_NONE) {
            if (avail == len) {
                break;
            }
            avail = avail + chunk < len ? avail + chunk : len;
            continue;
        }
        if (out.len) {
            strbuf_addc(&out, ' ');
        }
        strbuf_addf(&out, "%s<%.*s>", type_name(t),
                    (int)(scan - lx.tok_start), input + lx.tok_start);
    }
    if (json_lexer_in_token(&lx)) {
        strbuf_addf(&out, "%s...<%.*s>", out.len ? " " : "",
                    (int)(scan - lx.tok_start), input + lx.tok_start);
    }
    return strbuf_detach(&out, NULL);
}

static void check_lex(const char *input, size_t max, const char *want)
{
    size_t len = strlen(input);

    /* the same tokens however the input arrives */
    for (size_t chunk = 0; chunk <= 3; chunk++) {
        char *got = lex(input, len, chunk, max, SIZE_MAX);
        ck_assert_msg(!strcmp(got, want), "%s (chunk %zu): got %s, want %s",
                      input, chunk, got, want);
        free(got);
    }
}

struct lex_case {
    const char *in;
    size_t max;
    const char *want;
};

static void check_cases(const struct lex_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        check_lex(cases[i].in, cases[i].max, cases[i].want);
    }
}

#define CHECK_CASES(cases) check_cases(cases, sizeof(cases) / sizeof(cases[0]))

START_TEST(test_token_boundaries)
{
    check_lex("{\"execute\": \"query-status\", \"id\": [1, -2, 0]}", 1024,
              "{<{> STR<\"execute\"> :<:> STR<\"query-status\"> ,<,> "
              "STR<\"id\"> :<:> [<[> INT<1> ,<,> INT<-2> ,<,> INT<0> "
              "]<]> }<}>");
    /* numbers and keywords end at the byte after them, not consuming it */
    check_lex("1.5e3]-0.25,true}null 7E+2:", 1024,
              "FLOAT<1.5e3> ]<]> FLOAT<-0.25> ,<,> KW<true> }<}> "
              "KW<null> FLOAT<7E+2> :<:>");
    /* any lowercase word is a keyword to the lexer (the parser judges) */
    check_lex("tru nulll ", 1024, "KW<tru> KW<nulll>");
    /* QEMU's extension: single-quoted strings, with \' inside */
    check_lex("'it\\'s' \"a\\\"b\"", 1024, "STR<'it\\'s'> STR<\"a\\\"b\">");
    /* a number at the end of the input has not ended yet */
    check_lex("[12", 1024, "[<[> ...<12>");
}
END_TEST

START_TEST(test_strings_pass_bytes_through)
{
    /*
     * Every byte 0x20..0xFD is string content to the lexer: modified
     * UTF-8's NUL, invalid sequences and escapes are the parser's to judge.
     */
    check_lex("\"\xc0\x80\xc3\xa9\xc3\\x\\u12G4\"", 1024,
              "STR<\"\xc0\x80\xc3\xa9\xc3\\x\\u12G4\">");
    /* a control byte in a string is refused, with the string so far */
    check_lex("\"ab\ncd\"", 1024, "ERROR<\"ab\n>");
    /* so is a control byte after a backslash */
    check_lex("'a\\\t' ", 1024, "ERROR<'a\\\t>");
}
END_TEST

START_TEST(test_refused_bytes_and_recovery)
{
    static const struct lex_case cases[] = {
        /* after a refused byte, skip to a structural or control character */
        { "\xff garbage, {", 1024, "ERROR<\xff> ,<,> {<{>" },
        /* a tab does not end recovery; a newline does */
        { "# a\tb [", 1024, "ERROR<#> [<[>" },
        { "# a\nb ", 1024, "ERROR<#> KW<b>" },
        /* 0xFE and 0xFF end recovery and are each refused again */
        { "#\xfe\xff", 1024, "ERROR<#> ERROR<\xfe> ERROR<\xff>" },
        /* numbers QEMU refuses, with the byte that made them wrong */
        { "01 2\n-x\n1.e5\n1e+ \n", 1024,
          "ERROR<01> ERROR<-x> ERROR<1.e> ERROR<1e+ >" },
        /* uppercase letters are not keywords */
        { "True ", 1024, "ERROR<T>" },
    };

    CHECK_CASES(cases);
}
END_TEST

START_TEST(test_size_limit)
{
    static const struct lex_case cases[] = {
        /* a token longer than the limit is given up; lexing restarts */
        { "abcdefgh ", 4, "TOO_LONG<abcde> KW<fgh>" },
        { "123456 ", 5, "TOO_LONG<123456>" },
        { "12345 ", 5, "INT<12345>" },
        /* whitespace and one-byte tokens are never too long */
        { "   [", 1, "[<[>" },
    };

    CHECK_CASES(cases);

    /*
     * A string's plain content is taken in one go, but no further than the
     * limit: the token is given up at the byte that passes it, as QEMU
     * does, whether it was read at once or a byte at a time.
     */
    {
        char *got = lex("\"abcdefgh\"", 10, 0, 4, SIZE_MAX);
        ck_assert_str_eq(got, "TOO_LONG<\"abcd> KW<efgh> ...<\">");
        free(got);
        got = lex("\"abcdefgh\"", 10, 1, 4, SIZE_MAX);
        ck_assert_str_eq(got, "TOO_LONG<\"abcd> KW<efgh> ...<\">");
        free(got);
    }
}
END_TEST

START_TEST(test_whitespace_limit)
{
    char *got = lex("[   1", 5, 0, 1024, 3);

    /* the limit is an offset: stop once whitespace passes it */
    ck_assert_str_eq(got, "[<[> WS_LIMIT< > ...<1>");
    free(got);
    got = lex("[  1", 4, 0, 1024, 3);
    ck_assert_str_eq(got, "[<[> ...<1>");
    free(got);
}
END_TEST

START_TEST(test_shift)
{
    struct json_lexer lx;
    size_t scan = 0;

    json_lexer_init(&lx, 1024);
    ck_assert_int_eq(json_lexer_next(&lx, "  \"abc", 6, &scan, SIZE_MAX),
                     JSON_NONE);
    ck_assert(json_lexer_in_token(&lx));
    ck_assert_uint_eq(lx.tok_start, 2);
    json_lexer_shift(&lx, 2);
    ck_assert_uint_eq(lx.tok_start, 0);
    scan = 4;
    ck_assert_int_eq(json_lexer_next(&lx, "\"abc\"", 5, &scan, SIZE_MAX),
                     JSON_STRING);
    ck_assert_uint_eq(lx.tok_start, 0);
    ck_assert_uint_eq(scan, 5);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("json-lexer");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_token_boundaries);
    tcase_add_test(tc, test_strings_pass_bytes_through);
    tcase_add_test(tc, test_refused_bytes_and_recovery);
    tcase_add_test(tc, test_size_limit);
    tcase_add_test(tc, test_whitespace_limit);
    tcase_add_test(tc, test_shift);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
