//! Launch by requirements: Parasol's extension beside the Shadeform
//! operations. A client says what it needs instead of naming one offer;
//! Parasol picks the cheapest feasible offer across every cloud and moves
//! on when a launch hits a capacity error. The instance or cluster it makes
//! is an ordinary Shadeform object.
//!
//! Unlike the Shadeform request types, these refuse unknown fields: a
//! misspelt requirement would otherwise widen the search silently.

use serde::{Deserialize, Serialize};

use crate::{Alert, AutoDelete, Env, LaunchConfiguration, RentalType};

/// One GPU type, or any of several.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum GpuTypes {
    One(String),
    Any(Vec<String>),
}

impl GpuTypes {
    /// The accepted types.
    pub fn as_slice(&self) -> &[String] {
        match self {
            GpuTypes::One(t) => std::slice::from_ref(t),
            GpuTypes::Any(v) => v,
        }
    }
}

/// Which rental terms a launch accepts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RentalChoice {
    #[default]
    OnDemand,
    Spot,
    /// Spot or on-demand, whichever is cheaper.
    Any,
}

/// What a machine must have and where it may run. Every field is optional,
/// but at least one GPU or CPU constraint must be given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// `"H100"` or `["H100", "H200"]`, as `configuration.gpu_type` names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<GpuTypes>,
    /// GPUs per machine, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_gpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_gpu_memory_gb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_vcpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory_gb: Option<i64>,
    /// Only these clouds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clouds: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_clouds: Option<Vec<String>>,
    /// Only these regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_regions: Option<Vec<String>>,
    /// Cents per hour, per machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hourly_price: Option<i64>,
    /// Default `on_demand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rental_type: Option<RentalChoice>,
}

/// What happens when a spot instance launched by requirements is reclaimed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnPreemption {
    /// It is deleted, as any preempted instance.
    Delete,
    /// A new instance with the same requirements replaces it.
    Relaunch,
}

/// Body of `POST /instances/launch`: the optional fields of
/// `/instances/create`, and requirements instead of an offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    pub requirements: Requirements,
    /// Default: `launch-<first 8 hex digits of the id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_configuration: Option<LaunchConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envs: Option<Vec<Env>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_delete: Option<AutoDelete>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// How long to keep trying when no candidate has capacity (default 0:
    /// refuse at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_capacity_seconds: Option<i64>,
    /// Spot only: what to do when the machine is reclaimed (default
    /// `delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_preemption: Option<OnPreemption>,
    /// What to do when the instance sits idle (as for `/instances/create`).
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::IdlePolicy>))]
    pub idle_policy: Option<Option<crate::IdlePolicy>>,
    /// What to do when its health turns `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unhealthy: Option<crate::OnUnhealthy>,
    /// Answer the candidates in the order they would be tried; make nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Body of `POST /clusters/launch`: a cluster's optional fields, node
/// requirements and a node count. Every node runs in one cloud and region.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClusterLaunchRequest {
    /// What each node must have.
    pub requirements: Requirements,
    pub num_instances: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// One offer a launch may use, in the order it would be tried.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    pub cloud: String,
    pub region: String,
    pub shade_instance_type: String,
    pub rental_type: RentalType,
    /// Cents per hour per machine, at these rental terms.
    pub hourly_price: i64,
    /// Whether the offer has capacity now (and is not cooling down after a
    /// capacity error). Only available candidates are tried.
    pub available: bool,
}

/// Answer of a dry run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CandidatesResponse {
    pub candidates: Vec<Candidate>,
}
