#!/usr/bin/env python3
"""Issue-9 benchmarks: drives release builds of `parasol serve` (SQLite, sim
with zero boot delay) and the reference server with Debian's `wrk`, and
prints every figure as JSON lines plus a Markdown table for BENCHMARKS.md.

Run through bench/run.sh, which builds and checks the tools first:

    bench/run.sh [--only NAME[,NAME...]] [--memory-instances N]

Names: ready, types, create, create_pg, account and create_pg_replicas
(these three need --pg-url), reconciler (also measures the list with 10,000
instances), list_activation (that list while another account's 10,000 are
created and activated), clusters, memory, million (a store of 1,000,000), webhooks (fan-out
to 10 endpoints), sse (1,000 idle streams), agents and agents_pg (10,000
machines' agents reporting every 15 s, on SQLite and on PostgreSQL; the
latter needs --pg-url).
Benchmarks are not tests: nothing here is timed in CI.
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

KEY = "psl_bench_admin_key_0123456789abcdef"
HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "wrk.lua")
CREATE_BODY = json.dumps(
    {
        "cloud": "massedcompute",
        "region": "us-central-1",
        "shade_instance_type": "A6000",
        "shade_cloud": True,
        "name": "bench",
    }
)
# A filter a dashboard would send: one GPU model, available regions only.
TYPES_FILTER = "?gpu_type=H100&available=true"

results = []
# --sqlite-synchronous of every server started (set from the arguments).
SQLITE_SYNCHRONOUS = ["full"]


def record(name, **fields):
    row = {"bench": name, **fields}
    results.append(row)
    print(json.dumps(row), flush=True)


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def http(method, url, body=None, key=KEY, timeout=60):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("X-API-KEY", key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """A `parasol serve` process on its own data dir (SQLite)."""

    def __init__(self, binary, data_dir, extra=()):
        self.binary, self.data_dir, self.extra = binary, data_dir, list(extra)
        self.proc = None
        self.base = None

    def start(self):
        # Benchmarks measure throughput: rate limits off.
        # The sync level as an environment variable, so that a binary from
        # before the setting existed (an A/B run) still starts.
        env = dict(os.environ, PARASOL_API_KEY=KEY, PARASOL_KEY_RATE="0",
                   PARASOL_ADDRESS_RATE="0", PARASOL_SQLITE_SYNCHRONOUS=SQLITE_SYNCHRONOUS[0])
        env.pop("PARASOL_CONFIG", None)
        env.pop("PARASOL_DATABASE_URL", None)
        self.log = open(os.path.join(self.data_dir, "server.log"), "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                self.binary, "serve", "--listen", "127.0.0.1:0",
                "--data-dir", self.data_dir,
                "--sim-boot-seconds", "0",
                "--sim-capacity", "10000000",
                *self.extra,
            ],
            stdout=subprocess.PIPE, stderr=self.log, env=env,
        )
        for line in self.proc.stdout:
            line = line.decode().strip()
            if line.startswith("parasol listening on "):
                self.base = line.split()[-1]
                break
        else:
            raise RuntimeError(f"server exited: see {self.data_dir}/server.log")
        while True:
            try:
                if http("GET", self.base + "/readyz", key=None, timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.002)
        return time.perf_counter() - t0

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            s = f.read()
        kb = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", s, re.M).group(1))
        return kb("VmRSS") / 1024, kb("VmHWM") / 1024

    def counts(self, family="parasol_instances"):
        status, body = http("GET", self.base + "/metrics", key=None)
        assert status == 200, body
        out = {}
        for m in re.finditer(rf'^{family}{{status="(\w+)"}} (\d+)$', body.decode(), re.M):
            out[m.group(1)] = int(m.group(2))
        return out


def wrk(url, conns=64, seconds=10, threads=2, env=None, timeout="10s"):
    e = dict(os.environ, **(env or {}))
    e.setdefault("BENCH_KEY", KEY)
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", f"--timeout={timeout}",
           "-s", LUA, url]
    out = subprocess.run(cmd, env=e, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    r = {}
    for kv in line.split()[1:]:
        k, v = kv.split("=")
        r[k] = float(v) if "." in v else int(v)
    return r


def create_n(server, n, conns=32, body=CREATE_BODY, path="/v1/instances/create",
             family="parasol_instances"):
    """At least `n` creates through wrk: each wrk thread stops sending at
    its share, and wrk itself (which otherwise runs for its whole -d) is
    interrupted once the store holds `n` more objects; SIGINT makes it
    print its summary."""
    before = sum(server.counts(family).values())
    e = dict(os.environ, BENCH_KEY=KEY, BENCH_METHOD="POST", BENCH_BODY=body,
             BENCH_LIMIT=str(math.ceil(n / 2)))
    p = subprocess.Popen(["wrk", "-t2", f"-c{conns}", "-d3600s", "--timeout=10s", "-s", LUA,
                          server.base + path], env=e, stdout=subprocess.PIPE, text=True)
    while sum(server.counts(family).values()) - before < n:
        time.sleep(0.2)
    p.send_signal(2)
    out = p.communicate()[0]
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    r = {}
    for kv in line.split()[1:]:
        k, v = kv.split("=")
        r[k] = float(v) if "." in v else int(v)
    return r


def wait_for(pred, timeout, every=0.25):
    t0 = time.perf_counter()
    while True:
        v = pred()
        if v:
            return time.perf_counter() - t0, v
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"gave up after {timeout}s")
        time.sleep(every)


DIRS = []


def fresh(binary, extra=()):
    d = tempfile.mkdtemp(prefix="parasol-bench-")
    DIRS.append(d)
    return Server(binary, d, extra)


def bench_ready(a):
    times = []
    for _ in range(5):
        s = fresh(a.bin)
        times.append(s.start())
        s.stop()
        shutil.rmtree(s.data_dir, ignore_errors=True)
    record("start_to_ready", runs_s=[round(t, 3) for t in times],
           median_s=round(statistics.median(times), 3), target_s=1.0)


def bench_types(a):
    s = fresh(a.bin)
    s.start()
    tmp = tempfile.mkdtemp(prefix="parasol-ref-")
    specs = []
    for label, q in [("unfiltered", ""), ("filtered", TYPES_FILTER)]:
        status, body = http("GET", s.base + "/v1/instances/types" + q)
        assert status == 200, body
        n = len(json.loads(body)["instance_types"])
        assert n > 0, f"the {label} query matches nothing"
        f = os.path.join(tmp, label + ".json")
        open(f, "wb").write(body)
        specs.append((label, q, f, len(body), n))
    ref = subprocess.Popen(
        [a.reference, "127.0.0.1:0", *[f"/v1/instances/types{q}={f}" for _, q, f, _, _ in specs]],
        stdout=subprocess.PIPE)
    ref_base = ref.stdout.readline().decode().split()[-1]
    try:
        for label, q, _, size, n in specs:
            path = "/v1/instances/types" + q
            wrk(s.base + path, seconds=2)  # warm up both
            wrk(ref_base + path, seconds=2)
            p = wrk(s.base + path, conns=64, seconds=a.seconds)
            r = wrk(ref_base + path, conns=64, seconds=a.seconds)
            assert p["non2xx"] == 0 and r["non2xx"] == 0, (p, r)
            record(f"types_{label}", query=q or "(none)", types=n, body_bytes=size,
                   parasol=p, reference=r, ratio=round(p["rps"] / r["rps"], 3), target_ratio=0.5)
    finally:
        ref.kill()
        s.stop()


def create_load(a, s, label, **extra):
    """64 connections of creates for --create-seconds on a started server,
    then SIGKILL and a restart to count what survived."""
    wrk(s.base + "/v1/instances/create", seconds=2, env={
        "BENCH_METHOD": "POST", "BENCH_BODY": CREATE_BODY})
    before = sum(s.counts().values())
    # The server's CPU per create: on a shared machine, less disturbed by
    # the neighbours' load than the throughput is.
    cpu0 = cpu_s(s.proc.pid)
    r = wrk(s.base + "/v1/instances/create", conns=64, seconds=a.create_seconds, env={
        "BENCH_METHOD": "POST", "BENCH_BODY": CREATE_BODY})
    cpu = cpu_s(s.proc.pid) - cpu0
    acked = r["requests"] - r["non2xx"]
    # Durability: SIGKILL right after the load, then count what survived.
    s.kill()
    s.start()
    stored = sum(s.counts().values()) - before
    s.stop()
    record(label, **r, acknowledged=acked, stored_after_sigkill=stored,
           lost=max(0, acked - stored), sqlite_synchronous=a.sqlite_synchronous,
           server_cpu_us_per_create=round(cpu * 1e6 / max(acked, 1), 1),
           load_average=os.getloadavg()[0],
           target_rps=2500, target_p99_ms=50, **extra)


def bench_create(a):
    """Creates on an empty store, then on stores pre-filled (by SQL copy,
    fill_store) with each of --create-prefill instances."""
    s = fresh(a.bin)
    s.start()
    create_load(a, s, "create")
    for n in [int(x) for x in a.create_prefill.split(",") if x]:
        s = fresh(a.bin)
        s.start()
        assert http("POST", s.base + "/v1/instances/create", CREATE_BODY)[0] == 200
        s.stop()
        t0 = time.perf_counter()
        stored = fill_store(s.data_dir, n)
        log(f"filled {stored} instances in {time.perf_counter() - t0:.0f} s")
        s.start()
        create_load(a, s, f"create_prefilled_{n}", prefilled=stored)
        shutil.rmtree(s.data_dir, ignore_errors=True)


def bench_create_pg(a):
    """Creates against PostgreSQL (one replica): --pg-url names an admin
    URL (scripts/pg.sh init prints one); a fresh database is made in it."""
    if not a.pg_url:
        raise SystemExit("create_pg needs --pg-url (e.g. $(bash scripts/pg.sh init DIR))")
    name = f"bench_{os.getpid()}_{int(time.time())}"
    subprocess.run(["psql", "-q", a.pg_url, "-c", f"CREATE DATABASE {name}"], check=True)
    url = a.pg_url.rsplit("/", 1)[0] + "/" + name
    s = fresh(a.bin, ["--database-url", url])
    s.start()
    try:
        create_load(a, s, "create_pg", backend="postgres")
    finally:
        subprocess.run(["psql", "-q", a.pg_url, "-c", f"DROP DATABASE IF EXISTS {name}"])


def pg_database(a):
    """A fresh database on --pg-url; returns its URL and a function that
    drops it."""
    if not a.pg_url:
        raise SystemExit("this step needs --pg-url (e.g. $(bash scripts/pg.sh init DIR))")
    name = f"bench_{os.getpid()}_{int(time.time() * 1000)}"
    subprocess.run(["psql", "-q", a.pg_url, "-c", f"CREATE DATABASE {name}"], check=True)
    drop = lambda: subprocess.run(["psql", "-q", a.pg_url, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
    return a.pg_url.rsplit("/", 1)[0] + "/" + name, drop


def bench_account(a):
    """Authenticated `GET /v1/account` on PostgreSQL against SQLite, in
    the same run: one server on each, measured alternately --account-runs
    times (the order swapped each time), so that the machine's other load
    falls on both. On PostgreSQL the key is answered from the replica's
    cache once its listener is up (the `parasol_api_key_checks_total`
    counters of each server are recorded to show it)."""
    url, drop = pg_database(a)
    sq = fresh(a.bin)
    pg = fresh(a.bin, ["--database-url", url])
    sq.start()
    pg.start()
    try:
        # The PostgreSQL replica serves keys from memory only once it
        # listens and holds its lease (auth_sync.rs); a binary from before
        # the cache (an A/B run) has no such gauge and looks keys up.
        def serving():
            text = http("GET", pg.base + "/metrics", key=None)[1].decode()
            return ("parasol_api_key_cache_serving" not in text
                    or re.search(r"^parasol_api_key_cache_serving 1$", text, re.M))
        wait_for(serving, 20)
        for s in (sq, pg):
            wrk(s.base + "/v1/account", seconds=2)  # warm up
        runs = []
        for i in range(a.account_runs):
            order = [("sqlite", sq), ("postgres", pg)]
            if i % 2:
                order.reverse()
            got = {}
            for label, s in order:
                got[label] = wrk(s.base + "/v1/account", conns=64, seconds=a.seconds)
                assert got[label]["non2xx"] == 0, got[label]
            runs.append(round(got["postgres"]["rps"] / got["sqlite"]["rps"], 3))
            record("account_pg_vs_sqlite_run", run=i + 1, sqlite=got["sqlite"],
                   postgres=got["postgres"], ratio=runs[-1])
        checks = {}
        for label, s in (("sqlite", sq), ("postgres", pg)):
            text = http("GET", s.base + "/metrics", key=None)[1].decode()
            checks[label] = {m.group(1): int(m.group(2)) for m in re.finditer(
                r'^parasol_api_key_checks_total\{source="(\w+)"\} (\d+)$', text, re.M)}
        record("account_pg_vs_sqlite", ratios=runs, median_ratio=statistics.median(runs),
               key_checks=checks, target_ratio=0.8)
    finally:
        sq.stop()
        pg.stop()
        drop()


def bench_create_pg_replicas(a):
    """Creates on three replicas sharing one PostgreSQL database: one wrk
    per replica (--create-conns split evenly), all for --create-seconds at
    once; the total is the sum. Then every replica is SIGKILLed and one
    restarted, to count what survived."""
    url, drop = pg_database(a)
    servers = [fresh(a.bin, ["--database-url", url]) for _ in range(3)]
    for s in servers:
        s.start()
    try:
        env = dict(os.environ, BENCH_KEY=KEY, BENCH_METHOD="POST", BENCH_BODY=CREATE_BODY)
        for s in servers:
            wrk(s.base + "/v1/instances/create", conns=8, seconds=2, env={
                "BENCH_METHOD": "POST", "BENCH_BODY": CREATE_BODY})
        before = sum(servers[0].counts().values())
        conns = max(1, a.create_conns // 3)
        procs = [subprocess.Popen(
            ["wrk", "-t1", f"-c{conns}", f"-d{a.create_seconds}s", "--timeout=10s", "-s", LUA,
             s.base + "/v1/instances/create"], env=env, stdout=subprocess.PIPE, text=True)
            for s in servers]
        each = []
        for p in procs:
            out = p.communicate()[0]
            line = next(l for l in out.splitlines() if l.startswith("RESULT "))
            each.append({k: (float(v) if "." in v else int(v))
                         for k, v in (kv.split("=") for kv in line.split()[1:])})
        acked = sum(r["requests"] - r["non2xx"] for r in each)
        for s in servers:
            s.kill()
        servers[0].start()
        stored = sum(servers[0].counts().values()) - before
        record("create_pg_3_replicas", backend="postgres", replicas=3, conns_each=conns,
               rps=round(sum(r["rps"] for r in each), 1), per_replica=each,
               acknowledged=acked, stored_after_sigkill=stored, lost=max(0, acked - stored),
               target_rps=1500)
    finally:
        for s in servers:
            if s.proc.poll() is None:
                s.stop()
        drop()


def bench_reconciler_and_list(a):
    s = fresh(a.bin)
    s.start()
    n = 10_000
    t0 = time.perf_counter()
    c = create_n(s, n)
    t_created = time.perf_counter() - t0
    total = c["requests"] - c["non2xx"]
    waited, _ = wait_for(lambda: s.counts().get("active", 0) >= total, timeout=600)
    t_active = time.perf_counter() - t0
    record("reconciler_10k", instances=total, create_phase_s=round(t_created, 2),
           first_create_to_all_active_s=round(t_active, 2),
           after_last_create_s=round(waited, 2), create_rps=c["rps"], target_s=30)
    status, body = http("GET", s.base + "/v1/instances")
    listed = len(json.loads(body)["instances"])
    wrk(s.base + "/v1/instances", conns=4, seconds=2)
    r = wrk(s.base + "/v1/instances", conns=4, seconds=a.seconds, timeout="30s")
    assert r["non2xx"] == 0, r
    rss = s.rss_mib()
    record("list_10k", instances=listed, body_bytes=len(body), **r, target_p50_ms=50,
           rss_mib=round(rss[0], 1))
    r1 = wrk(s.base + "/v1/instances", conns=1, threads=1, seconds=a.seconds, timeout="30s")
    record("list_10k_one_connection", **r1)
    s.stop()


def list_latencies(base, path, key, stop):
    """Times `GET path` one after another on one keep-alive connection
    until `stop()` is true; each sample is (seconds since start, ms)."""
    import http.client
    host, port = base.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    out, t0 = [], time.perf_counter()
    while not stop():
        t = time.perf_counter()
        c.request("GET", path, headers={"X-API-KEY": key})
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, body[:200]
        out.append((t - t0, (time.perf_counter() - t) * 1000))
    c.close()
    return out


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p / 100))], 2) if xs else None


def bench_list_activation(a):
    """The list of one account's 10,000 active instances, on one
    connection: settled, then while another account's 10,000 are created
    (32 connections) and the reconciler brings them to active. The other
    account's instances are not in the list (its body stays 10,000)."""
    import threading
    s = fresh(a.bin)
    s.start()
    n = 10_000
    create_n(s, n)
    wait_for(lambda: s.counts().get("active", 0) >= n, timeout=600)
    listed = len(json.loads(http("GET", s.base + "/v1/instances")[1])["instances"])
    settled_ms = [ms for _, ms in list_latencies(s.base, "/v1/instances", KEY,
                                                 deadline(a.seconds))]
    status, body = http("POST", s.base + "/v1/admin/accounts/create",
                        json.dumps({"name": "other", "admin": False}))
    assert status == 200, body
    other = json.loads(body)["api_key"]
    phase = {"at": "creating"}
    samples = {"creating": [], "activating": []}
    done = threading.Event()

    def measure():
        import http.client
        host, port = s.base.split("//")[1].split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        while not done.is_set():
            at = phase["at"]
            t = time.perf_counter()
            c.request("GET", "/v1/instances", headers={"X-API-KEY": KEY})
            r = c.getresponse()
            r.read()
            assert r.status == 200
            ms = (time.perf_counter() - t) * 1000
            # A sample counts for a phase only if it began and ended in it.
            if phase["at"] == at:
                samples[at].append(ms)
        c.close()

    th = threading.Thread(target=measure)
    th.start()
    t0 = time.perf_counter()
    # The other account's creates, through wrk under its key.
    e = dict(os.environ, BENCH_KEY=other, BENCH_METHOD="POST", BENCH_BODY=CREATE_BODY,
             BENCH_LIMIT=str(math.ceil(n / 2)))
    before = sum(s.counts().values())
    p = subprocess.Popen(["wrk", "-t2", "-c32", "-d3600s", "--timeout=10s", "-s", LUA,
                          s.base + "/v1/instances/create"], env=e, stdout=subprocess.PIPE,
                         text=True)
    while sum(s.counts().values()) - before < n:
        time.sleep(0.2)
    p.send_signal(2)
    p.communicate()
    t_created = time.perf_counter() - t0
    phase["at"] = "activating"
    wait_for(lambda: s.counts().get("active", 0) >= 2 * n, timeout=600, every=0.1)
    t_active = time.perf_counter() - t0
    done.set()
    th.join()
    record("list_10k_during_activation", instances_listed=listed,
           settled_p50_ms=pct(settled_ms, 50), settled_p99_ms=pct(settled_ms, 99),
           settled_samples=len(settled_ms),
           creating_s=round(t_created, 2), creating_p50_ms=pct(samples["creating"], 50),
           creating_p99_ms=pct(samples["creating"], 99), creating_samples=len(samples["creating"]),
           activating_s=round(t_active - t_created, 2),
           activating_p50_ms=pct(samples["activating"], 50),
           activating_p99_ms=pct(samples["activating"], 99),
           activating_samples=len(samples["activating"]),
           target_settled_p50_ms=15, target_activating_p50_ms=25)
    s.stop()


