//! `azure`: Microsoft Azure virtual machines, through Azure Resource
//! Manager's REST API, written from Microsoft's REST API specification
//! (Microsoft.Compute and Microsoft.Network, as `specs/azure-*.openapi.json`
//! keep it) and tested against a fake held to it.
//!
//! Credentials are a service principal's client secret, exchanged at the
//! Entra ID token endpoint (`{authority}/{tenant}/oauth2/v2.0/token`, the
//! client-credentials grant, scope `https://management.azure.com/.default`)
//! for a bearer token kept until a minute before it expires, and fetched
//! again after a 401. On an Azure VM the VM's managed identity may stand
//! in for the secret ([`AzureAuth::ManagedIdentity`]): its token comes
//! from the instance metadata service
//! (`GET /metadata/identity/oauth2/token`, `Metadata: true`). In App
//! Service, Azure Functions or Container Apps the app's managed identity
//! does ([`AzureAuth::AppServiceIdentity`]): its token comes from the
//! local endpoint the platform names in `IDENTITY_ENDPOINT`, asked with
//! the `IDENTITY_HEADER` value in `X-IDENTITY-HEADER` (api-version
//! 2019-08-01), and says when it expires only as `expires_on`, seconds
//! since the epoch.
//!
//! Calls (each api-version pinned, see the constants below):
//! - catalog: `GET /subscriptions/{s}/providers/Microsoft.Compute/skus`
//!   filtered per location (shapes from the `GPUs`, `vCPUs` and `MemoryGB`
//!   capabilities, availability from the restrictions per location and
//!   zone), and the public Retail Prices API (`GET /api/retail/prices`) for
//!   on-demand and spot prices, falling back to [`PRICES`] when it cannot
//!   be reached;
//! - per location, once: a resource group `parasol-<deployment>-<location>`,
//!   a network security group allowing SSH, a virtual network with one
//!   subnet behind it (`PUT`, followed through `Azure-AsyncOperation`);
//! - per machine, each by `PUT` under a name derived from the marker and
//!   tagged with it: a public IP (`<name>-ip`), a NIC (`<name>-nic`) and the
//!   VM (`<name>`, OS disk `<name>-osdisk`), the IP, NIC and OS disk with
//!   `deleteOption: Delete`, so deleting the VM deletes them. The VM is
//!   found by its name as every cloud finds its machines (`find.rs`), in
//!   `GET /subscriptions/{s}/providers/Microsoft.Compute/virtualMachines`;
//! - `GET {vm}/instanceView` and `GET {ip}` to describe, `POST
//!   {vm}/restart`, `DELETE {vm}`;
//! - volumes: Premium SSD managed disks (`PUT|GET|DELETE {disk}`, `GET
//!   .../disks`), made in the location's zone that offers the most GPU
//!   sizes (where it has zones), attached at launch as data disks that are
//!   detached, not deleted, with the VM; a VM mounting one launches in its
//!   zone.
//!
//! A launch tries the location's zones that offer the size, in order; a
//! capacity refusal (`SkuNotAvailable`, `AllocationFailed`,
//! `ZonalAllocationFailed`, `OverconstrainedAllocationRequest`) moves on to
//! the next zone, and after the last the launch is a capacity error, so
//! placement fails over to another location. Azure gives the refusal on
//! the `PUT` or, as often, through the VM's create operation (the `PUT`
//! answered 201, `Creating`): the launch follows that operation for up to
//! [`OPERATION_WAIT`]; a VM that failed allocation there is deleted (its
//! NIC and IP go with it, `deleteOption: Delete`), and once all three are
//! gone the next zone makes them again under the same names. Same names,
//! not a per-attempt suffix, because every other path finds a machine and
//! its parts by the marker's name (`find.rs`, describe's `<name>-ip`, the
//! sweep's suffixes). A delete that outlasts `RETIRE_WAIT` ends the call
//! transient; the relaunch (in this process) waits for it, then goes on
//! with the zones not yet tried. An allocation failure reported after
//! [`OPERATION_WAIT`] leaves the VM `Failed` with the code: describe
//! reports it as failed for insufficient capacity, without trying another
//! zone. A launch that fails for good deletes the NIC and IP it made. A
//! terminate deletes the VM, then goes on until no NIC, public IP or OS
//! disk of the machine is left either; the orphan sweep lists a machine
//! whose NIC, IP or OS disk outlived its VM (a crash between creating
//! them), so it is terminated the same way.
//!
//! State mapping (the instance view's statuses → [`MachineState`]):
//!
//! | instance view                                    | public ip | MachineState |
//! |--------------------------------------------------|-----------|--------------|
//! | `ProvisioningState/deleting` (or VM `Deleting`)   | any       | spot: `Preempted`; else `Terminating` |
//! | `ProvisioningState/failed/<capacity code>`        | any       | `Failed` (insufficient capacity) |
//! | `ProvisioningState/failed/<other>`                | any       | `Failed` |
//! | `PowerState/running`                              | set       | `Running` |
//! | `PowerState/running`                              | none      | `Booting` |
//! | `PowerState/starting`                             | any       | `Booting` |
//! | `PowerState/stopping`, `stopped`, `deallocating`, `deallocated` | any | spot: `Preempted` (evicted); else `Failed` (Parasol never stops a VM) |
//! | no power state yet (`ProvisioningState/creating`) | any       | `Provisioning` |
//!
//! A spot VM is evicted with `evictionPolicy: Delete`: Azure stops and
//! deletes it, so a spot VM seen stopped or being deleted by describe is
//! preempted (Parasol's own delete goes through terminate, which never
//! describes).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parasol_api::RentalType;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::gpus::{self, GpuModel, AMD, NVIDIA};
use super::http::TokenCache;
use super::volumes::{self, VolumeApi, VolumeKind};
use super::{
    cents, configuration, generic_failure, parse, shade_type, short, Failure, Http, KnownMachines,
    Machines, OffersCache, Secret,
};
use crate::providers::{
    Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError, RegionOffer,
    VolumeOffer, VolumeRef, VolumeRequest, VolumeState,
};

/// The cloud name in the API.
pub const CLOUD: &str = "azure";
/// Azure Resource Manager.
pub const DEFAULT_URL: &str = "https://management.azure.com";
/// The Entra ID login host (`AZURE_AUTHORITY_HOST`, as azure-identity reads it).
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The public Retail Prices API.
pub const DEFAULT_PRICES_URL: &str = "https://prices.azure.com";
/// Locations served when none are configured.
pub const DEFAULT_LOCATIONS: &[&str] = &[
    "eastus",
    "eastus2",
    "southcentralus",
    "westus2",
    "westus3",
    "westeurope",
    "swedencentral",
];
/// The api-versions, each pinned to the one `specs/` derives.
const COMPUTE_API: &str = "2026-04-01";
const DISKS_API: &str = "2026-03-02";
const SKUS_API: &str = "2021-07-01";
const NETWORK_API: &str = "2026-03-01";
const RESOURCES_API: &str = "2021-04-01";
const PRICES_API: &str = "2023-01-01-preview";
/// Tag holding Parasol's instance id on every resource of a machine.
pub const TAG_INSTANCE: &str = "parasol-instance";
/// Tag holding the deployment id.
pub const TAG_DEPLOYMENT: &str = "parasol-deployment";
/// Tag holding the Parasol volume a managed disk stands for.
pub const TAG_VOLUME: &str = "parasol-volume";
/// The network security group, virtual network and subnet made per location.
pub const NSG: &str = "parasol-ssh";
pub const VNET: &str = "parasol-vnet";
pub const SUBNET: &str = "parasol-subnet";
/// The VM's admin user, who gets the instance's SSH key: `ubuntu`, as on
/// the other clouds' Ubuntu images (Azure reserves names such as `admin`
/// and `root`, not this one).
pub const ADMIN_USER: &str = "ubuntu";
/// The OS offered, and the image it launches unless configured otherwise:
/// Microsoft's Ubuntu-HPC image, with the GPU drivers installed.
const OS: &str = "ubuntu22.04_hpc";
const DEFAULT_IMAGE: &str = "microsoft-dsvm:ubuntu-hpc:2204:latest";
/// Error codes that mean no capacity for the size where it was asked.
const CAPACITY_CODES: &[&str] = &[
    "SkuNotAvailable",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
];
/// How long the network set-up of a location is followed before the
/// launch gives up for now (transient) and picks it up next time.
const SETUP_WAIT: Duration = Duration::from_secs(40);
/// How long a launch follows its VM's create operation, where Azure
/// reports most allocation failures, before it leaves the rest to
/// describe (within the reconciler's 30-second call).
pub const OPERATION_WAIT: Duration = Duration::from_secs(15);
/// How long a launch waits for a VM Azure could not allocate to be
/// deleted (with its NIC and IP) before the next zone reuses the names.
const RETIRE_WAIT: Duration = Duration::from_secs(10);

/// How to reach Azure.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// How Parasol gets its tokens.
    pub auth: AzureAuth,
    pub subscription_id: String,
    /// The locations served (`eastus`, ...).
    pub locations: Vec<String>,
    /// Resource Manager's base URL.
    pub url: String,
    /// The Entra ID login host.
    pub authority_host: String,
    /// The Retail Prices API's base URL.
    pub prices_url: String,
    /// The image as `publisher:offer:sku:version`.
    pub image: String,
}

