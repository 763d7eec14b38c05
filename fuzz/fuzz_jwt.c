/*
 * fuzz_jwt.c - JWT verification and JWKS loading on arbitrary bytes.
 *
 * 1. The input as a token, against a fixed key set (an HS256 secret with
 *    kid "hs", a P-256 public key with kid "ec"): jwt_verify must never
 *    crash and must never return JWT_OK. The options require an unexpired
 *    token from a fixed issuer and audience, and every seed in the corpus,
 *    though properly signed with these keys, breaks one claim rule; so an
 *    accepted input would be a forged signature or a broken claim check,
 *    and aborts.
 * 2. The input as the payload of a token this target signs itself with the
 *    HS256 secret, so the claim checks see arbitrary JSON behind a valid
 *    signature: when jwt_verify accepts, the claims it returns must
 *    satisfy every rule (checked here with jansson directly).
 * 3. An input that looks like a JSON object is also loaded as a JWKS
 *    document into a fresh key set: no crash, no leak, and a load either
 *    fails leaving the set empty or adds 1..JWT_KEYSET_MAX keys.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth/jwt.h"
#include "core/buf.h"

#define NOW 2000000000
#define LEEWAY 60
#define ISSUER "https://issuer.example"
#define AUDIENCE "switchboard"

static const char hs_secret[] = "fuzz-secret-0123456789abcdefghijklmnop";
static const char ec_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMiDnd7R2uXP0hhOhP5+kSA2g/Zvy\n"
    "caox6G27kcfiNZTEeNlq3BxTTyO2iJebK1OHYSllq8yH0VJHraoG3uncWg==\n"
    "-----END PUBLIC KEY-----\n";

static const jwt_opts_t opts = {
    .now = NOW,
    .leeway_s = LEEWAY,
    .require_exp = true,
    .issuer = ISSUER,
    .audience = AUDIENCE,
};

static jwt_keyset_t *fixed_keyset(void)
{
    static jwt_keyset_t *ks;

    if (ks)
        return ks;
    ks = jwt_keyset_new();
    if (!ks ||
        jwt_keyset_add_secret(ks, "hs", hs_secret, strlen(hs_secret), NULL) ||
        jwt_keyset_add_pem(ks, "ec", ec_pem, strlen(ec_pem), NULL))
        abort();
    return ks;
}

static void b64url(buf_t *b, const void *p, size_t n)
{
    size_t cap = (n + 2) / 3 * 4 + 1, i, o = 0;
    char *tmp = malloc(cap);
    int len;

    if (!tmp)
        abort();
    len = EVP_EncodeBlock((unsigned char *)tmp, p, (int)n);
    for (i = 0; i < (size_t)len && tmp[i] != '='; i++)
        tmp[o++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : tmp[i];
    if (buf_append(b, tmp, o))
        abort();
    free(tmp);
}

static int is_audience(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) == strlen(AUDIENCE) &&
           memcmp(json_string_value(v), AUDIENCE, strlen(AUDIENCE)) == 0;
}

static int aud_ok(const json_t *aud)
{
    size_t i;

    if (is_audience(aud))
        return 1;
    for (i = 0; i < json_array_size(aud); i++)
        if (is_audience(json_array_get(aud, i)))
            return 1;
    return 0;
}

/* Every rule jwt.h promises for an accepted token, checked independently. */
static void check_accepted(const json_t *c)
{
    const json_t *exp = json_object_get(c, "exp");
    const json_t *nbf = json_object_get(c, "nbf");
    const json_t *iat = json_object_get(c, "iat");
    const json_t *iss = json_object_get(c, "iss");

    if (!json_is_object(c) || !json_is_number(exp) ||
        !((double)NOW < json_number_value(exp) + LEEWAY))
        abort();
    if (nbf && (!json_is_number(nbf) ||
                (double)NOW + LEEWAY < json_number_value(nbf)))
        abort();
    if (iat && !json_is_number(iat))
        abort();
    if (!json_is_string(iss) || json_string_length(iss) != strlen(ISSUER) ||
        strcmp(json_string_value(iss), ISSUER) != 0)
        abort();
    if (!aud_ok(json_object_get(c, "aud")))
        abort();
}

static void fuzz_as_payload(const jwt_keyset_t *ks, const uint8_t *data,
                            size_t size)
{
    static const char hdr[] = "{\"alg\":\"HS256\",\"kid\":\"hs\"}";
    unsigned char mac[32];
    size_t mlen;
    json_t *claims = NULL;
    buf_t b;

    if (size > JWT_MAX_TOKEN)
        return;
    buf_init(&b, 4 * JWT_MAX_TOKEN);
    b64url(&b, hdr, strlen(hdr));
    buf_append_byte(&b, '.');
    b64url(&b, data, size);
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, hs_secret,
                   strlen(hs_secret), (unsigned char *)b.data, b.len, mac,
                   sizeof(mac), &mlen))
        abort();
    buf_append_byte(&b, '.');
    b64url(&b, mac, mlen);
    if (jwt_verify(ks, b.data, b.len, &opts, &claims) == JWT_OK) {
        if (b.len > JWT_MAX_TOKEN)
            abort();
        check_accepted(claims);
        json_decref(claims);
    } else if (claims) {
        abort();
    }
    buf_free(&b);
}

static void fuzz_as_jwks(const uint8_t *data, size_t size)
{
    jwt_keyset_t *ks = jwt_keyset_new();
    size_t added = 99;
    jwt_err_t rc;

    if (!ks)
        abort();
    rc = jwt_keyset_add_jwks(ks, (const char *)data, size, &added, NULL);
    if (rc == JWT_OK ? added == 0 || added > JWT_KEYSET_MAX ||
                           added != jwt_keyset_count(ks)
                     : added != 0 || jwt_keyset_count(ks) != 0)
        abort();
    jwt_keyset_free(ks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const jwt_keyset_t *ks = fixed_keyset();
    json_t *claims = (json_t *)1;

    if (jwt_verify(ks, (const char *)data, size, &opts, &claims) == JWT_OK ||
        claims != NULL)
        abort();
    fuzz_as_payload(ks, data, size);
    if (size > 0 && data[0] == '{')
        fuzz_as_jwks(data, size);
    return 0;
}
