/*
 * replay.h - replay protection for Standard Webhooks: a bounded memory of
 * the (source, webhook-id, webhook-timestamp) triples already accepted.
 *
 * Why a triple. A signed Standard Webhooks request is valid for its
 * timestamp's tolerance window (auth/sig.h); whoever captures one can send
 * it again, byte for byte, until the window closes. A sender's own retry
 * is different: it carries the same webhook-id but a new timestamp and a
 * new signature. So the exact triple is refused a second time (a replay),
 * while a retry passes and is stored once by the store's delivery-id
 * dedupe (edge/webhook.c).
 *
 * Lifetime of an entry. sig_verify accepts a timestamp only within
 * tolerance of now, both ways, so a triple first seen at time t can be
 * presented again with a valid signature until at most t + 2 x tolerance:
 * entries are kept that long (at least; see replay.c), then forgotten.
 *
 * Memory is bounded: at most `capacity` entries (24 bytes each, plus an
 * index of 8 bytes per entry), allocated at replay_new. When full, the
 * oldest entry is evicted even if it has not expired yet; such evictions
 * are counted (replay_stats) because each reopens a window for a replay of
 * that one message. Size the capacity above the number of Standard
 * Webhooks deliveries expected in 2 x tolerance.
 *
 * Entries are 128-bit fingerprints of the triple made with two SipHash
 * keys drawn at random per table: nobody outside the process can aim
 * inputs at one bucket or at one fingerprint, and two different triples
 * share a fingerprint with probability about n / 2^128.
 *
 * Thread-safe: one mutex per table, held for one hash lookup and insert.
 */
#ifndef SB_AUTH_REPLAY_H
#define SB_AUTH_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPLAY_DEFAULT_CAPACITY 100000
#define REPLAY_MAX_CAPACITY (1u << 24)
#define REPLAY_SOURCE_MAX 128          /* bytes of a source name */
#define REPLAY_ID_MAX 256              /* bytes of a webhook-id */
#define REPLAY_MAX_TOLERANCE 86400     /* seconds */

typedef struct replay replay_t;

typedef struct replay_stats {          /* a snapshot */
    size_t capacity;
    size_t entries;                    /* currently remembered */
    uint64_t evicted_live;             /* evicted before they expired */
} replay_stats_t;

/* A table for at most capacity (1..REPLAY_MAX_CAPACITY) entries, for
 * timestamps checked with tolerance_s (1..REPLAY_MAX_TOLERANCE) seconds.
 * NULL on bad arguments, without memory, or when the RNG cannot seed the
 * keys. Free with replay_free. */
replay_t *replay_new(size_t capacity, int64_t tolerance_s);

/* Frees r (NULL is fine). No other call may be running on r. */
void replay_free(replay_t *r);

/*
 * Whether the triple (source NUL-terminated, id of id_len bytes, ts) was
 * recorded within the last 2 x tolerance seconds: true means a replay, to
 * be refused (nothing is recorded). Otherwise it records the triple at
 * now_s (seconds, the clock sig_verify was given) and returns false.
 * source must be 1..REPLAY_SOURCE_MAX bytes and id 1..REPLAY_ID_MAX
 * (what sig_verify hands back); anything else is a caller bug and is
 * answered true (fail closed).
 */
bool replay_seen(replay_t *r, const char *source, const char *id,
                 size_t id_len, int64_t ts, int64_t now_s);

void replay_stats(replay_t *r, replay_stats_t *out);

#endif
