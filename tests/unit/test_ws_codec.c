/*
 * test_ws_codec.c - RFC 6455 codec: handshake key, server frame encoding,
 * and the client frame reader (events, fragmentation, every violation with
 * its close code, limits, and split-independence of the result).
 *
 * Client frames are built by put_frame_ex(), which can also produce what a
 * well-behaved client never sends (unmasked, RSV set, non-minimal lengths).
 * run() feeds a wire image in chunks of a chosen size and records every
 * event (copying its bytes, since event data lives only until the next
 * feed), so one-shot and byte-at-a-time runs can be compared whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/utf8.h"
#include "http/ws_codec.h"

#define MAX_EVENTS 64
#define BIG (1u << 20)

static const unsigned char test_mask[4] = {0x37, 0xfa, 0x21, 0x3d};

typedef struct rec_event {
    int type;
    size_t off, len;               /* bytes in run_t.bytes */
    unsigned close_code;
    size_t reason_off, reason_len; /* offsets into the event bytes */
} rec_event_t;

typedef struct run {
    int rc;                        /* -1 error, 1 stopped at close, 0 all read */
    unsigned code;                 /* close code on error */
    size_t consumed;               /* bytes accepted in total */
    size_t nev;
    rec_event_t ev[MAX_EVENTS];
    buf_t bytes;
} run_t;

typedef struct ctx {
    buf_t wire;
    ws_reader_t r;
    run_t run;
} ctx_t;

/* --- helpers --------------------------------------------------------------- */

/* Appends a client frame with first byte b0. form forces the length
 * encoding: 0 minimal, or 7, 16, 64. */
static void put_frame_ex(buf_t *w, unsigned b0, bool masked, const void *payload,
                         size_t len, int form)
{
    unsigned char hdr[14];
    size_t n = 0;
    const unsigned char *p = payload;
    unsigned char mbit = masked ? 0x80 : 0;

    if (form == 0)
        form = len <= 125 ? 7 : len <= 0xFFFF ? 16 : 64;
    hdr[n++] = (unsigned char)b0;
    if (form == 7) {
        hdr[n++] = (unsigned char)(mbit | len);
    } else if (form == 16) {
        hdr[n++] = mbit | 126;
        hdr[n++] = (unsigned char)(len >> 8);
        hdr[n++] = (unsigned char)len;
    } else {
        hdr[n++] = mbit | 127;
        for (int i = 0; i < 8; i++)
            hdr[n++] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(hdr + n, test_mask, 4);
        n += 4;
    }
    assert_int_equal(buf_append(w, hdr, n), 0);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = masked ? p[i] ^ test_mask[i & 3] : p[i];
        assert_int_equal(buf_append_byte(w, (char)c), 0);
    }
}

static void put_frame(buf_t *w, bool fin, unsigned opcode, const void *payload,
                      size_t len)
{
    put_frame_ex(w, (fin ? 0x80u : 0u) | opcode, true, payload, len, 0);
}

static void put_str(buf_t *w, bool fin, unsigned opcode, const char *s)
{
    put_frame(w, fin, opcode, s, strlen(s));
}

static void record(run_t *run, const ws_event_t *ev)
{
    rec_event_t *e;

    assert_true(run->nev < MAX_EVENTS);
    assert_non_null(ev->data);
    e = &run->ev[run->nev++];
    e->type = (int)ev->type;
    e->off = run->bytes.len;
    e->len = ev->len;
    e->close_code = ev->close_code;
    e->reason_len = ev->close_reason_len;
    e->reason_off = ev->close_reason ? (size_t)((const unsigned char *)ev->close_reason -
                                                ev->data)
                                     : 0;
    assert_int_equal(buf_append(&run->bytes, ev->data, ev->len), 0);
}

/* Feeds len bytes of wire (copied: the reader unmasks in place) in chunks
 * of step bytes (0: all at once) until the end, an error or a close. */
static void run(ctx_t *c, const void *wire, size_t len, size_t step)
{
    unsigned char *in = malloc(len ? len : 1);
    run_t *run = &c->run;

    assert_non_null(in);
    if (len)
        memcpy(in, wire, len);
    buf_reset(&run->bytes);
    run->rc = 0;
    run->code = 0;
    run->consumed = 0;
    run->nev = 0;
    for (size_t at = 0; at < len && run->rc == 0;) {
        size_t end = step && len - at > step ? at + step : len;

        while (at < end) {
            size_t used = 99999;
            ws_event_t ev;
            int rc = ws_reader_feed(&c->r, in + at, end - at, &used, &ev, &run->code);

            assert_true(used <= end - at);
            at += used;
            run->consumed += used;
            if (rc < 0) {
                run->rc = -1;
                break;
            }
            if (rc == 0) {
                assert_int_equal(at, end);
                break;
            }
            record(run, &ev);
            if (ev.type == WS_EV_CLOSE) {
                run->rc = 1;
                break;
            }
        }
    }
    free(in);
}

