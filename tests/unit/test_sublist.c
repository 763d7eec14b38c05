/*
 * test_sublist.c - the subscription index against its contract and against
 * brute force.
 *
 * Items are small integers cast to pointers; a match is collected into a
 * histogram so duplicates are visible. Pruning is checked by measuring the
 * heap under ASan: after every pattern is removed, the index must hold
 * exactly what a fresh one holds (ASan's leak checker alone could not tell,
 * since sublist_free would reclaim unpruned nodes anyway).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/subject.h"
#include "hub/sublist.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(T_ASAN)
#define T_ASAN 1
#endif
#ifdef T_ASAN
#define HEAP_MEASURED 1
/* from <sanitizer/allocator_interface.h>, which gcc does not ship */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#define HEAP_MEASURED 0
#endif

#define ITEM(i) ((void *)(uintptr_t)(i))
#define MAX_ITEMS 60000

typedef struct hits {
    size_t total;
    unsigned *per;             /* per[i]: times item i was reported */
    size_t nper;
} hits_t;

/* Bytes the program holds on the heap, under ASan; 0 elsewhere (glibc's
 * mallinfo counts freed chunks parked in its thread cache as in use, so it
 * cannot tell a leak from a cached free). The ASan run gates pruning. */
static size_t heap_in_use(void)
{
#ifdef T_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    return 0;
#endif
}

static void on_hit(void *item, void *arg)
{
    hits_t *h = arg;
    uintptr_t i = (uintptr_t)item;

    h->total++;
    assert_true(i < h->nper);
    h->per[i]++;
}

static void hits_init(hits_t *h, size_t n)
{
    h->total = 0;
    h->nper = n;
    h->per = calloc(n, sizeof *h->per);
    assert_non_null(h->per);
}

static void hits_reset(hits_t *h)
{
    h->total = 0;
    memset(h->per, 0, h->nper * sizeof *h->per);
}

static void hits_free(hits_t *h)
{
    free(h->per);
}

static int ins(sublist_t *sl, const char *p, uintptr_t item)
{
    return sublist_insert(sl, p, strlen(p), ITEM(item));
}

static int rem(sublist_t *sl, const char *p, uintptr_t item)
{
    return sublist_remove(sl, p, strlen(p), ITEM(item));
}

/* Number of items reported for subject s; h gets the histogram. */
static size_t match(sublist_t *sl, const char *s, hits_t *h)
{
    hits_reset(h);
    sublist_match(sl, s, strlen(s), on_hit, h);
    return h->total;
}

static int setup(void **state)
{
    hits_t *h = malloc(sizeof *h);

    if (h == NULL)
        return -1;
    hits_init(h, MAX_ITEMS);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    hits_free(*state);
    free(*state);
    return 0;
}

/* --- basics --------------------------------------------------------------- */

static void test_empty(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();

    assert_non_null(sl);
    assert_int_equal(sublist_count(sl), 0);
    assert_int_equal(match(sl, "a", h), 0);
    assert_int_equal(rem(sl, "a", 1), -1);
    assert_int_equal(rem(sl, ">", 1), -1);
    sublist_free(sl);
    sublist_free(NULL);
}

static void test_literal(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();

    assert_int_equal(ins(sl, "a.b", 1), 0);
    assert_int_equal(sublist_count(sl), 1);
    assert_int_equal(match(sl, "a.b", h), 1);
    assert_int_equal(h->per[1], 1);
    assert_int_equal(match(sl, "a", h), 0);
    assert_int_equal(match(sl, "a.b.c", h), 0);
    assert_int_equal(match(sl, "a.c", h), 0);
    assert_int_equal(match(sl, "ab", h), 0);
    sublist_free(sl);
}

static void test_token_boundaries(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();

    assert_int_equal(ins(sl, "ab", 1), 0);
    assert_int_equal(ins(sl, "a.b", 2), 0);
    assert_int_equal(match(sl, "ab", h), 1);
    assert_int_equal(h->per[1], 1);
    assert_int_equal(match(sl, "a.b", h), 1);
    assert_int_equal(h->per[2], 1);
    sublist_free(sl);
}

static void test_star(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();

    assert_int_equal(ins(sl, "a.*", 1), 0);
    assert_int_equal(ins(sl, "*.b", 2), 0);
    assert_int_equal(ins(sl, "*", 3), 0);
    assert_int_equal(match(sl, "a.b", h), 2);
    assert_int_equal(h->per[1] + h->per[2], 2);
    assert_int_equal(match(sl, "a.c", h), 1);
    assert_int_equal(h->per[1], 1);
    assert_int_equal(match(sl, "x", h), 1);
    assert_int_equal(h->per[3], 1);
    assert_int_equal(match(sl, "a.b.c", h), 0);
    sublist_free(sl);
}

