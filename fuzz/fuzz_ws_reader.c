/*
 * fuzz_ws_reader.c - the WebSocket frame reader on arbitrary client bytes,
 * and a round trip through it.
 *
 * Input byte 0 drives the run: its low 5 bits pick the feed chunk size
 * (0: everything at once), the rest seeds the round trip. Then:
 * 1. the remaining bytes are fed as they are; whatever the reader returns
 *    must be sane (consumption within bounds, progress on every event,
 *    event sizes within limits, text and close reasons valid UTF-8, close
 *    codes sendable);
 * 2. the same bytes become the payload of one message, cut into masked
 *    fragments with pings and pongs between them and a close at the end;
 *    the reader must hand back exactly that message and those controls.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/utf8.h"
#include "http/ws_codec.h"

#define FZ_MAX_MESSAGE (64u << 10)
#define FZ_MAX_EXPECT 256

#define FZ_CHECK(c) do { if (!(c)) abort(); } while (0)

typedef struct fz_expect {
    enum ws_event_type type;
    const unsigned char *data;
    size_t len;
} fz_expect_t;

/* Round-trip state: the events the reader must produce, in order. */
typedef struct fz_trip {
    fz_expect_t ev[FZ_MAX_EXPECT];
    size_t n, next;
} fz_trip_t;

static uint32_t fz_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void fz_check_event(const ws_event_t *ev)
{
    FZ_CHECK(ev->data != NULL);
    switch (ev->type) {
    case WS_EV_TEXT:
        FZ_CHECK(utf8_valid(ev->data, ev->len));
        /* fall through */
    case WS_EV_BINARY:
        FZ_CHECK(ev->len <= FZ_MAX_MESSAGE);
        break;
    case WS_EV_PING:
    case WS_EV_PONG:
        FZ_CHECK(ev->len <= 125);
        break;
    case WS_EV_CLOSE:
        FZ_CHECK(ev->len <= 125 && ev->len != 1);
        FZ_CHECK(ev->close_code == WS_CLOSE_NO_STATUS ||
                 ws_close_code_valid(ev->close_code));
        FZ_CHECK(ev->close_reason_len == (ev->len ? ev->len - 2 : 0));
        FZ_CHECK((const unsigned char *)ev->close_reason + ev->close_reason_len ==
                 ev->data + ev->len);
        FZ_CHECK(utf8_valid(ev->close_reason, ev->close_reason_len));
        break;
    default:
        FZ_CHECK(0);
    }
}

static void fz_check_trip(fz_trip_t *t, const ws_event_t *ev)
{
    const fz_expect_t *want;

    FZ_CHECK(t->next < t->n);
    want = &t->ev[t->next++];
    FZ_CHECK(ev->type == want->type);
    if (ev->type == WS_EV_CLOSE) {
        FZ_CHECK(ev->close_code == WS_CLOSE_NORMAL);
        FZ_CHECK(ev->close_reason_len == want->len);
        FZ_CHECK(memcmp(ev->close_reason, want->data, want->len) == 0);
        return;
    }
    FZ_CHECK(ev->len == want->len);
    FZ_CHECK(want->len == 0 || memcmp(ev->data, want->data, want->len) == 0);
}

/* Feeds in[0..len) in chunks of step (0: all) until the end, an error or a
 * close, checking every result. With t, events must match t in order.
 * Returns the last result: -1 error, 1 close, 0 all consumed. */
static int fz_feed(unsigned char *in, size_t len, size_t step, fz_trip_t *t)
{
    ws_reader_t r;
    int rc = 0;

    ws_reader_init(&r, FZ_MAX_MESSAGE);
    for (size_t at = 0; at < len && rc == 0;) {
        size_t end = step && len - at > step ? at + step : len;

        while (at < end) {
            size_t used = SIZE_MAX;
            unsigned code = 0;
            ws_event_t ev;

            rc = ws_reader_feed(&r, in + at, end - at, &used, &ev, &code);
            FZ_CHECK(used <= end - at);
            at += used;
            if (rc < 0) {
                FZ_CHECK(code == WS_CLOSE_PROTOCOL || code == WS_CLOSE_INVALID_DATA ||
                         code == WS_CLOSE_TOO_BIG || code == WS_CLOSE_INTERNAL);
                break;
            }
            if (rc == 0) {
                FZ_CHECK(at == end);
                break;
            }
            FZ_CHECK(rc == 1 && used > 0);
            fz_check_event(&ev);
            if (t)
                fz_check_trip(t, &ev);
            if (ev.type == WS_EV_CLOSE)
                break;
            rc = 0;
        }
    }
    ws_reader_free(&r);
    return rc;
}

