//! Parasol's own OpenAPI 3 document, served at `/v1/openapi.json`.
//!
//! Every schema is derived from the wire types of `parasol-api` (their
//! `utoipa::ToSchema` derives, behind that crate's `openapi` feature), so a
//! field added to a type appears here without anyone touching this file.
//! The operation table below says which type each operation takes and
//! answers; the paths are Shadeform's, so a client generated from either
//! document calls the same URLs.

use std::borrow::Cow;
use std::sync::LazyLock;

use parasol_api as api;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApiBuilder, PathsBuilder,
    Ref, RefOr, Required, ResponseBuilder, Schema, ServerBuilder, Type,
};
use utoipa::ToSchema;

/// One operation: method, Shadeform path (relative to `/v1`), what it
/// takes and what it answers.
struct Op {
    method: HttpMethod,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    request: Option<Cow<'static, str>>,
    response: Cow<'static, str>,
    query: &'static [(&'static str, &'static str)],
}

fn name<T: ToSchema>() -> Cow<'static, str> {
    T::name()
}

/// Query parameters of `GET /instances/types`.
const TYPES_QUERY: &[(&str, &str)] = &[
    ("cloud", "Only this cloud."),
    ("region", "Only availability in this region."),
    (
        "num_gpus",
        "Only types with this many GPUs (a whole number).",
    ),
    ("gpu_type", "Only this GPU type, case-insensitive."),
    ("shade_instance_type", "Only this instance type."),
    (
        "available",
        "`true`: only available entries; `false`: only unavailable ones.",
    ),
    ("sort", "`price`: cheapest first."),
];

/// Name of the schema of `GET /v1/events`, which has no wire type.
const EVENTS: &str = "EventsResponse";
/// Marks the answer of `GET /v1/events/stream`: `text/event-stream`, not
/// a JSON schema.
const STREAM: &str = "text/event-stream";
/// Name of the answer of the launches by requirements: the new id, or the
/// candidates of a dry run.
const LAUNCH: &str = "LaunchResponse";

