//! Providers: where machines come from.
//!
//! One [`Provider`] trait, one module per provider. A provider lists what it
//! offers, and launches, describes, restarts and terminates machines. Every
//! call names the machine by Parasol's own instance id, chosen before the
//! first call, so a retried launch never rents a second machine and a
//! terminate can be repeated until the provider says the machine is gone.
//! The API never sees a provider's own statuses: each adapter maps them onto
//! [`MachineState`], which the reconciler maps onto the seven API states.
//!
//! A provider that sells storage also makes, describes and deletes volumes
//! ([`Provider::create_volume`] and the rest), named by Parasol's volume
//! id the same way, and attaches them at launch ([`LaunchRequest::volumes`]);
//! the defaults are for providers that sell none.

pub mod catalog;
pub mod clouds;
pub mod hosts;
pub mod sim;
pub mod sweep;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parasol_api::{BootTime, Env, InstanceTypeConfiguration, LaunchConfiguration, RentalType};
use uuid::Uuid;

/// How much of an offer a region has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// The provider states a number of machines (the sim, hosts).
    Slots(i64),
    /// The provider only says yes or no (most clouds).
    Available(bool),
}

impl Capacity {
    /// The number of machines, where the provider states one.
    pub fn slots(self) -> Option<i64> {
        match self {
            Capacity::Slots(n) => Some(n),
            Capacity::Available(_) => None,
        }
    }
}

/// One region in which an offer can be launched.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionOffer {
    pub region: String,
    pub display_name: String,
    pub capacity: Capacity,
    /// Spot price in cents per hour, where spot is offered.
    pub spot_price: Option<i64>,
}

/// An instance type a provider offers, with its regions.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub cloud: String,
    pub shade_instance_type: String,
    pub cloud_instance_type: String,
    pub configuration: InstanceTypeConfiguration,
    /// On-demand cents per hour.
    pub hourly_price: i64,
    pub deployment_type: String,
    pub boot_time: Option<BootTime>,
    pub regions: Vec<RegionOffer>,
    pub ssh_user: String,
    pub ssh_port: i64,
}

/// A multi-node shape a provider sells: nodes of one instance type, in
/// counts it supports, in regions with an interconnect between them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterOffer {
    pub cloud: String,
    /// The node type; an [`Offer`] of the same cloud describes it.
    pub shade_instance_type: String,
    /// Node counts that can be ordered.
    pub node_counts: Vec<i64>,
    /// Regions, with their capacity counted in nodes.
    pub regions: Vec<RegionOffer>,
}

/// A kind of storage volume a provider sells in a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeOffer {
    pub cloud: String,
    pub region: String,
    pub supports_multi_mount: bool,
    pub fixed_size: bool,
    /// Millionths of a dollar per GB-hour.
    pub price_micros_per_gb_hour: i64,
    pub min_size_gb: i64,
    pub max_size_gb: i64,
    /// Where a volume of this kind mounts, in the cloud's terms, for the
    /// error that refuses a mount elsewhere.
    pub mount_rule: String,
}

/// Everything a provider needs to launch one machine.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    /// Parasol's id: the idempotency key of every call about this machine.
    pub instance_id: Uuid,
    pub name: String,
    pub cloud: String,
    pub region: String,
    pub shade_instance_type: String,
    pub cloud_instance_type: String,
    pub os: String,
    pub rental_type: RentalType,
    pub ssh_public_key: Option<String>,
    pub launch_configuration: Option<LaunchConfiguration>,
    pub envs: Vec<Env>,
    /// Set for the nodes of a cluster: they come from the provider's
    /// cluster capacity, not its single-machine capacity.
    pub cluster_id: Option<Uuid>,
    /// The volumes the instance mounts, each already made at the cloud: the
    /// adapter attaches them at launch (or, where the cloud cannot, once the
    /// machine runs) and places the machine where they are.
    pub volumes: Vec<LaunchVolume>,
    /// How the machine's agent reports to Parasol: the adapter starts it
    /// at first boot (hosts: over SSH). `None` only where the deployment
    /// has agents turned off.
    pub agent: Option<crate::agent::AgentBootstrap>,
}

