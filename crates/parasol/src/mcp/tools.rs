//! The MCP tools: one per operation of `/v1/openapi.json`, built from that
//! document, so the API's wire types are the one source of every tool's
//! input schema.
//!
//! A tool's input is the operation's path parameter, its query parameters
//! and its request body's properties, side by side in one object. A call
//! is turned back into the operation's HTTP request and sent through the
//! API's router with the caller's key: authentication, validation, tenancy
//! and every other rule apply exactly as over HTTP, and the tool's result
//! is the API's JSON.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

/// Largest API answer a tool returns (an instance list can be long).
const ANSWER_LIMIT: usize = 64 * 1024 * 1024;

/// What a tool does to the world, which sets its annotations and whether a
/// read-only caller may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads only.
    Read,
    /// Changes settings; spends nothing.
    Write,
    /// Starts spending money.
    Spend,
    /// Deletes or interrupts something.
    Destroy,
}

impl Kind {
    /// Whether a read-only caller may use it.
    pub fn is_read_only(self) -> bool {
        self == Kind::Read
    }
}

/// One tool, and the operation it calls.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    /// The operation's `operationId` in `/v1/openapi.json`.
    pub operation_id: String,
    pub method: Method,
    /// Path under `/v1`, with its `{parameter}`.
    pub path: String,
    pub kind: Kind,
    path_param: Option<String>,
    query: Vec<String>,
    has_body: bool,
    /// The tool's entry in `tools/list`.
    listing: Value,
}

/// Every tool, by name.
pub struct Catalog {
    tools: BTreeMap<String, Tool>,
}

impl Catalog {
    /// A tool by name.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.get(name)
    }

    /// The answer of `tools/list`.
    pub fn listing(&self) -> Vec<Value> {
        self.tools.values().map(|t| t.listing.clone()).collect()
    }

    /// Every tool.
    pub fn tools(&self) -> impl Iterator<Item = &Tool> {
        self.tools.values()
    }
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| build(crate::openapi::document()));

/// The tools, built once from the OpenAPI document.
pub fn catalog() -> &'static Catalog {
    &CATALOG
}

