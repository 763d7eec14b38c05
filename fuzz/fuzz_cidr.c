/*
 * fuzz_cidr.c - CIDR entries, lists and peer addresses.
 *
 * Input: "<list>\n<address>" (no newline: the whole input is both). The
 * list, the address, and the whole input as one entry go through every
 * parser and must not crash or read past their length. Then:
 *   - every parsed entry is normalised (host bits zero, IPv4 entries in the
 *     mapped range at /96 or longer), matches its own base address, stops
 *     matching when its last prefix bit flips, still matches when the first
 *     host bit flips, and survives cidr_format -> cidr_parse unchanged;
 *   - a failed list parse leaves the list empty and writes a printable,
 *     NUL-terminated message within the buffer;
 *   - cidr_list_match agrees with cidr_match over the entries, and a valid
 *     address matches "::/0" and its own host entry.
 */
#undef NDEBUG                    /* the checks below are the point */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/cidr.h"

static const uint8_t fz_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                       0xff, 0xff };

static void fz_flip(uint8_t a[16], unsigned bit)
{
    a[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
}

static bool fz_bit(const uint8_t a[16], unsigned bit)
{
    return a[bit / 8] & (0x80 >> (bit % 8));
}

static void fz_check_entry(const cidr_t *c)
{
    char text[CIDR_FORMAT_LEN];
    uint8_t a[16];
    cidr_t again;
    size_t n;
    unsigned b;

    assert(c->bits <= 128);
    for (b = c->bits; b < 128; b++)
        assert(!fz_bit(c->net, b));
    if (c->v4) {
        assert(c->bits >= 96);
        assert(memcmp(c->net, fz_mapped, sizeof fz_mapped) == 0);
    }
    assert(cidr_match(c, c->net));
    memcpy(a, c->net, 16);
    if (c->bits > 0) {
        fz_flip(a, c->bits - 1u);
        assert(!cidr_match(c, a));
        fz_flip(a, c->bits - 1u);
    }
    if (c->bits < 128) {
        fz_flip(a, c->bits);
        assert(cidr_match(c, a));
    }
    n = cidr_format(c, text);
    assert(n < CIDR_FORMAT_LEN && n == strlen(text));
    assert(cidr_parse(text, n, &again) == 0);
    assert(memcmp(&again.net, c->net, 16) == 0);
    assert(again.bits == c->bits && again.v4 == c->v4);
}

static void fz_check_list(const char *s, size_t len, cidr_list_t *l)
{
    char err[96];
    size_t i, n;

    memset(err, 'X', sizeof err);
    if (cidr_list_parse(s, len, l, err, sizeof err) != 0) {
        assert(l->n == 0 && l->v == NULL);
        n = strnlen(err, sizeof err);
        assert(n > 0 && n < sizeof err);
        for (i = 0; i < n; i++)
            assert(err[i] >= 0x20 && err[i] < 0x7f);
        return;
    }
    assert(l->n <= CIDR_LIST_MAX && (l->n == 0) == (l->v == NULL));
    for (i = 0; i < l->n; i++)
        fz_check_entry(&l->v[i]);
}

static void fz_check_addr(const cidr_list_t *l, const char *s, size_t len)
{
    bool any = false;
    uint8_t a[16];
    cidr_list_t all;
    cidr_t host;
    size_t i;

    if (cidr_addr_parse(s, len, a) != 0) {
        assert(!cidr_list_match(l, s, len));
        return;
    }
    for (i = 0; i < l->n; i++)
        any |= cidr_match(&l->v[i], a);
    assert(cidr_list_match(l, s, len) == any);
    assert(cidr_list_match_addr(l, a) == any);
    assert(cidr_list_parse("::/0", 4, &all, NULL, 0) == 0);
    assert(cidr_list_match(&all, s, len));
    cidr_list_free(&all);
    assert(cidr_parse(s, len, &host) == 0);
    assert(host.bits == 128 && memcmp(host.net, a, 16) == 0);
    fz_check_entry(&host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t llen = nl ? (size_t)(nl - s) : size;
    const char *addr = nl ? nl + 1 : s;
    size_t alen = nl ? size - llen - 1 : size;
    cidr_list_t l;
    cidr_t c;

    if (cidr_parse(s, size, &c) == 0)
        fz_check_entry(&c);
    fz_check_list(s, llen, &l);
    fz_check_addr(&l, addr, alen);
    cidr_list_free(&l);
    return 0;
}