static void test_tail(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();

    assert_int_equal(ins(sl, "a.>", 1), 0);
    assert_int_equal(match(sl, "a", h), 0);
    assert_int_equal(match(sl, "a.b", h), 1);
    assert_int_equal(match(sl, "a.b.c.d", h), 1);
    assert_int_equal(match(sl, "b.a", h), 0);
    assert_int_equal(ins(sl, "a", 2), 0);
    assert_int_equal(match(sl, "a", h), 1);
    assert_int_equal(h->per[2], 1);
    sublist_free(sl);
}

static void test_gt_matches_all(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();

    assert_int_equal(ins(sl, ">", 7), 0);
    assert_int_equal(match(sl, "a", h), 1);
    assert_int_equal(match(sl, "a.b.c", h), 1);
    assert_int_equal(h->per[7], 1);
    assert_int_equal(rem(sl, ">", 7), 0);
    assert_int_equal(match(sl, "a", h), 0);
    sublist_free(sl);
}

static void test_all_kinds_at_once(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();
    static const char *pats[] = {
        "a.b", "a.*", "*.b", "*.*", ">", "a.>", "*.>", "a.b.>", "a", "b.b",
    };
    size_t i;

    for (i = 0; i < sizeof pats / sizeof pats[0]; i++)
        assert_int_equal(ins(sl, pats[i], i), 0);
    assert_int_equal(match(sl, "a.b", h), 7);
    assert_int_equal(h->per[7], 0);    /* a.b.> needs a third token */
    assert_int_equal(h->per[8], 0);
    assert_int_equal(h->per[9], 0);
    assert_int_equal(match(sl, "a.b.c", h), 4);  /* >, a.>, *.>, a.b.> */
    sublist_free(sl);
}

static void test_cb_arg_passed(void **state)
{
    hits_t mine;
    sublist_t *sl = sublist_new();

    hits_init(&mine, 4);
    assert_int_equal(ins(sl, "x", 3), 0);
    sublist_match(sl, "x", 1, on_hit, &mine);
    assert_int_equal(mine.total, 1);
    assert_int_equal(mine.per[3], 1);
    hits_free(&mine);
    sublist_free(sl);
}

/* --- duplicates and removal ------------------------------------------------ */

static void test_duplicates(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();

    assert_int_equal(ins(sl, "a.*", 5), 0);
    assert_int_equal(ins(sl, "a.*", 5), 0);
    assert_int_equal(sublist_count(sl), 2);
    assert_int_equal(match(sl, "a.b", h), 2);
    assert_int_equal(h->per[5], 2);
    assert_int_equal(rem(sl, "a.*", 5), 0);
    assert_int_equal(match(sl, "a.b", h), 1);
    assert_int_equal(rem(sl, "a.*", 5), 0);
    assert_int_equal(match(sl, "a.b", h), 0);
    assert_int_equal(rem(sl, "a.*", 5), -1);
    assert_int_equal(sublist_count(sl), 0);
    sublist_free(sl);
}

static void test_remove_absent(void **state)
{
    sublist_t *sl = sublist_new();

    assert_int_equal(ins(sl, "a.b.c", 1), 0);
    assert_int_equal(ins(sl, "a.>", 1), 0);
    assert_int_equal(rem(sl, "a.b.c", 2), -1);      /* other item */
    assert_int_equal(rem(sl, "a.b", 1), -1);        /* inner node */
    assert_int_equal(rem(sl, "a.b.c.d", 1), -1);    /* below a leaf */
    assert_int_equal(rem(sl, "a.*.c", 1), -1);      /* no '*' child */
    assert_int_equal(rem(sl, "a.b.>", 1), -1);
    assert_int_equal(rem(sl, ">", 1), -1);
    assert_int_equal(rem(sl, "a.*", 1), -1);
    assert_int_equal(sublist_count(sl), 2);
    sublist_free(sl);
}

static void test_invalid_patterns(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();
    static const char *bad[] = {
        "", "a..b", "a.", ".a", "a.>.b", "a*", "a b", "a.>>",
        "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q",
    };
    size_t i, before = heap_in_use();

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ins(sl, bad[i], 1), -1);
        assert_int_equal(rem(sl, bad[i], 1), -1);
    }
    assert_int_equal(sublist_count(sl), 0);
    assert_int_equal(heap_in_use(), before);
    assert_int_equal(match(sl, "a.b", h), 0);
    sublist_free(sl);
}

