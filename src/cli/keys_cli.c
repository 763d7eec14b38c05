/*
 * keys_cli.c - the key management client. See keys_cli.h.
 *
 * Shape: one table of flags (name, kind, where in keys_cli_args_t, which
 * commands take it) read by one parser; one table of commands, each a
 * small function that builds its request and prints its answer; one
 * request function that every command goes through (libcurl easy handle,
 * headers, body, status, JSON). So a new flag is a row and a new command
 * is a row plus a function.
 *
 * The key. It is found once (--key, --key-file, SWITCHBOARD_API_KEY, then
 * the key file the server writes on first start), held in one fixed
 * buffer, put only into the Authorization header and wiped from both at
 * exit. Plain http is allowed only to a loopback host (where curl is also
 * told to bypass any proxy), so the key does not cross a network in clear
 * unless the operator says --insecure. Redirects are not followed and only
 * http and https are allowed, so the header goes nowhere else.
 *
 * Everything the server sends is untrusted text: a reply is capped
 * (REPLY_MAX), must be JSON, and its strings are printed with control
 * characters replaced, so a name cannot drive the operator's terminal.
 */
#include "cli/keys_cli.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/errmsg.h"
#include "serve.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
#define URL_MAX 2048               /* bytes of the base URL */
#define HOST_MAX 253
#define REPLY_MAX (4u * 1024 * 1024)
#define TIMEOUT_MS 10000L
#define ERR_LEN 256
#define TABLE_COLS 6

/* ---- arguments ------------------------------------------------------------ */

enum flag_kind { F_BOOL, F_STR, F_LIST, F_INT, F_RATE, F_DURATION };

#define ON(c) (1u << (c))
#define ALL ((1u << KEYS_CLI_NCMDS) - 1)

typedef struct flag {
    const char *name;              /* without "--" */
    enum flag_kind kind;
    size_t off;                    /* of the field in keys_cli_args_t */
    unsigned cmds;                 /* ON() of each command that takes it */
} flag_t;

#define FLAG(name, kind, field, cmds) \
    {name, kind, offsetof(keys_cli_args_t, field), cmds}

static const flag_t flags[] = {
    FLAG("url", F_STR, url, ALL),
    FLAG("key", F_STR, key, ALL),
    FLAG("key-file", F_STR, key_file, ALL),
    FLAG("json", F_BOOL, json, ALL),
    FLAG("insecure", F_BOOL, insecure, ALL),
    FLAG("help", F_BOOL, help, ALL),
    FLAG("name", F_STR, name, ON(KEYS_CLI_CREATE)),
    FLAG("tenant", F_STR, tenant, ON(KEYS_CLI_CREATE) | ON(KEYS_CLI_LIST)),
    FLAG("publish", F_LIST, publish, ON(KEYS_CLI_CREATE)),
    FLAG("subscribe", F_LIST, subscribe, ON(KEYS_CLI_CREATE)),
    FLAG("history", F_LIST, history, ON(KEYS_CLI_CREATE)),
    FLAG("events", F_LIST, events, ON(KEYS_CLI_CREATE)),
    FLAG("admin", F_BOOL, admin, ON(KEYS_CLI_CREATE)),
    FLAG("cidr", F_LIST, cidrs, ON(KEYS_CLI_CREATE)),
    FLAG("expires-in", F_DURATION, expires_in, ON(KEYS_CLI_CREATE)),
    FLAG("rate", F_RATE, rate, ON(KEYS_CLI_CREATE)),
    FLAG("burst", F_INT, burst, ON(KEYS_CLI_CREATE)),
    FLAG("max-connections", F_INT, max_connections, ON(KEYS_CLI_CREATE)),
    FLAG("grace", F_DURATION, grace, ON(KEYS_CLI_ROTATE)),
    FLAG("ttl", F_DURATION, ttl, ON(KEYS_CLI_TOKEN)),
};
#define NFLAGS (sizeof flags / sizeof flags[0])

typedef struct ctx ctx_t;

typedef struct cmd {
    const char *name;
    bool takes_id;
    int (*run)(const ctx_t *c);
} cmd_t;

static int cmd_create(const ctx_t *c);
static int cmd_list(const ctx_t *c);
static int cmd_get(const ctx_t *c);
static int cmd_revoke(const ctx_t *c);
static int cmd_rotate(const ctx_t *c);
static int cmd_usage(const ctx_t *c);
static int cmd_token(const ctx_t *c);

static const cmd_t cmds[KEYS_CLI_NCMDS] = {
    [KEYS_CLI_CREATE] = {"create", false, cmd_create},
    [KEYS_CLI_LIST] = {"list", false, cmd_list},
    [KEYS_CLI_GET] = {"get", true, cmd_get},
    [KEYS_CLI_REVOKE] = {"revoke", true, cmd_revoke},
    [KEYS_CLI_ROTATE] = {"rotate", true, cmd_rotate},
    [KEYS_CLI_USAGE] = {"usage", true, cmd_usage},
    [KEYS_CLI_TOKEN] = {"token", false, cmd_token},
};

