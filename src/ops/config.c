/*
 * config.c - the option table and the loaders that read it. See config.h.
 *
 * A row names an option once: its JSON path ("limits.max_body"), its
 * environment variable, its long flag (see flag_name),
 * its type and bounds, its default and a one-line description used by
 * --help and by the README's table. Loading is: set defaults, apply the
 * file, apply env, apply flags; each value is validated by the same
 * function whatever its source.
 *
 * Webhook sources (the file's "sources" object, plus the
 * GITHUB_WEBHOOK_SECRET / KAKAO_SIGNATURE_SECRET shortcuts) are validated
 * whole at load, by building and dropping their verifiers (auth/sig.h), so
 * a bad secret or option stops start-up with one line that names the
 * source and the problem, never the secret. Secrets are wiped when freed.
 */
#include "ops/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "auth/principal.h"
#include "auth/seal.h"
#include "auth/sig.h"
#include "core/errmsg.h"
#include "core/subject.h"
#include "ops/log.h"

enum opt_type { OPT_INT, OPT_STR };

typedef struct opt {
    const char *path;       /* JSON path, dotted */
    const char *env;
    enum opt_type type;
    size_t off;
    int64_t min, max;
    int64_t idef;
    const char *sdef;
    const char *help;
} opt_t;

#define I(path, env, field, min, max, def, help) \
    {path, env, OPT_INT, offsetof(config_t, field), min, max, def, NULL, help}
#define S(path, env, field, def, help) \
    {path, env, OPT_STR, offsetof(config_t, field), 0, 0, 0, def, help}

#define KiB 1024LL
#define MiB (1024LL * 1024)
#define SEC 1000LL
#define DAY (86400LL * 1000)

