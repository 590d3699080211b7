//! Azure beyond the shared provider properties: zone fallback, quota,
//! spot eviction, what a launch sends (`deleteOption`, spot settings,
//! tags), a crash between the NIC and the VM swept clean, credentials, and
//! prices from the Retail Prices API or the shipped table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parasol::api::RentalType;
use parasol::providers::clouds::azure::{self, Azure as Adapter, AzureAuth};
use parasol::providers::clouds::Secret;
use parasol::providers::{sweep, LaunchRequest, MachineState, Provider, ProviderError, Providers};
use uuid::Uuid;

use crate::fakes::azure::{self as azf, Azure};
use crate::fakes::{FakeServer, Recorded, Timing};
use crate::harness::{public_key, Server};
use crate::provider_conformance::{azure_config, empty_store};
use crate::providers::opts;
use serde_json::json;

const DEPLOYMENT: &str = "c0ffee0042";

async fn start() -> (FakeServer<Azure>, Arc<Adapter>) {
    let cloud = Azure {
        timing: Timing {
            boot: Duration::from_millis(300),
            ip_after: Duration::from_millis(0),
            teardown: Duration::from_millis(200),
        },
        ..Azure::default()
    };
    let fake = FakeServer::start(cloud).await;
    let adapter = Arc::new(Adapter::new(azure_config(&fake.url), DEPLOYMENT));
    (fake, adapter)
}

fn request(size: &str, rental: RentalType) -> LaunchRequest {
    let shade = if size.contains("NC96") {
        "A100_80Gx4"
    } else {
        "A100_80G"
    };
    LaunchRequest {
        instance_id: Uuid::new_v4(),
        name: "azure".into(),
        cloud: azure::CLOUD.into(),
        region: "eastus".into(),
        shade_instance_type: shade.into(),
        cloud_instance_type: size.into(),
        os: "ubuntu22.04_hpc".into(),
        rental_type: rental,
        ssh_public_key: Some(public_key()),
        launch_configuration: None,
        envs: vec![],
        cluster_id: None,
        volumes: vec![],
        agent: None,
    }
}

fn vm_puts(fake: &FakeServer<Azure>) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.contains(azf::VM))
        .collect()
}

/// Launches `req`, which every zone refuses: a capacity error naming
/// Azure's zonal code; what of the machine is left (not being deleted).
async fn refused_leaving(
    fake: &FakeServer<Azure>,
    p: &dyn Provider,
    req: &LaunchRequest,
) -> Vec<String> {
    let e = p.launch(req).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Capacity(ref m) if m.contains("ZonalAllocationFailed")),
        "{e:?}"
    );
    let name = parasol::providers::clouds::Marker::new(DEPLOYMENT).name(req.instance_id);
    fake.with(|c| {
        c.resources
            .iter()
            .filter(|r| r.name.starts_with(&name) && r.deleting.is_none())
            .map(|r| r.id.clone())
            .collect()
    })
}

