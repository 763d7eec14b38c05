/*
 * sig.c - webhook signature schemes. See sig.h.
 *
 * Shape: every kind but standard is the same scheme with different
 * constants (header, digest, encoding, prefix), so github and kakao are
 * presets of hmac and share one code path. Standard Webhooks adds the id,
 * the timestamp window and a list of candidate signatures. The MAC is
 * streamed over its parts (id, ".", timestamp, ".", body) so the body is
 * never copied. The HMAC implementation is fetched once per configuration
 * (EVP_MAC is refcounted and thread-safe); each verification makes its own
 * EVP_MAC_CTX.
 *
 * Presented signatures are parsed before any MAC is computed: a malformed
 * one is refused on its shape alone, which depends only on attacker data.
 */
#include "auth/sig.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "core/base64.h"
#include "core/hex.h"

#define MAC_MAX 64                  /* SHA-512 */
#define STD_MAC_LEN 32
#define TS_DIGITS_MAX 15            /* far beyond any real time in seconds */

typedef enum sig_enc { ENC_HEX, ENC_BASE64 } sig_enc_t;

struct sig_cfg {
    sig_kind_t kind;
    char header[SIG_HEADER_MAX + 1];
    const char *digest;             /* "SHA1", "SHA256", "SHA512" */
    size_t mac_len;
    sig_enc_t enc;
    char prefix[SIG_PREFIX_MAX + 1];
    size_t prefix_len;
    int64_t tolerance_s;
    EVP_MAC *mac;
    unsigned char *key;             /* wiped on free */
    size_t key_len;
};

typedef struct span {
    const char *p;
    size_t n;
} span_t;

/* ---- names ---------------------------------------------------------------- */

const char *sig_strerror(sig_result_t r)
{
    switch (r) {
    case SIG_OK: return "ok";
    case SIG_EMISSING: return "signature header missing";
    case SIG_EMALFORMED: return "signature malformed";
    case SIG_EMISMATCH: return "signature mismatch";
    case SIG_ESTALE: return "timestamp outside tolerance";
    case SIG_ENOMEM: return "out of memory";
    }
    return "unknown error";
}

static const char *const kind_names[] = {
    [SIG_KIND_NONE] = "none",
    [SIG_KIND_GITHUB] = "github",
    [SIG_KIND_STANDARD] = "standard",
    [SIG_KIND_HMAC] = "hmac",
    [SIG_KIND_KAKAO] = "kakao",
};

