/*
 * principal.c - permissions, their JSON and JWT-claims forms, and the
 * immutable refcounted principal. See principal.h for the rules.
 *
 * One table (principal__lists) names the four pattern lists with their
 * offsets in perm_t and the validator of their entries, so the spec parser,
 * the scope parser and both writers walk the same table instead of
 * repeating themselves per list. Every entry goes through perm__add, which
 * validates it and enforces PERM_LIST_MAX; error messages are composed by
 * the callers, which know where the entry came from.
 *
 * Checks are linear scans of at most PERM_LIST_MAX patterns with the
 * allocation-free matchers of core/subject.c: no index is worth keeping
 * for lists this short, and an immutable principal needs no lock.
 */
#include "auth/principal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/ratelimit.h"
#include "core/buf.h"
#include "core/errmsg.h"
#include "core/subject.h"
#include "core/utf8.h"

#define PRINCIPAL__ECHO_MAX 40     /* bytes of user text echoed in errors */
#define PRINCIPAL__SCOPE_BUF (256 * 1024)  /* cap of a written scope string */
#define PRINCIPAL__EXP_MAX 253402300799.0  /* 9999-12-31T23:59:59Z */

typedef struct principal__list_def {
    const char *name;              /* spec member and scope prefix */
    size_t off;                    /* of its perm_list_t in perm_t */
    bool event;                    /* event patterns, not subject patterns */
} principal__list_def_t;

static const principal__list_def_t principal__lists[] = {
    { "publish", offsetof(perm_t, publish), false },
    { "subscribe", offsetof(perm_t, subscribe), false },
    { "history", offsetof(perm_t, history), false },
    { "events", offsetof(perm_t, events), true },
};

#define PRINCIPAL__NLISTS \
    (sizeof principal__lists / sizeof principal__lists[0])

static perm_list_t *principal__list(perm_t *p, const principal__list_def_t *d)
{
    return (perm_list_t *)((char *)p + d->off);
}

static const perm_list_t *principal__clist(const perm_t *p,
                                           const principal__list_def_t *d)
{
    return (const perm_list_t *)((const char *)p + d->off);
}

/* Copies user text for an error message: at most PRINCIPAL__ECHO_MAX
 * bytes, unprintable bytes and quotes as '?', "..." when cut. */
static const char *principal__echo(const char *s, size_t len,
                                   char out[PRINCIPAL__ECHO_MAX + 4])
{
    size_t n = len < PRINCIPAL__ECHO_MAX ? len : PRINCIPAL__ECHO_MAX, i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        out[i] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?'
                                                                   : (char)c;
    }
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

/* --- validators and event matching --------------------------------------- */

