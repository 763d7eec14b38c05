/*
 * github_oauth.c - GitHub login (docs/GITHUB.md):
 *
 *   GET /api/v1/auth/github            302 to GitHub's authorize page
 *   GET /api/v1/auth/github/callback   ?code&state -> {"token","user"}
 *
 * CSRF. The state is base64url(nonce[16] | issued_at[8, ms, big-endian] |
 * HMAC-SHA256(state key, nonce | issued_at)), and the same nonce goes to
 * the browser in an HttpOnly cookie scoped to these paths. The callback
 * accepts a state only with a valid MAC, at most GHO_STATE_TTL_MS old, and
 * a nonce equal (constant time) to the cookie's: a callback URL planted by
 * someone else carries their state, never this browser's cookie. The
 * state key is HMAC-SHA256(token key, "state"), so the server keeps no
 * state per login and any loop (or restart) can check it.
 *
 * The callback's GitHub calls block, so they run on the loop's thread
 * pool (uv_queue_work) with the request held; the answer is sent on the
 * loop once the user record is durable (auth/users.h). GitHub failures
 * are 502 with a constant message; the access token and the client secret
 * appear in no answer and no log line.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "auth/auth.h"
#include "auth/github.h"
#include "auth/seal.h"
#include "auth/users.h"
#include "core/base64.h"
#include "core/clock.h"
#include "core/errmsg.h"
#include "edge/edge.h"
#include "net/loop.h"
#include "ops/log.h"

#define GHO_PATH "/api/v1/auth/github"
#define GHO_CALLBACK GHO_PATH "/callback"
#define GHO_COOKIE "sb_oauth"
#define GHO_NONCE 16
#define GHO_MAC 32
#define GHO_STATE_RAW (GHO_NONCE + 8 + GHO_MAC)
#define GHO_STATE_TTL_MS (600 * 1000)
#define GHO_SKEW_MS (60 * 1000)              /* issued_at ahead of us */
#define GHO_PARAM_MAX 1024                   /* bytes of code / state */
#define GHO_URL_MAX 4096

static struct {
    bool on;
    const config_t *cfg;
    unsigned char state_key[32];
    github_cfg_t gh;
} G;

/* --- set-up -------------------------------------------------------------------- */

int github_oauth_init(const config_t *cfg, store_t *store, char *err, size_t errlen)
{
    users_cfg_t uc;
    unsigned int n = 0;
    int rc = -1;

    memset(&G, 0, sizeof G);
    G.cfg = cfg;
    if (!*cfg->github_client_id)
        return 0;
    memset(&uc, 0, sizeof uc);
    if (seal_key_parse(cfg->github_token_key, strlen(cfg->github_token_key), uc.key)) {
        errmsg(err, errlen, "github.token_key must be 32 bytes as 64 hex digits or base64");
        goto out;
    }
    if (!HMAC(EVP_sha256(), uc.key, SEAL_KEY_LEN, (const unsigned char *)"state", 5,
              G.state_key, &n) || n != sizeof G.state_key) {
        errmsg(err, errlen, "cannot derive the OAuth state key");
        goto out;
    }
    G.gh = (github_cfg_t){.oauth_url = cfg->github_oauth_url, .api_url = cfg->github_api_url,
                          .client_id = cfg->github_client_id,
                          .client_secret = cfg->github_client_secret};
    uc.github = G.gh;
    uc.ttl_ms = cfg->github_repos_ttl_ms;
    uc.tenant = cfg->github_tenant;
    if (users_init(&uc, store, err, errlen))
        goto out;
    G.on = true;
    rc = 0;
out:
    OPENSSL_cleanse(&uc, sizeof uc);
    return rc;
}

void github_oauth_shutdown(void)
{
    users_shutdown();
    OPENSSL_cleanse(&G, sizeof G);
}

/* --- state ---------------------------------------------------------------------- */

static void gho_mac(const unsigned char *msg, size_t len, unsigned char out[GHO_MAC])
{
    unsigned int n = 0;

    if (!HMAC(EVP_sha256(), G.state_key, sizeof G.state_key, msg, len, out, &n))
        memset(out, 0, GHO_MAC);       /* never verifies: RAND nonces are not all zero */
}

