use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{default_create, Opts, Server};

#[tokio::test]
async fn an_instance_goes_from_creating_to_active_and_from_deleting_to_deleted() {
    // Long enough a boot that a 30 ms poll sees both intermediate states
    // even on a loaded CI machine.
    let s = Server::start(Opts {
        boot_seconds: 3.0,
        ..Opts::default()
    });
    let c = s.admin();
    let key = c.add_key("me").await;
    let id = c.create_instance("lifecycle").await;

    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let active = loop {
        let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
        seen.insert(info["status"].as_str().unwrap().to_string());
        if info["status"] == "active" {
            break info;
        }
        assert_eq!(info["ip"], "", "no ip before active: {info}");
        assert!(
            info.get("active_at").is_none(),
            "active_at before active: {info}"
        );
        assert!(Instant::now() < deadline, "never active: {info}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert!(
        seen.contains("pending_provider") && seen.contains("pending"),
        "{seen:?}"
    );
    assert!(active["ip"].as_str().unwrap().starts_with("198."));
    assert!(active["active_at"].is_string());
    assert_eq!(active["deleted_at"], "0001-01-01T00:00:00Z");
    assert_eq!(active["ssh_user"], "shadeform");
    assert_eq!(active["ssh_port"], 22);
    assert_eq!(active["ssh_key_id"], key.as_str());
    assert_eq!(
        active["configuration"]["os"],
        "ubuntu22.04_cuda12.4_shade_os"
    );
    assert_eq!(active["rental_terms"]["rental_type"], "on_demand");
    assert!(active["cloud_assigned_id"]
        .as_str()
        .unwrap()
        .starts_with("massedcompute-"));
    assert!(active["cost_estimate"]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .is_ok());

    let listed = c.get("/v1/instances").await.expect(200);
    assert_eq!(listed["instances"].as_array().unwrap().len(), 1);

    let r = c
        .post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect(200);
    assert_eq!(r["status"], "active");
    // A restart is carried out by the reconciler; a delete that overtakes it
    // makes it moot, so wait for it to reach the machine first.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let machines = c.get("/admin/sim/machines").await.expect(200);
        if machines["machines"][0]["restarts"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never restarted: {machines}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = c
        .post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    assert_eq!(r["status"], "deleting");
    // Deleting instances are still listed.
    let listed = c.get("/v1/instances").await.expect(200);
    assert_eq!(listed["instances"][0]["status"], "deleting");
    c.wait_gone(&id).await;
    assert_eq!(
        c.get("/v1/instances").await.expect(200)["instances"],
        json!([])
    );

    // The machine was restarted once and is terminated now.
    let machines = c.get("/admin/sim/machines").await.expect(200);
    let m = &machines["machines"][0];
    assert_eq!(m["instance_id"], id.as_str());
    assert_eq!(m["state"], "terminated");
    assert_eq!(m["restarts"], 1);
}

#[tokio::test]
async fn types_honour_every_filter_and_sort_by_price() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let all = c.get("/v1/instances/types").await.expect(200)["instance_types"].clone();
    let all = all.as_array().unwrap();
    assert!(all.len() > 50, "{}", all.len());
    let clouds: BTreeSet<_> = all.iter().map(|t| t["cloud"].as_str().unwrap()).collect();
    assert!(clouds.len() >= 8);

    let types = |q: &'static str| {
        let c = c.clone();
        async move {
            c.get(&format!("/v1/instances/types?{q}")).await.expect(200)["instance_types"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    for t in types("cloud=lambdalabs").await {
        assert_eq!(t["cloud"], "lambdalabs");
    }
    let h100 = types("gpu_type=H100&num_gpus=8").await;
    assert!(!h100.is_empty());
    for t in &h100 {
        assert_eq!(t["configuration"]["gpu_type"], "H100");
        assert_eq!(t["configuration"]["num_gpus"], 8);
    }
    for t in types("shade_instance_type=A6000").await {
        assert_eq!(t["shade_instance_type"], "A6000");
    }
    let region = types("region=us-central-1").await;
    assert!(!region.is_empty());
    for t in &region {
        for a in t["availability"].as_array().unwrap() {
            assert_eq!(a["region"], "us-central-1");
        }
    }
    let sorted = types("sort=price").await;
    let prices: Vec<i64> = sorted
        .iter()
        .map(|t| t["hourly_price"].as_i64().unwrap())
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(prices.len(), all.len());

    // Spot entries carry their own price; every entry names its rental type.
    let spot: Vec<Value> = all
        .iter()
        .flat_map(|t| t["availability"].as_array().unwrap().clone())
        .filter(|a| a["rental_type"] == "spot")
        .collect();
    assert!(!spot.is_empty());
    for a in &spot {
        assert!(a["hourly_price"].as_str().unwrap().contains('.'));
    }

    // Answers are cached by query string: another spelling of a filter
    // gets the same answer, and the cached one stays the same.
    assert_eq!(types("num_gpus=8&gpu_type=H100").await, h100);
    assert_eq!(types("gpu_type=H100&num_gpus=8").await, h100);

    // A refused query is refused every time (nothing of it is cached).
    for _ in 0..2 {
        let e = c
            .get("/v1/instances/types?num_gpus=eight")
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], "num_gpus");
    }
    c.get("/v1/instances/types?sort=name")
        .await
        .expect_error(400, "invalid_request");
}

#[tokio::test]
async fn capacity_is_finite_and_the_catalog_says_so() {
    let s = Server::start(Opts {
        capacity: Some(2),
        ..Opts::default()
    });
    let c = s.admin();
    let avail = |types: Value| {
        types["instance_types"][0]["availability"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["region"] == "us-central-1" && a["rental_type"] == "on_demand")
            .unwrap()["available"]
            .clone()
    };
    let q = "/v1/instances/types?cloud=massedcompute&shade_instance_type=A6000";
    assert_eq!(avail(c.get(q).await.expect(200)), true);
    let a = c.create_instance("one").await;
    c.create_instance("two").await;
    let e = c
        .post("/v1/instances/create", default_create("three"))
        .await
        .expect_error(409, "insufficient_capacity");
    assert!(e["message"].as_str().unwrap().contains("us-central-1"));
    assert_eq!(avail(c.get(q).await.expect(200)), false);
    let only_available = c.get(&format!("{q}&available=true")).await.expect(200);
    for t in only_available["instance_types"].as_array().unwrap() {
        for a in t["availability"].as_array().unwrap() {
            assert_eq!(a["available"], true);
        }
    }
    // Deleting frees the slot.
    c.post_empty(&format!("/v1/instances/{a}/delete"))
        .await
        .expect(200);
    c.wait_gone(&a).await;
    c.create_instance("three").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_creates_takes_exactly_the_free_slots() {
    let s = Server::start(Opts {
        capacity: Some(5),
        ..Opts::default()
    });
    let c = s.admin();
    // Twenty creates at once for five slots: the check and the insert are
    // one transaction, so exactly five win and the rest hear 409 at once,
    // rather than being accepted and failing at the provider later.
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                c.post(
                    "/v1/instances/create",
                    default_create(&format!("burst-{n}")),
                )
                .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => ids.push(r.body["id"].as_str().unwrap().to_string()),
            _ => {
                r.expect_error(409, "insufficient_capacity");
                refused += 1;
            }
        }
    }
    assert_eq!((ids.len(), refused), (5, 15));
    for id in &ids {
        c.wait_status(id, "active").await;
    }
    let machines = c.get("/admin/sim/machines").await.expect(200);
    let running = machines["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "running")
        .count();
    assert_eq!(running, 5, "{machines}");
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn capacity_counters_that_drifted_are_recounted_at_start() {
    // A binary from before the counters, still serving during an upgrade,
    // writes instances without them; the next start puts them right.
    let mut s = Server::start(Opts {
        capacity: Some(3),
        ..Opts::default()
    });
    let c = s.admin();
    let id = c.create_instance("one").await;
    c.wait_status(&id, "active").await;
    s.kill();
    let store = s.store().await;
    sqlx::query("UPDATE holdings SET n = 3")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM sim_holdings")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.capacity_drift().await.unwrap().len(), 2);
    // What a store migrated from before the counters holds: no marker.
    sqlx::query("DELETE FROM settings WHERE name = 'capacity_recount'")
        .execute(store.pool())
        .await
        .unwrap();
    store.pool().close().await;
    s.restart();
    s.assert_capacity_counts_agree().await;
    assert!(s.log().contains("recounted"), "{}", s.log());
    // Drift was found, so writers without counters may still be serving:
    // the next start recounts again, finds them right and stops.
    let store = s.store().await;
    assert_eq!(recount_marker(&store).await.as_deref(), None);
    store.pool().close().await;
    s.restart();
    let store = s.store().await;
    assert_eq!(recount_marker(&store).await.as_deref(), Some("done"));
    store.pool().close().await;
    // Two slots are free again, not zero.
    let c = s.admin();
    c.create_instance("two").await;
    c.create_instance("three").await;
    c.post("/v1/instances/create", default_create("four"))
        .await
        .expect_error(409, "insufficient_capacity");
}

async fn recount_marker(store: &parasol::store::Store) -> Option<String> {
    store.setting("capacity_recount").await.unwrap()
}

#[tokio::test]
async fn a_start_recounts_capacity_only_when_owed_and_the_cli_recounts_on_demand() {
    // A fresh store owes one recount (its migration cannot know who wrote
    // before it); the first start pays it and clears the marker.
    let mut s = Server::start(Opts {
        capacity: Some(3),
        ..Opts::default()
    });
    let c = s.admin();
    let id = c.create_instance("one").await;
    c.wait_status(&id, "active").await;
    s.kill();
    let store = s.store().await;
    assert_eq!(recount_marker(&store).await.as_deref(), Some("done"));
    // A hand edit the marker does not know of: starts leave it alone
    // (a recount would read every instance row).
    sqlx::query("UPDATE holdings SET n = 3")
        .execute(store.pool())
        .await
        .unwrap();
    store.pool().close().await;
    s.restart();
    let store = s.store().await;
    assert_eq!(store.capacity_drift().await.unwrap().len(), 1);
    store.pool().close().await;
    // The operator's recount puts it right while the server runs.
    let mut cmd = std::process::Command::new(crate::harness::binary());
    cmd.args(["store", "recount-capacity", "--data-dir"])
        .arg(&s.data_dir)
        .env_remove("PARASOL_CONFIG")
        .env_remove("PARASOL_DATABASE_URL");
    if let Some(url) = &s.database_url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Recounted 1 capacity counters"), "{err}");
    s.assert_capacity_counts_agree().await;
    let c = s.admin();
    c.create_instance("two").await;
    c.create_instance("three").await;
    c.post("/v1/instances/create", default_create("four"))
        .await
        .expect_error(409, "insufficient_capacity");
}

#[tokio::test]
async fn update_replaces_given_fields_removes_nulls_and_keeps_the_rest() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let mut body = default_create("before");
    body["tags"] = json!(["a", "b"]);
    body["alert"] = json!({"spend_threshold": "5.00"});
    let id = c.post("/v1/instances/create", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();

    c.post(
        &format!("/v1/instances/{id}/update"),
        json!({"name": "after"}),
    )
    .await
    .expect(200);
    let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
    assert_eq!(info["name"], "after");
    assert_eq!(info["tags"], json!(["a", "b"]));
    assert_eq!(info["alert"]["spend_threshold"], "5.00");

    c.post(
        &format!("/v1/instances/{id}/update"),
        json!({"tags": null, "alert": null, "auto_delete": {"date_threshold": "2030-01-02T15:04:05Z"}}),
    )
    .await
    .expect(200);
    let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
    assert_eq!(info["name"], "after");
    assert_eq!(info["tags"], json!([]));
    assert!(info.get("alert").is_none());
    assert_eq!(
        info["auto_delete"]["date_threshold"],
        "2030-01-02T15:04:05Z"
    );

    for (bad, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": null}), "name"),
        (
            json!({"auto_delete": {"date_threshold": "tomorrow"}}),
            "auto_delete.date_threshold",
        ),
        (
            json!({"alert": {"spend_threshold": "ten dollars"}}),
            "alert.spend_threshold",
        ),
        (json!({"tags": "x"}), "tags"),
    ] {
        let e = c
            .post(&format!("/v1/instances/{id}/update"), bad.clone())
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], field, "{bad}: {e}");
    }
    // Refused updates changed nothing.
    let after = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
    assert_eq!(after["name"], "after");
    assert_eq!(after["auto_delete"], info["auto_delete"]);
}

