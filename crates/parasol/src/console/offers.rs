//! Offers (the catalog, filtered through `/instances/types`) and the
//! launch form for one instance.

use std::collections::BTreeSet;

use super::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Extension;
use base64::Engine;
use maud::{html, Markup};
use parasol_api::Role;
use parasol_api::{
    CreateResponse, InstanceType, InstanceTypesQuery, InstanceTypesResponse, RentalType,
    SshKeysResponse, TemplatesResponse, VolumesResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::layout::{self, csrf, field_error, form_error, Nav};
use super::{api, html, html_status, money, parse_envs, request, see, PageResult, Session};
use crate::error::ApiError;
use crate::http::{self, AppRef, Body};

/// The offer filters, as they appear in the page's URL.
#[derive(Deserialize, Serialize, Default, Clone)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gpu_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub num_gpus: String,
    /// Least VRAM per GPU, in GB.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub min_vram: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cloud: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// `on_demand`, `spot`, or empty for both.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rental: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub available: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sort: String,
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl Filters {
    /// The `/instances/types` query these filters stand for (VRAM and rental
    /// type have no API parameter and are applied to its answer).
    fn api_query(&self) -> InstanceTypesQuery {
        InstanceTypesQuery {
            cloud: opt(&self.cloud),
            region: opt(&self.region),
            num_gpus: opt(&self.num_gpus),
            gpu_type: opt(&self.gpu_type),
            shade_instance_type: None,
            available: (self.available == "true").then(|| "true".to_string()),
            sort: (self.sort == "price").then(|| "price".to_string()),
        }
    }
}

/// The whole catalog, unfiltered (for the filter choices).
async fn catalog(app: &AppRef) -> Result<Vec<InstanceType>, ApiError> {
    let all: InstanceTypesResponse = api(http::instances::types_of(
        State(app.clone()),
        Ok(Query(InstanceTypesQuery::default())),
    ))
    .await?;
    Ok(all.instance_types)
}

/// `GET /offers`.
pub async fn page(
    State(app): State<AppRef>,
    session: Session,
    Query(f): Query<Filters>,
) -> PageResult {
    let all = catalog(&app).await?;
    let filtered: Result<InstanceTypesResponse, ApiError> = api(http::instances::types_of(
        State(app.clone()),
        Ok(Query(f.api_query())),
    ))
    .await;
    let min_vram: Option<i64> = opt(&f.min_vram).and_then(|v| v.parse().ok());
    let vram_error = opt(&f.min_vram)
        .filter(|v| v.parse::<i64>().is_err())
        .map(|v| {
            ApiError::invalid_field(
                "min_vram",
                format!("VRAM must be a whole number of GB, got {v:?}"),
            )
        });
    let (rows, err) = match filtered {
        Ok(r) => (r.instance_types, vram_error),
        Err(e) => (Vec::new(), Some(e)),
    };
    let rental = match f.rental.as_str() {
        "spot" => Some(RentalType::Spot),
        "on_demand" => Some(RentalType::OnDemand),
        _ => None,
    };
    let rows: Vec<InstanceType> = rows
        .into_iter()
        .filter(|t| min_vram.is_none_or(|v| t.configuration.vram_per_gpu_in_gb >= v))
        .filter_map(|mut t| {
            if let Some(r) = rental {
                t.availability.retain(|a| a.rental_type == r);
                if t.availability.is_empty() {
                    return None;
                }
            }
            Some(t)
        })
        .collect();
    let gpus: BTreeSet<&str> = all
        .iter()
        .map(|t| t.configuration.gpu_type.as_str())
        .collect();
    let clouds: BTreeSet<&str> = all.iter().map(|t| t.cloud.as_str()).collect();
    let regions: BTreeSet<&str> = all
        .iter()
        .flat_map(|t| t.availability.iter().map(|a| a.region.as_str()))
        .collect();
    let counts: BTreeSet<i64> = all.iter().map(|t| t.configuration.num_gpus).collect();
    let status = if err.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = html! {
        h1 { "Offers" }
        form.filters method="get" action="/offers" {
            label { "GPU type"
                select name="gpu_type" {
                    option value="" { "any" }
                    @for g in &gpus { option value=(g) selected[f.gpu_type.eq_ignore_ascii_case(g)] { (g) } }
                }
            }
            label { "GPUs"
                select name="num_gpus" {
                    option value="" { "any" }
                    @for n in &counts { option value=(n) selected[f.num_gpus == n.to_string()] { (n) } }
                }
                (field_error(err.as_ref(), "num_gpus"))
            }
            label { "Min VRAM / GPU (GB)"
                input type="text" inputmode="numeric" name="min_vram" value=(f.min_vram) size="5";
                (field_error(err.as_ref(), "min_vram"))
            }
            label { "Cloud"
                select name="cloud" {
                    option value="" { "any" }
                    @for c in &clouds { option value=(c) selected[f.cloud == *c] { (c) } }
                }
            }
            label { "Region"
                select name="region" {
                    option value="" { "any" }
                    @for r in &regions { option value=(r) selected[f.region == *r] { (r) } }
                }
            }
            label { "Rental"
                select name="rental" {
                    option value="" { "on-demand or spot" }
                    option value="on_demand" selected[f.rental == "on_demand"] { "on-demand" }
                    option value="spot" selected[f.rental == "spot"] { "spot" }
                }
            }
            label { span { input type="checkbox" name="available" value="true" checked[f.available == "true"]; " available only" } }
            label { span { input type="checkbox" name="sort" value="price" checked[f.sort == "price"]; " cheapest first" } }
            button.primary type="submit" { "Filter" }
            a href="/offers" { "Clear" }
        }
        (form_error(err.as_ref(), &["num_gpus", "min_vram"]))
        @if rows.is_empty() {
            @if err.is_none() {
                div.empty { p { "No offer matches these filters. " a href="/offers" { "Clear the filters" } " to see the whole catalog." } }
            }
        } @else {
            p.muted.small { (rows.len()) " offers" }
            table #offers {
                thead { tr {
                    th { "Cloud" } th { "Type" } th { "GPUs" } th.num { "VRAM" } th.num { "vCPUs" } th.num { "RAM" }
                    th.num { "$/h" } th { "Regions" } th { "Boot" } th {}
                } }
                tbody {
                    @for t in &rows { (offer_row(t, session.role >= Role::Member)) }
                }
            }
        }
    };
    Ok(html_status(
        status,
        layout::page(&app, &session, Nav::Offers, "Offers", body),
    ))
}

