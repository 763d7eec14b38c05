/*
 * auth.c - the guard: credentials to principals, rate limits, connection
 * caps and the audit trail. See auth.h.
 *
 * State is process-wide and built once by auth_init before any loop runs:
 * the key registry (keys.c, filled from the store's metadata), the token
 * verifiers (tokens.c), one rate table for every limit (keys prefixed by
 * kind: "ip:", "fail:", "key:", "cip:", "ckey:") and the parsed CIDR lists.
 * After that everything is read-only or internally locked, so the loops
 * call in without further coordination.
 *
 * Start-up persistence (the bootstrap key, a generated token secret) must
 * be durable before the server says it is listening, but the store answers
 * through loop posts and the loops are not running yet: serve.c's post
 * function runs completions for target NULL on the store's thread, and
 * meta_put_sync (a put_batch_t of one) waits for that on a condition
 * variable.
 *
 * Usage logs (auth.h) are stored by a thread of their own, started by
 * auth_init and stopped by auth_flush or auth_shutdown: the loops must
 * not wait for the store and the store's thread must not wait for
 * anything, so every AUTH_USAGE_FLUSH_MS this thread collects the changed
 * logs, puts them with target NULL (the completion only counts down on
 * the store's thread) and waits for that batch before the next.
 */
#include "auth/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth/cidr.h"
#include "auth/ratelimit.h"
#include "auth/users.h"
#include "core/base64.h"
#include "core/clock.h"
#include "core/errmsg.h"
#include "core/siphash.h"
#include "ops/log.h"
#include "ops/metrics.h"

#define AUTH_SECRET_BYTES 32
#define AUTH_SECRET_KEY "jwt_secret"
#define AUTH_ENDPOINT_MAX 96
#define AUTH_LOG_REFUSALS_PER_S 50.0   /* refusal log lines, sustained */
#define AUTH_LOG_REFUSALS_BURST 200
#define AUTH_USAGE_BATCH 64            /* usage logs per collection */

static struct {
    const config_t *cfg;
    store_t *store;
    keys_reg_t *keys;
    tokens_t *tokens;
    rl_table_t *rl;
    cidr_list_t proxies;
    cidr_list_t admin_allow;
    uint64_t sip0, sip1;           /* hashes long rate keys */
} A;

keys_reg_t *auth_keys(void) { return A.keys; }
tokens_t *auth_tokens(void) { return A.tokens; }
store_t *auth_store(void) { return A.store; }

/* --- outcomes --------------------------------------------------------------- */

static void outcome(auth_outcome_t *o, int status, int metric, const char *code,
                    const char *message, const char *reason)
{
    o->status = status;
    o->metric = metric;
    o->code = code;
    o->message = message;
    o->reason = reason;
    o->retry_after_ms = 0;
}

static void refuse_invalid(auth_outcome_t *o, int metric, const char *reason)
{
    outcome(o, 401, metric, "unauthorized", "invalid credentials", reason);
}

static void refuse_rate(auth_outcome_t *o, uint64_t retry_ms, const char *reason)
{
    outcome(o, 429, MA_RATE_LIMITED, "rate_limited", "too many requests; retry later", reason);
    o->retry_after_ms = retry_ms;
}

static int metric_of_key(keys_auth_t r)
{
    switch (r) {
    case KEYS_AUTH_OK: return MA_OK;
    case KEYS_AUTH_MALFORMED: return MA_MALFORMED;
    case KEYS_AUTH_UNKNOWN: return MA_UNKNOWN;
    case KEYS_AUTH_BAD_SECRET: return MA_BAD_SECRET;
    case KEYS_AUTH_REVOKED: return MA_REVOKED;
    case KEYS_AUTH_EXPIRED: return MA_EXPIRED;
    case KEYS_AUTH_IP_NOT_ALLOWED: return MA_IP_NOT_ALLOWED;
    }
    return MA_MALFORMED;
}

static int metric_of_token(tokens_result_t r)
{
    switch (r) {
    case TOKENS_OK: return MA_OK;
    case TOKENS_EMALFORMED: return MA_MALFORMED;
    case TOKENS_EEXPIRED: return MA_EXPIRED;
    case TOKENS_EREVOKED: return MA_REVOKED;
    default: return MA_INVALID_TOKEN;
    }
}

static const char *outcome_name(int metric)
{
    static const char *const names[MA_MAX] = {
        "ok", "missing", "malformed", "unknown", "bad_secret", "revoked", "expired",
        "ip_not_allowed", "invalid_token", "forbidden", "rate_limited", "connection_limited",
    };
    return metric >= 0 && metric < MA_MAX ? names[metric] : "unknown";
}

/*
 * The audit trail of one attempt: the log line, the metric, and the usage
 * log of the key when one is named. who is a key id or a token's sub (may
 * be empty); tenant may be NULL.
 */
