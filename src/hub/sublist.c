/*
 * sublist.c - the subscription index: a token trie, as NATS's sublist.
 *
 * Shape. One node per distinct pattern prefix. A node has
 *   - its literal children in an open-addressing hash table (linear
 *     probing, power-of-two size, load <= 3/4, backward-shift deletion so
 *     there are no tombstones), each child carrying its own token and hash;
 *   - a separate '*' child, so a wildcard costs no table lookup;
 *   - `here`: items whose pattern ends at this node ("a.b" lives in `here`
 *     of node a->b);
 *   - `rest`: items whose pattern is this node's path followed by '>' ("a.>"
 *     lives in `rest` of node a; ">" in `rest` of the root).
 * Matching a subject of n tokens visits, at each depth, at most the literal
 * child and the '*' child of every node reached so far, and emits `rest` at
 * every node it passes with tokens left. The cost is bounded by the shape
 * of the patterns present, never by how many subscriptions share a prefix:
 * 100k literal children under one node are one hash probe away.
 *
 * Memory. A node is 72 bytes plus its token; a slot is one pointer. An
 * item list holds one item inline and only allocates for the second, since
 * most patterns have a single subscriber. Empty nodes are freed on remove
 * (and a failed insert frees the nodes it made), so every node but the
 * root holds an item or a child, and tables shrink as children leave.
 *
 * Hashing. Tokens come from clients, so the table is keyed with SipHash-1-3
 * under a per-sublist random key: nobody can precompute tokens that pile
 * into one probe chain. A subject's token hashes are computed once per
 * match (on the stack; match never allocates) and reused at every node.
 *
 * Depth is bounded by SUBJ_MAX_TOKENS, so the recursive walks are bounded
 * too, and remove keeps its path on the stack.
 */
#include "hub/sublist.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/siphash.h"
#include "core/subject.h"

#define SL_MIN_SLOTS 4u

typedef struct sl_items {
    uint32_t len;
    uint32_t cap;              /* 0: the single item sits in u.one */
    union {
        void *one;
        void **many;
    } u;
} sl_items_t;

typedef struct sl_node sl_node_t;
struct sl_node {
    sl_node_t **slots;         /* literal children, NULL when nslots == 0 */
    uint32_t nslots;           /* 0 or a power of two */
    uint32_t nchild;
    sl_node_t *star;
    sl_items_t here;
    sl_items_t rest;
    uint64_t hash;             /* of tok, under the sublist's key */
    uint32_t toklen;
    char tok[];
};

struct sublist {
    sl_node_t *root;
    size_t count;
    uint64_t k0, k1;           /* SipHash key */
};

typedef struct sl_tok {
    const char *p;
    size_t len;
    uint64_t hash;
} sl_tok_t;

static uint64_t sl_hash(const sublist_t *sl, const char *p, size_t len)
{
    return siphash13(sl->k0, sl->k1, p, len);
}

static void sl_seed(sublist_t *sl)
{
    uint64_t k[2] = { 0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL };

#ifndef SB_FUZZING            /* fixed key when fuzzing: reproducible runs */
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
        k[0] ^= (uint64_t)(uintptr_t)sl;
        k[1] ^= (uint64_t)(uintptr_t)&k;
    }
#endif
    sl->k0 = k[0];
    sl->k1 = k[1];
}

/* --- item lists ----------------------------------------------------------- */

static void **sl_items_data(sl_items_t *it)
{
    return it->cap ? it->u.many : &it->u.one;
}

static int sl_items_push(sl_items_t *it, void *item)
{
    uint32_t ncap;
    void **nv;

    if (it->len == 0 && it->cap == 0) {
        it->u.one = item;
        it->len = 1;
        return 0;
    }
    if (it->cap == 0 || it->len == it->cap) {
        if (it->len > UINT32_MAX / 2)
            return -1;
        ncap = it->cap ? it->cap * 2 : 4;
        nv = realloc(it->cap ? it->u.many : NULL, ncap * sizeof *nv);
        if (nv == NULL)
            return -1;
        if (it->cap == 0)
            nv[0] = it->u.one;
        it->u.many = nv;
        it->cap = ncap;
    }
    it->u.many[it->len++] = item;
    return 0;
}