/* Digits only, value <= max. */
static int parse_uint(const char *s, size_t len, int64_t max, int64_t *out)
{
    int64_t v = 0;

    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v > (max - (s[i] - '0')) / 10)
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int keys_cli_duration(const char *s, int64_t *out)
{
    size_t len = strlen(s);
    int64_t unit = 1, v;

    if (len > 0 && (s[len - 1] < '0' || s[len - 1] > '9')) {
        switch (s[len - 1]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return -1;
        }
        len--;
    }
    if (parse_uint(s, len, KEYS_CLI_DURATION_MAX / unit, &v))
        return -1;
    *out = v * unit;
    return 0;
}

bool keys_cli_valid_id(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (n == KEYS_CLI_ID_MAX ||
            !((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'A' && s[n] <= 'Z') ||
              (s[n] >= 'a' && s[n] <= 'z')))
            return false;
    return n > 0;
}

/* A number > 0 and <= KEYS_CLI_RATE_MAX, "10" or "0.5"; no sign,
 * exponent or space. */
static int parse_rate(const char *s, double *out)
{
    char *end;
    double v;

    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            return -1;
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end || errno || !(v > 0 && v <= KEYS_CLI_RATE_MAX))
        return -1;
    *out = v;
    return 0;
}

static const flag_t *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

/* The flag's name for a message: itself when it is plainly a flag name,
 * else nothing (it might be a secret typed in the wrong place). */
static int echo_len(const char *name, size_t len)
{
    if (len > 32)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || name[i] == '-'))
            return 0;
    return (int)len;
}

/* Stores v (a flag's value, not a boolean's) in the field f names. */
static int set_value(keys_cli_args_t *a, const flag_t *f, const char *v,
                     char *err, size_t errlen)
{
    void *field = (char *)a + f->off;
    const char **str = field;
    keys_cli_list_t *list = field;
    int64_t *num = field, n;
    double *real = field;
    const char *want = "no value";

    if (*v == '\0') {
        errmsg(err, errlen, "--%s needs a value", f->name);
        return -1;
    }
    switch (f->kind) {
    case F_BOOL:
        break;
    case F_STR:
        if (*str != NULL)
            goto twice;
        *str = v;
        return 0;
    case F_LIST:
        if (list->n == KEYS_CLI_LIST_MAX) {
            errmsg(err, errlen, "--%s: at most %d values", f->name, KEYS_CLI_LIST_MAX);
            return -1;
        }
        list->v[list->n++] = v;
        return 0;
    case F_INT:
        if (*num >= 0)
            goto twice;
        if (parse_uint(v, strlen(v), KEYS_CLI_INT_MAX, &n) == 0 && n > 0) {
            *num = n;
            return 0;
        }
        want = "a whole number from 1 to 1000000000";
        break;
    case F_RATE:
        if (*real >= 0)
            goto twice;
        if (parse_rate(v, real) == 0)
            return 0;
        want = "a number above 0 (per second), e.g. 10 or 0.5";
        break;
    case F_DURATION:
        if (*num >= 0)
            goto twice;
        if (keys_cli_duration(v, num) == 0)
            return 0;
        want = "a whole number with an optional suffix s, m, h or d";
        break;
    }
    errmsg(err, errlen, "--%s: expected %s", f->name, want);
    return -1;
twice:
    errmsg(err, errlen, "--%s given twice", f->name);
    return -1;
}

/* One "--name[=value]" at argv[*i]; advances *i past a separate value. */
static int parse_flag(keys_cli_args_t *a, int argc, char **argv, int *i,
                      char *err, size_t errlen)
{
    const char *name = argv[*i] + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const flag_t *f = find_flag(name, len);

    if (f == NULL) {
        int n = echo_len(name, len);

        errmsg(err, errlen, "unknown option%s%.*s", n ? " --" : "", n, name);
        return -1;
    }
    if (!(f->cmds & ON(a->cmd))) {
        errmsg(err, errlen, "--%s does not apply to \"%s\"", f->name, cmds[a->cmd].name);
        return -1;
    }
    if (f->kind == F_BOOL) {
        if (eq) {
            errmsg(err, errlen, "--%s takes no value", f->name);
            return -1;
        }
        *(bool *)((char *)a + f->off) = true;
        return 0;
    }
    if (eq)
        return set_value(a, f, eq + 1, err, errlen);
    if (*i + 1 >= argc) {
        errmsg(err, errlen, "--%s needs a value", f->name);
        return -1;
    }
    return set_value(a, f, argv[++*i], err, errlen);
}

static int parse_positional(keys_cli_args_t *a, const char *arg, char *err,
                            size_t errlen)
{
    if (!cmds[a->cmd].takes_id) {
        errmsg(err, errlen, "\"%s\" takes no argument besides its options",
               cmds[a->cmd].name);
        return -1;
    }
    if (a->id != NULL) {
        errmsg(err, errlen, "\"%s\" takes one key ID", cmds[a->cmd].name);
        return -1;
    }
    if (!keys_cli_valid_id(arg)) {
        errmsg(err, errlen, "a key ID is 1 to %d letters and digits "
               "(the id, not the secret key)", KEYS_CLI_ID_MAX);
        return -1;
    }
    a->id = arg;
    return 0;
}