static void run_wire(ctx_t *c, size_t step)
{
    run(c, c->wire.data, c->wire.len, step);
}

static const unsigned char *ev_bytes(ctx_t *c, size_t i)
{
    return (const unsigned char *)c->run.bytes.data + c->run.ev[i].off;
}

static void assert_event(ctx_t *c, size_t i, int type, const void *data, size_t len)
{
    assert_true(i < c->run.nev);
    assert_int_equal(c->run.ev[i].type, type);
    assert_int_equal(c->run.ev[i].len, len);
    if (len)
        assert_memory_equal(ev_bytes(c, i), data, len);
}

static void assert_event_str(ctx_t *c, size_t i, int type, const char *s)
{
    assert_event(c, i, type, s, strlen(s));
}

/* Runs the wire and expects an error with this close code. */
static void expect_fail(ctx_t *c, unsigned code)
{
    run_wire(c, 0);
    assert_int_equal(c->run.rc, -1);
    assert_int_equal(c->run.code, code);
}

static void reinit(ctx_t *c, uint64_t max)
{
    ws_reader_free(&c->r);
    ws_reader_init(&c->r, max);
}

static int setup(void **state)
{
    ctx_t *c = calloc(1, sizeof(*c));

    if (!c)
        return -1;
    buf_init(&c->wire, 4 * BIG);
    buf_init(&c->run.bytes, 4 * BIG);
    ws_reader_init(&c->r, BIG);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx_t *c = *state;

    ws_reader_free(&c->r);
    buf_free(&c->wire);
    buf_free(&c->run.bytes);
    free(c);
    return 0;
}

/* --- handshake ------------------------------------------------------------- */

static void test_accept_key_rfc_example(void **state)
{
    char out[WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";

    memset(out, 'x', sizeof out);
    assert_int_equal(ws_accept_key(key, strlen(key), out), 0);
    /* RFC 6455 section 1.3 (also SHA-1 + base64 by any other tool). */
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_accept_key_full_alphabet(void **state)
{
    char out[WS_ACCEPT_LEN + 1];
    const char *key = "+/+/abcdefghijklmnopqw==";

    assert_int_equal(ws_accept_key(key, strlen(key), out), 0);
    assert_string_equal(out, "8z56MfYnZ1qPuZYtmJodn19PDlw=");   /* from Python */
}

static void test_accept_key_invalid(void **state)
{
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",     /* 23 chars */
        "dGhlIHNhbXBsZSBub25jZQ===",   /* 25 chars */
        "dGhlIHNhbXBsZSBub25jZQAA",    /* no padding: 18 bytes */
        "dGhlIHNhbXBsZSBub25jZQA=",    /* one '=': 17 bytes */
        "dGhlIHNhbXBsZSBub25jZ===",    /* 15 bytes and a stray '=' */
        "dGhlIHNhbXBs=SBub25jZQ==",    /* '=' inside */
        "dGhlIHNhbXBsZSBub25jZ!==",    /* not base64 */
        "dGhlIHNhbXBsZSBub25j-Q==",    /* base64url alphabet */
        " dGhlIHNhbXBsZSBub25jZQ=",    /* white space */
    };
    char out[WS_ACCEPT_LEN + 1];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ws_accept_key(bad[i], strlen(bad[i]), out), -1);
    /* The length is what counts, not a NUL. */
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 23, out), -1);
    assert_int_equal(ws_accept_key(NULL, 24, out), -1);
}

/* Non-zero unused bits in the last character still decode to 16 bytes;
 * accepted like Go's and Python's decoders do (documented in ws_codec.c). */