fn ops() -> Vec<Op> {
    use HttpMethod::{Get, Post};
    let op = |method, path, id, tag, summary, request, response| Op {
        method,
        path,
        id,
        tag,
        summary,
        request,
        response,
        query: &[],
    };
    let confirm = name::<api::Confirmation>;
    vec![
        op(
            Get,
            "/instances",
            "Instances",
            "instances",
            "List the account's instances (deleted ones are hidden).",
            None,
            name::<api::InstancesResponse>(),
        ),
        Op {
            query: TYPES_QUERY,
            ..op(
                Get,
                "/instances/types",
                "InstancesTypes",
                "instances",
                "Instance types on offer, with availability by region.",
                None,
                name::<api::InstanceTypesResponse>(),
            )
        },
        op(
            Post,
            "/instances/create",
            "InstancesCreate",
            "instances",
            "Rent an instance; answers its id at once.",
            Some(name::<api::CreateRequest>()),
            name::<api::CreateResponse>(),
        ),
        op(
            Get,
            "/instances/{id}/info",
            "InstancesInfo",
            "instances",
            "One instance.",
            None,
            name::<api::Instance>(),
        ),
        op(
            Post,
            "/instances/{id}/update",
            "InstancesUpdate",
            "instances",
            "Change name, tags, auto-delete or alert; null removes a field.",
            Some(name::<api::UpdateRequest>()),
            confirm(),
        ),
        op(
            Post,
            "/instances/{id}/delete",
            "InstancesDelete",
            "instances",
            "Delete an instance; billing stops at once.",
            None,
            confirm(),
        ),
        op(
            Post,
            "/instances/{id}/restart",
            "InstancesRestart",
            "instances",
            "Restart an active instance.",
            None,
            confirm(),
        ),
        op(
            Get,
            "/clusters",
            "Clusters",
            "clusters",
            "List the account's clusters.",
            None,
            name::<api::ClustersResponse>(),
        ),
        op(
            Get,
            "/clusters/types",
            "ClustersTypes",
            "clusters",
            "Cluster shapes on offer.",
            None,
            name::<api::ClusterTypesResponse>(),
        ),
        op(
            Post,
            "/clusters/create",
            "ClustersCreate",
            "clusters",
            "Rent a cluster: all nodes or none.",
            Some(name::<api::CreateClusterRequest>()),
            name::<api::CreateResponse>(),
        ),
        op(
            Get,
            "/clusters/{id}/info",
            "ClustersInfo",
            "clusters",
            "One cluster with its nodes.",
            None,
            name::<api::Cluster>(),
        ),
        op(
            Post,
            "/clusters/{id}/delete",
            "ClustersDelete",
            "clusters",
            "Delete a cluster and its nodes.",
            None,
            confirm(),
        ),
        op(
            Get,
            "/sshkeys",
            "SshKeys",
            "sshkeys",
            "List the account's SSH keys.",
            None,
            name::<api::SshKeysResponse>(),
        ),
        op(
            Post,
            "/sshkeys/add",
            "SshKeysAdd",
            "sshkeys",
            "Add an SSH public key; the first becomes the default.",
            Some(name::<api::AddSshKeyRequest>()),
            name::<api::AddSshKeyResponse>(),
        ),
        op(
            Get,
            "/sshkeys/{id}/info",
            "SshKeysInfo",
            "sshkeys",
            "One SSH key.",
            None,
            name::<api::SshKey>(),
        ),
        op(
            Post,
            "/sshkeys/{id}/setdefault",
            "SshKeysSetDefault",
            "sshkeys",
            "Make a key the default for new instances.",
            None,
            confirm(),
        ),
        op(
            Post,
            "/sshkeys/{id}/delete",
            "SshKeysDelete",
            "sshkeys",
            "Delete a key that is neither the default nor in use.",
            None,
            confirm(),
        ),
        op(
            Get,
            "/volumes",
            "Volumes",
            "volumes",
            "List the account's volumes.",
            None,
            name::<api::VolumesResponse>(),
        ),
        op(
            Get,
            "/volumes/types",
            "VolumesTypes",
            "volumes",
            "Where volumes can be created, and their price.",
            None,
            name::<api::VolumesTypesResponse>(),
        ),
        op(
            Post,
            "/volumes/create",
            "VolumesCreate",
            "volumes",
            "Create a volume.",
            Some(name::<api::CreateVolumeRequest>()),
            name::<api::CreateVolumeResponse>(),
        ),
        op(
            Get,
            "/volumes/{id}/info",
            "VolumesInfo",
            "volumes",
            "One volume.",
            None,
            name::<api::Volume>(),
        ),
        op(
            Post,
            "/volumes/{id}/delete",
            "VolumesDelete",
            "volumes",
            "Delete a volume that no instance mounts.",
            None,
            confirm(),
        ),
        op(
            Get,
            "/templates",
            "Templates",
            "templates",
            "Templates the account can use: its own and public ones.",
            None,
            name::<api::TemplatesResponse>(),
        ),
        op(
            Get,
            "/templates/featured",
            "TemplatesFeatured",
            "templates",
            "The featured templates Parasol ships.",
            None,
            name::<api::TemplatesResponse>(),
        ),
        op(
            Post,
            "/templates/save",
            "TemplatesSave",
            "templates",
            "Save a template.",
            Some(name::<api::TemplateSaveRequest>()),
            name::<api::TemplateCreateResponse>(),
        ),
        op(
            Get,
            "/templates/{template_id}/info",
            "TemplatesInfo",
            "templates",
            "One template.",
            None,
            name::<api::Template>(),
        ),
        op(
            Post,
            "/templates/{template_id}/update",
            "TemplatesUpdate",
            "templates",
            "Replace a template's settings.",
            Some(name::<api::TemplateSaveRequest>()),
            confirm(),
        ),
        op(
            Post,
            "/templates/{template_id}/delete",
            "TemplatesDelete",
            "templates",
            "Delete one of the account's templates.",
            None,
            confirm(),
        ),
        // Parasol's extensions.
        op(
            Get,
            "/account",
            "Account",
            "parasol",
            "Parasol extension: the account of the API key.",
            None,
            name::<api::AccountInfo>(),
        ),
        op(
            Get,
            "/account/keys",
            "AccountKeys",
            "parasol",
            "Parasol extension: the account's API keys, revoked ones included (never the keys).",
            None,
            name::<api::ApiKeysResponse>(),
        ),
        op(
            Post,
            "/account/keys/create",
            "AccountKeysCreate",
            "parasol",
            "Parasol extension: a new API key for the account, shown in this answer only \
             (at most 10 live keys; 409 past that).",
            Some(name::<api::CreateApiKeyRequest>()),
            name::<api::CreateApiKeyResponse>(),
        ),
        op(
            Post,
            "/account/keys/personal",
            "AccountKeysPersonal",
            "parasol",
            "Parasol extension: a new personal key of the calling person (call with a \
             personal key): it acts as them, never above their role in the account, and is \
             refused once their membership ends; shown in this answer only.",
            Some(name::<api::CreateApiKeyRequest>()),
            name::<api::CreateApiKeyResponse>(),
        ),
        op(
            Post,
            "/account/keys/{id}/revoke",
            "AccountKeysRevoke",
            "parasol",
            "Parasol extension: revoke one of the account's API keys; it is refused from \
             the next request on (409 for the last live key).",
            None,
            confirm(),
        ),
        op(
            Get,
            "/account/members",
            "AccountMembers",
            "parasol",
            "Parasol extension: the people of the account (who signed in through OpenID \
             Connect) with their roles, and the invitations not yet taken up.",
            None,
            name::<api::MembersResponse>(),
        ),
        op(
            Post,
            "/account/members/invite",
            "AccountMembersInvite",
            "parasol",
            "Parasol extension (owners): whoever signs in with this email joins the account \
             with the role (at most the caller's own); inviting again changes the role.",
            Some(name::<api::InviteMemberRequest>()),
            name::<api::Invitation>(),
        ),
        op(
            Post,
            "/account/members/invites/delete",
            "AccountMembersInvitesDelete",
            "parasol",
            "Parasol extension (owners): withdraw an invitation (404 if there is none).",
            Some(name::<api::DeleteInvitationRequest>()),
            name::<api::InvitationDeleted>(),
        ),
        op(
            Post,
            "/account/members/{id}/update",
            "AccountMembersUpdate",
            "parasol",
            "Parasol extension (owners): a member's new role, which the sign-in rules no \
             longer change; their sessions and personal keys take it from the next request.",
            Some(name::<api::UpdateMemberRequest>()),
            confirm(),
        ),
        op(
            Post,
            "/account/members/{id}/remove",
            "AccountMembersRemove",
            "parasol",
            "Parasol extension (owners): remove a person from the account; their sessions \
             and personal keys in it are refused from the next request, on every replica.",
            None,
            confirm(),
        ),
        Op {
            method: Get,
            path: "/instances/{id}/metrics",
            id: "InstancesMetrics",
            tag: "parasol",
            summary: "Parasol extension: what the instance's agent reported (per GPU: \
                      utilisation, memory, temperature, power, uncorrectable ECC errors, Xid \
                      codes; SSH sessions), oldest first; `agent` is null until it first \
                      reports. By minute, each GPU's utilisation and power are the minute's \
                      averages, the other numbers its maxima, its Xids all of the minute's.",
            request: None,
            response: name::<api::MetricsResponse>(),
            query: &[
                (
                    "since",
                    "Samples from this time on, RFC 3339 (default: an hour ago). Every \
                     report is kept for an hour, the 1-minute history for a week (both \
                     configurable).",
                ),
                (
                    "resolution",
                    "`raw` (default: every report) or `1m` (one per minute).",
                ),
            ],
        },
        op(
            Get,
            "/events",
            "Events",
            "parasol",
            "Parasol extension: what happened to the account's resources, oldest first.",
            None,
            Cow::Borrowed(EVENTS),
        ),
        Op {
            method: Get,
            path: "/events/stream",
            id: "EventsStream",
            tag: "parasol",
            summary: "Parasol extension: the account's events (an admin key: every account's) \
                 live, as server-sent events, in log order. Each event: `id` (its place in the \
                 log), `event` (its type), `data` (the webhook body: `{id, type, created_at, \
                 account_id, data}`). A `retry:` hint comes first and a `: heartbeat` comment \
                 every 15 s. `Last-Event-ID` (header, or `last_event_id`) replays what came \
                 after that event first. A client more than 1024 events behind, or a server \
                 shutting down, gets a final `resume` event whose id is where to resume from, \
                 and the stream ends.",
            request: None,
            response: Cow::Borrowed(STREAM),
            query: &[
                (
                    "types",
                    "Comma-separated event types or patterns, as webhook subscriptions name \
                     them (`instance.*,budget.alert`); default every type.",
                ),
                (
                    "last_event_id",
                    "Resume after this event id, for clients that cannot send the \
                     Last-Event-ID header.",
                ),
            ],
        },
        op(
            Post,
            "/instances/launch",
            "InstancesLaunch",
            "parasol",
            "Parasol extension: rent the cheapest instance of any cloud that meets the \
             requirements, moving on when a launch hits a capacity error; `dry_run` \
             answers the candidates in the order they would be tried.",
            Some(name::<api::LaunchRequest>()),
            Cow::Borrowed(LAUNCH),
        ),
        op(
            Get,
            "/instances/{id}/health",
            "InstancesHealth",
            "parasol",
            "Parasol extension: the instance's health from its agent's reports: heartbeat \
             (degraded after 2 minutes without a report, failed after 10), GPU count, \
             critical Xid errors and uncorrectable ECC errors; `unknown` until the first \
             report.",
            None,
            name::<api::HealthResponse>(),
        ),
        op(
            Post,
            "/clusters/launch",
            "ClustersLaunch",
            "parasol",
            "Parasol extension: a cluster in the cheapest cloud and region with room for \
             every node that meets the requirements; `dry_run` answers the candidates.",
            Some(name::<api::ClusterLaunchRequest>()),
            Cow::Borrowed(LAUNCH),
        ),
        Op {
            method: Get,
            path: "/usage",
            id: "Usage",
            tag: "parasol",
            summary: "Parasol extension: the usage ledger, one line per instance that accrued \
                      cost in the window, the lines summing to the total; admins see every \
                      account (with per-account totals) or one with `account_id`.",
            request: None,
            response: name::<api::UsageResponse>(),
            query: USAGE_QUERY,
        },
        op(
            Get,
            "/webhooks",
            "Webhooks",
            "parasol",
            "Parasol extension: the account's webhook endpoints (never their secrets).",
            None,
            name::<api::WebhooksResponse>(),
        ),
        op(
            Post,
            "/webhooks/create",
            "WebhooksCreate",
            "parasol",
            "Parasol extension: a webhook endpoint receiving the account's events of the \
             given types, signed per Standard Webhooks; the secret is in this answer only \
             (at most 20 per account; 409 past that).",
            Some(name::<api::CreateWebhookRequest>()),
            name::<api::WebhookSecretResponse>(),
        ),
        op(
            Get,
            "/webhooks/{id}",
            "WebhooksInfo",
            "parasol",
            "Parasol extension: one webhook endpoint.",
            None,
            name::<api::Webhook>(),
        ),
        op(
            Post,
            "/webhooks/{id}/update",
            "WebhooksUpdate",
            "parasol",
            "Parasol extension: change an endpoint's URL, event types, description or \
             enabled flag (absent fields are kept).",
            Some(name::<api::UpdateWebhookRequest>()),
            name::<api::Webhook>(),
        ),
        op(
            Post,
            "/webhooks/{id}/delete",
            "WebhooksDelete",
            "parasol",
            "Parasol extension: delete an endpoint; its queued deliveries are dropped.",
            None,
            confirm(),
        ),
        op(
            Post,
            "/webhooks/{id}/rotate-secret",
            "WebhooksRotateSecret",
            "parasol",
            "Parasol extension: a new secret, in this answer only; the old one keeps \
             signing beside it for 24 h.",
            None,
            name::<api::WebhookSecretResponse>(),
        ),
        op(
            Post,
            "/webhooks/{id}/test",
            "WebhooksTest",
            "parasol",
            "Parasol extension: send the endpoint a `ping` event.",
            None,
            name::<api::WebhookTestResponse>(),
        ),
        Op {
            method: Get,
            path: "/webhooks/{id}/deliveries",
            id: "WebhooksDeliveries",
            tag: "parasol",
            summary: "Parasol extension: the endpoint's delivery attempts, newest first.",
            request: None,
            response: name::<api::WebhookDeliveriesResponse>(),
            query: &[("limit", "Attempts to list, 1 to 1000 (default 50).")],
        },
        op(
            Get,
            "/admin/accounts",
            "AdminAccounts",
            "parasol",
            "Parasol extension (admin keys): every account with its budget and spend.",
            None,
            name::<api::AdminAccountsResponse>(),
        ),
        op(
            Post,
            "/admin/accounts/create",
            "AdminAccountsCreate",
            "parasol",
            "Parasol extension (admin keys): a new account; its API key is in this answer only.",
            Some(name::<api::CreateAccountRequest>()),
            name::<api::CreateAccountResponse>(),
        ),
        op(
            Post,
            "/admin/accounts/{id}/update",
            "AdminAccountsUpdate",
            "parasol",
            "Parasol extension (admin keys): rename an account or set (`null`: remove) its budget.",
            Some(name::<api::UpdateAccountRequest>()),
            name::<api::AdminAccount>(),
        ),
        op(
            Post,
            "/admin/accounts/{id}/delete",
            "AdminAccountsDelete",
            "parasol",
            "Parasol extension (admin keys): delete an account; 409 while it holds live \
             instances or volumes.",
            None,
            confirm(),
        ),
    ]
}

