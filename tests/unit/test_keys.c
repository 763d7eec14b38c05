/*
 * test_keys.c - the API key registry: create, authenticate, revoke,
 * expire, rotate with grace, IP allowlists, list and usage views, loading
 * persisted records, persisting the usage log (dirty tracking, loading,
 * its caps), and concurrent use.
 *
 * Time is always passed in (T0 + offsets), so expiry and grace edges are
 * exact. Secrecy is checked by dumping every public view and error text
 * and searching it for the plaintext, the secret part alone, and the hex
 * digests. Persistence is checked by loading the records a registry
 * returned into a fresh registry and replaying the same checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "auth/keys.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))
#define S(lit) lit, (sizeof(lit) - 1)
#define T0 1700000000000ll
#define SECOND 1000ll
#define HOUR (3600 * SECOND)

#define SPEC_WEBHOOKS                                                      \
    "{\"publish\":[\"webhooks.>\"],\"subscribe\":[\">\"],"                 \
    "\"history\":[\">\"],\"admin\":false,\"events\":[\"push\"],"           \
    "\"rate\":{\"per_second\":10,\"burst\":20},\"max_connections\":100}"

typedef struct key {
    char text[APIKEY_LEN + 1];
    char id[APIKEY_ID_LEN + 1];
    json_t *record;
} tkey_t;

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j;

    if (text == NULL)
        return NULL;
    if ((j = json_loads(text, JSON_DECODE_ANY, &e)) == NULL)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

static void assert_json_text(const json_t *j, const char *text)
{
    json_t *want = parse(text);

    if (!json_equal(j, want))
        fail_msg("JSON differs from %s", text);
    json_decref(want);
}

static int create_rc(keys_reg_t *reg, const char *tenant, const char *spec,
                     const char *cidrs, int64_t ttl, tkey_t *k, char *err,
                     size_t errcap)
{
    json_t *perms = parse(spec), *list = parse(cidrs);
    keys_create_req_t req = {
        .tenant = tenant, .tenant_len = tenant ? strlen(tenant) : 0,
        .name = "test key", .name_len = 8,
        .perms = perms, .cidrs = list, .ttl_ms = ttl, .now_ms = T0,
    };
    int rc = keys_create(reg, &req, k->text, &k->record, err, errcap);

    if (rc == 0)
        memcpy(k->id, k->text + APIKEY_PREFIX_LEN, APIKEY_ID_LEN);
    k->id[rc == 0 ? APIKEY_ID_LEN : 0] = '\0';
    json_decref(perms);
    json_decref(list);
    return rc;
}

static void create(keys_reg_t *reg, const char *tenant, const char *spec,
                   const char *cidrs, int64_t ttl, tkey_t *k)
{
    char err[KEYS_ERR_LEN];

    if (create_rc(reg, tenant, spec, cidrs, ttl, k, err, sizeof err) != 0)
        fail_msg("create refused: %s", err);
}

static keys_auth_t auth(keys_reg_t *reg, const char *text, const char *ip,
                        int64_t now)
{
    principal_t *p = (principal_t *)1;
    const char *why = NULL;
    keys_auth_t r = keys_authenticate(reg, text, text ? strlen(text) : 0, ip,
                                      now, &p, &why);

    assert_non_null(why);
    if (r == KEYS_AUTH_OK) {
        assert_non_null(p);
        principal_unref(p);
    } else {
        assert_null(p);
    }
    return r;
}

static void hex_of(const char *key, char out[2 * APIKEY_HASH_LEN + 1])
{
    uint8_t h[APIKEY_HASH_LEN];
    size_t i;

    assert_int_equal(apikey_hash(key, strlen(key), h), 0);
    for (i = 0; i < APIKEY_HASH_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* text holds neither the key, its secret part, nor its digest in hex. */
static void assert_no_secret(const char *text, const char *key)
{
    char hex[2 * APIKEY_HASH_LEN + 1];
    const char *secret = key + APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1;

    hex_of(key, hex);
    if (strstr(text, key) || strstr(text, secret) || strstr(text, hex))
        fail_msg("secret material found in: %s", text);
}

static void assert_json_no_secret(const json_t *j, const char *key)
{
    char *text = json_dumps(j, 0);

    assert_non_null(text);
    assert_null(strstr(text, "hash"));
    assert_no_secret(text, key);
    free(text);
}

static void drop(tkey_t *k)
{
    json_decref(k->record);
    k->record = NULL;
}

/* --- create and authenticate ---------------------------------------------- */

static void test_create_authenticate(void **state)
{
    keys_reg_t *reg = keys_new();
    principal_t *p = NULL;
    const char *why;
    tkey_t k;

    create(reg, "acme", SPEC_WEBHOOKS, NULL, 0, &k);
    assert_int_equal(strlen(k.text), APIKEY_LEN);
    assert_int_equal(apikey_parse(k.text, APIKEY_LEN, NULL), 0);
    assert_int_equal(keys_count(reg), 1);
    assert_int_equal(keys_authenticate(reg, k.text, APIKEY_LEN, "10.0.0.1",
                                       T0, &p, &why), KEYS_AUTH_OK);
    assert_string_equal(why, "ok");
    assert_non_null(p);
    assert_int_equal(p->kind, PRINCIPAL_API_KEY);
    assert_string_equal(p->tenant, "acme");
    assert_string_equal(p->id, k.id);
    assert_false(p->superadmin);
    assert_int_equal(p->expires_ms, 0);
    assert_true(principal_can_publish(p, S("webhooks.gh.o.r"), S("push")));
    assert_false(principal_can_publish(p, S("webhooks.gh"), S("issues")));
    assert_true(principal_can_subscribe(p, S(">")));
    assert_int_equal(p->perm.max_connections, 100);
    assert_int_equal(p->perm.burst, 20);
    assert_false(principal_can_admin(p, S("acme")));
    principal_unref(p);
    assert_int_equal(keys_status(reg, k.id, APIKEY_ID_LEN, T0),
                     KEYS_AUTH_OK);
    drop(&k);
    keys_free(reg);
}

static void test_record_json(void **state)
{
    keys_reg_t *reg = keys_new();
    char hex[2 * APIKEY_HASH_LEN + 1];
    const json_t *r;
    char *text;
    tkey_t k;

    create(reg, "acme", SPEC_WEBHOOKS, "[\"10.1.2.3/8\",\"::1\"]", HOUR, &k);
    r = k.record;
    hex_of(k.text, hex);
    assert_int_equal(json_integer_value(json_object_get(r, "v")), 1);
    assert_string_equal(json_string_value(json_object_get(r, "id")), k.id);
    assert_string_equal(json_string_value(json_object_get(r, "tenant")),
                        "acme");
    assert_string_equal(json_string_value(json_object_get(r, "name")),
                        "test key");
    assert_string_equal(json_string_value(json_object_get(r, "hash")), hex);
    assert_int_equal(json_integer_value(json_object_get(r, "created_ms")), T0);
    assert_int_equal(json_integer_value(json_object_get(r, "expires_ms")),
                     T0 + HOUR);
    assert_true(json_is_false(json_object_get(r, "revoked")));
    assert_null(json_object_get(r, "prev_hash"));
    assert_json_text(json_object_get(r, "perms"), SPEC_WEBHOOKS);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(r, "cidrs"), 0)), "10.0.0.0/8");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(r, "cidrs"), 1)), "::1/128");
    /* the record holds the digest (it must) but never the key itself */
    text = json_dumps(r, 0);
    assert_null(strstr(text, k.text));
    assert_null(strstr(text, k.text + APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1));
    free(text);
    drop(&k);
    keys_free(reg);
}

static void test_create_errors(void **state)
{
    static const struct {
        const char *tenant, *spec, *cidrs;
        int64_t ttl;
        const char *want;
    } rows[] = {
        { "bad tenant", NULL, NULL, 0, "tenant: must be 1 to 64" },
        { "", NULL, NULL, 0, "tenant:" },
        { NULL, NULL, NULL, 0, "tenant:" },
        { "t", "{\"publish\":[\"a..b\"]}", NULL, 0,
          "publish[0]: \"a..b\" is not a valid subject pattern" },
        { "t", "{\"superadmin\":true}", NULL, 0, "unknown member" },
        { "t", "[1]", NULL, 0, "permissions: must be a JSON object" },
        { "t", NULL, "\"10.0.0.0/8\"", 0, "cidrs: must be an array" },
        { "t", NULL, "[\"10.0.0.0/33\"]", 0, "cidrs[0]: " },
        { "t", NULL, "[\"::1\",\"nope\"]", 0, "cidrs[1]: " },
        { "t", NULL, "[\"10.0.0.1 \"]", 0, "cidrs[0]" },
        { "t", NULL, "[7]", 0, "cidrs[0]: must be a string" },
        { "t", NULL, NULL, -1, "ttl: must be 0" },
        { "t", NULL, NULL, KEYS_TTL_MAX_MS + 1, "ttl: must be 0" },
    };
    keys_reg_t *reg = keys_new();
    char err[KEYS_ERR_LEN];
    size_t i;

    for (i = 0; i < NROWS(rows); i++) {
        tkey_t k = { .record = (json_t *)1 };
        int rc;

        memset(k.text, 'x', sizeof k.text);
        err[0] = '\0';
        rc = create_rc(reg, rows[i].tenant, rows[i].spec, rows[i].cidrs,
                       rows[i].ttl, &k, err, sizeof err);
        if (rc != KEYS_EINVAL || strstr(err, rows[i].want) == NULL)
            fail_msg("row %zu: rc %d err \"%s\", want \"%s\"", i, rc, err,
                     rows[i].want);
        assert_null(k.record);
        assert_int_equal(k.text[0], '\0');     /* nothing shown */
    }
    assert_int_equal(keys_count(reg), 0);
    keys_free(reg);
}

