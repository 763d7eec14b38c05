/*
 * fetch.h - the server's own outbound HTTP requests (JWKS documents,
 * GitHub's OAuth and REST API), with one policy for all of them: http and
 * https only, no redirects, a total time limit, a cap on the body, no
 * signals. Blocking (libcurl easy interface): call it from a thread that
 * may wait - a worker, a refresh thread, start-up - never from a loop.
 */
#ifndef SB_FETCH_H
#define SB_FETCH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

typedef struct fetch_req {
    const char *url;
    const char *const *headers;    /* NULL-terminated "Name: value" lines;
                                      NULL for none. Copies are wiped. */
    const char *form;              /* NULL: GET; else the POST body */
    long timeout_ms;               /* the whole request */
    /* optional: polled during the transfer; true aborts it */
    bool (*cancelled)(void *ctx);
    void *ctx;
} fetch_req_t;

typedef enum fetch_result {
    FETCH_OK = 0,                  /* an answer came: see *status */
    FETCH_ETOOBIG,                 /* the body passed body->max */
    FETCH_ENET,                    /* no answer: *why says why */
    FETCH_ENOMEM,                  /* or libcurl could not be set up */
} fetch_result_t;

/*
 * Performs q, appending the response body to body (capped by its max).
 * On FETCH_OK *status is the HTTP status, whatever it is; *why (when not
 * NULL) always gets a constant English reason (libcurl's text for
 * FETCH_ENET), never the URL or a header.
 */
fetch_result_t fetch(const fetch_req_t *q, buf_t *body, long *status, const char **why);

/* Appends "name=<value, form-encoded>" to a POST body b, after a '&' when
 * b is not empty; the encoded copy is wiped (a value may be a secret).
 * 0, or -1 without memory or room in b. */
int fetch_form_add(buf_t *b, const char *name, const char *value);

#endif
