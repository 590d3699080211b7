//! `lambdalabs`: Lambda Cloud's public API v1.
//!
//! Endpoints used (relative to the configured base URL, by default
//! `https://cloud.lambda.ai/api/v1`): `GET /instance-types`,
//! `GET /instances`, `GET /instances/{id}`,
//! `POST /instance-operations/{launch,restart,terminate}`,
//! `GET|POST /ssh-keys`, `GET /file-systems`, `POST /filesystems`,
//! `DELETE /filesystems/{id}`. Every request carries
//! `Authorization: Bearer <api key>`.
//!
//! Volumes are Lambda's shared filesystems: elastic (no size; billed per
//! GB stored at $0.20/GB-month), in one region, mounted by name at launch
//! (`file_system_names`) on any number of instances of that region. A
//! filesystem is named with the marker and Parasol's volume id; Lambda
//! refuses to delete one still mounted.
//!
//! Machines are named `parasol-<deployment id>-<instance id>` (see
//! [`super::Marker`]) and found as every cloud finds its machines
//! (`find.rs`), in `GET /instances`; a launch first looks for a
//! machine of that name, so a launch retried after a timeout adopts the
//! machine the first attempt made instead of renting a second. Launches are
//! paced client-side (Lambda allows about one launch request per 12 s).
//!
//! Status mapping (`status` of a Lambda instance → [`MachineState`]):
//!
//! | Lambda        | ip      | MachineState   | API status         |
//! |---------------|---------|----------------|--------------------|
//! | `booting`     | none    | `Provisioning` | `pending_provider` |
//! | `booting`     | set     | `Booting`      | `pending`          |
//! | `active`      | none    | `Booting`      | `pending`          |
//! | `active`      | set     | `Running`      | `active`           |
//! | `unhealthy`   | any     | `Booting`      | `pending` (kept)   |
//! | `terminating` | any     | `Terminating`  | (teardown)         |
//! | `terminated`  | any     | `Gone`         | (teardown)         |
//! | `preempted`   | any     | `Preempted`    | `deleting`         |
//! | anything else | any     | `Booting`      | `pending`          |
//!
//! A machine that no longer appears (404 on `GET /instances/{id}`, absent
//! from the list) is `Gone`.
//!
//! VRAM per GPU is the size `gpu_description` states ("H100 (80 GB
//! SXM5)"); a type whose GPU no Shadeform model fits is not offered, and is
//! logged and counted ([`super::gpus::unmapped`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::parse_found;
use super::volumes::{self, VolumeApi, VolumeKind};
use super::{
    configuration, generic_failure, gpu_model, key_name, shade_type, short, Failure, Http,
    KnownMachines, LaunchPacer, Machines, OffersCache, Secret,
};
use crate::providers::{
    Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError, RegionOffer,
    VolumeOffer, VolumeRef, VolumeRequest, VolumeState,
};

/// The cloud name in the API.
pub const CLOUD: &str = "lambdalabs";
/// The public API.
pub const DEFAULT_URL: &str = "https://cloud.lambda.ai/api/v1";
/// Lambda's documented launch rate: one request per 12 seconds.
pub const DEFAULT_LAUNCH_INTERVAL: Duration = Duration::from_secs(12);
/// The OS every Lambda type offers: Lambda Stack on Ubuntu 22.04, the
/// image a launch without `image` gets.
const OS: &str = "ubuntu22.04_cuda12.4_shade_os";
/// Error code of a launch refused for capacity.
const CAPACITY_CODE: &str = "instance-operations/launch/insufficient-capacity";

/// How to reach Lambda.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub api_key: Secret,
    /// Base URL, up to and including `/api/v1`.
    pub url: String,
    /// Least time between two launch requests.
    pub launch_interval: Duration,
}

/// The Lambda Cloud adapter.
pub struct Lambda {
    cfg: LambdaConfig,
    known: KnownMachines,
    http: Http,
    offers: OffersCache,
    pacer: LaunchPacer,
    /// SSH key names known to exist at Lambda.
    keys: StdMutex<HashSet<String>>,
    /// Serializes key registration, so two launches with the same new key
    /// do not both try to add it.
    key_setup: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Deserialize)]
struct TypeEntry {
    instance_type: LType,
    #[serde(default)]
    regions_with_capacity_available: Vec<LRegion>,
}

#[derive(Deserialize)]
struct LType {
    #[serde(default)]
    description: String,
    #[serde(default)]
    gpu_description: String,
    price_cents_per_hour: i64,
    specs: Specs,
}

