//! Volumes: `/volumes/*`, storage that outlives instances.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A storage volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Volume {
    pub id: Uuid,
    pub cloud: String,
    pub cloud_assigned_id: String,
    pub region: String,
    pub name: String,
    pub fixed_size: bool,
    pub size_in_gb: i64,
    /// Dollars accrued since creation, such as `"1.25"`.
    pub cost_estimate: String,
    pub supports_multi_mount: bool,
    /// The instance mounting it; empty when none. With multi-mount, the
    /// oldest of them.
    pub mounted_by: String,
    /// Parasol extension: where the volume is at its cloud: `creating`
    /// (being made there; `cloud_assigned_id` is empty until it is),
    /// `available`, or `error` (the cloud refused it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Parasol extension: why the volume is in `error`, in the cloud's
    /// words, or what a call being retried last failed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<String>,
}

/// Body of `GET /volumes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumesResponse {
    pub volumes: Vec<Volume>,
}

/// Body of `POST /volumes/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateVolumeRequest {
    pub cloud: String,
    pub region: String,
    pub size_in_gb: i64,
    pub name: String,
}

/// Answer of `POST /volumes/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateVolumeResponse {
    pub id: Uuid,
}

/// One entry of `/volumes/types`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumeType {
    pub cloud: String,
    pub region: String,
    pub supports_multi_mount: bool,
    pub fixed_size: bool,
    /// Dollars per GB-hour, such as `"0.000137"`.
    pub price_per_gb_per_hour: String,
}

/// Body of `GET /volumes/types`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumesTypesResponse {
    pub volume_types: Vec<VolumeType>,
}
