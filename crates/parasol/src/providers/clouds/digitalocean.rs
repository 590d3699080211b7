//! `digitalocean`: DigitalOcean's API v2, GPU Droplets.
//!
//! Every request carries `Authorization: Bearer <token>`. Endpoints used
//! (relative to the configured base URL, by default
//! `https://api.digitalocean.com/v2`): `GET /sizes` (GPU sizes carry
//! `gpu_info`), `GET /regions` (display names), `GET|POST
//! /account/keys`, `GET|POST /droplets`, `GET|DELETE /droplets/{id}`,
//! `POST /droplets/{id}/actions` (`reboot`), `GET|POST /volumes`,
//! `GET|DELETE /volumes/{id}`.
//!
//! Volumes are block storage volumes, offered in every region with a GPU
//! size; one mounts only on a droplet of its own region, one droplet at a
//! time. A volume is named with the deployment's marker and Parasol's
//! volume id (`parasol-<deployment>-<volume id>`, within DigitalOcean's
//! 64 lowercase characters), tagged like droplets, formatted ext4 (so it
//! mounts itself on Ubuntu), and attached at droplet create
//! (`volumes: [id]`); deleting the droplet detaches it.
//!
//! Droplets are named with the deployment's marker and tagged
//! `parasol-<deployment id>` (for operators). They are found as every cloud
//! finds its machines (`find.rs`): by the remembered droplet id, else
//! by name in the listing, so a retried launch adopts the droplet an
//! earlier attempt made. That listing is `GET /droplets?type=gpus`:
//! without `type`, DigitalOcean lists only droplets without GPUs, and
//! Parasol rents nothing else (its offers are the sizes with `gpu_info`),
//! so the GPU listing holds every droplet Parasol made, tagged or, from
//! before deployment ids, not.
//!
//! A create refused with 422 for the size or region being unavailable is a
//! capacity error; other 422s are permanent. A 429 is waited out as
//! `Retry-After` says (DigitalOcean also sends `ratelimit-limit`,
//! `ratelimit-remaining` and `ratelimit-reset`).
//!
//! Status mapping (droplet `status` → [`MachineState`]):
//!
//! | status    | public IPv4 | MachineState   |
//! |-----------|-------------|----------------|
//! | `new`     | any         | `Provisioning` |
//! | `active`  | none        | `Booting`      |
//! | `active`  | set         | `Running`      |
//! | `off`     | any         | `Booting` (a reboot passes through it) |
//! | `archive` | any         | `Gone`         |
//!
//! A droplet that `GET /droplets/{id}` answers 404 for is `Gone`.
//!
//! Where the documentation is silent, and what this adapter assumes:
//! - Which 422 texts mean "no capacity" is not listed: those naming
//!   capacity or availability are; others (bad name, image) are permanent.
//! - `gpu_info.model` (`nvidia_h100`, `amd_mi300x`) does not say SXM or
//!   PCIe; the type is named from the model and slug (`H100`, `H100x8`,
//!   `MI300Xx8`). A GPU size no Shadeform model fits is not offered, and
//!   is logged and counted ([`super::gpus::unmapped`]).
//! - `gpu_info.vram` is the droplet's VRAM, all its GPUs together (the
//!   slugs say so: `gpu-h100x8-640gb`, `gpu-mi300x8-1536gb`): VRAM per GPU
//!   is that over `count`.
//! - A size's `available` flag applies to every region it lists.
//! - The image is the AI/ML-ready `gpu-h100x1-base` for every NVIDIA size,
//!   and the ROCm one, `gpu-amd-base`, for AMD sizes: each size offers the
//!   one OS its GPUs run, and the launch picks the image by the OS.
//! - Droplet listings follow `links.pages.next`, 200 a page; sizes,
//!   regions and keys are read as one page of 200.
//! - Block storage: $0.10/GB-month, 1 GB to 16 TB, in every GPU region.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::gpus::AMD;
use super::volumes::{self, VolumeApi, VolumeKind};
use super::{
    cents, configuration, generic_failure, gpu_model, key_name, parse_found, shade_type, short,
    Failure, Http, OffersCache, Secret,
};
use super::{KnownMachines, Machines, RestApi};
use crate::providers::{
    Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError, RegionOffer,
    VolumeOffer, VolumeRef, VolumeRequest, VolumeState,
};

