//! Leases: how several replicas on one database share the reconciler's work.
//!
//! A replica takes due instances by *claiming* them: one statement marks
//! each row with the replica's id and an expiry (`lease_owner`,
//! `lease_until`) and returns it, so no two replicas ever hold the same row.
//! The step's write is fenced by the lease (and, as every write, by the
//! generation) and gives the lease back in the same statement. A replica
//! that dies holding leases simply stops renewing nothing: its rows become
//! claimable again once `lease_until` passes.
//!
//! Lease times are wall-clock milliseconds, not the (movable) test clock:
//! a lease measures how long a process may be silent, not lifecycle time.

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use super::instances::{decode, COLUMNS};
use super::{Backend, InstanceRecord, Step, Store, StoreResult};

/// Milliseconds since the epoch by the system clock, for lease expiry.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Claims up to `limit` instances due at `now_ms` (lifecycle clock) that
    /// no live lease covers at `wall_now`, for `owner` until `lease_until`;
    /// most overdue first.
    pub async fn claim_due_instances(
        &self,
        owner: Uuid,
        now_ms: i64,
        wall_now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<InstanceRecord>> {
        let rows = self
            .claim_rows(
                "instances",
                COLUMNS,
                "",
                owner,
                now_ms,
                wall_now,
                lease_until,
                limit,
            )
            .await?;
        let mut out = rows.iter().map(decode).collect::<StoreResult<Vec<_>>>()?;
        // RETURNING promises no order.
        out.sort_by_key(|r| r.wake_at);
        Ok(out)
    }

    /// The reconciler's write: like [`Store::update_instance`], and also
    /// only while `owner` still holds the lease, which it gives back.
    /// `false`: another writer or replica got there first; re-read.
    pub async fn update_leased_instance(
        &self,
        rec: &mut InstanceRecord,
        now_ms: i64,
        owner: Uuid,
    ) -> StoreResult<bool> {
        self.write_instance(rec, now_ms, Some(owner)).await
    }

    /// Gives a lease back without writing, so the row can be claimed at
    /// once instead of after the lease expires.
    pub async fn release_instance_lease(&self, id: Uuid, owner: Uuid) -> StoreResult<()> {
        self.release_lease("instances", id, owner).await
    }

    /// [`Store::release_instance_lease`] for a volume.
    pub async fn release_volume_lease(&self, id: Uuid, owner: Uuid) -> StoreResult<()> {
        self.release_lease("volumes", id, owner).await
    }

    /// [`Store::release_instance_lease`] for a cluster.
    pub async fn release_cluster_lease(&self, id: Uuid, owner: Uuid) -> StoreResult<()> {
        self.release_lease("clusters", id, owner).await
    }

    async fn release_lease(&self, table: &'static str, id: Uuid, owner: Uuid) -> StoreResult<()> {
        self.write_one(move |conn| {
            Box::pin(async move {
                sqlx::query(&format!(
                    "UPDATE {table} SET lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND lease_owner = $2"
                ))
                .bind(id.to_string())
                .bind(owner.to_string())
                .execute(&mut *conn)
                .await?;
                Ok(Step::Commit(()))
            })
        })
        .await
    }

    /// Who holds a lease on each leased instance, and until when (tests,
    /// operators).
    pub async fn instance_leases(&self) -> StoreResult<Vec<(Uuid, Uuid, i64)>> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT id, lease_owner, lease_until FROM instances WHERE lease_owner IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    super::accounts::parse_uuid(&r.try_get::<String, _>(0)?)?,
                    super::accounts::parse_uuid(&r.try_get::<String, _>(1)?)?,
                    r.try_get(2)?,
                ))
            })
            .collect()
    }
}

