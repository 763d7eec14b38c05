/*
 * keys.h - the registry of API keys: create, authenticate, revoke, rotate,
 * list, usage log; in memory, shared by every loop thread.
 *
 * A key is the string sb_<id>_<secret> of auth/apikey.h. The registry keeps
 * per id: tenant, name, SHA-256 of the key (never the key), times, the
 * revocation, an optional IP allowlist, and the key's principal (its
 * permissions, auth/principal.h), which every connection authenticated
 * with the key shares by reference.
 *
 * No I/O. Every change returns the whole record as a JSON object (the
 * "record", below) for the caller to persist in the store's metadata
 * (under "apikey/<id>", say) and to replicate; at start-up and on
 * replication the caller hands records back with keys_load. The record
 * holds the hash (it must, to authenticate after a restart), so it is for
 * storage only; what is shown to people is the public view of keys_list /
 * keys_get, which never holds a secret, a key or a hash. No error text
 * ever contains one either.
 *
 * Lifecycle:
 *   - create: a new random key, shown once (key_out), never stored;
 *   - revoke: final; the key is refused from then on (keys_load never
 *     un-revokes a record either, so a late replicated copy cannot revive
 *     it);
 *   - rotate: a new secret under the same id (lists, logs and the usage
 *     log keep following the key); the previous secret keeps working
 *     until now + grace_ms, then is refused. Rotating again replaces the
 *     previous secret: at most two secrets work at any time;
 *   - expiry: a key created with a ttl is refused from created + ttl on.
 * Revocation, rotation and expiry do not change a principal already
 * handed out: a long-lived connection re-checks with keys_status.
 *
 * Usage log. Written on every authenticated attempt, so it is not part of
 * the record and is never persisted one request at a time. Each key has a
 * "dirty" flag, set by keys_record_use; a periodic writer collects the
 * changed logs with keys_usage_dirty (which clears the flags) and stores
 * them in batches, and at start-up hands them back with keys_usage_load.
 * What changed since the last collection is lost on a crash; a revoked
 * key keeps its log (it is history).
 *
 * Tenancy: the management calls take a tenant filter (NULL = any, for the
 * superadmin); a key of another tenant is reported as not found, so an
 * admin cannot even learn that an id exists elsewhere.
 *
 * Locking: one rwlock over the id index. Authentication, status, lists,
 * usage reads and the usage log's collection and loading take it shared;
 * create, revoke, rotate and load take it exclusive (rare). The usage log
 * is written on every request, so each record has its own mutex for its
 * ring and dirty flag, taken under the shared lock (never the other way
 * round, and never two records' mutexes at once).
 *
 * Record JSON (version 1; members the loader does not know are ignored so
 * a newer node's records still load):
 *   {"v":1, "id", "tenant", "name", "hash": 64 lowercase hex,
 *    "created_ms", "updated_ms", "expires_ms" (0 = never),
 *    "revoked": bool, "revoked_ms", "rotated_ms",
 *    "prev_hash" (optional), "prev_valid_until_ms",
 *    "superadmin": bool, "perms": spec (principal.h), "cidrs": [text]}
 * Times are Unix milliseconds.
 *
 * Usage log JSON (storage form, keys_usage_dirty / keys_usage_load): an
 * array, oldest first, of at most KEYS_USAGE_MAX
 *   {"ms": Unix ms, "ip", "endpoint", "outcome"}
 * whose strings are printable ASCII within their KEYS_USE_*_MAX, as
 * keys_record_use stores them. Unknown members are ignored.
 *
 * Public view (keys_list, keys_get):
 *   {"id", "tenant", "name", "status": "active"|"revoked"|"expired",
 *    "created_at", "expires_at", "revoked_at", "rotated_at",
 *    "previous_valid_until", "last_used_at" (ISO 8601 or null),
 *    "superadmin" (only when true), "permissions": spec, "cidrs": [text]}
 */
#ifndef SB_AUTH_KEYS_H
#define SB_AUTH_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "auth/apikey.h"
#include "auth/principal.h"

#define KEYS_MAX 65536             /* keys in one registry */
#define KEYS_NAME_MAX 64           /* bytes of UTF-8, no control chars */
#define KEYS_CIDRS_MAX 64          /* entries of one key's allowlist */
#define KEYS_TTL_MAX_MS (10ll * 366 * 86400 * 1000)     /* ten years */
#define KEYS_GRACE_MAX_MS (30ll * 86400 * 1000)         /* thirty days */
#define KEYS_USAGE_MAX 100         /* usage entries kept per key */
#define KEYS_USE_IP_MAX 45         /* bytes kept of a usage entry's ip, */
#define KEYS_USE_ENDPOINT_MAX 96   /* ...endpoint */
#define KEYS_USE_OUTCOME_MAX 32    /* ...and outcome */
#define KEYS_ERR_LEN 200           /* an error buffer that never truncates */

