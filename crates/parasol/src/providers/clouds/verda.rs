//! `datacrunch`: Verda (formerly DataCrunch) public API v1.
//!
//! Authentication is OAuth2 client credentials: `POST /oauth2/token` with
//! the client id and secret gives a bearer token, kept until shortly before
//! it expires and fetched again after a 401. Endpoints used (relative to the
//! configured base URL, by default `https://api.verda.com/v1`):
//! `GET /instance-types`, `GET /instance-availability`, `GET /locations`,
//! `GET /instance-availability/{type}?location_code=..`, `GET|POST
//! /instances`, `GET /instances/{id}`, `PUT /instances` (actions `delete`
//! and `restart`), `GET|POST /sshkeys`, `GET|POST /volumes`,
//! `GET|DELETE /volumes/{id}`, `GET|POST|DELETE /scripts`.
//!
//! The first-boot script (the Parasol agent, then the launch
//! configuration, as root) is a startup script stored under the machine's
//! marker name before the deploy names it (`startup_script_id`), and
//! deleted when the machine is.
//!
//! Volumes are `NVMe` block volumes in one location (a Parasol region),
//! named with the marker and Parasol's volume id, attached at create
//! (`existing_volumes`) to a machine of that location. Deleting the machine
//! without naming the volume in `volume_ids` detaches it and keeps it; a
//! volume is deleted permanently (`is_permanent`), not moved to Verda's
//! trash, where it would go on billing.
//!
//! Machines get the hostname `parasol-<deployment id>-<instance id>` (and
//! the same description) and are found by it as every cloud finds its
//! machines (`find.rs`), in `GET /instances`; a launch first looks
//! for it, so a retried launch adopts the machine an earlier attempt made.
//!
//! Status mapping (Verda `status` → [`MachineState`]):
//!
//! | Verda                                          | ip   | MachineState   |
//! |------------------------------------------------|------|----------------|
//! | `new`, `ordered`, `validating`, `provisioning` | any  | `Provisioning` |
//! | `running`                                      | none | `Booting`      |
//! | `running`                                      | set  | `Running`      |
//! | `offline`, `unknown`, anything else            | any  | `Booting`      |
//! | `deleting`                                     | any  | `Terminating`  |
//! | `discontinued`, `notfound`                     | any  | `Gone`         |
//! | `error`, `installation_failed`                 | any  | `Failed`       |
//! | `no_capacity`                                  | any  | `Failed`       |
//!
//! A machine that `GET /instances/{id}` answers 404 for, or that the list no
//! longer holds, is `Gone`.
//!
//! VRAM per GPU is the type's `gpu_memory` (all its GPUs together) over
//! its GPU count; a type whose GPU no Shadeform model fits is not offered,
//! and is logged and counted ([`super::gpus::unmapped`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::http::TokenCache;
use super::parse_found;
use super::volumes::{self, VolumeApi, VolumeKind};
use super::{
    cents, configuration, generic_failure, gpu_model, key_name, parse, shade_type, short, Failure,
    Http, KnownMachines, Machines, Num, OffersCache, Secret,
};
use crate::providers::{
    Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError, RegionOffer,
    VolumeOffer, VolumeRef, VolumeRequest, VolumeState,
};

/// The cloud name in the API (Shadeform still calls Verda `datacrunch`).
pub const CLOUD: &str = "datacrunch";
/// The public API.
pub const DEFAULT_URL: &str = "https://api.verda.com/v1";
/// The OS offered, and the Verda image it launches.
const OS: &str = "ubuntu22.04_cuda12.4_shade_os";
const IMAGE: &str = "ubuntu-22.04-cuda-12.4-docker";

/// How to reach Verda.
#[derive(Debug, Clone)]
pub struct VerdaConfig {
    pub client_id: String,
    pub client_secret: Secret,
    /// Base URL, up to and including `/v1`.
    pub url: String,
}

