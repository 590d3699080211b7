//! The agent's server side (issue 26): the store's sample tables on the
//! backend PARASOL_TEST_BACKEND names, `POST /v1/agent/report` with every
//! kind of bad input, `GET /v1/instances/{id}/metrics`, and the sim's
//! simulated agent steered through `POST /admin/sim/agent`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use parasol::agent::{GpuSample, Report, Resolution};
use parasol::clock::Clock;
use parasol::store::{ReportOutcome, Store, MINUTE_MS};
use uuid::Uuid;

use crate::harness::{fresh_pg_database, Backend};

/// A fresh store of the backend under test, on a clock the test moves.
async fn store() -> (Store, Arc<Clock>, Option<tempfile::TempDir>) {
    let (url, dir) = match Backend::from_env() {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            (
                format!("sqlite://{}", dir.path().join("parasol.db").display()),
                Some(dir),
            )
        }
        Backend::Postgres => (fresh_pg_database().0, None),
    };
    let store = Store::open(&parasol::store::StoreOptions {
        url,
        max_connections: 2,
    })
    .await
    .unwrap();
    // Stopped, so that the times asserted are exact; on a minute.
    let clock = Arc::new(Clock::stopped_at(1_800_000_000_000));
    store.use_clock(clock.clone());
    (store, clock, dir)
}

/// An instance row in `status`, enough for the agent tables' checks.
async fn instance(store: &Store, status: &str) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO instances (id, account_id, cloud, region, shade_instance_type, status, \
         generation, doc, created_at, updated_at) VALUES ($1, $2, 'sim', 'r', 'A100', $3, 0, '{}', 0, 0)",
    )
    .bind(id.to_string())
    .bind(Uuid::new_v4().to_string())
    .bind(status)
    .execute(store.pool())
    .await
    .unwrap();
    id
}

fn gpu(index: u32, util: f64, xid: &[u32]) -> GpuSample {
    GpuSample {
        index,
        utilization_percent: util,
        memory_used_mib: 1000 + index as u64,
        memory_total_mib: 81559,
        temperature_c: Some(40.0 + index as f64),
        power_w: if index == 0 { None } else { Some(100.0) },
        ecc_uncorrectable: 0,
        xid: xid.to_vec(),
    }
}

fn report(id: Uuid, seq: i64, ssh: u32, gpus: Vec<GpuSample>) -> Report {
    Report {
        instance_id: id,
        seq,
        agent_version: "1".into(),
        uptime_s: 10,
        ssh_sessions: ssh,
        gpus,
    }
}

async fn accepted(store: &Store, r: Report) -> DateTime<Utc> {
    match store.insert_agent_report(&r, 2000).await.unwrap() {
        ReportOutcome::Accepted { at } => at,
        other => panic!("report refused: {other:?}"),
    }
}

#[tokio::test]
async fn the_store_refuses_replays_early_reports_and_revoked_instances() {
    let (store, clock, _dir) = store().await;
    let id = instance(&store, "active").await;
    let at = accepted(&store, report(id, 10, 0, vec![gpu(0, 5.0, &[])])).await;
    assert_eq!(at.timestamp_millis(), clock.now_ms());
    clock.advance(5000);
    assert_eq!(
        store
            .insert_agent_report(&report(id, 10, 0, vec![]), 2000)
            .await
            .unwrap(),
        ReportOutcome::Replay { last_seq: 10 }
    );
    accepted(&store, report(id, 11, 0, vec![])).await;
    clock.advance(500);
    assert_eq!(
        store
            .insert_agent_report(&report(id, 12, 0, vec![]), 2000)
            .await
            .unwrap(),
        ReportOutcome::TooSoon {
            retry_after_ms: 1500
        }
    );
    let seen = store.agent_seen(id).await.unwrap().unwrap();
    assert_eq!(seen.first_seen_at, at);
    assert_eq!(seen.last_seen_at.timestamp_millis(), clock.now_ms() - 500);
    for status in ["deleting", "deleted"] {
        let gone = instance(&store, status).await;
        assert_eq!(
            store
                .insert_agent_report(&report(gone, 1, 0, vec![]), 2000)
                .await
                .unwrap(),
            ReportOutcome::Revoked
        );
        assert!(store.agent_seen(gone).await.unwrap().is_none());
    }
    assert_eq!(
        store
            .insert_agent_report(&report(Uuid::new_v4(), 1, 0, vec![]), 2000)
            .await
            .unwrap(),
        ReportOutcome::Revoked
    );
}

