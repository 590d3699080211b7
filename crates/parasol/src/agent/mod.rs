//! Stand-in for the agent branch's module (issue 26's contract): only the
//! sample types the policies read, exactly as the contract fixes them. The
//! agent branch's own module replaces this file at merge.

use chrono::{DateTime, Utc};

/// One GPU as one report saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub index: u32,
    pub utilization_percent: f64,
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    pub temperature_c: Option<f64>,
    pub power_w: Option<f64>,
    pub ecc_uncorrectable: u64,
    pub xid: Vec<u32>,
}

/// What one report says about a machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub ssh_sessions: u32,
    pub gpus: Vec<GpuSample>,
}

/// When an instance's agent was first and last heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSeen {
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub version: String,
}

/// What happened between `since` and now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentWindow {
    pub samples: u64,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    pub max_gpu_utilization_percent: Option<f64>,
    pub max_ssh_sessions: u32,
    pub min_gpu_count: Option<u32>,
    pub xids: Vec<u32>,
    pub max_ecc_uncorrectable: u64,
}

/// Which samples `agent_samples` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Raw,
    Minute,
}

// The contract's store reads, answering "never reported" until the agent
// branch's store/agent.rs replaces them at merge.
impl crate::store::Store {
    pub async fn agent_seen(
        &self,
        _instance: uuid::Uuid,
    ) -> crate::store::StoreResult<Option<AgentSeen>> {
        Ok(None)
    }

    pub async fn agent_window(
        &self,
        _instance: uuid::Uuid,
        _since: DateTime<Utc>,
    ) -> crate::store::StoreResult<AgentWindow> {
        Ok(AgentWindow::default())
    }

    pub async fn agent_samples(
        &self,
        _instance: uuid::Uuid,
        _since: DateTime<Utc>,
        _resolution: Resolution,
    ) -> crate::store::StoreResult<Vec<Sample>> {
        Ok(Vec::new())
    }

    pub async fn agent_latest(
        &self,
        _fresh: chrono::Duration,
    ) -> crate::store::StoreResult<Vec<(uuid::Uuid, Sample)>> {
        Ok(Vec::new())
    }
}
