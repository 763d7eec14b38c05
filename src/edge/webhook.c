/*
 * webhook.c - the webhook ingress edge: POST|PUT|PATCH|DELETE
 * /webhook/{source}/{path...} becomes a message on subject
 * webhooks.{source}.{seg}... and is answered 202 only once it is durable.
 *
 * Path segments are percent-decoded, then sanitised into subject tokens
 * (anything but letters, digits and _-:@~ becomes '_'); empty segments are
 * skipped. The stored message keeps what a consumer needs to act on the
 * original request: method, path, query, content type, headers (names
 * lower-cased, repeated fields joined with ", ", hop-by-hop fields
 * removed) and the raw body, byte for byte.
 *
 * Who may post. The {source} token picks the rule (config "sources"):
 *   - a source configured with a verifier (github, standard, hmac, kakao):
 *     the signature over the raw body must check (auth/sig.h), else 401
 *     "invalid_signature", counted by result and logged without secret or
 *     signature; Standard Webhooks requests are also refused once seen
 *     (same id and timestamp: 401 "replayed", auth/replay.h). The message
 *     goes to the source's tenant;
 *   - a source configured with verify "none": anyone, into its tenant;
 *   - any other source: a credential (auth/auth.h) that may publish the
 *     subject with the request's event type, into the credential's tenant.
 * Verifiers are built once by webhook_init, before serving, and are
 * read-only afterwards: nothing is parsed per request, and a source whose
 * verifier could not be built answers 503 (fail closed).
 *
 * Providers retry. A delivery id header (X-GitHub-Delivery, webhook-id,
 * ...) makes ingest idempotent: a repeat is answered 202 with the original
 * id and "duplicate": true, and is neither stored nor delivered again. The
 * dedupe key is "{source}/{delivery id}", so one source cannot claim (and
 * so suppress) another source's delivery ids.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "auth/principal.h"
#include "auth/replay.h"
#include "auth/sig.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/subject.h"
#include "core/utf8.h"
#include "edge/edge.h"
#include "ops/log.h"
#include "ops/metrics.h"

#define WEBHOOK_PREFIX "/webhook/"

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate",
    "expect", "content-length", NULL,
};

/* Headers that carry the event type, in order of preference. */
static const char *const event_headers[] = {
    "X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Event-Key",
    "X-Event-Type", "X-Webhook-Event", NULL,
};

/* Headers that carry a provider's delivery id: a retried delivery with the
 * same id is stored once (the store answers with the original sequence). */
static const char *const delivery_headers[] = {
    "X-GitHub-Delivery", "X-Gitea-Delivery", "X-Gitlab-Event-UUID",
    "webhook-id", "svix-id", "X-Delivery-Id", NULL,
};

static bool is_hop_by_hop(const http_req_t *r, const http_header_t *h)
{
    char name[64];

    for (int i = 0; hop_by_hop[i]; i++)
        if (h->name_len == strlen(hop_by_hop[i]) &&
            strncasecmp(h->name, hop_by_hop[i], h->name_len) == 0)
            return true;
    if (h->name_len >= sizeof name)
        return false;
    memcpy(name, h->name, h->name_len);
    name[h->name_len] = '\0';
    return http_header_has_token(r, "Connection", name);
}

/* Appends a header value as a JSON string; bytes that are not UTF-8 are
 * taken as ISO-8859-1 (what obs-text historically meant). */
static int append_value(buf_t *b, const char *v, size_t len)
{
    buf_t tmp;
    int rc;

    if (utf8_valid(v, len))
        return json_append_str(b, v, len);
    buf_init(&tmp, len * 2 + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x80) {
            buf_append_byte(&tmp, (char)ch);
        } else {
            buf_append_byte(&tmp, (char)(0xC0 | (ch >> 6)));
            buf_append_byte(&tmp, (char)(0x80 | (ch & 0x3F)));
        }
    }
    rc = json_append_str(b, tmp.data ? tmp.data : "", tmp.len);
    buf_free(&tmp);
    return rc;
}