/// The Verda adapter.
pub struct Verda {
    cfg: VerdaConfig,
    known: KnownMachines,
    http: Http,
    token: TokenCache,
    offers: OffersCache,
    /// SSH key ids at Verda, by key name.
    keys: StdMutex<HashMap<String, String>>,
    /// Serializes key registration, so two launches with the same new key
    /// do not both add it.
    key_setup: Mutex<()>,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct VType {
    instance_type: String,
    price_per_hour: Num,
    #[serde(default)]
    description: String,
    #[serde(default)]
    name: Option<String>,
    cpu: Amount,
    gpu: Gpu,
    memory: Size,
    /// VRAM of all the type's GPUs together.
    #[serde(default)]
    gpu_memory: Option<Size>,
    #[serde(default)]
    storage: Option<Size>,
}

#[derive(Deserialize)]
struct Amount {
    number_of_cores: i64,
}

#[derive(Deserialize)]
struct Gpu {
    #[serde(default)]
    description: String,
    number_of_gpus: i64,
}

#[derive(Deserialize)]
struct Size {
    #[serde(default)]
    size_in_gigabytes: i64,
}

#[derive(Deserialize)]
struct Availability {
    location_code: String,
    #[serde(default)]
    availabilities: Vec<String>,
}

#[derive(Deserialize)]
struct Location {
    code: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Clone)]
pub(crate) struct VInstance {
    id: String,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    status: String,
}

#[derive(Deserialize)]
struct VKey {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl Verda {
    /// An adapter; it calls nothing until asked.
    pub fn new(cfg: VerdaConfig, deployment_id: &str) -> Self {
        Self {
            cfg,
            known: KnownMachines::new(deployment_id),
            http: Http::new(CLOUD),
            token: TokenCache::default(),
            offers: OffersCache::new(Duration::from_secs(20)),
            keys: StdMutex::new(HashMap::new()),
            key_setup: Mutex::new(()),
        }
    }

    async fn token(&self) -> Result<Secret, ProviderError> {
        self.token.get(|| self.fetch_token()).await
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration), ProviderError> {
        let body = json!({
            "grant_type": "client_credentials",
            "client_id": self.cfg.client_id,
            "client_secret": self.cfg.client_secret.expose(),
        });
        let t: Token = self
            .http
            .json(
                "POST /oauth2/token",
                || {
                    self.http
                        .request(Method::POST, &self.cfg.url, "/oauth2/token")
                        .json(&body)
                },
                |f| match f.status.as_u16() {
                    400 | 401 | 403 => ProviderError::Permanent(format!(
                        "{CLOUD} refused the client credentials ({}: {}); check PARASOL_VERDA_CLIENT_ID and PARASOL_VERDA_CLIENT_SECRET",
                        f.status.as_u16(),
                        detail(f)
                    )),
                    _ => generic_failure(CLOUD, "POST /oauth2/token", f, &detail(f)),
                },
            )
            .await?;
        // Renew a minute early so a token never expires mid-call.
        let life = Duration::from_secs(t.expires_in.unwrap_or(3600).saturating_sub(60).max(1));
        Ok((Secret::new(t.access_token), life))
    }