/* Shrinks a heap list back to inline storage at one item, and halves it
 * when three quarters are unused. A failed shrink keeps the old block. */
static void sl_items_shrink(sl_items_t *it)
{
    void **v = it->u.many, **nv;

    if (it->cap == 0)
        return;
    if (it->len <= 1) {
        it->u.one = it->len ? v[0] : NULL;
        it->cap = 0;
        free(v);
    } else if (it->len <= it->cap / 4) {
        nv = realloc(v, (it->cap / 2) * sizeof *nv);
        if (nv != NULL) {
            it->u.many = nv;
            it->cap /= 2;
        }
    }
}

/* Removes one occurrence of item (order is not kept). -1 when absent. */
static int sl_items_remove(sl_items_t *it, void *item)
{
    void **v = sl_items_data(it);
    uint32_t i;

    for (i = 0; i < it->len; i++) {
        if (v[i] == item) {
            v[i] = v[--it->len];
            sl_items_shrink(it);
            return 0;
        }
    }
    return -1;
}

static void sl_items_emit(sl_items_t *it, void (*cb)(void *, void *),
                          void *arg)
{
    void **v = sl_items_data(it);
    uint32_t i;

    for (i = 0; i < it->len; i++)
        cb(v[i], arg);
}

static void sl_items_free(sl_items_t *it)
{
    if (it->cap)
        free(it->u.many);
}

/* --- nodes and the child table -------------------------------------------- */

static sl_node_t *sl_node_new(const sl_tok_t *t)
{
    sl_node_t *n = calloc(1, sizeof *n + t->len);

    if (n == NULL)
        return NULL;
    n->hash = t->hash;
    n->toklen = (uint32_t)t->len;
    memcpy(n->tok, t->p, t->len);
    return n;
}

static bool sl_node_empty(const sl_node_t *n)
{
    return n->nchild == 0 && n->star == NULL && n->here.len == 0 &&
           n->rest.len == 0;
}

static void sl_node_free(sl_node_t *n)
{
    uint32_t i;

    if (n == NULL)
        return;
    for (i = 0; i < n->nslots; i++)
        sl_node_free(n->slots[i]);
    free(n->slots);
    sl_node_free(n->star);
    sl_items_free(&n->here);
    sl_items_free(&n->rest);
    free(n);
}

/* The slot holding token t, or the empty slot where it would go. */
static sl_node_t **sl_slot(const sl_node_t *n, const sl_tok_t *t)
{
    uint32_t mask = n->nslots - 1, i = (uint32_t)t->hash & mask;
    sl_node_t *c;

    for (;; i = (i + 1) & mask) {
        c = n->slots[i];
        if (c == NULL || (c->hash == t->hash && c->toklen == t->len &&
                          memcmp(c->tok, t->p, t->len) == 0))
            return &n->slots[i];
    }
}

static sl_node_t *sl_child(const sl_node_t *n, const sl_tok_t *t)
{
    return n->nslots ? *sl_slot(n, t) : NULL;
}

/* Rebuilds the table with nslots slots (a power of two above nchild). */
static int sl_rehash(sl_node_t *n, uint32_t nslots)
{
    sl_node_t **old = n->slots;
    uint32_t oldn = n->nslots, i, j;

    n->slots = calloc(nslots, sizeof *n->slots);
    if (n->slots == NULL) {
        n->slots = old;
        return -1;
    }
    n->nslots = nslots;
    for (i = 0; i < oldn; i++) {
        if (old[i] == NULL)
            continue;
        for (j = (uint32_t)old[i]->hash & (nslots - 1); n->slots[j];
             j = (j + 1) & (nslots - 1))
            ;
        n->slots[j] = old[i];
    }
    free(old);
    return 0;
}

