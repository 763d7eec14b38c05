/*
 * base64.c - encoding and strict decoding. See base64.h.
 */
#include "core/base64.h"

#include <stdint.h>

static const char std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int value(unsigned char c, unsigned flags)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == ((flags & B64_URL) ? '-' : '+'))
        return 62;
    if (c == ((flags & B64_URL) ? '_' : '/'))
        return 63;
    return -1;
}

size_t base64_encoded_len(size_t n, unsigned flags)
{
    if (flags & B64_URL)
        return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    return (n + 2) / 3 * 4;
}

size_t base64_encode(const void *in, size_t n, char *out, unsigned flags)
{
    const char *tbl = (flags & B64_URL) ? url_alphabet : std_alphabet;
    const unsigned char *s = in;
    size_t i = 0, o = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (n - i) {
        uint32_t v = (uint32_t)s[i] << 16 | (n - i == 2 ? (uint32_t)s[i + 1] << 8 : 0);
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        if (n - i == 2)
            out[o++] = tbl[(v >> 6) & 63];
        else if (!(flags & B64_URL))
            out[o++] = '=';
        if (!(flags & B64_URL))
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

int base64_append(buf_t *b, const void *in, size_t n, unsigned flags)
{
    size_t len = base64_encoded_len(n, flags);
    int rc = buf_reserve(b, len);

    if (rc)
        return rc;
    base64_encode(in, n, b->data + b->len, flags);
    b->len += len;
    return 0;
}

long base64_decode(const char *in, size_t n, unsigned char *out, size_t cap,
                   unsigned flags)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;

    if (!(flags & B64_URL)) {
        if (n % 4)
            return -1;
        for (int pad = 0; pad < 2 && n && in[n - 1] == '='; pad++)
            n--;
    }
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = value((unsigned char)in[i], flags);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0 && !(flags & B64_LAX_BITS))
        return -1;
    return (long)o;
}
