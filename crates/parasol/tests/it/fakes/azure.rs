//! A fake Azure: Resource Manager's Microsoft.Compute and Microsoft.Network
//! operations Parasol calls (held to `specs/azure-*.openapi.json`), resource
//! groups, long-running operations followed through `Azure-AsyncOperation`,
//! the Entra ID token endpoint (`/{tenant}/oauth2/v2.0/token`, client
//! credentials) and the public Retail Prices API (`/api/retail/prices`), all
//! on one server, as the adapter may be pointed at one host for all three.
//!
//! Behaviour, as Azure documents it:
//! - every ARM call needs a bearer token the token endpoint gave out (401
//!   `InvalidAuthenticationToken` otherwise); a wrong client secret gets
//!   400 `invalid_client` there;
//! - `PUT` creates or updates a resource by name; a resource refers to
//!   others by id, which must exist (a NIC's subnet and public IP, a VM's
//!   NIC and data disks), and a resource group must exist before anything
//!   is put in it;
//! - an Azure VM's instance metadata service gives its managed identity's
//!   token at `/metadata/identity/oauth2/token` to a request with
//!   `Metadata: true`; App Service's local identity endpoint (here
//!   `/msi/token`, what `IDENTITY_ENDPOINT` names) gives the app's to a
//!   request carrying `IDENTITY_HEADER`'s value in `X-IDENTITY-HEADER`,
//!   api-version 2019-08-01, with `expires_on` (epoch seconds) and no
//!   `expires_in` (Microsoft documents no error body; the fake answers a
//!   wrong header with 400);
//! - a VM is `Creating` (instance view `ProvisioningState/creating`), then
//!   `PowerState/starting`, then `PowerState/running`; its public IP has its
//!   static address from creation;
//! - deleting a VM makes it `Deleting` for a moment, then it is gone, and
//!   with it each part created with `deleteOption: Delete` (NIC, the NIC's
//!   public IP, OS disk); parts without it stay, data disks are detached;
//! - a NIC attached to a VM, an IP attached to a NIC, a disk attached to a
//!   VM cannot be deleted (`NicInUse`, `PublicIPAddressInUse`,
//!   `OperationNotAllowed`), and a disk attaches only to a VM of its zone
//!   (a regional disk to a VM without one);
//! - a spot VM evicted with `evictionPolicy: Delete` is deallocated and
//!   deleted ([`Azure::evict`]);
//! - capacity and quota refusals answer the VM `PUT` with 409 and Azure's
//!   codes (`ZonalAllocationFailed` per zone, `SkuNotAvailable` for the
//!   whole location, `OperationNotAllowed` naming the quota family), or,
//!   as Azure does as often, late ([`Azure::refuse_late`]): the `PUT`
//!   answers 201 with `provisioningState: Creating`, and the create's
//!   operation (`Azure-AsyncOperation`) reads `InProgress` once, then ends
//!   `Failed` with `ZonalAllocationFailed` (a zone) or `AllocationFailed`
//!   (a regional VM); the VM stays, `Failed`, its instance view
//!   `ProvisioningState/failed/<code>`, until it is deleted.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use super::{ip, openapi, Cloud, Recorded, Reply, Timing};

pub const TENANT: &str = "7c0a3f9e-0000-4000-8000-00000000a2e1";
pub const CLIENT_ID: &str = "0b1c2d3e-0000-4000-8000-00000000c1d0";
pub const CLIENT_SECRET: &str = "azure-client-secret-0123";
pub const SUBSCRIPTION: &str = "5e1f0000-0000-4000-8000-000000005b5c";
/// The `IDENTITY_HEADER` App Service gives the app.
pub const IDENTITY_HEADER: &str = "853b9a84-0000-4000-8000-00000000a5e1";
/// The locations the fake's SKUs are in.
pub const LOCATIONS: &[&str] = &["eastus", "westus2"];

/// One size the fake lists in Resource SKUs.
pub struct SkuDef {
    pub name: &'static str,
    pub family: &'static str,
    /// `GPUs`; `None` for a size without GPUs.
    pub gpus: Option<&'static str>,
    pub vcpus: i64,
    pub memory_gb: i64,
    /// `(location, zones, zones restricted, location restricted)`.
    pub places: &'static [(
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        bool,
    )],
}

const Z3: &[&str] = &["1", "2", "3"];

