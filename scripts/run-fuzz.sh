#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS on its corpus (fuzz/corpus/NAME,
# seeds committed in the repo; new inputs go to build/fuzz/corpus/NAME).
# usage: run-fuzz.sh SECONDS NAME...
set -u
secs=$1; shift
passed=0; failed=0
mkdir -p build
for name in "$@"; do
    work=build/fuzz/corpus/$name
    mkdir -p "$work" "fuzz/corpus/$name"
    if build/fuzz/bin/"$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=0 "$work" "fuzz/corpus/$name" > "build/fuzz/$name.log" 2>&1; then
        runs=$(grep -Eo 'Done [0-9]+ runs' "build/fuzz/$name.log" | tail -1)
        echo "fuzz $name: ok (${runs:-?} in ${secs}s)"
        passed=$((passed + 1))
    else
        echo "fuzz $name: FAILED"; tail -40 "build/fuzz/$name.log"
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
echo "fuzz - $passed $failed" >> build/test-results.txt
[ "$failed" -eq 0 ]
