use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fakes::digitalocean::{self as dof, DigitalOcean};
use crate::fakes::FakeServer;
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

/// Polls a volume until its `status` is `want`.
async fn wait_volume(c: &Client, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c.get(&format!("/v1/volumes/{id}/info")).await.expect(200);
        if v["status"] == want {
            return v;
        }
        assert!(Instant::now() < deadline, "never {want}: {v:#}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

fn do_opts(fake: &FakeServer<DigitalOcean>) -> Opts {
    Opts {
        env: vec![
            ("PARASOL_DIGITALOCEAN_TOKEN".into(), dof::TOKEN.to_string()),
            (
                "PARASOL_DIGITALOCEAN_URL".into(),
                format!("{}/v2", fake.url),
            ),
        ],
        ..Opts::default()
    }
}

#[tokio::test]
async fn the_sim_makes_its_volumes_and_deletes_them() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let id = create_volume(&c, "lambdalabs", "us-east-1", 100).await;
    let v = wait_volume(&c, &id, "available").await;
    let cloud_id = v["cloud_assigned_id"].as_str().unwrap();
    assert!(cloud_id.starts_with("vol-"), "{v}");
    assert!(v.get("status_details").is_none(), "{v}");
    c.post_empty(&format!("/v1/volumes/{id}/delete"))
        .await
        .expect(200);
    c.get(&format!("/v1/volumes/{id}/info"))
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn a_digitalocean_volume_is_made_mounted_and_deleted_at_digitalocean() {
    let fake = FakeServer::start(DigitalOcean::default()).await;
    let s = Server::start(do_opts(&fake));
    let c = s.admin();
    c.add_key("me").await;
    // The create answers at once; DigitalOcean's failures are retried
    // behind it, and the volume shows it is still being made.
    fake.faults(|f| {
        f.server_error.insert("POST /v2/volumes".into(), 2);
    });
    let vol = create_volume(&c, "digitalocean", "nyc2", 100).await;
    let early = c.get(&format!("/v1/volumes/{vol}/info")).await.expect(200);
    assert_eq!(early["status"], "creating", "{early}");
    assert_eq!(early["cloud_assigned_id"], "", "{early}");
    let v = wait_volume(&c, &vol, "available").await;
    assert_eq!(fake.requests_to("POST /v2/volumes").len(), 3);
    let at = fake.with(|f| f.volumes.clone());
    assert_eq!(at.len(), 1, "one block storage volume at DigitalOcean");
    assert_eq!(v["cloud_assigned_id"], at[0].id.as_str());
    assert!(
        at[0].name.starts_with("parasol-") && at[0].name.ends_with(&vol),
        "named with the deployment's marker: {}",
        at[0].name
    );
    assert_eq!((at[0].region.as_str(), at[0].size_gigabytes), ("nyc2", 100));
    assert_eq!(at[0].description, "data");

    // DigitalOcean's rule: a droplet of the volume's region.
    let e = c
        .post(
            "/v1/instances/create",
            json!({"cloud": "digitalocean", "region": "tor1", "shade_instance_type": "H100",
                   "shade_cloud": true, "name": "far", "volume_ids": [vol]}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "volume_ids[0]", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("mounts only on droplets in its own region"),
        "{e}"
    );
    let inst = c
        .post(
            "/v1/instances/create",
            json!({"cloud": "digitalocean", "region": "nyc2", "shade_instance_type": "H100",
                   "shade_cloud": true, "name": "mounter", "volume_ids": [vol]}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_status(&inst, "active").await;
    let creates = fake.requests_to("POST /v2/droplets");
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].body["volumes"], json!([at[0].id]));
    let droplet = fake.with(|f| f.droplets[0].id);
    assert_eq!(
        fake.with(|f| f.volumes[0].droplet_ids.clone()),
        vec![droplet]
    );

    c.post_empty(&format!("/v1/instances/{inst}/delete"))
        .await
        .expect(200);
    c.wait_gone(&inst).await;
    assert!(fake.with(|f| f.volumes[0].droplet_ids.is_empty()));
    c.post_empty(&format!("/v1/volumes/{vol}/delete"))
        .await
        .expect(200);
    let line = format!("DELETE /v2/volumes/{}", at[0].id);
    fake.wait_for("the volume's delete", |r| {
        r.iter().any(|r| r.line() == line)
    })
    .await;
    assert!(fake.with(|f| f.volumes.is_empty()));
}

#[tokio::test]
async fn a_volume_the_cloud_refuses_is_in_error_with_the_clouds_reason() {
    let fake = FakeServer::start(DigitalOcean {
        volume_limit: Some(0),
        ..DigitalOcean::default()
    })
    .await;
    let s = Server::start(do_opts(&fake));
    let c = s.admin();
    let vol = create_volume(&c, "digitalocean", "nyc2", 100).await;
    let v = wait_volume(&c, &vol, "error").await;
    let why = v["status_details"].as_str().unwrap();
    assert!(why.contains("volume limit"), "{v}");
    assert_eq!(v["cloud_assigned_id"], "");
    // Shadeform's fields are all still there.
    for field in [
        "id",
        "cloud",
        "cloud_assigned_id",
        "region",
        "name",
        "fixed_size",
        "size_in_gb",
        "cost_estimate",
        "supports_multi_mount",
        "mounted_by",
    ] {
        assert!(v.get(field).is_some(), "{field} missing: {v}");
    }
    let e = c
        .post(
            "/v1/instances/create",
            json!({"cloud": "digitalocean", "region": "nyc2", "shade_instance_type": "H100",
                   "shade_cloud": true, "name": "mounter", "volume_ids": [vol]}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "volume_ids[0]", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("volume limit"),
        "{e}"
    );
    c.post_empty(&format!("/v1/volumes/{vol}/delete"))
        .await
        .expect(200);
    assert!(fake.with(|f| f.volumes.is_empty()));
}

#[tokio::test]
async fn an_instance_created_with_a_volume_still_being_made_launches_once_it_is_made() {
    let fake = FakeServer::start(DigitalOcean::default()).await;
    let s = Server::start(do_opts(&fake));
    let c = s.admin();
    c.add_key("me").await;
    // DigitalOcean fails the first creates: the volume stays `creating`
    // for a few seconds of backoff.
    fake.faults(|f| {
        f.server_error.insert("POST /v2/volumes".into(), 2);
    });
    let vol = create_volume(&c, "digitalocean", "nyc2", 100).await;
    let inst = c
        .post(
            "/v1/instances/create",
            json!({"cloud": "digitalocean", "region": "nyc2", "shade_instance_type": "H100",
                   "shade_cloud": true, "name": "early", "volume_ids": [vol]}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let waiting = c
        .wait_instance(&inst, "waiting for its volume", |r| {
            r.body["status_details"]
                .as_str()
                .is_some_and(|d| d.starts_with("waiting for volume"))
        })
        .await;
    assert_eq!(waiting.body["status"], "creating", "{}", waiting.body);
    assert!(
        fake.requests_to("POST /v2/droplets").is_empty(),
        "no droplet before its volume"
    );
    c.wait_status(&inst, "active").await;
    let v = c.get(&format!("/v1/volumes/{vol}/info")).await.expect(200);
    assert_eq!(v["status"], "available");
    let creates = fake.requests_to("POST /v2/droplets");
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].body["volumes"], json!([v["cloud_assigned_id"]]));
}