/* Return codes of the management calls (negative) */
#define KEYS_EINVAL (-1)           /* bad argument, spec or record: see err */
#define KEYS_ENOTFOUND (-2)        /* no such key (in that tenant) */
#define KEYS_ESTATE (-3)           /* rotate: the key is revoked or expired */
#define KEYS_EFULL (-4)            /* KEYS_MAX keys already */
#define KEYS_EINTERNAL (-5)        /* out of memory, RNG or digest failure */

typedef enum keys_auth {
    KEYS_AUTH_OK = 0,
    KEYS_AUTH_MALFORMED,           /* not a key of apikey.h's format */
    KEYS_AUTH_UNKNOWN,             /* no key with that id */
    KEYS_AUTH_BAD_SECRET,          /* id known, secret wrong or past grace */
    KEYS_AUTH_REVOKED,
    KEYS_AUTH_EXPIRED,
    KEYS_AUTH_IP_NOT_ALLOWED,      /* peer not in the key's allowlist */
} keys_auth_t;

/* "ok", "malformed", "unknown", "bad_secret", "revoked", "expired",
 * "ip_not_allowed": stable names for logs and metric labels. */
const char *keys_auth_name(keys_auth_t r);

typedef struct keys_reg keys_reg_t;

typedef struct keys_create_req {
    const char *tenant;            /* valid tenant (principal.h) */
    size_t tenant_len;
    const char *name;              /* 1..KEYS_NAME_MAX bytes */
    size_t name_len;
    const json_t *perms;           /* permission spec; NULL = none */
    const json_t *cidrs;           /* array of CIDR strings; NULL/[] = any */
    int64_t ttl_ms;                /* 0 = never expires */
    int64_t now_ms;                /* Unix ms */
} keys_create_req_t;

/* A new empty registry, or NULL without memory. */
keys_reg_t *keys_new(void);

/* Frees reg and every record; principals handed out stay valid until
 * released. No other call may be running on reg. NULL is a no-op. */
void keys_free(keys_reg_t *reg);

size_t keys_count(keys_reg_t *reg);

/*
 * Creates a key. On 0: key_out holds the key (APIKEY_LEN chars + NUL), to
 * be shown once and then wiped (OPENSSL_cleanse); *record_out is the
 * record to persist (a new reference). On error (KEYS_EINVAL with the
 * reason in err, KEYS_EFULL, KEYS_EINTERNAL) nothing is created, key_out
 * is zeroed and *record_out is NULL.
 */
int keys_create(keys_reg_t *reg, const keys_create_req_t *req,
                char key_out[APIKEY_LEN + 1], json_t **record_out, char *err,
                size_t errcap);

/*
 * The first-start key: named "bootstrap", kind PRINCIPAL_BOOTSTRAP,
 * superadmin (key management in every tenant) and, in its own tenant,
 * admin with ">" for publish, subscribe and history; no expiry, any IP.
 * Whether one is needed (keys_count() == 0) is the caller's decision.
 * Results as keys_create.
 */
int keys_bootstrap(keys_reg_t *reg, const char *tenant, size_t tenant_len,
                   int64_t now_ms, char key_out[APIKEY_LEN + 1],
                   json_t **record_out, char *err, size_t errcap);

/*
 * Revokes key id (of tenant, unless tenant is NULL) at now_ms. Revoking a
 * revoked key changes nothing and succeeds. Returns 0 with the record in
 * *record_out, or KEYS_ENOTFOUND / KEYS_EINTERNAL with it NULL.
 */
int keys_revoke(keys_reg_t *reg, const char *id, size_t id_len,
                const char *tenant, size_t tenant_len, int64_t now_ms,
                json_t **record_out);

/*
 * Gives key id a new secret; the previous one works until now_ms +
 * grace_ms (0..KEYS_GRACE_MAX_MS; 0 = refused at once). Results as
 * keys_create, plus KEYS_ENOTFOUND and KEYS_ESTATE (revoked or expired:
 * rotating would not make it usable).
 */
int keys_rotate(keys_reg_t *reg, const char *id, size_t id_len,
                const char *tenant, size_t tenant_len, int64_t grace_ms,
                int64_t now_ms, char key_out[APIKEY_LEN + 1],
                json_t **record_out, char *err, size_t errcap);

/* The public views of every key of tenant (NULL = all tenants), oldest
 * first, as a new JSON array; NULL without memory. */
json_t *keys_list(keys_reg_t *reg, const char *tenant, size_t tenant_len,
                  int64_t now_ms);

