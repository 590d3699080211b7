//! Webhooks (issue 27): subscriptions over the API, and deliveries to
//! receivers that verify every signature with the Standard Webhooks
//! reference library (`webhook_receiver.py`, run from the test venv that
//! `PARASOL_TEST_VENV` names).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Client, Opts, Server};

/// Lets webhooks reach the receivers, which listen on loopback over http.
pub const LOCAL: &[&str] = &["--webhook-allow-http", "--webhook-allow-private"];

/// The receiver process.
pub struct Receiver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Receiver {
    pub fn start() -> Receiver {
        let venv = std::env::var("PARASOL_TEST_VENV").unwrap_or_else(|_| {
            panic!("PARASOL_TEST_VENV is not set: run scripts/setup.sh and export PARASOL_TEST_VENV=$PWD/target/test-venv (scripts/test.sh does both)")
        });
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/webhook_receiver.py");
        let mut child = Command::new(PathBuf::from(venv).join("bin/python"))
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the webhook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("PORT ").unwrap_or_else(|| {
            panic!(
                "the receiver did not start (is standardwebhooks installed in the venv?): {line:?}"
            )
        });
        Receiver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sets how the endpoint at `path` answers and which secrets it checks.
    pub async fn set(&self, path: &str, config: Value) {
        let r = self
            .http
            .post(format!("{}/_control{path}", self.base))
            .body(config.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Everything received at `path`, oldest first.
    pub async fn records(&self, path: &str) -> Vec<Value> {
        let all: Vec<Value> = self
            .http
            .get(format!("{}/_records", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.into_iter().filter(|r| r["path"] == path).collect()
    }

    /// Waits until `pred` holds of the records at `path`.
    pub async fn wait(
        &self,
        path: &str,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.records(path).await;
            if pred(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {r:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn body(r: &Value) -> Value {
    serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
}

fn types(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| body(r)["type"].as_str().unwrap().to_string())
        .collect()
}

/// Every record verified with every secret the receiver was given.
pub fn assert_all_verified(records: &[Value]) {
    for r in records {
        let v = r["verified"].as_array().unwrap();
        assert!(
            !v.is_empty() && v.iter().all(|b| b == true),
            "a delivery failed verification: {r:#}"
        );
    }
}

async fn create_hook(c: &Client, url: &str, events: &[&str]) -> (String, String) {
    let r = c
        .post("/v1/webhooks/create", json!({"url": url, "events": events}))
        .await
        .expect(200);
    (
        r["id"].as_str().unwrap().to_string(),
        r["secret"].as_str().unwrap().to_string(),
    )
}

async fn attempts(c: &Client, hook: &str) -> Vec<Value> {
    let mut v = c
        .get(&format!("/v1/webhooks/{hook}/deliveries?limit=100"))
        .await
        .expect(200)["deliveries"]
        .as_array()
        .unwrap()
        .clone();
    v.reverse();
    v
}

async fn wait_attempts(c: &Client, hook: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = attempts(c, hook).await;
        if a.len() >= n {
            return a;
        }
        assert!(Instant::now() < deadline, "{n} attempts never made: {a:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn advance(c: &Client, seconds: i64) {
    c.post("/admin/clock/advance", json!({"seconds": seconds}))
        .await
        .expect(200);
}

#[tokio::test]
async fn each_account_receives_its_own_instance_events_signed() {
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL));
    let a = s.client(&s.new_account("alpha"));
    let b = s.client(&s.new_account("beta"));
    let (hook_a, secret_a) = create_hook(&a, &rx.url("/a"), &["instance.*"]).await;
    let (_, secret_b) = create_hook(&b, &rx.url("/b"), &["instance.active"]).await;
    assert!(secret_a.starts_with("whsec_") && secret_a != secret_b);
    rx.set("/a", json!({"secrets": [secret_a]})).await;
    rx.set("/b", json!({"secrets": [secret_b]})).await;
    let account_a = a.get("/v1/account").await.expect(200)["id"].clone();
    let account_b = b.get("/v1/account").await.expect(200)["id"].clone();

    let id_a = a.create_instance("a-one").await;
    let id_b = b.create_instance("b-one").await;
    a.wait_status(&id_a, "active").await;
    b.wait_status(&id_b, "active").await;

    // Order across events is not guaranteed (README): wait for each.
    let got_a = rx
        .wait("/a", "alpha's instance events", |r| {
            let b: Vec<Value> = r.iter().map(body).collect();
            let has = |t: &str| b.iter().any(|b| b["type"] == t);
            let changed = |from: Option<&str>, to: &str| {
                b.iter().any(|b| {
                    b["type"] == "instance.status_changed"
                        && from.is_none_or(|f| b["data"]["from"] == f)
                        && b["data"]["to"] == to
                })
            };
            has("instance.created")
                && has("instance.active")
                && changed(Some("creating"), "pending_provider")
                && changed(None, "active")
        })
        .await;
    assert_all_verified(&got_a);
    for r in &got_a {
        let b = body(r);
        // Standard Webhooks: the id header is the event's id.
        assert_eq!(r["headers"]["webhook-id"], b["id"]);
        assert_eq!(b["account_id"], account_a);
        assert_eq!(b["data"]["id"], id_a.as_str(), "{b:#}");
        assert!(b["created_at"].as_str().is_some());
    }
    // Beta subscribed to instance.active only, and sees only its own.
    let got_b = rx
        .wait("/b", "beta's instance.active", |r| !r.is_empty())
        .await;
    assert_all_verified(&got_b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_b = rx.records("/b").await;
    assert_eq!(types(&got_b), ["instance.active"]);
    assert_eq!(body(&got_b[0])["account_id"], account_b);
    assert_eq!(body(&got_b[0])["data"]["id"], id_b.as_str());
    // Nothing of beta's ever reached alpha's endpoint.
    assert!(rx
        .records("/a")
        .await
        .iter()
        .all(|r| body(r)["account_id"] == account_a));

    // The attempts are listed, newest first, with their status.
    let received = rx.records("/a").await.len();
    let listed = wait_attempts(&a, &hook_a, received).await;
    assert_eq!(listed.len(), received);
    assert!(listed
        .iter()
        .all(|d| d["status_code"] == 200 && d["attempt"] == 1));
    // A ping reaches the endpoint it tests and no other.
    let ping = a
        .post_empty(&format!("/v1/webhooks/{hook_a}/test"))
        .await
        .expect(200);
    let got_a = rx
        .wait("/a", "the ping", |r| types(r).contains(&"ping".to_string()))
        .await;
    assert_all_verified(&got_a);
    let p = got_a
        .iter()
        .map(body)
        .find(|b| b["type"] == "ping")
        .unwrap();
    assert_eq!(p["id"], ping["event_id"]);
    assert!(!types(&rx.records("/b").await).contains(&"ping".to_string()));
}

#[tokio::test]
async fn subscriptions_are_validated_and_kept_per_account() {
    let s = Server::start(Opts::default());
    let a = s.client(&s.new_account("alpha"));
    let b = s.client(&s.new_account("beta"));
    let refused = [
        ("http://example.com/hook", "https"),
        ("https://127.0.0.1/hook", "private"),
        ("https://localhost:8443/hook", "private"),
        ("https://[::1]/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "private"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("ftp://example.com/x", "https"),
        ("not a url", "not a valid URL"),
    ];
    for (url, why) in refused {
        let e = a
            .post("/v1/webhooks/create", json!({"url": url, "events": ["*"]}))
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], "url", "{url}: {e}");
        assert!(e["message"].as_str().unwrap().contains(why), "{url}: {e}");
    }
    let e = a
        .post(
            "/v1/webhooks/create",
            json!({"url": "https://203.0.113.9/h", "events": ["instance.activ"]}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "events");
    a.post(
        "/v1/webhooks/create",
        json!({"url": "https://203.0.113.9/h", "events": []}),
    )
    .await
    .expect_error(400, "invalid_request");
    a.post(
        "/v1/webhooks/create",
        json!({"url": "https://203.0.113.9/h", "events": ["*"], "all_accounts": true}),
    )
    .await
    .expect_error(403, "forbidden");
    a.post("/v1/webhooks/create", json!({"events": ["*"]}))
        .await
        .expect_error(400, "invalid_request");

    // Up to 20 per account; the secret is never shown again.
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = a
            .post(
                "/v1/webhooks/create",
                json!({"url": format!("https://203.0.113.9/h{i}"), "events": ["instance.*"],
                       "description": format!("hook {i}")}),
            )
            .await
            .expect(200);
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    a.post(
        "/v1/webhooks/create",
        json!({"url": "https://203.0.113.9/h", "events": ["*"]}),
    )
    .await
    .expect_error(409, "conflict");
    let list = a.get("/v1/webhooks").await.expect(200);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 20);
    assert!(!list.to_string().contains("whsec_"), "{list}");
    // Another account's are not found, and its own list is empty.
    assert!(b.get("/v1/webhooks").await.expect(200)["webhooks"]
        .as_array()
        .unwrap()
        .is_empty());
    b.get(&format!("/v1/webhooks/{}", ids[0]))
        .await
        .expect_error(404, "not_found");
    b.post_empty(&format!("/v1/webhooks/{}/delete", ids[0]))
        .await
        .expect_error(404, "not_found");
    b.post_empty(&format!("/v1/webhooks/{}/rotate-secret", ids[0]))
        .await
        .expect_error(404, "not_found");

    let up = a
        .post(
            &format!("/v1/webhooks/{}/update", ids[0]),
            json!({"events": ["budget.alert", "alert"], "enabled": false, "description": ""}),
        )
        .await
        .expect(200);
    assert_eq!(up["events"], json!(["budget.alert", "alert"]));
    assert_eq!(up["enabled"], false);
    assert_eq!(up["description"], Value::Null);
    assert_eq!(up["url"], "https://203.0.113.9/h0");
    a.post(
        &format!("/v1/webhooks/{}/update", ids[0]),
        json!({"url": "http://203.0.113.9/"}),
    )
    .await
    .expect_error(400, "invalid_request");
    a.post(
        &format!("/v1/webhooks/{}/update", ids[0]),
        json!({"colour": "red"}),
    )
    .await
    .expect_error(400, "invalid_request");
    a.post_empty(&format!("/v1/webhooks/{}/test", ids[0]))
        .await
        .expect_error(409, "conflict");
    a.get(&format!("/v1/webhooks/{}/deliveries?limit=0", ids[0]))
        .await
        .expect_error(400, "invalid_request");
    a.get(&format!("/v1/webhooks/{}/deliveries?limit=x", ids[0]))
        .await
        .expect_error(400, "invalid_request");
    a.post_empty(&format!("/v1/webhooks/{}/delete", ids[0]))
        .await
        .expect(200);
    a.get(&format!("/v1/webhooks/{}", ids[0]))
        .await
        .expect_error(404, "not_found");
    // Room for one again.
    a.post(
        "/v1/webhooks/create",
        json!({"url": "https://203.0.113.9/again", "events": ["*"]}),
    )
    .await
    .expect(200);
    // An admin may take every account's events.
    s.admin()
        .post(
            "/v1/webhooks/create",
            json!({"url": "https://203.0.113.9/all", "events": ["*"], "all_accounts": true}),
        )
        .await
        .expect(200);

    // http is accepted with the flag, loopback still refused without its own.
    let s2 = Server::start(Opts::default().args(&["--webhook-allow-http"]));
    let c = s2.admin();
    c.post(
        "/v1/webhooks/create",
        json!({"url": "http://203.0.113.9/h", "events": ["*"]}),
    )
    .await
    .expect(200);
    c.post(
        "/v1/webhooks/create",
        json!({"url": "http://127.0.0.1:9/h", "events": ["*"]}),
    )
    .await
    .expect_error(400, "invalid_request");
}

#[tokio::test]
async fn private_addresses_are_refused_at_delivery_too() {
    let rx = Receiver::start();
    let mut s = Server::start(Opts::default().args(LOCAL));
    let c = s.admin();
    let (hook, secret) = create_hook(&c, &rx.url("/p"), &["ping"]).await;
    rx.set("/p", json!({"secrets": [secret]})).await;
    c.post_empty(&format!("/v1/webhooks/{hook}/test"))
        .await
        .expect(200);
    rx.wait("/p", "the first ping", |r| r.len() == 1).await;
    // The same subscription on a server that no longer allows private
    // addresses: the delivery is refused, and the receiver hears nothing.
    s.restart_with(Opts::default().args(&["--webhook-allow-http"]));
    let c = s.admin();
    c.post_empty(&format!("/v1/webhooks/{hook}/test"))
        .await
        .expect(200);
    let a = wait_attempts(&c, &hook, 2).await;
    assert_eq!(a[1]["status_code"], Value::Null, "{a:#?}");
    assert!(
        a[1]["error"].as_str().unwrap().contains("private"),
        "{a:#?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.records("/p").await.len(), 1);
}

#[tokio::test]
async fn a_failing_receiver_is_retried_on_the_schedule_until_it_succeeds() {
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL).args(&["--test-clock"]));
    let c = s.admin();
    let (hook, secret) = create_hook(&c, &rx.url("/f"), &["ping"]).await;
    rx.set("/f", json!({"secrets": [secret], "fail_first": 3}))
        .await;
    c.post_empty(&format!("/v1/webhooks/{hook}/test"))
        .await
        .expect(200);
    wait_attempts(&c, &hook, 1).await;
    // The schedule: 5 s, 5 min, 30 min after each failure, ±10 %. Short of
    // the earliest retry nothing happens; past the latest, it does. (The
    // test clock also moves with real time: 40 % leaves the first step
    // two and a half seconds of slack.)
    for (retry, n) in [(5i64, 2usize), (300, 3), (1800, 4)] {
        advance(&c, retry * 40 / 100).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            attempts(&c, &hook).await.len(),
            n - 1,
            "retried before {retry} s"
        );
        advance(&c, retry * 80 / 100).await;
        wait_attempts(&c, &hook, n).await;
    }
    let a = attempts(&c, &hook).await;
    let codes: Vec<&Value> = a.iter().map(|d| &d["status_code"]).collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(500), &json!(200)]);
    let numbers: Vec<i64> = a.iter().map(|d| d["attempt"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    // Every attempt carried the same event id, verifiably signed.
    let got = rx.records("/f").await;
    assert_eq!(got.len(), 4);
    assert_all_verified(&got);
    let first = &got[0]["headers"]["webhook-id"];
    assert!(got.iter().all(|r| &r["headers"]["webhook-id"] == first));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.records("/f").await.len(), 4, "delivered after success");
    let metrics = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "parasol_webhook_attempts_total{outcome=\"retry\"} 3",
        "parasol_webhook_attempts_total{outcome=\"delivered\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn an_endpoint_failing_for_a_day_is_disabled() {
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL).args(&["--test-clock"]));
    let c = s.admin();
    let (hook, secret) = create_hook(&c, &rx.url("/dead"), &["ping"]).await;
    rx.set("/dead", json!({"secrets": [secret], "status": 503}))
        .await;
    c.post_empty(&format!("/v1/webhooks/{hook}/test"))
        .await
        .expect(200);
    wait_attempts(&c, &hook, 1).await;
    advance(&c, 25 * 3600).await;
    wait_attempts(&c, &hook, 2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get(&format!("/v1/webhooks/{hook}")).await.expect(200)["enabled"] != false {
        assert!(Instant::now() < deadline, "never disabled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = c.get("/v1/events").await.expect(200);
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "webhook.disabled"),
        "{events:#}"
    );
    // Given up: no third attempt, however long.
    advance(&c, 48 * 3600).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(attempts(&c, &hook).await.len(), 2);
    assert_all_verified(&rx.records("/dead").await);
}

#[tokio::test]
async fn a_hanging_receiver_holds_up_neither_the_lifecycle_nor_other_endpoints() {
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL));
    let c = s.admin();
    let (slow, slow_secret) = create_hook(&c, &rx.url("/slow"), &["instance.*"]).await;
    let (_, fast_secret) = create_hook(&c, &rx.url("/fast"), &["instance.*"]).await;
    rx.set(
        "/slow",
        json!({"secrets": [slow_secret], "hang_seconds": 60}),
    )
    .await;
    rx.set("/fast", json!({"secrets": [fast_secret]})).await;
    let started = Instant::now();
    let id = c.create_instance("busy").await;
    c.wait_status(&id, "active").await;
    let fast = rx
        .wait("/fast", "the fast endpoint's instance.active", |r| {
            types(r).contains(&"instance.active".to_string())
        })
        .await;
    // No attempt to the slow endpoint has ended yet (each takes 10 s), so
    // nothing of the fast one's waited on it.
    assert!(
        attempts(&c, &slow).await.is_empty(),
        "the fast endpoint waited on the slow one: {:?}",
        started.elapsed()
    );
    assert_all_verified(&fast);
    // The slow endpoint got its requests, and each attempt times out at 10 s.
    assert!(!rx.records("/slow").await.is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    let a = loop {
        let a = attempts(&c, &slow).await;
        if !a.is_empty() {
            break a;
        }
        assert!(Instant::now() < deadline, "the hanging attempt never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        a[0]["error"].as_str().unwrap().contains("timed out"),
        "{a:#?}"
    );
    let ms = a[0]["duration_ms"].as_i64().unwrap();
    assert!((9_500..15_000).contains(&ms), "{ms}");
    assert_all_verified(&rx.records("/slow").await);
}

#[tokio::test]
async fn deliveries_queued_before_a_sigkill_are_made_after_the_restart() {
    let rx = Receiver::start();
    let mut s = Server::start(Opts::default().args(LOCAL));
    let c = s.admin();
    let (hook, secret) = create_hook(&c, &rx.url("/k"), &["instance.created"]).await;
    rx.set("/k", json!({"secrets": [secret], "status": 503}))
        .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(c.create_instance(&format!("k{i}")).await);
    }
    // Each was tried and refused, so each is queued for a retry.
    let refused = rx
        .wait("/k", "five refused deliveries", |r| r.len() >= 5)
        .await;
    let queued: std::collections::BTreeSet<String> = refused
        .iter()
        .map(|r| r["headers"]["webhook-id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(queued.len(), 5);
    // And the server has recorded each refusal, so each waits in its queue
    // for its retry when the process dies.
    let recorded = wait_attempts(&c, &hook, 5).await;
    assert!(
        recorded.iter().all(|a| a["status_code"] == 503),
        "{recorded:#?}"
    );
    s.kill();
    rx.set("/k", json!({"secrets": [secret]})).await;
    s.restart();
    let c = s.admin();
    let got = rx
        .wait(
            "/k",
            "each queued delivery to succeed after the restart",
            |r| {
                let ok: std::collections::BTreeSet<&str> = r
                    .iter()
                    .filter(|r| r["answered"] == 200)
                    .map(|r| r["headers"]["webhook-id"].as_str().unwrap())
                    .collect();
                queued.iter().all(|q| ok.contains(q.as_str()))
            },
        )
        .await;
    assert_all_verified(&got);
    let created: std::collections::BTreeSet<String> = got
        .iter()
        .filter(|r| r["answered"] == 200)
        .map(|r| body(r)["data"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(created, ids.iter().cloned().collect());
    assert!(wait_attempts(&c, &hook, 10).await.len() >= 10);
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_for_a_day() {
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL).args(&["--test-clock"]));
    let c = s.admin();
    let (hook, old) = create_hook(&c, &rx.url("/r"), &["ping"]).await;
    let rotated = c
        .post_empty(&format!("/v1/webhooks/{hook}/rotate-secret"))
        .await
        .expect(200);
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(rotated["id"], hook.as_str());
    let info = c.get(&format!("/v1/webhooks/{hook}")).await.expect(200);
    assert!(info["previous_secret_expires_at"].is_string(), "{info:#}");
    // Both verify during the grace period.
    rx.set("/r", json!({"secrets": [old, new]})).await;
    c.post_empty(&format!("/v1/webhooks/{hook}/test"))
        .await
        .expect(200);
    let got = rx.wait("/r", "a ping", |r| r.len() == 1).await;
    assert_all_verified(&got);
    let sig = got[0]["headers"]["webhook-signature"].as_str().unwrap();
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    // A day later only the new one does.
    advance(&c, 24 * 3600 + 60).await;
    c.post_empty(&format!("/v1/webhooks/{hook}/test"))
        .await
        .expect(200);
    let got = rx.wait("/r", "a second ping", |r| r.len() == 2).await;
    assert_eq!(got[1]["verified"], json!([false, true]), "{:#}", got[1]);
    let info = c.get(&format!("/v1/webhooks/{hook}")).await.expect(200);
    assert_eq!(info["previous_secret_expires_at"], Value::Null);
}

#[tokio::test]
async fn an_admin_subscription_to_all_accounts_receives_every_account_events() {
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL));
    let admin = s.admin();
    let r = admin
        .post(
            "/v1/webhooks/create",
            json!({"url": rx.url("/all"), "events": ["instance.created"], "all_accounts": true}),
        )
        .await
        .expect(200);
    rx.set("/all", json!({"secrets": [r["secret"]]})).await;
    let a = s.client(&s.new_account("alpha"));
    let b = s.client(&s.new_account("beta"));
    let ia = a.create_instance("x").await;
    let ib = b.create_instance("y").await;
    let got = rx.wait("/all", "both creates", |r| r.len() >= 2).await;
    assert_all_verified(&got);
    let seen: std::collections::BTreeSet<String> = got
        .iter()
        .map(|r| body(r)["data"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, [ia, ib].into_iter().collect());
}

#[tokio::test]
async fn two_postgres_replicas_make_each_delivery_once() {
    let rx = Receiver::start();
    let (url, _name) = crate::harness::fresh_pg_database();
    let opts = || {
        Opts {
            database_url: Some(url.clone()),
            ..Opts::default()
        }
        .args(LOCAL)
        .args(crate::harness::UNLIMITED)
    };
    let first = Server::start(opts());
    let second = Server::start(opts());
    let (c1, c2) = (first.admin(), second.admin());
    let (hook, secret) = create_hook(&c1, &rx.url("/once"), &["instance.created"]).await;
    rx.set("/once", json!({"secrets": [secret]})).await;
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..30 {
        let c = if i % 2 == 0 { &c1 } else { &c2 };
        ids.insert(c.create_instance(&format!("r{i}")).await);
    }
    let got = rx
        .wait("/once", "thirty deliveries", |r| r.len() >= 30)
        .await;
    // Time for any second delivery of the same event to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_after = rx.records("/once").await;
    assert_eq!(got_after.len(), got.len(), "a delivery was made twice");
    assert_all_verified(&got_after);
    let delivered: std::collections::BTreeSet<String> = got_after
        .iter()
        .map(|r| body(r)["data"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got_after.len(), 30);
    assert_eq!(delivered, ids);
    assert_eq!(attempts(&c2, &hook).await.len(), 30);
    // Between them the replicas made thirty attempts, whichever made each.
    let mut made = 0;
    for s in [&first, &second] {
        made += delivered_by(s).await;
    }
    assert_eq!(made, 30);
}

/// Deliveries a server process made, by its metrics.
async fn delivered_by(s: &Server) -> u64 {
    let text = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("parasol_webhook_attempts_total{outcome=\"delivered\"} "))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn a_cluster_reports_its_status_changes_and_its_nodes_their_own() {
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL));
    let c = s.admin();
    let (_, secret) = create_hook(
        &c,
        &rx.url("/cl"),
        &["cluster.status_changed", "instance.created"],
    )
    .await;
    rx.set("/cl", json!({"secrets": [secret]})).await;
    let id = c
        .post(
            "/v1/clusters/create",
            json!({"name": "pair", "cloud": "denvr", "region": "houston-usa-1",
                   "cluster_type": "H100_sxm5x8", "num_instances": 2}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = rx
        .wait("/cl", "the cluster to go active, and two nodes", |r| {
            let b: Vec<Value> = r.iter().map(body).collect();
            b.iter()
                .any(|b| b["type"] == "cluster.status_changed" && b["data"]["to"] == "active")
                && b.iter().filter(|b| b["type"] == "instance.created").count() >= 2
        })
        .await;
    assert_all_verified(&got);
    let bodies: Vec<Value> = got.iter().map(body).collect();
    assert!(bodies
        .iter()
        .filter(|b| b["type"] == "cluster.status_changed")
        .all(|b| b["data"]["id"] == id.as_str() && b["data"]["from"] != b["data"]["to"]));
    // Each node is an instance, created in the cluster's transaction, and
    // reported once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bodies: Vec<Value> = rx.records("/cl").await.iter().map(body).collect();
    assert_eq!(
        bodies
            .iter()
            .filter(|b| b["type"] == "instance.created")
            .count(),
        2,
        "{bodies:#?}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed_and_large_answers_do_not_matter() {
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL));
    let c = s.admin();
    let (moved, moved_secret) = create_hook(&c, &rx.url("/moved"), &["ping"]).await;
    let (big, big_secret) = create_hook(&c, &rx.url("/big"), &["ping"]).await;
    rx.set(
        "/moved",
        json!({"secrets": [moved_secret], "status": 307, "location": rx.url("/elsewhere")}),
    )
    .await;
    rx.set(
        "/big",
        json!({"secrets": [big_secret], "body_bytes": 8_000_000}),
    )
    .await;
    for hook in [&moved, &big] {
        c.post_empty(&format!("/v1/webhooks/{hook}/test"))
            .await
            .expect(200);
    }
    let a = wait_attempts(&c, &moved, 1).await;
    assert_eq!(a[0]["status_code"], 307, "{a:#?}");
    let a = wait_attempts(&c, &big, 1).await;
    assert_eq!(a[0]["status_code"], 200, "{a:#?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        rx.records("/elsewhere").await.is_empty(),
        "the redirect was followed"
    );
    // The 307 counts as a failure: the ping is queued for its retry.
    assert_eq!(attempts(&c, &moved).await.len(), 1);
    assert_all_verified(&rx.records("/moved").await);
}

#[tokio::test]
async fn a_volume_reports_being_made_and_deleted() {
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL));
    let c = s.admin();
    let (_, secret) = create_hook(&c, &rx.url("/vol"), &["volume.*"]).await;
    rx.set("/vol", json!({"secrets": [secret]})).await;
    let id = c
        .post(
            "/v1/volumes/create",
            json!({"cloud": "lambdalabs", "region": "us-east-1", "size_in_gb": 100, "name": "data"}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let changed = |r: &[Value], to: &str| {
        r.iter()
            .map(body)
            .any(|b| b["data"]["id"] == id.as_str() && b["data"]["to"] == to)
    };
    let got = rx
        .wait("/vol", "the volume to be made", |r| changed(r, "available"))
        .await;
    let made = got
        .iter()
        .map(body)
        .find(|b| b["data"]["to"] == "available")
        .unwrap();
    assert_eq!(made["type"], "volume.status_changed");
    assert_eq!(made["data"]["from"], "creating");
    assert_eq!(made["data"]["status"], "available");
    c.post_empty(&format!("/v1/volumes/{id}/delete"))
        .await
        .expect(200);
    let got = rx
        .wait("/vol", "the volume to be deleted", |r| {
            changed(r, "deleted")
        })
        .await;
    // The API's delete is a transition too: available to deleting, then
    // the reconciler's deleting to deleted.
    let steps: Vec<(String, String)> = got
        .iter()
        .map(body)
        .filter(|b| b["data"]["id"] == id.as_str())
        .map(|b| {
            (
                b["data"]["from"].as_str().unwrap_or("").to_string(),
                b["data"]["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut pairs: Vec<(&str, &str)> = steps
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    // Deliveries may arrive in any order (README), so as a set.
    pairs.sort_unstable();
    assert_eq!(
        pairs,
        [
            ("available", "deleting"),
            ("creating", "available"),
            ("deleting", "deleted")
        ]
    );
    assert_all_verified(&got);
}
