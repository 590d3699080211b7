//! Load generator for `bench/scale.sh` (a benchmark, not a test).
//!
//! Creates `--n` instances through the given servers round-robin with
//! `--concurrency` requests in flight, then waits until every one of them
//! is `active`, and prints one JSON line: create throughput (requests per
//! second) and reconciler throughput (instances reaching `active` per
//! second, from the first create to the last activation), plus how many
//! were still short of `active` when the last create was answered.
//!
//! ```text
//! scale_bench --key KEY --n 2000 --concurrency 32 http://127.0.0.1:8080 [...]
//! ```

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

struct Args {
    key: String,
    n: usize,
    concurrency: usize,
    targets: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        key: String::new(),
        n: 1000,
        concurrency: 32,
        targets: vec![],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--key" => args.key = it.next().expect("--key VALUE"),
            "--n" => args.n = it.next().expect("--n N").parse().expect("--n N"),
            "--concurrency" => {
                args.concurrency = it.next().expect("--concurrency C").parse().expect("C")
            }
            url => args.targets.push(url.trim_end_matches('/').to_string()),
        }
    }
    assert!(!args.targets.is_empty(), "name at least one server URL");
    args
}

/// Counts the instances by status, asking the first server.
async fn count_active(http: &reqwest::Client, target: &str, key: &str) -> usize {
    let body: Value = http
        .get(format!("{target}/v1/instances"))
        .header("X-API-KEY", key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list body");
    body["instances"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["status"] == "active").count())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .unwrap();
    let started = Instant::now();
    let failures = futures::stream::iter(0..args.n)
        .map(|i| {
            let http = http.clone();
            let url = format!(
                "{}/v1/instances/create",
                args.targets[i % args.targets.len()]
            );
            let key = args.key.clone();
            async move {
                let res = http
                    .post(url)
                    .header("X-API-KEY", key)
                    .json(&json!({
                        "cloud": "massedcompute",
                        "region": "us-central-1",
                        "shade_instance_type": "A6000",
                        "shade_cloud": true,
                        "name": format!("bench-{i}"),
                    }))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => 0usize,
                    Ok(r) => {
                        eprintln!(
                            "create {i}: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        );
                        1
                    }
                    Err(e) => {
                        eprintln!("create {i}: {e}");
                        1
                    }
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .fold(0usize, |acc, f| async move { acc + f })
        .await;
    let created_in = started.elapsed();
    let active_at_end_of_creates = count_active(&http, &args.targets[0], &args.key).await;
    let want = args.n - failures;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if count_active(&http, &args.targets[0], &args.key).await >= want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instances never all became active"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_active_in = started.elapsed();
    println!(
        "{}",
        json!({
            "servers": args.targets.len(),
            "instances": args.n,
            "failed_creates": failures,
            "create_seconds": created_in.as_secs_f64(),
            "creates_per_second": args.n as f64 / created_in.as_secs_f64(),
            "backlog_when_creates_done": want.saturating_sub(active_at_end_of_creates),
            "all_active_seconds": all_active_in.as_secs_f64(),
            "activations_per_second": want as f64 / all_active_in.as_secs_f64(),
        })
    );
}
