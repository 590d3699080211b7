//! `/v1/account/keys/*`: Parasol's extension for the account's own API
//! keys. Any key may list them; owners create and revoke them
//! ([`super::roles`]). A key never gets more than its maker's role.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use parasol_api::{
    ApiKey, ApiKeysResponse, Confirmation, CreateApiKeyRequest, CreateApiKeyResponse, Role,
};

use super::auth::{hash_key, new_api_key};
use super::{ok, path_id, AppRef, Body, Principal};
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::store::{Account, NewKey, NewKeyOutcome, RevokeOutcome, MAX_LIVE_KEYS};
use crate::validate;

/// `GET /v1/account/keys`.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let keys = app.store.list_api_keys(account.id).await?;
    Ok(ok(ApiKeysResponse {
        keys: keys
            .into_iter()
            .map(|k| ApiKey {
                id: k.id,
                name: k.name,
                created_at: from_millis(k.created_at_ms),
                last_used_at: k.last_used_at_ms.map(from_millis),
                revoked_at: k.revoked_at_ms.map(from_millis),
                role: k.role,
                person_id: k.person_id,
            })
            .collect(),
    }))
}

/// `POST /v1/account/keys/create`: the key is in this answer only.
pub async fn create(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Extension(caller): Extension<Principal>,
    Body(req): Body<CreateApiKeyRequest>,
) -> Result<Response, ApiError> {
    mint(&app, &account, caller.role, None, req).await
}

/// `POST /v1/account/keys/personal`: a key of the calling person's own
/// (the caller must be a personal key), at most their role and refused
/// once their membership ends; shown in this answer only. A person makes
/// their first one on the console's API keys page.
pub async fn create_personal(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Extension(caller): Extension<Principal>,
    Body(req): Body<CreateApiKeyRequest>,
) -> Result<Response, ApiError> {
    let person = caller.person.ok_or_else(|| {
        ApiError::forbidden(
            "personal keys are made by a person: call with one of your personal keys \
             (the console's API keys page makes the first), or use /v1/account/keys/create",
        )
    })?;
    mint(&app, &account, caller.role, Some(person), req).await
}

/// Makes a key of the account with at most `caller_role`; with `person`,
/// a personal key, which works only while they are a member (and never
/// above their role there).
pub async fn mint(
    app: &AppRef,
    account: &Account,
    caller_role: Role,
    person: Option<uuid::Uuid>,
    req: CreateApiKeyRequest,
) -> Result<Response, ApiError> {
    validate::name("name", &req.name)?;
    let role = req.role.unwrap_or(caller_role);
    if role > caller_role {
        return Err(ApiError::forbidden(format!(
            "a {caller_role} cannot make a key with the {role} role"
        ))
        .with_field("role"));
    }
    let key = new_api_key();
    let outcome = app
        .store
        .create_api_key(
            account.id,
            NewKey {
                name: &req.name,
                key_hash: &hash_key(&key),
                role,
                person,
            },
            app.clock.now_ms(),
        )
        .await?;
    match outcome {
        NewKeyOutcome::Created(id) => Ok(ok(CreateApiKeyResponse {
            id,
            name: req.name,
            api_key: key,
        })),
        NewKeyOutcome::TooMany => Err(ApiError::conflict(format!(
            "the account already has {MAX_LIVE_KEYS} live API keys, the most it may hold; \
             revoke one first"
        ))),
        // The account was deleted after this request authenticated.
        NewKeyOutcome::NoAccount => Err(ApiError::unauthorized("the API key is not valid")),
    }
}

/// `POST /v1/account/keys/{id}/revoke`: refused from the next request on.
pub async fn revoke(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "api key")?;
    match app
        .store
        .revoke_api_key(account.id, id, app.clock.now_ms())
        .await?
    {
        RevokeOutcome::Revoked | RevokeOutcome::AlreadyRevoked => {
            app.keys.forget_key(id);
            // AlreadyRevoked too: a retry after a failed confirmation.
            crate::auth_sync::everywhere(&app).await?;
            Ok(ok(Confirmation {
                id,
                status: "revoked".into(),
            }))
        }
        RevokeOutcome::NotFound => Err(ApiError::not_found("api key")),
        RevokeOutcome::LastKey => Err(ApiError::conflict(
            "this is the account's last live API key; create another before revoking it",
        )),
    }
}