static int check_required(const keys_cli_args_t *a, char *err, size_t errlen)
{
    if (cmds[a->cmd].takes_id && a->id == NULL) {
        errmsg(err, errlen, "\"%s\" needs a key ID", cmds[a->cmd].name);
        return -1;
    }
    if (a->cmd == KEYS_CLI_CREATE && a->name == NULL) {
        errmsg(err, errlen, "\"create\" needs --name");
        return -1;
    }
    if (a->burst >= 0 && a->rate < 0) {
        errmsg(err, errlen, "--burst needs --rate");
        return -1;
    }
    if (a->key != NULL && a->key_file != NULL) {
        errmsg(err, errlen, "give --key or --key-file, not both");
        return -1;
    }
    return 0;
}

int keys_cli_parse(int argc, char **argv, keys_cli_args_t *a, char *err,
                   size_t errlen)
{
    int i;

    memset(a, 0, sizeof *a);
    a->expires_in = a->burst = a->max_connections = a->grace = a->ttl = -1;
    a->rate = -1;
    if (argc < 1 || argv[0] == NULL) {
        errmsg(err, errlen, "missing command");
        return -1;
    }
    for (i = 0; i < KEYS_CLI_NCMDS && strcmp(argv[0], cmds[i].name) != 0; i++)
        ;
    if (i == KEYS_CLI_NCMDS) {
        int n = echo_len(argv[0], strlen(argv[0]));

        errmsg(err, errlen, "unknown command%s%.*s%s", n ? " \"" : "", n, argv[0],
               n ? "\"" : "");
        return -1;
    }
    a->cmd = (keys_cli_cmd_t)i;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rc;

        if (strcmp(arg, "-h") == 0)
            a->help = true, rc = 0;
        else if (strncmp(arg, "--", 2) == 0 && arg[2] != '\0')
            rc = parse_flag(a, argc, argv, &i, err, errlen);
        else if (arg[0] == '-')
            errmsg(err, errlen, "unknown option"), rc = -1;
        else
            rc = parse_positional(a, arg, err, errlen);
        if (rc)
            return -1;
    }
    return a->help ? 0 : check_required(a, err, errlen);
}

/* ---- the URL rule and the key --------------------------------------------- */

static bool host_is_loopback(const char *host, size_t len, bool bracketed)
{
    char text[INET6_ADDRSTRLEN + 1];
    unsigned char addr[16];
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char one[16] = {[15] = 1};

    if (!bracketed && len == 9 && strncasecmp(host, "localhost", 9) == 0)
        return true;
    if (len >= sizeof text)
        return false;
    memcpy(text, host, len);
    text[len] = '\0';
    if (!bracketed)
        return inet_pton(AF_INET, text, addr) == 1 && addr[0] == 127;
    if (inet_pton(AF_INET6, text, addr) != 1)
        return false;
    return memcmp(addr, one, 16) == 0 ||
           (memcmp(addr, mapped, 12) == 0 && addr[12] == 127);
}

int keys_cli_url_check(const char *url, bool insecure, keys_cli_target_t *t,
                       char *err, size_t errlen)
{
    const char *auth, *end, *host, *host_end, *p;
    bool bracketed = false;

    memset(t, 0, sizeof *t);
    t->https = strncasecmp(url, "https://", 8) == 0;
    if (!t->https && strncasecmp(url, "http://", 7) != 0) {
        errmsg(err, errlen, "the URL must start with http:// or https://");
        return -1;
    }
    auth = url + (t->https ? 8 : 7);
    if (strlen(url) > URL_MAX || strpbrk(url, "?#") != NULL) {
        errmsg(err, errlen, "the URL: at most %d bytes, no query or fragment", URL_MAX);
        return -1;
    }
    end = auth + strcspn(auth, "/");
    if (memchr(auth, '@', (size_t)(end - auth)) != NULL) {
        errmsg(err, errlen, "the URL: user info is not supported (use --key)");
        return -1;
    }
    host = auth;
    if (*host == '[') {
        host++;
        host_end = memchr(host, ']', (size_t)(end - host));
        bracketed = true;
        p = host_end ? host_end + 1 : NULL;
    } else {
        host_end = memchr(host, ':', (size_t)(end - host));
        if (host_end == NULL)
            host_end = end;
        p = host_end;
    }
    if (p == NULL || host_end == host || host_end - host > HOST_MAX ||
        (p < end && *p != ':')) {
        errmsg(err, errlen, "the URL: bad host");
        return -1;
    }
    if (p < end) {
        int64_t port;

        if (parse_uint(p + 1, (size_t)(end - p - 1), 65535, &port) || port == 0) {
            errmsg(err, errlen, "the URL: bad port");
            return -1;
        }
    }
    t->loopback = host_is_loopback(host, (size_t)(host_end - host), bracketed);
    if (!t->https && !t->loopback && !insecure) {
        errmsg(err, errlen, "refusing to send the API key in clear over http to a host "
               "that is not loopback: use https, or --insecure if the network is trusted");
        return -1;
    }
    return 0;
}

int keys_cli_clean_key(char *s, size_t *len)
{
    size_t n = *len;

    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                     s[n - 1] == '\n'))
        n--;
    if (n == 0 || n > KEYS_CLI_KEY_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return -1;
    s[n] = '\0';
    *len = n;
    return 0;
}

/* ---- running a command ---------------------------------------------------- */