/// A volume an instance mounts, as a launch sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchVolume {
    pub id: Uuid,
    pub size_in_gb: i64,
    /// The cloud's id of the volume.
    pub cloud_assigned_id: String,
    /// Where inside the region the volume lives, for clouds whose volumes
    /// mount only there (an AWS availability zone).
    pub zone: Option<String>,
}

/// Everything a provider needs to make one storage volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRequest {
    /// Parasol's id: the idempotency key of every call about this volume.
    pub volume_id: Uuid,
    pub name: String,
    pub cloud: String,
    pub region: String,
    pub size_in_gb: i64,
}

/// A volume as Parasol knows it when asking about it: its id, where it
/// is, and the cloud's id once a create has answered. A call without the
/// cloud's id finds the volume by its marker name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRef {
    pub volume_id: Uuid,
    pub region: String,
    pub cloud_assigned_id: Option<String>,
}

/// Where a volume is, in provider-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeState {
    /// Accepted; not usable yet.
    Creating { cloud_assigned_id: String },
    /// Usable: an instance may mount it.
    Available {
        cloud_assigned_id: String,
        /// See [`LaunchVolume::zone`].
        zone: Option<String>,
    },
    /// The cloud gave up on it; the reason is for the user.
    Failed { reason: String },
    /// Being deleted.
    Deleting,
    /// No volume exists (never made, or fully deleted).
    Gone,
}

/// A provider's answer to a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub cloud_assigned_id: String,
}

/// Where a machine is, in provider-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineState {
    /// Accepted; not booted.
    Provisioning,
    /// Booted; not reachable yet.
    Booting,
    /// Reachable.
    Running {
        ip: String,
        ssh_port: i64,
        ssh_user: String,
        /// Where in the region the machine landed, where the provider
        /// chooses that (AWS: "availability zone us-east-1b"); the
        /// instance's `status_details` while it is active.
        placement: Option<String>,
    },
    /// Broke; the reason is for the user.
    Failed { reason: String },
    /// Reclaimed by the provider (spot).
    Preempted,
    /// Being torn down.
    Terminating,
    /// No machine exists (never launched, or fully terminated).
    Gone,
}

/// Why a provider call failed, split by what the reconciler does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No capacity for the type in the region: the instance ends in `error`.
    #[error("insufficient capacity: {0}")]
    Capacity(String),
    /// Worth retrying later (timeouts, 5xx, rate limits).
    #[error("transient provider error: {0}")]
    Transient(String),
    /// Retrying will not help: the instance ends in `error`.
    #[error("provider refused: {0}")]
    Permanent(String),
}

