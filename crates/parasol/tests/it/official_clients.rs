//! Fakes of APIs with no published document, held to the provider's own
//! client instead: Verda's (`verda` on PyPI) drives the Verda fake, and
//! RunPod's (`runpod`) queries the RunPod fake's GraphQL catalog, through
//! `official_clients.py` in the test venv (`PARASOL_TEST_VENV`). Each
//! asserts what the client made of the fake's answers, so a field the
//! client needs and the fake leaves out (or a filter the fake ignores)
//! fails here, as it would fail against a fake that drifted from the
//! provider. Microsoft's `azure-mgmt-compute` (with `azure-mgmt-network`)
//! drives the Azure fake the same way, on top of its document.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::fakes::azure::{self as azf, Azure};
use crate::fakes::runpod::{self as rpf, Runpod};
use crate::fakes::verda::{self as vef, Verda};
use crate::fakes::FakeServer;
use crate::harness::public_key;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/official_clients.py");

/// The venv's Python, with `module` importable; a clear failure if not.
fn python(module: &str) -> PathBuf {
    let venv = std::env::var("PARASOL_TEST_VENV").unwrap_or_else(|_| {
        panic!("PARASOL_TEST_VENV is not set: run scripts/setup.sh and export PARASOL_TEST_VENV=$PWD/target/test-venv (scripts/test.sh does both)")
    });
    let py = PathBuf::from(venv).join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import `{module}` (PyPI `{module}`, in scripts/requirements-test.txt): run scripts/setup.sh",
        py.display()
    );
    py
}

/// Runs the scenario of `official_clients.py` named after the client's
/// module; its one JSON line.
async fn scenario(module: &'static str, args: Vec<String>) -> Value {
    let py = python(module);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(SCRIPT)
            .arg(module)
            .args(&args)
            .output()
            .expect("run the official client")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the official client failed on the fake's answers:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn verdas_official_client_reads_every_answer_of_the_verda_fake() {
    let fake = FakeServer::start(Verda::default()).await;
    let got = scenario(
        "verda",
        vec![
            fake.url.clone(),
            vef::CLIENT_ID.into(),
            vef::CLIENT_SECRET.into(),
            public_key(),
        ],
    )
    .await;
    assert!(
        got["types"]
            .as_array()
            .unwrap()
            .contains(&Value::from("1A6000.10V")),
        "{got}"
    );
    assert_eq!(got["prices"]["1A6000.10V"], 0.79, "{got}");
    assert_eq!(got["locations"][0], "FIN-01");
    assert_eq!(got["available"], true, "{got}");
    assert!(got["availabilities"]["FIN-01"].is_array(), "{got}");
    assert_eq!(got["keys"], serde_json::json!([got["key"].clone()]));
    let made = &got["instance"];
    assert_eq!(made["location"], "FIN-01");
    assert_eq!(made["ssh_key_ids"], serde_json::json!([got["key"].clone()]));
    assert_eq!(got["listed"], serde_json::json!([made["id"].clone()]));
    // Startup scripts (the machines' first-boot script): stored, listed,
    // named at deploy, deleted.
    assert_eq!(
        got["scripts"],
        serde_json::json!([{"id": got["script"].clone(), "name": "official-client",
            "script": "#!/bin/sh\necho hi\n"}])
    );
    assert_eq!(got["scripts_left"], serde_json::json!([]));
    // The client's calls reached the fake as the fake understands them.
    let created = fake.requests_to("POST /v1/instances");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].body["location_code"], "FIN-01");
    assert_eq!(created[0].body["startup_script_id"], got["script"]);
    assert_eq!(
        fake.requests_to("PUT /v1/instances")[0].body["action"],
        "delete"
    );
    fake.wait_for("the delete carried out", |_| {
        fake.cloud.lock().unwrap().live().is_empty()
    })
    .await;
}

#[tokio::test]
async fn runpods_official_client_reads_the_runpod_fakes_graphql_catalog() {
    let fake = FakeServer::start(Runpod::default()).await;
    let got = scenario(
        "runpod",
        vec![
            fake.url.clone(),
            rpf::KEY.into(),
            "NVIDIA H100 80GB HBM3".into(),
        ],
    )
    .await;
    let ids: Vec<&str> = got["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"NVIDIA RTX A6000"), "{got}");
    for g in got["gpus"].as_array().unwrap() {
        assert!(
            g["displayName"].is_string() && g["memoryInGb"].is_number(),
            "{g}"
        );
    }
    // `get_gpu` asks for one type by id, and for two of them.
    let one = &got["one"];
    assert_eq!(one["id"], "NVIDIA H100 80GB HBM3", "{got}");
    assert!(
        one["lowestPrice"]["uninterruptablePrice"].is_number(),
        "{one}"
    );
    assert!(one["lowestPrice"]["minimumBidPrice"].is_number(), "{one}");
    for field in [
        "manufacturer",
        "secureCloud",
        "communityCloud",
        "maxGpuCount",
    ] {
        assert!(!one[field].is_null(), "{field} missing: {one}");
    }
    let q = fake.requests_to("POST /graphql");
    assert_eq!(q.len(), 2);
    assert!(q[1].body["query"].as_str().unwrap().contains("gpuCount: 2"));
}

#[tokio::test]
async fn microsofts_compute_client_drives_the_azure_fake() {
    let fake = FakeServer::start(Azure::default()).await;
    let got = scenario(
        "azure.mgmt.compute",
        vec![
            fake.url.clone(),
            azf::TENANT.into(),
            azf::CLIENT_ID.into(),
            azf::CLIENT_SECRET.into(),
            azf::SUBSCRIPTION.into(),
            public_key(),
        ],
    )
    .await;
    let a100 = &got["skus"]["Standard_NC24ads_A100_v4"];
    assert_eq!(a100["GPUs"], "1", "{got}");
    assert_eq!(a100["vCPUs"], "24", "{got}");
    assert_eq!(
        got["zones"]["Standard_NC24ads_A100_v4"],
        serde_json::json!(["1", "2", "3"])
    );
    assert!(
        got["skus"].get("Standard_ND96isr_MI300X_v5").is_none(),
        "the location filter is honoured: {got}"
    );
    assert_eq!(got["vm"], "vm");
    assert_eq!(got["priority"], "Spot");
    assert_eq!(got["size"], "Standard_NC24ads_A100_v4");
    assert!(
        got["codes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("PowerState/")),
        "{got}"
    );
    assert_eq!(got["listed"], serde_json::json!(["vm"]));
    assert!(
        got["address"].as_str().unwrap().starts_with("203.0.113."),
        "{got}"
    );
    assert_eq!(got["disk_size"], 10);
    assert!(got["disks"].as_array().unwrap().contains(&"data".into()));
    let restarts = fake.with(|c| c.all(azf::VM).iter().map(|v| v.restarts).sum::<u32>());
    assert_eq!(restarts, 1);
    fake.assert_documented();
}
