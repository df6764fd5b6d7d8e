/*
 * json-token: what QEMU's JSON lexer hands its streamer (the token types of
 * qobject/json-parser-int.h), plus the two things the lexer reports that are
 * not tokens.  Private to jsonstream and its modules.
 *
 * A token is never copied: it is a span [start, end) of the caller's buffer.
 */
#ifndef QMPROXY_JSON_TOKEN_H
#define QMPROXY_JSON_TOKEN_H

enum json_token_type {
    JSON_ERROR = 0,  /* a byte QEMU's lexer refuses (must be zero: the
                        lexer table's default entry) */
    JSON_MIN = 100,  /* below: the lexer's own states */
    JSON_LCURLY = JSON_MIN,
    JSON_RCURLY,
    JSON_LSQUARE,
    JSON_RSQUARE,
    JSON_COLON,
    JSON_COMMA,
    JSON_INTEGER,
    JSON_FLOAT,
    JSON_KEYWORD,
    JSON_STRING,
    JSON_MAX = JSON_STRING,

    /* Reported by the lexer, not tokens: */
    JSON_TOO_LONG,   /* a token grew past the size limit; lexing restarts
                        after what was read of it */
    JSON_WS_LIMIT,   /* whitespace ran past the caller's limit */
    JSON_NONE,       /* the input ran out */
};

#endif