const char *sig_kind_name(sig_kind_t kind)
{
    if ((size_t)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
        return "unknown";
    return kind_names[kind];
}

sig_kind_t sig_cfg_kind(const sig_cfg_t *cfg)
{
    return cfg->kind;
}

/* ---- encodings -------------------------------------------------------- */

/* Strict standard base64 (RFC 4648 section 4): padded, unused bits zero,
 * at most max decoded bytes. Returns the decoded length or -1. */
static long b64_decode(span_t s, unsigned char *out, size_t max)
{
    return s.n ? base64_decode(s.p, s.n, out, max, B64_STD) : -1;
}

/* Decodes a presented MAC of exactly want bytes in encoding enc. */
static bool mac_decode(sig_enc_t enc, span_t s, unsigned char *out,
                       size_t want)
{
    if (enc == ENC_HEX)
        return hex_decode(s.p, s.n, out, want);
    return b64_decode(s, out, want) == (long)want;
}

/* ---- configuration --------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool valid_header_name(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > SIG_HEADER_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static bool valid_prefix(const char *s)
{
    size_t i, n = strlen(s);

    if (n > SIG_PREFIX_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    return true;
}

static bool set_digest(sig_cfg_t *c, const char *name)
{
    static const struct {
        const char *name, *digest;
        size_t len;
    } tbl[] = {
        { "sha1", "SHA1", 20 },
        { "sha256", "SHA256", 32 },
        { "sha512", "SHA512", 64 },
    };
    size_t i;

    for (i = 0; i < sizeof(tbl) / sizeof(tbl[0]); i++)
        if (strcmp(name, tbl[i].name) == 0) {
            c->digest = tbl[i].digest;
            c->mac_len = tbl[i].len;
            return true;
        }
    return false;
}

static const char *set_key(sig_cfg_t *c, const void *p, size_t n)
{
    if (!(c->key = OPENSSL_malloc(n)))
        return "out of memory";
    memcpy(c->key, p, n);
    c->key_len = n;
    return NULL;
}

/* Options of the hmac kind (github and kakao are fixed presets). */
static const char *parse_hmac(sig_cfg_t *c, const sig_options_t *o)
{
    if (!o->header || !valid_header_name(o->header))
        return "hmac needs option header: a header name of 1 to 64 token characters";
    memcpy(c->header, o->header, strlen(o->header) + 1);
    if (!set_digest(c, o->algorithm ? o->algorithm : "sha256"))
        return "hmac algorithm must be sha1, sha256 or sha512";
    if (!o->encoding || strcmp(o->encoding, "hex") == 0)
        c->enc = ENC_HEX;
    else if (strcmp(o->encoding, "base64") == 0)
        c->enc = ENC_BASE64;
    else
        return "hmac encoding must be hex or base64";
    if (o->prefix) {
        if (!valid_prefix(o->prefix))
            return "hmac prefix must be at most 32 printable characters";
        c->prefix_len = strlen(o->prefix);
        memcpy(c->prefix, o->prefix, c->prefix_len + 1);
    }
    return NULL;
}

static const char *parse_standard(sig_cfg_t *c, const char *secret,
                                  const sig_options_t *o)
{
    unsigned char key[SIG_STD_KEY_MAX];
    span_t b64;
    long n;
    const char *err;

    if (o->tolerance_s < 0 || o->tolerance_s > SIG_MAX_TOLERANCE)
        return "standard tolerance must be 1 to 86400 seconds";
    c->tolerance_s = o->tolerance_s ? o->tolerance_s : SIG_DEFAULT_TOLERANCE;
    if (strncmp(secret, "whsec_", 6) != 0)
        return "standard secret must start with whsec_";
    b64.p = secret + 6;
    b64.n = strlen(b64.p);
    n = b64_decode(b64, key, sizeof(key));
    if (n < 0)
        return "standard secret after whsec_ must be base64 of at most 128 bytes";
    if (n < SIG_STD_KEY_MIN) {
        OPENSSL_cleanse(key, sizeof(key));
        return "standard secret must decode to at least 16 bytes";
    }
    c->mac_len = STD_MAC_LEN;
    c->digest = "SHA256";
    err = set_key(c, key, (size_t)n);
    OPENSSL_cleanse(key, sizeof(key));
    return err;
}

/* Refuses options that do not apply to c->kind. */
static const char *check_applicable(sig_kind_t kind, const sig_options_t *o)
{
    if (kind != SIG_KIND_HMAC &&
        (o->header || o->algorithm || o->encoding || o->prefix))
        return "header, algorithm, encoding and prefix apply only to kind hmac";
    if (kind != SIG_KIND_STANDARD && o->tolerance_s)
        return "tolerance applies only to kind standard";
    return NULL;
}

static const char *parse_kind(sig_cfg_t *c, const char *kind,
                              const char *secret, const sig_options_t *o)
{
    static const sig_options_t github = { "X-Hub-Signature-256", "sha256",
                                          "hex", "sha256=", 0 };
    static const sig_options_t kakao = { "X-Kakao-Signature", "sha256",
                                         "hex", NULL, 0 };
    size_t k, slen = secret ? strlen(secret) : 0;
    const char *err;

    for (k = 0; k < sizeof(kind_names) / sizeof(kind_names[0]); k++)
        if (strcmp(kind, kind_names[k]) == 0)
            break;
    if (k == sizeof(kind_names) / sizeof(kind_names[0]))
        return "unknown kind: want none, github, standard, hmac or kakao";
    c->kind = (sig_kind_t)k;
    if ((err = check_applicable(c->kind, o)))
        return err;
    if (c->kind == SIG_KIND_NONE)
        return slen ? "kind none takes no secret" : NULL;
    if (slen == 0 || slen > SIG_SECRET_MAX)
        return "a secret of 1 to 1024 bytes is required";
    if (!(c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)))
        return "HMAC unavailable in OpenSSL";
    switch (c->kind) {
    case SIG_KIND_STANDARD:
        return parse_standard(c, secret, o);
    case SIG_KIND_GITHUB:
        err = parse_hmac(c, &github);
        break;
    case SIG_KIND_KAKAO:
        err = parse_hmac(c, &kakao);
        break;
    default:
        err = parse_hmac(c, o);
    }
    return err ? err : set_key(c, secret, slen);
}