/// The sizes, served and not (an M60 size Shadeform has no name for, a
/// fractional A10, a CPU size).
pub const SKUS: &[SkuDef] = &[
    SkuDef {
        name: "Standard_NC24ads_A100_v4",
        family: "StandardNCADSA100v4Family",
        gpus: Some("1"),
        vcpus: 24,
        memory_gb: 220,
        places: &[("eastus", Z3, &[], false), ("westus2", Z3, &[], true)],
    },
    SkuDef {
        name: "Standard_NC96ads_A100_v4",
        family: "StandardNCADSA100v4Family",
        gpus: Some("4"),
        vcpus: 96,
        memory_gb: 880,
        places: &[("eastus", Z3, &["3"], false)],
    },
    SkuDef {
        name: "Standard_NC40ads_H100_v5",
        family: "StandardNCadsH100v5Family",
        gpus: Some("1"),
        vcpus: 40,
        memory_gb: 320,
        places: &[("eastus", Z3, &[], false)],
    },
    SkuDef {
        name: "Standard_ND96isr_H100_v5",
        family: "standardNDSH100v5Family",
        gpus: Some("8"),
        vcpus: 96,
        memory_gb: 1900,
        places: &[("eastus", Z3, &[], false), ("westus2", Z3, Z3, false)],
    },
    SkuDef {
        name: "Standard_ND96isr_MI300X_v5",
        family: "standardNDISv5MI300XFamily",
        gpus: Some("8"),
        vcpus: 96,
        memory_gb: 1850,
        places: &[("westus2", &[], &[], false)],
    },
    SkuDef {
        name: "Standard_NC4as_T4_v3",
        family: "Standard NCASv3_T4 Family",
        gpus: Some("1"),
        vcpus: 4,
        memory_gb: 28,
        places: &[("eastus", Z3, &[], false), ("westus2", Z3, &[], false)],
    },
    SkuDef {
        name: "Standard_NV36ads_A10_v5",
        family: "StandardNVADSA10v5Family",
        gpus: Some("1"),
        vcpus: 36,
        memory_gb: 440,
        places: &[("eastus", Z3, &[], false)],
    },
    SkuDef {
        name: "Standard_NV12ads_A10_v5",
        family: "StandardNVADSA10v5Family",
        gpus: Some("1"),
        vcpus: 12,
        memory_gb: 110,
        places: &[("eastus", Z3, &[], false)],
    },
    SkuDef {
        name: "Standard_NV12s_v3",
        family: "standardNVSv3Family",
        gpus: Some("1"),
        vcpus: 12,
        memory_gb: 112,
        places: &[("eastus", Z3, &[], false)],
    },
    SkuDef {
        name: "Standard_D4s_v5",
        family: "standardDSv5Family",
        gpus: None,
        vcpus: 4,
        memory_gb: 16,
        places: &[("eastus", Z3, &[], false)],
    },
];

/// Linux on-demand and spot dollars per hour the fake's price API lists
/// per size (the same in both locations).
pub const RETAIL: &[(&str, f64, f64)] = &[
    ("Standard_NC24ads_A100_v4", 3.5, 0.9),
    ("Standard_NC96ads_A100_v4", 14.0, 3.6),
    ("Standard_NC40ads_H100_v5", 7.0, 2.1),
    ("Standard_ND96isr_H100_v5", 98.0, 30.0),
    ("Standard_ND96isr_MI300X_v5", 48.0, 14.0),
    ("Standard_NC4as_T4_v3", 0.5, 0.1),
    ("Standard_NV36ads_A10_v5", 3.2, 0.8),
    ("Standard_NV12s_v3", 1.1, 0.3),
];

/// A resource at the fake: a resource group's NSG, VNet, NIC, public IP,
/// disk or VM, as put (with what Azure adds).
#[derive(Clone, Debug)]
pub struct Res {
    pub id: String,
    pub name: String,
    /// `Microsoft.Network/networkInterfaces`, ...
    pub kind: String,
    /// The body as put.
    pub body: Value,
    pub made: Instant,
    pub deleting: Option<Instant>,
    pub n: usize,
    /// VM: evicted (spot).
    pub evicted: bool,
    pub restarts: u32,
    /// VM: Azure could not allocate it (the error code).
    pub failed: Option<String>,
}

impl Res {
    /// The Parasol tags.
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.body["tags"][k].as_str()
    }
}

/// The fake's state and knobs.
#[derive(Default)]
pub struct Azure {
    pub resources: Vec<Res>,
    pub groups: Vec<String>,
    pub tokens: Vec<String>,
    pub timing: Timing,
    /// `(size, location, zone)` refused for capacity; zone `None`: the
    /// whole location (`SkuNotAvailable`).
    pub refuse: Vec<(String, String, Option<String>)>,
    /// Sizes whose quota family is used up.
    pub over_quota: Vec<String>,
    /// `(size, location, zone)` whose VM is accepted and then fails
    /// allocation through its operation; zone `None`: any VM of the size
    /// there.
    pub refuse_late: Vec<(String, String, Option<String>)>,
    /// Long-running operations by id: the failure they end with, and how
    /// often they were read.
    pub ops: BTreeMap<String, (Option<(String, String)>, u32)>,
    /// The Retail Prices API is down (500).
    pub prices_down: bool,
    /// Retail Prices API pages served.
    pub price_pages: u32,
    /// The VM the metadata service runs on has no managed identity.
    pub no_identity: bool,
}

fn arm_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

