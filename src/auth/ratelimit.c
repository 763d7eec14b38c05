/*
 * ratelimit.c - striped tables of token buckets and connection counters.
 * See ratelimit.h for the semantics, the limits and the eviction policy.
 *
 * Layout. A table is an array of stripes, each with its own mutex on its
 * own cache line. A stripe owns a fixed pool of entries (2 * its share of
 * max_keys: one share per kind), an open-addressing index of pool
 * positions (linear probing, load <= 1/2, backward-shift deletion, so no
 * tombstones) and a binary min-heap of its buckets ordered by `full_at`,
 * the time a bucket will be full again. The heap's root is the eviction
 * victim, so eviction is O(log n) and never scans. Everything is
 * allocated at rl_new; nothing allocates after that, so no call fails for
 * memory and the hot path is one lock, one probe chain, one heap fix.
 *
 * Tokens are fixed point (RL__UNIT per token, as uint64) so refill and
 * accounting are exact integer arithmetic; a rate becomes units per ms.
 */
#include "auth/ratelimit.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "core/siphash.h"

#define RL__UNIT 1000000ull        /* units per token */
#define RL__MIN_STRIPE_KEYS 16

enum { RL__BUCKET = 1, RL__CONN = 2 };

typedef struct rl__entry {
    uint64_t hash;
    uint64_t tokens;               /* bucket: units at last_ms */
    uint64_t last_ms;              /* bucket: time of the last refill */
    uint64_t full_at;              /* bucket: heap key */
    uint32_t link;                 /* bucket: heap position; free: next */
    uint32_t conns;                /* conn: connections counted */
    uint8_t kind;                  /* RL__BUCKET, RL__CONN, 0 when free */
    uint8_t klen;
    char key[RL_KEY_MAX];
} rl__entry_t;

typedef struct rl__stripe {
    alignas(64) pthread_mutex_t mu;
    rl__entry_t *pool;             /* 2 * cap entries */
    uint32_t *slots;               /* pool index + 1; 0 = empty */
    uint32_t *heap;                /* pool indices of buckets */
    uint32_t mask;                 /* number of slots - 1 */
    uint32_t cap;                  /* per kind */
    uint32_t top;                  /* pool entries ever handed out */
    uint32_t free_head;            /* pool index + 1 of a freed entry */
    uint32_t nbuckets;             /* = heap size */
    uint32_t nconns;
    uint64_t evicted_idle, evicted_busy, conn_refused_full;
} rl__stripe_t;

struct rl_table {
    rl__stripe_t *stripes;
    uint32_t nstripes;             /* power of two */
    size_t max_keys;
    uint64_t k0, k1;               /* SipHash key */
};

typedef struct rl__key {
    const char *p;
    size_t len;
    uint64_t hash;
    uint8_t kind;
} rl__key_t;

static uint64_t rl__siphash(const rl_table_t *t, const char *s, size_t len)
{
    return siphash13(t->k0, t->k1, s, len);
}

/* --- the index ------------------------------------------------------------ */

/* Slot of k in s, or of the empty slot that ends its probe chain. */
static uint32_t rl__probe(const rl__stripe_t *s, const rl__key_t *k,
                          rl__entry_t **found)
{
    uint32_t i = (uint32_t)k->hash & s->mask;
    rl__entry_t *e;

    for (;; i = (i + 1) & s->mask) {
        if (s->slots[i] == 0) {
            *found = NULL;
            return i;
        }
        e = &s->pool[s->slots[i] - 1];
        if (e->hash == k->hash && e->kind == k->kind && e->klen == k->len &&
            memcmp(e->key, k->p, k->len) == 0) {
            *found = e;
            return i;
        }
    }
}

/* Puts k in empty slot `at`; the caller checked there is room. */
static rl__entry_t *rl__insert(rl__stripe_t *s, uint32_t at,
                               const rl__key_t *k)
{
    uint32_t idx;
    rl__entry_t *e;

    if (s->free_head) {
        idx = s->free_head - 1;
        s->free_head = s->pool[idx].link;
    } else {
        idx = s->top++;
    }
    e = &s->pool[idx];
    memset(e, 0, sizeof *e);
    e->hash = k->hash;
    e->kind = k->kind;
    e->klen = (uint8_t)k->len;
    memcpy(e->key, k->p, k->len);
    s->slots[at] = idx + 1;
    return e;
}

/* True when slot j's entry, whose home is h, may move back to hole i. */
static bool rl__may_fill(uint32_t i, uint32_t j, uint32_t h)
{
    if (i <= j)
        return h <= i || h > j;
    return h <= i && h > j;
}

