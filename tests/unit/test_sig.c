/*
 * test_sig.c - webhook signature schemes: configuration parsing and every
 * verification outcome of every kind.
 *
 * Fixed vectors: the Standard Webhooks specification's published example,
 * GitHub's documented example ("Hello, World!" with "It's a Secret to
 * Everybody"), kakao-relay's own test body, and sha1/sha512 values
 * produced by `openssl dgst -hmac` (the commands are next to each
 * constant). Other signatures are computed here with EVP_Q_mac so a test
 * can sign exactly the content it needs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "auth/sig.h"
#include "core/buf.h"

/* Standard Webhooks specification test vector */
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define STD_KEY_B64 "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define STD_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define STD_TS "1614265330"
#define STD_NOW 1614265330
#define STD_BODY "{\"test\": 2432232314}"
#define STD_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

/* echo -n 'Hello, World!' | openssl dgst -sha256 -hmac "It's a Secret to Everybody" */
#define GH_SECRET "It's a Secret to Everybody"
#define GH_BODY "Hello, World!"
#define GH_HEX "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
/* echo -n 'Hello, World!' | openssl dgst -sha1 -hmac "It's a Secret to Everybody" */
#define GH_SHA1_HEX "01dc10d0c83e72ed246219cdd91669667fe2ca59"
/* echo -n 'Hello, World!' | openssl dgst -sha512 -hmac "It's a Secret to Everybody" -binary | base64 -w0 */
#define GH_SHA512_B64 "Ee01WmF+mBNOhCASp5RMz1nBAlbLGCNXvX46QgE/8Hw3b4wUz1zBkj2iC1HWQlay+4678QCqZ6YTJvYf6oERvA=="

/* kakao-relay internal/middleware/kakao_test.go: secret and body;
 * echo -n '{"key":"value"}' | openssl dgst -sha256 -hmac test-secret */
#define KAKAO_SECRET "test-secret"
#define KAKAO_BODY "{\"key\":\"value\"}"
#define KAKAO_HEX "0aef8db1c2e5071a048fbac550e773f28c5ac19058f1724f9ec2bc3ea81b5de7"

/* ---- helpers ----------------------------------------------------------- */

typedef struct hdrs {
    const char *name[8];
    const char *value[8];
    size_t n;
    int lookups;
} hdrs_t;

static const char *lookup(void *ctx, const char *name, size_t *len)
{
    hdrs_t *h = ctx;
    size_t i;

    h->lookups++;
    for (i = 0; i < h->n; i++)
        if (strcasecmp(h->name[i], name) == 0) {
            *len = strlen(h->value[i]);
            return h->value[i];
        }
    return NULL;
}

static void hset(hdrs_t *h, const char *name, const char *value)
{
    assert_true(h->n < 8);
    h->name[h->n] = name;
    h->value[h->n] = value;
    h->n++;
}

static sig_cfg_t *cfg_ok(const char *kind, const char *secret,
                         const sig_options_t *o)
{
    const char *err = NULL;
    sig_cfg_t *c = sig_cfg_parse(kind, secret, o, &err);

    if (!c)
        fail_msg("sig_cfg_parse(%s): %s", kind, err);
    return c;
}

/* The parse error for (kind, secret, o); fails the test if it parses. */
static const char *cfg_err(const char *kind, const char *secret,
                           const sig_options_t *o)
{
    const char *err = NULL;
    sig_cfg_t *c = sig_cfg_parse(kind, secret, o, &err);

    if (c)
        fail_msg("sig_cfg_parse(%s) accepted", kind ? kind : "NULL");
    assert_non_null(err);
    if (secret && strlen(secret) >= 10)     /* short ones are common words */
        assert_null(strstr(err, secret));
    return err;
}

/* One header, one verification. */
static sig_result_t check1(const sig_cfg_t *c, const char *name,
                           const char *value, const char *body)
{
    hdrs_t h = { 0 };

    if (value)
        hset(&h, name, value);
    return sig_verify(c, lookup, &h, body, strlen(body), 0, NULL);
}

