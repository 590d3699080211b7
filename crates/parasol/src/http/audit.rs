//! The audit trail: every state-changing request (creates, deletes,
//! updates, key changes, admin actions), through the API or the console, is
//! recorded with its account, key fingerprint or person, client address
//! and outcome; admins read it at `GET /v1/admin/audit`.

use axum::extract::{ConnectInfo, MatchedPath, Query, Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::auth::{Caller, KeyId, Principal};
use super::{ok, AppRef};
use crate::error::ApiError;
use crate::store::{Account, AuditEntry};

/// Largest create answer read back for the new object's id.
const ID_BODY_LIMIT: usize = 64 * 1024;

/// A state-changing API request on its way, to be recorded once answered
/// (see [`Pending::finish`]); the request layer (middleware.rs) runs it.
pub(super) struct Pending {
    method: Method,
    path: String,
    route: String,
    client_addr: Option<String>,
}

impl Pending {
    /// What the entry needs of `req`, when it is audited at all.
    pub(super) fn begin(req: &Request) -> Option<Self> {
        // Reads change nothing: they pass before anything is copied for
        // the entry (this runs on every request, the hottest reads
        // included).
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return None;
        }
        let path = req.uri().path();
        // Signing in is not an action on an account (failed sign-ins are
        // counted by the rate limiter), nor is an agent's report, and
        // MCP's transport POSTs are not actions either: each tool call is
        // audited as the API request it makes.
        let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
        let api = path.starts_with("/v1/") || path.starts_with("/admin/");
        if path == "/login"
            || path == "/mcp"
            || path == super::AGENT_REPORT
            || (route.is_none() && !api)
        {
            return None;
        }
        Some(Self {
            method: req.method().clone(),
            path: path.to_string(),
            route: route.unwrap_or("unmatched").to_string(),
            client_addr: req
                .extensions()
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        })
    }

    /// Records the entry for the answer `res`, and hands `res` on.
    pub(super) async fn finish(self, app: &AppRef, mut res: Response) -> Response {
        let Self {
            method,
            path,
            route,
            client_addr,
        } = self;
        let status = res.status().as_u16();
        let mut object_id = path_object_id(&route, &path);
        let json = res
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if object_id.is_none() && res.status().is_success() && json {
            // A create's new id is only in its answer.
            let (parts, body) = res.into_parts();
            let bytes = axum::body::to_bytes(body, ID_BODY_LIMIT)
                .await
                .unwrap_or_default();
            object_id = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string));
            res = Response::from_parts(parts, axum::body::Body::from(bytes));
        }
        let entry = AuditEntry {
            id: Uuid::new_v4().to_string(),
            at_ms: app.clock.now_ms(),
            account_id: res.extensions().get::<Caller>().map(|c| c.0.to_string()),
            key_id: res
                .extensions()
                .get::<KeyId>()
                .map(|k| k.fingerprint().to_string()),
            client_addr,
            method: method.to_string(),
            route,
            path,
            object_id,
            status: i64::from(status),
            outcome: outcome(status).to_string(),
            request_id: res
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            person_id: res
                .extensions()
                .get::<Principal>()
                .and_then(|p| p.person)
                .map(|p| p.to_string()),
            person: None,
        };
        if status == 503 {
            // The store is unreachable (or the connection caps hit):
            // writing would wait out the pool's acquire timeout a second
            // time and fail anyway, so the entry goes to the log instead.
            tracing::warn!(route = %entry.route, path = %entry.path, account = ?entry.account_id,
                client = ?entry.client_addr, "audit entry not stored: the database is unavailable");
            return res;
        }
        if let Err(e) = app.store.insert_audit(&entry).await {
            // The request is done either way; losing its audit line is
            // logged loudly rather than turned into a failure the client
            // would retry.
            tracing::error!(error = %e, route = %entry.route, "could not write the audit log");
        }
        res
    }
}

fn outcome(status: u16) -> &'static str {
    match status {
        200..=399 => "ok",
        401 | 403 | 429 => "denied",
        400..=499 => "rejected",
        _ => "failed",
    }
}

/// The `{id}` segment of `path`, where the route template has one.
fn path_object_id(route: &str, path: &str) -> Option<String> {
    let at = route.split('/').position(|s| s.starts_with('{'))?;
    path.split('/').nth(at).map(str::to_string)
}

/// Query of `GET /v1/admin/audit`.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// RFC 3339; default: the start of the retention period.
    pub since: Option<String>,
    /// RFC 3339, exclusive; default: now.
    pub until: Option<String>,
    /// At most this many entries, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

fn parse_time(field: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| {
                ApiError::invalid_field(
                    field,
                    format!("{field} must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z"),
                )
            })
    })
    .transpose()
}

/// `GET /v1/admin/audit`: the audit log, admins only.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    if !account.is_admin {
        return Err(ApiError::forbidden("this endpoint needs an admin API key"));
    }
    let now = app.clock.now_ms();
    let kept_from = now - app.audit_retention.as_millis() as i64;
    let since = parse_time("since", q.since.as_deref())?
        .unwrap_or(kept_from)
        .max(kept_from);
    let until = parse_time("until", q.until.as_deref())?.unwrap_or(i64::MAX);
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "limit must be between 1 and 1000",
        ));
    }
    let entries = app.store.audit_between(since, until, limit).await?;
    let entries: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|e| {
            let at = crate::clock::from_millis(e.at_ms);
            let mut v = serde_json::to_value(&e).expect("serializes");
            v["at"] = json!(at);
            v
        })
        .collect();
    Ok(ok(json!({ "entries": entries })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_id_comes_from_the_routes_id_segment() {
        assert_eq!(
            path_object_id("/v1/instances/{id}/delete", "/v1/instances/abc/delete").as_deref(),
            Some("abc")
        );
        assert_eq!(
            path_object_id("/v1/instances/create", "/v1/instances/create"),
            None
        );
        assert_eq!(outcome(200), "ok");
        assert_eq!(outcome(429), "denied");
        assert_eq!(outcome(409), "rejected");
        assert_eq!(outcome(503), "failed");
    }
}
