/*
 * test_store.c - the store interface with its SQLite backend: sequences,
 * group commit, durability across reopen, retention, reads and paging,
 * close semantics, error paths, delivery-id dedupe and the metadata
 * namespaces.
 *
 * `post` runs completions directly on the store's thread; the tests wait for
 * them with one mutex/condvar. Each test gets a fresh directory under /tmp.
 */
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "core/clock.h"
#include "core/msg.h"
#include "store/store.h"

#define WAIT_MS 20000

/* --- shared test state ---------------------------------------------------- */

typedef struct gate {
    bool armed;              /* the next gated call blocks */
    bool entered;
    bool open;
} gate_t;

static struct {
    char dir[256];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done;             /* completions of any kind */
    gate_t commit_gate;      /* blocks inside on_commit */
    gate_t read_gate;        /* blocks inside a read callback */
    uint64_t committed;      /* highest seq seen by on_commit */
    size_t commit_calls;
    bool commit_order_ok;
    bool completion_after_commit;
    size_t latency_calls;
    uint64_t latency_ns;
    size_t posts;            /* completions posted */
} T;

static void lock(void) { pthread_mutex_lock(&T.mu); }
static void unlock(void) { pthread_mutex_unlock(&T.mu); }

static void done_one(void)
{
    T.done++;
    pthread_cond_broadcast(&T.cv);
}

/* Waits, with T.mu held, until *counter >= n; fails the test on timeout. */
static void wait_locked(const size_t *counter, size_t n)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    while (*counter < n)
        if (pthread_cond_timedwait(&T.cv, &T.mu, &ts) != 0)
            break;
    assert_true(*counter >= n);
}

static void wait_done(size_t n)
{
    lock();
    wait_locked(&T.done, n);
    unlock();
}

/* Blocks the calling (store) thread when g is armed, until gate_open. */
static void gate_pass(gate_t *g)
{
    lock();
    if (g->armed) {
        g->armed = false;
        g->entered = true;
        pthread_cond_broadcast(&T.cv);
        while (!g->open)
            pthread_cond_wait(&T.cv, &T.mu);
    }
    unlock();
}

static void gate_wait_entered(gate_t *g)
{
    struct timespec ts;

    lock();
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    while (!g->entered)
        if (pthread_cond_timedwait(&T.cv, &T.mu, &ts) != 0)
            break;
    unlock();
    assert_true(g->entered);
}

static void gate_open(gate_t *g)
{
    lock();
    g->open = true;
    pthread_cond_broadcast(&T.cv);
    unlock();
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    pthread_mutex_init(&T.mu, NULL);
    pthread_cond_init(&T.cv, NULL);
    T.done = 0;
    memset(&T.commit_gate, 0, sizeof(T.commit_gate));
    memset(&T.read_gate, 0, sizeof(T.read_gate));
    T.committed = 0;
    T.commit_calls = 0;
    T.commit_order_ok = true;
    T.completion_after_commit = true;
    T.latency_calls = 0;
    T.latency_ns = 0;
    T.posts = 0;
    snprintf(T.dir, sizeof(T.dir), "/tmp/sb_test_store_XXXXXX");
    return mkdtemp(T.dir) ? 0 : -1;
}

static int teardown(void **state)
{
    nftw(T.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    pthread_cond_destroy(&T.cv);
    pthread_mutex_destroy(&T.mu);
    return 0;
}

/* --- store callbacks ------------------------------------------------------ */

static void post_here(void *target, void (*fn)(void *), void *arg)
{
    lock();
    T.posts++;
    unlock();
    fn(arg);
}

static void on_commit(void *ctx, msg_t *const *msgs, size_t n)
{
    gate_pass(&T.commit_gate);
    lock();
    T.commit_calls++;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i]->seq != T.committed + 1)
            T.commit_order_ok = false;
        T.committed = msgs[i]->seq;
    }
    unlock();
}

static void on_latency(void *ctx, uint64_t ns)
{
    lock();
    T.latency_calls++;
    T.latency_ns += ns;
    unlock();
}

typedef struct rec {
    int calls;
    int err;
    uint64_t seq;
    int dup;                 /* m->duplicate */
} rec_t;

static void on_append(void *arg, int err, msg_t *m)
{
    rec_t *r = arg;

    lock();
    r->calls++;
    r->err = err;
    r->seq = m->seq;
    r->dup = m->duplicate;
    if (err == 0 && m->seq > T.committed)
        T.completion_after_commit = false;
    done_one();
    unlock();
}

typedef struct result {
    int calls;
    int err;
    msg_t **msgs;
    size_t n;
    uint64_t scanned_to;
    bool at_end;
    uint64_t seq;
} result_t;

static void on_read(void *arg, int err, msg_t **msgs, size_t n,
                    uint64_t scanned_to, bool at_end)
{
    result_t *r = arg;

    gate_pass(&T.read_gate);
    lock();
    r->calls++;
    r->err = err;
    r->msgs = msgs;
    r->n = n;
    r->scanned_to = scanned_to;
    r->at_end = at_end;
    done_one();
    unlock();
}

static void on_seq(void *arg, int err, uint64_t seq)
{
    result_t *r = arg;

    lock();
    r->calls++;
    r->err = err;
    r->seq = seq;
    done_one();
    unlock();
}

static void on_done(void *arg, int err)
{
    result_t *r = arg;

    lock();
    r->calls++;
    r->err = err;
    done_one();
    unlock();
}

/* --- helpers ---------------------------------------------------------------- */

static char *events_subjects[] = {"events.>", "orders.*"};
static store_stream_cfg_t events_stream[] = {
    {.name = "events", .subjects = events_subjects, .nsubjects = 2},
};

static store_cfg_t base_cfg(void)
{
    store_cfg_t c = {
        .backend = "sqlite",
        .dir = T.dir,
        .fsync = STORE_FSYNC_FULL,
        .streams = events_stream,
        .nstreams = 1,
        .post = post_here,
        .on_commit = on_commit,
        .on_commit_latency = on_latency,
    };
    return c;
}

static store_t *open_cfg(const store_cfg_t *c)
{
    char err[256];
    store_t *s = store_open(c, err, sizeof(err));

    if (!s)
        fprintf(stderr, "store_open: %s\n", err);
    assert_non_null(s);
    return s;
}

static store_t *open_default(void)
{
    store_cfg_t c = base_cfg();

    return open_cfg(&c);
}

static msg_t *mk(const char *tenant, const char *subject, const char *payload,
                 int64_t time_ms)
{
    msg_t *m = msg_new();
    size_t len = strlen(payload);
    unsigned char *p = malloc(len + 1);

    assert_non_null(m);
    assert_non_null(p);
    memcpy(p, payload, len + 1);
    assert_int_equal(msg_set(&m->tenant, tenant, strlen(tenant)), 0);
    assert_int_equal(msg_set(&m->subject, subject, strlen(subject)), 0);
    m->time_ms = time_ms;
    msg_set_payload(m, p, len);
    return m;
}

/* Appends m (dropping the caller's reference) and waits for the result. */
static rec_t append_wait(store_t *s, msg_t *m)
{
    rec_t r = {0};
    size_t before;

    lock();
    before = T.done;
    unlock();
    assert_int_equal(store_append(s, m, NULL, on_append, &r), 0);
    msg_unref(m);
    wait_done(before + 1);
    assert_int_equal(r.calls, 1);
    return r;
}

static uint64_t append_ok(store_t *s, const char *tenant, const char *subject,
                          const char *payload)
{
    rec_t r = append_wait(s, mk(tenant, subject, payload, clock_now_ms()));

    assert_int_equal(r.err, 0);
    return r.seq;
}

static result_t read_wait(store_t *s, const char *tenant,
                          const char *const *patterns, size_t npatterns,
                          uint64_t after, size_t limit, size_t max_scan)
{
    store_query_t q = {
        .tenant = tenant, .patterns = patterns, .npatterns = npatterns,
        .after_seq = after, .limit = limit, .max_scan = max_scan,
    };
    result_t r = {0};
    size_t before;

    lock();
    before = T.done;
    unlock();
    assert_int_equal(store_read(s, &q, NULL, on_read, &r), 0);
    wait_done(before + 1);
    assert_int_equal(r.calls, 1);
    return r;
}

static int done_wait(store_t *s, bool expire)
{
    result_t r = {0};
    size_t before;

    lock();
    before = T.done;
    unlock();
    if (expire)
        assert_int_equal(store_expire_now(s, NULL, on_done, &r), 0);
    else
        assert_int_equal(store_ping(s, NULL, on_done, &r), 0);
    wait_done(before + 1);
    assert_int_equal(r.calls, 1);
    return r.err;
}

static uint64_t seq_before(store_t *s, int64_t time_ms)
{
    result_t r = {0};
    size_t before;

    lock();
    before = T.done;
    unlock();
    assert_int_equal(store_seq_before_time(s, time_ms, NULL, on_seq, &r), 0);
    wait_done(before + 1);
    assert_int_equal(r.err, 0);
    return r.seq;
}

static store_stats_t stats(store_t *s)
{
    store_stats_t st;

    store_get_stats(s, &st);
    return st;
}

