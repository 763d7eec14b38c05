/*
 * parser.c - strict HTTP/1.1 request heads and chunked bodies.
 *
 * The head parser is one left-to-right pass over buf[0..len) that stops at
 * the first byte that can never start a valid request (RFC 9112). Every
 * error is decided by the bytes up to and including the offending one, so a
 * prefix of a request yields either HTTP_AGAIN or exactly the error the
 * whole request yields: feeding the same bytes in any split gives the same
 * answer, and a bad byte is refused as soon as it arrives. The limits are
 * positions too: the scan never looks past max_header_bytes (a head not
 * finished by then is 431), the target may not pass max_uri (414), and a
 * field line that would exceed max_headers is 431 at its first byte.
 * Once the blank line is found, the framing and connection headers are
 * interpreted (Host, Content-Length, Transfer-Encoding, Connection,
 * Expect); those errors are decided when the head is complete.
 *
 * Choices left open by the RFCs, decided here:
 * - Content-Length above INT64_MAX is 400 (it must fit off_t); empty list
 *   elements ("5,,5") in Content-Length or Transfer-Encoding are 400.
 * - Transfer-Encoding: chunked not last (including "identity", "gzip") is
 *   400 (RFC 9112 6.3, the length cannot be known); "chunked" twice is 400
 *   (6.1); other codings before a final "chunked" are 501 (not supported).
 * - Host may be empty (RFC 9112 3.2); otherwise it holds only reg-name,
 *   IP-literal and port characters.
 * - "Expect: 100-continue" is ignored in HTTP/1.0 (RFC 9110 10.1.1); other
 *   expectations set expect_other in either version.
 *
 * The chunked decoder is a byte-at-a-time state machine (data is copied in
 * runs), so it keeps only http_chunked_t between calls and any split of the
 * input decodes identically. A failed decoder remembers its status as a
 * negative state and keeps failing.
 */
#include "http/parser.h"

#include <assert.h>
#include <limits.h>
#include <string.h>

#include "core/hex.h"

#define C_TCHAR 1u   /* token character (RFC 9110 5.6.2) */
#define C_FIELD 2u   /* field-value byte: HTAB, SP, VCHAR, obs-text */
#define C_VCHAR 4u   /* 0x21-0x7E: request-target byte */
#define C_HOST 8u    /* unreserved, sub-delims, ":", "[", "]", "%" */
#define C_QDTEXT 16u /* quoted-string text (RFC 9110 5.6.4) */

static const uint8_t http_class[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0, 18,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    18, 31,  6, 23, 31, 31, 31, 31, 30, 30, 31, 31, 30, 31, 31, 22,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 30, 30, 22, 30, 22, 22,
    22, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 30,  6, 30, 23, 31,
    23, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 22, 23, 22, 31,  0,
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
};

#define IS(c, k) ((http_class[(unsigned char)(c)] & (k)) != 0)
#define IS_OWS(c) ((c) == ' ' || (c) == '\t')

#define MAX_EMPTY_LINES 2
#define CHUNK_MAX_HEX 16
#define CHUNK_MAX_LINE 4096
#define CHUNK_MAX_TRAILER 8192

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool ieq(const char *s, size_t n, const char *lit)
{
    size_t i;

    for (i = 0; i < n && lit[i]; i++)
        if (lower((unsigned char)s[i]) != lower((unsigned char)lit[i]))
            return false;
    return i == n && lit[i] == '\0';
}

/* ---- head: syntax -------------------------------------------------------
 * Each step advances s->pos past what it accepted and returns 0,
 * HTTP_AGAIN when the bytes end first, or the HTTP status of the error. */

typedef struct scan {
    const char *buf;
    size_t pos;
    size_t end;   /* min(len, max_header_bytes): never read past it */
} scan_t;

