//! SSH keys: `/sshkeys`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One SSH key of the account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshKey {
    pub id: Uuid,
    pub name: String,
    /// Exactly the bytes the client sent.
    pub public_key: String,
    pub is_default: bool,
}

/// Body of `GET /sshkeys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshKeysResponse {
    pub ssh_keys: Vec<SshKey>,
}

/// Body of `POST /sshkeys/add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddSshKeyRequest {
    pub name: String,
    pub public_key: String,
}

/// Answer of `POST /sshkeys/add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddSshKeyResponse {
    pub id: Uuid,
}