struct ctx {
    const keys_cli_args_t *a;
    char base[URL_MAX + 1];        /* URL without its trailing '/' */
    keys_cli_target_t target;
    char key[KEYS_CLI_KEY_MAX + 2];   /* secret: wiped at exit */
    size_t key_len;
};

/* Reads at most KEYS_CLI_KEY_MAX bytes of a regular file into c->key. 0,
 * or -1 with err (which names the file, never its content). */
static int read_key_file(ctx_t *c, const char *path, char *err, size_t errlen)
{
    struct stat st;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    int rc = -1;

    if (fd < 0) {
        errmsg(err, errlen, "cannot read the key file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        errmsg(err, errlen, "the key file %s is not a regular file", path);
        goto out;
    }
    while (n <= KEYS_CLI_KEY_MAX) {
        ssize_t r = read(fd, c->key + n, KEYS_CLI_KEY_MAX + 1 - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            errmsg(err, errlen, "cannot read the key file %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > KEYS_CLI_KEY_MAX || keys_cli_clean_key(c->key, &n)) {
        errmsg(err, errlen, "the key file %s does not hold an API key", path);
        goto out;
    }
    c->key_len = n;
    rc = 0;
out:
    close(fd);
    return rc;
}

/* The key, in this order: --key, --key-file, SWITCHBOARD_API_KEY, the
 * file the server writes (SWITCHBOARD_ADMIN_KEY_FILE, else
 * $SWITCHBOARD_DATA_DIR/admin.key, else ./var/admin.key). */
static int find_key(ctx_t *c, char *err, size_t errlen)
{
    const char *k = c->a->key, *file = c->a->key_file, *dir;
    char path[4096];

    if (k == NULL && file == NULL)
        k = getenv("SWITCHBOARD_API_KEY");
    if (k != NULL && *k != '\0') {
        size_t n = strlen(k);

        if (n > KEYS_CLI_KEY_MAX) {
            errmsg(err, errlen, "the API key is longer than %d bytes", KEYS_CLI_KEY_MAX);
            return -1;
        }
        memcpy(c->key, k, n);
        if (keys_cli_clean_key(c->key, &n)) {
            errmsg(err, errlen, "the API key must be printable ASCII without spaces");
            return -1;
        }
        c->key_len = n;
        return 0;
    }
    if (file == NULL)
        file = getenv("SWITCHBOARD_ADMIN_KEY_FILE");
    if (file == NULL || *file == '\0') {
        dir = getenv("SWITCHBOARD_DATA_DIR");
        if (dir == NULL || *dir == '\0')
            dir = "./var";
        if ((size_t)snprintf(path, sizeof path, "%s/admin.key", dir) >= sizeof path) {
            errmsg(err, errlen, "SWITCHBOARD_DATA_DIR is too long");
            return -1;
        }
        file = path;
    }
    if (read_key_file(c, file, err, errlen) == 0)
        return 0;
    if (c->a->key_file == NULL) {
        size_t used = strlen(err);

        errmsg(err + used, errlen - used, " (no API key: give --key, --key-file or "
               "SWITCHBOARD_API_KEY)");
    }
    return -1;
}

static int find_url(ctx_t *c, char *err, size_t errlen)
{
    const char *url = c->a->url ? c->a->url : getenv("SWITCHBOARD_URL");
    size_t n;

    if (url == NULL || *url == '\0')
        url = DEFAULT_URL;
    if (keys_cli_url_check(url, c->a->insecure, &c->target, err, errlen))
        return -1;
    n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    memcpy(c->base, url, n);
    c->base[n] = '\0';
    return 0;
}

/* ---- printing untrusted text ---------------------------------------------- */

/* s[0..len) with C0 and C1 control characters (and DEL) as '?'. */
static void put_clean(FILE *f, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
            (unsigned char)s[i + 1] <= 0x9f) {
            i++;
            ch = '?';
        } else if (ch < 0x20 || ch == 0x7f) {
            ch = '?';
        }
        fputc(ch, f);
    }
}

/* Characters (not bytes) put_clean prints for s[0..len). */
static size_t text_width(const char *s, size_t len)
{
    size_t w = 0;

    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            w++;
    return w;
}

static void put_string(FILE *f, const json_t *v)
{
    put_clean(f, json_string_value(v), json_string_length(v));
}

/* A value of a key's view on one line: null "-", booleans yes/no,
 * arrays comma-separated ("-" when empty), objects "name=value, ...". */
static void put_value(FILE *f, const json_t *v)
{
    const char *k;
    json_t *m;
    size_t i;
    bool first = true;

    switch (json_typeof(v)) {
    case JSON_STRING: put_string(f, v); break;
    case JSON_INTEGER: fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: fprintf(f, "%g", json_real_value(v)); break;
    case JSON_TRUE: fputs("yes", f); break;
    case JSON_FALSE: fputs("no", f); break;
    case JSON_NULL: fputs("-", f); break;
    case JSON_ARRAY:
        if (json_array_size(v) == 0)
            fputs("-", f);
        json_array_foreach(v, i, m) {
            fputs(first ? "" : ", ", f);
            put_value(f, m);
            first = false;
        }
        break;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, k, m) {
            fputs(first ? "" : ", ", f);
            put_clean(f, k, strlen(k));
            fputc('=', f);
            put_value(f, m);
            first = false;
        }
        break;
    }
}

