//! API keys: how they are made, stored and checked.
//!
//! A key is 160 random bits, shown once. The store keeps only its SHA-256;
//! a high-entropy key needs no slow hash, and a lookup by hash is one
//! indexed query. The hash found is compared again in constant time. An
//! account holds several keys, each revocable ([`KeyCache`] says how a
//! revocation reaches every replica at once). Keys are never logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppRef;
use crate::error::ApiError;
use crate::store::{Account, Backend, Credential, Membership, Person, SessionRow};
use uuid::Uuid;

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

/// Who acts in a request beyond its account: the role they act with and,
/// for a person's key or console session, the person. In the request's
/// extensions for handlers, and on its response for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub role: parasol_api::Role,
    pub person: Option<Uuid>,
}

/// A short, non-secret fingerprint of the caller's key (the head of its
/// SHA-256), left on its response for the audit log.
/// It shares the cached credential rather than copying the hash's head
/// out of it on every request.
#[derive(Clone)]
pub struct KeyId(Arc<Credential>);

impl KeyId {
    /// The first 12 hex digits of the key's SHA-256.
    pub fn fingerprint(&self) -> &str {
        &self.0.key_hash[..12]
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeyId").field(&self.fingerprint()).finish()
    }
}

/// How often, at most, this process writes a key's `last_used_at`.
const LAST_USED_EVERY_MS: i64 = 60_000;

/// Live keys by hash, so that a busy client does not cost a query per
/// request, and when this process last recorded each key's use.
///
/// A revoked key must be refused from the very next request, on every
/// replica. Both backends cache; what keeps the cache exact differs:
///
/// - SQLite: one server process owns the file, and every revocation goes
///   through it, so the cache is exact as long as that process forgets a key
///   when it is revoked ([`KeyCache::forget_key`]) and an account's keys when
///   the account changes or goes ([`KeyCache::forget_account`]).
/// - PostgreSQL, the backend replicas share: every change to a credential
///   notifies every replica at commit (a trigger), each replica drops what
///   it names, and the request that made the change answers only once
///   every live replica has confirmed ([`crate::auth_sync`]). A replica
///   serves from the cache only while it is listening and its lease in the
///   `replicas` table is current ([`KeyCache::listening`],
///   [`KeyCache::trust_until`]); otherwise every request looks its key up.
///
/// A lookup that raced a forget does not put its (possibly stale) answer
/// back: forgets bump an epoch that inserts check. Hits cost no query,
/// which keeps hot read paths (`/v1/instances/types`) free of one.
///
/// `last_used_at` is written at most once a minute per key and process
/// (from the map here), never once per request.
pub struct KeyCache {
    by_hash: RwLock<Cached>,
    /// SQLite: the cache is always exact (see the type's doc).
    always: bool,
    recorded: Mutex<HashMap<Uuid, i64>>,
    /// Keys found in the cache, and looked up in the store (`/metrics`).
    pub hits: AtomicU64,
    pub lookups: AtomicU64,
}

/// A console session as its requests need it (console/session.rs), kept
/// beside the keys and dropped by the same changes.
#[derive(Clone)]
pub struct CachedSession {
    pub row: SessionRow,
    /// A person's session: the account it acts in with their role there,
    /// who they are, and every account they may switch to.
    pub person: Option<(Account, parasol_api::Role, Person, Vec<Membership>)>,
}

impl CachedSession {
    fn involves_account(&self, account: Uuid) -> bool {
        self.row.account_id == account
            || self
                .person
                .as_ref()
                .is_some_and(|(_, _, _, of)| of.iter().any(|m| m.account_id == account))
    }
}

#[derive(Default)]
struct Cached {
    epoch: u64,
    /// Shared with the requests using them: a hit copies no strings.
    keys: HashMap<String, Arc<Credential>>,
    /// Console sessions by the SHA-256 of their id.
    sessions: HashMap<String, CachedSession>,
    /// PostgreSQL: the notification connection is up, and the cache was
    /// emptied after it started listening.
    listening: bool,
    /// PostgreSQL: until when this replica's lease is surely current.
    trusted_until: Option<Instant>,
}

impl Cached {
    fn serving(&self, always: bool) -> bool {
        always || (self.listening && self.trusted_until.is_some_and(|t| Instant::now() < t))
    }

    fn clear(&mut self) {
        self.epoch += 1;
        self.keys.clear();
        self.sessions.clear();
    }
}

impl KeyCache {
    /// The cache a server on `backend` should use (see the type's doc).
    /// On PostgreSQL it serves nothing until [`crate::auth_sync`] says it
    /// may.
    pub fn new(backend: Backend) -> Self {
        Self {
            by_hash: RwLock::new(Cached::default()),
            always: backend == Backend::Sqlite,
            recorded: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
        }
    }

