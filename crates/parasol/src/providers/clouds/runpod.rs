//! `runpod`: RunPod's REST API v1, and its GraphQL API for what REST lacks.
//!
//! Every request carries `Authorization: Bearer <api key>`. REST endpoints
//! (relative to the configured base URL, by default
//! `https://rest.runpod.io/v1`): `GET|POST /pods`, `GET|DELETE
//! /pods/{id}`, `POST /pods/{id}/restart`, `GET|POST /networkvolumes`,
//! `GET|DELETE /networkvolumes/{id}`. The REST
//! API has no price list, so offers come from GraphQL (by default
//! `https://api.runpod.io/graphql`): `gpuTypes` with `memoryInGb` and
//! `lowestPrice` per GPU count (secure cloud), and `dataCenters` (network
//! volume support). Stock comes from the REST API v2 catalog (by default
//! `https://api.runpod.io/v2`): `GET /catalog/gpus` with
//! `include=AVAILABILITY`, `product=POD`, `cloud=SECURE` and the GPU count,
//! which lists per GPU type the data centers offering that configuration
//! with their stock level.
//!
//! Pods are containers on shared hosts: SSH reaches the container through
//! the public port RunPod maps to its port 22 (`portMappings["22"]`), as
//! `root`, with the key passed in the `PUBLIC_KEY` environment variable
//! that RunPod's images install. Interruptible pods are Shadeform's `spot`.
//!
//! Pods are named with the deployment's marker and found as every cloud
//! finds its machines (`find.rs`), in `GET /pods`; a launch first
//! looks for that name, so a retried launch adopts the pod an earlier
//! attempt made.
//!
//! Volumes are network volumes, named with the marker and Parasol's volume
//! id (RunPod's names need not be unique, so a create first looks for the
//! name). A network volume lives in one data center (a Parasol region
//! here) and mounts only on pods there: a pod created with
//! `networkVolumeId` is placed in the volume's data center.
//!
//! Status mapping (`desiredStatus`, `publicIp`, `portMappings` →
//! [`MachineState`]):
//!
//! | desiredStatus | publicIp | port 22 mapped | MachineState                    |
//! |---------------|----------|----------------|---------------------------------|
//! | `RUNNING`     | none     | any            | `Provisioning`                  |
//! | `RUNNING`     | set      | no             | `Booting`                       |
//! | `RUNNING`     | set      | yes            | `Running` (port = the mapping)  |
//! | `EXITED`      | any      | any            | `Preempted` if interruptible, else `Failed` |
//! | `TERMINATED`  | any      | any            | `Gone`                          |
//! | anything else | any      | any            | `Booting`                       |
//!
//! A pod that `GET /pods/{id}` answers 404 for, or that the list no longer
//! holds, is `Gone`. A create refused with RunPod's "no longer any
//! instances available" (whatever the status code) is a capacity error.
//!
//! Where the documentation is silent, and what this adapter assumes:
//! - The status code of a capacity refusal is not documented (500 and 400
//!   are both seen in practice): the message decides.
//! - REST pods carry no phase besides `desiredStatus`; the public IP and
//!   the port mapping appearing are taken as the boot's progress.
//! - vCPUs and memory per type are `lowestPrice.minVcpu` / `minMemory` for
//!   the count (the least a pod gets); disk is not stated (0). VRAM per GPU
//!   is the type's `memoryInGb`: RunPod's names do not always say the size
//!   ("A100 SXM" is the 80 GB part).
//! - A type is offered in the data centers the v2 catalog lists for it with
//!   secure-cloud pod stock at that GPU count, and available in those whose
//!   level is not `NONE`. Parasol launches with `cloudType: SECURE`, so
//!   community-cloud stock (and GraphQL's `gpuAvailability`, which does not
//!   say which cloud it counts) never makes a type available. GPU counts
//!   offered are 1, 2, 4 and 8 up to the type's `maxGpuCount`.
//! - A GPU type no Shadeform model fits is not offered, and is logged and
//!   counted ([`super::gpus::unmapped`]).
//! - Network volumes: `storageSupport` data centers, at the published
//!   $0.07/GB-month, up to 4 TB.
//! - The rate-limit headers are not documented: `Retry-After` when sent,
//!   else backoff.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use parasol_api::RentalType;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::gpus::split_gpu_count;
use super::parse_found;
use super::volumes::{self, VolumeApi};
use super::{
    cents, configuration, generic_failure, gpu_model, parse, shade_type, short, Failure, Http, Num,
    OffersCache, Secret,
};
use super::{KnownMachines, Machines, RestApi};
use crate::providers::{
    Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError, RegionOffer,
    VolumeOffer, VolumeRef, VolumeRequest, VolumeState,
};

