/*
 * ws_codec.c - RFC 6455 handshake key, server frame encoding and the
 * incremental client frame reader. See ws_codec.h for the rules enforced.
 *
 * The reader is a two-state machine (header, payload) driven one header
 * byte at a time and one payload run at a time. Every check is made as soon
 * as the byte it depends on has arrived: opcode and flags on header byte 0,
 * the mask bit and the control-frame length on byte 1, length encoding and
 * the message cap once the length is complete (so an oversized message is
 * refused before any of its payload is read), UTF-8 as each payload run is
 * unmasked.
 *
 * Payload bytes are unmasked in the caller's buffer. A frame that ends a
 * message and arrives whole in one feed call, with nothing reassembled
 * before it, is returned pointing into that buffer (no copy); anything else
 * is copied once, into r->msg for data or r->ctl for control frames.
 */
#include "http/ws_codec.h"

#include <assert.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/base64.h"
#include "core/utf8.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_GUID_LEN (sizeof(WS_GUID) - 1)
#define WS_KEY_LEN 24                /* base64 of 16 bytes, "==" padded */
#define WS_CONTROL_MAX 125
#define WS_REASON_MAX (WS_CONTROL_MAX - 2)
#define WS_MSG_KEEP 4096             /* reassembly memory kept between messages */

enum { WS_RD_HEADER, WS_RD_PAYLOAD };

static const unsigned char ws__empty[1];

/* --- handshake ------------------------------------------------------------ */

/* A 16-byte key is 22 alphabet characters and "==". The 4 unused bits of
 * the last character are not checked (as in Go's and Python's decoders):
 * such a key still decodes to exactly 16 bytes. */
static bool ws__key_valid(const char *key, size_t len)
{
    unsigned char raw[16];

    return len == WS_KEY_LEN &&
           base64_decode(key, len, raw, sizeof raw, B64_STD | B64_LAX_BITS) == 16;
}

int ws_accept_key(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char in[WS_KEY_LEN + WS_GUID_LEN];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;

    if (!key || !ws__key_valid(key, len))
        return -1;
    memcpy(in, key, WS_KEY_LEN);
    memcpy(in + WS_KEY_LEN, WS_GUID, WS_GUID_LEN);
    if (!EVP_Digest(in, sizeof in, md, &md_len, EVP_sha1(), NULL) || md_len != 20)
        return -1;
    base64_encode(md, 20, out, B64_STD);   /* 28 chars + NUL */
    return 0;
}

/* --- encoding ------------------------------------------------------------- */

size_t ws_frame_header(unsigned char out[WS_FRAME_HEADER_MAX], unsigned opcode,
                       uint64_t payload_len)
{
    assert(opcode <= 0xF && payload_len >> 63 == 0);
    out[0] = (unsigned char)(0x80 | opcode);
    if (payload_len <= WS_CONTROL_MAX) {
        out[1] = (unsigned char)payload_len;
        return 2;
    }
    if (payload_len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (unsigned char)(payload_len >> 8);
        out[3] = (unsigned char)payload_len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)(payload_len >> (56 - 8 * i));
    return 10;
}

/* The frame with room for the payload, which the caller writes at
 * data + *hdr_len. */
static sbuf_t *ws__frame_alloc(unsigned opcode, size_t len, size_t *hdr_len)
{
    unsigned char hdr[WS_FRAME_HEADER_MAX];
    size_t n = ws_frame_header(hdr, opcode, len);
    sbuf_t *s;

    if (len > SIZE_MAX - WS_FRAME_HEADER_MAX - 1)
        return NULL;
    s = sbuf_new(n + len);
    if (!s)
        return NULL;
    memcpy(s->data, hdr, n);
    *hdr_len = n;
    return s;
}

sbuf_t *ws_frame_new(unsigned opcode, const void *payload, size_t len)
{
    size_t off;
    sbuf_t *s = ws__frame_alloc(opcode, len, &off);

    if (s && len)
        memcpy(s->data + off, payload, len);
    return s;
}

/* The longest prefix of reason, at most WS_REASON_MAX bytes, that does not
 * end inside a UTF-8 sequence. */
