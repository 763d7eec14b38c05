/*
 * publish.c - POST /api/v1/publish {"subject","event"?,"data"}: a backend
 * publishes any JSON value into its credential's tenant, to subjects and
 * event types the credential may publish (403 otherwise). Same path as a webhook: stored subjects are
 * answered once durable, others once handed to every loop.
 *
 * edge_publish_parse() is shared with the WebSocket "publish" command so
 * both validate alike. The "data" value is kept as the exact bytes the
 * client sent (a JSON re-encoding could change numbers such as 0.1).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth/auth.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/subject.h"
#include "edge/edge.h"
#include "ops/log.h"
#include "ops/metrics.h"

static int set_data(msg_t *m, const char *json, size_t len, json_t *data)
{
    size_t off, vlen;
    unsigned char *copy;
    char *dumped;

    if (json_member_span(json, len, "data", &off, &vlen)) {
        copy = malloc(vlen ? vlen : 1);
        if (!copy)
            return -1;
        memcpy(copy, json + off, vlen);
    } else {
        /* "data" spelled with escapes: fall back to jansson's encoding */
        dumped = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!dumped)
            return -1;
        vlen = strlen(dumped);
        copy = (unsigned char *)dumped;
    }
    if (msg_set(&m->content_type, "application/json", 16)) {
        free(copy);
        return -1;
    }
    msg_set_payload(m, copy, vlen);
    return 0;
}

msg_t *edge_publish_parse(const char *json, size_t len, const char *tenant,
                          const char **code, const char **why)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr), *subj, *ev, *data;
    msg_t *m = NULL;
    const char *s;

    *code = "bad_request";
    if (!root) {
        *code = "invalid_json";
        *why = "the body is not a JSON object";
        return NULL;
    }
    subj = json_object_get(root, "subject");
    ev = json_object_get(root, "event");
    data = json_object_get(root, "data");
    s = json_string_value(subj);
    if (!s || !subj_valid_subject(s, json_string_length(subj))) {
        *code = "invalid_subject";
        *why = "\"subject\" must be a valid subject without wildcards";
        goto out;
    }
    if (ev && !json_is_null(ev) &&
        (!json_is_string(ev) ||
         !perm_valid_event_type(json_string_value(ev), json_string_length(ev)))) {
        *why = "\"event\" must be a string of 1 to 128 printable characters";
        goto out;
    }
    if (!data) {
        *why = "\"data\" is required (any JSON value)";
        goto out;
    }
    m = msg_new();
    if (!m || msg_set(&m->tenant, tenant, strlen(tenant)) ||
        msg_set(&m->subject, s, json_string_length(subj)) ||
        (json_is_string(ev) && msg_set(&m->event, json_string_value(ev), json_string_length(ev))) ||
        set_data(m, json, len, data)) {
        msg_unref(m);
        m = NULL;
        *code = "unavailable";
        *why = "out of memory";
        goto out;
    }
    m->time_ms = clock_now_ms();
out:
    json_decref(root);
    return m;
}

static void published(void *arg, int err, msg_t *m)
{
    http_req_t *r = arg;
    char id[21];
    buf_t b;

    if (err) {
        http_error(r, 503, "store_unavailable", "the message could not be stored; retry later");
        http_req_release(r);
        return;
    }
    METRIC_INC(msgs_in[SRC_PUBLISH]);
    msg_id(m, id);
    buf_init(&b, 4096);
    if (m->seq)
        buf_printf(&b, "{\"status\":\"accepted\",\"id\":\"%s\",\"seq\":%s,\"stored\":true,", id, id);
    else
        buf_append_str(&b, "{\"status\":\"accepted\",\"id\":null,\"seq\":null,\"stored\":false,");
    edge_reply_accepted(r, &b, m);
}

void publish_handle(http_req_t *r)
{
    const char *code, *why;
    principal_t *p = auth_request(r, 0);
    msg_t *m;

    if (!p)
        return;
    m = edge_publish_parse(r->body.data ? r->body.data : "", r->body.len, p->tenant, &code,
                           &why);
    if (!m) {
        http_error(r, strcmp(code, "unavailable") ? 400 : 503, code, "%s", why);
    } else if (edge_may_publish(r, p, m, NULL, NULL)) {
        http_req_hold(r);
        if (hub_publish(m, r->conn->loop, published, r)) {
            http_req_release(r);
            http_error(r, 503, "store_unavailable", "the store is not accepting messages");
        }
    }
    msg_unref(m);
    principal_unref(p);
}
