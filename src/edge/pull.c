/*
 * pull.c - the pull API over durable consumers (hub/consumer.h):
 *   GET  /api/v1/messages?limit=N&cursor=C  a batch for the caller's consumer
 *   POST /api/v1/messages/ack {"messageIds"}
 *   GET  /api/v1/messages/stats
 *   PUT  /api/v1/messages/consumer {"filterSubjects","events","branches",
 *                                   "startSeq"|"startTime"}  (re)creates it
 *   POST /api/v1/messages/replay {"consumer","messageIds"}   admin
 * The caller's consumer is (its tenant, "key_<id>" or "user_<sub>"),
 * created on first use over its history patterns, from the oldest
 * retained message.
 *
 * A request that changes a consumer is a small state machine on the
 * request's loop: mark the consumer busy (a concurrent request on it gets
 * 409 consumer_busy), read the store as needed (store_read completes on
 * this loop), change the state under the registry lock, persist the whole
 * consumer (store_meta_put) and answer only once that is durable, then
 * clear busy. So a 2xx promises the state it reports survives a restart.
 * If persisting fails the answer is 503 and the change stays in memory.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth/auth.h"
#include "core/base64.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/subject.h"
#include "edge/edge.h"
#include "hub/consumer.h"
#include "ops/log.h"

#define PULL_DEFAULT_LIMIT 10
#define PULL_MAX_READS 4           /* store reads for new messages per pull */
#define PULL_IDS_MAX 1000          /* ids in one ack or replay */
#define PULL_BODY_MAX (256u << 20) /* bytes of one answer */
#define PULL_BATCH_BYTES (8u << 20) /* no new message is added to a batch
                                       whose messages hold this much */

enum pull_kind { PK_PULL, PK_ACK, PK_CONFIG, PK_REPLAY };

typedef struct pull {
    enum pull_kind kind;
    http_req_t *r;
    principal_t *p;
    consumer_t *c;                 /* registry-owned, busy held by us */
    consumer_t *fresh;             /* PK_CONFIG: not yet in the registry */
    size_t limit;
    uint64_t cursor;
    uint64_t *ids;                 /* redeliveries due / replay ids */
    uint32_t *idsdel;              /* their delivery counts */
    size_t nids, iids;
    msg_t **out;
    uint32_t *outdel;
    size_t nout;
    int reads;
    size_t bytes;                  /* payload + headers of out[] */
    bool at_end, more, dirty;
    json_t *unknown;               /* PK_REPLAY */
    size_t replayed;
    buf_t body;                    /* the answer, sent once persisted */
} pull_t;

static void next_step(pull_t *pl);
static void redo_read(void *arg, int err, msg_t **msgs, size_t n, uint64_t scanned_to,
                      bool at_end);
static void replay_read(void *arg, int err, msg_t **msgs, size_t n, uint64_t scanned_to,
                        bool at_end);

static int64_t ack_wait_ms(void) { return edge_cfg()->pull_ack_wait_ms; }
static uint32_t max_deliver(void) { return (uint32_t)edge_cfg()->pull_max_deliver; }

static void pull_free(pull_t *pl)
{
    for (size_t i = 0; i < pl->nout; i++)
        msg_unref(pl->out[i]);
    free(pl->out);
    free(pl->outdel);
    free(pl->ids);
    free(pl->idsdel);
    cons_free(pl->fresh);
    json_decref(pl->unknown);
    buf_free(&pl->body);
    principal_unref(pl->p);
    free(pl);
}

/* Ends pl: answers (unless already answered), clears busy, frees. */
static void finish(pull_t *pl)
{
    if (pl->c) {
        cons_lock();
        pl->c->busy = false;
        cons_unlock();
    }
    http_req_release(pl->r);
    pull_free(pl);
}

static void fail(pull_t *pl, int status, const char *code, const char *why)
{
    http_error(pl->r, status, code, "%s", why);
    finish(pl);
}

static void persisted(void *arg, int err, uint64_t rev)
{
    pull_t *pl = arg;

    (void)rev;
    if (err) {
        LOG_ERROR("consumer state not stored", "\"error\":%d", err);
        fail(pl, 503, "store_unavailable", "the consumer state could not be stored; retry");
        return;
    }
    http_respond_json(pl->r, 200, &pl->body);
    finish(pl);
}

