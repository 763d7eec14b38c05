/*
 * metrics.c - shards, the commit histogram and the text exposition.
 */
#include "ops/metrics.h"

#include <inttypes.h>
#include <string.h>

metrics_shard_t metrics_shards[METRICS_SHARDS];
_Thread_local metrics_shard_t *metrics_tls = &metrics_shards[METRICS_SHARDS - 1];

static const double commit_bounds[METRICS_COMMIT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 1.0};
static atomic_uint_fast64_t commit_buckets[METRICS_COMMIT_BUCKETS + 1];
static atomic_uint_fast64_t commit_sum_ns, commit_count;

static metrics_extra_fn extra_fn;
static void *extra_ctx;

static const char *const proto_names[PROTO_MAX] = {"http", "sse", "websocket"};
static const char *const source_names[SRC_MAX] = {"webhook", "publish", "websocket"};

void metrics_thread_init(int shard)
{
    if (shard < 0 || shard >= METRICS_SHARDS - 1)
        shard = METRICS_SHARDS - 1;
    metrics_tls = &metrics_shards[shard];
}

void metrics_set_extra(metrics_extra_fn fn, void *ctx)
{
    extra_fn = fn;
    extra_ctx = ctx;
}

void metrics_commit_latency(uint64_t ns)
{
    double s = (double)ns / 1e9;
    int i = 0;

    while (i < METRICS_COMMIT_BUCKETS && s > commit_bounds[i])
        i++;
    atomic_fetch_add_explicit(&commit_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&commit_sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&commit_count, 1, memory_order_relaxed);
}

#define SUM(expr) ({ uint64_t s_ = 0; \
    for (int k_ = 0; k_ < METRICS_SHARDS; k_++) { \
        metrics_shard_t *sh = &metrics_shards[k_]; \
        s_ += atomic_load_explicit(&(expr), memory_order_relaxed); } s_; })

static int header(buf_t *b, const char *name, const char *type, const char *help)
{
    return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric with one value and no labels. */
static int scalar(buf_t *b, const char *name, const char *type, const char *help,
                  uint64_t v)
{
    int rc = header(b, name, type, help);

    return rc ? rc : buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static const char *const auth_names[MA_MAX] = {
    "ok", "missing", "malformed", "unknown", "bad_secret", "revoked", "expired",
    "ip_not_allowed", "invalid_token", "forbidden", "rate_limited", "connection_limited",
};
static const char *const sig_names[MS_MAX] = {
    "ok", "missing", "malformed", "mismatch", "stale", "replayed",
};

/* A counter with one label over the values of an enum: which 0 msgs_in,
 * 1 auth, 2 webhook_sig. */
static int labelled(buf_t *b, const char *name, const char *help, const char *label,
                    const char *const *values, int n, int which)
{
    int rc = header(b, name, "counter", help);

    for (int i = 0; i < n && !rc; i++) {
        uint64_t v = which == 0 ? SUM(sh->msgs_in[i])
                   : which == 1 ? SUM(sh->auth[i]) : SUM(sh->webhook_sig[i]);
        rc = buf_printf(b, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, values[i], v);
    }
    return rc;
}

static int per_proto(buf_t *b, const char *name, const char *type, const char *help,
                     int which)
{
    int rc = header(b, name, type, help);

    for (int p = 0; p < PROTO_MAX && !rc; p++) {
        uint64_t v;
        switch (which) {
        case 0: v = SUM(sh->conn_opened[p]) - SUM(sh->conn_closed[p]); break;
        case 1: v = SUM(sh->conn_opened[p]); break;
        case 2: v = SUM(sh->msgs_out[p]); break;
        default: v = SUM(sh->slow_consumers[p]); break;
        }
        rc = buf_printf(b, "%s{protocol=\"%s\"} %" PRIu64 "\n", name, proto_names[p], v);
    }
    return rc;
}

static int render_histogram(buf_t *b)
{
    const char *n = "switchboard_store_commit_seconds";
    uint64_t cum = 0;
    int rc = header(b, n, "histogram", "Durable commit latency of the store's group commits.");

    for (int i = 0; i < METRICS_COMMIT_BUCKETS && !rc; i++) {
        cum += atomic_load_explicit(&commit_buckets[i], memory_order_relaxed);
        rc = buf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", n, commit_bounds[i], cum);
    }
    cum += atomic_load_explicit(&commit_buckets[METRICS_COMMIT_BUCKETS], memory_order_relaxed);
    if (!rc)
        rc = buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.9f\n%s_count %" PRIu64 "\n",
                        n, cum, n,
                        (double)atomic_load_explicit(&commit_sum_ns, memory_order_relaxed) / 1e9,
                        n, atomic_load_explicit(&commit_count, memory_order_relaxed));
    return rc;
}

static int render_status(buf_t *b)
{
    const char *n = "switchboard_http_responses_total";
    int rc = header(b, n, "counter", "HTTP responses sent, by status code.");

    for (int code = 100; code < 600 && !rc; code++) {
        uint64_t v = SUM(sh->http_status[code]);
        if (v)
            rc = buf_printf(b, "%s{code=\"%d\"} %" PRIu64 "\n", n, code, v);
    }
    return rc;
}

int metrics_render(buf_t *b)
{
    int rc = 0;

    rc = rc ? rc : per_proto(b, "switchboard_connections", "gauge",
                             "Open client connections, by protocol.", 0);
    rc = rc ? rc : per_proto(b, "switchboard_connections_total", "counter",
                             "Client connections accepted or upgraded, by protocol.", 1);
    rc = rc ? rc : per_proto(b, "switchboard_messages_out_total", "counter",
                             "Messages delivered to subscribers, by protocol.", 2);
    rc = rc ? rc : per_proto(b, "switchboard_slow_consumer_disconnects_total", "counter",
                             "Subscribers disconnected because their outbound queue was full.", 3);
    rc = rc ? rc : labelled(b, "switchboard_messages_in_total", "Messages accepted, by source.",
                            "source", source_names, SRC_MAX, 0);
    rc = rc ? rc : labelled(b, "switchboard_auth_total",
                            "Authentication and authorization attempts, by outcome.",
                            "outcome", auth_names, MA_MAX, 1);
    rc = rc ? rc : labelled(b, "switchboard_webhook_signatures_total",
                            "Webhook signature checks, by result.",
                            "result", sig_names, MS_MAX, 2);
    rc = rc ? rc : scalar(b, "switchboard_received_bytes_total", "counter",
                          "Bytes read from client connections.",
                          SUM(sh->bytes_in));
    rc = rc ? rc : scalar(b, "switchboard_sent_bytes_total", "counter",
                          "Bytes written to client connections.",
                          SUM(sh->bytes_out));
    rc = rc ? rc : scalar(b, "switchboard_subscriptions", "gauge", "Active subscriptions.",
                          SUM(sh->subs_added) - SUM(sh->subs_removed));
    rc = rc ? rc : scalar(b, "switchboard_replayed_messages_total", "counter",
                          "Messages delivered from the store while subscribers caught up.",
                          SUM(sh->replayed));
    rc = rc ? rc : scalar(b, "switchboard_refused_connections_total", "counter",
                          "Connections refused: max_connections reached or out of file descriptors.",
                          SUM(sh->refused_conns));
    rc = rc ? rc : render_status(b);
    rc = rc ? rc : render_histogram(b);
    if (!rc && extra_fn)
        extra_fn(b, extra_ctx);
    return rc;
}
