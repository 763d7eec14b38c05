#!/usr/bin/env bash
# Runs each cmocka unit-test binary in DIR and prints one summary line.
# usage: run-unit.sh DIR NAME...
set -u
dir=$1; shift
passed=0; failed=0; broken=()
mkdir -p build
for name in "$@"; do
    out=$(timeout 300 "$dir/$name" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^\[  (PASSED|FAILED|ERROR)' | sed "s|^|$name: |"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        failed=$((failed + 1)); printf '%s\n' "$out" | tail -30
    fi
    [ "$rc" -ne 0 ] && broken+=("$name")
done
echo "unit ($dir): $passed passed, $failed failed"
echo "unit $dir $passed $failed" >> build/test-results.txt
[ "${#broken[@]}" -eq 0 ] || { echo "failing: ${broken[*]}"; exit 1; }
