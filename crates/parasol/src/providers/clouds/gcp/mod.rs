//! `gcp`: Google Cloud Compute Engine, through its REST API v1, written
//! from Google's discovery document (`compute.v1.json`) and tested against
//! a fake held to it (`tests/it/fakes/gcp.rs`).
//!
//! Every request carries `Authorization: Bearer <token>` from [`auth`]
//! (a service-account JWT exchanged at the key's `token_uri`, or the
//! metadata server). Methods used (under the configured root, by default
//! `https://compute.googleapis.com/compute/v1`, all under
//! `/projects/{project}`): `aggregated/machineTypes` and
//! `aggregated/acceleratorTypes` for the catalog; `zones/{z}/instances`
//! (insert), `aggregated/instances`, `zones/{z}/instances/{name}` (get,
//! delete), `.../reset`, `zones/{z}/operations/{op}`,
//! `aggregated/operations` (Google's `compute.instances.preempted`) for
//! machines;
//! `global/firewalls` (get, insert) for SSH; `zones/{z}/disks` (insert),
//! `aggregated/disks`, `zones/{z}/disks/{name}` (get, delete) for volumes.
//!
//! The catalog: the accelerator-optimized families of
//! [`catalog::FAMILIES`], read from `machineTypes.aggregatedList` (their
//! GPUs are the machine type's `accelerators`), and T4, V100 and P100
//! attached to one N1 shape per GPU count ([`catalog::n1_shape`]), where
//! `acceleratorTypes.aggregatedList` lists the GPU and the shape is in the
//! same zone. A region offers a type when any of its zones does; a type is
//! offered only where it has a price: from the Cloud Billing Catalog API
//! where every part of the type is among Compute Engine's SKUs there
//! ([`billing`], read at most every [`BILLING_REFRESH`] at catalog
//! refresh, under `billing_url`), else from the shipped table
//! ([`catalog::price`]).
//!
//! A machine is named with the deployment's marker
//! (`parasol-<deployment>-<instance id>`, 55 characters, within Google's
//! 63) and labelled `parasol-deployment` and `parasol-instance`. It is
//! found as every cloud finds its machines (`find.rs`): by the remembered
//! `zone/name`, else by name in `instances.aggregatedList`. A launch tries
//! the region's zones that offer the type in order; each insert carries a
//! `requestId` made from the instance id and the zone, so Google ignores a
//! repeat of one whose answer was lost, and the launch looks the machine
//! up by name before any retry. Inserts are asynchronous: the operation
//! is polled until `DONE` (or [`OPERATION_WAIT`] passes; then the
//! describes that follow see the machine), and its errors are read:
//! `ZONE_RESOURCE_POOL_EXHAUSTED` (and `_WITH_DETAILS`) and
//! `resourceNotReady` move on to the next zone, and once every zone said
//! so the launch reports capacity; `QUOTA_EXCEEDED` is an error naming the
//! quota. The machine is `onHostMaintenance: TERMINATE` (GPUs cannot live
//! migrate), has an external IP (`ONE_TO_ONE_NAT`), the `parasol-ssh`
//! network tag that the firewall rule Parasol makes once per network
//! opens port 22 for, `ssh-keys` (`ubuntu:<key>`) and a `startup-script`
//! with the launch configuration in its metadata, and boots the Deep
//! Learning VM image family unless the config names another image.
//! Spot is `provisioningModel: SPOT` with `instanceTerminationAction:
//! DELETE`.
//!
//! State mapping (`status` → [`MachineState`]):
//!
//! | status                                   | external IP | MachineState |
//! |------------------------------------------|-------------|--------------|
//! | `PROVISIONING`, `STAGING`, `PENDING`     | any         | `Provisioning` |
//! | `RUNNING`                                | none        | `Booting`    |
//! | `RUNNING`                                | set         | `Running`    |
//! | `REPAIRING`                              | any         | `Booting` (Google is fixing the host; it comes back) |
//! | `STOPPING`, `PENDING_STOP`, `STOPPED`, `SUSPENDING`, `SUSPENDED`, `TERMINATED`, `DEPROVISIONING` | any | spot: `Preempted`; else `Failed` (Parasol never stops a machine) |
//!
//! A machine `instances.get` answers 404 for is `Gone`, except a spot
//! machine Google deleted for a preemption (`instanceTerminationAction:
//! DELETE`), which is `Preempted`: one this process launched and never
//! terminated, or one whose `compute.instances.preempted` operation
//! `globalOperations.aggregatedList` still lists (after a restart). Restart is `instances.reset`; delete is
//! `instances.delete`, repeated until the machine answers 404.
//!
//! Volumes are zonal persistent disks (`pd-balanced`), made in the
//! region's first zone that offers GPUs, named and labelled like machines,
//! attached at launch (`autoDelete: false`), so the machine launches in
//! their zone; deleting the machine detaches them.
//!
//! Where the document is silent, and what this adapter assumes:
//! - How long an insert's operation takes to report a capacity error: up
//!   to [`OPERATION_WAIT`] is waited inside the launch (where an exhausted
//!   zone still moves on to the next); an operation that fails later
//!   leaves no machine, and the describes that follow read the operation
//!   and report the machine `Failed` with Google's error codes (this
//!   process remembers the operation; after a restart such a machine is
//!   `Gone`). A zone exhausted that late is reported `Failed` with a reason
//!   that starts "insufficient capacity", as Azure's late allocation
//!   failure is: [`MachineState`] has no capacity outcome, so placement
//!   fails over only from a launch's [`ProviderError::Capacity`], and such
//!   an instance ends in `error` instead.
//! - 429 and 403 `rateLimitExceeded` / `userRateLimitExceeded` are retried
//!   with backoff and jitter (the shared [`Http`] client for 429, this
//!   adapter's own loop for the 403 form).

pub mod auth;
pub mod billing;
pub mod catalog;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parasol_api::RentalType;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use self::auth::{GcpConfig, Tokens};
use super::volumes::{self, VolumeApi, VolumeKind};
use super::{
    cents, configuration, generic_failure, parse, shade_type, short, Failure, Http, OffersCache,
};
use super::{KnownMachines, Machines};
use crate::providers::{
    Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError, RegionOffer,
    VolumeOffer, VolumeRef, VolumeRequest, VolumeState,
};

