//! `hyperstack`: Hyperstack's Infrahub API v1.
//!
//! Every request carries the `api_key` header. Endpoints used (relative to
//! the configured base URL, by default
//! `https://infrahub-api.nexgencloud.com/v1`): `GET /core/flavors` (with
//! `stock_available` per region), `GET /pricebook` (hourly price per GPU
//! model), `GET|POST /core/environments`, `GET|POST /core/keypairs`,
//! `GET|POST /core/virtual-machines`, `GET|DELETE
//! /core/virtual-machines/{id}`, `GET /core/virtual-machines/{id}/hard-reboot`,
//! `GET|POST /core/volumes`, `GET|DELETE /core/volumes/{id}`.
//!
//! Volumes are `Cloud-SSD` volumes of a fixed size, in the region's
//! environment; a machine of that environment mounts one by name at
//! create (`volume_name`), one machine at a time, and deleting the machine
//! detaches it. Hyperstack allows 50 characters for a volume name, too few
//! for the marker, so a volume is named `parasol-<volume id, 32 hex>` and
//! carries the full marker (`parasol-<deployment>-<volume id>`) as its
//! description, by which the sweep tells this deployment's volumes in
//! `GET /core/volumes` (every page, as for machines).
//!
//! Keypairs and machines live in an environment, and an environment in one
//! region, so Parasol keeps one environment per region
//! (`parasol-<region>`), created on first use. Machines are named
//! `parasol-<deployment id>-<instance id>` and found as every cloud finds
//! its machines (`find.rs`), in `GET /core/virtual-machines` (every page); a
//! launch first looks for that name, so a retried launch adopts the machine
//! an earlier attempt made.
//!
//! Hyperstack refuses to delete a machine that is still being created; that
//! refusal is transient, so the reconciler keeps trying until the delete is
//! accepted.
//!
//! Status mapping (Hyperstack `status` → [`MachineState`]):
//!
//! | Hyperstack                    | floating ip | MachineState   |
//! |-------------------------------|-------------|----------------|
//! | `CREATING`                    | any         | `Provisioning` |
//! | `BUILD`                       | any         | `Booting`      |
//! | `ACTIVE`                      | none        | `Booting`      |
//! | `ACTIVE`                      | set         | `Running`      |
//! | `ERROR`                       | any         | `Failed`       |
//! | `DELETING`                    | any         | `Terminating`  |
//! | `DELETED`                     | any         | `Gone`         |
//! | anything else (`REBOOT`, `HARD_REBOOT`, `SHUTOFF`, ...) | any | `Booting` |
//!
//! A machine that `GET /core/virtual-machines/{id}` answers 404 for, or that
//! the list no longer holds, is `Gone`.
//!
//! Flavors state no VRAM: a GPU name that states a size ("A100-80G-PCIe")
//! gives it, any other the model's published size. A flavor whose GPU no
//! Shadeform model fits is not offered, and is logged and counted
//! ([`super::gpus::unmapped`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::volumes::{self, VolumeApi, VolumeKind};
use super::{
    cents, configuration, generic_failure, gpu_model, key_name, parse_found, shade_type, short,
    Failure, Http, Num, OffersCache, Secret,
};
use super::{KnownMachines, Machines, RestApi};
use crate::providers::{
    Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError, RegionOffer,
    VolumeOffer, VolumeRef, VolumeRequest, VolumeState,
};

/// The cloud name in the API.
pub const CLOUD: &str = "hyperstack";
/// The public API.
pub const DEFAULT_URL: &str = "https://infrahub-api.nexgencloud.com/v1";
/// The OS offered, and the Hyperstack image it launches.
const OS: &str = "ubuntu22.04_cuda12.2_shade_os";
const IMAGE: &str = "Ubuntu Server 22.04 LTS R535 CUDA 12.2";

/// How to reach Hyperstack.
#[derive(Debug, Clone)]
pub struct HyperstackConfig {
    pub api_key: Secret,
    /// Base URL, up to and including `/v1`.
    pub url: String,
}

