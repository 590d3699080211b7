//! PostgreSQL: keeping every replica's cache of API keys and console
//! sessions exact, so that a request authenticates without a database
//! round trip and a revoked key (an ended session) is still refused from
//! the next request on every replica.
//!
//! - **Changes are heard.** A trigger on `api_keys`, `accounts`,
//!   `memberships`, `people` and `console_sessions` (store/migrations.rs)
//!   sends `key ID`, `account ID`, `person ID` or `session HASH` on the
//!   `parasol_auth` channel at commit, whatever statement made the change.
//!   Each replica listens on a connection of its own and drops what a
//!   message names ([`crate::http::KeyCache`]).
//! - **A change answers only when every live replica has dropped it.**
//!   After its commit, the request that revoked a key (changed a role,
//!   removed a membership, changed or deleted an account, signed out,
//!   switched a session's account, signed in) calls
//!   [`everywhere`]: it sends `barrier TOKEN` on the same channel and waits
//!   for every replica whose lease is live to answer `TOKEN REPLICA` on
//!   `parasol_auth_ack`. PostgreSQL delivers notifications in commit
//!   order and a replica handles its messages one after another, so a
//!   replica that answers the barrier has dropped everything the change
//!   named.
//! - **A replica that does not answer is fenced, not trusted.** After
//!   [`ACK_WAIT`] the revoke marks each silent replica `fenced` in
//!   `replicas`, which stops it renewing its lease, and waits until each
//!   has either registered again (which it does only after emptying its
//!   cache) or let its lease run out (after which it serves nothing from
//!   its cache, below). The wait is bounded by [`LEASE`].
//! - **A replica serves from its cache only while it can hear.** It
//!   serves cached keys only while its listening connection is up and
//!   until [`LEASE`] − [`MARGIN`] after the start of its last successful
//!   lease renewal (its own monotonic clock; the renewal's row says
//!   [`LEASE`] after PostgreSQL ran it, which is later). A lost connection
//!   stops the cache at once; the replica reconnects, empties its cache
//!   (what changed meanwhile was not heard) and serves from it again. Until
//!   then every request looks its key up, as before this cache.
//!
//! Failure modes: PostgreSQL's clock stepping forward by more than
//! [`MARGIN`] while a replica is silent could end its lease early in a
//! revoke's eyes (the revoke then answers while that replica may serve a
//! stale key for the rest of its lease); a revoke whose database fails in
//! the middle of waiting answers an error after the change was committed
//! (retrying answers once every replica has confirmed).
//!
//! SQLite has one server process, which forgets a key in the request that
//! revokes it; none of this runs there.

use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::AppRef;
use crate::store::{Backend, Store};

/// The channel changes and barriers are sent on.
pub const CHANNEL: &str = "parasol_auth";
/// The channel replicas confirm barriers on.
pub const ACK_CHANNEL: &str = "parasol_auth_ack";
/// How long a replica's lease lasts from a renewal.
pub const LEASE: Duration = Duration::from_secs(6);
/// How often a replica renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How much earlier than its lease's end a replica stops trusting its
/// cache (clock drift between its monotonic clock and PostgreSQL's).
pub const MARGIN: Duration = Duration::from_secs(1);
/// How long a revoke waits for confirmations before fencing the silent.
pub const ACK_WAIT: Duration = Duration::from_secs(2);
/// How often a revoke re-reads the fenced replicas' state.
const FENCE_POLL: Duration = Duration::from_millis(50);
/// Wait before reconnecting after a lost or failed connection.
const RECONNECT_AFTER: Duration = Duration::from_millis(200);

/// The `application_name` of a replica's listening connection (tests end
/// it with `pg_terminate_backend`).
pub fn listener_name(replica: Uuid) -> String {
    format!("parasol-auth {replica}")
}

/// Keeps this replica's key cache in step with the database until `stop`
/// (PostgreSQL; returns at once on SQLite).
pub async fn run(app: AppRef, replica: Uuid, mut stop: watch::Receiver<bool>) {
    if app.store.backend() != Backend::Postgres {
        return;
    }
    let listen = tokio::spawn(listen(app.clone(), replica));
    let renew = tokio::spawn(renew(app.clone(), replica));
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    listen.abort();
    renew.abort();
    app.keys.listening(false);
    if let Err(e) = app.store.drop_replica(replica).await {
        tracing::warn!(error = %e, "could not remove this replica from the replicas table");
    }
}