bool principal_valid_tenant(const char *s, size_t len)
{
    size_t i;

    if (s == NULL || len == 0 || len > PRINCIPAL_TENANT_MAX)
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
              (c >= 'a' && c <= 'z') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool principal_valid_id(const char *s, size_t len)
{
    size_t i;

    if (s == NULL || len == 0 || len > PRINCIPAL_ID_MAX)
        return false;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* 1..PERM_EVENT_MAX bytes of UTF-8 without control characters. */
bool perm_valid_event_type(const char *s, size_t len)
{
    return s != NULL && len > 0 && len <= PERM_EVENT_MAX && utf8_printable(s, len);
}

bool perm_valid_event_pattern(const char *s, size_t len)
{
    const char *star;

    if (!perm_valid_event_type(s, len) || memchr(s, ' ', len))
        return false;
    star = memchr(s, '*', len);
    if (star == NULL)
        return true;
    if (star != s + len - 1)
        return false;
    return len == 1 || s[len - 2] == '.' || s[len - 2] == ':';
}

bool perm_event_match(const char *pattern, size_t plen, const char *type,
                      size_t tlen)
{
    if (plen == 0)
        return false;
    if (pattern[plen - 1] != '*')
        return plen == tlen && memcmp(pattern, type, tlen) == 0;
    plen--;                        /* the prefix, possibly empty */
    return tlen > plen && memcmp(pattern, type, plen) == 0;
}

/* --- lists ---------------------------------------------------------------- */

enum {
    PRINCIPAL__EBADPAT = -10,      /* perm__add: entry not valid */
    PRINCIPAL__EFULL = -11,        /* perm__add: list at PERM_LIST_MAX */
};

static void principal__list_free(perm_list_t *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i].s);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void perm_free(perm_t *p)
{
    size_t i;

    if (p == NULL)
        return;
    for (i = 0; i < PRINCIPAL__NLISTS; i++)
        principal__list_free(principal__list(p, &principal__lists[i]));
    memset(p, 0, sizeof *p);
}

/* Validates s[0..len) for list d and appends a copy to it. Returns 0,
 * PRINCIPAL__EBADPAT, PRINCIPAL__EFULL or PERM_ENOMEM. */
static int principal__add(perm_t *p, const principal__list_def_t *d,
                          const char *s, size_t len)
{
    perm_list_t *l = principal__list(p, d);
    perm_pat_t *v;
    char *copy;

    if (d->event ? !perm_valid_event_pattern(s, len)
                 : !subj_valid_pattern(s, len))
        return PRINCIPAL__EBADPAT;
    if (l->n == PERM_LIST_MAX)
        return PRINCIPAL__EFULL;
    /* capacity doubles from 1: it is full exactly when n is a power of 2 */
    if ((l->n & (l->n - 1)) == 0) {
        v = realloc(l->v, (l->n ? l->n * 2 : 1) * sizeof *v);
        if (v == NULL)
            return PERM_ENOMEM;
        l->v = v;
    }
    if ((copy = malloc(len + 1)) == NULL)
        return PERM_ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    l->v[l->n].s = copy;
    l->v[l->n].len = len;
    l->n++;
    return 0;
}

/* The message for a principal__add failure; `where` names the entry. */
static int principal__add_err(int rc, const principal__list_def_t *d,
                              const char *where, const char *s, size_t len,
                              char *err, size_t cap)
{
    char echo[PRINCIPAL__ECHO_MAX + 4];

    if (rc == PERM_ENOMEM) {
        errmsg(err, cap, "out of memory");
        return PERM_ENOMEM;
    }
    if (rc == PRINCIPAL__EFULL)
        errmsg(err, cap, "%s: more than %d entries in %s", where,
                       PERM_LIST_MAX, d->name);
    else
        errmsg(err, cap, "%s: \"%s\" is not a valid %s", where,
                       principal__echo(s, len, echo),
                       d->event ? "event type pattern" : "subject pattern");
    return PERM_EINVAL;
}

/* --- the spec ------------------------------------------------------------- */

static int principal__spec_list(perm_t *p, const principal__list_def_t *d,
                                const json_t *arr, char *err, size_t cap)
{
    char where[32];
    size_t i;
    int rc;

    if (!json_is_array(arr)) {
        errmsg(err, cap, "%s: must be an array of %s", d->name,
                       d->event ? "event types" : "subject patterns");
        return PERM_EINVAL;
    }
    for (i = 0; i < json_array_size(arr); i++) {
        const json_t *v = json_array_get(arr, i);

        snprintf(where, sizeof where, "%s[%zu]", d->name, i);
        if (!json_is_string(v)) {
            errmsg(err, cap, "%s: must be a string", where);
            return PERM_EINVAL;
        }
        rc = principal__add(p, d, json_string_value(v), json_string_length(v));
        if (rc != 0)
            return principal__add_err(rc, d, where, json_string_value(v),
                                      json_string_length(v), err, cap);
    }
    return 0;
}

/* rate: {"per_second": number, "burst": integer (optional)}; burst
 * defaults to the rate rounded up (at least 1). */
static int principal__spec_rate(perm_t *p, const json_t *v, char *err,
                                size_t cap)
{
    const json_t *ps, *bu;
    const char *key;
    size_t klen;
    json_t *val;
    double r;

    if (!json_is_object(v)) {
        errmsg(err, cap,
                       "rate: must be an object {\"per_second\",\"burst\"}");
        return PERM_EINVAL;
    }
    /* jansson's iterators take a non-const object; nothing is modified */
    json_object_keylen_foreach((json_t *)v, key, klen, val) {
        char echo[PRINCIPAL__ECHO_MAX + 4];

        if (!(klen == 10 && memcmp(key, "per_second", 10) == 0) &&
            !(klen == 5 && memcmp(key, "burst", 5) == 0)) {
            errmsg(err, cap, "rate: unknown member \"%s\"",
                           principal__echo(key, klen, echo));
            return PERM_EINVAL;
        }
    }
    ps = json_object_get(v, "per_second");
    bu = json_object_get(v, "burst");
    r = json_is_number(ps) ? json_number_value(ps) : NAN;
    if (!(r >= RL_RATE_MIN && r <= RL_RATE_MAX)) {
        errmsg(err, cap, "rate.per_second: must be a number from "
                       "%g to %g", RL_RATE_MIN, RL_RATE_MAX);
        return PERM_EINVAL;
    }
    if (bu != NULL && (!json_is_integer(bu) || json_integer_value(bu) < 1 ||
                       json_integer_value(bu) > (json_int_t)RL_BURST_MAX)) {
        errmsg(err, cap, "rate.burst: must be an integer from 1 to %u",
                       RL_BURST_MAX);
        return PERM_EINVAL;
    }
    p->rate_per_s = r;
    p->burst = bu ? (uint32_t)json_integer_value(bu) : (uint32_t)ceil(r);
    return 0;
}

static int principal__spec_maxconn(perm_t *p, const json_t *v, char *err,
                                   size_t cap)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > (json_int_t)PERM_MAX_CONNECTIONS) {
        errmsg(err, cap, "max_connections: must be an integer from 1 "
                       "to %u (omit it for no cap)", PERM_MAX_CONNECTIONS);
        return PERM_EINVAL;
    }
    p->max_connections = (uint32_t)json_integer_value(v);
    return 0;
}