/// The Hyperstack adapter.
pub struct Hyperstack {
    cfg: HyperstackConfig,
    known: KnownMachines,
    http: Http,
    offers: OffersCache,
    /// Environments known to exist.
    envs: StdMutex<HashSet<String>>,
    /// Keypairs known to exist, as (environment, name).
    keys: StdMutex<HashSet<(String, String)>>,
    /// Serializes environment and keypair creation, so concurrent launches
    /// into a new region create each once.
    setup: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct Flavors {
    data: Vec<FlavorGroup>,
}

#[derive(Deserialize)]
struct FlavorGroup {
    #[serde(default)]
    flavors: Vec<Flavor>,
}

#[derive(Deserialize)]
struct Flavor {
    name: String,
    region_name: String,
    cpu: i64,
    ram: Num,
    #[serde(default)]
    disk: i64,
    #[serde(default)]
    ephemeral: i64,
    #[serde(default)]
    gpu: String,
    #[serde(default)]
    gpu_count: i64,
    #[serde(default)]
    stock_available: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Pricebook {
    List(Vec<Price>),
    Wrapped { data: Vec<Price> },
}

#[derive(Deserialize)]
struct Price {
    name: String,
    value: Num,
}

#[derive(Deserialize)]
struct Environments {
    #[serde(default)]
    environments: Vec<Named>,
}

#[derive(Deserialize)]
struct Keypairs {
    #[serde(default)]
    keypairs: Vec<Keypair>,
}

#[derive(Deserialize)]
struct Keypair {
    name: String,
    #[serde(default)]
    environment: Value,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct VmList {
    #[serde(default)]
    instances: Vec<Vm>,
    /// Machines on all pages together.
    #[serde(default)]
    count: Option<i64>,
}

/// Items asked for per page of a listing (machines, volumes).
const PAGE_SIZE_N: usize = 100;
const PAGE_SIZE: &str = "100";

/// One page of a listing Hyperstack pages (`page`, `pageSize`).
trait Page: DeserializeOwned {
    type Item;
    /// The page's items, and how many there are on every page together
    /// where Hyperstack says.
    fn items(self) -> (Vec<Self::Item>, Option<i64>);
}

impl Page for VmList {
    type Item = Vm;
    fn items(self) -> (Vec<Vm>, Option<i64>) {
        (self.instances, self.count)
    }
}

#[derive(Deserialize)]
struct VmOne {
    instance: Vm,
}

#[derive(Deserialize, Clone)]
pub(crate) struct Vm {
    id: Value,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    floating_ip: Option<String>,
}

impl Vm {
    fn id(&self) -> String {
        match &self.id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_reason: Option<String>,
}

impl Hyperstack {
    /// An adapter; it calls nothing until asked.
    pub fn new(cfg: HyperstackConfig, deployment_id: &str) -> Self {
        Self {
            cfg,
            known: KnownMachines::new(deployment_id),
            http: Http::new(CLOUD),
            offers: OffersCache::new(Duration::from_secs(20)),
            envs: StdMutex::new(HashSet::new()),
            keys: StdMutex::new(HashSet::new()),
            setup: tokio::sync::Mutex::new(()),
        }
    }

