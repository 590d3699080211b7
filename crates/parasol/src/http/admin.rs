//! Parasol's own endpoints beside the Shadeform API: health, readiness,
//! and (admin accounts only) control of the sim and of a test clock.

use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::json;

use super::{ok, path_id, AppRef, Body};
use crate::error::ApiError;
use crate::providers::sim::Sim;
use crate::store::Account;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Response {
    ok(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers and the reconciler has run recently.
pub async fn readyz(State(app): State<AppRef>) -> Response {
    let store_ok = app.store.ping().await.is_ok();
    let last = app.reconciler.stats.last_run_ms.load(Ordering::Relaxed);
    let reconciler_ok = last > 0 && app.clock.now_ms() - last < 60_000;
    let providers: serde_json::Map<String, serde_json::Value> = app
        .catalog
        .failures()
        .into_iter()
        .map(|(name, why)| (name.to_string(), json!({"available": false, "reason": why})))
        .collect();
    let ready = store_ok && reconciler_ok;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": store_ok,
        "reconciler": reconciler_ok,
        "deployment_id": app.deployment_id,
        "unavailable_providers": providers,
        // Which provider serves each cloud name: one per name, a real
        // cloud's adapter over the sim.
        "clouds": app.catalog.providers().clouds(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

pub(crate) fn admin_sim(app: &AppRef, account: &Account) -> Result<std::sync::Arc<Sim>, ApiError> {
    if !account.is_admin {
        return Err(ApiError::forbidden("this endpoint needs an admin API key"));
    }
    app.sim
        .clone()
        .ok_or_else(|| ApiError::conflict("the sim provider is not enabled on this server"))
}

/// `GET /admin/sim/machines`: every machine the sim ever launched.
pub async fn sim_machines(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let sim = admin_sim(&app, &account)?;
    let machines = sim
        .machines()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(ok(json!({ "machines": machines })))
}

/// Body of the sim fault endpoints.
#[derive(Deserialize, Default)]
pub struct FailRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /admin/sim/machines/{id}/fail`: breaks a machine.
pub async fn sim_fail(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let sim = admin_sim(&app, &account)?;
    let id = path_id(&id, "machine")?;
    let req: FailRequest = if body.iter().all(u8::is_ascii_whitespace) {
        FailRequest::default()
    } else {
        super::parse_json(&body)?
    };
    let reason = req
        .reason
        .unwrap_or_else(|| "simulated hardware fault".to_string());
    if !sim
        .fail(id, &reason)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
    {
        return Err(ApiError::not_found("running machine"));
    }
    nudge(&app, id).await?;
    Ok(ok(json!({"id": id, "state": "failed"})))
}

/// `POST /admin/sim/machines/{id}/preempt`: reclaims a machine.
pub async fn sim_preempt(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let sim = admin_sim(&app, &account)?;
    let id = path_id(&id, "machine")?;
    if !sim
        .preempt(id)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
    {
        return Err(ApiError::not_found("running machine"));
    }
    nudge(&app, id).await?;
    Ok(ok(json!({"id": id, "state": "preempted"})))
}

/// Body of `POST /admin/sim/capacity-failures` (all three fields) and of
/// `.../clear` (any of them; none clears every offer).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CapacityFailures {
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub shade_instance_type: Option<String>,
    /// How many launches to refuse; absent: every launch until cleared.
    pub count: Option<u32>,
}

/// `POST /admin/sim/capacity-failures`: the offer's next launches fail for
/// capacity although its catalog entry says available.
pub async fn sim_fail_launches(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<CapacityFailures>,
) -> Result<Response, ApiError> {
    let sim = admin_sim(&app, &account)?;
    let field = |name: &'static str, v: Option<String>| {
        v.filter(|v| !v.trim().is_empty())
            .ok_or_else(|| ApiError::invalid_field(name, format!("{name} is required")))
    };
    let key = crate::store::OfferKey {
        cloud: field("cloud", req.cloud)?,
        region: field("region", req.region)?,
        shade_instance_type: field("shade_instance_type", req.shade_instance_type)?,
    };
    sim.fail_launches(key.clone(), req.count);
    Ok(ok(json!({
        "cloud": key.cloud,
        "region": key.region,
        "shade_instance_type": key.shade_instance_type,
        "count": req.count,
    })))
}

/// `POST /admin/sim/capacity-failures/clear`: launches succeed again.
pub async fn sim_clear_launch_failures(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let sim = admin_sim(&app, &account)?;
    let req: CapacityFailures = if body.iter().all(u8::is_ascii_whitespace) {
        CapacityFailures::default()
    } else {
        super::parse_json(&body)?
    };
    let cleared = sim.clear_launch_failures(
        req.cloud.as_deref(),
        req.region.as_deref(),
        req.shade_instance_type.as_deref(),
    );
    Ok(ok(json!({ "cleared": cleared })))
}

/// `GET /admin/sim/capacity-failures`: the injected capacity failures.
pub async fn sim_launch_failures(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let sim = admin_sim(&app, &account)?;
    let failures: Vec<_> = sim
        .launch_failures()
        .into_iter()
        .map(|(k, n)| {
            json!({"cloud": k.cloud, "region": k.region,
                   "shade_instance_type": k.shade_instance_type, "count": n})
        })
        .collect();
    Ok(ok(json!({ "capacity_failures": failures })))
}

/// Makes the reconciler look at an instance now instead of at its next check.
async fn nudge(app: &AppRef, id: uuid::Uuid) -> Result<(), ApiError> {
    app.store.wake_instance(id, app.clock.now_ms()).await?;
    app.notify.notify_one();
    Ok(())
}

/// Body of `POST /admin/clock/advance`.
#[derive(Deserialize)]
pub struct AdvanceRequest {
    pub seconds: i64,
}

/// `POST /admin/clock/advance`: moves a test server's clock forward.
pub async fn advance_clock(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<AdvanceRequest>,
) -> Result<Response, ApiError> {
    if !account.is_admin {
        return Err(ApiError::forbidden("this endpoint needs an admin API key"));
    }
    if req.seconds < 0 {
        return Err(ApiError::invalid_field(
            "seconds",
            "the clock only moves forward",
        ));
    }
    if !app.clock.advance(req.seconds.saturating_mul(1000)) {
        return Err(ApiError::conflict(
            "this server's clock is not movable; start it with --test-clock",
        ));
    }
    app.store.wake_all(app.clock.now_ms()).await?;
    app.notify.notify_one();
    Ok(ok(json!({"now": app.clock.now()})))
}

/// `GET /admin/reconciler`: this replica's lease owner id and reconciler
/// counters, and every lease currently held in the database (by any
/// replica), so operators and tests can see who drives what.
pub async fn reconciler(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    if !account.is_admin {
        return Err(ApiError::forbidden("this endpoint needs an admin API key"));
    }
    let s = &app.reconciler.stats;
    let leases: Vec<_> = app
        .store
        .instance_leases()
        .await?
        .into_iter()
        .map(|(id, owner, until)| json!({"instance_id": id, "owner": owner, "until": until}))
        .collect();
    Ok(ok(json!({
        "replica": app.reconciler.replica,
        "runs": s.runs.load(Ordering::Relaxed),
        "run_errors": s.run_errors.load(Ordering::Relaxed),
        "steps": s.steps.load(Ordering::Relaxed),
        "transitions": s.transitions.load(Ordering::Relaxed),
        "lost_races": s.lost_races.load(Ordering::Relaxed),
        "provider_errors": s.provider_errors.load(Ordering::Relaxed),
        "leases": leases,
    })))
}

/// `GET /admin/hosts`: every configured host of the hosts provider, whether
/// it is reachable (and why not), the type it is sold as and the instance
/// holding it.
pub async fn hosts(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    if !account.is_admin {
        return Err(ApiError::forbidden("this endpoint needs an admin API key"));
    }
    let hosts = app
        .hosts
        .clone()
        .ok_or_else(|| ApiError::conflict("no [[hosts]] are configured on this server"))?;
    let hosts = hosts
        .statuses()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(ok(json!({ "hosts": hosts })))
}
