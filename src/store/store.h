/*
 * store.h - durable message storage behind one interface.
 *
 * The store appends messages to streams, reads them back by sequence, and
 * expires them by each stream's retention. Backends (store_sqlite.c now,
 * store_nats.c later) are sibling files behind store_backend_t; store.c
 * holds what they share (stream configuration and matching).
 *
 * Threads. Every call below is thread-safe and never blocks on disk: work
 * is queued to the backend's own threads. Completions come back through
 * `post(target, fn, arg)` from store_cfg_t, which the server points at
 * "run fn(arg) on loop `target`"; so a callback runs on the thread that
 * asked, never on a store thread.
 *
 * Durability. An append completes with err == 0 only after its transaction
 * is durable per `fsync` (STORE_FSYNC_FULL: fsync'd, survives power loss;
 * STORE_FSYNC_NORMAL: in the OS, survives kill -9 but not power loss).
 * Appends are group-committed: all appends queued while a commit runs go
 * into the next transaction. After each commit, and before any completion
 * of that commit is posted, `on_commit` runs on the writer thread with the
 * committed messages in sequence order; the server uses it to fan them out.
 *
 * Sequences are global to the store, start at 1, and are strictly
 * increasing across restarts, even when retention removed every message.
 *
 * Dedupe. A message with m->dedup set (a delivery id such as
 * X-GitHub-Delivery or Standard Webhooks' webhook-id, 1..STORE_DEDUP_MAX
 * bytes) is stored at most once per (tenant, stream, dedup) while the first
 * such message is retained. A repeated append completes with err == 0,
 * m->duplicate = 1 and m->seq = the stored message's sequence; nothing is
 * written, no sequence is used, and on_commit does not see it (the original
 * was fanned out when it was stored). This holds within one group-commit
 * batch too. Once retention removed the original, the key is free again.
 *
 * Metadata. Small durable records (API keys, tenants, consumer state) live
 * in namespaces of key -> value, like JetStream KV buckets (the NATS backend
 * maps each namespace to a bucket). Names are 1..STORE_META_NAME_MAX bytes
 * of printable ASCII (0x20..0x7e); values are any bytes, at most
 * STORE_META_VALUE_MAX. Every put gets a revision from one counter global to
 * the store, strictly increasing across restarts (like sequences), so a
 * revision is never reused even after a delete. Writes go through the
 * writer thread, in the same transactions (and with the same durability)
 * as appends; gets and lists run on the readers and see committed data.
 */
#ifndef SB_STORE_H
#define SB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

typedef struct store store_t;

enum store_fsync { STORE_FSYNC_FULL = 0, STORE_FSYNC_NORMAL = 1 };

/* Errors passed to callbacks or returned by calls (0 = success). */
#define STORE_EIO (-1)       /* the database failed (see logs) */
#define STORE_ECLOSED (-2)   /* the store is shutting down */
#define STORE_ENOMEM (-3)
#define STORE_EINVAL (-4)    /* the request was malformed (no tenant,
                                invalid subject or pattern, subject in no
                                stream, a name or value out of limits);
                                returned by the call, never a callback */
#define STORE_ECONFLICT (-5) /* store_meta_put: expect_rev did not match */
#define STORE_ENOTFOUND (-6) /* store_meta_get/delete: no such key */

#define STORE_DEDUP_MAX 256             /* bytes of msg_t.dedup */
#define STORE_META_NAME_MAX 256         /* bytes of a namespace or key */
#define STORE_META_VALUE_MAX (1u << 20) /* bytes of a value */
#define STORE_META_LIST_MAX (64u << 20) /* keys + values in one list */
#define STORE_META_MUST_NOT_EXIST UINT64_MAX  /* expect_rev: create only */

typedef struct store_stream_cfg {
    char *name;              /* e.g. "webhooks" */
    char **subjects;         /* patterns; a message is in the first stream
                                one of whose patterns matches its subject */
    size_t nsubjects;
    int64_t max_age_ms;      /* 0 = unlimited */
    int64_t max_msgs;        /* 0 = unlimited */
    int64_t max_bytes;       /* payload + headers + meta bytes; 0 = unlimited */
} store_stream_cfg_t;

typedef void (*store_post_fn)(void *target, void (*fn)(void *), void *arg);
typedef void (*store_commit_fn)(void *ctx, msg_t *const *msgs, size_t n);