#[derive(Deserialize)]
struct Specs {
    vcpus: i64,
    memory_gib: i64,
    storage_gib: i64,
    #[serde(default)]
    gpus: Option<i64>,
}

#[derive(Deserialize, Clone)]
struct LRegion {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize, Clone)]
pub(crate) struct LInstance {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    status: String,
}

#[derive(Deserialize)]
struct Launch {
    instance_ids: Vec<String>,
}

#[derive(Deserialize)]
struct LKey {
    name: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    suggestion: Option<String>,
}

impl Lambda {
    /// An adapter; it calls nothing until asked.
    pub fn new(cfg: LambdaConfig, deployment_id: &str) -> Self {
        let pacer = LaunchPacer::new(cfg.launch_interval);
        Self {
            cfg,
            known: KnownMachines::new(deployment_id),
            http: Http::new(CLOUD),
            offers: OffersCache::new(Duration::from_secs(20)),
            pacer,
            keys: StdMutex::new(HashSet::new()),
            key_setup: tokio::sync::Mutex::new(()),
        }
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, &self.cfg.url, path)
            .bearer_auth(self.cfg.api_key.expose())
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ProviderError> {
        let what = format!("GET {path}");
        let d: Data<T> = self
            .http
            .json(
                &what,
                || self.req(Method::GET, path),
                |f| classify(&what, f),
            )
            .await?;
        Ok(d.data)
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, ProviderError> {
        let what = format!("POST {path}");
        let d: Data<T> = self
            .http
            .json(
                &what,
                || self.req(Method::POST, path).json(&body),
                |f| classify(&what, f),
            )
            .await?;
        Ok(d.data)
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>, ProviderError> {
        let types: BTreeMap<String, TypeEntry> = self.get("/instance-types").await?;
        // Lambda lists only the regions that have capacity now; every
        // region seen for any type is listed for all, unavailable where
        // absent, so a sold-out type still shows where it is sold.
        let mut regions: BTreeMap<String, String> = BTreeMap::new();
        for t in types.values() {
            for r in &t.regions_with_capacity_available {
                regions.insert(r.name.clone(), display(r));
            }
        }
        let mut out = Vec::new();
        for (name, t) in &types {
            let it = &t.instance_type;
            let desc = if it.gpu_description.is_empty() {
                &it.description
            } else {
                &it.gpu_description
            };
            let Some(gpu) = gpu_model(desc) else {
                super::gpus::unmapped(CLOUD, name);
                continue;
            };
            // Lambda states the size in the description: "(80 GB SXM5)".
            let gpu = gpu.with_vram(super::gpus::stated_vram(desc).unwrap_or(0));
            let n = it
                .specs
                .gpus
                .filter(|g| *g > 0)
                .or_else(|| gpus_from_name(name))
                .unwrap_or(1);
            let available: HashSet<&str> = t
                .regions_with_capacity_available
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            out.push(Offer {
                cloud: CLOUD.to_string(),
                shade_instance_type: shade_type(&gpu, n),
                cloud_instance_type: name.clone(),
                configuration: configuration(
                    &gpu,
                    n,
                    it.specs.vcpus,
                    it.specs.memory_gib,
                    it.specs.storage_gib,
                    &[OS],
                ),
                hourly_price: it.price_cents_per_hour,
                deployment_type: "vm".to_string(),
                boot_time: None,
                regions: regions
                    .iter()
                    .map(|(r, d)| RegionOffer {
                        region: r.clone(),
                        display_name: d.clone(),
                        capacity: Capacity::Available(available.contains(r.as_str())),
                        spot_price: None,
                    })
                    .collect(),
                ssh_user: "ubuntu".to_string(),
                ssh_port: 22,
            });
        }
        // Two types of one Shadeform name (Lambda's A100 PCIe and SXM4)
        // each stay orderable.
        super::gpus::unique_names(&mut out, |o| o.cloud_instance_type.clone());
        Ok(out)
    }

    /// Registers the public key under a name derived from it, once.
    async fn ensure_key(&self, public_key: &str) -> Result<String, ProviderError> {
        let name = key_name(public_key);
        if self.keys.lock().expect("poisoned").contains(&name) {
            return Ok(name);
        }
        let _one = self.key_setup.lock().await;
        let existing: Vec<LKey> = self.get("/ssh-keys").await?;
        if !existing.iter().any(|k| k.name == name) {
            let added: Result<serde_json::Value, _> = self
                .post(
                    "/ssh-keys",
                    json!({"name": name, "public_key": public_key.trim()}),
                )
                .await;
            // Another replica may have added it meanwhile.
            if let Err(e) = added {
                let again: Vec<LKey> = self.get("/ssh-keys").await?;
                if !again.iter().any(|k| k.name == name) {
                    return Err(e);
                }
            }
        }
        self.keys.lock().expect("poisoned").insert(name.clone());
        Ok(name)
    }
}

/// A shared filesystem as Lambda lists it.
#[derive(Deserialize, Clone)]
pub(crate) struct Filesystem {
    id: String,
    name: String,
    region: LRegion,
}

/// Shared filesystems: $0.20 per GB-month (730 hours), elastic, in every
/// Lambda region, mounted by any number of instances there.
const VOLUMES: VolumeKind = VolumeKind {
    cloud: CLOUD,
    supports_multi_mount: true,
    fixed_size: false,
    price_micros_per_gb_hour: 274,
    min_size_gb: 1,
    max_size_gb: 16_384,
    mount_rule: "a Lambda filesystem mounts only on instances in its own region",
};

impl VolumeApi for Lambda {
    type Volume = Filesystem;

    /// Lambda has no get by id: the list answers.
    async fn get_volume(
        &self,
        id: &str,
        region: &str,
    ) -> Result<Option<Filesystem>, ProviderError> {
        Ok(self
            .list_volumes(Some(region))
            .await?
            .into_iter()
            .find(|f| f.id == id))
    }

    async fn list_volumes(&self, region: Option<&str>) -> Result<Vec<Filesystem>, ProviderError> {
        let all: Vec<Filesystem> = self.get("/file-systems").await?;
        Ok(all
            .into_iter()
            .filter(|f| region.is_none_or(|r| f.region.name == r))
            .collect())
    }

    async fn make_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        let f: Filesystem = self
            .post(
                "/filesystems",
                json!({"name": self.known.marker().name(req.volume_id), "region": req.region}),
            )
            .await?;
        Ok(self.state(&f))
    }

    async fn remove_volume(&self, f: &Filesystem) -> Result<VolumeState, ProviderError> {
        let path = format!("/filesystems/{}", f.id);
        let (status, body) = self.http.send(|| self.req(Method::DELETE, &path)).await?;
        if status.is_success() || status.as_u16() == 404 {
            return Ok(VolumeState::Gone);
        }
        // Still mounted by a machine being terminated: retried.
        Err(classify(
            &format!("DELETE {path}"),
            &Failure { status, body },
        ))
    }

    fn marked(&self, f: &Filesystem) -> Option<Uuid> {
        self.known.marker().ours(&f.name)
    }

    fn place(&self, f: &Filesystem) -> (String, String) {
        (f.id.clone(), f.region.name.clone())
    }

    /// Usable as soon as it is listed.
    fn state(&self, f: &Filesystem) -> VolumeState {
        VolumeState::Available {
            cloud_assigned_id: f.id.clone(),
            zone: None,
        }
    }
}

fn display(r: &LRegion) -> String {
    if r.description.is_empty() {
        r.name.clone()
    } else {
        r.description.clone()
    }
}

/// `gpu_8x_h100_sxm5` → 8.
fn gpus_from_name(name: &str) -> Option<i64> {
    name.split('_')
        .find_map(|p| p.strip_suffix('x').and_then(|n| n.parse().ok()))
}

fn classify(what: &str, f: &Failure) -> ProviderError {
    let Ok(ErrorBody { error }) = serde_json::from_str::<ErrorBody>(&f.body) else {
        return generic_failure(CLOUD, what, f, &short(&f.body));
    };
    let mut detail = format!("{}: {}", error.code, error.message);
    if let Some(s) = error.suggestion.filter(|s| !s.is_empty()) {
        detail.push_str(&format!(" ({s})"));
    }
    match error.code.as_str() {
        CAPACITY_CODE => ProviderError::Capacity(format!("{CLOUD}: {}", error.message)),
        "global/invalid-api-key" | "global/account-inactive" => ProviderError::Permanent(format!(
            "{CLOUD} rejected the API key ({detail}); check PARASOL_LAMBDA_API_KEY"
        )),
        _ => generic_failure(CLOUD, what, f, &detail),
    }
}

fn state(i: &LInstance) -> MachineState {
    let ip = i.ip.clone().filter(|s| !s.is_empty());
    match (i.status.as_str(), ip) {
        ("booting", None) => MachineState::Provisioning,
        ("active", Some(ip)) => MachineState::Running {
            ip,
            ssh_port: 22,
            ssh_user: "ubuntu".to_string(),
            placement: None,
        },
        ("terminating", _) => MachineState::Terminating,
        ("terminated", _) => MachineState::Gone,
        ("preempted", _) => MachineState::Preempted,
        _ => MachineState::Booting,
    }
}

impl Machines for Lambda {
    type Machine = LInstance;