static size_t ws__reason_len(const char *reason)
{
    size_t n = reason ? strnlen(reason, WS_REASON_MAX + 1) : 0;

    if (n <= WS_REASON_MAX)
        return n;
    n = WS_REASON_MAX;
    while (n > 0 && ((unsigned char)reason[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* Codes that may not go on the wire (1005, 1006, 1015 and other invalid
 * ones) give a close frame with an empty body: echoing a peer's
 * WS_CLOSE_NO_STATUS close this way is exactly what RFC 6455 5.5.1 asks. */
sbuf_t *ws_close_frame_new(uint16_t code, const char *reason)
{
    size_t body = ws_close_code_valid(code) ? 2 + ws__reason_len(reason) : 0;
    size_t off;
    sbuf_t *s = ws__frame_alloc(WS_OP_CLOSE, body, &off);

    if (!s || body == 0)
        return s;
    s->data[off] = (char)(code >> 8);
    s->data[off + 1] = (char)(code & 0xFF);
    if (body > 2)
        memcpy(s->data + off + 2, reason, body - 2);
    return s;
}

/* 1012-1014 are IANA-registered (service restart, try again later, bad
 * gateway) and accepted; 1004, 1005, 1006 and 1015 are reserved or local
 * only; 1016-2999 are unassigned; 0-999 and >= 5000 are not used. */
bool ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* --- reader --------------------------------------------------------------- */

void ws_reader_init(ws_reader_t *r, uint64_t max_message)
{
    memset(r, 0, sizeof(*r));
    r->max_message = max_message;
    r->state = WS_RD_HEADER;
    r->utf8_state = UTF8_ACCEPT;
    /* buf_t keeps a NUL after the data, so its cap stays below SIZE_MAX. */
    buf_init(&r->msg, max_message < SIZE_MAX ? (size_t)max_message : SIZE_MAX - 1);
}

void ws_reader_free(ws_reader_t *r)
{
    buf_free(&r->msg);
    r->closed = true;
    r->fail_code = WS_CLOSE_PROTOCOL;
}

static int ws__fail(ws_reader_t *r, unsigned code, unsigned *close_code)
{
    r->closed = true;
    r->fail_code = code;
    *close_code = code;
    return -1;
}

static bool ws__is_control(unsigned opcode)
{
    return (opcode & 0x8) != 0;
}

/* Extended length bytes announced by the 7-bit length. */
static size_t ws__ext_len(unsigned char b1)
{
    unsigned len7 = b1 & 0x7F;

    return len7 == 127 ? 8 : len7 == 126 ? 2 : 0;
}

static int ws__check_byte0(ws_reader_t *r, unsigned *close_code)
{
    unsigned char b0 = r->hdr[0];
    unsigned op = b0 & 0x0F;
    bool known = op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG);

    r->fin = (b0 & 0x80) != 0;
    r->opcode = op;
    if ((b0 & 0x70) || !known)
        return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
    if (ws__is_control(op) && !r->fin)
        return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
    if (op == WS_OP_CONT && r->msg_opcode == 0)
        return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
    if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && r->msg_opcode != 0)
        return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
    return 0;
}

static int ws__check_byte1(ws_reader_t *r, unsigned *close_code)
{
    unsigned char b1 = r->hdr[1];

    if (!(b1 & 0x80))
        return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
    if (ws__is_control(r->opcode) && (b1 & 0x7F) > WS_CONTROL_MAX)
        return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
    return 0;
}

/* Decodes the complete length into r->remaining; refuses non-minimal
 * encodings, 64-bit lengths with the top bit set (1002) and data frames
 * that would take the message past max_message (1009). */
static int ws__check_length(ws_reader_t *r, unsigned *close_code)
{
    size_t ext = ws__ext_len(r->hdr[1]);
    uint64_t len = r->hdr[1] & 0x7F;
    uint64_t have;

    if (ext) {
        len = 0;
        for (size_t i = 0; i < ext; i++)
            len = len << 8 | r->hdr[2 + i];
        if (len >> 63)
            return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
        if (len <= (ext == 2 ? WS_CONTROL_MAX : 0xFFFF))
            return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
    }
    r->remaining = len;
    if (ws__is_control(r->opcode))
        return 0;
    have = r->opcode == WS_OP_CONT ? r->msg.len : 0;
    if (have > r->max_message || len > r->max_message - have)
        return ws__fail(r, WS_CLOSE_TOO_BIG, close_code);
    return 0;
}

/* Header complete: set up the payload state; a new data message drops the
 * previous one (and its memory if it was large). */
static void ws__begin_frame(ws_reader_t *r)
{
    size_t ext = ws__ext_len(r->hdr[1]);

    memcpy(r->mask, r->hdr + 2 + ext, 4);
    r->hdr_len = 0;
    r->frame_off = 0;
    r->ctl_len = 0;
    r->state = WS_RD_PAYLOAD;
    if (r->opcode != WS_OP_TEXT && r->opcode != WS_OP_BINARY)
        return;
    r->msg_opcode = r->opcode;
    r->utf8_state = UTF8_ACCEPT;
    if (r->msg.cap > WS_MSG_KEEP)
        buf_free(&r->msg);
    else
        buf_reset(&r->msg);
}

/* One header byte. 1 when the header is complete, 0 for more, -1 on a
 * violation. */
static int ws__header_byte(ws_reader_t *r, unsigned char c, unsigned *close_code)
{
    size_t ext;

    r->hdr[r->hdr_len++] = c;
    if (r->hdr_len == 1)
        return ws__check_byte0(r, close_code);
    if (r->hdr_len == 2 && ws__check_byte1(r, close_code) < 0)
        return -1;
    ext = ws__ext_len(r->hdr[1]);
    if (r->hdr_len == 2 + ext && ws__check_length(r, close_code) < 0)
        return -1;
    if (r->hdr_len < 2 + ext + 4)
        return 0;
    ws__begin_frame(r);
    return 1;
}

static void ws__unmask(const ws_reader_t *r, unsigned char *p, size_t n)
{
    unsigned char m[4];

    for (size_t k = 0; k < 4; k++)
        m[k] = r->mask[(r->frame_off + k) & 3];
    for (size_t i = 0; i < n; i++)
        p[i] ^= m[i & 3];
}

static void ws__event(ws_event_t *ev, enum ws_event_type type,
                      const unsigned char *data, size_t len)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    ev->data = len ? data : ws__empty;
    ev->len = len;
}

static int ws__close_event(ws_reader_t *r, const unsigned char *p, size_t len,
                           ws_event_t *ev, unsigned *close_code)
{
    unsigned code = WS_CLOSE_NO_STATUS;

    if (len == 1)
        return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
    if (len >= 2) {
        code = (unsigned)p[0] << 8 | p[1];
        if (!ws_close_code_valid(code))
            return ws__fail(r, WS_CLOSE_PROTOCOL, close_code);
        if (!utf8_valid(p + 2, len - 2))
            return ws__fail(r, WS_CLOSE_INVALID_DATA, close_code);
    }
    ws__event(ev, WS_EV_CLOSE, p, len);
    ev->close_code = code;
    ev->close_reason = (const char *)ev->data + (len ? 2 : 0);
    ev->close_reason_len = len ? len - 2 : 0;
    /* Nothing may follow a close frame: further input is a violation. */
    r->closed = true;
    r->fail_code = WS_CLOSE_PROTOCOL;
    return 1;
}

static int ws__control_event(ws_reader_t *r, const unsigned char *p, size_t len,
                             ws_event_t *ev, unsigned *close_code)
{
    if (r->opcode == WS_OP_CLOSE)
        return ws__close_event(r, p, len, ev, close_code);
    ws__event(ev, r->opcode == WS_OP_PING ? WS_EV_PING : WS_EV_PONG, p, len);
    return 1;
}

static int ws__data_event(ws_reader_t *r, const unsigned char *p, size_t len,
                          ws_event_t *ev, unsigned *close_code)
{
    bool text = r->msg_opcode == WS_OP_TEXT;

    if (!r->fin)
        return 0;
    if (text && r->utf8_state != UTF8_ACCEPT)
        return ws__fail(r, WS_CLOSE_INVALID_DATA, close_code);
    ws__event(ev, text ? WS_EV_TEXT : WS_EV_BINARY, p, len);
    r->msg_opcode = 0;
    return 1;
}

/* Consumes n (<= r->remaining, possibly 0) payload bytes at p: unmasks,
 * validates text, stores or points at them; returns 1 with *ev when the
 * frame completes an event, 0 otherwise, -1 on a violation. */
static int ws__payload(ws_reader_t *r, unsigned char *p, size_t n,
                       ws_event_t *ev, unsigned *close_code)
{
    bool control = ws__is_control(r->opcode);
    bool whole = r->frame_off == 0 && n == r->remaining;
    const unsigned char *data = p;
    size_t len = n;

    ws__unmask(r, p, n);
    if (!control && r->msg_opcode == WS_OP_TEXT) {
        r->utf8_state = utf8_feed(r->utf8_state, p, n);
        if (r->utf8_state == UTF8_REJECT)
            return ws__fail(r, WS_CLOSE_INVALID_DATA, close_code);
    }
    r->frame_off += n;
    r->remaining -= n;
    if (control && !whole) {
        memcpy(r->ctl + r->ctl_len, p, n);   /* header capped it at 125 */
        r->ctl_len += n;
        data = r->ctl;
        len = r->ctl_len;
    } else if (!control && !(whole && r->fin && r->msg.len == 0)) {
        /* The header checked the cap, so only ENOMEM can fail here. */
        if (buf_append(&r->msg, p, n) != 0)
            return ws__fail(r, WS_CLOSE_INTERNAL, close_code);
        data = (const unsigned char *)r->msg.data;
        len = r->msg.len;
    }
    if (r->remaining > 0)
        return 0;
    r->state = WS_RD_HEADER;
    if (control)
        return ws__control_event(r, data, len, ev, close_code);
    return ws__data_event(r, data, len, ev, close_code);
}

int ws_reader_feed(ws_reader_t *r, unsigned char *in, size_t len,
                   size_t *consumed, ws_event_t *ev, unsigned *close_code)
{
    size_t pos = 0;
    int rc = 0;

    if (r->closed) {
        *consumed = 0;
        *close_code = r->fail_code;
        return -1;
    }
    while (rc == 0) {
        if (r->state == WS_RD_HEADER) {
            if (pos == len)
                break;
            rc = ws__header_byte(r, in[pos++], close_code);
            if (rc == 1)
                rc = 0;        /* an empty payload completes below */
        } else {
            size_t n = len - pos;

            if (n == 0 && r->remaining > 0)
                break;
            if (n > r->remaining)
                n = (size_t)r->remaining;
            rc = ws__payload(r, in + pos, n, ev, close_code);
            pos += n;
        }
    }
    *consumed = pos;
    return rc;
}