/// The listening connection: hears changes and confirms barriers; on a
/// lost connection stops the cache and reconnects.
async fn listen(app: AppRef, replica: Uuid) {
    let Some(options) = app.store.listen_options().cloned() else {
        return;
    };
    let name = listener_name(replica);
    loop {
        match options.listener(&name).await {
            Ok((mut listener, pool)) => {
                match listener.listen(CHANNEL).await {
                    Ok(()) => {
                        // Everything committed before this point is read
                        // afresh; everything after it will be heard.
                        app.keys.listening(true);
                        tracing::info!("listening for key changes");
                        let e = hear(&app, replica, &mut listener).await;
                        app.keys.listening(false);
                        tracing::warn!(error = %e, "lost the key-change connection; keys are looked up in the database until it is back");
                    }
                    Err(e) => tracing::warn!(error = %e, "could not listen for key changes"),
                }
                drop(listener);
                pool.close().await;
            }
            Err(e) => tracing::warn!(error = %e, "could not connect to listen for key changes"),
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Handles messages until the connection fails; answers why.
async fn hear(app: &AppRef, replica: Uuid, listener: &mut PgListener) -> String {
    loop {
        let message = match listener.try_recv().await {
            Ok(Some(m)) => m,
            Ok(None) => return "connection closed".into(),
            Err(e) => return e.to_string(),
        };
        let payload = message.payload();
        let (kind, arg) = payload.split_once(' ').unwrap_or((payload, ""));
        match (kind, Uuid::parse_str(arg)) {
            ("barrier", _) => {
                // On this connection: it answers only while this
                // connection, which heard everything before, is up.
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(ACK_CHANNEL)
                    .bind(format!("{arg} {replica}"))
                    .execute(&mut *listener)
                    .await;
                if let Err(e) = sent {
                    return e.to_string();
                }
            }
            ("session", _) if !arg.is_empty() => app.keys.forget_session(arg),
            ("key", Ok(id)) => app.keys.forget_key(id),
            ("account", Ok(id)) => app.keys.forget_account(id),
            ("person", Ok(id)) => app.keys.forget_person(id),
            _ => {
                tracing::warn!(
                    payload,
                    "unexpected key-change message; forgetting every key"
                );
                app.keys.forget_all();
            }
        }
    }
}

/// Renews this replica's lease every [`RENEW_EVERY`]; when fenced (or its
/// row is gone), empties the cache and registers again.
async fn renew(app: AppRef, replica: Uuid) {
    let mut every = tokio::time::interval(RENEW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let started = Instant::now();
        let renewed = match app.store.renew_replica(replica, LEASE).await {
            Ok(true) => Ok(()),
            // Fenced by a revoke that stopped waiting, or never
            // registered: what the cache holds may predate a change this
            // replica did not confirm. Drop it before the revoke may see
            // the fence lifted, and again once registered: a revoke that
            // read the live replicas before this registration does not
            // wait for this replica, so nothing read before it may stay.
            Ok(false) => {
                app.keys.forget_all();
                let registered = app.store.register_replica(replica, LEASE).await;
                if registered.is_ok() {
                    app.keys.forget_all();
                }
                registered
            }
            Err(e) => Err(e),
        };
        match renewed {
            Ok(()) => app.keys.trust_until(started + LEASE - MARGIN),
            // The lease runs out on its own, and the cache with it.
            Err(e) => tracing::warn!(error = %e, "could not renew this replica's lease"),
        }
    }
}

/// Answers once every live replica has dropped whatever the changes this
/// request committed named (PostgreSQL; at once on SQLite, whose one
/// process forgot them already). Call after the commit.
pub async fn everywhere(app: &AppRef) -> Result<(), ApiError> {
    if app.store.backend() != Backend::Postgres {
        return Ok(());
    }
    barrier(&app.store)
        .await
        .map_err(|e| ApiError::unavailable(format!(
            "the change is saved, but not every replica could be made to confirm it ({e}); retry to confirm"
        )))
}

async fn barrier(store: &Store) -> Result<(), String> {
    let Some(options) = store.listen_options() else {
        return Ok(());
    };
    let token = format!("{:032x}", rand::rng().random::<u128>());
    // Listening before the barrier goes out, so no answer is missed.
    let (mut acks, pool) = options
        .listener("parasol-auth-barrier")
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        acks.listen(ACK_CHANNEL).await.map_err(|e| e.to_string())?;
        let live = store.live_replicas().await.map_err(|e| e.to_string())?;
        let mut waiting: Vec<Uuid> = live.iter().map(|r| r.id).collect();
        store
            .notify(CHANNEL, &format!("barrier {token}"))
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + ACK_WAIT;
        while !waiting.is_empty() {
            let Ok(heard) = tokio::time::timeout_at(deadline, acks.try_recv()).await else {
                break;
            };
            let Some(message) = heard.map_err(|e| e.to_string())? else {
                break;
            };
            if let Some((t, who)) = message.payload().split_once(' ') {
                if t == token {
                    waiting.retain(|r| r.to_string() != who);
                }
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        tracing::warn!(replicas = ?waiting, "replicas did not confirm a key change in time; fencing them");
        store
            .fence_replicas(&waiting)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            waiting = store
                .fenced_and_live(&waiting)
                .await
                .map_err(|e| e.to_string())?;
            if waiting.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(FENCE_POLL).await;
        }
    }
    .await;
    drop(acks);
    pool.close().await;
    result
}
