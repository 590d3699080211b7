//! The HTTP client: one server, one key, and the mapping of every failure
//! onto one line a person can act on.

use std::fmt;
use std::time::Duration;

use parasol_api::ErrorBody;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::profile::Profile;

/// A failure of a client command: printed as `parasol: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        CliError(message.into())
    }
}

/// A successful answer: the raw body, kept for `-o json`.
pub struct Answer {
    pub bytes: Vec<u8>,
}

impl Answer {
    /// The body as a wire type.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, CliError> {
        serde_json::from_slice(&self.bytes).map_err(|e| {
            CliError::new(format!(
                "the server's answer is not what this CLI expects ({e}); is the URL a Parasol server of a matching version?"
            ))
        })
    }

    /// The body as text, exactly as received.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A client bound to one server and key.
pub struct Api {
    http: reqwest::Client,
    /// Server root, without a trailing slash (`http://host:8080`).
    pub base: String,
    key: String,
    /// Where the URL and key came from, for `whoami`.
    pub profile: Profile,
}

impl Api {
    /// A client for the configured server (config file, then environment).
    pub fn from_profile() -> Result<Api, CliError> {
        let profile = Profile::load()?;
        Api::new(profile)
    }

    /// A client for an explicit profile.
    pub fn new(profile: Profile) -> Result<Api, CliError> {
        let base = normalize_url(&profile.url)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("parasol-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::new(format!("cannot build an HTTP client: {e}")))?;
        Ok(Api {
            http,
            base,
            key: profile.api_key.clone(),
            profile,
        })
    }

    /// `GET /v1{path}`.
    pub async fn get(&self, path: &str) -> Result<Answer, CliError> {
        self.send(Method::GET, path, None::<&()>, &[]).await
    }

    /// `GET /v1{path}` with query parameters.
    pub async fn get_query(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Answer, CliError> {
        self.send(Method::GET, path, None::<&()>, query).await
    }

    /// `POST /v1{path}` with a JSON body (or none).
    pub async fn post<B: Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, CliError> {
        self.send(Method::POST, path, body, &[]).await
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        query: &[(&str, String)],
    ) -> Result<Answer, CliError> {
        let url = format!("{}/v1{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .header("X-API-KEY", &self.key)
            .header("accept", "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?
            .to_vec();
        if status.is_success() {
            Ok(Answer { bytes })
        } else {
            Err(api_error(status, &bytes))
        }
    }

    /// `POST /mcp` with one JSON-RPC message, as received: the status, the
    /// content type and the body of the answer, whatever the status.
    pub async fn post_mcp(
        &self,
        message: Vec<u8>,
        protocol_version: Option<&str>,
    ) -> Result<(StatusCode, String, Vec<u8>), CliError> {
        let mut req = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("X-API-KEY", &self.key)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(message);
        if let Some(v) = protocol_version {
            req = req.header("mcp-protocol-version", v);
        }
        let res = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = res.status();
        let kind = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?
            .to_vec();
        Ok((status, kind, bytes))
    }

    /// `GET /v1{path}` as a stream of server-sent events: the response once
    /// its head is in, to be read chunk by chunk. No overall timeout (a
    /// stream lasts), but a read that waits longer than [`STREAM_SILENCE`]
    /// (well past the server's 15 s heartbeat) fails as a lost connection.
    pub async fn open_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, StreamError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(STREAM_SILENCE)
            .user_agent(concat!("parasol-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                StreamError::Fatal(CliError::new(format!("cannot build an HTTP client: {e}")))
            })?;
        let mut req = http
            .get(format!("{}/v1{path}", self.base))
            .header("X-API-KEY", &self.key)
            .header("accept", "text/event-stream");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req
            .send()
            .await
            .map_err(|e| StreamError::Transient(self.transport_error(&e)))?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let bytes = res.bytes().await.unwrap_or_default();
        let e = api_error(status, &bytes);
        // Overload and outages pass; a refused key or request does not.
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(StreamError::Transient(e))
        } else {
            Err(StreamError::Fatal(e))
        }
    }

    /// A transport failure as one line.
    pub fn transport_error(&self, e: &reqwest::Error) -> CliError {
        let what = if e.is_timeout() {
            "the request timed out".to_string()
        } else {
            root_cause(e)
        };
        CliError::new(format!(
            "cannot reach the Parasol server at {}: {what}",
            self.base
        ))
    }
}

/// Longest a stream may stay silent before the CLI treats its connection
/// as lost.
pub const STREAM_SILENCE: Duration = Duration::from_secs(45);

/// Why a stream could not be opened.
#[derive(Debug)]
pub enum StreamError {
    /// Worth trying again (no connection, overload, an outage).
    Transient(CliError),
    /// Trying again would fail the same way (a refused key or request).
    Fatal(CliError),
}

/// Checks and trims a server URL.
pub fn normalize_url(raw: &str) -> Result<String, CliError> {
    let url = raw.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        CliError::new(format!(
            "the server URL {raw:?} is not valid ({e}); expected something like http://127.0.0.1:8080"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CliError::new(format!(
            "the server URL {raw:?} must start with http:// or https://"
        )));
    }
    // A URL ending in /v1 is a natural thing to paste; the client adds it.
    Ok(url.strip_suffix("/v1").unwrap_or(url).to_string())
}

/// The innermost cause, which for a refused connection is the useful part
/// ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// One line for an API error answer.
pub fn api_error(status: StatusCode, bytes: &[u8]) -> CliError {
    let detail = serde_json::from_slice::<ErrorBody>(bytes)
        .ok()
        .map(|b| b.error);
    let message = detail
        .as_ref()
        .map(|d| d.message.clone())
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim();
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no details")
                    .to_string()
            } else {
                text.chars().take(200).collect()
            }
        });
    let line = match status {
        StatusCode::UNAUTHORIZED => format!(
            "the server refused the API key (401): {message}; run `parasol configure` or set PARASOL_API_KEY"
        ),
        StatusCode::FORBIDDEN => format!("forbidden (403): {message}"),
        StatusCode::NOT_FOUND => format!("not found (404): {message}"),
        StatusCode::BAD_REQUEST => match detail.as_ref().and_then(|d| d.field.as_deref()) {
            Some(field) => format!("invalid {field} (400): {message}"),
            None => format!("invalid request (400): {message}"),
        },
        StatusCode::CONFLICT => {
            let what = detail
                .as_ref()
                .map(|d| d.code.replace('_', " "))
                .unwrap_or_else(|| "conflict".to_string());
            format!("{what} (409): {message}")
        }
        s => format!("the server answered {}: {message}", s.as_u16()),
    };
    CliError::new(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_name_the_field_and_the_status() {
        let body =
            br#"{"error":{"code":"invalid_request","message":"name is too long","field":"name"}}"#;
        assert_eq!(
            api_error(StatusCode::BAD_REQUEST, body).0,
            "invalid name (400): name is too long"
        );
        let body = br#"{"error":{"code":"not_found","message":"instance not found"}}"#;
        assert_eq!(
            api_error(StatusCode::NOT_FOUND, body).0,
            "not found (404): instance not found"
        );
        assert!(api_error(StatusCode::BAD_GATEWAY, b"<html>")
            .0
            .contains("502: <html>"));
    }

    #[test]
    fn urls_lose_trailing_slashes_and_v1() {
        assert_eq!(normalize_url("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(normalize_url("http://h:1/v1/").unwrap(), "http://h:1");
        assert!(normalize_url("h:1").is_err());
        assert!(normalize_url("not a url").is_err());
    }
}
