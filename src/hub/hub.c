/*
 * hub.c - fan-out across loops and catch-up. See hub.h for the design.
 *
 * A batch of messages crosses to the loops as one refcounted object: the
 * store's writer (or a publishing loop) takes one reference per message for
 * the batch and posts the batch to every loop; the last loop done with it
 * drops them. The per-loop work is one index lookup per message.
 */
#include "hub/hub.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/subject.h"
#include "hub/sublist.h"
#include "ops/log.h"
#include "ops/metrics.h"

enum { SUB_NEW, SUB_CATCHING_UP, SUB_LIVE, SUB_CLOSED };

#define HUB_KEY_MAX (SUBJ_MAX_LEN + 72)

struct hub {
    loop_t *loop;
    sublist_t *index;
    uint64_t gen;
};

typedef struct batch {
    atomic_size_t loops_left;
    size_t n;
    msg_t *msgs[];
} batch_t;

static store_t *g_store;
static loop_t **g_loops;
static size_t g_nloops;
static size_t g_replay_batch = 500;
static size_t g_held_max = 1000;

void hub_global_init(store_t *store, loop_t **loops, size_t nloops,
                     size_t replay_batch, size_t held_max)
{
    g_store = store;
    g_loops = loops;
    g_nloops = nloops;
    g_replay_batch = replay_batch ? replay_batch : 500;
    g_held_max = held_max ? held_max : 1000;
}

hub_t *hub_new(loop_t *l)
{
    hub_t *h = calloc(1, sizeof *h);

    if (!h)
        return NULL;
    h->loop = l;
    h->index = sublist_new();
    if (!h->index) {
        free(h);
        return NULL;
    }
    return h;
}

void hub_free(hub_t *h)
{
    if (!h)
        return;
    sublist_free(h->index);
    free(h);
}

uint64_t hub_delivery_gen(const hub_t *h) { return h->gen; }

bool hub_is_stored(const char *subject)
{
    return g_store && store_stream_for(g_store, subject) != NULL;
}

/* "tenant.subject" into out; the index is keyed per tenant this way. */
static size_t make_key(char *out, const char *tenant, const char *subject)
{
    size_t t = strlen(tenant), s = strlen(subject);

    if (t + 1 + s >= HUB_KEY_MAX)
        return 0;
    memcpy(out, tenant, t);
    out[t] = '.';
    memcpy(out + t + 1, subject, s + 1);
    return t + 1 + s;
}

/* --- live fan-out ---------------------------------------------------------- */

static void hold(hub_sub_t *s, msg_t *m)
{
    if (s->overflow)
        return;
    if (s->nheld == s->held_cap) {
        size_t ncap = s->held_cap ? s->held_cap * 2 : 16;
        msg_t **p = ncap <= g_held_max ? realloc(s->held, ncap * sizeof *p) : NULL;
        if (!p) {
            /* over the cap: forget what is held, the store has it all */
            for (size_t i = 0; i < s->nheld; i++)
                msg_unref(s->held[i]);
            s->nheld = 0;
            s->overflow = true;
            return;
        }
        s->held = p;
        s->held_cap = ncap;
    }
    s->held[s->nheld++] = msg_ref(m);
}

static void match_one(void *item, void *arg)
{
    hub_sub_t *s = item;
    msg_t *m = arg;

    if (s->last_gen == s->hub->gen)
        return;
    s->last_gen = s->hub->gen;
    if (m->seq) {
        if (s->state == SUB_CATCHING_UP) {
            hold(s, m);
            return;
        }
        if (m->seq <= s->cursor)
            return;
        s->cursor = m->seq;
    }
    s->ops->deliver(s, m);
}

static void batch_done(batch_t *b, size_t loops);

static void deliver_batch(void *arg)
{
    batch_t *b = arg;
    hub_t *h = hub_of(loop_current());
    char key[HUB_KEY_MAX];

    for (size_t i = 0; i < b->n; i++) {
        msg_t *m = b->msgs[i];
        size_t klen = make_key(key, m->tenant, m->subject);
        h->gen++;
        if (klen)
            sublist_match(h->index, key, klen, match_one, m);
    }
    batch_done(b, 1);
}

static void batch_done(batch_t *b, size_t loops)
{
    if (atomic_fetch_sub(&b->loops_left, loops) == loops) {
        for (size_t i = 0; i < b->n; i++)
            msg_unref(b->msgs[i]);
        free(b);
    }
}

