/*
 * tokens.c - bearer JWTs: minting and checking our own, checking an
 * external issuer's, and the list of revoked token ids. See tokens.h.
 *
 * Shape. All JOSE work is jwt.c's; this file chooses the key set and the
 * rules. Two key sets never mix: the own set holds one HS256 key (kid
 * "sb1") and is fixed at start; the external set is rebuilt from every
 * configured source (issuer secret, PEM file, JWKS file, JWKS URL) on
 * each reload and swapped in whole, so kids are unique across sources
 * (jwt.c refuses duplicates) and a failed reload leaves the old set in
 * place. Which set checks a token is decided by the header kid alone,
 * read before any verification: "sb1" means the own set only, anything
 * else the external set only, so no key of one issuer ever vouches for
 * a token of the other.
 *
 * Threads. jwt_verify runs under the read side of ext_lock (writer
 * preferred, so a swap is not starved by a busy loop); the refresher
 * builds a new set with no lock held and takes the write side only to
 * swap the pointer, then frees the old set. The refresher sleeps on a
 * condition variable (CLOCK_MONOTONIC deadlines) until the next periodic
 * reload or until a verification reports an unknown kid, never fetching
 * twice within min_refresh_ms; tokens_free wakes it, and a fetch in
 * progress polls `stop` (fetch's cancel hook), so shutdown is prompt.
 *
 * The revoked list is a chained hash table (SipHash, random key) of
 * jti -> exp_ms behind its own mutex, capped at TOKENS_REVOKED_MAX, with
 * a fixed number of buckets so no rehash ever stalls a verifying thread.
 * Expired entries are swept on insert once the table has doubled since
 * the last sweep and some entry can have expired (min_exp): inserts stay
 * O(1) amortised and a full table of live ids costs nothing to refuse.
 *
 * The cache of verified tokens is a set-associative table (TOKENS__WAYS
 * entries per set, a power of two of sets, fixed at start: no growth, no
 * rehash) keyed by the token's SHA-256 and length, so no token text is
 * kept; the set is SipHash (random key) of the digest, digests are
 * compared with CRYPTO_memcmp. A full set loses the entry that expires
 * first. Sets are guarded by TOKENS__STRIPES mutexes; a hit copies the
 * entry out under its stripe and re-checks it with no lock held. A key
 * set swap bumps `gen` and then empties the table; a verification reads
 * gen before it verifies and inserts only if gen is unchanged, so no
 * token checked against a retired set survives the flush.
 *
 * Nothing here logs a secret, a token or the JWKS URL (it may carry
 * credentials); reload failures are logged with the source and a
 * constant reason.
 */
#include "auth/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth/jwt.h"
#include "core/base64.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/errmsg.h"
#include "core/siphash.h"
#include "net/fetch.h"
#include "ops/log.h"

#define TOKENS__JTI_BYTES 16
#define TOKENS__FILE_MAX JWT_JWKS_MAX   /* bytes of a PEM or JWKS we read */
#define TOKENS__FETCH_TIMEOUT_MS 5000L
#define TOKENS__LEEWAY_MAX_MS 86400000
#define TOKENS__EXP_MAX 253402300799.0     /* 9999-12-31T23:59:59Z */
#define TOKENS__SEG_MAX (JWT_MAX_TOKEN / 4 * 3 + 3)
#define TOKENS__REV_BUCKETS 32768         /* <= 4 per chain at the cap */
#define TOKENS__REV_SWEEP0 1024
#define TOKENS__WAYS 4                    /* entries per cache set */
#define TOKENS__STRIPES 64                /* cache locks, a power of two */

_Static_assert(PRINCIPAL_TENANT_MAX == 64 && JWT_HS_MIN_SECRET == 32 &&
               JWT_HS_MAX_SECRET == 1024, "texts of tokens__check_cfg");

/* ---- types -------------------------------------------------------------- */

typedef struct tokens_rev {
    struct tokens_rev *next;
    int64_t exp_ms;
    size_t len;
    char jti[];
} tokens_rev_t;

typedef struct tokens_revset {
    pthread_mutex_t mu;
    tokens_rev_t **b;           /* TOKENS__REV_BUCKETS chains */
    size_t n;
    size_t sweep_at;            /* sweep when n reaches this */
    int64_t min_exp;            /* no entry expires before this */
    uint64_t k0, k1;
} tokens_revset_t;

/* The cache: sets of TOKENS__WAYS entries, set i guarded by stripe
 * i % TOKENS__STRIPES; gen counts external key set swaps. */
typedef struct tokens_centry {
    unsigned char d[32];        /* SHA-256 of the token */
    size_t len;                 /* of the token */
    principal_t *p;             /* one reference; NULL = empty */
    double exp_s, nbf_s;        /* claims; nbf -INFINITY when absent */
    bool own;
    uint8_t jti_len;            /* 0: no jti */
    char jti[TOKENS_JTI_MAX];
} tokens_centry_t;

typedef struct tokens_ckey {
    unsigned char d[32];
    size_t len;
    size_t set;
} tokens_ckey_t;

typedef struct tokens_cstripe {
    pthread_mutex_t mu;
    uint64_t hits, misses;
    size_t n;                   /* entries held in this stripe's sets */
} tokens_cstripe_t;

