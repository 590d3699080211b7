//! Logs: JSON lines with ids on every request and transition, and no
//! secret ever written, at the most verbose level an operator would use.

use serde_json::{json, Value};

use crate::harness::{default_create, Opts, Server, ADMIN_KEY};

const ENV_SECRET: &str = "hf_ENV_SECRET_value_0042";
const DOCKER_ENV_SECRET: &str = "DOCKER_ENV_SECRET_value_0043";
const REGISTRY_PASSWORD: &str = "REGISTRY_PASSWORD_secret_0044";
const WRONG_KEY: &str = "psl_WRONG_KEY_secret_0045";

#[tokio::test]
async fn logs_carry_ids_and_never_secrets_through_a_lifecycle() {
    let s = Server::start(Opts {
        boot_seconds: 0.5,
        env: vec![("PARASOL_LOG".into(), "debug".into())],
        ..Opts::default().args(&["--log-format", "json"])
    });
    let c = s.admin();
    let user_key = s.new_account("bob");
    let bob = s.client(&user_key);
    bob.add_key("bob-key").await;

    let mut body = default_create("secretive");
    body["envs"] = json!([{"name": "HF_TOKEN", "value": ENV_SECRET}]);
    body["launch_configuration"] = json!({
        "type": "docker",
        "docker_configuration": {
            "image": "registry.example.com/private/trainer:1",
            "envs": [{"name": "WANDB_API_KEY", "value": DOCKER_ENV_SECRET}],
            "registry_credentials": {"username": "robot", "password": REGISTRY_PASSWORD},
        },
    });
    let id = bob.post("/v1/instances/create", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    bob.wait_status(&id, "active").await;
    bob.post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect(200);
    bob.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    bob.wait_gone(&id).await;
    // A failing create echoes nothing of its body either.
    let mut bad = default_create("bad");
    bad["envs"] = json!([{"name": "", "value": ENV_SECRET}]);
    bob.post("/v1/instances/create", bad)
        .await
        .expect_error(400, "invalid_request");
    s.client(WRONG_KEY)
        .get("/v1/instances")
        .await
        .expect_error(401, "unauthorized");
    // A caller's request id is echoed and logged.
    let res = reqwest::Client::new()
        .get(format!("{}/v1/sshkeys", s.base))
        .header("X-API-KEY", ADMIN_KEY)
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-abc-123");
    let res = reqwest::get(format!("{}/healthz", s.base)).await.unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "{generated}");
    drop(c);

    let log = s.log();
    for secret in [
        ENV_SECRET,
        DOCKER_ENV_SECRET,
        REGISTRY_PASSWORD,
        WRONG_KEY,
        ADMIN_KEY,
        user_key.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret} was logged:\n{log}");
    }

    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    assert!(requests.len() >= 8, "{}", requests.len());
    for r in &requests {
        let f = &r["fields"];
        assert!(
            f["request_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{r}"
        );
        assert!(f["route"].is_string() && f["status"].is_u64(), "{r}");
    }
    // Authenticated requests name the account; the create names its route
    // and the instance routes carry the instance id in their path.
    let bob_id = requests
        .iter()
        .find(|r| r["fields"]["route"] == "/v1/instances/create")
        .unwrap()["fields"]["account"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(bob_id.len(), 36);
    assert!(requests.iter().any(|r| {
        r["fields"]["route"] == "/v1/instances/{id}/delete"
            && r["fields"]["path"].as_str().unwrap().contains(&id)
            && r["fields"]["account"] == bob_id.as_str()
    }));
    assert!(requests
        .iter()
        .any(|r| r["fields"]["request_id"] == "trace-abc-123"));
    assert!(requests
        .iter()
        .any(|r| r["fields"]["request_id"] == generated.as_str()));

    let transitions: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "transition")
        .collect();
    let mine: Vec<(&str, &str)> = transitions
        .iter()
        .filter(|t| t["fields"]["instance"] == id.as_str())
        .map(|t| {
            (
                t["fields"]["from"].as_str().unwrap(),
                t["fields"]["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(mine.contains(&("creating", "pending_provider")), "{mine:?}");
    assert!(mine.contains(&("deleting", "deleted")), "{mine:?}");
    for t in &transitions {
        assert!(
            t["fields"]["instance"]
                .as_str()
                .is_some_and(|s| s.len() == 36),
            "{t}"
        );
    }
}
