/*
 * fuzz_sig.c - webhook signature verification on arbitrary requests.
 *
 * Input: a mode byte, an offset byte, then "<sig>\n<id>\n<ts>\n<body>"
 * (fields missing from the end are absent headers; the body may hold
 * newlines). Mode bits 0-1 pick one of four fixed configurations (github;
 * standard; hmac sha1/base64/prefix "sha1=" on X-Fuzz-Sig; kakao); bit 2
 * replaces the signature with the correct one (computed here with OpenSSL
 * directly; for standard it is appended to the presented list); bit 3
 * replaces the timestamp with NOW + 3 * (int8)offset seconds, which
 * straddles the 300 s tolerance; bit 4 also feeds the fields to
 * sig_cfg_parse as a standard secret and as hmac options.
 *
 * Properties:
 *   - sig_verify asks only for the headers of its kind, and leaves info
 *     zeroed unless it returns SIG_OK;
 *   - SIG_OK only when the presented signature is the correct MAC (hex in
 *     either case, canonical padded base64; for standard one of the first
 *     SIG_MAX_ENTRIES entries is "v1," + it) and, for standard, the id is
 *     printable and the timestamp within tolerance, both handed back;
 *   - the correct signature always passes (standard: when id, timestamp
 *     and list length allow it), a stale timestamp gives SIG_ESTALE;
 *   - sig_cfg_parse accepts only what sig.h allows, and its reason is a
 *     constant text (never a pointer into the secret).
 */
#undef NDEBUG                    /* the checks below are the point */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "auth/sig.h"

#define NOW 1700000000
#define TOLERANCE 300
#define FIELDS 3                 /* sig, id, ts; the body follows */
#define MODE_GOOD 0x04
#define MODE_FILL_TS 0x08
#define MODE_CFG 0x10

typedef struct fz_span {
    const char *p;               /* NULL: header absent */
    size_t n;
} fz_span_t;

typedef struct fz_kind {
    const char *kind;
    const char *header;          /* the signature header */
    const char *digest;
    size_t mac_len;
    bool base64;
    const char *prefix;
    const char *secret;          /* as configured */
    sig_cfg_t *cfg;
} fz_kind_t;

/* The Standard Webhooks key: these 24 bytes, "whsec_" + base64 in cfg. */
static const unsigned char fz_std_key[24] = "fuzz-standard-key-24byte";

static fz_kind_t fz_kinds[4] = {
    { "github", "X-Hub-Signature-256", "SHA256", 32, false, "sha256=",
      "It's a Secret to Everybody", NULL },
    { "standard", "webhook-signature", "SHA256", 32, true, "",
      "whsec_ZnV6ei1zdGFuZGFyZC1rZXktMjRieXRl", NULL },
    { "hmac", "X-Fuzz-Sig", "SHA1", 20, true, "sha1=", "hmac-fuzz-secret",
      NULL },
    { "kakao", "X-Kakao-Signature", "SHA256", 32, false, "",
      "kakao-relay-secret", NULL },
};

typedef struct fz_req {
    const fz_kind_t *k;
    fz_span_t sig, id, ts;
} fz_req_t;

static void fz_init(void)
{
    static bool done;
    sig_options_t hmac = { .header = "X-Fuzz-Sig", .algorithm = "sha1",
                           .encoding = "base64", .prefix = "sha1=" };
    size_t i;

    if (done)
        return;
    for (i = 0; i < 4; i++) {
        fz_kinds[i].cfg = sig_cfg_parse(fz_kinds[i].kind, fz_kinds[i].secret,
                                        i == 2 ? &hmac : NULL, NULL);
        assert(fz_kinds[i].cfg);
    }
    done = true;
}

static const char *fz_get(void *ctx, const char *name, size_t *len)
{
    const fz_req_t *r = ctx;
    const fz_span_t *s;

    if (strcasecmp(name, r->k->header) == 0)
        s = &r->sig;
    else if (r->k->cfg == fz_kinds[1].cfg && strcmp(name, "webhook-id") == 0)
        s = &r->id;
    else if (r->k->cfg == fz_kinds[1].cfg &&
             strcmp(name, "webhook-timestamp") == 0)
        s = &r->ts;
    else
        abort();                 /* a header this kind does not use */
    *len = s->n;
    return s->p;
}