static void test_create_name_and_cidr_limits(void **state)
{
    keys_reg_t *reg = keys_new();
    char err[KEYS_ERR_LEN], name[KEYS_NAME_MAX + 1];
    json_t *cidrs = json_array(), *rec = NULL;
    char key[APIKEY_LEN + 1];
    keys_create_req_t req = {
        .tenant = "t", .tenant_len = 1, .name = name, .now_ms = T0,
    };
    int i;

    memset(name, 'n', sizeof name);
    req.name_len = KEYS_NAME_MAX + 1;
    assert_int_equal(keys_create(reg, &req, key, &rec, err, sizeof err),
                     KEYS_EINVAL);
    assert_non_null(strstr(err, "name: must be 1 to 64 bytes"));
    req.name_len = 0;
    assert_int_equal(keys_create(reg, &req, key, &rec, err, sizeof err),
                     KEYS_EINVAL);
    req.name = "tab\there";
    req.name_len = 8;
    assert_int_equal(keys_create(reg, &req, key, &rec, err, sizeof err),
                     KEYS_EINVAL);
    req.name = "bad\xc3";
    req.name_len = 4;
    assert_int_equal(keys_create(reg, &req, key, &rec, err, sizeof err),
                     KEYS_EINVAL);
    req.name = "caf\xc3\xa9 key";
    req.name_len = 9;
    req.cidrs = cidrs;
    for (i = 0; i < KEYS_CIDRS_MAX; i++) {
        char c[32];

        snprintf(c, sizeof c, "10.0.%d.0/24", i);
        json_array_append_new(cidrs, json_string(c));
    }
    assert_int_equal(keys_create(reg, &req, key, &rec, err, sizeof err), 0);
    json_decref(rec);
    json_array_append_new(cidrs, json_string("10.9.9.9"));
    assert_int_equal(keys_create(reg, &req, key, &rec, err, sizeof err),
                     KEYS_EINVAL);
    assert_non_null(strstr(err, "cidrs: more than 64 entries"));
    req.now_ms = 0;
    json_array_clear(cidrs);
    assert_int_equal(keys_create(reg, &req, key, &rec, err, sizeof err),
                     KEYS_EINVAL);
    assert_int_equal(keys_count(reg), 1);
    json_decref(cidrs);
    keys_free(reg);
}

static void test_malformed_and_unknown(void **state)
{
    static const char *bad[] = {
        "", "sb_", "Bearer xyz", "sb_a1B2c3D4e5F6_short",
        "sk_a1B2c3D4e5F6_Ab0_-zZ9yXwVuTsRqPoNmLkJiHgFeDcBa012345678w",
        "sb_a1B2c3D4e5F!_Ab0_-zZ9yXwVuTsRqPoNmLkJiHgFeDcBa012345678w",
        "sb_a1B2c3D4e5F6_Ab0_-zZ9yXwVuTsRqPoNmLkJiHgFeDcBa012345678x",
        "sb_a1B2c3D4e5F6_Ab0_-zZ9yXwVuTsRqPoNmLkJiHgFeDcBa012345678w ",
    };
    keys_reg_t *reg = keys_new();
    principal_t *p = (principal_t *)1;
    const char *why = NULL;
    tkey_t k;
    size_t i;

    create(reg, "t", NULL, NULL, 0, &k);
    for (i = 0; i < NROWS(bad); i++)
        if (auth(reg, bad[i], NULL, T0) != KEYS_AUTH_MALFORMED)
            fail_msg("\"%s\" is not malformed", bad[i]);
    assert_int_equal(keys_authenticate(reg, NULL, 5, NULL, T0, &p, &why),
                     KEYS_AUTH_MALFORMED);
    assert_null(p);
    /* a well-formed key whose id was never issued */
    assert_int_equal(auth(reg, "sb_a1B2c3D4e5F6_Ab0_-zZ9yXwVuTsRqPoNmLkJiHg"
                               "FeDcBa012345678w", NULL, T0),
                     KEYS_AUTH_UNKNOWN);
    assert_int_equal(keys_status(reg, S("a1B2c3D4e5F6"), T0),
                     KEYS_AUTH_UNKNOWN);
    assert_int_equal(keys_status(reg, S("short"), T0), KEYS_AUTH_UNKNOWN);
    assert_int_equal(auth(reg, k.text, NULL, T0), KEYS_AUTH_OK);
    drop(&k);
    keys_free(reg);
}

/* The id of one key with the secret of another: known id, wrong secret. */
static void test_bad_secret(void **state)
{
    keys_reg_t *reg = keys_new();
    char forged[APIKEY_LEN + 1];
    const char *why;
    principal_t *p;
    tkey_t a, b;

    create(reg, "t", NULL, NULL, 0, &a);
    create(reg, "t", NULL, NULL, 0, &b);
    memcpy(forged, b.text, sizeof forged);
    memcpy(forged + APIKEY_PREFIX_LEN, a.id, APIKEY_ID_LEN);
    assert_int_equal(keys_authenticate(reg, forged, APIKEY_LEN, NULL, T0, &p,
                                       &why), KEYS_AUTH_BAD_SECRET);
    assert_string_equal(why, "secret does not match");
    assert_no_secret(why, a.text);
    assert_int_equal(auth(reg, a.text, NULL, T0), KEYS_AUTH_OK);
    assert_int_equal(auth(reg, b.text, NULL, T0), KEYS_AUTH_OK);
    drop(&a);
    drop(&b);
    keys_free(reg);
}

/* --- revoke and expire ---------------------------------------------------- */

static void test_revoke(void **state)
{
    keys_reg_t *reg = keys_new();
    json_t *rec, *again;
    principal_t *held = NULL;
    const char *why;
    tkey_t k;

    create(reg, "acme", "{\"subscribe\":[\">\"]}", NULL, 0, &k);
    assert_int_equal(keys_authenticate(reg, k.text, APIKEY_LEN, NULL, T0,
                                       &held, &why), KEYS_AUTH_OK);
    assert_int_equal(keys_revoke(reg, k.id, APIKEY_ID_LEN, "other", 5,
                                 T0 + 1, &rec), KEYS_ENOTFOUND);
    assert_null(rec);
    assert_int_equal(keys_revoke(reg, S("a1B2c3D4e5F6"), NULL, 0, T0, &rec),
                     KEYS_ENOTFOUND);
    assert_int_equal(keys_revoke(reg, S("bad"), NULL, 0, T0, &rec),
                     KEYS_ENOTFOUND);
    assert_int_equal(keys_revoke(reg, k.id, APIKEY_ID_LEN, S("acme"), T0 + 5,
                                 &rec), 0);
    assert_true(json_is_true(json_object_get(rec, "revoked")));
    assert_int_equal(json_integer_value(json_object_get(rec, "revoked_ms")),
                     T0 + 5);
    assert_int_equal(keys_authenticate(reg, k.text, APIKEY_LEN, NULL, T0 + 6,
                                       &(principal_t *){ NULL }, &why),
                     KEYS_AUTH_REVOKED);
    assert_string_equal(why, "key revoked");
    assert_int_equal(keys_status(reg, k.id, APIKEY_ID_LEN, T0 + 6),
                     KEYS_AUTH_REVOKED);
    /* revoking again changes nothing (superadmin form: no tenant) */
    assert_int_equal(keys_revoke(reg, k.id, APIKEY_ID_LEN, NULL, 0, T0 + 99,
                                 &again), 0);
    assert_true(json_equal(rec, again));
    /* a principal handed out before stays intact: callers re-check */
    assert_true(principal_can_subscribe(held, S("a.b")));
    principal_unref(held);
    json_decref(rec);
    json_decref(again);
    drop(&k);
    keys_free(reg);
}

/* The secret is checked before the state: a wrong secret for a revoked
 * key says bad_secret, so an id alone reveals nothing. */
static void test_secret_checked_first(void **state)
{
    keys_reg_t *reg = keys_new();
    char forged[APIKEY_LEN + 1];
    json_t *rec;
    tkey_t a, b;

    create(reg, "t", NULL, NULL, SECOND, &a);
    create(reg, "t", NULL, "[\"10.0.0.0/8\"]", 0, &b);
    assert_int_equal(keys_revoke(reg, a.id, APIKEY_ID_LEN, NULL, 0, T0, &rec),
                     0);
    json_decref(rec);
    memcpy(forged, b.text, sizeof forged);
    memcpy(forged + APIKEY_PREFIX_LEN, a.id, APIKEY_ID_LEN);
    assert_int_equal(auth(reg, forged, NULL, T0 + 2 * SECOND),
                     KEYS_AUTH_BAD_SECRET);
    memcpy(forged, a.text, sizeof forged);
    memcpy(forged + APIKEY_PREFIX_LEN, b.id, APIKEY_ID_LEN);
    assert_int_equal(auth(reg, forged, "192.168.0.1", T0),
                     KEYS_AUTH_BAD_SECRET);
    /* with the right secret: revoked beats expired, then the allowlist */
    assert_int_equal(auth(reg, a.text, NULL, T0 + 2 * SECOND),
                     KEYS_AUTH_REVOKED);
    assert_int_equal(auth(reg, b.text, "192.168.0.1", T0),
                     KEYS_AUTH_IP_NOT_ALLOWED);
    drop(&a);
    drop(&b);
    keys_free(reg);
}

