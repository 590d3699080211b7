use serde_json::{json, Value};

use crate::harness::{default_create, Client, Opts, Server};

/// A template using every field the save request has.
fn full_template(name: &str) -> Value {
    json!({
        "name": name,
        "description": "serves a model\nwith vLLM",
        "public": false,
        "launch_configuration": {
            "type": "docker",
            "docker_configuration": {
                "image": "vllm/vllm-openai:latest",
                "args": "--model Qwen/Qwen2.5-0.5B-Instruct",
                "shared_memory_in_gb": 8,
                "port_mappings": [{"host_port": 8000, "container_port": 8000}],
                "envs": [{"name": "VLLM_LOGGING_LEVEL", "value": "INFO"}]
            }
        },
        "auto_delete": {"spend_threshold": "25.00"},
        "alert": {"date_threshold": "2030-01-02T03:04:05Z", "spend_threshold": "10"},
        "volume_mount": {"auto": true},
        "tags": ["ml", "vllm"],
        "envs": [{"name": "HF_TOKEN", "value": ""}, {"name": "MODEL_DIR", "value": "/models"}],
        "networking": {"ufw_rules": [
            {"rule": "allow", "port": "22", "proto": "tcp"},
            {"rule": "allow", "from_ip": "203.0.113.0/24", "port": "8000:8010", "proto": "tcp"},
            {"rule": "deny", "from_ip": "2001:db8::/32", "to_ip": "2001:db8:1::1", "proto": null}
        ]}
    })
}

