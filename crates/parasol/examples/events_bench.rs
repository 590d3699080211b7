//! The events benchmark's load and measuring ends (bench/bench.py, steps
//! `webhooks` and `sse`): Python cannot take ten thousand deliveries a
//! second on this machine without becoming what is measured.
//!
//! ```text
//! events_bench receive ADDR
//!     Webhook receivers at /hook/0, /hook/1, ..., answering 204.
//!     Prints `receiver listening on http://ADDR`. GET /stats answers
//!     {"deliveries", "unique", "per_endpoint", "created_ms": [first, last],
//!     "lag_ms": {p50, p99, max}}
//!     over every delivery so far; POST /reset forgets them.
//! events_bench create BASE KEY PER_SECOND SECONDS BODY
//!     POSTs BODY to BASE/v1/instances/create at a fixed rate (open loop:
//!     a slow answer does not slow the sending), then prints one JSON line
//!     {"sent", "ok", "failed", "seconds"}.
//! events_bench sse BASE KEY CLIENTS SECONDS
//!     Opens CLIENTS streams of BASE/v1/events/stream, prints `connected N`
//!     once each has answered, keeps them open SECONDS more, then prints one
//!     JSON line {"clients", "events", "lag_ms": {...}, "cut"}.
//! ```
//!
//! Lag is the receiving moment minus the event's `created_at` (the moment
//! the server recorded it), both read from this machine's clock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// An event body's `created_at` (ms), and the milliseconds from it to now.
fn created_and_lag(body: &[u8]) -> Option<(i64, i64)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str()?).ok()?;
    let at = at.timestamp_millis();
    Some((at, chrono::Utc::now().timestamp_millis() - at))
}

fn lag_ms(body: &[u8]) -> Option<i64> {
    created_and_lag(body).map(|(_, lag)| lag)
}

fn summary(lags: &mut [i64]) -> Value {
    lags.sort_unstable();
    let at = |q: f64| {
        if lags.is_empty() {
            Value::Null
        } else {
            json!(lags[((lags.len() - 1) as f64 * q).round() as usize])
        }
    };
    json!({"p50": at(0.5), "p99": at(0.99), "max": at(1.0), "n": lags.len()})
}

#[derive(Default)]
struct Received {
    lags: Vec<i64>,
    /// The earliest and latest `created_at` received (ms): how fast the
    /// server recorded the events, whatever the load asked for.
    created: Option<(i64, i64)>,
    ids: HashSet<(usize, String)>,
    per_endpoint: Vec<u64>,
}

type Shared = Arc<Mutex<Received>>;

async fn hook(
    State(r): State<Shared>,
    Path(n): Path<usize>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> StatusCode {
    let seen = created_and_lag(&body);
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut r = r.lock().unwrap();
    if r.per_endpoint.len() <= n {
        r.per_endpoint.resize(n + 1, 0);
    }
    r.per_endpoint[n] += 1;
    r.ids.insert((n, id));
    if let Some((at, lag)) = seen {
        r.lags.push(lag);
        r.created = Some(r.created.map_or((at, at), |(a, b)| (a.min(at), b.max(at))));
    }
    StatusCode::NO_CONTENT
}

async fn stats(State(r): State<Shared>) -> Json<Value> {
    let mut r = r.lock().unwrap();
    let deliveries: u64 = r.per_endpoint.iter().sum();
    let unique = r.ids.len();
    let per_endpoint = r.per_endpoint.clone();
    Json(json!({
        "deliveries": deliveries,
        "unique": unique,
        "per_endpoint": per_endpoint,
        "created_ms": r.created.map(|(a, b)| json!([a, b])),
        "lag_ms": summary(&mut r.lags),
    }))
}

async fn reset(State(r): State<Shared>) -> StatusCode {
    *r.lock().unwrap() = Received::default();
    StatusCode::NO_CONTENT
}

async fn receive(addr: &str) -> anyhow::Result<()> {
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route("/hook/{n}", post(hook))
        .route("/stats", get(stats))
        .route("/reset", post(reset))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("receiver listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn create(
    base: &str,
    key: &str,
    per_second: f64,
    seconds: f64,
    body: &str,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/instances/create");
    let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while start.elapsed().as_secs_f64() < seconds {
        tick.tick().await;
        sent += 1;
        let (client, url, key, body) = (
            client.clone(),
            url.clone(),
            key.to_string(),
            body.to_string(),
        );
        let (ok, failed) = (ok.clone(), failed.clone());
        tasks.spawn(async move {
            let r = client
                .post(url)
                .header("x-api-key", key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let counter = match r {
                Ok(r) if r.status().is_success() => ok,
                _ => failed,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
    println!(
        "{}",
        json!({
            "sent": sent,
            "ok": ok.load(std::sync::atomic::Ordering::Relaxed),
            "failed": failed.load(std::sync::atomic::Ordering::Relaxed),
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// Reads one stream, pushing the lag of each event it carries; counts a
/// `resume` event (the server cutting a slow client) in `cut`.
async fn follow(
    mut res: reqwest::Response,
    lags: Arc<Mutex<Vec<i64>>>,
    cut: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        buf.extend_from_slice(&chunk);
        // Events end at a blank line.
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            if text.lines().any(|l| l == "event: resume") {
                cut.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            for line in text.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    if let Some(l) = lag_ms(data.as_bytes()) {
                        lags.lock().unwrap().push(l);
                    }
                }
            }
        }
    }
}

async fn sse(base: &str, key: &str, clients: usize, seconds: f64) -> anyhow::Result<()> {
    // One connection per stream, as browsers and most clients hold them.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let lags: Arc<Mutex<Vec<i64>>> = Arc::default();
    let cut = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut opened = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, key) = (
            client.clone(),
            format!("{base}/v1/events/stream"),
            key.to_string(),
        );
        opened.spawn(async move {
            let res = client.get(url).header("x-api-key", key).send().await?;
            anyhow::ensure!(
                res.status().is_success(),
                "stream answered {}",
                res.status()
            );
            Ok::<_, anyhow::Error>(res)
        });
    }
    let mut streams = tokio::task::JoinSet::new();
    while let Some(r) = opened.join_next().await {
        let res = r??;
        streams.spawn(follow(res, lags.clone(), cut.clone()));
    }
    println!("connected {clients}");
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let still_open = streams.len();
    streams.abort_all();
    let mut lags = std::mem::take(&mut *lags.lock().unwrap());
    println!(
        "{}",
        json!({
            "clients": clients,
            "still_open": still_open,
            "events": lags.len(),
            "lag_ms": summary(&mut lags),
            "cut": cut.load(std::sync::atomic::Ordering::Relaxed),
        })
    );
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
        "receive" => receive(arg(1)?).await,
        "create" => {
            create(
                arg(1)?,
                arg(2)?,
                arg(3)?.parse()?,
                arg(4)?.parse()?,
                arg(5)?,
            )
            .await
        }
        "sse" => sse(arg(1)?, arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?).await,
        other => anyhow::bail!("unknown mode {other:?}; see the file's doc comment"),
    }
}
