//! `parasol mcp`: the MCP server on stdio, for desktop agents that start
//! their servers as subprocesses.
//!
//! It is a relay: each newline-delimited JSON-RPC message from stdin is
//! posted to the configured server's `/mcp` with the configured key, and
//! the answer is written to stdout, one message per line. The tools, their
//! guardrails and their logging are therefore the server's, identical over
//! both transports. Nothing but protocol messages goes to stdout; problems
//! go to stderr.

use std::process::ExitCode;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, Write};

use super::client::{Api, CliError};

/// Relays stdin to the server's `/mcp` until stdin closes.
pub async fn run(api: &Api) -> Result<ExitCode, CliError> {
    // A wrong key or an unreachable server is refused before the client
    // speaks, so the agent's log shows why the server "did not start".
    api.get("/account").await?;
    // Blocking reads on a thread of their own (tokio's stdin would need a
    // feature, and a rebuild of everything on tokio, for one loop).
    let (tx, mut lines) = tokio::sync::mpsc::channel::<std::io::Result<String>>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut version: Option<String> = None;
    while let Some(line) = lines.recv().await {
        let line = line.map_err(|e| CliError::new(format!("reading stdin: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let sent: Option<Value> = serde_json::from_str(&line).ok();
        let answers = match api.post_mcp(line.into_bytes(), version.as_deref()).await {
            Ok((status, kind, body)) => relay(status, &kind, &body, sent.as_ref()),
            Err(e) => failure(sent.as_ref(), &e.0),
        };
        for answer in answers {
            if version.is_none() {
                version = answer["result"]["protocolVersion"]
                    .as_str()
                    .map(str::to_string);
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{answer}")
                .and_then(|()| out.flush())
                .map_err(|e| CliError::new(format!("writing stdout: {e}")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The messages to write for one HTTP answer.
fn relay(status: StatusCode, kind: &str, body: &[u8], sent: Option<&Value>) -> Vec<Value> {
    if status == StatusCode::ACCEPTED {
        return vec![];
    }
    let parsed: Vec<Value> = if kind.starts_with("text/event-stream") {
        String::from_utf8_lossy(body)
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_slice(body).ok().into_iter().collect()
    };
    let is_rpc = |v: &Value| v.get("jsonrpc").is_some() || v.is_array();
    if status.is_success() || parsed.iter().any(is_rpc) {
        return parsed;
    }
    // An HTTP refusal (401, 403, 400) names its cause in the API's error
    // shape; the client waiting on a request gets it as a JSON-RPC error.
    let message = parsed
        .first()
        .and_then(|v| v["error"]["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    failure(
        sent,
        &format!("the Parasol server answered {}: {message}", status.as_u16()),
    )
}

/// A JSON-RPC error for the request that failed (notifications get none).
fn failure(sent: Option<&Value>, message: &str) -> Vec<Value> {
    eprintln!("parasol mcp: {message}");
    match sent.and_then(|m| m.get("id")) {
        Some(id) if sent.is_some_and(|m| m.get("method").is_some()) => {
            vec![json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": message}})]
        }
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_refusals_become_errors_of_the_request() {
        let sent = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
        let out = relay(
            StatusCode::UNAUTHORIZED,
            "application/json",
            br#"{"error":{"code":"unauthorized","message":"the API key is not valid"}}"#,
            Some(&sent),
        );
        assert_eq!(out[0]["id"], 7);
        assert!(out[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("401: the API key is not valid"));
        let sse = relay(
            StatusCode::OK,
            "text/event-stream",
            b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
            None,
        );
        assert_eq!(sse, vec![json!({"jsonrpc": "2.0", "id": 1, "result": {}})]);
        assert!(relay(StatusCode::ACCEPTED, "", b"", None).is_empty());
    }
}
