//! The real clouds: one adapter per cloud, each written from the cloud's
//! public API documentation and tested against a fake server that behaves
//! as documented (`tests/it/fakes`), and what they share: credentials that
//! never print, the machine marker, how a machine is found by it
//! (`find`), the HTTP plumbing ([`http`]), the GPU naming ([`gpus`]) and
//! the settings that enable each cloud ([`setup`]).
//! AWS ([`aws`]) is tested against moto's EC2 server instead of a fake.

pub mod aws;
pub mod azure;
pub mod digitalocean;
pub(crate) mod find;
pub mod gcp;
pub mod gpus;
pub mod http;
pub mod hyperstack;
pub mod lambda;
pub mod runpod;
pub mod setup;
pub mod vastai;
pub mod verda;
pub(crate) mod volumes;

pub(crate) use find::{KnownMachines, Machines};
pub use gpus::{cents, configuration, gpu_model, shade_type, GpuModel, Num};
pub(crate) use http::RestApi;
pub use http::{
    generic_failure, parse, parse_found, short, Failure, Http, LaunchPacer, OffersCache,
};

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

/// The script a cloud machine runs once at first boot (AWS's user data,
/// Google's `startup-script`, the `user_data` of DigitalOcean, Lambda and
/// Hyperstack): first the Parasol agent, installed as root (a systemd
/// service where there is systemd), then the launch configuration, run as
/// `user` by the same script the hosts provider runs over SSH, exactly as
/// without the agent. `None` when there is nothing to run.
pub(crate) fn first_boot_script(
    req: &crate::providers::LaunchRequest,
    user: &str,
) -> Result<Option<String>, crate::providers::ProviderError> {
    use crate::agent::machine::{install_commands, Placement};
    use crate::providers::hosts::remote;
    let w = remote::workload(
        req.instance_id,
        req.launch_configuration.as_ref(),
        &req.envs,
        true,
    )
    .map_err(crate::providers::ProviderError::Permanent)?;
    if w.is_none() && req.agent.is_none() {
        return Ok(None);
    }
    let mut script = format!("#!/bin/bash\n# Parasol instance {}\n", req.instance_id);
    if let Some(agent) = &req.agent {
        script.push_str(&install_commands(
            agent,
            req.instance_id,
            Placement::Default,
        ));
    }
    if let Some(w) = w {
        let setup = remote::setup_script(req.instance_id, None, Some(&w), None);
        if user == "root" {
            script.push_str(&format!(
                "export HOME=\"${{HOME:-/root}}\"\ncd \"$HOME\" && bash <<'PARASOL_USER_DATA'\n{setup}\nPARASOL_USER_DATA\n"
            ));
        } else {
            script.push_str(&format!(
                "sudo -u {user} -H bash <<'PARASOL_USER_DATA'\n{setup}\nPARASOL_USER_DATA\n"
            ));
        }
    }
    Ok(Some(script))
}

/// The agent alone, as a script, for the container clouds (RunPod's start
/// command, Vast.ai's `onstart`), where the machine is a container that
/// runs no launch configuration and has no systemd: the agent runs there
/// as a background loop. `None` where the deployment has agents off.
pub(crate) fn agent_start_script(req: &crate::providers::LaunchRequest) -> Option<String> {
    use crate::agent::machine::{install_commands, Placement};
    req.agent
        .as_ref()
        .map(|a| install_commands(a, req.instance_id, Placement::Default))
}

/// Prefix of every machine name Parasol gives a cloud.
pub const MARKER_PREFIX: &str = "parasol-";

/// How this deployment names its machines at a cloud:
/// `parasol-<deployment id>-<instance id>`. The orphan sweep and a retried
/// launch find this deployment's machines by it, and never touch another
/// deployment's machines on the same cloud account.
///
/// Machines launched before deployments had ids are named
/// `parasol-<instance id>` (the legacy marker). Instance ids are random
/// UUIDs, so a legacy name still identifies its instance: describe and
/// terminate find such machines by it. The sweep adopts a legacy-named
/// machine only when this deployment's store holds its instance (see
/// [`crate::providers::sweep`]), since any deployment may have made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    prefix: String,
}

impl Marker {
    /// The marker of the deployment `deployment_id`.
    pub fn new(deployment_id: &str) -> Self {
        Self {
            prefix: format!("{MARKER_PREFIX}{deployment_id}-"),
        }
    }

    /// The name of the machine of `instance_id`.
    pub fn name(&self, instance_id: Uuid) -> String {
        format!("{}{instance_id}", self.prefix)
    }