/// A source of machines.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Short name for logs and metrics (`sim`, `hosts`, `lambda`, ...).
    fn name(&self) -> &'static str;

    /// Everything this provider offers now.
    async fn offers(&self) -> Result<Vec<Offer>, ProviderError>;

    /// The multi-node shapes this provider sells; most sell none.
    async fn cluster_offers(&self) -> Result<Vec<ClusterOffer>, ProviderError> {
        Ok(Vec::new())
    }

    /// The storage volumes this provider sells; most adapters sell none yet.
    async fn volume_offers(&self) -> Result<Vec<VolumeOffer>, ProviderError> {
        Ok(Vec::new())
    }

    /// Launches the machine for `req.instance_id`, or returns the one already
    /// launched for it.
    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError>;

    /// Where the machine of `instance_id` is.
    async fn describe(&self, instance_id: Uuid) -> Result<MachineState, ProviderError>;

    /// Restarts a running machine.
    async fn restart(&self, instance_id: Uuid) -> Result<(), ProviderError>;

    /// Starts or continues tearing down; returns [`MachineState::Gone`] once
    /// nothing is left. Safe to call for a machine that never existed.
    async fn terminate(&self, instance_id: Uuid) -> Result<MachineState, ProviderError>;

    /// Instance ids of the machines this provider holds under Parasol's
    /// marker and is not already tearing down, for the orphan sweep. A
    /// provider that keeps no machines outside the store lists none.
    async fn list_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        Ok(Vec::new())
    }

    /// Makes the volume for `req.volume_id`, or answers the one already made
    /// for it (found by its marker name), so a retried create never makes a
    /// second. A provider that sells no volumes refuses.
    async fn create_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        let _ = req;
        Err(ProviderError::Permanent(format!(
            "{} sells no storage volumes",
            self.name()
        )))
    }

    /// Where the volume is.
    async fn describe_volume(&self, v: &VolumeRef) -> Result<VolumeState, ProviderError> {
        let _ = v;
        Ok(VolumeState::Gone)
    }

    /// Starts or continues deleting the volume; returns
    /// [`VolumeState::Gone`] once nothing is left. Safe to call for a
    /// volume that never existed. The volume's machines are gone by then:
    /// Parasol deletes no volume an instance still holds.
    async fn delete_volume(&self, v: &VolumeRef) -> Result<VolumeState, ProviderError> {
        let _ = v;
        Ok(VolumeState::Gone)
    }

    /// The volumes this provider holds under this deployment's marker, for
    /// the orphan sweep.
    async fn list_marked_volumes(&self) -> Result<Vec<VolumeRef>, ProviderError> {
        Ok(Vec::new())
    }

    /// Instance ids of live machines under the legacy marker, from before
    /// deployments had ids (`parasol-<instance id>`). Any deployment may
    /// have made them, so the sweep terminates one only when this
    /// deployment's store holds its instance, settled.
    async fn list_legacy_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        Ok(Vec::new())
    }
}

/// The configured providers, and which one serves each cloud. A cloud name
/// has exactly one provider: the catalog serves a provider's offers only for
/// the clouds it holds here, and creates go to that provider alone.
#[derive(Clone, Default)]
pub struct Providers {
    all: Vec<Arc<dyn Provider>>,
    by_cloud: HashMap<String, Arc<dyn Provider>>,
}

impl Providers {
    /// Registers a provider for the clouds it serves. A cloud some earlier
    /// provider served is taken from it (a real cloud's adapter over the
    /// sim's simulation of the same name); the displaced pairs of cloud and
    /// provider name are returned so the caller can say so.
    pub fn add(
        &mut self,
        provider: Arc<dyn Provider>,
        clouds: &[String],
    ) -> Vec<(String, &'static str)> {
        let mut displaced = Vec::new();
        for c in clouds {
            if let Some(prev) = self.by_cloud.insert(c.clone(), provider.clone()) {
                if !Arc::ptr_eq(&prev, &provider) {
                    displaced.push((c.clone(), prev.name()));
                }
            }
        }
        self.all.push(provider);
        displaced
    }

    /// The provider serving `cloud`.
    pub fn for_cloud(&self, cloud: &str) -> Option<&Arc<dyn Provider>> {
        self.by_cloud.get(cloud)
    }

    /// Whether `provider` is the one serving `cloud`.
    pub fn serves(&self, provider: &Arc<dyn Provider>, cloud: &str) -> bool {
        self.for_cloud(cloud)
            .is_some_and(|p| Arc::ptr_eq(p, provider))
    }

    /// Every cloud name with the name of the provider serving it, in order.
    pub fn clouds(&self) -> std::collections::BTreeMap<String, &'static str> {
        self.by_cloud
            .iter()
            .map(|(c, p)| (c.clone(), p.name()))
            .collect()
    }

    /// Every provider.
    pub fn all(&self) -> &[Arc<dyn Provider>] {
        &self.all
    }
}