/* {"name": "value, value", ...} with names lower-cased. Without the
 * Authorization field when it was this server's credential (drop_auth):
 * every subscriber of the subject would read it. */
static int headers_json(const http_req_t *r, buf_t *b, bool drop_auth)
{
    const http_head_t *h = &r->head;
    bool first = true;
    int rc = buf_append_byte(b, '{');

    for (size_t i = 0; i < h->num_headers && !rc; i++) {
        const http_header_t *hi = &h->headers[i];
        char lower[256];
        bool seen = false;

        if (is_hop_by_hop(r, hi) || hi->name_len >= sizeof lower ||
            (drop_auth && hi->name_len == 13 && strncasecmp(hi->name, "authorization", 13) == 0))
            continue;
        for (size_t j = 0; j < i && !seen; j++)
            seen = h->headers[j].name_len == hi->name_len &&
                   strncasecmp(h->headers[j].name, hi->name, hi->name_len) == 0;
        if (seen)
            continue;
        for (size_t k = 0; k < hi->name_len; k++)
            lower[k] = (char)((hi->name[k] >= 'A' && hi->name[k] <= 'Z') ? hi->name[k] + 32
                                                                          : hi->name[k]);
        rc = buf_append_str(b, first ? "" : ",");
        rc = rc ? rc : json_append_str(b, lower, hi->name_len);
        rc = rc ? rc : buf_append_byte(b, ':');
        if (rc)
            break;
        first = false;
        /* join every later field of the same name */
        {
            buf_t joined;
            buf_init(&joined, 1u << 20);
            for (size_t j = i; j < h->num_headers; j++) {
                const http_header_t *hj = &h->headers[j];
                if (hj->name_len != hi->name_len || strncasecmp(hj->name, hi->name, hi->name_len))
                    continue;
                if (joined.len)
                    buf_append(&joined, ", ", 2);
                buf_append(&joined, hj->value, hj->value_len);
            }
            rc = append_value(b, joined.data ? joined.data : "", joined.len);
            buf_free(&joined);
        }
    }
    return rc ? rc : buf_append_byte(b, '}');
}

/* Builds the subject from the path after /webhook/. Returns 0, or -1 with
 * *why set. *source receives the sanitised source token. */
static int build_subject(const char *p, size_t len, size_t max_depth, buf_t *subject,
                         char *source, size_t source_cap, const char **why)
{
    size_t depth = 0;
    const char *e = p + len;

    buf_append_str(subject, "webhooks");
    while (p < e) {
        const char *slash = memchr(p, '/', (size_t)(e - p));
        const char *se = slash ? slash : e;
        char tok[SUBJ_MAX_TOKEN_LEN + 1];
        buf_t seg;
        size_t tlen;

        if (se > p) {
            buf_init(&seg, 1024);
            if (http_pct_decode(p, (size_t)(se - p), &seg, false)) {
                buf_free(&seg);
                *why = "malformed percent-encoding in the path";
                return -1;
            }
            tlen = subj_sanitize_token(seg.data ? seg.data : "", seg.len, tok, sizeof tok);
            buf_free(&seg);
            if (tlen) {
                if (depth == 0) {
                    size_t n = tlen < source_cap - 1 ? tlen : source_cap - 1;
                    memcpy(source, tok, n);
                    source[n] = '\0';
                } else if (depth > max_depth) {
                    *why = "too many path segments";
                    return -1;
                }
                depth++;
                if (buf_append_byte(subject, '.') || buf_append(subject, tok, tlen)) {
                    *why = "path too long";
                    return -1;
                }
            }
        }
        p = slash ? slash + 1 : e;
    }
    if (depth == 0) {
        *why = "the path needs a source: /webhook/{source}/...";
        return -1;
    }
    if (depth > max_depth + 1) {
        *why = "too many path segments";
        return -1;
    }
    if (!subj_valid_subject(subject->data, subject->len)) {
        *why = "path too long";
        return -1;
    }
    return 0;
}