/* The public view of one key: 0 and *out, or KEYS_ENOTFOUND /
 * KEYS_EINTERNAL with *out NULL. */
int keys_get(keys_reg_t *reg, const char *id, size_t id_len,
             const char *tenant, size_t tenant_len, int64_t now_ms,
             json_t **out);

/*
 * Adds or replaces a record (start-up, replication). Every member is
 * validated as at creation. A record replaces the one with its id unless
 * that one is newer (larger updated_ms) or revoked while the new one is
 * not: both are ignored and return 0, so replaying old records is
 * harmless. A replaced key keeps its usage log. Returns 0, KEYS_EINVAL
 * (err says which member; never echoes the hash), KEYS_EFULL or
 * KEYS_EINTERNAL.
 */
int keys_load(keys_reg_t *reg, const json_t *record, char *err,
              size_t errcap);

/*
 * Checks a presented key: its format (apikey_parse), its id, SHA-256 of
 * the whole key against the current hash and, before prev_valid_until,
 * the previous one (both compared in constant time, whatever matches),
 * then revocation, expiry (now_ms is Unix ms) and the allowlist (peer_ip
 * as text, "10.1.2.3", "::1"; NULL counts as outside any non-empty
 * list). The secret is checked first, so a caller who only knows an id
 * learns nothing about its state.
 * On KEYS_AUTH_OK, *principal_out is a new reference the caller releases
 * with principal_unref; otherwise it is NULL. *reason_out (when not NULL)
 * receives a constant English text for logs, a little more precise than
 * the result (it says when an old secret's grace period is over).
 */
keys_auth_t keys_authenticate(keys_reg_t *reg, const char *key, size_t len,
                              const char *peer_ip, int64_t now_ms,
                              principal_t **principal_out,
                              const char **reason_out);

/* The state of key id now, without a secret: KEYS_AUTH_OK, _UNKNOWN,
 * _REVOKED or _EXPIRED. For connections that outlive a revocation. */
keys_auth_t keys_status(keys_reg_t *reg, const char *id, size_t id_len,
                        int64_t now_ms);

/* Whether a request from ip (text; NULL = unknown) may act for key id: it
 * has no allowlist, or ip is in it. True for an id that is not a key. For
 * tokens minted by a key, which must not carry it outside its allowlist. */
bool keys_ip_allowed(keys_reg_t *reg, const char *id, size_t id_len, const char *ip);

/*
 * Appends one entry to key id's usage log (the last KEYS_USAGE_MAX are
 * kept). ip, endpoint and outcome are NUL-terminated text, NULL for none;
 * each is cut to its KEYS_USE_*_MAX, endpoint also at its first '?' (a
 * query string may hold a token), and bytes outside printable ASCII are
 * stored as '?'. Returns 0, KEYS_ENOTFOUND, or KEYS_EINTERNAL when the
 * key's log (KEYS_USAGE_MAX entries, about 18 KiB, allocated at its first
 * use) cannot be allocated.
 */
int keys_record_use(keys_reg_t *reg, const char *id, size_t id_len,
                    int64_t now_ms, const char *ip, const char *endpoint,
                    const char *outcome);

/* Key id's usage log, newest first, as a new JSON array of
 * {"time": ISO 8601, "ip", "endpoint", "outcome"}: 0 and *out, or
 * KEYS_ENOTFOUND / KEYS_EINTERNAL with *out NULL. */
int keys_usage(keys_reg_t *reg, const char *id, size_t id_len,
               const char *tenant, size_t tenant_len, json_t **out);

/*
 * Collects the usage logs changed (by keys_record_use) since they were
 * last collected: a new JSON object {id: [entries, storage form, oldest
 * first]} of at most max keys, whose dirty flags are cleared. An empty
 * object when nothing changed; fewer than max keys means none is left.
 * NULL without memory (flags not cleared then, except for keys already
 * in a partial result, which is returned instead).
 */
json_t *keys_usage_dirty(keys_reg_t *reg, size_t max);

/*
 * Restores key id's usage log from entries (storage form, above), at
 * start-up. Every entry is validated as keys_record_use would have made
 * it; one bad entry refuses the whole array (KEYS_EINVAL, err says which)
 * and changes nothing. Only the last KEYS_USAGE_MAX entries of a longer
 * array are kept. Entries already recorded for the key stay, as the
 * newest. The key's last use becomes the newest of them all; its dirty
 * flag does not change. An id that is not a key is ignored (0).
 * KEYS_EINTERNAL without memory.
 */
int keys_usage_load(keys_reg_t *reg, const char *id, size_t id_len,
                    const json_t *entries, char *err, size_t errcap);

#endif
