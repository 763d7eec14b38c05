/*
 * sse.c - Server-Sent Events: GET /api/v1/stream?subject=P[&subject=P...]
 *
 * The credential comes in the Authorization header or, for browsers'
 * EventSource (which cannot set headers), as ?token=. Every pattern must
 * be one the credential may subscribe to, and history permission is
 * needed to resume; messages of event types the credential may not see
 * are skipped. Each heartbeat re-checks the credential: a revoked key or
 * an expired token ends the stream.
 *
 * One subscription per connection over all its patterns. Resume from
 * Last-Event-ID (what EventSource sends on reconnect) or ?since=<id|time>;
 * Last-Event-ID wins when both are present. Every stored message carries
 * "id: <seq>", so the browser's last id always resumes the whole
 * subscription; live-only messages carry no id and leave it unchanged.
 *
 * Frames are encoded once per message (MSG_ENC_SSE) and shared. A
 * subscriber whose queue passes the outbound limit is disconnected (no
 * more bytes fit, so nothing else can be said) and counted; it resumes
 * without loss by reconnecting with its last id. The response has no
 * length and no chunking: the stream ends when the connection closes.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/clock.h"
#include "core/subject.h"
#include "edge/edge.h"
#include "ops/log.h"
#include "ops/metrics.h"

typedef struct sse {
    hub_sub_t sub;
    conn_t *conn;
    uint64_t heartbeat_ms;
    auth_lease_t lease;        /* the principal, under the stream caps */
} sse_t;

static sbuf_t *heartbeat_frame;

static sbuf_t *sse_encode(const msg_t *m)
{
    buf_t b;
    sbuf_t *s = NULL;

    buf_init(&b, SIZE_MAX);
    if (m->seq)
        buf_printf(&b, "id: %" PRIu64 "\n", m->seq);
    if (m->event)
        buf_printf(&b, "event: %s\n", m->event);
    buf_append_str(&b, "data: ");
    if (msg_envelope(m, &b) == 0 && buf_append(&b, "\n\n", 2) == 0)
        s = sbuf_from(b.data, b.len);
    buf_free(&b);
    return s;
}

static int deliver(hub_sub_t *s, msg_t *m)
{
    sse_t *e = container_of(s, sse_t, sub);
    sbuf_t *f;
    int rc;

    if (conn_is_closing(e->conn))
        return -1;
    if (!principal_event_allowed(e->lease.p, m->event, m->event ? strlen(m->event) : 0))
        return 0;
    f = msg_encoded(m, MSG_ENC_SSE, sse_encode);
    if (!f) {
        conn_close(e->conn);
        return -1;
    }
    rc = edge_deliver(e->conn, f, PROTO_SSE);
    if (rc == EDGE_SLOW)
        conn_close(e->conn);     /* no room left to say anything else */
    return rc ? -1 : 0;
}

static void caught_up(hub_sub_t *s, int err)
{
    sse_t *e = container_of(s, sse_t, sub);

    if (err) {
        LOG_ERROR("sse replay failed", "\"conn\":%" PRIu64 ",\"error\":%d", e->conn->id, err);
        conn_close_after_flush(e->conn, 1000);
    }
}

static void released(hub_sub_t *s)
{
    sse_t *e = container_of(s, sse_t, sub);

    auth_lease_release(&e->lease);
    free(e);
}

static const hub_sub_ops_t sse_sub_ops = {
    .deliver = deliver,
    .caught_up = caught_up,
    .released = released,
};

/* --- connection protocol after the response head ------------------------- */

static size_t on_data(conn_t *c, char *data, size_t len)
{
    return len;     /* a client has nothing to say on an event stream */
}

static void on_timeout(conn_t *c)
{
    sse_t *e = c->ctx;

    if (!auth_still_valid(e->lease.p, clock_now_ms())) {
        LOG_INFO("stream ended: credential revoked or expired",
                 "\"conn\":%" PRIu64 ",\"key\":\"%s\"", c->id, e->lease.p->id);
        conn_close_after_flush(c, 1000);
        return;
    }
    if (edge_deliver(c, heartbeat_frame, PROTO_SSE) == EDGE_SLOW) {
        conn_close(c);
        return;
    }
    conn_set_timeout(c, e->heartbeat_ms);
}

static void on_drain(conn_t *c)
{
    sse_t *e = c->ctx;
    hub_sub_drained(&e->sub);
}

static void on_shutdown(conn_t *c) { conn_close_after_flush(c, 1000); }

static void on_close(conn_t *c)
{
    sse_t *e = c->ctx;
    hub_unsubscribe(&e->sub);   /* frees e via released() */
}

static const conn_proto_t sse_proto = {
    .on_data = on_data,
    .on_timeout = on_timeout,
    .on_drain = on_drain,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
};

