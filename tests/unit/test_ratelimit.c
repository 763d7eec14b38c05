/*
 * test_ratelimit.c - token buckets, eviction and connection counters.
 *
 * Time is simulated: every call passes now_ms explicitly. Tables created
 * with fewer than 32 keys have a single stripe, which makes eviction order
 * observable; the thread tests use a roomy table so that counting, not
 * eviction, is what they check. Connection counters are also checked
 * against a plain array model under random operations, which exercises
 * the index's deletions.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/ratelimit.h"

#define NTHREADS 4
#define NKEYS 1000
#define ROUNDS 10

static rl_table_t *new_table(size_t max_keys)
{
    rl_table_t *t = rl_new(max_keys);

    assert_non_null(t);
    return t;
}

static bool take(rl_table_t *t, const char *key, double rate, uint32_t burst,
                 uint64_t now, uint64_t *retry)
{
    return rl_take(t, key, strlen(key), rate, burst, now, retry);
}

/* Takes until refused; returns how many were allowed (at most limit). */
static unsigned drain(rl_table_t *t, const char *key, double rate,
                      uint32_t burst, uint64_t now, unsigned limit)
{
    unsigned n = 0;

    while (n < limit && take(t, key, rate, burst, now, NULL))
        n++;
    return n;
}

static size_t buckets(rl_table_t *t)
{
    rl_stats_t st;

    rl_stats(t, &st);
    return st.buckets;
}

/* rl_peek neither takes a token nor creates a bucket; it sees a drained
 * bucket as limited with the same retry time as rl_take. */
static void test_peek(void **state)
{
    rl_table_t *t = new_table(1024);
    uint64_t retry = 7, retry_take = 0;

    assert_true(rl_peek(t, "p", 1, 1, 3, 0, &retry));
    assert_int_equal(retry, 0);
    assert_int_equal(buckets(t), 0);
    assert_int_equal(drain(t, "p", 1, 3, 0, 10), 3);
    assert_false(rl_peek(t, "p", 1, 1, 3, 0, &retry));
    assert_false(take(t, "p", 1, 3, 0, &retry_take));
    assert_int_equal(retry, retry_take);
    assert_true(rl_peek(t, "p", 1, 1, 3, 1000, &retry));     /* refilled */
    assert_true(rl_peek(t, "p", 1, 1, 3, 1000, NULL));       /* still there */
    assert_true(take(t, "p", 1, 3, 1000, NULL));
    assert_false(rl_peek(t, "p", 1, 1, 3, 1000, NULL));
    assert_true(rl_peek(t, "p", 1, 0, 3, 1000, NULL));       /* unlimited */
    assert_int_equal(buckets(t), 1);
    rl_free(t);
}

static void test_new_limits(void **state)
{
    rl_table_t *t;
    rl_stats_t st;

    assert_null(rl_new(0));
    assert_null(rl_new((size_t)RL_MAX_KEYS + 1));
    t = new_table(1);
    rl_stats(t, &st);
    assert_int_equal(st.max_keys, 1);
    assert_int_equal(st.buckets, 0);
    assert_int_equal(st.conn_keys, 0);
    rl_free(t);
    rl_free(NULL);
}

static void test_burst_then_limit(void **state)
{
    rl_table_t *t = new_table(8);
    uint64_t retry = 77;
    int i;

    for (i = 0; i < 5; i++) {
        assert_true(take(t, "k", 1, 5, 1000, &retry));
        assert_int_equal(retry, 0);
    }
    assert_false(take(t, "k", 1, 5, 1000, &retry));
    assert_int_equal(retry, 1000);
    assert_false(take(t, "k", 1, 5, 1000, NULL));
    assert_int_equal(buckets(t), 1);
    rl_free(t);
}