/// The cloud name in the API.
pub const CLOUD: &str = "gcp";
/// The OS offered: the Deep Learning VM's Ubuntu 22.04 with CUDA 12.
const OS: &str = "ubuntu22.04_cuda12_dlvm";
/// The default boot image: the Deep Learning VM family with CUDA 12.8 on
/// Ubuntu 22.04 (its newest image at each launch).
pub const DEFAULT_IMAGE: &str =
    "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570";
/// The boot disk, GB.
const BOOT_DISK_GB: i64 = 200;
/// The network machines join, and the firewall rule opening SSH on it.
const NETWORK: &str = "global/networks/default";
/// The firewall rule (and network tag) that opens port 22.
pub const FIREWALL: &str = "parasol-ssh";
/// Label holding the deployment id.
pub const LABEL_DEPLOYMENT: &str = "parasol-deployment";
/// Label holding Parasol's instance (or volume) id.
pub const LABEL_ID: &str = "parasol-instance";
/// The most time a launch waits for its insert's operation.
pub const OPERATION_WAIT: Duration = Duration::from_secs(20);
/// Attempts per call when Google answers 403 `rateLimitExceeded`.
const RATE_LIMIT_ATTEMPTS: u32 = 4;
/// Persistent disks: pd-balanced, $0.10 per GB-month (730 hours) in the
/// priced regions, 10 GB to 64 TB.
const VOLUMES: VolumeKind = VolumeKind {
    cloud: CLOUD,
    supports_multi_mount: false,
    fixed_size: false,
    price_micros_per_gb_hour: 137,
    min_size_gb: 10,
    max_size_gb: 65_536,
    mount_rule: "a persistent disk mounts only on machines in its own zone, where they launch",
};

/// The Google Cloud adapter.
pub struct Gcp {
    cfg: GcpConfig,
    known: KnownMachines,
    deployment_id: String,
    http: Http,
    tokens: Tokens,
    offers: OffersCache,
    /// Zones of (region, cloud type), from the last catalog refresh.
    zones: StdMutex<HashMap<(String, String), Vec<String>>>,
    /// Spot machines this process launched and has not terminated: one
    /// that disappears was deleted by a preemption.
    spot: StdMutex<HashSet<Uuid>>,
    /// Inserts whose operation had not ended when their launch returned,
    /// as (zone, operation), until it is read `DONE`.
    pending: StdMutex<HashMap<Uuid, (String, String)>>,
    /// How long a launch waits for its insert's operation.
    operation_wait: Duration,
    /// Networks whose SSH firewall rule is known to exist.
    firewalls: tokio::sync::Mutex<HashSet<String>>,
    /// The last prices the Cloud Billing Catalog API gave, and when it was
    /// last asked.
    billing: StdMutex<(Option<Arc<billing::Prices>>, Option<Instant>)>,
}

/// How long prices read from the Cloud Billing Catalog API are used before
/// they are read again (Google's own prices there are up to 12 hours old).
pub const BILLING_REFRESH: Duration = Duration::from_secs(6 * 3600);
/// How long after the API failed it is asked again; meanwhile the last
/// prices it gave, or the table, serve.
pub const BILLING_RETRY: Duration = Duration::from_secs(600);

/// A machine as Compute Engine describes it.
#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Instance {
    name: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    status_message: Option<String>,
    #[serde(default)]
    network_interfaces: Vec<NetworkInterface>,
    #[serde(default)]
    scheduling: Option<Scheduling>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct NetworkInterface {
    #[serde(default)]
    access_configs: Vec<AccessConfig>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct AccessConfig {
    #[serde(rename = "natIP", default)]
    nat_ip: Option<String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct Scheduling {
    #[serde(default)]
    provisioning_model: Option<String>,
}

impl Instance {
    fn zone(&self) -> &str {
        last(&self.zone)
    }
    fn spot(&self) -> bool {
        self.scheduling
            .as_ref()
            .and_then(|s| s.provisioning_model.as_deref())
            == Some("SPOT")
    }
    fn ip(&self) -> Option<String> {
        self.network_interfaces
            .iter()
            .flat_map(|n| &n.access_configs)
            .find_map(|a| a.nat_ip.clone())
    }
}

/// A persistent disk as Compute Engine describes it.
#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Disk {
    name: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    status: String,
}

/// An operation, as an insert, delete or reset answers it.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Operation {
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<OperationErrors>,
}

#[derive(Deserialize, Debug)]
struct OperationErrors {
    #[serde(default)]
    errors: Vec<OperationError>,
}

#[derive(Deserialize, Debug, Clone)]
struct OperationError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// An operation Google started itself (`compute.instances.preempted`).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Notice {
    #[serde(default)]
    target_link: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct MachineType {
    name: String,
    #[serde(default)]
    guest_cpus: i64,
    #[serde(default)]
    memory_mb: i64,
    #[serde(default)]
    accelerators: Vec<MachineAccelerator>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct MachineAccelerator {
    guest_accelerator_type: String,
    guest_accelerator_count: i64,
}

#[derive(Deserialize, Debug)]
struct AcceleratorType {
    name: String,
}

/// Google's error body: `{"error": {"code", "message", "errors": [{"reason"}]}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorInner,
}

#[derive(Deserialize, Default)]
struct ErrorInner {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize, Default)]
struct ErrorItem {
    #[serde(default)]
    reason: String,
}

/// The last segment of a resource URL (`.../zones/us-central1-a` →
/// `us-central1-a`).
fn last(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The region of a zone (`us-central1-a` → `us-central1`).
pub fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(r, _)| r)
}

/// The reasons of a Google error answer, and its message.
fn reasons(body: &str) -> (Vec<String>, String) {
    let e: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    (
        e.error.errors.into_iter().map(|i| i.reason).collect(),
        if e.error.message.is_empty() {
            short(body)
        } else {
            e.error.message
        },
    )
}