static void put_json(const json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

typedef struct field {
    const char *label, *member;
} field_t;

static const field_t view_fields[] = {
    {"id", "id"}, {"tenant", "tenant"}, {"name", "name"}, {"status", "status"},
    {"created", "created_at"}, {"expires", "expires_at"}, {"revoked", "revoked_at"},
    {"rotated", "rotated_at"}, {"previous valid until", "previous_valid_until"},
    {"last used", "last_used_at"}, {"superadmin", "superadmin"}, {"cidrs", "cidrs"},
};
static const field_t perm_fields[] = {
    {"publish", "publish"}, {"subscribe", "subscribe"}, {"history", "history"},
    {"events", "events"}, {"admin", "admin"}, {"rate", "rate"},
    {"max connections", "max_connections"},
};

/* One "label   value" line per member of obj the table names; absent
 * members are skipped (an absent "events" means any, not none). */
static void put_fields(const json_t *obj, const field_t *fs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, fs[i].member);

        if (v == NULL)
            continue;
        printf("%-22s ", fs[i].label);
        put_value(stdout, v);
        fputc('\n', stdout);
    }
}

static void put_view(const json_t *view)
{
    put_fields(view, view_fields, sizeof view_fields / sizeof view_fields[0]);
    put_fields(json_object_get(view, "permissions"), perm_fields,
               sizeof perm_fields / sizeof perm_fields[0]);
}

static const char *cell(const json_t *row, const char *member, size_t *len)
{
    const json_t *v = json_object_get(row, member);

    if (!json_is_string(v)) {
        *len = 1;
        return "-";
    }
    *len = json_string_length(v);
    return json_string_value(v);
}

/* An aligned table: one column per member of the objects in rows. */
static void put_table(const char *const *heads, const char *const *members,
                      size_t ncol, const json_t *rows)
{
    size_t w[TABLE_COLS], len, r, c;
    const json_t *row;

    assert(ncol <= TABLE_COLS);
    for (c = 0; c < ncol; c++)
        w[c] = strlen(heads[c]);
    json_array_foreach(rows, r, row)
        for (c = 0; c < ncol; c++) {
            const char *s = cell(row, members[c], &len);

            if (text_width(s, len) > w[c])
                w[c] = text_width(s, len);
        }
    for (c = 0; c < ncol; c++)
        printf("%-*s%s", c + 1 < ncol ? (int)w[c] : 0, heads[c], c + 1 < ncol ? "  " : "\n");
    json_array_foreach(rows, r, row) {
        for (c = 0; c < ncol; c++) {
            const char *s = cell(row, members[c], &len);

            put_clean(stdout, s, len);
            if (c + 1 < ncol)
                printf("%*s", (int)(w[c] - text_width(s, len) + 2), "");
        }
        fputc('\n', stdout);
    }
}

/* ---- one request ---------------------------------------------------------- */

typedef struct reply {
    buf_t body;
    int64_t retry_after;           /* seconds; -1 = none */
} reply_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    reply_t *r = arg;

    return buf_append(&r->body, p, n) == 0 ? n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    reply_t *r = arg;
    size_t len = n;

    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        p += 12;
        len -= 12;
        for (; len > 0 && (*p == ' ' || *p == '\t'); len--)
            p++;
        while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' '))
            len--;
        if (parse_uint(p, len, KEYS_CLI_DURATION_MAX, &r->retry_after))
            r->retry_after = -1;
    }
    return n;
}

/* "switchboard: <status> <code>: <message>" from an error reply. */
static void report_refusal(long status, const json_t *reply, int64_t retry_after)
{
    const json_t *e = json_object_get(reply, "error");
    const json_t *code = json_object_get(e, "code"), *msg = json_object_get(e, "message");

    fprintf(stderr, "switchboard: %ld", status);
    if (json_is_string(code) && json_is_string(msg)) {
        fputc(' ', stderr);
        put_string(stderr, code);
        fputs(": ", stderr);
        put_string(stderr, msg);
    } else {
        fputs(" (the reply is not a Switchboard error)", stderr);
    }
    if (retry_after >= 0 && (status == 429 || status == 503))
        fprintf(stderr, " (retry after %" PRId64 " s)", retry_after);
    fputc('\n', stderr);
}

