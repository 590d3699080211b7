//! The MCP server (`/mcp` and `parasol mcp`), driven by the official Python
//! MCP SDK as the client (`mcp_client.py`, run from the test venv that
//! `scripts/setup.sh` makes: `PARASOL_TEST_VENV`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{binary, Opts, Server, ADMIN_KEY};

const SHADEFORM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../specs/shadeform.openapi.json"
);

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/mcp_client.py");

/// The venv's Python, with the MCP SDK importable; a clear failure if not.
fn python() -> PathBuf {
    let venv = std::env::var("PARASOL_TEST_VENV").unwrap_or_else(|_| {
        panic!("PARASOL_TEST_VENV is not set: run scripts/setup.sh and export PARASOL_TEST_VENV=$PWD/target/test-venv (scripts/test.sh does both)")
    });
    let py = PathBuf::from(venv).join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import mcp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import the MCP SDK (PyPI `mcp`): run scripts/setup.sh",
        py.display()
    );
    py
}

/// How the client reaches the server.
enum Via<'a> {
    Http,
    /// `parasol mcp` with `PARASOL_URL`/`PARASOL_API_KEY`.
    Stdio(&'a tempfile::TempDir),
}

/// Runs a scenario of `mcp_client.py`: what it saw, and its stderr.
fn client(scenario: &str, s: &Server, key: &str, via: Via) -> (Value, String) {
    let mut cmd = Command::new(python());
    cmd.arg(CLIENT).arg(scenario);
    match via {
        Via::Http => {
            cmd.args(["http", &format!("{}/mcp", s.base), key]);
        }
        Via::Stdio(home) => {
            cmd.args(["stdio", binary(), &s.base, key]).arg(home.path());
        }
    }
    let out = cmd.output().expect("run the MCP client");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the MCP client failed:\n{stderr}");
    let seen = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the MCP client printed no JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (seen, stderr)
}

/// Every `operationId` of the Shadeform document.
fn shadeform_operations() -> BTreeSet<String> {
    let doc: Value = serde_yaml::from_str(
        &std::fs::read_to_string(SHADEFORM).expect("read the Shadeform document"),
    )
    .expect("parse the Shadeform document");
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op["operationId"].as_str() {
                ids.insert(id.to_string());
            }
        }
    }
    ids
}

/// The text of a tool result's first content block, parsed.
fn result_json(r: &Value) -> Value {
    let text = r["content"][0]["text"].as_str().expect("a text result");
    serde_json::from_str(text).expect("a tool result is the API's JSON")
}

/// Checks what the lifecycle scenario saw, over either transport.
async fn check_lifecycle(s: &Server, seen: &Value) {
    assert!(seen.get("error").is_none(), "{seen:#}");
    assert_eq!(seen["initialize"]["serverInfo"]["name"], "parasol");

    // Every Shadeform operation is a tool, plus Parasol's own.
    let tools = seen["tools"].as_array().unwrap();
    let by_op: std::collections::BTreeMap<&str, &Value> = tools
        .iter()
        .map(|t| (t["_meta"]["parasol/operationId"].as_str().unwrap(), t))
        .collect();
    let shadeform = shadeform_operations();
    assert_eq!(shadeform.len(), 28);
    for id in &shadeform {
        assert!(by_op.contains_key(id.as_str()), "no tool for {id}");
    }
    for id in ["Account", "Events"] {
        assert!(by_op.contains_key(id), "no tool for Parasol's {id}");
    }
    for t in tools {
        let http = t["_meta"]["parasol/http"].as_str().unwrap();
        let a = &t["annotations"];
        let name = &t["name"];
        let read_only = a["readOnlyHint"].as_bool().expect("readOnlyHint");
        let destructive = a["destructiveHint"].as_bool().expect("destructiveHint");
        assert_eq!(read_only, http.starts_with("GET "), "{name}: {a}");
        if http.ends_with("/delete") || http.ends_with("/create") {
            assert!(destructive, "{name} deletes or spends: {a}");
        }
        if read_only {
            assert!(!destructive, "{name}: {a}");
        }
        let d = t["description"].as_str().unwrap();
        assert!(
            d.contains("Free") || d.contains("Costs money"),
            "{name}: {d}"
        );
        assert_eq!(t["inputSchema"]["type"], "object", "{name}");
    }
    for spends in ["instances_create", "clusters_create", "volumes_create"] {
        let t = tools.iter().find(|t| t["name"] == spends).unwrap();
        assert!(t["description"].as_str().unwrap().contains("Costs money"));
    }

    // The create tool's input is the API's create body, from the same schema.
    let doc = s.admin().get("/v1/openapi.json").await.expect(200);
    let body = &doc["components"]["schemas"]["CreateRequest"];
    let create = by_op["InstancesCreate"];
    let fields =
        |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        fields(&create["inputSchema"]["properties"]),
        fields(&body["properties"])
    );
    assert_eq!(create["inputSchema"]["required"], body["required"]);

    // Shopping, renting, watching and deleting: the API's JSON throughout.
    assert_eq!(seen["types"]["isError"], false, "{:#}", seen["types"]);
    let types = result_json(&seen["types"]);
    let entries = types["instance_types"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries
        .iter()
        .all(|t| t["cloud"] == "massedcompute" && t["configuration"]["gpu_type"] == "A6000"));
    assert_eq!(seen["create"]["isError"], false, "{:#}", seen["create"]);
    let id = seen["create"]["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let statuses = seen["statuses"].as_array().unwrap();
    assert_eq!(statuses.last().unwrap(), "active", "{statuses:?}");
    assert_eq!(seen["delete"]["isError"], false, "{:#}", seen["delete"]);
    let info = s.admin().get(&format!("/v1/instances/{id}/info")).await;
    let status = info.body["status"].as_str().unwrap_or("").to_string();
    assert!(
        matches!(status.as_str(), "deleting" | "deleted") || info.status == 404,
        "after instances_delete the API shows {status:?} ({})",
        info.status
    );

    // API errors are tool errors carrying the API's code and message.
    let unknown = &seen["unknown_id"];
    assert_eq!(unknown["isError"], true);
    assert_eq!(result_json(unknown)["error"]["code"], "not_found");
    assert_eq!(
        unknown["structuredContent"]["error"]["message"],
        "instance not found"
    );
}

