/*
 * test_principal.c - permissions: the spec, subject and event checks, the
 * JWT claims form in both directions, and the refcounted principal.
 *
 * Refusals are tables of (input JSON, text the error must contain), so a
 * failing row names the rule that broke. The claims round trip is checked
 * through the spec form (json_equal), and once through a real HS256 token
 * (jwt_sign_hs256 / jwt_verify) to show the two modules agree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/jwt.h"
#include "auth/principal.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))
#define S(lit) lit, (sizeof(lit) - 1)

typedef struct erow {
    const char *json;
    const char *want;              /* substring of the error */
} erow_t;

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);

    if (j == NULL)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

/* A principal of tenant "t1", id "user1" from a spec text. */
static principal_t *from_spec(const char *spec_text)
{
    char err[PERM_ERR_LEN];
    json_t *spec = parse(spec_text);
    principal_t *p;
    perm_t perm;

    if (perm_from_spec(spec, &perm, err, sizeof err) != 0)
        fail_msg("spec %s refused: %s", spec_text, err);
    json_decref(spec);
    p = principal_new(PRINCIPAL_API_KEY, S("t1"), S("user1"), &perm, false,
                      0);
    assert_non_null(p);
    return p;
}

static principal_t *from_claims_text(const char *text, const char *deftenant)
{
    char err[PERM_ERR_LEN];
    json_t *c = parse(text);
    principal_t *p;

    if (principal_from_claims(c, deftenant, &p, err, sizeof err) != 0)
        fail_msg("claims %s refused: %s", text, err);
    json_decref(c);
    return p;
}

static void check_spec_errors(const erow_t *rows, size_t n)
{
    char err[PERM_ERR_LEN];
    size_t i;

    for (i = 0; i < n; i++) {
        json_t *spec = parse(rows[i].json);
        perm_t perm;
        int rc;

        memset(err, 0, sizeof err);
        rc = perm_from_spec(spec, &perm, err, sizeof err);
        json_decref(spec);
        if (rc != PERM_EINVAL)
            fail_msg("spec %s: rc %d, want PERM_EINVAL", rows[i].json, rc);
        if (strstr(err, rows[i].want) == NULL)
            fail_msg("spec %s: error \"%s\" lacks \"%s\"", rows[i].json, err,
                     rows[i].want);
        assert_null(perm.publish.v);
        assert_int_equal(perm.events.n, 0);
    }
}

static void check_claims_errors(const erow_t *rows, size_t n,
                                const char *deftenant)
{
    char err[PERM_ERR_LEN];
    size_t i;

    for (i = 0; i < n; i++) {
        json_t *c = parse(rows[i].json);
        principal_t *p = (principal_t *)1;
        int rc;

        memset(err, 0, sizeof err);
        rc = principal_from_claims(c, deftenant, &p, err, sizeof err);
        json_decref(c);
        if (rc != PERM_EINVAL)
            fail_msg("claims %s: rc %d, want PERM_EINVAL", rows[i].json, rc);
        assert_null(p);
        if (strstr(err, rows[i].want) == NULL)
            fail_msg("claims %s: error \"%s\" lacks \"%s\"", rows[i].json,
                     err, rows[i].want);
    }
}

/* --- the spec ------------------------------------------------------------- */

static void test_spec_full(void **state)
{
    const char *text =
        "{\"publish\":[\"webhooks.>\"],\"subscribe\":[\">\"],"
        "\"history\":[\"webhooks.*.x\"],\"admin\":true,"
        "\"events\":[\"push\",\"pull_request.*\"],"
        "\"rate\":{\"per_second\":10,\"burst\":20},\"max_connections\":100}";
    char err[PERM_ERR_LEN];
    json_t *spec = parse(text), *back;
    perm_t perm;

    assert_int_equal(perm_from_spec(spec, &perm, err, sizeof err), 0);
    assert_int_equal(perm.publish.n, 1);
    assert_string_equal(perm.publish.v[0].s, "webhooks.>");
    assert_int_equal(perm.publish.v[0].len, 10);
    assert_int_equal(perm.subscribe.n, 1);
    assert_int_equal(perm.history.n, 1);
    assert_int_equal(perm.events.n, 2);
    assert_true(perm.admin);
    assert_true(perm.rate_per_s == 10.0);
    assert_int_equal(perm.burst, 20);
    assert_int_equal(perm.max_connections, 100);
    back = perm_to_spec(&perm);
    assert_non_null(back);
    assert_true(json_equal(back, spec));
    json_decref(back);
    json_decref(spec);
    perm_free(&perm);
    assert_null(perm.publish.v);
    perm_free(&perm);                  /* empty again: harmless */
}

