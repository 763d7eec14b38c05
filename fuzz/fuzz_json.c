/*
 * fuzz_json.c - the hand-written JSON helpers and time parsing against
 * jansson as the oracle.
 *
 * For any input jansson accepts as an object: json_member_span("data")
 * must find exactly the member jansson finds, and its raw text must parse
 * to an equal value; json_append_minified must produce text that parses
 * to a value equal to the input. json_append_str output must parse back
 * to the same string. clock_parse_rfc3339 must never read out of bounds
 * and must round-trip what clock_iso8601 writes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/utf8.h"

static void check_span(const char *p, size_t len, json_t *root)
{
    size_t off, vlen;
    json_t *want = json_object_get(root, "data"), *got;
    json_error_t err;

    if (!json_member_span(p, len, "data", &off, &vlen)) {
        /* only allowed when the key is spelled with escapes, or absent */
        if (want && memmem(p, len, "\"data\"", 6))
            abort();
        return;
    }
    if (!want || off + vlen > len)
        abort();
    got = json_loadb(p + off, vlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    /* a duplicated "data" key: jansson keeps the last, we find the first */
    if (!got)
        abort();
    json_decref(got);
}

static void check_minify(const char *p, size_t len, json_t *root)
{
    buf_t b;
    json_error_t err;
    json_t *again;

    buf_init(&b, len + 16);
    if (json_append_minified(&b, p, len))
        abort();
    again = json_loadb(b.data ? b.data : "", b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!again || !json_equal(again, root))
        abort();
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] == '\n')
            abort();
    json_decref(again);
    buf_free(&b);
}

static void check_escape(const char *p, size_t len)
{
    buf_t b;
    json_error_t err;
    json_t *s;

    if (!utf8_valid(p, len))
        return;
    buf_init(&b, len * 6 + 16);
    if (json_append_str(&b, p, len))
        abort();
    s = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!s || json_string_length(s) != len || memcmp(json_string_value(s), p, len))
        abort();
    json_decref(s);
    buf_free(&b);
}

static void check_time(const char *p, size_t len)
{
    int64_t ms;
    char iso[CLOCK_ISO_LEN + 1];

    if (clock_parse_rfc3339(p, len, &ms) != 0 || ms < 0 || ms > 253402300799999LL)
        return;
    clock_iso8601(ms, iso);
    {
        int64_t back;
        if (clock_parse_rfc3339(iso, CLOCK_ISO_LEN, &back) != 0 || back != ms)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    json_error_t err;
    json_t *root = json_loadb(p, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

    if (root) {
        if (json_is_object(root))
            check_span(p, size, root);
        check_minify(p, size, root);
        json_decref(root);
    }
    check_escape(p, size);
    check_time(p, size);
    return 0;
}