/// What a failed answer means. Quota and rate limits come as 403 with a
/// reason; capacity as a zone's resource-pool error.
fn classify(what: &str, f: &Failure) -> ProviderError {
    let (reasons, message) = reasons(&f.body);
    let has = |r: &str| reasons.iter().any(|x| x == r);
    if has("rateLimitExceeded") || has("userRateLimitExceeded") {
        return ProviderError::Transient(format!("{CLOUD} is rate limiting {what}: {message}"));
    }
    if has("quotaExceeded") || message.contains("QUOTA_EXCEEDED") {
        return ProviderError::Permanent(quota_error(&message));
    }
    if has("resourceNotReady") || pool_exhausted(&message) {
        return ProviderError::Capacity(format!("{CLOUD}: {message}"));
    }
    if f.status == StatusCode::UNAUTHORIZED {
        return ProviderError::Permanent(format!(
            "{CLOUD} rejected the access token (401 on {what}): {message}; check the service account"
        ));
    }
    generic_failure(CLOUD, what, f, &message)
}

fn pool_exhausted(code_or_message: &str) -> bool {
    code_or_message.contains("ZONE_RESOURCE_POOL_EXHAUSTED")
        || code_or_message.contains("resource pool exhausted")
}

/// An error naming the quota a message names (`Quota 'NVIDIA_H100_GPUS'
/// exceeded. Limit: 0.0 in region us-central1.`).
fn quota_error(message: &str) -> String {
    let quota = message.split('\'').nth(1).filter(|q| {
        !q.is_empty()
            && q.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
    });
    match quota {
        Some(q) => format!(
            "{CLOUD}: quota {q} exceeded ({message}); request more in the Google Cloud console (IAM & Admin > Quotas)"
        ),
        None => format!("{CLOUD}: a quota is exceeded: {message}"),
    }
}

