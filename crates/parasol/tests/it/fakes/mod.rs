//! Fake clouds: HTTP servers inside the test process that answer the paths
//! of each provider's public API with the shapes its documentation gives,
//! record every request, and inject the faults a test asks for.
//!
//! Each fake is one `Cloud` behind a catch-all axum handler on
//! `127.0.0.1:0`; the server under test reaches it only because the test
//! sets `PARASOL_<CLOUD>_URL`.
//!
//! AWS is the exception: the real moto EC2 server stands in for it
//! ([`moto`]), behind a recording, fault-injecting proxy ([`aws_proxy`]).
//!
//! A fake is held to its provider's published API document ([`openapi`]):
//! every request it receives and every answer it serves is checked against
//! it, and a mismatch fails the test that caused it, naming the request
//! and the rule it broke (see [`FakeServer::violations`]).

pub mod aws_proxy;
pub mod azure;
pub mod digitalocean;
pub mod gcp;
pub mod hyperstack;
pub mod lambda;
pub mod moto;
pub mod openapi;
pub mod runpod;
pub mod vastai;
pub mod verda;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: String,
    /// Header names lower-case.
    pub headers: BTreeMap<String, String>,
    /// The JSON body, `Null` when there was none.
    pub body: Value,
}

impl Recorded {
    /// `"POST /api/v1/instance-operations/launch"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An answer.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    pub retry_after: Option<u64>,
    /// Further headers (a cloud's rate-limit headers).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            content_type: "application/json",
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
            content_type: "text/plain",
            retry_after: None,
            headers: Vec::new(),
        }
    }
}

/// What a fake cloud does with a request.
pub trait Cloud: Send + 'static {
    /// Answers a request (already recorded).
    fn handle(&mut self, req: &Recorded) -> Reply;
    /// The body the cloud sends with a 429.
    fn rate_limited(&self) -> Value;
    /// The body the cloud sends with a 5xx.
    fn server_error(&self) -> Value;
    /// Headers beside `Retry-After` that the cloud sends with a 429.
    fn rate_limit_headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// The provider's published API documents the fake is held to; empty
    /// where the provider publishes none (Verda: its fake is driven by the
    /// provider's official client instead).
    fn documents(&self) -> Vec<&'static openapi::Document> {
        Vec::new()
    }
    /// Whether `path` is served outside every document, and so checked by
    /// other means (RunPod's GraphQL API, which has no published document).
    fn undocumented(&self, _path: &str) -> bool {
        false
    }
}

/// Faults every fake can inject, checked before the cloud sees a request.
#[derive(Default)]
pub struct Faults {
    /// The next N requests (after the token endpoint) get 429 with
    /// `Retry-After: 1`.
    pub rate_limit_next: u32,
    /// Those 429s come without `Retry-After` (the client must back off on
    /// its own).
    pub rate_limit_without_retry_after: bool,
    /// The next N requests (after the token endpoint), whatever their path,
    /// get 500.
    pub server_error_next: u32,
    /// `"METHOD /path"` → how many of the next such requests get 500.
    pub server_error: BTreeMap<String, u32>,
    /// `"METHOD /path"` → how many of the next such requests are handled
    /// (the cloud acts on them) but answered with 500 anyway, as when the
    /// answer is lost.
    pub lose_answer: BTreeMap<String, u32>,
}

/// A running fake.
pub struct FakeServer<C> {
    /// Root URL (`http://127.0.0.1:port`).
    pub url: String,
    pub cloud: Arc<Mutex<C>>,
    pub faults: Arc<Mutex<Faults>>,
    pub log: Arc<Mutex<Vec<Recorded>>>,
    /// Every way a request or an answer broke the provider's document.
    violations: Arc<Mutex<Vec<String>>>,
}

