//! The real-cloud adapters, end to end: the server binary talks to fake
//! Lambda, Verda, Hyperstack, RunPod, Vast.ai and DigitalOcean APIs (see
//! `fakes`), and the tests drive Parasol's own API (or an adapter
//! directly) and assert the exact requests each adapter sent. What every
//! provider must do is in `provider_conformance`; these tests keep what is
//! particular to one cloud.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use parasol::api::RentalType;
use parasol::providers::clouds::digitalocean::{DigitalOcean as DoAdapter, DigitalOceanConfig};
use parasol::providers::clouds::hyperstack::{Hyperstack as HsAdapter, HyperstackConfig};
use parasol::providers::clouds::runpod::{Runpod as RunpodAdapter, RunpodConfig};
use parasol::providers::clouds::vastai::{Vastai as VastAdapter, VastaiConfig};
use parasol::providers::clouds::{Marker, Secret};
use parasol::providers::{LaunchRequest, Provider, ProviderError, VolumeRequest, VolumeState};

use crate::fakes::digitalocean::{self as dof, DigitalOcean};
use crate::fakes::hyperstack::{self as hs, Hyperstack};
use crate::fakes::lambda::{self as la, Lambda};
use crate::fakes::runpod::{self as rp, Runpod};
use crate::fakes::vastai::{self as va, Vastai};
use crate::fakes::verda::{self as ve, Verda};
use crate::fakes::{FakeServer, Timing};
use crate::harness::{public_key, Client, Opts, Server};

