/*
 * test_config.c - configuration precedence (defaults < file < env <
 * flags), bounds, suffixes, stream validation, and webhook sources: every
 * kind, every refusal (with the secret kept out of the message) and the
 * GITHUB_WEBHOOK_SECRET / KAKAO_SIGNATURE_SECRET shortcuts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ops/config.h"

static char path[64];

static const char *write_file(const char *text)
{
    FILE *f;

    snprintf(path, sizeof path, "/tmp/sb-config-%d.json", (int)getpid());
    f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static int load(config_t *c, const char *file, int argc, char **argv, char *err)
{
    return config_load(c, file, argc, argv, err, 256);
}

static void test_defaults(void **state)
{
    config_t c;
    char err[256];
    char *argv[] = {"serve"};

    assert_int_equal(load(&c, NULL, 1, argv, err), 0);
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.max_body, 4 * 1024 * 1024);
    assert_int_equal(c.heartbeat_ms, 30000);
    assert_int_equal(c.outbound_queue, 1024 * 1024);
    assert_string_equal(c.fsync, "full");
    assert_int_equal(c.nstreams, 1);
    assert_string_equal(c.streams[0].name, "webhooks");
    assert_string_equal(c.streams[0].subjects[0], "webhooks.>");
    assert_int_equal(c.streams[0].max_age_ms, 7LL * 86400 * 1000);
    config_free(&c);
}

static void test_precedence(void **state)
{
    config_t c;
    char err[256];
    const char *f = write_file("{\"port\": 9000, \"log_level\": \"warn\", "
                               "\"limits\": {\"max_body\": 1000}, "
                               "\"delivery\": {\"heartbeat_ms\": \"5s\"}}");
    char *argv[] = {"serve", "--max-body", "2k"};

    setenv("PORT", "9100", 1);
    assert_int_equal(load(&c, f, 3, argv, err), 0);
    assert_int_equal(c.port, 9100);            /* env beats file */
    assert_string_equal(c.log_level, "warn");  /* file beats default */
    assert_int_equal(c.max_body, 2048);        /* flag beats file */
    assert_int_equal(c.heartbeat_ms, 5000);
    config_free(&c);
    unsetenv("PORT");
}

static void test_errors(void **state)
{
    config_t c;
    char err[256];
    char *unknown[] = {"serve", "--nope", "1"};
    char *range[] = {"serve", "--port", "70000"};
    char *notnum[] = {"serve", "--port", "80a"};
    char *novalue[] = {"serve", "--port"};
    char *badfsync[] = {"serve", "--store-fsync", "sometimes"};
    char *badlevel[] = {"serve", "--log-level", "loud"};

    assert_int_equal(load(&c, NULL, 3, unknown, err), -1);
    assert_non_null(strstr(err, "unknown option"));
    assert_int_equal(load(&c, NULL, 3, range, err), -1);
    assert_non_null(strstr(err, "between"));
    assert_int_equal(load(&c, NULL, 3, notnum, err), -1);
    assert_int_equal(load(&c, NULL, 2, novalue, err), -1);
    assert_int_equal(load(&c, NULL, 3, badfsync, err), -1);
    assert_int_equal(load(&c, NULL, 3, badlevel, err), -1);
    setenv("SWITCHBOARD_MAX_BODY", "-5", 1);
    assert_int_equal(load(&c, NULL, 1, unknown, err), -1);
    unsetenv("SWITCHBOARD_MAX_BODY");
}

static void test_file_errors(void **state)
{
    config_t c;
    char err[256];
    char *argv[] = {"serve"};

    assert_int_equal(load(&c, write_file("{\"port\": "), 1, argv, err), -1);
    assert_int_equal(load(&c, write_file("[1]"), 1, argv, err), -1);
    assert_int_equal(load(&c, write_file("{\"port\": \"x\"}"), 1, argv, err), -1);
    assert_int_equal(load(&c, write_file("{\"host\": 5}"), 1, argv, err), -1);
    assert_int_equal(load(&c, write_file("{\"port\": 1, \"port\": 2}"), 1, argv, err), -1);
    assert_int_equal(load(&c, "/nonexistent/sb.json", 1, argv, err), -1);
}