    /// Every item of the listing at `path`, page by page: `pageSize` is
    /// always sent (the document gives no default size), and reading stops
    /// at a short page or once `count` items are in. A listing read only
    /// to its first page would hide machines and volumes from a restarted
    /// adapter and from the sweep.
    async fn every_page<P: Page>(&self, path: &str) -> Result<Vec<P::Item>, ProviderError> {
        let mut all = Vec::new();
        for page in 1.. {
            let page = page.to_string();
            let list: P = self
                .json_query(
                    Method::GET,
                    path,
                    &[("page", page.as_str()), ("pageSize", PAGE_SIZE)],
                    None,
                )
                .await?;
            let (items, count) = list.items();
            let short = items.len() < PAGE_SIZE_N;
            all.extend(items);
            if short || count.is_some_and(|c| all.len() as i64 >= c) {
                break;
            }
        }
        Ok(all)
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>, ProviderError> {
        let flavors: Flavors = self.json(Method::GET, "/core/flavors", None).await?;
        let prices = match self
            .json::<Pricebook>(Method::GET, "/pricebook", None)
            .await?
        {
            Pricebook::List(p) | Pricebook::Wrapped { data: p } => p,
        };
        let per_gpu: HashMap<String, f64> = prices
            .into_iter()
            .map(|p| (p.name, p.value.get()))
            .collect();
        // One offer per flavor name, with the regions that carry it.
        let mut by_name: BTreeMap<String, Vec<Flavor>> = BTreeMap::new();
        for f in flavors.data.into_iter().flat_map(|g| g.flavors) {
            if f.gpu_count > 0 {
                by_name.entry(f.name.clone()).or_default().push(f);
            }
        }
        let mut out = Vec::new();
        for (name, regions) in by_name {
            let f = &regions[0];
            let Some(gpu) = gpu_model(&f.gpu) else {
                super::gpus::unmapped(CLOUD, &name);
                continue;
            };
            // Flavors carry no VRAM field; the GPU's name states it where
            // the model comes in sizes ("A100-80G-PCIe").
            let gpu = gpu.with_vram(super::gpus::stated_vram(&f.gpu).unwrap_or(0));
            let Some(price) = per_gpu.get(&f.gpu) else {
                tracing::debug!(flavor = %name, gpu = %f.gpu, "no price for this GPU in the pricebook; not offered");
                continue;
            };
            out.push(Offer {
                cloud: CLOUD.to_string(),
                shade_instance_type: shade_type(&gpu, f.gpu_count),
                cloud_instance_type: name.clone(),
                configuration: configuration(
                    &gpu,
                    f.gpu_count,
                    f.cpu,
                    f.ram.get().round() as i64,
                    f.disk + f.ephemeral,
                    &[OS],
                ),
                hourly_price: cents(price * f.gpu_count as f64),
                deployment_type: "vm".to_string(),
                boot_time: None,
                regions: regions
                    .iter()
                    .map(|r| RegionOffer {
                        region: r.region_name.clone(),
                        display_name: region_display(&r.region_name),
                        capacity: Capacity::Available(r.stock_available),
                        spot_price: None,
                    })
                    .collect(),
                ssh_user: "ubuntu".to_string(),
                ssh_port: 22,
            });
        }
        // Two types of one Shadeform name each stay orderable.
        super::gpus::unique_names(&mut out, |o| o.cloud_instance_type.clone());
        Ok(out)
    }

    async fn ensure_environment(&self, region: &str) -> Result<String, ProviderError> {
        let name = format!("parasol-{}", region.to_ascii_lowercase());
        if self.envs.lock().expect("poisoned").contains(&name) {
            return Ok(name);
        }
        let _one = self.setup.lock().await;
        let existing: Environments = self.json(Method::GET, "/core/environments", None).await?;
        if !existing.environments.iter().any(|e| e.name == name) {
            let _: Value = self
                .json(
                    Method::POST,
                    "/core/environments",
                    Some(&json!({"name": name, "region": region})),
                )
                .await?;
        }
        self.envs.lock().expect("poisoned").insert(name.clone());
        Ok(name)
    }

    async fn ensure_keypair(
        &self,
        environment: &str,
        public_key: &str,
    ) -> Result<String, ProviderError> {
        let name = key_name(public_key);
        let key = (environment.to_string(), name.clone());
        if self.keys.lock().expect("poisoned").contains(&key) {
            return Ok(name);
        }
        let _one = self.setup.lock().await;
        let existing: Keypairs = self.json(Method::GET, "/core/keypairs", None).await?;
        let present = existing.keypairs.iter().any(|k| {
            let env = match &k.environment {
                Value::String(s) => s.as_str(),
                Value::Object(o) => o.get("name").and_then(Value::as_str).unwrap_or(""),
                _ => "",
            };
            k.name == name && env == environment
        });
        if !present {
            let _: Value = self
                .json(
                    Method::POST,
                    "/core/keypairs",
                    Some(&json!({
                        "name": name,
                        "environment_name": environment,
                        "public_key": public_key.trim(),
                    })),
                )
                .await?;
        }
        self.keys.lock().expect("poisoned").insert(key);
        Ok(name)
    }
}

fn region_display(region: &str) -> String {
    match region {
        "CANADA-1" => "Canada, Montreal".to_string(),
        "NORWAY-1" => "Norway, Oslo".to_string(),
        "US-1" => "US, Minneapolis, MN".to_string(),
        other => other.to_string(),
    }
}

fn detail(f: &Failure) -> String {
    match serde_json::from_str::<ErrorBody>(&f.body) {
        Ok(e) if !e.message.is_empty() => match e.error_reason {
            Some(r) if !r.is_empty() => format!("{} ({r})", e.message),
            _ => e.message,
        },
        _ => short(&f.body),
    }
}

/// Volumes as Hyperstack lists them, a page at a time.
#[derive(Deserialize)]
struct HsVolumes {
    #[serde(default)]
    volumes: Vec<HsVolume>,
    /// Volumes on all pages together.
    #[serde(default)]
    count: Option<i64>,
}

impl Page for HsVolumes {
    type Item = HsVolume;
    fn items(self) -> (Vec<HsVolume>, Option<i64>) {
        (self.volumes, self.count)
    }
}

#[derive(Deserialize)]
struct OneHsVolume {
    volume: HsVolume,
}

/// A volume as Hyperstack shows it.
#[derive(Deserialize, Clone)]
pub(crate) struct HsVolume {
    id: i64,
    #[serde(default)]
    description: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    environment: Option<HsVolumeEnvironment>,
}

#[derive(Deserialize, Clone)]
struct HsVolumeEnvironment {
    #[serde(default)]
    region: String,
}

/// The volume type Parasol makes.
const VOLUME_TYPE: &str = "Cloud-SSD";
/// `Cloud-SSD` volumes: $0.08 per GB-month (730 hours), of a fixed size up
/// to Hyperstack's 1048576 GB, in every region with a flavor.
const VOLUMES: VolumeKind = VolumeKind {
    cloud: CLOUD,
    supports_multi_mount: false,
    fixed_size: true,
    price_micros_per_gb_hour: 110,
    min_size_gb: 1,
    max_size_gb: 1_048_576,
    mount_rule: "a Hyperstack volume mounts only on machines in its own region's environment",
};

/// The name of Parasol volume `id` at Hyperstack.
fn volume_name(id: Uuid) -> String {
    format!("parasol-{}", id.simple())
}

impl VolumeApi for Hyperstack {
    type Volume = HsVolume;