static void audit(const auth_outcome_t *o, const char *who, const char *tenant, const char *ip,
                  const char *endpoint)
{
    static atomic_uint_fast64_t suppressed;
    const char *name = outcome_name(o->metric);
    int level = o->status ? LOG_LEVEL_WARN : LOG_LEVEL_INFO;
    uint64_t skipped;

    METRIC_INC(auth[o->metric]);
    /* A flood of refusals must not become a flood of log lines: past a
     * budget they are only counted (the metric above has them all) and the
     * next line that is written says how many were left out. */
    if (o->status && !rl_take(A.rl, "log:refusals", 12, AUTH_LOG_REFUSALS_PER_S,
                              AUTH_LOG_REFUSALS_BURST, clock_mono_ms(), NULL)) {
        atomic_fetch_add_explicit(&suppressed, 1, memory_order_relaxed);
    } else {
        skipped = atomic_exchange_explicit(&suppressed, 0, memory_order_relaxed);
        LOG_AT(level, "auth", "\"outcome\":\"%s\",\"reason\":\"%s\",\"key\":\"%s\","
               "\"tenant\":\"%s\",\"ip\":\"%s\",\"endpoint\":\"%s\",\"suppressed\":%" PRIu64,
               name, log_str(o->reason ? o->reason : "", (size_t)-1),
               log_str(who ? who : "", (size_t)-1), log_str(tenant ? tenant : "", (size_t)-1),
               log_str(ip, (size_t)-1), log_str(endpoint, (size_t)-1), skipped);
    }
    if (who && *who && A.keys)
        keys_record_use(A.keys, who, strlen(who), clock_now_ms(), ip, endpoint, name);
}

/* --- rate tables ------------------------------------------------------------ */

/* "<kind>:<name>" into out (RL_KEY_MAX bytes); names too long for that are
 * replaced by a keyed hash. Returns the length. */
static size_t rate_key(char out[RL_KEY_MAX + 1], const char *kind, const char *a, const char *b)
{
    int n = snprintf(out, RL_KEY_MAX + 1, "%s:%s/%s", kind, a, b ? b : "");

    if (n < 0 || n > RL_KEY_MAX) {
        uint64_t h1 = siphash13(A.sip0, A.sip1, a, strlen(a));
        uint64_t h2 = siphash13(A.sip1, A.sip0 ^ h1, b ? b : "", b ? strlen(b) : 0);
        n = snprintf(out, RL_KEY_MAX + 1, "%s#%016" PRIx64 "%016" PRIx64, kind, h1, h2);
    }
    return (size_t)n;
}

static bool take(const char *kind, const char *a, const char *b, double rate, uint32_t burst,
                 uint64_t *retry)
{
    char k[RL_KEY_MAX + 1];
    size_t len = rate_key(k, kind, a, b);

    return rl_take(A.rl, k, len, rate, burst, clock_mono_ms(), retry);
}

static void principal_rate(const principal_t *p, double *rate, uint32_t *burst)
{
    if (p->perm.rate_per_s > 0) {
        *rate = p->perm.rate_per_s;
        *burst = p->perm.burst;
    } else {
        *rate = (double)A.cfg->key_rate;
        *burst = (uint32_t)A.cfg->key_burst;
    }
}

bool auth_rate(const principal_t *p, const char *ip, auth_outcome_t *out)
{
    double rate;
    uint32_t burst;
    uint64_t retry = 0;

    outcome(out, 0, MA_OK, NULL, NULL, NULL);
    principal_rate(p, &rate, &burst);
    if (take("key", p->tenant, p->id, rate, burst, &retry))
        return true;
    refuse_rate(out, retry, "credential rate limit");
    return false;
}

bool auth_ip_rate(const char *ip, const char *endpoint, auth_outcome_t *out)
{
    uint64_t retry = 0;

    outcome(out, 0, MA_OK, NULL, NULL, NULL);
    if (take("ip", ip, NULL, (double)A.cfg->ip_rate, (uint32_t)A.cfg->ip_burst, &retry))
        return true;
    refuse_rate(out, retry, "client IP rate limit");
    audit(out, NULL, NULL, ip, endpoint);
    return false;
}

/* --- credentials ------------------------------------------------------------- */

static bool is_jwt(const char *s, size_t len)
{
    const char *dot1 = memchr(s, '.', len), *dot2;

    if (!dot1)
        return false;
    dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - s));
    return dot2 != NULL;
}

/* Steps 3 of auth.h for an API key; who receives its id when readable. */
static principal_t *check_key(const char *cred, size_t len, const char *ip, auth_outcome_t *out,
                              char who[PRINCIPAL_ID_MAX + 1])
{
    char id[APIKEY_ID_LEN + 1];
    principal_t *p = NULL;
    const char *reason = NULL;
    keys_auth_t r;

    if (apikey_parse(cred, len, id) == 0)
        snprintf(who, PRINCIPAL_ID_MAX + 1, "%s", id);
    r = keys_authenticate(A.keys, cred, len, ip, clock_now_ms(), &p, &reason);
    if (r != KEYS_AUTH_OK)
        refuse_invalid(out, metric_of_key(r), reason ? reason : keys_auth_name(r));
    return p;
}