def deadline(seconds):
    end = time.perf_counter() + seconds
    return lambda: time.perf_counter() >= end


def bench_clusters(a):
    s = fresh(a.bin)
    s.start()
    status, body = http("GET", s.base + "/v1/clusters/types")
    assert status == 200, body
    items = json.loads(body)["cluster_types"]
    t = next(i for i in items if i["num_instances"] == 4 and i["availability"]["available"])
    region = t["availability"]["region"]
    shade = t["cluster_type"]["shade_instance_type"]
    req = json.dumps({"name": "bench", "cloud": t["cloud"], "region": region,
                      "cluster_type": shade, "num_instances": 4})
    n = 1000
    t0 = time.perf_counter()
    c = create_n(s, n, conns=16, body=req, path="/v1/clusters/create",
                 family="parasol_clusters")
    t_created = time.perf_counter() - t0
    total = c["requests"] - c["non2xx"]
    assert c["non2xx"] == 0, c
    waited, _ = wait_for(lambda: s.counts("parasol_clusters").get("active", 0) >= total, 600)
    t_active = time.perf_counter() - t0
    record("clusters_1k_x4", clusters=total, nodes=4 * total, type=shade,
           create_phase_s=round(t_created, 2), first_create_to_all_active_s=round(t_active, 2),
           after_last_create_s=round(waited, 2), target_s=30)
    s.stop()


