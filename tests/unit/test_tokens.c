/*
 * test_tokens.c - own and external bearer tokens: minting, routing by kid,
 * every refusal, JWKS files and URLs with rotation, revocation.
 *
 * Keys are generated once per run (EVP_PKEY_Q_keygen). Tokens the signer
 * would never write (alg none, HS256 over a PEM) are built by tok_raw().
 * The JWKS URL is served by srv_*, a one-thread HTTP/1.1 server on
 * 127.0.0.1 that answers every GET with the current body and status (or
 * holds the connection open, to test shutdown during a fetch), and counts
 * requests so a test can wait for a refresh. Time: tokens carry real
 * clock seconds (NOW), because revocations are purged by the wall clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwt.h"
#include "auth/tokens.h"
#include "core/base64.h"
#include "core/buf.h"
#include "core/clock.h"

#define S(lit) lit, (sizeof(lit) - 1)
#define SECRET "0123456789abcdef0123456789abcdef"    /* own, 32 bytes */
#define ISECRET "issuer-secret-issuer-secret-12345"  /* external */
#define OTHER "another-secret-another-secret-123"
#define HOUR_MS 3600000ll
#define LEEWAY_MS 30000

static EVP_PKEY *g_rsa, *g_rsa2, *g_ec, *g_ec2;
static int64_t NOW;                 /* ms, whole seconds, real clock */
static char g_dir[64];

/* ---- helpers ----------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

static tokens_cfg_t cfg_base(void)
{
    tokens_cfg_t c = { .secret = SECRET, .secret_len = 32,
                       .leeway_ms = LEEWAY_MS, .default_tenant = "acme" };
    return c;
}

static tokens_t *new_ok(const tokens_cfg_t *c)
{
    char err[256] = "";
    tokens_t *t = tokens_new(c, err, sizeof(err));

    if (!t)
        fail_msg("tokens_new: %s", err);
    return t;
}

/* tokens_new must fail with an error containing want. */
static void new_fails(const tokens_cfg_t *c, const char *want)
{
    char err[256] = "";
    tokens_t *t = tokens_new(c, err, sizeof(err));

    assert_null(t);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
    assert_null(strstr(err, "127.0.0.1"));      /* never the URL */
    assert_null(strstr(err, SECRET));
}

static principal_t *principal(bool superadmin, int64_t expires_ms)
{
    char err[PERM_ERR_LEN];
    json_t *spec = json_loads("{\"publish\":[\"webhooks.>\"],"
                              "\"subscribe\":[\">\"],\"history\":[],"
                              "\"admin\":true}", 0, NULL);
    perm_t perm;
    principal_t *p;

    assert_non_null(spec);
    assert_int_equal(perm_from_spec(spec, &perm, err, sizeof(err)), 0);
    json_decref(spec);
    p = principal_new(PRINCIPAL_API_KEY, S("acme"), S("key123"), &perm,
                      superadmin, expires_ms);
    assert_non_null(p);
    return p;
}

/* Claims {"sub":"alice","exp":NOW+1h} plus the members of extra. */
static json_t *claims(const char *extra)
{
    json_t *c = json_pack("{s:s, s:I}", "sub", "alice",
                          "exp", (json_int_t)(NOW / 1000 + 3600));
    json_t *x = json_loads(extra ? extra : "{}", 0, NULL);

    assert_non_null(c);
    assert_non_null(x);
    assert_int_equal(json_object_update(c, x), 0);
    json_decref(x);
    return c;
}

/* Signs claims(extra) with HS256 and secret s (kid may be NULL). */
static char *tok_hs(const char *s, const char *kid, const char *extra)
{
    json_t *c = claims(extra);
    char *tok = jwt_sign_hs256(s, strlen(s), kid, c);

    json_decref(c);
    assert_non_null(tok);
    return tok;
}

/* An own-style token: kid sb1, iss switchboard, a jti. */
static char *tok_own(const char *s, const char *extra)
{
    json_t *c = claims("{\"iss\":\"switchboard\",\"jti\":\"j1\"}");
    json_t *x = json_loads(extra ? extra : "{}", 0, NULL);
    char *tok;

    assert_int_equal(json_object_update(c, x), 0);
    tok = jwt_sign_hs256(s, strlen(s), TOKENS_KID, c);
    json_decref(c);
    json_decref(x);
    assert_non_null(tok);
    return tok;
}

static char *tok_pk(EVP_PKEY *k, const char *kid, const char *extra)
{
    json_t *c = claims(extra);
    char *tok = EVP_PKEY_is_a(k, "RSA") ? jwt_sign_rs256(k, kid, c)
                                        : jwt_sign_es256(k, kid, c);

    json_decref(c);
    assert_non_null(tok);
    return tok;
}

/* Any header and payload text, HMAC-signed with key (NULL: no signature). */
static char *tok_raw(const char *hdr, const char *payload, const void *key,
                     size_t klen)
{
    unsigned char mac[32];
    size_t mlen = 0;
    buf_t b;

    buf_init(&b, 1 << 16);
    assert_int_equal(base64_append(&b, hdr, strlen(hdr), B64_URL), 0);
    assert_int_equal(buf_append_byte(&b, '.'), 0);
    assert_int_equal(base64_append(&b, payload, strlen(payload), B64_URL), 0);
    if (key)
        assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key,
                                  klen, (unsigned char *)b.data, b.len, mac,
                                  sizeof(mac), &mlen));
    assert_int_equal(buf_append_byte(&b, '.'), 0);
    assert_int_equal(base64_append(&b, mac, mlen, B64_URL), 0);
    return buf_steal(&b, NULL);
}

/* Verifies tok at now_ms; checks the result and returns the principal. */
static principal_t *verify(tokens_t *t, const char *tok, int64_t now_ms,
                           tokens_result_t want)
{
    principal_t *p = NULL;
    const char *why = NULL;
    tokens_result_t r = tokens_verify(t, tok, strlen(tok), now_ms, &p, &why);

    if (r != want)
        fail_msg("tokens_verify: %d (%s), want %d", r, why, want);
    assert_non_null(why);
    if (want != TOKENS_OK)
        assert_null(p);
    else
        assert_non_null(p);
    return p;
}

static void verify_free(tokens_t *t, const char *tok, tokens_result_t want)
{
    principal_unref(verify(t, tok, NOW, want));
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

static char *b64(const void *p, size_t n)
{
    char *out = malloc(base64_encoded_len(n, B64_URL) + 1);

    assert_non_null(out);
    base64_encode(p, n, out, B64_URL);
    return out;
}

/* The public JWK of k (RSA or P-256), kid may be NULL. */
static json_t *jwk_of(EVP_PKEY *k, const char *kid)
{
    unsigned char buf[1024];
    char *a, *b;
    json_t *j;

    if (EVP_PKEY_is_a(k, "RSA")) {
        BIGNUM *n = NULL, *e = NULL;

        assert_true(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n));
        assert_true(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e));
        a = b64(buf, (size_t)BN_bn2bin(n, buf));
        b = b64(buf, (size_t)BN_bn2bin(e, buf));
        j = json_pack("{s:s, s:s, s:s}", "kty", "RSA", "n", a, "e", b);
        BN_free(n);
        BN_free(e);
    } else {
        size_t len = 0;

        assert_int_equal(EVP_PKEY_get_octet_string_param(
                             k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf, 65,
                             &len), 1);
        a = b64(buf + 1, 32);
        b = b64(buf + 33, 32);
        j = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256",
                      "x", a, "y", b);
    }
    free(a);
    free(b);
    assert_non_null(j);
    if (kid)
        assert_int_equal(json_object_set_new(j, "kid", json_string(kid)), 0);
    return j;
}

