/*
 * serve.c - server lifecycle.
 *
 * Start-up: configuration -> store (recovers, starts its threads) ->
 * access control (keys from the store; the admin key on first start) -> N
 * loops, each with a hub and its own SO_REUSEPORT listener -> routes ->
 * loop threads. The main thread then only waits for signals.
 *
 * Shutdown (SIGTERM or SIGINT), in an order that keeps every promise:
 *   1. every loop closes its listener and asks each connection to finish:
 *      idle HTTP closes, a request in flight gets its answer first (its
 *      commit still completes), WebSockets get close 1001, SSE ends;
 *   2. after the last connection or shutdown_timeout_ms, the rest are cut;
 *   3. the API keys' usage logs are stored (auth_flush), then the store
 *      commits whatever is queued and stops;
 *   4. the loops stop and are joined.
 * A second signal skips the grace period.
 */
#include "serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "auth/auth.h"
#include "edge/edge.h"
#include "http/server.h"
#include "hub/consumer.h"
#include "hub/hub.h"
#include "net/conn.h"
#include "net/listen.h"
#include "net/loop.h"
#include "ops/config.h"
#include "ops/log.h"
#include "ops/metrics.h"
#include "ops/status.h"
#include "store/store.h"

#define SHUTDOWN_POLL_MS 50
#define FORCE_CLOSE_WAIT_MS 2000

typedef struct server {
    config_t cfg;
    loop_t *loops;
    loop_t **loop_ptrs;
    size_t nloops;
    store_t *store;
    uv_loop_t *main;
    uv_signal_t sigterm, sigint;
    uv_timer_t poll;
    uint64_t deadline;
    int phase;                /* 0 running, 1 draining, 2 forcing */
} server_t;

/* The store's completions run on the loop that asked; a NULL target (a
 * start-up call made before the loops run) runs on the store's thread. */
static void post_to_loop(void *target, void (*fn)(void *), void *arg)
{
    if (!target) {
        fn(arg);
        return;
    }
    if (loop_post(target, fn, arg) != 0)
        LOG_ERROR("could not post a completion: out of memory", "%s", "");
}

static void commit_latency(void *ctx, uint64_t ns) { metrics_commit_latency(ns); }

static void shut_conn(conn_t *c, void *arg)
{
    if (c->proto->on_shutdown)
        c->proto->on_shutdown(c);
    else
        conn_close_after_flush(c, 1000);
}

static void loop_begin_shutdown(void *arg)
{
    loop_t *l = arg;

    listen_stop(l);
    l->stopping = true;
    conn_foreach(l, shut_conn, NULL);
}

static void close_conn(conn_t *c, void *arg) { conn_close(c); }

static void loop_force_close(void *arg) { conn_foreach(arg, close_conn, NULL); }

static void finish(server_t *s)
{
    uv_timer_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
}

