//! A fault-injecting HTTP proxy in front of moto: it records every EC2
//! request (Action, parameters, whether it was signed) and can answer an
//! EC2 error instead of moto for chosen Actions and zones, which moto
//! itself never does (capacity errors, throttling, credential failures),
//! or forward a request and never answer (a crash right after a call).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Ec2Request {
    pub action: String,
    pub params: BTreeMap<String, String>,
    pub authorization: Option<String>,
    /// What the proxy did: `forwarded`, `hung` or the error code answered.
    pub outcome: String,
}

impl Ec2Request {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// A fault: requests for `action` ([`ANY_ACTION`]: every action) (and, when
/// set, `Placement.AvailabilityZone` = `zone`) get `code` with `status`,
/// `times` times (`None`: always).
#[derive(Debug, Clone)]
pub struct Fault {
    pub action: String,
    pub zone: Option<String>,
    pub code: String,
    pub status: u16,
    pub times: Option<u32>,
    /// Forward to moto, then never answer.
    pub hang: bool,
}

impl Fault {
    /// `code` for every `action`.
    pub fn error(action: &str, code: &str, status: u16) -> Fault {
        Fault {
            action: action.into(),
            zone: None,
            code: code.into(),
            status,
            times: None,
            hang: false,
        }
    }

    /// Only `n` times.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    /// Only in `zone`.
    pub fn in_zone(mut self, zone: &str) -> Fault {
        self.zone = Some(zone.into());
        self
    }

    /// Forward `action` to moto and never answer.
    pub fn hang(action: &str) -> Fault {
        Fault {
            hang: true,
            ..Fault::error(action, "", 0)
        }
    }
}

/// A fault's `action` that matches every request.
pub const ANY_ACTION: &str = "*";

#[derive(Default)]
struct Inner {
    requests: Vec<Ec2Request>,
    faults: Vec<Fault>,
}

/// The proxy; serves until the test process exits.
#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Clone)]
struct Ctx {
    inner: Arc<Mutex<Inner>>,
    upstream: String,
    http: reqwest::Client,
}

impl Proxy {
    /// A proxy forwarding to `upstream` (moto's URL).
    pub fn start(upstream: &str) -> Proxy {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let ctx = Ctx {
            inner: inner.clone(),
            upstream: upstream.to_string(),
            http: reqwest::Client::new(),
        };
        let app = Router::new().fallback(handle).with_state(ctx);
        // Its own thread and runtime: tests block their runtime while the
        // server under test starts, and the server calls through it then.
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
        Proxy { url, inner }
    }

    /// Adds a fault; earlier faults are checked first.
    pub fn fault(&self, f: Fault) {
        self.inner.lock().unwrap().faults.push(f);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.inner.lock().unwrap().faults.clear();
    }

    /// How many more times faults answering `code` will fire (counted
    /// faults only).
    pub fn pending(&self, code: &str) -> u32 {
        self.inner
            .lock()
            .unwrap()
            .faults
            .iter()
            .filter(|f| f.code == code)
            .filter_map(|f| f.times)
            .sum()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Ec2Request> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The requests for `action`.
    pub fn requests_for(&self, action: &str) -> Vec<Ec2Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.action == action)
            .collect()
    }

    /// Polls until `pred` holds for the requests so far.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Ec2Request]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if pred(&self.requests()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; requests: {:#?}",
                self.requests()
                    .iter()
                    .map(|r| (&r.action, &r.outcome))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn error_xml(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>injected by the test proxy: {code}</Message></Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
    )
}

async fn handle(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let params: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let action = params.get("Action").cloned().unwrap_or_default();
    let zone = params.get("Placement.AvailabilityZone").cloned();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fault = {
        let mut inner = ctx.inner.lock().unwrap();
        let hit = inner.faults.iter_mut().find(|f| {
            (f.action == action || f.action == ANY_ACTION)
                && f.zone.as_ref().is_none_or(|z| Some(z) == zone.as_ref())
                && f.times.is_none_or(|n| n > 0)
        });
        let fault = hit.map(|f| {
            if let Some(n) = f.times.as_mut() {
                *n -= 1;
            }
            f.clone()
        });
        inner.requests.push(Ec2Request {
            action: action.clone(),
            params: params.clone(),
            authorization: authorization.clone(),
            outcome: match &fault {
                Some(f) if f.hang => "hung".into(),
                Some(f) => f.code.clone(),
                None => "forwarded".into(),
            },
        });
        fault
    };
    if let Some(f) = &fault {
        if !f.hang {
            return (
                StatusCode::from_u16(f.status).unwrap(),
                [("content-type", "text/xml")],
                error_xml(&f.code),
            )
                .into_response();
        }
    }
    let mut req = ctx
        .http
        .post(format!("{}/", ctx.upstream))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_vec());
    for h in ["authorization", "x-amz-date", "x-amz-security-token"] {
        if let Some(v) = headers.get(h) {
            req = req.header(h, v.as_bytes());
        }
    }
    let res = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("moto unreachable: {e}")).into_response()
        }
    };
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
    let text = res.text().await.unwrap_or_default();
    if fault.is_some() {
        // Moto did the work; the caller never hears of it.
        std::future::pending::<()>().await;
    }
    (status, [("content-type", "text/xml")], text).into_response()
}
