/*
 * loadgen.c - the load generator behind bench/run.sh.
 *
 *   loadgen fanout --url http://127.0.0.1:PORT --ws N --sse M --rate R
 *                  --seconds S [--size B] [--subject SUBJ] [--publishers K]
 *                  [--pipeline D] [--pid SERVER_PID] [--label TEXT] [--tsv FILE]
 *   loadgen ingest --url http://127.0.0.1:PORT --conns C --seconds S
 *                  [--size B] [--pid SERVER_PID] [--label TEXT] [--tsv FILE]
 *   either mode:   [--key CREDENTIAL]
 *
 * Defaults: --size 256 (bytes of the JSON payload, {"t":..,"n":..,"pad":..}),
 * --subject bench.fanout (not stored; a webhooks.* subject is), --publishers
 * 4, --pipeline 8. --key (or, when absent, the environment variable
 * SWITCHBOARD_API_KEY) is an API key or a JWT sent as "Authorization:
 * Bearer" on every request: publishes, ingest POSTs, the SSE GET and the
 * WebSocket upgrade; without one the server answers 401. --pid names the
 * server whose VmRSS and CPU are reported; --tsv appends one result line
 * for bench/run.sh's table. Exit status: 0 clean, 1 could not run, 2 ran
 * but saw loss, failures or errors.
 *
 * fanout: N WebSocket clients (GET /api/v1/ws + {"type":"subscribe"}) and M
 * SSE clients (GET /api/v1/stream?subject=) subscribe to one subject; once
 * every one is subscribed, K keep-alive connections POST /api/v1/publish at
 * R messages/s for S seconds, each with up to D requests pipelined (HTTP/1.1
 * answers in order), so a slow answer does not cap the offered rate at
 * K / round-trip. Every receiver timestamps what it gets.
 * ingest: C keep-alive connections POST /webhook/bench/load/repo back to
 * back (closed loop) for S seconds; a 202 there is a durable commit.
 *
 * Shape. One thread, one libuv loop; each client is a small state machine
 * driven by its read callback: bytes go to incremental, socket-free parsers
 * (an HTTP response head with a Content-Length body, WebSocket frames, SSE
 * events) that answer "consumed n" / "need more" / "error". Reads land in
 * one loop-wide buffer and only the unparsed tail of a read is copied into
 * the client's own buffer, which has a hard cap: 5,000 idle subscribers
 * hold no read buffers. One 1 ms timer drives the phases (connect at most
 * 128 at a time, settle 0.3 s, run, drain, close) and the publish schedule;
 * every phase has a deadline, so a run always ends.
 *
 * Latency. A fan-out payload carries the time message k fell due (CLOCK_
 * MONOTONIC ns, as seen by the tick that found it due), not the time it
 * actually left: if every publisher connection is busy waiting for the
 * server, the wait is counted as latency instead of being hidden
 * (coordinated omission). The tick's own lateness against the ideal
 * schedule start + k/R is the client's, not the server's; it is reported
 * separately as scheduler lag. Ingest is closed loop, so its latency is
 * per request, from the write to the last byte of the answer, and counts
 * only 202s. Latencies go into a fixed log-linear histogram (64 sub-buckets
 * per power of two: under 1.6 % error, 21 KiB whatever the run length).
 *
 * Accounting. Fan-out expects accepted publishes x subscribers ready;
 * payloads carry their index "n" and each receiver keeps a 256-message
 * window of what it has seen, so a duplicate is counted rather than added
 * to "received". Reordering is counted too but is no fault: publishers use
 * several connections, which the server may serve on different loops.
 * The client shares the machine with the server, so both CPU times are
 * reported: a saturated client is visible in the output.
 *
 * The Authorization line is formatted once at start-up and copied into each
 * request head, so authentication costs the client one memcpy per request
 * and a benchmark with and without it differs only on the server side.
 *
 * Limits: IPv4 literal URLs only; SSE events must end in "\n\n" (what
 * Switchboard sends); fragmented WebSocket messages are counted, not parsed.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <uv.h>

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

#define READ_BUF_SIZE (256u * 1024)
#define HTTP_HEAD_MAX (16u * 1024)
#define HTTP_BODY_MAX (1u << 20)
#define WS_FRAME_MAX ((2u << 20) + 14)
#define SIZE_MAX_OPT (1u << 20)
#define CONNECT_INFLIGHT 128
#define TICK_MS 1
#define SETTLE_NS (300 * NS_PER_MS)
#define DRAIN_QUIET_NS (2 * NS_PER_S)
#define DRAIN_MAX_NS (20 * NS_PER_S)
#define CLOSE_NS (2 * NS_PER_S)
#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define DUE_RING 8192
#define PIPELINE_MAX 64
#define SEEN_BITS 256
#define DELIVERY_MARK "\"payload\":{\"t\":"
#define INGEST_PATH "/webhook/bench/load/repo"
#define CREDENTIAL_MAX 4096
#define AUTH_LINE_MAX (CREDENTIAL_MAX + 32)
#define REQ_HEAD_MAX (512 + AUTH_LINE_MAX)
#define CREDENTIAL_ENV "SWITCHBOARD_API_KEY"

/* ---------------------------------------------------------------------------
 * Clock and histogram
 * ------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Values below 128 ns have a bucket each; above, each power of two is
 * split into 64 buckets. 2^46 ns (19 hours) is the ceiling. */
#define HIST_SUB 64
#define HIST_LINEAR 128
#define HIST_MAX_SHIFT 40
#define HIST_BUCKETS (HIST_LINEAR + HIST_MAX_SHIFT * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t b[HIST_BUCKETS];
} hist_t;

static size_t hist_index(uint64_t v)
{
    unsigned shift;

    if (v >= (1ull << 46))
        v = (1ull << 46) - 1;
    if (v < HIST_LINEAR)
        return (size_t)v;
    shift = (unsigned)(63 - __builtin_clzll(v)) - 6;          /* v >> shift in [64,127] */
    return HIST_LINEAR + (size_t)(shift - 1) * HIST_SUB + (size_t)((v >> shift) - HIST_SUB);
}

/* The middle of bucket i. */
static uint64_t hist_value(size_t i)
{
    size_t k;
    unsigned shift;

    if (i < HIST_LINEAR)
        return i;
    k = i - HIST_LINEAR;
    shift = (unsigned)(k / HIST_SUB) + 1;
    return ((uint64_t)(k % HIST_SUB + HIST_SUB) << shift) + (1ull << shift) / 2;
}

