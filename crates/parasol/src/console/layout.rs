//! The page frame (navigation, sim banner) and the embedded assets.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::Session;
use crate::http::AppRef;

/// htmx, vendored (version and licence in its first line).
const HTMX: &str = include_str!("assets/htmx.min.js");
/// The console's own style sheet.
const CSS: &str = include_str!("assets/console.css");
/// The console's own script refreshing live parts from the event stream.
const LIVE: &str = include_str!("assets/live.js");
/// Confirmations and copy buttons (no page carries inline script).
const SCRIPT: &str = include_str!("assets/console.js");

/// The `hx-trigger` of a live part: the stream's nudge, and a slow poll
/// for when the stream is down.
pub const LIVE_TRIGGER: &str = "live, every 30s";

/// `GET /assets/htmx.min.js`.
pub async fn htmx() -> Response {
    asset("text/javascript; charset=utf-8", HTMX)
}

/// `GET /assets/live.js`: the script, after the stream's event names (the
/// webhook types, listed once in crate::webhooks).
pub async fn live() -> Response {
    static SCRIPT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let types = serde_json::to_string(crate::webhooks::TYPES).unwrap_or_default();
        format!("var EVENT_TYPES = {types};\n{LIVE}")
    });
    asset("text/javascript; charset=utf-8", SCRIPT.as_str())
}

/// `GET /assets/console.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /assets/console.css`.
pub async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx would add a <style> element, which the CSP refuses.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false}"#;
            title { (title) " · Parasol" }
            link rel="stylesheet" href="/assets/console.css";
            script src="/assets/htmx.min.js" defer {}
            script src="/assets/live.js" defer {}
            script src="/assets/console.js" defer {}
        }
    }
}

/// The banner shown while the built-in sim serves clouds.
pub fn sim_banner() -> Markup {
    html! {
        div.banner role="status" {
            "Capacity is simulated: the built-in sim serves these clouds and no real machine is rented."
        }
    }
}

/// A page without navigation (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { (body) }
        }
    }
}

/// Which navigation entry a page belongs to.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum Nav {
    Offers,
    Instances,
    Clusters,
    Keys,
    ApiKeys,
    Webhooks,
    Volumes,
    Templates,
    Events,
    Spend,
    Members,
    System,
}

const ENTRIES: &[(Nav, &str, &str)] = &[
    (Nav::Offers, "/offers", "Offers"),
    (Nav::Instances, "/instances", "Instances"),
    (Nav::Clusters, "/clusters", "Clusters"),
    (Nav::Keys, "/keys", "SSH keys"),
    (Nav::ApiKeys, "/api-keys", "API keys"),
    (Nav::Webhooks, "/webhooks", "Webhooks"),
    (Nav::Volumes, "/volumes", "Volumes"),
    (Nav::Templates, "/templates", "Templates"),
    (Nav::Events, "/events", "Events"),
    (Nav::Spend, "/spend", "Spend"),
];

/// A signed-in page: navigation, the sim banner, then `body`. htmx sends
/// the CSRF token with every request it makes.
pub fn page(app: &AppRef, s: &Session, nav: Nav, title: &str, body: Markup) -> Markup {
    let hx_headers = format!("{{\"x-csrf-token\": \"{}\"}}", s.csrf);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-headers=(hx_headers) {
                header.top {
                    a.brand href="/instances" { "☂ Parasol" }
                    nav {
                        @for (n, href, label) in ENTRIES {
                            a href=(href) class=[(*n == nav).then_some("active")] { (label) }
                        }
                        @if s.role >= parasol_api::Role::Owner {
                            a href="/members" class=[(nav == Nav::Members).then_some("active")] { "Members" }
                        }
                        @if s.account.is_admin {
                            a href="/system" class=[(nav == Nav::System).then_some("active")] { "System" }
                        }
                    }
                    div.who {
                        @if let Some(me) = &s.person {
                            span.person { (me.person.label()) " · " (s.role) }
                            @if me.accounts.len() > 1 {
                                form.switch method="post" action="/account/switch" {
                                    (csrf(s))
                                    select name="account" aria-label="Account" {
                                        @for m in &me.accounts {
                                            option value=(m.account_id) selected[m.account_id == s.account.id] { (m.account_name) }
                                        }
                                    }
                                    button.link type="submit" { "Switch" }
                                }
                            }
                        }
                        span.account { (s.account.name) @if s.account.is_admin { " (admin)" } }
                        form method="post" action="/logout" {
                            (csrf(s))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                @if app.sim.is_some() { (sim_banner()) }
                main { (body) }
            }
        }
    }
}

/// Said where a button is left out for the session's role.
pub fn role_note(s: &Session, what: &str) -> Markup {
    html! {
        p.small.muted.role-note { "Your role here (" (s.role) ") cannot " (what) "; ask an owner of "
            (s.account.name) " for the member role." }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name=(super::session::CSRF_FIELD) value=(s.csrf); }
}

/// The error for `field`, if `err` names it.
pub fn field_error(err: Option<&crate::error::ApiError>, field: &str) -> Markup {
    html! {
        @if let Some(e) = err.filter(|e| e.field.as_deref().is_some_and(|f| f == field || f.starts_with(&format!("{field}.")) || f.starts_with(&format!("{field}[")))) {
            p.field-error role="alert" data-field=(field) { (e.message) }
        }
    }
}

/// An error that names no field shown on the form, at the top of it.
pub fn form_error(err: Option<&crate::error::ApiError>, shown: &[&str]) -> Markup {
    html! {
        @if let Some(e) = err.filter(|e| e.field.as_deref().is_none_or(|f| !shown.iter().any(|s| f == *s || f.starts_with(&format!("{s}.")) || f.starts_with(&format!("{s}["))))) {
            p.form-error role="alert" { (e.message) }
        }
    }
}

/// A time as the console's tables show it.
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A status word, coloured by what it means.
pub fn status(s: &str) -> Markup {
    let class = match s {
        "active" => "st st-active",
        "error" => "st st-error",
        "deleted" | "deleting" => "st st-gone",
        _ => "st st-pending",
    };
    html! { span class=(class) { (s) } }
}

/// An empty state: what is missing and what to do next.
pub fn empty(message: &str, href: &str, action: &str) -> Markup {
    html! {
        div.empty {
            p { (message) }
            a.button.primary href=(href) { (action) }
        }
    }
}
