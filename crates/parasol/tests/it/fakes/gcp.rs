//! A fake Compute Engine API v1 under `/compute/v1`, with an OAuth2
//! token endpoint at `/oauth2/token`, held to Google's discovery document
//! (`specs/gcp-compute.openapi.json`, derived from google-api-python-
//! client's `compute.v1.json`): every request and answer is checked
//! against it, and its objects are closed, so an unknown field or a bad
//! enum fails the test.
//!
//! It also stands in for the GCE metadata server's token URL
//! ([`METADATA_TOKEN_PATH`]), which answers only with
//! `Metadata-Flavor: Google`.
//!
//! The token endpoint takes RFC 7523's `jwt-bearer` grant: it checks the
//! JWT's RS256 signature against the test service account's public key
//! (derived from [`PRIVATE_KEY_PEM`]), its issuer, audience (Google's
//! documented `https://oauth2.googleapis.com/token`), scope and
//! expiry, and hands out bearer tokens the API then requires. A bad
//! assertion gets Google's `invalid_grant`.
//!
//! Machines go `PROVISIONING` → `STAGING` → `RUNNING` (the external IP
//! appears later), and once deleted `STOPPING` until they are gone (404).
//! Inserts, deletes and resets answer an operation, `PENDING`, then
//! `RUNNING` when first read (and for [`Gcp::slow_operations`] reads more),
//! then `DONE`; an insert that fails (the zone's
//! pool is exhausted, a quota is exceeded) makes no machine and carries
//! Google's error codes in the operation. A repeated `requestId` answers
//! the first insert's operation and makes nothing. A name taken in the
//! zone is 409 `alreadyExists`; an insert Google refuses outright (a
//! machine type or GPU the zone lacks, more GPUs than it attaches, a Spot
//! VM that restarts itself, a GPU machine that live-migrates) is 400. Spot machines can be preempted: they go
//! `TERMINATED` and, as `instanceTerminationAction: DELETE` asks, are
//! deleted. Aggregated lists page by `maxResults` and `pageToken`.
//!
//! Under `/v1` it is also the Cloud Billing Catalog API's
//! `services.skus.list` for Compute Engine ([`Billing`]), held to
//! `specs/gcp-billing.openapi.json` (from `cloudbilling.v1.json`): a few
//! SKUs in Google's shape, a page at a time, or Google's 403
//! `SERVICE_DISABLED` when the API is off.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use super::openapi::{docs, Document};
use super::{ip, Cloud, Recorded, Reply, Timing};

/// The project the fake serves.
pub const PROJECT: &str = "parasol-test";
/// Where the fake serves the GCE metadata server's token.
pub const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// The test service account.
pub const CLIENT_EMAIL: &str = "parasol@parasol-test.iam.gserviceaccount.com";
/// Its key id.
pub const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
/// Its private key (a key made for these tests only, PKCS#8).
pub const PRIVATE_KEY_PEM: &str = include_str!("gcp-test-service-account.pem");

