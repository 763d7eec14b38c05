/*
 * fuzz_keys_cli.c - the pure parts of `switchboard keys` / `token`.
 *
 * The input, split on NUL, is an argument vector (at most FZ_ARGS words);
 * each word is also a duration, a key id and a URL, and the whole input is
 * the content of a key file. Properties, from the contracts in keys_cli.h:
 *   - keys_cli_parse: on success every string is borrowed from argv (it
 *     points into one argument), lists hold at most KEYS_CLI_LIST_MAX
 *     values, numbers are -1 or in their documented range, and unless help
 *     was asked the command's requirements hold (ID, --name, --burst with
 *     --rate, not both --key and --key-file); on failure the message is
 *     printable, fits its buffer, and carries none of the bytes that only
 *     an echoed value could bring (so no value or ID is echoed);
 *   - keys_cli_duration and keys_cli_valid_id agree with an independent
 *     reading of their grammar, a failed duration leaves *out untouched,
 *     and a parsed duration printed back in seconds parses the same;
 *   - keys_cli_url_check: accepted URLs are http(s) without query,
 *     fragment or user info, https is reported truly, plain http is
 *     accepted only for loopback unless insecure, and insecure accepts a
 *     superset with the same verdict on https/loopback; every generated
 *     http://127.a.b.c:port/ is loopback;
 *   - keys_cli_clean_key agrees with an independent cleaning.
 */
#undef NDEBUG                    /* the checks below are the point */
#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/keys_cli.h"

#define FZ_ARGS 160
#define FZ_ERR 200

static void fz_check_err(const char *err, size_t cap)
{
    size_t i, n = strnlen(err, cap);

    assert(n > 0 && n < cap);
    for (i = 0; i < n; i++) {
        assert(err[i] >= 0x20 && err[i] < 0x7f);
        assert(!strchr("~^|`{}$#@!&*;<>\\", err[i]));
    }
}

/* s is NULL, or points into one of the arguments. */
static void fz_borrowed(const char *s, int argc, char **argv)
{
    int i;

    if (!s)
        return;
    for (i = 0; i < argc; i++)
        if (s >= argv[i] && s <= argv[i] + strlen(argv[i]))
            return;
    abort();
}

static void fz_check_list(const keys_cli_list_t *l, int argc, char **argv)
{
    size_t i;

    assert(l->n <= KEYS_CLI_LIST_MAX);
    for (i = 0; i < l->n; i++) {
        assert(l->v[i] && l->v[i][0]);
        fz_borrowed(l->v[i], argc, argv);
    }
}

static bool fz_takes_id(keys_cli_cmd_t c)
{
    return c == KEYS_CLI_GET || c == KEYS_CLI_REVOKE ||
           c == KEYS_CLI_ROTATE || c == KEYS_CLI_USAGE;
}

static void fz_check_args(const keys_cli_args_t *a, int argc, char **argv)
{
    const char *s[] = { a->id, a->url, a->key, a->key_file, a->name,
                        a->tenant };
    const int64_t *d[] = { &a->expires_in, &a->grace, &a->ttl };
    const int64_t *n[] = { &a->burst, &a->max_connections };
    size_t i;

    assert(a->cmd < KEYS_CLI_NCMDS);
    for (i = 0; i < sizeof s / sizeof s[0]; i++)
        fz_borrowed(s[i], argc, argv);
    fz_check_list(&a->publish, argc, argv);
    fz_check_list(&a->subscribe, argc, argv);
    fz_check_list(&a->history, argc, argv);
    fz_check_list(&a->events, argc, argv);
    fz_check_list(&a->cidrs, argc, argv);
    for (i = 0; i < 3; i++)
        assert(*d[i] == -1 || (*d[i] >= 0 && *d[i] <= KEYS_CLI_DURATION_MAX));
    for (i = 0; i < 2; i++)
        assert(*n[i] == -1 || (*n[i] >= 1 && *n[i] <= KEYS_CLI_INT_MAX));
    assert(a->rate == -1 || (a->rate > 0 && a->rate <= KEYS_CLI_RATE_MAX));
    if (a->id)
        assert(keys_cli_valid_id(a->id) && fz_takes_id(a->cmd));
    if (a->help)
        return;
    assert(!fz_takes_id(a->cmd) || a->id);
    assert(a->cmd != KEYS_CLI_CREATE || a->name);
    assert(a->burst == -1 || a->rate > 0);
    assert(!(a->key && a->key_file));
}

static void fz_parse(int argc, char **argv)
{
    char err[FZ_ERR], tiny[8];
    keys_cli_args_t a;

    memset(err, 'X', sizeof err);
    if (keys_cli_parse(argc, argv, &a, err, sizeof err) == 0) {
        fz_check_args(&a, argc, argv);
        return;
    }
    fz_check_err(err, sizeof err);
    memset(tiny, 'X', sizeof tiny);
    assert(keys_cli_parse(argc, argv, &a, tiny, sizeof tiny) == -1);
    assert(memchr(tiny, 0, sizeof tiny) != NULL);
}

