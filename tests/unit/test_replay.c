/*
 * test_replay.c - the Standard Webhooks replay memory: exact triples,
 * expiry after 2 x tolerance, oldest-first eviction at capacity, bad
 * arguments (fail closed), a model check of the index under many
 * insertions and evictions, and threads racing on the same triples.
 *
 * Time is simulated: every call passes now_s.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/replay.h"

#define NTHREADS 4
#define NIDS 2000

static replay_t *new_replay(size_t cap, int64_t tol)
{
    replay_t *r = replay_new(cap, tol);

    assert_non_null(r);
    return r;
}

static bool seen(replay_t *r, const char *src, const char *id, int64_t ts, int64_t now)
{
    return replay_seen(r, src, id, strlen(id), ts, now);
}

static void test_new_bounds(void **state)
{
    replay_t *r;

    assert_null(replay_new(0, 300));
    assert_null(replay_new(REPLAY_MAX_CAPACITY + 1, 300));
    assert_null(replay_new(10, 0));
    assert_null(replay_new(10, -1));
    assert_null(replay_new(10, REPLAY_MAX_TOLERANCE + 1));
    r = new_replay(1, REPLAY_MAX_TOLERANCE);
    replay_free(r);
    replay_free(NULL);
}

static void test_exact_triple(void **state)
{
    replay_t *r = new_replay(100, 300);
    replay_stats_t st;

    assert_false(seen(r, "billing", "msg_1", 1000, 1000));
    assert_true(seen(r, "billing", "msg_1", 1000, 1001));   /* the replay */
    assert_true(seen(r, "billing", "msg_1", 1000, 1001));   /* still refused */
    assert_false(seen(r, "billing", "msg_1", 1010, 1010));  /* a retry: new ts */
    assert_false(seen(r, "billing", "msg_2", 1000, 1010));  /* another id */
    assert_false(seen(r, "other", "msg_1", 1000, 1010));    /* another source */
    /* the fields are delimited: ("ab","c") is not ("a","bc") */
    assert_false(seen(r, "ab", "c", 5, 1010));
    assert_false(seen(r, "a", "bc", 5, 1010));
    /* ids are compared by length, not as C strings */
    assert_false(replay_seen(r, "billing", "msg_1x", 5, 2000, 1010));
    assert_true(replay_seen(r, "billing", "msg_1y", 5, 2000, 1010));
    replay_stats(r, &st);
    assert_int_equal(st.capacity, 100);
    assert_int_equal(st.entries, 7);
    assert_int_equal(st.evicted_live, 0);
    replay_free(r);
}

static void test_expiry(void **state)
{
    replay_t *r = new_replay(100, 300);
    replay_stats_t st;

    assert_false(seen(r, "s", "a", 1000, 1000));
    assert_false(seen(r, "s", "b", 1000, 1100));
    assert_true(seen(r, "s", "a", 1000, 1599));   /* 2 x 300 - 1 later */
    assert_false(seen(r, "s", "a", 1000, 1600));  /* expired: recorded again */
    assert_true(seen(r, "s", "a", 1000, 1601));
    replay_stats(r, &st);
    assert_int_equal(st.entries, 2);              /* b and the new a */
    assert_true(seen(r, "s", "b", 1000, 1699));
    assert_false(seen(r, "s", "c", 1, 5000));     /* everything expired */
    replay_stats(r, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.evicted_live, 0);
    replay_free(r);
}

static void test_capacity_evicts_oldest(void **state)
{
    replay_t *r = new_replay(4, 300);
    replay_stats_t st;
    char id[16];

    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "m%d", i);
        assert_false(seen(r, "s", id, 1000, 1000 + i));
    }
    replay_stats(r, &st);
    assert_int_equal(st.entries, 4);
    assert_int_equal(st.evicted_live, 1);
    for (int i = 1; i < 5; i++) {               /* the newest four remain */
        snprintf(id, sizeof id, "m%d", i);
        assert_true(seen(r, "s", id, 1000, 1010));
    }
    assert_false(seen(r, "s", "m0", 1000, 1010)); /* the oldest was evicted */
    replay_stats(r, &st);
    assert_int_equal(st.evicted_live, 2);       /* and m1 made room for it */
    assert_false(seen(r, "s", "m1", 1000, 1010));
    replay_free(r);
}