static void test_expire(void **state)
{
    keys_reg_t *reg = keys_new();
    const char *why;
    principal_t *p;
    tkey_t k;

    create(reg, "t", NULL, NULL, 10 * SECOND, &k);
    assert_int_equal(keys_authenticate(reg, k.text, APIKEY_LEN, NULL,
                                       T0 + 10 * SECOND - 1, &p, &why),
                     KEYS_AUTH_OK);
    assert_int_equal(p->expires_ms, T0 + 10 * SECOND);
    assert_false(principal_expired(p, T0 + 10 * SECOND - 1));
    assert_true(principal_expired(p, T0 + 10 * SECOND));
    principal_unref(p);
    assert_int_equal(keys_authenticate(reg, k.text, APIKEY_LEN, NULL,
                                       T0 + 10 * SECOND, &p, &why),
                     KEYS_AUTH_EXPIRED);
    assert_string_equal(why, "key expired");
    assert_int_equal(keys_status(reg, k.id, APIKEY_ID_LEN, T0 + 10 * SECOND),
                     KEYS_AUTH_EXPIRED);
    assert_int_equal(keys_status(reg, k.id, APIKEY_ID_LEN, T0), KEYS_AUTH_OK);
    drop(&k);
    keys_free(reg);
}

/* --- rotate --------------------------------------------------------------- */

static void test_rotate_grace(void **state)
{
    keys_reg_t *reg = keys_new();
    char fresh[APIKEY_LEN + 1], err[KEYS_ERR_LEN];
    char hex_old[2 * APIKEY_HASH_LEN + 1], hex_new[2 * APIKEY_HASH_LEN + 1];
    principal_t *p;
    const char *why;
    json_t *rec;
    tkey_t k;

    create(reg, "acme", "{\"publish\":[\"a\"]}", NULL, 0, &k);
    assert_int_equal(keys_rotate(reg, k.id, APIKEY_ID_LEN, S("acme"),
                                 5 * SECOND, T0 + SECOND, fresh, &rec, err,
                                 sizeof err), 0);
    /* same id, new secret */
    assert_int_equal(strlen(fresh), APIKEY_LEN);
    assert_memory_equal(fresh, k.text, APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1);
    assert_string_not_equal(fresh, k.text);
    assert_int_equal(apikey_parse(fresh, APIKEY_LEN, NULL), 0);
    hex_of(k.text, hex_old);
    hex_of(fresh, hex_new);
    assert_string_equal(json_string_value(json_object_get(rec, "hash")),
                        hex_new);
    assert_string_equal(json_string_value(json_object_get(rec, "prev_hash")),
                        hex_old);
    assert_int_equal(json_integer_value(json_object_get(
                         rec, "prev_valid_until_ms")), T0 + 6 * SECOND);
    json_decref(rec);

    /* within grace both work; the old one says so */
    assert_int_equal(keys_authenticate(reg, k.text, APIKEY_LEN, NULL,
                                       T0 + 6 * SECOND - 1, &p, &why),
                     KEYS_AUTH_OK);
    assert_non_null(strstr(why, "grace"));
    assert_string_equal(p->id, k.id);
    principal_unref(p);
    assert_int_equal(auth(reg, fresh, NULL, T0 + 2 * SECOND), KEYS_AUTH_OK);
    /* at the end of grace the old one is refused, the new one works */
    assert_int_equal(keys_authenticate(reg, k.text, APIKEY_LEN, NULL,
                                       T0 + 6 * SECOND, &p, &why),
                     KEYS_AUTH_BAD_SECRET);
    assert_non_null(strstr(why, "grace period over"));
    assert_int_equal(auth(reg, fresh, NULL, T0 + 6 * SECOND), KEYS_AUTH_OK);
    assert_int_equal(auth(reg, fresh, NULL, T0 + 1000 * HOUR), KEYS_AUTH_OK);
    drop(&k);
    keys_free(reg);
}

static void test_rotate_zero_grace_and_twice(void **state)
{
    keys_reg_t *reg = keys_new();
    char k2[APIKEY_LEN + 1], k3[APIKEY_LEN + 1], err[KEYS_ERR_LEN];
    json_t *rec;
    tkey_t k;

    create(reg, "t", NULL, NULL, 0, &k);
    assert_int_equal(keys_rotate(reg, k.id, APIKEY_ID_LEN, NULL, 0, 0, T0, k2,
                                 &rec, err, sizeof err), 0);
    json_decref(rec);
    assert_int_equal(auth(reg, k.text, NULL, T0), KEYS_AUTH_BAD_SECRET);
    assert_int_equal(auth(reg, k2, NULL, T0), KEYS_AUTH_OK);
    /* a second rotation replaces the previous secret: only two work */
    assert_int_equal(keys_rotate(reg, k.id, APIKEY_ID_LEN, NULL, 0, HOUR, T0,
                                 k3, &rec, err, sizeof err), 0);
    json_decref(rec);
    assert_int_equal(auth(reg, k.text, NULL, T0 + 1), KEYS_AUTH_BAD_SECRET);
    assert_int_equal(auth(reg, k2, NULL, T0 + 1), KEYS_AUTH_OK);
    assert_int_equal(auth(reg, k3, NULL, T0 + 1), KEYS_AUTH_OK);
    assert_int_equal(auth(reg, k2, NULL, T0 + HOUR), KEYS_AUTH_BAD_SECRET);
    assert_int_equal(auth(reg, k3, NULL, T0 + HOUR), KEYS_AUTH_OK);
    drop(&k);
    keys_free(reg);
}

static void test_rotate_errors(void **state)
{
    keys_reg_t *reg = keys_new();
    char fresh[APIKEY_LEN + 1], err[KEYS_ERR_LEN];
    json_t *rec;
    tkey_t a, b;

    create(reg, "acme", NULL, NULL, 0, &a);
    create(reg, "acme", NULL, NULL, SECOND, &b);
    assert_int_equal(keys_rotate(reg, a.id, APIKEY_ID_LEN, NULL, 0, -1, T0,
                                 fresh, &rec, err, sizeof err), KEYS_EINVAL);
    assert_non_null(strstr(err, "grace"));
    assert_int_equal(keys_rotate(reg, a.id, APIKEY_ID_LEN, NULL, 0,
                                 KEYS_GRACE_MAX_MS + 1, T0, fresh, &rec, err,
                                 sizeof err), KEYS_EINVAL);
    assert_int_equal(keys_rotate(reg, a.id, APIKEY_ID_LEN, S("other"), 0, T0,
                                 fresh, &rec, err, sizeof err),
                     KEYS_ENOTFOUND);
    assert_int_equal(fresh[0], '\0');
    assert_null(rec);
    assert_int_equal(keys_rotate(reg, S("zzzzzzzzzzzz"), NULL, 0, 0, T0,
                                 fresh, &rec, err, sizeof err),
                     KEYS_ENOTFOUND);
    assert_int_equal(keys_rotate(reg, S("zz"), NULL, 0, 0, T0, fresh, &rec,
                                 err, sizeof err), KEYS_ENOTFOUND);
    assert_int_equal(keys_rotate(reg, b.id, APIKEY_ID_LEN, NULL, 0, 0,
                                 T0 + SECOND, fresh, &rec, err, sizeof err),
                     KEYS_ESTATE);
    assert_non_null(strstr(err, "expired"));
    assert_int_equal(keys_revoke(reg, a.id, APIKEY_ID_LEN, NULL, 0, T0, &rec),
                     0);
    json_decref(rec);
    assert_int_equal(keys_rotate(reg, a.id, APIKEY_ID_LEN, NULL, 0, 0, T0,
                                 fresh, &rec, err, sizeof err), KEYS_ESTATE);
    assert_non_null(strstr(err, "revoked"));
    assert_int_equal(fresh[0], '\0');
    /* nothing changed: the original secrets still decide */
    assert_int_equal(auth(reg, a.text, NULL, T0), KEYS_AUTH_REVOKED);
    assert_int_equal(auth(reg, b.text, NULL, T0), KEYS_AUTH_OK);
    drop(&a);
    drop(&b);
    keys_free(reg);
}

/* --- IP allowlist --------------------------------------------------------- */

