/*
 * utf8.c - a DFA UTF-8 validator.
 *
 * The state machine follows the well-known table-driven design (one byte
 * class lookup, one transition lookup per byte); states are multiples of 12
 * so a transition is a single add. Validation only: no code point is built.
 */
#include "core/utf8.h"

/* Byte classes: 0 ASCII, 1 80-8F, 9 90-9F, 7 A0-BF, 8 C0-C1 and F5-FF,
 * 2 C2-DF, 10 E0, 3 E1-EC and EE-EF, 4 ED, 11 F0, 6 F1-F3, 5 F4. */
static const uint8_t utf8_class[256] = {
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, 9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,
    7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7, 7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,
    8,8,2,2,2,2,2,2,2,2,2,2,2,2,2,2, 2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    10,3,3,3,3,3,3,3,3,3,3,3,3,4,3,3, 11,6,6,6,5,8,8,8,8,8,8,8,8,8,8,8,
};

/* Transitions: row = state / 12, column = class. 0 accept, 12 reject,
 * 24 one continuation left, 36 two left, 48 E0 (A0-BF next), 60 ED (80-9F
 * next), 72 F0 (90-BF next), 84 three left, 96 F4 (80-8F next). */
static const uint8_t utf8_trans[] = {
    0,12,24,36,60,96,84,12,12,12,48,72,
    12,12,12,12,12,12,12,12,12,12,12,12,
    12,0,12,12,12,12,12,0,12,0,12,12,
    12,24,12,12,12,12,12,24,12,24,12,12,
    12,12,12,12,12,12,12,24,12,12,12,12,
    12,24,12,12,12,12,12,12,12,24,12,12,
    12,12,12,12,12,12,12,36,12,36,12,12,
    12,36,12,12,12,12,12,36,12,36,12,12,
    12,36,12,12,12,12,12,12,12,12,12,12,
};

uint32_t utf8_feed(uint32_t state, const void *p, size_t len)
{
    const uint8_t *s = p;

    for (size_t i = 0; i < len && state != UTF8_REJECT; i++)
        state = utf8_trans[state + utf8_class[s[i]]];
    return state;
}

bool utf8_valid(const void *p, size_t len)
{
    return utf8_feed(UTF8_ACCEPT, p, len) == UTF8_ACCEPT;
}

bool utf8_printable(const void *p, size_t len)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return utf8_valid(p, len);
}