static bool principal__is(const char *key, size_t klen, const char *name)
{
    return klen == strlen(name) && memcmp(key, name, klen) == 0;
}

static int principal__spec_member(perm_t *p, const char *key, size_t klen,
                                  const json_t *v, char *err, size_t cap)
{
    char echo[PRINCIPAL__ECHO_MAX + 4];
    size_t i;

    for (i = 0; i < PRINCIPAL__NLISTS; i++)
        if (principal__is(key, klen, principal__lists[i].name))
            return principal__spec_list(p, &principal__lists[i], v, err, cap);
    if (principal__is(key, klen, "admin")) {
        if (!json_is_boolean(v)) {
            errmsg(err, cap, "admin: must be true or false");
            return PERM_EINVAL;
        }
        p->admin = json_is_true(v);
        return 0;
    }
    if (principal__is(key, klen, "rate"))
        return principal__spec_rate(p, v, err, cap);
    if (principal__is(key, klen, "max_connections"))
        return principal__spec_maxconn(p, v, err, cap);
    errmsg(err, cap, "permissions: unknown member \"%s\"",
                   principal__echo(key, klen, echo));
    return PERM_EINVAL;
}

int perm_from_spec(const json_t *spec, perm_t *out, char *err, size_t errcap)
{
    const char *key;
    size_t klen;
    json_t *v;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (spec == NULL)
        return 0;
    if (!json_is_object(spec)) {
        errmsg(err, errcap, "permissions: must be a JSON object");
        return PERM_EINVAL;
    }
    json_object_keylen_foreach((json_t *)spec, key, klen, v) {
        if ((rc = principal__spec_member(out, key, klen, v, err, errcap)))
            break;
    }
    if (rc != 0)
        perm_free(out);
    return rc;
}

static json_t *principal__rate_json(const perm_t *p)
{
    double r = p->rate_per_s;
    json_t *ps = r == floor(r) ? json_integer((json_int_t)r) : json_real(r);

    return json_pack("{s:o,s:I}", "per_second", ps, "burst",
                     (json_int_t)p->burst);
}