static void test_ip_allowlist(void **state)
{
    keys_reg_t *reg = keys_new();
    tkey_t k, open;

    create(reg, "t", NULL, "[\"10.0.0.0/8\",\"2001:db8::/32\"]", 0, &k);
    create(reg, "t", NULL, "[]", 0, &open);
    assert_int_equal(auth(reg, k.text, "10.1.2.3", T0), KEYS_AUTH_OK);
    assert_int_equal(auth(reg, k.text, "::ffff:10.1.2.3", T0), KEYS_AUTH_OK);
    assert_int_equal(auth(reg, k.text, "2001:db8::42", T0), KEYS_AUTH_OK);
    assert_int_equal(auth(reg, k.text, "11.0.0.1", T0),
                     KEYS_AUTH_IP_NOT_ALLOWED);
    assert_int_equal(auth(reg, k.text, "2001:db9::1", T0),
                     KEYS_AUTH_IP_NOT_ALLOWED);
    assert_int_equal(auth(reg, k.text, "not an ip", T0),
                     KEYS_AUTH_IP_NOT_ALLOWED);
    assert_int_equal(auth(reg, k.text, NULL, T0), KEYS_AUTH_IP_NOT_ALLOWED);
    assert_int_equal(auth(reg, open.text, "203.0.113.9", T0), KEYS_AUTH_OK);
    assert_int_equal(auth(reg, open.text, NULL, T0), KEYS_AUTH_OK);
    /* the same rule by id alone, for tokens the key minted */
    assert_true(keys_ip_allowed(reg, k.id, APIKEY_ID_LEN, "10.9.9.9"));
    assert_false(keys_ip_allowed(reg, k.id, APIKEY_ID_LEN, "11.0.0.1"));
    assert_false(keys_ip_allowed(reg, k.id, APIKEY_ID_LEN, NULL));
    assert_true(keys_ip_allowed(reg, open.id, APIKEY_ID_LEN, "203.0.113.9"));
    assert_true(keys_ip_allowed(reg, "nosuchkey000", APIKEY_ID_LEN, "11.0.0.1"));
    drop(&k);
    drop(&open);
    keys_free(reg);
}

/* --- views ---------------------------------------------------------------- */

static void test_list_no_secret(void **state)
{
    keys_reg_t *reg = keys_new();
    char fresh[APIKEY_LEN + 1], err[KEYS_ERR_LEN];
    json_t *list, *rec, *one;
    tkey_t a, b;

    create(reg, "acme", SPEC_WEBHOOKS, "[\"10.0.0.0/8\"]", HOUR, &a);
    create(reg, "beta", NULL, NULL, 0, &b);
    assert_int_equal(keys_rotate(reg, a.id, APIKEY_ID_LEN, NULL, 0, HOUR, T0,
                                 fresh, &rec, err, sizeof err), 0);
    json_decref(rec);
    assert_int_equal(keys_record_use(reg, a.id, APIKEY_ID_LEN, T0 + 5,
                                     "10.0.0.1", "/auth/token", "ok"), 0);

    list = keys_list(reg, NULL, 0, T0);
    assert_int_equal(json_array_size(list), 2);
    assert_json_no_secret(list, a.text);
    assert_json_no_secret(list, fresh);
    assert_json_no_secret(list, b.text);
    json_decref(list);

    list = keys_list(reg, S("acme"), T0);
    assert_int_equal(json_array_size(list), 1);
    one = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(one, "id")), a.id);
    assert_string_equal(json_string_value(json_object_get(one, "status")),
                        "active");
    assert_string_equal(json_string_value(json_object_get(one, "name")),
                        "test key");
    assert_string_equal(json_string_value(json_object_get(one, "created_at")),
                        "2023-11-14T22:13:20.000Z");
    assert_string_equal(json_string_value(json_object_get(one, "expires_at")),
                        "2023-11-14T23:13:20.000Z");
    assert_string_equal(json_string_value(json_object_get(one,
                                                          "last_used_at")),
                        "2023-11-14T22:13:20.005Z");
    assert_true(json_is_string(json_object_get(one, "previous_valid_until")));
    assert_true(json_is_null(json_object_get(one, "revoked_at")));
    assert_null(json_object_get(one, "superadmin"));
    assert_json_text(json_object_get(one, "permissions"), SPEC_WEBHOOKS);
    json_decref(list);

    list = keys_list(reg, S("nobody"), T0);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    list = keys_list(reg, S("beta"), T0 + 2 * HOUR);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    list = keys_list(reg, S("acme"), T0 + 2 * HOUR);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(list, 0), "status")), "expired");
    json_decref(list);

    assert_int_equal(keys_get(reg, a.id, APIKEY_ID_LEN, S("acme"), T0, &one),
                     0);
    assert_json_no_secret(one, a.text);
    assert_json_no_secret(one, fresh);
    json_decref(one);
    assert_int_equal(keys_get(reg, a.id, APIKEY_ID_LEN, S("beta"), T0, &one),
                     KEYS_ENOTFOUND);
    assert_null(one);
    drop(&a);
    drop(&b);
    keys_free(reg);
}

static void test_usage_log(void **state)
{
    keys_reg_t *reg = keys_new();
    json_t *log, *e;
    char ip[32];
    tkey_t k;
    int i;

    create(reg, "acme", NULL, NULL, 0, &k);
    assert_int_equal(keys_usage(reg, k.id, APIKEY_ID_LEN, NULL, 0, &log), 0);
    assert_int_equal(json_array_size(log), 0);
    json_decref(log);
    assert_int_equal(keys_record_use(reg, k.id, APIKEY_ID_LEN, T0, "10.0.0.1",
                                     "/auth/token", "ok"), 0);
    assert_int_equal(keys_record_use(reg, k.id, APIKEY_ID_LEN, T0 + 1,
                                     "::1", "/events?token=" "SECRETTOKEN",
                                     "forbidden"), 0);
    assert_int_equal(keys_record_use(reg, k.id, APIKEY_ID_LEN, T0 + 2,
                                     "bad\nip", NULL, "rate\x01limited"), 0);
    assert_int_equal(keys_usage(reg, k.id, APIKEY_ID_LEN, S("acme"), &log), 0);
    assert_int_equal(json_array_size(log), 3);
    e = json_array_get(log, 0);                /* newest first */
    assert_string_equal(json_string_value(json_object_get(e, "time")),
                        "2023-11-14T22:13:20.002Z");
    assert_string_equal(json_string_value(json_object_get(e, "ip")),
                        "bad?ip");
    assert_string_equal(json_string_value(json_object_get(e, "endpoint")), "");
    assert_string_equal(json_string_value(json_object_get(e, "outcome")),
                        "rate?limited");
    e = json_array_get(log, 1);
    assert_string_equal(json_string_value(json_object_get(e, "endpoint")),
                        "/events");
    e = json_array_get(log, 2);
    assert_string_equal(json_string_value(json_object_get(e, "time")),
                        "2023-11-14T22:13:20.000Z");
    assert_string_equal(json_string_value(json_object_get(e, "ip")),
                        "10.0.0.1");
    assert_string_equal(json_string_value(json_object_get(e, "endpoint")),
                        "/auth/token");
    assert_string_equal(json_string_value(json_object_get(e, "outcome")),
                        "ok");
    assert_json_no_secret(log, k.text);
    {
        char *text = json_dumps(log, 0);

        assert_null(strstr(text, "SECRETTOKEN"));
        free(text);
    }
    json_decref(log);

    /* bounded: the last KEYS_USAGE_MAX stay, newest first */
    for (i = 0; i < 150; i++) {
        snprintf(ip, sizeof ip, "10.0.0.%d", i);
        assert_int_equal(keys_record_use(reg, k.id, APIKEY_ID_LEN, T0 + 10 + i,
                                         ip, "/x", "ok"), 0);
    }
    assert_int_equal(keys_usage(reg, k.id, APIKEY_ID_LEN, NULL, 0, &log), 0);
    assert_int_equal(json_array_size(log), KEYS_USAGE_MAX);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, 0), "ip")), "10.0.0.149");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, KEYS_USAGE_MAX - 1), "ip")),
                        "10.0.0.50");
    json_decref(log);

    assert_int_equal(keys_usage(reg, k.id, APIKEY_ID_LEN, S("beta"), &log),
                     KEYS_ENOTFOUND);
    assert_null(log);
    assert_int_equal(keys_usage(reg, S("zzzzzzzzzzzz"), NULL, 0, &log),
                     KEYS_ENOTFOUND);
    assert_int_equal(keys_record_use(reg, S("zzzzzzzzzzzz"), T0, NULL, NULL,
                                     NULL), KEYS_ENOTFOUND);
    drop(&k);
    keys_free(reg);
}

static void test_usage_field_caps(void **state)
{
    keys_reg_t *reg = keys_new();
    char big[512];
    json_t *log, *e;
    tkey_t k;

    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    create(reg, "t", NULL, NULL, 0, &k);
    assert_int_equal(keys_record_use(reg, k.id, APIKEY_ID_LEN, T0, big, big,
                                     big), 0);
    assert_int_equal(keys_usage(reg, k.id, APIKEY_ID_LEN, NULL, 0, &log), 0);
    e = json_array_get(log, 0);
    assert_int_equal(json_string_length(json_object_get(e, "ip")),
                     KEYS_USE_IP_MAX);
    assert_int_equal(json_string_length(json_object_get(e, "endpoint")),
                     KEYS_USE_ENDPOINT_MAX);
    assert_int_equal(json_string_length(json_object_get(e, "outcome")),
                     KEYS_USE_OUTCOME_MAX);
    json_decref(log);
    drop(&k);
    keys_free(reg);
}

/* --- usage log persistence ------------------------------------------------ */

static void use(keys_reg_t *reg, const tkey_t *k, int64_t ms, const char *ip)
{
    assert_int_equal(keys_record_use(reg, k->id, APIKEY_ID_LEN, ms, ip,
                                     "POST /api/v1/publish?token=x", "ok"), 0);
}

/* The usage log of k in reg, newest first (public view). */
static json_t *usage_of(keys_reg_t *reg, const tkey_t *k)
{
    json_t *log = NULL;

    assert_int_equal(keys_usage(reg, k->id, APIKEY_ID_LEN, NULL, 0, &log), 0);
    return log;
}