typedef struct store_cfg {
    const char *backend;     /* "sqlite" */
    const char *dir;         /* data directory (created if missing) */
    enum store_fsync fsync;
    int64_t retention_interval_ms;  /* how often expired data is removed */
    size_t max_batch;        /* most appends in one transaction */
    int readers;             /* reader threads */
    const store_stream_cfg_t *streams;  /* copied by store_open */
    size_t nstreams;
    store_post_fn post;
    store_commit_fn on_commit;  /* may be NULL */
    void *commit_ctx;
    /* Called on the writer thread after each commit attempt with the time
     * from BEGIN to COMMIT's return, with commit_ctx. May be NULL. */
    void (*on_commit_latency)(void *ctx, uint64_t ns);
} store_cfg_t;

/* Appended: m->seq is set. The callback gets m borrowed (the store drops
 * its reference after the callback returns). */
typedef void (*store_append_cb)(void *arg, int err, msg_t *m);

/* Read results: msgs[0..n) in sequence order, each with one reference the
 * callback owns, in an array the callback owns (free both, or use
 * store_msgs_free). `scanned_to` is the highest sequence examined (resume
 * after it); `at_end` is true when no message above scanned_to existed
 * when the read ran. */
typedef void (*store_read_cb)(void *arg, int err, msg_t **msgs, size_t n,
                              uint64_t scanned_to, bool at_end);
typedef void (*store_seq_cb)(void *arg, int err, uint64_t seq);
typedef void (*store_done_cb)(void *arg, int err);

typedef struct store_query {
    const char *tenant;
    const char *const *patterns;  /* subject patterns, OR-ed; n > 0 */
    size_t npatterns;
    uint64_t after_seq;      /* return sequences > after_seq */
    size_t limit;            /* most messages returned */
    size_t max_scan;         /* most rows examined (0 = backend default) */
} store_query_t;

typedef struct store_stats {
    uint64_t last_seq;
    uint64_t messages;       /* rows retained */
    uint64_t bytes;
    uint64_t commits;        /* append batches committed since start */
    uint64_t appended;       /* messages since start */
    uint64_t expired;        /* removed by retention since start */
    uint64_t duplicates;     /* appends answered by an existing message */
    uint64_t errors;
    bool healthy;            /* false after a failed commit until one works */
} store_stats_t;

/* Opens (creating when needed) and recovers. NULL on failure with a
 * message in err. Starts the backend's threads. */
store_t *store_open(const store_cfg_t *cfg, char *err, size_t errlen);
/* Stops taking new work, commits every append already queued (their
 * callbacks are posted), answers queued reads with STORE_ECLOSED, joins
 * the threads, closes the database. Call once, after which s is gone. */
void store_close(store_t *s);

/* The stream a subject belongs to, or NULL when it is live only. */
const store_stream_cfg_t *store_stream_for(const store_t *s,
                                           const char *subject);
/* Queues an append of m (which must have tenant, subject, time_ms set and
 * be in a stream; dedup, when set, 1..STORE_DEDUP_MAX bytes). Takes a
 * reference on m. 0, or STORE_EINVAL/ECLOSED/ENOMEM without calling cb.
 * On success check m->duplicate in cb (see Dedupe above). */
int store_append(store_t *s, msg_t *m, void *target, store_append_cb cb,
                 void *arg);
int store_read(store_t *s, const store_query_t *q, void *target,
               store_read_cb cb, void *arg);
/* The sequence to use as after_seq so that a read starts at the first
 * message received at or after time_ms (of any subject). */
int store_seq_before_time(store_t *s, int64_t time_ms, void *target,
                          store_seq_cb cb, void *arg);
/* Round trip through the writer thread: err == 0 when it is alive and the
 * last commit succeeded. */
int store_ping(store_t *s, void *target, store_done_cb cb, void *arg);
/* Runs retention now (normally periodic). */
int store_expire_now(store_t *s, void *target, store_done_cb cb, void *arg);
void store_get_stats(store_t *s, store_stats_t *out);
void store_msgs_free(msg_t **msgs, size_t n);

/* --- metadata (see Metadata above) ---------------------------------------
 * Every call copies its arguments, returns 0 and later calls cb once on
 * `target`; or returns STORE_EINVAL (a name or value out of limits),
 * STORE_ECLOSED or STORE_ENOMEM without calling cb. */

/* rev: the new revision (err 0), the current one (STORE_ECONFLICT; 0 when
 * the key does not exist), else 0. */
typedef void (*store_meta_put_cb)(void *arg, int err, uint64_t rev);
/* value[0..len) (followed by a NUL not counted in len) is borrowed: valid
 * only during the callback. NULL with err != 0. */
typedef void (*store_meta_get_cb)(void *arg, int err,
                                  const unsigned char *value, size_t len,
                                  uint64_t rev);

