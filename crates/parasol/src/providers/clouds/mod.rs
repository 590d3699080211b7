//! The real clouds: one adapter per cloud, each written from the cloud's
//! public API documentation and tested against a fake server that behaves
//! as documented (`tests/it/fakes`), and what they share: credentials that
//! never print, the machine marker, the HTTP plumbing ([`http`]), the GPU
//! naming ([`gpus`]) and the settings that enable each cloud ([`setup`]).
//! AWS ([`aws`]) is tested against moto's EC2 server instead of a fake.

pub mod aws;
pub mod gpus;
pub mod http;
pub mod hyperstack;
pub mod lambda;
pub mod setup;
pub mod verda;

pub use gpus::{cents, configuration, gpu_model, shade_type, GpuModel, Num};
pub use http::{generic_failure, parse, short, Failure, Http, LaunchPacer, OffersCache};

use uuid::Uuid;

/// A credential. Its `Debug` never shows the value, so settings and errors
/// can be logged whole.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Prefix of every machine name Parasol gives a cloud: the orphan sweep and
/// a retried launch find Parasol's machines by it.
pub const MARKER_PREFIX: &str = "parasol-";

/// The name of the machine of `instance_id` at any cloud.
pub fn marker(instance_id: Uuid) -> String {
    format!("{MARKER_PREFIX}{instance_id}")
}

/// The instance id carried by a machine name, if Parasol named it.
pub fn parse_marker(name: &str) -> Option<Uuid> {
    name.strip_prefix(MARKER_PREFIX)
        .and_then(|rest| Uuid::parse_str(rest).ok())
}

/// A short name for an SSH public key, the same every time: clouds that
/// register keys by name get one key per distinct public key.
pub fn key_name(public_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(public_key.trim().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{MARKER_PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_reject_foreign_names() {
        let id = Uuid::new_v4();
        assert_eq!(parse_marker(&marker(id)), Some(id));
        assert_eq!(parse_marker("my-box"), None);
        assert_eq!(parse_marker("parasol-not-a-uuid"), None);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
