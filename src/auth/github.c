/*
 * github.c - the blocking GitHub client. See github.h.
 *
 * Calls are rare (a login, a permission refresh) and each runs on a libuv
 * worker thread, so each is one blocking net/fetch.h request (its policy:
 * http/https only, no redirects, a body cap). Every request goes through
 * github__request, which adds the timeout and headers; the callers only
 * build URLs and read JSON. The token travels in an Authorization line
 * that is wiped after the request, as are fetch's copies of it.
 */
#include "auth/github.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "core/buf.h"
#include "core/errmsg.h"
#include "net/fetch.h"

#define GITHUB__URL_MAX 2048

typedef struct github__req {
    const char *url;
    const char *token;               /* NULL: no Authorization */
    const char *form;                /* NULL: GET; else a POST body */
} github__req_t;

/*
 * Performs q and parses the reply into *doc (a JSON value the caller
 * decrefs). GITHUB_OK only for status 200 and a JSON body; 401 is
 * GITHUB_EAUTH. err gets a constant reason and the status. The token,
 * when there is one, is sent in an Authorization line built in a buffer
 * that is wiped (fetch wipes its own copies).
 */
static int github__request(const github__req_t *q, json_t **doc, char *err,
                           size_t errlen)
{
    char auth[GITHUB_TOKEN_MAX + 32] = "";
    const char *headers[] = {"Accept: application/json", "X-GitHub-Api-Version: 2022-11-28",
                             q->token ? auth : NULL, NULL};
    fetch_req_t f = {.url = q->url, .headers = headers, .form = q->form,
                     .timeout_ms = GITHUB_TIMEOUT_MS};
    json_error_t jerr;
    const char *why;
    long status = 0;
    buf_t body;
    int rc = GITHUB_EFAIL;
    fetch_result_t fr;

    *doc = NULL;
    buf_init(&body, GITHUB_BODY_MAX);
    if (q->token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", q->token);
    fr = fetch(&f, &body, &status, &why);
    OPENSSL_cleanse(auth, sizeof auth);
    if (fr == FETCH_ENOMEM) {
        errmsg(err, errlen, "%s", why);
        rc = GITHUB_ENOMEM;
    } else if (fr == FETCH_ETOOBIG) {
        errmsg(err, errlen, "GitHub's reply is too large");
    } else if (fr != FETCH_OK) {
        errmsg(err, errlen, "GitHub unreachable: %s", why);
    } else if (status == 401) {
        errmsg(err, errlen, "GitHub refused the token (HTTP 401)");
        rc = GITHUB_EAUTH;
    } else if (status != 200) {
        errmsg(err, errlen, "GitHub answered HTTP %ld", status);
    } else if (!(*doc = json_loadb(body.data ? body.data : "", body.len, 0, &jerr))) {
        errmsg(err, errlen, "GitHub's reply is not JSON");
    } else {
        rc = GITHUB_OK;
    }
    if (body.data)
        OPENSSL_cleanse(body.data, body.len);   /* may hold a token */
    buf_free(&body);
    return rc;
}

/* base + path (+ query) into out; -1 when it does not fit. */
static int github__url(char out[GITHUB__URL_MAX], const char *base, const char *path)
{
    size_t blen = strlen(base);
    int n;

    while (blen && base[blen - 1] == '/')
        blen--;
    n = snprintf(out, GITHUB__URL_MAX, "%.*s%s", (int)blen, base, path);
    return n < 0 || n >= GITHUB__URL_MAX ? -1 : 0;
}

int github_exchange(const github_cfg_t *cfg, const char *code,
                    const char *redirect_uri, char **token, char *err,
                    size_t errlen)
{
    char url[GITHUB__URL_MAX];
    json_t *doc = NULL;
    const json_t *t;
    buf_t form;
    int rc = GITHUB_ENOMEM;

    *token = NULL;
    buf_init(&form, 16384);
    errmsg(err, errlen, "out of memory");
    if (fetch_form_add(&form, "client_id", cfg->client_id) ||
        fetch_form_add(&form, "client_secret", cfg->client_secret) ||
        fetch_form_add(&form, "code", code) ||
        (redirect_uri && fetch_form_add(&form, "redirect_uri", redirect_uri)))
        goto out;
    if (github__url(url, cfg->oauth_url, "/login/oauth/access_token")) {
        errmsg(err, errlen, "the OAuth URL is too long");
        rc = GITHUB_EFAIL;
        goto out;
    }
    rc = github__request(&(github__req_t){.url = url, .form = form.data}, &doc, err, errlen);
    if (rc)
        goto out;
    t = json_object_get(doc, "access_token");
    if (!json_is_string(t) || json_string_length(t) == 0 ||
        json_string_length(t) > GITHUB_TOKEN_MAX ||
        strlen(json_string_value(t)) != json_string_length(t)) {
        /* {"error":"bad_verification_code",...}: the code is no good */
        errmsg(err, errlen, json_object_get(doc, "error") ? "GitHub refused the code"
                                                          : "GitHub's reply has no token");
        rc = json_object_get(doc, "error") ? GITHUB_EAUTH : GITHUB_EFAIL;
        goto out;
    }
    if (!(*token = strdup(json_string_value(t)))) {
        errmsg(err, errlen, "out of memory");
        rc = GITHUB_ENOMEM;
        goto out;
    }
    rc = GITHUB_OK;
out:
    if (form.data)
        OPENSSL_cleanse(form.data, form.len);
    buf_free(&form);
    json_decref(doc);
    return rc;
}

void github_free_token(char *token)
{
    if (token)
        OPENSSL_cleanse(token, strlen(token));
    free(token);
}

/* Copies a JSON string of at most cap - 1 bytes without NULs; "" else. */
static void github__copy(char *out, size_t cap, const json_t *v)
{
    size_t n = json_is_string(v) ? json_string_length(v) : 0;

    out[0] = '\0';
    if (n && n < cap && strlen(json_string_value(v)) == n)
        memcpy(out, json_string_value(v), n + 1);
}

static int github__get(const github_cfg_t *cfg, const char *token, const char *path,
                       json_t **doc, char *err, size_t errlen)
{
    char url[GITHUB__URL_MAX];

    if (github__url(url, cfg->api_url, path)) {
        errmsg(err, errlen, "the API URL is too long");
        return GITHUB_EFAIL;
    }
    return github__request(&(github__req_t){.url = url, .token = token}, doc, err, errlen);
}

/* The primary, verified address of /user/emails into out ("" when none). */
static int github__primary_email(const github_cfg_t *cfg, const char *token,
                                 github_user_t *out, char *err, size_t errlen)
{
    json_t *doc = NULL, *e;
    size_t i;
    int rc = github__get(cfg, token, "/user/emails", &doc, err, errlen);

    if (rc)
        return rc;
    json_array_foreach(doc, i, e) {
        if (json_is_true(json_object_get(e, "primary")) &&
            json_is_true(json_object_get(e, "verified"))) {
            github__copy(out->email, sizeof out->email, json_object_get(e, "email"));
            break;
        }
    }
    json_decref(doc);
    return GITHUB_OK;
}

int github_get_user(const github_cfg_t *cfg, const char *token,
                    github_user_t *out, char *err, size_t errlen)
{
    json_t *doc = NULL;
    const json_t *id;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = github__get(cfg, token, "/user", &doc, err, errlen)))
        return rc;
    id = json_object_get(doc, "id");
    github__copy(out->login, sizeof out->login, json_object_get(doc, "login"));
    github__copy(out->email, sizeof out->email, json_object_get(doc, "email"));
    if (!json_is_integer(id) || json_integer_value(id) <= 0 || !out->login[0]) {
        errmsg(err, errlen, "GitHub's user has no id or login");
        rc = GITHUB_EFAIL;
        goto out;
    }
    out->id = (int64_t)json_integer_value(id);
    /* the email is a courtesy: a failure to read it does not fail a login */
    if (!out->email[0])
        github__primary_email(cfg, token, out, err, errlen);
    rc = GITHUB_OK;