/* Runs one SQL statement on the store's database from outside. */
static void db_exec(const char *sql)
{
    char path[512];
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/switchboard.db", T.dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* --- open / close ----------------------------------------------------------- */

static void test_open_close_empty(void **state)
{
    char nested[300];
    struct stat sb;
    store_cfg_t c = base_cfg();
    store_t *s;
    store_stats_t st;

    snprintf(nested, sizeof(nested), "%s/a/b", T.dir);
    c.dir = nested;
    s = open_cfg(&c);
    st = stats(s);
    assert_int_equal(st.last_seq, 0);
    assert_int_equal(st.messages, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.commits, 0);
    assert_true(st.healthy);
    assert_int_equal(stat(nested, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    store_close(s);
    snprintf(nested, sizeof(nested), "%s/a/b/switchboard.db", T.dir);
    assert_int_equal(stat(nested, &sb), 0);
}

static void expect_open_fails(const store_cfg_t *c)
{
    char err[256] = "";

    assert_null(store_open(c, err, sizeof(err)));
    assert_true(err[0] != '\0');
}

static void test_open_rejects_bad_config(void **state)
{
    static char *bad_pattern[] = {"events..x"};
    static char *mid_gt[] = {"a.>.b"};
    store_stream_cfg_t bad[] = {
        {.name = "x", .subjects = bad_pattern, .nsubjects = 1},
    };
    store_stream_cfg_t dup[] = {
        {.name = "x", .subjects = events_subjects, .nsubjects = 1},
        {.name = "x", .subjects = events_subjects + 1, .nsubjects = 1},
    };
    store_stream_cfg_t empty[] = {{.name = "x", .subjects = NULL}};
    store_stream_cfg_t noname[] = {
        {.name = "", .subjects = events_subjects, .nsubjects = 1},
    };
    store_stream_cfg_t negative[] = {
        {.name = "x", .subjects = events_subjects, .nsubjects = 1,
         .max_msgs = -1},
    };
    store_stream_cfg_t gt[] = {{.name = "x", .subjects = mid_gt,
                                .nsubjects = 1}};
    char file[300];
    store_cfg_t c;
    FILE *f;

    c = base_cfg(); c.dir = NULL; expect_open_fails(&c);
    c = base_cfg(); c.backend = "nope"; expect_open_fails(&c);
    c = base_cfg(); c.post = NULL; expect_open_fails(&c);
    c = base_cfg(); c.readers = -1; expect_open_fails(&c);
    c = base_cfg(); c.readers = 1000; expect_open_fails(&c);
    c = base_cfg(); c.retention_interval_ms = -5; expect_open_fails(&c);
    c = base_cfg(); c.max_batch = (size_t)1 << 30; expect_open_fails(&c);
    c = base_cfg(); c.streams = bad; expect_open_fails(&c);
    c = base_cfg(); c.streams = gt; expect_open_fails(&c);
    c = base_cfg(); c.streams = dup; c.nstreams = 2; expect_open_fails(&c);
    c = base_cfg(); c.streams = empty; expect_open_fails(&c);
    c = base_cfg(); c.streams = noname; expect_open_fails(&c);
    c = base_cfg(); c.streams = negative; expect_open_fails(&c);
    snprintf(file, sizeof(file), "%s/plainfile", T.dir);
    f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    c = base_cfg(); c.dir = file; expect_open_fails(&c);
    /* NULL backend means the default one. */
    c = base_cfg(); c.backend = NULL;
    store_close(open_cfg(&c));
}

static void test_open_dir_locked(void **state)
{
    store_cfg_t c = base_cfg();
    store_t *s = open_cfg(&c);
    char err[256] = "";

    assert_null(store_open(&c, err, sizeof(err)));
    assert_non_null(strstr(err, "in use"));
    store_close(s);
    store_close(open_cfg(&c));
}

static void test_open_refuses_newer_schema(void **state)
{
    store_cfg_t c = base_cfg();

    db_exec("PRAGMA user_version = 99");
    expect_open_fails(&c);
    db_exec("PRAGMA user_version = 0");
    store_close(open_cfg(&c));
}

static void test_open_copies_config(void **state)
{
    char name[] = "events";
    char pat[] = "events.>";
    char *subjects[] = {pat};
    store_stream_cfg_t st = {.name = name, .subjects = subjects,
                             .nsubjects = 1};
    store_cfg_t c = base_cfg();
    store_t *s;

    c.streams = &st;
    s = open_cfg(&c);
    memset(pat, 'x', sizeof(pat) - 1);
    memset(name, 'y', sizeof(name) - 1);
    assert_non_null(store_stream_for(s, "events.a"));
    assert_string_equal(store_stream_for(s, "events.a")->name, "events");
    store_close(s);
}

/* --- appends ------------------------------------------------------------------ */

static void test_roundtrip_all_fields(void **state)
{
    static const unsigned char bin[] = {0x00, 0xff, 'a', 0x00, 0x80, 0x00};
    const char *all[] = {">"};
    store_t *s = open_default();
    msg_t *m = msg_new();
    unsigned char *p = malloc(sizeof(bin));
    result_t r;
    msg_t *got;
    rec_t rec;

    assert_non_null(p);
    memcpy(p, bin, sizeof(bin));
    msg_set(&m->tenant, "acme", 4);
    msg_set(&m->subject, "events.github.push", 18);
    msg_set(&m->event, "push", 4);
    msg_set(&m->meta, "{\"source\":\"gh\"}", 15);
    msg_set(&m->headers, "{\"X-A\":\"1\"}", 11);
    msg_set(&m->content_type, "application/octet-stream", 24);
    m->time_ms = 1700000000123;
    msg_set_payload(m, p, sizeof(bin));
    assert_int_equal(m->payload_kind, MSG_PAYLOAD_BINARY);
    rec = append_wait(s, m);
    assert_int_equal(rec.err, 0);
    assert_int_equal(rec.seq, 1);

    /* Optional fields absent, empty payload; the stored kind is kept even
     * though it differs from what classification would say. */
    m = mk("acme", "orders.42", "", 5);
    m->payload_kind = MSG_PAYLOAD_JSON;
    rec = append_wait(s, m);
    assert_int_equal(rec.seq, 2);

    r = read_wait(s, "acme", all, 1, 0, 10, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, 2);
    assert_true(r.at_end);
    assert_int_equal(r.scanned_to, 2);
    got = r.msgs[0];
    assert_int_equal(got->seq, 1);
    assert_string_equal(got->tenant, "acme");
    assert_string_equal(got->subject, "events.github.push");
    assert_string_equal(got->event, "push");
    assert_string_equal(got->meta, "{\"source\":\"gh\"}");
    assert_string_equal(got->headers, "{\"X-A\":\"1\"}");
    assert_string_equal(got->content_type, "application/octet-stream");
    assert_int_equal(got->time_ms, 1700000000123);
    assert_int_equal(got->payload_kind, MSG_PAYLOAD_BINARY);
    assert_int_equal(got->payload_len, sizeof(bin));
    assert_memory_equal(got->payload, bin, sizeof(bin));
    assert_int_equal(atomic_load(&got->refs), 1);
    got = r.msgs[1];
    assert_int_equal(got->seq, 2);
    assert_null(got->event);
    assert_null(got->meta);
    assert_null(got->headers);
    assert_null(got->content_type);
    assert_int_equal(got->payload_len, 0);
    assert_int_equal(got->payload_kind, MSG_PAYLOAD_JSON);
    assert_int_equal(got->time_ms, 5);
    store_msgs_free(r.msgs, r.n);
    /* size = payload + headers + meta */
    assert_int_equal(stats(s).bytes, sizeof(bin) + 11 + 15);
    assert_int_equal(stats(s).messages, 2);
    store_close(s);
}

typedef struct writer_arg {
    store_t *s;
    rec_t *recs;
    size_t n;
} writer_arg_t;

static void *append_many(void *p)
{
    writer_arg_t *w = p;

    for (size_t i = 0; i < w->n; i++) {
        msg_t *m = mk("t", "events.load", "x", clock_now_ms());

        assert_int_equal(store_append(w->s, m, NULL, on_append, &w->recs[i]),
                         0);
        msg_unref(m);
    }
    return NULL;
}

static void test_concurrent_appends_unique_seqs(void **state)
{
    enum { THREADS = 4, PER = 300, TOTAL = THREADS * PER };
    store_t *s = open_default();
    rec_t *recs = calloc(TOTAL, sizeof(*recs));
    bool *seen = calloc(TOTAL + 1, sizeof(*seen));
    pthread_t th[THREADS];
    writer_arg_t args[THREADS];

    assert_non_null(recs);
    assert_non_null(seen);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (writer_arg_t){s, recs + i * PER, PER};
        assert_int_equal(pthread_create(&th[i], NULL, append_many, &args[i]),
                         0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    wait_done(TOTAL);
    for (size_t i = 0; i < TOTAL; i++) {
        assert_int_equal(recs[i].calls, 1);
        assert_int_equal(recs[i].err, 0);
        assert_true(recs[i].seq >= 1 && recs[i].seq <= TOTAL);
        assert_false(seen[recs[i].seq]);
        seen[recs[i].seq] = true;
    }
    /* Each thread's own appends got increasing sequences. */
    for (int t = 0; t < THREADS; t++)
        for (size_t i = 1; i < PER; i++)
            assert_true(recs[t * PER + i].seq > recs[t * PER + i - 1].seq);
    assert_int_equal(stats(s).appended, TOTAL);
    assert_int_equal(stats(s).last_seq, TOTAL);
    lock();
    assert_true(T.commit_order_ok);
    assert_true(T.completion_after_commit);
    assert_int_equal(T.committed, TOTAL);
    unlock();
    store_close(s);
    free(recs);
    free(seen);
}

static void test_on_commit_before_completions(void **state)
{
    store_t *s = open_default();

    for (int i = 0; i < 20; i++)
        append_ok(s, "t", "events.a", "{}");
    lock();
    assert_true(T.commit_order_ok);
    assert_true(T.completion_after_commit);
    assert_int_equal(T.committed, 20);
    assert_true(T.commit_calls >= 1 && T.commit_calls <= 20);
    unlock();
    store_close(s);
}

/* Holds the writer inside the first commit while `n` more appends queue,
 * then returns the number of commits they took. */
static uint64_t gated_burst(size_t max_batch, size_t n)
{
    store_cfg_t c = base_cfg();
    rec_t *recs = calloc(n + 1, sizeof(*recs));
    store_t *s;
    uint64_t commits;

    assert_non_null(recs);
    c.max_batch = max_batch;
    s = open_cfg(&c);
    T.commit_gate.armed = true;
    for (size_t i = 0; i <= n; i++) {
        msg_t *m = mk("t", "events.burst", "y", clock_now_ms());

        assert_int_equal(store_append(s, m, NULL, on_append, &recs[i]), 0);
        msg_unref(m);
        if (i == 0)
            gate_wait_entered(&T.commit_gate);
    }
    gate_open(&T.commit_gate);
    wait_done(n + 1);
    for (size_t i = 0; i <= n; i++) {
        assert_int_equal(recs[i].err, 0);
        assert_int_equal(recs[i].seq, i + 1);
    }
    commits = stats(s).commits;
    assert_int_equal(stats(s).appended, n + 1);
    store_close(s);
    free(recs);
    return commits;
}

static void test_group_commit_batches(void **state)
{
    /* 1 + ceil(999 / 256) */
    assert_true(gated_burst(0, 999) <= 5);
}

static void test_group_commit_respects_max_batch(void **state)
{
    /* the first alone, then 999 in batches of 100 */
    assert_int_equal(gated_burst(100, 999), 11);
}

static void test_commit_latency_hook(void **state)
{
    store_t *s = open_default();

    append_ok(s, "t", "events.a", "1");
    append_ok(s, "t", "events.a", "2");
    lock();
    assert_int_equal(T.latency_calls, 2);
    assert_true(T.latency_ns > 0);
    unlock();
    store_close(s);
}

static void test_append_rejects_invalid(void **state)
{
    store_t *s = open_default();
    rec_t r = {0};
    msg_t *live = mk("t", "chat.typing", "x", 1);
    msg_t *notenant = mk("t", "events.a", "x", 1);
    msg_t *badsubj = mk("t", "events..a", "x", 1);

    free(notenant->tenant);
    notenant->tenant = NULL;
    assert_int_equal(store_append(s, live, NULL, on_append, &r),
                     STORE_EINVAL);
    assert_int_equal(store_append(s, notenant, NULL, on_append, &r),
                     STORE_EINVAL);
    assert_int_equal(store_append(s, badsubj, NULL, on_append, &r),
                     STORE_EINVAL);
    assert_int_equal(r.calls, 0);
    assert_int_equal(atomic_load(&live->refs), 1);
    msg_unref(live);
    msg_unref(notenant);
    msg_unref(badsubj);
    assert_int_equal(stats(s).last_seq, 0);
    store_close(s);
}

/* --- close ------------------------------------------------------------------ */

typedef struct closer {
    store_t *s;
    pthread_t th;
} closer_t;

static void *close_thread(void *p)
{
    store_close(((closer_t *)p)->s);
    return NULL;
}

static void test_close_drains_queued_appends(void **state)
{
    enum { PRE = 200, MAX = 100000 };
    store_cfg_t c = base_cfg();
    rec_t *recs = calloc(MAX, sizeof(*recs));
    closer_t cl;
    size_t accepted = 0;
    result_t ping = {0};
    store_t *s;
    int rc, rc_ping, rc_expire;

    assert_non_null(recs);
    s = open_cfg(&c);
    T.commit_gate.armed = true;
    for (; accepted < PRE; accepted++) {
        msg_t *m = mk("t", "events.d", "z", clock_now_ms());

        assert_int_equal(store_append(s, m, NULL, on_append, &recs[accepted]),
                         0);
        msg_unref(m);
        if (accepted == 0)
            gate_wait_entered(&T.commit_gate);
    }
    cl.s = s;
    assert_int_equal(pthread_create(&cl.th, NULL, close_thread, &cl), 0);
    /* Until close has begun, appends are still accepted; then refused. */
    do {
        msg_t *m = mk("t", "events.d", "z", clock_now_ms());

        rc = store_append(s, m, NULL, on_append, &recs[accepted]);
        msg_unref(m);
        if (rc == 0)
            accepted++;
        sched_yield();
    } while (rc == 0 && accepted < MAX);
    rc_ping = store_ping(s, NULL, on_done, &ping);
    rc_expire = store_expire_now(s, NULL, on_done, &ping);
    gate_open(&T.commit_gate);
    pthread_join(cl.th, NULL);
    assert_int_equal(rc, STORE_ECLOSED);
    assert_int_equal(rc_ping, STORE_ECLOSED);
    assert_int_equal(rc_expire, STORE_ECLOSED);
    /* Every accepted append was committed and answered before close
     * returned. */
    lock();
    assert_int_equal(T.done, accepted);
    unlock();
    for (size_t i = 0; i < accepted; i++) {
        assert_int_equal(recs[i].calls, 1);
        assert_int_equal(recs[i].err, 0);
        assert_int_equal(recs[i].seq, i + 1);
    }
    assert_int_equal(ping.calls, 0);
    s = open_cfg(&c);
    assert_int_equal(stats(s).messages, accepted);
    assert_int_equal(stats(s).last_seq, accepted);
    store_close(s);
    free(recs);
}

static void test_close_answers_queued_reads(void **state)
{
    const char *all[] = {">"};
    store_query_t q = {.tenant = "t", .patterns = all, .npatterns = 1,
                       .limit = 10};
    enum { MAX = 100000 };
    store_cfg_t c = base_cfg();
    result_t first = {0}, queued[3] = {{0}}, seq = {0};
    result_t *more = calloc(MAX, sizeof(*more));
    size_t nmore = 0;
    closer_t cl;
    store_t *s;
    int rc, rc_seq;

    assert_non_null(more);
    c.readers = 1;
    s = open_cfg(&c);
    append_ok(s, "t", "events.a", "1");
    T.read_gate.armed = true;
    assert_int_equal(store_read(s, &q, NULL, on_read, &first), 0);
    gate_wait_entered(&T.read_gate);
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_read(s, &q, NULL, on_read, &queued[i]), 0);
    assert_int_equal(store_seq_before_time(s, 0, NULL, on_seq, &seq), 0);
    cl.s = s;
    assert_int_equal(pthread_create(&cl.th, NULL, close_thread, &cl), 0);
    /* Reads are accepted until close begins, then refused. */
    do {
        rc = store_read(s, &q, NULL, on_read, &more[nmore]);
        if (rc == 0)
            nmore++;
        sched_yield();
    } while (rc == 0 && nmore < MAX);
    rc_seq = store_seq_before_time(s, 0, NULL, on_seq, &seq);
    gate_open(&T.read_gate);
    pthread_join(cl.th, NULL);
    assert_int_equal(rc, STORE_ECLOSED);
    assert_int_equal(rc_seq, STORE_ECLOSED);
    assert_int_equal(first.err, 0);
    assert_int_equal(first.n, 1);
    store_msgs_free(first.msgs, first.n);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(queued[i].calls, 1);
        assert_int_equal(queued[i].err, STORE_ECLOSED);
        assert_int_equal(queued[i].n, 0);
        assert_null(queued[i].msgs);
    }
    for (size_t i = 0; i < nmore; i++) {
        assert_int_equal(more[i].calls, 1);
        assert_int_equal(more[i].err, STORE_ECLOSED);
    }
    assert_int_equal(seq.calls, 1);
    assert_int_equal(seq.err, STORE_ECLOSED);
    free(more);
}

/* --- durability ---------------------------------------------------------------- */

static void test_reopen_recovers_sequences(void **state)
{
    store_cfg_t c = base_cfg();
    store_t *s = open_cfg(&c);
    store_stats_t before;
    const char *pat[] = {"events.r"};
    result_t r;

    for (int i = 0; i < 5; i++)
        append_ok(s, "t", "events.r", "hello");
    before = stats(s);
    store_close(s);
    s = open_cfg(&c);
    assert_int_equal(stats(s).last_seq, 5);
    assert_int_equal(stats(s).messages, 5);
    assert_int_equal(stats(s).bytes, before.bytes);
    assert_int_equal(stats(s).appended, 0);
    assert_int_equal(append_ok(s, "t", "events.r", "again"), 6);
    r = read_wait(s, "t", pat, 1, 0, 100, 0);
    assert_int_equal(r.n, 6);
    store_msgs_free(r.msgs, r.n);
    store_close(s);
}

static void test_recover_seq_ahead_of_meta(void **state)
{
    store_cfg_t c = base_cfg();
    store_t *s = open_cfg(&c);

    append_ok(s, "t", "events.a", "x");
    store_close(s);
    /* A row above meta's last_seq (as an older file might hold). */
    db_exec("INSERT INTO messages(seq, tenant, subject, stream, time_ms,"
            " payload_kind, size) VALUES (9, 't', 'events.a', 'events', 1,"
            " 1, 0)");
    s = open_cfg(&c);
    assert_int_equal(stats(s).last_seq, 9);
    assert_int_equal(append_ok(s, "t", "events.a", "y"), 10);
    store_close(s);
}

static void test_fsync_normal_mode(void **state)
{
    store_cfg_t c = base_cfg();
    store_t *s;

    c.fsync = STORE_FSYNC_NORMAL;
    s = open_cfg(&c);
    assert_int_equal(append_ok(s, "t", "events.n", "n"), 1);
    store_close(s);
    s = open_cfg(&c);
    assert_int_equal(stats(s).messages, 1);
    store_close(s);
}

static int ack_fd = -1;

static void on_append_ack(void *arg, int err, msg_t *m)
{
    uint64_t seq = m->seq;

    if (err == 0 && write(ack_fd, &seq, sizeof(seq)) != sizeof(seq))
        _exit(4);
}

/* The child: appends as fast as it can, writing each acknowledged sequence
 * to the pipe, until it is killed. */
static void kill9_child(void)
{
    store_cfg_t c = base_cfg();
    char err[256];
    store_t *s;

    c.on_commit = NULL;
    c.on_commit_latency = NULL;
    if (!(s = store_open(&c, err, sizeof(err))))
        _exit(2);
    for (int i = 0; i < 1000000; i++) {
        msg_t *m = msg_new();

        if (!m || msg_set(&m->tenant, "t", 1) ||
            msg_set(&m->subject, "events.k", 8) ||
            msg_set(&m->headers, "{\"k\":\"v\"}", 9))
            _exit(5);
        m->time_ms = clock_now_ms();
        if (store_append(s, m, NULL, on_append_ack, NULL))
            _exit(6);
        msg_unref(m);
        if (i % 32 == 0)
            usleep(100);
    }
    _exit(3);
}

static bool read_full(int fd, void *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);

        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static void test_kill9_keeps_acknowledged(void **state)
{
    enum { MAX_ACKS = 1 << 20 };
    uint64_t *acked = calloc(MAX_ACKS, sizeof(*acked));
    const char *all[] = {">"};
    size_t nacked = 0, j = 0;
    uint64_t seq;
    int fds[2], status;
    store_t *s;
    result_t r;
    pid_t pid;

    assert_non_null(acked);
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        ack_fd = fds[1];
        kill9_child();
    }
    close(fds[1]);
    while (nacked < 500 && read_full(fds[0], &acked[nacked], 8))
        nacked++;
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    /* Acknowledgements written before the kill are still in the pipe. */
    while (nacked < MAX_ACKS && read_full(fds[0], &acked[nacked], 8))
        nacked++;
    close(fds[0]);
    assert_true(nacked >= 500);

    s = open_default();
    assert_true(stats(s).last_seq >= acked[nacked - 1]);
    r = read_wait(s, "t", all, 1, 0, SIZE_MAX, 10000000);
    assert_int_equal(r.err, 0);
    assert_true(r.at_end);
    for (size_t i = 0; i < nacked; i++) {
        while (j < r.n && r.msgs[j]->seq < acked[i])
            j++;
        assert_true(j < r.n);
        assert_int_equal(r.msgs[j]->seq, acked[i]);
        assert_string_equal(r.msgs[j]->headers, "{\"k\":\"v\"}");
    }
    store_msgs_free(r.msgs, r.n);
    seq = append_ok(s, "t", "events.k", "after");
    assert_int_equal(seq, stats(s).last_seq);
    assert_true(seq > acked[nacked - 1]);
    store_close(s);
    free(acked);
}

/* --- retention ----------------------------------------------------------------- */

static store_t *open_limited(int64_t age, int64_t msgs, int64_t bytes,
                             int64_t interval)
{
    static store_stream_cfg_t st;
    store_cfg_t c = base_cfg();

    st = (store_stream_cfg_t){.name = "events", .subjects = events_subjects,
                              .nsubjects = 2, .max_age_ms = age,
                              .max_msgs = msgs, .max_bytes = bytes};
    c.streams = &st;
    c.retention_interval_ms = interval;
    return open_cfg(&c);
}

static void expect_seqs(store_t *s, uint64_t first, uint64_t last)
{
    const char *all[] = {">"};
    result_t r = read_wait(s, "t", all, 1, 0, 100000, 0);

    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, last - first + 1);
    for (size_t i = 0; i < r.n; i++)
        assert_int_equal(r.msgs[i]->seq, first + i);
    store_msgs_free(r.msgs, r.n);
}