impl<C: Cloud> FakeServer<C> {
    /// Serves `cloud` on an ephemeral port until the test process exits.
    pub async fn start(cloud: C) -> FakeServer<C> {
        let cloud = Arc::new(Mutex::new(cloud));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let (c, f, l, v) = (
            cloud.clone(),
            faults.clone(),
            log.clone(),
            violations.clone(),
        );
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (c, f, l, v) = (c.clone(), f.clone(), l.clone(), v.clone());
                async move { answer(&c, &f, &l, &v, method, uri, headers, body) }
            },
        );
        // Its own thread and runtime: tests block their runtime while the
        // server under test starts, and the server calls the fake then.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(format!("http://{}", listener.local_addr().unwrap()))
                    .unwrap();
                axum::serve(listener, app).await.ok();
            });
        });
        let url = rx.recv().unwrap();
        FakeServer {
            url,
            cloud,
            faults,
            log,
            violations,
        }
    }

    /// Every way a request the fake received, or an answer it served,
    /// broke the provider's document, one line each.
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    /// The violations so far, forgotten: for a test that breaks the
    /// document on purpose.
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut *self.violations.lock().unwrap())
    }

    /// Panics with every violation of the provider's document so far.
    pub fn assert_documented(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "the fake saw {} request(s) or answer(s) its provider's document does not allow:\n{}",
            v.len(),
            v.join("\n")
        );
    }

    /// Every request so far. Panics first if any broke the provider's
    /// document, so the next assertion on the log names the broken rule.
    pub fn requests(&self) -> Vec<Recorded> {
        self.assert_documented();
        self.log.lock().unwrap().clone()
    }

    /// Requests whose `"METHOD /path"` equals `line`.
    pub fn requests_to(&self, line: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.line() == line)
            .collect()
    }

    /// Waits until `pred` holds on the request log.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Recorded]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if pred(&self.requests()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the fake never saw {what}; requests: {:#?}",
                self.requests()
                    .iter()
                    .map(Recorded::line)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Changes the cloud.
    pub fn with<R>(&self, f: impl FnOnce(&mut C) -> R) -> R {
        f(&mut self.cloud.lock().unwrap())
    }

    /// Changes the faults.
    pub fn faults<R>(&self, f: impl FnOnce(&mut Faults) -> R) -> R {
        f(&mut self.faults.lock().unwrap())
    }
}

