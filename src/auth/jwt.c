/*
 * jwt.c - JWS compact tokens: key sets pinned per algorithm, verification,
 * signing. See jwt.h for the rules.
 *
 * Shape: a key set is a fixed array of keys, each carrying its one
 * algorithm; loaders build keys into a staging array and commit them only
 * when everything validated, so a failed load never half-changes a set.
 * Verification decodes the three segments into one stack buffer (the token
 * is capped at JWT_MAX_TOKEN, so no allocation depends on the input beyond
 * jansson's trees), picks keys by (kid, pinned alg), checks the signature
 * over the raw "header.payload" bytes, and only then parses the claims.
 *
 * base64url is decoded strictly here (no padding, no other alphabet, no
 * non-zero trailing bits) because every byte of a JWS is signed and we
 * want exactly one text per token; OpenSSL's decoder is lenient.
 */
#include "auth/jwt.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "core/base64.h"
#include "core/buf.h"

#define HS256_LEN 32
#define ES256_LEN 64                    /* raw r || s */
#define SIG_MAX (JWT_RSA_MAX_BITS / 8)  /* largest signature we make or take */
#define MAX_LEEWAY 86400

typedef struct jwt_key {
    jwt_alg_t alg;
    char *kid;                  /* NUL-terminated copy, NULL: none */
    size_t kid_len;
    unsigned char *secret;      /* HS256; wiped on free */
    size_t secret_len;
    EVP_PKEY *pkey;             /* RS256 / ES256: public key */
} jwt_key_t;

struct jwt_keyset {
    size_t n;
    jwt_key_t keys[JWT_KEYSET_MAX];
};

/* ---- names and errors --------------------------------------------------- */

const char *jwt_strerror(jwt_err_t err)
{
    switch (err) {
    case JWT_OK: return "ok";
    case JWT_EMALFORMED: return "malformed token";
    case JWT_ETOOBIG: return "token too large";
    case JWT_EALG: return "algorithm not allowed";
    case JWT_ECRIT: return "critical header extension not supported";
    case JWT_ENOKEY: return "no key for token";
    case JWT_ESIG: return "bad signature";
    case JWT_EEXPIRED: return "token expired";
    case JWT_ENOTYET: return "token not yet valid";
    case JWT_ENOEXP: return "token has no expiry";
    case JWT_EISSUER: return "wrong issuer";
    case JWT_EAUDIENCE: return "wrong audience";
    case JWT_ENOMEM: return "out of memory";
    case JWT_EKEY: return "unusable key";
    case JWT_EFULL: return "key set full";
    }
    return "unknown error";
}

const char *jwt_alg_name(jwt_alg_t alg)
{
    switch (alg) {
    case JWT_HS256: return "HS256";
    case JWT_RS256: return "RS256";
    case JWT_ES256: return "ES256";
    }
    return NULL;
}

/* 0 when s is not one of our algorithm names ("none" included). */
static jwt_alg_t alg_from_name(const char *s, size_t len)
{
    jwt_alg_t a;

    for (a = JWT_HS256; a <= JWT_ES256; a++)
        if (len == 5 && memcmp(s, jwt_alg_name(a), 5) == 0)
            return a;
    return 0;
}

static void set_why(const char **why, const char *s)
{
    if (why)
        *why = s;
}

/* ---- base64url -------------------------------------------------------- */

/* Strict base64url decode of in[0..len) into out, which must have room
 * for len * 3 / 4 bytes: -1 for anything but the one canonical spelling. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    return base64_decode(in, len, out, len / 4 * 3 + 2, B64_URL);
}

/* The number of bytes len base64url characters decode to (when valid). */
static size_t b64url_decoded_len(size_t len)
{
    return len / 4 * 3 + (len % 4 > 1 ? len % 4 - 1 : 0);
}

static int b64url_append(buf_t *b, const void *p, size_t n)
{
    return base64_append(b, p, n, B64_URL);
}