/* {"keys":[...]} of up to two (key, kid) pairs; k2 may be NULL. */
static char *jwks(EVP_PKEY *k1, const char *kid1, EVP_PKEY *k2,
                  const char *kid2)
{
    json_t *keys = json_array(), *doc;
    char *text;

    json_array_append_new(keys, jwk_of(k1, kid1));
    if (k2)
        json_array_append_new(keys, jwk_of(k2, kid2));
    doc = json_pack("{s:o}", "keys", keys);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    assert_non_null(text);
    return text;
}

/* Writes text to g_dir/name (atomically: temp file and rename). */
static char *write_file(const char *name, const char *text)
{
    char tmp[128], *path = malloc(128);
    FILE *f;

    assert_non_null(path);
    snprintf(path, 128, "%s/%s", g_dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
    return path;
}

/* ---- a tiny HTTP server ------------------------------------------------ */

typedef struct srv {
    int lfd, port, held;
    pthread_t th;
    pthread_mutex_t mu;
    char *body;                     /* owned */
    int status;
    bool stall;                     /* read the request, never answer */
    atomic_int hits;
    atomic_bool stop;
    char url[64];
} srv_t;

static void srv_set(srv_t *s, int status, const char *body, bool stall)
{
    pthread_mutex_lock(&s->mu);
    free(s->body);
    s->body = strdup(body);
    s->status = status;
    s->stall = stall;
    pthread_mutex_unlock(&s->mu);
}

static void srv_send(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void srv_answer(srv_t *s, int fd)
{
    char req[4096];
    size_t got = 0;
    struct pollfd pf = { fd, POLLIN, 0 };
    buf_t b;

    while (got < sizeof(req) - 1 && poll(&pf, 1, 2000) == 1) {
        ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);

        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = 0;
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    atomic_fetch_add(&s->hits, 1);
    pthread_mutex_lock(&s->mu);
    if (s->stall) {
        if (s->held >= 0)
            close(s->held);
        s->held = fd;
        pthread_mutex_unlock(&s->mu);
        return;
    }
    buf_init(&b, 1 << 20);
    buf_printf(&b, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s"
               "Connection: close\r\n\r\n%s", s->status, strlen(s->body),
               s->status == 302 ? "Location: /elsewhere\r\n" : "", s->body);
    pthread_mutex_unlock(&s->mu);
    srv_send(fd, b.data, b.len);
    buf_free(&b);
    close(fd);
}

static void *srv_main(void *arg)
{
    srv_t *s = arg;

    while (!atomic_load(&s->stop)) {
        struct pollfd pf = { s->lfd, POLLIN, 0 };
        int fd;

        if (poll(&pf, 1, 20) != 1 || (fd = accept(s->lfd, NULL, NULL)) < 0)
            continue;
        srv_answer(s, fd);
    }
    return NULL;
}

static srv_t *srv_start(int status, const char *body)
{
    srv_t *s = calloc(1, sizeof(*s));
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t alen = sizeof(a);

    assert_non_null(s);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->held = -1;
    pthread_mutex_init(&s->mu, NULL);
    srv_set(s, status, body, false);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/jwks", s->port);
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
    return s;
}

static void srv_stop(srv_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    if (s->held >= 0)
        close(s->held);
    close(s->lfd);
    pthread_mutex_destroy(&s->mu);
    free(s->body);
    free(s);
}

/* Polls tok every 50 ms (at most 5 s) until it verifies as want. */
static void wait_verify(tokens_t *t, const char *tok, tokens_result_t want)
{
    principal_t *p = NULL;
    int i;

    for (i = 0; i < 100; i++) {
        tokens_result_t r = tokens_verify(t, tok, strlen(tok), NOW, &p, NULL);

        principal_unref(p);
        if (r == want)
            break;
        sleep_ms(50);
    }
    assert_true(i < 100);
}

static int group_setup(void **state)
{
    NOW = clock_now_ms() / 1000 * 1000;
    snprintf(g_dir, sizeof(g_dir), "/tmp/test_tokens.XXXXXX");
    g_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g_rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    g_ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return g_rsa && g_rsa2 && g_ec && g_ec2 && mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    static const char *const files[] = { "key.pem", "rsa.pem", "jwks.json",
                                         "rot.json", "dup.json", "garbage" };
    char path[128];
    size_t i;

    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_rsa2);
    EVP_PKEY_free(g_ec);
    EVP_PKEY_free(g_ec2);
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", g_dir, files[i]);
        unlink(path);
    }
    return rmdir(g_dir);
}

/* ---- own tokens -------------------------------------------------------- */

static void test_mint_roundtrip(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    principal_t *k = principal(true, 0), *p;
    char *tok, jti[TOKENS_JTI_MAX + 1], pjti[TOKENS_JTI_MAX + 1];
    int64_t exp_ms, pexp;

    assert_int_equal(tokens_mint(t, k, NOW + 250, HOUR_MS, &tok, jti,
                                 &exp_ms), 0);
    assert_int_equal(strlen(jti), 22);
    assert_int_equal(exp_ms, NOW + HOUR_MS);
    p = verify(t, tok, NOW + 1000, TOKENS_OK);
    assert_int_equal(p->kind, PRINCIPAL_JWT);
    assert_string_equal(p->tenant, "acme");
    assert_string_equal(p->id, "key123");
    assert_int_equal(p->perm.publish.n, 1);
    assert_string_equal(p->perm.publish.v[0].s, "webhooks.>");
    assert_int_equal(p->perm.subscribe.n, 1);
    assert_int_equal(p->perm.history.n, 0);
    assert_true(p->perm.admin);
    assert_false(p->superadmin);            /* never carried by a token */
    assert_int_equal(p->expires_ms, exp_ms);
    assert_int_equal(tokens_peek(tok, strlen(tok), pjti, &pexp), 0);
    assert_string_equal(pjti, jti);
    assert_int_equal(pexp, exp_ms);
    principal_unref(p);
    free(tok);
    assert_int_equal(tokens_mint(t, k, NOW, HOUR_MS, &tok, pjti, &pexp), 0);
    assert_string_not_equal(pjti, jti);     /* fresh random jti */
    free(tok);
    principal_unref(k);
    tokens_free(t);
}

static void test_mint_expiry_cut(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    principal_t *k = principal(false, NOW + 60500);
    char *tok = NULL, jti[TOKENS_JTI_MAX + 1];
    int64_t exp_ms;

    assert_int_equal(tokens_mint(t, k, NOW, HOUR_MS, &tok, jti, &exp_ms), 0);
    assert_int_equal(exp_ms, NOW + 60000);   /* cut to the key, whole s */
    free(tok);
    assert_int_equal(tokens_mint(t, k, NOW, 0, &tok, jti, &exp_ms), -1);
    assert_null(tok);
    assert_int_equal(tokens_mint(t, k, NOW, -5, &tok, jti, &exp_ms), -1);
    assert_int_equal(tokens_mint(t, k, NOW + 60000, HOUR_MS, &tok, jti,
                                 &exp_ms), -1);   /* key already expired */
    assert_int_equal(tokens_mint(t, k, NOW, 500, &tok, jti, &exp_ms), -1);
    principal_unref(k);
    tokens_free(t);
}

