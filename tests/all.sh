#!/bin/sh
# all.sh - runs the C suites (BUILD/run-tests) and every shell suite
# tests/t_*.sh, sums their "N passed, N failed" lines and prints the total last.
# Usage: BUILD=build sh tests/all.sh [suite ...]   (names select C suites only)
BUILD=${BUILD:-build}
export BUILD
pass=0 fail=0
tally() { # $1 = last line of a runner; a runner that printed none counts as one failure
    set -- $1
    if [ "$#" -ge 4 ] && [ "$2" = passed, ] && [ "$4" = failed ]; then
        pass=$((pass + $1)); fail=$((fail + $3))
    else
        fail=$((fail + 1)); echo "a test runner crashed or printed no summary" >&2
    fi
}
out=$("$BUILD/run-tests" "$@"); rc=$?
last=$(printf '%s\n' "$out" | tail -n 1)
[ $rc -gt 1 ] && echo "run-tests exited with status $rc" >&2
tally "$last"
if [ $# -eq 0 ]; then
    for t in tests/t_*.sh; do
        [ -f "$t" ] || continue
        echo "  $(basename "$t" .sh)" >&2
        last=$(sh "$t" | tail -n 1)
        tally "$last"
    done
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
