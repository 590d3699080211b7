//! Clusters: the list, one cluster's page with its nodes, and the launch
//! form over the cluster shapes `/clusters/types` offers.

use super::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::html;
use parasol_api::{
    Cluster, ClusterTypesResponse, ClustersResponse, Confirmation, CreateResponse, SshKeysResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::layout::{self, csrf, empty, field_error, form_error, status, Nav};
use super::{api, html, html_status, money, request, see, PageError, PageResult, Session};
use crate::error::ApiError;
use crate::http::{self, AppRef, Body};

/// `GET /clusters`.
pub async fn list(State(app): State<AppRef>, session: Session) -> PageResult {
    let all: ClustersResponse = api(http::clusters::list(
        State(app.clone()),
        Extension(session.account.clone()),
    ))
    .await?;
    let body = html! {
        h1 { "Clusters" }
        @if session.role >= parasol_api::Role::Member {
            div.actions { a.button.primary href="/clusters/new" { "Launch a cluster" } }
        }
        @if all.clusters.is_empty() {
            (empty("No clusters yet: a cluster is several nodes of one shape, rented all or nothing.", "/clusters/new", "Launch a cluster"))
        } @else {
            table #clusters {
                thead { tr { th { "Name" } th { "Status" } th { "Cloud" } th { "Region" } th.num { "Nodes" } th.num { "$/h" } th.num { "Cost so far" } } }
                tbody {
                    @for c in all.clusters.iter().rev() {
                        tr data-id=(c.id) {
                            td { a href=(format!("/clusters/{}", c.id)) { (c.name) } }
                            td { (status(c.status.as_str())) }
                            td { (c.cloud) } td { (c.region_info.region) }
                            td.num { (c.instances.len()) }
                            td.num { "$" (money(c.hourly_price)) }
                            td.num { (c.cost_estimate.as_deref().unwrap_or("$0.00")) }
                        }
                    }
                }
            }
        }
    };
    Ok(html(layout::page(
        &app,
        &session,
        Nav::Clusters,
        "Clusters",
        body,
    )))
}

async fn info(app: &AppRef, s: &Session, id: &str) -> Result<Cluster, ApiError> {
    api(http::clusters::info(
        State(app.clone()),
        Extension(s.account.clone()),
        Path(id.to_string()),
    ))
    .await
}

/// `GET /clusters/{id}`.
pub async fn page(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    cluster_page(&app, &session, &id, None).await
}

async fn cluster_page(app: &AppRef, s: &Session, id: &str, err: Option<&ApiError>) -> PageResult {
    let c = info(app, s, id).await?;
    let body = html! {
        p.small { a href="/clusters" { "← Clusters" } }
        h1 { (c.name) }
        (form_error(err, &[]))
        div.cards hx-get=(format!("/clusters/{}", c.id)) hx-trigger=(layout::LIVE_TRIGGER) hx-select=".cards" hx-swap="outerHTML"
            data-live="cluster." data-live-id=(c.id) {
            div.card { div.muted.small { "Status" } div.big { (status(c.status.as_str())) } }
            div.card { div.muted.small { "Cost so far" } div.big { (c.cost_estimate.as_deref().unwrap_or("$0.00")) } }
            div.card { div.muted.small { "Price" } div.big { "$" (money(c.hourly_price)) "/h" } }
        }
        @if let Some(d) = &c.status_details { p.muted { (d) } }
        div.actions {
            form.inline method="post" action=(format!("/clusters/{}/delete", c.id))
                data-confirm="Delete this cluster and all its nodes?" {
                (csrf(s)) button.danger type="submit" { "Delete cluster" }
            }
        }
        dl.fields {
            dt { "ID" } dd { code { (c.id) } }
            dt { "Cloud" } dd { (c.cloud) }
            dt { "Region" } dd { (c.region_info.display_name) " (" (c.region_info.region) ")" }
            dt { "Created" } dd { (c.created_at.to_rfc3339()) }
        }
        h2 { "Nodes" }
        table #nodes {
            thead { tr { th { "Name" } th { "Status" } th { "Type" } th { "IP" } th.num { "Cost so far" } } }
            tbody {
                @for n in &c.instances {
                    tr {
                        td { a href=(format!("/instances/{}", n.id)) { (n.name) } }
                        td { (status(n.status.as_str())) }
                        td { (n.shade_instance_type) }
                        td { (n.ip.as_deref().unwrap_or("—")) }
                        td.num { "$" (n.cost_estimate) }
                    }
                }
            }
        }
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::Clusters, &c.name, body),
    ))
}

/// `POST /clusters/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r: Result<Confirmation, ApiError> = api(http::clusters::delete(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id.clone()),
    ))
    .await;
    match r {
        Ok(_) => Ok(see("/clusters")),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(PageError(e)),
        Err(e) => cluster_page(&app, &session, &id, Some(&e)).await,
    }
}

