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

/// One GPU as one report (or one minute of history) saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuSample {
    /// The GPU's index on its machine, as `nvidia-smi` numbers it.
    pub index: u32,
    /// Busy percentage, 0 to 100 (in the 1-minute history: the minute's
    /// average).
    pub utilization_percent: f64,
    /// Memory in use (history: the minute's maximum).
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    /// `null` where the board does not report it (history: the maximum).
    pub temperature_c: Option<f64>,
    /// `null` where the board does not report it (history: the average).
    pub power_w: Option<f64>,
    /// Volatile uncorrectable ECC errors (history: the maximum).
    pub ecc_uncorrectable: u64,
    /// Xid codes seen since the previous report (history: every code of
    /// the minute).
    pub xid: Vec<u32>,
}

/// What one report (or one minute of history) says about a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sample {
    /// When Parasol received it (history: the start of the minute).
    pub at: DateTime<Utc>,
    /// Interactive SSH sessions (history: the minute's maximum).
    pub ssh_sessions: u32,
    pub gpus: Vec<GpuSample>,
}

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