static void test_streams(void **state)
{
    config_t c;
    char err[256];
    char *argv[] = {"serve"};
    const char *f = write_file(
        "{\"retention\": {\"max_msgs\": 10}, \"streams\": ["
        "{\"name\": \"a\", \"subjects\": [\"a.>\", \"b.*\"], \"max_age_ms\": 1000},"
        "{\"name\": \"c\", \"subjects\": [\"c\"], \"max_bytes\": 5}]}");

    assert_int_equal(load(&c, f, 1, argv, err), 0);
    assert_int_equal(c.nstreams, 2);
    assert_int_equal(c.streams[0].nsubjects, 2);
    assert_int_equal(c.streams[0].max_age_ms, 1000);
    assert_int_equal(c.streams[0].max_msgs, 10);   /* the default applies */
    assert_int_equal(c.streams[1].max_bytes, 5);
    config_free(&c);

    assert_int_equal(load(&c, write_file("{\"streams\": [{\"name\": \"x\", \"subjects\": [\"a.>.b\"]}]}"),
                          1, argv, err), -1);
    assert_non_null(strstr(err, "invalid subject"));
    assert_int_equal(load(&c, write_file("{\"streams\": [{\"name\": \"x\", \"subjects\": []}]}"),
                          1, argv, err), -1);
    assert_int_equal(load(&c, write_file("{\"streams\": [{\"subjects\": [\"a\"]}]}"),
                          1, argv, err), -1);
    assert_int_equal(load(&c, write_file("{\"streams\": [{\"name\": \"x\", \"subjects\": [\"a\"], "
                                         "\"max_msgs\": -1}]}"), 1, argv, err), -1);
    unlink(path);
}

/* ---- webhook sources ---- */

#define WHSEC "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"   /* 24 bytes of key */

static const char *find_source(const config_t *c, const char *name, size_t *i)
{
    for (*i = 0; *i < c->nsources; (*i)++)
        if (strcmp(c->sources[*i].name, name) == 0)
            return c->sources[*i].name;
    return NULL;
}

static void clear_source_env(void)
{
    unsetenv("GITHUB_WEBHOOK_SECRET");
    unsetenv("KAKAO_SIGNATURE_SECRET");
    unsetenv("SB_TEST_ACME_SECRET");
}

static void test_sources(void **state)
{
    config_t c;
    char err[256];
    char *argv[] = {"serve"};
    size_t i;
    const char *f = write_file(
        "{\"sources\": {"
        "\"github\": {\"verify\": \"github\", \"secret_env\": \"SB_TEST_ACME_SECRET\"},"
        "\"billing\": {\"verify\": \"standard\", \"secret\": \"" WHSEC "\", \"tolerance_s\": 60,"
        "  \"tenant\": \"acme-co\"},"
        "\"acme\": {\"verify\": \"hmac\", \"secret\": \"s3cret\", \"header\": \"X-Acme-Signature\","
        "  \"algorithm\": \"sha1\", \"encoding\": \"base64\", \"prefix\": \"sha1=\"},"
        "\"kakao\": {\"verify\": \"kakao\", \"secret\": \"k\"},"
        "\"open:1@x~y-z_\": {\"verify\": \"none\"}}}");

    clear_source_env();
    setenv("SB_TEST_ACME_SECRET", "from-env", 1);
    assert_int_equal(load(&c, f, 1, argv, err), 0);
    assert_int_equal(c.nsources, 5);
    assert_non_null(find_source(&c, "github", &i));
    assert_string_equal(c.sources[i].verify, "github");
    assert_string_equal(c.sources[i].secret, "from-env");
    assert_string_equal(c.sources[i].tenant, "default");
    assert_non_null(find_source(&c, "billing", &i));
    assert_string_equal(c.sources[i].verify, "standard");
    assert_string_equal(c.sources[i].secret, WHSEC);
    assert_int_equal(c.sources[i].tolerance_s, 60);
    assert_string_equal(c.sources[i].tenant, "acme-co");
    assert_null(c.sources[i].header);
    assert_non_null(find_source(&c, "acme", &i));
    assert_string_equal(c.sources[i].header, "X-Acme-Signature");
    assert_string_equal(c.sources[i].algorithm, "sha1");
    assert_string_equal(c.sources[i].encoding, "base64");
    assert_string_equal(c.sources[i].prefix, "sha1=");
    assert_int_equal(c.sources[i].tolerance_s, 0);
    assert_non_null(find_source(&c, "kakao", &i));
    assert_string_equal(c.sources[i].secret, "k");
    assert_non_null(find_source(&c, "open:1@x~y-z_", &i));
    assert_string_equal(c.sources[i].verify, "none");
    assert_null(c.sources[i].secret);
    config_free(&c);
    assert_null(c.sources);
    assert_int_equal(c.nsources, 0);

    /* no "sources" and no shortcut variables: none */
    assert_int_equal(load(&c, NULL, 1, argv, err), 0);
    assert_int_equal(c.nsources, 0);
    config_free(&c);
    clear_source_env();
}

