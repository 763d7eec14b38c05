/*
 * cidr.c - CIDR entries and allowlists over one 128-bit address space.
 * See cidr.h for the syntax and the IPv4-mapped convention.
 *
 * Addresses are decoded by inet_pton only (no hand-written address
 * parser), from a NUL-terminated copy capped at CIDR_TEXT_MAX bytes, since
 * callers pass (pointer, length) slices of larger strings. A list is a
 * plain array scanned linearly: allowlists are short and read-only after
 * parsing, so no locking or index is needed.
 */
#include "auth/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CIDR__ECHO_MAX 40          /* bytes of an entry echoed in errors */

static const uint8_t cidr__mapped_prefix[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
};

static bool cidr__is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Decodes an address; *v4 tells whether it was written as IPv4. */
static int cidr__addr(const char *s, size_t len, uint8_t out[16], bool *v4)
{
    char text[CIDR_TEXT_MAX + 1];
    uint8_t a[16];

    if (len == 0)
        return CIDR_EEMPTY;
    if (len > CIDR_TEXT_MAX)
        return CIDR_ETOOLONG;
    if (memchr(s, '\0', len))
        return CIDR_EADDR;
    memcpy(text, s, len);
    text[len] = '\0';
    if (inet_pton(AF_INET, text, a + 12) == 1) {
        memcpy(a, cidr__mapped_prefix, sizeof cidr__mapped_prefix);
        *v4 = true;
    } else if (inet_pton(AF_INET6, text, a) == 1) {
        *v4 = false;
    } else {
        return CIDR_EADDR;
    }
    memcpy(out, a, sizeof a);
    return 0;
}

/* Decimal 0..max, no sign, no leading zero. */
static int cidr__prefix(const char *s, size_t len, unsigned max,
                        unsigned *out)
{
    unsigned v = 0;
    size_t i;

    if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
        return CIDR_EPREFIX;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CIDR_EPREFIX;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return CIDR_EPREFIX;
    *out = v;
    return 0;
}

/* Clears the bits of a[16] below the first `bits`. */
static void cidr__mask(uint8_t a[16], unsigned bits)
{
    size_t full = bits / 8;

    if (full >= 16)
        return;
    if (bits % 8)
        a[full++] &= (uint8_t)(0xff << (8 - bits % 8));
    memset(a + full, 0, 16 - full);
}

int cidr_parse(const char *s, size_t len, cidr_t *out)
{
    const char *slash = len ? memrchr(s, '/', len) : NULL;
    size_t alen = slash ? (size_t)(slash - s) : len;
    unsigned bits;
    bool v4;
    int rc;

    if (len == 0)
        return CIDR_EEMPTY;
    if (len > CIDR_TEXT_MAX)
        return CIDR_ETOOLONG;
    rc = cidr__addr(s, alen, out->net, &v4);
    if (rc == CIDR_EEMPTY)
        rc = CIDR_EADDR;           /* "/8": the address is what is missing */
    if (rc != 0)
        return rc;
    bits = v4 ? 32 : 128;
    if (slash) {
        rc = cidr__prefix(slash + 1, len - alen - 1, bits, &bits);
        if (rc != 0)
            return rc;
    }
    out->v4 = v4;
    out->bits = (uint8_t)(v4 ? bits + 96 : bits);
    cidr__mask(out->net, out->bits);
    return 0;
}

const char *cidr_strerror(int err)
{
    switch (err) {
    case CIDR_EEMPTY:
        return "empty";
    case CIDR_EADDR:
        return "not an IPv4 or IPv6 address";
    case CIDR_EPREFIX:
        return "bad prefix length (0-32 for IPv4, 0-128 for IPv6)";
    case CIDR_ETOOLONG:
        return "too long";
    default:
        return "unknown error";
    }
}

int cidr_addr_parse(const char *s, size_t len, uint8_t out[16])
{
    bool v4;

    return cidr__addr(s, len, out, &v4);
}

