/*
 * json-lexer: bytes to tokens, by QEMU 7.2's qobject/json-lexer.c.
 *
 * Owns: QEMU's lexer states and its transition table (single-quoted
 * strings, any byte 0x20..0xFD inside a string, so modified UTF-8 passes
 * through to the parser unjudged), the recovery after a refused byte (skip
 * to the next structural or control character; 0xFE and 0xFF each give an
 * error), and QEMU's rule that a single token may not grow past the size
 * limit.  Knows nothing of texts, nesting or values.
 *
 * The lexer never copies: it reads the caller's buffer, which may grow
 * between calls, and reports each token as the span
 * [tok_start, *scan) of that buffer.
 */
#ifndef QMPROXY_JSON_LEXER_H
#define QMPROXY_JSON_LEXER_H

#include <stdbool.h>
#include <stddef.h>

#include "json-token.h"

struct json_lexer {
    int state;          /* QEMU's lexer state (private to json-lexer.c) */
    size_t tok_start;   /* where the token being lexed starts */
    size_t max_size;    /* a token longer than this is given up */
};

void json_lexer_init(struct json_lexer *lx, size_t max_size);

/*
 * Lex buf[*scan, len) until something is found: a token (its type; it is
 * [lx->tok_start, *scan)), a refused byte (JSON_ERROR, the bytes
 * [lx->tok_start, *scan) as QEMU prints them; the lexer is now recovering),
 * a token past the size limit (JSON_TOO_LONG, [lx->tok_start, *scan) read
 * so far), whitespace consumed past offset ws_limit (JSON_WS_LIMIT; pass
 * SIZE_MAX for no limit), or the end of the input (JSON_NONE).  *scan is
 * advanced past what was consumed; a token ended by the byte after it
 * leaves that byte to the next call, as QEMU's lookahead does.
 */
enum json_token_type json_lexer_next(struct json_lexer *lx, const char *buf,
                                     size_t len, size_t *scan,
                                     size_t ws_limit);

/* Whether a token has started and not ended (its bytes are still needed). */
bool json_lexer_in_token(const struct json_lexer *lx);

/* The buffer lost its first `by` bytes. */
void json_lexer_shift(struct json_lexer *lx, size_t by);

#endif
