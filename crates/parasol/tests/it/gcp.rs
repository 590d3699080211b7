//! The `gcp` cloud: the adapter against the Compute Engine fake (zone
//! fallback, quota, Google's 403 form of a rate limit, the token exchange
//! and its cache, what an insert carries, prices from the Cloud Billing
//! Catalog API or the shipped table), the server end to end (a spot
//! machine's preemption, bad credentials in `/readyz`), and the fake
//! driven by Google's own Python client, google-api-python-client.

use std::time::{Duration, Instant};

use parasol::api::RentalType;
use parasol::providers::clouds::gcp as adapter;
use parasol::providers::{MachineState, Provider, ProviderError};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fakes::gcp::{self as gcf, Gcp};
use crate::fakes::{FakeServer, Recorded, Timing};
use crate::harness::{public_key, Client, Opts, Server};
use crate::provider_conformance::gcp_adapter;

const DEPLOYMENT: &str = "c0ffee0042";
const L4: &str = "g2-standard-4";

async fn fake() -> FakeServer<Gcp> {
    let mut g = Gcp::default();
    g.timing = Timing {
        boot: Duration::from_millis(200),
        ip_after: Duration::from_millis(300),
        teardown: Duration::from_millis(200),
    };
    FakeServer::start(g).await
}

fn request(id: Uuid, cloud_type: &str, rental: RentalType) -> parasol::providers::LaunchRequest {
    parasol::providers::LaunchRequest {
        instance_id: id,
        name: "gcp".into(),
        cloud: adapter::CLOUD.into(),
        region: "us-central1".into(),
        shade_instance_type: "L4".into(),
        cloud_instance_type: cloud_type.into(),
        os: "ubuntu22.04_cuda12_dlvm".into(),
        rental_type: rental,
        ssh_public_key: Some(public_key()),
        launch_configuration: None,
        envs: vec![],
        cluster_id: None,
        volumes: vec![],
        agent: None,
    }
}

fn inserts(f: &FakeServer<Gcp>) -> Vec<Recorded> {
    f.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/instances"))
        .collect()
}

