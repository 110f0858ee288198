#!/usr/bin/env bash
# The long fuzzing run: every property test named fuzz_* (the parsers of outside input, see
# README "Fuzzing") in release mode, CASES cases each (default 1 000 000), one property per job,
# FUZZ_JOBS jobs at once (default: the number of cores). Prints a summary: properties, cases
# each, failures, the wall time of each property and of the run, and the seed (PROPTEST_RNG_SEED
# replays a run; without it each run draws a new one).
#
#   scripts/fuzz.sh [CASES]                 e.g. nice scripts/fuzz.sh 1000000
#   FUZZ_FILTER=csv scripts/fuzz.sh 10000   only the properties whose name contains "csv"
#   FUZZ_PROFILE=dev scripts/fuzz.sh 1000   the dev profile (no release build of polars;
#                                           overflow checks and debug assertions on)
#   FUZZ_CRATES="observatory-query" …       only these crates' properties
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cases="${1:-1000000}"
seed="${PROPTEST_RNG_SEED:-$(( (RANDOM << 30) | (RANDOM << 15) | RANDOM ))}"
jobs="${FUZZ_JOBS:-$(nproc)}"
filter="${FUZZ_FILTER:-}"
all="observatory-ingest observatory-query observatory-report observatory-access observatory-stats observatory-disclosure"
read -r -a crates <<<"${FUZZ_CRATES:-$all}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

# One crate per cargo invocation, as CI builds them: several -p at once unify features across the
# crates and rebuild polars with another feature set.
profile="${FUZZ_PROFILE:-release}"
echo "building the fuzz properties ($profile)…"
: >"$logs/binaries"
for crate in "${crates[@]}"; do
    cargo test --profile "$profile" --lib -p "$crate" --no-run --message-format=json 2>"$logs/build.err" \
        | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])' >>"$logs/binaries" || { cat "$logs/build.err"; exit 1; }
done

: >"$logs/tests"
while read -r binary; do
    "$binary" --list fuzz_ 2>/dev/null | sed -n 's/: test$//p' | grep -- "$filter" \
        | sed "s|^|$binary |" >>"$logs/tests" || true
done <"$logs/binaries"
total=$(wc -l <"$logs/tests")
echo "$total properties × $cases cases, $jobs at a time, PROPTEST_RNG_SEED=$seed"

run_one() {
    local binary="$1" name="$2" start end status
    start=$(date +%s)
    if PROPTEST_CASES="$cases" PROPTEST_RNG_SEED="$seed" RUST_BACKTRACE=0 \
        "$binary" --exact "$name" --test-threads=1 >"$logs/$name.log" 2>&1; then
        status=ok
    else
        status=FAILED
    fi
    end=$(date +%s)
    printf '%-8s %6ss  %s::%s\n' "$status" "$((end - start))" "$(basename "${binary%-*}")" "$name" \
        | tee -a "$logs/results"
}
export -f run_one
export cases seed logs

start=$(date +%s)
: >"$logs/results"
xargs -P "$jobs" -L 1 bash -c 'run_one "$0" "$1"' <"$logs/tests"
end=$(date +%s)

failed=$(grep -c '^FAILED' "$logs/results" || true)
echo
echo "== fuzz summary =="
echo "properties: $total; cases each: $cases; seed: $seed; jobs: $jobs; profile: $profile"
echo "failures:   $failed"
echo "wall time:  $((end - start)) s"
if [ "$failed" -gt 0 ]; then
    for log in $(grep '^FAILED' "$logs/results" | awk '{print $3}' | sed 's/^[^:]*:://'); do
        echo "--- $log"
        grep -E 'Test failed|minimal failing input|panicked' "$logs/$log.log" | head -20
    done
    exit 1
fi
