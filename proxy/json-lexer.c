/*
 * json-lexer: QEMU 7.2's JSON lexer (qobject/json-lexer.c) over a byte
 * buffer.  The states, their names and the table are QEMU's, so the two can
 * be compared line by line; what is left out is QEMU's interpolation
 * ('%d' and friends), which a monitor never enables.
 */
#include "json-lexer.h"

#include <stdint.h>

enum json_lexer_state {
    IN_RECOVERY = 1,
    IN_DQ_STRING_ESCAPE,
    IN_DQ_STRING,
    IN_SQ_STRING_ESCAPE,
    IN_SQ_STRING,
    IN_ZERO,
    IN_EXP_DIGITS,
    IN_EXP_SIGN,
    IN_EXP_E,
    IN_MANTISSA,
    IN_MANTISSA_DIGITS,
    IN_DIGITS,
    IN_SIGN,
    IN_KEYWORD,
    IN_START,
};

_Static_assert((int)IN_START < (int)JSON_MIN, "lexer states and tokens overlap");
_Static_assert(JSON_MAX < 0x80, "tokens collide with LOOKAHEAD");

/*
 * An entry is the next state, or a token type (the token ends), or
 * JSON_ERROR (0, every entry not written).  With LOOKAHEAD the byte is not
 * part of what ends: it is looked at again from the next state.
 */
#define LOOKAHEAD 0x80
#define TERMINAL(state) [0 ... 0xFF] = ((state) | LOOKAHEAD)

/*
 * Written as QEMU writes it: a row's range entries come first and single
 * entries override them (a GNU C range designator, as in QEMU).
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
static const uint8_t json_lexer[][256] = {
    /* Relies on default initialization to JSON_ERROR! */

    /* error recovery */
    [IN_RECOVERY] = {
        /*
         * Skip characters until a structural character, an ASCII control
         * character other than '\t', or impossible UTF-8 bytes '\xFE',
         * '\xFF'.  Structural characters and line endings are promising
         * resynchronization points.
         */
        [0 ... 0x1F] = IN_START | LOOKAHEAD,
        [0x20 ... 0xFD] = IN_RECOVERY,
        [0xFE ... 0xFF] = IN_START | LOOKAHEAD,
        ['\t'] = IN_RECOVERY,
        ['['] = IN_START | LOOKAHEAD,
        [']'] = IN_START | LOOKAHEAD,
        ['{'] = IN_START | LOOKAHEAD,
        ['}'] = IN_START | LOOKAHEAD,
        [':'] = IN_START | LOOKAHEAD,
        [','] = IN_START | LOOKAHEAD,
    },

    /* double quote string */
    [IN_DQ_STRING_ESCAPE] = {
        [0x20 ... 0xFD] = IN_DQ_STRING,
    },
    [IN_DQ_STRING] = {
        [0x20 ... 0xFD] = IN_DQ_STRING,
        ['\\'] = IN_DQ_STRING_ESCAPE,
        ['"'] = JSON_STRING,
    },

    /* single quote string */
    [IN_SQ_STRING_ESCAPE] = {
        [0x20 ... 0xFD] = IN_SQ_STRING,
    },
    [IN_SQ_STRING] = {
        [0x20 ... 0xFD] = IN_SQ_STRING,
        ['\\'] = IN_SQ_STRING_ESCAPE,
        ['\''] = JSON_STRING,
    },

    /* Zero */
    [IN_ZERO] = {
        TERMINAL(JSON_INTEGER),
        ['0' ... '9'] = JSON_ERROR,
        ['.'] = IN_MANTISSA,
    },

    /* Float */
    [IN_EXP_DIGITS] = {
        TERMINAL(JSON_FLOAT),
        ['0' ... '9'] = IN_EXP_DIGITS,
    },

    [IN_EXP_SIGN] = {
        ['0' ... '9'] = IN_EXP_DIGITS,
    },

    [IN_EXP_E] = {
        ['-'] = IN_EXP_SIGN,
        ['+'] = IN_EXP_SIGN,
        ['0' ... '9'] = IN_EXP_DIGITS,
    },

    [IN_MANTISSA_DIGITS] = {
        TERMINAL(JSON_FLOAT),
        ['0' ... '9'] = IN_MANTISSA_DIGITS,
        ['e'] = IN_EXP_E,
        ['E'] = IN_EXP_E,
    },

    [IN_MANTISSA] = {
        ['0' ... '9'] = IN_MANTISSA_DIGITS,
    },

    /* integer */
    [IN_DIGITS] = {
        TERMINAL(JSON_INTEGER),
        ['0' ... '9'] = IN_DIGITS,
        ['e'] = IN_EXP_E,
        ['E'] = IN_EXP_E,
        ['.'] = IN_MANTISSA,
    },

    [IN_SIGN] = {
        ['0'] = IN_ZERO,
        ['1' ... '9'] = IN_DIGITS,
    },

    /* keywords */
    [IN_KEYWORD] = {
        TERMINAL(JSON_KEYWORD),
        ['a' ... 'z'] = IN_KEYWORD,
    },

    /* JSON tokens with QEMU's string extensions */
    [IN_START] = {
        ['"'] = IN_DQ_STRING,
        ['\''] = IN_SQ_STRING,
        ['0'] = IN_ZERO,
        ['1' ... '9'] = IN_DIGITS,
        ['-'] = IN_SIGN,
        ['{'] = JSON_LCURLY,
        ['}'] = JSON_RCURLY,
        ['['] = JSON_LSQUARE,
        [']'] = JSON_RSQUARE,
        [','] = JSON_COMMA,
        [':'] = JSON_COLON,
        ['a' ... 'z'] = IN_KEYWORD,
        [' '] = IN_START,
        ['\t'] = IN_START,
        ['\r'] = IN_START,
        ['\n'] = IN_START,
    },
};
#pragma GCC diagnostic pop

