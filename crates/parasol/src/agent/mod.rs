//! The Parasol agent: what runs on every machine Parasol launches and
//! reports its GPUs to `POST /v1/agent/report`.
//!
//! [`machine`] holds the machine side: the POSIX `sh` agent, its installer
//! (served at `GET /agent/install.sh`) and the commands that install it on a
//! host over SSH or at a cloud machine's first boot.

pub mod machine;

use crate::providers::clouds::Secret;

/// What a launch needs to start the agent on a machine: where to report,
/// the instance's own token, and how often.
#[derive(Debug, Clone)]
pub struct AgentBootstrap {
    /// Parasol's public base URL, no trailing slash.
    pub url: String,
    /// The instance's agent token (`pa_...`).
    pub token: Secret,
    /// Seconds between reports.
    pub interval_s: u32,
}