static const opt_t opts[] = {
    S("host", "HOST", host, "127.0.0.1", "address to listen on"),
    I("port", "PORT", port, 0, 65535, 8080, "TCP port (0 picks a free one)"),
    I("loops", "SWITCHBOARD_LOOPS", loops, 0, 64, 0, "event loop threads (0 = one per CPU)"),
    S("data_dir", "SWITCHBOARD_DATA_DIR", data_dir, "./var", "directory for the embedded store"),
    S("log_level", "LOG_LEVEL", log_level, "info", "debug, info, warn or error"),
    I("max_connections", "SWITCHBOARD_MAX_CONNECTIONS", max_connections, 1, 1000000, 16000,
      "open client connections per process"),
    I("limits.max_uri", "SWITCHBOARD_MAX_URI", max_uri, 64, 1 * MiB, 8 * KiB,
      "request-target bytes (414 above)"),
    I("limits.max_header_bytes", "SWITCHBOARD_MAX_HEADER_BYTES", max_header_bytes, 256, 1 * MiB,
      16 * KiB, "request head bytes (431 above)"),
    I("limits.max_headers", "SWITCHBOARD_MAX_HEADERS", max_headers, 1, 128, 100,
      "header fields per request (431 above)"),
    I("limits.max_body", "SWITCHBOARD_MAX_BODY", max_body, 0, 1024 * MiB, 4 * MiB,
      "request body bytes (413 above)"),
    I("limits.header_timeout_ms", "SWITCHBOARD_HEADER_TIMEOUT_MS", header_timeout_ms, 100,
      3600 * SEC, 10 * SEC, "time to receive a request head (408 after)"),
    I("limits.body_timeout_ms", "SWITCHBOARD_BODY_TIMEOUT_MS", body_timeout_ms, 100, 3600 * SEC,
      30 * SEC, "time to receive a request body (408 after)"),
    I("limits.idle_timeout_ms", "SWITCHBOARD_IDLE_TIMEOUT_MS", idle_timeout_ms, 100, 3600 * SEC,
      60 * SEC, "keep-alive connection idle time before it is closed"),
    I("delivery.outbound_queue", "SWITCHBOARD_OUTBOUND_QUEUE", outbound_queue, 4 * KiB,
      1024 * MiB, 1 * MiB, "bytes queued per connection (soft limit; see the grace period)"),
    I("delivery.outbound_queue_hard", "SWITCHBOARD_OUTBOUND_QUEUE_HARD", outbound_queue_hard, 0,
      4096 * MiB, 0, "bytes queued per connection that drop a slow consumer at once (0 = 8 x soft)"),
    I("delivery.slow_consumer_grace_ms", "SWITCHBOARD_SLOW_CONSUMER_GRACE_MS",
      slow_consumer_grace_ms, 0, 3600 * SEC, 5 * SEC,
      "how long a queue may stay above the soft limit before the consumer is dropped"),
    I("delivery.max_ws_message", "SWITCHBOARD_MAX_WS_MESSAGE", max_ws_message, 125, 64 * MiB,
      1 * MiB, "bytes per incoming WebSocket message (close 1009 above)"),
    I("delivery.heartbeat_ms", "SWITCHBOARD_HEARTBEAT_MS", heartbeat_ms, 1000, 3600 * SEC,
      30 * SEC, "SSE heartbeat comment / WebSocket ping interval"),
    I("delivery.max_subscriptions", "SWITCHBOARD_MAX_SUBSCRIPTIONS", max_subscriptions, 1, 10000,
      100, "subscriptions per connection"),
    I("delivery.replay_batch", "SWITCHBOARD_REPLAY_BATCH", replay_batch, 1, 10000, 500,
      "messages per store read while a subscriber catches up"),
    I("shutdown_timeout_ms", "SWITCHBOARD_SHUTDOWN_TIMEOUT_MS", shutdown_timeout_ms, 0,
      600 * SEC, 10 * SEC, "grace period for in-flight work on SIGTERM"),
    S("store.backend", "SWITCHBOARD_STORE", store_backend, "sqlite", "storage backend"),
    S("store.fsync", "SWITCHBOARD_FSYNC", fsync, "full",
      "full (fsync every commit) or normal (survives kill -9, not power loss)"),
    I("store.retention_interval_ms", "SWITCHBOARD_RETENTION_INTERVAL_MS", retention_interval_ms,
      100, DAY, 300 * SEC, "how often expired messages are removed"),
    I("store.max_batch", "SWITCHBOARD_MAX_BATCH", max_batch, 1, 100000, 512,
      "most messages per group commit"),
    I("store.readers", "SWITCHBOARD_STORE_READERS", store_readers, 1, 32, 2,
      "store reader threads"),
    I("retention.max_age_ms", "SWITCHBOARD_RETENTION_MAX_AGE_MS", default_max_age_ms, 0,
      INT64_MAX, 7 * DAY, "default max message age per stream (0 = unlimited)"),
    I("retention.max_msgs", "SWITCHBOARD_RETENTION_MAX_MSGS", default_max_msgs, 0, INT64_MAX, 0,
      "default max messages per stream (0 = unlimited)"),
    I("retention.max_bytes", "SWITCHBOARD_RETENTION_MAX_BYTES", default_max_bytes, 0, INT64_MAX,
      0, "default max bytes per stream (0 = unlimited)"),
    I("webhook.max_depth", "SWITCHBOARD_WEBHOOK_MAX_DEPTH", webhook_max_depth, 1,
      SUBJ_MAX_TOKENS - 2, 8, "path segments after /webhook/{source}/"),
    /* pull API (docs/PULL.md) */
    I("pull.ack_wait_ms", "SWITCHBOARD_PULL_ACK_WAIT_MS", pull_ack_wait_ms, 100, DAY, 30 * SEC,
      "a pulled message not acked within this is delivered again"),
    I("pull.max_deliver", "SWITCHBOARD_PULL_MAX_DELIVER", pull_max_deliver, 1, 1000, 5,
      "deliveries of a pulled message before it is parked"),
    I("pull.max_limit", "SWITCHBOARD_PULL_MAX_LIMIT", pull_max_limit, 1, 1000, 100,
      "most messages one pull may ask for (limit=)"),
    I("pull.max_ack_pending", "SWITCHBOARD_PULL_MAX_ACK_PENDING", pull_max_ack_pending, 1,
      10000, 1000, "unacked messages per consumer before pulls return no new ones"),
    /* access control (docs/AUTH.md) */
    S("auth.bootstrap_tenant", "SWITCHBOARD_BOOTSTRAP_TENANT", bootstrap_tenant, "default",
      "tenant of the admin key created on first start"),
    S("auth.admin_key_file", "SWITCHBOARD_ADMIN_KEY_FILE", admin_key_file, "",
      "where the first-start admin key is written, 0600 (empty = {data_dir}/admin.key)"),
    S("auth.admin_allow", "SWITCHBOARD_ADMIN_ALLOW", admin_allow, "",
      "CIDRs allowed to use the admin API, comma-separated (empty = any)"),
    S("auth.trusted_proxies", "SWITCHBOARD_TRUSTED_PROXIES", trusted_proxies, "",
      "CIDRs of proxies whose X-Forwarded-For is believed, comma-separated"),
    I("auth.ip_rate", "SWITCHBOARD_IP_RATE", ip_rate, 0, 1000000, 0,
      "requests per second per client IP (0 = no limit)"),
    I("auth.ip_burst", "SWITCHBOARD_IP_BURST", ip_burst, 1, 1000000, 100,
      "burst of the per-IP limit"),
    I("auth.key_rate", "SWITCHBOARD_KEY_RATE", key_rate, 0, 1000000, 0,
      "requests per second per credential without a rate of its own (0 = no limit)"),
    I("auth.key_burst", "SWITCHBOARD_KEY_BURST", key_burst, 1, 1000000, 100,
      "burst of the per-credential limit"),
    I("auth.fail_rate", "SWITCHBOARD_AUTH_FAIL_RATE", fail_rate, 0, 1000000, 5,
      "failed authentications per second per client IP before 429 (0 = no limit)"),
    I("auth.fail_burst", "SWITCHBOARD_AUTH_FAIL_BURST", fail_burst, 1, 1000000, 50,
      "burst of the failed-authentication limit"),
    I("auth.ip_max_connections", "SWITCHBOARD_IP_MAX_CONNECTIONS", ip_max_connections, 0,
      1000000, 0, "concurrent streams (SSE, WebSocket) per client IP (0 = no cap)"),
    I("auth.key_max_connections", "SWITCHBOARD_KEY_MAX_CONNECTIONS", key_max_connections, 0,
      1000000, 0, "concurrent streams per credential without a cap of its own (0 = no cap)"),
    I("auth.rate_table_keys", "SWITCHBOARD_RATE_TABLE_KEYS", rate_table_keys, 1024, 1 << 22,
      65536, "clients and credentials tracked by the rate limiter"),
    I("auth.rotate_grace_ms", "SWITCHBOARD_ROTATE_GRACE_MS", rotate_grace_ms, 0, 30 * DAY,
      DAY, "how long a rotated key's old secret keeps working, unless the request says"),
    I("auth.ws_auth_timeout_ms", "SWITCHBOARD_WS_AUTH_TIMEOUT_MS", ws_auth_timeout_ms, 100,
      600 * SEC, 10 * SEC, "time for a WebSocket without a credential to send its auth message"),
    S("auth.jwt_secret", "JWT_SECRET", jwt_secret, "",
      "HS256 secret of the tokens /auth/token issues, >= 32 bytes (empty = generated, kept in the store)"),
    I("auth.token_ttl_ms", "SWITCHBOARD_TOKEN_TTL_MS", token_ttl_ms, 10 * SEC, DAY, 3600 * SEC,
      "lifetime of the tokens /auth/token issues"),
    I("auth.jwt_leeway_ms", "SWITCHBOARD_JWT_LEEWAY_MS", jwt_leeway_ms, 0, 300 * SEC, 30 * SEC,
      "clock skew allowed on exp and nbf"),
    S("auth.jwt_issuer_secret", "SWITCHBOARD_JWT_ISSUER_SECRET", jwt_issuer_secret, "",
      "external issuer: HS256 secret, >= 32 bytes"),
    S("auth.jwt_public_key_file", "SWITCHBOARD_JWT_PUBLIC_KEY_FILE", jwt_public_key_file, "",
      "external issuer: PEM public key (RSA: RS256, P-256: ES256)"),
    S("auth.jwks_file", "SWITCHBOARD_JWKS_FILE", jwks_file, "",
      "external issuer: JWKS document on disk"),
    S("auth.jwks_url", "SWITCHBOARD_JWKS_URL", jwks_url, "",
      "external issuer: JWKS URL, fetched at start and refreshed"),
    I("auth.jwks_refresh_ms", "SWITCHBOARD_JWKS_REFRESH_MS", jwks_refresh_ms, 1 * SEC, DAY,
      300 * SEC, "how often the JWKS (file or URL) is reloaded"),
    S("auth.jwt_issuer", "SWITCHBOARD_JWT_ISSUER", jwt_issuer, "",
      "external issuer: required \"iss\" (empty = not checked)"),
    S("auth.jwt_audience", "SWITCHBOARD_JWT_AUDIENCE", jwt_audience, "",
      "external issuer: required \"aud\" (empty = not checked)"),
    S("auth.jwt_tenant", "SWITCHBOARD_JWT_TENANT", jwt_tenant, "default",
      "tenant of external tokens that name none"),
    /* GitHub login (docs/GITHUB.md) */
    S("github.client_id", "GITHUB_CLIENT_ID", github_client_id, "",
      "GitHub OAuth app client id (empty = GitHub login off)"),
    S("github.client_secret", "GITHUB_CLIENT_SECRET", github_client_secret, "",
      "GitHub OAuth app client secret"),
    S("github.oauth_url", "SWITCHBOARD_GITHUB_OAUTH_URL", github_oauth_url, "https://github.com",
      "base URL of GitHub's OAuth pages (authorize, access_token)"),
    S("github.api_url", "SWITCHBOARD_GITHUB_API_URL", github_api_url, "https://api.github.com",
      "base URL of GitHub's REST API"),
    S("github.redirect_url", "SWITCHBOARD_GITHUB_REDIRECT_URL", github_redirect_url, "",
      "OAuth callback URL (empty = http://{Host}/api/v1/auth/github/callback)"),
    S("github.token_key", "SWITCHBOARD_TOKEN_KEY", github_token_key, "",
      "key sealing stored GitHub tokens (AES-256-GCM): 64 hex digits or base64 of 32 bytes"),
    I("github.repos_ttl_ms", "SWITCHBOARD_GITHUB_REPOS_TTL_MS", github_repos_ttl_ms, 1 * SEC, DAY,
      600 * SEC, "how long a user's repository list grants access before it is read again"),
    S("github.tenant", "SWITCHBOARD_GITHUB_TENANT", github_tenant, "default",
      "tenant of GitHub users"),
    S("github.scope", "SWITCHBOARD_GITHUB_SCOPE", github_scope, "read:user user:email repo",
      "OAuth scopes asked for"),
};
#define NOPTS (sizeof opts / sizeof opts[0])

