/*
 * json-parser: what one text's tokens mean, by QEMU 7.2's
 * qobject/json-parser.c.
 *
 * Owns: the value (json-c) built token by token as tokens arrive, reporting
 * the first error QEMU's recursive descent would report, in its words;
 * QEMU's literals (strings with single quotes, \u escapes and modified
 * UTF-8; integers as int64, else uint64, else double); and, with or without
 * values, where the members of a top-level object sit in the raw text.
 * Knows nothing of bytes between tokens, of limits or of where texts end:
 * the streamer feeds it one text's tokens and says when it is complete.
 */
#ifndef QMPROXY_JSON_PARSER_H
#define QMPROXY_JSON_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#include "json-token.h"
#include "jsonstream.h"  /* struct js_member, JSONSTREAM_MAX_MEMBERS */

/* What the innermost open container expects next. */
enum json_parse_state {
    PS_TOP,        /* the text's value */
    PS_DONE,       /* the text's value is complete */
    PS_ARR_FIRST,  /* after '[': a value or ']' */
    PS_ARR_VALUE,  /* after ',': a value */
    PS_ARR_SEP,    /* after a value: ',' or ']' */
    PS_OBJ_FIRST,  /* after '{': a key or '}' */
    PS_OBJ_KEY,    /* after ',': a key */
    PS_OBJ_COLON,  /* after a key: ':' */
    PS_OBJ_VALUE,  /* after ':': a value */
    PS_OBJ_SEP,    /* after a value: ',' or '}' */
};

/* Where the top-level member scanner is. */
enum json_span_state { SP_KEY, SP_COLON, SP_VALUE, SP_IN_VALUE, SP_AFTER };

struct json_frame;

struct json_parser {
    bool build_values;

    /* the value (build_values only) */
    enum json_parse_state top_state;
    json_object *result;        /* owned; NULL is JSON null when complete */
    struct json_frame *stack;   /* owned */
    int depth, stack_cap;
    char *error;                /* owned: the first error, QEMU's text */

    /* the top-level members, offsets into the caller's buffer */
    bool is_object;
    enum json_span_state span;
    int nmembers;
    bool members_overflow;      /* more than JSONSTREAM_MAX_MEMBERS */
    struct js_member members[JSONSTREAM_MAX_MEMBERS];
};

void json_parser_init(struct json_parser *p, bool build_values);
/* Forget the text: its value, error and members. */
void json_parser_reset(struct json_parser *p);
void json_parser_destroy(struct json_parser *p);

/*
 * One token of the text, buf[start, end).  first: the text's first token;
 * prev_depth, depth: the nesting (braces plus brackets) before and after
 * it, as the streamer counts it.
 */
void json_parser_token(struct json_parser *p, enum json_token_type type,
                       const char *buf, size_t start, size_t end, bool first,
                       int prev_depth, int depth);

/* The text ended: an incomplete value is QEMU's "premature EOI". */
void json_parser_end(struct json_parser *p);

/* The buffer lost its first `by` bytes. */
void json_parser_shift(struct json_parser *p, size_t by);

/* The members (nmembers of them) as offsets from base, into out. */
void json_parser_members(const struct json_parser *p, size_t base,
                         struct js_member *out);

/*
 * Decode a string token (quotes included) as QEMU's parse_string() does.
 * Returns NULL and sets *error (QEMU's text, owned by the caller) on bad
 * input.
 */
json_object *json_parser_decode_string(const char *tok, size_t len,
                                       char **error);

#endif
