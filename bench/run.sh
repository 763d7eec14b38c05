#!/usr/bin/env bash
# bench/run.sh - Switchboard's benchmark matrix (`make bench`).
#
# Builds bench/loadgen.c into build/bench/loadgen, then for every case
# starts a fresh release server (port 0, temporary data dir, the case's
# fsync mode), runs loadgen against it, stops the server with SIGTERM and
# keeps loadgen's report. A fresh server per case keeps RSS-per-connection
# honest (no memory left over from the previous case). Ends with a summary
# table; the full reports and the table are also written to
# build/bench/last-run.txt.
#
# Every endpoint but /health needs a credential. A fresh data dir makes the
# server create its bootstrap admin key in {data_dir}/admin.key; loadgen
# gets it with --key (the key's own rate is unlimited). The "auth-cost"
# cases then repeat one ingest load with three credentials, to show what
# authentication costs per request: the admin API key, a JWT from
# POST /auth/token, and an API key with a token bucket (a rate too high to
# refuse anything, so only the bucket's bookkeeping is measured). The
# server runs at its default log level (info), so every accepted request
# also writes its audit line, as it would in production.
#
# Bounded: each loadgen run is under `timeout`, each server start and stop
# has a deadline; the default matrix takes about three minutes.
#   BENCH_SECONDS=N   seconds per case (default 10)
#   BENCH_QUICK=1     a tiny matrix (seconds, not minutes) to check the harness
#   BENCH_WAIT_IDLE=N on a shared machine: before each case, wait up to N s
#                     for other processes to use under 15 % of one core
#   BENCH_SERVER=PATH the server binary (default build/release/switchboard);
#                     a copy keeps a long run on one build while others rebuild
#   BENCH_FILTER=RE   run only the cases whose "FSYNC ARGS... [auth-cost
#                     cred=CRED]" match RE (grep -E), e.g.
#                     BENCH_FILTER='normal ingest' or BENCH_FILTER=auth-cost
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_CASE=${BENCH_SECONDS:-10}
OUT=build/bench
LOADGEN=$OUT/loadgen
SERVER=${BENCH_SERVER:-build/release/switchboard}
TSV=$OUT/last-run.tsv
LOG=$OUT/last-run.txt
CC=${CC:-cc}

mkdir -p "$OUT"
[ -x "$SERVER" ] || make --no-print-directory build/release/switchboard

# --- build loadgen (flags as the Makefile's) ---------------------------------
# shellcheck disable=SC2046
$CC -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
    -Wmissing-prototypes -Wvla $(pkg-config --cflags libuv libcrypto) \
    -o "$LOADGEN" bench/loadgen.c $(pkg-config --libs libuv libcrypto)

# --- file descriptors: 5,000+ clients on one side, as many on the other ------
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
MAX_CONNS=$((NOFILE - 1000))   # what the server may accept; the rest for its own files

TMP=$(mktemp -d /tmp/switchboard-bench.XXXXXX)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

: > "$TSV"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

