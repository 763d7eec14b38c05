/*
 * msg.h - the message: the one record every layer passes around.
 *
 * A message is created by an ingress edge, filled in on that loop, then
 * handed to the hub (which may store it) and from then on it is immutable
 * except for `seq` and `duplicate`, set once by the store's writer before
 * anyone else sees the message. It is shared by reference across loop
 * threads; the refcount is atomic. Encodings (the JSON envelope, an SSE
 * frame, a WebSocket frame, ...) are computed at most once per message per
 * slot and cached on the message as refcounted sbufs, so fan-out to N
 * subscribers costs one encoding and N references.
 */
#ifndef SB_MSG_H
#define SB_MSG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum msg_payload_kind {
    MSG_PAYLOAD_JSON = 0,    /* valid JSON: relayed as a JSON value */
    MSG_PAYLOAD_TEXT = 1,    /* valid UTF-8, not JSON: a JSON string */
    MSG_PAYLOAD_BINARY = 2,  /* anything else: base64 */
};

/* Encoding cache slots, one per wire format. */
enum msg_enc_slot {
    MSG_ENC_ENVELOPE = 0,    /* msg_envelope() as an sbuf */
    MSG_ENC_SSE,
    MSG_ENC_WS,
    MSG_ENC_SLOT_3,
    MSG_ENC_SLOT_4,
    MSG_ENC_SLOT_5,
    MSG_ENC_MAX
};

typedef struct msg {
    atomic_int refs;
    uint64_t seq;            /* store sequence; 0 = live only (not stored) */
    int64_t time_ms;         /* when Switchboard received it (receivedAt) */
    char *tenant;            /* never NULL once published */
    char *subject;           /* a valid literal subject */
    char *event;             /* event type, or NULL */
    char *meta;              /* JSON object text of origin fields spliced
                                into the envelope (webhookPath, source,
                                method, query), or NULL */
    char *headers;           /* JSON object text, or NULL */
    char *content_type;      /* or NULL */
    char *dedup;             /* delivery id (X-GitHub-Delivery, webhook-id,
                                ...): a stream stores one message per
                                (tenant, dedup); NULL = no dedupe */
    uint8_t payload_kind;    /* enum msg_payload_kind */
    uint8_t duplicate;       /* set by the store: the append matched a stored
                                message with the same dedup key, whose
                                sequence `seq` now holds; nothing was stored */
    unsigned char *payload;
    size_t payload_len;
    _Atomic(sbuf_t *) enc[MSG_ENC_MAX];
} msg_t;

/* Allocation failure returns NULL; the new message holds one reference. */
msg_t *msg_new(void);
static inline msg_t *msg_ref(msg_t *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}
void msg_unref(msg_t *m);

/* Replaces *field with a NUL-terminated copy of (s, len). 0 or -1. */
int msg_set(char **field, const char *s, size_t len);
/* Takes ownership of payload (malloc'd) and classifies it: JSON when it
 * parses and the content type is absent or mentions "json", else TEXT when
 * it is UTF-8, else BINARY. */
void msg_set_payload(msg_t *m, unsigned char *payload, size_t len);
/* The message id as clients see it: the decimal sequence, or "" when the
 * message is live only. out must hold 21 bytes. */
void msg_id(const msg_t *m, char *out);

/* Appends the JSON envelope (one line):
 * {"id","seq","subject","event"?,"receivedAt",<meta fields>,"headers"?,
 *  "contentType"?,"payloadEncoding","payload"} */
int msg_envelope(const msg_t *m, buf_t *out);

typedef sbuf_t *(*msg_encoder_fn)(const msg_t *m);
/* The cached encoding of m in slot, computing it with enc on first use.
 * The result is borrowed: valid while the caller holds a reference to m
 * (sbuf_ref it to keep it longer). NULL on allocation failure. Safe to call
 * from any thread; two threads racing may both encode, one copy wins. */
sbuf_t *msg_encoded(msg_t *m, enum msg_enc_slot slot, msg_encoder_fn enc);

#endif