/// The cloud name in the API.
pub const CLOUD: &str = "digitalocean";
/// The public API.
pub const DEFAULT_URL: &str = "https://api.digitalocean.com/v2";
const OS: &str = "ubuntu22.04_cuda12.4_shade_os";
/// The OS of AMD sizes: ROCm instead of CUDA.
const OS_AMD: &str = "ubuntu22.04_rocm6_shade_os";
/// DigitalOcean's AI/ML-ready image for NVIDIA GPU Droplets.
const IMAGE: &str = "gpu-h100x1-base";
/// DigitalOcean's AI/ML-ready image for AMD GPU Droplets.
const IMAGE_AMD: &str = "gpu-amd-base";
/// Block storage volumes: $0.10 per GB-month (730 hours), 1 GB to 16 TB,
/// in every region with a GPU size.
const VOLUMES: VolumeKind = VolumeKind {
    cloud: CLOUD,
    supports_multi_mount: false,
    fixed_size: false,
    price_micros_per_gb_hour: 137,
    min_size_gb: 1,
    max_size_gb: 16_384,
    mount_rule: "a DigitalOcean volume mounts only on droplets in its own region",
};
/// Droplets and sizes listed per page (DigitalOcean's maximum).
const PER_PAGE: &str = "200";

/// How to reach DigitalOcean.
#[derive(Debug, Clone)]
pub struct DigitalOceanConfig {
    pub token: Secret,
    /// Base URL, up to and including `/v2`.
    pub url: String,
}

/// The DigitalOcean adapter.
pub struct DigitalOcean {
    cfg: DigitalOceanConfig,
    known: KnownMachines,
    /// The tag every droplet of this deployment carries.
    tag: String,
    http: Http,
    offers: OffersCache,
    /// SSH key ids at DigitalOcean, by Parasol's key name.
    keys: StdMutex<HashMap<String, i64>>,
    key_setup: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct Sizes {
    sizes: Vec<Size>,
}

#[derive(Deserialize, Clone)]
struct Size {
    slug: String,
    /// MB.
    memory: i64,
    vcpus: i64,
    disk: i64,
    price_hourly: f64,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default = "yes")]
    available: bool,
    #[serde(default)]
    gpu_info: Option<GpuInfo>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone)]
struct GpuInfo {
    count: i64,
    #[serde(default)]
    model: String,
    #[serde(default)]
    vram: Option<Vram>,
}

#[derive(Deserialize, Clone)]
struct Vram {
    amount: i64,
    #[serde(default)]
    unit: String,
}

impl GpuInfo {
    /// VRAM per GPU in GB, where the size states it.
    fn vram_per_gpu(&self) -> Option<i64> {
        let v = self.vram.as_ref()?;
        let total = match v.unit.to_ascii_lowercase().as_str() {
            "tib" | "tb" => v.amount * 1024,
            "mib" | "mb" => v.amount / 1024,
            _ => v.amount,
        };
        (self.count > 0).then(|| total / self.count)
    }
}

#[derive(Deserialize)]
struct Regions {
    regions: Vec<DoRegion>,
}

#[derive(Deserialize)]
struct DoRegion {
    slug: String,
    name: String,
}

#[derive(Deserialize)]
struct Droplets {
    droplets: Vec<Droplet>,
    #[serde(default)]
    links: Links,
}

#[derive(Deserialize, Default)]
struct Links {
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Deserialize)]
struct Pages {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct OneDroplet {
    droplet: Droplet,
}

#[derive(Deserialize, Clone)]
pub(crate) struct Droplet {
    id: i64,
    name: String,
    status: String,
    #[serde(default)]
    networks: Networks,
}

#[derive(Deserialize, Clone, Default)]
struct Networks {
    #[serde(default)]
    v4: Vec<Network>,
}

#[derive(Deserialize, Clone)]
struct Network {
    ip_address: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Keys {
    ssh_keys: Vec<DoKey>,
}

#[derive(Deserialize)]
struct OneKey {
    ssh_key: DoKey,
}

#[derive(Deserialize)]
struct DoKey {
    id: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    public_key: String,
}

#[derive(Deserialize)]
struct DoVolumes {
    volumes: Vec<DoVolume>,
    #[serde(default)]
    links: Links,
}

#[derive(Deserialize)]
struct OneVolume {
    volume: DoVolume,
}

/// A block storage volume as DigitalOcean shows it.
#[derive(Deserialize, Clone)]
pub(crate) struct DoVolume {
    id: String,
    name: String,
    region: VolumeRegion,
}

#[derive(Deserialize, Clone)]
pub(crate) struct VolumeRegion {
    slug: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message: String,
}

impl DigitalOcean {
    /// An adapter; it calls nothing until asked.
    pub fn new(cfg: DigitalOceanConfig, deployment_id: &str) -> Self {
        Self {
            cfg,
            known: KnownMachines::new(deployment_id),
            tag: format!("parasol-{deployment_id}"),
            http: Http::new(CLOUD),
            offers: OffersCache::new(Duration::from_secs(20)),
            keys: StdMutex::new(HashMap::new()),
            key_setup: tokio::sync::Mutex::new(()),
        }
    }

