/*
 * test_seal.c - AES-256-GCM sealing of stored secrets: round trips, the
 * binding to the associated data and to the key, tamper detection at
 * every byte, the format's limits, and key parsing (hex, base64).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/seal.h"

#define HEXKEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static unsigned char key[SEAL_KEY_LEN];

static int setup(void **state)
{
    return seal_key_parse(HEXKEY, strlen(HEXKEY), key);
}

static void round_trip(void **state)
{
    char *s = NULL, *p = NULL;
    size_t plen = 0;

    assert_int_equal(seal_seal(key, "gho_secret", 10, "7", 1, &s), 0);
    assert_non_null(s);
    assert_memory_equal(s, "v1.", 3);
    assert_null(strstr(s, "gho_secret"));
    assert_int_equal(seal_open(key, s, strlen(s), "7", 1, &p, &plen), 0);
    assert_int_equal(plen, 10);
    assert_string_equal(p, "gho_secret");
    seal_free_plain(p, plen);
    free(s);
}

static void nonce_is_fresh(void **state)
{
    char *a = NULL, *b = NULL;

    assert_int_equal(seal_seal(key, "x", 1, "1", 1, &a), 0);
    assert_int_equal(seal_seal(key, "x", 1, "1", 1, &b), 0);
    assert_string_not_equal(a, b);
    free(a);
    free(b);
}

static void other_ad_or_key_fails(void **state)
{
    unsigned char k2[SEAL_KEY_LEN];
    char *s = NULL, *p = (char *)1;
    size_t plen = 9;

    assert_int_equal(seal_seal(key, "token", 5, "user_1", 6, &s), 0);
    assert_int_equal(seal_open(key, s, strlen(s), "user_2", 6, &p, &plen), -1);
    assert_null(p);
    assert_int_equal(plen, 0);
    assert_int_equal(seal_open(key, s, strlen(s), NULL, 0, &p, &plen), -1);
    memcpy(k2, key, sizeof k2);
    k2[31] ^= 1;
    assert_int_equal(seal_open(k2, s, strlen(s), "user_1", 6, &p, &plen), -1);
    free(s);
}

/* Flipping any character of the sealed text must make it unopenable. */
static void tamper_every_byte(void **state)
{
    char *s = NULL, *p = NULL;
    size_t plen, len;

    assert_int_equal(seal_seal(key, "abcdefgh", 8, "u", 1, &s), 0);
    len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        char saved = s[i];
        s[i] = saved == 'A' ? 'B' : 'A';
        assert_int_equal(seal_open(key, s, len, "u", 1, &p, &plen), -1);
        s[i] = saved;
    }
    assert_int_equal(seal_open(key, s, len, "u", 1, &p, &plen), 0);
    seal_free_plain(p, plen);
    /* truncated */
    assert_int_equal(seal_open(key, s, len - 1, "u", 1, &p, &plen), -1);
    assert_int_equal(seal_open(key, s, 3, "u", 1, &p, &plen), -1);
    free(s);
}

static void malformed_texts(void **state)
{
    static const char *const bad[] = {
        "", "v1", "v1.", "v2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.!!!!", "v1.AAAA", "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    char *p = NULL;
    size_t plen;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(seal_open(key, bad[i], strlen(bad[i]), "u", 1, &p, &plen), -1);
        assert_null(p);
    }
}

static void limits(void **state)
{
    char *big = malloc(SEAL_PLAIN_MAX + 1), *s = NULL, *p = NULL;
    size_t plen;

    assert_non_null(big);
    memset(big, 'z', SEAL_PLAIN_MAX + 1);
    assert_int_equal(seal_seal(key, big, 0, "u", 1, &s), -1);
    assert_null(s);
    assert_int_equal(seal_seal(key, big, SEAL_PLAIN_MAX + 1, "u", 1, &s), -1);
    assert_null(s);
    assert_int_equal(seal_seal(key, big, SEAL_PLAIN_MAX, "u", 1, &s), 0);
    assert_int_equal(seal_open(key, s, strlen(s), "u", 1, &p, &plen), 0);
    assert_int_equal(plen, SEAL_PLAIN_MAX);
    assert_memory_equal(p, big, SEAL_PLAIN_MAX);
    seal_free_plain(p, plen);
    free(s);
    free(big);
}

static void key_parsing(void **state)
{
    unsigned char k[SEAL_KEY_LEN];
    /* the same 32 bytes as HEXKEY, in base64 */
    const char *b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const char *b64url = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    assert_int_equal(seal_key_parse(b64, strlen(b64), k), 0);
    assert_memory_equal(k, key, SEAL_KEY_LEN);
    memset(k, 0, sizeof k);
    assert_int_equal(seal_key_parse(b64url, strlen(b64url), k), 0);
    assert_memory_equal(k, key, SEAL_KEY_LEN);
    assert_int_equal(seal_key_parse("", 0, k), -1);
    assert_int_equal(seal_key_parse(HEXKEY, 62, k), -1);           /* 31 bytes */
    assert_int_equal(seal_key_parse("AAEC", 4, k), -1);
    assert_int_equal(seal_key_parse("zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                                    64, k), -1);
    /* 33 bytes of base64 */
    assert_int_equal(seal_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g", 44, k), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(nonce_is_fresh),
        cmocka_unit_test(other_ad_or_key_fails),
        cmocka_unit_test(tamper_every_byte),
        cmocka_unit_test(malformed_texts),
        cmocka_unit_test(limits),
        cmocka_unit_test(key_parsing),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