static bool in_token(int state)
{
    return state != IN_START && state != IN_RECOVERY;
}

void json_lexer_init(struct json_lexer *lx, size_t max_size)
{
    *lx = (struct json_lexer){ .state = IN_START, .max_size = max_size };
}

bool json_lexer_in_token(const struct json_lexer *lx)
{
    return in_token(lx->state);
}

void json_lexer_shift(struct json_lexer *lx, size_t by)
{
    lx->tok_start = lx->tok_start >= by ? lx->tok_start - by : 0;
}

/*
 * QEMU's json_lexer_feed_char(), a byte at a time, except that a string's
 * plain content (the row's entries that lead back to the same state) is
 * taken in one go: that is nearly all of QMP's bytes.  The size limit is
 * checked after each step, as before the split.
 */
enum json_token_type json_lexer_next(struct json_lexer *lx, const char *buf,
                                     size_t len, size_t *scan,
                                     size_t ws_limit)
{
    const uint8_t *in = (const uint8_t *)buf;
    size_t pos = *scan;
    int state = lx->state;
    enum json_token_type found = JSON_NONE;

    while (pos < len) {
        if (state == IN_START) {
            lx->tok_start = pos;
        } else if (state == IN_DQ_STRING || state == IN_SQ_STRING) {
            /* no further than the size limit: QEMU cuts the token at the
             * byte that passes it, wherever the reads happen to end */
            const uint8_t *row = json_lexer[state];
            size_t end = lx->tok_start + lx->max_size < len
                ? lx->tok_start + lx->max_size : len;
            while (pos < end && row[in[pos]] == state) {
                pos++;
            }
        }
        if (pos < len) {
            int next = json_lexer[state][in[pos]];

            if (!(next & LOOKAHEAD)) {
                pos++;
            }
            next &= ~LOOKAHEAD;
            if (next >= JSON_MIN) {
                state = IN_START;
                found = (enum json_token_type)next;
                break;
            }
            if (next == JSON_ERROR) {
                state = IN_RECOVERY;
                found = JSON_ERROR;
                break;
            }
            state = next;
        }
        /* Do not let a single token grow to an arbitrarily large size. */
        if (in_token(state) && pos - lx->tok_start > lx->max_size) {
            state = IN_START;
            found = JSON_TOO_LONG;
            break;
        }
        if (state == IN_START && pos > ws_limit) {
            found = JSON_WS_LIMIT;
            break;
        }
    }
    lx->state = state;
    *scan = pos;
    return found;
}
