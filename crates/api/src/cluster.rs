//! Clusters: `/clusters/*`, several nodes rented together in one region.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Instance, InstanceType, Status};

/// A cluster's region, with its human name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterRegionInfo {
    pub region: String,
    pub display_name: String,
}

/// A multi-node cluster as `/clusters` returns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cluster {
    pub id: Uuid,
    pub cloud: String,
    pub name: String,
    pub cloud_cluster_id: Option<String>,
    pub region_info: ClusterRegionInfo,
    /// Follows the nodes: see the lifecycle module.
    pub status: Status,
    pub status_details: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The nodes, as full instance objects.
    pub instances: Vec<Instance>,
    /// Sum of the nodes' prices, cents per hour.
    pub hourly_price: i64,
    /// Accrued cost of all nodes, such as `"$15.00"`.
    pub cost_estimate: Option<String>,
    pub active_at: Option<DateTime<Utc>>,
}

/// Body of `GET /clusters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClustersResponse {
    pub clusters: Vec<Cluster>,
}

/// Whether a cluster shape is available in one region.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterAvailability {
    pub region: String,
    pub display_name: String,
    pub available: bool,
}

/// One entry of `/clusters/types`: a node type, a node count and a region.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterType {
    pub cloud: String,
    pub num_instances: i64,
    pub availability: ClusterAvailability,
    /// The node type.
    pub cluster_type: InstanceType,
}

/// Body of `GET /clusters/types`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterTypesResponse {
    pub cluster_types: Vec<ClusterType>,
}

/// Body of `POST /clusters/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateClusterRequest {
    pub name: String,
    pub cloud: String,
    pub region: String,
    /// The node type's `shade_instance_type`, such as `H100_sxm5x8`.
    pub cluster_type: String,
    pub num_instances: i64,
    /// A string so that a malformed id gets a message naming this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}