    /// Drops the key with this id, once it is revoked. (A session made
    /// from it resolves the key on each request.)
    pub fn forget_key(&self, key_id: Uuid) {
        self.forget(|c| c.key_id == key_id, |_| false);
    }

    /// Drops every key of the account and the sessions in or naming it,
    /// once the account is deleted or changed (its name, admin flag), so
    /// the next request reads it anew.
    pub fn forget_account(&self, account: Uuid) {
        self.forget(|c| c.account.id == account, |s| s.involves_account(account));
    }

    /// Drops a person's personal keys and sessions, once a membership of
    /// theirs changes (their keys' role is capped by it, and ends with it)
    /// or they sign in again.
    pub fn forget_person(&self, person: Uuid) {
        self.forget(
            |c| c.person_id == Some(person),
            |s| s.row.person_id == Some(person),
        );
    }

    /// Drops a console session, once it is ended or moved to another
    /// account.
    pub fn forget_session(&self, id_hash: &str) {
        let mut cached = self.by_hash.write().expect("poisoned");
        cached.epoch += 1;
        cached.sessions.remove(id_hash);
    }

    /// The cached session, unexpired at `now_ms` (none while the cache is
    /// not serving), and the epoch to insert a fresh lookup at.
    pub fn session(&self, id_hash: &str, now_ms: i64) -> (Option<CachedSession>, u64) {
        let cached = self.by_hash.read().expect("poisoned");
        let hit = if cached.serving(self.always) {
            cached
                .sessions
                .get(id_hash)
                .filter(|s| now_ms < s.row.expires_at_ms)
                .cloned()
        } else {
            None
        };
        (hit, cached.epoch)
    }

    /// Keeps a session read at `epoch`, unless something was forgotten
    /// since.
    pub fn put_session(&self, epoch: u64, id_hash: &str, s: CachedSession) {
        let mut cached = self.by_hash.write().expect("poisoned");
        if cached.epoch == epoch && cached.serving(self.always) {
            cached.sessions.insert(id_hash.to_string(), s);
        }
    }

    /// Drops everything (a change this process cannot attribute).
    pub fn forget_all(&self) {
        self.by_hash.write().expect("poisoned").clear();
    }

    /// PostgreSQL: the notification connection is up and listening (true;
    /// the cache is emptied, since changes made before it listened were
    /// not heard), or lost (false; nothing is served from the cache until
    /// it is up again).
    pub fn listening(&self, up: bool) {
        let mut cached = self.by_hash.write().expect("poisoned");
        cached.clear();
        cached.listening = up;
    }

    /// PostgreSQL: this replica's lease is surely current until `until`
    /// (never moved back).
    pub fn trust_until(&self, until: Instant) {
        let mut cached = self.by_hash.write().expect("poisoned");
        cached.trusted_until = Some(cached.trusted_until.map_or(until, |t| t.max(until)));
    }

    /// Whether requests are answered from the cache now.
    pub fn serving(&self) -> bool {
        self.by_hash.read().expect("poisoned").serving(self.always)
    }

    fn forget(&self, key: impl Fn(&Credential) -> bool, session: impl Fn(&CachedSession) -> bool) {
        let mut cached = self.by_hash.write().expect("poisoned");
        cached.epoch += 1;
        cached.keys.retain(|_, c| !key(c));
        cached.sessions.retain(|_, s| !session(s));
    }

    /// The cached key (none while the cache is not serving) and the epoch
    /// to insert a fresh lookup at.
    fn get(&self, hash: &str) -> (Option<Arc<Credential>>, u64) {
        let cached = self.by_hash.read().expect("poisoned");
        let hit = if cached.serving(self.always) {
            cached.keys.get(hash).cloned()
        } else {
            None
        };
        (hit, cached.epoch)
    }

    fn put(&self, epoch: u64, c: &Arc<Credential>) {
        let mut cached = self.by_hash.write().expect("poisoned");
        if cached.epoch == epoch && cached.serving(self.always) {
            cached.keys.insert(c.key_hash.clone(), c.clone());
        }
    }

