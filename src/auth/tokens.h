/*
 * tokens.h - bearer JWTs: the ones this server issues (POST /auth/token)
 * and the ones an external issuer signs, plus the list of revoked token
 * ids.
 *
 * Own tokens are HS256 with the server secret (auth.jwt_secret, >= 32
 * bytes), header kid "sb1", claims: "iss":"switchboard", "sub" (the API
 * key id that asked for it), "tenant", "scope" (principal_to_claims:
 * never more than the key had, never superadmin), "iat", "exp", "jti"
 * (128 random bits, base64url). A token is refused once the key that
 * minted it is revoked or expired (key_alive below), so revoking a key
 * also ends its tokens.
 *
 * External tokens are checked against the configured issuer keys: an
 * HS256 secret, a PEM public key, a JWKS file and/or a JWKS URL (fetched
 * with libcurl on a background thread at start and every refresh_ms, and
 * sooner - at most once per TOKENS_JWKS_MIN_REFRESH_MS - when a token
 * names a kid we do not know; the token that asked is refused, a retry
 * after the refresh passes). A refresh that fails keeps the previous key
 * set. Every key is pinned to its algorithm (auth/jwt.h), "none" never
 * verifies. iss / aud are checked when configured. The tenant comes from
 * the claims, else cfg->default_tenant (principal_from_claims).
 *
 * Which verifier: a token whose header kid is "sb1" goes to the own key
 * set only; every other token to the external key sets only. exp is
 * required for both; nbf honoured; both with leeway_ms.
 *
 * Revocation: tokens_revoke adds a jti until its expiry (after which the
 * token is dead anyway and the entry is forgotten); revoked ids are
 * refused whichever issuer signed the token. Own tokens must carry a
 * jti; in any token a "jti" that is present must be a string of 1 to
 * TOKENS_JTI_MAX bytes (one that could not be revoked is refused). Persisting revocations is
 * the caller's (auth.c keeps them in the store's metadata and hands them
 * back at start-up through tokens_revoke).
 *
 * Cache: a token that verified is remembered (by its SHA-256, never its
 * text) with its principal, in a fixed table of cfg->cache_entries, so a
 * client that sends the same token on every request pays the JSON and
 * the principal once. A cached token is still held, on every use, to all
 * that can change after it verified: exp and nbf against now_ms (with
 * leeway), its jti against the revoked list, an own token's key against
 * key_alive. A swap of the external key set (JWKS reload) empties the
 * cache, so a key dropped from the JWKS stops vouching at once. Only
 * TOKENS_OK results are cached.
 *
 * Threads: tokens_verify, tokens_mint, tokens_revoke and tokens_revoked
 * may run on any thread at once; the key sets swap under a lock that
 * verification holds only while it uses a set. Nothing here logs a secret
 * or a token.
 */
#ifndef SB_AUTH_TOKENS_H
#define SB_AUTH_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/principal.h"

#define TOKENS_KID "sb1"
#define TOKENS_ISSUER "switchboard"
#define TOKENS_JTI_MAX 64              /* bytes of a jti we accept */
#define TOKENS_REVOKED_MAX 100000      /* revoked ids remembered at once */
#define TOKENS_JWKS_MIN_REFRESH_MS 10000
#define TOKENS_CACHE_DEFAULT 4096      /* verified tokens remembered */
#define TOKENS_CACHE_MAX (1 << 20)

typedef struct tokens tokens_t;

/* A key id's state, asked for own tokens: true when key id may still act. */
typedef bool (*tokens_key_alive_fn)(void *ctx, const char *key_id,
                                    size_t len, int64_t now_ms);

typedef struct tokens_cfg {
    const void *secret;            /* own HS256 secret (required) */
    size_t secret_len;
    int64_t leeway_ms;             /* 0..86400000, applied to exp and nbf */
    tokens_key_alive_fn key_alive; /* may be NULL: not checked */
    void *key_alive_ctx;
    /* external issuer: any of these, all optional (NULL or "" = unused) */
    const char *issuer_secret;     /* HS256 */
    const char *public_key_file;   /* PEM: RS256 or ES256 */
    const char *jwks_file;
    const char *jwks_url;
    int64_t jwks_refresh_ms;       /* <= 0: only when a kid is unknown */
    int64_t jwks_min_refresh_ms;   /* least time between two fetches; an
                                      unknown kid waits for it; <= 0 =
                                      TOKENS_JWKS_MIN_REFRESH_MS (tests
                                      set it lower) */
    const char *issuer;            /* required "iss", NULL/"" = unchecked */
    const char *audience;          /* required "aud", NULL/"" = unchecked */
    const char *default_tenant;    /* NULL/"" = none */
    int cache_entries;             /* verified tokens cached: 0 =
                                      TOKENS_CACHE_DEFAULT, -1 = no cache,
                                      else 1..TOKENS_CACHE_MAX, rounded up
                                      to a power of two (at least 4) */
} tokens_cfg_t;

