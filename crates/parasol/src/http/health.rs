//! `GET /v1/instances/{id}/health`, and how a create's idle policy is
//! bound by its account's (lifecycle/idle.rs, lifecycle/health.rs).

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use parasol_api::IdlePolicy;

use super::{ok, path_id, AppRef};
use crate::error::ApiError;
use crate::lifecycle::{health, idle};
use crate::store::Account;

/// `GET /v1/instances/{id}/health`: evaluated now from the stored samples,
/// so it is current whatever the reconciler last looked at.
pub async fn get(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "instance")?;
    let rec = app
        .store
        .get_instance(account.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance"))?;
    let now = app.clock.now();
    let evidence = health::gather(&app.store, &rec).await?;
    Ok(ok(health::evaluate(&evidence, now)))
}

/// Checks an idle policy's numbers, naming the field at fault.
pub fn check_policy(field: &str, p: &IdlePolicy) -> Result<(), ApiError> {
    idle::check(field, p).map_err(|(f, m)| ApiError::invalid_field(f, m))
}

/// The idle policy a new instance gets: the one asked for (absent: `None`,
/// `null`: `Some(None)`), which must not loosen or remove the account's;
/// when none is asked for, the account's.
pub async fn bind_idle_policy(
    app: &AppRef,
    account: &Account,
    asked: Option<Option<IdlePolicy>>,
) -> Result<Option<IdlePolicy>, ApiError> {
    if let Some(Some(p)) = &asked {
        check_policy("idle_policy", p)?;
    }
    let Some(bound) = app.store.account_idle_policy(account.id).await? else {
        return Ok(asked.flatten());
    };
    let describe = |p: &IdlePolicy| {
        format!(
            "{{max_gpu_utilization_percent: {}, minutes: {}, count_ssh_sessions: {}, action: {}}}",
            p.max_gpu_utilization_percent,
            p.minutes,
            p.count_ssh_sessions,
            match p.action {
                parasol_api::IdleAction::Alert => "alert",
                parasol_api::IdleAction::Delete => "delete",
            }
        )
    };
    match asked {
        None => Ok(Some(bound)),
        Some(None) => Err(ApiError::invalid_field(
            "idle_policy",
            format!(
                "the account's idle policy {} binds every instance; it cannot be removed",
                describe(&bound)
            ),
        )),
        Some(Some(p)) => match idle::loosens(&bound, &p) {
            None => Ok(Some(p)),
            Some(why) => Err(ApiError::invalid_field(
                "idle_policy",
                format!(
                    "idle_policy may tighten the account's idle policy {} but not loosen it: {why}",
                    describe(&bound)
                ),
            )),
        },
    }
}