out:
    json_decref(doc);
    return rc;
}

void github_repos_free(github_repos_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i]);
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

/* Appends the readable repositories of one page; *count = its entries. */
static int github__page(const json_t *doc, github_repos_t *out, size_t *count)
{
    const json_t *e;
    size_t i;

    *count = json_array_size(doc);
    json_array_foreach(doc, i, e) {
        const json_t *name = json_object_get(e, "full_name");
        const json_t *perm = json_object_get(e, "permissions");
        char **v;

        if (!json_is_true(json_object_get(perm, "pull")) || !json_is_string(name) ||
            json_string_length(name) == 0 || json_string_length(name) > GITHUB_REPO_MAX)
            continue;
        if (!(v = realloc(out->v, (out->n + 1) * sizeof *v)))
            return GITHUB_ENOMEM;
        out->v = v;
        if (!(v[out->n] = strdup(json_string_value(name))))
            return GITHUB_ENOMEM;
        out->n++;
    }
    return GITHUB_OK;
}

int github_get_repos(const github_cfg_t *cfg, const char *token,
                     github_repos_t *out, char *err, size_t errlen)
{
    char path[64];
    int rc = GITHUB_OK;

    memset(out, 0, sizeof *out);
    for (int page = 1; page <= GITHUB_PAGES_MAX; page++) {
        json_t *doc = NULL;
        size_t count = 0;

        snprintf(path, sizeof path, "/user/repos?per_page=%d&page=%d", GITHUB_PER_PAGE, page);
        if ((rc = github__get(cfg, token, path, &doc, err, errlen)))
            break;
        if (!json_is_array(doc)) {
            errmsg(err, errlen, "GitHub's repository list is not an array");
            rc = GITHUB_EFAIL;
        } else if ((rc = github__page(doc, out, &count)) == GITHUB_ENOMEM) {
            errmsg(err, errlen, "out of memory");
        }
        json_decref(doc);
        if (rc || count < GITHUB_PER_PAGE)
            break;
    }
    if (rc)
        github_repos_free(out);
    return rc;
}
