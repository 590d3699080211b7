//! Templates: `/templates/*`, saved launch settings that instance create
//! can start from.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Alert, AutoDelete, Env, LaunchConfiguration, VolumeMount};

/// One firewall rule, in the terms of Ubuntu's `ufw`. Every field is
/// optional on the wire; the server says which are needed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UfwRule {
    /// `allow` or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Source address or CIDR; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ip: Option<String>,
    /// Destination address or CIDR; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ip: Option<String>,
    /// A port (`"80"`) or an inclusive range (`"8000:8999"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// `tcp` or `udp`; absent means both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
}

/// Network settings of a template.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Networking {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ufw_rules: Option<Vec<UfwRule>>,
}

/// A template as `/templates`, `/templates/featured` and
/// `/templates/{id}/info` return it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Template {
    pub id: Uuid,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    #[serde(default)]
    pub public: bool,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<Networking>,
    /// Parasol extension: the idle policy of instances made from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_policy: Option<crate::IdlePolicy>,
    /// Parasol extension: what instances made from it do when unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unhealthy: Option<crate::OnUnhealthy>,
}

/// Body of `GET /templates` and `GET /templates/featured`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplatesResponse {
    pub templates: Vec<Template>,
}

/// Body of `POST /templates/save` and of `POST /templates/{id}/update`,
/// which replaces the whole template with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateSaveRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Readable by every account when true; defaults to private.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_configuration: Option<LaunchConfiguration>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<Networking>,
    /// Parasol extension: the idle policy of instances made from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_policy: Option<crate::IdlePolicy>,
    /// Parasol extension: what instances made from it do when unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unhealthy: Option<crate::OnUnhealthy>,
}

/// Answer of `POST /templates/save`: the new id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateCreateResponse {
    pub id: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_request_needs_only_a_name_and_accepts_null_rule_fields() {
        let r: TemplateSaveRequest = serde_json::from_str(
            r#"{"name":"t","networking":{"ufw_rules":[{"rule":"allow","from_ip":null,"port":"22"}]}}"#,
        )
        .unwrap();
        let rules = r.networking.unwrap().ufw_rules.unwrap();
        assert_eq!(rules[0].from_ip, None);
        assert_eq!(rules[0].port.as_deref(), Some("22"));
        assert_eq!(r.public, None);
    }
}
