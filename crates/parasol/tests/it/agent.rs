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
