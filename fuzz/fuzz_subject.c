/*
 * fuzz_subject.c - subjects, patterns and the subscription index.
 *
 * Input: "<pattern>\n<subject>" (no newline: the whole input is both).
 * Every validator, matcher and the sanitizer run on the raw bytes and must
 * not crash. When the pattern and subject are valid, a family of patterns
 * is derived from them (wildcarded tokens, '>' tails, prefixes) and a family
 * of subjects (the subject, variants, and for each pattern a subject it
 * matches built from fresh tokens), and then:
 *   - sublist_match reports exactly the (pattern, item) pairs subj_match
 *     accepts, duplicates included, and removing everything empties it;
 *   - subj_covers is sound: covers(a, b) and match(b, t) imply match(a, t);
 *   - and complete: when not covers(a, b), one of b's fresh-token subjects
 *     (its '>' as one token, or as many as fit) escapes a.
 */
#undef NDEBUG                    /* the checks below are the point */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/subject.h"
#include "hub/sublist.h"

#define FZ_MAXPAT 24
#define FZ_MAXSUBJ 64
#define FZ_STRCAP (SUBJ_MAX_LEN + 1)

typedef struct fz_str {
    char s[FZ_STRCAP];
    size_t len;
} fz_str_t;

typedef struct fz_set {
    fz_str_t *v;
    size_t n, cap;
    bool (*valid)(const char *, size_t);
} fz_set_t;

typedef struct fz_tok {
    const char *p;
    size_t len;
} fz_tok_t;

/* Splits a valid pattern or subject into its tokens. */
static size_t fz_split(const fz_str_t *str, fz_tok_t *toks)
{
    size_t n = 0, pos = 0;

    while (pos <= str->len && n < SUBJ_MAX_TOKENS) {
        const char *dot = memchr(str->s + pos, '.', str->len - pos);

        toks[n].p = str->s + pos;
        toks[n].len = dot ? (size_t)(dot - (str->s + pos)) : str->len - pos;
        pos += toks[n++].len + 1;
    }
    return n;
}

/* Joins toks, replacing token `at` by `with` (when at < n), and adds the
 * result to set if it is valid there and there is room. */
static void fz_add_join(fz_set_t *set, const fz_tok_t *toks, size_t n,
                        size_t at, const char *with)
{
    fz_str_t *d;
    size_t i, len = 0;

    if (set->n == set->cap)
        return;
    d = &set->v[set->n];
    for (i = 0; i < n; i++) {
        fz_tok_t t = toks[i];

        if (i == at)
            t = (fz_tok_t){ with, strlen(with) };
        if (len + (i > 0) + t.len >= FZ_STRCAP)
            return;
        if (i > 0)
            d->s[len++] = '.';
        memcpy(d->s + len, t.p, t.len);
        len += t.len;
    }
    d->len = len;
    if (set->valid(d->s, d->len))
        set->n++;
}

/* Adds toks[0..k) followed by a '>' token. */
static void fz_add_tail(fz_set_t *set, const fz_tok_t *toks, size_t k)
{
    fz_tok_t t[SUBJ_MAX_TOKENS + 1];

    memcpy(t, toks, k * sizeof *t);
    t[k] = (fz_tok_t){ ">", 1 };
    fz_add_join(set, t, k + 1, k + 1, "");
}

static void fz_add(fz_set_t *set, const char *s, size_t len)
{
    fz_tok_t t = { s, len };

    fz_add_join(set, &t, 1, 1, "");
}

/* A one-byte token equal to no token of a. */
static char fz_fresh(const fz_str_t *a)
{
    static const char cand[] = "0123456789abcdefghij";
    fz_tok_t toks[SUBJ_MAX_TOKENS];
    size_t n = fz_split(a, toks), c, i;

    for (c = 0;; c++) {
        for (i = 0; i < n; i++)
            if (toks[i].len == 1 && toks[i].p[0] == cand[c])
                break;
        if (i == n)
            return cand[c];
    }
}