/* The literal child for t, created when missing. NULL on ENOMEM. */
static sl_node_t *sl_child_get(sl_node_t *n, const sl_tok_t *t)
{
    sl_node_t **slot, *c;

    if (n->nslots && (c = *sl_slot(n, t)) != NULL)
        return c;
    if ((uint64_t)(n->nchild + 1) * 4 > (uint64_t)n->nslots * 3) {
        if (n->nslots > UINT32_MAX / 2)
            return NULL;
        if (sl_rehash(n, n->nslots ? n->nslots * 2 : SL_MIN_SLOTS) < 0)
            return NULL;
    }
    c = sl_node_new(t);
    if (c == NULL)
        return NULL;
    slot = sl_slot(n, t);
    *slot = c;
    n->nchild++;
    return c;
}

/* Empties slot i and shifts later members of its probe chain back, so
 * lookups never need tombstones. */
static void sl_slot_clear(sl_node_t *n, uint32_t i)
{
    uint32_t mask = n->nslots - 1, j = i, home;

    n->slots[i] = NULL;
    for (;;) {
        j = (j + 1) & mask;
        if (n->slots[j] == NULL)
            return;
        home = (uint32_t)n->slots[j]->hash & mask;
        /* leave it when its home lies cyclically in (i, j] */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        n->slots[i] = n->slots[j];
        n->slots[j] = NULL;
        i = j;
    }
}

/* Unlinks and frees the (empty) literal child c of n. */
static void sl_child_drop(sl_node_t *n, sl_node_t *c)
{
    sl_tok_t t = { c->tok, c->toklen, c->hash };
    sl_node_t **slot = sl_slot(n, &t);

    sl_slot_clear(n, (uint32_t)(slot - n->slots));
    n->nchild--;
    free(c);
    if (n->nchild == 0) {
        free(n->slots);
        n->slots = NULL;
        n->nslots = 0;
    } else if (n->nslots > SL_MIN_SLOTS && n->nchild * 8 < n->nslots) {
        (void)sl_rehash(n, n->nslots / 2);    /* best effort */
    }
}

/* --- tokens --------------------------------------------------------------- */

/* Splits s into at most SUBJ_MAX_TOKENS tokens with their hashes. Returns
 * the count, or 0 when s is empty or has too many tokens. */
static size_t sl_split(const sublist_t *sl, const char *s, size_t len,
                       sl_tok_t *toks)
{
    size_t n = 0, pos = 0;
    const char *dot;

    if (s == NULL || len == 0 || len > SUBJ_MAX_LEN)
        return 0;
    while (pos <= len) {
        if (n == SUBJ_MAX_TOKENS)
            return 0;
        dot = pos < len ? memchr(s + pos, '.', len - pos) : NULL;
        toks[n].p = s + pos;
        toks[n].len = dot ? (size_t)(dot - (s + pos)) : len - pos;
        toks[n].hash = sl_hash(sl, toks[n].p, toks[n].len);
        pos += toks[n].len + 1;
        n++;
    }
    return n;
}

static bool sl_tok_is(const sl_tok_t *t, char c)
{
    return t->len == 1 && t->p[0] == c;
}

/* --- public --------------------------------------------------------------- */

sublist_t *sublist_new(void)
{
    static const sl_tok_t none = { "", 0, 0 };
    sublist_t *sl = calloc(1, sizeof *sl);

    if (sl == NULL)
        return NULL;
    sl->root = sl_node_new(&none);
    if (sl->root == NULL) {
        free(sl);
        return NULL;
    }
    sl_seed(sl);
    return sl;
}

void sublist_free(sublist_t *sl)
{
    if (sl == NULL)
        return;
    sl_node_free(sl->root);
    free(sl);
}

/* The '*' child of n, created when missing. NULL on ENOMEM. */
static sl_node_t *sl_star_get(sl_node_t *n, const sl_tok_t *t)
{
    if (n->star == NULL)
        n->star = sl_node_new(t);
    return n->star;
}