/// Reports that arrive together are written together (a group at a
/// time, more than one group's worth here), each answered as if they had
/// been written one after another: a replay or an early second report of
/// the same instance in the same burst is refused against the first.
#[tokio::test]
async fn a_burst_of_reports_gets_each_report_its_own_answer() {
    let (store, clock, _dir) = store().await;
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(instance(&store, "active").await);
    }
    let gone = instance(&store, "deleted").await;
    let twice = ids[7];
    // The first of `twice`'s reports is taken; the others are replays of
    // it or come too soon after it, whichever group they land in.
    let mut burst: Vec<(Report, ReportOutcome)> = Vec::new();
    let at = clock.now();
    let ok = ReportOutcome::Accepted { at };
    let soon = ReportOutcome::TooSoon {
        retry_after_ms: 2000,
    };
    for (i, &id) in ids.iter().enumerate() {
        burst.push((
            report(id, 1, 0, vec![gpu(0, i as f64 / 10.0, &[])]),
            ok.clone(),
        ));
        if i == 100 {
            burst.push((
                report(twice, 1, 0, vec![]),
                ReportOutcome::Replay { last_seq: 1 },
            ));
            burst.push((report(gone, 1, 0, vec![]), ReportOutcome::Revoked));
            burst.push((report(twice, 2, 0, vec![]), soon.clone()));
        }
    }
    burst.push((
        report(twice, 0, 0, vec![]),
        ReportOutcome::Replay { last_seq: 1 },
    ));
    burst.push((report(Uuid::new_v4(), 1, 0, vec![]), ReportOutcome::Revoked));
    let answers = futures::future::join_all(
        burst
            .iter()
            .map(|(r, _)| store.insert_agent_report(r, 2000)),
    )
    .await;
    for ((r, want), got) in burst.iter().zip(answers) {
        assert_eq!(&got.unwrap(), want, "report {} of {}", r.seq, r.instance_id);
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agent_samples")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 300, "one raw sample per accepted report");
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT last_seq FROM agent_state")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(seqs.len(), 300);
    assert!(seqs.iter().all(|&s| s == 1), "{seqs:?}");
    let latest = store
        .agent_latest(chrono::Duration::minutes(1))
        .await
        .unwrap();
    let (_, sample) = latest.iter().find(|(id, _)| *id == ids[250]).unwrap();
    assert_eq!(sample.gpus[0].utilization_percent, 25.0);
    // Once the gap has passed, the next burst goes on from there.
    clock.advance(2000);
    let (next, other) = (report(twice, 3, 1, vec![]), report(ids[8], 2, 1, vec![]));
    let (a, b, c) = tokio::join!(
        store.insert_agent_report(&next, 2000),
        store.insert_agent_report(&next, 2000),
        store.insert_agent_report(&other, 2000),
    );
    let later = ReportOutcome::Accepted { at: clock.now() };
    assert_eq!(a.unwrap(), later);
    assert_eq!(b.unwrap(), ReportOutcome::Replay { last_seq: 3 });
    assert_eq!(c.unwrap(), later);
    let seen = store.agent_seen(twice).await.unwrap().unwrap();
    assert_eq!((seen.first_seen_at, seen.last_seen_at), (at, clock.now()));
}