static void on_poll(uv_timer_t *t)
{
    server_t *s = t->data;
    uint64_t now = uv_now(s->main);

    if (conn_count() == 0) {
        finish(s);
        return;
    }
    if (s->phase == 1 && now >= s->deadline) {
        LOG_WARN("grace period over: closing remaining connections", "\"connections\":%lu",
                 (unsigned long)conn_count());
        s->phase = 2;
        s->deadline = now + FORCE_CLOSE_WAIT_MS;
        for (size_t i = 0; i < s->nloops; i++)
            loop_post(&s->loops[i], loop_force_close, &s->loops[i]);
    } else if (s->phase == 2 && now >= s->deadline) {
        finish(s);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    server_t *s = h->data;

    if (s->phase == 0) {
        LOG_INFO("shutting down", "\"signal\":%d,\"connections\":%lu", signum,
                 (unsigned long)conn_count());
        s->phase = 1;
        s->deadline = uv_now(s->main) + (uint64_t)s->cfg.shutdown_timeout_ms;
        for (size_t i = 0; i < s->nloops; i++)
            loop_post(&s->loops[i], loop_begin_shutdown, &s->loops[i]);
        uv_timer_start(&s->poll, on_poll, SHUTDOWN_POLL_MS, SHUTDOWN_POLL_MS);
    } else if (s->phase == 1) {
        s->deadline = 0;     /* second signal: no more grace */
    }
}

/* Connections need file descriptors: raise the soft limit as far as the
 * hard limit allows, and keep max_connections below what is available
 * (the store, listeners and spares need a few dozen). */
static void fit_fd_limit(config_t *c)
{
    struct rlimit rl;
    const rlim_t reserve = 128;
    rlim_t want = (rlim_t)c->max_connections + reserve;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want) {
        int64_t fit = rl.rlim_cur > reserve * 2 ? (int64_t)(rl.rlim_cur - reserve)
                                                : (int64_t)rl.rlim_cur / 2;
        LOG_WARN("max_connections lowered to fit the open files limit",
                 "\"max_connections\":%lld,\"open_files\":%llu", (long long)fit,
                 (unsigned long long)rl.rlim_cur);
        c->max_connections = fit;
    }
}

static int open_store(server_t *s, char *err, size_t errlen)
{
    const config_t *c = &s->cfg;
    store_cfg_t sc = {
        .backend = c->store_backend,
        .dir = c->data_dir,
        .fsync = strcmp(c->fsync, "normal") == 0 ? STORE_FSYNC_NORMAL : STORE_FSYNC_FULL,
        .retention_interval_ms = c->retention_interval_ms,
        .max_batch = (size_t)c->max_batch,
        .readers = (int)c->store_readers,
        .streams = c->streams,
        .nstreams = c->nstreams,
        .post = post_to_loop,
        .on_commit = hub_on_commit,
        .on_commit_latency = commit_latency,
    };

    s->store = store_open(&sc, err, errlen);
    return s->store ? 0 : -1;
}

static int start_loops(server_t *s, char *err, size_t errlen)
{
    const config_t *c = &s->cfg;
    int port = (int)c->port;

    s->nloops = c->loops ? (size_t)c->loops : uv_available_parallelism();
    if (s->nloops > METRICS_SHARDS - 1)
        s->nloops = METRICS_SHARDS - 1;
    s->loops = calloc(s->nloops, sizeof *s->loops);
    s->loop_ptrs = calloc(s->nloops, sizeof *s->loop_ptrs);
    if (!s->loops || !s->loop_ptrs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < s->nloops; i++) {
        loop_t *l = &s->loops[i];
        s->loop_ptrs[i] = l;
        if (loop_init(l, (int)i) || !(l->hub = hub_new(l))) {
            snprintf(err, errlen, "cannot create event loop %zu", i);
            return -1;
        }
        conn_loop_init(l);
    }
    hub_global_init(s->store, s->loop_ptrs, s->nloops, (size_t)c->replay_batch, 10000);
    for (size_t i = 0; i < s->nloops; i++)
        if (listen_start(&s->loops[i], c->host, port, &port, http_server_accept, err, errlen))
            return -1;
    LOG_INFO("listening", "\"host\":\"%s\",\"port\":%d,\"loops\":%zu,\"data_dir\":\"%s\","
             "\"fsync\":\"%s\",\"version\":\"%s\"", log_str(c->host, (size_t)-1), port,
             s->nloops, log_str(c->data_dir, (size_t)-1), c->fsync, SWITCHBOARD_VERSION);
    for (size_t i = 0; i < s->nloops; i++)
        if (loop_start(&s->loops[i])) {
            snprintf(err, errlen, "cannot start loop thread %zu", i);
            return -1;
        }
    return 0;
}

