#!/usr/bin/env bash
# Sums the results every suite of `make test` recorded and prints the final
# line. Each line of build/test-results.txt is "suite variant passed failed".
set -u
f=build/test-results.txt
[ -f "$f" ] || { echo "0 passed, 0 failed"; exit 1; }
awk '{p += $3; f += $4} END {printf "%d passed, %d failed\n", p, f; exit (f > 0)}' "$f"