    /// Sends an authenticated request; after a 401 the token is fetched
    /// again once, since tokens can be revoked before they expire.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), ProviderError> {
        for fresh in [false, true] {
            let token = self.token().await?;
            let (status, text) = self
                .http
                .send(|| {
                    let r = self
                        .http
                        .request(method.clone(), &self.cfg.url, path)
                        .bearer_auth(token.expose());
                    match body {
                        Some(b) => r.json(b),
                        None => r,
                    }
                })
                .await?;
            if status == StatusCode::UNAUTHORIZED && !fresh {
                self.token.clear().await;
                continue;
            }
            return Ok((status, text));
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ProviderError> {
        let what = format!("{method} {path}");
        let (status, text) = self.call(method, path, body).await?;
        if !status.is_success() {
            return Err(classify(&what, &Failure { status, body: text }));
        }
        parse(CLOUD, &what, &text)
    }

    /// A request whose success answer carries nothing Parasol needs (or a
    /// bare id, returned as text).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<String, ProviderError> {
        let what = format!("{method} {path}");
        let (status, text) = self.call(method, path, Some(body)).await?;
        if !status.is_success() {
            return Err(classify(&what, &Failure { status, body: text }));
        }
        Ok(text)
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>, ProviderError> {
        let types: Vec<VType> = self.json(Method::GET, "/instance-types", None).await?;
        let avail: Vec<Availability> = self
            .json(Method::GET, "/instance-availability", None)
            .await?;
        let locations: Vec<Location> = self.json(Method::GET, "/locations", None).await?;
        let mut regions: BTreeMap<String, String> = locations
            .into_iter()
            .map(|l| {
                let name = if l.name.is_empty() {
                    l.code.clone()
                } else {
                    l.name
                };
                (l.code, name)
            })
            .collect();
        let mut in_stock: HashSet<(String, String)> = HashSet::new();
        for a in avail {
            regions
                .entry(a.location_code.clone())
                .or_insert_with(|| a.location_code.clone());
            for t in a.availabilities {
                in_stock.insert((a.location_code.clone(), t));
            }
        }
        let mut out = Vec::new();
        for t in types {
            let desc = if t.gpu.description.is_empty() {
                t.name.clone().unwrap_or_else(|| t.description.clone())
            } else {
                t.gpu.description.clone()
            };
            let n = t.gpu.number_of_gpus;
            if n < 1 {
                continue;
            }
            let Some(gpu) = gpu_model(&desc) else {
                super::gpus::unmapped(CLOUD, &t.instance_type);
                continue;
            };
            let gpu = gpu.with_vram(t.gpu_memory.as_ref().map_or(0, |m| m.size_in_gigabytes / n));
            out.push(Offer {
                cloud: CLOUD.to_string(),
                shade_instance_type: shade_type(&gpu, n),
                configuration: configuration(
                    &gpu,
                    n,
                    t.cpu.number_of_cores,
                    t.memory.size_in_gigabytes,
                    t.storage.map_or(0, |s| s.size_in_gigabytes),
                    &[OS],
                ),
                hourly_price: cents(t.price_per_hour.get()),
                deployment_type: "vm".to_string(),
                boot_time: None,
                regions: regions
                    .iter()
                    .map(|(code, name)| RegionOffer {
                        region: code.clone(),
                        display_name: name.clone(),
                        capacity: Capacity::Available(
                            in_stock.contains(&(code.clone(), t.instance_type.clone())),
                        ),
                        spot_price: None,
                    })
                    .collect(),
                cloud_instance_type: t.instance_type,
                ssh_user: "root".to_string(),
                ssh_port: 22,
            });
        }
        // Two types of one Shadeform name each stay orderable.
        super::gpus::unique_names(&mut out, |o| o.cloud_instance_type.clone());
        Ok(out)
    }

    async fn ensure_key(&self, public_key: &str) -> Result<String, ProviderError> {
        let name = key_name(public_key);
        if let Some(id) = self.keys.lock().expect("poisoned").get(&name) {
            return Ok(id.clone());
        }
        let _one = self.key_setup.lock().await;
        let existing: Vec<VKey> = self.json(Method::GET, "/sshkeys", None).await?;
        let id = match existing.into_iter().find(|k| k.name == name) {
            Some(k) => k.id,
            None => bare_id(
                &self
                    .send(
                        Method::POST,
                        "/sshkeys",
                        &json!({"name": name, "key": public_key.trim()}),
                    )
                    .await?,
            )?,
        };
        self.keys.lock().expect("poisoned").insert(name, id.clone());
        Ok(id)
    }
}

/// A stored startup script, as `GET /scripts` lists it.
#[derive(Debug, Deserialize)]
struct VScript {
    id: String,
    name: String,
}

impl Verda {
    /// The startup script of `id`'s machine, stored under the machine's
    /// marker name (found by it first, so a retried launch stores it once):
    /// Verda runs only scripts stored beforehand, named by id at deploy.
    async fn ensure_script(&self, id: Uuid, script: &str) -> Result<String, ProviderError> {
        let name = self.known.marker().name(id);
        let existing: Vec<VScript> = self.json(Method::GET, "/scripts", None).await?;
        if let Some(s) = existing.into_iter().find(|s| s.name == name) {
            return Ok(s.id);
        }
        bare_id(
            &self
                .send(
                    Method::POST,
                    "/scripts",
                    &json!({"name": name, "script": script}),
                )
                .await?,
        )
    }

    /// Deletes the startup script of `id`'s machine, which holds the
    /// instance's agent token, once the machine is going.
    async fn delete_script(&self, id: Uuid) -> Result<(), ProviderError> {
        let name = self.known.marker().name(id);
        let existing: Vec<VScript> = self.json(Method::GET, "/scripts", None).await?;
        let ids: Vec<String> = existing
            .into_iter()
            .filter(|s| s.name == name)
            .map(|s| s.id)
            .collect();
        if !ids.is_empty() {
            self.send(Method::DELETE, "/scripts", &json!({"scripts": ids}))
                .await?;
        }
        Ok(())
    }
}

/// Verda answers a create with the new id as plain text; accept a JSON
/// string or an object with `id` too.
fn bare_id(text: &str) -> Result<String, ProviderError> {
    let t = text.trim();
    let id = match serde_json::from_str::<Value>(t) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(o)) => o
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => t.to_string(),
    };
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(ProviderError::Transient(format!(
            "{CLOUD} answered a create without an id: {}",
            short(text)
        )));
    }
    Ok(id)
}