/// The cloud name in the API.
pub const CLOUD: &str = "runpod";
/// The public REST API.
pub const DEFAULT_URL: &str = "https://rest.runpod.io/v1";
/// The public GraphQL API.
pub const DEFAULT_GRAPHQL_URL: &str = "https://api.runpod.io/graphql";
/// The public REST API v2, for its catalog's stock levels.
pub const DEFAULT_CATALOG_URL: &str = "https://api.runpod.io/v2";
/// The OS offered, and the image it launches.
const OS: &str = "ubuntu22.04_cuda12.4_shade_os";
const IMAGE: &str = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04";
/// The image's own start command (its Dockerfile's `CMD`), which a
/// `dockerStartCmd` replaces and so must run in the end.
const IMAGE_START: &str = "/start.sh";
/// GPU counts offered per GPU type, up to the type's maximum.
const COUNTS: [i64; 4] = [1, 2, 4, 8];
/// RunPod's network volume price: $0.07 per GB-month (730 hours).
const VOLUME_MICROS_PER_GB_HOUR: i64 = 96;
/// RunPod's message for a create with no machine left to take it.
const CAPACITY_TEXT: &str = "no longer any instances available";

/// How to reach RunPod.
#[derive(Debug, Clone)]
pub struct RunpodConfig {
    pub api_key: Secret,
    /// REST base URL, up to and including `/v1`.
    pub url: String,
    /// The GraphQL endpoint.
    pub graphql_url: String,
    /// REST API v2 base URL, up to and including `/v2` (the catalog).
    pub catalog_url: String,
}

/// The RunPod adapter.
pub struct Runpod {
    cfg: RunpodConfig,
    known: KnownMachines,
    http: Http,
    offers: OffersCache,
}

#[derive(Deserialize)]
struct Gql<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Vec<GqlError>,
}

