/*
 * test_jwt.c - JWT key sets, verification and signing.
 *
 * Keys are generated once per run (EVP_PKEY_Q_keygen), tokens are minted
 * by jwt_sign_* or, for headers and payloads the signer would never write
 * (alg none, crit, duplicate keys, 1e400), by tok_hs(), which signs any
 * header and payload text with HMAC so that each refusal is caused by the
 * rule under test and not by a broken signature. The one fixed vector is
 * RFC 7515 appendix A.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwt.h"
#include "core/buf.h"

#define NOW 1700000000
#define SECRET "0123456789abcdef0123456789abcdef"   /* 32 bytes */
#define SECRET_LEN 32

static EVP_PKEY *g_rsa, *g_rsa2, *g_ec, *g_ec2;

/* ---- helpers ----------------------------------------------------------- */

static char *b64url(const void *p, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1);
    int len, i, o = 0;

    assert_non_null(out);
    len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    for (i = 0; i < len; i++) {
        char c = out[i];

        if (c == '=')
            break;
        out[o++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[o] = 0;
    return out;
}

static char *b64url_str(const char *s)
{
    return b64url(s, strlen(s));
}

/* "a.b.c" (each part may be empty). */
static char *join3(const char *a, const char *b, const char *c)
{
    buf_t t;

    buf_init(&t, 1 << 20);
    assert_int_equal(buf_printf(&t, "%s.%s.%s", a, b, c), 0);
    return buf_steal(&t, NULL);
}

/* A token of any header and payload text, HMAC-SHA256-signed with key. */
static char *tok_hs(const char *hdr, const char *payload, const void *key,
                    size_t klen)
{
    char *h = b64url_str(hdr), *p = b64url_str(payload), *si, *s, *tok;
    unsigned char mac[32];
    size_t mlen;

    si = join3(h, p, "");
    si[strlen(si) - 1] = 0;             /* drop the trailing dot */
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen,
                              (unsigned char *)si, strlen(si), mac,
                              sizeof(mac), &mlen));
    s = b64url(mac, mlen);
    tok = join3(h, p, s);
    free(h);
    free(p);
    free(si);
    free(s);
    return tok;
}

static char *tok_hs_secret(const char *hdr, const char *payload)
{
    return tok_hs(hdr, payload, SECRET, SECRET_LEN);
}

/* tok with segment idx (0..2) replaced by seg. */
static char *swap_seg(const char *tok, int idx, const char *seg)
{
    char *copy = strdup(tok), *parts[3], *save = NULL, *out;
    int i;

    assert_non_null(copy);
    parts[0] = copy;
    for (i = 1; i < 3; i++) {
        save = strchr(parts[i - 1], '.');
        assert_non_null(save);
        *save = 0;
        parts[i] = save + 1;
    }
    parts[idx] = (char *)seg;
    out = join3(parts[0], parts[1], parts[2]);
    free(copy);
    return out;
}

static json_t *claims_exp(json_int_t exp)
{
    json_t *c = json_pack("{s:s, s:I}", "sub", "alice", "exp", exp);

    assert_non_null(c);
    return c;
}

static jwt_err_t verify_at(const jwt_keyset_t *ks, const char *tok,
                           int64_t now)
{
    jwt_opts_t o = { .now = now };

    return jwt_verify(ks, tok, strlen(tok), &o, NULL);
}

static jwt_err_t verify_opts(const jwt_keyset_t *ks, const char *tok,
                             const jwt_opts_t *o)
{
    return jwt_verify(ks, tok, strlen(tok), o, NULL);
}

static jwt_keyset_t *ks_secret(const char *kid)
{
    jwt_keyset_t *ks = jwt_keyset_new();

    assert_non_null(ks);
    assert_int_equal(jwt_keyset_add_secret(ks, kid, SECRET, SECRET_LEN, NULL),
                     JWT_OK);
    return ks;
}

static char *pem_pub(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *out;
    long n;

    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &p);
    out = strndup(p, (size_t)n);
    assert_non_null(out);
    BIO_free(b);
    return out;
}

static char *pem_priv(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *out;
    long n;

    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL,
                                              NULL), 1);
    n = BIO_get_mem_data(b, &p);
    out = strndup(p, (size_t)n);
    BIO_free(b);
    return out;
}

static jwt_err_t ks_add_pem(jwt_keyset_t *ks, const char *kid, EVP_PKEY *k)
{
    char *pem = pem_pub(k);
    jwt_err_t rc = jwt_keyset_add_pem(ks, kid, pem, strlen(pem), NULL);

    free(pem);
    return rc;
}

static char *bn_b64url(const BIGNUM *bn)
{
    unsigned char b[1024];
    int n = BN_bn2bin(bn, b);

    return b64url(b, (size_t)n);
}

/* The public JWK of k (RSA or P-256) with kid, as a new object. */
static json_t *jwk_of(EVP_PKEY *k, const char *kid)
{
    json_t *j;

    if (EVP_PKEY_is_a(k, "RSA")) {
        BIGNUM *n = NULL, *e = NULL;
        char *sn, *se;

        assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n), 1);
        assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e), 1);
        sn = bn_b64url(n);
        se = bn_b64url(e);
        j = json_pack("{s:s, s:s, s:s}", "kty", "RSA", "n", sn, "e", se);
        free(sn);
        free(se);
        BN_free(n);
        BN_free(e);
    } else {
        unsigned char pt[65];
        size_t len;
        char *x, *y;

        assert_int_equal(EVP_PKEY_get_octet_string_param(
                             k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                             sizeof(pt), &len), 1);
        assert_int_equal(len, 65);
        x = b64url(pt + 1, 32);
        y = b64url(pt + 33, 32);
        j = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256",
                      "x", x, "y", y);
        free(x);
        free(y);
    }
    assert_non_null(j);
    if (kid)
        json_object_set_new(j, "kid", json_string(kid));
    return j;
}

/* Loads {"keys": keys} (keys is stolen) into ks. */
static jwt_err_t ks_add_jwks(jwt_keyset_t *ks, json_t *keys, size_t *added)
{
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, JSON_COMPACT);
    jwt_err_t rc;

    assert_non_null(text);
    rc = jwt_keyset_add_jwks(ks, text, strlen(text), added, NULL);
    free(text);
    json_decref(doc);
    return rc;
}