/* Frees the empty nodes at the bottom of path[0..depth] (path[0] is the
 * root, which stays). */
static void sl_prune(sl_node_t **path, size_t depth)
{
    for (; depth > 0 && sl_node_empty(path[depth]); depth--) {
        sl_node_t *parent = path[depth - 1], *c = path[depth];

        if (parent->star == c) {
            parent->star = NULL;
            free(c);
        } else {
            sl_child_drop(parent, c);
        }
    }
}

/* Follows pattern from the root, recording the nodes passed in
 * path[0..*depth]; with create, missing nodes are made. Returns the item
 * list the pattern ends in: `rest` of the node before a '>', else `here`
 * of the last node. NULL for an invalid pattern, a missing node, or ENOMEM
 * (path[0..*depth] is still valid then, for sl_prune). */
static sl_items_t *sl_walk(sublist_t *sl, const char *pattern, size_t len,
                           bool create, sl_node_t **path, size_t *depth)
{
    sl_tok_t toks[SUBJ_MAX_TOKENS];
    size_t ntok, i;

    path[0] = sl->root;
    *depth = 0;
    if (!subj_valid_pattern(pattern, len))
        return NULL;
    ntok = sl_split(sl, pattern, len, toks);
    for (i = 0; i < ntok; i++) {
        sl_node_t *n = path[*depth];

        if (sl_tok_is(&toks[i], '>'))
            return &n->rest;
        if (sl_tok_is(&toks[i], '*'))
            n = create ? sl_star_get(n, &toks[i]) : n->star;
        else
            n = create ? sl_child_get(n, &toks[i]) : sl_child(n, &toks[i]);
        if (n == NULL)
            return NULL;
        path[++*depth] = n;
    }
    return &path[*depth]->here;
}

/* On failure (ENOMEM, invalid pattern) nodes made on the way are freed
 * again, so a failed insert leaves the trie as it was. */
int sublist_insert(sublist_t *sl, const char *pattern, size_t len, void *item)
{
    sl_node_t *path[SUBJ_MAX_TOKENS + 1];
    sl_items_t *list;
    size_t depth;

    list = sl_walk(sl, pattern, len, true, path, &depth);
    if (list == NULL || sl_items_push(list, item) < 0)
        goto fail;
    sl->count++;
    return 0;
fail:
    sl_prune(path, depth);
    return -1;
}

int sublist_remove(sublist_t *sl, const char *pattern, size_t len, void *item)
{
    sl_node_t *path[SUBJ_MAX_TOKENS + 1];
    sl_items_t *list;
    size_t depth;

    list = sl_walk(sl, pattern, len, false, path, &depth);
    if (list == NULL || sl_items_remove(list, item) < 0)
        return -1;
    sl->count--;
    sl_prune(path, depth);
    return 0;
}

static void sl_match_node(sl_node_t *n, const sl_tok_t *toks, size_t ntok,
                          void (*cb)(void *, void *), void *arg)
{
    sl_node_t *c;

    if (ntok == 0) {
        sl_items_emit(&n->here, cb, arg);
        return;
    }
    sl_items_emit(&n->rest, cb, arg);
    if ((c = sl_child(n, toks)) != NULL)
        sl_match_node(c, toks + 1, ntok - 1, cb, arg);
    if (n->star != NULL)
        sl_match_node(n->star, toks + 1, ntok - 1, cb, arg);
}

void sublist_match(sublist_t *sl, const char *subject, size_t len,
                   void (*cb)(void *item, void *arg), void *arg)
{
    sl_tok_t toks[SUBJ_MAX_TOKENS];
    size_t ntok = sl_split(sl, subject, len, toks);

    if (ntok > 0)
        sl_match_node(sl->root, toks, ntok, cb, arg);
}

size_t sublist_count(const sublist_t *sl)
{
    return sl->count;
}