static void test_retention_max_msgs(void **state)
{
    store_t *s = open_limited(0, 10, 0, 0);

    for (int i = 0; i < 25; i++)
        append_ok(s, "t", "events.m", "abc");
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 10);
    assert_int_equal(stats(s).bytes, 30);
    assert_int_equal(stats(s).expired, 15);
    expect_seqs(s, 16, 25);
    /* Nothing more to do: a second pass deletes nothing. */
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).expired, 15);
    store_close(s);
}

static void test_retention_max_msgs_many_chunks(void **state)
{
    store_t *s = open_limited(0, 100, 0, 0);
    rec_t *recs = calloc(2600, sizeof(*recs));

    assert_non_null(recs);
    for (int i = 0; i < 2600; i++) {
        msg_t *m = mk("t", "events.m", "q", clock_now_ms());

        assert_int_equal(store_append(s, m, NULL, on_append, &recs[i]), 0);
        msg_unref(m);
    }
    wait_done(2600);
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 100);
    assert_int_equal(stats(s).expired, 2500);
    expect_seqs(s, 2501, 2600);
    store_close(s);
    free(recs);
}

static void test_retention_max_bytes(void **state)
{
    char payload[101];
    store_t *s = open_limited(0, 0, 1000, 0);

    memset(payload, 'p', 100);
    payload[100] = '\0';
    for (int i = 0; i < 20; i++)
        append_ok(s, "t", "events.b", payload);
    assert_int_equal(stats(s).bytes, 2000);
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).bytes, 1000);
    assert_int_equal(stats(s).messages, 10);
    expect_seqs(s, 11, 20);
    /* One byte over: the oldest goes. */
    append_ok(s, "t", "events.b", "x");
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).bytes, 901);
    expect_seqs(s, 12, 21);
    store_close(s);
}

