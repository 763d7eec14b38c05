/*
 * server.c - HTTP/1.1 connections: the request state machine, routing and
 * responses. See server.h for the contracts.
 *
 * A connection's protocol state is one http_req_t, reused for every
 * request on that connection. States:
 *
 *   HEAD  --head parsed--> BODY_LENGTH | BODY_CHUNKED --body done--> HANDLING
 *     ^                                                               |
 *     +------------- response queued, keep-alive ---------------------+
 *
 * The head parser re-parses buffered bytes on each read (heads are capped),
 * then the head is copied into req->raw so handlers may run past the read
 * callback. Timeouts use the connection's single wheel timer: idle (no
 * byte of the next request yet), header (head incomplete), body.
 */
#include "http/server.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/hex.h"
#include "core/json.h"
#include "ops/log.h"
#include "ops/metrics.h"

enum { REQ_HEAD, REQ_BODY_LENGTH, REQ_BODY_CHUNKED, REQ_HANDLING, REQ_DONE };

#define HTTP_MAX_ROUTES 64
#define HTTP_LINGER_MS 5000
#define HTTP_RESP_HEADERS_MAX 8192

typedef struct route {
    const char *methods;
    const char *path;
    size_t path_len;
    bool prefix;
    http_handler_fn fn;
} route_t;

static http_settings_t settings;
static route_t routes[HTTP_MAX_ROUTES];
static size_t nroutes;

static const conn_proto_t http_proto;

void http_server_init(const http_settings_t *s) { settings = *s; }
const http_settings_t *http_server_settings(void) { return &settings; }

int http_route(const char *methods, const char *path, bool prefix, http_handler_fn fn)
{
    if (nroutes == HTTP_MAX_ROUTES)
        return -1;
    routes[nroutes++] = (route_t){methods, path, strlen(path), prefix, fn};
    return 0;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static const char *error_code_for(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 408: return "request_timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 417: return "expectation_failed";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 505: return "http_version_not_supported";
    default: return "error";
    }
}

/* The Date header value, formatted once per second per thread. */
static const char *http_date(void)
{
    static _Thread_local char date[40];
    static _Thread_local time_t last;
    time_t now = time(NULL);

    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return date;
}

int http_status_line(buf_t *b, int status)
{
    return buf_printf(b, "HTTP/1.1 %d %s\r\nServer: switchboard\r\nDate: %s\r\n",
                      status, http_reason(status), http_date());
}

/* --- request object ------------------------------------------------------ */

static http_req_t *req_new(conn_t *c)
{
    http_req_t *r = calloc(1, sizeof *r);

    if (!r)
        return NULL;
    r->conn = c;
    buf_init(&r->raw, settings.limits.max_header_bytes + 1);
    buf_init(&r->body, settings.limits.max_body);
    buf_init(&r->resp_headers, HTTP_RESP_HEADERS_MAX);
    return r;
}

static void req_free(http_req_t *r)
{
    buf_free(&r->raw);
    buf_free(&r->body);
    buf_free(&r->resp_headers);
    free(r);
}

static void req_reset(http_req_t *r)
{
    buf_reset(&r->raw);
    buf_reset(&r->body);
    buf_reset(&r->resp_headers);
    memset(&r->head, 0, sizeof r->head);
    r->state = REQ_HEAD;
    r->responded = r->close_after = r->seen_bytes = r->is_head = false;
    r->body_left = 0;
}

/* Copies the head into r->raw and moves every pointer of r->head there. */
static int req_keep_head(http_req_t *r, const char *data, size_t n)
{
    http_head_t *h = &r->head;
    const char *base;

    buf_reset(&r->raw);
    if (buf_append(&r->raw, data, n))
        return -1;
    base = r->raw.data;
#define REBASE(p) do { if (p) (p) = base + ((p) - data); } while (0)
    REBASE(h->method);
    REBASE(h->target);
    REBASE(h->path);
    REBASE(h->query);
    for (size_t i = 0; i < h->num_headers; i++) {
        REBASE(h->headers[i].name);
        REBASE(h->headers[i].value);
    }
#undef REBASE
    return 0;
}

