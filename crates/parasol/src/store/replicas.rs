//! The registry of replicas that keep API keys in memory (PostgreSQL only;
//! `crate::auth_sync` says how it is used), and the connection a replica
//! listens for changes on.
//!
//! Times here are PostgreSQL's clock (`clock_timestamp()`, milliseconds),
//! the one clock every replica and every revoke reads, so that a revoke
//! judging another replica's lease never compares two machines' clocks.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::Row;
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::{Store, StoreResult, ACQUIRE_TIMEOUT};

/// PostgreSQL's clock now, in milliseconds.
const DB_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Rows of replicas gone this long are deleted when another registers.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// How to open a connection of one's own to the store's PostgreSQL.
#[derive(Clone)]
pub struct ListenOptions(PgConnectOptions);

impl std::fmt::Debug for ListenOptions {
    // The options hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenOptions { .. }")
    }
}

impl ListenOptions {
    pub(super) fn parse(url: &str) -> anyhow::Result<ListenOptions> {
        Ok(ListenOptions(PgConnectOptions::from_str(url)?))
    }

    /// A listener on a connection of its own, shown as `application_name`
    /// in `pg_stat_activity`. Its pool is handed back so that the caller
    /// closes the connection when done with the listener (drop the
    /// listener, then close the pool).
    pub async fn listener(&self, application_name: &str) -> sqlx::Result<(PgListener, PgPool)> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(self.0.clone().application_name(application_name))
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        // A lost connection must be seen (try_recv answers None), not
        // replaced quietly with notifications missed in between.
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        Ok((listener, pool))
    }
}

/// A replica whose lease was live when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveReplica {
    pub id: Uuid,
    /// Its lease's end, PostgreSQL's clock, ms.
    pub alive_until_ms: i64,
}

impl Store {
    /// The options for listening connections (PostgreSQL), or `None`.
    pub fn listen_options(&self) -> Option<&ListenOptions> {
        self.listen.as_ref()
    }

    /// Renews the replica's lease for `lease` from now, unless a revoke
    /// fenced it or its row is gone; false then (the replica must drop
    /// what it keeps, then [`Store::register_replica`]).
    ///
    /// Straight on the pool, not through the writer: a renewal must not
    /// queue behind a busy batch (its lateness shortens the lease).
    pub async fn renew_replica(&self, id: Uuid, lease: Duration) -> StoreResult<bool> {
        let done = sqlx::query(&format!(
            "UPDATE replicas SET alive_until = {DB_NOW_MS} + $2 WHERE id = $1 AND fenced = 0"
        ))
        .bind(id.to_string())
        .bind(lease.as_millis() as i64)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the replica as live (and no longer fenced) for `lease`
    /// from now; forgets replicas gone for a day.
    pub async fn register_replica(&self, id: Uuid, lease: Duration) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!(
            "INSERT INTO replicas (id, alive_until, fenced) VALUES ($1, {DB_NOW_MS} + $2, 0)
             ON CONFLICT (id) DO UPDATE SET alive_until = EXCLUDED.alive_until, fenced = 0"
        ))
        .bind(id.to_string())
        .bind(lease.as_millis() as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM replicas WHERE alive_until < {DB_NOW_MS} - $1"
        ))
        .bind(FORGET_AFTER_MS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the replica (it stopped, and keeps nothing).
    pub async fn drop_replica(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The replicas whose lease has not ended, fenced or not.
    pub async fn live_replicas(&self) -> StoreResult<Vec<LiveReplica>> {
        let rows = sqlx::query(&format!(
            "SELECT id, alive_until FROM replicas WHERE alive_until > {DB_NOW_MS}"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LiveReplica {
                    id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                    alive_until_ms: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Fences the replicas: none may renew its lease until it has dropped
    /// what it keeps and registered again.
    pub async fn fence_replicas(&self, ids: &[Uuid]) -> StoreResult<()> {
        for id in ids {
            sqlx::query("UPDATE replicas SET fenced = 1 WHERE id = $1")
                .bind(id.to_string())
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Of these fenced replicas, those that may still serve from what they
    /// kept: still fenced (so they have not dropped it and registered
    /// again) and with a lease not yet ended.
    pub async fn fenced_and_live(&self, ids: &[Uuid]) -> StoreResult<Vec<Uuid>> {
        let mut out = vec![];
        for id in ids {
            let live: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT 1 FROM replicas WHERE id = $1 AND fenced = 1 AND alive_until > {DB_NOW_MS}"
            ))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
            if live.is_some() {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// Sends a notification on `channel`, committed at once.
    pub async fn notify(&self, channel: &str, payload: &str) -> StoreResult<()> {
        // pg_notify returns void, which the Any driver cannot decode.
        sqlx::query("SELECT 1 FROM (SELECT pg_notify($1, $2)) AS sent")
            .bind(channel)
            .bind(payload)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