/*
 * A token whose sub is a GitHub user id ("user_<n>", auth/users.h) acts
 * with the permissions of that user's readable repositories, read now,
 * not with the token's own claims. Only our own tokens may name a user:
 * an external issuer's "user_<n>" is refused while GitHub login is on.
 */
static principal_t *as_user(principal_t *p, const char *cred, size_t len, auth_outcome_t *out)
{
    principal_t *u;
    bool own;

    if (!users_enabled() || !users_is_user_id(p->id, p->id_len))
        return p;
    own = tokens_own(cred, len);
    u = own ? users_principal(p, clock_now_ms()) : NULL;
    if (!u)
        refuse_invalid(out, MA_INVALID_TOKEN, own ? "unknown GitHub user"
                                                  : "external token names a GitHub user id");
    principal_unref(p);
    return u;
}

/* A token minted by a key is held to the key's IP allowlist too. */
static principal_t *check_token(const char *cred, size_t len, const char *ip,
                                auth_outcome_t *out)
{
    principal_t *p = NULL;
    const char *reason = NULL;
    tokens_result_t r = tokens_verify(A.tokens, cred, len, clock_now_ms(), &p, &reason);

    if (r == TOKENS_ENOMEM) {
        outcome(out, 503, MA_INVALID_TOKEN, "unavailable", "out of memory", "out of memory");
    } else if (r != TOKENS_OK) {
        refuse_invalid(out, metric_of_token(r), reason ? reason : "invalid token");
    } else if (!keys_ip_allowed(A.keys, p->id, p->id_len, ip)) {
        refuse_invalid(out, MA_IP_NOT_ALLOWED, "token used outside its key's IP allowlist");
        principal_unref(p);
        p = NULL;
    }
    return p ? as_user(p, cred, len, out) : NULL;
}

principal_t *auth_check(const char *cred, size_t len, const char *ip, const char *endpoint,
                        auth_outcome_t *out)
{
    const config_t *c = A.cfg;
    char who[PRINCIPAL_ID_MAX + 1] = "";
    principal_t *p = NULL;
    uint64_t retry = 0;

    outcome(out, 0, MA_OK, NULL, NULL, "credential accepted");
    if (!take("ip", ip, NULL, (double)c->ip_rate, (uint32_t)c->ip_burst, &retry)) {
        refuse_rate(out, retry, "client IP rate limit");
        goto done;
    }
    {
        char k[RL_KEY_MAX + 1];
        size_t klen = rate_key(k, "fail", ip, NULL);
        if (!rl_peek(A.rl, k, klen, (double)c->fail_rate, (uint32_t)c->fail_burst,
                     clock_mono_ms(), &retry)) {
            refuse_rate(out, retry, "too many failed attempts from this address");
            goto done;
        }
    }
    if (!cred || len == 0) {
        outcome(out, 401, MA_MISSING, "unauthorized",
                "a credential is required: Authorization: Bearer <API key or token>",
                "no credential");
    } else if (len > AUTH_CRED_MAX) {
        refuse_invalid(out, MA_MALFORMED, "credential too long");
    } else if (len > APIKEY_PREFIX_LEN && memcmp(cred, APIKEY_PREFIX, APIKEY_PREFIX_LEN) == 0) {
        p = check_key(cred, len, ip, out, who);
    } else if (is_jwt(cred, len)) {
        p = check_token(cred, len, ip, out);
    } else {
        refuse_invalid(out, MA_MALFORMED, "neither an API key nor a JWT");
    }
    if (out->status == 401 && out->metric != MA_MISSING)
        take("fail", ip, NULL, (double)c->fail_rate, (uint32_t)c->fail_burst, &retry);
    if (p) {
        snprintf(who, sizeof who, "%s", p->id);
        if (!auth_rate(p, ip, out)) {
            principal_unref(p);
            p = NULL;
            audit(out, who, NULL, ip, endpoint);
            return NULL;
        }
        out->reason = "credential accepted";
        audit(out, who, p->tenant, ip, endpoint);
        return p;
    }
done:
    audit(out, who, NULL, ip, endpoint);
    return NULL;
}

/* --- HTTP --------------------------------------------------------------------- */

/* The credential of "Authorization: Bearer <cred>" (scheme case-insensitive). */
static const char *bearer(const http_req_t *r, size_t *len)
{
    size_t n;
    const char *v = http_header(r, "Authorization", &n);

    if (!v || n < 7 || strncasecmp(v, "Bearer ", 7) != 0)
        return NULL;
    v += 7;
    n -= 7;
    while (n && *v == ' ') {
        v++;
        n--;
    }
    *len = n;
    return v;
}

