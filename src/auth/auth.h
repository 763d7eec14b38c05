/*
 * auth.h - the guard in front of every edge: who is asking (a credential
 * becomes a principal), may they ask now (rate limits, connection caps),
 * and what happened (audit log, metrics, the key's usage log).
 *
 * Credentials. A bearer credential is an API key (sb_<id>_<secret>,
 * auth/apikey.h) or a JWT: one this server issued (POST /auth/token,
 * auth/tokens.h) or one from the configured external issuer. It arrives
 * as "Authorization: Bearer <credential>", as ?token=<credential> where a
 * browser cannot set headers (EventSource, WebSocket; allowed per call),
 * or in a WebSocket's first message (the adapter passes it to auth_check).
 *
 * Order of checks for one attempt, each refusing with its own outcome:
 *   1. per-IP rate limit (auth.ip_rate): 429;
 *   2. failed-attempt limit of the IP (auth.fail_rate), checked only when
 *      the IP has failed before: 429, so guessing keys is slow;
 *   3. the credential: missing 401, malformed / unknown / wrong / revoked /
 *      expired / outside the key's IP allowlist / bad token 401 (each a
 *      distinct outcome in logs and metrics, one generic text for the
 *      client: "invalid credentials", so a caller learns nothing about a
 *      key it does not hold);
 *   4. the principal's own rate (its "rate", else auth.key_rate): 429.
 * Permission checks (403) are the edges' business: they ask the principal
 * (principal_can_*) and report a refusal with auth_forbidden().
 *
 * Client IP. The peer address, unless the peer is a trusted proxy
 * (auth.trusted_proxies): then the right-most X-Forwarded-For address that
 * is not itself a trusted proxy.
 *
 * Audit. Every attempt is logged once, one JSON line: outcome, reason,
 * key (id or JWT sub), tenant, ip, endpoint; refusals at warn, successes
 * at info. Refusals beyond a budget (50 lines a second, bursts of 200) are
 * counted instead, and the next line says how many ("suppressed"), so a
 * flood cannot fill the disk. Secrets, keys and tokens never appear, and
 * neither does the query string. Every outcome is counted
 * (switchboard_auth_total), and an attempt with a known key id is
 * appended to that key's usage log.
 *
 * Usage logs survive restarts without a store write per request: a
 * thread of this module stores the logs that changed (keys_usage_dirty)
 * every AUTH_USAGE_FLUSH_MS in namespace AUTH_NS_USAGE, auth_flush
 * stores the rest at shutdown, and auth_init loads them back. A crash
 * loses at most the last interval.
 *
 * Threads: everything here may be called from any loop thread after
 * auth_init and before auth_shutdown.
 */
#ifndef SB_AUTH_AUTH_H
#define SB_AUTH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/keys.h"
#include "auth/principal.h"
#include "auth/tokens.h"
#include "http/server.h"
#include "ops/config.h"
#include "store/store.h"

#define AUTH_IP_MAX 48             /* "ip" text, NUL included */
/* Namespaces of the store's metadata that hold access control state */
#define AUTH_NS_KEYS "apikeys"     /* key id -> keys.h record */
#define AUTH_NS_REVOKED "revoked_tokens"  /* jti -> {"exp_ms"} */
#define AUTH_NS_AUTH "auth"        /* "jwt_secret" when generated */
#define AUTH_NS_USAGE "key_usage"  /* key id -> usage log (keys.h) */
#define AUTH_USAGE_FLUSH_MS 10000  /* changed usage logs stored this often */
#define AUTH_CRED_MAX 8192         /* bytes of a credential */

/* Why an attempt was refused (or not): status 0 when allowed. */
typedef struct auth_outcome {
    int status;                    /* 0, 401, 403, 429, 503 */
    int metric;                    /* enum metrics_auth */
    const char *code;              /* JSON error code: "unauthorized",
                                      "forbidden", "rate_limited", ... */
    const char *message;           /* for the client: never a secret */
    const char *reason;            /* for the log: more precise */
    uint64_t retry_after_ms;       /* 429 */
} auth_outcome_t;

