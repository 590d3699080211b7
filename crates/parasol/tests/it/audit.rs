//! The audit log: state-changing requests recorded with who, from where and
//! how it ended; admins read it with time filters; old entries expire.

use serde_json::{json, Value};

use crate::harness::{Opts, Server};

async fn audit(c: &crate::harness::Client, query: &str) -> Vec<Value> {
    c.get(&format!("/v1/admin/audit{query}")).await.expect(200)["entries"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_create_and_a_delete_are_audited_with_account_key_address_and_outcome() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let c = s.admin();
    let me = c.get("/v1/account").await.expect(200);
    let id = c.create_instance("audited").await;
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.post("/v1/instances/create", json!({"cloud": "nowhere"}))
        .await
        .expect(400);
    let entries = audit(&c, "").await;
    // Reads are not audited; newest first.
    assert!(entries.iter().all(|e| e["method"] != "GET"), "{entries:#?}");
    let routes: Vec<&str> = entries
        .iter()
        .map(|e| e["route"].as_str().unwrap())
        .collect();
    let statuses: Vec<i64> = entries
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        routes,
        [
            "/v1/instances/create",
            "/v1/instances/{id}/delete",
            "/v1/instances/create"
        ],
        "{entries:#?}"
    );
    assert_eq!(statuses, [400, 200, 200]);
    let create = entries
        .iter()
        .find(|e| e["route"] == "/v1/instances/create" && e["status"] == 200)
        .expect("the create");
    assert_eq!(create["object_id"], id.as_str());
    assert_eq!(create["outcome"], "ok");
    assert_eq!(create["account_id"], me["id"]);
    assert_eq!(create["client_addr"], "127.0.0.1");
    assert_eq!(create["key_id"].as_str().unwrap().len(), 12);
    assert!(!create["key_id"]
        .as_str()
        .unwrap()
        .contains(crate::harness::ADMIN_KEY));
    assert!(create["at"].is_string());
    let delete = entries
        .iter()
        .find(|e| e["route"] == "/v1/instances/{id}/delete")
        .expect("the delete");
    assert_eq!(delete["object_id"], id.as_str());
    assert_eq!(delete["outcome"], "ok");
    let rejected = entries
        .iter()
        .find(|e| e["status"] == 400)
        .expect("the bad create");
    assert_eq!(rejected["outcome"], "rejected");

    // A wrong key is audited as denied, without an account.
    s.client("psl_wrong")
        .post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(401);
    let entries = audit(&c, "").await;
    assert_eq!(entries[0]["outcome"], "denied");
    assert!(entries[0]["account_id"].is_null());

    // Time filters.
    assert!(audit(&c, "?since=2999-01-01T00:00:00Z").await.is_empty());
    assert!(audit(&c, "?until=2000-01-01T00:00:00Z").await.is_empty());
    assert_eq!(audit(&c, "?limit=1").await.len(), 1);
    let e = c
        .get("/v1/admin/audit?since=yesterday")
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "since");

    // Admins only. An account made with the CLI is audited too.
    let other = s.new_account("other");
    let made = &audit(&c, "").await[0];
    assert_eq!(made["route"], "parasol accounts create", "{made}");
    assert_eq!(made["key_id"].as_str().unwrap().len(), 12);
    s.client(&other)
        .get("/v1/admin/audit")
        .await
        .expect_error(403, "forbidden");

    // Past the retention (90 days by default) entries are gone.
    c.post("/admin/clock/advance", json!({"seconds": 91 * 86_400}))
        .await
        .expect(200);
    let left = audit(&c, "").await;
    assert!(
        left.iter().all(|e| e["route"] == "/admin/clock/advance"),
        "{left:#?}"
    );
}