/* Removes the entry in slot `at` from the index and frees it. */
static void rl__remove(rl__stripe_t *s, uint32_t at)
{
    uint32_t idx = s->slots[at] - 1, j = at, h;

    s->pool[idx].kind = 0;
    s->pool[idx].link = s->free_head;
    s->free_head = idx + 1;
    s->slots[at] = 0;
    for (;;) {
        j = (j + 1) & s->mask;
        if (s->slots[j] == 0)
            return;
        h = (uint32_t)s->pool[s->slots[j] - 1].hash & s->mask;
        if (rl__may_fill(at, j, h)) {
            s->slots[at] = s->slots[j];
            s->slots[j] = 0;
            at = j;
        }
    }
}

/* Slot holding pool entry e (which is in the index). */
static uint32_t rl__slot_of(const rl__stripe_t *s, const rl__entry_t *e)
{
    uint32_t i = (uint32_t)e->hash & s->mask, idx = (uint32_t)(e - s->pool);

    while (s->slots[i] != idx + 1)
        i = (i + 1) & s->mask;
    return i;
}

/* --- the bucket heap, min full_at at the root ----------------------------- */

static uint64_t rl__key_at(const rl__stripe_t *s, uint32_t pos)
{
    return s->pool[s->heap[pos]].full_at;
}

static void rl__heap_set(rl__stripe_t *s, uint32_t pos, uint32_t idx)
{
    s->heap[pos] = idx;
    s->pool[idx].link = pos;
}

static void rl__heap_swap(rl__stripe_t *s, uint32_t a, uint32_t b)
{
    uint32_t ia = s->heap[a];

    rl__heap_set(s, a, s->heap[b]);
    rl__heap_set(s, b, ia);
}

/* Restores the heap order around pos after its key changed. */
static void rl__heap_fix(rl__stripe_t *s, uint32_t pos)
{
    uint32_t parent, child;

    while (pos > 0) {
        parent = (pos - 1) / 2;
        if (rl__key_at(s, parent) <= rl__key_at(s, pos))
            break;
        rl__heap_swap(s, parent, pos);
        pos = parent;
    }
    for (;;) {
        child = 2 * pos + 1;
        if (child >= s->nbuckets)
            return;
        if (child + 1 < s->nbuckets &&
            rl__key_at(s, child + 1) < rl__key_at(s, child))
            child++;
        if (rl__key_at(s, pos) <= rl__key_at(s, child))
            return;
        rl__heap_swap(s, pos, child);
        pos = child;
    }
}

static void rl__heap_push(rl__stripe_t *s, rl__entry_t *e)
{
    uint32_t pos = s->nbuckets++;

    rl__heap_set(s, pos, (uint32_t)(e - s->pool));
    rl__heap_fix(s, pos);
}

static void rl__heap_remove(rl__stripe_t *s, uint32_t pos)
{
    uint32_t last = --s->nbuckets;

    if (pos == last)
        return;
    rl__heap_set(s, pos, s->heap[last]);
    rl__heap_fix(s, pos);
}

/* Evicts the bucket at the heap root to make room for a new one. */
static void rl__evict(rl__stripe_t *s, uint64_t now_ms)
{
    rl__entry_t *e = &s->pool[s->heap[0]];

    if (e->full_at <= now_ms)
        s->evicted_idle++;
    else
        s->evicted_busy++;
    rl__heap_remove(s, 0);
    rl__remove(s, rl__slot_of(s, e));
}

/* --- table ---------------------------------------------------------------- */

static uint32_t rl__pow2_at_least(uint64_t n)
{
    uint32_t p = 1;

    while (p < n)
        p <<= 1;
    return p;
}

static int rl__stripe_init(rl__stripe_t *s, uint32_t cap)
{
    uint32_t nslots = rl__pow2_at_least(4ull * cap);

    memset(s, 0, sizeof *s);
    s->cap = cap;
    s->mask = nslots - 1;
    s->pool = calloc(2 * (size_t)cap, sizeof *s->pool);
    s->slots = calloc(nslots, sizeof *s->slots);
    s->heap = calloc(cap, sizeof *s->heap);
    if (!s->pool || !s->slots || !s->heap ||
        pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s->pool);
        free(s->slots);
        free(s->heap);
        return -1;
    }
    return 0;
}

static void rl__stripe_free(rl__stripe_t *s)
{
    pthread_mutex_destroy(&s->mu);
    free(s->pool);
    free(s->slots);
    free(s->heap);
}