static void test_spec_empty(void **state)
{
    principal_t *p = from_spec("{}");
    char err[PERM_ERR_LEN];
    json_t *back, *want;
    perm_t perm;

    assert_false(principal_can_publish(p, S("a"), NULL, 0));
    assert_false(principal_can_subscribe(p, S(">")));
    assert_false(principal_can_history(p, S(">")));
    assert_false(principal_can_admin(p, S("t1")));
    assert_true(principal_event_allowed(p, S("anything")));
    back = perm_to_spec(&p->perm);
    want = parse("{\"publish\":[],\"subscribe\":[],\"history\":[],"
                 "\"admin\":false}");
    assert_true(json_equal(back, want));
    json_decref(back);
    json_decref(want);
    principal_unref(p);
    assert_int_equal(perm_from_spec(NULL, &perm, err, sizeof err), 0);
    assert_int_equal(perm.publish.n + perm.subscribe.n + perm.history.n, 0);
    assert_false(perm.admin);
    assert_true(perm.rate_per_s == 0);
}

static void test_spec_errors(void **state)
{
    static const erow_t rows[] = {
        { "[]", "must be a JSON object" },
        { "{\"publsh\":[\"a\"]}", "unknown member \"publsh\"" },
        { "{\"superadmin\":true}", "unknown member \"superadmin\"" },
        { "{\"publish\":\"a.b\"}", "publish: must be an array" },
        { "{\"subscribe\":[\"a\",3]}", "subscribe[1]: must be a string" },
        { "{\"publish\":[\"a..b\"]}", "publish[0]: \"a..b\" is not a valid "
                                      "subject pattern" },
        { "{\"history\":[\"a.>.b\"]}", "history[0]" },
        { "{\"subscribe\":[\"\"]}", "subscribe[0]" },
        { "{\"subscribe\":[\"a b\"]}", "not a valid subject pattern" },
        { "{\"events\":[\"a*b\"]}", "events[0]: \"a*b\" is not a valid event" },
        { "{\"events\":[\"pre*\"]}", "events[0]" },
        { "{\"events\":[\"has space\"]}", "events[0]" },
        { "{\"events\":[\"\"]}", "events[0]" },
        { "{\"events\":[\"a.**\"]}", "events[0]" },
        { "{\"events\":\"push\"}", "events: must be an array of event types" },
        { "{\"admin\":1}", "admin: must be true or false" },
        { "{\"rate\":10}", "rate: must be an object" },
        { "{\"rate\":{\"per_second\":1,\"brust\":2}}",
          "rate: unknown member \"brust\"" },
        { "{\"rate\":{\"burst\":2}}", "rate.per_second" },
        { "{\"rate\":{\"per_second\":0}}", "rate.per_second" },
        { "{\"rate\":{\"per_second\":-1}}", "rate.per_second" },
        { "{\"rate\":{\"per_second\":2e6}}", "rate.per_second" },
        { "{\"rate\":{\"per_second\":\"5\"}}", "rate.per_second" },
        { "{\"rate\":{\"per_second\":5,\"burst\":0}}", "rate.burst" },
        { "{\"rate\":{\"per_second\":5,\"burst\":1.5}}", "rate.burst" },
        { "{\"rate\":{\"per_second\":5,\"burst\":2000000000}}", "rate.burst" },
        { "{\"max_connections\":0}", "max_connections: must be an integer" },
        { "{\"max_connections\":1000001}", "max_connections" },
        { "{\"max_connections\":\"9\"}", "max_connections" },
    };

    check_spec_errors(rows, NROWS(rows));
}

static void test_spec_limits(void **state)
{
    json_t *spec = json_object(), *arr = json_array();
    char err[PERM_ERR_LEN], pat[16];
    perm_t perm;
    int i;

    json_object_set_new(spec, "subscribe", arr);
    for (i = 0; i < PERM_LIST_MAX; i++) {
        snprintf(pat, sizeof pat, "s%d.>", i);
        json_array_append_new(arr, json_string(pat));
    }
    assert_int_equal(perm_from_spec(spec, &perm, err, sizeof err), 0);
    assert_int_equal(perm.subscribe.n, PERM_LIST_MAX);
    assert_string_equal(perm.subscribe.v[PERM_LIST_MAX - 1].s, "s63.>");
    perm_free(&perm);
    json_array_append_new(arr, json_string("one.more"));
    assert_int_equal(perm_from_spec(spec, &perm, err, sizeof err),
                     PERM_EINVAL);
    assert_non_null(strstr(err, "subscribe[64]: more than 64 entries"));
    json_decref(spec);
}

