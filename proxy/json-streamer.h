/*
 * json-streamer: tokens to texts, by QEMU 7.2's qobject/json-streamer.c
 * (its JSONMessageParser).
 *
 * Owns: where a text starts and ends (when braces and brackets balance, or
 * go negative), QEMU's limits on a text (64 MiB of tokens, 2 Mi tokens,
 * nesting 1024, or a smaller size limit) with QEMU's error texts, the
 * errors for what the lexer refused, and feeding each accepted token to the
 * parser, which it owns.  Knows nothing of bytes between tokens except the
 * bound on whitespace inside a text (the raw bytes are kept, so they must
 * be bounded like tokens are); never calls anyone back: each token gets a
 * verdict and the caller emits.
 */
#ifndef QMPROXY_JSON_STREAMER_H
#define QMPROXY_JSON_STREAMER_H

#include <stdbool.h>
#include <stddef.h>

#include "json-parser.h"
#include "json-token.h"

enum json_streamer_verdict {
    JSON_STREAMER_MORE,   /* the text goes on */
    JSON_STREAMER_TEXT,   /* a text ended: [text_start, last_token_end),
                             its meaning in parser; emit it, then
                             json_streamer_reset() */
    JSON_STREAMER_ERROR,  /* error: emit [error_from, error_to) with error;
                             the streamer has already started afresh */
};

struct json_streamer {
    size_t max_size;                  /* QEMU's MAX_TOKEN_SIZE, or less */
    int brace_count, bracket_count;
    size_t token_count, token_size;   /* of the open text */
    size_t text_start, last_token_end;
    struct json_parser parser;

    /* the last JSON_STREAMER_ERROR, valid until the next token */
    const char *error;
    size_t error_from, error_to;
    char *stray;                      /* owned: a "stray" error's text */
};

void json_streamer_init(struct json_streamer *st, bool build_values,
                        size_t max_size);
void json_streamer_destroy(struct json_streamer *st);

/*
 * QEMU's json_message_process_token(): what the lexer found in
 * buf[start, end) (a token, JSON_ERROR, JSON_TOO_LONG or JSON_WS_LIMIT).
 */
enum json_streamer_verdict json_streamer_token(struct json_streamer *st,
                                               const char *buf,
                                               enum json_token_type type,
                                               size_t start, size_t end);

/* Whether a text is open (its bytes from text_start are still needed). */
bool json_streamer_in_text(const struct json_streamer *st);

/* How far whitespace may run in the open text (SIZE_MAX: no text). */
size_t json_streamer_ws_limit(const struct json_streamer *st);

/* Forget the text (after emitting it). */
void json_streamer_reset(struct json_streamer *st);

/* The buffer lost its first `by` bytes. */
void json_streamer_shift(struct json_streamer *st, size_t by);

#endif