/* Persists pl->c (when dirty), then answers pl->body. */
static void persist_then_answer(pull_t *pl)
{
    char key[CONS_TENANT_MAX + CONS_NAME_MAX + 2];
    char *text;
    json_t *j;

    if (!pl->dirty) {
        http_respond_json(pl->r, 200, &pl->body);
        finish(pl);
        return;
    }
    cons_lock();
    j = cons_to_json(pl->c);
    cons_unlock();
    text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    cons_key(pl->c, key, sizeof key);
    if (!text || strlen(text) > STORE_META_VALUE_MAX ||
        store_meta_put(auth_store(), CONS_NS, key, text, strlen(text), 0, pl->r->conn->loop,
                       persisted, pl)) {
        free(text);
        fail(pl, 503, "store_unavailable", "the store is not accepting changes");
        return;
    }
    free(text);
}

/* --- identity and creation ---------------------------------------------- */

/* key_<id> for keys; user_<sub> for tokens, whose sub may already be a
 * user name (GitHub logins are "user_<n>": their consumer is that name). */
static void consumer_name(const principal_t *p, char *out)
{
    bool jwt = p->kind == PRINCIPAL_JWT;
    bool named = jwt && p->id_len > 5 && memcmp(p->id, "user_", 5) == 0;

    cons_name(named ? "" : jwt ? "user_" : "key_", p->id, p->id_len, out);
}

static bool may_read(const principal_t *p, const consumer_t *c)
{
    for (size_t i = 0; i < c->subjects.n; i++)
        if (!principal_can_history(p, c->subjects.v[i], strlen(c->subjects.v[i])))
            return false;
    return c->subjects.n > 0;
}

/* The owner's history patterns (the first CONS_FILTER_MAX) as the
 * consumer's filter subjects. */
static int follow_history(const principal_t *p, consumer_t *c)
{
    size_t n = p->perm.history.n < CONS_FILTER_MAX ? p->perm.history.n : CONS_FILTER_MAX;
    const char **pats;
    bool same = n == c->subjects.n;
    int rc;

    for (size_t i = 0; same && i < n; i++)
        same = strcmp(p->perm.history.v[i].s, c->subjects.v[i]) == 0;
    c->follows = true;
    if (same)
        return 0;
    if (!(pats = malloc((n ? n : 1) * sizeof *pats)))
        return -1;
    for (size_t i = 0; i < n; i++)
        pats[i] = p->perm.history.v[i].s;
    rc = cons_list_set(&c->subjects, pats, n);
    free(pats);
    return rc;
}

/*
 * The caller's consumer, created over its history patterns when new; lock
 * held. A consumer created so keeps following those patterns: a GitHub
 * user who gains or loses a repository sees it here at the next pull.
 * One configured with explicit filterSubjects keeps them, but wanted()
 * still drops every message its owner may no longer read. NULL with
 * *status 403 (no history permission) or 503.
 */
static consumer_t *own_consumer(const principal_t *p, int *status)
{
    char name[CONS_NAME_MAX + 1];
    consumer_t *c;

    consumer_name(p, name);
    c = cons_get(p->tenant, name);
    *status = 403;
    if (p->perm.history.n == 0)
        return NULL;
    *status = 503;
    if (c) {
        if (c->follows && follow_history(p, c))
            return NULL;
        *status = 0;
        return c;
    }
    c = cons_new(p->tenant, name);
    if (!c || follow_history(p, c)) {
        cons_free(c);
        return NULL;
    }
    c->created_ms = clock_now_ms();
    if (cons_put(c))
        return NULL;
    *status = 0;
    return c;
}