    async fn list_machines(&self) -> Result<Vec<LInstance>, ProviderError> {
        self.get("/instances").await
    }

    async fn get_machine(&self, lambda_id: &str) -> Result<Option<LInstance>, ProviderError> {
        let path = format!("/instances/{lambda_id}");
        let (status, body) = self.http.send(|| self.req(Method::GET, &path)).await?;
        let d: Option<Data<LInstance>> =
            parse_found(CLOUD, &format!("GET {path}"), status, body, classify)?;
        Ok(d.map(|d| d.data))
    }

    fn cloud_id(i: &LInstance) -> String {
        i.id.clone()
    }

    fn marker_name(i: &LInstance) -> Option<&str> {
        i.name.as_deref()
    }

    fn torn_down(i: &LInstance) -> bool {
        matches!(i.status.as_str(), "terminating" | "terminated")
    }
}

#[async_trait]
impl Provider for Lambda {
    fn name(&self) -> &'static str {
        "lambda"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        self.offers.get(|| self.fetch_offers()).await
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        self.known
            .launch(self, req.instance_id, |name| async move {
                let Some(public_key) = req.ssh_public_key.as_deref() else {
                    return Err(ProviderError::Permanent(
                        "Lambda needs an SSH key to launch; add one with /sshkeys/add or pass ssh_key_id"
                            .into(),
                    ));
                };
                let key = self.ensure_key(public_key).await?;
                // The slot must come well inside the reconciler's call
                // timeout; a later slot is a transient error that the
                // reconciler retries.
                self.pacer.wait(CLOUD, Duration::from_secs(8)).await?;
                let mut body = json!({
                    "region_name": req.region,
                    "instance_type_name": req.cloud_instance_type,
                    "ssh_key_names": [key],
                    "quantity": 1,
                    "name": name,
                });
                if let Some(script) = super::first_boot_script(req, "ubuntu")? {
                    body["user_data"] = json!(script);
                }
                if !req.volumes.is_empty() {
                    // Lambda mounts filesystems by name, and names them ours.
                    body["file_system_names"] = json!(req
                        .volumes
                        .iter()
                        .map(|v| self.known.marker().name(v.id))
                        .collect::<Vec<_>>());
                }
                match self
                    .post::<Launch>("/instance-operations/launch", body)
                    .await
                {
                    Ok(l) => l.instance_ids.into_iter().next().ok_or_else(|| {
                        ProviderError::Transient(
                            "Lambda accepted the launch but named no instance".into(),
                        )
                    }),
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
            .map_or(MachineState::Gone, |i| state(&i)))
    }

    async fn restart(&self, id: Uuid) -> Result<(), ProviderError> {
        let Some(i) = self.known.find(self, id).await? else {
            return Err(ProviderError::Permanent(
                "Lambda has no machine for this instance".into(),
            ));
        };
        let _: serde_json::Value = self
            .post(
                "/instance-operations/restart",
                json!({"instance_ids": [i.id]}),
            )
            .await?;
        Ok(())
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        let Some(i) = self.known.find(self, id).await? else {
            return Ok(MachineState::Gone);
        };
        match i.status.as_str() {
            "terminated" => return Ok(MachineState::Gone),
            "terminating" => return Ok(MachineState::Terminating),
            _ => {}
        }
        let _: serde_json::Value = self
            .post(
                "/instance-operations/terminate",
                json!({"instance_ids": [i.id]}),
            )
            .await?;
        Ok(MachineState::Terminating)
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
    fn gpu_counts_come_from_type_names_when_specs_lack_them() {
        assert_eq!(gpus_from_name("gpu_8x_h100_sxm5"), Some(8));
        assert_eq!(gpus_from_name("gpu_1x_a10"), Some(1));
        assert_eq!(gpus_from_name("cpu_small"), None);
    }

    #[test]
    fn a_machine_is_running_only_with_an_ip() {
        let i = |status: &str, ip: Option<&str>| LInstance {
            id: "x".into(),
            name: None,
            ip: ip.map(str::to_string),
            status: status.into(),
        };
        assert_eq!(state(&i("booting", None)), MachineState::Provisioning);
        assert_eq!(state(&i("active", None)), MachineState::Booting);
        assert!(matches!(
            state(&i("active", Some("1.2.3.4"))),
            MachineState::Running { .. }
        ));
        assert_eq!(state(&i("terminated", None)), MachineState::Gone);
    }
}
