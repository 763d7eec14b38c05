#!/usr/bin/env bash
# Runs the end-to-end suite (node --test) against a built server binary.
# SWITCHBOARD_BIN picks the binary (default: the ASan+UBSan build, so every
# end-to-end test is also a memory-safety test of the real server).
set -u
cd "$(dirname "$0")/.."
export SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$PWD/build/asan/switchboard}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=66}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p build
cd tests/e2e
out=$(mktemp)
node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
     --test-reporter=tap --test-reporter-destination="$out" ./*.test.js
rc=$?
pass=$(grep -E '^# pass ' "$out" | awk '{print $3}')
fail=$(grep -E '^# fail ' "$out" | awk '{print $3}')
rm -f "$out"
echo "e2e: ${pass:-0} passed, ${fail:-0} failed"
echo "e2e - ${pass:-0} ${fail:-0}" >> ../../build/test-results.txt
exit $rc