def fill_store(data_dir, n):
    """Completes the SQLite store in `data_dir` (stopped; it must already
    hold at least one instance, made through the API) to `n` instances by
    copying rows in SQLite with fresh ids, every one `active` and not due,
    and recounts the capacity counters the server keeps beside the rows
    (store/capacity.rs) as its migration does (not the per-account budget
    counters: the bench's account has no budget, so they count nothing it
    reads). Returns how many are stored.
    Creates through the API slow down as one offer fills (BENCHMARKS.md),
    and a million of them would take most of an hour."""
    import sqlite3
    db = os.path.join(data_dir, "parasol.db")
    c = sqlite3.connect(db)
    c.execute("UPDATE instances SET status = 'active', wake_at = NULL, lease_owner = NULL, "
              "lease_until = NULL, doc = json_set(doc, '$.instance.status', 'active')")
    have = c.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
    assert have > 0, f"{db} holds no instance to copy"
    uuid = ("lower(hex(randomblob(4))||'-'||hex(randomblob(2))||'-4'||substr(hex(randomblob(2)),2)"
            "||'-a'||substr(hex(randomblob(2)),2)||'-'||hex(randomblob(6)))")
    cols = [r[1] for r in c.execute("PRAGMA table_info(instances)")]
    rest = [x for x in cols if x not in ("id", "doc")]
    while have < n:
        k = min(have, n - have)
        # MATERIALIZED: otherwise SQLite substitutes the random expression
        # at each use of nid, and the row's id and its document's differ.
        c.execute(f"INSERT INTO instances (id, doc, {', '.join(rest)}) "
                  f"WITH src AS MATERIALIZED (SELECT *, {uuid} AS nid FROM instances LIMIT {k}) "
                  f"SELECT nid, json_set(doc, '$.instance.id', nid), {', '.join(rest)} FROM src")
        c.commit()
        have += k
    c.execute("DELETE FROM holdings")
    c.execute("INSERT INTO holdings (cloud, region, shade_instance_type, pool, n) "
              "SELECT cloud, region, shade_instance_type, "
              "CASE WHEN cluster_id IS NULL THEN 'single' ELSE 'cluster' END, COUNT(*) "
              "FROM instances WHERE status IN ('creating','pending_provider','pending','active','deleting') "
              "GROUP BY 1, 2, 3, 4")
    c.commit()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return have


