#!/usr/bin/env python3
"""Console benchmark (issue 14): the instances page with 10,000 instances
in the account must answer in under 100 ms of server time.

Starts a release `parasol serve` (SQLite, sim at zero boot delay, JSON
logs), creates 10,000 instances through the API (16 clients), signs in to
the console as a browser would, then requests the first page, a middle
page and the live-refresh fragment 50 times each. Server time is the
`latency_ms` of each request in the server's own request log (taken around
the handler); the client's wall time is printed beside it.

    cargo build --release -p parasol && python3 bench/console.py [--bin target/release/parasol] [--n 10000]

Benchmarks are not tests: nothing here is timed in CI.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import time
import urllib.request

import bench  # the issue-9 harness beside this file: Server, http, KEY


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/parasol")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=50)
    a = ap.parse_args()

    s = bench.fresh(a.bin, extra=["--log-format", "json"])
    s.start()
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: bench.http("POST", s.base + "/v1/instances/create",
                                                   bench.CREATE_BODY)[0], range(a.n)))
    assert all(c == 200 for c in codes), {c: codes.count(c) for c in set(codes)}
    bench.log(f"{a.n} creates in {time.perf_counter() - t0:.1f} s")

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(s.base + "/login", data=f"api_key={bench.KEY}".encode(), method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        opener.open(req)
        raise SystemExit("sign-in did not redirect")
    except urllib.error.HTTPError as e:
        cookie = e.headers["Set-Cookie"].split(";")[0]

    pages = (a.n + 49) // 50
    paths = {"first page": "/instances", "middle page": f"/instances?page={pages // 2}",
             "live fragment": "/instances/rows"}
    client = {}
    for name, path in paths.items():
        client[name] = []
        for _ in range(a.runs + 3):
            r = urllib.request.Request(s.base + path, headers={"Cookie": cookie})
            t = time.perf_counter()
            with urllib.request.urlopen(r) as res:
                body = res.read()
                assert res.status == 200 and body.count(b"<tr data-id=") == 50, res.status
            client[name].append((time.perf_counter() - t) * 1000)
        client[name] = client[name][3:]  # warm-up
    s.stop()

    server = {name: [] for name in paths}
    with open(os.path.join(s.data_dir, "server.log")) as f:
        lines = [json.loads(l) for l in f if l.startswith("{")]
    by_path = {"/instances": [], "/instances/rows": []}
    for l in lines:
        fields = l.get("fields", l)
        if fields.get("message") == "request" and fields.get("path") in by_path:
            by_path[fields["path"]].append(float(fields["latency_ms"]))
    # The first page and the middle page share a path: in request order,
    # the first runs+3 are the first page, the next runs+3 the middle one.
    lst = by_path["/instances"]
    server["first page"] = lst[3:a.runs + 3]
    server["middle page"] = lst[a.runs + 6:2 * a.runs + 6]
    server["live fragment"] = by_path["/instances/rows"][3:]
    shutil.rmtree(s.data_dir, ignore_errors=True)
    for name in paths:
        bench.record("console_instances_page", page=name, instances=a.n,
                     server_p50_ms=round(statistics.median(server[name]), 2),
                     server_p99_ms=round(percentile(server[name], 99), 2),
                     server_max_ms=round(max(server[name]), 2),
                     client_p50_ms=round(statistics.median(client[name]), 2))


if __name__ == "__main__":
    main()
