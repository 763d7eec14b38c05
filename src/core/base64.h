/*
 * base64.h - RFC 4648 base64, both alphabets, decoded strictly.
 *
 * B64_STD is the standard alphabet with '=' padding to a multiple of 4;
 * B64_URL is the URL-safe alphabet without padding (JWT, API keys). The
 * decoder accepts one spelling per byte string: only the variant's
 * alphabet, padding exactly as the variant requires, and the unused low
 * bits of the last character zero (unless B64_LAX_BITS, for peers such as
 * WebSocket clients whose keys other servers accept with stray bits).
 */
#ifndef SB_BASE64_H
#define SB_BASE64_H

#include <stddef.h>

#include "core/buf.h"

#define B64_STD 0u
#define B64_URL 1u
#define B64_LAX_BITS 2u

/* Characters base64_encode writes for n bytes (without the NUL). */
size_t base64_encoded_len(size_t n, unsigned flags);
/* Writes the encoding of in[0..n) and a NUL; out holds encoded_len + 1. */
size_t base64_encode(const void *in, size_t n, char *out, unsigned flags);
int base64_append(buf_t *b, const void *in, size_t n, unsigned flags);
/* Decodes in[0..n) into out (at most cap bytes). Returns the decoded
 * length, or -1 when the text is not valid for the variant or would
 * decode to more than cap bytes. */
long base64_decode(const char *in, size_t n, unsigned char *out, size_t cap,
                   unsigned flags);

#endif