async fn terminate_until_gone(p: &dyn Provider, id: Uuid) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.terminate(id).await.expect("terminate") != MachineState::Gone {
        assert!(Instant::now() < deadline, "never gone");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn until_running(p: &dyn Provider, id: Uuid) -> MachineState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = p.describe(id).await.expect("describe");
        if matches!(s, MachineState::Running { .. }) {
            return s;
        }
        assert!(Instant::now() < deadline, "never running: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_exhausted_zone_falls_back_to_the_next_zone_of_the_region() {
    let f = fake().await;
    f.with(|g| g.exhausted.push((L4.into(), "us-central1-a".into())));
    let p = gcp_adapter(&f.url, DEPLOYMENT);
    let id = Uuid::new_v4();
    let launched = p
        .launch(&request(id, L4, RentalType::OnDemand))
        .await
        .expect("the second zone takes it");
    assert!(
        launched.cloud_assigned_id.starts_with("us-central1-b/"),
        "{launched:?}"
    );
    let zones: Vec<String> = inserts(&f)
        .iter()
        .map(|r| r.path.split('/').nth(6).unwrap().to_string())
        .collect();
    assert_eq!(zones, ["us-central1-a", "us-central1-b"]);
    // Each zone's insert has its own request id.
    let ids: Vec<String> = inserts(&f).iter().map(|r| r.query.clone()).collect();
    assert!(ids.iter().all(|q| q.starts_with("requestId=")), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    let MachineState::Running { placement, .. } = until_running(&p, id).await else {
        unreachable!()
    };
    assert_eq!(placement.as_deref(), Some("zone us-central1-b"));

    // Every zone exhausted: capacity, which placement turns into failover.
    f.with(|g| g.exhausted.push((L4.into(), "us-central1-b".into())));
    match p
        .launch(&request(Uuid::new_v4(), L4, RentalType::OnDemand))
        .await
    {
        Err(ProviderError::Capacity(why)) => {
            assert!(why.contains("ZONE_RESOURCE_POOL_EXHAUSTED"), "{why}");
            assert!(
                why.contains("us-central1-a") && why.contains("us-central1-b"),
                "{why}"
            );
        }
        other => panic!("expected capacity, got {other:?}"),
    }
    assert_eq!(f.with(|g| g.live().len()), 1);
}

#[tokio::test]
async fn an_insert_that_fails_after_its_launch_returned_is_a_failure_with_googles_codes() {
    let f = fake().await;
    f.with(|g| {
        g.slow_operations = 3;
        g.exhausted.push((L4.into(), "us-central1-a".into()));
    });
    let p = gcp_adapter(&f.url, DEPLOYMENT).with_operation_wait(Duration::from_millis(100));
    let id = Uuid::new_v4();
    p.launch(&request(id, L4, RentalType::OnDemand))
        .await
        .expect("the operation is still running when the launch returns");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let reason = loop {
        let s = p.describe(id).await.expect("describe");
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if let MachineState::Failed { reason } = s {
            break reason;
        }
        assert!(Instant::now() < deadline, "never failed: {seen:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(seen[0], MachineState::Provisioning, "{seen:?}");
    assert!(!seen.contains(&MachineState::Gone), "{seen:?}");
    assert!(
        reason.contains("ZONE_RESOURCE_POOL_EXHAUSTED") && reason.contains("us-central1-a"),
        "{reason}"
    );
    // Named as capacity, as Azure names its late allocation failures.
    assert!(reason.starts_with("insufficient capacity: "), "{reason}");
    assert!(f.with(|g| g.machines.is_empty()));
}

#[tokio::test]
async fn an_exceeded_quota_is_an_error_naming_the_quota() {
    let f = fake().await;
    f.with(|g| g.quota_exceeded = Some("NVIDIA_L4_GPUS".into()));
    let p = gcp_adapter(&f.url, DEPLOYMENT);
    match p
        .launch(&request(Uuid::new_v4(), L4, RentalType::OnDemand))
        .await
    {
        Err(ProviderError::Permanent(why)) => {
            assert!(why.contains("quota NVIDIA_L4_GPUS exceeded"), "{why}")
        }
        other => panic!("expected a quota error, got {other:?}"),
    }
    assert_eq!(
        inserts(&f).len(),
        1,
        "a quota is not retried in other zones"
    );
    assert!(f.with(|g| g.live().is_empty()));
}

#[tokio::test]
async fn googles_403_rate_limit_is_retried_and_a_token_is_fetched_once_and_verified() {
    let f = fake().await;
    let p = gcp_adapter(&f.url, DEPLOYMENT);
    f.with(|g| g.rate_limit_403_next = 2);
    assert_eq!(
        p.describe(Uuid::new_v4())
            .await
            .expect("retried past the 403s"),
        MachineState::Gone
    );
    assert_eq!(f.with(|g| g.rate_limit_403_next), 0);
    p.offers().await.expect("offers");
    p.describe(Uuid::new_v4()).await.unwrap();
    let tokens = f.requests_to("POST /oauth2/token");
    assert_eq!(tokens.len(), 1, "the token is cached");
    assert!(f.with(|g| g.refused_assertions.is_empty()));
    // What was sent is a JWT the fake verified against the public key.
    let form = tokens[0].body.as_str().unwrap().to_string();
    assert!(
        form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"),
        "{form}"
    );
    assert!(!form.contains("PRIVATE KEY"));
    // Every API call carried that token.
    for r in f
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/compute/"))
    {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer ya29.test-1"),
            "{}",
            r.line()
        );
    }
    // A JWT signed by another key is refused, as Google's endpoint does.
    let forged = {
        let (h, c) = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1NjcifQ", "e30");
        format!("{h}.{c}.AAAA")
    };
    assert!(gcf::verify(&forged).unwrap_err().contains("Signature"));
}

#[tokio::test]
async fn on_gce_the_metadata_servers_token_serves_without_a_key() {
    use parasol::providers::clouds::gcp::auth::{resolve, Credentials};
    let f = fake().await;
    let token_url = format!("{}{}", f.url, gcf::METADATA_TOKEN_PATH);
    let url = format!("{}/compute/v1", f.url);
    let billing = format!("{}/v1", f.url);
    let env = [
        ("PARASOL_GCP_PROJECT", gcf::PROJECT),
        ("PARASOL_GCP_METADATA_TOKEN_URL", token_url.as_str()),
        ("PARASOL_GCP_URL", url.as_str()),
        ("PARASOL_GCP_BILLING_URL", billing.as_str()),
        ("PARASOL_GCP_REGIONS", "us-central1"),
    ];
    let cfg = resolve(
        None,
        &|k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        },
        &|_| None,
    )
    .unwrap()
    .expect("a project alone enables gcp on GCE");
    assert!(matches!(cfg.credentials, Credentials::Metadata { .. }));
    let p = adapter::Gcp::new(cfg, DEPLOYMENT);
    let offers = p.offers().await.expect("offers with the metadata token");
    assert!(offers.iter().any(|o| o.cloud_instance_type == L4));
    let asked = f.requests_to(&format!("GET {}", gcf::METADATA_TOKEN_PATH));
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].header("metadata-flavor"), Some("Google"));
    assert!(f.requests_to("POST /oauth2/token").is_empty());
}

