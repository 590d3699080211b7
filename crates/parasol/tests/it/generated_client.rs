//! A Python client generated from the official Shadeform document with
//! openapi-python-client (from scripts/requirements-test.txt, in the venv
//! PARASOL_TEST_VENV names) drives a full lifecycle: its models reject any
//! value the document does not allow, so a null ip or deleted_at fails.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{public_key, Opts, Server, ADMIN_KEY};

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../specs/shadeform.openapi.json"
);

fn venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var("PARASOL_TEST_VENV").expect(
        "PARASOL_TEST_VENV is not set: this test needs the Python tools of \
         scripts/requirements-test.txt; run scripts/test.sh (or scripts/setup.sh and \
         export PARASOL_TEST_VENV=$PWD/target/test-venv)",
    );
    let bin = PathBuf::from(venv).join("bin").join(tool);
    assert!(
        bin.exists(),
        "{} is missing: rerun scripts/setup.sh",
        bin.display()
    );
    bin
}

#[tokio::test]
async fn a_client_generated_from_the_official_document_drives_a_lifecycle() {
    let generator = venv_bin("openapi-python-client");
    let python = venv_bin("python");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yaml");
    // No post hooks: they would run ruff, which the generated code does not need.
    std::fs::write(
        &config,
        "post_hooks: []\npackage_name_override: shadeform_client\n",
    )
    .unwrap();
    let out = Command::new(&generator)
        .args(["generate", "--path", SPEC, "--meta", "none", "--config"])
        .arg(&config)
        .arg("--output-path")
        .arg(tmp.path().join("shadeform_client"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generating the client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let s = Server::start(Opts {
        boot_seconds: 0.5,
        ..Opts::default()
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/generated_client.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(&s.base)
        .arg(ADMIN_KEY)
        .arg(public_key())
        .env("PYTHONPATH", tmp.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the generated client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("lifecycle ok"), "{stdout}");
    assert!(
        stdout.contains("pending"),
        "it never saw a pending state: {stdout}"
    );
}