/// More rows than one write job takes, many of them received in the same
/// millisecond: the fold and both deletions go job by job and miss none.
#[tokio::test]
async fn a_large_fleet_is_folded_and_aged_out_in_small_jobs() {
    let (store, clock, _dir) = store().await;
    let mut ids = Vec::new();
    for _ in 0..1200 {
        ids.push(instance(&store, "active").await);
    }
    for seq in 1..=2 {
        let burst: Vec<Report> = ids
            .iter()
            .map(|&id| report(id, seq, 0, vec![gpu(0, seq as f64, &[])]))
            .collect();
        for outcome in
            futures::future::join_all(burst.iter().map(|r| store.insert_agent_report(r, 2000)))
                .await
        {
            assert!(matches!(outcome.unwrap(), ReportOutcome::Accepted { .. }));
        }
        clock.advance(30_000);
    }
    clock.advance(2 * MINUTE_MS);
    let day = 86_400_000;
    let done = store
        .agent_downsample(clock.now_ms(), 5000, 0, 7 * day)
        .await
        .unwrap();
    assert_eq!((done.minutes, done.raw_deleted), (1200, 2400));
    let count = |table: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(store.pool())
                .await
                .unwrap()
        }
    };
    assert_eq!(count("agent_samples").await, 0);
    assert_eq!(count("agent_history").await, 1200);
    let window = store.agent_window(ids[599], clock.now() - chrono::Duration::minutes(10));
    assert_eq!(window.await.unwrap().samples, 2);
    clock.advance(8 * day);
    let done = store
        .agent_downsample(clock.now_ms(), 5000, 0, 7 * day)
        .await
        .unwrap();
    assert_eq!(done.history_deleted, 1200);
    assert_eq!(count("agent_history").await, 0);
    assert_eq!(
        count("agent_state").await,
        0,
        "silent for a week: forgotten"
    );
}

