//! Instances: the live list with bulk delete, and one instance's page with
//! its ssh command, status timeline, restart, rename and delete.

use super::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::{html, Markup};
use parasol_api::{Confirmation, Instance, Status};
use serde::Deserialize;
use serde_json::json;

use super::gpu::{self, Glance};
use super::layout::{self, csrf, empty, field_error, form_error, status, Nav};
use super::{api, html, html_status, money, request, see, PageError, PageResult, Session};
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::http::{self, AppRef, Body};

/// Rows per page of the instances list.
pub const PAGE_SIZE: usize = 50;

/// Which page of the list.
#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    page: Option<String>,
}

impl PageQuery {
    fn number(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.parse().ok())
            .filter(|p| *p >= 1)
            .unwrap_or(1)
    }
}

/// One page of the account's instances, newest first, as the API renders
/// them (costs as of now), with the total and the number of pages.
async fn one_page(
    app: &AppRef,
    s: &Session,
    page: usize,
) -> Result<(Vec<Instance>, usize, usize), ApiError> {
    let (mut rows, mut total) =
        http::instances::newest_page(app, &s.account, (page - 1) * PAGE_SIZE, PAGE_SIZE).await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    if page > pages {
        // Past the end (the list shrank): the last page instead.
        (rows, total) =
            http::instances::newest_page(app, &s.account, (pages - 1) * PAGE_SIZE, PAGE_SIZE)
                .await?;
    }
    Ok((rows, total, pages))
}

/// The agent's view of each instance of a page, in order.
async fn glances(
    app: &AppRef,
    s: &Session,
    list: &[Instance],
) -> Result<Vec<Option<Glance>>, ApiError> {
    let mut out = Vec::with_capacity(list.len());
    for i in list {
        out.push(gpu::glance(app, s, i).await?);
    }
    Ok(out)
}