static void test_accept_key_noncanonical_bits(void **state)
{
    char a[WS_ACCEPT_LEN + 1], b[WS_ACCEPT_LEN + 1];

    assert_int_equal(ws_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", 24, a), 0);
    assert_int_equal(ws_accept_key("AAAAAAAAAAAAAAAAAAAAAB==", 24, b), 0);
    assert_int_equal(strlen(a), WS_ACCEPT_LEN);
    assert_string_not_equal(a, b);   /* the key text is hashed, not its bytes */
}

/* --- encoding -------------------------------------------------------------- */

static void check_header(uint64_t len, size_t want_n, const unsigned char *want)
{
    unsigned char out[WS_FRAME_HEADER_MAX];

    memset(out, 0xEE, sizeof out);
    assert_int_equal(ws_frame_header(out, WS_OP_BINARY, len), want_n);
    assert_memory_equal(out, want, want_n);
}

static void test_header_lengths(void **state)
{
    check_header(0, 2, (const unsigned char *)"\x82\x00");
    check_header(125, 2, (const unsigned char *)"\x82\x7d");
    check_header(126, 4, (const unsigned char *)"\x82\x7e\x00\x7e");
    check_header(65535, 4, (const unsigned char *)"\x82\x7e\xff\xff");
    check_header(65536, 10,
                 (const unsigned char *)"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00");
    check_header(0x0102030405060708ull, 10,
                 (const unsigned char *)"\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08");
}

static void test_frame_new_rfc_hello(void **state)
{
    sbuf_t *s = ws_frame_new(WS_OP_TEXT, "Hello", 5);

    assert_non_null(s);
    assert_int_equal(s->len, 7);
    assert_memory_equal(s->data, "\x81\x05Hello", 7);
    sbuf_unref(s);
    s = ws_frame_new(WS_OP_PONG, NULL, 0);
    assert_non_null(s);
    assert_int_equal(s->len, 2);
    assert_memory_equal(s->data, "\x8a\x00", 2);
    sbuf_unref(s);
}

static void test_frame_new_long_payload(void **state)
{
    size_t len = 70000;
    unsigned char *p = malloc(len);
    sbuf_t *s;

    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 7);
    s = ws_frame_new(WS_OP_BINARY, p, len);
    assert_non_null(s);
    assert_int_equal(s->len, 10 + len);
    assert_memory_equal(s->data, "\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10);
    assert_memory_equal(s->data + 10, p, len);
    sbuf_unref(s);
    free(p);
}

static void test_close_frame_code_reason(void **state)
{
    sbuf_t *s = ws_close_frame_new(WS_CLOSE_GOING_AWAY, "bye");

    assert_non_null(s);
    assert_int_equal(s->len, 7);
    assert_memory_equal(s->data, "\x88\x05\x03\xe9" "bye", 7);
    sbuf_unref(s);
    s = ws_close_frame_new(WS_CLOSE_NORMAL, NULL);
    assert_non_null(s);
    assert_int_equal(s->len, 4);
    assert_memory_equal(s->data, "\x88\x02\x03\xe8", 4);
    sbuf_unref(s);
}

static void test_close_frame_truncates_on_utf8_boundary(void **state)
{
    char reason[200];
    sbuf_t *s;

    /* 122 ASCII bytes then U+00E9 (2 bytes): 124 > 123, cut before it. */
    memset(reason, 'a', 122);
    memcpy(reason + 122, "\xc3\xa9tail", 7);
    s = ws_close_frame_new(WS_CLOSE_POLICY, reason);
    assert_non_null(s);
    assert_int_equal(s->len, 2 + 2 + 122);
    assert_int_equal((unsigned char)s->data[1], 124);
    assert_true(utf8_valid(s->data + 4, s->len - 4));
    sbuf_unref(s);

    /* 123 ASCII bytes fit exactly; a control frame stays at 125. */
    memset(reason, 'b', 150);
    reason[150] = '\0';
    s = ws_close_frame_new(WS_CLOSE_POLICY, reason);
    assert_non_null(s);
    assert_int_equal(s->len, 2 + 125);
    assert_int_equal((unsigned char)s->data[1], 125);
    sbuf_unref(s);

    /* A 4-byte character straddling the cut is dropped whole. */
    memset(reason, 'c', 121);
    memcpy(reason + 121, "\xf0\x9f\x98\x80", 5);
    s = ws_close_frame_new(WS_CLOSE_NORMAL, reason);
    assert_non_null(s);
    assert_int_equal(s->len, 2 + 2 + 121);
    assert_true(utf8_valid(s->data + 4, s->len - 4));
    sbuf_unref(s);
}

static void test_close_frame_unsendable_code_is_empty(void **state)
{
    static const uint16_t codes[] = {WS_CLOSE_NO_STATUS, 1006, 1015, 999, 2000, 5000};

    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        sbuf_t *s = ws_close_frame_new(codes[i], "ignored");

        assert_non_null(s);
        assert_int_equal(s->len, 2);
        assert_memory_equal(s->data, "\x88\x00", 2);
        sbuf_unref(s);
    }
}

static void test_close_code_valid(void **state)
{
    static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 4000, 4999};
    static const unsigned bad[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016,
                                   2000, 2999, 5000, 65535, 70000};

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_true(ws_close_code_valid(ok[i]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(ws_close_code_valid(bad[i]));
}

/* --- reader: events -------------------------------------------------------- */

static void test_read_rfc_masked_hello(void **state)
{
    ctx_t *c = *state;
    static const unsigned char wire[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                         0x7f, 0x9f, 0x4d, 0x51, 0x58};

    run(c, wire, sizeof wire, 0);
    assert_int_equal(c->run.rc, 0);
    assert_int_equal(c->run.nev, 1);
    assert_event_str(c, 0, WS_EV_TEXT, "Hello");
    assert_int_equal(c->run.consumed, sizeof wire);
}

static void test_read_binary_not_utf8_checked(void **state)
{
    ctx_t *c = *state;
    static const unsigned char bin[] = {0xff, 0x00, 0xc0, 0x80, 0xfe};

    put_frame(&c->wire, true, WS_OP_BINARY, bin, sizeof bin);
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 0);
    assert_int_equal(c->run.nev, 1);
    assert_event(c, 0, WS_EV_BINARY, bin, sizeof bin);
}

