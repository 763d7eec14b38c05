/*
 * status.c - /health and /metrics.
 *
 * /health makes a round trip through the store's writer thread (the
 * thread every ingest depends on), so "ok" means an ingest would be
 * committed now, not merely that the process is up. 503 when the store
 * reports an error or does not answer.
 */
#include "ops/status.h"

#include <inttypes.h>
#include <string.h>

#include "core/clock.h"
#include "net/conn.h"
#include "ops/metrics.h"

static store_t *g_store;
static const char *g_version;
static uint64_t g_started_ms;

static void store_gauges(buf_t *b, void *ctx)
{
    store_stats_t st;

    store_get_stats(g_store, &st);
    buf_printf(b,
               "# HELP switchboard_store_messages Messages retained in the store.\n"
               "# TYPE switchboard_store_messages gauge\nswitchboard_store_messages %" PRIu64 "\n"
               "# HELP switchboard_store_bytes Bytes retained in the store.\n"
               "# TYPE switchboard_store_bytes gauge\nswitchboard_store_bytes %" PRIu64 "\n"
               "# HELP switchboard_store_last_sequence Highest sequence assigned.\n"
               "# TYPE switchboard_store_last_sequence gauge\n"
               "switchboard_store_last_sequence %" PRIu64 "\n"
               "# HELP switchboard_store_commits_total Store transactions committed.\n"
               "# TYPE switchboard_store_commits_total counter\n"
               "switchboard_store_commits_total %" PRIu64 "\n"
               "# HELP switchboard_store_expired_total Messages removed by retention.\n"
               "# TYPE switchboard_store_expired_total counter\n"
               "switchboard_store_expired_total %" PRIu64 "\n"
               "# HELP switchboard_store_errors_total Store operations that failed.\n"
               "# TYPE switchboard_store_errors_total counter\n"
               "switchboard_store_errors_total %" PRIu64 "\n"
               "# HELP switchboard_store_healthy 1 when the last commit succeeded.\n"
               "# TYPE switchboard_store_healthy gauge\nswitchboard_store_healthy %d\n",
               st.messages, st.bytes, st.last_seq, st.commits, st.expired, st.errors,
               st.healthy ? 1 : 0);
}

void status_init(store_t *store, const char *version)
{
    g_store = store;
    g_version = version;
    g_started_ms = clock_mono_ms();
    metrics_set_extra(store_gauges, NULL);
}

static void pinged(void *arg, int err)
{
    http_req_t *r = arg;
    store_stats_t st;
    buf_t b;

    store_get_stats(g_store, &st);
    buf_init(&b, 4096);
    buf_printf(&b,
               "{\"status\":\"%s\",\"version\":\"%s\",\"uptimeSeconds\":%" PRIu64 ","
               "\"connections\":%" PRIu64 ",\"storage\":{\"status\":\"%s\",\"backend\":\"sqlite\","
               "\"lastSeq\":%" PRIu64 ",\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 "}}",
               err ? "error" : "ok", g_version, (clock_mono_ms() - g_started_ms) / 1000,
               conn_count(), err ? "error" : "ok", st.last_seq, st.messages, st.bytes);
    http_add_header(r, "Cache-Control", "no-store");
    http_respond_json(r, err ? 503 : 200, &b);
    buf_free(&b);
    http_req_release(r);
}

void status_health(http_req_t *r)
{
    http_req_hold(r);
    if (store_ping(g_store, r->conn->loop, pinged, r))
        pinged(r, STORE_ECLOSED);
}

void status_metrics(http_req_t *r)
{
    buf_t b;

    buf_init(&b, 16u << 20);
    if (metrics_render(&b)) {
        buf_free(&b);
        http_error(r, 500, "internal", "metrics too large");
        return;
    }
    http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
}