static void test_match_invalid_subjects(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();

    assert_int_equal(ins(sl, ">", 1), 0);
    assert_int_equal(ins(sl, "*.*", 2), 0);
    assert_int_equal(match(sl, "", h), 0);
    assert_int_equal(match(sl, "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q", h), 0);
    sublist_match(sl, NULL, 0, on_hit, h);
    assert_int_equal(h->total, 0);
    assert_int_equal(match(sl, "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p", h), 1);
    sublist_free(sl);
}

static void test_max_depth(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();
    const char *deep = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p";
    const char *tail = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.>";
    const char *stars = "*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*";

    assert_int_equal(ins(sl, deep, 1), 0);
    assert_int_equal(ins(sl, tail, 2), 0);
    assert_int_equal(ins(sl, stars, 3), 0);
    assert_int_equal(match(sl, deep, h), 3);
    assert_int_equal(rem(sl, deep, 1), 0);
    assert_int_equal(rem(sl, tail, 2), 0);
    assert_int_equal(rem(sl, stars, 3), 0);
    assert_int_equal(match(sl, deep, h), 0);
    sublist_free(sl);
}

static void test_partial_prune_keeps_siblings(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();

    assert_int_equal(ins(sl, "a.b.c", 1), 0);
    assert_int_equal(ins(sl, "a.b", 2), 0);
    assert_int_equal(ins(sl, "a.b.>", 3), 0);
    assert_int_equal(rem(sl, "a.b.c", 1), 0);
    assert_int_equal(match(sl, "a.b", h), 1);
    assert_int_equal(h->per[2], 1);
    assert_int_equal(match(sl, "a.b.c", h), 1);
    assert_int_equal(h->per[3], 1);
    assert_int_equal(rem(sl, "a.b", 2), 0);
    assert_int_equal(match(sl, "a.b.x", h), 1);
    assert_int_equal(sublist_count(sl), 1);
    sublist_free(sl);
}

static void test_prune_frees_everything(void **state)
{
    static const char *pats[] = {
        "a.b.c", "a.b", "a.*.c", "*.*.x", "a.>", ">", "*", "a.b.c.d.>",
        "x.y.z.w", "x.*.z.>", "q",
    };
    size_t n = sizeof pats / sizeof pats[0], i, base;
    sublist_t *sl = sublist_new();

    base = heap_in_use();
    for (i = 0; i < n; i++) {
        assert_int_equal(ins(sl, pats[i], i), 0);
        assert_int_equal(ins(sl, pats[i], i + 100), 0);
    }
    if (HEAP_MEASURED)
        assert_true(heap_in_use() > base);
    for (i = n; i-- > 0;) {
        assert_int_equal(rem(sl, pats[i], i), 0);
        assert_int_equal(rem(sl, pats[i], i + 100), 0);
    }
    assert_int_equal(sublist_count(sl), 0);
    assert_int_equal(heap_in_use(), base);
    sublist_free(sl);
}

static void test_many_items_one_pattern(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();
    size_t i, base = heap_in_use();

    for (i = 0; i < 1000; i++)
        assert_int_equal(ins(sl, "room.*", i), 0);
    assert_int_equal(match(sl, "room.1", h), 1000);
    for (i = 0; i < 1000; i++)
        assert_int_equal(h->per[i], 1);
    for (i = 0; i < 1000; i += 2)
        assert_int_equal(rem(sl, "room.*", i), 0);
    assert_int_equal(match(sl, "room.1", h), 500);
    for (i = 0; i < 1000; i++)
        assert_int_equal(h->per[i], i % 2);
    for (i = 1; i < 1000; i += 2)
        assert_int_equal(rem(sl, "room.*", i), 0);
    assert_int_equal(match(sl, "room.1", h), 0);
    assert_int_equal(heap_in_use(), base);
    sublist_free(sl);
}

/* --- many children under one node ------------------------------------------ */

#define NCHILD 50000

static void child_name(char *buf, size_t cap, size_t i)
{
    int n = snprintf(buf, cap, "p.user%zu", i);

    assert_true(n > 0 && (size_t)n < cap);
}

