/*
 * fuzz_tokens.c - bearer token verification, peeking and minting on
 * arbitrary bytes.
 *
 * One tokens_t is built on first use and kept for the whole run (static,
 * so still reachable at exit and no leak to LeakSanitizer): own secret,
 * 30 s leeway, a key_alive that says yes, an external HS256 issuer secret
 * and a default tenant. No JWKS is configured, so no thread runs. Time is
 * a fixed NOW_MS, so every run is deterministic.
 *
 * 1. The input as a token: tokens_verify must never crash, and accepts
 *    only a token whose third segment is exactly the base64url HMAC-SHA256
 *    of "header.payload" (computed here with OpenSSL) under the secret its
 *    kid names ("sb1": own, anything else: the issuer's), so an accepted
 *    forgery aborts. tokens_peek must never crash; on 0 it gives a jti
 *    within TOKENS_JTI_MAX and an expiry in (0, year 9999].
 * 2. The input as the claims of a token this target signs, once with the
 *    own secret (kid "sb1") and once with the issuer's (no kid): when
 *    accepted, the principal is a JWT principal with a valid tenant and
 *    id, equal to "sub", that expires when "exp" says.
 * 3. An input that parses as a JSON object becomes a principal
 *    (principal_from_claims); minting a token for it and verifying that
 *    token must give back the same tenant, id and permissions.
 */
#undef NDEBUG                    /* the checks below are the point */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "auth/jwt.h"
#include "auth/principal.h"
#include "auth/tokens.h"
#include "core/base64.h"
#include "core/buf.h"

#define NOW_MS 2000000000000ll
#define LEEWAY_MS 30000
#define TTL_MS 3600000
#define TENANT "acme"

static const char own_secret[] = "own-secret-for-fuzzing-0123456789abcdef";
static const char ext_secret[] = "issuer-secret-for-fuzzing-9876543210";

static bool fz_alive(void *ctx, const char *key_id, size_t len,
                     int64_t now_ms)
{
    return true;
}

static tokens_t *fz_tokens(void)
{
    static tokens_t *t;
    tokens_cfg_t cfg = {
        .secret = own_secret,
        .secret_len = sizeof own_secret - 1,
        .leeway_ms = LEEWAY_MS,
        .key_alive = fz_alive,
        .issuer_secret = ext_secret,
        .default_tenant = TENANT,
    };
    char err[160];

    if (!t)
        t = tokens_new(&cfg, err, sizeof err);
    assert(t);
    return t;
}

/* The base64url (unpadded) HMAC-SHA256 of msg under secret into out
 * (>= 44 bytes); returns its length. */
static size_t fz_mac(const char *secret, const char *msg, size_t len,
                     char *out)
{
    unsigned char mac[32];
    size_t mlen;

    assert(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret,
                     strlen(secret), (const unsigned char *)msg, len, mac,
                     sizeof mac, &mlen) && mlen == sizeof mac);
    return base64_encode(mac, mlen, out, B64_URL);
}

/* The kid of an accepted token's header; NULL when it names none. Aborts
 * when the header cannot be read: an accepted token had one. */
static json_t *fz_header(const char *token, size_t len)
{
    const char *dot = memchr(token, '.', len);
    unsigned char raw[JWT_MAX_TOKEN];
    json_t *h;
    long n;

    assert(dot);
    n = base64_decode(token, (size_t)(dot - token), raw, sizeof raw, B64_URL);
    assert(n > 0);
    h = json_loadb((const char *)raw, (size_t)n, 0, NULL);
    assert(json_is_object(h));
    return h;
}

/* An accepted token must carry the correct signature for its kid. */
static void fz_check_signature(const char *token, size_t len)
{
    const char *last = token + len;
    json_t *h = fz_header(token, len);
    const json_t *kid = json_object_get(h, "kid"), *alg;
    const char *secret = ext_secret;
    char want[48];
    size_t wn, sn;

    alg = json_object_get(h, "alg");
    assert(json_is_string(alg) && strcmp(json_string_value(alg), "HS256") == 0);
    if (json_is_string(kid) && json_string_length(kid) == 3 &&
        memcmp(json_string_value(kid), TOKENS_KID, 3) == 0)
        secret = own_secret;
    while (last > token && last[-1] != '.')
        last--;
    assert(last > token);
    sn = len - (size_t)(last - token);
    wn = fz_mac(secret, token, (size_t)(last - token) - 1, want);
    assert(sn == wn && memcmp(last, want, wn) == 0);
    json_decref(h);
}

static void fz_check_principal(const principal_t *p)
{
    assert(p->kind == PRINCIPAL_JWT && !p->superadmin);
    assert(p->tenant_len == strlen(p->tenant) &&
           principal_valid_tenant(p->tenant, p->tenant_len));
    assert(p->id_len == strlen(p->id) &&
           principal_valid_id(p->id, p->id_len));
    assert(p->expires_ms > 0 && NOW_MS < p->expires_ms + LEEWAY_MS);
}

