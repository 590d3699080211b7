//! `vastai`: Vast.ai's REST API v0, a marketplace of individual hosts'
//! offers.
//!
//! Every request carries `Authorization: Bearer <api key>`. Endpoints used
//! (relative to the configured base URL, by default
//! `https://console.vast.ai/api/v0`), as Vast's OpenAPI document gives
//! them: `POST /bundles/` (offer search, the query as the JSON body),
//! `PUT /asks/{offer id}/` (accept an offer: creates an instance),
//! `DELETE /instances/{id}/`, `PUT /instances/reboot/{id}/`, `GET|POST
//! /ssh/` (account keys, which Vast installs on new instances); and from
//! API v1 beside it, `GET /api/v1/instances/` (the instance list, 25 a
//! page, followed by `next_token`).
//!
//! Offers are grouped onto Shadeform types by GPU model and count; a type's
//! price is that of the cheapest verified, rentable offer, per region. VRAM
//! per GPU is the offer's own `gpu_ram` (MB), which also tells an 80 GB
//! A100 from a 40 GB one where `gpu_name` ("A100 SXM4") does not. A GPU no
//! Shadeform model fits is not offered, and is logged and counted
//! ([`super::gpus::unmapped`]).
//! Regions group Vast's `geolocation` (`"City, CC"` or `"CC"`) by its
//! country code: `north-america` (US, CA, MX), `south-america`, `europe`
//! (EU and EEA states, GB, CH, UA, RS, ...), `asia-pacific` (JP, KR, CN,
//! HK, TW, SG, IN, AU, NZ, ...), and `other` for the rest or no location.
//! The spot price is the cheapest offer's `min_bid`.
//!
//! A launch searches again for matching offers in the region, cheapest
//! first, and accepts one with the deployment's marker as `label`; an
//! offer taken meanwhile (`no_such_ask`) moves on to the next, up to
//! [`ACCEPT_ATTEMPTS`], before reporting no capacity. Interruptible
//! (`spot`) launches bid the offer's `min_bid`. Instances are found by
//! their label as every cloud finds its machines (`find.rs`), in
//! `GET /instances/`, which serves both the listing and the look-up by id;
//! a launch first looks for its label, so a retried launch adopts the
//! earlier instance.
//!
//! Status mapping (`actual_status` → [`MachineState`]):
//!
//! | actual_status          | ip and port 22 | MachineState                 |
//! |------------------------|----------------|------------------------------|
//! | none, `created`        | any            | `Provisioning`               |
//! | `loading`              | any            | `Booting`                    |
//! | `running`              | no             | `Booting`                    |
//! | `running`              | yes            | `Running` (port = the mapping of 22) |
//! | `exited`, `stopped`    | any            | `Preempted` for a bid, else `Failed` |
//! | anything else          | any            | `Booting`                    |
//!
//! Vast deletes a destroyed instance at once; one absent from the list is
//! `Gone`.
//!
//! Volumes: none. Vast.ai's volumes (`PUT /volumes`, rented from a volume
//! offer of `POST /volumes/search`) are disks of one host machine, which
//! mount only on an instance of that same machine, and the rent takes no
//! name or label: Parasol's launches pick offers by GPU, not by machine,
//! and could neither find such a volume again after a lost answer nor
//! sweep it by a marker. So this adapter sells no volumes.
//!
//! Where the documentation is silent, and what this adapter assumes:
//! - A Shadeform type has one price, so a type's `hourly_price` is the
//!   cheapest region's; a launch in a dearer region accepts that region's
//!   cheapest matching offer (its spot price is per region).
//! - `geolocation` ends in a two-letter country code; regions are the
//!   grouping above (Vast has no regions of its own).
//! - `no_such_ask` is the only error taken as "offer gone"; after
//!   [`ACCEPT_ATTEMPTS`] of them the launch is a capacity error.
//! - A bid (spot) instance outbid goes `exited`/`stopped`: `Preempted`.
//! - `runtype` is the CLI's for `--ssh --direct`; the key reaches new
//!   instances from the account's keys.
//! - A 429 comes without `Retry-After`: exponential backoff.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use async_trait::async_trait;
use parasol_api::RentalType;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::gpus::split_gpu_count;
use super::{
    cents, configuration, generic_failure, gpu_model, shade_type, short, Failure, Http, Num,
    OffersCache, Secret,
};
use super::{KnownMachines, Machines, RestApi};
use crate::providers::{
    Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError, RegionOffer,
};

