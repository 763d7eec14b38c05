/*
 * edge.h - what the protocol adapters share: their settings, route
 * registration, "since" parsing and the resume-aware subscription start.
 *
 * Tenancy: every message and subscription names a tenant: the tenant of
 * the principal that asked (auth/auth.h), or of the webhook source.
 */
#ifndef SB_EDGE_H
#define SB_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/principal.h"
#include "http/server.h"
#include "hub/hub.h"
#include "ops/config.h"
#include "store/store.h"

/* The tenant of webhook sources that name none. */
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

/* Whether p may publish m (its subject and event type). When not, the
 * refusal is audited (auth_forbidden) and, when r is not NULL, answered
 * 403; ip and endpoint name the attempt in the log (NULL: taken from r). */
bool edge_may_publish(http_req_t *r, const principal_t *p, const msg_t *m, const char *ip,
                      const char *endpoint);

/* The same for a subscription to pattern, with history when it resumes. */
bool edge_may_subscribe(http_req_t *r, const principal_t *p, const char *pattern,
                        bool history, const char *ip, const char *endpoint);

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
/* Builds the webhook sources' verifiers (edge/webhook.c) from cfg, which
 * must outlive serving. 0, or -1 when some source could not be set up
 * (logged; that source then answers 503). webhook_shutdown frees them. */
int webhook_init(const config_t *cfg);
void webhook_shutdown(void);

/* Handlers */
void webhook_handle(http_req_t *r);
void publish_handle(http_req_t *r);
void sse_handle(http_req_t *r);
void ws_native_handle(http_req_t *r);
void keys_api_collection(http_req_t *r);
void keys_api_item(http_req_t *r);
void token_issue(http_req_t *r);
void token_revoke(http_req_t *r);

/* GitHub login (edge/github_oauth.c). github_oauth_init, after auth_init
 * and before serving: off (0) without github.client_id; else sets up the
 * user registry (auth/users.h) from store; -1 with err. */
int github_oauth_init(const config_t *cfg, store_t *store, char *err, size_t errlen);
void github_oauth_shutdown(void);
void github_oauth_start(http_req_t *r);
void github_oauth_callback(http_req_t *r);

/* Pull API (edge/pull.c) over durable consumers (hub/consumer.h) */
void pull_messages(http_req_t *r);
void pull_ack(http_req_t *r);
void pull_stats(http_req_t *r);
void pull_configure(http_req_t *r);
void pull_replay(http_req_t *r);

#endif
