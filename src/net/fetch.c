/*
 * fetch.c - outbound HTTP requests with one policy. See fetch.h.
 *
 * libcurl is initialised once, here, on first use (curl_global_init is
 * not thread-safe; pthread_once makes it so), so no caller depends on
 * another having run first.
 */
#include "net/fetch.h"

#include <pthread.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#define FETCH_USER_AGENT "switchboard"

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static CURLcode fetch_init_rc = CURLE_FAILED_INIT;

static void fetch_init(void) { fetch_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* libcurl's global state, once; false when it could not be set up. */
static bool fetch_ready(void)
{
    pthread_once(&fetch_once, fetch_init);
    return fetch_init_rc == CURLE_OK;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const fetch_req_t *q = ud;

    return q->cancelled(q->ctx) ? 1 : 0;
}

/* The request's header lines; NULL without memory. */
static struct curl_slist *header_list(const char *const *lines, bool *nomem)
{
    struct curl_slist *h = NULL, *t;

    *nomem = false;
    for (size_t i = 0; lines && lines[i]; i++) {
        if (!(t = curl_slist_append(h, lines[i]))) {
            *nomem = true;
            break;
        }
        h = t;
    }
    return h;
}

/* Wipes the copies (an Authorization line) before the list is freed. */
static void header_list_free(struct curl_slist *h)
{
    for (struct curl_slist *i = h; i; i = i->next)
        OPENSSL_cleanse(i->data, strlen(i->data));
    curl_slist_free_all(h);
}

fetch_result_t fetch(const fetch_req_t *q, buf_t *body, long *status, const char **why)
{
    const char *reason = "out of memory";
    fetch_result_t rc = FETCH_ENOMEM;
    struct curl_slist *h = NULL;
    bool nomem;
    CURLcode cc;
    CURL *c;

    *status = 0;
    if (!fetch_ready() || !(c = curl_easy_init())) {
        reason = "libcurl could not be set up";
        goto out;
    }
    h = header_list(q->headers, &nomem);
    if (nomem)
        goto done;
    if (curl_easy_setopt(c, CURLOPT_URL, q->url) ||
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") ||
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->timeout_ms) ||
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) ||
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)body->max) ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, body) ||
        curl_easy_setopt(c, CURLOPT_USERAGENT, FETCH_USER_AGENT) ||
        (h && curl_easy_setopt(c, CURLOPT_HTTPHEADER, h)) ||
        (q->form && curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->form)) ||
        (q->cancelled && (curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) ||
                          curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress) ||
                          curl_easy_setopt(c, CURLOPT_XFERINFODATA, q)))) {
        reason = "cannot set up the request";
        goto done;
    }
    cc = curl_easy_perform(c);
    if (cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED) {
        rc = FETCH_ETOOBIG;
        reason = "response too large";
    } else if (cc != CURLE_OK) {
        rc = FETCH_ENET;
        reason = curl_easy_strerror(cc);
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        rc = FETCH_OK;
        reason = "ok";
    }
done:
    header_list_free(h);
    curl_easy_cleanup(c);
out:
    if (why)
        *why = reason;
    return rc;
}

int fetch_form_add(buf_t *b, const char *name, const char *value)
{
    CURL *c = fetch_ready() ? curl_easy_init() : NULL;
    char *e = c ? curl_easy_escape(c, value, 0) : NULL;
    int rc = e && buf_printf(b, "%s%s=%s", b->len ? "&" : "", name, e) == 0 ? 0 : -1;

    if (e)
        OPENSSL_cleanse(e, strlen(e));
    curl_free(e);
    curl_easy_cleanup(c);
    return rc;
}
