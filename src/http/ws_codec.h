/*
 * ws_codec.h - RFC 6455 framing: handshake key, frame encoding, and an
 * incremental, socket-free reader that turns client bytes into messages.
 *
 * The reader enforces the whole of RFC 6455 section 5 on what a client
 * sends: the mask bit is set on every frame; RSV bits are zero (no
 * extensions are negotiated); opcodes are known; control frames are final
 * and carry at most 125 bytes; lengths use the minimal encoding and fit
 * in 63 bits; continuation frames only follow a non-final data frame and
 * a new data frame never interrupts one; text messages are valid UTF-8
 * (checked incrementally, failing as early as the bad byte); a message
 * longer than the configured maximum fails with 1009; close frames carry
 * either nothing or a valid code (1000-1003, 1007-1014, 3000-4999) plus a
 * UTF-8 reason. Every check fires as soon as the byte it depends on
 * arrives; an oversized message is refused from its header, before any of
 * its payload is read.
 *
 * Server frames are never masked, so one encoded frame can be written to
 * any number of connections.
 */
#ifndef SB_WS_CODEC_H
#define SB_WS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes used by the codec and transport. */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_UNSUPPORTED 1003
#define WS_CLOSE_NO_STATUS 1005      /* never sent on the wire */
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_INTERNAL 1011

#define WS_ACCEPT_LEN 28
#define WS_FRAME_HEADER_MAX 10       /* server frames are unmasked */

/* Checks Sec-WebSocket-Key (base64 of exactly 16 bytes) and writes the
 * Sec-WebSocket-Accept value (28 chars + NUL) into out. -1 if invalid. */
int ws_accept_key(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1]);

/* Writes an unmasked frame header for a final frame; returns its size. */
size_t ws_frame_header(unsigned char out[WS_FRAME_HEADER_MAX], unsigned opcode,
                       uint64_t payload_len);
/* A whole unmasked frame (header + payload) as a new sbuf; NULL on ENOMEM. */
sbuf_t *ws_frame_new(unsigned opcode, const void *payload, size_t len);
/* A whole close frame: 2-byte code + reason (NUL-terminated, may be NULL),
 * the reason cut to at most 123 bytes on a UTF-8 character boundary. A code
 * that may not be sent (ws_close_code_valid false, e.g. WS_CLOSE_NO_STATUS)
 * gives an empty close body, which is the right echo of a status-less close.
 * NULL on ENOMEM. */
sbuf_t *ws_close_frame_new(uint16_t code, const char *reason);

/* True for codes a peer may send in a close frame: 1000-1003, 1007-1014
 * (1012-1014 are IANA-registered), 3000-4999. */
bool ws_close_code_valid(unsigned code);

enum ws_event_type {
    WS_EV_TEXT = 1,
    WS_EV_BINARY,
    WS_EV_PING,
    WS_EV_PONG,
    WS_EV_CLOSE,
};

typedef struct ws_event {
    enum ws_event_type type;
    const unsigned char *data;   /* never NULL; see ws_reader_feed */
    size_t len;
    unsigned close_code;         /* WS_EV_CLOSE: WS_CLOSE_NO_STATUS if none */
    const char *close_reason;    /* WS_EV_CLOSE: into data, not NUL-terminated */
    size_t close_reason_len;
} ws_event_t;

typedef struct ws_reader {
    uint64_t max_message;        /* bytes per (reassembled) message */
    /* private */
    int state;
    unsigned char hdr[14];
    size_t hdr_len;
    unsigned opcode;             /* of the frame being read */
    bool fin;
    unsigned char mask[4];
    uint64_t remaining;          /* payload bytes left in this frame */
    uint64_t frame_off;          /* payload offset (for unmasking) */
    unsigned msg_opcode;         /* TEXT/BINARY of the message being read, or 0 */
    uint32_t utf8_state;
    buf_t msg;                   /* reassembled data message */
    unsigned char ctl[125];      /* control frame payload */
    size_t ctl_len;
    bool closed;
    unsigned fail_code;          /* returned by feeds after close/error */
} ws_reader_t;

void ws_reader_init(ws_reader_t *r, uint64_t max_message);
void ws_reader_free(ws_reader_t *r);
/* Feeds client bytes. Unmasks in place, so `in` is writable.
 * Returns 1 with *ev filled when an event is ready (call again with the
 * rest: in + *consumed); 0 when every byte was consumed and no event is
 * complete; -1 on a protocol violation, with *close_code set to the code
 * to close with (1002, 1007 or 1009; 1011 if memory ran out).
 * ev->data points into the reader or, for a frame that arrived whole in
 * this call, into `in`: it is valid until the next ws_reader_feed and as
 * long as the caller leaves `in` alone. After WS_EV_CLOSE the reader takes
 * no more input (-1, 1002: nothing may follow a close); after an error,
 * every later call returns -1 with the same close code. */
int ws_reader_feed(ws_reader_t *r, unsigned char *in, size_t len,
                   size_t *consumed, ws_event_t *ev, unsigned *close_code);

#endif