/// Where Azure tokens come from.
#[derive(Debug, Clone)]
pub enum AzureAuth {
    /// A service principal's client secret, exchanged at Entra ID
    /// (`authority_host`).
    ClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: Secret,
    },
    /// The managed identity of the Azure VM Parasol runs on, from the
    /// instance metadata service at `endpoint`; `client_id` picks a
    /// user-assigned identity.
    ManagedIdentity {
        endpoint: String,
        client_id: Option<String>,
    },
    /// The managed identity of the App Service, Functions or Container
    /// Apps app Parasol runs in, from the platform's local token endpoint
    /// (`IDENTITY_ENDPOINT`), asked with `header` (`IDENTITY_HEADER`, a
    /// secret against request forgery); `client_id` picks a user-assigned
    /// identity.
    AppServiceIdentity {
        endpoint: String,
        header: Secret,
        client_id: Option<String>,
    },
}

/// The instance metadata service of an Azure VM.
pub const DEFAULT_IMDS_URL: &str = "http://169.254.169.254";

impl AzureConfig {
    /// The default image, for settings that name none.
    pub fn default_image() -> String {
        DEFAULT_IMAGE.to_string()
    }
}

/// One GPU series Parasol serves, by the suffix of its size names.
struct Series {
    /// `Standard_NC24ads_A100_v4` ends with `_A100_v4`.
    suffix: &'static str,
    /// Sizes whose names start with this (ND vs NC H100 v5), or "".
    prefix: &'static str,
    gpu: GpuModel,
}

const fn model(
    gpu_type: &'static str,
    vram: i64,
    interconnect: &'static str,
    manufacturer: &'static str,
) -> GpuModel {
    GpuModel {
        gpu_type,
        shade: gpu_type,
        vram,
        interconnect,
        manufacturer,
    }
}

/// The series served. Resource SKUs state a size's GPU count but not its
/// GPU, so the model and its memory come from Microsoft's size pages.
const SERIES: &[Series] = &[
    Series {
        suffix: "_A100_v4",
        prefix: "Standard_NC",
        gpu: model("A100_80G", 80, "pcie", NVIDIA),
    },
    Series {
        suffix: "_H100_v5",
        prefix: "Standard_NC",
        // H100 NVL, 94 GB each.
        gpu: model("H100", 94, "pcie", NVIDIA),
    },
    Series {
        suffix: "_H100_v5",
        prefix: "Standard_ND",
        gpu: GpuModel {
            gpu_type: "H100",
            shade: "H100_sxm5",
            vram: 80,
            interconnect: "sxm5",
            manufacturer: NVIDIA,
        },
    },
    Series {
        suffix: "_H200_v5",
        prefix: "Standard_ND",
        gpu: model("H200", 141, "sxm5", NVIDIA),
    },
    Series {
        suffix: "_MI300X_v5",
        prefix: "Standard_ND",
        gpu: model("MI300X", 192, "infinity_fabric", AMD),
    },
    Series {
        suffix: "_T4_v3",
        prefix: "Standard_NC",
        gpu: model("T4", 16, "pcie", NVIDIA),
    },
    Series {
        suffix: "_A10_v5",
        prefix: "Standard_NV",
        gpu: model("A10", 24, "pcie", NVIDIA),
    },
];

/// NVadsA10 v5 sizes with a fraction of a GPU: not offered (Shadeform's
/// types are whole GPUs).
pub const FRACTIONAL: &[&str] = &[
    "Standard_NV6ads_A10_v5",
    "Standard_NV12ads_A10_v5",
    "Standard_NV18ads_A10_v5",
];

/// The GPU of a served size.
pub fn series_gpu(size: &str) -> Option<GpuModel> {
    SERIES
        .iter()
        .find(|s| size.ends_with(s.suffix) && size.starts_with(s.prefix))
        .map(|s| s.gpu.clone())
}

/// The shipped price table: on-demand Linux pay-as-you-go dollars per
/// hour in East US (`eastus`), the Retail Prices API's `retailPrice` for
/// the size's Linux `Consumption` meter. Used wherever the Retail Prices
/// API cannot be reached, for every location; spot prices come only from
/// the API. Check the rows against the API when refreshing this table.
///
/// Source of the confirmed rows, read 2026-12-07: SkyPilot's Azure
/// catalog, which its catalog job fills from the Retail Prices API
/// (`skypilot-org/skypilot-catalog`, `catalogs/v6/azure/vms.csv` at commit
/// 098741e70562f65d7af1cceb81e33b284f742604, column `Price`, region
/// `eastus`; `catalogs/v5/azure/vms.csv` at 3f5f697196c9278346b0271342031fff6b37036d
/// has the same values). The ND H200 v5 and ND MI300X v5 rows could not be
/// confirmed from any source at hand on 2026-12-07 (neither SkyPilot
/// catalog lists them, and no stored price page names them); they are
/// marked below.
pub const PRICES: &[(&str, f64)] = &[
    // NC A100 v4: confirmed, SkyPilot v6 catalog, eastus, read 2026-12-07.
    ("Standard_NC24ads_A100_v4", 3.673),
    ("Standard_NC48ads_A100_v4", 7.346),
    ("Standard_NC96ads_A100_v4", 14.692),
    // NC H100 v5: confirmed, SkyPilot v6 catalog, eastus, read 2026-12-07.
    ("Standard_NC40ads_H100_v5", 6.98),
    ("Standard_NC80adis_H100_v5", 13.96),
    // ND H100 v5: confirmed, SkyPilot v6 catalog, eastus, read 2026-12-07.
    ("Standard_ND96isr_H100_v5", 98.32),
    // ND H200 v5: NOT CONFIRMED (no source at hand on 2026-12-07); the
    // figure first written down from memory, kept until the API is read.
    ("Standard_ND96isr_H200_v5", 110.24),
    // ND MI300X v5: NOT CONFIRMED (no source at hand on 2026-12-07); the
    // figure first written down from memory, kept until the API is read.
    ("Standard_ND96isr_MI300X_v5", 48.0),
    // NCasT4_v3: confirmed, SkyPilot v6 catalog, eastus, read 2026-12-07.
    ("Standard_NC4as_T4_v3", 0.526),
    ("Standard_NC8as_T4_v3", 0.752),
    ("Standard_NC16as_T4_v3", 1.204),
    ("Standard_NC64as_T4_v3", 4.352),
    // NVadsA10 v5 (whole-GPU sizes): confirmed, SkyPilot v6 catalog,
    // eastus, read 2026-12-07.
    ("Standard_NV36ads_A10_v5", 3.2),
    ("Standard_NV36adms_A10_v5", 4.52),
    ("Standard_NV72ads_A10_v5", 6.52),
];

/// The shipped on-demand price of `size`, in cents per hour.
pub fn table_price(size: &str) -> Option<i64> {
    PRICES
        .iter()
        .find(|(s, _)| *s == size)
        .map(|(_, d)| cents(*d))
}

/// What the catalog learnt of one size in one location.
#[derive(Debug, Clone)]
struct Placement {
    /// Zones that may be asked for, in order; empty: the location has
    /// none for the size (a regional launch).
    zones: Vec<String>,
    /// Whether the subscription may launch the size there at all.
    allowed: bool,
}

/// A size as the catalog keeps it between refreshes.
#[derive(Debug, Clone, Default)]
struct SizeInfo {
    /// The quota family (`StandardNCADSA100v4Family`), for quota errors.
    family: String,
    places: HashMap<String, Placement>,
}

/// Prices by (size, location): on-demand and spot cents per hour.
type PriceBook = HashMap<(String, String), (Option<i64>, Option<i64>)>;