void http_req_hold(http_req_t *r) { conn_hold(r->conn); }
void http_req_release(http_req_t *r) { conn_release(r->conn); }

bool http_method_is(const http_req_t *r, const char *m)
{
    size_t n = strlen(m);
    return r->head.method_len == n && memcmp(r->head.method, m, n) == 0;
}

/* --- responses ----------------------------------------------------------- */

static void finish(http_req_t *r, int status)
{
    conn_t *c = r->conn;

    METRIC_INC(http_status[status >= 100 && status < 600 ? status : 500]);
    LOG_DEBUG("request", "\"conn\":%" PRIu64 ",\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,"
              "\"ms\":%.3f", c->id, log_str(r->head.method, r->head.method_len),
              log_str(r->head.path, r->head.path_len), status,
              (double)(clock_mono_ns() - r->started_ns) / 1e6);
    if (c->closing)
        return;
    if (!r->head.keep_alive || r->close_after || c->loop->stopping) {
        conn_close_after_flush(c, HTTP_LINGER_MS);
        return;
    }
    req_reset(r);
    conn_set_timeout(c, settings.idle_timeout_ms);
    conn_resume(c);
}

void http_add_header(http_req_t *r, const char *name, const char *value)
{
    buf_printf(&r->resp_headers, "%s: %s\r\n", name, value);
}

void http_respond(http_req_t *r, int status, const char *content_type,
                  const void *body, size_t len)
{
    buf_t b;
    bool keep = r->head.keep_alive && !r->close_after && !r->conn->loop->stopping;
    sbuf_t *s;

    if (r->responded)
        return;
    r->responded = true;
    if (r->conn->closing) {
        finish(r, status);
        return;
    }
    buf_init(&b, SIZE_MAX);
    http_status_line(&b, status);
    if (content_type)
        buf_printf(&b, "Content-Type: %s\r\n", content_type);
    buf_printf(&b, "Content-Length: %zu\r\n%s", len, keep ? "" : "Connection: close\r\n");
    if (r->resp_headers.len)
        buf_append(&b, r->resp_headers.data, r->resp_headers.len);
    buf_append(&b, "\r\n", 2);
    if (!r->is_head && len)
        buf_append(&b, body, len);
    s = b.data ? sbuf_from(b.data, b.len) : NULL;
    buf_free(&b);
    if (!s || conn_send_force(r->conn, s))
        conn_close(r->conn);
    sbuf_unref(s);
    finish(r, status);
}

void http_respond_json(http_req_t *r, int status, const buf_t *json)
{
    http_respond(r, status, "application/json", json->data, json->len);
}

void http_error(http_req_t *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    buf_t b;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    buf_init(&b, 4096);
    buf_append_str(&b, "{\"error\":{\"code\":");
    json_append_str(&b, code, strlen(code));
    buf_append_str(&b, ",\"message\":");
    json_append_str(&b, msg, strlen(msg));
    buf_append_str(&b, "}}");
    http_respond_json(r, status, &b);
    buf_free(&b);
}

int http_take_over(http_req_t *r, sbuf_t *head, const conn_proto_t *p, void *ctx,
                   int metric_proto)
{
    conn_t *c = r->conn;
    int status = (int)strtol(head->data + 9, NULL, 10);

    r->responded = true;
    if (c->closing || conn_send_force(c, head))
        return -1;
    METRIC_INC(http_status[status >= 100 && status < 600 ? status : 500]);
    conn_set_timeout(c, 0);
    conn_set_proto(c, p, ctx, metric_proto);
    r->state = REQ_DONE;     /* freed by the caller of the handler */
    conn_resume(c);
    return 0;
}

/* --- routing ------------------------------------------------------------- */

static bool method_listed(const char *methods, const char *m, size_t n)
{
    const char *p = methods;

    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, m, n) == 0)
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

