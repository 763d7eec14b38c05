/*
 * users.c - the GitHub user registry and the permissions it grants. See
 * users.h.
 *
 * Shape. Users sit in an array indexed by local id (ids are dense: a
 * counter from 1), so the per-request lookup of "user_<n>" is O(1); a
 * login looks up by GitHub id with a scan (logins are rare). One mutex
 * guards the array and every user's fields; principals are built under it
 * from the current repository list and then live on their own (immutable,
 * refcounted), so a refresh never changes a principal in use: the next
 * request gets the new list.
 *
 * Refresh. users_principal decides under the lock whether a refresh is
 * due, marks the user busy and copies what the worker needs (sealed token,
 * id) into a job; the job runs on the loop's thread pool without the lock
 * and its after-work callback (on the same loop) swaps the list in and
 * persists the record. Persisting is best effort (logged on failure): the
 * list in memory is what grants access.
 */
#include "auth/users.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "core/clock.h"
#include "core/errmsg.h"
#include "core/subject.h"
#include "net/loop.h"
#include "ops/log.h"

#define USERS__MAX 1000000u          /* local ids handed out at most */
#define USERS__SEQ_KEY "next_id"
#define USERS__ID_TEXT 32            /* "user_" + 20 digits + NUL */

typedef struct users__user {
    uint64_t id;
    int64_t github_id;
    char login[GITHUB_LOGIN_MAX + 1];
    char email[GITHUB_EMAIL_MAX + 1];
    char *sealed;                    /* the sealed access token */
    github_repos_t repos;
    int64_t fetched_ms;              /* when repos were read */
    int64_t created_ms;
    int64_t retry_ms;                /* no refresh before this */
    bool refreshing;
} users__user_t;

static struct {
    bool on;
    users_cfg_t cfg;
    store_t *store;
    pthread_mutex_t mu;
    users__user_t **by_id;           /* [id], NULL for holes */
    size_t cap;                      /* entries of by_id */
    uint64_t next_id;
} U = {.mu = PTHREAD_MUTEX_INITIALIZER};

bool users_enabled(void) { return U.on; }

/* --- ids and subjects ------------------------------------------------------ */

