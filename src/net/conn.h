/*
 * conn.h - a client TCP connection: reading into the loop's shared buffer,
 * a bounded queue of shared output buffers, one timer, and destruction at a
 * safe point.
 *
 * A connection speaks one protocol at a time through a conn_proto_t (HTTP
 * first; WebSocket or SSE after an upgrade). The protocol gets every byte
 * read and returns how many it consumed; unconsumed bytes are kept for the
 * next call (capped: a protocol that keeps more than CONN_MAX_PENDING_IN
 * gets reading paused until it consumes).
 *
 * Output is a queue of sbuf references (the same bytes may sit in
 * thousands of queues). Slow consumers are detected as Redis does for
 * pub/sub clients: conn_send() refuses to queue (CONN_EFULL) once the
 * queue would pass the hard limit, or once it has stayed above the soft
 * limit (out_limit) for the grace period. A burst larger than the soft
 * limit that a healthy client drains at once (one big group commit) is
 * therefore not mistaken for a slow client, and memory stays bounded by
 * the hard limit. The caller decides what to do on CONN_EFULL (usually
 * conn_send_force a goodbye and close). Queued output is written with one
 * writev per flush, just before the loop sleeps.
 *
 * Lifetime: conn_close() stops I/O at once; the memory lives on while
 * asynchronous work holds references (conn_hold/conn_release), and the
 * protocol's on_close runs exactly once, when the handle is closed and the
 * last reference is gone - so completions may always touch their conn,
 * and must check conn_is_closing() before acting.
 */
#ifndef SB_CONN_H
#define SB_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/buf.h"
#include "core/list.h"
#include "net/loop.h"

#define CONN_MAX_PENDING_IN (1u << 20)
#define CONN_EFULL (-1)
#define CONN_ECLOSED (-2)
#define CONN_ENOMEM (-3)

typedef struct conn conn_t;

typedef struct conn_proto {
    /* Bytes arrived (data is writable and valid during the call only).
     * Returns the bytes consumed; the rest is offered again with more. */
    size_t (*on_data)(conn_t *c, char *data, size_t len);
    void (*on_timeout)(conn_t *c);
    /* Every queued byte was written (optional). */
    void (*on_drain)(conn_t *c);
    /* Server shutdown began (optional; default closes after flush). */
    void (*on_shutdown)(conn_t *c);
    /* Final: free protocol state. Runs once, on the loop, at a safe point. */
    void (*on_close)(conn_t *c);
} conn_proto_t;

typedef struct conn_out {
    sbuf_t *buf;
    size_t off;
} conn_out_t;

struct conn {
    uv_tcp_t tcp;
    loop_t *loop;
    uint64_t id;                  /* process-unique, for logs */
    const conn_proto_t *proto;
    void *ctx;                    /* protocol state */
    int metric_proto;             /* enum metrics_proto, for gauges */
    char peer[48];                /* "ip" of the peer */
    /* private */
    buf_t in;
    conn_out_t *outq;             /* ring */
    size_t out_head, out_count, out_cap;
    size_t out_bytes;             /* queued, including in flight */
    size_t out_limit;             /* soft limit (public, read-only) */
    uint64_t over_since;          /* loop ms when the soft limit was passed */
    size_t inflight;              /* ring entries in the current write */
    uv_write_t wreq;
    list_node_t flush_node;
    list_node_t all_node;
    uv_shutdown_t sreq;           /* the FIN of a lingering close */
    loop_timer_t timer;
    int refs;
    bool closing, handle_closed, writing, read_paused, close_after_flush,
        reading, dispatching, lingering;
};

/* Accepts a pending connection from server on loop l with protocol p.
 * NULL when the accept failed or max connections is reached. */
conn_t *conn_accept(loop_t *l, uv_stream_t *server, const conn_proto_t *p,
                    void *ctx, size_t out_limit);
/* Installs the connections' flush hook on a loop (once, at start-up). */
void conn_loop_init(loop_t *l);
/* Process-wide connection cap (set once at start-up). */
void conn_set_max(uint64_t max);
/* Process-wide output limits beyond each connection's soft limit (set once
 * at start-up): the hard limit (0 = 8 x the soft limit) and how long the
 * queue may stay above the soft limit. */
void conn_set_output_limits(size_t hard, uint64_t grace_ms);
uint64_t conn_count(void);

/* Switches protocol (e.g. after an upgrade); the new one starts with any
 * bytes still pending, on the next read or conn_resume(). */
void conn_set_proto(conn_t *c, const conn_proto_t *p, void *ctx, int metric_proto);

/* Queues a reference to b (the conn takes its own). CONN_EFULL when the
 * consumer is too slow (see above; nothing queued), CONN_ECLOSED when
 * closing. */
int conn_send(conn_t *c, sbuf_t *b);
/* Same, ignoring the limits (small control data: responses, close frames). */
int conn_send_force(conn_t *c, sbuf_t *b);
int conn_send_copy(conn_t *c, const void *p, size_t len);
size_t conn_queued(const conn_t *c);

/* Closes after queued output is written: input stops reaching the
 * protocol, and once the output is out the write side is shut (FIN) and
 * input is read and discarded until the peer closes - a lingering close
 * (RFC 9112 9.6): closing with unread input would reset the connection,
 * which can destroy the response before the client reads it (e.g. a 413
 * sent while the client is still sending its body). The whole is bounded
 * by `linger_ms`. Idempotent; a later "now" overrides it. */
void conn_close_after_flush(conn_t *c, uint64_t linger_ms);
void conn_close(conn_t *c);
static inline bool conn_is_closing(const conn_t *c)
{
    return c->closing || c->close_after_flush;
}

/* Stop / restart delivering input to the protocol (e.g. while a request
 * is in flight). conn_resume re-offers pending bytes immediately. */
void conn_pause(conn_t *c);
void conn_resume(conn_t *c);

void conn_hold(conn_t *c);
void conn_release(conn_t *c);

/* Arms the connection's timer (calls proto->on_timeout); 0 disarms. */
void conn_set_timeout(conn_t *c, uint64_t ms);

/* Calls fn on every connection of loop l (fn may close them). */
void conn_foreach(loop_t *l, void (*fn)(conn_t *c, void *arg), void *arg);

#endif
