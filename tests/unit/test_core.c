/*
 * test_core.c - buffers, time, UTF-8, JSON helpers and the message
 * envelope.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/msg.h"
#include "core/utf8.h"

static void test_buf_cap(void **state)
{
    buf_t b;

    buf_init(&b, 8);
    assert_int_equal(buf_append(&b, "12345678", 8), 0);
    assert_int_equal(buf_append(&b, "9", 1), BUF_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    buf_consume(&b, 3);
    assert_string_equal(b.data, "45678");
    assert_int_equal(buf_printf(&b, "%d", 123), 0);
    assert_string_equal(b.data, "45678123");
    assert_int_equal(buf_printf(&b, "%d", 4), BUF_ETOOBIG);
    buf_free(&b);
}

static void test_sbuf_refs(void **state)
{
    sbuf_t *s = sbuf_from("abc", 3);

    assert_non_null(s);
    assert_int_equal(s->len, 3);
    sbuf_ref(s);
    assert_int_equal(atomic_load(&s->refs), 2);
    sbuf_unref(s);
    sbuf_unref(s);          /* freed: ASan would report a double free */
}

static void test_iso8601(void **state)
{
    char out[CLOCK_ISO_LEN + 1];

    clock_iso8601(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    clock_iso8601(1764028800123LL, out);
    assert_string_equal(out, "2025-11-25T00:00:00.123Z");
}

static void test_rfc3339(void **state)
{
    int64_t ms;
    const char *bad[] = {"", "2025-11-25", "2025-11-25T00:00:00", "2025-13-01T00:00:00Z",
                         "2025-11-25T24:00:00Z", "2025-11-25T00:00:00.Z", "2025-11-25T00:00:00Zjunk",
                         "2025-11-25T00:00:00+0900", "abcd-ef-ghT00:00:00Z", NULL};

    assert_int_equal(clock_parse_rfc3339("2025-11-25T00:00:00Z", 20, &ms), 0);
    assert_int_equal(ms, 1764028800000LL);
    assert_int_equal(clock_parse_rfc3339("2025-11-25T00:00:00.5Z", 22, &ms), 0);
    assert_int_equal(ms, 1764028800500LL);
    assert_int_equal(clock_parse_rfc3339("2025-11-25T09:00:00+09:00", 25, &ms), 0);
    assert_int_equal(ms, 1764028800000LL);
    assert_int_equal(clock_parse_rfc3339("2025-11-24T23:00:00.000-01:00", 29, &ms), 0);
    assert_int_equal(ms, 1764028800000LL);
    for (int i = 0; bad[i]; i++)
        assert_int_equal(clock_parse_rfc3339(bad[i], strlen(bad[i]), &ms), -1);
}

static void test_utf8(void **state)
{
    assert_true(utf8_valid("", 0));
    assert_true(utf8_valid("h\xc3\xa9llo \xea\xb0\x80 \xf0\x9f\x98\x80", 15));
    assert_false(utf8_valid("\xc0\xaf", 2));            /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3));        /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4));    /* > U+10FFFF */
    assert_false(utf8_valid("\xe2\x82", 2));            /* truncated */
    assert_false(utf8_valid("\x80", 1));
    /* incremental: a sequence split across feeds */
    uint32_t st = utf8_feed(UTF8_ACCEPT, "\xe2", 1);
    assert_int_not_equal(st, UTF8_ACCEPT);
    assert_int_not_equal(st, UTF8_REJECT);
    st = utf8_feed(st, "\x82\xac", 2);
    assert_int_equal(st, UTF8_ACCEPT);
}

static void test_json_escape(void **state)
{
    buf_t b;

    buf_init(&b, 1024);
    assert_int_equal(json_append_str(&b, "a\"b\\c\n\x01\xc3\xa9", 9), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"");
    buf_free(&b);
}

static void test_json_minify(void **state)
{
    const char *in = "{ \"a\" : [ 1 , 0.1 ,\n\t\"x y\\\" z\" ] , \"b\":1e400 }";
    buf_t b;

    buf_init(&b, 1024);
    assert_int_equal(json_append_minified(&b, in, strlen(in)), 0);
    assert_string_equal(b.data, "{\"a\":[1,0.1,\"x y\\\" z\"],\"b\":1e400}");
    buf_free(&b);
}

static void test_json_member_span(void **state)
{
    const char *in = "{\"subject\":\"a\",\"nested\":{\"data\":1},\"data\" : {\"x\": [1, \"}\"]} }";
    size_t off, len;

    assert_true(json_member_span(in, strlen(in), "data", &off, &len));
    assert_int_equal(len, strlen("{\"x\": [1, \"}\"]}"));
    assert_memory_equal(in + off, "{\"x\": [1, \"}\"]}", len);
    {
        static const char small[] = "{\"data\":0.1}";
        assert_true(json_member_span(small, sizeof small - 1, "data", &off, &len));
        assert_memory_equal("0.1", &small[off], len);
    }
    assert_false(json_member_span("{\"dat\":1}", 9, "data", &off, &len));
    assert_false(json_member_span("[1]", 3, "data", &off, &len));
}

