use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::harness::{Client, Opts, Server};

async fn statuses(c: &Client) -> BTreeMap<String, String> {
    let list = c.get("/v1/instances").await.expect(200);
    list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_server_killed_mid_provisioning_finishes_every_instance_with_one_machine_each() {
    let mut s = Server::start(Opts {
        boot_seconds: 1.0,
        ..Opts::default()
    });
    let c = s.admin();
    let mut ids = BTreeSet::new();
    for i in 0..12 {
        ids.insert(c.create_instance(&format!("crash-{i}")).await);
    }
    // Kill once while most are creating or launching...
    s.kill();
    s.restart();
    let c = s.admin();
    // ...and again once some are in pending_provider or pending.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = statuses(&c).await;
        if st
            .values()
            .any(|s| s == "pending_provider" || s == "pending")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill();
    s.restart();
    let c = s.admin();
    for id in &ids {
        c.wait_status(id, "active").await;
    }
    let st = statuses(&c).await;
    assert_eq!(st.keys().cloned().collect::<BTreeSet<_>>(), ids);
    let machines = c.get("/admin/sim/machines").await.expect(200);
    let machines = machines["machines"].as_array().unwrap();
    let launched: Vec<String> = machines
        .iter()
        .map(|m| m["instance_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        launched.len(),
        ids.len(),
        "exactly one machine per instance: {machines:?}"
    );
    assert_eq!(launched.iter().cloned().collect::<BTreeSet<_>>(), ids);
    assert!(machines.iter().all(|m| m["state"] == "running"));
    assert!(s.log().contains("transition"));
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn a_delete_acknowledged_before_a_kill_is_honoured_after_restart() {
    let mut s = Server::start(Opts {
        boot_seconds: 20.0,
        ..Opts::default()
    });
    let c = s.admin();
    let id = c.create_instance("short-lived").await;
    c.wait_status(&id, "pending_provider").await;
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    s.kill();
    s.restart();
    let c = s.admin();
    c.wait_gone(&id).await;
    let machines = c.get("/admin/sim/machines").await.expect(200);
    for m in machines["machines"].as_array().unwrap() {
        assert_eq!(m["state"], "terminated", "{m}");
    }
}