static void broadcast(msg_t *const *msgs, size_t n)
{
    batch_t *b = malloc(sizeof *b + n * sizeof(msg_t *));
    size_t failed = 0;

    if (!b) {
        LOG_ERROR("fan-out dropped a batch: out of memory", "\"messages\":%zu", n);
        return;
    }
    atomic_init(&b->loops_left, g_nloops);
    b->n = n;
    for (size_t i = 0; i < n; i++)
        b->msgs[i] = msg_ref(msgs[i]);
    /* loops_left counts every loop until it is done with the batch; a
     * post that fails is accounted for once all posts were attempted, so
     * b stays alive for the whole loop below */
    for (size_t i = 0; i < g_nloops; i++)
        if (loop_post(g_loops[i], deliver_batch, b) != 0)
            failed++;
    if (failed) {
        LOG_ERROR("fan-out skipped loops: out of memory", "\"loops\":%zu", failed);
        batch_done(b, failed);
    }
}

void hub_on_commit(void *ctx, msg_t *const *msgs, size_t n)
{
    broadcast(msgs, n);
}

/* --- publishing ---------------------------------------------------------------- */

typedef struct pub {
    hub_publish_cb cb;
    void *arg;
    msg_t *m;
} pub_t;

static void appended(void *arg, int err, msg_t *m)
{
    pub_t *p = arg;

    p->cb(p->arg, err, m);
    free(p);
}

static void live_published(void *arg)
{
    pub_t *p = arg;

    p->cb(p->arg, 0, p->m);
    msg_unref(p->m);
    free(p);
}

int hub_publish(msg_t *m, loop_t *origin, hub_publish_cb cb, void *arg)
{
    pub_t *p = malloc(sizeof *p);
    int rc;

    if (!p)
        return STORE_ENOMEM;
    *p = (pub_t){cb, arg, NULL};
    if (store_stream_for(g_store, m->subject)) {
        rc = store_append(g_store, m, origin, appended, p);
        if (rc)
            free(p);
        return rc;
    }
    /* The completion is queued before the fan-out so the publisher's
     * answer does not wait behind this loop's deliveries; it still runs
     * after broadcast() handed the message to every loop, since this
     * function runs on origin and returns first. */
    p->m = msg_ref(m);
    if (loop_post(origin, live_published, p)) {
        msg_unref(m);
        free(p);
        return STORE_ENOMEM;
    }
    broadcast(&m, 1);
    return 0;
}


/* --- subscriptions and catch-up ------------------------------------------------ */

static void free_patterns(hub_sub_t *s)
{
    for (size_t i = 0; i < s->npatterns; i++) {
        free(s->patterns[i]);
        free(s->keys[i]);
    }
    free(s->patterns);
    free(s->keys);
    free(s->tenant);
    s->patterns = s->keys = NULL;
    s->tenant = NULL;
    s->npatterns = 0;
}

static void drop_held(hub_sub_t *s)
{
    for (size_t i = 0; i < s->nheld; i++)
        msg_unref(s->held[i]);
    free(s->held);
    s->held = NULL;
    s->nheld = s->held_cap = 0;
}

static void start_read(hub_sub_t *s);

/* The store is exhausted: hand over what was held, then go live. Held
 * messages are paced like a replay; if the queue fills, the rest is
 * dropped and read from the store (where every held message is) once the
 * queue drains. */
static void go_live(hub_sub_t *s)
{
    for (size_t i = 0; i < s->nheld; i++) {
        msg_t *m = s->held[i];
        if (m->seq <= s->cursor)
            continue;
        if (conn_queued(s->conn) > s->conn->out_limit / 2) {
            drop_held(s);
            s->waiting_drain = true;     /* hub_sub_drained() reads on */
            return;
        }
        s->cursor = m->seq;
        if (s->ops->deliver(s, m))
            break;
    }
    drop_held(s);
    s->state = SUB_LIVE;
    if (s->ops->caught_up)
        s->ops->caught_up(s, 0);
}

/* A store request ended while the subscription was closed or with an
 * error: finish the deferred release, or report the failure. */
static void finish_failed_read(hub_sub_t *s, int err)
{
    if (s->state == SUB_CLOSED) {
        free_patterns(s);
        if (s->ops->released)
            s->ops->released(s);
    } else if (s->ops->caught_up) {
        s->ops->caught_up(s, err);
    }
}

static void read_done(void *arg, int err, msg_t **msgs, size_t n, uint64_t scanned_to,
                      bool at_end)
{
    hub_sub_t *s = arg;
    conn_t *c = s->conn;
    bool dead = false, paused = false;

    s->reading = false;
    if (s->state == SUB_CLOSED || err) {
        store_msgs_free(msgs, n);
        finish_failed_read(s, err);
        conn_release(c);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        /* A batch may hold more bytes than the connection may queue: past
         * half its limit the rest waits for the drain and is read again
         * from the cursor, so a long replay never looks like a slow peer. */
        if (!dead && !paused && msgs[i]->seq > s->cursor &&
            conn_queued(c) > c->out_limit / 2)
            paused = true;
        if (!dead && !paused && msgs[i]->seq > s->cursor) {
            s->cursor = msgs[i]->seq;
            METRIC_INC(replayed);
            dead = s->ops->deliver(s, msgs[i]) != 0;
        }
        msg_unref(msgs[i]);
    }
    free(msgs);
    if (!dead && paused) {
        s->waiting_drain = true;      /* hub_sub_drained() reads on */
    } else if (!dead) {
        if (scanned_to > s->cursor)
            s->cursor = scanned_to;
        if (!at_end || s->overflow) {
            s->overflow = false;
            start_read(s);
        } else {
            go_live(s);
        }
    }
    conn_release(c);
}