static msg_t *make_msg(const char *ct, const char *payload, size_t len)
{
    msg_t *m = msg_new();
    unsigned char *p = malloc(len + 1);

    memcpy(p, payload, len);
    msg_set(&m->tenant, "t", 1);
    msg_set(&m->subject, "a.b", 3);
    if (ct)
        msg_set(&m->content_type, ct, strlen(ct));
    m->time_ms = 1764028800000LL;
    msg_set_payload(m, p, len);
    return m;
}

static void test_payload_kinds(void **state)
{
    msg_t *m = make_msg("application/json", "{\"x\":1}", 7);
    assert_int_equal(m->payload_kind, MSG_PAYLOAD_JSON);
    msg_unref(m);
    m = make_msg("text/plain", "123", 3);        /* valid JSON, but text */
    assert_int_equal(m->payload_kind, MSG_PAYLOAD_TEXT);
    msg_unref(m);
    m = make_msg(NULL, "not json", 8);
    assert_int_equal(m->payload_kind, MSG_PAYLOAD_TEXT);
    msg_unref(m);
    m = make_msg("application/octet-stream", "\x00\xff\x01", 3);
    assert_int_equal(m->payload_kind, MSG_PAYLOAD_BINARY);
    msg_unref(m);
}

static void test_envelope(void **state)
{
    msg_t *m = make_msg("application/json", "{ \"n\": 0.1 }", 12);
    buf_t b;

    m->seq = 42;
    msg_set(&m->event, "push", 4);
    msg_set(&m->meta, "{\"source\":\"github\"}", 19);
    msg_set(&m->headers, "{\"x-a\":\"1\"}", 11);
    buf_init(&b, 4096);
    assert_int_equal(msg_envelope(m, &b), 0);
    assert_string_equal(b.data,
        "{\"id\":\"42\",\"seq\":42,\"subject\":\"a.b\",\"event\":\"push\","
        "\"receivedAt\":\"2025-11-25T00:00:00.000Z\",\"source\":\"github\","
        "\"headers\":{\"x-a\":\"1\"},\"contentType\":\"application/json\","
        "\"payloadEncoding\":\"json\",\"payload\":{\"n\":0.1}}");
    buf_free(&b);
    msg_unref(m);

    m = make_msg("application/octet-stream", "\x00\xff\x01", 3);
    buf_init(&b, 4096);
    assert_int_equal(msg_envelope(m, &b), 0);
    assert_non_null(strstr(b.data, "\"id\":null,\"seq\":null"));
    assert_non_null(strstr(b.data, "\"payloadEncoding\":\"base64\",\"payload\":\"AP8B\"}"));
    buf_free(&b);
    msg_unref(m);
}

static int encodes;
static sbuf_t *count_encoder(const msg_t *m)
{
    encodes++;
    return sbuf_from("x", 1);
}

static void test_encoding_cache(void **state)
{
    msg_t *m = make_msg(NULL, "t", 1);
    sbuf_t *a, *b;

    encodes = 0;
    a = msg_encoded(m, MSG_ENC_SSE, count_encoder);
    b = msg_encoded(m, MSG_ENC_SSE, count_encoder);
    assert_ptr_equal(a, b);
    assert_int_equal(encodes, 1);
    msg_unref(m);             /* frees the cached sbuf: ASan checks */
}

static void test_base64_vectors(void **state)
{
    /* RFC 4648 section 10 */
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    char out[16];
    unsigned char back[16];

    for (int i = 0; i < 7; i++) {
        size_t n = strlen(in[i]);
        assert_int_equal(base64_encode(in[i], n, out, B64_STD), strlen(std[i]));
        assert_string_equal(out, std[i]);
        assert_int_equal(base64_encoded_len(n, B64_STD), strlen(std[i]));
        base64_encode(in[i], n, out, B64_URL);
        assert_string_equal(out, url[i]);
        assert_int_equal(base64_decode(std[i], strlen(std[i]), back, sizeof back, B64_STD), n);
        assert_memory_equal(back, in[i], n);
        assert_int_equal(base64_decode(url[i], strlen(url[i]), back, sizeof back, B64_URL), n);
    }
}

static void test_base64_strict(void **state)
{
    unsigned char out[16];

    assert_int_equal(base64_decode("Zg", 2, out, 16, B64_STD), -1);      /* padding missing */
    assert_int_equal(base64_decode("Zg==", 4, out, 16, B64_URL), -1);    /* padding in URL */
    assert_int_equal(base64_decode("Zh==", 4, out, 16, B64_STD), -1);    /* stray bits */
    assert_int_equal(base64_decode("Zh==", 4, out, 16, B64_STD | B64_LAX_BITS), 1);
    assert_int_equal(base64_decode("+/+/", 4, out, 16, B64_URL), -1);    /* wrong alphabet */
    assert_int_equal(base64_decode("-_-_", 4, out, 16, B64_STD), -1);
    assert_int_equal(base64_decode("-_-_", 4, out, 16, B64_URL), 3);
    assert_int_equal(base64_decode("Z===", 4, out, 16, B64_STD), -1);
    assert_int_equal(base64_decode("Zm9v Zg==", 9, out, 16, B64_STD), -1);
    assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 5, B64_STD), -1); /* over cap */
    assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 6, B64_STD), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_sbuf_refs),
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_json_minify),
        cmocka_unit_test(test_json_member_span),
        cmocka_unit_test(test_payload_kinds),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_encoding_cache),
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_strict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