static json_t *entry(json_int_t ms, const char *ip, const char *endpoint,
                     const char *outcome)
{
    json_t *e = json_pack("{s:I,s:s,s:s,s:s}", "ms", ms, "ip", ip,
                          "endpoint", endpoint, "outcome", outcome);

    assert_non_null(e);
    return e;
}

/* [n entries, ms from + 0 .. from + n - 1, ip "10.0.0.<i>"] */
static json_t *entries(size_t n, json_int_t from)
{
    json_t *a = json_array();
    char ip[32];
    size_t i;

    for (i = 0; i < n; i++) {
        snprintf(ip, sizeof ip, "10.0.%zu.%zu", i / 256, i % 256);
        json_array_append_new(a, entry(from + (json_int_t)i, ip, "GET /x",
                                       "ok"));
    }
    return a;
}

static void test_usage_dirty(void **state)
{
    keys_reg_t *reg = keys_new(), *other = keys_new();
    char err[KEYS_ERR_LEN];
    json_t *d, *log, *revoked;
    tkey_t a, b;
    int i;

    create(reg, "t", NULL, NULL, 0, &a);
    create(reg, "t", NULL, NULL, 0, &b);
    d = keys_usage_dirty(reg, 10);
    assert_json_text(d, "{}");                 /* nothing used yet */
    json_decref(d);

    use(reg, &a, T0, "10.0.0.1");
    use(reg, &a, T0 + 1, "bad\nip");
    d = keys_usage_dirty(reg, 10);
    assert_int_equal(json_object_size(d), 1);
    log = json_pack("[{s:I,s:s,s:s,s:s},{s:I,s:s,s:s,s:s}]",
                    "ms", (json_int_t)T0, "ip", "10.0.0.1",
                    "endpoint", "POST /api/v1/publish", "outcome", "ok",
                    "ms", (json_int_t)(T0 + 1), "ip", "bad?ip",
                    "endpoint", "POST /api/v1/publish", "outcome", "ok");
    assert_true(json_equal(json_object_get(d, a.id), log));  /* oldest first */
    json_decref(log);
    json_decref(d);
    d = keys_usage_dirty(reg, 10);
    assert_json_text(d, "{}");                 /* the flag was cleared */
    json_decref(d);

    /* max bounds one collection; the rest stay dirty for the next */
    use(reg, &a, T0 + 2, "::1");
    use(reg, &b, T0 + 3, "::1");
    d = keys_usage_dirty(reg, 0);
    assert_json_text(d, "{}");
    json_decref(d);
    d = keys_usage_dirty(reg, 1);
    assert_int_equal(json_object_size(d), 1);
    json_decref(d);
    d = keys_usage_dirty(reg, 1);
    assert_int_equal(json_object_size(d), 1);
    json_decref(d);
    d = keys_usage_dirty(reg, 1);
    assert_int_equal(json_object_size(d), 0);
    json_decref(d);

    /* a wrapped ring comes out oldest first, the last KEYS_USAGE_MAX */
    for (i = 0; i < 150; i++)
        use(reg, &b, T0 + 100 + i, "::1");
    d = keys_usage_dirty(reg, 10);
    log = json_object_get(d, b.id);
    assert_int_equal(json_object_size(d), 1);
    assert_int_equal(json_array_size(log), KEYS_USAGE_MAX);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(log, 0), "ms")), T0 + 150);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(log, KEYS_USAGE_MAX - 1), "ms")),
                     T0 + 249);
    json_decref(d);

    /* a replaced (revoked) record keeps its log and its dirty flag */
    assert_int_equal(keys_load(other, a.record, err, sizeof err), 0);
    assert_int_equal(keys_revoke(other, a.id, APIKEY_ID_LEN, NULL, 0, T0 + 5,
                                 &revoked), 0);
    use(reg, &a, T0 + 4, "::1");
    assert_int_equal(keys_load(reg, revoked, err, sizeof err), 0);
    assert_int_equal(auth(reg, a.text, NULL, T0 + 6), KEYS_AUTH_REVOKED);
    d = keys_usage_dirty(reg, 10);
    assert_int_equal(json_array_size(json_object_get(d, a.id)), 4);
    json_decref(d);
    log = usage_of(reg, &a);
    assert_int_equal(json_array_size(log), 4);
    json_decref(log);
    json_decref(revoked);
    drop(&a);
    drop(&b);
    keys_free(other);
    keys_free(reg);
}

static void test_usage_load_roundtrip(void **state)
{
    keys_reg_t *reg = keys_new(), *next = keys_new();
    char err[KEYS_ERR_LEN];
    json_t *d, *v, *log1, *log2, *view1, *view2;
    const char *id;
    tkey_t a, b, c;

    create(reg, "t", NULL, NULL, 0, &a);
    create(reg, "t", NULL, NULL, 0, &b);
    create(reg, "t", NULL, NULL, 0, &c);        /* never used */
    use(reg, &a, T0 + 1, "10.0.0.1");
    use(reg, &a, T0 + 2, "10.0.0.2");
    use(reg, &b, T0 + 3, "::1");
    d = keys_usage_dirty(reg, 10);
    assert_int_equal(json_object_size(d), 2);

    /* a restart: the records, then the stored usage logs */
    assert_int_equal(keys_load(next, a.record, err, sizeof err), 0);
    assert_int_equal(keys_load(next, b.record, err, sizeof err), 0);
    assert_int_equal(keys_load(next, c.record, err, sizeof err), 0);
    json_object_foreach(d, id, v)
        assert_int_equal(keys_usage_load(next, id, strlen(id), v, err,
                                         sizeof err), 0);
    log1 = usage_of(reg, &a);
    log2 = usage_of(next, &a);
    assert_true(json_equal(log1, log2));
    json_decref(log1);
    json_decref(log2);
    log1 = usage_of(reg, &b);
    log2 = usage_of(next, &b);
    assert_true(json_equal(log1, log2));
    json_decref(log1);
    json_decref(log2);
    log2 = usage_of(next, &c);
    assert_int_equal(json_array_size(log2), 0);
    json_decref(log2);
    /* last_used_at survives too */
    assert_int_equal(keys_get(reg, a.id, APIKEY_ID_LEN, NULL, 0, T0, &view1), 0);
    assert_int_equal(keys_get(next, a.id, APIKEY_ID_LEN, NULL, 0, T0, &view2), 0);
    assert_string_equal(json_string_value(json_object_get(view2, "last_used_at")),
                        "2023-11-14T22:13:20.002Z");
    assert_true(json_equal(view1, view2));
    json_decref(view1);
    json_decref(view2);
    /* loading is not a change to write back */
    v = keys_usage_dirty(next, 10);
    assert_json_text(v, "{}");
    json_decref(v);

    /* an unknown id, or no id at all, is ignored */
    v = json_object_get(d, a.id);
    assert_int_equal(keys_usage_load(next, S("ZZZZZZZZZZZZ"), v, err, sizeof err), 0);
    assert_int_equal(keys_usage_load(next, S("short"), v, err, sizeof err), 0);
    assert_int_equal(keys_usage_load(next, NULL, 0, v, err, sizeof err), 0);
    assert_int_equal(keys_count(next), 3);
    json_decref(d);
    drop(&a);
    drop(&b);
    drop(&c);
    keys_free(next);
    keys_free(reg);
}

static void test_usage_load_caps(void **state)
{
    keys_reg_t *reg = keys_new();
    char err[KEYS_ERR_LEN];
    json_t *arr, *log, *d;
    tkey_t k;

    create(reg, "t", NULL, NULL, 0, &k);
    /* longer than KEYS_USAGE_MAX: the newest KEYS_USAGE_MAX are kept */
    arr = entries(150, T0);
    assert_int_equal(keys_usage_load(reg, k.id, APIKEY_ID_LEN, arr, err,
                                     sizeof err), 0);
    json_decref(arr);
    log = usage_of(reg, &k);
    assert_int_equal(json_array_size(log), KEYS_USAGE_MAX);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, 0), "ip")), "10.0.0.149");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, KEYS_USAGE_MAX - 1), "ip")),
                        "10.0.0.50");
    json_decref(log);
    d = keys_usage_dirty(reg, 10);
    assert_json_text(d, "{}");
    json_decref(d);

    /* loaded entries go before those recorded already, which stay newest */
    keys_free(reg);
    reg = keys_new();
    assert_int_equal(keys_load(reg, k.record, err, sizeof err), 0);
    use(reg, &k, T0 + 5000, "192.0.2.1");
    arr = entries(KEYS_USAGE_MAX, T0);
    assert_int_equal(keys_usage_load(reg, k.id, APIKEY_ID_LEN, arr, err,
                                     sizeof err), 0);
    json_decref(arr);
    log = usage_of(reg, &k);
    assert_int_equal(json_array_size(log), KEYS_USAGE_MAX);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, 0), "ip")), "192.0.2.1");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, 1), "ip")), "10.0.0.99");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, KEYS_USAGE_MAX - 1), "ip")),
                        "10.0.0.1");             /* 10.0.0.0 fell off */
    json_decref(log);
    /* the ring still turns after a load */
    use(reg, &k, T0 + 6000, "192.0.2.2");
    d = keys_usage_dirty(reg, 10);
    log = json_object_get(d, k.id);
    assert_int_equal(json_array_size(log), KEYS_USAGE_MAX);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, KEYS_USAGE_MAX - 1), "ip")),
                        "192.0.2.2");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, 0), "ip")), "10.0.0.2");
    json_decref(d);
    /* an empty array changes nothing */
    arr = json_array();
    assert_int_equal(keys_usage_load(reg, k.id, APIKEY_ID_LEN, arr, err,
                                     sizeof err), 0);
    json_decref(arr);
    log = usage_of(reg, &k);
    assert_int_equal(json_array_size(log), KEYS_USAGE_MAX);
    json_decref(log);
    drop(&k);
    keys_free(reg);
}