static void start_read(hub_sub_t *s)
{
    store_query_t q;
    int rc;

    if (s->reading || s->state != SUB_CATCHING_UP)
        return;
    if (conn_queued(s->conn) > s->conn->out_limit / 2) {
        s->waiting_drain = true;
        return;
    }
    q = (store_query_t){
        .tenant = s->tenant,
        .patterns = (const char *const *)s->patterns,
        .npatterns = s->npatterns,
        .after_seq = s->cursor,
        .limit = g_replay_batch,
    };
    conn_hold(s->conn);
    s->reading = true;
    rc = store_read(g_store, &q, s->hub->loop, read_done, s);
    if (rc) {
        s->reading = false;
        conn_release(s->conn);
        if (s->ops->caught_up)
            s->ops->caught_up(s, rc);
    }
}

void hub_sub_drained(hub_sub_t *s)
{
    if (s->waiting_drain && s->state == SUB_CATCHING_UP) {
        s->waiting_drain = false;
        start_read(s);
    }
}

static void time_resolved(void *arg, int err, uint64_t seq)
{
    hub_sub_t *s = arg;
    conn_t *c = s->conn;

    s->reading = false;
    if (s->state == SUB_CLOSED || err) {
        finish_failed_read(s, err);
    } else {
        s->cursor = seq;
        start_read(s);
    }
    conn_release(c);
}

/* Catch-up from a time: the index already holds s (so live messages are
 * held); find the sequence first, then read as for SEQ. */
static void start_at_time(hub_sub_t *s, int64_t time_ms)
{
    int rc;

    conn_hold(s->conn);
    s->reading = true;
    rc = store_seq_before_time(g_store, time_ms, s->hub->loop, time_resolved, s);
    if (rc) {
        s->reading = false;
        conn_release(s->conn);
        if (s->ops->caught_up)
            s->ops->caught_up(s, rc);
    }
}

int hub_subscribe(hub_t *h, hub_sub_t *s, const char *tenant,
                  const char *const *patterns, size_t n, const hub_since_t *since)
{
    size_t i = 0;

    s->hub = h;
    s->tenant = strdup(tenant);
    s->patterns = calloc(n, sizeof(char *));
    s->keys = calloc(n, sizeof(char *));
    if (!s->tenant || !s->patterns || !s->keys)
        goto fail;
    for (i = 0; i < n; i++) {
        char key[HUB_KEY_MAX];
        size_t klen = make_key(key, tenant, patterns[i]);
        if (!klen || !(s->patterns[i] = strdup(patterns[i])) || !(s->keys[i] = strdup(key)) ||
            sublist_insert(h->index, key, klen, s)) {
            free(s->patterns[i]);
            free(s->keys[i]);
            s->patterns[i] = s->keys[i] = NULL;
            goto fail;
        }
        s->npatterns++;
    }
    METRIC_INC(subs_added);
    s->cursor = since->kind == HUB_SINCE_SEQ ? since->seq : 0;
    s->state = since->kind == HUB_SINCE_NONE ? SUB_LIVE : SUB_CATCHING_UP;
    if (since->kind == HUB_SINCE_SEQ)
        start_read(s);
    else if (since->kind == HUB_SINCE_TIME)
        start_at_time(s, since->time_ms);
    return 0;
fail:
    for (size_t j = 0; s->keys && j < s->npatterns; j++)
        if (s->keys[j])
            sublist_remove(h->index, s->keys[j], strlen(s->keys[j]), s);
    free_patterns(s);
    return -1;
}

void hub_unsubscribe(hub_sub_t *s)
{
    if (s->state == SUB_CLOSED)
        return;
    if (s->state != SUB_NEW) {
        for (size_t i = 0; i < s->npatterns; i++)
            sublist_remove(s->hub->index, s->keys[i], strlen(s->keys[i]), s);
        METRIC_INC(subs_removed);
    }
    s->state = SUB_CLOSED;
    drop_held(s);
    if (s->reading)
        return;            /* read_done finishes the job */
    free_patterns(s);
    if (s->ops->released)
        s->ops->released(s);
}