static void endpoint_of(const http_req_t *r, char out[AUTH_ENDPOINT_MAX])
{
    snprintf(out, AUTH_ENDPOINT_MAX, "%.*s %.*s", (int)r->head.method_len, r->head.method,
             (int)r->head.path_len, r->head.path);
}

principal_t *auth_request(http_req_t *r, unsigned flags)
{
    char ip[AUTH_IP_MAX], endpoint[AUTH_ENDPOINT_MAX];
    size_t len = 0;
    const char *cred = bearer(r, &len);
    auth_outcome_t o;
    principal_t *p;
    buf_t tok;

    auth_client_ip(r, ip);
    endpoint_of(r, endpoint);
    buf_init(&tok, AUTH_CRED_MAX);
    if (!cred && (flags & AUTH_QUERY_TOKEN) && http_query_get(r, "token", 0, &tok) == 1) {
        cred = tok.data;
        len = tok.len;
    }
    p = auth_check(cred, len, ip, endpoint, &o);
    if (tok.data)
        OPENSSL_cleanse(tok.data, tok.len);
    buf_free(&tok);
    if (!p)
        auth_respond(r, &o);
    return p;
}

void auth_respond(http_req_t *r, const auth_outcome_t *o)
{
    char retry[32];

    if (o->status == 401)
        http_add_header(r, "WWW-Authenticate", "Bearer realm=\"switchboard\"");
    if (o->status == 429) {
        snprintf(retry, sizeof retry, "%" PRIu64, (o->retry_after_ms + 999) / 1000);
        http_add_header(r, "Retry-After", retry);
    }
    http_error(r, o->status, o->code, "%s", o->message);
}

void auth_forbidden(http_req_t *r, const principal_t *p, const char *ip, const char *endpoint,
                    const char *what)
{
    auth_outcome_t o;
    char ep[AUTH_ENDPOINT_MAX], addr[AUTH_IP_MAX];

    if (r && !endpoint) {
        endpoint_of(r, ep);
        endpoint = ep;
    }
    if (r && !ip) {
        auth_client_ip(r, addr);
        ip = addr;
    }
    outcome(&o, 403, MA_FORBIDDEN, "forbidden", "not permitted", what);
    audit(&o, p->id, p->tenant, ip ? ip : "", endpoint ? endpoint : "");
    if (r)
        http_error(r, 403, "forbidden", "not permitted: %s", what);
}

/* every jti tokens.c can revoke fits in a principal's */
_Static_assert(PRINCIPAL_JTI_MAX >= TOKENS_JTI_MAX, "principal jti too short");

bool auth_still_valid(const principal_t *p, int64_t now_ms)
{
    keys_auth_t st;

    if (principal_expired(p, now_ms))
        return false;
    if (p->kind == PRINCIPAL_JWT && p->jti[0] &&
        tokens_revoked(A.tokens, p->jti, strlen(p->jti), now_ms))
        return false;                  /* POST /api/v1/tokens/revoke */
    if (p->kind == PRINCIPAL_JWT && users_enabled() && users_is_user_id(p->id, p->id_len))
        return users_still_valid(p, now_ms);  /* repositories still readable */
    st = keys_status(A.keys, p->id, p->id_len, now_ms);
    if (p->kind != PRINCIPAL_JWT)
        return st == KEYS_AUTH_OK;
    return st != KEYS_AUTH_REVOKED && st != KEYS_AUTH_EXPIRED;   /* minted by a key */
}

/* --- client address ----------------------------------------------------------- */

/*
 * Walks one X-Forwarded-For value from its right end. Returns 1 when the
 * walk is over (out holds the client), 0 to continue with the line before
 * (every entry was a trusted proxy; out holds the left-most of them).
 */
static int xff_walk(const char *v, size_t len, char out[AUTH_IP_MAX])
{
    const char *end = v + len;

    while (end > v) {
        const char *start = end, *s, *e;
        uint8_t addr[16];
        while (start > v && start[-1] != ',')
            start--;
        for (s = start; s < end && (*s == ' ' || *s == '\t'); s++) {}
        for (e = end; e > s && (e[-1] == ' ' || e[-1] == '\t'); e--) {}
        if (e == s || (size_t)(e - s) >= AUTH_IP_MAX || cidr_addr_parse(s, (size_t)(e - s), addr))
            return 1;          /* not an address: the hop to its right is the client */
        memcpy(out, s, (size_t)(e - s));
        out[e - s] = '\0';
        if (!cidr_list_match_addr(&A.proxies, addr))
            return 1;
        end = start > v ? start - 1 : v;
    }
    return 0;
}