/* Starts a request on the caller's consumer: 403/409/503 answered here. */
static pull_t *begin(http_req_t *r, principal_t *p, enum pull_kind kind)
{
    pull_t *pl = calloc(1, sizeof *pl);
    consumer_t *c = NULL;
    int status = 503;

    if (!pl)
        goto fail;
    cons_lock();
    c = own_consumer(p, &status);
    if (c && !cons_try_busy(c))
        status = 409;
    cons_unlock();
    if (status)
        goto fail;
    pl->kind = kind;
    pl->r = r;
    pl->p = principal_ref(p);
    pl->c = c;
    buf_init(&pl->body, PULL_BODY_MAX);
    http_req_hold(r);
    return pl;
fail:
    free(pl);
    if (status == 403)
        auth_forbidden(r, p, NULL, NULL, "read the history of the consumer's subjects");
    else if (status == 409)
        http_error(r, 409, "consumer_busy", "another request on this consumer is in progress; retry");
    else
        http_error(r, 503, "unavailable", "out of memory");
    return NULL;
}

/* --- message encoding --------------------------------------------------- */

static int append_meta_field(buf_t *b, const json_t *meta, const char *k)
{
    const json_t *v = json_object_get(meta, k);

    buf_printf(b, ",\"%s\":", k);
    if (!json_is_string(v))
        return buf_append_str(b, "null");
    return json_append_str(b, json_string_value(v), json_string_length(v));
}

static int append_payload(buf_t *b, const msg_t *m)
{
    const char *p = (const char *)m->payload;
    int rc;

    buf_append_str(b, ",\"payload\":");
    switch (m->payload_kind) {
    case MSG_PAYLOAD_JSON: return json_append_minified(b, p ? p : "null", p ? m->payload_len : 4);
    case MSG_PAYLOAD_TEXT: return json_append_str(b, p ? p : "", m->payload_len);
    default:
        rc = buf_append_str(b, "{\"base64\":\"");
        rc = rc ? rc : base64_append(b, m->payload, m->payload_len, B64_STD);
        rc = rc ? rc : buf_append_str(b, "\",\"contentType\":");
        if (rc)
            return rc;
        if (!m->content_type)
            rc = buf_append_str(b, "null");
        else
            rc = json_append_str(b, m->content_type, strlen(m->content_type));
        return rc ? rc : buf_append_byte(b, '}');
    }
}

/* {"id","subject","event","webhookPath","source","method","headers",
 *  "payload","receivedAt","deliveries"} */
static int append_message(buf_t *b, const msg_t *m, uint32_t deliveries)
{
    char when[CLOCK_ISO_LEN + 1];
    json_t *meta = m->meta ? json_loads(m->meta, 0, NULL) : NULL;
    int rc;

    clock_iso8601(m->time_ms, when);
    buf_printf(b, "{\"id\":\"%" PRIu64 "\",\"subject\":", m->seq);
    json_append_str(b, m->subject, strlen(m->subject));
    buf_append_str(b, ",\"event\":");
    if (m->event)
        json_append_str(b, m->event, strlen(m->event));
    else
        buf_append_str(b, "null");
    append_meta_field(b, meta, "webhookPath");
    append_meta_field(b, meta, "source");
    append_meta_field(b, meta, "method");
    json_decref(meta);
    buf_append_str(b, ",\"headers\":");
    if (m->headers)
        json_append_minified(b, m->headers, strlen(m->headers));
    else
        buf_append_str(b, "{}");
    append_payload(b, m);
    rc = buf_printf(b, ",\"receivedAt\":\"%s\",\"deliveries\":%" PRIu32 "}", when, deliveries);
    return rc;
}

/* --- GET /api/v1/messages ----------------------------------------------- */

static bool branch_ok(const consumer_t *c, const msg_t *m)
{
    json_t *j, *ref;
    bool ok = false;

    if (c->branches.n == 0)
        return true;
    if (m->payload_kind != MSG_PAYLOAD_JSON || !m->payload)
        return false;
    j = json_loadb((const char *)m->payload, m->payload_len, 0, NULL);
    ref = json_object_get(j, "ref");
    for (size_t i = 0; json_is_string(ref) && !ok && i < c->branches.n; i++)
        ok = strcmp(json_string_value(ref), c->branches.v[i]) == 0;
    json_decref(j);
    return ok;
}

/* Whether m passes the consumer's filters and the caller's event rights. */
static bool wanted(const pull_t *pl, const msg_t *m)
{
    const consumer_t *c = pl->c;
    size_t elen = m->event ? strlen(m->event) : 0;
    bool ev = c->events.n == 0;

    if (!principal_can_history(pl->p, m->subject, strlen(m->subject)) ||
        !principal_event_allowed(pl->p, m->event, elen))
        return false;
    for (size_t i = 0; !ev && m->event && i < c->events.n; i++)
        ev = perm_event_match(c->events.v[i], strlen(c->events.v[i]), m->event, elen);
    return ev && branch_ok(c, m);
}