#[tokio::test]
async fn a_volume_a_machine_cannot_mount_is_refused_by_name() {
    let f = fake().await;
    let p = gcp_adapter(&f.url, DEPLOYMENT);
    let mut req = request(Uuid::new_v4(), "a3-ultragpu-8g", RentalType::OnDemand);
    req.volumes = vec![parasol::providers::LaunchVolume {
        id: Uuid::new_v4(),
        size_in_gb: 10,
        cloud_assigned_id: "us-central1-b/parasol-vol".into(),
        zone: Some("us-central1-b".into()),
    }];
    match p.launch(&req).await {
        Err(ProviderError::Permanent(why)) => assert!(why.contains("Hyperdisk"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A disk in a zone that does not offer the type: refused naming it.
    let mut req = request(Uuid::new_v4(), L4, RentalType::OnDemand);
    req.volumes = vec![parasol::providers::LaunchVolume {
        id: Uuid::new_v4(),
        size_in_gb: 10,
        cloud_assigned_id: "us-central1-c/parasol-vol".into(),
        zone: Some("us-central1-c".into()),
    }];
    match p.launch(&req).await {
        Err(ProviderError::Permanent(why)) => {
            assert!(why.contains("us-central1-c") && why.contains(L4), "{why}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(inserts(&f).is_empty());
}

#[tokio::test]
async fn an_insert_carries_the_marker_ssh_key_scheduling_and_an_external_ip_and_ssh_is_opened_once()
{
    let f = fake().await;
    let p = gcp_adapter(&f.url, DEPLOYMENT);
    let id = Uuid::new_v4();
    let mut req = request(id, L4, RentalType::OnDemand);
    req.launch_configuration = Some(
        serde_json::from_value(
            json!({"type": "script", "script_configuration": {"base64_script": "ZWNobyBoaQ=="}}),
        )
        .unwrap(),
    );
    p.launch(&req).await.expect("launch");
    p.launch(&request(
        Uuid::new_v4(),
        "n1-standard-16+2xnvidia-tesla-t4",
        RentalType::OnDemand,
    ))
    .await
    .expect("an N1 with two T4s");
    let ins = inserts(&f);
    let b = &ins[0].body;
    assert_eq!(b["name"], format!("parasol-{DEPLOYMENT}-{id}"));
    assert_eq!(b["labels"]["parasol-deployment"], DEPLOYMENT);
    assert_eq!(b["labels"]["parasol-instance"], id.to_string());
    assert_eq!(b["scheduling"]["onHostMaintenance"], "TERMINATE");
    assert_eq!(b["scheduling"]["provisioningModel"], "STANDARD");
    assert_eq!(
        b["networkInterfaces"][0]["accessConfigs"][0]["type"],
        "ONE_TO_ONE_NAT"
    );
    assert_eq!(b["tags"]["items"], json!([adapter::FIREWALL]));
    assert!(b["disks"][0]["initializeParams"]["sourceImage"]
        .as_str()
        .unwrap()
        .contains("deeplearning-platform-release"));
    let meta: Vec<(&str, &str)> = b["metadata"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    assert!(
        meta.contains(&("ssh-keys", &*format!("ubuntu:{}", public_key().trim()))),
        "{meta:?}"
    );
    let script = meta
        .iter()
        .find(|(k, _)| *k == "startup-script")
        .expect("a startup script")
        .1;
    assert!(
        script.starts_with("#!/bin/bash") && script.contains(&id.to_string()),
        "{script}"
    );
    let n1 = &ins[1].body;
    assert!(n1["machineType"]
        .as_str()
        .unwrap()
        .ends_with("/machineTypes/n1-standard-16"));
    assert_eq!(n1["guestAccelerators"][0]["acceleratorCount"], 2);
    assert!(n1["guestAccelerators"][0]["acceleratorType"]
        .as_str()
        .unwrap()
        .ends_with("/acceleratorTypes/nvidia-tesla-t4"));
    let firewalls = f.requests_to(&format!(
        "POST /compute/v1/projects/{}/global/firewalls",
        gcf::PROJECT
    ));
    assert_eq!(firewalls.len(), 1, "the SSH rule is made once");
    assert_eq!(
        firewalls[0].body["allowed"],
        json!([{"IPProtocol": "tcp", "ports": ["22"]}])
    );
    assert_eq!(firewalls[0].body["targetTags"], json!([adapter::FIREWALL]));
    // Restart is a reset.
    p.restart(id).await.expect("restart");
    assert_eq!(f.with(|g| g.machines[0].resets), 1);
}

#[tokio::test]
async fn a_preempted_spot_machine_is_preempted_whether_google_still_lists_it_or_deleted_it() {
    let f = fake().await;
    let p = gcp_adapter(&f.url, DEPLOYMENT);
    let id = Uuid::new_v4();
    p.launch(&request(id, L4, RentalType::Spot))
        .await
        .expect("launch");
    let b = &inserts(&f)[0].body;
    assert_eq!(b["scheduling"]["provisioningModel"], "SPOT");
    assert_eq!(b["scheduling"]["instanceTerminationAction"], "DELETE");
    assert_eq!(b["scheduling"]["automaticRestart"], false);
    until_running(&p, id).await;
    let name = f.with(|g| g.machines[0].name.clone());
    f.with(|g| g.preempt(&name));
    // Stopped for the preemption, still listed: any adapter sees it.
    let cold = gcp_adapter(&f.url, DEPLOYMENT);
    assert_eq!(cold.describe(id).await.unwrap(), MachineState::Preempted);
    // Deleted as instanceTerminationAction asks: the adapter that launched
    // it knows it was spot and never terminated by Parasol.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(p.describe(id).await.unwrap(), MachineState::Preempted);
    assert!(f.with(|g| g.machines.is_empty()), "Google deleted it");
    // After a restart too: Google's `compute.instances.preempted`
    // operation names it.
    let restarted = gcp_adapter(&f.url, DEPLOYMENT);
    assert_eq!(
        restarted.describe(id).await.unwrap(),
        MachineState::Preempted
    );
    let notices = f.requests_to(&format!(
        "GET /compute/v1/projects/{}/aggregated/operations",
        gcf::PROJECT
    ));
    assert!(
        notices
            .iter()
            .all(|r| r.query.contains("compute.instances.preempted")),
        "{notices:?}"
    );
    // A machine Parasol deleted itself is gone, not preempted.
    let other = Uuid::new_v4();
    p.launch(&request(other, L4, RentalType::Spot))
        .await
        .expect("launch");
    terminate_until_gone(&restarted, other).await;
    assert_eq!(
        gcp_adapter(&f.url, DEPLOYMENT)
            .describe(other)
            .await
            .unwrap(),
        MachineState::Gone
    );
}

/// Google's own Python client (google-api-python-client, with
/// google-auth's service-account credentials) exchanges the test key at
/// the fake's token endpoint and lists, inserts, gets and deletes through
/// the fake; the fake checks every request against the discovery
/// document the client itself is generated from.
#[tokio::test]
async fn googles_python_client_drives_the_fake() {
    let f = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    std::fs::write(&key, gcf::key_json(&f.url)).unwrap();
    let venv = std::env::var("PARASOL_TEST_VENV").unwrap_or_else(|_| {
        panic!("PARASOL_TEST_VENV is not set: run scripts/setup.sh and export PARASOL_TEST_VENV=$PWD/target/test-venv (scripts/test.sh does both)")
    });
    let script = r#"
import json, sys
from google.oauth2 import service_account
from googleapiclient import discovery
key, root, project, billing_root = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
creds = service_account.Credentials.from_service_account_file(
    key, scopes=["https://www.googleapis.com/auth/compute",
                 "https://www.googleapis.com/auth/cloud-billing.readonly"])
compute = discovery.build("compute", "v1", credentials=creds, cache_discovery=False,
                          static_discovery=True, client_options={"api_endpoint": root})
types = compute.machineTypes().aggregatedList(project=project, maxResults=100).execute()
l4 = [t["name"] for scope in types["items"].values() for t in scope.get("machineTypes", [])
      if t["name"].startswith("g2-")]
op = compute.instances().insert(project=project, zone="us-central1-a", body={
    "name": "from-python",
    "machineType": "zones/us-central1-a/machineTypes/g2-standard-4",
    "scheduling": {"onHostMaintenance": "TERMINATE"},
    "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
        "sourceImage": "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570"}}],
    "networkInterfaces": [{"accessConfigs": [{"type": "ONE_TO_ONE_NAT"}]}],
}).execute()
op = compute.zoneOperations().get(project=project, zone="us-central1-a", operation=op["name"]).execute()
got = compute.instances().get(project=project, zone="us-central1-a", instance="from-python").execute()
compute.instances().delete(project=project, zone="us-central1-a", instance="from-python").execute()
billing = discovery.build("cloudbilling", "v1", credentials=creds, cache_discovery=False,
                          static_discovery=True, client_options={"api_endpoint": billing_root})
skus, req = [], billing.services().skus().list(parent="services/6F81-5844-456A")
while req is not None:
    page = req.execute()
    skus += [s["description"] for s in page.get("skus", [])]
    req = billing.services().skus().list_next(req, page)
print(json.dumps({"l4": sorted(set(l4)), "status": got["status"], "op": op["status"],
                  "skus": skus}))
"#;
    let url = f.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(format!("{venv}/bin/python"))
            .arg("-c")
            .arg(script)
            .arg(&key)
            .arg(format!("{url}/compute/v1/"))
            .arg(gcf::PROJECT)
            .arg(format!("{url}/"))
            .output()
            .expect("the test venv's python runs (scripts/setup.sh makes it)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["l4"],
        json!(["g2-standard-24", "g2-standard-4", "g2-standard-8"])
    );
    assert!(
        ["PROVISIONING", "STAGING", "RUNNING"].contains(&got["status"].as_str().unwrap()),
        "{got}"
    );
    assert_eq!(got["op"], "RUNNING");
    // The Cloud Billing Catalog client pages through every SKU.
    let descriptions: Vec<Value> = gcf::default_skus()
        .iter()
        .map(|s| s["description"].clone())
        .collect();
    assert_eq!(got["skus"], Value::Array(descriptions));
    assert_eq!(f.requests_to("POST /oauth2/token").len(), 1);
    assert!(f.with(|g| g.refused_assertions.is_empty()));
    assert_eq!(f.with(|g| g.machines.len()), 1, "deleted, still stopping");
    assert!(f.with(|g| g.live().is_empty()));
    f.assert_documented();
}

// ------------------------------------------------------ end to end

/// A fake and a server with `gcp` enabled against it.
struct World {
    fake: FakeServer<Gcp>,
    server: Server,
    _dir: tempfile::TempDir,
}

fn world_with(fake: FakeServer<Gcp>, key: &str, extra: &[(&str, &str)]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    std::fs::write(&path, key).unwrap();
    let config = dir.path().join("parasol.toml");
    std::fs::write(&config, "[sim]\nenabled = true\n").unwrap();
    let mut env: Vec<(String, String)> = vec![
        (
            "GOOGLE_APPLICATION_CREDENTIALS".into(),
            path.display().to_string(),
        ),
        ("PARASOL_GCP_URL".into(), format!("{}/compute/v1", fake.url)),
        ("PARASOL_GCP_BILLING_URL".into(), format!("{}/v1", fake.url)),
        ("PARASOL_GCP_REGIONS".into(), "us-central1,us-east1".into()),
        ("PARASOL_ORPHAN_SWEEP_SECONDS".into(), "1".into()),
        ("PARASOL_ACTIVE_CHECK_SECONDS".into(), "1".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let server = Server::start(
        Opts {
            env,
            ..Opts::default()
        }
        .args(&["--config", config.to_str().unwrap()]),
    );
    World {
        fake,
        server,
        _dir: dir,
    }
}

async fn readyz(c: &Client, base: &str) -> Value {
    c.http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_spot_l4_runs_from_the_api_and_its_preemption_takes_the_preemption_path() {
    let f = fake().await;
    let key = gcf::key_json(&f.url);
    let w = world_with(f, &key, &[]);
    let c = w.server.admin();
    let l4 = listed_type(&c, L4).await;
    assert_eq!(l4["shade_instance_type"], "L4");
    // Priced from the fake's Cloud Billing Catalog SKUs.
    assert_eq!(l4["hourly_price"], gcf::G2_STANDARD_4_API_CENTS.0);
    let ssh = c.add_key("k").await;
    let id = c
        .post(
            "/v1/instances/create",
            json!({"cloud": "gcp", "region": "us-central1", "shade_instance_type": "L4",
                   "shade_cloud": true, "name": "spot", "ssh_key_id": ssh,
                   "rental_type": "spot"}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c.wait_status(&id, "active").await;
    assert_eq!(info["ssh_user"], "ubuntu");
    let machine = w.fake.with(|g| {
        g.machines
            .iter()
            .find(|m| m.name.ends_with(&id))
            .map(|m| m.name.clone())
    });
    let machine = machine.expect("the machine is at the fake");
    w.fake.with(|g| g.preempt(&machine));
    c.wait_gone(&id).await;
    let rec = w
        .server
        .store()
        .await
        .get_instance_any(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.instance.status_details.as_deref(), Some("preempted"));
    let log = w.server.log();
    assert!(log.contains("gcp"));
    assert!(
        !log.contains("BEGIN PRIVATE KEY") && !log.contains("ya29."),
        "a secret reached the log"
    );
    w.fake.assert_documented();
}

#[tokio::test]
async fn a_key_google_refuses_shows_gcp_unavailable_in_readyz_and_leaves_other_clouds() {
    let f = fake().await;
    // The account's key, with another account's email: the JWT's issuer
    // does not match the key that signed it.
    let key = gcf::key_json(&f.url).replace(
        gcf::CLIENT_EMAIL,
        "intruder@elsewhere.iam.gserviceaccount.com",
    );
    let w = world_with(f, &key, &[]);
    let c = w.server.admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let body = readyz(&c, &w.server.base).await;
        if body["unavailable_providers"]["gcp"].is_object() || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let why = ready["unavailable_providers"]["gcp"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("token endpoint") && why.contains("invalid_grant"),
        "{ready:#}"
    );
    assert!(!why.contains("PRIVATE KEY"));
    assert!(!w.server.log().contains("BEGIN PRIVATE KEY"));
    let gcp = c.get("/v1/instances/types?cloud=gcp").await.expect(200);
    assert!(gcp["instance_types"].as_array().unwrap().is_empty());
    let others = c.get("/v1/instances/types").await.expect(200);
    assert!(!others["instance_types"].as_array().unwrap().is_empty());
    assert!(!w.fake.with(|g| g.refused_assertions.is_empty()));
}

/// The derived document holds requests and answers to Google's own
/// schemas: an unknown field or a value outside an enum is a violation
/// naming it, in a request or in an answer.
#[test]
fn unknown_fields_and_bad_enums_break_the_document() {
    use crate::fakes::openapi::{check_request, check_response, docs, operation_id};
    let d = &[docs::gcp()];
    let insert = |body: Value| Recorded {
        at: Instant::now(),
        method: "POST".into(),
        path: format!(
            "/compute/v1/projects/{}/zones/us-central1-a/instances",
            gcf::PROJECT
        ),
        query: format!("requestId={}", Uuid::new_v4()),
        headers: Default::default(),
        body,
    };
    let good = json!({"name": "x", "machineType": "zones/us-central1-a/machineTypes/g2-standard-4",
                      "scheduling": {"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"}});
    let m = check_request(d, &insert(good.clone())).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(operation_id(&m), "compute.instances.insert");
    let mut unknown = good.clone();
    unknown["gpuCount"] = json!(2);
    let e = check_request(d, &insert(unknown))
        .err()
        .expect("an unknown field");
    assert!(e.iter().any(|e| e.contains("gpuCount")), "{e:?}");
    let mut bad_enum = good.clone();
    bad_enum["scheduling"]["provisioningModel"] = json!("CHEAP");
    let e = check_request(d, &insert(bad_enum))
        .err()
        .expect("a bad enum");
    assert!(e.iter().any(|e| e.contains("CHEAP")), "{e:?}");
    let mut nameless = good;
    nameless.as_object_mut().unwrap().remove("name");
    let e = check_request(d, &insert(nameless))
        .err()
        .expect("the name insert requires");
    assert!(e.iter().any(|e| e.contains("name")), "{e:?}");
    let bad_answer = check_response(
        &m,
        200,
        r#"{"kind": "compute#operation", "status": "FINISHED"}"#,
    );
    assert!(
        bad_answer.iter().any(|e| e.contains("FINISHED")),
        "{bad_answer:?}"
    );
    let extra = check_response(&m, 200, r#"{"kind": "compute#operation", "done": true}"#);
    assert!(extra.iter().any(|e| e.contains("done")), "{extra:?}");
}

/// `cloud_type` as `/instance/types` lists it.
async fn listed_type(c: &Client, cloud_type: &str) -> Value {
    let types = c.get("/v1/instances/types?cloud=gcp").await.expect(200);
    let all = types["instance_types"].as_array().unwrap();
    all.iter()
        .find(|t| t["cloud_instance_type"] == cloud_type)
        .unwrap_or_else(|| panic!("no {cloud_type} in {all:#?}"))
        .clone()
}

/// The cents of a dollar price, as offers carry them.
fn cents(dollars: f64) -> i64 {
    (dollars * 100.0).round() as i64
}

/// The offer of `cloud_type`, and its spot price in `region`.
fn priced(offers: &[parasol::providers::Offer], cloud_type: &str, region: &str) -> (i64, i64) {
    let o = offers
        .iter()
        .find(|o| o.cloud_instance_type == cloud_type)
        .unwrap_or_else(|| panic!("no {cloud_type} offered"));
    let r = o
        .regions
        .iter()
        .find(|r| r.region == region)
        .unwrap_or_else(|| panic!("{cloud_type} not offered in {region}"));
    (o.hourly_price, r.spot_price.expect("a spot price"))
}

#[tokio::test]
async fn prices_come_from_the_cloud_billing_catalog_api_where_it_prices_every_part() {
    use parasol::providers::clouds::gcp::catalog;
    let f = fake().await;
    let p = gcp_adapter(&f.url, DEPLOYMENT);
    let offers = p.offers().await.expect("offers");
    // G2's vCPUs, memory and L4 are all among the SKUs: the API's prices.
    assert_eq!(
        priced(&offers, L4, "us-central1"),
        gcf::G2_STANDARD_4_API_CENTS
    );
    let (table, _) = catalog::price(L4, "us-central1").unwrap();
    assert_ne!(gcf::G2_STANDARD_4_API_CENTS.0, cents(table));
    // A2 has no SKU there: the table's price.
    let (od, spot) = catalog::price("a2-highgpu-1g", "us-central1").unwrap();
    assert_eq!(
        priced(&offers, "a2-highgpu-1g", "us-central1"),
        (cents(od), cents(spot))
    );
    // Eight SKUs, three a page: every page was read, each after the last.
    let path = format!("GET /v1/services/{}/skus", gcf::COMPUTE_SERVICE);
    let pages = f.requests_to(&path);
    let tokens: Vec<Option<String>> = pages
        .iter()
        .map(|r| {
            form_urlencoded::parse(r.query.as_bytes())
                .find(|(k, _)| k == "pageToken")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(tokens, vec![None, Some("3".into()), Some("6".into())]);
    assert!(pages.iter().all(|r| r
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer "))));
    // A later catalog refresh reuses them rather than reading every SKU
    // again.
    f.with(|g| g.billing.skus.clear());
    let again = p.offers().await.expect("offers");
    assert_eq!(
        priced(&again, L4, "us-central1"),
        gcf::G2_STANDARD_4_API_CENTS
    );
}

#[tokio::test]
async fn the_shipped_table_prices_when_the_cloud_billing_api_refuses_and_the_log_says_so() {
    use parasol::providers::clouds::gcp::catalog;
    let f = fake().await;
    f.with(|g| g.billing.disabled = true);
    let key = gcf::key_json(&f.url);
    let w = world_with(f, &key, &[]);
    let c = w.server.admin();
    let l4 = listed_type(&c, L4).await;
    let (od, _) = catalog::price(L4, "us-central1").unwrap();
    assert_eq!(l4["hourly_price"], cents(od));
    let path = format!("GET /v1/services/{}/skus", gcf::COMPUTE_SERVICE);
    assert!(!w.fake.requests_to(&path).is_empty(), "the API was asked");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = w.server.log();
        if log.contains("Cloud Billing Catalog API gave no prices")
            && log.contains("pricing from the shipped table")
        {
            assert!(
                log.contains("SERVICE_DISABLED") || log.contains("has not been used"),
                "{log}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no log line in:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