#[tokio::test]
async fn windows_and_samples_read_raw_and_history_alike() {
    let (store, clock, _dir) = store().await;
    let start = clock.now();
    let id = instance(&store, "active").await;
    let other = instance(&store, "active").await;
    // Minute 0: four reports, a busy GPU 1 once, an Xid on GPU 0.
    // Minute 1: two reports, one with a GPU missing and two SSH sessions.
    let plan: Vec<(i64, u32, Vec<GpuSample>)> = vec![
        (0, 0, vec![gpu(0, 10.0, &[]), gpu(1, 20.0, &[])]),
        (15_000, 0, vec![gpu(0, 30.0, &[79]), gpu(1, 90.0, &[])]),
        (30_000, 1, vec![gpu(0, 10.0, &[]), gpu(1, 20.0, &[])]),
        (45_000, 0, vec![gpu(0, 10.0, &[]), gpu(1, 30.0, &[])]),
        (60_000, 2, vec![gpu(0, 1.0, &[])]),
        (75_000, 0, vec![gpu(0, 3.0, &[48]), gpu(1, 4.0, &[])]),
    ];
    let mut seq = 100;
    for (offset, ssh, gpus) in &plan {
        let target = start.timestamp_millis() + offset;
        clock.advance(target - clock.now_ms());
        seq += 1;
        accepted(&store, report(id, seq, *ssh, gpus.clone())).await;
        accepted(&store, report(other, seq, 9, vec![gpu(0, 100.0, &[94])])).await;
    }
    let check = |w: parasol::agent::AgentWindow| {
        assert_eq!(w.samples, 6);
        assert_eq!(w.first_at, Some(start));
        assert_eq!(
            w.last_at.map(|t| t.timestamp_millis()),
            Some(start.timestamp_millis() + 75_000)
        );
        assert_eq!(w.max_gpu_utilization_percent, Some(90.0));
        assert_eq!(w.max_ssh_sessions, 2);
        assert_eq!(w.min_gpu_count, Some(1));
        assert_eq!(w.xids, vec![48, 79]);
    };
    let raw_window = store.agent_window(id, start).await.unwrap();
    check(raw_window.clone());
    // The last two reports only.
    let late = store
        .agent_window(id, start + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(late.samples, 2);
    assert_eq!(late.max_gpu_utilization_percent, Some(4.0));
    assert_eq!(late.xids, vec![48]);
    let raw = store
        .agent_samples(id, start, Resolution::Raw)
        .await
        .unwrap();
    assert_eq!(raw.len(), 6);
    assert_eq!(raw[1].gpus[0].xid, vec![79]);
    assert_eq!(raw[1].gpus[1].utilization_percent, 90.0);
    assert_eq!(raw[0].gpus[0].power_w, None);
    assert_eq!(raw[4].ssh_sessions, 2);

    // Minutes before folding: made from the raw samples on the fly.
    let by_minute = store
        .agent_samples(id, start, Resolution::Minute)
        .await
        .unwrap();
    let minute_zero = |s: &[parasol::agent::Sample]| {
        assert_eq!(s.len(), 2, "{s:#?}");
        assert_eq!(s[0].at, start);
        assert_eq!(s[0].ssh_sessions, 1);
        assert_eq!(s[0].gpus[1].utilization_percent, 40.0);
        assert_eq!(s[0].gpus[0].utilization_percent, 15.0);
        assert_eq!(s[0].gpus[0].xid, vec![79]);
        assert_eq!(s[0].gpus[1].memory_used_mib, 1001);
        assert_eq!(s[1].ssh_sessions, 2);
        assert_eq!(s[1].gpus[0].utilization_percent, 2.0);
    };
    minute_zero(&by_minute);

    // Fold both minutes and drop every raw sample: the history alone
    // answers the same window.
    clock.advance(2 * MINUTE_MS);
    let done = store
        .agent_downsample(clock.now_ms(), 5000, 0, 7 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(done.minutes, 4, "two minutes of two instances");
    assert_eq!(done.raw_deleted, 12);
    assert!(!done.behind);
    assert!(store
        .agent_samples(id, start, Resolution::Raw)
        .await
        .unwrap()
        .is_empty());
    check(store.agent_window(id, start).await.unwrap());
    minute_zero(
        &store
            .agent_samples(id, start, Resolution::Minute)
            .await
            .unwrap(),
    );
    // A second pass finds nothing new to fold.
    let again = store
        .agent_downsample(clock.now_ms(), 5000, 0, 7 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(again.minutes, 0);

    // New reports after the fold: the window joins history and raw.
    clock.advance(3000);
    accepted(&store, report(id, 1000, 0, vec![gpu(0, 50.0, &[])])).await;
    let joined = store.agent_window(id, start).await.unwrap();
    assert_eq!(joined.samples, 7);
    assert_eq!(joined.max_gpu_utilization_percent, Some(90.0));

    let latest = store
        .agent_latest(chrono::Duration::seconds(60))
        .await
        .unwrap();
    let mine = latest.iter().find(|(i, _)| *i == id).unwrap();
    assert_eq!(mine.1.gpus[0].utilization_percent, 50.0);
    // The other instance last reported over a minute ago.
    assert!(latest.iter().all(|(i, _)| *i != other));

    // The history ages out.
    clock.advance(8 * 86_400_000);
    let aged = store
        .agent_downsample(clock.now_ms(), 5000, 3_600_000, 7 * 86_400_000)
        .await
        .unwrap();
    // The four minutes, and the one folded from the last report.
    assert_eq!(aged.history_deleted, 5);
    let empty = store.agent_window(id, start).await.unwrap();
    assert_eq!(empty.samples, 0);
    assert_eq!(empty.max_gpu_utilization_percent, None);
    assert!(store.agent_seen(other).await.unwrap().is_none());
}

// ---- The HTTP routes and the sim's agent, on a real server ----

use serde_json::{json, Value};

use crate::harness::{wait_samples, Opts, Server};

/// A server on the test clock whose launches carry no agent, so that the
/// sim's simulated agents stay silent and the test is the only reporter.
fn quiet_server() -> Server {
    Server::start(Opts::default().args(&["--test-clock", "--no-agent"]))
}

/// The agent token of `instance`, derived as the server derives it from
/// the secret in its store (the API never shows one).
async fn token_of(s: &Server, instance: &str) -> String {
    let store = s.store().await;
    let secret = store.setting("agent_secret").await.unwrap().unwrap();
    store.close().await;
    parasol::agent::AgentKeys::from_secret(parasol::providers::clouds::Secret::new(secret))
        .token(Uuid::parse_str(instance).unwrap())
        .expose()
        .to_string()
}

/// POSTs a report; answers its status, `Retry-After` and JSON body (if any).
async fn post_report(
    s: &Server,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/agent/report", s.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = res.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, retry, body)
}

fn wire(instance: &str, seq: i64, gpus: usize, util: f64) -> Value {
    json!({
        "instance_id": instance, "seq": seq, "agent_version": "1", "uptime_s": 1234,
        "ssh_sessions": 1,
        "gpus": (0..gpus).map(|i| json!({
            "index": i, "utilization_percent": util, "memory_used_mib": 1024 + i,
            "memory_total_mib": 49140, "temperature_c": 38, "power_w": 119.5,
            "ecc_uncorrectable": 0, "xid": if i == 0 { json!([79]) } else { json!([]) },
        })).collect::<Vec<_>>(),
    })
}

async fn advance(s: &Server, seconds: i64) {
    s.admin()
        .post("/admin/clock/advance", json!({"seconds": seconds}))
        .await
        .expect(200);
}

#[tokio::test]
async fn bad_reports_are_refused_naming_the_problem_and_good_ones_are_served_back() {
    let s = quiet_server();
    let c = s.admin();
    let id = c.create_instance("watched").await;
    let info = c.wait_status(&id, "active").await;
    let gpus = info["configuration"]["num_gpus"].as_u64().unwrap() as usize;
    let other = c.create_instance("other").await;
    c.wait_status(&other, "active").await;
    let token = token_of(&s, &id).await;
    let body = |seq, n, util| wire(&id, seq, n, util).to_string().into_bytes();

    // Tokens: none, malformed, another instance's, a forged one.
    let good = body(100, gpus, 42.0);
    assert_eq!(post_report(&s, None, good.clone()).await.0, 401);
    assert_eq!(post_report(&s, Some("nonsense"), good.clone()).await.0, 401);
    let others = token_of(&s, &other).await;
    let (status, _, err) = post_report(&s, Some(&others), good.clone()).await;
    assert_eq!(status, 401, "{err}");
    let forged = format!("pa_{}", "A".repeat(43));
    assert_eq!(post_report(&s, Some(&forged), good.clone()).await.0, 401);

    // Malformed, out of range, oversized, more GPUs than the type has.
    let (status, _, err) = post_report(&s, Some(&token), b"{not json".to_vec()).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("body")),
        "{err}"
    );
    let mut bad = wire(&id, 100, gpus, 42.0);
    bad["gpus"][0]["utilization_percent"] = json!(250);
    let (status, _, err) = post_report(&s, Some(&token), bad.to_string().into_bytes()).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("gpus[0].utilization_percent")),
        "{err}"
    );
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("utilization_percent"));
    let mut huge = wire(&id, 100, gpus, 42.0);
    huge["agent_version"] = json!("x".repeat(70 * 1024));
    assert_eq!(
        post_report(&s, Some(&token), huge.to_string().into_bytes())
            .await
            .0,
        413
    );
    let (status, _, err) = post_report(&s, Some(&token), body(100, gpus + 1, 42.0)).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("gpus")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("type has {gpus}")),
        "{err}"
    );

    // Accepted; replayed; too soon; accepted again once the clock moved.
    let (status, _, err) = post_report(&s, Some(&token), good.clone()).await;
    assert_eq!(status, 204, "{err}");
    let (status, _, err) = post_report(&s, Some(&token), good.clone()).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (409, Some("seq")),
        "{err}"
    );
    let (status, retry, _) = post_report(&s, Some(&token), body(101, gpus, 7.0)).await;
    assert_eq!(status, 429);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    advance(&s, 3).await;
    assert_eq!(
        post_report(&s, Some(&token), body(101, gpus, 7.0)).await.0,
        204
    );

    // The metrics API answers the numbers posted, to the instance's
    // account only.
    let m = c
        .get(&format!("/v1/instances/{id}/metrics"))
        .await
        .expect(200);
    assert_eq!(m["instance_id"], json!(id));
    assert_eq!(m["agent"]["version"], "1");
    let samples = m["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2, "{m:#}");
    assert_eq!(samples[0]["ssh_sessions"], 1);
    let g = &samples[0]["gpus"][0];
    assert_eq!(g["utilization_percent"], 42.0);
    assert_eq!(g["memory_used_mib"], 1024);
    assert_eq!(g["memory_total_mib"], 49140);
    assert_eq!(g["temperature_c"], 38.0);
    assert_eq!(g["power_w"], 119.5);
    assert_eq!(g["xid"], json!([79]));
    assert_eq!(samples[1]["gpus"][0]["utilization_percent"], 7.0);
    let minutes = c
        .get(&format!("/v1/instances/{id}/metrics?resolution=1m"))
        .await
        .expect(200);
    let avg = minutes["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["gpus"][0]["utilization_percent"].as_f64().unwrap())
        .collect::<Vec<_>>();
    assert!(avg == vec![24.5] || avg == vec![42.0, 7.0], "{minutes:#}");
    let future = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let none = c
        .get(&format!(
            "/v1/instances/{id}/metrics?since={}",
            urlencode(&future)
        ))
        .await
        .expect(200);
    assert_eq!(none["samples"], json!([]));
    let err = c
        .get(&format!("/v1/instances/{id}/metrics?since=yesterday"))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "since");
    let err = c
        .get(&format!("/v1/instances/{id}/metrics?resolution=5m"))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "resolution");
    let stranger = s.client(&s.new_account("stranger"));
    stranger
        .get(&format!("/v1/instances/{id}/metrics"))
        .await
        .expect_error(404, "not_found");
    let silent = c
        .get(&format!("/v1/instances/{other}/metrics"))
        .await
        .expect(200);
    assert_eq!(silent["agent"], Value::Null);

    // Deleting the instance revokes its token.
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    advance(&s, 3).await;
    let (status, _, err) = post_report(&s, Some(&token), body(102, gpus, 1.0)).await;
    assert_eq!(status, 401, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));

    // No token in the log, and no report in the audit log.
    assert!(!s.log().contains(&token));
    assert!(!s.log().contains(&token[3..]));
    let audit = c.get("/v1/admin/audit").await.expect(200);
    assert!(!audit.to_string().contains("/v1/agent/report"), "{audit:#}");
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn the_sim_agent_reports_on_the_test_clock_and_is_steered() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let c = s.admin();
    let id = c.create_instance("simulated").await;
    let info = c.wait_status(&id, "active").await;
    let gpus = info["configuration"]["num_gpus"].as_u64().unwrap() as usize;
    let first = wait_samples(&c, &id, "a first report", |s| !s.is_empty()).await;
    let g = first[0]["gpus"].as_array().unwrap();
    assert_eq!(g.len(), gpus);
    for g in g {
        let util = g["utilization_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&util));
        assert!(g["memory_used_mib"].as_u64() <= g["memory_total_mib"].as_u64());
        assert!(g["power_w"].as_f64().unwrap() > 0.0);
    }
    let m = c
        .get(&format!("/v1/instances/{id}/metrics"))
        .await
        .expect(200);
    assert_eq!(m["agent"]["version"], "sim-1");
    // No second report until the interval passes on the server's clock.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        c.get(&format!("/v1/instances/{id}/metrics"))
            .await
            .expect(200)["samples"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Steered: idle GPUs, two sessions, an ECC count and one Xid.
    let steered = c
        .post(
            "/admin/sim/agent",
            json!({"instance_id": id, "gpu_utilization_percent": 0, "ssh_sessions": 2,
                   "ecc_uncorrectable": 3, "xid": 79, "reporting": true}),
        )
        .await
        .expect(200);
    assert_eq!(steered["steering"]["xid"], json!([79]));
    advance(&s, 15).await;
    let samples = wait_samples(&c, &id, "the steered report", |s| s.len() >= 2).await;
    let last = &samples[1];
    assert_eq!(last["ssh_sessions"], 2);
    for g in last["gpus"].as_array().unwrap() {
        assert_eq!(g["utilization_percent"], 0.0);
        assert_eq!(g["ecc_uncorrectable"], 3);
        assert_eq!(g["xid"], json!([79]));
    }
    // An Xid is an event: the next report no longer carries it.
    advance(&s, 15).await;
    let samples = wait_samples(&c, &id, "the report after", |s| s.len() >= 3).await;
    assert_eq!(samples[2]["gpus"][0]["xid"], json!([]));
    assert_eq!(samples[2]["gpus"][0]["ecc_uncorrectable"], 3);

    // Silenced: no report however far the clock moves.
    c.post(
        "/admin/sim/agent",
        json!({"instance_id": id, "reporting": false}),
    )
    .await
    .expect(200);
    advance(&s, 60).await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let m = c
        .get(&format!("/v1/instances/{id}/metrics"))
        .await
        .expect(200);
    assert_eq!(m["samples"].as_array().unwrap().len(), 3, "{m:#}");

    // Back to the simulation: reports resume, busy again.
    c.post(
        "/admin/sim/agent",
        json!({"instance_id": id, "gpu_utilization_percent": null, "reporting": true}),
    )
    .await
    .expect(200);
    wait_samples(&c, &id, "reports to resume", |s| s.len() >= 4).await;

    // Bad steering is refused naming the field; only admins steer.
    let err = c
        .post(
            "/admin/sim/agent",
            json!({"instance_id": id, "gpu_utilization_percent": 150, "reporting": true}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "gpu_utilization_percent");
    let err = c
        .post("/admin/sim/agent", json!({"instance_id": id}))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "reporting");
    c.post(
        "/admin/sim/agent",
        json!({"instance_id": Uuid::new_v4(), "reporting": true}),
    )
    .await
    .expect_error(404, "not_found");
    let user = s.client(&s.new_account("user"));
    user.post(
        "/admin/sim/agent",
        json!({"instance_id": id, "reporting": true}),
    )
    .await
    .expect_error(403, "forbidden");
}

#[tokio::test]
async fn the_reconciler_folds_reports_into_the_history_and_ages_them_out() {
    let s = Server::start(Opts::default().args(&[
        "--test-clock",
        "--no-agent",
        "--agent-raw-retention-minutes",
        "5",
        "--agent-history-days",
        "1",
    ]));
    let c = s.admin();
    let id = c.create_instance("aging").await;
    let info = c.wait_status(&id, "active").await;
    let gpus = info["configuration"]["num_gpus"].as_u64().unwrap() as usize;
    let token = token_of(&s, &id).await;
    for (seq, util) in [(1, 10.0), (2, 30.0)] {
        let body = wire(&id, seq, gpus, util).to_string().into_bytes();
        assert_eq!(post_report(&s, Some(&token), body).await.0, 204);
        advance(&s, 3).await;
    }
    let raw = c
        .get(&format!("/v1/instances/{id}/metrics"))
        .await
        .expect(200);
    let first_at = raw["samples"][0]["at"].as_str().unwrap().to_string();
    let since = urlencode(
        &(DateTime::parse_from_rfc3339(&first_at).unwrap() - chrono::Duration::minutes(2))
            .to_rfc3339(),
    );
    // Past the raw retention: the reports are gone, their minutes stay.
    advance(&s, 10 * 60).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = c
            .get(&format!("/v1/instances/{id}/metrics?since={since}"))
            .await
            .expect(200);
        if m["samples"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "raw samples kept: {m:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let minutes = c
        .get(&format!(
            "/v1/instances/{id}/metrics?since={since}&resolution=1m"
        ))
        .await
        .expect(200);
    let samples = minutes["samples"].as_array().unwrap();
    let total: usize = samples.len();
    assert!((1..=2).contains(&total), "{minutes:#}");
    let utils: Vec<f64> = samples
        .iter()
        .map(|m| m["gpus"][0]["utilization_percent"].as_f64().unwrap())
        .collect();
    assert!(
        utils == vec![20.0] || utils == vec![10.0, 30.0],
        "{utils:?}"
    );
    // Past the history's retention too.
    advance(&s, 2 * 86_400).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = c
            .get(&format!(
                "/v1/instances/{id}/metrics?since={since}&resolution=1m"
            ))
            .await
            .expect(200);
        if m["samples"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "history kept: {m:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