/// The machine's state, from what Compute Engine says of it.
fn state(i: &Instance) -> MachineState {
    match i.status.as_str() {
        "PROVISIONING" | "STAGING" | "PENDING" => MachineState::Provisioning,
        "RUNNING" => match i.ip() {
            Some(ip) => MachineState::Running {
                ip,
                ssh_port: 22,
                ssh_user: "ubuntu".to_string(),
                placement: Some(format!("zone {}", i.zone())),
            },
            None => MachineState::Booting,
        },
        "REPAIRING" => MachineState::Booting,
        "STOPPING" | "PENDING_STOP" | "STOPPED" | "SUSPENDING" | "SUSPENDED" | "TERMINATED"
        | "DEPROVISIONING"
            if i.spot() =>
        {
            MachineState::Preempted
        }
        "STOPPING" | "PENDING_STOP" | "STOPPED" | "SUSPENDING" | "SUSPENDED" | "TERMINATED"
        | "DEPROVISIONING" => MachineState::Failed {
            reason: format!(
                "Google Cloud reports the machine {}{}",
                i.status,
                i.status_message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        },
        other => MachineState::Failed {
            reason: format!("Google Cloud reports the machine in an unknown state {other:?}"),
        },
    }
}

/// Whether a machine is being torn down or already stopped for good.
fn torn_down(i: &Instance) -> bool {
    matches!(
        i.status.as_str(),
        "STOPPING" | "PENDING_STOP" | "STOPPED" | "TERMINATED" | "DEPROVISIONING"
    )
}

/// A request id for one insert: the same for the same Parasol id and
/// zone, so Google ignores a repeat, and different per zone, so a
/// fallback to the next zone is a new request.
fn request_id(id: Uuid, zone: &str) -> Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{id}/{zone}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

impl Gcp {
    /// An adapter; it calls nothing until asked.
    pub fn new(cfg: GcpConfig, deployment_id: &str) -> Self {
        let http = Http::new(CLOUD);
        Self {
            tokens: Tokens::new(cfg.credentials.clone(), http.clone()),
            cfg,
            known: KnownMachines::new(deployment_id),
            deployment_id: deployment_id.to_string(),
            http,
            offers: OffersCache::new(Duration::from_secs(60)),
            zones: StdMutex::new(HashMap::new()),
            spot: StdMutex::new(HashSet::new()),
            pending: StdMutex::new(HashMap::new()),
            operation_wait: OPERATION_WAIT,
            firewalls: tokio::sync::Mutex::new(HashSet::new()),
            billing: StdMutex::new((None, None)),
        }
    }

    /// The same adapter, waiting `wait` instead of [`OPERATION_WAIT`] for
    /// an insert's operation inside a launch.
    pub fn with_operation_wait(mut self, wait: Duration) -> Self {
        self.operation_wait = wait;
        self
    }

    /// `path` under the project.
    fn project_path(&self, rest: &str) -> String {
        format!("/projects/{}{rest}", self.cfg.project)
    }

    /// Sends a call with a fresh token, retrying Google's 403 rate-limit
    /// form with backoff and jitter, and a 401 once with a new token.
    async fn gcall(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), ProviderError> {
        self.gcall_at(&self.cfg.url, method, path, query, body)
            .await
    }

    /// [`Self::gcall`] under another Google API root (the Cloud Billing
    /// API's).
    async fn gcall_at(
        &self,
        root: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.tokens.get().await?;
            let (status, text) = self
                .http
                .send(|| {
                    let r = self
                        .http
                        .request(method.clone(), root, path)
                        .bearer_auth(token.expose());
                    let r = if query.is_empty() { r } else { r.query(query) };
                    match body {
                        Some(b) => r.json(b),
                        None => r,
                    }
                })
                .await?;
            if attempt < RATE_LIMIT_ATTEMPTS {
                if status == StatusCode::UNAUTHORIZED && attempt == 1 {
                    self.tokens.clear().await;
                    continue;
                }
                if status == StatusCode::FORBIDDEN {
                    let (r, _) = reasons(&text);
                    if r.iter()
                        .any(|x| x == "rateLimitExceeded" || x == "userRateLimitExceeded")
                    {
                        let jitter = rand::random::<u64>() % 250;
                        tokio::time::sleep(Duration::from_millis((250 << attempt) + jitter)).await;
                        continue;
                    }
                }
            }
            return Ok((status, text));
        }
    }

    /// A call whose success is parsed as `T`.
    async fn gjson<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, ProviderError> {
        let what = format!("{method} {path}");
        let (status, text) = self.gcall(method, path, query, body).await?;
        if !status.is_success() {
            return Err(classify(&what, &Failure { status, body: text }));
        }
        parse(CLOUD, &what, &text)
    }

    /// A `GET` of one resource; `None` on 404.
    async fn get_found<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ProviderError> {
        let what = format!("GET {path}");
        let (status, text) = self.gcall(Method::GET, path, &[], None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(classify(&what, &Failure { status, body: text }));
        }
        parse(CLOUD, &what, &text).map(Some)
    }

    /// Every entry of an aggregated list, across pages, as (scope, item):
    /// `field` is the list's name inside each scope (`instances`).
    async fn aggregated<T: serde::de::DeserializeOwned>(
        &self,
        resource: &str,
        field: &str,
    ) -> Result<Vec<(String, T)>, ProviderError> {
        self.aggregated_where(resource, field, None).await
    }

    /// [`Gcp::aggregated`], with Google's `filter` expression.
    async fn aggregated_where<T: serde::de::DeserializeOwned>(
        &self,
        resource: &str,
        field: &str,
        filter: Option<&str>,
    ) -> Result<Vec<(String, T)>, ProviderError> {
        let path = self.project_path(&format!("/aggregated/{resource}"));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("maxResults", "500".to_string())];
            if let Some(f) = filter {
                q.push(("filter", f.to_string()));
            }
            if let Some(t) = &token {
                q.push(("pageToken", t.clone()));
            }
            let page: Value = self.gjson(Method::GET, &path, &q, None).await?;
            if let Some(items) = page["items"].as_object() {
                for (scope, list) in items {
                    let Some(list) = list.get(field) else {
                        continue;
                    };
                    let what = format!("GET {path} ({scope})");
                    let items: Vec<T> = parse(CLOUD, &what, &list.to_string())?;
                    out.extend(items.into_iter().map(|i| (last(scope).to_string(), i)));
                }
            }
            token = page["nextPageToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Every unit price of the served regions that Compute Engine's SKUs
    /// in the Cloud Billing Catalog API give, across pages.
    async fn read_billing(&self) -> Result<billing::Prices, ProviderError> {
        let path = format!("/{}/skus", billing::SERVICE);
        let mut prices = billing::Prices::default();
        let mut token = String::new();
        let mut skus = 0;
        loop {
            let mut q = vec![("pageSize", billing::PAGE_SIZE.to_string())];
            if !token.is_empty() {
                q.push(("pageToken", token.clone()));
            }
            let what = format!("GET {path}");
            let (status, text) = self
                .gcall_at(&self.cfg.billing_url, Method::GET, &path, &q, None)
                .await?;
            if !status.is_success() {
                return Err(classify(&what, &Failure { status, body: text }));
            }
            let page: billing::Page = parse(CLOUD, &what, &text)?;
            skus += page.skus.len();
            prices.add(&page, &self.cfg.regions);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        if prices.is_empty() {
            return Err(ProviderError::Transient(format!(
                "{CLOUD}: none of the {skus} Compute Engine SKUs prices a served GPU type in {}",
                self.cfg.regions.join(", ")
            )));
        }
        Ok(prices)
    }

    /// The Cloud Billing Catalog API's prices, read again once
    /// [`BILLING_REFRESH`] has passed; when it fails (unreachable, not
    /// enabled, no usable SKU) the last prices it gave, or none, so the
    /// shipped table prices, with a log line.
    async fn billing_prices(&self) -> Option<Arc<billing::Prices>> {
        {
            let b = self.billing.lock().expect("poisoned");
            let wait = if b.0.is_some() {
                BILLING_REFRESH
            } else {
                BILLING_RETRY
            };
            if b.1.is_some_and(|at| at.elapsed() < wait) {
                return b.0.clone();
            }
        }
        let read = self.read_billing().await;
        let mut b = self.billing.lock().expect("poisoned");
        b.1 = Some(Instant::now());
        match read {
            Ok(p) => {
                tracing::info!(
                    unit_prices = p.len(),
                    "gcp: prices from the Cloud Billing Catalog API"
                );
                b.0 = Some(Arc::new(p));
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    table_as_of = catalog::PRICES_AS_OF,
                    "gcp: the Cloud Billing Catalog API gave no prices; {}",
                    if b.0.is_some() {
                        "keeping the ones it gave last"
                    } else {
                        "pricing from the shipped table"
                    }
                );
            }
        }
        b.0.clone()
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>, ProviderError> {
        let machine_types: Vec<(String, MachineType)> =
            self.aggregated("machineTypes", "machineTypes").await?;
        let accelerators: Vec<(String, AcceleratorType)> = self
            .aggregated("acceleratorTypes", "acceleratorTypes")
            .await?;
        let wanted: HashSet<&str> = self.cfg.regions.iter().map(String::as_str).collect();
        // Zones of each (region, cloud type), in zone order.
        let mut zones: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        // What each cloud type is: (gpu, count, vcpus, memory MB).
        let mut shapes: BTreeMap<String, (String, i64, i64, i64)> = BTreeMap::new();
        let n1: HashMap<(String, String), (i64, i64)> = machine_types
            .iter()
            .filter(|(_, m)| m.name.starts_with("n1-standard-"))
            .map(|(z, m)| ((z.clone(), m.name.clone()), (m.guest_cpus, m.memory_mb)))
            .collect();
        for (zone, m) in &machine_types {
            if !served_zone(&wanted, zone) || !catalog::served_family(&m.name) {
                continue;
            }
            let Some(a) = m.accelerators.first() else {
                continue;
            };
            shapes.entry(m.name.clone()).or_insert((
                a.guest_accelerator_type.clone(),
                a.guest_accelerator_count,
                m.guest_cpus,
                m.memory_mb,
            ));
            zones
                .entry((region_of(zone).to_string(), m.name.clone()))
                .or_default()
                .push(zone.clone());
        }
        for (zone, acc) in &accelerators {
            let Some((_, counts)) = catalog::ATTACHED.iter().find(|(a, _)| *a == acc.name) else {
                continue;
            };
            if !served_zone(&wanted, zone) {
                continue;
            }
            for &n in *counts {
                let shape = catalog::n1_shape(n);
                let Some(&(cpus, mb)) = n1.get(&(zone.clone(), shape)) else {
                    continue;
                };
                let t = catalog::n1_type(&acc.name, n);
                shapes
                    .entry(t.clone())
                    .or_insert((acc.name.clone(), n, cpus, mb));
                zones
                    .entry((region_of(zone).to_string(), t))
                    .or_default()
                    .push(zone.clone());
            }
        }
        let billed = self.billing_prices().await;
        let mut out = Vec::new();
        for (t, (acc, n, cpus, mb)) in &shapes {
            let Some(gpu) = catalog::gpu(acc) else {
                super::gpus::unmapped(CLOUD, t);
                continue;
            };
            let mut regions = Vec::new();
            let mut hourly = None;
            for ((region, ty), zs) in &zones {
                if ty != t {
                    continue;
                }
                let machine = catalog::split_n1(t).map_or(t.as_str(), |(shape, _, _)| shape);
                let api = billed
                    .as_ref()
                    .and_then(|p| p.machine(region, machine, *cpus, *mb, acc, *n));
                let Some((od, spot)) = api.or_else(|| catalog::price(t, region)) else {
                    continue;
                };
                hourly = Some(hourly.map_or(cents(od), |h: i64| h.min(cents(od))));
                regions.push(RegionOffer {
                    region: region.clone(),
                    display_name: catalog::region_display(region),
                    capacity: Capacity::Available(!zs.is_empty()),
                    spot_price: Some(cents(spot)),
                });
            }
            let Some(hourly_price) = hourly else {
                continue;
            };
            out.push(Offer {
                cloud: CLOUD.to_string(),
                shade_instance_type: shade_type(&gpu, *n),
                cloud_instance_type: t.clone(),
                configuration: configuration(&gpu, *n, *cpus, gb(*mb), BOOT_DISK_GB, &[OS]),
                hourly_price,
                deployment_type: "vm".to_string(),
                boot_time: None,
                regions,
                ssh_user: "ubuntu".to_string(),
                ssh_port: 22,
            });
        }
        super::gpus::unique_names(&mut out, |o| o.cloud_instance_type.clone());
        let mut known = self.zones.lock().expect("poisoned");
        known.clear();
        for (k, mut zs) in zones {
            zs.sort();
            zs.dedup();
            known.insert(k, zs);
        }
        Ok(out)
    }

    /// The zones of `region` that offer `cloud_type`, from the catalog.
    async fn zones_for(
        &self,
        region: &str,
        cloud_type: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let key = (region.to_string(), cloud_type.to_string());
        if let Some(z) = self.zones.lock().expect("poisoned").get(&key) {
            return Ok(z.clone());
        }
        self.offers.clear().await;
        self.offers().await?;
        Ok(self
            .zones
            .lock()
            .expect("poisoned")
            .get(&key)
            .cloned()
            .unwrap_or_default())
    }

    /// Makes the firewall rule that opens SSH to machines tagged
    /// [`FIREWALL`], once per network.
    async fn ensure_firewall(&self) -> Result<(), ProviderError> {
        let mut done = self.firewalls.lock().await;
        if done.contains(NETWORK) {
            return Ok(());
        }
        let path = self.project_path(&format!("/global/firewalls/{FIREWALL}"));
        if self.get_found::<Value>(&path).await?.is_none() {
            let body = json!({
                "name": FIREWALL,
                "network": NETWORK,
                "direction": "INGRESS",
                "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
                "sourceRanges": ["0.0.0.0/0"],
                "targetTags": [FIREWALL],
            });
            let path = self.project_path("/global/firewalls");
            let (status, text) = self.gcall(Method::POST, &path, &[], Some(&body)).await?;
            // Another replica made it meanwhile: as good.
            if !status.is_success() && status != StatusCode::CONFLICT {
                return Err(classify(
                    &format!("POST {path}"),
                    &Failure { status, body: text },
                ));
            }
        }
        done.insert(NETWORK.to_string());
        Ok(())
    }

    /// Polls the zone operation `op` until `DONE` or `deadline`; the
    /// operation as last seen.
    async fn wait_zone_op(
        &self,
        zone: &str,
        mut op: Operation,
        deadline: Instant,
    ) -> Result<Operation, ProviderError> {
        while op.status != "DONE" && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let path = self.project_path(&format!("/zones/{zone}/operations/{}", op.name));
            op = self.gjson(Method::GET, &path, &[], None).await?;
        }
        Ok(op)
    }

    /// The insert body of the machine `name` in `zone`.
    fn insert_body(
        &self,
        req: &LaunchRequest,
        name: &str,
        zone: &str,
    ) -> Result<Value, ProviderError> {
        let (shape, attached) = match catalog::split_n1(&req.cloud_instance_type) {
            Some((shape, acc, n)) => (shape.to_string(), Some((acc, n))),
            None => (req.cloud_instance_type.clone(), None),
        };
        let disk_type = if catalog::needs_hyperdisk(&shape) {
            // Volumes are pd-balanced, which these machines cannot mount:
            // refused here by name rather than by Google after a wait.
            if !req.volumes.is_empty() {
                return Err(ProviderError::Permanent(format!(
                    "{shape} mounts only Hyperdisk, and Parasol's {CLOUD} volumes are pd-balanced persistent disks; launch it without the volume"
                )));
            }
            "hyperdisk-balanced"
        } else {
            "pd-balanced"
        };
        let mut disks = vec![json!({
            "boot": true,
            "autoDelete": true,
            "type": "PERSISTENT",
            "initializeParams": {
                "sourceImage": self.cfg.image.as_deref().unwrap_or(DEFAULT_IMAGE),
                "diskSizeGb": BOOT_DISK_GB.to_string(),
                "diskType": format!("zones/{zone}/diskTypes/{disk_type}"),
            },
        })];
        for v in &req.volumes {
            let (disk_zone, disk) = v
                .cloud_assigned_id
                .split_once('/')
                .unwrap_or((zone, &v.cloud_assigned_id));
            disks.push(json!({
                "boot": false,
                "autoDelete": false,
                "type": "PERSISTENT",
                "source": format!("projects/{}/zones/{disk_zone}/disks/{disk}", self.cfg.project),
                "deviceName": format!("parasol-{}", v.id.simple()),
            }));
        }
        let spot = req.rental_type == RentalType::Spot;
        let mut scheduling = json!({
            "onHostMaintenance": "TERMINATE",
            "automaticRestart": !spot,
            "provisioningModel": if spot { "SPOT" } else { "STANDARD" },
        });
        if spot {
            scheduling["instanceTerminationAction"] = json!("DELETE");
        }
        let mut metadata = Vec::new();
        if let Some(k) = &req.ssh_public_key {
            metadata.push(json!({"key": "ssh-keys", "value": format!("ubuntu:{}", k.trim())}));
        }
        if let Some(script) = super::first_boot_script(req, "ubuntu")? {
            metadata.push(json!({"key": "startup-script", "value": script}));
        }
        let mut body = json!({
            "name": name,
            "machineType": format!("zones/{zone}/machineTypes/{shape}"),
            "labels": {
                LABEL_DEPLOYMENT: self.deployment_id,
                LABEL_ID: req.instance_id.to_string(),
            },
            "tags": {"items": [FIREWALL]},
            "scheduling": scheduling,
            "disks": disks,
            "networkInterfaces": [{
                "network": NETWORK,
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}],
            }],
            "metadata": {"items": metadata},
        });
        if let Some((acc, n)) = attached {
            body["guestAccelerators"] = json!([{
                "acceleratorType": format!("zones/{zone}/acceleratorTypes/{acc}"),
                "acceleratorCount": n,
            }]);
        }
        Ok(body)
    }

    /// Inserts the machine in the region's zones in turn until one takes
    /// it; answers its `zone/name`.
    async fn insert(&self, req: &LaunchRequest, name: String) -> Result<String, ProviderError> {
        let mut zones = self
            .zones_for(&req.region, &req.cloud_instance_type)
            .await?;
        // Volumes mount only in their own zone.
        if let Some(z) = req.volumes.iter().find_map(|v| v.zone.clone()) {
            zones.retain(|x| *x == z);
            if zones.is_empty() {
                return Err(ProviderError::Permanent(format!(
                    "the volume is a persistent disk in zone {z}, which does not offer {}; a persistent disk mounts only in its own zone",
                    req.cloud_instance_type
                )));
            }
        }
        if zones.is_empty() {
            return Err(ProviderError::Capacity(format!(
                "{CLOUD}: no zone of {} offers {}",
                req.region, req.cloud_instance_type
            )));
        }
        self.ensure_firewall().await?;
        let mut exhausted = Vec::new();
        for zone in &zones {
            let body = self.insert_body(req, &name, zone)?;
            let path = self.project_path(&format!("/zones/{zone}/instances"));
            let q = [("requestId", request_id(req.instance_id, zone).to_string())];
            let what = format!("POST {path}");
            let (status, text) = self.gcall(Method::POST, &path, &q, Some(&body)).await?;
            if !status.is_success() {
                match classify(&what, &Failure { status, body: text }) {
                    ProviderError::Capacity(m) => {
                        exhausted.push(format!("{zone}: {m}"));
                        continue;
                    }
                    e => return Err(e),
                }
            }
            let op: Operation = parse(CLOUD, &what, &text)?;
            let op = self
                .wait_zone_op(zone, op, Instant::now() + self.operation_wait)
                .await?;
            let errors = op.error.map(|e| e.errors).unwrap_or_default();
            if errors.is_empty() {
                if req.rental_type == RentalType::Spot {
                    self.spot.lock().expect("poisoned").insert(req.instance_id);
                }
                if op.status != "DONE" {
                    // Describes read it from here on.
                    self.pending
                        .lock()
                        .expect("poisoned")
                        .insert(req.instance_id, (zone.clone(), op.name));
                }
                return Ok(format!("{zone}/{name}"));
            }
            let text = error_text(&errors);
            if errors
                .iter()
                .any(|e| pool_exhausted(&e.code) || e.code == "resourceNotReady")
            {
                exhausted.push(format!("{zone}: {text}"));
                continue;
            }
            if let Some(e) = errors.iter().find(|e| e.code == "QUOTA_EXCEEDED") {
                return Err(ProviderError::Permanent(quota_error(&e.message)));
            }
            return Err(ProviderError::Permanent(format!(
                "{CLOUD} refused the machine in {zone}: {text}"
            )));
        }
        self.offers.clear().await;
        Err(ProviderError::Capacity(format!(
            "{CLOUD}: no zone of {} has capacity for {} ({})",
            req.region,
            req.cloud_instance_type,
            exhausted.join("; ")
        )))
    }

    /// Where the insert of `id` that was still running when its launch
    /// returned stands: `None` once it ended well or where there is none,
    /// else the machine's state (still being made, or failed with Google's
    /// errors).
    async fn pending_insert(&self, id: Uuid) -> Result<Option<MachineState>, ProviderError> {
        let Some((zone, name)) = self.pending.lock().expect("poisoned").get(&id).cloned() else {
            return Ok(None);
        };
        let path = self.project_path(&format!("/zones/{zone}/operations/{name}"));
        let op: Operation = self.gjson(Method::GET, &path, &[], None).await?;
        if op.status != "DONE" {
            return Ok(Some(MachineState::Provisioning));
        }
        self.pending.lock().expect("poisoned").remove(&id);
        let errors = op.error.map(|e| e.errors).unwrap_or_default();
        if errors.is_empty() {
            return Ok(None);
        }
        // A zone that ran out after the launch returned is capacity, said
        // as Azure's late allocation failure is: `MachineState` has no
        // capacity outcome, so placement cannot fail over from a describe
        // and the instance ends in `error` naming it.
        let capacity = errors
            .iter()
            .any(|e| pool_exhausted(&e.code) || pool_exhausted(&e.message));
        Ok(Some(MachineState::Failed {
            reason: format!(
                "{}Google Cloud could not make the machine in {zone}: {}",
                if capacity {
                    "insufficient capacity: "
                } else {
                    ""
                },
                error_text(&errors)
            ),
        }))
    }

    /// Whether Google preempted the machine of `id`: a
    /// `compute.instances.preempted` operation names it.
    async fn was_preempted(&self, id: Uuid) -> Result<bool, ProviderError> {
        let notices: Vec<(String, Notice)> = self
            .aggregated_where(
                "operations",
                "operations",
                Some("operationType = \"compute.instances.preempted\""),
            )
            .await?;
        Ok(notices
            .iter()
            .any(|(_, n)| self.known.marker().is_for(last(&n.target_link), id)))
    }

    /// The zone new volumes of `region` go in: its first zone with GPUs.
    async fn volume_zone(&self, region: &str) -> Result<String, ProviderError> {
        self.offers().await?;
        let zones = self.zones.lock().expect("poisoned");
        zones
            .iter()
            .filter(|((r, _), _)| r == region)
            .flat_map(|(_, zs)| zs.iter())
            .min()
            .cloned()
            .ok_or_else(|| {
                ProviderError::Permanent(format!("{CLOUD}: no zone of {region} offers GPUs"))
            })
    }
}

