#!/bin/sh
# Installs (or, with the argument "uninstall", removes) the Parasol agent.
#
#   curl -fsS "$PARASOL_URL/agent/install.sh" | PARASOL_URL=... \
#     PARASOL_AGENT_TOKEN=... PARASOL_INSTANCE_ID=... PARASOL_AGENT_INTERVAL=15 sh
#
# As root on a machine run by systemd it installs the service
# parasol-agent (restarted on failure and at boot); otherwise it starts the
# agent as a background loop of the current user, with a `start`
# script beside it that starts it again after a reboot. Running it again
# replaces the agent and its settings and restarts it, so it is safe to
# repeat. PARASOL_AGENT_DIR overrides where it lives; PARASOL_AGENT_SYSTEMD=no
# keeps it out of systemd (the hosts provider, which stops it itself).
set -u
umask 077

if [ "$(id -u)" = 0 ]; then
    : "${PARASOL_AGENT_DIR:=/var/lib/parasol-agent}"
else
    : "${PARASOL_AGENT_DIR:=${HOME:-/tmp}/.parasol/agent}"
fi
D=$PARASOL_AGENT_DIR
UNIT=/etc/systemd/system/parasol-agent.service

systemd_ok() {
    [ "${PARASOL_AGENT_SYSTEMD:-yes}" != no ] && [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# Stops a background loop an earlier install started.
stop_loop() {
    if [ -f "$D/stop" ]; then sh "$D/stop"; fi
}

if [ "${1:-install}" = uninstall ]; then
    if systemd_ok && [ -f "$UNIT" ]; then
        systemctl disable --now parasol-agent >/dev/null 2>&1 || :
        rm -f "$UNIT"
        systemctl daemon-reload >/dev/null 2>&1 || :
    fi
    stop_loop
    rm -rf "$D"
    exit 0
fi

for v in PARASOL_URL PARASOL_AGENT_TOKEN PARASOL_INSTANCE_ID; do
    eval "val=\${$v:-}"
    if [ -z "$val" ]; then
        echo "parasol agent installer: $v is not set" >&2
        exit 64
    fi
done
case "${PARASOL_AGENT_INTERVAL:-15}" in '' | *[!0-9]*)
    echo "parasol agent installer: PARASOL_AGENT_INTERVAL must be a number of seconds" >&2
    exit 64 ;;
esac
command -v curl >/dev/null 2>&1 || echo "parasol agent installer: curl is not installed; the agent cannot report until it is" >&2

mkdir -p "$D/state" || exit 73
cat > "$D/agent.sh.tmp" <<'PARASOL_AGENT_SH_EOF'
@@PARASOL_AGENT_SH@@
PARASOL_AGENT_SH_EOF
mv "$D/agent.sh.tmp" "$D/parasol-agent.sh"

# Values are written single-quoted, so none is interpreted when read back.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
    echo "PARASOL_URL=$(q "$PARASOL_URL")"
    echo "PARASOL_AGENT_TOKEN=$(q "$PARASOL_AGENT_TOKEN")"
    echo "PARASOL_INSTANCE_ID=$(q "$PARASOL_INSTANCE_ID")"
    echo "PARASOL_AGENT_INTERVAL=$(q "${PARASOL_AGENT_INTERVAL:-15}")"
    echo "PARASOL_AGENT_STATE=$(q "$D/state")"
} > "$D/env.tmp"
mv "$D/env.tmp" "$D/env"

# Starts the loop unless it already runs; the installer, the host's start
# after a reboot, and a user may all call it.
cat > "$D/start" <<'PARASOL_START_EOF'
#!/bin/sh
D=$(cd "$(dirname "$0")" && pwd)
if [ -f "$D/pid" ] && grep -q parasol-agent "/proc/$(cat "$D/pid")/cmdline" 2>/dev/null; then exit 0; fi
set -a
. "$D/env"
set +a
cd /
# A session of its own (no terminal, so no hangup when the installing
# shell goes); the agent ignores SIGHUP besides, where setsid is missing.
if command -v setsid >/dev/null 2>&1; then
    setsid sh "$D/parasol-agent.sh" < /dev/null >> "$D/log" 2>&1 &
else
    sh "$D/parasol-agent.sh" < /dev/null >> "$D/log" 2>&1 &
fi
echo $! > "$D/pid"
PARASOL_START_EOF
# Stops the loop (the hosts provider runs it when the instance goes).
cat > "$D/stop" <<'PARASOL_STOP_EOF'
#!/bin/sh
D=$(cd "$(dirname "$0")" && pwd)
[ -f "$D/pid" ] || exit 0
pid=$(cat "$D/pid")
case "$pid" in '' | *[!0-9]*) rm -f "$D/pid"; exit 0 ;; esac
if grep -q parasol-agent "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || :
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || :
fi
rm -f "$D/pid"
PARASOL_STOP_EOF
chmod 700 "$D/start" "$D/stop" "$D/parasol-agent.sh"

if systemd_ok; then
    stop_loop
    cat > "$UNIT" <<PARASOL_UNIT_EOF
[Unit]
Description=Parasol agent (GPU telemetry for Parasol)
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=$D/env
ExecStart=/bin/sh $D/parasol-agent.sh
Restart=always
RestartSec=5
Nice=10

[Install]
WantedBy=multi-user.target
PARASOL_UNIT_EOF
    # The values are quoted for sh; systemd reads the same quotes.
    # --no-block: a first-boot script runs inside a unit of its own
    # (cloud-final, google-startup-scripts), and must never wait on
    # systemd's queue for the agent.
    systemctl daemon-reload
    systemctl enable parasol-agent >/dev/null 2>&1
    systemctl restart --no-block parasol-agent
    echo "parasol agent: installed as the systemd service parasol-agent"
else
    stop_loop
    sh "$D/start"
    echo "parasol agent: running in the background (pid $(cat "$D/pid")), log in $D/log"
fi
