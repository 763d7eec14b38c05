/*
 * test_subject.c - subject validation, matching, covering, sanitizing.
 *
 * Mostly tables: each row is an input and the expected answer, so a failing
 * row is printed by the assertion message and a new case is one line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/subject.h"

typedef struct row {
    const char *s;
    bool want;
} row_t;

typedef struct pair {
    const char *a, *b;
    bool want;
} pair_t;

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))

static void check_rows(const row_t *rows, size_t n,
                       bool (*fn)(const char *, size_t))
{
    size_t i;

    for (i = 0; i < n; i++) {
        bool got = fn(rows[i].s, strlen(rows[i].s));

        if (got != rows[i].want)
            fail_msg("\"%s\": got %d want %d", rows[i].s, got, rows[i].want);
    }
}

static void check_match(const pair_t *rows, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const char *p = rows[i].a, *s = rows[i].b;
        bool got;

        assert_true(subj_valid_pattern(p, strlen(p)));
        assert_true(subj_valid_subject(s, strlen(s)));
        got = subj_match(p, strlen(p), s, strlen(s));
        if (got != rows[i].want)
            fail_msg("match(\"%s\", \"%s\"): got %d want %d", p, s, got,
                     rows[i].want);
    }
}

static void check_covers(const pair_t *rows, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const char *o = rows[i].a, *in = rows[i].b;
        bool got;

        assert_true(subj_valid_pattern(o, strlen(o)));
        assert_true(subj_valid_pattern(in, strlen(in)));
        got = subj_covers(o, strlen(o), in, strlen(in));
        if (got != rows[i].want)
            fail_msg("covers(\"%s\", \"%s\"): got %d want %d", o, in, got,
                     rows[i].want);
    }
}

/* A string of n tokens "t.t.t..." of tlen bytes each, in buf. */
static size_t make_tokens(char *buf, size_t cap, size_t n, size_t tlen,
                          char c)
{
    size_t len = 0, i, j;

    for (i = 0; i < n; i++) {
        if (i > 0 && len < cap)
            buf[len++] = '.';
        for (j = 0; j < tlen && len < cap; j++)
            buf[len++] = c;
    }
    assert_true(len < cap);
    buf[len] = '\0';
    return len;
}

/* --- validation ----------------------------------------------------------- */

static void test_subject_accepts(void **state)
{
    static const row_t rows[] = {
        { "a", true },
        { "webhooks.github.myorg.myrepo", true },
        { "rooms.conv_abc", true },
        { "kakao.acct_42", true },
        { "A-Z.a_z.0-9", true },
        { "user@host:port~x", true },
        { "x.y.z", true },
    };

    check_rows(rows, NROWS(rows), subj_valid_subject);
}

static void test_subject_rejects_dots(void **state)
{
    static const row_t rows[] = {
        { "", false },        { ".", false },     { "..", false },
        { ".a", false },      { "a.", false },    { "a..b", false },
        { "a.b.", false },    { ".a.b", false },
    };

    check_rows(rows, NROWS(rows), subj_valid_subject);
    check_rows(rows, NROWS(rows), subj_valid_pattern);
}

static void test_subject_rejects_wildcards(void **state)
{
    static const row_t rows[] = {
        { "*", false }, { ">", false }, { "a.*", false },
        { "a.>", false }, { "*.b", false }, { "a*b", false },
        { "a>", false },
    };

    check_rows(rows, NROWS(rows), subj_valid_subject);
}

static void test_subject_rejects_bad_bytes(void **state)
{
    static const row_t rows[] = {
        { "a b", false },   { "a/b", false },   { "a\tb", false },
        { "a$b", false },   { "a#b", false },   { "a%b", false },
        { "a+b", false },   { "caf\xc3\xa9", false }, { "a\x7f", false },
        { "a\"b", false },  { "a'b", false },   { "a,b", false },
    };

    check_rows(rows, NROWS(rows), subj_valid_subject);
    check_rows(rows, NROWS(rows), subj_valid_pattern);
}

static void test_subject_rejects_nul_byte(void **state)
{
    assert_false(subj_valid_subject("a\0b", 3));
    assert_false(subj_valid_pattern("a\0b", 3));
    assert_true(subj_valid_subject("a\0b", 1));
}

static void test_subject_rejects_null_pointer(void **state)
{
    assert_false(subj_valid_subject(NULL, 0));
    assert_false(subj_valid_pattern(NULL, 5));
}

static void test_subject_token_count_limit(void **state)
{
    char buf[64];
    size_t len;

    len = make_tokens(buf, sizeof buf, SUBJ_MAX_TOKENS, 1, 'a');
    assert_true(subj_valid_subject(buf, len));
    assert_true(subj_valid_pattern(buf, len));
    len = make_tokens(buf, sizeof buf, SUBJ_MAX_TOKENS + 1, 1, 'a');
    assert_false(subj_valid_subject(buf, len));
    assert_false(subj_valid_pattern(buf, len));
}

