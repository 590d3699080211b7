//! Parasol's own extensions: who the API key belongs to, and the
//! account's API keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Body of `GET /v1/account`: the account the request's key belongs to.
///
/// Not part of the Shadeform API; the CLI's `whoami` shows it, and a
/// script can use it to check a key without side effects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountInfo {
    pub id: Uuid,
    pub name: String,
    /// Whether the key may use the `/admin` extensions.
    pub is_admin: bool,
}

/// One API key of the account, as `GET /v1/account/keys` lists it: never
/// the key itself, nor its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// When a request last used it (recorded to the minute); absent if
    /// never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; absent while it is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Body of `GET /v1/account/keys`: every key, revoked ones included,
/// oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeysResponse {
    pub keys: Vec<ApiKey>,
}

/// Body of `POST /v1/account/keys/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiKeyRequest {
    /// What the key is for (`ci`, `laptop`); need not be unique.
    pub name: String,
}

/// Answer of `POST /v1/account/keys/create`: the only time the key is
/// shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiKeyResponse {
    pub id: Uuid,
    pub name: String,
    pub api_key: String,
}
