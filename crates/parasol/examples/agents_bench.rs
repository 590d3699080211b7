//! The agents benchmark's load and probe (bench/bench.py, step `agents`):
//! ten thousand machines' agents reporting every 15 s is 667 reports a
//! second, more than Python on this machine sends without becoming what
//! is measured.
//!
//! ```text
//! agents_bench report BASE IDS_FILE INTERVAL_S SECONDS GPUS
//!     The agent secret comes from the environment (PARASOL_AGENT_SECRET):
//!     the settings row `agent_secret` of the server's database. Every
//!     instance id in IDS_FILE (one a line) gets its agent token derived
//!     as the server derives it (parasol::agent::AgentKeys) and reports
//!     every INTERVAL_S, the agents' phases spread evenly over the
//!     interval, for SECONDS: open loop (a slow answer does not slow the
//!     sending), `seq` starting at the current Unix time and rising by one
//!     a report, GPUS GPUs a report. Prints one JSON line:
//!     {"agents", "sent", "statuses": {"204": n, ...}, "errors",
//!      "seconds", "sent_per_s", "latency_ms": {...},
//!      "from_schedule_ms": {...}, "windows": [{"t", "n", "p50", "p99",
//!      "max", "failed"}, ...]}
//!     With PARASOL_BENCH_ACKED set, every acknowledged report (204) is
//!     also written there as a line `ID SEQ`, for a check that nothing
//!     acknowledged was lost (bench/scale_replicas.sh).
//! agents_bench polls BASES IDS_FILE KEY RATE SECONDS CREATE_RATE CREATED_FILE
//!     Status polls over many replicas: BASES is a comma-separated list of
//!     base URLs; `GET /v1/instances/{id}/info` RATE times a second in all
//!     (open loop) for SECONDS, request k to base k mod |BASES| and to the
//!     instance id at a stride through IDS_FILE, so that every id is
//!     polled and consecutive polls hit different rows. Beside them
//!     CREATE_RATE creates a second (0: none), spread the same way, each
//!     acknowledged one's id written to CREATED_FILE; the body comes from
//!     PARASOL_BENCH_CREATE_BODY (default: a one-GPU sim type). Prints
//!     one JSON line: {"seconds", "bases": {BASE: {ROUTE: {"n",
//!     "non2xx", "errors", "statuses", "latency_ms"}, "windows": [{"t",
//!     "n", "failed", "p50", "p99"}, ...]}}} (errors: no answer;
//!     statuses: the answers' codes) where ROUTE is
//!     `GET /v1/instances/{id}/info` or
//!     `POST /v1/instances/create`, and the ten-second windows (by the
//!     moment a request was due, both routes together) show when a
//!     replica stopped answering.
//! agents_bench probe BASE KEY SECONDS RATE PATH [RATE PATH ...]
//!     GETs each PATH RATE times a second (open loop) with the API key for
//!     SECONDS, reading each whole body. Prints one JSON line:
//!     {"seconds", "paths": {PATH: {"n", "non2xx", "errors",
//!      "latency_ms": {...}}}}
//! ```
//!
//! `latency_ms` runs from the moment a request is handed to the client to
//! the end of its answer; `from_schedule_ms` from the moment the open loop
//! meant to send it (so a load generator that fell behind shows there and
//! not as a fast server). Percentiles are `{"p50", "p90", "p99",
//! "p999", "max", "n"}`. Connections are kept alive and shared, where the
//! real agent (one `curl` a report) opens one per report: the figure is
//! the server's ingestion, not TCP set-up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parasol::agent::AgentKeys;
use parasol::providers::clouds::Secret;
use serde_json::{json, Value};
use uuid::Uuid;

/// Percentiles of latencies in microseconds, as milliseconds.
fn summary(us: &mut [u64]) -> Value {
    us.sort_unstable();
    let at = |q: f64| {
        if us.is_empty() {
            Value::Null
        } else {
            let v = us[((us.len() - 1) as f64 * q).round() as usize];
            json!((v as f64 / 1000.0 * 100.0).round() / 100.0)
        }
    };
    json!({"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999),
           "max": at(1.0), "n": us.len()})
}

/// One report's outcome: when it was meant to go (µs from the start), its
/// latency from sending and from that moment (µs), and its status (0: no
/// answer).
type Outcome = (u64, u64, u64, u16);