static int keep(pull_t *pl, msg_t *m, uint32_t deliveries)
{
    msg_t **no = realloc(pl->out, (pl->nout + 1) * sizeof *no);
    uint32_t *nd;

    if (!no)
        return -1;
    pl->out = no;
    nd = realloc(pl->outdel, (pl->nout + 1) * sizeof *nd);
    if (!nd)
        return -1;
    pl->outdel = nd;
    pl->bytes += m->payload_len + (m->headers ? strlen(m->headers) : 0);
    pl->out[pl->nout] = m;
    pl->outdel[pl->nout++] = deliveries;
    return 0;
}

static void query(const consumer_t *c, store_query_t *q, uint64_t after, size_t limit)
{
    *q = (store_query_t){.tenant = c->tenant,
                         .patterns = (const char *const *)c->subjects.v,
                         .npatterns = c->subjects.n,
                         .after_seq = after,
                         .limit = limit};
}

/* One redelivery read back: the message, or gone (retention). */
static void redo_read(void *arg, int err, msg_t **msgs, size_t n, uint64_t scanned_to,
                      bool at_end)
{
    pull_t *pl = arg;
    uint64_t seq = pl->ids[pl->iids];
    long i;

    (void)scanned_to;
    (void)at_end;
    if (err) {
        store_msgs_free(msgs, n);
        fail(pl, 503, "store_unavailable", "the store could not be read; retry");
        return;
    }
    if (n == 1 && msgs[0]->seq == seq) {
        if (keep(pl, msgs[0], pl->idsdel[pl->iids]) == 0)
            msgs[0] = NULL;    /* kept; else it is due again next time */
        else
            pl->more = true;
    } else {                   /* retention removed it */
        cons_lock();
        i = cons_find(pl->c, seq);
        if (i >= 0) {
            cons_drop(pl->c, (size_t)i);
            pl->c->expired++;
        }
        cons_unlock();
    }
    if (n == 1 && !msgs[0])
        free(msgs);
    else
        store_msgs_free(msgs, n);
    pl->iids++;
    next_step(pl);
}

static void new_read(void *arg, int err, msg_t **msgs, size_t n, uint64_t scanned_to,
                     bool at_end)
{
    pull_t *pl = arg;
    consumer_t *c = pl->c;
    size_t i = 0;
    int64_t now = clock_now_ms();
    bool stopped = false;

    if (err) {
        store_msgs_free(msgs, n);
        fail(pl, 503, "store_unavailable", "the store could not be read; retry");
        return;
    }
    cons_lock();
    for (; i < n; i++) {
        msg_t *m = msgs[i];
        if (m->seq <= pl->cursor || !wanted(pl, m)) {
            c->last_seq = m->seq;
            msg_unref(m);
            continue;
        }
        if (c->npending >= (size_t)edge_cfg()->pull_max_ack_pending ||
            (pl->nout && pl->bytes >= PULL_BATCH_BYTES) || keep(pl, m, 1)) {
            stopped = true;
            break;
        }
        if (cons_deliver_new(c, m->seq, now)) {
            pl->nout--;        /* msgs[i] is released below */
            stopped = true;
            break;
        }
    }
    if (!stopped && scanned_to > c->last_seq)
        c->last_seq = scanned_to;
    cons_unlock();
    for (; i < n; i++)
        msg_unref(msgs[i]);
    free(msgs);
    pl->dirty = true;
    pl->reads++;
    pl->at_end = at_end && !stopped;
    if (stopped)
        pl->more = true;
    if (stopped || at_end || pl->nout >= pl->limit || pl->reads >= PULL_MAX_READS)
        pl->reads = PULL_MAX_READS + 1;    /* done reading */
    next_step(pl);
}