rl_table_t *rl_new(size_t max_keys)
{
    unsigned char seed[16];
    rl_table_t *t;
    uint32_t n = 1, i, share, extra;

    if (max_keys == 0 || max_keys > RL_MAX_KEYS)
        return NULL;
    if (RAND_bytes(seed, sizeof seed) != 1)
        return NULL;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    while (n < RL_STRIPES && (size_t)n * 2 * RL__MIN_STRIPE_KEYS <= max_keys)
        n *= 2;
    t->stripes = aligned_alloc(alignof(rl__stripe_t), n * sizeof *t->stripes);
    if (t->stripes == NULL)
        goto fail;
    share = (uint32_t)(max_keys / n);
    extra = (uint32_t)(max_keys % n);
    for (i = 0; i < n; i++) {
        if (rl__stripe_init(&t->stripes[i], share + (i < extra)) != 0)
            goto fail;
        t->nstripes = i + 1;
    }
    t->max_keys = max_keys;
    memcpy(&t->k0, seed, 8);
    memcpy(&t->k1, seed + 8, 8);
    return t;
fail:
    rl_free(t);
    return NULL;
}

void rl_free(rl_table_t *t)
{
    uint32_t i;

    if (t == NULL)
        return;
    for (i = 0; i < t->nstripes; i++)
        rl__stripe_free(&t->stripes[i]);
    free(t->stripes);
    free(t);
}

/* Hashes key into *k and returns its stripe, locked. */
static rl__stripe_t *rl__lock(rl_table_t *t, const char *key, size_t len,
                              uint8_t kind, rl__key_t *k)
{
    rl__stripe_t *s;

    k->p = len ? key : "";         /* NULL allowed for the empty key */
    k->len = len;
    k->kind = kind;
    k->hash = rl__siphash(t, k->p, len);
    s = &t->stripes[(k->hash >> 40) & (t->nstripes - 1)];
    pthread_mutex_lock(&s->mu);
    return s;
}

/* --- token buckets -------------------------------------------------------- */

typedef struct rl__limit {
    uint64_t per_ms;               /* units gained per ms, >= 1 */
    uint64_t cap;                  /* units a full bucket holds */
} rl__limit_t;

static rl__limit_t rl__limit(double rate_per_s, uint32_t burst)
{
    rl__limit_t l;

    if (rate_per_s < RL_RATE_MIN)
        rate_per_s = RL_RATE_MIN;
    if (rate_per_s > RL_RATE_MAX)
        rate_per_s = RL_RATE_MAX;
    /* tokens/s * RL__UNIT units/token / 1000 ms/s */
    l.per_ms = (uint64_t)(rate_per_s * ((double)RL__UNIT / 1000.0) + 0.5);
    if (burst == 0)
        burst = 1;
    if (burst > RL_BURST_MAX)
        burst = RL_BURST_MAX;
    l.cap = (uint64_t)burst * RL__UNIT;
    return l;
}

/* ceil(a / b), b > 0 */
static uint64_t rl__div_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

static void rl__refill(rl__entry_t *e, const rl__limit_t *l, uint64_t now_ms)
{
    uint64_t elapsed, need;

    if (e->tokens > l->cap)
        e->tokens = l->cap;
    if (now_ms <= e->last_ms)
        return;
    elapsed = now_ms - e->last_ms;
    e->last_ms = now_ms;
    need = l->cap - e->tokens;
    if (elapsed >= rl__div_up(need, l->per_ms))
        e->tokens = l->cap;
    else
        e->tokens += elapsed * l->per_ms;
}

/* The bucket of key (created full, evicting if need be), refilled to
 * now_ms; the caller holds s->mu. */
static rl__entry_t *rl__bucket(rl__stripe_t *s, const rl__key_t *k,
                               const rl__limit_t *l, uint64_t now_ms)
{
    rl__entry_t *e;
    uint32_t at = rl__probe(s, k, &e);

    if (e != NULL) {
        rl__refill(e, l, now_ms);
        return e;
    }
    if (s->nbuckets == s->cap) {
        rl__evict(s, now_ms);
        at = rl__probe(s, k, &e);  /* the eviction may have moved slots */
    }
    e = rl__insert(s, at, k);
    e->tokens = l->cap;
    e->last_ms = now_ms;
    rl__heap_push(s, e);
    return e;
}

/* rl_take for a limited rate and a key of valid length. */
static bool rl__take(rl_table_t *t, const char *key, size_t len,
                     const rl__limit_t *l, uint64_t now_ms, uint64_t *retry)
{
    rl__stripe_t *s;
    rl__entry_t *e;
    rl__key_t k;
    bool allowed;

    s = rl__lock(t, key, len, RL__BUCKET, &k);
    e = rl__bucket(s, &k, l, now_ms);
    allowed = e->tokens >= RL__UNIT;
    if (allowed) {
        e->tokens -= RL__UNIT;
    } else {
        *retry = rl__div_up(RL__UNIT - e->tokens, l->per_ms);
        if (e->last_ms > now_ms)   /* tokens are counted from last_ms */
            *retry += e->last_ms - now_ms;
    }
    e->full_at = e->last_ms + rl__div_up(l->cap - e->tokens, l->per_ms);
    rl__heap_fix(s, e->link);
    pthread_mutex_unlock(&s->mu);
    return allowed;
}