/// A volume as Verda lists it.
#[derive(Deserialize, Clone)]
pub(crate) struct VVolume {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    location: String,
}

/// The volume type Parasol makes.
const VOLUME_TYPE: &str = "NVMe";
/// `NVMe` volumes: $0.10 per GB-month (730 hours), in every location with
/// an instance type.
const VOLUMES: VolumeKind = VolumeKind {
    cloud: CLOUD,
    supports_multi_mount: false,
    fixed_size: true,
    price_micros_per_gb_hour: 137,
    min_size_gb: 1,
    max_size_gb: 16_384,
    mount_rule: "a Verda volume mounts only on machines in its own location",
};

impl VolumeApi for Verda {
    type Volume = VVolume;

    async fn get_volume(&self, id: &str, _region: &str) -> Result<Option<VVolume>, ProviderError> {
        let path = format!("/volumes/{id}");
        let (status, text) = self.call(Method::GET, &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let what = format!("GET {path}");
        if !status.is_success() {
            return Err(classify(&what, &Failure { status, body: text }));
        }
        let v: VVolume = parse(CLOUD, &what, &text)?;
        Ok((v.status != "deleted").then_some(v))
    }

    /// Not the trash (`deleted`): a volume there is gone for Parasol.
    async fn list_volumes(&self, region: Option<&str>) -> Result<Vec<VVolume>, ProviderError> {
        let all: Vec<VVolume> = self.json(Method::GET, "/volumes", None).await?;
        Ok(all
            .into_iter()
            .filter(|v| v.status != "deleted" && region.is_none_or(|r| v.location == r))
            .collect())
    }

    async fn make_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        let body = json!({
            "type": VOLUME_TYPE,
            "name": self.known.marker().name(req.volume_id),
            "size": req.size_in_gb,
            "location_code": req.region,
        });
        let id = bare_id(&self.send(Method::POST, "/volumes", &body).await?)?;
        // The create answers only the id; the next step reads its state.
        Ok(VolumeState::Creating {
            cloud_assigned_id: id,
        })
    }

    /// Permanently: a volume in Verda's trash goes on billing.
    async fn remove_volume(&self, v: &VVolume) -> Result<VolumeState, ProviderError> {
        let path = format!("/volumes/{}", v.id);
        let (status, text) = self
            .call(Method::DELETE, &path, Some(&json!({"is_permanent": true})))
            .await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(VolumeState::Deleting);
        }
        Err(classify(
            &format!("DELETE {path}"),
            &Failure { status, body: text },
        ))
    }

    fn marked(&self, v: &VVolume) -> Option<Uuid> {
        self.known.marker().ours(&v.name)
    }

    fn place(&self, v: &VVolume) -> (String, String) {
        (v.id.clone(), v.location.clone())
    }

    fn state(&self, v: &VVolume) -> VolumeState {
        match v.status.as_str() {
            "attached" | "detached" => VolumeState::Available {
                cloud_assigned_id: v.id.clone(),
                zone: None,
            },
            "deleting" => VolumeState::Deleting,
            "deleted" => VolumeState::Gone,
            _ => VolumeState::Creating {
                cloud_assigned_id: v.id.clone(),
            },
        }
    }
}

fn gone(status: &str) -> bool {
    matches!(status, "discontinued" | "notfound")
}

fn detail(f: &Failure) -> String {
    match serde_json::from_str::<ErrorBody>(&f.body) {
        Ok(e) if !e.code.is_empty() || !e.message.is_empty() => {
            format!("{}: {}", e.code, e.message)
        }
        _ => short(&f.body),
    }
}

fn classify(what: &str, f: &Failure) -> ProviderError {
    let d = detail(f);
    let lower = d.to_ascii_lowercase();
    if f.status.is_client_error()
        && f.status.as_u16() != 429
        && (lower.contains("capacity")
            || lower.contains("not enough resources")
            || lower.contains("out of stock"))
    {
        return ProviderError::Capacity(format!("{CLOUD}: {d}"));
    }
    generic_failure(CLOUD, what, f, &d)
}

