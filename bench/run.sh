#!/usr/bin/env bash
# Runs every provtarget benchmark (issue 5; BENCHMARKS.md explains each figure):
# the whole-process driver (load, buildinfo, RSS, cancellation, directory scan), then
# the criterion benches (targets across the ABI vs native, in-process loads and scan).
# Extra arguments go to the driver, e.g. `bash bench/run.sh --runs 41 load`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== machine: $(nproc) cores, $(rustc --version), $(date -u +%Y-%m-%dT%H:%MZ)"
cargo build --release --workspace --lib --bins --quiet
./target/release/provtarget-bench "$@"
echo
echo "== criterion: targets (ABI vs native)"
cargo bench --quiet -p provtarget --bench targets
echo "== criterion: loader (in-process loads, directory scan)"
cargo bench --quiet -p provtarget-loader --bench load
