/*
 * edge.c - helpers shared by the protocol adapters. See edge.h.
 */
#include "edge/edge.h"

#include <stdlib.h>
#include <string.h>

#include <inttypes.h>

#include "auth/auth.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/subject.h"
#include "ops/log.h"
#include "ops/metrics.h"
#include "ops/status.h"

static const config_t *g_cfg;

static void metrics_handle(http_req_t *r);

const config_t *edge_cfg(void) { return g_cfg; }

void edge_register_routes(const config_t *cfg)
{
    g_cfg = cfg;
    sse_init();
    webhook_init(cfg);
    http_route("POST,PUT,PATCH,DELETE", "/webhook/", true, webhook_handle);
    http_route("POST", "/api/v1/publish", false, publish_handle);
    http_route("GET", "/api/v1/stream", false, sse_handle);
    http_route("GET", "/api/v1/ws", false, ws_native_handle);
    http_route("GET,POST", "/api/v1/keys", false, keys_api_collection);
    http_route("GET,POST,DELETE", "/api/v1/keys/", true, keys_api_item);
    http_route("POST", "/auth/token", false, token_issue);
    http_route("POST", "/api/v1/tokens/revoke", false, token_revoke);
    http_route("GET", "/api/v1/auth/github", false, github_oauth_start);
    http_route("GET", "/api/v1/auth/github/callback", false, github_oauth_callback);
    http_route("GET", "/api/v1/messages", false, pull_messages);
    http_route("POST", "/api/v1/messages/ack", false, pull_ack);
    http_route("GET", "/api/v1/messages/stats", false, pull_stats);
    http_route("PUT", "/api/v1/messages/consumer", false, pull_configure);
    http_route("POST", "/api/v1/messages/replay", false, pull_replay);
    http_route("GET,HEAD", "/health", false, status_health);
    http_route("GET", "/metrics", false, metrics_handle);
}

/* /metrics counts every tenant's traffic: admins only. /health stays open
 * (it says ok or not, nothing more) for load balancers. */
static void metrics_handle(http_req_t *r)
{
    principal_t *p = auth_request(r, 0);

    if (!p)
        return;
    if (principal_can_admin(p, p->tenant, p->tenant_len))
        status_metrics(r);
    else
        auth_forbidden(r, p, NULL, NULL, "metrics need admin permission");
    principal_unref(p);
}

int edge_parse_since(const char *s, size_t len, hub_since_t *out)
{
    uint64_t v = 0;
    size_t i;

    memset(out, 0, sizeof *out);
    if (len == 0)
        return -1;
    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == len && len <= 20) {
        out->kind = HUB_SINCE_SEQ;
        out->seq = v;
        return 0;
    }
    if (clock_parse_rfc3339(s, len, &out->time_ms) == 0) {
        out->kind = HUB_SINCE_TIME;
        return 0;
    }
    return -1;
}

bool edge_may_publish(http_req_t *r, const principal_t *p, const msg_t *m, const char *ip,
                      const char *endpoint)
{
    char what[SUBJ_MAX_LEN + PERM_EVENT_MAX + 32];
    size_t elen = m->event ? strlen(m->event) : 0;

    if (principal_can_publish(p, m->subject, strlen(m->subject), m->event, elen))
        return true;
    if (!principal_event_allowed(p, m->event, elen))
        snprintf(what, sizeof what, "publish event type %s", m->event);
    else
        snprintf(what, sizeof what, "publish to %s", m->subject);
    auth_forbidden(r, p, ip, endpoint, what);
    return false;
}

bool edge_may_subscribe(http_req_t *r, const principal_t *p, const char *pattern,
                        bool history, const char *ip, const char *endpoint)
{
    char what[SUBJ_MAX_LEN + 32];
    size_t len = strlen(pattern);

    if (!principal_can_subscribe(p, pattern, len))
        snprintf(what, sizeof what, "subscribe to %s", pattern);
    else if (history && !principal_can_history(p, pattern, len))
        snprintf(what, sizeof what, "read the history of %s", pattern);
    else
        return true;
    auth_forbidden(r, p, ip, endpoint, what);
    return false;
}

int edge_deliver(conn_t *c, sbuf_t *frame, int proto)
{
    static const char *const names[PROTO_MAX] = {"http", "sse", "websocket"};
    int rc;

    if (conn_is_closing(c))
        return -1;
    rc = conn_send(c, frame);
    if (rc == CONN_EFULL) {
        METRIC_INC(slow_consumers[proto]);
        LOG_WARN("slow consumer disconnected", "\"conn\":%" PRIu64 ",\"protocol\":\"%s\","
                 "\"queued\":%zu", c->id, names[proto], conn_queued(c));
        return EDGE_SLOW;
    }
    if (rc)
        return -1;
    METRIC_INC(msgs_out[proto]);
    return 0;
}

void edge_reply_accepted(http_req_t *r, buf_t *b, const msg_t *m)
{
    char when[CLOCK_ISO_LEN + 1];

    clock_iso8601(m->time_ms, when);
    buf_append_str(b, "\"subject\":");
    json_append_str(b, m->subject, strlen(m->subject));
    buf_printf(b, ",\"receivedAt\":\"%s\"}", when);
    http_respond_json(r, 202, b);
    buf_free(b);
    http_req_release(r);
}
