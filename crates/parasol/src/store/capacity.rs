//! Capacity counters: how many machines hold each offer's slots.
//!
//! Every create checks an offer's capacity, and so does every sim launch.
//! Counting the holding rows on each check costs time in proportion to how
//! full the offer is (a create slowed from about 800/s to 50/s as one offer
//! filled, BENCHMARKS.md). So each table whose rows hold capacity keeps a
//! counter per offer and pool, written in the same transaction as the rows
//! it counts: a check is one primary-key read, and a reservation is one
//! conditional upsert that two racing creates cannot both win.
//!
//! Only the store's own write paths change the counted rows, and each
//! adjusts its counter beside the row; the migration that added the
//! counters filled them from the rows then stored.
//!
//! A recount reads every holding row (a million of them take seconds), so
//! a start recounts only when the [`RECOUNT_SETTING`] marker says one is
//! owed. Counters drift only through a writer that does not keep them: a
//! binary from before the counters (or a hand edit, after which the
//! operator runs `parasol store recount-capacity`). Such a binary refuses
//! to start on a schema newer than its own, so the only ones that can
//! write are those already serving when a newer binary migrated the store
//! past the counters. No binary before this marker wrote it, so a store
//! without it owes a recount (a store just migrated from before the
//! counters, and any other store once); so does one marked `owed`. Then
//! every start recounts under the counters' write lock, and the first
//! recount that finds every counter right marks it `done`: writers without
//! counters would have left drift behind them. A rollout from a binary
//! that keeps the counters leaves nothing to fix, and costs one recount,
//! at its first start.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use super::instances::HOLDING;
use super::{Backend, OfferKey, Store, StoreError, StoreResult};

/// States of a sim machine that still occupy a slot: every state but
/// `terminated` (the sim's lifecycle, providers/sim).
const OCCUPYING: &str = "('running','doomed','failed','preempted','terminating')";

/// Which counted rows a counter table mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// `instances` in a holding status (`holdings`).
    Instances,
    /// The sim's machines that occupy a slot (`sim_holdings`).
    SimMachines,
}

impl Counted {
    fn table(self) -> &'static str {
        match self {
            Counted::Instances => "holdings",
            Counted::SimMachines => "sim_holdings",
        }
    }

    /// Counts the rows themselves, per offer and pool (the slow way).
    fn recount(self) -> String {
        match self {
            Counted::Instances => format!(
                "SELECT cloud, region, shade_instance_type,
                        CASE WHEN cluster_id IS NULL THEN 'single' ELSE 'cluster' END, COUNT(*)
                 FROM instances WHERE status IN {HOLDING}
                 GROUP BY cloud, region, shade_instance_type,
                          CASE WHEN cluster_id IS NULL THEN 'single' ELSE 'cluster' END"
            ),
            Counted::SimMachines => format!(
                "SELECT cloud, region, shade_instance_type, pool, COUNT(*)
                 FROM sim_machines WHERE state IN {OCCUPYING}
                 GROUP BY cloud, region, shade_instance_type, pool"
            ),
        }
    }
}

/// The `settings` row that says whether a start must recount the counters:
/// `done`, or anything else (`owed`, or no row) for a recount.
pub const RECOUNT_SETTING: &str = "capacity_recount";

impl Store {
    /// Recounts the counters (as [`Store::repair_capacity_counts`]) when the
    /// [`RECOUNT_SETTING`] marker says a recount is owed, and clears it once
    /// a recount finds them right. `None`: none was owed.
    pub async fn recount_capacity_if_owed(&self) -> StoreResult<Option<Vec<String>>> {
        if self.setting(RECOUNT_SETTING).await?.as_deref() == Some("done") {
            return Ok(None);
        }
        let repaired = self.repair_capacity_counts().await?;
        if repaired.is_empty() {
            sqlx::query(
                "INSERT INTO settings (name, value) VALUES ($1, 'done')
                 ON CONFLICT (name) DO UPDATE SET value = 'done'",
            )
            .bind(RECOUNT_SETTING)
            .execute(self.pool())
            .await?;
        }
        Ok(Some(repaired))
    }

