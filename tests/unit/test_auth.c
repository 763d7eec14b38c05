/*
 * test_auth.c - the access-control guard (auth/auth.c) against a real
 * SQLite store: first-start bootstrap key and token secret, and what a
 * restart keeps; every outcome of auth_check with its metric; the
 * failed-attempt, per-IP and per-credential rate limits; connection
 * leases; the client IP behind trusted proxies; the admin allowlist;
 * auth_still_valid; the HTTP entry points; and that no secret reaches the
 * log.
 *
 * Each test gets its own data directory, configuration (flags, as an
 * operator would pass them), store and auth_init. The store's `post` runs
 * completions directly, as serve.c does for target NULL (auth.c's start-up
 * puts); a post to any other target is counted and fails the test, since
 * nothing here runs a loop. Outcomes are checked through the metric
 * counters too: every call must move exactly one of them by one.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/apikey.h"
#include "auth/auth.h"
#include "core/clock.h"
#include "ops/log.h"
#include "ops/metrics.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NOARGS ((const char *const[]){NULL})
#define EP "GET /api/v1/test"
#define HOUR_MS (3600ll * 1000)

static struct {
    char dir[256];
    config_t cfg;
    bool cfg_loaded;
    store_t *store;
    bool auth_up;
    atomic_int foreign_posts;      /* posts to a loop target: none expected */
    char admin_key[APIKEY_LEN + 1];
} F;

/* --- fixture ------------------------------------------------------------------ */

static void post_direct(void *target, void (*fn)(void *), void *arg)
{
    if (target)
        atomic_fetch_add(&F.foreign_posts, 1);
    fn(arg);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    memset(&F, 0, sizeof F);
    snprintf(F.dir, sizeof F.dir, "/tmp/sb_test_auth_XXXXXX");
    return mkdtemp(F.dir) ? 0 : -1;
}

static int capture_saved = -1;    /* stderr while it is captured */

