/*
 * test_github.c - the blocking GitHub client against a tiny HTTP server
 * run by this test on 127.0.0.1 (one thread, one request per connection):
 * the code exchange (form, headers, GitHub's error shapes), the user and
 * its fallback email, repository pagination and the pull filter, the page
 * cap, and the refusals: 401, other statuses, redirects, non-JSON, bodies
 * over the cap, unreachable hosts and non-HTTP URLs. No error text may
 * carry the client secret or the token.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "auth/github.h"
#include "core/buf.h"

#define SECRET "client-secret-XYZ"
#define TOKEN "gho_tokenABC"

enum mode { M_OK, M_ERRJSON, M_500, M_NOTOKEN, M_401, M_REDIRECT, M_NOTJSON, M_HUGE,
            M_NOEMAIL, M_NOID, M_ENDLESS, M_EXACT100 };

static struct {
    int fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    enum mode mode;
    int repos;                     /* repositories /user/repos has */
    int requests;                  /* /user/repos requests seen */
    char last_req[8192];           /* the last request head + body */
    char url[64];
} S;

static github_cfg_t cfg(void)
{
    return (github_cfg_t){.oauth_url = S.url, .api_url = S.url, .client_id = "cid",
                          .client_secret = SECRET};
}

/* The body of /user/repos?page=N: per_page entries from (N-1)*100. */
static void repos_page(buf_t *b, int page)
{
    int from = (page - 1) * GITHUB_PER_PAGE, to = from + GITHUB_PER_PAGE;

    if (S.mode != M_ENDLESS && to > S.repos)
        to = S.repos;
    buf_append_str(b, "[");
    for (int i = from; i < to; i++)
        buf_printf(b, "%s{\"full_name\":\"org/r%d\",\"permissions\":{\"pull\":%s}}",
                   i > from ? "," : "", i, i % 10 == 9 ? "false" : "true");
    buf_append_str(b, "]");
}

static void route(const char *req, int *status, buf_t *body)
{
    char path[256] = "";
    int page = 0;

    sscanf(req, "%*s %255s", path);
    *status = 200;
    if (S.mode == M_500) {
        *status = 500;
        buf_append_str(body, "{}");
    } else if (S.mode == M_REDIRECT) {
        *status = 302;
    } else if (S.mode == M_NOTJSON) {
        buf_append_str(body, "<html>");
    } else if (S.mode == M_HUGE) {
        buf_append_str(body, "\"");
        for (size_t i = 0; i < GITHUB_BODY_MAX; i += 64)
            buf_append_str(body, "0123456789012345678901234567890123456789012345678901234567890123");
        buf_append_str(body, "\"");
    } else if (strstr(path, "/login/oauth/access_token") == path) {
        buf_append_str(body, S.mode == M_ERRJSON  ? "{\"error\":\"bad_verification_code\"}"
                             : S.mode == M_NOTOKEN ? "{\"token_type\":\"bearer\"}"
                                                   : "{\"access_token\":\"" TOKEN "\"}");
    } else if (S.mode == M_401) {
        *status = 401;
        buf_append_str(body, "{\"message\":\"Bad credentials\"}");
    } else if (strcmp(path, "/user") == 0) {
        buf_append_str(body, S.mode == M_NOID ? "{\"login\":\"octo\"}"
                             : S.mode == M_NOEMAIL ? "{\"id\":42,\"login\":\"octo\",\"email\":null}"
                                                   : "{\"id\":42,\"login\":\"octo\",\"email\":\"o@x.io\"}");
    } else if (strcmp(path, "/user/emails") == 0) {
        buf_append_str(body, "[{\"email\":\"no@x.io\",\"primary\":false,\"verified\":true},"
                             "{\"email\":\"un@x.io\",\"primary\":true,\"verified\":false},"
                             "{\"email\":\"yes@x.io\",\"primary\":true,\"verified\":true}]");
    } else if (sscanf(path, "/user/repos?per_page=100&page=%d", &page) == 1) {
        S.requests++;
        repos_page(body, page);
    } else {
        *status = 404;
    }
}