static void test_retention_max_age(void **state)
{
    store_t *s = open_limited(60000, 0, 0, 0);
    int64_t now = clock_now_ms();
    const char *all[] = {">"};
    result_t r;

    /* Old and fresh interleaved: age, not position, decides. */
    for (int i = 0; i < 10; i++) {
        rec_t rec = append_wait(s, mk("t", "events.age", "v",
                                      i % 2 ? now - 3600000 : now));

        assert_int_equal(rec.err, 0);
    }
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 5);
    assert_int_equal(stats(s).expired, 5);
    r = read_wait(s, "t", all, 1, 0, 100, 0);
    assert_int_equal(r.n, 5);
    for (size_t i = 0; i < r.n; i++) {
        assert_int_equal(r.msgs[i]->seq % 2, 1);
        assert_int_equal(r.msgs[i]->time_ms, now);
    }
    store_msgs_free(r.msgs, r.n);
    store_close(s);
}

static void test_retention_all_expired_keeps_sequences(void **state)
{
    store_t *s = open_limited(1000, 0, 0, 0);

    for (int i = 0; i < 5; i++)
        assert_int_equal(append_wait(s, mk("t", "events.x", "o", 10)).err, 0);
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 0);
    assert_int_equal(stats(s).last_seq, 5);
    store_close(s);
    s = open_limited(1000, 0, 0, 0);
    assert_int_equal(stats(s).messages, 0);
    assert_int_equal(stats(s).last_seq, 5);
    assert_int_equal(seq_before(s, 0), 5);
    assert_int_equal(append_ok(s, "t", "events.x", "new"), 6);
    store_close(s);
}

static void test_retention_per_stream_and_orphans(void **state)
{
    static char *a_subj[] = {"events.a.>"};
    static char *b_subj[] = {"events.>"};
    store_stream_cfg_t two[] = {
        {.name = "a", .subjects = a_subj, .nsubjects = 1, .max_msgs = 2},
        {.name = "b", .subjects = b_subj, .nsubjects = 1},
    };
    store_stream_cfg_t renamed[] = {
        {.name = "a2", .subjects = a_subj, .nsubjects = 1, .max_msgs = 1},
        {.name = "b", .subjects = b_subj, .nsubjects = 1},
    };
    store_cfg_t c = base_cfg();
    store_t *s;

    c.streams = two;
    c.nstreams = 2;
    s = open_cfg(&c);
    for (int i = 0; i < 5; i++) {
        append_ok(s, "t", "events.a.x", "1");
        append_ok(s, "t", "events.b.x", "2");
    }
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 7);
    store_close(s);

    /* Stream "a" is gone from the config: its rows are kept. */
    c.streams = renamed;
    s = open_cfg(&c);
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 7);
    assert_int_equal(stats(s).expired, 0);
    append_ok(s, "t", "events.a.y", "3");
    append_ok(s, "t", "events.a.y", "4");
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 8);
    store_close(s);

    /* Configured again (open runs a pass). */
    c.streams = two;
    s = open_cfg(&c);
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 8);
    assert_int_equal(stats(s).expired, 0);
    store_close(s);
    two[0].max_msgs = 1;
    s = open_cfg(&c);
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 7);
    assert_int_equal(stats(s).expired, 1);
    store_close(s);
}

static void test_retention_periodic(void **state)
{
    store_t *s = open_limited(0, 1, 0, 20);
    int tries = 0;

    for (int i = 0; i < 5; i++)
        append_ok(s, "t", "events.p", "p");
    while (stats(s).messages != 1 && tries++ < 500)
        usleep(10000);
    assert_int_equal(stats(s).messages, 1);
    assert_int_equal(stats(s).expired, 4);
    store_close(s);
}

/* --- reads -------------------------------------------------------------------- */

static void test_read_patterns(void **state)
{
    static const char *subjects[] = {"events.a.x", "events.b.x", "events.a.y",
                                     "orders.1", "orders.2"};
    const char *p1[] = {"events.*.x"};
    const char *p2[] = {"events.>"};
    const char *p3[] = {"orders.*", "events.a.y"};
    const char *p4[] = {"nothing.*"};
    const char *p5[] = {"events.a.y", "orders.2"};
    store_t *s = open_default();
    result_t r;

    for (size_t i = 0; i < 5; i++)
        append_ok(s, "t", subjects[i], "x");
    r = read_wait(s, "t", p1, 1, 0, 100, 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.msgs[0]->seq, 1);
    assert_int_equal(r.msgs[1]->seq, 2);
    store_msgs_free(r.msgs, r.n);
    r = read_wait(s, "t", p2, 1, 0, 100, 0);
    assert_int_equal(r.n, 3);
    store_msgs_free(r.msgs, r.n);
    r = read_wait(s, "t", p3, 2, 0, 100, 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.msgs[0]->seq, 3);
    assert_int_equal(r.msgs[2]->seq, 5);
    store_msgs_free(r.msgs, r.n);
    r = read_wait(s, "t", p4, 1, 0, 100, 0);
    assert_int_equal(r.n, 0);
    assert_null(r.msgs);
    assert_int_equal(r.scanned_to, 5);
    assert_true(r.at_end);
    r = read_wait(s, "t", p5, 2, 0, 100, 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.msgs[0]->subject, "events.a.y");
    assert_string_equal(r.msgs[1]->subject, "orders.2");
    assert_true(r.at_end);
    store_msgs_free(r.msgs, r.n);
    r = read_wait(s, "t", p2, 1, 2, 100, 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.msgs[0]->seq, 3);
    store_msgs_free(r.msgs, r.n);
    store_close(s);
}

static void test_read_tenant_isolation(void **state)
{
    const char *lit[] = {"events.a"};
    const char *wild[] = {"events.*"};
    store_t *s = open_default();
    result_t r;

    append_ok(s, "t1", "events.a", "one");
    append_ok(s, "t2", "events.a", "two");
    append_ok(s, "t1", "events.a", "three");
    for (int pass = 0; pass < 2; pass++) {
        r = read_wait(s, "t2", pass ? wild : lit, 1, 0, 100, 0);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.msgs[0]->tenant, "t2");
        assert_memory_equal(r.msgs[0]->payload, "two", 3);
        assert_true(r.at_end);
        store_msgs_free(r.msgs, r.n);
        r = read_wait(s, "t1", pass ? wild : lit, 1, 0, 100, 0);
        assert_int_equal(r.n, 2);
        assert_int_equal(r.msgs[1]->seq, 3);
        store_msgs_free(r.msgs, r.n);
        r = read_wait(s, "t3", pass ? wild : lit, 1, 0, 100, 0);
        assert_int_equal(r.n, 0);
        assert_int_equal(r.scanned_to, 0);
        assert_true(r.at_end);
    }
    store_close(s);
}

static void setup_ab(store_t *s, int n)
{
    for (int i = 1; i <= n; i++)
        append_ok(s, "t", i % 2 ? "events.a" : "events.b", "ab");
}

static void test_read_scan_cap_and_paging(void **state)
{
    const char *a[] = {"*.a"};
    store_t *s = open_default();
    uint64_t after = 0, expect = 1;
    int pages = 0;
    result_t r;

    setup_ab(s, 50);                /* odd seqs on events.a */
    r = read_wait(s, "t", a, 1, 0, 100, 7);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.scanned_to, 7);
    assert_false(r.at_end);
    store_msgs_free(r.msgs, r.n);
    do {
        r = read_wait(s, "t", a, 1, after, 100, 7);
        assert_int_equal(r.err, 0);
        for (size_t i = 0; i < r.n; i++, expect += 2)
            assert_int_equal(r.msgs[i]->seq, expect);
        store_msgs_free(r.msgs, r.n);
        assert_true(r.scanned_to > after);
        after = r.scanned_to;
        pages++;
    } while (!r.at_end);
    assert_int_equal(expect, 51);
    assert_int_equal(after, 50);
    assert_int_equal(pages, 8);
    /* At the end: nothing, scanned_to stays, at_end. */
    r = read_wait(s, "t", a, 1, 50, 100, 7);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.scanned_to, 50);
    assert_true(r.at_end);
    store_close(s);
}

static void test_read_limit_and_at_end(void **state)
{
    const char *a[] = {"*.a"};
    const char *b[] = {"*.b"};
    store_t *s = open_default();
    result_t r;

    setup_ab(s, 50);
    r = read_wait(s, "t", a, 1, 0, 3, 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.msgs[2]->seq, 5);
    assert_int_equal(r.scanned_to, 5);
    assert_false(r.at_end);
    store_msgs_free(r.msgs, r.n);
    /* The limit is reached on 49 but row 50 exists: not at the end. */
    r = read_wait(s, "t", a, 1, 46, 2, 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.scanned_to, 49);
    assert_false(r.at_end);
    store_msgs_free(r.msgs, r.n);
    /* The limit is reached on the last row: at the end. */
    r = read_wait(s, "t", b, 1, 49, 1, 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.scanned_to, 50);
    assert_true(r.at_end);
    store_msgs_free(r.msgs, r.n);
    /* Fewer matches than the limit, all rows examined. */
    r = read_wait(s, "t", a, 1, 45, 10, 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.scanned_to, 50);
    assert_true(r.at_end);
    store_msgs_free(r.msgs, r.n);
    /* max_scan exactly covering the rest still knows it is the end. */
    r = read_wait(s, "t", a, 1, 45, 10, 5);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.scanned_to, 50);
    assert_true(r.at_end);
    store_msgs_free(r.msgs, r.n);
    /* limit 0 returns nothing and examines nothing. */
    r = read_wait(s, "t", a, 1, 10, 0, 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.scanned_to, 10);
    assert_false(r.at_end);
    store_close(s);
}

/* Pages through everything matching `patterns` with the given page size and
 * returns the sequences seen (count in *n). */
static uint64_t *page_all(store_t *s, const char *tenant,
                          const char *const *patterns, size_t np,
                          size_t limit, size_t *n)
{
    uint64_t *seqs = calloc(1000, sizeof(*seqs));
    uint64_t after = 0;
    result_t r;

    assert_non_null(seqs);
    *n = 0;
    do {
        r = read_wait(s, tenant, patterns, np, after, limit, 0);
        assert_int_equal(r.err, 0);
        for (size_t i = 0; i < r.n; i++) {
            assert_true(*n < 1000);
            assert_string_equal(r.msgs[i]->tenant, tenant);
            seqs[(*n)++] = r.msgs[i]->seq;
        }
        store_msgs_free(r.msgs, r.n);
        after = r.scanned_to;
    } while (!r.at_end);
    return seqs;
}