/* The right-most X-Forwarded-For entry that is not a trusted proxy, when
 * the peer is one. Repeated header lines are one list (RFC 9110 5.3): a
 * proxy may add its own line after the client's. */
void auth_client_ip(const http_req_t *r, char out[AUTH_IP_MAX])
{
    const char *peer = r->conn ? r->conn->peer : "";
    const http_head_t *h = &r->head;

    snprintf(out, AUTH_IP_MAX, "%s", peer);
    if (A.proxies.n == 0 || !cidr_list_match(&A.proxies, peer, strlen(peer)))
        return;
    for (size_t i = h->num_headers; i-- > 0;) {
        const http_header_t *f = &h->headers[i];
        if (f->name_len == 15 && strncasecmp(f->name, "X-Forwarded-For", 15) == 0 &&
            xff_walk(f->value, f->value_len, out))
            return;
    }
}

bool auth_admin_ip_allowed(const char *ip)
{
    return A.admin_allow.n == 0 || cidr_list_match(&A.admin_allow, ip, strlen(ip));
}

/* --- connection caps ------------------------------------------------------------ */

int auth_lease_acquire(auth_lease_t *l, principal_t *p, const char *ip, const char *endpoint,
                       auth_outcome_t *out)
{
    char k[RL_KEY_MAX + 1];
    size_t klen;
    uint32_t key_max = p->perm.max_connections ? p->perm.max_connections
                                               : (uint32_t)A.cfg->key_max_connections;

    memset(l, 0, sizeof *l);
    outcome(out, 0, MA_OK, NULL, NULL, NULL);
    snprintf(l->ip, sizeof l->ip, "%s", ip);
    klen = rate_key(k, "cip", l->ip, NULL);     /* the key release will use */
    if (!rl_conn_acquire(A.rl, k, klen, (uint32_t)A.cfg->ip_max_connections)) {
        outcome(out, 429, MA_CONN_LIMITED, "too_many_connections",
                "too many open streams from this address", "client IP connection cap");
        goto refused;
    }
    l->ip_counted = A.cfg->ip_max_connections > 0;
    klen = rate_key(k, "ckey", p->tenant, p->id);
    if (!rl_conn_acquire(A.rl, k, klen, key_max)) {
        outcome(out, 429, MA_CONN_LIMITED, "too_many_connections",
                "too many open streams for this credential", "credential connection cap");
        auth_lease_release(l);
        goto refused;
    }
    l->key_counted = key_max > 0;
    l->p = principal_ref(p);
    return 0;
refused:
    out->retry_after_ms = 1000;
    audit(out, p->id, p->tenant, ip, endpoint);
    return -1;
}

void auth_lease_release(auth_lease_t *l)
{
    char k[RL_KEY_MAX + 1];

    if (l->ip_counted)
        rl_conn_release(A.rl, k, rate_key(k, "cip", l->ip, NULL));
    if (l->key_counted && l->p)
        rl_conn_release(A.rl, k, rate_key(k, "ckey", l->p->tenant, l->p->id));
    l->ip_counted = l->key_counted = false;
    principal_unref(l->p);
    l->p = NULL;
}

/* --- start-up ------------------------------------------------------------------- */

/*
 * Puts made from a thread that is not a loop (start-up, the usage writer)
 * and waited for there: their completions (target NULL) run on the
 * store's thread and only count down and wake the waiter.
 */
typedef struct put_batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t pending;
    int err;                       /* the first failure */
} put_batch_t;

#define PUT_BATCH_INIT {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER}

