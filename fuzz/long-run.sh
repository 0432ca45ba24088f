#!/usr/bin/env bash
# Long fuzzing run: each target in turn for a fixed number of executions (libFuzzer -runs=),
# one job, then a table of target, executions, seconds, execs/s and crashes.
#
#   fuzz/long-run.sh                       # 10,000,000 executions per target, all targets
#   fuzz/long-run.sh 1000000 config env    # fewer, only these
#
# FUZZ_MAX_SECONDS=600 caps each target's time (for slow targets; the table shows the executions
# actually done). libFuzzer stops a target at its first crash, so "crashes" is 0 or 1; the input
# is saved under fuzz/artifacts/<target>/ and the log under fuzz/artifacts/logs/.
# Run under `nice -n 10` on a shared machine. Exits non-zero when any target crashed.
set -euo pipefail
source "$(dirname "$0")/common.sh"

runs=${1:-10000000}
shift || true
targets=("$@")
(( ${#targets[@]} )) || targets=("${TARGETS[@]}")
cap=${FUZZ_MAX_SECONDS:-0}

ensure_tools
build_all
logdir="$FUZZ_DIR/artifacts/logs/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$logdir"

rows=()
any_crash=0
for t in "${targets[@]}"; do
  extra=(-runs="$runs")
  (( cap > 0 )) && extra+=(-max_total_time="$cap")
  note=""
  (( cap > 0 )) && note=" (at most ${cap}s)"
  log "$t: up to $runs executions$note, log $logdir/$t.log"
  start=$(date +%s.%N)
  set +e
  run_target "$t" "${extra[@]}" >"$logdir/$t.log" 2>&1
  rc=$?
  set -e
  end=$(date +%s.%N)
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$logdir/$t.log" | grep -Eo '[0-9]+$' | tail -1 || true)
  if [ -z "$execs" ]; then
    # No final stats (a crash ends the run first): take the last status line's count.
    execs=$(grep -Eo '^#[0-9]+' "$logdir/$t.log" | tail -1 | tr -d '#' || true)
  fi
  crashes=$(grep -c 'Test unit written to' "$logdir/$t.log" || true)
  if (( rc != 0 && crashes == 0 )); then crashes=1; fi
  (( crashes == 0 )) || any_crash=1
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  rate=$(awk -v n="${execs:-0}" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  rows+=("$(printf '%-16s %12s %9s %10s %7s' "$t" "${execs:-?}" "$secs" "$rate" "$crashes")")
  grep -h 'Test unit written to' "$logdir/$t.log" >&2 || true
done

printf '%-16s %12s %9s %10s %7s\n' target executions seconds execs/s crashes
printf '%s\n' "${rows[@]}"
exit "$any_crash"
