/*
 * conn.c - client connections. See conn.h for the contracts.
 *
 * Reads land in the loop's shared buffer; only bytes a protocol leaves
 * unconsumed are copied into the connection's own buffer, so an idle
 * subscriber costs no read buffer at all. Writes go out one writev per
 * flush; only one uv_write is in flight per connection, and everything
 * queued meanwhile goes out in the next one.
 */
#include "net/conn.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/log.h"
#include "ops/metrics.h"

#define CONN_WRITE_BATCH 64

static atomic_uint_fast64_t conns_open;
static atomic_uint_fast64_t next_conn_id = 1;
static uint64_t conns_max = UINT64_MAX;
static size_t out_hard;               /* 0: 8 x the connection's soft limit */
static uint64_t out_grace_ms = 5000;

void conn_set_max(uint64_t max) { conns_max = max; }

void conn_set_output_limits(size_t hard, uint64_t grace_ms)
{
    out_hard = hard;
    out_grace_ms = grace_ms;
}
uint64_t conn_count(void) { return atomic_load(&conns_open); }

static void maybe_destroy(conn_t *c);
static void dispatch(conn_t *c);
static void start_reading(conn_t *c);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn_t *c = h->data;

    buf->base = c->loop->readbuf;
    buf->len = LOOP_READBUF;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;

    if (n == 0)
        return;
    if (n < 0) {
        if (n != UV_EOF)
            LOG_DEBUG("read failed", "\"conn\":%lu,\"error\":\"%s\"",
                      (unsigned long)c->id, uv_err_name((int)n));
        conn_close(c);
        return;
    }
    METRIC_ADD(bytes_in, (uint64_t)n);
    if (c->lingering)
        return;          /* closing: input is discarded */
    if (c->in.len == 0 && !c->read_paused && !c->dispatching) {
        const conn_proto_t *p = c->proto;
        size_t used;

        c->dispatching = true;
        used = p->on_data(c, buf->base, (size_t)n);
        c->dispatching = false;
        if (c->closing)
            goto out;
        if (used < (size_t)n && buf_append(&c->in, buf->base + used, (size_t)n - used)) {
            conn_close(c);
            goto out;
        }
        if (used > 0 || p != c->proto)   /* e.g. a pipelined request */
            dispatch(c);
    } else {
        if (buf_append(&c->in, buf->base, (size_t)n)) {
            conn_close(c);
            goto out;
        }
        dispatch(c);
    }
out:
    if (!c->closing && c->reading && c->in.len > CONN_MAX_PENDING_IN) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Offers pending input to the current protocol until it stops making
 * progress (a protocol switch counts as progress). */
static void dispatch(conn_t *c)
{
    if (c->dispatching)
        return;
    c->dispatching = true;
    while (!c->closing && !c->read_paused && c->in.len) {
        const conn_proto_t *p = c->proto;
        size_t used = p->on_data(c, c->in.data, c->in.len);
        if (c->closing)
            break;
        buf_consume(&c->in, used);
        if (used == 0 && p == c->proto)
            break;
    }
    c->dispatching = false;
}

static void free_refused(uv_handle_t *h) { free(h->data); }

static void start_reading(conn_t *c)
{
    if (c->closing || c->close_after_flush || c->reading || c->read_paused ||
        c->in.len > CONN_MAX_PENDING_IN)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

static void on_timer(loop_timer_t *t)
{
    conn_t *c = container_of(t, conn_t, timer);

    if (c->close_after_flush)
        conn_close(c);
    else if (!c->closing && c->proto->on_timeout)
        c->proto->on_timeout(c);
}

conn_t *conn_accept(loop_t *l, uv_stream_t *server, const conn_proto_t *p,
                    void *ctx, size_t out_limit)
{
    conn_t *c = calloc(1, sizeof *c);
    struct sockaddr_storage sa;
    int salen = sizeof sa;

    if (!c)
        return NULL;
    c->loop = l;
    c->proto = p;
    c->ctx = ctx;
    c->out_limit = out_limit;
    c->refs = 0;
    buf_init(&c->in, CONN_MAX_PENDING_IN + LOOP_READBUF);
    list_init(&c->flush_node);
    list_init(&c->all_node);
    loop_timer_init(&c->timer, on_timer);
    uv_tcp_init(&l->uv, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        atomic_load(&conns_open) >= conns_max) {
        if (atomic_load(&conns_open) >= conns_max)
            METRIC_INC(refused_conns);
        uv_close((uv_handle_t *)&c->tcp, free_refused);
        return NULL;
    }
    atomic_fetch_add(&conns_open, 1);
    c->id = atomic_fetch_add(&next_conn_id, 1);
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        if (sa.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&sa, c->peer, sizeof c->peer);
        else
            uv_ip4_name((struct sockaddr_in *)&sa, c->peer, sizeof c->peer);
    }
    list_insert_tail(&l->conns, &c->all_node);
    l->nconns++;
    c->metric_proto = PROTO_HTTP;
    METRIC_INC(conn_opened[PROTO_HTTP]);
    start_reading(c);
    return c;
}