static void test_spec_rate_default_burst(void **state)
{
    principal_t *p = from_spec("{\"rate\":{\"per_second\":2.5}}");
    json_t *back = perm_to_spec(&p->perm);

    assert_true(p->perm.rate_per_s == 2.5);
    assert_int_equal(p->perm.burst, 3);
    assert_true(json_real_value(json_object_get(
                    json_object_get(back, "rate"), "per_second")) == 2.5);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(back, "rate"), "burst")), 3);
    json_decref(back);
    principal_unref(p);
}

/* Error texts echo user input truncated and with quotes/controls masked;
 * a tiny buffer is never overrun; a NUL inside a name is not ignored. */
static void test_spec_error_echo(void **state)
{
    char err[PERM_ERR_LEN], small[8];
    json_t *spec = json_object(), *arr = json_array();
    perm_t perm;

    json_array_append_new(arr, json_string("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.."));
    json_object_set_new(spec, "publish", arr);
    assert_int_equal(perm_from_spec(spec, &perm, err, sizeof err),
                     PERM_EINVAL);
    assert_non_null(strstr(err, "...\" is not a valid subject pattern"));
    assert_true(strlen(err) < PERM_ERR_LEN - 1);
    memset(small, 'x', sizeof small);
    assert_int_equal(perm_from_spec(spec, &perm, small, sizeof small),
                     PERM_EINVAL);
    assert_int_equal(strlen(small), sizeof small - 1);
    json_decref(spec);

    spec = json_object();
    json_object_setn_new(spec, "publish\0x", 9, json_array());
    assert_int_equal(perm_from_spec(spec, &perm, err, sizeof err),
                     PERM_EINVAL);
    assert_non_null(strstr(err, "unknown member \"publish?x\""));
    json_decref(spec);

    spec = parse("{\"events\":[\"a\\\"b\\u0001\"]}");
    assert_int_equal(perm_from_spec(spec, &perm, err, sizeof err),
                     PERM_EINVAL);
    assert_non_null(strstr(err, "\"a?b?\""));
    json_decref(spec);
    spec = json_pack("{s:[s%]}", "publish", "a\0b", (size_t)3);
    assert_int_equal(perm_from_spec(spec, &perm, NULL, 0), PERM_EINVAL);
    json_decref(spec);
}

/* --- subject checks ------------------------------------------------------- */

static void test_publish_literal_vs_patterns(void **state)
{
    principal_t *p = from_spec("{\"publish\":[\"webhooks.github.>\","
                               "\"rooms.*\",\"exact.one\"]}");

    assert_true(principal_can_publish(p, S("webhooks.github.org.repo"), NULL,
                                      0));
    assert_true(principal_can_publish(p, S("webhooks.github.x"), NULL, 0));
    assert_false(principal_can_publish(p, S("webhooks.github"), NULL, 0));
    assert_false(principal_can_publish(p, S("webhooks.gitlab.x"), NULL, 0));
    assert_true(principal_can_publish(p, S("rooms.abc"), NULL, 0));
    assert_false(principal_can_publish(p, S("rooms.abc.def"), NULL, 0));
    assert_false(principal_can_publish(p, S("rooms"), NULL, 0));
    assert_true(principal_can_publish(p, S("exact.one"), NULL, 0));
    assert_false(principal_can_publish(p, S("exact.one.two"), NULL, 0));
    assert_false(principal_can_publish(p, S("exact.two"), NULL, 0));
    /* a publish goes to a literal subject, never to a pattern */
    assert_false(principal_can_publish(p, S("rooms.*"), NULL, 0));
    assert_false(principal_can_publish(p, S("webhooks.github.>"), NULL, 0));
    assert_false(principal_can_publish(p, S(""), NULL, 0));
    assert_false(principal_can_publish(p, S("rooms..x"), NULL, 0));
    /* publish rights say nothing about subscribing */
    assert_false(principal_can_subscribe(p, S("rooms.abc")));
    principal_unref(p);
}

static void test_subscribe_covers(void **state)
{
    principal_t *wide = from_spec("{\"subscribe\":[\"webhooks.>\"]}");
    principal_t *narrow = from_spec("{\"subscribe\":[\"webhooks.github.>\"]}");

    assert_true(principal_can_subscribe(wide, S("webhooks.github.>")));
    assert_true(principal_can_subscribe(wide, S("webhooks.>")));
    assert_true(principal_can_subscribe(wide, S("webhooks.*")));
    assert_true(principal_can_subscribe(wide, S("webhooks.*.org.>")));
    assert_true(principal_can_subscribe(wide, S("webhooks.github.org.repo")));
    assert_false(principal_can_subscribe(wide, S(">")));
    assert_false(principal_can_subscribe(wide, S("*.github")));
    assert_false(principal_can_subscribe(wide, S("webhooks")));
    assert_false(principal_can_subscribe(wide, S("rooms.>")));

    assert_false(principal_can_subscribe(narrow, S("webhooks.>")));
    assert_false(principal_can_subscribe(narrow, S("webhooks.*.org")));
    assert_false(principal_can_subscribe(narrow, S("webhooks.*")));
    assert_true(principal_can_subscribe(narrow, S("webhooks.github.*")));
    assert_true(principal_can_subscribe(narrow, S("webhooks.github.a.b")));
    assert_false(principal_can_subscribe(narrow, S("webhooks.github")));
    /* invalid patterns are refused, not matched */
    assert_false(principal_can_subscribe(wide, S("webhooks.>.x")));
    assert_false(principal_can_subscribe(wide, S("webhooks.")));
    principal_unref(wide);
    principal_unref(narrow);
}