static int meta_json(const http_req_t *r, const char *source, buf_t *b)
{
    const http_head_t *h = &r->head;
    int rc = buf_append_str(b, "{\"webhookPath\":");

    rc = rc ? rc : json_append_str(b, h->path, h->path_len);
    rc = rc ? rc : buf_append_str(b, ",\"source\":");
    rc = rc ? rc : json_append_str(b, source, strlen(source));
    rc = rc ? rc : buf_append_str(b, ",\"method\":");
    rc = rc ? rc : json_append_str(b, h->method, h->method_len);
    if (!rc && h->query) {
        rc = buf_append_str(b, ",\"query\":");
        rc = rc ? rc : json_append_str(b, h->query, h->query_len);
    }
    return rc ? rc : buf_append_byte(b, '}');
}

static void set_event(const http_req_t *r, msg_t *m)
{
    for (int i = 0; event_headers[i]; i++) {
        size_t len;
        const char *v = http_header(r, event_headers[i], &len);
        if (v && perm_valid_event_type(v, len)) {
            msg_set(&m->event, v, len);
            return;
        }
    }
}

/* The dedupe key "{source}/{delivery id}"; none when the id is empty or
 * the key would be longer than the store keeps. */
static int set_dedup(const http_req_t *r, const char *source, msg_t *m)
{
    size_t slen = strlen(source);

    for (int i = 0; delivery_headers[i]; i++) {
        size_t len;
        const char *v = http_header(r, delivery_headers[i], &len);
        if (v && len > 0 && slen + 1 + len <= STORE_DEDUP_MAX) {
            char key[STORE_DEDUP_MAX];
            memcpy(key, source, slen);
            key[slen] = '/';
            memcpy(key + slen + 1, v, len);
            return msg_set(&m->dedup, key, slen + 1 + len);
        }
    }
    return 0;
}

/* ---- who may post ------------------------------------------------------ */

/* Verifiers, index for index with cfg->sources; set by webhook_init before
 * the loops run, read-only afterwards. */
static struct {
    const config_t *cfg;
    sig_cfg_t **sig;               /* NULL entry: could not be built */
    size_t n;
    replay_t *replay;              /* when some source is of kind standard */
} W;

int webhook_init(const config_t *cfg)
{
    int64_t tolerance = 0;
    int rc = 0;

    webhook_shutdown();
    if (cfg->nsources && !(W.sig = calloc(cfg->nsources, sizeof *W.sig)))
        return -1;
    W.cfg = cfg;
    W.n = cfg->nsources;
    for (size_t i = 0; i < W.n; i++) {
        const config_source_t *s = &cfg->sources[i];
        sig_options_t o = {s->header, s->algorithm, s->encoding, s->prefix, s->tolerance_s};
        const char *why = "out of memory";

        if (!(W.sig[i] = sig_cfg_parse(s->verify, s->secret, &o, &why))) {
            LOG_ERROR("webhook source disabled", "\"source\":\"%s\",\"error\":\"%s\"",
                      log_str(s->name, (size_t)-1), why);
            rc = -1;
        } else if (sig_cfg_kind(W.sig[i]) == SIG_KIND_STANDARD) {
            int64_t t = s->tolerance_s ? s->tolerance_s : SIG_DEFAULT_TOLERANCE;
            tolerance = t > tolerance ? t : tolerance;
        }
    }
    if (tolerance && !(W.replay = replay_new(REPLAY_DEFAULT_CAPACITY, tolerance))) {
        LOG_ERROR("webhook sources of kind standard disabled: no replay memory", "%s", "");
        for (size_t i = 0; i < W.n; i++)
            if (W.sig[i] && sig_cfg_kind(W.sig[i]) == SIG_KIND_STANDARD) {
                sig_cfg_free(W.sig[i]);
                W.sig[i] = NULL;
            }
        rc = -1;
    }
    return rc;
}

