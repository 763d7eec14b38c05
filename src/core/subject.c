/*
 * subject.c - subject names and patterns with NATS semantics.
 * See subject.h for the grammar.
 *
 * Everything here works on (pointer, length) pairs and walks tokens in
 * place with subj__next: no copies, no allocation, one pass over each
 * input. Validation, matching and covering share that walker, so a token
 * boundary means the same thing to all of them. The matchers assume valid
 * inputs (their callers validated at the edge) but never read outside the
 * given bytes whatever they are handed, which is what the fuzzer checks.
 */
#include "core/subject.h"

#include <stdint.h>
#include <string.h>

/* Bytes allowed in a literal token: ASCII letters, digits, _ - : @ ~. */
static const uint8_t subj__allowed[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
    ['_'] = 1, ['-'] = 1, [':'] = 1, ['@'] = 1, ['~'] = 1,
};

typedef struct subj__tok {
    const char *p;
    size_t len;
} subj__tok_t;

/* Steps *pos over the next token of s[0..len). A string of n dots yields
 * n + 1 tokens, empty ones included; *pos ends at len + 1 after the last.
 * Returns false once there is no token left. */
static bool subj__next(const char *s, size_t len, size_t *pos,
                       subj__tok_t *tok)
{
    const char *dot;

    if (*pos > len)
        return false;
    tok->p = s + *pos;
    dot = len > *pos ? memchr(tok->p, '.', len - *pos) : NULL;
    tok->len = dot ? (size_t)(dot - tok->p) : len - *pos;
    *pos += tok->len + 1;
    return true;
}

static bool subj__is(const subj__tok_t *t, char c)
{
    return t->len == 1 && t->p[0] == c;
}

static bool subj__same(const subj__tok_t *a, const subj__tok_t *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

static bool subj__literal_ok(const subj__tok_t *t)
{
    size_t i;

    if (t->len == 0 || t->len > SUBJ_MAX_TOKEN_LEN)
        return false;
    for (i = 0; i < t->len; i++)
        if (!subj__allowed[(uint8_t)t->p[i]])
            return false;
    return true;
}

static bool subj__valid(const char *s, size_t len, bool wild)
{
    subj__tok_t t;
    size_t pos = 0, ntok = 0;

    if (s == NULL || len == 0 || len > SUBJ_MAX_LEN)
        return false;
    while (subj__next(s, len, &pos, &t)) {
        if (++ntok > SUBJ_MAX_TOKENS)
            return false;
        if (wild && subj__is(&t, '*'))
            continue;
        if (wild && subj__is(&t, '>')) {
            if (pos <= len)            /* not the last token */
                return false;
            continue;
        }
        if (!subj__literal_ok(&t))
            return false;
    }
    return true;
}

bool subj_valid_subject(const char *s, size_t len)
{
    return subj__valid(s, len, false);
}

bool subj_valid_pattern(const char *s, size_t len)
{
    return subj__valid(s, len, true);
}

/* A '>' token counts as the tail wildcard only in last position; anywhere
 * else (an invalid pattern) it is compared as a literal. */
static bool subj__is_tail(const subj__tok_t *t, size_t pos, size_t len)
{
    return subj__is(t, '>') && pos > len;
}

bool subj_match(const char *pattern, size_t plen, const char *subject,
                size_t slen)
{
    subj__tok_t pt, st;
    size_t pp = 0, sp = 0;

    for (;;) {
        bool pmore = subj__next(pattern, plen, &pp, &pt);
        bool smore = subj__next(subject, slen, &sp, &st);

        if (!pmore || !smore)
            return pmore == smore;
        if (subj__is_tail(&pt, pp, plen))
            return true;
        if (!subj__is(&pt, '*') && !subj__same(&pt, &st))
            return false;
    }
}

/* Token by token: a final '>' in outer covers whatever inner has left (one
 * token or more, wildcards included); a '>' in inner is covered only by
 * one in outer; '*' in outer covers a literal or '*'; a literal covers
 * only itself. */
bool subj_covers(const char *outer, size_t olen, const char *inner,
                 size_t ilen)
{
    subj__tok_t ot, it;
    size_t op = 0, ip = 0;

    for (;;) {
        bool omore = subj__next(outer, olen, &op, &ot);
        bool imore = subj__next(inner, ilen, &ip, &it);

        if (!omore || !imore)
            return omore == imore;
        if (subj__is_tail(&ot, op, olen))
            return true;
        if (subj__is_tail(&it, ip, ilen))
            return false;
        if (subj__is(&ot, '*'))
            continue;
        if (subj__is(&it, '*') || !subj__same(&ot, &it))
            return false;
    }
}

size_t subj_sanitize_token(const char *in, size_t len, char *out, size_t cap)
{
    size_t n, i;

    if (cap == 0)
        return 0;
    n = len < cap - 1 ? len : cap - 1;
    if (n > SUBJ_MAX_TOKEN_LEN)
        n = SUBJ_MAX_TOKEN_LEN;
    for (i = 0; i < n; i++)
        out[i] = subj__allowed[(uint8_t)in[i]] ? in[i] : '_';
    out[n] = '\0';
    return n;
}