#[derive(Deserialize)]
struct GqlError {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GpuTypes {
    gpu_types: Vec<GpuType>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GpuType {
    id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    memory_in_gb: Option<i64>,
    #[serde(default)]
    max_gpu_count: Option<i64>,
    #[serde(default)]
    lowest_price: Option<LowestPrice>,
}

/// `GET /v2/catalog/gpus` with `include=AVAILABILITY`.
#[derive(Deserialize)]
struct CatalogGpus {
    gpus: Vec<CatalogGpu>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CatalogGpu {
    id: String,
    /// Absent when the configuration is unavailable everywhere.
    #[serde(default)]
    data_centers: Vec<CatalogDataCenter>,
}

#[derive(Deserialize)]
struct CatalogDataCenter {
    id: String,
    #[serde(default)]
    name: String,
    /// `NONE`, `LOW`, `MEDIUM` or `HIGH`.
    availability: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LowestPrice {
    #[serde(default)]
    uninterruptable_price: Option<Num>,
    #[serde(default)]
    minimum_bid_price: Option<Num>,
    #[serde(default)]
    min_vcpu: Option<i64>,
    #[serde(default)]
    min_memory: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataCenters {
    data_centers: Vec<DataCenter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataCenter {
    id: String,
    #[serde(default)]
    storage_support: bool,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pod {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    desired_status: String,
    #[serde(default)]
    public_ip: Option<String>,
    #[serde(default)]
    port_mappings: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    interruptible: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    Text {
        error: String,
    },
    List(Vec<ErrorBody>),
    Message {
        message: String,
    },
    /// The v2 API's problem details.
    Problem {
        title: String,
        detail: String,
    },
}

impl ErrorBody {
    fn text(&self) -> String {
        match self {
            ErrorBody::Text { error } => error.clone(),
            ErrorBody::Problem { title, detail } => format!("{title}: {detail}"),
            ErrorBody::Message { message } => message.clone(),
            ErrorBody::List(l) => l.iter().map(|e| e.text()).collect::<Vec<_>>().join("; "),
        }
    }
}

impl Runpod {
    /// An adapter; it calls nothing until asked.
    pub fn new(cfg: RunpodConfig, deployment_id: &str) -> Self {
        Self {
            cfg,
            known: KnownMachines::new(deployment_id),
            http: Http::new(CLOUD),
            offers: OffersCache::new(Duration::from_secs(20)),
        }
    }

    async fn graphql<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        query: &str,
    ) -> Result<T, ProviderError> {
        let body = json!({ "query": query });
        let (status, text) = self
            .http
            .send(|| {
                self.http
                    .client
                    .post(&self.cfg.graphql_url)
                    .bearer_auth(self.cfg.api_key.expose())
                    .json(&body)
            })
            .await?;
        let what = format!("GraphQL {what}");
        if !status.is_success() {
            return Err(classify(&what, &Failure { status, body: text }));
        }
        let g: Gql<T> = parse(CLOUD, &what, &text)?;
        match g.data {
            Some(d) if g.errors.is_empty() => Ok(d),
            _ => {
                let msg: Vec<_> = g.errors.iter().map(|e| e.message.as_str()).collect();
                let msg = msg.join("; ");
                // GraphQL reports a bad key as an error with status 200.
                if msg.to_ascii_lowercase().contains("unauthorized") {
                    Err(ProviderError::Permanent(format!(
                        "{CLOUD} rejected the API key ({msg}); check PARASOL_RUNPOD_API_KEY"
                    )))
                } else {
                    Err(ProviderError::Transient(format!(
                        "{CLOUD} failed {what}: {msg}"
                    )))
                }
            }
        }
    }

    /// Secure-cloud pod stock of every GPU type at `count` GPUs: the data
    /// centers offering each type so, with their stock level.
    async fn secure_stock(
        &self,
        count: i64,
    ) -> Result<HashMap<String, Vec<CatalogDataCenter>>, ProviderError> {
        let what = "GET /v2/catalog/gpus";
        let count = count.to_string();
        let c: CatalogGpus = self
            .http
            .json(
                what,
                || {
                    self.http
                        .request(Method::GET, &self.cfg.catalog_url, "/catalog/gpus")
                        .query(&[
                            ("include", "AVAILABILITY"),
                            ("product", "POD"),
                            ("cloud", "SECURE"),
                            ("count", count.as_str()),
                        ])
                        .bearer_auth(self.cfg.api_key.expose())
                },
                |f| classify(what, f),
            )
            .await?;
        Ok(c.gpus.into_iter().map(|g| (g.id, g.data_centers)).collect())
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>, ProviderError> {
        let mut out = Vec::new();
        for n in COUNTS {
            let stock = self.secure_stock(n).await?;
            let q = format!(
                "query {{ gpuTypes {{ id displayName memoryInGb maxGpuCount lowestPrice(input: {{gpuCount: {n}, secureCloud: true}}) {{ uninterruptablePrice minimumBidPrice minVcpu minMemory stockStatus }} }} }}"
            );
            let types: GpuTypes = self.graphql("gpuTypes", &q).await?;
            for t in types.gpu_types {
                if t.max_gpu_count.is_some_and(|m| m < n) {
                    continue;
                }
                // The id ("NVIDIA A100-SXM4-80GB") is the more specific
                // name; the display name ("A100 SXM") fills in the rest.
                let Some(gpu) = gpu_model(&format!("{} {}", t.id, t.display_name)) else {
                    super::gpus::unmapped(CLOUD, &t.id);
                    continue;
                };
                let gpu = gpu.with_vram(t.memory_in_gb.unwrap_or(0));
                let Some(lp) = t.lowest_price else { continue };
                let Some(price) = lp.uninterruptable_price.map(Num::get).filter(|p| *p > 0.0)
                else {
                    continue;
                };
                let spot = lp
                    .minimum_bid_price
                    .map(Num::get)
                    .filter(|p| *p > 0.0)
                    .map(|p| cents(p * n as f64));
                let regions: Vec<RegionOffer> = stock
                    .get(&t.id)
                    .into_iter()
                    .flatten()
                    .map(|dc| RegionOffer {
                        region: dc.id.clone(),
                        display_name: if dc.name.is_empty() {
                            dc.id.clone()
                        } else {
                            dc.name.clone()
                        },
                        capacity: Capacity::Available(dc.availability != "NONE"),
                        spot_price: spot,
                    })
                    .collect();
                if regions.is_empty() {
                    continue;
                }
                out.push(Offer {
                    cloud: CLOUD.to_string(),
                    shade_instance_type: shade_type(&gpu, n),
                    // RunPod launches by GPU type id and count.
                    cloud_instance_type: format!("{}:{n}", t.id),
                    configuration: configuration(
                        &gpu,
                        n,
                        lp.min_vcpu.unwrap_or(0),
                        lp.min_memory.unwrap_or(0),
                        0,
                        &[OS],
                    ),
                    hourly_price: cents(price * n as f64),
                    deployment_type: "container".to_string(),
                    boot_time: None,
                    regions,
                    ssh_user: "root".to_string(),
                    ssh_port: 22,
                });
            }
        }
        // RunPod sells variants of one model ("H100 PCIe", "H100 NVL"):
        // each under its own name, after its GPU type id.
        super::gpus::unique_names(&mut out, |o| {
            o.cloud_instance_type
                .rsplit_once(':')
                .map_or(o.cloud_instance_type.as_str(), |(id, _)| id)
                .to_string()
        });
        Ok(out)
    }
}

/// A network volume as the REST API shows it.
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NetworkVolume {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    data_center_id: String,
}

impl VolumeApi for Runpod {
    type Volume = NetworkVolume;

    async fn get_volume(
        &self,
        id: &str,
        _region: &str,
    ) -> Result<Option<NetworkVolume>, ProviderError> {
        volumes::get_found(self, &format!("/networkvolumes/{id}")).await
    }

    /// RunPod lists every data center's volumes at once.
    async fn list_volumes(
        &self,
        region: Option<&str>,
    ) -> Result<Vec<NetworkVolume>, ProviderError> {
        let all: Vec<NetworkVolume> = self.json(Method::GET, "/networkvolumes", None).await?;
        Ok(all
            .into_iter()
            .filter(|v| region.is_none_or(|r| v.data_center_id == r))
            .collect())
    }

    async fn make_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        let body = json!({
            "name": self.known.marker().name(req.volume_id),
            "size": req.size_in_gb,
            "dataCenterId": req.region,
        });
        let v: NetworkVolume = self
            .json(Method::POST, "/networkvolumes", Some(&body))
            .await?;
        Ok(self.state(&v))
    }

    async fn remove_volume(&self, v: &NetworkVolume) -> Result<VolumeState, ProviderError> {
        volumes::delete_found(self, &format!("/networkvolumes/{}", v.id)).await
    }

    fn marked(&self, v: &NetworkVolume) -> Option<Uuid> {
        self.known.marker().ours(&v.name)
    }

    fn place(&self, v: &NetworkVolume) -> (String, String) {
        (v.id.clone(), v.data_center_id.clone())
    }

    /// Usable once listed; its data center is where its pods go.
    fn state(&self, v: &NetworkVolume) -> VolumeState {
        VolumeState::Available {
            cloud_assigned_id: v.id.clone(),
            zone: Some(v.data_center_id.clone()).filter(|d| !d.is_empty()),
        }
    }
}

/// Mounts the instance's network volume on the pod, placing the pod in the
/// volume's data center (RunPod mounts it nowhere else).
fn mount_volume(body: &mut Value, req: &LaunchRequest) {
    if let Some(v) = req.volumes.first() {
        body["networkVolumeId"] = json!(v.cloud_assigned_id);
        body["dataCenterIds"] = json!([v.zone.as_deref().unwrap_or(&req.region)]);
    }
}

fn classify(what: &str, f: &Failure) -> ProviderError {
    let detail = serde_json::from_str::<ErrorBody>(&f.body)
        .map(|e| e.text())
        .unwrap_or_else(|_| short(&f.body));
    if !matches!(f.status.as_u16(), 401 | 403 | 429)
        && detail.to_ascii_lowercase().contains(CAPACITY_TEXT)
    {
        return ProviderError::Capacity(format!("{CLOUD}: {detail}"));
    }
    generic_failure(CLOUD, what, f, &detail)
}

fn state(p: &Pod) -> MachineState {
    let ip = p.public_ip.clone().filter(|s| !s.is_empty());
    let ssh = p.port_mappings.as_ref().and_then(|m| m.get("22").copied());
    match (p.desired_status.as_str(), ip, ssh) {
        ("RUNNING", None, _) => MachineState::Provisioning,
        ("RUNNING", Some(ip), Some(port)) => MachineState::Running {
            ip,
            ssh_port: port,
            ssh_user: "root".to_string(),
            placement: None,
        },
        ("EXITED", _, _) if p.interruptible => MachineState::Preempted,
        ("EXITED", _, _) => MachineState::Failed {
            reason: format!("{CLOUD} reported the pod's container exited"),
        },
        ("TERMINATED", _, _) => MachineState::Gone,
        _ => MachineState::Booting,
    }
}

impl Machines for Runpod {
    type Machine = Pod;

    async fn list_machines(&self) -> Result<Vec<Pod>, ProviderError> {
        self.json(Method::GET, "/pods", None).await
    }

    async fn get_machine(&self, pod_id: &str) -> Result<Option<Pod>, ProviderError> {
        let path = format!("/pods/{pod_id}");
        let (status, text) = self.call(Method::GET, &path, None).await?;
        parse_found(CLOUD, &format!("GET {path}"), status, text, classify)
    }

    fn cloud_id(p: &Pod) -> String {
        p.id.clone()
    }

    fn marker_name(p: &Pod) -> Option<&str> {
        Some(&p.name)
    }

    fn torn_down(p: &Pod) -> bool {
        p.desired_status == "TERMINATED"
    }
}

impl RestApi for Runpod {
    fn http(&self) -> &Http {
        &self.http
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, &self.cfg.url, path)
            .bearer_auth(self.cfg.api_key.expose())
    }

    fn classify(&self, what: &str, f: &Failure) -> ProviderError {
        classify(what, f)
    }
}

#[async_trait]
impl Provider for Runpod {
    fn name(&self) -> &'static str {
        "runpod"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        self.offers.get(|| self.fetch_offers()).await
    }

    async fn volume_offers(&self) -> Result<Vec<VolumeOffer>, ProviderError> {
        let dcs: DataCenters = self
            .graphql(
                "dataCenters",
                "query { dataCenters { id name location storageSupport gpuAvailability { gpuTypeId available stockStatus } } }",
            )
            .await?;
        Ok(dcs
            .data_centers
            .iter()
            .filter(|dc| dc.storage_support)
            .map(|dc| VolumeOffer {
                cloud: CLOUD.to_string(),
                region: dc.id.clone(),
                // A network volume mounts on pods of its data center,
                // one pod at a time when the pod writes to it.
                supports_multi_mount: false,
                fixed_size: false,
                price_micros_per_gb_hour: VOLUME_MICROS_PER_GB_HOUR,
                min_size_gb: 1,
                max_size_gb: 4000,
                mount_rule: "a RunPod network volume mounts only on pods in its own data center"
                    .to_string(),
            })
            .collect())
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        self.known
            .launch(self, req.instance_id, |name| async move {
                let (gpu, count) = split_gpu_count(CLOUD, &req.cloud_instance_type)?;
                let mut env = serde_json::Map::new();
                for e in &req.envs {
                    env.insert(e.name.clone(), Value::String(e.value.clone()));
                }
                if let Some(k) = &req.ssh_public_key {
                    env.insert("PUBLIC_KEY".into(), Value::String(k.trim().to_string()));
                }
                let mut body = json!({
                    "name": name,
                    "imageName": IMAGE,
                    "gpuTypeIds": [gpu],
                    "gpuCount": count,
                    "cloudType": "SECURE",
                    "computeType": "GPU",
                    "dataCenterIds": [req.region],
                    "interruptible": req.rental_type == RentalType::Spot,
                    "supportPublicIp": true,
                    "ports": ["22/tcp"],
                    "containerDiskInGb": 50,
                    "env": env,
                });
                mount_volume(&mut body, req);
                // The image's own command (`/start.sh`, which sets up SSH
                // from PUBLIC_KEY) still runs, after the agent starts.
                if let Some(agent) = super::agent_start_script(req) {
                    body["dockerStartCmd"] =
                        json!(["bash", "-c", format!("{agent}exec {IMAGE_START}\n")]);
                }
                match self.json::<Pod>(Method::POST, "/pods", Some(&body)).await {
                    Ok(p) => Ok(p.id),
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
            .map_or(MachineState::Gone, |p| state(&p)))
    }

    async fn restart(&self, id: Uuid) -> Result<(), ProviderError> {
        let Some(p) = self.known.find(self, id).await? else {
            return Err(ProviderError::Permanent(
                "RunPod has no pod for this instance".into(),
            ));
        };
        let path = format!("/pods/{}/restart", p.id);
        let (status, text) = self.call(Method::POST, &path, None).await?;
        if !status.is_success() {
            return Err(classify(
                &format!("POST {path}"),
                &Failure { status, body: text },
            ));
        }
        Ok(())
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        let Some(p) = self.known.find(self, id).await? else {
            return Ok(MachineState::Gone);
        };
        if p.desired_status == "TERMINATED" {
            return Ok(MachineState::Gone);
        }
        let path = format!("/pods/{}", p.id);
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

    fn pod(status: &str, ip: Option<&str>, ssh: Option<i64>, interruptible: bool) -> Pod {
        Pod {
            id: "p".into(),
            name: String::new(),
            desired_status: status.into(),
            public_ip: ip.map(str::to_string),
            port_mappings: ssh.map(|p| BTreeMap::from([("22".to_string(), p)])),
            interruptible,
        }
    }

    #[test]
    fn a_pod_runs_on_the_port_mapped_to_22_and_an_exited_spot_pod_was_preempted() {
        assert_eq!(
            state(&pod("RUNNING", None, None, false)),
            MachineState::Provisioning
        );
        assert_eq!(
            state(&pod("RUNNING", Some("1.2.3.4"), None, false)),
            MachineState::Booting
        );
        assert_eq!(
            state(&pod("RUNNING", Some("1.2.3.4"), Some(40123), false)),
            MachineState::Running {
                ip: "1.2.3.4".into(),
                ssh_port: 40123,
                ssh_user: "root".into(),
                placement: None,
            }
        );
        assert_eq!(
            state(&pod("EXITED", None, None, true)),
            MachineState::Preempted
        );
        assert!(matches!(
            state(&pod("EXITED", None, None, false)),
            MachineState::Failed { .. }
        ));
        assert_eq!(
            state(&pod("TERMINATED", None, None, false)),
            MachineState::Gone
        );
    }

    #[test]
    fn types_carry_the_gpu_type_id_and_count() {
        assert_eq!(
            split_gpu_count(CLOUD, "NVIDIA A40:2").unwrap(),
            ("NVIDIA A40", 2)
        );
        assert!(split_gpu_count(CLOUD, "NVIDIA A40").is_err());
    }
}