# start_server FSYNC: sets SERVER_PID, PORT and ADMIN_KEY, or fails.
start_server() {
    local fsync=$1 dir
    dir=$(mktemp -d "$TMP/data.XXXX")
    # environment variables, not flags: their names are the stable interface
    SWITCHBOARD_FSYNC=$fsync SWITCHBOARD_MAX_CONNECTIONS=$MAX_CONNS \
        "$SERVER" serve --port 0 --data-dir "$dir" > "$dir.out" 2> "$dir.log" &
    SERVER_PID=$!
    PORT=""
    for _ in $(seq 100); do
        PORT=$(grep -o '"msg":"listening".*"port":[0-9]*' "$dir.log" 2>/dev/null |
               grep -o '"port":[0-9]*' | head -1 | cut -d: -f2 || true)
        [ -n "$PORT" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$PORT" ]; then
        say "server did not start:"; tee -a "$LOG" < "$dir.log"
        return 1
    fi
    SERVER_LOG=$dir.log
    # written before the listener opens (stdout, which shows it too, goes
    # to $dir.out and is removed with $TMP)
    ADMIN_KEY=$(cat "$dir/admin.key" 2>/dev/null || true)
    if [ -z "$ADMIN_KEY" ]; then
        say "server started without $dir/admin.key"
        stop_server
        return 1
    fi
}

# api METHOD PATH [JSON]: one admin request to the running server; prints
# the body, fails on a non-2xx answer or after 5 s.
api() {
    curl -fsS -m 5 -X "$1" -H "Authorization: Bearer $ADMIN_KEY" \
         -H 'Content-Type: application/json' ${3:+--data "$3"} \
         "http://127.0.0.1:$PORT$2"
}

# json_string NAME: the string field NAME of the JSON object on stdin; the
# credentials asked for here are base64url or sb_..., never escaped.
json_string() {
    sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"
}

# credential CRED: sets KEY to the credential loadgen is to use:
#   admin  the bootstrap API key (unlimited rate)
#   jwt    an HS256 token minted from it by POST /auth/token
#   rated  a new API key with a token bucket of 10^6/s, burst 10^6
credential() {
    local body
    KEY=""
    case $1 in
    admin) KEY=$ADMIN_KEY ;;
    jwt)   body=$(api POST /auth/token) && KEY=$(echo "$body" | json_string token) ;;
    rated) body=$(api POST /api/v1/keys '{"name":"bench-rated","permissions":{"publish":[">"],
               "subscribe":[">"],"history":[">"],"rate":{"per_second":1000000,"burst":1000000}}}') &&
           KEY=$(echo "$body" | json_string key) ;;
    *)     return 1 ;;
    esac
    [ -n "${KEY:-}" ]
}

# stop_server: SIGTERM, then at most 15 s (the server's grace is 10 s).
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        say "  server did not stop within 15 s of SIGTERM: killed"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    local problems
    problems=$(grep '"level":"\(warn\|error\)"' "$SERVER_LOG" | grep -v '"msg":"admin key created"' || true)
    if [ -n "$problems" ]; then
        say "  server log: $(echo "$problems" | wc -l) warning/error lines; the first 3:"
        echo "$problems" | head -3 | cut -c1-300 | sed 's/^/    /' | tee -a "$LOG"
    fi
    SERVER_PID=""
}

# Other processes skew every number here: measure them for two seconds.
busy_pct() {
    local a b
    a=$(head -1 /proc/stat); sleep 2; b=$(head -1 /proc/stat)
    echo "$a $b" | awk -v n="$(nproc)" '{
        b1 = $2+$3+$4+$7+$8+$9; t1 = b1+$5+$6; b2 = $13+$14+$15+$18+$19+$20; t2 = b2+$16+$17
        printf "%d", 100 * n * (b2-b1) / (t2-t1) }'
}
# wait_idle: up to BENCH_WAIT_IDLE seconds for the machine to quieten.
wait_idle() {
    local limit=${BENCH_WAIT_IDLE:-0} waited=0 busy
    [ "$limit" -gt 0 ] || return 0
    while busy=$(busy_pct) && [ "$busy" -ge 15 ] && [ "$waited" -lt "$limit" ]; do
        waited=$((waited + 2))
    done
    [ "$waited" -eq 0 ] || say "  (waited ${waited} s for an idle machine; others now use ${busy} %)"
}