static int teardown(void **state)
{
    int foreign = atomic_load(&F.foreign_posts);

    if (capture_saved >= 0) {     /* a test failed while capturing */
        dup2(capture_saved, 2);
        close(capture_saved);
        capture_saved = -1;
        log_set_level(LOG_LEVEL_ERROR);
    }

    if (F.auth_up)
        auth_shutdown();
    if (F.store)
        store_close(F.store);
    if (F.cfg_loaded)
        config_free(&F.cfg);
    nftw(F.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    memset(&F, 0, sizeof F);
    return foreign == 0 ? 0 : -1;
}

/* Loads the configuration: --data-dir, --store-fsync normal, then extra. */
static void load_cfg(const char *const *extra)
{
    const char *argv[64] = {"test_auth", "--data-dir", F.dir, "--store-fsync", "normal"};
    int argc = 5;
    char err[256] = "";

    for (size_t i = 0; extra[i]; i++) {
        assert_true(argc < 63);
        argv[argc++] = extra[i];
    }
    if (F.cfg_loaded)
        config_free(&F.cfg);
    if (config_load(&F.cfg, NULL, argc, (char **)argv, err, sizeof err) != 0)
        fail_msg("config_load: %s", err);
    F.cfg_loaded = true;
}

static void open_store(void)
{
    char err[256] = "";
    store_cfg_t sc = {
        .backend = "sqlite",
        .dir = F.cfg.data_dir,
        .fsync = STORE_FSYNC_NORMAL,
        .retention_interval_ms = F.cfg.retention_interval_ms,
        .max_batch = (size_t)F.cfg.max_batch,
        .readers = (int)F.cfg.store_readers,
        .streams = F.cfg.streams,
        .nstreams = F.cfg.nstreams,
        .post = post_direct,
    };

    F.store = store_open(&sc, err, sizeof err);
    if (!F.store)
        fail_msg("store_open: %s", err);
}

static int try_init(char *err, size_t errlen)
{
    int rc = auth_init(&F.cfg, F.store, err, errlen);

    F.auth_up = rc == 0;
    return rc;
}

static void init_ok(void)
{
    char err[256] = "";

    if (try_init(err, sizeof err) != 0)
        fail_msg("auth_init: %s", err);
    assert_non_null(auth_keys());
    assert_non_null(auth_tokens());
    assert_ptr_equal(auth_store(), F.store);
}

static void stop_auth(void)
{
    if (F.auth_up)
        auth_shutdown();
    F.auth_up = false;
}

/* Reads a key file: exactly one key and a newline. */
static void read_key_file(const char *path, char key[APIKEY_LEN + 1])
{
    char buf[APIKEY_LEN + 16];
    int fd = open(path, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    n = read(fd, buf, sizeof buf);
    close(fd);
    assert_int_equal(n, APIKEY_LEN + 1);
    assert_int_equal(buf[APIKEY_LEN], '\n');
    memcpy(key, buf, APIKEY_LEN);
    key[APIKEY_LEN] = '\0';
    assert_int_equal(apikey_parse(key, APIKEY_LEN, NULL), 0);
}

static void admin_path(char *out, size_t cap)
{
    snprintf(out, cap, "%s/admin.key", F.dir);
}

/* Config, store, auth; the bootstrap key (default file) into F.admin_key. */
static void start(const char *const *extra)
{
    char path[512];

    load_cfg(extra);
    open_store();
    init_ok();
    admin_path(path, sizeof path);
    if (access(path, F_OK) == 0)
        read_key_file(path, F.admin_key);
}

/* auth_shutdown, then auth_init on the same store and configuration. */
static void restart_auth(void)
{
    stop_auth();
    init_ok();
}

/* auth_shutdown, new flags, auth_init on the same store. */
static void reconfigure(const char *const *extra)
{
    stop_auth();
    load_cfg(extra);
    init_ok();
}

/* --- metrics -------------------------------------------------------------------- */

static uint64_t auth_metric(int m)
{
    uint64_t s = 0;

    for (int k = 0; k < METRICS_SHARDS; k++)
        s += atomic_load_explicit(&metrics_shards[k].auth[m], memory_order_relaxed);
    return s;
}

static void snap(uint64_t s[MA_MAX])
{
    for (int i = 0; i < MA_MAX; i++)
        s[i] = auth_metric(i);
}

/* Exactly metric moved, by n; every other outcome stayed. */
static void assert_moved(const uint64_t before[MA_MAX], int metric, uint64_t n)
{
    for (int i = 0; i < MA_MAX; i++)
        if (auth_metric(i) - before[i] != (i == metric ? n : 0))
            fail_msg("metric %d moved by %llu, expected %llu (outcome %d)", i,
                     (unsigned long long)(auth_metric(i) - before[i]),
                     (unsigned long long)(i == metric ? n : 0), metric);
}

/* --- checks ----------------------------------------------------------------------- */

/* auth_check(cred) from ip must succeed and count one "ok". */
static principal_t *check_ok(const char *cred, const char *ip)
{
    uint64_t before[MA_MAX];
    auth_outcome_t o;
    principal_t *p;

    snap(before);
    memset(&o, 0xa5, sizeof o);
    p = auth_check(cred, strlen(cred), ip, EP, &o);
    if (!p)
        fail_msg("refused: %d %s (%s)", o.status, o.reason ? o.reason : "", cred);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.metric, MA_OK);
    assert_int_equal(o.retry_after_ms, 0);
    assert_moved(before, MA_OK, 1);
    return p;
}

static void check_ok_drop(const char *cred, const char *ip)
{
    principal_unref(check_ok(cred, ip));
}

/* auth_check(cred[0..len)) from ip must be refused with status and
 * metric, counted once. */
static auth_outcome_t check_refused(const char *cred, size_t len, const char *ip, int status,
                                    int metric)
{
    uint64_t before[MA_MAX];
    auth_outcome_t o;

    snap(before);
    memset(&o, 0xa5, sizeof o);
    assert_null(auth_check(cred, len, ip, EP, &o));
    if (o.status != status || o.metric != metric)
        fail_msg("got %d/%d (%s), expected %d/%d", o.status, o.metric,
                 o.reason ? o.reason : "", status, metric);
    assert_non_null(o.code);
    assert_non_null(o.message);
    assert_non_null(o.reason);
    assert_moved(before, metric, 1);
    return o;
}

/* A 401 that tells the client nothing: one code, one text. */
static auth_outcome_t check_invalid(const char *cred, size_t len, const char *ip, int metric)
{
    auth_outcome_t o = check_refused(cred, len, ip, 401, metric);

    assert_string_equal(o.code, "unauthorized");
    assert_string_equal(o.message, "invalid credentials");
    assert_int_equal(o.retry_after_ms, 0);
    return o;
}

static auth_outcome_t check_limited(const char *cred, const char *ip)
{
    auth_outcome_t o = check_refused(cred, cred ? strlen(cred) : 0, ip, 429, MA_RATE_LIMITED);

    assert_string_equal(o.code, "rate_limited");
    assert_true(o.retry_after_ms >= 1);
    assert_true(o.retry_after_ms <= 1000);
    return o;
}

/* --- keys and tokens -------------------------------------------------------------- */

static json_t *json_or_null(const char *text)
{
    json_error_t e;
    json_t *j;

    if (!text)
        return NULL;
    j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

/* A key of tenant "default" in the live registry (not persisted unless
 * rec_out is taken and stored). */
static void make_key_at(const char *perms, const char *cidrs, int64_t now_ms, int64_t ttl_ms,
                        char key[APIKEY_LEN + 1], char id[APIKEY_ID_LEN + 1], json_t **rec_out)
{
    json_t *jp = json_or_null(perms), *jc = json_or_null(cidrs), *rec = NULL;
    char err[KEYS_ERR_LEN] = "";
    keys_create_req_t req = {
        .tenant = "default", .tenant_len = 7, .name = "test", .name_len = 4,
        .perms = jp, .cidrs = jc, .ttl_ms = ttl_ms, .now_ms = now_ms,
    };

    if (keys_create(auth_keys(), &req, key, &rec, err, sizeof err) != 0)
        fail_msg("keys_create: %s", err);
    json_decref(jp);
    json_decref(jc);
    assert_int_equal(apikey_parse(key, strlen(key), id), 0);
    if (rec_out)
        *rec_out = rec;
    else
        json_decref(rec);
}

static void make_key(const char *perms, const char *cidrs, char key[APIKEY_LEN + 1],
                     char id[APIKEY_ID_LEN + 1])
{
    make_key_at(perms, cidrs, clock_now_ms(), 0, key, id, NULL);
}

static void revoke_key(const char *id)
{
    json_t *rec = NULL;

    assert_int_equal(keys_revoke(auth_keys(), id, strlen(id), NULL, 0, clock_now_ms(), &rec), 0);
    assert_non_null(rec);
    json_decref(rec);
}

/* A token minted by key's principal; the caller frees it. */
static char *mint_at(const char *key, int64_t now_ms, int64_t ttl_ms, char jti[TOKENS_JTI_MAX + 1],
                     int64_t *exp_ms)
{
    principal_t *p = check_ok(key, "127.0.0.1");
    char *tok = NULL;

    assert_int_equal(tokens_mint(auth_tokens(), p, now_ms, ttl_ms, &tok, jti, exp_ms), 0);
    principal_unref(p);
    assert_non_null(tok);
    return tok;
}

static char *mint(const char *key)
{
    char jti[TOKENS_JTI_MAX + 1];
    int64_t exp;

    return mint_at(key, clock_now_ms(), HOUR_MS, jti, &exp);
}

/* --- store metadata ---------------------------------------------------------------- */

typedef struct put_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
} put_wait_t;

static void put_done(void *arg, int err, uint64_t rev)
{
    put_wait_t *w = arg;

    pthread_mutex_lock(&w->mu);
    w->err = err;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void meta_put(const char *ns, const char *key, const char *value)
{
    put_wait_t w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct timespec ts;

    assert_int_equal(store_meta_put(F.store, ns, key, value, strlen(value), 0, NULL, put_done, &w),
                     0);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        if (pthread_cond_timedwait(&w.cv, &w.mu, &ts) != 0)
            break;
    pthread_mutex_unlock(&w.mu);
    assert_true(w.done);
    assert_int_equal(w.err, 0);
}

static void persist_record(const json_t *rec)
{
    char *text = json_dumps(rec, JSON_COMPACT);

    assert_non_null(text);
    meta_put(AUTH_NS_KEYS, json_string_value(json_object_get(rec, "id")), text);
    free(text);
}

/* --- stderr capture ------------------------------------------------------------------ */

static void capture_begin(const char *path)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

    assert_true(fd >= 0);
    fflush(stderr);
    capture_saved = dup(2);
    assert_true(capture_saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);
}

/* Ends the capture; the captured text, malloc()ed. */
static char *capture_end(const char *path)
{
    FILE *f;
    char *text = calloc(1, 1 << 20);
    size_t n;

    fflush(stderr);
    assert_int_equal(dup2(capture_saved, 2), 2);
    close(capture_saved);
    capture_saved = -1;
    assert_non_null(text);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

/* ===================================================================================
 * First start and restart
 * =================================================================================== */

static void test_bootstrap_first_start(void **state)
{
    char path[512];
    struct stat st;
    principal_t *p;

    start(NOARGS);
    admin_path(path, sizeof path);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(strncmp(F.admin_key, "sb_", 3), 0);
    assert_int_equal(keys_count(auth_keys()), 1);

    p = check_ok(F.admin_key, "127.0.0.1");
    assert_int_equal(p->kind, PRINCIPAL_BOOTSTRAP);
    assert_true(p->superadmin);
    assert_string_equal(p->tenant, "default");
    assert_int_equal(p->expires_ms, 0);
    assert_true(principal_can_admin(p, "default", 7));
    assert_true(principal_can_admin(p, "other", 5));
    assert_true(auth_still_valid(p, clock_now_ms()));
    principal_unref(p);
}

static void test_bootstrap_custom_file_and_tenant(void **state)
{
    char sub[300], path[400], dflt[512], key[APIKEY_LEN + 1];
    struct stat st;
    principal_t *p;

    snprintf(sub, sizeof sub, "%s/secrets", F.dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof path, "%s/custom.key", sub);
    start(ARGS("--auth-admin-key-file", path, "--auth-bootstrap-tenant", "acme"));
    admin_path(dflt, sizeof dflt);
    assert_int_equal(access(dflt, F_OK), -1);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    read_key_file(path, key);
    p = check_ok(key, "10.9.8.7");
    assert_string_equal(p->tenant, "acme");
    assert_true(p->superadmin);
    principal_unref(p);
}

/* A file already there (left from an earlier install, too open) is
 * replaced by the key, and its mode tightened. */
static void test_bootstrap_replaces_loose_file(void **state)
{
    char path[512], junk[2 * APIKEY_LEN];
    struct stat st;
    int fd;

    admin_path(path, sizeof path);
    memset(junk, 'j', sizeof junk);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0644), 0);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    start(NOARGS);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    check_ok_drop(F.admin_key, "127.0.0.1");
}

/* The key file is never written through a symlink (an attacker with
 * write access to the directory could point it anywhere). */