/* Accepts CRLF at buf[i]; 0 with s->pos after it, HTTP_AGAIN or 400. */
static int eat_crlf(scan_t *s, size_t i)
{
    if (i == s->end)
        return HTTP_AGAIN;
    if (s->buf[i] != '\r')
        return 400;
    if (i + 1 == s->end)
        return HTTP_AGAIN;
    if (s->buf[i + 1] != '\n')
        return 400;
    s->pos = i + 2;
    return 0;
}

static int skip_empty_lines(scan_t *s)
{
    for (int n = 0;; n++) {
        int rc;

        if (s->pos == s->end)
            return HTTP_AGAIN;
        if (s->buf[s->pos] != '\r' && s->buf[s->pos] != '\n')
            return 0;
        if (n == MAX_EMPTY_LINES)
            return 400;
        if ((rc = eat_crlf(s, s->pos)) != 0)
            return rc;
    }
}

/* A token ended by a single SP (the method). */
static int parse_method(scan_t *s, http_head_t *out)
{
    size_t i = s->pos;

    while (i < s->end && IS(s->buf[i], C_TCHAR))
        i++;
    if (i == s->end)
        return HTTP_AGAIN;
    if (s->buf[i] != ' ' || i == s->pos)
        return 400;
    out->method = s->buf + s->pos;
    out->method_len = i - s->pos;
    s->pos = i + 1;
    return 0;
}

static void split_target(http_head_t *out)
{
    const char *q = memchr(out->target, '?', out->target_len);

    out->path = out->target;
    out->path_len = q ? (size_t)(q - out->target) : out->target_len;
    if (q) {
        out->query = q + 1;
        out->query_len = out->target_len - out->path_len - 1;
    }
}

/* origin-form or "*" (OPTIONS only), ended by a single SP. */
static int parse_target(scan_t *s, size_t max_uri, http_head_t *out)
{
    size_t i = s->pos;
    char first;

    if (i == s->end)
        return HTTP_AGAIN;
    first = s->buf[i];
    if (first == '*' && (out->method_len != 7 ||
                         memcmp(out->method, "OPTIONS", 7) != 0))
        return 400;
    if (first != '/' && first != '*')
        return 400;
    for (; i < s->end && IS(s->buf[i], C_VCHAR); i++) {
        if (i - s->pos >= max_uri)
            return 414;
        if (first == '*' && i > s->pos)
            return 400;
    }
    if (i == s->end)
        return HTTP_AGAIN;
    if (s->buf[i] != ' ')
        return 400;
    out->target = s->buf + s->pos;
    out->target_len = i - s->pos;
    split_target(out);
    s->pos = i + 1;
    return 0;
}

/* "HTTP/" DIGIT "." DIGIT CRLF; only 1.0 and 1.1 are served. */
static int parse_version(scan_t *s, http_head_t *out)
{
    static const char pat[] = "HTTP/0.0";   /* '0' stands for any digit */
    size_t i = s->pos;

    for (size_t k = 0; k < sizeof pat - 1; k++, i++) {
        char c;

        if (i == s->end)
            return HTTP_AGAIN;
        c = s->buf[i];
        if (pat[k] == '0' ? (c < '0' || c > '9') : c != pat[k])
            return 400;
    }
    if (i == s->end)
        return HTTP_AGAIN;
    if (s->buf[i] != '\r')
        return 400;
    if (s->buf[i - 3] != '1' || (s->buf[i - 1] != '0' && s->buf[i - 1] != '1'))
        return 505;
    out->minor_version = s->buf[i - 1] - '0';
    return eat_crlf(s, i);
}

/* name ":" OWS value OWS CRLF, with the value trimmed. */
static int parse_field(scan_t *s, http_header_t *h)
{
    size_t i = s->pos, vstart, vend;

    while (i < s->end && IS(s->buf[i], C_TCHAR))
        i++;
    if (i == s->end)
        return HTTP_AGAIN;
    if (s->buf[i] != ':' || i == s->pos)
        return 400;
    h->name = s->buf + s->pos;
    h->name_len = i - s->pos;
    for (i++; i < s->end && IS_OWS(s->buf[i]); i++)
        ;
    vstart = vend = i;
    for (; i < s->end && IS(s->buf[i], C_FIELD); i++)
        if (!IS_OWS(s->buf[i]))
            vend = i + 1;
    h->value = s->buf + vstart;
    h->value_len = vend - vstart;
    return eat_crlf(s, i);
}