/* ---- keys and key sets ------------------------------------------------ */

static void key_clear(jwt_key_t *k)
{
    free(k->kid);
    OPENSSL_clear_free(k->secret, k->secret_len);
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof(*k));
}

jwt_keyset_t *jwt_keyset_new(void)
{
    return calloc(1, sizeof(jwt_keyset_t));
}

void jwt_keyset_free(jwt_keyset_t *ks)
{
    size_t i;

    if (!ks)
        return;
    for (i = 0; i < ks->n; i++)
        key_clear(&ks->keys[i]);
    free(ks);
}

size_t jwt_keyset_count(const jwt_keyset_t *ks)
{
    return ks->n;
}

bool jwt_keyset_has_alg(const jwt_keyset_t *ks, jwt_alg_t alg)
{
    size_t i;

    for (i = 0; i < ks->n; i++)
        if (ks->keys[i].alg == alg)
            return true;
    return false;
}

static const jwt_key_t *find_kid(const jwt_keyset_t *ks, const char *kid,
                                 size_t len)
{
    size_t i;

    for (i = 0; i < ks->n; i++) {
        const jwt_key_t *k = &ks->keys[i];

        if (k->kid && k->kid_len == len && memcmp(k->kid, kid, len) == 0)
            return k;
    }
    return NULL;
}

static jwt_err_t key_set_kid(jwt_key_t *k, const char *kid, size_t len,
                             const char **why)
{
    if (!kid)
        return JWT_OK;
    if (len == 0 || len > JWT_MAX_KID || memchr(kid, 0, len)) {
        set_why(why, "kid empty, too long or not text");
        return JWT_EKEY;
    }
    if (!(k->kid = malloc(len + 1)))
        return JWT_ENOMEM;
    memcpy(k->kid, kid, len);
    k->kid[len] = 0;
    k->kid_len = len;
    return JWT_OK;
}

/*
 * Moves the n staged keys into ks, or none: refused when ks lacks room or
 * a kid would appear twice. On success the staged keys belong to ks (and
 * are zeroed in the staging array); on failure the caller still owns them.
 */
static jwt_err_t keyset_commit(jwt_keyset_t *ks, jwt_key_t *staged, size_t n,
                               const char **why)
{
    size_t i, j;

    if (n > JWT_KEYSET_MAX - ks->n) {
        set_why(why, "too many keys");
        return JWT_EFULL;
    }
    for (i = 0; i < n; i++) {
        if (!staged[i].kid)
            continue;
        for (j = 0; j < i; j++)
            if (staged[j].kid && staged[j].kid_len == staged[i].kid_len &&
                memcmp(staged[j].kid, staged[i].kid, staged[i].kid_len) == 0)
                goto dup;
        if (find_kid(ks, staged[i].kid, staged[i].kid_len))
            goto dup;
    }
    memcpy(&ks->keys[ks->n], staged, n * sizeof(*staged));
    ks->n += n;
    memset(staged, 0, n * sizeof(*staged));
    return JWT_OK;
dup:
    set_why(why, "duplicate kid");
    return JWT_EKEY;
}

jwt_err_t jwt_keyset_add_secret(jwt_keyset_t *ks, const char *kid,
                                const void *secret, size_t len,
                                const char **why)
{
    jwt_key_t k = { .alg = JWT_HS256 };
    jwt_err_t rc;

    if (len < JWT_HS_MIN_SECRET || len > JWT_HS_MAX_SECRET) {
        set_why(why, "HS256 secret must be 32 to 1024 bytes");
        return JWT_EKEY;
    }
    if ((rc = key_set_kid(&k, kid, kid ? strlen(kid) : 0, why)))
        goto fail;
    rc = JWT_ENOMEM;
    if (!(k.secret = OPENSSL_malloc(len)))
        goto fail;
    memcpy(k.secret, secret, len);
    k.secret_len = len;
    if ((rc = keyset_commit(ks, &k, 1, why)))
        goto fail;
    return JWT_OK;
fail:
    key_clear(&k);
    return rc;
}

