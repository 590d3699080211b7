//! What instances' agents report (crate::agent): raw samples, kept for a
//! short while, and a 1-minute history made from them, kept for days.
//!
//! - `agent_state`: one row per instance that ever reported: first and
//!   last report, version, the last accepted `seq` (replays are refused
//!   against it) and the last sample itself (fleet gauges read only this).
//! - `agent_samples`: one row per accepted report. Its GPUs are a compact
//!   JSON array; beside them the few aggregates windows ask about (the
//!   busiest GPU, the GPU count, the worst ECC count, the Xids), so that a
//!   window is one aggregate query, not a decode of every row.
//! - `agent_history`: one row per instance and minute, with per-GPU
//!   average and maximum utilisation, and the same aggregates.
//!
//! A periodic step ([`Store::agent_downsample`]) folds complete minutes of
//! raw samples into the history, then deletes raw samples past their
//! retention and history past its own. Two settings rows say how far it
//! got: every minute before `agent_downsampled_until` is in the history,
//! and every raw sample from `agent_raw_from` on is still there, which is
//! never later than the former. A window reads raw samples from
//! `agent_raw_from` on and history before it, so it is exact at full
//! resolution where that exists. Both tables are bounded per instance: the
//! ingestion's rate limit bounds raw rows per hour, the history has one
//! row per minute, and both are deleted by age.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::{marks, Step, Store, StoreResult};
use crate::agent::{AgentSeen, AgentWindow, GpuSample, Report, Resolution, Sample};
use crate::clock::from_millis;

/// One minute, in milliseconds.
pub const MINUTE_MS: i64 = 60_000;

/// Most samples one [`Store::agent_samples`] answers (a week of minutes
/// fits; so does the raw retention's worth at the fastest report rate).
pub const MAX_SAMPLES: i64 = 7 * 1440;

/// Most instances [`Store::agent_latest`] answers.
pub const MAX_LATEST: i64 = 100_000;

/// Settings rows of the downsampling's progress (see the module doc).
const DOWNSAMPLED_UNTIL: &str = "agent_downsampled_until";
const RAW_FROM: &str = "agent_raw_from";

/// Most span of raw samples one downsampling pass folds, so that a pass
/// after a long pause reads a bounded amount; the next pass goes on.
const FOLD_SPAN_MS: i64 = 10 * MINUTE_MS;

/// Rows per multi-row INSERT of history (12 parameters each).
const INSERT_CHUNK: usize = 200;

/// Rows per write job when raw samples and history age out.
const DELETE_CHUNK: i64 = 500;

/// History rows per write job of the downsampling: a report that queues
/// behind one of these jobs waits for a hundred rows, not thousands (the
/// writer is single; see BENCHMARKS.md, "Agents in").
const JOB_CHUNK: usize = 100;

/// How the store answers a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Kept, received at this time.
    Accepted { at: DateTime<Utc> },
    /// The instance is unknown, being deleted or deleted: its token is
    /// revoked.
    Revoked,
    /// `seq` is not above the last accepted one.
    Replay { last_seq: i64 },
    /// Too soon after the last accepted report.
    TooSoon { retry_after_ms: i64 },
}

/// What one downsampling pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Downsampled {
    /// History rows written.
    pub minutes: u64,
    /// Raw samples deleted past their retention.
    pub raw_deleted: u64,
    /// History rows deleted past their retention.
    pub history_deleted: u64,
    /// Whether raw samples are left that a next pass should fold now.
    pub behind: bool,
}

/// A GPU as a raw row stores it: `[index, utilization, memory used,
/// memory total, temperature, power, ECC, [xid]]`.
#[derive(Debug, Serialize, Deserialize)]
struct RawGpu(u32, f64, u64, u64, Option<f64>, Option<f64>, u64, Vec<u32>);

/// A GPU as a history row stores it: `[index, average utilization,
/// maximum utilization, maximum memory used, memory total, maximum
/// temperature, average power, maximum ECC, [xid]]`.
#[derive(Debug, Serialize, Deserialize)]
struct MinuteGpu(
    u32,
    f64,
    f64,
    u64,
    u64,
    Option<f64>,
    Option<f64>,
    u64,
    Vec<u32>,
);