static void test_full_wildcard(void **state)
{
    principal_t *p = from_spec("{\"publish\":[\">\"],\"subscribe\":[\">\"],"
                               "\"history\":[\">\"]}");

    assert_true(principal_can_subscribe(p, S(">")));
    assert_true(principal_can_subscribe(p, S("*")));
    assert_true(principal_can_subscribe(p, S("*.x.>")));
    assert_true(principal_can_subscribe(p, S("a.b.c")));
    assert_true(principal_can_history(p, S(">")));
    assert_true(principal_can_publish(p, S("a"), NULL, 0));
    assert_true(principal_can_publish(p, S("a.b.c.d"), NULL, 0));
    assert_false(principal_can_publish(p, S("a.>"), NULL, 0));
    principal_unref(p);
}

static void test_star_tokens(void **state)
{
    principal_t *p = from_spec("{\"subscribe\":[\"*.events\"],"
                               "\"history\":[\"kakao.*\"]}");

    assert_true(principal_can_subscribe(p, S("a.events")));
    assert_true(principal_can_subscribe(p, S("*.events")));
    assert_false(principal_can_subscribe(p, S("a.b.events")));
    assert_false(principal_can_subscribe(p, S("a.*")));
    assert_false(principal_can_subscribe(p, S(">")));
    /* history is its own list */
    assert_false(principal_can_history(p, S("a.events")));
    assert_true(principal_can_history(p, S("kakao.acct_42")));
    assert_true(principal_can_history(p, S("kakao.*")));
    assert_false(principal_can_history(p, S("kakao.>")));
    assert_false(principal_can_subscribe(p, S("kakao.acct_42")));
    principal_unref(p);
}

/* --- event types ---------------------------------------------------------- */

static void test_event_pattern_syntax(void **state)
{
    static const struct { const char *s; bool ok; } rows[] = {
        { "push", true }, { "pull_request.opened", true },
        { "chat:message", true }, { "pull_request.*", true },
        { "chat:*", true }, { "*", true }, { "a.b.*", true },
        { "caf\xc3\xa9", true },
        { "", false }, { "pre*", false }, { "*.x", false }, { "a*b", false },
        { "a.*.b", false }, { "**", false }, { "a.**", false },
        { "two words", false }, { "tab\tbed", false }, { "bad\xff", false },
    };
    char big[PERM_EVENT_MAX + 2];
    size_t i;

    for (i = 0; i < NROWS(rows); i++)
        if (perm_valid_event_pattern(rows[i].s, strlen(rows[i].s)) !=
            rows[i].ok)
            fail_msg("event pattern \"%s\": want %d", rows[i].s, rows[i].ok);
    memset(big, 'e', sizeof big);
    assert_true(perm_valid_event_pattern(big, PERM_EVENT_MAX));
    assert_false(perm_valid_event_pattern(big, PERM_EVENT_MAX + 1));
    /* types may hold spaces and '*' (edges accept them); patterns may not */
    assert_true(perm_valid_event_type(S("two words")));
    assert_true(perm_valid_event_type(S("a*b")));
    assert_false(perm_valid_event_type(S("ctl\x7f")));
    assert_false(perm_valid_event_type(NULL, 0));
}

static void test_event_match(void **state)
{
    static const struct { const char *pat, *type; bool ok; } rows[] = {
        { "push", "push", true }, { "push", "pushed", false },
        { "push", "pus", false }, { "pull_request.*", "pull_request.opened",
                                    true },
        { "pull_request.*", "pull_request.a.b", true },
        { "pull_request.*", "pull_request", false },
        { "pull_request.*", "pull_request.", false },
        { "pull_request.*", "pull_requests.x", false },
        { "chat:*", "chat:message", true }, { "chat:*", "chat.message", false },
        { "*", "anything at all", true }, { "*", "x", true },
    };
    size_t i;

    for (i = 0; i < NROWS(rows); i++)
        if (perm_event_match(rows[i].pat, strlen(rows[i].pat), rows[i].type,
                             strlen(rows[i].type)) != rows[i].ok)
            fail_msg("\"%s\" ~ \"%s\": want %d", rows[i].pat, rows[i].type,
                     rows[i].ok);
}