/*
 * Decides the one algorithm a public (or, for signing, private) key may be
 * used with: RSA of JWT_RSA_MIN_BITS..JWT_RSA_MAX_BITS -> RS256, EC on
 * P-256 -> ES256. Anything else is JWT_EKEY with a reason in *why.
 */
static jwt_err_t pkey_alg(EVP_PKEY *pk, jwt_alg_t *alg, const char **why)
{
    char group[32];
    int bits = EVP_PKEY_get_bits(pk);

    if (EVP_PKEY_is_a(pk, "RSA")) {
        if (bits < JWT_RSA_MIN_BITS || bits > JWT_RSA_MAX_BITS) {
            set_why(why, "RSA key must be 2048 to 8192 bits");
            return JWT_EKEY;
        }
        *alg = JWT_RS256;
        return JWT_OK;
    }
    if (EVP_PKEY_is_a(pk, "EC") &&
        EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                       sizeof(group), NULL) == 1 &&
        (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)) {
        *alg = JWT_ES256;
        return JWT_OK;
    }
    set_why(why, "key is neither RSA nor EC P-256");
    return JWT_EKEY;
}

/* Classifies pk and checks it is a sound public key (on the curve, RSA
 * modulus odd and composite...). Takes ownership of pk into k. */
static jwt_err_t key_from_pkey(jwt_key_t *k, EVP_PKEY *pk, const char **why)
{
    EVP_PKEY_CTX *ctx;
    jwt_err_t rc;
    int ok;

    k->pkey = pk;
    if ((rc = pkey_alg(pk, &k->alg, why)))
        return rc;
    if (!(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL)))
        return JWT_ENOMEM;
    ok = EVP_PKEY_public_check(ctx);
    EVP_PKEY_CTX_free(ctx);
    if (ok != 1) {
        set_why(why, "public key fails validation");
        return JWT_EKEY;
    }
    return JWT_OK;
}

jwt_err_t jwt_keyset_add_pem(jwt_keyset_t *ks, const char *kid,
                             const char *pem, size_t len, const char **why)
{
    jwt_key_t k = { 0 };
    EVP_PKEY *pk = NULL;
    BIO *bio = NULL;
    jwt_err_t rc = JWT_EKEY;

    ERR_set_mark();
    set_why(why, "not a PEM PUBLIC KEY");
    if (len > JWT_JWKS_MAX)
        goto out;
    if (!(bio = BIO_new_mem_buf(pem, (int)len))) {
        rc = JWT_ENOMEM;
        goto out;
    }
    if (!(pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)))
        goto out;
    if ((rc = key_from_pkey(&k, pk, why)))
        goto out;
    if ((rc = key_set_kid(&k, kid, kid ? strlen(kid) : 0, why)))
        goto out;
    rc = keyset_commit(ks, &k, 1, why);
out:
    key_clear(&k);
    BIO_free(bio);
    ERR_pop_to_mark();
    return rc;
}

/* ---- JWKS --------------------------------------------------------------- */

/* Decodes the non-empty base64url string member `name` of jwk into out,
 * which has room for max bytes; longer values are refused. */
static jwt_err_t jwk_bytes(const json_t *jwk, const char *name,
                           unsigned char *out, size_t max, size_t *got,
                           const char **why)
{
    const json_t *v = json_object_get(jwk, name);
    long n;

    if (!json_is_string(v) ||
        b64url_decoded_len(json_string_length(v)) > max) {
        set_why(why, "JWK member missing, not a string, or too long");
        return JWT_EKEY;
    }
    if ((n = b64url_decode(json_string_value(v), json_string_length(v),
                           out)) <= 0) {
        set_why(why, "JWK member is not base64url");
        return JWT_EKEY;
    }
    *got = (size_t)n;
    return JWT_OK;
}