/* Loads {"sources": {<body>}}, expects failure with want in err, and
 * checks that the secret never appears in err. */
static void source_error(const char *body, const char *want)
{
    config_t c;
    char err[256] = "";
    char text[1024];
    char *argv[] = {"serve"};

    snprintf(text, sizeof text, "{\"sources\": {%s}}", body);
    if (load(&c, write_file(text), 1, argv, err) != -1)
        fail_msg("loaded: %s", body);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\" for %s", err, want, body);
    assert_null(strstr(err, "s3cret"));
    assert_null(strstr(err, "MfKQ9r8"));
    assert_null(strchr(err, '\n'));
}

static void test_source_errors(void **state)
{
    clear_source_env();
    source_error("\"gh\": {\"verify\": \"github\", \"secret\": \"s3cret\", \"secrett\": \"x\"}",
                 "unknown member \"secrett\"");
    source_error("\"gh\": {\"verify\": \"github\", \"secret\": \"s3cret\", "
                 "\"secret_env\": \"SB_TEST_ACME_SECRET\"}", "not both");
    source_error("\"gh\": {\"verify\": \"github\", \"secret_env\": \"SB_TEST_ACME_SECRET\"}",
                 "SB_TEST_ACME_SECRET (secret_env) is not set or empty");
    setenv("SB_TEST_ACME_SECRET", "", 1);
    source_error("\"gh\": {\"verify\": \"github\", \"secret_env\": \"SB_TEST_ACME_SECRET\"}",
                 "is not set or empty");
    unsetenv("SB_TEST_ACME_SECRET");
    source_error("\"gh\": {\"verify\": \"github\", \"secret_env\": \"\"}",
                 "must name an environment variable");
    source_error("\"gh\": {\"verify\": \"github\", \"secret_env\": 5}",
                 "must name an environment variable");
    source_error("\"gh\": {\"verify\": \"gitlab\", \"secret\": \"s3cret\"}", "unknown kind");
    source_error("\"gh\": {\"secret\": \"s3cret\"}", "\"verify\" is required");
    source_error("\"gh\": {\"verify\": 1}", "\"verify\" is required");
    source_error("\"gh\": {\"verify\": \"github\"}", "a secret of 1 to 1024 bytes is required");
    source_error("\"gh\": {\"verify\": \"none\", \"secret\": \"s3cret\"}", "takes no secret");
    source_error("\"b\": {\"verify\": \"standard\", \"secret\": \"s3cret\"}", "whsec_");
    source_error("\"b\": {\"verify\": \"standard\", \"secret\": \"whsec_MfKQ9r8!!\"}", "base64");
    source_error("\"b\": {\"verify\": \"standard\", \"secret\": \"whsec_MfKQ9r8=\"}",
                 "at least 16 bytes");
    source_error("\"b\": {\"verify\": \"standard\", \"secret\": \"" WHSEC "\", \"tolerance_s\": 0.5}",
                 "\"tolerance_s\" must be a number");
    source_error("\"b\": {\"verify\": \"standard\", \"secret\": \"" WHSEC "\", "
                 "\"tolerance_s\": 86401}", "tolerance");
    source_error("\"b\": {\"verify\": \"github\", \"secret\": \"s3cret\", \"tolerance_s\": 10}",
                 "tolerance applies only to kind standard");
    source_error("\"h\": {\"verify\": \"hmac\", \"secret\": \"s3cret\"}", "hmac needs option header");
    source_error("\"h\": {\"verify\": \"hmac\", \"secret\": \"s3cret\", \"header\": \"X-A\", "
                 "\"algorithm\": \"md5\"}", "algorithm");
    source_error("\"h\": {\"verify\": \"hmac\", \"secret\": \"s3cret\", \"header\": \"X-A\", "
                 "\"encoding\": \"base32\"}", "encoding");
    source_error("\"h\": {\"verify\": \"hmac\", \"secret\": \"s3cret\", \"header\": 7}",
                 "\"header\" must be a string");
    source_error("\"gh\": {\"verify\": \"github\", \"secret\": \"s3cret\", \"prefix\": \"x\"}",
                 "apply only to kind hmac");
    source_error("\"gh\": {\"verify\": \"github\", \"secret\": \"s3cret\", \"tenant\": \"a.b\"}",
                 "tenant must be");
    source_error("\"gh\": {\"verify\": \"github\", \"secret\": \"s3cret\", \"tenant\": \"\"}",
                 "tenant must be");
    source_error("\"a.b\": {\"verify\": \"none\"}", "source name");
    source_error("\"a b\": {\"verify\": \"none\"}", "source name");
    source_error("\"\": {\"verify\": \"none\"}", "source name");
    source_error("\"gh\": [1]", "sources.gh: must be an object");
    source_error("\"gh\": {\"verify\": \"github\", \"secret\": 5}", "\"secret\" must be a string");
}