/* Adds to subjs the subjects of pattern b with every wildcard replaced by
 * fresh: the '>' as one token (wit 0) or as many tokens as fit (wit 1).
 * Returns how many were added (both are skipped when invalid). */
static size_t fz_witnesses(fz_set_t *subjs, const fz_str_t *b, char fresh)
{
    fz_tok_t toks[SUBJ_MAX_TOKENS + 1];
    char f[2] = { fresh, '\0' };
    size_t n = fz_split(b, toks), i, before = subjs->n;
    bool tail = n > 0 && toks[n - 1].len == 1 && toks[n - 1].p[0] == '>';

    for (i = 0; i < n; i++)
        if (toks[i].len == 1 && (toks[i].p[0] == '*' || toks[i].p[0] == '>'))
            toks[i] = (fz_tok_t){ f, 1 };
    fz_add_join(subjs, toks, n, n, "");
    if (tail) {
        while (n < SUBJ_MAX_TOKENS)
            toks[n++] = (fz_tok_t){ f, 1 };
        fz_add_join(subjs, toks, n, n, "");
    }
    return subjs->n - before;
}

static void fz_derive_patterns(fz_set_t *pats, const fz_str_t *p,
                               const fz_str_t *s)
{
    fz_tok_t pt[SUBJ_MAX_TOKENS], st[SUBJ_MAX_TOKENS];
    size_t np = fz_split(p, pt), ns = fz_split(s, st), i;

    fz_add(pats, p->s, p->len);
    fz_add(pats, p->s, p->len);          /* again: inserted with item 0 too */
    assert(pats->n == 2);
    fz_add(pats, s->s, s->len);
    fz_add(pats, ">", 1);
    fz_add_join(pats, pt, np, np - 1, ">");
    for (i = 0; i < ns; i++) {
        fz_add_join(pats, st, ns, i, "*");
        fz_add_tail(pats, st, i + 1);
    }
    for (i = 0; i < np; i++)
        fz_add_join(pats, pt, np, i, "*");
}

static void fz_derive_subjects(fz_set_t *subjs, const fz_set_t *pats,
                               const fz_str_t *s)
{
    fz_tok_t st[SUBJ_MAX_TOKENS];
    size_t ns = fz_split(s, st), i;

    fz_add(subjs, s->s, s->len);
    fz_add_join(subjs, st, ns, ns, "");
    if (ns > 1)
        fz_add_join(subjs, st, ns - 1, ns, "");
    for (i = 0; i < pats->n; i++)
        fz_witnesses(subjs, &pats->v[i], '0');
}

static void fz_count(void *item, void *arg)
{
    unsigned *hits = arg;
    uintptr_t i = (uintptr_t)item;

    assert(i < FZ_MAXPAT);
    hits[i]++;
}

/* Pattern i is inserted with item i, except pattern 1 (a copy of pattern
 * 0) which goes in with item 0 as well: that pair is expected twice. */
static void *fz_item(size_t i)
{
    return (void *)(uintptr_t)(i == 1 ? 0 : i);
}

static void fz_check_sublist(const fz_set_t *pats, const fz_set_t *subjs)
{
    sublist_t *sl = sublist_new();
    unsigned hits[FZ_MAXPAT];
    size_t i, t;
    int rc;

    if (sl == NULL)
        return;
    for (i = 0; i < pats->n; i++) {
        rc = sublist_insert(sl, pats->v[i].s, pats->v[i].len, fz_item(i));
        assert(rc == 0);
    }
    assert(sublist_count(sl) == pats->n);
    for (t = 0; t < subjs->n; t++) {
        const fz_str_t *s = &subjs->v[t];

        memset(hits, 0, sizeof hits);
        sublist_match(sl, s->s, s->len, fz_count, hits);
        assert(hits[1] == 0);
        for (i = 0; i < pats->n; i++) {
            const fz_str_t *p = &pats->v[i];
            unsigned want = subj_match(p->s, p->len, s->s, s->len);

            if (i != 1)
                assert(hits[i] == (i == 0 ? 2 * want : want));
        }
    }
    for (i = pats->n; i-- > 0;) {
        rc = sublist_remove(sl, pats->v[i].s, pats->v[i].len, fz_item(i));
        assert(rc == 0);
    }
    assert(sublist_count(sl) == 0);
    sublist_free(sl);
}