/* Builds a public key of type `type` ("RSA", "EC") from params. */
static jwt_err_t pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld,
                               EVP_PKEY **out, const char **why)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    jwt_err_t rc = JWT_ENOMEM;

    *out = NULL;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1)
        goto out;
    rc = JWT_EKEY;
    if (EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        set_why(why, "JWK parameters do not form a key");
        goto out;
    }
    rc = JWT_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return rc;
}

static jwt_err_t jwk_rsa(const json_t *jwk, EVP_PKEY **pk, const char **why)
{
    unsigned char n[SIG_MAX + 1], e[8];   /* +1: a (tolerated) leading 0 */
    size_t nlen, elen;
    OSSL_PARAM_BLD *bld = NULL;
    BIGNUM *bn = NULL, *be = NULL;
    jwt_err_t rc;

    if ((rc = jwk_bytes(jwk, "n", n, sizeof(n), &nlen, why)) ||
        (rc = jwk_bytes(jwk, "e", e, sizeof(e), &elen, why)))
        return rc;
    rc = JWT_ENOMEM;
    if (!(bn = BN_bin2bn(n, (int)nlen, NULL)) ||
        !(be = BN_bin2bn(e, (int)elen, NULL)) ||
        !(bld = OSSL_PARAM_BLD_new()) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        goto out;
    rc = pkey_fromdata("RSA", bld, pk, why);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return rc;
}

static jwt_err_t jwk_ec(const json_t *jwk, EVP_PKEY **pk, const char **why)
{
    unsigned char pt[1 + 2 * 32] = { 4 };   /* uncompressed point */
    size_t xlen, ylen;
    OSSL_PARAM_BLD *bld = NULL;
    jwt_err_t rc;

    if ((rc = jwk_bytes(jwk, "x", pt + 1, 32, &xlen, why)) ||
        (rc = jwk_bytes(jwk, "y", pt + 33, 32, &ylen, why)))
        return rc;
    if (xlen != 32 || ylen != 32) {
        set_why(why, "EC coordinates must be 32 bytes");
        return JWT_EKEY;
    }
    rc = JWT_ENOMEM;
    if (!(bld = OSSL_PARAM_BLD_new()) ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                         "P-256", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                          sizeof(pt)))
        goto out;
    rc = pkey_fromdata("EC", bld, pk, why);
out:
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

static bool json_str_is(const json_t *v, const char *s)
{
    size_t n = strlen(s);

    return json_is_string(v) && json_string_length(v) == n &&
           memcmp(json_string_value(v), s, n) == 0;
}

static bool json_str_prefix(const json_t *v, const char *s)
{
    size_t n = strlen(s);

    return json_is_string(v) && json_string_length(v) >= n &&
           memcmp(json_string_value(v), s, n) == 0;
}

/*
 * Turns one JWK into a staged key. *skip is set (and JWT_OK returned) for a
 * key RFC 7517 lets us ignore: an encryption key, a type or curve we do not
 * verify with, or an RSA key for another RSA algorithm. An unsupported
 * "alg" outside the key's own family is a contradiction and refused.
 */
static jwt_err_t jwk_parse(const json_t *jwk, jwt_key_t *k, bool *skip,
                           const char **why)
{
    const json_t *kty = json_object_get(jwk, "kty");
    const json_t *use = json_object_get(jwk, "use");
    const json_t *alg = json_object_get(jwk, "alg");
    const json_t *kid = json_object_get(jwk, "kid");
    EVP_PKEY *pk = NULL;
    bool rsa = json_str_is(kty, "RSA"), ec = json_str_is(kty, "EC");
    jwt_err_t rc;

    *skip = false;
    if ((!rsa && !ec) || (use && !json_str_is(use, "sig")) ||
        (ec && !json_str_is(json_object_get(jwk, "crv"), "P-256")) ||
        (rsa && alg && !json_str_is(alg, "RS256") &&
         (json_str_prefix(alg, "RS") || json_str_prefix(alg, "PS")))) {
        *skip = true;
        return JWT_OK;
    }
    if ((alg && !json_is_string(alg)) || (kid && !json_is_string(kid))) {
        set_why(why, "JWK alg or kid is not a string");
        return JWT_EKEY;
    }
    if (alg && !json_str_is(alg, rsa ? "RS256" : "ES256")) {
        set_why(why, "JWK alg does not match its kty");
        return JWT_EKEY;
    }
    if ((rc = rsa ? jwk_rsa(jwk, &pk, why) : jwk_ec(jwk, &pk, why)))
        return rc;
    if ((rc = key_from_pkey(k, pk, why)))
        return rc;
    if (kid)
        return key_set_kid(k, json_string_value(kid), json_string_length(kid),
                           why);
    return JWT_OK;
}

jwt_err_t jwt_keyset_add_jwks(jwt_keyset_t *ks, const char *json,
                              size_t len, size_t *added, const char **why)
{
    jwt_key_t staged[JWT_KEYSET_MAX];
    size_t i, n = 0;
    json_error_t jerr;
    json_t *doc = NULL, *keys;
    jwt_err_t rc = JWT_EKEY;

    memset(staged, 0, sizeof(staged));
    if (added)
        *added = 0;
    ERR_set_mark();
    if (len > JWT_JWKS_MAX) {
        set_why(why, "JWKS document too large");
        goto out;
    }
    doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        set_why(why, "JWKS is not an object with a \"keys\" array");
        goto out;
    }
    if (json_array_size(keys) > JWT_KEYSET_MAX) {
        set_why(why, "JWKS has too many keys");
        goto out;
    }
    for (i = 0; i < json_array_size(keys); i++) {
        const json_t *jwk = json_array_get(keys, i);
        bool skip;

        if (!json_is_object(jwk)) {
            set_why(why, "JWK is not an object");
            goto out;
        }
        if ((rc = jwk_parse(jwk, &staged[n], &skip, why)))
            goto out;
        if (!skip)
            n++;
    }
    rc = JWT_EKEY;
    if (n == 0) {
        set_why(why, "JWKS has no usable signing key");
        goto out;
    }
    if ((rc = keyset_commit(ks, staged, n, why)))
        goto out;
    if (added)
        *added = n;
out:
    for (i = 0; i <= n && i < JWT_KEYSET_MAX; i++)
        key_clear(&staged[i]);
    json_decref(doc);
    ERR_pop_to_mark();
    return rc;
}

