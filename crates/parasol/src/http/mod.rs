//! The HTTP API: routes, authentication, body parsing and the request log.
//!
//! Handlers validate, write the store, wake the reconciler and answer; they
//! never call a provider. Every answer is JSON, errors included: unknown
//! routes, wrong methods, oversized or malformed bodies all go through
//! [`ApiError`].

mod account;
mod accounts;
pub(crate) mod admin;
pub(crate) mod agent;
pub(crate) mod api_keys;
mod audit;
mod auth;
pub(crate) mod clusters;
mod docs;
pub(crate) mod events;
pub(crate) mod featured;
pub(crate) mod health;
pub(crate) mod instances;
mod launch;
pub(crate) mod members;
mod metrics;
pub mod middleware;
pub mod rate_limit;
mod render_cache;
pub mod roles;
pub(crate) mod sshkeys;
pub(crate) mod templates;
mod usage;
pub(crate) mod volumes;
pub(crate) mod webhooks;

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use uuid::Uuid;

pub use auth::{
    account_for_key_hash, credential_for_key_hash, hash_key, new_api_key, CachedSession, Caller,
    KeyCache, Principal, HEADER as KEY_HEADER,
};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::lifecycle::reconciler::Reconciler;
use crate::providers::catalog::Catalog;
use crate::providers::sim::Sim;
use crate::store::Store;

/// One route of a table made by [`routes!`]: its method and full path
/// template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    /// `get` or `post`, as the table names the method router.
    pub method: &'static str,
    pub path: &'static str,
}

/// Declares a router and the table of its routes from one list, so that
/// checks over every route (roles, security headers) cannot miss one:
/// `path => get(handler).post(handler)` lines make a function building
/// the router and a constant listing each method and full path.
macro_rules! routes {
    ($(#[$doc:meta])* $build:ident, $table:ident, $prefix:literal {
        $($path:literal => $($method:ident($handler:path)).+),* $(,)?
    }) => {
        $(#[$doc])*
        pub(crate) fn $build() -> axum::Router<$crate::http::AppRef> {
            axum::Router::new()
                $(.route($path, axum::routing::MethodRouter::new()$(.$method($handler))+))*
        }

        /// Every route of the router, with its method, as built.
        pub const $table: &[$crate::http::RouteEntry] = &[
            $($($crate::http::RouteEntry {
                method: stringify!($method),
                path: concat!($prefix, $path),
            }),+),*
        ];
    };
}
pub(crate) use routes;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Everything a handler can reach.
pub struct AppState {
    /// This deployment's id, carried by every machine it names at a cloud.
    pub deployment_id: String,
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub clock: Arc<Clock>,
    /// Wakes the reconciler after a write.
    pub notify: Arc<Notify>,
    pub reconciler: Arc<Reconciler>,
    /// The built-in sim, when it is enabled (admin endpoints drive it).
    pub sim: Option<Arc<Sim>>,
    /// The operator's own servers, when any are configured.
    pub hosts: Option<Arc<crate::providers::hosts::Hosts>>,
    pub keys: KeyCache,
    /// Instances as last rendered, for `GET /instances`.
    pub rendered: render_cache::RenderCache,
    /// The MCP server's guardrails.
    pub mcp: crate::mcp::McpSettings,
    /// Request rate limits.
    pub limits: rate_limit::RateLimits,
    /// Whether the API is served over HTTPS (cookies can be `Secure`).
    pub tls: bool,
    /// How long audit entries are kept.
    pub audit_retention: std::time::Duration,
    /// The console's session signing key, read from the store on first use.
    pub console_key: crate::console::SessionKey,
    /// What webhook URLs may be.
    pub webhooks: crate::webhooks::UrlPolicy,
    /// The event log's tail, for `GET /v1/events/stream`.
    pub events: Arc<crate::event_stream::EventHub>,
    /// Sign-in through OpenID Connect providers.
    pub oidc: Arc<crate::oidc::Oidc>,
    /// The machines' agents' reports, checked and stored.
    pub agent: Arc<crate::agent::Ingest>,
}

/// Where agents post their reports.
pub const AGENT_REPORT: &str = "/v1/agent/report";

/// Shared state handle.
pub type AppRef = Arc<AppState>;

/// The whole API, and the MCP server at `/mcp`, whose tool calls go
/// through the rest of it.
pub fn router(state: AppRef) -> Router {
    let api = api_router(state.clone());
    let mcp = Router::new()
        .route("/mcp", any(crate::mcp::serve))
        .route_layer(from_fn_with_state(state.clone(), auth::require_key))
        .layer(from_fn(crate::mcp::bearer_key))
        .layer(middleware::RequestLayer::log_only())
        .with_state(crate::mcp::McpState {
            app: state,
            api: api.clone(),
        });
    api.merge(mcp)
}

routes! {
    /// The account's API under `/v1`, listed once: [`V1_ROUTES`] is
    /// this table, for checks that walk every route.
    v1_routes, V1_ROUTES, "/v1" {
        "/instances" => get(instances::list),
        "/instances/types" => get(instances::types),
        "/instances/create" => post(instances::create),
        "/instances/launch" => post(launch::launch),
        "/instances/{id}/info" => get(instances::info),
        "/instances/{id}/update" => post(instances::update),
        "/instances/{id}/delete" => post(instances::delete),
        "/instances/{id}/restart" => post(instances::restart),
        "/instances/{id}/metrics" => get(agent::metrics),
        "/instances/{id}/health" => get(health::get),
        "/clusters" => get(clusters::list),
        "/clusters/types" => get(clusters::types),
        "/clusters/create" => post(clusters::create),
        "/clusters/launch" => post(launch::launch_cluster),
        "/clusters/{id}/info" => get(clusters::info),
        "/clusters/{id}/delete" => post(clusters::delete),
        "/events" => get(events::list),
        "/events/stream" => get(events::stream),
        "/volumes" => get(volumes::list),
        "/volumes/types" => get(volumes::types),
        "/volumes/create" => post(volumes::create),
        "/volumes/{id}/info" => get(volumes::info),
        "/volumes/{id}/delete" => post(volumes::delete),
        "/sshkeys" => get(sshkeys::list),
        "/sshkeys/add" => post(sshkeys::add),
        "/sshkeys/{id}/info" => get(sshkeys::info),
        "/sshkeys/{id}/setdefault" => post(sshkeys::set_default),
        "/sshkeys/{id}/delete" => post(sshkeys::delete),
        "/templates" => get(templates::list),
        "/templates/featured" => get(templates::featured),
        "/templates/save" => post(templates::save),
        "/templates/{id}/info" => get(templates::info),
        "/templates/{id}/update" => post(templates::update),
        "/templates/{id}/delete" => post(templates::delete),
        "/account" => get(account::info),
        "/admin/accounts" => get(accounts::list),
        "/admin/accounts/create" => post(accounts::create),
        "/admin/accounts/{id}/update" => post(accounts::update),
        "/admin/accounts/{id}/delete" => post(accounts::delete),
        "/usage" => get(usage::report),
        "/account/keys" => get(api_keys::list),
        "/account/keys/create" => post(api_keys::create),
        "/account/keys/personal" => post(api_keys::create_personal),
        "/account/keys/{id}/revoke" => post(api_keys::revoke),
        "/account/members" => get(members::list),
        "/account/members/invite" => post(members::invite),
        "/account/members/invites/delete" => post(members::uninvite),
        "/account/members/{id}/update" => post(members::update),
        "/account/members/{id}/remove" => post(members::remove),
        "/admin/audit" => get(audit::list),
        "/webhooks" => get(webhooks::list),
        "/webhooks/create" => post(webhooks::create),
        "/webhooks/{id}" => get(webhooks::info),
        "/webhooks/{id}/update" => post(webhooks::update),
        "/webhooks/{id}/delete" => post(webhooks::delete),
        "/webhooks/{id}/rotate-secret" => post(webhooks::rotate_secret),
        "/webhooks/{id}/test" => post(webhooks::test),
        "/webhooks/{id}/deliveries" => get(webhooks::deliveries),
    }
}

routes! {
    /// The admin extensions under `/admin` (sim control, the test clock).
    admin_routes, ADMIN_ROUTES, "/admin" {
        "/sim/machines" => get(admin::sim_machines),
        "/sim/machines/{id}/fail" => post(admin::sim_fail),
        "/sim/machines/{id}/preempt" => post(admin::sim_preempt),
        "/sim/capacity-failures" => get(admin::sim_launch_failures).post(admin::sim_fail_launches),
        "/sim/capacity-failures/clear" => post(admin::sim_clear_launch_failures),
        "/sim/agent" => post(agent::sim_agent),
        "/clock/advance" => post(admin::advance_clock),
        "/reconciler" => get(admin::reconciler),
        "/hosts" => get(admin::hosts),
    }
}

/// The HTTP API.
fn api_router(state: AppRef) -> Router {
    let v1 = v1_routes();
    let admin = admin_routes();
    let authed = Router::new()
        .nest("/v1", v1)
        .nest("/admin", admin)
        .route_layer(from_fn_with_state(state.clone(), auth::require_key));
    let console = crate::console::routes()
        .layer(from_fn_with_state(state.clone(), crate::console::guard))
        .layer(from_fn_with_state(
            state.clone(),
            crate::console::security_headers,
        ));
    Router::new()
        .merge(authed)
        .merge(console)
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(metrics::scrape))
        .route("/v1/openapi.json", get(docs::openapi))
        // An agent token, not an API key: outside the keyed routes.
        .route(AGENT_REPORT, axum::routing::post(agent::report))
        .route("/docs", get(docs::page))
        .route(
            "/agent/install.sh",
            get(crate::agent::machine::serve_installer),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::RequestLayer::full(state.clone()))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!("method {method} is not allowed on this route"),
        field: None,
    }
}

