//! The catalog: instance types, their configuration and availability.

use serde::{Deserialize, Serialize};

/// How an instance is rented.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RentalType {
    #[default]
    OnDemand,
    Spot,
    /// Only ever reported, never requested.
    Commitment,
}

impl RentalType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RentalType::OnDemand => "on_demand",
            RentalType::Spot => "spot",
            RentalType::Commitment => "commitment",
        }
    }
}

/// Hardware of an instance type, as `/instances/types` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceTypeConfiguration {
    pub memory_in_gb: i64,
    pub storage_in_gb: i64,
    pub vcpus: i64,
    pub num_gpus: i64,
    pub gpu_type: String,
    pub interconnect: String,
    #[serde(default)]
    pub nvlink: bool,
    pub vram_per_gpu_in_gb: i64,
    pub os_options: Vec<String>,
    pub gpu_manufacturer: String,
}

/// Estimated boot time range of an instance type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootTime {
    pub min_boot_in_sec: i64,
    pub max_boot_in_sec: i64,
}

/// One region's availability of an instance type for one rental type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Availability {
    pub region: String,
    pub available: bool,
    pub display_name: String,
    pub rental_type: RentalType,
    /// Spot entries only: the spot price as a dollar string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_price: Option<String>,
}

/// One entry of `/instances/types`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceType {
    pub cloud: String,
    pub shade_instance_type: String,
    pub cloud_instance_type: String,
    pub configuration: InstanceTypeConfiguration,
    /// On-demand price in cents per hour.
    pub hourly_price: i64,
    pub deployment_type: String,
    pub availability: Vec<Availability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<BootTime>,
}

/// Body of `GET /instances/types`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceTypesResponse {
    pub instance_types: Vec<InstanceType>,
}

/// Query filters of `GET /instances/types`; all optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceTypesQuery {
    pub cloud: Option<String>,
    pub region: Option<String>,
    /// A string in the spec; Parasol requires it to be a whole number.
    pub num_gpus: Option<String>,
    pub gpu_type: Option<String>,
    pub shade_instance_type: Option<String>,
    /// `true` or `false`.
    pub available: Option<String>,
    /// Only `price` is defined.
    pub sort: Option<String>,
}
