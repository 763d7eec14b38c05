/*
 * websocket.c - the WebSocket transport. See websocket.h.
 *
 * Liveness: the connection's timer fires every ping interval; if nothing
 * at all arrived since the previous ping, the peer is gone and the
 * connection is closed, else a new ping goes out. One wheel timer per
 * connection, no allocation.
 */
#include "http/websocket.h"

#include <stdlib.h>
#include <string.h>

#include "ops/log.h"
#include "ops/metrics.h"

#define WS_CLOSE_LINGER_MS 2000

static const conn_proto_t ws_proto;

static void ws_send_control(ws_conn_t *ws, unsigned op, const void *p, size_t len)
{
    sbuf_t *f = ws_frame_new(op, p, len);

    if (f) {
        conn_send_force(ws->conn, f);
        sbuf_unref(f);
    }
}

void ws_close(ws_conn_t *ws, unsigned code, const char *reason)
{
    sbuf_t *f;

    if (ws->close_sent || ws->conn->closing)
        return;
    ws->close_sent = true;
    f = ws_close_frame_new((uint16_t)code, reason ? reason : "");
    if (f) {
        conn_send_force(ws->conn, f);
        sbuf_unref(f);
    }
    conn_close_after_flush(ws->conn, WS_CLOSE_LINGER_MS);
}

int ws_send_text(ws_conn_t *ws, const char *p, size_t len, bool force)
{
    sbuf_t *f;
    int rc;

    if (ws->close_sent)
        return CONN_ECLOSED;
    f = ws_frame_new(WS_OP_TEXT, p, len);
    if (!f)
        return CONN_ENOMEM;
    rc = force ? conn_send_force(ws->conn, f) : conn_send(ws->conn, f);
    sbuf_unref(f);
    return rc;
}

int ws_send_frame(ws_conn_t *ws, sbuf_t *frame)
{
    if (ws->close_sent)
        return CONN_ECLOSED;
    return conn_send(ws->conn, frame);
}

static void handle_event(ws_conn_t *ws, const ws_event_t *ev)
{
    switch (ev->type) {
    case WS_EV_TEXT:
    case WS_EV_BINARY:
        if (!ws->close_sent)
            ws->h->on_message(ws, ev->type == WS_EV_BINARY, ev->data, ev->len);
        break;
    case WS_EV_PING:
        if (!ws->close_sent)
            ws_send_control(ws, WS_OP_PONG, ev->data, ev->len);
        break;
    case WS_EV_PONG:
        break;
    case WS_EV_CLOSE:
        if (!ws->close_sent) {
            unsigned code = ev->close_code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL
                                                                 : ev->close_code;
            ws_close(ws, code, "");
        } else {
            conn_close(ws->conn);
        }
        break;
    }
}

static size_t on_data(conn_t *c, char *data, size_t len)
{
    ws_conn_t *ws = c->ctx;
    size_t off = 0;

    ws->awaiting_pong = false;
    while (off < len && !c->closing) {
        ws_event_t ev;
        size_t used = 0;
        unsigned code = WS_CLOSE_PROTOCOL;
        int rc = ws_reader_feed(&ws->reader, (unsigned char *)data + off, len - off, &used,
                                &ev, &code);
        off += used;
        if (rc < 0) {
            LOG_DEBUG("websocket protocol error", "\"conn\":%lu,\"code\":%u",
                      (unsigned long)c->id, code);
            ws_close(ws, code, code == WS_CLOSE_TOO_BIG       ? "message too big"
                               : code == WS_CLOSE_INVALID_DATA ? "invalid UTF-8"
                                                               : "protocol error");
            return len;
        }
        if (rc == 0)
            break;
        handle_event(ws, &ev);
        if (ev.type == WS_EV_CLOSE)
            return len;
    }
    return len;
}

static void on_timeout(conn_t *c)
{
    ws_conn_t *ws = c->ctx;

    if (ws->awaiting_pong) {
        conn_close(c);
        return;
    }
    if (ws->h->on_tick) {
        ws->h->on_tick(ws);
        if (ws->close_sent || conn_is_closing(c))
            return;
    }
    ws->awaiting_pong = true;
    ws_send_control(ws, WS_OP_PING, NULL, 0);
    conn_set_timeout(c, ws->ping_ms);
}

static void on_drain(conn_t *c)
{
    ws_conn_t *ws = c->ctx;

    if (ws->h->on_drain && !ws->close_sent)
        ws->h->on_drain(ws);
}

static void on_shutdown(conn_t *c)
{
    ws_close(c->ctx, WS_CLOSE_GOING_AWAY, "server shutting down");
}

static void on_close(conn_t *c)
{
    ws_conn_t *ws = c->ctx;

    if (ws->h->on_close)
        ws->h->on_close(ws);
    ws_reader_free(&ws->reader);
    free(ws);
}

static const conn_proto_t ws_proto = {
    .on_data = on_data,
    .on_timeout = on_timeout,
    .on_drain = on_drain,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
};

ws_conn_t *ws_upgrade(http_req_t *r, const ws_handler_t *h, void *app,
                      uint64_t max_message, uint64_t ping_ms)
{
    char accept[WS_ACCEPT_LEN + 1];
    size_t klen = 0, vlen = 0;
    const char *key = http_header(r, "Sec-WebSocket-Key", &klen);
    const char *ver = http_header(r, "Sec-WebSocket-Version", &vlen);
    ws_conn_t *ws;
    buf_t b;
    sbuf_t *head;

    if (r->head.minor_version < 1 || !http_header_has_token(r, "Upgrade", "websocket") ||
        !http_header_has_token(r, "Connection", "upgrade")) {
        http_error(r, 400, "bad_request", "a WebSocket upgrade request is expected here");
        return NULL;
    }
    if (!ver || vlen != 2 || memcmp(ver, "13", 2) != 0) {
        http_add_header(r, "Sec-WebSocket-Version", "13");
        http_error(r, 426, "upgrade_required", "only WebSocket version 13 is supported");
        return NULL;
    }
    if (!key || ws_accept_key(key, klen, accept) != 0) {
        http_error(r, 400, "bad_request", "invalid Sec-WebSocket-Key");
        return NULL;
    }
    if (r->body.len) {
        http_error(r, 400, "bad_request", "an upgrade request has no body");
        return NULL;
    }
    ws = calloc(1, sizeof *ws);
    if (!ws) {
        http_error(r, 503, "unavailable", "out of memory");
        return NULL;
    }
    ws->conn = r->conn;
    ws->h = h;
    ws->app = app;
    ws->ping_ms = ping_ms;
    ws_reader_init(&ws->reader, max_message);
    buf_init(&b, 1024);
    buf_printf(&b, "HTTP/1.1 101 Switching Protocols\r\nServer: switchboard\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
    head = b.data ? sbuf_from(b.data, b.len) : NULL;
    buf_free(&b);
    if (!head || http_take_over(r, head, &ws_proto, ws, PROTO_WS)) {
        sbuf_unref(head);
        ws_reader_free(&ws->reader);
        free(ws);
        conn_close(r->conn);
        return NULL;
    }
    sbuf_unref(head);
    conn_set_timeout(ws->conn, ping_ms);
    return ws;
}
