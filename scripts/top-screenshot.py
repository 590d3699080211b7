#!/usr/bin/env python3
"""Makes docs/cli/top.svg from a real run of `parasol instances top`.

Starts the built target/debug/parasol on a fresh data directory with the
simulated clouds and the test clock, rents a few machines, steers their
simulated agents (one left idle, one with a fatal Xid, one with ECC
errors, the others left to the simulation's own load), moves the clock ten
minutes on, report by report, then runs `parasol instances top --once`
under a pseudo-terminal (`script`), so it writes exactly what a terminal
gets, colours included, and draws that text with scripts/term-svg.py.

    cargo build -p parasol && scripts/top-screenshot.py
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
BINARY = ROOT / "target" / "debug" / "parasol"
OUT = ROOT / "docs" / "cli" / "top.svg"


def main():
    data = tempfile.TemporaryDirectory()
    env = dict(os.environ, PARASOL_LOG="warn")
    for k in ("PARASOL_API_KEY", "PARASOL_CONFIG", "PARASOL_DATABASE_URL", "PARASOL_URL"):
        env.pop(k, None)
    proc = subprocess.Popen(
        [str(BINARY), "serve", "--listen", "127.0.0.1:0", "--data-dir", data.name,
         "--sim-boot-seconds", "1", "--reconcile-period-ms", "100", "--test-clock"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True, env=env)
    try:
        lines, url = [], None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("parasol listening on "):
                url = line.split(" on ", 1)[1].strip()
                break
        created = [i for i, l in enumerate(lines) if l.startswith("Created the admin account")]
        key = lines[created[0] + 1].strip()
        run(url, key, env, data.name)
    finally:
        proc.terminate()
        proc.wait(10)


def run(url, key, env, home):
    def api(method, path, body=None):
        req = urllib.request.Request(
            url + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"X-API-KEY": key, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.loads(res.read() or b"null")

    def rent(name, gpu, n):
        types = api("GET", f"/v1/instances/types?gpu_type={gpu}&num_gpus={n}&available=true")
        t = types["instance_types"][0]
        region = next(a["region"] for a in t["availability"] if a["available"])
        return api("POST", "/v1/instances/create", {
            "cloud": t["cloud"], "region": region, "shade_instance_type": t["shade_instance_type"],
            "shade_cloud": True, "name": name})["id"]

    machines = {
        "train-llama-8x": (rent("train-llama-8x", "H100", 8), None),
        "finetune-4x": (rent("finetune-4x", "A100", 4), None),
        "notebook": (rent("notebook", "A6000", 1), {"gpu_utilization_percent": 0}),
        "eval-2x": (rent("eval-2x", "L40S", 2), {"ecc_uncorrectable": 2}),
        "batch-7": (rent("batch-7", "H100", 1), None),
    }
    for i, _ in machines.values():
        deadline = time.monotonic() + 30
        while api("GET", f"/v1/instances/{i}/info")["status"] != "active":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    for i, steer in machines.values():
        if steer:
            api("POST", "/admin/sim/agent", dict(steer, instance_id=i, reporting=True))
    last = machines["batch-7"][0]
    for step in range(40):
        if step == 39:
            api("POST", "/admin/sim/agent", {"instance_id": last, "xid": 79, "reporting": True})
        n = len(api("GET", f"/v1/instances/{last}/metrics")["samples"])
        api("POST", "/admin/clock/advance", {"seconds": 15})
        deadline = time.monotonic() + 20
        while len(api("GET", f"/v1/instances/{last}/metrics")["samples"]) <= n:
            assert time.monotonic() < deadline, "the simulated agents stopped reporting"
            time.sleep(0.05)
    time.sleep(0.5)
    cmd = "parasol instances top --once"
    shell = f"{BINARY} instances top --once"
    env = dict(env, PARASOL_URL=url, PARASOL_API_KEY=key, HOME=home, TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    out = subprocess.run(["script", "-qec", shell, "/dev/null"], env=env, check=True,
                         capture_output=True, text=True).stdout
    sys.stdout.write(out)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    svg = subprocess.run([sys.executable, str(ROOT / "scripts" / "term-svg.py"), "$ " + cmd],
                         input=out, capture_output=True, text=True, check=True).stdout
    OUT.write_text(svg)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
