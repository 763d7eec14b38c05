/*
 * replay.c - the Standard Webhooks replay memory. See replay.h.
 *
 * Layout. Entries live in a ring in the order they were recorded, each with
 * its expiry (record time + 2 x tolerance). Since every entry gets the same
 * lifetime, the ring is also ordered by expiry (up to clock steps), so
 * expiring is popping from the head and "evict the oldest" is the same pop:
 * both O(1), never a scan. An open-addressing index (linear probing, load
 * <= 1/2, backward-shift deletion, no tombstones) maps a fingerprint to its
 * ring position. Everything is allocated at replay_new.
 *
 * Clock steps. Expiry is checked at the head only. If the wall clock steps
 * back, later entries may expire before the head and then linger until it
 * goes; an entry found in the index counts as a replay even then, which
 * errs on the refusing side by at most the size of the step (and a signed
 * request that old is refused by its timestamp anyway).
 */
#include "auth/replay.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "core/siphash.h"

/* Fingerprinted bytes: length-prefixed source and id, then ts. */
#define REPLAY__KEY_MAX (1 + REPLAY_SOURCE_MAX + 2 + REPLAY_ID_MAX + 8)

typedef struct replay__entry {
    uint64_t fp[2];
    int64_t expires;               /* seconds */
} replay__entry_t;

struct replay {
    pthread_mutex_t mu;
    replay__entry_t *ring;         /* capacity entries */
    uint32_t *slots;               /* ring index + 1; 0 = empty */
    uint32_t mask;                 /* number of slots - 1 */
    size_t capacity, head, count;
    int64_t lifetime_s;            /* 2 x tolerance */
    uint64_t evicted_live;
    uint64_t k[4];                 /* two SipHash keys */
};

replay_t *replay_new(size_t capacity, int64_t tolerance_s)
{
    unsigned char seed[32];
    replay_t *r;
    size_t nslots = 1;

    if (capacity == 0 || capacity > REPLAY_MAX_CAPACITY || tolerance_s < 1 ||
        tolerance_s > REPLAY_MAX_TOLERANCE)
        return NULL;
    if (RAND_bytes(seed, sizeof seed) != 1)
        return NULL;
    while (nslots < 2 * capacity)
        nslots *= 2;
    r = calloc(1, sizeof *r);
    if (!r)
        goto fail;
    r->ring = calloc(capacity, sizeof *r->ring);
    r->slots = calloc(nslots, sizeof *r->slots);
    if (!r->ring || !r->slots || pthread_mutex_init(&r->mu, NULL) != 0)
        goto fail;
    r->mask = (uint32_t)(nslots - 1);
    r->capacity = capacity;
    r->lifetime_s = 2 * tolerance_s;
    memcpy(r->k, seed, sizeof seed);
    OPENSSL_cleanse(seed, sizeof seed);
    return r;
fail:
    OPENSSL_cleanse(seed, sizeof seed);
    if (r) {
        free(r->ring);
        free(r->slots);
        free(r);
    }
    return NULL;
}

void replay_free(replay_t *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->mu);
    free(r->ring);
    free(r->slots);
    OPENSSL_cleanse(r, sizeof *r);
    free(r);
}

/* The fingerprint of a triple; false when an input is out of bounds. */
static bool replay__fingerprint(const replay_t *r, const char *source, const char *id,
                                size_t id_len, int64_t ts, uint64_t fp[2])
{
    unsigned char key[REPLAY__KEY_MAX];
    size_t slen = source ? strnlen(source, REPLAY_SOURCE_MAX + 1) : 0, n = 0;
    uint64_t uts = (uint64_t)ts;

    if (slen == 0 || slen > REPLAY_SOURCE_MAX || !id || id_len == 0 ||
        id_len > REPLAY_ID_MAX)
        return false;
    key[n++] = (unsigned char)slen;
    memcpy(key + n, source, slen);
    n += slen;
    key[n++] = (unsigned char)(id_len >> 8);
    key[n++] = (unsigned char)id_len;
    memcpy(key + n, id, id_len);
    n += id_len;
    for (int i = 0; i < 8; i++)
        key[n++] = (unsigned char)(uts >> (8 * i));
    fp[0] = siphash13(r->k[0], r->k[1], key, n);
    fp[1] = siphash13(r->k[2], r->k[3], key, n);
    return true;
}

/* The slot holding fp, or the empty slot ending its probe chain (*found
 * false). */
static uint32_t replay__probe(const replay_t *r, const uint64_t fp[2], bool *found)
{
    uint32_t i = (uint32_t)fp[0] & r->mask;

    for (;; i = (i + 1) & r->mask) {
        const replay__entry_t *e;

        if (r->slots[i] == 0) {
            *found = false;
            return i;
        }
        e = &r->ring[r->slots[i] - 1];
        if (e->fp[0] == fp[0] && e->fp[1] == fp[1]) {
            *found = true;
            return i;
        }
    }
}

/* True when the entry in slot j, whose home slot is h, may move back to
 * the hole at i (it would still be reached from h). */
static bool replay__may_fill(uint32_t i, uint32_t j, uint32_t h)
{
    if (i <= j)
        return h <= i || h > j;
    return h <= i && h > j;
}

/* Removes the ring's head entry from the index and the ring. */
static void replay__pop(replay_t *r)
{
    const replay__entry_t *e = &r->ring[r->head];
    uint32_t at = (uint32_t)e->fp[0] & r->mask, j, h;

    assert(r->capacity > 0 && r->count > 0);      /* replay_new refuses 0 */

    while (r->slots[at] != r->head + 1)
        at = (at + 1) & r->mask;
    r->slots[at] = 0;
    for (j = at;;) {
        j = (j + 1) & r->mask;
        if (r->slots[j] == 0)
            break;
        h = (uint32_t)r->ring[r->slots[j] - 1].fp[0] & r->mask;
        if (replay__may_fill(at, j, h)) {
            r->slots[at] = r->slots[j];
            r->slots[j] = 0;
            at = j;
        }
    }
    r->head = (r->head + 1) % r->capacity;
    r->count--;
}

bool replay_seen(replay_t *r, const char *source, const char *id, size_t id_len,
                 int64_t ts, int64_t now_s)
{
    uint64_t fp[2];
    uint32_t at;
    size_t tail;
    bool found;

    assert(r);
    if (!replay__fingerprint(r, source, id, id_len, ts, fp))
        return true;
    pthread_mutex_lock(&r->mu);
    while (r->count && r->ring[r->head].expires <= now_s)
        replay__pop(r);
    at = replay__probe(r, fp, &found);
    if (found) {
        pthread_mutex_unlock(&r->mu);
        return true;
    }
    if (r->count == r->capacity) {
        replay__pop(r);
        r->evicted_live++;
        at = replay__probe(r, fp, &found);   /* the pop may have moved the hole */
    }
    tail = (r->head + r->count) % r->capacity;
    r->ring[tail].fp[0] = fp[0];
    r->ring[tail].fp[1] = fp[1];
    r->ring[tail].expires = now_s > INT64_MAX - r->lifetime_s ? INT64_MAX
                                                                : now_s + r->lifetime_s;
    r->slots[at] = (uint32_t)tail + 1;
    r->count++;
    pthread_mutex_unlock(&r->mu);
    return false;
}

void replay_stats(replay_t *r, replay_stats_t *out)
{
    pthread_mutex_lock(&r->mu);
    out->capacity = r->capacity;
    out->entries = r->count;
    out->evicted_live = r->evicted_live;
    pthread_mutex_unlock(&r->mu);
}