static void test_subject_token_length_limit(void **state)
{
    char buf[SUBJ_MAX_TOKEN_LEN + 8];
    size_t len;

    len = make_tokens(buf, sizeof buf, 1, SUBJ_MAX_TOKEN_LEN, 'x');
    assert_true(subj_valid_subject(buf, len));
    len = make_tokens(buf, sizeof buf, 1, SUBJ_MAX_TOKEN_LEN + 1, 'x');
    assert_false(subj_valid_subject(buf, len));
    assert_false(subj_valid_pattern(buf, len));
}

static void test_subject_total_length_limit(void **state)
{
    char buf[SUBJ_MAX_LEN + 8];
    size_t len;

    /* two 127-byte tokens are exactly 255 bytes; ".z" makes 257 */
    len = make_tokens(buf, sizeof buf, 2, 127, 'y');
    assert_int_equal(len, 255);
    assert_true(subj_valid_subject(buf, len));
    memcpy(buf + len, ".z", 3);
    assert_false(subj_valid_subject(buf, len + 2));
    assert_false(subj_valid_pattern(buf, len + 2));
}

static void test_pattern_accepts(void **state)
{
    static const row_t rows[] = {
        { "a", true },      { "*", true },      { ">", true },
        { "a.*", true },    { "a.>", true },    { "*.b", true },
        { "*.*", true },    { "*.>", true },    { "a.*.c.>", true },
        { "webhooks.github.*", true },
    };

    check_rows(rows, NROWS(rows), subj_valid_pattern);
}

static void test_pattern_rejects(void **state)
{
    static const row_t rows[] = {
        { ">.a", false },   { "a.>.b", false }, { ">.>", false },
        { "a*b", false },   { "a.b*", false },  { "*a", false },
        { "a>", false },    { ">a", false },    { "**", false },
        { ">>", false },    { "a.**.b", false }, { "a.*>", false },
        { "a.*.", false },  { ".>", false },
    };

    check_rows(rows, NROWS(rows), subj_valid_pattern);
}

/* --- matching ------------------------------------------------------------- */

static void test_match_literal(void **state)
{
    static const pair_t rows[] = {
        { "a", "a", true },        { "a", "b", false },
        { "a.b", "a.b", true },    { "a.b", "a.c", false },
        { "a.b", "a", false },     { "a", "a.b", false },
        { "ab", "a", false },      { "a", "ab", false },
        { "A", "a", false },       { "a.b.c", "a.b.cd", false },
    };

    check_match(rows, NROWS(rows));
}

static void test_match_star(void **state)
{
    static const pair_t rows[] = {
        { "a.*", "a.b", true },     { "a.*", "a.b.c", false },
        { "a.*", "a", false },      { "*", "a", true },
        { "*", "a.b", false },      { "*.b", "a.b", true },
        { "*.b", "a.c", false },    { "*.b", "b", false },
        { "*.*", "a.b", true },     { "*.*", "a", false },
        { "a.*.c", "a.x.c", true }, { "a.*.c", "a.x.d", false },
        { "a.*.c", "a.c", false },
    };

    check_match(rows, NROWS(rows));
}

static void test_match_tail(void **state)
{
    static const pair_t rows[] = {
        { "a.>", "a", false },       { "a.>", "a.b", true },
        { "a.>", "a.b.c", true },    { "a.>", "b.c", false },
        { "a.>", "ab.c", false },    { "*.>", "a", false },
        { "*.>", "a.b", true },      { "a.*.>", "a.b", false },
        { "a.*.>", "a.b.c.d", true },
    };

    check_match(rows, NROWS(rows));
}

static void test_match_gt_matches_everything(void **state)
{
    static const char *subjects[] = {
        "a", "a.b", "webhooks.github.myorg.myrepo",
        "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p",
    };
    size_t i;

    for (i = 0; i < NROWS(subjects); i++)
        assert_true(subj_match(">", 1, subjects[i], strlen(subjects[i])));
}

static void test_match_max_depth(void **state)
{
    char s[64];
    size_t len = make_tokens(s, sizeof s, SUBJ_MAX_TOKENS, 1, 'q');

    assert_true(subj_match(s, len, s, len));
    assert_true(subj_match("q.>", 3, s, len));
    assert_false(subj_match("q.*", 3, s, len));
}

/* --- covers --------------------------------------------------------------- */

static void test_covers_tail(void **state)
{
    static const pair_t rows[] = {
        { "a.>", "a.b", true },     { "a.>", "a.*", true },
        { "a.>", "a.b.>", true },   { "a.>", "a.>", true },
        { "a.>", "a", false },      { "a.>", "b.>", false },
        { "a.>", "*.b", false },    { "a.>", ">", false },
        { "webhooks.>", "webhooks.github.*", true },
    };

    check_covers(rows, NROWS(rows));
}