    /// GPU sizes, with the regions that carry them.
    async fn gpu_sizes(&self) -> Result<Vec<Size>, ProviderError> {
        let s: Sizes = self
            .json_query(Method::GET, "/sizes", &[("per_page", PER_PAGE)], None)
            .await?;
        Ok(s.sizes
            .into_iter()
            .filter(|s| s.gpu_info.as_ref().is_some_and(|g| g.count > 0))
            .collect())
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>, ProviderError> {
        let sizes = self.gpu_sizes().await?;
        let regions: Regions = self
            .json_query(Method::GET, "/regions", &[("per_page", PER_PAGE)], None)
            .await?;
        let names: HashMap<String, String> = regions
            .regions
            .into_iter()
            .map(|r| (r.slug, r.name))
            .collect();
        let mut out = Vec::new();
        for s in sizes {
            let g = s.gpu_info.clone().expect("filtered to GPU sizes");
            // `nvidia_h100` → "NVIDIA H100"; the slug names the variant
            // when the model does not.
            let desc = format!("{} {}", g.model.replace('_', " "), s.slug);
            let Some(gpu) = gpu_model(&desc) else {
                super::gpus::unmapped(CLOUD, &s.slug);
                continue;
            };
            let gpu = gpu.with_vram(g.vram_per_gpu().unwrap_or(0));
            let os = if gpu.manufacturer == AMD { OS_AMD } else { OS };
            out.push(Offer {
                cloud: CLOUD.to_string(),
                shade_instance_type: shade_type(&gpu, g.count),
                cloud_instance_type: s.slug.clone(),
                configuration: configuration(
                    &gpu,
                    g.count,
                    s.vcpus,
                    s.memory / 1024,
                    s.disk,
                    &[os],
                ),
                hourly_price: cents(s.price_hourly),
                deployment_type: "vm".to_string(),
                boot_time: None,
                regions: s
                    .regions
                    .iter()
                    .map(|r| RegionOffer {
                        region: r.clone(),
                        display_name: names.get(r).cloned().unwrap_or_else(|| r.clone()),
                        capacity: Capacity::Available(s.available),
                        spot_price: None,
                    })
                    .collect(),
                ssh_user: "root".to_string(),
                ssh_port: 22,
            });
        }
        // Two types of one Shadeform name each stay orderable.
        super::gpus::unique_names(&mut out, |o| o.cloud_instance_type.clone());
        Ok(out)
    }

    async fn ensure_key(&self, public_key: &str) -> Result<i64, ProviderError> {
        let name = key_name(public_key);
        if let Some(id) = self.keys.lock().expect("poisoned").get(&name) {
            return Ok(*id);
        }
        let _one = self.key_setup.lock().await;
        let existing: Keys = self
            .json_query(
                Method::GET,
                "/account/keys",
                &[("per_page", PER_PAGE)],
                None,
            )
            .await?;
        let id = match existing
            .ssh_keys
            .iter()
            .find(|k| k.name == name || k.public_key.trim() == public_key.trim())
        {
            Some(k) => k.id,
            None => {
                self.json::<OneKey>(
                    Method::POST,
                    "/account/keys",
                    Some(&json!({"name": name, "public_key": public_key.trim()})),
                )
                .await?
                .ssh_key
                .id
            }
        };
        self.keys.lock().expect("poisoned").insert(name, id);
        Ok(id)
    }
}

impl VolumeApi for DigitalOcean {
    type Volume = DoVolume;

    async fn get_volume(&self, id: &str, _region: &str) -> Result<Option<DoVolume>, ProviderError> {
        let v: Option<OneVolume> = volumes::get_found(self, &format!("/volumes/{id}")).await?;
        Ok(v.map(|v| v.volume))
    }