static void fz_check_covers(const fz_str_t *a, const fz_str_t *b,
                            const fz_set_t *subjs)
{
    fz_tok_t toks[SUBJ_MAX_TOKENS];
    fz_str_t wv[2];
    fz_set_t wit = { wv, 0, 2, subj_valid_subject };
    bool covers = subj_covers(a->s, a->len, b->s, b->len);
    size_t t, matched = 0;

    if (covers) {
        for (t = 0; t < subjs->n; t++) {
            const fz_str_t *s = &subjs->v[t];

            if (subj_match(b->s, b->len, s->s, s->len))
                assert(subj_match(a->s, a->len, s->s, s->len));
        }
    }
    /* a pattern of SUBJ_MAX_TOKENS tokens can cover b in fact (no subject
     * is longer) where the token-wise rule says no; skip that corner */
    if (fz_split(a, toks) == SUBJ_MAX_TOKENS)
        return;
    fz_witnesses(&wit, b, fz_fresh(a));
    for (t = 0; t < wit.n; t++)
        matched += subj_match(a->s, a->len, wit.v[t].s, wit.v[t].len);
    if (covers)
        assert(matched == wit.n);
    else if (wit.n == 2 || (wit.n == 1 && b->s[b->len - 1] != '>'))
        assert(matched < wit.n);
}

static void fz_check_valid(const fz_str_t *p, const fz_str_t *s)
{
    fz_str_t pv[FZ_MAXPAT], sv[FZ_MAXSUBJ];
    fz_set_t pats = { pv, 0, FZ_MAXPAT, subj_valid_pattern };
    fz_set_t subjs = { sv, 0, FZ_MAXSUBJ, subj_valid_subject };
    size_t i, j;

    fz_derive_patterns(&pats, p, s);
    fz_derive_subjects(&subjs, &pats, s);
    fz_check_sublist(&pats, &subjs);
    for (i = 0; i < pats.n; i++) {
        assert(subj_covers(pats.v[i].s, pats.v[i].len, pats.v[i].s,
                           pats.v[i].len));
        assert(subj_covers(">", 1, pats.v[i].s, pats.v[i].len));
        for (j = 0; j < pats.n; j++)
            fz_check_covers(&pats.v[i], &pats.v[j], &subjs);
    }
}

static void fz_copy(fz_str_t *d, const uint8_t *p, size_t len)
{
    d->len = len < FZ_STRCAP - 1 ? len : FZ_STRCAP - 1;
    memcpy(d->s, p, d->len);
    d->s[d->len] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t plen = nl ? (size_t)(nl - data) : size;
    const char *p = (const char *)data, *s = nl ? (const char *)nl + 1 : p;
    size_t slen = nl ? size - plen - 1 : size;
    char tok[SUBJ_MAX_TOKEN_LEN + 1];
    fz_str_t ps, ss;
    size_t n;

    if (size == 0)
        return 0;
    (void)subj_valid_subject(p, plen);
    (void)subj_valid_subject(s, slen);
    (void)subj_match(p, plen, s, slen);
    (void)subj_covers(p, plen, s, slen);
    n = subj_sanitize_token((const char *)data, size, tok, sizeof tok);
    assert(n == (size < SUBJ_MAX_TOKEN_LEN ? size : SUBJ_MAX_TOKEN_LEN));
    assert(subj_valid_subject(tok, n));
    if (!subj_valid_pattern(p, plen) || !subj_valid_subject(s, slen))
        return 0;
    assert(subj_valid_pattern(s, slen));
    fz_copy(&ps, data, plen);
    fz_copy(&ss, (const uint8_t *)s, slen);
    fz_check_valid(&ps, &ss);
    return 0;
}