/// Query parameters of `GET /usage`.
const USAGE_QUERY: &[(&str, &str)] = &[
    (
        "from",
        "Window start, RFC 3339 (default: the start of this UTC month).",
    ),
    (
        "to",
        "Window end, RFC 3339, exclusive (default: the start of next UTC month).",
    ),
    (
        "format",
        "`json` (default) or `csv` (text/csv, the same lines).",
    ),
    ("account_id", "Admin keys only: one account's usage."),
];

/// Adds `T`'s schema and every schema it references.
fn collect<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((
        T::name().into_owned(),
        <T as utoipa::PartialSchema>::schema(),
    ));
    T::schemas(out);
}

fn schemas() -> Vec<(String, RefOr<Schema>)> {
    let mut s = Vec::new();
    collect::<api::InstancesResponse>(&mut s);
    collect::<api::InstanceTypesResponse>(&mut s);
    collect::<api::CreateRequest>(&mut s);
    collect::<api::CreateResponse>(&mut s);
    collect::<api::Instance>(&mut s);
    collect::<api::UpdateRequest>(&mut s);
    collect::<api::Confirmation>(&mut s);
    collect::<api::ClustersResponse>(&mut s);
    collect::<api::ClusterTypesResponse>(&mut s);
    collect::<api::CreateClusterRequest>(&mut s);
    collect::<api::Cluster>(&mut s);
    collect::<api::SshKeysResponse>(&mut s);
    collect::<api::AddSshKeyRequest>(&mut s);
    collect::<api::AddSshKeyResponse>(&mut s);
    collect::<api::SshKey>(&mut s);
    collect::<api::VolumesResponse>(&mut s);
    collect::<api::VolumesTypesResponse>(&mut s);
    collect::<api::CreateVolumeRequest>(&mut s);
    collect::<api::CreateVolumeResponse>(&mut s);
    collect::<api::Volume>(&mut s);
    collect::<api::TemplatesResponse>(&mut s);
    collect::<api::TemplateSaveRequest>(&mut s);
    collect::<api::TemplateCreateResponse>(&mut s);
    collect::<api::Template>(&mut s);
    collect::<api::AccountInfo>(&mut s);
    collect::<api::ApiKeysResponse>(&mut s);
    collect::<api::CreateApiKeyRequest>(&mut s);
    collect::<api::CreateApiKeyResponse>(&mut s);
    collect::<api::MembersResponse>(&mut s);
    collect::<api::InviteMemberRequest>(&mut s);
    collect::<api::Invitation>(&mut s);
    collect::<api::DeleteInvitationRequest>(&mut s);
    collect::<api::InvitationDeleted>(&mut s);
    collect::<api::UpdateMemberRequest>(&mut s);
    collect::<api::ErrorBody>(&mut s);
    collect::<api::LaunchRequest>(&mut s);
    collect::<api::ClusterLaunchRequest>(&mut s);
    collect::<api::CandidatesResponse>(&mut s);
    collect::<api::UsageResponse>(&mut s);
    collect::<api::AdminAccountsResponse>(&mut s);
    collect::<api::AdminAccount>(&mut s);
    collect::<api::CreateAccountRequest>(&mut s);
    collect::<api::CreateAccountResponse>(&mut s);
    collect::<api::UpdateAccountRequest>(&mut s);
    collect::<api::WebhooksResponse>(&mut s);
    collect::<api::Webhook>(&mut s);
    collect::<api::CreateWebhookRequest>(&mut s);
    collect::<api::UpdateWebhookRequest>(&mut s);
    collect::<api::WebhookSecretResponse>(&mut s);
    collect::<api::WebhookTestResponse>(&mut s);
    collect::<api::WebhookDeliveriesResponse>(&mut s);
    collect::<api::MetricsResponse>(&mut s);
    collect::<api::IdlePolicy>(&mut s);
    collect::<api::OnUnhealthy>(&mut s);
    collect::<api::HealthResponse>(&mut s);
    s.push((
        LAUNCH.into(),
        utoipa::openapi::OneOfBuilder::new()
            .item(Ref::from_schema_name(name::<api::CreateResponse>()))
            .item(Ref::from_schema_name(name::<api::CandidatesResponse>()))
            .into(),
    ));
    // `Alert` is a type alias of `AutoDelete` in Rust; fields typed with it
    // reference it by name.
    s.push((
        "Alert".into(),
        <api::AutoDelete as utoipa::PartialSchema>::schema(),
    ));
    s.push((
        EVENTS.into(),
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "`{\"events\": [{\"id\", \"instance_id\", \"kind\", \"message\", \"created_at\"}]}`",
            ))
            .into(),
    ));
    s
}