/// A report body of `gpus` GPUs whose numbers move with `k`, so that rows
/// are not all alike (a compressing store would otherwise flatter itself).
fn body(id: &str, seq: i64, k: u64, gpus: u32) -> String {
    let list: Vec<Value> = (0..gpus)
        .map(|g| {
            let u = ((k * 7 + u64::from(g) * 13) % 101) as f64;
            json!({"index": g, "utilization_percent": u,
                   "memory_used_mib": 1024 + (k * 31 + u64::from(g)) % 80000,
                   "memory_total_mib": 81559, "temperature_c": 30.0 + u / 2.0,
                   "power_w": 70.0 + u * 6.3, "ecc_uncorrectable": 0, "xid": []})
        })
        .collect();
    json!({"instance_id": id, "seq": seq, "agent_version": "bench-1",
           "uptime_s": 1000 + k, "ssh_sessions": (k % 3), "gpus": list})
    .to_string()
}

async fn report(
    base: &str,
    ids_file: &str,
    interval_s: f64,
    seconds: f64,
    gpus: u32,
) -> anyhow::Result<()> {
    let secret = std::env::var("PARASOL_AGENT_SECRET")
        .map_err(|_| anyhow::anyhow!("PARASOL_AGENT_SECRET is not set"))?;
    let keys = AgentKeys::from_secret(Secret::new(secret));
    let agents: Vec<(String, String)> = std::fs::read_to_string(ids_file)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let id = Uuid::parse_str(l.trim())?;
            Ok((id.to_string(), keys.token(id).expose().to_string()))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!agents.is_empty(), "{ids_file} names no instance");
    let n = agents.len() as u64;
    let agents = Arc::new(agents);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{base}/v1/agent/report");
    let gap = Duration::from_secs_f64(interval_s / n as f64);
    let total = (seconds / gap.as_secs_f64()).round() as u64;
    let seq0 = chrono::Utc::now().timestamp();
    let done: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let acked: Arc<Mutex<Vec<(usize, i64)>>> = Arc::default();
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..total {
        let due = start + gap * k as u32;
        tokio::time::sleep_until(due).await;
        let (client, url, agents, done, acked) = (
            client.clone(),
            url.clone(),
            agents.clone(),
            done.clone(),
            acked.clone(),
        );
        tasks.spawn(async move {
            let (id, token) = &agents[(k % n) as usize];
            let seq = seq0 + (k / n) as i64;
            let b = body(id, seq, k, gpus);
            let sent = Instant::now();
            let r = client
                .post(url)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(b)
                .send()
                .await;
            let status = match r {
                Ok(r) => {
                    let s = r.status().as_u16();
                    r.bytes().await.ok();
                    s
                }
                Err(_) => 0,
            };
            if status == 204 {
                acked.lock().unwrap().push(((k % n) as usize, seq));
            }
            let end = tokio::time::Instant::now();
            let from_due = end.duration_since(due).as_micros() as u64;
            let from_sent = sent.elapsed().as_micros() as u64;
            let at = due.duration_since(start).as_micros() as u64;
            done.lock().unwrap().push((at, from_sent, from_due, status));
        });
        // Reap as we go, so the set does not hold a run's worth of tasks.
        while tasks.try_join_next().is_some() {}
    }
    let sending = start.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    let done = std::mem::take(&mut *done.lock().unwrap());
    if let Ok(path) = std::env::var("PARASOL_BENCH_ACKED") {
        let mut text = String::new();
        for (i, seq) in acked.lock().unwrap().iter() {
            text.push_str(&format!("{} {seq}\n", agents[*i].0));
        }
        std::fs::write(&path, text)?;
    }
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = 0u64;
    for (_, _, _, s) in &done {
        if *s == 0 {
            errors += 1;
        } else {
            *statuses.entry(s.to_string()).or_default() += 1;
        }
    }
    // `n`, p50 and p99 of the windows: the reports answered 204.
    let windows = windows(done.iter().map(|(at, lat, _, s)| (*at, *lat, *s == 204)));
    let mut lat: Vec<u64> = done.iter().map(|d| d.1).collect();
    let mut due: Vec<u64> = done.iter().map(|d| d.2).collect();
    println!(
        "{}",
        json!({
            "agents": n,
            "interval_s": interval_s,
            "gpus": gpus,
            "sent": done.len(),
            "statuses": statuses,
            "errors": errors,
            "seconds": sending,
            "sent_per_s": (done.len() as f64 / sending * 10.0).round() / 10.0,
            "latency_ms": summary(&mut lat),
            "from_schedule_ms": summary(&mut due),
            "windows": windows,
        })
    );
    Ok(())
}