static void test_expiry_and_leeway(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t;
    principal_t *k = principal(false, 0);
    char *tok, jti[TOKENS_JTI_MAX + 1];
    int64_t exp_ms;
    const char *why = NULL;
    principal_t *p = NULL;

    c.leeway_ms = 1500;                      /* rounds up to 2 s */
    t = new_ok(&c);
    assert_int_equal(tokens_mint(t, k, NOW, 10000, &tok, jti, &exp_ms), 0);
    principal_unref(verify(t, tok, exp_ms - 1, TOKENS_OK));
    principal_unref(verify(t, tok, exp_ms + 1999, TOKENS_OK));
    verify(t, tok, exp_ms + 2000, TOKENS_EEXPIRED);
    assert_int_equal(tokens_verify(t, tok, strlen(tok), exp_ms + HOUR_MS,
                                   &p, &why), TOKENS_EEXPIRED);
    assert_string_equal(why, "token expired");
    free(tok);
    principal_unref(k);
    tokens_free(t);
}

static void test_nbf_future(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    char extra[64], *tok;

    snprintf(extra, sizeof(extra), "{\"nbf\":%lld}",
             (long long)(NOW / 1000 + 100));
    tok = tok_own(SECRET, extra);
    verify(t, tok, NOW, TOKENS_EEXPIRED);
    verify(t, tok, NOW + 100000 - LEEWAY_MS - 1000, TOKENS_EEXPIRED);
    principal_unref(verify(t, tok, NOW + 100000 - LEEWAY_MS, TOKENS_OK));
    free(tok);
    tokens_free(t);
}

static void test_tampered(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    char *tok = tok_own(SECRET, NULL), *dot;
    size_t n = strlen(tok);

    verify_free(t, tok, TOKENS_OK);
    tok[n - 2] = tok[n - 2] == 'A' ? 'B' : 'A';     /* signature */
    verify(t, tok, NOW, TOKENS_EINVALID);
    tok[n - 2] = tok[n - 2] == 'A' ? 'B' : 'A';
    dot = strchr(tok, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';              /* payload */
    verify(t, tok, NOW, TOKENS_EINVALID);
    free(tok);
    tokens_free(t);
}

static void test_alg_none(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t;
    char *pl = tok_own(SECRET, NULL), payload[512], *tok;
    unsigned char raw[512];
    const char *d1 = strchr(pl, '.') + 1;
    long n = base64_decode(d1, (size_t)(strchr(d1, '.') - d1), raw,
                           sizeof(raw) - 1, B64_URL);

    assert_true(n > 0);
    memcpy(payload, raw, (size_t)n);
    payload[n] = 0;
    c.issuer_secret = ISECRET;
    t = new_ok(&c);
    tok = tok_raw("{\"alg\":\"none\",\"kid\":\"sb1\"}", payload, NULL, 0);
    verify(t, tok, NOW, TOKENS_EINVALID);
    free(tok);
    tok = tok_raw("{\"alg\":\"none\"}", payload, NULL, 0);
    verify(t, tok, NOW, TOKENS_EINVALID);
    free(tok);
    tok = tok_raw("{\"alg\":\"none\",\"kid\":\"sb1\"}", payload, S(SECRET));
    verify(t, tok, NOW, TOKENS_EINVALID);
    free(tok);
    free(pl);
    tokens_free(t);
}

static void test_wrong_secret(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    char *tok = tok_own(OTHER, NULL);
    principal_t *p = NULL;
    const char *why = NULL;

    assert_int_equal(tokens_verify(t, tok, strlen(tok), NOW, &p, &why),
                     TOKENS_EINVALID);
    assert_string_equal(why, "bad signature");
    free(tok);
    tok = tok_own(SECRET, "{\"iss\":\"evil\"}");    /* right key, wrong iss */
    verify(t, tok, NOW, TOKENS_EINVALID);
    free(tok);
    tokens_free(t);
}

/* Own kid signed by the external secret, external token signed by ours:
 * each set answers only for its own tokens. */
static void test_no_confusion_between_sets(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c), *x;
    char *own_by_ext = tok_own(ISECRET, NULL);
    char *ext_by_own = tok_hs(SECRET, NULL, NULL);
    char *ext_by_own_kid = tok_hs(SECRET, "ext1", NULL);
    char *ext = tok_hs(ISECRET, NULL, NULL);
    principal_t *p = NULL;
    const char *why = NULL;

    assert_int_equal(tokens_verify(t, ext, strlen(ext), NOW, &p, &why),
                     TOKENS_EINVALID);
    assert_string_equal(why, "no external issuer configured");
    c.issuer_secret = ISECRET;
    x = new_ok(&c);
    verify(x, own_by_ext, NOW, TOKENS_EINVALID);
    verify(x, ext_by_own, NOW, TOKENS_EINVALID);
    verify(x, ext_by_own_kid, NOW, TOKENS_EINVALID);
    p = verify(x, ext, NOW, TOKENS_OK);
    assert_string_equal(p->id, "alice");
    assert_string_equal(p->tenant, "acme");         /* default tenant */
    assert_int_equal(p->expires_ms, NOW + HOUR_MS);
    principal_unref(p);
    c.issuer_secret = SECRET;                       /* same as ours */
    new_fails(&c, "must differ");
    free(own_by_ext);
    free(ext_by_own);
    free(ext_by_own_kid);
    free(ext);
    tokens_free(t);
    tokens_free(x);
}

static void test_malformed(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    char big[JWT_MAX_TOKEN + 2];
    char *bad_kid = tok_raw("{\"alg\":\"HS256\",\"kid\":7}", "{}", S(SECRET));
    static const char *const bad[] = { "", "a", "a.b", "a.b.c.d", "!!.e30.",
                                       "e30.e30", "W10.e30.AA" };
    principal_t *p = (principal_t *)1;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        verify(t, bad[i], NOW, TOKENS_EMALFORMED);
    verify(t, bad_kid, NOW, TOKENS_EMALFORMED);
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    big[10] = big[20] = '.';
    verify(t, big, NOW, TOKENS_EMALFORMED);
    assert_int_equal(tokens_verify(t, NULL, 0, NOW, &p, NULL),
                     TOKENS_EMALFORMED);
    assert_null(p);
    free(bad_kid);
    tokens_free(t);
}

/* ---- external: PEM ------------------------------------------------------ */

static void pem_case(EVP_PKEY *good, EVP_PKEY *wrong)
{
    tokens_cfg_t c = cfg_base();
    char *pem = pem_pub(good), *path = write_file("key.pem", pem);
    char *tok = tok_pk(good, NULL, "{\"tenant\":\"t9\",\"scope\":"
                                   "\"subscribe:orders.>\"}");
    char *bad = tok_pk(wrong, NULL, NULL);
    tokens_t *t;
    principal_t *p;

    c.public_key_file = path;
    t = new_ok(&c);
    p = verify(t, tok, NOW, TOKENS_OK);
    assert_string_equal(p->tenant, "t9");
    assert_int_equal(p->perm.subscribe.n, 1);
    assert_string_equal(p->perm.subscribe.v[0].s, "orders.>");
    principal_unref(p);
    verify(t, bad, NOW, TOKENS_EINVALID);
    tokens_free(t);
    free(pem);
    free(path);
    free(tok);
    free(bad);
}