typedef struct tokens_cache {
    tokens_centry_t *e;         /* nsets * TOKENS__WAYS; NULL = no cache */
    size_t nsets;               /* a power of two */
    uint64_t k0, k1;            /* siphash key: digest -> set */
    EVP_MD *sha256;
    atomic_uint gen;
    int stripes_made;
    tokens_cstripe_t stripe[TOKENS__STRIPES];
} tokens_cache_t;

struct tokens {
    /* fixed after tokens_new */
    jwt_keyset_t *own;
    unsigned char *secret;      /* own signing secret; wiped on free */
    size_t secret_len;
    unsigned char *issuer_secret;
    size_t issuer_secret_len;
    char *public_key_file, *jwks_file, *jwks_url;
    char *issuer, *audience, *default_tenant;
    int64_t leeway_s;
    tokens_key_alive_fn key_alive;
    void *key_alive_ctx;
    bool external;
    uint64_t refresh_ms;        /* 0: periodic reload off */
    uint64_t min_refresh_ms;

    /* the external key set: read under ext_lock (read side) */
    pthread_rwlock_t ext_lock;
    jwt_keyset_t *ext;

    /* refresher; mu guards want_now and last_attempt */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool want_now;
    uint64_t last_attempt;      /* clock_mono_ms of the last (re)load */
    atomic_bool stop;
    bool thread_running;
    pthread_t thread;

    tokens_revset_t rev;
    tokens_cache_t cache;
    int sync;                   /* tokens__sync_init's progress */
};

/* ---- the revoked list --------------------------------------------------- */

static int tokens__rev_init(tokens_revset_t *rs)
{
    uint64_t k[2];

    if (RAND_bytes((unsigned char *)k, sizeof(k)) != 1)
        return -1;
    rs->k0 = k[0];
    rs->k1 = k[1];
    rs->sweep_at = TOKENS__REV_SWEEP0;
    rs->min_exp = INT64_MAX;
    rs->b = calloc(TOKENS__REV_BUCKETS, sizeof(*rs->b));
    return rs->b ? 0 : -1;
}