static jwt_err_t jwks_text(const char *text)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    const char *why = NULL;
    jwt_err_t rc = jwt_keyset_add_jwks(ks, text, strlen(text), NULL, &why);

    if (rc != JWT_OK)
        assert_non_null(why);
    assert_int_equal(jwt_keyset_count(ks), 0 + (rc == JWT_OK));
    jwt_keyset_free(ks);
    return rc;
}

/* Loads one JWK (stolen) into a fresh key set; returns the outcome. */
static jwt_err_t jwk_one(json_t *jwk)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    jwt_err_t rc = ks_add_jwks(ks, json_pack("[o]", jwk), NULL);

    jwt_keyset_free(ks);
    return rc;
}

static int group_setup(void **state)
{
    g_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g_rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    g_ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return g_rsa && g_rsa2 && g_ec && g_ec2 ? 0 : -1;
}

static int group_teardown(void **state)
{
    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_rsa2);
    EVP_PKEY_free(g_ec);
    EVP_PKEY_free(g_ec2);
    return 0;
}

/* ---- valid tokens ------------------------------------------------------ */

static void test_rfc7515_a1(void **state)
{
    static const char tok[] =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
        "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    static const unsigned char key[] = {
        0x03, 0x23, 0x35, 0x4b, 0x2b, 0x0f, 0xa5, 0xbc, 0x83, 0x7e, 0x06,
        0x65, 0x77, 0x7b, 0xa6, 0x8f, 0x5a, 0xb3, 0x28, 0xe6, 0xf0, 0x54,
        0xc9, 0x28, 0xa9, 0x0f, 0x84, 0xb2, 0xd2, 0x50, 0x2e, 0xbf, 0xd3,
        0xfb, 0x5a, 0x92, 0xd2, 0x06, 0x47, 0xef, 0x96, 0x8a, 0xb4, 0xc3,
        0x77, 0x62, 0x3d, 0x22, 0x3d, 0x2e, 0x21, 0x72, 0x05, 0x2e, 0x4f,
        0x08, 0xc0, 0xcd, 0x9a, 0xf5, 0x67, 0xd0, 0x80, 0xa3,
    };
    jwt_keyset_t *ks = jwt_keyset_new();
    jwt_opts_t o = { .now = 1300819000, .issuer = "joe" };
    json_t *claims;

    assert_int_equal(jwt_keyset_add_secret(ks, NULL, key, sizeof(key), NULL),
                     JWT_OK);
    assert_int_equal(jwt_verify(ks, tok, strlen(tok), &o, &claims), JWT_OK);
    assert_non_null(claims);
    assert_string_equal(json_string_value(json_object_get(claims, "iss")),
                        "joe");
    assert_true(json_is_true(
        json_object_get(claims, "http://example.com/is_root")));
    json_decref(claims);
    assert_int_equal(verify_at(ks, tok, 1300819380), JWT_EEXPIRED);
    jwt_keyset_free(ks);
}