static void test_bootstrap_refuses_symlink(void **state)
{
    char path[512], target[512], err[256] = "";
    struct stat st;

    admin_path(path, sizeof path);
    snprintf(target, sizeof target, "%s/elsewhere", F.dir);
    assert_int_equal(symlink(target, path), 0);
    load_cfg(NOARGS);
    open_store();
    assert_int_equal(try_init(err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot write the admin key"));
    assert_int_equal(stat(target, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_null(auth_keys());
}

static void test_restart_keeps_key(void **state)
{
    char path[512], key2[APIKEY_LEN + 1];
    struct stat st1, st2;

    start(NOARGS);
    admin_path(path, sizeof path);
    assert_int_equal(stat(path, &st1), 0);
    restart_auth();
    assert_int_equal(keys_count(auth_keys()), 1);
    assert_int_equal(stat(path, &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);
    assert_int_equal(st1.st_mtim.tv_sec, st2.st_mtim.tv_sec);
    assert_int_equal(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
    assert_int_equal(st1.st_size, st2.st_size);
    read_key_file(path, key2);
    assert_string_equal(key2, F.admin_key);
    check_ok_drop(F.admin_key, "127.0.0.1");

    /* and across a store close and reopen: the key was durable */
    stop_auth();
    store_close(F.store);
    F.store = NULL;
    open_store();
    init_ok();
    assert_int_equal(keys_count(auth_keys()), 1);
    assert_int_equal(stat(path, &st2), 0);
    assert_int_equal(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
    check_ok_drop(F.admin_key, "127.0.0.1");
}

/* The bootstrap key is made only when the store holds no key at all:
 * deleting the file does not make a new one. */
static void test_restart_without_file_makes_no_key(void **state)
{
    char path[512];

    start(NOARGS);
    admin_path(path, sizeof path);
    assert_int_equal(unlink(path), 0);
    restart_auth();
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(keys_count(auth_keys()), 1);
    check_ok_drop(F.admin_key, "127.0.0.1");
}

static void test_stored_keys_load_and_bad_record_skipped(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1], revoked[APIKEY_LEN + 1],
        rid[APIKEY_ID_LEN + 1];
    json_t *rec = NULL;

    start(NOARGS);
    make_key_at("{\"publish\":[\"a.>\"]}", NULL, clock_now_ms(), 0, key, id, &rec);
    persist_record(rec);
    json_decref(rec);
    make_key_at(NULL, NULL, clock_now_ms(), 0, revoked, rid, NULL);
    revoke_key(rid);
    assert_int_equal(keys_revoke(auth_keys(), rid, strlen(rid), NULL, 0, clock_now_ms(), &rec), 0);
    persist_record(rec);
    json_decref(rec);
    meta_put(AUTH_NS_KEYS, "zzzz", "this is not JSON");
    meta_put(AUTH_NS_KEYS, "yyyy", "{\"v\":1,\"id\":\"nope\"}");

    restart_auth();
    assert_int_equal(keys_count(auth_keys()), 3);
    check_ok_drop(key, "127.0.0.1");
    check_ok_drop(F.admin_key, "127.0.0.1");
    check_invalid(revoked, strlen(revoked), "127.0.0.1", MA_REVOKED);
}

static void test_token_secret_survives_restart(void **state)
{
    char *tok;
    principal_t *p;

    start(NOARGS);
    tok = mint(F.admin_key);
    restart_auth();
    p = check_ok(tok, "127.0.0.1");
    assert_int_equal(p->kind, PRINCIPAL_JWT);
    assert_string_equal(p->tenant, "default");
    assert_false(p->superadmin);
    assert_int_equal(strncmp(p->id, F.admin_key + 3, APIKEY_ID_LEN), 0);
    assert_true(p->expires_ms > clock_now_ms());
    principal_unref(p);

    /* store reopened: still the same secret */
    stop_auth();
    store_close(F.store);
    F.store = NULL;
    open_store();
    init_ok();
    check_ok_drop(tok, "127.0.0.1");

    /* a configured secret replaces the generated one: the old token dies */
    reconfigure(ARGS("--auth-jwt-secret", "0123456789abcdef0123456789abcdef-configured"));
    check_invalid(tok, strlen(tok), "127.0.0.1", MA_INVALID_TOKEN);
    free(tok);
    tok = mint(F.admin_key);
    check_ok_drop(tok, "127.0.0.1");
    free(tok);
}

static void test_revoked_tokens_loaded_at_start(void **state)
{
    char jti[TOKENS_JTI_MAX + 1], jti2[TOKENS_JTI_MAX + 1], val[64];
    int64_t exp, exp2;
    char *tok, *tok2;

    start(NOARGS);
    tok = mint_at(F.admin_key, clock_now_ms(), HOUR_MS, jti, &exp);
    tok2 = mint_at(F.admin_key, clock_now_ms(), HOUR_MS, jti2, &exp2);
    snprintf(val, sizeof val, "{\"exp_ms\":%lld}", (long long)exp);
    meta_put(AUTH_NS_REVOKED, jti, val);
    /* an entry already expired is forgotten, and one that is not JSON is
     * skipped: neither stops the start */
    meta_put(AUTH_NS_REVOKED, jti2, "{\"exp_ms\":1}");
    meta_put(AUTH_NS_REVOKED, "junk", "not json");
    restart_auth();
    check_invalid(tok, strlen(tok), "127.0.0.1", MA_REVOKED);
    check_ok_drop(tok2, "127.0.0.1");
    free(tok);
    free(tok2);
}

static void test_init_errors(void **state)
{
    char err[256];

    load_cfg(ARGS("--auth-jwt-secret", "too short"));
    open_store();
    err[0] = '\0';
    assert_int_equal(try_init(err, sizeof err), -1);
    assert_non_null(strstr(err, "jwt_secret"));
    assert_null(auth_keys());
    assert_null(auth_tokens());

    load_cfg(ARGS("--auth-bootstrap-tenant", "no spaces allowed"));
    err[0] = '\0';
    assert_int_equal(try_init(err, sizeof err), -1);
    assert_non_null(strstr(err, "bootstrap_tenant"));

    load_cfg(ARGS("--auth-jwt-tenant", ""));
    err[0] = '\0';
    assert_int_equal(try_init(err, sizeof err), -1);
    assert_non_null(strstr(err, "jwt_tenant"));

    load_cfg(ARGS("--auth-trusted-proxies", "10.0.0.0/8,not-an-address"));
    err[0] = '\0';
    assert_int_equal(try_init(err, sizeof err), -1);
    assert_non_null(strstr(err, "auth.trusted_proxies"));

    load_cfg(ARGS("--auth-admin-allow", "10.0.0.0/99"));
    err[0] = '\0';
    assert_int_equal(try_init(err, sizeof err), -1);
    assert_non_null(strstr(err, "auth.admin_allow"));

    /* none of those created a key */
    load_cfg(NOARGS);
    init_ok();
    assert_int_equal(keys_count(auth_keys()), 1);
}

/*
 * A first start that cannot write the admin key file fails - but only
 * after the key was stored. The operator fixes the path and starts again:
 * the store now holds a key, so no bootstrap key is made, and the one
 * stored was never shown to anyone. Nothing can then manage keys.
 * Expected: the second start leaves a usable admin key in the file.
 */
static void test_bootstrap_failed_write_then_restart(void **state)
{
    char bad[512], path[512], err[256] = "";
    principal_t *p;

    snprintf(bad, sizeof bad, "%s/missing-dir/admin.key", F.dir);
    load_cfg(ARGS("--auth-admin-key-file", bad));
    open_store();
    assert_int_equal(try_init(err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot write the admin key"));

    load_cfg(NOARGS);
    init_ok();
    admin_path(path, sizeof path);
    if (access(path, F_OK) != 0)
        fail_msg("locked out: %zu key(s) stored, no admin key file written",
                 keys_count(auth_keys()));
    read_key_file(path, F.admin_key);
    p = check_ok(F.admin_key, "127.0.0.1");
    assert_true(p->superadmin);
    principal_unref(p);
}

/* ===================================================================================
 * auth_check outcomes
 * =================================================================================== */

static void test_check_missing(void **state)
{
    auth_outcome_t o;

    start(NOARGS);
    o = check_refused(NULL, 0, "127.0.0.1", 401, MA_MISSING);
    assert_string_equal(o.code, "unauthorized");
    assert_int_equal(o.retry_after_ms, 0);
    assert_string_not_equal(o.message, "invalid credentials");
    check_refused("", 0, "127.0.0.1", 401, MA_MISSING);
    check_refused(F.admin_key, 0, "127.0.0.1", 401, MA_MISSING);
}

static void test_check_malformed(void **state)
{
    char *big;
    auth_outcome_t o;

    start(NOARGS);
    check_invalid("garbage", 7, "127.0.0.1", MA_MALFORMED);
    check_invalid("sb_", 3, "127.0.0.1", MA_MALFORMED);
    check_invalid("sb_x", 4, "127.0.0.1", MA_MALFORMED);
    check_invalid("a.b", 3, "127.0.0.1", MA_MALFORMED);
    /* the admin key cut short or with a byte more */
    check_invalid(F.admin_key, APIKEY_LEN - 1, "127.0.0.1", MA_MALFORMED);

    big = malloc(AUTH_CRED_MAX + 2);
    assert_non_null(big);
    memset(big, 'a', AUTH_CRED_MAX + 1);
    big[AUTH_CRED_MAX + 1] = '\0';
    o = check_invalid(big, AUTH_CRED_MAX + 1, "127.0.0.1", MA_MALFORMED);
    assert_string_equal(o.reason, "credential too long");
    o = check_invalid(big, AUTH_CRED_MAX, "127.0.0.1", MA_MALFORMED);
    assert_string_not_equal(o.reason, "credential too long");
    /* a real key followed by 8 KiB of padding is still too long */
    memcpy(big, F.admin_key, APIKEY_LEN);
    o = check_invalid(big, AUTH_CRED_MAX + 1, "127.0.0.1", MA_MALFORMED);
    assert_string_equal(o.reason, "credential too long");
    free(big);
}

static void test_check_unknown_and_bad_secret(void **state)
{
    char id[APIKEY_ID_LEN + 1], other[APIKEY_LEN + 1], bad[APIKEY_LEN + 1];
    uint8_t hash[APIKEY_HASH_LEN];

    start(NOARGS);
    assert_int_equal(apikey_generate(id, other, hash), 0);
    check_invalid(other, APIKEY_LEN, "127.0.0.1", MA_UNKNOWN);

    /* the admin key's id with another key's secret */
    memcpy(bad, F.admin_key, APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1);
    memcpy(bad + APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1, other + APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1,
           APIKEY_SECRET_LEN + 1);
    assert_int_equal(apikey_parse(bad, APIKEY_LEN, NULL), 0);
    check_invalid(bad, APIKEY_LEN, "127.0.0.1", MA_BAD_SECRET);
    /* the right key still works from the same address */
    check_ok_drop(F.admin_key, "127.0.0.1");
}

static void test_check_jwt_shaped_garbage(void **state)
{
    const char *const bad[] = {
        "aaa.bbb.ccc",
        "..",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",   /* alg none */
        "eyJhbGciOiJIUzI1NiIsImtpZCI6InNiMSJ9.eyJzdWIiOiJ4In0.AAAA",
    };

    start(NOARGS);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t before[MA_MAX];
        auth_outcome_t o;

        snap(before);
        assert_null(auth_check(bad[i], strlen(bad[i]), "127.0.0.1", EP, &o));
        assert_int_equal(o.status, 401);
        assert_true(o.metric == MA_MALFORMED || o.metric == MA_INVALID_TOKEN);
        assert_string_equal(o.message, "invalid credentials");
        assert_moved(before, o.metric, 1);
    }
}

static void test_check_tokens(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1], jti[TOKENS_JTI_MAX + 1];
    char *tok, *old, *forged;
    int64_t exp;
    size_t len;
    principal_t *p;

    start(NOARGS);
    make_key("{\"publish\":[\"orders.>\"]}", NULL, key, id);
    tok = mint_at(key, clock_now_ms(), HOUR_MS, jti, &exp);
    p = check_ok(tok, "127.0.0.1");
    assert_int_equal(p->kind, PRINCIPAL_JWT);
    assert_string_equal(p->id, id);
    assert_true(principal_can_publish(p, "orders.eu", 9, NULL, 0));
    assert_false(principal_can_publish(p, "other", 5, NULL, 0));
    principal_unref(p);

    /* a signature byte changed */
    len = strlen(tok);
    forged = strdup(tok);
    assert_non_null(forged);
    forged[len - 10] = forged[len - 10] == 'A' ? 'B' : 'A';
    check_invalid(forged, len, "127.0.0.1", MA_INVALID_TOKEN);
    free(forged);

    /* expired (two hours ago, for one hour: well past the leeway) */
    old = mint_at(key, clock_now_ms() - 2 * HOUR_MS, HOUR_MS, jti, &exp);
    check_invalid(old, strlen(old), "127.0.0.1", MA_EXPIRED);
    free(old);

    /* its jti revoked */
    old = mint_at(key, clock_now_ms(), HOUR_MS, jti, &exp);
    check_ok_drop(old, "127.0.0.1");
    assert_int_equal(tokens_revoke(auth_tokens(), jti, strlen(jti), exp), 0);
    check_invalid(old, strlen(old), "127.0.0.1", MA_REVOKED);
    free(old);

    /* the key that minted it revoked: the token dies with it */
    check_ok_drop(tok, "127.0.0.1");
    revoke_key(id);
    check_invalid(tok, strlen(tok), "127.0.0.1", MA_REVOKED);
    free(tok);
}

static void test_check_revoked_and_expired_keys(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];

    start(NOARGS);
    make_key(NULL, NULL, key, id);
    check_ok_drop(key, "127.0.0.1");
    revoke_key(id);
    check_invalid(key, APIKEY_LEN, "127.0.0.1", MA_REVOKED);

    make_key_at(NULL, NULL, clock_now_ms() - 10000, 1000, key, id, NULL);
    check_invalid(key, APIKEY_LEN, "127.0.0.1", MA_EXPIRED);
}

static void test_check_key_cidrs(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
    principal_t *p;

    start(NOARGS);
    make_key(NULL, "[\"10.0.0.0/8\"]", key, id);
    check_invalid(key, APIKEY_LEN, "127.0.0.1", MA_IP_NOT_ALLOWED);
    check_invalid(key, APIKEY_LEN, "", MA_IP_NOT_ALLOWED);
    check_invalid(key, APIKEY_LEN, "11.0.0.1", MA_IP_NOT_ALLOWED);
    p = check_ok(key, "10.2.3.4");
    assert_string_equal(p->id, id);
    assert_int_equal(p->kind, PRINCIPAL_API_KEY);
    assert_false(p->superadmin);
    principal_unref(p);
}

/* Every outcome is rendered in the exposition with its running total. */
static void test_metrics_render(void **state)
{
    static const char *const names[MA_MAX] = {
        "ok", "missing", "malformed", "unknown", "bad_secret", "revoked", "expired",
        "ip_not_allowed", "invalid_token", "forbidden", "rate_limited", "connection_limited",
    };
    buf_t b;

    start(NOARGS);
    check_ok_drop(F.admin_key, "127.0.0.1");
    check_invalid("garbage", 7, "127.0.0.1", MA_MALFORMED);
    check_refused(NULL, 0, "127.0.0.1", 401, MA_MISSING);
    buf_init(&b, 1 << 22);
    assert_int_equal(metrics_render(&b), 0);
    assert_non_null(b.data);
    for (int i = 0; i < MA_MAX; i++) {
        char line[128];
        snprintf(line, sizeof line, "switchboard_auth_total{outcome=\"%s\"} %llu\n", names[i],
                 (unsigned long long)auth_metric(i));
        if (!strstr(b.data, line))
            fail_msg("no line %s", line);
    }
    assert_true(auth_metric(MA_OK) >= 1);
    buf_free(&b);
}

/* An attempt naming a known key lands in that key's usage log, with the
 * outcome and without the query string. */
static void test_usage_log_and_forbidden(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1], bad[APIKEY_LEN + 1];
    auth_outcome_t o;
    uint64_t before[MA_MAX];
    principal_t *p;
    json_t *use = NULL;

    start(NOARGS);
    make_key(NULL, NULL, key, id);
    memcpy(bad, key, sizeof bad);
    bad[APIKEY_LEN - 2] = bad[APIKEY_LEN - 2] == 'A' ? 'B' : 'A';
    assert_null(auth_check(bad, APIKEY_LEN, "10.1.1.1", "GET /first?token=secret", &o));
    assert_int_equal(o.metric, MA_BAD_SECRET);
    p = auth_check(key, APIKEY_LEN, "10.1.1.2", "POST /second", &o);
    assert_non_null(p);
    snap(before);
    auth_forbidden(NULL, p, "10.1.1.3", "POST /third", "publish to orders.eu");
    assert_moved(before, MA_FORBIDDEN, 1);

    assert_int_equal(keys_usage(auth_keys(), id, strlen(id), NULL, 0, &use), 0);
    assert_int_equal(json_array_size(use), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(use, 0), "outcome")),
                        "forbidden");
    assert_string_equal(json_string_value(json_object_get(json_array_get(use, 0), "endpoint")),
                        "POST /third");
    assert_string_equal(json_string_value(json_object_get(json_array_get(use, 1), "outcome")),
                        "ok");
    assert_string_equal(json_string_value(json_object_get(json_array_get(use, 1), "ip")),
                        "10.1.1.2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(use, 2), "outcome")),
                        "bad_secret");
    assert_string_equal(json_string_value(json_object_get(json_array_get(use, 2), "endpoint")),
                        "GET /first");
    json_decref(use);
    principal_unref(p);
}

/* ===================================================================================
 * Rate limits
 * =================================================================================== */

static void test_fail_limit(void **state)
{
    char id[APIKEY_ID_LEN + 1], unknown[APIKEY_LEN + 1];
    uint8_t hash[APIKEY_HASH_LEN];
    auth_outcome_t o;

    start(ARGS("--auth-fail-rate", "1", "--auth-fail-burst", "2"));
    assert_int_equal(apikey_generate(id, unknown, hash), 0);
    check_invalid("garbage", 7, "10.0.0.1", MA_MALFORMED);
    check_invalid(unknown, APIKEY_LEN, "10.0.0.1", MA_UNKNOWN);
    o = check_limited(F.admin_key, "10.0.0.1");
    assert_string_equal(o.reason, "too many failed attempts from this address");
    /* refused before the credential is looked at: a bad one is 429 too */
    check_limited("garbage", "10.0.0.1");
    check_limited(NULL, "10.0.0.1");
    /* another address is not affected */
    check_ok_drop(F.admin_key, "10.0.0.2");
    /* after a refill (1/s) the good key passes again */
    usleep((useconds_t)(o.retry_after_ms + 20) * 1000);
    check_ok_drop(F.admin_key, "10.0.0.1");
    /* and a success does not reset the count of failures */
    check_invalid("garbage", 7, "10.0.0.1", MA_MALFORMED);
    check_limited(F.admin_key, "10.0.0.1");
}

static void test_fail_limit_ignores_missing(void **state)
{
    start(ARGS("--auth-fail-rate", "1", "--auth-fail-burst", "2"));
    for (int i = 0; i < 5; i++)
        check_refused(NULL, 0, "10.0.0.1", 401, MA_MISSING);
    check_ok_drop(F.admin_key, "10.0.0.1");
    /* nor do successes, nor rate-limited attempts */
    for (int i = 0; i < 5; i++)
        check_ok_drop(F.admin_key, "10.0.0.1");
    check_invalid("garbage", 7, "10.0.0.1", MA_MALFORMED);
    check_ok_drop(F.admin_key, "10.0.0.1");
}

static void test_ip_rate(void **state)
{
    auth_outcome_t o;

    start(ARGS("--auth-ip-rate", "1", "--auth-ip-burst", "2"));
    check_ok_drop(F.admin_key, "10.0.0.1");
    check_refused(NULL, 0, "10.0.0.1", 401, MA_MISSING);   /* every attempt counts */
    o = check_limited(F.admin_key, "10.0.0.1");
    assert_string_equal(o.reason, "client IP rate limit");
    check_ok_drop(F.admin_key, "10.0.0.2");
    check_ok_drop(F.admin_key, "::1");
    usleep((useconds_t)(o.retry_after_ms + 20) * 1000);
    check_ok_drop(F.admin_key, "10.0.0.1");
    check_limited(F.admin_key, "10.0.0.1");
}

/* A long address (an IPv6 one) still gets a bucket of its own. */
static void test_ip_rate_long_addresses(void **state)
{
    const char *a = "2001:0db8:85a3:0000:0000:8a2e:0370:7334";
    const char *b = "2001:0db8:85a3:0000:0000:8a2e:0370:7335";

    start(ARGS("--auth-ip-rate", "1", "--auth-ip-burst", "1"));
    check_ok_drop(F.admin_key, a);
    check_limited(F.admin_key, a);
    check_ok_drop(F.admin_key, b);
    check_limited(F.admin_key, b);
}

static void test_key_rate_from_perms(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
    auth_outcome_t o;
    principal_t *p;
    char *tok;

    start(NOARGS);
    tok = mint(F.admin_key);
    make_key("{\"rate\":{\"per_second\":1,\"burst\":1}}", NULL, key, id);
    p = check_ok(key, "10.0.0.1");
    assert_true(p->perm.rate_per_s > 0);
    o = check_limited(key, "10.0.0.2");      /* the key's bucket, any address */
    assert_string_equal(o.reason, "credential rate limit");
    memset(&o, 0xa5, sizeof o);
    assert_false(auth_rate(p, "10.0.0.1", &o));
    assert_int_equal(o.status, 429);
    assert_int_equal(o.metric, MA_RATE_LIMITED);
    assert_string_equal(o.code, "rate_limited");
    assert_true(o.retry_after_ms >= 1);
    /* other credentials are not affected */
    check_ok_drop(F.admin_key, "10.0.0.1");
    check_ok_drop(tok, "10.0.0.1");
    usleep((useconds_t)(o.retry_after_ms + 20) * 1000);
    memset(&o, 0xa5, sizeof o);
    assert_true(auth_rate(p, "10.0.0.1", &o));
    assert_int_equal(o.status, 0);
    assert_false(auth_rate(p, "10.0.0.1", &o));
    principal_unref(p);
    free(tok);
}

static void test_key_rate_default(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
    auth_outcome_t o;
    principal_t *p;

    start(ARGS("--auth-key-rate", "1", "--auth-key-burst", "2"));
    make_key("{\"rate\":{\"per_second\":1000,\"burst\":1000}}", NULL, key, id);
    check_ok_drop(F.admin_key, "10.0.0.1");
    p = check_ok(F.admin_key, "10.0.0.1");
    check_limited(F.admin_key, "10.0.0.1");
    assert_false(auth_rate(p, "10.0.0.1", &o));
    assert_int_equal(o.status, 429);
    principal_unref(p);
    /* a key's own rate wins over the default */
    for (int i = 0; i < 10; i++)
        check_ok_drop(key, "10.0.0.1");
}

/* ===================================================================================
 * Connection leases
 * =================================================================================== */

static int lease(auth_lease_t *l, principal_t *p, const char *ip, auth_outcome_t *o)
{
    return auth_lease_acquire(l, p, ip, "GET /events", o);
}

static void assert_lease_refused(auth_lease_t *l, principal_t *p, const char *ip,
                                 const char *message)
{
    uint64_t before[MA_MAX];
    auth_outcome_t o;
    int refs = atomic_load(&p->refs);

    snap(before);
    assert_int_equal(lease(l, p, ip, &o), -1);
    assert_int_equal(o.status, 429);
    assert_int_equal(o.metric, MA_CONN_LIMITED);
    assert_string_equal(o.code, "too_many_connections");
    assert_string_equal(o.message, message);
    assert_true(o.retry_after_ms >= 1);
    assert_null(l->p);
    assert_false(l->ip_counted);
    assert_false(l->key_counted);
    assert_int_equal(atomic_load(&p->refs), refs);
    assert_moved(before, MA_CONN_LIMITED, 1);
    auth_lease_release(l);       /* harmless on a refused lease */
}

static void test_lease_key_cap(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
    auth_lease_t a, b, z;
    auth_outcome_t o;
    principal_t *p;
    uint64_t before[MA_MAX];
    int refs;

    start(NOARGS);
    make_key("{\"max_connections\":1}", NULL, key, id);
    p = check_ok(key, "10.0.0.1");
    refs = atomic_load(&p->refs);
    snap(before);
    assert_int_equal(lease(&a, p, "10.0.0.1", &o), 0);
    assert_int_equal(o.status, 0);
    assert_ptr_equal(a.p, p);
    assert_string_equal(a.ip, "10.0.0.1");
    assert_int_equal(atomic_load(&p->refs), refs + 1);
    assert_moved(before, MA_OK, 0);
    assert_lease_refused(&b, p, "10.0.0.2", "too many open streams for this credential");
    auth_lease_release(&a);
    assert_null(a.p);
    assert_int_equal(atomic_load(&p->refs), refs);
    auth_lease_release(&a);      /* twice: harmless */
    memset(&z, 0, sizeof z);
    auth_lease_release(&z);      /* zeroed: harmless */
    assert_int_equal(lease(&b, p, "10.0.0.1", &o), 0);
    assert_lease_refused(&a, p, "10.0.0.1", "too many open streams for this credential");
    auth_lease_release(&b);

    /* the lease holds its principal: dropping ours first is fine */
    assert_int_equal(lease(&a, p, "10.0.0.1", &o), 0);
    principal_unref(p);
    auth_lease_release(&a);
}

/* A second release must not give back someone else's place. */
static void test_lease_double_release_counts_once(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
    auth_lease_t a, b, c, d;
    auth_outcome_t o;
    principal_t *p;

    start(ARGS("--auth-ip-max-connections", "2"));
    make_key("{\"max_connections\":2}", NULL, key, id);
    p = check_ok(key, "10.0.0.1");
    assert_int_equal(lease(&a, p, "10.0.0.1", &o), 0);
    assert_true(a.ip_counted && a.key_counted);
    assert_int_equal(lease(&b, p, "10.0.0.1", &o), 0);
    auth_lease_release(&a);
    auth_lease_release(&a);
    assert_int_equal(lease(&c, p, "10.0.0.1", &o), 0);
    assert_lease_refused(&d, p, "10.0.0.3", "too many open streams for this credential");
    assert_lease_refused(&d, p, "10.0.0.1", "too many open streams from this address");
    auth_lease_release(&b);
    auth_lease_release(&c);
    principal_unref(p);
}

static void test_lease_ip_cap(void **state)
{
    char k1[APIKEY_LEN + 1], id1[APIKEY_ID_LEN + 1], k2[APIKEY_LEN + 1], id2[APIKEY_ID_LEN + 1];
    auth_lease_t a, b, c;
    auth_outcome_t o;
    principal_t *p1, *p2;

    start(ARGS("--auth-ip-max-connections", "2"));
    make_key(NULL, NULL, k1, id1);
    make_key(NULL, NULL, k2, id2);
    p1 = check_ok(k1, "10.0.0.1");
    p2 = check_ok(k2, "10.0.0.1");
    assert_int_equal(lease(&a, p1, "10.0.0.1", &o), 0);
    assert_false(a.key_counted);          /* no key cap anywhere */
    assert_int_equal(lease(&b, p2, "10.0.0.1", &o), 0);
    assert_lease_refused(&c, p1, "10.0.0.1", "too many open streams from this address");
    assert_lease_refused(&c, p2, "10.0.0.1", "too many open streams from this address");
    assert_int_equal(lease(&c, p1, "10.0.0.2", &o), 0);
    auth_lease_release(&c);
    auth_lease_release(&a);
    assert_int_equal(lease(&a, p2, "10.0.0.1", &o), 0);
    auth_lease_release(&a);
    auth_lease_release(&b);
    principal_unref(p1);
    principal_unref(p2);
}

/* A refusal by the key cap gives back the place the IP cap had counted. */
static void test_lease_key_default_cap_returns_ip_place(void **state)
{
    char k1[APIKEY_LEN + 1], id1[APIKEY_ID_LEN + 1], k2[APIKEY_LEN + 1], id2[APIKEY_ID_LEN + 1],
        k3[APIKEY_LEN + 1], id3[APIKEY_ID_LEN + 1];
    auth_lease_t a, b, c;
    auth_outcome_t o;
    principal_t *p1, *p2, *p3;

    start(ARGS("--auth-ip-max-connections", "2", "--auth-key-max-connections", "1"));
    make_key(NULL, NULL, k1, id1);
    make_key(NULL, NULL, k2, id2);
    make_key(NULL, NULL, k3, id3);
    p1 = check_ok(k1, "10.0.0.1");
    p2 = check_ok(k2, "10.0.0.1");
    p3 = check_ok(k3, "10.0.0.1");
    assert_int_equal(lease(&a, p1, "10.0.0.1", &o), 0);
    assert_true(a.key_counted);
    for (int i = 0; i < 3; i++)
        assert_lease_refused(&b, p1, "10.0.0.1", "too many open streams for this credential");
    assert_int_equal(lease(&b, p2, "10.0.0.1", &o), 0);
    assert_lease_refused(&c, p3, "10.0.0.1", "too many open streams from this address");
    auth_lease_release(&a);
    auth_lease_release(&b);
    principal_unref(p1);
    principal_unref(p2);
    principal_unref(p3);
}

/* ===================================================================================
 * Client IP and admin allowlist
 * =================================================================================== */

/* auth_client_ip of a request from peer carrying the given header lines
 * (name, value pairs; NULL-terminated). */
static void client_ip_h(const char *peer, const char *const *hv, char out[AUTH_IP_MAX])
{
    conn_t *c = calloc(1, sizeof *c);
    http_req_t *r = calloc(1, sizeof *r);
    size_t n = 0;

    assert_non_null(c);
    assert_non_null(r);
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    r->conn = c;
    for (; hv[2 * n]; n++) {
        r->head.headers[n].name = hv[2 * n];
        r->head.headers[n].name_len = strlen(hv[2 * n]);
        r->head.headers[n].value = hv[2 * n + 1];
        r->head.headers[n].value_len = strlen(hv[2 * n + 1]);
    }
    r->head.num_headers = n;
    memset(out, 'x', AUTH_IP_MAX);
    auth_client_ip(r, out);
    free(r);
    free(c);
}

static void assert_client_ip(const char *peer, const char *xff, const char *want)
{
    char out[AUTH_IP_MAX];

    if (xff)
        client_ip_h(peer, ARGS("Host", "x", "X-Forwarded-For", xff), out);
    else
        client_ip_h(peer, ARGS("Host", "x"), out);
    if (strcmp(out, want) != 0)
        fail_msg("peer %s, XFF \"%s\": got \"%s\", want \"%s\"", peer, xff ? xff : "(none)", out,
                 want);
}

static void test_client_ip_untrusted(void **state)
{
    http_req_t *r = calloc(1, sizeof *r);
    char out[AUTH_IP_MAX];

    start(NOARGS);
    assert_client_ip("127.0.0.1", NULL, "127.0.0.1");
    assert_client_ip("127.0.0.1", "1.2.3.4", "127.0.0.1");
    assert_client_ip("::1", "1.2.3.4, 10.0.0.5", "::1");
    /* no connection at all */
    assert_non_null(r);
    auth_client_ip(r, out);
    assert_string_equal(out, "");
    free(r);
}

static void test_client_ip_trusted(void **state)
{
    start(ARGS("--auth-trusted-proxies", "127.0.0.1/32,10.0.0.0/8"));
    assert_client_ip("127.0.0.1", "1.2.3.4, 10.0.0.5", "1.2.3.4");
    assert_client_ip("127.0.0.1", "1.2.3.4,10.0.0.5", "1.2.3.4");
    assert_client_ip("127.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.5", "1.2.3.4");
    assert_client_ip("127.0.0.1", "1.2.3.4", "1.2.3.4");
    assert_client_ip("127.0.0.1", " \t1.2.3.4 \t", "1.2.3.4");
    assert_client_ip("127.0.0.1", "10.0.0.7", "10.0.0.7");
    assert_client_ip("127.0.0.1", "10.0.0.9, 10.0.0.7", "10.0.0.9");
    assert_client_ip("127.0.0.1", "garbage, 10.0.0.5", "10.0.0.5");
    assert_client_ip("127.0.0.1", "1.2.3.4:5678", "127.0.0.1");
    assert_client_ip("127.0.0.1", "1.2.3.4, ", "127.0.0.1");
    assert_client_ip("127.0.0.1", "", "127.0.0.1");
    assert_client_ip("127.0.0.1", ",", "127.0.0.1");
    assert_client_ip("127.0.0.1", NULL, "127.0.0.1");
    assert_client_ip("10.200.0.1", "2001:db8::1", "2001:db8::1");
    /* a dual-stack listener reports IPv4 peers as mapped addresses */
    assert_client_ip("::ffff:127.0.0.1", "1.2.3.4, ::ffff:10.0.0.5", "1.2.3.4");
    /* a peer that is not a trusted proxy: its own address, whatever it says */
    assert_client_ip("192.168.1.1", "1.2.3.4", "192.168.1.1");
    assert_client_ip("::1", "1.2.3.4", "::1");
    /* an entry too long to be an address ends the walk */
    assert_client_ip("127.0.0.1",
                     "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc, 10.0.0.5",
                     "10.0.0.5");
}

static void test_client_ip_trusted_v6(void **state)
{
    start(ARGS("--auth-trusted-proxies", "127.0.0.1/32 10.0.0.0/8 ::1/128 fd00::/8"));
    assert_client_ip("::1", "2001:db8::1", "2001:db8::1");
    assert_client_ip("::1", "2001:db8::1, fd00::7, 10.1.1.1", "2001:db8::1");
    assert_client_ip("::2", "2001:db8::1", "::2");
    assert_client_ip("::1", "1.2.3.4, ::1", "1.2.3.4");
}

/*
 * A proxy that adds its own X-Forwarded-For line (HAProxy's
 * "option forwardfor" does) after the one the client sent: the header is
 * the two lines joined (RFC 9110 5.3), so the right-most address is the
 * one the proxy wrote. Reading only the first line takes the client's
 * word for its address.
 */
static void test_client_ip_repeated_header(void **state)
{
    char out[AUTH_IP_MAX];

    start(ARGS("--auth-trusted-proxies", "127.0.0.1/32"));
    client_ip_h("127.0.0.1",
                ARGS("Host", "x", "X-Forwarded-For", "9.9.9.9", "X-Forwarded-For", "5.5.5.5"),
                out);
    assert_string_equal(out, "5.5.5.5");
}

static void test_admin_allow(void **state)
{
    start(NOARGS);
    assert_true(auth_admin_ip_allowed("127.0.0.1"));
    assert_true(auth_admin_ip_allowed("203.0.113.9"));
    assert_true(auth_admin_ip_allowed("::1"));
    assert_true(auth_admin_ip_allowed(""));

    reconfigure(ARGS("--auth-admin-allow", "10.0.0.0/8, ::1"));
    assert_true(auth_admin_ip_allowed("10.1.2.3"));
    assert_true(auth_admin_ip_allowed("::1"));
    assert_false(auth_admin_ip_allowed("127.0.0.1"));
    assert_false(auth_admin_ip_allowed("11.0.0.1"));
    assert_false(auth_admin_ip_allowed("::2"));
    assert_false(auth_admin_ip_allowed(""));
    assert_false(auth_admin_ip_allowed("garbage"));
}

/* ===================================================================================
 * auth_still_valid
 * =================================================================================== */

static void test_still_valid(void **state)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
    principal_t *p, *jp, *old;
    perm_t none;
    int64_t now = clock_now_ms();
    char *tok;

    start(NOARGS);
    make_key(NULL, NULL, key, id);
    p = check_ok(key, "127.0.0.1");
    assert_true(auth_still_valid(p, now));
    tok = mint(key);
    jp = check_ok(tok, "127.0.0.1");
    assert_true(auth_still_valid(jp, now));
    assert_false(auth_still_valid(jp, jp->expires_ms + 1));

    /* a principal whose own expiry has passed */
    memset(&none, 0, sizeof none);
    old = principal_new(PRINCIPAL_API_KEY, "default", 7, id, strlen(id), &none, false, now - 1000);
    assert_non_null(old);
    assert_false(auth_still_valid(old, now));
    principal_unref(old);

    revoke_key(id);
    assert_false(auth_still_valid(p, clock_now_ms()));
    assert_false(auth_still_valid(jp, clock_now_ms()));
    principal_unref(p);
    principal_unref(jp);
    free(tok);

    /* a key that expires */
    make_key_at(NULL, NULL, now, 60000, key, id, NULL);
    p = check_ok(key, "127.0.0.1");
    assert_true(auth_still_valid(p, now + 59999));
    assert_false(auth_still_valid(p, now + 60000));
    principal_unref(p);

    /* a key-less principal (deleted key, unknown id) is not valid */
    memset(&none, 0, sizeof none);
    old = principal_new(PRINCIPAL_API_KEY, "default", 7, "AAAAAAAAAAAA", 12, &none, false, 0);
    assert_non_null(old);
    assert_false(auth_still_valid(old, now));
    principal_unref(old);
}

/* ===================================================================================
 * HTTP entry points
 * =================================================================================== */

typedef struct fake_req {
    conn_t *conn;
    http_req_t *r;
    char target[AUTH_CRED_MAX + 128];
    char auth[AUTH_CRED_MAX + 64];
} fake_req_t;

/* A GET of target from 127.0.0.1 with an optional Authorization value;
 * marked as answered so that a refusal only records its headers. */
static void fake_req(fake_req_t *f, const char *target, const char *authorization)
{
    http_head_t *h;
    const char *q;

    f->conn = calloc(1, sizeof *f->conn);
    f->r = calloc(1, sizeof *f->r);
    assert_non_null(f->conn);
    assert_non_null(f->r);
    snprintf(f->conn->peer, sizeof f->conn->peer, "127.0.0.1");
    snprintf(f->target, sizeof f->target, "%s", target);
    f->r->conn = f->conn;
    f->r->responded = true;
    buf_init(&f->r->resp_headers, 4096);
    h = &f->r->head;
    h->method = "GET";
    h->method_len = 3;
    h->target = f->target;
    h->target_len = strlen(f->target);
    q = strchr(f->target, '?');
    h->path = f->target;
    h->path_len = q ? (size_t)(q - f->target) : h->target_len;
    h->query = q ? q + 1 : NULL;
    h->query_len = q ? strlen(q + 1) : 0;
    h->headers[0] = (http_header_t){"Host", 4, "x", 1};
    h->num_headers = 1;
    if (authorization) {
        snprintf(f->auth, sizeof f->auth, "%s", authorization);
        h->headers[1] = (http_header_t){"Authorization", 13, f->auth, strlen(f->auth)};
        h->num_headers = 2;
    }
}

static void fake_free(fake_req_t *f)
{
    buf_free(&f->r->resp_headers);
    free(f->r);
    free(f->conn);
}

static const char *resp_headers(const fake_req_t *f)
{
    return f->r->resp_headers.data ? f->r->resp_headers.data : "";
}

static void test_request_credentials(void **state)
{
    static fake_req_t f;
    char hdr[APIKEY_LEN + 32], target[APIKEY_LEN + 64];
    uint64_t before[MA_MAX];
    principal_t *p;

    start(NOARGS);
    snprintf(hdr, sizeof hdr, "Bearer %s", F.admin_key);
    fake_req(&f, "/events?x=1", hdr);
    p = auth_request(f.r, 0);
    assert_non_null(p);
    assert_true(p->superadmin);
    assert_int_equal(f.r->resp_headers.len, 0);
    principal_unref(p);
    fake_free(&f);

    snprintf(hdr, sizeof hdr, "bEaReR    %s", F.admin_key);
    fake_req(&f, "/events", hdr);
    p = auth_request(f.r, 0);
    assert_non_null(p);
    principal_unref(p);
    fake_free(&f);

    /* ?token= only where the caller allows it */
    snprintf(target, sizeof target, "/events?a=b&token=%s", F.admin_key);
    fake_req(&f, target, NULL);
    p = auth_request(f.r, AUTH_QUERY_TOKEN);
    assert_non_null(p);
    principal_unref(p);
    fake_free(&f);

    snap(before);
    fake_req(&f, target, NULL);
    assert_null(auth_request(f.r, 0));
    assert_moved(before, MA_MISSING, 1);
    assert_non_null(strstr(resp_headers(&f), "WWW-Authenticate: Bearer"));
    fake_free(&f);

    /* the header wins over the query */
    snap(before);
    fake_req(&f, target, "Bearer garbage");
    assert_null(auth_request(f.r, AUTH_QUERY_TOKEN));
    assert_moved(before, MA_MALFORMED, 1);
    fake_free(&f);

    /* another scheme is no credential */
    snprintf(hdr, sizeof hdr, "Basic %s", F.admin_key);
    snap(before);
    fake_req(&f, "/events", hdr);
    assert_null(auth_request(f.r, 0));
    assert_moved(before, MA_MISSING, 1);
    fake_free(&f);
}

static void test_respond_headers(void **state)
{
    static fake_req_t f;
    auth_outcome_t o = {.status = 429, .metric = MA_RATE_LIMITED, .code = "rate_limited",
                        .message = "slow down", .reason = "test", .retry_after_ms = 1001};

    start(NOARGS);
    fake_req(&f, "/x", NULL);
    auth_respond(f.r, &o);
    assert_non_null(strstr(resp_headers(&f), "Retry-After: 2\r\n"));
    assert_null(strstr(resp_headers(&f), "WWW-Authenticate"));
    fake_free(&f);

    o.retry_after_ms = 1000;
    fake_req(&f, "/x", NULL);
    auth_respond(f.r, &o);
    assert_non_null(strstr(resp_headers(&f), "Retry-After: 1\r\n"));
    fake_free(&f);

    o = (auth_outcome_t){.status = 401, .metric = MA_UNKNOWN, .code = "unauthorized",
                         .message = "invalid credentials", .reason = "test"};
    fake_req(&f, "/x", NULL);
    auth_respond(f.r, &o);
    assert_non_null(strstr(resp_headers(&f), "WWW-Authenticate: Bearer realm=\"switchboard\""));
    assert_null(strstr(resp_headers(&f), "Retry-After"));
    fake_free(&f);
}

/* ===================================================================================
 * Secrets never reach the log
 * =================================================================================== */

static void test_log_holds_no_secret(void **state)
{
    char path[512], logpath[512], hdr[APIKEY_LEN + 32], target[APIKEY_LEN + 64];
    char bad[APIKEY_LEN + 1];
    static fake_req_t f;
    principal_t *p;
    char *text, *tok;

    snprintf(logpath, sizeof logpath, "%s.log", F.dir);
    load_cfg(NOARGS);
    open_store();
    log_set_level(LOG_LEVEL_DEBUG);
    capture_begin(logpath);
    init_ok();
    admin_path(path, sizeof path);
    read_key_file(path, F.admin_key);
    tok = mint(F.admin_key);
    check_ok_drop(tok, "127.0.0.1");
    memcpy(bad, F.admin_key, sizeof bad);
    bad[APIKEY_LEN - 2] = bad[APIKEY_LEN - 2] == 'A' ? 'B' : 'A';
    check_invalid(bad, APIKEY_LEN, "127.0.0.1", MA_BAD_SECRET);
    snprintf(target, sizeof target, "/events?token=%s", F.admin_key);
    fake_req(&f, target, NULL);
    p = auth_request(f.r, AUTH_QUERY_TOKEN);
    assert_non_null(p);
    principal_unref(p);
    fake_free(&f);
    snprintf(hdr, sizeof hdr, "Bearer %s", bad);
    fake_req(&f, "/events", hdr);
    assert_null(auth_request(f.r, 0));
    fake_free(&f);
    text = capture_end(logpath);
    log_set_level(LOG_LEVEL_ERROR);
    unlink(logpath);

    /* the log did record the attempts, by key id */
    assert_non_null(strstr(text, "\"outcome\":\"bad_secret\""));
    assert_non_null(strstr(text, "admin key created"));
    assert_non_null(strstr(text, "\"endpoint\":\"GET /events\""));
    /* but no key, no secret part, no token, no query string */
    assert_null(strstr(text, F.admin_key + APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1));
    assert_null(strstr(text, bad + APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1));
    assert_null(strstr(text, strrchr(tok, '.') + 1));
    assert_null(strstr(text, "token="));
    free(text);
    free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T_(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T_(test_bootstrap_first_start),
        T_(test_bootstrap_custom_file_and_tenant),
        T_(test_bootstrap_replaces_loose_file),
        T_(test_bootstrap_refuses_symlink),
        T_(test_restart_keeps_key),
        T_(test_restart_without_file_makes_no_key),
        T_(test_stored_keys_load_and_bad_record_skipped),
        T_(test_token_secret_survives_restart),
        T_(test_revoked_tokens_loaded_at_start),
        T_(test_init_errors),
        T_(test_bootstrap_failed_write_then_restart),
        T_(test_check_missing),
        T_(test_check_malformed),
        T_(test_check_unknown_and_bad_secret),
        T_(test_check_jwt_shaped_garbage),
        T_(test_check_tokens),
        T_(test_check_revoked_and_expired_keys),
        T_(test_check_key_cidrs),
        T_(test_metrics_render),
        T_(test_usage_log_and_forbidden),
        T_(test_fail_limit),
        T_(test_fail_limit_ignores_missing),
        T_(test_ip_rate),
        T_(test_ip_rate_long_addresses),
        T_(test_key_rate_from_perms),
        T_(test_key_rate_default),
        T_(test_lease_key_cap),
        T_(test_lease_double_release_counts_once),
        T_(test_lease_ip_cap),
        T_(test_lease_key_default_cap_returns_ip_place),
        T_(test_client_ip_untrusted),
        T_(test_client_ip_trusted),
        T_(test_client_ip_trusted_v6),
        T_(test_client_ip_repeated_header),
        T_(test_admin_allow),
        T_(test_still_valid),
        T_(test_request_credentials),
        T_(test_respond_headers),
        T_(test_log_holds_no_secret),
#undef T_
    };

    /* the environment must not configure what the tests set by flags */
    unsetenv("JWT_SECRET");
    unsetenv("SWITCHBOARD_ADMIN_KEY_FILE");
    unsetenv("SWITCHBOARD_TRUSTED_PROXIES");
    unsetenv("SWITCHBOARD_ADMIN_ALLOW");
    unsetenv("GITHUB_WEBHOOK_SECRET");
    unsetenv("KAKAO_SIGNATURE_SECRET");
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
