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

    // SIGKILL one replica while it is driving instances, and record what
    // it held: those are the steps the others must take over. It is
    // stopped (SIGSTOP) while its leases are read, so that it cannot
    // release them between the reading and the kill.
    let deadline = Instant::now() + Duration::from_secs(10);
    let orphaned: Vec<String> = loop {
        replicas[2].signal("STOP");
        let leases = reconciler(&clients[0]).await["leases"].clone();
        let held: Vec<String> = leases
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["owner"] == victim_id.as_str())
            .map(|l| l["instance_id"].as_str().unwrap().to_string())
            .collect();
        if !held.is_empty() || Instant::now() > deadline {
            replicas[2].kill();
            break held;
        }
        replicas[2].signal("CONT");
        tokio::time::sleep(Duration::from_millis(20)).await;
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

/// An instance record of `account` on `offer` (a type of the sim's
/// catalog shape; the store does not look it up).
fn creating(account: uuid::Uuid, offer: &str, n: usize) -> parasol::store::InstanceRecord {
    let id = uuid::Uuid::new_v4();
    let doc = serde_json::json!({
        "id": id, "cloud": "massedcompute", "region": "us-central-1",
        "shade_instance_type": offer, "cloud_instance_type": offer,
        "cloud_assigned_id": "sim", "shade_cloud": true, "name": format!("c-{n}"),
        "configuration": {
            "memory_in_gb": 100, "storage_in_gb": 512, "vcpus": 14, "num_gpus": 1,
            "gpu_type": "A6000", "interconnect": "pcie", "nvlink": false,
            "vram_per_gpu_in_gb": 48, "gpu_manufacturer": "nvidia",
            "os": "ubuntu22.04_cuda12.4_shade_os"
        },
        "ip": "198.19.0.1", "ssh_user": "shadeform", "ssh_port": 22,
        "status": "creating", "cost_estimate": "0.00", "hourly_price": 120,
        "rental_terms": {"rental_type": "on_demand", "hourly_price": "1.20", "ending_at": null},
        "volume_ids": [], "tags": [], "envs": [], "port_mappings": [],
        "active_at": null, "created_at": "2026-11-27T09:59:00Z", "deleted_at": null,
        "boot_time": {"min_boot_in_sec": 120, "max_boot_in_sec": 240}
    });
    let instance: parasol_api::Instance = serde_json::from_value(doc).unwrap();
    parasol::store::InstanceRecord {
        account_id: account,
        cluster_id: None,
        generation: 0,
        wake_at: None,
        stored_status: instance.status,
        stored_offer: parasol::store::OfferKey::of(&instance),
        stored_charge: parasol::store::Charge::of(&instance),
        instance,
        internal: Default::default(),
    }
}

/// Three stores (three replicas' writers) on one database create at once:
/// against one offer with too few slots for all of them, and against
/// offers and accounts of their own, each store's creates in an order of
/// its own (so their batches change the counter rows in different orders).
/// No create fails (a deadlock between batches would fail one), the shared
/// offer is never oversold, every counter agrees with its rows, and the
/// event log numbers every stored instance's event once, with no gap, in
/// commit order: a reader polling during the load never sees an event
/// before one with a smaller number.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_writers_on_one_database_create_concurrently_without_deadlock_gap_or_oversell() {
    use parasol::store::{InsertOutcome, Store, StoreOptions};
    let (url, _name) = fresh_pg_database();
    let opts = StoreOptions {
        url,
        max_connections: 4,
    };
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Store::open(&opts).await.unwrap());
    }
    let accounts = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    const SHARED_SLOTS: i64 = 60;
    const EACH: usize = 120;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reader of the log while it is written.
    let reader = {
        let (store, stop) = (stores[0].clone(), stop.clone());
        tokio::spawn(async move {
            let mut cursor = 0i64;
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let page = store.events_after(cursor, None, 1000).await.unwrap();
                for e in &page {
                    assert_eq!(
                        e.seq,
                        cursor + 1,
                        "after event {cursor} a reader saw {} first",
                        e.seq
                    );
                    cursor = e.seq;
                }
                reads += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (cursor, reads)
        })
    };
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for n in 0..EACH {
            let store = store.clone();
            // Each store interleaves the shared offer with its own, from
            // a different starting point, and both accounts.
            let shared = (n + s) % 3 != 0;
            let offer = if shared {
                "SHARED".to_string()
            } else {
                format!("OWN{s}")
            };
            let account = accounts[(n / 2 + s) % 2];
            tasks.push(tokio::spawn(async move {
                let rec = creating(account, &offer, n);
                let slots = shared.then_some(SHARED_SLOTS);
                let out = store.insert_instance_with_volumes(&rec, &[], slots).await;
                (shared, rec.instance.id, out)
            }));
        }
    }
    // Events that change no counter: batches of nothing else share no
    // lock but the log's.
    // Each in a small batch of its own: four writers a store, each
    // waiting for its last event's commit.
    let mut recorded = Vec::new();
    for store in &stores {
        for w in 0..4 {
            let store = store.clone();
            let account = accounts[w % 2];
            recorded.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..EACH / 4 {
                    let id = store
                        .record_event(account, None, "alert.spend_threshold", "m", n as i64)
                        .await;
                    ids.push(id.unwrap_or_else(|e| panic!("an event failed: {e}")));
                }
                ids
            }));
        }
    }
    let mut events = BTreeSet::new();
    for r in recorded {
        events.extend(r.await.unwrap());
    }
    let mut stored = BTreeSet::new();
    let (mut shared_stored, mut refused) = (0, 0);
    for t in tasks {
        let (shared, id, out) = t.await.unwrap();
        match out.unwrap_or_else(|e| panic!("a create failed: {e}")) {
            InsertOutcome::Stored => {
                stored.insert(id);
                if shared {
                    shared_stored += 1;
                }
            }
            InsertOutcome::NoCapacity => {
                assert!(shared, "an offer without a limit refused a create");
                refused += 1;
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (_, reads) = reader.await.unwrap();
    assert!(reads > 1, "the reader read during the load");
    assert_eq!(
        shared_stored, SHARED_SLOTS,
        "the shared offer holds its slots"
    );
    assert!(refused > 0);
    assert_eq!(
        stores[1].capacity_drift().await.unwrap(),
        Vec::<String>::new()
    );
    let log = stores[2].events_after(0, None, 10_000).await.unwrap();
    let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=(stored.len() + events.len()) as i64).collect::<Vec<_>>()
    );
    let logged: BTreeSet<uuid::Uuid> = log.iter().filter_map(|e| e.instance_id).collect();
    assert_eq!(
        logged, stored,
        "one event per stored instance, none for a refused one"
    );
    let alerts: BTreeSet<uuid::Uuid> = log
        .iter()
        .filter(|e| e.instance_id.is_none())
        .map(|e| e.id)
        .collect();
    assert_eq!(alerts, events);
    for s in stores {
        s.close().await;
    }
}