# run_case FSYNC LOADGEN-ARGS...: one fresh server, one loadgen run, with
# the credential named by CRED (default admin; see credential). TAG, when
# set, marks the case for BENCH_FILTER and the table.
run_case() {
    local fsync=$1 cred=${CRED:-admin} label rc=0
    shift
    label="fsync=$fsync${TAG:+ $cred}"
    if [ -n "${BENCH_FILTER:-}" ] &&
       ! echo "$fsync $*${TAG:+ $TAG cred=$cred}" | grep -Eq -- "$BENCH_FILTER"; then
        return 0
    fi
    wait_idle
    start_server "$fsync" || return 0
    if ! credential "$cred"; then
        say "  could not get a $cred credential from the server"
        stop_server
        return 0
    fi
    say ""
    say "\$ loadgen $* --key <$cred credential> --url http://127.0.0.1:$PORT --pid $SERVER_PID"
    say "  (server SWITCHBOARD_FSYNC=$fsync; credential: $cred, ${#KEY} bytes;"\
        "load average $(cut -d' ' -f1-3 /proc/loadavg))"
    timeout --signal=INT --kill-after=10 $((SECONDS_PER_CASE + 120)) \
        "$LOADGEN" "$@" --key "$KEY" --url "http://127.0.0.1:$PORT" --pid "$SERVER_PID" \
        --label "$label" --tsv "$TSV" 2>&1 | tee -a "$LOG" || rc=$?
    [ "$rc" -eq 0 ] || say "  (loadgen exit status $rc; 2 = loss, failures, errors or publishes not sent)"
    stop_server
}

S=$SECONDS_PER_CASE
say "Switchboard benchmarks  $(date -u +%Y-%m-%dT%H:%M:%SZ)  commit $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
say "server: $SERVER (sha256 $(sha256sum "$SERVER" | cut -c1-12))"
say "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"\
    "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r),"\
    "open files $NOFILE, server SWITCHBOARD_MAX_CONNECTIONS=$MAX_CONNS"

IDLE_BUSY=$(busy_pct)
say "before the run, other processes used ${IDLE_BUSY} % of one core (the machine has $(( $(nproc) * 100 )) %)"
if [ "$IDLE_BUSY" -gt 20 ]; then
    say "WARNING: the machine is not idle; the numbers below are lower than this server can do."
fi

# auth_cost CONNS SECONDS: the same ingest load with each kind of credential
auth_cost() {
    local cred
    for cred in admin jwt rated; do
        CRED=$cred TAG=auth-cost run_case normal ingest --conns "$1" --seconds "$2"
    done
}

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    run_case full   ingest --conns 4 --seconds 2
    run_case normal fanout --ws 50 --sse 50 --rate 200 --seconds 2
    auth_cost 4 2
else
    # durable ingest: group commit with fsync per batch (full) or not (normal)
    run_case full   ingest --conns 16 --seconds "$S"
    run_case full   ingest --conns 64 --seconds "$S"
    run_case normal ingest --conns 16 --seconds "$S"
    run_case normal ingest --conns 64 --seconds "$S"
    # live fan-out at the target loads, then at a tenth of the message rate
    run_case full   fanout --ws 1000 --sse 1000 --rate 1000 --seconds "$S"
    run_case full   fanout --ws 5000 --sse 0 --rate 200 --seconds "$S"
    run_case full   fanout --ws 1000 --sse 1000 --rate 100 --seconds "$S"
    run_case full   fanout --ws 5000 --sse 0 --rate 20 --seconds "$S"
    # stored fan-out: every publish is a durable commit before it is sent
    run_case full   fanout --ws 1000 --sse 1000 --rate 100 --seconds "$S" \
                           --subject webhooks.bench.fanout
    # what authentication costs per request: fsync normal keeps the disk out
    auth_cost 16 "$S"
fi

# --- summary -------------------------------------------------------------------
{
    echo ""
    echo "Summary (latency in ms; fanout latency is publish-due -> delivered, ingest is"
    echo "request -> 202; RSS/conn is the server's VmRSS growth per client connected;"
    echo "CPU is percent of one core over the run: server / loadgen / every other process)"
    printf '%-6s %-18s %-38s %12s %8s %8s %8s %8s %8s %9s  %s\n' \
        mode fsync case "throughput/s" p50 p99 p99.9 max loss% "RSS/conn" "CPU srv/gen/other"
    awk -F'\t' '{
        rss = ($12 < 0) ? "-" : sprintf("%.1f KiB", $12)
        printf "%-6s %-18s %-38s %12s %8.2f %8.2f %8.2f %8.2f %8.3f %9s  %d/%d/%d\n",
               $1, $2, $3, $4, $5/1000, $6/1000, $7/1000, $8/1000, $11, rss, $13, $14, $15
    }' "$TSV"
} | tee -a "$LOG"
