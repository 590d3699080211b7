#!/usr/bin/env bash
# Scale run across replicas (a benchmark, not a test; nothing calls it from
# the test suite): three `parasol serve` replicas on one PostgreSQL database
# holding --instances live sim instances, under --polls status polls a
# second (GET /v1/instances/{id}/info over every id, spread evenly over the
# replicas), --agents agents reporting every --interval seconds (spread the
# same way) and a trickle of --creates creates a second. Two phases of
# --seconds each: all three replicas up, then the same load with the third
# replica SIGKILLed at --kill-at seconds. Prints JSON lines: one per replica
# and phase (CPU cores used and RSS from /proc, client-side p50/p99 per
# route, 10-s windows), one per phase (PostgreSQL's CPU, the load
# average, instance writes per second, how many active checks are overdue,
# what PostgreSQL's sessions were doing, sampled once a second), a check
# that every acknowledged create and agent report is in the database, and
# the size of each growing table. docs/scale.md reads a run of it.
#
#   bench/scale_replicas.sh [--instances 100000] [--polls 2000]
#       [--agents 10000] [--interval 15] [--seconds 120] [--kill-at SECONDS/2]
#       [--creates 10] [--seed 1000] [--gpus 8] [--pg-port PORT] [--no-build]
#       [--keep]
#
# --no-build: use the release builds already in target/; --keep: leave the
# run's directory (servers' logs, load outputs) in /tmp.
#
# A quick run: bench/scale_replicas.sh --instances 10000 --polls 200
#   --agents 1000 --seconds 30
#
# How the instances get there: --seed of them are created through the API
# (sim, zero boot delay) and reach `active` through the reconciler; the
# replica is stopped and the rest are copies of those rows made in SQL
# with fresh ids: each instance row (its document's id replaced, its next
# active check spread over the check interval, as a settled fleet's are)
# together with its sim machine row, the capacity and budget counters then
# recounted by the next start (the capacity_recount marker). Creating
# 100,000 through the API would take 7 to 14 minutes here (120 to 250
# creates/s across three replicas, BENCHMARKS.md).
#
# Load: the `polls` and `report` modes of the agents_bench example, open
# loop (a slow answer does not slow the sending), latencies per request.
# PostgreSQL: a throwaway cluster from scripts/pg.sh with fsync and
# synchronous_commit on, in the run's temporary directory, removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

INSTANCES=100000
POLLS=2000
AGENTS=10000
INTERVAL=15
SECONDS_EACH=120
KILL_AT=
CREATES=10
SEED=1000
GPUS=8
PG_PORT=
BUILD=1
KEEP=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --instances) INSTANCES=$2; shift 2 ;;
    --polls) POLLS=$2; shift 2 ;;
    --agents) AGENTS=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --kill-at) KILL_AT=$2; shift 2 ;;
    --creates) CREATES=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --gpus) GPUS=$2; shift 2 ;;
    --pg-port) PG_PORT=$2; shift 2 ;;
    --no-build) BUILD=; shift ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument $1; see the comment at the top of $0" >&2; exit 2 ;;
  esac
done
KILL_AT=${KILL_AT:-$((SECONDS_EACH / 2))}
if ((SEED > INSTANCES)); then SEED=$INSTANCES; fi
if ((AGENTS > INSTANCES)); then AGENTS=$INSTANCES; fi
KEY=psl_bench_admin_key_0123456789abcdef
HZ=$(getconf CLK_TCK)

if [[ -n "$BUILD" ]]; then
  cargo build --release --locked -p parasol --bin parasol --example agents_bench >&2
fi
BIN=target/release/parasol
LOAD=target/release/examples/agents_bench

