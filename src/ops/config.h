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

/* A webhook source that verifies what it receives: the file's "sources"
 * object ({"github": {"verify": "github", "secret_env": "..."}}) plus the
 * GITHUB_WEBHOOK_SECRET and KAKAO_SIGNATURE_SECRET shortcuts. */
typedef struct config_source {
    char *name;                    /* the {source} of /webhook/{source}/... */
    char *verify;                  /* none | github | standard | hmac | kakao */
    char *secret;                  /* resolved; NULL for none */
    char *header, *algorithm, *encoding, *prefix;   /* hmac; NULL = default */
    int64_t tolerance_s;           /* standard; 0 = default */
    char *tenant;                  /* where its messages go */
} config_source_t;

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
    /* pull API (docs/PULL.md) */
    int64_t pull_ack_wait_ms;      /* redelivery after this without an ack */
    int64_t pull_max_deliver;      /* deliveries before a message is parked */
    int64_t pull_max_limit;        /* most messages per pull */
    int64_t pull_max_ack_pending;  /* unacked messages per consumer */
    /* access control */
    char *bootstrap_tenant;
    char *admin_key_file;          /* "" = {data_dir}/admin.key */
    char *admin_allow;             /* CIDR list, "" = any */
    char *trusted_proxies;         /* CIDR list */
    int64_t ip_rate, ip_burst;     /* per client IP; rate 0 = none */
    int64_t key_rate, key_burst;   /* per credential, default */
    int64_t fail_rate, fail_burst; /* failed authentications per IP */
    int64_t ip_max_connections;    /* streams per IP; 0 = no cap */
    int64_t key_max_connections;   /* streams per credential, default */
    int64_t rate_table_keys;
    int64_t rotate_grace_ms;
    int64_t ws_auth_timeout_ms;
    char *jwt_secret;              /* own tokens; "" = generated */
    int64_t token_ttl_ms;
    int64_t jwt_leeway_ms;
    char *jwt_issuer_secret;       /* external issuer keys */
    char *jwt_public_key_file;
    char *jwks_file;
    char *jwks_url;
    int64_t jwks_refresh_ms;
    char *jwt_issuer;
    char *jwt_audience;
    char *jwt_tenant;
    /* GitHub login (docs/GITHUB.md) */
    char *github_client_id;        /* "" = off */
    char *github_client_secret;
    char *github_oauth_url;
    char *github_api_url;
    char *github_redirect_url;     /* "" = from the Host header */
    char *github_token_key;        /* sealing key text (auth/seal.h) */
    int64_t github_repos_ttl_ms;
    char *github_tenant;
    char *github_scope;
    store_stream_cfg_t *streams;
    size_t nstreams;
    config_source_t *sources;
    size_t nsources;
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
