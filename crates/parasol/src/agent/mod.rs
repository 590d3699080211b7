//! The Parasol agent's server side: what a machine reports about its GPUs
//! and sessions, the per-instance token it reports with, and the checks a
//! report passes before the store keeps it (`ingest`).
//!
//! A report's time is the server's receive time (the store's clock), never
//! the machine's, so a skewed machine clock and the test clock both work.
//! Samples are kept at full resolution for a short while and as a 1-minute
//! history for days (store/agent.rs); both are bounded per instance.

pub mod ingest;
pub mod token;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::providers::clouds::Secret;

pub use ingest::{Ingest, IngestError, Report};
pub use token::AgentKeys;

// The samples are wire types, shared with the CLI.
pub use parasol_api::{GpuSample, Sample};

/// When an instance's agent was first and last heard from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSeen {
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The `agent_version` of its last report.
    pub version: String,
}

/// What happened between `since` and now, from raw samples and the
/// 1-minute history together, so that windows longer than the raw
/// retention are answered exactly for max/count questions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentWindow {
    /// Reports received in the window.
    pub samples: u64,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// The busiest any GPU was in any report; `None` when no report of the
    /// window had a GPU.
    pub max_gpu_utilization_percent: Option<f64>,
    pub max_ssh_sessions: u32,
    /// The fewest GPUs any report listed; `None` without reports.
    pub min_gpu_count: Option<u32>,
    /// Every Xid code reported in the window, ascending, once each.
    pub xids: Vec<u32>,
    pub max_ecc_uncorrectable: u64,
}

/// Which samples `agent_samples` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Every report as received.
    Raw,
    /// One sample per minute (the 1-minute history).
    Minute,
}

impl Resolution {
    /// `raw` or `1m`, as the metrics API spells them.
    pub fn parse(s: &str) -> Option<Resolution> {
        match s {
            "raw" => Some(Resolution::Raw),
            "1m" => Some(Resolution::Minute),
            _ => None,
        }
    }
}

/// What a machine needs to run the agent: where to report, with which
/// token, how often.
#[derive(Debug, Clone)]
pub struct AgentBootstrap {
    /// Parasol's public base URL, without a trailing slash.
    pub url: String,
    pub token: Secret,
    pub interval_s: u32,
}

/// The deployment's agent settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Whether launched machines run the agent at all.
    pub enabled: bool,
    /// Seconds between reports (`--agent-interval`).
    pub interval_s: u32,
    /// How long reports are kept at full resolution.
    pub raw_retention: std::time::Duration,
    /// How long the 1-minute history is kept.
    pub history_retention: std::time::Duration,
    /// The fewest milliseconds between two accepted reports of one
    /// instance; a report sooner is refused 429.
    pub min_report_gap_ms: i64,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_s: 15,
            raw_retention: std::time::Duration::from_secs(3600),
            history_retention: std::time::Duration::from_secs(7 * 86400),
            min_report_gap_ms: 2000,
        }
    }
}

/// What the lifecycle needs to give each launch its agent's bootstrap.
#[derive(Debug, Clone)]
pub struct AgentLaunch {
    pub keys: AgentKeys,
    /// Parasol's public base URL, without a trailing slash.
    pub url: String,
    pub interval_s: u32,
}

impl AgentLaunch {
    /// The bootstrap of `instance`'s agent.
    pub fn bootstrap(&self, instance: uuid::Uuid) -> AgentBootstrap {
        AgentBootstrap {
            url: self.url.trim_end_matches('/').to_string(),
            token: self.keys.token(instance),
            interval_s: self.interval_s,
        }
    }
}

/// How often the reconciler folds samples into the history and prunes
/// them (ms of the server's clock).
pub const UPKEEP_EVERY_MS: i64 = 30_000;

/// How long after a minute ends its samples are folded, so that a report
/// being committed as the minute ends is in it.
const FOLD_GRACE_MS: i64 = 5_000;

/// One pass of the samples' upkeep, run by the reconciler: folds complete
/// minutes into the 1-minute history and deletes what is past its
/// retention. `true`: more is waiting, run again at once.
pub async fn upkeep(
    store: &crate::store::Store,
    now_ms: i64,
    settings: &AgentSettings,
) -> crate::store::StoreResult<bool> {
    let done = store
        .agent_downsample(
            now_ms,
            FOLD_GRACE_MS,
            settings.raw_retention.as_millis() as i64,
            settings.history_retention.as_millis() as i64,
        )
        .await?;
    if done.raw_deleted + done.history_deleted > 0 {
        tracing::debug!(
            minutes = done.minutes,
            raw_deleted = done.raw_deleted,
            history_deleted = done.history_deleted,
            "agent samples downsampled"
        );
    }
    Ok(done.behind)
}