/* The n of "user_<n>" (no leading zero, no overflow), or 0. */
static uint64_t users__parse_id(const char *id, size_t len)
{
    size_t plen = sizeof(USERS_ID_PREFIX) - 1;
    uint64_t v = 0;

    if (len <= plen || len > plen + 19 || memcmp(id, USERS_ID_PREFIX, plen) != 0 ||
        id[plen] == '0')
        return 0;
    for (size_t i = plen; i < len; i++) {
        if (id[i] < '0' || id[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(id[i] - '0');
    }
    return v;
}

bool users_is_user_id(const char *id, size_t len) { return users__parse_id(id, len) != 0; }

static size_t users__id_text(uint64_t id, char out[USERS__ID_TEXT])
{
    int n = snprintf(out, USERS__ID_TEXT, USERS_ID_PREFIX "%" PRIu64, id);
    return n > 0 ? (size_t)n : 0;
}

size_t users_repo_subject(const char *full_name, char *out)
{
    const char *slash = strchr(full_name, '/');
    char org[SUBJ_MAX_TOKEN_LEN + 1], repo[SUBJ_MAX_TOKEN_LEN + 1];
    size_t ol, rl;
    int n;

    if (!slash || strchr(slash + 1, '/'))
        return 0;
    ol = subj_sanitize_token(full_name, (size_t)(slash - full_name), org, sizeof org);
    rl = subj_sanitize_token(slash + 1, strlen(slash + 1), repo, sizeof repo);
    if (!ol || !rl)
        return 0;
    n = snprintf(out, SUBJ_MAX_LEN + 1, "webhooks.github.%s.%s", org, repo);
    if (n < 0 || n > SUBJ_MAX_LEN || !subj_valid_subject(out, (size_t)n))
        return 0;
    return (size_t)n;
}

/* --- the registry (callers hold U.mu) ---------------------------------------- */

static users__user_t *users__get(uint64_t id)
{
    return id < U.cap ? U.by_id[id] : NULL;
}

static users__user_t *users__by_github(int64_t gid)
{
    for (size_t i = 1; i < U.cap; i++)
        if (U.by_id[i] && U.by_id[i]->github_id == gid)
            return U.by_id[i];
    return NULL;
}

static int users__place(users__user_t *u)
{
    if (u->id == 0 || u->id >= USERS__MAX)
        return -1;
    if (u->id >= U.cap) {
        size_t cap = U.cap ? U.cap : 16;
        users__user_t **v;

        while (cap <= u->id)
            cap *= 2;
        if (!(v = realloc(U.by_id, cap * sizeof *v)))
            return -1;
        memset(v + U.cap, 0, (cap - U.cap) * sizeof *v);
        U.by_id = v;
        U.cap = cap;
    }
    if (U.by_id[u->id])
        return -1;
    U.by_id[u->id] = u;
    if (u->id >= U.next_id)
        U.next_id = u->id + 1;
    return 0;
}

static void users__free(users__user_t *u)
{
    if (!u)
        return;
    free(u->sealed);
    github_repos_free(&u->repos);
    free(u);
}

/* A deep copy of src into dst (empty on failure). */
static int users__repos_copy(github_repos_t *dst, const github_repos_t *src)
{
    memset(dst, 0, sizeof *dst);
    if (src->n == 0)
        return 0;
    if (!(dst->v = calloc(src->n, sizeof *dst->v)))
        return -1;
    for (; dst->n < src->n; dst->n++)
        if (!(dst->v[dst->n] = strdup(src->v[dst->n]))) {
            github_repos_free(dst);
            return -1;
        }
    return 0;
}

/* --- records ------------------------------------------------------------------ */

static json_t *users__record(const users__user_t *u)
{
    char gid[24];
    json_t *repos = json_array(), *rec;

    snprintf(gid, sizeof gid, "%" PRId64, u->github_id);
    for (size_t i = 0; repos && i < u->repos.n; i++)
        if (json_array_append_new(repos, json_string(u->repos.v[i]))) {
            json_decref(repos);
            return NULL;
        }
    if (!repos)
        return NULL;
    rec = json_pack("{sI ss ss ss ss so sI sI}", "id", (json_int_t)u->id, "githubId", gid,
                    "username", u->login, "email", u->email, "token", u->sealed,
                    "repos", repos, "fetchedAt", (json_int_t)u->fetched_ms,
                    "createdAt", (json_int_t)u->created_ms);
    return rec;
}

static int users__copy_str(char *out, size_t cap, const json_t *v)
{
    size_t n = json_string_length(v);

    if (!json_is_string(v) || n >= cap || strlen(json_string_value(v)) != n)
        return -1;
    memcpy(out, json_string_value(v), n + 1);
    return 0;
}

static users__user_t *users__from_record(const json_t *rec)
{
    users__user_t *u = calloc(1, sizeof *u);
    const json_t *repos = json_object_get(rec, "repos"), *e;
    const char *gid = json_string_value(json_object_get(rec, "githubId"));
    github_repos_t r = {0};
    size_t i;

    if (!u || !gid || !json_is_array(repos) ||
        users__copy_str(u->login, sizeof u->login, json_object_get(rec, "username")) ||
        users__copy_str(u->email, sizeof u->email, json_object_get(rec, "email")) ||
        !json_is_string(json_object_get(rec, "token")) ||
        !(u->sealed = strdup(json_string_value(json_object_get(rec, "token")))))
        goto fail;
    u->id = (uint64_t)json_integer_value(json_object_get(rec, "id"));
    u->github_id = strtoll(gid, NULL, 10);
    u->fetched_ms = json_integer_value(json_object_get(rec, "fetchedAt"));
    u->created_ms = json_integer_value(json_object_get(rec, "createdAt"));
    if (!(r.v = calloc(json_array_size(repos) + 1, sizeof *r.v)))
        goto fail;
    u->repos = r;
    json_array_foreach(repos, i, e) {
        if (!json_is_string(e) || !(u->repos.v[u->repos.n] = strdup(json_string_value(e))))
            goto fail;
        u->repos.n++;
    }
    if (u->github_id <= 0)
        goto fail;
    return u;
fail:
    users__free(u);
    return NULL;
}

typedef struct users__persist {
    users_done_fn done;
    void *arg;
    users_view_t view;
    int err;
} users__persist_t;

static void users__persisted(void *arg, int err, uint64_t rev)
{
    users__persist_t *p = arg;

    if (err)
        LOG_ERROR("GitHub user not stored", "\"user\":%" PRIu64 ",\"error\":%d", p->view.id, err);
    if (p->done)
        p->done(p->arg, err, &p->view);
    free(p);
}

static void users__view(const users__user_t *u, users_view_t *v)
{
    v->id = u->id;
    v->github_id = u->github_id;
    memcpy(v->username, u->login, sizeof v->username);
    memcpy(v->email, u->email, sizeof v->email);
    v->repos = u->repos.n;
}

static void users__seq_done(void *arg, int err, uint64_t rev)
{
    if (err)
        LOG_ERROR("GitHub user counter not stored", "\"error\":%d", err);
}

/*
 * Persists u's record (called with U.mu held; text is built here) and the
 * counter when with_seq; p->done runs after the record is durable. With
 * no store p->done runs now. -1 when nothing was queued (p not consumed).
 */
static int users__persist(const users__user_t *u, bool with_seq, void *target,
                          users__persist_t *p)
{
    char key[24], seq[24];
    json_t *rec = users__record(u);
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    int rc = -1;

    json_decref(rec);
    users__view(u, &p->view);
    if (!text)
        return -1;
    snprintf(key, sizeof key, "%" PRId64, u->github_id);
    snprintf(seq, sizeof seq, "%" PRIu64, U.next_id);
    if (!U.store) {
        users__persisted(p, 0, 0);
        rc = 0;
    } else if ((!with_seq || store_meta_put(U.store, USERS_NS_SEQ, USERS__SEQ_KEY, seq,
                                            strlen(seq), 0, target, users__seq_done, NULL) == 0) &&
               store_meta_put(U.store, USERS_NS, key, text, strlen(text), 0, target,
                              users__persisted, p) == 0) {
        rc = 0;
    }
    free(text);
    return rc;
}

/* --- login ------------------------------------------------------------------- */

static users__user_t *users__create(const github_user_t *gu, int64_t now_ms)
{
    users__user_t *u;

    if (U.next_id >= USERS__MAX || !(u = calloc(1, sizeof *u)))
        return NULL;
    u->id = U.next_id;
    u->github_id = gu->id;
    u->created_ms = now_ms;
    if (users__place(u)) {
        free(u);
        return NULL;
    }
    return u;
}

int users_login(const github_user_t *gu, const char *token,
                const github_repos_t *repos, int64_t now_ms, void *target,
                users_done_fn done, void *arg)
{
    char idtext[USERS__ID_TEXT], *sealed = NULL;
    users__persist_t *p = calloc(1, sizeof *p);
    github_repos_t copy = {0};
    users__user_t *u;
    bool created = false;
    int rc = -1;

    if (!p || users__repos_copy(&copy, repos)) {
        free(p);
        return -1;
    }
    *p = (users__persist_t){.done = done, .arg = arg};
    pthread_mutex_lock(&U.mu);
    if (!(u = users__by_github(gu->id))) {
        if (!(u = users__create(gu, now_ms)))
            goto out;
        created = true;
    }
    if (seal_seal(U.cfg.key, token, strlen(token), idtext, users__id_text(u->id, idtext),
                  &sealed))
        goto out;
    free(u->sealed);
    u->sealed = sealed;
    memcpy(u->login, gu->login, sizeof u->login);
    memcpy(u->email, gu->email, sizeof u->email);
    github_repos_free(&u->repos);
    u->repos = copy;
    memset(&copy, 0, sizeof copy);
    u->fetched_ms = now_ms;
    u->retry_ms = 0;
    rc = users__persist(u, created, target, p);
out:
    if (rc && created && u && !u->sealed) {       /* undo a half-made user */
        U.by_id[u->id] = NULL;
        U.next_id--;
        users__free(u);
    }
    pthread_mutex_unlock(&U.mu);
    github_repos_free(&copy);
    if (rc)
        free(p);
    return rc;
}

bool users_alive(const char *id, size_t len)
{
    uint64_t n = users__parse_id(id, len);
    bool alive;

    if (!n)
        return false;
    pthread_mutex_lock(&U.mu);
    alive = users__get(n) != NULL;
    pthread_mutex_unlock(&U.mu);
    return alive;
}

int users_set_repos(uint64_t id, const github_repos_t *repos, int64_t fetched_ms)
{
    github_repos_t copy;
    users__user_t *u;
    int rc = -1;

    if (users__repos_copy(&copy, repos))
        return -1;
    pthread_mutex_lock(&U.mu);
    if ((u = users__get(id))) {
        github_repos_free(&u->repos);
        u->repos = copy;
        u->fetched_ms = fetched_ms;
        rc = 0;
    }
    pthread_mutex_unlock(&U.mu);
    if (rc)
        github_repos_free(&copy);
    return rc;
}

/* --- refresh ----------------------------------------------------------------- */

typedef struct users__job {
    uv_work_t work;
    loop_t *loop;
    uint64_t id;
    char *sealed;
    int rc;                          /* GITHUB_* */
    github_repos_t repos;
    int64_t done_ms;
} users__job_t;

static void users__refresh_work(uv_work_t *w)
{
    users__job_t *j = w->data;
    char idtext[USERS__ID_TEXT], err[GITHUB_ERR_LEN] = "", *token = NULL;
    size_t tlen = 0;

    if (seal_open(U.cfg.key, j->sealed, strlen(j->sealed), idtext,
                  users__id_text(j->id, idtext), &token, &tlen)) {
        j->rc = GITHUB_EAUTH;        /* a token we cannot open grants nothing */
        snprintf(err, sizeof err, "the stored token does not open");
    } else {
        j->rc = github_get_repos(&U.cfg.github, token, &j->repos, err, sizeof err);
    }
    seal_free_plain(token, tlen);
    j->done_ms = clock_now_ms();
    if (j->rc)
        LOG_WARN("GitHub permission refresh failed", "\"user\":%" PRIu64 ",\"error\":\"%s\"",
                 j->id, log_str(err, (size_t)-1));
}

static void users__refresh_after(uv_work_t *w, int status)
{
    users__job_t *j = w->data;
    users__user_t *u;
    users__persist_t *p;

    pthread_mutex_lock(&U.mu);
    if ((u = users__get(j->id))) {
        u->refreshing = false;
        if (status == 0 && (j->rc == GITHUB_OK || j->rc == GITHUB_EAUTH)) {
            /* EAUTH: GitHub no longer honours the token, so nothing is readable */
            github_repos_free(&u->repos);
            u->repos = j->repos;
            memset(&j->repos, 0, sizeof j->repos);
            u->fetched_ms = j->done_ms;
            LOG_INFO("GitHub permissions refreshed", "\"user\":%" PRIu64 ",\"repos\":%zu",
                     u->id, u->repos.n);
            if ((p = calloc(1, sizeof *p)) && users__persist(u, false, j->loop, p))
                free(p);
        } else {
            u->retry_ms = j->done_ms + USERS_RETRY_MS;
        }
    }
    pthread_mutex_unlock(&U.mu);
    github_repos_free(&j->repos);
    free(j->sealed);
    free(j);
}

/* Queues a refresh of u on the calling loop (U.mu held). */
static void users__queue_refresh(users__user_t *u, int64_t now_ms)
{
    loop_t *l = loop_current();
    users__job_t *j;

    if (!l || u->refreshing || now_ms < u->retry_ms || !u->sealed)
        return;
    if (!(j = calloc(1, sizeof *j)) || !(j->sealed = strdup(u->sealed)))
        goto fail;
    j->loop = l;
    j->id = u->id;
    j->work.data = j;
    if (uv_queue_work(&l->uv, &j->work, users__refresh_work, users__refresh_after))
        goto fail;
    u->refreshing = true;
    return;
fail:
    if (j)
        free(j->sealed);
    free(j);
}

/* --- principals -------------------------------------------------------------- */

static void users__list_free(perm_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].s);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* subscribe and history lists of the repositories in r. */
static int users__lists(const github_repos_t *r, perm_t *perm)
{
    perm_list_t *s = &perm->subscribe, *h = &perm->history;
    char subj[SUBJ_MAX_LEN + 1];

    if (r->n && (!(s->v = calloc(r->n, sizeof *s->v)) || !(h->v = calloc(r->n, sizeof *h->v))))
        return -1;
    for (size_t i = 0; i < r->n; i++) {
        size_t len = users_repo_subject(r->v[i], subj);

        if (!len)
            continue;
        if (!(s->v[s->n].s = strdup(subj)))
            return -1;
        s->v[s->n++].len = len;
        if (!(h->v[h->n].s = strdup(subj)))
            return -1;
        h->v[h->n++].len = len;
    }
    return 0;
}

principal_t *users_principal(const principal_t *tp, int64_t now_ms)
{
    uint64_t id = users__parse_id(tp->id, tp->id_len);
    perm_t perm;
    principal_t *p = NULL;
    users__user_t *u;
    int64_t age;
    int rc = 0;

    memset(&perm, 0, sizeof perm);
    if (!id || !U.on)
        return NULL;
    pthread_mutex_lock(&U.mu);
    if (!(u = users__get(id))) {
        pthread_mutex_unlock(&U.mu);
        return NULL;
    }
    age = now_ms - u->fetched_ms;
    if (age > U.cfg.ttl_ms / 2)
        users__queue_refresh(u, now_ms);
    if (age <= U.cfg.ttl_ms)
        rc = users__lists(&u->repos, &perm);
    pthread_mutex_unlock(&U.mu);
    if (rc == 0)
        p = principal_new(PRINCIPAL_JWT, U.cfg.tenant, strlen(U.cfg.tenant), tp->id,
                          tp->id_len, &perm, false, tp->expires_ms);
    if (p)
        memcpy(p->jti, tp->jti, sizeof p->jti);
    users__list_free(&perm.subscribe);
    users__list_free(&perm.history);
    return p;
}

/* Whether repository list r still grants pattern pat. The principal was
 * built from the list in order, so the same index is tried first. */
static bool users__grants(const github_repos_t *r, size_t hint, const perm_pat_t *pat)
{
    char subj[SUBJ_MAX_LEN + 1];
    size_t len;

    if (hint < r->n && (len = users_repo_subject(r->v[hint], subj)) == pat->len &&
        memcmp(subj, pat->s, len) == 0)
        return true;
    for (size_t j = 0; j < r->n; j++)
        if ((len = users_repo_subject(r->v[j], subj)) == pat->len &&
            memcmp(subj, pat->s, len) == 0)
            return true;
    return false;
}

bool users_still_valid(const principal_t *p, int64_t now_ms)
{
    users__user_t *u;
    bool ok;

    pthread_mutex_lock(&U.mu);
    u = users__get(users__parse_id(p->id, p->id_len));
    ok = u && now_ms - u->fetched_ms <= U.cfg.ttl_ms;
    if (u && now_ms - u->fetched_ms > U.cfg.ttl_ms / 2)
        users__queue_refresh(u, now_ms);       /* a stream alone keeps it fresh */
    for (size_t i = 0; ok && i < p->perm.subscribe.n; i++)
        ok = users__grants(&u->repos, i, &p->perm.subscribe.v[i]);
    pthread_mutex_unlock(&U.mu);
    return ok;
}

/* --- start-up ---------------------------------------------------------------- */

static int users__load_one(void *ctx, const char *key, const unsigned char *value, size_t len,
                           uint64_t rev)
{
    json_error_t jerr;
    json_t *rec = json_loadb((const char *)value, len, 0, &jerr);
    users__user_t *u = rec ? users__from_record(rec) : NULL;

    json_decref(rec);
    if (!u || users__place(u)) {
        LOG_ERROR("stored GitHub user not loaded", "\"githubId\":\"%s\"",
                  log_str(key, (size_t)-1));
        users__free(u);
    }
    return 0;
}

static int users__load_seq(void *ctx, const char *key, const unsigned char *value, size_t len,
                           uint64_t rev)
{
    char text[24];
    uint64_t v;

    if (strcmp(key, USERS__SEQ_KEY) != 0 || len == 0 || len >= sizeof text)
        return 0;
    memcpy(text, value, len);
    text[len] = '\0';
    v = strtoull(text, NULL, 10);
    if (v > U.next_id && v < USERS__MAX)
        U.next_id = v;
    return 0;
}

int users_init(const users_cfg_t *cfg, store_t *store, char *err, size_t errlen)
{
    users_shutdown();
    U.cfg = *cfg;
    U.store = store;
    U.next_id = 1;
    if (cfg->ttl_ms <= 0 || !principal_valid_tenant(cfg->tenant, strlen(cfg->tenant))) {
        errmsg(err, errlen, "github.repos_ttl_ms must be positive and github.tenant a tenant");
        return -1;
    }
    if (store && (store_meta_load_sync(store, USERS_NS, users__load_one, NULL) ||
                  store_meta_load_sync(store, USERS_NS_SEQ, users__load_seq, NULL))) {
        errmsg(err, errlen, "cannot read the GitHub users from the store");
        users_shutdown();
        return -1;
    }
    U.on = true;
    LOG_INFO("GitHub login ready", "\"users\":%" PRIu64, U.next_id - 1);
    return 0;
}

void users_shutdown(void)
{
    pthread_mutex_lock(&U.mu);
    for (size_t i = 0; i < U.cap; i++)
        users__free(U.by_id[i]);
    free(U.by_id);
    U.by_id = NULL;
    U.cap = 0;
    U.next_id = 1;
    U.on = false;
    U.store = NULL;
    OPENSSL_cleanse(&U.cfg, sizeof U.cfg);
    pthread_mutex_unlock(&U.mu);
}