static void test_read_empty_messages(void **state)
{
    ctx_t *c = *state;

    put_frame(&c->wire, true, WS_OP_TEXT, NULL, 0);
    put_frame(&c->wire, true, WS_OP_BINARY, NULL, 0);
    put_frame(&c->wire, false, WS_OP_TEXT, NULL, 0);
    put_frame(&c->wire, true, WS_OP_CONT, NULL, 0);
    put_frame(&c->wire, true, WS_OP_PING, NULL, 0);
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 0);
    assert_int_equal(c->run.nev, 4);
    assert_event(c, 0, WS_EV_TEXT, NULL, 0);
    assert_event(c, 1, WS_EV_BINARY, NULL, 0);
    assert_event(c, 2, WS_EV_TEXT, NULL, 0);
    assert_event(c, 3, WS_EV_PING, NULL, 0);
}

static void test_read_two_messages_one_buffer(void **state)
{
    ctx_t *c = *state;
    unsigned char *in;
    size_t used, first;
    ws_event_t ev;
    unsigned code;

    put_str(&c->wire, true, WS_OP_TEXT, "one");
    first = c->wire.len;
    put_str(&c->wire, true, WS_OP_BINARY, "two!");
    in = (unsigned char *)c->wire.data;
    assert_int_equal(ws_reader_feed(&c->r, in, c->wire.len, &used, &ev, &code), 1);
    assert_int_equal(used, first);
    assert_int_equal(ev.type, WS_EV_TEXT);
    assert_int_equal(ev.len, 3);
    assert_memory_equal(ev.data, "one", 3);
    assert_int_equal(ws_reader_feed(&c->r, in + first, c->wire.len - first, &used,
                                    &ev, &code), 1);
    assert_int_equal(used, c->wire.len - first);
    assert_int_equal(ev.type, WS_EV_BINARY);
    assert_memory_equal(ev.data, "two!", 4);
    assert_int_equal(ws_reader_feed(&c->r, in, 0, &used, &ev, &code), 0);
    assert_int_equal(used, 0);
}

static void test_read_fragmented_with_ping(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, false, WS_OP_TEXT, "Hel");
    put_str(&c->wire, true, WS_OP_PING, "are you there");
    put_str(&c->wire, false, WS_OP_CONT, "lo, ");
    put_str(&c->wire, true, WS_OP_PONG, "yes");
    put_str(&c->wire, true, WS_OP_CONT, "world");
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 0);
    assert_int_equal(c->run.nev, 3);
    assert_event_str(c, 0, WS_EV_PING, "are you there");
    assert_event_str(c, 1, WS_EV_PONG, "yes");
    assert_event_str(c, 2, WS_EV_TEXT, "Hello, world");
}

static void test_read_fragmented_binary_then_new_message(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, false, WS_OP_BINARY, "ab");
    put_str(&c->wire, false, WS_OP_CONT, "");
    put_str(&c->wire, true, WS_OP_CONT, "cd");
    put_str(&c->wire, true, WS_OP_TEXT, "next");
    run_wire(c, 0);
    assert_int_equal(c->run.nev, 2);
    assert_event_str(c, 0, WS_EV_BINARY, "abcd");
    assert_event_str(c, 1, WS_EV_TEXT, "next");
}

static void test_read_16_and_64_bit_lengths(void **state)
{
    ctx_t *c = *state;
    size_t lens[] = {126, 65535, 65536, 200000};
    unsigned char *p = malloc(200000);

    assert_non_null(p);
    for (size_t i = 0; i < 200000; i++)
        p[i] = (unsigned char)(i * 31 + 3);
    for (size_t i = 0; i < 4; i++)
        put_frame(&c->wire, true, WS_OP_BINARY, p, lens[i]);
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 0);
    assert_int_equal(c->run.nev, 4);
    for (size_t i = 0; i < 4; i++)
        assert_event(c, i, WS_EV_BINARY, p, lens[i]);
    free(p);
}

static void test_read_ping_at_125(void **state)
{
    ctx_t *c = *state;
    char p[125];

    memset(p, 'p', sizeof p);
    put_frame(&c->wire, true, WS_OP_PING, p, sizeof p);
    run_wire(c, 1);   /* byte at a time: copied into the control buffer */
    assert_int_equal(c->run.nev, 1);
    assert_event(c, 0, WS_EV_PING, p, sizeof p);
}

/* A complex stream gives the same events and the same result whatever the
 * chunk size, down to one byte per call. */
