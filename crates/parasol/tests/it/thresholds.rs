//! Spot instances, auto-delete and alerts, driven by the test clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{default_create, Client, Opts, Server};

/// A webhook receiver on loopback that records every body it gets, after
/// an optional delay per request.
pub(crate) async fn webhook(delay: Duration) -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                tokio::time::sleep(delay).await;
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/hook"), got)
}

async fn advance(c: &Client, seconds: i64) {
    c.post("/admin/clock/advance", json!({"seconds": seconds}))
        .await
        .expect(200);
}

/// The account's events other than the lifecycle's own (`instance.*`,
/// recorded at every transition since webhooks).
async fn events(c: &Client) -> Vec<Value> {
    let r = c.get("/v1/events").await.expect(200);
    r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["kind"].as_str().unwrap().starts_with("instance."))
        .cloned()
        .collect()
}

pub(crate) async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dollars(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[tokio::test]
async fn spot_instances_carry_spot_terms_and_are_preempted() {
    let s = Server::start(Opts {
        boot_seconds: 2.0,
        ..Opts::default()
    });
    let c = s.admin();
    let types = c
        .get("/v1/instances/types?cloud=datacrunch")
        .await
        .expect(200);
    let (t, region, spot_price) = types["instance_types"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| {
            t["availability"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["rental_type"] == "spot")
                .map(|a| {
                    (
                        t["shade_instance_type"].as_str().unwrap().to_string(),
                        a["region"].as_str().unwrap().to_string(),
                        a["hourly_price"].as_str().unwrap().to_string(),
                    )
                })
        })
        .expect("datacrunch sells spot");
    let body = json!({"cloud": "datacrunch", "region": region, "shade_instance_type": t,
        "name": "cheap", "rental_type": "spot"});
    let id = c
        .post("/v1/instances/create", body.clone())
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c.wait_status(&id, "active").await;
    assert_eq!(info["rental_terms"]["rental_type"], "spot");
    assert_eq!(info["rental_terms"]["hourly_price"], spot_price.as_str());
    assert!(info["rental_terms"]["ending_at"].is_null());
    assert_eq!(dollars(info["hourly_price"].as_i64().unwrap()), spot_price);

    c.post_empty(&format!("/admin/sim/machines/{id}/preempt"))
        .await
        .expect(200);
    let preempted = c
        .wait_instance(&id, "preempted", |r| {
            r.status == 404 || r.body["status"] == "deleting"
        })
        .await;
    if preempted.status == 200 {
        assert_eq!(preempted.body["status_details"], "preempted");
    }
    c.wait_gone(&id).await;
    // The preemption is an event of the account (the console's events page).
    let events = c.get("/v1/events").await.expect(200);
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["instance_id"] == id.as_str())
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|k| !k.starts_with("instance."))
        .collect();
    assert_eq!(kinds, ["preempted"]);

    // Spot needs a spot offer and shade_cloud.
    let mut no_shade = body.clone();
    no_shade["shade_cloud"] = json!(false);
    let e = c
        .post("/v1/instances/create", no_shade)
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "rental_type");
    let mut on_demand_only = default_create("x");
    on_demand_only["rental_type"] = json!("spot");
    let e = c
        .post("/v1/instances/create", on_demand_only)
        .await
        .expect_error(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("spot"));
}