/* A fresh state (text, NUL-terminated) and its nonce (base64url) */
static int gho_state_new(char *state, size_t scap, char *nonce, size_t ncap)
{
    unsigned char raw[GHO_STATE_RAW];
    uint64_t now = (uint64_t)clock_now_ms();

    if (scap <= base64_encoded_len(sizeof raw, B64_URL) ||
        ncap <= base64_encoded_len(GHO_NONCE, B64_URL) || RAND_bytes(raw, GHO_NONCE) != 1)
        return -1;
    for (int i = 0; i < 8; i++)
        raw[GHO_NONCE + i] = (unsigned char)(now >> (56 - 8 * i));
    gho_mac(raw, GHO_NONCE + 8, raw + GHO_NONCE + 8);
    base64_encode(raw, sizeof raw, state, B64_URL);
    base64_encode(raw, GHO_NONCE, nonce, B64_URL);
    return 0;
}

/* The value of cookie name in the Cookie header(s) of r, or NULL. */
static const char *gho_cookie(const http_req_t *r, const char *name, size_t *len)
{
    size_t nlen = strlen(name);

    for (size_t i = 0; i < r->head.num_headers; i++) {
        const http_header_t *h = &r->head.headers[i];
        const char *p = h->value, *e = h->value + h->value_len;

        if (h->name_len != 6 || strncasecmp(h->name, "Cookie", 6) != 0)
            continue;
        while (p < e) {
            const char *semi = memchr(p, ';', (size_t)(e - p)), *end = semi ? semi : e;

            while (p < end && *p == ' ')
                p++;
            if ((size_t)(end - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
                *len = (size_t)(end - p - nlen - 1);
                return p + nlen + 1;
            }
            p = semi ? semi + 1 : e;
        }
    }
    return NULL;
}

/* Whether state text s verifies (MAC, age) and carries the cookie's nonce. */
static bool gho_state_ok(const char *s, size_t len, const char *cookie, size_t clen)
{
    unsigned char raw[GHO_STATE_RAW + 1], mac[GHO_MAC], cnonce[GHO_NONCE + 1];
    int64_t issued = 0, now = clock_now_ms();

    if (!cookie || base64_decode(s, len, raw, sizeof raw, B64_URL) != GHO_STATE_RAW ||
        base64_decode(cookie, clen, cnonce, sizeof cnonce, B64_URL) != GHO_NONCE)
        return false;
    gho_mac(raw, GHO_NONCE + 8, mac);
    if (CRYPTO_memcmp(mac, raw + GHO_NONCE + 8, GHO_MAC) != 0)
        return false;
    for (int i = 0; i < 8; i++)
        issued = (int64_t)((uint64_t)issued << 8 | raw[GHO_NONCE + i]);
    if (issued > now + GHO_SKEW_MS || now - issued > GHO_STATE_TTL_MS)
        return false;
    return CRYPTO_memcmp(raw, cnonce, GHO_NONCE) == 0;
}

/* --- helpers -------------------------------------------------------------------- */

static bool gho_guard(http_req_t *r)
{
    char ip[AUTH_IP_MAX], ep[128];
    auth_outcome_t o;

    if (!G.on) {
        http_error(r, 404, "not_found", "GitHub login is not configured");
        return false;
    }
    auth_client_ip(r, ip);
    snprintf(ep, sizeof ep, "GET %.*s", (int)r->head.path_len, r->head.path);
    if (auth_ip_rate(ip, ep, &o))
        return true;
    auth_respond(r, &o);
    return false;
}

/* Host header characters we put into a URL: reg-name, IPv6 literal, port. */
static bool gho_host_ok(const char *h, size_t len)
{
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z') ||
              (h[i] >= '0' && h[i] <= '9') || (h[i] && strchr(".-:[]", h[i]))))
            return false;
    return true;
}

/* The callback URL: configured, else from the Host header. -1 when none. */
static int gho_redirect_uri(const http_req_t *r, char out[GHO_URL_MAX])
{
    size_t hlen = 0;
    const char *host;

    if (*G.cfg->github_redirect_url) {
        snprintf(out, GHO_URL_MAX, "%s", G.cfg->github_redirect_url);
        return 0;
    }
    host = http_header(r, "Host", &hlen);
    if (!host || !gho_host_ok(host, hlen))
        return -1;
    snprintf(out, GHO_URL_MAX, "http://%.*s" GHO_CALLBACK, (int)hlen, host);
    return 0;
}