void webhook_shutdown(void)
{
    for (size_t i = 0; i < W.n; i++)
        sig_cfg_free(W.sig[i]);
    free(W.sig);
    replay_free(W.replay);
    memset(&W, 0, sizeof W);
}

static const char *req_header(void *ctx, const char *name, size_t *len)
{
    return http_header(ctx, name, len);
}

/* The configured source called name, or NULL. */
static const config_source_t *source_find(const config_t *cfg, const char *name, size_t *index)
{
    for (size_t i = 0; i < cfg->nsources; i++)
        if (strcmp(cfg->sources[i].name, name) == 0) {
            *index = i;
            return &cfg->sources[i];
        }
    return NULL;
}

/* Counts, logs (never the secret or the signature) and answers 401. */
static void refuse_signature(http_req_t *r, const config_source_t *s, int metric,
                             const char *code, const char *why)
{
    char ip[AUTH_IP_MAX];

    METRIC_INC(webhook_sig[metric]);
    auth_client_ip(r, ip);
    LOG_WARN("webhook signature refused", "\"conn\":%" PRIu64 ",\"source\":\"%s\",\"verify\":"
             "\"%s\",\"reason\":\"%s\",\"ip\":\"%s\"", r->conn->id, log_str(s->name, (size_t)-1),
             log_str(s->verify, (size_t)-1), why, log_str(ip, (size_t)-1));
    http_error(r, 401, code, "%s", why);
}

/*
 * Checks r's signature with the verifier of source s (index i). True when
 * r may be stored; otherwise r has been answered (401, or 503 when the
 * verifier is missing or memory ran out). Exactly one result is counted
 * per verifying source: ok only when the request passes every check.
 */
static bool verify_source(http_req_t *r, const config_source_t *s, size_t i)
{
    static const int metric[] = {
        [SIG_EMISSING] = MS_MISSING, [SIG_EMALFORMED] = MS_MALFORMED,
        [SIG_EMISMATCH] = MS_MISMATCH, [SIG_ESTALE] = MS_STALE,
    };
    const sig_cfg_t *v = W.cfg == edge_cfg() && i < W.n ? W.sig[i] : NULL;
    int64_t now_s = clock_now_ms() / 1000;
    sig_info_t info;
    sig_result_t rc;

    if (!v) {
        http_error(r, 503, "unavailable", "this webhook source is not available");
        return false;
    }
    if (sig_cfg_kind(v) == SIG_KIND_NONE)
        return true;
    rc = sig_verify(v, req_header, r, r->body.data, r->body.len, now_s < 0 ? 0 : now_s, &info);
    if (rc == SIG_ENOMEM) {
        http_error(r, 503, "unavailable", "out of memory");
        return false;
    }
    if (rc != SIG_OK) {
        refuse_signature(r, s, metric[rc], "invalid_signature", sig_strerror(rc));
        return false;
    }
    if (sig_cfg_kind(v) == SIG_KIND_STANDARD &&
        replay_seen(W.replay, s->name, info.id, info.id_len, info.timestamp, now_s)) {
        refuse_signature(r, s, MS_REPLAYED, "replayed",
                         "this webhook-id and webhook-timestamp were already received");
        return false;
    }
    METRIC_INC(webhook_sig[MS_OK]);
    return true;
}

/*
 * Admits m (subject and event type set) from source: returns the tenant it
 * belongs to, or NULL when r has been answered. A principal taken for an
 * unconfigured source is left in *p (the caller unrefs it; the tenant
 * points into it).
 */