    /// The name of the machine of `instance_id` at a cloud whose names are
    /// too short for [`Marker::name`] (Hyperstack's hold 50 characters):
    /// the instance id in lowercase base32, 26 characters instead of 36,
    /// so a name is 45 characters long.
    pub fn short_name(&self, instance_id: Uuid) -> String {
        format!("{}{}", self.prefix, base32(instance_id))
    }

    /// The instance id carried by a name this deployment gave, in either
    /// [`Marker::name`]'s or [`Marker::short_name`]'s form.
    pub fn ours(&self, name: &str) -> Option<Uuid> {
        let rest = name.strip_prefix(&self.prefix)?;
        strict_uuid(rest).or_else(|| from_base32(rest))
    }

    /// The instance id carried by a legacy (pre-deployment-id) name.
    pub fn legacy(&self, name: &str) -> Option<Uuid> {
        name.strip_prefix(MARKER_PREFIX).and_then(strict_uuid)
    }

    /// Whether `name` is the machine of `instance_id`, under either marker.
    pub fn is_for(&self, name: &str, instance_id: Uuid) -> bool {
        self.ours(name) == Some(instance_id) || self.legacy(name) == Some(instance_id)
    }
}

/// A UUID in its hyphenated form only, so `<deployment>-<uuid>` is never
/// read as a bare UUID.
fn strict_uuid(s: &str) -> Option<Uuid> {
    (s.len() == 36).then(|| Uuid::parse_str(s).ok()).flatten()
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A UUID's 128 bits in RFC 4648 base32, lowercase, unpadded (26
/// characters, the last carrying 3 bits and two zero bits).
fn base32(id: Uuid) -> String {
    let n = id.as_u128();
    (0..26)
        .map(|i| {
            let shift = 128 - 5 * (i + 1);
            let v = if shift >= 0 {
                (n >> shift) & 31
            } else {
                (n << -shift) & 31
            };
            BASE32[v as usize] as char
        })
        .collect()
}

/// The UUID [`base32`] wrote as `s`, and nothing else: a string of
/// another length, alphabet or padding is not one.
fn from_base32(s: &str) -> Option<Uuid> {
    if s.len() != 26 {
        return None;
    }
    let mut n: u128 = 0;
    for (i, c) in s.bytes().enumerate() {
        let v = BASE32.iter().position(|&b| b == c)? as u128;
        if i < 25 {
            n = (n << 5) | v;
        } else if v & 3 != 0 {
            return None;
        } else {
            n = (n << 3) | (v >> 2);
        }
    }
    Some(Uuid::from_u128(n))
}

/// A fresh deployment id: ten lowercase hex digits, short enough for every
/// cloud's name limits beside a UUID, and valid in hostnames and tags.
pub fn new_deployment_id() -> String {
    Uuid::new_v4().simple().to_string()[..10].to_string()
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
    fn markers_round_trip_and_tell_deployments_apart() {
        let id = Uuid::new_v4();
        let ours = Marker::new("0a1b2c3d4e");
        let theirs = Marker::new("ffffffffff");
        let name = ours.name(id);
        assert_eq!(name, format!("parasol-0a1b2c3d4e-{id}"));
        assert_eq!(ours.ours(&name), Some(id));
        assert_eq!(ours.legacy(&name), None, "a new name is not a legacy one");
        assert_eq!(theirs.ours(&name), None);
        assert!(!theirs.is_for(&name, id));
        let old = format!("parasol-{id}");
        assert_eq!(ours.ours(&old), None);
        assert_eq!(ours.legacy(&old), Some(id));
        assert!(ours.is_for(&old, id) && ours.is_for(&name, id));
        assert_eq!(ours.ours("my-box"), None);
        assert_eq!(ours.legacy("parasol-not-a-uuid"), None);
        let d = new_deployment_id();
        assert_eq!(d.len(), 10);
        assert!(d
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn short_names_fit_fifty_characters_and_round_trip() {
        let ours = Marker::new("0a1b2c3d4e");
        for id in [Uuid::nil(), Uuid::max(), Uuid::new_v4(), Uuid::new_v4()] {
            let name = ours.short_name(id);
            assert_eq!(name.len(), 45, "{name}");
            assert_eq!(ours.ours(&name), Some(id));
            assert!(ours.is_for(&name, id));
            assert_eq!(Marker::new("ffffffffff").ours(&name), None);
            assert_eq!(ours.legacy(&name), None);
        }
        // Not base32, or nonzero padding bits: not a name this marker gave.
        assert_eq!(
            ours.ours("parasol-0a1b2c3d4e-aaaaaaaaaaaaaaaaaaaaaaaaa1"),
            None
        );
        assert_eq!(
            ours.ours("parasol-0a1b2c3d4e-aaaaaaaaaaaaaaaaaaaaaaaaab"),
            None
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
