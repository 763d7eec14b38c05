/*
 * users.h - the registry of people who logged in with GitHub.
 *
 * A user has a local numeric id (from a persisted counter: 1, 2, ...,
 * never reused), the GitHub id, login and email, the GitHub access token
 * sealed with the configured key (auth/seal.h; associated data "user_<id>",
 * so it opens only for its own record) and the repositories the user could
 * read when they were last fetched ("org/repo" + fetched_at). Records live
 * in the store's metadata, namespace USERS_NS, key = GitHub id (decimal);
 * the counter in USERS_NS_SEQ/"next_id". Loaded at start-up.
 *
 * Principals. A user's credential is an own token (auth/tokens.h) whose
 * sub is "user_<id>" (USERS_ID_PREFIX). At each request auth.c hands the
 * verified token principal to users_principal, which returns the
 * principal that actually acts: same tenant, id, expiry and jti, and
 * subscribe = history = "webhooks.github.<org>.<repo>" for exactly the
 * repositories read on GitHub (tokens sanitised like webhook paths,
 * subj_sanitize_token), no publish, no admin.
 *
 * Freshness (fail closed). Repositories fetched more than ttl_ms ago give
 * NO permissions and queue a refresh; older than ttl_ms / 2 they are still
 * used and a refresh is queued, so active users never see the gap. At
 * most one refresh per user is in flight; it runs on the calling loop's
 * libuv thread pool (uv_queue_work: opens the sealed token, lists the
 * repositories) and its result lands on that loop. A token GitHub refuses
 * (401) means no repositories at all; a failed refresh (network, 5xx)
 * keeps the old list, and the next try waits USERS_RETRY_MS.
 *
 * Threads: every function may be called from any thread after users_init;
 * one mutex guards the registry. Nothing here logs a token.
 */
#ifndef SB_AUTH_USERS_H
#define SB_AUTH_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/github.h"
#include "auth/principal.h"
#include "auth/seal.h"
#include "store/store.h"

#define USERS_NS "users"
#define USERS_NS_SEQ "users_seq"
#define USERS_ID_PREFIX "user_"
#define USERS_RETRY_MS 5000          /* least time between failed refreshes */

typedef struct users_cfg {
    github_cfg_t github;             /* borrowed; outlives the registry */
    unsigned char key[SEAL_KEY_LEN]; /* sealing key (copied) */
    int64_t ttl_ms;                  /* repository list lifetime, > 0 */
    const char *tenant;              /* tenant of every user principal */
} users_cfg_t;

/* What a login reports back. */
typedef struct users_view {
    uint64_t id;
    int64_t github_id;
    char username[GITHUB_LOGIN_MAX + 1];
    char email[GITHUB_EMAIL_MAX + 1];
    size_t repos;
} users_view_t;

/*
 * Builds the registry and loads every record of store (blocking: start-up
 * only; store NULL = memory only, for tests). A record that cannot be read
 * is logged and skipped. 0, or -1 with err.
 */
int users_init(const users_cfg_t *cfg, store_t *store, char *err, size_t errlen);
void users_shutdown(void);
bool users_enabled(void);

/*
 * Creates or updates the user with GitHub identity gu, token (sealed here)
 * and repositories fetched at now_ms, then persists the record. done(arg,
 * err, view) runs once on target (the store's post) after the record is
 * durable (err 0) or not (STORE_E*); with no store, before this returns.
 * 0, or -1 (no memory, sealing failed, registry full) without calling done.
 */
typedef void (*users_done_fn)(void *arg, int err, const users_view_t *v);
int users_login(const github_user_t *gu, const char *token,
                const github_repos_t *repos, int64_t now_ms, void *target,
                users_done_fn done, void *arg);

/* Whether id[0..len) is "user_<n>" of an existing user. */
bool users_alive(const char *id, size_t len);
/* Whether id[0..len) has the shape of a user id ("user_<digits>"). */
bool users_is_user_id(const char *id, size_t len);

/*
 * The acting principal for the verified token principal tp (see above),
 * a new reference, or NULL (not a user, unknown user, no memory). May
 * queue a refresh on the calling thread's loop (none off-loop).
 */
principal_t *users_principal(const principal_t *tp, int64_t now_ms);

/*
 * Whether p (from users_principal) still holds: its user exists, the list
 * is within ttl_ms, and every subscribe pattern of p is still granted.
 * Streams ask at each heartbeat, so a lost repository ends them.
 */
bool users_still_valid(const principal_t *p, int64_t now_ms);

/* The subject of repository "org/repo" into out (SUBJ_MAX_LEN + 1 bytes):
 * "webhooks.github.<org>.<repo>". Its length, or 0 when it makes none. */
size_t users_repo_subject(const char *full_name, char *out);

/* Test hook: replaces user id's repositories and fetched_at at once. */
int users_set_repos(uint64_t id, const github_repos_t *repos, int64_t fetched_ms);

#endif