/// The cloud name in the API.
pub const CLOUD: &str = "vastai";
/// The public API.
pub const DEFAULT_URL: &str = "https://console.vast.ai/api/v0";
/// Offers tried per launch when each is taken before it is accepted.
pub const ACCEPT_ATTEMPTS: usize = 3;
const OS: &str = "ubuntu22.04_cuda12.4_shade_os";
const IMAGE: &str = "vastai/base-image:cuda-12.4.1-auto";
/// Disk asked for with every instance, in GB.
const DISK_GB: i64 = 64;

/// How to reach Vast.ai.
#[derive(Debug, Clone)]
pub struct VastaiConfig {
    pub api_key: Secret,
    /// Base URL, up to and including `/api/v0`.
    pub url: String,
}

/// The Vast.ai adapter.
pub struct Vastai {
    cfg: VastaiConfig,
    known: KnownMachines,
    http: Http,
    offers: OffersCache,
    /// Public keys known to be on the account.
    keys: StdMutex<HashSet<String>>,
    key_setup: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct Offers {
    offers: Vec<VOffer>,
}

#[derive(Deserialize, Clone)]
struct VOffer {
    id: i64,
    gpu_name: String,
    num_gpus: i64,
    #[serde(default)]
    cpu_cores_effective: Option<Num>,
    /// MB.
    #[serde(default)]
    cpu_ram: Option<Num>,
    /// MB per GPU.
    #[serde(default)]
    gpu_ram: Option<Num>,
    /// MB, all GPUs together.
    #[serde(default)]
    gpu_total_ram: Option<Num>,
    /// GB.
    #[serde(default)]
    disk_space: Option<Num>,
    dph_total: Num,
    #[serde(default)]
    min_bid: Option<Num>,
    #[serde(default)]
    geolocation: Option<String>,
    #[serde(default)]
    verified: Option<bool>,
}

/// A page of `GET /api/v1/instances/`.
#[derive(Deserialize)]
struct Instances {
    instances: Vec<VInstance>,
    /// The `after_token` of the next page; none after the last.
    #[serde(default)]
    next_token: Option<String>,
}

/// The most instances API v1 lists a page (its `limit`'s maximum).
const PAGE: &str = "25";
/// The instance list, in API v1: a path from the host's root, beside the
/// configured v0 base.
const V1_INSTANCES: &str = "/api/v1/instances/";

#[derive(Deserialize, Clone)]
pub(crate) struct VInstance {
    id: i64,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    actual_status: Option<String>,
    #[serde(default)]
    public_ipaddr: Option<String>,
    #[serde(default)]
    ports: Option<BTreeMap<String, Vec<PortBinding>>>,
    #[serde(default)]
    is_bid: bool,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct PortBinding {
    host_port: String,
}

#[derive(Deserialize)]
struct Accepted {
    new_contract: i64,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    msg: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Keys {
    Wrapped { ssh_keys: Vec<VKey> },
    List(Vec<VKey>),
}

#[derive(Deserialize)]
struct VKey {
    /// `key` in Vast's document (`getSshKeysUser`).
    #[serde(alias = "ssh_key", alias = "key")]
    public_key: String,
}

/// The region a `geolocation` belongs to.
pub fn region_of(geolocation: Option<&str>) -> &'static str {
    let Some(g) = geolocation else {
        return "other";
    };
    let cc = g
        .rsplit(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    match cc.as_str() {
        "US" | "CA" | "MX" => "north-america",
        "BR" | "AR" | "CL" | "CO" | "PE" | "UY" => "south-america",
        "AT" | "BE" | "BG" | "HR" | "CY" | "CZ" | "DK" | "EE" | "FI" | "FR" | "DE" | "GR"
        | "HU" | "IE" | "IT" | "LV" | "LT" | "LU" | "MT" | "NL" | "PL" | "PT" | "RO" | "SK"
        | "SI" | "ES" | "SE" | "IS" | "NO" | "LI" | "CH" | "GB" | "UK" | "UA" | "RS" | "MD"
        | "BA" | "ME" | "MK" | "AL" => "europe",
        "JP" | "KR" | "CN" | "HK" | "TW" | "SG" | "MY" | "TH" | "VN" | "ID" | "PH" | "IN"
        | "AU" | "NZ" => "asia-pacific",
        _ => "other",
    }
}

fn region_display(region: &str) -> String {
    match region {
        "north-america" => "North America",
        "south-america" => "South America",
        "europe" => "Europe",
        "asia-pacific" => "Asia-Pacific",
        _ => "Elsewhere",
    }
    .to_string()
}

/// Every region, so a type sold out in one still lists it.
const REGIONS: [&str; 5] = [
    "asia-pacific",
    "europe",
    "north-america",
    "other",
    "south-america",
];

impl VOffer {
    /// VRAM per GPU in GB (Vast states MB), 0 where the offer does not say.
    fn vram_per_gpu(&self) -> i64 {
        let mb = match (self.gpu_ram, self.gpu_total_ram) {
            (Some(r), _) => r.get(),
            (None, Some(t)) => t.get() / self.num_gpus.max(1) as f64,
            (None, None) => 0.0,
        };
        (mb / 1024.0).round() as i64
    }