def bench_memory(a):
    """RSS with `--memory-instances` stored. Creates through the API slow
    down as one offer fills (see BENCHMARKS.md), so the API fills
    `--memory-api-fill` instances (RSS under create and reconciler load),
    and the store is then completed by copying rows in SQLite with fresh
    ids, all `active` and not due, before a restart on it."""
    s = fresh(a.bin)
    s.start()
    n = min(a.memory_api_fill, a.memory_instances)
    t0 = time.perf_counter()
    create_n(s, n, conns=64)
    wait_for(lambda: s.counts().get("active", 0) >= n, timeout=1200, every=1)
    filled = time.perf_counter() - t0
    rss_fill, hwm_fill = s.rss_mib()
    s.stop()
    have = fill_store(s.data_dir, a.memory_instances)
    db = os.path.join(s.data_dir, "parasol.db")
    ready = s.start()
    rss_ready, _ = s.rss_mib()
    time.sleep(35)
    rss_idle, _ = s.rss_mib()
    t = time.perf_counter()
    status, body = http("GET", s.base + "/v1/instances", timeout=300)
    list_s = time.perf_counter() - t
    rss_list, hwm_list = s.rss_mib()
    s.stop()
    record("memory", instances_stored=have, api_filled=n, api_fill_s=round(filled, 1),
           rss_during_api_fill_mib=round(rss_fill, 1), peak_during_api_fill_mib=round(hwm_fill, 1),
           restart_to_ready_s=round(ready, 3), rss_at_ready_mib=round(rss_ready, 1),
           rss_after_35s_idle_mib=round(rss_idle, 1), list_all_bytes=len(body),
           list_all_s=round(list_s, 2), rss_after_list_all_mib=round(rss_list, 1),
           peak_after_list_all_mib=round(hwm_list, 1),
           sqlite_bytes=os.path.getsize(db), target_mib=200)