static void test_refill(void **state)
{
    rl_table_t *t = new_table(8);
    uint64_t retry;

    assert_int_equal(drain(t, "k", 10, 5, 0, 100), 5);
    assert_false(take(t, "k", 10, 5, 99, &retry));
    assert_int_equal(retry, 1);
    assert_true(take(t, "k", 10, 5, 100, &retry));
    assert_false(take(t, "k", 10, 5, 100, &retry));
    assert_int_equal(retry, 100);
    /* 350 ms later: 3.5 tokens */
    assert_int_equal(drain(t, "k", 10, 5, 450, 100), 3);
    assert_false(take(t, "k", 10, 5, 450, &retry));
    assert_int_equal(retry, 50);
    /* a long idle time refills to burst and no further */
    assert_int_equal(drain(t, "k", 10, 5, 10000000, 100), 5);
    rl_free(t);
}

/* Fractional refill is exact: 3 tokens/s over 1 ms steps gives 3 per s
 * (burst 2, so the bucket never overflows and loses nothing). With burst
 * 1 the part of a token refilled past a full bucket is lost, as it must. */
static void test_refill_exact(void **state)
{
    rl_table_t *t = new_table(8);
    unsigned allowed = 0;
    uint64_t now;

    assert_int_equal(drain(t, "k", 3, 2, 0, 10), 2);
    for (now = 1; now <= 10000; now++)
        allowed += take(t, "k", 3, 2, now, NULL);
    assert_int_equal(allowed, 30);
    allowed = drain(t, "one", 3, 1, 0, 10);
    for (now = 1; now <= 10000; now++)
        allowed += take(t, "one", 3, 1, now, NULL);
    assert_int_equal(allowed, 1 + 29);     /* 10000 / 334 ms */
    rl_free(t);
}

static void test_retry_after(void **state)
{
    rl_table_t *t = new_table(8);
    uint64_t retry;

    assert_int_equal(drain(t, "a", 1, 2, 0, 10), 2);
    assert_false(take(t, "a", 1, 2, 0, &retry));
    assert_int_equal(retry, 1000);
    assert_false(take(t, "a", 1, 2, 400, &retry));
    assert_int_equal(retry, 600);
    assert_false(take(t, "a", 1, 2, 999, &retry));
    assert_int_equal(retry, 1);
    assert_true(take(t, "a", 1, 2, 1000, &retry));
    assert_int_equal(retry, 0);

    assert_int_equal(drain(t, "b", 0.5, 1, 0, 10), 1);
    assert_false(take(t, "b", 0.5, 1, 0, &retry));
    assert_int_equal(retry, 2000);

    /* 3/s: a token every 333.3 ms, so the wait rounds up to 334 */
    assert_int_equal(drain(t, "c", 3, 1, 0, 10), 1);
    assert_false(take(t, "c", 3, 1, 0, &retry));
    assert_int_equal(retry, 334);
    assert_false(take(t, "c", 3, 1, 333, NULL));
    assert_true(take(t, "c", 3, 1, 334, NULL));
    rl_free(t);
}

static void test_keys_independent(void **state)
{
    rl_table_t *t = new_table(16);

    assert_int_equal(drain(t, "a", 1, 3, 0, 10), 3);
    assert_int_equal(drain(t, "b", 1, 3, 0, 10), 3);
    assert_int_equal(drain(t, "A", 1, 3, 0, 10), 3);
    assert_int_equal(drain(t, "ab", 1, 3, 0, 10), 3);
    /* same bytes, different length; embedded NUL */
    assert_true(rl_take(t, "a\0", 2, 1, 3, 0, NULL));
    assert_true(rl_take(t, "", 0, 1, 3, 0, NULL));
    assert_false(take(t, "a", 1, 3, 0, NULL));
    assert_int_equal(buckets(t), 6);
    rl_free(t);
}

static void test_rate_zero_unlimited(void **state)
{
    rl_table_t *t = new_table(8);
    uint64_t retry = 5;
    int i;

    for (i = 0; i < 1000; i++) {
        assert_true(take(t, "k", 0, 1, 0, &retry));
        assert_int_equal(retry, 0);
        assert_true(take(t, "k", -1, 1, 0, NULL));
        assert_true(take(t, "k", NAN, 1, 0, NULL));
    }
    assert_int_equal(buckets(t), 0);
    /* a bucket that exists is not consulted at rate 0 */
    assert_int_equal(drain(t, "k", 1, 1, 0, 10), 1);
    assert_true(take(t, "k", 0, 1, 0, NULL));
    assert_false(take(t, "k", 1, 1, 0, NULL));
    rl_free(t);
}

