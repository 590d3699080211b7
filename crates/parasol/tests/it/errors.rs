use std::io::{Read, Write};

use serde_json::{json, Value};

use crate::harness::{default_create, Opts, Server, ADMIN_KEY};

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn docker() -> Value {
    json!({"type": "docker", "docker_configuration": {"image": "vllm/vllm-openai:latest"}})
}

fn script(b64: &str) -> Value {
    json!({"type": "script", "script_configuration": {"base64_script": b64}})
}

#[tokio::test]
async fn bad_creates_get_a_400_naming_the_problem_and_store_nothing() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let base = default_create("bad");
    let mut no_cloud = base.clone();
    no_cloud.as_object_mut().unwrap().remove("cloud");
    let both = json!({
        "type": "docker",
        "docker_configuration": {"image": "x"},
        "script_configuration": {"base64_script": "ZWNobyBoaQ=="}
    });
    let bad_port = json!({"type": "docker", "docker_configuration": {"image": "x", "port_mappings": [{"host_port": 70000, "container_port": 80}]}});
    let cases: Vec<(&str, Value, Option<&str>, &str)> = vec![
        ("missing field", no_cloud, None, "cloud"),
        (
            "wrong type",
            with(base.clone(), "name", json!(5)),
            Some("name"),
            "invalid type",
        ),
        (
            "unknown cloud",
            with(base.clone(), "cloud", json!("nimbus")),
            Some("cloud"),
            "known clouds",
        ),
        (
            "unknown type",
            with(base.clone(), "shade_instance_type", json!("Z9000")),
            Some("shade_instance_type"),
            "Z9000",
        ),
        (
            "region not offered",
            with(base.clone(), "region", json!("mars-1")),
            Some("region"),
            "available in",
        ),
        (
            "empty name",
            with(base.clone(), "name", json!("")),
            Some("name"),
            "empty",
        ),
        (
            "long name",
            with(base.clone(), "name", json!("n".repeat(300))),
            Some("name"),
            "longer",
        ),
        (
            "both configs",
            with(base.clone(), "launch_configuration", both),
            Some("launch_configuration"),
            "not both",
        ),
        (
            "docker without config",
            with(
                base.clone(),
                "launch_configuration",
                json!({"type": "docker"}),
            ),
            Some("launch_configuration.docker_configuration"),
            "missing",
        ),
        (
            "mismatched config",
            with(
                base.clone(),
                "launch_configuration",
                json!({"type": "script", "docker_configuration": {"image": "x"}}),
            ),
            Some("launch_configuration.script_configuration"),
            "missing",
        ),
        (
            "bad launch type",
            with(base.clone(), "launch_configuration", json!({"type": "vm"})),
            Some("launch_configuration.type"),
            "unknown variant",
        ),
        (
            "script not base64",
            with(base.clone(), "launch_configuration", script("not base64!")),
            Some("launch_configuration.script_configuration.base64_script"),
            "base64",
        ),
        (
            "port out of range",
            with(base.clone(), "launch_configuration", bad_port),
            Some("launch_configuration.docker_configuration.port_mappings[0].host_port"),
            "65535",
        ),
        (
            "bad date",
            with(
                base.clone(),
                "auto_delete",
                json!({"date_threshold": "next week"}),
            ),
            Some("auto_delete.date_threshold"),
            "RFC 3339",
        ),
        (
            "bad spend",
            with(base.clone(), "alert", json!({"spend_threshold": "-3"})),
            Some("alert.spend_threshold"),
            "dollar",
        ),
        (
            "bad os",
            with(base.clone(), "os", json!("windows95")),
            Some("os"),
            "choose one of",
        ),
        (
            "bad key id",
            with(base.clone(), "ssh_key_id", json!("not-a-uuid")),
            Some("ssh_key_id"),
            "uuid",
        ),
        (
            "unknown key",
            with(
                base.clone(),
                "ssh_key_id",
                json!("6f1f4b7c-0000-4000-8000-000000000000"),
            ),
            Some("ssh_key_id"),
            "no ssh key",
        ),
        (
            "bad rental type",
            with(base.clone(), "rental_type", json!("forever")),
            Some("rental_type"),
            "unknown variant",
        ),
        (
            "bad env name",
            with(
                base.clone(),
                "envs",
                json!([{"name": "1BAD", "value": "x"}]),
            ),
            Some("envs[0].name"),
            "letters",
        ),
    ];
    for (what, body, field, needle) in cases {
        let e = c
            .post("/v1/instances/create", body)
            .await
            .expect_error(400, "invalid_request");
        if let Some(f) = field {
            assert_eq!(e["field"], f, "{what}: {e}");
        }
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{what}: {e}"
        );
    }
    // A valid docker launch configuration is accepted and echoed.
    let ok = c
        .post(
            "/v1/instances/create",
            with(base.clone(), "launch_configuration", docker()),
        )
        .await
        .expect(200);
    let info = c
        .get(&format!(
            "/v1/instances/{}/info",
            ok["id"].as_str().unwrap()
        ))
        .await
        .expect(200);
    assert_eq!(info["launch_configuration"], docker());
    assert_eq!(
        c.get("/v1/instances").await.expect(200)["instances"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn malformed_empty_and_oversized_bodies_are_refused_with_json() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let e = c
        .post_raw("/v1/instances/create", b"{\"cloud\": ".to_vec())
        .await
        .expect_error(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("not valid JSON"));
    let e = c
        .post_raw("/v1/sshkeys/add", Vec::new())
        .await
        .expect_error(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("empty"));
    c.post_raw("/v1/instances/create", b"[1,2]".to_vec())
        .await
        .expect_error(400, "invalid_request");
    let mut big = b"{\"name\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 10));
    big.extend(b"\"}");
    c.post_raw("/v1/sshkeys/add", big)
        .await
        .expect_error(413, "payload_too_large");
    assert_eq!(
        c.get("/v1/sshkeys").await.expect(200)["ssh_keys"],
        json!([])
    );
}

#[tokio::test]
async fn unknown_ids_routes_methods_and_keys_get_json_errors() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    for path in [
        "/v1/instances/not-a-uuid/info",
        "/v1/instances/6f1f4b7c-0000-4000-8000-000000000000/info",
        "/v1/sshkeys/zzz/info",
        "/v1/nothing-here",
    ] {
        c.get(path).await.expect_error(404, "not_found");
    }
    for path in [
        "/v1/instances/not-a-uuid/delete",
        "/v1/instances/6f1f4b7c-0000-4000-8000-000000000000/restart",
    ] {
        c.post_empty(path).await.expect_error(404, "not_found");
    }
    c.get("/v1/instances/create")
        .await
        .expect_error(405, "method_not_allowed");
    c.anonymous()
        .get("/v1/instances")
        .await
        .expect_error(401, "unauthorized");
    c.anonymous()
        .get("/v1/instances/types")
        .await
        .expect_error(401, "unauthorized");
    s.client("psl_wrong")
        .get("/v1/instances")
        .await
        .expect_error(401, "unauthorized");
}

/// Raw HTTP/1.1, so the header spelling on the wire is exactly ours.
fn raw(addr: &str, request: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = String::new();
    stream.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn header_case_and_bodyless_json_posts_are_accepted() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let id = c.create_instance("raw").await;
    let addr = s.base.strip_prefix("http://").unwrap().to_string();
    let (status, head, body) = raw(
        &addr,
        &format!("GET /v1/instances HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/json"));
    let (status, _, _) = raw(
        &addr,
        &format!("GET /v1/instances HTTP/1.1\r\nHost: x\r\nx-Api-kEY: {ADMIN_KEY}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200);
    // A bodyless POST that still declares JSON.
    let (status, _, body) = raw(
        &addr,
        &format!(
            "POST /v1/instances/{id}/delete HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "deleting");
}
