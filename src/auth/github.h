/*
 * github.h - a small blocking GitHub client for the OAuth login
 * (edge/github_oauth.c) and the permission refresh (auth/users.c):
 * exchange an authorization code for an access token, read the user, read
 * the repositories the user can read.
 *
 * Every call blocks (libcurl easy, 10 s per request) and must run off the
 * event loops (uv_queue_work). Requests go to the configured OAuth and API
 * base URLs only (so tests point them at a fake GitHub), over http or
 * https, never following redirects, with every response body capped. The
 * access token is sent in an Authorization header and never logged or
 * copied into an error text: errors are constant English phrases plus an
 * HTTP status at most.
 */
#ifndef SB_AUTH_GITHUB_H
#define SB_AUTH_GITHUB_H

#include <stddef.h>
#include <stdint.h>

#define GITHUB_LOGIN_MAX 64          /* bytes of a login we accept */
#define GITHUB_EMAIL_MAX 320
#define GITHUB_REPO_MAX 256          /* bytes of "owner/name" */
#define GITHUB_TOKEN_MAX 1024        /* bytes of an access token */
#define GITHUB_PAGES_MAX 50          /* pages of /user/repos followed */
#define GITHUB_PER_PAGE 100
#define GITHUB_BODY_MAX (8u << 20)   /* bytes of one response */
#define GITHUB_TIMEOUT_MS 10000L
#define GITHUB_ERR_LEN 128

/* Results */
#define GITHUB_OK 0
#define GITHUB_EFAIL (-1)            /* network, status, malformed reply */
#define GITHUB_EAUTH (-2)            /* GitHub refused the token (401) or
                                        the code (error in the exchange) */
#define GITHUB_ENOMEM (-3)

typedef struct github_cfg {          /* borrowed strings */
    const char *oauth_url;           /* "https://github.com" */
    const char *api_url;             /* "https://api.github.com" */
    const char *client_id;
    const char *client_secret;
} github_cfg_t;

typedef struct github_user {
    int64_t id;
    char login[GITHUB_LOGIN_MAX + 1];
    char email[GITHUB_EMAIL_MAX + 1];    /* "" when none is known */
} github_user_t;

typedef struct github_repos {        /* owned "owner/name" strings */
    char **v;
    size_t n;
} github_repos_t;

/*
 * POSTs code to {oauth_url}/login/oauth/access_token. GITHUB_OK with
 * *token a malloc()ed NUL-terminated token (wipe and free it, e.g.
 * with github_free_token); else an error code with a reason in err.
 */
int github_exchange(const github_cfg_t *cfg, const char *code,
                    const char *redirect_uri, char **token, char *err,
                    size_t errlen);
void github_free_token(char *token);

/* GET {api_url}/user, and /user/emails (primary and verified) when the
 * profile shows no email. */
int github_get_user(const github_cfg_t *cfg, const char *token,
                    github_user_t *out, char *err, size_t errlen);

/* Every repository with permissions.pull, following pages until one has
 * fewer than GITHUB_PER_PAGE entries (at most GITHUB_PAGES_MAX pages).
 * GITHUB_OK with *out filled (github_repos_free) in GitHub's order. */
int github_get_repos(const github_cfg_t *cfg, const char *token,
                     github_repos_t *out, char *err, size_t errlen);
void github_repos_free(github_repos_t *r);

#endif