static void test_burst_and_rate_clamps(void **state)
{
    rl_table_t *t = new_table(8);
    uint64_t retry;

    /* burst 0 counts as 1 */
    assert_true(take(t, "z", 1, 0, 0, NULL));
    assert_false(take(t, "z", 1, 0, 0, &retry));
    assert_int_equal(retry, 1000);
    /* tiny rates count as RL_RATE_MIN: one token per 1000 s */
    assert_true(take(t, "slow", 1e-9, 1, 0, NULL));
    assert_false(take(t, "slow", 1e-9, 1, 0, &retry));
    assert_int_equal(retry, 1000000);
    /* huge rates count as RL_RATE_MAX: refused only within the same ms */
    assert_true(take(t, "fast", 1e12, 1, 0, NULL));
    assert_false(take(t, "fast", 1e12, 1, 0, &retry));
    assert_int_equal(retry, 1);
    assert_true(take(t, "fast", 1e12, 1, 1, NULL));
    /* a huge burst neither overflows nor refuses */
    assert_int_equal(drain(t, "big", 1, UINT32_MAX, 0, 100000), 100000);
    rl_free(t);
}

/* Lowering the burst cuts a fuller bucket down at once. */
static void test_burst_lowered(void **state)
{
    rl_table_t *t = new_table(8);

    assert_true(take(t, "k", 1, 10, 0, NULL));
    assert_int_equal(drain(t, "k", 1, 2, 0, 100), 2);
    assert_int_equal(drain(t, "k", 1, 10, 100000, 100), 10);
    rl_free(t);
}

/* An earlier now_ms refills nothing and the wait counts from the later. */
static void test_clock_backwards(void **state)
{
    rl_table_t *t = new_table(8);
    uint64_t retry;

    assert_int_equal(drain(t, "k", 1, 1, 5000, 10), 1);
    assert_false(take(t, "k", 1, 1, 4500, &retry));
    assert_int_equal(retry, 1500);
    assert_false(take(t, "k", 1, 1, 5999, &retry));
    assert_int_equal(retry, 1);
    assert_true(take(t, "k", 1, 1, 6000, NULL));
    assert_false(take(t, "k", 1, 1, 6000, NULL));
    rl_free(t);
}

static void test_long_key(void **state)
{
    rl_table_t *t = new_table(8);
    char key[RL_KEY_MAX + 1];
    uint64_t retry = 9;

    memset(key, 'k', sizeof key);
    assert_false(rl_take(t, key, sizeof key, 1, 5, 0, &retry));
    assert_int_equal(retry, 0);
    assert_int_equal(buckets(t), 0);
    assert_true(rl_take(t, key, RL_KEY_MAX, 1, 5, 0, &retry));
    assert_true(rl_take(t, key, sizeof key, 0, 5, 0, NULL)); /* unlimited */
    assert_false(rl_conn_acquire(t, key, sizeof key, 5));
    rl_conn_release(t, key, sizeof key);
    assert_int_equal(rl_conn_count(t, key, sizeof key), 0);
    assert_true(rl_conn_acquire(t, key, RL_KEY_MAX, 5));
    assert_int_equal(rl_conn_count(t, key, RL_KEY_MAX), 1);
    rl_free(t);
}

/* Many more keys than max_keys: the table never holds more than max_keys
 * buckets and every key beyond that is one eviction. */
static void test_eviction_bounded(void **state)
{
    rl_table_t *t = new_table(100);
    char key[32];
    rl_stats_t st;
    int i;

    for (i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "10.0.%d.%d", i / 256, i % 256);
        assert_true(take(t, key, 1, 5, (uint64_t)i, NULL));
        if (i % 100 == 0)
            assert_true(buckets(t) <= 100);
    }
    rl_stats(t, &st);
    assert_true(st.buckets <= 100 && st.buckets >= 90);
    assert_int_equal(st.evicted_idle + st.evicted_busy, 10000 - st.buckets);
    rl_free(t);
}