/// One machine type in one zone: `(zone, machine type, vCPUs, memory MB,
/// (accelerator, count))`.
pub type ZoneMachineType = (
    &'static str,
    &'static str,
    i64,
    i64,
    Option<(&'static str, i64)>,
);

/// What `machineTypes.aggregatedList` lists, with Google's published
/// shapes.
pub const MACHINE_TYPES: &[ZoneMachineType] = &[
    (
        "us-central1-a",
        "a2-highgpu-1g",
        12,
        87040,
        Some(("nvidia-tesla-a100", 1)),
    ),
    (
        "us-central1-a",
        "a2-highgpu-8g",
        96,
        696320,
        Some(("nvidia-tesla-a100", 8)),
    ),
    (
        "us-central1-a",
        "a2-megagpu-16g",
        96,
        1392640,
        Some(("nvidia-tesla-a100", 16)),
    ),
    (
        "us-central1-a",
        "a3-highgpu-8g",
        208,
        1916928,
        Some(("nvidia-h100-80gb", 8)),
    ),
    (
        "us-central1-a",
        "a3-megagpu-8g",
        208,
        1916928,
        Some(("nvidia-h100-mega-80gb", 8)),
    ),
    (
        "us-central1-a",
        "g2-standard-4",
        4,
        16384,
        Some(("nvidia-l4", 1)),
    ),
    (
        "us-central1-a",
        "g2-standard-24",
        24,
        98304,
        Some(("nvidia-l4", 2)),
    ),
    ("us-central1-a", "n1-standard-8", 8, 30720, None),
    ("us-central1-a", "n1-standard-16", 16, 61440, None),
    ("us-central1-a", "n1-standard-32", 32, 122880, None),
    ("us-central1-a", "n1-standard-64", 64, 245760, None),
    ("us-central1-a", "e2-standard-4", 4, 16384, None),
    (
        "us-central1-b",
        "a3-highgpu-1g",
        26,
        239616,
        Some(("nvidia-h100-80gb", 1)),
    ),
    (
        "us-central1-b",
        "a3-highgpu-8g",
        208,
        1916928,
        Some(("nvidia-h100-80gb", 8)),
    ),
    (
        "us-central1-b",
        "a3-ultragpu-8g",
        224,
        3022848,
        Some(("nvidia-h200-141gb", 8)),
    ),
    (
        "us-central1-b",
        "a4-highgpu-8g",
        224,
        4063232,
        Some(("nvidia-b200", 8)),
    ),
    (
        "us-central1-b",
        "g2-standard-4",
        4,
        16384,
        Some(("nvidia-l4", 1)),
    ),
    (
        "us-central1-b",
        "g2-standard-8",
        8,
        32768,
        Some(("nvidia-l4", 1)),
    ),
    ("us-central1-b", "n1-standard-8", 8, 30720, None),
    ("us-central1-b", "n1-standard-16", 16, 61440, None),
    ("us-central1-b", "n1-standard-32", 32, 122880, None),
    (
        "us-central1-c",
        "a2-ultragpu-1g",
        12,
        174080,
        Some(("nvidia-a100-80gb", 1)),
    ),
    (
        "us-central1-c",
        "a2-ultragpu-8g",
        96,
        1392640,
        Some(("nvidia-a100-80gb", 8)),
    ),
    (
        "us-central1-c",
        "a3-edgegpu-8g",
        208,
        1916928,
        Some(("nvidia-h100-80gb", 8)),
    ),
    ("us-central1-c", "n1-standard-8", 8, 30720, None),
    ("us-central1-c", "n1-standard-16", 16, 61440, None),
    ("us-central1-c", "n1-standard-32", 32, 122880, None),
    (
        "us-east1-b",
        "g2-standard-4",
        4,
        16384,
        Some(("nvidia-l4", 1)),
    ),
    ("us-east1-b", "n1-standard-8", 8, 30720, None),
    ("us-east1-b", "n1-standard-16", 16, 61440, None),
    ("us-east1-b", "n1-standard-32", 32, 122880, None),
    (
        "europe-west4-a",
        "a3-highgpu-8g",
        208,
        1916928,
        Some(("nvidia-h100-80gb", 8)),
    ),
    ("europe-west4-a", "n1-standard-8", 8, 30720, None),
];

/// `(zone, accelerator type, most per machine)`: what
/// `acceleratorTypes.aggregatedList` lists.
pub const ACCELERATOR_TYPES: &[(&str, &str, i64)] = &[
    ("us-central1-a", "nvidia-tesla-a100", 16),
    ("us-central1-a", "nvidia-h100-80gb", 8),
    ("us-central1-a", "nvidia-h100-mega-80gb", 8),
    ("us-central1-a", "nvidia-l4", 8),
    ("us-central1-a", "nvidia-tesla-t4", 4),
    ("us-central1-a", "nvidia-tesla-v100", 8),
    ("us-central1-b", "nvidia-h100-80gb", 8),
    ("us-central1-b", "nvidia-h200-141gb", 8),
    ("us-central1-b", "nvidia-b200", 8),
    ("us-central1-b", "nvidia-l4", 8),
    ("us-central1-b", "nvidia-tesla-t4", 4),
    ("us-central1-c", "nvidia-a100-80gb", 8),
    ("us-central1-c", "nvidia-tesla-p100", 4),
    ("us-central1-c", "nvidia-tesla-t4", 4),
    ("us-east1-b", "nvidia-l4", 8),
    ("us-east1-b", "nvidia-tesla-t4", 4),
    ("us-east1-b", "nvidia-tesla-p100", 4),
    ("europe-west4-a", "nvidia-h100-80gb", 8),
    ("europe-west4-a", "nvidia-tesla-t4", 4),
];

/// A machine at the fake.
#[derive(Clone, Debug)]
pub struct Machine {
    pub id: u64,
    pub name: String,
    pub zone: String,
    pub machine_type: String,
    /// The body the insert sent (labels, scheduling, disks, metadata...).
    pub spec: Value,
    pub launched: Instant,
    /// When a delete (or a spot preemption) began.
    pub stopping: Option<Instant>,
    pub preempted: bool,
    pub resets: u32,
    pub n: usize,
}

impl Machine {
    /// Whether the insert asked for Spot.
    pub fn spot(&self) -> bool {
        self.spec["scheduling"]["provisioningModel"] == "SPOT"
    }
    /// The disks attached besides the boot disk, as `zone/name`.
    pub fn attached(&self) -> Vec<String> {
        self.spec["disks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["source"].as_str())
            .map(|s| {
                let parts: Vec<&str> = s.rsplit('/').collect();
                format!("{}/{}", parts[2], parts[0])
            })
            .collect()
    }
}

/// A persistent disk at the fake.
#[derive(Clone, Debug)]
pub struct Disk {
    pub id: u64,
    pub name: String,
    pub zone: String,
    pub size_gb: i64,
    pub labels: Value,
    pub made: Instant,
    pub deleting: Option<Instant>,
}

/// The fake's state and knobs.
#[derive(Default)]
pub struct Gcp {
    pub machines: Vec<Machine>,
    pub disks: Vec<Disk>,
    pub firewalls: Vec<Value>,
    /// Operations by name: the operation as it ends, and how many times
    /// it was read.
    pub operations: BTreeMap<String, (Value, u32)>,
    /// How many reads an operation stays `RUNNING` beyond the first
    /// (Google's take seconds to minutes).
    pub slow_operations: u32,
    /// Operations Google started itself (`compute.instances.preempted`).
    pub notices: Vec<Value>,
    /// Insert `requestId` → the operation it made.
    pub request_ids: HashMap<String, String>,
    /// Tokens handed out.
    pub tokens: Vec<String>,
    /// Assertions the token endpoint refused, and why.
    pub refused_assertions: Vec<String>,
    pub timing: Timing,
    /// `(cloud type, zone)` pairs whose inserts fail with
    /// `ZONE_RESOURCE_POOL_EXHAUSTED`; the cloud type is the machine type,
    /// or an N1 offer's `shape+Nxaccelerator`.
    pub exhausted: Vec<(String, String)>,
    /// A quota every insert exceeds, by Google's name.
    pub quota_exceeded: Option<String>,
    /// The next N calls get 403 `rateLimitExceeded`, Google's other way of
    /// saying 429.
    pub rate_limit_403_next: u32,
    /// The Cloud Billing Catalog API under `/v1`.
    pub billing: Billing,
    next_id: u64,
}

/// The fake's Cloud Billing Catalog API: Compute Engine's SKUs as
/// `services.skus.list` answers them.
pub struct Billing {
    /// The SKUs listed, in Google's `Sku` shape ([`sku`]).
    pub skus: Vec<Value>,
    /// The most SKUs a page holds, whatever `pageSize` asks (Google may
    /// answer fewer than asked; the adapter must follow `nextPageToken`).
    pub page_size: usize,
    /// The API is not enabled on the project: every call is Google's 403
    /// `SERVICE_DISABLED`.
    pub disabled: bool,
}

impl Default for Billing {
    fn default() -> Self {
        Billing {
            skus: default_skus(),
            page_size: 3,
            disabled: false,
        }
    }
}

/// Compute Engine's service id in the catalog.
pub const COMPUTE_SERVICE: &str = "6F81-5844-456A";

/// What the default SKUs make `g2-standard-4` (4 vCPUs, 16 GiB, one L4)
/// cost in us-central1, on demand and Spot, in cents per hour:
/// 4 × 0.03 + 16 × 0.0035 + 0.60 and 4 × 0.01 + 16 × 0.0015 + 0.25.
pub const G2_STANDARD_4_API_CENTS: (i64, i64) = (78, 31);

/// One SKU as the catalog lists it: `usage` is `OnDemand` or
/// `Preemptible`, `unit` `h` or `GiBy.h`, the price in dollars.
pub fn sku(
    id: &str,
    description: &str,
    group: &str,
    usage: &str,
    unit: &str,
    dollars: f64,
) -> Value {
    let units = dollars.trunc() as i64;
    let nanos = ((dollars - dollars.trunc()) * 1e9).round() as i64;
    json!({
        "name": format!("services/{COMPUTE_SERVICE}/skus/{id}"),
        "skuId": id,
        "description": description,
        "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute",
                     "resourceGroup": group, "usageType": usage},
        "serviceRegions": ["us-central1", "us-east1", "us-west1"],
        "pricingInfo": [{
            "summary": "",
            "pricingExpression": {
                "usageUnit": unit,
                "displayQuantity": 1,
                "tieredRates": [{"startUsageAmount": 0,
                                 "unitPrice": {"currencyCode": "USD", "units": units.to_string(), "nanos": nanos}}],
                "usageUnitDescription": if unit == "h" { "hour" } else { "gibibyte hour" },
                "baseUnit": if unit == "h" { "s" } else { "By.s" },
                "baseUnitDescription": if unit == "h" { "second" } else { "byte second" },
                "baseUnitConversionFactor": if unit == "h" { 3600.0 } else { 3865470566400.0 },
            },
            "currencyConversionRate": 1,
            "effectiveTime": "2026-12-01T00:00:00.000Z",
        }],
        "serviceProviderName": "Google",
        "geoTaxonomy": {"type": "MULTI_REGIONAL", "regions": ["us-central1", "us-east1", "us-west1"]},
    })
}

/// A few of Compute Engine's SKUs, in Google's names: G2's vCPUs and
/// memory and the L4, on demand and Spot (so G2 types are priced from the
/// API), a commitment and another family's (which price nothing served).
pub fn default_skus() -> Vec<Value> {
    vec![
        sku(
            "0A1B-0001",
            "G2 Instance Core running in Americas",
            "CPU",
            "OnDemand",
            "h",
            0.03,
        ),
        sku(
            "0A1B-0002",
            "G2 Instance Ram running in Americas",
            "RAM",
            "OnDemand",
            "GiBy.h",
            0.0035,
        ),
        sku(
            "0A1B-0003",
            "Nvidia L4 GPU running in Americas",
            "GPU",
            "OnDemand",
            "h",
            0.60,
        ),
        sku(
            "0A1B-0004",
            "Spot Preemptible G2 Instance Core running in Americas",
            "CPU",
            "Preemptible",
            "h",
            0.01,
        ),
        sku(
            "0A1B-0005",
            "Spot Preemptible G2 Instance Ram running in Americas",
            "RAM",
            "Preemptible",
            "GiBy.h",
            0.0015,
        ),
        sku(
            "0A1B-0006",
            "Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas",
            "GPU",
            "Preemptible",
            "h",
            0.25,
        ),
        sku(
            "0A1B-0007",
            "Commitment v1: G2 Cpu in Americas for 1 Year",
            "CPU",
            "Commit1Yr",
            "h",
            0.019,
        ),
        sku(
            "0A1B-0008",
            "E2 Instance Core running in Americas",
            "CPU",
            "OnDemand",
            "h",
            0.022,
        ),
    ]
}

fn err(status: u16, reason: &str, message: &str) -> Reply {
    let code = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    };
    Reply::json(
        status,
        json!({"error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": code,
        }}),
    )
}

