/*
 * test_config.c - configuration precedence (defaults < file < env <
 * flags), bounds, suffixes and stream validation.
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
