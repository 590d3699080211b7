//! Rate limits: a burst past the bucket gets 429 `rate_limited` with
//! `Retry-After`, and /metrics counts it.

use crate::harness::{metric, Opts, Server};

async fn limited_count(s: &Server, bucket: &str) -> f64 {
    metric(
        s,
        &format!("parasol_http_rate_limited_total{{bucket=\"{bucket}\"}}"),
    )
    .await
}

#[tokio::test]
async fn a_key_past_its_burst_gets_429_with_retry_after() {
    let s = Server::start(Opts::default().args(&["--key-rate", "0.01", "--key-burst", "10"]));
    let c = s.admin();
    for _ in 0..10 {
        c.get("/v1/instances").await.expect(200);
    }
    let res = c
        .http
        .get(format!("{}/v1/instances", s.base))
        .header("X-API-KEY", c.key.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    // The usual error body, through the harness's conformance check.
    let e = c
        .get("/v1/instances")
        .await
        .expect_error(429, "rate_limited");
    assert!(e["message"].as_str().unwrap().contains("retry"), "{e}");
    // Another key has its own bucket.
    let other = s.new_account("other");
    s.client(&other).get("/v1/instances").await.expect(200);
    assert!(limited_count(&s, "key").await >= 2.0);
}

#[tokio::test]
async fn a_key_guessing_loop_is_throttled_even_for_a_right_key_afterwards() {
    let s = Server::start(Opts::default().args(&[
        "--failed-auth-rate",
        "0.01",
        "--failed-auth-burst",
        "5",
    ]));
    let guesser = s.client("psl_guess");
    for _ in 0..5 {
        guesser
            .get("/v1/instances")
            .await
            .expect_error(401, "unauthorized");
    }
    let mut limited = 0;
    for _ in 0..20 {
        let r = guesser.get("/v1/instances").await;
        assert_eq!(r.status, 429, "{}", r.body);
        limited += 1;
    }
    assert_eq!(limited, 20);
    // From the same address, a valid key learns nothing either.
    s.admin()
        .get("/v1/instances")
        .await
        .expect_error(429, "rate_limited");
    assert!(limited_count(&s, "failed_auth").await >= 21.0);
    // Unauthenticated routes stay open.
    s.admin().get("/healthz").await.expect(200);
}

#[tokio::test]
async fn an_address_past_its_burst_is_limited_on_every_route() {
    let s =
        Server::start(Opts::default().args(&["--address-rate", "0.01", "--address-burst", "8"]));
    let c = s.admin();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let res = reqwest::get(format!("{}/healthz", s.base)).await.unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(&statuses[..8], &[200; 8], "{statuses:?}");
    assert!(statuses[8..].iter().all(|s| *s == 429), "{statuses:?}");
    c.get("/v1/instances")
        .await
        .expect_error(429, "rate_limited");
}
