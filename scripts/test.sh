#!/usr/bin/env bash
# The project's test command (see README.md): every unit and integration
# test of the workspace, against real processes over real HTTP, on both
# database backends: the whole suite on SQLite, then the integration suite
# again on PostgreSQL (each test on a fresh database). The scale-out tests
# (replicas, database outage; keys::replicas_*) need PostgreSQL and run in
# the second pass.
#
# Set-up: scripts/setup.sh first installs whatever is missing (PostgreSQL,
# OpenSSH, cargo-nextest, the Python tools in target/test-venv), so this is
# the whole command on a fresh Debian machine.
#
# PostgreSQL: PARASOL_TEST_PG_URL names an admin URL of a cluster the tests
# may create databases in; when unset, a throwaway cluster is started here
# (scripts/pg.sh).
#
# Last, the web console's browser tests (crates/parasol/tests/browser):
# pytest + Playwright from the venv drive Debian's chromium against the
# debug binary.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
PARASOL_TEST_VENV=$(realpath -m "${PARASOL_TEST_VENV:-target/test-venv}")
export PARASOL_TEST_VENV

if [[ -z "${PARASOL_TEST_PG_URL:-}" ]]; then
  pgdir=$(mktemp -d)
  chmod 755 "$pgdir"
  PARASOL_TEST_PG_URL=$(bash scripts/pg.sh init "$pgdir/data")
  export PARASOL_TEST_PG_URL
  trap 'bash scripts/pg.sh stop "$pgdir/data" || true; rm -rf "$pgdir"' EXIT
fi

status=0
echo "== tests on SQLite"
PARASOL_TEST_BACKEND=sqlite cargo nextest run --workspace --locked --no-fail-fast \
  -E 'not test(/^scaleout::/) and not test(/^keys::replicas_/)' "$@" || status=1
echo "== integration tests on PostgreSQL"
PARASOL_TEST_BACKEND=postgres cargo nextest run -p parasol --test it --locked --no-fail-fast \
  "$@" || status=1
echo "== console browser tests (Playwright, Debian's chromium)"
# nextest built target/debug/parasol for the integration tests just now; a
# separate `cargo build` would rebuild it with other features for nothing.
[[ -x target/debug/parasol ]] || cargo build -p parasol --locked
"$PARASOL_TEST_VENV/bin/pytest" -q crates/parasol/tests/browser || status=1
exit $status
