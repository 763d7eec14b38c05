/*
 * fuzz_seal.c - sealed secrets (auth/seal.h) on arbitrary text.
 *
 * The sealing key is fixed. Every seal this process made is remembered in
 * a small ring (static, so still reachable at exit: no leak reported).
 * Nonces are random, so a fuzzer cannot guess a genuine seal; the
 * properties below are what can honestly be checked:
 *
 * 1. The input as sealed text (with associated data "user_1"): seal_open
 *    succeeds only for a text this process sealed with that data (found
 *    in the ring), giving back its plaintext; otherwise -1, *out NULL and
 *    *outlen 0.
 * 2. The input split at a point its first byte picks, as plaintext x and
 *    associated data ad: seal_seal fails exactly for an empty x or one
 *    over SEAL_PLAIN_MAX; otherwise the text is "v1." + base64url and
 *    opens with ad to x; it does not open with other associated data, nor
 *    under another key, nor with any one byte changed (a position and a
 *    bit the input picks), nor cut short by one byte.
 * 3. The input as key text: seal_key_parse succeeds exactly when an
 *    oracle here says it is 64 hex digits, or canonical base64 (standard
 *    alphabet with its one '=', or URL alphabet unpadded) of 32 bytes, and
 *    then gives the oracle's bytes.
 */
#undef NDEBUG                    /* the checks below are the point */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/seal.h"

#define RING 16
#define AD "user_1"

static const unsigned char fz_key[SEAL_KEY_LEN] = "fuzz-seal-key-0123456789abcdef!";
static const unsigned char fz_other[SEAL_KEY_LEN] = "another-key-0123456789abcdefgh!";

static struct {
    char *sealed[RING];          /* text sealed with ad AD */
    char *plain[RING];
    size_t plen[RING];
    size_t next;
} fz_ring;

/* Remembers a seal made with AD (copies both). */
static void fz_remember(const char *sealed, const void *plain, size_t plen)
{
    size_t i = fz_ring.next++ % RING;

    free(fz_ring.sealed[i]);
    free(fz_ring.plain[i]);
    fz_ring.sealed[i] = strdup(sealed);
    fz_ring.plain[i] = malloc(plen);
    assert(fz_ring.sealed[i] && fz_ring.plain[i]);
    memcpy(fz_ring.plain[i], plain, plen);
    fz_ring.plen[i] = plen;
}

static void fz_open_fails(const unsigned char *key, const char *s, size_t len,
                          const void *ad, size_t adlen)
{
    char *out = (char *)1;
    size_t outlen = 1;

    assert(seal_open(key, s, len, ad, adlen, &out, &outlen) == -1);
    assert(out == NULL && outlen == 0);
}

/* 1: arbitrary text opens only when it is a seal from the ring. */
static void fz_as_sealed(const uint8_t *data, size_t size)
{
    char *out = NULL;
    size_t outlen = 0, i;

    if (seal_open(fz_key, (const char *)data, size, AD, strlen(AD), &out,
                  &outlen) != 0) {
        assert(out == NULL && outlen == 0);
        return;
    }
    for (i = 0; i < RING; i++)
        if (fz_ring.sealed[i] && strlen(fz_ring.sealed[i]) == size &&
            memcmp(fz_ring.sealed[i], data, size) == 0)
            break;
    assert(i < RING);
    assert(outlen == fz_ring.plen[i] && out[outlen] == '\0' &&
           memcmp(out, fz_ring.plain[i], outlen) == 0);
    seal_free_plain(out, outlen);
}

static bool fz_b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* 2: seal, open, and tampering. */
static void fz_round_trip(const uint8_t *data, size_t size)
{
    size_t cut = size ? data[0] % (size + 1) : 0, len, pos;
    const uint8_t *x = data, *ad = data + cut;
    size_t xlen = cut, adlen = size - cut;
    char *s = NULL, *out = NULL;
    size_t outlen = 0;
    int rc = seal_seal(fz_key, x, xlen, ad, adlen, &s);

    if (xlen == 0 || xlen > SEAL_PLAIN_MAX) {
        assert(rc == -1 && s == NULL);
        return;
    }
    assert(rc == 0 && s);
    len = strlen(s);
    assert(len > 3 && memcmp(s, SEAL_PREFIX, 3) == 0);
    for (size_t i = 3; i < len; i++)
        assert(fz_b64url_char(s[i]));
    assert(seal_open(fz_key, s, len, ad, adlen, &out, &outlen) == 0);
    assert(outlen == xlen && out[outlen] == '\0' && memcmp(out, x, xlen) == 0);
    seal_free_plain(out, outlen);
    if (adlen == strlen(AD) && memcmp(ad, AD, adlen) == 0)
        fz_remember(s, x, xlen);

    fz_open_fails(fz_key, s, len, AD "x", strlen(AD) + 1);
    if (adlen > 0)
        fz_open_fails(fz_key, s, len, ad, adlen - 1);
    fz_open_fails(fz_other, s, len, ad, adlen);
    fz_open_fails(fz_key, s, len - 1, ad, adlen);
    pos = size > 1 ? ((size_t)data[1] << 8 | data[size - 1]) % len : 0;
    s[pos] ^= (char)(1u << (size > 2 ? data[2] % 8 : 0));
    fz_open_fails(fz_key, s, len, ad, adlen);
    free(s);
}

/* The oracle's value of c in the alphabet (url or standard), or -1. */
static int fz_b64_value(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

static int fz_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 43 characters of one alphabet, the last with its 2 spare bits zero. */
static bool fz_oracle_b64(const char *t, bool url, unsigned char key[32])
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;

    for (size_t i = 0; i < 43; i++) {
        int v = fz_b64_value(t[i], url);

        if (v < 0)
            return false;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            key[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return o == 32 && acc == 0;
}

static bool fz_oracle(const char *t, size_t len, unsigned char key[32])
{
    size_t i;

    if (len == 64) {
        for (i = 0; i < 32; i++) {
            int hi = fz_hex(t[2 * i]), lo = fz_hex(t[2 * i + 1]);

            if (hi < 0 || lo < 0)
                return false;
            key[i] = (unsigned char)(hi << 4 | lo);
        }
        return true;
    }
    if (len == 44)
        return t[43] == '=' && fz_oracle_b64(t, false, key);
    return len == 43 && fz_oracle_b64(t, true, key);
}

/* 3: key text against the oracle. */
static void fz_key_text(const uint8_t *data, size_t size)
{
    unsigned char got[SEAL_KEY_LEN], want[SEAL_KEY_LEN];
    bool ok = fz_oracle((const char *)data, size, want);

    memset(got, 0xA5, sizeof got);
    assert((seal_key_parse((const char *)data, size, got) == 0) == ok);
    if (ok)
        assert(memcmp(got, want, sizeof got) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 3 * SEAL_PLAIN_MAX)
        return 0;
    fz_as_sealed(data, size);
    fz_round_trip(data, size);
    fz_key_text(data, size);
    return 0;
}
