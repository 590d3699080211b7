#!/usr/bin/env bash
# Schemathesis (from PyPI) against Parasol's own OpenAPI document
# (/v1/openapi.json), authenticated with the admin key, over every
# operation it lists: examples, coverage, fuzzing and stateful phases
# (stateful runs where the document links operations), with three checks
# on every answer:
#   not_a_server_error           no 5xx, whatever the input
#   response_schema_conformance  the body matches the documented schema,
#                                errors included ({"error":{code,message,field}})
#   content_type_conformance     the documented content type (JSON)
# The example budget (-n) and --max-time (200 s, then 40 s for the API-key
# operations) keep the run under five minutes on the 2-core CI machine. Called by .ci/run after the test command.
#
#   scripts/schemathesis.sh              # debug build, builds it if needed
#   PARASOL_BIN=target/release/parasol scripts/schemathesis.sh
#   SCHEMATHESIS_MAX_EXAMPLES=200 scripts/schemathesis.sh   # a longer run
#
# Any extra arguments go to `schemathesis run` (for example --seed N to
# replay a failing run; the seed is printed at the start of every run).
set -euo pipefail
cd "$(dirname "$0")/.."

KEY=psl_schemathesis_admin_key_0123456789abcdef
VENV=$(realpath -m "${PARASOL_TEST_VENV:-target/test-venv}")
BIN=${PARASOL_BIN:-target/debug/parasol}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-25}
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-200}
KEYS_MAX_TIME=${SCHEMATHESIS_KEYS_MAX_TIME:-40}

# The tool comes from scripts/requirements-test.txt (scripts/setup.sh).
PARASOL_TEST_VENV=$VENV bash scripts/setup.sh
if [[ -z "${PARASOL_BIN:-}" ]]; then
  cargo build --locked -p parasol --bin parasol
fi

work=$(mktemp -d)
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Rate limits off: a fuzzer is a load generator, and 429s would only cut
# its coverage (tests/it/rate_limits.rs checks the limits).
PARASOL_API_KEY=$KEY PARASOL_LOG=warn "$BIN" serve \
  --listen 127.0.0.1:0 --data-dir "$work" \
  --sim-boot-seconds 0 --sim-capacity 100000 \
  --key-rate 0 --address-rate 0 --failed-auth-rate 0 \
  >"$work/stdout" 2>"$work/server.log" &
server=$!
base=""
for _ in $(seq 1 300); do
  base=$(sed -n 's/^parasol listening on //p' "$work/stdout" | head -n1)
  [[ -n "$base" ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$base" ]] || { echo "parasol did not start" >&2; cat "$work/server.log" >&2; exit 1; }

# Some generated bodies are valid: an SSH key the stateful phase adds is
# then used by creates, and so on. A fresh data dir per run keeps it
# reproducible.
status=0
# The document's paths are relative to its server, /v1. Run from the temp
# dir: schemathesis keeps a .schemathesis/ cache in its working directory.
fuzz() {
  local seconds=$1
  shift
  (cd "$work" && "$VENV/bin/schemathesis" run "$base/v1/openapi.json" \
    --url "$base/v1" \
    --header "X-API-KEY: $KEY" \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$seconds" \
    --workers 2 \
    --request-timeout 20 \
    --generation-database none \
    --no-color \
    --report junit --report-dir "$work/report" \
    "$@")
}
# Every operation but key revocation: the stateful phase links the ids of
# GET /account/keys to revoke, and revoking the key it runs with would
# leave every later request a 401. Then the key operations alone, last, on
# their own short budget, where a revoked admin key costs nothing more.
# The event stream is left out too: a valid request opens a stream that
# lasts until the client leaves, and schemathesis reads whole bodies
# (tests/it/events_stream.rs covers it, its refusals included).
fuzz "$MAX_TIME" --exclude-operation-id AccountKeysRevoke --exclude-operation-id EventsStream "$@" || status=$?
if [[ $status -eq 0 ]]; then
  fuzz "$KEYS_MAX_TIME" --include-path-regex '^/account/keys' "$@" || status=$?
fi

if [[ $status -ne 0 ]]; then
  echo "== schemathesis failed; server log (warnings and errors):" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit $status
