//! `GET /metrics`: Prometheus text format, without authentication (like
//! `/healthz`): it carries counts only, never an id, a name or a key.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use parasol_api::Status;

use super::AppRef;
use crate::metrics::{self, header, sample};

/// The text exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub async fn scrape(State(app): State<AppRef>) -> Response {
    let mut out = String::new();
    metrics::global().render(&mut out);

    // Stored state is counted at scrape time, so it cannot drift from the
    // store; a store that does not answer is reported as such.
    let counts = app.store.count_instances_by_status().await;
    header(
        &mut out,
        "parasol_store_up",
        "Whether the store answered this scrape's queries.",
        "gauge",
    );
    sample(&mut out, "parasol_store_up", &[], u8::from(counts.is_ok()));
    if let Ok(counts) = counts {
        by_status(
            &mut out,
            "parasol_instances",
            "Instances in the store by status (deleted ones included).",
            &counts,
        );
    }

    if let Ok(counts) = app.store.count_clusters_by_status().await {
        by_status(
            &mut out,
            "parasol_clusters",
            "Clusters in the store by status (deleted ones included).",
            &counts,
        );
    }

    fleet(&app, &mut out).await;

    let s = &app.reconciler.stats;
    let task = [("task", "instances")];
    for (name, help, v) in [
        (
            "parasol_reconciler_runs_total",
            "Reconciler passes finished.",
            &s.runs,
        ),
        (
            "parasol_reconciler_run_errors_total",
            "Reconciler passes that failed (the store did not answer).",
            &s.run_errors,
        ),
        (
            "parasol_reconciler_steps_total",
            "Steps taken (one per due object per pass).",
            &s.steps,
        ),
        (
            "parasol_reconciler_transitions_total",
            "Status transitions written.",
            &s.transitions,
        ),
        (
            "parasol_reconciler_lost_races_total",
            "Steps dropped because another writer got there first.",
            &s.lost_races,
        ),
        (
            "parasol_reconciler_provider_errors_total",
            "Provider calls that failed or timed out.",
            &s.provider_errors,
        ),
    ] {
        header(&mut out, name, help, "counter");
        sample(&mut out, name, &task, v.load(Ordering::Relaxed));
    }
    header(
        &mut out,
        "parasol_reconciler_last_run_timestamp_seconds",
        "When the last reconciler pass finished (seconds since the epoch).",
        "gauge",
    );
    sample(
        &mut out,
        "parasol_reconciler_last_run_timestamp_seconds",
        &task,
        s.last_run_ms.load(Ordering::Relaxed) as f64 / 1000.0,
    );
    ([(CONTENT_TYPE, TEXT_FORMAT)], out).into_response()
}

/// Utilisation buckets of the fleet gauge: a GPU falls in the first whose
/// upper bound (percent, inclusive) it does not exceed.
const UTILIZATION_BUCKETS: &[(f64, &str)] = &[
    (5.0, "0-5"),
    (25.0, "5-25"),
    (50.0, "25-50"),
    (75.0, "50-75"),
    (f64::INFINITY, "75-100"),
];

/// A GPU at or below this utilisation (percent) counts as idle in the
/// fleet gauge (the idle policies' default threshold).
const IDLE_GPU_PERCENT: f64 = 5.0;

/// The fleet gauges from the agents' latest reports: GPUs by utilisation
/// bucket, idle GPUs and active instances by health. Each has a fixed set
/// of series, never one per instance.
async fn fleet(app: &AppRef, out: &mut String) {
    let fresh = crate::lifecycle::health::HEARTBEAT_DEGRADED;
    if let Ok(latest) = app.store.agent_latest(fresh).await {
        let mut buckets = [0u64; UTILIZATION_BUCKETS.len()];
        let mut idle = 0u64;
        for (_, s) in &latest {
            for g in &s.gpus {
                let u = g.utilization_percent;
                if let Some(i) = UTILIZATION_BUCKETS.iter().position(|(le, _)| u <= *le) {
                    buckets[i] += 1;
                }
                if u <= IDLE_GPU_PERCENT {
                    idle += 1;
                }
            }
        }
        let name = "parasol_fleet_gpus";
        header(
            out,
            name,
            "GPUs by utilisation (percent) in their agent's latest report of the last 2 minutes.",
            "gauge",
        );
        for ((_, label), n) in UTILIZATION_BUCKETS.iter().zip(buckets) {
            sample(out, name, &[("utilization", label)], n);
        }
        let name = "parasol_fleet_idle_gpus";
        header(
            out,
            name,
            "GPUs at or below 5 % utilisation in their agent's latest report of the last 2 minutes.",
            "gauge",
        );
        sample(out, name, &[], idle);
    }
    if let Ok(counts) = app.store.count_active_by_health().await {
        let name = "parasol_instances_by_health";
        header(
            out,
            name,
            "Active instances by health, as the reconciler last evaluated it.",
            "gauge",
        );
        for h in parasol_api::HealthStatus::ALL {
            let n: i64 = counts.iter().filter(|(s, _)| *s == h).map(|(_, n)| n).sum();
            sample(out, name, &[("health", h.as_str())], n);
        }
    }
}

/// A gauge with one sample per status, zeros included, so that a status
/// emptying out reads 0 rather than vanishing.
fn by_status(out: &mut String, name: &str, help: &str, counts: &[(Status, i64)]) {
    header(out, name, help, "gauge");
    for st in Status::ALL {
        let n = counts
            .iter()
            .filter(|(s, _)| *s == st)
            .map(|(_, n)| n)
            .sum::<i64>();
        sample(out, name, &[("status", st.as_str())], n);
    }
}