    /// The Shadeform type this offer is one of; `None` for a GPU no
    /// Shadeform model fits.
    fn shade_type(&self) -> Option<String> {
        let gpu = gpu_model(&self.gpu_name)?.with_vram(self.vram_per_gpu());
        Some(shade_type(&gpu, self.num_gpus))
    }
}

impl Vastai {
    /// An adapter; it calls nothing until asked.
    pub fn new(cfg: VastaiConfig, deployment_id: &str) -> Self {
        Self {
            cfg,
            known: KnownMachines::new(deployment_id),
            http: Http::new(CLOUD),
            offers: OffersCache::new(Duration::from_secs(20)),
            keys: StdMutex::new(HashSet::new()),
            key_setup: tokio::sync::Mutex::new(()),
        }
    }

    /// Verified, rentable on-demand offers, cheapest first; `filter` adds
    /// conditions to Vast's query.
    async fn search(&self, filter: Value) -> Result<Vec<VOffer>, ProviderError> {
        let mut q = json!({
            "verified": {"eq": true},
            "rentable": {"eq": true},
            "rented": {"eq": false},
            "type": "ondemand",
            // `searchOffers` takes exactly two order terms: price, then id
            // so equal prices list the same way every time.
            "order": [["dph_total", "asc"], ["id", "asc"]],
        });
        if let (Some(q), Some(f)) = (q.as_object_mut(), filter.as_object()) {
            q.extend(f.clone());
        }
        let o: Offers = self.json(Method::POST, "/bundles/", Some(&q)).await?;
        let mut offers: Vec<VOffer> = o
            .offers
            .into_iter()
            .filter(|o| o.verified != Some(false))
            .collect();
        offers.sort_by(|a, b| a.dph_total.get().total_cmp(&b.dph_total.get()));
        Ok(offers)
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>, ProviderError> {
        let offers = self.search(json!({})).await?;
        // (shade type) → cheapest offer per region, and that offer.
        let mut by_type: BTreeMap<String, (BTreeMap<&'static str, VOffer>, VOffer)> =
            BTreeMap::new();
        for o in offers {
            if o.num_gpus < 1 {
                continue;
            }
            let Some(shade) = o.shade_type() else {
                super::gpus::unmapped(CLOUD, &o.gpu_name);
                continue;
            };
            let region = region_of(o.geolocation.as_deref());
            let entry = by_type
                .entry(shade)
                .or_insert_with(|| (BTreeMap::new(), o.clone()));
            if o.dph_total.get() < entry.1.dph_total.get() {
                entry.1 = o.clone();
            }
            let cheapest = entry.0.entry(region).or_insert_with(|| o.clone());
            if o.dph_total.get() < cheapest.dph_total.get() {
                *cheapest = o;
            }
        }
        let mut out = Vec::new();
        for (shade, (regions, best)) in by_type {
            let gpu = gpu_model(&best.gpu_name)
                .expect("recognized above")
                .with_vram(best.vram_per_gpu());
            out.push(Offer {
                cloud: CLOUD.to_string(),
                shade_instance_type: shade,
                cloud_instance_type: format!("{}:{}", best.gpu_name, best.num_gpus),
                configuration: configuration(
                    &gpu,
                    best.num_gpus,
                    best.cpu_cores_effective
                        .map_or(0, |c| c.get().floor() as i64),
                    best.cpu_ram
                        .map_or(0, |m| (m.get() / 1024.0).round() as i64),
                    best.disk_space.map_or(0, |d| d.get().floor() as i64),
                    &[OS],
                ),
                hourly_price: cents(best.dph_total.get()),
                deployment_type: "container".to_string(),
                boot_time: None,
                regions: REGIONS
                    .iter()
                    .map(|r| {
                        let o = regions.get(r);
                        RegionOffer {
                            region: r.to_string(),
                            display_name: region_display(r),
                            capacity: Capacity::Available(o.is_some()),
                            spot_price: o.and_then(|o| o.min_bid).map(|b| cents(b.get())),
                        }
                    })
                    .collect(),
                ssh_user: "root".to_string(),
                ssh_port: 22,
            });
        }
        Ok(out)
    }

    /// Accepts the cheapest matching offer in the region under `label`;
    /// answers the new instance's id.
    async fn accept(&self, req: &LaunchRequest, label: String) -> Result<String, ProviderError> {
        let (gpu, count) = split_gpu_count(CLOUD, &req.cloud_instance_type)?;
        if let Some(k) = &req.ssh_public_key {
            self.ensure_key(k).await?;
        }
        let candidates: Vec<VOffer> = self
            .search(json!({"gpu_name": {"eq": gpu}, "num_gpus": {"eq": count}}))
            .await?
            .into_iter()
            .filter(|o| region_of(o.geolocation.as_deref()) == req.region)
            // One gpu_name can cover two sizes (A100 SXM4 40 and 80 GB):
            // only offers of the type asked for.
            .filter(|o| {
                req.shade_instance_type.is_empty()
                    || o.shade_type().as_deref() == Some(req.shade_instance_type.as_str())
            })
            .take(ACCEPT_ATTEMPTS)
            .collect();
        let spot = req.rental_type == RentalType::Spot;
        let env = docker_env(req.envs.iter().map(|e| (&*e.name, &*e.value)));
        // The container runs `onstart` as root at every start; the agent
        // is all it runs.
        let onstart = super::agent_start_script(req);
        let mut last = format!(
            "no verified offer of {count}x {gpu} in {} is left",
            req.region
        );
        for o in candidates {
            let mut body = json!({
                "client_id": "me",
                "image": IMAGE,
                "disk": DISK_GB,
                "label": label,
                // SSH straight to the host's mapped port 22, which is what
                // `state` reads (`createInstance`'s runtype `ssh_direct`).
                "runtype": "ssh_direct",
                "env": env,
            });
            if let Some(script) = &onstart {
                body["onstart"] = json!(script);
            }
            if spot {
                body["price"] = json!(o.min_bid.map_or(o.dph_total.get(), Num::get));
            }
            match self
                .json::<Accepted>(Method::PUT, &format!("/asks/{}/", o.id), Some(&body))
                .await
            {
                Ok(a) => return Ok(a.new_contract.to_string()),
                // Taken by someone else since the search: try the next.
                Err(ProviderError::Capacity(why)) => {
                    tracing::debug!(offer = o.id, why = %why, "offer taken; trying the next");
                    last = why;
                }
                Err(e) => return Err(e),
            }
        }
        self.offers.clear().await;
        Err(ProviderError::Capacity(format!("{CLOUD}: {last}")))
    }

    /// Puts the public key on the account, once.
    async fn ensure_key(&self, public_key: &str) -> Result<(), ProviderError> {
        let key = public_key.trim().to_string();
        if self.keys.lock().expect("poisoned").contains(&key) {
            return Ok(());
        }
        let _one = self.key_setup.lock().await;
        let existing = match self.json::<Keys>(Method::GET, "/ssh/", None).await? {
            Keys::Wrapped { ssh_keys } | Keys::List(ssh_keys) => ssh_keys,
        };
        if !existing.iter().any(|k| k.public_key.trim() == key) {
            let _: Value = self
                .json(Method::POST, "/ssh/", Some(&json!({"ssh_key": key})))
                .await?;
        }
        self.keys.lock().expect("poisoned").insert(key);
        Ok(())
    }
}

/// Environment variables as `createInstance`'s `env` string: docker run
/// options, `-e NAME=value` each, a value single-quoted where the shell
/// would split or expand it.
fn docker_env<'a>(vars: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    vars.map(|(k, v)| {
        let plain = !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./:@+=,".contains(&b));
        if plain {
            format!("-e {k}={v}")
        } else {
            format!("-e {k}='{}'", v.replace('\'', "'\\''"))
        }
    })
    .collect::<Vec<_>>()
    .join(" ")
}

fn detail(f: &Failure) -> (String, String) {
    match serde_json::from_str::<ErrorBody>(&f.body) {
        Ok(e) if !e.error.is_empty() || !e.msg.is_empty() => {
            let d = if e.msg.is_empty() {
                e.error.clone()
            } else {
                format!("{}: {}", e.error, e.msg)
            };
            (e.error, d)
        }
        _ => (String::new(), short(&f.body)),
    }
}

fn classify(what: &str, f: &Failure) -> ProviderError {
    let (code, d) = detail(f);
    if code == "no_such_ask" {
        return ProviderError::Capacity(format!("{CLOUD}: {d}"));
    }
    generic_failure(CLOUD, what, f, &d)
}

fn state(i: &VInstance) -> MachineState {
    let ip = i.public_ipaddr.clone().filter(|s| !s.trim().is_empty());
    let port = i
        .ports
        .as_ref()
        .and_then(|p| p.get("22/tcp"))
        .and_then(|b| b.first())
        .and_then(|b| b.host_port.parse::<i64>().ok());
    match (i.actual_status.as_deref(), ip, port) {
        (None | Some("created"), _, _) => MachineState::Provisioning,
        (Some("running"), Some(ip), Some(port)) => MachineState::Running {
            ip: ip.trim().to_string(),
            ssh_port: port,
            ssh_user: "root".to_string(),
            placement: None,
        },
        (Some("exited" | "stopped"), _, _) if i.is_bid => MachineState::Preempted,
        (Some(s @ ("exited" | "stopped")), _, _) => MachineState::Failed {
            reason: format!("{CLOUD} reported the instance {s}"),
        },
        _ => MachineState::Booting,
    }
}

impl Machines for Vastai {
    type Machine = VInstance;