static void answer_pull(pull_t *pl)
{
    buf_t *b = &pl->body;
    uint64_t last = pl->cursor;
    int rc;

    cons_lock();
    if (pl->nout == 0 && pl->c->last_seq > last)
        last = pl->c->last_seq;
    cons_unlock();
    rc = buf_append_str(b, "{\"messages\":[");
    for (size_t i = 0; !rc && i < pl->nout; i++) {
        if (i)
            buf_append_byte(b, ',');
        rc = append_message(b, pl->out[i], pl->outdel[i]);
        if (pl->out[i]->seq > last)
            last = pl->out[i]->seq;
    }
    rc = rc ? rc : buf_printf(b, "],\"nextCursor\":\"%" PRIu64 "\",\"hasMore\":%s}", last,
                              pl->more || !pl->at_end ? "true" : "false");
    if (rc) {
        fail(pl, 503, "unavailable", "the answer is too large; use a smaller limit");
        return;
    }
    persist_then_answer(pl);
}

static void next_step(pull_t *pl)
{
    store_query_t q;
    size_t room;

    if (pl->iids < pl->nids) {
        query(pl->c, &q, pl->ids[pl->iids] - 1, 1);
        if (store_read(auth_store(), &q, pl->r->conn->loop,
                       pl->kind == PK_PULL ? redo_read : replay_read, pl))
            fail(pl, 503, "store_unavailable", "the store is not accepting reads");
        return;
    }
    if (pl->kind == PK_PULL && pl->reads < PULL_MAX_READS && pl->nout < pl->limit) {
        cons_lock();
        room = pl->c->npending < (size_t)edge_cfg()->pull_max_ack_pending;
        query(pl->c, &q, pl->c->last_seq > pl->cursor ? pl->c->last_seq : pl->cursor,
              pl->limit - pl->nout);
        cons_unlock();
        if (!room) {
            pl->more = true;
        } else {
            if (store_read(auth_store(), &q, pl->r->conn->loop, new_read, pl))
                fail(pl, 503, "store_unavailable", "the store is not accepting reads");
            return;
        }
    }
    if (pl->kind == PK_PULL && pl->reads == 0 && pl->nout >= pl->limit)
        pl->more = true;           /* filled by redeliveries: unknown, say yes */
    if (pl->kind == PK_PULL) {
        answer_pull(pl);
        return;
    }
    /* PK_REPLAY */
    buf_printf(&pl->body, "{\"replayed\":%zu,\"unknown\":", pl->replayed);
    {
        char *u = json_dumps(pl->unknown, JSON_COMPACT);
        if (u)
            buf_append_str(&pl->body, u);
        free(u);
    }
    buf_append_byte(&pl->body, '}');
    pl->dirty = true;
    persist_then_answer(pl);
}

/* Parses ?name= as a decimal in [min, max]; 0 absent (*out untouched), 1
 * found, -1 malformed. */
static int query_u64(http_req_t *r, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
    buf_t b;
    uint64_t v = 0;
    int rc;

    buf_init(&b, 32);
    rc = http_query_get(r, name, 0, &b);
    if (rc == 1) {
        for (size_t i = 0; i < b.len; i++) {
            if (b.data[i] < '0' || b.data[i] > '9' || v > (UINT64_MAX - 9) / 10) {
                rc = -1;
                break;
            }
            v = v * 10 + (uint64_t)(b.data[i] - '0');
        }
        if (rc == 1 && (b.len == 0 || v < min || v > max))
            rc = -1;
        if (rc == 1)
            *out = v;
    }
    buf_free(&b);
    return rc;
}

