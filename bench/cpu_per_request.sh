#!/usr/bin/env bash
# CPU time one server process spends per request under wrk: a figure the
# neighbours' load on a shared machine disturbs far less than throughput.
# Reads utime+stime of PID from /proc before and after a wrk run against
# URL (bench/wrk.lua, so BENCH_KEY etc. apply) and prints throughput, p50
# and microseconds of CPU per request.
#
#   bench/cpu_per_request.sh PID URL [SECONDS] [CONNECTIONS]
set -euo pipefail
pid=${1:?server pid}; url=${2:?url}; secs=${3:-5}; conns=${4:-64}
here=$(dirname "$0")
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
a=$(ticks)
out=$(BENCH_KEY=${BENCH_KEY:-psl_bench_admin_key_0123456789abcdef} \
  wrk -t2 -c"$conns" -d"${secs}s" --timeout=30s -s "$here/wrk.lua" "$url" | grep '^RESULT ')
b=$(ticks)
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$out"; }
req=$(field requests)
echo "rps=$(field rps) p50_ms=$(field p50_ms) non2xx=$(field non2xx)" \
  "cpu_us_per_request=$(awk -v t=$((b - a)) -v hz="$hz" -v n="$req" 'BEGIN{printf "%.1f", t * 1e6 / hz / n}')"
