#!/usr/bin/env bash
# Runs the end-to-end suite (node --test) against a built server binary,
# one test file at a time (works with Debian's Node 18 as with newer ones),
# and prints one summary line.
# SWITCHBOARD_BIN picks the binary (default: the ASan+UBSan build, so every
# end-to-end test is also a memory-safety test of the real server).
set -u
cd "$(dirname "$0")/.."
export SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$PWD/build/asan/switchboard}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=66}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p build
cd tests/e2e
pass=0; fail=0; rc=0; broken=()
tap=$(mktemp)
for f in ./*.test.js; do
    node --test --test-reporter=spec --test-reporter-destination=stdout \
         --test-reporter=tap --test-reporter-destination="$tap" "$f" || { rc=1; broken+=("$f"); }
    p=$(grep -E '^# pass ' "$tap" | awk '{print $3}')
    q=$(grep -E '^# fail ' "$tap" | awk '{print $3}')
    pass=$((pass + ${p:-0})); fail=$((fail + ${q:-0}))
    if [ -z "$p" ] && [ -z "$q" ]; then fail=$((fail + 1)); fi   # the file did not run
done
rm -f "$tap"
echo "e2e: $pass passed, $fail failed"
echo "e2e - $pass $fail" >> ../../build/test-results.txt
[ "${#broken[@]}" -eq 0 ] || echo "failing: ${broken[*]}"
exit $rc