    /// Following `links.pages.next`.
    async fn list_volumes(&self, region: Option<&str>) -> Result<Vec<DoVolume>, ProviderError> {
        let mut all = Vec::new();
        for page in 1.. {
            let page = page.to_string();
            let mut q = vec![("per_page", PER_PAGE), ("page", page.as_str())];
            q.extend(region.map(|r| ("region", r)));
            let v: DoVolumes = self.json_query(Method::GET, "/volumes", &q, None).await?;
            let more = v.links.pages.and_then(|p| p.next).is_some() && !v.volumes.is_empty();
            all.extend(v.volumes);
            if !more {
                break;
            }
        }
        Ok(all)
    }

    async fn make_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        let body = json!({
            "name": self.known.marker().name(req.volume_id),
            "description": req.name,
            "region": req.region,
            "size_gigabytes": req.size_in_gb,
            "filesystem_type": "ext4",
            "tags": [self.tag],
        });
        let v: OneVolume = self.json(Method::POST, "/volumes", Some(&body)).await?;
        Ok(self.state(&v.volume))
    }

    async fn remove_volume(&self, v: &DoVolume) -> Result<VolumeState, ProviderError> {
        volumes::delete_found(self, &format!("/volumes/{}", v.id)).await
    }

    fn marked(&self, v: &DoVolume) -> Option<Uuid> {
        self.known.marker().ours(&v.name)
    }

    fn place(&self, v: &DoVolume) -> (String, String) {
        (v.id.clone(), v.region.slug.clone())
    }

    /// Usable as soon as it is listed: the create answers it made.
    fn state(&self, v: &DoVolume) -> VolumeState {
        VolumeState::Available {
            cloud_assigned_id: v.id.clone(),
            zone: None,
        }
    }
}

/// Attaches the instance's volumes in the droplet create (`volumes`), the
/// only way DigitalOcean attaches at launch.
fn attach_at_create(body: &mut Value, req: &LaunchRequest) {
    if !req.volumes.is_empty() {
        body["volumes"] = json!(req
            .volumes
            .iter()
            .map(|v| &v.cloud_assigned_id)
            .collect::<Vec<_>>());
    }
}

fn classify(what: &str, f: &Failure) -> ProviderError {
    let (id, d) = match serde_json::from_str::<ErrorBody>(&f.body) {
        Ok(e) if !e.message.is_empty() => (e.id.clone(), format!("{}: {}", e.id, e.message)),
        _ => (String::new(), short(&f.body)),
    };
    let lower = d.to_ascii_lowercase();
    if f.status.as_u16() == 422
        && (lower.contains("capacity")
            || lower.contains("not available")
            || lower.contains("unavailable"))
    {
        return ProviderError::Capacity(format!("{CLOUD}: {d}"));
    }
    if id == "unauthorized" {
        return ProviderError::Permanent(format!(
            "{CLOUD} rejected the token ({d}); check PARASOL_DIGITALOCEAN_TOKEN"
        ));
    }
    generic_failure(CLOUD, what, f, &d)
}

fn state(d: &Droplet) -> MachineState {
    let ip = d
        .networks
        .v4
        .iter()
        .find(|n| n.kind == "public")
        .map(|n| n.ip_address.clone());
    match (d.status.as_str(), ip) {
        ("new", _) => MachineState::Provisioning,
        ("active", Some(ip)) => MachineState::Running {
            ip,
            ssh_port: 22,
            ssh_user: "root".to_string(),
            placement: None,
        },
        ("archive", _) => MachineState::Gone,
        _ => MachineState::Booting,
    }
}

impl Machines for DigitalOcean {
    type Machine = Droplet;

    /// Every GPU droplet, following `links.pages.next`.
    async fn list_machines(&self) -> Result<Vec<Droplet>, ProviderError> {
        let mut all = Vec::new();
        for page in 1.. {
            let page = page.to_string();
            let q = [
                ("type", "gpus"),
                ("per_page", PER_PAGE),
                ("page", page.as_str()),
            ];
            let d: Droplets = self.json_query(Method::GET, "/droplets", &q, None).await?;
            let more = d.links.pages.and_then(|p| p.next).is_some() && !d.droplets.is_empty();
            all.extend(d.droplets);
            if !more {
                break;
            }
        }
        Ok(all)
    }

