//! `/templates/*`: saved launch settings, the featured ones Parasol ships
//! (see [`super::featured`]), and how instance create applies one.
//!
//! Who may do what: an account reads its own templates, every public one
//! and the featured ones; it changes and deletes only its own. A write to a
//! template the caller can read but not change (public, featured) answers
//! 403; to one it cannot read, 404, as for an unknown id, so private
//! templates stay invisible.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use parasol_api::{
    Confirmation, CreateRequest, Env, Template, TemplateCreateResponse, TemplateSaveRequest,
    TemplatesResponse,
};
use uuid::Uuid;

use super::{featured, ok, path_id, AppRef, Body};
use crate::error::ApiError;
use crate::store::{Account, TemplateRecord};
use crate::validate;

/// `GET /templates`: the account's own templates, private and public.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    Ok(ok(TemplatesResponse {
        templates: app.store.list_templates(account.id).await?,
    }))
}

/// `GET /templates/featured`.
pub async fn featured() -> Response {
    ok(TemplatesResponse {
        templates: featured::all().to_vec(),
    })
}

/// `GET /templates/{template_id}/info`.
pub async fn info(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "template")?;
    let t = readable(&app, &account, id)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    Ok(ok(t))
}

/// `POST /templates/save`.
pub async fn save(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<TemplateSaveRequest>,
) -> Result<Response, ApiError> {
    let t = from_request(req, Uuid::new_v4(), Some(account.name.clone()));
    check(&t)?;
    app.store
        .insert_template(account.id, &t, app.clock.now_ms())
        .await?;
    tracing::info!(template = %t.id, account = %account.id, public = t.public, "template saved");
    Ok(ok(TemplateCreateResponse { id: t.id }))
}

/// `POST /templates/{template_id}/update`: replaces the whole template with
/// the body (the spec gives it the save request's schema), keeping its id
/// and author.
pub async fn update(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    Body(req): Body<TemplateSaveRequest>,
) -> Result<Response, ApiError> {
    let current = owned(&app, &account, &id).await?;
    let t = from_request(req, current.template.id, current.template.author);
    check(&t)?;
    if !app
        .store
        .replace_template(account.id, &t, app.clock.now_ms())
        .await?
    {
        // Deleted since it was read.
        return Err(ApiError::not_found("template"));
    }
    Ok(ok(Confirmation {
        id: t.id,
        status: "updated".into(),
    }))
}

/// `POST /templates/{template_id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let current = owned(&app, &account, &id).await?;
    let id = current.template.id;
    if !app.store.delete_template(account.id, id).await? {
        return Err(ApiError::not_found("template"));
    }
    tracing::info!(template = %id, account = %account.id, "template deleted");
    Ok(ok(Confirmation {
        id,
        status: "deleted".into(),
    }))
}

/// Fills `req` from the template its `template_id` names, before the
/// request is validated, so that the merged result is what gets checked.
///
/// A field given in the request wins over the template's. `envs` merge by
/// name (the request's value wins), so that a request can fill in one
/// placeholder such as `HF_TOKEN` and keep the template's other variables;
/// every other field is taken whole from one side. A blank `template_id`
/// counts as none, as some clients send `""` for unset strings.
pub async fn apply_to_create(
    app: &AppRef,
    account: &Account,
    req: &mut CreateRequest,
) -> Result<(), ApiError> {
    let Some(raw) = req
        .template_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
    else {
        return Ok(());
    };
    let unknown = || {
        ApiError::invalid_field(
            "template_id",
            format!("no template with id {raw:?}; see /templates and /templates/featured"),
        )
    };
    let id = Uuid::parse_str(&raw).map_err(|_| unknown())?;
    let t = readable(app, account, id).await?.ok_or_else(unknown)?;
    if req.launch_configuration.is_none() {
        req.launch_configuration = t.launch_configuration;
    }
    if req.auto_delete.is_none() {
        req.auto_delete = t.auto_delete;
    }
    if req.alert.is_none() {
        req.alert = t.alert;
    }
    if req.volume_mount.is_none() {
        req.volume_mount = t.volume_mount;
    }
    if req.tags.is_none() && !t.tags.is_empty() {
        req.tags = Some(t.tags);
    }
    req.envs = merge_envs(t.envs, req.envs.take());
    if req.idle_policy.is_none() {
        req.idle_policy = t.idle_policy.map(Some);
    }
    if req.on_unhealthy.is_none() {
        req.on_unhealthy = t.on_unhealthy;
    }
    Ok(())
}

