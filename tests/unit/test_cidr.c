/*
 * test_cidr.c - CIDR parsing, normalisation, matching and list syntax.
 *
 * Tables of (network, address, expected) rows for IPv4, IPv6, mapped IPv4,
 * the /0, host and non-octet prefix edges; tables of inputs each parser
 * must refuse, with the error code it must give; list errors checked
 * through their messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/cidr.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))

typedef struct mrow {
    const char *net, *ip;
    bool want;
} mrow_t;

typedef struct erow {
    const char *s;
    int err;
} erow_t;

typedef struct frow {
    const char *in, *out;
} frow_t;

static void check_matches(const mrow_t *rows, size_t n)
{
    cidr_list_t l;
    char err[128];
    size_t i;

    for (i = 0; i < n; i++) {
        const mrow_t *r = &rows[i];
        bool got;

        if (cidr_list_parse(r->net, strlen(r->net), &l, err, sizeof err))
            fail_msg("\"%s\" does not parse: %s", r->net, err);
        got = cidr_list_match(&l, r->ip, strlen(r->ip));
        cidr_list_free(&l);
        if (got != r->want)
            fail_msg("\"%s\" ~ \"%s\": got %d want %d", r->net, r->ip, got,
                     r->want);
    }
}

static void test_match_v4(void **state)
{
    static const mrow_t rows[] = {
        { "10.0.0.0/8", "10.0.0.0", true },
        { "10.0.0.0/8", "10.255.255.255", true },
        { "10.0.0.0/8", "10.1.2.3", true },
        { "10.0.0.0/8", "11.0.0.0", false },
        { "10.0.0.0/8", "9.255.255.255", false },
        { "192.168.1.0/24", "192.168.1.77", true },
        { "192.168.1.0/24", "192.168.2.1", false },
        { "127.0.0.1", "127.0.0.1", true },
        { "127.0.0.1", "127.0.0.2", false },
        { "127.0.0.1/32", "127.0.0.1", true },
        { "127.0.0.1/32", "127.0.0.0", false },
        { "0.0.0.0/0", "1.2.3.4", true },
        { "0.0.0.0/0", "255.255.255.255", true },
        { "0.0.0.0/0", "::1", false },
        { "0.0.0.0/0", "2001:db8::1", false },
        /* prefixes that are not multiples of 8 */
        { "172.16.0.0/12", "172.16.0.1", true },
        { "172.16.0.0/12", "172.31.255.255", true },
        { "172.16.0.0/12", "172.32.0.0", false },
        { "172.16.0.0/12", "172.15.255.255", false },
        { "10.0.0.128/25", "10.0.0.128", true },
        { "10.0.0.128/25", "10.0.0.255", true },
        { "10.0.0.128/25", "10.0.0.127", false },
        { "10.0.0.0/31", "10.0.0.1", true },
        { "10.0.0.0/31", "10.0.0.2", false },
        { "128.0.0.0/1", "200.1.1.1", true },
        { "128.0.0.0/1", "127.255.255.255", false },
        /* host bits are masked off */
        { "10.1.2.3/8", "10.200.0.1", true },
        { "10.1.2.3/8", "11.1.2.3", false },
        { "192.168.1.77/24", "192.168.1.1", true },
    };

    check_matches(rows, NROWS(rows));
}