sig_cfg_t *sig_cfg_parse(const char *kind, const char *secret,
                         const sig_options_t *opts, const char **err)
{
    static const sig_options_t defaults;
    sig_cfg_t *c;
    const char *why = "out of memory";

    if (!kind) {
        why = "kind is required";
        goto fail;
    }
    ERR_set_mark();
    c = calloc(1, sizeof(*c));
    if (c && !(why = parse_kind(c, kind, secret, opts ? opts : &defaults))) {
        ERR_pop_to_mark();
        return c;
    }
    sig_cfg_free(c);
    ERR_pop_to_mark();
fail:
    if (err)
        *err = why;
    return NULL;
}

void sig_cfg_free(sig_cfg_t *cfg)
{
    if (!cfg)
        return;
    OPENSSL_clear_free(cfg->key, cfg->key_len);
    EVP_MAC_free(cfg->mac);
    OPENSSL_cleanse(cfg, sizeof(*cfg));
    free(cfg);
}

/* ---- verification ------------------------------------------------------ */

/* The header's value without surrounding spaces/tabs; p is NULL when absent. */
static span_t header(sig_header_fn get, void *ctx, const char *name)
{
    span_t s = { NULL, 0 };

    s.p = get(ctx, name, &s.n);
    if (!s.p)
        return s;
    while (s.n && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.n--;
    }
    while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

/* HMAC of the concatenated parts with cfg's key and digest into out
 * (cfg->mac_len bytes). */
static sig_result_t mac_parts(const sig_cfg_t *c, const span_t *parts,
                              size_t n, unsigned char out[MAC_MAX])
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                         (char *)c->digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(c->mac);
    sig_result_t rc = SIG_ENOMEM;
    size_t i, olen = 0;

    if (!ctx || !EVP_MAC_init(ctx, c->key, c->key_len, params))
        goto out;
    for (i = 0; i < n; i++)
        if (!EVP_MAC_update(ctx, (const unsigned char *)parts[i].p,
                            parts[i].n))
            goto out;
    if (EVP_MAC_final(ctx, out, &olen, MAC_MAX) && olen == c->mac_len)
        rc = SIG_OK;
out:
    EVP_MAC_CTX_free(ctx);
    return rc;
}

static sig_result_t verify_hmac(const sig_cfg_t *c, sig_header_fn get,
                                void *ctx, span_t body)
{
    unsigned char want[MAC_MAX], got[MAC_MAX];
    span_t v = header(get, ctx, c->header);
    sig_result_t rc;

    if (!v.p || v.n == 0)
        return SIG_EMISSING;
    if (v.n < c->prefix_len || memcmp(v.p, c->prefix, c->prefix_len) != 0)
        return SIG_EMALFORMED;
    v.p += c->prefix_len;
    v.n -= c->prefix_len;
    if (!mac_decode(c->enc, v, got, c->mac_len))
        return SIG_EMALFORMED;
    if ((rc = mac_parts(c, &body, 1, want)) == SIG_OK)
        rc = CRYPTO_memcmp(want, got, c->mac_len) == 0 ? SIG_OK
                                                        : SIG_EMISMATCH;
    OPENSSL_cleanse(want, sizeof(want));
    return rc;
}