fn raw_gpus(gpus: &[GpuSample]) -> String {
    let rows: Vec<RawGpu> = gpus
        .iter()
        .map(|g| {
            RawGpu(
                g.index,
                g.utilization_percent,
                g.memory_used_mib,
                g.memory_total_mib,
                g.temperature_c,
                g.power_w,
                g.ecc_uncorrectable,
                g.xid.clone(),
            )
        })
        .collect();
    serde_json::to_string(&rows).expect("numbers and lists serialize")
}

fn decode_raw_gpus(s: &str) -> StoreResult<Vec<GpuSample>> {
    let rows: Vec<RawGpu> = serde_json::from_str(s)?;
    Ok(rows
        .into_iter()
        .map(
            |RawGpu(index, util, used, total, temp, power, ecc, xid)| GpuSample {
                index,
                utilization_percent: util,
                memory_used_mib: used,
                memory_total_mib: total,
                temperature_c: temp,
                power_w: power,
                ecc_uncorrectable: ecc,
                xid,
            },
        )
        .collect())
}

/// Utilisation as the aggregate columns keep it: hundredths of a percent,
/// so the schema stays integers only.
fn centi(percent: f64) -> i64 {
    (percent * 100.0).round() as i64
}

fn xids_text(xids: &BTreeSet<u32>) -> Option<String> {
    (!xids.is_empty()).then(|| {
        xids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn parse_xids(s: Option<String>, into: &mut BTreeSet<u32>) {
    for x in s.iter().flat_map(|s| s.split(',')) {
        if let Ok(x) = x.trim().parse() {
            into.insert(x);
        }
    }
}

fn uuid_of(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| super::StoreError::Other(format!("corrupt instance id: {e}")))
}

/// One GPU's minute, being folded.
#[derive(Debug, Default)]
struct GpuFold {
    n: u64,
    util_sum: f64,
    util_max: f64,
    mem_max: u64,
    total: u64,
    temp_max: Option<f64>,
    power_sum: f64,
    power_n: u64,
    ecc_max: u64,
    xids: BTreeSet<u32>,
}

/// One instance's minute, being folded from its raw samples.
#[derive(Debug, Default)]
struct MinuteFold {
    samples: u64,
    first_at: i64,
    last_at: i64,
    max_ssh: i64,
    min_gpus: i64,
    max_util: i64,
    max_ecc: i64,
    xids: BTreeSet<u32>,
    gpus: BTreeMap<u32, GpuFold>,
}

impl MinuteFold {
    fn add(&mut self, at_ms: i64, ssh: i64, gpus: &[GpuSample]) {
        if self.samples == 0 {
            self.first_at = at_ms;
            self.min_gpus = gpus.len() as i64;
        }
        self.samples += 1;
        self.first_at = self.first_at.min(at_ms);
        self.last_at = self.last_at.max(at_ms);
        self.max_ssh = self.max_ssh.max(ssh);
        self.min_gpus = self.min_gpus.min(gpus.len() as i64);
        for g in gpus {
            self.max_util = self.max_util.max(centi(g.utilization_percent));
            self.max_ecc = self.max_ecc.max(g.ecc_uncorrectable as i64);
            self.xids.extend(g.xid.iter().copied());
            let f = self.gpus.entry(g.index).or_default();
            f.n += 1;
            f.util_sum += g.utilization_percent;
            f.util_max = f.util_max.max(g.utilization_percent);
            f.mem_max = f.mem_max.max(g.memory_used_mib);
            f.total = f.total.max(g.memory_total_mib);
            f.temp_max = match (f.temp_max, g.temperature_c) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(p) = g.power_w {
                f.power_sum += p;
                f.power_n += 1;
            }
            f.ecc_max = f.ecc_max.max(g.ecc_uncorrectable);
            f.xids.extend(g.xid.iter().copied());
        }
    }

    fn gpus(&self) -> Vec<MinuteGpu> {
        self.gpus
            .iter()
            .map(|(&i, f)| {
                MinuteGpu(
                    i,
                    round2(f.util_sum / f.n.max(1) as f64),
                    f.util_max,
                    f.mem_max,
                    f.total,
                    f.temp_max,
                    (f.power_n > 0).then(|| round2(f.power_sum / f.power_n as f64)),
                    f.ecc_max,
                    f.xids.iter().copied().collect(),
                )
            })
            .collect()
    }

    fn sample(&self, minute_ms: i64) -> Sample {
        Sample {
            at: from_millis(minute_ms),
            ssh_sessions: self.max_ssh as u32,
            gpus: self.gpus().into_iter().map(minute_gpu_sample).collect(),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn minute_gpu_sample(g: MinuteGpu) -> GpuSample {
    let MinuteGpu(index, avg, _max, mem, total, temp, power, ecc, xid) = g;
    GpuSample {
        index,
        utilization_percent: avg,
        memory_used_mib: mem,
        memory_total_mib: total,
        temperature_c: temp,
        power_w: power,
        ecc_uncorrectable: ecc,
        xid,
    }
}

fn floor_minute(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// A history row being written: instance, minute, its fold, its GPUs.
type MinuteRow = (String, i64, std::sync::Arc<MinuteFold>, String);

/// Writes history rows in multi-row INSERTs; a minute already there is
/// kept as it is.
async fn insert_minutes(conn: &mut sqlx::AnyConnection, rows: &[MinuteRow]) -> StoreResult<()> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let values = (0..chunk.len())
            .map(|i| format!("({})", marks(i * 12 + 1, 12)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO agent_history (instance_id, minute_ms, samples, first_at, last_at, \
             max_ssh, min_gpu_count, max_gpu_count, max_util, max_ecc, xids, gpus) \
             VALUES {values} ON CONFLICT (instance_id, minute_ms) DO NOTHING"
        );
        let mut q = sqlx::query(&sql);
        for (id, m, f, gpus) in chunk {
            q = q
                .bind(id.clone())
                .bind(*m)
                .bind(f.samples as i64)
                .bind(f.first_at)
                .bind(f.last_at)
                .bind(f.max_ssh)
                .bind(f.min_gpus)
                .bind(f.gpus.len() as i64)
                .bind(f.max_util)
                .bind(f.max_ecc)
                .bind(xids_text(&f.xids))
                .bind(gpus.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Most reports written as one job: a few hundred bind parameters a
/// statement (8 a sample), far below SQLite's and PostgreSQL's limits.
const REPORT_GROUP: usize = 200;

/// A report as its rows store it, waiting to be written.
#[derive(Debug)]
pub(crate) struct PendingReport {
    id: String,
    seq: i64,
    version: String,
    ssh: i64,
    gpus: String,
    gpu_count: i64,
    max_util: i64,
    max_ecc: i64,
    xids: Option<String>,
    min_gap_ms: i64,
}

impl PendingReport {
    fn new(report: &Report, min_gap_ms: i64) -> PendingReport {
        PendingReport {
            id: report.instance_id.to_string(),
            seq: report.seq,
            version: report.agent_version.clone(),
            ssh: i64::from(report.ssh_sessions),
            gpus: raw_gpus(&report.gpus),
            gpu_count: report.gpus.len() as i64,
            max_util: report
                .gpus
                .iter()
                .map(|g| centi(g.utilization_percent))
                .max()
                .unwrap_or(0),
            max_ecc: report
                .gpus
                .iter()
                .map(|g| g.ecc_uncorrectable as i64)
                .max()
                .unwrap_or(0),
            xids: xids_text(
                &report
                    .gpus
                    .iter()
                    .flat_map(|g| g.xid.iter().copied())
                    .collect(),
            ),
            min_gap_ms,
        }
    }
}

/// The store's writer of agents' reports: at most [`REPORT_GROUP`] a job,
/// at most one per instance (a second waits for the next job, so that it
/// is checked against the first).
pub(super) fn report_writer(
    writer: super::writer::Writer,
    clock: std::sync::Arc<super::StoreClock>,
) -> super::coalesce::Coalescer<PendingReport, ReportOutcome> {
    super::coalesce::Coalescer::start(
        REPORT_GROUP,
        |r: &PendingReport| r.id.clone(),
        Box::new(move |group| {
            let writer = writer.clone();
            let clock = clock.clone();
            Box::pin(async move {
                writer
                    .submit(move |conn| Box::pin(write_reports(conn, clock, group)))
                    .await
            })
        }),
    )
}

/// One job for a group of reports of distinct instances: one read of
/// their instances' status and last state, then one multi-row upsert of
/// the state and one multi-row insert of the samples, whatever the
/// group's size. Reads inside the job, so that commit order and time order
/// agree and a minute the downsampling has folded gets no late sample.
async fn write_reports(
    conn: &mut sqlx::AnyConnection,
    clock: std::sync::Arc<super::StoreClock>,
    group: Vec<PendingReport>,
) -> StoreResult<Step<Vec<ReportOutcome>>> {
    let sql = format!(
        "SELECT i.id, i.status, COALESCE(s.last_seq, 0), COALESCE(s.last_seen_at, 0) \
         FROM instances i LEFT JOIN agent_state s ON s.instance_id = i.id \
         WHERE i.id IN ({})",
        marks(1, group.len())
    );
    let mut q = sqlx::query(&sql);
    for r in &group {
        q = q.bind(r.id.clone());
    }
    let mut known = std::collections::HashMap::new();
    for row in q.fetch_all(&mut *conn).await? {
        let id: String = row.try_get(0)?;
        let status: String = row.try_get(1)?;
        // A state row's seq is at least 1: 0 says there is none.
        let last_seq: i64 = row.try_get(2)?;
        let last_at: i64 = row.try_get(3)?;
        known.insert(id, (status, last_seq, last_at));
    }
    let now = clock.now_ms();
    let outcomes: Vec<ReportOutcome> = group
        .iter()
        .map(|r| match known.get(&r.id) {
            Some((status, _, _)) if status == "deleting" || status == "deleted" => {
                ReportOutcome::Revoked
            }
            None => ReportOutcome::Revoked,
            Some(&(_, last_seq, _)) if last_seq > 0 && r.seq <= last_seq => {
                ReportOutcome::Replay { last_seq }
            }
            Some(&(_, last_seq, last_at)) if last_seq > 0 && now - last_at < r.min_gap_ms => {
                ReportOutcome::TooSoon {
                    retry_after_ms: r.min_gap_ms - (now - last_at),
                }
            }
            Some(_) => ReportOutcome::Accepted {
                at: from_millis(now),
            },
        })
        .collect();
    let kept: Vec<&PendingReport> = group
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, ReportOutcome::Accepted { .. }))
        .map(|(r, _)| r)
        .collect();
    if kept.is_empty() {
        return Ok(Step::Commit(outcomes));
    }
    // $1 is the time of every row.
    let values = (0..kept.len())
        .map(|i| {
            let k = 2 + i * 5;
            format!("(${k}, $1, $1, {})", marks(k + 1, 4))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO agent_state (instance_id, first_seen_at, last_seen_at, version, \
         last_seq, ssh_sessions, gpus) VALUES {values} \
         ON CONFLICT (instance_id) DO UPDATE SET last_seen_at = excluded.last_seen_at, \
         version = excluded.version, last_seq = excluded.last_seq, \
         ssh_sessions = excluded.ssh_sessions, gpus = excluded.gpus"
    );
    let mut q = sqlx::query(&sql).bind(now);
    for r in &kept {
        q = q
            .bind(r.id.clone())
            .bind(r.version.clone())
            .bind(r.seq)
            .bind(r.ssh)
            .bind(r.gpus.clone());
    }
    q.execute(&mut *conn).await?;
    let values = (0..kept.len())
        .map(|i| {
            let k = 2 + i * 7;
            format!("(${k}, $1, {})", marks(k + 1, 6))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO agent_samples (instance_id, at_ms, ssh_sessions, gpu_count, \
         max_util, max_ecc, xids, gpus) VALUES {values}"
    );
    let mut q = sqlx::query(&sql).bind(now);
    for r in &kept {
        q = q
            .bind(r.id.clone())
            .bind(r.ssh)
            .bind(r.gpu_count)
            .bind(r.max_util)
            .bind(r.max_ecc)
            .bind(r.xids.clone())
            .bind(r.gpus.clone());
    }
    q.execute(&mut *conn).await?;
    Ok(Step::Commit(outcomes))
}

impl Store {
    /// Keeps one validated report of `report.instance_id`, received now
    /// (the store's clock), unless the instance's token is revoked, its
    /// `seq` is not above the last accepted one, or it comes less than
    /// `min_gap_ms` after the last accepted report. Reports that arrive
    /// together are written together (see [`write_reports`]); each is
    /// answered once its group is committed.
    pub async fn insert_agent_report(
        &self,
        report: &Report,
        min_gap_ms: i64,
    ) -> StoreResult<ReportOutcome> {
        self.reports
            .submit(PendingReport::new(report, min_gap_ms))
            .await
    }

    /// When `instance`'s agent was first and last heard from.
    pub async fn agent_seen(&self, instance: Uuid) -> StoreResult<Option<AgentSeen>> {
        let row = sqlx::query(
            "SELECT first_seen_at, last_seen_at, version FROM agent_state WHERE instance_id = $1",
        )
        .bind(instance.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(AgentSeen {
                first_seen_at: from_millis(r.try_get(0)?),
                last_seen_at: from_millis(r.try_get(1)?),
                version: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Where raw samples begin: every one from here on is kept, and every
    /// minute before it is in the history.
    async fn agent_raw_from(&self) -> StoreResult<i64> {
        Ok(self
            .setting(RAW_FROM)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// What `instance`'s agent reported from `since` on: raw samples where
    /// they are still kept, the 1-minute history before that (whole
    /// minutes: a minute that began before `since` counts whole).
    pub async fn agent_window(
        &self,
        instance: Uuid,
        since: DateTime<Utc>,
    ) -> StoreResult<AgentWindow> {
        let since_ms = since.timestamp_millis();
        let raw_from = self.agent_raw_from().await?;
        let id = instance.to_string();
        let mut w = AgentWindow::default();
        let mut xids = BTreeSet::new();
        let fold = |r: &sqlx::any::AnyRow, w: &mut AgentWindow| -> StoreResult<()> {
            let n: i64 = r.try_get(0)?;
            if n == 0 {
                return Ok(());
            }
            let first: i64 = r.try_get(1)?;
            let last: i64 = r.try_get(2)?;
            let util: i64 = r.try_get(3)?;
            let ssh: i64 = r.try_get(4)?;
            let gpus: i64 = r.try_get(5)?;
            let ecc: i64 = r.try_get(6)?;
            let with_gpus: i64 = r.try_get(7)?;
            w.samples += n as u64;
            w.first_at = Some(
                w.first_at
                    .map_or(from_millis(first), |f| f.min(from_millis(first))),
            );
            w.last_at = Some(
                w.last_at
                    .map_or(from_millis(last), |l| l.max(from_millis(last))),
            );
            if with_gpus > 0 {
                let u = util as f64 / 100.0;
                w.max_gpu_utilization_percent =
                    Some(w.max_gpu_utilization_percent.map_or(u, |m| m.max(u)));
            }
            w.max_ssh_sessions = w.max_ssh_sessions.max(ssh as u32);
            w.min_gpu_count = Some(w.min_gpu_count.map_or(gpus as u32, |m| m.min(gpus as u32)));
            w.max_ecc_uncorrectable = w.max_ecc_uncorrectable.max(ecc as u64);
            Ok(())
        };
        // COALESCE: the Any driver cannot decode an untyped NULL aggregate;
        // CAST: PostgreSQL sums BIGINTs as NUMERIC, which it cannot either.
        let raw = sqlx::query(
            "SELECT COUNT(*), COALESCE(MIN(at_ms), 0), COALESCE(MAX(at_ms), 0), \
             COALESCE(MAX(max_util), 0), COALESCE(MAX(ssh_sessions), 0), \
             COALESCE(MIN(gpu_count), 0), COALESCE(MAX(max_ecc), 0), \
             CAST(COALESCE(SUM(CASE WHEN gpu_count > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM agent_samples WHERE instance_id = $1 AND at_ms >= $2",
        )
        .bind(&id)
        .bind(since_ms.max(raw_from))
        .fetch_one(self.pool())
        .await?;
        fold(&raw, &mut w)?;
        let raw_xids: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT xids FROM agent_samples WHERE instance_id = $1 AND at_ms >= $2 \
             AND xids IS NOT NULL",
        )
        .bind(&id)
        .bind(since_ms.max(raw_from))
        .fetch_all(self.pool())
        .await?;
        for x in raw_xids {
            parse_xids(x, &mut xids);
        }
        if since_ms < raw_from {
            let from = floor_minute(since_ms);
            let hist = sqlx::query(
                "SELECT CAST(COALESCE(SUM(samples), 0) AS BIGINT), COALESCE(MIN(first_at), 0), \
                 COALESCE(MAX(last_at), 0), COALESCE(MAX(max_util), 0), \
                 COALESCE(MAX(max_ssh), 0), COALESCE(MIN(min_gpu_count), 0), \
                 COALESCE(MAX(max_ecc), 0), \
                 CAST(COALESCE(SUM(CASE WHEN max_gpu_count > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
                 FROM agent_history WHERE instance_id = $1 AND minute_ms >= $2 AND minute_ms < $3",
            )
            .bind(&id)
            .bind(from)
            .bind(raw_from)
            .fetch_one(self.pool())
            .await?;
            fold(&hist, &mut w)?;
            let hist_xids: Vec<Option<String>> = sqlx::query_scalar(
                "SELECT xids FROM agent_history WHERE instance_id = $1 AND minute_ms >= $2 \
                 AND minute_ms < $3 AND xids IS NOT NULL",
            )
            .bind(&id)
            .bind(from)
            .bind(raw_from)
            .fetch_all(self.pool())
            .await?;
            for x in hist_xids {
                parse_xids(x, &mut xids);
            }
        }
        w.xids = xids.into_iter().collect();
        Ok(w)
    }

    /// `instance`'s samples from `since` on, oldest first, at most
    /// [`MAX_SAMPLES`] (the newest ones when there are more). By minute:
    /// the history, and the minutes not yet folded into it made the same
    /// way from raw samples.
    pub async fn agent_samples(
        &self,
        instance: Uuid,
        since: DateTime<Utc>,
        resolution: Resolution,
    ) -> StoreResult<Vec<Sample>> {
        let since_ms = since.timestamp_millis();
        let id = instance.to_string();
        match resolution {
            Resolution::Raw => {
                let rows = sqlx::query(
                    "SELECT at_ms, ssh_sessions, gpus FROM agent_samples \
                     WHERE instance_id = $1 AND at_ms >= $2 ORDER BY at_ms DESC LIMIT $3",
                )
                .bind(&id)
                .bind(since_ms)
                .bind(MAX_SAMPLES)
                .fetch_all(self.pool())
                .await?;
                let mut out = rows
                    .iter()
                    .map(|r| {
                        Ok(Sample {
                            at: from_millis(r.try_get(0)?),
                            ssh_sessions: r.try_get::<i64, _>(1)? as u32,
                            gpus: decode_raw_gpus(&r.try_get::<String, _>(2)?)?,
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                out.reverse();
                Ok(out)
            }
            Resolution::Minute => {
                let folded: i64 = self
                    .setting(DOWNSAMPLED_UNTIL)
                    .await?
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let from = floor_minute(since_ms);
                let rows = sqlx::query(
                    "SELECT minute_ms, max_ssh, gpus FROM agent_history \
                     WHERE instance_id = $1 AND minute_ms >= $2 AND minute_ms < $3 \
                     ORDER BY minute_ms DESC LIMIT $4",
                )
                .bind(&id)
                .bind(from)
                .bind(folded)
                .bind(MAX_SAMPLES)
                .fetch_all(self.pool())
                .await?;
                let mut out = rows
                    .iter()
                    .map(|r| {
                        let gpus: Vec<MinuteGpu> =
                            serde_json::from_str(&r.try_get::<String, _>(2)?)?;
                        Ok(Sample {
                            at: from_millis(r.try_get(0)?),
                            ssh_sessions: r.try_get::<i64, _>(1)? as u32,
                            gpus: gpus.into_iter().map(minute_gpu_sample).collect(),
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                out.reverse();
                // The newest minutes are not folded yet: fold them here
                // from the raw samples, as the downsampling will.
                let recent = sqlx::query(
                    "SELECT at_ms, ssh_sessions, gpus FROM agent_samples \
                     WHERE instance_id = $1 AND at_ms >= $2 ORDER BY at_ms",
                )
                .bind(&id)
                .bind(from.max(folded))
                .fetch_all(self.pool())
                .await?;
                let mut minutes: BTreeMap<i64, MinuteFold> = BTreeMap::new();
                for r in &recent {
                    let at: i64 = r.try_get(0)?;
                    let gpus = decode_raw_gpus(&r.try_get::<String, _>(2)?)?;
                    minutes
                        .entry(floor_minute(at))
                        .or_default()
                        .add(at, r.try_get(1)?, &gpus);
                }
                out.extend(minutes.iter().map(|(&m, f)| f.sample(m)));
                let excess = out.len().saturating_sub(MAX_SAMPLES as usize);
                out.drain(..excess);
                Ok(out)
            }
        }
    }

    /// The latest sample of every instance whose agent reported within
    /// `fresh` of now (the store's clock), newest first, at most
    /// [`MAX_LATEST`].
    pub async fn agent_latest(&self, fresh: chrono::Duration) -> StoreResult<Vec<(Uuid, Sample)>> {
        let since = self.now_ms() - fresh.num_milliseconds();
        let rows = sqlx::query(
            "SELECT instance_id, last_seen_at, ssh_sessions, gpus FROM agent_state \
             WHERE last_seen_at >= $1 ORDER BY last_seen_at DESC LIMIT $2",
        )
        .bind(since)
        .bind(MAX_LATEST)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    uuid_of(&r.try_get::<String, _>(0)?)?,
                    Sample {
                        at: from_millis(r.try_get(1)?),
                        ssh_sessions: r.try_get::<i64, _>(2)? as u32,
                        gpus: decode_raw_gpus(&r.try_get::<String, _>(3)?)?,
                    },
                ))
            })
            .collect()
    }

    /// One pass of the downsampling (see the module doc): folds the
    /// complete minutes of raw samples older than `grace` into the history
    /// (at most [`FOLD_SPAN_MS`] of them; `behind` says more are waiting),
    /// then deletes raw samples older than `raw_keep` and history older
    /// than `history_keep`, and the state of instances silent for that
    /// long. Safe with several replicas: the fold is written only if no
    /// other pass moved the progress meanwhile.
    pub async fn agent_downsample(
        &self,
        now_ms: i64,
        grace_ms: i64,
        raw_keep_ms: i64,
        history_keep_ms: i64,
    ) -> StoreResult<Downsampled> {
        let stored: Option<i64> = self
            .setting(DOWNSAMPLED_UNTIL)
            .await?
            .and_then(|v| v.parse().ok());
        let start = match stored {
            Some(s) => s,
            None => {
                let oldest: Option<i64> =
                    sqlx::query_scalar("SELECT MIN(at_ms) FROM agent_samples")
                        .fetch_one(self.pool())
                        .await?;
                floor_minute(oldest.unwrap_or(now_ms - grace_ms))
            }
        };
        let ready = floor_minute(now_ms - grace_ms);
        // A pass after a pause skips empty spans at once rather than one
        // FOLD_SPAN at a time.
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT at_ms FROM agent_samples WHERE at_ms >= $1 ORDER BY at_ms LIMIT 1",
        )
        .bind(start)
        .fetch_optional(self.pool())
        .await?;
        let from = next
            .map_or(ready, floor_minute)
            .clamp(start, ready.max(start));
        let until = ready.min(from + FOLD_SPAN_MS).max(start);
        let rows = if from < until {
            sqlx::query(
                "SELECT instance_id, at_ms, ssh_sessions, gpus FROM agent_samples \
                 WHERE at_ms >= $1 AND at_ms < $2",
            )
            .bind(from)
            .bind(until)
            .fetch_all(self.pool())
            .await?
        } else {
            Vec::new()
        };
        let mut folds: BTreeMap<(String, i64), MinuteFold> = BTreeMap::new();
        for r in &rows {
            let at: i64 = r.try_get(1)?;
            let gpus = decode_raw_gpus(&r.try_get::<String, _>(3)?)?;
            folds
                .entry((r.try_get(0)?, floor_minute(at)))
                .or_default()
                .add(at, r.try_get(2)?, &gpus);
        }
        let history: Vec<MinuteRow> = folds
            .into_iter()
            .map(|((id, m), f)| {
                let gpus = serde_json::to_string(&f.gpus()).expect("numbers serialize");
                (id, m, std::sync::Arc::new(f), gpus)
            })
            .collect();
        let minutes = history.len() as u64;
        let raw_cut = floor_minute(now_ms - raw_keep_ms).min(until);
        let history_cut = now_ms - history_keep_ms;
        // Several jobs, not one, so that reports committing meanwhile wait
        // for one chunk at a time rather than for the whole pass. The
        // history rows first (a repeat of a minute is ignored, so a pass
        // cut short is simply done again), then the progress, then the
        // deletions, which readers no longer look at once the progress
        // moved past them.
        for chunk in history.chunks(JOB_CHUNK) {
            let chunk = chunk.to_vec();
            self.write(move |conn| {
                Box::pin(async move {
                    insert_minutes(conn, &chunk).await?;
                    Ok(Step::Commit(()))
                })
            })
            .await?;
        }
        let moved = self
            .write(move |conn| {
                Box::pin(async move {
                    let current: Option<String> =
                        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                            .bind(DOWNSAMPLED_UNTIL)
                            .fetch_optional(&mut *conn)
                            .await?;
                    if current.and_then(|v| v.parse().ok()) != stored {
                        // Another replica's pass got here first.
                        return Ok(Step::Undo(false));
                    }
                    for (name, value) in [(DOWNSAMPLED_UNTIL, until), (RAW_FROM, raw_cut)] {
                        sqlx::query(
                            "INSERT INTO settings (name, value) VALUES ($1, $2) \
                             ON CONFLICT (name) DO UPDATE SET value = $2",
                        )
                        .bind(name)
                        .bind(value.to_string())
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(Step::Commit(true))
                })
            })
            .await?;
        if !moved {
            return Ok(Downsampled {
                minutes: 0,
                behind: true,
                ..Downsampled::default()
            });
        }
        let raw_deleted = self
            .delete_before("agent_samples", "at_ms", raw_cut)
            .await?;
        let history_deleted = self
            .delete_before("agent_history", "minute_ms", history_cut)
            .await?;
        self.write_one(move |conn| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM agent_state WHERE last_seen_at < $1")
                    .bind(history_cut)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                Ok(if n > 0 {
                    Step::Commit(())
                } else {
                    Step::Undo(())
                })
            })
        })
        .await?;
        Ok(Downsampled {
            minutes,
            raw_deleted,
            history_deleted,
            behind: until < ready,
        })
    }

    /// Deletes the rows of `table` (an agent table, keyed by instance and
    /// the time column `at`) whose `at` is before `cut`, oldest first, in
    /// write jobs of about [`DELETE_CHUNK`] rows, so that reports wait
    /// behind one small deletion at a time. Each job's last row is found
    /// by a read outside the writer. Answers the rows deleted.
    async fn delete_before(&self, table: &str, at: &str, cut: i64) -> StoreResult<u64> {
        let edge_sql = format!(
            "SELECT {at}, instance_id FROM {table} WHERE {at} < $1 \
             ORDER BY {at}, instance_id LIMIT 1 OFFSET $2"
        );
        let all_sql = format!("DELETE FROM {table} WHERE {at} < $1");
        let upto_sql =
            format!("DELETE FROM {table} WHERE {at} < $1 OR ({at} = $1 AND instance_id <= $2)");
        let mut deleted = 0;
        loop {
            let edge = sqlx::query(&edge_sql)
                .bind(cut)
                .bind(DELETE_CHUNK - 1)
                .fetch_optional(self.pool())
                .await?
                .map(|r| {
                    Ok::<_, sqlx::Error>((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?))
                })
                .transpose()?;
            let last = edge.is_none();
            let (all_sql, upto_sql) = (all_sql.clone(), upto_sql.clone());
            deleted += self
                .write_one(move |conn| {
                    Box::pin(async move {
                        let q = match &edge {
                            // Fewer than a chunk left: all of them.
                            None => sqlx::query(&all_sql).bind(cut),
                            Some((t, id)) => sqlx::query(&upto_sql).bind(*t).bind(id.clone()),
                        };
                        let n = q.execute(&mut *conn).await?.rows_affected();
                        Ok(if n > 0 {
                            Step::Commit(n)
                        } else {
                            Step::Undo(0)
                        })
                    })
                })
                .await?;
            if last {
                return Ok(deleted);
            }
        }
    }
}