    /// Recounts the rows behind every capacity counter and names each
    /// counter that disagrees (empty: all agree). Reads every holding row,
    /// so it is a check for tests and operators, not for request paths.
    ///
    /// The counters and the rows are read in one snapshot: the server keeps
    /// writing while it is checked (a sim launch adds a machine and its
    /// counter in one commit), and reads from two moments would report a
    /// drift that no single moment had.
    pub async fn capacity_drift(&self) -> StoreResult<Vec<String>> {
        let mut conn = self.pool().acquire().await?;
        let begin = match self.backend() {
            // A deferred transaction reads one WAL snapshot from its first
            // read to its end.
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        sqlx::query(begin).execute(&mut *conn).await?;
        let result = async {
            let mut drift = Vec::new();
            for counted in [Counted::Instances, Counted::SimMachines] {
                drift.extend(drift_of(&mut conn, counted).await?);
            }
            for (account, counter, rows) in super::budgets::drift(&mut conn).await? {
                drift.push(super::budgets::describe(&account, counter, rows));
            }
            Ok::<_, StoreError>(drift)
        }
        .await;
        sqlx::query("ROLLBACK").execute(&mut *conn).await?;
        result
    }

    /// Sets every capacity counter that disagrees with its rows to the
    /// recount, and names what it corrected. Runs at a server start that
    /// owes one ([`Store::recount_capacity_if_owed`]) and from `parasol
    /// store recount-capacity`: the counters can only drift through writers
    /// that do not keep them (a binary from before they existed, still
    /// serving during an upgrade, or a hand edit), and a recount under the
    /// counters' write lock puts them right without stopping the other
    /// replicas.
    pub async fn repair_capacity_counts(&self) -> StoreResult<Vec<String>> {
        let mut conn = self.pool().acquire().await?;
        // SQLite: the write lock up front. PostgreSQL: writers that change
        // a counter wait until the recount commits; the rows they wrote
        // meanwhile are not yet committed, so their own adjustment still
        // applies on top of it.
        let begin = match self.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        sqlx::query(begin).execute(&mut *conn).await?;
        let result = async {
            if self.backend() == Backend::Postgres {
                sqlx::query("LOCK TABLE holdings, sim_holdings, account_spend IN EXCLUSIVE MODE")
                    .execute(&mut *conn)
                    .await?;
            }
            let mut repaired = Vec::new();
            for counted in [Counted::Instances, Counted::SimMachines] {
                let drift = drift_of(&mut conn, counted).await?;
                if drift.is_empty() {
                    continue;
                }
                sqlx::query(&format!("DELETE FROM {}", counted.table()))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(&format!(
                    "INSERT INTO {} (cloud, region, shade_instance_type, pool, n) {}",
                    counted.table(),
                    counted.recount()
                ))
                .execute(&mut *conn)
                .await?;
                repaired.extend(drift);
            }
            repaired.extend(super::budgets::repair(&mut conn).await?);
            Ok::<_, StoreError>(repaired)
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut *conn).await?;
        result
    }
}

/// The counters of one table that disagree with a recount of their rows.
async fn drift_of(conn: &mut AnyConnection, counted: Counted) -> StoreResult<Vec<String>> {
    let counters = sqlx::query(&format!(
        "SELECT cloud, region, shade_instance_type, pool, n FROM {}",
        counted.table()
    ))
    .fetch_all(&mut *conn)
    .await?;
    let recounted = sqlx::query(&counted.recount())
        .fetch_all(&mut *conn)
        .await?;
    let mut both: BTreeMap<[String; 4], (i64, i64)> = BTreeMap::new();
    for (rows, side) in [(&counters, 0), (&recounted, 1)] {
        for r in rows {
            let key = [r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?];
            let n: i64 = r.try_get(4)?;
            let e = both.entry(key).or_default();
            if side == 0 {
                e.0 = n;
            } else {
                e.1 = n;
            }
        }
    }
    Ok(both
        .into_iter()
        .filter(|(_, (counter, rows))| counter != rows)
        .map(|(key, (counter, rows))| {
            format!(
                "{} {}: counter {counter}, rows {rows}",
                counted.table(),
                key.join("/")
            )
        })
        .collect())
}

/// Single machines and cluster nodes draw on separate capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Single,
    Cluster,
}