/// The id the request layer ([`middleware`]) gave a request, for handlers that make requests
/// of their own (MCP tool calls) to pass on, so the log links them.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Header carrying a request's id, both ways.
const REQUEST_ID: &str = "x-request-id";

/// The caller's request id when it is a sane token (so a proxy's id links
/// both logs), else a fresh one. Anything else is replaced, never logged.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

/// A fresh request id: a version-4 UUID from the thread's random generator.
/// `Uuid::new_v4` asks the kernel for its bytes, one system call per
/// request; these ids only need to be unique, not secret.
fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A JSON request body, parsed with errors that name the field at fault.
///
/// Bodies over [`BODY_LIMIT`] are refused with 413 before parsing; the
/// `Content-Type` header is not required, since some clients omit it.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| ApiError::too_large(BODY_LIMIT))?;
        parse_json(&bytes).map(Body)
    }
}

/// Parses a JSON body into `T`, naming the failing field in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "the request body is empty; expected a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("the request body is not valid JSON: {inner}")
            }
            _ if path == "." || path.is_empty() => format!("invalid request body: {inner}"),
            _ => format!("invalid value for {path}: {inner}"),
        };
        let err = ApiError::invalid(msg);
        if path == "." || path.is_empty() {
            err
        } else {
            err.with_field(path)
        }
    })
}

/// An id from the path; anything that is not a uuid cannot name an object,
/// so it answers 404 like an unknown id.
pub fn path_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}

/// JSON 200 answer.
pub fn ok<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

/// Unused-state helper so handlers can name the state type briefly.
pub type St = State<AppRef>;
