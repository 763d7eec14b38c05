/*
 * store_sqlite.c - the embedded store: one SQLite database in WAL mode, one
 * writer thread that group-commits appends, a few reader threads.
 *
 * Files. <dir>/switchboard.db (with its -wal and -shm), and
 * <dir>/switchboard.lock, flock()ed while the store is open so that a second
 * process on the same directory fails to open instead of handing out the
 * same sequences twice. The directory is created (0700) when missing.
 *
 * Schema. PRAGMA user_version holds the schema version; sq_migrations[v]
 * upgrades version v to v + 1, all steps in one transaction at open; a file
 * from a newer version is refused.
 *   messages(seq INTEGER PRIMARY KEY, tenant, subject, stream, time_ms,
 *            event, meta, headers, content_type, payload_kind, payload, size,
 *            dedup)
 *     size = payload + headers + meta bytes; max_bytes counts it.
 *   Each index serves one query:
 *     (tenant, subject, seq)  reads whose patterns are all literal subjects
 *     (tenant, seq)           reads with wildcards: walks one tenant's rows in
 *                             order, so max_scan bounds the work even when
 *                             other tenants own most of the table
 *     (stream, seq)           retention by count and by bytes (oldest first)
 *     (stream, time_ms)       retention by age, without visiting the rows of
 *                             streams that keep data longer
 *     (time_ms)               store_seq_before_time
 *     (tenant, stream, dedup) UNIQUE, partial (dedup IS NOT NULL): finds the
 *                             message an append with a dedup key repeats;
 *                             rows without a key cost it nothing
 *   meta_kv(ns, key, value, rev, updated_ms), PRIMARY KEY (ns, key): the
 *     metadata namespaces; a list is a range of the key, [prefix,
 *     prefix "\x7f"), exact because keys are printable ASCII.
 *   meta(key, value): 'last_seq' and 'last_rev', each written in the same
 *   transaction as every batch that used one, so sequences and revisions
 *   keep increasing across restarts even after every row using them was
 *   deleted. Open recovers each as max(meta, the highest in use), and the
 *   row and byte counts per stream (one GROUP BY), which the writer then
 *   maintains.
 *
 * Writer. One thread owns the read-write connection. Callers only lock,
 * enqueue and signal; the queue is unbounded (back-pressure belongs to the
 * ingress edges, which can refuse work; a cap here would only move the
 * problem). The writer takes either one control op (ping, expire) or up to
 * max_batch consecutive writes (appends, metadata puts and deletes), and
 * commits them in ONE transaction (BEGIN IMMEDIATE, reused statements per
 * write, last_seq / last_rev, COMMIT): whatever queues while a commit runs
 * goes into the next one, so the cost of a sync is shared. Sequences and
 * revisions are assigned in queue order just before each write. An append
 * with a dedup key first looks the key up inside the transaction, so it
 * also finds a repeat earlier in the same batch; a repeat is answered with
 * the stored sequence and writes nothing. A metadata compare-and-set reads
 * the current revision inside the transaction too; a conflict fails only
 * that put. After COMMIT returns, on_commit sees the messages stored, then
 * each completion is posted. A failed batch is rolled back, its sequences
 * and revisions are handed out again, each write in it completes with
 * STORE_EIO, and the store reports unhealthy until a later write
 * transaction commits. The `commits` statistic counts committed batches
 * that stored a message, so appended/commits is the mean batch size.
 *
 * Durability. synchronous=FULL syncs the WAL at every COMMIT; NORMAL leaves
 * the WAL to the OS and syncs it only at checkpoints. Completions are posted
 * only after COMMIT returned, so an acknowledged append survives kill -9 in
 * both modes and power loss in FULL mode.
 *
 * Retention. A pass runs at open, then every retention_interval_ms, and on
 * store_expire_now (which restarts a running pass and is answered when that
 * pass ends). Per configured stream: rows older than max_age_ms (found
 * through (stream, time_ms)); then, while the stream holds more than
 * max_msgs rows or max_bytes bytes, its oldest rows (through (stream, seq)).
 * The writer keeps each stream's row and byte counts (GROUP BY at open,
 * then updated with every commit), so the cost of a pass is proportional to
 * what it deletes, not to what the stream keeps. Deletions go in chunks of
 * at most SQ_EXPIRE_CHUNK rows, one transaction each, alternating with
 * append batches, so a large backlog never stalls ingress. A row belongs to
 * the stream named when it was appended: rows whose stream is no longer
 * configured are kept (a config edit never silently drops data) until a
 * stream of that name is configured again.
 *
 * Readers. `readers` threads, each with its own read-only connection, serve
 * reads, store_seq_before_time and metadata gets and lists from one shared
 * queue. A read walks one or more cursors in sequence order inside one read
 * transaction (one snapshot). With a wildcard among the patterns there is
 * one cursor, over the tenant's rows, and patterns are matched in C; when
 * every pattern is a literal subject there is one cursor per subject over
 * (tenant, subject, seq), merged by sequence, so only matching rows are read
 * (a single `subject IN (...)` query would make SQLite either scan the
 * tenant or sort every match on each page). Each cursor asks for one row
 * more than the read may examine: whether such a row exists is what makes
 * `at_end` exact. store_meta_load_sync is a list whose answer is handed
 * back through a condition variable instead of cfg->post, since the loops
 * it would post to are not running yet.
 *
 * Close. New calls fail with STORE_ECLOSED; the writer commits and answers
 * everything already queued; reads still queued are answered STORE_ECLOSED.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/subject.h"
#include "ops/log.h"

#define SQ_DB_FILE "switchboard.db"
#define SQ_LOCK_FILE "switchboard.lock"
#define SQ_PATH_MAX 4096
#define SQ_SCHEMA_VERSION 2
#define SQ_DEFAULT_BATCH 256
#define SQ_MAX_BATCH 65536
#define SQ_DEFAULT_READERS 2
#define SQ_MAX_READERS 64
#define SQ_DEFAULT_RETENTION_MS (5 * 60 * 1000)
#define SQ_DEFAULT_SCAN 10000
#define SQ_MAX_SCAN 10000000
#define SQ_MAX_PATTERNS 1024
#define SQ_LITERAL_MAX 16        /* most subjects read by merged cursors */
#define SQ_BUSY_TIMEOUT_MS 5000
#define SQ_EXPIRE_CHUNK 1000

enum sq_kind {
    SQ_APPEND, SQ_KV_PUT, SQ_KV_DEL,        /* writes: batched together */
    SQ_PING, SQ_EXPIRE,                     /* writer control ops */
    SQ_READ, SQ_SEQ_BEFORE, SQ_KV_GET, SQ_KV_LIST   /* readers */
};

/* A read: the query (copied) and, once run, its answer. */
typedef struct sq_read {
    const char *tenant;
    const char **patterns;
    size_t npatterns;
    uint64_t after_seq;
    size_t limit;
    size_t max_scan;
    bool literal;            /* no pattern has a wildcard */
    msg_t **msgs;
    size_t n, cap;
    uint64_t scanned_to;
    bool at_end;
} sq_read_t;

/* A metadata request: the names and the value to put are copies in the
 * op's own allocation; a reader fills in the answer of a get or list. */
typedef struct sq_kv {
    const char *ns;
    const char *key;         /* or a list's prefix */
    const char *upper;       /* SQ_KV_LIST: prefix "\x7f", the range's end */
    const unsigned char *value;  /* SQ_KV_PUT */
    size_t len;              /* SQ_KV_PUT: of value; SQ_KV_GET: of got */
    uint64_t expect_rev;     /* SQ_KV_PUT */
    uint64_t rev;            /* SQ_KV_PUT, SQ_KV_GET: the answer */
    unsigned char *got;      /* SQ_KV_GET: the value read (malloc'd) */
    store_meta_entry_t *entries;  /* SQ_KV_LIST: the answer */
    size_t n, cap, bytes;
} sq_kv_t;

/* Where store_meta_load_sync waits for its answer. */
typedef struct sq_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} sq_waiter_t;

/* One queued request. It is also its own completion: posted to the caller's
 * loop, where sq_complete runs the callback and frees it (or, with a
 * waiter, handed back to the thread blocked in store_meta_load_sync). */
typedef struct sq_op {
    list_node_t node;
    enum sq_kind kind;
    int err;
    void *target;
    void *arg;
    union {
        store_append_cb append;
        store_done_cb done;
        store_read_cb read;
        store_seq_cb seq;
        store_meta_put_cb put;
        store_meta_get_cb get;
        store_meta_list_cb list;
    } cb;
    sq_waiter_t *waiter;
    msg_t *m;                /* SQ_APPEND: the store's reference */
    size_t stream;           /* SQ_APPEND: index of m's stream */
    int64_t size;            /* SQ_APPEND: sq_msg_size(m) */
    int64_t time_ms;         /* SQ_SEQ_BEFORE: the question */
    uint64_t seq;            /* SQ_SEQ_BEFORE: the answer */
    union {
        sq_read_t rd;        /* SQ_READ */
        sq_kv_t kv;          /* SQ_KV_* */
    };
} sq_op_t;

enum sq_wstmt {
    SQ_W_BEGIN, SQ_W_COMMIT, SQ_W_ROLLBACK, SQ_W_INSERT, SQ_W_DEDUP,
    SQ_W_LAST_SEQ, SQ_W_LAST_REV, SQ_W_AGE, SQ_W_OLDEST, SQ_W_DELETE,
    SQ_W_KV_REV, SQ_W_KV_PUT, SQ_W_KV_DEL, SQ_W_COUNT
};