/* Full buckets go first; then the one nearest to full; a depleted bucket
 * is remembered. (rate 1/s, burst 10, one stripe of 4.) */
static void test_eviction_prefers_idle(void **state)
{
    rl_table_t *t = new_table(4);
    rl_stats_t st;

    assert_int_equal(drain(t, "A", 1, 10, 0, 100), 10);   /* full at 10 s */
    assert_true(take(t, "B", 1, 10, 0, NULL));             /* full at 1 s */
    assert_true(take(t, "C", 1, 10, 0, NULL));
    assert_true(take(t, "D", 1, 10, 0, NULL));
    /* at 5 s B, C, D are full again: the three new keys replace them */
    assert_true(take(t, "E", 1, 10, 5000, NULL));
    assert_true(take(t, "F", 1, 10, 5000, NULL));
    assert_true(take(t, "G", 1, 10, 5000, NULL));
    rl_stats(t, &st);
    assert_int_equal(st.evicted_idle, 3);
    assert_int_equal(st.evicted_busy, 0);
    /* none idle now: one of E, F, G (full at 6 s) goes, A (10 s) stays */
    assert_true(take(t, "H", 1, 10, 5000, NULL));
    rl_stats(t, &st);
    assert_int_equal(st.evicted_idle, 3);
    assert_int_equal(st.evicted_busy, 1);
    assert_int_equal(st.buckets, 4);
    assert_int_equal(drain(t, "A", 1, 10, 5000, 100), 5);
    /* B comes back as a new, full bucket */
    assert_int_equal(drain(t, "B", 1, 10, 5000, 100), 10);
    rl_free(t);
}

/* A limited client is not reset by a flood of new keys: each flood
 * bucket is nearer to full than the client's, so the flood evicts itself. */
static void test_eviction_flood(void **state)
{
    rl_table_t *t = new_table(16);
    uint64_t retry;
    char key[32];
    rl_stats_t st;
    int i;

    assert_int_equal(drain(t, "victim", 1, 20, 0, 100), 20);
    for (i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "flood-%d", i);
        assert_true(take(t, key, 1, 20, 0, NULL));
    }
    rl_stats(t, &st);
    assert_int_equal(st.evicted_busy, 10000 - 15);
    assert_false(take(t, "victim", 1, 20, 0, &retry));
    assert_int_equal(retry, 1000);
    rl_free(t);
}

/* The heap picks victims by time-to-full whatever the insertion order:
 * 16 buckets depleted by a permutation of 1..16 tokens, then 8 new keys
 * that empty themselves evict exactly the 8 least depleted. */
static void test_eviction_order(void **state)
{
    static const unsigned perm[16] = { 7, 13, 2, 16, 9, 1, 11, 4,
                                       15, 6, 3, 12, 8, 14, 5, 10 };
    rl_table_t *t = new_table(16);
    char key[16];
    rl_stats_t st;
    unsigned i;

    for (i = 0; i < 16; i++) {
        snprintf(key, sizeof key, "old-%u", perm[i]);
        assert_int_equal(drain(t, key, 1, 20, 0, perm[i]), perm[i]);
    }
    for (i = 0; i < 8; i++) {
        snprintf(key, sizeof key, "new-%u", i);
        assert_int_equal(drain(t, key, 1, 20, 0, 100), 20);
    }
    rl_stats(t, &st);
    assert_int_equal(st.evicted_busy, 8);
    for (i = 16; i > 8; i--) {
        snprintf(key, sizeof key, "old-%u", i);
        assert_int_equal(drain(t, key, 1, 20, 0, 100), 20 - i);
    }
    rl_stats(t, &st);
    assert_int_equal(st.evicted_busy, 8);
    rl_free(t);
}

typedef struct worker {
    rl_table_t *t;
    pthread_barrier_t *barrier;
    unsigned id;
    unsigned allowed[3];           /* per phase */
    unsigned conns;                /* acquires that succeeded */
} worker_t;

static const uint64_t phase_now[3] = { 1000, 2500, 1000000 };

