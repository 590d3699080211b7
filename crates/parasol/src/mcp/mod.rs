//! The MCP (Model Context Protocol) server at `/mcp`, so AI agents can use
//! the API as tools.
//!
//! The transport is the protocol's Streamable HTTP, stateless: every
//! JSON-RPC message is one `POST /mcp`, a request is answered with its
//! response as `application/json` (or one SSE event, for a client that
//! accepts only `text/event-stream`), and notifications get `202`. No
//! session id is issued, so any replica can answer any message, and
//! `GET`/`DELETE /mcp` (server-initiated streams, session ends) answer
//! `405` as the specification allows. The methods served are `initialize`,
//! `ping`, `tools/list` and `tools/call`.
//!
//! Authentication is the API's own (the key in `X-API-KEY`, or as
//! `Authorization: Bearer`, which MCP clients commonly send), checked before
//! any message is read, so a wrong key is refused at connection. A tool
//! call is dispatched as an internal request through the API's router with
//! the caller's key (see [`tools`]), so every rule of the API applies to it
//! unchanged.

pub mod tools;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::http::AppRef;
use crate::store::Account;

/// Protocol revisions this server speaks, newest first. Tools, their
/// annotations and results are the same in all of them.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Header in which clients repeat the negotiated revision.
const VERSION_HEADER: &str = "mcp-protocol-version";

/// The MCP server's settings (`[mcp]` in the config file).
#[derive(Debug, Clone, Copy, Default)]
pub struct McpSettings {
    /// Every caller may use only the read-only tools.
    pub read_only: bool,
}

/// What the `/mcp` handler needs: the app, and the API router that tool
/// calls are dispatched through.
#[derive(Clone)]
pub struct McpState {
    pub app: AppRef,
    pub api: Router,
}

/// Middleware: a key sent as `Authorization: Bearer` is moved to
/// `X-API-KEY`, where the API's authentication looks for it.
pub async fn bearer_key(mut req: Request, next: Next) -> Response {
    if !req.headers().contains_key(crate::http::KEY_HEADER) {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .and_then(|k| HeaderValue::from_str(k).ok());
        if let Some(key) = bearer {
            req.headers_mut().insert(crate::http::KEY_HEADER, key);
        }
    }
    next.run(req).await
}

