//! What instances' agents report, as `GET /v1/instances/{id}/metrics`
//! answers it (a Parasol extension).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One GPU as one report (or one minute of history) saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuSample {
    /// The GPU's index on its machine, as `nvidia-smi` numbers it.
    pub index: u32,
    /// Busy percentage, 0 to 100 (by minute: the minute's average).
    pub utilization_percent: f64,
    /// Memory in use (by minute: the minute's maximum).
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    /// `null` where the board does not report it (by minute: the maximum).
    pub temperature_c: Option<f64>,
    /// `null` where the board does not report it (by minute: the average).
    pub power_w: Option<f64>,
    /// Volatile uncorrectable ECC errors (by minute: the maximum).
    pub ecc_uncorrectable: u64,
    /// Xid codes seen since the previous report (by minute: every code of
    /// the minute).
    pub xid: Vec<u32>,
}

/// What one report (or one minute of history) says about a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sample {
    /// When Parasol received it (by minute: the start of the minute).
    pub at: DateTime<Utc>,
    /// Interactive SSH sessions (by minute: the minute's maximum).
    pub ssh_sessions: u32,
    pub gpus: Vec<GpuSample>,
}

/// The agent of an instance, as last heard from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentInfo {
    pub last_seen_at: DateTime<Utc>,
    /// The agent's own version, as it reported it.
    pub version: String,
}

/// Answer of `GET /v1/instances/{id}/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsResponse {
    pub instance_id: Uuid,
    /// `null` until the instance's agent first reports.
    pub agent: Option<AgentInfo>,
    /// Oldest first.
    pub samples: Vec<Sample>,
}
