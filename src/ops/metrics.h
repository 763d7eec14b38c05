/*
 * metrics.h - counters, gauges and one histogram, rendered in the
 * Prometheus text format.
 *
 * Hot paths (every delivery, every request) bump plain counters in the
 * calling thread's own shard with relaxed atomics: no shared cache line,
 * no lock. A scrape sums the shards. Threads that are not loops (the
 * store's) share the last shard. Gauges are derived (opened - closed) so
 * they need no decrement on a hot path either.
 */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/buf.h"

enum metrics_proto { PROTO_HTTP, PROTO_SSE, PROTO_WS, PROTO_MAX };
enum metrics_source { SRC_WEBHOOK, SRC_PUBLISH, SRC_WS, SRC_MAX };
/* Outcomes of authentication and authorization (label "outcome"). */
enum metrics_auth {
    MA_OK, MA_MISSING, MA_MALFORMED, MA_UNKNOWN, MA_BAD_SECRET, MA_REVOKED,
    MA_EXPIRED, MA_IP_NOT_ALLOWED, MA_INVALID_TOKEN, MA_FORBIDDEN,
    MA_RATE_LIMITED, MA_CONN_LIMITED, MA_MAX
};
/* Webhook signature checks (label "result"). */
enum metrics_sig {
    MS_OK, MS_MISSING, MS_MALFORMED, MS_MISMATCH, MS_STALE, MS_REPLAYED, MS_MAX
};

#define METRICS_SHARDS 65           /* 64 loops + one for other threads */
#define METRICS_COMMIT_BUCKETS 12

typedef struct metrics_shard {
    atomic_uint_fast64_t conn_opened[PROTO_MAX];
    atomic_uint_fast64_t conn_closed[PROTO_MAX];
    atomic_uint_fast64_t msgs_out[PROTO_MAX];
    atomic_uint_fast64_t slow_consumers[PROTO_MAX];
    atomic_uint_fast64_t msgs_in[SRC_MAX];
    atomic_uint_fast64_t bytes_in;
    atomic_uint_fast64_t bytes_out;
    atomic_uint_fast64_t http_status[600];
    atomic_uint_fast64_t subs_added;
    atomic_uint_fast64_t subs_removed;
    atomic_uint_fast64_t replayed;
    atomic_uint_fast64_t refused_conns;
    atomic_uint_fast64_t auth[MA_MAX];
    atomic_uint_fast64_t webhook_sig[MS_MAX];
    char pad[64];
} metrics_shard_t;

extern metrics_shard_t metrics_shards[METRICS_SHARDS];
extern _Thread_local metrics_shard_t *metrics_tls;

/* Binds the calling thread to shard i (loops call this with their index). */
void metrics_thread_init(int shard);

#define METRIC_ADD(field, n) \
    atomic_fetch_add_explicit(&metrics_tls->field, (n), memory_order_relaxed)
#define METRIC_INC(field) METRIC_ADD(field, 1)

/* Records one store commit latency (any thread). */
void metrics_commit_latency(uint64_t ns);

/* Extra lines appended to a scrape (store gauges), supplied by the server. */
typedef void (*metrics_extra_fn)(buf_t *out, void *ctx);
void metrics_set_extra(metrics_extra_fn fn, void *ctx);

/* Appends the whole exposition. 0 or a BUF_E* code. */
int metrics_render(buf_t *out);

#endif
