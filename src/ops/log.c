/*
 * log.c - JSON log lines. See log.h.
 */
#include "ops/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/clock.h"

int log_min_level = LOG_LEVEL_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return LOG_LEVEL_WARN;
    return -1;
}

void log_set_level(int level) { log_min_level = level; }

void log_write(int level, const char *msg, const char *fields_fmt, ...)
{
    char line[2048], when[CLOCK_ISO_LEN + 1];
    size_t n;
    int w;
    va_list ap;

    clock_iso8601(clock_now_ms(), when);
    w = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"",
                 when, level_names[level & 3], msg);
    n = w < 0 ? 0 : (size_t)w;
    if (fields_fmt[0] && n < sizeof line - 2) {
        va_start(ap, fields_fmt);
        w = vsnprintf(line + n + 1, sizeof line - n - 1, fields_fmt, ap);
        va_end(ap);
        if (w > 0) {
            line[n] = ',';
            n += 1 + (size_t)w;
        }
    }
    if (n > sizeof line - 3)
        n = sizeof line - 3;     /* truncated: still one line, still a line */
    line[n++] = '}';
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}

const char *log_str(const char *s, size_t len)
{
    static _Thread_local char ring[8][256];
    static _Thread_local unsigned next;
    char *out = ring[next++ & 7];
    size_t o = 0;

    if (!s)
        return "";
    if (len == (size_t)-1)
        len = strlen(s);
    for (size_t i = 0; i < len && o < 200; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, 7, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}