/// One offer; with its Launch button only for those who may launch.
fn offer_row(t: &InstanceType, can_launch: bool) -> Markup {
    let c = &t.configuration;
    let region = t
        .availability
        .iter()
        .find(|a| a.available)
        .or(t.availability.first())
        .map(|a| a.region.as_str())
        .unwrap_or("");
    let launch = serde_urlencoded::to_string([
        ("cloud", t.cloud.as_str()),
        ("region", region),
        ("type", t.shade_instance_type.as_str()),
    ])
    .unwrap_or_default();
    html! {
        tr data-cloud=(t.cloud) data-type=(t.shade_instance_type) {
            td { (t.cloud) }
            td { (t.shade_instance_type) }
            td { (c.num_gpus) "× " (c.gpu_type) }
            td.num { (c.vram_per_gpu_in_gb) " GB" }
            td.num { (c.vcpus) }
            td.num { (c.memory_in_gb) " GB" }
            td.num.price { "$" (money(t.hourly_price)) }
            td.regions {
                @for a in &t.availability {
                    span class=(if a.available { "yes" } else { "no" })
                        title=(format!("{} ({}){}", a.display_name, a.rental_type.as_str(),
                            a.hourly_price.as_deref().map(|p| format!(", ${p}/h")).unwrap_or_default())) {
                        (a.region) @if a.rental_type == RentalType::Spot { " spot" }
                    }
                }
            }
            td.small { @if let Some(b) = &t.boot_time { (boot(b.min_boot_in_sec)) "–" (boot(b.max_boot_in_sec)) } @else { "?" } }
            td { @if can_launch { a.button.primary href=(format!("/launch?{launch}")) { "Launch" } } }
        }
    }
}

