#!/usr/bin/env bash
# Scale-out benchmark (not a test): create throughput and reconciler
# throughput (creating -> active with --sim-boot-seconds 0) on SQLite, on
# PostgreSQL with one replica, and on PostgreSQL with three replicas, against
# a release build. Prints one JSON line per setup; BENCHMARKS.md records the
# numbers with the machine they came from.
#
#   bench/scale.sh [N=2000] [CONCURRENCY=32]
#
# PostgreSQL: a throwaway cluster from scripts/pg.sh, durable settings
# (fsync and synchronous_commit on), unless PARASOL_BENCH_PG_URL names an
# admin URL of one to use instead.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
C=${2:-32}
KEY=psl_bench_admin_key_0123456789abcdef

cargo build --release --locked -p parasol --bin parasol --example scale_bench >&2
BIN=target/release/parasol
LOAD=target/release/examples/scale_bench

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n "${pgstarted:-}" ]]; then bash scripts/pg.sh stop "$work/pg" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -n "${PARASOL_BENCH_PG_URL:-}" ]]; then
  PG=$PARASOL_BENCH_PG_URL
else
  PG=$(PARASOL_PG_FSYNC=on bash scripts/pg.sh init "$work/pg")
  pgstarted=1
fi
db_url() { echo "${PG%/*}/$1"; }

# start NAME DB_URL: starts a server, prints its base URL.
start() {
  local dir="$work/$1"
  mkdir -p "$dir"
  PARASOL_API_KEY=$KEY PARASOL_KEY_RATE=0 PARASOL_ADDRESS_RATE=0 PARASOL_LOG=warn "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir" \
    --database-url "$2" --sim-boot-seconds 0 --sim-capacity 1000000 \
    >"$dir/out" 2>"$dir/log" &
  pids+=($!)
  for _ in $(seq 1 300); do
    if grep -q "parasol listening on" "$dir/out" 2>/dev/null; then
      sed -n 's/^parasol listening on //p' "$dir/out"
      return
    fi
    sleep 0.1
  done
  echo "server $1 did not start: $(cat "$dir/log")" >&2
  exit 1
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}

run() {
  local label=$1
  shift
  local out
  out=$("$LOAD" --key "$KEY" --n "$N" --concurrency "$C" "$@")
  echo "{\"setup\": \"$label\", ${out#\{}"
}

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB RAM; $(psql --version 2>/dev/null || echo postgres); N=$N concurrency=$C" >&2

a=$(start sqlite "sqlite://$work/sqlite.db")
run "sqlite, 1 server" "$a"
stop_all

psql -q "$PG" -c "CREATE DATABASE bench_one" >/dev/null
a=$(start pg1 "$(db_url bench_one)")
run "postgres, 1 replica" "$a"
stop_all

psql -q "$PG" -c "CREATE DATABASE bench_three" >/dev/null
a=$(start pg3a "$(db_url bench_three)")
b=$(start pg3b "$(db_url bench_three)")
c=$(start pg3c "$(db_url bench_three)")
run "postgres, 3 replicas" "$a" "$b" "$c"
stop_all