static void fz_as_token(tokens_t *t, const char *s, size_t len)
{
    char jti[TOKENS_JTI_MAX + 1];
    principal_t *p = (principal_t *)1;
    const char *why = NULL;
    int64_t exp = -1;

    if (tokens_verify(t, s, len, NOW_MS, &p, &why) == TOKENS_OK) {
        fz_check_signature(s, len);
        fz_check_principal(p);
        principal_unref(p);
    } else {
        assert(p == NULL && why != NULL);
    }
    memset(jti, 'X', sizeof jti);
    if (tokens_peek(s, len, jti, &exp) == 0) {
        assert(memchr(jti, 0, sizeof jti) != NULL);
        assert(exp > 0 && exp <= 253402300799000ll);
    }
}

static void fz_b64url(buf_t *b, const void *p, size_t n)
{
    assert(base64_append(b, p, n, B64_URL) == 0);
}

/* Signs the input as claims with secret (kid when not NULL) and checks what
 * an acceptance promises. */
static void fz_as_claims(tokens_t *t, const char *secret, const char *hdr,
                         const uint8_t *data, size_t size)
{
    char mac[48];
    principal_t *p = NULL;
    json_t *c, *sub, *exp;
    size_t mn;
    buf_t b;

    buf_init(&b, 4 * JWT_MAX_TOKEN);
    fz_b64url(&b, hdr, strlen(hdr));
    assert(buf_append_byte(&b, '.') == 0);
    fz_b64url(&b, data, size);
    mn = fz_mac(secret, b.data, b.len, mac);
    assert(buf_append_byte(&b, '.') == 0 && buf_append(&b, mac, mn) == 0);
    if (tokens_verify(t, b.data, b.len, NOW_MS, &p, NULL) == TOKENS_OK) {
        fz_check_principal(p);
        c = json_loadb((const char *)data, size, 0, NULL);
        sub = json_object_get(c, "sub");
        exp = json_object_get(c, "exp");
        assert(json_is_string(sub) && json_string_length(sub) == p->id_len &&
               memcmp(json_string_value(sub), p->id, p->id_len) == 0);
        assert(json_is_number(exp) &&
               (double)p->expires_ms / 1000.0 <= json_number_value(exp) &&
               json_number_value(exp) < (double)p->expires_ms / 1000.0 + 1);
        json_decref(c);
        principal_unref(p);
    }
    buf_free(&b);
}

/* principal_from_claims on the input, then a mint / verify round trip. */
static void fz_mint(tokens_t *t, const uint8_t *data, size_t size)
{
    char jti[TOKENS_JTI_MAX + 1], err[PERM_ERR_LEN];
    principal_t *p = NULL, *back = NULL;
    json_t *c = json_loadb((const char *)data, size, 0, NULL);
    json_t *s1, *s2;
    char *token = NULL;
    int64_t exp = 0;

    if (!json_is_object(c) ||
        principal_from_claims(c, TENANT, &p, err, sizeof err) != 0)
        goto out;
    if (tokens_mint(t, p, NOW_MS, TTL_MS, &token, jti, &exp) != 0) {
        assert(token == NULL);
        assert(p->expires_ms != 0 && p->expires_ms < NOW_MS + 1000);
        goto out;
    }
    assert(exp > NOW_MS && exp <= NOW_MS + TTL_MS && exp % 1000 == 0);
    assert(strlen(jti) > 0 && strlen(jti) <= TOKENS_JTI_MAX);
    assert(tokens_verify(t, token, strlen(token), NOW_MS, &back, NULL) ==
           TOKENS_OK);
    fz_check_signature(token, strlen(token));
    assert(back->tenant_len == p->tenant_len &&
           memcmp(back->tenant, p->tenant, p->tenant_len) == 0);
    assert(back->id_len == p->id_len &&
           memcmp(back->id, p->id, p->id_len) == 0);
    assert(back->expires_ms == exp && strcmp(back->jti, jti) == 0);
    s1 = perm_to_spec(&p->perm);
    s2 = perm_to_spec(&back->perm);
    assert(s1 && s2 && json_equal(s1, s2));
    json_decref(s1);
    json_decref(s2);
out:
    free(token);
    principal_unref(back);
    principal_unref(p);
    json_decref(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tokens_t *t = fz_tokens();

    if (size > JWT_MAX_TOKEN)
        return 0;
    fz_as_token(t, (const char *)data, size);
    fz_as_claims(t, own_secret, "{\"alg\":\"HS256\",\"kid\":\"sb1\"}", data,
                 size);
    fz_as_claims(t, ext_secret, "{\"alg\":\"HS256\"}", data, size);
    if (size > 0 && data[0] == '{')
        fz_mint(t, data, size);
    return 0;
}
