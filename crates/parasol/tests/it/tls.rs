//! Built-in HTTPS with a self-signed certificate made here by the openssl
//! CLI (scripts/setup.sh installs it).

use std::process::Command;

use crate::harness::{Opts, Server, ADMIN_KEY};

/// A self-signed certificate for 127.0.0.1 and localhost: (cert, key) paths.
fn self_signed(dir: &std::path::Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A leaf, not a CA: webpki refuses a CA certificate as the server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl CLI is needed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[tokio::test]
async fn https_round_trip_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let s = Server::start(Opts::default().args(&["--tls-cert", &cert, "--tls-key", &key]));
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);
    let pem = std::fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let account: serde_json::Value = client
        .get(format!("{}/v1/account", s.base))
        .header("X-API-KEY", ADMIN_KEY)
        .send()
        .await
        .expect("an HTTPS request")
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["name"], "admin");
    // Console pages are served under TLS with HSTS, beside the other
    // security headers.
    let login = client
        .get(format!("{}/login", s.base))
        .send()
        .await
        .unwrap();
    let h = login.headers();
    assert_eq!(h["strict-transport-security"], "max-age=31536000");
    assert_eq!(h["x-frame-options"], "DENY");
    // A client that does not trust the certificate is refused by its own
    // verification, so the server really presented this certificate.
    let untrusting = reqwest::Client::new();
    assert!(untrusting
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .is_err());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = s.base.replacen("https://", "http://", 1);
    let r = reqwest::get(format!("{plain}/healthz")).await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(dir.path());
    let out = Command::new(crate::harness::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", &cert])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("PARASOL_TLS_KEY")
        .env_remove("PARASOL_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert and --tls-key go together"),
        "{err}"
    );
}