#[tokio::test]
async fn restart_is_refused_unless_active() {
    let s = Server::start(Opts {
        boot_seconds: 30.0,
        ..Opts::default()
    });
    let c = s.admin();
    let id = c.create_instance("slow").await;
    let e = c
        .post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect_error(409, "conflict");
    assert!(e["message"].as_str().unwrap().contains("active"));
}

#[tokio::test]
async fn cost_accrues_from_active_at_at_the_hourly_price() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let c = s.admin();
    let id = c.create_instance("billed").await;
    let info = c.wait_status(&id, "active").await;
    let price = info["hourly_price"].as_i64().unwrap();
    c.post("/admin/clock/advance", json!({"seconds": 3600}))
        .await
        .expect(200);
    let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
    let expected = format!("{}.{:02}", price / 100, price % 100);
    assert_eq!(info["cost_estimate"], expected.as_str());
    c.post("/admin/clock/advance", json!({"seconds": 1800}))
        .await
        .expect(200);
    let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
    let half = price * 3 / 2;
    assert_eq!(
        info["cost_estimate"],
        format!("{}.{:02}", half / 100, half % 100).as_str()
    );
}

#[tokio::test]
async fn the_list_is_oldest_first() {
    // The list's order comes from the store's versions query (its ORDER BY
    // on the creation time, then the id); ids are random, so creation
    // order and id order differ.
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let c = s.admin();
    let mut made = Vec::new();
    for n in 0..6 {
        made.push(c.create_instance(&format!("i{n}")).await);
        c.post("/admin/clock/advance", json!({"seconds": 1}))
            .await
            .expect(200);
    }
    let listed: Vec<String> = c.get("/v1/instances").await.expect(200)["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, made);
}

#[tokio::test]
async fn the_list_shows_every_write_and_the_cost_as_of_now() {
    // The list serves cached renderings; each must follow its instance's
    // writes and the clock, and match what /info says.
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let c = s.admin();
    let ids = [
        c.create_instance("a").await,
        c.create_instance("b").await,
        c.create_instance("c").await,
    ];
    for id in &ids {
        c.wait_status(id, "active").await;
    }
    let list = || async {
        c.get("/v1/instances").await.expect(200)["instances"]
            .as_array()
            .unwrap()
            .clone()
    };
    let before = list().await;
    assert_eq!(before.len(), 3);
    c.post(
        &format!("/v1/instances/{}/update", ids[0]),
        json!({"name": "renamed", "tags": ["x"]}),
    )
    .await
    .expect(200);
    c.post_empty(&format!("/v1/instances/{}/delete", ids[1]))
        .await
        .expect(200);
    c.post("/admin/clock/advance", json!({"seconds": 7200}))
        .await
        .expect(200);
    let after = list().await;
    let by_id = |v: &[Value], id: &str| v.iter().find(|i| i["id"] == id).cloned();
    let renamed = by_id(&after, &ids[0]).unwrap();
    assert_eq!(renamed["name"], "renamed");
    assert_eq!(renamed["tags"], json!(["x"]));
    if let Some(b) = by_id(&after, &ids[1]) {
        assert_eq!(b["status"], "deleting");
    }
    for id in [&ids[0], &ids[2]] {
        let listed = by_id(&after, id).unwrap();
        let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
        assert_eq!(listed, info);
        let cost = |v: &Value| v["cost_estimate"].as_str().unwrap().parse::<f64>().unwrap();
        let was = by_id(&before, id).unwrap();
        assert!(cost(&listed) >= cost(&was) + 1.0, "{listed} {was}");
    }
    c.wait_gone(&ids[1]).await;
    let last = list().await;
    assert_eq!(last.len(), 2);
    assert!(by_id(&last, &ids[1]).is_none());
}

#[tokio::test]
async fn a_machine_that_fails_while_booting_puts_the_instance_in_error_and_is_released() {
    let s = Server::start(Opts {
        boot_seconds: 8.0,
        ..Opts::default()
    });
    let c = s.admin();
    let id = c.create_instance("doomed").await;
    c.wait_status(&id, "pending_provider").await;
    c.post(
        &format!("/admin/sim/machines/{id}/fail"),
        json!({"reason": "GPU fell off the bus"}),
    )
    .await
    .expect(200);
    let info = c.wait_status(&id, "error").await;
    assert_eq!(info["status_details"], "GPU fell off the bus");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = c.get("/admin/sim/machines").await.expect(200);
        if m["machines"][0]["state"] == "terminated" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "machine of a failed instance not released: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An errored instance can still be deleted by its owner.
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut s = Server::start(Opts::default());
    let status = s.terminate();
    assert!(status.success(), "{status:?}\n{}", s.log());
    assert!(s.log().contains("stopped"));
}
