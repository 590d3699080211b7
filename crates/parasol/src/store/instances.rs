//! Instance rows: the API object as a JSON document, plus the columns that
//! queries filter on, written only through generation-checked updates.

use chrono::{DateTime, Utc};
use parasol_api::{Instance, Status};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::budgets::{self, Charge};
use super::capacity::{self, Counted, Pool};
use super::{Backend, Step, Store, StoreError, StoreResult};

/// Bookkeeping the reconciler keeps beside the API object.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Internal {
    /// When billing stopped (entering `deleting` or `error`).
    #[serde(default)]
    pub billing_stopped_at: Option<DateTime<Utc>>,
    /// A restart was accepted and has not reached the provider yet.
    #[serde(default)]
    pub restart_requested: bool,
    /// The provider confirmed it holds no machine for this instance.
    #[serde(default)]
    pub released: bool,
    /// Consecutive failed provider calls, for backoff.
    #[serde(default)]
    pub attempts: u32,
    /// The public key installed on the machine, captured at create.
    #[serde(default)]
    pub ssh_public_key: Option<String>,
    /// The last provider error, kept for the log and status details.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Alert thresholds already fired (`date`, `spend`), so each fires once.
    #[serde(default)]
    pub alerts_fired: Vec<String>,
    /// Set for instances launched by requirements: what they may move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<crate::lifecycle::placement::Placement>,
    /// The health the reconciler last found (`None`: not evaluated yet),
    /// so that each change records one event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<parasol_api::HealthStatus>,
    /// When the machine last (re)started: Xid and ECC reports from before
    /// it no longer count against its health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_since: Option<DateTime<Utc>>,
    /// An `idle.alert` fired for the idle stretch under way; cleared when
    /// the instance is busy again, so each stretch alerts once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idle_alerted: bool,
    /// When the idle and health policies next need a look (ms): the
    /// reconciler wakes the instance then even between regular checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_wake_ms: Option<i64>,
    /// The instance started to replace this one after it failed its health
    /// checks (`on_unhealthy: replace`), so it is replaced once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<Uuid>,
}

/// One instance as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub account_id: Uuid,
    pub cluster_id: Option<Uuid>,
    /// Bumped by every write; a write names the generation it read.
    pub generation: i64,
    /// When the reconciler should next look at it; `None`: nothing to do.
    pub wake_at: Option<i64>,
    pub instance: Instance,
    pub internal: Internal,
    /// The status as last read from or written to the store, so a write
    /// knows whether it changes the capacity the instance holds.
    pub stored_status: Status,
    /// The offer as last read or written: a write that moves the instance
    /// to another offer (placement's failover) moves its capacity too.
    pub stored_offer: OfferKey,
    /// GPUs and price as last read or written: a write that changes them
    /// (or the status) moves the account's budget counters too.
    pub stored_charge: Charge,
}

/// Identifies a catalog offer: a type in a region of a cloud.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferKey {
    pub cloud: String,
    pub region: String,
    pub shade_instance_type: String,
}

impl OfferKey {
    /// The offer an instance is on.
    pub fn of(i: &Instance) -> Self {
        OfferKey {
            cloud: i.cloud.clone(),
            region: i.region.clone(),
            shade_instance_type: i.shade_instance_type.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Doc<'a> {
    instance: std::borrow::Cow<'a, Instance>,
    internal: std::borrow::Cow<'a, Internal>,
}

/// Statuses that hold (or may hold) a machine at the provider.
pub(crate) const HOLDING: &str = "('creating','pending_provider','pending','active','deleting')";

/// Whether an instance in `status` holds capacity (one of [`HOLDING`]).
pub(crate) fn holds(status: Status) -> bool {
    matches!(
        status,
        Status::Creating
            | Status::PendingProvider
            | Status::Pending
            | Status::Active
            | Status::Deleting
    )
}

/// Whether a new instance or cluster was stored, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Stored,
    /// The offer's region had too few free slots; nothing was stored.
    NoCapacity,
    /// A single-mount volume is mounted by a live instance; nothing stored.
    VolumeInUse,
    /// The account's budget refuses it (the message names the limit and
    /// the numbers); nothing was stored.
    BudgetExceeded(String),
}

pub(super) const COLUMNS: &str = "account_id, cluster_id, generation, wake_at, doc";

impl Store {
    /// Writes `rec` if nobody wrote it since it was read. On success the
    /// record's generation is bumped; `false` means a lost race: re-read.
    pub async fn update_instance(
        &self,
        rec: &mut InstanceRecord,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.write_instance(rec, now_ms, None).await
    }