/// The log line of an MCP tool call names the tool and the account, and
/// shares its request id with the API request it made on `route`.
async fn assert_logged(s: &Server, tool: &str, route: &str) {
    let account = s.admin().get("/v1/account").await.expect(200);
    let id = account["id"].as_str().unwrap();
    let log = s.log();
    let call = log
        .lines()
        .find(|l| {
            l.contains("mcp tool call") && l.contains(&format!("tool=\"{tool}\"")) && l.contains(id)
        })
        .unwrap_or_else(|| panic!("no log line for the MCP call of {tool} by {id}:\n{log}"));
    let request_id = call
        .split("request_id=")
        .nth(1)
        .and_then(|r| r.split(['}', ' ', '"']).next())
        .unwrap_or_else(|| panic!("no request id on {call}"));
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("request_id=\"{request_id}\""))
                && l.contains(id)),
        "no API request on {route} with the MCP call's request id {request_id}:\n{log}"
    );
}

#[tokio::test]
async fn http_lists_every_operation_and_rents_a_machine_through_tools() {
    let s = Server::start(Opts::default());
    let (seen, _) = client("lifecycle", &s, ADMIN_KEY, Via::Http);
    check_lifecycle(&s, &seen).await;
    assert_logged(&s, "instances_create", "/v1/instances/create").await;
}

#[tokio::test]
async fn stdio_mode_rents_a_machine_through_parasol_mcp() {
    let s = Server::start(Opts::default());
    let home = tempfile::tempdir().unwrap();
    let (seen, _) = client("lifecycle", &s, ADMIN_KEY, Via::Stdio(&home));
    check_lifecycle(&s, &seen).await;
    assert_logged(&s, "instances_delete", "/v1/instances/{id}/delete").await;
}

/// What a read-only caller saw: a tool error for the create, and reads.
fn assert_refused(seen: &Value, why: &str) {
    assert!(seen.get("error").is_none(), "{seen:#}");
    let create = &seen["create"];
    assert_eq!(create["isError"], true, "{create:#}");
    let err = &result_json(create)["error"];
    assert_eq!(err["code"], "forbidden");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains(why) && msg.contains("instances_create"),
        "{msg}"
    );
    assert_eq!(seen["list"]["isError"], false, "{:#}", seen["list"]);
    assert_eq!(result_json(&seen["list"])["instances"], json!([]));
}

#[tokio::test]
async fn a_read_only_key_is_refused_a_create_over_both_transports() {
    let s = Server::start(Opts::default());
    let key = s.new_account_with("agent", &["--mcp-read-only"]);
    let (seen, _) = client("create", &s, &key, Via::Http);
    assert_refused(&seen, "this API key is limited to read-only MCP tools");
    let home = tempfile::tempdir().unwrap();
    let (seen, _) = client("create", &s, &key, Via::Stdio(&home));
    assert_refused(&seen, "this API key is limited to read-only MCP tools");
    // The flag limits MCP only; nothing was created by the refused calls.
    let c = s.client(&key);
    assert_eq!(
        c.get("/v1/instances").await.expect(200)["instances"],
        json!([])
    );
}

