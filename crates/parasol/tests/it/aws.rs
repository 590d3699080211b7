//! The `aws` cloud end to end: the server binary talks to moto's EC2
//! server (through a recording, fault-injecting proxy), and the tests drive
//! Parasol's API and look at what moto holds.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::fakes::aws_proxy::{Fault, Proxy};
use crate::fakes::moto::{self, Moto};
use crate::harness::{public_key, Client, Opts, Server};

const REGION: &str = "us-east-1";

/// moto, the proxy in front of it, and a server pointed at the proxy.
struct World {
    moto: Moto,
    proxy: Proxy,
    server: Server,
}

fn aws_env(proxy: &Proxy) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "AKIDPARASOLTEST"),
        ("AWS_SECRET_ACCESS_KEY", "parasol-test-secret-value"),
        ("AWS_ENDPOINT_URL_EC2", proxy.url.as_str()),
        ("PARASOL_AWS_REGIONS", REGION),
        ("PARASOL_ORPHAN_SWEEP_SECONDS", "1"),
        // Active machines are checked every second, so a machine AWS
        // takes away is noticed within a test.
        ("PARASOL_ACTIVE_CHECK_SECONDS", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn world_with(before_start: impl FnOnce(&Proxy)) -> World {
    let moto = moto::start();
    let proxy = Proxy::start(&moto.url);
    before_start(&proxy);
    let server = Server::start(Opts {
        env: aws_env(&proxy),
        ..Opts::default()
    });
    World {
        moto,
        proxy,
        server,
    }
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn types(c: &Client) -> Vec<Value> {
    c.get("/v1/instances/types?cloud=aws").await.expect(200)["instance_types"]
        .as_array()
        .unwrap()
        .clone()
}

async fn create(c: &Client, shade: &str, extra: Value) -> String {
    let key = c.add_key("k").await;
    let mut body = json!({"cloud": "aws", "region": REGION, "shade_instance_type": shade,
                          "shade_cloud": true, "name": "box", "ssh_key_id": key});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    c.post("/v1/instances/create", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The single live machine moto holds for Parasol's instance `id`.
async fn one_machine(m: &Moto, id: &str) -> crate::fakes::moto::Xml {
    let live: Vec<_> = m
        .tagged(REGION, id)
        .await
        .into_iter()
        .filter(|i| !matches!(moto::state(i), "terminated" | "shutting-down"))
        .collect();
    assert_eq!(live.len(), 1, "machines for {id}: {live:#?}");
    live[0].clone()
}

#[tokio::test]
async fn the_catalog_lists_p5_as_h100x8_with_the_shipped_price_and_spot_and_gp3() {
    let w = world().await;
    let c = w.server.admin();
    let all = types(&c).await;
    let h100 = all
        .iter()
        .find(|t| t["shade_instance_type"] == "H100x8")
        .unwrap_or_else(|| panic!("no H100x8 in {all:#?}"));
    assert_eq!(h100["cloud_instance_type"], "p5.48xlarge");
    assert_eq!(h100["hourly_price"], 5504);
    let cfg = &h100["configuration"];
    assert_eq!(cfg["num_gpus"], 8);
    assert_eq!(cfg["vcpus"], 192);
    assert_eq!(cfg["memory_in_gb"], 2048);
    assert_eq!(cfg["vram_per_gpu_in_gb"], 80);
    assert_eq!(cfg["nvlink"], true);
    let av = h100["availability"].as_array().unwrap();
    assert!(
        av.iter().any(|a| a["region"] == REGION
            && a["rental_type"] == "on_demand"
            && a["available"] == true),
        "{av:#?}"
    );
    // moto's spot price is a constant $0.00001: shown as the least cent.
    assert!(
        av.iter()
            .any(|a| a["rental_type"] == "spot" && a["hourly_price"] == "0.01"),
        "{av:#?}"
    );
    for (shade, aws_type) in [
        ("A10Gx4", "g5.12xlarge"),
        ("L4", "g6.xlarge"),
        ("L40Sx8", "g6e.48xlarge"),
        ("T4", "g4dn.xlarge"),
    ] {
        let t = all
            .iter()
            .find(|t| t["shade_instance_type"] == shade)
            .unwrap_or_else(|| panic!("no {shade}"));
        assert_eq!(t["cloud_instance_type"], aws_type, "{shade}");
    }
    // No non-GPU type, and p5e (no on-demand price) is not offered.
    assert!(all
        .iter()
        .all(|t| t["configuration"]["num_gpus"].as_i64().unwrap() > 0));
    assert!(all
        .iter()
        .all(|t| t["cloud_instance_type"] != "p5e.48xlarge"));

    let vt = c.get("/v1/volumes/types").await.expect(200);
    let gp3 = vt["volume_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["cloud"] == "aws")
        .cloned()
        .expect("an aws volume type");
    assert_eq!(gp3["region"], REGION);
    assert_eq!(gp3["price_per_gb_per_hour"], "0.000110");

    let described = w.proxy.requests_for("DescribeInstanceTypeOfferings");
    assert!(!described.is_empty());
    assert_eq!(
        described[0].param("LocationType"),
        Some("availability-zone")
    );
}

/// Defect 6: one offer per shape (the cheapest) left g6.2xlarge to
/// g6.16xlarge, g5.24xlarge and both gr6 types unrentable.
#[tokio::test]
async fn every_priced_gpu_type_is_offered_under_its_own_stable_name() {
    use parasol::providers::clouds::aws::catalog::US_PRICES;
    let w = world().await;
    let c = w.server.admin();
    let all = types(&c).await;
    let by_type = |aws: &str| -> Vec<&Value> {
        all.iter()
            .filter(|t| t["cloud_instance_type"] == aws)
            .collect()
    };
    // moto lists every priced type but p5e (no on-demand price) in
    // us-east-1, each exactly once.
    for (aws, _) in US_PRICES {
        assert_eq!(by_type(aws).len(), 1, "{aws} offered once");
    }
    let names: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|t| t["shade_instance_type"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), all.len(), "every name is unique: {names:?}");
    for (aws, shade) in [
        ("g6.xlarge", "L4"),
        ("g6.2xlarge", "L4_g6.2xlarge"),
        ("g6.16xlarge", "L4_g6.16xlarge"),
        ("gr6.4xlarge", "L4_gr6.4xlarge"),
        ("gr6.8xlarge", "L4_gr6.8xlarge"),
        ("g6.12xlarge", "L4x4"),
        ("g6.24xlarge", "L4x4_g6.24xlarge"),
        ("g5.12xlarge", "A10Gx4"),
        ("g5.24xlarge", "A10Gx4_g5.24xlarge"),
    ] {
        let t = by_type(aws)[0];
        assert_eq!(t["shade_instance_type"], shade, "{aws}");
    }
    // Each one's own numbers, EC2's: gr6.4xlarge is 16 vCPUs and 128 GiB.
    let gr6 = by_type("gr6.4xlarge")[0];
    assert_eq!(gr6["configuration"]["vcpus"], 16);
    assert_eq!(gr6["configuration"]["memory_in_gb"], 128);
    assert_eq!(gr6["hourly_price"], 154);

    // And it can be rented.
    let id = create(&c, "L4_gr6.4xlarge", json!({})).await;
    c.wait_status(&id, "active").await;
    let m = one_machine(&w.moto, &id).await;
    assert_eq!(m.text_at(&["instanceType"]), Some("gr6.4xlarge"));
}

#[tokio::test]
async fn create_with_a_key_goes_active_restarts_and_deletes_in_moto() {
    let w = world().await;
    let c = w.server.admin();
    let script = "#!/bin/sh\necho hello-from-parasol > /tmp/hello\n";
    let b64 = base64::engine::general_purpose::STANDARD.encode(script);
    let id = create(
        &c,
        "A10Gx4",
        json!({"launch_configuration": {"type": "script", "script_configuration": {"base64_script": b64}}}),
    )
    .await;
    let info = c.wait_status(&id, "active").await;
    let m = one_machine(&w.moto, &id).await;
    let ec2_id = m.text_at(&["instanceId"]).unwrap().to_string();
    assert_eq!(info["cloud_assigned_id"], ec2_id.as_str());
    assert_eq!(
        info["ip"],
        m.text_at(&["ipAddress"]).expect("moto gave a public ip")
    );
    assert_eq!(info["ssh_user"], "ubuntu");
    assert_eq!(m.text_at(&["instanceType"]), Some("g5.12xlarge"));
    assert_eq!(m.text_at(&["imageId"]), Some(moto::NEWEST_DLAMI));
    // Defect 6: the zone the machine landed in is shown, and tagged.
    let zone = m
        .text_at(&["placement", "availabilityZone"])
        .expect("moto placed the machine in a zone")
        .to_string();
    assert_eq!(
        info["status_details"],
        format!("availability zone {zone}").as_str()
    );
    assert_eq!(m.tag("parasol:zone"), Some(zone.as_str()));
    assert!(m.tag("parasol:deployment").is_some_and(|d| !d.is_empty()));
    let deployment = w
        .server
        .store()
        .await
        .setting("deployment_id")
        .await
        .unwrap();
    assert_eq!(m.tag("parasol:deployment"), deployment.as_deref());
    // The same name every cloud's machines carry: the deployment's marker.
    assert_eq!(
        m.tag("Name"),
        Some(format!("parasol-{}-{id}", deployment.as_deref().unwrap()).as_str())
    );

    // The key was imported under its fingerprint name, once.
    let key_name = m
        .text_at(&["keyName"])
        .expect("a key on the machine")
        .to_string();
    assert!(key_name.starts_with("parasol-"), "{key_name}");
    let keys = w
        .moto
        .call(REGION, "DescribeKeyPairs", &[("KeyName.1", &key_name)])
        .await;
    assert_eq!(keys.items(&["keySet"]).len(), 1);
    let imports = w.proxy.requests_for("ImportKeyPair");
    assert_eq!(imports.len(), 1);
    let material = base64::engine::general_purpose::STANDARD
        .decode(imports[0].param("PublicKeyMaterial").unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(material).unwrap(), public_key());

    // The SSH security group is on the machine.
    let groups: Vec<_> = m
        .items(&["groupSet"])
        .iter()
        .filter_map(|g| g.text_at(&["groupName"]).map(str::to_string))
        .collect();
    assert_eq!(groups, ["parasol-ssh"]);

    // The launch configuration is the user data.
    let attr = w
        .moto
        .call(
            REGION,
            "DescribeInstanceAttribute",
            &[("InstanceId", &ec2_id), ("Attribute", "userData")],
        )
        .await;
    let ud = base64::engine::general_purpose::STANDARD
        .decode(attr.text_at(&["userData", "value"]).expect("user data"))
        .unwrap();
    let ud = String::from_utf8(ud).unwrap();
    assert!(ud.starts_with("#!/bin/bash"), "{ud}");
    assert!(
        ud.contains(&b64),
        "the user's script is in the user data: {ud}"
    );
    // The agent comes first, with this instance's own token and this
    // server's URL, then the user's script as before.
    let instance: uuid::Uuid = id.parse().unwrap();
    let token = parasol::agent::AgentKeys::load(&w.server.store().await)
        .await
        .unwrap()
        .token(instance);
    let agent_at = ud
        .find(&format!("PARASOL_AGENT_TOKEN='{}'", token.expose()))
        .expect("the agent with the instance's token");
    assert!(
        ud.contains(&format!("PARASOL_URL='{}'", w.server.base)),
        "{ud}"
    );
    assert!(ud.contains(&format!("PARASOL_INSTANCE_ID='{id}'")));
    assert!(agent_at < ud.find(&b64).unwrap(), "the agent starts first");

    // The exact RunInstances: signed, the id as token and tag, a zone.
    let runs = w.proxy.requests_for("RunInstances");
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    let auth = r.authorization.as_deref().expect("signed");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDPARASOLTEST/")
            && auth.contains("/us-east-1/ec2/aws4_request"),
        "{auth}"
    );
    assert!(!auth.contains("parasol-test-secret-value"));
    assert!(r.param("ClientToken").unwrap().starts_with(&id));
    assert_eq!(
        r.param("TagSpecification.1.Tag.1.Key"),
        Some("parasol:instance-id")
    );
    assert_eq!(r.param("TagSpecification.1.Tag.1.Value"), Some(id.as_str()));
    assert_eq!(r.param("InstanceType"), Some("g5.12xlarge"));
    assert!(r.param("InstanceMarketOptions.MarketType").is_none());
    assert_eq!(
        r.param("Placement.AvailabilityZone"),
        m.text_at(&["placement", "availabilityZone"])
    );

    // Restart is a reboot.
    c.post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect(200);
    w.proxy
        .wait_for("RebootInstances", |rs| {
            rs.iter()
                .any(|r| r.action == "RebootInstances" && r.param("InstanceId.1") == Some(&ec2_id))
        })
        .await;

    // Delete terminates it in moto.
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    let after = w.moto.tagged(REGION, &id).await;
    assert_eq!(after.len(), 1);
    assert_eq!(moto::state(&after[0]), "terminated");
    assert!(
        w.server.log().contains("aws") && !w.server.log().contains("parasol-test-secret-value")
    );
}

#[tokio::test]
async fn a_spot_create_asks_for_one_time_spot() {
    let w = world().await;
    let c = w.server.admin();
    let id = create(&c, "L4", json!({"rental_type": "spot"})).await;
    let info = c.wait_status(&id, "active").await;
    assert_eq!(info["rental_terms"]["rental_type"], "spot");
    let r = &w.proxy.requests_for("RunInstances")[0];
    assert_eq!(r.param("InstanceMarketOptions.MarketType"), Some("spot"));
    assert_eq!(
        r.param("InstanceMarketOptions.SpotOptions.SpotInstanceType"),
        Some("one-time")
    );
    let m = one_machine(&w.moto, &id).await;
    assert_eq!(m.text_at(&["instanceLifecycle"]), Some("spot"));

    // AWS reclaims it (moto cannot send the interruption itself; a spot
    // machine terminated under Parasol is one): the preemption path.
    let ec2_id = m.text_at(&["instanceId"]).unwrap();
    w.moto
        .call(REGION, "TerminateInstances", &[("InstanceId.1", ec2_id)])
        .await;
    c.wait_gone(&id).await;
    let rec = w
        .server
        .store()
        .await
        .get_instance_any(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.instance.status_details.as_deref(), Some("preempted"));
}

#[tokio::test]
async fn a_machine_aws_terminates_under_a_live_instance_is_an_error_with_the_reason() {
    let w = world().await;
    let c = w.server.admin();
    let id = create(&c, "T4", json!({})).await;
    c.wait_status(&id, "active").await;
    let m = one_machine(&w.moto, &id).await;
    w.moto
        .call(
            REGION,
            "TerminateInstances",
            &[("InstanceId.1", m.text_at(&["instanceId"]).unwrap())],
        )
        .await;
    let info = c.wait_status(&id, "error").await;
    let details = info["status_details"].as_str().unwrap();
    assert!(details.contains("AWS terminated the machine"), "{details}");
}

#[tokio::test]
async fn a_tagged_machine_of_this_deployment_without_an_instance_is_swept() {
    let w = world().await;
    let deployment = w
        .server
        .store()
        .await
        .setting("deployment_id")
        .await
        .unwrap()
        .unwrap();
    let run = |id: String, dep: String| {
        let m = &w.moto;
        async move {
            m.call(
                REGION,
                "RunInstances",
                &[
                    ("ImageId", moto::NEWEST_DLAMI),
                    ("InstanceType", "g6.xlarge"),
                    ("MinCount", "1"),
                    ("MaxCount", "1"),
                    ("TagSpecification.1.ResourceType", "instance"),
                    ("TagSpecification.1.Tag.1.Key", "parasol:instance-id"),
                    ("TagSpecification.1.Tag.1.Value", &id),
                    ("TagSpecification.1.Tag.2.Key", "parasol:deployment"),
                    ("TagSpecification.1.Tag.2.Value", &dep),
                ],
            )
            .await
        }
    };
    let ours = uuid::Uuid::new_v4().to_string();
    let theirs = uuid::Uuid::new_v4().to_string();
    run(ours.clone(), deployment).await;
    run(theirs.clone(), "another-deployment".into()).await;
    w.moto
        .wait_for(REGION, "the orphan terminated", |all| {
            all.iter().any(|i| {
                i.tag("parasol:instance-id") == Some(&ours) && moto::state(i) == "terminated"
            })
        })
        .await;
    // Another deployment's machine is not this sweep's to touch, even after
    // a few more sweeps.
    let sweeps = |rs: &[crate::fakes::aws_proxy::Ec2Request]| {
        rs.iter()
            .filter(|r| {
                r.action == "DescribeInstances"
                    && r.params.values().any(|v| v == "tag:parasol:deployment")
            })
            .count()
    };
    let n = sweeps(&w.proxy.requests());
    w.proxy
        .wait_for("three more sweeps", |rs| sweeps(rs) >= n + 3)
        .await;
    let other = w.moto.tagged(REGION, &theirs).await;
    assert_eq!(moto::state(&other[0]), "running");
}

#[tokio::test]
async fn a_kill_right_after_run_instances_and_a_restart_leave_one_machine() {
    let mut w = world_with(|p| p.fault(Fault::hang("RunInstances"))).await;
    let c = w.server.admin();
    let id = create(&c, "T4", json!({})).await;
    // moto made the machine; Parasol never heard back.
    w.proxy
        .wait_for("RunInstances forwarded", |rs| {
            rs.iter().any(|r| r.action == "RunInstances")
        })
        .await;
    w.moto
        .wait_for(REGION, "the machine in moto", |all| {
            all.iter()
                .any(|i| i.tag("parasol:instance-id") == Some(&id))
        })
        .await;
    w.server.kill();
    w.proxy.clear_faults();
    w.server.restart();
    let c = w.server.admin();
    let info = c.wait_status(&id, "active").await;
    let m = one_machine(&w.moto, &id).await;
    assert_eq!(
        info["cloud_assigned_id"],
        m.text_at(&["instanceId"]).unwrap()
    );
    assert_eq!(w.moto.tagged(REGION, &id).await.len(), 1);
}

#[tokio::test]
async fn no_capacity_in_one_zone_falls_back_and_throttling_is_retried() {
    let w = world_with(|p| {
        p.fault(Fault::error("RunInstances", "RequestLimitExceeded", 503).times(2));
        p.fault(
            Fault::error("RunInstances", "InsufficientInstanceCapacity", 500).in_zone("us-east-1a"),
        );
    })
    .await;
    let c = w.server.admin();
    let id = create(&c, "H100x8", json!({})).await;
    c.wait_status(&id, "active").await;
    let runs = w.proxy.requests_for("RunInstances");
    let seen: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| {
            (
                r.param("Placement.AvailabilityZone").unwrap(),
                r.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("us-east-1a", "RequestLimitExceeded"),
            ("us-east-1a", "RequestLimitExceeded"),
            ("us-east-1a", "InsufficientInstanceCapacity"),
            ("us-east-1b", "forwarded"),
        ]
    );
    // The retries repeat the request exactly.
    assert_eq!(runs[0].params, runs[2].params);
    let m = one_machine(&w.moto, &id).await;
    assert_eq!(
        m.text_at(&["placement", "availabilityZone"]),
        Some("us-east-1b")
    );
}

#[tokio::test]
async fn no_capacity_in_any_zone_is_an_error_and_a_quota_is_named() {
    let w = world_with(|p| {
        p.fault(Fault::error(
            "RunInstances",
            "InsufficientInstanceCapacity",
            500,
        ));
    })
    .await;
    let c = w.server.admin();
    let id = create(&c, "H100x8", json!({})).await;
    let info = c.wait_status(&id, "error").await;
    let details = info["status_details"].as_str().unwrap();
    assert!(
        details.contains("capacity") && details.contains("p5.48xlarge"),
        "{details}"
    );
    // Every zone that offers p5.48xlarge in moto was tried.
    assert_eq!(w.proxy.requests_for("RunInstances").len(), 6);
    // ... and the type is unavailable there until the next refresh.
    let all = types(&c).await;
    let h100 = all
        .iter()
        .find(|t| t["shade_instance_type"] == "H100x8")
        .unwrap();
    assert!(
        h100["availability"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["available"] == false),
        "{h100:#}"
    );

    w.proxy.clear_faults();
    w.proxy
        .fault(Fault::error("RunInstances", "VcpuLimitExceeded", 400));
    let id = create(&c, "L4", json!({})).await;
    let info = c.wait_status(&id, "error").await;
    assert!(
        info["status_details"]
            .as_str()
            .unwrap()
            .contains("vCPU quota"),
        "{info:#}"
    );
}

#[tokio::test]
async fn an_auth_failure_makes_aws_unavailable_and_leaves_the_other_clouds() {
    let moto = moto::start();
    let proxy = Proxy::start(&moto.url);
    proxy.fault(Fault::error("DescribeInstanceTypes", "AuthFailure", 401));
    // The sim serves the other clouds beside AWS.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parasol.toml");
    std::fs::write(&config, "[sim]\nenabled = true\n").unwrap();
    let w = World {
        server: Server::start(
            Opts {
                env: aws_env(&proxy),
                ..Opts::default()
            }
            .args(&["--config", config.to_str().unwrap()]),
        ),
        moto,
        proxy,
    };
    let c = w.server.admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        // Raw HTTP: /readyz is Parasol's own, not in the Shadeform document.
        let r = c
            .http
            .get(format!("{}/readyz", w.server.base))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        if body["unavailable_providers"]["aws"].is_object() || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let why = ready["unavailable_providers"]["aws"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("AuthFailure") && why.contains("credentials"),
        "{ready:#}"
    );
    assert!(!why.contains("parasol-test-secret-value"));
    assert!(types(&c).await.is_empty());
    let others = c.get("/v1/instances/types").await.expect(200);
    assert!(!others["instance_types"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_volume_is_made_in_a_zone_the_machine_launches_there_and_it_outlives_the_machine() {
    let w = world().await;
    let c = w.server.admin();
    let vol = c
        .post(
            "/v1/volumes/create",
            json!({"cloud": "aws", "region": REGION, "size_in_gb": 100, "name": "data"}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Made at /volumes/create, before any machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let info = c.get(&format!("/v1/volumes/{vol}/info")).await.expect(200);
        if info["status"] == "available" {
            break info;
        }
        assert!(Instant::now() < deadline, "never available: {info:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let created = w.proxy.requests_for("CreateVolume");
    assert_eq!(created.len(), 1);
    let vol_zone = created[0].param("AvailabilityZone").unwrap().to_string();
    let ebs_id = info["cloud_assigned_id"].as_str().unwrap().to_string();
    assert!(ebs_id.starts_with("vol-"), "{info}");
    let id = create(&c, "L4", json!({"volume_ids": [vol]})).await;
    c.wait_status(&id, "active").await;
    let m = one_machine(&w.moto, &id).await;
    let ec2_id = m.text_at(&["instanceId"]).unwrap().to_string();
    let zone = m
        .text_at(&["placement", "availabilityZone"])
        .unwrap()
        .to_string();
    let attached = || async {
        let v = w
            .moto
            .call(
                REGION,
                "DescribeVolumes",
                &[
                    ("Filter.1.Name", "tag:parasol:volume-id"),
                    ("Filter.1.Value.1", &vol),
                ],
            )
            .await;
        v.items(&["volumeSet"])
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let v = attached().await;
        if v.len() == 1 && v[0].text_at(&["status"]) == Some("in-use") {
            break v[0].clone();
        }
        assert!(Instant::now() < deadline, "never attached: {v:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v.text_at(&["size"]), Some("100"));
    assert_eq!(v.text_at(&["volumeType"]), Some("gp3"));
    assert_eq!(zone, vol_zone, "the machine launched in the volume's zone");
    assert_eq!(v.text_at(&["availabilityZone"]), Some(zone.as_str()));
    assert_eq!(v.text_at(&["volumeId"]), Some(ebs_id.as_str()));
    let att = v.items(&["attachmentSet"]);
    assert_eq!(att[0].text_at(&["instanceId"]), Some(ec2_id.as_str()));
    assert_eq!(att[0].text_at(&["device"]), Some("/dev/sdf"));
    assert_eq!(w.proxy.requests_for("CreateVolume").len(), 1);

    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    let left = attached().await;
    assert_eq!(left.len(), 1, "the volume outlives the machine");
    assert_ne!(left[0].text_at(&["status"]), Some("in-use"), "detached");
    assert!(w.proxy.requests_for("DeleteVolume").is_empty());

    c.post_empty(&format!("/v1/volumes/{vol}/delete"))
        .await
        .expect(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !attached().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the EBS volume was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.proxy.requests_for("DeleteVolume").len(), 1);
}
