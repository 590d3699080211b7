//! Instances: `/instances/*` requests and responses, and the launch
//! configuration they carry.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{BootTime, RentalType};

/// The seven states every instance (and cluster) moves through.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Parasol's row exists; the provider has not been asked yet.
    Creating,
    /// The provider accepted the launch; the machine is not up.
    PendingProvider,
    /// The machine is up but not yet reachable.
    Pending,
    /// Reachable, with an ip; billing runs.
    Active,
    /// Failed; `status_details` says why. The machine has been released.
    Error,
    /// Being torn down; billing has stopped.
    Deleting,
    /// Gone. Hidden from lists; info answers 404.
    Deleted,
}

impl Status {
    /// Every state, in lifecycle order.
    pub const ALL: [Status; 7] = [
        Status::Creating,
        Status::PendingProvider,
        Status::Pending,
        Status::Active,
        Status::Error,
        Status::Deleting,
        Status::Deleted,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::PendingProvider => "pending_provider",
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Error => "error",
            Status::Deleting => "deleting",
            Status::Deleted => "deleted",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An environment variable. Its value is a secret as far as logs go.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Env {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Env({}=<redacted>)", self.name)
    }
}

/// `-p host:container` for a docker launch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortMappings {
    /// Wider than a port so that out-of-range values reach validation and get
    /// a message naming the field, not a generic type error.
    pub host_port: i64,
    pub container_port: i64,
}

/// `-v host:container` for a docker launch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumeMounts {
    pub host_path: String,
    pub container_path: String,
}

/// Credentials for a private registry; never logged.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistryCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Run a container image once the machine is up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DockerConfiguration {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_memory_in_gb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envs: Option<Vec<Env>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMappings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMounts>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_credentials: Option<RegistryCredentials>,
}

/// Run a base64-encoded script once the machine is up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScriptConfiguration {
    pub base64_script: String,
}

/// Which kind of launch configuration.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LaunchType {
    Docker,
    Script,
}

/// What to run after the instance becomes active.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LaunchConfiguration {
    #[serde(rename = "type")]
    pub kind: LaunchType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_configuration: Option<DockerConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_configuration: Option<ScriptConfiguration>,
}

/// Delete the instance automatically once a date or a spend is reached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoDelete {
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_threshold: Option<String>,
    /// Dollars, such as `"3.14"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_threshold: Option<String>,
}

/// Notify once a date or a spend is reached. Same shape as [`AutoDelete`].
pub type Alert = AutoDelete;

/// Settings for mounting volumes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumeMount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<bool>,
}

/// How the instance is rented.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RentalTerms {
    pub rental_type: RentalType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_price: Option<String>,
    pub ending_at: Option<DateTime<Utc>>,
}

/// A port the provider mapped on its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstancePortMappings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_port: Option<i64>,
}

/// Hardware of a running instance; like the type's, with the chosen `os`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceConfiguration {
    pub memory_in_gb: i64,
    pub storage_in_gb: i64,
    pub vcpus: i64,
    pub num_gpus: i64,
    pub gpu_type: String,
    pub interconnect: String,
    #[serde(default)]
    pub nvlink: bool,
    pub vram_per_gpu_in_gb: i64,
    pub gpu_manufacturer: String,
    pub os: String,
}

impl InstanceConfiguration {
    /// An instance's configuration on a type with configuration `c`,
    /// running `os`.
    pub fn of_type(c: &crate::InstanceTypeConfiguration, os: String) -> Self {
        InstanceConfiguration {
            memory_in_gb: c.memory_in_gb,
            storage_in_gb: c.storage_in_gb,
            vcpus: c.vcpus,
            num_gpus: c.num_gpus,
            gpu_type: c.gpu_type.clone(),
            interconnect: c.interconnect.clone(),
            nvlink: c.nvlink,
            vram_per_gpu_in_gb: c.vram_per_gpu_in_gb,
            gpu_manufacturer: c.gpu_manufacturer.clone(),
            os,
        }
    }
}

