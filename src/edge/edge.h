/*
 * edge.h - what the protocol adapters share: their settings, route
 * registration, "since" parsing and the resume-aware subscription start.
 *
 * Tenancy: every message and subscription names a tenant. Until access
 * control lands, every request belongs to the tenant "default".
 */
#ifndef SB_EDGE_H
#define SB_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"
#include "hub/hub.h"
#include "ops/config.h"

#define EDGE_DEFAULT_TENANT "default"

/* Registers every endpoint; cfg stays referenced (it outlives serving). */
void edge_register_routes(const config_t *cfg);
const config_t *edge_cfg(void);

/* "42" (a message id: resume after it), "0" (from the oldest retained),
 * or an RFC 3339 time. -1 when it is none of these. */
int edge_parse_since(const char *s, size_t len, hub_since_t *out);


/* Builds a message from a publish request body (JSON object with
 * "subject", optional "event", "data"); `data` is kept byte-exact.
 * On error returns NULL and sets *code / *why. */
msg_t *edge_publish_parse(const char *json, size_t len, const char *tenant,
                          const char **code, const char **why);

#define EDGE_SLOW (-2)

/* Queues a frame shared with other subscribers on connection c speaking
 * protocol proto (enum metrics_proto). 0 when queued (counted as a
 * delivery); EDGE_SLOW when the consumer is too slow (counted and logged:
 * the caller says goodbye its own way); -1 when c is going away. */
int edge_deliver(conn_t *c, sbuf_t *frame, int proto);

/* Ends a 202 reply whose JSON object b was started by the caller: appends
 * "subject" and "receivedAt" of m, answers, frees b and releases r. */
void edge_reply_accepted(http_req_t *r, buf_t *b, const msg_t *m);

/* One-time set-up of the adapters' shared frames (before serving). */
int sse_init(void);

/* Handlers */
void webhook_handle(http_req_t *r);
void publish_handle(http_req_t *r);
void sse_handle(http_req_t *r);
void ws_native_handle(http_req_t *r);

#endif
