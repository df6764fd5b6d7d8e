/*
 * fuzz_jsonstream_diff: jsonstream against a reference, json-c's strict
 * tokener (JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8).
 *
 * For an input json-c reads as exactly one standard JSON text (whitespace
 * around it allowed), jsonstream must produce exactly one text, without
 * error, whose value is equal, except where QEMU's documented rules differ
 * from standard JSON; those inputs are skipped (or compared with the rule
 * applied), each case below saying why:
 *  - duplicate keys: QEMU refuses them ("duplicate key"), json-c keeps
 *    the last;
 *  - U+0000 (\u0000): QEMU keeps it in modified UTF-8 (\xC0\x80), json-c
 *    as a NUL byte, and json-c's keys are C strings: skipped;
 *  - noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF) and unpaired
 *    surrogate escapes: QEMU refuses them ("invalid UTF-8 sequence",
 *    "is not a valid Unicode character"), standard JSON allows them;
 *  - integers beyond int64/uint64: QEMU makes them doubles, json-c
 *    saturates them;
 *  - nesting: QEMU's limit is 1024 ("nesting depth limit exceeded");
 *  - numbers JSON's grammar does not allow ("00", "-01", "0.", "1.e5"):
 *    json-c 0.16 accepts them even when strict, standard JSON and QEMU
 *    do not (a json-c deviation): skipped;
 *  - invalid UTF-8 that json-c's validation lets through (overlong forms
 *    such as \xC1\xBC): the input is checked against RFC 3629 first;
 *  - single-quoted strings: json-c accepts them even when strict (so
 *    does QEMU, but with QEMU's rules inside): skipped;
 *  - raw control characters (a tab...) inside a string: json-c accepts
 *    them even when strict, JSON and QEMU do not: skipped;
 *  - NaN, Infinity, -Infinity: json-c accepts them even when strict;
 *    they are not JSON: skipped;
 *  - an exponent right after a lone zero ("0e5", "-0E1"): QEMU's lexer
 *    has no exponent after IN_ZERO and reads an integer 0 and a stray
 *    "e5"; standard JSON allows it: skipped.
 * Anything else that differs aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_common.h"
#include "fuzz_json.h"
#include "jsonstream.h"

/* Does s (standard UTF-8, json-c's) hold a code point QEMU refuses? */
static bool has_nonchar_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < n;) {
        unsigned c = p[i], cp, len;
        if (c < 0x80) {
            i++;
            continue;
        }
        len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        cp = c & (0xFFu >> (len + 1));
        for (unsigned k = 1; k < len && i + k < n; k++) {
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE
            || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return true;
        }
        i += len;
    }
    return false;
}

/* A \u escape anywhere in the input of a surrogate (QEMU refuses any
 * it cannot pair) or a noncharacter. */
static bool has_refused_escape(const char *s, size_t n)
{
    for (size_t i = 0; i + 5 < n; i++) {
        char hex[5];
        unsigned cp;
        if (s[i] != '\\' || s[i + 1] != 'u') {
            continue;
        }
        memcpy(hex, s + i + 2, 4);
        hex[4] = 0;
        if (strspn(hex, "0123456789abcdefABCDEF") != 4) {
            continue;
        }
        cp = (unsigned)strtoul(hex, NULL, 16);
        if ((cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0xFDD0 && cp <= 0xFDEF)
            || cp >= 0xFFFE) {
            return true;
        }
    }
    return false;
}

static bool has_nul_escape(const char *s, size_t n)
{
    for (size_t i = 0; i + 5 < n; i++) {
        if (s[i] == '\\' && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4)) {
            return true;
        }
    }
    return false;
}

/* Equal, but for integers out of the 64-bit range (json-c saturates them,
 * QEMU reads them as doubles; -9223372036854775809 rounds to -2^63). */
static bool diff_equal(json_object *ref, json_object *qemu)
{
    json_type tr = json_object_get_type(ref), tq = json_object_get_type(qemu);

    if (tr == json_type_int && tq == json_type_double) {
        double d = json_object_get_double(qemu);
        int64_t i = json_object_get_int64(ref);
        uint64_t u = json_object_get_uint64(ref);
        return (d >= 18446744073709551616.0 && u == UINT64_MAX)
            || (d <= -9223372036854775808.0 && i == INT64_MIN);
    }
    if (tr != tq) {
        return false;
    }
    switch (tr) {
    case json_type_array: {
        size_t n = json_object_array_length(ref);
        if (n != json_object_array_length(qemu)) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            if (!diff_equal(json_object_array_get_idx(ref, i),
                            json_object_array_get_idx(qemu, i))) {
                return false;
            }
        }
        return true;
    }
    case json_type_object: {
        if (json_object_object_length(ref) != json_object_object_length(qemu)) {
            return false;
        }
        json_object_object_foreach(ref, key, vr) {
            json_object *vq;
            if (!json_object_object_get_ex(qemu, key, &vq)
                || !diff_equal(vr, vq)) {
                return false;
            }
        }
        return true;
    }
    default:
        return fuzz_json_equal(ref, qemu, false);
    }
}

struct texts {
    int n;
    json_object *value;
    char *error;
};

static bool on_text(void *opaque, const struct js_text *t)
{
    struct texts *r = opaque;

    if (r->n++ == 0) {
        r->value = t->error ? NULL : json_object_get(t->value);
        r->error = t->error ? strdup(t->error) : NULL;
    }
    return true;
}

static bool error_is(const struct texts *r, const char *what)
{
    return r->error && strstr(r->error, what);
}