/* ---- signatures ----------------------------------------------------------- */

static jwt_err_t hs256(const unsigned char *key, size_t klen, const void *msg,
                       size_t len, unsigned char out[HS256_LEN])
{
    size_t olen = 0;

    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen, msg, len,
                   out, HS256_LEN, &olen) || olen != HS256_LEN)
        return JWT_ENOMEM;
    return JWT_OK;
}

/* Converts a raw ES256 r || s into the DER ECDSA-Sig-Value OpenSSL wants;
 * *der is OPENSSL_malloc()ed. */
static jwt_err_t es256_to_der(const unsigned char raw[ES256_LEN],
                              unsigned char **der, size_t *der_len)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *ss = BN_bin2bn(raw + 32, 32, NULL);
    jwt_err_t rc = JWT_ENOMEM;
    int n;

    *der = NULL;
    if (!s || !r || !ss || !ECDSA_SIG_set0(s, r, ss))
        goto out;
    r = ss = NULL;          /* owned by s now */
    if ((n = i2d_ECDSA_SIG(s, der)) <= 0)
        goto out;
    *der_len = (size_t)n;
    rc = JWT_OK;
out:
    BN_free(r);
    BN_free(ss);
    ECDSA_SIG_free(s);
    return rc;
}

static jwt_err_t digest_verify(EVP_PKEY *pk, const unsigned char *sig,
                               size_t sig_len, const void *msg, size_t len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    jwt_err_t rc = JWT_ENOMEM;

    if (!ctx ||
        EVP_DigestVerifyInit_ex(ctx, NULL, "SHA256", NULL, NULL, pk, NULL) != 1)
        goto out;
    rc = EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1 ? JWT_OK
                                                              : JWT_ESIG;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Checks sig over msg with key k, using only k's pinned algorithm. A
 * signature of the wrong length for that algorithm is JWT_ESIG. */
static jwt_err_t key_verify(const jwt_key_t *k, const void *msg, size_t len,
                            const unsigned char *sig, size_t sig_len)
{
    unsigned char mac[HS256_LEN], *der;
    size_t der_len;
    jwt_err_t rc;

    switch (k->alg) {
    case JWT_HS256:
        if (sig_len != HS256_LEN)
            return JWT_ESIG;
        if ((rc = hs256(k->secret, k->secret_len, msg, len, mac)))
            return rc;
        rc = CRYPTO_memcmp(mac, sig, HS256_LEN) == 0 ? JWT_OK : JWT_ESIG;
        OPENSSL_cleanse(mac, sizeof(mac));
        return rc;
    case JWT_RS256:
        if (sig_len != (size_t)EVP_PKEY_get_size(k->pkey))
            return JWT_ESIG;
        return digest_verify(k->pkey, sig, sig_len, msg, len);
    case JWT_ES256:
        if (sig_len != ES256_LEN)
            return JWT_ESIG;
        if ((rc = es256_to_der(sig, &der, &der_len)))
            return rc;
        rc = digest_verify(k->pkey, der, der_len, msg, len);
        OPENSSL_free(der);
        return rc;
    }
    return JWT_EALG;
}

/* Chooses keys for (alg, kid) as jwt.h describes and checks the signature. */
static jwt_err_t verify_sig(const jwt_keyset_t *ks, jwt_alg_t alg,
                            const json_t *kid, const void *msg, size_t len,
                            const unsigned char *sig, size_t sig_len)
{
    const jwt_key_t *k;
    jwt_err_t rc = JWT_ENOKEY;
    size_t i, tries = 0;

    if (!jwt_keyset_has_alg(ks, alg))
        return JWT_EALG;
    if (kid) {
        if (!(k = find_kid(ks, json_string_value(kid), json_string_length(kid))))
            return JWT_ENOKEY;
        if (k->alg != alg)
            return JWT_EALG;
        return key_verify(k, msg, len, sig, sig_len);
    }
    for (i = 0; i < ks->n && tries < JWT_MAX_TRIES; i++) {
        if (ks->keys[i].alg != alg)
            continue;
        tries++;
        rc = key_verify(&ks->keys[i], msg, len, sig, sig_len);
        if (rc != JWT_ESIG)
            break;
    }
    return rc;
}

/* ---- verification ------------------------------------------------------ */

/* Parses p as a JSON object (duplicate keys refused). */
static jwt_err_t parse_object(const unsigned char *p, size_t len,
                              json_t **out)
{
    json_error_t jerr;

    *out = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out)
        return json_error_code(&jerr) == json_error_out_of_memory
                   ? JWT_ENOMEM : JWT_EMALFORMED;
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return JWT_EMALFORMED;
    }
    return JWT_OK;
}