fn error_text(errors: &[OperationError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn gb(mb: i64) -> i64 {
    (mb as f64 / 1024.0).round() as i64
}

fn served_zone(wanted: &HashSet<&str>, zone: &str) -> bool {
    wanted.contains(region_of(zone))
}

impl Machines for Gcp {
    type Machine = Instance;

    /// Every machine of the project, in every zone, across all pages.
    async fn list_machines(&self) -> Result<Vec<Instance>, ProviderError> {
        Ok(self
            .aggregated::<Instance>("instances", "instances")
            .await?
            .into_iter()
            .map(|(_, i)| i)
            .collect())
    }

    async fn get_machine(&self, cloud_id: &str) -> Result<Option<Instance>, ProviderError> {
        let Some((zone, name)) = cloud_id.split_once('/') else {
            return Ok(None);
        };
        self.get_found(&self.project_path(&format!("/zones/{zone}/instances/{name}")))
            .await
    }

    fn cloud_id(i: &Instance) -> String {
        format!("{}/{}", i.zone(), i.name)
    }

    fn marker_name(i: &Instance) -> Option<&str> {
        Some(&i.name)
    }

    fn torn_down(i: &Instance) -> bool {
        torn_down(i)
    }

    const NAME_LIMIT: usize = 63;
}

impl VolumeApi for Gcp {
    type Volume = Disk;

    async fn get_volume(
        &self,
        cloud_id: &str,
        _region: &str,
    ) -> Result<Option<Disk>, ProviderError> {
        let Some((zone, name)) = cloud_id.split_once('/') else {
            return Ok(None);
        };
        self.get_found(&self.project_path(&format!("/zones/{zone}/disks/{name}")))
            .await
    }

    async fn list_volumes(&self, region: Option<&str>) -> Result<Vec<Disk>, ProviderError> {
        Ok(self
            .aggregated::<Disk>("disks", "disks")
            .await?
            .into_iter()
            .map(|(_, d)| d)
            .filter(|d| region.is_none_or(|r| region_of(last(&d.zone)) == r))
            .collect())
    }

    async fn make_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        let zone = self.volume_zone(&req.region).await?;
        let name = self.known.marker().name(req.volume_id);
        let body = json!({
            "name": name,
            "sizeGb": req.size_in_gb.to_string(),
            "type": format!("zones/{zone}/diskTypes/pd-balanced"),
            "labels": {
                LABEL_DEPLOYMENT: self.deployment_id,
                LABEL_ID: req.volume_id.to_string(),
            },
        });
        let path = self.project_path(&format!("/zones/{zone}/disks"));
        let q = [("requestId", request_id(req.volume_id, &zone).to_string())];
        let _: Operation = self.gjson(Method::POST, &path, &q, Some(&body)).await?;
        Ok(VolumeState::Creating {
            cloud_assigned_id: format!("{zone}/{name}"),
        })
    }

    async fn remove_volume(&self, d: &Disk) -> Result<VolumeState, ProviderError> {
        let path = self.project_path(&format!("/zones/{}/disks/{}", last(&d.zone), d.name));
        let (status, text) = self.gcall(Method::DELETE, &path, &[], None).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(VolumeState::Deleting);
        }
        Err(classify(
            &format!("DELETE {path}"),
            &Failure { status, body: text },
        ))
    }

    fn marked(&self, d: &Disk) -> Option<Uuid> {
        self.known.marker().ours(&d.name)
    }

    fn place(&self, d: &Disk) -> (String, String) {
        let zone = last(&d.zone);
        (format!("{zone}/{}", d.name), region_of(zone).to_string())
    }

    fn state(&self, d: &Disk) -> VolumeState {
        let zone = last(&d.zone).to_string();
        let id = format!("{zone}/{}", d.name);
        match d.status.as_str() {
            "READY" => VolumeState::Available {
                cloud_assigned_id: id,
                zone: Some(zone),
            },
            "FAILED" => VolumeState::Failed {
                reason: "Google Cloud failed to make the disk".into(),
            },
            "DELETING" => VolumeState::Deleting,
            _ => VolumeState::Creating {
                cloud_assigned_id: id,
            },
        }
    }
}

