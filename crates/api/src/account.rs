//! Parasol's own extension: who the API key belongs to.

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
