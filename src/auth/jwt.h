/*
 * jwt.h - verification and signing of compact JWS JSON Web Tokens
 * (RFC 7515/7518/7519), restricted to HS256, RS256 and ES256.
 *
 * Every key in a key set is pinned to exactly one algorithm when it is
 * loaded (a secret to HS256, an RSA public key to RS256, a P-256 public key
 * to ES256). A token's header "alg" only selects among keys pinned to that
 * algorithm; it can never change how a key is used, so an HS256 token is
 * never checked with an RSA public key as the HMAC secret, and "none" never
 * verifies. Tokens are checked with OpenSSL 3 EVP calls and parsed with
 * jansson; libjwt is not used because Debian's version has neither JWKS nor
 * per-key algorithm pinning.
 *
 * A key set is built once (from config, a PEM file, or a fetched JWKS
 * document), then only read: any number of threads may call jwt_verify on
 * the same key set at once. Rotation (a JWKS refresh) builds a new key set
 * and swaps the caller's pointer; the old one is freed when no verification
 * uses it any more.
 *
 * Nothing here logs; no function ever prints a secret, a key or a token.
 */
#ifndef SB_AUTH_JWT_H
#define SB_AUTH_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#define JWT_MAX_TOKEN 8192          /* bytes of compact serialization */
#define JWT_KEYSET_MAX 32           /* keys in one key set */
#define JWT_MAX_TRIES 8             /* keys tried for a token without kid */
#define JWT_MAX_KID 256             /* bytes of a "kid" */
#define JWT_HS_MIN_SECRET 32        /* bytes; shorter HS256 secrets refused */
#define JWT_HS_MAX_SECRET 1024
#define JWT_RSA_MIN_BITS 2048
#define JWT_RSA_MAX_BITS 8192       /* bounds the cost of one verification */
#define JWT_JWKS_MAX 65536          /* bytes of a JWKS document */

typedef enum jwt_alg {
    JWT_HS256 = 1,
    JWT_RS256,
    JWT_ES256,
} jwt_alg_t;

typedef enum jwt_err {
    JWT_OK = 0,
    JWT_EMALFORMED,     /* not three base64url segments, header or claims
                           not a JSON object, alg/kid/exp/nbf/iat of the
                           wrong type, duplicate JSON keys */
    JWT_ETOOBIG,        /* token longer than JWT_MAX_TOKEN */
    JWT_EALG,           /* alg "none", unknown, pinned by no key, or not
                           the pinned alg of the key named by kid */
    JWT_ECRIT,          /* header has "crit": no extension is understood */
    JWT_ENOKEY,         /* no key with the header's kid */
    JWT_ESIG,           /* signature wrong, or of the wrong length */
    JWT_EEXPIRED,       /* now >= exp + leeway */
    JWT_ENOTYET,        /* now < nbf - leeway */
    JWT_ENOEXP,         /* opts->require_exp and no "exp" */
    JWT_EISSUER,        /* "iss" absent or not opts->issuer */
    JWT_EAUDIENCE,      /* "aud" absent or does not contain opts->audience */
    JWT_ENOMEM,
    JWT_EKEY,           /* loaders: unusable key (type, size, encoding,
                           alg/kty mismatch, duplicate kid, bad JWKS) */
    JWT_EFULL,          /* loaders: key set already holds JWT_KEYSET_MAX */
} jwt_err_t;

/* A short, constant English description of err; never NULL. */
const char *jwt_strerror(jwt_err_t err);
/* "HS256", "RS256", "ES256", or NULL for any other value. */
const char *jwt_alg_name(jwt_alg_t alg);

typedef struct jwt_keyset jwt_keyset_t;   /* opaque */

/* A new empty key set, or NULL without memory. */
jwt_keyset_t *jwt_keyset_new(void);
/* Frees ks and every key in it (secrets are wiped). NULL is a no-op. */
void jwt_keyset_free(jwt_keyset_t *ks);
size_t jwt_keyset_count(const jwt_keyset_t *ks);
/* True when some key of ks is pinned to alg. */
bool jwt_keyset_has_alg(const jwt_keyset_t *ks, jwt_alg_t alg);