def bench_million(a):
    """A store of `--million-instances` (default 1,000,000): start to ready,
    resident memory at ready, idle and under create load, and what one
    `/metrics` scrape costs. The API makes the first 2,000 instances (so
    the copies are real documents), `fill_store` the rest."""
    s = fresh(a.bin)
    s.start()
    create_n(s, 2000, conns=32)
    wait_for(lambda: s.counts().get("active", 0) >= 2000, timeout=600, every=0.5)
    s.stop()
    t = time.perf_counter()
    have = fill_store(s.data_dir, a.million_instances)
    fill_s = time.perf_counter() - t
    db = os.path.join(s.data_dir, "parasol.db")
    readies = []
    for _ in range(5):
        readies.append(s.start())
        s.stop()
    ready = s.start()
    rss_ready, _ = s.rss_mib()
    time.sleep(15)
    rss_idle, _ = s.rss_mib()
    t = time.perf_counter()
    s.counts()
    scrape_s = time.perf_counter() - t
    r = wrk(s.base + "/v1/instances/create", conns=64, seconds=a.seconds, env={
        "BENCH_METHOD": "POST", "BENCH_BODY": CREATE_BODY})
    rss_load, hwm_load = s.rss_mib()
    s.stop()
    record("million", instances_stored=have, fill_s=round(fill_s, 1),
           sqlite_bytes=os.path.getsize(db) + (os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0),
           start_to_ready_runs_s=[round(x, 3) for x in readies + [ready]],
           start_to_ready_median_s=round(statistics.median(readies + [ready]), 3),
           rss_at_ready_mib=round(rss_ready, 1), rss_after_15s_idle_mib=round(rss_idle, 1),
           metrics_scrape_s=round(scrape_s, 3), create_under_load=r,
           rss_after_create_load_mib=round(rss_load, 1), peak_mib=round(hwm_load, 1),
           target_mib=200, target_ready_s=1.0)
    # A million-instance store is gigabytes: gone as soon as it is measured.
    shutil.rmtree(s.data_dir, ignore_errors=True)


