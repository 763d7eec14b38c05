/*
 * keys.c - the API key registry. See keys.h for the lifecycle, the JSON
 * forms and the locking.
 *
 * Layout. Records live in one array of pointers sorted by id: lookups are
 * a binary search (ids are 12 random characters, so no hashing is needed
 * and clients cannot shape the search), inserts a memmove (writes are
 * rare). What a rotation or a revocation changes is grouped in keys__st_t:
 * a change is made on a copy, the record JSON is built from the copy, and
 * only when that succeeded is the copy stored. So a call either changes
 * the key and returns what to persist, or changes nothing.
 *
 * Everything slow or fallible is done before taking the exclusive lock:
 * validating specs and records, building principals, generating and
 * hashing secrets. Under the lock there is only search, insert, swap and
 * JSON building for one record.
 *
 * Secrets. The plaintext exists only in the caller's key_out (and, while
 * authenticating, in the caller's buffer); the registry keeps SHA-256
 * digests, compares them with CRYPTO_memcmp (ct_equal) against both the
 * current and the previous digest whatever the outcome, and wipes its own
 * temporary digests.
 *
 * Usage log. A ring per record, allocated at its first use, under the
 * record's own mutex: a request costs that mutex and a copy, never I/O.
 * Persisting it is the caller's: a dirty flag per record lets a periodic
 * writer collect only what changed (keys_usage_dirty), and
 * keys_usage_load puts a stored log back in front of the ring.
 */
#include "auth/keys.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/cidr.h"
#include "core/clock.h"
#include "core/errmsg.h"
#include "core/hex.h"
#include "core/utf8.h"

#define KEYS__MS_MAX 253402300799999ll /* 9999-12-31T23:59:59.999Z */
#define KEYS__RECORD_V 1

typedef struct keys__use {
    int64_t ms;
    char ip[KEYS_USE_IP_MAX + 1];
    char endpoint[KEYS_USE_ENDPOINT_MAX + 1];
    char outcome[KEYS_USE_OUTCOME_MAX + 1];
} keys__use_t;

typedef struct keys__st {          /* what revoke and rotate change */
    uint8_t hash[APIKEY_HASH_LEN];
    uint8_t prev_hash[APIKEY_HASH_LEN];
    bool has_prev;
    int64_t prev_until_ms;         /* previous secret valid before this */
    int64_t rotated_ms;            /* 0 = never rotated */
    bool revoked;
    int64_t revoked_ms;
    int64_t updated_ms;            /* strictly increases with each change */
} keys__st_t;

typedef struct keys__rec {
    char id[APIKEY_ID_LEN + 1];
    char tenant[PRINCIPAL_TENANT_MAX + 1];
    size_t tenant_len;
    char name[KEYS_NAME_MAX + 1];
    size_t name_len;
    int64_t created_ms;
    int64_t expires_ms;            /* 0 = never */
    bool superadmin;
    cidr_list_t cidrs;             /* empty = any IP */
    principal_t *principal;        /* one reference held here */
    keys__st_t st;                 /* guarded by the registry lock */
    pthread_mutex_t use_mu;        /* guards the usage ring below */
    keys__use_t *uses;             /* KEYS_USAGE_MAX, allocated at first use */
    size_t use_next, use_n;
    int64_t last_used_ms;
    bool use_dirty;                /* changed since keys_usage_dirty */
} keys__rec_t;

struct keys_reg {
    pthread_rwlock_t lock;
    keys__rec_t **v;               /* sorted by id */
    size_t n, cap;
};

const char *keys_auth_name(keys_auth_t r)
{
    switch (r) {
    case KEYS_AUTH_OK:
        return "ok";
    case KEYS_AUTH_MALFORMED:
        return "malformed";
    case KEYS_AUTH_UNKNOWN:
        return "unknown";
    case KEYS_AUTH_BAD_SECRET:
        return "bad_secret";
    case KEYS_AUTH_REVOKED:
        return "revoked";
    case KEYS_AUTH_EXPIRED:
        return "expired";
    case KEYS_AUTH_IP_NOT_ALLOWED:
        return "ip_not_allowed";
    }
    return "unknown";
}

/* --- records -------------------------------------------------------------- */

static bool keys__valid_id(const char *s, size_t len)
{
    size_t i;

    if (s == NULL || len != APIKEY_ID_LEN)
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
              (c >= 'a' && c <= 'z')))
            return false;
    }
    return true;
}

static bool keys__valid_name(const char *s, size_t len)
{
    return s != NULL && len > 0 && len <= KEYS_NAME_MAX && utf8_printable(s, len);
}