static void batch_done(void *arg, int err, uint64_t rev)
{
    put_batch_t *b = arg;

    pthread_mutex_lock(&b->mu);
    if (err && !b->err)
        b->err = err;
    if (--b->pending == 0)
        pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* Queues one put in b: 0, or the STORE_E* that kept it from being queued. */
static int batch_put(put_batch_t *b, const char *ns, const char *key, const void *v,
                     size_t len)
{
    int rc;

    pthread_mutex_lock(&b->mu);
    b->pending++;
    pthread_mutex_unlock(&b->mu);
    rc = store_meta_put(A.store, ns, key, v, len, 0, NULL, batch_done, b);
    if (rc) {
        pthread_mutex_lock(&b->mu);
        b->pending--;
        pthread_mutex_unlock(&b->mu);
    }
    return rc;
}

/* Waits until every put of b is done; returns (and clears) the first
 * failure, 0 when all were stored. */
static int batch_wait(put_batch_t *b)
{
    int err;

    pthread_mutex_lock(&b->mu);
    while (b->pending)
        pthread_cond_wait(&b->cv, &b->mu);
    err = b->err;
    b->err = 0;
    pthread_mutex_unlock(&b->mu);
    return err;
}

/* A durable put before the loops run (see the note at the top). */
static int meta_put_sync(const char *ns, const char *key, const void *v, size_t len)
{
    put_batch_t b = PUT_BATCH_INIT;
    int rc = batch_put(&b, ns, key, v, len);

    return rc ? rc : batch_wait(&b);
}

static int persist_key_sync(const json_t *record)
{
    const char *id = json_string_value(json_object_get(record, "id"));
    char *text = json_dumps(record, JSON_COMPACT);
    int rc = id && text ? meta_put_sync(AUTH_NS_KEYS, id, text, strlen(text)) : STORE_ENOMEM;

    free(text);
    return rc;
}

static int load_key(void *ctx, const char *key, const unsigned char *value, size_t len,
                    uint64_t rev)
{
    char *err = ctx;
    json_error_t jerr;
    json_t *rec = json_loadb((const char *)value, len, 0, &jerr);
    int rc = rec ? keys_load(A.keys, rec, err, KEYS_ERR_LEN) : KEYS_EINVAL;

    if (!rec)
        errmsg(err, KEYS_ERR_LEN, "not JSON");
    json_decref(rec);
    if (rc)
        LOG_ERROR("stored API key not loaded", "\"id\":\"%s\",\"error\":\"%s\"",
                  log_str(key, (size_t)-1), log_str(err, (size_t)-1));
    return 0;      /* one bad record must not lock everyone out */
}

static int load_revoked(void *ctx, const char *key, const unsigned char *value, size_t len,
                        uint64_t rev)
{
    json_error_t jerr;
    json_t *rec = json_loadb((const char *)value, len, 0, &jerr);
    int64_t exp_ms = json_integer_value(json_object_get(rec, "exp_ms"));

    if (exp_ms > clock_now_ms())
        tokens_revoke(A.tokens, key, strlen(key), exp_ms);
    json_decref(rec);
    return 0;
}

static int write_key_file(const char *path, const char *key)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    size_t len = strlen(key);
    int rc = -1;

    if (fd < 0)
        return -1;
    if (fchmod(fd, 0600) == 0 && write(fd, key, len) == (ssize_t)len &&
        write(fd, "\n", 1) == 1 && fsync(fd) == 0)
        rc = 0;
    close(fd);
    return rc;
}

/* The first-start key: created, persisted, then shown once. */
static int bootstrap(char *err, size_t errlen)
{
    const config_t *c = A.cfg;
    char key[APIKEY_LEN + 1], kerr[KEYS_ERR_LEN], path[4096];
    json_t *rec = NULL;
    int rc = -1;

    if (keys_bootstrap(A.keys, c->bootstrap_tenant, strlen(c->bootstrap_tenant), clock_now_ms(),
                       key, &rec, kerr, sizeof kerr)) {
        errmsg(err, errlen, "cannot create the admin key: %s", kerr);
        goto out;
    }
    if (*c->admin_key_file)
        snprintf(path, sizeof path, "%s", c->admin_key_file);
    else
        snprintf(path, sizeof path, "%s/admin.key", c->data_dir);
    /* The file first: a key in the store that nobody has seen would lock
     * the operator out, since no second bootstrap ever runs. */
    if (write_key_file(path, key)) {
        errmsg(err, errlen, "cannot write the admin key to %s: %s", path, strerror(errno));
        goto out;
    }
    if (persist_key_sync(rec)) {
        errmsg(err, errlen, "cannot store the admin key");
        goto out;
    }
    printf("Switchboard created its admin key. It is shown once, here, and kept in %s (mode "
           "0600):\n\n    %s\n\n", path, key);
    fflush(stdout);
    LOG_WARN("admin key created", "\"id\":\"%s\",\"tenant\":\"%s\",\"file\":\"%s\"",
             json_string_value(json_object_get(rec, "id")),
             log_str(c->bootstrap_tenant, (size_t)-1), log_str(path, (size_t)-1));
    rc = 0;
out:
    OPENSSL_cleanse(key, sizeof key);
    json_decref(rec);
    return rc;
}

typedef struct secret_load {
    char text[256];
    bool found;
} secret_load_t;

static int load_secret(void *ctx, const char *key, const unsigned char *value, size_t len,
                       uint64_t rev)
{
    secret_load_t *s = ctx;

    if (strcmp(key, AUTH_SECRET_KEY) == 0 && len < sizeof s->text) {
        memcpy(s->text, value, len);
        s->text[len] = '\0';
        s->found = true;
    }
    return 0;
}