static void test_covers_star(void **state)
{
    static const pair_t rows[] = {
        { "a.*", "a.b", true },     { "a.*", "a.*", true },
        { "a.*", "a.>", false },    { "a.*", "a.b.c", false },
        { "a.*", "a", false },      { "*.*", "a.*", true },
        { "*.b", "*.*", false },    { "*", ">", false },
        { "*.>", "a.>", true },     { "*.>", ">", false },
    };

    check_covers(rows, NROWS(rows));
}

static void test_covers_everything_and_literals(void **state)
{
    static const pair_t rows[] = {
        { ">", "a", true },         { ">", "*", true },
        { ">", ">", true },         { ">", "a.b.>", true },
        { "a", "a", true },         { "a", "b", false },
        { "a", "*", false },        { "a", ">", false },
        { "a.b", "a.b", true },     { "a.b", "a.*", false },
    };

    check_covers(rows, NROWS(rows));
}

/* --- sanitize ------------------------------------------------------------- */

static void test_sanitize_keeps_allowed(void **state)
{
    char out[64];
    const char *in = "Az09_-:@~";

    assert_int_equal(subj_sanitize_token(in, strlen(in), out, sizeof out),
                     strlen(in));
    assert_string_equal(out, in);
}

static void test_sanitize_replaces_dots_and_wildcards(void **state)
{
    char out[64];

    assert_int_equal(subj_sanitize_token("a.b*c>d e", 9, out, sizeof out), 9);
    assert_string_equal(out, "a_b_c_d_e");
    assert_true(subj_valid_subject(out, 9));
}

static void test_sanitize_unicode_bytes(void **state)
{
    char out[64];
    const char *in = "caf\xc3\xa9\xf0\x9f\x98\x80";

    assert_int_equal(subj_sanitize_token(in, strlen(in), out, sizeof out), 9);
    assert_string_equal(out, "caf______");
}

static void test_sanitize_nul_byte(void **state)
{
    char out[8];

    assert_int_equal(subj_sanitize_token("a\0b", 3, out, sizeof out), 3);
    assert_string_equal(out, "a_b");
}

static void test_sanitize_truncates_to_cap(void **state)
{
    char out[4];

    assert_int_equal(subj_sanitize_token("abcdef", 6, out, sizeof out), 3);
    assert_string_equal(out, "abc");
}

static void test_sanitize_truncates_to_token_max(void **state)
{
    char in[SUBJ_MAX_TOKEN_LEN * 2], out[SUBJ_MAX_TOKEN_LEN * 2];
    size_t n;

    memset(in, 'k', sizeof in);
    n = subj_sanitize_token(in, sizeof in, out, sizeof out);
    assert_int_equal(n, SUBJ_MAX_TOKEN_LEN);
    assert_int_equal(strlen(out), SUBJ_MAX_TOKEN_LEN);
    assert_true(subj_valid_subject(out, n));
}

static void test_sanitize_empty(void **state)
{
    char out[4] = "zzz";

    assert_int_equal(subj_sanitize_token("", 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(subj_sanitize_token("abc", 3, out, 1), 0);
    assert_string_equal(out, "");
}

static void test_sanitize_zero_cap(void **state)
{
    char out[1] = { 'z' };

    assert_int_equal(subj_sanitize_token("abc", 3, out, 0), 0);
    assert_int_equal(out[0], 'z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject_accepts),
        cmocka_unit_test(test_subject_rejects_dots),
        cmocka_unit_test(test_subject_rejects_wildcards),
        cmocka_unit_test(test_subject_rejects_bad_bytes),
        cmocka_unit_test(test_subject_rejects_nul_byte),
        cmocka_unit_test(test_subject_rejects_null_pointer),
        cmocka_unit_test(test_subject_token_count_limit),
        cmocka_unit_test(test_subject_token_length_limit),
        cmocka_unit_test(test_subject_total_length_limit),
        cmocka_unit_test(test_pattern_accepts),
        cmocka_unit_test(test_pattern_rejects),
        cmocka_unit_test(test_match_literal),
        cmocka_unit_test(test_match_star),
        cmocka_unit_test(test_match_tail),
        cmocka_unit_test(test_match_gt_matches_everything),
        cmocka_unit_test(test_match_max_depth),
        cmocka_unit_test(test_covers_tail),
        cmocka_unit_test(test_covers_star),
        cmocka_unit_test(test_covers_everything_and_literals),
        cmocka_unit_test(test_sanitize_keeps_allowed),
        cmocka_unit_test(test_sanitize_replaces_dots_and_wildcards),
        cmocka_unit_test(test_sanitize_unicode_bytes),
        cmocka_unit_test(test_sanitize_nul_byte),
        cmocka_unit_test(test_sanitize_truncates_to_cap),
        cmocka_unit_test(test_sanitize_truncates_to_token_max),
        cmocka_unit_test(test_sanitize_empty),
        cmocka_unit_test(test_sanitize_zero_cap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
