//! Parasol's own extensions: who the API key belongs to, and the
//! account's API keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Body of `GET /v1/account`: the account the request's key belongs to.
///
/// Not part of the Shadeform API; the CLI's `whoami` shows it, and a
/// script can use it to check a key without side effects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountInfo {
    pub id: Uuid,
    pub name: String,
    /// Whether the key may use the `/admin` extensions.
    pub is_admin: bool,
}

/// What happens when an account's month-to-date spend reaches its
/// `monthly_limit`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// New creates are refused; running instances keep running.
    #[default]
    Block,
    /// New creates are refused and the reconciler deletes the account's
    /// running instances.
    Delete,
}

/// Limits on what an account may spend (Parasol's extension). Every field
/// is optional; dollars are strings like the rest of the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Month-to-date spend (UTC calendar month) at which new creates are
    /// refused, e.g. "500.00".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_limit: Option<String>,
    /// Largest total $/h of the account's live instances, e.g. "40.00".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hourly_spend: Option<String>,
    /// Largest number of GPUs the account's live instances may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gpus: Option<i64>,
    /// Percent of `monthly_limit` (1 to 100) at which one alert per month
    /// is recorded and posted to the alert webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_at_percent: Option<i64>,
    /// What reaching `monthly_limit` does (default `block`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exceed: Option<OnExceed>,
}

/// One account as `GET /v1/admin/accounts` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminAccount {
    pub id: Uuid,
    pub name: String,
    pub admin: bool,
    /// `null`: no budget.
    pub budget: Option<Budget>,
    /// Dollars accrued this UTC month, deleted instances included.
    pub month_to_date_spend: String,
    /// Instances that hold (or may hold) a machine.
    pub live_instances: i64,
    /// Dollars per hour of the live instances.
    pub hourly_spend: String,
    /// The idle policy binding the account's instances, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_policy: Option<crate::IdlePolicy>,
}

/// Body of `GET /v1/admin/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminAccountsResponse {
    pub accounts: Vec<AdminAccount>,
}

/// Body of `POST /v1/admin/accounts/create`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
}

/// Answer of `POST /v1/admin/accounts/create`: the key is shown only here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateAccountResponse {
    pub id: Uuid,
    pub api_key: String,
}

/// Body of `POST /v1/admin/accounts/{id}/update`: an absent field keeps its
/// value; `budget: null` removes the budget.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Budget>))]
    pub budget: Option<Option<Budget>>,
    /// An idle policy binding every instance of the account: a create may
    /// tighten it but not loosen or remove it. `null` removes it.
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::IdlePolicy>))]
    pub idle_policy: Option<Option<crate::IdlePolicy>>,
}

/// One instance's cost within a usage window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageLine {
    pub instance_id: Uuid,
    /// Set in an admin's report of several accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Uuid>,
    pub name: String,
    pub cloud: String,
    pub region: String,
    pub shade_instance_type: String,
    pub rental_type: crate::RentalType,
    /// Dollars per hour it was billed at.
    pub hourly_price: String,
    /// Billed start inside the window.
    pub start: chrono::DateTime<chrono::Utc>,
    /// Billed end inside the window.
    pub end: chrono::DateTime<chrono::Utc>,
    /// Dollars accrued from `start` to `end`.
    pub cost: String,
}

/// One account's total in an admin's usage report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountUsage {
    pub account_id: Uuid,
    pub name: String,
    pub total: String,
}

/// Body of `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageResponse {
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    /// The sum of the lines' costs.
    pub total: String,
    pub lines: Vec<UsageLine>,
    /// Admins' reports of every account: each account's total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<AccountUsage>>,
}

/// One API key of the account, as `GET /v1/account/keys` lists it: never
/// the key itself, nor its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// When a request last used it (recorded to the minute); absent if
    /// never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; absent while it is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// What the key may do in its account.
    pub role: Role,
    /// A personal key's person: it acts as them, never above their role,
    /// and ends with their membership. Absent for the account's own keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_id: Option<Uuid>,
}

/// Body of `GET /v1/account/keys`: every key, revoked ones included,
/// oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeysResponse {
    pub keys: Vec<ApiKey>,
}

/// Body of `POST /v1/account/keys/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiKeyRequest {
    /// What the key is for (`ci`, `laptop`); need not be unique.
    pub name: String,
    /// What the key may do: by default what the key making it may, and
    /// never more.
    #[serde(default)]
    pub role: Option<Role>,
}

/// What a key, or a person, may do in an account. Each role may do
/// everything the one before it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything of the account.
    Viewer,
    /// Also creates, launches, restarts, updates and deletes instances,
    /// clusters, volumes, templates and SSH keys.
    Member,
    /// Also manages the account's API keys, webhooks and members.
    #[default]
    Owner,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Member, Role::Owner];

    /// The role as it is written on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Owner => "owner",
        }
    }

    /// The role written `s`, if it is one.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Answer of `POST /v1/account/keys/create`: the only time the key is
/// shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiKeyResponse {
    pub id: Uuid,
    pub name: String,
    pub api_key: String,
}

/// How a person came to be a member of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MemberSource {
    /// A rule of the server's configuration (group or email domain),
    /// evaluated again at each sign-in.
    Rule,
    /// An owner's invitation, or an owner's change of the role: the rules
    /// leave it alone.
    Invite,
}

/// One person of the account, as `GET /v1/account/members` lists them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    /// The person's id, for `/v1/account/members/{id}/*`.
    pub id: Uuid,
    /// As the identity provider last gave it; `null` if it gave none.
    pub email: Option<String>,
    /// As the identity provider last gave it; `null` if it gave none.
    pub name: Option<String>,
    /// The OpenID provider that vouches for them.
    pub issuer: String,
    pub role: Role,
    pub source: MemberSource,
    /// `null`: not since they joined by a rule or invitation.
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

/// An invitation not yet taken up: whoever signs in with this email joins
/// with the role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    /// Lower-cased.
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// Body of `GET /v1/account/members`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MembersResponse {
    pub members: Vec<Member>,
    pub invites: Vec<Invitation>,
}

/// Body of `POST /v1/account/members/invite`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InviteMemberRequest {
    /// Whoever signs in with this email (any case) joins the account.
    pub email: String,
    /// At most the inviting owner's own role.
    pub role: Role,
}

/// Body of `POST /v1/account/members/{id}/update`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    pub role: Role,
}

/// Body of `POST /v1/account/members/invites/delete`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeleteInvitationRequest {
    pub email: String,
}

/// Answer of `POST /v1/account/members/invites/delete`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationDeleted {
    /// Lower-cased.
    pub email: String,
    /// `deleted`.
    pub status: String,
}