static void test_pem_rs256(void **state)
{
    pem_case(g_rsa, g_rsa2);
}

static void test_pem_es256(void **state)
{
    pem_case(g_ec, g_ec2);
}

/* HS256 "signed" with the RSA public key PEM as the HMAC secret. */
static void test_alg_confusion(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *pem = pem_pub(g_rsa), *path = write_file("rsa.pem", pem), *tok;
    json_t *cl = claims(NULL);
    tokens_t *t;

    c.public_key_file = path;
    t = new_ok(&c);
    tok = jwt_sign_hs256(pem, strlen(pem), NULL, cl);
    json_decref(cl);
    assert_non_null(tok);
    verify(t, tok, NOW, TOKENS_EINVALID);
    free(tok);
    tok = tok_raw("{\"alg\":\"HS256\",\"kid\":\"sb1\"}", "{\"sub\":\"x\"}",
                  pem, strlen(pem));
    verify(t, tok, NOW, TOKENS_EINVALID);
    free(tok);
    free(pem);
    free(path);
    tokens_free(t);
}

/* ---- external: JWKS ---------------------------------------------------- */

static void test_jwks_file(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *doc = jwks(g_rsa, "r1", g_ec, "e1");
    char *path = write_file("jwks.json", doc);
    char *r1 = tok_pk(g_rsa, "r1", NULL), *e1 = tok_pk(g_ec, "e1", NULL);
    char *e1_as_r1 = tok_pk(g_ec, "r1", NULL), *x = tok_pk(g_rsa2, "x", NULL);
    tokens_t *t;

    c.jwks_file = path;
    c.jwks_refresh_ms = 24 * HOUR_MS;
    t = new_ok(&c);
    verify_free(t, r1, TOKENS_OK);
    verify_free(t, e1, TOKENS_OK);
    verify(t, e1_as_r1, NOW, TOKENS_EINVALID);
    verify(t, x, NOW, TOKENS_EINVALID);
    tokens_free(t);
    free(doc);
    free(path);
    free(r1);
    free(e1);
    free(e1_as_r1);
    free(x);
}

/* A key without kid rotated on disk: only the periodic reload finds it. */
static void test_jwks_file_periodic(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *doc = jwks(g_ec, NULL, NULL, NULL), *doc2;
    char *path = write_file("rot.json", doc);
    char *tok = tok_pk(g_ec2, NULL, NULL);
    tokens_t *t;

    c.jwks_file = path;
    c.jwks_refresh_ms = 50;
    t = new_ok(&c);
    verify(t, tok, NOW, TOKENS_EINVALID);
    doc2 = jwks(g_ec2, NULL, NULL, NULL);
    free(write_file("rot.json", doc2));
    wait_verify(t, tok, TOKENS_OK);
    free(write_file("rot.json", "not json"));   /* failed reload keeps */
    sleep_ms(200);
    verify_free(t, tok, TOKENS_OK);
    tokens_free(t);
    free(doc);
    free(doc2);
    free(path);
    free(tok);
}

static void test_jwks_url_rotation(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *d1 = jwks(g_rsa, "r1", NULL, NULL), *d2 = jwks(g_rsa, "r1", g_rsa2,
                                                         "r2");
    srv_t *s = srv_start(200, d1);
    char *r1 = tok_pk(g_rsa, "r1", NULL), *r2 = tok_pk(g_rsa2, "r2", NULL);
    char *e3 = tok_pk(g_ec, "e3", NULL);
    tokens_t *t;
    int hits;

    c.jwks_url = s->url;
    c.jwks_refresh_ms = 24 * HOUR_MS;
    c.jwks_min_refresh_ms = 300;
    t = new_ok(&c);
    assert_int_equal(atomic_load(&s->hits), 1);
    verify_free(t, r1, TOKENS_OK);
    srv_set(s, 200, d2, false);
    verify(t, r2, NOW, TOKENS_EINVALID);        /* asks for a refresh */
    wait_verify(t, r2, TOKENS_OK);
    assert_true(atomic_load(&s->hits) >= 2);
    verify_free(t, r1, TOKENS_OK);
    /* a failing refresh keeps the keys we have */
    srv_set(s, 500, "oops", false);
    hits = atomic_load(&s->hits);
    verify(t, e3, NOW, TOKENS_EINVALID);
    for (int i = 0; i < 100 && atomic_load(&s->hits) == hits; i++)
        sleep_ms(50);
    assert_int_equal(atomic_load(&s->hits), hits + 1);
    sleep_ms(50);
    verify_free(t, r1, TOKENS_OK);
    verify_free(t, r2, TOKENS_OK);
    /* unknown kids never fetch more often than min_refresh_ms */
    hits = atomic_load(&s->hits);
    for (int i = 0; i < 8; i++) {
        verify(t, e3, NOW, TOKENS_EINVALID);
        sleep_ms(20);
    }
    sleep_ms(50);
    assert_true(atomic_load(&s->hits) <= hits + 1);
    tokens_free(t);
    srv_stop(s);
    free(d1);
    free(d2);
    free(r1);
    free(r2);
    free(e3);
}

static void test_jwks_url_start_failures(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *doc = jwks(g_rsa, "r1", NULL, NULL), *big = malloc(70001);
    srv_t *s = srv_start(404, doc);
    char url[128];
    char *path;

    c.jwks_url = s->url;
    new_fails(&c, "HTTP status");
    srv_set(s, 302, doc, false);                /* redirects not followed */
    new_fails(&c, "HTTP status");
    memset(big, ' ', 70000);
    big[70000] = 0;
    srv_set(s, 200, big, false);
    new_fails(&c, "too large");
    srv_set(s, 200, "{\"keys\":[]}", false);
    new_fails(&c, "JWKS URL");
    path = write_file("dup.json", doc);         /* a valid JWKS, by file: */
    snprintf(url, sizeof(url), "file://%s", path);
    free(path);
    c.jwks_url = url;
    new_fails(&c, "JWKS URL: Unsupported protocol");
    c.jwks_url = "ftp://127.0.0.1/jwks";
    new_fails(&c, "JWKS URL");
    /* the same kid in the file and at the URL */
    srv_set(s, 200, doc, false);
    path = write_file("dup.json", doc);
    c.jwks_url = s->url;
    c.jwks_file = path;
    new_fails(&c, "duplicate kid");
    srv_stop(s);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", 1);   /* refused */
    c.jwks_file = NULL;
    c.jwks_url = url;
    new_fails(&c, "JWKS URL");
    free(doc);
    free(big);
    free(path);
}

/* tokens_free returns promptly while the refresher waits on a server that
 * never answers. */