static const char *const sq_wsql[SQ_W_COUNT] = {
    [SQ_W_BEGIN] = "BEGIN IMMEDIATE",
    [SQ_W_COMMIT] = "COMMIT",
    [SQ_W_ROLLBACK] = "ROLLBACK",
    [SQ_W_INSERT] =
        "INSERT INTO messages(seq, tenant, subject, stream, time_ms, event,"
        " meta, headers, content_type, payload_kind, payload, size, dedup)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [SQ_W_DEDUP] = "SELECT seq FROM messages"
                   " WHERE tenant = ?1 AND stream = ?2 AND dedup = ?3",
    [SQ_W_LAST_SEQ] =
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_seq', ?1)",
    [SQ_W_LAST_REV] =
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_rev', ?1)",
    [SQ_W_AGE] = "SELECT seq, size FROM messages"
                 " WHERE stream = ?1 AND time_ms < ?2 LIMIT ?3",
    [SQ_W_OLDEST] = "SELECT seq, size FROM messages WHERE stream = ?1"
                    " ORDER BY seq LIMIT ?2",
    [SQ_W_DELETE] = "DELETE FROM messages WHERE seq = ?1",
    [SQ_W_KV_REV] = "SELECT rev FROM meta_kv WHERE ns = ?1 AND key = ?2",
    [SQ_W_KV_PUT] =
        "INSERT INTO meta_kv(ns, key, value, rev, updated_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(ns, key) DO UPDATE SET"
        " value = excluded.value, rev = excluded.rev,"
        " updated_ms = excluded.updated_ms",
    [SQ_W_KV_DEL] = "DELETE FROM meta_kv WHERE ns = ?1 AND key = ?2",
};

static const char *const sq_migrations[SQ_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE messages("
    " seq INTEGER PRIMARY KEY, tenant TEXT NOT NULL, subject TEXT NOT NULL,"
    " stream TEXT NOT NULL, time_ms INTEGER NOT NULL, event TEXT, meta TEXT,"
    " headers TEXT, content_type TEXT, payload_kind INTEGER NOT NULL,"
    " payload BLOB, size INTEGER NOT NULL);"
    "CREATE INDEX messages_tenant_subject ON messages(tenant, subject, seq);"
    "CREATE INDEX messages_tenant ON messages(tenant, seq);"
    "CREATE INDEX messages_stream ON messages(stream, seq);"
    "CREATE INDEX messages_stream_time ON messages(stream, time_ms);"
    "CREATE INDEX messages_time ON messages(time_ms);"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER);"
    "INSERT INTO meta(key, value) VALUES ('last_seq', 0);",
    /* 1 -> 2: delivery-id dedupe, metadata namespaces */
    "ALTER TABLE messages ADD COLUMN dedup TEXT;"
    "CREATE UNIQUE INDEX messages_dedup ON messages(tenant, stream, dedup)"
    " WHERE dedup IS NOT NULL;"
    "CREATE TABLE meta_kv(ns TEXT NOT NULL, key TEXT NOT NULL,"
    " value BLOB NOT NULL, rev INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    " PRIMARY KEY(ns, key));"
    "INSERT INTO meta(key, value) VALUES ('last_rev', 0);",
};

#define SQ_COLS "seq, tenant, subject, time_ms, event, meta, headers," \
                " content_type, payload_kind, payload, dedup"
enum { SQ_C_SEQ, SQ_C_TENANT, SQ_C_SUBJECT, SQ_C_TIME, SQ_C_EVENT, SQ_C_META,
       SQ_C_HEADERS, SQ_C_CTYPE, SQ_C_KIND, SQ_C_PAYLOAD, SQ_C_DEDUP };

#define SQ_BEFORE_SQL \
    "SELECT COALESCE((SELECT seq - 1 FROM messages WHERE time_ms >= ?1" \
    " ORDER BY time_ms, seq LIMIT 1)," \
    " (SELECT value FROM meta WHERE key = 'last_seq'), 0)"

#define SQ_KV_GET_SQL \
    "SELECT value, rev FROM meta_kv WHERE ns = ?1 AND key = ?2"
#define SQ_KV_LIST_SQL \
    "SELECT key, value, rev, updated_ms FROM meta_kv" \
    " WHERE ns = ?1 AND key >= ?2 AND key < ?3 ORDER BY key"

struct sq;

typedef struct sq_reader {
    struct sq *sq;
    sqlite3 *db;
    sqlite3_stmt *scan;      /* a tenant's rows in order */
    sqlite3_stmt *lit[SQ_LITERAL_MAX];  /* one subject's rows (lazily) */
    sqlite3_stmt *before;    /* store_seq_before_time */
    sqlite3_stmt *kv_get, *kv_list;
    sqlite3_stmt *begin, *commit;
    pthread_t thread;
    bool started;
} sq_reader_t;

enum sq_phase { SQ_PHASE_AGE, SQ_PHASE_MSGS, SQ_PHASE_BYTES, SQ_PHASE_END };

/* What one configured stream holds; writer thread only. */
typedef struct sq_count {
    int64_t msgs;
    int64_t bytes;
} sq_count_t;

/* The retention pass in progress; writer thread only. */
typedef struct sq_retention {
    bool active;
    bool turn;               /* a chunk goes before the next batch */
    size_t stream;           /* index into the configured streams */
    enum sq_phase phase;
    int err;
    uint64_t next_ms;        /* monotonic time of the next periodic pass */
    list_node_t waiters;     /* store_expire_now ops, answered at the end */
    uint64_t seqs[SQ_EXPIRE_CHUNK];
} sq_retention_t;

typedef struct sq {
    store_t *store;
    const store_stream_cfg_t *streams;  /* borrowed from store.c */
    size_t nstreams;
    store_post_fn post;
    store_commit_fn on_commit;
    void (*on_latency)(void *ctx, uint64_t ns);
    void *ctx;
    enum store_fsync fsync;
    size_t max_batch;
    int64_t retention_ms;
    int lock_fd;
    bool sync_ready;

    pthread_mutex_t wlock;   /* guards wq, wstop */
    pthread_cond_t wcond;
    list_node_t wq;
    bool wstop;
    pthread_t writer;
    bool writer_started;
    /* writer thread only (and open/close) */
    sqlite3 *db;
    sqlite3_stmt *ws[SQ_W_COUNT];
    uint64_t last_seq;
    uint64_t last_rev;
    msg_t **batch;
    sq_count_t *counts;      /* per configured stream */
    sq_retention_t ret;

    pthread_mutex_t rlock;   /* guards rq, rstop */
    pthread_cond_t rcond;
    list_node_t rq;
    bool rstop;
    sq_reader_t *readers;
    int nreaders;

    pthread_mutex_t slock;   /* guards stats */
    store_stats_t stats;
} sq_t;

/* One JSON log line, like every other (what is a literal). */
static void sq_log(const char *what, sqlite3 *db)
{
    LOG_ERROR("store error", "\"what\":\"%s\",\"error\":\"%s\"", what,
              log_str(db ? sqlite3_errmsg(db) : "failed", (size_t)-1));
}

static void sq_seterr(char *err, size_t errlen, const char *what, sqlite3 *db)
{
    snprintf(err, errlen, "store: %s%s%s", what, db ? ": " : "",
             db ? sqlite3_errmsg(db) : "");
}

/* --- completions --------------------------------------------------------- */

static sq_op_t *sq_op_new(enum sq_kind kind, size_t extra, void *target,
                          void *arg)
{
    sq_op_t *op = calloc(1, sizeof(*op) + extra);

    if (!op)
        return NULL;
    list_init(&op->node);
    op->kind = kind;
    op->target = target;
    op->arg = arg;
    return op;
}

/* Runs on the caller's loop (via post): the callback, then the op is gone.
 * Read results pass to the callback. */
static void sq_complete(void *arg)
{
    sq_op_t *op = arg;

    switch (op->kind) {
    case SQ_APPEND:
        op->cb.append(op->arg, op->err, op->m);
        msg_unref(op->m);
        break;
    case SQ_PING:
    case SQ_EXPIRE:
        op->cb.done(op->arg, op->err);
        break;
    case SQ_READ:
        op->cb.read(op->arg, op->err, op->rd.msgs, op->rd.n,
                    op->rd.scanned_to, op->rd.at_end);
        break;
    case SQ_SEQ_BEFORE:
        op->cb.seq(op->arg, op->err, op->seq);
        break;
    case SQ_KV_PUT:
        op->cb.put(op->arg, op->err, op->kv.rev);
        break;
    case SQ_KV_DEL:
        op->cb.done(op->arg, op->err);
        break;
    case SQ_KV_GET:
        op->cb.get(op->arg, op->err, op->kv.got, op->kv.len, op->kv.rev);
        free(op->kv.got);
        break;
    case SQ_KV_LIST:
        op->cb.list(op->arg, op->err, op->kv.entries, op->kv.n);
        break;
    }
    free(op);
}

/* Answers op: posts its completion, or wakes the thread waiting for it. */
static void sq_post(sq_t *sq, sq_op_t *op, int err)
{
    sq_waiter_t *w = op->waiter;

    op->err = err;
    if (!w) {
        sq->post(op->target, sq_complete, op);
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static sq_op_t *sq_pop(list_node_t *q)
{
    sq_op_t *op;

    if (list_empty(q))
        return NULL;
    op = container_of(q->next, sq_op_t, node);
    list_remove(&op->node);
    return op;
}

/* Queues op for the writer (writer == true) or the readers. STORE_ECLOSED
 * once close has begun, in which case the caller still owns op. */
static int sq_push(sq_t *sq, sq_op_t *op, bool writer)
{
    pthread_mutex_t *lock = writer ? &sq->wlock : &sq->rlock;
    int rc = 0;

    pthread_mutex_lock(lock);
    if (writer ? sq->wstop : sq->rstop) {
        rc = STORE_ECLOSED;
    } else if (writer) {
        list_insert_tail(&sq->wq, &op->node);
        pthread_cond_signal(&sq->wcond);
    } else {
        list_insert_tail(&sq->rq, &op->node);
        pthread_cond_signal(&sq->rcond);
    }
    pthread_mutex_unlock(lock);
    return rc;
}

/* --- statements ------------------------------------------------------------ */

/* Steps st once and resets it. 0 when it ran (row or done), -1 on error. */
static int sq_run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* Prepares a statement kept for the life of the connection. */
static int sq_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out)
{
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
                              NULL) == SQLITE_OK ? 0 : -1;
}