static void test_usage_load_errors(void **state)
{
    static const struct {
        const char *entry;             /* JSON of the second entry */
        const char *err;               /* expected in the error text */
    } bad[] = {
        {"[]", "usage[1]: must be an object"},
        {"{\"ip\":\"\",\"endpoint\":\"\",\"outcome\":\"\"}", "usage[1]: ms"},
        {"{\"ms\":-1,\"ip\":\"\",\"endpoint\":\"\",\"outcome\":\"\"}", "ms"},
        {"{\"ms\":\"1\",\"ip\":\"\",\"endpoint\":\"\",\"outcome\":\"\"}", "ms"},
        {"{\"ms\":1.5,\"ip\":\"\",\"endpoint\":\"\",\"outcome\":\"\"}", "ms"},
        {"{\"ms\":253402300800000,\"ip\":\"\",\"endpoint\":\"\","
         "\"outcome\":\"\"}", "ms"},
        {"{\"ms\":1,\"endpoint\":\"\",\"outcome\":\"\"}", "ip"},
        {"{\"ms\":1,\"ip\":7,\"endpoint\":\"\",\"outcome\":\"\"}", "ip"},
        {"{\"ms\":1,\"ip\":\"a\\nb\",\"endpoint\":\"\",\"outcome\":\"\"}",
         "ip"},
        {"{\"ms\":1,\"ip\":\"a\\u007fb\",\"endpoint\":\"\",\"outcome\":\"\"}",
         "ip"},
        {"{\"ms\":1,\"ip\":\"\\u00e9\",\"endpoint\":\"\",\"outcome\":\"\"}",
         "ip"},
        {"{\"ms\":1,\"ip\":\"\",\"endpoint\":null,\"outcome\":\"\"}",
         "endpoint"},
        {"{\"ms\":1,\"ip\":\"\",\"endpoint\":\"\",\"outcome\":false}",
         "outcome"},
    };
    keys_reg_t *reg = keys_new();
    char err[KEYS_ERR_LEN], big[KEYS_USE_ENDPOINT_MAX + 2];
    json_t *arr, *log, *e;
    size_t i;
    tkey_t k;

    create(reg, "t", NULL, NULL, 0, &k);
    use(reg, &k, T0, "192.0.2.1");
    assert_int_equal(keys_usage_load(reg, k.id, APIKEY_ID_LEN, NULL, err,
                                     sizeof err), KEYS_EINVAL);
    arr = parse("{\"ms\":1}");
    assert_int_equal(keys_usage_load(reg, k.id, APIKEY_ID_LEN, arr, err,
                                     sizeof err), KEYS_EINVAL);
    assert_non_null(strstr(err, "array"));
    json_decref(arr);
    for (i = 0; i < NROWS(bad); i++) {
        arr = entries(1, T0);
        json_array_append_new(arr, parse(bad[i].entry));
        json_array_append_new(arr, entry(T0 + 2, "", "", ""));
        err[0] = '\0';
        if (keys_usage_load(reg, k.id, APIKEY_ID_LEN, arr, err, sizeof err) !=
            KEYS_EINVAL)
            fail_msg("entry %s accepted", bad[i].entry);
        if (strstr(err, bad[i].err) == NULL)
            fail_msg("entry %s: error \"%s\" lacks \"%s\"", bad[i].entry, err,
                     bad[i].err);
        json_decref(arr);
    }
    /* a NUL inside a member (jansson allows it when asked to) */
    e = entry(T0 + 1, "", "", "");
    json_object_set_new(e, "outcome", json_stringn("o\0k", 3));
    arr = json_array();
    json_array_append_new(arr, e);
    assert_int_equal(keys_usage_load(reg, k.id, APIKEY_ID_LEN, arr, err,
                                     sizeof err), KEYS_EINVAL);
    assert_non_null(strstr(err, "usage[0]: outcome"));
    json_decref(arr);
    /* each text member: its cap is fine, one byte more is not */
    memset(big, 'a', sizeof big);
    for (i = 0; i < 3; i++) {
        static const char *const names[] = {"ip", "endpoint", "outcome"};
        static const size_t caps[] = {KEYS_USE_IP_MAX, KEYS_USE_ENDPOINT_MAX,
                                      KEYS_USE_OUTCOME_MAX};
        int want;

        for (want = 0; want >= KEYS_EINVAL; want += KEYS_EINVAL) {
            e = entry(T0 + 1, "", "", "");
            json_object_set_new(e, names[i], json_stringn(big, caps[i] +
                                                          (want != 0)));
            arr = json_array();
            json_array_append_new(arr, e);
            if (keys_usage_load(reg, k.id, APIKEY_ID_LEN, arr, err,
                                sizeof err) != want)
                fail_msg("%s of %zu bytes: not %d", names[i],
                         caps[i] + (want != 0), want);
            json_decref(arr);
        }
    }
    /* refused arrays changed nothing: the recorded entry and the three
     * accepted at-cap entries (before it), no more */
    log = usage_of(reg, &k);
    assert_int_equal(json_array_size(log), 4);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(log, 0), "ip")), "192.0.2.1");
    json_decref(log);
    /* unknown members are ignored (a newer node's log loads) */
    e = entry(T0 - 1, "::1", "GET /", "ok");
    json_object_set_new(e, "future", json_true());
    arr = json_array();
    json_array_append_new(arr, e);
    assert_int_equal(keys_usage_load(reg, k.id, APIKEY_ID_LEN, arr, err,
                                     sizeof err), 0);
    json_decref(arr);
    log = usage_of(reg, &k);
    assert_int_equal(json_array_size(log), 5);
    assert_null(json_object_get(json_array_get(log, 4), "future"));
    json_decref(log);
    drop(&k);
    keys_free(reg);
}

typedef struct use_thread {
    keys_reg_t *reg;
    const tkey_t *k;
} use_thread_t;

static void *use_thread(void *arg)
{
    use_thread_t *t = arg;
    int i;

    for (i = 0; i < 2000; i++)
        keys_record_use(t->reg, t->k->id, APIKEY_ID_LEN, T0 + i, "::1", "/",
                        "ok");
    return NULL;
}

/* Collecting while a loop records never loses the final state. */
static void test_usage_dirty_threads(void **state)
{
    keys_reg_t *reg = keys_new();
    use_thread_t t = {.reg = reg};
    json_t *d, *last = NULL, *log;
    pthread_t th;
    tkey_t k;
    int n;

    create(reg, "t", NULL, NULL, 0, &k);
    t.k = &k;
    assert_int_equal(pthread_create(&th, NULL, use_thread, &t), 0);
    for (n = 0; n < 200; n++) {
        d = keys_usage_dirty(reg, 1);
        assert_non_null(d);
        if ((log = json_object_get(d, k.id)) != NULL) {
            json_decref(last);
            last = json_incref(log);
        }
        json_decref(d);
    }
    pthread_join(th, NULL);
    d = keys_usage_dirty(reg, 1);
    if ((log = json_object_get(d, k.id)) != NULL) {
        json_decref(last);
        last = json_incref(log);
    }
    json_decref(d);
    assert_non_null(last);
    assert_int_equal(json_array_size(last), KEYS_USAGE_MAX);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(last, KEYS_USAGE_MAX - 1), "ms")),
                     T0 + 1999);
    json_decref(last);
    drop(&k);
    keys_free(reg);
}

/* --- load ----------------------------------------------------------------- */

typedef struct scenario {
    tkey_t plain, listed, expiring, revoked, rotated, admin;
    char rotated_new[APIKEY_LEN + 1];
    json_t *records;               /* every record to persist, in order */
} scenario_t;

static void keep(scenario_t *s, json_t *rec)
{
    assert_non_null(rec);
    json_array_append(s->records, rec);
}

static void scenario_build(keys_reg_t *reg, scenario_t *s)
{
    char err[KEYS_ERR_LEN];
    json_t *rec;

    s->records = json_array();
    create(reg, "acme", SPEC_WEBHOOKS, NULL, 0, &s->plain);
    create(reg, "acme", NULL, "[\"10.0.0.0/8\"]", 0, &s->listed);
    create(reg, "beta", NULL, NULL, 10 * SECOND, &s->expiring);
    create(reg, "beta", NULL, NULL, 0, &s->revoked);
    create(reg, "beta", "{\"admin\":true}", NULL, 0, &s->rotated);
    keep(s, s->plain.record);
    keep(s, s->listed.record);
    keep(s, s->expiring.record);
    keep(s, s->revoked.record);
    keep(s, s->rotated.record);
    assert_int_equal(keys_bootstrap(reg, S("system"), T0, s->admin.text,
                                    &s->admin.record, err, sizeof err), 0);
    keep(s, s->admin.record);
    assert_int_equal(keys_revoke(reg, s->revoked.id, APIKEY_ID_LEN, NULL, 0,
                                 T0 + 1, &rec), 0);
    keep(s, rec);
    json_decref(rec);
    assert_int_equal(keys_rotate(reg, s->rotated.id, APIKEY_ID_LEN, NULL, 0,
                                 HOUR, T0 + 2, s->rotated_new, &rec, err,
                                 sizeof err), 0);
    keep(s, rec);
    json_decref(rec);
}