async fn until(p: &dyn Provider, id: Uuid, done: impl Fn(&MachineState) -> bool) -> MachineState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = p.describe(id).await.expect("describe");
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never done; last {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A zone without capacity sends the launch to the next one; a restricted
/// zone is never asked for.
#[tokio::test]
async fn a_refused_zone_falls_back_to_the_next() {
    let (fake, p) = start().await;
    fake.with(|c| {
        c.refuse.push((
            "Standard_NC96ads_A100_v4".into(),
            "eastus".into(),
            Some("1".into()),
        ))
    });
    let req = request("Standard_NC96ads_A100_v4", RentalType::OnDemand);
    p.launch(&req).await.expect("launch");
    let zones: Vec<String> = vm_puts(&fake)
        .iter()
        .map(|r| r.body["zones"][0].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(zones, ["1", "2"], "zone 3 is restricted for the size");
    let s = until(&*p, req.instance_id, |s| {
        matches!(s, MachineState::Running { .. })
    })
    .await;
    let MachineState::Running { placement, .. } = s else {
        unreachable!()
    };
    assert_eq!(placement.as_deref(), Some("availability zone 2"));

    // Every zone refused: capacity, and the NIC and IP made for it go.
    fake.with(|c| {
        for z in ["2", "3"] {
            c.refuse.push((
                "Standard_NC96ads_A100_v4".into(),
                "eastus".into(),
                Some(z.into()),
            ));
        }
    });
    let req = request("Standard_NC96ads_A100_v4", RentalType::OnDemand);
    let left = refused_leaving(&fake, &*p, &req).await;
    assert!(left.is_empty(), "a refused launch left {left:?}");
}

/// An allocation failure Azure reports late, through the VM's create
/// operation (the PUT answered 201, `Creating`), still moves the launch to
/// the next zone: the failed VM is deleted, with its NIC and IP, before the
/// next zone reuses their names. With every zone failing so, the launch is
/// a capacity error (placement's cue to fail over) and leaves nothing.
#[tokio::test]
async fn a_late_allocation_failure_tries_the_next_zone_then_reports_capacity() {
    let (fake, p) = start().await;
    let size = "Standard_NC24ads_A100_v4";
    fake.with(|c| {
        c.refuse_late
            .push((size.into(), "eastus".into(), Some("1".into())))
    });
    let req = request(size, RentalType::OnDemand);
    p.launch(&req).await.expect("launch");
    let puts = vm_puts(&fake);
    let zones: Vec<&str> = puts
        .iter()
        .map(|r| r.body["zones"][0].as_str().unwrap_or(""))
        .collect();
    assert_eq!(zones, ["1", "2"]);
    // The zone-1 VM was deleted, and gone, before the zone-2 PUT.
    let log = fake.requests();
    let vm_path = puts[0].path.clone();
    let at = |pred: &dyn Fn(&Recorded) -> bool| log.iter().position(pred).unwrap();
    let deleted = at(&|r| r.method == "DELETE" && r.path == vm_path);
    let second = at(&|r| r.method == "PUT" && r.path == vm_path && r.body["zones"][0] == "2");
    assert!(
        deleted < second,
        "the failed VM was deleted before its name was reused"
    );
    let s = until(&*p, req.instance_id, |s| {
        matches!(s, MachineState::Running { .. })
    })
    .await;
    let MachineState::Running { placement, .. } = s else {
        unreachable!()
    };
    assert_eq!(placement.as_deref(), Some("availability zone 2"));
    assert_eq!(fake.with(|c| c.live(azf::VM).len()), 1);

    // Every zone fails late: capacity naming Azure's code, nothing left.
    fake.with(|c| {
        c.refuse_late.push((size.into(), "eastus".into(), None));
    });
    let req = request(size, RentalType::OnDemand);
    let left = refused_leaving(&fake, &*p, &req).await;
    assert!(left.is_empty(), "a launch refused late left {left:?}");
    let name = parasol::providers::clouds::Marker::new(DEPLOYMENT).name(req.instance_id);
    assert_eq!(
        vm_puts(&fake)
            .iter()
            .filter(|r| r.path.ends_with(&name))
            .count(),
        3,
        "each zone was tried once"
    );
}

/// A failed VM's delete outlasting the launch call: the call ends
/// transient, and the relaunch waits for the delete, then goes on with the
/// zones not yet tried.
#[tokio::test]
async fn a_relaunch_waits_for_the_failed_vm_and_goes_on_with_the_next_zone() {
    let cloud = Azure {
        timing: Timing {
            boot: Duration::from_millis(300),
            ip_after: Duration::from_millis(0),
            // Longer than the launch waits for a delete.
            teardown: Duration::from_secs(12),
        },
        ..Azure::default()
    };
    let fake = FakeServer::start(cloud).await;
    let p = Adapter::new(azure_config(&fake.url), DEPLOYMENT);
    let size = "Standard_NC24ads_A100_v4";
    fake.with(|c| {
        c.refuse_late
            .push((size.into(), "eastus".into(), Some("1".into())))
    });
    let req = request(size, RentalType::OnDemand);
    match p.launch(&req).await {
        Err(ProviderError::Transient(m)) => assert!(m.contains("still being deleted"), "{m}"),
        other => panic!("expected a transient error, got {other:?}"),
    }
    match p.launch(&req).await {
        Err(ProviderError::Transient(m)) => assert!(m.contains("still being deleted"), "{m}"),
        other => panic!("expected a transient error, got {other:?}"),
    }
    // Once the delete is done, the next zone.
    fake.with(|c| {
        for r in c.resources.iter_mut() {
            if let Some(d) = r.deleting.as_mut() {
                *d -= Duration::from_secs(12);
            }
        }
    });
    p.launch(&req).await.expect("relaunch");
    let zones: Vec<String> = vm_puts(&fake)
        .iter()
        .map(|r| r.body["zones"][0].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(zones, ["1", "2"]);
}

/// A used-up quota is an error naming the quota family to raise, not a
/// capacity error, and leaves nothing behind.
#[tokio::test]
async fn an_exceeded_quota_names_the_family() {
    let (fake, p) = start().await;
    fake.with(|c| c.over_quota.push("Standard_NC24ads_A100_v4".into()));
    let req = request("Standard_NC24ads_A100_v4", RentalType::OnDemand);
    match p.launch(&req).await {
        Err(ProviderError::Permanent(m)) => {
            assert!(
                m.contains("StandardNCADSA100v4Family") && m.contains("eastus"),
                "{m}"
            )
        }
        other => panic!("expected a quota error, got {other:?}"),
    }
    assert!(fake.with(|c| c.live(azf::NIC).is_empty() && c.live(azf::IP).is_empty()));
}

/// A launch puts the IP, NIC and VM under the marker's names with the
/// marker in tags, `deleteOption: Delete` on the IP, NIC and OS disk and
/// the spot settings; a terminate leaves none of them.
#[tokio::test]
async fn a_spot_launch_sends_what_azure_needs_and_an_eviction_is_a_preemption() {
    let (fake, p) = start().await;
    let req = request("Standard_NC24ads_A100_v4", RentalType::Spot);
    let name = parasol::providers::clouds::Marker::new(DEPLOYMENT).name(req.instance_id);
    let vm = p.launch(&req).await.expect("launch").cloud_assigned_id;
    let puts = fake.requests();
    let body = |suffix: &str| -> serde_json::Value {
        puts.iter()
            .find(|r| r.method == "PUT" && r.path.ends_with(suffix))
            .unwrap_or_else(|| panic!("no PUT of {suffix}"))
            .body
            .clone()
    };
    let nic = body(&format!("/{name}-nic"));
    assert_eq!(
        nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["properties"]
            ["deleteOption"],
        "Delete"
    );
    assert_eq!(nic["tags"]["parasol-instance"], req.instance_id.to_string());
    let v = body(&format!("/{name}"));
    let props = &v["properties"];
    assert_eq!(props["priority"], "Spot");
    assert_eq!(props["evictionPolicy"], "Delete");
    assert_eq!(props["billingProfile"]["maxPrice"], -1.0);
    assert_eq!(props["storageProfile"]["osDisk"]["deleteOption"], "Delete");
    assert_eq!(
        props["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"],
        "Delete"
    );
    assert_eq!(
        props["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"],
        public_key().trim()
    );
    until(&*p, req.instance_id, |s| {
        matches!(s, MachineState::Running { .. })
    })
    .await;
    fake.with(|c| c.evict(&vm));
    assert_eq!(
        p.describe(req.instance_id).await.unwrap(),
        MachineState::Preempted
    );

    // Everything of the machine goes with the VM.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match p.terminate(req.instance_id).await {
            Ok(MachineState::Gone) => break,
            Ok(_) | Err(ProviderError::Transient(_)) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "never gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<String> = fake.with(|c| {
        c.resources
            .iter()
            .filter(|r| r.name.starts_with(&name))
            .map(|r| r.id.clone())
            .collect()
    });
    assert!(left.is_empty(), "{left:?}");
}

/// A crash after the public IP and NIC exist, before the VM does: the
/// sweep, from a restarted process, finds the instance by its NIC and IP
/// and removes both.
#[tokio::test]
async fn the_sweep_removes_an_ip_and_nic_whose_vm_was_never_made() {
    let (fake, p) = start().await;
    let req = request("Standard_NC24ads_A100_v4", RentalType::OnDemand);
    // The VM's PUT never lands: the process died on it.
    fake.faults(|f| {
        f.server_error.insert(
            format!(
                "PUT /subscriptions/{}/resourceGroups/{}/providers/{}/*",
                azf::SUBSCRIPTION,
                Adapter::group_name(DEPLOYMENT, "eastus"),
                azf::VM
            ),
            1,
        );
    });
    assert!(matches!(
        p.launch(&req).await,
        Err(ProviderError::Transient(_))
    ));
    assert!(fake.with(|c| c.live(azf::VM).is_empty()));
    assert_eq!(
        fake.with(|c| (c.live(azf::NIC).len(), c.live(azf::IP).len())),
        (1, 1)
    );

    let restarted: Arc<dyn Provider> = Arc::new(Adapter::new(azure_config(&fake.url), DEPLOYMENT));
    assert_eq!(
        restarted.list_marked().await.unwrap(),
        vec![req.instance_id]
    );
    let (_dir, store) = empty_store().await;
    let mut providers = Providers::default();
    providers.add(restarted.clone(), &[azure::CLOUD.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sweep::sweep_once(&providers, &store).await;
        if fake.with(|c| c.all(azf::NIC).is_empty() && c.all(azf::IP).is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the NIC or IP was not swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(restarted.list_marked().await.unwrap().is_empty());
}

/// A wrong client secret makes Azure unavailable with an error that says
/// which setting to check, and never shows the secret.
#[tokio::test]
async fn a_wrong_secret_is_refused_by_name_without_showing_it() {
    let (fake, _) = start().await;
    let mut cfg = azure_config(&fake.url);
    cfg.auth = AzureAuth::ClientSecret {
        tenant_id: azf::TENANT.into(),
        client_id: azf::CLIENT_ID.into(),
        client_secret: Secret::new("not-the-secret-4242"),
    };
    let p = Adapter::new(cfg, DEPLOYMENT);
    match p.offers().await {
        Err(ProviderError::Permanent(m)) => {
            assert!(
                m.contains("AZURE_CLIENT_SECRET") && m.contains("invalid_client"),
                "{m}"
            );
            assert!(!m.contains("not-the-secret-4242"), "{m}");
        }
        other => panic!("expected a credentials error, got {other:?}"),
    }
}

/// Prices come from the Retail Prices API (Linux pay-as-you-go, its spot
/// meter for spot, across its pages); without it, from the shipped table.
#[tokio::test]
async fn prices_come_from_the_retail_api_or_the_shipped_table() {
    let (fake, p) = start().await;
    let offers = p.offers().await.expect("offers");
    let a100 = offers
        .iter()
        .find(|o| o.cloud_instance_type == "Standard_NC24ads_A100_v4")
        .unwrap();
    assert_eq!(a100.hourly_price, 350);
    let east = a100.regions.iter().find(|r| r.region == "eastus").unwrap();
    assert_eq!(east.spot_price, Some(90));
    assert!(fake.with(|c| c.price_pages) > 2, "the pages were followed");
    assert!(
        !offers
            .iter()
            .any(|o| o.cloud_instance_type == "Standard_NV12ads_A10_v5"),
        "fractional GPUs are not offered"
    );

    let (fake, p) = start().await;
    fake.with(|c| c.prices_down = true);
    let offers = p.offers().await.expect("offers without the price API");
    let a100 = offers
        .iter()
        .find(|o| o.cloud_instance_type == "Standard_NC24ads_A100_v4")
        .unwrap();
    assert_eq!(
        Some(a100.hourly_price),
        azure::table_price("Standard_NC24ads_A100_v4")
    );
    assert!(a100.regions.iter().all(|r| r.spot_price.is_none()));
}

/// On an Azure VM the managed identity's token comes from the instance
/// metadata service (with `Metadata: true`, for Resource Manager, the
/// user-assigned identity named); no secret is sent anywhere.
#[tokio::test]
async fn a_managed_identity_gets_its_token_from_the_metadata_service() {
    let (fake, _) = start().await;
    let mut cfg = azure_config(&fake.url);
    cfg.auth = AzureAuth::ManagedIdentity {
        endpoint: fake.url.clone(),
        client_id: Some(azf::CLIENT_ID.into()),
    };
    let p = Adapter::new(cfg, DEPLOYMENT);
    let offers = p.offers().await.expect("offers with the VM's identity");
    assert!(!offers.is_empty());
    let asked = fake.requests_to("GET /metadata/identity/oauth2/token");
    assert_eq!(asked.len(), 1, "one token, kept");
    assert_eq!(asked[0].header("metadata"), Some("true"));
    assert!(
        asked[0]
            .query
            .contains(&format!("client_id={}", azf::CLIENT_ID)),
        "{}",
        asked[0].query
    );
    assert!(fake
        .requests_to(&format!("POST /{}/oauth2/v2.0/token", azf::TENANT))
        .is_empty());

    // A VM without an identity: Azure unavailable, saying why.
    fake.with(|c| c.no_identity = true);
    let mut cfg = azure_config(&fake.url);
    cfg.auth = AzureAuth::ManagedIdentity {
        endpoint: fake.url.clone(),
        client_id: None,
    };
    match Adapter::new(cfg, DEPLOYMENT).offers().await {
        Err(ProviderError::Permanent(m)) => assert!(m.contains("managed identity"), "{m}"),
        other => panic!("expected a credentials error, got {other:?}"),
    }
}

/// In App Service (or Functions, Container Apps), the app's managed
/// identity: its token from the platform's endpoint, asked with the
/// platform's header, kept until shortly before its `expires_on`; a stale
/// header makes Azure unavailable, saying why.
#[tokio::test]
async fn an_app_service_identity_gets_its_token_from_the_platforms_endpoint() {
    let (fake, _) = start().await;
    let mut cfg = azure_config(&fake.url);
    cfg.auth = AzureAuth::AppServiceIdentity {
        endpoint: format!("{}/msi/token", fake.url),
        header: Secret::new(azf::IDENTITY_HEADER),
        client_id: Some(azf::CLIENT_ID.into()),
    };
    let p = Adapter::new(cfg, DEPLOYMENT);
    assert!(!p
        .offers()
        .await
        .expect("offers with the app's identity")
        .is_empty());
    let req = request("Standard_NC24ads_A100_v4", RentalType::OnDemand);
    p.launch(&req)
        .await
        .expect("launch with the app's identity");
    let asked = fake.requests_to("GET /msi/token");
    assert_eq!(asked.len(), 1, "one token, kept until its expires_on");
    assert_eq!(
        asked[0].header("x-identity-header"),
        Some(azf::IDENTITY_HEADER)
    );
    assert!(
        asked[0].query.contains("api-version=2019-08-01"),
        "{}",
        asked[0].query
    );
    assert!(
        asked[0]
            .query
            .contains(&format!("client_id={}", azf::CLIENT_ID)),
        "{}",
        asked[0].query
    );
    assert!(fake
        .requests_to("GET /metadata/identity/oauth2/token")
        .is_empty());

    let mut cfg = azure_config(&fake.url);
    cfg.auth = AzureAuth::AppServiceIdentity {
        endpoint: format!("{}/msi/token", fake.url),
        header: Secret::new("a-rotated-away-header"),
        client_id: None,
    };
    match Adapter::new(cfg, DEPLOYMENT).offers().await {
        Err(ProviderError::Permanent(m)) => {
            assert!(m.contains("IDENTITY_ENDPOINT"), "{m}");
            assert!(!m.contains("a-rotated-away-header"), "{m}");
        }
        other => panic!("expected a credentials error, got {other:?}"),
    }
}

fn server_env(fake: &FakeServer<Azure>, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_TENANT_ID", azf::TENANT.into()),
        ("AZURE_CLIENT_ID", azf::CLIENT_ID.into()),
        ("AZURE_CLIENT_SECRET", secret.into()),
        ("AZURE_SUBSCRIPTION_ID", azf::SUBSCRIPTION.into()),
        ("AZURE_AUTHORITY_HOST", fake.url.clone()),
        ("PARASOL_AZURE_URL", fake.url.clone()),
        ("PARASOL_AZURE_PRICES_URL", fake.url.clone()),
        ("PARASOL_AZURE_LOCATIONS", azf::LOCATIONS.join(",")),
    ]
}

/// Through Parasol's API: the catalog holds Azure's sizes at the Retail
/// Prices API's prices, an instance is created, runs and is deleted, and
/// nothing of it (VM, NIC, public IP, OS disk) is left at Azure.
#[tokio::test]
async fn an_azure_instance_lives_and_dies_through_the_api_leaving_nothing() {
    let fake = FakeServer::start(Azure::default()).await;
    let s = Server::start(opts(&server_env(&fake, azf::CLIENT_SECRET)));
    let c = s.admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    let a100 = loop {
        let all = c.get("/v1/instances/types?cloud=azure").await.expect(200)["instance_types"]
            .as_array()
            .unwrap()
            .clone();
        if let Some(t) = all.iter().find(|t| t["shade_instance_type"] == "A100_80G") {
            break t.clone();
        }
        assert!(Instant::now() < deadline, "no azure catalog: {all:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(a100["cloud_instance_type"], "Standard_NC24ads_A100_v4");
    assert_eq!(a100["hourly_price"], 350);
    let avail: Vec<(String, bool)> = a100["availability"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rental_type"] != "spot")
        .map(|a| {
            (
                a["region"].as_str().unwrap().to_string(),
                a["available"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(avail.contains(&("eastus".into(), true)), "{avail:?}");
    assert!(avail.contains(&("westus2".into(), false)), "{avail:?}");

    let id = c
        .post(
            "/v1/instances/create",
            json!({"cloud": "azure", "region": "eastus", "shade_instance_type": "A100_80G",
                   "shade_cloud": true, "name": "azure-box"}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c.wait_status(&id, "active").await;
    assert!(
        info["ip"].as_str().unwrap().starts_with("203.0.113."),
        "{info}"
    );
    assert_eq!(info["ssh_user"], azure::ADMIN_USER);
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<String> = fake.with(|c| {
            c.resources
                .iter()
                .filter(|r| [azf::VM, azf::NIC, azf::IP, azf::DISK].contains(&r.kind.as_str()))
                .map(|r| r.id.clone())
                .collect()
        });
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fake.assert_documented();
}

/// A wrong client secret makes Azure, and only Azure, unavailable in
/// `/readyz`, with Entra's reason and never the secret.
#[tokio::test]
async fn a_wrong_azure_secret_shows_in_readyz_without_the_secret() {
    let fake = FakeServer::start(Azure::default()).await;
    let s = Server::start(opts(&server_env(&fake, "wrong-secret-9876")));
    let c = s.admin();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        let r = c
            .http
            .get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let v: serde_json::Value = r.json().await.unwrap();
            if v["unavailable_providers"].get("azure").is_some() {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "azure never unavailable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let why = ready["unavailable_providers"]["azure"]["reason"]
        .as_str()
        .unwrap();
    assert!(
        why.contains("invalid_client") && why.contains("AZURE_CLIENT_SECRET"),
        "{why}"
    );
    assert!(!ready.to_string().contains("wrong-secret-9876"));
    assert!(!s.log().contains("wrong-secret-9876"));
}

/// A volume is made in the zone offering the most GPU sizes, and a VM
/// mounting it launches in that zone.
#[tokio::test]
async fn a_volume_pins_its_vm_to_its_zone() {
    let (fake, p) = start().await;
    let vid = Uuid::new_v4();
    let made = p
        .create_volume(&parasol::providers::VolumeRequest {
            volume_id: vid,
            name: "data".into(),
            cloud: azure::CLOUD.into(),
            region: "eastus".into(),
            size_in_gb: 10,
        })
        .await
        .expect("create the volume");
    let r = parasol::providers::VolumeRef {
        volume_id: vid,
        region: "eastus".into(),
        cloud_assigned_id: None,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut state = made;
    let (disk, zone) = loop {
        if let parasol::providers::VolumeState::Available {
            cloud_assigned_id,
            zone,
        } = state
        {
            break (cloud_assigned_id, zone);
        }
        assert!(Instant::now() < deadline, "never available: {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = p.describe_volume(&r).await.unwrap();
    };
    // eastus: zones 1 and 2 offer every size, zone 3 all but NC96ads.
    assert_eq!(zone.as_deref(), Some("1"));
    let mut req = request("Standard_NC96ads_A100_v4", RentalType::OnDemand);
    req.volumes = vec![parasol::providers::LaunchVolume {
        id: vid,
        size_in_gb: 10,
        cloud_assigned_id: disk,
        zone,
    }];
    p.launch(&req).await.expect("launch with the volume");
    let zones: Vec<serde_json::Value> = vm_puts(&fake)
        .iter()
        .map(|r| r.body["zones"].clone())
        .collect();
    assert_eq!(zones, [json!(["1"])]);
}

/// A token Azure stops accepting (expired, revoked) is fetched again once,
/// and the call goes through.
#[tokio::test]
async fn a_refused_token_is_fetched_again() {
    let (fake, p) = start().await;
    assert_eq!(
        p.describe(Uuid::new_v4()).await.unwrap(),
        MachineState::Gone
    );
    fake.with(|c| c.tokens.clear());
    assert_eq!(
        p.describe(Uuid::new_v4()).await.unwrap(),
        MachineState::Gone
    );
    let grants = fake.requests_to(&format!("POST /{}/oauth2/v2.0/token", azf::TENANT));
    assert_eq!(grants.len(), 2, "one token, then one more after the 401");
}