/* RFC 3629's UTF-8: no overlong forms, no surrogates, at most U+10FFFF. */
static bool strict_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < n;) {
        unsigned c = p[i], len, cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
        } else {
            return false;
        }
        if (i + len > n) {
            return false;
        }
        cp = c & (0x7Fu >> len);
        for (unsigned k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)
            || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += len;
    }
    return true;
}

/* RFC 8259's number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool rfc_number(const char *s, size_t n)
{
    size_t i = 0, d;

    i += i < n && s[i] == '-';
    if (i < n && s[i] == '0') {
        i++;
    } else {
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        }
        if (i == d) {
            return false;
        }
    }
    if (i < n && s[i] == '.') {
        for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        }
        if (i == d) {
            return false;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        i += i < n && (s[i] == '+' || s[i] == '-');
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        }
        if (i == d) {
            return false;
        }
    }
    return i == n;
}

/* Does every number and word outside strings follow JSON's grammar,
 * and read the same in QEMU's lexer? */
static bool plain_json(const char *s, size_t n)
{
    bool in_string = false;

    for (size_t i = 0; i < n; i++) {
        if (in_string) {
            if ((unsigned char)s[i] < 0x20) {
                return false;  /* json-c's leniency, not JSON */
            }
            if (s[i] == '\\') {
                i++;
            } else if (s[i] == '"') {
                in_string = false;
            }
        } else if (s[i] == '"') {
            in_string = true;
        } else if (s[i] == '\'') {
            return false;  /* json-c takes 'strings' even when strict */
        } else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
            size_t k = i;
            while (k < n && strchr("0123456789.eE+-", s[k]) && s[k]) {
                k++;
            }
            if (!rfc_number(s + i, k - i)) {
                return false;
            }
            if (s[i + (s[i] == '-')] == '0'
                && (s[i + (s[i] == '-') + 1] | 0x20) == 'e') {
                return false;  /* QEMU: no exponent after a lone 0 */
            }
            i = k - 1;
        } else if ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z') {
            size_t k = i;
            while (k < n && (s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'z') {
                k++;
            }
            if (!(k - i == 4 && !memcmp(s + i, "true", 4))
                && !(k - i == 5 && !memcmp(s + i, "false", 5))
                && !(k - i == 4 && !memcmp(s + i, "null", 4))) {
                return false;  /* NaN, Infinity: json-c's, not JSON */
            }
            i = k - 1;
        }
    }
    return true;
}

/* How many inputs were compared, and skipped for each reason:
 * FUZZ_STATS=1 prints them at exit (is the reference still doing work?) */
static unsigned long compared, not_one_text, json_c_lenient, nul_escape,
    qemu_rule;

static void print_stats(void)
{
    fprintf(stderr, "compared %lu; skipped: not one standard text %lu, "
            "json-c's leniency %lu, \\u0000 %lu, QEMU's rules %lu\n",
            compared, not_one_text, json_c_lenient, nul_escape, qemu_rule);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (getenv("FUZZ_STATS")) {
        atexit(print_stats);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a space after the text, so a trailing number or keyword ends in
     * both readers; both read the very same bytes */
    char *buf = malloc(size + 1);
    json_tokener *tok;
    json_object *ref;
    struct texts got = { 0 };
    struct jsonstream *js;
    size_t end;

    memcpy(buf, data, size);
    buf[size] = ' ';
    tok = json_tokener_new_ex(JSONSTREAM_MAX_NESTING);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT
                           | JSON_TOKENER_VALIDATE_UTF8);
    ref = json_tokener_parse_ex(tok, buf, (int)size + 1);
    end = json_tokener_get_parse_end(tok);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        not_one_text++;
        goto out;  /* not one standard JSON text: nothing to compare */
    }
    for (size_t i = end; i < size + 1; i++) {
        if (!strchr(" \t\r\n", buf[i]) || !buf[i]) {
            not_one_text++;
            goto out;  /* a second text, or junk after the first */
        }
    }
    if (!strict_utf8(buf, size) || !plain_json(buf, size)) {
        json_c_lenient++;
        goto out;  /* json-c's lenient numbers, documented above */
    }
    if (has_nul_escape(buf, size)) {
        nul_escape++;
        goto out;  /* U+0000: modified UTF-8 in QEMU, C-string keys in json-c */
    }

    js = jsonstream_new(true, 0, on_text, &got);
    jsonstream_feed(js, buf, size + 1);
    jsonstream_free(js);

    if (error_is(&got, "duplicate key")
        || error_is(&got, "nesting depth limit exceeded")) {
        qemu_rule++;
        goto out;  /* QEMU's rules, documented above */
    }
    if ((error_is(&got, "invalid UTF-8 sequence in string")
         || error_is(&got, "is not a valid Unicode character"))
        && (has_nonchar_utf8(buf, size) || has_refused_escape(buf, size))) {
        /* looked for in the input, not in json-c's value: with a duplicate
         * key json-c drops the value QEMU refused */
        qemu_rule++;
        goto out;  /* QEMU refuses noncharacters and lone surrogates */
    }
    if (got.n != 1 || got.error) {
        fprintf(stderr, "json-c read one text; jsonstream emitted %d, the "
                "first %s%s\n", got.n, got.error ? "an error: " : "a value",
                got.error ? got.error : "");
        FUZZ_ASSERT(got.n == 1 && !got.error);
    }
    compared++;
    if (!diff_equal(ref, got.value)) {
        fprintf(stderr, "json-c: %s\njsonstream: %s\n",
                json_object_to_json_string(ref),
                json_object_to_json_string(got.value));
        FUZZ_ASSERT(!"the values differ");
    }
out:
    json_object_put(ref);
    json_object_put(got.value);
    free(got.error);
    json_tokener_free(tok);
    free(buf);
    return 0;
}