static void test_free_during_fetch(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *doc = jwks(g_rsa, "r1", NULL, NULL), *tok = tok_pk(g_ec, "zz", NULL);
    srv_t *s = srv_start(200, doc);
    tokens_t *t;
    uint64_t t0;

    c.jwks_url = s->url;
    c.jwks_refresh_ms = 24 * HOUR_MS;
    c.jwks_min_refresh_ms = 1;
    t = new_ok(&c);
    srv_set(s, 200, doc, true);
    verify(t, tok, NOW, TOKENS_EINVALID);
    for (int i = 0; i < 100 && atomic_load(&s->hits) < 2; i++)
        sleep_ms(20);
    assert_int_equal(atomic_load(&s->hits), 2);
    t0 = clock_mono_ms();
    tokens_free(t);
    assert_true(clock_mono_ms() - t0 < 2500);
    t0 = clock_mono_ms();                       /* idle refresher */
    srv_set(s, 200, doc, false);
    t = new_ok(&c);
    tokens_free(t);
    assert_true(clock_mono_ms() - t0 < 1000);
    srv_stop(s);
    free(doc);
    free(tok);
}

typedef struct race {
    tokens_t *t;
    const char *tok;
    atomic_int ok;
} race_t;

static void *race_main(void *arg)
{
    race_t *r = arg;
    principal_t *p;
    int i;

    for (i = 0; i < 100; i++) {
        if (tokens_verify(r->t, r->tok, strlen(r->tok), NOW, &p, NULL) ==
            TOKENS_OK)
            atomic_fetch_add(&r->ok, 1);
        principal_unref(p);
    }
    return NULL;
}

/* Verifications on several threads while key sets are swapped under them. */
static void test_concurrent_swaps(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *doc = jwks(g_ec, "e1", NULL, NULL), *tok = tok_pk(g_ec, "e1", NULL);
    char *unknown = tok_pk(g_ec2, "nope", NULL);
    srv_t *s = srv_start(200, doc);
    race_t r = { 0 };
    pthread_t th[3];
    int i;

    c.jwks_url = s->url;
    c.jwks_min_refresh_ms = 1;
    r.t = new_ok(&c);
    r.tok = tok;
    for (i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r), 0);
    for (i = 0; i < 40; i++) {
        verify(r.t, unknown, NOW, TOKENS_EINVALID);
        sleep_ms(5);
    }
    for (i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&r.ok), 300);
    assert_true(atomic_load(&s->hits) > 2);
    tokens_free(r.t);
    srv_stop(s);
    free(doc);
    free(tok);
    free(unknown);
}

static void test_iss_aud(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t;
    static const struct { const char *extra; tokens_result_t want; } rows[] = {
        { "{\"iss\":\"https://idp\",\"aud\":\"sb\"}", TOKENS_OK },
        { "{\"iss\":\"https://idp\",\"aud\":[\"x\",\"sb\"]}", TOKENS_OK },
        { "{\"iss\":\"https://evil\",\"aud\":\"sb\"}", TOKENS_EINVALID },
        { "{\"aud\":\"sb\"}", TOKENS_EINVALID },
        { "{\"iss\":\"https://idp\",\"aud\":\"other\"}", TOKENS_EINVALID },
        { "{\"iss\":\"https://idp\"}", TOKENS_EINVALID },
        { "{\"iss\":\"https://idp\",\"aud\":\"sb\",\"exp\":null}",
          TOKENS_EMALFORMED },
    };
    size_t i;

    c.issuer_secret = ISECRET;
    c.issuer = "https://idp";
    c.audience = "sb";
    t = new_ok(&c);
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *tok = tok_hs(ISECRET, NULL, rows[i].extra);

        verify_free(t, tok, rows[i].want);
        free(tok);
    }
    tokens_free(t);
}

static void test_exp_required(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t;
    char *ext, *own;

    c.issuer_secret = ISECRET;
    t = new_ok(&c);
    ext = tok_raw("{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", S(ISECRET));
    own = tok_raw("{\"alg\":\"HS256\",\"kid\":\"sb1\"}",
                  "{\"sub\":\"a\",\"iss\":\"switchboard\",\"jti\":\"j\"}",
                  S(SECRET));
    verify(t, ext, NOW, TOKENS_EINVALID);
    verify(t, own, NOW, TOKENS_EINVALID);
    free(ext);
    free(own);
    tokens_free(t);
}

/* ---- revocation and key liveness ---------------------------------------- */

static void test_revoked_jti(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t;
    principal_t *k = principal(false, 0), *p = NULL;
    char *tok, jti[TOKENS_JTI_MAX + 1], long_jti[TOKENS_JTI_MAX + 2];
    char *ext = tok_hs(ISECRET, NULL, "{\"jti\":\"ext-1\"}");
    char *ext_nojti = tok_hs(ISECRET, NULL, NULL);
    char *ext_badjti = tok_hs(ISECRET, NULL, "{\"jti\":5}");
    char *own_nojti = tok_raw("{\"alg\":\"HS256\",\"kid\":\"sb1\"}",
                              "{\"sub\":\"a\",\"iss\":\"switchboard\","
                              "\"exp\":99999999999}", S(SECRET));
    const char *why = NULL;
    int64_t exp_ms, now = clock_now_ms();

    c.issuer_secret = ISECRET;
    t = new_ok(&c);
    assert_int_equal(tokens_mint(t, k, NOW, HOUR_MS, &tok, jti, &exp_ms), 0);
    verify_free(t, tok, TOKENS_OK);
    assert_int_equal(tokens_revoke(t, jti, strlen(jti), exp_ms), 0);
    assert_int_equal(tokens_verify(t, tok, strlen(tok), NOW, &p, &why),
                     TOKENS_EREVOKED);
    assert_string_equal(why, "jti revoked");
    assert_true(tokens_revoked(t, jti, strlen(jti), exp_ms - 1));
    assert_false(tokens_revoked(t, jti, strlen(jti), exp_ms));
    assert_false(tokens_revoked(t, S("other"), NOW));
    /* external tokens: jti optional, but honoured when present */
    verify_free(t, ext, TOKENS_OK);
    assert_int_equal(tokens_revoke(t, S("ext-1"), NOW + HOUR_MS), 0);
    verify(t, ext, NOW, TOKENS_EREVOKED);
    verify_free(t, ext_nojti, TOKENS_OK);
    verify(t, ext_badjti, NOW, TOKENS_EINVALID);
    verify(t, own_nojti, NOW, TOKENS_EINVALID);
    /* limits; a past expiry is a no-op */
    memset(long_jti, 'j', sizeof(long_jti) - 1);
    long_jti[sizeof(long_jti) - 1] = 0;
    assert_int_equal(tokens_revoke(t, long_jti, TOKENS_JTI_MAX + 1,
                                   now + 9999), -1);
    assert_int_equal(tokens_revoke(t, long_jti, TOKENS_JTI_MAX, now + 9999),
                     0);
    assert_true(tokens_revoked(t, long_jti, TOKENS_JTI_MAX, now));
    assert_int_equal(tokens_revoke(t, "", 0, now + 9999), -1);
    assert_int_equal(tokens_revoke(t, S("old"), now - 1), 0);
    assert_false(tokens_revoked(t, S("old"), now - 1000));
    /* re-revoking extends, never shortens */
    assert_int_equal(tokens_revoke(t, S("ext-1"), NOW + 10), 0);
    assert_true(tokens_revoked(t, S("ext-1"), NOW + HOUR_MS - 1));
    free(tok);
    free(ext);
    free(ext_nojti);
    free(ext_badjti);
    free(own_nojti);
    principal_unref(k);
    tokens_free(t);
}