static int parse_fields(scan_t *s, size_t max_headers, http_head_t *out)
{
    for (;;) {
        char c;
        int rc;

        if (s->pos == s->end)
            return HTTP_AGAIN;
        c = s->buf[s->pos];
        if (c == '\r' || c == '\n')
            return eat_crlf(s, s->pos);
        if (IS_OWS(c))
            return 400;                 /* obs-fold */
        if (out->num_headers == max_headers)
            return 431;
        if ((rc = parse_field(s, &out->headers[out->num_headers])) != 0)
            return rc;
        out->num_headers++;
    }
}

/* ---- head: semantics --------------------------------------------------- */

/* Next comma-separated list element of [*p, end), OWS-trimmed (may be
 * empty); false when the list is exhausted. */
static bool next_element(const char **p, const char *end, const char **el,
                         size_t *el_len)
{
    const char *a = *p, *b, *comma;

    if (a == NULL)
        return false;
    comma = memchr(a, ',', (size_t)(end - a));
    b = comma ? comma : end;
    *p = comma ? comma + 1 : NULL;
    while (a < b && IS_OWS(*a))
        a++;
    while (b > a && IS_OWS(b[-1]))
        b--;
    *el = a;
    *el_len = (size_t)(b - a);
    return true;
}

typedef struct framing {
    int hosts;
    bool has_cl;
    uint64_t cl;
    int te_codings;
    int te_chunked;
    bool te_last_chunked;
} framing_t;

