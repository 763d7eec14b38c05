/*
 * test_parser.c - byte-exact tests of the HTTP/1.1 head parser and the
 * chunked body decoder.
 *
 * Every request goes through parse_req(), which also parses every proper
 * prefix of it (each in an exactly sized heap copy, so ASan catches a read
 * past len) and checks that a prefix yields HTTP_AGAIN or exactly the
 * whole request's answer. Chunked bodies go through ck_expect(), which
 * decodes in one call, one byte per call, at every two-piece split and at
 * random splits, and requires identical output, status and consumed bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/parser.h"

#define REQ(s) (s), sizeof(s) - 1

static const http_limits_t lim_default = {
    .max_uri = 1024,
    .max_header_bytes = 8192,
    .max_headers = 32,
    .max_body = 1u << 20,
};

static int parse_copy(const char *req, size_t len, const http_limits_t *lim,
                      http_head_t *h, int *status)
{
    char *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, req, len);
    rc = http_parse_request(copy, len, lim, h, status);
    free(copy);
    return rc;
}

/* Parses req[0..len) in place (so *h points into req) after checking that
 * each prefix gives HTTP_AGAIN or the same result. */
static int parse_req(const char *req, size_t len, const http_limits_t *lim,
                     http_head_t *h, int *status)
{
    static http_head_t tmp;
    size_t step = len > 2048 ? len / 512 : 1;
    int rc, prc, pstatus = 0;

    *status = 0;
    rc = http_parse_request(req, len, lim, h, status);
    for (size_t k = 0; k < len; k += step) {
        prc = parse_copy(req, k, lim, &tmp, &pstatus);
        if (rc > 0) {
            assert_int_equal(prc, (size_t)rc > k ? HTTP_AGAIN : rc);
        } else if (prc != HTTP_AGAIN) {
            assert_int_equal(prc, rc);
            if (rc == HTTP_ERROR)
                assert_int_equal(pstatus, *status);
        }
    }
    return rc;
}

static void expect_error(const char *req, size_t len, const http_limits_t *lim,
                         int want)
{
    static http_head_t h;
    int status;

    assert_int_equal(parse_req(req, len, lim, &h, &status), HTTP_ERROR);
    assert_int_equal(status, want);
}

static void expect_ok(const char *req, size_t len, const http_limits_t *lim,
                      http_head_t *h)
{
    int status = 0;

    assert_int_equal(parse_req(req, len, lim, h, &status), (int)len);
    assert_int_equal(status, 0);
}

static void expect_again(const char *req, size_t len, const http_limits_t *lim)
{
    static http_head_t h;
    int status = 0;

    assert_int_equal(parse_copy(req, len, lim, &h, &status), HTTP_AGAIN);
}

