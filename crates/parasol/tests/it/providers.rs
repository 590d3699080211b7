//! The real-cloud adapters, end to end: the server binary talks to fake
//! Lambda, Verda and Hyperstack APIs (see `fakes`), and the tests drive
//! Parasol's own API and assert the exact requests each adapter sent.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::fakes::hyperstack::{self as hs, Hyperstack};
use crate::fakes::lambda::{self as la, Lambda};
use crate::fakes::verda::{self as ve, Verda};
use crate::fakes::{FakeServer, Timing};
use crate::harness::{public_key, Client, Opts, Server};

fn opts(env: &[(&str, String)]) -> Opts {
    Opts {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Opts::default()
    }
}

fn lambda_env(fake: &FakeServer<Lambda>) -> Vec<(&'static str, String)> {
    vec![
        ("PARASOL_LAMBDA_API_KEY", la::KEY.to_string()),
        ("PARASOL_LAMBDA_URL", format!("{}/api/v1", fake.url)),
        ("PARASOL_LAMBDA_LAUNCH_INTERVAL_MS", "0".to_string()),
    ]
}

fn verda_env(fake: &FakeServer<Verda>) -> Vec<(&'static str, String)> {
    vec![
        ("PARASOL_VERDA_CLIENT_ID", ve::CLIENT_ID.to_string()),
        ("PARASOL_VERDA_CLIENT_SECRET", ve::CLIENT_SECRET.to_string()),
        ("PARASOL_VERDA_URL", format!("{}/v1", fake.url)),
    ]
}

fn hyperstack_env(fake: &FakeServer<Hyperstack>) -> Vec<(&'static str, String)> {
    vec![
        ("PARASOL_HYPERSTACK_API_KEY", hs::KEY.to_string()),
        ("PARASOL_HYPERSTACK_URL", format!("{}/v1", fake.url)),
    ]
}

/// The name Parasol gives its SSH key at the clouds (sha256 of the key).
fn key_name() -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(public_key().as_bytes());
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("parasol-{hex}")
}

async fn types(c: &Client, query: &str) -> Vec<Value> {
    c.get(&format!("/v1/instances/types?{query}"))
        .await
        .expect(200)["instance_types"]
        .as_array()
        .unwrap()
        .clone()
}

fn find<'a>(types: &'a [Value], shade: &str) -> &'a Value {
    types
        .iter()
        .find(|t| t["shade_instance_type"] == shade)
        .unwrap_or_else(|| panic!("no {shade} in {types:#?}"))
}

