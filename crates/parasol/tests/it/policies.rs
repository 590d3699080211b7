//! Idle and health policies (issue 26) on the backend
//! PARASOL_TEST_BACKEND names: an account's idle policy that a create may
//! tighten but not loosen, the health route and the fleet gauges.

use serde_json::{json, Value};

use crate::harness::{default_create, Client, Opts, Server};

fn create_with(name: &str, extra: Value) -> Value {
    let mut body = default_create(name);
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

async fn account_id(c: &Client) -> String {
    c.get("/v1/account").await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_account_idle_policy_binds_creates_which_may_tighten_but_not_loosen_it() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let user = s.client(&s.new_account("bound"));
    let id = account_id(&user).await;
    let policy = json!({"max_gpu_utilization_percent": 10, "minutes": 30,
                        "count_ssh_sessions": true, "action": "delete"});

    // Bad numbers are refused naming the field; admins only.
    let err = admin
        .post(
            &format!("/v1/admin/accounts/{id}/update"),
            json!({"idle_policy": {"minutes": 0}}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "idle_policy.minutes", "{err}");
    user.post(
        &format!("/v1/admin/accounts/{id}/update"),
        json!({"idle_policy": policy}),
    )
    .await
    .expect_error(403, "forbidden");
    let set = admin
        .post(
            &format!("/v1/admin/accounts/{id}/update"),
            json!({"idle_policy": policy}),
        )
        .await
        .expect(200);
    assert_eq!(set["idle_policy"], policy, "{set}");

    // Without a policy of its own, an instance gets the account's.
    let made = user
        .post("/v1/instances/create", default_create("plain"))
        .await
        .expect(200);
    let info = user
        .get(&format!(
            "/v1/instances/{}/info",
            made["id"].as_str().unwrap()
        ))
        .await
        .expect(200);
    assert_eq!(info["idle_policy"], policy, "{info}");

    // Tighter in every respect: sooner, at a higher threshold, SSH
    // sessions ignored.
    let tight = json!({"max_gpu_utilization_percent": 20, "minutes": 5,
                       "count_ssh_sessions": false, "action": "delete"});
    let made = user
        .post(
            "/v1/instances/create",
            create_with("tight", json!({"idle_policy": tight})),
        )
        .await
        .expect(200);
    let info = user
        .get(&format!(
            "/v1/instances/{}/info",
            made["id"].as_str().unwrap()
        ))
        .await
        .expect(200);
    assert_eq!(info["idle_policy"], tight, "{info}");

    // Each way of loosening it is a 400 naming the account's policy.
    for (loose, what) in [
        (json!({"minutes": 60, "action": "delete"}), "minutes"),
        (
            json!({"minutes": 30, "max_gpu_utilization_percent": 1, "action": "delete"}),
            "max_gpu_utilization_percent",
        ),
        (
            json!({"minutes": 30, "max_gpu_utilization_percent": 10, "action": "alert"}),
            "action",
        ),
    ] {
        let err = user
            .post(
                "/v1/instances/create",
                create_with("loose", json!({"idle_policy": loose})),
            )
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(err["field"], "idle_policy", "{err}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("account's idle policy"), "{message}");
        assert!(message.contains("minutes: 30"), "{message}");
        assert!(message.contains(what), "{message}");
    }
    // Removing it is refused too, on create and on launch.
    let err = user
        .post(
            "/v1/instances/create",
            create_with("none", json!({"idle_policy": null})),
        )
        .await
        .expect_error(400, "invalid_request");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("cannot be removed"),
        "{err}"
    );
    let err = user
        .post(
            "/v1/instances/launch",
            json!({"requirements": {"gpu_type": "A6000"},
                   "idle_policy": {"minutes": 90, "action": "delete"}}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "idle_policy", "{err}");
    // A template cannot carry a looser policy past it either.
    let t = user
        .post(
            "/v1/templates/save",
            json!({"name": "lax", "idle_policy": {"minutes": 600, "action": "alert"}}),
        )
        .await
        .expect(200);
    let err = user
        .post(
            "/v1/instances/create",
            create_with("from-template", json!({"template_id": t["id"]})),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "idle_policy", "{err}");

    // Once the admin removes it, the same request is accepted.
    admin
        .post(
            &format!("/v1/admin/accounts/{id}/update"),
            json!({"idle_policy": null}),
        )
        .await
        .expect(200);
    user.post(
        "/v1/instances/create",
        create_with("free", json!({"idle_policy": null})),
    )
    .await
    .expect(200);
    // Other accounts were never bound.
    admin
        .post(
            "/v1/instances/create",
            create_with("other", json!({"idle_policy": {"minutes": 600}})),
        )
        .await
        .expect(200);
}

#[tokio::test]
async fn policies_ride_on_templates_and_launches_and_bad_ones_name_their_field() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let policy = json!({"max_gpu_utilization_percent": 5, "minutes": 15,
                        "count_ssh_sessions": true, "action": "alert"});
    let t = c
        .post(
            "/v1/templates/save",
            json!({"name": "watched", "idle_policy": policy, "on_unhealthy": "replace"}),
        )
        .await
        .expect(200);
    let info = c
        .get(&format!("/v1/templates/{}/info", t["id"].as_str().unwrap()))
        .await
        .expect(200);
    assert_eq!(info["idle_policy"], policy, "{info}");
    let made = c
        .post(
            "/v1/instances/create",
            create_with("from-template", json!({"template_id": t["id"]})),
        )
        .await
        .expect(200);
    let info = c
        .get(&format!(
            "/v1/instances/{}/info",
            made["id"].as_str().unwrap()
        ))
        .await
        .expect(200);
    assert_eq!(info["idle_policy"], policy, "{info}");
    assert_eq!(info["on_unhealthy"], "replace", "{info}");

    let launched = c
        .post(
            "/v1/instances/launch",
            json!({"requirements": {"gpu_type": "A6000"},
                   "idle_policy": {"minutes": 3, "action": "delete"},
                   "on_unhealthy": "alert"}),
        )
        .await
        .expect(200);
    let info = c
        .get(&format!(
            "/v1/instances/{}/info",
            launched["id"].as_str().unwrap()
        ))
        .await
        .expect(200);
    assert_eq!(info["idle_policy"]["minutes"], 3, "{info}");
    assert_eq!(info["idle_policy"]["max_gpu_utilization_percent"], 5);
    assert_eq!(info["on_unhealthy"], "alert");

    for (body, field) in [
        (
            json!({"idle_policy": {"minutes": 0}}),
            "idle_policy.minutes",
        ),
        (
            json!({"idle_policy": {"minutes": 5, "max_gpu_utilization_percent": 101}}),
            "idle_policy.max_gpu_utilization_percent",
        ),
    ] {
        let err = c
            .post("/v1/instances/create", create_with("bad", body.clone()))
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(err["field"], field, "{err}");
        let mut t = body.clone();
        t["name"] = json!("bad");
        let err = c
            .post("/v1/templates/save", t)
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(err["field"], field, "{err}");
    }
    let err = c
        .post(
            "/v1/instances/create",
            create_with("bad", json!({"on_unhealthy": "reboot"})),
        )
        .await;
    assert_eq!(err.status, 400, "{:?}", err.body);
    let err = c
        .post(
            "/v1/instances/create",
            create_with("bad", json!({"idle_policy": {"minutes": 5, "minute": 3}})),
        )
        .await;
    assert_eq!(err.status, 400, "{:?}", err.body);
}