/* The list holds TOKENS_REVOKED_MAX live ids; expired ones make room. */
static void test_revoked_max(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    int64_t base = clock_now_ms(), now;
    char id[32];
    int i, n;

    assert_int_equal(tokens_revoke(t, S("short"), base + 1000), 0);
    for (i = 1; i < TOKENS_REVOKED_MAX; i++) {
        n = snprintf(id, sizeof(id), "id-%d", i);
        assert_int_equal(tokens_revoke(t, id, (size_t)n, base + HOUR_MS), 0);
    }
    assert_true(clock_now_ms() < base + 1000);  /* filled before "short" */
    assert_int_equal(tokens_revoke(t, S("one-more"), base + HOUR_MS), -1);
    assert_int_equal(tokens_revoke(t, S("id-7"), base + 2 * HOUR_MS), 0);
    assert_true(tokens_revoked(t, S("short"), base));
    while ((now = clock_now_ms()) <= base + 1000)
        sleep_ms(50);
    assert_false(tokens_revoked(t, S("short"), now));
    assert_int_equal(tokens_revoke(t, S("one-more"), base + HOUR_MS), 0);
    assert_true(tokens_revoked(t, S("one-more"), now));
    assert_true(tokens_revoked(t, S("id-99999"), now));
    assert_int_equal(tokens_revoke(t, S("two-more"), base + HOUR_MS), -1);
    tokens_free(t);
}

typedef struct alive {
    int calls;
    bool answer;
    char last[64];
} alive_t;

static bool alive_fn(void *ctx, const char *id, size_t len, int64_t now_ms)
{
    alive_t *a = ctx;

    a->calls++;
    snprintf(a->last, sizeof(a->last), "%.*s", (int)len, id);
    assert_int_equal(now_ms, NOW);
    return a->answer;
}

static void test_key_alive(void **state)
{
    tokens_cfg_t c = cfg_base();
    alive_t a = { .answer = true };
    tokens_t *t;
    principal_t *k = principal(false, 0), *p = NULL;
    char *tok, *ext = tok_hs(ISECRET, NULL, NULL), jti[TOKENS_JTI_MAX + 1];
    const char *why = NULL;
    int64_t exp_ms;

    c.key_alive = alive_fn;
    c.key_alive_ctx = &a;
    c.issuer_secret = ISECRET;
    t = new_ok(&c);
    assert_int_equal(tokens_mint(t, k, NOW, HOUR_MS, &tok, jti, &exp_ms), 0);
    verify_free(t, tok, TOKENS_OK);
    assert_int_equal(a.calls, 1);
    assert_string_equal(a.last, "key123");
    a.answer = false;
    assert_int_equal(tokens_verify(t, tok, strlen(tok), NOW, &p, &why),
                     TOKENS_EREVOKED);
    assert_string_equal(
        why, "the key that issued this token is revoked or expired");
    verify_free(t, ext, TOKENS_OK);              /* not asked for external */
    assert_int_equal(a.calls, 2);
    free(tok);
    free(ext);
    principal_unref(k);
    tokens_free(t);
}

static void test_peek(void **state)
{
    char jti[TOKENS_JTI_MAX + 1], *tok;
    int64_t exp_ms = 0;
    static const char *const bad[] = {
        "{\"exp\":5}", "{\"jti\":\"a\"}", "{\"jti\":\"a\",\"exp\":\"5\"}",
        "{\"jti\":\"\",\"exp\":5}", "{\"jti\":7,\"exp\":5}",
        "{\"jti\":\"a\",\"exp\":-1}", "{\"jti\":\"a\",\"exp\":1e300}",
        "{\"jti\":\"a\",\"jti\":\"b\",\"exp\":5}", "[]",
    };
    char longer[TOKENS_JTI_MAX + 32];
    size_t i;

    tok = tok_raw("{\"alg\":\"none\"}",
                  "{\"jti\":\"abc\",\"exp\":1700000000.5}", NULL, 0);
    assert_int_equal(tokens_peek(tok, strlen(tok), jti, &exp_ms), 0);
    assert_string_equal(jti, "abc");
    assert_int_equal(exp_ms, 1700000000500ll);
    free(tok);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tok = tok_raw("{}", bad[i], NULL, 0);
        if (tokens_peek(tok, strlen(tok), jti, &exp_ms) != -1)
            fail_msg("peek accepted %s", bad[i]);
        free(tok);
    }
    snprintf(longer, sizeof(longer), "{\"jti\":\"%0*d\",\"exp\":5}",
             TOKENS_JTI_MAX + 1, 7);
    tok = tok_raw("{}", longer, NULL, 0);
    assert_int_equal(tokens_peek(tok, strlen(tok), jti, &exp_ms), -1);
    free(tok);
    snprintf(longer, sizeof(longer), "{\"jti\":\"%0*d\",\"exp\":5}",
             TOKENS_JTI_MAX, 7);
    tok = tok_raw("{}", longer, NULL, 0);
    assert_int_equal(tokens_peek(tok, strlen(tok), jti, &exp_ms), 0);
    assert_int_equal(strlen(jti), TOKENS_JTI_MAX);
    free(tok);
    assert_int_equal(tokens_peek(S("e30.!!.x"), jti, &exp_ms), -1);
    assert_int_equal(tokens_peek(S("e30.e30"), jti, &exp_ms), -1);
    assert_int_equal(tokens_peek("", 0, jti, &exp_ms), -1);
}

static void test_new_errors(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *garbage = write_file("garbage", "hello");

    c.secret = NULL;
    new_fails(&c, "secret");
    c = cfg_base();
    c.secret_len = 31;
    new_fails(&c, "token secret");
    c = cfg_base();
    c.leeway_ms = -1;
    new_fails(&c, "leeway");
    c.leeway_ms = 86400001;
    new_fails(&c, "leeway");
    c = cfg_base();
    c.default_tenant = "bad tenant";
    new_fails(&c, "default tenant");
    c = cfg_base();
    c.issuer_secret = "short";
    new_fails(&c, "issuer secret");
    c = cfg_base();
    c.public_key_file = "/nonexistent/key.pem";
    new_fails(&c, "public key file");
    c.public_key_file = garbage;
    new_fails(&c, "public key file");
    c = cfg_base();
    c.jwks_file = garbage;
    new_fails(&c, "JWKS file");
    c = cfg_base();
    c.issuer = c.audience = c.jwks_file = c.jwks_url = "";
    c.default_tenant = "";
    tokens_free(new_ok(&c));                     /* "" means unset */
    tokens_free(NULL);
    free(garbage);
}

/* ---- the cache of verified tokens -------------------------------------- */

static tokens_cache_stats_t stats(tokens_t *t)
{
    tokens_cache_stats_t s;

    tokens_cache_stats(t, &s);
    return s;
}

