use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Client, Opts, Server};

fn create_body(name: &str, n: i64) -> Value {
    json!({
        "name": name,
        "cloud": "denvr",
        "region": "houston-usa-1",
        "cluster_type": "H100_sxm5x8",
        "num_instances": n,
    })
}

async fn create(c: &Client, name: &str, n: i64) -> String {
    c.post("/v1/clusters/create", create_body(name, n))
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_cluster(c: &Client, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.get(&format!("/v1/clusters/{id}/info")).await;
        if r.status == 200 && pred(&r.body) {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "cluster {id} never {what}: {:#}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_cluster_gone(c: &Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get(&format!("/v1/clusters/{id}/info")).await.status != 404 {
        assert!(Instant::now() < deadline, "cluster {id} never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn machines(c: &Client) -> Vec<Value> {
    c.get("/admin/sim/machines").await.expect(200)["machines"]
        .as_array()
        .unwrap()
        .clone()
}

async fn wait_no_running_machines(c: &Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = machines(c).await;
        if m.iter().all(|m| m["state"] == "terminated") {
            return;
        }
        assert!(Instant::now() < deadline, "machines left behind: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cluster_types_offer_nvlink_nodes_in_several_sizes() {
    let s = Server::start(Opts {
        capacity: None,
        ..Opts::default()
    });
    let types = s.admin().get("/v1/clusters/types").await.expect(200);
    let types = types["cluster_types"].as_array().unwrap();
    let sizes: BTreeSet<i64> = types
        .iter()
        .map(|t| t["num_instances"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, BTreeSet::from([2, 4, 8, 16]));
    let gpus: BTreeSet<&str> = types
        .iter()
        .map(|t| {
            t["cluster_type"]["configuration"]["gpu_type"]
                .as_str()
                .unwrap()
        })
        .collect();
    for g in ["H100", "H200", "B200", "A100_80G"] {
        assert!(gpus.contains(g), "{gpus:?}");
    }
    for t in types {
        assert_eq!(t["cluster_type"]["configuration"]["num_gpus"], 8);
        assert_eq!(t["cluster_type"]["configuration"]["nvlink"], true);
        assert_eq!(t["cloud"], t["cluster_type"]["cloud"]);
        assert!(t["availability"]["display_name"]
            .as_str()
            .unwrap()
            .contains(','));
    }
}

#[tokio::test]
async fn a_cluster_follows_its_nodes_to_active_and_is_deleted_as_a_whole() {
    let s = Server::start(Opts {
        boot_seconds: 1.0,
        ..Opts::default()
    });
    let c = s.admin();
    c.add_key("me").await;
    let id = create(&c, "train", 4).await;

    let mut seen = BTreeSet::new();
    let mut details = BTreeSet::new();
    // Poll by hand to see the intermediate states.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = c.get(&format!("/v1/clusters/{id}/info")).await.expect(200);
        seen.insert(b["status"].as_str().unwrap().to_string());
        if let Some(d) = b["status_details"].as_str() {
            details.insert(d.to_string());
        }
        if b["status"] == "active" {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let active = c.get(&format!("/v1/clusters/{id}/info")).await.expect(200);
    assert!(seen.contains("pending"), "{seen:?}");
    assert!(
        details.iter().any(|d| d.ends_with("/4 nodes active")),
        "{details:?}"
    );
    assert!(active["active_at"].is_string());
    assert!(active["cloud_cluster_id"]
        .as_str()
        .unwrap()
        .starts_with("denvr-cluster-"));
    assert_eq!(active["region_info"]["display_name"], "US, Houston, TX");
    let nodes = active["instances"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    let node_price: i64 = nodes
        .iter()
        .map(|n| n["hourly_price"].as_i64().unwrap())
        .sum();
    assert_eq!(active["hourly_price"], node_price);
    assert!(active["cost_estimate"].as_str().unwrap().starts_with('$'));
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "train-node-1",
            "train-node-2",
            "train-node-3",
            "train-node-4"
        ]
    );
    for n in nodes {
        assert_eq!(n["status"], "active");
        assert_eq!(n["region"], "houston-usa-1");
    }
    // Nodes are ordinary instances...
    let listed = c.get("/v1/instances").await.expect(200);
    assert_eq!(listed["instances"].as_array().unwrap().len(), 4);
    // ...that cannot be deleted one by one.
    let node = nodes[1]["id"].as_str().unwrap();
    let e = c
        .post_empty(&format!("/v1/instances/{node}/delete"))
        .await
        .expect_error(409, "conflict");
    assert!(e["message"].as_str().unwrap().contains("cluster"));
    let updated_before = active["updated_at"].clone();

    let r = c
        .post_empty(&format!("/v1/clusters/{id}/delete"))
        .await
        .expect(200);
    assert_eq!(r["status"], "deleting");
    let deleting = c.get(&format!("/v1/clusters/{id}/info")).await;
    if deleting.status == 200 {
        assert_eq!(deleting.body["status"], "deleting");
        assert_ne!(deleting.body["updated_at"], updated_before);
        for n in deleting.body["instances"].as_array().unwrap() {
            assert!(n["status"] == "deleting" || n["status"] == "deleted", "{n}");
        }
    }
    wait_cluster_gone(&c, &id).await;
    assert_eq!(
        c.get("/v1/clusters").await.expect(200)["clusters"],
        json!([])
    );
    assert_eq!(
        c.get("/v1/instances").await.expect(200)["instances"],
        json!([])
    );
    wait_no_running_machines(&c).await;
}

#[tokio::test]
async fn a_sixteen_node_cluster_becomes_active() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let id = create(&c, "big", 16).await;
    let b = wait_cluster(&c, &id, "active", |b| b["status"] == "active").await;
    assert_eq!(b["instances"].as_array().unwrap().len(), 16);
    assert_eq!(b["instances"][15]["name"], "big-node-16");
    let running = machines(&c)
        .await
        .iter()
        .filter(|m| m["state"] == "running")
        .count();
    assert_eq!(running, 16);
}

#[tokio::test]
async fn one_failed_node_rolls_back_the_whole_cluster() {
    let s = Server::start(Opts {
        boot_seconds: 8.0,
        ..Opts::default()
    });
    let c = s.admin();
    let id = create(&c, "fragile", 4).await;
    let pending = wait_cluster(&c, &id, "pending", |b| b["status"] == "pending").await;
    assert_eq!(pending["status_details"], "0/4 nodes active");
    let victim = pending["instances"][2]["id"].as_str().unwrap().to_string();
    c.post(
        &format!("/admin/sim/machines/{victim}/fail"),
        json!({"reason": "NVLink training error"}),
    )
    .await
    .expect(200);
    let failed = wait_cluster(&c, &id, "error", |b| b["status"] == "error").await;
    assert_eq!(
        failed["status_details"],
        "node fragile-node-3 failed: NVLink training error"
    );
    // Every node reaches a final state and nothing keeps running or billing.
    let settled = wait_cluster(&c, &id, "settled", |b| {
        b["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "deleted" || n["status"] == "error")
    })
    .await;
    let statuses: Vec<&str> = settled["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["deleted", "deleted", "error", "deleted"]);
    wait_no_running_machines(&c).await;
    let listed = c.get("/v1/clusters").await.expect(200);
    assert_eq!(listed["clusters"][0]["status"], "error");
    // The failed cluster can still be deleted, and then it is gone.
    c.post_empty(&format!("/v1/clusters/{id}/delete"))
        .await
        .expect(200);
    wait_cluster_gone(&c, &id).await;
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn a_delete_while_nodes_are_pending_provider_leaves_nothing_behind() {
    let s = Server::start(Opts {
        boot_seconds: 8.0,
        ..Opts::default()
    });
    let c = s.admin();
    let id = create(&c, "hasty", 8).await;
    // Delete straight away: some nodes are not even launched yet.
    c.post_empty(&format!("/v1/clusters/{id}/delete"))
        .await
        .expect(200);
    wait_cluster_gone(&c, &id).await;
    wait_no_running_machines(&c).await;
    assert_eq!(
        c.get("/v1/instances").await.expect(200)["instances"],
        json!([])
    );
}

#[tokio::test]
async fn clusters_survive_a_kill_mid_provisioning() {
    let mut s = Server::start(Opts {
        boot_seconds: 1.0,
        ..Opts::default()
    });
    let c = s.admin();
    let a = create(&c, "a", 4).await;
    let b = create(&c, "b", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.kill();
    s.restart();
    let c = s.admin();
    for id in [&a, &b] {
        wait_cluster(&c, id, "active", |b| b["status"] == "active").await;
    }
    let m = machines(&c).await;
    assert_eq!(m.len(), 6, "{m:?}");
    assert!(m.iter().all(|m| m["state"] == "running"));
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn bad_cluster_requests_are_refused_clearly() {
    let s = Server::start(Opts {
        capacity: Some(20),
        ..Opts::default()
    });
    let c = s.admin();
    let with = |k: &str, v: Value| {
        let mut b = create_body("x", 2);
        b[k] = v;
        b
    };
    for (body, field, needle) in [
        (
            with("cloud", json!("paperspace")),
            "cloud",
            "offers no clusters",
        ),
        (
            with("cluster_type", json!("A6000")),
            "cluster_type",
            "H100_sxm5x8",
        ),
        (
            with("num_instances", json!(3)),
            "num_instances",
            "2, 4, 8, 16",
        ),
        (
            with("region", json!("calgary-canada-1")),
            "region",
            "houston-usa-1",
        ),
        (with("name", json!("")), "name", "empty"),
        (with("os", json!("plan9")), "os", "choose one of"),
        (
            with("num_instances", json!("two")),
            "num_instances",
            "invalid type",
        ),
    ] {
        let e = c
            .post("/v1/clusters/create", body)
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], field, "{e}");
        assert!(e["message"].as_str().unwrap().contains(needle), "{e}");
    }
    create(&c, "fits", 16).await;
    let e = c
        .post("/v1/clusters/create", create_body("too-many", 8))
        .await
        .expect_error(409, "insufficient_capacity");
    assert!(e["message"].as_str().unwrap().contains("houston-usa-1"));
    let types = c.get("/v1/clusters/types").await.expect(200);
    let eight = types["cluster_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["cloud"] == "denvr"
                && t["num_instances"] == 8
                && t["cluster_type"]["shade_instance_type"] == "H100_sxm5x8"
        })
        .unwrap()
        .clone();
    assert_eq!(eight["availability"]["available"], false);
    assert_eq!(
        c.get("/v1/clusters").await.expect(200)["clusters"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Another account cannot see or delete it.
    let other = s.client(&s.new_account("other"));
    let id = c.get("/v1/clusters").await.expect(200)["clusters"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    other
        .get(&format!("/v1/clusters/{id}/info"))
        .await
        .expect_error(404, "not_found");
    other
        .post_empty(&format!("/v1/clusters/{id}/delete"))
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        other.get("/v1/clusters").await.expect(200)["clusters"],
        json!([])
    );
    c.get("/v1/clusters/not-a-uuid/info")
        .await
        .expect_error(404, "not_found");
}