fn json_ref(name: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(name)))
        .build()
}

fn build() -> serde_json::Value {
    let mut paths = PathsBuilder::new();
    for op in ops() {
        let text = || {
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
                .build()
        };
        let mut ok = if op.response == STREAM {
            ResponseBuilder::new()
                .description("A stream of server-sent events that lasts until the client leaves.")
                .content(STREAM, text())
        } else {
            ResponseBuilder::new()
                .description("Success.")
                .content("application/json", json_ref(&op.response))
        };
        if op.query.iter().any(|(q, _)| *q == "format") {
            ok = ok.content("text/csv", text());
        }
        let mut o = OperationBuilder::new()
            .operation_id(Some(op.id))
            .tag(op.tag)
            .summary(Some(op.summary))
            .response("200", ok)
            .response(
                "default",
                ResponseBuilder::new()
                    .description(
                        "An error: 400 invalid_request (with the field), 401, 403, 404, 409, 413, 503.",
                    )
                    .content("application/json", json_ref(&name::<api::ErrorBody>())),
            );
        if let Some(req) = &op.request {
            o = o.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content("application/json", json_ref(req))
                    .build(),
            ));
        }
        if let Some(start) = op.path.find('{') {
            let end = op.path[start..].find('}').unwrap_or(0) + start;
            o = o.parameter(
                ParameterBuilder::new()
                    .name(&op.path[start + 1..end])
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String).build())),
            );
        }
        if op.response == STREAM {
            o = o.parameter(
                ParameterBuilder::new()
                    .name("Last-Event-ID")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "The id of the last event received: the stream replays what came after it.",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String).build())),
            );
        }
        for (q, what) in op.query {
            o = o.parameter(
                ParameterBuilder::new()
                    .name(*q)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(*what))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String).build())),
            );
        }
        paths = paths.path(op.path, PathItem::new(op.method, o));
    }
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas())
        .security_scheme(
            "ApiKeyAuth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-KEY"))),
        )
        .build();
    let doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Parasol API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Shadeform v1 compatible GPU cloud API, served by Parasol, with Parasol's extensions (tag `parasol`). Outside /v1: GET /healthz, /readyz and /metrics (no key), and the admin-only /admin/* endpoints. Machines' agents post to POST /v1/agent/report with their instance's own token (Authorization: Bearer pa_...), not an API key; 204 once stored.",
                ))
                .build(),
        )
        .servers(Some([ServerBuilder::new().url("/v1").build()]))
        .paths(paths.build())
        .components(Some(components))
        .security(Some([SecurityRequirement::new(
            "ApiKeyAuth",
            Vec::<String>::new(),
        )]))
        .build();
    serde_json::to_value(&doc).expect("the document serialises")
}

static DOC: LazyLock<serde_json::Value> = LazyLock::new(build);

/// The document, built once.
pub fn document() -> &'static serde_json::Value {
    &DOC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_referenced_schema_is_defined() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but not defined"
            );
        }
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    }
}