fn availability(t: &Value) -> Vec<(String, bool, String)> {
    let mut v: Vec<_> = t["availability"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["region"].as_str().unwrap().to_string(),
                a["available"].as_bool().unwrap(),
                a["display_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn create(c: &Client, cloud: &str, region: &str, shade: &str, name: &str) -> String {
    c.post(
        "/v1/instances/create",
        json!({"cloud": cloud, "region": region, "shade_instance_type": shade,
               "shade_cloud": true, "name": name}),
    )
    .await
    .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Polls until the instance is active, asserting that it was `pending`
/// without an ip first (the fakes give the ip late).
async fn wait_active_after_pending(c: &Client, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_pending_without_ip = false;
    loop {
        let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
        match info["status"].as_str().unwrap() {
            "active" => {
                assert!(
                    saw_pending_without_ip,
                    "never pending without an ip: {info}"
                );
                return info;
            }
            "pending" if info["ip"] == "" => saw_pending_without_ip = true,
            "error" => panic!("instance failed: {info:#}"),
            _ => assert_eq!(info["ip"], "", "an ip before active: {info}"),
        }
        assert!(Instant::now() < deadline, "never active: {info:#}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

fn slow_ip() -> Timing {
    Timing {
        boot: Duration::from_millis(800),
        ip_after: Duration::from_millis(1800),
        teardown: Duration::from_millis(300),
    }
}

// ---------------------------------------------------------------- Lambda

#[tokio::test]
async fn lambda_types_map_to_shadeform_names_with_cents_and_regions_and_the_sim_is_off() {
    let fake = FakeServer::start(Lambda::default()).await;
    let s = Server::start(opts(&lambda_env(&fake)));
    let c = s.admin();
    let all = types(&c, "").await;
    assert!(
        all.iter().all(|t| t["cloud"] == "lambdalabs"),
        "a real cloud turns the sim off by default"
    );
    assert_eq!(all.len(), 3, "{all:#?}");
    let a6000 = find(&all, "A6000");
    assert_eq!(a6000["cloud_instance_type"], "gpu_1x_a6000");
    assert_eq!(a6000["hourly_price"], 80);
    assert_eq!(a6000["configuration"]["num_gpus"], 1);
    assert_eq!(a6000["configuration"]["gpu_type"], "A6000");
    assert_eq!(a6000["configuration"]["vcpus"], 14);
    assert_eq!(a6000["configuration"]["memory_in_gb"], 46);
    assert_eq!(
        availability(a6000),
        vec![
            ("us-east-1".into(), false, "Virginia, USA".into()),
            ("us-west-1".into(), true, "California, USA".into()),
        ]
    );
    let h100 = find(&all, "H100_sxm5x8");
    assert_eq!(h100["cloud_instance_type"], "gpu_8x_h100_sxm5");
    assert_eq!(h100["hourly_price"], 2392);
    assert_eq!(h100["configuration"]["nvlink"], true);
    assert!(availability(h100).iter().all(|a| !a.1));
    assert_eq!(find(&all, "A10")["hourly_price"], 75);

    let reqs = fake.requests();
    assert_eq!(reqs[0].line(), "GET /api/v1/instance-types");
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(&*format!("Bearer {}", la::KEY))
        );
    }
}

#[tokio::test]
async fn a_lambda_instance_launches_boots_restarts_and_terminates_with_the_documented_requests() {
    let fake = FakeServer::start(Lambda {
        timing: slow_ip(),
        ..Lambda::default()
    })
    .await;
    let s = Server::start(opts(&lambda_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    let id = create(&c, "lambdalabs", "us-west-1", "A6000", "gpu-box").await;
    let active = wait_active_after_pending(&c, &id).await;
    assert_eq!(active["ip"], "203.0.113.10");
    assert_eq!(active["ssh_user"], "ubuntu");
    assert_eq!(
        active["cloud_assigned_id"],
        "0920582c7ff041399e34823a0be60000"
    );

    c.post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect(200);
    fake.wait_for("a restart", |r| {
        r.iter()
            .any(|r| r.line() == "POST /api/v1/instance-operations/restart")
    })
    .await;
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;

    let key = key_name();
    let keys = fake.requests_to("POST /api/v1/ssh-keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].body,
        json!({"name": key, "public_key": public_key()})
    );
    let launches = fake.requests_to("POST /api/v1/instance-operations/launch");
    assert_eq!(launches.len(), 1, "one launch, no retries");
    assert_eq!(
        launches[0].body,
        json!({"region_name": "us-west-1", "instance_type_name": "gpu_1x_a6000",
               "ssh_key_names": [key], "quantity": 1, "name": format!("parasol-{id}")})
    );
    let machine = "0920582c7ff041399e34823a0be60000";
    assert_eq!(
        fake.requests_to("POST /api/v1/instance-operations/restart")[0].body,
        json!({"instance_ids": [machine]})
    );
    let terms = fake.requests_to("POST /api/v1/instance-operations/terminate");
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].body, json!({"instance_ids": [machine]}));
    assert!(fake.with(|f| f.live().is_empty()));
    assert_eq!(fake.with(|f| f.machines[0].restarts), 1);
    let log = s.log();
    assert!(!log.contains(la::KEY), "the API key reached the log");
}

#[tokio::test]
async fn a_lambda_capacity_refusal_ends_in_error_and_marks_the_region_unavailable() {
    let fake = FakeServer::start(Lambda {
        no_capacity: vec![("gpu_1x_a10".into(), "us-east-1".into())],
        ..Lambda::default()
    })
    .await;
    let s = Server::start(opts(&lambda_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    let a10 = types(&c, "cloud=lambdalabs&shade_instance_type=A10").await;
    assert!(availability(&a10[0]).iter().all(|a| a.1));
    let id = create(&c, "lambdalabs", "us-east-1", "A10", "no-room").await;
    let info = c.wait_status(&id, "error").await;
    let details = info["status_details"].as_str().unwrap();
    assert!(details.contains("insufficient capacity"), "{details}");
    assert!(details.contains("Not enough capacity"), "{details}");
    let a10 = types(&c, "cloud=lambdalabs&shade_instance_type=A10").await;
    assert_eq!(
        availability(&a10[0]),
        vec![
            ("us-east-1".into(), false, "Virginia, USA".into()),
            ("us-west-1".into(), true, "California, USA".into()),
        ]
    );
    assert_eq!(
        fake.requests_to("POST /api/v1/instance-operations/launch")
            .len(),
        1
    );
}

#[tokio::test]
async fn lambda_rate_limits_are_waited_out_and_a_lost_launch_answer_does_not_rent_twice() {
    let fake = FakeServer::start(Lambda::default()).await;
    let s = Server::start(opts(&lambda_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    fake.faults(|f| {
        f.rate_limit_next = 1;
        f.lose_answer
            .insert("POST /api/v1/instance-operations/launch".into(), 1);
    });
    let id = create(&c, "lambdalabs", "us-west-1", "A6000", "flaky").await;
    c.wait_status(&id, "active").await;
    assert_eq!(
        fake.with(|f| f.machines.len()),
        1,
        "exactly one machine rented"
    );
    assert_eq!(
        fake.requests_to("POST /api/v1/instance-operations/launch")
            .len(),
        1,
        "the retry found the machine by its name instead of launching again"
    );
    // The 429 was retried after the Retry-After second.
    let reqs = fake.requests();
    let after_catalog: Vec<_> = reqs.iter().skip(1).collect();
    let (first, second) = (after_catalog[0], after_catalog[1]);
    assert_eq!(first.line(), second.line());
    assert!(
        second.at - first.at >= Duration::from_millis(950),
        "retried after {:?}",
        second.at - first.at
    );
}

#[tokio::test]
async fn lambda_launches_are_paced_client_side() {
    let fake = FakeServer::start(Lambda::default()).await;
    let mut env = lambda_env(&fake);
    env.retain(|(k, _)| *k != "PARASOL_LAMBDA_LAUNCH_INTERVAL_MS");
    env.push(("PARASOL_LAMBDA_LAUNCH_INTERVAL_MS", "1500".into()));
    let s = Server::start(opts(&env));
    let c = s.admin();
    c.add_key("me").await;
    let a = create(&c, "lambdalabs", "us-west-1", "A6000", "a").await;
    let b = create(&c, "lambdalabs", "us-west-1", "A6000", "b").await;
    c.wait_status(&a, "active").await;
    c.wait_status(&b, "active").await;
    let l = fake.requests_to("POST /api/v1/instance-operations/launch");
    assert_eq!(l.len(), 2);
    assert!(
        l[1].at - l[0].at >= Duration::from_millis(1400),
        "launches {:?} apart",
        l[1].at - l[0].at
    );
}

#[tokio::test]
async fn the_orphan_sweep_terminates_marked_lambda_machines_with_no_live_instance_only() {
    let fake = FakeServer::start(Lambda::default()).await;
    let orphan = fake.with(|f| f.plant(&format!("parasol-{}", Uuid::new_v4())));
    let foreign = fake.with(|f| f.plant("someone-elses-box"));
    let mut env = lambda_env(&fake);
    env.push(("PARASOL_ORPHAN_SWEEP_SECONDS", "1".into()));
    let s = Server::start(opts(&env));
    let c = s.admin();
    c.add_key("me").await;
    let id = create(&c, "lambdalabs", "us-west-1", "A6000", "kept").await;
    c.wait_status(&id, "active").await;
    fake.wait_for("the orphan's termination", |r| {
        r.iter().any(|r| {
            r.line() == "POST /api/v1/instance-operations/terminate"
                && r.body == json!({"instance_ids": [orphan]})
        })
    })
    .await;
    // Another sweep passes; the live instance and the foreign box stay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let terms = fake.requests_to("POST /api/v1/instance-operations/terminate");
    assert_eq!(terms.len(), 1, "{terms:#?}");
    assert!(fake.with(|f| f.live().iter().any(|m| m.id == foreign)));
    assert_eq!(
        c.get(&format!("/v1/instances/{id}/info")).await.expect(200)["status"],
        "active"
    );
    assert!(s.log().contains("orphan sweep"), "{}", s.log());
}

/// `/readyz` once it answers 200. Raw HTTP: it is Parasol's own, and
/// answers 503 until the reconciler's first run.
async fn readyz(s: &Server, c: &Client) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .http
            .get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_real_cloud_takes_its_name_from_the_sim_which_keeps_serving_the_others() {
    let fake = FakeServer::start(Lambda::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parasol.toml");
    std::fs::write(&config, "[sim]\nenabled = true\n").unwrap();
    let s = Server::start(opts(&lambda_env(&fake)).args(&["--config", config.to_str().unwrap()]));
    let c = s.admin();

    // Every lambdalabs offer is the real adapter's: the fake's three types,
    // under Lambda's own type names, and none of the sim's.
    let lambda = types(&c, "cloud=lambdalabs").await;
    let mut names: Vec<_> = lambda
        .iter()
        .map(|t| {
            (
                t["shade_instance_type"].as_str().unwrap(),
                t["cloud_instance_type"].as_str().unwrap(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("A10", "gpu_1x_a10"),
            ("A6000", "gpu_1x_a6000"),
            ("H100_sxm5x8", "gpu_8x_h100_sxm5")
        ]
    );
    assert!(
        types(&c, "cloud=massedcompute").await.len() > 3,
        "the sim still serves the clouds no real adapter took"
    );
    let ready = readyz(&s, &c).await;
    assert_eq!(ready["clouds"]["lambdalabs"], "lambda", "{ready:#}");
    assert_eq!(ready["clouds"]["massedcompute"], "sim", "{ready:#}");
    let log = s.log();
    assert!(
        log.contains(
            "lambdalabs is served by the real lambda adapter; the sim provider no longer offers it"
        ),
        "{log}"
    );

    // Creates of lambdalabs go to the fake; the others to the sim.
    c.add_key("me").await;
    let real = create(&c, "lambdalabs", "us-west-1", "A6000", "real").await;
    c.wait_status(&real, "active").await;
    assert_eq!(
        fake.requests_to("POST /api/v1/instance-operations/launch")
            .len(),
        1
    );
    let simulated = c.create_instance("simulated").await;
    c.wait_status(&simulated, "active").await;
    let machines = c.get("/admin/sim/machines").await.expect(200)["machines"].clone();
    let ids: Vec<_> = machines
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["instance_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        [simulated],
        "the sim launched only the massedcompute machine"
    );
}

#[tokio::test]
async fn wrong_credentials_make_one_cloud_unavailable_in_readyz_without_hiding_the_others() {
    let lf = FakeServer::start(Lambda::default()).await;
    let hf = FakeServer::start(Hyperstack::default()).await;
    let mut env = hyperstack_env(&hf);
    env.push(("PARASOL_LAMBDA_API_KEY", "wrong-key-xyz".into()));
    env.push(("PARASOL_LAMBDA_URL", format!("{}/api/v1", lf.url)));
    let s = Server::start(opts(&env));
    let c = s.admin();
    let ready = readyz(&s, &c).await;
    let why = ready["unavailable_providers"]["lambda"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{ready:#}"));
    assert!(why.contains("rejected the API key"), "{why}");
    assert!(why.contains("global/invalid-api-key"), "{why}");
    assert!(ready["unavailable_providers"].get("hyperstack").is_none());
    assert!(!types(&c, "cloud=hyperstack").await.is_empty());
    assert!(types(&c, "cloud=lambdalabs").await.is_empty());
    let log = s.log();
    assert!(log.contains("rejected the API key"), "{log}");
    assert!(!log.contains("wrong-key-xyz") && !log.contains(hs::KEY));
    assert!(!ready.to_string().contains("wrong-key-xyz"));
}

// ----------------------------------------------------------------- Verda

#[tokio::test]
async fn verda_types_and_availability_map_to_shadeform_offers() {
    let fake = FakeServer::start(Verda::default()).await;
    let s = Server::start(opts(&verda_env(&fake)));
    let c = s.admin();
    let all = types(&c, "").await;
    assert!(all.iter().all(|t| t["cloud"] == "datacrunch"));
    assert_eq!(all.len(), 2, "CPU nodes are not offered: {all:#?}");
    let a6000 = find(&all, "A6000");
    assert_eq!(a6000["cloud_instance_type"], "1A6000.10V");
    assert_eq!(a6000["hourly_price"], 79);
    assert_eq!(a6000["configuration"]["vcpus"], 10);
    assert_eq!(a6000["configuration"]["memory_in_gb"], 60);
    assert_eq!(
        availability(a6000),
        vec![
            ("FIN-01".into(), true, "Finland 1".into()),
            ("ICE-01".into(), false, "Iceland 1".into()),
        ]
    );
    let h100 = find(&all, "H100_sxm5x8");
    assert_eq!(h100["hourly_price"], 2152);
    let token = fake.requests_to("POST /v1/oauth2/token");
    assert_eq!(token.len(), 1, "the token is reused");
    assert_eq!(
        token[0].body,
        json!({"grant_type": "client_credentials", "client_id": ve::CLIENT_ID,
               "client_secret": ve::CLIENT_SECRET})
    );
    for r in fake
        .requests()
        .iter()
        .filter(|r| !r.path.ends_with("/oauth2/token"))
    {
        assert_eq!(r.header("authorization"), Some("Bearer verda-token-0"));
    }
}

#[tokio::test]
async fn a_verda_instance_deploys_boots_restarts_and_deletes_with_the_documented_requests() {
    let fake = FakeServer::start(Verda {
        timing: slow_ip(),
        ..Verda::default()
    })
    .await;
    let s = Server::start(opts(&verda_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    let id = create(&c, "datacrunch", "FIN-01", "A6000", "v-box").await;
    let active = wait_active_after_pending(&c, &id).await;
    assert_eq!(active["ssh_user"], "root");
    let machine = "a3b1c2d4-0000-4000-8000-000000000000";
    assert_eq!(active["cloud_assigned_id"], machine);
    c.post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect(200);
    fake.wait_for("a restart", |r| {
        r.iter()
            .any(|r| r.line() == "PUT /v1/instances" && r.body["action"] == "restart")
    })
    .await;
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;

    let key = key_name();
    let keys = fake.requests_to("POST /v1/sshkeys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].body, json!({"name": key, "key": public_key()}));
    let avail = fake.requests_to("GET /v1/instance-availability/1A6000.10V");
    assert_eq!(avail.len(), 1);
    assert_eq!(avail[0].query, "location_code=FIN-01");
    let deploys = fake.requests_to("POST /v1/instances");
    assert_eq!(deploys.len(), 1);
    let marker = format!("parasol-{id}");
    assert_eq!(
        deploys[0].body,
        json!({"instance_type": "1A6000.10V", "image": "ubuntu-22.04-cuda-12.4-docker",
               "ssh_key_ids": ["5c8e1f2a-0000-4000-8000-000000000000"],
               "location_code": "FIN-01", "hostname": marker, "description": marker,
               "is_spot": false})
    );
    let actions: Vec<Value> = fake
        .requests_to("PUT /v1/instances")
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(
        actions,
        vec![
            json!({"action": "restart", "id": machine}),
            json!({"action": "delete", "id": machine}),
        ]
    );
    assert!(fake.with(|f| f.live().is_empty()));
    assert!(!s.log().contains(ve::CLIENT_SECRET));
}

#[tokio::test]
async fn verda_without_capacity_errors_the_instance_and_server_errors_are_retried() {
    let fake = FakeServer::start(Verda::default()).await;
    let s = Server::start(opts(&verda_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    fake.faults(|f| {
        f.server_error.insert("GET /v1/instances".into(), 2);
    });
    let ok = create(&c, "datacrunch", "FIN-01", "A6000", "retried").await;
    c.wait_status(&ok, "active").await;
    assert_eq!(fake.requests_to("POST /v1/instances").len(), 1);

    fake.with(|f| f.no_capacity.push(("1A6000.10V".into(), "FIN-01".into())));
    let full = create(&c, "datacrunch", "FIN-01", "A6000", "full").await;
    let info = c.wait_status(&full, "error").await;
    assert!(
        info["status_details"]
            .as_str()
            .unwrap()
            .contains("insufficient capacity"),
        "{info:#}"
    );
    assert_eq!(
        fake.requests_to("POST /v1/instances").len(),
        1,
        "no deploy without capacity"
    );
    let a6000 = types(&c, "cloud=datacrunch&shade_instance_type=A6000").await;
    assert!(availability(&a6000[0]).iter().all(|a| !a.1));
}

#[tokio::test]
async fn the_orphan_sweep_deletes_marked_verda_machines() {
    let fake = FakeServer::start(Verda::default()).await;
    let orphan = fake.with(|f| f.plant(&format!("parasol-{}", Uuid::new_v4())));
    fake.with(|f| f.plant("not-ours"));
    let mut env = verda_env(&fake);
    env.push(("PARASOL_ORPHAN_SWEEP_SECONDS", "1".into()));
    let _s = Server::start(opts(&env));
    fake.wait_for("the orphan's deletion", |r| {
        r.iter().any(|r| {
            r.line() == "PUT /v1/instances" && r.body == json!({"action": "delete", "id": orphan})
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.requests_to("PUT /v1/instances").len(), 1);
    assert_eq!(fake.with(|f| f.live().len()), 1);
}

// ------------------------------------------------------------ Hyperstack

#[tokio::test]
async fn hyperstack_flavors_with_stock_and_the_pricebook_map_to_shadeform_offers() {
    let fake = FakeServer::start(Hyperstack::default()).await;
    let s = Server::start(opts(&hyperstack_env(&fake)));
    let c = s.admin();
    let all = types(&c, "").await;
    assert!(all.iter().all(|t| t["cloud"] == "hyperstack"));
    assert_eq!(all.len(), 2, "CPU flavors are not offered: {all:#?}");
    let a6000 = find(&all, "A6000");
    assert_eq!(a6000["cloud_instance_type"], "n3-RTX-A6000x1");
    assert_eq!(a6000["hourly_price"], 50);
    assert_eq!(a6000["configuration"]["memory_in_gb"], 57);
    assert_eq!(a6000["configuration"]["storage_in_gb"], 850);
    let h100 = find(&all, "H100x8");
    assert_eq!(h100["cloud_instance_type"], "n3-H100x8");
    assert_eq!(h100["hourly_price"], 1520, "8 GPUs at $1.90");
    assert_eq!(
        availability(h100),
        vec![
            ("CANADA-1".into(), false, "Canada, Montreal".into()),
            ("NORWAY-1".into(), true, "Norway, Oslo".into()),
        ]
    );
    for r in fake.requests() {
        assert_eq!(r.header("api_key"), Some(hs::KEY));
    }
}

#[tokio::test]
async fn a_hyperstack_machine_deleted_while_still_creating_is_deleted_once_hyperstack_allows() {
    let fake = FakeServer::start(Hyperstack {
        timing: Timing {
            boot: Duration::from_millis(2500),
            ..slow_ip()
        },
        refuse_early_delete: true,
        ..Hyperstack::default()
    })
    .await;
    let s = Server::start(opts(&hyperstack_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    let id = create(&c, "hyperstack", "CANADA-1", "A6000", "early").await;
    fake.wait_for("the create", |r| {
        r.iter()
            .any(|r| r.line() == "POST /v1/core/virtual-machines")
    })
    .await;
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    let deletes = fake.requests_to("DELETE /v1/core/virtual-machines/1000");
    assert!(
        deletes.len() >= 2,
        "the refused delete was retried: {deletes:#?}"
    );
    assert!(fake.with(|f| f.live().is_empty()));
    assert!(s.log().contains("refused to delete") || deletes.len() >= 2);
}

#[tokio::test]
async fn a_hyperstack_instance_gets_an_environment_and_keypair_then_boots_reboots_and_deletes() {
    let fake = FakeServer::start(Hyperstack {
        timing: slow_ip(),
        ..Hyperstack::default()
    })
    .await;
    let s = Server::start(opts(&hyperstack_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    let id = create(&c, "hyperstack", "CANADA-1", "A6000", "h-box").await;
    let active = wait_active_after_pending(&c, &id).await;
    assert_eq!(active["cloud_assigned_id"], "1000");
    assert_eq!(active["ssh_user"], "ubuntu");
    c.post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect(200);
    fake.wait_for("a reboot", |r| {
        r.iter()
            .any(|r| r.line() == "GET /v1/core/virtual-machines/1000/hard-reboot")
    })
    .await;
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;

    let env = fake.requests_to("POST /v1/core/environments");
    assert_eq!(env.len(), 1);
    assert_eq!(
        env[0].body,
        json!({"name": "parasol-canada-1", "region": "CANADA-1"})
    );
    let kp = fake.requests_to("POST /v1/core/keypairs");
    assert_eq!(
        kp[0].body,
        json!({"name": key_name(), "environment_name": "parasol-canada-1", "public_key": public_key()})
    );
    let vm = fake.requests_to("POST /v1/core/virtual-machines");
    assert_eq!(vm.len(), 1);
    assert_eq!(
        vm[0].body,
        json!({"name": format!("parasol-{id}"), "environment_name": "parasol-canada-1",
               "image_name": "Ubuntu Server 22.04 LTS R535 CUDA 12.2",
               "flavor_name": "n3-RTX-A6000x1", "key_name": key_name(), "count": 1,
               "assign_floating_ip": true})
    );
    assert_eq!(
        fake.requests_to("DELETE /v1/core/virtual-machines/1000")
            .len(),
        1
    );
    assert!(fake.with(|f| f.live().is_empty()));
}

#[tokio::test]
async fn hyperstack_out_of_stock_errors_the_instance_and_the_sweep_removes_orphans() {
    let fake = FakeServer::start(Hyperstack::default()).await;
    let orphan = fake.with(|f| f.plant(&format!("parasol-{}", Uuid::new_v4())));
    let mut env = hyperstack_env(&fake);
    env.push(("PARASOL_ORPHAN_SWEEP_SECONDS", "1".into()));
    let s = Server::start(opts(&env));
    let c = s.admin();
    c.add_key("me").await;
    fake.with(|f| f.out_of_stock.push("n3-RTX-A6000x1".into()));
    let id = create(&c, "hyperstack", "CANADA-1", "A6000", "none-left").await;
    let info = c.wait_status(&id, "error").await;
    let details = info["status_details"].as_str().unwrap();
    assert!(
        details.contains("insufficient capacity") && details.contains("stock"),
        "{details}"
    );
    fake.wait_for("the orphan's deletion", |r| {
        r.iter()
            .any(|r| r.line() == format!("DELETE /v1/core/virtual-machines/{orphan}"))
    })
    .await;
}