impl Pool {
    /// The pool's name as stored (`pool` columns).
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Single => "single",
            Pool::Cluster => "cluster",
        }
    }

    /// The pool of a machine that is, or is not, a cluster node.
    pub fn of(cluster_node: bool) -> Self {
        if cluster_node {
            Pool::Cluster
        } else {
            Pool::Single
        }
    }
}

/// The lock a job declares for the counter of an offer and pool it
/// changes (see `Store::write_locked`).
pub(crate) fn counter_lock(counted: Counted, key: &OfferKey, pool: Pool) -> i64 {
    super::writer::lock_key(&[
        counted.table(),
        &key.cloud,
        &key.region,
        &key.shade_instance_type,
        pool.as_str(),
    ])
}

/// Takes `k` slots of an offer if at most `limit` are then held (`None`:
/// no limit). `false`: not enough room, nothing changed.
pub(crate) async fn reserve(
    conn: &mut AnyConnection,
    counted: Counted,
    key: &OfferKey,
    pool: Pool,
    k: i64,
    limit: Option<i64>,
) -> StoreResult<bool> {
    let limit = limit.unwrap_or(i64::MAX);
    // SQLite needs the WHERE on the SELECT to parse the upsert; it also
    // refuses a first reservation larger than the limit.
    let res = sqlx::query(&format!(
        "INSERT INTO {t} (cloud, region, shade_instance_type, pool, n)
         SELECT $1, $2, $3, $4, $5 WHERE $5 <= $6
         ON CONFLICT (cloud, region, shade_instance_type, pool)
         DO UPDATE SET n = {t}.n + excluded.n WHERE {t}.n <= $6 - excluded.n",
        t = counted.table()
    ))
    .bind(&key.cloud)
    .bind(&key.region)
    .bind(&key.shade_instance_type)
    .bind(pool.as_str())
    .bind(k)
    .bind(limit)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Adds `delta` (positive or negative) to an offer's count, with no limit.
pub(crate) async fn adjust(
    conn: &mut AnyConnection,
    counted: Counted,
    key: &OfferKey,
    pool: Pool,
    delta: i64,
) -> StoreResult<()> {
    if delta > 0 {
        reserve(conn, counted, key, pool, delta, None).await?;
    } else if delta < 0 {
        sqlx::query(&format!(
            "UPDATE {} SET n = n + $1
             WHERE cloud = $2 AND region = $3 AND shade_instance_type = $4 AND pool = $5",
            counted.table()
        ))
        .bind(delta)
        .bind(&key.cloud)
        .bind(&key.region)
        .bind(&key.shade_instance_type)
        .bind(pool.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Slots held in every offer of a pool that holds any.
pub(crate) async fn all_held<'e, E>(
    exec: E,
    counted: Counted,
    pool: Pool,
) -> StoreResult<Vec<(OfferKey, i64)>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT cloud, region, shade_instance_type, n FROM {} WHERE pool = $1 AND n > 0",
        counted.table()
    ))
    .bind(pool.as_str())
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                OfferKey {
                    cloud: r.try_get(0)?,
                    region: r.try_get(1)?,
                    shade_instance_type: r.try_get(2)?,
                },
                r.try_get(3)?,
            ))
        })
        .collect()
}