bool cidr_match(const cidr_t *c, const uint8_t addr[16])
{
    size_t full = c->bits / 8;
    unsigned rest = c->bits % 8;

    if (memcmp(c->net, addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((c->net[full] ^ addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

size_t cidr_format(const cidr_t *c, char out[CIDR_FORMAT_LEN])
{
    unsigned bits = c->v4 ? c->bits - 96u : c->bits;
    size_t n;

    if (c->v4)
        inet_ntop(AF_INET, c->net + 12, out, CIDR_FORMAT_LEN);
    else
        inet_ntop(AF_INET6, c->net, out, CIDR_FORMAT_LEN);
    n = strlen(out);
    n += (size_t)snprintf(out + n, CIDR_FORMAT_LEN - n, "/%u", bits);
    return n;
}

/* Writes `entry N "<echo>": reason` into err, if there is one. */
static void cidr__error(char *err, size_t errcap, size_t index,
                        const char *entry, size_t elen, const char *reason)
{
    char echo[CIDR__ECHO_MAX + 1];
    size_t n = elen < CIDR__ECHO_MAX ? elen : CIDR__ECHO_MAX, i;

    if (err == NULL || errcap == 0)
        return;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)entry[i];

        echo[i] = (c < 0x20 || c >= 0x7f || c == '"') ? '?' : (char)c;
    }
    echo[n] = '\0';
    if (elen == 0)
        snprintf(err, errcap, "entry %zu: %s", index, reason);
    else
        snprintf(err, errcap, "entry %zu \"%s%s\": %s", index, echo,
                 n < elen ? "..." : "", reason);
}

/* Appends c to l, growing its array by doubling up to CIDR_LIST_MAX. */
static int cidr__push(cidr_list_t *l, size_t *cap, const cidr_t *c)
{
    cidr_t *v;
    size_t ncap;

    if (l->n == *cap) {
        ncap = *cap ? *cap * 2 : 8;
        if (ncap > CIDR_LIST_MAX)
            ncap = CIDR_LIST_MAX;
        v = realloc(l->v, ncap * sizeof *v);
        if (v == NULL)
            return -1;
        l->v = v;
        *cap = ncap;
    }
    l->v[l->n++] = *c;
    return 0;
}

static size_t cidr__skip_space(const char *s, size_t len, size_t pos)
{
    while (pos < len && cidr__is_space(s[pos]))
        pos++;
    return pos;
}

int cidr_list_parse(const char *s, size_t len, cidr_list_t *out, char *err,
                    size_t errcap)
{
    static const char empty_entry[] =
        "empty (a leading, trailing or doubled comma)";
    cidr_list_t l = { NULL, 0 };
    size_t cap = 0, pos = cidr__skip_space(s, len, 0), start;
    cidr_t c;
    int rc;

    while (pos < len) {
        if (s[pos] == ',') {
            cidr__error(err, errcap, l.n + 1, NULL, 0, empty_entry);
            goto fail;
        }
        start = pos;
        while (pos < len && s[pos] != ',' && !cidr__is_space(s[pos]))
            pos++;
        if (l.n == CIDR_LIST_MAX) {
            cidr__error(err, errcap, l.n + 1, s + start, pos - start,
                        "too many entries");
            goto fail;
        }
        rc = cidr_parse(s + start, pos - start, &c);
        if (rc != 0) {
            cidr__error(err, errcap, l.n + 1, s + start, pos - start,
                        cidr_strerror(rc));
            goto fail;
        }
        if (cidr__push(&l, &cap, &c) != 0) {
            cidr__error(err, errcap, l.n + 1, NULL, 0, "out of memory");
            goto fail;
        }
        pos = cidr__skip_space(s, len, pos);
        if (pos < len && s[pos] == ',') {
            pos = cidr__skip_space(s, len, pos + 1);
            if (pos == len) {
                cidr__error(err, errcap, l.n + 1, NULL, 0, empty_entry);
                goto fail;
            }
        }
    }
    *out = l;
    return 0;
fail:
    cidr_list_free(&l);
    *out = l;
    return -1;
}

void cidr_list_free(cidr_list_t *l)
{
    if (l == NULL)
        return;
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

bool cidr_list_match_addr(const cidr_list_t *l, const uint8_t addr[16])
{
    size_t i;

    for (i = 0; i < l->n; i++)
        if (cidr_match(&l->v[i], addr))
            return true;
    return false;
}

bool cidr_list_match(const cidr_list_t *l, const char *ip, size_t len)
{
    uint8_t a[16];

    if (l->n == 0 || cidr_addr_parse(ip, len, a) != 0)
        return false;
    return cidr_list_match_addr(l, a);
}
