#!/usr/bin/env bash
# Installs what the test suites need, when it is missing, on a Debian
# machine (as root, or with sudo): called by scripts/test.sh, so the README's
# test command sets itself up on a fresh machine. Safe to run again: every
# step checks first and does nothing when its tool is already there.
#
#   Debian packages   PostgreSQL (second backend, scale-out tests), OpenSSH
#                     (hosts provider), python3-venv, and whatever the
#                     suites list in DEB_PACKAGES below
#   cargo-nextest     the test runner
#   Python tools      one virtual environment, target/test-venv, from
#                     scripts/requirements-test.txt (reinstalled when that
#                     file changes); its path is exported to the tests as
#                     PARASOL_TEST_VENV by scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# "package:probe" pairs: the package is installed when the probe (a path,
# or a command name) is missing.
DEB_PACKAGES=(
  "postgresql:/usr/lib/postgresql/*/bin/initdb"
  "openssh-server:/usr/sbin/sshd"
  "openssh-client:ssh"
  "python3-venv:/usr/lib/python3*/venv/__init__.py"
  "openssl:openssl"
  # The console's browser tests drive Debian's Chromium through Playwright
  # (never a downloaded browser).
  "chromium:/usr/bin/chromium"
)

sudo_() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

present() {
  local probe=$1
  if [[ $probe == /* ]]; then
    # shellcheck disable=SC2086 # the probe may be a glob
    compgen -G "$probe" >/dev/null
  else
    command -v "$probe" >/dev/null 2>&1
  fi
}

missing=()
for pair in "${DEB_PACKAGES[@]}"; do
  present "${pair#*:}" || missing+=("${pair%%:*}")
done
# The machine's own CPython may already have venv (pyenv builds do).
if [[ " ${missing[*]} " == *" python3-venv "* ]] && python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  missing=("${missing[@]/python3-venv/}")
fi
read -r -a missing <<<"${missing[*]}"
if ((${#missing[@]})); then
  echo "== setup: installing ${missing[*]}"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "== setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

VENV=$(realpath -m "${PARASOL_TEST_VENV:-target/test-venv}")
REQS=scripts/requirements-test.txt
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "== setup: Python tools into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  echo "$want" >"$stamp"
fi