    /// The one write of an existing instance row: conditional on the
    /// generation it was read at (and, for the reconciler, on still holding
    /// the lease, which the write gives back). A write that moves the
    /// instance into or out of a holding status adjusts its offer's
    /// capacity count in the same transaction.
    pub(super) async fn write_instance(
        &self,
        rec: &mut InstanceRecord,
        now_ms: i64,
        lease_owner: Option<Uuid>,
    ) -> StoreResult<bool> {
        let sql = match lease_owner {
            None => {
                "UPDATE instances SET status = $1, generation = generation + 1, wake_at = $2,
                    doc = $3, updated_at = $4, health = $7
                 WHERE id = $5 AND generation = $6"
            }
            Some(_) => {
                "UPDATE instances SET status = $1, generation = generation + 1, wake_at = $2,
                    doc = $3, updated_at = $4, lease_owner = NULL, lease_until = NULL,
                    health = $8
                 WHERE id = $5 AND generation = $6 AND lease_owner = $7"
            }
        };
        let status = rec.instance.status.as_str();
        let wake_at = rec.wake_at;
        let doc = encode(rec)?;
        let id = rec.instance.id.to_string();
        let generation = rec.generation;
        let owner = lease_owner.map(|o| o.to_string());
        let health = rec.internal.health.map(|h| h.as_str());
        let offer = rec.offer_key();
        let stored_offer = rec.stored_offer.clone();
        let pool = rec.pool();
        let (was, now) = (holds(rec.stored_status), holds(rec.instance.status));
        let moved = offer != rec.stored_offer;
        let to = offer.clone();
        let charge = budgets::delta_of(rec);
        let account = rec.account_id;
        // A status change is recorded, with its webhook deliveries, by the
        // write that makes it, whoever the writer is.
        let events = super::webhooks::transition_events(rec, now_ms);
        let instance_id = rec.instance.id;
        // Without a capacity or budget change the job is its one UPDATE
        // (its events are written by the batch, see `writer`).
        let savepoint = moved || was != now || !charge.is_zero();
        let mut locks = Vec::new();
        if moved {
            locks.push(capacity::counter_lock(
                Counted::Instances,
                &stored_offer,
                pool,
            ));
        }
        if moved || was != now {
            locks.push(capacity::counter_lock(Counted::Instances, &to, pool));
        }
        if !charge.is_zero() {
            locks.push(budgets::spend_lock(account));
        }
        let written = self
            .writer
            .enqueue_locked(savepoint, locks, move |conn| {
                Box::pin(async move {
                    let query = sqlx::query(sql)
                        .bind(status)
                        .bind(wake_at)
                        .bind(doc)
                        .bind(now_ms)
                        .bind(&id)
                        .bind(generation);
                    let query = match &owner {
                        Some(owner) => query.bind(owner),
                        None => query,
                    };
                    let query = query.bind(health);
                    if query.execute(&mut *conn).await?.rows_affected() != 1 {
                        return Ok(Step::Undo(false));
                    }
                    if moved {
                        sqlx::query(
                            "UPDATE instances SET cloud = $1, region = $2, shade_instance_type = $3
                             WHERE id = $4",
                        )
                        .bind(&to.cloud)
                        .bind(&to.region)
                        .bind(&to.shade_instance_type)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                        capacity::adjust(
                            conn,
                            Counted::Instances,
                            &stored_offer,
                            pool,
                            -i64::from(was),
                        )
                        .await?;
                        capacity::adjust(conn, Counted::Instances, &to, pool, i64::from(now))
                            .await?;
                    } else if was != now {
                        capacity::adjust(
                            conn,
                            Counted::Instances,
                            &to,
                            pool,
                            i64::from(now) - i64::from(was),
                        )
                        .await?;
                    }
                    budgets::adjust(conn, account, charge).await?;
                    for e in &events {
                        super::webhooks::insert_event(
                            Uuid::new_v4(),
                            account,
                            Some(instance_id),
                            e.kind,
                            &e.message,
                            &e.data,
                            now_ms,
                        )?;
                    }
                    Ok(Step::Commit(true))
                })
            })
            .await?;
        if written {
            rec.generation += 1;
            rec.stored_status = rec.instance.status;
            rec.stored_offer = offer;
            rec.stored_charge = Charge::of(&rec.instance);
        }
        Ok(written)
    }

