# lib.sh - helpers for the shell suites (tests/t_*.sh): ok/bad counting and the
# final "N passed, N failed" line. Source it, call t_check, end with t_done.
BUILD=${BUILD:-build}
PS="$BUILD/patchsae"
T_PASS=0; T_FAIL=0
T_TMP=$(mktemp -d /tmp/patchsae-sh-XXXXXX)
trap 'rm -rf "$T_TMP"' EXIT
# t_check "description" COMMAND...   passes when COMMAND exits 0
t_check() {
    d=$1; shift
    if "$@" >/dev/null 2>&1; then T_PASS=$((T_PASS + 1)); else T_FAIL=$((T_FAIL + 1)); echo "$0: FAILED: $d" >&2; fi
}
# t_status "description" EXPECTED COMMAND...   passes when COMMAND exits with EXPECTED
t_status() {
    d=$1; want=$2; shift 2
    "$@" >/dev/null 2>&1; got=$?
    if [ "$got" -eq "$want" ]; then T_PASS=$((T_PASS + 1)); else T_FAIL=$((T_FAIL + 1)); echo "$0: FAILED: $d (exit $got, expected $want)" >&2; fi
}
t_done() { echo "$T_PASS passed, $T_FAIL failed"; }
# The shared data directory (OpenAI's BPE merges, class lists), looked up as
# the C suites do (t_shared): $PS_SHARED_DATA, ../shared/data, ../../shared/data,
# /work/shared/data. T_BPE is the merges file ("" when none is found).
T_SHARED=""
for d in "${PS_SHARED_DATA:-}" ../shared/data ../../shared/data /work/shared/data; do
    if [ -n "$d" ] && [ -f "$d/bpe_simple_vocab_16e6.txt.gz" ]; then T_SHARED=$d; break; fi
done
T_BPE=${T_SHARED:+$T_SHARED/bpe_simple_vocab_16e6.txt.gz}
