/*
 * utf8.h - strict UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), whole-buffer and incremental.
 *
 * The incremental form lets the WebSocket reader validate a fragmented text
 * message as its frames arrive and fail fast, without waiting for the end.
 */
#ifndef SB_UTF8_H
#define SB_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_ACCEPT 0u
#define UTF8_REJECT 12u

bool utf8_valid(const void *p, size_t len);
/* Valid UTF-8 without C0 control characters or DEL: text a client may
 * name things with (event types, key names). */
bool utf8_printable(const void *p, size_t len);
/* Feeds bytes into *state (start with UTF8_ACCEPT). Returns the new state:
 * UTF8_REJECT once invalid (sticky), UTF8_ACCEPT at a code point boundary,
 * anything else in the middle of a sequence. */
uint32_t utf8_feed(uint32_t state, const void *p, size_t len);

#endif
