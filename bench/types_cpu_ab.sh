#!/usr/bin/env bash
# CPU time per request of `GET /v1/instances/types` (filtered and
# unfiltered) for two parasol binaries and the reference server, measured
# in turn, ROUNDS times: on a shared machine the CPU per request moves far
# less than throughput, so this is the A/B to read beside bench.py's ratios.
# Servers start as bench.py starts them (SQLite, rate limits off, the sim at
# zero boot delay); the reference serves the bodies the second binary gives.
#
#   bench/types_cpu_ab.sh BASE_BIN BRANCH_BIN REFERENCE_BIN [ROUNDS] [SECONDS]
set -euo pipefail
base_bin=${1:?base binary}; branch_bin=${2:?branch binary}; ref_bin=${3:?reference binary}
rounds=${4:-2}; secs=${5:-5}
here=$(cd "$(dirname "$0")" && pwd)
key=psl_bench_admin_key_0123456789abcdef
filter='?gpu_type=H100&available=true'
work=$(mktemp -d /tmp/parasol-types-ab-XXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

serve() { # BIN NAME: prints "PID BASE_URL"
  local d="$work/$2"; mkdir -p "$d"
  PARASOL_API_KEY=$key PARASOL_KEY_RATE=0 PARASOL_ADDRESS_RATE=0 PARASOL_SQLITE_SYNCHRONOUS=full \
    "$1" serve --listen 127.0.0.1:0 --data-dir "$d" --sim-boot-seconds 0 \
    --sim-capacity 10000000 >"$d/out" 2>"$d/server.log" &
  local pid=$!
  for _ in $(seq 200); do grep -q "listening on" "$d/out" 2>/dev/null && break; sleep 0.05; done
  local url; url=$(grep "listening on" "$d/out" | awk '{print $NF}')
  until curl -sf "$url/readyz" >/dev/null; do sleep 0.05; done
  echo "$pid $url"
}

read -r bpid burl < <(serve "$base_bin" base); pids+=("$bpid")
read -r npid nurl < <(serve "$branch_bin" branch); pids+=("$npid")
curl -sf -H "X-API-KEY: $key" "$nurl/v1/instances/types" >"$work/unfiltered.json"
curl -sf -H "X-API-KEY: $key" "$nurl/v1/instances/types$filter" >"$work/filtered.json"
"$ref_bin" 127.0.0.1:0 "/v1/instances/types=$work/unfiltered.json" \
  "/v1/instances/types$filter=$work/filtered.json" >"$work/ref.out" &
rpid=$!; pids+=("$rpid")
until grep -q listening "$work/ref.out" 2>/dev/null; do sleep 0.05; done
rurl=$(awk '{print $NF}' "$work/ref.out")

for q in "$filter" ""; do
  for u in "$burl" "$nurl" "$rurl"; do
    BENCH_KEY=$key wrk -t2 -c64 -d2s -s "$here/wrk.lua" "$u/v1/instances/types$q" >/dev/null
  done
  for _ in $(seq "$rounds"); do
    for who in base branch reference; do
      case $who in
        base) p=$bpid u=$burl ;; branch) p=$npid u=$nurl ;; reference) p=$rpid u=$rurl ;;
      esac
      echo "query=${q:-none} $who load=$(cut -d' ' -f1 /proc/loadavg)" \
        "$("$here/cpu_per_request.sh" "$p" "$u/v1/instances/types$q" "$secs")"
    done
  done
done