static void hist_add(hist_t *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

/* The value at quantile q (0..1), never above the exact maximum. */
static uint64_t hist_quantile(const hist_t *h, double q)
{
    uint64_t want, seen = 0;

    if (h->count == 0)
        return 0;
    want = (uint64_t)(q * (double)h->count + 0.5);
    if (want < 1)
        want = 1;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = hist_value(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* ---------------------------------------------------------------------------
 * A byte buffer with a hard cap
 * ------------------------------------------------------------------------- */

typedef struct bbuf {
    char *data;
    size_t len, cap, limit;
} bbuf_t;

/* Returns 0, or -1 when the cap would be passed or memory is short. */
static int bbuf_append(bbuf_t *b, const void *p, size_t n)
{
    if (n > b->limit - b->len)
        return -1;
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        char *d;
        while (ncap < b->len + n)
            ncap *= 2;
        if (ncap > b->limit)
            ncap = b->limit;
        if (!(d = realloc(b->data, ncap)))
            return -1;
        b->data = d;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* Drops the first n bytes; frees the storage once empty, so an idle client
 * holds none. */
static void bbuf_consume(bbuf_t *b, size_t n)
{
    if (n >= b->len) {
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static void bbuf_free(bbuf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---------------------------------------------------------------------------
 * Parsers: bytes in, PARSE_AGAIN / PARSE_ERROR / bytes consumed out
 * ------------------------------------------------------------------------- */

#define PARSE_AGAIN 0
#define PARSE_ERROR (-1)

typedef struct http_resp {
    int status;
    uint64_t content_length;
    bool has_length;
    bool close;
    size_t head_len;
    const char *accept;       /* Sec-WebSocket-Accept value, in the input */
    size_t accept_len;
} http_resp_t;

static bool name_is(const char *p, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(p, name, n) == 0;
}

static int parse_decimal(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

static void header_field(http_resp_t *r, const char *name, size_t nlen, const char *val,
                         size_t vlen)
{
    if (name_is(name, nlen, "Content-Length")) {
        r->has_length = parse_decimal(val, vlen, &r->content_length) == 0;
        if (!r->has_length)
            r->status = -1;
    } else if (name_is(name, nlen, "Connection")) {
        r->close = vlen == 5 && strncasecmp(val, "close", 5) == 0;
    } else if (name_is(name, nlen, "Transfer-Encoding")) {
        r->status = -1;                 /* Switchboard answers with lengths */
    } else if (name_is(name, nlen, "Sec-WebSocket-Accept")) {
        r->accept = val;
        r->accept_len = vlen;
    }
}

/* Parses a response head. Returns its length (r filled), PARSE_AGAIN, or
 * PARSE_ERROR (malformed, or longer than HTTP_HEAD_MAX). */
static long http_parse_head(const char *p, size_t n, http_resp_t *r)
{
    const char *end = memmem(p, n < HTTP_HEAD_MAX ? n : HTTP_HEAD_MAX, "\r\n\r\n", 4);
    const char *line, *eol;
    uint64_t status;

    if (!end)
        return n >= HTTP_HEAD_MAX ? PARSE_ERROR : PARSE_AGAIN;
    memset(r, 0, sizeof *r);
    if (end - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
        parse_decimal(p + 9, 3, &status) || status < 100 || status > 599)
        return PARSE_ERROR;
    r->status = (int)status;
    line = (const char *)memchr(p, '\n', (size_t)(end + 2 - p)) + 1;
    while (line < end + 2) {
        const char *colon, *v, *ve;
        eol = memchr(line, '\r', (size_t)(end + 2 - line));
        colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon)
            return PARSE_ERROR;
        for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
            ;
        for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
            ;
        header_field(r, line, (size_t)(colon - line), v, (size_t)(ve - v));
        line = eol + 2;
    }
    if (r->status < 0 || r->content_length > HTTP_BODY_MAX)
        return PARSE_ERROR;
    r->head_len = (size_t)(end + 4 - p);
    return (long)r->head_len;
}

/* A whole response with a Content-Length body: its length, or AGAIN/ERROR. */
static long http_parse_response(const char *p, size_t n, http_resp_t *r)
{
    long head = http_parse_head(p, n, r);

    if (head <= 0)
        return head;
    if (!r->has_length)
        return PARSE_ERROR;
    if (n - (size_t)head < r->content_length)
        return PARSE_AGAIN;
    return head + (long)r->content_length;
}

enum { WS_OP_CONT = 0, WS_OP_TEXT = 1, WS_OP_BINARY = 2, WS_OP_CLOSE = 8, WS_OP_PING = 9,
       WS_OP_PONG = 10 };

typedef struct ws_frame {
    unsigned op;
    bool fin;
    const unsigned char *payload;
    size_t len;
} ws_frame_t;

/* One server frame (never masked). Returns its length, AGAIN or ERROR. */
static long ws_parse_frame(const unsigned char *p, size_t n, ws_frame_t *f)
{
    size_t hlen = 2;
    uint64_t len;

    if (n < 2)
        return PARSE_AGAIN;
    if ((p[0] & 0x70) || (p[1] & 0x80))
        return PARSE_ERROR;               /* reserved bits, or a masked server frame */
    f->fin = (p[0] & 0x80) != 0;
    f->op = p[0] & 0x0F;
    len = p[1] & 0x7F;
    if (len == 126) {
        if (n < 4)
            return PARSE_AGAIN;
        len = ((uint64_t)p[2] << 8) | p[3];
        hlen = 4;
    } else if (len == 127) {
        if (n < 10)
            return PARSE_AGAIN;
        len = 0;
        for (int i = 2; i < 10; i++)
            len = (len << 8) | p[i];
        hlen = 10;
    }
    if (len > WS_FRAME_MAX - hlen)
        return PARSE_ERROR;
    if (n - hlen < len)
        return PARSE_AGAIN;
    f->payload = p + hlen;
    f->len = (size_t)len;
    return (long)(hlen + len);
}

/* One SSE event, up to its blank line. Returns its length (with the blank
 * line), AGAIN or ERROR (an event longer than the frame cap). */
static long sse_parse_event(const char *p, size_t n, size_t *event_len)
{
    const char *end = memmem(p, n, "\n\n", 2);

    if (!end)
        return n > WS_FRAME_MAX ? PARSE_ERROR : PARSE_AGAIN;
    *event_len = (size_t)(end - p);
    return (long)(end - p + 2);
}

/* ---------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------- */

enum mode { MODE_FANOUT, MODE_INGEST };

typedef struct opts {
    enum mode mode;
    char host[64];
    int port;
    uint64_t ws, sse, conns, rate, seconds, size, publishers, pipeline;
    long pid;
    const char *subject;
    const char *label;
    const char *tsv;
    const char *key;          /* credential, or NULL */
} opts_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: loadgen fanout --url http://127.0.0.1:PORT --ws N --sse M --rate R\n"
            "                      --seconds S [--size B] [--subject SUBJ] [--publishers K]\n"
            "                      [--pipeline D]\n"
            "                      [--pid SERVER_PID] [--label TEXT] [--tsv FILE]\n"
            "       loadgen ingest --url http://127.0.0.1:PORT --conns C --seconds S\n"
            "                      [--size B] [--pid SERVER_PID] [--label TEXT] [--tsv FILE]\n"
            "       either mode: [--key CREDENTIAL] (default: $" CREDENTIAL_ENV ")\n");
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_url(opts_t *o, const char *url)
{
    const char *h = url, *colon, *end;
    uint64_t port;
    char num[8];

    if (strncmp(h, "http://", 7) != 0)
        return -1;
    h += 7;
    colon = strchr(h, ':');
    if (!colon || (size_t)(colon - h) >= sizeof o->host)
        return -1;
    memcpy(o->host, h, (size_t)(colon - h));
    o->host[colon - h] = '\0';
    end = colon + 1 + strcspn(colon + 1, "/");
    if ((size_t)(end - colon - 1) >= sizeof num)
        return -1;
    memcpy(num, colon + 1, (size_t)(end - colon - 1));
    num[end - colon - 1] = '\0';
    if (parse_u64(num, 1, 65535, &port))
        return -1;
    o->port = (int)port;
    return 0;
}

/* A credential goes into a header line verbatim: visible ASCII only, so it
 * can neither end the line nor the head. */
static bool credential_ok(const char *k)
{
    size_t n = strnlen(k, CREDENTIAL_MAX + 1);

    if (n == 0 || n > CREDENTIAL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (k[i] <= ' ' || k[i] > '~')
            return false;
    return true;
}

static int parse_opts(opts_t *o, int argc, char **argv)
{
    static const struct { const char *name; size_t off; uint64_t min, max; } nums[] = {
        {"--ws", offsetof(opts_t, ws), 0, 100000},
        {"--sse", offsetof(opts_t, sse), 0, 100000},
        {"--conns", offsetof(opts_t, conns), 1, 10000},
        {"--rate", offsetof(opts_t, rate), 1, 10000000},
        {"--seconds", offsetof(opts_t, seconds), 1, 3600},
        {"--size", offsetof(opts_t, size), 16, SIZE_MAX_OPT},
        {"--publishers", offsetof(opts_t, publishers), 1, 256},
        {"--pipeline", offsetof(opts_t, pipeline), 1, PIPELINE_MAX},
    };
    bool have_url = false;

    memset(o, 0, sizeof *o);
    o->size = 256;
    o->publishers = 4;
    o->pipeline = 8;
    o->subject = "bench.fanout";
    o->label = "";
    if (argc < 2)
        return -1;
    if (strcmp(argv[1], "fanout") == 0)
        o->mode = MODE_FANOUT;
    else if (strcmp(argv[1], "ingest") == 0)
        o->mode = MODE_INGEST;
    else
        return -1;
    for (int i = 2; i < argc; i += 2) {
        const char *name = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        size_t k;
        if (!val) {
            fprintf(stderr, "loadgen: %s needs a value\n", name);
            return -1;
        }
        for (k = 0; k < sizeof nums / sizeof nums[0]; k++)
            if (strcmp(name, nums[k].name) == 0)
                break;
        if (k < sizeof nums / sizeof nums[0]) {
            if (parse_u64(val, nums[k].min, nums[k].max,
                          (uint64_t *)(void *)((char *)o + nums[k].off))) {
                fprintf(stderr, "loadgen: %s must be a number from %" PRIu64 " to %" PRIu64 "\n",
                        name, nums[k].min, nums[k].max);
                return -1;
            }
        } else if (strcmp(name, "--url") == 0) {
            if (parse_url(o, val)) {
                fprintf(stderr, "loadgen: --url must be http://IPV4:PORT\n");
                return -1;
            }
            have_url = true;
        } else if (strcmp(name, "--pid") == 0) {
            uint64_t pid;
            if (parse_u64(val, 1, 1u << 30, &pid))
                return -1;
            o->pid = (long)pid;
        } else if (strcmp(name, "--subject") == 0) {
            o->subject = val;
        } else if (strcmp(name, "--label") == 0) {
            o->label = val;
        } else if (strcmp(name, "--tsv") == 0) {
            o->tsv = val;
        } else if (strcmp(name, "--key") == 0) {
            o->key = val;
        } else {
            fprintf(stderr, "loadgen: unknown option %s\n", name);
            return -1;
        }
    }
    if (!have_url || !o->seconds)
        return -1;
    if (!o->key)
        o->key = getenv(CREDENTIAL_ENV);
    if (o->key && !credential_ok(o->key)) {
        fprintf(stderr, "loadgen: the credential must be 1 to %u printable characters, "
                        "no spaces\n", CREDENTIAL_MAX);
        return -1;
    }
    if (o->mode == MODE_FANOUT && (!o->rate || o->ws + o->sse == 0))
        return -1;
    if (o->mode == MODE_INGEST && !o->conns)
        return -1;
    if (strspn(o->subject, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
        strlen(o->subject) || !*o->subject || strlen(o->subject) > 200)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------- */

enum kind { K_PUB, K_WS, K_SSE, K_INGEST };
enum cstate { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_SUBSCRIBING, C_READY, C_CLOSED };
enum phase { PH_PUB_CONNECT, PH_SUB_CONNECT, PH_SETTLE, PH_RUN, PH_DRAIN, PH_CLOSING };

typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    enum kind kind;
    enum cstate state;
    bool closing;
    unsigned inflight;        /* requests written, not yet answered */
    bool in_fragment;         /* inside a fragmented WebSocket message */
    uint64_t *sent_ns;        /* ring of their write times (publisher, ingest) */
    unsigned sent_head;
    uint64_t next_n;          /* 1 + highest message index received */
    uint64_t seen[SEEN_BITS / 64];   /* ring bitmap of [next_n - SEEN_BITS, next_n) */
    bbuf_t in;                /* unparsed tail of earlier reads */
    char accept[29];          /* expected Sec-WebSocket-Accept */
} client_t;

typedef struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
} wreq_t;

typedef struct stats {
    hist_t lat;               /* deliveries (fanout) or 202s (ingest) */
    hist_t pub_lat;           /* publish round trips */
    uint64_t received, received_ws, received_sse, dup, reordered, too_old, unparsed, fragmented;
    uint64_t pub_sent, pub_ok, pub_err, unsent;
    uint64_t ok, not_ok, first_bad_status;
    uint64_t ready_subs, failed, lost, slow_closed;
    uint64_t last_delivery_ns;
    uint64_t last_progress_ns;   /* any delivery or answer */
} stats_t;

static struct {
    opts_t o;
    uv_loop_t *loop;
    uv_timer_t tick;
    uv_signal_t sigint;
    struct sockaddr_in addr;
    client_t *clients;
    size_t nclients, npubs;
    size_t next_connect, connecting, ready, open;
    size_t next_pub;           /* round robin over the publishers */
    unsigned depth;            /* requests in flight per publisher */
    enum phase phase;
    uint64_t phase_start, t0, run_ns, planned, due;
    struct { uint64_t upto, ns; } ring[DUE_RING];  /* when messages fell due */
    size_t ring_head, ring_len;
    uint64_t sched_lag_max;
    uint64_t connect_deadline;
    long rss_before, rss_subscribed, rss_after;
    double srv_cpu0, srv_cpu1;
    double mach_busy0, mach_busy1, mach_total0, mach_total1;
    struct rusage ru0, ru1;
    uint64_t connect_ns;
    char *pad;                 /* padding that sizes the payloads */
    size_t pad_len;
    char auth[AUTH_LINE_MAX];  /* "Authorization: Bearer ...\r\n", or "" */
    int auth_len;
    char first_error[160];
    stats_t s;
    bool interrupted;
} g;

static char read_buf[READ_BUF_SIZE];

static void client_lost(client_t *c, const char *why);
static void start_drain(void);
static void start_closing(void);

/* ---------------------------------------------------------------------------
 * Server process probes
 * ------------------------------------------------------------------------- */

/* VmRSS of the server in KiB, or -1. */
static long read_rss_kib(long pid)
{
    char path[64], line[256];
    FILE *f;
    long kib = -1;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

/* utime + stime of the server in seconds, or -1. */
static double read_cpu_s(long pid)
{
    char path[64], buf[1024];
    FILE *f;
    size_t n;
    const char *p;
    unsigned long long ut = 0, st = 0;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (!(p = strrchr(buf, ')')))
        return -1;
    /* after ')': state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy and total CPU time of the whole machine, in seconds summed over
 * CPUs, from /proc/stat; -1 when unreadable. */
static double read_machine_busy_s(double *total)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int n;
    double tck = (double)sysconf(_SC_CLK_TCK), all = 0;

    if (!f)
        return -1;
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return -1;
    for (int i = 0; i < 8; i++)
        all += (double)v[i];
    *total = all / tck;
    return (all - (double)v[3] - (double)v[4]) / tck;      /* minus idle, iowait */
}

static double rusage_s(const struct rusage *r)
{
    return (double)r->ru_utime.tv_sec + (double)r->ru_utime.tv_usec / 1e6 +
           (double)r->ru_stime.tv_sec + (double)r->ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = container_of(req, wreq_t, req);
    client_t *c = req->handle->data;

    free(w);
    if (status && status != UV_ECANCELED)
        client_lost(c, uv_strerror(status));
}

static wreq_t *wreq_new(size_t cap)
{
    wreq_t *w = malloc(sizeof *w + cap);

    if (w)
        w->len = 0;
    return w;
}

static void wreq_put(wreq_t *w, const void *p, size_t n)
{
    memcpy(w->data + w->len, p, n);
    w->len += n;
}

/* Queues w on c (takes w). Returns 0 or -1 (client lost). */
static int client_send(client_t *c, wreq_t *w)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc;

    if (c->closing) {
        free(w);
        return -1;
    }
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc) {
        free(w);
        client_lost(c, uv_strerror(rc));
        return -1;
    }
    return 0;
}

static int send_copy(client_t *c, const char *p, size_t n)
{
    wreq_t *w = wreq_new(n);

    if (!w) {
        client_lost(c, "out of memory");
        return -1;
    }
    wreq_put(w, p, n);
    return client_send(c, w);
}

/* A masked client frame (RFC 6455 5.3). len is capped by the callers. */
static int ws_send(client_t *c, unsigned op, const void *payload, size_t len)
{
    wreq_t *w = wreq_new(len + 14);
    unsigned char hdr[14], mask[4];
    const unsigned char *p = payload;
    size_t h = 2;

    if (!w) {
        client_lost(c, "out of memory");
        return -1;
    }
    RAND_bytes(mask, sizeof mask);
    hdr[0] = (unsigned char)(0x80 | op);
    if (len < 126) {
        hdr[1] = (unsigned char)(0x80 | len);
    } else {
        hdr[1] = 0x80 | 126;
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        h = 4;
    }
    memcpy(hdr + h, mask, 4);
    wreq_put(w, hdr, h + 4);
    for (size_t i = 0; i < len; i++)
        w->data[w->len++] = (char)(p[i] ^ mask[i & 3]);
    return client_send(c, w);
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static int send_ws_upgrade(client_t *c)
{
    unsigned char nonce[16], digest[SHA_DIGEST_LENGTH];
    char key[25], both[64], req[REQ_HEAD_MAX];
    int n;

    RAND_bytes(nonce, sizeof nonce);
    base64(nonce, sizeof nonce, key);
    n = snprintf(both, sizeof both, "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)both, (size_t)n, digest);
    base64(digest, sizeof digest, c->accept);
    n = snprintf(req, sizeof req,
                 "GET /api/v1/ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n%.*s\r\n", g.o.host, g.o.port, key,
                 g.auth_len, g.auth);
    return send_copy(c, req, (size_t)n);
}

static int send_sse_request(client_t *c)
{
    char req[REQ_HEAD_MAX];
    int n = snprintf(req, sizeof req,
                     "GET /api/v1/stream?subject=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Accept: text/event-stream\r\n%.*s\r\n", g.o.subject, g.o.host, g.o.port,
                     g.auth_len, g.auth);

    return send_copy(c, req, (size_t)n);
}

/* POST with the JSON body  prefix DATA suffix,  where DATA is
 * {"t":T,"n":N,"pad":"xx..."} padded to --size bytes when that is possible. */
static int send_post(client_t *c, const char *path, const char *prefix, const char *suffix,
                     uint64_t t, uint64_t n)
{
    char head[REQ_HEAD_MAX], body[320];
    int hd = snprintf(body, sizeof body, "%s{\"t\":%" PRIu64 ",\"n\":%" PRIu64 ",\"pad\":\"",
                      prefix, t, n);
    size_t data_fixed = (size_t)hd - strlen(prefix) + 2;
    size_t pad = g.o.size > data_fixed ? (size_t)g.o.size - data_fixed : 0;
    size_t blen = (size_t)hd + pad + 2 + strlen(suffix);
    int hh = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                      "X-GitHub-Event: push\r\nContent-Length: %zu\r\n%.*s\r\n",
                      path, g.o.host, g.o.port, blen, g.auth_len, g.auth);
    wreq_t *w = wreq_new((size_t)hh + blen);

    if (!w) {
        client_lost(c, "out of memory");
        return -1;
    }
    wreq_put(w, head, (size_t)hh);
    wreq_put(w, body, (size_t)hd);
    wreq_put(w, g.pad, pad);
    wreq_put(w, "\"}", 2);
    wreq_put(w, suffix, strlen(suffix));
    c->sent_ns[(c->sent_head + c->inflight++) % PIPELINE_MAX] = now_ns();
    return client_send(c, w);
}

/* ---------------------------------------------------------------------------
 * Publishing and ingest
 * ------------------------------------------------------------------------- */

/* Records that messages below `upto` are due as of `now`. When the ring is
 * full the newest entry is stretched: later messages get an earlier (so
 * larger-latency) stamp, never a smaller one. */
static void due_push(uint64_t upto, uint64_t now)
{
    if (g.ring_len == DUE_RING) {
        g.ring[(g.ring_head + DUE_RING - 1) % DUE_RING].upto = upto;
        return;
    }
    g.ring[(g.ring_head + g.ring_len) % DUE_RING].upto = upto;
    g.ring[(g.ring_head + g.ring_len) % DUE_RING].ns = now;
    g.ring_len++;
}

/* When message k fell due (k < g.due). */
static uint64_t due_stamp(uint64_t k)
{
    while (g.ring_len > 1 && g.ring[g.ring_head].upto <= k) {
        g.ring_head = (g.ring_head + 1) % DUE_RING;
        g.ring_len--;
    }
    return g.ring[g.ring_head].ns;
}

static bool pub_can_send(const client_t *c)
{
    return c->state == C_READY && !c->closing && c->inflight < g.depth;
}

/* Sends every message that is due, round robin over the publishers that
 * have room in their pipeline. */
static void pump_publishers(void)
{
    char prefix[256];
    size_t tries = 0;

    if (g.phase != PH_RUN)
        return;
    snprintf(prefix, sizeof prefix, "{\"subject\":\"%s\",\"data\":", g.o.subject);
    while (g.s.pub_sent < g.due && tries < g.npubs) {
        client_t *c = &g.clients[g.next_pub];
        g.next_pub = (g.next_pub + 1) % g.npubs;
        if (!pub_can_send(c)) {
            tries++;
            continue;
        }
        tries = 0;
        send_post(c, "/api/v1/publish", prefix, "}", due_stamp(g.s.pub_sent), g.s.pub_sent);
        g.s.pub_sent++;
    }
}

/* The tick's view of the schedule: message k is due at t0 + k/R. */
static void schedule(uint64_t now)
{
    uint64_t due = (uint64_t)((double)(now - g.t0) * (double)g.o.rate / 1e9) + 1;

    if (due > g.planned)
        due = g.planned;
    if (due > g.due) {
        uint64_t ideal = g.t0 + (uint64_t)((double)g.due * 1e9 / (double)g.o.rate);
        if (now - ideal > g.sched_lag_max)
            g.sched_lag_max = now - ideal;
        due_push(due, now);
        g.due = due;
    }
    pump_publishers();
}

static void ingest_next(client_t *c)
{
    if (g.phase == PH_RUN && !c->closing)
        send_post(c, INGEST_PATH, "", "", now_ns(), g.s.ok + g.s.not_ok);
}

static void on_response(client_t *c, const http_resp_t *r)
{
    uint64_t lat = now_ns() - c->sent_ns[c->sent_head];
    bool ok = r->status == 202;

    c->sent_head = (c->sent_head + 1) % PIPELINE_MAX;
    c->inflight--;
    g.s.last_progress_ns = now_ns();
    if (!ok && !g.s.first_bad_status)
        g.s.first_bad_status = (uint64_t)r->status;
    if (c->kind == K_PUB) {
        hist_add(&g.s.pub_lat, lat);
        ok ? g.s.pub_ok++ : g.s.pub_err++;
        if (r->close) {
            client_lost(c, "publisher connection closed by the server");
            return;
        }
        pump_publishers();
    } else {
        if (ok)
            hist_add(&g.s.lat, lat);
        ok ? g.s.ok++ : g.s.not_ok++;
        if (r->close) {
            client_lost(c, "ingest connection closed by the server");
            return;
        }
        ingest_next(c);
    }
}

/* ---------------------------------------------------------------------------
 * Receiving deliveries
 * ------------------------------------------------------------------------- */

static bool read_number(const char *p, const char *e, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = p;

    while (p < e && *p >= '0' && *p <= '9' && p - s < 20)
        v = v * 10 + (uint64_t)(*p++ - '0');
    *out = v;
    return p > s;
}

static bool bit_test_set(uint64_t *bits, uint64_t i)
{
    uint64_t m = 1ull << (i % 64);
    bool was = (bits[(i / 64) % (SEEN_BITS / 64)] & m) != 0;

    bits[(i / 64) % (SEEN_BITS / 64)] |= m;
    return was;
}

/* Marks message idx seen by c. Returns true for a duplicate (not to be
 * counted); counts reordering and what is too old to check. */
static bool seen_mark(client_t *c, uint64_t idx)
{
    if (idx >= c->next_n) {
        uint64_t from = c->next_n;
        if (idx + 1 - from >= SEEN_BITS || from == 0)
            memset(c->seen, 0, sizeof c->seen);
        else
            for (uint64_t i = from; i <= idx; i++)
                c->seen[(i / 64) % (SEEN_BITS / 64)] &= ~(1ull << (i % 64));
        c->next_n = idx + 1;
        bit_test_set(c->seen, idx);
        return false;
    }
    g.s.reordered++;
    if (c->next_n - idx > SEEN_BITS) {
        g.s.too_old++;
        return false;
    }
    if (bit_test_set(c->seen, idx)) {
        g.s.reordered--;
        g.s.dup++;
        return true;
    }
    return false;
}

/* A message frame or event: find {"t":T,"n":N in the payload, record. */
static void record_delivery(client_t *c, const char *p, size_t n, uint64_t now)
{
    const char *m = memmem(p, n, DELIVERY_MARK, sizeof DELIVERY_MARK - 1), *e = p + n;
    uint64_t t, idx;

    if (!m) {
        g.s.unparsed++;
        return;
    }
    m += sizeof DELIVERY_MARK - 1;
    if (!read_number(m, e, &t) || (m = memmem(m, (size_t)(e - m), "\"n\":", 4)) == NULL ||
        !read_number(m + 4, e, &idx)) {
        g.s.unparsed++;
        return;
    }
    if (seen_mark(c, idx))
        return;
    hist_add(&g.s.lat, now > t ? now - t : 0);
    g.s.received++;
    c->kind == K_WS ? g.s.received_ws++ : g.s.received_sse++;
    g.s.last_delivery_ns = g.s.last_progress_ns = now;
}

static void became_ready(client_t *c)
{
    c->state = C_READY;
    g.connecting--;
    g.ready++;
    if (c->kind == K_WS || c->kind == K_SSE)
        g.s.ready_subs++;
}

static void ws_text(client_t *c, const ws_frame_t *f, uint64_t now)
{
    const char *p = (const char *)f->payload;

    if (c->state == C_SUBSCRIBING) {
        if (memmem(p, f->len, "\"type\":\"subscribed\"", 19))
            became_ready(c);
        else if (memmem(p, f->len, "\"type\":\"error\"", 14))
            client_lost(c, "subscribe refused");
    } else if (memmem(p, f->len, "\"type\":\"message\"", 16)) {
        record_delivery(c, p, f->len, now);
    }
}

/* Handles one frame. Returns -1 once the client is gone. */
static int ws_frame(client_t *c, const ws_frame_t *f, uint64_t now)
{
    switch (f->op) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
    case WS_OP_CONT:
        if (f->op != WS_OP_CONT && !c->in_fragment && f->fin) {
            if (f->op == WS_OP_TEXT)
                ws_text(c, f, now);
        } else {
            if (f->op != WS_OP_CONT)
                g.s.fragmented++;
            c->in_fragment = !f->fin;
        }
        break;
    case WS_OP_PING:
        ws_send(c, WS_OP_PONG, f->payload, f->len < 125 ? f->len : 125);
        break;
    case WS_OP_CLOSE: {
        unsigned code = f->len >= 2 ? (unsigned)(f->payload[0] << 8 | f->payload[1]) : 1005;
        char why[64];
        if (code == 4008)
            g.s.slow_closed++;
        snprintf(why, sizeof why, "websocket closed by the server (%u)", code);
        client_lost(c, why);
        return -1;
    }
    default:
        break;
    }
    return c->closing ? -1 : 0;
}

/* Starts a WebSocket subscription once the 101 has been checked. */
static int ws_upgraded(client_t *c, const http_resp_t *r)
{
    char msg[300];
    int n;

    if (r->status != 101 || r->accept_len != 28 || memcmp(r->accept, c->accept, 28) != 0) {
        char why[64];
        snprintf(why, sizeof why, "websocket handshake failed (status %d)", r->status);
        client_lost(c, why);
        return -1;
    }
    c->state = C_SUBSCRIBING;
    n = snprintf(msg, sizeof msg, "{\"type\":\"subscribe\",\"id\":\"s\",\"subject\":\"%s\"}",
                 g.o.subject);
    return ws_send(c, WS_OP_TEXT, msg, (size_t)n);
}

/* Consumes what it can of p[0..n). Returns the bytes consumed, or -1 once
 * the client is gone (c must not be touched by the caller then). */
static long client_parse(client_t *c, const char *p, size_t n, uint64_t now)
{
    size_t off = 0;

    while (off < n) {
        const char *q = p + off;
        size_t left = n - off;
        http_resp_t r;
        long used;

        if (c->state == C_HANDSHAKE || (c->state == C_READY && (c->kind == K_PUB ||
                                                                 c->kind == K_INGEST))) {
            used = (c->kind == K_WS || c->kind == K_SSE) ? http_parse_head(q, left, &r)
                                                         : http_parse_response(q, left, &r);
            if (used == PARSE_AGAIN)
                break;
            if (used < 0) {
                client_lost(c, "malformed HTTP response");
                return -1;
            }
            off += (size_t)used;
            if (c->kind == K_WS) {
                if (ws_upgraded(c, &r))
                    return -1;
            } else if (c->kind == K_SSE) {
                if (r.status != 200) {
                    char why[64];
                    snprintf(why, sizeof why, "event stream refused (status %d)", r.status);
                    client_lost(c, why);
                    return -1;
                }
                became_ready(c);
            } else if (c->state == C_HANDSHAKE || !c->inflight) {
                client_lost(c, "unexpected HTTP response");
                return -1;
            } else {
                on_response(c, &r);
                if (c->closing)
                    return -1;
            }
        } else if (c->kind == K_WS) {
            ws_frame_t f;
            used = ws_parse_frame((const unsigned char *)q, left, &f);
            if (used == PARSE_AGAIN)
                break;
            if (used < 0) {
                client_lost(c, "malformed websocket frame");
                return -1;
            }
            off += (size_t)used;
            if (ws_frame(c, &f, now))
                return -1;
        } else if (c->kind == K_SSE) {
            size_t elen;
            used = sse_parse_event(q, left, &elen);
            if (used == PARSE_AGAIN)
                break;
            if (used < 0) {
                client_lost(c, "event too long");
                return -1;
            }
            off += (size_t)used;
            if (elen > 6 && (memcmp(q, "data: ", 6) == 0 || memmem(q, elen, "\ndata: ", 7)))
                record_delivery(c, q, elen, now);
        } else {
            client_lost(c, "bytes after the response");
            return -1;
        }
    }
    return (long)off;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = read_buf;
    buf->len = sizeof read_buf;
}

/* Parses from the read buffer directly when nothing is pending; keeps only
 * the unparsed tail, within the cap. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = s->data;
    uint64_t now;
    const char *p;
    size_t len;
    long used;

    if (n == 0)
        return;
    if (n < 0) {
        client_lost(c, n == UV_EOF ? "connection closed by the server" : uv_strerror((int)n));
        return;
    }
    now = now_ns();
    if (c->in.len) {
        if (bbuf_append(&c->in, buf->base, (size_t)n)) {
            client_lost(c, "input over the buffer cap");
            return;
        }
        p = c->in.data;
        len = c->in.len;
    } else {
        p = buf->base;
        len = (size_t)n;
    }
    used = client_parse(c, p, len, now);
    if (used < 0)
        return;
    if (c->in.len)
        bbuf_consume(&c->in, (size_t)used);
    else if ((size_t)used < len && bbuf_append(&c->in, p + used, len - (size_t)used))
        client_lost(c, "input over the buffer cap");
}

/* ---------------------------------------------------------------------------
 * Connecting and closing
 * ------------------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    client_t *c = h->data;

    c->state = C_CLOSED;
    bbuf_free(&c->in);
    g.open--;
}

static void client_close(client_t *c)
{
    if (c->closing || c->state == C_IDLE)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* The client is gone, or must go: count it where it belongs and close. */
static void client_lost(client_t *c, const char *why)
{
    if (c->closing)
        return;
    if (g.phase < PH_CLOSING) {
        if (c->state == C_READY) {
            g.s.lost++;
            if (c->kind == K_PUB)
                g.s.pub_err += c->inflight;
        } else {
            g.s.failed++;
            g.connecting--;
        }
        if (!g.first_error[0])
            snprintf(g.first_error, sizeof g.first_error, "%s", why);
    }
    client_close(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    client_t *c = container_of(req, client_t, connect_req);

    if (status) {
        client_lost(c, uv_strerror(status));
        return;
    }
    if (c->closing)
        return;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) {
        client_lost(c, "read_start failed");
        return;
    }
    switch (c->kind) {
    case K_WS:
        c->state = C_HANDSHAKE;
        send_ws_upgrade(c);
        break;
    case K_SSE:
        c->state = C_HANDSHAKE;
        send_sse_request(c);
        break;
    default:
        became_ready(c);
        break;
    }
}

/* Starts connects up to `limit` clients, CONNECT_INFLIGHT at a time (a
 * handshake counts as in flight), so the listen backlog never overflows. */
static void connect_more(size_t limit)
{
    while (g.next_connect < limit && g.connecting < CONNECT_INFLIGHT) {
        client_t *c = &g.clients[g.next_connect++];
        int rc = uv_tcp_init(g.loop, &c->tcp);
        if (rc) {
            g.s.failed++;
            continue;
        }
        c->tcp.data = c;
        c->state = C_CONNECTING;
        g.open++;
        g.connecting++;
        rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&g.addr,
                            on_connect);
        if (rc)
            client_lost(c, uv_strerror(rc));
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    client_close(container_of(req, client_t, shutdown_req));
}

/* WebSockets say goodbye (close 1000, then FIN once it is written); the
 * rest just close. Stragglers are cut when the close phase times out. */
static void close_everything(void)
{
    static const unsigned char bye[2] = {0x03, 0xE8};      /* 1000 */

    for (size_t i = 0; i < g.nclients; i++) {
        client_t *c = &g.clients[i];
        if (c->kind == K_WS && c->state == C_READY && !c->closing &&
            ws_send(c, WS_OP_CLOSE, bye, sizeof bye) == 0 &&
            uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
            continue;
        client_close(c);
    }
}

/* ---------------------------------------------------------------------------
 * Phases, driven by the 1 ms tick
 * ------------------------------------------------------------------------- */

static void enter(enum phase p)
{
    g.phase = p;
    g.phase_start = now_ns();
}

static void start_run(void)
{
    g.rss_subscribed = read_rss_kib(g.o.pid);
    g.srv_cpu0 = read_cpu_s(g.o.pid);
    g.mach_busy0 = read_machine_busy_s(&g.mach_total0);
    getrusage(RUSAGE_SELF, &g.ru0);
    enter(PH_RUN);
    g.t0 = g.phase_start;
    g.run_ns = g.o.seconds * NS_PER_S;
    g.planned = g.o.mode == MODE_FANOUT ? g.o.rate * g.o.seconds : 0;
    if (g.o.mode == MODE_INGEST)
        for (size_t i = 0; i < g.nclients; i++)
            if (g.clients[i].state == C_READY)
                ingest_next(&g.clients[i]);
}

/* Publishing stops: what fell due but found no room in any pipeline is
 * counted as not sent (the server did not keep up). The drain then waits
 * for the answers and deliveries still on their way: until all are in,
 * 2 s pass without any progress, or 20 s at most, so a shortfall at the
 * end is loss, not impatience. */
static void start_drain(void)
{
    g.s.unsent = g.planned > g.s.pub_sent ? g.planned - g.s.pub_sent : 0;
    enter(PH_DRAIN);
}

static bool requests_in_flight(void)
{
    for (size_t i = 0; i < g.nclients; i++)
        if (g.clients[i].inflight && !g.clients[i].closing)
            return true;
    return false;
}

static void start_closing(void)
{
    g.srv_cpu1 = read_cpu_s(g.o.pid);
    g.mach_busy1 = read_machine_busy_s(&g.mach_total1);
    g.rss_after = read_rss_kib(g.o.pid);
    getrusage(RUSAGE_SELF, &g.ru1);
    enter(PH_CLOSING);
    close_everything();
}

static void tick_connect(uint64_t now)
{
    if (g.phase == PH_PUB_CONNECT) {
        connect_more(g.npubs);
        if (g.next_connect == g.npubs && g.connecting == 0) {
            if (g.ready < g.npubs) {
                start_closing();
                return;
            }
            g.rss_before = read_rss_kib(g.o.pid);
            enter(PH_SUB_CONNECT);
        }
    }
    if (g.phase == PH_SUB_CONNECT) {
        connect_more(g.nclients);
        if (g.next_connect == g.nclients && g.connecting == 0) {
            g.connect_ns = now - g.phase_start;
            enter(PH_SETTLE);
        }
    }
    if (g.phase <= PH_SUB_CONNECT && now > g.connect_deadline) {
        snprintf(g.first_error, sizeof g.first_error,
                 "connect phase timed out: %zu of %zu clients ready", g.ready, g.nclients);
        g.connect_ns = now - g.phase_start;
        start_closing();
    }
}

static void on_tick(uv_timer_t *t)
{
    uint64_t now = now_ns();

    (void)t;
    if (g.interrupted && g.phase < PH_DRAIN) {
        if (g.phase == PH_RUN) {
            g.run_ns = now - g.t0;        /* report what ran */
            g.planned = g.due;
            start_drain();
        } else {
            start_closing();
        }
    }
    switch (g.phase) {
    case PH_PUB_CONNECT:
    case PH_SUB_CONNECT:
        tick_connect(now);
        break;
    case PH_SETTLE:
        if (g.ready == 0 || (g.o.mode == MODE_FANOUT && (g.npubs == 0 || g.s.ready_subs == 0))) {
            if (!g.first_error[0])
                snprintf(g.first_error, sizeof g.first_error, "no client could connect");
            start_closing();
        } else if (now - g.phase_start >= SETTLE_NS) {
            start_run();
        }
        break;
    case PH_RUN:
        if (now - g.t0 >= g.run_ns) {
            if (g.o.mode == MODE_FANOUT)
                schedule(now);          /* the last messages fall due */
            start_drain();
            break;
        }
        if (g.o.mode == MODE_FANOUT)
            schedule(now);
        break;
    case PH_DRAIN: {
        bool inflight = requests_in_flight();
        bool all_in = g.o.mode == MODE_INGEST ||
                      g.s.received >= g.s.pub_ok * g.s.ready_subs;
        uint64_t quiet_since = g.s.last_progress_ns > g.phase_start ? g.s.last_progress_ns
                                                                    : g.phase_start;
        if ((!inflight && all_in) || now - quiet_since >= DRAIN_QUIET_NS ||
            now - g.phase_start >= DRAIN_MAX_NS || g.interrupted)
            start_closing();
        break;
    }
    case PH_CLOSING:
        if (g.open == 0 || now - g.phase_start >= CLOSE_NS) {
            for (size_t i = 0; i < g.nclients; i++)
                client_close(&g.clients[i]);
            uv_timer_stop(&g.tick);
            uv_close((uv_handle_t *)&g.tick, NULL);
            uv_close((uv_handle_t *)&g.sigint, NULL);
        }
        break;
    }
}

static void on_sigint(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    g.interrupted = true;
}

/* ---------------------------------------------------------------------------
 * Report
 * ------------------------------------------------------------------------- */

static const char *fmt_ns(uint64_t ns, char *out, size_t cap)
{
    if (ns < 10 * 1000)
        snprintf(out, cap, "%.2f us", (double)ns / 1e3);
    else if (ns < 1000 * 1000)
        snprintf(out, cap, "%.0f us", (double)ns / 1e3);
    else if (ns < 1000ull * 1000 * 1000)
        snprintf(out, cap, "%.2f ms", (double)ns / 1e6);
    else
        snprintf(out, cap, "%.2f s", (double)ns / 1e9);
    return out;
}

static void print_latency(const char *what, const hist_t *h)
{
    char a[32], b[32], c[32], d[32];

    printf("  %-20s p50 %s  p99 %s  p99.9 %s  max %s  (n=%" PRIu64 ")\n", what,
           fmt_ns(hist_quantile(h, 0.50), a, sizeof a), fmt_ns(hist_quantile(h, 0.99), b, sizeof b),
           fmt_ns(hist_quantile(h, 0.999), c, sizeof c), fmt_ns(h->max, d, sizeof d), h->count);
}

typedef struct result {
    double secs, throughput, loss_pct, srv_cpu_pct, gen_cpu_pct, other_cpu_pct,
        rss_per_conn_kib;
    uint64_t expected, got;
} result_t;

static result_t compute(void)
{
    result_t r = {0};
    double wall;
    uint64_t conns = g.s.ready_subs;

    r.secs = (double)g.run_ns / 1e9;
    if (g.o.mode == MODE_FANOUT) {
        uint64_t end = g.s.last_delivery_ns > g.t0 + g.run_ns ? g.s.last_delivery_ns
                                                              : g.t0 + g.run_ns;
        r.secs = (double)(end - g.t0) / 1e9;
        r.expected = g.s.pub_ok * g.s.ready_subs;
        r.got = g.s.received;
        r.throughput = (double)g.s.received / r.secs;
        r.loss_pct = r.expected ? 100.0 * (double)(r.expected - (r.got < r.expected ? r.got
                                                                 : r.expected)) /
                                      (double)r.expected : 0;
    } else {
        conns = g.ready;
        r.expected = g.s.ok + g.s.not_ok;
        r.got = g.s.ok;
        r.throughput = (double)g.s.ok / r.secs;
    }
    wall = (double)(g.phase_start - g.t0) / 1e9;
    r.srv_cpu_pct = g.srv_cpu0 >= 0 && g.srv_cpu1 >= 0 && wall > 0
                        ? 100.0 * (g.srv_cpu1 - g.srv_cpu0) / wall : -1;
    r.gen_cpu_pct = wall > 0 ? 100.0 * (rusage_s(&g.ru1) - rusage_s(&g.ru0)) / wall : -1;
    r.other_cpu_pct = -1;
    if (g.mach_busy0 >= 0 && g.mach_busy1 >= 0 && wall > 0 && r.srv_cpu_pct >= 0) {
        r.other_cpu_pct = 100.0 * (g.mach_busy1 - g.mach_busy0) / wall - r.srv_cpu_pct -
                          r.gen_cpu_pct;
        if (r.other_cpu_pct < 0)
            r.other_cpu_pct = 0;
    }
    r.rss_per_conn_kib = g.rss_before >= 0 && g.rss_subscribed >= 0 && conns
                             ? (double)(g.rss_subscribed - g.rss_before) / (double)conns : -1;
    return r;
}

static void report_fanout(const result_t *r)
{
    printf("fanout %s: %" PRIu64 " ws + %" PRIu64 " sse on %s, %" PRIu64 " msg/s for %" PRIu64
           " s, %" PRIu64 "-byte payload, %zu publishers x %u pipelined\n", g.o.label, g.o.ws,
           g.o.sse, g.o.subject, g.o.rate, g.o.seconds, g.o.size, g.npubs, g.depth);
    printf("  subscribers          %" PRIu64 " of %" PRIu64 " ready in %.2f s; lost during the "
           "run %" PRIu64 " (slow-consumer closes %" PRIu64 ")\n", g.s.ready_subs,
           g.o.ws + g.o.sse, (double)g.connect_ns / 1e9, g.s.lost, g.s.slow_closed);
    printf("  publishes            %" PRIu64 " planned, %" PRIu64 " sent, %" PRIu64
           " accepted, %" PRIu64 " failed, %" PRIu64 " unanswered at the end, %" PRIu64
           " not sent (publishers backed up)\n", g.planned, g.s.pub_sent, g.s.pub_ok,
           g.s.pub_err, g.s.pub_sent - g.s.pub_ok - g.s.pub_err, g.s.unsent);
    printf("  deliveries           expected %" PRIu64 ", received %" PRIu64 " (ws %" PRIu64
           ", sse %" PRIu64 "), loss %.3f %%\n", r->expected, r->got, g.s.received_ws,
           g.s.received_sse, r->loss_pct);
    printf("  delivery checks      duplicates %" PRIu64 ", reordered %" PRIu64 " (%" PRIu64
           " beyond the window), unparsed %" PRIu64 ", fragmented %" PRIu64 "\n", g.s.dup,
           g.s.reordered, g.s.too_old, g.s.unparsed, g.s.fragmented);
    printf("  throughput           %.0f deliveries/s over %.2f s\n", r->throughput, r->secs);
    print_latency("delivery latency", &g.s.lat);
    print_latency("publish round trip", &g.s.pub_lat);
    printf("  scheduler lag        max %.2f ms (the client's tick behind start + k/R; not "
           "counted as latency)\n", (double)g.sched_lag_max / 1e6);
}

static void report_ingest(const result_t *r)
{
    printf("ingest %s: %zu connections, %" PRIu64 " s, %" PRIu64 "-byte body, POST %s\n",
           g.o.label, g.nclients, g.o.seconds, g.o.size, INGEST_PATH);
    printf("  connections          %zu ready, %" PRIu64 " lost\n", g.ready, g.s.lost);
    printf("  responses            %" PRIu64 " x 202, %" PRIu64 " other (first: %" PRIu64 ")\n",
           g.s.ok, g.s.not_ok, g.s.first_bad_status);
    printf("  throughput           %.0f webhooks/s (202) over %.2f s\n", r->throughput, r->secs);
    print_latency("latency of 202s", &g.s.lat);
}

static void write_tsv(const result_t *r)
{
    FILE *f = fopen(g.o.tsv, "a");
    char params[160];

    if (!f) {
        fprintf(stderr, "loadgen: cannot append to %s: %s\n", g.o.tsv, strerror(errno));
        return;
    }
    if (g.o.mode == MODE_FANOUT)
        snprintf(params, sizeof params, "%" PRIu64 " ws + %" PRIu64 " sse, %" PRIu64 " msg/s%s",
                 g.o.ws, g.o.sse, g.o.rate,
                 strncmp(g.o.subject, "webhooks.", 9) == 0 ? ", stored" : "");
    else
        snprintf(params, sizeof params, "%" PRIu64 " conns", g.o.conns);
    /* mode label params throughput p50 p99 p999 max(us) expected received loss%
     * rss/conn(KiB) server-cpu% loadgen-cpu% other-cpu% */
    fprintf(f, "%s\t%s\t%s\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%" PRIu64 "\t%" PRIu64
               "\t%.3f\t%.1f\t%.0f\t%.0f\t%.0f\n",
            g.o.mode == MODE_FANOUT ? "fanout" : "ingest", *g.o.label ? g.o.label : "-", params,
            r->throughput, (double)hist_quantile(&g.s.lat, 0.5) / 1e3,
            (double)hist_quantile(&g.s.lat, 0.99) / 1e3,
            (double)hist_quantile(&g.s.lat, 0.999) / 1e3, (double)g.s.lat.max / 1e3,
            r->expected, r->got, r->loss_pct, r->rss_per_conn_kib, r->srv_cpu_pct,
            r->gen_cpu_pct, r->other_cpu_pct);
    fclose(f);
}

static int report(void)
{
    result_t r;

    if (!g.t0) {
        printf("%s %s: did not start: %s\n", g.o.mode == MODE_FANOUT ? "fanout" : "ingest",
               g.o.label, g.first_error[0] ? g.first_error : "interrupted");
        return 1;
    }
    r = compute();

    if (g.o.mode == MODE_FANOUT)
        report_fanout(&r);
    else
        report_ingest(&r);
    if (g.o.pid)
        printf("  server RSS           %.1f MiB before, %.1f MiB with clients connected "
               "(%.1f KiB per connection), %.1f MiB after the run\n",
               (double)g.rss_before / 1024, (double)g.rss_subscribed / 1024,
               r.rss_per_conn_kib, (double)g.rss_after / 1024);
    printf("  cpu                  server %.0f %% of one core, loadgen %.0f %%, rest of the "
           "machine %.0f %% (%ld CPUs)\n", r.srv_cpu_pct, r.gen_cpu_pct, r.other_cpu_pct,
           sysconf(_SC_NPROCESSORS_ONLN));
    if (g.interrupted)
        printf("  interrupted          after %.2f s of the run\n", (double)g.run_ns / 1e9);
    if (g.first_error[0])
        printf("  first problem        %s (failed %" PRIu64 ", lost %" PRIu64 ")\n",
               g.first_error, g.s.failed, g.s.lost);
    if (g.o.tsv)
        write_tsv(&r);
    return g.interrupted || g.s.failed || g.s.lost || g.s.dup || r.loss_pct > 0 ||
                   g.s.not_ok || g.s.pub_err || g.s.unsent
               ? 2 : 0;
}

/* ---------------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------------- */

static int check_fd_limit(size_t need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need + 32) {
        fprintf(stderr, "loadgen: %zu connections need more open files than the limit %llu "
                        "(ulimit -n)\n", need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static int setup(void)
{

    g.npubs = g.o.mode == MODE_FANOUT ? (size_t)g.o.publishers : 0;
    g.nclients = g.o.mode == MODE_FANOUT ? g.npubs + (size_t)(g.o.ws + g.o.sse)
                                         : (size_t)g.o.conns;
    if (check_fd_limit(g.nclients))
        return -1;
    g.pad_len = (size_t)g.o.size;
    g.pad = malloc(g.pad_len);
    g.clients = calloc(g.nclients, sizeof *g.clients);
    if (!g.pad || !g.clients)
        return -1;
    g.depth = g.o.mode == MODE_FANOUT ? (unsigned)g.o.pipeline : 1;
    memset(g.pad, 'x', g.pad_len);
    if (g.o.key)
        g.auth_len = snprintf(g.auth, sizeof g.auth, "Authorization: Bearer %s\r\n", g.o.key);
    for (size_t i = 0; i < g.nclients; i++) {
        client_t *c = &g.clients[i];
        c->in.limit = WS_FRAME_MAX + HTTP_HEAD_MAX;
        c->kind = g.o.mode == MODE_INGEST ? K_INGEST
                  : i < g.npubs           ? K_PUB
                  : i < g.npubs + g.o.ws  ? K_WS
                                          : K_SSE;
        if ((c->kind == K_PUB || c->kind == K_INGEST) &&
            !(c->sent_ns = calloc(PIPELINE_MAX, sizeof *c->sent_ns)))
            return -1;
    }
    if (uv_ip4_addr(g.o.host, g.o.port, &g.addr))
        return -1;
    g.loop = uv_default_loop();
    g.rss_before = g.rss_subscribed = g.rss_after = -1;
    g.connect_deadline = now_ns() + 30 * NS_PER_S + (uint64_t)g.nclients * 2 * NS_PER_MS;
    enter(g.npubs ? PH_PUB_CONNECT : PH_SUB_CONNECT);
    if (g.phase == PH_SUB_CONNECT)
        g.rss_before = read_rss_kib(g.o.pid);
    uv_timer_init(g.loop, &g.tick);
    uv_signal_init(g.loop, &g.sigint);
    uv_signal_start(&g.sigint, on_sigint, SIGINT);
    uv_timer_start(&g.tick, on_tick, 0, TICK_MS);
    return 0;
}

int main(int argc, char **argv)
{
    int rc;

    signal(SIGPIPE, SIG_IGN);
    if (parse_opts(&g.o, argc, argv)) {
        usage(stderr);
        return 1;
    }
    if (setup()) {
        fprintf(stderr, "loadgen: setup failed\n");
        return 1;
    }
    uv_run(g.loop, UV_RUN_DEFAULT);
    rc = report();
    for (size_t i = 0; i < g.nclients; i++) {
        bbuf_free(&g.clients[i].in);
        free(g.clients[i].sent_ns);
    }
    free(g.clients);
    free(g.pad);
    if (uv_loop_close(g.loop))
        fprintf(stderr, "loadgen: handles left open at exit\n");
    return rc;
}