    /// Whether the key's use at `now_ms` should be written (and, if so,
    /// notes it as written).
    fn use_is_due(&self, key_id: Uuid, now_ms: i64) -> bool {
        let mut recorded = self.recorded.lock().expect("poisoned");
        match recorded.get(&key_id) {
            Some(&at) if (at..at + LAST_USED_EVERY_MS).contains(&now_ms) => false,
            _ => {
                recorded.insert(key_id, now_ms);
                true
            }
        }
    }
}

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
    let Some(credential) = credential_for_key_hash(&app, &hash_key(key)).await? else {
        return Err(refuse("the API key is not valid"));
    };
    if let Err(limited) = app.limits.key(&credential.key_hash) {
        return Ok(limited.into_response());
    }
    let caller = Caller(credential.account.id);
    let key_id = KeyId(credential.clone());
    // This runs as a route layer, so the route is matched; the raw path
    // stands in should it ever not be (it is never a weaker rule).
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(req.uri().path(), |m| m.as_str());
    if let Err(e) = super::roles::check(req.method(), route, credential.role, "API key") {
        let mut res = e.into_response();
        res.extensions_mut().insert(caller);
        res.extensions_mut().insert(key_id);
        return Ok(res);
    }
    let principal = Principal {
        role: credential.role,
        person: credential.person_id,
    };
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(credential.account.clone());
    let mut res = next.run(req).await;
    res.extensions_mut().insert(caller);
    res.extensions_mut().insert(key_id);
    res.extensions_mut().insert(principal);
    Ok(res)
}

/// The account whose live key hashes to `hash`. Console sessions come
/// through here.
pub async fn account_for_key_hash(app: &AppRef, hash: &str) -> Result<Option<Account>, ApiError> {
    Ok(credential_for_key_hash(app, hash)
        .await?
        .map(|c| c.account.clone()))
}

/// The live key hashing to `hash`, from the cache or the store, its use
/// recorded when due. API requests and console sessions both come
/// through here.
pub async fn credential_for_key_hash(
    app: &AppRef,
    hash: &str,
) -> Result<Option<Arc<Credential>>, ApiError> {
    let (cached, epoch) = app.keys.get(hash);
    let credential = match cached {
        Some(c) => {
            app.keys.hits.fetch_add(1, Ordering::Relaxed);
            c
        }
        None => {
            app.keys.lookups.fetch_add(1, Ordering::Relaxed);
            let found = app.store.credential_by_key_hash(hash).await?;
            let Some(c) =
                found.filter(|c| bool::from(c.key_hash.as_bytes().ct_eq(hash.as_bytes())))
            else {
                return Ok(None);
            };
            let c = Arc::new(c);
            app.keys.put(epoch, &c);
            c
        }
    };
    let now = app.clock.now_ms();
    if app.keys.use_is_due(credential.key_id, now) {
        // A lost last-used time is not worth failing the request for.
        if let Err(e) = app.store.touch_api_key(credential.key_id, now).await {
            tracing::warn!(error = %e, "could not record a key's last use");
        }
    }
    Ok(Some(credential))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(person: Option<Uuid>) -> Arc<Credential> {
        let account = Uuid::new_v4();
        Arc::new(Credential {
            account: Account {
                id: account,
                name: "a".into(),
                key_hash: "h".into(),
                is_admin: false,
                mcp_read_only: false,
            },
            key_id: Uuid::new_v4(),
            key_hash: hash_key(&new_api_key()),
            role: parasol_api::Role::Owner,
            person_id: person,
        })
    }

    #[test]
    fn a_postgres_cache_serves_only_while_listening_and_trusted() {
        let cache = KeyCache::new(Backend::Postgres);
        let c = credential(None);
        let (_, epoch) = cache.get(&c.key_hash);
        cache.put(epoch, &c);
        assert!(!cache.serving());
        assert_eq!(cache.get(&c.key_hash).0, None, "kept before it may serve");

        cache.listening(true);
        cache.trust_until(Instant::now() + std::time::Duration::from_secs(60));
        assert!(cache.serving());
        let (_, epoch) = cache.get(&c.key_hash);
        cache.put(epoch, &c);
        assert_eq!(cache.get(&c.key_hash).0.as_ref(), Some(&c));

        // A lost connection stops it and empties it; listening again
        // starts it empty.
        cache.listening(false);
        assert_eq!(cache.get(&c.key_hash).0, None);
        cache.listening(true);
        assert_eq!(cache.get(&c.key_hash).0, None);

        // A lease that has run out stops it too.
        let expired = KeyCache::new(Backend::Postgres);
        expired.listening(true);
        expired.trust_until(Instant::now());
        assert!(!expired.serving());
    }

    #[test]
    fn a_lookup_that_raced_a_forget_is_not_kept() {
        let cache = KeyCache::new(Backend::Sqlite);
        let person = Uuid::new_v4();
        let c = credential(Some(person));
        let (_, epoch) = cache.get(&c.key_hash);
        cache.forget_person(person);
        cache.put(epoch, &c);
        assert_eq!(cache.get(&c.key_hash).0, None);
        let (_, epoch) = cache.get(&c.key_hash);
        cache.put(epoch, &c);
        assert!(cache.get(&c.key_hash).0.is_some());
        cache.forget_account(c.account.id);
        assert_eq!(cache.get(&c.key_hash).0, None);
    }

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
