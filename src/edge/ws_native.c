/*
 * ws_native.c - Switchboard's own WebSocket protocol on GET /api/v1/ws:
 * JSON text messages, one object each, with a "type".
 *
 *   client -> server                        server -> client
 *   auth        {id?, token}                authenticated {id, tenant, key}
 *   subscribe   {id?, subject, since?}      subscribed {id, subject}
 *                                           caught_up  {id}     (after replay)
 *   unsubscribe {id}                        unsubscribed {id}
 *   publish     {id?, subject, event?, data} published {id, seq, stored}
 *   ping        {id?}                       pong {id}
 *                                           message {message: envelope}
 *                                           error {id, code, message}
 *
 * Credentials: the Authorization header or ?token= at the upgrade (a bad
 * one is answered 401/429 before any WebSocket exists); without either, the
 * first message must be "auth" within auth.ws_auth_timeout_ms. Close
 * codes: 4401 missing/invalid credential, or one revoked or expired while
 * connected (re-checked every ping interval); 4429 rate or connection
 * limit at authentication. A subscribe or publish the credential does not
 * permit is answered with an error "forbidden" and the connection stays;
 * a publish over the credential's rate gets "rate_limited".
 *
 * A connection may hold several subscriptions (each its own resume point);
 * a message matching more than one is sent once. Message frames are
 * encoded once per message (MSG_ENC_WS) and shared by every connection.
 * A subscriber whose queue passes the outbound limit is closed with 4008.
 * Binary messages are refused with close 1003.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth/auth.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/subject.h"
#include "edge/edge.h"
#include "http/websocket.h"
#include "ops/log.h"
#include "ops/metrics.h"

#define WSN_CLOSE_SLOW 4008
#define WSN_CLOSE_UNAUTHORIZED 4401
#define WSN_CLOSE_LIMITED 4429
#define WSN_ID_MAX 128

typedef struct wsn wsn_t;

typedef struct wsn_sub {
    hub_sub_t sub;
    wsn_t *owner;
    char *id;
    list_node_t node;
} wsn_sub_t;

struct wsn {
    ws_conn_t *ws;
    auth_lease_t lease;        /* lease.p is NULL until authenticated */
    char ip[AUTH_IP_MAX];
    list_node_t subs;
    size_t nsubs;
    uint64_t last_gen;         /* dedupe across this connection's subs */
    bool closed;
};

static sbuf_t *ws_encode(const msg_t *m)
{
    buf_t b;
    sbuf_t *s = NULL;
    unsigned char hdr[WS_FRAME_HEADER_MAX];

    buf_init(&b, SIZE_MAX);
    buf_append(&b, hdr, WS_FRAME_HEADER_MAX);    /* room for the header */
    buf_append_str(&b, "{\"type\":\"message\",\"message\":");
    if (msg_envelope(m, &b) == 0 && buf_append_byte(&b, '}') == 0) {
        size_t plen = b.len - WS_FRAME_HEADER_MAX;
        size_t hlen = ws_frame_header(hdr, WS_OP_TEXT, plen);
        s = sbuf_new(hlen + plen);
        if (s) {
            memcpy(s->data, hdr, hlen);
            memcpy(s->data + hlen, b.data + WS_FRAME_HEADER_MAX, plen);
        }
    }
    buf_free(&b);
    return s;
}

/* --- replies ---------------------------------------------------------------- */

static void reply(wsn_t *w, const char *type, const char *id, const char *extra)
{
    buf_t b;

    buf_init(&b, 64 * 1024);
    buf_printf(&b, "{\"type\":\"%s\"", type);
    if (id) {
        buf_append_str(&b, ",\"id\":");
        json_append_str(&b, id, strlen(id));
    }
    if (extra)
        buf_append_str(&b, extra);
    buf_append_byte(&b, '}');
    if (b.data)
        ws_send_text(w->ws, b.data, b.len, true);
    buf_free(&b);
}

static void reply_error(wsn_t *w, const char *id, const char *code, const char *message)
{
    buf_t b;

    buf_init(&b, 4096);
    buf_append_str(&b, ",\"code\":");
    json_append_str(&b, code, strlen(code));
    buf_append_str(&b, ",\"message\":");
    json_append_str(&b, message, strlen(message));
    reply(w, "error", id, b.data);
    buf_free(&b);
}

/* --- subscriptions --------------------------------------------------------------- */