/*
 * Start-up, before the loops run: loads the keys, their usage logs and
 * the revoked token ids from the store's metadata (blocking), starts the
 * usage log writer, creates and announces the bootstrap key when there
 * is no key at all (printed once on stdout and written 0600 to
 * auth.admin_key_file), sets up the token issuer and verifiers
 * (auth/tokens.h) and the rate tables. 0, or -1 with err.
 */
int auth_init(const config_t *cfg, store_t *store, char *err, size_t errlen);
/* At shutdown, once the connections are gone and BEFORE store_close:
 * stops the periodic usage log writer and stores every changed usage log,
 * waiting for the store (blocking; never from a loop). Errors are logged.
 * Uses recorded after it are not stored. */
void auth_flush(void);
/* After the loops have stopped (stops the usage log writer if auth_flush
 * did not; stores nothing). */
void auth_shutdown(void);

keys_reg_t *auth_keys(void);
tokens_t *auth_tokens(void);
store_t *auth_store(void);

/* The client IP of r (see above) into out, "" when unknown. */
void auth_client_ip(const http_req_t *r, char out[AUTH_IP_MAX]);

/*
 * Checks credential cred (len bytes; NULL or 0 = none presented) from
 * client ip for endpoint ("POST /api/v1/publish"): steps 1-4 above, with
 * the audit. Returns a new principal reference (principal_unref) with
 * out->status 0, or NULL with out filled.
 */
principal_t *auth_check(const char *cred, size_t len, const char *ip,
                        const char *endpoint, auth_outcome_t *out);

/* Where a request may carry its credential besides the header. */
#define AUTH_QUERY_TOKEN 1u        /* ?token= (EventSource, WebSocket) */

/*
 * auth_check for an HTTP request: the credential from the Authorization
 * header (or ?token= when flags allow it; the header wins), endpoint
 * "<METHOD> <path>". On refusal it has already answered r (auth_respond)
 * and returns NULL.
 */
principal_t *auth_request(http_req_t *r, unsigned flags);

/* Answers r with o: {"error":{"code","message"}}, plus WWW-Authenticate
 * on 401 and Retry-After (whole seconds, rounded up) on 429. */
void auth_respond(http_req_t *r, const auth_outcome_t *o);

/*
 * Reports a refusal by permission: logs and counts it (outcome forbidden,
 * `what` as the reason, e.g. "publish to orders.eu") and, when r is not
 * NULL, answers 403 with `what` in the message. For WebSocket commands
 * pass r NULL and reply in the protocol. ip and endpoint NULL: taken from
 * r (so a request pays for them only when it is refused).
 */
void auth_forbidden(http_req_t *r, const principal_t *p, const char *ip,
                    const char *endpoint, const char *what);

/* One more request by an authenticated principal on a long-lived
 * connection (a WebSocket publish): its rate limit only. True when
 * allowed; else out says 429. */
bool auth_rate(const principal_t *p, const char *ip, auth_outcome_t *out);

/* Whether p may still act: its key is neither revoked nor expired, its
 * token has neither expired nor been revoked (by jti). Streams ask on
 * every heartbeat. */
bool auth_still_valid(const principal_t *p, int64_t now_ms);

/*
 * A stream's place under the connection caps (per IP: auth.ip_max_
 * connections; per principal: its max_connections, else auth.key_max_
 * connections). auth_lease_acquire returns 0 and fills *l (which then
 * holds a principal reference), or -1 with out saying 429 (counted and
 * logged). auth_lease_release gives everything back; a zeroed or released
 * lease is fine to release again.
 */
typedef struct auth_lease {
    principal_t *p;
    char ip[AUTH_IP_MAX];
    bool ip_counted, key_counted;
} auth_lease_t;

int auth_lease_acquire(auth_lease_t *l, principal_t *p, const char *ip,
                       const char *endpoint, auth_outcome_t *out);
void auth_lease_release(auth_lease_t *l);

/* Step 1 of auth_check alone (the per-IP rate, auth.ip_rate), for
 * requests that carry no credential by design (the GitHub login). True
 * when allowed; else out says 429 (counted and logged for endpoint). */
bool auth_ip_rate(const char *ip, const char *endpoint, auth_outcome_t *out);

/* Whether ip may use the admin API (auth.admin_allow). */
bool auth_admin_ip_allowed(const char *ip);

#endif