    async fn get_machine(&self, droplet_id: &str) -> Result<Option<Droplet>, ProviderError> {
        let path = format!("/droplets/{droplet_id}");
        let (status, text) = self.call(Method::GET, &path, None).await?;
        let d: Option<OneDroplet> =
            parse_found(CLOUD, &format!("GET {path}"), status, text, classify)?;
        Ok(d.map(|d| d.droplet))
    }

    fn cloud_id(d: &Droplet) -> String {
        d.id.to_string()
    }

    fn marker_name(d: &Droplet) -> Option<&str> {
        Some(&d.name)
    }

    fn torn_down(d: &Droplet) -> bool {
        d.status == "archive"
    }
}

impl RestApi for DigitalOcean {
    fn http(&self) -> &Http {
        &self.http
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, &self.cfg.url, path)
            .bearer_auth(self.cfg.token.expose())
    }

    fn classify(&self, what: &str, f: &Failure) -> ProviderError {
        classify(what, f)
    }
}

#[async_trait]
impl Provider for DigitalOcean {
    fn name(&self) -> &'static str {
        "digitalocean"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        self.offers.get(|| self.fetch_offers()).await
    }

    async fn volume_offers(&self) -> Result<Vec<VolumeOffer>, ProviderError> {
        Ok(VOLUMES.in_regions_of(&self.offers().await?))
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        self.known
            .launch(self, req.instance_id, |name| async move {
                let keys = match req.ssh_public_key.as_deref() {
                    Some(k) => vec![self.ensure_key(k).await?],
                    None => vec![],
                };
                let mut body = json!({
                    "name": name,
                    "region": req.region,
                    "size": req.cloud_instance_type,
                    "image": if req.os == OS_AMD { IMAGE_AMD } else { IMAGE },
                    "ssh_keys": keys,
                    "tags": [self.tag],
                });
                attach_at_create(&mut body, req);
                // Droplets log in as root, so the launch configuration runs
                // as root.
                if let Some(script) = super::first_boot_script(req, "root")? {
                    body["user_data"] = json!(script);
                }
                match self
                    .json::<OneDroplet>(Method::POST, "/droplets", Some(&body))
                    .await
                {
                    Ok(d) => Ok(d.droplet.id.to_string()),
                    Err(e @ ProviderError::Capacity(_)) => {
                        self.offers.clear().await;
                        Err(e)
                    }
                    Err(e) => Err(e),
                }
            })
            .await
    }

    async fn describe(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        Ok(self
            .known
            .find(self, id)
            .await?
            .map_or(MachineState::Gone, |d| state(&d)))
    }

    async fn restart(&self, id: Uuid) -> Result<(), ProviderError> {
        let Some(d) = self.known.find(self, id).await? else {
            return Err(ProviderError::Permanent(
                "DigitalOcean has no droplet for this instance".into(),
            ));
        };
        let _: Value = self
            .json(
                Method::POST,
                &format!("/droplets/{}/actions", d.id),
                Some(&json!({"type": "reboot"})),
            )
            .await?;
        Ok(())
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        let Some(d) = self.known.find(self, id).await? else {
            return Ok(MachineState::Gone);
        };
        if d.status == "archive" {
            return Ok(MachineState::Gone);
        }
        let path = format!("/droplets/{}", d.id);
        let (status, text) = self.call(Method::DELETE, &path, None).await?;
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

    async fn list_legacy_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        self.known.legacy_marked(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_422_about_availability_is_capacity() {
        let f = |status: u16, body: &str| Failure {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.into(),
        };
        assert!(matches!(
            classify(
                "POST /droplets",
                &f(
                    422,
                    r#"{"id":"unprocessable_entity","message":"Size is not available in this region."}"#
                )
            ),
            ProviderError::Capacity(_)
        ));
        assert!(matches!(
            classify(
                "POST /droplets",
                &f(
                    422,
                    r#"{"id":"unprocessable_entity","message":"Name is invalid."}"#
                )
            ),
            ProviderError::Permanent(_)
        ));
        assert!(matches!(
            classify("GET /sizes", &f(401, r#"{"id":"unauthorized","message":"Unable to authenticate you"}"#)),
            ProviderError::Permanent(m) if m.contains("PARASOL_DIGITALOCEAN_TOKEN")
        ));
    }
}
