//! API keys: how they are made, stored and checked.
//!
//! A key is 160 random bits, shown once. The store keeps only its SHA-256;
//! a high-entropy key needs no slow hash, and a lookup by hash is one
//! indexed query. The hash found is compared again in constant time, and
//! accounts already seen are cached by hash so a busy client does not cost a
//! query per request. Keys are never logged.

use std::collections::HashMap;
use std::sync::RwLock;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppRef;
use crate::error::ApiError;
use crate::store::Account;

/// Header carrying the key; header names are case-insensitive on the wire.
pub const HEADER: &str = "x-api-key";

/// A fresh random API key.
pub fn new_api_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let body: String = (0..32)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("psl_{body}")
}

/// Hex SHA-256 of a key, as stored.
pub fn hash_key(key: &str) -> String {
    // Runs on every request: no formatting machinery, one allocation.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// The account that made a request, left on its response for the request
/// log (which runs outside authentication).
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub uuid::Uuid);

/// A short, non-secret fingerprint of the caller's key (the head of its
/// SHA-256), left on its response for the audit log.
#[derive(Debug, Clone)]
pub struct KeyId(pub String);

/// Accounts by key hash, filled on first use.
#[derive(Default)]
pub struct KeyCache(RwLock<HashMap<String, Account>>);

/// Middleware: resolves the key to an account and puts it in the request's
/// extensions, or answers 401.
pub async fn require_key(
    State(app): State<AppRef>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = super::rate_limit::client_ip(&req);
    if let Err(limited) = app.limits.may_authenticate(ip) {
        return Ok(limited.into_response());
    }
    let refuse = |message: &str| {
        app.limits.failed_authentication(ip);
        ApiError::unauthorized(message)
    };
    let Some(key) = req.headers().get(HEADER) else {
        return Err(refuse("missing X-API-KEY header"));
    };
    let key = key
        .to_str()
        .map_err(|_| refuse("the X-API-KEY header is not valid text"))?
        .trim();
    let Some(account) = account_for_key_hash(&app, &hash_key(key)).await? else {
        return Err(refuse("the API key is not valid"));
    };
    if let Err(limited) = app.limits.key(&account.key_hash) {
        return Ok(limited.into_response());
    }
    let caller = Caller(account.id);
    let key_id = KeyId(account.key_hash[..12].to_string());
    req.extensions_mut().insert(account);
    let mut res = next.run(req).await;
    res.extensions_mut().insert(caller);
    res.extensions_mut().insert(key_id);
    Ok(res)
}

/// The account whose key hashes to `hash`, from the cache or the store.
/// API requests and console sign-ins both come through here.
pub async fn account_for_key_hash(app: &AppRef, hash: &str) -> Result<Option<Account>, ApiError> {
    let cached = app.keys.0.read().expect("poisoned").get(hash).cloned();
    if let Some(a) = cached {
        return Ok(Some(a));
    }
    let found = app.store.account_by_key_hash(hash).await?;
    let Some(a) = found.filter(|a| bool::from(a.key_hash.as_bytes().ct_eq(hash.as_bytes()))) else {
        return Ok(None);
    };
    app.keys
        .0
        .write()
        .expect("poisoned")
        .insert(hash.to_string(), a.clone());
    Ok(Some(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hash_to_hex() {
        let a = new_api_key();
        assert_ne!(a, new_api_key());
        assert!(a.starts_with("psl_") && a.len() == 36);
        let h = hash_key(&a);
        assert_eq!(h.len(), 64);
        assert_ne!(h, hash_key(&new_api_key()));
        // The SHA-256 test vector of FIPS 180-2, as lowercase hex.
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