/* An own-style token for sub and jti, nbf_s seconds (0: no nbf). */
static char *tok_own_for(const char *sub, const char *jti, int64_t nbf_s)
{
    char extra[160];

    if (nbf_s)
        snprintf(extra, sizeof(extra),
                 "{\"sub\":\"%s\",\"jti\":\"%s\",\"nbf\":%lld}", sub, jti,
                 (long long)nbf_s);
    else
        snprintf(extra, sizeof(extra), "{\"sub\":\"%s\",\"jti\":\"%s\"}",
                 sub, jti);
    return tok_own(SECRET, extra);
}

static void assert_same_principal(const principal_t *a, const principal_t *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_string_equal(a->tenant, b->tenant);
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->jti, b->jti);
    assert_int_equal(a->expires_ms, b->expires_ms);
    assert_int_equal(a->perm.publish.n, b->perm.publish.n);
    assert_int_equal(a->perm.admin, b->perm.admin);
}

/* The second verification of a token is a hit with an equal principal;
 * with the cache off nothing is counted and both go the slow way. */
static void test_cache_hit(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    char *tok = tok_own(SECRET, "{\"scope\":\"publish:a.b admin\"}");
    principal_t *p1 = verify(t, tok, NOW, TOKENS_OK), *p2;

    assert_int_equal(stats(t).misses, 1);
    assert_int_equal(stats(t).hits, 0);
    assert_int_equal(stats(t).entries, 1);
    assert_int_equal(stats(t).capacity, TOKENS_CACHE_DEFAULT);
    p2 = verify(t, tok, NOW, TOKENS_OK);
    assert_int_equal(stats(t).hits, 1);
    assert_int_equal(stats(t).entries, 1);
    assert_same_principal(p1, p2);
    assert_int_equal(p2->perm.publish.n, 1);
    assert_true(p2->perm.admin);
    assert_int_equal(p2->expires_ms, (NOW / 1000 + 3600) * 1000);
    principal_unref(p1);
    principal_unref(p2);
    tokens_free(t);

    c.cache_entries = -1;
    t = new_ok(&c);
    p1 = verify(t, tok, NOW, TOKENS_OK);
    p2 = verify(t, tok, NOW, TOKENS_OK);
    assert_ptr_not_equal(p1, p2);
    assert_same_principal(p1, p2);
    assert_int_equal(stats(t).hits + stats(t).misses + stats(t).capacity, 0);
    principal_unref(p1);
    principal_unref(p2);
    tokens_free(t);
    free(tok);
}

/* Times are re-checked on every hit: expiry refuses and evicts; a
 * not-yet-valid time refuses but keeps the entry. */
static void test_cache_times(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    char *tok = tok_own(SECRET, NULL);
    char *later = tok_own_for("bob", "j2", NOW / 1000 + 60);
    int64_t exp_ms = (NOW / 1000 + 3600) * 1000;
    const char *why = NULL;
    principal_t *p = NULL;

    verify_free(t, tok, TOKENS_OK);
    principal_unref(verify(t, tok, exp_ms + LEEWAY_MS - 1000, TOKENS_OK));
    assert_int_equal(stats(t).hits, 1);
    assert_int_equal(tokens_verify(t, tok, strlen(tok), exp_ms + LEEWAY_MS,
                                   &p, &why), TOKENS_EEXPIRED);
    assert_string_equal(why, "token expired");
    assert_null(p);
    assert_int_equal(stats(t).hits, 2);
    assert_int_equal(stats(t).entries, 0);
    verify(t, tok, exp_ms + LEEWAY_MS, TOKENS_EEXPIRED);
    assert_int_equal(stats(t).misses, 2);        /* gone: the slow way */
    assert_int_equal(stats(t).entries, 0);       /* and not cached */

    verify(t, later, NOW, TOKENS_EEXPIRED);      /* not yet: not cached */
    assert_int_equal(stats(t).entries, 0);
    principal_unref(verify(t, later, NOW + 61000, TOKENS_OK));
    assert_int_equal(stats(t).entries, 1);
    assert_int_equal(tokens_verify(t, later, strlen(later),
                                   NOW + 60000 - LEEWAY_MS - 1000, &p, &why),
                     TOKENS_EEXPIRED);
    assert_string_equal(why, "token not yet valid");
    assert_int_equal(stats(t).entries, 1);
    principal_unref(verify(t, later, NOW + 61000, TOKENS_OK));
    assert_int_equal(stats(t).hits, 4);
    tokens_free(t);
    free(tok);
    free(later);
}

/* A revoked jti and a dead key refuse a cached token. */
static void test_cache_revoked_and_dead_key(void **state)
{
    tokens_cfg_t c = cfg_base();
    alive_t a = { .answer = true };
    tokens_t *t;
    char *own = tok_own_for("key9", "own-1", 0);
    char *ext = tok_hs(ISECRET, NULL, "{\"jti\":\"ext-1\"}");
    const char *why = NULL;
    principal_t *p = NULL;

    c.issuer_secret = ISECRET;
    c.key_alive = alive_fn;
    c.key_alive_ctx = &a;
    t = new_ok(&c);
    verify_free(t, own, TOKENS_OK);
    verify_free(t, ext, TOKENS_OK);
    verify_free(t, own, TOKENS_OK);
    verify_free(t, ext, TOKENS_OK);
    assert_int_equal(stats(t).hits, 2);
    assert_int_equal(a.calls, 2);                /* asked on the hit too */
    a.answer = false;
    assert_int_equal(tokens_verify(t, own, strlen(own), NOW, &p, &why),
                     TOKENS_EREVOKED);
    assert_string_equal(
        why, "the key that issued this token is revoked or expired");
    assert_string_equal(a.last, "key9");
    assert_int_equal(stats(t).hits, 3);
    verify(t, own, NOW, TOKENS_EREVOKED);        /* dropped: slow way */
    assert_int_equal(stats(t).hits, 3);
    a.answer = true;
    verify_free(t, own, TOKENS_OK);

    assert_int_equal(tokens_revoke(t, S("ext-1"), NOW + HOUR_MS), 0);
    assert_int_equal(tokens_verify(t, ext, strlen(ext), NOW, &p, &why),
                     TOKENS_EREVOKED);
    assert_string_equal(why, "jti revoked");
    assert_int_equal(stats(t).hits, 4);
    assert_int_equal(tokens_revoke(t, S("own-1"), NOW + HOUR_MS), 0);
    verify(t, own, NOW, TOKENS_EREVOKED);
    assert_int_equal(stats(t).hits, 5);
    assert_int_equal(stats(t).entries, 0);
    tokens_free(t);
    free(own);
    free(ext);
}

/* A JWKS reload that drops a key refuses that key's cached tokens at
 * once; tokens of the keys that stay verify again. */
static void test_cache_jwks_drop(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *both = jwks(g_rsa, "r1", g_ec, "e1"), *one = jwks(g_rsa, "r1",
                                                            NULL, NULL);
    char *path = write_file("rot.json", both);
    char *tr = tok_pk(g_rsa, "r1", NULL), *te = tok_pk(g_ec, "e1", NULL);
    tokens_t *t;

    c.jwks_file = path;
    c.jwks_refresh_ms = 50;
    t = new_ok(&c);
    verify_free(t, te, TOKENS_OK);
    verify_free(t, tr, TOKENS_OK);
    verify_free(t, te, TOKENS_OK);
    assert_true(stats(t).hits >= 1);
    free(write_file("rot.json", one));
    wait_verify(t, te, TOKENS_EINVALID);
    for (int i = 0; i < 5; i++) {                /* reloads keep it out */
        verify(t, te, NOW, TOKENS_EINVALID);
        sleep_ms(20);
    }
    verify_free(t, tr, TOKENS_OK);
    tokens_free(t);
    free(both);
    free(one);
    free(path);
    free(tr);
    free(te);
}

