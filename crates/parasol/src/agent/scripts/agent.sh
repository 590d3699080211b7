#!/bin/sh
# The Parasol agent: every PARASOL_AGENT_INTERVAL seconds it reads the
# machine's GPUs, interactive SSH sessions and uptime, and posts them to
# Parasol's POST /v1/agent/report.
#
# POSIX sh on purpose: it runs unchanged on any image and architecture
# (x86_64, arm64 GH200), under dash, bash or busybox sh, and needs only curl
# and the GPU vendor's own tool (nvidia-smi, amd-smi or rocm-smi).
#
# Configuration (environment):
#   PARASOL_URL              Parasol's public base URL (no trailing slash)
#   PARASOL_AGENT_TOKEN      this instance's agent token
#   PARASOL_INSTANCE_ID      this instance's id
#   PARASOL_AGENT_INTERVAL   seconds between reports (default 15)
#   PARASOL_AGENT_STATE      directory for the seq and Xid bookmarks
#   PARASOL_AGENT_ONCE       when 1: one report, then exit (its status)
#
# It never stops on an error: a failed read reports what it could, and a
# refused or failed post is logged and retried at the next interval.

AGENT_VERSION=1

: "${PARASOL_AGENT_INTERVAL:=15}"
: "${PARASOL_AGENT_STATE:=${HOME:-/tmp}/.parasol/agent/state}"
case "$PARASOL_AGENT_INTERVAL" in '' | *[!0-9]*) PARASOL_AGENT_INTERVAL=15 ;; esac
[ "$PARASOL_AGENT_INTERVAL" -ge 2 ] || PARASOL_AGENT_INTERVAL=2

log() {
    printf '%s parasol-agent: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

for v in PARASOL_URL PARASOL_AGENT_TOKEN PARASOL_INSTANCE_ID; do
    eval "val=\${$v:-}"
    if [ -z "$val" ]; then
        log "$v is not set"
        exit 64
    fi
done

umask 077
# Started in the background of a shell that may go away (an SSH session,
# cloud-init): a hangup is no reason to stop.
trap '' HUP
mkdir -p "$PARASOL_AGENT_STATE" || exit 73
S=$PARASOL_AGENT_STATE
# The token goes to curl in a header file, never on a command line, where
# any local user could read it in the process list.
printf 'Authorization: Bearer %s\n' "$PARASOL_AGENT_TOKEN" > "$S/auth.hdr"

is_num() {
    case "$1" in '' | *[!0-9.]* | .* | *. | *.*.*) return 1 ;; *) return 0 ;; esac
}

# Prints one line per GPU: index bus util mem_used mem_total temp power ecc,
# tab-separated, "-" where the tool had no number (N/A, [Not Supported]).
gpus_nvidia() {
    nvidia-smi --query-gpu=index,pci.bus_id,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,ecc.errors.uncorrected.volatile.total \
        --format=csv,noheader,nounits 2>/dev/null |
        awk -F', *' 'function n(v) { gsub(/^ +| +$/, "", v); return (v ~ /^[0-9]+(\.[0-9]+)?$/) ? v : "-" }
            NF >= 8 && $1 ~ /^ *[0-9]+ *$/ {
                bus = $2; gsub(/ /, "", bus)
                printf "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", $1, tolower(bus), n($3), n($4), n($5), n($6), n($7), n($8)
            }'
}