static void test_literal_fast_path_equals_scan(void **state)
{
    const char *lit1[] = {"events.s1"};
    const char *scan1[] = {"events.s1", "zz.*"};
    const char *lit3[] = {"events.s1", "events.s3", "orders.9"};
    const char *scan3[] = {"events.s1", "events.s3", "orders.9", "zz.>"};
    const char *dup3[] = {"orders.9", "events.s3", "events.s1", "events.s3",
                          "orders.9"};
    const char *many[20] = {"events.s1", "events.s3", "orders.9"};
    store_t *s = open_default();
    char fill[20][24];
    unsigned seed = 7;

    for (int i = 3; i < 20; i++) {
        snprintf(fill[i], sizeof(fill[i]), "never.n%d", i);
        many[i] = fill[i];
    }

    for (int i = 0; i < 300; i++) {
        char subject[32];
        int k = (int)(rand_r(&seed) % 6);

        if (k == 5)
            snprintf(subject, sizeof(subject), "orders.9");
        else
            snprintf(subject, sizeof(subject), "events.s%d", k);
        append_ok(s, rand_r(&seed) % 3 ? "t" : "u", subject, "f");
    }
    for (size_t limit = 1; limit <= 50; limit += 7) {
        size_t na, nb;
        uint64_t *a = page_all(s, "t", lit1, 1, limit, &na);
        uint64_t *b = page_all(s, "t", scan1, 2, limit, &nb);

        assert_true(na > 10);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof(*a));
        free(a);
        free(b);
        a = page_all(s, "t", lit3, 3, limit, &na);
        b = page_all(s, "t", scan3, 4, limit, &nb);
        assert_true(na > 30);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof(*a));
        for (size_t i = 1; i < na; i++)
            assert_true(a[i] > a[i - 1]);
        free(b);
        /* Repeated subjects, and more subjects than get their own cursor
         * (literal subjects that never occur fill the rest). */
        b = page_all(s, "t", dup3, 5, limit, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof(*a));
        free(b);
        b = page_all(s, "t", many, 20, limit, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof(*a));
        free(a);
        free(b);
    }
    store_close(s);
}

static void test_read_rejects_invalid(void **state)
{
    const char *ok[] = {"events.a"};
    const char *bad[] = {"events..a"};
    const char *null_pat[] = {NULL};
    store_query_t q = {.tenant = "t", .patterns = ok, .npatterns = 0,
                       .limit = 1};
    result_t r = {0};
    store_t *s = open_default();

    assert_int_equal(store_read(s, &q, NULL, on_read, &r), STORE_EINVAL);
    q.npatterns = 1;
    q.tenant = NULL;
    assert_int_equal(store_read(s, &q, NULL, on_read, &r), STORE_EINVAL);
    q.tenant = "t";
    q.patterns = bad;
    assert_int_equal(store_read(s, &q, NULL, on_read, &r), STORE_EINVAL);
    q.patterns = null_pat;
    assert_int_equal(store_read(s, &q, NULL, on_read, &r), STORE_EINVAL);
    assert_int_equal(r.calls, 0);
    store_close(s);
}

static void test_seq_before_time(void **state)
{
    static const int64_t times[] = {1000, 2000, 2000, 3000};
    store_t *s = open_default();

    assert_int_equal(seq_before(s, 0), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(append_wait(s, mk("t", "events.t", "t", times[i])).err,
                         0);
    assert_int_equal(seq_before(s, 0), 0);
    assert_int_equal(seq_before(s, 1000), 0);
    assert_int_equal(seq_before(s, 1500), 1);
    assert_int_equal(seq_before(s, 2000), 1);
    assert_int_equal(seq_before(s, 2001), 3);
    assert_int_equal(seq_before(s, 3000), 3);
    assert_int_equal(seq_before(s, 3001), 4);
    store_close(s);
}

/* --- health ------------------------------------------------------------------ */

static void test_ping_and_failed_commit(void **state)
{
    store_t *s = open_default();
    store_stats_t st;
    rec_t r;

    assert_int_equal(done_wait(s, false), 0);
    assert_int_equal(append_ok(s, "t", "events.ok", "1"), 1);
    db_exec("CREATE TRIGGER fail_inserts BEFORE INSERT ON messages"
            " WHEN NEW.subject = 'events.fail'"
            " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    r = append_wait(s, mk("t", "events.fail", "2", clock_now_ms()));
    assert_int_equal(r.err, STORE_EIO);
    assert_int_equal(r.seq, 0);
    st = stats(s);
    assert_false(st.healthy);
    assert_true(st.errors >= 1);
    assert_int_equal(st.last_seq, 1);
    assert_int_equal(st.messages, 1);
    assert_int_equal(done_wait(s, false), STORE_EIO);
    db_exec("DROP TRIGGER fail_inserts");
    /* The failed sequence is handed out again; health comes back. */
    assert_int_equal(append_ok(s, "t", "events.ok", "3"), 2);
    assert_true(stats(s).healthy);
    assert_int_equal(done_wait(s, false), 0);
    lock();
    assert_true(T.commit_order_ok);
    unlock();
    store_close(s);
}

/* --- streams ------------------------------------------------------------------ */

static void test_stream_for(void **state)
{
    static char *special[] = {"events.special.*"};
    static char *general[] = {"events.>", "orders.*"};
    store_stream_cfg_t streams[] = {
        {.name = "special", .subjects = special, .nsubjects = 1},
        {.name = "general", .subjects = general, .nsubjects = 2},
    };
    store_cfg_t c = base_cfg();
    store_t *s;

    c.streams = streams;
    c.nstreams = 2;
    s = open_cfg(&c);
    assert_string_equal(store_stream_for(s, "events.special.x")->name,
                        "special");
    assert_string_equal(store_stream_for(s, "events.special.x.y")->name,
                        "general");
    assert_string_equal(store_stream_for(s, "events.x")->name, "general");
    assert_string_equal(store_stream_for(s, "orders.1")->name, "general");
    assert_null(store_stream_for(s, "orders.1.2"));
    assert_null(store_stream_for(s, "chat.x"));
    assert_null(store_stream_for(s, "events"));
    store_close(s);
    c.nstreams = 0;
    s = open_cfg(&c);
    assert_null(store_stream_for(s, "events.x"));
    store_close(s);
}

/* --- dedupe ------------------------------------------------------------------ */

static msg_t *mk_dedup(const char *tenant, const char *subject,
                       const char *dedup)
{
    msg_t *m = mk(tenant, subject, "d", clock_now_ms());

    assert_int_equal(msg_set(&m->dedup, dedup, strlen(dedup)), 0);
    return m;
}

static rec_t append_dedup(store_t *s, const char *tenant, const char *subject,
                          const char *dedup)
{
    rec_t r = append_wait(s, mk_dedup(tenant, subject, dedup));

    assert_int_equal(r.err, 0);
    return r;
}

static void test_dedup_second_append_returns_first(void **state)
{
    const char *all[] = {">"};
    store_t *s = open_default();
    rec_t r;
    result_t rd;

    r = append_dedup(s, "t", "events.gh", "delivery-1");
    assert_int_equal(r.seq, 1);
    assert_int_equal(r.dup, 0);
    /* The same key on another subject of the same stream is a repeat. */
    r = append_dedup(s, "t", "orders.7", "delivery-1");
    assert_int_equal(r.seq, 1);
    assert_int_equal(r.dup, 1);
    lock();
    assert_int_equal(T.commit_calls, 1);
    assert_int_equal(T.committed, 1);
    unlock();
    assert_int_equal(stats(s).appended, 1);
    assert_int_equal(stats(s).duplicates, 1);
    assert_int_equal(stats(s).messages, 1);
    assert_int_equal(stats(s).commits, 1);
    /* No sequence was used by the repeat. */
    assert_int_equal(append_ok(s, "t", "events.gh", "plain"), 2);
    r = append_dedup(s, "t", "events.gh", "delivery-2");
    assert_int_equal(r.seq, 3);
    assert_int_equal(r.dup, 0);
    rd = read_wait(s, "t", all, 1, 0, 10, 0);
    assert_int_equal(rd.n, 3);
    assert_string_equal(rd.msgs[0]->dedup, "delivery-1");
    assert_string_equal(rd.msgs[0]->subject, "events.gh");
    assert_null(rd.msgs[1]->dedup);
    assert_int_equal(rd.msgs[0]->duplicate, 0);
    store_msgs_free(rd.msgs, rd.n);
    lock();
    assert_true(T.commit_order_ok);
    assert_true(T.completion_after_commit);
    unlock();
    store_close(s);
}

static void test_dedup_within_one_batch(void **state)
{
    static const char *keys[] = {"x", "x", "y", "x", "y"};
    static const uint64_t want[] = {2, 2, 3, 2, 3};
    static const int dup[] = {0, 1, 0, 1, 1};
    store_t *s = open_default();
    rec_t recs[6] = {{0}};
    msg_t *m;

    T.commit_gate.armed = true;
    m = mk("t", "events.first", "1", clock_now_ms());
    assert_int_equal(store_append(s, m, NULL, on_append, &recs[5]), 0);
    msg_unref(m);
    gate_wait_entered(&T.commit_gate);
    for (int i = 0; i < 5; i++) {
        m = mk_dedup("t", "events.b", keys[i]);
        assert_int_equal(store_append(s, m, NULL, on_append, &recs[i]), 0);
        msg_unref(m);
    }
    gate_open(&T.commit_gate);
    wait_done(6);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(recs[i].err, 0);
        assert_int_equal(recs[i].seq, want[i]);
        assert_int_equal(recs[i].dup, dup[i]);
    }
    assert_int_equal(stats(s).commits, 2);
    assert_int_equal(stats(s).messages, 3);
    assert_int_equal(stats(s).duplicates, 3);
    lock();
    assert_int_equal(T.committed, 3);
    assert_true(T.commit_order_ok);
    unlock();
    store_close(s);
}

static void test_dedup_scopes_do_not_collide(void **state)
{
    static char *a_subj[] = {"events.a.>"};
    static char *b_subj[] = {"events.>"};
    store_stream_cfg_t two[] = {
        {.name = "a", .subjects = a_subj, .nsubjects = 1},
        {.name = "b", .subjects = b_subj, .nsubjects = 1},
    };
    store_cfg_t c = base_cfg();
    store_t *s;

    c.streams = two;
    c.nstreams = 2;
    s = open_cfg(&c);
    assert_int_equal(append_dedup(s, "t1", "events.a.x", "k").seq, 1);
    assert_int_equal(append_dedup(s, "t2", "events.a.x", "k").seq, 2);
    assert_int_equal(append_dedup(s, "t1", "events.b.x", "k").seq, 3);
    assert_int_equal(append_dedup(s, "t1", "events.a.y", "k").dup, 1);
    assert_int_equal(append_dedup(s, "t2", "events.b.y", "k").seq, 4);
    assert_int_equal(append_dedup(s, "t2", "events.b.z", "k").seq, 4);
    /* Keys differing only in case are different keys. */
    assert_int_equal(append_dedup(s, "t1", "events.a.x", "K").seq, 5);
    assert_int_equal(stats(s).messages, 5);
    store_close(s);
}

static void test_dedup_survives_reopen(void **state)
{
    store_cfg_t c = base_cfg();
    store_t *s = open_cfg(&c);
    rec_t r;

    assert_int_equal(append_dedup(s, "t", "events.r", "once").seq, 1);
    append_ok(s, "t", "events.r", "other");
    store_close(s);
    s = open_cfg(&c);
    r = append_dedup(s, "t", "events.r", "once");
    assert_int_equal(r.seq, 1);
    assert_int_equal(r.dup, 1);
    assert_int_equal(stats(s).last_seq, 2);
    store_close(s);
}

static void test_dedup_key_free_after_retention(void **state)
{
    store_t *s = open_limited(0, 1, 0, 0);
    rec_t r;

    assert_int_equal(append_dedup(s, "t", "events.q", "again").seq, 1);
    /* Still retained: a repeat. */
    assert_int_equal(append_dedup(s, "t", "events.q", "again").dup, 1);
    append_ok(s, "t", "events.q", "push it out");
    assert_int_equal(done_wait(s, true), 0);
    assert_int_equal(stats(s).messages, 1);
    r = append_dedup(s, "t", "events.q", "again");
    assert_int_equal(r.dup, 0);
    assert_int_equal(r.seq, 3);
    store_close(s);
}

static void test_dedup_limits(void **state)
{
    char key[STORE_DEDUP_MAX + 2];
    store_t *s = open_default();
    rec_t r = {0};
    msg_t *m;

    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    m = mk_dedup("t", "events.l", key);          /* 257 bytes */
    assert_int_equal(store_append(s, m, NULL, on_append, &r), STORE_EINVAL);
    msg_unref(m);
    m = mk_dedup("t", "events.l", "");
    assert_int_equal(store_append(s, m, NULL, on_append, &r), STORE_EINVAL);
    msg_unref(m);
    assert_int_equal(r.calls, 0);
    key[STORE_DEDUP_MAX] = '\0';                 /* 256 bytes */
    assert_int_equal(append_dedup(s, "t", "events.l", key).seq, 1);
    assert_int_equal(append_dedup(s, "t", "events.l", key).dup, 1);
    store_close(s);
}

/* --- metadata ---------------------------------------------------------------- */

typedef struct kv_res {
    size_t calls;
    int err;
    uint64_t rev;
    unsigned char *value;    /* get: a copy */
    size_t len;
    bool nul_ok;             /* get: value[len] was a NUL */
    store_meta_entry_t *entries;  /* list: as received */
    size_t n;
} kv_res_t;

/* Marks r answered; T.mu held. */
static void kv_answered(kv_res_t *r)
{
    r->calls++;
    pthread_cond_broadcast(&T.cv);
}

static void on_put(void *arg, int err, uint64_t rev)
{
    kv_res_t *r = arg;

    lock();
    r->err = err;
    r->rev = rev;
    kv_answered(r);
    unlock();
}

static void on_kv_done(void *arg, int err)
{
    kv_res_t *r = arg;

    lock();
    r->err = err;
    kv_answered(r);
    unlock();
}

static void on_get(void *arg, int err, const unsigned char *value, size_t len,
                   uint64_t rev)
{
    kv_res_t *r = arg;
    unsigned char *copy = value ? malloc(len + 1) : NULL;

    if (copy)
        memcpy(copy, value, len + 1);
    lock();
    r->err = err;
    r->rev = rev;
    r->value = copy;
    r->len = len;
    r->nul_ok = value && value[len] == '\0';
    kv_answered(r);
    unlock();
}

static void on_list(void *arg, int err, store_meta_entry_t *entries, size_t n)
{
    kv_res_t *r = arg;

    lock();
    r->err = err;
    r->entries = entries;
    r->n = n;
    kv_answered(r);
    unlock();
}

/* Waits until r is answered; false on timeout (no assert: threads use it). */
static bool kv_wait(kv_res_t *r)
{
    struct timespec ts;

    lock();
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    while (r->calls == 0)
        if (pthread_cond_timedwait(&T.cv, &T.mu, &ts) != 0)
            break;
    unlock();
    return r->calls == 1;
}

static kv_res_t kv_put(store_t *s, const char *ns, const char *key,
                       const void *value, size_t len, uint64_t expect)
{
    kv_res_t r = {0};

    assert_int_equal(store_meta_put(s, ns, key, value, len, expect, NULL,
                                    on_put, &r), 0);
    assert_true(kv_wait(&r));
    return r;
}

/* An unconditional put of a string that must succeed; its revision. */
static uint64_t kv_set(store_t *s, const char *ns, const char *key,
                       const char *value)
{
    kv_res_t r = kv_put(s, ns, key, value, strlen(value), 0);

    assert_int_equal(r.err, 0);
    assert_true(r.rev > 0);
    return r.rev;
}

/* The caller frees r.value. */
static kv_res_t kv_get(store_t *s, const char *ns, const char *key)
{
    kv_res_t r = {0};

    assert_int_equal(store_meta_get(s, ns, key, NULL, on_get, &r), 0);
    assert_true(kv_wait(&r));
    if (r.err == 0) {
        assert_non_null(r.value);
        assert_true(r.nul_ok);
    } else {
        assert_null(r.value);
    }
    return r;
}

static void expect_kv(store_t *s, const char *ns, const char *key,
                      const char *value, uint64_t rev)
{
    kv_res_t r = kv_get(s, ns, key);

    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, strlen(value));
    assert_memory_equal(r.value, value, r.len);
    assert_int_equal(r.rev, rev);
    free(r.value);
}

