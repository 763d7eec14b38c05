/*
 * test_users.c - the GitHub user registry: create and update by GitHub id,
 * id allocation (and the persisted counter across a restart), the
 * principal a user token turns into (exactly the readable repositories,
 * sanitised subjects, nothing else), fail-closed staleness, the
 * still-valid check streams use, and that the stored record never holds
 * the plaintext GitHub token (read back from the sqlite files).
 */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/users.h"
#include "core/clock.h"
#include "ops/log.h"

#define TOKEN "gho_PLAINTEXT_token_0123456789"
#define NOW 1700000000000ll
#define TTL 60000

static struct {
    char dir[256];
    store_t *store;
    int done_calls;
    int last_err;
    users_view_t last;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} F = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void post_direct(void *target, void (*fn)(void *), void *arg) { fn(arg); }

static void on_done(void *arg, int err, const users_view_t *v)
{
    pthread_mutex_lock(&F.mu);
    F.done_calls++;
    F.last_err = err;
    F.last = *v;
    pthread_cond_signal(&F.cv);
    pthread_mutex_unlock(&F.mu);
}

static void wait_done(int n)
{
    pthread_mutex_lock(&F.mu);
    while (F.done_calls < n)
        pthread_cond_wait(&F.cv, &F.mu);
    pthread_mutex_unlock(&F.mu);
}

static users_cfg_t cfg(void)
{
    users_cfg_t c = {
        .github = {.oauth_url = "http://127.0.0.1:1", .api_url = "http://127.0.0.1:1",
                   .client_id = "id", .client_secret = "secret"},
        .ttl_ms = TTL,
        .tenant = "default",
    };
    memset(c.key, 7, sizeof c.key);
    return c;
}

static int setup(void **state)
{
    users_cfg_t c = cfg();
    char err[128];

    F.done_calls = 0;
    log_set_level(LOG_LEVEL_ERROR);
    return users_init(&c, NULL, err, sizeof err);
}

static int teardown(void **state)
{
    users_shutdown();
    return 0;
}

static github_user_t gh(int64_t id, const char *login)
{
    github_user_t u = {.id = id};
    snprintf(u.login, sizeof u.login, "%s", login);
    snprintf(u.email, sizeof u.email, "%s@example.com", login);
    return u;
}

#define REPOS(...) ((github_repos_t){(char *[]){__VA_ARGS__}, \
                    sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)})

static principal_t *token_principal(const char *id)
{
    perm_t none;
    principal_t *p;

    memset(&none, 0, sizeof none);
    p = principal_new(PRINCIPAL_JWT, "default", 7, id, strlen(id), &none, false, NOW + 3600000);
    assert_non_null(p);
    snprintf(p->jti, sizeof p->jti, "jti-1");
    return p;
}

static bool can_sub(const principal_t *p, const char *s)
{
    return principal_can_subscribe(p, s, strlen(s)) && principal_can_history(p, s, strlen(s));
}

static void login_creates_then_updates(void **state)
{
    github_user_t a = gh(1001, "alice"), a2 = gh(1001, "alice2"), b = gh(2002, "bob");
    github_repos_t r = REPOS("org/repoA");

    assert_int_equal(users_login(&a, TOKEN, &r, NOW, NULL, on_done, NULL), 0);
    assert_int_equal(F.done_calls, 1);
    assert_int_equal(F.last.id, 1);
    assert_int_equal(F.last.github_id, 1001);
    assert_string_equal(F.last.username, "alice");
    assert_int_equal(users_login(&b, TOKEN, &r, NOW, NULL, on_done, NULL), 0);
    assert_int_equal(F.last.id, 2);
    assert_int_equal(users_login(&a2, TOKEN, &r, NOW, NULL, on_done, NULL), 0);
    assert_int_equal(F.last.id, 1);
    assert_string_equal(F.last.username, "alice2");
    assert_string_equal(F.last.email, "alice2@example.com");
    assert_true(users_alive("user_1", 6));
    assert_true(users_alive("user_2", 6));
    assert_false(users_alive("user_3", 6));
}