void pull_messages(http_req_t *r)
{
    principal_t *p = auth_request(r, 0);
    uint64_t limit = PULL_DEFAULT_LIMIT, cursor = 0;
    int64_t now = clock_now_ms();
    pull_t *pl;
    consumer_t *c;

    if (!p)
        return;
    if (query_u64(r, "limit", 1, (uint64_t)edge_cfg()->pull_max_limit, &limit) < 0) {
        http_error(r, 400, "invalid_limit", "limit must be an integer from 1 to %" PRId64,
                   edge_cfg()->pull_max_limit);
        goto out;
    }
    if (query_u64(r, "cursor", 0, UINT64_MAX / 2, &cursor) < 0) {
        http_error(r, 400, "invalid_cursor", "cursor must be a message id (decimal)");
        goto out;
    }
    pl = begin(r, p, PK_PULL);
    if (!pl)
        goto out;
    pl->limit = (size_t)limit;
    pl->cursor = cursor;
    pl->ids = calloc(pl->limit, sizeof *pl->ids);
    pl->idsdel = calloc(pl->limit, sizeof *pl->idsdel);
    if (!pl->ids || !pl->idsdel) {
        fail(pl, 503, "unavailable", "out of memory");
        goto out;
    }
    c = pl->c;
    cons_lock();
    for (size_t i = 0; i < c->npending;) {
        if (!cons_due(c, i, now, ack_wait_ms())) {
            i++;
            continue;
        }
        if (pl->nids == pl->limit) {
            pl->more = true;
            break;
        }
        pl->dirty = true;
        if (cons_redeliver(c, i, now, max_deliver()) == 0)
            continue;          /* parked: entry i is now the next one */
        pl->ids[pl->nids] = c->pending[i].sseq;
        pl->idsdel[pl->nids++] = c->pending[i].deliveries;
        i++;
    }
    cons_unlock();
    next_step(pl);
out:
    principal_unref(p);
}

/* --- ack ---------------------------------------------------------------- */

/* The "messageIds" array of the body, or NULL after answering 400. */
static json_t *parse_ids(http_req_t *r, json_t **root)
{
    json_t *ids;

    *root = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    ids = json_object_get(*root, "messageIds");
    if (!json_is_array(ids) || json_array_size(ids) > PULL_IDS_MAX) {
        http_error(r, 400, !*root ? "invalid_json" : "invalid_request",
                   "\"messageIds\" must be an array of at most %d message ids", PULL_IDS_MAX);
        json_decref(*root);
        *root = NULL;
        return NULL;
    }
    return ids;
}

void pull_ack(http_req_t *r)
{
    principal_t *p = auth_request(r, 0);
    json_t *root = NULL, *ids, *v, *acked = json_array(), *unknown = json_array();
    pull_t *pl;
    uint64_t seq;
    size_t i;
    char *a = NULL, *u = NULL;

    if (!p)
        goto out;
    if (!acked || !unknown) {
        http_error(r, 503, "unavailable", "out of memory");
        goto out;
    }
    ids = parse_ids(r, &root);
    if (!ids || !(pl = begin(r, p, PK_ACK)))
        goto out;
    cons_lock();
    json_array_foreach(ids, i, v) {
        bool ok = cons_parse_id(v, &seq) && cons_ack(pl->c, seq) == 0;
        json_array_append(ok ? acked : unknown, v);
        pl->dirty |= ok;
    }
    cons_unlock();
    a = json_dumps(acked, JSON_COMPACT);
    u = json_dumps(unknown, JSON_COMPACT);
    if (!a || !u) {
        fail(pl, 503, "unavailable", "out of memory");
        goto out;
    }
    buf_printf(&pl->body, "{\"acknowledged\":%zu,\"messageIds\":%s,\"unknown\":%s}",
               json_array_size(acked), a, u);
    persist_then_answer(pl);
out:
    free(a);
    free(u);
    json_decref(acked);
    json_decref(unknown);
    json_decref(root);
    principal_unref(p);
}

/* --- stats -------------------------------------------------------------- */

static int append_stats(buf_t *b, const consumer_t *c)
{
    json_t *s = cons_stats(c);
    char *t = s ? json_dumps(s, JSON_COMPACT) : NULL;
    int rc = -1;

    if (t && !json_object_set_new(s, "ackWaitMs", json_integer(ack_wait_ms()))) {
        free(t);
        json_object_set_new(s, "maxDeliver", json_integer(max_deliver()));
        t = json_dumps(s, JSON_COMPACT);
        rc = t ? buf_append_str(b, t) : -1;
    }
    free(t);
    json_decref(s);
    return rc;
}

void pull_stats(http_req_t *r)
{
    principal_t *p = auth_request(r, 0);
    consumer_t *c;
    int status = 0, rc = -1;
    buf_t b;

    if (!p)
        return;
    buf_init(&b, 1 << 20);
    cons_lock();
    c = own_consumer(p, &status);
    if (c)
        rc = append_stats(&b, c);
    cons_unlock();
    if (status == 403)
        auth_forbidden(r, p, NULL, NULL, "read the history of the consumer's subjects");
    else if (rc)
        http_error(r, 503, "unavailable", "out of memory");
    else
        http_respond_json(r, 200, &b);
    buf_free(&b);
    principal_unref(p);
}

