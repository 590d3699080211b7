//! Launch by requirements (`/instances/launch`, `/clusters/launch`): the
//! cheapest feasible offer across every simulated cloud, failover when the
//! sim refuses a launch for capacity (`/admin/sim/capacity-failures`), the
//! cooling-down of refused offers, waiting for capacity, a kill
//! mid-failover, and the relaunch of a preempted spot instance.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Client, Opts, Server};

fn a6000() -> Value {
    json!({"gpu_type": "A6000", "num_gpus": 1})
}

async fn dry_run(c: &Client, requirements: Value) -> Vec<Value> {
    c.post(
        "/v1/instances/launch",
        json!({"requirements": requirements, "dry_run": true}),
    )
    .await
    .expect(200)["candidates"]
        .as_array()
        .unwrap()
        .clone()
}

async fn launch(c: &Client, body: Value) -> String {
    c.post("/v1/instances/launch", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `cloud region type` of a candidate or an instance.
fn offer(v: &Value) -> String {
    format!(
        "{} {} {}",
        v["cloud"].as_str().unwrap(),
        v["region"].as_str().unwrap(),
        v["shade_instance_type"].as_str().unwrap()
    )
}

async fn fail_launches(c: &Client, candidate: &Value) {
    c.post(
        "/admin/sim/capacity-failures",
        json!({"cloud": candidate["cloud"], "region": candidate["region"],
               "shade_instance_type": candidate["shade_instance_type"]}),
    )
    .await
    .expect(200);
}

/// Placement's events of an instance (not the lifecycle's `instance.*`).
async fn events_of(c: &Client, id: &str) -> Vec<Value> {
    c.get("/v1/events").await.expect(200)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["instance_id"] == id)
        .filter(|e| !e["kind"].as_str().unwrap().starts_with("instance."))
        .cloned()
        .collect()
}

async fn sim_machines_of(c: &Client, id: &str) -> Vec<Value> {
    c.get("/admin/sim/machines").await.expect(200)["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["instance_id"] == id)
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_cheapest_available_offer_of_any_cloud_is_chosen() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let candidates = dry_run(&c, a6000()).await;
    // Independently of the ranking: the cheapest on-demand A6000 with
    // availability anywhere in the catalog.
    let types = c
        .get("/v1/instances/types?gpu_type=A6000&num_gpus=1")
        .await
        .expect(200);
    let mut cheapest = i64::MAX;
    let mut clouds = std::collections::BTreeSet::new();
    for t in types["instance_types"].as_array().unwrap() {
        clouds.insert(t["cloud"].as_str().unwrap().to_string());
        if t["availability"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["available"] == true && a["rental_type"] == "on_demand")
        {
            cheapest = cheapest.min(t["hourly_price"].as_i64().unwrap());
        }
    }
    assert!(clouds.len() > 2, "the search spans clouds: {clouds:?}");
    assert_eq!(candidates[0]["hourly_price"], cheapest, "{candidates:#?}");
    let prices: Vec<i64> = candidates
        .iter()
        .map(|c| c["hourly_price"].as_i64().unwrap())
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
    assert!(candidates.iter().all(|c| c["rental_type"] == "on_demand"));

    let id = launch(&c, json!({"requirements": a6000(), "name": "cheap"})).await;
    let info = c.wait_status(&id, "active").await;
    assert_eq!(offer(&info), offer(&candidates[0]));
    assert_eq!(info["hourly_price"], cheapest);
    assert_eq!(info["name"], "cheap");
    // An ordinary instance: listed, and deleted like any other.
    let list = c.get("/v1/instances").await.expect(200);
    assert!(list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == id.as_str()));
    c.post(&format!("/v1/instances/{id}/delete"), json!({}))
        .await
        .expect(200);
    c.wait_gone(&id).await;
}

#[tokio::test]
async fn exclusions_and_the_price_cap_narrow_the_candidates_and_say_why_none_is_left() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let all = dry_run(&c, a6000()).await;
    let first_cloud = all[0]["cloud"].as_str().unwrap().to_string();
    let cap = all[0]["hourly_price"].as_i64().unwrap() + 3;
    let narrowed = dry_run(
        &c,
        json!({"gpu_type": "A6000", "num_gpus": 1, "exclude_clouds": [first_cloud],
               "max_hourly_price": cap}),
    )
    .await;
    assert!(!narrowed.is_empty());
    for n in &narrowed {
        assert_ne!(n["cloud"], first_cloud.as_str());
        assert!(n["hourly_price"].as_i64().unwrap() <= cap, "{n}");
    }
    let regions: Vec<&str> = all.iter().map(|c| c["region"].as_str().unwrap()).collect();
    let only = dry_run(
        &c,
        json!({"gpu_type": ["A6000", "H100"], "num_gpus": 1, "regions": [regions[0]]}),
    )
    .await;
    assert!(only.iter().all(|c| c["region"] == regions[0]));

    let e = c
        .post(
            "/v1/instances/launch",
            json!({"requirements": {"gpu_type": "A6000", "max_hourly_price": 1}}),
        )
        .await
        .expect_error(409, "insufficient_capacity");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.starts_with("no offer matches: "), "{msg}");
    assert!(msg.contains("offers above max_hourly_price"), "{msg}");

    // Requests no search could satisfy are refused with the field named.
    let bad = [
        (json!({"requirements": {}}), "requirements"),
        (
            json!({"requirements": {"num_gpus": 0}}),
            "requirements.num_gpus",
        ),
        (
            json!({"requirements": a6000(), "wait_for_capacity_seconds": -1}),
            "wait_for_capacity_seconds",
        ),
        (
            json!({"requirements": a6000(), "on_preemption": "relaunch"}),
            "on_preemption",
        ),
    ];
    for (body, field) in bad {
        let e = c
            .post("/v1/instances/launch", body.clone())
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], field, "{body} -> {e}");
    }
    let e = c
        .post(
            "/v1/instances/launch",
            json!({"requirements": {"gpu_typ": "A6000"}}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("gpu_typ"), "{e}");
    let none = c.get("/v1/instances").await.expect(200);
    assert!(none["instances"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_capacity_refusal_moves_the_instance_on_and_the_refused_offers_cool_down() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let candidates = dry_run(&c, a6000()).await;
    fail_launches(&c, &candidates[0]).await;
    fail_launches(&c, &candidates[1]).await;
    let id = launch(&c, json!({"requirements": a6000()})).await;
    let info = c.wait_status(&id, "active").await;
    assert_eq!(offer(&info), offer(&candidates[2]), "{info:#}");
    assert_eq!(info["hourly_price"], candidates[2]["hourly_price"]);
    let ev = events_of(&c, &id).await;
    let kinds: Vec<&str> = ev.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "placement.out_of_capacity")
            .count(),
        2,
        "{ev:#?}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "placement.moved").count(), 2);
    let moved: Vec<&str> = ev
        .iter()
        .filter(|e| e["kind"] == "placement.moved")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        moved.iter().any(|m| *m
            == format!(
                "{} out of capacity; trying {}",
                offer(&candidates[1]),
                offer(&candidates[2])
            )),
        "{moved:?}"
    );
    assert_eq!(sim_machines_of(&c, &id).await.len(), 1);

    // The refused offers cool down for every launch: listed, unavailable,
    // and a second launch goes straight to the third offer even though
    // the sim would now launch on the first.
    c.post("/admin/sim/capacity-failures/clear", json!({}))
        .await
        .expect(200);
    let again = dry_run(&c, a6000()).await;
    let cooled: Vec<String> = again
        .iter()
        .filter(|c| c["available"] == false)
        .map(offer)
        .collect();
    assert!(cooled.contains(&offer(&candidates[0])), "{again:#?}");
    assert!(cooled.contains(&offer(&candidates[1])));
    assert_eq!(offer(&again[0]), offer(&candidates[2]));
    let second = launch(&c, json!({"requirements": a6000()})).await;
    let info = c
        .get(&format!("/v1/instances/{second}/info"))
        .await
        .expect(200);
    assert_eq!(offer(&info), offer(&candidates[2]));
    c.wait_status(&second, "active").await;
    assert!(events_of(&c, &second).await.is_empty());
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn without_a_wait_the_instance_errs_naming_every_offer_tried() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let req = json!({"gpu_type": "A6000", "num_gpus": 1, "clouds": ["hyperstack"]});
    let candidates = dry_run(&c, req.clone()).await;
    assert!(candidates.len() >= 2, "{candidates:#?}");
    for cand in &candidates {
        fail_launches(&c, cand).await;
    }
    let id = launch(&c, json!({"requirements": req})).await;
    let info = c.wait_status(&id, "error").await;
    let details = info["status_details"].as_str().unwrap();
    assert!(
        details.starts_with("no capacity for the requirements; tried "),
        "{details}"
    );
    for cand in &candidates {
        assert!(details.contains(&offer(cand)), "{details}");
    }
    assert!(sim_machines_of(&c, &id).await.is_empty());
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn an_instance_waits_for_capacity_and_launches_when_it_returns_or_errs_at_the_deadline() {
    let s = Server::start(Opts::default().args(&["--capacity-cooldown-seconds", "1"]));
    let c = s.admin();
    let one = |cand: &Value| {
        json!({"gpu_type": "A6000", "num_gpus": 1, "clouds": [cand["cloud"]],
               "regions": [cand["region"]]})
    };
    let candidates = dry_run(&c, a6000()).await;
    let (first, second) = (&candidates[0], &candidates[2]);
    fail_launches(&c, first).await;
    fail_launches(&c, second).await;

    let waits = launch(
        &c,
        json!({"requirements": one(first), "wait_for_capacity_seconds": 120}),
    )
    .await;
    let gives_up = launch(
        &c,
        json!({"requirements": one(second), "wait_for_capacity_seconds": 2}),
    )
    .await;
    let info = c
        .wait_instance(&waits, "waiting for capacity", |r| {
            r.body["status_details"] == "waiting for capacity"
        })
        .await
        .body;
    assert_eq!(info["status"], "creating");

    // The deadline passes for the second while the first still waits.
    let failed = c.wait_status(&gives_up, "error").await;
    let details = failed["status_details"].as_str().unwrap();
    assert!(details.contains(&offer(second)), "{details}");
    let still = c
        .get(&format!("/v1/instances/{waits}/info"))
        .await
        .expect(200);
    assert_eq!(still["status"], "creating", "{still:#}");

    c.post(
        "/admin/sim/capacity-failures/clear",
        json!({"cloud": first["cloud"], "region": first["region"]}),
    )
    .await
    .expect(200);
    let info = c.wait_status(&waits, "active").await;
    assert_eq!(offer(&info), offer(first));
    assert_eq!(sim_machines_of(&c, &waits).await.len(), 1);
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn a_delete_while_waiting_ends_the_wait_cleanly() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let candidates = dry_run(&c, a6000()).await;
    let first = &candidates[0];
    fail_launches(&c, first).await;
    let req = json!({"gpu_type": "A6000", "num_gpus": 1, "clouds": [first["cloud"]],
                     "regions": [first["region"]]});
    let id = launch(
        &c,
        json!({"requirements": req, "wait_for_capacity_seconds": 600}),
    )
    .await;
    c.wait_instance(&id, "waiting for capacity", |r| {
        r.body["status_details"] == "waiting for capacity"
    })
    .await;
    c.post(&format!("/v1/instances/{id}/delete"), json!({}))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    assert!(sim_machines_of(&c, &id).await.is_empty());
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn a_server_killed_mid_failover_ends_with_one_machine() {
    let mut s = Server::start(Opts::default());
    let c = s.admin();
    let candidates = dry_run(&c, a6000()).await;
    fail_launches(&c, &candidates[0]).await;
    fail_launches(&c, &candidates[1]).await;
    let id = launch(&c, json!({"requirements": a6000()})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while events_of(&c, &id).await.is_empty() {
        assert!(Instant::now() < deadline, "no failover began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill();
    s.restart();
    let c = s.admin();
    let info = c.wait_status(&id, "active").await;
    let machines = c.get("/admin/sim/machines").await.expect(200)["machines"].clone();
    let running: Vec<&Value> = machines
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "running")
        .collect();
    assert_eq!(running.len(), 1, "{machines:#}");
    assert_eq!(running[0]["instance_id"], id.as_str());
    assert_eq!(offer(running[0]), offer(&info));
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn a_preempted_spot_instance_is_relaunched_with_the_same_requirements() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let spot = json!({"gpu_type": "A6000", "num_gpus": 1, "rental_type": "spot"});
    let candidates = dry_run(&c, spot.clone()).await;
    assert!(candidates.iter().all(|c| c["rental_type"] == "spot"));
    let id = launch(
        &c,
        json!({"requirements": spot, "name": "trainer", "on_preemption": "relaunch"}),
    )
    .await;
    let info = c.wait_status(&id, "active").await;
    assert_eq!(info["rental_terms"]["rental_type"], "spot");
    assert_eq!(info["hourly_price"], candidates[0]["hourly_price"]);
    c.post(&format!("/admin/sim/machines/{id}/preempt"), json!({}))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    let tag = format!("parasol:relaunch-of={id}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_id = loop {
        let found = c.tagged(&tag).await;
        if let Some(i) = found.first() {
            assert_eq!(found.len(), 1, "one replacement: {found:#?}");
            break i["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "never relaunched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(new_id, id);
    let new = c.wait_status(&new_id, "active").await;
    assert_eq!(new["name"], "trainer");
    assert_eq!(new["rental_terms"]["rental_type"], "spot");
    let ev = c.get("/v1/events").await.expect(200);
    let relaunched: Vec<&Value> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "placement.relaunched")
        .collect();
    assert_eq!(relaunched.len(), 1, "{ev:#}");
    assert!(relaunched[0]["message"].as_str().unwrap().contains(&new_id));
    assert_eq!(relaunched[0]["instance_id"], id.as_str());
}

#[tokio::test]
async fn a_cluster_launch_takes_the_cheapest_shape_with_room_for_every_node() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let req = json!({"gpu_type": "H100", "num_gpus": 8});
    let candidates = c
        .post(
            "/v1/clusters/launch",
            json!({"requirements": req, "num_instances": 2, "dry_run": true}),
        )
        .await
        .expect(200)["candidates"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!candidates.is_empty());
    let id = c
        .post(
            "/v1/clusters/launch",
            json!({"requirements": req, "num_instances": 2, "name": "pair"}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c.get(&format!("/v1/clusters/{id}/info")).await.expect(200);
    assert_eq!(info["cloud"], candidates[0]["cloud"]);
    assert_eq!(info["region_info"]["region"], candidates[0]["region"]);
    let nodes = info["instances"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    for n in nodes {
        assert_eq!(
            n["shade_instance_type"],
            candidates[0]["shade_instance_type"]
        );
        assert_eq!(n["hourly_price"], candidates[0]["hourly_price"]);
    }
    c.post(
        "/v1/clusters/launch",
        json!({"requirements": req, "num_instances": 3}),
    )
    .await
    .expect_error(409, "insufficient_capacity");
}
