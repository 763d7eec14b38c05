/*
 * subject.h - subject names and patterns, NATS semantics.
 *
 * A subject is 1..SUBJ_MAX_TOKENS tokens joined by '.', at most SUBJ_MAX_LEN
 * bytes. A token is 1..SUBJ_MAX_TOKEN_LEN bytes, each an ASCII letter, a
 * digit, or one of '_' '-' ':' '@' '~' (a subset of what NATS allows, so
 * every Switchboard subject is a valid NATS subject and survives URLs, SQL
 * and JSON untouched). In a pattern a token may
 * also be '*' (exactly one token) or, as the last token only, '>' (one or
 * more tokens). Matching is case-sensitive and byte-wise.
 */
#ifndef SB_SUBJECT_H
#define SB_SUBJECT_H

#include <stdbool.h>
#include <stddef.h>

#define SUBJ_MAX_LEN 255
#define SUBJ_MAX_TOKENS 16
#define SUBJ_MAX_TOKEN_LEN 128

/* True for a valid literal subject (no wildcards). */
bool subj_valid_subject(const char *s, size_t len);
/* True for a valid pattern (literal tokens, '*' tokens, a final '>'). */
bool subj_valid_pattern(const char *s, size_t len);
/* True when subject (a valid literal) matches pattern (a valid pattern). */
bool subj_match(const char *pattern, size_t plen, const char *subject,
                size_t slen);
/* True when every subject matched by `inner` is matched by `outer`
 * (e.g. "webhooks.>" covers "webhooks.github.*"). Both valid patterns. */
bool subj_covers(const char *outer, size_t olen, const char *inner,
                 size_t ilen);
/* Writes a valid token made from arbitrary bytes into out: allowed bytes
 * are kept, every other byte (including '.') becomes '_', the result is
 * truncated to min(cap - 1, SUBJ_MAX_TOKEN_LEN) bytes and NUL-terminated.
 * Returns its length; 0 when in is empty (callers treat that as invalid). */
size_t subj_sanitize_token(const char *in, size_t len, char *out, size_t cap);

#endif