work=$(mktemp -d /tmp/scale-replicas.XXXXXX)
chmod 755 "$work"
declare -a PID BASE
loads=()
pgstarted=
cleanup() {
  local p
  for p in "${loads[@]}" "${PID[@]}"; do
    if [[ -n "$p" ]]; then kill "$p" 2>/dev/null || true; fi
  done
  for p in "${loads[@]}" "${PID[@]}"; do
    if [[ -n "$p" ]]; then wait "$p" 2>/dev/null || true; fi
  done
  if [[ -n "$pgstarted" ]]; then bash scripts/pg.sh stop "$work/pg" >/dev/null || true; fi
  if [[ -n "$KEEP" ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
# A signal ends the script through `exit`, so the cleanup runs then too.
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
# nap SECONDS: a sleep that a signal interrupts (bash runs a trap only once
# its foreground command ends; `wait` ends at once).
nap() { sleep "$1" & wait $!; }
now() { date +%s.%N; }
# calc EXPR: awk arithmetic, printed with three decimals (bc's ".5" is no
# JSON number).
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

ADMIN=$(PARASOL_PG_FSYNC=on bash scripts/pg.sh init "$work/pg" ${PG_PORT:+"$PG_PORT"})
pgstarted=1
psql -q "$ADMIN" -c "CREATE DATABASE scale" >/dev/null
URL="${ADMIN%/*}/scale"
sql() { psql -qtA -v ON_ERROR_STOP=1 "$URL" "$@"; }

# start I: starts replica I (0, 1, 2) on the database; sets PID[I], BASE[I].
start() {
  local i=$1 dir="$work/r$1"
  mkdir -p "$dir"
  : >"$dir/out"
  # Every client here comes from 127.0.0.1, past the per-address cap.
  # The sim's own simulated agents are off: the agents are the load's.
  PARASOL_API_KEY=$KEY PARASOL_KEY_RATE=0 PARASOL_ADDRESS_RATE=0 PARASOL_LOG=warn \
    "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir" --database-url "$URL" \
    --sim-boot-seconds 0 --sim-capacity 10000000 --no-agent \
    --max-connections-per-address 1000000 >>"$dir/out" 2>>"$dir/log" &
  PID[i]=$!
  local _
  for _ in $(seq 1 1200); do
    if grep -q "parasol listening on" "$dir/out"; then break; fi
    sleep 0.1
  done
  BASE[i]=$(sed -n 's/^parasol listening on //p' "$dir/out" | tail -1)
  if [[ -z "${BASE[i]}" ]]; then echo "replica $i did not start: $(tail -5 "$dir/log")" >&2; exit 1; fi
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' "${BASE[i]}/readyz")" == 200 ]]; do sleep 0.1; done
}

stop() {
  kill "${PID[$1]}"
  wait "${PID[$1]}" 2>/dev/null || true
  PID[$1]=
}

active() {
  curl -s "${BASE[$1]}/metrics" | sed -n 's/^parasol_instances{status="active"} //p'
}

echo "{\"machine\": \"$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB\", \"loadavg_at_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"postgres\": \"$(psql --version | awk '{print $3}')\", \"instances\": $INSTANCES, \"polls_per_s\": $POLLS, \"agents\": $AGENTS, \"interval_s\": $INTERVAL, \"creates_per_s\": $CREATES, \"seconds\": $SECONDS_EACH, \"kill_at_s\": $KILL_AT, \"seed\": $SEED}"

# The seed: real creates, through the reconciler to `active`.
start 0
BODY=$(curl -sf -H "x-api-key: $KEY" "${BASE[0]}/v1/instances/types?available=true" | jq -c --argjson g "$GPUS" '
  [.instance_types[] | select(.configuration.num_gpus == $g)
   | {cloud, region: ([.availability[] | select(.available) | .region][0]), shade_instance_type}
   | select(.region != null)][0]
  | if . == null then error("no available sim type has \($g) GPUs") else . end
  | . + {shade_cloud: true, name: "scale"}')
export PARASOL_BENCH_CREATE_BODY=$BODY
t0=$(now)
seq "$SEED" | xargs -P 16 -I{} curl -sf -o /dev/null -X POST -H "x-api-key: $KEY" \
  -H 'content-type: application/json' -d "$BODY" "${BASE[0]}/v1/instances/create"
until (($(active 0 || echo 0) >= SEED)); do sleep 0.5; done
log "seed: $SEED active $(jq -r .shade_instance_type <<<"$BODY") in $(calc "$(now) - $t0") s"
stop 0

# The copies (see the top of the file).
t0=$(now)
icols=$(sql -c "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) FROM information_schema.columns
                WHERE table_name = 'instances'
                AND column_name NOT IN ('id', 'doc', 'wake_at', 'lease_owner', 'lease_until')")
scols=$(sql -c "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) FROM information_schema.columns
                WHERE table_name = 'sim_machines' AND column_name <> 'instance_id'")
sql <<SQL
BEGIN;
CREATE TEMP TABLE copies AS
  SELECT s.id AS old_id, gen_random_uuid()::text AS new_id
  FROM (SELECT id FROM instances WHERE status = 'active') AS s
  CROSS JOIN generate_series(1, ($INSTANCES - $SEED) / $SEED + 1)
  LIMIT $INSTANCES - $SEED;
-- wake_at: each copy's next active check at a moment spread over the
-- interval its seed was scheduled for, so that checks come steadily; no
-- lease (the replica that stepped the seed is gone).
INSERT INTO instances (id, doc, wake_at, $icols)
  SELECT c.new_id, replace(i.doc, c.old_id, c.new_id),
         (extract(epoch FROM clock_timestamp()) * 1000)::bigint
           + (random() * GREATEST(i.wake_at - i.updated_at, 1000))::bigint,
         $icols
  FROM copies c JOIN instances i ON i.id = c.old_id;
INSERT INTO sim_machines (instance_id, $scols)
  SELECT c.new_id, $scols FROM copies c JOIN sim_machines m ON m.instance_id = c.old_id;
DELETE FROM settings WHERE name = 'capacity_recount';
COMMIT;
VACUUM ANALYZE instances;
VACUUM ANALYZE sim_machines;
SQL
log "filled to $(sql -c "SELECT COUNT(*) FROM instances WHERE status = 'active'") active in $(calc "$(now) - $t0") s"

for i in 0 1 2; do start "$i"; done
sql -c "SELECT id FROM instances WHERE status = 'active' ORDER BY random()" >"$work/ids"
head -n "$AGENTS" "$work/ids" >"$work/agent-ids"
for i in 0 1 2; do awk -v i="$i" 'NR % 3 == i' "$work/agent-ids" >"$work/agent-ids.$i"; done
PARASOL_AGENT_SECRET=$(sql -c "SELECT value FROM settings WHERE name = 'agent_secret'")
export PARASOL_AGENT_SECRET
log "3 replicas up: ${BASE[*]}; $(active 0) active"

ticks() { # ticks PID: user + system CPU ticks of a process (0 if gone)
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
pg_ticks() { # the postmaster, its children, and its children that ended
  local pm t p
  pm=$(head -1 "$work/pg/postmaster.pid")
  # A backend that exits (a killed replica's) moves its time into the
  # postmaster's cutime and cstime.
  t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat")
  for p in $(pgrep -P "$pm"); do t=$((t + $(ticks "$p"))); done
  echo "$t"
}
rss() { # rss PID: {"rss_mib", "rss_peak_mib"}
  awk '/^VmRSS/{r=$2} /^VmHWM/{h=$2} END{printf "{\"rss_mib\": %.1f, \"rss_peak_mib\": %.1f}", r/1024, h/1024}' "/proc/$1/status"
}

# phase LABEL KILL(0|1)
phase() {
  local label=$1 kill=$2 i t0 t1 pg0 pg1 killed_at='' dead_rss=''
  local -a c0 c1 cm mem
  # Every write of an instance row (the reconciler's active checks, the
  # creates' steps) raises its generation: their sum counts the writes.
  local gen0 gen1
  gen0=$(sql -c "SELECT COALESCE(SUM(generation), 0) FROM instances")
  t0=$(now)
  pg0=$(pg_ticks)
  for i in 0 1 2; do c0[i]=$(ticks "${PID[i]}"); done
  loads=()
  for i in 0 1 2; do
    if [[ -s "$work/agent-ids.$i" ]]; then
      PARASOL_BENCH_ACKED="$work/acked-reports.$label.$i" "$LOAD" report "${BASE[i]}" \
        "$work/agent-ids.$i" "$INTERVAL" "$SECONDS_EACH" "$GPUS" >"$work/report.$label.$i" &
      loads+=($!)
    else
      echo '{}' >"$work/report.$label.$i"
      : >"$work/acked-reports.$label.$i"
    fi
  done
  "$LOAD" polls "${BASE[0]},${BASE[1]},${BASE[2]}" "$work/ids" "$KEY" "$POLLS" "$SECONDS_EACH" \
    "$CREATES" "$work/created.$label" >"$work/polls.$label" &
  loads+=($!)
  # What the database's sessions are doing, once a second: which of them
  # wait for the writers' advisory lock, for a row lock, for the WAL's
  # flush, or for their own client's next statement.
  (
    end=$(calc "$t0 + $SECONDS_EACH")
    while awk "BEGIN { exit !($(now) < $end) }"; do
      sql -F ' ' -c "SELECT replace(state, ' ', '_') || '/' || COALESCE(wait_event_type || ':' || wait_event, 'running'), COUNT(*)
                     FROM pg_stat_activity WHERE datname = 'scale' AND state <> 'idle'
                       AND pid <> pg_backend_pid() GROUP BY 1" || true
      sleep 1
    done
  ) >"$work/activity.$label" 2>/dev/null &
  loads+=($!)
  if ((kill)); then
    nap "$KILL_AT"
    for i in 0 1 2; do cm[i]=$(ticks "${PID[i]}"); done
    c1[2]=${cm[2]}
    dead_rss=$(rss "${PID[2]}")
    killed_at=$(calc "$(now) - $t0")
    kill -9 "${PID[2]}"
    wait "${PID[2]}" 2>/dev/null || true
    PID[2]=
    log "$label: replica 2 SIGKILLed at ${killed_at} s"
  fi
  # The load generators end by themselves after SECONDS_EACH (and the
  # answers still in flight); CPU is read at that moment.
  local left
  left=$(calc "$t0 + $SECONDS_EACH - $(now)")
  if [[ "$left" != -* ]]; then nap "$left"; fi
  t1=$(now)
  for i in 0 1 2; do
    if [[ -n "${PID[i]}" ]]; then c1[i]=$(ticks "${PID[i]}"); mem[i]=$(rss "${PID[i]}"); else mem[i]=$dead_rss; fi
  done
  pg1=$(pg_ticks)
  gen1=$(sql -c "SELECT COALESCE(SUM(generation), 0) FROM instances")
  local p
  for p in "${loads[@]}"; do wait "$p"; done
  loads=()
  local wall
  wall=$(calc "$t1 - $t0")
  for i in 0 1 2; do
    local alive=true secs=$wall split=null
    if ((kill)) && ((i == 2)); then alive=false; secs=$killed_at; fi
    if ((kill)) && ((i < 2)); then
      split="{\"before_kill\": $(calc "(${cm[i]} - ${c0[i]}) / $HZ / $killed_at"), \"after_kill\": $(calc "(${c1[i]} - ${cm[i]}) / $HZ / ($wall - $killed_at)")}"
    fi
    jq -c -n --argjson split "$split" --arg phase "$label" --argjson i "$i" --arg base "${BASE[i]}" --argjson alive "$alive" \
      --argjson cores "$(calc "(${c1[i]} - ${c0[i]}) / $HZ / $secs")" \
      --argjson mem "${mem[i]}" --slurpfile polls "$work/polls.$label" \
      --slurpfile rep "$work/report.$label.$i" '
      def lat: {p50: .latency_ms.p50, p99: .latency_ms.p99, n, statuses, errors};
      ($polls[0].bases[$base]) as $b | $rep[0] as $r
      | {phase: $phase, replica: $i, alive: $alive, cpu_cores: $cores}
      + (if $split then {cpu_cores_split: $split} else {} end) + $mem + {
          routes: {
            "GET /v1/instances/{id}/info": ($b["GET /v1/instances/{id}/info"] | lat),
            "POST /v1/instances/create": ($b["POST /v1/instances/create"] // null | if . then lat else null end),
            "POST /v1/agent/report": {p50: $r.latency_ms.p50, p99: $r.latency_ms.p99, n: $r.sent,
                                      statuses: $r.statuses, errors: $r.errors}},
          windows_10s: {polls: [$b.windows[]? | {t, n, failed, p50, p99}],
                        reports: [$r.windows[]? | {t, n, failed, p50, p99}]}}'
  done
  local overdue
  overdue=$(sql -c "SELECT COUNT(*) FILTER (WHERE wake_at < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 30000)
                    FROM instances WHERE status = 'active'")
  jq -c -n --arg phase "$label" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --argjson pg "$(calc "($pg1 - $pg0) / $HZ / $wall")" --argjson wall "$wall" \
    --argjson overdue "$overdue" --argjson writes "$((gen1 - gen0))" \
    --argjson activity "$(awk '{n[$1] += $2; s++} END {printf "{"; for (k in n) printf "%s\"%s\": %d", (c++ ? ", " : ""), k, n[k]; printf "}"}' "$work/activity.$label")" \
    --arg killed "${killed_at}" --slurpfile polls "$work/polls.$label" '
    {phase: $phase, wall_s: $wall, loadavg: $load, postgres_cpu_cores: $pg,
     replica_2_killed_at_s: (if $killed == "" then null else ($killed | tonumber) end),
     polls_answered_per_s: ([$polls[0].bases[][] | objects | select(.n) | .n - .errors - .non2xx] | add / $wall),
     creates_acknowledged: $polls[0].created,
     instance_writes_per_s: ($writes / $wall),
     active_checks_overdue_30s: $overdue,
     postgres_busy_sessions_sampled_1s: $activity}'
}

log "phase all_up: ${SECONDS_EACH} s"
phase all_up 0
log "phase one_killed: ${SECONDS_EACH} s, replica 2 killed at ${KILL_AT} s"
phase one_killed 1

# Nothing acknowledged lost: every create answered 2xx is stored, and every
# instance's agent state holds at least the last seq it was answered 204 for.
cat "$work"/created.* >"$work/created"
cat "$work"/acked-reports.* >"$work/acked-reports"
sql <<SQL | jq -c -R 'split("|") | {check: "acknowledged_vs_stored", creates_acknowledged: (.[0] | tonumber), creates_missing: (.[1] | tonumber), reports_acknowledged: (.[2] | tonumber), instances_reported: (.[3] | tonumber), agent_state_behind: (.[4] | tonumber), sample_rows: (.[5] | tonumber)}'
CREATE TEMP TABLE acked_creates (id text);
\copy acked_creates FROM '$work/created'
DELETE FROM acked_creates WHERE id = '';
CREATE TEMP TABLE acked_reports (id text, seq bigint);
\copy acked_reports FROM '$work/acked-reports' WITH (DELIMITER ' ')
\pset fieldsep '|'
\pset format unaligned
SELECT (SELECT COUNT(*) FROM acked_creates),
       (SELECT COUNT(*) FROM acked_creates a LEFT JOIN instances i ON i.id = a.id WHERE i.id IS NULL),
       (SELECT COUNT(*) FROM acked_reports),
       (SELECT COUNT(DISTINCT id) FROM acked_reports),
       (SELECT COUNT(*) FROM (SELECT id, MAX(seq) AS seq FROM acked_reports GROUP BY id) a
          LEFT JOIN agent_state s ON s.instance_id = a.id
          WHERE s.last_seq IS NULL OR s.last_seq < a.seq),
       (SELECT COUNT(*) FROM agent_samples);
SQL

# What the run left in each table that grows (bytes with indexes, rows).
for t in instances sim_machines events audit_log agent_state agent_samples agent_history; do
  sql -F '|' -c "SELECT '$t', pg_total_relation_size('$t'), (SELECT COUNT(*) FROM $t)"
done | jq -c -R -s '[split("\n")[] | select(. != "") | split("|")
                     | {(.[0]): {bytes: (.[1] | tonumber), rows: (.[2] | tonumber)}}]
                    | add | {tables: .}'