/* A masked client frame built on the server encoder's header. */
static void fz_put_frame(buf_t *w, bool fin, unsigned opcode, const unsigned char *p,
                         size_t len, uint32_t *rng)
{
    unsigned char hdr[WS_FRAME_HEADER_MAX + 4];
    size_t n = ws_frame_header(hdr, opcode, len);
    uint32_t key = fz_rand(rng);

    if (!fin)
        hdr[0] &= 0x7F;
    hdr[1] |= 0x80;
    memcpy(hdr + n, &key, 4);
    FZ_CHECK(buf_append(w, hdr, n + 4) == 0);
    for (size_t i = 0; i < len; i++)
        FZ_CHECK(buf_append_byte(w, (char)(p[i] ^ hdr[n + (i & 3)])) == 0);
}

static void fz_expect(fz_trip_t *t, enum ws_event_type type, const void *p, size_t len)
{
    FZ_CHECK(t->n < FZ_MAX_EXPECT);
    t->ev[t->n++] = (fz_expect_t){type, p, len};
}

/* Between fragments: sometimes a ping or pong carrying a slice of the
 * payload. */
static void fz_put_control(buf_t *w, fz_trip_t *t, const unsigned char *p, size_t len,
                           uint32_t *rng)
{
    uint32_t x = fz_rand(rng);
    size_t off, n;

    if (x % 3 == 0 || t->n + 2 >= FZ_MAX_EXPECT)
        return;
    off = len ? (x >> 8) % len : 0;
    n = len - off < 125 ? len - off : (x >> 20) % 126;
    fz_put_frame(w, true, x % 3 == 1 ? WS_OP_PING : WS_OP_PONG, p + off, n, rng);
    fz_expect(t, x % 3 == 1 ? WS_EV_PING : WS_EV_PONG, p + off, n);
}

static void fz_round_trip(const unsigned char *p, size_t len, unsigned seed, size_t step)
{
    static const char reason[] = "bye \xc3\xa9";
    fz_trip_t *t = calloc(1, sizeof(*t));
    uint32_t rng = 0x9E3779B9u ^ seed ^ (uint32_t)len * 2654435761u;
    unsigned char close[2 + sizeof reason - 1] = {0x03, 0xE8};
    size_t at = 0;
    unsigned op;
    bool text;
    buf_t w;

    FZ_CHECK(t != NULL);
    buf_init(&w, 4 * FZ_MAX_MESSAGE);
    if (len > FZ_MAX_MESSAGE)
        len = FZ_MAX_MESSAGE;
    text = (seed & 1) && utf8_valid(p, len);
    op = text ? WS_OP_TEXT : WS_OP_BINARY;
    do {
        size_t left = len - at;
        size_t n = left ? fz_rand(&rng) % (left + 1) : 0;
        bool fin = n == left && (fz_rand(&rng) & 3) != 0;

        if (t->n + 4 >= FZ_MAX_EXPECT) {
            n = left;
            fin = true;
        }
        fz_put_frame(&w, fin, op, p + at, n, &rng);
        op = WS_OP_CONT;
        at += n;
        if (fin)
            break;
        fz_put_control(&w, t, p, len, &rng);
    } while (1);
    fz_expect(t, text ? WS_EV_TEXT : WS_EV_BINARY, p, len);
    memcpy(close + 2, reason, sizeof reason - 1);
    fz_put_frame(&w, true, WS_OP_CLOSE, close, sizeof close, &rng);
    fz_expect(t, WS_EV_CLOSE, reason, sizeof reason - 1);

    FZ_CHECK(fz_feed((unsigned char *)w.data, w.len, step, t) == 1);
    FZ_CHECK(t->next == t->n);
    buf_free(&w);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *in;
    size_t step, len;

    if (size == 0)
        return 0;
    step = data[0] & 0x1F;
    len = size - 1;
    in = malloc(len ? len : 1);
    if (!in)
        return 0;
    memcpy(in, data + 1, len);
    fz_feed(in, len, step, NULL);
    free(in);
    fz_round_trip(data + 1, len, data[0] >> 5, step);
    return 0;
}
