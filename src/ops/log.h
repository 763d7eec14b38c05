/*
 * log.h - structured one-line JSON logs on stderr.
 *
 *   {"ts":"2026-11-22T03:00:00.000Z","level":"info","msg":"listening",
 *    "port":8080}
 *
 * LOG_INFO(...) and friends test the level before evaluating any argument,
 * so a disabled level costs one comparison. Fields are passed as a
 * printf-style fragment of JSON members without braces; string values that
 * come from outside must go through log_str(), which escapes them. A line
 * is written with one write(2), so lines from different threads never
 * interleave. Never pass a secret (key, token, signature) to a log call.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

extern int log_min_level;

/* "debug" | "info" | "warn" | "error" -> level; -1 when unknown. */
int log_level_parse(const char *s);
void log_set_level(int level);

/* msg is a plain literal; fields_fmt a JSON member list ("\"k\":%d") or "". */
void log_write(int level, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Escapes s (len bytes, or strlen when len == (size_t)-1) into a JSON
 * string body without quotes, in a thread-local ring of buffers, truncated
 * to 200 bytes; valid until 8 more log_str calls on this thread. */
const char *log_str(const char *s, size_t len);

#define LOG_AT(lvl, msg, ...) \
    do { if ((lvl) >= log_min_level) log_write((lvl), (msg), __VA_ARGS__); } while (0)
#define LOG_DEBUG(msg, ...) LOG_AT(LOG_LEVEL_DEBUG, msg, __VA_ARGS__)
#define LOG_INFO(msg, ...) LOG_AT(LOG_LEVEL_INFO, msg, __VA_ARGS__)
#define LOG_WARN(msg, ...) LOG_AT(LOG_LEVEL_WARN, msg, __VA_ARGS__)
#define LOG_ERROR(msg, ...) LOG_AT(LOG_LEVEL_ERROR, msg, __VA_ARGS__)

#endif