static void user_ids(void **state)
{
    static const char *const bad[] = {"user_", "user_0", "user_01", "user_1x", "usr_1",
                                      "user_-1", "user_99999999999999999999", "User_1", ""};

    assert_true(users_is_user_id("user_1", 6));
    assert_true(users_is_user_id("user_1234567890", 15));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(users_is_user_id(bad[i], strlen(bad[i])));
        assert_false(users_alive(bad[i], strlen(bad[i])));
    }
}

static void subjects(void **state)
{
    char s[300];

    assert_int_equal(users_repo_subject("org/repoA", s), strlen("webhooks.github.org.repoA"));
    assert_string_equal(s, "webhooks.github.org.repoA");
    users_repo_subject("my.org/re po*", s);
    assert_string_equal(s, "webhooks.github.my_org.re_po_");
    assert_int_equal(users_repo_subject("noslash", s), 0);
    assert_int_equal(users_repo_subject("a/b/c", s), 0);
    assert_int_equal(users_repo_subject("/b", s), 0);
    assert_int_equal(users_repo_subject("a/", s), 0);
}

static void principal_is_exactly_the_repos(void **state)
{
    github_user_t a = gh(1001, "alice");
    github_repos_t r = REPOS("org/repoA", "org/repoB", "bad/name/x");
    principal_t *tp = token_principal("user_1"), *p, *other;

    assert_int_equal(users_login(&a, TOKEN, &r, clock_now_ms(), NULL, NULL, NULL), 0);
    p = users_principal(tp, clock_now_ms());
    assert_non_null(p);
    assert_string_equal(p->id, "user_1");
    assert_string_equal(p->tenant, "default");
    assert_string_equal(p->jti, "jti-1");
    assert_int_equal(p->expires_ms, tp->expires_ms);
    assert_true(can_sub(p, "webhooks.github.org.repoA"));
    assert_true(can_sub(p, "webhooks.github.org.repoB"));
    assert_false(can_sub(p, "webhooks.github.org.repoC"));
    assert_false(can_sub(p, "webhooks.github.org.*"));
    assert_false(can_sub(p, ">"));
    assert_int_equal(p->perm.subscribe.n, 2);
    assert_int_equal(p->perm.publish.n, 0);
    assert_false(p->perm.admin);
    assert_false(p->superadmin);
    assert_false(principal_can_publish(p, "webhooks.github.org.repoA", 25, NULL, 0));
    assert_true(users_still_valid(p, clock_now_ms()));
    /* access to repoB lost: the old principal is no longer valid */
    r = REPOS("org/repoA");
    assert_int_equal(users_set_repos(1, &r, clock_now_ms()), 0);
    assert_false(users_still_valid(p, clock_now_ms()));
    principal_unref(p);
    /* an unknown user gets nothing */
    other = token_principal("user_9");
    assert_null(users_principal(other, clock_now_ms()));
    assert_false(users_still_valid(other, clock_now_ms()));
    principal_unref(other);
    principal_unref(tp);
}

static void stale_list_fails_closed(void **state)
{
    github_user_t a = gh(1001, "alice");
    github_repos_t r = REPOS("org/repoA");
    principal_t *tp = token_principal("user_1"), *p;

    assert_int_equal(users_login(&a, TOKEN, &r, NOW, NULL, NULL, NULL), 0);
    p = users_principal(tp, NOW + TTL);               /* at the TTL: still good */
    assert_true(can_sub(p, "webhooks.github.org.repoA"));
    assert_true(users_still_valid(p, NOW + TTL));
    assert_false(users_still_valid(p, NOW + TTL + 1));
    principal_unref(p);
    p = users_principal(tp, NOW + TTL + 1);           /* past it: nothing */
    assert_non_null(p);
    assert_int_equal(p->perm.subscribe.n, 0);
    assert_false(can_sub(p, "webhooks.github.org.repoA"));
    principal_unref(p);
    assert_int_equal(users_set_repos(7, &r, NOW), -1);  /* no such user */
    principal_unref(tp);
}