static sig_result_t check_std(const sig_cfg_t *c, const char *id,
                              const char *ts, const char *sig,
                              const char *body, int64_t now, sig_info_t *info)
{
    hdrs_t h = { 0 };

    if (id)
        hset(&h, "webhook-id", id);
    if (ts)
        hset(&h, "webhook-timestamp", ts);
    if (sig)
        hset(&h, "webhook-signature", sig);
    return sig_verify(c, lookup, &h, body, strlen(body), now, info);
}

static size_t std_key(unsigned char key[24])
{
    unsigned char raw[32];

    assert_int_equal(EVP_DecodeBlock(raw, (const unsigned char *)STD_KEY_B64,
                                     32), 24);
    memcpy(key, raw, 24);
    return 24;
}

/* "v1," + base64 HMAC-SHA256(key, id.ts.body), into a new string. */
static char *std_sign_n(const unsigned char *key, size_t klen, const char *id,
                        const char *ts, const void *body, size_t len)
{
    unsigned char mac[32];
    size_t mlen;
    buf_t content, out;
    char b64[64];

    buf_init(&content, 1 << 16);
    assert_int_equal(buf_printf(&content, "%s.%s.", id, ts), 0);
    assert_int_equal(buf_append(&content, body, len), 0);
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen,
                              (unsigned char *)content.data, content.len, mac,
                              sizeof(mac), &mlen));
    EVP_EncodeBlock((unsigned char *)b64, mac, (int)mlen);
    buf_init(&out, 128);
    assert_int_equal(buf_printf(&out, "v1,%s", b64), 0);
    buf_free(&content);
    return buf_steal(&out, NULL);
}

static char *std_sign(const unsigned char *key, size_t klen, const char *id,
                      const char *ts, const char *body)
{
    return std_sign_n(key, klen, id, ts, body, strlen(body));
}

/* ---- standard --------------------------------------------------------- */

static void test_std_spec_vector(void **state)
{
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    sig_info_t info;

    assert_int_equal(sig_cfg_kind(c), SIG_KIND_STANDARD);
    assert_int_equal(check_std(c, STD_ID, STD_TS, STD_SIG, STD_BODY, STD_NOW,
                               &info), SIG_OK);
    assert_string_equal(info.id, STD_ID);
    assert_int_equal(info.id_len, strlen(STD_ID));
    assert_int_equal(info.timestamp, STD_NOW);
    sig_cfg_free(c);
}

static void test_std_multiple_signatures(void **state)
{
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    static const char *lists[] = {
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " STD_SIG,
        STD_SIG " v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "v1a,abc  v2,xyz   " STD_SIG "  ",
        "v1,not-base64!! " STD_SIG,
    };
    size_t i;

    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        if (check_std(c, STD_ID, STD_TS, lists[i], STD_BODY, STD_NOW, NULL) !=
            SIG_OK)
            fail_msg("list \"%s\" refused", lists[i]);
    sig_cfg_free(c);
}