/// Ten-second windows by the moment each request was due, from (due µs
/// from the start, latency µs, succeeded): a periodic stall (the
/// downsampling, a checkpoint) or a replica's death shows when it hit.
/// Latencies are of the requests that succeeded; `failed` counts the rest.
fn windows(outcomes: impl Iterator<Item = (u64, u64, bool)>) -> Vec<Value> {
    let mut by: BTreeMap<u64, (Vec<u64>, u64)> = BTreeMap::new();
    for (at, lat, ok) in outcomes {
        let w = by.entry(at / 10_000_000).or_default();
        if ok {
            w.0.push(lat);
        } else {
            w.1 += 1;
        }
    }
    by.into_iter()
        .map(|(w, (mut l, failed))| {
            let s = summary(&mut l);
            json!({"t": w * 10, "n": s["n"], "failed": failed, "p50": s["p50"],
                   "p99": s["p99"], "max": s["max"]})
        })
        .collect()
}

const INFO: &str = "GET /v1/instances/{id}/info";
const CREATE: &str = "POST /v1/instances/create";

/// One poll's or create's outcome: its base, route, due µs from the
/// start, latency µs, and status (0: no answer).
type Polled = (usize, &'static str, u64, u64, u16);

#[allow(clippy::too_many_arguments)]
async fn polls(
    bases: &str,
    ids_file: &str,
    key: &str,
    rate: f64,
    seconds: f64,
    create_rate: f64,
    created_file: &str,
) -> anyhow::Result<()> {
    let bases: Arc<Vec<String>> = Arc::new(bases.split(',').map(str::to_string).collect());
    let ids: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(ids_file)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
    );
    anyhow::ensure!(!ids.is_empty(), "{ids_file} names no instance");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let done: Arc<Mutex<Vec<Polled>>> = Arc::default();
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    // A stride coprime with the number of ids visits every id once per
    // pass and keeps consecutive polls off neighbouring rows.
    let n = ids.len() as u64;
    let stride = (1..)
        .map(|d: u64| (n * 618 / 1000 + d) % n.max(2))
        .find(|s| *s > 0 && gcd(*s, n) == 1)
        .unwrap_or(1);
    let body = match std::env::var("PARASOL_BENCH_CREATE_BODY") {
        Ok(b) => b,
        Err(_) => json!({"cloud": "massedcompute", "region": "us-central-1",
                         "shade_instance_type": "A6000", "shade_cloud": true,
                         "name": "scale"})
        .to_string(),
    };
    let start = tokio::time::Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for (route, r) in [(INFO, rate), (CREATE, create_rate)] {
        if r <= 0.0 {
            continue;
        }
        let (client, bases, ids, done, created, key, body) = (
            client.clone(),
            bases.clone(),
            ids.clone(),
            done.clone(),
            created.clone(),
            key.to_string(),
            body.clone(),
        );
        loops.spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / r);
            let total = (seconds * r).round() as u64;
            let mut reqs = tokio::task::JoinSet::new();
            for k in 0..total {
                let due = start + gap * k as u32;
                tokio::time::sleep_until(due).await;
                let b = (k % bases.len() as u64) as usize;
                let req = if route == INFO {
                    let id = &ids[((k * stride) % n) as usize];
                    client.get(format!("{}/v1/instances/{id}/info", bases[b]))
                } else {
                    client
                        .post(format!("{}/v1/instances/create", bases[b]))
                        .header("content-type", "application/json")
                        .body(body.clone())
                };
                let req = req.header("x-api-key", key.clone());
                let (done, created) = (done.clone(), created.clone());
                reqs.spawn(async move {
                    let sent = Instant::now();
                    let (status, text) = match req.send().await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            match r.text().await {
                                Ok(t) => (s, t),
                                Err(_) => (0, String::new()),
                            }
                        }
                        Err(_) => (0, String::new()),
                    };
                    let us = sent.elapsed().as_micros() as u64;
                    if route == CREATE && (200..300).contains(&status) {
                        let v: Value = serde_json::from_str(&text).unwrap_or_default();
                        if let Some(id) = v["id"].as_str() {
                            created.lock().unwrap().push(id.to_string());
                        }
                    }
                    let at = due.duration_since(start).as_micros() as u64;
                    done.lock().unwrap().push((b, route, at, us, status));
                });
                while reqs.try_join_next().is_some() {}
            }
            while reqs.join_next().await.is_some() {}
        });
    }
    while let Some(r) = loops.join_next().await {
        r?;
    }
    let created = std::mem::take(&mut *created.lock().unwrap());
    if !created_file.is_empty() {
        let mut text = created.join("\n");
        text.push('\n');
        std::fs::write(created_file, text)?;
    }
    let done = std::mem::take(&mut *done.lock().unwrap());
    let mut out = serde_json::Map::new();
    for (b, base) in bases.iter().enumerate() {
        let mine: Vec<&Polled> = done.iter().filter(|d| d.0 == b).collect();
        let mut per = serde_json::Map::new();
        for route in [INFO, CREATE] {
            let of: Vec<&&Polled> = mine.iter().filter(|d| d.1 == route).collect();
            if of.is_empty() {
                continue;
            }
            let mut lat: Vec<u64> = of
                .iter()
                .filter(|d| (200..300).contains(&d.4))
                .map(|d| d.3)
                .collect();
            let errors = of.iter().filter(|d| d.4 == 0).count();
            let non2xx = of.len() - lat.len() - errors;
            let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
            for d in of.iter().filter(|d| d.4 != 0) {
                *statuses.entry(d.4.to_string()).or_default() += 1;
            }
            per.insert(
                route.to_string(),
                json!({"n": of.len(), "non2xx": non2xx, "errors": errors,
                       "statuses": statuses, "latency_ms": summary(&mut lat)}),
            );
        }
        per.insert(
            "windows".to_string(),
            json!(windows(mine.iter().map(|d| (
                d.2,
                d.3,
                (200..300).contains(&d.4)
            )))),
        );
        out.insert(base.clone(), Value::Object(per));
    }
    println!(
        "{}",
        json!({"seconds": seconds, "rate_per_s": rate, "create_rate_per_s": create_rate,
               "created": created.len(), "bases": out})
    );
    Ok(())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

