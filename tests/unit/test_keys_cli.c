/*
 * test_keys_cli.c - the pure parts of the key management client: argument
 * parsing (every flag kind, --flag=value, lists and their cap, the
 * per-command rules, every usage error and that none echoes a possible
 * secret), durations, the http/loopback rule and key-file cleaning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/keys_cli.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))
#define ARGC(v) ((int)NROWS(v))

static int parse(int argc, char **argv, keys_cli_args_t *a, char *err)
{
    err[0] = '\0';
    return keys_cli_parse(argc, argv, a, err, 256);
}

/* Parsing argv must fail with a message containing want. */
static void expect_usage_error(int argc, char **argv, const char *want)
{
    keys_cli_args_t a;
    char err[256];

    assert_int_equal(parse(argc, argv, &a, err), -1);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

/* ---- durations ------------------------------------------------------------ */

static void test_duration_ok(void **state)
{
    static const struct { const char *s; int64_t want; } rows[] = {
        {"0", 0}, {"90", 90}, {"90s", 90}, {"5m", 300}, {"2h", 7200},
        {"3d", 259200}, {"0d", 0}, {"007", 7},
        {"36600d", KEYS_CLI_DURATION_MAX}, {"3162240000", KEYS_CLI_DURATION_MAX},
    };

    for (size_t i = 0; i < NROWS(rows); i++) {
        int64_t v = -1;

        assert_int_equal(keys_cli_duration(rows[i].s, &v), 0);
        assert_int_equal(v, rows[i].want);
    }
}

static void test_duration_bad(void **state)
{
    static const char *const rows[] = {
        "", "s", "h", "-5", "+5", " 5", "5 ", "1.5h", "5x", "5ms", "5S", "5H",
        "0x10", "1e3", "36601d", "3162240001", "878400h1", "99999999999999999999",
        "9223372036854775807", "9223372036854775808s",
    };

    for (size_t i = 0; i < NROWS(rows); i++) {
        int64_t v = 42;

        if (keys_cli_duration(rows[i], &v) != -1)
            fail_msg("\"%s\" accepted", rows[i]);
        assert_int_equal(v, 42);
    }
}

/* ---- ids ------------------------------------------------------------------ */

static void test_valid_id(void **state)
{
    char id[KEYS_CLI_ID_MAX + 2];

    assert_true(keys_cli_valid_id("a"));
    assert_true(keys_cli_valid_id("a1B2c3D4e5F6"));
    memset(id, 'Z', KEYS_CLI_ID_MAX);
    id[KEYS_CLI_ID_MAX] = '\0';
    assert_true(keys_cli_valid_id(id));
    id[KEYS_CLI_ID_MAX] = 'Z';
    id[KEYS_CLI_ID_MAX + 1] = '\0';
    assert_false(keys_cli_valid_id(id));
    assert_false(keys_cli_valid_id(""));
    assert_false(keys_cli_valid_id("ab-c"));
    assert_false(keys_cli_valid_id("ab_c"));
    assert_false(keys_cli_valid_id("a/b"));
    assert_false(keys_cli_valid_id("a%2F"));
    assert_false(keys_cli_valid_id(".."));
    assert_false(keys_cli_valid_id("caf\xc3\xa9"));
    assert_false(keys_cli_valid_id("a b"));
}

/* ---- parsing: what is accepted -------------------------------------------- */

static void test_parse_create_every_flag(void **state)
{
    char *argv[] = {"create", "--name", "ci", "--tenant=acme", "--publish", "orders.>",
                    "--publish=chat.*", "--subscribe", ">", "--history", "h.>",
                    "--events", "push", "--events=pull_request.*", "--admin",
                    "--cidr", "10.0.0.0/8", "--cidr=::1", "--expires-in", "1h",
                    "--rate", "0.5", "--burst=3", "--max-connections", "7", "--json",
                    "--url", "https://x.example", "--key-file=/k", "--insecure"};
    keys_cli_args_t a;
    char err[256];

    assert_int_equal(parse(ARGC(argv), argv, &a, err), 0);
    assert_int_equal(a.cmd, KEYS_CLI_CREATE);
    assert_string_equal(a.name, "ci");
    assert_string_equal(a.tenant, "acme");
    assert_int_equal(a.publish.n, 2);
    assert_string_equal(a.publish.v[0], "orders.>");
    assert_string_equal(a.publish.v[1], "chat.*");
    assert_int_equal(a.subscribe.n, 1);
    assert_string_equal(a.subscribe.v[0], ">");
    assert_int_equal(a.history.n, 1);
    assert_int_equal(a.events.n, 2);
    assert_string_equal(a.events.v[1], "pull_request.*");
    assert_true(a.admin);
    assert_int_equal(a.cidrs.n, 2);
    assert_string_equal(a.cidrs.v[1], "::1");
    assert_int_equal(a.expires_in, 3600);
    assert_true(a.rate == 0.5);
    assert_int_equal(a.burst, 3);
    assert_int_equal(a.max_connections, 7);
    assert_true(a.json);
    assert_true(a.insecure);
    assert_false(a.help);
    assert_string_equal(a.url, "https://x.example");
    assert_string_equal(a.key_file, "/k");
    assert_null(a.key);
    assert_null(a.id);
}

static void test_parse_defaults(void **state)
{
    char *argv[] = {"list"};
    keys_cli_args_t a;
    char err[256];

    assert_int_equal(parse(ARGC(argv), argv, &a, err), 0);
    assert_int_equal(a.cmd, KEYS_CLI_LIST);
    assert_null(a.id);
    assert_null(a.url);
    assert_null(a.key);
    assert_null(a.key_file);
    assert_null(a.tenant);
    assert_false(a.json);
    assert_false(a.insecure);
    assert_false(a.admin);
    assert_int_equal(a.publish.n, 0);
    assert_int_equal(a.expires_in, -1);
    assert_int_equal(a.burst, -1);
    assert_int_equal(a.max_connections, -1);
    assert_int_equal(a.grace, -1);
    assert_int_equal(a.ttl, -1);
    assert_true(a.rate < 0);
}

static void test_parse_commands_with_id(void **state)
{
    static const struct { const char *cmd; keys_cli_cmd_t want; } rows[] = {
        {"get", KEYS_CLI_GET}, {"revoke", KEYS_CLI_REVOKE},
        {"rotate", KEYS_CLI_ROTATE}, {"usage", KEYS_CLI_USAGE},
    };

    for (size_t i = 0; i < NROWS(rows); i++) {
        char *argv[] = {(char *)rows[i].cmd, "--json", "Ab12", "--key", "sb_x_y"};
        keys_cli_args_t a;
        char err[256];

        assert_int_equal(parse(ARGC(argv), argv, &a, err), 0);
        assert_int_equal(a.cmd, rows[i].want);
        assert_string_equal(a.id, "Ab12");
        assert_string_equal(a.key, "sb_x_y");
        assert_true(a.json);
    }
}

static void test_parse_rotate_and_token(void **state)
{
    char *rot[] = {"rotate", "K1", "--grace", "0"};
    char *rot2[] = {"rotate", "--grace=2d", "K1"};
    char *tok[] = {"token", "--ttl=15m"};
    char *tok2[] = {"token"};
    keys_cli_args_t a;
    char err[256];

    assert_int_equal(parse(ARGC(rot), rot, &a, err), 0);
    assert_int_equal(a.grace, 0);
    assert_int_equal(parse(ARGC(rot2), rot2, &a, err), 0);
    assert_int_equal(a.grace, 2 * 86400);
    assert_string_equal(a.id, "K1");
    assert_int_equal(parse(ARGC(tok), tok, &a, err), 0);
    assert_int_equal(a.cmd, KEYS_CLI_TOKEN);
    assert_int_equal(a.ttl, 900);
    assert_int_equal(parse(ARGC(tok2), tok2, &a, err), 0);
    assert_int_equal(a.ttl, -1);
}

static void test_parse_list_cap(void **state)
{
    char *argv[2 + 2 * (KEYS_CLI_LIST_MAX + 1)];
    keys_cli_args_t a;
    char err[256];
    int n = 0;

    argv[n++] = "create";
    argv[n++] = "--name=x";
    for (int i = 0; i < KEYS_CLI_LIST_MAX; i++) {
        argv[n++] = "--cidr";
        argv[n++] = "10.0.0.1";
    }
    assert_int_equal(parse(n, argv, &a, err), 0);
    assert_int_equal(a.cidrs.n, KEYS_CLI_LIST_MAX);
    argv[n++] = "--cidr";
    argv[n++] = "10.0.0.2";
    expect_usage_error(n, argv, "--cidr: at most");
}

static void test_parse_help(void **state)
{
    char *c1[] = {"create", "--help"};           /* no --name: help wins */
    char *c2[] = {"get", "-h"};                  /* no ID */
    keys_cli_args_t a;
    char err[256];

    assert_int_equal(parse(ARGC(c1), c1, &a, err), 0);
    assert_true(a.help);
    assert_int_equal(parse(ARGC(c2), c2, &a, err), 0);
    assert_true(a.help);
}

static void test_parse_numbers_ok(void **state)
{
    char *argv[] = {"create", "--name", "n", "--rate", "1000000000", "--burst",
                    "1000000000", "--max-connections", "1"};
    char *frac[] = {"create", "--name", "n", "--rate", ".25"};
    keys_cli_args_t a;
    char err[256];

    assert_int_equal(parse(ARGC(argv), argv, &a, err), 0);
    assert_true(a.rate == 1e9);
    assert_int_equal(a.burst, 1000000000);
    assert_int_equal(a.max_connections, 1);
    assert_int_equal(parse(ARGC(frac), frac, &a, err), 0);
    assert_true(a.rate == 0.25);
}

/* A value that starts with '-' is still the flag's value. */
static void test_parse_dash_value(void **state)
{
    char *argv[] = {"create", "--name", "--weird", "--publish", "-x"};
    keys_cli_args_t a;
    char err[256];

    assert_int_equal(parse(ARGC(argv), argv, &a, err), 0);
    assert_string_equal(a.name, "--weird");
    assert_string_equal(a.publish.v[0], "-x");
}

/* ---- parsing: usage errors ------------------------------------------------ */

static void test_parse_commands_bad(void **state)
{
    char *none[] = {NULL};
    char *unknown[] = {"frobnicate"};
    char *empty[] = {""};
    char *upper[] = {"LIST"};
    keys_cli_args_t a;
    char err[256];

    assert_int_equal(parse(0, none, &a, err), -1);
    expect_usage_error(1, unknown, "unknown command \"frobnicate\"");
    expect_usage_error(1, empty, "unknown command");
    expect_usage_error(1, upper, "unknown command");
}

static void test_parse_ids_bad(void **state)
{
    char *missing[] = {"get"};
    char *two[] = {"revoke", "a1", "b2"};
    char *bad[] = {"usage", "a-1"};
    char *long_id[] = {"get", "x"};
    char *on_list[] = {"list", "abc"};
    char *on_create[] = {"create", "--name", "n", "abc"};
    char *on_token[] = {"token", "abc"};
    char id[KEYS_CLI_ID_MAX + 2];

    memset(id, 'a', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    long_id[1] = id;
    expect_usage_error(ARGC(missing), missing, "needs a key ID");
    expect_usage_error(ARGC(two), two, "one key ID");
    expect_usage_error(ARGC(bad), bad, "letters and digits");
    expect_usage_error(ARGC(long_id), long_id, "1 to 64");
    expect_usage_error(ARGC(on_list), on_list, "takes no argument");
    expect_usage_error(ARGC(on_create), on_create, "takes no argument");
    expect_usage_error(ARGC(on_token), on_token, "takes no argument");
}

static void test_parse_flags_bad(void **state)
{
    char *unknown[] = {"list", "--bogus"};
    char *single[] = {"list", "-x"};
    char *dashes[] = {"list", "--"};
    char *other_cmd[] = {"list", "--name", "x"};
    char *grace_on_get[] = {"get", "a1", "--grace", "1"};
    char *ttl_on_create[] = {"create", "--name", "n", "--ttl", "1"};
    char *no_value[] = {"create", "--name"};
    char *empty_value[] = {"create", "--name="};
    char *bool_value[] = {"list", "--json=yes"};
    char *twice[] = {"create", "--name", "a", "--name", "b"};
    char *twice_int[] = {"rotate", "a1", "--grace", "1", "--grace=2"};
    char *twice_rate[] = {"create", "--name", "a", "--rate", "1", "--rate", "2"};
    char *no_name[] = {"create", "--admin"};
    char *burst_alone[] = {"create", "--name", "a", "--burst", "5"};
    char *both_keys[] = {"list", "--key", "k", "--key-file", "f"};

    expect_usage_error(ARGC(unknown), unknown, "unknown option --bogus");
    expect_usage_error(ARGC(single), single, "unknown option");
    expect_usage_error(ARGC(dashes), dashes, "unknown option");
    expect_usage_error(ARGC(other_cmd), other_cmd, "--name does not apply to \"list\"");
    expect_usage_error(ARGC(grace_on_get), grace_on_get, "--grace does not apply");
    expect_usage_error(ARGC(ttl_on_create), ttl_on_create, "--ttl does not apply");
    expect_usage_error(ARGC(no_value), no_value, "--name needs a value");
    expect_usage_error(ARGC(empty_value), empty_value, "--name needs a value");
    expect_usage_error(ARGC(bool_value), bool_value, "--json takes no value");
    expect_usage_error(ARGC(twice), twice, "--name given twice");
    expect_usage_error(ARGC(twice_int), twice_int, "--grace given twice");
    expect_usage_error(ARGC(twice_rate), twice_rate, "--rate given twice");
    expect_usage_error(ARGC(no_name), no_name, "needs --name");
    expect_usage_error(ARGC(burst_alone), burst_alone, "--burst needs --rate");
    expect_usage_error(ARGC(both_keys), both_keys, "not both");
}

static void test_parse_numbers_bad(void **state)
{
    static const struct { const char *flag, *value, *want; } rows[] = {
        {"--burst", "0", "--burst: expected"},
        {"--burst", "-1", "--burst: expected"},
        {"--burst", "1000000001", "--burst: expected"},
        {"--burst", "1.5", "--burst: expected"},
        {"--max-connections", "x", "--max-connections: expected"},
        {"--max-connections", " 5", "--max-connections: expected"},
        {"--rate", "0", "--rate: expected"},
        {"--rate", "0.0", "--rate: expected"},
        {"--rate", "-1", "--rate: expected"},
        {"--rate", "1e3", "--rate: expected"},
        {"--rate", "abc", "--rate: expected"},
        {"--rate", "1.2.3", "--rate: expected"},
        {"--rate", ".", "--rate: expected"},
        {"--rate", "1000000001", "--rate: expected"},
        {"--rate", "inf", "--rate: expected"},
        {"--expires-in", "1w", "--expires-in: expected"},
        {"--expires-in", "-1", "--expires-in: expected"},
        {"--expires-in", "36601d", "--expires-in: expected"},
    };

    for (size_t i = 0; i < NROWS(rows); i++) {
        char *argv[] = {"create", "--name", "n", "--rate", "1", (char *)rows[i].flag,
                        (char *)rows[i].value};
        int argc = ARGC(argv);

        if (strcmp(rows[i].flag, "--rate") == 0) {   /* drop the first --rate */
            argv[3] = argv[5];
            argv[4] = argv[6];
            argc -= 2;
        }
        expect_usage_error(argc, argv, rows[i].want);
    }
}

/* An ID or an unknown flag might be a secret typed in the wrong place:
 * no error text repeats it. */
static void test_parse_never_echoes_secrets(void **state)
{
    static const char secret[] = "sb_Ab12Cd34Ef56_SECRETsecretSECRET";
    char flag[sizeof secret + 8];
    char *as_id[] = {"get", (char *)secret};
    char *as_flag[] = {"list", flag};
    char *as_flag_value[] = {"list", "--kye=SECRETsecret"};
    char *as_cmd[] = {(char *)secret};
    char *as_dash[] = {"list", "-SECRETsecret"};
    char *as_bad_duration[] = {"token", "--ttl", "SECRETsecret"};
    char *const *cases[] = {as_id, as_flag, as_flag_value, as_cmd, as_dash, as_bad_duration};
    const int argcs[] = {2, 2, 2, 1, 2, 3};
    keys_cli_args_t a;
    char err[256];

    snprintf(flag, sizeof flag, "--%s", secret);
    for (size_t i = 0; i < NROWS(cases); i++) {
        assert_int_equal(parse(argcs[i], (char **)cases[i], &a, err), -1);
        assert_true(err[0] != '\0');
        if (strstr(err, "SECRET") != NULL)
            fail_msg("case %zu echoes the secret: %s", i, err);
    }
}

/* ---- the URL rule --------------------------------------------------------- */

static void test_url_allowed(void **state)
{
    static const struct { const char *url; bool https, loopback; } rows[] = {
        {"http://127.0.0.1:8080", false, true},
        {"http://127.0.0.1", false, true},
        {"http://127.9.8.7:1/", false, true},
        {"HTTP://LocalHost:8080/prefix/", false, true},
        {"http://localhost", false, true},
        {"http://[::1]:80/x", false, true},
        {"http://[::ffff:127.0.0.1]", false, true},
        {"http://[0:0:0:0:0:0:0:1]:65535", false, true},
        {"https://example.com", true, false},
        {"https://10.0.0.1:8443/sb", true, false},
        {"HTTPS://[2001:db8::1]", true, false},
        {"https://localhost", true, true},
    };

    for (size_t i = 0; i < NROWS(rows); i++) {
        keys_cli_target_t t;
        char err[256] = "";

        if (keys_cli_url_check(rows[i].url, false, &t, err, sizeof err) != 0)
            fail_msg("%s refused: %s", rows[i].url, err);
        assert_int_equal(t.https, rows[i].https);
        assert_int_equal(t.loopback, rows[i].loopback);
    }
}

static void test_url_plain_http_elsewhere(void **state)
{
    static const char *const rows[] = {
        "http://example.com", "http://10.0.0.1:8080", "http://127.0.0.1.nip.io",
        "http://localhost.evil.com", "http://localhostx", "http://[::2]",
        "http://[fe80::1]", "http://0.0.0.0:8080", "http://128.0.0.1",
        "http://127.1", "http://[::ffff:10.0.0.1]", "http://[::127.0.0.1]",
    };

    for (size_t i = 0; i < NROWS(rows); i++) {
        keys_cli_target_t t;
        char err[256] = "";

        if (keys_cli_url_check(rows[i], false, &t, err, sizeof err) != -1)
            fail_msg("%s accepted", rows[i]);
        assert_non_null(strstr(err, "--insecure"));
        assert_int_equal(keys_cli_url_check(rows[i], true, &t, err, sizeof err), 0);
        assert_false(t.loopback);
        assert_false(t.https);
    }
}

static void test_url_malformed(void **state)
{
    static const char *const rows[] = {
        "", "127.0.0.1:8080", "ftp://127.0.0.1", "file:///etc/passwd", "http:/127.0.0.1",
        "http://", "http:///x", "http://:8080", "http://user:pw@127.0.0.1",
        "http://127.0.0.1@evil.com", "http://127.0.0.1:8080?x=1", "http://127.0.0.1/#f",
        "http://[::1", "http://[::1]x", "http://[]:80", "http://127.0.0.1:0",
        "http://127.0.0.1:65536", "http://127.0.0.1:abc", "http://127.0.0.1:",
        "http://127.0.0.1:-1", "http://127.0.0.1:80:80",
    };
    char long_url[4200], long_host[300];

    for (size_t i = 0; i < NROWS(rows); i++) {
        keys_cli_target_t t;
        char err[256] = "";

        if (keys_cli_url_check(rows[i], true, &t, err, sizeof err) != -1)
            fail_msg("\"%s\" accepted", rows[i]);
        assert_true(err[0] != '\0');
    }
    memcpy(long_url, "http://127.0.0.1/", 17);
    memset(long_url + 17, 'a', sizeof long_url - 18);
    long_url[sizeof long_url - 1] = '\0';
    {
        keys_cli_target_t t;
        char err[256];

        assert_int_equal(keys_cli_url_check(long_url, true, &t, err, sizeof err), -1);
        memcpy(long_host, "https://", 8);
        memset(long_host + 8, 'h', 254);
        long_host[8 + 254] = '\0';
        assert_int_equal(keys_cli_url_check(long_host, true, &t, err, sizeof err), -1);
        long_host[8 + 253] = '\0';
        assert_int_equal(keys_cli_url_check(long_host, true, &t, err, sizeof err), 0);
    }
}

/* ---- key cleaning --------------------------------------------------------- */

static void test_clean_key_ok(void **state)
{
    char a[] = "sb_abc_def\n", b[] = "k \t\r\n\n", c[] = "x";
    size_t n;

    n = strlen(a);
    assert_int_equal(keys_cli_clean_key(a, &n), 0);
    assert_int_equal(n, 10);
    assert_string_equal(a, "sb_abc_def");
    n = strlen(b);
    assert_int_equal(keys_cli_clean_key(b, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(b, "k");
    n = strlen(c);
    assert_int_equal(keys_cli_clean_key(c, &n), 0);
    assert_int_equal(n, 1);
}

static void test_clean_key_bad(void **state)
{
    static const char *const rows[] = {
        "", "\n", " \t\r\n", "a b", " a", "a\x01", "a\x7f", "caf\xc3\xa9", "a\nb",
        "\x1b[31m",
    };

    for (size_t i = 0; i < NROWS(rows); i++) {
        char s[16];
        size_t n = strlen(rows[i]);

        memcpy(s, rows[i], n + 1);
        if (keys_cli_clean_key(s, &n) != -1)
            fail_msg("row %zu accepted", i);
        assert_int_equal(n, strlen(rows[i]));
    }
}

static void test_clean_key_cap(void **state)
{
    char *s = malloc(KEYS_CLI_KEY_MAX + 3);
    size_t n = KEYS_CLI_KEY_MAX;

    assert_non_null(s);
    memset(s, 'k', KEYS_CLI_KEY_MAX + 1);
    s[KEYS_CLI_KEY_MAX + 1] = '\n';
    assert_int_equal(keys_cli_clean_key(s, &n), 0);
    assert_int_equal(n, KEYS_CLI_KEY_MAX);
    memset(s, 'k', KEYS_CLI_KEY_MAX + 1);
    n = KEYS_CLI_KEY_MAX + 2;              /* KEY_MAX + 1 bytes, then '\n' */
    assert_int_equal(keys_cli_clean_key(s, &n), -1);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_ok),
        cmocka_unit_test(test_duration_bad),
        cmocka_unit_test(test_valid_id),
        cmocka_unit_test(test_parse_create_every_flag),
        cmocka_unit_test(test_parse_defaults),
        cmocka_unit_test(test_parse_commands_with_id),
        cmocka_unit_test(test_parse_rotate_and_token),
        cmocka_unit_test(test_parse_list_cap),
        cmocka_unit_test(test_parse_help),
        cmocka_unit_test(test_parse_numbers_ok),
        cmocka_unit_test(test_parse_dash_value),
        cmocka_unit_test(test_parse_commands_bad),
        cmocka_unit_test(test_parse_ids_bad),
        cmocka_unit_test(test_parse_flags_bad),
        cmocka_unit_test(test_parse_numbers_bad),
        cmocka_unit_test(test_parse_never_echoes_secrets),
        cmocka_unit_test(test_url_allowed),
        cmocka_unit_test(test_url_plain_http_elsewhere),
        cmocka_unit_test(test_url_malformed),
        cmocka_unit_test(test_clean_key_ok),
        cmocka_unit_test(test_clean_key_bad),
        cmocka_unit_test(test_clean_key_cap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