/* Parses a whole decimal integer with an optional k/m/g (x1024) suffix or,
 * for *_ms options, s/m/h/d suffixes. */
static int parse_int(const opt_t *o, const char *s, int64_t *out)
{
    char *end;
    long long v;
    int64_t mul = 1;
    bool ms = strstr(o->path, "_ms") != NULL;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (end == s || errno)
        return -1;
    if (*end) {
        if (ms && strcmp(end, "ms") == 0) mul = 1;
        else if (ms && strcmp(end, "s") == 0) mul = SEC;
        else if (ms && strcmp(end, "m") == 0) mul = 60 * SEC;
        else if (ms && strcmp(end, "h") == 0) mul = 3600 * SEC;
        else if (ms && strcmp(end, "d") == 0) mul = DAY;
        else if (!ms && (strcasecmp(end, "k") == 0 || strcasecmp(end, "kib") == 0)) mul = KiB;
        else if (!ms && (strcasecmp(end, "m") == 0 || strcasecmp(end, "mib") == 0)) mul = MiB;
        else if (!ms && (strcasecmp(end, "g") == 0 || strcasecmp(end, "gib") == 0)) mul = 1024 * MiB;
        else return -1;
    }
    if (v < 0 ? v < INT64_MIN / mul : v > INT64_MAX / mul)
        return -1;
    *out = (int64_t)v * mul;
    return 0;
}

