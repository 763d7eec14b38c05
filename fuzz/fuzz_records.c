/*
 * fuzz_records.c - the loaders of stored records on arbitrary documents:
 * what the store (or a replicating peer) hands back is not trusted.
 *
 * Input: a selector byte, then the document (JSON text). Selector bit 0
 * picks the parser; the other bits are parameters of the state
 * operations below. Time is a fixed NOW_MS, so every run is
 * deterministic; nothing is kept between runs (no leak to report).
 *
 * 0: cons_from_json (hub/consumer.h). An accepted record must satisfy the
 *    consumer's invariants (below); cons_to_json of it must load back to
 *    an equal document. Then a few operations of the state machine run on
 *    it (cons_due and cons_ack on an entry the input picks, cons_ack of an
 *    absent sequence, cons_deliver_new, cons_redeliver of entry 0 with a
 *    max_deliver the selector picks), each checked against what
 *    consumer.h promises, and the invariants and the round trip are
 *    checked again: what the operations leave is what pull.c persists.
 *    Invariants: lists within CONS_FILTER_MAX and at least one subject;
 *    npending <= CONS_PENDING_MAX, nparked <= CONS_PARKED_MAX; pending
 *    entries in strictly increasing consumer sequence, each in
 *    1..delivered with at least one delivery; ack_floor <= delivered and
 *    exactly "first pending cseq - 1" (or delivered); the floor never
 *    moves back.
 * 1: keys_load (auth/keys.h) into a fresh registry. On 0: one key; no
 *    public view (keys_list, keys_get) holds the record's hash or
 *    prev_hash anywhere; loading the same record again succeeds and keeps
 *    the count; revoking the key gives a record with the same hash that
 *    loads into a fresh registry, where replaying the original (not
 *    revoked) record does not revive it. On error: err never holds the
 *    hash.
 *
 * The users record loader (auth/users.c users__from_record) is static and
 * reachable only through users_init with a store, so it is not fuzzed
 * here.
 */
#undef NDEBUG                    /* the checks below are the point */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth/keys.h"
#include "hub/consumer.h"

#define NOW_MS 1750000000000ll
#define ACK_WAIT_MS 30000
#define MAX_INPUT 4096

/* --- consumers ----------------------------------------------------------- */

static void fz_cons_check(const consumer_t *c)
{
    const cons_list_t *lists[] = {&c->subjects, &c->events, &c->branches};

    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        assert(lists[i]->n <= CONS_FILTER_MAX);
        for (size_t k = 0; k < lists[i]->n; k++)
            assert(lists[i]->v[k] != NULL);
    }
    assert(c->subjects.n >= 1);
    assert(c->npending <= CONS_PENDING_MAX && c->npending <= c->cap);
    assert(c->nparked <= CONS_PARKED_MAX);
    assert(c->nparked == 0 || c->parked != NULL);
    for (size_t i = 0; i < c->npending; i++) {
        const cons_pending_t *e = &c->pending[i];

        assert(e->cseq >= 1 && e->cseq <= c->delivered);
        assert(e->deliveries >= 1);
        assert(i == 0 || e->cseq > c->pending[i - 1].cseq);
    }
    assert(c->ack_floor <= c->delivered);
    assert(c->ack_floor ==
           (c->npending ? c->pending[0].cseq - 1 : c->delivered));
}

/* cons_to_json of c loads back to an equal document; returns it. */
static json_t *fz_cons_round_trip(const consumer_t *c)
{
    json_t *j1 = cons_to_json(c), *j2;
    consumer_t *back;

    assert(j1);
    back = cons_from_json(c->tenant, c->name, j1);
    assert(back);
    fz_cons_check(back);
    j2 = cons_to_json(back);
    assert(j2 && json_equal(j1, j2));
    assert(back->ack_floor == c->ack_floor && back->npending == c->npending);
    json_decref(j2);
    cons_free(back);
    return j1;
}

static void fz_cons_ack(consumer_t *c, uint64_t sseq)
{
    size_t n = c->npending;
    uint64_t floor = c->ack_floor;
    bool was = cons_find(c, sseq) >= 0;

    assert(cons_ack(c, sseq) == (was ? 0 : -1));
    assert(c->npending == (was ? n - 1 : n));
    assert(c->ack_floor >= floor);
    fz_cons_check(c);
}

static void fz_cons_ops(consumer_t *c, unsigned sel, uint64_t pick)
{
    uint32_t max_deliver = 1 + (sel >> 1) % 8;
    uint64_t floor, delivered, sseq = (pick & INT64_MAX) | 1;
    size_t n;
    int rc;

    if (c->npending) {
        size_t i = (size_t)(pick % c->npending);

        (void)cons_due(c, i, NOW_MS, ACK_WAIT_MS);   /* loaded times are bounded */
        fz_cons_ack(c, c->pending[i].sseq);
    }
    fz_cons_ack(c, sseq);

    n = c->npending;
    delivered = c->delivered;
    floor = c->ack_floor;
    rc = cons_deliver_new(c, sseq, NOW_MS);
    if (rc == 0) {
        assert(c->npending == n + 1 && c->delivered == delivered + 1);
        assert(c->pending[n].cseq == c->delivered &&
               c->pending[n].sseq == sseq && c->pending[n].deliveries == 1);
        assert(c->last_seq >= sseq);
    } else {
        assert(n == CONS_PENDING_MAX && c->npending == n);
    }
    assert(c->ack_floor >= floor);
    fz_cons_check(c);

    if (c->npending) {
        cons_pending_t e = c->pending[0];

        n = c->npending;
        floor = c->ack_floor;
        rc = cons_redeliver(c, 0, NOW_MS, max_deliver);
        if (rc == 1) {
            assert(c->npending == n && c->pending[0].deliveries == e.deliveries + 1);
            assert(c->pending[0].last_ms == NOW_MS);
        } else {
            assert(rc == 0 && e.deliveries >= max_deliver);
            assert(c->npending == n - 1 && c->nparked >= 1);
            assert(c->parked[c->nparked - 1] == e.sseq);
        }
        assert(c->ack_floor >= floor);
        fz_cons_check(c);
    }
}