/// `InstancesCreate` → `instances_create`, `SshKeysSetDefault` →
/// `ssh_keys_set_default`.
fn snake(id: &str) -> String {
    let mut out = String::new();
    for (i, c) in id.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What each operation does to the world and what it costs, for the
/// tool's annotations and description. A GET not named here reads; any
/// other operation not named here is taken to spend, so a new endpoint is
/// never offered to a read-only caller by mistake.
fn effect(id: &str, method: &Method) -> (Kind, &'static str) {
    match id {
        "InstancesLaunch" => (
            Kind::Spend,
            "Costs money: rents the cheapest instance of any cloud that meets the requirements, billed at that offer's hourly price from when it becomes active until it is deleted; with dry_run: true it only lists the candidates and is free.",
        ),
        "ClustersLaunch" => (
            Kind::Spend,
            "Costs money: every node bills at its type's hourly price until the cluster is deleted; with dry_run: true it only lists the candidates and is free.",
        ),
        "InstancesCreate" => (
            Kind::Spend,
            "Costs money: the instance bills at its type's hourly price (see instances_types) from when it becomes active until it is deleted. Answers at once with the id; poll instances_info until status is active.",
        ),
        "ClustersCreate" => (
            Kind::Spend,
            "Costs money: every node bills at its type's hourly price (see clusters_types) until the cluster is deleted.",
        ),
        "VolumesCreate" => (
            Kind::Spend,
            "Costs money: the volume bills at price_per_gb_per_hour times its size (see volumes_types) until it is deleted.",
        ),
        "InstancesDelete" => (
            Kind::Destroy,
            "Irreversible: the machine and its local disk are gone. Free: billing stops at once.",
        ),
        "ClustersDelete" => (
            Kind::Destroy,
            "Irreversible: every node is deleted. Free: billing stops at once.",
        ),
        "VolumesDelete" => (
            Kind::Destroy,
            "Irreversible: the volume's data is gone. Free: billing stops at once.",
        ),
        "InstancesRestart" => (
            Kind::Destroy,
            "Interrupts whatever runs on the instance; billing continues. Free in itself.",
        ),
        "SshKeysDelete" | "TemplatesDelete" | "WebhooksDelete" => {
            (Kind::Destroy, "Irreversible. Free.")
        }
        "WebhooksTest" => (
            Kind::Write,
            "Free: sends the endpoint a ping event and changes nothing.",
        ),
        "InstancesUpdate" | "SshKeysAdd" | "SshKeysSetDefault" | "TemplatesSave"
        | "TemplatesUpdate" => (Kind::Write, "Free: changes settings only."),
        _ if *method == Method::GET => (Kind::Read, "Free: reads only."),
        _ => (Kind::Spend, "May cost money."),
    }
}

fn annotations(kind: Kind, id: &str, title: &str) -> Value {
    // Deletes and restarts of rented things reach a cloud; settings and
    // keys stay in Parasol.
    let open_world = matches!(kind, Kind::Spend)
        || matches!(
            id,
            "InstancesDelete" | "ClustersDelete" | "VolumesDelete" | "InstancesRestart"
        );
    let idempotent = match kind {
        Kind::Read => true,
        Kind::Spend => false,
        Kind::Destroy => id != "InstancesRestart",
        Kind::Write => matches!(
            id,
            "InstancesUpdate" | "SshKeysSetDefault" | "TemplatesUpdate"
        ),
    };
    json!({
        "title": title,
        "readOnlyHint": kind == Kind::Read,
        "destructiveHint": matches!(kind, Kind::Spend | Kind::Destroy),
        "idempotentHint": idempotent,
        "openWorldHint": open_world,
    })
}

/// Operations that are not tools: an agent may see the account's API
/// keys, its usage and (with an admin key) the accounts, but minting a
/// credential that outlives its session, revoking the keys people use, and
/// changing who may spend how much (an agent could lift its own budget) are
/// left to people; so is where the account's events are sent (a webhook's
/// URL) and the secrets that sign them, and who belongs to the account
/// with which role (an agent could invite an outsider as owner): it may
/// list the members, not change them.
const NOT_TOOLS: &[&str] = &[
    "WebhooksCreate",
    "WebhooksUpdate",
    "WebhooksRotateSecret",
    "AccountKeysCreate",
    "AccountKeysPersonal",
    "AccountKeysRevoke",
    "AccountMembersInvite",
    "AccountMembersInvitesDelete",
    "AccountMembersUpdate",
    "AccountMembersRemove",
    "AdminAccountsCreate",
    "AdminAccountsUpdate",
    "AdminAccountsDelete",
];

fn build(doc: &Value) -> Catalog {
    let components = doc["components"]["schemas"].clone();
    let mut tools = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                continue;
            };
            let Some(id) = op["operationId"].as_str() else {
                continue;
            };
            if NOT_TOOLS.contains(&id) {
                continue;
            }
            let tool = tool(&components, path, method, id, op);
            tools.insert(tool.name.clone(), tool);
        }
    }
    Catalog { tools }
}

