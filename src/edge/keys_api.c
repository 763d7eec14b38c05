/*
 * keys_api.c - the admin API for API keys (docs/AUTH.md):
 *
 *   POST   /api/v1/keys               create  -> 201 view + "key" (shown once)
 *   GET    /api/v1/keys[?tenant=T]    list    -> {"keys":[view...]}
 *   GET    /api/v1/keys/{id}          get     -> view
 *   DELETE /api/v1/keys/{id}          revoke  -> view
 *   POST   /api/v1/keys/{id}/revoke   revoke  -> view
 *   POST   /api/v1/keys/{id}/rotate   rotate  -> view + "key"
 *   GET    /api/v1/keys/{id}/usage    usage   -> {"id","usage":[...]}
 *
 * Who: a credential with admin permission, from an address in
 * auth.admin_allow. An admin manages the keys of its own tenant; only the
 * bootstrap key (superadmin) names other tenants, and for everyone else a
 * key of another tenant simply does not exist (404).
 *
 * Durability: a change is answered only once its record is in the store
 * (store_meta_put, completion on this loop). The registry in memory
 * changes first, so a failed write (503) leaves the change in effect until
 * a restart: the caller retries, and create, revoke and rotate are all
 * safe to repeat in that sense (a repeated create makes a second key).
 * Responses that carry a secret are marked Cache-Control: no-store and the
 * copies this file makes are wiped.
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

#define KEYS_API_PREFIX "/api/v1/keys"
#define KEYS_API_BODY_MAX (64 * 1024)

/* --- answering --------------------------------------------------------------- */