/*
 * Loaders. Each adds keys to ks and returns JWT_OK, or an error and leaves
 * ks exactly as it was. kid may be NULL (no kid) and is copied; a kid that
 * is already in ks, empty, or longer than JWT_MAX_KID is refused
 * (JWT_EKEY). When why is not NULL it receives a constant English reason on
 * error (fit for a config error message; it never contains key material).
 *
 * jwt_keyset_add_secret: an HS256 key; secret is copied, and must be
 * JWT_HS_MIN_SECRET..JWT_HS_MAX_SECRET bytes.
 *
 * jwt_keyset_add_pem: one "PUBLIC KEY" (SubjectPublicKeyInfo) PEM block.
 * An RSA key of JWT_RSA_MIN_BITS..JWT_RSA_MAX_BITS becomes RS256, an EC
 * P-256 key becomes ES256; anything else (other curves, RSA-PSS, Ed25519,
 * private keys, certificates) is refused.
 *
 * jwt_keyset_add_jwks: every usable key of an RFC 7517 JWK Set of at most
 * JWT_JWKS_MAX bytes and JWT_KEYSET_MAX entries. kty "RSA" (n, e) becomes RS256 and kty "EC" (crv
 * "P-256", x, y of 32 bytes each) ES256; numbers are strict base64url.
 * Keys with "use":"enc", with kty or crv we do not verify with (oct, OKP,
 * P-384...) or with an "alg" of the right family that we do not support
 * (RS512, PS256...) are skipped, as RFC 7517 section 5 asks. A supported
 * key that is broken (bad encoding, weak, not on the curve) or whose "alg"
 * contradicts its kty (kty EC with "alg":"RS256") refuses the whole
 * document, as does a document with no usable key at all. *added (may be
 * NULL) receives the number of keys added.
 */
jwt_err_t jwt_keyset_add_secret(jwt_keyset_t *ks, const char *kid,
                                const void *secret, size_t len,
                                const char **why);
jwt_err_t jwt_keyset_add_pem(jwt_keyset_t *ks, const char *kid,
                             const char *pem, size_t len, const char **why);
jwt_err_t jwt_keyset_add_jwks(jwt_keyset_t *ks, const char *json,
                              size_t len, size_t *added, const char **why);

typedef struct jwt_opts {
    int64_t now;            /* seconds since the epoch */
    int64_t leeway_s;       /* 0..86400, applied to exp and nbf */
    bool require_exp;       /* refuse tokens without "exp" */
    const char *issuer;     /* NULL: "iss" not checked */
    const char *audience;   /* NULL: "aud" not checked; else "aud" (string
                               or array of strings) must contain it */
} jwt_opts_t;

/*
 * Verifies token (len bytes, need not be NUL-terminated) against ks.
 *
 * Order: size, shape and base64url of all three segments, header (a JSON
 * object with a string "alg", no "crit", optional string "kid"), algorithm
 * and key selection, signature, then claims (only parsed once the
 * signature holds): "exp", "nbf", "iat"
 * must be numbers when present; exp/nbf are checked against opts->now with
 * opts->leeway_s; then issuer and audience. With a kid only the key of
 * that kid is tried and its pinned alg must equal the header's; without a
 * kid the first JWT_MAX_TRIES keys pinned to the header's alg are tried.
 * The first failing rule decides the error.
 *
 * On JWT_OK, when claims is not NULL, *claims receives a new reference to
 * the claims object (the caller json_decref()s it); on error *claims is
 * set to NULL. Thread-safe for concurrent calls on one key set; leaves the
 * thread's OpenSSL error queue as it found it.
 */
jwt_err_t jwt_verify(const jwt_keyset_t *ks, const char *token, size_t len,
                     const jwt_opts_t *opts, json_t **claims);

/*
 * Signing. claims must be a JSON object; it is written compactly with keys
 * in insertion order. kid may be NULL. The header is
 * {"alg":...,"typ":"JWT"[,"kid":...]}. Returns a malloc()ed NUL-terminated
 * token (the caller free()s it), or NULL on bad arguments (secret outside
 * JWT_HS_MIN_SECRET..JWT_HS_MAX_SECRET, key of the wrong type or size,
 * claims not an object), when the token would pass JWT_MAX_TOKEN, or
 * without memory. The private key is only read.
 */
char *jwt_sign_hs256(const void *secret, size_t len, const char *kid,
                     const json_t *claims);
char *jwt_sign_rs256(EVP_PKEY *key, const char *kid, const json_t *claims);
char *jwt_sign_es256(EVP_PKEY *key, const char *kid, const json_t *claims);

#endif