/* Wipes and frees a header list (the first line holds the key). */
static void free_headers(struct curl_slist *l)
{
    for (struct curl_slist *h = l; h; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(l);
}

/* The request's header lines, auth first; NULL without memory. */
static struct curl_slist *headers(const char *auth, bool json_body)
{
    const char *lines[] = {auth, "Accept: application/json", "Expect:",
                           json_body ? "Content-Type: application/json" : NULL};
    struct curl_slist *l = NULL, *h;

    for (size_t i = 0; i < sizeof lines / sizeof lines[0] && lines[i]; i++) {
        if ((h = curl_slist_append(l, lines[i])) == NULL) {
            free_headers(l);
            return NULL;
        }
        l = h;
    }
    return l;
}

/*
 * One call: method on base URL + path (already encoded) with the key as
 * bearer and body (NULL = none) as JSON. Returns 0 with *out a new
 * reference to the 2xx reply (a JSON object); else prints why to stderr
 * (status, code and message; the curl error; a bad reply) and returns
 * KEYS_CLI_EFAIL with *out NULL. Copies of the key made here are wiped.
 */
static int request(const ctx_t *c, const char *method, const char *path,
                   const json_t *body, json_t **out)
{
    char cerr[CURL_ERROR_SIZE] = "", *payload = NULL;
    struct curl_slist *hdrs = NULL;
    reply_t r = {.retry_after = -1};
    buf_t url, auth;
    json_t *reply = NULL;
    CURL *curl = NULL;
    CURLcode cc;
    long status = 0;
    int rc = KEYS_CLI_EFAIL;

    *out = NULL;
    buf_init(&url, URL_MAX * 2);
    buf_init(&auth, KEYS_CLI_KEY_MAX + 32);
    buf_init(&r.body, REPLY_MAX);
    if (buf_append_str(&url, c->base) || buf_append_str(&url, path) ||
        buf_append_str(&auth, "Authorization: Bearer ") ||
        buf_append(&auth, c->key, c->key_len) ||
        (body && (payload = json_dumps(body, JSON_COMPACT)) == NULL) ||
        (curl = curl_easy_init()) == NULL) {
        fprintf(stderr, "switchboard: out of memory\n");
        goto out;
    }
    if ((hdrs = headers(auth.data, body != NULL)) == NULL) {
        fprintf(stderr, "switchboard: out of memory\n");
        goto out;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url.data);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    if (payload) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(payload));
    }
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)REPLY_MAX);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "switchboard/" SWITCHBOARD_VERSION);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
    if (c->target.loopback)
        curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    cc = curl_easy_perform(curl);
    if (cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED) {
        fprintf(stderr, "switchboard: the reply is larger than %u bytes\n", REPLY_MAX);
        goto out;
    }
    if (cc != CURLE_OK) {
        fprintf(stderr, "switchboard: %s\n", cerr[0] ? cerr : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    reply = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    if (status < 200 || status > 299) {
        report_refusal(status, reply, r.retry_after);
        goto out;
    }
    if (!json_is_object(reply)) {
        fprintf(stderr, "switchboard: %ld: the reply is not a JSON object\n", status);
        goto out;
    }
    *out = reply;
    reply = NULL;
    rc = KEYS_CLI_OK;
out:
    json_decref(reply);
    if (curl)
        curl_easy_cleanup(curl);
    free_headers(hdrs);
    if (auth.data)
        explicit_bzero(auth.data, auth.len);
    if (r.body.data)
        explicit_bzero(r.body.data, r.body.len);   /* may hold a new key */
    buf_free(&auth);
    buf_free(&r.body);
    buf_free(&url);
    free(payload);
    return rc;
}

/* ---- the commands --------------------------------------------------------- */

/* s percent-encoded (everything but RFC 3986 unreserved characters). */
static int append_escaped(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if ((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            if (buf_append_byte(b, (char)ch))
                return -1;
        } else if (buf_append_byte(b, '%') || buf_append_byte(b, hex[ch >> 4]) ||
                   buf_append_byte(b, hex[ch & 15])) {
            return -1;
        }
    }
    return 0;
}

/* "/api/v1/keys[/<id>[<suffix>]][?tenant=<tenant>]" */
static int keys_path(buf_t *b, const char *id, const char *suffix, const char *tenant)
{
    buf_init(b, URL_MAX);
    if (buf_append_str(b, "/api/v1/keys") ||
        (id && (buf_append_byte(b, '/') || append_escaped(b, id))) ||
        (suffix && buf_append_str(b, suffix)) ||
        (tenant && (buf_append_str(b, "?tenant=") || append_escaped(b, tenant)))) {
        fprintf(stderr, "switchboard: the request path is too long\n");
        buf_free(b);
        return -1;
    }
    return 0;
}

/* A request on a key path (see keys_path); *reply as request() says. */
static int key_request(const ctx_t *c, const char *method, const char *suffix,
                       const char *tenant, json_t **reply)
{
    buf_t path;
    int rc;

    *reply = NULL;
    if (keys_path(&path, c->a->id, suffix, tenant))
        return KEYS_CLI_EUSAGE;
    rc = request(c, method, path.data, NULL, reply);
    buf_free(&path);
    return rc;
}

/* The secret member of a reply (create, rotate, token) alone on its line
 * of stdout, or the whole reply with --json; nowhere else. */
static int put_secret(const ctx_t *c, const json_t *reply, const char *member)
{
    const json_t *s = json_object_get(reply, member);
    const char *v = json_string_value(s);
    size_t len = json_string_length(s);

    if (v == NULL || len == 0 || strlen(v) != len) {
        fprintf(stderr, "switchboard: the reply has no \"%s\"\n", member);
        return KEYS_CLI_EFAIL;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f) {
            fprintf(stderr, "switchboard: the reply's \"%s\" is not printable\n", member);
            return KEYS_CLI_EFAIL;
        }
    if (c->a->json)
        put_json(reply);
    else
        printf("%s\n", v);
    return KEYS_CLI_OK;
}

/*
 * create, rotate, token: POSTs body (owned: released here; NULL means it
 * could not be built) to path and prints the secret member of the reply.
 * what ("created", "rotated") names a new API key, which is shown once:
 * then a warning goes to stderr.
 */
static int post_secret(const ctx_t *c, const char *path, json_t *body,
                       const char *member, const char *what)
{
    json_t *reply = NULL;
    int rc;

    if (body == NULL) {
        fprintf(stderr, "switchboard: a value is not valid UTF-8 (or out of memory)\n");
        return KEYS_CLI_EUSAGE;
    }
    rc = request(c, "POST", path, body, &reply);
    if (rc == KEYS_CLI_OK)
        rc = put_secret(c, reply, member);
    if (rc == KEYS_CLI_OK && what) {
        fprintf(stderr, "switchboard: %s key ", what);
        put_value(stderr, json_object_get(reply, "id"));
        fprintf(stderr, "; the secret key is shown only this once: store it now\n");
    }
    json_decref(body);
    json_decref(reply);
    return rc;
}

/* list, usage: the reply's array `member` as a table (or the reply). */
static int show_table(const ctx_t *c, const char *suffix, const char *member,
                      const char *const *heads, const char *const *members, size_t ncol)
{
    json_t *reply;
    int rc = key_request(c, "GET", suffix, c->a->tenant, &reply);
    const json_t *rows = json_object_get(reply, member);

    if (rc == KEYS_CLI_OK && c->a->json) {
        put_json(reply);
    } else if (rc == KEYS_CLI_OK && json_is_array(rows)) {
        put_table(heads, members, ncol, rows);
    } else if (rc == KEYS_CLI_OK) {
        fprintf(stderr, "switchboard: the reply has no \"%s\"\n", member);
        rc = KEYS_CLI_EFAIL;
    }
    json_decref(reply);
    return rc;
}

/* get, revoke: the key's view (or the reply). */
static int show_view(const ctx_t *c, const char *method)
{
    json_t *reply;
    int rc = key_request(c, method, NULL, NULL, &reply);

    if (rc == KEYS_CLI_OK && c->a->json)
        put_json(reply);
    else if (rc == KEYS_CLI_OK)
        put_view(reply);
    json_decref(reply);
    return rc;
}

static int add_list(json_t *obj, const char *member, const keys_cli_list_t *l)
{
    json_t *arr;

    if (l->n == 0)
        return 0;
    if ((arr = json_array()) == NULL || json_object_set_new(obj, member, arr))
        return -1;
    for (size_t i = 0; i < l->n; i++)
        if (json_array_append_new(arr, json_string(l->v[i])))
            return -1;
    return 0;
}

/* The "permissions" of create's body: only what the flags say (absent =
 * nothing allowed, no limit), or NULL with *err set without memory or
 * when a value is not UTF-8. */
static json_t *create_permissions(const keys_cli_args_t *a, bool *err)
{
    json_t *p = json_object();

    *err = p == NULL ||
           add_list(p, "publish", &a->publish) || add_list(p, "subscribe", &a->subscribe) ||
           add_list(p, "history", &a->history) || add_list(p, "events", &a->events) ||
           (a->admin && json_object_set_new(p, "admin", json_true())) ||
           (a->rate > 0 &&
            json_object_set_new(p, "rate", a->burst > 0
                ? json_pack("{s:f,s:I}", "per_second", a->rate, "burst", (json_int_t)a->burst)
                : json_pack("{s:f}", "per_second", a->rate))) ||
           (a->max_connections > 0 &&
            json_object_set_new(p, "max_connections", json_integer(a->max_connections)));
    if (*err || json_object_size(p) == 0) {
        json_decref(p);
        return NULL;
    }
    return p;
}

/* The body of create, or NULL (no memory, a value not UTF-8). */
static json_t *create_body(const keys_cli_args_t *a)
{
    json_t *b = json_object(), *perms;
    bool err;

    perms = create_permissions(a, &err);
    if (b == NULL || err || json_object_set_new(b, "name", json_string(a->name)) ||
        (a->tenant && json_object_set_new(b, "tenant", json_string(a->tenant))) ||
        (perms && json_object_set_new(b, "permissions", perms)) ||
        add_list(b, "cidrs", &a->cidrs) ||
        (a->expires_in >= 0 &&
         json_object_set_new(b, "expires_in", json_integer(a->expires_in)))) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* {} or {member: seconds} when it was given (>= 0); NULL without memory. */
static json_t *seconds_body(const char *member, int64_t seconds)
{
    return seconds >= 0 ? json_pack("{s:I}", member, (json_int_t)seconds) : json_object();
}

static int cmd_create(const ctx_t *c)
{
    return post_secret(c, "/api/v1/keys", create_body(c->a), "key", "created");
}

static int cmd_list(const ctx_t *c)
{
    static const char *const heads[] = {"ID", "TENANT", "NAME", "STATUS", "CREATED", "LAST USED"};
    static const char *const members[] = {"id", "tenant", "name", "status", "created_at",
                                          "last_used_at"};

    return show_table(c, NULL, "keys", heads, members, 6);
}

static int cmd_get(const ctx_t *c) { return show_view(c, "GET"); }

static int cmd_revoke(const ctx_t *c) { return show_view(c, "DELETE"); }

static int cmd_rotate(const ctx_t *c)
{
    buf_t path;
    int rc;

    if (keys_path(&path, c->a->id, "/rotate", NULL))
        return KEYS_CLI_EUSAGE;
    rc = post_secret(c, path.data, seconds_body("grace_seconds", c->a->grace), "key", "rotated");
    buf_free(&path);
    return rc;
}

static int cmd_usage(const ctx_t *c)
{
    static const char *const heads[] = {"TIME", "IP", "ENDPOINT", "OUTCOME"};
    static const char *const members[] = {"time", "ip", "endpoint", "outcome"};

    return show_table(c, "/usage", "usage", heads, members, 4);
}

static int cmd_token(const ctx_t *c)
{
    return post_secret(c, "/auth/token", seconds_body("ttl_seconds", c->a->ttl), "token", NULL);
}

/* ---- entry points --------------------------------------------------------- */

static void keys_usage(FILE *out)
{
    fprintf(out,
"usage: switchboard keys <command> [options]\n"
"\n"
"Manages the API keys of a running server through its admin API.\n"
"\n"
"commands:\n"
"  create --name NAME [--tenant T] [--publish PATTERN]... [--subscribe PATTERN]...\n"
"         [--history PATTERN]... [--events PATTERN]... [--admin] [--cidr CIDR]...\n"
"         [--expires-in DURATION] [--rate N] [--burst N] [--max-connections N]\n"
"                      create a key; its secret is printed once, alone on stdout\n"
"  list [--tenant T]   ID, TENANT, NAME, STATUS, CREATED, LAST USED of each key\n"
"  get ID              one key\n"
"  revoke ID           revoke a key, for good\n"
"  rotate ID [--grace DURATION]\n"
"                      a new secret under the same id, printed once; the old one\n"
"                      keeps working for DURATION (default: the server's)\n"
"  usage ID            the key's recent uses, newest first\n"
"\n"
"options of every command (and of switchboard token):\n"
"  --url URL           the server (env SWITCHBOARD_URL, default " DEFAULT_URL ")\n"
"  --key KEY           the API key (else env SWITCHBOARD_API_KEY)\n"
"  --key-file FILE     read the key from FILE; with neither flag nor env, the\n"
"                      server's admin key file: env SWITCHBOARD_ADMIN_KEY_FILE,\n"
"                      else $SWITCHBOARD_DATA_DIR/admin.key, else ./var/admin.key\n"
"  --insecure          allow plain http to a host that is not loopback\n"
"  --json              print the server's JSON reply\n"
"  -h, --help          this text\n"
"\n"
"DURATION is a whole number with an optional suffix s, m, h or d (plain:\n"
"seconds). A repeated flag adds to its list. --flag=value works too.\n"
"Exit status: 0 done, 1 the server refused or could not be reached,\n"
"2 usage error (nothing was sent).\n");
}

static void token_usage(FILE *out)
{
    fprintf(out,
"usage: switchboard token [--ttl DURATION] [--url URL] [--key KEY | --key-file FILE]\n"
"                         [--insecure] [--json]\n"
"\n"
"Exchanges an API key for a short-lived token (POST /auth/token) and prints\n"
"the token. --ttl asks for a lifetime (default: the server's auth.token_ttl_ms).\n"
"The key is found as for switchboard keys (see switchboard keys --help).\n");
}

static int run(const keys_cli_args_t *a)
{
    ctx_t *c = calloc(1, sizeof *c);
    char err[ERR_LEN];
    int rc = KEYS_CLI_EUSAGE;

    if (c == NULL) {
        fprintf(stderr, "switchboard: out of memory\n");
        return KEYS_CLI_EFAIL;
    }
    c->a = a;
    if (find_url(c, err, sizeof err) || find_key(c, err, sizeof err)) {
        fprintf(stderr, "switchboard: %s\n", err);
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "switchboard: cannot initialise libcurl\n");
        rc = KEYS_CLI_EFAIL;
        goto out;
    }
    rc = cmds[a->cmd].run(c);
    curl_global_cleanup();
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "switchboard: cannot write the output: %s\n", strerror(errno));
        rc = KEYS_CLI_EFAIL;
    }