#[async_trait]
impl Provider for Gcp {
    fn name(&self) -> &'static str {
        "gcp"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        self.offers.get(|| self.fetch_offers()).await
    }

    async fn volume_offers(&self) -> Result<Vec<VolumeOffer>, ProviderError> {
        Ok(VOLUMES.in_regions_of(&self.offers().await?))
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        self.known
            .launch(self, req.instance_id, |name| self.insert(req, name))
            .await
    }

    async fn describe(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        let found = self.known.find(self, id).await?;
        if found.is_none() {
            if let Some(s) = self.pending_insert(id).await? {
                return Ok(s);
            }
        }
        match found {
            Some(i) => Ok(state(&i)),
            None if self.spot.lock().expect("poisoned").remove(&id) => Ok(MachineState::Preempted),
            None if self.was_preempted(id).await? => Ok(MachineState::Preempted),
            None => Ok(MachineState::Gone),
        }
    }

    async fn restart(&self, id: Uuid) -> Result<(), ProviderError> {
        let Some(i) = self.known.find(self, id).await? else {
            return Err(ProviderError::Permanent(
                "Google Cloud has no machine for this instance".into(),
            ));
        };
        let path = self.project_path(&format!("/zones/{}/instances/{}/reset", i.zone(), i.name));
        let _: Operation = self.gjson(Method::POST, &path, &[], None).await?;
        Ok(())
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        self.spot.lock().expect("poisoned").remove(&id);
        self.pending.lock().expect("poisoned").remove(&id);
        let Some(i) = self.known.find(self, id).await? else {
            return Ok(MachineState::Gone);
        };
        let path = self.project_path(&format!("/zones/{}/instances/{}", i.zone(), i.name));
        let (status, text) = self.gcall(Method::DELETE, &path, &[], None).await?;
        if status == StatusCode::NOT_FOUND {
            self.known.forget(id);
            return Ok(MachineState::Gone);
        }
        if !status.is_success() {
            return Err(classify(
                &format!("DELETE {path}"),
                &Failure { status, body: text },
            ));
        }
        Ok(MachineState::Terminating)
    }

    async fn list_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        self.known.marked(self).await
    }

    async fn list_legacy_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        self.known.legacy_marked(self).await
    }

    async fn create_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        volumes::create(self, req).await
    }

    async fn describe_volume(&self, r: &VolumeRef) -> Result<VolumeState, ProviderError> {
        volumes::describe(self, r).await
    }

    async fn delete_volume(&self, r: &VolumeRef) -> Result<VolumeState, ProviderError> {
        volumes::delete(self, r).await
    }

    async fn list_marked_volumes(&self) -> Result<Vec<VolumeRef>, ProviderError> {
        volumes::list_marked(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(status: &str, ip: Option<&str>, spot: bool) -> Instance {
        serde_json::from_value(json!({
            "name": "parasol-x",
            "zone": "https://compute.googleapis.com/compute/v1/projects/p/zones/us-central1-b",
            "status": status,
            "networkInterfaces": [{"accessConfigs": [ip.map_or(json!({}), |ip| json!({"natIP": ip}))]}],
            "scheduling": {"provisioningModel": if spot { "SPOT" } else { "STANDARD" }},
        }))
        .unwrap()
    }

    #[test]
    fn compute_engine_states_map_onto_machine_states() {
        assert_eq!(
            state(&instance("PROVISIONING", None, false)),
            MachineState::Provisioning
        );
        assert_eq!(
            state(&instance("STAGING", None, false)),
            MachineState::Provisioning
        );
        assert_eq!(
            state(&instance("RUNNING", None, false)),
            MachineState::Booting
        );
        assert_eq!(
            state(&instance("REPAIRING", None, false)),
            MachineState::Booting
        );
        assert_eq!(
            state(&instance("RUNNING", Some("203.0.113.9"), false)),
            MachineState::Running {
                ip: "203.0.113.9".into(),
                ssh_port: 22,
                ssh_user: "ubuntu".into(),
                placement: Some("zone us-central1-b".into()),
            }
        );
        for s in ["STOPPING", "SUSPENDING", "SUSPENDED", "TERMINATED"] {
            assert_eq!(
                state(&instance(s, None, true)),
                MachineState::Preempted,
                "{s}"
            );
            assert!(
                matches!(state(&instance(s, None, false)), MachineState::Failed { reason } if reason.contains(s)),
                "{s}"
            );
        }
        assert!(torn_down(&instance("STOPPING", None, false)));
        assert!(!torn_down(&instance("REPAIRING", None, false)));
    }

    #[test]
    fn quota_rate_limit_and_exhaustion_are_told_apart() {
        let f = |status: u16, body: &str| Failure {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.into(),
        };
        let quota = classify(
            "POST x",
            &f(
                403,
                r#"{"error":{"code":403,"message":"Quota 'NVIDIA_H100_GPUS' exceeded. Limit: 0.0 in region us-central1.","errors":[{"reason":"quotaExceeded"}]}}"#,
            ),
        );
        assert!(
            matches!(&quota, ProviderError::Permanent(m) if m.contains("quota NVIDIA_H100_GPUS exceeded")),
            "{quota:?}"
        );
        assert!(matches!(
            classify(
                "GET x",
                &f(
                    403,
                    r#"{"error":{"code":403,"message":"slow down","errors":[{"reason":"rateLimitExceeded"}]}}"#
                )
            ),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            classify(
                "POST x",
                &f(
                    400,
                    r#"{"error":{"code":400,"message":"The zone 'z' does not have enough resources available to fulfill the request. ZONE_RESOURCE_POOL_EXHAUSTED","errors":[{"reason":"resourceNotReady"}]}}"#
                )
            ),
            ProviderError::Capacity(_)
        ));
        assert!(matches!(
            classify(
                "GET x",
                &f(
                    404,
                    r#"{"error":{"code":404,"message":"not found","errors":[{"reason":"notFound"}]}}"#
                )
            ),
            ProviderError::Permanent(_)
        ));
    }

    #[test]
    fn request_ids_are_stable_per_zone_and_valid_uuids() {
        let id = Uuid::new_v4();
        assert_eq!(
            request_id(id, "us-central1-a"),
            request_id(id, "us-central1-a")
        );
        assert_ne!(
            request_id(id, "us-central1-a"),
            request_id(id, "us-central1-b")
        );
        assert_ne!(request_id(id, "us-central1-a"), Uuid::nil());
        assert_eq!(region_of("us-central1-a"), "us-central1");
        assert_eq!(region_of("europe-west4-b"), "europe-west4");
    }
}
