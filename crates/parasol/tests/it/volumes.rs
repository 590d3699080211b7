use serde_json::{json, Value};

use crate::harness::{default_create, Client, Opts, Server};

async fn create_volume(c: &Client, cloud: &str, region: &str, size: i64) -> String {
    c.post(
        "/v1/volumes/create",
        json!({"cloud": cloud, "region": region, "size_in_gb": size, "name": "data"}),
    )
    .await
    .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn volume_types_cover_the_clouds_with_prices_per_gb_hour() {
    let s = Server::start(Opts::default());
    let types = s.admin().get("/v1/volumes/types").await.expect(200);
    let types = types["volume_types"].as_array().unwrap();
    assert!(types.len() >= 8);
    assert!(types
        .iter()
        .any(|t| t["supports_multi_mount"] == true && t["fixed_size"] == false));
    assert!(types
        .iter()
        .any(|t| t["supports_multi_mount"] == false && t["fixed_size"] == true));
    for t in types {
        let p: f64 = t["price_per_gb_per_hour"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(p > 0.00005 && p < 0.001, "{t}");
    }
}

#[tokio::test]
async fn a_volume_is_created_listed_billed_and_deleted() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let c = s.admin();
    let id = create_volume(&c, "lambdalabs", "us-east-1", 1000).await;
    let v = c.get(&format!("/v1/volumes/{id}/info")).await.expect(200);
    assert_eq!(v["size_in_gb"], 1000);
    assert_eq!(v["supports_multi_mount"], true);
    assert_eq!(v["mounted_by"], "");
    assert_eq!(v["cost_estimate"], "0.00");
    // 1000 GB at $0.000274 per GB-hour for 10 hours: $2.74.
    c.post("/admin/clock/advance", json!({"seconds": 36000}))
        .await
        .expect(200);
    let v = c.get(&format!("/v1/volumes/{id}/info")).await.expect(200);
    assert_eq!(v["cost_estimate"], "2.74");
    assert_eq!(
        c.get("/v1/volumes").await.expect(200)["volumes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    c.post_empty(&format!("/v1/volumes/{id}/delete"))
        .await
        .expect(200);
    c.get(&format!("/v1/volumes/{id}/info"))
        .await
        .expect_error(404, "not_found");
    assert_eq!(c.get("/v1/volumes").await.expect(200)["volumes"], json!([]));
    // Another account never sees it.
    let other = s.client(&s.new_account("other"));
    let id2 = create_volume(&c, "lambdalabs", "us-east-1", 10).await;
    other
        .get(&format!("/v1/volumes/{id2}/info"))
        .await
        .expect_error(404, "not_found");
    other
        .post_empty(&format!("/v1/volumes/{id2}/delete"))
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn bad_volume_requests_name_the_field() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let base =
        json!({"cloud": "massedcompute", "region": "us-central-1", "size_in_gb": 100, "name": "v"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (with("size_in_gb", json!(0)), "size_in_gb"),
        (with("size_in_gb", json!(-5)), "size_in_gb"),
        (with("size_in_gb", json!(10_000_000)), "size_in_gb"),
        (with("size_in_gb", json!("big")), "size_in_gb"),
        (with("cloud", json!("nimbus")), "cloud"),
        (with("region", json!("atlantis")), "region"),
        (with("name", json!("")), "name"),
    ] {
        let e = c
            .post("/v1/volumes/create", body.clone())
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], field, "{body}: {e}");
    }
    assert_eq!(c.get("/v1/volumes").await.expect(200)["volumes"], json!([]));
}

#[tokio::test]
async fn mounting_follows_the_volume_rules() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let vol = create_volume(&c, "massedcompute", "us-central-1", 100).await;
    let mut body = default_create("mounter");
    body["volume_ids"] = json!([vol]);
    let inst = c
        .post("/v1/instances/create", body.clone())
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c
        .get(&format!("/v1/instances/{inst}/info"))
        .await
        .expect(200);
    assert_eq!(info["volume_ids"], json!([vol]));
    let v = c.get(&format!("/v1/volumes/{vol}/info")).await.expect(200);
    assert_eq!(v["mounted_by"], inst.as_str());

    // Single-mount: a second instance cannot take it.
    body["name"] = json!("second");
    let e = c
        .post("/v1/instances/create", body.clone())
        .await
        .expect_error(409, "conflict");
    assert_eq!(e["field"], "volume_ids");
    assert_eq!(
        c.get("/v1/instances").await.expect(200)["instances"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A mounted volume cannot be deleted.
    c.post_empty(&format!("/v1/volumes/{vol}/delete"))
        .await
        .expect_error(409, "conflict");

    // Wrong region, two volumes, unknown volume.
    let far = create_volume(&c, "massedcompute", "us-central-2", 100).await;
    let mut b = default_create("far");
    b["volume_ids"] = json!([far]);
    let e = c
        .post("/v1/instances/create", b.clone())
        .await
        .expect_error(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("region"), "{e}");
    b["volume_ids"] = json!([far, vol]);
    let e = c
        .post("/v1/instances/create", b.clone())
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "volume_ids");
    b["volume_ids"] = json!(["6f1f4b7c-0000-4000-8000-000000000000"]);
    c.post("/v1/instances/create", b)
        .await
        .expect_error(400, "invalid_request");

    // Deleting the instance frees the volume.
    c.post_empty(&format!("/v1/instances/{inst}/delete"))
        .await
        .expect(200);
    c.wait_gone(&inst).await;
    assert_eq!(
        c.get(&format!("/v1/volumes/{vol}/info")).await.expect(200)["mounted_by"],
        ""
    );
    c.post_empty(&format!("/v1/volumes/{vol}/delete"))
        .await
        .expect(200);
}

#[tokio::test]
async fn a_multi_mount_volume_is_shared_by_several_instances() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let types = c
        .get("/v1/instances/types?cloud=lambdalabs&region=us-east-1")
        .await
        .expect(200);
    let t = types["instance_types"][0]["shade_instance_type"]
        .as_str()
        .unwrap()
        .to_string();
    let vol = create_volume(&c, "lambdalabs", "us-east-1", 500).await;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let body = json!({"cloud": "lambdalabs", "region": "us-east-1", "shade_instance_type": t,
            "name": name, "volume_ids": [vol]});
        ids.push(
            c.post("/v1/instances/create", body).await.expect(200)["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let v = c.get(&format!("/v1/volumes/{vol}/info")).await.expect(200);
    assert_eq!(v["mounted_by"], ids[0].as_str());
}