static void route_request(http_req_t *r)
{
    const http_head_t *h = &r->head;
    const route_t *best = NULL;
    const char *allow = NULL;

    for (size_t i = 0; i < nroutes; i++) {
        const route_t *rt = &routes[i];
        bool hit = rt->prefix
                       ? h->path_len >= rt->path_len && memcmp(h->path, rt->path, rt->path_len) == 0
                       : h->path_len == rt->path_len && memcmp(h->path, rt->path, rt->path_len) == 0;
        if (!hit)
            continue;
        if (rt->methods && !method_listed(rt->methods, h->method, h->method_len)) {
            allow = rt->methods;
            continue;
        }
        if (!best || (!rt->prefix && best->prefix) || rt->path_len > best->path_len)
            best = rt;
    }
    if (best) {
        best->fn(r);
        return;
    }
    if (allow) {
        char a[128];
        size_t j = 0;
        for (const char *p = allow; *p && j + 2 < sizeof a; p++) {
            a[j++] = *p;
            if (*p == ',')
                a[j++] = ' ';
        }
        a[j] = '\0';
        http_add_header(r, "Allow", a);
        http_error(r, 405, "method_not_allowed", "method not allowed on this path");
        return;
    }
    http_error(r, 404, "not_found", "no such endpoint");
}

static void handle(http_req_t *r)
{
    conn_t *c = r->conn;

    r->state = REQ_HANDLING;
    conn_set_timeout(c, 0);
    conn_pause(c);
    conn_hold(c);
    route_request(r);
    if (r->state == REQ_DONE)
        req_free(r);
    conn_release(c);
}

/* --- the protocol -------------------------------------------------------- */

static void fail(http_req_t *r, int status)
{
    r->close_after = true;
    r->head.keep_alive = false;
    r->state = REQ_HANDLING;
    conn_pause(r->conn);
    http_error(r, status, error_code_for(status), "%s", http_reason(status));
}

/* Starts the body after a complete head; returns false when the request
 * was answered already. */
static bool begin_body(http_req_t *r)
{
    http_head_t *h = &r->head;

    if (h->expect_other) {
        fail(r, 417);
        return false;
    }
    if (h->body_kind == HTTP_BODY_NONE || (h->body_kind == HTTP_BODY_LENGTH && !h->content_length)) {
        handle(r);
        return false;
    }
    if (h->expect_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_send_copy(r->conn, cont, sizeof cont - 1);
    }
    if (h->body_kind == HTTP_BODY_LENGTH) {
        r->state = REQ_BODY_LENGTH;
        r->body_left = h->content_length;
        if (buf_reserve(&r->body, (size_t)h->content_length)) {
            fail(r, 413);
            return false;
        }
    } else {
        r->state = REQ_BODY_CHUNKED;
        http_chunked_init(&r->chunked);
    }
    conn_set_timeout(r->conn, settings.body_timeout_ms);
    return true;
}

static size_t on_data(conn_t *c, char *data, size_t len)
{
    http_req_t *r = c->ctx;
    size_t off = 0;

    while (off < len) {
        switch (r->state) {
        case REQ_HEAD: {
            int status = 0, n;
            if (!r->seen_bytes) {
                r->seen_bytes = true;
                r->started_ns = clock_mono_ns();
                conn_set_timeout(c, settings.header_timeout_ms);
            }
            n = http_parse_request(data + off, len - off, &settings.limits, &r->head, &status);
            if (n == HTTP_AGAIN)
                return off;
            if (n < 0) {
                memset(&r->head, 0, sizeof r->head);
                fail(r, status ? status : 400);
                return len;
            }
            if (req_keep_head(r, data + off, (size_t)n)) {
                fail(r, 431);
                return len;
            }
            off += (size_t)n;
            r->is_head = http_method_is(r, "HEAD");
            if (!begin_body(r))
                return off;
            break;
        }
        case REQ_BODY_LENGTH: {
            size_t take = len - off < r->body_left ? len - off : (size_t)r->body_left;
            if (buf_append(&r->body, data + off, take)) {
                fail(r, 413);
                return len;
            }
            off += take;
            r->body_left -= take;
            if (r->body_left == 0) {
                handle(r);
                return off;
            }
            break;
        }
        case REQ_BODY_CHUNKED: {
            size_t used = 0;
            int status = 0;
            int rc = http_chunked_decode(&r->chunked, data + off, len - off, &used, &r->body,
                                         &status);
            off += used;
            if (rc == HTTP_ERROR) {
                fail(r, status ? status : 400);
                return len;
            }
            if (rc == HTTP_OK) {
                handle(r);
                return off;
            }
            break;
        }
        default:
            return off;       /* handling: keep the rest for later */
        }
    }
    return off;
}

