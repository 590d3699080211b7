#!/usr/bin/env bash
# Statements one `POST /v1/instances/create` costs end to end (the request,
# its write job, the audit entry, the reconciler and sim taking it to
# active), counted from sqlx's query log, and the server's context switches
# per create (each statement is a hand-off to sqlx's SQLite worker thread).
# sqlx does not log the writer's BEGIN and COMMIT (one per batch).
#
#   bench/statements_per_create.sh BIN [CREATES] [CLIENTS]
set -euo pipefail
bin=${1:?parasol binary}; n=${2:-400}; clients=${3:-8}
key=psl_bench_admin_key_0123456789abcdef
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
env -u PARASOL_CONFIG -u PARASOL_DATABASE_URL PARASOL_API_KEY=$key PARASOL_KEY_RATE=0 \
  PARASOL_ADDRESS_RATE=0 PARASOL_LOG="info,sqlx::query=debug" "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir" --sim-boot-seconds 0 \
  --sim-capacity 10000000 >"$dir/out" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/listening/ {print $NF}' "$dir/out")
# The first request fills the key cache; count from after it.
curl -sf -o /dev/null -H "X-API-KEY: $key" "$url/v1/instances"
sleep 1
from=$(wc -l <"$dir/log")
switches() { cat /proc/$pid/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
s0=$(switches)
body='{"cloud":"massedcompute","region":"us-central-1","shade_instance_type":"A6000","shade_cloud":true,"name":"bench"}'
seq "$n" | xargs -P "$clients" -I{} curl -sf -o /dev/null -H "X-API-KEY: $key" \
  -H 'Content-Type: application/json' -d "$body" "$url/v1/instances/create"
# Long enough for the reconciler to take every instance to active.
sleep 3
s1=$(switches)
tail -n +"$from" "$dir/log" | grep -o 'summary="[^"]*"' | sort | uniq -c | sort -rn |
  awk -v n="$n" '{c = $1; $1 = ""; printf "%6.2f %s\n", c / n, $0; t += c}
    END {printf "%6.2f statements per create in all\n", t / n}'
echo "context switches per create: $(( (s1 - s0) / n ))"