    async fn get_volume(&self, id: &str, _region: &str) -> Result<Option<HsVolume>, ProviderError> {
        let v: Option<OneHsVolume> =
            volumes::get_found(self, &format!("/core/volumes/{id}")).await?;
        Ok(v.map(|v| v.volume))
    }

    async fn list_volumes(&self, region: Option<&str>) -> Result<Vec<HsVolume>, ProviderError> {
        let all = self.every_page::<HsVolumes>("/core/volumes").await?;
        Ok(all
            .into_iter()
            .filter(|v| region.is_none_or(|r| v.environment.as_ref().is_none_or(|e| e.region == r)))
            .collect())
    }

    async fn make_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        let env = self.ensure_environment(&req.region).await?;
        let body = json!({
            "name": volume_name(req.volume_id),
            "description": self.known.marker().name(req.volume_id),
            "environment_name": env,
            "size": req.size_in_gb,
            "volume_type": VOLUME_TYPE,
        });
        let v: OneHsVolume = self
            .json(Method::POST, "/core/volumes", Some(&body))
            .await?;
        Ok(self.state(&v.volume))
    }

    /// A volume still attached to a machine being deleted is refused, and
    /// retried.
    async fn remove_volume(&self, v: &HsVolume) -> Result<VolumeState, ProviderError> {
        volumes::delete_found(self, &format!("/core/volumes/{}", v.id)).await
    }