void conn_set_proto(conn_t *c, const conn_proto_t *p, void *ctx, int metric_proto)
{
    c->proto = p;
    c->ctx = ctx;
    if (metric_proto != c->metric_proto) {
        METRIC_INC(conn_closed[c->metric_proto]);
        METRIC_INC(conn_opened[metric_proto]);
        c->metric_proto = metric_proto;
    }
}

static int enqueue(conn_t *c, sbuf_t *b)
{
    if (c->out_count == c->out_cap) {
        size_t ncap = c->out_cap ? c->out_cap * 2 : 8;
        conn_out_t *q = malloc(ncap * sizeof *q);
        if (!q)
            return CONN_ENOMEM;
        for (size_t i = 0; i < c->out_count; i++)
            q[i] = c->outq[(c->out_head + i) % c->out_cap];
        free(c->outq);
        c->outq = q;
        c->out_cap = ncap;
        c->out_head = 0;
    }
    c->outq[(c->out_head + c->out_count++) % c->out_cap] =
        (conn_out_t){sbuf_ref(b), 0};
    c->out_bytes += b->len;
    if (!c->writing && list_empty(&c->flush_node))
        list_insert_tail(&c->loop->flush_list, &c->flush_node);
    return 0;
}

int conn_send(conn_t *c, sbuf_t *b)
{
    size_t after;

    if (c->closing || c->close_after_flush)
        return CONN_ECLOSED;
    after = c->out_bytes + b->len;
    if (after > c->out_limit) {
        uint64_t now = loop_now(c->loop) + 1;        /* never 0 */
        size_t hard = out_hard ? out_hard : c->out_limit * 8;
        if (after > hard)
            return CONN_EFULL;
        if (!c->over_since)
            c->over_since = now;
        else if (now - c->over_since >= out_grace_ms)
            return CONN_EFULL;
    }
    return enqueue(c, b);
}

int conn_send_force(conn_t *c, sbuf_t *b)
{
    if (c->closing)
        return CONN_ECLOSED;
    return enqueue(c, b);
}

int conn_send_copy(conn_t *c, const void *p, size_t len)
{
    sbuf_t *b = sbuf_from(p, len);
    int rc;

    if (!b)
        return CONN_ENOMEM;
    rc = conn_send_force(c, b);
    sbuf_unref(b);
    return rc;
}

size_t conn_queued(const conn_t *c) { return c->out_bytes; }

static void release_out(conn_t *c, size_t n)
{
    for (size_t i = 0; i < n && c->out_count; i++) {
        conn_out_t *o = &c->outq[c->out_head];
        c->out_bytes -= o->buf->len - o->off;
        sbuf_unref(o->buf);
        c->out_head = (c->out_head + 1) % c->out_cap;
        c->out_count--;
    }
}

static void on_shutdown_done(uv_shutdown_t *req, int status)
{
    conn_release(req->data);
}

/* The output of a connection closing after flush is out: send FIN and
 * read (discarding) until the peer's EOF; the linger timer, armed by
 * conn_close_after_flush, bounds the wait. */
static void linger(conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    c->lingering = true;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown_done)) {
        conn_close(c);
        return;
    }
    conn_hold(c);
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

/* Some output was written: count it, restart the slow-consumer grace when
 * the queue is back under the soft limit, and after the last byte close
 * (when asked to) or tell the protocol. */
static void wrote(conn_t *c, size_t bytes_before)
{
    METRIC_ADD(bytes_out, (uint64_t)(bytes_before - c->out_bytes));
    if (c->out_bytes <= c->out_limit)
        c->over_since = 0;
    if (c->out_count) {
        if (list_empty(&c->flush_node))
            list_insert_tail(&c->loop->flush_list, &c->flush_node);
    } else if (c->close_after_flush) {
        linger(c);
    } else if (c->proto->on_drain) {
        c->proto->on_drain(c);
    }
}

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    size_t before = c->out_bytes;

    c->writing = false;
    release_out(c, c->inflight);
    c->inflight = 0;
    if (status < 0) {
        if (status != UV_ECANCELED)
            LOG_DEBUG("write failed", "\"conn\":%lu,\"error\":\"%s\"",
                      (unsigned long)c->id, uv_err_name(status));
        conn_close(c);
    } else if (!c->closing) {
        wrote(c, before);
    }
    conn_release(c);
}

