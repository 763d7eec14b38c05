/*
 * json.c - JSON escaping, validation and minifying. See json.h.
 */
#include "core/json.h"

#include <string.h>

#include <jansson.h>

int json_append_str(buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    int rc;

    if ((rc = buf_reserve(b, len + 2)))
        return rc;
    buf_append_byte(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if ((rc = buf_append(b, s + run, i - run)))
            return rc;
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            n = 6;
        }
        if ((rc = buf_append(b, esc, n)))
            return rc;
    }
    if ((rc = buf_append(b, s + run, len - run)))
        return rc;
    return buf_append_byte(b, '"');
}

bool json_valid(const void *p, size_t len)
{
    json_error_t err;
    json_t *v = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

    if (!v)
        return false;
    json_decref(v);
    return true;
}

int json_append_minified(buf_t *b, const char *p, size_t len)
{
    size_t i = 0, run = 0;
    int rc;

    if ((rc = buf_reserve(b, len)))
        return rc;
    while (i < len) {
        char c = p[i];
        if (c == '"') {
            for (i++; i < len && p[i] != '"'; i++)
                if (p[i] == '\\')
                    i++;
            i++;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if ((rc = buf_append(b, p + run, i - run)))
                return rc;
            while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' ||
                               p[i] == '\r'))
                i++;
            run = i;
        } else {
            i++;
        }
    }
    if (i > len)
        i = len;
    return buf_append(b, p + run, i - run);
}

static size_t skip_ws(const char *p, size_t len, size_t i)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* Index just past the string starting at p[i] == '"'. */
static size_t skip_string(const char *p, size_t len, size_t i)
{
    for (i++; i < len && p[i] != '"'; i++)
        if (p[i] == '\\')
            i++;
    return i < len ? i + 1 : len;
}

/* Index just past the value starting at p[i] (valid JSON assumed). */
static size_t skip_value(const char *p, size_t len, size_t i)
{
    int depth = 0;

    if (i >= len)
        return len;
    if (p[i] == '"')
        return skip_string(p, len, i);
    if (p[i] != '{' && p[i] != '[') {
        while (i < len && p[i] != ',' && p[i] != '}' && p[i] != ']' && p[i] != ' ' &&
               p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
            i++;
        return i;
    }
    for (; i < len; i++) {
        if (p[i] == '"') {
            i = skip_string(p, len, i) - 1;
        } else if (p[i] == '{' || p[i] == '[') {
            depth++;
        } else if (p[i] == '}' || p[i] == ']') {
            if (--depth == 0)
                return i + 1;
        }
    }
    return len;
}

bool json_member_span(const char *p, size_t len, const char *key, size_t *off,
                      size_t *vlen)
{
    size_t klen = strlen(key), i = skip_ws(p, len, 0);

    if (i >= len || p[i] != '{')
        return false;
    i = skip_ws(p, len, i + 1);
    while (i < len && p[i] == '"') {
        size_t kend = skip_string(p, len, i), vstart;
        bool hit = kend - i - 2 == klen && memcmp(p + i + 1, key, klen) == 0;
        i = skip_ws(p, len, kend);
        if (i >= len || p[i] != ':')
            return false;
        vstart = skip_ws(p, len, i + 1);
        i = skip_value(p, len, vstart);
        if (hit) {
            *off = vstart;
            *vlen = i - vstart;
            return true;
        }
        i = skip_ws(p, len, i);
        if (i < len && p[i] == ',')
            i = skip_ws(p, len, i + 1);
    }
    return false;
}