static void test_std_mismatch(void **state)
{
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    char flipped[] = STD_SIG;
    sig_info_t info;

    /* 'g' -> 'h' flips the lowest bit of the first sextet */
    flipped[3] = 'h';
    assert_int_equal(check_std(c, STD_ID, STD_TS, flipped, STD_BODY, STD_NOW,
                               &info), SIG_EMISMATCH);
    assert_int_equal(info.id_len, 0);
    assert_int_equal(check_std(c, STD_ID, STD_TS, STD_SIG,
                               "{\"test\": 2432232315}", STD_NOW, NULL),
                     SIG_EMISMATCH);
    assert_int_equal(check_std(c, "msg_other", STD_TS, STD_SIG, STD_BODY,
                               STD_NOW, NULL), SIG_EMISMATCH);
    assert_int_equal(check_std(c, STD_ID, "1614265331", STD_SIG, STD_BODY,
                               STD_NOW, NULL), SIG_EMISMATCH);
    assert_int_equal(check_std(c, STD_ID, STD_TS,
                               "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "
                               "v1,AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                               STD_BODY, STD_NOW, NULL), SIG_EMISMATCH);
    sig_cfg_free(c);
}

static void test_std_malformed_signature(void **state)
{
    static const char *bad[] = {
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",         /* no v1, */
        "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",      /* other version */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",       /* unpadded */
        "v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=",      /* base64url */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=",      /* spare bits */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1A==",      /* 31 bytes */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=AAAA",  /* 35 bytes */
        "v1,",
        "v1",
        "v1,====",
        ",",
    };
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (check_std(c, STD_ID, STD_TS, bad[i], STD_BODY, STD_NOW, NULL) !=
            SIG_EMALFORMED)
            fail_msg("\"%s\" not refused as malformed", bad[i]);
    sig_cfg_free(c);
}

static void test_std_timestamp_window(void **state)
{
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    sig_options_t o = { .tolerance_s = 10 };
    sig_cfg_t *tight = cfg_ok("standard", STD_SECRET, &o);

    assert_int_equal(check_std(c, STD_ID, STD_TS, STD_SIG, STD_BODY,
                               STD_NOW + 300, NULL), SIG_OK);
    assert_int_equal(check_std(c, STD_ID, STD_TS, STD_SIG, STD_BODY,
                               STD_NOW + 301, NULL), SIG_ESTALE);
    assert_int_equal(check_std(c, STD_ID, STD_TS, STD_SIG, STD_BODY,
                               STD_NOW - 300, NULL), SIG_OK);
    assert_int_equal(check_std(c, STD_ID, STD_TS, STD_SIG, STD_BODY,
                               STD_NOW - 301, NULL), SIG_ESTALE);
    /* a stale timestamp is reported even with a wrong signature */
    assert_int_equal(check_std(c, STD_ID, "1", STD_SIG, STD_BODY, STD_NOW,
                               NULL), SIG_ESTALE);
    assert_int_equal(check_std(tight, STD_ID, STD_TS, STD_SIG, STD_BODY,
                               STD_NOW + 10, NULL), SIG_OK);
    assert_int_equal(check_std(tight, STD_ID, STD_TS, STD_SIG, STD_BODY,
                               STD_NOW + 11, NULL), SIG_ESTALE);
    assert_int_equal(check_std(tight, STD_ID, STD_TS, STD_SIG, STD_BODY,
                               STD_NOW - 11, NULL), SIG_ESTALE);
    sig_cfg_free(c);
    sig_cfg_free(tight);
}

static void test_std_bad_timestamp(void **state)
{
    static const char *bad[] = {
        "abc", "-1614265330", "+1614265330", "1614265330.0", "1614265330s",
        "0x60375a32", "1614 265330", "9999999999999999", "1e9",
    };
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (check_std(c, STD_ID, bad[i], STD_SIG, STD_BODY, STD_NOW, NULL) !=
            SIG_EMALFORMED)
            fail_msg("timestamp \"%s\" not refused as malformed", bad[i]);
    sig_cfg_free(c);
}

static void test_std_missing_headers(void **state)
{
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);

    assert_int_equal(check_std(c, NULL, STD_TS, STD_SIG, STD_BODY, STD_NOW,
                               NULL), SIG_EMISSING);
    assert_int_equal(check_std(c, STD_ID, NULL, STD_SIG, STD_BODY, STD_NOW,
                               NULL), SIG_EMISSING);
    assert_int_equal(check_std(c, STD_ID, STD_TS, NULL, STD_BODY, STD_NOW,
                               NULL), SIG_EMISSING);
    assert_int_equal(check_std(c, STD_ID, STD_TS, "  ", STD_BODY, STD_NOW,
                               NULL), SIG_EMISSING);
    assert_int_equal(check_std(c, "", STD_TS, STD_SIG, STD_BODY, STD_NOW,
                               NULL), SIG_EMISSING);
    sig_cfg_free(c);
}

static void test_std_id_rules(void **state)
{
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    unsigned char key[24];
    size_t klen = std_key(key);
    char id[SIG_ID_MAX + 2], *sig;
    sig_info_t info;

    memset(id, 'i', sizeof(id) - 1);
    id[SIG_ID_MAX] = 0;
    sig = std_sign(key, klen, id, STD_TS, STD_BODY);
    assert_int_equal(check_std(c, id, STD_TS, sig, STD_BODY, STD_NOW, &info),
                     SIG_OK);
    assert_int_equal(info.id_len, SIG_ID_MAX);
    assert_int_equal(strlen(info.id), SIG_ID_MAX);
    free(sig);
    id[SIG_ID_MAX] = 'i';
    id[SIG_ID_MAX + 1] = 0;
    sig = std_sign(key, klen, id, STD_TS, STD_BODY);
    assert_int_equal(check_std(c, id, STD_TS, sig, STD_BODY, STD_NOW, NULL),
                     SIG_EMALFORMED);
    free(sig);
    sig = std_sign(key, klen, "msg 1", STD_TS, STD_BODY);
    assert_int_equal(check_std(c, "msg 1", STD_TS, sig, STD_BODY, STD_NOW,
                               NULL), SIG_EMALFORMED);
    free(sig);
    sig = std_sign(key, klen, "msg\x7f", STD_TS, STD_BODY);
    assert_int_equal(check_std(c, "msg\x7f", STD_TS, sig, STD_BODY, STD_NOW,
                               NULL), SIG_EMALFORMED);
    free(sig);
    sig_cfg_free(c);
}

static void test_std_entry_limit(void **state)
{
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    buf_t b;
    int i;

    buf_init(&b, 4096);
    for (i = 0; i < SIG_MAX_ENTRIES - 1; i++)
        buf_append_str(&b, "v2,x ");
    buf_append_str(&b, STD_SIG);
    assert_int_equal(check_std(c, STD_ID, STD_TS, b.data, STD_BODY, STD_NOW,
                               NULL), SIG_OK);
    buf_reset(&b);
    for (i = 0; i < SIG_MAX_ENTRIES; i++)
        buf_append_str(&b, "v2,x ");
    buf_append_str(&b, STD_SIG);
    assert_int_equal(check_std(c, STD_ID, STD_TS, b.data, STD_BODY, STD_NOW,
                               NULL), SIG_EMALFORMED);
    buf_free(&b);
    sig_cfg_free(c);
}

static void test_std_padded_secret_and_empty_body(void **state)
{
    /* 32 key bytes: base64 with one '=' of padding */
    unsigned char key[32];
    char secret[64] = "whsec_", *sig;
    sig_cfg_t *c;

    memset(key, 0xa5, sizeof(key));
    EVP_EncodeBlock((unsigned char *)secret + 6, key, sizeof(key));
    assert_int_equal(secret[strlen(secret) - 1], '=');
    c = cfg_ok("standard", secret, NULL);
    sig = std_sign(key, sizeof(key), "id1", "1700000000", "");
    assert_int_equal(check_std(c, "id1", "1700000000", sig, "", 1700000000,
                               NULL), SIG_OK);
    free(sig);
    sig_cfg_free(c);
}

/* The body is bytes, not a string: a NUL inside is signed like any byte. */
static void test_std_binary_body(void **state)
{
    static const char body[] = "{\"a\":1}\0tail";
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    unsigned char key[24];
    size_t klen = std_key(key);
    char *sig = std_sign_n(key, klen, "id", STD_TS, body, sizeof(body) - 1);
    hdrs_t h = { 0 };

    hset(&h, "Webhook-Id", "id");
    hset(&h, "Webhook-Timestamp", STD_TS);
    hset(&h, "Webhook-Signature", sig);
    assert_int_equal(sig_verify(c, lookup, &h, body, sizeof(body) - 1, STD_NOW,
                                NULL), SIG_OK);
    assert_int_equal(sig_verify(c, lookup, &h, body, strlen(body), STD_NOW,
                                NULL), SIG_EMISMATCH);
    free(sig);
    sig_cfg_free(c);
}

static void test_std_cfg_errors(void **state)
{
    sig_options_t neg = { .tolerance_s = -1 }, huge = { .tolerance_s = 86401 };

    cfg_err("standard", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", NULL);
    cfg_err("standard", "whsec_", NULL);
    cfg_err("standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", NULL);
    cfg_err("standard", "whsec_MfKQ9r8G*YqrTwjUPD8ILPZIo2LaLaSw", NULL);
    cfg_err("standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", NULL);
    cfg_err("standard", "whsec_c2hvcnRrZXk=", NULL);     /* 8 bytes */
    cfg_err("standard", "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", NULL);
    cfg_err("standard", NULL, NULL);
    cfg_err("standard", STD_SECRET, &neg);
    cfg_err("standard", STD_SECRET, &huge);
}

/* ---- github -------------------------------------------------------------- */

static void test_github_docs_example(void **state)
{
    sig_cfg_t *c = cfg_ok("github", GH_SECRET, NULL);
    char upper[] = "sha256=" GH_HEX;
    size_t i;

    assert_int_equal(check1(c, "X-Hub-Signature-256", "sha256=" GH_HEX,
                            GH_BODY), SIG_OK);
    assert_int_equal(check1(c, "x-hub-signature-256", " sha256=" GH_HEX "\t",
                            GH_BODY), SIG_OK);
    for (i = 7; upper[i]; i++)
        if (upper[i] >= 'a' && upper[i] <= 'f')
            upper[i] = (char)(upper[i] - 32);
    assert_int_equal(check1(c, "X-Hub-Signature-256", upper, GH_BODY), SIG_OK);
    sig_cfg_free(c);
}

static void test_github_failures(void **state)
{
    static const struct {
        const char *value;
        sig_result_t want;
    } rows[] = {
        { NULL, SIG_EMISSING },
        { "", SIG_EMISSING },
        { GH_HEX, SIG_EMALFORMED },                         /* no prefix */
        { "sha1=" GH_HEX, SIG_EMALFORMED },
        { "SHA256=" GH_HEX, SIG_EMALFORMED },
        { "sha256 =" GH_HEX, SIG_EMALFORMED },
        { "sha256=" GH_SHA1_HEX, SIG_EMALFORMED },          /* 20 bytes */
        { "sha256=" GH_HEX "0", SIG_EMALFORMED },           /* odd length */
        { "sha256=" GH_HEX "00", SIG_EMALFORMED },          /* 33 bytes */
        { "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g",
          SIG_EMALFORMED },                                 /* not hex */
        { "sha256=", SIG_EMALFORMED },
        { "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e16",
          SIG_EMISMATCH },                                  /* last bit */
        { "sha256=f57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
          SIG_EMISMATCH },                                  /* first bit */
    };
    sig_cfg_t *c = cfg_ok("github", GH_SECRET, NULL);
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        sig_result_t got = check1(c, "X-Hub-Signature-256", rows[i].value,
                                  GH_BODY);

        if (got != rows[i].want)
            fail_msg("\"%s\": %s, want %s", rows[i].value ? rows[i].value : "(none)",
                     sig_strerror(got), sig_strerror(rows[i].want));
    }
    assert_int_equal(check1(c, "X-Hub-Signature-256", "sha256=" GH_HEX,
                            "Hello, World?"), SIG_EMISMATCH);
    /* the sha1 header of old GitHub deliveries is not looked at */
    assert_int_equal(check1(c, "X-Hub-Signature", "sha1=" GH_SHA1_HEX, GH_BODY),
                     SIG_EMISSING);
    sig_cfg_free(c);
}

static void test_github_empty_body(void **state)
{
    /* echo -n '' | openssl dgst -sha256 -hmac "It's a Secret to Everybody" */
    static const char hex[] =
        "sha256=66a0c074deaa0f489ead6537e0d32f9a344b90bbeda705b6ed45ecd3b413fb40";
    sig_cfg_t *c = cfg_ok("github", GH_SECRET, NULL);

    assert_int_equal(check1(c, "X-Hub-Signature-256", hex, ""), SIG_OK);
    assert_int_equal(check1(c, "X-Hub-Signature-256", hex, " "), SIG_EMISMATCH);
    sig_cfg_free(c);
}

/* ---- hmac ----------------------------------------------------------------- */

static void test_hmac_sha1_hex(void **state)
{
    sig_options_t o = { .header = "X-Signature", .algorithm = "sha1" };
    sig_cfg_t *c = cfg_ok("hmac", GH_SECRET, &o);

    assert_int_equal(check1(c, "x-signature", GH_SHA1_HEX, GH_BODY), SIG_OK);
    assert_int_equal(check1(c, "X-Signature", GH_HEX, GH_BODY), SIG_EMALFORMED);
    assert_int_equal(check1(c, "X-Hub-Signature-256", GH_SHA1_HEX, GH_BODY),
                     SIG_EMISSING);
    sig_cfg_free(c);
}

static void test_hmac_sha512_base64_prefix(void **state)
{
    sig_options_t o = { .header = "X-Sig", .algorithm = "sha512",
                        .encoding = "base64", .prefix = "v0=" };
    sig_cfg_t *c = cfg_ok("hmac", GH_SECRET, &o);
    char flipped[] = "v0=" GH_SHA512_B64;

    assert_int_equal(check1(c, "X-Sig", "v0=" GH_SHA512_B64, GH_BODY), SIG_OK);
    assert_int_equal(check1(c, "X-Sig", GH_SHA512_B64, GH_BODY),
                     SIG_EMALFORMED);
    assert_int_equal(check1(c, "X-Sig", "v0=Ee01WmF+mBNOhCASp5RMz1nBAlbLGCNXvX46QgE/8Hw3b4wUz1zBkj2iC1HWQlay+4678QCqZ6YTJvYf6oERvA",
                            GH_BODY), SIG_EMALFORMED);          /* unpadded */
    assert_int_equal(check1(c, "X-Sig", "v0=" GH_HEX, GH_BODY), SIG_EMALFORMED);
    flipped[3] = 'F';       /* 'E' -> 'F' */
    assert_int_equal(check1(c, "X-Sig", flipped, GH_BODY), SIG_EMISMATCH);
    sig_cfg_free(c);
}

static void test_hmac_sha256_base64_default_prefixless(void **state)
{
    /* printf '%s' GH_HEX | xxd -r -p | base64 */
    sig_options_t o = { .header = "X-Shopify-Hmac-Sha256", .encoding = "base64" };
    sig_cfg_t *c = cfg_ok("hmac", GH_SECRET, &o);

    assert_int_equal(check1(c, "X-Shopify-Hmac-Sha256",
                            "dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc=",
                            GH_BODY), SIG_OK);
    assert_int_equal(check1(c, "X-Shopify-Hmac-Sha256", GH_HEX, GH_BODY),
                     SIG_EMALFORMED);
    sig_cfg_free(c);
}

static void test_hmac_cfg_errors(void **state)
{
    char longname[SIG_HEADER_MAX + 2], longprefix[SIG_PREFIX_MAX + 2];
    sig_options_t o = { 0 };

    memset(longname, 'h', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    memset(longprefix, 'p', sizeof(longprefix) - 1);
    longprefix[sizeof(longprefix) - 1] = 0;
    cfg_err("hmac", "s3cret", NULL);                       /* no header */
    o.header = "X Sig";
    cfg_err("hmac", "s3cret", &o);
    o.header = "X-Sig:";
    cfg_err("hmac", "s3cret", &o);
    o.header = longname;
    cfg_err("hmac", "s3cret", &o);
    o.header = "X-Sig";
    o.algorithm = "md5";
    cfg_err("hmac", "s3cret", &o);
    o.algorithm = "SHA256";
    cfg_err("hmac", "s3cret", &o);
    o.algorithm = NULL;
    o.encoding = "base32";
    cfg_err("hmac", "s3cret", &o);
    o.encoding = NULL;
    o.prefix = longprefix;
    cfg_err("hmac", "s3cret", &o);
    o.prefix = "sha 256=";
    cfg_err("hmac", "s3cret", &o);
    o.prefix = NULL;
    o.tolerance_s = 5;
    cfg_err("hmac", "s3cret", &o);
    o.tolerance_s = 0;
    cfg_err("hmac", "", &o);
    longname[SIG_HEADER_MAX] = 0;                          /* 64: allowed */
    o.header = longname;
    sig_cfg_free(cfg_ok("hmac", "s3cret", &o));
}

/* ---- kakao, none, common ---------------------------------------------- */

static void test_kakao(void **state)
{
    sig_cfg_t *c = cfg_ok("kakao", KAKAO_SECRET, NULL);
    char upper[] = KAKAO_HEX;
    size_t i;

    assert_int_equal(sig_cfg_kind(c), SIG_KIND_KAKAO);
    assert_int_equal(check1(c, "X-Kakao-Signature", KAKAO_HEX, KAKAO_BODY),
                     SIG_OK);
    for (i = 0; upper[i]; i++)
        if (upper[i] >= 'a' && upper[i] <= 'f')
            upper[i] = (char)(upper[i] - 32);
    assert_int_equal(check1(c, "X-Kakao-Signature", upper, KAKAO_BODY), SIG_OK);
    assert_int_equal(check1(c, "X-Kakao-Signature", NULL, KAKAO_BODY),
                     SIG_EMISSING);
    assert_int_equal(check1(c, "X-Kakao-Signature", "invalid-signature",
                            KAKAO_BODY), SIG_EMALFORMED);
    assert_int_equal(check1(c, "X-Kakao-Signature", "sha256=" KAKAO_HEX,
                            KAKAO_BODY), SIG_EMALFORMED);
    /* base64 of the same MAC: kakao-relay only ever sends hex */
    assert_int_equal(check1(c, "X-Kakao-Signature",
                            "Cu+NscLlBxoEj7rFUOdz8oxawZBY8XJPnsK8PqgbXec=",
                            KAKAO_BODY), SIG_EMALFORMED);
    assert_int_equal(check1(c, "X-Kakao-Signature", KAKAO_HEX, "{invalid json}"),
                     SIG_EMISMATCH);
    cfg_err("kakao", "", NULL);
    cfg_err("kakao", NULL, NULL);
    sig_cfg_free(c);
}

static void test_none(void **state)
{
    sig_cfg_t *c = cfg_ok("none", NULL, NULL);
    sig_cfg_t *c2 = cfg_ok("none", "", NULL);
    hdrs_t h = { 0 };

    assert_int_equal(sig_cfg_kind(c), SIG_KIND_NONE);
    assert_int_equal(sig_verify(c, lookup, &h, "x", 1, 0, NULL), SIG_OK);
    assert_int_equal(h.lookups, 0);
    assert_int_equal(sig_verify(c2, lookup, &h, NULL, 0, 0, NULL), SIG_OK);
    cfg_err("none", "secret", NULL);
    sig_cfg_free(c);
    sig_cfg_free(c2);
}

static void test_cfg_common_errors(void **state)
{
    char *big = malloc(SIG_SECRET_MAX + 2);
    sig_options_t o = { .header = "X-Sig" }, t = { .tolerance_s = 10 };
    const char *err;

    memset(big, 's', SIG_SECRET_MAX + 1);
    big[SIG_SECRET_MAX + 1] = 0;
    err = cfg_err("bitbucket", "s", NULL);
    assert_non_null(strstr(err, "unknown kind"));
    cfg_err("GitHub", "s", NULL);
    cfg_err(NULL, "s", NULL);
    cfg_err("github", "", NULL);
    cfg_err("github", NULL, NULL);
    cfg_err("github", big, NULL);
    cfg_err("github", "s", &o);                      /* header is hmac's */
    cfg_err("kakao", "s", &t);                       /* tolerance is standard's */
    assert_null(sig_cfg_parse("github", "", NULL, NULL));  /* err optional */
    big[SIG_SECRET_MAX] = 0;
    sig_cfg_free(cfg_ok("github", big, NULL));
    sig_cfg_free(NULL);
    free(big);
}

static void test_errors_never_echo_secret(void **state)
{
    /* secrets that would be recognisable if an error quoted them */
    cfg_err("standard", "whsec_SECRETSECRET*SECRET", NULL);
    cfg_err("standard", "SECRETSECRETSECRET", NULL);
    cfg_err("none", "SECRETSECRETSECRET", NULL);
    cfg_err("hmac", "SECRETSECRETSECRET", NULL);
}

static void test_error_queue_and_info(void **state)
{
    sig_cfg_t *c = cfg_ok("standard", STD_SECRET, NULL);
    sig_info_t info;

    ERR_clear_error();
    memset(&info, 0x5a, sizeof(info));
    assert_int_equal(check_std(c, STD_ID, STD_TS, "v1,@@@@", STD_BODY, STD_NOW,
                               &info), SIG_EMALFORMED);
    assert_int_equal(info.id_len, 0);
    assert_int_equal(info.id[0], 0);
    assert_int_equal(info.timestamp, 0);
    cfg_err("standard", "whsec_!!!!", NULL);
    assert_int_equal(ERR_peek_error(), 0);
    sig_cfg_free(c);
}

static void test_names(void **state)
{
    sig_result_t r, q;

    for (r = SIG_OK; r <= SIG_ENOMEM; r++)
        for (q = SIG_OK; q < r; q++)
            assert_string_not_equal(sig_strerror(r), sig_strerror(q));
    assert_string_equal(sig_strerror((sig_result_t)77), "unknown error");
    assert_string_equal(sig_kind_name(SIG_KIND_STANDARD), "standard");
    assert_string_equal(sig_kind_name(SIG_KIND_KAKAO), "kakao");
    assert_string_equal(sig_kind_name((sig_kind_t)9), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_std_spec_vector),
        cmocka_unit_test(test_std_multiple_signatures),
        cmocka_unit_test(test_std_mismatch),
        cmocka_unit_test(test_std_malformed_signature),
        cmocka_unit_test(test_std_timestamp_window),
        cmocka_unit_test(test_std_bad_timestamp),
        cmocka_unit_test(test_std_missing_headers),
        cmocka_unit_test(test_std_id_rules),
        cmocka_unit_test(test_std_entry_limit),
        cmocka_unit_test(test_std_padded_secret_and_empty_body),
        cmocka_unit_test(test_std_binary_body),
        cmocka_unit_test(test_std_cfg_errors),
        cmocka_unit_test(test_github_docs_example),
        cmocka_unit_test(test_github_failures),
        cmocka_unit_test(test_github_empty_body),
        cmocka_unit_test(test_hmac_sha1_hex),
        cmocka_unit_test(test_hmac_sha512_base64_prefix),
        cmocka_unit_test(test_hmac_sha256_base64_default_prefixless),
        cmocka_unit_test(test_hmac_cfg_errors),
        cmocka_unit_test(test_kakao),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_cfg_common_errors),
        cmocka_unit_test(test_errors_never_echo_secret),
        cmocka_unit_test(test_error_queue_and_info),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
