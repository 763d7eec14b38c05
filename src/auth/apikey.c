/*
 * apikey.c - API key generation, format check, hashing, verification.
 * See apikey.h for the format and the contracts.
 *
 * Randomness comes only from RAND_bytes; the id's base62 characters are
 * drawn by rejection sampling (bytes >= 248 are dropped) so every character
 * is equally likely. The secret's characters are classified with
 * arithmetic instead of a table or branches, so parsing a key takes the
 * same path whatever its secret is; the secret itself is only ever hashed.
 * Temporary copies of secrets are wiped with OPENSSL_cleanse.
 */
#include "auth/apikey.h"

#include <assert.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static const char apikey__base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
static const char apikey__b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#define APIKEY__B62_LIMIT 248      /* 4 * 62: bytes below map evenly */

static bool apikey__is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
           (c >= 'a' && c <= 'z');
}

/* 1 when lo <= c <= hi, else 0, without a branch. */
static unsigned apikey__in(unsigned c, unsigned lo, unsigned hi)
{
    return (unsigned)(c - lo <= hi - lo);
}

/* The 6-bit value of base64url character c, or a value with bit 8 set
 * when c is not one; computed the same way for every c. */
static unsigned apikey__b64url_value(unsigned char c)
{
    unsigned up = apikey__in(c, 'A', 'Z'), lo = apikey__in(c, 'a', 'z');
    unsigned dg = apikey__in(c, '0', '9');
    unsigned dash = apikey__in(c, '-', '-'), us = apikey__in(c, '_', '_');
    unsigned ok = up | lo | dg | dash | us;

    return up * (c - 'A') + lo * (c - 'a' + 26) + dg * (c - '0' + 52) +
           dash * 62 + us * 63 + ((ok ^ 1) << 8);
}

/* Fills id[0..APIKEY_ID_LEN) with uniform base62 characters. */
static int apikey__random_id(char *id)
{
    unsigned char r[32];
    size_t n = 0, i;

    while (n < APIKEY_ID_LEN) {
        if (RAND_bytes(r, sizeof r) != 1)
            return -1;
        for (i = 0; i < sizeof r && n < APIKEY_ID_LEN; i++)
            if (r[i] < APIKEY__B62_LIMIT)
                id[n++] = apikey__base62[r[i] % 62];
    }
    return 0;
}

/* base64url without padding of in[0..APIKEY_SECRET_BYTES) into out. */
static void apikey__encode_secret(const unsigned char *in, char *out)
{
    size_t i, o = 0;
    uint32_t v;

    for (i = 0; i + 3 <= APIKEY_SECRET_BYTES; i += 3) {
        v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = apikey__b64url[v >> 18 & 63];
        out[o++] = apikey__b64url[v >> 12 & 63];
        out[o++] = apikey__b64url[v >> 6 & 63];
        out[o++] = apikey__b64url[v & 63];
    }
    /* 32 = 3 * 10 + 2: two bytes left, three characters */
    v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = apikey__b64url[v >> 18 & 63];
    out[o++] = apikey__b64url[v >> 12 & 63];
    out[o++] = apikey__b64url[v >> 6 & 63];
    assert(o == APIKEY_SECRET_LEN);
}

int apikey_generate(char id_out[APIKEY_ID_LEN + 1],
                    char key_out[APIKEY_LEN + 1],
                    uint8_t hash_out[APIKEY_HASH_LEN])
{
    unsigned char secret[APIKEY_SECRET_BYTES];
    char *p = key_out;
    int rc = -1;

    if (apikey__random_id(id_out) != 0)
        goto out;
    id_out[APIKEY_ID_LEN] = '\0';
    if (RAND_bytes(secret, sizeof secret) != 1)
        goto out;
    memcpy(p, APIKEY_PREFIX, APIKEY_PREFIX_LEN);
    p += APIKEY_PREFIX_LEN;
    memcpy(p, id_out, APIKEY_ID_LEN);
    p += APIKEY_ID_LEN;
    *p++ = '_';
    apikey__encode_secret(secret, p);
    key_out[APIKEY_LEN] = '\0';
    rc = apikey_hash(key_out, APIKEY_LEN, hash_out);
out:
    OPENSSL_cleanse(secret, sizeof secret);
    if (rc != 0) {
        OPENSSL_cleanse(id_out, APIKEY_ID_LEN + 1);
        OPENSSL_cleanse(key_out, APIKEY_LEN + 1);
        OPENSSL_cleanse(hash_out, APIKEY_HASH_LEN);
    }
    return rc;
}

int apikey_parse(const char *key, size_t len, char id_out[APIKEY_ID_LEN + 1])
{
    const char *id;
    const unsigned char *secret;
    unsigned bad = 0;
    size_t i;

    if (len != APIKEY_LEN || memcmp(key, APIKEY_PREFIX, APIKEY_PREFIX_LEN))
        return -1;
    id = key + APIKEY_PREFIX_LEN;
    for (i = 0; i < APIKEY_ID_LEN; i++)
        if (!apikey__is_base62(id[i]))
            return -1;
    if (id[APIKEY_ID_LEN] != '_')
        return -1;
    secret = (const unsigned char *)id + APIKEY_ID_LEN + 1;
    for (i = 0; i < APIKEY_SECRET_LEN; i++)
        bad |= apikey__b64url_value(secret[i]) >> 8;
    /* the last character holds 4 bits: its 2 low bits must be zero */
    bad |= apikey__b64url_value(secret[APIKEY_SECRET_LEN - 1]) & 3;
    if (bad)
        return -1;
    if (id_out) {
        memcpy(id_out, id, APIKEY_ID_LEN);
        id_out[APIKEY_ID_LEN] = '\0';
    }
    return 0;
}

int apikey_hash(const char *key, size_t len, uint8_t out[APIKEY_HASH_LEN])
{
    unsigned int n = 0;

    if (!EVP_Digest(len ? key : "", len, out, &n, EVP_sha256(), NULL) ||
        n != APIKEY_HASH_LEN) {
        OPENSSL_cleanse(out, APIKEY_HASH_LEN);
        return -1;
    }
    return 0;
}

bool apikey_verify(const uint8_t stored_hash[APIKEY_HASH_LEN],
                   const char *key, size_t len)
{
    uint8_t h[APIKEY_HASH_LEN];
    bool ok;

    if (apikey_hash(key, len, h) != 0)
        return false;
    ok = CRYPTO_memcmp(h, stored_hash, APIKEY_HASH_LEN) == 0;
    OPENSSL_cleanse(h, sizeof h);
    return ok;
}

bool ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return false;
    return alen == 0 || CRYPTO_memcmp(a, b, alen) == 0;
}
