/*
 * parser.h - strict, incremental, zero-copy HTTP/1.1 request parser.
 *
 * Socket-free: bytes in, "complete / need more / error" out. The head
 * parser is re-run over the whole buffered head each time bytes arrive
 * (heads are capped, so this is cheap and keeps no state); the result
 * points into the caller's buffer. Bodies are read with
 * http_chunked_decode() or by Content-Length, by the caller.
 *
 * Strictness (RFC 9112) - each of these is an error, never a guess:
 * CRLF line endings only (bare CR or LF -> 400); method is a token;
 * request-target is origin-form ("/..."), or "*" for OPTIONS, visible ASCII
 * only; version is exactly HTTP/1.0 or HTTP/1.1 (other HTTP/x.y -> 505);
 * header names are tokens with no white space before ':'; no obs-fold
 * lines; no CTL bytes other than HTAB in values; HTTP/1.1 needs exactly one
 * Host (no request may have two); Content-Length is digits only, at most
 * INT64_MAX, and repeated values must agree; Transfer-Encoding must be
 * exactly "chunked": other codings before a final "chunked" -> 501,
 * "chunked" missing, not last or repeated -> 400 (RFC 9112 6.1, 6.3), and
 * it may not come with Content-Length (-> 400) or in HTTP/1.0 (-> 400).
 * Up to 2 empty lines before the request line are skipped (RFC 9112 2.2).
 *
 * Every answer is decided by the bytes up to the deciding one, so any
 * prefix of a request yields HTTP_AGAIN or the same answer as the whole,
 * and a byte that can never be valid fails as soon as it arrives.
 */
#ifndef SB_HTTP_PARSER_H
#define SB_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define HTTP_OK 0
#define HTTP_AGAIN (-2)
#define HTTP_ERROR (-1)

#define HTTP_MAX_HEADERS_HARD 128   /* compile-time ceiling for max_headers */

typedef struct http_limits {
    size_t max_uri;            /* request-target bytes        -> 414 */
    size_t max_header_bytes;   /* whole head, request line on -> 431 */
    size_t max_headers;        /* header field count          -> 431 */
    uint64_t max_body;         /* Content-Length or decoded   -> 413 */
} http_limits_t;

typedef struct http_header {
    const char *name;
    size_t name_len;
    const char *value;         /* OWS trimmed on both sides */
    size_t value_len;
} http_header_t;

enum http_body_kind { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED };

/* Connection header tokens seen (case-insensitive). */
#define HTTP_CONN_CLOSE 1u
#define HTTP_CONN_KEEP_ALIVE 2u
#define HTTP_CONN_UPGRADE 4u

typedef struct http_head {
    const char *method;
    size_t method_len;
    const char *target;        /* as received */
    size_t target_len;
    const char *path;          /* target up to '?' */
    size_t path_len;
    const char *query;         /* after '?', NULL when none */
    size_t query_len;
    int minor_version;         /* 0 or 1 */
    http_header_t headers[HTTP_MAX_HEADERS_HARD];
    size_t num_headers;
    enum http_body_kind body_kind;
    uint64_t content_length;   /* for HTTP_BODY_LENGTH */
    unsigned conn_flags;       /* HTTP_CONN_* */
    bool keep_alive;           /* per version and Connection */
    bool expect_continue;      /* "Expect: 100-continue" */
    bool expect_other;         /* an Expect value we do not support -> 417 */
} http_head_t;

/* Parses one request head from buf[0..len).
 * Returns the number of bytes the head occupies (> 0, skipped empty lines
 * included) when complete; *out then points into buf.
 * HTTP_AGAIN when more bytes are needed (and no limit is yet exceeded);
 * HTTP_ERROR with *status set (400, 413, 414, 431, 501, 505).
 * On HTTP_AGAIN / HTTP_ERROR *out holds nothing useful.
 * A Content-Length above limits->max_body is reported as 413 here, so the
 * server can refuse before reading the body. A target longer than max_uri
 * is 414 and more than max_header_bytes without the blank line is 431, both
 * as soon as the partial input shows it; max_headers is capped at
 * HTTP_MAX_HEADERS_HARD. No allocation; time linear in the bytes read. */
int http_parse_request(const char *buf, size_t len, const http_limits_t *lim,
                       http_head_t *out, int *status);

/* Case-insensitive header lookup; the first match, or NULL. */
const http_header_t *http_find_header(const http_head_t *h, const char *name);

/* Incremental chunked body decoder (chunk extensions are skipped, trailer
 * fields are read and discarded, both within limits). */
typedef struct http_chunked {
    int state;
    uint64_t remaining;        /* bytes left in the current chunk */
    size_t line_bytes;         /* size-line / trailer bytes, capped */
    size_t trailer_bytes;
} http_chunked_t;

void http_chunked_init(http_chunked_t *c);
/* Decodes from in[0..len), appending body bytes to out (whose max is the
 * body limit). Sets *consumed to the input bytes used.
 * Returns HTTP_OK (0) when the body is complete (bytes after *consumed are
 * the next request), HTTP_AGAIN when all input was used and more is
 * needed, HTTP_ERROR with *status (400 malformed, 413 when a chunk would
 * pass out->max - reported at its size line, before its data -, 500 when
 * out cannot grow). Limits (400): chunk size 1-16 hex digits, size line
 * (extensions and CRLF included) 4096 bytes, trailer section 8192 bytes.
 * Any split of the input gives the same output and answer. After HTTP_OK
 * further calls return HTTP_OK consuming nothing; after HTTP_ERROR they
 * fail again with the same status. */
int http_chunked_decode(http_chunked_t *c, const char *in, size_t len,
                        size_t *consumed, buf_t *out, int *status);

#endif