/* --- the request ---------------------------------------------------------- */

static int read_patterns(http_req_t *r, char ***out, size_t *n, size_t max)
{
    buf_t v;
    int found;

    *out = NULL;
    *n = 0;
    buf_init(&v, SUBJ_MAX_LEN);
    while ((found = http_query_get(r, "subject", *n, &v)) == 1) {
        char **grown;
        if (*n == max || !subj_valid_pattern(v.data, v.len))
            break;
        grown = realloc(*out, (*n + 1) * sizeof(char *));
        if (!grown)
            break;
        *out = grown;
        if (!((*out)[*n] = strdup(v.data)))
            break;
        (*n)++;
    }
    buf_free(&v);
    if (found == 1 || found < 0)
        return *n == max ? -2 : -1;
    return *n ? 0 : -1;
}

static void free_patterns(char **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i]);
    free(p);
}

static int read_since(http_req_t *r, hub_since_t *since)
{
    size_t len;
    const char *last = http_header(r, "Last-Event-ID", &len);
    buf_t v;
    int rc = 0;

    since->kind = HUB_SINCE_NONE;
    if (last && len)
        return edge_parse_since(last, len, since);
    buf_init(&v, 64);
    if (http_query_get(r, "since", 0, &v) == 1)
        rc = edge_parse_since(v.data, v.len, since);
    buf_free(&v);
    return rc;
}

int sse_init(void)
{
    heartbeat_frame = sbuf_from(":\n\n", 3);
    return heartbeat_frame ? 0 : -1;
}

/* Every pattern must be allowed, with history when the stream resumes. */
static bool may_subscribe(http_req_t *r, const principal_t *p, char **patterns, size_t n,
                          const hub_since_t *since, const char *ip)
{
    for (size_t i = 0; i < n; i++)
        if (!edge_may_subscribe(r, p, patterns[i], since->kind != HUB_SINCE_NONE, ip, NULL))
            return false;
    return true;
}

void sse_handle(http_req_t *r)
{
    static const char head_fmt[] =
        "Content-Type: text/event-stream; charset=utf-8\r\n"
        "Cache-Control: no-cache, no-transform\r\n"
        "X-Accel-Buffering: no\r\n\r\n"
        "retry: 2000\n: connected\n\n";
    const config_t *cfg = edge_cfg();
    char **patterns = NULL, ip[AUTH_IP_MAX];
    size_t n = 0;
    hub_since_t since;
    sse_t *e = NULL;
    buf_t b;
    sbuf_t *head;
    auth_outcome_t o;
    principal_t *p = auth_request(r, AUTH_QUERY_TOKEN);
    int rc;

    if (!p)
        return;
    auth_client_ip(r, ip);
    rc = read_patterns(r, &patterns, &n, (size_t)cfg->max_subscriptions);
    if (rc) {
        http_error(r, 400, rc == -2 ? "too_many_subjects" : "invalid_subject",
                   rc == -2 ? "too many subject parameters"
                            : "give one or more valid subject patterns: ?subject=a.b.>");
        goto out;
    }
    if (read_since(r, &since)) {
        http_error(r, 400, "invalid_since",
                   "since / Last-Event-ID must be a message id or an RFC 3339 time");
        goto out;
    }
    if (!may_subscribe(r, p, patterns, n, &since, ip))
        goto out;
    e = calloc(1, sizeof *e);
    if (!e) {
        http_error(r, 503, "unavailable", "out of memory");
        goto out;
    }
    if (auth_lease_acquire(&e->lease, p, ip, "GET /api/v1/stream", &o)) {
        auth_respond(r, &o);
        goto out;
    }
    buf_init(&b, 1024);
    http_status_line(&b, 200);
    buf_append(&b, head_fmt, sizeof head_fmt - 1);
    head = b.data ? sbuf_from(b.data, b.len) : NULL;
    buf_free(&b);
    if (!head) {
        http_error(r, 503, "unavailable", "out of memory");
        goto out;
    }
    e->conn = r->conn;
    e->heartbeat_ms = (uint64_t)cfg->heartbeat_ms;
    e->sub.ops = &sse_sub_ops;
    e->sub.conn = r->conn;
    rc = http_take_over(r, head, &sse_proto, e, PROTO_SSE);
    sbuf_unref(head);
    if (rc)
        goto out;
    conn_set_timeout(e->conn, e->heartbeat_ms);
    if (hub_subscribe(hub_of(e->conn->loop), &e->sub, p->tenant,
                      (const char *const *)patterns, n, &since))
        conn_close(e->conn);
    e = NULL;      /* the connection owns it now: on_close -> released */
out:
    if (e) {
        auth_lease_release(&e->lease);
        free(e);
    }
    free_patterns(patterns, n);
    principal_unref(p);
}
