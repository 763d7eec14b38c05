/*
 * keys_cli.h - `switchboard keys ...` and `switchboard token`: the
 * operator's client of a running server's admin API (docs/API.md), over
 * HTTP with libcurl.
 *
 * The commands run in one process and exit: parse the arguments (pure,
 * below), find the server's URL and the API key (flags, then environment,
 * then the admin key file the server wrote), refuse to send the key in
 * clear over the network, make one request, print the answer. The API key
 * is a secret: it is sent only in the Authorization header and never
 * printed, not even in an error.
 *
 * What is pure (no I/O, no environment, no allocation) is declared here
 * so the unit tests can reach it: argument parsing, durations, the URL
 * rule and the cleaning of a key read from a file.
 */
#ifndef SB_CLI_KEYS_CLI_H
#define SB_CLI_KEYS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes */
#define KEYS_CLI_OK 0
#define KEYS_CLI_EFAIL 1           /* the server refused or was unreachable */
#define KEYS_CLI_EUSAGE 2          /* bad arguments, no key: nothing sent */

#define KEYS_CLI_LIST_MAX 64       /* values of one repeated flag (the
                                      server's PERM_LIST_MAX, KEYS_CIDRS_MAX) */
#define KEYS_CLI_ID_MAX 64         /* bytes of a key id, [A-Za-z0-9] */
#define KEYS_CLI_KEY_MAX 8192      /* bytes of an API key (the server's
                                      AUTH_CRED_MAX); also the key file cap */
#define KEYS_CLI_DURATION_MAX (100ll * 366 * 86400)     /* seconds */
#define KEYS_CLI_INT_MAX 1000000000ll                   /* --burst etc. */
#define KEYS_CLI_RATE_MAX 1e9                           /* --rate */

typedef enum keys_cli_cmd {
    KEYS_CLI_CREATE,
    KEYS_CLI_LIST,
    KEYS_CLI_GET,
    KEYS_CLI_REVOKE,
    KEYS_CLI_ROTATE,
    KEYS_CLI_USAGE,
    KEYS_CLI_TOKEN,                /* `switchboard token`, not a keys command */
    KEYS_CLI_NCMDS
} keys_cli_cmd_t;

typedef struct keys_cli_list {
    const char *v[KEYS_CLI_LIST_MAX];
    size_t n;
} keys_cli_list_t;

/* Parsed arguments. Strings point into argv (borrowed, never copied);
 * NULL means not given, and so does -1 for the numbers. */
typedef struct keys_cli_args {
    keys_cli_cmd_t cmd;
    const char *id;                /* get, revoke, rotate, usage */
    /* every command */
    const char *url, *key, *key_file;
    bool json, insecure, help;
    /* create (tenant: list too) */
    const char *name, *tenant;
    keys_cli_list_t publish, subscribe, history, events, cidrs;
    bool admin;
    int64_t expires_in;            /* seconds */
    double rate;                   /* per second */
    int64_t burst, max_connections;
    /* rotate, token */
    int64_t grace, ttl;            /* seconds */
} keys_cli_args_t;

/*
 * Parses a command and its arguments: argv[0] is the command's name
 * ("create", "list", "get", "revoke", "rotate", "usage", "token"), the
 * rest its flags and its ID. Flags may come in any order, as "--flag
 * value" or "--flag=value"; a repeated list flag (--publish, --cidr, ...)
 * adds to the list, any other flag given twice is an error; a flag of
 * another command is an error. "-h"/"--help" sets help and then no
 * requirement (ID, --name) is checked. Returns 0 with *a filled, or -1
 * with a message in err (the usage error, which never echoes a flag's
 * value or an ID, as either might be a secret typed in the wrong place).
 */
int keys_cli_parse(int argc, char **argv, keys_cli_args_t *a, char *err,
                   size_t errlen);

/*
 * A duration: decimal digits with an optional suffix s, m, h or d (plain
 * means seconds), nothing else (no sign, space or fraction), at most
 * KEYS_CLI_DURATION_MAX seconds. Returns 0 with the seconds in *out, or
 * -1 (*out untouched).
 */
int keys_cli_duration(const char *s, int64_t *out);

/* A key id: 1..KEYS_CLI_ID_MAX bytes of [A-Za-z0-9], NUL-terminated. */
bool keys_cli_valid_id(const char *s);

typedef struct keys_cli_target {
    bool https;
    bool loopback;                 /* localhost, 127.0.0.0/8 or ::1 */
} keys_cli_target_t;

/*
 * Decides whether an API key may be sent to url: "http://" or "https://"
 * (any case), a host (name, dotted quad or [IPv6]) with an optional port,
 * an optional path; no user info, query or fragment. https may go
 * anywhere; plain http only to a loopback host (the name "localhost", an
 * address in 127.0.0.0/8, ::1 or ::ffff:127.x.y.z), unless insecure.
 * Returns 0 and fills *t, or -1 with the reason in err.
 */
int keys_cli_url_check(const char *url, bool insecure, keys_cli_target_t *t,
                       char *err, size_t errlen);

/*
 * Cleans a key read from a file in place: trailing whitespace (spaces,
 * tabs, CR, LF) is dropped and the rest must be 1..KEYS_CLI_KEY_MAX
 * bytes of printable ASCII without spaces (a key goes into an HTTP
 * header verbatim). s must hold *len bytes plus one; on success it is
 * NUL-terminated at the new *len and 0 is returned; else -1.
 */
int keys_cli_clean_key(char *s, size_t *len);

/* `switchboard keys <command> ...`: argv[0] is "keys". Returns the exit
 * code. */
int keys_cli_main(int argc, char **argv);

/* `switchboard token ...`: argv[0] is "token". Returns the exit code. */
int keys_cli_token_main(int argc, char **argv);

#endif