# AMD: the CSV of rocm-smi (or amd-smi), read by column name, since the
# columns and their order differ between releases ("GPU use (%)", "VRAM
# Total Used Memory (B)", "Temperature (Sensor edge) (C)", "Average
# Graphics Package Power (W)" in rocm-smi's). Memory in a "(B)" column is
# bytes, otherwise MB; the edge temperature is preferred to the junction.
gpus_amd_csv() {
    awk -F, 'NR == 1 {
            for (i = 1; i <= NF; i++) {
                h = tolower($i)
                if (h ~ /^(device|gpu)$/) c_dev = i
                else if (h ~ /gpu use|gfx_activity|gfx_usage/) c_use = i
                else if (h ~ /vram total used|used_vram|vram_used/) c_used = i
                else if (h ~ /vram total memory|total_vram|vram_total/) c_total = i
                else if (h ~ /temperature.*edge|^edge/) c_temp = i
                else if (h ~ /temperature|hotspot/) { if (c_temp == "") c_temp = i }
                else if (h ~ /power/ && h !~ /max|cap|limit/) { if (c_pow == "") c_pow = i }
                else if (h ~ /uncorrectable|ecc_uncorrected/) c_ecc = i
                else if (h ~ /bdf|pci bus/) c_bus = i
                if (h ~ /\(b\)/) bytes[i] = 1
            }
            next
        }
        function n(v) { gsub(/^[ "]+|[ "]+$/, "", v); sub(/[^0-9.].*$/, "", v); return (v ~ /^[0-9]+(\.[0-9]+)?$/) ? v : "-" }
        function mib(i,   v) { v = n($i); if (v == "-") return v; return int(bytes[i] ? v / 1048576 : v) }
        {
            d = $c_dev; gsub(/[^0-9]/, "", d); if (d == "") d = NR - 2
            printf "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d, (c_bus ? tolower($c_bus) : "-"), (c_use ? n($c_use) : "-"),
                (c_used ? mib(c_used) : "-"), (c_total ? mib(c_total) : "-"), (c_temp ? n($c_temp) : "-"),
                (c_pow ? n($c_pow) : "-"), (c_ecc ? n($c_ecc) : "-")
        }'
}

gpus() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        gpus_nvidia
    elif command -v rocm-smi >/dev/null 2>&1; then
        rocm-smi --showuse --showmeminfo vram --showtemp --showpower --csv 2>/dev/null | grep -v '^ *$' | gpus_amd_csv
    elif command -v amd-smi >/dev/null 2>&1; then
        amd-smi metric --usage --mem-usage --temperature --power --ecc --csv 2>/dev/null | grep -v '^ *$' | gpus_amd_csv
    fi
}

# Kernel log lines. dmesg needs root where kernel.dmesg_restrict is 1
# (Ubuntu's default); journalctl -k needs root or the adm or
# systemd-journal group. A machine where neither answers reports no Xids,
# and says so once in the agent's log.
kernel_log() {
    if dmesg 2>/dev/null; then return 0; fi
    if command -v journalctl >/dev/null 2>&1 &&
        journalctl -k -b -o short-monotonic --no-pager -q 2>/dev/null; then
        return 0
    fi
    if [ ! -f "$S/nolog" ]; then
        log "cannot read the kernel log (dmesg or journalctl -k); Xid events are not reported"
        : > "$S/nolog"
    fi
    return 1
}

# Prints "bus code" for every NVRM Xid line after the last one reported
# (the bookmark holds that line, timestamp included), and moves the
# bookmark. When the bookmarked line is gone (the ring buffer wrapped, or
# the machine rebooted) and on a first run, every Xid in the log counts.
xids() {
    kernel_log | grep 'NVRM: Xid (' > "$S/xid.now" || :
    if [ -s "$S/xid.last" ]; then
        last=$(cat "$S/xid.last")
        awk -v last="$last" '$0 == last { n = 0; next } { l[++n] = $0 } END { for (i = 1; i <= n; i++) print l[i] }' "$S/xid.now" > "$S/xid.new"
    else
        cp "$S/xid.now" "$S/xid.new"
    fi
    if [ -s "$S/xid.now" ]; then tail -n 1 "$S/xid.now" > "$S/xid.last"; fi
    sed -n 's/.*NVRM: Xid (\([^)]*\)): *\([0-9][0-9]*\).*/\1 \2/p' "$S/xid.new" |
        awk '{ b = tolower($1); sub(/^pci:/, "", b); print b, $2 }'
    rm -f "$S/xid.now" "$S/xid.new"
}

# Interactive SSH sessions: sshd names each session process after its
# terminal ("sshd: alice@pts/0", "sshd-session: alice@pts/0" since
# OpenSSH 9.8). Sessions without a terminal (scp, Parasol's own commands)
# are not interactive and do not count. Without ps, utmp (who) counts.
ssh_sessions() {
    if out=$(ps -e -o args= 2>/dev/null) || out=$(ps -o args 2>/dev/null); then
        printf '%s\n' "$out" | grep -cE '^sshd(-session)?: [^ ]+@pts/' || :
    elif command -v who >/dev/null 2>&1; then
        who 2>/dev/null | grep -c 'pts/' || :
    else
        echo 0
    fi
}