static void fz_consumer(unsigned sel, const uint8_t *doc, size_t len)
{
    json_t *j = json_loadb((const char *)doc, len, 0, NULL);
    consumer_t *c = j ? cons_from_json("acme", "key_fuzz", j) : NULL;
    uint64_t pick = 0;

    if (c) {
        fz_cons_check(c);
        json_decref(fz_cons_round_trip(c));
        for (size_t i = 0; i < len && i < 8; i++)
            pick = pick << 8 | doc[len - 1 - i];
        fz_cons_ops(c, sel, pick);
        json_decref(fz_cons_round_trip(c));
    }
    cons_free(c);
    json_decref(j);
}

/* --- API key records ----------------------------------------------------- */

/* Aborts when text holds the string member name of rec, unless it is
 * short enough for a coincidence or the record also holds that string
 * outside its hash members (a tenant, name or pattern may spell it). */
static void fz_no_secret(const char *text, const json_t *rec, const char *name)
{
    const json_t *h = json_object_get(rec, name);
    json_t *rest;
    char *others;

    if (!text || !json_is_string(h) || json_string_length(h) < 16 ||
        !strstr(text, json_string_value(h)))
        return;
    rest = json_deep_copy(rec);
    assert(rest);
    json_object_del(rest, "hash");
    json_object_del(rest, "prev_hash");
    others = json_dumps(rest, JSON_COMPACT | JSON_ENSURE_ASCII);
    assert(others && strstr(others, json_string_value(h)) != NULL);
    free(others);
    json_decref(rest);
}

static void fz_view_clean(const json_t *view, const json_t *rec)
{
    char *text = json_dumps(view, JSON_COMPACT | JSON_ENSURE_ASCII);
    const json_t *v;
    size_t i;

    assert(text);
    json_array_foreach(view, i, v) {
        assert(json_is_object(v));
        assert(!json_object_get(v, "hash") && !json_object_get(v, "prev_hash"));
    }
    fz_no_secret(text, rec, "hash");
    fz_no_secret(text, rec, "prev_hash");
    free(text);
}

/* The public views of the one key of reg hold no secret of rec. */
static void fz_keys_views(keys_reg_t *reg, const json_t *rec)
{
    json_t *list = keys_list(reg, NULL, 0, NOW_MS), *one = NULL;
    const json_t *id = json_object_get(rec, "id");

    assert(json_is_array(list) && json_array_size(list) == 1);
    fz_view_clean(list, rec);
    assert(keys_get(reg, json_string_value(id), json_string_length(id), NULL,
                    0, NOW_MS, &one) == 0);
    assert(json_equal(one, json_array_get(list, 0)));
    json_decref(one);
    json_decref(list);
}

/* Revocation is persisted and final: its record loads, and replaying the
 * original record does not revive the key. */
static void fz_keys_revoke(keys_reg_t *reg, const json_t *rec)
{
    const json_t *id = json_object_get(rec, "id");
    const char *ids = json_string_value(id);
    json_t *revoked = NULL;
    keys_reg_t *fresh = keys_new();
    char err[KEYS_ERR_LEN];

    assert(fresh);
    assert(keys_revoke(reg, ids, json_string_length(id), NULL, 0, NOW_MS,
                       &revoked) == 0);
    assert(keys_status(reg, ids, json_string_length(id), NOW_MS) ==
           KEYS_AUTH_REVOKED);
    assert(json_equal(json_object_get(revoked, "hash"),
                      json_object_get(rec, "hash")));
    assert(keys_load(fresh, revoked, err, sizeof err) == 0);
    assert(keys_load(fresh, rec, err, sizeof err) == 0);
    assert(keys_count(fresh) == 1);
    assert(keys_status(fresh, ids, json_string_length(id), NOW_MS) ==
           KEYS_AUTH_REVOKED);
    fz_keys_views(fresh, rec);
    json_decref(revoked);
    keys_free(fresh);
}

static void fz_keys(const uint8_t *doc, size_t len)
{
    json_t *rec = json_loadb((const char *)doc, len, 0, NULL);
    keys_reg_t *reg = keys_new();
    char err[KEYS_ERR_LEN];
    int rc;

    assert(reg);
    if (!rec)
        goto out;
    memset(err, 'X', sizeof err);
    rc = keys_load(reg, rec, err, sizeof err);
    if (rc != 0) {
        assert(rc == KEYS_EINVAL || rc == KEYS_EINTERNAL);
        assert(memchr(err, 0, sizeof err) != NULL && err[0] != '\0');
        fz_no_secret(err, rec, "hash");
        fz_no_secret(err, rec, "prev_hash");
        assert(keys_count(reg) == 0);
        goto out;
    }
    assert(keys_count(reg) == 1);
    fz_keys_views(reg, rec);
    assert(keys_load(reg, rec, err, sizeof err) == 0);
    assert(keys_count(reg) == 1);
    fz_keys_views(reg, rec);
    fz_keys_revoke(reg, rec);     /* also at the very end of time */
out:
    keys_free(reg);
    json_decref(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT)
        return 0;
    if (data[0] & 1)
        fz_keys(data + 1, size - 1);
    else
        fz_consumer(data[0], data + 1, size - 1);
    return 0;
}