static int kv_del(store_t *s, const char *ns, const char *key)
{
    kv_res_t r = {0};

    assert_int_equal(store_meta_delete(s, ns, key, NULL, on_kv_done, &r), 0);
    assert_true(kv_wait(&r));
    return r.err;
}

/* The caller frees with store_meta_entries_free(r.entries, r.n). */
static kv_res_t kv_list(store_t *s, const char *ns, const char *prefix)
{
    kv_res_t r = {0};

    assert_int_equal(store_meta_list(s, ns, prefix, NULL, on_list, &r), 0);
    assert_true(kv_wait(&r));
    return r;
}

static void test_meta_put_get_delete(void **state)
{
    store_t *s = open_default();
    int64_t before = clock_now_ms();
    kv_res_t r;

    assert_int_equal(kv_set(s, "keys", "k1", "{\"role\":\"admin\"}"), 1);
    expect_kv(s, "keys", "k1", "{\"role\":\"admin\"}", 1);
    assert_int_equal(kv_set(s, "keys", "k1", "{}"), 2);
    expect_kv(s, "keys", "k1", "{}", 2);
    /* Namespaces are separate. */
    r = kv_get(s, "tenants", "k1");
    assert_int_equal(r.err, STORE_ENOTFOUND);
    assert_int_equal(r.rev, 0);
    assert_int_equal(kv_set(s, "tenants", "k1", "t"), 3);
    expect_kv(s, "keys", "k1", "{}", 2);
    r = kv_list(s, "keys", "");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, 1);
    assert_true(r.entries[0].updated_ms >= before);
    assert_true(r.entries[0].updated_ms <= clock_now_ms());
    store_meta_entries_free(r.entries, r.n);
    assert_int_equal(kv_del(s, "keys", "k1"), 0);
    assert_int_equal(kv_get(s, "keys", "k1").err, STORE_ENOTFOUND);
    assert_int_equal(kv_del(s, "keys", "k1"), STORE_ENOTFOUND);
    expect_kv(s, "tenants", "k1", "t", 3);
    /* A key put again after a delete gets a new revision. */
    assert_int_equal(kv_set(s, "keys", "k1", "back"), 4);
    /* Metadata writes are not appends. */
    assert_int_equal(stats(s).commits, 0);
    assert_int_equal(stats(s).last_seq, 0);
    lock();
    assert_int_equal(T.commit_calls, 0);
    unlock();
    store_close(s);
}

static void test_meta_list_prefix(void **state)
{
    static const char *const keys[] = {"b", "a~", "abc", "a", "ab", "a b",
                                       "a}", "ac", "~"};
    static const char *const with_a[] = {"a", "a b", "ab", "abc", "ac", "a}",
                                         "a~"};
    static const char *const with_ab[] = {"ab", "abc"};
    store_t *s = open_default();
    kv_res_t r;

    for (size_t i = 0; i < 9; i++)
        kv_set(s, "ns", keys[i], keys[i]);
    kv_set(s, "other", "a", "not mine");
    kv_set(s, "ns2", "a", "not mine either");
    r = kv_list(s, "ns", "a");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, 7);
    for (size_t i = 0; i < r.n; i++) {
        assert_string_equal(r.entries[i].key, with_a[i]);
        assert_int_equal(r.entries[i].len, strlen(with_a[i]));
        assert_memory_equal(r.entries[i].value, with_a[i], r.entries[i].len);
        assert_int_equal(r.entries[i].value[r.entries[i].len], '\0');
    }
    store_meta_entries_free(r.entries, r.n);
    r = kv_list(s, "ns", "ab");
    assert_int_equal(r.n, 2);
    for (size_t i = 0; i < r.n; i++)
        assert_string_equal(r.entries[i].key, with_ab[i]);
    store_meta_entries_free(r.entries, r.n);
    r = kv_list(s, "ns", "");
    assert_int_equal(r.n, 9);
    assert_string_equal(r.entries[0].key, "a");
    assert_string_equal(r.entries[8].key, "~");
    for (size_t i = 1; i < r.n; i++)
        assert_true(strcmp(r.entries[i - 1].key, r.entries[i].key) < 0);
    store_meta_entries_free(r.entries, r.n);
    r = kv_list(s, "ns", "~");
    assert_int_equal(r.n, 1);
    store_meta_entries_free(r.entries, r.n);
    r = kv_list(s, "ns", "abcd");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, 0);
    assert_null(r.entries);
    r = kv_list(s, "nothing", "");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, 0);
    store_close(s);
}

static void test_meta_cas(void **state)
{
    store_t *s = open_default();
    kv_res_t r;

    r = kv_put(s, "c", "k", "v1", 2, STORE_META_MUST_NOT_EXIST);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.rev, 1);
    r = kv_put(s, "c", "k", "v2", 2, STORE_META_MUST_NOT_EXIST);
    assert_int_equal(r.err, STORE_ECONFLICT);
    assert_int_equal(r.rev, 1);
    r = kv_put(s, "c", "k", "v3", 2, 1);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.rev, 2);
    /* A stale revision loses and tells the current one. */
    r = kv_put(s, "c", "k", "v4", 2, 1);
    assert_int_equal(r.err, STORE_ECONFLICT);
    assert_int_equal(r.rev, 2);
    expect_kv(s, "c", "k", "v3", 2);
    /* An expected revision on a missing key conflicts (current 0). */
    r = kv_put(s, "c", "absent", "x", 1, 2);
    assert_int_equal(r.err, STORE_ECONFLICT);
    assert_int_equal(r.rev, 0);
    assert_int_equal(kv_get(s, "c", "absent").err, STORE_ENOTFOUND);
    /* A revision of another key does not match. */
    assert_int_equal(kv_set(s, "c", "other", "o"), 3);
    assert_int_equal(kv_put(s, "c", "k", "x", 1, 3).err, STORE_ECONFLICT);
    /* After a delete: must-not-exist succeeds, the old revision fails. */
    assert_int_equal(kv_del(s, "c", "k"), 0);
    assert_int_equal(kv_put(s, "c", "k", "x", 1, 2).err, STORE_ECONFLICT);
    r = kv_put(s, "c", "k", "v5", 2, STORE_META_MUST_NOT_EXIST);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.rev, 4);
    /* Unconditional always wins. */
    assert_int_equal(kv_put(s, "c", "k", "v6", 2, 0).rev, 5);
    expect_kv(s, "c", "k", "v6", 5);
    store_close(s);
}

