//! Per-instance agent tokens. A token is derived, not stored: the HMAC of
//! the instance's id under the deployment's agent secret (kept in the
//! settings table), so a launch retried after a restart gets the same
//! token and nothing that would let someone report is in the database but
//! the secret itself. A token names its instance: it cannot post another
//! instance's samples. Revocation is the instance's deletion (ingestion
//! refuses reports for an instance that is being or has been deleted).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::providers::clouds::Secret;
use crate::store::{Store, StoreResult};

/// The settings row holding the deployment's agent secret.
const SETTING: &str = "agent_secret";

/// What every agent token starts with, so a leaked one is recognisable.
pub const PREFIX: &str = "pa_";

/// The deployment's agent secret, and the tokens derived from it.
#[derive(Clone)]
pub struct AgentKeys {
    secret: Secret,
}

impl std::fmt::Debug for AgentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentKeys(***)")
    }
}

impl AgentKeys {
    /// The deployment's secret, made and stored by the first replica that
    /// needs it.
    pub async fn load(store: &Store) -> StoreResult<AgentKeys> {
        let secret = store
            .setting_or_init(SETTING, || {
                let bytes: [u8; 32] = rand::random();
                URL_SAFE_NO_PAD.encode(bytes)
            })
            .await?;
        Ok(AgentKeys::from_secret(Secret::new(secret)))
    }

    /// Keys from a known secret (tests, benchmarks).
    pub fn from_secret(secret: Secret) -> AgentKeys {
        AgentKeys { secret }
    }

    fn mac(&self, instance: Uuid) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(b"agent:");
        mac.update(instance.to_string().as_bytes());
        mac
    }

    /// The token of `instance`'s agent.
    pub fn token(&self, instance: Uuid) -> Secret {
        let tag = self.mac(instance).finalize().into_bytes();
        Secret::new(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(tag)))
    }

    /// Whether `token` is `instance`'s, compared in constant time.
    pub fn verify(&self, instance: Uuid, token: &str) -> bool {
        let Some(tag) = token
            .strip_prefix(PREFIX)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
        else {
            return false;
        };
        self.mac(instance).verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_own_instance_and_secret() {
        let keys = AgentKeys::from_secret(Secret::new("s1"));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t = keys.token(a);
        assert!(t.expose().starts_with(PREFIX));
        assert!(keys.verify(a, t.expose()));
        assert!(!keys.verify(b, t.expose()));
        assert!(!AgentKeys::from_secret(Secret::new("s2")).verify(a, t.expose()));
        assert!(!keys.verify(a, &t.expose()[PREFIX.len()..]));
        assert!(!keys.verify(a, "pa_!!"));
        // Derived, so the same after a restart.
        assert_eq!(
            keys.token(a),
            AgentKeys::from_secret(Secret::new("s1")).token(a)
        );
        assert_eq!(format!("{t:?}"), "Secret(***)");
    }
}
