/*
 * seal.c - AES-256-GCM seal/open of small secrets. See seal.h.
 *
 * One EVP context per call: sealing happens at login and at a permission
 * refresh, never per request, so there is nothing worth caching, and no
 * shared state means no locks. Intermediate buffers that held plaintext
 * are wiped before they are freed.
 */
#include "auth/seal.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/base64.h"
#include "core/hex.h"

#define SEAL__NONCE 12
#define SEAL__TAG 16
#define SEAL__RAW_MAX (SEAL__NONCE + SEAL_PLAIN_MAX + SEAL__TAG)
#define SEAL__PREFIX_LEN (sizeof(SEAL_PREFIX) - 1)

int seal_key_parse(const char *text, size_t len,
                   unsigned char key[SEAL_KEY_LEN])
{
    unsigned char tmp[SEAL_KEY_LEN + 4];
    long n;

    if (hex_decode(text, len, tmp, SEAL_KEY_LEN)) {
        memcpy(key, tmp, SEAL_KEY_LEN);
        OPENSSL_cleanse(tmp, sizeof tmp);
        return 0;
    }
    n = base64_decode(text, len, tmp, sizeof tmp, B64_STD);
    if (n < 0)
        n = base64_decode(text, len, tmp, sizeof tmp, B64_URL);
    if (n == SEAL_KEY_LEN)
        memcpy(key, tmp, SEAL_KEY_LEN);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return n == SEAL_KEY_LEN ? 0 : -1;
}

/*
 * Runs AES-256-GCM over in[0..len) into out (same length), encrypting or
 * decrypting, with the tag written (encrypt) or checked (decrypt).
 * 0, or -1 on any failure (a wrong tag included).
 */
static int seal__gcm(bool enc, const unsigned char *key,
                     const unsigned char *nonce, const void *ad, size_t adlen,
                     const unsigned char *in, size_t len, unsigned char *out,
                     unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, rc = -1;

    if (!c || len > INT32_MAX || adlen > INT32_MAX)
        goto out;
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, SEAL__NONCE, NULL) != 1 ||
        EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1)
        goto out;
    if (adlen && EVP_CipherUpdate(c, NULL, &n, ad, (int)adlen) != 1)
        goto out;
    if (EVP_CipherUpdate(c, out, &n, in, (int)len) != 1 || (size_t)n != len)
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL__TAG, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(c, out + n, &n) != 1 || n != 0)
        goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL__TAG, tag) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int seal_seal(const unsigned char key[SEAL_KEY_LEN], const void *plain,
              size_t len, const void *ad, size_t adlen, char **out)
{
    unsigned char *raw = NULL;
    size_t rawlen = SEAL__NONCE + len + SEAL__TAG, tlen;
    char *text = NULL;
    int rc = -1;

    *out = NULL;
    if (len == 0 || len > SEAL_PLAIN_MAX || !(raw = malloc(rawlen)))
        goto out;
    tlen = SEAL__PREFIX_LEN + base64_encoded_len(rawlen, B64_URL);
    if (RAND_bytes(raw, SEAL__NONCE) != 1 ||
        seal__gcm(true, key, raw, ad, adlen, plain, len, raw + SEAL__NONCE,
                  raw + SEAL__NONCE + len) ||
        !(text = malloc(tlen + 1)))
        goto out;
    memcpy(text, SEAL_PREFIX, SEAL__PREFIX_LEN);
    base64_encode(raw, rawlen, text + SEAL__PREFIX_LEN, B64_URL);
    *out = text;
    rc = 0;
out:
    if (raw)
        OPENSSL_cleanse(raw, rawlen);
    free(raw);
    return rc;
}

int seal_open(const unsigned char key[SEAL_KEY_LEN], const char *sealed,
              size_t len, const void *ad, size_t adlen, char **out,
              size_t *outlen)
{
    unsigned char *raw = malloc(SEAL__RAW_MAX);
    char *plain = NULL;
    long n;
    size_t plen;
    int rc = -1;

    *out = NULL;
    *outlen = 0;
    if (!raw || len <= SEAL__PREFIX_LEN ||
        memcmp(sealed, SEAL_PREFIX, SEAL__PREFIX_LEN) != 0)
        goto out;
    n = base64_decode(sealed + SEAL__PREFIX_LEN, len - SEAL__PREFIX_LEN, raw,
                      SEAL__RAW_MAX, B64_URL);
    if (n <= SEAL__NONCE + SEAL__TAG)
        goto out;
    plen = (size_t)n - SEAL__NONCE - SEAL__TAG;
    if (!(plain = malloc(plen + 1)) ||
        seal__gcm(false, key, raw, ad, adlen, raw + SEAL__NONCE, plen,
                  (unsigned char *)plain, raw + SEAL__NONCE + plen)) {
        if (plain)
            OPENSSL_cleanse(plain, plen);
        free(plain);
        goto out;
    }
    plain[plen] = '\0';
    *out = plain;
    *outlen = plen;
    rc = 0;
out:
    if (raw)
        OPENSSL_cleanse(raw, SEAL__RAW_MAX);
    free(raw);
    return rc;
}

void seal_free_plain(char *p, size_t len)
{
    if (p)
        OPENSSL_cleanse(p, len);
    free(p);
}