static void test_meta_revisions_survive_reopen(void **state)
{
    store_cfg_t c = base_cfg();
    store_t *s = open_cfg(&c);
    uint64_t last = 0;

    for (int i = 0; i < 10; i++) {
        char key[16];
        uint64_t rev;

        snprintf(key, sizeof(key), "k%d", i % 4);
        rev = kv_set(s, i % 2 ? "a" : "b", key, "v");
        assert_true(rev > last);
        last = rev;
    }
    assert_int_equal(last, 10);
    /* The row holding the highest revision goes away. */
    assert_int_equal(kv_del(s, "a", "k1"), 0);
    assert_int_equal(kv_del(s, "b", "k0"), 0);
    store_close(s);
    s = open_cfg(&c);
    expect_kv(s, "a", "k3", "v", 8);
    assert_int_equal(kv_set(s, "a", "new", "v"), 11);
    store_close(s);
    /* The meta row behind the table (as an older file might be), or
     * missing: the table's highest revision wins. */
    db_exec("UPDATE meta SET value = 2 WHERE key = 'last_rev'");
    s = open_cfg(&c);
    assert_int_equal(kv_set(s, "a", "x", "v"), 12);
    store_close(s);
    db_exec("DELETE FROM meta WHERE key = 'last_rev'");
    s = open_cfg(&c);
    assert_int_equal(kv_set(s, "a", "y", "v"), 13);
    store_close(s);
}

static void test_meta_limits(void **state)
{
    char name[STORE_META_NAME_MAX + 2];
    static const char *const bad[] = {"", "tab\there", "nl\n", "del\x7f",
                                      "hi\x80", "\xff"};
    unsigned char *big = malloc(STORE_META_VALUE_MAX + 1);
    store_t *s = open_default();
    kv_res_t r = {0};
    size_t posts;

    assert_non_null(big);
    memset(big, 0xab, STORE_META_VALUE_MAX + 1);
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';               /* 257 bytes */
    lock();
    posts = T.posts;
    unlock();
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(store_meta_put(s, bad[i], "k", "v", 1, 0, NULL,
                                        on_put, &r), STORE_EINVAL);
        assert_int_equal(store_meta_put(s, "ns", bad[i], "v", 1, 0, NULL,
                                        on_put, &r), STORE_EINVAL);
        assert_int_equal(store_meta_get(s, "ns", bad[i], NULL, on_get, &r),
                         STORE_EINVAL);
        assert_int_equal(store_meta_delete(s, bad[i], "k", NULL, on_kv_done,
                                           &r), STORE_EINVAL);
        assert_int_equal(store_meta_list(s, bad[i], "", NULL, on_list, &r),
                         STORE_EINVAL);
    }
    /* An empty prefix is fine; a bad one is not. */
    assert_int_equal(store_meta_list(s, "ns", "a\n", NULL, on_list, &r),
                     STORE_EINVAL);
    assert_int_equal(store_meta_list(s, "ns", name, NULL, on_list, &r),
                     STORE_EINVAL);
    assert_int_equal(store_meta_put(s, name, "k", "v", 1, 0, NULL, on_put,
                                    &r), STORE_EINVAL);
    assert_int_equal(store_meta_put(s, "ns", name, "v", 1, 0, NULL, on_put,
                                    &r), STORE_EINVAL);
    assert_int_equal(store_meta_get(s, name, "k", NULL, on_get, &r),
                     STORE_EINVAL);
    assert_int_equal(store_meta_put(s, NULL, "k", "v", 1, 0, NULL, on_put,
                                    &r), STORE_EINVAL);
    assert_int_equal(store_meta_put(s, "ns", NULL, "v", 1, 0, NULL, on_put,
                                    &r), STORE_EINVAL);
    assert_int_equal(store_meta_put(s, "ns", "k", NULL, 1, 0, NULL, on_put,
                                    &r), STORE_EINVAL);
    assert_int_equal(store_meta_put(s, "ns", "k", big,
                                    STORE_META_VALUE_MAX + 1, 0, NULL, on_put,
                                    &r), STORE_EINVAL);
    assert_int_equal(r.calls, 0);
    lock();
    assert_int_equal(T.posts, posts);
    unlock();
    /* The largest names and value; spaces are printable; empty value. */
    name[STORE_META_NAME_MAX] = '\0';
    assert_int_equal(kv_put(s, name, name, big, STORE_META_VALUE_MAX, 0).err,
                     0);
    r = kv_get(s, name, name);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, STORE_META_VALUE_MAX);
    assert_memory_equal(r.value, big, STORE_META_VALUE_MAX);
    free(r.value);
    assert_int_equal(kv_put(s, "a b", " ", NULL, 0, 0).err, 0);
    r = kv_get(s, "a b", " ");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, 0);
    free(r.value);
    r = kv_list(s, name, name);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.entries[0].len, STORE_META_VALUE_MAX);
    store_meta_entries_free(r.entries, r.n);
    store_close(s);
    free(big);
}

static void test_meta_binary_values(void **state)
{
    static const unsigned char bin[] = {0x00, 0xff, 'a', 0x00, 0x80, '\n',
                                        0x00};
    store_t *s = open_default();
    kv_res_t r = kv_put(s, "bin", "k", bin, sizeof(bin), 0);

    assert_int_equal(r.err, 0);
    r = kv_get(s, "bin", "k");
    assert_int_equal(r.len, sizeof(bin));
    assert_memory_equal(r.value, bin, sizeof(bin));
    free(r.value);
    r = kv_list(s, "bin", "");
    assert_int_equal(r.n, 1);
    assert_int_equal(r.entries[0].len, sizeof(bin));
    assert_memory_equal(r.entries[0].value, bin, sizeof(bin));
    store_meta_entries_free(r.entries, r.n);
    store_close(s);
}

typedef struct loaded {
    size_t n;
    size_t stop_at;          /* `each` returns 7 at this call (0 = never) */
    char keys[8][8];
    unsigned char values[8][8];
    size_t lens[8];
    uint64_t revs[8];
} loaded_t;

static int load_each(void *ctx, const char *key, const unsigned char *value,
                     size_t len, uint64_t rev)
{
    loaded_t *l = ctx;

    if (l->n == 8 || strlen(key) >= 8 || len > 8)
        return -100;
    snprintf(l->keys[l->n], 8, "%s", key);
    memcpy(l->values[l->n], value, len);
    l->lens[l->n] = len;
    l->revs[l->n] = rev;
    return ++l->n == l->stop_at ? 7 : 0;
}

static void test_meta_load_sync_at_startup(void **state)
{
    store_cfg_t c = base_cfg();
    store_t *s = open_cfg(&c);
    loaded_t l = {0};
    size_t posts;

    kv_set(s, "keys", "k2", "two");
    kv_put(s, "keys", "k1", "o\0e", 3, 0);
    kv_set(s, "keys", "k3", "three");
    kv_set(s, "tenants", "t1", "x");
    assert_int_equal(kv_del(s, "keys", "k3"), 0);
    store_close(s);
    s = open_cfg(&c);
    lock();
    posts = T.posts;
    unlock();
    assert_int_equal(store_meta_load_sync(s, "keys", load_each, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.keys[0], "k1");
    assert_int_equal(l.lens[0], 3);
    assert_memory_equal(l.values[0], "o\0e", 3);
    assert_int_equal(l.revs[0], 2);
    assert_string_equal(l.keys[1], "k2");
    assert_memory_equal(l.values[1], "two", 3);
    assert_int_equal(l.revs[1], 1);
    /* `each` stops the load with its own value. */
    memset(&l, 0, sizeof(l));
    l.stop_at = 1;
    assert_int_equal(store_meta_load_sync(s, "keys", load_each, &l), 7);
    assert_int_equal(l.n, 1);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_meta_load_sync(s, "empty", load_each, &l), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(store_meta_load_sync(s, "", load_each, &l),
                     STORE_EINVAL);
    assert_int_equal(store_meta_load_sync(s, "bad\n", load_each, &l),
                     STORE_EINVAL);
    assert_int_equal(l.n, 0);
    /* Nothing went through post: no loop has to run. */
    lock();
    assert_int_equal(T.posts, posts);
    unlock();
    store_close(s);
}

enum { KV_THREADS = 4, KV_PUTS = 60, KV_INCRS = 15 };

typedef struct kv_thread {
    store_t *s;
    int id;
    kv_res_t puts[KV_PUTS];
    uint64_t incr_revs[KV_INCRS];
    int failed;
} kv_thread_t;

/* One compare-and-set increment of the shared counter, retried on
 * conflict. Its revision, or 0 on failure. */
static uint64_t kv_increment(store_t *s)
{
    for (;;) {
        kv_res_t g = {0}, w = {0};
        uint64_t v = 0, expect;

        if (store_meta_get(s, "ctr", "n", NULL, on_get, &g) || !kv_wait(&g))
            return 0;
        if (g.err == 0 && g.len == sizeof(v))
            memcpy(&v, g.value, sizeof(v));
        free(g.value);
        if (g.err && g.err != STORE_ENOTFOUND)
            return 0;
        expect = g.err ? STORE_META_MUST_NOT_EXIST : g.rev;
        v++;
        if (store_meta_put(s, "ctr", "n", &v, sizeof(v), expect, NULL, on_put,
                           &w) || !kv_wait(&w))
            return 0;
        if (w.err != STORE_ECONFLICT)
            return w.err ? 0 : w.rev;
    }
}

static void *kv_thread_main(void *p)
{
    kv_thread_t *t = p;

    for (int i = 0; i < KV_PUTS; i++) {
        char key[32];

        snprintf(key, sizeof(key), "t%d.k%03d", t->id, i);
        if (store_meta_put(t->s, "conc", key, key, strlen(key), 0, NULL,
                           on_put, &t->puts[i]))
            t->failed++;
    }
    for (int i = 0; i < KV_INCRS; i++)
        if (!(t->incr_revs[i] = kv_increment(t->s)))
            t->failed++;
    for (int i = 0; i < KV_PUTS; i++)
        if (!kv_wait(&t->puts[i]) || t->puts[i].err)
            t->failed++;
    return NULL;
}

static void test_meta_concurrent_puts(void **state)
{
    enum { MAXREV = KV_THREADS * (KV_PUTS + KV_INCRS) };
    store_t *s = open_default();
    kv_thread_t *t = calloc(KV_THREADS, sizeof(*t));
    bool *seen = calloc(MAXREV + 1, sizeof(*seen));
    pthread_t th[KV_THREADS];
    uint64_t v;
    kv_res_t r;

    assert_non_null(t);
    assert_non_null(seen);
    for (int i = 0; i < KV_THREADS; i++) {
        t[i].s = s;
        t[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, kv_thread_main, &t[i]),
                         0);
    }
    for (int i = 0; i < KV_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < KV_THREADS; i++) {
        uint64_t last = 0;

        assert_int_equal(t[i].failed, 0);
        /* Revisions are unique, and increase in each thread's order. */
        for (int j = 0; j < KV_PUTS; j++) {
            uint64_t rev = t[i].puts[j].rev;

            assert_true(rev > last && rev <= MAXREV);
            assert_false(seen[rev]);
            seen[rev] = true;
            last = rev;
        }
        for (int j = 0; j < KV_INCRS; j++) {
            uint64_t rev = t[i].incr_revs[j];

            assert_true(rev > 0 && rev <= MAXREV);
            assert_false(seen[rev]);
            seen[rev] = true;
        }
    }
    /* Every increment counted exactly once. */
    r = kv_get(s, "ctr", "n");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, sizeof(v));
    memcpy(&v, r.value, sizeof(v));
    free(r.value);
    assert_int_equal(v, KV_THREADS * KV_INCRS);
    r = kv_list(s, "conc", "");
    assert_int_equal(r.n, KV_THREADS * KV_PUTS);
    for (size_t i = 0; i < r.n; i++) {
        assert_int_equal(r.entries[i].len, strlen(r.entries[i].key));
        assert_memory_equal(r.entries[i].value, r.entries[i].key,
                            r.entries[i].len);
    }
    store_meta_entries_free(r.entries, r.n);
    store_close(s);
    free(t);
    free(seen);
}