static void test_hs256_roundtrip(void **state)
{
    jwt_keyset_t *ks = ks_secret("k1");
    json_t *c = claims_exp(NOW + 60), *got = NULL;
    char *tok = jwt_sign_hs256(SECRET, SECRET_LEN, "k1", c);
    jwt_opts_t o = { .now = NOW, .require_exp = true };

    assert_non_null(tok);
    assert_true(jwt_keyset_has_alg(ks, JWT_HS256));
    assert_false(jwt_keyset_has_alg(ks, JWT_RS256));
    assert_int_equal(jwt_verify(ks, tok, strlen(tok), &o, &got), JWT_OK);
    assert_true(json_equal(got, c));
    json_decref(got);
    free(tok);
    /* without kid: the HS256 key is tried by its pinned algorithm */
    tok = jwt_sign_hs256(SECRET, SECRET_LEN, NULL, c);
    assert_int_equal(verify_at(ks, tok, NOW), JWT_OK);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_rs256_pem_roundtrip(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_rs256(g_rsa, NULL, c);

    assert_int_equal(ks_add_pem(ks, NULL, g_rsa), JWT_OK);
    assert_true(jwt_keyset_has_alg(ks, JWT_RS256));
    assert_non_null(tok);
    assert_int_equal(verify_at(ks, tok, NOW), JWT_OK);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_es256_pem_roundtrip(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_es256(g_ec, "ec1", c);
    const char *sig;

    assert_int_equal(ks_add_pem(ks, "ec1", g_ec), JWT_OK);
    assert_true(jwt_keyset_has_alg(ks, JWT_ES256));
    assert_non_null(tok);
    /* RFC 7518 3.4: the signature is the raw 64-byte r || s, which is
     * 86 base64url characters */
    sig = strrchr(tok, '.') + 1;
    assert_int_equal(strlen(sig), 86);
    assert_int_equal(verify_at(ks, tok, NOW), JWT_OK);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_jwks_rsa_and_ec(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *t1 = jwt_sign_rs256(g_rsa, "r1", c), *t2 = jwt_sign_es256(g_ec, "e1", c);
    json_t *rk = jwk_of(g_rsa, "r1"), *ek = jwk_of(g_ec, "e1");
    size_t added = 0;

    json_object_set_new(rk, "alg", json_string("RS256"));
    json_object_set_new(rk, "use", json_string("sig"));
    json_object_set_new(ek, "alg", json_string("ES256"));
    assert_int_equal(ks_add_jwks(ks, json_pack("[o, o]", rk, ek), &added),
                     JWT_OK);
    assert_int_equal(added, 2);
    assert_int_equal(jwt_keyset_count(ks), 2);
    assert_int_equal(verify_at(ks, t1, NOW), JWT_OK);
    assert_int_equal(verify_at(ks, t2, NOW), JWT_OK);
    free(t1);
    free(t2);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_jwks_rotation(void **state)
{
    jwt_keyset_t *old = jwt_keyset_new(), *cur = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *t_old = jwt_sign_rs256(g_rsa, "2024", c);
    char *t_new = jwt_sign_rs256(g_rsa2, "2025", c);

    assert_int_equal(ks_add_jwks(old, json_pack("[o]", jwk_of(g_rsa, "2024")),
                                 NULL), JWT_OK);
    assert_int_equal(verify_at(old, t_old, NOW), JWT_OK);
    assert_int_equal(verify_at(old, t_new, NOW), JWT_ENOKEY);
    /* the refreshed document dropped 2024 and added 2025 */
    assert_int_equal(ks_add_jwks(cur, json_pack("[o]", jwk_of(g_rsa2, "2025")),
                                 NULL), JWT_OK);
    assert_int_equal(verify_at(cur, t_new, NOW), JWT_OK);
    assert_int_equal(verify_at(cur, t_old, NOW), JWT_ENOKEY);
    free(t_old);
    free(t_new);
    json_decref(c);
    jwt_keyset_free(old);
    jwt_keyset_free(cur);
}

static void test_kidless_tries_pinned_keys(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_es256(g_ec2, NULL, c);
    unsigned char other[SECRET_LEN];

    memset(other, 'x', sizeof(other));
    assert_int_equal(jwt_keyset_add_secret(ks, NULL, other, sizeof(other),
                                           NULL), JWT_OK);
    assert_int_equal(ks_add_pem(ks, "a", g_ec), JWT_OK);
    assert_int_equal(ks_add_pem(ks, "b", g_ec2), JWT_OK);
    assert_int_equal(verify_at(ks, tok, NOW), JWT_OK);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_kidless_tries_at_most_8(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_hs256(SECRET, SECRET_LEN, NULL, c);
    unsigned char k[SECRET_LEN];
    int i;

    for (i = 0; i < JWT_MAX_TRIES; i++) {
        memset(k, 'a' + i, sizeof(k));
        assert_int_equal(jwt_keyset_add_secret(ks, NULL, k, sizeof(k), NULL),
                         JWT_OK);
    }
    assert_int_equal(jwt_keyset_add_secret(ks, NULL, SECRET, SECRET_LEN, NULL),
                     JWT_OK);
    assert_int_equal(verify_at(ks, tok, NOW), JWT_ESIG);    /* 9th untried */
    json_decref(c);
    free(tok);
    jwt_keyset_free(ks);
}

static void test_claims_out(void **state)
{
    jwt_keyset_t *ks = ks_secret(NULL);
    json_t *c = claims_exp(NOW - 1), *got = (json_t *)1;
    char *tok = jwt_sign_hs256(SECRET, SECRET_LEN, NULL, c);
    jwt_opts_t o = { .now = NOW };

    assert_int_equal(jwt_verify(ks, tok, strlen(tok), &o, &got), JWT_EEXPIRED);
    assert_null(got);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

/* ---- algorithm rules ---------------------------------------------------- */

static void test_alg_none(void **state)
{
    jwt_keyset_t *ks = ks_secret("k1");
    char *h = b64url_str("{\"alg\":\"none\"}");
    char *p = b64url_str("{\"sub\":\"root\"}");
    char *t1 = join3(h, p, "");
    char *t2 = tok_hs_secret("{\"alg\":\"none\",\"kid\":\"k1\"}", "{}");
    char *t3 = tok_hs_secret("{\"alg\":\"None\"}", "{}");

    assert_int_equal(verify_at(ks, t1, NOW), JWT_EALG);
    assert_int_equal(verify_at(ks, t2, NOW), JWT_EALG);
    assert_int_equal(verify_at(ks, t3, NOW), JWT_EALG);
    free(h);
    free(p);
    free(t1);
    free(t2);
    free(t3);
    jwt_keyset_free(ks);
}

static void test_alg_unknown(void **state)
{
    static const char *hdrs[] = {
        "{\"alg\":\"hs256\"}", "{\"alg\":\"HS512\"}", "{\"alg\":\"HS256 \"}",
        "{\"alg\":\"\"}", "{\"alg\":\"PS256\"}", "{\"alg\":\"EdDSA\"}",
    };
    jwt_keyset_t *ks = ks_secret(NULL);
    size_t i;

    for (i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        char *t = tok_hs_secret(hdrs[i], "{}");

        if (verify_at(ks, t, NOW) != JWT_EALG)
            fail_msg("%s accepted", hdrs[i]);
        free(t);
    }
    jwt_keyset_free(ks);
}

/* The classic confusion: HMAC with the RSA public key (PEM text) as the
 * secret. It must never verify against a key set holding that RSA key. */
static void test_hs256_against_rsa_keyset(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    char *pem = pem_pub(g_rsa);
    char *t1 = tok_hs("{\"alg\":\"HS256\"}", "{\"sub\":\"root\"}", pem,
                      strlen(pem));
    char *t2 = tok_hs("{\"alg\":\"HS256\",\"kid\":\"r\"}", "{}", pem,
                      strlen(pem));

    assert_int_equal(jwt_keyset_add_pem(ks, "r", pem, strlen(pem), NULL),
                     JWT_OK);
    assert_int_equal(verify_at(ks, t1, NOW), JWT_EALG);
    assert_int_equal(verify_at(ks, t2, NOW), JWT_EALG);
    free(pem);
    free(t1);
    free(t2);
    jwt_keyset_free(ks);
}

static void test_kid_alg_mismatch(void **state)
{
    jwt_keyset_t *ks = ks_secret("hk");
    json_t *c = claims_exp(NOW + 60);
    char *pem = pem_pub(g_rsa);
    /* RS256 header naming the HS key, properly RSA-signed */
    char *t1 = jwt_sign_rs256(g_rsa, "hk", c);
    /* HS256 header naming the RSA key, HMAC'd with the PEM as secret */
    char *t2 = tok_hs("{\"alg\":\"HS256\",\"kid\":\"rk\"}", "{}", pem,
                      strlen(pem));

    assert_int_equal(ks_add_pem(ks, "rk", g_rsa), JWT_OK);
    assert_int_equal(verify_at(ks, t1, NOW), JWT_EALG);
    assert_int_equal(verify_at(ks, t2, NOW), JWT_EALG);
    free(t1);
    free(t2);
    free(pem);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_unknown_kid(void **state)
{
    jwt_keyset_t *ks = ks_secret("k1");
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_hs256(SECRET, SECRET_LEN, "k2", c);

    assert_int_equal(verify_at(ks, tok, NOW), JWT_ENOKEY);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_crit_refused(void **state)
{
    jwt_keyset_t *ks = ks_secret(NULL);
    char *t = tok_hs_secret("{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}",
                            "{}");
    char *t2 = tok_hs_secret("{\"alg\":\"HS256\",\"b64\":false,\"crit\":[\"b64\"]}",
                             "{}");

    assert_int_equal(verify_at(ks, t, NOW), JWT_ECRIT);
    assert_int_equal(verify_at(ks, t2, NOW), JWT_ECRIT);
    free(t);
    free(t2);
    jwt_keyset_free(ks);
}

static void test_bad_headers(void **state)
{
    static const char *hdrs[] = {
        "[\"HS256\"]",                              /* not an object */
        "{\"alg\":256}",                            /* alg not a string */
        "{\"typ\":\"JWT\"}",                        /* no alg */
        "{\"alg\":\"HS256\",\"kid\":7}",            /* kid not a string */
        "{\"alg\":\"none\",\"alg\":\"HS256\"}",     /* duplicate key */
        "{\"alg\":\"HS256\"",                       /* not JSON */
        "",
        "{\"alg\":\"HS\\u0000256\"}",               /* NUL in a string */
    };
    jwt_keyset_t *ks = ks_secret(NULL);
    size_t i;

    for (i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        char *t = tok_hs_secret(hdrs[i], "{}");

        if (verify_at(ks, t, NOW) != JWT_EMALFORMED)
            fail_msg("header %s not refused as malformed", hdrs[i]);
        free(t);
    }
    jwt_keyset_free(ks);
}

/* ---- signatures --------------------------------------------------------- */

static void check_tamper(jwt_keyset_t *ks, const char *tok)
{
    char *other = b64url_str("{\"sub\":\"mallory\",\"exp\":1900000000}");
    char *t1 = swap_seg(tok, 1, other);
    const char *sig = strrchr(tok, '.') + 1;
    char *cut = strndup(sig, (strlen(sig) - 4) & ~(size_t)3);
    char *t2 = swap_seg(tok, 2, cut);
    char *t3 = swap_seg(tok, 2, "");
    char *t4 = strdup(tok);

    assert_int_equal(verify_at(ks, tok, NOW), JWT_OK);
    assert_int_equal(verify_at(ks, t1, NOW), JWT_ESIG);
    assert_int_equal(verify_at(ks, t2, NOW), JWT_ESIG);
    assert_int_equal(verify_at(ks, t3, NOW), JWT_ESIG);
    /* one character in the middle of the signature changed */
    t4[strlen(t4) - 10] = t4[strlen(t4) - 10] == 'A' ? 'B' : 'A';
    assert_int_equal(verify_at(ks, t4, NOW), JWT_ESIG);
    free(other);
    free(t1);
    free(cut);
    free(t2);
    free(t3);
    free(t4);
}

static void test_tampered_hs256(void **state)
{
    jwt_keyset_t *ks = ks_secret(NULL);
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_hs256(SECRET, SECRET_LEN, NULL, c);

    check_tamper(ks, tok);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_tampered_rs256(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_rs256(g_rsa, NULL, c);

    assert_int_equal(ks_add_pem(ks, NULL, g_rsa), JWT_OK);
    check_tamper(ks, tok);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_tampered_es256(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_es256(g_ec, NULL, c);

    assert_int_equal(ks_add_pem(ks, NULL, g_ec), JWT_OK);
    check_tamper(ks, tok);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_wrong_key_same_alg(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *t1 = jwt_sign_es256(g_ec2, "k", c), *t2 = jwt_sign_rs256(g_rsa2, NULL, c);
    char *t3 = tok_hs("{\"alg\":\"HS256\"}", "{}",
                      "another secret of thirty-two byte", 32);

    assert_int_equal(ks_add_pem(ks, "k", g_ec), JWT_OK);
    assert_int_equal(ks_add_pem(ks, NULL, g_rsa), JWT_OK);
    assert_int_equal(jwt_keyset_add_secret(ks, NULL, SECRET, SECRET_LEN, NULL),
                     JWT_OK);
    assert_int_equal(verify_at(ks, t1, NOW), JWT_ESIG);
    assert_int_equal(verify_at(ks, t2, NOW), JWT_ESIG);
    assert_int_equal(verify_at(ks, t3, NOW), JWT_ESIG);
    free(t1);
    free(t2);
    free(t3);
    json_decref(c);
    jwt_keyset_free(ks);
}

/* ES256 signatures must be raw r || s: a DER signature, a zero r || s and
 * a 65-byte signature are all refused. */
static void test_es256_signature_forms(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_es256(g_ec, NULL, c), *si, *s, *t;
    unsigned char der[80], zero[65] = { 0 };
    size_t der_len = sizeof(der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    assert_int_equal(ks_add_pem(ks, NULL, g_ec), JWT_OK);
    si = strndup(tok, (size_t)(strrchr(tok, '.') - tok));
    assert_int_equal(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL,
                                           g_ec, NULL), 1);
    assert_int_equal(EVP_DigestSign(md, der, &der_len, (unsigned char *)si,
                                    strlen(si)), 1);
    s = b64url(der, der_len);
    t = swap_seg(tok, 2, s);
    assert_int_equal(verify_at(ks, t, NOW), JWT_ESIG);
    free(s);
    free(t);
    s = b64url(zero, 64);
    t = swap_seg(tok, 2, s);
    assert_int_equal(verify_at(ks, t, NOW), JWT_ESIG);
    free(s);
    free(t);
    s = b64url(zero, 65);
    t = swap_seg(tok, 2, s);
    assert_int_equal(verify_at(ks, t, NOW), JWT_ESIG);
    free(s);
    free(t);
    EVP_MD_CTX_free(md);
    free(si);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

/* ---- shape and encoding --------------------------------------------------- */

static void test_bad_base64url(void **state)
{
    jwt_keyset_t *ks = ks_secret(NULL);
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_hs256(SECRET, SECRET_LEN, NULL, c);
    const char *muts[] = { "=", "+", "/", " ", "\n", "*", "%3D" };
    char *sig = strrchr(tok, '.') + 1, *t;
    size_t i, slen = strlen(sig);
    buf_t b;

    for (i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
        int seg;

        for (seg = 0; seg < 3; seg++) {
            buf_init(&b, 16384);
            /* insert the character at the start of segment seg */
            if (seg == 0)
                buf_printf(&b, "%s%s", muts[i], tok);
            else {
                const char *at = tok;
                int k;

                for (k = 0; k < seg; k++)
                    at = strchr(at, '.') + 1;
                buf_append(&b, tok, (size_t)(at - tok));
                buf_printf(&b, "%s%s", muts[i], at);
            }
            if (verify_at(ks, b.data, NOW) != JWT_EMALFORMED)
                fail_msg("'%s' in segment %d accepted", muts[i], seg);
            buf_free(&b);
        }
    }
    /* 43 characters carry 2 spare bits: a non-zero one is a second
     * spelling of the same signature and is refused */
    assert_int_equal(slen, 43);
    t = strdup(tok);
    {
        char *last = t + strlen(t) - 1;
        const char *alpha =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        int v = (int)(strchr(alpha, *last) - alpha);

        assert_int_equal(v & 3, 0);
        *last = alpha[v | 1];
    }
    assert_int_equal(verify_at(ks, t, NOW), JWT_EMALFORMED);
    free(t);
    /* a padded signature */
    buf_init(&b, 16384);
    buf_printf(&b, "%s=", tok);
    assert_int_equal(verify_at(ks, b.data, NOW), JWT_EMALFORMED);
    buf_free(&b);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_segment_count(void **state)
{
    static const struct {
        const char *tok;
        jwt_err_t want;
    } rows[] = {
        { "", JWT_EMALFORMED },
        { ".", JWT_EMALFORMED },
        { "..", JWT_EMALFORMED },
        { "...", JWT_EMALFORMED },
        { "abc", JWT_EMALFORMED },
        { "a.b", JWT_EMALFORMED },
        { "a.b.c", JWT_EMALFORMED },
        { "eyJhbGciOiJIUzI1NiJ9.e30", JWT_EMALFORMED },
        { "eyJhbGciOiJIUzI1NiJ9.e30.AAAA.AAAA", JWT_EMALFORMED },
        { "eyJhbGciOiJIUzI1NiJ9.e30.AAAA.AAAA.AAAA", JWT_EMALFORMED },
        { "eyJhbGciOiJIUzI1NiJ9..", JWT_ESIG },
        { "eyJhbGciOiJIUzI1NiJ9.e30.", JWT_ESIG },
    };
    jwt_keyset_t *ks = ks_secret(NULL);
    jwt_opts_t o = { .now = NOW };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        jwt_err_t rc = verify_at(ks, rows[i].tok, NOW);

        if (rc != rows[i].want)
            fail_msg("\"%s\": %s", rows[i].tok, jwt_strerror(rc));
    }
    assert_int_equal(jwt_verify(ks, NULL, 0, &o, NULL), JWT_EMALFORMED);
    jwt_keyset_free(ks);
}

static void test_token_size_limit(void **state)
{
    jwt_keyset_t *ks = ks_secret(NULL);
    json_t *c = claims_exp(NOW + 60);
    char *pad = malloc(JWT_MAX_TOKEN), *tok;
    size_t plen = 5900, len, longest = 0;

    assert_non_null(pad);
    /* grow a claim until the token is exactly JWT_MAX_TOKEN (or just under) */
    for (;;) {
        memset(pad, 'p', plen);
        pad[plen] = 0;
        json_object_set_new(c, "pad", json_string(pad));
        tok = jwt_sign_hs256(SECRET, SECRET_LEN, NULL, c);
        if (!tok)
            break;
        len = strlen(tok);
        assert_true(len <= JWT_MAX_TOKEN);
        longest = len;
        assert_int_equal(verify_at(ks, tok, NOW), JWT_OK);
        free(tok);
        plen += 1;
        if (plen >= JWT_MAX_TOKEN - 1)
            fail_msg("signer never hit the size cap");
    }
    /* the signer refused the first token over the cap; so does the verifier */
    assert_true(longest > JWT_MAX_TOKEN - 4);
    {
        buf_t b;

        buf_init(&b, JWT_MAX_TOKEN + 16);
        assert_int_equal(buf_printf(&b, "eyJhbGciOiJIUzI1NiJ9."), 0);
        while (b.len < JWT_MAX_TOKEN - 1)
            buf_append_byte(&b, 'e');
        buf_append_str(&b, ".A");
        assert_int_equal(b.len, JWT_MAX_TOKEN + 1);
        assert_int_equal(verify_at(ks, b.data, NOW), JWT_ETOOBIG);
        buf_free(&b);
    }
    free(pad);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_payload_not_object(void **state)
{
    static const char *payloads[] = {
        "[]", "\"sub\"", "42", "{", "", "{\"a\":1,\"a\":2}", "null",
    };
    jwt_keyset_t *ks = ks_secret(NULL);
    size_t i;

    for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        char *t = tok_hs_secret("{\"alg\":\"HS256\"}", payloads[i]);

        if (verify_at(ks, t, NOW) != JWT_EMALFORMED)
            fail_msg("payload %s accepted", payloads[i]);
        free(t);
    }
    jwt_keyset_free(ks);
}

/* ---- claims ----------------------------------------------------------- */

static jwt_err_t claims_at(const char *payload, const jwt_opts_t *o)
{
    jwt_keyset_t *ks = ks_secret(NULL);
    char *t = tok_hs_secret("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload);
    jwt_err_t rc = verify_opts(ks, t, o);

    free(t);
    jwt_keyset_free(ks);
    return rc;
}

static void test_exp_and_leeway(void **state)
{
    jwt_opts_t o = { .now = NOW };

    assert_int_equal(claims_at("{\"exp\":1700000001}", &o), JWT_OK);
    assert_int_equal(claims_at("{\"exp\":1700000000}", &o), JWT_EEXPIRED);
    assert_int_equal(claims_at("{\"exp\":1699999990}", &o), JWT_EEXPIRED);
    assert_int_equal(claims_at("{\"exp\":1700000000.5}", &o), JWT_OK);
    o.leeway_s = 30;
    assert_int_equal(claims_at("{\"exp\":1699999990}", &o), JWT_OK);
    assert_int_equal(claims_at("{\"exp\":1699999970}", &o), JWT_EEXPIRED);
    o.leeway_s = 5;
    assert_int_equal(claims_at("{\"exp\":1699999990}", &o), JWT_EEXPIRED);
}

static void test_nbf_and_leeway(void **state)
{
    jwt_opts_t o = { .now = NOW };

    assert_int_equal(claims_at("{\"nbf\":1700000000}", &o), JWT_OK);
    assert_int_equal(claims_at("{\"nbf\":1700000010}", &o), JWT_ENOTYET);
    o.leeway_s = 30;
    assert_int_equal(claims_at("{\"nbf\":1700000010}", &o), JWT_OK);
    assert_int_equal(claims_at("{\"nbf\":1700000031}", &o), JWT_ENOTYET);
}

static void test_require_exp(void **state)
{
    jwt_opts_t o = { .now = NOW };

    assert_int_equal(claims_at("{\"sub\":\"a\"}", &o), JWT_OK);
    o.require_exp = true;
    assert_int_equal(claims_at("{\"sub\":\"a\"}", &o), JWT_ENOEXP);
    assert_int_equal(claims_at("{\"exp\":null}", &o), JWT_EMALFORMED);
    assert_int_equal(claims_at("{\"exp\":1800000000}", &o), JWT_OK);
}

static void test_time_claim_types(void **state)
{
    static const char *payloads[] = {
        "{\"exp\":\"1800000000\"}", "{\"exp\":true}", "{\"nbf\":false}",
        "{\"nbf\":[1]}", "{\"iat\":\"now\"}", "{\"iat\":{}}",
        "{\"exp\":1e400}", "{\"exp\":123456789012345678901234567890}",
    };
    jwt_opts_t o = { .now = NOW };
    size_t i;

    for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++)
        if (claims_at(payloads[i], &o) != JWT_EMALFORMED)
            fail_msg("%s not refused as malformed", payloads[i]);
    assert_int_equal(claims_at("{\"iat\":1600000000.25}", &o), JWT_OK);
}

static void test_huge_numbers(void **state)
{
    jwt_opts_t o = { .now = NOW, .leeway_s = 86400 };

    assert_int_equal(claims_at("{\"exp\":1e300}", &o), JWT_OK);
    assert_int_equal(claims_at("{\"exp\":9223372036854775807}", &o), JWT_OK);
    assert_int_equal(claims_at("{\"exp\":-9223372036854775808}", &o),
                     JWT_EEXPIRED);
    assert_int_equal(claims_at("{\"exp\":-1e300}", &o), JWT_EEXPIRED);
    assert_int_equal(claims_at("{\"nbf\":1e300}", &o), JWT_ENOTYET);
    assert_int_equal(claims_at("{\"nbf\":-1e300,\"exp\":4e9}", &o), JWT_OK);
    o.now = INT64_MAX / 2;
    assert_int_equal(claims_at("{\"exp\":9223372036854775807}", &o), JWT_OK);
}

static void test_issuer(void **state)
{
    jwt_opts_t o = { .now = NOW, .issuer = "https://idp.example" };

    assert_int_equal(claims_at("{\"iss\":\"https://idp.example\"}", &o), JWT_OK);
    assert_int_equal(claims_at("{\"iss\":\"https://idp.example/\"}", &o),
                     JWT_EISSUER);
    assert_int_equal(claims_at("{\"iss\":\"https://idp.exampl\"}", &o),
                     JWT_EISSUER);
    assert_int_equal(claims_at("{\"sub\":\"x\"}", &o), JWT_EISSUER);
    assert_int_equal(claims_at("{\"iss\":[\"https://idp.example\"]}", &o),
                     JWT_EISSUER);
}

static void test_audience(void **state)
{
    jwt_opts_t o = { .now = NOW, .audience = "switchboard" };

    assert_int_equal(claims_at("{\"aud\":\"switchboard\"}", &o), JWT_OK);
    assert_int_equal(claims_at("{\"aud\":[\"x\",\"switchboard\"]}", &o), JWT_OK);
    assert_int_equal(claims_at("{\"aud\":[\"x\",\"y\"]}", &o), JWT_EAUDIENCE);
    assert_int_equal(claims_at("{\"aud\":\"switchboard2\"}", &o), JWT_EAUDIENCE);
    assert_int_equal(claims_at("{\"aud\":[]}", &o), JWT_EAUDIENCE);
    assert_int_equal(claims_at("{\"aud\":[1,null]}", &o), JWT_EAUDIENCE);
    assert_int_equal(claims_at("{\"aud\":5}", &o), JWT_EAUDIENCE);
    assert_int_equal(claims_at("{}", &o), JWT_EAUDIENCE);
    /* not configured: not checked */
    o.audience = NULL;
    assert_int_equal(claims_at("{\"aud\":5}", &o), JWT_OK);
}

static void test_claims_after_signature(void **state)
{
    jwt_keyset_t *ks = ks_secret(NULL);
    jwt_opts_t o = { .now = NOW };
    char *t = tok_hs("{\"alg\":\"HS256\"}", "{\"exp\":1}",
                     "some other secret of 32 bytes!!!", 32);

    /* an expired token with a bad signature reports the signature */
    assert_int_equal(verify_opts(ks, t, &o), JWT_ESIG);
    free(t);
    jwt_keyset_free(ks);
}

/* ---- loaders ------------------------------------------------------------ */

static void test_secret_limits(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    unsigned char big[JWT_HS_MAX_SECRET + 1];
    const char *why = NULL;

    memset(big, 7, sizeof(big));
    assert_int_equal(jwt_keyset_add_secret(ks, NULL, SECRET, 31, &why),
                     JWT_EKEY);
    assert_non_null(why);
    assert_int_equal(jwt_keyset_add_secret(ks, NULL, big, sizeof(big), NULL),
                     JWT_EKEY);
    assert_int_equal(jwt_keyset_add_secret(ks, "", SECRET, 32, NULL), JWT_EKEY);
    assert_int_equal(jwt_keyset_count(ks), 0);
    assert_int_equal(jwt_keyset_add_secret(ks, NULL, big, JWT_HS_MAX_SECRET,
                                           NULL), JWT_OK);
    assert_int_equal(jwt_keyset_add_secret(ks, "a", SECRET, 32, NULL), JWT_OK);
    assert_int_equal(jwt_keyset_add_secret(ks, "a", SECRET, 32, &why),
                     JWT_EKEY);
    assert_string_equal(why, "duplicate kid");
    assert_int_equal(jwt_keyset_count(ks), 2);
    jwt_keyset_free(ks);
}

static void test_keyset_full(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    size_t i;

    for (i = 0; i < JWT_KEYSET_MAX; i++)
        assert_int_equal(jwt_keyset_add_secret(ks, NULL, SECRET, 32, NULL),
                         JWT_OK);
    assert_int_equal(jwt_keyset_add_secret(ks, NULL, SECRET, 32, NULL),
                     JWT_EFULL);
    assert_int_equal(ks_add_pem(ks, NULL, g_ec), JWT_EFULL);
    assert_int_equal(jwt_keyset_count(ks), JWT_KEYSET_MAX);
    jwt_keyset_free(ks);
}

static void test_pem_refused(void **state)
{
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    jwt_keyset_t *ks = jwt_keyset_new();
    char *priv = pem_priv(g_ec);
    const char *why = NULL;
    static const char junk[] =
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";

    assert_non_null(small);
    assert_non_null(p384);
    assert_non_null(ed);
    assert_int_equal(ks_add_pem(ks, NULL, small), JWT_EKEY);
    assert_int_equal(ks_add_pem(ks, NULL, p384), JWT_EKEY);
    assert_int_equal(ks_add_pem(ks, NULL, ed), JWT_EKEY);
    assert_int_equal(jwt_keyset_add_pem(ks, NULL, priv, strlen(priv), &why),
                     JWT_EKEY);
    assert_non_null(why);
    assert_int_equal(jwt_keyset_add_pem(ks, NULL, junk, strlen(junk), NULL),
                     JWT_EKEY);
    assert_int_equal(jwt_keyset_add_pem(ks, NULL, "", 0, NULL), JWT_EKEY);
    assert_int_equal(jwt_keyset_count(ks), 0);
    assert_int_equal(ERR_peek_error(), 0);
    free(priv);
    EVP_PKEY_free(small);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
    jwt_keyset_free(ks);
}

static void test_jwks_skips(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *enc = jwk_of(g_rsa2, "enc"), *rs512 = jwk_of(g_rsa2, "512");
    json_t *keys;
    size_t added = 0;

    json_object_set_new(enc, "use", json_string("enc"));
    json_object_set_new(rs512, "alg", json_string("RS512"));
    keys = json_pack("[o, o, o, {s:s, s:s}, {s:s, s:s, s:s, s:s}, {s:s}, o]",
                     enc, rs512, jwk_of(g_rsa, "ok"),
                     "kty", "oct", "k", "c2VjcmV0",
                     "kty", "EC", "crv", "P-384", "x", "AA", "y", "AA",
                     "x", "no kty", jwk_of(g_ec, "ec"));
    assert_non_null(keys);
    assert_int_equal(ks_add_jwks(ks, keys, &added), JWT_OK);
    assert_int_equal(added, 2);
    assert_int_equal(jwt_keyset_count(ks), 2);
    assert_false(jwt_keyset_has_alg(ks, JWT_HS256));
    jwt_keyset_free(ks);
}

static void test_jwks_alg_mismatch(void **state)
{
    json_t *a = jwk_of(g_ec, NULL), *b = jwk_of(g_rsa, NULL);
    json_t *c = jwk_of(g_rsa, NULL), *d = jwk_of(g_ec, NULL);

    json_object_set_new(a, "alg", json_string("RS256"));
    json_object_set_new(b, "alg", json_string("ES256"));
    json_object_set_new(c, "alg", json_string("HS256"));
    json_object_set_new(d, "alg", json_string("ES384"));
    assert_int_equal(jwk_one(a), JWT_EKEY);
    assert_int_equal(jwk_one(b), JWT_EKEY);
    assert_int_equal(jwk_one(c), JWT_EKEY);
    assert_int_equal(jwk_one(d), JWT_EKEY);
}

static void test_jwks_bad_members(void **state)
{
    static const char *bad_x[] = {
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* padding */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",  /* std alphabet */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",  /* trailing bits */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* 31 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 34 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* not on curve */
        "",
    };
    size_t i;

    for (i = 0; i < sizeof(bad_x) / sizeof(bad_x[0]); i++) {
        json_t *k = jwk_of(g_ec, NULL);

        json_object_set_new(k, "x", json_string(bad_x[i]));
        if (jwk_one(k) != JWT_EKEY)
            fail_msg("x \"%s\" accepted", bad_x[i]);
    }
    {
        json_t *k = jwk_of(g_rsa, NULL), *k2 = jwk_of(g_rsa, NULL);
        json_t *k3 = jwk_of(g_ec, NULL), *k4 = jwk_of(g_rsa, NULL);

        json_object_del(k, "e");
        json_object_set_new(k2, "n", json_integer(5));
        json_object_set_new(k3, "kid", json_integer(5));
        json_object_set_new(k4, "n", json_string("AQAB"));   /* tiny modulus */
        assert_int_equal(jwk_one(k), JWT_EKEY);
        assert_int_equal(jwk_one(k2), JWT_EKEY);
        assert_int_equal(jwk_one(k3), JWT_EKEY);
        assert_int_equal(jwk_one(k4), JWT_EKEY);
    }
    {
        /* a 2048-bit but even modulus: only the public key check sees it */
        unsigned char n[256] = { 0xc0 };
        json_t *k = jwk_of(g_rsa, NULL);
        char *sn = b64url(n, sizeof(n));

        json_object_set_new(k, "n", json_string(sn));
        assert_int_equal(jwk_one(k), JWT_EKEY);
        free(sn);
    }
}

static void test_jwks_documents(void **state)
{
    json_t *many = json_array();
    jwt_keyset_t *ks = jwt_keyset_new();
    char *big;
    size_t i;

    assert_int_equal(jwks_text("not json"), JWT_EKEY);
    assert_int_equal(jwks_text("[]"), JWT_EKEY);
    assert_int_equal(jwks_text("{\"keys\":{}}"), JWT_EKEY);
    assert_int_equal(jwks_text("{\"keys\":[]}"), JWT_EKEY);
    assert_int_equal(jwks_text("{\"keys\":[1]}"), JWT_EKEY);
    assert_int_equal(jwks_text("{\"keys\":[],\"keys\":[]}"), JWT_EKEY);
    for (i = 0; i <= JWT_KEYSET_MAX; i++)
        json_array_append_new(many, json_pack("{s:s}", "kty", "OKP"));
    assert_int_equal(ks_add_jwks(ks, many, NULL), JWT_EKEY);
    big = malloc(JWT_JWKS_MAX + 2);
    memset(big, ' ', JWT_JWKS_MAX + 1);
    big[JWT_JWKS_MAX + 1] = 0;
    memcpy(big, "{\"keys\":[]}", 11);
    assert_int_equal(jwks_text(big), JWT_EKEY);
    free(big);
    /* duplicate kid within one document, then against the set */
    assert_int_equal(ks_add_jwks(ks, json_pack("[o, o]", jwk_of(g_ec, "d"),
                                               jwk_of(g_rsa, "d")), NULL),
                     JWT_EKEY);
    assert_int_equal(ks_add_jwks(ks, json_pack("[o]", jwk_of(g_ec, "d")), NULL),
                     JWT_OK);
    assert_int_equal(ks_add_jwks(ks, json_pack("[o, o]", jwk_of(g_rsa, "e"),
                                               jwk_of(g_rsa, "d")), NULL),
                     JWT_EKEY);
    /* a failed load changed nothing */
    assert_int_equal(jwt_keyset_count(ks), 1);
    jwt_keyset_free(ks);
}

/* ---- signing ------------------------------------------------------------ */

static void test_sign_refusals(void **state)
{
    json_t *c = claims_exp(NOW + 60), *arr = json_array();
    char kid[JWT_MAX_KID + 2];

    memset(kid, 'k', sizeof(kid) - 1);
    kid[sizeof(kid) - 1] = 0;
    assert_null(jwt_sign_hs256(SECRET, 31, NULL, c));
    assert_null(jwt_sign_hs256(SECRET, SECRET_LEN, NULL, arr));
    assert_null(jwt_sign_hs256(SECRET, SECRET_LEN, kid, c));
    assert_null(jwt_sign_hs256(SECRET, SECRET_LEN, "\xff", c));
    assert_null(jwt_sign_rs256(g_ec, NULL, c));
    assert_null(jwt_sign_es256(g_rsa, NULL, c));
    assert_null(jwt_sign_es256(NULL, NULL, c));
    assert_int_equal(ERR_peek_error(), 0);
    json_decref(c);
    json_decref(arr);
}

static void test_sign_header(void **state)
{
    json_t *c = json_pack("{s:s}", "sub", "a");
    char *tok = jwt_sign_hs256(SECRET, SECRET_LEN, "key-1", c);
    char *h = b64url_str("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"key-1\"}");
    char *p = b64url_str("{\"sub\":\"a\"}");
    char *want = join3(h, p, "");

    assert_non_null(tok);
    assert_memory_equal(tok, want, strlen(want));
    assert_int_equal(strlen(tok), strlen(want) + 43);
    free(want);
    free(h);
    free(p);
    free(tok);
    json_decref(c);
}

static void test_error_queue_clean(void **state)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    json_t *c = claims_exp(NOW + 60);
    char *tok = jwt_sign_es256(g_ec2, NULL, c);
    char *t2 = jwt_sign_rs256(g_rsa2, NULL, c);

    ERR_clear_error();
    assert_int_equal(ks_add_pem(ks, NULL, g_ec), JWT_OK);
    assert_int_equal(ks_add_pem(ks, NULL, g_rsa), JWT_OK);
    assert_int_equal(verify_at(ks, tok, NOW), JWT_ESIG);
    assert_int_equal(verify_at(ks, t2, NOW), JWT_ESIG);
    assert_int_equal(jwks_text("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
                               "\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
                               "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}]}"),
                     JWT_EKEY);
    assert_int_equal(ERR_peek_error(), 0);
    free(tok);
    free(t2);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void test_strerror(void **state)
{
    jwt_err_t e;
    const char *seen[JWT_EFULL + 1];

    for (e = JWT_OK; e <= JWT_EFULL; e++) {
        seen[e] = jwt_strerror(e);
        assert_non_null(seen[e]);
        for (jwt_err_t f = JWT_OK; f < e; f++)
            assert_string_not_equal(seen[f], seen[e]);
    }
    assert_string_equal(jwt_strerror((jwt_err_t)999), "unknown error");
    assert_string_equal(jwt_alg_name(JWT_ES256), "ES256");
    assert_null(jwt_alg_name((jwt_alg_t)0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7515_a1),
        cmocka_unit_test(test_hs256_roundtrip),
        cmocka_unit_test(test_rs256_pem_roundtrip),
        cmocka_unit_test(test_es256_pem_roundtrip),
        cmocka_unit_test(test_jwks_rsa_and_ec),
        cmocka_unit_test(test_jwks_rotation),
        cmocka_unit_test(test_kidless_tries_pinned_keys),
        cmocka_unit_test(test_kidless_tries_at_most_8),
        cmocka_unit_test(test_claims_out),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_alg_unknown),
        cmocka_unit_test(test_hs256_against_rsa_keyset),
        cmocka_unit_test(test_kid_alg_mismatch),
        cmocka_unit_test(test_unknown_kid),
        cmocka_unit_test(test_crit_refused),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_tampered_hs256),
        cmocka_unit_test(test_tampered_rs256),
        cmocka_unit_test(test_tampered_es256),
        cmocka_unit_test(test_wrong_key_same_alg),
        cmocka_unit_test(test_es256_signature_forms),
        cmocka_unit_test(test_bad_base64url),
        cmocka_unit_test(test_segment_count),
        cmocka_unit_test(test_token_size_limit),
        cmocka_unit_test(test_payload_not_object),
        cmocka_unit_test(test_exp_and_leeway),
        cmocka_unit_test(test_nbf_and_leeway),
        cmocka_unit_test(test_require_exp),
        cmocka_unit_test(test_time_claim_types),
        cmocka_unit_test(test_huge_numbers),
        cmocka_unit_test(test_issuer),
        cmocka_unit_test(test_audience),
        cmocka_unit_test(test_claims_after_signature),
        cmocka_unit_test(test_secret_limits),
        cmocka_unit_test(test_keyset_full),
        cmocka_unit_test(test_pem_refused),
        cmocka_unit_test(test_jwks_skips),
        cmocka_unit_test(test_jwks_alg_mismatch),
        cmocka_unit_test(test_jwks_bad_members),
        cmocka_unit_test(test_jwks_documents),
        cmocka_unit_test(test_sign_refusals),
        cmocka_unit_test(test_sign_header),
        cmocka_unit_test(test_error_queue_clean),
        cmocka_unit_test(test_strerror),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