pub fn opts(env: &[(&str, String)]) -> Opts {
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
/// A launch body without its first-boot field, which must start this
/// instance's agent before anything else: the rest of the body is then
/// compared exactly.
fn without_first_boot(body: &Value, field: &str, id: &str) -> Value {
    let mut body = body.clone();
    let script = body
        .as_object_mut()
        .unwrap()
        .remove(field)
        .unwrap_or_else(|| panic!("the launch carries `{field}`"));
    let script = script
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is text"));
    assert_first_boot_starts_the_agent(script, id);
    body
}

/// A first-boot script installs the agent with instance `id`'s token.
fn assert_first_boot_starts_the_agent(script: &str, id: &str) {
    assert!(script.starts_with("#!/bin/bash\n"), "a script: {script}");
    assert!(
        script.contains(&format!("PARASOL_INSTANCE_ID='{id}'")),
        "the agent is installed for this instance"
    );
    assert!(
        script.contains("PARASOL_AGENT_TOKEN='pa_"),
        "with its token"
    );
}

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

/// The on-demand availability of a type, by region.
fn availability(t: &Value) -> Vec<(String, bool, String)> {
    let mut v: Vec<_> = t["availability"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rental_type"] != "spot")
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
    assert_eq!(all.len(), 5, "{all:#?}");
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
    let gh200 = find(&all, "GH200");
    assert_eq!(gh200["configuration"]["vram_per_gpu_in_gb"], 96);
    assert_eq!(
        find(&all, "A100x8")["configuration"]["vram_per_gpu_in_gb"],
        40
    );

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

    let dep = deployment_id(&s, &c).await;
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
        without_first_boot(&launches[0].body, "user_data", &id),
        json!({"region_name": "us-west-1", "instance_type_name": "gpu_1x_a6000",
               "ssh_key_names": [key], "quantity": 1, "name": format!("parasol-{dep}-{id}")})
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
async fn the_sweep_terminates_only_this_deployments_orphans_and_the_id_survives_a_restart() {
    let fake = FakeServer::start(Lambda::default()).await;
    let mut env = lambda_env(&fake);
    env.push(("PARASOL_ORPHAN_SWEEP_SECONDS", "1".into()));
    let mut s = Server::start(opts(&env));
    let c = s.admin();
    let dep = deployment_id(&s, &c).await;
    assert_eq!(dep.len(), 10, "{dep}");
    let orphan = fake.with(|f| f.plant(&format!("parasol-{dep}-{}", Uuid::new_v4())));
    let theirs = fake.with(|f| f.plant(&format!("parasol-0123456789-{}", Uuid::new_v4())));
    let legacy = fake.with(|f| f.plant(&format!("parasol-{}", Uuid::new_v4())));
    let foreign = fake.with(|f| f.plant("someone-elses-box"));
    c.add_key("me").await;
    let id = create(&c, "lambdalabs", "us-west-1", "A6000", "kept").await;
    c.wait_status(&id, "active").await;
    // An instance this store holds, deleted, whose machine lives on under
    // the legacy name: the upgrade path adopts it.
    fake.with(|f| {
        f.no_capacity
            .push(("gpu_1x_a10".into(), "us-east-1".into()))
    });
    let dead = create(&c, "lambdalabs", "us-east-1", "A10", "dead").await;
    c.wait_status(&dead, "error").await;
    c.post_empty(&format!("/v1/instances/{dead}/delete"))
        .await
        .expect(200);
    c.wait_gone(&dead).await;
    let adopted = fake.with(|f| f.plant(&format!("parasol-{dead}")));
    for (what, machine) in [
        ("the orphan", &orphan),
        ("the adopted legacy machine", &adopted),
    ] {
        fake.wait_for(what, |r| {
            r.iter().any(|r| {
                r.line() == "POST /api/v1/instance-operations/terminate"
                    && r.body == json!({"instance_ids": [machine]})
            })
        })
        .await;
    }
    // Another sweep passes; the live instance, the other deployment's
    // machine, the unknown legacy-named one and the foreign box stay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let terms = fake.requests_to("POST /api/v1/instance-operations/terminate");
    assert_eq!(terms.len(), 2, "{terms:#?}");
    let live: Vec<String> = fake.with(|f| f.live().iter().map(|m| m.id.clone()).collect());
    for kept in [&theirs, &legacy, &foreign] {
        assert!(live.contains(kept), "{kept} was swept: {live:?}");
    }
    assert_eq!(
        c.get(&format!("/v1/instances/{id}/info")).await.expect(200)["status"],
        "active"
    );
    assert!(s.log().contains("orphan sweep"), "{}", s.log());
    assert!(s.log().contains("legacy marker"), "{}", s.log());

    s.restart();
    let c = s.admin();
    assert_eq!(
        deployment_id(&s, &c).await,
        dep,
        "the id is stored, made once"
    );
}

/// The deployment id `/readyz` shows.
async fn deployment_id(s: &Server, c: &Client) -> String {
    readyz(s, c).await["deployment_id"]
        .as_str()
        .expect("readyz shows the deployment id")
        .to_string()
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

    // Every lambdalabs offer is the real adapter's: the fake's five types,
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
            ("A100x8", "gpu_8x_a100"),
            ("A6000", "gpu_1x_a6000"),
            ("GH200", "gpu_1x_gh200"),
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
    let marker = format!("parasol-{}-{id}", deployment_id(&s, &c).await);
    // Verda runs a stored startup script, named at deploy.
    let scripts = fake.requests_to("POST /v1/scripts");
    assert_eq!(scripts.len(), 1, "one startup script");
    assert_first_boot_starts_the_agent(scripts[0].body["script"].as_str().unwrap(), &id);
    let mut deploy = deploys[0].body.clone();
    assert!(deploy
        .as_object_mut()
        .unwrap()
        .remove("startup_script_id")
        .is_some_and(|v| v.is_string()));
    assert_eq!(
        deploy,
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

/// Hyperstack's listing is paged (`page`, `pageSize`) with no documented
/// default size: a restarted adapter must read every page to find its
/// machines, and the sweep to see its orphans.
#[tokio::test]
async fn hyperstack_machine_listings_are_read_page_by_page() {
    let fake = FakeServer::start(Hyperstack::default()).await;
    let adapter = HsAdapter::new(
        HyperstackConfig {
            api_key: Secret::new(hs::KEY),
            url: format!("{}/v1", fake.url),
        },
        "c0ffee0042",
    );
    let ids: Vec<Uuid> = (0..230).map(|_| Uuid::new_v4()).collect();
    fake.with(|f| {
        for id in &ids {
            f.plant(&format!("parasol-c0ffee0042-{id}"));
        }
    });
    let mut marked = adapter.list_marked().await.unwrap();
    marked.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(marked.len(), 230, "every page");
    assert_eq!(marked, want);
    assert!(!matches!(
        adapter.describe(ids[229]).await.unwrap(),
        parasol::providers::MachineState::Gone
    ));
    let pages: Vec<String> = fake
        .requests_to("GET /v1/core/virtual-machines")
        .iter()
        .map(|r| r.query.clone())
        .collect();
    assert!(pages.iter().any(|q| q.contains("page=3")), "{pages:?}");
    assert!(pages.iter().all(|q| q.contains("pageSize=")), "{pages:?}");
}

/// Hyperstack pages its volume listing as it pages machines: the sweep and
/// a retried create (which looks for the volume by its marker) read every
/// page, so a volume past the first is neither leaked nor made twice.
#[tokio::test]
async fn hyperstack_volume_listings_are_read_page_by_page() {
    let fake = FakeServer::start(Hyperstack {
        environments: vec![("parasol-CANADA-1".into(), "CANADA-1".into())],
        ..Hyperstack::default()
    })
    .await;
    let adapter = HsAdapter::new(
        HyperstackConfig {
            api_key: Secret::new(hs::KEY),
            url: format!("{}/v1", fake.url),
        },
        "c0ffee0042",
    );
    let ids: Vec<Uuid> = (0..230).map(|_| Uuid::new_v4()).collect();
    fake.with(|f| {
        for (n, id) in ids.iter().enumerate() {
            f.volumes.push(hs::Volume {
                id: 5000 + n as i64,
                name: format!("parasol-{}", id.simple()),
                description: format!("parasol-c0ffee0042-{id}"),
                environment: "parasol-CANADA-1".into(),
                size: 10,
                made: Instant::now() - Duration::from_secs(60),
            });
        }
    });
    let mut marked: Vec<Uuid> = adapter
        .list_marked_volumes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.volume_id)
        .collect();
    marked.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(marked.len(), 230, "every page");
    assert_eq!(marked, want);
    let last = adapter
        .create_volume(&VolumeRequest {
            volume_id: ids[229],
            name: "data".into(),
            cloud: "hyperstack".into(),
            region: "CANADA-1".into(),
            size_in_gb: 10,
        })
        .await
        .unwrap();
    assert!(
        matches!(&last, VolumeState::Available { cloud_assigned_id, .. } if cloud_assigned_id == "5229"),
        "{last:?}"
    );
    assert!(
        fake.requests_to("POST /v1/core/volumes").is_empty(),
        "the retried create adopts the volume on the last page"
    );
    let pages: Vec<String> = fake
        .requests_to("GET /v1/core/volumes")
        .iter()
        .map(|r| r.query.clone())
        .collect();
    assert!(pages.iter().any(|q| q.contains("page=3")), "{pages:?}");
    assert!(pages.iter().all(|q| q.contains("pageSize=")), "{pages:?}");
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
        without_first_boot(&vm[0].body, "user_data", &id),
        // The marker's short form: Hyperstack's names hold 50 characters.
        json!({"name": Marker::new(&deployment_id(&s, &c).await).short_name(id.parse().unwrap()),
               "environment_name": "parasol-canada-1",
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
async fn hyperstack_out_of_stock_errors_the_instance_with_hyperstacks_reason() {
    let fake = FakeServer::start(Hyperstack::default()).await;
    let s = Server::start(opts(&hyperstack_env(&fake)));
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
}

// ---------------------------------------------------------------- RunPod

fn runpod_env(fake: &FakeServer<Runpod>) -> Vec<(&'static str, String)> {
    vec![
        ("PARASOL_RUNPOD_API_KEY", rp::KEY.to_string()),
        ("PARASOL_RUNPOD_URL", format!("{}/v1", fake.url)),
        (
            "PARASOL_RUNPOD_GRAPHQL_URL",
            format!("{}/graphql", fake.url),
        ),
        ("PARASOL_RUNPOD_CATALOG_URL", format!("{}/v2", fake.url)),
    ]
}

fn runpod_adapter(fake: &FakeServer<Runpod>) -> RunpodAdapter {
    RunpodAdapter::new(
        RunpodConfig {
            api_key: Secret::new(rp::KEY),
            url: format!("{}/v1", fake.url),
            graphql_url: format!("{}/graphql", fake.url),
            catalog_url: format!("{}/v2", fake.url),
        },
        "c0ffee0042",
    )
}

fn launch_request(
    cloud: &str,
    region: &str,
    cloud_type: &str,
    rental_type: RentalType,
) -> LaunchRequest {
    LaunchRequest {
        instance_id: Uuid::new_v4(),
        name: "direct".into(),
        cloud: cloud.into(),
        region: region.into(),
        shade_instance_type: String::new(),
        cloud_instance_type: cloud_type.into(),
        os: String::new(),
        rental_type,
        ssh_public_key: Some(public_key()),
        launch_configuration: None,
        envs: vec![],
        cluster_id: None,
        volumes: vec![],
        agent: None,
    }
}

#[tokio::test]
async fn runpod_gpu_types_and_data_centers_map_to_shadeform_offers() {
    let fake = FakeServer::start(Runpod::default()).await;
    let s = Server::start(opts(&runpod_env(&fake)));
    let c = s.admin();
    let all = types(&c, "").await;
    assert!(all.iter().all(|t| t["cloud"] == "runpod"));
    let a6000 = find(&all, "A6000");
    assert_eq!(a6000["cloud_instance_type"], "NVIDIA RTX A6000:1");
    assert_eq!(a6000["hourly_price"], 49);
    assert_eq!(a6000["configuration"]["vcpus"], 9);
    assert_eq!(a6000["configuration"]["memory_in_gb"], 50);
    assert_eq!(a6000["configuration"]["vram_per_gpu_in_gb"], 48);
    assert_eq!(a6000["deployment_type"], "container");
    assert_eq!(
        availability(a6000),
        vec![
            ("EU-RO-1".into(), true, "EU Romania 1".into()),
            ("US-KS-2".into(), true, "US Kansas 2".into()),
        ]
    );
    let h100 = find(&all, "H100_sxm5x8");
    assert_eq!(h100["cloud_instance_type"], "NVIDIA H100 80GB HBM3:8");
    assert_eq!(h100["hourly_price"], 2152, "8 GPUs at $2.69");
    assert_eq!(h100["configuration"]["vcpus"], 160);
    let spot: Vec<_> = h100["availability"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rental_type"] == "spot")
        .map(|a| (a["region"].as_str().unwrap(), a["hourly_price"].clone()))
        .collect();
    assert_eq!(spot.len(), 2, "interruptible pods are spot: {spot:?}");
    assert!(spot.iter().all(|(_, p)| *p == json!("14.00")), "{spot:?}");
    // Listed for secure pods in both, with no stock in US-KS-2.
    assert_eq!(
        availability(h100),
        vec![
            ("EU-RO-1".into(), true, "EU Romania 1".into()),
            ("US-KS-2".into(), false, "US Kansas 2".into()),
        ]
    );
    // Defect 4: the A100 SXM4 80GB ("A100 SXM") has RunPod's 80 GB.
    let a100 = find(&all, "A100_80Gx8");
    assert_eq!(a100["cloud_instance_type"], "NVIDIA A100-SXM4-80GB:8");
    assert_eq!(a100["configuration"]["gpu_type"], "A100_80G");
    assert_eq!(a100["configuration"]["vram_per_gpu_in_gb"], 80);
    // Defect 5: AP-JP-1 and EU-SE-1 hold only community-cloud RTX 4090s,
    // and Parasol launches on the secure cloud.
    assert_eq!(
        availability(find(&all, "RTX4090")),
        vec![("US-KS-2".into(), true, "US Kansas 2".into())]
    );
    // Two variants of one model, each orderable under its own name.
    assert_eq!(
        find(&all, "H100")["cloud_instance_type"],
        "NVIDIA H100 PCIe:1"
    );
    let nvl = find(&all, "H100_NVIDIA-H100-NVL");
    assert_eq!(nvl["cloud_instance_type"], "NVIDIA H100 NVL:1");
    assert_eq!(nvl["configuration"]["vram_per_gpu_in_gb"], 94);
    // AMD is a first-class model.
    let mi = find(&all, "MI300X");
    assert_eq!(mi["configuration"]["gpu_manufacturer"], "AMD");
    assert_eq!(mi["configuration"]["vram_per_gpu_in_gb"], 192);
    // A GPU with no Shadeform name is not offered (and is counted).
    assert!(all.iter().all(|t| !t["cloud_instance_type"]
        .as_str()
        .unwrap()
        .contains("2000 Ada")));
    let metrics = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("parasol_catalog_unmapped_types{cloud=\"runpod\"} 1\n"),
        "{metrics}"
    );
    // Listed at three GPU counts, logged once.
    let log = s.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("maps onto no Shadeform model"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        warned[0].contains("NVIDIA RTX 2000 Ada Generation"),
        "{}",
        warned[0]
    );
    for r in fake.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(&*format!("Bearer {}", rp::KEY))
        );
        assert!(
            ["POST /graphql", "GET /v2/catalog/gpus"].contains(&r.line().as_str()),
            "offers come from GraphQL and the v2 catalog: {}",
            r.line()
        );
        if r.path == "/v2/catalog/gpus" {
            assert!(
                r.query.contains("cloud=SECURE") && r.query.contains("product=POD"),
                "{}",
                r.query
            );
        }
    }

    // Spot prices are the bid minimum; network volumes where the data
    // center stores them.
    let adapter = runpod_adapter(&fake);
    let offers = adapter.offers().await.unwrap();
    let a = offers
        .iter()
        .find(|o| o.shade_instance_type == "A6000x2")
        .unwrap();
    assert!(a.regions.iter().all(|r| r.spot_price == Some(50)));
    let vols = adapter.volume_offers().await.unwrap();
    assert_eq!(
        vols.iter().map(|v| v.region.as_str()).collect::<Vec<_>>(),
        ["US-KS-2", "EU-SE-1"]
    );
    assert_eq!(vols[0].price_micros_per_gb_hour, 96);
}

#[tokio::test]
async fn a_runpod_pod_gets_the_key_in_its_env_and_is_reached_on_the_port_mapped_to_22() {
    let fake = FakeServer::start(Runpod {
        timing: slow_ip(),
        ..Runpod::default()
    })
    .await;
    let s = Server::start(opts(&runpod_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    let id = create(&c, "runpod", "US-KS-2", "A6000", "pod").await;
    let active = wait_active_after_pending(&c, &id).await;
    assert_eq!(active["ip"], "203.0.113.10");
    assert_eq!(active["ssh_port"], 40000, "the public port mapped to 22");
    assert_eq!(active["ssh_user"], "root");
    assert_eq!(active["cloud_assigned_id"], "pod0000xyz");
    c.post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect(200);
    fake.wait_for("a restart", |r| {
        r.iter()
            .any(|r| r.line() == "POST /v1/pods/pod0000xyz/restart")
    })
    .await;
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;

    let dep = deployment_id(&s, &c).await;
    let creates = fake.requests_to("POST /v1/pods");
    assert_eq!(creates.len(), 1);
    let b = &creates[0].body;
    assert_eq!(b["name"], format!("parasol-{dep}-{id}"));
    assert_eq!(b["gpuTypeIds"], json!(["NVIDIA RTX A6000"]));
    assert_eq!(b["gpuCount"], 1);
    assert_eq!(b["dataCenterIds"], json!(["US-KS-2"]));
    assert_eq!(b["interruptible"], false);
    assert_eq!(b["ports"], json!(["22/tcp"]));
    assert_eq!(b["env"]["PUBLIC_KEY"], public_key());
    assert!(!fake.requests_to("DELETE /v1/pods/pod0000xyz").is_empty());
    assert!(fake.with(|f| f.live().is_empty()));
    assert_eq!(fake.with(|f| f.pods[0].restarts), 1);
    assert!(!s.log().contains(rp::KEY));
}

#[tokio::test]
async fn a_runpod_spot_launch_is_an_interruptible_pod_and_its_exit_is_a_preemption() {
    let fake = FakeServer::start(Runpod::default()).await;
    let adapter = runpod_adapter(&fake);
    let req = launch_request("runpod", "EU-RO-1", "NVIDIA RTX A6000:2", RentalType::Spot);
    adapter.launch(&req).await.unwrap();
    let b = &fake.requests_to("POST /v1/pods")[0].body;
    assert_eq!(b["interruptible"], true);
    assert_eq!(b["gpuCount"], 2);
    assert!(fake.with(|f| f.pods[0].interruptible));
}

// --------------------------------------------------------------- Vast.ai

fn vast_env(fake: &FakeServer<Vastai>) -> Vec<(&'static str, String)> {
    vec![
        ("PARASOL_VASTAI_API_KEY", va::KEY.to_string()),
        ("PARASOL_VASTAI_URL", format!("{}/api/v0", fake.url)),
    ]
}

fn vast_adapter(fake: &FakeServer<Vastai>) -> VastAdapter {
    VastAdapter::new(
        VastaiConfig {
            api_key: Secret::new(va::KEY),
            url: format!("{}/api/v0", fake.url),
        },
        "c0ffee0042",
    )
}

#[tokio::test]
async fn vast_offers_group_by_gpu_and_count_with_the_cheapest_verified_price_and_regions() {
    let fake = FakeServer::start(Vastai::default()).await;
    let s = Server::start(opts(&vast_env(&fake)));
    let c = s.admin();
    let all = types(&c, "").await;
    assert_eq!(all.len(), 4, "{all:#?}");
    let rtx = find(&all, "RTX4090");
    assert_eq!(rtx["cloud_instance_type"], "RTX 4090:1");
    assert_eq!(
        rtx["hourly_price"], 30,
        "the cheapest verified offer (the unverified $0.10 one is not offered)"
    );
    // That offer's own host: 14 effective cores, 36 GB (36864 MB), and
    // the card's 24564 MB.
    assert_eq!(rtx["configuration"]["vcpus"], 14);
    assert_eq!(rtx["configuration"]["memory_in_gb"], 36);
    assert_eq!(rtx["configuration"]["vram_per_gpu_in_gb"], 24);
    let avail: Vec<(String, bool)> = availability(rtx)
        .into_iter()
        .map(|(r, a, _)| (r, a))
        .collect();
    assert_eq!(
        avail,
        vec![
            ("asia-pacific".into(), false),
            ("europe".into(), true),
            ("north-america".into(), true),
            ("other".into(), false),
            ("south-america".into(), false),
        ]
    );
    let h100 = find(&all, "H100_sxm5x8");
    assert_eq!(h100["hourly_price"], 1920);
    assert_eq!(h100["configuration"]["vram_per_gpu_in_gb"], 80);
    // Defect 4: "A100 SXM4" covers two sizes; each offer's gpu_ram says
    // which, so the 80 GB machines are A100_80G with 80 GB.
    let big = find(&all, "A100_80Gx8");
    assert_eq!(big["cloud_instance_type"], "A100 SXM4:8");
    assert_eq!(big["hourly_price"], 1040);
    assert_eq!(big["configuration"]["vram_per_gpu_in_gb"], 80);
    let small = find(&all, "A100x8");
    assert_eq!(small["hourly_price"], 640);
    assert_eq!(small["configuration"]["vram_per_gpu_in_gb"], 40);
    // The query is the body of a POST, as Vast's document has it.
    let search = &fake.requests_to("POST /api/v0/bundles/")[0];
    assert_eq!(search.body["verified"], json!({"eq": true}));
    assert_eq!(search.body["type"], "ondemand");

    // Per region, the spot price is the cheapest offer's minimum bid.
    let offers = vast_adapter(&fake).offers().await.unwrap();
    let o = offers
        .iter()
        .find(|o| o.shade_instance_type == "RTX4090")
        .unwrap();
    let na = o
        .regions
        .iter()
        .find(|r| r.region == "north-america")
        .unwrap();
    assert_eq!(na.spot_price, Some(15));
}

#[tokio::test]
async fn a_vast_instance_is_an_accepted_offer_labelled_with_the_marker() {
    let fake = FakeServer::start(Vastai {
        timing: slow_ip(),
        ..Vastai::default()
    })
    .await;
    let s = Server::start(opts(&vast_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    let id = create(&c, "vastai", "north-america", "RTX4090", "vast").await;
    let active = wait_active_after_pending(&c, &id).await;
    assert_eq!(
        active["ip"], "203.0.113.10",
        "the address without its newline"
    );
    assert_eq!(active["ssh_port"], 41000);
    assert_eq!(active["cloud_assigned_id"], "7000");
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;

    let dep = deployment_id(&s, &c).await;
    let accepts = fake.requests_to("PUT /api/v0/asks/5003/");
    assert_eq!(
        accepts.len(),
        1,
        "the cheapest verified offer in the region"
    );
    let b = &accepts[0].body;
    assert_eq!(b["label"], format!("parasol-{dep}-{id}"));
    assert_eq!(b["client_id"], "me");
    assert!(b.get("price").is_none(), "on-demand, not a bid");
    assert_eq!(
        fake.requests_to("POST /api/v0/ssh/")[0].body,
        json!({"ssh_key": public_key()})
    );
    assert_eq!(fake.requests_to("DELETE /api/v0/instances/7000/").len(), 1);
    assert!(fake.with(|f| f.live().is_empty()));
    assert!(!s.log().contains(va::KEY));
}

#[tokio::test]
async fn a_taken_vast_offer_moves_the_launch_to_the_next_and_all_taken_is_capacity() {
    let fake = FakeServer::start(Vastai::default()).await;
    let adapter = vast_adapter(&fake);
    fake.with(|f| f.taken_next = 1);
    let req = launch_request("vastai", "north-america", "RTX 4090:1", RentalType::Spot);
    let l = adapter.launch(&req).await.unwrap();
    assert_eq!(l.cloud_assigned_id, "7000");
    let lines: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.line())
        .collect();
    assert_eq!(
        lines,
        ["PUT /api/v0/asks/5003/", "PUT /api/v0/asks/5002/"],
        "the next-cheapest offer after the first was taken"
    );
    let bid = &fake.requests_to("PUT /api/v0/asks/5002/")[0].body;
    assert_eq!(bid["price"], json!(0.18), "a spot launch bids the minimum");
    assert!(fake.with(|f| f.instances[0].is_bid && f.instances[0].body["price"] == 0.18));

    // Every matching offer taken: capacity, after trying each.
    fake.with(|f| f.taken_next = 10);
    let req = launch_request(
        "vastai",
        "north-america",
        "RTX 4090:1",
        RentalType::OnDemand,
    );
    match adapter.launch(&req).await {
        Err(ProviderError::Capacity(why)) => assert!(why.contains("no_such_ask"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// One gpu_name, two sizes: a launch of the 80 GB type accepts only an 80
/// GB machine, though a 40 GB one of the same name is cheaper.
#[tokio::test]
async fn a_vast_launch_of_the_80_gb_a100_rents_an_80_gb_machine() {
    let fake = FakeServer::start(Vastai::default()).await;
    let adapter = vast_adapter(&fake);
    let mut req = launch_request(
        "vastai",
        "north-america",
        "A100 SXM4:8",
        RentalType::OnDemand,
    );
    req.shade_instance_type = "A100_80Gx8".into();
    adapter.launch(&req).await.unwrap();
    let puts: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.line())
        .collect();
    assert_eq!(puts, ["PUT /api/v0/asks/5008/"], "not the 40 GB ask 5009");
}

/// Vast's instance list (API v1, `showInstances`) holds 25 instances a
/// page: the adapter follows `next_token` until the last page, so a
/// machine past the first page is still found.
#[tokio::test]
async fn vast_instance_listings_are_read_page_by_page() {
    let fake = FakeServer::start(Vastai::default()).await;
    let adapter = vast_adapter(&fake);
    let ids: Vec<Uuid> = (0..30).map(|_| Uuid::new_v4()).collect();
    fake.with(|f| {
        for id in &ids {
            f.plant(&format!("parasol-c0ffee0042-{id}"));
        }
    });
    let mut marked = adapter.list_marked().await.unwrap();
    marked.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(marked, want, "both pages");
    assert!(matches!(
        adapter.describe(ids[29]).await.unwrap(),
        parasol::providers::MachineState::Running { .. }
    ));
    let pages: Vec<String> = fake
        .requests_to("GET /api/v1/instances/")
        .iter()
        .map(|r| r.query.clone())
        .collect();
    assert!(
        pages.iter().any(|q| q.contains("after_token=after-")),
        "{pages:?}"
    );
}

// ---------------------------------------------------------- DigitalOcean

fn do_env(fake: &FakeServer<DigitalOcean>) -> Vec<(&'static str, String)> {
    vec![
        ("PARASOL_DIGITALOCEAN_TOKEN", dof::TOKEN.to_string()),
        ("PARASOL_DIGITALOCEAN_URL", format!("{}/v2", fake.url)),
    ]
}

#[tokio::test]
async fn digitalocean_gpu_sizes_map_to_shadeform_offers_with_region_names() {
    let fake = FakeServer::start(DigitalOcean::default()).await;
    let s = Server::start(opts(&do_env(&fake)));
    let c = s.admin();
    let all = types(&c, "").await;
    assert_eq!(all.len(), 7, "every GPU size, no CPU size: {all:#?}");
    let h100 = find(&all, "H100");
    assert_eq!(h100["cloud_instance_type"], "gpu-h100x1-80gb");
    assert_eq!(h100["hourly_price"], 339);
    assert_eq!(h100["configuration"]["vcpus"], 20);
    assert_eq!(h100["configuration"]["memory_in_gb"], 240);
    assert_eq!(h100["configuration"]["storage_in_gb"], 720);
    assert_eq!(
        availability(h100),
        vec![
            ("nyc2".into(), true, "New York 2".into()),
            ("tor1".into(), true, "Toronto 1".into()),
        ]
    );
    let h100x8 = find(&all, "H100x8");
    assert!(availability(h100x8).iter().all(|a| !a.1));
    assert_eq!(find(&all, "L40S")["hourly_price"], 157);
    // Defect 3: the AMD sizes and the RTX 4000 Ada are offered, AMD ones
    // as AMD with DigitalOcean's VRAM per GPU.
    for (shade, slug, n, vram, maker, price) in [
        ("MI300X", "gpu-mi300x1-192gb", 1, 192, "AMD", 199),
        ("MI300Xx8", "gpu-mi300x8-1536gb", 8, 192, "AMD", 1592),
        ("RTX4000Ada", "gpu-4000adax1-20gb", 1, 20, "nvidia", 76),
    ] {
        let t = find(&all, shade);
        assert_eq!(t["cloud_instance_type"], slug, "{shade}");
        assert_eq!(t["hourly_price"], price, "{shade}");
        let cfg = &t["configuration"];
        assert_eq!(cfg["num_gpus"], n, "{shade}");
        assert_eq!(cfg["vram_per_gpu_in_gb"], vram, "{shade}");
        assert_eq!(cfg["gpu_manufacturer"], maker, "{shade}");
    }
    assert_eq!(
        find(&all, "H100x8")["configuration"]["vram_per_gpu_in_gb"],
        80,
        "640 GiB over 8 GPUs"
    );
    for r in fake.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(&*format!("Bearer {}", dof::TOKEN))
        );
    }
    let adapter = DoAdapter::new(
        DigitalOceanConfig {
            token: Secret::new(dof::TOKEN),
            url: format!("{}/v2", fake.url),
        },
        "c0ffee0042",
    );
    let vols = adapter.volume_offers().await.unwrap();
    assert_eq!(
        vols.iter().map(|v| v.region.as_str()).collect::<Vec<_>>(),
        ["atl1", "nyc2", "tor1"],
        "block storage where the GPU sizes are"
    );
}

#[tokio::test]
async fn a_droplet_is_named_and_tagged_with_the_marker_and_rate_limits_are_waited_out() {
    let fake = FakeServer::start(DigitalOcean {
        timing: slow_ip(),
        ..DigitalOcean::default()
    })
    .await;
    let s = Server::start(opts(&do_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    fake.faults(|f| f.rate_limit_next = 1);
    let id = create(&c, "digitalocean", "nyc2", "H100", "droplet").await;
    let active = wait_active_after_pending(&c, &id).await;
    assert_eq!(
        active["ip"], "203.0.113.10",
        "the public address, not the private"
    );
    assert_eq!(active["ssh_user"], "root");
    assert_eq!(active["cloud_assigned_id"], "3000");
    c.post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect(200);
    fake.wait_for("a reboot", |r| {
        r.iter()
            .any(|r| r.line() == "POST /v2/droplets/3000/actions" && r.body["type"] == "reboot")
    })
    .await;
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;

    let dep = deployment_id(&s, &c).await;
    let keys = fake.requests_to("POST /v2/account/keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].body,
        json!({"name": key_name(), "public_key": public_key()})
    );
    let creates = fake.requests_to("POST /v2/droplets");
    assert_eq!(creates.len(), 1);
    assert_eq!(
        without_first_boot(&creates[0].body, "user_data", &id),
        json!({"name": format!("parasol-{dep}-{id}"), "region": "nyc2",
               "size": "gpu-h100x1-80gb", "image": "gpu-h100x1-base",
               "ssh_keys": [512190], "tags": [format!("parasol-{dep}")]})
    );
    assert_eq!(fake.requests_to("DELETE /v2/droplets/3000").len(), 1);
    assert!(fake.with(|f| f.live().is_empty()));
    // The 429 (with Retry-After and ratelimit-* headers) was retried.
    let reqs = fake.requests();
    let first_after_key = reqs
        .windows(2)
        .find(|w| w[0].line() == w[1].line() && w[1].at - w[0].at >= Duration::from_millis(950));
    assert!(first_after_key.is_some(), "no retry after the 429");
    assert!(!s.log().contains(dof::TOKEN));
}

/// An AMD size runs DigitalOcean's ROCm image, not the CUDA one.
#[tokio::test]
async fn a_digitalocean_mi300x_droplet_gets_the_amd_image() {
    let fake = FakeServer::start(DigitalOcean::default()).await;
    let s = Server::start(opts(&do_env(&fake)));
    let c = s.admin();
    let mi = find(&types(&c, "cloud=digitalocean").await, "MI300X").clone();
    assert_eq!(
        mi["configuration"]["os_options"],
        json!(["ubuntu22.04_rocm6_shade_os"])
    );
    let id = create(&c, "digitalocean", "atl1", "MI300X", "amd").await;
    c.wait_status(&id, "active").await;
    let creates = fake.requests_to("POST /v2/droplets");
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].body["size"], "gpu-mi300x1-192gb");
    assert_eq!(creates[0].body["image"], "gpu-amd-base");
}

#[tokio::test]
async fn digitalocean_422_without_capacity_errors_the_instance_and_marks_the_region() {
    let fake = FakeServer::start(DigitalOcean::default()).await;
    let s = Server::start(opts(&do_env(&fake)));
    let c = s.admin();
    c.add_key("me").await;
    fake.with(|f| {
        f.no_capacity
            .push(("gpu-h100x1-80gb".into(), "tor1".into()))
    });
    let id = create(&c, "digitalocean", "tor1", "H100", "full").await;
    let info = c.wait_status(&id, "error").await;
    let details = info["status_details"].as_str().unwrap();
    assert!(
        details.contains("insufficient capacity") && details.contains("not available"),
        "{details}"
    );
    let h100 = types(&c, "cloud=digitalocean&shade_instance_type=H100").await;
    assert_eq!(
        availability(&h100[0]),
        vec![
            ("nyc2".into(), true, "New York 2".into()),
            ("tor1".into(), false, "Toronto 1".into()),
        ]
    );
}

#[tokio::test]
async fn wrong_keys_make_runpod_vast_and_digitalocean_unavailable_without_leaking_them() {
    let rf = FakeServer::start(Runpod::default()).await;
    let vf = FakeServer::start(Vastai::default()).await;
    let df = FakeServer::start(DigitalOcean::default()).await;
    let mut env = vec![
        ("PARASOL_RUNPOD_API_KEY", "wrong-runpod-key".to_string()),
        ("PARASOL_RUNPOD_URL", format!("{}/v1", rf.url)),
        ("PARASOL_RUNPOD_GRAPHQL_URL", format!("{}/graphql", rf.url)),
        ("PARASOL_RUNPOD_CATALOG_URL", format!("{}/v2", rf.url)),
        ("PARASOL_VASTAI_API_KEY", "wrong-vast-key".to_string()),
        ("PARASOL_VASTAI_URL", format!("{}/api/v0", vf.url)),
    ];
    env.extend(do_env(&df));
    let s = Server::start(opts(&env));
    let c = s.admin();
    let ready = readyz(&s, &c).await;
    for p in ["runpod", "vastai"] {
        let why = ready["unavailable_providers"][p]["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("{p}: {ready:#}"));
        assert!(
            why.contains("credentials") || why.contains("API key"),
            "{why}"
        );
    }
    assert!(ready["unavailable_providers"].get("digitalocean").is_none());
    assert!(!types(&c, "cloud=digitalocean").await.is_empty());
    let log = s.log();
    for secret in ["wrong-runpod-key", "wrong-vast-key", dof::TOKEN] {
        assert!(!log.contains(secret) && !ready.to_string().contains(secret));
    }
}

#[tokio::test]
async fn a_digitalocean_429_without_retry_after_waits_for_the_ratelimit_reset() {
    let fake = FakeServer::start(DigitalOcean::default()).await;
    let adapter = DoAdapter::new(
        DigitalOceanConfig {
            token: Secret::new(dof::TOKEN),
            url: format!("{}/v2", fake.url),
        },
        "c0ffee0042",
    );
    fake.faults(|f| {
        f.rate_limit_next = 1;
        f.rate_limit_without_retry_after = true;
    });
    assert_eq!(
        adapter.describe(Uuid::new_v4()).await.unwrap(),
        parasol::providers::MachineState::Gone
    );
    let lists = fake.requests_to("GET /v2/droplets");
    assert_eq!(lists.len(), 2, "the 429, then the retry");
}

#[tokio::test]
async fn digitalocean_droplet_listings_are_read_page_by_page() {
    let fake = FakeServer::start(DigitalOcean::default()).await;
    let adapter = DoAdapter::new(
        DigitalOceanConfig {
            token: Secret::new(dof::TOKEN),
            url: format!("{}/v2", fake.url),
        },
        "c0ffee0042",
    );
    // More than two pages of DigitalOcean's largest page (200).
    let ids: Vec<Uuid> = (0..450).map(|_| Uuid::new_v4()).collect();
    fake.with(|f| {
        for id in &ids {
            f.plant(&format!("parasol-c0ffee0042-{id}"), &["parasol-c0ffee0042"]);
        }
    });
    let mut marked = adapter.list_marked().await.unwrap();
    marked.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(marked, want, "all three pages");
    let fresh = DoAdapter::new(
        DigitalOceanConfig {
            token: Secret::new(dof::TOKEN),
            url: format!("{}/v2", fake.url),
        },
        "c0ffee0042",
    );
    assert!(matches!(
        fresh.describe(ids[449]).await.unwrap(),
        parasol::providers::MachineState::Running { .. }
    ));
    let pages: Vec<String> = fake
        .requests_to("GET /v2/droplets")
        .iter()
        .map(|r| r.query.clone())
        .collect();
    assert!(pages.iter().any(|q| q.contains("page=3")), "{pages:?}");
    assert!(!pages.iter().any(|q| q.contains("page=4")), "{pages:?}");
}

/// The fake lists droplets as DigitalOcean documents `GET /v2/droplets`,
/// so an adapter that leans on an undocumented listing fails against it.
#[tokio::test]
async fn the_digitalocean_fake_lists_gpu_droplets_only_when_asked() {
    let fake = FakeServer::start(DigitalOcean::default()).await;
    let (gpu, cpu, other) = fake.with(|f| {
        (
            f.plant("gpu-box", &["team"]),
            f.plant_sized("web-box", &["team"], "s-2vcpu-4gb"),
            f.plant("gpu-untagged", &[]),
        )
    });
    let http = reqwest::Client::new();
    let list = |q: &'static str| {
        let http = http.clone();
        let url = format!("{}/v2/droplets?{q}", fake.url);
        async move {
            let r = http.get(url).bearer_auth(dof::TOKEN).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let ids = |v: &Value| -> Vec<i64> {
        v["droplets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_i64().unwrap())
            .collect()
    };
    let (_, v) = list("").await;
    assert_eq!(ids(&v), [cpu], "by default only droplets without GPUs");
    let (_, v) = list("type=droplets").await;
    assert_eq!(ids(&v), [cpu]);
    let (_, v) = list("type=gpus").await;
    assert_eq!(ids(&v), [gpu, other]);
    let (_, v) = list("tag_name=team").await;
    assert_eq!(ids(&v), [gpu, cpu], "a tag lists both kinds");
    let (_, v) = list("type=gpus&name=GPU-BOX").await;
    assert_eq!(ids(&v), [gpu], "names match without case");
    let (status, v) = list("type=gpus&tag_name=team").await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = list("type=everything").await;
    assert_eq!(status, 400);
    // That request breaks the document on purpose; the fake said so.
    let broke = fake.take_violations();
    assert!(
        broke.len() == 1 && broke[0].contains("type=everything"),
        "{broke:?}"
    );

    let (_, v) = list("type=gpus&per_page=1").await;
    assert_eq!(ids(&v), [gpu]);
    assert_eq!(v["meta"]["total"], 2);
    let pages = &v["links"]["pages"];
    assert!(pages.get("first").is_none() && pages.get("prev").is_none());
    let next = pages["next"].as_str().unwrap();
    assert!(next.contains("type=gpus") && next.contains("per_page=1") && next.contains("page=2"));
    assert_eq!(pages["last"], *next);
    let (_, v) = list("type=gpus&per_page=1&page=2").await;
    assert_eq!(ids(&v), [other]);
    let pages = &v["links"]["pages"];
    assert!(pages.get("next").is_none() && pages.get("last").is_none());
    assert!(pages["prev"].as_str().unwrap().contains("page=1"));
    assert!(pages["first"].as_str().unwrap().contains("page=1"));
}

/// Defect 1 of issue 25, end to end: after a restart the server finds its
/// GPU droplets again (DigitalOcean lists them only under `type=gpus`),
/// restarts and deletes them at DigitalOcean, and the sweep terminates an
/// orphan under its marker instead of logging it gone.
#[tokio::test]
async fn digitalocean_gpu_droplets_are_found_after_the_server_is_killed() {
    let fake = FakeServer::start(DigitalOcean::default()).await;
    let mut env = do_env(&fake);
    env.push(("PARASOL_ORPHAN_SWEEP_SECONDS", "1".into()));
    let mut s = Server::start(opts(&env));
    let c = s.admin();
    c.add_key("me").await;
    let kept = create(&c, "digitalocean", "nyc2", "H100", "kept").await;
    let deleted = create(&c, "digitalocean", "nyc2", "H100", "deleted").await;
    for id in [&kept, &deleted] {
        c.wait_status(id, "active").await;
    }
    let dep = deployment_id(&s, &c).await;
    let droplet = |id: &str| {
        let name = format!("parasol-{dep}-{id}");
        fake.with(|f| f.live().iter().find(|d| d.name == name).map(|d| d.id))
            .expect("the instance's droplet")
    };
    let (kept_droplet, deleted_droplet) = (droplet(&kept), droplet(&deleted));

    s.kill();
    s.restart();
    let c = s.admin();
    let orphan_instance = Uuid::new_v4();
    let orphan = fake.with(|f| {
        f.plant(
            &format!("parasol-{dep}-{orphan_instance}"),
            &[&format!("parasol-{dep}")],
        )
    });
    c.post_empty(&format!("/v1/instances/{kept}/restart"))
        .await
        .expect(200);
    c.post_empty(&format!("/v1/instances/{deleted}/delete"))
        .await
        .expect(200);
    c.wait_gone(&deleted).await;
    for (what, line) in [
        (
            "the reboot of the kept droplet",
            format!("POST /v2/droplets/{kept_droplet}/actions"),
        ),
        (
            "the delete of the deleted instance's droplet",
            format!("DELETE /v2/droplets/{deleted_droplet}"),
        ),
        (
            "the sweep's delete of the orphan",
            format!("DELETE /v2/droplets/{orphan}"),
        ),
    ] {
        fake.wait_for(what, |r| r.iter().any(|r| r.line() == line))
            .await;
    }
    let live: Vec<i64> = fake.with(|f| f.live().iter().map(|d| d.id).collect());
    assert_eq!(
        live,
        [kept_droplet],
        "only the kept instance's droplet bills"
    );
    assert_eq!(
        c.get(&format!("/v1/instances/{kept}/info"))
            .await
            .expect(200)["status"],
        "active"
    );
    let log = s.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("already gone") && l.contains(&orphan_instance.to_string())),
        "the orphan was logged gone instead of terminated: {log}"
    );
}