static void test_read_split_independent(void **state)
{
    ctx_t *c = *state;
    run_t whole;
    char big[300];

    memset(big, 'z', sizeof big);
    memcpy(big + 100, "\xe2\x82\xac", 3);   /* a 3-byte character inside */
    put_str(&c->wire, true, WS_OP_TEXT, "caf\xc3\xa9");
    put_frame(&c->wire, false, WS_OP_TEXT, big, sizeof big);
    put_str(&c->wire, true, WS_OP_PING, "p");
    put_str(&c->wire, false, WS_OP_CONT, "\xf0\x9f");
    put_str(&c->wire, true, WS_OP_CONT, "\x98\x80!");
    put_frame(&c->wire, true, WS_OP_BINARY, big, 126);
    put_str(&c->wire, true, WS_OP_CLOSE, "\x03\xe8" "done");
    run_wire(c, 0);
    whole = c->run;
    buf_init(&whole.bytes, BIG);
    assert_int_equal(buf_append(&whole.bytes, c->run.bytes.data, c->run.bytes.len), 0);
    assert_int_equal(whole.rc, 1);
    assert_int_equal(whole.nev, 5);
    assert_int_equal(whole.consumed, c->wire.len);
    assert_int_equal(c->run.ev[4].close_code, 1000);

    for (size_t step = 1; step <= 20; step++) {
        reinit(c, BIG);
        run_wire(c, step);
        assert_int_equal(c->run.rc, whole.rc);
        assert_int_equal(c->run.consumed, whole.consumed);
        assert_int_equal(c->run.nev, whole.nev);
        for (size_t i = 0; i < whole.nev; i++) {
            const rec_event_t *x = &c->run.ev[i], *y = &whole.ev[i];

            assert_int_equal(x->type, y->type);
            assert_int_equal(x->off, y->off);
            assert_int_equal(x->len, y->len);
            assert_int_equal(x->close_code, y->close_code);
            assert_int_equal(x->reason_off, y->reason_off);
            assert_int_equal(x->reason_len, y->reason_len);
        }
        assert_int_equal(c->run.bytes.len, whole.bytes.len);
        assert_memory_equal(c->run.bytes.data, whole.bytes.data, whole.bytes.len);
    }
    buf_free(&whole.bytes);
}

/* A frame split over two feeds is reassembled and still correct. */
static void test_read_frame_split_over_feeds(void **state)
{
    ctx_t *c = *state;
    unsigned char *in;
    size_t used;
    ws_event_t ev;
    unsigned code;

    put_str(&c->wire, true, WS_OP_TEXT, "split payload");
    in = (unsigned char *)c->wire.data;
    assert_int_equal(ws_reader_feed(&c->r, in, 10, &used, &ev, &code), 0);
    assert_int_equal(used, 10);
    assert_int_equal(ws_reader_feed(&c->r, in + 10, c->wire.len - 10, &used, &ev,
                                    &code), 1);
    assert_int_equal(used, c->wire.len - 10);
    assert_int_equal(ev.len, 13);
    assert_memory_equal(ev.data, "split payload", 13);
}

static void test_read_large_then_small_message(void **state)
{
    ctx_t *c = *state;
    unsigned char *p = calloc(1, 100000);

    assert_non_null(p);
    put_frame(&c->wire, false, WS_OP_BINARY, p, 100000);
    put_frame(&c->wire, true, WS_OP_CONT, p, 100000);
    put_str(&c->wire, false, WS_OP_TEXT, "sm");
    put_str(&c->wire, true, WS_OP_CONT, "all");
    run_wire(c, 0);
    assert_int_equal(c->run.nev, 2);
    assert_int_equal(c->run.ev[0].len, 200000);
    assert_event_str(c, 1, WS_EV_TEXT, "small");
    free(p);
}

/* --- reader: violations ---------------------------------------------------- */

static void test_fail_unmasked(void **state)
{
    ctx_t *c = *state;

    put_frame_ex(&c->wire, 0x81, false, "Hello", 5, 0);
    expect_fail(c, WS_CLOSE_PROTOCOL);
    assert_int_equal(c->run.consumed, 2);   /* detected at the mask bit */
}

static void test_fail_rsv_bits(void **state)
{
    ctx_t *c = *state;
    static const unsigned rsv[] = {0x40, 0x20, 0x10, 0x70};

    for (size_t i = 0; i < 4; i++) {
        reinit(c, BIG);
        buf_reset(&c->wire);
        put_frame_ex(&c->wire, 0x81 | rsv[i], true, "x", 1, 0);
        expect_fail(c, WS_CLOSE_PROTOCOL);
        assert_int_equal(c->run.consumed, 1);
    }
}

static void test_fail_unknown_opcodes(void **state)
{
    ctx_t *c = *state;
    static const unsigned ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};

    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        reinit(c, BIG);
        buf_reset(&c->wire);
        put_frame_ex(&c->wire, 0x80 | ops[i], true, "x", 1, 0);
        expect_fail(c, WS_CLOSE_PROTOCOL);
    }
}

static void test_fail_control_not_final(void **state)
{
    ctx_t *c = *state;
    static const unsigned ops[] = {WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE};

    for (size_t i = 0; i < 3; i++) {
        reinit(c, BIG);
        buf_reset(&c->wire);
        put_str(&c->wire, false, ops[i], "");
        expect_fail(c, WS_CLOSE_PROTOCOL);
    }
}

