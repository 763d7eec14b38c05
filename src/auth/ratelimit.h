/*
 * ratelimit.h - token buckets and concurrent-connection counters keyed by a
 * string (an API key id, a client IP), shared by every loop thread.
 *
 * One table holds two kinds of entries under separate key spaces: token
 * buckets (rl_take) and connection counters (rl_conn_*). The same key may
 * have one of each.
 *
 * Token buckets. A bucket holds up to `burst` tokens and gains rate_per_s
 * tokens per second; a request takes one token. A bucket is created full
 * on first use. Counting is exact: tokens are fixed point (millionths), so
 * with the same now_ms the allowed requests of a key sum to exactly its
 * tokens whatever the threads. Time is whatever monotonic milliseconds the
 * caller passes (uv_now); a now_ms earlier than the bucket's last update
 * refills nothing (loops' clocks differ by a few ms, never a double refill).
 *
 * Limits and their meaning:
 *   - rate_per_s <= 0 (or NaN) means unlimited: rl_take returns true and
 *     records nothing (no entry, no memory). Rates below RL_RATE_MIN count
 *     as RL_RATE_MIN, above RL_RATE_MAX as RL_RATE_MAX;
 *   - burst 0 counts as 1 (a bucket that cannot hold one token would refuse
 *     everything), burst above RL_BURST_MAX as RL_BURST_MAX;
 *   - rate and burst are passed on every call, so a config change applies
 *     at once; a bucket above a lowered burst is cut down to it.
 *
 * Memory is bounded: at most max_keys buckets and max_keys connection
 * counters, allocated (lazily touched) at rl_new, about 250 bytes per key
 * of max_keys. The table is split into stripes (up to RL_STRIPES, each at
 * least 16 keys, one mutex each, cache-line aligned), max_keys divided
 * evenly among them; a key's stripe comes from a keyed hash (SipHash with a
 * random seed per table, so clients cannot aim many keys at one stripe or
 * one probe chain). A stripe that is full evicts even when others are not:
 * give max_keys some headroom over the keys you expect.
 *
 * Eviction. When a new key arrives at a stripe holding its share of
 * buckets, the bucket that is (or will be) full again soonest is evicted:
 * first any bucket that is already full again (idle: forgetting it loses
 * nothing), otherwise the one closest to full, whose reset gives away the
 * fewest tokens. Tradeoff: a flood of new keys (many source IPs) can only
 * reset a limited client after evicting every bucket of its stripe that is
 * nearer to full than the client's, and fresh flood buckets (one token
 * short) are always nearer, so the flood mostly evicts itself; but a table
 * that is too small for its traffic does forget depleted buckets, which
 * then start full. rl_stats counts both kinds of eviction so this shows.
 *
 * Connection counters. rl_conn_acquire counts one connection for a key if
 * fewer than `max` are counted; rl_conn_release uncounts one, and the entry
 * disappears at zero. Counters are never evicted (that would lose counts):
 * when a stripe already holds its share of counters, acquiring for a new
 * key is refused (fail closed) and counted in rl_stats.
 *
 * Keys are at most RL_KEY_MAX bytes (any bytes); a longer key is a caller
 * bug and is refused (rl_take false with *retry_after_ms 0, acquire false).
 * All functions but rl_new/rl_free are thread-safe; each locks one stripe
 * for a hash lookup and O(log n) heap work, never for anything slow.
 */
#ifndef SB_RATELIMIT_H
#define SB_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RL_KEY_MAX 64
#define RL_STRIPES 64
#define RL_MAX_KEYS (1u << 22)     /* largest max_keys rl_new accepts */
#define RL_RATE_MIN 0.001          /* tokens per second: one per 1000 s */
#define RL_RATE_MAX 1e6
#define RL_BURST_MAX 1000000000u

typedef struct rl_table rl_table_t;

typedef struct rl_stats {          /* a snapshot, summed over stripes */
    size_t max_keys;               /* as given to rl_new */
    size_t buckets;                /* live token buckets */
    size_t conn_keys;              /* keys with at least one connection */
    uint64_t evicted_idle;         /* buckets evicted while full again */
    uint64_t evicted_busy;         /* buckets evicted while not yet full */
    uint64_t conn_refused_full;    /* acquires refused: no room for a key */
} rl_stats_t;

/* A table for at most max_keys buckets and max_keys connection keys.
 * NULL when max_keys is 0 or above RL_MAX_KEYS, on allocation failure, or
 * when the RNG cannot seed the hash. Free with rl_free. */
rl_table_t *rl_new(size_t max_keys);

/* Frees t (NULL is fine). No other call may be running on t. */
void rl_free(rl_table_t *t);

/*
 * Takes one token from key's bucket. Returns true when the request is
 * allowed; false when it is limited, and then *retry_after_ms (when not
 * NULL) is the time from now_ms until one token is available (>= 1); it is
 * 0 when allowed. See above for rate 0, burst 0 and eviction.
 */
bool rl_take(rl_table_t *t, const char *key, size_t len, double rate_per_s,
             uint32_t burst, uint64_t now_ms, uint64_t *retry_after_ms);

/*
 * Whether key's bucket holds a token now, without taking one and without
 * creating a bucket: true for a key that has none (it would start full).
 * For limits that only count failures: peek before the attempt, take
 * after a failure. *retry_after_ms as rl_take.
 */
bool rl_peek(rl_table_t *t, const char *key, size_t len, double rate_per_s,
             uint32_t burst, uint64_t now_ms, uint64_t *retry_after_ms);
/*
 * Counts one more connection for key when fewer than max are counted and
 * returns true; false when key is at max, or when there is no room for a
 * new key (nothing counted). max == 0 means no cap: returns true and counts
 * nothing. Every true from a call with max > 0 must be paired with exactly
 * one rl_conn_release. (When a cap is switched on while connections that
 * were not counted are open, their releases undercount until they close.)
 */
bool rl_conn_acquire(rl_table_t *t, const char *key, size_t len,
                     uint32_t max);

/* Uncounts one connection of key; the entry is removed at zero. A key that
 * has no entry (never counted, or already at zero) is left alone. */
void rl_conn_release(rl_table_t *t, const char *key, size_t len);

/* Connections currently counted for key (0 when it has no entry). */
uint32_t rl_conn_count(rl_table_t *t, const char *key, size_t len);

/* Fills *out with counts for metrics and tests. */
void rl_stats(rl_table_t *t, rl_stats_t *out);

#endif
