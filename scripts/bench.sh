#!/usr/bin/env bash
# Benchmark table for README "Performance": builds in release mode, then measures whole-process
# runs against the fake Duo server on loopback. BENCH_RUNS and BENCH_STORM tune the counts.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo build --release --quiet --example bench
ulimit -n 65536 2>/dev/null || true
exec target/release/examples/bench