static int sq_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* Runs a query returning one row and copies its first n integer columns. */
static int sq_query_i64(sqlite3 *db, const char *sql, int64_t *out, int n)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_step(st) != SQLITE_ROW)
        goto out;
    for (int i = 0; i < n; i++)
        out[i] = sqlite3_column_int64(st, i);
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

static int sq_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
             : sqlite3_bind_null(st, i);
}

/* Binds a blob that may be empty (a NULL pointer would bind SQL NULL). */
static int sq_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t len)
{
    return len ? sqlite3_bind_blob64(st, i, p, len, SQLITE_STATIC)
               : sqlite3_bind_zeroblob(st, i, 0);
}

static int64_t sq_msg_size(const msg_t *m)
{
    size_t n = m->payload_len;

    n += m->headers ? strlen(m->headers) : 0;
    n += m->meta ? strlen(m->meta) : 0;
    return (int64_t)n;
}

/* --- opening --------------------------------------------------------------- */

/* Creates dir and its missing parents, each 0700. */
static int sq_mkdirs(const char *dir, char *err, size_t errlen)
{
    char path[SQ_PATH_MAX];
    size_t len = strlen(dir);
    struct stat sb;

    if (len == 0 || len >= sizeof(path)) {
        sq_seterr(err, errlen, "bad data directory", NULL);
        return -1;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        char c = path[i];

        if (c != '/' && c != '\0')
            continue;
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "store: mkdir %s: %s", path,
                     strerror(errno));
            return -1;
        }
        path[i] = c;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "store: %s is not a directory", dir);
        return -1;
    }
    return 0;
}

static int sq_path(buf_t *b, const char *dir, const char *file)
{
    buf_init(b, SQ_PATH_MAX);
    return buf_printf(b, "%s/%s", dir, file);
}

/* Takes the directory's lock file, so one store at a time owns it. */
static int sq_lock_dir(sq_t *sq, const char *dir, char *err, size_t errlen)
{
    buf_t path;
    int rc = -1;

    if (sq_path(&path, dir, SQ_LOCK_FILE)) {
        sq_seterr(err, errlen, "data directory path too long", NULL);
        goto out;
    }
    sq->lock_fd = open(path.data, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sq->lock_fd < 0) {
        snprintf(err, errlen, "store: %s: %s", path.data, strerror(errno));
        goto out;
    }
    if (flock(sq->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "store: %s is in use by another store", dir);
        goto out;
    }
    rc = 0;
out:
    buf_free(&path);
    return rc;
}