fn query(req: &Recorded, key: &str) -> Option<String> {
    form_urlencoded::parse(req.query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn base() -> String {
    format!("https://compute.googleapis.com/compute/v1/projects/{PROJECT}")
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(r, _)| r)
}

impl Gcp {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        4_000_000_000_000_000_000 + self.next_id
    }

    /// Machines that exist and are not being torn down.
    pub fn live(&self) -> Vec<&Machine> {
        self.machines
            .iter()
            .filter(|m| m.stopping.is_none())
            .collect()
    }

    /// Puts a running on-demand `g2-standard-4` machine at the fake, as if
    /// made elsewhere, labelled with `labels`.
    pub fn plant(&mut self, name: &str, labels: Value) -> String {
        let id = self.id();
        let n = self.machines.len();
        self.machines.push(Machine {
            id,
            name: name.into(),
            zone: "us-central1-a".into(),
            machine_type: "g2-standard-4".into(),
            spec: json!({"labels": labels, "scheduling": {"provisioningModel": "STANDARD"}}),
            launched: Instant::now() - self.timing.boot - self.timing.ip_after,
            stopping: None,
            preempted: false,
            resets: 0,
            n,
        });
        format!("us-central1-a/{name}")
    }

    /// Google reclaims the spot machine `name`: it stops, and is deleted.
    pub fn preempt(&mut self, name: &str) {
        let m = self
            .machines
            .iter_mut()
            .find(|m| m.name == name && m.stopping.is_none())
            .expect("a live machine of that name");
        assert!(m.spot(), "only spot machines are preempted");
        m.stopping = Some(Instant::now());
        m.preempted = true;
        let (zone, name) = (m.zone.clone(), m.name.clone());
        let id = self.id();
        let scope = format!("{}/zones/{zone}", base());
        self.notices.push(json!({
            "kind": "compute#operation",
            "id": id.to_string(),
            "name": format!("systemevent-{id}"),
            "operationType": "compute.instances.preempted",
            "targetLink": format!("{scope}/instances/{name}"),
            "targetId": id.to_string(),
            "status": "DONE",
            "statusMessage": "Instance was preempted.",
            "user": "system",
            "progress": 100,
            "insertTime": now_rfc3339(),
            "startTime": now_rfc3339(),
            "endTime": now_rfc3339(),
            "zone": scope,
            "selfLink": format!("{scope}/operations/systemevent-{id}"),
        }));
    }

    /// Forgets what has finished going away.
    fn settle(&mut self) {
        let teardown = self.timing.teardown;
        self.machines
            .retain(|m| m.stopping.is_none_or(|t| t.elapsed() < teardown));
        self.disks
            .retain(|d| d.deleting.is_none_or(|t| t.elapsed() < teardown));
    }

    fn render(&self, m: &Machine) -> Value {
        let up = m.launched.elapsed();
        let status = match m.stopping {
            Some(_) if m.preempted => "TERMINATED",
            Some(_) => "STOPPING",
            None if up < self.timing.boot / 2 => "PROVISIONING",
            None if up < self.timing.boot => "STAGING",
            None => "RUNNING",
        };
        let mut access = json!({"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT", "name": "External NAT", "networkTier": "PREMIUM"});
        if status == "RUNNING" && up >= self.timing.ip_after {
            access["natIP"] = json!(ip(m.n));
        }
        let zone_url = format!("{}/zones/{}", base(), m.zone);
        let mut scheduling = m.spec["scheduling"].clone();
        scheduling["preemptible"] = json!(false);
        let mut disks = vec![json!({
            "kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
            "source": format!("{zone_url}/disks/{}", m.name), "deviceName": "persistent-disk-0",
            "index": 0, "boot": true, "autoDelete": true, "interface": "SCSI", "diskSizeGb": "200",
        })];
        for (i, d) in m.attached().iter().enumerate() {
            let (zone, name) = d.split_once('/').unwrap();
            disks.push(json!({
                "kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
                "source": format!("{}/zones/{zone}/disks/{name}", base()),
                "deviceName": format!("disk-{}", i + 1), "index": i + 1, "boot": false,
                "autoDelete": false, "interface": "SCSI",
            }));
        }
        let mut out = json!({
            "kind": "compute#instance",
            "id": m.id.to_string(),
            "creationTimestamp": now_rfc3339(),
            "name": m.name,
            "machineType": format!("{zone_url}/machineTypes/{}", m.machine_type),
            "status": status,
            "zone": zone_url,
            "networkInterfaces": [{
                "kind": "compute#networkInterface",
                "network": format!("{}/global/networks/default", base()),
                "networkIP": format!("10.128.0.{}", 2 + m.n % 200),
                "name": "nic0",
                "accessConfigs": [access],
                "stackType": "IPV4_ONLY",
            }],
            "disks": disks,
            "scheduling": scheduling,
            "selfLink": format!("{zone_url}/instances/{}", m.name),
            "cpuPlatform": "Intel Cascade Lake",
            "deletionProtection": false,
            "fingerprint": "Xc2sVNNOG9M=",
            "labelFingerprint": "42WmSpB8rSM=",
        });
        if m.preempted {
            out["statusMessage"] = json!("Instance was preempted.");
        }
        for k in ["labels", "guestAccelerators", "metadata", "tags"] {
            if !m.spec[k].is_null() {
                out[k] = m.spec[k].clone();
            }
        }
        out
    }

    fn render_disk(&self, d: &Disk) -> Value {
        let zone_url = format!("{}/zones/{}", base(), d.zone);
        let status = if d.deleting.is_some() {
            "DELETING"
        } else if d.made.elapsed() < self.timing.boot / 2 {
            "CREATING"
        } else {
            "READY"
        };
        let users: Vec<String> = self
            .machines
            .iter()
            .filter(|m| m.attached().contains(&format!("{}/{}", d.zone, d.name)))
            .map(|m| format!("{zone_url}/instances/{}", m.name))
            .collect();
        json!({
            "kind": "compute#disk",
            "id": d.id.to_string(),
            "creationTimestamp": now_rfc3339(),
            "name": d.name,
            "sizeGb": d.size_gb.to_string(),
            "zone": zone_url,
            "status": status,
            "type": format!("{zone_url}/diskTypes/pd-balanced"),
            "labels": d.labels,
            "users": users,
            "selfLink": format!("{zone_url}/disks/{}", d.name),
        })
    }

    /// A new operation on `target` in `zone` (`None`: global), `PENDING`
    /// until read; `error` carries `(code, message)` for a failure.
    fn operation(
        &mut self,
        kind: &str,
        zone: Option<&str>,
        target: &str,
        error: Option<(&str, String)>,
    ) -> Value {
        let id = self.id();
        let name = format!("operation-{id}");
        let scope = zone.map_or(format!("{}/global", base()), |z| {
            format!("{}/zones/{z}", base())
        });
        let mut op = json!({
            "kind": "compute#operation",
            "id": id.to_string(),
            "name": name,
            "operationType": kind,
            "targetLink": target,
            "targetId": id.to_string(),
            "status": "PENDING",
            "user": CLIENT_EMAIL,
            "progress": 0,
            "insertTime": now_rfc3339(),
            "selfLink": format!("{scope}/operations/{name}"),
        });
        if let Some(z) = zone {
            op["zone"] = json!(format!("{}/zones/{z}", base()));
        }
        let mut done = op.clone();
        done["status"] = json!("DONE");
        done["progress"] = json!(100);
        done["startTime"] = json!(now_rfc3339());
        done["endTime"] = json!(now_rfc3339());
        if let Some((code, message)) = error {
            done["error"] = json!({"errors": [{"code": code, "message": message}]});
            done["httpErrorStatusCode"] = json!(if code == "QUOTA_EXCEEDED" { 403 } else { 503 });
            done["httpErrorMessage"] = json!(if code == "QUOTA_EXCEEDED" {
                "FORBIDDEN"
            } else {
                "SERVICE UNAVAILABLE"
            });
        }
        self.operations.insert(name, (done, 0));
        op
    }

    /// One page of an aggregated list: `field` of each scope, every scope
    /// of `scopes` present (an empty one with Google's warning).
    fn aggregated(
        &self,
        req: &Recorded,
        kind: &str,
        field: &str,
        scopes: &[String],
        items: Vec<(String, Value)>,
    ) -> Reply {
        let max = query(req, "maxResults")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(500)
            .clamp(1, 500);
        let start = query(req, "pageToken")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(0);
        let total = items.len();
        let page: Vec<(String, Value)> = items.into_iter().skip(start).take(max).collect();
        let mut grouped: BTreeMap<String, Vec<Value>> = scopes
            .iter()
            .map(|s| (format!("zones/{s}"), vec![]))
            .collect();
        for (zone, v) in page {
            grouped.entry(format!("zones/{zone}")).or_default().push(v);
        }
        let items: serde_json::Map<String, Value> = grouped
            .into_iter()
            .map(|(scope, list)| {
                let v = if list.is_empty() {
                    json!({"warning": {
                        "code": "NO_RESULTS_ON_PAGE",
                        "message": format!("There are no results for scope '{scope}' on this page."),
                        "data": [{"key": "scope", "value": scope}],
                    }})
                } else {
                    json!({ field: list })
                };
                (scope, v)
            })
            .collect();
        let mut out = json!({
            "kind": kind,
            "id": format!("projects/{PROJECT}/aggregated/{field}"),
            "items": items,
            "selfLink": format!("{}/aggregated/{field}", base()),
        });
        if start + max < total {
            out["nextPageToken"] = json!((start + max).to_string());
        }
        Reply::json(200, out)
    }

    fn zones() -> Vec<String> {
        let mut z: Vec<String> = MACHINE_TYPES.iter().map(|m| m.0.to_string()).collect();
        z.sort();
        z.dedup();
        z
    }

    /// The token endpoint: RFC 7523's JWT bearer grant.
    fn token(&mut self, req: &Recorded) -> Reply {
        let form = match &req.body {
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        let field = |k: &str| {
            form_urlencoded::parse(form.as_bytes())
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        let refuse = |me: &mut Self, why: String| {
            me.refused_assertions.push(why.clone());
            Reply::json(
                400,
                json!({"error": "invalid_grant", "error_description": why}),
            )
        };
        if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return Reply::json(
                400,
                json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}),
            );
        }
        let Some(jwt) = field("assertion") else {
            return refuse(self, "no assertion".into());
        };
        if let Err(why) = verify(&jwt) {
            return refuse(self, why);
        }
        let token = format!("ya29.test-{}", self.tokens.len() + 1);
        self.tokens.push(token.clone());
        Reply::json(
            200,
            json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
        )
    }
}

