/*
 * json.h - the few JSON text operations the hot path needs without building
 * a jansson tree: string escaping into a buf_t, validation, and minifying
 * (whitespace removal that keeps every number and string byte-exact, so a
 * webhook payload is relayed exactly as its sender wrote it).
 *
 * Trees (requests, config) are jansson's job.
 */
#ifndef SB_JSON_H
#define SB_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

/* Appends s as a quoted JSON string. s must be valid UTF-8. */
int json_append_str(buf_t *b, const char *s, size_t len);
/* True when p holds exactly one JSON value (any type), per jansson. */
bool json_valid(const void *p, size_t len);
/* Appends p (which must be valid JSON) without insignificant white space. */
int json_append_minified(buf_t *b, const char *p, size_t len);

/* In p (a valid JSON object), finds the top-level member `key` and gives
 * the byte span of its raw value text. true when found. */
bool json_member_span(const char *p, size_t len, const char *key,
                      size_t *off, size_t *vlen);

#endif
