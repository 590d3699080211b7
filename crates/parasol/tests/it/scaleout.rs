//! Scale-out on PostgreSQL: replicas sharing one database, and the
//! database going away under a running server. These need PostgreSQL
//! whatever `PARASOL_TEST_BACKEND` says, and fail (never skip) without it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::harness::{fresh_pg_database, Client, Opts, PgCluster, Server, UNLIMITED};

/// Replicas on one database; the harness gives every server short leases,
/// so a dead replica's work is taken over within seconds.
fn replica_opts(url: &str, boot_seconds: f64) -> Opts {
    Opts {
        boot_seconds,
        database_url: Some(url.to_string()),
        ..Opts::default()
    }
    .args(UNLIMITED)
}

/// Starts servers on one database at the same moment, as an orchestrator
/// would.
fn start_replicas(opts: Vec<Opts>) -> Vec<Server> {
    let handles: Vec<_> = opts
        .into_iter()
        .map(|o| std::thread::spawn(move || Server::start(o)))
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

async fn all_instances(c: &Client) -> Vec<Value> {
    c.get("/v1/instances").await.expect(200)["instances"]
        .as_array()
        .unwrap()
        .clone()
}

async fn reconciler(c: &Client) -> Value {
    c.get("/admin/reconciler").await.expect(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_drive_each_of_300_instances_exactly_once_even_when_one_is_killed() {
    let (url, _name) = fresh_pg_database();
    // The replica to be killed has a single database connection, so its
    // claimed steps queue behind each other: it dies holding leases.
    let opts = replica_opts(&url, 0.5);
    let mut replicas = start_replicas(vec![
        opts.clone(),
        opts.clone(),
        opts.args(&["--pool-size", "1"]),
    ]);
    let clients: Vec<Client> = replicas.iter().map(|s| s.admin()).collect();
    let victim_id = reconciler(&clients[2]).await["replica"]
        .as_str()
        .unwrap()
        .to_string();

    // The first half through all three replicas, 30 requests in flight.
    let create = |n: std::ops::Range<usize>, cs: Vec<Client>| {
        futures::stream::iter(n)
            .map(move |i| {
                let c = cs[i % cs.len()].clone();
                async move { c.create_instance(&format!("scale-{i}")).await }
            })
            .buffer_unordered(30)
            .collect::<Vec<String>>()
    };
    let mut ids: BTreeSet<String> = create(0..150, clients.clone()).await.into_iter().collect();

    // SIGKILL one replica while it is driving instances, then record what
    // it held: those are the steps the others must take over.
    let deadline = Instant::now() + Duration::from_secs(10);
    let orphaned: Vec<String> = loop {
        let leases = reconciler(&clients[0]).await["leases"].clone();
        let victims: Vec<String> = leases
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["owner"] == victim_id.as_str())
            .map(|l| l["instance_id"].as_str().unwrap().to_string())
            .collect();
        if !victims.is_empty() || Instant::now() > deadline {
            replicas[2].kill();
            let after = reconciler(&clients[0]).await["leases"].clone();
            break after
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["owner"] == victim_id.as_str())
                .map(|l| l["instance_id"].as_str().unwrap().to_string())
                .collect();
        }
    };
    println!("killed replica held {} leases", orphaned.len());
    assert!(
        !orphaned.is_empty(),
        "the replica died idle; nothing to take over"
    );

    ids.extend(create(150..300, clients[..2].to_vec()).await);
    assert_eq!(ids.len(), 300);

    // Every instance reaches active, whichever replica is asked.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = all_instances(&clients[1]).await;
        let active = list.iter().filter(|i| i["status"] == "active").count();
        if active == 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {active} of 300 active; statuses: {:?}",
            list.iter().map(|i| i["status"].clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed: BTreeSet<String> = all_instances(&clients[0])
        .await
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids);
    for id in &orphaned {
        assert!(ids.contains(id), "{id} was not created by this test");
    }

    // The shared sim: exactly one machine per instance, all running.
    let machines = clients[0].get("/admin/sim/machines").await.expect(200);
    let machines = machines["machines"].as_array().unwrap();
    let launched: Vec<String> = machines
        .iter()
        .map(|m| m["instance_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(launched.len(), 300, "one machine per instance");
    assert_eq!(launched.into_iter().collect::<BTreeSet<_>>(), ids);
    assert!(machines.iter().all(|m| m["state"] == "running"));

    // Nobody drove an instance while another replica did: a step that
    // overlapped another replica's would have lost its generation- and
    // lease-checked write. Both survivors did real work, and the dead
    // replica's leases are all gone.
    for c in &clients[..2] {
        let r = reconciler(c).await;
        assert_eq!(r["lost_races"], 0, "{r:#}");
        assert!(r["transitions"].as_u64().unwrap() > 0, "{r:#}");
        for l in r["leases"].as_array().unwrap() {
            assert_ne!(l["owner"], victim_id.as_str(), "{l}");
        }
    }
}

#[tokio::test]
async fn replicas_starting_together_on_a_fresh_database_migrate_it_once() {
    let (url, _name) = fresh_pg_database();
    let replicas = start_replicas(vec![replica_opts(&url, 0.0); 4]);
    // One admin account, whichever replica created it, usable on all.
    for s in &replicas {
        s.admin().get("/v1/instances").await.expect(200);
    }
    let id = replicas[0].admin().create_instance("shared").await;
    replicas[3].admin().wait_status(&id, "active").await;
    for s in &replicas {
        assert!(!s.log().contains("ERROR"), "{}", s.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_answers_503_meanwhile_and_loses_nothing() {
    let pg = PgCluster::start();
    let s = Server::start(Opts {
        boot_seconds: 1.0,
        database_url: Some(pg.url.clone()),
        ..Opts::default()
    });
    let c = s.admin();
    // A key never used before the outage: its lookup needs the database.
    let fresh_key = s.client(&s.new_account("late"));
    let mut ids = BTreeSet::new();
    for i in 0..20 {
        ids.insert(c.create_instance(&format!("outage-{i}")).await);
    }

    // Reconciles are in flight (machines are booting) when it goes down.
    pg.stop();
    let down_at = Instant::now();
    let mut seen_503 = 0;
    while down_at.elapsed() < Duration::from_secs(4) {
        let started = Instant::now();
        let (list, create, auth) = tokio::join!(
            c.get("/v1/instances"),
            c.post(
                "/v1/instances/create",
                crate::harness::default_create("during-outage")
            ),
            fresh_key.get("/v1/sshkeys"),
        );
        for r in [list, create, auth] {
            let e = r.expect_error(503, "unavailable");
            assert!(e["message"].as_str().unwrap().contains("database"), "{e}");
            seen_503 += 1;
        }
        // Answered within the pool's acquire timeout, not hung.
        assert!(started.elapsed() < Duration::from_secs(6));
    }
    assert!(seen_503 >= 3);
    pg.resume();

    // Back by itself: no restart of the server.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.get("/v1/instances").await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{:#}", r.body);
        assert!(Instant::now() < deadline, "never recovered: {:#}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fresh_key.get("/v1/sshkeys").await.expect(200);
    let late = c.create_instance("after-outage").await;
    ids.insert(late);
    for id in &ids {
        c.wait_status(id, "active").await;
    }
    let listed: BTreeSet<String> = all_instances(&c)
        .await
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids, "no instance lost, none invented");
    let machines = c.get("/admin/sim/machines").await.expect(200);
    assert_eq!(machines["machines"].as_array().unwrap().len(), ids.len());
    assert!(s.log().contains("unavailable"), "the outage is logged");
}