/// The test service account's public key (PKCS#1 `RSAPublicKey`, DER).
pub fn public_key_der() -> Vec<u8> {
    let body: String = PRIVATE_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    use ring::signature::KeyPair;
    pair.public_key().as_ref().to_vec()
}

/// Checks a service account's JWT as Google's token endpoint does.
pub fn verify(jwt: &str) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err("Invalid JWT: not three parts".into());
    };
    let decode = |p: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|e| format!("Invalid JWT: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("Invalid JWT: {e}"))
    };
    let header = decode(h)?;
    let claims = decode(c)?;
    if header["alg"] != "RS256" {
        return Err(format!("Invalid JWT: alg {}", header["alg"]));
    }
    if header["kid"] != KEY_ID {
        return Err("Invalid JWT: unknown key id".into());
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "Invalid JWT Signature.".to_string())?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_der(),
    )
    .verify(format!("{h}.{c}").as_bytes(), &sig)
    .map_err(|_| "Invalid JWT Signature.".to_string())?;
    if claims["iss"] != CLIENT_EMAIL {
        return Err(format!("Invalid JWT: iss {}", claims["iss"]));
    }
    // Google's documented audience, whichever URL the grant is posted to.
    if claims["aud"] != "https://oauth2.googleapis.com/token" {
        return Err(format!("Invalid JWT: aud {}", claims["aud"]));
    }
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes.split(' ').any(|s| {
        s == "https://www.googleapis.com/auth/compute"
            || s == "https://www.googleapis.com/auth/cloud-platform"
    }) {
        return Err(format!(
            "Invalid JWT: scope {scopes:?} does not reach Compute Engine"
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    if exp <= now || iat > now + 60 || exp - iat > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".into());
    }
    Ok(())
}

/// The service-account key file the adapter reads, naming the fake's
/// token endpoint (`{url}/oauth2/token`).
pub fn key_json(url: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": KEY_ID,
        "private_key": PRIVATE_KEY_PEM,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{url}/oauth2/token"),
    })
    .to_string()
}

