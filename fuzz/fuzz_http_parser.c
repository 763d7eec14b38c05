/*
 * fuzz_http_parser.c - libFuzzer target for the HTTP/1.1 head parser and
 * the chunked body decoder.
 *
 * The whole input is a request head (small limits, so every limit is
 * reachable). The target checks that:
 * - a failure carries one of the documented statuses;
 * - a prefix chosen from the input's hash gives HTTP_AGAIN or the same
 *   answer as the whole input (the parser decides on bytes seen so far);
 * - a parsed head only points inside the head, within the limits, with
 *   trimmed values and consistent framing fields;
 * - the bytes after the head decode as a chunked body identically in one
 *   call, in two pieces split at the hash-chosen point, and one byte per
 *   call (output, status and consumed bytes).
 * Any violation calls abort().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const http_limits_t fz_lim = {
    .max_uri = 128,
    .max_header_bytes = 1024,
    .max_headers = 16,
    .max_body = 4096,
};

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static uint64_t fz_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

static bool fz_inside(const char *p, size_t n, const char *base, size_t len)
{
    return p >= base && (size_t)(p - base) <= len && n <= len - (size_t)(p - base);
}

static bool fz_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void fz_check_head(const http_head_t *h, const char *base, size_t len)
{
    CHECK(len <= fz_lim.max_header_bytes);
    CHECK(h->method_len > 0 && fz_inside(h->method, h->method_len, base, len));
    CHECK(h->target_len > 0 && h->target_len <= fz_lim.max_uri);
    CHECK(fz_inside(h->target, h->target_len, base, len));
    CHECK(h->target[0] == '/' || (h->target[0] == '*' && h->target_len == 1));
    CHECK(h->path == h->target && h->path_len <= h->target_len);
    if (h->query)
        CHECK(h->query == h->path + h->path_len + 1 &&
              h->path_len + 1 + h->query_len == h->target_len);
    else
        CHECK(h->path_len == h->target_len);
    CHECK(h->minor_version == 0 || h->minor_version == 1);
    CHECK(h->num_headers <= fz_lim.max_headers);
    for (size_t i = 0; i < h->num_headers; i++) {
        const http_header_t *f = &h->headers[i];

        CHECK(f->name_len > 0 && fz_inside(f->name, f->name_len, base, len));
        CHECK(fz_inside(f->value, f->value_len, base, len));
        CHECK(memchr(f->value, '\r', f->value_len) == NULL);
        CHECK(memchr(f->value, '\n', f->value_len) == NULL);
        if (f->value_len)
            CHECK(!fz_ows(f->value[0]) && !fz_ows(f->value[f->value_len - 1]));
    }
    CHECK(http_find_header(h, "content-length") != NULL ||
          h->body_kind != HTTP_BODY_LENGTH);
    if (h->body_kind == HTTP_BODY_LENGTH)
        CHECK(h->content_length <= fz_lim.max_body);
    else
        CHECK(h->content_length == 0);
    if (h->body_kind == HTTP_BODY_CHUNKED)
        CHECK(h->minor_version == 1 &&
              http_find_header(h, "Content-Length") == NULL);
    if (h->minor_version == 1)
        CHECK(h->keep_alive == !(h->conn_flags & HTTP_CONN_CLOSE));
    else
        CHECK(h->keep_alive == ((h->conn_flags & HTTP_CONN_KEEP_ALIVE) &&
                                !(h->conn_flags & HTTP_CONN_CLOSE)));
    CHECK(!(h->expect_continue && h->minor_version == 0));
}

/* The prefix in[0..k), copied so ASan sees a read past k. */
static void fz_check_prefix(const uint8_t *in, size_t k, int rc, int status)
{
    static http_head_t h;
    char *copy = malloc(k ? k : 1);
    int prc, pstatus = 0;

    CHECK(copy != NULL);
    memcpy(copy, in, k);
    prc = http_parse_request(copy, k, &fz_lim, &h, &pstatus);
    free(copy);
    if (rc > 0)
        CHECK(prc == ((size_t)rc > k ? HTTP_AGAIN : rc));
    else if (prc != HTTP_AGAIN)
        CHECK(prc == rc && pstatus == status);
}

typedef struct fz_body {
    int rc;
    int status;
    size_t consumed;
    buf_t out;
} fz_body_t;

/* Decodes in[0..len) in pieces of `step` bytes, the first of `first`. */
static void fz_decode(const char *in, size_t len, size_t first, size_t step,
                      fz_body_t *r)
{
    http_chunked_t c;
    size_t off = 0, piece = first;

    http_chunked_init(&c);
    buf_init(&r->out, fz_lim.max_body);
    r->rc = HTTP_AGAIN;
    r->status = 0;
    r->consumed = 0;
    do {
        size_t n = piece < len - off ? piece : len - off, used = SIZE_MAX;

        r->rc = http_chunked_decode(&c, in + off, n, &used, &r->out,
                                    &r->status);
        CHECK(used <= n);
        CHECK(r->rc != HTTP_AGAIN || used == n);
        CHECK(r->rc != HTTP_ERROR || r->status == 400 || r->status == 413);
        r->consumed += used;
        off += n;
        piece = step;
    } while (r->rc == HTTP_AGAIN && off < len);
}

static void fz_same(const fz_body_t *a, const fz_body_t *b)
{
    CHECK(a->rc == b->rc && a->status == b->status);
    CHECK(a->consumed == b->consumed && a->out.len == b->out.len);
    CHECK(a->out.len == 0 || memcmp(a->out.data, b->out.data, a->out.len) == 0);
}

static void fz_check_body(const char *in, size_t len, uint64_t hash)
{
    fz_body_t one, two, bytes;
    size_t cut = len ? (size_t)(hash % (len + 1)) : 0;

    fz_decode(in, len, len, len, &one);
    fz_decode(in, len, cut, len, &two);
    fz_decode(in, len, 1, 1, &bytes);
    fz_same(&one, &two);
    fz_same(&one, &bytes);
    buf_free(&one.out);
    buf_free(&two.out);
    buf_free(&bytes.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static http_head_t head;
    const char *buf = (const char *)data;
    uint64_t hash = fz_hash(data, size);
    int status = 0;
    int rc = http_parse_request(buf, size, &fz_lim, &head, &status);

    if (rc == HTTP_ERROR)
        CHECK(status == 400 || status == 413 || status == 414 ||
              status == 431 || status == 501 || status == 505);
    else if (rc == HTTP_AGAIN)
        CHECK(size <= fz_lim.max_header_bytes);
    else
        CHECK(rc > 0 && (size_t)rc <= size);
    fz_check_prefix(data, size ? (size_t)(hash % size) : 0, rc, status);
    if (rc > 0) {
        fz_check_head(&head, buf, (size_t)rc);
        fz_check_body(buf + rc, size - (size_t)rc, hash >> 32);
    }
    return 0;
}