    /// The marker is in the description: the name is too short for it.
    fn marked(&self, v: &HsVolume) -> Option<Uuid> {
        self.known.marker().ours(&v.description)
    }

    fn place(&self, v: &HsVolume) -> (String, String) {
        let region = v.environment.as_ref().map(|e| e.region.clone());
        (v.id.to_string(), region.unwrap_or_default())
    }

    fn state(&self, v: &HsVolume) -> VolumeState {
        let id = v.id.to_string();
        match v.status.to_ascii_lowercase().as_str() {
            "available" | "in-use" | "attached" => VolumeState::Available {
                cloud_assigned_id: id,
                zone: None,
            },
            "deleting" => VolumeState::Deleting,
            "deleted" => VolumeState::Gone,
            s if s.starts_with("error") => VolumeState::Failed {
                reason: format!("{CLOUD}: volume {id} is {}", v.status),
            },
            _ => VolumeState::Creating {
                cloud_assigned_id: id,
            },
        }
    }
}

fn classify(what: &str, f: &Failure) -> ProviderError {
    let d = detail(f);
    let lower = d.to_ascii_lowercase();
    if f.status.is_client_error()
        && !matches!(f.status.as_u16(), 401 | 403 | 429)
        && (lower.contains("stock") || lower.contains("capacity"))
    {
        return ProviderError::Capacity(format!("{CLOUD}: {d}"));
    }
    generic_failure(CLOUD, what, f, &d)
}

fn state(v: &Vm) -> MachineState {
    let ip = v.floating_ip.clone().filter(|s| !s.is_empty());
    match (v.status.as_str(), ip) {
        ("CREATING", _) => MachineState::Provisioning,
        ("ACTIVE", Some(ip)) => MachineState::Running {
            ip,
            ssh_port: 22,
            ssh_user: "ubuntu".to_string(),
            placement: None,
        },
        ("ERROR", _) => MachineState::Failed {
            reason: format!("{CLOUD} reported the machine in ERROR"),
        },
        ("DELETING", _) => MachineState::Terminating,
        ("DELETED", _) => MachineState::Gone,
        _ => MachineState::Booting,
    }
}

impl Machines for Hyperstack {
    type Machine = Vm;

    /// `Create_VMs`'s `name` holds 50 characters.
    const NAME_LIMIT: usize = 50;

    /// Every page of the listing: the document gives `page` and `pageSize`
    /// but no default size, so the size is always sent and pages are read
    /// until one comes back short (or `count` says there are no more). A
    /// first page alone would hide the machines beyond it after a restart.
    async fn list_machines(&self) -> Result<Vec<Vm>, ProviderError> {
        self.every_page::<VmList>("/core/virtual-machines").await
    }

    async fn get_machine(&self, vm_id: &str) -> Result<Option<Vm>, ProviderError> {
        let path = format!("/core/virtual-machines/{vm_id}");
        let (status, text) = self.call(Method::GET, &path, None).await?;
        let v: Option<VmOne> = parse_found(CLOUD, &format!("GET {path}"), status, text, classify)?;
        Ok(v.map(|v| v.instance))
    }

    fn cloud_id(v: &Vm) -> String {
        v.id()
    }

    fn marker_name(v: &Vm) -> Option<&str> {
        Some(&v.name)
    }

    fn torn_down(v: &Vm) -> bool {
        matches!(v.status.as_str(), "DELETING" | "DELETED")
    }
}

impl RestApi for Hyperstack {
    fn http(&self) -> &Http {
        &self.http
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, &self.cfg.url, path)
            .header("api_key", self.cfg.api_key.expose())
    }

