/*
 * hex.h - hexadecimal digits and strings, either case.
 *
 * One decoder for every place that reads hex: HTTP chunk sizes and
 * percent-escapes, webhook signatures, stored key digests, sealing keys.
 * Callers that want one case only check it themselves.
 */
#ifndef SB_HEX_H
#define SB_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The value of hex digit c (0-9, a-f, A-F), or -1. */
static inline int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes exactly n bytes from the 2 * n hex digits s[0..len) into out.
 * False (out partly written) for any other length or a non-digit. */
bool hex_decode(const char *s, size_t len, uint8_t *out, size_t n);

#endif