static void on_timeout(conn_t *c)
{
    http_req_t *r = c->ctx;

    if (r->state == REQ_HEAD && !r->seen_bytes) {
        conn_close(c);
    } else if (r->state == REQ_HEAD || r->state == REQ_BODY_LENGTH ||
               r->state == REQ_BODY_CHUNKED) {
        memset(&r->head, 0, sizeof r->head);
        fail(r, 408);
    }
}

static void on_shutdown(conn_t *c)
{
    http_req_t *r = c->ctx;

    if (r->state == REQ_HEAD && !r->seen_bytes)
        conn_close(c);
    else
        r->close_after = true;
}

static void on_close(conn_t *c)
{
    if (c->ctx)
        req_free(c->ctx);
}

static const conn_proto_t http_proto = {
    .on_data = on_data,
    .on_timeout = on_timeout,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
};

void http_server_accept(loop_t *l, uv_stream_t *server)
{
    conn_t *c = conn_accept(l, server, &http_proto, NULL, settings.outbound_queue);
    http_req_t *r;

    if (!c)
        return;
    r = req_new(c);
    if (!r) {
        conn_close(c);
        return;
    }
    c->ctx = r;
    conn_set_timeout(c, settings.header_timeout_ms);
}

/* --- header and query helpers ------------------------------------------- */

const char *http_header(const http_req_t *r, const char *name, size_t *len)
{
    const http_header_t *h = http_find_header(&r->head, name);

    if (!h)
        return NULL;
    if (len)
        *len = h->value_len;
    return h->value;
}

bool http_header_has_token(const http_req_t *r, const char *name, const char *token)
{
    size_t tlen = strlen(token);

    for (size_t i = 0; i < r->head.num_headers; i++) {
        const http_header_t *h = &r->head.headers[i];
        const char *p, *e;
        if (h->name_len != strlen(name) || strncasecmp(h->name, name, h->name_len))
            continue;
        p = h->value;
        e = h->value + h->value_len;
        while (p < e) {
            const char *q = memchr(p, ',', (size_t)(e - p));
            const char *te = q ? q : e;
            while (p < te && (*p == ' ' || *p == '\t'))
                p++;
            while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
                te--;
            if ((size_t)(te - p) == tlen && strncasecmp(p, token, tlen) == 0)
                return true;
            p = q ? q + 1 : e;
        }
    }
    return false;
}

int http_pct_decode(const char *s, size_t len, buf_t *out, bool plus_space)
{
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = hex_digit((unsigned char)s[i + 1]);
            lo = hex_digit((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus_space) {
            ch = ' ';
        }
        if (buf_append_byte(out, ch))
            return -1;
    }
    return 0;
}

int http_query_get(const http_req_t *r, const char *name, size_t nth, buf_t *out)
{
    const char *p = r->head.query, *e;
    size_t nlen = strlen(name), seen = 0;

    if (!p)
        return 0;
    e = p + r->head.query_len;
    while (p < e) {
        const char *amp = memchr(p, '&', (size_t)(e - p));
        const char *pe = amp ? amp : e;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        buf_t key;
        int match;

        buf_init(&key, 256);
        match = http_pct_decode(p, (size_t)(ke - p), &key, true) == 0 && key.len == nlen &&
                memcmp(key.data, name, nlen) == 0;
        buf_free(&key);
        if (match && seen++ == nth) {
            buf_reset(out);
            if (eq && http_pct_decode(eq + 1, (size_t)(pe - eq - 1), out, true))
                return -1;
            if (!out->data && buf_append(out, "", 0))
                return -1;
            return 1;
        }
        p = amp ? amp + 1 : e;
    }
    return 0;
}
