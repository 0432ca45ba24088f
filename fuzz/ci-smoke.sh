#!/usr/bin/env bash
# CI smoke run of every fuzz target: installs what it needs (cargo-fuzz, a C++ compiler), builds
# all targets, then fuzzes each briefly from the committed seeds, about 60 seconds in total plus
# the build. Fails on any crash, panic, broken invariant or timeout, naming the target and the
# input that did it (saved under fuzz/artifacts/<target>/).
#
#   fuzz/ci-smoke.sh                  # about 60 s of fuzzing in all
#   FUZZ_SMOKE_SECONDS=300 fuzz/ci-smoke.sh
#   FUZZ_SEED=0 fuzz/ci-smoke.sh      # a random seed, as long-run.sh uses
#
# The seed is fixed by default so that a red CI run replays on any machine: the same seed from
# the same committed seeds takes the same path (a slower machine just gets less far along it).
# Exploring new paths is long-run.sh's job.
set -euo pipefail
source "$(dirname "$0")/common.sh"

total=${FUZZ_SMOKE_SECONDS:-60}
seed=${FUZZ_SEED:-20261204}
per=$(( total / ${#TARGETS[@]} ))
(( per >= 1 )) || per=1

ensure_tools
start=$(date +%s)
log "building ${#TARGETS[@]} targets (sanitizer: $SANITIZER)"
build_all
built=$(date +%s)

logs=$(mktemp -d)
failed=()
for t in "${TARGETS[@]}"; do
  if run_target "$t" -seed="$seed" -max_total_time="$per" >"$logs/$t.log" 2>&1; then
    printf '%-16s ok    %s\n' "$t" "$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$logs/$t.log" | grep -Eo '[0-9]+$' || echo '?') runs"
  else
    printf '%-16s FAIL\n' "$t"
    failed+=("$t")
    # The panic message, the backtrace's first frames and the reproducer's path.
    grep -E -A12 "panicked at|ERROR: libFuzzer|SUMMARY|deadly signal" "$logs/$t.log" | head -40 || true
    grep -E "Test unit written to|Reproduce with" "$logs/$t.log" || true
  fi
done
end=$(date +%s)
log "build $((built - start)) s, fuzzing $((end - built)) s, seed $seed"
if (( ${#failed[@]} )); then
  log "crashes in: ${failed[*]} (full logs in $logs)"
  exit 1
fi
rm -rf "$logs"