/// The list's body, refreshed when the stream brings an instance event
/// (and slowly polled, so costs move). Checkboxes keep their state across
/// refreshes.
fn rows(list: &[Instance], glances: &[Option<Glance>], page: usize) -> Markup {
    html! {
        tbody #rows hx-get=(format!("/instances/rows?page={page}")) hx-trigger=(layout::LIVE_TRIGGER)
            hx-swap="outerHTML" data-live="instance." {
            @for (i, g) in list.iter().zip(glances) {
                tr data-id=(i.id) data-name=(i.name) {
                    td { input type="checkbox" name="ids" value=(i.id) id=(format!("sel-{}", i.id)) hx-preserve="true"
                        aria-label=(format!("select {}", i.name)); }
                    td { a href=(format!("/instances/{}", i.id)) { (i.name) } }
                    td.status { (status(i.status.as_str())) }
                    td { (i.cloud) }
                    td { (i.region) }
                    td { (i.shade_instance_type) }
                    td.ip { (i.ip.as_deref().unwrap_or("—")) }
                    td.num { "$" (money(i.hourly_price)) }
                    td.num.cost { "$" (i.cost_estimate) }
                    td.num.gpu-util { (g.as_ref().and_then(|g| g.latest.as_ref()).and_then(gpu::mean_utilization)
                        .map(|u| format!("{u:.0}%")).unwrap_or_else(|| "—".into())) }
                    td.health { @match g { Some(g) => (gpu::badge(g.health.status)), None => "—" } }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn list_page(
    app: &AppRef,
    s: &Session,
    list: &[Instance],
    glances: &[Option<Glance>],
    total: usize,
    page: usize,
    pages: usize,
    err: Option<&ApiError>,
) -> Markup {
    let body = html! {
        h1 { "Instances" }
        (form_error(err, &[]))
        @if total == 0 {
            (empty("No instances yet: pick an offer and launch one.", "/offers", "Browse offers"))
        } @else {
            form #bulk method="post" action="/instances/delete"
                data-confirm="Delete {n} instance(s)? This cannot be undone." data-confirm-selected="Select the instances to delete first." {
                (csrf(s))
                div.actions {
                    @if s.role >= parasol_api::Role::Member {
                        a.button.primary href="/offers" { "Launch another" }
                        button.danger type="submit" { "Delete selected" }
                    }
                    span.muted.small { (total) " instances" }
                }
                table #instances {
                    thead { tr {
                        th {} th { "Name" } th { "Status" } th { "Cloud" } th { "Region" } th { "Type" } th { "IP" }
                        th.num { "$/h" } th.num { "Cost so far" } th.num { "GPU util" } th { "Health" }
                    } }
                    (rows(list, glances, page))
                }
            }
            @if pages > 1 {
                div.pager {
                    @if page > 1 { a href=(format!("/instances?page={}", page - 1)) { "← Newer" } }
                    span { "Page " (page) " of " (pages) }
                    @if page < pages { a href=(format!("/instances?page={}", page + 1)) { "Older →" } }
                }
            }
        }
    };
    layout::page(app, s, Nav::Instances, "Instances", body)
}

/// `GET /instances`.
pub async fn list(
    State(app): State<AppRef>,
    session: Session,
    Query(q): Query<PageQuery>,
) -> PageResult {
    let (list, total, pages) = one_page(&app, &session, q.number()).await?;
    let glances = glances(&app, &session, &list).await?;
    Ok(html(list_page(
        &app,
        &session,
        &list,
        &glances,
        total,
        q.number().min(pages),
        pages,
        None,
    )))
}

/// `GET /instances/rows`: the list's body alone, for htmx.
pub async fn rows_page(
    State(app): State<AppRef>,
    session: Session,
    Query(q): Query<PageQuery>,
) -> PageResult {
    let (list, _, pages) = one_page(&app, &session, q.number()).await?;
    let glances = glances(&app, &session, &list).await?;
    Ok(html(rows(&list, &glances, q.number().min(pages))))
}

/// `POST /instances/delete`: every selected instance, through the API's
/// delete; the first refusal is shown.
pub async fn bulk_delete(
    State(app): State<AppRef>,
    session: Session,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    let ids: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v)
        .collect();
    let mut first_err = None;
    if ids.is_empty() {
        first_err = Some(ApiError::invalid("select the instances to delete first"));
    }
    for id in &ids {
        let r: Result<Confirmation, ApiError> = api(http::instances::delete(
            State(app.clone()),
            Extension(session.account.clone()),
            Path(id.clone()),
        ))
        .await;
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        None => Ok(see("/instances")),
        Some(e) => {
            let (list, total, pages) = one_page(&app, &session, 1).await?;
            let glances = glances(&app, &session, &list).await?;
            Ok(html_status(
                e.status,
                list_page(&app, &session, &list, &glances, total, 1, pages, Some(&e)),
            ))
        }
    }
}

async fn info(app: &AppRef, s: &Session, id: &str) -> Result<Instance, ApiError> {
    api(http::instances::info(
        State(app.clone()),
        Extension(s.account.clone()),
        Path(id.to_string()),
    ))
    .await
}

fn ssh_command(i: &Instance) -> Option<String> {
    let ip = i.ip.as_deref()?;
    Some(format!("ssh -p {} {}@{ip}", i.ssh_port, i.ssh_user))
}

/// The parts of an instance page that change on their own, refreshed when
/// the stream brings an event of this instance (and slowly polled, so the
/// cost moves); a deleted instance's stay as they are.
fn live_part(i: &Instance, steps: &[Step]) -> Markup {
    let done = matches!(i.status, Status::Deleted);
    html! {
        div #live hx-get=[(!done).then(|| format!("/instances/{}/live", i.id))] hx-trigger=(layout::LIVE_TRIGGER)
            hx-swap="outerHTML" data-live=[(!done).then_some("")] data-live-id=(i.id) {
            div.cards {
                div.card { div.muted.small { "Status" } div.big.status { (status(i.status.as_str())) } }
                div.card { div.muted.small { "Cost so far" } div.big.cost { "$" (i.cost_estimate) } }
                div.card { div.muted.small { "Price" } div.big { "$" (money(i.hourly_price)) "/h" } }
            }
            @if let Some(d) = &i.status_details { p.muted { (d) } }
            @match ssh_command(i) {
                Some(cmd) => div.ssh {
                    code #ssh-command { (cmd) }
                    button type="button" data-copy="ssh-command" { "Copy" }
                },
                None => p.muted.small { "The ssh command appears here once the machine has an address." },
            }
            h2 { "Timeline" }
            ol.timeline {
                @for st in steps { li { span.muted.small { (st.at.format("%Y-%m-%d %H:%M:%S UTC")) } " " (st.what) } }
            }
        }
    }
}

/// One dated line of an instance's timeline.
struct Step {
    at: chrono::DateTime<chrono::Utc>,
    what: String,
}

async fn timeline(app: &AppRef, s: &Session, i: &Instance) -> Result<Vec<Step>, ApiError> {
    let mut steps = vec![Step {
        at: i.created_at,
        what: "created".into(),
    }];
    if let Some(a) = i.active_at {
        steps.push(Step {
            at: a,
            what: "active".into(),
        });
    }
    for e in app.store.list_events(s.account.id).await? {
        if e.instance_id == Some(i.id) {
            steps.push(Step {
                at: from_millis(e.created_at),
                what: format!("{}: {}", e.kind, e.message),
            });
        }
    }
    if let Some(d) = i.deleted_at {
        steps.push(Step {
            at: d,
            what: "deleted".into(),
        });
    }
    steps.sort_by_key(|s| s.at);
    Ok(steps)
}

async fn instance_page(app: &AppRef, s: &Session, id: &str, err: Option<&ApiError>) -> PageResult {
    let i = info(app, s, id).await?;
    let steps = timeline(app, s, &i).await?;
    let c = &i.configuration;
    let body = html! {
        p.small { a href="/instances" { "← Instances" } }
        h1 { (i.name) }
        (form_error(err, &["name"]))
        (live_part(&i, &steps))
        (gpu::part(app, s, &i).await?)
        div.actions {
            form.inline method="post" action=(format!("/instances/{}/restart", i.id)) {
                (csrf(s)) button type="submit" { "Restart" }
            }
            form.inline method="post" action=(format!("/instances/{}/rename", i.id)) {
                (csrf(s))
                input name="name" value=(i.name) aria-label="new name" required;
                button type="submit" { "Rename" }
                (field_error(err, "name"))
            }
            form.inline method="post" action=(format!("/instances/{}/delete", i.id))
                data-confirm="Delete this instance? This cannot be undone." {
                (csrf(s)) button.danger type="submit" { "Delete" }
            }
        }
        h2 { "Details" }
        dl.fields {
            dt { "ID" } dd { code { (i.id) } }
            dt { "Cloud" } dd { (i.cloud) }
            dt { "Region" } dd { (i.region) }
            dt { "Type" } dd { (i.shade_instance_type) " (" (i.cloud_instance_type) ")" }
            dt { "Hardware" } dd { (c.num_gpus) "× " (c.gpu_type) " " (c.vram_per_gpu_in_gb) " GB, " (c.vcpus) " vCPUs, "
                (c.memory_in_gb) " GB RAM, " (c.storage_in_gb) " GB disk" @if c.nvlink { ", NVLink" } }
            dt { "OS" } dd { (c.os) }
            dt { "Rental" } dd { (i.rental_terms.rental_type.as_str()) }
            dt { "SSH" } dd { (i.ssh_user) " on port " (i.ssh_port) }
            dt { "SSH key" } dd { (i.ssh_key_id.map(|k| k.to_string()).unwrap_or_else(|| "none".into())) }
            dt { "Cloud id" } dd { (if i.cloud_assigned_id.is_empty() { "—" } else { &i.cloud_assigned_id }) }
            dt { "Launch" } dd { (launch_summary(&i)) }
            dt { "Envs" } dd { @for e in &i.envs { code { (e.name) } " " } @if i.envs.is_empty() { "none" } }
            dt { "Auto-delete" } dd { (thresholds(i.auto_delete.as_ref())) }
            dt { "Alert" } dd { (thresholds(i.alert.as_ref())) }
            dt { "Volumes" } dd { @if i.volume_ids.is_empty() { "none" } @else { (i.volume_ids.join(", ")) } }
            dt { "Tags" } dd { @if i.tags.is_empty() { "none" } @else { (i.tags.join(", ")) } }
            dt { "Created" } dd { (i.created_at.to_rfc3339()) }
        }
    };
    let status = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        status,
        layout::page(app, s, Nav::Instances, &i.name, body),
    ))
}

fn launch_summary(i: &Instance) -> String {
    match &i.launch_configuration {
        None => "nothing".into(),
        Some(l) => match (&l.docker_configuration, &l.script_configuration) {
            (Some(d), _) => format!(
                "docker {}{}",
                d.image,
                d.args
                    .as_deref()
                    .map(|a| format!(" {a}"))
                    .unwrap_or_default()
            ),
            (None, Some(_)) => "a startup script".into(),
            (None, None) => "nothing".into(),
        },
    }
}

fn thresholds(t: Option<&parasol_api::AutoDelete>) -> String {
    let Some(t) = t else { return "none".into() };
    let mut parts = vec![];
    if let Some(d) = &t.date_threshold {
        parts.push(format!("on {d}"));
    }
    if let Some(s) = &t.spend_threshold {
        parts.push(format!("at ${s}"));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `GET /instances/{id}`.
pub async fn page(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    instance_page(&app, &session, &id, None).await
}

/// `GET /instances/{id}/live`.
pub async fn live(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let i = info(&app, &session, &id).await?;
    let steps = timeline(&app, &session, &i).await?;
    Ok(html(live_part(&i, &steps)))
}

async fn after(
    app: &AppRef,
    s: &Session,
    id: &str,
    r: Result<Confirmation, ApiError>,
    to: String,
) -> PageResult {
    match r {
        Ok(_) => Ok(see(&to)),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(PageError(e)),
        Err(e) => instance_page(app, s, id, Some(&e)).await,
    }
}

/// `POST /instances/{id}/restart`.
pub async fn restart(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r = api(http::instances::restart(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id.clone()),
    ))
    .await;
    after(&app, &session, &id, r, format!("/instances/{id}")).await
}

/// The rename form.
#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    name: String,
}

/// `POST /instances/{id}/rename`.
pub async fn rename(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<RenameForm>,
) -> PageResult {
    let r = match request(&json!({"name": f.name.trim()})) {
        Ok(req) => {
            api(http::instances::update(
                State(app.clone()),
                Extension(session.account.clone()),
                Path(id.clone()),
                Body(req),
            ))
            .await
        }
        Err(e) => Err(e),
    };
    after(&app, &session, &id, r, format!("/instances/{id}")).await
}

/// `POST /instances/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r = api(http::instances::delete(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id.clone()),
    ))
    .await;
    after(&app, &session, &id, r, "/instances".to_string()).await
}