static void test_event_filter_publish(void **state)
{
    principal_t *p = from_spec("{\"publish\":[\"webhooks.>\"],"
                               "\"events\":[\"push\",\"pull_request.*\"]}");
    principal_t *any = from_spec("{\"publish\":[\"webhooks.>\"]}");

    assert_true(principal_can_publish(p, S("webhooks.gh"), S("push")));
    assert_true(principal_can_publish(p, S("webhooks.gh"),
                                      S("pull_request.opened")));
    assert_false(principal_can_publish(p, S("webhooks.gh"),
                                       S("pull_request")));
    assert_false(principal_can_publish(p, S("webhooks.gh"), S("issues")));
    assert_false(principal_can_publish(p, S("webhooks.gh"), NULL, 0));
    assert_false(principal_can_publish(p, S("webhooks.gh"), "push", 0));
    assert_false(principal_can_publish(p, S("rooms.x"), S("push")));
    assert_false(principal_event_allowed(p, NULL, 0));
    assert_true(principal_event_allowed(p, S("push")));

    assert_true(principal_can_publish(any, S("webhooks.gh"), NULL, 0));
    assert_true(principal_can_publish(any, S("webhooks.gh"), S("issues")));
    assert_true(principal_can_publish(any, S("webhooks.gh"), S("a b")));
    assert_false(principal_can_publish(any, S("webhooks.gh"), S("ctl\n")));
    principal_unref(p);
    principal_unref(any);
}

static void test_event_star_needs_type(void **state)
{
    principal_t *p = from_spec("{\"events\":[\"*\"]}");

    assert_true(principal_event_allowed(p, S("x")));
    assert_true(principal_event_allowed(p, S("chat:message")));
    assert_false(principal_event_allowed(p, NULL, 0));
    principal_unref(p);
}

/* --- principals ----------------------------------------------------------- */

static void test_admin_and_superadmin(void **state)
{
    principal_t *admin = from_spec("{\"admin\":true}");
    principal_t *user = from_spec("{\"admin\":false}");
    perm_t none = { 0 };
    principal_t *root = principal_new(PRINCIPAL_BOOTSTRAP, S("sys"), S("root"),
                                      &none, true, 0);

    assert_true(principal_can_admin(admin, S("t1")));
    assert_false(principal_can_admin(admin, S("t2")));
    assert_false(principal_can_admin(admin, S("t")));
    assert_false(principal_can_admin(admin, NULL, 0));
    assert_false(principal_can_admin(user, S("t1")));
    assert_non_null(root);
    assert_int_equal(root->kind, PRINCIPAL_BOOTSTRAP);
    assert_true(principal_can_admin(root, S("t1")));
    assert_true(principal_can_admin(root, S("anyone")));
    principal_unref(admin);
    principal_unref(user);
    principal_unref(root);
}

static void test_new_validates(void **state)
{
    char err[PERM_ERR_LEN], big[PRINCIPAL_ID_MAX + 1];
    json_t *spec = parse("{\"publish\":[\"a\"]}");
    principal_t *p;
    perm_t perm;

    assert_int_equal(perm_from_spec(spec, &perm, err, sizeof err), 0);
    assert_null(principal_new(PRINCIPAL_API_KEY, S("bad tenant"), S("id"),
                              &perm, false, 0));
    assert_null(principal_new(PRINCIPAL_API_KEY, S(""), S("id"), &perm,
                              false, 0));
    assert_null(principal_new(PRINCIPAL_API_KEY, S("t"), S("a b"), &perm,
                              false, 0));
    memset(big, 'i', sizeof big);
    assert_null(principal_new(PRINCIPAL_API_KEY, S("t"), big, sizeof big,
                              &perm, false, 0));
    /* refused: the lists still belong to us */
    assert_int_equal(perm.publish.n, 1);
    p = principal_new(PRINCIPAL_API_KEY, S("t"), big, PRINCIPAL_ID_MAX, &perm,
                      false, 0);
    assert_non_null(p);
    assert_null(perm.publish.v);       /* moved into p */
    assert_int_equal(p->id_len, PRINCIPAL_ID_MAX);
    assert_int_equal(strlen(p->id), PRINCIPAL_ID_MAX);
    principal_unref(p);
    json_decref(spec);
    assert_true(principal_valid_tenant(S("Tenant_1-x")));
    assert_false(principal_valid_tenant(S("t.1")));
    memset(big, 't', sizeof big);
    assert_true(principal_valid_tenant(big, PRINCIPAL_TENANT_MAX));
    assert_false(principal_valid_tenant(big, PRINCIPAL_TENANT_MAX + 1));
}

