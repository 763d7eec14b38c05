/*
 * config.h - server configuration: defaults, then a JSON file (--config),
 * then environment variables, then command-line flags; later wins.
 *
 * Every scalar option is one row of a table (config.c) that gives its JSON
 * path, its environment variable, its type and its bounds, so the file, the
 * environment, the flags and the docs cannot drift apart. Streams (stored
 * subjects and their retention) come from the file's "streams" array; when
 * none is given, one stream "webhooks" holds "webhooks.>".
 *
 * The resulting config_t is read-only after config_load and shared by all
 * threads.
 */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "store/store.h"

typedef struct config {
    char *host;
    int64_t port;
    int64_t loops;                 /* 0 = one per CPU */
    char *data_dir;
    char *log_level;
    int64_t max_connections;       /* per process */
    /* HTTP limits */
    int64_t max_uri;
    int64_t max_header_bytes;
    int64_t max_headers;
    int64_t max_body;
    int64_t header_timeout_ms;
    int64_t body_timeout_ms;
    int64_t idle_timeout_ms;
    /* delivery */
    int64_t outbound_queue;        /* soft limit, bytes per connection */
    int64_t outbound_queue_hard;   /* 0 = 8 x outbound_queue */
    int64_t slow_consumer_grace_ms;
    int64_t max_ws_message;
    int64_t heartbeat_ms;          /* SSE comments, WebSocket pings */
    int64_t max_subscriptions;     /* per connection */
    int64_t replay_batch;          /* messages per store read while catching up */
    int64_t shutdown_timeout_ms;
    /* store */
    char *store_backend;
    char *fsync;                   /* "full" | "normal" */
    int64_t retention_interval_ms;
    int64_t max_batch;
    int64_t store_readers;
    int64_t default_max_age_ms;    /* for streams that set none */
    int64_t default_max_msgs;
    int64_t default_max_bytes;
    /* webhooks */
    int64_t webhook_max_depth;     /* path segments after the source */
    store_stream_cfg_t *streams;
    size_t nstreams;
} config_t;

/* Fills cfg from defaults, the file (may be NULL), the environment and
 * argv flags (argv[0] is not a flag). Returns 0, or -1 after writing one
 * line explaining the problem into err. */
int config_load(config_t *cfg, const char *file, int argc, char **argv,
                char *err, size_t errlen);
void config_free(config_t *cfg);
/* Prints the option table (flag, env, default, description) for --help. */
void config_usage(FILE *out);

#endif
