//! Idle and health policies (Parasol's extensions): what Parasol does with
//! an instance whose GPUs sit idle, or whose machine turns unhealthy, as its
//! agent reports them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an idle policy does once an instance has been idle long enough.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IdleAction {
    /// Record an `idle.alert` event and post it to the alert webhook, once
    /// per idle stretch.
    #[default]
    Alert,
    /// Delete the instance (recording `idle.deleted`).
    Delete,
}

/// When an instance counts as idle: every GPU at or below
/// `max_gpu_utilization_percent` in every sample of the last `minutes`,
/// and (with `count_ssh_sessions`) no interactive SSH session in that time.
/// An instance whose agent never reported is never idle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IdlePolicy {
    /// Utilisation in percent (0 to 100) at or below which a GPU is idle;
    /// default 5.
    #[serde(default = "default_threshold")]
    pub max_gpu_utilization_percent: i64,
    /// How long the instance must be idle, at least 1.
    pub minutes: i64,
    /// Whether an interactive SSH session keeps the instance busy; default
    /// true.
    #[serde(default = "default_true")]
    pub count_ssh_sessions: bool,
    /// Default `alert`.
    #[serde(default)]
    pub action: IdleAction,
}

fn default_threshold() -> i64 {
    5
}

fn default_true() -> bool {
    true
}

/// What happens when an instance's health turns `failed`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnUnhealthy {
    /// Record a `health.alert` event and post it to the alert webhook.
    Alert,
    /// Delete the instance and start one replacement with the same
    /// requirements and settings, tagged `parasol:replaces=<old id>`.
    Replace,
}

/// An instance's health, or one check's.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// No report from the agent yet.
    Unknown,
    Healthy,
    Degraded,
    Failed,
}

impl HealthStatus {
    /// Every status, for gauges that list each one.
    pub const ALL: [HealthStatus; 4] = [
        HealthStatus::Unknown,
        HealthStatus::Healthy,
        HealthStatus::Degraded,
        HealthStatus::Failed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Failed => "failed",
        }
    }

    /// The status of a wire name.
    pub fn parse(s: &str) -> Option<HealthStatus> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One health check: `heartbeat`, `gpu_count`, `xid` or `ecc`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheck {
    pub name: String,
    pub status: HealthStatus,
    /// What the check saw, in words.
    pub detail: String,
    /// When the check was evaluated.
    pub at: DateTime<Utc>,
}

/// Body of `GET /v1/instances/{id}/health`: the worst of the checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    pub status: HealthStatus,
    pub checks: Vec<HealthCheck>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_policy_needs_minutes_and_refuses_unknown_fields() {
        let p: IdlePolicy = serde_json::from_str(r#"{"minutes": 30}"#).unwrap();
        assert_eq!(p.max_gpu_utilization_percent, 5);
        assert!(p.count_ssh_sessions);
        assert_eq!(p.action, IdleAction::Alert);
        assert!(serde_json::from_str::<IdlePolicy>(r#"{}"#).is_err());
        assert!(serde_json::from_str::<IdlePolicy>(r#"{"minutes": 3, "minute": 4}"#).is_err());
        let p: IdlePolicy = serde_json::from_str(
            r#"{"max_gpu_utilization_percent": 2, "minutes": 3, "count_ssh_sessions": false, "action": "delete"}"#,
        )
        .unwrap();
        assert_eq!(p.action, IdleAction::Delete);
    }

    #[test]
    fn health_orders_from_unknown_to_failed() {
        assert!(HealthStatus::Failed > HealthStatus::Degraded);
        assert!(HealthStatus::Degraded > HealthStatus::Healthy);
        assert_eq!(HealthStatus::parse("failed"), Some(HealthStatus::Failed));
    }
}