/* 1*DIGIT, at most INT64_MAX. */
static bool parse_decimal(const char *s, size_t n, uint64_t *v)
{
    uint64_t x = 0;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';

        if (d > 9 || x > ((uint64_t)INT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

static int add_content_length(framing_t *f, const http_header_t *h)
{
    const char *p = h->value, *el;
    size_t el_len;
    uint64_t v;

    while (next_element(&p, h->value + h->value_len, &el, &el_len)) {
        if (!parse_decimal(el, el_len, &v) || (f->has_cl && v != f->cl))
            return 400;
        f->has_cl = true;
        f->cl = v;
    }
    return 0;
}

static int add_transfer_encoding(framing_t *f, const http_header_t *h)
{
    const char *p = h->value, *el;
    size_t el_len;

    while (next_element(&p, h->value + h->value_len, &el, &el_len)) {
        if (el_len == 0)
            return 400;
        f->te_codings++;
        f->te_last_chunked = ieq(el, el_len, "chunked");
        f->te_chunked += f->te_last_chunked;
    }
    return 0;
}

static void add_connection(http_head_t *out, const http_header_t *h)
{
    const char *p = h->value, *el;
    size_t el_len;

    while (next_element(&p, h->value + h->value_len, &el, &el_len)) {
        if (ieq(el, el_len, "close"))
            out->conn_flags |= HTTP_CONN_CLOSE;
        else if (ieq(el, el_len, "keep-alive"))
            out->conn_flags |= HTTP_CONN_KEEP_ALIVE;
        else if (ieq(el, el_len, "upgrade"))
            out->conn_flags |= HTTP_CONN_UPGRADE;
    }
}

static void add_expect(http_head_t *out, const http_header_t *h)
{
    if (!ieq(h->value, h->value_len, "100-continue"))
        out->expect_other = true;
    else if (out->minor_version == 1)
        out->expect_continue = true;
}

static bool valid_host(const http_header_t *h)
{
    for (size_t i = 0; i < h->value_len; i++)
        if (!IS(h->value[i], C_HOST))
            return false;
    return true;
}

static int read_field(framing_t *f, http_head_t *out, const http_header_t *h)
{
    const char *n = h->name;
    size_t len = h->name_len;

    if (ieq(n, len, "host")) {
        f->hosts++;
        return valid_host(h) ? 0 : 400;
    }
    if (ieq(n, len, "content-length"))
        return add_content_length(f, h);
    if (ieq(n, len, "transfer-encoding"))
        return add_transfer_encoding(f, h);
    if (ieq(n, len, "connection"))
        add_connection(out, h);
    else if (ieq(n, len, "expect"))
        add_expect(out, h);
    return 0;
}

/* Sets body_kind from the framing headers (see the design note). */
static int decide_body(const framing_t *f, const http_limits_t *lim,
                       http_head_t *out)
{
    if (f->te_codings > 0) {
        if (out->minor_version == 0 || f->has_cl)
            return 400;
        if (!f->te_last_chunked || f->te_chunked > 1)
            return 400;
        if (f->te_codings > 1)
            return 501;
        out->body_kind = HTTP_BODY_CHUNKED;
        return 0;
    }
    if (f->has_cl) {
        if (f->cl > lim->max_body)
            return 413;
        out->body_kind = HTTP_BODY_LENGTH;
        out->content_length = f->cl;
    }
    return 0;
}

static int interpret_head(const http_limits_t *lim, http_head_t *out)
{
    framing_t f = { 0 };
    int rc;

    for (size_t i = 0; i < out->num_headers; i++)
        if ((rc = read_field(&f, out, &out->headers[i])) != 0)
            return rc;
    if (f.hosts > 1 || (f.hosts == 0 && out->minor_version == 1))
        return 400;
    if ((rc = decide_body(&f, lim, out)) != 0)
        return rc;
    if (out->minor_version == 1)
        out->keep_alive = !(out->conn_flags & HTTP_CONN_CLOSE);
    else
        out->keep_alive = (out->conn_flags & HTTP_CONN_KEEP_ALIVE) &&
                          !(out->conn_flags & HTTP_CONN_CLOSE);
    return 0;
}

static void reset_head(http_head_t *out)
{
    out->method = out->target = out->path = out->query = NULL;
    out->method_len = out->target_len = out->path_len = out->query_len = 0;
    out->minor_version = 0;
    out->num_headers = 0;
    out->body_kind = HTTP_BODY_NONE;
    out->content_length = 0;
    out->conn_flags = 0;
    out->keep_alive = false;
    out->expect_continue = false;
    out->expect_other = false;
}

/* Stateless: re-parses buf from its start on every call. On success every
 * pointer in *out points into buf; on HTTP_AGAIN / HTTP_ERROR *out holds
 * nothing useful. No allocation; time linear in
 * min(len, lim->max_header_bytes). */
int http_parse_request(const char *buf, size_t len, const http_limits_t *lim,
                       http_head_t *out, int *status)
{
    size_t max_bytes = lim->max_header_bytes < INT_MAX ? lim->max_header_bytes
                                                       : INT_MAX;
    size_t max_headers = lim->max_headers < HTTP_MAX_HEADERS_HARD
                             ? lim->max_headers
                             : HTTP_MAX_HEADERS_HARD;
    scan_t s = { buf, 0, len < max_bytes ? len : max_bytes };
    int rc;

    assert(buf != NULL || len == 0);
    reset_head(out);
    if ((rc = skip_empty_lines(&s)) == 0 && (rc = parse_method(&s, out)) == 0 &&
        (rc = parse_target(&s, lim->max_uri, out)) == 0 &&
        (rc = parse_version(&s, out)) == 0 &&
        (rc = parse_fields(&s, max_headers, out)) == 0)
        rc = interpret_head(lim, out);
    if (rc == HTTP_AGAIN && len > max_bytes)
        rc = 431;
    if (rc == HTTP_AGAIN)
        return HTTP_AGAIN;
    if (rc != 0) {
        *status = rc;
        return HTTP_ERROR;
    }
    return (int)s.pos;
}

const http_header_t *http_find_header(const http_head_t *h, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < h->num_headers; i++)
        if (h->headers[i].name_len == n && ieq(h->headers[i].name, n, name))
            return &h->headers[i];
    return NULL;
}

/* ---- chunked bodies ------------------------------------------------------
 * States from CK_SIZE to CK_SIZE_LF belong to a size line (counted in
 * line_bytes), CK_TR_START to CK_END_LF to the trailer section (counted in
 * trailer_bytes). The chunk-ext grammar (RFC 9112 7.1.1) is checked:
 *   *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ) */

enum {
    CK_SIZE,          /* hex digits; line_bytes is the digit count */
    CK_EXT_PRE,       /* BWS after the size, before ';' */
    CK_EXT_NAME_PRE,  /* BWS after ';' */
    CK_EXT_NAME,
    CK_EXT_AFTER_NAME,
    CK_EXT_VAL_PRE,   /* BWS after '=' */
    CK_EXT_TOKEN,
    CK_EXT_QUOTED,
    CK_EXT_QESC,      /* after '\' in a quoted-string */
    CK_EXT_AFTER_VAL,
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TR_START,      /* start of a trailer line or the final CRLF */
    CK_TR_NAME,
    CK_TR_VALUE,
    CK_TR_LF,
    CK_END_LF,
    CK_DONE,
};

void http_chunked_init(http_chunked_t *c)
{
    c->state = CK_SIZE;
    c->remaining = 0;
    c->line_bytes = 0;
    c->trailer_bytes = 0;
}

/* The state after `ch` inside a chunk extension, or -1 (400). */
static int ck_ext(int state, char ch)
{
    bool ows = IS_OWS(ch), tchar = IS(ch, C_TCHAR);

    switch (state) {
    case CK_EXT_PRE:
        return ows ? state : ch == ';' ? CK_EXT_NAME_PRE : -1;
    case CK_EXT_NAME_PRE:
        return ows ? state : tchar ? CK_EXT_NAME : -1;
    case CK_EXT_NAME:
    case CK_EXT_AFTER_NAME:
        if (tchar && state == CK_EXT_NAME)
            return state;
        if (ows)
            return CK_EXT_AFTER_NAME;
        return ch == '=' ? CK_EXT_VAL_PRE : ch == ';' ? CK_EXT_NAME_PRE
             : ch == '\r' ? CK_SIZE_LF : -1;
    case CK_EXT_VAL_PRE:
        return ows ? state : tchar ? CK_EXT_TOKEN
             : ch == '"' ? CK_EXT_QUOTED : -1;
    case CK_EXT_TOKEN:
    case CK_EXT_AFTER_VAL:
        if (tchar && state == CK_EXT_TOKEN)
            return state;
        if (ows)
            return CK_EXT_AFTER_VAL;
        return ch == ';' ? CK_EXT_NAME_PRE : ch == '\r' ? CK_SIZE_LF : -1;
    case CK_EXT_QUOTED:
        return ch == '"' ? CK_EXT_AFTER_VAL : ch == '\\' ? CK_EXT_QESC
             : IS(ch, C_QDTEXT) ? state : -1;
    case CK_EXT_QESC:
        return IS(ch, C_FIELD) ? CK_EXT_QUOTED : -1;
    default:
        return -1;
    }
}

/* A byte of the size line after `digits` hex digits. */
static int ck_size_byte(http_chunked_t *c, char ch, size_t digits)
{
    int d = hex_digit((unsigned char)ch);

    if (d >= 0) {
        if (digits == CHUNK_MAX_HEX)
            return 400;
        c->remaining = (c->remaining << 4) | (uint64_t)d;
        return 0;
    }
    if (digits == 0)
        return 400;
    if (ch == '\r')
        c->state = CK_SIZE_LF;
    else if (ch == ';')
        c->state = CK_EXT_NAME_PRE;
    else if (IS_OWS(ch))
        c->state = CK_EXT_PRE;
    else
        return 400;
    return 0;
}

/* LF ending a size line: the last chunk starts the trailer; a data chunk
 * must fit in what is left of out (413 before any of it is read). */
static int ck_size_end(http_chunked_t *c, const buf_t *out)
{
    if (c->remaining == 0) {
        c->state = CK_TR_START;
    } else {
        if (c->remaining > out->max - out->len)
            return 413;
        c->state = CK_DATA;
    }
    return 0;
}

/* The state after `ch` in the trailer section (each line a field line
 * without obs-fold), or -1 (400). */
static int ck_trailer(int state, char ch)
{
    switch (state) {
    case CK_TR_START:
        return ch == '\r' ? CK_END_LF : IS(ch, C_TCHAR) ? CK_TR_NAME : -1;
    case CK_TR_NAME:
        return ch == ':' ? CK_TR_VALUE : IS(ch, C_TCHAR) ? state : -1;
    case CK_TR_VALUE:
        return ch == '\r' ? CK_TR_LF : IS(ch, C_FIELD) ? state : -1;
    case CK_TR_LF:
        return ch == '\n' ? CK_TR_START : -1;
    case CK_END_LF:
        return ch == '\n' ? CK_DONE : -1;
    default:
        return -1;
    }
}

/* One byte outside chunk data; 0 or an HTTP status. */
static int ck_step(http_chunked_t *c, char ch, const buf_t *out)
{
    int next;

    if (c->state <= CK_SIZE_LF && ++c->line_bytes > CHUNK_MAX_LINE)
        return 400;
    if (c->state >= CK_TR_START && ++c->trailer_bytes > CHUNK_MAX_TRAILER)
        return 400;
    switch (c->state) {
    case CK_SIZE:
        return ck_size_byte(c, ch, c->line_bytes - 1);
    case CK_SIZE_LF:
        return ch == '\n' ? ck_size_end(c, out) : 400;
    case CK_DATA_CR:
        if (ch != '\r')
            return 400;
        c->state = CK_DATA_LF;
        return 0;
    case CK_DATA_LF:
        if (ch != '\n')
            return 400;
        c->state = CK_SIZE;
        c->line_bytes = 0;
        return 0;
    default:
        break;
    }
    next = c->state >= CK_TR_START ? ck_trailer(c->state, ch)
                                   : ck_ext(c->state, ch);
    if (next < 0)
        return 400;
    c->state = next;
    return 0;
}

/* Copies up to the rest of the current chunk from in[0..len). */
static int ck_data(http_chunked_t *c, const char *in, size_t len, buf_t *out,
                   size_t *used)
{
    size_t n = c->remaining < len ? (size_t)c->remaining : len;
    int rc = buf_append(out, in, n);

    if (rc != 0)
        return rc == BUF_ETOOBIG ? 413 : 500;
    c->remaining -= n;
    if (c->remaining == 0)
        c->state = CK_DATA_CR;
    *used = n;
    return 0;
}

int http_chunked_decode(http_chunked_t *c, const char *in, size_t len,
                        size_t *consumed, buf_t *out, int *status)
{
    size_t i = 0;
    int rc = 0;

    if (c->state < 0) {
        rc = -c->state;
        goto fail;
    }
    while (i < len && c->state != CK_DONE) {
        size_t used = 1;

        if (c->state == CK_DATA)
            rc = ck_data(c, in + i, len - i, out, &used);
        else
            rc = ck_step(c, in[i], out);
        if (rc != 0) {
            c->state = -rc;
            goto fail;
        }
        i += used;
    }
    *consumed = i;
    return c->state == CK_DONE ? HTTP_OK : HTTP_AGAIN;
fail:
    *consumed = i;
    *status = rc;
    return HTTP_ERROR;
}