impl Azure {
    /// The live (not deleting) resources of `kind`.
    pub fn live(&self, kind: &str) -> Vec<&Res> {
        self.resources
            .iter()
            .filter(|r| r.kind == kind && r.deleting.is_none())
            .collect()
    }

    /// Every resource of `kind` that exists, being deleted or not.
    pub fn all(&self, kind: &str) -> Vec<&Res> {
        self.resources.iter().filter(|r| r.kind == kind).collect()
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.resources
            .iter()
            .position(|r| r.id.eq_ignore_ascii_case(id))
    }

    /// Drops what has finished being deleted, and what its deleteOption
    /// takes with it.
    fn settle(&mut self) {
        let teardown = self.timing.teardown;
        loop {
            let Some(i) = self
                .resources
                .iter()
                .position(|r| r.deleting.is_some_and(|d| d.elapsed() >= teardown))
            else {
                return;
            };
            let r = self.resources.remove(i);
            if r.kind != VM {
                continue;
            }
            let now = Some(Instant::now() - teardown);
            let props = &r.body["properties"];
            for nic in props["networkProfile"]["networkInterfaces"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                if nic["properties"]["deleteOption"] != "Delete" {
                    continue;
                }
                let Some(n) = nic["id"].as_str().and_then(|id| self.find(id)) else {
                    continue;
                };
                self.resources[n].deleting = now;
                for cfg in self.resources[n].body["properties"]["ipConfigurations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    let p = &cfg["properties"]["publicIPAddress"];
                    if p["properties"]["deleteOption"] == "Delete" {
                        if let Some(i) = p["id"].as_str().and_then(|id| self.find(id)) {
                            self.resources[i].deleting = now;
                        }
                    }
                }
            }
            let os = &props["storageProfile"]["osDisk"];
            if os["deleteOption"] == "Delete" {
                let id = r.id.replace(
                    &format!("/{VM}/{}", r.name),
                    &format!("/{DISK}/{}", os["name"].as_str().unwrap_or("")),
                );
                if let Some(i) = self.find(&id) {
                    self.resources[i].deleting = now;
                }
            }
        }
    }

    /// Puts a running VM (with its IP, NIC and OS disk) at the fake as if
    /// made outside this server, in `group`; its id.
    pub fn plant(&mut self, group: &str, name: &str, tags: Value) -> String {
        if !self.groups.iter().any(|g| g == group) {
            self.groups.push(group.to_string());
        }
        let rg = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers");
        let old = Instant::now() - self.timing.boot - self.timing.ip_after;
        let ipid = format!("{rg}/{IP}/{name}-ip");
        let nicid = format!("{rg}/{NIC}/{name}-nic");
        let vmid = format!("{rg}/{VM}/{name}");
        let ip_body = json!({"location": "eastus", "tags": tags, "sku": {"name": "Standard"},
            "properties": {"publicIPAllocationMethod": "Static"}});
        let nic_body = json!({"location": "eastus", "tags": tags, "properties": {"ipConfigurations": [
            {"name": "primary", "properties": {"publicIPAddress": {"id": ipid, "properties": {"deleteOption": "Delete"}}}}]}});
        let vm_body = json!({"location": "eastus", "tags": tags, "properties": {
            "hardwareProfile": {"vmSize": "Standard_NC24ads_A100_v4"},
            "storageProfile": {"osDisk": {"name": format!("{name}-osdisk"), "createOption": "FromImage", "deleteOption": "Delete"}},
            "networkProfile": {"networkInterfaces": [{"id": nicid, "properties": {"deleteOption": "Delete"}}]}}});
        let disk_body = json!({"location": "eastus", "tags": tags, "sku": {"name": "Premium_LRS"},
            "properties": {"creationData": {"createOption": "FromImage"}, "diskSizeGB": 30}});
        for (kind, id, n, body) in [
            (IP, ipid, format!("{name}-ip"), ip_body),
            (NIC, nicid, format!("{name}-nic"), nic_body),
            (
                DISK,
                format!("{rg}/{DISK}/{name}-osdisk"),
                format!("{name}-osdisk"),
                disk_body,
            ),
            (VM, vmid.clone(), name.to_string(), vm_body),
        ] {
            let n_ = self.resources.len();
            self.resources.push(Res {
                id,
                name: n,
                kind: kind.into(),
                body,
                made: old,
                deleting: None,
                n: n_,
                evicted: false,
                restarts: 0,
                failed: None,
            });
        }
        vmid
    }

    /// Evicts the spot VM `id`: Azure deallocates it and, under
    /// `evictionPolicy: Delete`, deletes it.
    pub fn evict(&mut self, id: &str) {
        let i = self.find(id).expect("no such VM");
        self.resources[i].evicted = true;
        self.resources[i].deleting = Some(Instant::now());
    }