/* --- PUT consumer ------------------------------------------------------- */

/* Copies a list of strings from body member k into l, each checked by ok.
 * 0, or -1 with *why set. */
static int take_list(const json_t *root, const char *k, cons_list_t *l,
                     bool (*ok)(const char *, size_t), const char **why)
{
    const json_t *a = json_object_get(root, k), *v;
    const char *vals[CONS_FILTER_MAX];
    size_t i;

    if (!a)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > CONS_FILTER_MAX) {
        *why = k;
        return -1;
    }
    json_array_foreach(a, i, v) {
        if (!json_is_string(v) || !ok(json_string_value(v), json_string_length(v))) {
            *why = k;
            return -1;
        }
        vals[i] = json_string_value(v);
    }
    if (cons_list_set(l, vals, json_array_size(a))) {
        *why = "memory";
        return -1;
    }
    return 0;
}

static bool ok_branch(const char *s, size_t len)
{
    if (len == 0 || len > 200)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* "main" -> "refs/heads/main"; full refs unchanged. 0 or -1. */
static int full_refs(cons_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        char *f;
        size_t len = strlen(l->v[i]);
        if (!strncmp(l->v[i], "refs/", 5))
            continue;
        f = malloc(len + 12);
        if (!f)
            return -1;
        memcpy(f, "refs/heads/", 11);
        memcpy(f + 11, l->v[i], len + 1);
        free(l->v[i]);
        l->v[i] = f;
    }
    return 0;
}

static void install_fresh(pull_t *pl, uint64_t after)
{
    consumer_t *old;
    buf_t *b = &pl->body;

    pl->fresh->last_seq = after;
    pl->fresh->busy = true;
    cons_lock();
    old = cons_get(pl->fresh->tenant, pl->fresh->name);
    if (old && old != pl->c && old->busy) {
        cons_unlock();
        fail(pl, 409, "consumer_busy", "another request on this consumer is in progress; retry");
        return;
    }
    if (cons_put(pl->fresh)) {
        pl->fresh = NULL;
        cons_unlock();
        pl->c = NULL;
        fail(pl, 503, "unavailable", "out of memory");
        return;
    }
    pl->c = pl->fresh;
    pl->fresh = NULL;
    append_stats(b, pl->c);
    cons_unlock();
    pl->dirty = true;
    persist_then_answer(pl);
}

static void start_found(void *arg, int err, uint64_t seq)
{
    pull_t *pl = arg;

    if (err) {
        fail(pl, 503, "store_unavailable", "the store could not be read; retry");
        return;
    }
    install_fresh(pl, seq);
}

