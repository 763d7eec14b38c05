/*
 * clock.h - wall-clock time in milliseconds and its ISO 8601 / RFC 3339 forms.
 *
 * Message times are Unix milliseconds (UTC). Text forms are always UTC with
 * millisecond precision, "2025-11-25T00:00:00.000Z", as the webhook-broker
 * API shows them.
 */
#ifndef SB_CLOCK_H
#define SB_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define CLOCK_ISO_LEN 24   /* "YYYY-MM-DDTHH:MM:SS.mmmZ" without NUL */

int64_t clock_now_ms(void);          /* CLOCK_REALTIME */
uint64_t clock_mono_ms(void);        /* CLOCK_MONOTONIC */
uint64_t clock_mono_ns(void);
/* Writes CLOCK_ISO_LEN chars plus NUL into out (at least 25 bytes). */
void clock_iso8601(int64_t ms, char *out);
/* Parses an RFC 3339 date-time ("Z" or +hh:mm offsets, optional fraction).
 * Returns 0 and sets *ms, or -1 when s is not such a time. */
int clock_parse_rfc3339(const char *s, size_t len, int64_t *ms);

#endif
