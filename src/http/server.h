/*
 * server.h - the HTTP/1.1 connection protocol: request lifecycle, routing,
 * responses and hand-off to upgraded protocols (WebSocket, SSE).
 *
 * One request at a time per connection. While a handler runs - including
 * asynchronously, e.g. waiting for a durable commit - input is paused, so
 * pipelined requests wait in the kernel and are answered in order.
 *
 * A handler receives an http_req_t and must finish it exactly once with
 * http_respond()/http_error()/http_respond_json(), or hand the connection
 * to another protocol (http_take_over). For asynchronous work it keeps the
 * request alive with http_req_hold()/http_req_release(); responding on a
 * connection that closed meanwhile is a harmless no-op.
 */
#ifndef SB_HTTP_SERVER_H
#define SB_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "http/parser.h"
#include "net/conn.h"

typedef struct http_settings {
    http_limits_t limits;
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t idle_timeout_ms;
    size_t outbound_queue;
} http_settings_t;

typedef struct http_req {
    conn_t *conn;
    http_head_t head;          /* points into raw */
    buf_t raw;                 /* the request head bytes */
    buf_t body;                /* decoded body, capped at max_body */
    buf_t resp_headers;        /* extra response header lines */
    uint64_t started_ns;
    bool responded;
    bool close_after;          /* force Connection: close */
    /* private */
    int state;
    uint64_t body_left;
    http_chunked_t chunked;
    bool seen_bytes;
    bool is_head;
} http_req_t;

typedef void (*http_handler_fn)(http_req_t *r);

void http_server_init(const http_settings_t *s);
const http_settings_t *http_server_settings(void);
/* Accept callback for listen_start(). */
void http_server_accept(loop_t *l, uv_stream_t *server);

/* Routes: exact paths, or prefixes when `prefix` (longest wins). methods
 * is a comma list ("GET,HEAD") or NULL for any. Call before serving. */
int http_route(const char *methods, const char *path, bool prefix, http_handler_fn fn);

void http_add_header(http_req_t *r, const char *name, const char *value);
void http_respond(http_req_t *r, int status, const char *content_type,
                  const void *body, size_t len);
void http_respond_json(http_req_t *r, int status, const buf_t *json);
/* {"error":{"code":code,"message":...}} */
void http_error(http_req_t *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* For asynchronous handlers: keep r (and its connection) alive. */
void http_req_hold(http_req_t *r);
void http_req_release(http_req_t *r);
/* Ends HTTP on this connection: sends `head` (already-formatted status
 * line and headers, e.g. a 101 or an SSE preamble) and switches the
 * connection to protocol p. The request is finished. */
int http_take_over(http_req_t *r, sbuf_t *head, const conn_proto_t *p, void *ctx,
                   int metric_proto);

/* Header and query helpers. */
const char *http_header(const http_req_t *r, const char *name, size_t *len);
/* True when header `name` holds `token` in its comma list (case-insens.). */
bool http_header_has_token(const http_req_t *r, const char *name, const char *token);
/* Finds the n-th (0-based) query parameter called name, percent-decoded
 * into out (capped by out->max). 1 found, 0 absent, -1 malformed/too long. */
int http_query_get(const http_req_t *r, const char *name, size_t nth, buf_t *out);
/* Percent-decodes s into out ('+' -> ' ' when plus_space). -1 malformed. */
int http_pct_decode(const char *s, size_t len, buf_t *out, bool plus_space);
bool http_method_is(const http_req_t *r, const char *m);

/* Formats "HTTP/1.1 <status> <reason>\r\nServer..\r\nDate..\r\n" into b. */
int http_status_line(buf_t *b, int status);
const char *http_reason(int status);

#endif