static bool aud_contains(const json_t *aud, const char *want)
{
    size_t i;

    if (json_is_string(aud))
        return json_str_is(aud, want);
    for (i = 0; i < json_array_size(aud); i++)
        if (json_str_is(json_array_get(aud, i), want))
            return true;
    return false;
}

static jwt_err_t check_claims(const json_t *c, const jwt_opts_t *o)
{
    const json_t *exp = json_object_get(c, "exp");
    const json_t *nbf = json_object_get(c, "nbf");
    const json_t *iat = json_object_get(c, "iat");
    double now = (double)o->now, leeway = (double)o->leeway_s;

    if ((exp && !json_is_number(exp)) || (nbf && !json_is_number(nbf)) ||
        (iat && !json_is_number(iat)))
        return JWT_EMALFORMED;
    if (!exp && o->require_exp)
        return JWT_ENOEXP;
    if (exp && !(now < json_number_value(exp) + leeway))
        return JWT_EEXPIRED;
    if (nbf && now + leeway < json_number_value(nbf))
        return JWT_ENOTYET;
    if (o->issuer && !json_str_is(json_object_get(c, "iss"), o->issuer))
        return JWT_EISSUER;
    if (o->audience && !aud_contains(json_object_get(c, "aud"), o->audience))
        return JWT_EAUDIENCE;
    return JWT_OK;
}

