/*
 * test_apikey.c - API key format, generation, parsing, verification and
 * the constant-time comparison helper.
 *
 * Parsing is table-driven: each row is a key built from a valid one by a
 * single edit, so a failing row names exactly which rule broke. RNG failure
 * is simulated with a RAND_METHOD whose bytes() fails.
 */
#define OPENSSL_SUPPRESS_DEPRECATED      /* RAND_set_rand_method, tests only */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/rand.h>

#include "auth/apikey.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))
#define NKEYS 10000

/* A valid key: 12 id chars, '_', 42 secret chars and a canonical last. */
#define GOOD_ID "a1B2c3D4e5F6"
#define GOOD_SECRET "Ab0_-zZ9yXwVuTsRqPoNmLkJiHgFeDcBa012345678w"
#define GOOD_KEY "sb_" GOOD_ID "_" GOOD_SECRET

static const uint8_t sha256_abc[32] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
    0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
    0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
};

static bool is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
           (c >= 'a' && c <= 'z');
}

static bool is_b64url(char c)
{
    return is_base62(c) || c == '-' || c == '_';
}

static void check_format(const char *id, const char *key, const uint8_t *hash)
{
    char parsed[APIKEY_ID_LEN + 1];
    uint8_t h[APIKEY_HASH_LEN];
    size_t i;

    assert_int_equal(strlen(id), APIKEY_ID_LEN);
    assert_int_equal(strlen(key), APIKEY_LEN);
    assert_int_equal(APIKEY_LEN, 59);
    assert_memory_equal(key, "sb_", 3);
    assert_memory_equal(key + 3, id, APIKEY_ID_LEN);
    assert_int_equal(key[3 + APIKEY_ID_LEN], '_');
    for (i = 0; i < APIKEY_ID_LEN; i++)
        assert_true(is_base62(id[i]));
    for (i = 4 + APIKEY_ID_LEN; i < APIKEY_LEN; i++)
        assert_true(is_b64url(key[i]));
    assert_non_null(strchr("AEIMQUYcgkosw048", key[APIKEY_LEN - 1]));
    assert_int_equal(apikey_parse(key, APIKEY_LEN, parsed), 0);
    assert_string_equal(parsed, id);
    assert_int_equal(apikey_hash(key, APIKEY_LEN, h), 0);
    assert_memory_equal(h, hash, APIKEY_HASH_LEN);
    assert_true(apikey_verify(hash, key, APIKEY_LEN));
}