/* One listed entry. key is NUL-terminated; value[0..len) is followed by a
 * NUL not counted in len. */
typedef struct store_meta_entry {
    char *key;
    unsigned char *value;
    size_t len;
    uint64_t rev;
    int64_t updated_ms;      /* wall-clock time of the put */
} store_meta_entry_t;

/* entries[0..n) in key order (bytewise); the callback owns the array and
 * the entries: free them with store_meta_entries_free. NULL, 0 when empty
 * or on error. */
typedef void (*store_meta_list_cb)(void *arg, int err,
                                   store_meta_entry_t *entries, size_t n);
/* Called for each entry by store_meta_load_sync; everything is borrowed
 * for the call. Non-zero stops the load, which then returns that value. */
typedef int (*store_meta_each_fn)(void *ctx, const char *key,
                                  const unsigned char *value, size_t len,
                                  uint64_t rev);

/* Sets ns/key to value[0..len). expect_rev 0: unconditionally; N: only when
 * the key's revision is N; STORE_META_MUST_NOT_EXIST: only when the key
 * does not exist. Otherwise cb gets STORE_ECONFLICT. */
int store_meta_put(store_t *s, const char *ns, const char *key,
                   const void *value, size_t len, uint64_t expect_rev,
                   void *target, store_meta_put_cb cb, void *arg);
/* Removes ns/key; STORE_ENOTFOUND when it did not exist. */
int store_meta_delete(store_t *s, const char *ns, const char *key,
                      void *target, store_done_cb cb, void *arg);
/* Reads ns/key; STORE_ENOTFOUND when it does not exist. */
int store_meta_get(store_t *s, const char *ns, const char *key,
                   void *target, store_meta_get_cb cb, void *arg);
/* Every key of ns that starts with prefix ("" = all; at most
 * STORE_META_NAME_MAX printable bytes), in key order, from one snapshot.
 * STORE_ENOMEM when the keys and values exceed STORE_META_LIST_MAX (use a
 * narrower prefix). */
int store_meta_list(store_t *s, const char *ns, const char *prefix,
                    void *target, store_meta_list_cb cb, void *arg);
void store_meta_entries_free(store_meta_entry_t *entries, size_t n);
/* START-UP ONLY: blocks the calling thread until every entry of ns has
 * been passed to each (in key order, on the calling thread). Meant for
 * loading keys and tenants after store_open and before the event loops run
 * (it never uses cfg->post); calling it from a loop stalls that loop.
 * 0, the first non-zero value `each` returned, or a STORE_E* code. */
int store_meta_load_sync(store_t *s, const char *ns, store_meta_each_fn each,
                         void *ctx);

/* --- backend table (store.c dispatches through it) --------------------- */

typedef struct store_backend {
    const char *name;
    void *(*open)(store_t *s, const store_cfg_t *cfg, char *err, size_t errlen);
    void (*close)(void *impl);
    int (*append)(void *impl, msg_t *m, void *target, store_append_cb cb,
                  void *arg);
    int (*read)(void *impl, const store_query_t *q, void *target,
                store_read_cb cb, void *arg);
    int (*seq_before_time)(void *impl, int64_t time_ms, void *target,
                           store_seq_cb cb, void *arg);
    int (*ping)(void *impl, void *target, store_done_cb cb, void *arg);
    int (*expire_now)(void *impl, void *target, store_done_cb cb, void *arg);
    void (*get_stats)(void *impl, store_stats_t *out);
    /* Arguments are already checked against the limits by store.c. */
    int (*meta_put)(void *impl, const char *ns, const char *key,
                    const void *value, size_t len, uint64_t expect_rev,
                    void *target, store_meta_put_cb cb, void *arg);
    int (*meta_delete)(void *impl, const char *ns, const char *key,
                       void *target, store_done_cb cb, void *arg);
    int (*meta_get)(void *impl, const char *ns, const char *key,
                    void *target, store_meta_get_cb cb, void *arg);
    int (*meta_list)(void *impl, const char *ns, const char *prefix,
                     void *target, store_meta_list_cb cb, void *arg);
    int (*meta_load_sync)(void *impl, const char *ns,
                          store_meta_each_fn each, void *ctx);
} store_backend_t;

/* For backends: fills e with copies of key[0..klen) and value[0..len), each
 * NUL-terminated, in the one allocation store_meta_entries_free releases.
 * -1 when memory ran out (e is then untouched). */
int store_meta_entry_fill(store_meta_entry_t *e, const char *key, size_t klen,
                          const void *value, size_t len, uint64_t rev,
                          int64_t updated_ms);

extern const store_backend_t store_sqlite_backend;

#endif