static int gho_query_add(buf_t *b, const char *name, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = buf_printf(b, "%c%s=", b->len && memchr(b->data, '?', b->len) ? '&' : '?', name);

    for (; rc == 0 && *v; v++) {
        unsigned char c = (unsigned char)*v;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c))
            rc = buf_append_byte(b, (char)c);
        else
            rc = buf_printf(b, "%%%c%c", hex[c >> 4], hex[c & 15]);
    }
    return rc;
}

/* --- GET /api/v1/auth/github ------------------------------------------------------- */

void github_oauth_start(http_req_t *r)
{
    char state[128], nonce[64], redirect[GHO_URL_MAX];
    buf_t loc, cookie;
    bool secure;

    if (!gho_guard(r))
        return;
    if (gho_redirect_uri(r, redirect)) {
        http_error(r, 400, "invalid_request", "a valid Host header is required");
        return;
    }
    buf_init(&loc, 3 * GHO_URL_MAX);
    buf_init(&cookie, 512);
    secure = strncmp(redirect, "https:", 6) == 0;
    if (gho_state_new(state, sizeof state, nonce, sizeof nonce) ||
        buf_printf(&loc, "%s", G.cfg->github_oauth_url) ||
        buf_append_str(&loc, "/login/oauth/authorize") ||
        gho_query_add(&loc, "client_id", G.cfg->github_client_id) ||
        gho_query_add(&loc, "redirect_uri", redirect) ||
        gho_query_add(&loc, "scope", G.cfg->github_scope) ||
        gho_query_add(&loc, "state", state) ||
        buf_printf(&cookie, GHO_COOKIE "=%s; HttpOnly; SameSite=Lax; Path=" GHO_PATH
                   "; Max-Age=%d%s", nonce, GHO_STATE_TTL_MS / 1000,
                   secure ? "; Secure" : "")) {
        http_error(r, 503, "unavailable", "cannot start the login");
        goto out;
    }
    http_add_header(r, "Location", loc.data);
    http_add_header(r, "Set-Cookie", cookie.data);
    http_add_header(r, "Cache-Control", "no-store");
    http_respond(r, 302, NULL, "", 0);
out:
    buf_free(&loc);
    buf_free(&cookie);
}

/* --- GET /api/v1/auth/github/callback ------------------------------------------------ */

typedef struct gho_job {
    uv_work_t work;
    http_req_t *r;
    loop_t *loop;
    char code[GHO_PARAM_MAX + 1];
    char redirect[GHO_URL_MAX];
    int rc;                            /* GITHUB_* */
    char err[GITHUB_ERR_LEN];
    char *token;                       /* GitHub's; wiped */
    github_user_t user;
    github_repos_t repos;
} gho_job_t;

static void gho_job_free(gho_job_t *j)
{
    github_free_token(j->token);
    github_repos_free(&j->repos);
    OPENSSL_cleanse(j->code, sizeof j->code);
    free(j);
}

static void gho_work(uv_work_t *w)
{
    gho_job_t *j = w->data;

    j->rc = github_exchange(&G.gh, j->code, j->redirect, &j->token, j->err, sizeof j->err);
    if (j->rc == GITHUB_OK)
        j->rc = github_get_user(&G.gh, j->token, &j->user, j->err, sizeof j->err);
    if (j->rc == GITHUB_OK)
        j->rc = github_get_repos(&G.gh, j->token, &j->repos, j->err, sizeof j->err);
}

/* {"token","user":{...}} for v, minted here. NULL without memory. */
static char *gho_answer(const users_view_t *v)
{
    char id[32], gid[24], jti[TOKENS_JTI_MAX + 1], *tok = NULL, *text = NULL;
    perm_t none;
    principal_t *p;
    int64_t exp_ms = 0;
    json_t *doc;

    memset(&none, 0, sizeof none);
    snprintf(id, sizeof id, USERS_ID_PREFIX "%" PRIu64, v->id);
    snprintf(gid, sizeof gid, "%" PRId64, v->github_id);
    p = principal_new(PRINCIPAL_JWT, G.cfg->github_tenant, strlen(G.cfg->github_tenant), id,
                      strlen(id), &none, false, 0);
    if (!p || tokens_mint(auth_tokens(), p, clock_now_ms(), G.cfg->token_ttl_ms, &tok, jti,
                          &exp_ms)) {
        principal_unref(p);
        return NULL;
    }
    principal_unref(p);
    doc = json_pack("{ss s{sI ss ss so}}", "token", tok, "user", "id", (json_int_t)v->id,
                    "githubId", gid, "username", v->username, "email",
                    v->email[0] ? json_string(v->email) : json_null());
    if (doc)
        text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    return text;
}

