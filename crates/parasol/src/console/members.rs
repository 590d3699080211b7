//! Members (owners' page): the people of the account with their roles,
//! invitations by email, role changes and removals. Each form runs the
//! API handler it stands for (http/members.rs).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::html;
use parasol_api::Role;
use serde::Deserialize;
use serde_json::{json, Value};

use super::layout::{self, csrf, form_error, Nav};
use super::{api, html_status, request, see, Form, PageResult, Session};
use crate::error::ApiError;
use crate::http::{self, AppRef, Body};

/// The invite form (and the role picker of each member).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct InviteForm {
    email: String,
    role: String,
}

fn role_options(chosen: &str) -> maud::Markup {
    html! {
        @for r in Role::ALL {
            option value=(r) selected[chosen == r.as_str()] { (r) }
        }
    }
}

async fn render(app: &AppRef, s: &Session, f: &InviteForm, err: Option<&ApiError>) -> PageResult {
    let listed: Value = api(http::members::list(
        State(app.clone()),
        Extension(s.account.clone()),
    ))
    .await?;
    let none = vec![];
    let members = listed["members"].as_array().unwrap_or(&none);
    let invites = listed["invites"].as_array().unwrap_or(&none);
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let body = html! {
        h1 { "Members" }
        p.small { "People who sign in through your identity provider. The server's rules add people by group or email domain at each sign-in; an invitation adds whoever signs in with that email. Removing someone ends their sessions and personal keys here at once." }
        (form_error(err, &["email", "role"]))
        @if members.is_empty() {
            p.muted { "Nobody has signed in to " (s.account.name) " yet." }
        } @else {
            table #members {
                thead { tr { th { "Person" } th { "Role" } th { "From" } th { "Last sign-in" } th {} } }
                tbody {
                    @for m in members {
                        @let id = text(&m["id"]);
                        tr data-id=(id) {
                            td { (m["email"].as_str().or(m["name"].as_str()).unwrap_or("?")) }
                            td {
                                form.inline method="post" action=(format!("/members/{id}/role")) {
                                    (csrf(s))
                                    select name="role" aria-label="Role" { (role_options(&text(&m["role"]))) }
                                    button.link type="submit" { "Change" }
                                }
                            }
                            td { (text(&m["source"])) }
                            td { (m["last_sign_in_at"].as_str().unwrap_or("never")) }
                            td {
                                form.inline method="post" action=(format!("/members/{id}/remove"))
                                    data-confirm="Remove this person? Their sessions and personal keys here end at once." {
                                    (csrf(s)) button.danger type="submit" { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Invitations" }
        @if invites.is_empty() { p.muted { "None waiting." } }
        @else {
            table #invites {
                thead { tr { th { "Email" } th { "Role" } th {} } }
                tbody {
                    @for i in invites {
                        tr data-id=(text(&i["email"])) {
                            td { (text(&i["email"])) }
                            td { (text(&i["role"])) }
                            td {
                                form.inline method="post" action="/members/invites/delete" {
                                    (csrf(s))
                                    input type="hidden" name="email" value=(text(&i["email"]));
                                    button.link type="submit" { "Withdraw" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 #invite { "Invite someone" }
        form.stack method="post" action="/members/invite" {
            (csrf(s))
            label { "Email" input type="email" name="email" value=(f.email) placeholder="ada@example.com" required; (layout::field_error(err, "email")) }
            label { "Role" select name="role" { (role_options(if f.role.is_empty() { "member" } else { &f.role })) } (layout::field_error(err, "role")) }
            div.actions { button.primary type="submit" { "Invite" } }
        }
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::Members, "Members", body),
    ))
}

/// `GET /members`.
pub async fn page(State(app): State<AppRef>, session: Session) -> PageResult {
    render(&app, &session, &InviteForm::default(), None).await
}

/// `POST /members/invite`.
pub async fn invite(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<InviteForm>,
) -> PageResult {
    let r: Result<Value, ApiError> = async {
        let req = request(&json!({"email": f.email.trim(), "role": f.role}))?;
        api(http::members::invite(
            State(app.clone()),
            Extension(session.account.clone()),
            Extension(session.principal()),
            Body(req),
        ))
        .await
    }
    .await;
    match r {
        Ok(_) => Ok(see("/members")),
        Err(e) => render(&app, &session, &f, Some(&e)).await,
    }
}

/// The role form of one member.
#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

/// `POST /members/{id}/role`.
pub async fn set_role(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<RoleForm>,
) -> PageResult {
    let r: Result<Value, ApiError> = async {
        let req = request(&json!({"role": f.role}))?;
        api(http::members::update(
            State(app.clone()),
            Extension(session.account.clone()),
            Path(id),
            Body(req),
        ))
        .await
    }
    .await;
    match r {
        Ok(_) => Ok(see("/members")),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(e.into()),
        Err(e) => render(&app, &session, &InviteForm::default(), Some(&e)).await,
    }
}

/// `POST /members/{id}/remove`.
pub async fn remove(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    api::<Value>(http::members::remove(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id),
    ))
    .await?;
    Ok(see("/members"))
}

/// The withdraw form of one invitation.
#[derive(Deserialize)]
pub struct UninviteForm {
    email: String,
}

/// `POST /members/invites/delete`.
pub async fn uninvite(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<UninviteForm>,
) -> PageResult {
    let req = request(&json!({"email": f.email}))?;
    api::<Value>(http::members::uninvite(
        State(app.clone()),
        Extension(session.account.clone()),
        Body(req),
    ))
    .await?;
    Ok(see("/members"))
}