static void serve_one(int c)
{
    char req[8192];
    size_t have = 0;
    ssize_t n;
    buf_t body, out;
    int status;
    const char *hdr_end = NULL, *cl;

    while (have < sizeof req - 1 && (n = read(c, req + have, sizeof req - 1 - have)) > 0) {
        have += (size_t)n;
        req[have] = '\0';
        if ((hdr_end = strstr(req, "\r\n\r\n"))) {
            size_t want = (cl = strcasestr(req, "Content-Length:")) ? strtoul(cl + 15, NULL, 10) : 0;
            if (have >= (size_t)(hdr_end + 4 - req) + want)
                break;
        }
    }
    req[have] = '\0';
    memcpy(S.last_req, req, have + 1);
    buf_init(&body, 2 * GITHUB_BODY_MAX);
    buf_init(&out, 3 * GITHUB_BODY_MAX);
    route(req, &status, &body);
    buf_printf(&out, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n%s\r\n", status, body.len,
               status == 302 ? "Location: /elsewhere\r\n" : "");
    buf_append(&out, body.data ? body.data : "", body.len);
    for (size_t off = 0; off < out.len && (n = write(c, out.data + off, out.len - off)) > 0;)
        off += (size_t)n;
    buf_free(&body);
    buf_free(&out);
}

static void *server_main(void *arg)
{
    while (!atomic_load(&S.stop)) {
        int c = accept(S.fd, NULL, NULL);
        if (c < 0)
            continue;
        if (!atomic_load(&S.stop))
            serve_one(c);
        close(c);
    }
    return NULL;
}

static int setup(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    S.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (S.fd < 0 || bind(S.fd, (struct sockaddr *)&a, sizeof a) || listen(S.fd, 16) ||
        getsockname(S.fd, (struct sockaddr *)&a, &len))
        return -1;
    S.port = ntohs(a.sin_port);
    snprintf(S.url, sizeof S.url, "http://127.0.0.1:%d/", S.port);   /* trailing '/' on purpose */
    return pthread_create(&S.thread, NULL, server_main, NULL);
}

static int teardown(void **state)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

    atomic_store(&S.stop, true);
    connect(c, (struct sockaddr *)&a, sizeof a);      /* wakes accept() */
    close(c);
    pthread_join(S.thread, NULL);
    close(S.fd);
    curl_global_cleanup();
    return 0;
}

static int reset(void **state)
{
    S.mode = M_OK;
    S.repos = 0;
    S.requests = 0;
    S.last_req[0] = '\0';
    return 0;
}

static void exchange_ok(void **state)
{
    github_cfg_t c = cfg();
    char err[GITHUB_ERR_LEN] = "", *tok = NULL;

    assert_int_equal(github_exchange(&c, "the code", "http://h/cb?x=1", &tok, err, sizeof err),
                     GITHUB_OK);
    assert_string_equal(tok, TOKEN);
    github_free_token(tok);
    assert_non_null(strstr(S.last_req, "POST /login/oauth/access_token HTTP/1.1"));
    assert_non_null(strcasestr(S.last_req, "Accept: application/json"));
    assert_non_null(strstr(S.last_req, "client_id=cid&client_secret=" SECRET
                                       "&code=the%20code&redirect_uri=http%3A%2F%2Fh%2Fcb%3Fx%3D1"));
}

static void exchange_errors(void **state)
{
    static const struct { enum mode m; int rc; } rows[] = {
        {M_ERRJSON, GITHUB_EAUTH}, {M_500, GITHUB_EFAIL}, {M_NOTOKEN, GITHUB_EFAIL},
        {M_REDIRECT, GITHUB_EFAIL}, {M_NOTJSON, GITHUB_EFAIL}, {M_HUGE, GITHUB_EFAIL},
    };
    github_cfg_t c = cfg();

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char err[GITHUB_ERR_LEN] = "", *tok = (char *)1;

        S.mode = rows[i].m;
        assert_int_equal(github_exchange(&c, "code", NULL, &tok, err, sizeof err), rows[i].rc);
        assert_null(tok);
        assert_true(err[0] != '\0');
        assert_null(strstr(err, SECRET));
    }
}