static void test_source_file_shape(void **state)
{
    config_t c;
    char err[256];
    char *argv[] = {"serve"};
    char text[32 * 300];
    size_t n;

    clear_source_env();
    assert_int_equal(load(&c, write_file("{\"sources\": [1]}"), 1, argv, err), -1);
    assert_non_null(strstr(err, "sources must be an object"));
    /* at most 256 sources */
    n = (size_t)snprintf(text, sizeof text, "{\"sources\": {");
    for (int i = 0; i < 257; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%s\"s%d\": {\"verify\": \"none\"}",
                              i ? "," : "", i);
    snprintf(text + n, sizeof text - n, "}}");
    assert_int_equal(load(&c, write_file(text), 1, argv, err), -1);
    assert_non_null(strstr(err, "at most 256 sources"));
    /* 256 are fine */
    n = (size_t)snprintf(text, sizeof text, "{\"sources\": {");
    for (int i = 0; i < 256; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%s\"s%d\": {\"verify\": \"none\"}",
                              i ? "," : "", i);
    snprintf(text + n, sizeof text - n, "}}");
    assert_int_equal(load(&c, write_file(text), 1, argv, err), 0);
    assert_int_equal(c.nsources, 256);
    config_free(&c);
}

static void test_source_shortcuts(void **state)
{
    config_t c;
    char err[256];
    char *argv[] = {"serve"};
    char longsecret[1100];
    size_t i;

    clear_source_env();
    setenv("GITHUB_WEBHOOK_SECRET", "gh-s3cret", 1);
    setenv("KAKAO_SIGNATURE_SECRET", "kk-s3cret", 1);
    assert_int_equal(load(&c, NULL, 1, argv, err), 0);
    assert_int_equal(c.nsources, 2);
    assert_non_null(find_source(&c, "github", &i));
    assert_string_equal(c.sources[i].verify, "github");
    assert_string_equal(c.sources[i].secret, "gh-s3cret");
    assert_string_equal(c.sources[i].tenant, "default");
    assert_non_null(find_source(&c, "kakao", &i));
    assert_string_equal(c.sources[i].verify, "kakao");
    assert_string_equal(c.sources[i].secret, "kk-s3cret");
    config_free(&c);

    /* a source of that name in the file wins */
    assert_int_equal(load(&c, write_file("{\"sources\": {\"github\": {\"verify\": \"none\"}}}"),
                          1, argv, err), 0);
    assert_int_equal(c.nsources, 2);
    assert_non_null(find_source(&c, "github", &i));
    assert_string_equal(c.sources[i].verify, "none");
    assert_null(c.sources[i].secret);
    config_free(&c);

    /* empty means unset */
    setenv("GITHUB_WEBHOOK_SECRET", "", 1);
    unsetenv("KAKAO_SIGNATURE_SECRET");
    assert_int_equal(load(&c, NULL, 1, argv, err), 0);
    assert_int_equal(c.nsources, 0);
    config_free(&c);

    /* a secret the verifier refuses stops start-up, named by its variable */
    memset(longsecret, 's', sizeof longsecret - 1);
    longsecret[sizeof longsecret - 1] = '\0';
    memcpy(longsecret, "s3cret", 6);
    setenv("KAKAO_SIGNATURE_SECRET", longsecret, 1);
    assert_int_equal(load(&c, NULL, 1, argv, err), -1);
    assert_non_null(strstr(err, "KAKAO_SIGNATURE_SECRET: a secret of 1 to 1024 bytes"));
    assert_null(strstr(err, "s3cret"));
    clear_source_env();
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_source_errors),
        cmocka_unit_test(test_source_file_shape),
        cmocka_unit_test(test_source_shortcuts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
