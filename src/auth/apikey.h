/*
 * apikey.h - the format of Switchboard API keys, and their verification.
 *
 * A key is one string:
 *
 *     sb_<id>_<secret>       e.g. sb_a1B2c3D4e5F6_<43 chars>
 *
 *   - "sb_"     fixed prefix, so a leaked key is recognisable by scanners;
 *   - <id>      APIKEY_ID_LEN random base62 characters [0-9A-Za-z]: the
 *               public name of the key in lists, logs and the usage log;
 *   - "_"       separator;
 *   - <secret>  APIKEY_SECRET_BYTES random bytes in base64url without
 *               padding (APIKEY_SECRET_LEN characters [A-Za-z0-9_-]), in
 *               canonical form: the last character carries 4 bits and its
 *               two unused low bits are zero.
 *
 * The id is not secret. Only SHA-256 of the whole key string is ever
 * stored; the server finds the stored hash by id (apikey_parse) and then
 * compares hashes in constant time (apikey_verify). The key string itself
 * is shown once at creation and never logged.
 *
 * Everything here is thread-safe and allocation-free.
 */
#ifndef SB_APIKEY_H
#define SB_APIKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define APIKEY_PREFIX "sb_"
#define APIKEY_PREFIX_LEN 3
#define APIKEY_ID_LEN 12
#define APIKEY_SECRET_BYTES 32
#define APIKEY_SECRET_LEN 43       /* base64url, no padding, of 32 bytes */
#define APIKEY_LEN (APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1 + APIKEY_SECRET_LEN)
#define APIKEY_HASH_LEN 32         /* SHA-256 */

/*
 * Makes a new key from the OpenSSL RNG. Writes the id (APIKEY_ID_LEN chars
 * + NUL) to id_out, the whole key (APIKEY_LEN chars + NUL) to key_out and
 * SHA-256 of the key to hash_out. Returns 0, or -1 when the RNG or the
 * digest fails; then all three outputs are zeroed and must not be used.
 * The caller stores id and hash, shows key once, and should wipe key_out
 * (OPENSSL_cleanse) when done with it.
 */
int apikey_generate(char id_out[APIKEY_ID_LEN + 1],
                    char key_out[APIKEY_LEN + 1],
                    uint8_t hash_out[APIKEY_HASH_LEN]);

/*
 * Checks that key[0..len) is exactly a key in the format above (length,
 * prefix, id charset, separator, secret charset and canonical last char)
 * and, when id_out is not NULL, copies its id there (NUL-terminated).
 * Returns 0, or -1 for anything else (id_out untouched). The secret's
 * characters are checked without an early exit; no byte past len is read.
 */
int apikey_parse(const char *key, size_t len, char id_out[APIKEY_ID_LEN + 1]);

/* SHA-256 of key[0..len) (any bytes) into out. Returns 0, or -1 when the
 * digest fails (out zeroed). */
int apikey_hash(const char *key, size_t len, uint8_t out[APIKEY_HASH_LEN]);

/*
 * True when SHA-256(key[0..len)) equals stored_hash. The time taken does
 * not depend on the content of key or of stored_hash (only on len). Does
 * not check the format: call apikey_parse first to find the stored hash.
 * False when the digest fails.
 */
bool apikey_verify(const uint8_t stored_hash[APIKEY_HASH_LEN],
                   const char *key, size_t len);

/*
 * Constant-time equality for secrets of the whole auth layer (tokens,
 * signatures, MACs): true when alen == blen and the bytes are equal. The
 * time does not depend on the bytes; a length difference returns at once,
 * so lengths may leak (compare fixed-length digests where that matters).
 */
bool ct_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