/* The duration grammar read independently: -1, or 0 with the seconds. */
static int fz_duration(const char *s, int64_t *out)
{
    size_t len = strlen(s), i;
    int64_t unit = 1, v = 0;

    if (len && strchr("smhd", s[len - 1])) {
        unit = s[len - 1] == 's' ? 1 : s[len - 1] == 'm' ? 60
             : s[len - 1] == 'h' ? 3600 : 86400;
        len--;
    }
    if (len == 0)
        return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
        if (v > KEYS_CLI_DURATION_MAX)
            return -1;
    }
    if (v > KEYS_CLI_DURATION_MAX / unit)
        return -1;
    *out = v * unit;
    return 0;
}

static void fz_check_duration(const char *s)
{
    int64_t got = -7, want = -9, again = -5;
    char text[32];
    int rc = keys_cli_duration(s, &got);

    assert(rc == fz_duration(s, &want));
    if (rc != 0) {
        assert(got == -7);
        return;
    }
    assert(got == want && got >= 0 && got <= KEYS_CLI_DURATION_MAX);
    snprintf(text, sizeof text, "%" PRId64 "s", got);
    assert(keys_cli_duration(text, &again) == 0 && again == got);
    if (got % 86400 == 0) {
        snprintf(text, sizeof text, "%" PRId64 "d", got / 86400);
        assert(keys_cli_duration(text, &again) == 0 && again == got);
    }
}

static void fz_check_id(const char *s)
{
    size_t i, n = strlen(s);
    bool ok = n >= 1 && n <= KEYS_CLI_ID_MAX;

    for (i = 0; ok && i < n; i++)
        ok = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
             (s[i] >= 'A' && s[i] <= 'Z');
    assert(keys_cli_valid_id(s) == ok);
}

static void fz_check_url(const char *url)
{
    keys_cli_target_t strict, loose;
    char err[FZ_ERR];
    const char *auth;
    size_t alen;
    int rs, rl;

    memset(err, 'X', sizeof err);
    rs = keys_cli_url_check(url, false, &strict, err, sizeof err);
    if (rs != 0)
        fz_check_err(err, sizeof err);
    rl = keys_cli_url_check(url, true, &loose, err, sizeof err);
    if (rs == 0) {
        assert(rl == 0 && strict.https == loose.https &&
               strict.loopback == loose.loopback);
        assert(strict.https || strict.loopback);
    }
    if (rl != 0)
        return;
    if (rs != 0)
        assert(!loose.https && !loose.loopback);
    assert(loose.https ? strncasecmp(url, "https://", 8) == 0
                       : strncasecmp(url, "http://", 7) == 0);
    assert(!strpbrk(url, "?#"));
    auth = url + (loose.https ? 8 : 7);
    alen = strcspn(auth, "/");
    assert(!memchr(auth, '@', alen) && alen > 0);
    if (loose.loopback)
        assert((alen >= 9 && strncasecmp(auth, "localhost", 9) == 0) ||
               strncmp(auth, "127.", 4) == 0 || auth[0] == '[');
}

/* http://127.a.b.c:port/path built from the first bytes: always loopback. */
static void fz_check_loopback(const uint8_t *d, size_t size)
{
    keys_cli_target_t t;
    char url[64], err[FZ_ERR];

    if (size < 5)
        return;
    snprintf(url, sizeof url, "HTTP://127.%u.%u.%u:%u/p", d[0], d[1], d[2],
             1u + (unsigned)(d[3] << 8 | d[4]) % 65535u);
    assert(keys_cli_url_check(url, false, &t, err, sizeof err) == 0);
    assert(!t.https && t.loopback);
}

static void fz_check_clean(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    size_t n = size, len = size, i;
    bool ok;

    assert(s);
    if (size)
        memcpy(s, data, size);
    while (n && strchr(" \t\r\n", data[n - 1]) && data[n - 1])
        n--;
    ok = n >= 1 && n <= KEYS_CLI_KEY_MAX;
    for (i = 0; ok && i < n; i++)
        ok = data[i] > 0x20 && data[i] < 0x7f;
    if (keys_cli_clean_key(s, &len) == 0) {
        assert(ok && len == n && s[len] == 0 && memcmp(s, data, n) == 0);
    } else {
        assert(!ok && len == size);
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy, *argv[FZ_ARGS + 1], *p, *end;
    int argc = 0, i;

    if (size > 2 * KEYS_CLI_KEY_MAX)
        return 0;
    fz_check_clean(data, size);
    fz_check_loopback(data, size);
    copy = malloc(size + 1);
    assert(copy);
    if (size)
        memcpy(copy, data, size);
    copy[size] = 0;
    for (p = copy, end = copy + size; p <= end && argc < FZ_ARGS;
         p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    fz_parse(argc, argv);
    for (i = 0; i < argc; i++) {
        fz_check_duration(argv[i]);
        fz_check_id(argv[i]);
        fz_check_url(argv[i]);
    }
    free(copy);
    return 0;
}