/// A test ends by dropping its fakes: one whose provider's document was
/// broken fails the test there, if nothing failed it before.
impl<C> Drop for FakeServer<C> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let v = self.violations.lock().unwrap().clone();
        assert!(
            v.is_empty(),
            "the fake saw {} request(s) or answer(s) its provider's document does not allow:\n{}",
            v.len(),
            v.join("\n")
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn answer<C: Cloud>(
    cloud: &Mutex<C>,
    faults: &Mutex<Faults>,
    log: &Mutex<Vec<Recorded>>,
    violations: &Mutex<Vec<String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Recorded {
        at: Instant::now(),
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        body: if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        },
    };
    log.lock().unwrap().push(req.clone());
    let line = req.line();
    let shown = if req.query.is_empty() {
        line.clone()
    } else {
        format!("{line}?{}", req.query)
    };
    let (docs, exempt) = {
        let c = cloud.lock().unwrap();
        (c.documents(), c.undocumented(&req.path))
    };
    let matched = if docs.is_empty() || exempt {
        None
    } else {
        match openapi::check_request(&docs, &req) {
            Ok(m) => Some(m),
            Err(errors) => {
                violations
                    .lock()
                    .unwrap()
                    .extend(errors.into_iter().map(|e| format!("{shown}: {e}")));
                None
            }
        }
    };
    let reply = {
        let mut f = faults.lock().unwrap();
        let mut c = cloud.lock().unwrap();
        // A token endpoint is not the API the faults stand for.
        let token = line.contains("/oauth2/");
        if f.rate_limit_next > 0 && !token {
            f.rate_limit_next -= 1;
            Reply {
                retry_after: (!f.rate_limit_without_retry_after).then_some(1),
                headers: c.rate_limit_headers(),
                ..Reply::json(429, c.rate_limited())
            }
        } else if f.server_error_next > 0 && !token {
            f.server_error_next -= 1;
            Reply::json(500, c.server_error())
        } else if take(&mut f.server_error, &line) {
            Reply::json(500, c.server_error())
        } else if take(&mut f.lose_answer, &line) {
            c.handle(&req);
            Reply::json(500, c.server_error())
        } else {
            c.handle(&req)
        }
    };
    if let Some(m) = &matched {
        violations.lock().unwrap().extend(
            openapi::check_response(m, reply.status, &reply.body)
                .into_iter()
                .map(|e| format!("{shown} -> {}: {e}", reply.status)),
        );
    }
    let mut res = (
        StatusCode::from_u16(reply.status).unwrap(),
        [("content-type", reply.content_type)],
        reply.body,
    )
        .into_response();
    if let Some(s) = reply.retry_after {
        res.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    for (k, v) in reply.headers {
        res.headers_mut().insert(k, v.parse().unwrap());
    }
    res
}

/// Takes one of the faults set for `line`: under its own key, or a key
/// ending in `*` that `line` starts with (for a path that names what the
/// request makes, unknown when the fault is set).
fn take(map: &mut BTreeMap<String, u32>, line: &str) -> bool {
    let key = map
        .keys()
        .find(|k| {
            k.as_str() == line
                || k.strip_suffix('*')
                    .is_some_and(|prefix| line.starts_with(prefix))
        })
        .cloned();
    match key.and_then(|k| map.get_mut(&k)) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// How a fake machine progresses with time since its launch.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Until then the machine is still being created.
    pub boot: Duration,
    /// When the public ip appears (may be after `boot`: running, no ip).
    pub ip_after: Duration,
    /// How long a terminated machine stays listed as terminating.
    pub teardown: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            boot: Duration::from_millis(300),
            ip_after: Duration::from_millis(300),
            teardown: Duration::from_millis(300),
        }
    }
}

/// A documentation-range address (RFC 5737) for machine `n`.
pub fn ip(n: usize) -> String {
    format!("203.0.113.{}", 10 + n % 200)
}

/// A request the document forbids is recorded with the rule it broke, and
/// the next look at the log fails with it.
#[tokio::test]
async fn a_request_the_document_forbids_fails_the_test_naming_the_rule() {
    let fake = FakeServer::start(digitalocean::DigitalOcean::default()).await;
    let res = reqwest::Client::new()
        .get(format!("{}/v2/droplets?per_page=500&type=gpu", fake.url))
        .bearer_auth(digitalocean::TOKEN)
        .send()
        .await
        .unwrap();
    // The fake answers as the cloud would (here, 400 for the type).
    assert_eq!(res.status(), 400);
    let v = fake.violations();
    assert!(
        v.iter().any(
            |e| e.starts_with("GET /v2/droplets?per_page=500&type=gpu: ")
                && e.contains("droplets_list")
                && e.contains("per_page")
        ),
        "{v:#?}"
    );
    assert!(
        v.iter().any(|e| e.contains("query parameter type")),
        "{v:#?}"
    );
    let log = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fake.requests()));
    let why = log.expect_err("the log is not read past a violation");
    let why = why.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        why.contains("per_page") && why.contains("does not allow"),
        "{why}"
    );
    assert_eq!(fake.take_violations().len(), v.len());
    // A request the document allows leaves nothing behind.
    reqwest::Client::new()
        .get(format!("{}/v2/droplets?per_page=200&type=gpus", fake.url))
        .bearer_auth(digitalocean::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 2);
}

/// RunPod's two REST APIs answer errors as each one's document says: API
/// v2 with an RFC 9457 problem, which its document requires.
#[tokio::test]
async fn runpod_v2_errors_are_problems_as_documented() {
    let fake = FakeServer::start(runpod::Runpod::default()).await;
    let res = reqwest::Client::new()
        .get(format!("{}/v2/pods/nope", fake.url))
        .bearer_auth(runpod::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    fake.assert_documented();
}
