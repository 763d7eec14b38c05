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

#include "core/base64.h"

static const char apikey__base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#define APIKEY__B62_LIMIT 248      /* 4 * 62: bytes below map evenly */

static bool apikey__is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
           (c >= 'a' && c <= 'z');
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
    base64_encode(secret, APIKEY_SECRET_BYTES, p, B64_URL);
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
    const char *id, *secret;
    unsigned char raw[APIKEY_SECRET_BYTES];
    size_t i;

    if (len != APIKEY_LEN || memcmp(key, APIKEY_PREFIX, APIKEY_PREFIX_LEN))
        return -1;
    id = key + APIKEY_PREFIX_LEN;
    for (i = 0; i < APIKEY_ID_LEN; i++)
        if (!apikey__is_base62(id[i]))
            return -1;
    if (id[APIKEY_ID_LEN] != '_')
        return -1;
    secret = id + APIKEY_ID_LEN + 1;
    /* strict: one spelling only, so a key has exactly one hash */
    if (base64_decode(secret, APIKEY_SECRET_LEN, raw, sizeof raw, B64_URL) !=
        APIKEY_SECRET_BYTES) {
        OPENSSL_cleanse(raw, sizeof raw);
        return -1;
    }
    OPENSSL_cleanse(raw, sizeof raw);
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