static void gho_clear_cookie(http_req_t *r)
{
    http_add_header(r, "Set-Cookie", GHO_COOKIE "=; HttpOnly; SameSite=Lax; Path=" GHO_PATH
                    "; Max-Age=0");
}

static void gho_logged_in(void *arg, int err, const users_view_t *v)
{
    gho_job_t *j = arg;
    http_req_t *r = j->r;
    char *text = NULL;

    gho_clear_cookie(r);
    http_add_header(r, "Cache-Control", "no-store");
    if (err) {
        http_error(r, 503, "store_unavailable", "the login could not be stored; retry");
    } else if (!(text = gho_answer(v))) {
        http_error(r, 503, "unavailable", "cannot issue a token");
    } else {
        LOG_INFO("GitHub login", "\"user\":%" PRIu64 ",\"githubId\":%" PRId64 ","
                 "\"username\":\"%s\",\"repos\":%zu", v->id, v->github_id,
                 log_str(v->username, (size_t)-1), v->repos);
        http_respond(r, 200, "application/json", text, strlen(text));
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    http_req_release(r);
    gho_job_free(j);
}

static void gho_after(uv_work_t *w, int status)
{
    gho_job_t *j = w->data;
    http_req_t *r = j->r;

    if (status == 0 && j->rc == GITHUB_OK &&
        users_login(&j->user, j->token, &j->repos, clock_now_ms(), j->loop, gho_logged_in,
                    j) == 0)
        return;                         /* gho_logged_in answers */
    gho_clear_cookie(r);
    if (status != 0 || j->rc != GITHUB_OK) {
        LOG_WARN("GitHub login failed", "\"error\":\"%s\"",
                 log_str(status ? "cancelled" : j->err, (size_t)-1));
        http_error(r, 502, "github_error", "GitHub did not complete the login; start again");
    } else {
        http_error(r, 503, "unavailable", "the login could not be recorded");
    }
    http_req_release(r);
    gho_job_free(j);
}

/* Query parameter name into out (NUL-terminated). 1, 0 absent, -1 bad. */
static int gho_param(const http_req_t *r, const char *name, char *out, size_t cap)
{
    buf_t b;
    int rc;

    buf_init(&b, cap - 1);
    rc = http_query_get(r, name, 0, &b);
    if (rc == 1 && (b.len == 0 || memchr(b.data, 0, b.len)))
        rc = -1;
    if (rc == 1)
        memcpy(out, b.data, b.len + 1);
    buf_free(&b);
    return rc;
}

void github_oauth_callback(http_req_t *r)
{
    char state[GHO_PARAM_MAX + 1];
    const char *cookie;
    size_t clen = 0;
    gho_job_t *j;

    if (!gho_guard(r))
        return;
    cookie = gho_cookie(r, GHO_COOKIE, &clen);
    if (gho_param(r, "state", state, sizeof state) != 1 ||
        !gho_state_ok(state, strlen(state), cookie, clen)) {
        http_error(r, 400, "invalid_state", "the login state is missing, expired or not "
                   "this browser's; start again at " GHO_PATH);
        return;
    }
    if (!(j = calloc(1, sizeof *j))) {
        http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    if (gho_param(r, "code", j->code, sizeof j->code) != 1) {
        http_error(r, 400, "invalid_request", "\"code\" is required");
        goto fail;
    }
    if (gho_redirect_uri(r, j->redirect)) {
        http_error(r, 400, "invalid_request", "a valid Host header is required");
        goto fail;
    }
    j->r = r;
    j->loop = r->conn->loop;
    j->work.data = j;
    http_req_hold(r);
    if (uv_queue_work(&j->loop->uv, &j->work, gho_work, gho_after)) {
        http_req_release(r);
        http_error(r, 503, "unavailable", "cannot start the login");
        goto fail;
    }
    return;
fail:
    gho_job_free(j);
}