    /// Who holds `id` (a NIC's VM, an IP's NIC, a disk's VM), if anyone.
    fn holder(&self, id: &str) -> Option<String> {
        self.resources
            .iter()
            .filter(|r| r.deleting.is_none())
            .find(|r| {
                let b = r.body.to_string().to_ascii_lowercase();
                r.id != id && b.contains(&format!("\"{}\"", id.to_ascii_lowercase()))
            })
            .map(|r| r.id.clone())
    }

    fn render(&self, r: &Res, host: &str) -> Value {
        let _ = host;
        let mut out = r.body.clone();
        out["id"] = json!(r.id);
        out["name"] = json!(r.name);
        out["type"] = json!(r.kind);
        let since = r.made.elapsed();
        let state = if r.deleting.is_some() {
            "Deleting"
        } else if r.failed.is_some() {
            "Failed"
        } else if r.kind == VM && since < self.timing.boot {
            "Creating"
        } else if r.kind == DISK && since < self.timing.boot / 2 {
            "Updating"
        } else {
            "Succeeded"
        };
        if out["properties"].is_null() {
            out["properties"] = json!({});
        }
        out["properties"]["provisioningState"] = json!(state);
        match r.kind.as_str() {
            IP => {
                out["properties"]["ipAddress"] = json!(ip(r.n));
            }
            VM => {
                // Azure never answers customData.
                if let Some(os) = out["properties"]
                    .get_mut("osProfile")
                    .and_then(Value::as_object_mut)
                {
                    os.remove("customData");
                }
                out["properties"]["vmId"] = json!(format!("00000000-0000-4000-8000-{:012}", r.n));
            }
            DISK => {
                let held = self.holder(&r.id);
                out["properties"]["diskState"] = json!(if held.is_some() {
                    "Attached"
                } else {
                    "Unattached"
                });
                if let Some(h) = held {
                    out["managedBy"] = json!(h);
                }
            }
            _ => {}
        }
        out
    }

    fn instance_view(&self, r: &Res) -> Value {
        let since = r.made.elapsed();
        if let (Some(code), None) = (&r.failed, r.deleting) {
            return json!({"statuses": [{"code": format!("ProvisioningState/failed/{code}"),
                "level": "Error", "displayStatus": "Provisioning failed"}]});
        }
        let codes: Vec<&str> = if r.deleting.is_some() {
            if r.evicted {
                vec!["ProvisioningState/deleting", "PowerState/deallocated"]
            } else {
                vec!["ProvisioningState/deleting", "PowerState/stopped"]
            }
        } else if since < self.timing.boot / 2 {
            vec!["ProvisioningState/creating"]
        } else if since < self.timing.boot {
            vec!["ProvisioningState/creating", "PowerState/starting"]
        } else {
            vec!["ProvisioningState/succeeded", "PowerState/running"]
        };
        json!({"statuses": codes.iter().map(|c| json!({"code": c, "level": "Info"})).collect::<Vec<_>>()})
    }

    fn skus(&self, location: Option<&str>) -> Value {
        let mut out: Vec<Value> = SKUS
            .iter()
            .filter_map(|s| {
                let places: Vec<_> = s
                    .places
                    .iter()
                    .filter(|p| location.is_none_or(|l| l == p.0))
                    .collect();
                if places.is_empty() {
                    return None;
                }
                let mut caps = vec![
                    json!({"name": "vCPUs", "value": s.vcpus.to_string()}),
                    json!({"name": "MemoryGB", "value": s.memory_gb.to_string()}),
                ];
                if let Some(g) = s.gpus {
                    caps.push(json!({"name": "GPUs", "value": g}));
                }
                let mut restrictions = Vec::new();
                for (loc, _, rz, whole) in &places {
                    if *whole {
                        restrictions.push(json!({"type": "Location", "values": [loc],
                            "restrictionInfo": {"locations": [loc]}, "reasonCode": "NotAvailableForSubscription"}));
                    }
                    if !rz.is_empty() {
                        restrictions.push(json!({"type": "Zone", "values": [loc],
                            "restrictionInfo": {"locations": [loc], "zones": rz}, "reasonCode": "NotAvailableForSubscription"}));
                    }
                }
                Some(json!({
                    "resourceType": "virtualMachines",
                    "name": s.name,
                    "tier": "Standard",
                    "size": s.name.trim_start_matches("Standard_"),
                    "family": s.family,
                    "locations": places.iter().map(|p| p.0).collect::<Vec<_>>(),
                    "locationInfo": places.iter().map(|p| json!({"location": p.0, "zones": p.1})).collect::<Vec<_>>(),
                    "capabilities": caps,
                    "restrictions": restrictions,
                }))
            })
            .collect();
        // Resource SKUs lists other resource types too.
        out.push(
            json!({"resourceType": "disks", "name": "Premium_LRS", "tier": "Premium",
            "locations": ["eastus"], "restrictions": []}),
        );
        json!({"value": out})
    }