/// `/mcp`, every method.
pub async fn serve(
    State(st): State<McpState>,
    Extension(account): Extension<Account>,
    Extension(request_id): Extension<crate::http::RequestId>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        // No server-initiated stream and no session to end: the transport
        // lets a server answer both with 405.
        let mut res = http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} /mcp is not supported: this MCP server is stateless and answers each POST directly"),
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    if let Some(refused) = check_origin(&headers) {
        return refused;
    }
    if let Some(v) = headers.get(VERSION_HEADER) {
        let v = v.to_str().unwrap_or("");
        if !PROTOCOL_VERSIONS.contains(&v) {
            return http_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "unsupported MCP-Protocol-Version {v:?}; this server speaks {}",
                    PROTOCOL_VERSIONS.join(", ")
                ),
            );
        }
    }
    let sse = wants_sse(&headers);
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let err = rpc_error(Value::Null, -32700, &format!("parse error: {e}"));
            return (StatusCode::BAD_REQUEST, axum::Json(err)).into_response();
        }
    };
    let key = headers
        .get(crate::http::KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string();
    let caller = Caller {
        st: &st,
        account: &account,
        key: &key,
        request_id: request_id.0,
    };
    let answer = match msg {
        // Batches were part of the 2025-03-26 revision; answering them
        // costs nothing.
        Value::Array(items) if !items.is_empty() => {
            let mut out = Vec::new();
            for item in items {
                if let Some(r) = caller.handle(item).await {
                    out.push(r);
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => caller.handle(other).await,
    };
    match answer {
        None => StatusCode::ACCEPTED.into_response(),
        Some(v) if sse => {
            let body = format!("event: message\ndata: {v}\n\n");
            ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
        }
        Some(v) => axum::Json(v).into_response(),
    }
}

/// A browser page must not reach a local server by DNS rebinding: a
/// request that carries an `Origin` must come from the server's own host.
fn check_origin(headers: &HeaderMap) -> Option<Response> {
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
    if !host.is_empty() && origin_host.trim_end_matches('/') == host {
        return None;
    }
    Some(http_error(
        StatusCode::FORBIDDEN,
        &format!("requests from origin {origin:?} are not accepted"),
    ))
}

/// Whether the client accepts only an event stream (it must accept both;
/// JSON is preferred when it does).
fn wants_sse(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("text/event-stream")
        && !accept.contains("application/json")
        && !accept.contains("*/*")
}

/// An HTTP-level refusal, in the API's error shape.
fn http_error(status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::FORBIDDEN => "forbidden",
        _ => "invalid_request",
    };
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// One authenticated caller's messages.
struct Caller<'a> {
    st: &'a McpState,
    account: &'a Account,
    key: &'a str,
    /// The `/mcp` request's id, given to the API requests it makes.
    request_id: String,
}

impl Caller<'_> {
    /// Answers one JSON-RPC message; `None` for notifications and for the
    /// client's responses, which need no answer.
    async fn handle(&self, msg: Value) -> Option<Value> {
        let Value::Object(obj) = msg else {
            return Some(rpc_error(
                Value::Null,
                -32600,
                "invalid request: a JSON-RPC message must be an object",
            ));
        };
        let method = obj.get("method").and_then(Value::as_str);
        let id = obj.get("id").cloned();
        let (Some(method), Some(id)) = (method, id) else {
            if method.is_none() && obj.get("id").is_none() {
                return Some(rpc_error(
                    Value::Null,
                    -32600,
                    "invalid request: no method and no id",
                ));
            }
            // A notification, or the client's answer to a request this
            // server never sends.
            return None;
        };
        if !(id.is_string() || id.is_i64() || id.is_u64()) {
            return Some(rpc_error(
                Value::Null,
                -32600,
                "invalid request: the id must be a string or an integer",
            ));
        }
        let params = obj.get("params").cloned().unwrap_or(Value::Null);
        Some(match method {
            "initialize" => rpc_result(id, self.initialize(&params)),
            "ping" => rpc_result(id, json!({})),
            "tools/list" => rpc_result(id, json!({"tools": tools::catalog().listing()})),
            "tools/call" => match self.call(&params).await {
                Ok(result) => rpc_result(id, result),
                Err((code, message)) => rpc_error(id, code, &message),
            },
            other => rpc_error(id, -32601, &format!("method not found: {other}")),
        })
    }

    fn initialize(&self, params: &Value) -> Value {
        let asked = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = if PROTOCOL_VERSIONS.contains(&asked) {
            asked
        } else {
            PROTOCOL_VERSIONS[0]
        };
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {
                "name": "parasol",
                "title": "Parasol GPU cloud broker",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "instructions": INSTRUCTIONS,
        })
    }

    /// `tools/call`: an unknown tool or malformed params are protocol
    /// errors; anything the API refuses is a tool error (`isError`).
    async fn call(&self, params: &Value) -> Result<Value, (i64, String)> {
        let name = params.get("name").and_then(Value::as_str).ok_or((
            -32602,
            "invalid params: tools/call needs a tool name".into(),
        ))?;
        let tool = tools::catalog()
            .get(name)
            .ok_or_else(|| (-32602, format!("unknown tool: {name}")))?;
        let args = params.get("arguments").cloned().unwrap_or(Value::Null);
        let read_only = self.st.app.mcp.read_only || self.account.mcp_read_only;
        let result = if read_only && !tool.kind.is_read_only() {
            let why = if self.st.app.mcp.read_only {
                "this server limits MCP clients to read-only tools"
            } else {
                "this API key is limited to read-only MCP tools"
            };
            tools::ToolResult::refused(
                "forbidden",
                format!("{why}; {name} would change or spend, so it was not run"),
            )
        } else {
            tool.call(&self.st.api, self.key, &self.request_id, args)
                .await
        };
        tracing::info!(
            tool = name,
            account = %self.account.id,
            is_error = result.is_error,
            status = result.status,
            "mcp tool call"
        );
        Ok(result.into_json())
    }
}

const INSTRUCTIONS: &str = "Parasol rents GPU machines from many clouds through one API. \
Shop with instances_types (cheapest first with sort=price), create with instances_create \
(it answers at once; poll instances_info until status is active), and delete with \
instances_delete when done: an instance bills by the hour from active until deleted. \
Tools annotated destructive spend money or delete things; ask the user first.";