static void test_fail_control_too_long(void **state)
{
    ctx_t *c = *state;
    char p[126];

    memset(p, 'a', sizeof p);
    put_frame(&c->wire, true, WS_OP_PING, p, sizeof p);
    expect_fail(c, WS_CLOSE_PROTOCOL);
    assert_int_equal(c->run.consumed, 2);
    /* A small length in the 16-bit form is caught too. */
    reinit(c, BIG);
    buf_reset(&c->wire);
    put_frame_ex(&c->wire, 0x80 | WS_OP_PONG, true, p, 5, 16);
    expect_fail(c, WS_CLOSE_PROTOCOL);
}

static void test_fail_cont_without_message(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, true, WS_OP_CONT, "orphan");
    expect_fail(c, WS_CLOSE_PROTOCOL);
    /* Also right after a complete message. */
    reinit(c, BIG);
    buf_reset(&c->wire);
    put_str(&c->wire, false, WS_OP_TEXT, "a");
    put_str(&c->wire, true, WS_OP_CONT, "b");
    put_str(&c->wire, false, WS_OP_CONT, "c");
    expect_fail(c, WS_CLOSE_PROTOCOL);
    assert_int_equal(c->run.nev, 1);
}

static void test_fail_data_interrupts_fragmented(void **state)
{
    ctx_t *c = *state;
    static const unsigned ops[] = {WS_OP_TEXT, WS_OP_BINARY};

    for (size_t i = 0; i < 2; i++) {
        reinit(c, BIG);
        buf_reset(&c->wire);
        put_str(&c->wire, false, WS_OP_BINARY, "first");
        put_str(&c->wire, true, WS_OP_PING, "ok");
        put_str(&c->wire, true, ops[i], "second");
        expect_fail(c, WS_CLOSE_PROTOCOL);
        assert_int_equal(c->run.nev, 1);
        assert_int_equal(c->run.ev[0].type, WS_EV_PING);
    }
}

static void test_fail_64bit_top_bit(void **state)
{
    ctx_t *c = *state;
    static const unsigned char wire[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0x01,
                                         1, 2, 3, 4};

    run(c, wire, sizeof wire, 0);
    assert_int_equal(c->run.rc, -1);
    assert_int_equal(c->run.code, WS_CLOSE_PROTOCOL);
    assert_int_equal(c->run.consumed, 10);
}

static void test_fail_non_minimal_lengths(void **state)
{
    ctx_t *c = *state;
    unsigned char *p = calloc(1, 65535);

    assert_non_null(p);
    put_frame_ex(&c->wire, 0x82, true, p, 125, 16);
    expect_fail(c, WS_CLOSE_PROTOCOL);
    assert_int_equal(c->run.consumed, 4);

    reinit(c, BIG);
    buf_reset(&c->wire);
    put_frame_ex(&c->wire, 0x82, true, p, 65535, 64);
    expect_fail(c, WS_CLOSE_PROTOCOL);
    assert_int_equal(c->run.consumed, 10);

    reinit(c, BIG);
    buf_reset(&c->wire);
    put_frame_ex(&c->wire, 0x82, true, p, 3, 64);
    expect_fail(c, WS_CLOSE_PROTOCOL);

    /* The smallest lengths of each form are fine. */
    reinit(c, BIG);
    buf_reset(&c->wire);
    put_frame_ex(&c->wire, 0x82, true, p, 126, 16);
    run_wire(c, 0);
    assert_int_equal(c->run.nev, 1);
    assert_int_equal(c->run.ev[0].len, 126);
    free(p);
}

static void test_max_message_single_frame(void **state)
{
    ctx_t *c = *state;
    char p[101];

    memset(p, 'm', sizeof p);
    reinit(c, 100);
    put_frame(&c->wire, true, WS_OP_TEXT, p, 100);
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 0);
    assert_event(c, 0, WS_EV_TEXT, p, 100);

    reinit(c, 100);
    buf_reset(&c->wire);
    put_frame(&c->wire, true, WS_OP_TEXT, p, 101);
    expect_fail(c, WS_CLOSE_TOO_BIG);
    assert_int_equal(c->run.consumed, 2);   /* before any payload */
}

static void test_max_message_fragments(void **state)
{
    ctx_t *c = *state;
    char p[60];

    memset(p, 'f', sizeof p);
    reinit(c, 100);
    put_frame(&c->wire, false, WS_OP_BINARY, p, 50);
    put_frame(&c->wire, true, WS_OP_CONT, p, 50);
    run_wire(c, 0);
    assert_int_equal(c->run.nev, 1);
    assert_int_equal(c->run.ev[0].len, 100);

    reinit(c, 100);
    buf_reset(&c->wire);
    put_frame(&c->wire, false, WS_OP_BINARY, p, 50);
    put_frame(&c->wire, false, WS_OP_CONT, p, 50);
    put_frame(&c->wire, true, WS_OP_CONT, p, 1);
    expect_fail(c, WS_CLOSE_TOO_BIG);
    assert_int_equal(c->run.consumed, 2 * (6 + 50) + 2);
}

