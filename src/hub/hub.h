/*
 * hub.h - subject matching, fan-out, and replay-then-live subscriptions.
 *
 * Each loop has a hub: an index (sublist) of the subscriptions of that
 * loop's connections. A message enters with hub_publish() on any loop. If
 * its subject is in a stream it is appended to the store first; the store
 * reports each durable commit (writer thread, sequence order) and the hub
 * posts the committed batch to every loop. Live-only messages are posted
 * to every loop at once. On each loop the batch is matched against the
 * index and handed to subscribers, which encode with msg_encoded() - one
 * encoding per message per protocol, shared by every subscriber.
 *
 * Catch-up without gap or duplicate. A subscription that resumes (after a
 * sequence, or from a time) is registered in the index FIRST, in catch-up
 * mode: live stored messages that arrive meanwhile are held (up to a cap)
 * instead of delivered. Then the store is read from the cursor in batches.
 * When a read reaches the end of the store, held messages above the cursor
 * are delivered and the subscription goes live. Any message committed
 * after the subscription was registered reaches this loop after the
 * registration (commit -> post -> this loop, in order), so it is either in
 * a read or held; the cursor filters the overlap. If the hold cap
 * overflows, the held messages are dropped and reading simply continues.
 * Replay is paced by the subscriber's output queue (conn_queued): a read
 * starts, and hands over its messages, only while the queue is under half
 * the outbound limit; the rest waits for hub_sub_drained(). So a long
 * history never overflows a connection.
 */
#ifndef SB_HUB_H
#define SB_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"
#include "net/conn.h"
#include "net/loop.h"
#include "store/store.h"

typedef struct hub hub_t;
typedef struct hub_sub hub_sub_t;

typedef struct hub_sub_ops {
    /* Deliver m. Return 0, or -1 when the subscriber cannot take it (full
     * or closing); the hub then stops delivering to it (the adapter has
     * already decided what to do with its connection). */
    int (*deliver)(hub_sub_t *s, msg_t *m);
    /* Catch-up is over (err 0) or failed (store error); optional. */
    void (*caught_up)(hub_sub_t *s, int err);
    /* After hub_unsubscribe, once the hub holds no pointer to s (at once,
     * or when an in-flight store read completes): free s here. */
    void (*released)(hub_sub_t *s);
} hub_sub_ops_t;

/* Embedded in an adapter's subscription object. Fields are private to the
 * hub except where noted. */
struct hub_sub {
    const hub_sub_ops_t *ops;      /* set by the adapter */
    conn_t *conn;                  /* set by the adapter; held during reads */
    hub_t *hub;
    char *tenant;
    char **patterns;               /* as given (no tenant prefix) */
    char **keys;                   /* tenant-prefixed, as indexed */
    size_t npatterns;
    uint64_t cursor;               /* highest sequence delivered or skipped */
    uint64_t last_gen;             /* dedupes a message matching 2 patterns */
    int state;
    bool reading;                  /* a store read is in flight */
    bool waiting_drain;            /* replay paused on a full queue */
    bool overflow;
    msg_t **held;
    size_t nheld, held_cap;
};

typedef void (*hub_publish_cb)(void *arg, int err, msg_t *m);

/* Process-wide set-up: the store, the loops, catch-up tuning. */
void hub_global_init(store_t *store, loop_t **loops, size_t nloops,
                     size_t replay_batch, size_t held_max);
/* The store's on_commit hook (writer thread). */
void hub_on_commit(void *ctx, msg_t *const *msgs, size_t n);

hub_t *hub_new(loop_t *l);
void hub_free(hub_t *h);
static inline hub_t *hub_of(loop_t *l) { return l->hub; }

/* Publishes m (tenant, subject, time, payload set) from loop `origin`.
 * Takes a reference on m. cb(arg, err, m) runs later on origin: err 0
 * once the message is durable (stored subject) or handed to every loop
 * (live-only subject); STORE_E* otherwise. */
int hub_publish(msg_t *m, loop_t *origin, hub_publish_cb cb, void *arg);
/* Whether a subject is stored (in some stream). */
bool hub_is_stored(const char *subject);

enum hub_since_kind { HUB_SINCE_NONE, HUB_SINCE_SEQ, HUB_SINCE_TIME };

typedef struct hub_since {
    enum hub_since_kind kind;
    uint64_t seq;              /* SEQ: deliver sequences > seq */
    int64_t time_ms;           /* TIME: messages received at or after */
} hub_since_t;

/* Registers s for patterns (each valid) in tenant. NONE delivers only new
 * messages; SEQ catches up from after seq; TIME first asks the store for
 * the first sequence at that time (live messages are held meanwhile) and
 * then catches up from there. 0, or -1 (ENOMEM). Runs on h's loop. */
int hub_subscribe(hub_t *h, hub_sub_t *s, const char *tenant,
                  const char *const *patterns, size_t npatterns,
                  const hub_since_t *since);
/* Removes s; ops->released(s) follows (maybe later, if a read is in
 * flight: its result is dropped). */
void hub_unsubscribe(hub_sub_t *s);
/* The adapter's output drained: continue a paused replay. */
void hub_sub_drained(hub_sub_t *s);
static inline bool hub_sub_live(const hub_sub_t *s) { return s->state == 2; }

/* A counter bumped once per message fanned out on this loop: adapters use
 * it to deliver a message once per connection with several subscriptions. */
uint64_t hub_delivery_gen(const hub_t *h);

#endif