fn tool(components: &Value, path: &str, method: Method, id: &str, op: &Value) -> Tool {
    let name = snake(id);
    let summary = op["summary"].as_str().unwrap_or("");
    let (kind, cost) = effect(id, &method);
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut path_param = None;
    let mut query = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let Some(pname) = p["name"].as_str() else {
            continue;
        };
        let mut schema = p["schema"].clone();
        match p["in"].as_str() {
            Some("path") => {
                schema["description"] = json!(format!("Id of the {}.", thing(path)));
                required.push(json!(pname));
                path_param = Some(pname.to_string());
            }
            Some("query") => {
                if let Some(d) = p["description"].as_str() {
                    schema["description"] = json!(d);
                }
                query.push(pname.to_string());
            }
            _ => continue,
        }
        properties.insert(pname.to_string(), schema);
    }
    let mut body_ref = None;
    if let Some(r) = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() {
        let body_name = r.rsplit('/').next().unwrap_or(r);
        let body = &components[body_name];
        for (k, v) in body["properties"].as_object().into_iter().flatten() {
            properties.insert(k.clone(), v.clone());
        }
        required.extend(body["required"].as_array().into_iter().flatten().cloned());
        body_ref = Some(body_name.to_string());
    }
    let mut schema = json!({
        "type": "object",
        "properties": Value::Object(properties),
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    let defs = referenced(components, &schema);
    if !defs.is_empty() {
        schema["$defs"] = Value::Object(defs);
    }
    let schema = rebase_refs(schema);
    let title = title(id);
    let http = format!("{method} /v1{path}");
    let description = match &body_ref {
        Some(b) => format!(
            "{summary} {cost} Calls {http}; its body ({b}) is this tool's input besides the id."
        ),
        None => format!("{summary} {cost} Calls {http}."),
    };
    let listing = json!({
        "name": name,
        "title": title,
        "description": description,
        "inputSchema": schema,
        "annotations": annotations(kind, id, &title),
        "_meta": {"parasol/operationId": id, "parasol/http": http},
    });
    Tool {
        name,
        operation_id: id.to_string(),
        method,
        path: path.to_string(),
        kind,
        path_param,
        query,
        has_body: body_ref.is_some(),
        listing,
    }
}

/// `/instances/{id}/info` → `instance`, for the id's description.
fn thing(path: &str) -> &'static str {
    match path.split('/').nth(1).unwrap_or("") {
        "instances" => "instance",
        "clusters" => "cluster",
        "sshkeys" => "SSH key",
        "volumes" => "volume",
        "templates" => "template",
        "webhooks" => "webhook",
        _ => "object",
    }
}

/// `SshKeysSetDefault` → `Ssh keys set default`.
fn title(id: &str) -> String {
    let words = snake(id).replace('_', " ");
    let mut c = words.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => words,
    }
}

/// Every component schema `schema` reaches, directly or through others.
fn referenced(components: &Value, schema: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let mut todo = Vec::new();
    refs(schema, &mut todo);
    while let Some(name) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let s = components[&name].clone();
        refs(&s, &mut todo);
        out.insert(name, s);
    }
    out
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                if let Some(n) = r.strip_prefix("#/components/schemas/") {
                    out.push(n.to_string());
                }
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// Points references at the tool schema's own `$defs`, so each input
/// schema stands alone.
fn rebase_refs(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, x)| {
                    let x = match (k.as_str(), x) {
                        ("$ref", Value::String(s)) => {
                            Value::String(s.replacen("#/components/schemas/", "#/$defs/", 1))
                        }
                        (_, x) => rebase_refs(x),
                    };
                    (k, x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(rebase_refs).collect()),
        other => other,
    }
}

/// A tool's outcome.
pub struct ToolResult {
    pub is_error: bool,
    /// The API's HTTP status (0: refused before any request).
    pub status: u16,
    /// The API's JSON (or its text, when it is not JSON).
    pub body: Value,
}

impl ToolResult {
    /// A refusal in the API's error shape, without calling it.
    pub fn refused(code: &str, message: impl Into<String>) -> ToolResult {
        Self::refused_field(code, message, None)
    }

    fn refused_field(code: &str, message: impl Into<String>, field: Option<&str>) -> ToolResult {
        let mut error = json!({"code": code, "message": message.into()});
        if let Some(f) = field {
            error["field"] = json!(f);
        }
        ToolResult {
            is_error: true,
            status: 0,
            body: json!({ "error": error }),
        }
    }

