/*
 * principal.h - who is making a request, and what they may do.
 *
 * Every edge asks the same questions of one object: a principal, made once
 * when a credential is checked (an API key by keys.c, a JWT by
 * principal_from_claims) and then shared, unchanged, by every request and
 * connection that presented that credential, on any loop thread. So a
 * principal is immutable once made and atomically refcounted: readers
 * need no lock, and a key's principal outlives a rotation or a reload for
 * as long as a connection holds it.
 *
 * Permissions (perm_t) are four lists plus a few flags:
 *   publish    subject patterns; a publish to a literal subject is allowed
 *              when some pattern matches it (subj_match);
 *   subscribe  subject patterns; a subscription to a pattern is allowed
 *              when some allowed pattern covers every subject it can match
 *              (subj_covers): "webhooks.>" allows "webhooks.github.>", the
 *              reverse is refused, ">" allows everything;
 *   history    the same rule, for replay and pull;
 *   events     allowed event types, see below; empty means any;
 *   admin      key management inside the principal's own tenant;
 *   rate       optional token bucket (per second, burst) for the principal;
 *   max_connections  optional cap on concurrent connections (0 = none).
 * Subjects and patterns are tenant-relative: the tenant is a separate
 * field and the hub prefixes it, so no pattern here can name another
 * tenant's subjects. superadmin (key management in every tenant) belongs to
 * the bootstrap key only; no spec, scope or claim can grant it.
 *
 * Event types. A type is 1..PERM_EVENT_MAX bytes of printable ASCII other
 * than space and '*' ("push", "pull_request.opened", "chat:message"). An
 * event pattern is one of
 *   "push"        exactly that type;
 *   "pull_request.*", "chat:*"
 *                 a prefix ending in '.' or ':' followed by '*': every type
 *                 that starts with the prefix and has at least one more
 *                 byte ("pull_request.opened", "pull_request.a.b"), not the
 *                 bare "pull_request";
 *   "*"           every type.
 * '*' is allowed nowhere else. With a non-empty events list, a message
 * without an event type is refused (the list is a whitelist; fail closed).
 *
 * The permission spec (API key creation, persisted key records) is JSON:
 *   {"publish":["webhooks.>"], "subscribe":[">"], "history":[">"],
 *    "admin":false, "events":["push"],
 *    "rate":{"per_second":10,"burst":20}, "max_connections":100}
 * Every member is optional (absent list = nothing allowed; absent rate or
 * max_connections = no limit); unknown members are refused, so a typo
 * never silently drops a restriction.
 *
 * JWT claims (principal_from_claims / principal_to_claims):
 *   "sub"              required: the principal's id;
 *   "tenant" or "tid"  the tenant (not both); the caller's default when
 *                      absent, an error when there is no default;
 *   "scope" or "scopes" (not both): a space-separated string or an array of
 *                      strings, each one of "publish:<pattern>",
 *                      "subscribe:<pattern>", "history:<pattern>",
 *                      "events:<event pattern>", "admin"; anything else is
 *                      an error (never silently ignored); absent = nothing;
 *   "rate", "max_connections"  optional, same syntax as in the spec;
 *   "exp"              when present (a number), the principal's expiry;
 *   "jti"              when a string of 1..PRINCIPAL_JTI_MAX bytes, kept
 *                      (jti) so that a connection can re-check whether the
 *                      token was revoked; otherwise ignored here.
 *
 * Nothing here logs or does I/O. Error texts are meant for API clients:
 * they echo the offending member name or pattern (truncated, unprintable
 * bytes as '?') and never anything else.
 */
#ifndef SB_AUTH_PRINCIPAL_H
#define SB_AUTH_PRINCIPAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define PRINCIPAL_TENANT_MAX 64    /* bytes of [A-Za-z0-9_-] */
#define PRINCIPAL_ID_MAX 128       /* bytes of printable ASCII, no space */
#define PRINCIPAL_JTI_MAX 64       /* bytes of a kept JWT "jti" */
#define PERM_LIST_MAX 64           /* patterns in one list */
#define PERM_EVENT_MAX 128         /* bytes of an event type or pattern */
#define PERM_SCOPES_MAX (4 * PERM_LIST_MAX + 1)  /* entries in a scope claim */
#define PERM_MAX_CONNECTIONS 1000000u
#define PERM_ERR_LEN 160           /* an error buffer that never truncates */

/* Return codes of the functions that build things (negative) */
#define PERM_EINVAL (-1)           /* bad spec or claims: err says why */
#define PERM_ENOMEM (-2)

typedef enum principal_kind {
    PRINCIPAL_API_KEY = 1,
    PRINCIPAL_JWT,
    PRINCIPAL_BOOTSTRAP,           /* the first-start admin key */
} principal_kind_t;

typedef struct perm_pat {          /* one pattern, NUL-terminated too */
    char *s;
    size_t len;
} perm_pat_t;

typedef struct perm_list {         /* owned array of owned patterns */
    perm_pat_t *v;
    size_t n;
} perm_list_t;