fn boot(secs: i64) -> String {
    if secs >= 120 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// The launch form, as posted (and as prefilled from an offer).
#[derive(Deserialize, Serialize, Default, Clone)]
#[serde(default)]
pub struct LaunchForm {
    pub cloud: String,
    pub region: String,
    #[serde(rename = "type")]
    pub shade_instance_type: String,
    pub name: String,
    pub ssh_key_id: String,
    pub template_id: String,
    /// `none`, `docker` or `script`.
    pub launch: String,
    pub docker_image: String,
    pub docker_args: String,
    pub script: String,
    /// One `NAME=value` per line.
    pub envs: String,
    pub spot: String,
    pub auto_delete_date: String,
    pub auto_delete_spend: String,
    pub alert_date: String,
    pub alert_spend: String,
    pub volume_id: String,
    /// Also save these settings as a template of this name.
    pub save_template: String,
}

impl LaunchForm {
    fn thresholds(date: &str, spend: &str) -> Option<Value> {
        let mut m = Map::new();
        if let Some(d) = opt(date) {
            m.insert("date_threshold".into(), json!(d));
        }
        if let Some(s) = opt(spend) {
            m.insert("spend_threshold".into(), json!(s));
        }
        (!m.is_empty()).then_some(Value::Object(m))
    }

    /// The launch configuration, envs, thresholds: what a template holds.
    fn settings(&self) -> Result<Map<String, Value>, ApiError> {
        let mut m = Map::new();
        match self.launch.as_str() {
            "docker" => {
                let mut d = Map::new();
                d.insert("image".into(), json!(self.docker_image.trim()));
                if let Some(a) = opt(&self.docker_args) {
                    d.insert("args".into(), json!(a));
                }
                m.insert(
                    "launch_configuration".into(),
                    json!({"type": "docker", "docker_configuration": d}),
                );
            }
            "script" => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(self.script.as_bytes());
                m.insert(
                    "launch_configuration".into(),
                    json!({"type": "script", "script_configuration": {"base64_script": b64}}),
                );
            }
            _ => {}
        }
        let envs = parse_envs(&self.envs)?;
        if !envs.is_empty() {
            m.insert("envs".into(), Value::Array(envs));
        }
        if let Some(t) = Self::thresholds(&self.auto_delete_date, &self.auto_delete_spend) {
            m.insert("auto_delete".into(), t);
        }
        if let Some(t) = Self::thresholds(&self.alert_date, &self.alert_spend) {
            m.insert("alert".into(), t);
        }
        Ok(m)
    }

    /// The API's create request for this form.
    fn create_request(&self) -> Result<Value, ApiError> {
        let mut m = self.settings()?;
        m.insert("cloud".into(), json!(self.cloud));
        m.insert("region".into(), json!(self.region));
        m.insert(
            "shade_instance_type".into(),
            json!(self.shade_instance_type),
        );
        m.insert("shade_cloud".into(), json!(true));
        m.insert("name".into(), json!(self.name.trim()));
        if let Some(k) = opt(&self.ssh_key_id) {
            m.insert("ssh_key_id".into(), json!(k));
        }
        if let Some(t) = opt(&self.template_id) {
            m.insert("template_id".into(), json!(t));
        }
        if self.spot == "on" || self.spot == "true" {
            m.insert("rental_type".into(), json!("spot"));
        }
        if let Some(v) = opt(&self.volume_id) {
            m.insert("volume_ids".into(), json!([v]));
        }
        Ok(Value::Object(m))
    }
}

/// What the launch form offers to choose from.
struct Choices {
    keys: SshKeysResponse,
    featured: TemplatesResponse,
    own: TemplatesResponse,
    volumes: VolumesResponse,
    /// The offer being launched, when the form names one the catalog has.
    offer: Option<InstanceType>,
}