static void assert_span(const char *p, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

static void assert_header(const http_head_t *h, const char *name,
                          const char *value)
{
    const http_header_t *f = http_find_header(h, name);

    assert_non_null(f);
    assert_span(f->value, f->value_len, value);
}

/* Builds "GET <target> HTTP/1.1\r\nHost: h\r\n" + extra + "\r\n" in b. */
static size_t build_req(char *b, size_t cap, size_t target_len,
                        size_t extra_fields)
{
    size_t n = 0;

    memcpy(b, "GET /", 5);
    n = 5;
    memset(b + n, 'a', target_len - 1);
    n += target_len - 1;
    memcpy(b + n, " HTTP/1.1\r\nHost: h\r\n", 20);
    n += 20;
    for (size_t i = 0; i < extra_fields; i++) {
        assert_true(n + 16 < cap);
        memcpy(b + n, "X-Field: value\r\n", 16);
        n += 16;
    }
    memcpy(b + n, "\r\n", 2);
    return n + 2;
}

/* ---- request line ------------------------------------------------------ */

static void test_simple_get(void **state)
{
    static const char req[] = "GET /index.html HTTP/1.1\r\n"
                              "Host: example.com\r\n"
                              "User-Agent: t/1\r\n"
                              "\r\n";
    http_head_t h;

    expect_ok(REQ(req), &lim_default, &h);
    assert_span(h.method, h.method_len, "GET");
    assert_span(h.target, h.target_len, "/index.html");
    assert_span(h.path, h.path_len, "/index.html");
    assert_null(h.query);
    assert_int_equal(h.minor_version, 1);
    assert_int_equal(h.num_headers, 2);
    assert_span(h.headers[0].name, h.headers[0].name_len, "Host");
    assert_span(h.headers[0].value, h.headers[0].value_len, "example.com");
    assert_span(h.headers[1].name, h.headers[1].name_len, "User-Agent");
    assert_int_equal(h.body_kind, HTTP_BODY_NONE);
    assert_true(h.keep_alive);
    assert_int_equal(h.conn_flags, 0);
    assert_false(h.expect_continue);
    assert_false(h.expect_other);
}

static void test_post_content_length(void **state)
{
    static const char req[] = "POST /hooks/github HTTP/1.1\r\n"
                              "Host: a\r\n"
                              "Content-Type: application/json\r\n"
                              "Content-Length: 13\r\n"
                              "\r\n"
                              "{\"ok\": true}\n";
    http_head_t h;
    int status;
    int rc = parse_req(REQ(req), &lim_default, &h, &status);

    assert_int_equal(rc, (int)(sizeof req - 1 - 13));
    assert_span(h.method, h.method_len, "POST");
    assert_int_equal(h.body_kind, HTTP_BODY_LENGTH);
    assert_int_equal(h.content_length, 13);
    assert_memory_equal(req + rc, "{\"ok\": true}\n", 13);
}

static void test_pipelined(void **state)
{
    static const char req[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /b?q HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n";
    http_head_t h;
    int status;
    int first = parse_req(REQ(req), &lim_default, &h, &status);
    int second;

    assert_int_equal(first, 28);
    assert_span(h.path, h.path_len, "/a");
    assert_header(&h, "host", "x");
    second = parse_req(req + first, sizeof req - 1 - (size_t)first,
                       &lim_default, &h, &status);
    assert_int_equal(second, (int)(sizeof req - 1 - (size_t)first));
    assert_span(h.path, h.path_len, "/b");
    assert_span(h.query, h.query_len, "q");
    assert_header(&h, "host", "y");
    assert_false(h.keep_alive);
}

static void test_every_split_point(void **state)
{
    static const char req[] = "\r\nPUT /x/y?z=1 HTTP/1.1\r\n"
                              "Host: h:8080\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "Connection: keep-alive, Upgrade\r\n"
                              "Expect: 100-continue\r\n"
                              "\r\n";
    http_head_t h, p;
    int status;

    expect_ok(REQ(req), &lim_default, &h);
    for (size_t k = 0; k < sizeof req - 1; k++)
        expect_again(req, k, &lim_default);
    /* The result does not depend on what follows the head. */
    assert_int_equal(http_parse_request(req, sizeof req, &lim_default, &p,
                                        &status),
                     (int)sizeof req - 1);
    assert_int_equal(p.body_kind, HTTP_BODY_CHUNKED);
    assert_int_equal(p.conn_flags, HTTP_CONN_KEEP_ALIVE | HTTP_CONN_UPGRADE);
    assert_true(p.expect_continue);
}

static void test_empty_input_again(void **state)
{
    static http_head_t h;
    int status = 0;

    assert_int_equal(http_parse_request("", 0, &lim_default, &h, &status),
                     HTTP_AGAIN);
    expect_again(REQ("GET"), &lim_default);
    expect_again(REQ("GET / HTTP/1.1\r\nHost: a\r\n\r"), &lim_default);
}

static void test_query_split(void **state)
{
    http_head_t h;

    expect_ok(REQ("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: a\r\n\r\n"),
              &lim_default, &h);
    assert_span(h.path, h.path_len, "/a/b");
    assert_span(h.query, h.query_len, "x=1&y=2");
    assert_span(h.target, h.target_len, "/a/b?x=1&y=2");

    expect_ok(REQ("GET /p? HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, &h);
    assert_span(h.path, h.path_len, "/p");
    assert_non_null(h.query);
    assert_int_equal(h.query_len, 0);

    expect_ok(REQ("GET /p?a?b HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, &h);
    assert_span(h.path, h.path_len, "/p");
    assert_span(h.query, h.query_len, "a?b");
}

static void test_leading_empty_lines(void **state)
{
    http_head_t h;
    int status;

    expect_ok(REQ("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, &h);
    assert_span(h.method, h.method_len, "GET");
    expect_ok(REQ("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default,
              &h);
    expect_error(REQ("\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default,
                 400);
    /* Fails on the third empty line, before a request line arrives. */
    assert_int_equal(parse_copy(REQ("\r\n\r\n\r"), &lim_default, &h, &status),
                     HTTP_ERROR);
    assert_int_equal(status, 400);
}

static void test_method_invalid(void **state)
{
    http_head_t h;
    int status;

    expect_ok(REQ("M-SEARCH! / HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default,
              &h);
    assert_span(h.method, h.method_len, "M-SEARCH!");
    expect_error(REQ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ(" / HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, 400);
    /* A CTL in the method is refused at once, not after the line ends. */
    assert_int_equal(parse_copy(REQ("GE\x01"), &lim_default, &h, &status),
                     HTTP_ERROR);
    assert_int_equal(status, 400);
    assert_int_equal(parse_copy("GE\0T", 4, &lim_default, &h, &status),
                     HTTP_ERROR);
    assert_int_equal(status, 400);
    assert_int_equal(parse_copy(REQ("\x16\x03\x01"), &lim_default, &h,
                                &status), HTTP_ERROR);
    assert_int_equal(status, 400);
}

static void test_target_forms(void **state)
{
    http_head_t h;

    expect_ok(REQ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, &h);
    assert_span(h.target, h.target_len, "*");
    assert_span(h.path, h.path_len, "*");
    expect_error(REQ("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("options * HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("GET /\r\n\r\n"), &lim_default, 400);   /* HTTP/0.9 */
}

static void test_version(void **state)
{
    http_head_t h;

    expect_ok(REQ("GET / HTTP/1.0\r\n\r\n"), &lim_default, &h);
    assert_int_equal(h.minor_version, 0);
    assert_int_equal(h.num_headers, 0);
    expect_error(REQ("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), &lim_default, 505);
    expect_error(REQ("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), &lim_default, 505);
    expect_error(REQ("GET / HTTP/0.9\r\n\r\n"), &lim_default, 505);
    expect_error(REQ("GET / http/1.1\r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/11\r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/2\r\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\rX"), &lim_default, 400);
}

/* ---- header fields ----------------------------------------------------- */

static void test_header_name_rules(void **state)
{
    expect_error(REQ("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"),
                 &lim_default, 400);
}

static void test_header_value_trim(void **state)
{
    static const char req[] = "GET / HTTP/1.1\r\n"
                              "Host:a\r\n"
                              "X-A: \t a \t b \t\r\n"
                              "X-Empty:\r\n"
                              "X-Blank:   \r\n"
                              "X-Obs: caf\xc3\xa9\r\n"
                              "\r\n";
    http_head_t h;

    expect_ok(REQ(req), &lim_default, &h);
    assert_header(&h, "Host", "a");
    assert_header(&h, "X-A", "a \t b");
    assert_header(&h, "X-Empty", "");
    assert_header(&h, "X-Blank", "");
    assert_header(&h, "X-Obs", "caf\xc3\xa9");
}

static void test_header_value_ctl(void **state)
{
    static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";

    expect_error(REQ(nul), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n"),
                 &lim_default, 400);
}

static void test_obs_fold(void **state)
{
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), &lim_default, 400);
}

static void test_bare_lf(void **state)
{
    expect_error(REQ("GET / HTTP/1.1\nHost: a\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\n\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY: 2\r\n\r\n"),
                 &lim_default, 400);
}

static void test_host_rules(void **state)
{
    http_head_t h;

    expect_error(REQ("GET / HTTP/1.1\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
                 &lim_default, 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), &lim_default,
                 400);
    expect_error(REQ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), &lim_default,
                 400);
    expect_ok(REQ("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), &lim_default,
              &h);
    assert_header(&h, "host", "[::1]:8080");
    expect_ok(REQ("GET / HTTP/1.1\r\nHost:\r\n\r\n"), &lim_default, &h);
    expect_ok(REQ("GET / HTTP/1.0\r\n\r\n"), &lim_default, &h);
}

static void test_find_header(void **state)
{
    static const char req[] = "GET / HTTP/1.1\r\n"
                              "Host: a\r\n"
                              "Content-Type: text/plain\r\n"
                              "X-Dup: first\r\n"
                              "x-dup: second\r\n"
                              "\r\n";
    http_head_t h;

    expect_ok(REQ(req), &lim_default, &h);
    assert_header(&h, "content-TYPE", "text/plain");
    assert_header(&h, "CONTENT-TYPE", "text/plain");
    assert_header(&h, "x-dup", "first");
    assert_null(http_find_header(&h, "Content"));
    assert_null(http_find_header(&h, "Content-Type-X"));
    assert_null(http_find_header(&h, "Hos"));
    assert_null(http_find_header(&h, "Missing"));
}

/* ---- connection, expect ------------------------------------------------- */

static void test_keep_alive_rules(void **state)
{
    http_head_t h;

    expect_ok(REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), &lim_default, &h);
    assert_true(h.keep_alive);
    expect_ok(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
              &lim_default, &h);
    assert_false(h.keep_alive);
    assert_int_equal(h.conn_flags, HTTP_CONN_CLOSE);
    expect_ok(REQ("GET / HTTP/1.0\r\n\r\n"), &lim_default, &h);
    assert_false(h.keep_alive);
    expect_ok(REQ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
              &lim_default, &h);
    assert_true(h.keep_alive);
    expect_ok(REQ("GET / HTTP/1.0\r\nConnection: keep-alive, CLOSE\r\n\r\n"),
              &lim_default, &h);
    assert_false(h.keep_alive);
    expect_ok(REQ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n"
                  "Connection: close\r\n\r\n"), &lim_default, &h);
    assert_false(h.keep_alive);
}

static void test_connection_tokens(void **state)
{
    http_head_t h;

    expect_ok(REQ("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                  "Upgrade: websocket\r\nconnection: keep-alive\r\n\r\n"),
              &lim_default, &h);
    assert_int_equal(h.conn_flags, HTTP_CONN_UPGRADE | HTTP_CONN_KEEP_ALIVE);
    assert_true(h.keep_alive);
    expect_ok(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: TE,,  close ,x\r\n"
                  "\r\n"), &lim_default, &h);
    assert_int_equal(h.conn_flags, HTTP_CONN_CLOSE);
    expect_ok(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"),
              &lim_default, &h);
    assert_int_equal(h.conn_flags, 0);
}

static void test_expect(void **state)
{
    http_head_t h;

    expect_ok(REQ("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
                  "Content-Length: 1\r\n\r\n"), &lim_default, &h);
    assert_true(h.expect_continue);
    assert_false(h.expect_other);
    expect_ok(REQ("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"),
              &lim_default, &h);
    assert_false(h.expect_continue);
    assert_true(h.expect_other);
    expect_ok(REQ("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"),
              &lim_default, &h);
    assert_false(h.expect_continue);
    assert_false(h.expect_other);
}

/* ---- framing ------------------------------------------------------------ */

static void test_content_length_valid(void **state)
{
    http_head_t h;

    expect_ok(REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
              &lim_default, &h);
    assert_int_equal(h.body_kind, HTTP_BODY_LENGTH);
    assert_int_equal(h.content_length, 0);
    expect_ok(REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n"),
              &lim_default, &h);
    assert_int_equal(h.content_length, 7);
    expect_ok(REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  "content-length: 5\r\n\r\n"), &lim_default, &h);
    assert_int_equal(h.content_length, 5);
    expect_ok(REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5 ,5\r\n"
                  "\r\n"), &lim_default, &h);
    assert_int_equal(h.content_length, 5);
    expect_ok(REQ("POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n"),
              &lim_default, &h);
    assert_int_equal(h.body_kind, HTTP_BODY_LENGTH);
}

static void test_content_length_invalid(void **state)
{
    static const char *bad[] = {
        "+5", "-5", "5 5", "0x5", "5a", "", "5,", ",5", "5,,5", "5, 6",
        "9223372036854775808", "99999999999999999999999", "1e3", "\xb5",
    };
    char req[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: a\r\n"
                         "Content-Length: %s\r\n\r\n", bad[i]);
        expect_error(req, (size_t)n, &lim_default, 400);
    }
    expect_error(REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                     "Content-Length: 6\r\n\r\n"), &lim_default, 400);
}

static void test_content_length_max(void **state)
{
    http_limits_t lim = lim_default;
    http_head_t h;

    lim.max_body = UINT64_MAX;
    expect_ok(REQ("POST / HTTP/1.1\r\nHost: a\r\n"
                  "Content-Length: 9223372036854775807\r\n\r\n"), &lim, &h);
    assert_int_equal(h.content_length, INT64_MAX);
}

static void test_content_length_413(void **state)
{
    static const char ok[] = "POST / HTTP/1.1\r\nHost: a\r\n"
                             "Content-Length: 100\r\n\r\n";
    static const char big[] = "POST / HTTP/1.1\r\nHost: a\r\n"
                              "Content-Length: 101\r\n\r\n";
    http_limits_t lim = lim_default;
    http_head_t h;

    lim.max_body = 100;
    expect_ok(REQ(ok), &lim, &h);
    assert_int_equal(h.content_length, 100);
    expect_error(REQ(big), &lim, 413);
    /* Until the head is complete, a large Content-Length is not yet 413. */
    expect_again(big, sizeof big - 3, &lim);
    expect_error(REQ("POST / HTTP/1.1\r\nHost: a\r\n"
                     "Content-Length: 99999999999999999\r\n\r\n"), &lim, 413);
}

static void test_transfer_encoding_chunked(void **state)
{
    http_head_t h;

    expect_ok(REQ("POST / HTTP/1.1\r\nHost: a\r\n"
                  "Transfer-Encoding:  Chunked \r\n\r\n"), &lim_default, &h);
    assert_int_equal(h.body_kind, HTTP_BODY_CHUNKED);
    assert_int_equal(h.content_length, 0);
    expect_ok(REQ("POST / HTTP/1.1\r\nHost: a\r\n"
                  "transfer-encoding: CHUNKED\r\n\r\n"), &lim_default, &h);
    assert_int_equal(h.body_kind, HTTP_BODY_CHUNKED);
}

static void test_transfer_encoding_other(void **state)
{
    static const struct { const char *te; int status; } cases[] = {
        { "gzip, chunked", 501 },
        { "gzip,chunked", 501 },
        { "x-custom ,  chunked", 501 },
        { "chunked, chunked", 400 },
        { "gzip, chunked, chunked", 400 },
        { "identity", 400 },
        { "gzip", 400 },
        { "chunked, gzip", 400 },
        { "chunked,", 400 },
        { ", chunked", 400 },
        { "", 400 },
        { "chunked;q=1", 400 },
    };
    char req[256];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: a\r\n"
                         "Transfer-Encoding: %s\r\n\r\n", cases[i].te);
        expect_error(req, (size_t)n, &lim_default, cases[i].status);
    }
    expect_error(REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"), &lim_default, 501);
    expect_error(REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                     "\r\nTransfer-Encoding: chunked\r\n\r\n"), &lim_default,
                 400);
}

static void test_transfer_encoding_conflicts(void **state)
{
    expect_error(REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                     "\r\nContent-Length: 5\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"), &lim_default, 400);
    expect_error(REQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
                 &lim_default, 400);
}

/* ---- limits --------------------------------------------------------------- */

static void test_limit_uri(void **state)
{
    static char b[4096];
    http_limits_t lim = lim_default;
    http_head_t h;
    int status;
    size_t n;

    lim.max_uri = 64;
    n = build_req(b, sizeof b, 64, 0);
    expect_ok(b, n, &lim, &h);
    assert_int_equal(h.target_len, 64);
    n = build_req(b, sizeof b, 65, 0);
    expect_error(b, n, &lim, 414);
    /* Partial input: 414 as soon as the target passes the limit. */
    assert_int_equal(parse_copy(b, 4 + 65, &lim, &h, &status), HTTP_ERROR);
    assert_int_equal(status, 414);
    assert_int_equal(parse_copy(b, 4 + 64, &lim, &h, &status), HTTP_AGAIN);
}

static void test_limit_header_bytes(void **state)
{
    static char b[8192];
    http_limits_t lim = lim_default;
    http_head_t h;
    int status;
    size_t n = build_req(b, sizeof b, 1, 10);

    lim.max_header_bytes = n;
    expect_ok(b, n, &lim, &h);
    lim.max_header_bytes = n - 1;
    expect_error(b, n, &lim, 431);
    /* Partial input longer than the limit with no end of head in sight. */
    lim.max_header_bytes = 100;
    assert_int_equal(parse_copy(b, 100, &lim, &h, &status), HTTP_AGAIN);
    assert_int_equal(parse_copy(b, 101, &lim, &h, &status), HTTP_ERROR);
    assert_int_equal(status, 431);
    /* The bytes after a complete head are not counted. */
    lim.max_header_bytes = n;
    memset(b + n, 'x', 1000);
    assert_int_equal(parse_copy(b, n + 1000, &lim, &h, &status), (int)n);
}

static void test_limit_header_count(void **state)
{
    static char b[8192];
    http_limits_t lim = lim_default;
    http_head_t h;
    int status;
    size_t n;

    lim.max_headers = 5;
    n = build_req(b, sizeof b, 1, 4);           /* Host + 4 = 5 fields */
    expect_ok(b, n, &lim, &h);
    assert_int_equal(h.num_headers, 5);
    n = build_req(b, sizeof b, 1, 5);
    expect_error(b, n, &lim, 431);
    /* Early: the sixth field line's first byte is enough. */
    assert_int_equal(parse_copy(b, n - 16 - 2 + 1, &lim, &h, &status),
                     HTTP_ERROR);
    assert_int_equal(status, 431);
}

static void test_limit_header_count_hard_cap(void **state)
{
    static char b[8192];
    http_limits_t lim = lim_default;
    http_head_t h;
    size_t n;

    lim.max_headers = 100000;
    n = build_req(b, sizeof b, 1, HTTP_MAX_HEADERS_HARD - 1);
    expect_ok(b, n, &lim, &h);
    assert_int_equal(h.num_headers, HTTP_MAX_HEADERS_HARD);
    n = build_req(b, sizeof b, 1, HTTP_MAX_HEADERS_HARD);
    expect_error(b, n, &lim, 431);
}

/* ---- chunked bodies ------------------------------------------------------- */

typedef struct ck_result {
    int rc;
    int status;
    size_t consumed;
    buf_t out;
} ck_result_t;

/* Decodes in[0..len) fed in pieces ending at cuts[0..ncuts) and then at
 * len, each piece an exactly sized heap copy. */
static void ck_run(const char *in, size_t len, size_t max, const size_t *cuts,
                   size_t ncuts, ck_result_t *r)
{
    http_chunked_t c;
    size_t off = 0;

    http_chunked_init(&c);
    buf_init(&r->out, max);
    r->status = 0;
    r->consumed = 0;
    r->rc = HTTP_AGAIN;
    for (size_t i = 0; i <= ncuts && r->rc == HTTP_AGAIN; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        size_t piece = end - off, used = 0;
        char *copy = malloc(piece ? piece : 1);

        assert_non_null(copy);
        memcpy(copy, in + off, piece);
        r->rc = http_chunked_decode(&c, copy, piece, &used, &r->out,
                                    &r->status);
        free(copy);
        assert_true(used <= piece);
        if (r->rc == HTTP_AGAIN)
            assert_int_equal(used, piece);
        r->consumed += used;
        off = end;
    }
}

static void ck_same(const ck_result_t *a, const ck_result_t *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->consumed, b->consumed);
    assert_int_equal(a->out.len, b->out.len);
    if (a->out.len)
        assert_memory_equal(a->out.data, b->out.data, a->out.len);
}

static uint64_t ck_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Decodes in one call, checks the expected result, then requires every
 * other way of splitting the input to give the same. want_out is checked
 * when want_rc is HTTP_OK. */
static void ck_expect(const char *in, size_t len, size_t max, int want_rc,
                      int want_status, const char *want_out,
                      size_t want_consumed)
{
    static size_t cuts[16384];
    ck_result_t one, other;
    uint64_t seed = 0x9e3779b97f4a7c15u;

    assert_true(len < sizeof cuts / sizeof cuts[0]);
    ck_run(in, len, max, NULL, 0, &one);
    assert_int_equal(one.rc, want_rc);
    assert_int_equal(one.status, want_status);
    if (want_rc == HTTP_OK) {
        assert_int_equal(one.consumed, want_consumed);
        assert_int_equal(one.out.len, strlen(want_out));
        assert_memory_equal(one.out.data ? one.out.data : "", want_out,
                            one.out.len);
    }
    for (size_t k = 0; k <= len; k++) {          /* every two-piece split */
        ck_run(in, len, max, &k, 1, &other);
        ck_same(&one, &other);
        buf_free(&other.out);
    }
    for (size_t k = 0; k < len; k++)             /* one byte per call */
        cuts[k] = k + 1;
    ck_run(in, len, max, cuts, len, &other);
    ck_same(&one, &other);
    buf_free(&other.out);
    for (int round = 0; round < 50; round++) {   /* random splits */
        size_t n = 0;

        for (size_t k = 1; k < len; k++)
            if (ck_rand(&seed) % 4 == 0)
                cuts[n++] = k;
        ck_run(in, len, max, cuts, n, &other);
        ck_same(&one, &other);
        buf_free(&other.out);
    }
    buf_free(&one.out);
}

#define CK_OK(in, max, out) ck_expect(REQ(in), (max), HTTP_OK, 0, (out), \
                                      sizeof(in) - 1)
#define CK_ERR(in, max, st) ck_expect(REQ(in), (max), HTTP_ERROR, (st), "", 0)

static void test_chunked_simple(void **state)
{
    CK_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 100, "hello world");
    CK_OK("0\r\n\r\n", 100, "");
    CK_OK("A\r\n0123456789\r\na\r\nabcdefghij\r\n000\r\n\r\n", 100,
          "0123456789abcdefghij");
}

static void test_chunked_incomplete(void **state)
{
    ck_expect(REQ("5\r\nhello\r\n0\r\n"), 100, HTTP_AGAIN, 0, "", 0);
    ck_expect(REQ("5\r\nhel"), 100, HTTP_AGAIN, 0, "", 0);
}

static void test_chunked_pipelined(void **state)
{
    static const char in[] = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";

    ck_expect(REQ(in), 100, HTTP_OK, 0, "abc", 13);
}

static void test_chunked_done_is_sticky(void **state)
{
    http_chunked_t c;
    buf_t out;
    size_t used = 99;
    int status = 0;

    http_chunked_init(&c);
    buf_init(&out, 100);
    assert_int_equal(http_chunked_decode(&c, REQ("0\r\n\r\nX"), &used, &out,
                                         &status), HTTP_OK);
    assert_int_equal(used, 5);
    assert_int_equal(http_chunked_decode(&c, REQ("X"), &used, &out, &status),
                     HTTP_OK);
    assert_int_equal(used, 0);
    buf_free(&out);
}

static void test_chunked_error_is_sticky(void **state)
{
    http_chunked_t c;
    buf_t out;
    size_t used = 99;
    int status = 0;

    http_chunked_init(&c);
    buf_init(&out, 100);
    assert_int_equal(http_chunked_decode(&c, REQ("5\r\nhelloXX"), &used, &out,
                                         &status), HTTP_ERROR);
    assert_int_equal(status, 400);
    assert_int_equal(used, 8);
    status = 0;
    assert_int_equal(http_chunked_decode(&c, REQ("\r\n0\r\n\r\n"), &used, &out,
                                         &status), HTTP_ERROR);
    assert_int_equal(status, 400);
    buf_free(&out);
}

static void test_chunked_extensions(void **state)
{
    CK_OK("5;a=b;c\r\nhello\r\n0;last\r\n\r\n", 100, "hello");
    CK_OK("5 ; a = b ;\tc\r\nhello\r\n0\r\n\r\n", 100, "hello");
    CK_OK("5;x=\"a \\\"q\\\" ;b\"\r\nhello\r\n0\r\n\r\n", 100, "hello");
    CK_OK("5;x=\"\"\r\nhello\r\n0\r\n\r\n", 100, "hello");
    CK_ERR("5;\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5;=b\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5;a=\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5 \r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5;a=\"x\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5;a b\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5;a=b c\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5;a\x01\r\nhello\r\n0\r\n\r\n", 100, 400);
}

static void test_chunked_size_line_cap(void **state)
{
    static char in[8192];
    size_t n;

    /* "1;" + name + CRLF is exactly 4096 bytes: accepted. */
    memcpy(in, "1;", 2);
    memset(in + 2, 'x', 4096 - 4);
    memcpy(in + 4094, "\r\nZ\r\n0\r\n\r\n", 10);
    n = 4104;
    ck_expect(in, n, 100, HTTP_OK, 0, "Z", n);
    /* One more byte of extension: 400. */
    memcpy(in, "1;", 2);
    memset(in + 2, 'x', 4096 - 3);
    memcpy(in + 4095, "\r\nZ\r\n0\r\n\r\n", 10);
    ck_expect(in, 4105, 100, HTTP_ERROR, 400, "", 0);
}

static void test_chunked_trailers(void **state)
{
    CK_OK("3\r\nabc\r\n0\r\nX-Sum: abc\r\nY:\r\nZ: caf\xc3\xa9\r\n\r\n", 100,
          "abc");
    CK_ERR("0\r\nX: a\r\n b\r\n\r\n", 100, 400);     /* obs-fold */
    CK_ERR("0\r\nNoColon\r\n\r\n", 100, 400);
    CK_ERR("0\r\nX : a\r\n\r\n", 100, 400);
    CK_ERR("0\r\nX: a\nY: b\r\n\r\n", 100, 400);
    CK_ERR("0\r\nX: a\x01\r\n\r\n", 100, 400);
    CK_ERR("0\r\n\n", 100, 400);
    CK_ERR("0\r\n\rX", 100, 400);
}

static void test_chunked_trailer_cap(void **state)
{
    static char in[9000];
    size_t n = 0;

    /* 8192 trailer bytes including the final CRLF are accepted. */
    memcpy(in, "0\r\n", 3);
    n = 3;
    memcpy(in + n, "X: ", 3);
    memset(in + n + 3, 'v', 8192 - 7);
    n += 8192 - 4;
    memcpy(in + n, "\r\n\r\n", 4);
    n += 4;
    ck_expect(in, n, 100, HTTP_OK, 0, "", n);
    /* One more value byte: 400. */
    memcpy(in + 3, "X: ", 3);
    memset(in + 6, 'v', 8192 - 6);
    memcpy(in + 3 + 8192 - 3, "\r\n\r\n", 4);
    ck_expect(in, 3 + 8192 + 1, 100, HTTP_ERROR, 400, "", 0);
}

static void test_chunked_malformed_size(void **state)
{
    CK_ERR("\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("x\r\n", 100, 400);
    CK_ERR("-1\r\n", 100, 400);
    CK_ERR("+1\r\nx\r\n0\r\n\r\n", 100, 400);
    CK_ERR("0x5\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR(" 5\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5\rhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("g\r\n", 100, 400);
}

static void test_chunked_hex_digits(void **state)
{
    CK_OK("0000000000000005\r\nhello\r\n0\r\n\r\n", 100, "hello");
    CK_ERR("00000000000000005\r\nhello\r\n0\r\n\r\n", 100, 400);
    CK_ERR("FFFFFFFFFFFFFFFF\r\n", 100, 413);
    CK_ERR("10000000000000000\r\n", 100, 400);
}

static void test_chunked_missing_crlf_after_data(void **state)
{
    CK_ERR("5\r\nhelloX\r\n0\r\n\r\n", 100, 400);
    CK_ERR("5\r\nhello\n0\r\n\r\n", 100, 400);
    CK_ERR("5\r\nhello\r0\r\n\r\n", 100, 400);
    CK_ERR("5\r\nhello0\r\n\r\n", 100, 400);
    CK_ERR("5\r\nhello world\r\n0\r\n\r\n", 100, 400);
}

static void test_chunked_oversize(void **state)
{
    CK_OK("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 10, "helloworld");
    CK_ERR("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", 10, 413);
    CK_ERR("b\r\nhello world\r\n0\r\n\r\n", 10, 413);
    /* 413 at the size line, before any of the chunk's bytes arrive. */
    ck_expect(REQ("100000\r\n"), 10, HTTP_ERROR, 413, "", 0);
}

static void test_chunked_partial_output(void **state)
{
    http_chunked_t c;
    buf_t out;
    size_t used;
    int status = 0;

    http_chunked_init(&c);
    buf_init(&out, 100);
    assert_int_equal(http_chunked_decode(&c, REQ("a\r\n01234"), &used, &out,
                                         &status), HTTP_AGAIN);
    assert_int_equal(used, 8);
    assert_int_equal(out.len, 5);
    assert_memory_equal(out.data, "01234", 5);
    assert_int_equal(http_chunked_decode(&c, REQ("56789\r\n0\r\n\r\nNEXT"),
                                         &used, &out, &status), HTTP_OK);
    assert_int_equal(used, 12);
    assert_int_equal(out.len, 10);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_empty_input_again),
        cmocka_unit_test(test_query_split),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_method_invalid),
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_header_name_rules),
        cmocka_unit_test(test_header_value_trim),
        cmocka_unit_test(test_header_value_ctl),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_bare_lf),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_find_header),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_connection_tokens),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_content_length_valid),
        cmocka_unit_test(test_content_length_invalid),
        cmocka_unit_test(test_content_length_max),
        cmocka_unit_test(test_content_length_413),
        cmocka_unit_test(test_transfer_encoding_chunked),
        cmocka_unit_test(test_transfer_encoding_other),
        cmocka_unit_test(test_transfer_encoding_conflicts),
        cmocka_unit_test(test_limit_uri),
        cmocka_unit_test(test_limit_header_bytes),
        cmocka_unit_test(test_limit_header_count),
        cmocka_unit_test(test_limit_header_count_hard_cap),
        cmocka_unit_test(test_chunked_simple),
        cmocka_unit_test(test_chunked_incomplete),
        cmocka_unit_test(test_chunked_pipelined),
        cmocka_unit_test(test_chunked_done_is_sticky),
        cmocka_unit_test(test_chunked_error_is_sticky),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_size_line_cap),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_trailer_cap),
        cmocka_unit_test(test_chunked_malformed_size),
        cmocka_unit_test(test_chunked_hex_digits),
        cmocka_unit_test(test_chunked_missing_crlf_after_data),
        cmocka_unit_test(test_chunked_oversize),
        cmocka_unit_test(test_chunked_partial_output),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
