#!/usr/bin/env bash
# Issue-9 benchmarks (not tests: CI times nothing). Builds release binaries
# of `parasol` and of the reference server (crates/parasol/examples/
# reference_server.rs), then runs bench/bench.py, which starts servers on
# SQLite with the sim at zero boot delay and loads them with Debian's `wrk`.
# Every figure is printed as a JSON line (and written to bench/results.json);
# BENCHMARKS.md records them with the machine they ran on.
#
#   bench/run.sh                       # everything, about 10 minutes
#   bench/run.sh --only types,create   # a subset (see bench/bench.py)
#
# The machine is best left otherwise idle: the ratio figures compare two
# servers measured back to back, the absolute ones do not.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
fi

cargo build --release --locked -p parasol --bin parasol --example reference_server --example events_bench \
  --example agents_bench >&2
ulimit -n 65536 2>/dev/null || true
exec python3 bench/bench.py \
  --bin target/release/parasol \
  --reference target/release/examples/reference_server \
  --out bench/results.json "$@"