/// The cluster launch form.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ClusterForm {
    name: String,
    cloud: String,
    region: String,
    cluster_type: String,
    num_instances: String,
    ssh_key_id: String,
}

async fn launch_form(
    app: &AppRef,
    s: &Session,
    f: &ClusterForm,
    err: Option<&ApiError>,
) -> PageResult {
    let types: ClusterTypesResponse = api(http::clusters::types(State(app.clone()))).await?;
    let keys: SshKeysResponse = api(http::sshkeys::list(
        State(app.clone()),
        Extension(s.account.clone()),
    ))
    .await?;
    let chosen = if f.ssh_key_id.is_empty() {
        keys.ssh_keys
            .iter()
            .find(|k| k.is_default)
            .map(|k| k.id.to_string())
            .unwrap_or_default()
    } else {
        f.ssh_key_id.clone()
    };
    let shown = [
        "name",
        "cloud",
        "region",
        "cluster_type",
        "num_instances",
        "ssh_key_id",
    ];
    let body = html! {
        p.small { a href="/clusters" { "← Clusters" } }
        h1 { "Launch a cluster" }
        form.stack #cluster-launch method="post" action="/clusters/new" {
            (csrf(s))
            (form_error(err, &shown))
            label { "Name" input name="name" value=(f.name) required; (field_error(err, "name")) }
            label { "Cloud" input name="cloud" value=(f.cloud) required; (field_error(err, "cloud")) }
            label { "Region" input name="region" value=(f.region) required; (field_error(err, "region")) }
            label { "Node type" input name="cluster_type" value=(f.cluster_type) required; (field_error(err, "cluster_type")) }
            label { "Nodes" input name="num_instances" value=(f.num_instances) inputmode="numeric" required; (field_error(err, "num_instances")) }
            label { "SSH key"
                select name="ssh_key_id" {
                    option value="" { "none" }
                    @for k in &keys.ssh_keys { option value=(k.id) selected[chosen == k.id.to_string()] { (k.name) @if k.is_default { " (default)" } } }
                }
                (field_error(err, "ssh_key_id"))
            }
            div.actions { button.primary type="submit" { "Launch cluster" } }
        }
        h2 { "Cluster shapes" }
        table #cluster-types {
            thead { tr { th { "Cloud" } th { "Region" } th { "Node type" } th.num { "Nodes" } th { "Available" } th.num { "$/h per node" } th {} } }
            tbody {
                @for t in &types.cluster_types {
                    tr {
                        td { (t.cloud) } td { (t.availability.region) } td { (t.cluster_type.shade_instance_type) }
                        td.num { (t.num_instances) }
                        td { @if t.availability.available { span.st.st-active { "yes" } } @else { span.st.st-gone { "no" } } }
                        td.num { "$" (money(t.cluster_type.hourly_price)) }
                        td { a href=(format!("/clusters/new?{}", serde_urlencoded::to_string([
                            ("cloud", t.cloud.as_str()), ("region", t.availability.region.as_str()),
                            ("cluster_type", t.cluster_type.shade_instance_type.as_str()),
                            ("num_instances", t.num_instances.to_string().as_str())]).unwrap_or_default())) { "Use" } }
                    }
                }
            }
        }
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::Clusters, "Launch a cluster", body),
    ))
}

/// `GET /clusters/new`.
pub async fn launch_page(
    State(app): State<AppRef>,
    session: Session,
    Query(f): Query<ClusterForm>,
) -> PageResult {
    launch_form(&app, &session, &f, None).await
}

/// `POST /clusters/new`.
pub async fn launch(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<ClusterForm>,
) -> PageResult {
    let r = async {
        let n: i64 = f.num_instances.trim().parse().map_err(|_| {
            ApiError::invalid_field("num_instances", format!("the number of nodes must be a whole number, got {:?}", f.num_instances))
        })?;
        let mut v = json!({"name": f.name.trim(), "cloud": f.cloud.trim(), "region": f.region.trim(),
            "cluster_type": f.cluster_type.trim(), "num_instances": n});
        if !f.ssh_key_id.is_empty() {
            v["ssh_key_id"] = json!(f.ssh_key_id);
        }
        let req = request(&v)?;
        let c: CreateResponse =
            api(http::clusters::create(State(app.clone()), Extension(session.account.clone()), Body(req))).await?;
        Ok::<_, ApiError>(c.id)
    }
    .await;
    match r {
        Ok(id) => Ok(see(&format!("/clusters/{id}"))),
        Err(e) => launch_form(&app, &session, &f, Some(&e)).await,
    }
}