void pull_configure(http_req_t *r)
{
    principal_t *p = auth_request(r, 0);
    json_t *root = NULL, *ss, *st;
    pull_t *pl = NULL;
    const char *why = NULL;
    char name[CONS_NAME_MAX + 1];
    int64_t start_ms = 0;
    uint64_t start_seq = 0;

    if (!p)
        return;
    root = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    pl = calloc(1, sizeof *pl);
    consumer_name(p, name);
    if (!pl || !(pl->fresh = cons_new(p->tenant, name))) {
        http_error(r, 503, "unavailable", "out of memory");
        goto out;
    }
    buf_init(&pl->body, 1 << 20);
    if (!json_is_object(root)) {
        http_error(r, 400, "invalid_json", "the body must be a JSON object");
        goto out;
    }
    ss = json_object_get(root, "startSeq");
    st = json_object_get(root, "startTime");
    if (take_list(root, "filterSubjects", &pl->fresh->subjects, subj_valid_pattern, &why) ||
        take_list(root, "events", &pl->fresh->events, perm_valid_event_pattern, &why) ||
        take_list(root, "branches", &pl->fresh->branches, ok_branch, &why) ||
        full_refs(&pl->fresh->branches) || (ss && st) ||
        (ss && (!json_is_integer(ss) || json_integer_value(ss) < 1)) ||
        (st && (!json_is_string(st) || clock_parse_rfc3339(json_string_value(st),
                                                           json_string_length(st), &start_ms)))) {
        http_error(r, 400, "invalid_request", "invalid %s", why ? why : "start (startSeq: "
                   "integer >= 1, or startTime: RFC 3339; not both)");
        goto out;
    }
    if (ss)
        start_seq = (uint64_t)json_integer_value(ss) - 1;
    if (!json_object_get(root, "filterSubjects") && follow_history(p, pl->fresh)) {
        http_error(r, 503, "unavailable", "out of memory");
        goto out;
    }
    if (!may_read(p, pl->fresh)) {
        auth_forbidden(r, p, NULL, NULL, "read the history of the requested subjects");
        goto out;
    }
    pl->fresh->created_ms = clock_now_ms();
    pl->kind = PK_CONFIG;
    pl->r = r;
    pl->p = principal_ref(p);
    http_req_hold(r);
    if (st) {
        if (store_seq_before_time(auth_store(), start_ms, r->conn->loop, start_found, pl))
            fail(pl, 503, "store_unavailable", "the store is not accepting reads");
    } else {
        install_fresh(pl, start_seq);
    }
    pl = NULL;
out:
    if (pl)
        pull_free(pl);
    json_decref(root);
    principal_unref(p);
}

/* --- admin replay ------------------------------------------------------- */

static void replay_read(void *arg, int err, msg_t **msgs, size_t n, uint64_t scanned_to,
                        bool at_end)
{
    pull_t *pl = arg;
    uint64_t seq = pl->ids[pl->iids];
    bool found = !err && n == 1 && msgs[0]->seq == seq;

    (void)scanned_to;
    (void)at_end;
    store_msgs_free(msgs, n);
    if (err) {
        fail(pl, 503, "store_unavailable", "the store could not be read; retry");
        return;
    }
    cons_lock();
    if (found && cons_replay(pl->c, seq) == 0)
        pl->replayed++;
    else
        json_array_append_new(pl->unknown, json_sprintf("%" PRIu64, seq));
    cons_unlock();
    pl->iids++;
    next_step(pl);
}

void pull_replay(http_req_t *r)
{
    principal_t *p = auth_request(r, 0);
    json_t *root = NULL, *ids, *v, *cname;
    pull_t *pl = NULL;
    consumer_t *c;
    uint64_t seq;
    size_t i;
    int status = 0;

    if (!p)
        return;
    if (!principal_can_admin(p, p->tenant, p->tenant_len)) {
        auth_forbidden(r, p, NULL, NULL, "replay needs admin permission");
        goto out;
    }
    ids = parse_ids(r, &root);
    if (!ids)
        goto out;
    cname = json_object_get(root, "consumer");
    pl = calloc(1, sizeof *pl);
    if (!pl || !(pl->unknown = json_array()) ||
        !(pl->ids = calloc(json_array_size(ids) + 1, sizeof *pl->ids))) {
        http_error(r, 503, "unavailable", "out of memory");
        goto out;
    }
    if (!json_is_string(cname)) {
        http_error(r, 400, "invalid_request", "\"consumer\" must be a consumer name");
        goto out;
    }
    json_array_foreach(ids, i, v) {
        if (cons_parse_id(v, &seq))
            pl->ids[pl->nids++] = seq;
        else
            json_array_append(pl->unknown, v);
    }
    cons_lock();
    c = cons_get(p->tenant, json_string_value(cname));
    status = !c ? 404 : !cons_try_busy(c) ? 409 : 0;
    cons_unlock();
    if (status == 404) {
        http_error(r, 404, "not_found", "no such consumer in this tenant");
        goto out;
    }
    if (status == 409) {
        http_error(r, 409, "consumer_busy", "another request on this consumer is in progress; retry");
        goto out;
    }
    pl->kind = PK_REPLAY;
    pl->r = r;
    pl->p = principal_ref(p);
    pl->c = c;
    buf_init(&pl->body, 1 << 20);
    http_req_hold(r);
    next_step(pl);
    pl = NULL;
out:
    if (pl)
        pull_free(pl);
    json_decref(root);
    principal_unref(p);
}