    /// An account's instance, unless deleted.
    pub async fn get_instance(
        &self,
        account: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<InstanceRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM instances WHERE id = $1 AND account_id = $2 AND status <> 'deleted'"
        ))
        .bind(id.to_string())
        .bind(account.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Any instance by id, whatever its account or status (reconciler).
    pub async fn get_instance_any(&self, id: Uuid) -> StoreResult<Option<InstanceRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM instances WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// An account's instances that are not deleted, oldest first.
    pub async fn list_instances(&self, account: Uuid) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM instances WHERE account_id = $1 AND status <> 'deleted'
             ORDER BY created_at, id"
        ))
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// An account's instances that were not deleted by `since_ms` (deleted
    /// ones last written since then too), oldest first: what can have cost
    /// anything since then.
    pub async fn instances_since(
        &self,
        account: Uuid,
        since_ms: i64,
    ) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM instances WHERE account_id = $1
             AND (status <> 'deleted' OR updated_at >= $2) ORDER BY created_at, id"
        ))
        .bind(account.to_string())
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The id and generation of each of an account's instances that are
    /// not deleted, oldest first: enough to tell which cached renderings
    /// are current. One aggregated row, not one row per instance, since a
    /// row costs more to fetch than its few bytes.
    pub async fn instance_versions(&self, account: Uuid) -> StoreResult<Vec<(Uuid, i64)>> {
        let sql = match self.backend() {
            // SQLite sorts an aggregate's own ORDER BY apart from the scan
            // (an ephemeral b-tree of every row: with 10,000 instances two
            // thirds of the query, 5 ms of a list's 19). A subquery's ORDER
            // BY is met by the scan of `instances_versions` itself, and
            // SQLite keeps a FROM subquery's ORDER BY for an aggregate
            // outer query, so the rows reach `group_concat` in that order.
            Backend::Sqlite => {
                "SELECT group_concat(id || ':' || generation, ',')
                 FROM (SELECT id, generation FROM instances
                       WHERE account_id = $1 AND status <> 'deleted'
                       ORDER BY created_at, id)"
            }
            Backend::Postgres => {
                "SELECT string_agg(id || ':' || generation, ',' ORDER BY created_at, id)
                 FROM instances WHERE account_id = $1 AND status <> 'deleted'"
            }
        };
        let joined: Option<String> = sqlx::query_scalar(sql)
            .bind(account.to_string())
            .fetch_one(self.pool())
            .await?;
        let Some(joined) = joined else {
            return Ok(Vec::new());
        };
        joined
            .split(',')
            .map(|v| {
                let (id, generation) = v
                    .split_once(':')
                    .ok_or_else(|| StoreError::Other(format!("instance version {v:?}")))?;
                let generation = generation
                    .parse()
                    .map_err(|_| StoreError::Other(format!("instance version {v:?}")))?;
                Ok((parse_uuid(id)?, generation))
            })
            .collect()
    }

    /// An account's instances with the given ids, in no particular order
    /// (deleted ones too: the caller asked for them by id).
    pub async fn instances_by_ids(
        &self,
        account: Uuid,
        ids: &[Uuid],
    ) -> StoreResult<Vec<InstanceRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            // By primary key alone: with the account in the WHERE clause
            // too, SQLite may scan the account's index for every chunk.
            let sql = format!(
                "SELECT {COLUMNS} FROM instances WHERE id IN ({})",
                super::marks(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.to_string());
            }
            for row in q.fetch_all(self.pool()).await? {
                let rec = decode(&row)?;
                if rec.account_id == account {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    /// Instances due for the reconciler, most overdue first.
    pub async fn due_instances(&self, now_ms: i64, limit: i64) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM instances WHERE wake_at IS NOT NULL AND wake_at <= $1
             ORDER BY wake_at LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The earliest wake-up no replica is working on, so the reconciler
    /// can sleep until then (a leased row is another replica's business).
    pub async fn next_wake(&self) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(wake_at) FROM instances WHERE wake_at IS NOT NULL AND lease_owner IS NULL",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// How many instances hold single-machine capacity in each offer
    /// (cluster nodes come from a pool of their own).
    pub async fn holding_counts(&self) -> StoreResult<Vec<(OfferKey, i64)>> {
        capacity::all_held(self.pool(), Counted::Instances, Pool::Single).await
    }

    /// How many cluster nodes hold cluster capacity in each offer.
    pub async fn holding_cluster_nodes(&self) -> StoreResult<Vec<(OfferKey, i64)>> {
        capacity::all_held(self.pool(), Counted::Instances, Pool::Cluster).await
    }

    /// The nodes of a cluster, in node order.
    pub async fn cluster_nodes(&self, cluster: Uuid) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM instances WHERE cluster_id = $1 ORDER BY created_at, id"
        ))
        .bind(cluster.to_string())
        .fetch_all(self.pool())
        .await?;
        let mut nodes: Vec<InstanceRecord> = rows.iter().map(decode).collect::<StoreResult<_>>()?;
        nodes.sort_by_key(|n| node_number(&n.instance.name));
        Ok(nodes)
    }

    /// Counts every instance by status (metrics, tests).
    pub async fn count_instances_by_status(&self) -> StoreResult<Vec<(Status, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM instances GROUP BY status")
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let s: String = r.try_get(0)?;
            if let Some(st) = Status::parse(&s) {
                out.push((st, r.try_get(1)?));
            }
        }
        Ok(out)
    }
}

