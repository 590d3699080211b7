//! `GET /v1/events`: Parasol's own extension listing what happened to the
//! account's resources (alert thresholds crossed, so far).

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde_json::json;

use super::{ok, AppRef};
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::store::Account;

/// `GET /v1/events`, oldest first.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let events: Vec<_> = app
        .store
        .list_events(account.id)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "instance_id": e.instance_id,
                "kind": e.kind,
                "message": e.message,
                "created_at": from_millis(e.created_at),
            })
        })
        .collect();
    Ok(ok(json!({ "events": events })))
}