out:
    explicit_bzero(c->key, sizeof c->key);
    free(c);
    return rc;
}

/* Parses argv (argv[0]: the command) and runs it; help goes to stdout. */
static int parse_and_run(int argc, char **argv, bool token, void (*usage)(FILE *))
{
    keys_cli_args_t a;
    char err[ERR_LEN] = "";
    int rc = keys_cli_parse(argc, argv, &a, err, sizeof err);

    if (rc == 0 && (a.cmd == KEYS_CLI_TOKEN) != token) {
        errmsg(err, sizeof err, "unknown command \"%s\"", argv[0]);
        rc = -1;
    }
    if (rc) {
        fprintf(stderr, "switchboard: %s (see switchboard %s --help)\n", err,
                token ? "token" : "keys");
        return KEYS_CLI_EUSAGE;
    }
    if (a.help) {
        usage(stdout);
        return KEYS_CLI_OK;
    }
    return run(&a);
}

int keys_cli_main(int argc, char **argv)
{
    if (argc < 2) {
        keys_usage(stderr);
        return KEYS_CLI_EUSAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        keys_usage(stdout);
        return KEYS_CLI_OK;
    }
    return parse_and_run(argc - 1, argv + 1, false, keys_usage);
}

int keys_cli_token_main(int argc, char **argv)
{
    return parse_and_run(argc, argv, true, token_usage);
}