/// An instance as `/instances` and `/instances/{id}/info` return it.
///
/// The info response is a superset of the list's `Instance` schema, and the
/// spec allows extra properties, so one type serves both.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    pub id: Uuid,
    pub cloud: String,
    pub region: String,
    pub shade_instance_type: String,
    pub cloud_instance_type: String,
    /// Empty until the provider has assigned an id.
    pub cloud_assigned_id: String,
    pub shade_cloud: bool,
    pub name: String,
    pub configuration: InstanceConfiguration,
    /// `""` until the machine has an address (the contract makes it a
    /// required string).
    #[serde(with = "crate::wire::empty_string")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub ip: Option<String>,
    pub ssh_user: String,
    pub ssh_port: i64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<String>,
    /// Dollars accrued so far, such as `"1.25"`.
    pub cost_estimate: String,
    /// Cents per hour.
    pub hourly_price: i64,
    pub rental_terms: RentalTerms,
    #[serde(default)]
    pub volume_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_configuration: Option<LaunchConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_delete: Option<AutoDelete>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mount: Option<VolumeMount>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub envs: Vec<Env>,
    #[serde(default)]
    pub port_mappings: Vec<InstancePortMappings>,
    /// Omitted until the instance first becomes active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The zero time `0001-01-01T00:00:00Z` until deletion.
    #[serde(with = "crate::wire::zero_time_as_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<BootTime>,
    /// The operating system, as in `configuration.os` (Shadeform's
    /// Terraform provider reads it at the top level).
    #[serde(default)]
    pub os: String,
    /// The template the instance was created from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// Parasol extension: what is done when the instance sits idle (its
    /// own, or the one its account imposes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_policy: Option<crate::IdlePolicy>,
    /// Parasol extension: what is done when its health turns `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unhealthy: Option<crate::OnUnhealthy>,
}

/// Body of `GET /instances`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstancesResponse {
    pub instances: Vec<Instance>,
}

/// Body of `POST /instances/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateRequest {
    pub cloud: String,
    pub region: String,
    pub shade_instance_type: String,
    /// Required by the spec, but real clients omit it; it defaults to true.
    #[serde(default = "default_true")]
    pub shade_cloud: bool,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rental_type: Option<RentalType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_configuration: Option<LaunchConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_ids: Option<Vec<String>>,
    /// A string rather than a uuid so that a malformed id gets a message
    /// naming this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_delete: Option<AutoDelete>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mount: Option<VolumeMount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envs: Option<Vec<Env>>,
    /// Parasol extension: what to do when the instance sits idle. Where
    /// the account has an idle policy, this may only tighten it; absent,
    /// the account's applies, and `null` (removing it) is refused.
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::IdlePolicy>))]
    pub idle_policy: Option<Option<crate::IdlePolicy>>,
    /// Parasol extension: what to do when its health turns `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unhealthy: Option<crate::OnUnhealthy>,
}

fn default_true() -> bool {
    true
}

/// Answer of the create endpoints: the new id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateResponse {
    pub id: Uuid,
    /// The provider's id for the machine, as Shadeform answers beside `id`;
    /// empty here, since the provider is asked after the answer (it
    /// appears in `/instances/{id}/info` once assigned).
    #[serde(default)]
    pub cloud_assigned_id: String,
}

/// Body of `POST /instances/{id}/update`. Each field: absent keeps the
/// current value, `null` removes it, a value replaces it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateRequest {
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_delete: Option<Option<AutoDelete>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub alert: Option<Option<Alert>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub tags: Option<Option<Vec<String>>>,
}

/// The small JSON body of endpoints that only confirm (delete, restart,
/// update, setdefault): real clients expect JSON on every 200.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Confirmation {
    pub id: Uuid,
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_request_tells_null_from_absent() {
        let u: UpdateRequest = serde_json::from_str(r#"{"tags": null, "name": "x"}"#).unwrap();
        assert_eq!(u.tags, Some(None));
        assert_eq!(u.name, Some(Some("x".into())));
        assert_eq!(u.alert, None);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let e = Env {
            name: "HF_TOKEN".into(),
            value: "hf_secret".into(),
        };
        let r = RegistryCredentials {
            username: Some("u".into()),
            password: Some("hunter2".into()),
        };
        let text = format!("{e:?} {r:?}");
        assert!(!text.contains("hf_secret"));
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn create_request_defaults_shade_cloud_and_accepts_null_key() {
        let c: CreateRequest = serde_json::from_str(
            r#"{"cloud":"a","region":"b","shade_instance_type":"c","name":"n","ssh_key_id":null}"#,
        )
        .unwrap();
        assert!(c.shade_cloud);
        assert_eq!(c.ssh_key_id, None);
    }
}