json_t *perm_to_spec(const perm_t *p)
{
    json_t *o = json_object(), *arr;
    size_t i, j;

    if (o == NULL)
        return NULL;
    for (i = 0; i < PRINCIPAL__NLISTS; i++) {
        const principal__list_def_t *d = &principal__lists[i];
        const perm_list_t *l = principal__clist(p, d);

        if (d->event && l->n == 0)
            continue;
        if (json_object_set_new(o, d->name, arr = json_array()))
            goto fail;
        for (j = 0; j < l->n; j++)
            if (json_array_append_new(arr, json_stringn(l->v[j].s,
                                                        l->v[j].len)))
                goto fail;
    }
    if (json_object_set_new(o, "admin", json_boolean(p->admin)))
        goto fail;
    if (p->rate_per_s > 0 &&
        json_object_set_new(o, "rate", principal__rate_json(p)))
        goto fail;
    if (p->max_connections > 0 &&
        json_object_set_new(o, "max_connections",
                            json_integer(p->max_connections)))
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

/* --- principals ----------------------------------------------------------- */

principal_t *principal_new(principal_kind_t kind, const char *tenant,
                           size_t tenant_len, const char *id, size_t id_len,
                           perm_t *perm, bool superadmin, int64_t expires_ms)
{
    principal_t *p;

    if (!principal_valid_tenant(tenant, tenant_len) ||
        !principal_valid_id(id, id_len))
        return NULL;
    if ((p = calloc(1, sizeof *p)) == NULL)
        return NULL;
    p->kind = kind;
    memcpy(p->tenant, tenant, tenant_len);
    p->tenant_len = tenant_len;
    memcpy(p->id, id, id_len);
    p->id_len = id_len;
    p->perm = *perm;
    memset(perm, 0, sizeof *perm);
    p->superadmin = superadmin;
    p->expires_ms = expires_ms;
    atomic_init(&p->refs, 1);
    return p;
}

principal_t *principal_ref(principal_t *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void principal_unref(principal_t *p)
{
    if (p == NULL ||
        atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    perm_free(&p->perm);
    free(p);
}

bool principal_event_allowed(const principal_t *p, const char *event_type,
                             size_t type_len)
{
    const perm_list_t *l = &p->perm.events;
    size_t i;

    if (event_type == NULL || type_len == 0)
        return l->n == 0;
    if (!perm_valid_event_type(event_type, type_len))
        return false;
    if (l->n == 0)
        return true;
    for (i = 0; i < l->n; i++)
        if (perm_event_match(l->v[i].s, l->v[i].len, event_type, type_len))
            return true;
    return false;
}

bool principal_can_publish(const principal_t *p, const char *subject,
                           size_t slen, const char *event_type,
                           size_t type_len)
{
    const perm_list_t *l = &p->perm.publish;
    size_t i;

    if (!subj_valid_subject(subject, slen) ||
        !principal_event_allowed(p, event_type, type_len))
        return false;
    for (i = 0; i < l->n; i++)
        if (subj_match(l->v[i].s, l->v[i].len, subject, slen))
            return true;
    return false;
}

/* True when some pattern of l covers every subject `pattern` can match. */
static bool principal__covered(const perm_list_t *l, const char *pattern,
                               size_t plen)
{
    size_t i;

    if (!subj_valid_pattern(pattern, plen))
        return false;
    for (i = 0; i < l->n; i++)
        if (subj_covers(l->v[i].s, l->v[i].len, pattern, plen))
            return true;
    return false;
}

bool principal_can_subscribe(const principal_t *p, const char *pattern,
                             size_t plen)
{
    return principal__covered(&p->perm.subscribe, pattern, plen);
}

bool principal_can_history(const principal_t *p, const char *pattern,
                           size_t plen)
{
    return principal__covered(&p->perm.history, pattern, plen);
}

bool principal_can_admin(const principal_t *p, const char *tenant,
                         size_t tenant_len)
{
    if (p->superadmin)
        return true;
    return p->perm.admin && tenant != NULL && tenant_len == p->tenant_len &&
           memcmp(tenant, p->tenant, tenant_len) == 0;
}

bool principal_expired(const principal_t *p, int64_t now_ms)
{
    return p->expires_ms != 0 && now_ms >= p->expires_ms;
}

/* --- JWT claims ----------------------------------------------------------- */

/* One scope s[0..len) into *p; *nscopes counts them against
 * PERM_SCOPES_MAX. */
static int principal__scope(perm_t *p, const char *s, size_t len,
                            size_t *nscopes, char *err, size_t cap)
{
    char echo[PRINCIPAL__ECHO_MAX + 4], where[PRINCIPAL__ECHO_MAX + 16];
    const char *colon = memchr(s, ':', len);
    size_t i, plen;
    int rc;

    if (++*nscopes > PERM_SCOPES_MAX) {
        errmsg(err, cap, "scope: more than %d entries",
                       PERM_SCOPES_MAX);
        return PERM_EINVAL;
    }
    if (principal__is(s, len, "admin")) {
        p->admin = true;
        return 0;
    }
    plen = colon ? (size_t)(colon - s) : 0;
    for (i = 0; colon && i < PRINCIPAL__NLISTS; i++) {
        const principal__list_def_t *d = &principal__lists[i];

        if (!principal__is(s, plen, d->name))
            continue;
        rc = principal__add(p, d, colon + 1, len - plen - 1);
        if (rc == 0)
            return 0;
        snprintf(where, sizeof where, "scope \"%s\"",
                 principal__echo(s, len, echo));
        return principal__add_err(rc, d, where, colon + 1, len - plen - 1,
                                  err, cap);
    }
    errmsg(err, cap, "unknown scope \"%s\"",
                   principal__echo(s, len, echo));
    return PERM_EINVAL;
}

/* A space-separated scope string; runs of spaces separate like one. */
static int principal__scope_string(perm_t *p, const char *s, size_t len,
                                   size_t *nscopes, char *err, size_t cap)
{
    size_t i = 0, start;
    int rc;

    while (i < len) {
        if (s[i] == ' ') {
            i++;
            continue;
        }
        start = i;
        while (i < len && s[i] != ' ')
            i++;
        if ((rc = principal__scope(p, s + start, i - start, nscopes, err,
                                   cap)))
            return rc;
    }
    return 0;
}

static int principal__claims_scopes(const json_t *claims, perm_t *p,
                                    char *err, size_t cap)
{
    const json_t *one = json_object_get(claims, "scope");
    const json_t *many = json_object_get(claims, "scopes");
    const json_t *v = one ? one : many;
    size_t i, n = 0;
    int rc;

    if (one && many) {
        errmsg(err, cap, "claims \"scope\" and \"scopes\" are both "
                       "present");
        return PERM_EINVAL;
    }
    if (v == NULL)
        return 0;
    if (json_is_string(v))
        return principal__scope_string(p, json_string_value(v),
                                       json_string_length(v), &n, err, cap);
    if (!json_is_array(v)) {
        errmsg(err, cap, "claim \"%s\": must be a string or an array "
                       "of strings", one ? "scope" : "scopes");
        return PERM_EINVAL;
    }
    for (i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);

        if (!json_is_string(e)) {
            errmsg(err, cap, "claim \"%s\"[%zu]: must be a string",
                           one ? "scope" : "scopes", i);
            return PERM_EINVAL;
        }
        rc = principal__scope(p, json_string_value(e), json_string_length(e),
                              &n, err, cap);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The tenant from "tenant" or "tid", else default_tenant. */
static int principal__claims_tenant(const json_t *claims,
                                    const char *default_tenant,
                                    const char **tenant, size_t *len,
                                    char *err, size_t cap)
{
    const json_t *t = json_object_get(claims, "tenant");
    const json_t *tid = json_object_get(claims, "tid");
    const char *name = t ? "tenant" : "tid";

    if (t && tid) {
        errmsg(err, cap, "claims \"tenant\" and \"tid\" are both "
                       "present");
        return PERM_EINVAL;
    }
    if (t == NULL && (t = tid) == NULL) {
        if (default_tenant == NULL) {
            errmsg(err, cap, "claim \"tenant\" (or \"tid\") missing");
            return PERM_EINVAL;
        }
        *tenant = default_tenant;
        *len = strlen(default_tenant);
        name = "default tenant";
    } else if (json_is_string(t)) {
        *tenant = json_string_value(t);
        *len = json_string_length(t);
    } else {
        *tenant = NULL;
        *len = 0;
    }
    if (!principal_valid_tenant(*tenant, *len)) {
        errmsg(err, cap, "%s: must be 1 to %d characters of "
                       "[A-Za-z0-9_-]", name, PRINCIPAL_TENANT_MAX);
        return PERM_EINVAL;
    }
    return 0;
}

/* "rate", "max_connections" and "exp", each optional. */
static int principal__claims_limits(const json_t *claims, perm_t *p,
                                    int64_t *expires_ms, char *err,
                                    size_t cap)
{
    const json_t *rate = json_object_get(claims, "rate");
    const json_t *maxc = json_object_get(claims, "max_connections");
    const json_t *exp = json_object_get(claims, "exp");
    double e;
    int rc;

    if (rate && (rc = principal__spec_rate(p, rate, err, cap)))
        return rc;
    if (maxc && (rc = principal__spec_maxconn(p, maxc, err, cap)))
        return rc;
    *expires_ms = 0;
    if (exp == NULL)
        return 0;
    e = json_is_number(exp) ? json_number_value(exp) : NAN;
    if (!(e > 0 && e <= PRINCIPAL__EXP_MAX)) {
        errmsg(err, cap, "claim \"exp\": must be a positive number "
                       "of seconds");
        return PERM_EINVAL;
    }
    *expires_ms = (int64_t)(e * 1000.0);
    return 0;
}

int principal_from_claims(const json_t *claims, const char *default_tenant,
                          principal_t **out, char *err, size_t errcap)
{
    perm_t perm = { 0 };
    const json_t *sub, *jti;
    const char *tenant;
    size_t tenant_len;
    int64_t expires_ms;
    int rc = PERM_EINVAL;

    *out = NULL;
    if (!json_is_object(claims)) {
        errmsg(err, errcap, "claims: must be a JSON object");
        goto fail;
    }
    sub = json_object_get(claims, "sub");
    if (sub == NULL) {
        errmsg(err, errcap, "claim \"sub\" missing");
        goto fail;
    }
    if (!json_is_string(sub) ||
        !principal_valid_id(json_string_value(sub), json_string_length(sub))) {
        errmsg(err, errcap, "claim \"sub\": must be 1 to %d "
                       "printable ASCII characters without spaces",
                       PRINCIPAL_ID_MAX);
        goto fail;
    }
    if ((rc = principal__claims_tenant(claims, default_tenant, &tenant,
                                       &tenant_len, err, errcap)) ||
        (rc = principal__claims_scopes(claims, &perm, err, errcap)) ||
        (rc = principal__claims_limits(claims, &perm, &expires_ms, err,
                                       errcap)))
        goto fail;
    *out = principal_new(PRINCIPAL_JWT, tenant, tenant_len,
                         json_string_value(sub), json_string_length(sub),
                         &perm, false, expires_ms);
    if (*out == NULL) {
        errmsg(err, errcap, "out of memory");
        rc = PERM_ENOMEM;
        goto fail;
    }
    jti = json_object_get(claims, "jti");      /* not shared yet: still ours */
    if (json_is_string(jti) && json_string_length(jti) <= PRINCIPAL_JTI_MAX)
        memcpy((*out)->jti, json_string_value(jti), json_string_length(jti));
    return 0;
fail:
    perm_free(&perm);
    return rc;
}

/* The scopes of p, space-separated, into b. */
static int principal__scope_text(const perm_t *p, buf_t *b)
{
    size_t i, j;
    int rc = 0;

    for (i = 0; i < PRINCIPAL__NLISTS && rc == 0; i++) {
        const principal__list_def_t *d = &principal__lists[i];
        const perm_list_t *l = principal__clist(p, d);

        for (j = 0; j < l->n && rc == 0; j++)
            rc = buf_printf(b, "%s%s:%s", b->len ? " " : "", d->name,
                            l->v[j].s);
    }
    if (rc == 0 && p->admin)
        rc = buf_append_str(b, b->len ? " admin" : "admin");
    return rc;
}

json_t *principal_to_claims(const principal_t *p)
{
    json_t *c = json_object();
    buf_t scope;

    buf_init(&scope, PRINCIPAL__SCOPE_BUF);
    if (c == NULL || principal__scope_text(&p->perm, &scope) ||
        json_object_set_new(c, "sub", json_stringn(p->id, p->id_len)) ||
        json_object_set_new(c, "tenant",
                            json_stringn(p->tenant, p->tenant_len)) ||
        json_object_set_new(c, "scope",
                            json_stringn(scope.len ? scope.data : "",
                                         scope.len)))
        goto fail;
    if (p->perm.rate_per_s > 0 &&
        json_object_set_new(c, "rate", principal__rate_json(&p->perm)))
        goto fail;
    if (p->perm.max_connections > 0 &&
        json_object_set_new(c, "max_connections",
                            json_integer(p->perm.max_connections)))
        goto fail;
    buf_free(&scope);
    return c;
fail:
    buf_free(&scope);
    json_decref(c);
    return NULL;
}
