/*
 * token.c - short-lived JWTs for API keys, and their revocation.
 *
 *   POST /auth/token              an API key (Authorization: Bearer, or
 *                                 {"apiKey": ...} in the body) and an
 *                                 optional {"ttl_seconds"} -> {"token",
 *                                 "token_type":"Bearer","expires_in",
 *                                 "expires_at","jti"}
 *   POST /api/v1/tokens/revoke    admin: {"jti", "expires_at"?} or
 *                                 {"token"} -> {"revoked": jti}
 *
 * A token carries the key's tenant and permissions (auth/tokens.h) and
 * never outlives the key's own expiry; revoking the key ends its tokens.
 * Only API keys are exchanged: a token cannot buy a longer-lived token.
 * A revocation is answered once it is in the store, so it survives a
 * restart; it is kept until the token would have expired anyway.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "auth/auth.h"
#include "core/clock.h"
#include "edge/edge.h"
#include "ops/log.h"

#define TOKEN_BODY_MAX 16384
#define TOKEN_UNKNOWN_EXP_MS (30ll * 86400 * 1000)   /* a jti revoked without its exp */

static json_t *body_object(const http_req_t *r)
{
    json_error_t jerr;

    if (r->body.len == 0)
        return json_object();
    if (r->body.len > TOKEN_BODY_MAX)
        return NULL;
    return json_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &jerr);
}

/* The API key of the request: the bearer header, else "apiKey". */
static principal_t *exchanger(http_req_t *r, const json_t *body)
{
    const char *key = json_string_value(json_object_get(body, "apiKey"));
    char ip[AUTH_IP_MAX];
    auth_outcome_t o;
    principal_t *p;

    if (http_header(r, "Authorization", NULL) || !key)
        return auth_request(r, 0);
    auth_client_ip(r, ip);
    p = auth_check(key, strlen(key), ip, "POST /auth/token", &o);
    if (!p)
        auth_respond(r, &o);
    return p;
}

void token_issue(http_req_t *r)
{
    const config_t *cfg = edge_cfg();
    json_t *body = body_object(r), *jttl, *doc;
    principal_t *p = NULL;
    char jti[TOKENS_JTI_MAX + 1], when[CLOCK_ISO_LEN + 1], *token = NULL, *text;
    int64_t now = clock_now_ms(), ttl = cfg->token_ttl_ms, exp_ms;

    if (!json_is_object(body)) {
        http_error(r, 400, "invalid_json", "the body must be empty or a JSON object");
        goto out;
    }
    if (!(p = exchanger(r, body)))
        goto out;
    if (p->kind == PRINCIPAL_JWT) {
        http_error(r, 400, "invalid_request", "exchange an API key, not a token");
        goto out;
    }
    jttl = json_object_get(body, "ttl_seconds");
    if (jttl && (!json_is_integer(jttl) || json_integer_value(jttl) < 1 ||
                 json_integer_value(jttl) * 1000 > cfg->token_ttl_ms)) {
        http_error(r, 400, "invalid_request", "\"ttl_seconds\" must be 1 to %" PRId64,
                   cfg->token_ttl_ms / 1000);
        goto out;
    }
    if (jttl)
        ttl = json_integer_value(jttl) * 1000;
    if (tokens_mint(auth_tokens(), p, now, ttl, &token, jti, &exp_ms)) {
        http_error(r, 503, "unavailable", "the token could not be issued");
        goto out;
    }
    clock_iso8601(exp_ms, when);
    doc = json_pack("{s:s,s:s,s:I,s:s,s:s}", "token", token, "token_type", "Bearer",
                    "expires_in", (json_int_t)((exp_ms - now) / 1000), "expires_at", when,
                    "jti", jti);
    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text) {
        http_add_header(r, "Cache-Control", "no-store");
        http_respond(r, 200, "application/json", text, strlen(text));
        OPENSSL_cleanse(text, strlen(text));
        LOG_INFO("token issued", "\"key\":\"%s\",\"tenant\":\"%s\",\"jti\":\"%s\"", p->id,
                 p->tenant, jti);
    } else {
        http_error(r, 503, "unavailable", "out of memory");
    }
    free(text);
    json_decref(doc);
out:
    if (token) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
    principal_unref(p);
    json_decref(body);
}

/* --- revocation --------------------------------------------------------------- */

typedef struct revoking {
    http_req_t *r;
    char jti[TOKENS_JTI_MAX + 1];
} revoking_t;

static void revoke_stored(void *arg, int err, uint64_t rev)
{
    revoking_t *v = arg;
    buf_t b;

    if (err) {
        http_error(v->r, 503, "store_unavailable", "the revocation could not be stored; retry");
    } else {
        buf_init(&b, 256);
        buf_printf(&b, "{\"revoked\":\"%s\"}", v->jti);
        http_respond_json(v->r, 200, &b);
        buf_free(&b);
    }
    http_req_release(v->r);
    free(v);
}

/* The jti and expiry to revoke, from {"token"} or {"jti","expires_at"?}. */
static int revocation_of(const json_t *body, char jti[TOKENS_JTI_MAX + 1], int64_t *exp_ms)
{
    const char *token = json_string_value(json_object_get(body, "token"));
    const char *id = json_string_value(json_object_get(body, "jti"));
    const char *at = json_string_value(json_object_get(body, "expires_at"));

    if (token)
        return tokens_peek(token, strlen(token), jti, exp_ms);
    if (!id || !*id || strlen(id) > TOKENS_JTI_MAX || !principal_valid_id(id, strlen(id)))
        return -1;
    snprintf(jti, TOKENS_JTI_MAX + 1, "%s", id);
    if (at)
        return clock_parse_rfc3339(at, strlen(at), exp_ms);
    *exp_ms = clock_now_ms() + TOKEN_UNKNOWN_EXP_MS;
    return 0;
}

void token_revoke(http_req_t *r)
{
    json_t *body = body_object(r), *rec = NULL;
    principal_t *p = auth_request(r, 0);
    revoking_t *v = NULL;
    char *text = NULL;
    int64_t exp_ms = 0;

    if (!p)
        goto out;
    if (!principal_can_admin(p, p->tenant, p->tenant_len)) {
        auth_forbidden(r, p, NULL, NULL, "revoking tokens needs admin permission");
        goto out;
    }
    v = calloc(1, sizeof *v);
    if (!v) {
        http_error(r, 503, "unavailable", "out of memory");
        goto out;
    }
    if (!json_is_object(body) || revocation_of(body, v->jti, &exp_ms) || exp_ms <= 0 ||
        !principal_valid_id(v->jti, strlen(v->jti))) {
        http_error(r, 400, "invalid_request",
                   "give {\"token\"} or {\"jti\", \"expires_at\"?: RFC 3339}");
        goto out;
    }
    if (tokens_revoke(auth_tokens(), v->jti, strlen(v->jti), exp_ms)) {
        http_error(r, 507, "too_many_revocations", "the revocation list is full");
        goto out;
    }
    rec = json_pack("{s:I}", "exp_ms", (json_int_t)exp_ms);
    text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    v->r = r;
    http_req_hold(r);
    if (!text || store_meta_put(auth_store(), AUTH_NS_REVOKED, v->jti, text, strlen(text), 0,
                                r->conn->loop, revoke_stored, v)) {
        http_req_release(r);
        http_error(r, 503, "store_unavailable", "the store is not accepting changes");
        goto out;
    }
    LOG_INFO("token revoked", "\"jti\":\"%s\",\"by\":\"%s\"", v->jti, p->id);
    v = NULL;
out:
    free(v);
    free(text);
    json_decref(rec);
    json_decref(body);
    principal_unref(p);
}