/* Answers with a JSON document; wipes it when it holds a secret. */
static void answer(http_req_t *r, int status, json_t *doc, bool secret)
{
    char *text = json_dumps(doc, JSON_COMPACT);

    if (!text) {
        http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    if (secret)
        http_add_header(r, "Cache-Control", "no-store");
    http_respond(r, status, "application/json", text, strlen(text));
    if (secret)
        OPENSSL_cleanse(text, strlen(text));
    free(text);
}

typedef struct pending {
    http_req_t *r;
    int status;
    json_t *doc;               /* the answer, once the record is durable */
    bool secret;
} pending_t;

static void persisted(void *arg, int err, uint64_t rev)
{
    pending_t *p = arg;

    if (err) {
        LOG_ERROR("API key change not stored", "\"error\":%d", err);
        http_error(p->r, 503, "store_unavailable", "the change could not be stored; retry");
    } else {
        answer(p->r, p->status, p->doc, p->secret);
    }
    http_req_release(p->r);
    json_decref(p->doc);
    free(p);
}

/* Stores record under its id, then answers doc (whose reference it takes). */
static void persist_then_answer(http_req_t *r, const json_t *record, int status, json_t *doc,
                                bool secret)
{
    const char *id = json_string_value(json_object_get(record, "id"));
    char *text = json_dumps(record, JSON_COMPACT);
    pending_t *p = calloc(1, sizeof *p);

    if (!p || !text || !id)
        goto fail;
    *p = (pending_t){.r = r, .status = status, .doc = doc, .secret = secret};
    http_req_hold(r);
    if (store_meta_put(auth_store(), AUTH_NS_KEYS, id, text, strlen(text), 0, r->conn->loop,
                       persisted, p)) {
        http_req_release(r);
        goto fail;
    }
    free(text);
    return;
fail:
    free(text);
    free(p);
    json_decref(doc);
    http_error(r, 503, "store_unavailable", "the store is not accepting changes");
}

static void keys_error(http_req_t *r, int rc, const char *err)
{
    switch (rc) {
    case KEYS_EINVAL: http_error(r, 400, "invalid_request", "%s", err); break;
    case KEYS_ENOTFOUND: http_error(r, 404, "not_found", "no such key"); break;
    case KEYS_ESTATE: http_error(r, 409, "invalid_state", "the key is revoked or expired"); break;
    case KEYS_EFULL: http_error(r, 507, "too_many_keys", "the key limit is reached"); break;
    default: http_error(r, 503, "unavailable", "internal error"); break;
    }
}

/* --- who may ask --------------------------------------------------------------- */

static principal_t *admin_guard(http_req_t *r)
{
    char ip[AUTH_IP_MAX];
    principal_t *p;

    auth_client_ip(r, ip);
    if (!auth_admin_ip_allowed(ip)) {
        auth_outcome_t o = {.status = 403, .code = "forbidden",
                            .message = "the admin API is not reachable from this address"};
        LOG_WARN("admin API refused by address", "\"ip\":\"%s\"", log_str(ip, (size_t)-1));
        auth_respond(r, &o);
        return NULL;
    }
    p = auth_request(r, 0);
    if (p && !principal_can_admin(p, p->tenant, p->tenant_len)) {
        auth_forbidden(r, p, ip, NULL, "key management needs admin permission");
        principal_unref(p);
        return NULL;
    }
    return p;
}

/* The tenant filter of a call: the caller's own, or (superadmin) any. */
static const char *scope_tenant(const principal_t *p) { return p->superadmin ? NULL : p->tenant; }

static size_t scope_len(const principal_t *p) { return p->superadmin ? 0 : p->tenant_len; }

static json_t *body_object(http_req_t *r, bool required)
{
    json_error_t jerr;
    json_t *o;

    if (r->body.len == 0 && !required)
        return json_object();
    if (r->body.len > KEYS_API_BODY_MAX) {
        http_error(r, 413, "too_large", "the body is over %d bytes", KEYS_API_BODY_MAX);
        return NULL;
    }
    o = json_loadb(r->body.data ? r->body.data : "", r->body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        http_error(r, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

/* A view with the one-time secret added. */
static json_t *view_with_key(const char *id, const char *key)
{
    json_t *view = NULL;

    if (keys_get(auth_keys(), id, strlen(id), NULL, 0, clock_now_ms(), &view))
        return NULL;
    json_object_set_new(view, "key", json_string(key));
    return view;
}

/* --- create / list ------------------------------------------------------------ */

static void create_key(http_req_t *r, principal_t *p)
{
    json_t *body = body_object(r, true), *rec = NULL, *doc, *jt, *jexp;
    char key[APIKEY_LEN + 1] = "", err[KEYS_ERR_LEN] = "invalid request";
    keys_create_req_t req;
    const char *tenant = p->tenant, *name;
    int rc;

    if (!body)
        return;
    jt = json_object_get(body, "tenant");
    jexp = json_object_get(body, "expires_in");
    name = json_string_value(json_object_get(body, "name"));
    if (jt && !json_is_null(jt))
        tenant = json_string_value(jt);
    /* expires_in 0 would mean "never" below (ttl_ms 0): refused, so that
     * a value meant to make the key expire never makes it eternal */
    if (!tenant || !name || (jexp && !json_is_null(jexp) && (!json_is_integer(jexp) ||
                                                             json_integer_value(jexp) < 1))) {
        http_error(r, 400, "invalid_request", "\"name\" (string) is required; \"tenant\" is a "
                   "string and \"expires_in\" a number of seconds (at least 1)");
        goto out;
    }
    if (strcmp(tenant, p->tenant) != 0 && !p->superadmin) {
        auth_forbidden(r, p, NULL, NULL, "creating keys in another tenant");
        goto out;
    }
    memset(&req, 0, sizeof req);
    req.tenant = tenant;
    req.tenant_len = strlen(tenant);
    req.name = name;
    req.name_len = strlen(name);
    req.perms = json_object_get(body, "permissions");
    req.cidrs = json_object_get(body, "cidrs");
    req.ttl_ms = 0;
    if (jexp && json_is_integer(jexp))     /* too long: keys_create says so */
        req.ttl_ms = json_integer_value(jexp) > KEYS_TTL_MAX_MS / 1000
                         ? KEYS_TTL_MAX_MS + 1 : json_integer_value(jexp) * 1000;
    req.now_ms = clock_now_ms();
    rc = keys_create(auth_keys(), &req, key, &rec, err, sizeof err);
    if (rc) {
        keys_error(r, rc, err);
        goto out;
    }
    doc = view_with_key(json_string_value(json_object_get(rec, "id")), key);
    if (!doc)
        http_error(r, 503, "unavailable", "out of memory");
    else
        persist_then_answer(r, rec, 201, doc, true);
    LOG_INFO("API key created", "\"id\":\"%s\",\"tenant\":\"%s\",\"by\":\"%s\"",
             json_string_value(json_object_get(rec, "id")), log_str(tenant, (size_t)-1), p->id);
out:
    OPENSSL_cleanse(key, sizeof key);
    json_decref(rec);
    json_decref(body);
}

static void list_keys(http_req_t *r, principal_t *p)
{
    buf_t t;
    const char *tenant = scope_tenant(p);
    size_t tlen = scope_len(p);
    json_t *keys, *doc;

    buf_init(&t, PRINCIPAL_TENANT_MAX);
    if (http_query_get(r, "tenant", 0, &t) == 1) {
        if (!p->superadmin && (t.len != p->tenant_len || memcmp(t.data, p->tenant, t.len))) {
            auth_forbidden(r, p, NULL, NULL, "listing keys of another tenant");
            goto out;
        }
        tenant = t.data;
        tlen = t.len;
    }
    keys = keys_list(auth_keys(), tenant, tlen, clock_now_ms());
    doc = keys ? json_pack("{s:o}", "keys", keys) : NULL;
    if (doc)
        answer(r, 200, doc, false);
    else
        http_error(r, 503, "unavailable", "out of memory");
    json_decref(doc);
out:
    buf_free(&t);
}

void keys_api_collection(http_req_t *r)
{
    principal_t *p = admin_guard(r);

    if (!p)
        return;
    if (http_method_is(r, "POST"))
        create_key(r, p);
    else
        list_keys(r, p);
    principal_unref(p);
}

/* --- one key -------------------------------------------------------------------- */

static void revoke_key(http_req_t *r, principal_t *p, const char *id)
{
    json_t *rec = NULL, *view = NULL;
    int rc = keys_revoke(auth_keys(), id, strlen(id), scope_tenant(p), scope_len(p),
                         clock_now_ms(), &rec);

    if (rc == 0)
        rc = keys_get(auth_keys(), id, strlen(id), NULL, 0, clock_now_ms(), &view);
    if (rc) {
        keys_error(r, rc, "");
    } else {
        LOG_INFO("API key revoked", "\"id\":\"%s\",\"by\":\"%s\"", id, p->id);
        persist_then_answer(r, rec, 200, view, false);
    }
    json_decref(rec);
}

static void rotate_key(http_req_t *r, principal_t *p, const char *id)
{
    json_t *body = body_object(r, false), *rec = NULL, *doc, *jg;
    char key[APIKEY_LEN + 1] = "", err[KEYS_ERR_LEN] = "";
    int64_t grace = edge_cfg()->rotate_grace_ms;
    int rc;

    if (!body)
        return;
    jg = json_object_get(body, "grace_seconds");
    if (jg && (!json_is_integer(jg) || json_integer_value(jg) < 0 ||
               json_integer_value(jg) > KEYS_GRACE_MAX_MS / 1000)) {
        http_error(r, 400, "invalid_request", "\"grace_seconds\" must be 0 to %lld",
                   (long long)(KEYS_GRACE_MAX_MS / 1000));
        goto out;
    }
    if (jg)
        grace = json_integer_value(jg) * 1000;
    rc = keys_rotate(auth_keys(), id, strlen(id), scope_tenant(p), scope_len(p), grace,
                     clock_now_ms(), key, &rec, err, sizeof err);
    if (rc) {
        keys_error(r, rc, err);
        goto out;
    }
    doc = view_with_key(id, key);
    if (!doc)
        http_error(r, 503, "unavailable", "out of memory");
    else
        persist_then_answer(r, rec, 200, doc, true);
    LOG_INFO("API key rotated", "\"id\":\"%s\",\"grace_ms\":%" PRId64 ",\"by\":\"%s\"", id,
             grace, p->id);
out:
    OPENSSL_cleanse(key, sizeof key);
    json_decref(rec);
    json_decref(body);
}

static void get_or_usage(http_req_t *r, principal_t *p, const char *id, bool usage)
{
    json_t *v = NULL, *doc = NULL;
    int rc = usage ? keys_usage(auth_keys(), id, strlen(id), scope_tenant(p), scope_len(p), &v)
                   : keys_get(auth_keys(), id, strlen(id), scope_tenant(p), scope_len(p),
                              clock_now_ms(), &v);

    if (rc) {
        keys_error(r, rc, "");
        return;
    }
    doc = usage ? json_pack("{s:s,s:o}", "id", id, "usage", v) : v;
    if (doc)
        answer(r, 200, doc, false);
    else
        http_error(r, 503, "unavailable", "out of memory");
    json_decref(doc);
}

void keys_api_item(http_req_t *r)
{
    const char *rest = r->head.path + strlen(KEYS_API_PREFIX "/");
    size_t len = r->head.path_len - strlen(KEYS_API_PREFIX "/"), idlen;
    const char *slash = memchr(rest, '/', len), *action = slash ? slash + 1 : "";
    size_t alen = slash ? len - (size_t)(action - rest) : 0;
    char id[APIKEY_ID_LEN + 1];
    principal_t *p;

    idlen = slash ? (size_t)(slash - rest) : len;
    if (idlen == 0 || idlen > APIKEY_ID_LEN) {
        http_error(r, 404, "not_found", "no such key");
        return;
    }
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
#define IS(m, a) (http_method_is(r, m) && alen == strlen(a) && memcmp(action, a, alen) == 0)
    if (!IS("GET", "") && !IS("DELETE", "") && !IS("POST", "revoke") && !IS("POST", "rotate") &&
        !IS("GET", "usage")) {
        http_error(r, 404, "not_found", "no such endpoint");
        return;
    }
    if (!(p = admin_guard(r)))
        return;
    if (IS("GET", ""))
        get_or_usage(r, p, id, false);
    else if (IS("GET", "usage"))
        get_or_usage(r, p, id, true);
    else if (IS("POST", "rotate"))
        rotate_key(r, p, id);
    else
        revoke_key(r, p, id);
#undef IS
    principal_unref(p);
}
