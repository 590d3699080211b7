//! The agents' routes: `POST /v1/agent/report` (an agent token, not an API
//! key), `GET /v1/instances/{id}/metrics` (the account's API), and the
//! sim's steering at `POST /admin/sim/agent`.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::rate_limit::client_ip;
use super::{ok, AppRef};
use crate::agent::ingest::MAX_BODY;
use crate::agent::{IngestError, Resolution};
use crate::error::ApiError;
use crate::store::Account;

/// The answer to a refused report.
fn refusal(e: IngestError) -> Response {
    match e {
        IngestError::Invalid { field, message } => {
            ApiError::invalid_field(field.clone(), format!("{field}: {message}")).into_response()
        }
        IngestError::Unauthorized(m) => ApiError::unauthorized(m).into_response(),
        e @ IngestError::Revoked => ApiError::unauthorized(e.to_string()).into_response(),
        e @ IngestError::Replay { .. } => ApiError::conflict(e.to_string())
            .with_field("seq")
            .into_response(),
        IngestError::TooLarge => ApiError::too_large(MAX_BODY).into_response(),
        IngestError::TooSoon { retry_after_s } => {
            let mut res = ApiError::rate_limited(retry_after_s).into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            res
        }
        IngestError::Store(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /v1/agent/report`: one report of an instance's agent, with that
/// instance's token as the bearer. 204 once stored.
pub async fn report(State(app): State<AppRef>, req: Request) -> Response {
    let ip = client_ip(&req);
    // A guessing loop is throttled like one against API keys.
    if let Err(limited) = app.limits.may_authenticate(ip) {
        return limited.into_response();
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    // One byte over the limit is enough to know it is too big.
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY + 1).await {
        Ok(b) => b,
        Err(_) => return refusal(IngestError::TooLarge),
    };
    match app.agent.post(token.as_deref(), &body).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            // A revoked token is a deleted machine's agent trying until
            // the machine is gone, not a guess.
            if let IngestError::Unauthorized(_) = &e {
                app.limits.failed_authentication(ip);
            }
            refusal(e)
        }
    }
}

/// Samples answered when `since` is not given.
const DEFAULT_WINDOW: chrono::Duration = chrono::Duration::hours(1);

/// Query parameters of the metrics route.
const METRICS_PARAMS: &[&str] = &["since", "resolution"];

/// `GET /v1/instances/{id}/metrics?since=RFC3339&resolution=raw|1m`: what
/// the instance's agent reported since then (default: the last hour, every
/// report), oldest first.
pub async fn metrics(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))?;
    if let Some(k) = q.keys().find(|k| !METRICS_PARAMS.contains(&k.as_str())) {
        return Err(ApiError::invalid_field(
            k.clone(),
            format!("unknown parameter {k:?}; this route takes since and resolution"),
        ));
    }
    let since = match q.get("since") {
        None => app.clock.now() - DEFAULT_WINDOW,
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::invalid_field(
                    "since",
                    format!(
                        "since must be an RFC 3339 time such as 2026-01-02T03:04:05Z, got {s:?}"
                    ),
                )
            })?,
    };
    let resolution = match q.get("resolution") {
        None => Resolution::Raw,
        Some(r) => Resolution::parse(r).ok_or_else(|| {
            ApiError::invalid_field(
                "resolution",
                format!("resolution must be raw or 1m, got {r:?}"),
            )
        })?,
    };
    let rec = super::instances::load(&app, &account, &id).await?;
    let id = rec.instance.id;
    let agent = app.store.agent_seen(id).await?;
    let samples = app.store.agent_samples(id, since, resolution).await?;
    Ok(ok(parasol_api::MetricsResponse {
        instance_id: id,
        agent: agent.map(|a| parasol_api::AgentInfo {
            last_seen_at: a.last_seen_at,
            version: a.version,
        }),
        samples,
    }))
}

/// `POST /admin/sim/agent`: steers a simulated machine's agent.
/// `{"instance_id", "gpu_utilization_percent"?, "xid"?, "ecc_uncorrectable"?,
/// "ssh_sessions"?, "reporting"}`: a given field replaces the steering's,
/// `null` gives it back to the simulation, an absent one is kept.
pub async fn sim_agent(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let sim = super::admin::admin_sim(&app, &account)?;
    let v: Value = super::parse_json(&body)?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    const FIELDS: &[&str] = &[
        "instance_id",
        "gpu_utilization_percent",
        "xid",
        "ecc_uncorrectable",
        "ssh_sessions",
        "reporting",
    ];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid_field(
            k.clone(),
            format!(
                "unknown field {k:?}; this route takes {}",
                FIELDS.join(", ")
            ),
        ));
    }
    let id = match obj.get("instance_id").and_then(Value::as_str) {
        Some(s) => uuid::Uuid::parse_str(s)
            .map_err(|_| ApiError::invalid_field("instance_id", "instance_id must be a UUID"))?,
        None => {
            return Err(ApiError::invalid_field(
                "instance_id",
                "instance_id is required",
            ))
        }
    };
    let mut s = sim
        .agent_steering(id)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    match obj.get("reporting") {
        Some(Value::Bool(b)) => s.reporting = *b,
        _ => {
            return Err(ApiError::invalid_field(
                "reporting",
                "reporting is required: true or false",
            ))
        }
    }
    let whole = |f: &str, max: u64| -> Result<Option<Option<u64>>, ApiError> {
        match obj.get(f) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(Some(n))),
                _ => Err(ApiError::invalid_field(
                    f,
                    format!("{f} must be a whole number from 0 to {max}, or null"),
                )),
            },
        }
    };
    match obj.get("gpu_utilization_percent") {
        None => {}
        Some(Value::Null) => s.gpu_utilization_percent = None,
        Some(v) => match v.as_f64() {
            Some(u) if (0.0..=100.0).contains(&u) => s.gpu_utilization_percent = Some(u),
            _ => {
                return Err(ApiError::invalid_field(
                    "gpu_utilization_percent",
                    "gpu_utilization_percent must be from 0 to 100, or null",
                ))
            }
        },
    }
    if let Some(e) = whole("ecc_uncorrectable", 1_000_000_000)? {
        s.ecc_uncorrectable = e;
    }
    if let Some(n) = whole("ssh_sessions", 10_000)? {
        s.ssh_sessions = n.map(|n| n as u32);
    }
    match obj.get("xid") {
        None => {}
        Some(Value::Null) => s.xid.clear(),
        Some(v) => {
            let codes: Option<Vec<u32>> = match v {
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_u64().filter(|&c| c <= 65_535).map(|c| c as u32))
                    .collect(),
                v => v.as_u64().filter(|&c| c <= 65_535).map(|c| vec![c as u32]),
            };
            let Some(codes) = codes else {
                return Err(ApiError::invalid_field(
                    "xid",
                    "xid must be an Xid code (0 to 65535), a list of them, or null",
                ));
            };
            s.xid = codes;
            s.xid.sort_unstable();
            s.xid.dedup();
        }
    }
    if !sim
        .steer_agent(id, &s)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
    {
        return Err(ApiError::not_found("simulated machine"));
    }
    Ok(ok(json!({"instance_id": id, "steering": s})))
}