static void bad_config(void **state)
{
    users_cfg_t c = cfg();
    char err[128] = "";

    c.ttl_ms = 0;
    assert_int_equal(users_init(&c, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "repos_ttl_ms"));
    assert_false(users_enabled());
    c = cfg();
    c.tenant = "bad tenant";
    assert_int_equal(users_init(&c, NULL, err, sizeof err), -1);
}

/* --- with the sqlite store ---------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void open_store(void)
{
    char err[256] = "";
    store_cfg_t sc = {.backend = "sqlite", .dir = F.dir, .fsync = STORE_FSYNC_NORMAL,
                      .retention_interval_ms = 60000, .max_batch = 16, .readers = 1,
                      .post = post_direct};

    F.store = store_open(&sc, err, sizeof err);
    if (!F.store)
        fail_msg("store_open: %s", err);
}

static void init_with_store(void)
{
    users_cfg_t c = cfg();
    char err[128] = "";

    if (users_init(&c, F.store, err, sizeof err))
        fail_msg("users_init: %s", err);
}

/* True when the file at path contains needle. */
static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    size_t n = strlen(needle), have = 0;
    char *data = NULL;
    bool hit = false;

    if (!f)
        return false;
    data = malloc(64u << 20);
    if (data)
        have = fread(data, 1, 64u << 20, f);
    fclose(f);
    for (size_t i = 0; data && i + n <= have && !hit; i++)
        hit = memcmp(data + i, needle, n) == 0;
    free(data);
    return hit;
}

static void persisted_and_reloaded(void **state)
{
    github_user_t a = gh(1001, "alice"), b = gh(2002, "bob"), c = gh(3003, "carol");
    github_repos_t r = REPOS("org/repoA", "org/repoB");
    char path[512];
    principal_t *tp, *p;

    snprintf(F.dir, sizeof F.dir, "/tmp/sb_test_users_XXXXXX");
    assert_non_null(mkdtemp(F.dir));
    open_store();
    init_with_store();
    F.done_calls = 0;
    assert_int_equal(users_login(&a, TOKEN, &r, clock_now_ms(), NULL, on_done, NULL), 0);
    assert_int_equal(users_login(&b, TOKEN, &r, clock_now_ms(), NULL, on_done, NULL), 0);
    wait_done(2);
    assert_int_equal(F.last_err, 0);
    store_close(F.store);
    users_shutdown();
    snprintf(path, sizeof path, "%s/switchboard.db", F.dir);
    assert_int_equal(access(path, R_OK), 0);
    assert_true(file_has(path, "alice"));             /* the record is in there */
    assert_false(file_has(path, TOKEN));              /* but never the token */
    snprintf(path, sizeof path, "%s/switchboard.db-wal", F.dir);
    assert_false(file_has(path, TOKEN));

    open_store();
    init_with_store();
    assert_true(users_alive("user_1", 6));
    assert_true(users_alive("user_2", 6));
    tp = token_principal("user_2");
    p = users_principal(tp, clock_now_ms());
    assert_true(can_sub(p, "webhooks.github.org.repoB"));
    principal_unref(p);
    principal_unref(tp);
    assert_int_equal(users_login(&c, TOKEN, &r, clock_now_ms(), NULL, on_done, NULL), 0);
    wait_done(3);
    assert_int_equal(F.last.id, 3);                   /* the counter survived */
    store_close(F.store);
    F.store = NULL;
    users_shutdown();
    nftw(F.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(login_creates_then_updates, setup, teardown),
        cmocka_unit_test_setup_teardown(user_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(subjects, setup, teardown),
        cmocka_unit_test_setup_teardown(principal_is_exactly_the_repos, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_list_fails_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_config, setup, teardown),
        cmocka_unit_test(persisted_and_reloaded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
