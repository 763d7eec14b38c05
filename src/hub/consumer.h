/*
 * consumer.h - durable pull consumers: their state machine and registry.
 *
 * A consumer is a position in a tenant's stored messages plus the set of
 * messages handed out but not yet acknowledged, with the meanings of a NATS
 * JetStream consumer:
 *   last_seq     highest stream sequence examined (delivered or skipped);
 *   delivered    consumer sequence: first deliveries so far (an admin
 *                replay counts as a new delivery);
 *   pending      delivered, not acked entries {sseq, cseq, last delivery
 *                time, deliveries}, kept in consumer-sequence order;
 *   ack_floor    highest consumer sequence at or below which everything is
 *                acked (or parked);
 *   redelivered  messages delivered more than once;
 *   parked       messages that reached max_deliver (newest CONS_PARKED_MAX).
 * No HTTP here and no I/O: edge/pull.c reads the store and persists the
 * JSON this module produces (cons_to_json) under namespace CONS_NS, key
 * "<tenant>/<name>".
 *
 * Threads. Consumers are shared by every loop. The registry owns them and
 * one mutex (cons_lock/cons_unlock) guards the registry and every field of
 * every consumer. A request that must wait for the store marks the
 * consumer busy (cons_try_busy) so a second request is refused (409)
 * instead of interleaving; the pure functions below need the lock held
 * when the consumer is in the registry.
 */
#ifndef SB_HUB_CONSUMER_H
#define SB_HUB_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store/store.h"

#define CONS_NS "consumers"
#define CONS_NAME_MAX 64           /* bytes of [A-Za-z0-9_-] */
#define CONS_TENANT_MAX 64
#define CONS_FILTER_MAX 1024       /* entries in each filter list: a GitHub
                                      user's readable repositories */
#define CONS_PARKED_MAX 1000       /* parked sequences remembered */
#define CONS_PENDING_MAX 100000    /* hard cap of pending entries */

typedef struct cons_pending {
    uint64_t sseq;                 /* stream sequence (the message id) */
    uint64_t cseq;                 /* consumer sequence of the delivery */
    int64_t last_ms;               /* last delivery (wall clock) */
    uint32_t deliveries;
} cons_pending_t;

typedef struct cons_list {         /* owned strings */
    char **v;
    size_t n;
} cons_list_t;

typedef struct consumer {
    char tenant[CONS_TENANT_MAX + 1];
    char name[CONS_NAME_MAX + 1];
    cons_list_t subjects;          /* filter subjects (store patterns) */
    bool follows;                  /* subjects follow the owner's history
                                      permission (none were asked for) */
    cons_list_t events;            /* event patterns; empty = all */
    cons_list_t branches;          /* full refs "refs/heads/x"; empty = all */
    uint64_t last_seq;
    uint64_t delivered;
    uint64_t ack_floor;
    uint64_t redelivered;
    uint64_t expired;              /* pending entries retention removed */
    uint64_t npark_total;          /* parked since creation */
    cons_pending_t *pending;
    size_t npending, cap;
    uint64_t *parked;              /* ring of the newest parked sequences */
    size_t nparked;
    int64_t created_ms;
    bool busy;                     /* a request is waiting for the store */
} consumer_t;

/* --- pure state (no lock taken) ----------------------------------------- */

/* A new empty consumer; NULL without memory. Lists empty, position 0. */
consumer_t *cons_new(const char *tenant, const char *name);
void cons_free(consumer_t *c);
/* Replaces *l with copies of v[0..n). 0 or -1 (no memory; *l unchanged). */
int cons_list_set(cons_list_t *l, const char *const *v, size_t n);
void cons_list_free(cons_list_t *l);

/* "key_<id>" / "user_<sub>" sanitised to [A-Za-z0-9_-], cut at
 * CONS_NAME_MAX; out holds CONS_NAME_MAX + 1 bytes. */
void cons_name(const char *prefix, const char *id, size_t len, char *out);

/* A first delivery of stream sequence sseq at now: a pending entry with
 * the next consumer sequence; last_seq moves to sseq. 0, or -1 when the
 * pending table is full or memory ran out (nothing changed). */
int cons_deliver_new(consumer_t *c, uint64_t sseq, int64_t now_ms);
/* Index of sseq among the pending entries, or -1. */
long cons_find(const consumer_t *c, uint64_t sseq);
/* Acks sseq: 0 when it was pending (removed, floor advanced), -1 when not. */
int cons_ack(consumer_t *c, uint64_t sseq);
/* Whether pending entry i is due for redelivery at now. */
bool cons_due(const consumer_t *c, size_t i, int64_t now_ms, int64_t ack_wait_ms);
/* Redelivers pending entry i at now: 1 when delivered again (deliveries+1),
 * 0 when it had max_deliver deliveries already and is parked instead
 * (removed from pending; floor advanced). */
int cons_redeliver(consumer_t *c, size_t i, int64_t now_ms, uint32_t max_deliver);
/* Removes pending entry i without parking it (retention removed it). */
void cons_drop(consumer_t *c, size_t i);
/* Adds sseq as due now (admin replay): an existing entry is made due, a new
 * one gets the next consumer sequence. 0 or -1 as cons_deliver_new. */
int cons_replay(consumer_t *c, uint64_t sseq);

/* The persisted form (everything but busy). NULL without memory. */
json_t *cons_to_json(const consumer_t *c);
/* Back from cons_to_json's output; NULL when malformed or no memory. */
consumer_t *cons_from_json(const char *tenant, const char *name, const json_t *j);
/* The stats object: consumerName, filterSubjects, pending, delivered,
 * ackFloor, redelivered, lastDelivered, parked, parkedTotal, expired,
 * events, branches. */
json_t *cons_stats(const consumer_t *c);

/* Parses a message id (decimal string or JSON integer > 0). */
bool cons_parse_id(const json_t *v, uint64_t *out);

/* --- registry ------------------------------------------------------------ */

/* Start-up only (before the loops run): loads every consumer of the store.
 * 0, or -1 with err (a malformed record is logged and skipped). */
int cons_init(store_t *store, char *err, size_t errlen);
void cons_shutdown(void);
void cons_lock(void);
void cons_unlock(void);
/* The consumer (tenant, name) or NULL; lock held. */
consumer_t *cons_get(const char *tenant, const char *name);
/* Inserts c (the registry takes it), replacing and freeing any consumer of
 * the same tenant and name. 0, or -1 without memory (c freed). Lock held. */
int cons_put(consumer_t *c);
/* Marks c busy: true when it was not. Lock held. */
bool cons_try_busy(consumer_t *c);
/* The metadata key "<tenant>/<name>"; out holds 2 * 65 bytes. */
void cons_key(const consumer_t *c, char *out, size_t cap);

#endif