static void init_routes(server_t *s)
{
    const config_t *c = &s->cfg;
    http_settings_t hs = {
        .limits = {
            .max_uri = (size_t)c->max_uri,
            .max_header_bytes = (size_t)c->max_header_bytes,
            .max_headers = (size_t)c->max_headers,
            .max_body = (uint64_t)c->max_body,
        },
        .header_timeout_ms = (uint64_t)c->header_timeout_ms,
        .body_timeout_ms = (uint64_t)c->body_timeout_ms,
        .idle_timeout_ms = (uint64_t)c->idle_timeout_ms,
        .outbound_queue = (size_t)c->outbound_queue,
    };

    http_server_init(&hs);
    edge_register_routes(c);
    status_init(s->store, SWITCHBOARD_VERSION);
    conn_set_max((uint64_t)c->max_connections);
    conn_set_output_limits((size_t)c->outbound_queue_hard, (uint64_t)c->slow_consumer_grace_ms);
}

static const char *config_file(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}

int serve_main(int argc, char **argv)
{
    server_t s;
    char err[512] = "";
    int rc = 1;

    memset(&s, 0, sizeof s);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: switchboard serve [options]\n\noptions (flag, environment variable):\n");
            config_usage(stdout);
            return 0;
        }
    if (config_load(&s.cfg, config_file(argc, argv), argc, argv, err, sizeof err)) {
        fprintf(stderr, "switchboard: %s\n", err);
        return 2;
    }
    log_set_level(log_level_parse(s.cfg.log_level));
    signal(SIGPIPE, SIG_IGN);
    fit_fd_limit(&s.cfg);
    mkdir(s.cfg.data_dir, 0700);
    if (open_store(&s, err, sizeof err)) {
        LOG_ERROR("cannot open the store", "\"error\":\"%s\"", log_str(err, (size_t)-1));
        goto out;
    }
    if (auth_init(&s.cfg, s.store, err, sizeof err)) {
        LOG_ERROR("cannot set up access control", "\"error\":\"%s\"", log_str(err, (size_t)-1));
        rc = 2;      /* a configuration problem, as config_load's */
        goto out;
    }
    if (github_oauth_init(&s.cfg, s.store, err, sizeof err)) {
        LOG_ERROR("cannot set up GitHub login", "\"error\":\"%s\"", log_str(err, (size_t)-1));
        auth_shutdown();
        rc = 2;
        goto out;
    }
    if (cons_init(s.store, err, sizeof err)) {
        LOG_ERROR("cannot load the consumers", "\"error\":\"%s\"", log_str(err, (size_t)-1));
        github_oauth_shutdown();
        auth_shutdown();
        goto out;
    }
    init_routes(&s);
    /* Signals are caught before "listening" is logged: a SIGTERM sent as
     * soon as the server says it is up must be a graceful stop. */
    s.main = uv_default_loop();
    uv_signal_init(s.main, &s.sigterm);
    uv_signal_init(s.main, &s.sigint);
    uv_timer_init(s.main, &s.poll);
    s.sigterm.data = s.sigint.data = s.poll.data = &s;
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    if (start_loops(&s, err, sizeof err)) {
        LOG_ERROR("cannot start", "\"error\":\"%s\"", log_str(err, (size_t)-1));
        goto out;     /* loops that started keep the process alive: exit hard */
    }
    uv_run(s.main, UV_RUN_DEFAULT);

    auth_flush();                /* the usage logs, while the store still takes writes */
    store_close(s.store);        /* commits what is queued; completions post to loops */
    s.store = NULL;
    for (size_t i = 0; i < s.nloops; i++) {
        loop_stop_join(&s.loops[i]);
        hub_free(s.loops[i].hub);
    }
    webhook_shutdown();
    cons_shutdown();
    github_oauth_shutdown();
    auth_shutdown();
    uv_loop_close(s.main);
    LOG_INFO("stopped", "%s", "");
    rc = 0;
    free(s.loops);
    free(s.loop_ptrs);
    config_free(&s.cfg);
    return rc;
out:
    if (s.loops)
        exit(1);
    if (s.store)
        store_close(s.store);
    config_free(&s.cfg);
    return rc;
}