impl Cloud for Gcp {
    fn rate_limited(&self) -> Value {
        json!({"error": {"code": 429, "message": "Rate Limit Exceeded",
            "errors": [{"message": "Rate Limit Exceeded", "domain": "usageLimits", "reason": "rateLimitExceeded"}],
            "status": "RESOURCE_EXHAUSTED"}})
    }

    fn server_error(&self) -> Value {
        json!({"error": {"code": 500, "message": "Internal error. Please try again or contact Google Support.",
            "errors": [{"message": "Internal error.", "domain": "global", "reason": "backendError"}],
            "status": "INTERNAL"}})
    }

    fn documents(&self) -> Vec<&'static Document> {
        vec![docs::gcp(), docs::gcp_billing()]
    }

    fn undocumented(&self, path: &str) -> bool {
        path == "/oauth2/token" || path == METADATA_TOKEN_PATH
    }

    fn handle(&mut self, req: &Recorded) -> Reply {
        self.settle();
        if req.path == "/oauth2/token" && req.method == "POST" {
            return self.token(req);
        }
        if req.path == METADATA_TOKEN_PATH && req.method == "GET" {
            // The metadata server answers only requests that say they
            // mean it.
            if req.header("metadata-flavor") != Some("Google") {
                return Reply::text(403, "Missing Metadata-Flavor:Google header.");
            }
            let token = format!("ya29.metadata-{}", self.tokens.len() + 1);
            self.tokens.push(token.clone());
            return Reply::json(
                200,
                json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
            );
        }
        let bearer = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        if !bearer.is_some_and(|t| self.tokens.iter().any(|x| x == t)) {
            return err(
                401,
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            );
        }
        if self.rate_limit_403_next > 0 {
            self.rate_limit_403_next -= 1;
            return err(403, "rateLimitExceeded", "Rate Limit Exceeded");
        }
        if let Some(rest) = req.path.strip_prefix("/v1/services/") {
            return self.skus(req, rest);
        }
        let prefix = format!("/compute/v1/projects/{PROJECT}/");
        let Some(rest) = req.path.strip_prefix(&prefix) else {
            return err(
                404,
                "notFound",
                &format!("The resource '{}' was not found", req.path),
            );
        };
        let segs: Vec<&str> = rest.split('/').collect();
        let m = req.method.as_str();
        match (m, segs.as_slice()) {
            ("GET", ["aggregated", "machineTypes"]) => {
                let items = MACHINE_TYPES
                    .iter()
                    .enumerate()
                    .map(|(i, (zone, name, cpus, mb, acc))| {
                        let mut v = json!({
                            "kind": "compute#machineType", "id": (900_000 + i).to_string(),
                            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
                            "name": name, "description": format!("{cpus} vCPUs, {} GB RAM", mb / 1024),
                            "guestCpus": cpus, "memoryMb": mb, "imageSpaceGb": 0,
                            "maximumPersistentDisks": 128, "maximumPersistentDisksSizeGb": "263168",
                            "zone": zone, "isSharedCpu": false,
                            "selfLink": format!("{}/zones/{zone}/machineTypes/{name}", base()),
                        });
                        if let Some((a, n)) = acc {
                            v["accelerators"] = json!([{"guestAcceleratorType": a, "guestAcceleratorCount": n}]);
                        }
                        (zone.to_string(), v)
                    })
                    .collect();
                self.aggregated(req, "compute#machineTypeAggregatedList", "machineTypes", &Self::zones(), items)
            }
            ("GET", ["aggregated", "acceleratorTypes"]) => {
                let items = ACCELERATOR_TYPES
                    .iter()
                    .enumerate()
                    .map(|(i, (zone, name, max))| {
                        (zone.to_string(), json!({
                            "kind": "compute#acceleratorType", "id": (10_000 + i).to_string(),
                            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
                            "name": name, "description": name.to_uppercase(),
                            "zone": format!("{}/zones/{zone}", base()),
                            "maximumCardsPerInstance": max,
                            "selfLink": format!("{}/zones/{zone}/acceleratorTypes/{name}", base()),
                        }))
                    })
                    .collect();
                self.aggregated(req, "compute#acceleratorTypeAggregatedList", "acceleratorTypes", &Self::zones(), items)
            }
            ("GET", ["aggregated", "instances"]) => {
                let items = self
                    .machines
                    .iter()
                    .map(|m| (m.zone.clone(), self.render(m)))
                    .collect();
                self.aggregated(req, "compute#instanceAggregatedList", "instances", &Self::zones(), items)
            }
            ("GET", ["aggregated", "disks"]) => {
                let items = self
                    .disks
                    .iter()
                    .map(|d| (d.zone.clone(), self.render_disk(d)))
                    .collect();
                self.aggregated(req, "compute#diskAggregatedList", "disks", &Self::zones(), items)
            }
            ("GET", ["aggregated", "operations"]) => {
                // The one filter the fake understands: by operation type.
                let only = match query(req, "filter") {
                    None => None,
                    Some(f) => {
                        let f = f.replace(' ', "");
                        match f
                            .strip_prefix("operationType=\"")
                            .and_then(|r| r.strip_suffix('"'))
                        {
                            Some(t) => Some(t.to_string()),
                            None => return err(400, "invalid", &format!("Invalid value for field 'filter': '{f}'. Invalid list filter expression.")),
                        }
                    }
                };
                let mut items: Vec<(String, Value)> = self
                    .operations
                    .values()
                    .map(|(op, _)| op.clone())
                    .chain(self.notices.iter().cloned())
                    .filter(|op| op["zone"].is_string())
                    .filter(|op| only.as_deref().is_none_or(|t| op["operationType"] == t))
                    .map(|op| (op["zone"].as_str().unwrap().rsplit('/').next().unwrap().to_string(), op))
                    .collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                self.aggregated(req, "compute#operationAggregatedList", "operations", &Self::zones(), items)
            }
            ("GET", ["global", "firewalls", name]) => match self
                .firewalls
                .iter()
                .find(|f| f["name"] == *name)
            {
                Some(f) => Reply::json(200, f.clone()),
                None => err(404, "notFound", &format!("The resource 'projects/{PROJECT}/global/firewalls/{name}' was not found")),
            },
            ("POST", ["global", "firewalls"]) => {
                let name = req.body["name"].as_str().unwrap_or("").to_string();
                if self.firewalls.iter().any(|f| f["name"] == name.as_str()) {
                    return err(409, "alreadyExists", &format!("The resource 'projects/{PROJECT}/global/firewalls/{name}' already exists"));
                }
                let mut f = req.body.clone();
                f["kind"] = json!("compute#firewall");
                f["id"] = json!(self.id().to_string());
                f["network"] = json!(format!("{}/global/networks/default", base()));
                f["selfLink"] = json!(format!("{}/global/firewalls/{name}", base()));
                self.firewalls.push(f);
                let target = format!("{}/global/firewalls/{name}", base());
                Reply::json(200, self.operation("insert", None, &target, None))
            }
            ("GET", ["zones", zone, "operations", name]) => {
                match self.operations.get_mut(*name) {
                    Some((done, reads)) if done["zone"].as_str().is_some_and(|z| z.ends_with(&format!("/{zone}"))) => {
                        *reads += 1;
                        let answer = if *reads > 1 + self.slow_operations {
                            done.clone()
                        } else {
                            let mut v = done.clone();
                            v["status"] = json!("RUNNING");
                            v["progress"] = json!(50);
                            for k in ["error", "httpErrorStatusCode", "httpErrorMessage", "endTime"] {
                                v.as_object_mut().unwrap().remove(k);
                            }
                            v
                        };
                        Reply::json(200, answer)
                    }
                    _ => err(404, "notFound", &format!("The resource 'projects/{PROJECT}/zones/{zone}/operations/{name}' was not found")),
                }
            }
            ("POST", ["zones", zone, "instances"]) => self.insert(req, zone),
            ("GET", ["zones", zone, "instances", name]) => {
                match self.machines.iter().find(|x| x.zone == *zone && x.name == *name) {
                    Some(x) => Reply::json(200, self.render(x)),
                    None => not_found_instance(zone, name),
                }
            }
            ("DELETE", ["zones", zone, "instances", name]) => {
                let Some(x) = self
                    .machines
                    .iter_mut()
                    .find(|x| x.zone == *zone && x.name == *name)
                else {
                    return not_found_instance(zone, name);
                };
                x.stopping.get_or_insert_with(Instant::now);
                let target = format!("{}/zones/{zone}/instances/{name}", base());
                Reply::json(200, self.operation("delete", Some(zone), &target, None))
            }
            ("POST", ["zones", zone, "instances", name, "reset"]) => {
                let Some(x) = self
                    .machines
                    .iter_mut()
                    .find(|x| x.zone == *zone && x.name == *name && x.stopping.is_none())
                else {
                    return not_found_instance(zone, name);
                };
                x.resets += 1;
                let target = format!("{}/zones/{zone}/instances/{name}", base());
                Reply::json(200, self.operation("reset", Some(zone), &target, None))
            }
            ("POST", ["zones", zone, "disks"]) => {
                let name = req.body["name"].as_str().unwrap_or("").to_string();
                if let Some(rid) = query(req, "requestId") {
                    if let Some(op) = self.request_ids.get(&rid) {
                        let op = self.operations[op].0.clone();
                        return Reply::json(200, op);
                    }
                }
                if self.disks.iter().any(|d| d.zone == *zone && d.name == name) {
                    return err(409, "alreadyExists", &format!("The resource 'projects/{PROJECT}/zones/{zone}/disks/{name}' already exists"));
                }
                let id = self.id();
                self.disks.push(Disk {
                    id,
                    name: name.clone(),
                    zone: zone.to_string(),
                    size_gb: req.body["sizeGb"].as_str().and_then(|s| s.parse().ok()).unwrap_or(10),
                    labels: req.body["labels"].clone(),
                    made: Instant::now(),
                    deleting: None,
                });
                let target = format!("{}/zones/{zone}/disks/{name}", base());
                let op = self.operation("insert", Some(zone), &target, None);
                if let Some(rid) = query(req, "requestId") {
                    self.request_ids.insert(rid, op["name"].as_str().unwrap().to_string());
                }
                Reply::json(200, op)
            }
            ("GET", ["zones", zone, "disks", name]) => {
                match self.disks.iter().find(|d| d.zone == *zone && d.name == *name) {
                    Some(d) => Reply::json(200, self.render_disk(d)),
                    None => err(404, "notFound", &format!("The resource 'projects/{PROJECT}/zones/{zone}/disks/{name}' was not found")),
                }
            }
            ("DELETE", ["zones", zone, "disks", name]) => {
                let key = format!("{zone}/{name}");
                if self.machines.iter().any(|m| m.attached().contains(&key)) {
                    return err(400, "resourceInUseByAnotherResource", &format!("The disk resource 'projects/{PROJECT}/zones/{zone}/disks/{name}' is already being used by an instance"));
                }
                let Some(d) = self.disks.iter_mut().find(|d| d.zone == *zone && d.name == *name) else {
                    return err(404, "notFound", &format!("The resource 'projects/{PROJECT}/zones/{zone}/disks/{name}' was not found"));
                };
                d.deleting.get_or_insert_with(Instant::now);
                let target = format!("{}/zones/{zone}/disks/{name}", base());
                Reply::json(200, self.operation("delete", Some(zone), &target, None))
            }
            _ => err(404, "notFound", &format!("The fake serves no {m} {}", req.path)),
        }
    }
}