/* Control frames are not messages: max_message does not apply to them. */
static void test_max_message_ignores_control(void **state)
{
    ctx_t *c = *state;

    reinit(c, 4);
    put_str(&c->wire, true, WS_OP_PING, "longer than four");
    put_str(&c->wire, true, WS_OP_TEXT, "four");
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 0);
    assert_int_equal(c->run.nev, 2);
    assert_event_str(c, 1, WS_EV_TEXT, "four");

    reinit(c, 0);
    buf_reset(&c->wire);
    put_str(&c->wire, true, WS_OP_TEXT, "");
    put_str(&c->wire, true, WS_OP_TEXT, "x");
    expect_fail(c, WS_CLOSE_TOO_BIG);
    assert_int_equal(c->run.nev, 1);
}

/* --- reader: UTF-8 ---------------------------------------------------------- */

static void test_utf8_invalid_single_frame(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, true, WS_OP_TEXT, "ok\xed\xa0\x80");   /* a surrogate */
    expect_fail(c, WS_CLOSE_INVALID_DATA);
}

static void test_utf8_split_across_fragments(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, false, WS_OP_TEXT, "\xe2");
    put_str(&c->wire, false, WS_OP_CONT, "\x82");
    put_str(&c->wire, true, WS_OP_PING, "");
    put_str(&c->wire, true, WS_OP_CONT, "\xac = euro");
    run_wire(c, 1);
    assert_int_equal(c->run.rc, 0);
    assert_int_equal(c->run.nev, 2);
    assert_event_str(c, 1, WS_EV_TEXT, "\xe2\x82\xac = euro");
}

/* 0xC0 can start nothing: the first fragment fails on its own. */
static void test_utf8_fails_at_first_fragment(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, false, WS_OP_TEXT, "a\xc0\x80");
    expect_fail(c, WS_CLOSE_INVALID_DATA);
    assert_int_equal(c->run.consumed, c->wire.len);
}

/* Within one frame the bad byte is enough: the rest need not arrive. */
static void test_utf8_fails_before_frame_end(void **state)
{
    ctx_t *c = *state;
    char p[100];

    memset(p, 'a', sizeof p);
    p[10] = (char)0xff;
    put_frame(&c->wire, true, WS_OP_TEXT, p, sizeof p);
    run(c, c->wire.data, 6 + 11, 0);
    assert_int_equal(c->run.rc, -1);
    assert_int_equal(c->run.code, WS_CLOSE_INVALID_DATA);
}

static void test_utf8_truncated_at_message_end(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, false, WS_OP_TEXT, "abc");
    put_str(&c->wire, true, WS_OP_CONT, "\xf0\x9f\x98");
    expect_fail(c, WS_CLOSE_INVALID_DATA);
    assert_int_equal(c->run.consumed, c->wire.len);
}

/* --- reader: close ------------------------------------------------------------ */

static void test_close_empty(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, true, WS_OP_CLOSE, "");
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 1);
    assert_int_equal(c->run.ev[0].type, WS_EV_CLOSE);
    assert_int_equal(c->run.ev[0].close_code, WS_CLOSE_NO_STATUS);
    assert_int_equal(c->run.ev[0].reason_len, 0);
}

static void test_close_code_only(void **state)
{
    ctx_t *c = *state;

    put_frame(&c->wire, true, WS_OP_CLOSE, "\x0f\xa0", 2);   /* 4000 */
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 1);
    assert_int_equal(c->run.ev[0].close_code, 4000);
    assert_int_equal(c->run.ev[0].reason_len, 0);
    assert_int_equal(c->run.ev[0].len, 2);
}

static void test_close_code_and_reason(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, true, WS_OP_CLOSE, "\x03\xe9gone \xc3\xa9");
    run_wire(c, 3);
    assert_int_equal(c->run.rc, 1);
    assert_int_equal(c->run.ev[0].close_code, WS_CLOSE_GOING_AWAY);
    assert_int_equal(c->run.ev[0].reason_off, 2);
    assert_int_equal(c->run.ev[0].reason_len, 7);
    assert_memory_equal(ev_bytes(c, 0) + 2, "gone \xc3\xa9", 7);
}

static void test_close_registered_codes_accepted(void **state)
{
    ctx_t *c = *state;
    static const char *codes[] = {"\x03\xf4", "\x03\xf6", "\x0b\xb8", "\x13\x87"};
    static const unsigned want[] = {1012, 1014, 3000, 4999};

    for (size_t i = 0; i < 4; i++) {
        reinit(c, BIG);
        buf_reset(&c->wire);
        put_frame(&c->wire, true, WS_OP_CLOSE, codes[i], 2);
        run_wire(c, 0);
        assert_int_equal(c->run.rc, 1);
        assert_int_equal(c->run.ev[0].close_code, want[i]);
    }
}