/* What the cache did since tokens_new. A hit is a lookup that found the
 * token (then refused when its re-checks fail); a miss went the slow
 * way. */
typedef struct tokens_cache_stats {
    uint64_t hits, misses;
    size_t entries;                /* tokens held now */
    size_t capacity;               /* 0 when the cache is off */
} tokens_cache_stats_t;

typedef enum tokens_result {
    TOKENS_OK = 0,
    TOKENS_EMALFORMED,             /* not a JWT we can read */
    TOKENS_EINVALID,               /* signature, alg, kid, iss, aud, claims */
    TOKENS_EEXPIRED,               /* exp passed (or nbf not yet) */
    TOKENS_EREVOKED,               /* jti revoked, or the minting key is gone */
    TOKENS_ENOMEM,
} tokens_result_t;

/*
 * Builds the verifiers: loads the PEM and JWKS files and fetches the JWKS
 * URL once (blocking, bounded by a 5 s timeout; a failed first fetch is an
 * error, so a misconfigured issuer shows at start), then starts the
 * refresh thread when a JWKS is configured. NULL with a reason in err
 * (never a secret).
 */
tokens_t *tokens_new(const tokens_cfg_t *cfg, char *err, size_t errlen);
/* Stops the refresh thread and frees everything (secrets wiped). */
void tokens_free(tokens_t *t);

/*
 * Issues a token for p (minted by API key p->id) valid for ttl_ms from
 * now_ms (cut to p->expires_ms when that is sooner). On 0, *token_out is
 * a malloc()ed NUL-terminated token, jti_out its id and *exp_ms_out its
 * expiry (whole seconds: exp is a number of seconds). -1 without memory
 * or RNG, or when the token would already be expired at now_ms (ttl_ms
 * not positive, p expired).
 */
int tokens_mint(tokens_t *t, const principal_t *p, int64_t now_ms,
                int64_t ttl_ms, char **token_out,
                char jti_out[TOKENS_JTI_MAX + 1], int64_t *exp_ms_out);

/*
 * Verifies token (len bytes) at now_ms. TOKENS_OK with *out a new
 * principal (kind PRINCIPAL_JWT, expires_ms = exp) that the caller
 * unrefs; otherwise *out is NULL and *reason (when not NULL) a constant
 * English text for the log (jwt_strerror, "jti revoked", ...).
 */
tokens_result_t tokens_verify(tokens_t *t, const char *token, size_t len,
                              int64_t now_ms, principal_t **out,
                              const char **reason);

/* Refuses token id jti from now until exp_ms (Unix ms). 0, or -1 when
 * jti is empty or too long, or the list is full (TOKENS_REVOKED_MAX ids
 * not yet expired by the wall clock). An exp_ms already past (wall clock)
 * is a no-op returning 0. */
int tokens_revoke(tokens_t *t, const char *jti, size_t len, int64_t exp_ms);
bool tokens_revoked(tokens_t *t, const char *jti, size_t len,
                    int64_t now_ms);

/* A snapshot of the cache's counters (each stripe read under its lock). */
void tokens_cache_stats(tokens_t *t, tokens_cache_stats_t *out);

/* Whether token's header names the own key (kid "sb1"): which verifier
 * tokens_verify uses. Unverified: only meaningful after tokens_verify
 * accepted the token. */
bool tokens_own(const char *token, size_t len);

/* Reads the jti and exp claims of a token without verifying it (for an
 * admin revoking a token they hold). 0, or -1 when unreadable. */
int tokens_peek(const char *token, size_t len,
                char jti_out[TOKENS_JTI_MAX + 1], int64_t *exp_ms_out);

#endif