static void test_bad_input_fails_closed(void **state)
{
    replay_t *r = new_replay(10, 300);
    char big_src[REPLAY_SOURCE_MAX + 2], big_id[REPLAY_ID_MAX + 1];
    replay_stats_t st;

    memset(big_src, 's', sizeof big_src - 1);
    big_src[sizeof big_src - 1] = '\0';
    memset(big_id, 'i', sizeof big_id);
    assert_true(replay_seen(r, NULL, "a", 1, 1, 1));
    assert_true(replay_seen(r, "", "a", 1, 1, 1));
    assert_true(replay_seen(r, big_src, "a", 1, 1, 1));
    assert_true(replay_seen(r, "s", NULL, 1, 1, 1));
    assert_true(replay_seen(r, "s", "a", 0, 1, 1));
    assert_true(replay_seen(r, "s", big_id, sizeof big_id, 1, 1));
    replay_stats(r, &st);
    assert_int_equal(st.entries, 0);            /* nothing recorded */
    /* the largest inputs that are allowed work */
    big_src[REPLAY_SOURCE_MAX] = '\0';
    assert_false(replay_seen(r, big_src, big_id, REPLAY_ID_MAX, 1, 1));
    assert_true(replay_seen(r, big_src, big_id, REPLAY_ID_MAX, 1, 2));
    /* extreme times do not overflow */
    assert_false(seen(r, "s", "t", INT64_MAX, INT64_MAX - 1));
    assert_true(seen(r, "s", "t", INT64_MAX, INT64_MAX - 1));
    replay_free(r);
}

/* A plain model: FIFO of (id, ts, expires), same rules, compared with the
 * table over many random operations with evictions and expiries. */
typedef struct model_entry {
    unsigned id, ts;
    int64_t expires;
} model_entry_t;

static void test_model(void **state)
{
    enum { CAP = 50, OPS = 20000, TOL = 10 };
    static model_entry_t m[CAP];
    size_t head = 0, count = 0;
    replay_t *r = new_replay(CAP, TOL);
    int64_t now = 1000;
    uint64_t evictions = 0;
    replay_stats_t st;

    srand(7);
    for (int op = 0; op < OPS; op++) {
        unsigned id = (unsigned)rand() % 80, ts = (unsigned)rand() % 3;
        char idtext[16];
        bool want = false, got;

        if (rand() % 8 == 0)
            now += rand() % 4;
        while (count && m[head].expires <= now) {
            head = (head + 1) % CAP;
            count--;
        }
        for (size_t k = 0; k < count; k++) {
            const model_entry_t *e = &m[(head + k) % CAP];
            if (e->id == id && e->ts == ts)
                want = true;
        }
        if (!want) {
            if (count == CAP) {
                head = (head + 1) % CAP;
                count--;
                evictions++;
            }
            m[(head + count) % CAP] = (model_entry_t){id, ts, now + 2 * TOL};
            count++;
        }
        snprintf(idtext, sizeof idtext, "id%u", id);
        got = seen(r, "src", idtext, ts, now);
        if (got != want)
            fail_msg("op %d: id %u ts %u: table says %d, model %d", op, id, ts, got, want);
    }
    replay_stats(r, &st);
    assert_int_equal(st.entries, count);
    assert_int_equal(st.evicted_live, evictions);
    assert_true(evictions > 0);                 /* the run did exercise eviction */
    replay_free(r);
}

typedef struct race {
    replay_t *r;
    int fresh;                                  /* calls that returned false */
} race_t;

static void *race_thread(void *arg)
{
    race_t *t = arg;
    char id[16];

    for (int i = 0; i < NIDS; i++) {
        snprintf(id, sizeof id, "id%d", i);
        if (!seen(t->r, "src", id, 42, 1000))
            t->fresh++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    replay_t *r = new_replay(NIDS * 2, 300);
    pthread_t th[NTHREADS];
    race_t rc[NTHREADS];
    int fresh = 0;
    replay_stats_t st;

    for (int i = 0; i < NTHREADS; i++) {
        rc[i] = (race_t){r, 0};
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &rc[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        fresh += rc[i].fresh;
    }
    assert_int_equal(fresh, NIDS);              /* each triple passed exactly once */
    replay_stats(r, &st);
    assert_int_equal(st.entries, NIDS);
    replay_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_bounds),
        cmocka_unit_test(test_exact_triple),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_capacity_evicts_oldest),
        cmocka_unit_test(test_bad_input_fails_closed),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