/* Releases the queue entries the first `bytes` written bytes cover and
 * advances the offset of a partly written one. */
static void consume_written(conn_t *c, size_t bytes)
{
    while (bytes && c->out_count) {
        conn_out_t *o = &c->outq[c->out_head];
        size_t left = o->buf->len - o->off;
        if (bytes < left) {
            o->off += bytes;
            c->out_bytes -= bytes;
            return;
        }
        bytes -= left;
        release_out(c, 1);
    }
}

static size_t fill_bufs(conn_t *c, uv_buf_t *bufs)
{
    size_t n = 0;

    for (; n < c->out_count && n < CONN_WRITE_BATCH; n++) {
        conn_out_t *o = &c->outq[(c->out_head + n) % c->out_cap];
        bufs[n] = uv_buf_init(o->buf->data + o->off, (unsigned)(o->buf->len - o->off));
    }
    return n;
}

/* The loop's flush hook: one writev of up to CONN_WRITE_BATCH buffers.
 * Most of the time the socket takes it all at once (uv_try_write), which
 * costs no epoll registration; only what it leaves goes through uv_write
 * and its write callback. */
static void flush_one(list_node_t *node)
{
    conn_t *c = container_of(node, conn_t, flush_node);
    uv_buf_t bufs[CONN_WRITE_BATCH];
    size_t n, before = c->out_bytes;
    int rc;

    list_remove(node);
    if (c->closing || c->writing || c->out_count == 0)
        return;
    n = fill_bufs(c, bufs);
    rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
    if (rc < 0 && rc != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    if (rc > 0) {
        consume_written(c, (size_t)rc);
        if (c->out_count == 0 || c->outq[c->out_head].off == 0) {
            /* everything tried went out: done, or the next batch is due */
            wrote(c, before);
            return;
        }
        n = fill_bufs(c, bufs);
        METRIC_ADD(bytes_out, (uint64_t)(before - c->out_bytes));
    }
    c->wreq.data = c;
    rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, (unsigned)n, on_write);
    if (rc) {
        conn_close(c);
        return;
    }
    c->writing = true;
    c->inflight = n;
    conn_hold(c);
}

void conn_close_after_flush(conn_t *c, uint64_t linger_ms)
{
    if (c->closing || c->close_after_flush)
        return;
    c->close_after_flush = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    loop_timer_start(c->loop, &c->timer, linger_ms);
    if (c->out_count == 0 && !c->writing)
        linger(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;

    c->handle_closed = true;
    maybe_destroy(c);
}

void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    loop_timer_stop(&c->timer);
    list_remove(&c->flush_node);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

void conn_pause(conn_t *c)
{
    c->read_paused = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

void conn_resume(conn_t *c)
{
    if (c->closing)
        return;
    c->read_paused = false;
    dispatch(c);
    start_reading(c);
}

void conn_hold(conn_t *c) { c->refs++; }

void conn_release(conn_t *c)
{
    c->refs--;
    maybe_destroy(c);
}

static void maybe_destroy(conn_t *c)
{
    if (!c->handle_closed || c->refs > 0)
        return;
    c->refs = 1;          /* on_close may hold/release; never re-enter */
    if (c->proto && c->proto->on_close)
        c->proto->on_close(c);
    release_out(c, c->out_count);
    free(c->outq);
    buf_free(&c->in);
    list_remove(&c->all_node);
    c->loop->nconns--;
    METRIC_INC(conn_closed[c->metric_proto]);
    atomic_fetch_sub(&conns_open, 1);
    free(c);
}

void conn_set_timeout(conn_t *c, uint64_t ms)
{
    if (c->close_after_flush)
        return;              /* the linger timer must stay */
    if (ms)
        loop_timer_start(c->loop, &c->timer, ms);
    else
        loop_timer_stop(&c->timer);
}

void conn_foreach(loop_t *l, void (*fn)(conn_t *c, void *arg), void *arg)
{
    list_node_t *n, *tmp;

    list_foreach_safe(n, tmp, &l->conns) {
        conn_t *c = container_of(n, conn_t, all_node);
        if (!c->closing)
            fn(c, arg);
    }
}

void conn_loop_init(loop_t *l) { l->flush_cb = flush_one; }