    /// API v1's list, page by page (`showInstances`; v0 has no list).
    async fn list_machines(&self) -> Result<Vec<VInstance>, ProviderError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("limit", PAGE.to_string())];
            if let Some(t) = after.take() {
                query.push(("after_token", t));
            }
            let page: Instances = self
                .json_query(Method::GET, V1_INSTANCES, &query, None)
                .await?;
            let done = page.instances.is_empty();
            all.extend(page.instances);
            match page.next_token {
                Some(t) if !t.is_empty() && !done => after = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// From the listing: Vast drops a destroyed instance from it at once.
    async fn get_machine(&self, instance_id: &str) -> Result<Option<VInstance>, ProviderError> {
        Ok(self
            .list_machines()
            .await?
            .into_iter()
            .find(|i| i.id.to_string() == instance_id))
    }

    fn cloud_id(i: &VInstance) -> String {
        i.id.to_string()
    }

    fn marker_name(i: &VInstance) -> Option<&str> {
        i.label.as_deref()
    }

    /// Never: Vast deletes a destroyed instance at once.
    fn torn_down(_: &VInstance) -> bool {
        false
    }
}

impl RestApi for Vastai {
    fn http(&self) -> &Http {
        &self.http
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        // A path of another API version (`/api/v1/...`) starts at the
        // host's root, which the configured `.../api/v0` base lies under.
        let base = self.cfg.url.trim_end_matches('/');
        let base = if path.starts_with("/api/") {
            base.strip_suffix("/api/v0").unwrap_or(base)
        } else {
            base
        };
        self.http
            .request(method, base, path)
            .bearer_auth(self.cfg.api_key.expose())
    }