fn not_found_instance(zone: &str, name: &str) -> Reply {
    err(
        404,
        "notFound",
        &format!("The resource 'projects/{PROJECT}/zones/{zone}/instances/{name}' was not found"),
    )
}

impl Gcp {
    /// `services.skus.list` of the Cloud Billing Catalog API: Compute
    /// Engine's SKUs, a page at a time (`pageToken` is where the page
    /// starts); any other service is unknown.
    fn skus(&self, req: &Recorded, rest: &str) -> Reply {
        if self.billing.disabled {
            return Reply::json(
                403,
                json!({"error": {"code": 403,
                "message": format!("Cloud Billing API has not been used in project {PROJECT} before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/cloudbilling.googleapis.com/overview?project={PROJECT} then retry."),
                "status": "PERMISSION_DENIED",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                             "domain": "googleapis.com",
                             "metadata": {"service": "cloudbilling.googleapis.com", "consumer": format!("projects/{PROJECT}")}}]}}),
            );
        }
        if rest != format!("{COMPUTE_SERVICE}/skus") {
            return Reply::json(
                404,
                json!({"error": {"code": 404,
                "message": format!("Service not found: services/{}", rest.trim_end_matches("/skus")),
                "status": "NOT_FOUND"}}),
            );
        }
        let asked: usize = query(req, "pageSize")
            .and_then(|n| n.parse().ok())
            .unwrap_or(5000);
        let size = asked.clamp(1, self.billing.page_size.max(1));
        let start: usize = match query(req, "pageToken") {
            None => 0,
            Some(t) => match t.parse() {
                Ok(n) => n,
                Err(_) => {
                    return Reply::json(
                        400,
                        json!({"error": {"code": 400,
                    "message": "Invalid page token.", "status": "INVALID_ARGUMENT"}}),
                    )
                }
            },
        };
        let end = (start + size).min(self.billing.skus.len());
        let mut page = json!({"skus": self.billing.skus.get(start..end).unwrap_or(&[])});
        if end < self.billing.skus.len() {
            page["nextPageToken"] = json!(end.to_string());
        }
        Reply::json(200, page)
    }

    /// `instances.insert`: a repeated request id answers its first
    /// operation; an exhausted zone or an exceeded quota fails in the
    /// operation and makes nothing.
    fn insert(&mut self, req: &Recorded, zone: &str) -> Reply {
        let b = &req.body;
        let name = b["name"].as_str().unwrap_or("").to_string();
        if let Some(rid) = query(req, "requestId") {
            if let Some(op) = self.request_ids.get(&rid) {
                let op = self.operations[op].0.clone();
                return Reply::json(200, op);
            }
        }
        let Some(machine_type) = b["machineType"]
            .as_str()
            .map(|t| t.rsplit('/').next().unwrap().to_string())
        else {
            return err(
                400,
                "invalid",
                "Invalid value for field 'resource.machineType': ''.",
            );
        };
        if !MACHINE_TYPES
            .iter()
            .any(|m| m.0 == zone && m.1 == machine_type)
        {
            return err(400, "invalid", &format!("Invalid value for field 'resource.machineType': 'zones/{zone}/machineTypes/{machine_type}'. Machine type with name '{machine_type}' does not exist in zone '{zone}'."));
        }
        let cloud_type = match b["guestAccelerators"][0]["acceleratorType"].as_str() {
            Some(acc) => {
                let acc = acc.rsplit('/').next().unwrap();
                if !ACCELERATOR_TYPES.iter().any(|a| a.0 == zone && a.1 == acc) {
                    return err(400, "invalid", &format!("Invalid value for field 'resource.guestAccelerators[0].acceleratorType': '{acc}'. Accelerator type '{acc}' does not exist in zone '{zone}'."));
                }
                format!(
                    "{machine_type}+{}x{acc}",
                    b["guestAccelerators"][0]["acceleratorCount"]
                )
            }
            None => machine_type.clone(),
        };
        let sched = &b["scheduling"];
        if sched["provisioningModel"] == "SPOT" && sched["automaticRestart"] == true {
            return err(400, "invalid", "Invalid value for field 'resource.scheduling.automaticRestart': 'true'. Spot VMs cannot be automatically restarted.");
        }
        if !sched["instanceTerminationAction"].is_null() && sched["provisioningModel"] != "SPOT" {
            return err(400, "invalid", "Invalid value for field 'resource.scheduling.instanceTerminationAction'. It is supported only for Spot VMs.");
        }
        if let Some(acc) = b["guestAccelerators"][0]["acceleratorType"].as_str() {
            let acc = acc.rsplit('/').next().unwrap();
            let n = b["guestAccelerators"][0]["acceleratorCount"]
                .as_i64()
                .unwrap_or(0);
            let max = ACCELERATOR_TYPES
                .iter()
                .find(|a| a.0 == zone && a.1 == acc)
                .map_or(0, |a| a.2);
            if n < 1 || n > max {
                return err(400, "invalid", &format!("Invalid value for field 'resource.guestAccelerators[0].acceleratorCount': '{n}'. At most {max} of {acc} may be attached."));
            }
        }
        if b["scheduling"]["onHostMaintenance"] != "TERMINATE" {
            return err(
                400,
                "invalid",
                "Instances with guest accelerators do not support live migration.",
            );
        }
        if self
            .machines
            .iter()
            .any(|m| m.zone == zone && m.name == name)
        {
            return err(409, "alreadyExists", &format!("The resource 'projects/{PROJECT}/zones/{zone}/instances/{name}' already exists"));
        }
        for d in b["disks"].as_array().into_iter().flatten() {
            if let Some(src) = d["source"].as_str() {
                let parts: Vec<&str> = src.rsplit('/').collect();
                if parts[2] != zone
                    || !self
                        .disks
                        .iter()
                        .any(|x| x.zone == parts[2] && x.name == parts[0])
                {
                    return err(
                        400,
                        "invalid",
                        &format!("The resource '{src}' was not found in zone {zone}"),
                    );
                }
            }
        }
        let target = format!("{}/zones/{zone}/instances/{name}", base());
        let error = if self
            .exhausted
            .iter()
            .any(|(t, z)| *t == cloud_type && z == zone)
        {
            Some(("ZONE_RESOURCE_POOL_EXHAUSTED", format!("The zone 'projects/{PROJECT}/zones/{zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.")))
        } else {
            self.quota_exceeded.clone().map(|q| {
                (
                    "QUOTA_EXCEEDED",
                    format!(
                        "Quota '{q}' exceeded.  Limit: 0.0 in region {}.",
                        region_of(zone)
                    ),
                )
            })
        };
        let failed = error.is_some();
        let op = self.operation("insert", Some(zone), &target, error);
        if let Some(rid) = query(req, "requestId") {
            self.request_ids
                .insert(rid, op["name"].as_str().unwrap().to_string());
        }
        if !failed {
            let id = self.id();
            let n = self.machines.len();
            self.machines.push(Machine {
                id,
                name,
                zone: zone.to_string(),
                machine_type,
                spec: b.clone(),
                launched: Instant::now(),
                stopping: None,
                preempted: false,
                resets: 0,
                n,
            });
        }
        Reply::json(200, op)
    }
}