async fn save(c: &Client, body: Value) -> String {
    c.post("/v1/templates/save", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn list(c: &Client) -> Vec<Value> {
    c.get("/v1/templates").await.expect(200)["templates"]
        .as_array()
        .unwrap()
        .clone()
}

async fn featured(c: &Client) -> Vec<Value> {
    c.get("/v1/templates/featured").await.expect(200)["templates"]
        .as_array()
        .unwrap()
        .clone()
}

async fn instance_count(c: &Client) -> usize {
    c.get("/v1/instances").await.expect(200)["instances"]
        .as_array()
        .unwrap()
        .len()
}

/// `body` with the fields of `extra` set on it.
fn with(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn a_template_is_saved_listed_read_replaced_and_deleted() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    assert!(list(&c).await.is_empty());
    let sent = full_template("vllm small");
    let id = save(&c, sent.clone()).await;

    let info = c.get(&format!("/v1/templates/{id}/info")).await.expect(200);
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["author"], "admin");
    for field in [
        "name",
        "description",
        "public",
        "launch_configuration",
        "auto_delete",
        "alert",
        "volume_mount",
        "tags",
        "envs",
    ] {
        assert_eq!(info[field], sent[field], "{field}");
    }
    // A null field of a rule reads back as absent: the same rule.
    assert_eq!(
        info["networking"]["ufw_rules"][2],
        json!({"rule": "deny", "from_ip": "2001:db8::/32", "to_ip": "2001:db8:1::1"})
    );
    assert_eq!(
        info["networking"]["ufw_rules"][1],
        sent["networking"]["ufw_rules"][1]
    );
    assert_eq!(list(&c).await, vec![info.clone()]);

    // Update replaces the whole template: what the body leaves out is gone.
    let r = c
        .post(
            &format!("/v1/templates/{id}/update"),
            json!({"name": "renamed", "tags": ["new"], "public": true}),
        )
        .await
        .expect(200);
    assert_eq!(r["id"], id.as_str());
    let info = c.get(&format!("/v1/templates/{id}/info")).await.expect(200);
    assert_eq!(
        info,
        json!({"id": id, "name": "renamed", "author": "admin", "public": true,
               "tags": ["new"], "envs": []})
    );

    let second = save(&c, json!({"name": "second"})).await;
    let ids: Vec<Value> = list(&c).await.iter().map(|t| t["id"].clone()).collect();
    assert_eq!(ids, vec![json!(id), json!(second)], "oldest first");

    c.post_empty(&format!("/v1/templates/{id}/delete"))
        .await
        .expect(200);
    c.get(&format!("/v1/templates/{id}/info"))
        .await
        .expect_error(404, "not_found");
    c.post_empty(&format!("/v1/templates/{id}/delete"))
        .await
        .expect_error(404, "not_found");
    c.post(
        &format!("/v1/templates/{id}/update"),
        json!({"name": "back"}),
    )
    .await
    .expect_error(404, "not_found");
    let left: Vec<Value> = list(&c).await.iter().map(|t| t["id"].clone()).collect();
    assert_eq!(left, vec![json!(second)]);
    c.get("/v1/templates/not-a-uuid/info")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn templates_outlive_a_server_restart() {
    let mut s = Server::start(Opts::default());
    let id = save(&s.admin(), full_template("kept")).await;
    let before = s
        .admin()
        .get(&format!("/v1/templates/{id}/info"))
        .await
        .expect(200);
    s.restart();
    let after = s
        .admin()
        .get(&format!("/v1/templates/{id}/info"))
        .await
        .expect(200);
    assert_eq!(before, after);
}

#[tokio::test]
async fn featured_templates_are_complete_readable_by_every_account_and_read_only() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let bob = s.client(&s.new_account("bob"));
    let all = featured(&bob).await;
    assert!(all.len() >= 5, "{all:#?}");
    for t in &all {
        let id = t["id"].as_str().unwrap();
        assert!(!t["name"].as_str().unwrap().is_empty());
        assert!(t["launch_configuration"]["type"].is_string(), "{t}");
        let rules = t["networking"]["ufw_rules"].as_array().unwrap();
        assert!(
            rules.contains(&json!({"rule": "allow", "port": "22", "proto": "tcp"})),
            "SSH stays open: {t}"
        );
        for c in [&admin, &bob] {
            assert_eq!(
                &c.get(&format!("/v1/templates/{id}/info")).await.expect(200),
                t
            );
            c.post(
                &format!("/v1/templates/{id}/update"),
                json!({"name": "mine"}),
            )
            .await
            .expect_error(403, "forbidden");
            c.post_empty(&format!("/v1/templates/{id}/delete"))
                .await
                .expect_error(403, "forbidden");
        }
    }
    // Still there, unchanged; and not among anyone's own templates.
    assert_eq!(featured(&admin).await, all);
    assert!(list(&admin).await.is_empty());

    let by_image = |image: &str| {
        all.iter()
            .find(|t| {
                t["launch_configuration"]["docker_configuration"]["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with(image))
            })
            .unwrap_or_else(|| panic!("no featured template runs {image}"))
            .clone()
    };
    let vllm = by_image("vllm/vllm-openai");
    let dc = &vllm["launch_configuration"]["docker_configuration"];
    assert!(dc["args"].as_str().unwrap().starts_with("--model "));
    assert_eq!(
        dc["port_mappings"],
        json!([{"host_port": 8000, "container_port": 8000}])
    );
    assert!(dc["shared_memory_in_gb"].as_i64().unwrap() > 0);
    assert!(vllm["envs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "HF_TOKEN"));
    let jupyter = by_image("quay.io/jupyter/pytorch-notebook");
    assert_eq!(
        jupyter["launch_configuration"]["docker_configuration"]["port_mappings"][0]["host_port"],
        8888
    );
    let ollama = by_image("ollama/ollama");
    assert_eq!(
        ollama["launch_configuration"]["docker_configuration"]["port_mappings"],
        json!([{"host_port": 11434, "container_port": 11434}])
    );
    assert!(all
        .iter()
        .any(|t| t["launch_configuration"]["type"] == "script"));
}

#[tokio::test]
async fn every_featured_template_launches_an_instance_that_echoes_its_settings() {
    let s = Server::start(Opts::default());
    let c = s.client(&s.new_account("carol"));
    for t in featured(&c).await {
        let body = with(
            default_create("from-featured"),
            json!({"template_id": t["id"]}),
        );
        let id = c.post("/v1/instances/create", body).await.expect(200)["id"]
            .as_str()
            .unwrap()
            .to_string();
        let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
        assert_eq!(
            info["launch_configuration"], t["launch_configuration"],
            "{}",
            t["name"]
        );
        assert_eq!(info["tags"], t["tags"], "{}", t["name"]);
        assert_eq!(info["envs"], t["envs"], "{}", t["name"]);
    }
    c.wait_status(
        c.get("/v1/instances").await.expect(200)["instances"][0]["id"]
            .as_str()
            .unwrap(),
        "active",
    )
    .await;
}

#[tokio::test]
async fn fields_given_on_create_override_the_templates() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let id = save(&c, full_template("base")).await;

    // Only the template: everything comes from it.
    let plain = c
        .post(
            "/v1/instances/create",
            with(default_create("plain"), json!({"template_id": id})),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c
        .get(&format!("/v1/instances/{plain}/info"))
        .await
        .expect(200);
    let t = full_template("base");
    for field in [
        "launch_configuration",
        "auto_delete",
        "alert",
        "volume_mount",
        "tags",
        "envs",
    ] {
        assert_eq!(info[field], t[field], "{field}");
    }

    // The request's fields win; envs merge by name.
    let script =
        json!({"type": "script", "script_configuration": {"base64_script": "ZWNobyBoaQo="}});
    let body = with(
        default_create("overridden"),
        json!({
            "template_id": id,
            "launch_configuration": script,
            "tags": ["mine"],
            "alert": {"spend_threshold": "1.50"},
            "envs": [{"name": "HF_TOKEN", "value": "hf_abc"}, {"name": "EXTRA", "value": "1"}]
        }),
    );
    let over = c.post("/v1/instances/create", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c
        .get(&format!("/v1/instances/{over}/info"))
        .await
        .expect(200);
    assert_eq!(info["launch_configuration"], script);
    assert_eq!(info["tags"], json!(["mine"]));
    assert_eq!(info["alert"], json!({"spend_threshold": "1.50"}));
    assert_eq!(
        info["auto_delete"], t["auto_delete"],
        "kept from the template"
    );
    assert_eq!(
        info["volume_mount"], t["volume_mount"],
        "kept from the template"
    );
    assert_eq!(
        info["envs"],
        json!([
            {"name": "MODEL_DIR", "value": "/models"},
            {"name": "HF_TOKEN", "value": "hf_abc"},
            {"name": "EXTRA", "value": "1"}
        ])
    );

    // The merged request is validated: a bad override is refused, naming it.
    let body = with(
        default_create("bad-override"),
        json!({"template_id": id, "tags": [""]}),
    );
    let e = c
        .post("/v1/instances/create", body)
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "tags[0]");
    assert_eq!(instance_count(&c).await, 2);
}

#[tokio::test]
async fn unknown_template_ids_on_create_are_refused_naming_template_id() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    for bad in [json!(uuid::Uuid::new_v4().to_string()), json!("not-a-uuid")] {
        let e = c
            .post(
                "/v1/instances/create",
                with(default_create("x"), json!({"template_id": bad})),
            )
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], "template_id", "{bad}");
    }
    // A deleted template is unknown too.
    let id = save(&c, json!({"name": "gone"})).await;
    c.post_empty(&format!("/v1/templates/{id}/delete"))
        .await
        .expect(200);
    let e = c
        .post(
            "/v1/instances/create",
            with(default_create("x"), json!({"template_id": id})),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "template_id");
    assert_eq!(instance_count(&c).await, 0);
}

#[tokio::test]
async fn public_templates_are_readable_but_not_writable_and_private_ones_invisible_to_others() {
    let s = Server::start(Opts::default());
    let alice = s.client(&s.new_account("alice"));
    let bob = s.client(&s.new_account("bob"));
    let public = save(
        &alice,
        with(full_template("shared"), json!({"public": true})),
    )
    .await;
    let private = save(&alice, full_template("mine")).await;
    let public_before = alice
        .get(&format!("/v1/templates/{public}/info"))
        .await
        .expect(200);
    let private_before = alice
        .get(&format!("/v1/templates/{private}/info"))
        .await
        .expect(200);

    assert_eq!(
        bob.get(&format!("/v1/templates/{public}/info"))
            .await
            .expect(200),
        public_before
    );
    assert_eq!(public_before["author"], "alice");
    bob.get(&format!("/v1/templates/{private}/info"))
        .await
        .expect_error(404, "not_found");
    bob.post(
        &format!("/v1/templates/{public}/update"),
        json!({"name": "hijacked"}),
    )
    .await
    .expect_error(403, "forbidden");
    bob.post_empty(&format!("/v1/templates/{public}/delete"))
        .await
        .expect_error(403, "forbidden");
    bob.post(
        &format!("/v1/templates/{private}/update"),
        json!({"name": "hijacked"}),
    )
    .await
    .expect_error(404, "not_found");
    bob.post_empty(&format!("/v1/templates/{private}/delete"))
        .await
        .expect_error(404, "not_found");
    // Others' public templates are not in one's own list.
    assert!(list(&bob).await.is_empty());

    // Bob can launch from the public one, not from the private one.
    let id = bob
        .post(
            "/v1/instances/create",
            with(default_create("borrowed"), json!({"template_id": public})),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = bob
        .get(&format!("/v1/instances/{id}/info"))
        .await
        .expect(200);
    assert_eq!(
        info["launch_configuration"],
        public_before["launch_configuration"]
    );
    let e = bob
        .post(
            "/v1/instances/create",
            with(default_create("stolen"), json!({"template_id": private})),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "template_id");

    // Nothing Bob tried changed Alice's templates.
    assert_eq!(list(&alice).await, vec![public_before, private_before]);

    // Made private again, it disappears for Bob.
    alice
        .post(
            &format!("/v1/templates/{public}/update"),
            json!({"name": "shared no more"}),
        )
        .await
        .expect(200);
    bob.get(&format!("/v1/templates/{public}/info"))
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn bad_ufw_rules_are_refused_naming_the_rule_field_and_nothing_is_stored() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let cases = [
        (json!({"port": "22"}), "rule"),
        (json!({"rule": "reject", "port": "22"}), "rule"),
        (json!({"rule": "ALLOW", "port": "22"}), "rule"),
        (json!({"rule": "allow", "from_ip": "10.0.0.256"}), "from_ip"),
        (
            json!({"rule": "allow", "from_ip": "10.0.0.0/33"}),
            "from_ip",
        ),
        (json!({"rule": "allow", "from_ip": "any"}), "from_ip"),
        (
            json!({"rule": "allow", "from_ip": "example.com"}),
            "from_ip",
        ),
        (json!({"rule": "allow", "to_ip": "2001:db8::/129"}), "to_ip"),
        (json!({"rule": "allow", "to_ip": "10.0.0.1/"}), "to_ip"),
        (
            json!({"rule": "allow", "from_ip": "10.0.0.0/8", "to_ip": "::1"}),
            "to_ip",
        ),
        (json!({"rule": "allow", "port": "0"}), "port"),
        (json!({"rule": "allow", "port": "65536"}), "port"),
        (json!({"rule": "allow", "port": "http"}), "port"),
        (json!({"rule": "allow", "port": "80,443"}), "port"),
        (
            json!({"rule": "allow", "port": "9000:8000", "proto": "tcp"}),
            "port",
        ),
        (
            json!({"rule": "allow", "port": "8000:", "proto": "tcp"}),
            "port",
        ),
        (json!({"rule": "allow", "port": "8000:9000"}), "proto"),
        (
            json!({"rule": "allow", "port": "22", "proto": "icmp"}),
            "proto",
        ),
        (
            json!({"rule": "allow", "port": "22", "proto": "TCP"}),
            "proto",
        ),
    ];
    for (rule, field) in cases {
        let body = json!({"name": "fw", "networking": {"ufw_rules": [
            {"rule": "allow", "port": "22", "proto": "tcp"},
            rule
        ]}});
        let e = c
            .post("/v1/templates/save", body)
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(
            e["field"],
            format!("networking.ufw_rules[1].{field}"),
            "{rule}: {e}"
        );
    }
    assert!(list(&c).await.is_empty());

    // The same rules are refused on update, leaving the template as it was.
    let id = save(&c, full_template("fw")).await;
    let before = c.get(&format!("/v1/templates/{id}/info")).await.expect(200);
    let e = c
        .post(
            &format!("/v1/templates/{id}/update"),
            json!({"name": "fw2", "networking": {"ufw_rules": [{"rule": "allow", "port": "99999"}]}}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "networking.ufw_rules[0].port");
    assert_eq!(
        c.get(&format!("/v1/templates/{id}/info")).await.expect(200),
        before
    );
}

#[tokio::test]
async fn other_bad_template_input_is_refused_naming_the_field_and_nothing_is_stored() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(256)}), "name"),
        (json!({"description": "a\u{7}b"}), "description"),
        (json!({"public": "yes"}), "public"),
        (
            json!({"launch_configuration": {"type": "docker"}}),
            "launch_configuration.docker_configuration",
        ),
        (
            json!({"launch_configuration": {"type": "vm"}}),
            "launch_configuration.type",
        ),
        (
            json!({"launch_configuration": {"type": "docker", "docker_configuration": {
                "image": "x", "port_mappings": [{"host_port": 70000, "container_port": 80}]}}}),
            "launch_configuration.docker_configuration.port_mappings[0].host_port",
        ),
        (
            json!({"launch_configuration": {"type": "script",
                "script_configuration": {"base64_script": "%%%"}}}),
            "launch_configuration.script_configuration.base64_script",
        ),
        (
            json!({"envs": [{"name": "1BAD", "value": "x"}]}),
            "envs[0].name",
        ),
        (
            json!({"envs": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
            "envs[1].name",
        ),
        (json!({"tags": ["ok", " "]}), "tags[1]"),
        (
            json!({"auto_delete": {"date_threshold": "tomorrow"}}),
            "auto_delete.date_threshold",
        ),
        (
            json!({"alert": {"spend_threshold": "-5"}}),
            "alert.spend_threshold",
        ),
        (
            json!({"networking": {"ufw_rules": "allow 22"}}),
            "networking.ufw_rules",
        ),
    ];
    let id = save(&c, full_template("kept")).await;
    let before = c.get(&format!("/v1/templates/{id}/info")).await.expect(200);
    for (extra, field) in cases {
        let body = with(json!({"name": "t"}), extra.clone());
        for path in [
            "/v1/templates/save".to_string(),
            format!("/v1/templates/{id}/update"),
        ] {
            let e = c
                .post(&path, body.clone())
                .await
                .expect_error(400, "invalid_request");
            assert_eq!(e["field"], field, "{path} {extra}: {e}");
        }
    }
    // No name at all.
    let e = c
        .post("/v1/templates/save", json!({"tags": ["x"]}))
        .await
        .expect_error(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("name"), "{e}");
    assert_eq!(list(&c).await, vec![before]);
}