static void test_match_v6(void **state)
{
    static const mrow_t rows[] = {
        { "::1", "::1", true },
        { "::1", "::2", false },
        { "::1/128", "::1", true },
        { "::1/128", "0:0:0:0:0:0:0:1", true },
        { "::1/128", "::", false },
        { "2001:db8::/32", "2001:db8::1", true },
        { "2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true },
        { "2001:db8::/32", "2001:db9::1", false },
        { "2001:DB8::/32", "2001:db8:1::", true },
        { "fe80::/10", "fe80::1", true },
        { "fe80::/10", "febf:ffff::1", true },
        { "fe80::/10", "fec0::1", false },
        { "2001:db8::/127", "2001:db8::1", true },
        { "2001:db8::/127", "2001:db8::2", false },
        { "2001:db8:abcd:12::/63", "2001:db8:abcd:13:1::", true },
        { "2001:db8:abcd:12::/63", "2001:db8:abcd:14::", false },
        { "2001:db8::1/64", "2001:db8::ffff", true },   /* host bits */
        { "::/0", "2001:db8::1", true },
        { "::/0", "::", true },
        { "::/0", "1.2.3.4", true },                    /* v4 is mapped v6 */
        { "2001:db8::/32", "10.0.0.1", false },
        { "::/1", "8000::", false },
    };

    check_matches(rows, NROWS(rows));
}

static void test_match_mapped(void **state)
{
    static const mrow_t rows[] = {
        { "10.0.0.0/8", "::ffff:10.1.2.3", true },
        { "10.0.0.0/8", "::FFFF:10.1.2.3", true },
        { "10.0.0.0/8", "::ffff:a01:203", true },
        { "10.0.0.0/8", "0:0:0:0:0:ffff:10.1.2.3", true },
        { "10.0.0.0/8", "::ffff:11.1.2.3", false },
        { "127.0.0.1", "::ffff:127.0.0.1", true },
        { "0.0.0.0/0", "::ffff:8.8.8.8", true },
        { "172.16.0.0/12", "::ffff:172.20.0.1", true },
        /* other embeddings are not IPv4 */
        { "10.0.0.0/8", "::10.1.2.3", false },
        { "10.0.0.0/8", "64:ff9b::a01:203", false },
        { "10.0.0.0/8", "::fffe:10.1.2.3", false },
        /* the mapped range written as IPv6 covers IPv4 peers */
        { "::ffff:0:0/96", "1.2.3.4", true },
        { "::ffff:0:0/96", "::1", false },
        { "::ffff:10.0.0.0/104", "10.9.9.9", true },
        { "::ffff:10.0.0.0/104", "11.9.9.9", false },
    };

    check_matches(rows, NROWS(rows));
}

static void test_parse_normalises(void **state)
{
    static const frow_t rows[] = {
        { "10.0.0.0/8", "10.0.0.0/8" },
        { "10.1.2.3/8", "10.0.0.0/8" },
        { "10.1.2.3", "10.1.2.3/32" },
        { "172.31.1.1/12", "172.16.0.0/12" },
        { "1.2.3.4/0", "0.0.0.0/0" },
        { "255.255.255.255/31", "255.255.255.254/31" },
        { "::1", "::1/128" },
        { "2001:DB8:0:0:1::/64", "2001:db8::/64" },
        { "fe80::1234/10", "fe80::/10" },
        { "::ffff:10.1.2.3/104", "::ffff:10.0.0.0/104" },
        { "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/1", "8000::/1" },
        { "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8/128" },
    };
    char out[CIDR_FORMAT_LEN];
    cidr_t c;
    size_t i, n;

    for (i = 0; i < NROWS(rows); i++) {
        if (cidr_parse(rows[i].in, strlen(rows[i].in), &c) != 0)
            fail_msg("\"%s\" rejected", rows[i].in);
        n = cidr_format(&c, out);
        assert_int_equal(n, strlen(out));
        if (strcmp(out, rows[i].out) != 0)
            fail_msg("\"%s\" -> \"%s\", want \"%s\"", rows[i].in, out,
                     rows[i].out);
    }
    assert_int_equal(cidr_parse("10.0.0.0/8", 10, &c), 0);
    assert_true(c.v4);
    assert_int_equal(c.bits, 104);
    assert_int_equal(cidr_parse("2001:db8::/32", 13, &c), 0);
    assert_false(c.v4);
    assert_int_equal(c.bits, 32);
}

static void test_format_longest(void **state)
{
    static const char in[] = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
    char out[CIDR_FORMAT_LEN];
    cidr_t c;

    assert_int_equal(cidr_parse(in, strlen(in), &c), 0);
    assert_true(cidr_format(&c, out) < CIDR_FORMAT_LEN);
    assert_string_equal(out, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
}

static void test_parse_rejects(void **state)
{
    static const erow_t rows[] = {
        { "", CIDR_EEMPTY },
        { "10.0.0.0/33", CIDR_EPREFIX },
        { "10.0.0.0/99", CIDR_EPREFIX },
        { "::/129", CIDR_EPREFIX },
        { "::/1000", CIDR_EPREFIX },
        { "10.0.0.0/", CIDR_EPREFIX },
        { "10.0.0.0/-1", CIDR_EPREFIX },
        { "10.0.0.0/+8", CIDR_EPREFIX },
        { "10.0.0.0/08", CIDR_EPREFIX },
        { "10.0.0.0/8 ", CIDR_EPREFIX },
        { "10.0.0.0/8x", CIDR_EPREFIX },
        { "10.0.0.0/0x8", CIDR_EPREFIX },
        { "::/00", CIDR_EPREFIX },
        { "1.2.3", CIDR_EADDR },
        { "1.2.3/24", CIDR_EADDR },
        { "10.1", CIDR_EADDR },
        { "1.2.3.4.5", CIDR_EADDR },
        { "256.0.0.0", CIDR_EADDR },
        { "01.2.3.4", CIDR_EADDR },
        { "1.2.3.-4", CIDR_EADDR },
        { "0x7f.0.0.1", CIDR_EADDR },
        { " 10.0.0.0", CIDR_EADDR },
        { "::g", CIDR_EADDR },
        { ":::", CIDR_EADDR },
        { "1::2::3", CIDR_EADDR },
        { "1:2:3:4:5:6:7:8:9", CIDR_EADDR },
        { "fe80::1%eth0", CIDR_EADDR },
        { "[::1]", CIDR_EADDR },
        { "[::1]/128", CIDR_EADDR },
        { "/8", CIDR_EADDR },
        { "/", CIDR_EADDR },
        { "10.0.0.0/8/8", CIDR_EADDR },
        { "localhost", CIDR_EADDR },
        { "10.0.0.0\\8", CIDR_EADDR },
        { "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000/128",
          CIDR_EADDR },
        { "00000000000000000000000000000000000000000000000000000000000000001",
          CIDR_ETOOLONG },
    };
    cidr_t c;
    size_t i;
    int got;

    for (i = 0; i < NROWS(rows); i++) {
        got = cidr_parse(rows[i].s, strlen(rows[i].s), &c);
        if (got != rows[i].err)
            fail_msg("\"%s\": got %d want %d", rows[i].s, got, rows[i].err);
    }
    /* an embedded NUL cannot shorten the text inet_pton sees */
    assert_int_equal(cidr_parse("10.0.0.1\0/8", 11, &c), CIDR_EADDR);
    assert_int_equal(cidr_parse("10.0.0.1/8\0", 11, &c), CIDR_EPREFIX);
    assert_int_equal(cidr_parse(NULL, 0, &c), CIDR_EEMPTY);
}

static void test_prefix_limits(void **state)
{
    char s[32];
    cidr_t c;
    int i;

    for (i = 0; i <= 33; i++) {
        snprintf(s, sizeof s, "1.2.3.4/%d", i);
        assert_int_equal(cidr_parse(s, strlen(s), &c), i <= 32 ? 0 : CIDR_EPREFIX);
        if (i <= 32)
            assert_int_equal(c.bits, 96 + i);
    }
    for (i = 0; i <= 129; i++) {
        snprintf(s, sizeof s, "1::/%d", i);
        assert_int_equal(cidr_parse(s, strlen(s), &c), i <= 128 ? 0 : CIDR_EPREFIX);
    }
}

/* Every prefix length in both families: the network matches its own base
 * and last address and nothing one step outside. */
static void test_every_prefix_length(void **state)
{
    uint8_t a[16];
    cidr_t c;
    char s[64];
    unsigned bits;

    for (bits = 1; bits <= 128; bits++) {
        snprintf(s, sizeof s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/%u",
                 bits);
        assert_int_equal(cidr_parse(s, strlen(s), &c), 0);
        memset(a, 0xff, sizeof a);
        assert_true(cidr_match(&c, a));             /* last address */
        assert_true(cidr_match(&c, c.net));         /* base address */
        a[(bits - 1) / 8] ^= (uint8_t)(0x80 >> ((bits - 1) % 8));
        assert_false(cidr_match(&c, a));            /* last prefix bit off */
    }
}

static void test_addr_parse(void **state)
{
    static const uint8_t mapped[16] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1,
    };
    uint8_t a[16], b[16];

    assert_int_equal(cidr_addr_parse("127.0.0.1", 9, a), 0);
    assert_memory_equal(a, mapped, 16);
    assert_int_equal(cidr_addr_parse("::ffff:127.0.0.1", 16, b), 0);
    assert_memory_equal(b, mapped, 16);
    /* a slice of a longer string: only len bytes count */
    assert_int_equal(cidr_addr_parse("127.0.0.1:8080", 9, b), 0);
    assert_memory_equal(b, mapped, 16);
    assert_int_equal(cidr_addr_parse("127.0.0.1/32", 12, a), CIDR_EADDR);
    assert_int_equal(cidr_addr_parse("", 0, a), CIDR_EEMPTY);
    assert_int_equal(cidr_addr_parse("1.2.3", 5, a), CIDR_EADDR);
}

static void check_list_error(const char *s, const char *want)
{
    cidr_list_t l = { (cidr_t *)&l, 99 };    /* garbage on purpose */
    char err[160];

    memset(err, 0, sizeof err);
    if (cidr_list_parse(s, strlen(s), &l, err, sizeof err) != -1)
        fail_msg("list \"%s\" accepted", s);
    assert_null(l.v);
    assert_int_equal(l.n, 0);
    if (strcmp(err, want) != 0)
        fail_msg("list \"%s\": error \"%s\", want \"%s\"", s, err, want);
}

static void test_list_parse(void **state)
{
    static const char s[] = "  10.0.0.0/8, 192.168.1.7 ::1\t,\n2001:db8::/32 ";
    char out[CIDR_FORMAT_LEN];
    cidr_list_t l;

    assert_int_equal(cidr_list_parse(s, strlen(s), &l, NULL, 0), 0);
    assert_int_equal(l.n, 4);
    cidr_format(&l.v[0], out);
    assert_string_equal(out, "10.0.0.0/8");
    cidr_format(&l.v[1], out);
    assert_string_equal(out, "192.168.1.7/32");
    cidr_format(&l.v[2], out);
    assert_string_equal(out, "::1/128");
    cidr_format(&l.v[3], out);
    assert_string_equal(out, "2001:db8::/32");
    assert_true(cidr_list_match(&l, "10.9.8.7", 8));
    assert_true(cidr_list_match(&l, "192.168.1.7", 11));
    assert_false(cidr_list_match(&l, "192.168.1.8", 11));
    assert_true(cidr_list_match(&l, "::1", 3));
    assert_true(cidr_list_match(&l, "2001:db8:1::5", 13));
    assert_false(cidr_list_match(&l, "2001:db9::", 10));
    assert_false(cidr_list_match(&l, "not an ip", 9));
    assert_false(cidr_list_match(&l, "", 0));
    cidr_list_free(&l);
    assert_null(l.v);
    assert_int_equal(l.n, 0);
    cidr_list_free(&l);              /* twice is harmless */
    cidr_list_free(NULL);
}

static void test_list_empty(void **state)
{
    static const char *const empties[] = { "", " ", "\t\n \r" };
    cidr_list_t l;
    size_t i;

    for (i = 0; i < NROWS(empties); i++) {
        assert_int_equal(cidr_list_parse(empties[i], strlen(empties[i]), &l,
                                         NULL, 0), 0);
        assert_int_equal(l.n, 0);
        assert_false(cidr_list_match(&l, "127.0.0.1", 9));
        assert_false(cidr_list_match(&l, "::1", 3));
        cidr_list_free(&l);
    }
    assert_int_equal(cidr_list_parse(NULL, 0, &l, NULL, 0), 0);
    assert_int_equal(l.n, 0);
}

static void test_list_errors(void **state)
{
    check_list_error("10.0.0.0/33",
                     "entry 1 \"10.0.0.0/33\": bad prefix length "
                     "(0-32 for IPv4, 0-128 for IPv6)");
    check_list_error("::1, 1.2.3",
                     "entry 2 \"1.2.3\": not an IPv4 or IPv6 address");
    check_list_error("::1,,::2",
                     "entry 2: empty (a leading, trailing or doubled comma)");
    check_list_error(", ::1",
                     "entry 1: empty (a leading, trailing or doubled comma)");
    check_list_error("::1 ,",
                     "entry 2: empty (a leading, trailing or doubled comma)");
    check_list_error("::1, , ::2",
                     "entry 2: empty (a leading, trailing or doubled comma)");
    check_list_error("::1 10.0.0.0/",
                     "entry 2 \"10.0.0.0/\": bad prefix length "
                     "(0-32 for IPv4, 0-128 for IPv6)");
    check_list_error("::g", "entry 1 \"::g\": not an IPv4 or IPv6 address");
    /* non-printable bytes and quotes are not echoed as such */
    check_list_error("1.2.3.4;\x1b[31m\"x",
                     "entry 1 \"1.2.3.4;?[31m?x\": not an IPv4 or IPv6 address");
    check_list_error("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                     "aaaaaaaaaa",
                     "entry 1 \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\": "
                     "too long");
}

static void test_list_error_truncated(void **state)
{
    char err[12];
    cidr_list_t l;

    assert_int_equal(cidr_list_parse("x", 1, &l, err, sizeof err), -1);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_memory_equal(err, "entry 1 \"x\"", 11);
    /* no error buffer at all is fine */
    assert_int_equal(cidr_list_parse("x", 1, &l, NULL, 0), -1);
    assert_int_equal(cidr_list_parse("x", 1, &l, err, 0), -1);
}

/* CIDR_LIST_MAX entries parse; one more is refused. */
static void test_list_max(void **state)
{
    size_t cap = (CIDR_LIST_MAX + 1) * 16, len = 0, i;
    char *s = malloc(cap), err[128];
    cidr_list_t l;

    assert_non_null(s);
    for (i = 0; i < CIDR_LIST_MAX; i++)
        len += (size_t)snprintf(s + len, cap - len, "10.%zu.%zu.0/24,",
                                i / 256, i % 256);
    assert_int_equal(cidr_list_parse(s, len - 1, &l, err, sizeof err), 0);
    assert_int_equal(l.n, CIDR_LIST_MAX);
    assert_true(cidr_list_match(&l, "10.3.255.9", 10));
    assert_false(cidr_list_match(&l, "10.4.0.1", 8));
    cidr_list_free(&l);
    len += (size_t)snprintf(s + len, cap - len, "::1");
    assert_int_equal(cidr_list_parse(s, len, &l, err, sizeof err), -1);
    assert_string_equal(err, "entry 1025 \"::1\": too many entries");
    assert_int_equal(l.n, 0);
    free(s);
}

static void test_match_bad_peer_text(void **state)
{
    static const char *const bad[] = {
        "", "1.2.3", "::g", "[::1]", "127.0.0.1:80", "::1%lo", "localhost",
        "127.0.0.1 ", " 127.0.0.1",
    };
    cidr_list_t l;
    size_t i;

    assert_int_equal(cidr_list_parse("::/0", 4, &l, NULL, 0), 0);
    for (i = 0; i < NROWS(bad); i++)
        if (cidr_list_match(&l, bad[i], strlen(bad[i])))
            fail_msg("\"%s\" matched ::/0", bad[i]);
    assert_true(cidr_list_match(&l, "127.0.0.1", 9));
    cidr_list_free(&l);
}

static void test_strerror(void **state)
{
    assert_string_equal(cidr_strerror(CIDR_EEMPTY), "empty");
    assert_string_equal(cidr_strerror(CIDR_ETOOLONG), "too long");
    assert_string_equal(cidr_strerror(0), "unknown error");
    assert_string_equal(cidr_strerror(-99), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_v4),
        cmocka_unit_test(test_match_v6),
        cmocka_unit_test(test_match_mapped),
        cmocka_unit_test(test_parse_normalises),
        cmocka_unit_test(test_format_longest),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_prefix_limits),
        cmocka_unit_test(test_every_prefix_length),
        cmocka_unit_test(test_addr_parse),
        cmocka_unit_test(test_list_parse),
        cmocka_unit_test(test_list_empty),
        cmocka_unit_test(test_list_errors),
        cmocka_unit_test(test_list_error_truncated),
        cmocka_unit_test(test_list_max),
        cmocka_unit_test(test_match_bad_peer_text),
        cmocka_unit_test(test_strerror),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