/* Another token (one byte changed anywhere) is a miss, never a hit. */
static void test_cache_tampered(void **state)
{
    tokens_cfg_t c = cfg_base();
    tokens_t *t = new_ok(&c);
    char *tok = tok_own(SECRET, NULL);
    size_t len = strlen(tok), at[] = { 3, len / 2, len - 10 }, i;
    principal_t *p = NULL;
    char was;

    verify_free(t, tok, TOKENS_OK);
    for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        was = tok[at[i]];
        tok[at[i]] = (char)(was == 'A' ? 'B' : 'A');
        assert_int_not_equal(tokens_verify(t, tok, len, NOW, &p, NULL),
                             TOKENS_OK);
        assert_null(p);
        tok[at[i]] = was;
        assert_int_equal(stats(t).hits, 0);
        assert_int_equal(stats(t).misses, i + 2);
    }
    assert_int_not_equal(tokens_verify(t, tok, len - 1, NOW, &p, NULL),
                         TOKENS_OK);              /* a prefix: a miss too */
    assert_int_equal(stats(t).hits, 0);
    verify_free(t, tok, TOKENS_OK);
    assert_int_equal(stats(t).hits, 1);
    tokens_free(t);
    free(tok);
}

/* The table never holds more than its size; sizes round up to a power of
 * two of at least 4; out-of-range sizes are refused. */
static void test_cache_bounded(void **state)
{
    tokens_cfg_t c = cfg_base();
    static const struct { int want; size_t cap; } sizes[] = {
        { 1, 4 }, { 5, 8 }, { 8, 8 }, { TOKENS_CACHE_MAX, TOKENS_CACHE_MAX },
    };
    char *tok[100], jti[16];
    tokens_t *t;
    size_t i;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        c.cache_entries = sizes[i].want;
        t = new_ok(&c);
        assert_int_equal(stats(t).capacity, sizes[i].cap);
        tokens_free(t);
    }
    c.cache_entries = 8;
    t = new_ok(&c);
    for (i = 0; i < 100; i++) {
        snprintf(jti, sizeof(jti), "j%zu", i);
        tok[i] = tok_own_for("alice", jti, 0);
        verify_free(t, tok[i], TOKENS_OK);
        assert_true(stats(t).entries <= 8);
    }
    assert_int_equal(stats(t).entries, 8);
    for (i = 0; i < 100; i++) {                  /* evicted ones still pass */
        verify_free(t, tok[i], TOKENS_OK);
        assert_true(stats(t).entries <= 8);
        free(tok[i]);
    }
    assert_int_equal(stats(t).hits + stats(t).misses, 200);
    tokens_free(t);
    c.cache_entries = -2;
    new_fails(&c, "token cache must be -1 (off) to 1048576");
    c.cache_entries = TOKENS_CACHE_MAX + 1;
    new_fails(&c, "token cache must be -1 (off) to 1048576");
}

#define CACHE_POOL 16

typedef struct cache_race {
    tokens_t *t;
    char *tok[CACHE_POOL];
    char sub[CACHE_POOL][16];
    atomic_int bad;
    int id;
} cache_race_t;

typedef struct cache_arg {
    cache_race_t *r;
    int id;
} cache_arg_t;

static void *cache_race_main(void *arg)
{
    cache_arg_t *a = arg;
    cache_race_t *r = a->r;
    principal_t *p;
    int i, k;

    for (i = 0; i < 400; i++) {
        k = i % 3 == 0 ? 0 : (i * 7 + a->id * 5) % CACHE_POOL;
        if (tokens_verify(r->t, r->tok[k], strlen(r->tok[k]), NOW, &p,
                          NULL) != TOKENS_OK ||
            strcmp(p->id, r->sub[k]) != 0)
            atomic_fetch_add(&r->bad, 1);
        principal_unref(p);
    }
    return NULL;
}

/* 4 threads verify one shared token and many others through a table
 * smaller than the pool (evictions) while the JWKS file reloads every
 * 5 ms (flushes): every answer is right and names the right subject. */
static void test_cache_threads(void **state)
{
    tokens_cfg_t c = cfg_base();
    char *doc = jwks(g_ec, "e1", NULL, NULL);
    char *path = write_file("rot.json", doc), extra[64];
    static cache_race_t r;
    cache_arg_t args[4];
    pthread_t th[4];
    tokens_cache_stats_t s;
    int i;

    c.jwks_file = path;
    c.jwks_refresh_ms = 5;
    c.cache_entries = 8;
    memset(&r, 0, sizeof(r));
    r.t = new_ok(&c);
    for (i = 0; i < CACHE_POOL; i++) {
        snprintf(r.sub[i], sizeof(r.sub[i]), "user%d", i);
        snprintf(extra, sizeof(extra), "{\"sub\":\"%s\",\"jti\":\"j%d\"}",
                 r.sub[i], i);
        r.tok[i] = i % 2 ? tok_pk(g_ec, "e1", extra)
                         : tok_own_for(r.sub[i], r.sub[i], 0);
    }
    for (i = 0; i < 4; i++) {
        args[i] = (cache_arg_t){ &r, i };
        assert_int_equal(pthread_create(&th[i], NULL, cache_race_main,
                                        &args[i]), 0);
    }
    for (i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    s = stats(r.t);
    assert_int_equal(atomic_load(&r.bad), 0);
    assert_int_equal(s.hits + s.misses, 1600);
    assert_true(s.hits > 0);
    assert_true(s.entries <= 8);
    tokens_free(r.t);
    for (i = 0; i < CACHE_POOL; i++)
        free(r.tok[i]);
    free(doc);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mint_roundtrip),
        cmocka_unit_test(test_mint_expiry_cut),
        cmocka_unit_test(test_expiry_and_leeway),
        cmocka_unit_test(test_nbf_future),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_no_confusion_between_sets),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_pem_rs256),
        cmocka_unit_test(test_pem_es256),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_jwks_file),
        cmocka_unit_test(test_jwks_file_periodic),
        cmocka_unit_test(test_jwks_url_rotation),
        cmocka_unit_test(test_jwks_url_start_failures),
        cmocka_unit_test(test_free_during_fetch),
        cmocka_unit_test(test_concurrent_swaps),
        cmocka_unit_test(test_iss_aud),
        cmocka_unit_test(test_exp_required),
        cmocka_unit_test(test_revoked_jti),
        cmocka_unit_test(test_revoked_max),
        cmocka_unit_test(test_key_alive),
        cmocka_unit_test(test_peek),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_cache_hit),
        cmocka_unit_test(test_cache_times),
        cmocka_unit_test(test_cache_revoked_and_dead_key),
        cmocka_unit_test(test_cache_jwks_drop),
        cmocka_unit_test(test_cache_tampered),
        cmocka_unit_test(test_cache_bounded),
        cmocka_unit_test(test_cache_threads),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