/* The token secret: configured, else kept in the store (generated once). */
static int token_secret(secret_load_t *s, char *err, size_t errlen)
{
    unsigned char raw[AUTH_SECRET_BYTES];

    if (*A.cfg->jwt_secret) {
        if (strlen(A.cfg->jwt_secret) < 32 || strlen(A.cfg->jwt_secret) >= sizeof s->text) {
            errmsg(err, errlen, "auth.jwt_secret must be 32 to 255 bytes");
            return -1;
        }
        snprintf(s->text, sizeof s->text, "%s", A.cfg->jwt_secret);
        return 0;
    }
    if (store_meta_load_sync(A.store, AUTH_NS_AUTH, load_secret, s) == 0 && s->found)
        return 0;
    if (RAND_bytes(raw, sizeof raw) != 1) {
        errmsg(err, errlen, "no randomness for the token secret");
        return -1;
    }
    base64_encode(raw, sizeof raw, s->text, B64_URL);
    s->text[base64_encoded_len(sizeof raw, B64_URL)] = '\0';
    OPENSSL_cleanse(raw, sizeof raw);
    if (meta_put_sync(AUTH_NS_AUTH, AUTH_SECRET_KEY, s->text, strlen(s->text))) {
        errmsg(err, errlen, "cannot store the token secret");
        return -1;
    }
    return 0;
}

/* The minter of an own token may still act: a live API key, or a GitHub
 * user that exists (auth/users.h). */
static bool key_alive(void *ctx, const char *id, size_t len, int64_t now_ms)
{
    keys_auth_t st = keys_status(A.keys, id, len, now_ms);
    return st == KEYS_AUTH_OK || (users_enabled() && users_alive(id, len));
}

static const char *opt_str(const char *s) { return s && *s ? s : NULL; }

static int init_tokens(char *err, size_t errlen)
{
    const config_t *c = A.cfg;
    secret_load_t s = {.found = false};
    char terr[256] = "";
    tokens_cfg_t tc;
    int rc = -1;

    if (token_secret(&s, err, errlen))
        goto out;
    memset(&tc, 0, sizeof tc);
    tc.secret = s.text;
    tc.secret_len = strlen(s.text);
    tc.leeway_ms = c->jwt_leeway_ms;
    tc.key_alive = key_alive;
    tc.issuer_secret = opt_str(c->jwt_issuer_secret);
    tc.public_key_file = opt_str(c->jwt_public_key_file);
    tc.jwks_file = opt_str(c->jwks_file);
    tc.jwks_url = opt_str(c->jwks_url);
    tc.jwks_refresh_ms = c->jwks_refresh_ms;
    tc.issuer = opt_str(c->jwt_issuer);
    tc.audience = opt_str(c->jwt_audience);
    tc.default_tenant = c->jwt_tenant;
    A.tokens = tokens_new(&tc, terr, sizeof terr);
    if (!A.tokens) {
        errmsg(err, errlen, "tokens: %s", terr);
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(&s, sizeof s);
    return rc;
}

static int parse_cidrs(const char *what, const char *text, cidr_list_t *out, char *err,
                       size_t errlen)
{
    char cerr[160];

    memset(out, 0, sizeof *out);
    if (!*text)
        return 0;
    if (cidr_list_parse(text, strlen(text), out, cerr, sizeof cerr)) {
        errmsg(err, errlen, "%s: %s", what, cerr);
        return -1;
    }
    return 0;
}

/* --- usage logs ------------------------------------------------------------------ */

static int load_usage(void *ctx, const char *key, const unsigned char *value, size_t len,
                      uint64_t rev)
{
    char err[KEYS_ERR_LEN] = "not JSON";
    json_error_t jerr;
    json_t *entries = json_loadb((const char *)value, len, 0, &jerr);
    int rc = entries ? keys_usage_load(A.keys, key, strlen(key), entries, err, sizeof err)
                     : KEYS_EINVAL;

    json_decref(entries);
    if (rc)
        LOG_WARN("stored usage log not loaded", "\"id\":\"%s\",\"error\":\"%s\"",
                 log_str(key, (size_t)-1), log_str(err, (size_t)-1));
    return 0;      /* history: never a reason not to start */
}

/* The first failure is logged; the rest would only repeat it. */
static void usage_error(int err)
{
    static atomic_bool logged;

    if (!atomic_exchange(&logged, true))
        LOG_ERROR("cannot store API key usage logs (further failures not logged)",
                  "\"error\":%d", err);
}

/* Puts one key's log; b counts it until its completion. */
static void usage_put(put_batch_t *b, const char *id, const json_t *entries)
{
    char *text = json_dumps(entries, JSON_COMPACT);
    int rc = text ? batch_put(b, AUTH_NS_USAGE, id, text, strlen(text)) : STORE_ENOMEM;

    free(text);
    if (rc)
        usage_error(rc);
}

/*
 * Stores every usage log changed since the last call, AUTH_USAGE_BATCH at
 * a time, each batch waited for. Blocks: the writer thread or, at
 * shutdown, the main thread only. A log that could not be stored is
 * stored again after the key's next use.
 */
static void usage_flush(void)
{
    put_batch_t b = PUT_BATCH_INIT;
    bool more = true;
    int err;
    json_t *logs, *entries;
    const char *id;

    while (more && (logs = keys_usage_dirty(A.keys, AUTH_USAGE_BATCH)) != NULL) {
        more = json_object_size(logs) == AUTH_USAGE_BATCH;
        json_object_foreach(logs, id, entries) {
            usage_put(&b, id, entries);
        }
        json_decref(logs);
        if ((err = batch_wait(&b)) != 0)
            usage_error(err);
    }
}

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* monotonic clock; signalled to stop */
    pthread_t thread;
    bool running;                  /* main thread only */
    bool stop;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *usage_writer(void *arg)
{
    struct timespec at;

    pthread_mutex_lock(&W.mu);
    while (!W.stop) {
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_sec += AUTH_USAGE_FLUSH_MS / 1000;
        at.tv_nsec += (AUTH_USAGE_FLUSH_MS % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L) {
            at.tv_sec++;
            at.tv_nsec -= 1000000000L;
        }
        while (!W.stop && pthread_cond_timedwait(&W.cv, &W.mu, &at) != ETIMEDOUT) {}
        if (W.stop)
            break;
        pthread_mutex_unlock(&W.mu);
        usage_flush();
        pthread_mutex_lock(&W.mu);
    }
    pthread_mutex_unlock(&W.mu);
    return NULL;
}

static int usage_writer_start(void)
{
    pthread_condattr_t ca;
    int rc;

    if (pthread_condattr_init(&ca))
        return -1;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) || pthread_cond_init(&W.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc)
        return -1;
    W.stop = false;
    if (pthread_create(&W.thread, NULL, usage_writer, NULL)) {
        pthread_cond_destroy(&W.cv);
        return -1;
    }
    W.running = true;
    return 0;
}