static void test_refcount_and_expiry(void **state)
{
    perm_t none = { 0 };
    principal_t *p = principal_new(PRINCIPAL_API_KEY, S("t"), S("k"), &none,
                                   false, 5000);

    assert_ptr_equal(principal_ref(p), p);
    assert_int_equal(atomic_load(&p->refs), 2);
    principal_unref(p);
    assert_int_equal(atomic_load(&p->refs), 1);
    assert_false(principal_expired(p, 4999));
    assert_true(principal_expired(p, 5000));
    principal_unref(p);                /* freed: ASan checks the rest */
    principal_unref(NULL);
    p = principal_new(PRINCIPAL_API_KEY, S("t"), S("k"), &none, false, 0);
    assert_false(principal_expired(p, INT64_MAX));
    principal_unref(p);
}

/* --- claims --------------------------------------------------------------- */

static void test_claims_scope_string(void **state)
{
    principal_t *p = from_claims_text(
        "{\"sub\":\"user@example.com\",\"tenant\":\"acme\",\"scope\":"
        "\"  publish:webhooks.>   subscribe:webhooks.github.> "
        "history:webhooks.* events:push events:chat:* admin \"}", NULL);

    assert_int_equal(p->kind, PRINCIPAL_JWT);
    assert_string_equal(p->id, "user@example.com");
    assert_string_equal(p->tenant, "acme");
    assert_true(principal_can_publish(p, S("webhooks.a"), S("push")));
    assert_true(principal_can_publish(p, S("webhooks.a"), S("chat:x")));
    assert_false(principal_can_publish(p, S("webhooks.a"), S("issues")));
    assert_true(principal_can_subscribe(p, S("webhooks.github.*")));
    assert_false(principal_can_subscribe(p, S("webhooks.>")));
    assert_true(principal_can_history(p, S("webhooks.x")));
    assert_true(principal_can_admin(p, S("acme")));
    assert_false(principal_can_admin(p, S("other")));
    assert_false(p->superadmin);
    assert_int_equal(p->expires_ms, 0);
    principal_unref(p);
}

static void test_claims_scopes_array_and_tid(void **state)
{
    principal_t *p = from_claims_text(
        "{\"sub\":\"svc-1\",\"tid\":\"t-42\",\"scopes\":"
        "[\"subscribe:rooms.>\",\"publish:rooms.*\"],\"exp\":1700000000,"
        "\"rate\":{\"per_second\":5},\"max_connections\":3}", NULL);

    assert_string_equal(p->tenant, "t-42");
    assert_true(principal_can_subscribe(p, S("rooms.r1")));
    assert_true(principal_can_publish(p, S("rooms.r1"), NULL, 0));
    assert_false(principal_can_admin(p, S("t-42")));
    assert_int_equal(p->expires_ms, 1700000000000ll);
    assert_true(p->perm.rate_per_s == 5.0);
    assert_int_equal(p->perm.burst, 5);
    assert_int_equal(p->perm.max_connections, 3);
    principal_unref(p);
}

static void test_claims_default_tenant(void **state)
{
    static const erow_t rows[] = {
        { "{\"sub\":\"u\"}", "claim \"tenant\" (or \"tid\") missing" },
    };
    principal_t *p = from_claims_text("{\"sub\":\"u\"}", "dflt");

    assert_string_equal(p->tenant, "dflt");
    assert_int_equal(p->perm.publish.n + p->perm.subscribe.n, 0);
    assert_false(principal_can_subscribe(p, S(">")));
    principal_unref(p);
    /* the claim wins over the default */
    p = from_claims_text("{\"sub\":\"u\",\"tenant\":\"mine\"}", "dflt");
    assert_string_equal(p->tenant, "mine");
    principal_unref(p);
    check_claims_errors(rows, NROWS(rows), NULL);
    check_claims_errors(&(erow_t){ "{\"sub\":\"u\"}", "default tenant" }, 1,
                        "bad tenant!");
}