static void test_close_bad_code(void **state)
{
    ctx_t *c = *state;
    static const char *codes[] = {"\x00\x00", "\x03\xe7", "\x03\xec", "\x03\xed",
                                  "\x03\xee", "\x03\xf7", "\x0b\xb7", "\x13\x88",
                                  "\xff\xff"};

    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        reinit(c, BIG);
        buf_reset(&c->wire);
        put_frame(&c->wire, true, WS_OP_CLOSE, codes[i], 2);
        expect_fail(c, WS_CLOSE_PROTOCOL);
    }
}

static void test_close_bad_reason(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, true, WS_OP_CLOSE, "\x03\xe8" "bad \xff");
    expect_fail(c, WS_CLOSE_INVALID_DATA);
}

static void test_close_length_one(void **state)
{
    ctx_t *c = *state;

    put_frame(&c->wire, true, WS_OP_CLOSE, "\x03", 1);
    expect_fail(c, WS_CLOSE_PROTOCOL);
}

/* Close between fragments is delivered; the half message is dropped. */
static void test_close_inside_fragmented_message(void **state)
{
    ctx_t *c = *state;

    put_str(&c->wire, false, WS_OP_TEXT, "half");
    put_frame(&c->wire, true, WS_OP_CLOSE, "\x03\xe8", 2);
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 1);
    assert_int_equal(c->run.nev, 1);
    assert_int_equal(c->run.ev[0].type, WS_EV_CLOSE);
}

/* --- reader: after the end ---------------------------------------------------- */

static void test_no_input_after_close(void **state)
{
    ctx_t *c = *state;
    unsigned char more[] = {0x81, 0x80, 0, 0, 0, 0};
    size_t used = 99;
    ws_event_t ev;
    unsigned code = 0;

    put_str(&c->wire, true, WS_OP_CLOSE, "");
    put_str(&c->wire, true, WS_OP_TEXT, "late");
    run_wire(c, 0);
    assert_int_equal(c->run.rc, 1);
    assert_int_equal(c->run.consumed, 6);   /* stops right after the close */
    assert_int_equal(ws_reader_feed(&c->r, more, sizeof more, &used, &ev, &code), -1);
    assert_int_equal(used, 0);
    assert_int_equal(code, WS_CLOSE_PROTOCOL);
}

static void test_error_is_sticky(void **state)
{
    ctx_t *c = *state;
    unsigned char good[] = {0x81, 0x80, 0, 0, 0, 0};
    size_t used = 99;
    ws_event_t ev;
    unsigned code = 0;

    put_str(&c->wire, true, WS_OP_TEXT, "\xc0");
    expect_fail(c, WS_CLOSE_INVALID_DATA);
    assert_int_equal(ws_reader_feed(&c->r, good, sizeof good, &used, &ev, &code), -1);
    assert_int_equal(used, 0);
    assert_int_equal(code, WS_CLOSE_INVALID_DATA);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_accept_key_rfc_example),
        T(test_accept_key_full_alphabet),
        T(test_accept_key_invalid),
        T(test_accept_key_noncanonical_bits),
        T(test_header_lengths),
        T(test_frame_new_rfc_hello),
        T(test_frame_new_long_payload),
        T(test_close_frame_code_reason),
        T(test_close_frame_truncates_on_utf8_boundary),
        T(test_close_frame_unsendable_code_is_empty),
        T(test_close_code_valid),
        T(test_read_rfc_masked_hello),
        T(test_read_binary_not_utf8_checked),
        T(test_read_empty_messages),
        T(test_read_two_messages_one_buffer),
        T(test_read_fragmented_with_ping),
        T(test_read_fragmented_binary_then_new_message),
        T(test_read_16_and_64_bit_lengths),
        T(test_read_ping_at_125),
        T(test_read_split_independent),
        T(test_read_frame_split_over_feeds),
        T(test_read_large_then_small_message),
        T(test_fail_unmasked),
        T(test_fail_rsv_bits),
        T(test_fail_unknown_opcodes),
        T(test_fail_control_not_final),
        T(test_fail_control_too_long),
        T(test_fail_cont_without_message),
        T(test_fail_data_interrupts_fragmented),
        T(test_fail_64bit_top_bit),
        T(test_fail_non_minimal_lengths),
        T(test_max_message_single_frame),
        T(test_max_message_fragments),
        T(test_max_message_ignores_control),
        T(test_utf8_invalid_single_frame),
        T(test_utf8_split_across_fragments),
        T(test_utf8_fails_at_first_fragment),
        T(test_utf8_fails_before_frame_end),
        T(test_utf8_truncated_at_message_end),
        T(test_close_empty),
        T(test_close_code_only),
        T(test_close_code_and_reason),
        T(test_close_registered_codes_accepted),
        T(test_close_bad_code),
        T(test_close_bad_reason),
        T(test_close_length_one),
        T(test_close_inside_fragmented_message),
        T(test_no_input_after_close),
        T(test_error_is_sticky),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