/* Checks the header: a string alg we know, no crit, kid a string if any. */
static jwt_err_t check_header(const json_t *h, jwt_alg_t *alg,
                              const json_t **kid)
{
    const json_t *a = json_object_get(h, "alg");

    *kid = json_object_get(h, "kid");
    if (!json_is_string(a) || (*kid && !json_is_string(*kid)))
        return JWT_EMALFORMED;
    if (json_object_get(h, "crit"))
        return JWT_ECRIT;
    if (!(*alg = alg_from_name(json_string_value(a), json_string_length(a))))
        return JWT_EALG;
    return JWT_OK;
}

jwt_err_t jwt_verify(const jwt_keyset_t *ks, const char *token, size_t len,
                     const jwt_opts_t *opts, json_t **claims)
{
    unsigned char raw[JWT_MAX_TOKEN];   /* header, payload, signature */
    const char *d1, *d2;
    json_t *hdr = NULL, *body = NULL;
    const json_t *kid;
    jwt_alg_t alg;
    long hlen, slen, plen;
    jwt_err_t rc = JWT_EMALFORMED;

    assert(ks && opts && (token || len == 0));
    assert(opts->leeway_s >= 0 && opts->leeway_s <= MAX_LEEWAY);
    if (claims)
        *claims = NULL;
    if (len > JWT_MAX_TOKEN)
        return JWT_ETOOBIG;
    if (len == 0)
        return JWT_EMALFORMED;
    if (!(d1 = memchr(token, '.', len)) ||
        !(d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))) ||
        memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return JWT_EMALFORMED;
    ERR_set_mark();
    if ((hlen = b64url_decode(token, (size_t)(d1 - token), raw)) < 0 ||
        (plen = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), raw + hlen)) < 0 ||
        (slen = b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token),
                              raw + hlen + plen)) < 0)
        goto out;
    if ((rc = parse_object(raw, (size_t)hlen, &hdr)) ||
        (rc = check_header(hdr, &alg, &kid)))
        goto out;
    if ((rc = verify_sig(ks, alg, kid, token, (size_t)(d2 - token),
                         raw + hlen + plen, (size_t)slen)))
        goto out;
    if ((rc = parse_object(raw + hlen, (size_t)plen, &body)) ||
        (rc = check_claims(body, opts)))
        goto out;
    if (claims) {
        *claims = body;
        body = NULL;
    }
out:
    json_decref(hdr);
    json_decref(body);
    ERR_pop_to_mark();
    return rc;
}

/* ---- signing ------------------------------------------------------------ */

static jwt_err_t digest_sign(EVP_PKEY *pk, const void *msg, size_t len,
                             unsigned char *sig, size_t *sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    jwt_err_t rc = JWT_ENOMEM;

    if (ctx &&
        EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, pk, NULL) == 1 &&
        EVP_DigestSign(ctx, sig, sig_len, msg, len) == 1)
        rc = JWT_OK;
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Converts OpenSSL's DER ECDSA signature into the raw r || s of RFC 7518. */
static jwt_err_t es256_from_der(const unsigned char *der, size_t len,
                                unsigned char raw[ES256_LEN])
{
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &der, (long)len);
    jwt_err_t rc = JWT_ENOMEM;

    if (s && BN_bn2binpad(ECDSA_SIG_get0_r(s), raw, 32) == 32 &&
        BN_bn2binpad(ECDSA_SIG_get0_s(s), raw + 32, 32) == 32)
        rc = JWT_OK;
    ECDSA_SIG_free(s);
    return rc;
}