fn state(i: &VInstance) -> MachineState {
    let ip = i.ip.clone().filter(|s| !s.is_empty());
    match (i.status.as_str(), ip) {
        ("new" | "ordered" | "validating" | "provisioning", _) => MachineState::Provisioning,
        ("running", Some(ip)) => MachineState::Running {
            ip,
            ssh_port: 22,
            ssh_user: "root".to_string(),
            placement: None,
        },
        ("deleting", _) => MachineState::Terminating,
        ("discontinued" | "notfound", _) => MachineState::Gone,
        ("error" | "installation_failed", _) => MachineState::Failed {
            reason: format!("{CLOUD} reported the machine as {}", i.status),
        },
        ("no_capacity", _) => MachineState::Failed {
            reason: format!("insufficient capacity: {CLOUD} had no capacity for the machine"),
        },
        _ => MachineState::Booting,
    }
}

impl Machines for Verda {
    type Machine = VInstance;

    async fn list_machines(&self) -> Result<Vec<VInstance>, ProviderError> {
        self.json(Method::GET, "/instances", None).await
    }

    async fn get_machine(&self, verda_id: &str) -> Result<Option<VInstance>, ProviderError> {
        let path = format!("/instances/{verda_id}");
        let (status, text) = self.call(Method::GET, &path, None).await?;
        parse_found(CLOUD, &format!("GET {path}"), status, text, classify)
    }

    fn cloud_id(i: &VInstance) -> String {
        i.id.clone()
    }

    fn marker_name(i: &VInstance) -> Option<&str> {
        i.hostname.as_deref()
    }

    fn torn_down(i: &VInstance) -> bool {
        gone(&i.status) || i.status == "deleting"
    }
}

#[async_trait]
impl Provider for Verda {
    fn name(&self) -> &'static str {
        "verda"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        self.offers.get(|| self.fetch_offers()).await
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        self.known
            .launch(self, req.instance_id, |name| async move {
                let path = format!(
                    "/instance-availability/{}?location_code={}",
                    req.cloud_instance_type, req.region
                );
                let available: bool = self.json(Method::GET, &path, None).await?;
                if !available {
                    self.offers.clear().await;
                    return Err(ProviderError::Capacity(format!(
                        "{CLOUD} has no {} available in {}",
                        req.cloud_instance_type, req.region
                    )));
                }
                let keys = match req.ssh_public_key.as_deref() {
                    Some(k) => vec![self.ensure_key(k).await?],
                    None => vec![],
                };
                let mut body = json!({
                    "instance_type": req.cloud_instance_type,
                    "image": IMAGE,
                    "ssh_key_ids": keys,
                    "location_code": req.region,
                    "hostname": name,
                    "description": name,
                    "is_spot": false,
                });
                // Machines log in as root: the launch configuration runs
                // as root, after the agent.
                if let Some(script) = super::first_boot_script(req, "root")? {
                    body["startup_script_id"] =
                        json!(self.ensure_script(req.instance_id, &script).await?);
                }
                if !req.volumes.is_empty() {
                    body["existing_volumes"] = json!(req
                        .volumes
                        .iter()
                        .map(|v| &v.cloud_assigned_id)
                        .collect::<Vec<_>>());
                }
                match self.send(Method::POST, "/instances", &body).await {
                    Ok(text) => bare_id(&text),
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
                "Verda has no machine for this instance".into(),
            ));
        };
        self.send(
            Method::PUT,
            "/instances",
            &json!({"action": "restart", "id": i.id}),
        )
        .await?;
        Ok(())
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        // First, so a terminate repeated after a failure still removes it.
        self.delete_script(id).await?;
        let Some(i) = self.known.find(self, id).await? else {
            return Ok(MachineState::Gone);
        };
        if gone(&i.status) {
            return Ok(MachineState::Gone);
        }
        if i.status == "deleting" {
            return Ok(MachineState::Terminating);
        }
        self.send(
            Method::PUT,
            "/instances",
            &json!({"action": "delete", "id": i.id}),
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
    fn created_ids_are_read_from_text_json_strings_and_objects() {
        assert_eq!(bare_id("abc-123\n").unwrap(), "abc-123");
        assert_eq!(bare_id("\"abc-123\"").unwrap(), "abc-123");
        assert_eq!(bare_id("{\"id\":\"abc-123\"}").unwrap(), "abc-123");
        assert!(bare_id("").is_err());
    }
}