#[tokio::test]
async fn a_viewer_key_is_refused_a_create_by_its_role_as_on_the_api() {
    let s = Server::start(Opts::default());
    let made = s
        .admin()
        .post(
            "/v1/account/keys/create",
            json!({"name": "agent", "role": "viewer"}),
        )
        .await
        .expect(200);
    let key = made["api_key"].as_str().unwrap();
    let (seen, _) = client("create", &s, key, Via::Http);
    assert!(seen.get("error").is_none(), "{seen:#}");
    let create = &seen["create"];
    assert_eq!(create["isError"], true, "{create:#}");
    let err = &result_json(create)["error"];
    assert_eq!(err["code"], "forbidden", "{err:#}");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("needs the member role") && msg.contains("has the viewer role"),
        "{msg}"
    );
    assert_eq!(seen["list"]["isError"], false, "{:#}", seen["list"]);
}

#[tokio::test]
async fn the_server_setting_limits_every_mcp_client_to_read_only_tools() {
    let mut opts = Opts::default();
    opts.env
        .push(("PARASOL_MCP_READ_ONLY".into(), "true".into()));
    let s = Server::start(opts);
    let (seen, _) = client("create", &s, ADMIN_KEY, Via::Http);
    assert_refused(&seen, "this server limits MCP clients to read-only tools");
}

#[tokio::test]
async fn a_wrong_key_is_refused_at_connection_over_both_transports() {
    let s = Server::start(Opts::default());
    let (seen, _) = client("connect", &s, "psl_not_a_key", Via::Http);
    let err = seen["error"]
        .as_str()
        .unwrap_or_else(|| panic!("connected with a wrong key: {seen:#}"));
    assert!(err.contains("401"), "{err}");
    assert!(seen.get("initialize").is_none());

    let home = tempfile::tempdir().unwrap();
    let (seen, stderr) = client("connect", &s, "psl_not_a_key", Via::Stdio(&home));
    assert!(
        seen.get("error").is_some(),
        "connected with a wrong key: {seen:#}"
    );
    assert!(seen.get("initialize").is_none());
    assert!(
        stderr.contains("the server refused the API key (401)"),
        "parasol mcp should say why: {stderr}"
    );
}

/// The transport's rules a stock client does not exercise.
#[tokio::test]
async fn the_transport_follows_the_streamable_http_rules() {
    let s = Server::start(Opts::default());
    let http = reqwest::Client::new();
    let url = format!("{}/mcp", s.base);
    let post = |body: Value, accept: &'static str| {
        http.post(&url)
            .header("x-api-key", ADMIN_KEY)
            .header("accept", accept)
            .json(&body)
    };
    let both = "application/json, text/event-stream";

    // A request gets its response as JSON; a notification gets 202.
    let r = post(json!({"jsonrpc": "2.0", "id": "a", "method": "ping"}), both)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(
        r.headers().get("mcp-session-id").is_none(),
        "stateless: no session"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"jsonrpc": "2.0", "id": "a", "result": {}})
    );
    let r = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        both,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.bytes().await.unwrap().is_empty());

    // A client that takes only an event stream gets one event.
    let r = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
        "text/event-stream",
    )
    .send()
    .await
    .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect(&text);
    assert_eq!(serde_json::from_str::<Value>(data).unwrap()["id"], 2);

    // Protocol errors: unknown method and tool, bad JSON, a version the
    // server does not speak.
    let r: Value = post(
        json!({"jsonrpc": "2.0", "id": 3, "method": "resources/list"}),
        both,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r["error"]["code"], -32601);
    let r: Value = post(
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "rm_rf"}}),
        both,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r["error"]["code"], -32602);
    assert!(r["error"]["message"].as_str().unwrap().contains("rm_rf"));
    let r = http
        .post(&url)
        .header("x-api-key", ADMIN_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32700);
    let r = post(json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}), both)
        .header("mcp-protocol-version", "1999-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Bad arguments are tool errors naming the field, like the API's.
    let r: Value = post(
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
               "params": {"name": "instances_info", "arguments": {"id": "x", "colour": "red"}}}),
        both,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r["result"]["isError"], true);
    assert_eq!(r["result"]["structuredContent"]["error"]["field"], "colour");
    let r: Value = post(
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "ssh_keys_add", "arguments": {"name": "k"}}}),
        both,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r["result"]["isError"], true);
    assert_eq!(
        r["result"]["structuredContent"]["error"]["code"],
        "invalid_request"
    );

    // No server-initiated stream, no session to end; no key, no entry.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = http
            .request(method.clone(), &url)
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "POST");
    }
    let r = http
        .post(&url)
        .json(&json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    // A page in a browser on another origin is refused, key or not.
    let r = post(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}), both)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