static void key_name(char *buf, size_t cap, unsigned k)
{
    snprintf(buf, cap, "key-%u", k);
}

static void *hammer(void *arg)
{
    worker_t *w = arg;
    char key[32];
    unsigned p, r, i, k;

    for (p = 0; p < 3; p++) {
        pthread_barrier_wait(w->barrier);
        for (r = 0; r < ROUNDS; r++) {
            for (i = 0; i < NKEYS; i++) {
                k = (i + w->id * 250) % NKEYS;
                key_name(key, sizeof key, k);
                w->allowed[p] += take(w->t, key, 2, 5, phase_now[p], NULL);
            }
        }
    }
    for (i = 0; i < NKEYS; i++) {
        key_name(key, sizeof key, (i * 7 + w->id) % NKEYS);
        w->conns += rl_conn_acquire(w->t, key, strlen(key), 2);
    }
    return NULL;
}

/* Four threads, 1000 keys, every key tried 40 times per phase: exactly
 * burst (5) tokens per key at first, then 1.5 s * 2/s = 3, then a full
 * bucket again; and exactly 2 connections per key. */
static void test_threads_exact(void **state)
{
    rl_table_t *t = new_table(8192);
    pthread_barrier_t barrier;
    pthread_t th[NTHREADS];
    worker_t w[NTHREADS];
    unsigned sum[3] = { 0 }, conns = 0, i, p;
    char key[32];
    rl_stats_t st;

    assert_int_equal(pthread_barrier_init(&barrier, NULL, NTHREADS), 0);
    for (i = 0; i < NTHREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].t = t;
        w[i].barrier = &barrier;
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &w[i]), 0);
    }
    for (i = 0; i < NTHREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        for (p = 0; p < 3; p++)
            sum[p] += w[i].allowed[p];
        conns += w[i].conns;
    }
    pthread_barrier_destroy(&barrier);
    assert_int_equal(sum[0], NKEYS * 5);
    assert_int_equal(sum[1], NKEYS * 3);
    assert_int_equal(sum[2], NKEYS * 5);
    assert_int_equal(conns, NKEYS * 2);
    rl_stats(t, &st);
    assert_int_equal(st.buckets, NKEYS);
    assert_int_equal(st.conn_keys, NKEYS);
    assert_int_equal(st.evicted_idle + st.evicted_busy, 0);
    for (i = 0; i < NKEYS; i++) {
        key_name(key, sizeof key, i);
        assert_int_equal(rl_conn_count(t, key, strlen(key)), 2);
        rl_conn_release(t, key, strlen(key));
        rl_conn_release(t, key, strlen(key));
    }
    rl_stats(t, &st);
    assert_int_equal(st.conn_keys, 0);
    rl_free(t);
}

static void test_conn_caps(void **state)
{
    rl_table_t *t = new_table(8);
    rl_stats_t st;

    assert_true(rl_conn_acquire(t, "ip", 2, 2));
    assert_true(rl_conn_acquire(t, "ip", 2, 2));
    assert_false(rl_conn_acquire(t, "ip", 2, 2));
    assert_int_equal(rl_conn_count(t, "ip", 2), 2);
    /* a higher cap applies at once */
    assert_true(rl_conn_acquire(t, "ip", 2, 3));
    assert_int_equal(rl_conn_count(t, "ip", 2), 3);
    rl_conn_release(t, "ip", 2);
    assert_int_equal(rl_conn_count(t, "ip", 2), 2);
    rl_conn_release(t, "ip", 2);
    rl_conn_release(t, "ip", 2);
    assert_int_equal(rl_conn_count(t, "ip", 2), 0);
    rl_stats(t, &st);
    assert_int_equal(st.conn_keys, 0);
    /* never below zero: extra releases change nothing */
    rl_conn_release(t, "ip", 2);
    rl_conn_release(t, "ip", 2);
    assert_int_equal(rl_conn_count(t, "ip", 2), 0);
    assert_true(rl_conn_acquire(t, "ip", 2, 1));
    assert_false(rl_conn_acquire(t, "ip", 2, 1));
    /* unknown keys are harmless to release */
    rl_conn_release(t, "nobody", 6);
    rl_conn_release(t, "", 0);
    assert_int_equal(rl_conn_count(t, "nobody", 6), 0);
    /* max 0: no cap, nothing counted */
    assert_true(rl_conn_acquire(t, "free", 4, 0));
    assert_true(rl_conn_acquire(t, "free", 4, 0));
    assert_int_equal(rl_conn_count(t, "free", 4), 0);
    /* buckets and counters are separate key spaces */
    assert_int_equal(buckets(t), 0);
    assert_true(take(t, "ip", 1, 1, 0, NULL));
    assert_int_equal(rl_conn_count(t, "ip", 2), 1);
    rl_conn_release(t, "ip", 2);
    assert_false(take(t, "ip", 1, 1, 0, NULL));
    rl_stats(t, &st);
    assert_int_equal(st.buckets, 1);
    assert_int_equal(st.conn_keys, 0);
    rl_free(t);
}