static void scenario_free(scenario_t *s)
{
    drop(&s->plain);
    drop(&s->listed);
    drop(&s->expiring);
    drop(&s->revoked);
    drop(&s->rotated);
    drop(&s->admin);
    json_decref(s->records);
}

/* Every behaviour the scenario set up, checked on reg. */
static void scenario_check(keys_reg_t *reg, const scenario_t *s)
{
    principal_t *p;
    const char *why;

    assert_int_equal(keys_count(reg), 6);
    assert_int_equal(keys_authenticate(reg, s->plain.text, APIKEY_LEN, NULL,
                                       T0, &p, &why), KEYS_AUTH_OK);
    assert_true(principal_can_publish(p, S("webhooks.x"), S("push")));
    assert_false(principal_can_publish(p, S("webhooks.x"), S("issues")));
    assert_int_equal(p->perm.max_connections, 100);
    principal_unref(p);
    assert_int_equal(auth(reg, s->listed.text, "10.9.9.9", T0), KEYS_AUTH_OK);
    assert_int_equal(auth(reg, s->listed.text, "9.9.9.9", T0),
                     KEYS_AUTH_IP_NOT_ALLOWED);
    assert_int_equal(auth(reg, s->expiring.text, NULL, T0 + 10 * SECOND - 1),
                     KEYS_AUTH_OK);
    assert_int_equal(auth(reg, s->expiring.text, NULL, T0 + 10 * SECOND),
                     KEYS_AUTH_EXPIRED);
    assert_int_equal(auth(reg, s->revoked.text, NULL, T0 + 3),
                     KEYS_AUTH_REVOKED);
    assert_int_equal(auth(reg, s->rotated.text, NULL, T0 + HOUR + 1),
                     KEYS_AUTH_OK);
    assert_int_equal(auth(reg, s->rotated.text, NULL, T0 + HOUR + 2),
                     KEYS_AUTH_BAD_SECRET);
    assert_int_equal(auth(reg, s->rotated_new, NULL, T0 + HOUR + 2),
                     KEYS_AUTH_OK);
    assert_int_equal(keys_authenticate(reg, s->admin.text, APIKEY_LEN, NULL,
                                       T0, &p, &why), KEYS_AUTH_OK);
    assert_int_equal(p->kind, PRINCIPAL_BOOTSTRAP);
    assert_true(p->superadmin);
    assert_true(principal_can_admin(p, S("acme")));
    assert_true(principal_can_subscribe(p, S(">")));
    principal_unref(p);
}

static void test_load_reproduces(void **state)
{
    keys_reg_t *reg = keys_new(), *copy = keys_new();
    char err[KEYS_ERR_LEN];
    json_t *l1, *l2;
    scenario_t s;
    size_t i;

    scenario_build(reg, &s);
    scenario_check(reg, &s);
    /* records as the store would keep them: text, then parsed again */
    for (i = 0; i < json_array_size(s.records); i++) {
        char *text = json_dumps(json_array_get(s.records, i), 0);
        json_t *back = parse(text);

        if (keys_load(copy, back, err, sizeof err) != 0)
            fail_msg("record %zu refused: %s", i, err);
        json_decref(back);
        free(text);
    }
    scenario_check(copy, &s);
    l1 = keys_list(reg, NULL, 0, T0 + 5);
    l2 = keys_list(copy, NULL, 0, T0 + 5);
    assert_true(json_equal(l1, l2));
    json_decref(l1);
    json_decref(l2);
    keys_free(copy);
    /* loading the same records again over live keys changes nothing */
    for (i = 0; i < json_array_size(s.records); i++)
        assert_int_equal(keys_load(reg, json_array_get(s.records, i), err,
                                   sizeof err), 0);
    scenario_check(reg, &s);
    scenario_free(&s);
    keys_free(reg);
}

/* Replication may deliver old copies late: they never undo a rotation or
 * a revocation. A replaced key keeps its usage log. */
static void test_load_stale_and_usage(void **state)
{
    keys_reg_t *reg = keys_new(), *other = keys_new();
    char fresh[APIKEY_LEN + 1], err[KEYS_ERR_LEN];
    json_t *rotated, *revoked, *unrevoked, *log;
    tkey_t k;

    create(other, "t", NULL, NULL, 0, &k);
    assert_int_equal(keys_rotate(other, k.id, APIKEY_ID_LEN, NULL, 0, 0,
                                 T0 + 10, fresh, &rotated, err, sizeof err),
                     0);
    assert_int_equal(keys_load(reg, rotated, err, sizeof err), 0);
    assert_int_equal(keys_record_use(reg, k.id, APIKEY_ID_LEN, T0, "::1", "/",
                                     "ok"), 0);
    assert_int_equal(keys_load(reg, k.record, err, sizeof err), 0);  /* older */
    assert_int_equal(auth(reg, k.text, NULL, T0 + 20), KEYS_AUTH_BAD_SECRET);
    assert_int_equal(auth(reg, fresh, NULL, T0 + 20), KEYS_AUTH_OK);

    assert_int_equal(keys_revoke(other, k.id, APIKEY_ID_LEN, NULL, 0, T0 + 30,
                                 &revoked), 0);
    assert_int_equal(keys_load(reg, revoked, err, sizeof err), 0);
    assert_int_equal(auth(reg, fresh, NULL, T0 + 40), KEYS_AUTH_REVOKED);
    /* even a newer copy that is not revoked does not revive it */
    unrevoked = json_deep_copy(rotated);
    json_object_set_new(unrevoked, "updated_ms", json_integer(T0 + 999));
    assert_int_equal(keys_load(reg, unrevoked, err, sizeof err), 0);
    assert_int_equal(auth(reg, fresh, NULL, T0 + 40), KEYS_AUTH_REVOKED);
    assert_int_equal(keys_usage(reg, k.id, APIKEY_ID_LEN, NULL, 0, &log), 0);
    assert_int_equal(json_array_size(log), 1);
    json_decref(log);
    json_decref(rotated);
    json_decref(revoked);
    json_decref(unrevoked);
    drop(&k);
    keys_free(other);
    keys_free(reg);
}

static void test_load_errors(void **state)
{
    static const struct {
        const char *member, *value;    /* value NULL: member removed */
        const char *want;
    } rows[] = {
        { "v", "2", "v: unsupported" },
        { "v", NULL, "v: unsupported" },
        { "id", "\"short\"", "id: must be 12" },
        { "id", "\"a1B2c3D4e5F!\"", "id: must be 12" },
        { "tenant", "\"a b\"", "tenant: must be" },
        { "tenant", "3", "tenant: must be a string" },
        { "name", "\"\"", "name: must be" },
        { "name", NULL, "name: must be a string" },
        { "hash", "\"00\"", "hash: must be 64 lowercase hex" },
        { "hash", NULL, "hash: must be 64" },
        { "prev_hash", "\"xyz\"", "prev_hash: must be 64" },
        { "prev_hash", "\"0000000000000000000000000000000000000000000000000000"
                       "000000000000\"", "prev_valid_until_ms" },
        { "created_ms", "-1", "created_ms: must be a time" },
        { "created_ms", NULL, "created_ms" },
        { "updated_ms", "\"now\"", "updated_ms" },
        { "expires_ms", "1e3", "expires_ms" },
        { "revoked", "\"no\"", "revoked: must be true or false" },
        { "revoked_ms", "-5", "revoked_ms: must be a time" },
        { "superadmin", "1", "superadmin: must be true or false" },
        { "perms", "{\"publish\":[\">.a\"]}", "publish[0]" },
        { "perms", "{\"root\":true}", "unknown member \"root\"" },
        { "cidrs", "[\"300.0.0.1\"]", "cidrs[0]" },
    };
    keys_reg_t *reg = keys_new(), *dst = keys_new();
    char err[KEYS_ERR_LEN], hex[2 * APIKEY_HASH_LEN + 1];
    json_t *not_object;
    tkey_t k;
    size_t i;

    create(reg, "t", SPEC_WEBHOOKS, "[\"::1\"]", 0, &k);
    hex_of(k.text, hex);
    for (i = 0; i < NROWS(rows); i++) {
        json_t *rec = json_deep_copy(k.record);
        int rc;

        if (rows[i].value)
            json_object_set_new(rec, rows[i].member, parse(rows[i].value));
        else
            json_object_del(rec, rows[i].member);
        err[0] = '\0';
        rc = keys_load(dst, rec, err, sizeof err);
        if (rc != KEYS_EINVAL || strstr(err, rows[i].want) == NULL)
            fail_msg("row %zu (%s): rc %d err \"%s\", want \"%s\"", i,
                     rows[i].member, rc, err, rows[i].want);
        assert_no_secret(err, k.text);
        json_decref(rec);
    }
    not_object = json_integer(1);
    assert_int_equal(keys_load(dst, not_object, err, sizeof err),
                     KEYS_EINVAL);
    json_decref(not_object);
    assert_non_null(strstr(err, "must be a JSON object"));
    assert_int_equal(keys_count(dst), 0);
    /* unknown members are ignored (records of newer versions) */
    json_object_set_new(k.record, "future", json_true());
    assert_int_equal(keys_load(dst, k.record, err, sizeof err), 0);
    assert_int_equal(auth(dst, k.text, "::1", T0), KEYS_AUTH_OK);
    drop(&k);
    keys_free(reg);
    keys_free(dst);
}

