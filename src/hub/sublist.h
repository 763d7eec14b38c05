/*
 * sublist.h - a subscription index: subject patterns -> items, matched
 * against literal subjects in time proportional to the subject's tokens
 * (plus the matches), not to the number of subscriptions.
 *
 * A trie keyed by token, with a '*' child and a '>' item list per node,
 * as NATS does it. Not thread-safe: each loop owns one. The same (pattern,
 * item) pair may be inserted twice and is then matched twice; remove takes
 * one of them out.
 */
#ifndef SB_SUBLIST_H
#define SB_SUBLIST_H

#include <stddef.h>

typedef struct sublist sublist_t;

sublist_t *sublist_new(void);
void sublist_free(sublist_t *sl);    /* items are not freed */
/* pattern must be a valid subject pattern (subject.h). 0, or -1 on ENOMEM
 * or an invalid pattern; on -1 the index is unchanged. */
int sublist_insert(sublist_t *sl, const char *pattern, size_t len, void *item);
/* 0, or -1 when (pattern, item) was not present (or pattern is invalid).
 * Nodes left empty are freed. */
int sublist_remove(sublist_t *sl, const char *pattern, size_t len, void *item);
/* Calls cb(item, arg) once per (pattern, item) matching subject (a valid
 * literal), in no particular order; never allocates. An empty subject or
 * one of more than SUBJ_MAX_TOKENS tokens matches nothing. cb must not
 * insert into or remove from sl. */
void sublist_match(sublist_t *sl, const char *subject, size_t len,
                   void (*cb)(void *item, void *arg), void *arg);
size_t sublist_count(const sublist_t *sl);

#endif