uptime_s() {
    u=$(cut -d' ' -f1 /proc/uptime 2>/dev/null)
    u=${u%%.*}
    is_num "$u" && echo "$u" || echo 0
}

# The next seq: one more than the last, and never below the clock, so a
# lost state directory still yields a number greater than any sent before
# (the clock moves faster than one report per second).
next_seq() {
    now=$(date +%s)
    last=$(cat "$S/seq" 2>/dev/null)
    case "$last" in '' | *[!0-9]*) last=0 ;; esac
    n=$((last + 1))
    [ "$n" -gt "$now" ] || n=$now
    echo "$n" > "$S/seq.tmp" && mv "$S/seq.tmp" "$S/seq"
    echo "$n"
}

# The report as JSON, from the GPU lines and the Xid lines.
body() {
    gpus > "$S/gpus"
    xids > "$S/xids"
    seq=$(next_seq)
    awk -v id="$PARASOL_INSTANCE_ID" -v seq="$seq" -v ver="$AGENT_VERSION" \
        -v up="$(uptime_s)" -v ssh="$(ssh_sessions)" -v xfile="$S/xids" '
        function num(v, dflt) { return (v == "-" || v == "") ? dflt : v + 0 }
        # "0000:3b:00" and "00000000:3b:00.0" name the same device: compare
        # bus and device only.
        function key(b,   p, k) { sub(/\.[0-9a-f]+$/, "", b); p = split(b, parts, ":"); k = parts[p - 1] ":" parts[p]; return k }
        BEGIN {
            while ((getline line < xfile) > 0) { nx++; xb[nx] = line }
        }
        {
            ng++; idx[ng] = $1; bus[ng] = $2; u[ng] = $3; mu[ng] = $4; mt[ng] = $5; t[ng] = $6; p[ng] = $7; e[ng] = $8
        }
        END {
            # Each Xid goes to the GPU on its bus; one whose GPU is not
            # listed (fallen off the bus) goes to the first GPU, so it is
            # not lost.
            for (i = 1; i <= nx; i++) {
                split(xb[i], f, " "); g = 1
                for (j = 1; j <= ng; j++) if (bus[j] != "-" && key(bus[j]) == key(f[1])) g = j
                if (ng > 0 && !((g, f[2]) in seen)) { seen[g, f[2]] = 1; xl[g] = xl[g] (xl[g] == "" ? "" : ",") (f[2] + 0) }
            }
            printf "{\"instance_id\":\"%s\",\"seq\":%s,\"agent_version\":\"%s\",\"uptime_s\":%d,\"ssh_sessions\":%d,\"gpus\":[", id, seq, ver, up, ssh
            for (j = 1; j <= ng; j++) {
                printf "%s{\"index\":%d,\"utilization_percent\":%s,\"memory_used_mib\":%d,\"memory_total_mib\":%d,\"temperature_c\":%s,\"power_w\":%s,\"ecc_uncorrectable\":%d,\"xid\":[%s]}",
                    (j > 1 ? "," : ""), idx[j], num(u[j], 0), num(mu[j], 0), num(mt[j], 0),
                    (t[j] == "-" ? "null" : t[j] + 0), (p[j] == "-" ? "null" : p[j] + 0), num(e[j], 0), xl[j]
            }
            printf "]}\n"
        }' "$S/gpus"
}

report() {
    body > "$S/body.json" || return 1
    if ! command -v curl >/dev/null 2>&1; then
        log "curl is not installed; cannot report"
        return 1
    fi
    code=$(curl -sS -m 10 -o "$S/answer" -w '%{http_code}' -X POST \
        -H @"$S/auth.hdr" -H 'Content-Type: application/json' \
        --data-binary @"$S/body.json" "$PARASOL_URL/v1/agent/report" 2>"$S/curl.err")
    case "$code" in
    204 | 200) return 0 ;;
    000) log "cannot reach $PARASOL_URL: $(head -c 300 "$S/curl.err")" ;;
    *) log "report refused ($code): $(head -c 300 "$S/answer")" ;;
    esac
    return 1
}

if [ "${PARASOL_AGENT_ONCE:-}" = 1 ]; then
    report
    exit $?
fi
log "reporting to $PARASOL_URL every ${PARASOL_AGENT_INTERVAL}s"
while :; do
    report || :
    sleep "$PARASOL_AGENT_INTERVAL"
done