async fn probe(
    base: &str,
    key: &str,
    seconds: f64,
    routes: &[(f64, String)],
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut loops = tokio::task::JoinSet::new();
    for (rate, path) in routes {
        let (client, url, key, rate, path) = (
            client.clone(),
            format!("{base}{path}"),
            key.to_string(),
            *rate,
            path.clone(),
        );
        loops.spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / rate);
            let total = (seconds * rate).round() as u64;
            let start = tokio::time::Instant::now();
            let out: Arc<Mutex<(Vec<u64>, u64, u64)>> = Arc::default();
            let mut reqs = tokio::task::JoinSet::new();
            for k in 0..total {
                tokio::time::sleep_until(start + gap * k as u32).await;
                let (client, url, key, out) =
                    (client.clone(), url.clone(), key.clone(), out.clone());
                reqs.spawn(async move {
                    let sent = Instant::now();
                    let r = client.get(url).header("x-api-key", key).send().await;
                    let ok = match r {
                        Ok(r) => {
                            let s = r.status();
                            r.bytes().await.is_ok().then_some(s.is_success())
                        }
                        Err(_) => None,
                    };
                    let us = sent.elapsed().as_micros() as u64;
                    let mut o = out.lock().unwrap();
                    match ok {
                        Some(true) => o.0.push(us),
                        Some(false) => o.1 += 1,
                        None => o.2 += 1,
                    }
                });
                while reqs.try_join_next().is_some() {}
            }
            while reqs.join_next().await.is_some() {}
            let (mut lat, non2xx, errors) = std::mem::take(&mut *out.lock().unwrap());
            (
                path,
                json!({"n": lat.len(), "non2xx": non2xx, "errors": errors,
                       "rate_per_s": rate, "latency_ms": summary(&mut lat)}),
            )
        });
    }
    let mut paths = serde_json::Map::new();
    while let Some(r) = loops.join_next().await {
        let (path, v) = r?;
        paths.insert(path, v);
    }
    println!("{}", json!({"seconds": seconds, "paths": paths}));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| anyhow::anyhow!("missing argument {i}; see the file's doc comment"))
    };
    match arg(0)? {
        "report" => {
            report(
                arg(1)?,
                arg(2)?,
                arg(3)?.parse()?,
                arg(4)?.parse()?,
                arg(5)?.parse()?,
            )
            .await
        }
        "polls" => {
            polls(
                arg(1)?,
                arg(2)?,
                arg(3)?,
                arg(4)?.parse()?,
                arg(5)?.parse()?,
                arg(6)?.parse()?,
                arg(7)?,
            )
            .await
        }
        "probe" => {
            let rest = &args[4.min(args.len())..];
            anyhow::ensure!(
                !rest.is_empty() && rest.len().is_multiple_of(2),
                "probe takes RATE PATH pairs after SECONDS"
            );
            let routes = rest
                .chunks(2)
                .map(|c| Ok((c[0].parse::<f64>()?, c[1].clone())))
                .collect::<anyhow::Result<Vec<_>>>()?;
            probe(arg(1)?, arg(2)?, arg(3)?.parse()?, &routes).await
        }
        other => anyhow::bail!("unknown mode {other:?}; see the file's doc comment"),
    }
}