static int deliver(hub_sub_t *s, msg_t *m)
{
    wsn_sub_t *ws = container_of(s, wsn_sub_t, sub);
    wsn_t *w = ws->owner;
    hub_t *h = hub_of(w->ws->conn->loop);
    sbuf_t *f;
    int rc;

    if (w->closed || conn_is_closing(w->ws->conn))
        return -1;
    if (!principal_event_allowed(w->lease.p, m->event, m->event ? strlen(m->event) : 0))
        return 0;
    if (hub_sub_live(s) && w->last_gen == hub_delivery_gen(h))
        return 0;                     /* sent for another subscription */
    w->last_gen = hub_delivery_gen(h);
    f = msg_encoded(m, MSG_ENC_WS, ws_encode);
    if (!f) {
        ws_close(w->ws, WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    rc = edge_deliver(w->ws->conn, f, PROTO_WS);
    if (rc == EDGE_SLOW)
        ws_close(w->ws, WSN_CLOSE_SLOW, "slow consumer");
    return rc ? -1 : 0;
}

static void caught_up(hub_sub_t *s, int err)
{
    wsn_sub_t *ws = container_of(s, wsn_sub_t, sub);

    if (ws->owner->closed)
        return;
    if (err)
        reply_error(ws->owner, ws->id, "store_unavailable", "replay failed; subscribe again");
    else
        reply(ws->owner, "caught_up", ws->id, NULL);
}

static void released(hub_sub_t *s)
{
    wsn_sub_t *ws = container_of(s, wsn_sub_t, sub);

    free(ws->id);
    free(ws);
}

static const hub_sub_ops_t wsn_sub_ops = {
    .deliver = deliver,
    .caught_up = caught_up,
    .released = released,
};

static wsn_sub_t *find_sub(wsn_t *w, const char *id)
{
    list_node_t *n, *tmp;

    list_foreach_safe(n, tmp, &w->subs) {
        wsn_sub_t *s = container_of(n, wsn_sub_t, node);
        if (strcmp(s->id, id) == 0)
            return s;
    }
    return NULL;
}

static void drop_sub(wsn_t *w, wsn_sub_t *s)
{
    list_remove(&s->node);
    w->nsubs--;
    hub_unsubscribe(&s->sub);
}

static void cmd_subscribe(wsn_t *w, json_t *obj, const char *id)
{
    const config_t *cfg = edge_cfg();
    json_t *jsubj = json_object_get(obj, "subject"), *jsince = json_object_get(obj, "since");
    const char *subject = json_string_value(jsubj);
    hub_since_t since = {.kind = HUB_SINCE_NONE};
    wsn_sub_t *s;
    buf_t extra;

    if (!subject || !subj_valid_pattern(subject, json_string_length(jsubj))) {
        reply_error(w, id, "invalid_subject", "\"subject\" must be a valid subject pattern");
        return;
    }
    if (!id)
        id = subject;
    if (jsince && !json_is_null(jsince)) {
        char num[24];
        const char *sv = json_string_value(jsince);
        size_t sl = json_string_length(jsince);
        if (json_is_integer(jsince) && json_integer_value(jsince) >= 0) {
            sl = (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
                                  json_integer_value(jsince));
            sv = num;
        }
        if (!sv || edge_parse_since(sv, sl, &since)) {
            reply_error(w, id, "invalid_since", "\"since\" must be a message id or an RFC 3339 time");
            return;
        }
    }
    if (!edge_may_subscribe(NULL, w->lease.p, subject, since.kind != HUB_SINCE_NONE, w->ip,
                            "WS subscribe")) {
        reply_error(w, id, "forbidden", since.kind != HUB_SINCE_NONE
                        ? "not permitted: subscribe to this subject with history"
                        : "not permitted: subscribe to this subject");
        return;
    }
    if (find_sub(w, id)) {
        reply_error(w, id, "duplicate_id", "a subscription with this id exists");
        return;
    }
    if (w->nsubs >= (size_t)cfg->max_subscriptions) {
        reply_error(w, id, "too_many_subscriptions", "subscription limit reached");
        return;
    }
    s = calloc(1, sizeof *s);
    if (!s || !(s->id = strdup(id))) {
        free(s);
        reply_error(w, id, "unavailable", "out of memory");
        return;
    }
    s->owner = w;
    s->sub.ops = &wsn_sub_ops;
    s->sub.conn = w->ws->conn;
    list_insert_tail(&w->subs, &s->node);
    w->nsubs++;
    buf_init(&extra, 1024);
    buf_append_str(&extra, ",\"subject\":");
    json_append_str(&extra, subject, strlen(subject));
    reply(w, "subscribed", s->id, extra.data);
    buf_free(&extra);
    if (hub_subscribe(hub_of(w->ws->conn->loop), &s->sub, w->lease.p->tenant, &subject, 1,
                      &since)) {
        reply_error(w, id, "unavailable", "out of memory");
        drop_sub(w, s);
    }
}

static void cmd_unsubscribe(wsn_t *w, const char *id)
{
    wsn_sub_t *s = id ? find_sub(w, id) : NULL;

    if (!s) {
        reply_error(w, id, "not_found", "no subscription with this id");
        return;
    }
    drop_sub(w, s);
    reply(w, "unsubscribed", id, NULL);
}

typedef struct wsn_pub {
    wsn_t *w;
    conn_t *conn;
    char *id;
} wsn_pub_t;

static void published(void *arg, int err, msg_t *m)
{
    wsn_pub_t *p = arg;

    if (!conn_is_closing(p->conn)) {
        if (err) {
            reply_error(p->w, p->id, "store_unavailable", "the message could not be stored");
        } else {
            char extra[96];
            METRIC_INC(msgs_in[SRC_WS]);
            if (m->seq)
                snprintf(extra, sizeof extra, ",\"seq\":%" PRIu64 ",\"stored\":true", m->seq);
            else
                snprintf(extra, sizeof extra, ",\"seq\":null,\"stored\":false");
            reply(p->w, "published", p->id, extra);
        }
    }
    conn_release(p->conn);
    free(p->id);
    free(p);
}

static void cmd_publish(wsn_t *w, const char *text, size_t len, const char *id)
{
    const char *code, *why;
    msg_t *m;
    wsn_pub_t *p;
    auth_outcome_t o;

    if (!auth_rate(w->lease.p, w->ip, &o)) {
        reply_error(w, id, o.code, o.message);
        return;
    }
    m = edge_publish_parse(text, len, w->lease.p->tenant, &code, &why);
    if (!m) {
        reply_error(w, id, code, why);
        return;
    }
    if (!edge_may_publish(NULL, w->lease.p, m, w->ip, "WS publish")) {
        reply_error(w, id, "forbidden", "not permitted: publish this subject or event type");
        msg_unref(m);
        return;
    }
    p = calloc(1, sizeof *p);
    if (!p || (id && !(p->id = strdup(id)))) {
        free(p);
        msg_unref(m);
        reply_error(w, id, "unavailable", "out of memory");
        return;
    }
    p->w = w;
    p->conn = w->ws->conn;
    conn_hold(p->conn);
    if (hub_publish(m, p->conn->loop, published, p)) {
        reply_error(w, id, "store_unavailable", "the store is not accepting messages");
        conn_release(p->conn);
        free(p->id);
        free(p);
    }
    msg_unref(m);
}

/* --- authentication ------------------------------------------------------------ */

/* Takes principal p (its reference) as this connection's credential. */
static int authenticate(wsn_t *w, principal_t *p, auth_outcome_t *o)
{
    int rc = auth_lease_acquire(&w->lease, p, w->ip, "GET /api/v1/ws", o);

    principal_unref(p);
    return rc;
}

/* The first message of a connection that upgraded without a credential. */
static void cmd_auth(wsn_t *w, json_t *obj, const char *id)
{
    json_t *jtok = json_object_get(obj, "token");
    const char *tok = json_string_value(jtok);
    auth_outcome_t o;
    principal_t *p = auth_check(tok, tok ? json_string_length(jtok) : 0, w->ip,
                                "WS auth", &o);
    buf_t extra;

    if (!p || authenticate(w, p, &o) || !w->lease.p) {
        ws_close(w->ws, o.status == 429 ? WSN_CLOSE_LIMITED : WSN_CLOSE_UNAUTHORIZED,
                 o.message);
        return;
    }
    buf_init(&extra, 512);
    buf_append_str(&extra, ",\"tenant\":");
    json_append_str(&extra, w->lease.p->tenant, w->lease.p->tenant_len);
    buf_append_str(&extra, ",\"key\":");
    json_append_str(&extra, w->lease.p->id, w->lease.p->id_len);
    reply(w, "authenticated", id, extra.data);
    buf_free(&extra);
}

/* Every ping interval: the deadline of the first message, then the
 * credential's state. */
static void on_tick(ws_conn_t *ws)
{
    wsn_t *w = ws->app;

    if (!w->lease.p)
        ws_close(ws, WSN_CLOSE_UNAUTHORIZED, "authentication timeout");
    else if (!auth_still_valid(w->lease.p, clock_now_ms()))
        ws_close(ws, WSN_CLOSE_UNAUTHORIZED, "credential revoked or expired");
}

/* --- transport callbacks ---------------------------------------------------- */

static void on_message(ws_conn_t *ws, bool binary, const unsigned char *data, size_t len)
{
    wsn_t *w = ws->app;
    json_error_t jerr;
    json_t *obj, *jid;
    const char *type, *id = NULL;
    char idbuf[WSN_ID_MAX + 1];

    if (binary) {
        ws_close(ws, WS_CLOSE_UNSUPPORTED, "binary messages are not supported");
        return;
    }
    obj = json_loadb((const char *)data, len, 0, &jerr);
    if (!json_is_object(obj) && !w->lease.p) {
        ws_close(ws, WSN_CLOSE_UNAUTHORIZED, "authentication required: send {\"type\":\"auth\"}");
    } else if (!json_is_object(obj)) {
        reply_error(w, NULL, "invalid_json", "each message must be one JSON object");
        json_decref(obj);
        return;
    }
    jid = json_object_get(obj, "id");
    if (json_is_string(jid) && json_string_length(jid) <= WSN_ID_MAX &&
        json_string_length(jid) > 0) {
        id = json_string_value(jid);
    } else if (json_is_integer(jid)) {
        snprintf(idbuf, sizeof idbuf, "%" JSON_INTEGER_FORMAT, json_integer_value(jid));
        id = idbuf;
    } else if (jid && !json_is_null(jid)) {
        reply_error(w, NULL, "bad_request", "\"id\" must be a string of 1 to 128 bytes");
        json_decref(obj);
        return;
    }
    type = json_string_value(json_object_get(obj, "type"));
    if (!w->lease.p && (!type || strcmp(type, "auth") != 0))
        ws_close(ws, WSN_CLOSE_UNAUTHORIZED, "authentication required: send {\"type\":\"auth\"}");
    else if (!type)
        reply_error(w, id, "bad_request", "\"type\" is required");
    else if (strcmp(type, "auth") == 0 && !w->lease.p)
        cmd_auth(w, obj, id);
    else if (strcmp(type, "auth") == 0)
        reply_error(w, id, "already_authenticated", "this connection is authenticated");
    else if (strcmp(type, "subscribe") == 0)
        cmd_subscribe(w, obj, id);
    else if (strcmp(type, "unsubscribe") == 0)
        cmd_unsubscribe(w, id);
    else if (strcmp(type, "publish") == 0)
        cmd_publish(w, (const char *)data, len, id);
    else if (strcmp(type, "ping") == 0)
        reply(w, "pong", id, NULL);
    else
        reply_error(w, id, "unknown_type",
                    "type must be auth, subscribe, unsubscribe, publish or ping");
    json_decref(obj);
}

static void on_drain(ws_conn_t *ws)
{
    wsn_t *w = ws->app;
    list_node_t *n, *tmp;

    list_foreach_safe(n, tmp, &w->subs)
        hub_sub_drained(&container_of(n, wsn_sub_t, node)->sub);
}

static void on_close(ws_conn_t *ws)
{
    wsn_t *w = ws->app;

    w->closed = true;
    while (!list_empty(&w->subs))
        drop_sub(w, container_of(w->subs.next, wsn_sub_t, node));
    auth_lease_release(&w->lease);
    free(w);
}

static const ws_handler_t wsn_handler = {
    .on_message = on_message,
    .on_drain = on_drain,
    .on_tick = on_tick,
    .on_close = on_close,
};

/* Whether the upgrade request carries a credential (header or ?token=). */
static bool presents_credential(const http_req_t *r)
{
    buf_t v;
    bool found;

    if (http_header(r, "Authorization", NULL))
        return true;
    buf_init(&v, AUTH_CRED_MAX);
    found = http_query_get(r, "token", 0, &v) != 0;
    buf_free(&v);
    return found;
}

void ws_native_handle(http_req_t *r)
{
    const config_t *cfg = edge_cfg();
    wsn_t *w = calloc(1, sizeof *w);
    auth_outcome_t o;
    principal_t *p;

    if (!w) {
        http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    list_init(&w->subs);
    auth_client_ip(r, w->ip);
    if (presents_credential(r)) {
        if (!(p = auth_request(r, AUTH_QUERY_TOKEN)))
            goto refused;
        if (authenticate(w, p, &o)) {
            auth_respond(r, &o);
            goto refused;
        }
    }
    w->ws = ws_upgrade(r, &wsn_handler, w, (uint64_t)cfg->max_ws_message,
                       (uint64_t)cfg->heartbeat_ms);
    if (!w->ws)
        goto refused;
    if (!w->lease.p && cfg->ws_auth_timeout_ms < cfg->heartbeat_ms)
        conn_set_timeout(w->ws->conn, (uint64_t)cfg->ws_auth_timeout_ms);
    return;
refused:
    auth_lease_release(&w->lease);
    free(w);
}