static void test_claims_refusals(void **state)
{
    static const erow_t rows[] = {
        { "[]", "claims: must be a JSON object" },
        { "{\"tenant\":\"t\"}", "claim \"sub\" missing" },
        { "{\"sub\":7,\"tenant\":\"t\"}", "claim \"sub\": must be" },
        { "{\"sub\":\"\",\"tenant\":\"t\"}", "claim \"sub\": must be" },
        { "{\"sub\":\"a b\",\"tenant\":\"t\"}", "claim \"sub\": must be" },
        { "{\"sub\":\"u\",\"tenant\":\"a.b\"}", "tenant: must be 1 to 64" },
        { "{\"sub\":\"u\",\"tenant\":5}", "tenant: must be" },
        { "{\"sub\":\"u\",\"tid\":\"\"}", "tid: must be" },
        { "{\"sub\":\"u\",\"tenant\":\"a\",\"tid\":\"a\"}",
          "\"tenant\" and \"tid\" are both present" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"read\"}",
          "unknown scope \"read\"" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"superadmin\"}",
          "unknown scope \"superadmin\"" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"publish\"}",
          "unknown scope \"publish\"" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"Publish:a\"}",
          "unknown scope" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\":a\"}",
          "unknown scope" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"admin:yes\"}",
          "unknown scope" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"publish:a..b\"}",
          "scope \"publish:a..b\": \"a..b\" is not a valid subject pattern" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"publish:\"}",
          "is not a valid subject pattern" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"subscribe:a.>.b\"}",
          "not a valid subject pattern" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"events:pre*\"}",
          "not a valid event type pattern" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scopes\":[\"publish:a b\"]}",
          "not a valid subject pattern" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scopes\":[\"admin\",1]}",
          "claim \"scopes\"[1]: must be a string" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":{}}",
          "claim \"scope\": must be a string or an array" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"scope\":\"admin\","
          "\"scopes\":\"admin\"}", "\"scope\" and \"scopes\" are both" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":\"soon\"}",
          "claim \"exp\": must be a positive number" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":-5}", "claim \"exp\"" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"rate\":{\"per_second\":0}}",
          "rate.per_second" },
        { "{\"sub\":\"u\",\"tenant\":\"t\",\"max_connections\":-1}",
          "max_connections" },
    };

    check_claims_errors(rows, NROWS(rows), NULL);
}

static void test_claims_scope_count(void **state)
{
    char err[PERM_ERR_LEN];
    json_t *c = parse("{\"sub\":\"u\",\"tenant\":\"t\"}");
    json_t *arr = json_array();
    principal_t *p;
    int i;

    json_object_set_new(c, "scopes", arr);
    for (i = 0; i < PERM_SCOPES_MAX; i++)
        json_array_append_new(arr, json_string("admin"));
    assert_int_equal(principal_from_claims(c, NULL, &p, err, sizeof err), 0);
    principal_unref(p);
    json_array_append_new(arr, json_string("admin"));
    assert_int_equal(principal_from_claims(c, NULL, &p, err, sizeof err),
                     PERM_EINVAL);
    assert_non_null(strstr(err, "more than"));
    json_decref(c);

    c = parse("{\"sub\":\"u\",\"tenant\":\"t\"}");
    arr = json_array();
    json_object_set_new(c, "scopes", arr);
    for (i = 0; i <= PERM_LIST_MAX; i++)
        json_array_append_new(arr, json_string("history:a.b"));
    assert_int_equal(principal_from_claims(c, NULL, &p, err, sizeof err),
                     PERM_EINVAL);
    assert_non_null(strstr(err, "more than 64 entries in history"));
    json_decref(c);
}

/* p -> claims -> principal gives the same tenant, id and permissions. */
static void check_round_trip(principal_t *p)
{
    json_t *claims = principal_to_claims(p), *a, *b;
    principal_t *q = NULL;
    char err[PERM_ERR_LEN];

    assert_non_null(claims);
    if (principal_from_claims(claims, NULL, &q, err, sizeof err) != 0)
        fail_msg("round trip refused: %s", err);
    assert_string_equal(q->tenant, p->tenant);
    assert_string_equal(q->id, p->id);
    assert_int_equal(q->kind, PRINCIPAL_JWT);
    a = perm_to_spec(&p->perm);
    b = perm_to_spec(&q->perm);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    json_decref(claims);
    principal_unref(q);
}

static void test_claims_round_trip(void **state)
{
    static const char *specs[] = {
        "{}",
        "{\"admin\":true}",
        "{\"publish\":[\"webhooks.>\"],\"subscribe\":[\">\"],"
        "\"history\":[\">\"],\"admin\":false,\"events\":[\"push\"],"
        "\"rate\":{\"per_second\":10,\"burst\":20},\"max_connections\":100}",
        "{\"publish\":[\"a.*\",\"b.c\",\"d.>\"],\"subscribe\":[\"*.x\"],"
        "\"events\":[\"chat:*\",\"*\",\"pull_request.*\"],\"admin\":true,"
        "\"rate\":{\"per_second\":0.5,\"burst\":1}}",
    };
    size_t i;

    for (i = 0; i < NROWS(specs); i++) {
        principal_t *p = from_spec(specs[i]);

        check_round_trip(p);
        principal_unref(p);
    }
}

