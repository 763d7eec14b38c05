/*
 * websocket.h - the WebSocket transport (RFC 6455) on a connection: the
 * upgrade handshake, the frame reader, control frames, the close handshake
 * and keep-alive pings. Protocol adapters (src/edge) get whole messages and
 * send text or pre-encoded shared frames; they never see framing.
 *
 * Close codes sent by the transport: 1000 normal (echo), 1001 going away
 * (server shutdown), 1002 protocol error, 1007 invalid UTF-8, 1009 message
 * too big. Adapters add their own (4000-4999) through ws_close().
 */
#ifndef SB_WEBSOCKET_H
#define SB_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"
#include "http/ws_codec.h"

typedef struct ws_conn ws_conn_t;

typedef struct ws_handler {
    /* A whole text (valid UTF-8) or binary message; data valid during the
     * call only. */
    void (*on_message)(ws_conn_t *ws, bool binary, const unsigned char *data, size_t len);
    /* The output queue emptied (optional): resume paused producers. */
    void (*on_drain)(ws_conn_t *ws);
    /* Every ping interval, before the ping (optional): re-check whatever
     * may have changed (a revoked credential); closing here is fine. */
    void (*on_tick)(ws_conn_t *ws);
    /* Final: the connection is gone; free the adapter's state. */
    void (*on_close)(ws_conn_t *ws);
} ws_handler_t;

struct ws_conn {
    conn_t *conn;
    const ws_handler_t *h;
    void *app;                 /* the adapter's state */
    /* private */
    ws_reader_t reader;
    uint64_t ping_ms;
    bool close_sent;
    bool awaiting_pong;
};

/* Validates the handshake in r. On success answers 101, switches the
 * connection to WebSocket and returns the new ws_conn (owned by the
 * connection). On failure answers 400/426 itself and returns NULL. */
ws_conn_t *ws_upgrade(http_req_t *r, const ws_handler_t *h, void *app,
                      uint64_t max_message, uint64_t ping_ms);

/* Sends a text message (copied). Respects the outbound limit unless force:
 * returns 0, CONN_EFULL or CONN_ECLOSED. */
int ws_send_text(ws_conn_t *ws, const char *p, size_t len, bool force);
/* Queues a pre-encoded frame shared with other connections. */
int ws_send_frame(ws_conn_t *ws, sbuf_t *frame);
/* Starts the close handshake: sends a close frame (once) and closes the
 * connection after it is written. */
void ws_close(ws_conn_t *ws, unsigned code, const char *reason);

#endif
