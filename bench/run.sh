#!/bin/sh
# run.sh BUILD - `make bench`: runs every bench/bench_*.sh in turn. Each prints
# its own table with PyTorch measured in the same run and the OpenBLAS core.
# Results and the commands are kept in bench/README.md.
B=${1:-build}
rc=0
for b in bench/bench_*.sh; do
    echo "== $b"
    sh "$b" "$B" || { echo "$b failed" >&2; rc=1; }
done
exit $rc