static void test_claims_form(void **state)
{
    principal_t *p = from_spec("{\"publish\":[\"a.>\"],\"history\":[\"h\"],"
                               "\"events\":[\"push\"],\"admin\":true}");
    json_t *c = principal_to_claims(p);

    assert_string_equal(json_string_value(json_object_get(c, "scope")),
                        "publish:a.> history:h events:push admin");
    assert_string_equal(json_string_value(json_object_get(c, "sub")),
                        "user1");
    assert_string_equal(json_string_value(json_object_get(c, "tenant")),
                        "t1");
    assert_null(json_object_get(c, "rate"));
    assert_null(json_object_get(c, "max_connections"));
    assert_null(json_object_get(c, "exp"));
    json_decref(c);
    principal_unref(p);
}

/* superadmin never travels in a token: it comes back as a tenant admin. */
static void test_claims_drop_superadmin(void **state)
{
    char err[PERM_ERR_LEN];
    json_t *spec = parse("{\"subscribe\":[\">\"],\"admin\":true}");
    principal_t *root, *q;
    json_t *c;
    perm_t perm;

    assert_int_equal(perm_from_spec(spec, &perm, err, sizeof err), 0);
    root = principal_new(PRINCIPAL_BOOTSTRAP, S("sys"), S("rootkey"), &perm,
                         true, 0);
    c = principal_to_claims(root);
    assert_null(strstr(json_string_value(json_object_get(c, "scope")),
                       "superadmin"));
    assert_int_equal(principal_from_claims(c, NULL, &q, err, sizeof err), 0);
    assert_false(q->superadmin);
    assert_true(principal_can_admin(q, S("sys")));
    assert_false(principal_can_admin(q, S("other")));
    principal_unref(q);
    principal_unref(root);
    json_decref(c);
    json_decref(spec);
}

/* The claims survive a real token: sign, verify, rebuild. */
static void test_claims_through_jwt(void **state)
{
    static const char secret[] = "0123456789abcdef0123456789abcdef";
    principal_t *p = from_spec("{\"subscribe\":[\"rooms.>\"],"
                               "\"events\":[\"chat:*\"]}"), *q;
    jwt_keyset_t *ks = jwt_keyset_new();
    jwt_opts_t opts = { .now = 1700000000, .require_exp = true };
    char err[PERM_ERR_LEN];
    json_t *c = principal_to_claims(p), *verified;
    char *token;

    json_object_set_new(c, "iat", json_integer(1700000000));
    json_object_set_new(c, "exp", json_integer(1700000300));
    json_object_set_new(c, "jti", json_string("j1"));
    token = jwt_sign_hs256(secret, 32, NULL, c);
    assert_non_null(token);
    assert_int_equal(jwt_keyset_add_secret(ks, NULL, secret, 32, NULL),
                     JWT_OK);
    assert_int_equal(jwt_verify(ks, token, strlen(token), &opts, &verified),
                     JWT_OK);
    assert_int_equal(principal_from_claims(verified, NULL, &q, err,
                                           sizeof err), 0);
    assert_int_equal(q->expires_ms, 1700000300000ll);
    assert_true(principal_can_subscribe(q, S("rooms.r1")));
    assert_false(principal_can_subscribe(q, S(">")));
    assert_true(principal_event_allowed(q, S("chat:msg")));
    assert_false(principal_event_allowed(q, S("push")));
    principal_unref(q);
    principal_unref(p);
    json_decref(verified);
    json_decref(c);
    free(token);
    jwt_keyset_free(ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_full),
        cmocka_unit_test(test_spec_empty),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_spec_limits),
        cmocka_unit_test(test_spec_rate_default_burst),
        cmocka_unit_test(test_spec_error_echo),
        cmocka_unit_test(test_publish_literal_vs_patterns),
        cmocka_unit_test(test_subscribe_covers),
        cmocka_unit_test(test_full_wildcard),
        cmocka_unit_test(test_star_tokens),
        cmocka_unit_test(test_event_pattern_syntax),
        cmocka_unit_test(test_event_match),
        cmocka_unit_test(test_event_filter_publish),
        cmocka_unit_test(test_event_star_needs_type),
        cmocka_unit_test(test_admin_and_superadmin),
        cmocka_unit_test(test_new_validates),
        cmocka_unit_test(test_refcount_and_expiry),
        cmocka_unit_test(test_claims_scope_string),
        cmocka_unit_test(test_claims_scopes_array_and_tid),
        cmocka_unit_test(test_claims_default_tenant),
        cmocka_unit_test(test_claims_refusals),
        cmocka_unit_test(test_claims_scope_count),
        cmocka_unit_test(test_claims_round_trip),
        cmocka_unit_test(test_claims_form),
        cmocka_unit_test(test_claims_drop_superadmin),
        cmocka_unit_test(test_claims_through_jwt),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
