#!/usr/bin/env bash
# The project's test command (see README.md): every unit and integration
# test of the workspace, against real processes over real HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --workspace --locked --no-fail-fast "$@"