static bool valid_id(span_t id)
{
    size_t i;

    if (id.n == 0 || id.n > SIG_ID_MAX)
        return false;
    for (i = 0; i < id.n; i++)
        if (id.p[i] < 0x21 || id.p[i] > 0x7e)
            return false;
    return true;
}

/* Seconds since the epoch: 1..TS_DIGITS_MAX decimal digits, nothing else. */
static bool parse_ts(span_t s, int64_t *ts)
{
    size_t i;

    *ts = 0;
    if (s.n == 0 || s.n > TS_DIGITS_MAX)
        return false;
    for (i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
        *ts = *ts * 10 + (s.p[i] - '0');
    }
    return true;
}

/*
 * Walks the space-separated "version,signature" entries of a
 * webhook-signature value. Entries of other versions are ignored; a v1
 * entry that does not decode to 32 bytes counts as malformed. SIG_OK on
 * the first match, else SIG_EMISMATCH when some v1 entry was well formed,
 * else SIG_EMALFORMED.
 */
static sig_result_t match_entries(span_t list, const unsigned char *want)
{
    unsigned char got[MAC_MAX];
    size_t i = 0, entries = 0;
    bool well_formed = false;

    while (i < list.n) {
        span_t e = { list.p + i, 0 };

        while (i < list.n && list.p[i] != ' ') {
            i++;
            e.n++;
        }
        i++;
        if (e.n == 0)
            continue;
        if (++entries > SIG_MAX_ENTRIES)
            return SIG_EMALFORMED;
        if (e.n < 3 || memcmp(e.p, "v1,", 3) != 0)
            continue;
        e.p += 3;
        e.n -= 3;
        if (!mac_decode(ENC_BASE64, e, got, STD_MAC_LEN))
            continue;
        well_formed = true;
        if (CRYPTO_memcmp(want, got, STD_MAC_LEN) == 0)
            return SIG_OK;
    }
    return well_formed ? SIG_EMISMATCH : SIG_EMALFORMED;
}

static sig_result_t verify_standard(const sig_cfg_t *c, sig_header_fn get,
                                    void *ctx, span_t body, int64_t now,
                                    sig_info_t *info)
{
    span_t id = header(get, ctx, "webhook-id");
    span_t ts = header(get, ctx, "webhook-timestamp");
    span_t sigs = header(get, ctx, "webhook-signature");
    unsigned char want[MAC_MAX];
    int64_t t;
    sig_result_t rc;

    if (!id.p || !ts.p || !sigs.p || !id.n || !ts.n || !sigs.n)
        return SIG_EMISSING;
    if (!valid_id(id) || !parse_ts(ts, &t))
        return SIG_EMALFORMED;
    if ((t >= now ? t - now : now - t) > c->tolerance_s)
        return SIG_ESTALE;
    {
        span_t parts[] = { id, { ".", 1 }, ts, { ".", 1 }, body };

        rc = mac_parts(c, parts, sizeof(parts) / sizeof(parts[0]), want);
    }
    if (rc == SIG_OK)
        rc = match_entries(sigs, want);
    OPENSSL_cleanse(want, sizeof(want));
    if (rc == SIG_OK && info) {
        memcpy(info->id, id.p, id.n);
        info->id[id.n] = 0;
        info->id_len = id.n;
        info->timestamp = t;
    }
    return rc;
}

sig_result_t sig_verify(const sig_cfg_t *cfg, sig_header_fn get, void *ctx,
                        const void *body, size_t len, int64_t now_s,
                        sig_info_t *info)
{
    span_t b = { body, len };
    sig_result_t rc;

    assert(cfg && get && (body || len == 0) && now_s >= 0);
    if (info)
        memset(info, 0, sizeof(*info));
    if (cfg->kind == SIG_KIND_NONE)
        return SIG_OK;
    ERR_set_mark();
    if (cfg->kind == SIG_KIND_STANDARD)
        rc = verify_standard(cfg, get, ctx, b, now_s, info);
    else
        rc = verify_hmac(cfg, get, ctx, b);
    ERR_pop_to_mark();
    return rc;
}