/* Holds the writer inside a first commit while writes of both kinds
 * queue; they then share one transaction. */
static void test_meta_and_appends_one_batch(void **state)
{
    store_t *s = open_default();
    rec_t a[4] = {{0}};
    kv_res_t p[4] = {{0}};
    msg_t *m;

    T.commit_gate.armed = true;
    m = mk("t", "events.first", "1", clock_now_ms());
    assert_int_equal(store_append(s, m, NULL, on_append, &a[0]), 0);
    msg_unref(m);
    gate_wait_entered(&T.commit_gate);
    assert_int_equal(store_meta_put(s, "b", "k1", "1", 1,
                                    STORE_META_MUST_NOT_EXIST, NULL, on_put,
                                    &p[0]), 0);
    m = mk_dedup("t", "events.b", "z");
    assert_int_equal(store_append(s, m, NULL, on_append, &a[1]), 0);
    msg_unref(m);
    /* Sees the put queued before it, in the same transaction. */
    assert_int_equal(store_meta_put(s, "b", "k1", "2", 1,
                                    STORE_META_MUST_NOT_EXIST, NULL, on_put,
                                    &p[1]), 0);
    assert_int_equal(store_meta_put(s, "b", "k2", "3", 1, 0, NULL, on_put,
                                    &p[2]), 0);
    assert_int_equal(store_meta_delete(s, "b", "k2", NULL, on_kv_done, &p[3]),
                     0);
    m = mk_dedup("t", "events.b", "z");
    assert_int_equal(store_append(s, m, NULL, on_append, &a[2]), 0);
    msg_unref(m);
    m = mk("t", "events.b", "last", clock_now_ms());
    assert_int_equal(store_append(s, m, NULL, on_append, &a[3]), 0);
    msg_unref(m);
    gate_open(&T.commit_gate);
    wait_done(4);
    for (int i = 0; i < 4; i++)
        assert_true(kv_wait(&p[i]));
    assert_int_equal(a[1].seq, 2);
    assert_int_equal(a[2].seq, 2);
    assert_int_equal(a[2].dup, 1);
    assert_int_equal(a[3].seq, 3);
    assert_int_equal(p[0].err, 0);
    assert_int_equal(p[0].rev, 1);
    assert_int_equal(p[1].err, STORE_ECONFLICT);
    assert_int_equal(p[1].rev, 1);
    assert_int_equal(p[2].rev, 2);
    assert_int_equal(p[3].err, 0);
    /* Two transactions in all. */
    lock();
    assert_int_equal(T.latency_calls, 2);
    assert_int_equal(T.committed, 3);
    assert_true(T.completion_after_commit);
    unlock();
    assert_int_equal(stats(s).commits, 2);
    expect_kv(s, "b", "k1", "1", 1);
    assert_int_equal(kv_get(s, "b", "k2").err, STORE_ENOTFOUND);
    store_close(s);
}

/* A batch that fails takes its metadata writes and repeats down with it;
 * their revisions are handed out again. */
static void test_failed_batch_fails_meta_and_dedup(void **state)
{
    store_t *s = open_default();
    rec_t a[3] = {{0}};
    kv_res_t p = {0};
    msg_t *m;

    assert_int_equal(append_dedup(s, "t", "events.ok", "k").seq, 1);
    db_exec("CREATE TRIGGER fail_inserts BEFORE INSERT ON messages"
            " WHEN NEW.subject = 'events.fail'"
            " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    T.commit_gate.armed = true;
    m = mk("t", "events.ok", "gate", clock_now_ms());
    assert_int_equal(store_append(s, m, NULL, on_append, &a[0]), 0);
    msg_unref(m);
    gate_wait_entered(&T.commit_gate);
    m = mk_dedup("t", "events.ok", "k");
    assert_int_equal(store_append(s, m, NULL, on_append, &a[1]), 0);
    msg_unref(m);
    assert_int_equal(store_meta_put(s, "f", "k", "v", 1, 0, NULL, on_put, &p),
                     0);
    m = mk("t", "events.fail", "boom", clock_now_ms());
    assert_int_equal(store_append(s, m, NULL, on_append, &a[2]), 0);
    msg_unref(m);
    gate_open(&T.commit_gate);
    wait_done(4);
    assert_true(kv_wait(&p));
    assert_int_equal(a[0].err, 0);
    assert_int_equal(a[1].err, STORE_EIO);
    assert_int_equal(a[1].seq, 0);
    assert_int_equal(a[1].dup, 0);
    assert_int_equal(p.err, STORE_EIO);
    assert_int_equal(p.rev, 0);
    assert_int_equal(a[2].err, STORE_EIO);
    assert_int_equal(kv_get(s, "f", "k").err, STORE_ENOTFOUND);
    assert_int_equal(stats(s).duplicates, 0);
    db_exec("DROP TRIGGER fail_inserts");
    assert_int_equal(kv_set(s, "f", "k", "v"), 1);
    assert_int_equal(append_dedup(s, "t", "events.ok", "k").dup, 1);
    store_close(s);
}

static void test_close_answers_queued_meta(void **state)
{
    store_cfg_t c = base_cfg();
    store_t *s;
    kv_res_t put = {0}, del = {0};
    msg_t *m;
    rec_t a = {0};

    s = open_cfg(&c);
    T.commit_gate.armed = true;
    m = mk("t", "events.c", "1", clock_now_ms());
    assert_int_equal(store_append(s, m, NULL, on_append, &a), 0);
    msg_unref(m);
    gate_wait_entered(&T.commit_gate);
    assert_int_equal(store_meta_put(s, "n", "k", "v", 1, 0, NULL, on_put,
                                    &put), 0);
    assert_int_equal(store_meta_delete(s, "n", "nope", NULL, on_kv_done,
                                       &del), 0);
    gate_open(&T.commit_gate);
    store_close(s);
    /* Queued writes were committed and answered before close returned. */
    assert_int_equal(put.calls, 1);
    assert_int_equal(put.err, 0);
    assert_int_equal(del.calls, 1);
    assert_int_equal(del.err, STORE_ENOTFOUND);
    s = open_cfg(&c);
    expect_kv(s, "n", "k", "v", put.rev);
    store_close(s);
}

/* A file written by schema 1 (no dedup column, no meta_kv) is upgraded. */
static void test_migrates_schema_1(void **state)
{
    const char *all[] = {">"};
    store_cfg_t c = base_cfg();
    store_t *s = open_cfg(&c);
    result_t r;

    append_ok(s, "t", "events.old", "kept");
    store_close(s);
    db_exec("DROP INDEX messages_dedup;"
            "ALTER TABLE messages DROP COLUMN dedup;"
            "DROP TABLE meta_kv;"
            "DELETE FROM meta WHERE key = 'last_rev';"
            "PRAGMA user_version = 1");
    s = open_cfg(&c);
    r = read_wait(s, "t", all, 1, 0, 10, 0);
    assert_int_equal(r.n, 1);
    assert_null(r.msgs[0]->dedup);
    store_msgs_free(r.msgs, r.n);
    assert_int_equal(append_dedup(s, "t", "events.new", "d").seq, 2);
    assert_int_equal(append_dedup(s, "t", "events.new", "d").dup, 1);
    assert_int_equal(kv_set(s, "n", "k", "v"), 1);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T_(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T_(test_open_close_empty),
        T_(test_open_rejects_bad_config),
        T_(test_open_dir_locked),
        T_(test_open_refuses_newer_schema),
        T_(test_open_copies_config),
        T_(test_roundtrip_all_fields),
        T_(test_concurrent_appends_unique_seqs),
        T_(test_on_commit_before_completions),
        T_(test_group_commit_batches),
        T_(test_group_commit_respects_max_batch),
        T_(test_commit_latency_hook),
        T_(test_append_rejects_invalid),
        T_(test_close_drains_queued_appends),
        T_(test_close_answers_queued_reads),
        T_(test_reopen_recovers_sequences),
        T_(test_recover_seq_ahead_of_meta),
        T_(test_fsync_normal_mode),
        T_(test_kill9_keeps_acknowledged),
        T_(test_retention_max_msgs),
        T_(test_retention_max_msgs_many_chunks),
        T_(test_retention_max_bytes),
        T_(test_retention_max_age),
        T_(test_retention_all_expired_keeps_sequences),
        T_(test_retention_per_stream_and_orphans),
        T_(test_retention_periodic),
        T_(test_read_patterns),
        T_(test_read_tenant_isolation),
        T_(test_read_scan_cap_and_paging),
        T_(test_read_limit_and_at_end),
        T_(test_literal_fast_path_equals_scan),
        T_(test_read_rejects_invalid),
        T_(test_seq_before_time),
        T_(test_ping_and_failed_commit),
        T_(test_stream_for),
        T_(test_dedup_second_append_returns_first),
        T_(test_dedup_within_one_batch),
        T_(test_dedup_scopes_do_not_collide),
        T_(test_dedup_survives_reopen),
        T_(test_dedup_key_free_after_retention),
        T_(test_dedup_limits),
        T_(test_meta_put_get_delete),
        T_(test_meta_list_prefix),
        T_(test_meta_cas),
        T_(test_meta_revisions_survive_reopen),
        T_(test_meta_limits),
        T_(test_meta_binary_values),
        T_(test_meta_load_sync_at_startup),
        T_(test_meta_concurrent_puts),
        T_(test_meta_and_appends_one_batch),
        T_(test_failed_batch_fails_meta_and_dedup),
        T_(test_close_answers_queued_meta),
        T_(test_migrates_schema_1),
#undef T_
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