static int sq_open_db(const char *dir, bool readonly, sqlite3 **db)
{
    int flags = SQLITE_OPEN_NOMUTEX |
                (readonly ? SQLITE_OPEN_READONLY
                          : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    buf_t path;
    int rc;

    *db = NULL;
    if (sq_path(&path, dir, SQ_DB_FILE)) {
        buf_free(&path);
        return -1;
    }
    rc = sqlite3_open_v2(path.data, db, flags, NULL);
    buf_free(&path);
    if (rc != SQLITE_OK)
        return -1;
    sqlite3_extended_result_codes(*db, 1);
    return sqlite3_busy_timeout(*db, SQ_BUSY_TIMEOUT_MS) == SQLITE_OK ? 0 : -1;
}

static int sq_pragmas(sq_t *sq)
{
    sqlite3_stmt *st = NULL;
    const char *sync = sq->fsync == STORE_FSYNC_NORMAL
                           ? "PRAGMA synchronous=NORMAL"
                           : "PRAGMA synchronous=FULL";
    const char *mode;
    int rc = -1;

    if (sqlite3_prepare_v2(sq->db, "PRAGMA journal_mode=WAL", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto out;
    mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcasecmp(mode, "wal") != 0)
        goto out;
    if (sq_exec(sq->db, sync) || sq_exec(sq->db, "PRAGMA foreign_keys=OFF"))
        goto out;
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

/* Brings the schema to SQ_SCHEMA_VERSION in one transaction. */
static int sq_migrate(sqlite3 *db, char *err, size_t errlen)
{
    char sql[64];
    int64_t v = 0;

    if (sq_exec(db, "BEGIN IMMEDIATE"))
        goto fail;
    if (sq_query_i64(db, "PRAGMA user_version", &v, 1))
        goto fail;
    if (v < 0 || v > SQ_SCHEMA_VERSION) {
        sq_exec(db, "ROLLBACK");
        snprintf(err, errlen, "store: database schema %lld is newer than %d",
                 (long long)v, SQ_SCHEMA_VERSION);
        return -1;
    }
    for (; v < SQ_SCHEMA_VERSION; v++)
        if (sq_exec(db, sq_migrations[v]))
            goto fail;
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", SQ_SCHEMA_VERSION);
    if (sq_exec(db, sql) || sq_exec(db, "COMMIT"))
        goto fail;
    return 0;
fail:
    sq_seterr(err, errlen, "schema", db);
    if (!sqlite3_get_autocommit(db))
        sq_exec(db, "ROLLBACK");
    return -1;
}

/* Loads the per-stream and total row and byte counts. */
static int sq_load_counts(sq_t *sq)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(sq->db, "SELECT stream, COUNT(*), SUM(size)"
                                   " FROM messages GROUP BY stream",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int64_t msgs = sqlite3_column_int64(st, 1);
        int64_t bytes = sqlite3_column_int64(st, 2);

        sq->stats.messages += (uint64_t)msgs;
        sq->stats.bytes += (uint64_t)bytes;
        for (size_t i = 0; name && i < sq->nstreams; i++) {
            if (strcmp(sq->streams[i].name, name) == 0) {
                sq->counts[i].msgs = msgs;
                sq->counts[i].bytes = bytes;
            }
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_save_counter(sq_t *sq, enum sq_wstmt save, uint64_t v)
{
    sqlite3_bind_int64(sq->ws[save], 1, (sqlite3_int64)v);
    return sq_run(sq->ws[save]);
}

/* Recovers one counter of the meta table: `sql` yields its row (-1 when
 * missing) and the highest value in use; the larger wins and is written
 * back (with `save`) when the row was behind. */
static int sq_recover_counter(sq_t *sq, const char *sql, enum sq_wstmt save,
                              uint64_t *out)
{
    int64_t v[2];

    if (sq_query_i64(sq->db, sql, v, 2))
        return -1;
    *out = (uint64_t)(v[1] > v[0] ? v[1] : v[0]);
    return v[0] == (int64_t)*out ? 0 : sq_save_counter(sq, save, *out);
}

/* Recovers last_seq, last_rev and the stream counters. */
static int sq_recover(sq_t *sq)
{
    if (sq_recover_counter(sq,
                           "SELECT COALESCE((SELECT value FROM meta"
                           " WHERE key = 'last_seq'), -1),"
                           " COALESCE((SELECT MAX(seq) FROM messages), 0)",
                           SQ_W_LAST_SEQ, &sq->last_seq) ||
        sq_recover_counter(sq,
                           "SELECT COALESCE((SELECT value FROM meta"
                           " WHERE key = 'last_rev'), -1),"
                           " COALESCE((SELECT MAX(rev) FROM meta_kv), 0)",
                           SQ_W_LAST_REV, &sq->last_rev))
        return -1;
    sq->stats.last_seq = sq->last_seq;
    sq->stats.healthy = true;
    return sq_load_counts(sq);
}

static int sq_open_writer(sq_t *sq, const char *dir, char *err, size_t errlen)
{
    if (sq_open_db(dir, false, &sq->db)) {
        sq_seterr(err, errlen, "open database", sq->db);
        return -1;
    }
    if (sq_pragmas(sq)) {
        sq_seterr(err, errlen, "configure database", sq->db);
        return -1;
    }
    if (sq_migrate(sq->db, err, errlen))
        return -1;
    for (int i = 0; i < SQ_W_COUNT; i++) {
        if (sq_prepare(sq->db, sq_wsql[i], &sq->ws[i])) {
            sq_seterr(err, errlen, "prepare", sq->db);
            return -1;
        }
    }
    if (sq_recover(sq)) {
        sq_seterr(err, errlen, "recover", sq->db);
        return -1;
    }
    return 0;
}

/* Prepares the SELECT of a read: tenant ?1, after_seq ?2, row limit ?3 and,
 * for one subject's rows, the subject ?4. */
static int sq_prepare_select(sqlite3 *db, bool one_subject,
                             sqlite3_stmt **out)
{
    const char *sql = one_subject
        ? "SELECT " SQ_COLS " FROM messages WHERE tenant = ?1 AND"
          " subject = ?4 AND seq > ?2 ORDER BY seq LIMIT ?3"
        : "SELECT " SQ_COLS " FROM messages WHERE tenant = ?1 AND"
          " seq > ?2 ORDER BY seq LIMIT ?3";

    return sq_prepare(db, sql, out);
}

static int sq_open_reader(sq_t *sq, sq_reader_t *r, const char *dir,
                          char *err, size_t errlen)
{
    r->sq = sq;
    if (sq_open_db(dir, true, &r->db)) {
        sq_seterr(err, errlen, "open reader", r->db);
        return -1;
    }
    if (sq_prepare_select(r->db, false, &r->scan) ||
        sq_prepare_select(r->db, true, &r->lit[0]) ||
        sq_prepare(r->db, SQ_BEFORE_SQL, &r->before) ||
        sq_prepare(r->db, SQ_KV_GET_SQL, &r->kv_get) ||
        sq_prepare(r->db, SQ_KV_LIST_SQL, &r->kv_list) ||
        sq_prepare(r->db, "BEGIN", &r->begin) ||
        sq_prepare(r->db, "COMMIT", &r->commit)) {
        sq_seterr(err, errlen, "prepare reader", r->db);
        return -1;
    }
    return 0;
}

static int sq_sync_init(sq_t *sq)
{
    pthread_condattr_t ca;
    int rc = 0;

    if (pthread_condattr_init(&ca))
        return -1;
    rc |= pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc |= pthread_mutex_init(&sq->wlock, NULL);
    rc |= pthread_mutex_init(&sq->rlock, NULL);
    rc |= pthread_mutex_init(&sq->slock, NULL);
    rc |= pthread_cond_init(&sq->wcond, &ca);
    rc |= pthread_cond_init(&sq->rcond, NULL);
    pthread_condattr_destroy(&ca);
    return rc ? -1 : 0;
}

/* --- the writer ------------------------------------------------------------ */

static void sq_note_txn(sq_t *sq, int rc)
{
    pthread_mutex_lock(&sq->slock);
    if (rc) {
        sq->stats.errors++;
        sq->stats.healthy = false;
    } else {
        sq->stats.healthy = true;
    }
    pthread_mutex_unlock(&sq->slock);
}

/* Ends the transaction begun by SQ_W_BEGIN: commits when rc == 0 (the work
 * in it succeeded), else (or when COMMIT fails) rolls back. Returns 0 when
 * the transaction committed. */
static int sq_finish(sq_t *sq, int rc)
{
    if (rc == 0)
        rc = sq_run(sq->ws[SQ_W_COMMIT]);
    if (rc) {
        sq_log("write transaction failed", sq->db);
        if (!sqlite3_get_autocommit(sq->db))
            sq_run(sq->ws[SQ_W_ROLLBACK]);
    }
    sq_note_txn(sq, rc);
    return rc;
}

static int sq_insert(sq_t *sq, const sq_op_t *op)
{
    sqlite3_stmt *st = sq->ws[SQ_W_INSERT];
    const msg_t *m = op->m;
    int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)m->seq);

    rc = rc ? rc : sq_bind_text(st, 2, m->tenant);
    rc = rc ? rc : sq_bind_text(st, 3, m->subject);
    rc = rc ? rc : sq_bind_text(st, 4, sq->streams[op->stream].name);
    rc = rc ? rc : sqlite3_bind_int64(st, 5, m->time_ms);
    rc = rc ? rc : sq_bind_text(st, 6, m->event);
    rc = rc ? rc : sq_bind_text(st, 7, m->meta);
    rc = rc ? rc : sq_bind_text(st, 8, m->headers);
    rc = rc ? rc : sq_bind_text(st, 9, m->content_type);
    rc = rc ? rc : sqlite3_bind_int(st, 10, m->payload_kind);
    rc = rc ? rc : sq_bind_blob(st, 11, m->payload, m->payload_len);
    rc = rc ? rc : sqlite3_bind_int64(st, 12, op->size);
    rc = rc ? rc : sq_bind_text(st, 13, m->dedup);
    if (rc != SQLITE_OK)
        return -1;
    return sq_run(st);
}

/* Looks up the stored message an append's dedup key repeats, inside the
 * batch's transaction (so earlier appends of the batch count). 1 with *seq
 * set when there is one, 0 when not, -1 on error. */
static int sq_dedup_find(sq_t *sq, const sq_op_t *op, uint64_t *seq)
{
    sqlite3_stmt *st = sq->ws[SQ_W_DEDUP];
    int rc = sq_bind_text(st, 1, op->m->tenant);

    rc = rc ? rc : sq_bind_text(st, 2, sq->streams[op->stream].name);
    rc = rc ? rc : sq_bind_text(st, 3, op->m->dedup);
    if (rc != SQLITE_OK)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* An append inside the batch: a repeat of a stored dedup key takes that
 * message's sequence and writes nothing; anything else gets the next
 * sequence, is inserted and joins sq->batch[*n]. */
static int sq_write_append(sq_t *sq, sq_op_t *op, size_t *n)
{
    msg_t *m = op->m;
    uint64_t seq;
    int rc;

    m->duplicate = 0;
    if (m->dedup) {
        if ((rc = sq_dedup_find(sq, op, &seq)) < 0)
            return -1;
        if (rc) {
            m->seq = seq;
            m->duplicate = 1;
            return 0;
        }
    }
    m->seq = ++sq->last_seq;
    sq->batch[(*n)++] = m;
    return sq_insert(sq, op);
}

static int sq_kv_bind_key(sqlite3_stmt *st, const sq_kv_t *kv)
{
    int rc = sqlite3_bind_text(st, 1, kv->ns, -1, SQLITE_STATIC);

    return rc ? rc : sqlite3_bind_text(st, 2, kv->key, -1, SQLITE_STATIC);
}

/* The current revision of the put's key (0 when absent), or -1. */
static int sq_kv_current(sq_t *sq, const sq_kv_t *kv, uint64_t *rev)
{
    sqlite3_stmt *st = sq->ws[SQ_W_KV_REV];
    int rc;

    *rev = 0;
    if (sq_kv_bind_key(st, kv) != SQLITE_OK)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *rev = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* A put inside the batch. A failed compare-and-set is the op's own answer
 * (STORE_ECONFLICT with the current revision), not the batch's failure. */
static int sq_write_put(sq_t *sq, sq_op_t *op)
{
    sq_kv_t *kv = &op->kv;
    sqlite3_stmt *st = sq->ws[SQ_W_KV_PUT];
    uint64_t cur;
    int rc;

    if (kv->expect_rev) {
        bool want_none = kv->expect_rev == STORE_META_MUST_NOT_EXIST;

        if (sq_kv_current(sq, kv, &cur))
            return -1;
        if (want_none ? cur != 0 : cur != kv->expect_rev) {
            op->err = STORE_ECONFLICT;
            kv->rev = cur;
            return 0;
        }
    }
    kv->rev = ++sq->last_rev;
    rc = sq_kv_bind_key(st, kv);
    rc = rc ? rc : sq_bind_blob(st, 3, kv->value, kv->len);
    rc = rc ? rc : sqlite3_bind_int64(st, 4, (sqlite3_int64)kv->rev);
    rc = rc ? rc : sqlite3_bind_int64(st, 5, clock_now_ms());
    if (rc != SQLITE_OK)
        return -1;
    return sq_run(st);
}

static int sq_write_delete(sq_t *sq, sq_op_t *op)
{
    sqlite3_stmt *st = sq->ws[SQ_W_KV_DEL];

    if (sq_kv_bind_key(st, &op->kv) != SQLITE_OK || sq_run(st))
        return -1;
    if (sqlite3_changes(sq->db) == 0)
        op->err = STORE_ENOTFOUND;
    return 0;
}

/* Runs one write of a batch. -1 (a database error) fails the batch; an
 * answer that concerns the op alone is left in op->err. */
static int sq_write(sq_t *sq, sq_op_t *op, size_t *n)
{
    op->err = 0;
    switch (op->kind) {
    case SQ_APPEND:
        return sq_write_append(sq, op, n);
    case SQ_KV_PUT:
        return sq_write_put(sq, op);
    default:
        return sq_write_delete(sq, op);
    }
}

/* Undoes what a failed batch set on its ops: no sequence, no duplicate, no
 * revision. */
static void sq_batch_reset(list_node_t *batch)
{
    list_node_t *pos, *tmp;

    list_foreach_safe(pos, tmp, batch) {
        sq_op_t *op = container_of(pos, sq_op_t, node);

        if (op->kind == SQ_APPEND) {
            op->m->seq = 0;
            op->m->duplicate = 0;
        } else {
            op->kv.rev = 0;
        }
    }
}

/* Counts a committed batch, which stored n messages, in the stream
 * counters and the stats. */
static void sq_count_batch(sq_t *sq, list_node_t *batch, size_t n)
{
    list_node_t *pos, *tmp;
    int64_t bytes = 0;
    uint64_t dups = 0;

    list_foreach_safe(pos, tmp, batch) {
        const sq_op_t *op = container_of(pos, sq_op_t, node);

        if (op->kind != SQ_APPEND)
            continue;
        if (op->m->duplicate) {
            dups++;
            continue;
        }
        sq->counts[op->stream].msgs++;
        sq->counts[op->stream].bytes += op->size;
        bytes += op->size;
    }
    pthread_mutex_lock(&sq->slock);
    sq->stats.last_seq = sq->last_seq;
    sq->stats.commits += n ? 1 : 0;
    sq->stats.appended += n;
    sq->stats.duplicates += dups;
    sq->stats.messages += n;
    sq->stats.bytes += (uint64_t)bytes;
    pthread_mutex_unlock(&sq->slock);
}

/* Commits the writes in batch (queue order) in one transaction, runs
 * on_commit with the messages stored, then posts every completion: each
 * op's own answer, or STORE_EIO for all when the transaction failed (their
 * sequences and revisions are then reset to 0 and handed out again). */
static void sq_commit_batch(sq_t *sq, list_node_t *batch)
{
    uint64_t first_seq = sq->last_seq, first_rev = sq->last_rev;
    uint64_t t0 = clock_mono_ns();
    list_node_t *pos, *tmp;
    size_t n = 0;
    int rc = sq_run(sq->ws[SQ_W_BEGIN]);

    list_foreach_safe(pos, tmp, batch) {
        if (rc)
            break;
        rc = sq_write(sq, container_of(pos, sq_op_t, node), &n);
    }
    if (!rc && sq->last_seq != first_seq)
        rc = sq_save_counter(sq, SQ_W_LAST_SEQ, sq->last_seq);
    if (!rc && sq->last_rev != first_rev)
        rc = sq_save_counter(sq, SQ_W_LAST_REV, sq->last_rev);
    rc = sq_finish(sq, rc);
    if (sq->on_latency)
        sq->on_latency(sq->ctx, clock_mono_ns() - t0);
    if (rc) {
        sq->last_seq = first_seq;
        sq->last_rev = first_rev;
        sq_batch_reset(batch);
    } else {
        sq_count_batch(sq, batch, n);
        if (sq->on_commit && n)
            sq->on_commit(sq->ctx, sq->batch, n);
    }
    list_foreach_safe(pos, tmp, batch) {
        sq_op_t *op = container_of(pos, sq_op_t, node);

        list_remove(&op->node);
        sq_post(sq, op, rc ? STORE_EIO : op->err);
    }
}

static void sq_retain_start(sq_t *sq)
{
    sq_retention_t *r = &sq->ret;

    r->active = true;
    r->turn = false;
    r->stream = 0;
    r->phase = SQ_PHASE_AGE;
    r->err = 0;
    r->next_ms = clock_mono_ms() + (uint64_t)sq->retention_ms;
}

static void sq_retain_end(sq_t *sq, int err)
{
    sq_op_t *op;

    sq->ret.active = false;
    while ((op = sq_pop(&sq->ret.waiters)))
        sq_post(sq, op, err);
}

static void sq_retain_advance(sq_retention_t *r)
{
    if (++r->phase == SQ_PHASE_END) {
        r->phase = SQ_PHASE_AGE;
        r->stream++;
    }
}

/* Deletes, in one transaction, the rows sel yields (seq, size) until
 * max_rows are gone or the bytes freed reach `goal`. Updates the counters
 * of the pass's stream. Returns how many rows, or -1. */
static long sq_delete_chunk(sq_t *sq, sqlite3_stmt *sel, size_t max_rows,
                            int64_t goal)
{
    sqlite3_stmt *del = sq->ws[SQ_W_DELETE];
    sq_count_t *count = &sq->counts[sq->ret.stream];
    int64_t bytes = 0;
    size_t n = 0;
    int rc = sq_run(sq->ws[SQ_W_BEGIN]), step = SQLITE_DONE;

    while (!rc && n < max_rows && bytes < goal &&
           (step = sqlite3_step(sel)) == SQLITE_ROW) {
        sq->ret.seqs[n++] = (uint64_t)sqlite3_column_int64(sel, 0);
        bytes += sqlite3_column_int64(sel, 1);
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = -1;
    sqlite3_reset(sel);
    for (size_t i = 0; !rc && i < n; i++) {
        sqlite3_bind_int64(del, 1, (sqlite3_int64)sq->ret.seqs[i]);
        rc = sq_run(del);
    }
    if (sq_finish(sq, rc))
        return -1;
    count->msgs -= (int64_t)n;
    count->bytes -= bytes;
    pthread_mutex_lock(&sq->slock);
    sq->stats.messages -= n;
    sq->stats.bytes -= (uint64_t)bytes;
    sq->stats.expired += n;
    pthread_mutex_unlock(&sq->slock);
    return (long)n;
}

/* Binds the oldest-rows query of stream st, `rows` at most. */
static sqlite3_stmt *sq_oldest(sq_t *sq, const store_stream_cfg_t *st,
                               int64_t rows)
{
    sqlite3_stmt *q = sq->ws[SQ_W_OLDEST];

    sqlite3_bind_text(q, 1, st->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, rows);
    return q;
}

/* One chunk of the current phase of stream st. Returns rows deleted (0 when
 * the phase has nothing left to do) or -1. */
static long sq_retain_chunk(sq_t *sq, const store_stream_cfg_t *st)
{
    const sq_count_t *count = &sq->counts[sq->ret.stream];
    int64_t excess;
    sqlite3_stmt *q;

    switch (sq->ret.phase) {
    case SQ_PHASE_AGE:
        if (!st->max_age_ms)
            return 0;
        q = sq->ws[SQ_W_AGE];
        sqlite3_bind_text(q, 1, st->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, clock_now_ms() - st->max_age_ms);
        sqlite3_bind_int64(q, 3, SQ_EXPIRE_CHUNK);
        return sq_delete_chunk(sq, q, SQ_EXPIRE_CHUNK, INT64_MAX);
    case SQ_PHASE_MSGS:
        excess = count->msgs - st->max_msgs;
        if (!st->max_msgs || excess <= 0)
            return 0;
        if (excess > SQ_EXPIRE_CHUNK)
            excess = SQ_EXPIRE_CHUNK;
        return sq_delete_chunk(sq, sq_oldest(sq, st, excess), (size_t)excess,
                               INT64_MAX);
    case SQ_PHASE_BYTES:
        excess = count->bytes - st->max_bytes;
        if (!st->max_bytes || excess <= 0)
            return 0;
        return sq_delete_chunk(sq, sq_oldest(sq, st, SQ_EXPIRE_CHUNK),
                               SQ_EXPIRE_CHUNK, excess);
    default:
        return 0;
    }
}

/* Runs one chunk of the pass. A phase ends when a chunk finds nothing more
 * to delete (a short AGE chunk, or counts within the limits). An error skips
 * the rest of the stream and makes the pass answer STORE_EIO. */
static void sq_retain_step(sq_t *sq)
{
    sq_retention_t *r = &sq->ret;
    long got;

    if (r->stream >= sq->nstreams) {
        sq_retain_end(sq, r->err);
        return;
    }
    got = sq_retain_chunk(sq, &sq->streams[r->stream]);
    if (got < 0) {
        sq_log("retention failed", sq->db);
        r->err = STORE_EIO;
        r->phase = SQ_PHASE_BYTES;
        sq_retain_advance(r);
    } else if (got == 0 ||
               (r->phase == SQ_PHASE_AGE && got < SQ_EXPIRE_CHUNK)) {
        sq_retain_advance(r);
    }
}

enum sq_work { SQ_WORK_BATCH, SQ_WORK_OP, SQ_WORK_RETAIN, SQ_WORK_STOP };

static bool sq_is_write(const sq_op_t *op)
{
    return op->kind == SQ_APPEND || op->kind == SQ_KV_PUT ||
           op->kind == SQ_KV_DEL;
}

/* Moves the next unit of work from the queue to out: one control op, or up
 * to max_batch consecutive writes. Called with wlock held. */
static enum sq_work sq_take(sq_t *sq, list_node_t *out)
{
    sq_op_t *op = sq_pop(&sq->wq);

    list_insert_tail(out, &op->node);
    if (!sq_is_write(op))
        return SQ_WORK_OP;
    for (size_t n = 1; n < sq->max_batch && !list_empty(&sq->wq); n++) {
        op = container_of(sq->wq.next, sq_op_t, node);
        if (!sq_is_write(op))
            break;
        list_remove(&op->node);
        list_insert_tail(out, &op->node);
    }
    return SQ_WORK_BATCH;
}

/* Waits for the writer's next unit of work. Queued work goes first, except
 * that a running retention pass gets one chunk after each unit, so neither
 * starves; once stopping, only the queue is drained. */
static enum sq_work sq_writer_next(sq_t *sq, list_node_t *out)
{
    sq_retention_t *r = &sq->ret;
    enum sq_work w;

    pthread_mutex_lock(&sq->wlock);
    for (;;) {
        if (!sq->wstop && !r->active && clock_mono_ms() >= r->next_ms)
            sq_retain_start(sq);
        if (r->active && r->turn && !sq->wstop) {
            r->turn = false;
            w = SQ_WORK_RETAIN;
            break;
        }
        if (!list_empty(&sq->wq)) {
            w = sq_take(sq, out);
            r->turn = true;
            break;
        }
        if (sq->wstop) {
            w = SQ_WORK_STOP;
            break;
        }
        if (r->active) {
            w = SQ_WORK_RETAIN;
            break;
        }
        struct timespec ts = {
            .tv_sec = (time_t)(r->next_ms / 1000),
            .tv_nsec = (long)(r->next_ms % 1000) * 1000000L,
        };
        pthread_cond_timedwait(&sq->wcond, &sq->wlock, &ts);
    }
    pthread_mutex_unlock(&sq->wlock);
    return w;
}

static void sq_control(sq_t *sq, sq_op_t *op)
{
    bool healthy;

    list_remove(&op->node);
    if (op->kind == SQ_EXPIRE) {
        list_insert_tail(&sq->ret.waiters, &op->node);
        sq_retain_start(sq);
        return;
    }
    pthread_mutex_lock(&sq->slock);
    healthy = sq->stats.healthy;
    pthread_mutex_unlock(&sq->slock);
    sq_post(sq, op, healthy ? 0 : STORE_EIO);
}

static void *sq_writer_main(void *p)
{
    sq_t *sq = p;
    list_node_t work;

    for (;;) {
        list_init(&work);
        switch (sq_writer_next(sq, &work)) {
        case SQ_WORK_BATCH:
            sq_commit_batch(sq, &work);
            break;
        case SQ_WORK_OP:
            sq_control(sq, container_of(work.next, sq_op_t, node));
            break;
        case SQ_WORK_RETAIN:
            sq_retain_step(sq);
            break;
        case SQ_WORK_STOP:
            if (sq->ret.active)
                sq_retain_end(sq, STORE_ECLOSED);
            return NULL;
        }
    }
}

/* --- the readers ----------------------------------------------------------- */

static int sq_col_str(sqlite3_stmt *st, int i, char **field)
{
    const unsigned char *s;

    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return 0;
    if (!(s = sqlite3_column_text(st, i)))
        return -1;
    return msg_set(field, (const char *)s, (size_t)sqlite3_column_bytes(st, i));
}

static int sq_col_payload(sqlite3_stmt *st, msg_t *m)
{
    const void *p = sqlite3_column_blob(st, SQ_C_PAYLOAD);
    size_t n = (size_t)sqlite3_column_bytes(st, SQ_C_PAYLOAD);

    if (n == 0)
        return 0;
    if (!p || !(m->payload = malloc(n + 1)))
        return -1;
    memcpy(m->payload, p, n);
    m->payload[n] = '\0';
    m->payload_len = n;
    return 0;
}

/* A message built from the current row of a read (one reference), or NULL
 * when memory ran out. The payload kind is the stored one. */
static msg_t *sq_row_msg(sqlite3_stmt *st)
{
    msg_t *m = msg_new();
    int kind;

    if (!m)
        return NULL;
    m->seq = (uint64_t)sqlite3_column_int64(st, SQ_C_SEQ);
    m->time_ms = sqlite3_column_int64(st, SQ_C_TIME);
    kind = sqlite3_column_int(st, SQ_C_KIND);
    m->payload_kind = kind >= MSG_PAYLOAD_JSON && kind <= MSG_PAYLOAD_BINARY
                          ? (uint8_t)kind
                          : MSG_PAYLOAD_BINARY;
    if (sq_col_str(st, SQ_C_TENANT, &m->tenant) ||
        sq_col_str(st, SQ_C_SUBJECT, &m->subject) ||
        sq_col_str(st, SQ_C_EVENT, &m->event) ||
        sq_col_str(st, SQ_C_META, &m->meta) ||
        sq_col_str(st, SQ_C_HEADERS, &m->headers) ||
        sq_col_str(st, SQ_C_CTYPE, &m->content_type) ||
        sq_col_str(st, SQ_C_DEDUP, &m->dedup) ||
        sq_col_payload(st, m) || !m->tenant || !m->subject) {
        msg_unref(m);
        return NULL;
    }
    return m;
}

static bool sq_read_matches(const sq_read_t *q, const char *subject,
                            size_t len)
{
    for (size_t i = 0; i < q->npatterns; i++)
        if (subj_match(q->patterns[i], strlen(q->patterns[i]), subject, len))
            return true;
    return false;
}

static int sq_read_push(sq_read_t *q, msg_t *m)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        msg_t **p = realloc(q->msgs, cap * sizeof(*p));

        if (!p)
            return -1;
        q->msgs = p;
        q->cap = cap;
    }
    q->msgs[q->n++] = m;
    return 0;
}

/* One walk in sequence order over a read's candidate rows. */
typedef struct sq_cursor {
    sqlite3_stmt *st;
    int rc;                  /* of the last step; SQLITE_ROW: a current row */
    uint64_t seq;            /* of the current row */
} sq_cursor_t;

static void sq_cursor_step(sq_cursor_t *c)
{
    c->rc = sqlite3_step(c->st);
    if (c->rc == SQLITE_ROW)
        c->seq = (uint64_t)sqlite3_column_int64(c->st, SQ_C_SEQ);
}

/* Binds cursor i of read q (the tenant scan, or literal subject i) and
 * steps it to its first row. */
static int sq_cursor_open(sq_reader_t *r, const sq_read_t *q, size_t i,
                          sq_cursor_t *c)
{
    size_t rows = q->literal && q->limit < q->max_scan ? q->limit
                                                       : q->max_scan;
    sqlite3_stmt *st;
    int rc;

    c->st = NULL;
    if (q->literal && !r->lit[i] && sq_prepare_select(r->db, true, &r->lit[i]))
        return STORE_EIO;
    st = c->st = q->literal ? r->lit[i] : r->scan;
    rc = sqlite3_bind_text(st, 1, q->tenant, -1, SQLITE_STATIC);
    rc = rc ? rc : sqlite3_bind_int64(st, 2, (sqlite3_int64)q->after_seq);
    rc = rc ? rc : sqlite3_bind_int64(st, 3, (sqlite3_int64)rows + 1);
    if (!rc && q->literal)
        rc = sqlite3_bind_text(st, 4, q->patterns[i], -1, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        return STORE_EIO;
    sq_cursor_step(c);
    return 0;
}

/* The cursor holding the lowest sequence, NULL when all are done. */
static sq_cursor_t *sq_cursor_min(sq_cursor_t *c, size_t k, int *err)
{
    sq_cursor_t *min = NULL;

    for (size_t i = 0; i < k; i++) {
        if (c[i].rc == SQLITE_ROW) {
            if (!min || c[i].seq < min->seq)
                min = &c[i];
        } else if (c[i].rc != SQLITE_DONE) {
            *err = STORE_EIO;
        }
    }
    return min;
}

/* Examines the current row of st: scanned_to moves to it, and it joins
 * the answer when a pattern matches. */
static int sq_read_row(sq_read_t *q, sqlite3_stmt *st, uint64_t seq)
{
    const char *subject = (const char *)sqlite3_column_text(st, SQ_C_SUBJECT);
    msg_t *m;

    q->scanned_to = seq;
    if (!subject)
        return STORE_ENOMEM;
    if (!sq_read_matches(q, subject,
                         (size_t)sqlite3_column_bytes(st, SQ_C_SUBJECT)))
        return 0;
    if (!(m = sq_row_msg(st)))
        return STORE_ENOMEM;
    if (sq_read_push(q, m)) {
        msg_unref(m);
        return STORE_ENOMEM;
    }
    return 0;
}

/* Takes rows from the cursors in sequence order until max_scan rows were
 * examined or limit matched. at_end: no row was left in any cursor. */
static int sq_read_merge(sq_read_t *q, sq_cursor_t *c, size_t k)
{
    size_t examined = 0;
    int err = 0;

    q->scanned_to = q->after_seq;
    q->at_end = false;
    for (;;) {
        sq_cursor_t *min = sq_cursor_min(c, k, &err);

        if (err)
            return err;
        if (!min) {
            q->at_end = true;
            return 0;
        }
        if (examined == q->max_scan || q->n == q->limit)
            return 0;
        examined++;
        if ((err = sq_read_row(q, min->st, min->seq)))
            return err;
        sq_cursor_step(min);
    }
}

static void sq_do_read(sq_reader_t *r, sq_op_t *op)
{
    sq_read_t *q = &op->rd;
    size_t k = q->literal ? q->npatterns : 1, opened = 0;
    sq_cursor_t cur[SQ_LITERAL_MAX];
    bool txn = k > 1;
    int err = txn && sq_run(r->begin) ? STORE_EIO : 0;

    for (; !err && opened < k; opened++)
        err = sq_cursor_open(r, q, opened, &cur[opened]);
    if (!err)
        err = sq_read_merge(q, cur, k);
    for (size_t i = 0; i < opened; i++) {
        if (!cur[i].st)
            continue;        /* its statement could not be prepared */
        sqlite3_reset(cur[i].st);
        sqlite3_clear_bindings(cur[i].st);
    }
    if (txn && !sqlite3_get_autocommit(r->db))
        sq_run(r->commit);
    if (err) {
        if (err == STORE_EIO)
            sq_log("read failed", r->db);
        store_msgs_free(q->msgs, q->n);
        q->msgs = NULL;
        q->n = 0;
        q->scanned_to = q->after_seq;
        q->at_end = false;
    }
    op->err = err;
}

static void sq_do_before(sq_reader_t *r, sq_op_t *op)
{
    sqlite3_stmt *st = r->before;

    op->err = STORE_EIO;
    sqlite3_bind_int64(st, 1, op->time_ms);
    if (sqlite3_step(st) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(st, 0);

        op->seq = v > 0 ? (uint64_t)v : 0;
        op->err = 0;
    } else {
        sq_log("seq_before_time failed", r->db);
    }
    sqlite3_reset(st);
}

/* Column i of st as a blob: *p NULL only when memory ran out (an empty
 * blob gives a non-NULL *p and *len 0). */
static void sq_col_blob(sqlite3_stmt *st, int i, const void **p, size_t *len)
{
    static const unsigned char empty[1];

    *p = sqlite3_column_blob(st, i);
    *len = (size_t)sqlite3_column_bytes(st, i);
    if (*len == 0)
        *p = empty;
}

static void sq_do_kv_get(sq_reader_t *r, sq_op_t *op)
{
    sqlite3_stmt *st = r->kv_get;
    sq_kv_t *kv = &op->kv;
    const void *p;
    size_t len;
    int rc;

    op->err = STORE_EIO;
    if (sq_kv_bind_key(st, kv) != SQLITE_OK)
        goto out;
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        op->err = STORE_ENOTFOUND;
        goto out;
    }
    if (rc != SQLITE_ROW)
        goto out;
    sq_col_blob(st, 0, &p, &len);
    op->err = STORE_ENOMEM;
    if (!p || !(kv->got = malloc(len + 1)))
        goto out;
    memcpy(kv->got, p, len);
    kv->got[len] = '\0';
    kv->len = len;
    kv->rev = (uint64_t)sqlite3_column_int64(st, 1);
    op->err = 0;
out:
    if (op->err == STORE_EIO)
        sq_log("meta get failed", r->db);
    sqlite3_reset(st);
}

/* Adds the current row of a list to its answer, within STORE_META_LIST_MAX
 * bytes. */
static int sq_kv_list_row(sq_kv_t *kv, sqlite3_stmt *st)
{
    const char *key = (const char *)sqlite3_column_text(st, 0);
    size_t klen = (size_t)sqlite3_column_bytes(st, 0), len;
    const void *value;

    sq_col_blob(st, 1, &value, &len);
    if (!key || !value)
        return STORE_ENOMEM;
    kv->bytes += klen + len;
    if (kv->bytes > STORE_META_LIST_MAX)
        return STORE_ENOMEM;
    if (kv->n == kv->cap) {
        size_t cap = kv->cap ? kv->cap * 2 : 16;
        store_meta_entry_t *e = realloc(kv->entries, cap * sizeof(*e));

        if (!e)
            return STORE_ENOMEM;
        kv->entries = e;
        kv->cap = cap;
    }
    if (store_meta_entry_fill(&kv->entries[kv->n], key, klen, value, len,
                              (uint64_t)sqlite3_column_int64(st, 2),
                              sqlite3_column_int64(st, 3)))
        return STORE_ENOMEM;
    kv->n++;
    return 0;
}

static void sq_do_kv_list(sq_reader_t *r, sq_op_t *op)
{
    sqlite3_stmt *st = r->kv_list;
    sq_kv_t *kv = &op->kv;
    int rc = sq_kv_bind_key(st, kv), err = 0;

    rc = rc ? rc : sqlite3_bind_text(st, 3, kv->upper, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        err = STORE_EIO;
    while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW)
        err = sq_kv_list_row(kv, st);
    if (!err && rc != SQLITE_DONE)
        err = STORE_EIO;
    if (err == STORE_EIO)
        sq_log("meta list failed", r->db);
    sqlite3_reset(st);
    if (err) {
        store_meta_entries_free(kv->entries, kv->n);
        kv->entries = NULL;
        kv->n = 0;
    }
    op->err = err;
}

static void sq_reader_run(sq_reader_t *r, sq_op_t *op)
{
    switch (op->kind) {
    case SQ_READ:
        sq_do_read(r, op);
        break;
    case SQ_SEQ_BEFORE:
        sq_do_before(r, op);
        break;
    case SQ_KV_GET:
        sq_do_kv_get(r, op);
        break;
    default:
        sq_do_kv_list(r, op);
        break;
    }
}

static void *sq_reader_main(void *p)
{
    sq_reader_t *r = p;
    sq_t *sq = r->sq;

    for (;;) {
        sq_op_t *op;

        pthread_mutex_lock(&sq->rlock);
        while (list_empty(&sq->rq) && !sq->rstop)
            pthread_cond_wait(&sq->rcond, &sq->rlock);
        op = sq->rstop ? NULL : sq_pop(&sq->rq);
        pthread_mutex_unlock(&sq->rlock);
        if (!op)
            return NULL;
        sq_reader_run(r, op);
        sq_post(sq, op, op->err);
    }
}

/* --- open / close ---------------------------------------------------------- */

/* Stops and joins the threads that were started, answers what the writer
 * did not (reads: STORE_ECLOSED), and frees everything. Also the failure
 * path of sq_open, so every field may still be empty. */
static void sq_destroy(sq_t *sq)
{
    sq_op_t *op;

    if (sq->sync_ready) {
        pthread_mutex_lock(&sq->wlock);
        sq->wstop = true;
        pthread_cond_signal(&sq->wcond);
        pthread_mutex_unlock(&sq->wlock);
        pthread_mutex_lock(&sq->rlock);
        sq->rstop = true;
        pthread_cond_broadcast(&sq->rcond);
        pthread_mutex_unlock(&sq->rlock);
    }
    for (int i = 0; i < sq->nreaders; i++)
        if (sq->readers[i].started)
            pthread_join(sq->readers[i].thread, NULL);
    while ((op = sq_pop(&sq->rq)))
        sq_post(sq, op, STORE_ECLOSED);
    if (sq->writer_started)
        pthread_join(sq->writer, NULL);
    for (int i = 0; i < sq->nreaders; i++) {
        sq_reader_t *r = &sq->readers[i];

        sqlite3_finalize(r->scan);
        for (int j = 0; j < SQ_LITERAL_MAX; j++)
            sqlite3_finalize(r->lit[j]);
        sqlite3_finalize(r->before);
        sqlite3_finalize(r->kv_get);
        sqlite3_finalize(r->kv_list);
        sqlite3_finalize(r->begin);
        sqlite3_finalize(r->commit);
        sqlite3_close(r->db);
    }
    for (int i = 0; i < SQ_W_COUNT; i++)
        sqlite3_finalize(sq->ws[i]);
    sqlite3_close(sq->db);
    if (sq->lock_fd >= 0)
        close(sq->lock_fd);
    if (sq->sync_ready) {
        pthread_mutex_destroy(&sq->wlock);
        pthread_mutex_destroy(&sq->rlock);
        pthread_mutex_destroy(&sq->slock);
        pthread_cond_destroy(&sq->wcond);
        pthread_cond_destroy(&sq->rcond);
    }
    free(sq->readers);
    free(sq->batch);
    free(sq->counts);
    free(sq);
}

/* Copies the settings of cfg, applying defaults. NULL when one is invalid. */
static const char *sq_configure(sq_t *sq, store_t *s, const store_cfg_t *cfg)
{
    if (!cfg->dir || !cfg->dir[0])
        return "no data directory";
    if (cfg->readers < 0 || cfg->readers > SQ_MAX_READERS)
        return "bad reader count";
    if (cfg->max_batch > SQ_MAX_BATCH)
        return "max_batch too large";
    if (cfg->retention_interval_ms < 0)
        return "negative retention interval";
    if (cfg->fsync != STORE_FSYNC_FULL && cfg->fsync != STORE_FSYNC_NORMAL)
        return "bad fsync mode";
    if (!sqlite3_threadsafe())
        return "sqlite3 was built without thread support";
    sq->store = s;
    sq->streams = cfg->streams;
    sq->nstreams = cfg->nstreams;
    sq->post = cfg->post;
    sq->on_commit = cfg->on_commit;
    sq->on_latency = cfg->on_commit_latency;
    sq->ctx = cfg->commit_ctx;
    sq->fsync = cfg->fsync;
    sq->max_batch = cfg->max_batch ? cfg->max_batch : SQ_DEFAULT_BATCH;
    sq->retention_ms = cfg->retention_interval_ms
                           ? cfg->retention_interval_ms
                           : SQ_DEFAULT_RETENTION_MS;
    sq->nreaders = cfg->readers ? cfg->readers : SQ_DEFAULT_READERS;
    return NULL;
}

static int sq_start(sq_t *sq)
{
    if (pthread_create(&sq->writer, NULL, sq_writer_main, sq))
        return -1;
    sq->writer_started = true;
    for (int i = 0; i < sq->nreaders; i++) {
        sq_reader_t *r = &sq->readers[i];

        if (pthread_create(&r->thread, NULL, sq_reader_main, r))
            return -1;
        r->started = true;
    }
    return 0;
}

/* Opens the database in cfg->dir, recovers, and starts the threads. The
 * streams in cfg are borrowed until sq_close. NULL with err set on failure. */
static void *sq_open(store_t *s, const store_cfg_t *cfg, char *err,
                     size_t errlen)
{
    sq_t *sq = calloc(1, sizeof(*sq));
    const char *why;
    int nreaders;

    if (!sq) {
        sq_seterr(err, errlen, "out of memory", NULL);
        return NULL;
    }
    sq->lock_fd = -1;
    list_init(&sq->wq);
    list_init(&sq->rq);
    list_init(&sq->ret.waiters);
    if ((why = sq_configure(sq, s, cfg))) {
        sq_seterr(err, errlen, why, NULL);
        goto fail;
    }
    nreaders = sq->nreaders;
    sq->nreaders = 0;
    if (sq_sync_init(sq)) {
        sq_seterr(err, errlen, "thread setup failed", NULL);
        goto fail;
    }
    sq->sync_ready = true;
    sq->batch = calloc(sq->max_batch, sizeof(*sq->batch));
    sq->readers = calloc((size_t)nreaders, sizeof(*sq->readers));
    sq->counts = calloc(sq->nstreams + 1, sizeof(*sq->counts));
    if (!sq->batch || !sq->readers || !sq->counts) {
        sq_seterr(err, errlen, "out of memory", NULL);
        goto fail;
    }
    if (sq_mkdirs(cfg->dir, err, errlen) ||
        sq_lock_dir(sq, cfg->dir, err, errlen) ||
        sq_open_writer(sq, cfg->dir, err, errlen))
        goto fail;
    for (; sq->nreaders < nreaders; sq->nreaders++)
        if (sq_open_reader(sq, &sq->readers[sq->nreaders], cfg->dir, err,
                           errlen)) {
            sq->nreaders++;
            goto fail;
        }
    if (sq_start(sq)) {
        sq_seterr(err, errlen, "cannot start threads", NULL);
        goto fail;
    }
    return sq;
fail:
    sq_destroy(sq);
    return NULL;
}

static void sq_close(void *impl)
{
    sq_destroy(impl);
}

/* --- requests -------------------------------------------------------------- */

/* Queues an append. STORE_EINVAL (without a callback) when m lacks a tenant
 * or a subject or is in no stream: those are the caller's bugs. */
static int sq_append(void *impl, msg_t *m, void *target, store_append_cb cb,
                     void *arg)
{
    sq_t *sq = impl;
    const store_stream_cfg_t *st;
    sq_op_t *op;
    int rc;

    if (!m->tenant || !m->subject ||
        !subj_valid_subject(m->subject, strlen(m->subject)) ||
        !(st = store_stream_for(sq->store, m->subject)))
        return STORE_EINVAL;
    if (!(op = sq_op_new(SQ_APPEND, 0, target, arg)))
        return STORE_ENOMEM;
    op->cb.append = cb;
    op->m = msg_ref(m);
    op->stream = (size_t)(st - sq->streams);
    op->size = sq_msg_size(m);
    if ((rc = sq_push(sq, op, true))) {
        msg_unref(m);
        free(op);
    }
    return rc;
}

static bool sq_is_literal(const char *p)
{
    return !strchr(p, '*') && !strchr(p, '>');
}

static bool sq_has(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] && strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* A read op holding a copy of q (one allocation: the op, the pattern
 * pointers, then the strings). Repeated patterns are dropped when there are
 * few enough to be literal cursors (each subject must be walked once). NULL
 * with *rc set when q is invalid (STORE_EINVAL) or memory ran out. */
static sq_op_t *sq_read_op_new(const store_query_t *q, void *target,
                               void *arg, int *rc)
{
    size_t bytes, n = q->npatterns;
    sq_op_t *op;
    char *p;

    *rc = STORE_EINVAL;
    if (!q->tenant || !q->patterns || n == 0 || n > SQ_MAX_PATTERNS)
        return NULL;
    bytes = strlen(q->tenant) + 1 + n * sizeof(char *);
    for (size_t i = 0; i < n; i++) {
        if (!q->patterns[i] ||
            !subj_valid_pattern(q->patterns[i], strlen(q->patterns[i])))
            return NULL;
        bytes += strlen(q->patterns[i]) + 1;
    }
    *rc = STORE_ENOMEM;
    if (!(op = sq_op_new(SQ_READ, bytes, target, arg)))
        return NULL;
    op->rd.patterns = (const char **)(void *)(op + 1);
    p = (char *)(op->rd.patterns + n);
    op->rd.literal = n <= SQ_LITERAL_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(q->patterns[i]) + 1;

        if (op->rd.literal &&
            sq_has(op->rd.patterns, op->rd.npatterns, q->patterns[i]))
            continue;
        memcpy(p, q->patterns[i], len);
        op->rd.patterns[op->rd.npatterns++] = p;
        op->rd.literal = op->rd.literal && sq_is_literal(p);
        p += len;
    }
    memcpy(p, q->tenant, strlen(q->tenant) + 1);
    op->rd.tenant = p;
    op->rd.after_seq = q->after_seq;
    op->rd.scanned_to = q->after_seq;
    op->rd.limit = q->limit;
    op->rd.max_scan = q->max_scan ? q->max_scan : SQ_DEFAULT_SCAN;
    if (op->rd.max_scan > SQ_MAX_SCAN)
        op->rd.max_scan = SQ_MAX_SCAN;
    *rc = 0;
    return op;
}

static int sq_read(void *impl, const store_query_t *q, void *target,
                   store_read_cb cb, void *arg)
{
    int rc;
    sq_op_t *op = sq_read_op_new(q, target, arg, &rc);

    if (!op)
        return rc;
    op->cb.read = cb;
    if ((rc = sq_push(impl, op, false)))
        free(op);
    return rc;
}

static int sq_seq_before_time(void *impl, int64_t time_ms, void *target,
                              store_seq_cb cb, void *arg)
{
    sq_op_t *op = sq_op_new(SQ_SEQ_BEFORE, 0, target, arg);
    int rc;

    if (!op)
        return STORE_ENOMEM;
    op->cb.seq = cb;
    op->time_ms = time_ms;
    if ((rc = sq_push(impl, op, false)))
        free(op);
    return rc;
}

static int sq_control_op(sq_t *sq, enum sq_kind kind, void *target,
                         store_done_cb cb, void *arg)
{
    sq_op_t *op = sq_op_new(kind, 0, target, arg);
    int rc;

    if (!op)
        return STORE_ENOMEM;
    op->cb.done = cb;
    if ((rc = sq_push(sq, op, true)))
        free(op);
    return rc;
}

static int sq_ping(void *impl, void *target, store_done_cb cb, void *arg)
{
    return sq_control_op(impl, SQ_PING, target, cb, arg);
}

static int sq_expire_now(void *impl, void *target, store_done_cb cb,
                         void *arg)
{
    return sq_control_op(impl, SQ_EXPIRE, target, cb, arg);
}

/* A metadata op holding copies of ns, key (a list's prefix, then its range
 * end) and value, in one allocation. */
static sq_op_t *sq_kv_op_new(enum sq_kind kind, const char *ns,
                             const char *key, const void *value, size_t len,
                             void *target, void *arg)
{
    size_t nl = strlen(ns) + 1, kl = strlen(key) + 1;
    size_t upper = kind == SQ_KV_LIST ? kl + 1 : 0;
    sq_op_t *op = sq_op_new(kind, nl + kl + upper + len, target, arg);
    char *p;

    if (!op)
        return NULL;
    p = (char *)(op + 1);
    op->kv.ns = memcpy(p, ns, nl);
    p += nl;
    op->kv.key = memcpy(p, key, kl);
    p += kl;
    if (upper) {
        memcpy(p, key, kl - 1);
        p[kl - 1] = 0x7f;            /* above every printable key byte */
        p[kl] = '\0';
        op->kv.upper = p;
        p += upper;
    }
    if (len)
        memcpy(p, value, len);
    op->kv.value = (const unsigned char *)p;
    op->kv.len = len;
    return op;
}

/* Queues op (for the writer or the readers); frees it when refused. */
static int sq_kv_push(sq_t *sq, sq_op_t *op, bool writer)
{
    int rc = sq_push(sq, op, writer);

    if (rc)
        free(op);
    return rc;
}

static int sq_kv_put(void *impl, const char *ns, const char *key,
                     const void *value, size_t len, uint64_t expect_rev,
                     void *target, store_meta_put_cb cb, void *arg)
{
    sq_op_t *op = sq_kv_op_new(SQ_KV_PUT, ns, key, value, len, target, arg);

    if (!op)
        return STORE_ENOMEM;
    op->cb.put = cb;
    op->kv.expect_rev = expect_rev;
    return sq_kv_push(impl, op, true);
}

static int sq_kv_delete(void *impl, const char *ns, const char *key,
                        void *target, store_done_cb cb, void *arg)
{
    sq_op_t *op = sq_kv_op_new(SQ_KV_DEL, ns, key, NULL, 0, target, arg);

    if (!op)
        return STORE_ENOMEM;
    op->cb.done = cb;
    return sq_kv_push(impl, op, true);
}

static int sq_kv_get(void *impl, const char *ns, const char *key,
                     void *target, store_meta_get_cb cb, void *arg)
{
    sq_op_t *op = sq_kv_op_new(SQ_KV_GET, ns, key, NULL, 0, target, arg);

    if (!op)
        return STORE_ENOMEM;
    op->cb.get = cb;
    return sq_kv_push(impl, op, false);
}

static int sq_kv_list(void *impl, const char *ns, const char *prefix,
                      void *target, store_meta_list_cb cb, void *arg)
{
    sq_op_t *op = sq_kv_op_new(SQ_KV_LIST, ns, prefix, NULL, 0, target, arg);

    if (!op)
        return STORE_ENOMEM;
    op->cb.list = cb;
    return sq_kv_push(impl, op, false);
}

static int sq_waiter_init(sq_waiter_t *w)
{
    w->done = false;
    if (pthread_mutex_init(&w->mu, NULL))
        return -1;
    if (pthread_cond_init(&w->cv, NULL)) {
        pthread_mutex_destroy(&w->mu);
        return -1;
    }
    return 0;
}

static void sq_waiter_destroy(sq_waiter_t *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* Blocks until a reader has run the op that carries w. */
static void sq_wait(sq_waiter_t *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* A list of the whole namespace, run by a reader while this thread waits;
 * then `each` sees the entries here, on the calling thread. */
static int sq_kv_load_sync(void *impl, const char *ns,
                           store_meta_each_fn each, void *ctx)
{
    sq_waiter_t w;
    sq_op_t *op = NULL;
    int rc = STORE_ENOMEM;

    if (sq_waiter_init(&w))
        return STORE_ENOMEM;
    if (!(op = sq_kv_op_new(SQ_KV_LIST, ns, "", NULL, 0, NULL, NULL)))
        goto out;
    op->waiter = &w;
    if ((rc = sq_push(impl, op, false)))
        goto out;
    sq_wait(&w);
    rc = op->err;
    for (size_t i = 0; !rc && i < op->kv.n; i++) {
        const store_meta_entry_t *e = &op->kv.entries[i];

        rc = each(ctx, e->key, e->value, e->len, e->rev);
    }
    store_meta_entries_free(op->kv.entries, op->kv.n);
out:
    free(op);
    sq_waiter_destroy(&w);
    return rc;
}

static void sq_get_stats(void *impl, store_stats_t *out)
{
    sq_t *sq = impl;

    pthread_mutex_lock(&sq->slock);
    *out = sq->stats;
    pthread_mutex_unlock(&sq->slock);
}

const store_backend_t store_sqlite_backend = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .append = sq_append,
    .read = sq_read,
    .seq_before_time = sq_seq_before_time,
    .ping = sq_ping,
    .expire_now = sq_expire_now,
    .get_stats = sq_get_stats,
    .meta_put = sq_kv_put,
    .meta_delete = sq_kv_delete,
    .meta_get = sq_kv_get,
    .meta_list = sq_kv_list,
    .meta_load_sync = sq_kv_load_sync,
};