static keys__rec_t *keys__rec_new(void)
{
    keys__rec_t *r = calloc(1, sizeof *r);

    if (r && pthread_mutex_init(&r->use_mu, NULL) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

static void keys__rec_free(keys__rec_t *r)
{
    if (r == NULL)
        return;
    cidr_list_free(&r->cidrs);
    principal_unref(r->principal);
    free(r->uses);
    pthread_mutex_destroy(&r->use_mu);
    OPENSSL_cleanse(&r->st, sizeof r->st);
    free(r);
}

/* Parses an array of CIDR strings (NULL = none) into r->cidrs. */
static int keys__parse_cidrs(keys__rec_t *r, const json_t *arr, char *err,
                             size_t cap)
{
    size_t i, n;

    if (arr == NULL || json_is_null(arr))
        return 0;
    if (!json_is_array(arr)) {
        errmsg(err, cap, "cidrs: must be an array of strings");
        return KEYS_EINVAL;
    }
    if ((n = json_array_size(arr)) > KEYS_CIDRS_MAX) {
        errmsg(err, cap, "cidrs: more than %d entries", KEYS_CIDRS_MAX);
        return KEYS_EINVAL;
    }
    if (n == 0)
        return 0;
    if ((r->cidrs.v = calloc(n, sizeof *r->cidrs.v)) == NULL) {
        errmsg(err, cap, "out of memory");
        return KEYS_EINTERNAL;
    }
    for (i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        int rc;

        if (!json_is_string(e)) {
            errmsg(err, cap, "cidrs[%zu]: must be a string", i);
            return KEYS_EINVAL;
        }
        rc = cidr_parse(json_string_value(e), json_string_length(e),
                        &r->cidrs.v[i]);
        if (rc != 0) {
            errmsg(err, cap, "cidrs[%zu]: %s", i, cidr_strerror(rc));
            return KEYS_EINVAL;
        }
        r->cidrs.n = i + 1;
    }
    return 0;
}

/*
 * Fills what create and load share: tenant, name, allowlist and the
 * principal (r->id, r->expires_ms and r->superadmin must be set). On error
 * r keeps whatever was filled; keys__rec_free cleans it.
 */
static int keys__rec_fill(keys__rec_t *r, const char *tenant,
                          size_t tenant_len, const char *name,
                          size_t name_len, const json_t *perms,
                          const json_t *cidrs, char *err, size_t cap)
{
    perm_t perm;
    int rc;

    if (!principal_valid_tenant(tenant, tenant_len)) {
        errmsg(err, cap, "tenant: must be 1 to %d characters of "
                  "[A-Za-z0-9_-]", PRINCIPAL_TENANT_MAX);
        return KEYS_EINVAL;
    }
    if (!keys__valid_name(name, name_len)) {
        errmsg(err, cap, "name: must be 1 to %d bytes of UTF-8 without "
                  "control characters", KEYS_NAME_MAX);
        return KEYS_EINVAL;
    }
    memcpy(r->tenant, tenant, tenant_len);
    r->tenant_len = tenant_len;
    memcpy(r->name, name, name_len);
    r->name_len = name_len;
    if ((rc = keys__parse_cidrs(r, cidrs, err, cap)))
        return rc;
    rc = perm_from_spec(perms, &perm, err, cap);
    if (rc != 0)
        return rc == PERM_ENOMEM ? KEYS_EINTERNAL : KEYS_EINVAL;
    r->principal = principal_new(r->superadmin ? PRINCIPAL_BOOTSTRAP
                                               : PRINCIPAL_API_KEY,
                                 tenant, tenant_len, r->id, APIKEY_ID_LEN,
                                 &perm, r->superadmin, r->expires_ms);
    if (r->principal == NULL) {
        perm_free(&perm);
        errmsg(err, cap, "out of memory");
        return KEYS_EINTERNAL;
    }
    return 0;
}

static void keys__hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Exactly 2 * APIKEY_HASH_LEN lowercase hex digits into out (one
 * spelling per digest, as keys__hex writes it). */
static bool keys__unhex_hash(const json_t *v, uint8_t out[APIKEY_HASH_LEN])
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);

    return json_is_string(v) && strspn(s, "0123456789abcdef") == len &&
           hex_decode(s, len, out, APIKEY_HASH_LEN);
}