static void user_and_email(void **state)
{
    github_cfg_t c = cfg();
    github_user_t u;
    char err[GITHUB_ERR_LEN] = "";

    assert_int_equal(github_get_user(&c, TOKEN, &u, err, sizeof err), GITHUB_OK);
    assert_int_equal(u.id, 42);
    assert_string_equal(u.login, "octo");
    assert_string_equal(u.email, "o@x.io");
    assert_non_null(strstr(S.last_req, "Authorization: Bearer " TOKEN));
    S.mode = M_NOEMAIL;
    assert_int_equal(github_get_user(&c, TOKEN, &u, err, sizeof err), GITHUB_OK);
    assert_string_equal(u.email, "yes@x.io");              /* primary and verified */
    S.mode = M_NOID;
    assert_int_equal(github_get_user(&c, TOKEN, &u, err, sizeof err), GITHUB_EFAIL);
    S.mode = M_401;
    assert_int_equal(github_get_user(&c, TOKEN, &u, err, sizeof err), GITHUB_EAUTH);
    assert_null(strstr(err, TOKEN));
}

static void repos_pages(void **state)
{
    github_cfg_t c = cfg();
    github_repos_t r;
    char err[GITHUB_ERR_LEN] = "";

    S.repos = 150;               /* two pages; every tenth has pull false */
    assert_int_equal(github_get_repos(&c, TOKEN, &r, err, sizeof err), GITHUB_OK);
    assert_int_equal(S.requests, 2);
    assert_int_equal(r.n, 135);
    assert_string_equal(r.v[0], "org/r0");
    assert_string_equal(r.v[9], "org/r10");                 /* r9 cannot pull */
    github_repos_free(&r);
    assert_int_equal(r.n, 0);

    S.requests = 0;
    S.repos = 100;               /* a full page: one more (empty) is asked */
    assert_int_equal(github_get_repos(&c, TOKEN, &r, err, sizeof err), GITHUB_OK);
    assert_int_equal(S.requests, 2);
    assert_int_equal(r.n, 90);
    github_repos_free(&r);

    S.requests = 0;
    S.repos = 0;
    assert_int_equal(github_get_repos(&c, TOKEN, &r, err, sizeof err), GITHUB_OK);
    assert_int_equal(r.n, 0);
    assert_int_equal(S.requests, 1);
}

static void repos_page_cap(void **state)
{
    github_cfg_t c = cfg();
    github_repos_t r;
    char err[GITHUB_ERR_LEN] = "";

    S.mode = M_ENDLESS;
    assert_int_equal(github_get_repos(&c, TOKEN, &r, err, sizeof err), GITHUB_OK);
    assert_int_equal(S.requests, GITHUB_PAGES_MAX);
    assert_int_equal(r.n, GITHUB_PAGES_MAX * 90);
    github_repos_free(&r);
}

static void repos_errors(void **state)
{
    github_cfg_t c = cfg();
    github_repos_t r;
    char err[GITHUB_ERR_LEN] = "";

    S.mode = M_401;
    assert_int_equal(github_get_repos(&c, TOKEN, &r, err, sizeof err), GITHUB_EAUTH);
    assert_int_equal(r.n, 0);
    assert_null(r.v);
    S.mode = M_NOTJSON;
    assert_int_equal(github_get_repos(&c, TOKEN, &r, err, sizeof err), GITHUB_EFAIL);
    S.mode = M_500;
    assert_int_equal(github_get_repos(&c, TOKEN, &r, err, sizeof err), GITHUB_EFAIL);
    assert_non_null(strstr(err, "500"));
}

static void bad_urls(void **state)
{
    github_cfg_t c = cfg();
    github_user_t u;
    char err[GITHUB_ERR_LEN] = "", *tok = NULL;

    c.api_url = "file:///etc";
    assert_int_equal(github_get_user(&c, TOKEN, &u, err, sizeof err), GITHUB_EFAIL);
    c.api_url = "http://127.0.0.1:1";                    /* nothing listens */
    assert_int_equal(github_get_user(&c, TOKEN, &u, err, sizeof err), GITHUB_EFAIL);
    c.oauth_url = "gopher://127.0.0.1";
    assert_int_equal(github_exchange(&c, "x", NULL, &tok, err, sizeof err), GITHUB_EFAIL);
    assert_null(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(exchange_ok, reset),
        cmocka_unit_test_setup(exchange_errors, reset),
        cmocka_unit_test_setup(user_and_email, reset),
        cmocka_unit_test_setup(repos_pages, reset),
        cmocka_unit_test_setup(repos_page_cap, reset),
        cmocka_unit_test_setup(repos_errors, reset),
        cmocka_unit_test_setup(bad_urls, reset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