/// Inserts an instance row inside a transaction that also counts the
/// capacity it holds (see [`capacity::reserve`]).
pub(super) async fn insert_instance_row(
    conn: &mut AnyConnection,
    rec: &InstanceRecord,
) -> StoreResult<()> {
    let i = &rec.instance;
    sqlx::query(
        "INSERT INTO instances (id, account_id, cluster_id, cloud, region, shade_instance_type,
            ssh_key_id, status, generation, wake_at, doc, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
    )
    .bind(i.id.to_string())
    .bind(rec.account_id.to_string())
    .bind(rec.cluster_id.map(|c| c.to_string()))
    .bind(&i.cloud)
    .bind(&i.region)
    .bind(&i.shade_instance_type)
    .bind(i.ssh_key_id.map(|k| k.to_string()))
    .bind(i.status.as_str())
    .bind(rec.generation)
    .bind(rec.wake_at)
    .bind(encode(rec)?)
    .bind(i.created_at.timestamp_millis())
    .execute(&mut *conn)
    .await?;
    // Every new instance (alone, a cluster's node, a relaunch) is recorded
    // as created, with its webhook deliveries, in the transaction that
    // stores it.
    let message = format!("instance {} created", i.name);
    super::webhooks::insert_event(
        Uuid::new_v4(),
        rec.account_id,
        Some(i.id),
        "instance.created",
        &message,
        &serde_json::to_value(i)?,
        i.created_at.timestamp_millis(),
    )
}

impl InstanceRecord {
    /// The offer this instance takes capacity from.
    pub fn offer_key(&self) -> OfferKey {
        OfferKey::of(&self.instance)
    }

    /// The capacity pool the instance draws on.
    pub fn pool(&self) -> Pool {
        Pool::of(self.cluster_id.is_some())
    }
}

/// `<cluster>-node-<n>` -> n, so node 10 sorts after node 9.
fn node_number(name: &str) -> u64 {
    name.rsplit("-node-")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

pub(super) fn encode(rec: &InstanceRecord) -> StoreResult<String> {
    Ok(serde_json::to_string(&Doc {
        instance: std::borrow::Cow::Borrowed(&rec.instance),
        internal: std::borrow::Cow::Borrowed(&rec.internal),
    })?)
}

pub(super) fn decode(r: &sqlx::any::AnyRow) -> StoreResult<InstanceRecord> {
    let account: String = r.try_get(0)?;
    let cluster: Option<String> = r.try_get(1)?;
    let doc: String = r.try_get(4)?;
    let doc: Doc<'static> = serde_json::from_str(&doc)?;
    let mut instance = doc.instance.into_owned();
    if instance.os.is_empty() {
        // Stored before the top-level copy existed.
        instance.os = instance.configuration.os.clone();
    }
    Ok(InstanceRecord {
        account_id: parse_uuid(&account)?,
        cluster_id: cluster.as_deref().map(parse_uuid).transpose()?,
        generation: r.try_get(2)?,
        wake_at: r.try_get(3)?,
        stored_status: instance.status,
        stored_offer: OfferKey::of(&instance),
        stored_charge: Charge::of(&instance),
        instance,
        internal: doc.internal.into_owned(),
    })
}

impl Store {
    /// Brings an instance's next reconcile forward to `now_ms`.
    ///
    /// Only scheduling: no state changes, so no generation bump. A
    /// concurrent reconciler write may push `wake_at` back out, in which
    /// case the instance is looked at on its regular schedule instead.
    pub async fn wake_instance(&self, id: Uuid, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE instances SET wake_at = $1 WHERE id = $2 AND status <> 'deleted'")
            .bind(now_ms)
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Brings every scheduled reconcile forward to `now_ms` (after the test
    /// clock jumps).
    pub async fn wake_all(&self, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE instances SET wake_at = $1 WHERE wake_at IS NOT NULL AND wake_at > $1")
            .bind(now_ms)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_agrees_with_the_holding_list_the_queries_use() {
        for status in Status::ALL {
            let listed = HOLDING.contains(&format!("'{}'", status.as_str()));
            assert_eq!(holds(status), listed, "{status}");
        }
    }
}
