//! Templates: featured (read-only) and the account's own; save and delete.
//! The launch form can also save its settings as a template.

use super::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::{html, Markup};
use parasol_api::{Confirmation, Template, TemplateCreateResponse, TemplatesResponse};
use serde::Deserialize;
use serde_json::json;

use super::layout::{self, csrf, field_error, form_error, Nav};
use super::{api, html_status, parse_envs, request, see, PageResult, Session};
use crate::error::ApiError;
use crate::http::{self, AppRef, Body};

/// The save form: a docker image (optional), envs and a description.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SaveForm {
    name: String,
    description: String,
    docker_image: String,
    envs: String,
}

fn table(list: &[Template], s: &Session, own: bool) -> Markup {
    html! {
        table.templates {
            thead { tr { th { "Name" } th { "Description" } th { "Runs" } th {} } }
            tbody {
                @for t in list {
                    tr data-id=(t.id) {
                        td { (t.name) }
                        td.small { (t.description.as_deref().unwrap_or("")) }
                        td.small { @match t.launch_configuration.as_ref().and_then(|l| l.docker_configuration.as_ref()) {
                            Some(d) => code { (d.image) },
                            None => span.muted { "—" },
                        } }
                        td {
                            @if own {
                                form.inline method="post" action=(format!("/templates/{}/delete", t.id))
                                    data-confirm="Delete this template?" {
                                    (csrf(s)) button.danger type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn render(app: &AppRef, s: &Session, f: &SaveForm, err: Option<&ApiError>) -> PageResult {
    let featured = TemplatesResponse {
        templates: http::featured::all().to_vec(),
    };
    let own: TemplatesResponse = api(http::templates::list(
        State(app.clone()),
        Extension(s.account.clone()),
    ))
    .await?;
    let body = html! {
        h1 { "Templates" }
        p.muted { "A template is launch settings to reuse: pick one on the launch form, or tick “save as a template” there." }
        (form_error(err, &["name", "description", "launch_configuration", "envs"]))
        h2 { "Yours" }
        @if own.templates.is_empty() {
            div.empty { p { "No templates of your own yet: save one below, or from the launch form." } }
        } @else { (table(&own.templates, s, true)) }
        h2 { "Featured" }
        (table(&featured.templates, s, false))
        h2 { "Save a template" }
        form.stack method="post" action="/templates" {
            (csrf(s))
            label { "Name" input name="name" value=(f.name) required; (field_error(err, "name")) }
            label { "Description" input name="description" value=(f.description); (field_error(err, "description")) }
            label { "Docker image (optional)" input name="docker_image" value=(f.docker_image); (field_error(err, "launch_configuration")) }
            label { "Environment (NAME=value per line)" textarea name="envs" { (f.envs) } (field_error(err, "envs")) }
            div.actions { button.primary type="submit" { "Save template" } }
        }
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::Templates, "Templates", body),
    ))
}

/// `GET /templates`.
pub async fn page(State(app): State<AppRef>, session: Session) -> PageResult {
    render(&app, &session, &SaveForm::default(), None).await
}

/// `POST /templates`.
pub async fn save(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<SaveForm>,
) -> PageResult {
    let r: Result<TemplateCreateResponse, ApiError> = async {
        let mut v = json!({"name": f.name.trim()});
        if !f.description.trim().is_empty() {
            v["description"] = json!(f.description.trim());
        }
        if !f.docker_image.trim().is_empty() {
            v["launch_configuration"] =
                json!({"type": "docker", "docker_configuration": {"image": f.docker_image.trim()}});
        }
        let envs = parse_envs(&f.envs)?;
        if !envs.is_empty() {
            v["envs"] = json!(envs);
        }
        let req = request(&v)?;
        api(http::templates::save(
            State(app.clone()),
            Extension(session.account.clone()),
            Body(req),
        ))
        .await
    }
    .await;
    match r {
        Ok(_) => Ok(see("/templates")),
        Err(e) => render(&app, &session, &f, Some(&e)).await,
    }
}

/// `POST /templates/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r: Result<Confirmation, ApiError> = api(http::templates::delete(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id),
    ))
    .await;
    match r {
        Ok(_) => Ok(see("/templates")),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(e.into()),
        Err(e) => render(&app, &session, &SaveForm::default(), Some(&e)).await,
    }
}
