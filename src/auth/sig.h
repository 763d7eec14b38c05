/*
 * sig.h - webhook signature verification, one configuration per webhook
 * source.
 *
 * Kinds:
 *   none      no check (an explicit choice, never a default).
 *   github    X-Hub-Signature-256: "sha256=" + hex HMAC-SHA256(secret, body).
 *   standard  Standard Webhooks (standardwebhooks.com): headers webhook-id,
 *             webhook-timestamp, webhook-signature; secret "whsec_" +
 *             base64 of the key; MAC = base64 HMAC-SHA256 over
 *             "{id}.{timestamp}.{body}"; the signature header is a
 *             space-separated list of "v1,<base64>" (any one match passes;
 *             other versions are ignored); the timestamp must be within the
 *             tolerance (default 300 s) of now, both ways.
 *   hmac      a configurable header, algorithm (sha1, sha256, sha512),
 *             encoding (hex, base64) and literal prefix (e.g. "sha256=").
 *   kakao     as kakao-relay's middleware does it: X-Kakao-Signature, hex
 *             HMAC-SHA256(KAKAO_SIGNATURE_SECRET, body), no prefix.
 *
 * The presented signature is decoded to raw MAC bytes (hex in either case;
 * base64 canonical and padded), its length checked against the MAC length,
 * and the bytes compared with CRYPTO_memcmp, so the comparison time depends
 * on nothing but the MAC length. Replay protection (remembering Standard
 * Webhooks ids) is the caller's: sig_verify hands the id back.
 *
 * A configuration is immutable once parsed and may be shared by any number
 * of threads. Nothing here logs; secrets and keys are never printed and are
 * wiped when the configuration is freed.
 */
#ifndef SB_AUTH_SIG_H
#define SB_AUTH_SIG_H

#include <stddef.h>
#include <stdint.h>

#define SIG_SECRET_MAX 1024          /* bytes of a configured secret */
#define SIG_STD_KEY_MIN 16           /* bytes of a decoded whsec_ key */
#define SIG_STD_KEY_MAX 128
#define SIG_HEADER_MAX 64            /* hmac: header name */
#define SIG_PREFIX_MAX 32            /* hmac: signature prefix */
#define SIG_DEFAULT_TOLERANCE 300    /* seconds */
#define SIG_MAX_TOLERANCE 86400
#define SIG_ID_MAX 256               /* bytes of a webhook-id */
#define SIG_MAX_ENTRIES 16           /* entries in webhook-signature */

typedef enum sig_kind {
    SIG_KIND_NONE,
    SIG_KIND_GITHUB,
    SIG_KIND_STANDARD,
    SIG_KIND_HMAC,
    SIG_KIND_KAKAO,
} sig_kind_t;

typedef enum sig_result {
    SIG_OK = 0,
    SIG_EMISSING,       /* a required header is absent or empty */
    SIG_EMALFORMED,     /* wrong prefix, bad hex/base64, wrong length, bad
                           id or timestamp, no usable v1 entry */
    SIG_EMISMATCH,      /* well-formed, but no signature matches */
    SIG_ESTALE,         /* timestamp outside the tolerance */
    SIG_ENOMEM,         /* out of memory (or the MAC could not be computed) */
} sig_result_t;

/* Constant English texts; never NULL, never a secret. */
const char *sig_strerror(sig_result_t r);
const char *sig_kind_name(sig_kind_t kind);

/* Per-kind options; NULL / 0 fields take their defaults. An option given
 * to a kind it does not apply to is refused, so typos in config surface. */
typedef struct sig_options {
    const char *header;     /* hmac (required): the signature header */
    const char *algorithm;  /* hmac: "sha1", "sha256" (default), "sha512" */
    const char *encoding;   /* hmac: "hex" (default) or "base64" */
    const char *prefix;     /* hmac: literal text before the MAC; default none */
    int64_t tolerance_s;    /* standard: 1..SIG_MAX_TOLERANCE; 0: 300 */
} sig_options_t;

typedef struct sig_cfg sig_cfg_t;   /* opaque */

/*
 * Builds a verifier for kind ("none", "github", "standard", "hmac",
 * "kakao"). secret is required for every kind but none (which refuses
 * one); it is 1..SIG_SECRET_MAX bytes, copied, and for standard must be
 * "whsec_" + base64 of SIG_STD_KEY_MIN..SIG_STD_KEY_MAX bytes. opts may be
 * NULL. Returns the configuration (free with sig_cfg_free), or NULL with a
 * constant English reason in *err (when err is not NULL); the reason never
 * contains the secret.
 */
sig_cfg_t *sig_cfg_parse(const char *kind, const char *secret,
                         const sig_options_t *opts, const char **err);
/* Wipes and frees cfg. NULL is a no-op. */
void sig_cfg_free(sig_cfg_t *cfg);
sig_kind_t sig_cfg_kind(const sig_cfg_t *cfg);

/*
 * Header lookup supplied by the caller: returns the value of header `name`
 * (matched case-insensitively; the first occurrence) and its length in
 * *len, or NULL when absent. The value need not be NUL-terminated and must
 * stay valid until sig_verify returns. Names asked for: the kind's header
 * as spelled above (e.g. "X-Hub-Signature-256"), or "webhook-id",
 * "webhook-timestamp", "webhook-signature".
 */
typedef const char *(*sig_header_fn)(void *ctx, const char *name,
                                     size_t *len);

/* What a verification learnt; filled on SIG_OK, zeroed otherwise. */
typedef struct sig_info {
    char id[SIG_ID_MAX + 1];    /* standard: webhook-id, NUL-terminated
                                   (printable ASCII); "" for other kinds */
    size_t id_len;
    int64_t timestamp;          /* standard: webhook-timestamp; else 0 */
} sig_info_t;

/*
 * Checks the signature of body (len bytes, the raw request body) against
 * cfg. now_s (>= 0) is the current time in seconds (for standard). Header
 * values are trimmed of surrounding spaces and tabs. info may be NULL.
 * Thread-safe; leaves the thread's OpenSSL error queue as it found it.
 */
sig_result_t sig_verify(const sig_cfg_t *cfg, sig_header_fn get, void *ctx,
                        const void *body, size_t len, int64_t now_s,
                        sig_info_t *info);

#endif
