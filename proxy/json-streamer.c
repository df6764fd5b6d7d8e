/*
 * json-streamer: QEMU 7.2's JSON streamer (qobject/json-streamer.c) over
 * token spans.  QEMU queues a text's tokens and parses them when the text
 * ends; here each accepted token goes to the incremental parser at once.
 */
#include "json-streamer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonstream.h"
#include "util.h"

void json_streamer_init(struct json_streamer *st, bool build_values,
                        size_t max_size)
{
    *st = (struct json_streamer){ .max_size = max_size };
    json_parser_init(&st->parser, build_values);
}

void json_streamer_destroy(struct json_streamer *st)
{
    json_parser_destroy(&st->parser);
    free(st->stray);
}

void json_streamer_reset(struct json_streamer *st)
{
    st->brace_count = 0;
    st->bracket_count = 0;
    st->token_count = 0;
    st->token_size = 0;
    json_parser_reset(&st->parser);
}

bool json_streamer_in_text(const struct json_streamer *st)
{
    return st->token_count != 0;
}

size_t json_streamer_ws_limit(const struct json_streamer *st)
{
    return st->token_count ? st->text_start + 2 * st->max_size : SIZE_MAX;
}

static size_t shifted(size_t offset, size_t by)
{
    return offset >= by ? offset - by : 0;
}

void json_streamer_shift(struct json_streamer *st, size_t by)
{
    st->text_start = shifted(st->text_start, by);
    st->last_token_end = shifted(st->last_token_end, by);
    json_parser_shift(&st->parser, by);
}

/* An error ends the open text, which it covers (QEMU's out_emit). */
static enum json_streamer_verdict fail(struct json_streamer *st,
                                       const char *desc, size_t from,
                                       size_t to)
{
    st->error = desc;
    st->error_from = st->token_count ? st->text_start : from;
    st->error_to = to;
    json_streamer_reset(st);
    return JSON_STREAMER_ERROR;
}

/* A byte QEMU's lexer refuses, as QEMU's streamer words it. */
static enum json_streamer_verdict stray(struct json_streamer *st,
                                        const char *buf, size_t start,
                                        size_t end)
{
    /* QEMU prints the token as a C string: it stops at a NUL byte. */
    size_t n = strnlen(buf + start, end - start);

    free(st->stray);
    st->stray = xasprintf("JSON parse error, stray '%.*s'", (int)n,
                          buf + start);
    return fail(st, st->stray, start, end);
}

enum json_streamer_verdict json_streamer_token(struct json_streamer *st,
                                               const char *buf,
                                               enum json_token_type type,
                                               size_t start, size_t end)
{
    size_t len = end - start;
    int prev_depth = st->brace_count + st->bracket_count;
    int depth;

    switch (type) {
    case JSON_LCURLY: st->brace_count++; break;
    case JSON_RCURLY: st->brace_count--; break;
    case JSON_LSQUARE: st->bracket_count++; break;
    case JSON_RSQUARE: st->bracket_count--; break;
    case JSON_ERROR:
        return stray(st, buf, start, end);
    case JSON_TOO_LONG:
    case JSON_WS_LIMIT:
        /*
         * QEMU's lexer gives up on a single token longer than the limit;
         * whitespace inside a text is bounded like tokens are.
         */
        return fail(st, "JSON token size limit exceeded", start, end);
    default:
        break;
    }

    /*
     * Security consideration, we limit total memory allocated per object
     * and the maximum recursion depth that a message can force.
     */
    if (st->token_size + len + 1 > st->max_size
        || (st->token_count && end - st->text_start > 2 * st->max_size)) {
        return fail(st, "JSON token size limit exceeded", start, end);
    }
    if (st->token_count + 1 > JSONSTREAM_MAX_TOKEN_COUNT) {
        return fail(st, "JSON token count limit exceeded", start, end);
    }
    if (st->bracket_count + st->brace_count > JSONSTREAM_MAX_NESTING) {
        return fail(st, "JSON nesting depth limit exceeded", start, end);
    }

    depth = st->brace_count + st->bracket_count;
    json_parser_token(&st->parser, type, buf, start, end,
                      st->token_count == 0, prev_depth, depth);
    if (st->token_count == 0) {
        st->text_start = start;
    }
    st->token_count++;
    st->token_size += len;
    st->last_token_end = end;

    if ((st->brace_count > 0 || st->bracket_count > 0)
        && st->brace_count >= 0 && st->bracket_count >= 0) {
        return JSON_STREAMER_MORE;
    }
    json_parser_end(&st->parser);
    return JSON_STREAMER_TEXT;
}