    /// The Retail Prices API: Linux, Windows, spot and low-priority items
    /// for the sizes and location the filter names, three to a page.
    fn prices(&mut self, req: &Recorded) -> Reply {
        if self.prices_down {
            return Reply::json(500, json!({"Error": "unavailable"}));
        }
        self.price_pages += 1;
        let q: BTreeMap<String, String> = form_urlencoded::parse(req.query.as_bytes())
            .into_owned()
            .collect();
        let filter = q.get("$filter").cloned().unwrap_or_default();
        let skip: usize = q.get("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut items = Vec::new();
        for loc in LOCATIONS {
            if !filter.contains(&format!("armRegionName eq '{loc}'")) {
                continue;
            }
            for (size, od, spot) in RETAIL {
                if !filter.contains(&format!("armSkuName eq '{size}'")) {
                    continue;
                }
                let short = size.trim_start_matches("Standard_").replace('_', " ");
                for (sku, product, price) in [
                    (short.clone(), "Virtual Machines Series", *od),
                    (short.clone(), "Virtual Machines Series Windows", od * 1.4),
                    (format!("{short} Spot"), "Virtual Machines Series", *spot),
                    (
                        format!("{short} Low Priority"),
                        "Virtual Machines Series",
                        spot * 0.8,
                    ),
                ] {
                    items.push(json!({
                        "currencyCode": "USD", "retailPrice": price, "unitPrice": price,
                        "armRegionName": loc, "location": loc, "armSkuName": size,
                        "skuName": sku, "productName": product, "serviceName": "Virtual Machines",
                        "type": "Consumption", "unitOfMeasure": "1 Hour",
                    }));
                }
            }
        }
        let page: Vec<Value> = items.iter().skip(skip).take(3).cloned().collect();
        let next = (skip + 3 < items.len()).then(|| {
            let host = req.header("host").unwrap_or("127.0.0.1");
            let rest: String = form_urlencoded::Serializer::new(String::new())
                .append_pair(
                    "api-version",
                    q.get("api-version").map_or("", |s| s.as_str()),
                )
                .append_pair("$filter", &filter)
                .append_pair("$skip", &(skip + 3).to_string())
                .finish();
            format!("http://{host}/api/retail/prices?{rest}")
        });
        Reply::json(
            200,
            json!({"BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
                   "Items": page, "NextPageLink": next, "Count": page.len()}),
        )
    }

    fn token(&mut self, req: &Recorded) -> Reply {
        let form = req.body.as_str().unwrap_or("");
        let f: BTreeMap<String, String> = form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| f.get(k).map(String::as_str);
        if get("grant_type") != Some("client_credentials")
            || get("scope") != Some("https://management.azure.com/.default")
        {
            return Reply::json(
                400,
                json!({"error": "invalid_request", "error_description": "AADSTS900144: The request body must contain the grant_type and scope parameters."}),
            );
        }
        if get("client_id") != Some(CLIENT_ID) || get("client_secret") != Some(CLIENT_SECRET) {
            return Reply::json(
                401,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 0"}),
            );
        }
        let t = format!("azure-token-{}", self.tokens.len());
        self.tokens.push(t.clone());
        Reply::json(
            200,
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": t}),
        )
    }

    /// App Service's managed identity token, as its local endpoint gives
    /// it.
    fn app_identity(&mut self, req: &Recorded) -> Reply {
        let q: BTreeMap<String, String> = form_urlencoded::parse(req.query.as_bytes())
            .into_owned()
            .collect();
        if req.header("x-identity-header") != Some(IDENTITY_HEADER)
            || q.get("api-version").map(String::as_str) != Some("2019-08-01")
            || q.get("resource").map(String::as_str) != Some("https://management.azure.com/")
        {
            return Reply::json(
                400,
                json!({"statusCode": 400, "message": "Unable to load the proper Managed Identity."}),
            );
        }
        let t = format!("azure-token-{}", self.tokens.len());
        self.tokens.push(t.clone());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Reply::json(
            200,
            json!({"access_token": t, "expires_on": (now + 86_400).to_string(),
            "resource": "https://management.azure.com/", "token_type": "Bearer",
            "client_id": q.get("client_id").cloned().unwrap_or_else(|| CLIENT_ID.into())}),
        )
    }

    /// The instance metadata service's managed identity token, as an Azure
    /// VM's IMDS gives it (`expires_in` a string).
    fn identity(&mut self, req: &Recorded) -> Reply {
        if req.header("metadata") != Some("true") {
            return Reply::json(
                400,
                json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
            );
        }
        let q: BTreeMap<String, String> = form_urlencoded::parse(req.query.as_bytes())
            .into_owned()
            .collect();
        if q.get("resource").map(String::as_str) != Some("https://management.azure.com/") {
            return Reply::json(
                400,
                json!({"error": "invalid_resource", "error_description": "AADSTS500011: The resource principal was not found."}),
            );
        }
        if self.no_identity {
            return Reply::json(
                400,
                json!({"error": "invalid_request", "error_description": "Identity not found"}),
            );
        }
        let t = format!("azure-token-{}", self.tokens.len());
        self.tokens.push(t.clone());
        Reply::json(
            200,
            json!({"access_token": t, "expires_in": "86399", "expires_on": "1900000000",
            "resource": "https://management.azure.com/", "token_type": "Bearer"}),
        )
    }

    /// An accepted long-running operation: its status URL. It succeeds,
    /// or ends with `failure`.
    fn accepted(
        &mut self,
        req: &Recorded,
        status: u16,
        body: Option<Value>,
        failure: Option<(String, String)>,
    ) -> Reply {
        let host = req.header("host").unwrap_or("127.0.0.1");
        let op = format!("op-{}", self.ops.len());
        self.ops.insert(op.clone(), (failure, 0));
        let url = format!(
            "http://{host}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/eastus/operations/{op}?api-version=2026-04-01",
        );
        let mut r = match body {
            Some(b) => Reply::json(status, b),
            None => Reply::text(status, ""),
        };
        r.headers.push(("azure-asyncoperation", url));
        r
    }

    fn put(&mut self, req: &Recorded, kind: &str, id: &str, name: &str, group: &str) -> Reply {
        if !self.groups.iter().any(|g| g.eq_ignore_ascii_case(group)) {
            return arm_error(
                404,
                "ResourceGroupNotFound",
                &format!("Resource group '{group}' could not be found."),
            );
        }
        let body = req.body.clone();
        let location = body["location"].as_str().unwrap_or("").to_string();
        if let Some(i) = self.find(id) {
            if self.resources[i].deleting.is_some() {
                return arm_error(409, "OperationNotAllowed", "The resource is being deleted.");
            }
            // An update of the same resource: what was put, kept.
            let r = self.resources[i].clone();
            return Reply::json(200, self.render(&r, ""));
        }
        // What it refers to must exist.
        let refs: Vec<String> = match kind {
            NIC => body["properties"]["ipConfigurations"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| {
                    [
                        &c["properties"]["publicIPAddress"]["id"],
                        &c["properties"]["subnet"]["id"],
                    ]
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
                })
                .collect(),
            VM => {
                let p = &body["properties"];
                let mut v: Vec<String> = p["networkProfile"]["networkInterfaces"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n["id"].as_str().map(str::to_string))
                    .collect();
                v.extend(
                    p["storageProfile"]["dataDisks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d["managedDisk"]["id"].as_str().map(str::to_string)),
                );
                v
            }
            _ => vec![],
        };
        for r in &refs {
            let exists = match r.split_once("/subnets/") {
                Some((vnet, _)) => self.find(vnet).is_some(),
                None => self
                    .find(r)
                    .is_some_and(|i| self.resources[i].deleting.is_none()),
            };
            if !exists {
                return arm_error(
                    400,
                    "InvalidResourceReference",
                    &format!("Resource {r} referenced by resource {id} was not found."),
                );
            }
        }
        if kind == VM {
            if let Some(refused) = self.refuse_vm(&body, &location) {
                return refused;
            }
            let zone = body["zones"][0].as_str();
            for d in body["properties"]["storageProfile"]["dataDisks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["managedDisk"]["id"].as_str())
            {
                let disk = self.find(d).map(|i| &self.resources[i].body);
                let disk_zone = disk.and_then(|b| b["zones"][0].as_str());
                if disk_zone != zone {
                    return arm_error(400, "InvalidParameter", &format!(
                        "Disk {d} in zone {disk_zone:?} cannot be attached to a VM in zone {zone:?}."));
                }
            }
            for r in &refs {
                if let Some(h) = self.holder(r) {
                    return arm_error(
                        409,
                        "OperationNotAllowed",
                        &format!("{r} is already in use by {h}."),
                    );
                }
            }
        }
        let n = self.resources.len();
        self.resources.push(Res {
            id: id.to_string(),
            name: name.to_string(),
            kind: kind.to_string(),
            body: body.clone(),
            made: Instant::now(),
            deleting: None,
            n,
            evicted: false,
            restarts: 0,
            failed: None,
        });
        if kind == VM {
            // The OS disk, named as the body says.
            let os = &body["properties"]["storageProfile"]["osDisk"];
            let disk = os["name"].as_str().unwrap_or("osdisk").to_string();
            let did = id.replace(&format!("/{VM}/{name}"), &format!("/{DISK}/{disk}"));
            self.resources.push(Res {
                id: did,
                name: disk,
                kind: DISK.into(),
                body: json!({"location": body["location"], "sku": {"name": "Premium_LRS"}, "zones": body["zones"].as_array().cloned().unwrap_or_default(),
                    "properties": {"creationData": {"createOption": "FromImage"}, "diskSizeGB": 30, "osType": "Linux"}}),
                made: Instant::now(),
                deleting: None,
                n: n + 1,
                evicted: false,
                restarts: 0,
                failed: None,
            });
        }
        let late = if kind == VM {
            self.late_refusal(&body, &location)
        } else {
            None
        };
        if let Some((code, _)) = &late {
            self.resources[n].failed = Some(code.clone());
        }
        let r = self.resources[n].clone();
        let mut rendered = self.render(&r, "");
        if kind == VM {
            // Accepted, whatever its operation will say.
            rendered["properties"]["provisioningState"] = json!("Creating");
        }
        match kind {
            DISK => Reply::json(200, rendered),
            _ => self.accepted(req, 201, Some(rendered), late),
        }
    }

    /// Whether a VM may be made: capacity per zone or location, quota.
    fn refuse_vm(&self, body: &Value, location: &str) -> Option<Reply> {
        let size = body["properties"]["hardwareProfile"]["vmSize"]
            .as_str()
            .unwrap_or("");
        let zone = body["zones"][0].as_str().map(str::to_string);
        let Some(sku) = SKUS.iter().find(|s| s.name == size) else {
            return Some(arm_error(
                409,
                "SkuNotAvailable",
                &format!("The requested size {size} is not available in location '{location}'."),
            ));
        };
        let Some(place) = sku.places.iter().find(|p| p.0 == location) else {
            return Some(arm_error(
                409,
                "SkuNotAvailable",
                &format!("The requested size {size} is not available in location '{location}'."),
            ));
        };
        if place.3
            || zone
                .as_deref()
                .is_some_and(|z| place.2.contains(&z) || !place.1.contains(&z))
        {
            return Some(arm_error(409, "SkuNotAvailable", &format!("The requested VM size {size} is currently not available in location '{location}' zones '{}'.", zone.unwrap_or_default())));
        }
        if self.over_quota.iter().any(|s| s == size) {
            return Some(arm_error(409, "OperationNotAllowed", &format!(
                "Operation could not be completed as it results in exceeding approved {} Cores quota. Additional details - Deployment Model: Resource Manager, Location: {location}, Current Limit: 0, Current Usage: 0, Additional Required: {}.",
                sku.family, sku.vcpus)));
        }
        for (s, l, z) in &self.refuse {
            if s == size && l == location && (z.is_none() || *z == zone) {
                return Some(match z {
                    None => arm_error(409, "SkuNotAvailable", &format!("The requested VM size {size} is currently not available in location '{location}'.")),
                    Some(z) => arm_error(409, "ZonalAllocationFailed", &format!("Allocation failed. We do not have sufficient capacity for the requested VM size in zone '{z}'.")),
                });
            }
        }
        None
    }

    /// The allocation failure a VM's operation ends with, if refused late.
    fn late_refusal(&self, body: &Value, location: &str) -> Option<(String, String)> {
        let size = body["properties"]["hardwareProfile"]["vmSize"].as_str()?;
        let zone = body["zones"][0].as_str().map(str::to_string);
        self.refuse_late
            .iter()
            .find(|(s, l, z)| s == size && l == location && (z.is_none() || *z == zone))
            .map(|_| match &zone {
                Some(z) => ("ZonalAllocationFailed".to_string(), format!(
                    "Allocation failed. We do not have sufficient capacity for the requested VM size in zone '{z}'. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance")),
                None => ("AllocationFailed".to_string(), "Allocation failed. We do not have sufficient capacity for the requested VM size in this region. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance".to_string()),
            })
    }

    fn delete(&mut self, req: &Recorded, kind: &str, id: &str) -> Reply {
        let Some(i) = self.find(id) else {
            return Reply::text(204, "");
        };
        if self.resources[i].deleting.is_none() {
            if let Some(h) = self.holder(id) {
                let code = match kind {
                    NIC => "NicInUse",
                    IP => "PublicIPAddressInUse",
                    _ => "OperationNotAllowed",
                };
                return arm_error(
                    400,
                    code,
                    &format!("{id} is in use by {h} and cannot be deleted."),
                );
            }
            self.resources[i].deleting = Some(Instant::now());
        }
        // Azure deletes a NIC at once; the rest take a moment.
        if kind == NIC {
            self.resources.remove(i);
            return Reply::text(200, "");
        }
        self.accepted(req, 202, None, None)
    }

    fn list(&self, kind: &str) -> Reply {
        let v: Vec<Value> = self
            .all(kind)
            .into_iter()
            .map(|r| self.render(r, ""))
            .collect();
        Reply::json(200, json!({"value": v}))
    }
}

/// The resource types.
pub const VM: &str = "Microsoft.Compute/virtualMachines";
pub const DISK: &str = "Microsoft.Compute/disks";
pub const NIC: &str = "Microsoft.Network/networkInterfaces";
pub const IP: &str = "Microsoft.Network/publicIPAddresses";

impl Cloud for Azure {
    fn handle(&mut self, req: &Recorded) -> Reply {
        self.settle();
        let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        if req.method == "POST" && segs.len() == 4 && segs[1..] == ["oauth2", "v2.0", "token"] {
            if segs[0] != TENANT {
                return Reply::json(
                    400,
                    json!({"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."}),
                );
            }
            return self.token(req);
        }
        if (req.method.as_str(), req.path.as_str()) == ("GET", "/metadata/identity/oauth2/token") {
            return self.identity(req);
        }
        if (req.method.as_str(), req.path.as_str()) == ("GET", "/msi/token") {
            return self.app_identity(req);
        }
        if req.path == "/api/retail/prices" {
            return self.prices(req);
        }
        let authorized = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| self.tokens.iter().any(|k| k == t));
        if !authorized {
            return arm_error(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            );
        }
        if segs.len() < 2 || segs[0] != "subscriptions" || segs[1] != SUBSCRIPTION {
            return arm_error(
                404,
                "SubscriptionNotFound",
                "The subscription could not be found.",
            );
        }
        let m = req.method.as_str();
        match &segs[2..] {
            ["resourcegroups", g] | ["resourceGroups", g] if m == "PUT" => {
                if !self.groups.iter().any(|x| x.eq_ignore_ascii_case(g)) {
                    self.groups.push(g.to_string());
                }
                Reply::json(
                    201,
                    json!({"id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{g}"), "name": g,
                    "location": req.body["location"], "properties": {"provisioningState": "Succeeded"}}),
                )
            }
            ["providers", _, "locations", _, "operations", op] => {
                let Some((failure, reads)) = self.ops.get_mut(*op) else {
                    return arm_error(404, "NotFound", "The operation was not found.");
                };
                *reads += 1;
                Reply::json(
                    200,
                    match failure {
                        // A failure takes a moment to be known.
                        Some(_) if *reads == 1 => json!({"name": op, "status": "InProgress"}),
                        Some((code, message)) => json!({"name": op, "status": "Failed",
                        "error": {"code": code, "message": message}}),
                        None => json!({"name": op, "status": "Succeeded"}),
                    },
                )
            }
            ["providers", "Microsoft.Compute", "skus"] => {
                let q: BTreeMap<String, String> = form_urlencoded::parse(req.query.as_bytes())
                    .into_owned()
                    .collect();
                let loc = q.get("$filter").and_then(|f| {
                    f.strip_prefix("location eq '")?
                        .strip_suffix('\'')
                        .map(str::to_string)
                });
                Reply::json(200, self.skus(loc.as_deref()))
            }
            ["providers", ns, ty] if m == "GET" => self.list(&format!("{ns}/{ty}")),
            ["resourceGroups", group, "providers", ns, ty, name, rest @ ..] => {
                let kind = format!("{ns}/{ty}");
                let id = format!(
                    "/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{kind}/{name}"
                );
                match (m, rest) {
                    ("PUT", []) => self.put(req, &kind, &id, name, group),
                    ("DELETE", []) => self.delete(req, &kind, &id),
                    ("GET", []) => match self.find(&id) {
                        Some(i) => {
                            let r = self.resources[i].clone();
                            Reply::json(200, self.render(&r, ""))
                        }
                        None => arm_error(404, "ResourceNotFound", &format!("The Resource '{kind}/{name}' under resource group '{group}' was not found.")),
                    },
                    ("GET", ["instanceView"]) => match self.find(&id) {
                        Some(i) => Reply::json(200, self.instance_view(&self.resources[i])),
                        None => arm_error(404, "ResourceNotFound", "The VM was not found."),
                    },
                    ("POST", ["restart"]) => match self.find(&id) {
                        Some(i) if self.resources[i].deleting.is_none() => {
                            self.resources[i].restarts += 1;
                            self.accepted(req, 202, None, None)
                        }
                        _ => arm_error(404, "ResourceNotFound", "The VM was not found."),
                    },
                    _ => arm_error(400, "InvalidRequest", "unsupported"),
                }
            }
            _ => arm_error(404, "InvalidResourceType", "unknown path"),
        }
    }

    fn rate_limited(&self) -> Value {
        json!({"error": {"code": "TooManyRequests", "message": "The request is being throttled."}})
    }

    fn server_error(&self) -> Value {
        json!({"error": {"code": "InternalServerError", "message": "Encountered internal server error."}})
    }

    fn documents(&self) -> Vec<&'static openapi::Document> {
        vec![
            openapi::docs::azure_compute(),
            openapi::docs::azure_network(),
        ]
    }

    /// Entra ID, the Retail Prices API, resource groups (Microsoft.Resources)
    /// and operation status: outside the two documents.
    fn undocumented(&self, path: &str) -> bool {
        path.contains("/oauth2/")
            || path == "/msi/token"
            || path.starts_with("/api/retail/")
            || path.to_ascii_lowercase().contains("/resourcegroups/")
                && !path.contains("/providers/")
            || path.contains("/operations/")
    }
}