/// The template's variables that the request does not set, then the
/// request's own, as given: a name the request repeats stays repeated, for
/// validation to refuse.
fn merge_envs(template: Vec<Env>, request: Option<Vec<Env>>) -> Option<Vec<Env>> {
    let request = request.unwrap_or_default();
    let mut out: Vec<Env> = template
        .into_iter()
        .filter(|e| !request.iter().any(|r| r.name == e.name))
        .collect();
    out.extend(request);
    (!out.is_empty()).then_some(out)
}

/// A template `account` may read: featured, its own, or another account's
/// public one.
async fn readable(app: &AppRef, account: &Account, id: Uuid) -> Result<Option<Template>, ApiError> {
    if let Some(t) = featured::get(id) {
        return Ok(Some(t.clone()));
    }
    Ok(app
        .store
        .get_template(account.id, id)
        .await?
        .map(|r| r.template))
}

/// One of the account's own templates, for a write.
async fn owned(app: &AppRef, account: &Account, raw_id: &str) -> Result<TemplateRecord, ApiError> {
    let id = path_id(raw_id, "template")?;
    if featured::get(id).is_some() {
        return Err(ApiError::forbidden(
            "featured templates are read-only; save a copy of this one to change it",
        ));
    }
    match app.store.get_template(account.id, id).await? {
        None => Err(ApiError::not_found("template")),
        Some(r) if r.account_id != account.id => Err(ApiError::forbidden(
            "this public template belongs to another account; save a copy of it to change it",
        )),
        Some(r) => Ok(r),
    }
}

fn from_request(req: TemplateSaveRequest, id: Uuid, author: Option<String>) -> Template {
    Template {
        id,
        name: req.name,
        description: req.description,
        author,
        logo: None,
        public: req.public.unwrap_or(false),
        launch_configuration: req.launch_configuration,
        auto_delete: req.auto_delete,
        alert: req.alert,
        volume_mount: req.volume_mount,
        tags: req.tags.unwrap_or_default(),
        envs: req.envs.unwrap_or_default(),
        networking: req.networking,
        idle_policy: req.idle_policy,
        on_unhealthy: req.on_unhealthy,
    }
}

/// Everything a template must satisfy, saved or featured; each failure is a
/// 400 naming the field.
pub(super) fn check(t: &Template) -> Result<(), ApiError> {
    validate::name("name", &t.name)?;
    if let Some(d) = &t.description {
        validate::description("description", d)?;
    }
    if let Some(lc) = &t.launch_configuration {
        validate::launch_configuration(lc)?;
    }
    validate::envs("envs", &t.envs)?;
    validate::tags("tags", &t.tags)?;
    if let Some(a) = &t.auto_delete {
        validate::thresholds("auto_delete", a)?;
    }
    if let Some(a) = &t.alert {
        validate::thresholds("alert", a)?;
    }
    if let Some(n) = &t.networking {
        validate::ufw_rules(
            "networking.ufw_rules",
            n.ufw_rules.as_deref().unwrap_or_default(),
        )?;
    }
    if let Some(p) = &t.idle_policy {
        super::health::check_policy("idle_policy", p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, value: &str) -> Env {
        Env {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn request_envs_win_by_name_and_keep_the_templates_others() {
        let merged = merge_envs(
            vec![env("HF_TOKEN", ""), env("MODEL", "m")],
            Some(vec![env("HF_TOKEN", "hf_x"), env("EXTRA", "1")]),
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = merged
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("MODEL", "m"), ("HF_TOKEN", "hf_x"), ("EXTRA", "1")]
        );
        assert_eq!(merge_envs(vec![], None), None);
    }

    #[test]
    fn a_name_the_request_repeats_stays_repeated_for_validation() {
        let merged = merge_envs(
            vec![env("A", "t")],
            Some(vec![env("A", "1"), env("A", "2")]),
        )
        .unwrap();
        assert!(validate::envs("envs", &merged).is_err());
    }
}