impl Store {
    /// Claims due rows of `table` (instances, clusters, volumes or webhook
    /// deliveries) for `owner` and returns their `columns`; see
    /// [`claim_sql`]. `also`: a further condition on the rows (SQL, ANDed;
    /// empty for none), built by the caller from values it made itself.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn claim_rows(
        &self,
        table: &str,
        columns: &str,
        also: &str,
        owner: Uuid,
        now_ms: i64,
        wall_now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<sqlx::any::AnyRow>> {
        let sql = claim_sql(self.backend(), table, columns, also);
        self.write_one(move |conn| {
            Box::pin(async move {
                let rows = sqlx::query(&sql)
                    .bind(owner.to_string())
                    .bind(lease_until)
                    .bind(now_ms)
                    .bind(wall_now)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                Ok(Step::Commit(rows))
            })
        })
        .await
    }
}

/// The claim statement for `table` (instances, clusters or volumes), returning
/// `columns`. Parameters: $1 owner, $2 lease expiry, $3 lifecycle now,
/// $4 wall-clock now, $5 limit.
fn claim_sql(backend: Backend, table: &str, columns: &str, also: &str) -> String {
    match backend {
        // SKIP LOCKED: replicas claiming at the same moment take disjoint
        // rows instead of queueing on each other's row locks; a row another
        // transaction changed meanwhile is re-checked against the WHERE
        // clause before it is locked.
        Backend::Postgres => format!(
            "WITH due AS (
                SELECT id FROM {table}
                WHERE wake_at IS NOT NULL AND wake_at <= $3
                  AND (lease_until IS NULL OR lease_until < $4) {also}
                ORDER BY wake_at LIMIT $5
                FOR UPDATE SKIP LOCKED
             )
             UPDATE {table} SET lease_owner = $1, lease_until = $2
             FROM due WHERE {table}.id = due.id
             RETURNING {}",
            qualified(table, columns)
        ),
        // SQLite runs one writer at a time, so a single conditional UPDATE
        // is already exclusive.
        Backend::Sqlite => format!(
            "UPDATE {table} SET lease_owner = $1, lease_until = $2
             WHERE id IN (
                SELECT id FROM {table}
                WHERE wake_at IS NOT NULL AND wake_at <= $3
                  AND (lease_until IS NULL OR lease_until < $4) {also}
                ORDER BY wake_at LIMIT $5
             )
             RETURNING {columns}"
        ),
    }
}

/// Columns as `table.column`, for the PostgreSQL RETURNING list, where the
/// CTE's `id` would otherwise be ambiguous.
fn qualified(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Pushes every lease `owner` holds out to `until`.
    ///
    /// Through the writer: the renewal locks every row the replica leases,
    /// and on PostgreSQL a statement doing that beside a batch that writes
    /// some of the same rows in another order could deadlock with it.
    pub async fn renew_leases(&self, owner: Uuid, until: i64) -> StoreResult<u64> {
        self.write(move |conn| {
            Box::pin(async move {
                let mut renewed = 0;
                for table in ["instances", "clusters", "volumes"] {
                    let res = sqlx::query(&format!(
                        "UPDATE {table} SET lease_until = $1 WHERE lease_owner = $2"
                    ))
                    .bind(until)
                    .bind(owner.to_string())
                    .execute(&mut *conn)
                    .await?;
                    renewed += res.rows_affected();
                }
                Ok(Step::Commit(renewed))
            })
        })
        .await
    }

    /// Drops every lease, whoever holds it. Only for a database no other
    /// live process reconciles: an embedded SQLite file at server start,
    /// so that a restart after a crash resumes at once.
    pub async fn clear_all_leases(&self) -> StoreResult<()> {
        for table in ["instances", "clusters", "volumes", "webhook_deliveries"] {
            sqlx::query(&format!(
                "UPDATE {table} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL"
            ))
            .execute(self.pool())
            .await?;
        }
        Ok(())
    }
}

/// Renews `owner`'s leases every third of `timeout` until `stop` turns
/// true, so that a step may take longer than the lease (a slow provider
/// call) without another replica taking the instance, while a replica that
/// dies stops renewing and loses its instances after at most `timeout`.
pub async fn keep_leases(
    store: Store,
    owner: Uuid,
    timeout: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = timeout / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let until = wall_ms() + timeout.as_millis() as i64;
        if let Err(e) = store.renew_leases(owner, until).await {
            tracing::warn!(error = %e, "could not renew reconciler leases");
        }
    }
}
