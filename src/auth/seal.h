/*
 * seal.h - authenticated encryption of small secrets at rest (the GitHub
 * access tokens of logged-in users).
 *
 * Format: "v1." + base64url(nonce[12] | ciphertext | tag[16]), AES-256-GCM
 * with a fresh random 96-bit nonce per seal. The associated data binds a
 * sealed value to its owner (the user id): opening it with any other
 * associated data fails, so a sealed token copied onto another record is
 * useless. The version prefix leaves room for a key rotation later.
 *
 * Keys are SEAL_KEY_LEN bytes, given as 64 hex digits or as base64
 * (standard or URL alphabet) of exactly 32 bytes.
 *
 * Thread-safe: no state besides the caller's key. Nothing here logs.
 */
#ifndef SB_AUTH_SEAL_H
#define SB_AUTH_SEAL_H

#include <stddef.h>

#define SEAL_KEY_LEN 32
#define SEAL_PLAIN_MAX 4096          /* bytes a seal may hold */
#define SEAL_PREFIX "v1."

/* Parses key text (hex or base64, see above) into key. 0, or -1 when it
 * is neither form of exactly 32 bytes. */
int seal_key_parse(const char *text, size_t len,
                   unsigned char key[SEAL_KEY_LEN]);

/*
 * Seals plain[0..len) (1..SEAL_PLAIN_MAX bytes) under key, bound to
 * ad[0..adlen). 0 with *out a malloc()ed NUL-terminated text the caller
 * frees; -1 (too long, no randomness, no memory) with *out NULL.
 */
int seal_seal(const unsigned char key[SEAL_KEY_LEN], const void *plain,
              size_t len, const void *ad, size_t adlen, char **out);

/*
 * Opens sealed[0..len) with key and ad. 0 with *out a malloc()ed copy of
 * the plaintext (NUL-terminated, *outlen bytes; wipe and free it); -1
 * when the text is malformed, was sealed with another key or other ad,
 * or was altered, with *out NULL.
 */
int seal_open(const unsigned char key[SEAL_KEY_LEN], const char *sealed,
              size_t len, const void *ad, size_t adlen, char **out,
              size_t *outlen);

/* Wipes and frees a plaintext from seal_open (NULL is fine). */
void seal_free_plain(char *p, size_t len);

#endif