    fn classify(&self, what: &str, f: &Failure) -> ProviderError {
        classify(what, f)
    }
}

#[async_trait]
impl Provider for Vastai {
    fn name(&self) -> &'static str {
        "vastai"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        self.offers.get(|| self.fetch_offers()).await
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        self.known
            .launch(self, req.instance_id, |label| self.accept(req, label))
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
                "Vast.ai has no instance for this instance".into(),
            ));
        };
        // `rebootInstance` takes no body.
        let _: Value = self
            .json(Method::PUT, &format!("/instances/reboot/{}/", i.id), None)
            .await?;
        Ok(())
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        let Some(i) = self.known.find(self, id).await? else {
            return Ok(MachineState::Gone);
        };
        let path = format!("/instances/{}/", i.id);
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

    async fn list_legacy_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        self.known.legacy_marked(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_become_docker_options_quoted_where_needed() {
        let vars = [
            ("PUBLIC_KEY", "ssh-ed25519 AAAA me@host"),
            ("MODE", "fast"),
            ("QUOTE", "it's"),
            ("EMPTY", ""),
        ];
        assert_eq!(
            docker_env(vars.iter().copied()),
            "-e PUBLIC_KEY='ssh-ed25519 AAAA me@host' -e MODE=fast -e QUOTE='it'\\''s' -e EMPTY=''"
        );
        assert_eq!(docker_env(std::iter::empty()), "");
    }

    #[test]
    fn geolocations_group_into_documented_regions() {
        assert_eq!(region_of(Some("California, US")), "north-america");
        assert_eq!(region_of(Some("CA")), "north-america");
        assert_eq!(region_of(Some("Sweden, SE")), "europe");
        assert_eq!(region_of(Some("Tokyo, JP")), "asia-pacific");
        assert_eq!(region_of(Some("Brazil, BR")), "south-america");
        assert_eq!(region_of(Some("ZA")), "other");
        assert_eq!(region_of(None), "other");
    }

    #[test]
    fn an_instance_runs_on_the_host_port_of_22() {
        let i = VInstance {
            id: 1,
            label: None,
            actual_status: Some("running".into()),
            public_ipaddr: Some("1.2.3.4\n".into()),
            ports: Some(BTreeMap::from([(
                "22/tcp".to_string(),
                vec![PortBinding {
                    host_port: "40022".into(),
                }],
            )])),
            is_bid: false,
        };
        assert_eq!(
            state(&i),
            MachineState::Running {
                ip: "1.2.3.4".into(),
                ssh_port: 40022,
                ssh_user: "root".into(),
                placement: None,
            }
        );
        let bid = VInstance {
            actual_status: Some("exited".into()),
            is_bid: true,
            ..i.clone()
        };
        assert_eq!(state(&bid), MachineState::Preempted);
        let loading = VInstance {
            actual_status: Some("loading".into()),
            ..i
        };
        assert_eq!(state(&loading), MachineState::Booting);
    }
}