static json_t *keys__cidrs_json(const keys__rec_t *r)
{
    json_t *a = json_array();
    char text[CIDR_FORMAT_LEN];
    size_t i;

    for (i = 0; a && i < r->cidrs.n; i++) {
        size_t n = cidr_format(&r->cidrs.v[i], text);

        if (json_array_append_new(a, json_stringn(text, n))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* The record to persist for r with state st; NULL without memory. */
static json_t *keys__record_json(const keys__rec_t *r, const keys__st_t *st)
{
    char hex[2 * APIKEY_HASH_LEN + 1];
    json_t *o;

    keys__hex(st->hash, APIKEY_HASH_LEN, hex);
    o = json_pack("{s:i,s:s,s:s%,s:s%,s:s,s:I,s:I,s:I,s:b,s:I,s:I,s:b,"
                  "s:o,s:o}",
                  "v", KEYS__RECORD_V, "id", r->id,
                  "tenant", r->tenant, r->tenant_len,
                  "name", r->name, r->name_len, "hash", hex,
                  "created_ms", (json_int_t)r->created_ms,
                  "updated_ms", (json_int_t)st->updated_ms,
                  "expires_ms", (json_int_t)r->expires_ms,
                  "revoked", st->revoked,
                  "revoked_ms", (json_int_t)st->revoked_ms,
                  "rotated_ms", (json_int_t)st->rotated_ms,
                  "superadmin", r->superadmin,
                  "perms", perm_to_spec(&r->principal->perm),
                  "cidrs", keys__cidrs_json(r));
    if (o && st->has_prev) {
        keys__hex(st->prev_hash, APIKEY_HASH_LEN, hex);
        if (json_object_set_new(o, "prev_hash", json_string(hex)) ||
            json_object_set_new(o, "prev_valid_until_ms",
                                json_integer(st->prev_until_ms))) {
            json_decref(o);
            o = NULL;
        }
    }
    OPENSSL_cleanse(hex, sizeof hex);
    return o;
}

/* An ISO 8601 string for ms, or null for 0. */
static json_t *keys__time_json(int64_t ms)
{
    char iso[CLOCK_ISO_LEN + 1];

    if (ms == 0)
        return json_null();
    clock_iso8601(ms, iso);
    return json_stringn(iso, CLOCK_ISO_LEN);
}

static bool keys__expired(const keys__rec_t *r, int64_t now_ms)
{
    return r->expires_ms != 0 && now_ms >= r->expires_ms;
}

/* The public view of r: nothing secret, nothing hashed. Takes use_mu for
 * last_used_ms; the caller holds the registry lock (any mode). */
static json_t *keys__view_json(keys__rec_t *r, int64_t now_ms)
{
    const char *status = r->st.revoked ? "revoked"
                       : keys__expired(r, now_ms) ? "expired" : "active";
    int64_t last;
    json_t *o;

    pthread_mutex_lock(&r->use_mu);
    last = r->last_used_ms;
    pthread_mutex_unlock(&r->use_mu);
    o = json_pack("{s:s,s:s%,s:s%,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
                  "id", r->id, "tenant", r->tenant, r->tenant_len,
                  "name", r->name, r->name_len, "status", status,
                  "created_at", keys__time_json(r->created_ms),
                  "expires_at", keys__time_json(r->expires_ms),
                  "revoked_at", keys__time_json(r->st.revoked_ms),
                  "rotated_at", keys__time_json(r->st.rotated_ms),
                  "previous_valid_until",
                  keys__time_json(r->st.has_prev ? r->st.prev_until_ms : 0),
                  "last_used_at", keys__time_json(last),
                  "permissions", perm_to_spec(&r->principal->perm),
                  "cidrs", keys__cidrs_json(r));
    if (o && r->superadmin &&
        json_object_set_new(o, "superadmin", json_true())) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* --- the index ------------------------------------------------------------ */

keys_reg_t *keys_new(void)
{
    keys_reg_t *reg = calloc(1, sizeof *reg);

    if (reg && pthread_rwlock_init(&reg->lock, NULL) != 0) {
        free(reg);
        return NULL;
    }
    return reg;
}

void keys_free(keys_reg_t *reg)
{
    size_t i;

    if (reg == NULL)
        return;
    for (i = 0; i < reg->n; i++)
        keys__rec_free(reg->v[i]);
    free(reg->v);
    pthread_rwlock_destroy(&reg->lock);
    free(reg);
}

size_t keys_count(keys_reg_t *reg)
{
    size_t n;

    pthread_rwlock_rdlock(&reg->lock);
    n = reg->n;
    pthread_rwlock_unlock(&reg->lock);
    return n;
}

/* The position of id in reg->v, or where it would go; *found says which.
 * id is APIKEY_ID_LEN bytes. Caller holds the lock. */
static size_t keys__search(const keys_reg_t *reg, const char *id, bool *found)
{
    size_t lo = 0, hi = reg->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(reg->v[mid]->id, id, APIKEY_ID_LEN);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

/* The record of id when it exists and belongs to tenant (NULL = any).
 * Caller holds the lock. */
static keys__rec_t *keys__find(const keys_reg_t *reg, const char *id,
                               size_t id_len, const char *tenant,
                               size_t tenant_len)
{
    keys__rec_t *r;
    bool found;
    size_t i;

    if (!keys__valid_id(id, id_len))
        return NULL;
    i = keys__search(reg, id, &found);
    if (!found)
        return NULL;
    r = reg->v[i];
    if (tenant && (tenant_len != r->tenant_len ||
                   memcmp(tenant, r->tenant, tenant_len) != 0))
        return NULL;
    return r;
}

/* Inserts r at position i. Caller holds the lock exclusively. */
static int keys__insert(keys_reg_t *reg, size_t i, keys__rec_t *r)
{
    keys__rec_t **v;
    size_t cap;

    if (reg->n == KEYS_MAX)
        return KEYS_EFULL;
    if (reg->n == reg->cap) {
        cap = reg->cap ? reg->cap * 2 : 16;
        if (cap > KEYS_MAX)
            cap = KEYS_MAX;
        if ((v = realloc(reg->v, cap * sizeof *v)) == NULL)
            return KEYS_EINTERNAL;
        reg->v = v;
        reg->cap = cap;
    }
    memmove(reg->v + i + 1, reg->v + i, (reg->n - i) * sizeof *reg->v);
    reg->v[i] = r;
    reg->n++;
    return 0;
}

/* --- create, revoke, rotate ----------------------------------------------- */

static int keys__create(keys_reg_t *reg, const keys_create_req_t *req,
                        bool superadmin, char key_out[APIKEY_LEN + 1],
                        json_t **record_out, char *err, size_t cap)
{
    keys__rec_t *r = NULL;
    json_t *rec_json = NULL;
    bool found;
    size_t pos;
    int rc = KEYS_EINVAL;

    memset(key_out, 0, APIKEY_LEN + 1);
    *record_out = NULL;
    if (req->ttl_ms < 0 || req->ttl_ms > KEYS_TTL_MAX_MS) {
        errmsg(err, cap, "ttl: must be 0 (never expires) up to %lld ms",
                  (long long)KEYS_TTL_MAX_MS);
        goto fail;
    }
    if (req->now_ms <= 0 || req->now_ms > KEYS__MS_MAX - KEYS_TTL_MAX_MS) {
        errmsg(err, cap, "now: not a plausible time");
        goto fail;
    }
    rc = KEYS_EINTERNAL;
    if ((r = keys__rec_new()) == NULL ||
        apikey_generate(r->id, key_out, r->st.hash) != 0) {
        errmsg(err, cap, "cannot generate a key");
        goto fail;
    }
    r->created_ms = req->now_ms;
    r->st.updated_ms = req->now_ms;
    r->expires_ms = req->ttl_ms ? req->now_ms + req->ttl_ms : 0;
    r->superadmin = superadmin;
    if ((rc = keys__rec_fill(r, req->tenant, req->tenant_len, req->name,
                             req->name_len, req->perms, req->cidrs, err,
                             cap)))
        goto fail;
    rc = KEYS_EINTERNAL;
    if ((rec_json = keys__record_json(r, &r->st)) == NULL) {
        errmsg(err, cap, "out of memory");
        goto fail;
    }
    pthread_rwlock_wrlock(&reg->lock);
    pos = keys__search(reg, r->id, &found);
    rc = found ? KEYS_EINTERNAL : keys__insert(reg, pos, r);
    pthread_rwlock_unlock(&reg->lock);
    if (rc != 0) {
        errmsg(err, cap, rc == KEYS_EFULL ? "too many keys"
                  : found ? "key id collision, try again" : "out of memory");
        goto fail;
    }
    *record_out = rec_json;
    return 0;
fail:
    json_decref(rec_json);
    keys__rec_free(r);
    OPENSSL_cleanse(key_out, APIKEY_LEN + 1);
    return rc;
}

int keys_create(keys_reg_t *reg, const keys_create_req_t *req,
                char key_out[APIKEY_LEN + 1], json_t **record_out, char *err,
                size_t errcap)
{
    return keys__create(reg, req, false, key_out, record_out, err, errcap);
}

int keys_bootstrap(keys_reg_t *reg, const char *tenant, size_t tenant_len,
                   int64_t now_ms, char key_out[APIKEY_LEN + 1],
                   json_t **record_out, char *err, size_t errcap)
{
    json_t *perms = json_pack("{s:[s],s:[s],s:[s],s:b}", "publish", ">",
                              "subscribe", ">", "history", ">", "admin", 1);
    keys_create_req_t req = {
        .tenant = tenant, .tenant_len = tenant_len,
        .name = "bootstrap", .name_len = 9,
        .perms = perms, .now_ms = now_ms,
    };
    int rc;

    if (perms == NULL) {
        memset(key_out, 0, APIKEY_LEN + 1);
        *record_out = NULL;
        errmsg(err, errcap, "out of memory");
        return KEYS_EINTERNAL;
    }
    rc = keys__create(reg, &req, true, key_out, record_out, err, errcap);
    json_decref(perms);
    return rc;
}

/* The next updated_ms: now, but always past the previous one. */
/* Later than the record's last change, within what keys_load accepts (a
 * record at the very end of time keeps that time: keys_load lets an equal
 * revoked record replace it). */
static int64_t keys__next_update(const keys__st_t *st, int64_t now_ms)
{
    if (now_ms > st->updated_ms)
        return now_ms;
    return st->updated_ms < KEYS__MS_MAX ? st->updated_ms + 1 : KEYS__MS_MAX;
}

int keys_revoke(keys_reg_t *reg, const char *id, size_t id_len,
                const char *tenant, size_t tenant_len, int64_t now_ms,
                json_t **record_out)
{
    keys__rec_t *r;
    keys__st_t st;
    int rc = KEYS_ENOTFOUND;

    memset(&st, 0, sizeof st);
    *record_out = NULL;
    pthread_rwlock_wrlock(&reg->lock);
    if ((r = keys__find(reg, id, id_len, tenant, tenant_len)) == NULL)
        goto out;
    st = r->st;
    if (!st.revoked) {
        st.revoked = true;
        st.revoked_ms = now_ms > 0 ? now_ms : 1;
        st.updated_ms = keys__next_update(&st, now_ms);
    }
    rc = KEYS_EINTERNAL;
    if ((*record_out = keys__record_json(r, &st)) == NULL)
        goto out;
    r->st = st;
    rc = 0;
out:
    pthread_rwlock_unlock(&reg->lock);
    OPENSSL_cleanse(&st, sizeof st);
    return rc;
}

/* A new key string with the given id (a fresh secret) and its hash. */
static int keys__new_secret(const char *id, char key_out[APIKEY_LEN + 1],
                            uint8_t hash[APIKEY_HASH_LEN])
{
    char fresh_id[APIKEY_ID_LEN + 1];

    if (apikey_generate(fresh_id, key_out, hash) != 0)
        return -1;
    memcpy(key_out + APIKEY_PREFIX_LEN, id, APIKEY_ID_LEN);
    return apikey_hash(key_out, APIKEY_LEN, hash);
}

int keys_rotate(keys_reg_t *reg, const char *id, size_t id_len,
                const char *tenant, size_t tenant_len, int64_t grace_ms,
                int64_t now_ms, char key_out[APIKEY_LEN + 1],
                json_t **record_out, char *err, size_t errcap)
{
    uint8_t hash[APIKEY_HASH_LEN];
    keys__rec_t *r;
    keys__st_t st;
    int rc = KEYS_EINVAL;

    memset(key_out, 0, APIKEY_LEN + 1);
    memset(&st, 0, sizeof st);
    *record_out = NULL;
    if (grace_ms < 0 || grace_ms > KEYS_GRACE_MAX_MS) {
        errmsg(err, errcap, "grace: must be 0 up to %lld ms",
                  (long long)KEYS_GRACE_MAX_MS);
        goto fail;
    }
    if (!keys__valid_id(id, id_len)) {
        errmsg(err, errcap, "no such key");
        rc = KEYS_ENOTFOUND;
        goto fail;
    }
    if (keys__new_secret(id, key_out, hash) != 0) {
        errmsg(err, errcap, "cannot generate a key");
        rc = KEYS_EINTERNAL;
        goto fail;
    }
    pthread_rwlock_wrlock(&reg->lock);
    if ((r = keys__find(reg, id, id_len, tenant, tenant_len)) == NULL) {
        errmsg(err, errcap, "no such key");
        rc = KEYS_ENOTFOUND;
    } else if (r->st.revoked || keys__expired(r, now_ms)) {
        errmsg(err, errcap, "key is %s", r->st.revoked ? "revoked"
                                                          : "expired");
        rc = KEYS_ESTATE;
    } else {
        st = r->st;
        memcpy(st.prev_hash, st.hash, APIKEY_HASH_LEN);
        memcpy(st.hash, hash, APIKEY_HASH_LEN);
        st.has_prev = true;
        st.prev_until_ms = now_ms + grace_ms;
        st.rotated_ms = now_ms > 0 ? now_ms : 1;
        st.updated_ms = keys__next_update(&st, now_ms);
        if ((*record_out = keys__record_json(r, &st)) != NULL) {
            r->st = st;
            rc = 0;
        } else {
            errmsg(err, errcap, "out of memory");
            rc = KEYS_EINTERNAL;
        }
    }
    pthread_rwlock_unlock(&reg->lock);
fail:
    OPENSSL_cleanse(hash, sizeof hash);
    OPENSSL_cleanse(&st, sizeof st);
    if (rc != 0)
        OPENSSL_cleanse(key_out, APIKEY_LEN + 1);
    return rc;
}

/* --- views ---------------------------------------------------------------- */

static int keys__by_created(const void *a, const void *b)
{
    const keys__rec_t *x = *(keys__rec_t *const *)a;
    const keys__rec_t *y = *(keys__rec_t *const *)b;

    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? -1 : 1;
    return memcmp(x->id, y->id, APIKEY_ID_LEN);
}

json_t *keys_list(keys_reg_t *reg, const char *tenant, size_t tenant_len,
                  int64_t now_ms)
{
    keys__rec_t **sel = NULL;
    json_t *arr = json_array();
    size_t i, n = 0;

    pthread_rwlock_rdlock(&reg->lock);
    if (arr == NULL || (reg->n && !(sel = malloc(reg->n * sizeof *sel))))
        goto fail;
    for (i = 0; i < reg->n; i++) {
        keys__rec_t *r = reg->v[i];

        if (tenant == NULL || (tenant_len == r->tenant_len &&
                               memcmp(tenant, r->tenant, tenant_len) == 0))
            sel[n++] = r;
    }
    if (n > 1)
        qsort(sel, n, sizeof *sel, keys__by_created);
    for (i = 0; i < n; i++)
        if (json_array_append_new(arr, keys__view_json(sel[i], now_ms)))
            goto fail;
    pthread_rwlock_unlock(&reg->lock);
    free(sel);
    return arr;
fail:
    pthread_rwlock_unlock(&reg->lock);
    free(sel);
    json_decref(arr);
    return NULL;
}

int keys_get(keys_reg_t *reg, const char *id, size_t id_len,
             const char *tenant, size_t tenant_len, int64_t now_ms,
             json_t **out)
{
    keys__rec_t *r;
    int rc = KEYS_ENOTFOUND;

    pthread_rwlock_rdlock(&reg->lock);
    *out = NULL;
    if ((r = keys__find(reg, id, id_len, tenant, tenant_len)) != NULL)
        rc = (*out = keys__view_json(r, now_ms)) ? 0 : KEYS_EINTERNAL;
    pthread_rwlock_unlock(&reg->lock);
    return rc;
}

/* --- load ----------------------------------------------------------------- */

/* An integer member in 0..KEYS__MS_MAX; absent gives 0 unless required. */
static int keys__ms(const json_t *o, const char *name, bool required,
                    int64_t *out, char *err, size_t cap)
{
    const json_t *v = json_object_get(o, name);

    *out = 0;
    if (v == NULL && !required)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > KEYS__MS_MAX) {
        errmsg(err, cap, "%s: must be a time in Unix milliseconds", name);
        return KEYS_EINVAL;
    }
    *out = json_integer_value(v);
    return 0;
}

static int keys__bool(const json_t *o, const char *name, bool required,
                      bool *out, char *err, size_t cap)
{
    const json_t *v = json_object_get(o, name);

    *out = false;
    if (v == NULL && !required)
        return 0;
    if (!json_is_boolean(v)) {
        errmsg(err, cap, "%s: must be true or false", name);
        return KEYS_EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

/* The state members of a record. */
static int keys__parse_state(const json_t *o, keys__st_t *st, char *err,
                             size_t cap)
{
    const json_t *prev = json_object_get(o, "prev_hash");
    int rc;

    if (!keys__unhex_hash(json_object_get(o, "hash"), st->hash)) {
        errmsg(err, cap, "hash: must be %d lowercase hex digits",
                  2 * APIKEY_HASH_LEN);
        return KEYS_EINVAL;
    }
    if (prev && !keys__unhex_hash(prev, st->prev_hash)) {
        errmsg(err, cap, "prev_hash: must be %d lowercase hex digits",
                  2 * APIKEY_HASH_LEN);
        return KEYS_EINVAL;
    }
    st->has_prev = prev != NULL;
    if ((rc = keys__ms(o, "prev_valid_until_ms", st->has_prev,
                       &st->prev_until_ms, err, cap)) ||
        (rc = keys__ms(o, "updated_ms", true, &st->updated_ms, err, cap)) ||
        (rc = keys__ms(o, "rotated_ms", false, &st->rotated_ms, err, cap)) ||
        (rc = keys__bool(o, "revoked", true, &st->revoked, err, cap)) ||
        (rc = keys__ms(o, "revoked_ms", st->revoked, &st->revoked_ms, err,
                       cap)))
        return rc;
    return 0;
}

/* A complete record from its JSON, or an error with *out NULL. */
static int keys__parse_record(const json_t *o, keys__rec_t **out, char *err,
                              size_t cap)
{
    const json_t *v = json_object_get(o, "v"), *id, *tenant, *name;
    keys__rec_t *r = NULL;
    int rc = KEYS_EINVAL;

    *out = NULL;
    if (!json_is_object(o)) {
        errmsg(err, cap, "record: must be a JSON object");
        goto fail;
    }
    if (!json_is_integer(v) || json_integer_value(v) != KEYS__RECORD_V) {
        errmsg(err, cap, "v: unsupported record version");
        goto fail;
    }
    id = json_object_get(o, "id");
    if (!json_is_string(id) ||
        !keys__valid_id(json_string_value(id), json_string_length(id))) {
        errmsg(err, cap, "id: must be %d characters of [0-9A-Za-z]",
                  APIKEY_ID_LEN);
        goto fail;
    }
    tenant = json_object_get(o, "tenant");
    name = json_object_get(o, "name");
    if (!json_is_string(tenant) || !json_is_string(name)) {
        errmsg(err, cap, "%s: must be a string",
                  json_is_string(tenant) ? "name" : "tenant");
        goto fail;
    }
    rc = KEYS_EINTERNAL;
    if ((r = keys__rec_new()) == NULL) {
        errmsg(err, cap, "out of memory");
        goto fail;
    }
    memcpy(r->id, json_string_value(id), APIKEY_ID_LEN);
    if ((rc = keys__parse_state(o, &r->st, err, cap)) ||
        (rc = keys__ms(o, "created_ms", true, &r->created_ms, err, cap)) ||
        (rc = keys__ms(o, "expires_ms", false, &r->expires_ms, err, cap)) ||
        (rc = keys__bool(o, "superadmin", false, &r->superadmin, err, cap)) ||
        (rc = keys__rec_fill(r, json_string_value(tenant),
                             json_string_length(tenant),
                             json_string_value(name), json_string_length(name),
                             json_object_get(o, "perms"),
                             json_object_get(o, "cidrs"), err, cap)))
        goto fail;
    *out = r;
    return 0;
fail:
    keys__rec_free(r);
    return rc;
}

/* Whether an incoming copy of a key should replace the one we hold. */
static bool keys__supersedes(const keys__rec_t *in, const keys__rec_t *cur)
{
    if (cur->st.revoked && !in->st.revoked)
        return false;
    return in->st.updated_ms >= cur->st.updated_ms;
}

int keys_load(keys_reg_t *reg, const json_t *record, char *err,
              size_t errcap)
{
    keys__rec_t *r, *old = NULL;
    bool found;
    size_t pos;
    int rc;

    if ((rc = keys__parse_record(record, &r, err, errcap)))
        return rc;
    pthread_rwlock_wrlock(&reg->lock);
    pos = keys__search(reg, r->id, &found);
    if (!found) {
        if ((rc = keys__insert(reg, pos, r)) == 0)
            r = NULL;
        else
            errmsg(err, errcap, rc == KEYS_EFULL ? "too many keys"
                                                    : "out of memory");
    } else if (keys__supersedes(r, reg->v[pos])) {
        /* the usage log is the registry's, not the record's: it moves */
        old = reg->v[pos];
        r->uses = old->uses;
        r->use_next = old->use_next;
        r->use_n = old->use_n;
        r->last_used_ms = old->last_used_ms;
        r->use_dirty = old->use_dirty;
        old->uses = NULL;
        reg->v[pos] = r;
        r = NULL;
    }
    pthread_rwlock_unlock(&reg->lock);
    keys__rec_free(old);
    keys__rec_free(r);                 /* not inserted: stale or an error */
    return rc;
}

/* --- authentication ------------------------------------------------------- */

static keys_auth_t keys__check(const keys__rec_t *r,
                               const uint8_t h[APIKEY_HASH_LEN],
                               const char *peer_ip, int64_t now_ms,
                               const char **why)
{
    const keys__st_t *st = &r->st;
    /* both digests are compared every time: no early exit on a match */
    bool cur = ct_equal(h, APIKEY_HASH_LEN, st->hash, APIKEY_HASH_LEN);
    bool prev = ct_equal(h, APIKEY_HASH_LEN, st->prev_hash, APIKEY_HASH_LEN);

    prev = prev && st->has_prev;
    if (!cur && !(prev && now_ms < st->prev_until_ms)) {
        *why = prev ? "previous secret of a rotated key, grace period over"
                    : "secret does not match";
        return KEYS_AUTH_BAD_SECRET;
    }
    if (st->revoked) {
        *why = "key revoked";
        return KEYS_AUTH_REVOKED;
    }
    if (keys__expired(r, now_ms)) {
        *why = "key expired";
        return KEYS_AUTH_EXPIRED;
    }
    if (r->cidrs.n > 0 &&
        (peer_ip == NULL ||
         !cidr_list_match(&r->cidrs, peer_ip, strlen(peer_ip)))) {
        *why = "client address not in the key's allowlist";
        return KEYS_AUTH_IP_NOT_ALLOWED;
    }
    *why = cur ? "ok" : "ok (previous secret, within its grace period)";
    return KEYS_AUTH_OK;
}

keys_auth_t keys_authenticate(keys_reg_t *reg, const char *key, size_t len,
                              const char *peer_ip, int64_t now_ms,
                              principal_t **principal_out,
                              const char **reason_out)
{
    char id[APIKEY_ID_LEN + 1];
    uint8_t h[APIKEY_HASH_LEN];
    const char *why = "not an API key";
    keys_auth_t res = KEYS_AUTH_MALFORMED;
    keys__rec_t *r;

    *principal_out = NULL;
    if (key == NULL || apikey_parse(key, len, id) != 0)
        goto out;
    if (apikey_hash(key, len, h) != 0) {
        why = "digest failed";
        res = KEYS_AUTH_BAD_SECRET;
        goto out;
    }
    pthread_rwlock_rdlock(&reg->lock);
    if ((r = keys__find(reg, id, APIKEY_ID_LEN, NULL, 0)) == NULL) {
        why = "no key with this id";
        res = KEYS_AUTH_UNKNOWN;
    } else if ((res = keys__check(r, h, peer_ip, now_ms, &why)) ==
               KEYS_AUTH_OK) {
        *principal_out = principal_ref(r->principal);
    }
    pthread_rwlock_unlock(&reg->lock);
    OPENSSL_cleanse(h, sizeof h);
out:
    if (reason_out)
        *reason_out = why;
    return res;
}

keys_auth_t keys_status(keys_reg_t *reg, const char *id, size_t id_len,
                        int64_t now_ms)
{
    keys_auth_t res = KEYS_AUTH_UNKNOWN;
    keys__rec_t *r;

    pthread_rwlock_rdlock(&reg->lock);
    if ((r = keys__find(reg, id, id_len, NULL, 0)) != NULL)
        res = r->st.revoked ? KEYS_AUTH_REVOKED
            : keys__expired(r, now_ms) ? KEYS_AUTH_EXPIRED : KEYS_AUTH_OK;
    pthread_rwlock_unlock(&reg->lock);
    return res;
}

bool keys_ip_allowed(keys_reg_t *reg, const char *id, size_t id_len, const char *ip)
{
    keys__rec_t *r;
    bool ok = true;

    pthread_rwlock_rdlock(&reg->lock);
    if ((r = keys__find(reg, id, id_len, NULL, 0)) != NULL && r->cidrs.n > 0)
        ok = ip && cidr_list_match(&r->cidrs, ip, strlen(ip));
    pthread_rwlock_unlock(&reg->lock);
    return ok;
}

/* --- usage log ------------------------------------------------------------ */

/* Copies NUL-terminated src into dst[0..cap], at most cap bytes, stopping
 * at stop (when not 0); bytes outside printable ASCII become '?'. */
static void keys__copy_text(char *dst, size_t cap, const char *src, char stop)
{
    size_t i;

    for (i = 0; src && i < cap && src[i] && src[i] != stop; i++)
        dst[i] = ((unsigned char)src[i] < 0x20 || (unsigned char)src[i] >= 0x7f)
                     ? '?' : src[i];
    dst[i] = '\0';
}

int keys_record_use(keys_reg_t *reg, const char *id, size_t id_len,
                    int64_t now_ms, const char *ip, const char *endpoint,
                    const char *outcome)
{
    keys__rec_t *r;
    keys__use_t *u;
    int rc = KEYS_ENOTFOUND;

    pthread_rwlock_rdlock(&reg->lock);
    if ((r = keys__find(reg, id, id_len, NULL, 0)) == NULL)
        goto out;
    pthread_mutex_lock(&r->use_mu);
    if (r->uses == NULL &&
        (r->uses = calloc(KEYS_USAGE_MAX, sizeof *r->uses)) == NULL) {
        rc = KEYS_EINTERNAL;
    } else {
        u = &r->uses[r->use_next];
        u->ms = now_ms;
        keys__copy_text(u->ip, KEYS_USE_IP_MAX, ip, 0);
        keys__copy_text(u->endpoint, KEYS_USE_ENDPOINT_MAX, endpoint, '?');
        keys__copy_text(u->outcome, KEYS_USE_OUTCOME_MAX, outcome, 0);
        r->use_next = (r->use_next + 1) % KEYS_USAGE_MAX;
        if (r->use_n < KEYS_USAGE_MAX)
            r->use_n++;
        r->last_used_ms = now_ms;
        r->use_dirty = true;
        rc = 0;
    }
    pthread_mutex_unlock(&r->use_mu);
out:
    pthread_rwlock_unlock(&reg->lock);
    return rc;
}

static json_t *keys__use_json(const keys__use_t *u)
{
    char iso[CLOCK_ISO_LEN + 1];

    clock_iso8601(u->ms, iso);
    return json_pack("{s:s%,s:s,s:s,s:s}", "time", iso, (size_t)CLOCK_ISO_LEN,
                     "ip", u->ip, "endpoint", u->endpoint,
                     "outcome", u->outcome);
}

int keys_usage(keys_reg_t *reg, const char *id, size_t id_len,
               const char *tenant, size_t tenant_len, json_t **out)
{
    keys__rec_t *r;
    json_t *arr = NULL;
    size_t i;
    int rc = KEYS_ENOTFOUND;

    *out = NULL;
    pthread_rwlock_rdlock(&reg->lock);
    if ((r = keys__find(reg, id, id_len, tenant, tenant_len)) == NULL)
        goto out;
    rc = KEYS_EINTERNAL;
    pthread_mutex_lock(&r->use_mu);
    arr = json_array();
    for (i = 1; arr && i <= r->use_n; i++) {
        size_t k = (r->use_next + KEYS_USAGE_MAX - i) % KEYS_USAGE_MAX;

        if (json_array_append_new(arr, keys__use_json(&r->uses[k]))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    pthread_mutex_unlock(&r->use_mu);
    if (arr) {
        *out = arr;
        rc = 0;
    }
out:
    pthread_rwlock_unlock(&reg->lock);
    return rc;
}

/* --- usage log persistence ------------------------------------------------ */

/* r's ring in storage form, oldest first; NULL without memory. Caller
 * holds r->use_mu. */
static json_t *keys__ring_json(const keys__rec_t *r)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; arr && i < r->use_n; i++) {
        const keys__use_t *u =
            &r->uses[(r->use_next + KEYS_USAGE_MAX - r->use_n + i) %
                     KEYS_USAGE_MAX];

        if (json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:s}",
                                                 "ms", (json_int_t)u->ms,
                                                 "ip", u->ip,
                                                 "endpoint", u->endpoint,
                                                 "outcome", u->outcome))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

json_t *keys_usage_dirty(keys_reg_t *reg, size_t max)
{
    json_t *out = json_object();
    bool failed = out == NULL;
    size_t i, n = 0;

    pthread_rwlock_rdlock(&reg->lock);
    for (i = 0; !failed && i < reg->n && n < max; i++) {
        keys__rec_t *r = reg->v[i];

        pthread_mutex_lock(&r->use_mu);
        if (r->use_dirty) {
            /* json_object_set_new takes arr even when it fails */
            if (json_object_set_new(out, r->id, keys__ring_json(r)) == 0) {
                r->use_dirty = false;
                n++;
            } else {
                failed = true;
            }
        }
        pthread_mutex_unlock(&r->use_mu);
    }
    pthread_rwlock_unlock(&reg->lock);
    if (failed && n == 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* Member name of entry e as keys_record_use stores it: a string of at
 * most cap printable ASCII bytes, copied into dst (cap + 1 bytes). */
static bool keys__use_text(const json_t *e, const char *name, char *dst,
                           size_t cap)
{
    const json_t *v = json_object_get(e, name);
    const char *s = json_string_value(v);
    size_t i, len = json_string_length(v);

    if (!json_is_string(v) || len > cap)
        return false;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/* Entry i (storage form) into u, or KEYS_EINVAL with err. */
static int keys__parse_use(const json_t *e, size_t i, keys__use_t *u,
                           char *err, size_t cap)
{
    const json_t *ms = json_object_get(e, "ms");
    const char *bad = NULL;

    if (!json_is_object(e))
        bad = "must be an object";
    else if (!json_is_integer(ms) || json_integer_value(ms) < 0 ||
             json_integer_value(ms) > KEYS__MS_MAX)
        bad = "ms: must be a time in Unix milliseconds";
    else if (!keys__use_text(e, "ip", u->ip, KEYS_USE_IP_MAX))
        bad = "ip: must be printable ASCII within its limit";
    else if (!keys__use_text(e, "endpoint", u->endpoint,
                             KEYS_USE_ENDPOINT_MAX))
        bad = "endpoint: must be printable ASCII within its limit";
    else if (!keys__use_text(e, "outcome", u->outcome, KEYS_USE_OUTCOME_MAX))
        bad = "outcome: must be printable ASCII within its limit";
    if (bad) {
        errmsg(err, cap, "usage[%zu]: %s", i, bad);
        return KEYS_EINVAL;
    }
    u->ms = json_integer_value(ms);
    return 0;
}

/*
 * Makes in[0..n) (oldest first, KEYS_USAGE_MAX slots) followed by r's
 * current entries r's ring, keeping the newest KEYS_USAGE_MAX. r takes
 * in. Caller holds r->use_mu.
 */
static void keys__ring_merge(keys__rec_t *r, keys__use_t *in, size_t n)
{
    size_t total = n + r->use_n, drop, j;

    drop = total > KEYS_USAGE_MAX ? total - KEYS_USAGE_MAX : 0;
    for (j = drop; j < total; j++) {
        if (j < n)
            in[j - drop] = in[j];
        else
            in[j - drop] = r->uses[(r->use_next + KEYS_USAGE_MAX - r->use_n +
                                    (j - n)) % KEYS_USAGE_MAX];
    }
    free(r->uses);
    r->uses = in;
    r->use_n = total - drop;
    r->use_next = r->use_n % KEYS_USAGE_MAX;
    for (j = 0; j < r->use_n; j++)
        if (in[j].ms > r->last_used_ms)
            r->last_used_ms = in[j].ms;
}

int keys_usage_load(keys_reg_t *reg, const char *id, size_t id_len,
                    const json_t *entries, char *err, size_t errcap)
{
    keys__use_t *in = NULL;
    keys__rec_t *r;
    size_t i, n, skip;
    int rc = KEYS_EINVAL;

    if (!json_is_array(entries)) {
        errmsg(err, errcap, "usage: must be an array");
        goto out;
    }
    n = json_array_size(entries);
    skip = n > KEYS_USAGE_MAX ? n - KEYS_USAGE_MAX : 0;
    n -= skip;
    rc = KEYS_EINTERNAL;
    if ((in = calloc(KEYS_USAGE_MAX, sizeof *in)) == NULL) {
        errmsg(err, errcap, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++)
        if ((rc = keys__parse_use(json_array_get(entries, skip + i), skip + i,
                                  &in[i], err, errcap)))
            goto out;
    rc = 0;
    if (n == 0)
        goto out;
    pthread_rwlock_rdlock(&reg->lock);
    if ((r = keys__find(reg, id, id_len, NULL, 0)) != NULL) {
        pthread_mutex_lock(&r->use_mu);
        keys__ring_merge(r, in, n);
        in = NULL;
        pthread_mutex_unlock(&r->use_mu);
    }
    pthread_rwlock_unlock(&reg->lock);
out:
    free(in);
    return rc;
}