static void test_many_children(void **state)
{
    hits_t *h = *state;
    sublist_t *sl = sublist_new();
    char name[32];
    size_t i, base = heap_in_use();

    for (i = 0; i < NCHILD; i++) {
        child_name(name, sizeof name, i);
        assert_int_equal(ins(sl, name, i), 0);
    }
    assert_int_equal(ins(sl, "p.*", NCHILD), 0);
    assert_int_equal(sublist_count(sl), NCHILD + 1);
    for (i = 0; i < NCHILD; i++) {
        child_name(name, sizeof name, i);
        if (match(sl, name, h) != 2 || h->per[i] != 1 || h->per[NCHILD] != 1)
            fail_msg("%s: %zu hits", name, h->total);
    }
    assert_int_equal(match(sl, "p.user", h), 1);
    /* drop all but every 97th: tables shrink, probe chains shift back */
    for (i = 0; i < NCHILD; i++) {
        if (i % 97 == 0)
            continue;
        child_name(name, sizeof name, i);
        assert_int_equal(rem(sl, name, i), 0);
    }
    for (i = 0; i < NCHILD; i++) {
        child_name(name, sizeof name, i);
        if (match(sl, name, h) != (i % 97 == 0 ? 2u : 1u))
            fail_msg("%s after removal: %zu hits", name, h->total);
    }
    for (i = 0; i < NCHILD; i += 97) {
        child_name(name, sizeof name, i);
        assert_int_equal(rem(sl, name, i), 0);
    }
    assert_int_equal(rem(sl, "p.*", NCHILD), 0);
    assert_int_equal(sublist_count(sl), 0);
    assert_int_equal(heap_in_use(), base);
    sublist_free(sl);
}

/* --- against brute force ---------------------------------------------------- */

#define NPAT 2000
#define NSUBJ 2000

typedef struct rnd {
    uint64_t s;
} rnd_t;

static unsigned rnd_next(rnd_t *r, unsigned n)
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((r->s >> 33) % n);
}

/* A random subject (wild = false) or pattern of 1..5 tokens over a tiny
 * alphabet, so that patterns and subjects collide often. */
static void rnd_subject(rnd_t *r, char *buf, size_t cap, bool wild)
{
    static const char *alpha[] = { "a", "b", "c", "ab" };
    size_t len = 0, ntok = 1 + rnd_next(r, 5), i;

    for (i = 0; i < ntok; i++) {
        const char *t = alpha[rnd_next(r, 4)];
        unsigned w = wild ? rnd_next(r, 8) : 7;

        if (w == 0)
            t = "*";
        else if (w == 1 && i == ntok - 1)
            t = ">";
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? "." : "",
                                t);
        assert_true(len < cap);
    }
}

static void check_against_brute(sublist_t *sl, hits_t *h, char pats[][32],
                                const bool *live, rnd_t *r)
{
    char subj[32];
    size_t s, p, want;

    for (s = 0; s < NSUBJ; s++) {
        rnd_subject(r, subj, sizeof subj, false);
        assert_true(subj_valid_subject(subj, strlen(subj)));
        match(sl, subj, h);
        for (p = 0, want = 0; p < NPAT; p++) {
            unsigned exp = live[p] &&
                           subj_match(pats[p], strlen(pats[p]), subj,
                                      strlen(subj));

            want += exp;
            if (h->per[p] != exp)
                fail_msg("subject %s pattern %s: got %u want %u", subj,
                         pats[p], h->per[p], exp);
        }
        assert_int_equal(h->total, want);
    }
}

static void test_random_vs_brute_force(void **state)
{
    hits_t *h = *state;
    static char pats[NPAT][32];
    static bool live[NPAT];
    rnd_t r = { 42 };
    sublist_t *sl = sublist_new();
    size_t p, base = heap_in_use();

    for (p = 0; p < NPAT; p++) {
        rnd_subject(&r, pats[p], sizeof pats[p], true);
        assert_int_equal(ins(sl, pats[p], p), 0);
        live[p] = true;
    }
    check_against_brute(sl, h, pats, live, &r);
    for (p = 0; p < NPAT; p++) {
        if (rnd_next(&r, 2) == 0)
            continue;
        assert_int_equal(rem(sl, pats[p], p), 0);
        live[p] = false;
    }
    check_against_brute(sl, h, pats, live, &r);
    for (p = 0; p < NPAT; p++)
        if (live[p])
            assert_int_equal(rem(sl, pats[p], p), 0);
    assert_int_equal(sublist_count(sl), 0);
    assert_int_equal(heap_in_use(), base);
    sublist_free(sl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_literal),
        cmocka_unit_test(test_token_boundaries),
        cmocka_unit_test(test_star),
        cmocka_unit_test(test_tail),
        cmocka_unit_test(test_gt_matches_all),
        cmocka_unit_test(test_all_kinds_at_once),
        cmocka_unit_test(test_cb_arg_passed),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_remove_absent),
        cmocka_unit_test(test_invalid_patterns),
        cmocka_unit_test(test_match_invalid_subjects),
        cmocka_unit_test(test_max_depth),
        cmocka_unit_test(test_partial_prune_keeps_siblings),
        cmocka_unit_test(test_prune_frees_everything),
        cmocka_unit_test(test_many_items_one_pattern),
        cmocka_unit_test(test_many_children),
        cmocka_unit_test(test_random_vs_brute_force),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