/* The link that points at jti's entry, or at the NULL ending its chain. */
static tokens_rev_t **tokens__rev_find(tokens_revset_t *rs, const char *jti,
                                       size_t len)
{
    uint64_t h = siphash13(rs->k0, rs->k1, jti, len);
    tokens_rev_t **pp = &rs->b[h & (TOKENS__REV_BUCKETS - 1)];

    while (*pp && !((*pp)->len == len && memcmp((*pp)->jti, jti, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

/* Drops every entry expired at now_ms (all of them at INT64_MAX) and
 * recomputes min_exp and the next sweep. */
static void tokens__rev_sweep(tokens_revset_t *rs, int64_t now_ms)
{
    size_t i;

    rs->min_exp = INT64_MAX;
    for (i = 0; rs->b && i < TOKENS__REV_BUCKETS; i++) {
        tokens_rev_t **pp = &rs->b[i];

        while (*pp) {
            tokens_rev_t *e = *pp;

            if (e->exp_ms <= now_ms) {
                *pp = e->next;
                free(e);
                rs->n--;
                continue;
            }
            if (e->exp_ms < rs->min_exp)
                rs->min_exp = e->exp_ms;
            pp = &e->next;
        }
    }
    rs->sweep_at = rs->n * 2 < TOKENS__REV_SWEEP0 ? TOKENS__REV_SWEEP0
                                                  : rs->n * 2;
    if (rs->sweep_at > TOKENS_REVOKED_MAX)
        rs->sweep_at = TOKENS_REVOKED_MAX;
}

/* Adds or extends jti; the caller holds rs->mu. */
static int tokens__rev_add(tokens_revset_t *rs, const char *jti, size_t len,
                           int64_t exp_ms, int64_t now_ms)
{
    tokens_rev_t **pp, *e;

    if (rs->n >= rs->sweep_at && now_ms >= rs->min_exp)
        tokens__rev_sweep(rs, now_ms);
    pp = tokens__rev_find(rs, jti, len);
    if (*pp) {
        if ((*pp)->exp_ms < exp_ms)
            (*pp)->exp_ms = exp_ms;
        return 0;
    }
    if (rs->n >= TOKENS_REVOKED_MAX || !(e = malloc(sizeof(*e) + len)))
        return -1;
    e->next = NULL;
    e->exp_ms = exp_ms;
    e->len = len;
    memcpy(e->jti, jti, len);
    *pp = e;
    rs->n++;
    if (exp_ms < rs->min_exp)
        rs->min_exp = exp_ms;
    return 0;
}

int tokens_revoke(tokens_t *t, const char *jti, size_t len, int64_t exp_ms)
{
    int64_t now_ms = clock_now_ms();
    int rc;

    if (len == 0 || len > TOKENS_JTI_MAX)
        return -1;
    if (exp_ms <= now_ms)
        return 0;
    pthread_mutex_lock(&t->rev.mu);
    rc = tokens__rev_add(&t->rev, jti, len, exp_ms, now_ms);
    pthread_mutex_unlock(&t->rev.mu);
    return rc;
}

bool tokens_revoked(tokens_t *t, const char *jti, size_t len,
                    int64_t now_ms)
{
    tokens_rev_t *e;
    bool hit;

    if (len == 0 || len > TOKENS_JTI_MAX)
        return false;
    pthread_mutex_lock(&t->rev.mu);
    e = *tokens__rev_find(&t->rev, jti, len);
    hit = e && now_ms < e->exp_ms;
    pthread_mutex_unlock(&t->rev.mu);
    return hit;
}

/* ---- reading a token without verifying it ------------------------------- */

/*
 * Decodes segment idx (0 header, 1 payload) of a token that has the shape
 * "a.b.c" and parses it as a JSON object into *out (the caller decrefs).
 * Only for routing and peeking: nothing read here is trusted.
 */
static jwt_err_t tokens__segment(const char *token, size_t len, int idx,
                                 json_t **out)
{
    unsigned char raw[TOKENS__SEG_MAX];
    const char *end, *d1, *d2, *seg;
    json_error_t jerr;
    long n;

    *out = NULL;
    if (len > JWT_MAX_TOKEN)
        return JWT_ETOOBIG;
    if (len == 0)
        return JWT_EMALFORMED;
    end = token + len;
    if (!(d1 = memchr(token, '.', len)) ||
        !(d2 = memchr(d1 + 1, '.', (size_t)(end - d1 - 1))) ||
        memchr(d2 + 1, '.', (size_t)(end - d2 - 1)))
        return JWT_EMALFORMED;
    seg = idx == 0 ? token : d1 + 1;
    n = base64_decode(seg, (size_t)((idx == 0 ? d1 : d2) - seg), raw,
                      sizeof(raw), B64_URL);
    if (n < 0)
        return JWT_EMALFORMED;
    *out = json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES,
                      &jerr);
    if (*out && json_is_object(*out))
        return JWT_OK;
    json_decref(*out);
    *out = NULL;
    return JWT_EMALFORMED;
}

/* Reads the header kid: *has_kid when there is one, *own when it is ours. */
static jwt_err_t tokens__kid(const char *token, size_t len, bool *own,
                             bool *has_kid)
{
    json_t *hdr;
    const json_t *k;
    jwt_err_t rc = tokens__segment(token, len, 0, &hdr);

    if (rc)
        return rc;
    k = json_object_get(hdr, "kid");
    *has_kid = k != NULL;
    *own = json_is_string(k) && json_string_length(k) == strlen(TOKENS_KID) &&
           memcmp(json_string_value(k), TOKENS_KID, strlen(TOKENS_KID)) == 0;
    if (k && !json_is_string(k))
        rc = JWT_EMALFORMED;
    json_decref(hdr);
    return rc;
}

/* jti as a string of 1..TOKENS_JTI_MAX bytes, or false. */
static bool tokens__jti(const json_t *v, const char **s, size_t *len)
{
    if (!json_is_string(v))
        return false;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return *len > 0 && *len <= TOKENS_JTI_MAX;
}

bool tokens_own(const char *token, size_t len)
{
    bool own = false, has_kid = false;

    return tokens__kid(token, len, &own, &has_kid) == JWT_OK && own;
}

int tokens_peek(const char *token, size_t len,
                char jti_out[TOKENS_JTI_MAX + 1], int64_t *exp_ms_out)
{
    json_t *c;
    const json_t *exp;
    const char *jti;
    size_t jlen;
    double e;
    int rc = -1;

    if (tokens__segment(token, len, 1, &c) != JWT_OK)
        return -1;
    exp = json_object_get(c, "exp");
    e = json_is_number(exp) ? json_number_value(exp) : 0;
    if (tokens__jti(json_object_get(c, "jti"), &jti, &jlen) &&
        e > 0 && e <= TOKENS__EXP_MAX) {
        memcpy(jti_out, jti, jlen);
        jti_out[jlen] = 0;
        *exp_ms_out = (int64_t)(e * 1000.0);
        rc = 0;
    }
    json_decref(c);
    return rc;
}

/* ---- the cache of verified tokens --------------------------------------- */

/* ms -> whole seconds, rounding down (also below zero). */
static int64_t tokens__secs(int64_t ms)
{
    return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

static tokens_result_t tokens__from_jwt(jwt_err_t e, const char **why)
{
    *why = jwt_strerror(e);
    switch (e) {
    case JWT_OK: return TOKENS_OK;
    case JWT_EMALFORMED:
    case JWT_ETOOBIG: return TOKENS_EMALFORMED;
    case JWT_EEXPIRED:
    case JWT_ENOTYET: return TOKENS_EEXPIRED;
    case JWT_ENOMEM: return TOKENS_ENOMEM;
    default: return TOKENS_EINVALID;
    }
}

/* What may have changed since a token verified: its jti revoked (any
 * token), the key that minted it gone (own tokens; sub is its id). */
static tokens_result_t tokens__check_live(tokens_t *t, const char *jti,
                                          size_t jlen, bool own,
                                          const char *sub, size_t sublen,
                                          int64_t now_ms, const char **why)
{
    if (jti && tokens_revoked(t, jti, jlen, now_ms)) {
        *why = "jti revoked";
        return TOKENS_EREVOKED;
    }
    if (own && sub && t->key_alive &&
        !t->key_alive(t->key_alive_ctx, sub, sublen, now_ms)) {
        *why = "the key that issued this token is revoked or expired";
        return TOKENS_EREVOKED;
    }
    return TOKENS_OK;
}

/* exp and nbf as jwt_verify compares them (jwt.c check_claims). */
static jwt_err_t tokens__check_times(double exp_s, double nbf_s,
                                     int64_t now_ms, int64_t leeway_s)
{
    double now = (double)tokens__secs(now_ms), leeway = (double)leeway_s;

    if (!(now < exp_s + leeway))
        return JWT_EEXPIRED;
    if (now + leeway < nbf_s)
        return JWT_ENOTYET;
    return JWT_OK;
}

static int tokens__cache_init(tokens_cache_t *c, int entries)
{
    uint64_t k[2];
    size_t want, i;

    if (entries < 0)
        return 0;
    want = entries ? (size_t)entries : TOKENS_CACHE_DEFAULT;
    c->nsets = 1;
    while (c->nsets * TOKENS__WAYS < want)
        c->nsets *= 2;
    if (RAND_bytes((unsigned char *)k, sizeof(k)) != 1 ||
        !(c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)))
        return -1;
    c->k0 = k[0];
    c->k1 = k[1];
    for (; c->stripes_made < TOKENS__STRIPES; c->stripes_made++)
        if (pthread_mutex_init(&c->stripe[c->stripes_made].mu, NULL))
            return -1;
    c->e = calloc(c->nsets * TOKENS__WAYS, sizeof(*c->e));
    for (i = 0; c->e && i < c->nsets * TOKENS__WAYS; i++)
        c->e[i].nbf_s = -INFINITY;
    return c->e ? 0 : -1;
}

/* Empties entry e; the caller holds its stripe and unrefs the principal
 * it gets back. */
static principal_t *tokens__centry_clear(tokens_cstripe_t *s,
                                         tokens_centry_t *e)
{
    principal_t *p = e->p;

    if (p)
        s->n--;
    memset(e, 0, sizeof(*e));
    e->nbf_s = -INFINITY;
    return p;
}

/* Empties the cache; with bump, first makes every verification already
 * under way unable to insert (a key set swap: see tokens__cache_put). */
static void tokens__cache_flush(tokens_cache_t *c, bool bump)
{
    size_t i;

    if (!c->e)
        return;
    if (bump)
        atomic_fetch_add(&c->gen, 1);
    for (i = 0; i < c->nsets * TOKENS__WAYS; i++) {
        tokens_cstripe_t *s = &c->stripe[(i / TOKENS__WAYS) &
                                         (TOKENS__STRIPES - 1)];

        pthread_mutex_lock(&s->mu);
        principal_unref(tokens__centry_clear(s, &c->e[i]));
        pthread_mutex_unlock(&s->mu);
    }
}

static void tokens__cache_free(tokens_cache_t *c)
{
    tokens__cache_flush(c, false);
    free(c->e);
    while (c->stripes_made > 0)
        pthread_mutex_destroy(&c->stripe[--c->stripes_made].mu);
    EVP_MD_free(c->sha256);
}

/* The lookup key of token: its SHA-256, its length, its set. -1 when
 * hashing fails (then the cache is bypassed). */
static int tokens__ckey(const tokens_cache_t *c, const char *token,
                        size_t len, tokens_ckey_t *k)
{
    unsigned int n = 0;

    if (!EVP_Digest(token, len, k->d, &n, c->sha256, NULL) ||
        n != sizeof(k->d))
        return -1;
    k->len = len;
    k->set = (size_t)siphash13(c->k0, c->k1, k->d, sizeof(k->d)) &
             (c->nsets - 1);
    return 0;
}

static tokens_cstripe_t *tokens__cstripe(tokens_cache_t *c,
                                         const tokens_ckey_t *k)
{
    return &c->stripe[k->set & (TOKENS__STRIPES - 1)];
}

/* k's entry in its set, or NULL; the caller holds the stripe. Digests are
 * compared in constant time. */
static tokens_centry_t *tokens__cfind(tokens_cache_t *c,
                                      const tokens_ckey_t *k)
{
    tokens_centry_t *set = &c->e[k->set * TOKENS__WAYS];
    int i;

    for (i = 0; i < TOKENS__WAYS; i++)
        if (set[i].p && set[i].len == k->len &&
            CRYPTO_memcmp(set[i].d, k->d, sizeof(k->d)) == 0)
            return &set[i];
    return NULL;
}

/* Forgets k (refused on a re-check), when it is still there. */
static void tokens__cache_drop(tokens_cache_t *c, const tokens_ckey_t *k)
{
    tokens_cstripe_t *s = tokens__cstripe(c, k);
    tokens_centry_t *e;
    principal_t *p = NULL;

    pthread_mutex_lock(&s->mu);
    if ((e = tokens__cfind(c, k)))
        p = tokens__centry_clear(s, e);
    pthread_mutex_unlock(&s->mu);
    principal_unref(p);
}

/*
 * Answers a verification from the cache: false on a miss. On a hit, the
 * entry is copied out under the stripe lock and re-checked with none
 * held (key_alive is the caller's code); *out is then a new reference,
 * or NULL with *r and *why saying why it was refused (an entry that can
 * never pass again is dropped).
 */
static bool tokens__cache_get(tokens_t *t, const tokens_ckey_t *k,
                              int64_t now_ms, principal_t **out,
                              tokens_result_t *r, const char **why)
{
    tokens_cache_t *c = &t->cache;
    tokens_cstripe_t *s = tokens__cstripe(c, k);
    tokens_centry_t *e, copy;
    jwt_err_t je;

    pthread_mutex_lock(&s->mu);
    if ((e = tokens__cfind(c, k))) {
        s->hits++;
        copy = *e;
        principal_ref(copy.p);
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    if (!e)
        return false;
    *out = copy.p;
    *why = "ok";
    *r = TOKENS_OK;
    je = tokens__check_times(copy.exp_s, copy.nbf_s, now_ms, t->leeway_s);
    if (je != JWT_OK)
        *r = tokens__from_jwt(je, why);
    else
        *r = tokens__check_live(t, copy.jti_len ? copy.jti : NULL,
                                copy.jti_len, copy.own, copy.p->id,
                                copy.p->id_len, now_ms, why);
    if (*r == TOKENS_OK)
        return true;
    principal_unref(*out);
    *out = NULL;
    if (je != JWT_ENOTYET)
        tokens__cache_drop(c, k);
    return true;
}

/*
 * Remembers token k, verified with the key sets of generation gen (read
 * before verifying), as p (one more reference taken) with the times and
 * jti of its claims. Skipped when a swap has happened since gen. A full
 * set loses the entry that expires first.
 */
static void tokens__cache_put(tokens_t *t, const tokens_ckey_t *k,
                              unsigned gen, const json_t *claims, bool own,
                              principal_t *p)
{
    tokens_cache_t *c = &t->cache;
    tokens_cstripe_t *s = tokens__cstripe(c, k);
    tokens_centry_t *set = &c->e[k->set * TOKENS__WAYS], *e;
    const json_t *nbf = json_object_get(claims, "nbf");
    const char *jti = NULL;
    size_t jlen = 0;
    principal_t *old = NULL;
    int i;

    if (json_object_get(claims, "jti") &&
        !tokens__jti(json_object_get(claims, "jti"), &jti, &jlen))
        return;                     /* refused by the slow path already */
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&c->gen) != gen || tokens__cfind(c, k))
        goto out;
    e = &set[0];
    for (i = 0; i < TOKENS__WAYS && e->p; i++)
        if (!set[i].p || set[i].exp_s < e->exp_s)
            e = &set[i];
    old = tokens__centry_clear(s, e);
    memcpy(e->d, k->d, sizeof(e->d));
    e->len = k->len;
    e->p = principal_ref(p);
    e->exp_s = json_number_value(json_object_get(claims, "exp"));
    e->nbf_s = json_is_number(nbf) ? json_number_value(nbf) : -INFINITY;
    e->own = own;
    e->jti_len = (uint8_t)jlen;
    if (jlen)
        memcpy(e->jti, jti, jlen);
    s->n++;
out:
    pthread_mutex_unlock(&s->mu);
    principal_unref(old);
}

void tokens_cache_stats(tokens_t *t, tokens_cache_stats_t *out)
{
    tokens_cache_t *c = &t->cache;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (!c->e)
        return;
    out->capacity = c->nsets * TOKENS__WAYS;
    for (i = 0; i < TOKENS__STRIPES; i++) {
        pthread_mutex_lock(&c->stripe[i].mu);
        out->hits += c->stripe[i].hits;
        out->misses += c->stripe[i].misses;
        out->entries += c->stripe[i].n;
        pthread_mutex_unlock(&c->stripe[i].mu);
    }
}

/* ---- building the external key set -------------------------------------- */

/* Reads the whole file at path into b (capped by b's max). */
static int tokens__read_file(const char *path, buf_t *b, const char **why)
{
    char chunk[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;

    if (fd < 0) {
        *why = "cannot open the file";
        return -1;
    }
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || buf_append(b, chunk, (size_t)n)) {
            *why = n < 0 ? "cannot read the file"
                         : "file too large, or out of memory";
            goto out;
        }
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

static bool tokens__stopping(void *ud)
{
    return atomic_load(&((tokens_t *)ud)->stop);
}

/* GETs t->jwks_url into body (net/fetch.h: http or https only, no
 * redirects, capped by body), 5 s in all, status 200. Blocking; aborted
 * by t->stop. */
static int tokens__fetch(tokens_t *t, buf_t *body, const char **why)
{
    fetch_req_t q = {.url = t->jwks_url, .timeout_ms = TOKENS__FETCH_TIMEOUT_MS,
                     .cancelled = tokens__stopping, .ctx = t};
    long status;

    if (fetch(&q, body, &status, why) != FETCH_OK)
        return -1;
    if (status != 200) {
        *why = "HTTP status is not 200";
        return -1;
    }
    return 0;
}

static int tokens__load(tokens_t *t, jwt_keyset_t *ks, const char *path,
                        bool pem, const char **why)
{
    buf_t b;
    int rc;

    buf_init(&b, TOKENS__FILE_MAX);
    rc = path ? tokens__read_file(path, &b, why) : tokens__fetch(t, &b, why);
    if (rc == 0 && (pem ? jwt_keyset_add_pem(ks, NULL, b.len ? b.data : "",
                                             b.len, why)
                        : jwt_keyset_add_jwks(ks, b.len ? b.data : "", b.len,
                                              NULL, why)))
        rc = -1;
    buf_free(&b);
    return rc;
}

/*
 * Builds a new external key set from every configured source into *out
 * (the caller owns it). -1 with *src naming the failing source and *why a
 * constant reason (never key material or the URL).
 */
static int tokens__build_ext(tokens_t *t, jwt_keyset_t **out,
                             const char **src, const char **why)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    int rc = -1;

    *out = NULL;
    *src = "issuer secret";
    *why = "out of memory";
    if (!ks || (t->issuer_secret &&
                jwt_keyset_add_secret(ks, NULL, t->issuer_secret,
                                      t->issuer_secret_len, why)))
        goto out;
    *src = "public key file";
    if (t->public_key_file &&
        tokens__load(t, ks, t->public_key_file, true, why))
        goto out;
    *src = "JWKS file";
    if (t->jwks_file && tokens__load(t, ks, t->jwks_file, false, why))
        goto out;
    *src = "JWKS URL";
    if (t->jwks_url && tokens__load(t, ks, NULL, false, why))
        goto out;
    *out = ks;
    ks = NULL;
    rc = 0;
out:
    jwt_keyset_free(ks);
    return rc;
}

/* ---- the refresher ------------------------------------------------------ */

/* Rebuilds the external set and swaps it in; a failure keeps the old. */
static void tokens__reload(tokens_t *t)
{
    jwt_keyset_t *ks, *old;
    const char *src, *why;

    if (tokens__build_ext(t, &ks, &src, &why)) {
        if (!atomic_load(&t->stop))
            LOG_WARN("external JWT keys not reloaded, keeping the old ones",
                     "\"source\":\"%s\",\"reason\":\"%s\"", src,
                     log_str(why, (size_t)-1));
        return;
    }
    pthread_rwlock_wrlock(&t->ext_lock);
    old = t->ext;
    t->ext = ks;
    pthread_rwlock_unlock(&t->ext_lock);
    tokens__cache_flush(&t->cache, true);
    jwt_keyset_free(old);
}

/* When the next reload is due (clock_mono_ms), UINT64_MAX for never. The
 * caller holds t->mu. */
static uint64_t tokens__due(const tokens_t *t)
{
    uint64_t due = t->refresh_ms ? t->last_attempt + t->refresh_ms
                                 : UINT64_MAX;

    if (t->want_now && t->last_attempt + t->min_refresh_ms < due)
        due = t->last_attempt + t->min_refresh_ms;
    return due;
}

static void *tokens__refresher(void *arg)
{
    tokens_t *t = arg;

    pthread_mutex_lock(&t->mu);
    while (!atomic_load(&t->stop)) {
        uint64_t due = tokens__due(t), now = clock_mono_ms();
        struct timespec ts;

        if (now < due && due == UINT64_MAX) {
            pthread_cond_wait(&t->cv, &t->mu);
            continue;
        }
        if (now < due) {
            ts.tv_sec = (time_t)(due / 1000);
            ts.tv_nsec = (long)(due % 1000) * 1000000L;
            pthread_cond_clockwait(&t->cv, &t->mu, CLOCK_MONOTONIC, &ts);
            continue;
        }
        t->want_now = false;
        t->last_attempt = now;
        pthread_mutex_unlock(&t->mu);
        tokens__reload(t);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void tokens__ask_refresh(tokens_t *t)
{
    pthread_mutex_lock(&t->mu);
    if (!t->want_now) {
        t->want_now = true;
        pthread_cond_signal(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
}

/* ---- life cycle --------------------------------------------------------- */

static bool tokens__set(const char *s)
{
    return s != NULL && s[0] != 0;
}

/* *out = a copy of s, or NULL when s is unset. -1 without memory. */
static int tokens__dup(const char *s, char **out)
{
    *out = tokens__set(s) ? strdup(s) : NULL;
    return tokens__set(s) && *out == NULL ? -1 : 0;
}

/* The locks and the condition variable; t->sync counts those made, for
 * tokens_free. */
static int tokens__sync_init(tokens_t *t)
{
    pthread_rwlockattr_t ra;
    int rc;

    if (pthread_rwlockattr_init(&ra))
        return -1;
    rc = pthread_rwlockattr_setkind_np(
             &ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP) ||
         pthread_rwlock_init(&t->ext_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    if (rc || (t->sync = 1, pthread_mutex_init(&t->mu, NULL)) ||
        (t->sync = 2, pthread_cond_init(&t->cv, NULL)) ||
        (t->sync = 3, pthread_mutex_init(&t->rev.mu, NULL)))
        return -1;
    t->sync = 4;
    return 0;
}

/* Checks what tokens_new can check without I/O. */
static int tokens__check_cfg(const tokens_cfg_t *cfg, char *err,
                             size_t errlen)
{
    const char *bad = NULL;

    if (cfg->secret == NULL || cfg->secret_len < JWT_HS_MIN_SECRET ||
        cfg->secret_len > JWT_HS_MAX_SECRET)
        bad = "token secret must be 32 to 1024 bytes";
    else if (cfg->leeway_ms < 0 || cfg->leeway_ms > TOKENS__LEEWAY_MAX_MS)
        bad = "token leeway must be 0 to 86400000 ms";
    else if (cfg->cache_entries < -1 || cfg->cache_entries > TOKENS_CACHE_MAX)
        bad = "token cache must be -1 (off) to 1048576 entries";
    else if (tokens__set(cfg->default_tenant) &&
             !principal_valid_tenant(cfg->default_tenant,
                                     strlen(cfg->default_tenant)))
        bad = "default tenant must be 1 to 64 characters of [A-Za-z0-9_-]";
    else if (tokens__set(cfg->issuer_secret) &&
             strlen(cfg->issuer_secret) == cfg->secret_len &&
             memcmp(cfg->issuer_secret, cfg->secret, cfg->secret_len) == 0)
        bad = "the external issuer secret must differ from the server's "
              "token secret";
    errmsg(err, errlen, "%s", bad ? bad : "");
    return bad ? -1 : 0;
}

/* Copies the configuration into t. -1 without memory. */
static int tokens__copy_cfg(tokens_t *t, const tokens_cfg_t *cfg)
{
    t->secret_len = cfg->secret_len;
    if (!(t->secret = OPENSSL_memdup(cfg->secret, cfg->secret_len)))
        return -1;
    if (tokens__set(cfg->issuer_secret)) {
        t->issuer_secret_len = strlen(cfg->issuer_secret);
        if (!(t->issuer_secret = OPENSSL_memdup(cfg->issuer_secret,
                                                t->issuer_secret_len)))
            return -1;
    }
    if (tokens__dup(cfg->public_key_file, &t->public_key_file) ||
        tokens__dup(cfg->jwks_file, &t->jwks_file) ||
        tokens__dup(cfg->jwks_url, &t->jwks_url) ||
        tokens__dup(cfg->issuer, &t->issuer) ||
        tokens__dup(cfg->audience, &t->audience) ||
        tokens__dup(cfg->default_tenant, &t->default_tenant))
        return -1;
    t->leeway_s = (cfg->leeway_ms + 999) / 1000;
    t->key_alive = cfg->key_alive;
    t->key_alive_ctx = cfg->key_alive_ctx;
    t->external = t->issuer_secret || t->public_key_file || t->jwks_file ||
                  t->jwks_url;
    t->refresh_ms = cfg->jwks_refresh_ms > 0 ? (uint64_t)cfg->jwks_refresh_ms
                                             : 0;
    t->min_refresh_ms = cfg->jwks_min_refresh_ms > 0
                            ? (uint64_t)cfg->jwks_min_refresh_ms
                            : TOKENS_JWKS_MIN_REFRESH_MS;
    return 0;
}

tokens_t *tokens_new(const tokens_cfg_t *cfg, char *err, size_t errlen)
{
    tokens_t *t = NULL;
    const char *src, *why = NULL;

    if (tokens__check_cfg(cfg, err, errlen))
        return NULL;
    if (!(t = calloc(1, sizeof(*t))) || tokens__sync_init(t) ||
        tokens__copy_cfg(t, cfg) || tokens__rev_init(&t->rev) ||
        tokens__cache_init(&t->cache, cfg->cache_entries) ||
        !(t->own = jwt_keyset_new())) {
        errmsg(err, errlen, "out of memory");
        goto fail;
    }
    if (jwt_keyset_add_secret(t->own, TOKENS_KID, t->secret, t->secret_len,
                              &why)) {
        errmsg(err, errlen, "token secret: %s", why ? why : "unusable");
        goto fail;
    }
    t->last_attempt = clock_mono_ms();
    if (t->external && tokens__build_ext(t, &t->ext, &src, &why)) {
        errmsg(err, errlen, "external JWT issuer, %s: %s", src, why);
        goto fail;
    }
    if ((t->jwks_file || t->jwks_url) &&
        pthread_create(&t->thread, NULL, tokens__refresher, t)) {
        errmsg(err, errlen, "cannot start the JWKS refresh thread");
        goto fail;
    }
    t->thread_running = t->jwks_file || t->jwks_url;
    return t;
fail:
    tokens_free(t);
    return NULL;
}

void tokens_free(tokens_t *t)
{
    if (!t)
        return;
    if (t->thread_running) {
        pthread_mutex_lock(&t->mu);
        atomic_store(&t->stop, true);
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->thread, NULL);
    }
    jwt_keyset_free(t->own);
    jwt_keyset_free(t->ext);
    tokens__rev_sweep(&t->rev, INT64_MAX);
    free(t->rev.b);
    tokens__cache_free(&t->cache);
    OPENSSL_clear_free(t->secret, t->secret_len);
    OPENSSL_clear_free(t->issuer_secret, t->issuer_secret_len);
    free(t->public_key_file);
    free(t->jwks_file);
    free(t->jwks_url);
    free(t->issuer);
    free(t->audience);
    free(t->default_tenant);
    if (t->sync > 3)
        pthread_mutex_destroy(&t->rev.mu);
    if (t->sync > 2)
        pthread_cond_destroy(&t->cv);
    if (t->sync > 1)
        pthread_mutex_destroy(&t->mu);
    if (t->sync > 0)
        pthread_rwlock_destroy(&t->ext_lock);
    free(t);
}

/* ---- minting ------------------------------------------------------------ */

int tokens_mint(tokens_t *t, const principal_t *p, int64_t now_ms,
                int64_t ttl_ms, char **token_out,
                char jti_out[TOKENS_JTI_MAX + 1], int64_t *exp_ms_out)
{
    unsigned char rnd[TOKENS__JTI_BYTES];
    char jti[TOKENS_JTI_MAX + 1];
    json_t *claims = NULL;
    int64_t exp_ms, exp_s;
    int rc = -1;

    *token_out = NULL;
    if (now_ms < 0 || ttl_ms <= 0 || ttl_ms > INT64_MAX - now_ms)
        return -1;
    exp_ms = now_ms + ttl_ms;
    if (p->expires_ms != 0 && p->expires_ms < exp_ms)
        exp_ms = p->expires_ms;
    exp_s = tokens__secs(exp_ms);
    if (exp_s * 1000 <= now_ms)
        return -1;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -1;
    base64_encode(rnd, sizeof(rnd), jti, B64_URL);
    if (!(claims = principal_to_claims(p)) ||
        json_object_set_new(claims, "iss", json_string(TOKENS_ISSUER)) ||
        json_object_set_new(claims, "iat",
                            json_integer(tokens__secs(now_ms))) ||
        json_object_set_new(claims, "exp", json_integer(exp_s)) ||
        json_object_set_new(claims, "jti", json_string(jti)))
        goto out;
    if (!(*token_out = jwt_sign_hs256(t->secret, t->secret_len, TOKENS_KID,
                                      claims)))
        goto out;
    memcpy(jti_out, jti, strlen(jti) + 1);
    *exp_ms_out = exp_s * 1000;
    rc = 0;
out:
    json_decref(claims);
    return rc;
}

/* ---- verification ------------------------------------------------------- */

/* Checks the signature and times of an external token against the current
 * external set; asks for a refresh when the token names a kid the set
 * does not hold (ENOKEY, or EALG when no key of that alg is left). */
static jwt_err_t tokens__verify_ext(tokens_t *t, const char *token,
                                    size_t len, jwt_opts_t *o, bool has_kid,
                                    json_t **claims)
{
    jwt_err_t e;

    o->issuer = t->issuer;
    o->audience = t->audience;
    pthread_rwlock_rdlock(&t->ext_lock);
    e = jwt_verify(t->ext, token, len, o, claims);
    pthread_rwlock_unlock(&t->ext_lock);
    if (t->thread_running &&
        (e == JWT_ENOKEY || (e == JWT_EALG && has_kid)))
        tokens__ask_refresh(t);
    return e;
}

/* The checks after the signature: jti (required for own tokens) not
 * revoked, and for own tokens the minting key still alive. */
static tokens_result_t tokens__check_claims(tokens_t *t, const json_t *c,
                                            bool own, int64_t now_ms,
                                            const char **why)
{
    const json_t *v = json_object_get(c, "jti"), *sub;
    const char *jti = NULL;
    size_t len = 0;

    if ((v || own) && !tokens__jti(v, &jti, &len)) {
        *why = "jti missing or not a string of 1 to 64 bytes";
        return TOKENS_EINVALID;
    }
    sub = json_object_get(c, "sub");
    return tokens__check_live(t, jti, len, own,
                              json_is_string(sub) ? json_string_value(sub)
                                                  : NULL,
                              json_string_length(sub), now_ms, why);
}

/*
 * Contract in tokens.h. Steps: the cache (tokens__cache_get re-checks
 * what can change); else route by header kid, jwt_verify against exactly
 * one key set (exp required, nbf, iss/aud, leeway), the jti and key
 * checks, the claims become a principal, and that is cached.
 */
tokens_result_t tokens_verify(tokens_t *t, const char *token, size_t len,
                              int64_t now_ms, principal_t **out,
                              const char **reason)
{
    char perr[PERM_ERR_LEN];
    jwt_opts_t o = { .now = tokens__secs(now_ms), .leeway_s = t->leeway_s,
                     .require_exp = true };
    json_t *claims = NULL;
    const char *why = "ok";
    bool own = false, has_kid = false, cached;
    tokens_ckey_t key;
    tokens_result_t r;
    unsigned gen = atomic_load(&t->cache.gen);
    jwt_err_t e;
    int prc;

    *out = NULL;
    cached = t->cache.e && len <= JWT_MAX_TOKEN &&
             tokens__ckey(&t->cache, token, len, &key) == 0;
    if (cached && tokens__cache_get(t, &key, now_ms, out, &r, &why))
        goto out;
    e = tokens__kid(token, len, &own, &has_kid);
    if (e == JWT_OK && own) {
        o.issuer = TOKENS_ISSUER;
        e = jwt_verify(t->own, token, len, &o, &claims);
    } else if (e == JWT_OK && !t->external) {
        why = "no external issuer configured";
        r = TOKENS_EINVALID;
        goto out;
    } else if (e == JWT_OK) {
        e = tokens__verify_ext(t, token, len, &o, has_kid, &claims);
    }
    if ((r = tokens__from_jwt(e, &why)) != TOKENS_OK ||
        (r = tokens__check_claims(t, claims, own, now_ms, &why)) !=
            TOKENS_OK)
        goto out;
    prc = principal_from_claims(claims, t->default_tenant, out, perr,
                                sizeof(perr));
    if (prc == PERM_ENOMEM) {
        why = "out of memory";
        r = TOKENS_ENOMEM;
    } else if (prc != 0) {
        why = "claims do not describe a valid principal";
        r = TOKENS_EINVALID;
    } else if (cached) {
        tokens__cache_put(t, &key, gen, claims, own, *out);
    }
out:
    json_decref(claims);
    if (reason)
        *reason = why;
    return r;
}