bool rl_take(rl_table_t *t, const char *key, size_t len, double rate_per_s,
             uint32_t burst, uint64_t now_ms, uint64_t *retry_after_ms)
{
    uint64_t retry = 0;
    bool allowed = true;
    rl__limit_t l;

    if (rate_per_s > 0) {          /* false for 0, negative and NaN */
        if (len > RL_KEY_MAX) {
            allowed = false;
        } else {
            l = rl__limit(rate_per_s, burst);
            allowed = rl__take(t, key, len, &l, now_ms, &retry);
        }
    }
    if (retry_after_ms)
        *retry_after_ms = retry;
    return allowed;
}

bool rl_peek(rl_table_t *t, const char *key, size_t len, double rate_per_s,
             uint32_t burst, uint64_t now_ms, uint64_t *retry_after_ms)
{
    rl__stripe_t *s;
    rl__entry_t *e;
    rl__key_t k;
    rl__limit_t l;
    uint64_t retry = 0;
    bool allowed = true;

    if (rate_per_s > 0 && len <= RL_KEY_MAX) {
        l = rl__limit(rate_per_s, burst);
        s = rl__lock(t, key, len, RL__BUCKET, &k);
        rl__probe(s, &k, &e);
        if (e != NULL) {
            rl__refill(e, &l, now_ms);
            allowed = e->tokens >= RL__UNIT;
            if (!allowed)
                retry = rl__div_up(RL__UNIT - e->tokens, l.per_ms) +
                        (e->last_ms > now_ms ? e->last_ms - now_ms : 0);
            e->full_at = e->last_ms + rl__div_up(l.cap - e->tokens, l.per_ms);
            rl__heap_fix(s, e->link);
        }
        pthread_mutex_unlock(&s->mu);
    }
    if (retry_after_ms)
        *retry_after_ms = retry;
    return allowed;
}

/* --- connection counters -------------------------------------------------- */

bool rl_conn_acquire(rl_table_t *t, const char *key, size_t len,
                     uint32_t max)
{
    rl__stripe_t *s;
    rl__entry_t *e;
    rl__key_t k;
    uint32_t at;
    bool ok = false;

    if (max == 0)
        return true;
    if (len > RL_KEY_MAX)
        return false;
    s = rl__lock(t, key, len, RL__CONN, &k);
    at = rl__probe(s, &k, &e);
    if (e == NULL) {
        if (s->nconns == s->cap) {
            s->conn_refused_full++;
            goto out;
        }
        e = rl__insert(s, at, &k);
        s->nconns++;
    }
    if (e->conns < max) {
        e->conns++;
        ok = true;
    }
out:
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void rl_conn_release(rl_table_t *t, const char *key, size_t len)
{
    rl__stripe_t *s;
    rl__entry_t *e;
    rl__key_t k;
    uint32_t at;

    if (len > RL_KEY_MAX)
        return;
    s = rl__lock(t, key, len, RL__CONN, &k);
    at = rl__probe(s, &k, &e);
    if (e != NULL && --e->conns == 0) {
        rl__remove(s, at);
        s->nconns--;
    }
    pthread_mutex_unlock(&s->mu);
}

uint32_t rl_conn_count(rl_table_t *t, const char *key, size_t len)
{
    rl__stripe_t *s;
    rl__entry_t *e;
    rl__key_t k;
    uint32_t n;

    if (len > RL_KEY_MAX)
        return 0;
    s = rl__lock(t, key, len, RL__CONN, &k);
    rl__probe(s, &k, &e);
    n = e ? e->conns : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void rl_stats(rl_table_t *t, rl_stats_t *out)
{
    uint32_t i;

    memset(out, 0, sizeof *out);
    out->max_keys = t->max_keys;
    for (i = 0; i < t->nstripes; i++) {
        rl__stripe_t *s = &t->stripes[i];

        pthread_mutex_lock(&s->mu);
        out->buckets += s->nbuckets;
        out->conn_keys += s->nconns;
        out->evicted_idle += s->evicted_idle;
        out->evicted_busy += s->evicted_busy;
        out->conn_refused_full += s->conn_refused_full;
        pthread_mutex_unlock(&s->mu);
    }
}