async fn choices(app: &AppRef, s: &Session, f: &LaunchForm) -> Result<Choices, ApiError> {
    let acct = || Extension(s.account.clone());
    let offer = match (opt(&f.cloud), opt(&f.shade_instance_type)) {
        (Some(cloud), Some(t)) => {
            let q = InstanceTypesQuery {
                cloud: Some(cloud),
                shade_instance_type: Some(t),
                ..InstanceTypesQuery::default()
            };
            let found: Result<InstanceTypesResponse, ApiError> =
                api(http::instances::types_of(State(app.clone()), Ok(Query(q)))).await;
            found.ok().and_then(|r| r.instance_types.into_iter().next())
        }
        _ => None,
    };
    Ok(Choices {
        offer,
        keys: api(http::sshkeys::list(State(app.clone()), acct())).await?,
        featured: TemplatesResponse {
            templates: http::featured::all().to_vec(),
        },
        own: api(http::templates::list(State(app.clone()), acct())).await?,
        volumes: api(http::volumes::list(State(app.clone()), acct())).await?,
    })
}

fn launch_form(
    app: &AppRef,
    s: &Session,
    f: &LaunchForm,
    c: &Choices,
    err: Option<&ApiError>,
) -> Markup {
    let default_key = c
        .keys
        .ssh_keys
        .iter()
        .find(|k| k.is_default)
        .map(|k| k.id.to_string());
    let chosen_key = opt(&f.ssh_key_id).or(default_key);
    let launch = if f.launch.is_empty() {
        "none"
    } else {
        f.launch.as_str()
    };
    let shown = [
        "cloud",
        "region",
        "shade_instance_type",
        "name",
        "ssh_key_id",
        "template_id",
        "launch_configuration",
        "envs",
        "rental_type",
        "auto_delete",
        "alert",
        "volume_ids",
        "template_name",
    ];
    let body = html! {
        h1 { "Launch an instance" }
        p.muted { "From the offer " strong { (f.shade_instance_type) } " on " strong { (f.cloud) }
            @if let Some(o) = &c.offer {
                ": " (o.configuration.num_gpus) "× " (o.configuration.gpu_type) ", $" (money(o.hourly_price)) "/h"
                @if let Some(b) = &o.boot_time { ", boots in " (boot(b.min_boot_in_sec)) "–" (boot(b.max_boot_in_sec)) }
            }
            ". " a href="/offers" { "Pick another offer" } }
        form.stack #launch method="post" action="/launch" {
            (csrf(s))
            (form_error(err, &shown))
            label { "Cloud" input name="cloud" value=(f.cloud) required; (field_error(err, "cloud")) }
            label { "Region"
                @match &c.offer {
                    Some(o) => select name="region" {
                        @for a in o.availability.iter().filter(|a| a.rental_type == RentalType::OnDemand) {
                            option value=(a.region) selected[f.region == a.region] {
                                (a.display_name) " (" (a.region) ")" @if !a.available { " — no capacity now" }
                            }
                        }
                    },
                    None => input name="region" value=(f.region) required;,
                }
                (field_error(err, "region"))
            }
            label { "Instance type" input name="type" value=(f.shade_instance_type) required; (field_error(err, "shade_instance_type")) }
            label { "Name" input name="name" value=(f.name) placeholder="my-box" required; (field_error(err, "name")) }
            label { "SSH key"
                select name="ssh_key_id" {
                    option value="" { "none" @if c.keys.ssh_keys.is_empty() { " (add one under SSH keys)" } }
                    @for k in &c.keys.ssh_keys {
                        option value=(k.id) selected[chosen_key.as_deref() == Some(k.id.to_string().as_str())] {
                            (k.name) @if k.is_default { " (default)" }
                        }
                    }
                }
                (field_error(err, "ssh_key_id"))
            }
            label { "Template"
                select name="template_id" {
                    option value="" { "none" }
                    optgroup label="Featured" {
                        @for t in &c.featured.templates { option value=(t.id) selected[f.template_id == t.id.to_string()] { (t.name) } }
                    }
                    @if !c.own.templates.is_empty() {
                        optgroup label="Yours" {
                            @for t in &c.own.templates { option value=(t.id) selected[f.template_id == t.id.to_string()] { (t.name) } }
                        }
                    }
                }
                (field_error(err, "template_id"))
            }
            fieldset {
                legend { "Launch configuration" }
                label { span {
                    input type="radio" name="launch" value="none" checked[launch == "none"]; " nothing " }
                }
                label { span { input type="radio" name="launch" value="docker" checked[launch == "docker"]; " a Docker image" } }
                label { "Image" input name="docker_image" value=(f.docker_image) placeholder="vllm/vllm-openai:latest"; }
                label { "Arguments" input name="docker_args" value=(f.docker_args); }
                label { span { input type="radio" name="launch" value="script" checked[launch == "script"]; " a startup script" } }
                label { "Script" textarea name="script" { (f.script) } }
                (field_error(err, "launch_configuration"))
            }
            label { "Environment (NAME=value per line)" textarea name="envs" { (f.envs) } (field_error(err, "envs")) }
            label { span { input type="checkbox" name="spot" value="on" checked[f.spot == "on"]; " spot (cheaper, may be preempted)" } (field_error(err, "rental_type")) }
            fieldset {
                legend { "Auto-delete when" }
                label { "Date (RFC 3339)" input name="auto_delete_date" value=(f.auto_delete_date) placeholder="2026-12-31T00:00:00Z"; }
                label { "Spend ($)" input name="auto_delete_spend" value=(f.auto_delete_spend) placeholder="25.00"; }
                (field_error(err, "auto_delete"))
            }
            fieldset {
                legend { "Alert when" }
                label { "Date (RFC 3339)" input name="alert_date" value=(f.alert_date); }
                label { "Spend ($)" input name="alert_spend" value=(f.alert_spend); }
                (field_error(err, "alert"))
            }
            label { "Volume"
                select name="volume_id" {
                    option value="" { "none" }
                    @for v in &c.volumes.volumes {
                        option value=(v.id) selected[f.volume_id == v.id.to_string()] { (v.name) " (" (v.cloud) " " (v.region) ", " (v.size_in_gb) " GB)" }
                    }
                }
                (field_error(err, "volume_ids"))
            }
            label { "Save these settings as a template named (optional)" input name="save_template" value=(f.save_template); (field_error(err, "template_name")) }
            div.actions {
                @if s.role >= Role::Member { button.primary type="submit" { "Launch" } }
                @else { (layout::role_note(s, "launch")) }
            }
        }
    };
    layout::page(app, s, Nav::Offers, "Launch", body)
}

