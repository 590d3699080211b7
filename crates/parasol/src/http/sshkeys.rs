//! `/sshkeys/*`: the account's public keys.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use parasol_api::{AddSshKeyRequest, AddSshKeyResponse, Confirmation, SshKeysResponse};

use super::{ok, path_id, AppRef, Body};
use crate::error::ApiError;
use crate::store::{Account, DeleteKeyOutcome};
use crate::validate;

/// `GET /sshkeys`.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    Ok(ok(SshKeysResponse {
        ssh_keys: app.store.list_ssh_keys(account.id).await?,
    }))
}

/// `POST /sshkeys/add`.
pub async fn add(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<AddSshKeyRequest>,
) -> Result<Response, ApiError> {
    validate::name("name", &req.name)?;
    validate::public_key("public_key", &req.public_key)?;
    let id = app
        .store
        .add_ssh_key(account.id, &req.name, &req.public_key, app.clock.now_ms())
        .await?;
    Ok(ok(AddSshKeyResponse { id }))
}

/// `GET /sshkeys/{id}/info`.
pub async fn info(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "ssh key")?;
    let key = app
        .store
        .get_ssh_key(account.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("ssh key"))?;
    Ok(ok(key))
}

/// `POST /sshkeys/{id}/setdefault`.
pub async fn set_default(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "ssh key")?;
    if !app.store.set_default_ssh_key(account.id, id).await? {
        return Err(ApiError::not_found("ssh key"));
    }
    Ok(ok(Confirmation {
        id,
        status: "default".into(),
    }))
}

/// `POST /sshkeys/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "ssh key")?;
    match app.store.delete_ssh_key(account.id, id).await? {
        DeleteKeyOutcome::Deleted => Ok(ok(Confirmation {
            id,
            status: "deleted".into(),
        })),
        DeleteKeyOutcome::NotFound => Err(ApiError::not_found("ssh key")),
        DeleteKeyOutcome::IsDefault => Err(ApiError::conflict(
            "this is the default ssh key; make another key the default before deleting it",
        )),
        DeleteKeyOutcome::InUse => Err(ApiError::conflict(
            "this ssh key is in use by a live instance; delete the instance first",
        )),
    }
}