/* With its share of counters in use a stripe refuses new keys (fail
 * closed) but still serves the keys it has, and buckets are unaffected. */
static void test_conn_table_full(void **state)
{
    rl_table_t *t = new_table(2);
    rl_stats_t st;

    assert_true(rl_conn_acquire(t, "a", 1, 5));
    assert_true(rl_conn_acquire(t, "b", 1, 5));
    assert_false(rl_conn_acquire(t, "c", 1, 5));
    assert_true(rl_conn_acquire(t, "a", 1, 5));
    rl_stats(t, &st);
    assert_int_equal(st.conn_refused_full, 1);
    assert_int_equal(st.conn_keys, 2);
    assert_true(take(t, "x", 1, 1, 0, NULL));
    assert_true(take(t, "y", 1, 1, 0, NULL));
    rl_conn_release(t, "b", 1);
    assert_true(rl_conn_acquire(t, "c", 1, 5));
    assert_int_equal(rl_conn_count(t, "a", 1), 2);
    assert_int_equal(rl_conn_count(t, "c", 1), 1);
    rl_free(t);
}

/* Random acquires and releases over 40 keys in a 16-key stripe, checked
 * step by step against an array: counts, refusals and removals. */
static void test_conn_model(void **state)
{
    enum { KEYS = 40, CAP = 16, MAX = 3 };
    rl_table_t *t = new_table(CAP);
    unsigned model[KEYS] = { 0 }, live = 0, seed = 12345, i, k;
    char key[16];
    bool got, want;

    for (i = 0; i < 200000; i++) {
        seed = seed * 1103515245u + 12345u;
        k = (seed >> 16) % KEYS;
        snprintf(key, sizeof key, "c%u", k);
        if ((seed >> 8) & 1) {
            want = model[k] < MAX && (model[k] > 0 || live < CAP);
            got = rl_conn_acquire(t, key, strlen(key), MAX);
            assert_int_equal(got, want);
            live += want && model[k] == 0;
            model[k] += want;
        } else {
            rl_conn_release(t, key, strlen(key));
            live -= model[k] == 1;
            model[k] -= model[k] > 0;
        }
        if (i % 97 == 0)
            for (k = 0; k < KEYS; k++) {
                snprintf(key, sizeof key, "c%u", k);
                assert_int_equal(rl_conn_count(t, key, strlen(key)),
                                 model[k]);
            }
    }
    rl_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_limits),
        cmocka_unit_test(test_burst_then_limit),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_refill_exact),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_keys_independent),
        cmocka_unit_test(test_rate_zero_unlimited),
        cmocka_unit_test(test_burst_and_rate_clamps),
        cmocka_unit_test(test_burst_lowered),
        cmocka_unit_test(test_clock_backwards),
        cmocka_unit_test(test_long_key),
        cmocka_unit_test(test_eviction_bounded),
        cmocka_unit_test(test_eviction_prefers_idle),
        cmocka_unit_test(test_eviction_flood),
        cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_threads_exact),
        cmocka_unit_test(test_peek),
        cmocka_unit_test(test_conn_caps),
        cmocka_unit_test(test_conn_table_full),
        cmocka_unit_test(test_conn_model),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