/// `GET /launch?cloud=&region=&type=`.
pub async fn launch_page(
    State(app): State<AppRef>,
    session: Session,
    Query(f): Query<LaunchForm>,
) -> PageResult {
    let c = choices(&app, &session, &f).await?;
    Ok(html(launch_form(&app, &session, &f, &c, None)))
}

/// `POST /launch`: creates the instance through the API's create handler.
pub async fn launch(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<LaunchForm>,
) -> PageResult {
    match try_launch(&app, &session, &f).await {
        Ok(id) => Ok(see(&format!("/instances/{id}"))),
        Err(e) => {
            let c = choices(&app, &session, &f).await?;
            Ok(html_status(
                e.status,
                launch_form(&app, &session, &f, &c, Some(&e)),
            ))
        }
    }
}

async fn try_launch(app: &AppRef, s: &Session, f: &LaunchForm) -> Result<uuid::Uuid, ApiError> {
    let req = request(&f.create_request()?)?;
    if let Some(name) = opt(&f.save_template) {
        let mut t = f.settings()?;
        t.insert("name".into(), json!(name));
        let t = request(&Value::Object(t)).map_err(|e| e.with_field("template_name"))?;
        let saved: Result<Value, ApiError> = api(http::templates::save(
            State(app.clone()),
            Extension(s.account.clone()),
            Body(t),
        ))
        .await;
        saved.map_err(|e| match e.field {
            Some(_) => e,
            None => e.with_field("template_name"),
        })?;
    }
    let created: CreateResponse = api(http::instances::create(
        State(app.clone()),
        Extension(s.account.clone()),
        Body(req),
    ))
    .await?;
    Ok(created.id)
}