static void test_generate_format(void **state)
{
    char id[APIKEY_ID_LEN + 1], key[APIKEY_LEN + 1];
    uint8_t hash[APIKEY_HASH_LEN];
    int i;

    for (i = 0; i < 100; i++) {
        assert_int_equal(apikey_generate(id, key, hash), 0);
        check_format(id, key, hash);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* No two of NKEYS keys share an id or a secret, and every base62 and
 * base64url character shows up often enough for a uniform draw. */
static void test_generate_unique(void **state)
{
    char (*keys)[APIKEY_LEN + 1] = calloc(NKEYS, sizeof *keys);
    char **ids = calloc(NKEYS, sizeof *ids);
    char **secrets = calloc(NKEYS, sizeof *secrets);
    char id[APIKEY_ID_LEN + 1];
    uint8_t hash[APIKEY_HASH_LEN];
    unsigned idc[256] = { 0 }, sc[256] = { 0 };
    size_t i, j;

    assert_non_null(keys);
    assert_non_null(ids);
    assert_non_null(secrets);
    for (i = 0; i < NKEYS; i++) {
        assert_int_equal(apikey_generate(id, keys[i], hash), 0);
        keys[i][3 + APIKEY_ID_LEN] = '\0';    /* split id and secret */
        ids[i] = keys[i] + 3;
        secrets[i] = keys[i] + 4 + APIKEY_ID_LEN;
        for (j = 0; j < APIKEY_ID_LEN; j++)
            idc[(unsigned char)ids[i][j]]++;
        for (j = 0; j + 1 < APIKEY_SECRET_LEN; j++)
            sc[(unsigned char)secrets[i][j]]++;
    }
    qsort(ids, NKEYS, sizeof *ids, cmp_str);
    qsort(secrets, NKEYS, sizeof *secrets, cmp_str);
    for (i = 1; i < NKEYS; i++) {
        assert_true(strcmp(ids[i - 1], ids[i]) != 0);
        assert_true(strcmp(secrets[i - 1], secrets[i]) != 0);
    }
    /* expected: 120000 / 62 = 1935 per id char, 420000 / 64 = 6562 */
    for (i = 0; i < 256; i++) {
        if (is_base62((char)i))
            assert_in_range(idc[i], 1600, 2300);
        else
            assert_int_equal(idc[i], 0);
        if (is_b64url((char)i))
            assert_in_range(sc[i], 5900, 7200);
        else
            assert_int_equal(sc[i], 0);
    }
    free(keys);
    free(ids);
    free(secrets);
}

static int fail_bytes(unsigned char *buf, int num)
{
    (void)buf;
    (void)num;
    return 0;
}

static int fail_status(void)
{
    return 0;
}

static void test_generate_rng_failure(void **state)
{
    static const RAND_METHOD failing = {
        .bytes = fail_bytes, .pseudorand = fail_bytes, .status = fail_status,
    };
    static const char zero[APIKEY_LEN + 1];
    char id[APIKEY_ID_LEN + 1], key[APIKEY_LEN + 1];
    uint8_t hash[APIKEY_HASH_LEN];

    memset(id, 'x', sizeof id);
    memset(key, 'x', sizeof key);
    memset(hash, 'x', sizeof hash);
    assert_int_equal(RAND_set_rand_method(&failing), 1);
    assert_int_equal(apikey_generate(id, key, hash), -1);
    assert_int_equal(RAND_set_rand_method(NULL), 1);
    assert_memory_equal(id, zero, sizeof id);
    assert_memory_equal(key, zero, sizeof key);
    assert_memory_equal(hash, zero, sizeof hash);
    /* the real RNG is back */
    assert_int_equal(apikey_generate(id, key, hash), 0);
    check_format(id, key, hash);
}

typedef struct edit {
    const char *what;
    size_t at;        /* offset in GOOD_KEY */
    const char *with; /* replaces 1 byte at `at` ("" deletes it) */
} edit_t;

/* GOOD_KEY with one byte at e->at replaced by e->with, into out. */
static size_t apply_edit(const edit_t *e, char *out, size_t cap)
{
    const char *k = GOOD_KEY;
    size_t wl = strlen(e->with), len = 0;

    assert_true(strlen(k) + wl < cap);
    memcpy(out, k, e->at);
    len = e->at;
    memcpy(out + len, e->with, wl);
    len += wl;
    if (e->at < strlen(k)) {
        memcpy(out + len, k + e->at + 1, strlen(k) - e->at - 1);
        len += strlen(k) - e->at - 1;
    }
    out[len] = '\0';
    return len;
}

static void test_parse_accepts(void **state)
{
    static const char *const rows[] = {
        GOOD_KEY,
        "sb_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sb_zzzzzzzzzzzz_------------------------------------------0",
        "sb_ZZZZZZZZZZZZ___________________________________________8",
        "sb_0aZ9zA000000_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
    };
    char id[APIKEY_ID_LEN + 1];
    size_t i;

    for (i = 0; i < NROWS(rows); i++) {
        if (apikey_parse(rows[i], strlen(rows[i]), id) != 0)
            fail_msg("rejected \"%s\"", rows[i]);
        assert_memory_equal(id, rows[i] + 3, APIKEY_ID_LEN);
        assert_int_equal(id[APIKEY_ID_LEN], '\0');
        assert_int_equal(apikey_parse(rows[i], strlen(rows[i]), NULL), 0);
    }
    apikey_parse(GOOD_KEY, APIKEY_LEN, id);
    assert_string_equal(id, GOOD_ID);
}

static void test_parse_rejects(void **state)
{
    static const edit_t rows[] = {
        { "prefix case", 0, "S" },
        { "prefix letter", 1, "k" },
        { "prefix separator", 2, "-" },
        { "id dash", 3, "-" },
        { "id underscore", 8, "_" },
        { "id space", 14, " " },
        { "id high byte", 5, "\xc3" },
        { "separator dash", 15, "-" },
        { "separator dot", 15, "." },
        { "separator missing", 15, "" },
        { "secret plus", 16, "+" },
        { "secret slash", 30, "/" },
        { "secret pad", 57, "=" },
        { "secret space", 40, " " },
        { "secret high byte", 20, "\xff" },
        { "secret short", 20, "" },
        { "secret long", 20, "ab" },
        { "last non-canonical B", 58, "B" },
        { "last non-canonical z", 58, "z" },
        { "last non-canonical 9", 58, "9" },
        { "last dash", 58, "-" },
        { "last underscore", 58, "_" },
        { "padding added", 59, "=" },
        { "newline added", 59, "\n" },
        { "id short", 4, "" },
        { "id long", 4, "xy" },
    };
    char key[APIKEY_LEN + 8], id[APIKEY_ID_LEN + 1] = "untouched!!";
    size_t i, len;

    for (i = 0; i < NROWS(rows); i++) {
        len = apply_edit(&rows[i], key, sizeof key);
        if (apikey_parse(key, len, id) != -1)
            fail_msg("accepted %s: \"%s\"", rows[i].what, key);
    }
    assert_string_equal(id, "untouched!!");
}

static void test_parse_rejects_lengths(void **state)
{
    char key[APIKEY_LEN + 1] = GOOD_KEY;
    size_t len;

    assert_int_equal(apikey_parse(NULL, 0, NULL), -1);
    assert_int_equal(apikey_parse("", 0, NULL), -1);
    for (len = 0; len < APIKEY_LEN; len++)
        assert_int_equal(apikey_parse(key, len, NULL), -1);
    assert_int_equal(apikey_parse(key, APIKEY_LEN, NULL), 0);
    /* an embedded NUL is just a bad byte */
    key[40] = '\0';
    assert_int_equal(apikey_parse(key, APIKEY_LEN, NULL), -1);
}

/* A heap copy of exactly len bytes, so ASan sees any read past len. */
static void test_parse_reads_within_len(void **state)
{
    size_t len;

    for (len = 0; len <= APIKEY_LEN; len++) {
        char *p = malloc(len ? len : 1);

        assert_non_null(p);
        memcpy(p, GOOD_KEY, len);
        assert_int_equal(apikey_parse(p, len, NULL),
                         len == APIKEY_LEN ? 0 : -1);
        free(p);
    }
}

static void test_hash_vector(void **state)
{
    uint8_t h[APIKEY_HASH_LEN], e[APIKEY_HASH_LEN];

    assert_int_equal(apikey_hash("abc", 3, h), 0);
    assert_memory_equal(h, sha256_abc, sizeof h);
    /* empty input is a valid digest input, NULL allowed with len 0 */
    assert_int_equal(apikey_hash(NULL, 0, e), 0);
    assert_int_equal(apikey_hash("", 0, h), 0);
    assert_memory_equal(h, e, sizeof h);
    assert_memory_not_equal(h, sha256_abc, sizeof h);
}

static void test_verify(void **state)
{
    char id[APIKEY_ID_LEN + 1], key[APIKEY_LEN + 1], other[APIKEY_LEN + 1];
    uint8_t hash[APIKEY_HASH_LEN], ohash[APIKEY_HASH_LEN];

    assert_int_equal(apikey_generate(id, key, hash), 0);
    assert_int_equal(apikey_generate(id, other, ohash), 0);
    assert_true(apikey_verify(hash, key, APIKEY_LEN));
    assert_true(apikey_verify(ohash, other, APIKEY_LEN));
    assert_false(apikey_verify(hash, other, APIKEY_LEN));
    assert_false(apikey_verify(ohash, key, APIKEY_LEN));
    assert_false(apikey_verify(hash, key, APIKEY_LEN - 1));
    assert_false(apikey_verify(hash, key, 0));
    assert_false(apikey_verify(hash, NULL, 0));
    hash[31] ^= 1;
    assert_false(apikey_verify(hash, key, APIKEY_LEN));
}

/* Changing any one character of a key, to any other valid character,
 * makes verification fail. */
static void test_verify_one_char_changed(void **state)
{
    char id[APIKEY_ID_LEN + 1], key[APIKEY_LEN + 1];
    uint8_t hash[APIKEY_HASH_LEN];
    size_t i;

    assert_int_equal(apikey_generate(id, key, hash), 0);
    for (i = 0; i < APIKEY_LEN; i++) {
        char saved = key[i];

        key[i] = saved == 'A' ? 'B' : 'A';
        if (apikey_verify(hash, key, APIKEY_LEN))
            fail_msg("verified with position %zu changed", i);
        key[i] = saved;
    }
    assert_true(apikey_verify(hash, key, APIKEY_LEN));
}

static void test_ct_equal(void **state)
{
    static const char a[] = "signature-bytes\0tail", b[] = "signature-bytes\0tail";

    assert_true(ct_equal(a, sizeof a, b, sizeof b));
    assert_true(ct_equal(a, 5, b, 5));
    assert_true(ct_equal(NULL, 0, NULL, 0));
    assert_true(ct_equal(a, 0, "x", 0));
    assert_false(ct_equal(a, sizeof a, b, sizeof b - 1));
    assert_false(ct_equal(a, 0, b, 1));
    assert_false(ct_equal("abcd", 4, "abce", 4));
    assert_false(ct_equal("abcd", 4, "bbcd", 4));
    /* bytes after an embedded NUL count */
    assert_false(ct_equal("a\0b", 3, "a\0c", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_format),
        cmocka_unit_test(test_generate_unique),
        cmocka_unit_test(test_generate_rng_failure),
        cmocka_unit_test(test_parse_accepts),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_parse_rejects_lengths),
        cmocka_unit_test(test_parse_reads_within_len),
        cmocka_unit_test(test_hash_vector),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_verify_one_char_changed),
        cmocka_unit_test(test_ct_equal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