#[tokio::test]
async fn the_sim_reclaims_spot_machines_at_its_preemption_rate() {
    let s = Server::start(Opts::default().args(&[
        "--sim-preempt-rate",
        "1",
        "--active-check-seconds",
        "1",
    ]));
    let c = s.admin();
    let types = c.get("/v1/instances/types?cloud=crusoe").await.expect(200);
    let (t, region) = types["instance_types"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| {
            t["availability"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["rental_type"] == "spot")
                .map(|a| {
                    (
                        t["shade_instance_type"].as_str().unwrap().to_string(),
                        a["region"].as_str().unwrap().to_string(),
                    )
                })
        })
        .unwrap();
    let spot = c
        .post("/v1/instances/create", json!({"cloud": "crusoe", "region": region, "shade_instance_type": t, "name": "s", "rental_type": "spot"}))
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let on_demand = c
        .post(
            "/v1/instances/create",
            json!({"cloud": "crusoe", "region": region, "shade_instance_type": t, "name": "o"}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_gone(&spot).await;
    // On-demand machines are never reclaimed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        c.get(&format!("/v1/instances/{on_demand}/info"))
            .await
            .expect(200)["status"],
        "active"
    );
}

#[tokio::test]
async fn auto_delete_acts_on_the_date_and_on_the_spend() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let c = s.admin();
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut by_date = default_create("by-date");
    by_date["auto_delete"] = json!({"date_threshold": in_an_hour});
    let by_date = c.post("/v1/instances/create", by_date).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut by_spend = default_create("by-spend");
    let price = c.wait_status(&by_date, "active").await["hourly_price"]
        .as_i64()
        .unwrap();
    // Two hours' worth.
    by_spend["auto_delete"] = json!({"spend_threshold": dollars(price * 2)});
    let by_spend = c.post("/v1/instances/create", by_spend).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_status(&by_spend, "active").await;

    advance(&c, 30 * 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.get(&format!("/v1/instances/{by_date}/info"))
            .await
            .expect(200)["status"],
        "active"
    );
    advance(&c, 31 * 60).await;
    c.wait_gone(&by_date).await;
    assert_eq!(
        c.get(&format!("/v1/instances/{by_spend}/info"))
            .await
            .expect(200)["status"],
        "active"
    );
    advance(&c, 60 * 60).await;
    c.wait_gone(&by_spend).await;
    let kinds: Vec<String> = events(&c)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains(&"auto_delete.date_threshold".to_string()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"auto_delete.spend_threshold".to_string()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn alerts_fire_once_each_and_reach_the_webhook() {
    let (url, got) = webhook(Duration::ZERO).await;
    let s = Server::start(Opts::default().args(&["--test-clock", "--alert-webhook-url", &url]));
    let c = s.admin();
    let mut body = default_create("watched");
    let half_hour = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    body["alert"] = json!({"date_threshold": half_hour, "spend_threshold": "0.50"});
    let id = c.post("/v1/instances/create", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_status(&id, "active").await;
    advance(&c, 3 * 3600).await;
    let got2 = got.clone();
    wait_for("two notifications", async || {
        (got2.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    // More time passes and more passes run: nothing fires again.
    advance(&c, 3600).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    advance(&c, 3600).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let mut kinds: Vec<&str> = bodies.iter().map(|b| b["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["date_threshold", "spend_threshold"]);
    for b in &bodies {
        assert_eq!(b["instance_id"], id.as_str());
        assert_eq!(b["event"], "alert");
    }
    let ev = events(&c).await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    // The instance itself is untouched by alerts.
    assert_eq!(
        c.get(&format!("/v1/instances/{id}/info")).await.expect(200)["status"],
        "active"
    );
}

#[tokio::test]
async fn a_slow_or_dead_webhook_never_delays_the_reconciler() {
    // Each notification hangs for two minutes: far past every wait below, so
    // a reconciler that waited on the webhook would fail this test.
    let (url, _got) = webhook(Duration::from_secs(120)).await;
    let s = Server::start(Opts::default().args(&["--alert-webhook-url", &url]));
    let c = s.admin();
    for i in 0..3 {
        let mut body = default_create(&format!("alerting-{i}"));
        body["alert"] = json!({"spend_threshold": "0.00"});
        let id = c.post("/v1/instances/create", body).await.expect(200)["id"]
            .as_str()
            .unwrap()
            .to_string();
        c.wait_status(&id, "active").await;
    }
    let c2 = c.clone();
    wait_for("three alert events", async || {
        let n = events(&c2).await.len();
        (n == 3).then_some(())
    })
    .await;
    // With the webhook stuck, lifecycles still move.
    let id = c.create_instance("after").await;
    c.wait_status(&id, "active").await;
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
}