class Tool:
    """An events_bench process (crates/parasol/examples/events_bench.rs)."""

    def __init__(self, binary, *args):
        self.proc = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, text=True)

    def line(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("events_bench exited")
        return line.strip()

    def result(self):
        out = self.proc.communicate()[0].strip().splitlines()
        return json.loads(out[-1])

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def settled(read, every=0.5, quiet=4, timeout=120):
    """Polls `read` until its value stops changing for `quiet` polls."""
    last, same, t0 = None, 0, time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        v = read()
        same = same + 1 if v == last else 0
        if same >= quiet:
            return v
        last = v
        time.sleep(every)
    return last


def bench_webhooks(a):
    """Fan-out: about 1,000 events/s, each delivered to 10 endpoints, for
    `--events-seconds`; delivery lag from the moment the event was recorded
    to its arrival at the receiver."""
    events_bin = a.events_bench
    s = fresh(a.bin, ["--webhook-allow-http", "--webhook-allow-private"])
    s.start()
    rx = Tool(events_bin, "receive", "127.0.0.1:0")
    base = rx.line().split()[-1]
    for n in range(10):
        status, b = http("POST", s.base + "/v1/webhooks/create", json.dumps(
            {"url": f"{base}/hook/{n}", "events": ["instance.*"], "all_accounts": True}))
        assert status == 200, b
    delivered = lambda: json.loads(http("GET", base + "/stats", key=None)[1])["deliveries"]
    # A warm-up counts the instance.* events one create makes with the sim
    # at zero boot delay (created, status changes, active).
    for _ in range(20):
        status, b = http("POST", s.base + "/v1/instances/create", CREATE_BODY)
        assert status == 200, b
    per_create = settled(delivered) / 10 / 20
    http("POST", base + "/reset", key=None)
    rate = a.events_rate / per_create
    log(f"{per_create:.2f} events per create; creating {rate:.0f}/s for {a.events_seconds}s")
    rss0 = s.rss_mib()[0]
    gen = Tool(events_bin, "create", s.base, KEY, str(rate), str(a.events_seconds), CREATE_BODY)
    made = gen.result()
    sent_at_end = json.loads(http("GET", base + "/stats", key=None)[1])
    expected = round(made["ok"] * per_create) * 10
    # Whatever is still queued drains now; the lag figures include it.
    t0 = time.perf_counter()
    last, still = -1, 0
    while True:
        st = json.loads(http("GET", base + "/stats", key=None)[1])
        if st["deliveries"] >= expected or time.perf_counter() - t0 > 600:
            break
        still = still + 1 if st["deliveries"] == last else 0
        if still >= 20:
            break
        last = st["deliveries"]
        time.sleep(0.5)
    drain_s = time.perf_counter() - t0
    rss = s.rss_mib()
    # The events' own times: the lifecycle records most of an instance's
    # events as the reconciler steps it, so under load they may be recorded
    # more slowly than the creates asked for.
    first, last = st["created_ms"]
    recorded_s = (last - first) / 1000
    record("webhooks_fanout", endpoints=10, events_per_create=round(per_create, 2),
           creates=made["ok"], create_failures=made["failed"], seconds=a.events_seconds,
           events_per_s=round(made["ok"] * per_create / made["seconds"], 1),
           events_recorded_over_s=round(recorded_s, 1),
           events_recorded_per_s=round(st["unique"] / 10 / max(recorded_s, 0.001), 1),
           deliveries=st["deliveries"], expected_deliveries=expected,
           unique_deliveries=st["unique"],
           delivered_during_load=sent_at_end["deliveries"],
           drain_after_load_s=round(drain_s, 2),
           lag_p50_ms=st["lag_ms"]["p50"], lag_p99_ms=st["lag_ms"]["p99"],
           lag_max_ms=st["lag_ms"]["max"],
           rss_mib_before=round(rss0, 1), rss_mib=round(rss[0], 1),
           rss_peak_mib=round(rss[1], 1))
    rx.stop()
    s.stop()


def bench_sse(a):
    """1,000 idle SSE clients: the server's memory per open stream, and the
    lag of the events they receive while a few creates run."""
    events_bin = a.events_bench
    # Every client is on 127.0.0.1 here, past the per-address default (256).
    s = fresh(a.bin, ["--max-connections-per-address", str(a.sse_clients + 100)])
    s.start()
    # Warm the paths the measurement uses, so their one-time allocations
    # are not counted per client.
    status, b = http("POST", s.base + "/v1/instances/create", CREATE_BODY)
    assert status == 200, b
    time.sleep(2)
    rss0 = s.rss_mib()[0]
    hold = 30 + a.sse_seconds
    t = Tool(events_bin, "sse", s.base, KEY, str(a.sse_clients), str(hold))
    line = t.line()
    assert line.startswith("connected"), line
    time.sleep(5)
    rss1 = s.rss_mib()[0]
    gen = Tool(events_bin, "create", s.base, KEY, "2", str(a.sse_seconds), CREATE_BODY)
    made = gen.result()
    r = t.result()
    record("sse_idle_clients", clients=a.sse_clients,
           rss_mib_before=round(rss0, 1), rss_mib_connected=round(rss1, 1),
           kib_per_client=round((rss1 - rss0) * 1024 / a.sse_clients, 1),
           creates=made["ok"], events_received=r["events"],
           events_per_client=round(r["events"] / a.sse_clients, 1),
           lag_p50_ms=r["lag_ms"]["p50"], lag_p99_ms=r["lag_ms"]["p99"],
           lag_max_ms=r["lag_ms"]["max"], cut=r["cut"], still_open=r["still_open"])
    s.stop()


def cpu_s(pid):
    """User plus system CPU seconds the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gpu_type_body(s, gpus):
    """A create body for a sim type of `gpus` GPUs that is available
    somewhere: a report may not list more GPUs than the type has."""
    status, body = http("GET", s.base + "/v1/instances/types?available=true")
    assert status == 200, body
    for t in json.loads(body)["instance_types"]:
        if t["configuration"]["num_gpus"] != gpus:
            continue
        region = next((a["region"] for a in t["availability"] if a["available"]), None)
        if region:
            return t["shade_instance_type"], json.dumps({
                "cloud": t["cloud"], "region": region,
                "shade_instance_type": t["shade_instance_type"],
                "shade_cloud": True, "name": "agent-bench"})
    raise RuntimeError(f"no available sim type has {gpus} GPUs")


class Storage:
    """Bytes and rows of the agent tables (indexes included), and of the
    whole database, on either backend."""
    TABLES = ("agent_samples", "agent_history", "agent_state")

    def __init__(self, data_dir=None, pg_url=None):
        self.data_dir, self.pg_url = data_dir, pg_url

    def _psql(self, sql):
        return subprocess.run(["psql", "-qtA", "-F", "|", self.pg_url, "-c", sql],
                              capture_output=True, text=True, check=True).stdout.strip()

    def secret(self):
        q = "SELECT value FROM settings WHERE name = 'agent_secret'"
        if self.pg_url:
            return self._psql(q)
        import sqlite3
        c = sqlite3.connect(f"file:{os.path.join(self.data_dir, 'parasol.db')}?mode=ro", uri=True)
        try:
            return c.execute(q).fetchone()[0]
        finally:
            c.close()

    def measure(self):
        out = {}
        if self.pg_url:
            for t in self.TABLES:
                size, rows = self._psql(
                    f"SELECT pg_total_relation_size('{t}'), (SELECT COUNT(*) FROM {t})").split("|")
                out[t] = {"bytes": int(size), "rows": int(rows)}
            out["database_bytes"] = int(self._psql("SELECT pg_database_size(current_database())"))
            return out
        import sqlite3
        db = os.path.join(self.data_dir, "parasol.db")
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            for t in self.TABLES:
                size = c.execute(
                    "SELECT COALESCE(SUM(d.pgsize), 0) FROM dbstat d JOIN sqlite_schema s "
                    "ON s.name = d.name WHERE s.tbl_name = ?", (t,)).fetchone()[0]
                rows = c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                out[t] = {"bytes": size, "rows": rows}
        finally:
            c.close()
        wal = db + "-wal"
        # The log apart: PASSIVE checkpoints under a steady writer copy it
        # into the file but never get to restart it, so it keeps growing.
        out["wal_bytes"] = os.path.getsize(wal) if os.path.exists(wal) else 0
        out["database_bytes"] = os.path.getsize(db) + out["wal_bytes"]
        return out


def probe(a, s, seconds, one):
    """The API's other routes at a modest fixed rate, for `seconds`; `one`
    is an instance id."""
    routes = [(a.agents_probe_rate, "/v1/instances/types"),
              (a.agents_probe_rate, "/v1/instances/types" + TYPES_FILTER),
              (a.agents_probe_rate, f"/v1/instances/{one}/info"),
              (1, "/v1/instances")]
    args = [x for r, p in routes for x in (str(r), p)]
    return Tool(a.agents_bench, "probe", s.base, KEY, str(seconds), *args)


def probe_p99s(result):
    """Each route's p99 under a name that does not carry the instance id."""
    out = {}
    for path, v in result["paths"].items():
        name = "/v1/instances/{id}/info" if path.endswith("/info") else path
        out[name] = {"p50_ms": v["latency_ms"]["p50"], "p99_ms": v["latency_ms"]["p99"],
                     "n": v["n"], "failed": v["non2xx"] + v["errors"]}
    return out


def agents_load(a, s, storage, label, **extra):
    """10,000 (--agents) instances of an 8-GPU type, then: the other
    routes probed on the idle server; every instance's agent reporting
    each --agents-interval for --agents-seconds, open loop, with the same
    probe running; the agent tables' growth."""
    n = a.agents
    shade, body = gpu_type_body(s, a.agents_gpus)
    t0 = time.perf_counter()
    c = create_n(s, n, conns=32, body=body)
    wait_for(lambda: s.counts().get("active", 0) >= n, timeout=1200, every=1)
    log(f"{n} active {shade} instances in {time.perf_counter() - t0:.0f} s "
        f"({c['rps']:.0f} creates/s)")
    status, b = http("GET", s.base + "/v1/instances", timeout=120)
    ids = [i["id"] for i in json.loads(b)["instances"]][:n]
    ids_file = os.path.join(s.data_dir, "agent-ids.txt")
    with open(ids_file, "w") as f:
        f.write("\n".join(ids) + "\n")
    # Let the reconciler's last steps and the WAL settle before the idle run.
    time.sleep(5)
    idle = probe(a, s, a.agents_idle_seconds, ids[0]).result()
    before = storage.measure()
    env = dict(os.environ, PARASOL_AGENT_SECRET=storage.secret())
    cpu0, t_load = cpu_s(s.proc.pid), time.perf_counter()
    gen = subprocess.Popen([a.agents_bench, "report", s.base, ids_file,
                            str(a.agents_interval), str(a.agents_seconds), str(a.agents_gpus)],
                           stdout=subprocess.PIPE, text=True, env=env)
    # The probe under load starts once every agent has reported once (its
    # first report inserts the agent's state row; later ones update it).
    warm = min(a.agents_interval, a.agents_seconds / 4)
    time.sleep(warm)
    loaded_probe = probe(a, s, max(1, a.agents_seconds - warm - 1), ids[0])
    perf = None
    if a.agents_perf:
        perf = os.path.join(s.data_dir, "perf.data")
        pr = subprocess.Popen(["perf", "record", "-g", "-F", "499", "-o", perf,
                               "-p", str(s.proc.pid), "--", "sleep", str(a.agents_perf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loaded = loaded_probe.result()
    out = json.loads(gen.communicate()[0].strip().splitlines()[-1])
    load_s, cpu = time.perf_counter() - t_load, cpu_s(s.proc.pid) - cpu0
    rss = s.rss_mib()
    if a.agents_perf:
        pr.wait()
        subprocess.run(f"perf report -i {perf} --no-children --percent-limit 1.5 --stdio "
                       f"> {a.agents_perf_out}.{label}.txt 2>&1", shell=True)
        log(f"profile: {a.agents_perf_out}.{label}.txt")
    # The reconciler folds complete minutes into the history every 30 s:
    # wait until the last minute with samples is folded, so that the
    # history's rows per instance can be measured.
    time.sleep(max(0, 66 - (time.perf_counter() - t_load - a.agents_seconds)))
    after = storage.measure()
    grew = {t: {k: after[t][k] - before[t][k] for k in ("bytes", "rows")}
            for t in Storage.TABLES}
    per_row = {t: round(after[t]["bytes"] / after[t]["rows"], 1) if after[t]["rows"] else None
               for t in Storage.TABLES}
    accepted = out["statuses"].get("204", 0)
    raw_per_instance = a.agents_raw_minutes * 60 / a.agents_interval
    # Per instance at steady state: its state row, the raw window, and
    # history_days of minutes.
    def steady(days):
        if per_row["agent_history"] is None:
            return None
        return round((per_row["agent_state"] + raw_per_instance * per_row["agent_samples"]
                      + days * 1440 * per_row["agent_history"]) / 1e6, 2)
    idle_p, load_p = probe_p99s(idle), probe_p99s(loaded)
    record(label, agents=n, gpus_per_report=a.agents_gpus, type=shade,
           interval_s=a.agents_interval, seconds=a.agents_seconds,
           reports_sent=out["sent"], reports_per_s=out["sent_per_s"],
           statuses=out["statuses"], errors=out["errors"], accepted=accepted,
           ingest_latency_ms=out["latency_ms"], ingest_from_schedule_ms=out["from_schedule_ms"],
           ingest_windows=out["windows"],
           server_cpu_s=round(cpu, 1), server_cpu_ms_per_report=round(cpu * 1000 / max(accepted, 1), 3),
           server_cpu_cores=round(cpu / load_s, 2), rss_mib=round(rss[0], 1),
           rss_peak_mib=round(rss[1], 1),
           other_routes_idle=idle_p, other_routes_loaded=load_p,
           other_routes_p99_ratio={p: round(load_p[p]["p99_ms"] / idle_p[p]["p99_ms"], 2)
                                   for p in idle_p if idle_p[p]["p99_ms"] and p in load_p
                                   and load_p[p]["p99_ms"]},
           storage_before=before, storage_after=after, storage_grew=grew,
           bytes_per_row=per_row,
           database_grew_bytes=after["database_bytes"] - before["database_bytes"],
           database_grew_per_instance_day_mb=round(
               (after["database_bytes"] - before["database_bytes"]) / n
               / (a.agents_seconds / 86400) / 1e6, 1),
           history_per_instance_day_mb=(round(1440 * per_row["agent_history"] / 1e6, 3)
                                        if per_row["agent_history"] else None),
           per_instance_at_7_days_mb=steady(7),
           target_p99_ms=50, target_other_routes_ratio=1.1, **extra)


# The sim's own simulated agents would report for every instance too
# (`--no-agent` turns them off; ingestion stays on). All the agents here
# come from 127.0.0.1, past the per-address connection cap (256) whenever
# answers slow down.
AGENT_FLAGS = ["--no-agent", "--max-connections-per-address", "100000"]


def bench_agents(a):
    s = fresh(a.bin, AGENT_FLAGS)
    s.start()
    try:
        agents_load(a, s, Storage(data_dir=s.data_dir), "agents", backend="sqlite",
                    sqlite_synchronous=a.sqlite_synchronous)
    finally:
        s.stop()


def bench_agents_pg(a):
    """The same against PostgreSQL (one replica) in a fresh database of
    --pg-url."""
    if not a.pg_url:
        raise SystemExit("agents_pg needs --pg-url (e.g. $(bash scripts/pg.sh init DIR))")
    name = f"bench_agents_{os.getpid()}_{int(time.time())}"
    subprocess.run(["psql", "-q", a.pg_url, "-c", f"CREATE DATABASE {name}"], check=True)
    url = a.pg_url.rsplit("/", 1)[0] + "/" + name
    s = fresh(a.bin, [*AGENT_FLAGS, "--database-url", url])
    s.start()
    try:
        agents_load(a, s, Storage(pg_url=url), "agents_pg", backend="postgres")
    finally:
        s.stop()
        subprocess.run(["psql", "-q", a.pg_url, "-c", f"DROP DATABASE IF EXISTS {name}"])


def machine():
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"^Model name:\s+(.*)$", lscpu, re.M)
    record("machine", nproc=int(subprocess.check_output(["nproc"]).strip()),
           cpu=model.group(1).strip() if model else "?",
           free_g=subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.splitlines()[1],
           kernel=os.uname().release,
           wrk=subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
           rustc_busy=int(subprocess.run("ps aux | grep -c '[r]ustc'", shell=True,
                                         capture_output=True, text=True).stdout.strip() or 0))


BENCHES = {
    "ready": bench_ready,
    "types": bench_types,
    "create": bench_create,
    "create_pg": bench_create_pg,
    "account": bench_account,
    "create_pg_replicas": bench_create_pg_replicas,
    "reconciler": bench_reconciler_and_list,
    "list_activation": bench_list_activation,
    "clusters": bench_clusters,
    "memory": bench_memory,
    "million": bench_million,
    "webhooks": bench_webhooks,
    "sse": bench_sse,
    "agents": bench_agents,
    "agents_pg": bench_agents_pg,
}


# Steps that need --pg-url (left out of a full run without it).
PG_STEPS = {"create_pg", "account", "create_pg_replicas", "agents_pg"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--only", default=None,
                    help="comma-separated steps (default: all; create_pg and account only with --pg-url)")
    ap.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    ap.add_argument("--memory-instances", type=int, default=100_000)
    ap.add_argument("--memory-api-fill", type=int, default=20_000,
                    help="how many of them to create through the API first")
    ap.add_argument("--million-instances", type=int, default=1_000_000,
                    help="instances stored for the `million` step")
    ap.add_argument("--create-seconds", type=int, default=30, help="length of each create load")
    ap.add_argument("--create-conns", type=int, default=64,
                    help="connections of create_pg_replicas, split over the three replicas")
    ap.add_argument("--create-prefill", default="100000,1000000",
                    help="instances stored (by SQL copy) before the pre-filled create runs")
    ap.add_argument("--sqlite-synchronous", default="full", choices=["full", "normal"],
                    help="the servers' --sqlite-synchronous (full: durable to power loss)")
    ap.add_argument("--pg-url", default=None, help="PostgreSQL admin URL for create_pg and account")
    ap.add_argument("--account-runs", type=int, default=3,
                    help="alternating measurements of each server for `account`")
    ap.add_argument("--events-bench", default="target/release/examples/events_bench",
                    help="the events_bench example (webhooks and sse steps)")
    ap.add_argument("--events-rate", type=float, default=1000, help="events/s for `webhooks`")
    ap.add_argument("--events-seconds", type=int, default=60, help="length of the fan-out load")
    ap.add_argument("--sse-clients", type=int, default=1000, help="streams for `sse`")
    ap.add_argument("--sse-seconds", type=int, default=30, help="creates while they are open")
    ap.add_argument("--agents-bench", default="target/release/examples/agents_bench",
                    help="the agents_bench example (agents steps)")
    ap.add_argument("--agents", type=int, default=10_000, help="machines reporting")
    ap.add_argument("--agents-interval", type=float, default=15, help="seconds between reports")
    ap.add_argument("--agents-seconds", type=int, default=300, help="length of the load")
    ap.add_argument("--agents-gpus", type=int, default=8, help="GPUs in each report")
    ap.add_argument("--agents-idle-seconds", type=int, default=60,
                    help="length of the other routes' probe on the idle server")
    ap.add_argument("--agents-probe-rate", type=float, default=10,
                    help="requests/s to each small route of the probe (the full list: 1/s)")
    ap.add_argument("--agents-raw-minutes", type=float, default=60,
                    help="the servers' raw retention, for the per-instance extrapolation")
    ap.add_argument("--agents-perf", type=int, default=0,
                    help="seconds of `perf record -g` on the server under load (0: none)")
    ap.add_argument("--agents-perf-out", default="/tmp/agents-profile",
                    help="where the perf report goes (.STEP.txt is appended)")
    ap.add_argument("--out", default=None, help="also write all figures to this JSON file")
    a = ap.parse_args()
    if a.only is None:
        a.only = ",".join(b for b in BENCHES if b not in PG_STEPS or a.pg_url)
    SQLITE_SYNCHRONOUS[0] = a.sqlite_synchronous
    machine()
    try:
        for name in a.only.split(","):
            log(f"running {name}")
            BENCHES[name](a)
    finally:
        for d in DIRS:
            shutil.rmtree(d, ignore_errors=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
