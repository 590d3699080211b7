//! `GET /v1/account`: Parasol's extension telling a key's owner who it is.

use axum::response::Response;
use axum::Extension;
use parasol_api::AccountInfo;

use super::ok;
use crate::store::Account;

/// `GET /v1/account`: the account of the request's key.
pub async fn info(Extension(account): Extension<Account>) -> Response {
    ok(AccountInfo {
        id: account.id,
        name: account.name,
        is_admin: account.is_admin,
    })
}