static void usage_writer_stop(void)
{
    if (!W.running)
        return;
    pthread_mutex_lock(&W.mu);
    W.stop = true;
    pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
    pthread_join(W.thread, NULL);
    pthread_cond_destroy(&W.cv);
    W.running = false;
}

void auth_flush(void)
{
    usage_writer_stop();
    if (A.keys && A.store)
        usage_flush();
}

int auth_init(const config_t *cfg, store_t *store, char *err, size_t errlen)
{
    char kerr[KEYS_ERR_LEN];

    memset(&A, 0, sizeof A);
    A.cfg = cfg;
    A.store = store;
    if (!principal_valid_tenant(cfg->bootstrap_tenant, strlen(cfg->bootstrap_tenant)) ||
        !principal_valid_tenant(cfg->jwt_tenant, strlen(cfg->jwt_tenant))) {
        errmsg(err, errlen, "auth.bootstrap_tenant and auth.jwt_tenant must be 1 to 64 of "
               "A-Z a-z 0-9 _ -");
        return -1;
    }
    if (parse_cidrs("auth.trusted_proxies", cfg->trusted_proxies, &A.proxies, err, errlen) ||
        parse_cidrs("auth.admin_allow", cfg->admin_allow, &A.admin_allow, err, errlen))
        goto fail;
    if (RAND_bytes((unsigned char *)&A.sip0, sizeof A.sip0) != 1 ||
        RAND_bytes((unsigned char *)&A.sip1, sizeof A.sip1) != 1 ||
        !(A.keys = keys_new()) || !(A.rl = rl_new((size_t)cfg->rate_table_keys))) {
        errmsg(err, errlen, "out of memory");
        goto fail;
    }
    if (store_meta_load_sync(store, AUTH_NS_KEYS, load_key, kerr)) {
        errmsg(err, errlen, "cannot read the API keys from the store");
        goto fail;
    }
    if (store_meta_load_sync(store, AUTH_NS_USAGE, load_usage, NULL)) {
        errmsg(err, errlen, "cannot read the API key usage logs from the store");
        goto fail;
    }
    if (init_tokens(err, errlen))
        goto fail;
    if (store_meta_load_sync(store, AUTH_NS_REVOKED, load_revoked, NULL)) {
        errmsg(err, errlen, "cannot read the revoked tokens from the store");
        goto fail;
    }
    if (keys_count(A.keys) == 0 && bootstrap(err, errlen))
        goto fail;
    if (usage_writer_start()) {
        errmsg(err, errlen, "cannot start the usage log writer");
        goto fail;
    }
    LOG_INFO("access control ready", "\"keys\":%zu,\"trusted_proxies\":%zu,"
             "\"admin_allow\":%zu", keys_count(A.keys), A.proxies.n, A.admin_allow.n);
    return 0;
fail:
    auth_shutdown();
    return -1;
}

void auth_shutdown(void)
{
    usage_writer_stop();
    tokens_free(A.tokens);
    keys_free(A.keys);
    rl_free(A.rl);
    cidr_list_free(&A.proxies);
    cidr_list_free(&A.admin_allow);
    memset(&A, 0, sizeof A);
}
