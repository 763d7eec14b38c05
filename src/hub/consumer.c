/*
 * consumer.c - durable pull consumers. See consumer.h.
 *
 * The pending table is an array in consumer-sequence order: a first
 * delivery appends (its consumer sequence is the largest), an ack removes
 * in place, so the ack floor is "first entry's cseq - 1", or `delivered`
 * when nothing is pending. Redelivery keeps an entry's cseq (as JetStream
 * does for the floor's purpose). The registry is a small array searched
 * linearly: one consumer per credential per tenant, a few thousand at most.
 */
#include "hub/consumer.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/errmsg.h"
#include "ops/log.h"

#define CONS__COUNT_MAX (INT64_MAX / 2)   /* stored counters */
#define CONS__MS_MAX 253402300799999ll    /* 9999-12-31: delivery times */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static consumer_t **g_cons;
static size_t g_ncons, g_capcons;

consumer_t *cons_new(const char *tenant, const char *name)
{
    consumer_t *c;

    if (strlen(tenant) > CONS_TENANT_MAX || strlen(name) > CONS_NAME_MAX)
        return NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    memcpy(c->tenant, tenant, strlen(tenant) + 1);
    memcpy(c->name, name, strlen(name) + 1);
    return c;
}

void cons_list_free(cons_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int cons_list_set(cons_list_t *l, const char *const *v, size_t n)
{
    cons_list_t nl = {calloc(n ? n : 1, sizeof(char *)), 0};

    if (!nl.v)
        return -1;
    for (; nl.n < n; nl.n++) {
        nl.v[nl.n] = strdup(v[nl.n]);
        if (!nl.v[nl.n]) {
            cons_list_free(&nl);
            return -1;
        }
    }
    cons_list_free(l);
    *l = nl;
    return 0;
}

void cons_free(consumer_t *c)
{
    if (!c)
        return;
    cons_list_free(&c->subjects);
    cons_list_free(&c->events);
    cons_list_free(&c->branches);
    free(c->pending);
    free(c->parked);
    free(c);
}

void cons_name(const char *prefix, const char *id, size_t len, char *out)
{
    size_t o = 0;

    for (; *prefix && o < CONS_NAME_MAX; prefix++)
        out[o++] = *prefix;
    for (size_t i = 0; i < len && o < CONS_NAME_MAX; i++) {
        char ch = id[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        out[o++] = ok ? ch : '_';
    }
    out[o] = '\0';
}

static void advance_floor(consumer_t *c)
{
    c->ack_floor = c->npending ? c->pending[0].cseq - 1 : c->delivered;
}

static int add_entry(consumer_t *c, uint64_t sseq, int64_t last_ms)
{
    cons_pending_t *np;
    size_t ncap;

    if (c->npending >= CONS_PENDING_MAX)
        return -1;
    if (c->npending == c->cap) {
        ncap = c->cap ? c->cap * 2 : 16;
        np = realloc(c->pending, ncap * sizeof *np);
        if (!np)
            return -1;
        c->pending = np;
        c->cap = ncap;
    }
    c->pending[c->npending++] = (cons_pending_t){sseq, ++c->delivered, last_ms, 1};
    return 0;
}

int cons_deliver_new(consumer_t *c, uint64_t sseq, int64_t now_ms)
{
    if (add_entry(c, sseq, now_ms))
        return -1;
    if (sseq > c->last_seq)
        c->last_seq = sseq;
    if (c->npending == 1)
        advance_floor(c);
    return 0;
}

long cons_find(const consumer_t *c, uint64_t sseq)
{
    for (size_t i = 0; i < c->npending; i++)
        if (c->pending[i].sseq == sseq)
            return (long)i;
    return -1;
}

void cons_drop(consumer_t *c, size_t i)
{
    if (i >= c->npending)
        return;
    memmove(&c->pending[i], &c->pending[i + 1], (c->npending - i - 1) * sizeof *c->pending);
    c->npending--;
    advance_floor(c);
}

int cons_ack(consumer_t *c, uint64_t sseq)
{
    long i = cons_find(c, sseq);

    if (i < 0)
        return -1;
    cons_drop(c, (size_t)i);
    return 0;
}

bool cons_due(const consumer_t *c, size_t i, int64_t now_ms, int64_t ack_wait_ms)
{
    return i < c->npending && c->pending[i].last_ms + ack_wait_ms <= now_ms;
}

static void park(consumer_t *c, uint64_t sseq)
{
    uint64_t *np;

    if (!c->parked) {
        np = calloc(CONS_PARKED_MAX, sizeof *np);
        if (!np)
            return;      /* the count below still tells */
        c->parked = np;
    }
    if (c->nparked == CONS_PARKED_MAX) {
        memmove(c->parked, c->parked + 1, (CONS_PARKED_MAX - 1) * sizeof *c->parked);
        c->nparked--;
    }
    c->parked[c->nparked++] = sseq;
}

int cons_redeliver(consumer_t *c, size_t i, int64_t now_ms, uint32_t max_deliver)
{
    cons_pending_t *e = &c->pending[i];

    if (e->deliveries >= max_deliver) {
        park(c, e->sseq);
        c->npark_total++;
        cons_drop(c, i);
        return 0;
    }
    if (e->deliveries == 1)
        c->redelivered++;
    e->deliveries++;
    e->last_ms = now_ms;
    return 1;
}

int cons_replay(consumer_t *c, uint64_t sseq)
{
    long i = cons_find(c, sseq);

    if (i >= 0) {
        c->pending[i].last_ms = INT64_MIN / 2;
        return 0;
    }
    if (add_entry(c, sseq, INT64_MIN / 2))
        return -1;
    if (c->npending == 1)
        advance_floor(c);
    return 0;
}

/* --- JSON ---------------------------------------------------------------- */

static json_t *list_json(const cons_list_t *l)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < l->n; i++)
        if (json_array_append_new(a, json_string(l->v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static int list_from_json(cons_list_t *l, const json_t *a)
{
    const char *v[CONS_FILTER_MAX];
    size_t n = json_array_size(a);

    if (!json_is_array(a) || n > CONS_FILTER_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] = json_string_value(json_array_get(a, i))))
            return -1;
    return cons_list_set(l, v, n);
}

json_t *cons_to_json(const consumer_t *c)
{
    json_t *j = json_object(), *pend = json_array(), *parked = json_array();
    int rc = !j || !pend || !parked;

    for (size_t i = 0; !rc && i < c->npending; i++) {
        const cons_pending_t *e = &c->pending[i];
        rc = json_array_append_new(pend, json_pack("[I,I,I,I]", (json_int_t)e->sseq,
                                                   (json_int_t)e->cseq, (json_int_t)e->last_ms,
                                                   (json_int_t)e->deliveries));
    }
    for (size_t i = 0; !rc && i < c->nparked; i++)
        rc = json_array_append_new(parked, json_integer((json_int_t)c->parked[i]));
    rc = rc || json_object_set_new(j, "subjects", list_json(&c->subjects)) ||
         json_object_set_new(j, "follows", json_boolean(c->follows)) ||
         json_object_set_new(j, "events", list_json(&c->events)) ||
         json_object_set_new(j, "branches", list_json(&c->branches)) ||
         json_object_set_new(j, "last_seq", json_integer((json_int_t)c->last_seq)) ||
         json_object_set_new(j, "delivered", json_integer((json_int_t)c->delivered)) ||
         json_object_set_new(j, "redelivered", json_integer((json_int_t)c->redelivered)) ||
         json_object_set_new(j, "expired", json_integer((json_int_t)c->expired)) ||
         json_object_set_new(j, "parked_total", json_integer((json_int_t)c->npark_total)) ||
         json_object_set_new(j, "created_ms", json_integer(c->created_ms)) ||
         json_object_set(j, "pending", pend) || json_object_set(j, "parked", parked);
    json_decref(pend);
    json_decref(parked);
    if (rc) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A sequence or counter of a stored record, 0..max. Counters stop at
 * CONS__COUNT_MAX, far above anything reachable, so that counting on from
 * a stored value never passes what the loader takes back. */
static bool get_u64(const json_t *j, const char *k, json_int_t max, uint64_t *out)
{
    json_t *v = json_object_get(j, k);

    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int pending_from_json(consumer_t *c, const json_t *a)
{
    size_t n = json_array_size(a);
    json_int_t f[4];

    if (!json_is_array(a) || n > CONS_PENDING_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (json_unpack(json_array_get(a, i), "[IIII]", &f[0], &f[1], &f[2], &f[3]) ||
            f[0] <= 0 || f[1] <= 0 || (uint64_t)f[1] > c->delivered ||
            f[2] < 0 || f[2] > CONS__MS_MAX || f[3] <= 0 ||
            f[3] > UINT32_MAX || (i && (uint64_t)f[1] <= c->pending[i - 1].cseq))
            return -1;
        if (c->npending == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 16;
            cons_pending_t *np = realloc(c->pending, ncap * sizeof *np);
            if (!np)
                return -1;
            c->pending = np;
            c->cap = ncap;
        }
        c->pending[c->npending++] =
            (cons_pending_t){(uint64_t)f[0], (uint64_t)f[1], f[2], (uint32_t)f[3]};
    }
    return 0;
}

consumer_t *cons_from_json(const char *tenant, const char *name, const json_t *j)
{
    consumer_t *c = cons_new(tenant, name);
    json_t *parked = json_object_get(j, "parked"), *v;
    size_t i;

    if (!c || !json_is_object(j))
        goto fail;
    c->follows = json_is_true(json_object_get(j, "follows"));
    if (list_from_json(&c->subjects, json_object_get(j, "subjects")) || c->subjects.n == 0 ||
        list_from_json(&c->events, json_object_get(j, "events")) ||
        list_from_json(&c->branches, json_object_get(j, "branches")) ||
        !get_u64(j, "last_seq", INT64_MAX, &c->last_seq) ||
        !get_u64(j, "delivered", CONS__COUNT_MAX, &c->delivered) ||
        !get_u64(j, "redelivered", CONS__COUNT_MAX, &c->redelivered) ||
        !get_u64(j, "expired", CONS__COUNT_MAX, &c->expired) ||
        !get_u64(j, "parked_total", CONS__COUNT_MAX, &c->npark_total) ||
        pending_from_json(c, json_object_get(j, "pending")) || !json_is_array(parked) ||
        json_array_size(parked) > CONS_PARKED_MAX)
        goto fail;
    c->created_ms = json_integer_value(json_object_get(j, "created_ms"));
    json_array_foreach(parked, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
            goto fail;
        park(c, (uint64_t)json_integer_value(v));
    }
    advance_floor(c);
    return c;
fail:
    cons_free(c);
    return NULL;
}

json_t *cons_stats(const consumer_t *c)
{
    json_t *parked = json_array();

    for (size_t i = 0; parked && i < c->nparked; i++)
        json_array_append_new(parked, json_sprintf("%" PRIu64, c->parked[i]));
    return json_pack("{s:s,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:o,s:I,s:I}", "consumerName",
                     c->name, "filterSubjects", list_json(&c->subjects), "events",
                     list_json(&c->events), "branches", list_json(&c->branches), "pending",
                     (json_int_t)c->npending, "delivered", (json_int_t)c->delivered, "ackFloor",
                     (json_int_t)c->ack_floor, "redelivered", (json_int_t)c->redelivered,
                     "lastDelivered", (json_int_t)c->last_seq, "parked", parked,
                     "parkedTotal", (json_int_t)c->npark_total, "expired",
                     (json_int_t)c->expired);
}

bool cons_parse_id(const json_t *v, uint64_t *out)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    uint64_t x = 0;

    if (json_is_integer(v)) {
        if (json_integer_value(v) <= 0)
            return false;
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    if (!s || len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x == 0)
        return false;
    *out = x;
    return true;
}

/* --- registry ------------------------------------------------------------ */

void cons_lock(void) { pthread_mutex_lock(&g_mu); }
void cons_unlock(void) { pthread_mutex_unlock(&g_mu); }

void cons_key(const consumer_t *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", c->tenant, c->name);
}

consumer_t *cons_get(const char *tenant, const char *name)
{
    for (size_t i = 0; i < g_ncons; i++)
        if (!strcmp(g_cons[i]->tenant, tenant) && !strcmp(g_cons[i]->name, name))
            return g_cons[i];
    return NULL;
}

int cons_put(consumer_t *c)
{
    consumer_t **nc;

    for (size_t i = 0; i < g_ncons; i++)
        if (!strcmp(g_cons[i]->tenant, c->tenant) && !strcmp(g_cons[i]->name, c->name)) {
            cons_free(g_cons[i]);
            g_cons[i] = c;
            return 0;
        }
    if (g_ncons == g_capcons) {
        size_t ncap = g_capcons ? g_capcons * 2 : 16;
        nc = realloc(g_cons, ncap * sizeof *nc);
        if (!nc) {
            cons_free(c);
            return -1;
        }
        g_cons = nc;
        g_capcons = ncap;
    }
    g_cons[g_ncons++] = c;
    return 0;
}

bool cons_try_busy(consumer_t *c)
{
    if (c->busy)
        return false;
    c->busy = true;
    return true;
}

static int load_one(void *ctx, const char *key, const unsigned char *value, size_t len,
                    uint64_t rev)
{
    const char *slash = strchr(key, '/');
    char tenant[CONS_TENANT_MAX + 1];
    json_t *j = NULL;
    consumer_t *c = NULL;

    (void)ctx;
    (void)rev;
    if (slash && (size_t)(slash - key) <= CONS_TENANT_MAX) {
        memcpy(tenant, key, (size_t)(slash - key));
        tenant[slash - key] = '\0';
        j = json_loadb((const char *)value, len, 0, NULL);
        c = j ? cons_from_json(tenant, slash + 1, j) : NULL;
    }
    json_decref(j);
    if (!c) {
        LOG_WARN("malformed consumer record skipped", "\"key\":\"%s\"", log_str(key, (size_t)-1));
        return 0;
    }
    return cons_put(c) ? STORE_ENOMEM : 0;
}

int cons_init(store_t *store, char *err, size_t errlen)
{
    int rc = store_meta_load_sync(store, CONS_NS, load_one, NULL);

    if (rc) {
        errmsg(err, errlen, "cannot load the consumers (store error %d)", rc);
        return -1;
    }
    LOG_INFO("consumers loaded", "\"count\":%zu", g_ncons);
    return 0;
}

void cons_shutdown(void)
{
    for (size_t i = 0; i < g_ncons; i++)
        cons_free(g_cons[i]);
    free(g_cons);
    g_cons = NULL;
    g_ncons = g_capcons = 0;
}