typedef struct signer {
    jwt_alg_t alg;
    const void *secret;     /* HS256 */
    size_t secret_len;
    EVP_PKEY *pkey;         /* RS256 / ES256 private key */
} signer_t;

static jwt_err_t sign_bytes(const signer_t *s, const void *msg, size_t len,
                            unsigned char sig[SIG_MAX], size_t *sig_len)
{
    unsigned char der[SIG_MAX];
    size_t der_len = sizeof(der);
    jwt_err_t rc;

    switch (s->alg) {
    case JWT_HS256:
        *sig_len = HS256_LEN;
        return hs256(s->secret, s->secret_len, msg, len, sig);
    case JWT_RS256:
        *sig_len = SIG_MAX;
        return digest_sign(s->pkey, msg, len, sig, sig_len);
    case JWT_ES256:
        if ((rc = digest_sign(s->pkey, msg, len, der, &der_len)))
            return rc;
        *sig_len = ES256_LEN;
        return es256_from_der(der, der_len, sig);
    }
    return JWT_EALG;
}

/* Appends base64url(JSON text of v) to b. */
static int append_json(buf_t *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    int rc;

    if (!text)
        return BUF_ENOMEM;
    rc = b64url_append(b, text, strlen(text));
    free(text);
    return rc;
}

static char *sign_token(const signer_t *s, const char *kid,
                        const json_t *claims)
{
    unsigned char sig[SIG_MAX];
    size_t sig_len;
    json_t *hdr;
    buf_t b;
    char *out = NULL;

    if (!json_is_object(claims) || (kid && strlen(kid) > JWT_MAX_KID))
        return NULL;
    ERR_set_mark();
    buf_init(&b, JWT_MAX_TOKEN);
    hdr = json_pack("{s:s, s:s}", "alg", jwt_alg_name(s->alg), "typ", "JWT");
    if (!hdr || (kid && json_object_set_new(hdr, "kid", json_string(kid))))
        goto out;
    if (append_json(&b, hdr) || buf_append_byte(&b, '.') ||
        append_json(&b, claims))
        goto out;
    if (sign_bytes(s, b.data, b.len, sig, &sig_len) ||
        buf_append_byte(&b, '.') || b64url_append(&b, sig, sig_len))
        goto out;
    out = buf_steal(&b, NULL);
out:
    json_decref(hdr);
    buf_free(&b);
    ERR_pop_to_mark();
    return out;
}

char *jwt_sign_hs256(const void *secret, size_t len, const char *kid,
                     const json_t *claims)
{
    signer_t s = { JWT_HS256, secret, len, NULL };

    if (len < JWT_HS_MIN_SECRET || len > JWT_HS_MAX_SECRET)
        return NULL;
    return sign_token(&s, kid, claims);
}

/* Signs with a private key that pkey_alg() maps to `want`. */
static char *sign_pkey(jwt_alg_t want, EVP_PKEY *key, const char *kid,
                       const json_t *claims)
{
    signer_t s = { want, NULL, 0, key };
    jwt_alg_t alg;
    char *out = NULL;

    ERR_set_mark();
    if (key && pkey_alg(key, &alg, NULL) == JWT_OK && alg == want)
        out = sign_token(&s, kid, claims);
    ERR_pop_to_mark();
    return out;
}

char *jwt_sign_rs256(EVP_PKEY *key, const char *kid, const json_t *claims)
{
    return sign_pkey(JWT_RS256, key, kid, claims);
}

char *jwt_sign_es256(EVP_PKEY *key, const char *kid, const json_t *claims)
{
    return sign_pkey(JWT_ES256, key, kid, claims);
}