static fz_span_t fz_trim(fz_span_t s)
{
    while (s.n && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.n--;
    }
    while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

/* The correct MAC of the request, encoded as the kind presents it (hex in
 * lower case, base64 padded); returns its length in out (>= 89 bytes). */
static size_t fz_expected(const fz_kind_t *k, fz_span_t id, fz_span_t ts,
                          const void *body, size_t len, char *out)
{
    static const char hexd[] = "0123456789abcdef";
    unsigned char mac[64], *msg;
    size_t mlen, n = 0, i;
    bool std = k->cfg == fz_kinds[1].cfg;
    const void *key = std ? (const void *)fz_std_key : k->secret;
    size_t klen = std ? sizeof fz_std_key : strlen(k->secret);

    msg = malloc(id.n + ts.n + len + 3);
    assert(msg);
    if (std) {
        if (id.n)
            memcpy(msg, id.p, id.n);
        n = id.n;
        msg[n++] = '.';
        if (ts.n)
            memcpy(msg + n, ts.p, ts.n);
        n += ts.n;
        msg[n++] = '.';
    }
    if (len)
        memcpy(msg + n, body, len);
    n += len;
    assert(EVP_Q_mac(NULL, "HMAC", NULL, k->digest, NULL, key, klen, msg, n,
                     mac, sizeof mac, &mlen));
    assert(mlen == k->mac_len);
    free(msg);
    if (k->base64)
        return (size_t)EVP_EncodeBlock((unsigned char *)out, mac, (int)mlen);
    for (i = 0; i < mlen; i++) {
        out[2 * i] = hexd[mac[i] >> 4];
        out[2 * i + 1] = hexd[mac[i] & 15];
    }
    return 2 * mlen;
}

static bool fz_hex_equal(fz_span_t got, const char *want, size_t n)
{
    size_t i;

    if (got.n != n)
        return false;
    for (i = 0; i < n; i++) {
        char c = got.p[i] >= 'A' && got.p[i] <= 'F' ? (char)(got.p[i] + 32)
                                                    : got.p[i];

        if (c != want[i])        /* want is lower-case hex */
            return false;
    }
    return true;
}

/* The 1-based position of the entry "v1,<want>" among the non-empty
 * space-separated entries of list, 0 when absent. */
static size_t fz_std_position(fz_span_t list, const char *want, size_t n)
{
    size_t i = 0, entries = 0;

    while (i < list.n) {
        fz_span_t e = { list.p + i, 0 };

        while (i < list.n && list.p[i] != ' ') {
            i++;
            e.n++;
        }
        i++;
        if (e.n == 0)
            continue;
        entries++;
        if (e.n == n + 3 && memcmp(e.p, "v1,", 3) == 0 &&
            memcmp(e.p + 3, want, n) == 0)
            return entries;
    }
    return 0;
}

static bool fz_valid_id(fz_span_t id)
{
    size_t i;

    if (id.n == 0 || id.n > SIG_ID_MAX)
        return false;
    for (i = 0; i < id.n; i++)
        if (id.p[i] < 0x21 || id.p[i] > 0x7e)
            return false;
    return true;
}

static bool fz_parse_ts(fz_span_t ts, int64_t *t)
{
    size_t i;

    *t = 0;
    if (ts.n == 0 || ts.n > 15)
        return false;
    for (i = 0; i < ts.n; i++) {
        if (ts.p[i] < '0' || ts.p[i] > '9')
            return false;
        *t = *t * 10 + (ts.p[i] - '0');
    }
    return true;
}

static void fz_check_info(const sig_info_t *info, sig_result_t rc,
                          bool std, fz_span_t id, int64_t t)
{
    static const sig_info_t zero;

    if (rc != SIG_OK) {
        assert(memcmp(info, &zero, sizeof zero) == 0);
        return;
    }
    if (!std) {
        assert(info->id_len == 0 && info->id[0] == 0 && info->timestamp == 0);
        return;
    }
    assert(info->id_len == id.n && memcmp(info->id, id.p, id.n) == 0);
    assert(info->id[id.n] == 0 && info->timestamp == t);
}

/* Verifies r and checks every property; good says r carries the correct
 * signature. */
static void fz_verify(fz_req_t *r, const void *body, size_t len, bool good)
{
    const fz_kind_t *k = r->k;
    bool std = k->cfg == fz_kinds[1].cfg;
    fz_span_t sig = fz_trim(r->sig), id = fz_trim(r->id), ts = fz_trim(r->ts);
    char want[96];
    size_t wn, plen = strlen(k->prefix), pos;
    bool ts_ok = false, in_time = false;
    int64_t t = 0;
    sig_info_t info;
    sig_result_t rc;

    memset(&info, 0xAA, sizeof info);
    rc = sig_verify(k->cfg, fz_get, r, body, len, NOW, &info);
    assert(rc < SIG_ENOMEM);
    if (std) {
        ts_ok = r->ts.p && fz_parse_ts(ts, &t);
        in_time = ts_ok && (t >= NOW ? t - NOW : NOW - t) <= TOLERANCE;
    }
    fz_check_info(&info, rc, std, id, t);
    if (!sig.p || sig.n == 0 || (std && (!r->id.p || !id.n || !ts.n))) {
        assert(rc == SIG_EMISSING);
        return;
    }
    if (std && fz_valid_id(id) && ts_ok && !in_time)
        assert(rc == SIG_ESTALE);
    wn = fz_expected(k, id, ts, body, len, want);
    if (std) {
        pos = fz_std_position(sig, want, wn);
        if (rc == SIG_OK)
            assert(pos >= 1 && pos <= SIG_MAX_ENTRIES && fz_valid_id(id) &&
                   in_time);
        if (good && fz_valid_id(id) && in_time && pos >= 1 &&
            pos <= SIG_MAX_ENTRIES)
            assert(rc == SIG_OK);
        return;
    }
    if (rc == SIG_OK) {
        fz_span_t mac = { sig.p + plen, sig.n - plen };

        assert(sig.n >= plen && memcmp(sig.p, k->prefix, plen) == 0);
        assert(k->base64 ? mac.n == wn && memcmp(mac.p, want, wn) == 0
                         : fz_hex_equal(mac, want, wn));
    }
    if (good)
        assert(rc == SIG_OK);
}

/* Writes the correct signature into buf for r (for standard after the
 * presented list) and points r->sig at it. */
static void fz_forge(fz_req_t *r, const void *body, size_t len, char *buf,
                     size_t cap)
{
    const fz_kind_t *k = r->k;
    bool std = k->cfg == fz_kinds[1].cfg;
    char want[96];
    size_t wn, n = 0, plen = strlen(k->prefix);

    wn = fz_expected(k, fz_trim(r->id), fz_trim(r->ts), body, len, want);
    if (std && r->sig.n) {
        memcpy(buf, r->sig.p, r->sig.n);
        n = r->sig.n;
        buf[n++] = ' ';
    }
    if (std) {
        memcpy(buf + n, "v1,", 3);
        n += 3;
    }
    memcpy(buf + n, k->prefix, plen);
    n += plen;
    memcpy(buf + n, want, wn);
    n += wn;
    assert(n <= cap);
    r->sig.p = buf;
    r->sig.n = n;
}

static char *fz_cstr(fz_span_t s)
{
    char *c = malloc(s.n + 1);

    assert(c);
    if (s.n)
        memcpy(c, s.p, s.n);
    c[s.n] = 0;
    return c;
}

/* sig_cfg_parse with fuzzed secret and hmac options. */
static void fz_cfg(const fz_req_t *r)
{
    char *secret = fz_cstr(r->sig), *header = fz_cstr(r->id);
    char *prefix = fz_cstr(r->ts);
    sig_options_t o = { .header = header, .prefix = prefix };
    const char *err = NULL;
    sig_cfg_t *c;
    size_t i, n;

    c = sig_cfg_parse("standard", secret, NULL, &err);
    if (c) {
        assert(strncmp(secret, "whsec_", 6) == 0);
        assert(strlen(secret) <= SIG_SECRET_MAX);
        assert(sig_cfg_kind(c) == SIG_KIND_STANDARD);
    } else {
        assert(err && (err < secret || err > secret + strlen(secret)));
    }
    sig_cfg_free(c);
    err = NULL;
    c = sig_cfg_parse("hmac", "k", &o, &err);
    if (c) {
        n = strlen(header);
        assert(n >= 1 && n <= SIG_HEADER_MAX);
        n = strlen(prefix);
        assert(n <= SIG_PREFIX_MAX);
        for (i = 0; i < n; i++)
            assert(prefix[i] >= 0x21 && prefix[i] <= 0x7e);
        assert(sig_cfg_kind(c) == SIG_KIND_HMAC);
    } else {
        assert(err);
    }
    sig_cfg_free(c);
    free(secret);
    free(header);
    free(prefix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_span_t *f[FIELDS];
    fz_req_t r = { 0 };
    const char *p, *end, *nl;
    char tsbuf[24], *forged;
    uint8_t mode;
    size_t i;

    if (size < 2 || size > 4096)
        return 0;
    fz_init();
    mode = data[0];
    r.k = &fz_kinds[mode & 3];
    p = (const char *)data + 2;
    end = (const char *)data + size;
    f[0] = &r.sig;
    f[1] = &r.id;
    f[2] = &r.ts;
    for (i = 0; i < FIELDS && p <= end; i++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        f[i]->p = p;
        f[i]->n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        p = nl ? nl + 1 : end + 1;
    }
    if (p > end)
        p = end;
    if (mode & MODE_CFG)
        fz_cfg(&r);
    if (mode & MODE_FILL_TS) {
        int64_t t = NOW + 3 * (int64_t)(int8_t)data[1];
        size_t n = sizeof tsbuf;

        tsbuf[--n] = 0;
        while (t) {
            tsbuf[--n] = (char)('0' + t % 10);
            t /= 10;
        }
        r.ts.p = tsbuf + n;
        r.ts.n = sizeof tsbuf - 1 - n;
    }
    forged = NULL;
    if (mode & MODE_GOOD) {
        size_t cap = r.sig.n + 200;

        forged = malloc(cap);
        assert(forged);
        fz_forge(&r, p, (size_t)(end - p), forged, cap);
    }
    fz_verify(&r, p, (size_t)(end - p), (mode & MODE_GOOD) != 0);
    free(forged);
    return 0;
}