/* KEYS_MAX is enforced by load and by create. */
static void test_registry_full(void **state)
{
    static const char b62[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    keys_reg_t *reg = keys_new();
    char err[KEYS_ERR_LEN], id[APIKEY_ID_LEN + 1];
    json_t *rec;
    tkey_t k;
    size_t i, j, v;

    create(reg, "t", NULL, NULL, 0, &k);
    keys_free(reg);
    reg = keys_new();
    rec = json_deep_copy(k.record);
    for (i = 0; i <= KEYS_MAX; i++) {
        for (j = APIKEY_ID_LEN, v = i; j-- > 0; v /= 62)   /* ascending ids */
            id[j] = b62[v % 62];
        id[APIKEY_ID_LEN] = '\0';
        json_object_set_new(rec, "id", json_string(id));
        if (i < KEYS_MAX) {
            if (keys_load(reg, rec, err, sizeof err) != 0)
                fail_msg("load %zu: %s", i, err);
        } else {
            assert_int_equal(keys_load(reg, rec, err, sizeof err), KEYS_EFULL);
        }
    }
    assert_int_equal(keys_count(reg), KEYS_MAX);
    drop(&k);
    assert_int_equal(create_rc(reg, "t", NULL, NULL, 0, &k, err, sizeof err),
                     KEYS_EFULL);
    assert_null(k.record);
    json_decref(rec);
    keys_free(reg);
}

/* --- bootstrap, shared principals ----------------------------------------- */

static void test_bootstrap(void **state)
{
    keys_reg_t *reg = keys_new();
    char key[APIKEY_LEN + 1], err[KEYS_ERR_LEN];
    principal_t *p, *q;
    const char *why;
    json_t *rec, *list;

    assert_int_equal(keys_bootstrap(reg, S("bad tenant"), T0, key, &rec, err,
                                    sizeof err), KEYS_EINVAL);
    assert_null(rec);
    assert_int_equal(keys_bootstrap(reg, S("system"), T0, key, &rec, err,
                                    sizeof err), 0);
    assert_true(json_is_true(json_object_get(rec, "superadmin")));
    assert_int_equal(keys_authenticate(reg, key, APIKEY_LEN, NULL, T0, &p,
                                       &why), KEYS_AUTH_OK);
    assert_int_equal(keys_authenticate(reg, key, APIKEY_LEN, NULL, T0, &q,
                                       &why), KEYS_AUTH_OK);
    assert_ptr_equal(p, q);            /* one principal, shared */
    assert_int_equal(atomic_load(&p->refs), 3);
    principal_unref(q);
    assert_true(principal_can_admin(p, S("any-tenant")));
    assert_true(principal_can_publish(p, S("a.b"), NULL, 0));
    list = keys_list(reg, NULL, 0, T0);
    assert_true(json_is_true(json_object_get(json_array_get(list, 0),
                                             "superadmin")));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(list, 0), "name")), "bootstrap");
    assert_json_no_secret(list, key);
    json_decref(list);
    json_decref(rec);
    /* a principal outlives its registry */
    keys_free(reg);
    assert_string_equal(p->tenant, "system");
    principal_unref(p);
}

static void test_auth_names(void **state)
{
    assert_string_equal(keys_auth_name(KEYS_AUTH_OK), "ok");
    assert_string_equal(keys_auth_name(KEYS_AUTH_MALFORMED), "malformed");
    assert_string_equal(keys_auth_name(KEYS_AUTH_UNKNOWN), "unknown");
    assert_string_equal(keys_auth_name(KEYS_AUTH_BAD_SECRET), "bad_secret");
    assert_string_equal(keys_auth_name(KEYS_AUTH_REVOKED), "revoked");
    assert_string_equal(keys_auth_name(KEYS_AUTH_EXPIRED), "expired");
    assert_string_equal(keys_auth_name(KEYS_AUTH_IP_NOT_ALLOWED),
                        "ip_not_allowed");
    keys_free(NULL);
}

/* --- threads -------------------------------------------------------------- */

#define AUTH_THREADS 4
#define AUTH_ROUNDS 3000
#define ROTATIONS 300

typedef struct shared {
    keys_reg_t *reg;
    pthread_mutex_t mu;
    char current[APIKEY_LEN + 1];  /* the rotating key's latest text */
    unsigned gen;                  /* rotations behind current */
    unsigned begun;                /* rotations begun (>= gen) */
    char steady[APIKEY_LEN + 1];   /* never rotated */
    char id[APIKEY_ID_LEN + 1];
    int failures;
} shared_t;

static void *auth_thread(void *arg)
{
    shared_t *sh = arg;
    char key[APIKEY_LEN + 1];
    unsigned gen, gen_after;
    int i, bad = 0;

    for (i = 0; i < AUTH_ROUNDS; i++) {
        principal_t *p;
        const char *why;
        keys_auth_t r;

        pthread_mutex_lock(&sh->mu);
        memcpy(key, sh->current, sizeof key);
        gen = sh->gen;
        pthread_mutex_unlock(&sh->mu);
        r = keys_authenticate(sh->reg, key, APIKEY_LEN, "10.0.0.1", T0, &p,
                              &why);
        pthread_mutex_lock(&sh->mu);
        gen_after = sh->begun;
        pthread_mutex_unlock(&sh->mu);
        /* a copy two rotations old is legitimately refused */
        if (r == KEYS_AUTH_OK)
            principal_unref(p);
        else if (!(r == KEYS_AUTH_BAD_SECRET && gen_after >= gen + 2))
            bad++;
        if (keys_authenticate(sh->reg, sh->steady, APIKEY_LEN, "10.0.0.1", T0,
                              &p, &why) != KEYS_AUTH_OK)
            bad++;
        else
            principal_unref(p);
        keys_record_use(sh->reg, sh->id, APIKEY_ID_LEN, T0, "10.0.0.1",
                        "/auth/token", "ok");
    }
    pthread_mutex_lock(&sh->mu);
    sh->failures += bad;
    pthread_mutex_unlock(&sh->mu);
    return NULL;
}

static void test_threads(void **state)
{
    shared_t sh = { .reg = keys_new() };
    pthread_t th[AUTH_THREADS];
    char fresh[APIKEY_LEN + 1], err[KEYS_ERR_LEN];
    json_t *rec, *list;
    tkey_t rot, steady;
    int i;

    pthread_mutex_init(&sh.mu, NULL);
    create(sh.reg, "t", "{\"subscribe\":[\">\"]}", NULL, 0, &rot);
    create(sh.reg, "t", NULL, NULL, 0, &steady);
    memcpy(sh.current, rot.text, sizeof sh.current);
    memcpy(sh.steady, steady.text, sizeof sh.steady);
    memcpy(sh.id, rot.id, sizeof sh.id);
    for (i = 0; i < AUTH_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, auth_thread, &sh), 0);
    for (i = 0; i < ROTATIONS; i++) {
        /* counted before the rotation, so a reader never sees a secret
         * refused while the count still says it should work */
        pthread_mutex_lock(&sh.mu);
        sh.begun++;
        pthread_mutex_unlock(&sh.mu);
        assert_int_equal(keys_rotate(sh.reg, rot.id, APIKEY_ID_LEN, NULL, 0,
                                     HOUR, T0, fresh, &rec, err, sizeof err),
                         0);
        json_decref(rec);
        pthread_mutex_lock(&sh.mu);
        memcpy(sh.current, fresh, sizeof sh.current);
        sh.gen++;
        pthread_mutex_unlock(&sh.mu);
        if (i % 50 == 0) {
            list = keys_list(sh.reg, NULL, 0, T0);
            assert_int_equal(json_array_size(list), 2);
            json_decref(list);
        }
    }
    for (i = 0; i < AUTH_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(sh.failures, 0);
    assert_int_equal(auth(sh.reg, sh.current, NULL, T0), KEYS_AUTH_OK);
    assert_int_equal(keys_usage(sh.reg, rot.id, APIKEY_ID_LEN, NULL, 0, &rec),
                     0);
    assert_int_equal(json_array_size(rec), KEYS_USAGE_MAX);
    json_decref(rec);
    pthread_mutex_destroy(&sh.mu);
    drop(&rot);
    drop(&steady);
    keys_free(sh.reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_authenticate),
        cmocka_unit_test(test_record_json),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_create_name_and_cidr_limits),
        cmocka_unit_test(test_malformed_and_unknown),
        cmocka_unit_test(test_bad_secret),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_secret_checked_first),
        cmocka_unit_test(test_expire),
        cmocka_unit_test(test_rotate_grace),
        cmocka_unit_test(test_rotate_zero_grace_and_twice),
        cmocka_unit_test(test_rotate_errors),
        cmocka_unit_test(test_ip_allowlist),
        cmocka_unit_test(test_list_no_secret),
        cmocka_unit_test(test_usage_log),
        cmocka_unit_test(test_usage_field_caps),
        cmocka_unit_test(test_usage_dirty),
        cmocka_unit_test(test_usage_load_roundtrip),
        cmocka_unit_test(test_usage_load_caps),
        cmocka_unit_test(test_usage_load_errors),
        cmocka_unit_test(test_usage_dirty_threads),
        cmocka_unit_test(test_load_reproduces),
        cmocka_unit_test(test_load_stale_and_usage),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_registry_full),
        cmocka_unit_test(test_bootstrap),
        cmocka_unit_test(test_auth_names),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