    fn classify(&self, what: &str, f: &Failure) -> ProviderError {
        classify(what, f)
    }
}

#[async_trait]
impl Provider for Hyperstack {
    fn name(&self) -> &'static str {
        "hyperstack"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        self.offers.get(|| self.fetch_offers()).await
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        self.known
            .launch(self, req.instance_id, |name| async move {
                let Some(public_key) = req.ssh_public_key.as_deref() else {
                    return Err(ProviderError::Permanent(
                        "Hyperstack needs an SSH key to launch; add one with /sshkeys/add or pass ssh_key_id"
                            .into(),
                    ));
                };
                let env = self.ensure_environment(&req.region).await?;
                let key = self.ensure_keypair(&env, public_key).await?;
                let mut body = json!({
                    "name": name,
                    "environment_name": env,
                    "image_name": IMAGE,
                    "flavor_name": req.cloud_instance_type,
                    "key_name": key,
                    "count": 1,
                    "assign_floating_ip": true,
                });
                if let Some(v) = req.volumes.first() {
                    body["volume_name"] = json!(volume_name(v.id));
                }
                if let Some(script) = super::first_boot_script(req, "ubuntu")? {
                    body["user_data"] = json!(script);
                }
                let created: VmList = match self
                    .json(Method::POST, "/core/virtual-machines", Some(&body))
                    .await
                {
                    Ok(c) => c,
                    Err(e @ ProviderError::Capacity(_)) => {
                        self.offers.clear().await;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                let vm = created.instances.into_iter().next().ok_or_else(|| {
                    ProviderError::Transient(
                        "Hyperstack accepted the create but listed no machine".into(),
                    )
                })?;
                Ok(vm.id())
            })
            .await
    }

    async fn describe(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        Ok(self
            .known
            .find(self, id)
            .await?
            .map_or(MachineState::Gone, |v| state(&v)))
    }

    async fn restart(&self, id: Uuid) -> Result<(), ProviderError> {
        let Some(v) = self.known.find(self, id).await? else {
            return Err(ProviderError::Permanent(
                "Hyperstack has no machine for this instance".into(),
            ));
        };
        let _: Value = self
            .json(
                Method::GET,
                &format!("/core/virtual-machines/{}/hard-reboot", v.id()),
                None,
            )
            .await?;
        Ok(())
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        let Some(v) = self.known.find(self, id).await? else {
            return Ok(MachineState::Gone);
        };
        match v.status.as_str() {
            "DELETED" => return Ok(MachineState::Gone),
            "DELETING" => return Ok(MachineState::Terminating),
            _ => {}
        }
        let path = format!("/core/virtual-machines/{}", v.id());
        let (status, text) = self.call(Method::DELETE, &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            self.known.forget(id);
            return Ok(MachineState::Gone);
        }
        if status.is_success() {
            return Ok(MachineState::Terminating);
        }
        let f = Failure { status, body: text };
        let booting = matches!(v.status.as_str(), "CREATING" | "BUILD");
        if booting && status.is_client_error() && !matches!(status.as_u16(), 401 | 403) {
            // Hyperstack will not delete a machine it is still creating;
            // the next attempt, after the reconciler's backoff, will.
            return Err(ProviderError::Transient(format!(
                "{CLOUD} refused to delete the machine while it is {}: {}",
                v.status,
                detail(&f)
            )));
        }
        Err(classify(&format!("DELETE {path}"), &f))
    }

    async fn volume_offers(&self) -> Result<Vec<VolumeOffer>, ProviderError> {
        Ok(VOLUMES.in_regions_of(&self.offers().await?))
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

    async fn list_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        self.known.marked(self).await
    }

    async fn list_legacy_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        self.known.legacy_marked(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_machine_without_a_floating_ip_is_still_booting() {
        let vm = |status: &str, ip: Option<&str>| Vm {
            id: json!(7),
            name: String::new(),
            status: status.into(),
            floating_ip: ip.map(str::to_string),
        };
        assert_eq!(state(&vm("ACTIVE", None)), MachineState::Booting);
        assert!(matches!(
            state(&vm("ACTIVE", Some("1.2.3.4"))),
            MachineState::Running { .. }
        ));
        assert_eq!(state(&vm("CREATING", None)), MachineState::Provisioning);
        assert_eq!(vm("ACTIVE", None).id(), "7");
    }
}