    /// The `tools/call` result: the JSON as text (every client shows it)
    /// and, for an object, as structured content too.
    pub fn into_json(self) -> Value {
        let text = match &self.body {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let mut out = json!({
            "content": [{"type": "text", "text": text}],
            "isError": self.is_error,
        });
        if self.body.is_object() {
            out["structuredContent"] = self.body;
        }
        out
    }
}

impl Tool {
    /// Runs the tool as `key`'s request through `api`.
    pub async fn call(&self, api: &Router, key: &str, request_id: &str, args: Value) -> ToolResult {
        let mut args = match args {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => return ToolResult::refused("invalid_request", "the arguments must be an object"),
        };
        let mut path = self.path.clone();
        if let Some(p) = &self.path_param {
            let id = match args.remove(p) {
                Some(Value::String(s)) if !s.trim().is_empty() => s,
                Some(_) => {
                    return ToolResult::refused_field(
                        "invalid_request",
                        format!("{p} must be a string"),
                        Some(p),
                    )
                }
                None => {
                    return ToolResult::refused_field(
                        "invalid_request",
                        format!("{p} is required"),
                        Some(p),
                    )
                }
            };
            path = path.replace(&format!("{{{p}}}"), &encode(id.trim()));
        }
        let mut query = Vec::new();
        for q in &self.query {
            match args.remove(q) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => query.push(format!("{q}={}", encode(&s))),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                    query.push(format!("{q}={}", encode(&v.to_string())))
                }
                Some(_) => {
                    return ToolResult::refused_field(
                        "invalid_request",
                        format!("{q} must be a string"),
                        Some(q),
                    )
                }
            }
        }
        let body = if self.has_body {
            Body::from(Value::Object(std::mem::take(&mut args)).to_string())
        } else {
            Body::empty()
        };
        if let Some(extra) = args.keys().next() {
            return ToolResult::refused_field(
                "invalid_request",
                format!("{} takes no argument named {extra}", self.name),
                Some(extra),
            );
        }
        let mut uri = format!("/v1{path}");
        if !query.is_empty() {
            uri = format!("{uri}?{}", query.join("&"));
        }
        let req = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .header(crate::http::KEY_HEADER, key)
            .header("content-type", "application/json")
            .header("x-request-id", request_id);
        let req = match req.body(body) {
            Ok(r) => r,
            Err(e) => return ToolResult::refused("invalid_request", format!("bad request: {e}")),
        };
        let res = match api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = res.status();
        let bytes = match axum::body::to_bytes(res.into_body(), ANSWER_LIMIT).await {
            Ok(b) => b,
            Err(e) => {
                return ToolResult::refused("internal", format!("reading the API's answer: {e}"))
            }
        };
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        ToolResult {
            is_error: !status.is_success(),
            status: status.as_u16(),
            body,
        }
    }
}

/// Percent-encodes all but unreserved characters, for a path segment or a
/// query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_a_tool_with_a_standalone_schema() {
        let doc = crate::openapi::document();
        let ops: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        let cat = catalog();
        assert_eq!(cat.tools().count(), ops - NOT_TOOLS.len());
        assert!(cat.get("account_keys").is_some());
        assert!(cat.get("account_keys_create").is_none());
        assert_eq!(cat.get("account_members").unwrap().kind, Kind::Read);
        assert!(cat.get("account_members_invite").is_none());
        for t in cat.tools() {
            let text = t.listing["inputSchema"].to_string();
            assert!(!text.contains("#/components/"), "{}: {text}", t.name);
            for piece in text.split("\"#/$defs/").skip(1) {
                let name = &piece[..piece.find('"').unwrap()];
                assert!(
                    t.listing["inputSchema"]["$defs"].get(name).is_some(),
                    "{} references {name} without defining it",
                    t.name
                );
            }
        }
        let create = cat.get("instances_create").unwrap();
        assert_eq!(create.kind, Kind::Spend);
        let req = create.listing["inputSchema"]["required"]
            .as_array()
            .unwrap();
        assert!(req.contains(&json!("cloud")) && req.contains(&json!("shade_instance_type")));
        let update = cat.get("instances_update").unwrap();
        assert_eq!(
            update.listing["inputSchema"]["required"],
            json!(["id"]),
            "the path id is required, the body's fields are optional"
        );
        assert_eq!(cat.get("ssh_keys_set_default").unwrap().kind, Kind::Write);
        assert_eq!(cat.get("instances_types").unwrap().query.len(), 7);
    }

    #[test]
    fn names_and_encoding() {
        assert_eq!(snake("SshKeysSetDefault"), "ssh_keys_set_default");
        assert_eq!(title("InstancesTypes"), "Instances types");
        assert_eq!(encode("a b/c?"), "a%20b%2Fc%3F");
    }
}