/// The Azure adapter.
pub struct Azure {
    cfg: AzureConfig,
    deployment: String,
    known: KnownMachines,
    http: Http,
    token: TokenCache,
    offers: OffersCache,
    sizes: StdMutex<HashMap<String, SizeInfo>>,
    prices: Mutex<Option<(Instant, PriceBook)>>,
    /// Locations whose resource group and network are set up: the subnet id.
    networks: StdMutex<HashMap<String, String>>,
    /// Resource groups known to exist.
    groups: StdMutex<HashSet<String>>,
    /// Serializes the per-location set-up.
    setup: Mutex<()>,
    /// Launches whose VM Azure could not allocate is still being deleted
    /// (kept only while that delete is pending): the zones tried so far,
    /// so the relaunch goes on with the next once the names are free.
    retiring: StdMutex<HashMap<Uuid, Vec<Option<String>>>>,
    /// How long a launch follows its VM's create operation.
    operation_wait: Duration,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
    /// When it expires, in seconds since the epoch (App Service gives
    /// only this).
    #[serde(default)]
    expires_on: Option<Value>,
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(default, rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sku {
    #[serde(default)]
    resource_type: String,
    name: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    locations: Vec<String>,
    #[serde(default)]
    location_info: Vec<LocationInfo>,
    #[serde(default)]
    capabilities: Vec<NameValue>,
    #[serde(default)]
    restrictions: Vec<Restriction>,
}

#[derive(Deserialize)]
struct LocationInfo {
    #[serde(default)]
    location: String,
    #[serde(default)]
    zones: Vec<String>,
}

#[derive(Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Restriction {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    restriction_info: Option<RestrictionInfo>,
}

#[derive(Deserialize)]
struct RestrictionInfo {
    #[serde(default)]
    locations: Vec<String>,
    #[serde(default)]
    zones: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PricePage {
    #[serde(default)]
    items: Vec<PriceItem>,
    #[serde(default)]
    next_page_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriceItem {
    #[serde(default)]
    arm_sku_name: String,
    #[serde(default)]
    arm_region_name: String,
    #[serde(default)]
    retail_price: f64,
    #[serde(default)]
    sku_name: String,
    #[serde(default)]
    product_name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    unit_of_measure: String,
}

/// A VM as Resource Manager describes it.
#[derive(Deserialize, Clone, Debug)]
pub(crate) struct Vm {
    id: String,
    name: String,
    #[serde(default)]
    zones: Vec<String>,
    #[serde(default)]
    properties: VmProperties,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct VmProperties {
    #[serde(default)]
    provisioning_state: String,
    #[serde(default)]
    priority: Option<String>,
}

#[derive(Deserialize, Default)]
struct InstanceView {
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    code: String,
}

#[derive(Deserialize)]
struct PublicIp {
    #[serde(default)]
    properties: PublicIpProperties,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PublicIpProperties {
    #[serde(default)]
    ip_address: Option<String>,
}

/// A NIC, public IP or disk: what finding a machine's leftovers reads.
#[derive(Deserialize, Clone)]
pub(crate) struct Resource {
    id: String,
    name: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    zones: Vec<String>,
    #[serde(default)]
    properties: ResourceProperties,
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
struct ResourceProperties {
    #[serde(default)]
    provisioning_state: String,
}

#[derive(Deserialize)]
struct AsyncStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The parts of a machine beside its VM, by their name's suffix.
const PARTS: &[(&str, &str)] = &[
    ("-nic", "Microsoft.Network/networkInterfaces"),
    ("-ip", "Microsoft.Network/publicIPAddresses"),
    ("-osdisk", "Microsoft.Compute/disks"),
];

/// The api-version of a resource type's calls.
fn api_of(kind: &str) -> &'static str {
    if kind.starts_with("Microsoft.Network") {
        NETWORK_API
    } else if kind.ends_with("/disks") {
        DISKS_API
    } else {
        COMPUTE_API
    }
}

impl Azure {
    /// An adapter; it calls nothing until asked.
    pub fn new(cfg: AzureConfig, deployment_id: &str) -> Self {
        Self {
            cfg,
            deployment: deployment_id.to_string(),
            known: KnownMachines::new(deployment_id),
            http: Http::new(CLOUD),
            token: TokenCache::default(),
            offers: OffersCache::new(Duration::from_secs(60)),
            sizes: StdMutex::new(HashMap::new()),
            prices: Mutex::new(None),
            networks: StdMutex::new(HashMap::new()),
            groups: StdMutex::new(HashSet::new()),
            setup: Mutex::new(()),
            retiring: StdMutex::new(HashMap::new()),
            operation_wait: OPERATION_WAIT,
        }
    }

    /// The same adapter, following a VM's create operation for `wait`
    /// instead of [`OPERATION_WAIT`].
    pub fn with_operation_wait(mut self, wait: Duration) -> Self {
        self.operation_wait = wait;
        self
    }

    fn deployment(&self) -> String {
        self.deployment.clone()
    }

    /// The resource group of `location`.
    pub fn group_name(deployment: &str, location: &str) -> String {
        format!("parasol-{deployment}-{location}")
    }

    fn group(&self, location: &str) -> String {
        Self::group_name(&self.deployment(), location)
    }

    fn sub(&self) -> String {
        format!("/subscriptions/{}", self.cfg.subscription_id)
    }

    fn in_group(&self, location: &str, kind: &str, name: &str) -> String {
        format!(
            "{}/resourceGroups/{}/providers/{kind}/{name}",
            self.sub(),
            self.group(location)
        )
    }

    fn tags(&self, instance: Uuid) -> Value {
        json!({TAG_INSTANCE: instance.to_string(), TAG_DEPLOYMENT: self.deployment()})
    }

    async fn token(&self) -> Result<Secret, ProviderError> {
        self.token.get(|| self.fetch_token()).await
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration), ProviderError> {
        let t = match &self.cfg.auth {
            AzureAuth::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
            } => {
                self.secret_token(tenant_id, client_id, client_secret)
                    .await?
            }
            AzureAuth::ManagedIdentity {
                endpoint,
                client_id,
            } => self.identity_token(endpoint, client_id.as_deref()).await?,
            AzureAuth::AppServiceIdentity {
                endpoint,
                header,
                client_id,
            } => {
                self.app_identity_token(endpoint, header, client_id.as_deref())
                    .await?
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let life = token_life(&t, now);
        Ok((Secret::new(t.access_token), life))
    }

    /// The client-credentials grant at Entra ID.
    async fn secret_token(
        &self,
        tenant_id: &str,
        client_id: &str,
        client_secret: &Secret,
    ) -> Result<Token, ProviderError> {
        let url = format!(
            "{}/{tenant_id}/oauth2/v2.0/token",
            self.cfg.authority_host.trim_end_matches('/'),
        );
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret.expose())
            .append_pair("scope", "https://management.azure.com/.default")
            .finish();
        self.http
            .json(
                "POST /oauth2/v2.0/token",
                || {
                    self.http
                        .client
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(form.clone())
                },
                |f| match f.status.as_u16() {
                    400 | 401 | 403 => ProviderError::Permanent(format!(
                        "{CLOUD}: Entra ID refused the service principal's client secret ({}: {}); check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
                        f.status.as_u16(),
                        token_error(&f.body)
                    )),
                    _ => generic_failure(CLOUD, "POST /oauth2/v2.0/token", f, &token_error(&f.body)),
                },
            )
            .await
    }

    /// A token of the VM's managed identity, from the instance metadata
    /// service.
    async fn identity_token(
        &self,
        endpoint: &str,
        client_id: Option<&str>,
    ) -> Result<Token, ProviderError> {
        let mut query = vec![
            ("api-version", "2018-02-01"),
            ("resource", "https://management.azure.com/"),
        ];
        if let Some(c) = client_id {
            query.push(("client_id", c));
        }
        let url = format!(
            "{}/metadata/identity/oauth2/token",
            endpoint.trim_end_matches('/')
        );
        self.http
            .json(
                "GET /metadata/identity/oauth2/token",
                || {
                    self.http
                        .client
                        .get(&url)
                        .query(&query)
                        .header("Metadata", "true")
                },
                |f| match f.status.as_u16() {
                    400 | 401 | 403 | 404 => ProviderError::Permanent(format!(
                        "{CLOUD}: the instance metadata service gave no managed identity token ({}: {}); is a managed identity assigned to this VM?",
                        f.status.as_u16(),
                        token_error(&f.body)
                    )),
                    _ => generic_failure(CLOUD, "GET /metadata/identity/oauth2/token", f, &token_error(&f.body)),
                },
            )
            .await
    }

    /// A token of the app's managed identity, from App Service's (or
    /// Functions' or Container Apps') local token endpoint.
    async fn app_identity_token(
        &self,
        endpoint: &str,
        header: &Secret,
        client_id: Option<&str>,
    ) -> Result<Token, ProviderError> {
        let mut query = vec![
            ("api-version", "2019-08-01"),
            ("resource", "https://management.azure.com/"),
        ];
        if let Some(c) = client_id {
            query.push(("client_id", c));
        }
        self.http
            .json(
                "GET IDENTITY_ENDPOINT",
                || {
                    self.http
                        .client
                        .get(endpoint)
                        .query(&query)
                        .header("X-IDENTITY-HEADER", header.expose())
                },
                |f| match f.status.as_u16() {
                    400 | 401 | 403 | 404 => ProviderError::Permanent(format!(
                        "{CLOUD}: the app's identity endpoint (IDENTITY_ENDPOINT) gave no managed identity token ({}: {}); is a managed identity assigned to this app, and IDENTITY_HEADER current?",
                        f.status.as_u16(),
                        token_error(&f.body)
                    )),
                    _ => generic_failure(CLOUD, "GET IDENTITY_ENDPOINT", f, &token_error(&f.body)),
                },
            )
            .await
    }

    /// Sends an authenticated request to `url` (absolute); after a 401 the
    /// token is fetched again once.
    async fn send_url(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, HeaderMap, String), ProviderError> {
        for fresh in [false, true] {
            let token = self.token().await?;
            let answer = self
                .http
                .send_with_headers(|| {
                    let r = self
                        .http
                        .client
                        .request(method.clone(), url)
                        .bearer_auth(token.expose());
                    match body {
                        Some(b) => r.json(b),
                        None => r,
                    }
                })
                .await?;
            if answer.0 == StatusCode::UNAUTHORIZED && !fresh {
                self.token.clear().await;
                continue;
            }
            return Ok(answer);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// `method path?api-version=api` under Resource Manager.
    async fn arm(
        &self,
        method: Method,
        path: &str,
        api: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, HeaderMap, String), ProviderError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{sep}api-version={api}", self.cfg.url);
        self.send_url(method, &url, body).await
    }

    /// A `GET` of one resource: `None` on 404.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
    ) -> Result<Option<T>, ProviderError> {
        let (status, _, text) = self.arm(Method::GET, path, api, None).await?;
        super::parse_found(CLOUD, &format!("GET {path}"), status, text, classify)
    }

    /// Every item of a paged listing, following `nextLink`.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
    ) -> Result<Vec<T>, ProviderError> {
        let what = format!("GET {path}");
        let (mut status, _, mut text) = self.arm(Method::GET, path, api, None).await?;
        let mut out = Vec::new();
        for _ in 0..200 {
            if !status.is_success() {
                return Err(classify(&what, &Failure { status, body: text }));
            }
            let page: Page<T> = parse(CLOUD, &what, &text)?;
            out.extend(page.value);
            let Some(next) = page.next_link.filter(|n| !n.is_empty()) else {
                return Ok(out);
            };
            let (s, _, t) = self.send_url(Method::GET, &next, None).await?;
            (status, text) = (s, t);
        }
        Err(ProviderError::Transient(format!(
            "{CLOUD}: {what} pages without end"
        )))
    }

    /// `PUT path` with `body`; the headers of the answer (to follow it).
    async fn put(
        &self,
        path: &str,
        api: &str,
        body: &Value,
    ) -> Result<(HeaderMap, String), ProviderError> {
        let (status, headers, text) = self.arm(Method::PUT, path, api, Some(body)).await?;
        if !status.is_success() {
            return Err(classify(
                &format!("PUT {path}"),
                &Failure { status, body: text },
            ));
        }
        Ok((headers, text))
    }

    /// `DELETE path`: accepted or already gone.
    async fn delete(&self, path: &str, api: &str) -> Result<(), ProviderError> {
        let (status, _, text) = self.arm(Method::DELETE, path, api, None).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(classify(
            &format!("DELETE {path}"),
            &Failure { status, body: text },
        ))
    }

    /// Follows a long-running operation through `Azure-AsyncOperation`
    /// (or `Location`) until it ends, for at most `wait`.
    async fn follow(
        &self,
        what: &str,
        headers: &HeaderMap,
        wait: Duration,
    ) -> Result<(), ProviderError> {
        let url = ["azure-asyncoperation", "location"]
            .iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
            .map(str::to_string);
        let Some(url) = url else {
            return Ok(());
        };
        let deadline = Instant::now() + wait;
        loop {
            let (status, h, text) = self.send_url(Method::GET, &url, None).await?;
            if !status.is_success() {
                return Err(classify(what, &Failure { status, body: text }));
            }
            // A `Location` poll answers 202 while running, and 200 (with
            // the result, which has no `status`) once done.
            let s: AsyncStatus = serde_json::from_str(&text).unwrap_or(AsyncStatus {
                status: if status == StatusCode::ACCEPTED {
                    "InProgress".into()
                } else {
                    "Succeeded".into()
                },
                error: None,
            });
            match s.status.as_str() {
                "Succeeded" => return Ok(()),
                "Failed" | "Canceled" => {
                    let e = s.error.unwrap_or(ErrorDetail {
                        code: s.status.clone(),
                        message: String::new(),
                    });
                    return Err(classify_code(
                        what,
                        &e.code,
                        &e.message,
                        StatusCode::CONFLICT,
                    ));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(ProviderError::Transient(format!(
                    "{CLOUD}: {what} is still running"
                )));
            }
            let pause = super::http::retry_after(&h)
                .unwrap_or(Duration::from_millis(500))
                .min(Duration::from_secs(5));
            tokio::time::sleep(pause).await;
        }
    }

    /// The resource group of `location`, made once.
    async fn ensure_group(&self, location: &str) -> Result<(), ProviderError> {
        let name = self.group(location);
        if self.groups.lock().expect("poisoned").contains(&name) {
            return Ok(());
        }
        self.put(
            &format!("{}/resourcegroups/{name}", self.sub()),
            RESOURCES_API,
            &json!({"location": location, "tags": {TAG_DEPLOYMENT: self.deployment()}}),
        )
        .await?;
        self.groups.lock().expect("poisoned").insert(name);
        Ok(())
    }

    /// The subnet id of `location`'s network, made once: the resource
    /// group, an NSG allowing SSH in, a virtual network with one subnet
    /// behind the NSG.
    async fn ensure_network(&self, location: &str) -> Result<String, ProviderError> {
        if let Some(id) = self.networks.lock().expect("poisoned").get(location) {
            return Ok(id.clone());
        }
        let _one = self.setup.lock().await;
        if let Some(id) = self.networks.lock().expect("poisoned").get(location) {
            return Ok(id.clone());
        }
        self.ensure_group(location).await?;
        let tags = json!({TAG_DEPLOYMENT: self.deployment()});
        let nsg = self.in_group(location, "Microsoft.Network/networkSecurityGroups", NSG);
        let (h, _) = self
            .put(
                &nsg,
                NETWORK_API,
                &json!({
                    "location": location,
                    "tags": tags,
                    "properties": {"securityRules": [{
                        "name": "ssh",
                        "properties": {
                            "protocol": "Tcp",
                            "sourcePortRange": "*",
                            "destinationPortRange": "22",
                            "sourceAddressPrefix": "*",
                            "destinationAddressPrefix": "*",
                            "access": "Allow",
                            "priority": 1000,
                            "direction": "Inbound",
                        },
                    }]},
                }),
            )
            .await?;
        self.follow(&format!("PUT {nsg}"), &h, SETUP_WAIT).await?;
        let vnet = self.in_group(location, "Microsoft.Network/virtualNetworks", VNET);
        let (h, _) = self
            .put(
                &vnet,
                NETWORK_API,
                &json!({
                    "location": location,
                    "tags": tags,
                    "properties": {
                        "addressSpace": {"addressPrefixes": ["10.80.0.0/16"]},
                        "subnets": [{
                            "name": SUBNET,
                            "properties": {
                                "addressPrefix": "10.80.0.0/20",
                                "networkSecurityGroup": {"id": nsg},
                            },
                        }],
                    },
                }),
            )
            .await?;
        self.follow(&format!("PUT {vnet}"), &h, SETUP_WAIT).await?;
        let subnet = format!("{vnet}/subnets/{SUBNET}");
        self.networks
            .lock()
            .expect("poisoned")
            .insert(location.to_string(), subnet.clone());
        Ok(subnet)
    }

    /// The Resource SKUs of `location` that are GPU virtual machines.
    async fn location_skus(&self, location: &str) -> Result<Vec<Sku>, ProviderError> {
        let filter: String =
            form_urlencoded::byte_serialize(format!("location eq '{location}'").as_bytes())
                .collect();
        let all: Vec<Sku> = self
            .list(
                &format!(
                    "{}/providers/Microsoft.Compute/skus?$filter={filter}",
                    self.sub()
                ),
                SKUS_API,
            )
            .await?;
        Ok(all
            .into_iter()
            .filter(|s| s.resource_type == "virtualMachines" && capability(s, "GPUs") > 0)
            .collect())
    }

    /// Prices from the Retail Prices API, for `sizes` in `locations`;
    /// `None` when it cannot be reached (the shipped table serves then).
    async fn fetch_prices(&self, sizes: &[String]) -> Option<PriceBook> {
        {
            let slot = self.prices.lock().await;
            if let Some((at, book)) = slot.as_ref() {
                if at.elapsed() < Duration::from_secs(3600) {
                    return Some(book.clone());
                }
            }
        }
        if sizes.is_empty() {
            return Some(PriceBook::new());
        }
        let mut book = PriceBook::new();
        for location in &self.cfg.locations {
            let names: Vec<String> = sizes
                .iter()
                .map(|s| format!("armSkuName eq '{s}'"))
                .collect();
            let filter = format!(
                "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq '{location}' and ({})",
                names.join(" or ")
            );
            let mut url = format!(
                "{}/api/retail/prices?api-version={PRICES_API}&$filter={}",
                self.cfg.prices_url.trim_end_matches('/'),
                form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
            );
            for _ in 0..50 {
                let got = self
                    .http
                    .send(|| self.http.client.get(&url))
                    .await
                    .ok()
                    .filter(|(s, _)| s.is_success())
                    .and_then(|(_, text)| serde_json::from_str::<PricePage>(&text).ok());
                let Some(page) = got else {
                    tracing::warn!(cloud = CLOUD, "the Azure Retail Prices API could not be read; using the shipped price table");
                    return None;
                };
                for i in page.items {
                    if i.kind != "Consumption"
                        || i.product_name.contains("Windows")
                        || i.sku_name.contains("Low Priority")
                        || !i.unit_of_measure.contains("Hour")
                    {
                        continue;
                    }
                    let e = book
                        .entry((i.arm_sku_name.clone(), i.arm_region_name.clone()))
                        .or_default();
                    if i.sku_name.ends_with(" Spot") {
                        e.1 = Some(cents(i.retail_price));
                    } else {
                        e.0 = Some(cents(i.retail_price));
                    }
                }
                match page.next_page_link.filter(|n| !n.is_empty()) {
                    Some(n) => url = n,
                    None => break,
                }
            }
        }
        *self.prices.lock().await = Some((Instant::now(), book.clone()));
        Some(book)
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>, ProviderError> {
        // size → (sku of the first location listing it, per-location places)
        let mut shapes: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        let mut sizes: HashMap<String, SizeInfo> = HashMap::new();
        for location in &self.cfg.locations {
            for sku in self.location_skus(location).await? {
                if FRACTIONAL.contains(&sku.name.as_str()) {
                    continue;
                }
                if series_gpu(&sku.name).is_none() {
                    gpus::unmapped(CLOUD, &sku.name);
                    continue;
                }
                shapes.entry(sku.name.clone()).or_insert((
                    capability(&sku, "GPUs"),
                    capability(&sku, "vCPUs"),
                    capability(&sku, "MemoryGB"),
                ));
                let info = sizes.entry(sku.name.clone()).or_default();
                info.family = sku.family.clone();
                if let Some(p) = placement(&sku, location) {
                    info.places.insert(location.clone(), p);
                }
            }
        }
        let names: Vec<String> = shapes.keys().cloned().collect();
        let book = self.fetch_prices(&names).await;
        let mut out = Vec::new();
        for (size, (n, vcpus, memory)) in shapes {
            let Some(gpu) = series_gpu(&size) else {
                continue;
            };
            let info = &sizes[&size];
            let price = |loc: &str| -> (Option<i64>, Option<i64>) {
                match &book {
                    Some(b) => b
                        .get(&(size.clone(), loc.to_string()))
                        .cloned()
                        .unwrap_or_default(),
                    None => (table_price(&size), None),
                }
            };
            let regions: Vec<RegionOffer> = self
                .cfg
                .locations
                .iter()
                .filter_map(|loc| {
                    let p = info.places.get(loc)?;
                    Some(RegionOffer {
                        region: loc.clone(),
                        display_name: loc.clone(),
                        capacity: Capacity::Available(p.allowed),
                        spot_price: price(loc).1,
                    })
                })
                .collect();
            // The offer's price: the lowest on-demand price of its
            // locations, else the shipped table's.
            let Some(hourly) = regions
                .iter()
                .filter_map(|r| price(&r.region).0)
                .min()
                .or_else(|| table_price(&size))
            else {
                tracing::warn!(cloud = CLOUD, size, "no price for the size; not offered");
                continue;
            };
            out.push(Offer {
                cloud: CLOUD.to_string(),
                shade_instance_type: shade_type(&gpu, n),
                configuration: configuration(&gpu, n, vcpus, memory, 0, &[OS]),
                hourly_price: hourly,
                deployment_type: "vm".to_string(),
                boot_time: None,
                regions,
                cloud_instance_type: size,
                ssh_user: ADMIN_USER.to_string(),
                ssh_port: 22,
            });
        }
        gpus::unique_names(&mut out, |o| o.cloud_instance_type.clone());
        *self.sizes.lock().expect("poisoned") = sizes;
        Ok(out)
    }

    /// What the catalog knows of `size`, refreshing it once if nothing.
    async fn size_info(&self, size: &str) -> Result<SizeInfo, ProviderError> {
        if let Some(i) = self.sizes.lock().expect("poisoned").get(size) {
            return Ok(i.clone());
        }
        self.offers().await?;
        Ok(self
            .sizes
            .lock()
            .expect("poisoned")
            .get(size)
            .cloned()
            .unwrap_or_default())
    }

    /// The zone of `location` that offers the most served sizes (the
    /// lowest on a tie); `None` where the location has no zones.
    async fn volume_zone(&self, location: &str) -> Result<Option<String>, ProviderError> {
        if self.sizes.lock().expect("poisoned").is_empty() {
            self.offers().await?;
        }
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for info in self.sizes.lock().expect("poisoned").values() {
            if let Some(p) = info.places.get(location).filter(|p| p.allowed) {
                for z in &p.zones {
                    *count.entry(z.clone()).or_default() += 1;
                }
            }
        }
        let most = count.values().copied().max();
        Ok(count
            .into_iter()
            .find(|(_, n)| Some(*n) == most)
            .map(|(z, _)| z))
    }

    /// The VM body of a launch.
    fn vm_body(
        &self,
        req: &LaunchRequest,
        name: &str,
        nic: &str,
        zone: Option<&str>,
    ) -> Result<Value, ProviderError> {
        let parts: Vec<&str> = self.cfg.image.split(':').collect();
        let [publisher, offer, sku, version] = parts[..] else {
            return Err(ProviderError::Permanent(format!(
                "{CLOUD}: the image {:?} is not publisher:offer:sku:version",
                self.cfg.image
            )));
        };
        let mut os = json!({
            "computerName": computer_name(req.instance_id),
            "adminUsername": ADMIN_USER,
            "linuxConfiguration": {"disablePasswordAuthentication": true},
        });
        if let Some(k) = &req.ssh_public_key {
            os["linuxConfiguration"]["ssh"] = json!({"publicKeys": [{
                "path": format!("/home/{ADMIN_USER}/.ssh/authorized_keys"),
                "keyData": k.trim(),
            }]});
        }
        if let Some(data) = custom_data(req)? {
            os["customData"] = json!(data);
        }
        let data_disks: Vec<Value> = req
            .volumes
            .iter()
            .enumerate()
            .map(|(lun, v)| {
                json!({
                    "lun": lun,
                    "createOption": "Attach",
                    "managedDisk": {"id": v.cloud_assigned_id},
                    "deleteOption": "Detach",
                })
            })
            .collect();
        let mut props = json!({
            "hardwareProfile": {"vmSize": req.cloud_instance_type},
            "storageProfile": {
                "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": version},
                "osDisk": {
                    "name": format!("{name}-osdisk"),
                    "createOption": "FromImage",
                    "deleteOption": "Delete",
                    "managedDisk": {"storageAccountType": "Premium_LRS"},
                },
                "dataDisks": data_disks,
            },
            "osProfile": os,
            "networkProfile": {"networkInterfaces": [{
                "id": nic,
                "properties": {"primary": true, "deleteOption": "Delete"},
            }]},
        });
        if req.rental_type == RentalType::Spot {
            props["priority"] = json!("Spot");
            props["evictionPolicy"] = json!("Delete");
            props["billingProfile"] = json!({"maxPrice": -1});
        }
        let mut body = json!({
            "location": req.region,
            "tags": self.tags(req.instance_id),
            "properties": props,
        });
        if let Some(z) = zone {
            body["zones"] = json!([z]);
        }
        Ok(body)
    }

    /// Makes the public IP, the NIC and the VM of a launch; answers the
    /// VM's id.
    async fn create(&self, req: &LaunchRequest, name: String) -> Result<String, ProviderError> {
        let location = req.region.as_str();
        let info = self.size_info(&req.cloud_instance_type).await?;
        let place = info.places.get(location).cloned();
        if place.as_ref().is_some_and(|p| !p.allowed) {
            self.offers.clear().await;
            return Err(ProviderError::Capacity(format!(
                "{CLOUD}: {} is not available to this subscription in {location}",
                req.cloud_instance_type
            )));
        }
        let subnet = self.ensure_network(location).await?;
        let ip = self.in_group(
            location,
            "Microsoft.Network/publicIPAddresses",
            &format!("{name}-ip"),
        );
        let nic = self.in_group(
            location,
            "Microsoft.Network/networkInterfaces",
            &format!("{name}-nic"),
        );
        // A zonal managed disk attaches only to a VM of its zone, and a
        // regional one only to a VM without a zone.
        let pinned = req.volumes.iter().find_map(|v| v.zone.clone());
        let zones: Vec<Option<String>> = match (place, pinned) {
            (Some(p), Some(z)) if p.zones.contains(&z) => vec![Some(z)],
            (_, Some(z)) => {
                return Err(ProviderError::Permanent(format!(
                    "{CLOUD}: the volume is in zone {z} of {location}, which does not offer {}",
                    req.cloud_instance_type
                )));
            }
            (Some(p), None) if !p.zones.is_empty() && req.volumes.is_empty() => {
                p.zones.into_iter().map(Some).collect()
            }
            _ => vec![None],
        };
        let vm = self.in_group(location, "Microsoft.Compute/virtualMachines", &name);
        // Zones an earlier call of this launch tried before its VM's
        // delete outlasted the call.
        let mut tried = self
            .retiring
            .lock()
            .expect("poisoned")
            .get(&req.instance_id)
            .cloned()
            .unwrap_or_default();
        let mut refused = Vec::new();
        let untried: Vec<Option<String>> =
            zones.into_iter().filter(|z| !tried.contains(z)).collect();
        for zone in &untried {
            // Made for each zone: deleting a VM Azure could not allocate
            // takes its IP and NIC (deleteOption), and the next zone
            // reuses their names.
            self.put_parts(req, &ip, &nic, &subnet).await?;
            let body = self.vm_body(req, &name, &nic, zone.as_deref())?;
            let refusal = match self.put(&vm, COMPUTE_API, &body).await {
                Ok((headers, text)) => {
                    let made: Vm = parse(CLOUD, &format!("PUT {vm}"), &text)?;
                    // Azure reports an allocation failure as often through
                    // the create's operation as on the PUT: followed for a
                    // while, so that one still moves on to the next zone.
                    match self
                        .follow(&format!("PUT {vm}"), &headers, self.operation_wait)
                        .await
                    {
                        Err(ProviderError::Capacity(why)) => {
                            tried.push(zone.clone());
                            // Kept before the delete, so that a relaunch
                            // after a failed or cut-short call finishes it.
                            self.retiring
                                .lock()
                                .expect("poisoned")
                                .insert(req.instance_id, tried.clone());
                            if !self.retire(&vm, &nic, &ip).await? {
                                return Err(ProviderError::Transient(format!(
                                    "{CLOUD}: {why}; the VM is still being deleted before the next zone is tried"
                                )));
                            }
                            // Only while a delete is pending: a relaunch
                            // that found the next zone's VM would delete it.
                            self.retiring
                                .lock()
                                .expect("poisoned")
                                .remove(&req.instance_id);
                            why
                        }
                        // A quota or other refusal leaves a failed VM,
                        // which the instance's teardown deletes.
                        Err(e @ ProviderError::Permanent(_)) => {
                            self.retiring
                                .lock()
                                .expect("poisoned")
                                .remove(&req.instance_id);
                            return Err(quota_family(e, &info.family, location));
                        }
                        // Done, or still running (or its status unread):
                        // describe follows the VM from here.
                        Ok(()) | Err(ProviderError::Transient(_)) => {
                            self.retiring
                                .lock()
                                .expect("poisoned")
                                .remove(&req.instance_id);
                            return Ok(made.id);
                        }
                    }
                }
                Err(ProviderError::Capacity(why)) => {
                    tried.push(zone.clone());
                    why
                }
                Err(e) => {
                    if matches!(e, ProviderError::Permanent(_)) {
                        self.remove_parts(&nic, &ip).await;
                        self.retiring
                            .lock()
                            .expect("poisoned")
                            .remove(&req.instance_id);
                    }
                    return Err(quota_family(e, &info.family, location));
                }
            };
            tracing::info!(cloud = CLOUD, zone = zone.as_deref().unwrap_or("-"), why = %refusal, "no capacity; trying the next zone");
            refused.push(refusal);
        }
        self.retiring
            .lock()
            .expect("poisoned")
            .remove(&req.instance_id);
        self.remove_parts(&nic, &ip).await;
        self.offers.clear().await;
        Err(ProviderError::Capacity(format!(
            "{CLOUD}: no capacity for {} in {location} ({})",
            req.cloud_instance_type,
            refused.join("; ")
        )))
    }

    /// Puts the public IP and the NIC of a launch.
    async fn put_parts(
        &self,
        req: &LaunchRequest,
        ip: &str,
        nic: &str,
        subnet: &str,
    ) -> Result<(), ProviderError> {
        let location = req.region.as_str();
        let tags = self.tags(req.instance_id);
        self.put(
            ip,
            NETWORK_API,
            &json!({
                "location": location,
                "tags": tags,
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
            }),
        )
        .await?;
        self.put(
            nic,
            NETWORK_API,
            &json!({
                "location": location,
                "tags": tags,
                "properties": {"ipConfigurations": [{
                    "name": "primary",
                    "properties": {
                        "subnet": {"id": subnet},
                        "privateIPAllocationMethod": "Dynamic",
                        "publicIPAddress": {"id": ip, "properties": {"deleteOption": "Delete"}},
                    },
                }]},
            }),
        )
        .await?;
        Ok(())
    }

    /// Deletes a VM Azure could not allocate, which takes its NIC and IP
    /// with it, and waits up to [`RETIRE_WAIT`] for all three to be gone;
    /// whether they are.
    async fn retire(&self, vm: &str, nic: &str, ip: &str) -> Result<bool, ProviderError> {
        self.delete(vm, COMPUTE_API).await?;
        let deadline = Instant::now() + RETIRE_WAIT;
        loop {
            if self.parts_gone(vm, nic, ip).await? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether none of a launch's VM, NIC and IP exists.
    async fn parts_gone(&self, vm: &str, nic: &str, ip: &str) -> Result<bool, ProviderError> {
        for (path, api) in [(vm, COMPUTE_API), (nic, NETWORK_API), (ip, NETWORK_API)] {
            if self.get::<Value>(path, api).await?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes a failed launch's NIC and IP, best effort: what is left
    /// is the sweep's.
    async fn remove_parts(&self, nic: &str, ip: &str) {
        for path in [nic, ip] {
            if let Err(e) = self.delete(path, NETWORK_API).await {
                tracing::warn!(cloud = CLOUD, resource = path, error = %e, "could not delete a failed launch's resource; the sweep will");
            }
        }
    }

    /// The NICs, public IPs and OS disks of this deployment's machines, by
    /// instance id.
    async fn parts(&self) -> Result<Vec<(Uuid, Resource, &'static str)>, ProviderError> {
        let mut out = Vec::new();
        for (suffix, kind) in PARTS {
            let all: Vec<Resource> = self
                .list(&format!("{}/providers/{kind}", self.sub()), api_of(kind))
                .await?;
            for r in all {
                let Some(id) = r
                    .name
                    .strip_suffix(suffix)
                    .and_then(|n| self.known.marker().ours(n))
                else {
                    continue;
                };
                out.push((id, r, *kind));
            }
        }
        Ok(out)
    }

    async fn instance_view(&self, vm: &Vm) -> Result<InstanceView, ProviderError> {
        Ok(self
            .get(&format!("{}/instanceView", vm.id), COMPUTE_API)
            .await?
            .unwrap_or_default())
    }

    async fn public_ip(&self, vm: &Vm) -> Result<Option<String>, ProviderError> {
        let Some((group, _)) = vm.id.split_once("/providers/") else {
            return Ok(None);
        };
        let path = format!(
            "{group}/providers/Microsoft.Network/publicIPAddresses/{}-ip",
            vm.name
        );
        let ip: Option<PublicIp> = self.get(&path, NETWORK_API).await?;
        Ok(ip
            .and_then(|i| i.properties.ip_address)
            .filter(|a| !a.is_empty()))
    }
}

/// How long a token is kept: until a minute before it expires, from
/// `expires_in` (seconds; a string from the metadata service) or else
/// `expires_on` (epoch seconds, all App Service gives), `now` being epoch
/// seconds; an hour where it says neither.
fn token_life(t: &Token, now: u64) -> Duration {
    let seconds = |v: &Option<Value>| match v {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let left = seconds(&t.expires_in)
        .or_else(|| seconds(&t.expires_on).map(|on| on.saturating_sub(now)))
        .unwrap_or(3600);
    Duration::from_secs(left.saturating_sub(60).max(1))
}

/// A 16-character Linux host name of the instance (Azure allows 64; a
/// short one reads better in prompts).
fn computer_name(id: Uuid) -> String {
    format!("parasol-{}", &id.simple().to_string()[..8])
}

/// The customData: [`super::first_boot_script`] (which cloud-init runs as
/// it stands, being a `#!` script), base64. It runs as `ubuntu`, the admin
/// user Parasol gives every VM.
fn custom_data(req: &LaunchRequest) -> Result<Option<String>, ProviderError> {
    use base64::Engine;
    Ok(super::first_boot_script(req, ADMIN_USER)?
        .map(|text| base64::engine::general_purpose::STANDARD.encode(text)))
}

/// A capability's whole number (`"MemoryGB": "880"`, `"1.5"` rounds down).
fn capability(sku: &Sku, name: &str) -> i64 {
    sku.capabilities
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.value.parse::<f64>().ok())
        .map_or(0, |v| v.floor() as i64)
}

/// Where in `location` the subscription may launch `sku`: not at all
/// when a `Location` restriction covers it; its zones less those a `Zone`
/// restriction names.
fn placement(sku: &Sku, location: &str) -> Option<Placement> {
    let same = |l: &str| l.eq_ignore_ascii_case(location);
    if !sku.locations.iter().any(|l| same(l)) {
        return None;
    }
    let mut zones: Vec<String> = sku
        .location_info
        .iter()
        .filter(|i| same(&i.location))
        .flat_map(|i| i.zones.clone())
        .collect();
    zones.sort();
    let mut allowed = true;
    for r in &sku.restrictions {
        let info = r.restriction_info.as_ref();
        match r.kind.as_str() {
            "Location" => {
                let covers = r.values.iter().any(|v| same(v))
                    || info.is_some_and(|i| i.locations.iter().any(|l| same(l)));
                if covers {
                    allowed = false;
                }
            }
            "Zone" => {
                let here = r.values.iter().any(|v| same(v))
                    || info.is_some_and(|i| i.locations.iter().any(|l| same(l)));
                if here {
                    if let Some(i) = info {
                        zones.retain(|z| !i.zones.contains(z));
                    }
                }
            }
            _ => {}
        }
    }
    // Every zone refused is as good as the location refused.
    let had_zones = sku
        .location_info
        .iter()
        .any(|i| same(&i.location) && !i.zones.is_empty());
    if had_zones && zones.is_empty() {
        allowed = false;
    }
    Some(Placement { zones, allowed })
}

fn token_error(body: &str) -> String {
    #[derive(Deserialize)]
    struct E {
        #[serde(default)]
        error: String,
        #[serde(default)]
        error_description: String,
    }
    match serde_json::from_str::<E>(body) {
        Ok(e) if !e.error.is_empty() => {
            // Entra's description carries trace and correlation ids after
            // the first line; the first line says what is wrong.
            let first = e.error_description.lines().next().unwrap_or("").to_string();
            format!("{}: {first}", e.error)
        }
        _ => short(body),
    }
}

fn classify(what: &str, f: &Failure) -> ProviderError {
    match serde_json::from_str::<ErrorBody>(&f.body) {
        Ok(ErrorBody { error }) => classify_code(what, &error.code, &error.message, f.status),
        Err(_) => generic_failure(CLOUD, what, f, &short(&f.body)),
    }
}

/// An ARM error code's meaning.
fn classify_code(what: &str, code: &str, message: &str, status: StatusCode) -> ProviderError {
    let detail = format!("{code}: {}", short(message));
    if CAPACITY_CODES.contains(&code) {
        return ProviderError::Capacity(format!("{CLOUD}: {detail}"));
    }
    let lower = message.to_ascii_lowercase();
    if code == "QuotaExceeded"
        || (code == "OperationNotAllowed" && (lower.contains("quota") || lower.contains("cores")))
    {
        return ProviderError::Permanent(format!("{CLOUD}: quota exceeded ({detail})"));
    }
    // A part still held by one being deleted frees up in a moment.
    if matches!(
        code,
        "RetryableError"
            | "InternalServerError"
            | "AnotherOperationInProgress"
            | "NicInUse"
            | "PublicIPAddressInUse"
            | "InUseNetworkInterfaceCannotBeDeleted"
    ) {
        return ProviderError::Transient(format!("{CLOUD}: {what}: {detail}"));
    }
    generic_failure(
        CLOUD,
        what,
        &Failure {
            status,
            body: String::new(),
        },
        &detail,
    )
}

/// A quota refusal, naming the quota family to raise.
fn quota_family(e: ProviderError, family: &str, location: &str) -> ProviderError {
    match e {
        ProviderError::Permanent(m) if m.contains("quota exceeded") && !family.is_empty() => {
            ProviderError::Permanent(format!(
                "{m}; request more vCPU quota for the {family} family in {location}"
            ))
        }
        other => other,
    }
}

/// Whether an instance view (or the VM's provisioning state) says the VM
/// is being deleted.
fn deleting(vm: &Vm, view: &InstanceView) -> bool {
    vm.properties
        .provisioning_state
        .eq_ignore_ascii_case("Deleting")
        || view
            .statuses
            .iter()
            .any(|s| s.code.eq_ignore_ascii_case("ProvisioningState/deleting"))
}

/// [`MachineState`] of a VM, from its instance view and public address
/// (the table in the module's documentation).
fn state(vm: &Vm, view: &InstanceView, ip: Option<String>) -> MachineState {
    let spot = vm
        .properties
        .priority
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("Spot"));
    if deleting(vm, view) {
        return if spot {
            MachineState::Preempted
        } else {
            MachineState::Terminating
        };
    }
    let codes: Vec<String> = view
        .statuses
        .iter()
        .map(|s| s.code.to_ascii_lowercase())
        .collect();
    if let Some(failed) = codes
        .iter()
        .find_map(|c| c.strip_prefix("provisioningstate/failed"))
    {
        let code = failed.trim_start_matches('/');
        let capacity = CAPACITY_CODES.iter().any(|c| c.eq_ignore_ascii_case(code));
        return MachineState::Failed {
            reason: if capacity {
                format!("insufficient capacity: {CLOUD} could not allocate the machine ({code})")
            } else {
                format!("{CLOUD} failed to provision the machine ({code})")
            },
        };
    }
    let power = codes.iter().find_map(|c| c.strip_prefix("powerstate/"));
    match power {
        Some("running") => match ip {
            Some(ip) => MachineState::Running {
                ip,
                ssh_port: 22,
                ssh_user: ADMIN_USER.to_string(),
                placement: vm.zones.first().map(|z| format!("availability zone {z}")),
            },
            None => MachineState::Booting,
        },
        Some("starting") => MachineState::Booting,
        Some(p) if spot => {
            tracing::info!(cloud = CLOUD, vm = %vm.name, power = p, "spot VM stopped: evicted");
            MachineState::Preempted
        }
        Some(p) => MachineState::Failed {
            reason: format!("{CLOUD} reports the machine {p}, and Parasol never stops one"),
        },
        None if vm
            .properties
            .provisioning_state
            .eq_ignore_ascii_case("Failed") =>
        {
            MachineState::Failed {
                reason: format!("{CLOUD} failed to provision the machine"),
            }
        }
        None => MachineState::Provisioning,
    }
}

impl Machines for Azure {
    type Machine = Vm;

    async fn list_machines(&self) -> Result<Vec<Vm>, ProviderError> {
        self.list(
            &format!("{}/providers/Microsoft.Compute/virtualMachines", self.sub()),
            COMPUTE_API,
        )
        .await
    }

    async fn get_machine(&self, id: &str) -> Result<Option<Vm>, ProviderError> {
        self.get(id, COMPUTE_API).await
    }

    fn cloud_id(m: &Vm) -> String {
        m.id.clone()
    }

    fn marker_name(m: &Vm) -> Option<&str> {
        Some(&m.name)
    }

    fn torn_down(m: &Vm) -> bool {
        m.properties
            .provisioning_state
            .eq_ignore_ascii_case("Deleting")
    }

    /// Linux VM names hold 64 characters.
    const NAME_LIMIT: usize = 64;
}

/// Premium SSD managed disks: P30's $135.17 a month for 1 TiB, about
/// $0.132 per GB-month (730 hours).
const VOLUMES: VolumeKind = VolumeKind {
    cloud: CLOUD,
    supports_multi_mount: false,
    fixed_size: true,
    price_micros_per_gb_hour: 181,
    min_size_gb: 4,
    max_size_gb: 32_767,
    mount_rule: "an Azure managed disk mounts only on machines in its own location",
};

impl VolumeApi for Azure {
    type Volume = Resource;

    async fn get_volume(&self, id: &str, _region: &str) -> Result<Option<Resource>, ProviderError> {
        self.get(id, DISKS_API).await
    }

    async fn list_volumes(&self, region: Option<&str>) -> Result<Vec<Resource>, ProviderError> {
        let all: Vec<Resource> = self
            .list(
                &format!("{}/providers/Microsoft.Compute/disks", self.sub()),
                DISKS_API,
            )
            .await?;
        Ok(all
            .into_iter()
            .filter(|d| d.tags.contains_key(TAG_VOLUME))
            .filter(|d| region.is_none_or(|r| d.location.eq_ignore_ascii_case(r)))
            .collect())
    }

    /// In the location's zone that offers the most GPU sizes, where it has
    /// zones, so the VMs mounting it have the widest choice.
    async fn make_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        self.ensure_group(&req.region).await?;
        let name = self.known.marker().name(req.volume_id);
        let path = self.in_group(&req.region, "Microsoft.Compute/disks", &name);
        let mut body = json!({
            "location": req.region,
            "tags": {TAG_VOLUME: req.volume_id.to_string(), TAG_DEPLOYMENT: self.deployment()},
            "sku": {"name": "Premium_LRS"},
            "properties": {
                "creationData": {"createOption": "Empty"},
                "diskSizeGB": req.size_in_gb,
            },
        });
        if let Some(z) = self.volume_zone(&req.region).await? {
            body["zones"] = json!([z]);
        }
        self.put(&path, DISKS_API, &body).await?;
        Ok(VolumeState::Creating {
            cloud_assigned_id: path,
        })
    }

    async fn remove_volume(&self, v: &Resource) -> Result<VolumeState, ProviderError> {
        self.delete(&v.id, DISKS_API).await?;
        Ok(VolumeState::Deleting)
    }

    fn marked(&self, v: &Resource) -> Option<Uuid> {
        if v.tags.get(TAG_DEPLOYMENT) != Some(&self.deployment()) {
            return None;
        }
        self.known.marker().ours(&v.name)
    }

    fn place(&self, v: &Resource) -> (String, String) {
        (v.id.clone(), v.location.clone())
    }

    fn state(&self, v: &Resource) -> VolumeState {
        match v.properties.provisioning_state.as_str() {
            "Succeeded" => VolumeState::Available {
                cloud_assigned_id: v.id.clone(),
                zone: v.zones.first().cloned(),
            },
            "Deleting" => VolumeState::Deleting,
            "Failed" => VolumeState::Failed {
                reason: format!("{CLOUD} failed to make the managed disk"),
            },
            _ => VolumeState::Creating {
                cloud_assigned_id: v.id.clone(),
            },
        }
    }
}

#[async_trait]
impl Provider for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        self.offers.get(|| self.fetch_offers()).await
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        // An earlier call left a VM Azure could not allocate being
        // deleted: the names it holds are reused once it is gone.
        if self
            .retiring
            .lock()
            .expect("poisoned")
            .contains_key(&req.instance_id)
        {
            let mut name = self.known.marker().name(req.instance_id);
            if name.len() > <Self as Machines>::NAME_LIMIT {
                name = self.known.marker().short_name(req.instance_id);
            }
            let at = |kind: &str, n: &str| self.in_group(&req.region, kind, n);
            let gone = self
                .parts_gone(
                    &at("Microsoft.Compute/virtualMachines", &name),
                    &at(
                        "Microsoft.Network/networkInterfaces",
                        &format!("{name}-nic"),
                    ),
                    &at("Microsoft.Network/publicIPAddresses", &format!("{name}-ip")),
                )
                .await?;
            if !gone {
                // Asked again: the call that first asked may have ended
                // before Azure took the delete.
                self.delete(&at("Microsoft.Compute/virtualMachines", &name), COMPUTE_API)
                    .await?;
                return Err(ProviderError::Transient(format!(
                    "{CLOUD}: the VM Azure could not allocate is still being deleted"
                )));
            }
        }
        self.known
            .launch(self, req.instance_id, |name| self.create(req, name))
            .await
    }

    async fn describe(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        let Some(vm) = self.known.find(self, id).await? else {
            return Ok(MachineState::Gone);
        };
        let view = self.instance_view(&vm).await?;
        if deleting(&vm, &view) {
            return Ok(state(&vm, &view, None));
        }
        let ip = self.public_ip(&vm).await?;
        Ok(state(&vm, &view, ip))
    }

    async fn restart(&self, id: Uuid) -> Result<(), ProviderError> {
        let Some(vm) = self.known.find(self, id).await? else {
            return Err(ProviderError::Permanent(
                "Azure has no machine for this instance".into(),
            ));
        };
        let path = format!("{}/restart", vm.id);
        let (status, _, text) = self.arm(Method::POST, &path, COMPUTE_API, None).await?;
        if !status.is_success() {
            return Err(classify(
                &format!("POST {path}"),
                &Failure { status, body: text },
            ));
        }
        Ok(())
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        if let Some(vm) = self.known.find(self, id).await? {
            if !Self::torn_down(&vm) {
                self.delete(&vm.id, COMPUTE_API).await?;
            }
            return Ok(MachineState::Terminating);
        }
        // The VM is gone; so must be whatever of it deleteOption did not
        // take (a launch that crashed before the VM, or a part made
        // without it).
        let left: Vec<(Uuid, Resource, &'static str)> = self
            .parts()
            .await?
            .into_iter()
            .filter(|(i, _, _)| *i == id)
            .collect();
        if left.is_empty() {
            return Ok(MachineState::Gone);
        }
        // The NIC first: Azure keeps an IP that a NIC still holds.
        for (_, r, kind) in &left {
            if !r
                .properties
                .provisioning_state
                .eq_ignore_ascii_case("Deleting")
            {
                self.delete(&r.id, api_of(kind)).await?;
            }
        }
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

    /// The live VMs under this deployment's marker, and the machines whose
    /// NIC, public IP or OS disk outlived their VM.
    async fn list_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        let mut ids = self.known.marked(self).await?;
        let vms: HashSet<Uuid> = self
            .list_machines()
            .await?
            .iter()
            .filter_map(|m| self.known.marker().ours(&m.name))
            .collect();
        for (id, r, _) in self.parts().await? {
            let going = r
                .properties
                .provisioning_state
                .eq_ignore_ascii_case("Deleting");
            if !vms.contains(&id) && !going && !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    async fn list_legacy_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        self.known.legacy_marked(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(json: Value) -> Sku {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn restrictions_take_locations_and_zones_away() {
        let s = sku(json!({
            "resourceType": "virtualMachines", "name": "Standard_NC24ads_A100_v4",
            "locations": ["eastus"],
            "locationInfo": [{"location": "eastus", "zones": ["3", "1", "2"]}],
            "restrictions": [{"type": "Zone", "values": ["eastus"],
                "restrictionInfo": {"locations": ["eastus"], "zones": ["2"]},
                "reasonCode": "NotAvailableForSubscription"}],
        }));
        let p = placement(&s, "eastus").unwrap();
        assert_eq!(p.zones, ["1", "3"]);
        assert!(p.allowed);
        assert!(placement(&s, "westus2").is_none());
        let s = sku(json!({
            "resourceType": "virtualMachines", "name": "x", "locations": ["eastus"],
            "restrictions": [{"type": "Location", "values": ["eastus"],
                "restrictionInfo": {"locations": ["eastus"]}}],
        }));
        assert!(!placement(&s, "eastus").unwrap().allowed);
    }

    #[test]
    fn a_token_is_kept_until_a_minute_before_it_expires() {
        let tok = |v: Value| -> Token { serde_json::from_value(v).unwrap() };
        let now = 1_900_000_000;
        assert_eq!(
            token_life(&tok(json!({"access_token": "a", "expires_in": 3599})), now),
            Duration::from_secs(3539)
        );
        assert_eq!(
            token_life(
                &tok(json!({"access_token": "a", "expires_in": "86399"})),
                now
            ),
            Duration::from_secs(86339)
        );
        // App Service: only expires_on.
        assert_eq!(
            token_life(
                &tok(json!({"access_token": "a", "expires_on": (now + 600).to_string()})),
                now
            ),
            Duration::from_secs(540)
        );
        assert_eq!(
            token_life(&tok(json!({"access_token": "a", "expires_on": "1"})), now),
            Duration::from_secs(1)
        );
        assert_eq!(
            token_life(&tok(json!({"access_token": "a"})), now),
            Duration::from_secs(3540)
        );
    }

    #[test]
    fn instance_views_map_onto_machine_states() {
        let vm = |priority: Option<&str>, prov: &str| Vm {
            id: "/x".into(),
            name: "n".into(),
            zones: vec!["2".into()],
            properties: VmProperties {
                provisioning_state: prov.into(),
                priority: priority.map(str::to_string),
            },
        };
        let view = |codes: &[&str]| InstanceView {
            statuses: codes
                .iter()
                .map(|c| Status {
                    code: c.to_string(),
                })
                .collect(),
        };
        let ip = || Some("203.0.113.9".to_string());
        assert_eq!(
            state(
                &vm(None, "Creating"),
                &view(&["ProvisioningState/creating"]),
                None
            ),
            MachineState::Provisioning
        );
        assert_eq!(
            state(
                &vm(None, "Creating"),
                &view(&["ProvisioningState/creating", "PowerState/starting"]),
                ip()
            ),
            MachineState::Booting
        );
        assert_eq!(
            state(
                &vm(None, "Succeeded"),
                &view(&["ProvisioningState/succeeded", "PowerState/running"]),
                None
            ),
            MachineState::Booting
        );
        assert!(matches!(
            state(&vm(None, "Succeeded"), &view(&["ProvisioningState/succeeded", "PowerState/running"]), ip()),
            MachineState::Running { placement: Some(ref p), .. } if p == "availability zone 2"
        ));
        assert_eq!(
            state(&vm(None, "Deleting"), &view(&[]), None),
            MachineState::Terminating
        );
        assert_eq!(
            state(&vm(Some("Spot"), "Deleting"), &view(&[]), None),
            MachineState::Preempted
        );
        assert_eq!(
            state(
                &vm(Some("Spot"), "Succeeded"),
                &view(&["PowerState/deallocated"]),
                None
            ),
            MachineState::Preempted
        );
        assert!(matches!(
            state(
                &vm(None, "Succeeded"),
                &view(&["PowerState/deallocated"]),
                None
            ),
            MachineState::Failed { .. }
        ));
        let MachineState::Failed { reason } = state(
            &vm(None, "Failed"),
            &view(&["ProvisioningState/failed/ZonalAllocationFailed"]),
            None,
        ) else {
            panic!()
        };
        assert!(reason.starts_with("insufficient capacity"), "{reason}");
    }

    #[test]
    fn arm_errors_are_capacity_quota_or_transient() {
        let f = |status: u16, code: &str, msg: &str| Failure {
            status: StatusCode::from_u16(status).unwrap(),
            body: json!({"error": {"code": code, "message": msg}}).to_string(),
        };
        for code in CAPACITY_CODES {
            assert!(matches!(
                classify("PUT x", &f(409, code, "no")),
                ProviderError::Capacity(_)
            ));
        }
        let q = quota_family(
            classify(
                "PUT x",
                &f(409, "OperationNotAllowed", "exceeding approved Cores quota"),
            ),
            "StandardNCADSA100v4Family",
            "eastus",
        );
        assert!(
            matches!(&q, ProviderError::Permanent(m) if m.contains("StandardNCADSA100v4Family")),
            "{q:?}"
        );
        assert!(matches!(
            classify("GET x", &f(503, "ServerBusy", "")),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            classify("GET x", &f(401, "InvalidAuthenticationToken", "")),
            ProviderError::Permanent(_)
        ));
    }

    #[test]
    fn fractional_sizes_are_not_a_series_gpu_count() {
        assert!(FRACTIONAL.iter().all(|s| series_gpu(s).is_some()));
        assert_eq!(
            series_gpu("Standard_ND96isr_H100_v5").unwrap().shade,
            "H100_sxm5"
        );
        assert_eq!(
            series_gpu("Standard_NC40ads_H100_v5").unwrap().shade,
            "H100"
        );
        assert_eq!(
            series_gpu("Standard_ND96isr_MI300X_v5")
                .unwrap()
                .manufacturer,
            AMD
        );
        assert!(series_gpu("Standard_NV12s_v3").is_none());
        assert!(PRICES.iter().all(|(s, _)| series_gpu(s).is_some()));
    }
}