typedef struct perm {              /* public; read-only inside a principal */
    perm_list_t publish, subscribe, history;
    perm_list_t events;            /* event patterns; empty = any */
    bool admin;
    double rate_per_s;             /* 0 = no limit of its own */
    uint32_t burst;                /* >= 1 when rate_per_s > 0 */
    uint32_t max_connections;      /* 0 = no cap */
} perm_t;

typedef struct principal {
    /* public, read-only: never changes after principal_new */
    principal_kind_t kind;
    char tenant[PRINCIPAL_TENANT_MAX + 1];
    size_t tenant_len;
    char id[PRINCIPAL_ID_MAX + 1];     /* key id or JWT "sub" */
    size_t id_len;
    perm_t perm;
    bool superadmin;
    int64_t expires_ms;                /* Unix ms; 0 = never */
    char jti[PRINCIPAL_JTI_MAX + 1];   /* JWT "jti", "" when none */
    /* private */
    atomic_int refs;
} principal_t;

/* --- permissions ---------------------------------------------------------- */

bool principal_valid_tenant(const char *s, size_t len);
bool principal_valid_id(const char *s, size_t len);
bool perm_valid_event_type(const char *s, size_t len);
bool perm_valid_event_pattern(const char *s, size_t len);
/* True when type (a valid type) matches pattern (a valid pattern). */
bool perm_event_match(const char *pattern, size_t plen, const char *type,
                      size_t tlen);

/*
 * Parses a permission spec (see above) into *out. spec NULL means no
 * permissions at all. Returns 0, the caller then owns *out (perm_free);
 * or PERM_EINVAL / PERM_ENOMEM with *out empty and a message in err (when
 * err is not NULL; PERM_ERR_LEN bytes always suffice).
 */
int perm_from_spec(const json_t *spec, perm_t *out, char *err,
                   size_t errcap);

/* The spec of p as a new JSON object (the caller decrefs it): the three
 * subject lists and "admin" always, "events", "rate" and
 * "max_connections" when set; perm_from_spec of it gives p back. NULL
 * without memory. */
json_t *perm_to_spec(const perm_t *p);

/* Frees the lists and leaves *p empty; an empty perm is fine. */
void perm_free(perm_t *p);

/* --- principals ----------------------------------------------------------- */

/*
 * A new principal with one reference. tenant and id must be valid
 * (principal_valid_*). On success it takes the contents of *perm and
 * leaves *perm empty; on failure (invalid tenant or id, no memory) it
 * returns NULL and *perm still belongs to the caller.
 */
principal_t *principal_new(principal_kind_t kind, const char *tenant,
                           size_t tenant_len, const char *id, size_t id_len,
                           perm_t *perm, bool superadmin, int64_t expires_ms);

/* Takes one more reference; returns p. Any thread. */
principal_t *principal_ref(principal_t *p);

/* Drops one reference; the last one frees p. NULL is a no-op. Any thread;
 * p must not be used by this holder afterwards. */
void principal_unref(principal_t *p);

/*
 * The checks. Each is thread-safe and allocation-free, takes inputs as
 * (pointer, length) and returns false for invalid input (a subject that is
 * not a valid literal, a pattern that is not a valid pattern, an event
 * type that is not valid). They check permissions only: expiry is
 * principal_expired, the tenant is the caller's namespace.
 *
 * principal_can_publish: subject is a literal; event_type NULL (or
 * type_len 0) means the message has none.
 */
bool principal_can_publish(const principal_t *p, const char *subject,
                           size_t slen, const char *event_type,
                           size_t type_len);
bool principal_can_subscribe(const principal_t *p, const char *pattern,
                             size_t plen);
bool principal_can_history(const principal_t *p, const char *pattern,
                           size_t plen);
/* Whether a message of this event type (NULL = none) may reach p. */
bool principal_event_allowed(const principal_t *p, const char *event_type,
                             size_t type_len);
/* Key management in tenant: superadmin, or admin of that very tenant. */
bool principal_can_admin(const principal_t *p, const char *tenant,
                         size_t tenant_len);
bool principal_expired(const principal_t *p, int64_t now_ms);

/*
 * A principal (kind PRINCIPAL_JWT) from verified JWT claims, as described
 * above. default_tenant (NUL-terminated, may be NULL) is used when the
 * claims name no tenant. Returns 0 and *out (one reference), or
 * PERM_EINVAL / PERM_ENOMEM with *out NULL and a message in err.
 * The claims' signature and times must already have been checked
 * (jwt_verify): this only reads them.
 */
int principal_from_claims(const json_t *claims, const char *default_tenant,
                          principal_t **out, char *err, size_t errcap);

/*
 * The claims that principal_from_claims turns back into the same tenant,
 * id and permissions: "sub", "tenant", "scope" (a space-separated string),
 * and "rate" / "max_connections" when set. The caller adds "iat", "exp"
 * (at most p->expires_ms) and "jti" before signing. superadmin is never
 * written: a token carries at most the tenant's admin scope. Returns a new
 * object, or NULL without memory.
 */
json_t *principal_to_claims(const principal_t *p);

#endif
