/*
 * msg.c - message lifetime, payload classification, the JSON envelope and
 * the per-slot encoding cache. See msg.h.
 */
#include "core/msg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/utf8.h"

#define MSG_ENVELOPE_MAX (256u << 20)

msg_t *msg_new(void)
{
    msg_t *m = calloc(1, sizeof(*m));

    if (m)
        atomic_init(&m->refs, 1);
    return m;
}

void msg_unref(msg_t *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int i = 0; i < MSG_ENC_MAX; i++)
        sbuf_unref(atomic_load_explicit(&m->enc[i], memory_order_acquire));
    free(m->tenant);
    free(m->subject);
    free(m->event);
    free(m->meta);
    free(m->headers);
    free(m->content_type);
    free(m->dedup);
    free(m->payload);
    free(m);
}

int msg_set(char **field, const char *s, size_t len)
{
    char *p = malloc(len + 1);

    if (!p)
        return -1;
    memcpy(p, s, len);
    p[len] = '\0';
    free(*field);
    *field = p;
    return 0;
}

void msg_set_payload(msg_t *m, unsigned char *payload, size_t len)
{
    bool json_ct = !m->content_type || strstr(m->content_type, "json");

    free(m->payload);
    m->payload = payload;
    m->payload_len = len;
    if (json_ct && len && json_valid(payload, len))
        m->payload_kind = MSG_PAYLOAD_JSON;
    else if (utf8_valid(payload, len))
        m->payload_kind = MSG_PAYLOAD_TEXT;
    else
        m->payload_kind = MSG_PAYLOAD_BINARY;
}

void msg_id(const msg_t *m, char *out)
{
    if (m->seq)
        snprintf(out, 21, "%" PRIu64, m->seq);
    else
        out[0] = '\0';
}

static int append_payload(const msg_t *m, buf_t *b)
{
    static const char *const names[] = {"json", "text", "base64"};
    const char *p = (const char *)m->payload;
    int rc;

    rc = buf_printf(b, ",\"payloadEncoding\":\"%s\",\"payload\":",
                    names[m->payload_kind]);
    if (rc)
        return rc;
    switch (m->payload_kind) {
    case MSG_PAYLOAD_JSON:
        return json_append_minified(b, p, m->payload_len);
    case MSG_PAYLOAD_TEXT:
        return json_append_str(b, p ? p : "", m->payload_len);
    default:
        rc = buf_append_byte(b, '"');
        rc = rc ? rc : base64_append(b, m->payload, m->payload_len, B64_STD);
        return rc ? rc : buf_append_byte(b, '"');
    }
}

/* Appends the members of a JSON object text (without its braces), prefixed
 * by a comma, or nothing for an empty object. */
static int splice_object(buf_t *b, const char *obj)
{
    size_t len = strlen(obj);
    const char *s = obj, *e = obj + len;

    while (s < e && *s != '{')
        s++;
    while (e > s && e[-1] != '}')
        e--;
    if (e - s <= 2)
        return 0;
    buf_append_byte(b, ',');
    return buf_append(b, s + 1, (size_t)(e - s - 2));
}

int msg_envelope(const msg_t *m, buf_t *b)
{
    char id[21], when[CLOCK_ISO_LEN + 1];
    int rc = 0;

    msg_id(m, id);
    clock_iso8601(m->time_ms, when);
    if (m->seq)
        rc = buf_printf(b, "{\"id\":\"%s\",\"seq\":%" PRIu64 ",\"subject\":",
                        id, m->seq);
    else
        rc = buf_append_str(b, "{\"id\":null,\"seq\":null,\"subject\":");
    rc = rc ? rc : json_append_str(b, m->subject, strlen(m->subject));
    if (!rc && m->event) {
        rc = buf_append_str(b, ",\"event\":");
        rc = rc ? rc : json_append_str(b, m->event, strlen(m->event));
    }
    rc = rc ? rc : buf_printf(b, ",\"receivedAt\":\"%s\"", when);
    if (!rc && m->meta)
        rc = splice_object(b, m->meta);
    if (!rc && m->headers) {
        rc = buf_append_str(b, ",\"headers\":");
        rc = rc ? rc : json_append_minified(b, m->headers, strlen(m->headers));
    }
    if (!rc && m->content_type) {
        rc = buf_append_str(b, ",\"contentType\":");
        rc = rc ? rc : json_append_str(b, m->content_type,
                                       strlen(m->content_type));
    }
    rc = rc ? rc : append_payload(m, b);
    return rc ? rc : buf_append_byte(b, '}');
}

sbuf_t *msg_encoded(msg_t *m, enum msg_enc_slot slot, msg_encoder_fn enc)
{
    sbuf_t *cur = atomic_load_explicit(&m->enc[slot], memory_order_acquire);
    sbuf_t *expected = NULL;

    if (cur)
        return cur;
    cur = enc(m);
    if (!cur)
        return NULL;
    if (!atomic_compare_exchange_strong_explicit(&m->enc[slot], &expected, cur,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire)) {
        sbuf_unref(cur);
        return expected;
    }
    return cur;
}
