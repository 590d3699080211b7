//! Fields Shadeform's own documentation and clients read beyond the
//! document's schemas, each checked on the wire (every body here is also
//! validated against the unpatched document by the harness).

use serde_json::json;

use crate::harness::{default_create, Opts, Server};

#[tokio::test]
async fn error_bodies_carry_a_top_level_message() {
    let s = Server::start(Opts::default());
    let anon = s.admin().anonymous();
    let e = anon.get("/v1/instances").await.expect(401);
    assert_eq!(e["error"]["code"], "unauthorized");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    assert_eq!(e["message"], e["error"]["message"]);
    let bad = s
        .client("psl_wrong")
        .post("/v1/instances/create", json!({"cloud": 3}))
        .await
        .expect(401);
    assert_eq!(bad["message"], "the API key is not valid");
}

#[tokio::test]
async fn create_answers_cloud_assigned_id_and_info_has_os_and_template_id() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let created = c
        .post("/v1/instances/create", default_create("plain"))
        .await
        .expect(200);
    assert!(created["id"].is_string());
    assert!(created["cloud_assigned_id"].is_string(), "{created}");
    let id = created["id"].as_str().unwrap();
    let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
    assert_eq!(info["os"], info["configuration"]["os"], "{info}");
    assert_eq!(info["os"], "ubuntu22.04_cuda12.4_shade_os");
    assert!(info.get("template_id").is_none(), "{info}");

    let t = c
        .post("/v1/templates/save", json!({"name": "t1", "tags": ["x"]}))
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = default_create("from-template");
    body["template_id"] = json!(t);
    let id = c.post("/v1/instances/create", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
    assert_eq!(info["template_id"], t.as_str());
    let listed = c.get("/v1/instances").await.expect(200);
    let found = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .expect("listed");
    assert_eq!(found["template_id"], t.as_str());
    assert_eq!(found["os"], "ubuntu22.04_cuda12.4_shade_os");
}
