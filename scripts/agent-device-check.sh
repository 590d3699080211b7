#!/bin/sh
# Runs the Parasol agent once on a machine with real NVIDIA GPUs, against a
# local stand-in for Parasol that records the report, and compares the
# report with what nvidia-smi itself says (issue 26's device check).
#
#   sh scripts/agent-device-check.sh      # from the repository root
#
# Exit 0 when every GPU nvidia-smi lists is reported with its index and
# memory total, and with temperature, power and memory used close to
# nvidia-smi's own reading taken right after; prints both.
set -eu
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi here" >&2; exit 2; }
shell=$(command -v dash || command -v sh)
dir=$(mktemp -d)
trap 'kill "$recorder" 2>/dev/null || :; rm -rf "$dir"' EXIT

python3 - "$dir" <<'EOF' &
import http.server, sys
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        open(d + "/report.json", "wb").write(body)
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(d + "/port.tmp", "w").write(str(s.server_port))
__import__("os").rename(d + "/port.tmp", d + "/port")
s.serve_forever()
EOF
recorder=$!
i=0
while [ ! -s "$dir/port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done

PARASOL_URL="http://127.0.0.1:$(cat "$dir/port")" PARASOL_AGENT_TOKEN=pa_device \
    PARASOL_INSTANCE_ID=device-check PARASOL_AGENT_STATE="$dir/state" PARASOL_AGENT_ONCE=1 \
    "$shell" crates/parasol/src/agent/scripts/agent.sh
nvidia-smi --query-gpu=index,memory.total,memory.used,temperature.gpu,power.draw,utilization.gpu \
    --format=csv,noheader,nounits > "$dir/smi.csv"

python3 - "$dir" <<'EOF'
import json, sys
d = sys.argv[1]
report = json.load(open(d + "/report.json"))
smi = [[f.strip() for f in line.split(",")] for line in open(d + "/smi.csv") if line.strip()]
print("agent:     ", json.dumps(report["gpus"]))
print("nvidia-smi:", smi)
def num(v):
    try:
        return float(v)
    except ValueError:
        return None
bad = []
if len(report["gpus"]) != len(smi):
    bad.append(f"{len(report['gpus'])} GPUs reported, nvidia-smi lists {len(smi)}")
for g, s in zip(report["gpus"], smi):
    idx, total, used, temp, power, util = s
    if g["index"] != int(idx):
        bad.append(f"index {g['index']} != {idx}")
    if g["memory_total_mib"] != int(total):
        bad.append(f"GPU {idx}: memory total {g['memory_total_mib']} != {total}")
    if abs(g["memory_used_mib"] - int(used)) > 512:
        bad.append(f"GPU {idx}: memory used {g['memory_used_mib']} vs {used}")
    t = num(temp)
    if (g["temperature_c"] is None) != (t is None) or (t is not None and abs(g["temperature_c"] - t) > 5):
        bad.append(f"GPU {idx}: temperature {g['temperature_c']} vs {temp}")
    p = num(power)
    if (g["power_w"] is None) != (p is None) or (p is not None and abs(g["power_w"] - p) > max(30, p * 0.3)):
        bad.append(f"GPU {idx}: power {g['power_w']} vs {power}")
    if not 0 <= g["utilization_percent"] <= 100:
        bad.append(f"GPU {idx}: utilization {g['utilization_percent']}")
print("\n".join(bad) if bad else "agent and nvidia-smi agree")
sys.exit(1 if bad else 0)
EOF
