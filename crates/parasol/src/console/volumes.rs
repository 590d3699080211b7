//! Volumes: create, delete, and which instance mounts each.

use super::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::html;
use parasol_api::{Confirmation, CreateVolumeResponse, VolumesResponse, VolumesTypesResponse};
use serde::Deserialize;
use serde_json::json;

use super::layout::{self, csrf, empty, field_error, form_error, Nav};
use super::{api, html_status, request, see, PageResult, Session};
use crate::error::ApiError;
use crate::http::{self, AppRef, Body};

/// The create form; `place` is `cloud/region` from the volume types.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CreateForm {
    name: String,
    place: String,
    size_in_gb: String,
}

async fn render(app: &AppRef, s: &Session, f: &CreateForm, err: Option<&ApiError>) -> PageResult {
    let vols: VolumesResponse = api(http::volumes::list(
        State(app.clone()),
        Extension(s.account.clone()),
    ))
    .await?;
    let types: VolumesTypesResponse =
        api(async { Ok(http::volumes::types(State(app.clone())).await) }).await?;
    let body = html! {
        h1 { "Volumes" }
        (form_error(err, &["name", "cloud", "region", "size_in_gb"]))
        @if vols.volumes.is_empty() {
            (empty("No volumes yet: a volume keeps data across instances in one region.", "#create-volume", "Create a volume"))
        } @else {
            table #volumes {
                thead { tr { th { "Name" } th { "Cloud" } th { "Region" } th.num { "Size" } th { "Status" } th { "Mounted by" } th.num { "Cost so far" } th {} } }
                tbody {
                    @for v in &vols.volumes {
                        tr data-id=(v.id) {
                            td { (v.name) } td { (v.cloud) } td { (v.region) } td.num { (v.size_in_gb) " GB" }
                            td { (v.status.as_deref().unwrap_or("")) @if let Some(d) = &v.status_details { " " span.muted { (d) } } }
                            td { @if v.mounted_by.is_empty() { span.muted { "no instance" } } @else {
                                a href=(format!("/instances/{}", v.mounted_by)) { (v.mounted_by) } } }
                            td.num { "$" (v.cost_estimate) }
                            td { form.inline method="post" action=(format!("/volumes/{}/delete", v.id))
                                data-confirm="Delete this volume and its data?" {
                                (csrf(s)) button.danger type="submit" { "Delete" } } }
                        }
                    }
                }
            }
        }
        h2 #create-volume { "Create a volume" }
        form.stack method="post" action="/volumes" {
            (csrf(s))
            label { "Name" input name="name" value=(f.name) required; (field_error(err, "name")) }
            label { "Where"
                select name="place" {
                    @for t in &types.volume_types {
                        @let p = format!("{}/{}", t.cloud, t.region);
                        option value=(p) selected[f.place == p] { (t.cloud) " " (t.region) " ($" (t.price_per_gb_per_hour) "/GB-h)" }
                    }
                }
                (field_error(err, "cloud")) (field_error(err, "region"))
            }
            label { "Size (GB)" input name="size_in_gb" value=(f.size_in_gb) inputmode="numeric" required; (field_error(err, "size_in_gb")) }
            div.actions { button.primary type="submit" { "Create volume" } }
        }
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::Volumes, "Volumes", body),
    ))
}

/// `GET /volumes`.
pub async fn page(State(app): State<AppRef>, session: Session) -> PageResult {
    render(&app, &session, &CreateForm::default(), None).await
}

/// `POST /volumes`.
pub async fn create(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<CreateForm>,
) -> PageResult {
    let r: Result<CreateVolumeResponse, ApiError> = async {
        let (cloud, region) = f.place.split_once('/').unwrap_or((f.place.as_str(), ""));
        let size: i64 = f.size_in_gb.trim().parse().map_err(|_| {
            ApiError::invalid_field(
                "size_in_gb",
                format!(
                    "the size must be a whole number of GB, got {:?}",
                    f.size_in_gb
                ),
            )
        })?;
        let req = request(
            &json!({"name": f.name.trim(), "cloud": cloud, "region": region, "size_in_gb": size}),
        )?;
        api(http::volumes::create(
            State(app.clone()),
            Extension(session.account.clone()),
            Body(req),
        ))
        .await
    }
    .await;
    match r {
        Ok(_) => Ok(see("/volumes")),
        Err(e) => render(&app, &session, &f, Some(&e)).await,
    }
}

/// `POST /volumes/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r: Result<Confirmation, ApiError> = api(http::volumes::delete(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id),
    ))
    .await;
    match r {
        Ok(_) => Ok(see("/volumes")),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(e.into()),
        Err(e) => render(&app, &session, &CreateForm::default(), Some(&e)).await,
    }
}
