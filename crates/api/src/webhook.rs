//! Parasol's extension: webhook subscriptions (`/v1/webhooks`), through
//! which an account receives its events as signed HTTP POSTs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One webhook endpoint of the account. Its secret is never shown again
/// after the create (or a rotation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// Event types it receives; `instance.*` matches every type under
    /// `instance.`, `*` every type.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// A disabled endpoint receives nothing (deliveries already queued are
    /// dropped when their turn comes).
    pub enabled: bool,
    /// Admin keys only: the events of every account, not only its own.
    pub all_accounts: bool,
    pub created_at: DateTime<Utc>,
    /// Until when the secret replaced by the last rotation still signs.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// Body of `GET /v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhooksResponse {
    pub webhooks: Vec<Webhook>,
}

/// Body of `POST /v1/webhooks/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `https://...`, or `http://...` on a server run with
    /// `--webhook-allow-http`.
    pub url: String,
    /// Event types or `prefix.*` patterns; at least one.
    pub events: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Admin keys only: receive every account's events.
    #[serde(default)]
    pub all_accounts: bool,
}

/// Answer of `POST /v1/webhooks/create` and `POST
/// /v1/webhooks/{id}/rotate-secret`: the secret is shown only here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookSecretResponse {
    pub id: Uuid,
    /// `whsec_` followed by the base64 key, as Standard Webhooks libraries
    /// take it.
    pub secret: String,
}

/// Body of `POST /v1/webhooks/{id}/update`: absent fields are kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// `""` removes it.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    pub event_id: Uuid,
    pub event_type: String,
    /// 1 for the first try.
    pub attempt: i64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why no answer counted (timeout, connection refused, refused address).
    pub error: Option<String>,
    pub duration_ms: i64,
    pub at: DateTime<Utc>,
}

/// Body of `GET /v1/webhooks/{id}/deliveries`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDeliveriesResponse {
    pub deliveries: Vec<WebhookDelivery>,
}

/// Answer of `POST /v1/webhooks/{id}/test`: the `ping` is queued; its
/// attempt appears under the endpoint's deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookTestResponse {
    pub id: Uuid,
    pub event_id: Uuid,
    /// `queued`.
    pub status: String,
}