static const char *admit(http_req_t *r, const char *source, const msg_t *m, principal_t **p)
{
    const config_t *cfg = edge_cfg();
    const config_source_t *s;
    size_t i;

    if ((s = source_find(cfg, source, &i)))
        return verify_source(r, s, i) ? s->tenant : NULL;
    if (!(*p = auth_request(r, 0)))
        return NULL;
    return edge_may_publish(r, *p, m, NULL, NULL) ? (*p)->tenant : NULL;
}

static void accepted(void *arg, int err, msg_t *m)
{
    http_req_t *r = arg;
    char id[21];
    buf_t b;
    /* the subject is webhooks.{source}[.{seg}...] */
    const char *source = m->subject + strlen("webhooks.");
    const char *dot = strchr(source, '.');

    if (err) {
        LOG_ERROR("webhook not stored", "\"subject\":\"%s\",\"error\":%d",
                  log_str(m->subject, (size_t)-1), err);
        http_error(r, 503, "store_unavailable", "the message could not be stored; retry later");
        http_req_release(r);
        return;
    }
    METRIC_INC(msgs_in[SRC_WEBHOOK]);
    msg_id(m, id);
    buf_init(&b, 8192);
    buf_append_str(&b, "{\"status\":\"accepted\",\"id\":");
    if (m->seq)
        json_append_str(&b, id, strlen(id));
    else
        buf_append_str(&b, "null");
    buf_append_str(&b, ",\"webhookPath\":");
    json_append_str(&b, r->head.path, r->head.path_len);
    buf_append_str(&b, ",\"source\":");
    json_append_str(&b, source, dot ? (size_t)(dot - source) : strlen(source));
    if (m->duplicate)
        buf_append_str(&b, ",\"duplicate\":true");
    buf_append_byte(&b, ',');
    edge_reply_accepted(r, &b, m);
}

void webhook_handle(http_req_t *r)
{
    const config_t *cfg = edge_cfg();
    char source[SUBJ_MAX_TOKEN_LEN + 1] = "";
    const char *why = NULL, *ct, *tenant;
    size_t ctlen, plen;
    buf_t subject, meta, headers;
    msg_t *m = msg_new();
    principal_t *p = NULL;
    unsigned char *payload;
    int rc;

    buf_init(&subject, SUBJ_MAX_LEN);
    buf_init(&meta, 64 * 1024);
    buf_init(&headers, 256 * 1024);
    if (!m)
        goto nomem;
    if (build_subject(r->head.path + strlen(WEBHOOK_PREFIX),
                      r->head.path_len - strlen(WEBHOOK_PREFIX),
                      (size_t)cfg->webhook_max_depth, &subject, source, sizeof source, &why)) {
        http_error(r, 400, "invalid_path", "%s", why);
        goto out;
    }
    if (msg_set(&m->subject, subject.data, subject.len))
        goto nomem;
    set_event(r, m);
    if (!(tenant = admit(r, source, m, &p)))
        goto out;
    if (meta_json(r, source, &meta) || headers_json(r, &headers, p != NULL))
        goto nomem;
    m->time_ms = clock_now_ms();
    ct = http_header(r, "Content-Type", &ctlen);
    if (msg_set(&m->tenant, tenant, strlen(tenant)) ||
        msg_set(&m->meta, meta.data, meta.len) ||
        msg_set(&m->headers, headers.data, headers.len) ||
        (ct && msg_set(&m->content_type, ct, ctlen)) || set_dedup(r, source, m))
        goto nomem;
    payload = (unsigned char *)buf_steal(&r->body, &plen);
    msg_set_payload(m, payload, plen);
    http_req_hold(r);
    rc = hub_publish(m, r->conn->loop, accepted, r);
    if (rc) {
        http_req_release(r);
        http_error(r, 503, "store_unavailable", "the store is not accepting messages");
    }
    goto out;
nomem:
    http_error(r, 503, "unavailable", "out of memory");
out:
    principal_unref(p);
    msg_unref(m);
    buf_free(&subject);
    buf_free(&meta);
    buf_free(&headers);
}
