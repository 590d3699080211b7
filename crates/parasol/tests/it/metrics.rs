//! `/metrics`: scraped as Prometheus would, before and after a lifecycle.

use serde_json::json;

use crate::harness::{Opts, Server};

/// Scrapes the server; asserts the content type.
pub async fn scrape(s: &Server) -> String {
    let res = reqwest::get(format!("{}/metrics", s.base)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    res.text().await.unwrap()
}

/// The value of the sample `series` (name with its exact label set), or 0
/// when it is absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            (s == series).then(|| v.parse().unwrap())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_through_a_lifecycle() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let before = scrape(&s).await;
    for st in [
        "creating",
        "pending_provider",
        "pending",
        "active",
        "error",
        "deleting",
        "deleted",
    ] {
        assert!(
            before.contains(&format!("parasol_instances{{status=\"{st}\"}} 0\n")),
            "{st}:\n{before}"
        );
    }
    assert!(before.contains("# TYPE parasol_http_requests_total counter\n"));
    assert!(before.contains("# TYPE parasol_http_request_duration_seconds histogram\n"));
    assert!(before.contains("parasol_store_up 1\n"));
    assert!(before.contains("parasol_clusters{status=\"active\"} 0\n"));

    let id = c.create_instance("metered").await;
    c.wait_status(&id, "active").await;
    let mid = scrape(&s).await;
    assert_eq!(value(&mid, "parasol_instances{status=\"active\"}"), 1.0);
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    c.get("/v1/instances/not-an-id/info")
        .await
        .expect_error(404, "not_found");
    c.anonymous()
        .get("/v1/instances")
        .await
        .expect_error(401, "unauthorized");
    c.post("/v1/sshkeys/add", json!({"name": ""}))
        .await
        .expect_error(400, "invalid_request");
    let after = scrape(&s).await;

    // Requests by route template (never the raw path) and status.
    let create = "parasol_http_requests_total{method=\"POST\",route=\"/v1/instances/create\",status=\"200\"}";
    assert_eq!(value(&after, create), 1.0, "{after}");
    let info404 =
        "parasol_http_requests_total{method=\"GET\",route=\"/v1/instances/{id}/info\",status=\"404\"}";
    assert!(value(&after, info404) >= 2.0, "{after}");
    assert!(!after.contains(&id), "ids must not become labels");
    assert_eq!(
        value(
            &after,
            "parasol_http_requests_total{method=\"GET\",route=\"/v1/instances\",status=\"401\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "parasol_http_requests_total{method=\"POST\",route=\"/v1/sshkeys/add\",status=\"400\"}"
        ),
        1.0
    );
    let count = "parasol_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/instances/create\"}";
    assert_eq!(value(&after, count), 1.0);
    let inf = "parasol_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/instances/create\",le=\"+Inf\"}";
    assert_eq!(value(&after, inf), 1.0);

    // Stored state, counted at scrape time.
    assert_eq!(value(&after, "parasol_instances{status=\"active\"}"), 0.0);
    assert_eq!(value(&after, "parasol_instances{status=\"deleted\"}"), 1.0);

    // The reconciler ran and moved the instance through its states.
    let runs = "parasol_reconciler_runs_total{task=\"instances\"}";
    assert!(value(&after, runs) > value(&before, runs));
    let transitions = "parasol_reconciler_transitions_total{task=\"instances\"}";
    assert!(
        value(&after, transitions) - value(&before, transitions) >= 3.0,
        "creating -> pending_provider -> ... -> active -> deleting -> deleted:\n{after}"
    );
    assert!(
        value(
            &after,
            "parasol_reconciler_last_run_timestamp_seconds{task=\"instances\"}"
        ) > 1e9
    );

    // Provider calls by provider, operation and outcome.
    let calls = |op: &str| {
        value(
            &after,
            &format!("parasol_provider_calls_total{{provider=\"sim\",operation=\"{op}\",outcome=\"ok\"}}"),
        )
    };
    assert_eq!(calls("launch"), 1.0, "{after}");
    assert!(calls("describe") >= 1.0);
    assert!(calls("terminate") >= 1.0);
    assert!(
        value(
            &after,
            "parasol_provider_call_duration_seconds_count{provider=\"sim\",operation=\"launch\"}"
        ) == 1.0
    );
}

#[tokio::test]
async fn failed_provider_calls_are_counted_by_outcome() {
    // The test clock lets the wait skip the reconciler's backoffs, which
    // grow to a minute after a run of failures.
    let s =
        Server::start(Opts::default().args(&["--sim-call-failure-rate", "0.5", "--test-clock"]));
    let c = s.admin();
    // Half the calls fail; a dozen calls all succeeding is a 1-in-4096
    // event.
    for n in 0..4 {
        let id = c.create_instance(&format!("flaky{n}")).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let r = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
            if r["status"] == "active" || r["status"] == "error" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never settled: {r}");
            c.post("/admin/clock/advance", serde_json::json!({"seconds": 70}))
                .await
                .expect(200);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let text = scrape(&s).await;
    let transient: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("parasol_provider_calls_total{provider=\"sim\"")
                && l.contains("outcome=\"transient\"")
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    let errors = value(
        &text,
        "parasol_reconciler_provider_errors_total{task=\"instances\"}",
    );
    assert!(transient >= 1.0, "{text}");
    assert_eq!(transient, errors, "{text}");
}