static int set_int(config_t *c, const opt_t *o, int64_t v, const char *src,
                   char *err, size_t errlen)
{
    if (v < o->min || v > o->max) {
        errmsg(err, errlen, "%s: %s must be between %" PRId64 " and %" PRId64,
             src, o->path, o->min, o->max);
        return -1;
    }
    *(int64_t *)(void *)((char *)c + o->off) = v;
    return 0;
}

static int set_str(config_t *c, const opt_t *o, const char *v, const char *src,
                   char *err, size_t errlen)
{
    char **slot = (char **)(void *)((char *)c + o->off);
    char *dup = strdup(v);

    if (!dup) {
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    free(*slot);
    *slot = dup;
    return 0;
}

static int set_text(config_t *c, const opt_t *o, const char *v, const char *src,
                    char *err, size_t errlen)
{
    int64_t n;

    if (o->type == OPT_STR)
        return set_str(c, o, v, src, err, errlen);
    if (parse_int(o, v, &n)) {
        errmsg(err, errlen, "%s: %s: not a number: \"%s\"", src, o->path, v);
        return -1;
    }
    return set_int(c, o, n, src, err, errlen);
}

static json_t *json_path(json_t *root, const char *path)
{
    char part[64];
    const char *p = path;

    while (root && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        root = json_is_object(root) ? json_object_get(root, part) : NULL;
        p += n + (dot ? 1 : 0);
    }
    return root;
}

static int apply_json_opt(config_t *c, const opt_t *o, json_t *v, const char *file,
                          char *err, size_t errlen)
{
    if (json_is_integer(v))
        return o->type == OPT_INT
                   ? set_int(c, o, json_integer_value(v), file, err, errlen)
                   : (errmsg(err, errlen, "%s: %s must be a string", file, o->path), -1);
    if (json_is_string(v))
        return set_text(c, o, json_string_value(v), file, err, errlen);
    errmsg(err, errlen, "%s: %s must be a %s", file, o->path,
         o->type == OPT_INT ? "number" : "string");
    return -1;
}

static void streams_free(config_t *c)
{
    for (size_t i = 0; i < c->nstreams; i++) {
        free(c->streams[i].name);
        for (size_t j = 0; j < c->streams[i].nsubjects; j++)
            free(c->streams[i].subjects[j]);
        free(c->streams[i].subjects);
    }
    free(c->streams);
    c->streams = NULL;
    c->nstreams = 0;
}

static int64_t json_int_or(json_t *o, const char *key, int64_t def)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

static int stream_add(config_t *c, const char *name, json_t *subjects,
                      json_t *limits, char *err, size_t errlen)
{
    store_stream_cfg_t *s, *grown;
    size_t i;
    json_t *v;

    grown = realloc(c->streams, (c->nstreams + 1) * sizeof *grown);
    if (!grown)
        goto nomem;
    c->streams = grown;
    s = &c->streams[c->nstreams++];
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    s->subjects = calloc(json_array_size(subjects) + 1, sizeof(char *));
    if (!s->name || !s->subjects)
        goto nomem;
    json_array_foreach(subjects, i, v) {
        const char *p = json_string_value(v);
        if (!p || !subj_valid_pattern(p, strlen(p))) {
            errmsg(err, errlen, "stream %s: invalid subject pattern", name);
            return -1;
        }
        if (!(s->subjects[s->nsubjects++] = strdup(p)))
            goto nomem;
    }
    if (s->nsubjects == 0) {
        errmsg(err, errlen, "stream %s: needs at least one subject", name);
        return -1;
    }
    s->max_age_ms = json_int_or(limits, "max_age_ms", c->default_max_age_ms);
    s->max_msgs = json_int_or(limits, "max_msgs", c->default_max_msgs);
    s->max_bytes = json_int_or(limits, "max_bytes", c->default_max_bytes);
    if (s->max_age_ms < 0 || s->max_msgs < 0 || s->max_bytes < 0) {
        errmsg(err, errlen, "stream %s: limits must be >= 0", name);
        return -1;
    }
    return 0;
nomem:
    errmsg(err, errlen, "out of memory");
    return -1;
}

static int load_streams(config_t *c, json_t *arr, const char *file, char *err,
                        size_t errlen)
{
    size_t i;
    json_t *st;

    if (!json_is_array(arr)) {
        errmsg(err, errlen, "%s: streams must be an array", file);
        return -1;
    }
    json_array_foreach(arr, i, st) {
        const char *name = json_string_value(json_object_get(st, "name"));
        json_t *subjects = json_object_get(st, "subjects");
        if (!name || !*name || !json_is_array(subjects)) {
            errmsg(err, errlen, "%s: streams[%zu] needs \"name\" and \"subjects\"", file, i);
            return -1;
        }
        if (stream_add(c, name, subjects, st, err, errlen))
            return -1;
    }
    return 0;
}

/* ---- webhook sources ---------------------------------------------------- */

#define SOURCES_MAX 256
#define SOURCE_TENANT_DEFAULT "default"

static const char *const source_members[] = {
    "verify", "secret", "secret_env", "header", "algorithm", "encoding", "prefix",
    "tolerance_s", "tenant", NULL,
};

/* Environment shortcuts: a variable that, when set and non-empty, makes a
 * source of that name and kind unless the file configures one already. */
static const struct {
    const char *env, *name, *verify;
} source_shortcuts[] = {
    {"GITHUB_WEBHOOK_SECRET", "github", "github"},
    {"KAKAO_SIGNATURE_SECRET", "kakao", "kakao"},
};

static void source_free(config_source_t *s)
{
    if (s->secret) {
        OPENSSL_cleanse(s->secret, strlen(s->secret));
        free(s->secret);
    }
    free(s->name);
    free(s->verify);
    free(s->header);
    free(s->algorithm);
    free(s->encoding);
    free(s->prefix);
    free(s->tenant);
    memset(s, 0, sizeof *s);
}

static void sources_free(config_t *c)
{
    for (size_t i = 0; i < c->nsources; i++)
        source_free(&c->sources[i]);
    free(c->sources);
    c->sources = NULL;
    c->nsources = 0;
}

static const config_source_t *source_find(const config_t *c, const char *name)
{
    for (size_t i = 0; i < c->nsources; i++)
        if (strcmp(c->sources[i].name, name) == 0)
            return &c->sources[i];
    return NULL;
}

/* A source name must be what webhook.c makes of the path's {source}: a
 * subject token that sanitising leaves unchanged. */
static bool source_name_valid(const char *name)
{
    char tok[SUBJ_MAX_TOKEN_LEN + 1];
    size_t len = strlen(name);

    return len > 0 && len <= SUBJ_MAX_TOKEN_LEN &&
           subj_sanitize_token(name, len, tok, sizeof tok) == len &&
           memcmp(tok, name, len) == 0;
}

/* Appends a zeroed source called name (owned by c from here on, so
 * config_free releases it whatever happens next). NULL without memory. */
static config_source_t *source_add(config_t *c, const char *name)
{
    config_source_t *grown = realloc(c->sources, (c->nsources + 1) * sizeof *grown);
    config_source_t *s;

    if (!grown)
        return NULL;
    c->sources = grown;
    s = &c->sources[c->nsources++];
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    s->tenant = strdup(SOURCE_TENANT_DEFAULT);
    return s->name && s->tenant ? s : NULL;
}

/* Copies the optional string member key of obj into *out (left NULL when
 * absent). where names the source in the error. */
static int member_str(json_t *obj, const char *key, char **out, const char *where,
                      char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return 0;
    if (!json_is_string(v)) {
        errmsg(err, errlen, "%s: \"%s\" must be a string", where, key);
        return -1;
    }
    free(*out);
    if (!(*out = strdup(json_string_value(v)))) {
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Builds and drops s's verifier, so that whatever the verifier refuses
 * (kind, secret, options) refuses start-up; checks the tenant. */
static int source_check(const config_source_t *s, const char *where, char *err,
                        size_t errlen)
{
    sig_options_t o = {s->header, s->algorithm, s->encoding, s->prefix, s->tolerance_s};
    const char *why = NULL;
    sig_cfg_t *v;

    if (!principal_valid_tenant(s->tenant, strlen(s->tenant))) {
        errmsg(err, errlen, "%s: tenant must be 1 to %d letters, digits, '_' or '-'", where,
               PRINCIPAL_TENANT_MAX);
        return -1;
    }
    v = sig_cfg_parse(s->verify, s->secret, &o, &why);
    if (!v) {
        errmsg(err, errlen, "%s: %s", where, why);
        return -1;
    }
    sig_cfg_free(v);
    return 0;
}

/* The secret of a source: "secret" itself, or the value of the
 * environment variable that "secret_env" names (which must be set and
 * non-empty); not both. Neither is fine here (kind none). */
static int source_secret(config_source_t *s, json_t *obj, const char *where, char *err,
                         size_t errlen)
{
    json_t *lit = json_object_get(obj, "secret"), *env = json_object_get(obj, "secret_env");
    const char *name, *v;

    if (lit && env) {
        errmsg(err, errlen, "%s: give \"secret\" or \"secret_env\", not both", where);
        return -1;
    }
    if (lit)
        return member_str(obj, "secret", &s->secret, where, err, errlen);
    if (!env)
        return 0;
    if (!(name = json_string_value(env)) || !*name) {
        errmsg(err, errlen, "%s: \"secret_env\" must name an environment variable", where);
        return -1;
    }
    if (!(v = getenv(name)) || !*v) {
        errmsg(err, errlen, "%s: environment variable %.64s (secret_env) is not set or empty",
               where, name);
        return -1;
    }
    if (!(s->secret = strdup(v))) {
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int source_load(config_t *c, const char *name, json_t *obj, const char *where,
                       char *err, size_t errlen)
{
    config_source_t *s;
    const char *key;
    json_t *v;

    if (!json_is_object(obj)) {
        errmsg(err, errlen, "%s: must be an object", where);
        return -1;
    }
    json_object_foreach(obj, key, v) {
        size_t i = 0;
        while (source_members[i] && strcmp(source_members[i], key) != 0)
            i++;
        if (!source_members[i]) {
            errmsg(err, errlen, "%s: unknown member \"%.64s\"", where, key);
            return -1;
        }
    }
    if (!json_is_string(json_object_get(obj, "verify"))) {
        errmsg(err, errlen, "%s: \"verify\" is required: none, github, standard, hmac or kakao",
               where);
        return -1;
    }
    v = json_object_get(obj, "tolerance_s");
    if (v && !json_is_integer(v)) {
        errmsg(err, errlen, "%s: \"tolerance_s\" must be a number of seconds", where);
        return -1;
    }
    if (!(s = source_add(c, name))) {
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    s->tolerance_s = v ? json_integer_value(v) : 0;
    if (member_str(obj, "verify", &s->verify, where, err, errlen) ||
        member_str(obj, "header", &s->header, where, err, errlen) ||
        member_str(obj, "algorithm", &s->algorithm, where, err, errlen) ||
        member_str(obj, "encoding", &s->encoding, where, err, errlen) ||
        member_str(obj, "prefix", &s->prefix, where, err, errlen) ||
        member_str(obj, "tenant", &s->tenant, where, err, errlen) ||
        source_secret(s, obj, where, err, errlen))
        return -1;
    return source_check(s, where, err, errlen);
}

static int load_sources(config_t *c, json_t *obj, const char *file, char *err,
                        size_t errlen)
{
    const char *name;
    json_t *v;

    if (!json_is_object(obj)) {
        errmsg(err, errlen, "%s: sources must be an object", file);
        return -1;
    }
    if (json_object_size(obj) > SOURCES_MAX) {
        errmsg(err, errlen, "%s: at most %d sources", file, SOURCES_MAX);
        return -1;
    }
    json_object_foreach(obj, name, v) {
        char where[256];

        snprintf(where, sizeof where, "%s: sources.%.64s", file, name);
        if (!source_name_valid(name)) {
            errmsg(err, errlen, "%s: a source name is 1 to %d letters, digits or _-:@~", where,
                   SUBJ_MAX_TOKEN_LEN);
            return -1;
        }
        if (source_load(c, name, v, where, err, errlen))
            return -1;
    }
    return 0;
}

static int load_source_shortcuts(config_t *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof source_shortcuts / sizeof source_shortcuts[0]; i++) {
        const char *v = getenv(source_shortcuts[i].env);
        config_source_t *s;

        if (!v || !*v || source_find(c, source_shortcuts[i].name))
            continue;
        if (!(s = source_add(c, source_shortcuts[i].name)) ||
            !(s->verify = strdup(source_shortcuts[i].verify)) || !(s->secret = strdup(v))) {
            errmsg(err, errlen, "out of memory");
            return -1;
        }
        if (source_check(s, source_shortcuts[i].env, err, errlen))
            return -1;
    }
    return 0;
}

/* ---- the file ------------------------------------------------------------ */

static int load_file(config_t *c, const char *file, json_t **streams_out,
                     json_t **sources_out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);

    if (!root) {
        errmsg(err, errlen, "%s:%d: %s", file, jerr.line, jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        errmsg(err, errlen, "%s: must hold a JSON object", file);
        goto fail;
    }
    for (size_t i = 0; i < NOPTS; i++) {
        json_t *v = json_path(root, opts[i].path);
        if (v && apply_json_opt(c, &opts[i], v, file, err, errlen))
            goto fail;
    }
    *streams_out = json_incref(json_object_get(root, "streams"));
    *sources_out = json_incref(json_object_get(root, "sources"));
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    return -1;
}

/* The long flag of an option: its JSON path with '.' and '_' as '-',
 * without the "limits." / "delivery." section names. */
static const char *flag_name(const opt_t *o, char *out, size_t cap)
{
    const char *p = o->path;
    size_t n = 0;

    if (strncmp(p, "limits.", 7) == 0)
        p += 7;
    else if (strncmp(p, "delivery.", 9) == 0)
        p += 9;
    for (; *p && n + 1 < cap; p++)
        out[n++] = (*p == '_' || *p == '.') ? '-' : *p;
    out[n] = '\0';
    return out;
}

static int load_flags(config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        size_t i_opt;
        char name[64];

        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        if (strncmp(a, "--", 2) != 0) {
            errmsg(err, errlen, "unexpected argument \"%s\"", a);
            return -1;
        }
        for (i_opt = 0; i_opt < NOPTS; i_opt++) {
            size_t n;
            flag_name(&opts[i_opt], name, sizeof name);
            n = strlen(name);
            if (strncmp(a + 2, name, n) == 0 && (a[2 + n] == '\0' || a[2 + n] == '=')) {
                val = a[2 + n] == '=' ? a + 3 + n : (i + 1 < argc ? argv[++i] : NULL);
                break;
            }
        }
        if (i_opt == NOPTS) {
            errmsg(err, errlen, "unknown option \"%s\" (see --help)", a);
            return -1;
        }
        if (!val) {
            errmsg(err, errlen, "option %s needs a value", a);
            return -1;
        }
        if (set_text(c, &opts[i_opt], val, "command line", err, errlen))
            return -1;
    }
    return 0;
}

/* Whether text is a usable sealing key (auth/seal.h); the parsed key is
 * wiped at once: auth/users.c parses it again when it needs it. */
static bool github_key_ok(const char *text)
{
    unsigned char key[SEAL_KEY_LEN];
    bool ok = seal_key_parse(text, strlen(text), key) == 0;

    OPENSSL_cleanse(key, sizeof key);
    return ok;
}

static int check(config_t *c, char *err, size_t errlen)
{
    if (log_level_parse(c->log_level) < 0) {
        errmsg(err, errlen, "log_level must be debug, info, warn or error");
        return -1;
    }
    if (c->outbound_queue_hard && c->outbound_queue_hard < c->outbound_queue) {
        errmsg(err, errlen, "delivery.outbound_queue_hard must be 0 or >= delivery.outbound_queue");
        return -1;
    }
    if (strcmp(c->fsync, "full") && strcmp(c->fsync, "normal")) {
        errmsg(err, errlen, "store.fsync must be \"full\" or \"normal\"");
        return -1;
    }
    if (*c->github_client_id && !github_key_ok(c->github_token_key)) {
        errmsg(err, errlen, "github.token_key (SWITCHBOARD_TOKEN_KEY) is required with "
               "github.client_id: 32 bytes as 64 hex digits or base64");
        return -1;
    }
    return 0;
}

int config_load(config_t *c, const char *file, int argc, char **argv,
                char *err, size_t errlen)
{
    json_t *streams = NULL, *sources = NULL;
    int rc = -1;

    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].type == OPT_INT)
            *(int64_t *)(void *)((char *)c + opts[i].off) = opts[i].idef;
        else if (set_str(c, &opts[i], opts[i].sdef, "default", err, errlen))
            goto out;
    }
    if (file && load_file(c, file, &streams, &sources, err, errlen))
        goto out;
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = getenv(opts[i].env);
        if (v && set_text(c, &opts[i], v, opts[i].env, err, errlen))
            goto out;
    }
    if (load_flags(c, argc, argv, err, errlen))
        goto out;
    if (streams) {
        if (load_streams(c, streams, file, err, errlen))
            goto out;
    } else {
        json_t *subjects = json_pack("[s]", "webhooks.>");
        rc = subjects ? stream_add(c, "webhooks", subjects, NULL, err, errlen) : -1;
        json_decref(subjects);
        if (rc)
            goto out;
    }
    rc = -1;
    if ((sources && load_sources(c, sources, file, err, errlen)) ||
        load_source_shortcuts(c, err, errlen))
        goto out;
    rc = check(c, err, errlen);
out:
    json_decref(streams);
    json_decref(sources);
    if (rc)
        config_free(c);
    return rc;
}

void config_free(config_t *c)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].type == OPT_STR) {
            char **slot = (char **)(void *)((char *)c + opts[i].off);
            if (*slot)
                OPENSSL_cleanse(*slot, strlen(*slot));   /* secrets among them */
            free(*slot);
            *slot = NULL;
        }
    streams_free(c);
    sources_free(c);
}

void config_usage(FILE *out)
{
    char name[64];

    fprintf(out, "  %-28s %-34s %s\n", "--config FILE", "", "JSON configuration file");
    for (size_t i = 0; i < NOPTS; i++) {
        const opt_t *o = &opts[i];
        char def[32];
        if (o->type == OPT_INT)
            snprintf(def, sizeof def, "%" PRId64, o->idef);
        else
            snprintf(def, sizeof def, "%s", o->sdef);
        fprintf(out, "  --%-26s %-34s %s%s%s%s\n", flag_name(o, name, sizeof name), o->env,
                o->help, *def ? " (default " : "", def, *def ? ")" : "");
    }
}
