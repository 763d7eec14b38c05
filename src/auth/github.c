/*
 * github.c - the blocking GitHub client. See github.h.
 *
 * One libcurl easy handle per request: calls are rare (a login, a
 * permission refresh) and each runs on a libuv worker thread, so sharing
 * handles would buy nothing but locking. Every request goes through
 * github__request, which pins the protocols, timeout, body cap and
 * headers; the callers only build URLs and read JSON. The token travels in
 * the Authorization header list, which is wiped before it is freed.
 */
#include "auth/github.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "core/buf.h"
#include "core/errmsg.h"

#define GITHUB__URL_MAX 2048

typedef struct github__req {
    const char *url;
    const char *token;               /* NULL: no Authorization */
    const char *form;                /* NULL: GET; else a POST body */
} github__req_t;

static size_t github__write(char *p, size_t size, size_t n, void *ud)
{
    return buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

/* The header list of a request; the token line is built in a wiped
 * buffer. NULL without memory. */
static struct curl_slist *github__headers(const char *token)
{
    struct curl_slist *h = NULL, *t;
    char line[GITHUB_TOKEN_MAX + 32];

    h = curl_slist_append(NULL, "Accept: application/json");
    if (h && token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
        t = curl_slist_append(h, line);
        OPENSSL_cleanse(line, sizeof line);
        if (!t) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = t;
    }
    if (h && (t = curl_slist_append(h, "X-GitHub-Api-Version: 2022-11-28")))
        h = t;
    return h;
}

/* Wipes the Authorization line before the list is freed. */
static void github__headers_free(struct curl_slist *h)
{
    for (struct curl_slist *i = h; i; i = i->next)
        OPENSSL_cleanse(i->data, strlen(i->data));
    curl_slist_free_all(h);
}

/*
 * Performs q and parses the reply into *doc (a JSON value the caller
 * decrefs). GITHUB_OK only for status 200 and a JSON body; 401 is
 * GITHUB_EAUTH. err gets a constant reason and the status.
 */
static int github__request(const github__req_t *q, json_t **doc, char *err,
                           size_t errlen)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = github__headers(q->token);
    json_error_t jerr;
    CURLcode cc;
    long status = 0;
    buf_t body;
    int rc = GITHUB_EFAIL;

    *doc = NULL;
    buf_init(&body, GITHUB_BODY_MAX);
    if (!c || !h) {
        errmsg(err, errlen, "out of memory");
        rc = GITHUB_ENOMEM;
        goto out;
    }
    if (curl_easy_setopt(c, CURLOPT_URL, q->url) ||
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") ||
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, GITHUB_TIMEOUT_MS) ||
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) ||
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)GITHUB_BODY_MAX) ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, github__write) ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &body) ||
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h) ||
        curl_easy_setopt(c, CURLOPT_USERAGENT, "switchboard") ||
        (q->form && curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->form))) {
        errmsg(err, errlen, "cannot set up the request");
        goto out;
    }
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED) {
        errmsg(err, errlen, "GitHub's reply is too large");
    } else if (cc != CURLE_OK) {
        errmsg(err, errlen, "GitHub unreachable: %s", curl_easy_strerror(cc));
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
out:
    if (body.data)
        OPENSSL_cleanse(body.data, body.len);   /* may hold a token */
    buf_free(&body);
    github__headers_free(h);
    curl_easy_cleanup(c);
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

/* "&name=<escaped value>" (no '&' when first) appended to b. */
static int github__form_add(CURL *c, buf_t *b, const char *name, const char *value)
{
    char *e = curl_easy_escape(c, value, 0);
    int rc = e && buf_printf(b, "%s%s=%s", b->len ? "&" : "", name, e) == 0 ? 0 : -1;

    if (e)
        OPENSSL_cleanse(e, strlen(e));
    curl_free(e);
    return rc;
}

int github_exchange(const github_cfg_t *cfg, const char *code,
                    const char *redirect_uri, char **token, char *err,
                    size_t errlen)
{
    char url[GITHUB__URL_MAX];
    CURL *esc = curl_easy_init();
    json_t *doc = NULL;
    const json_t *t;
    buf_t form;
    int rc = GITHUB_ENOMEM;

    *token = NULL;
    buf_init(&form, 16384);
    errmsg(err, errlen, "out of memory");
    if (!esc || github__form_add(esc, &form, "client_id", cfg->client_id) ||
        github__form_add(esc, &form, "client_secret", cfg->client_secret) ||
        github__form_add(esc, &form, "code", code) ||
        (redirect_uri && github__form_add(esc, &form, "redirect_uri", redirect_uri)))
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
    curl_easy_cleanup(esc);
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
