//! Cluster rows: the cluster's own fields as a JSON document (its nodes are
//! instance rows pointing here), written only through generation-checked
//! updates like instances.

use parasol_api::{Cluster, Status};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::budgets::{self, Charge};
use super::capacity::{self, Counted, Pool};
use super::instances::{insert_instance_row, InsertOutcome};
use super::{InstanceRecord, Step, Store, StoreResult};

/// Bookkeeping beside the API object.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterInternal {
    /// When the cluster reached `deleted`; it is then hidden.
    #[serde(default)]
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One cluster as stored. `cluster.instances` is empty in the store; the
/// API fills it from the node rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRecord {
    pub account_id: Uuid,
    pub generation: i64,
    pub wake_at: Option<i64>,
    pub cluster: Cluster,
    pub internal: ClusterInternal,
}

#[derive(Serialize, Deserialize)]
struct Doc {
    cluster: Cluster,
    internal: ClusterInternal,
}

const COLUMNS: &str = "account_id, generation, wake_at, doc";

impl Store {
    /// Stores a cluster and all its nodes, or nothing: the nodes take their
    /// slots of the offer's cluster pool only if at most `slots` are then
    /// held (`None`: the provider keeps no count).
    pub async fn insert_cluster(
        &self,
        rec: &ClusterRecord,
        nodes: &[InstanceRecord],
        slots: Option<i64>,
    ) -> StoreResult<InsertOutcome> {
        let spent = self
            .spent_before_admission(rec.account_id, rec.cluster.created_at)
            .await?;
        let account_id = rec.account_id;
        let cluster_created_at = rec.cluster.created_at;
        let id = rec.cluster.id.to_string();
        let account = rec.account_id.to_string();
        let status = rec.cluster.status.as_str();
        let (generation, wake_at) = (rec.generation, rec.wake_at);
        let doc = encode(rec)?;
        let created_at = rec.cluster.created_at.timestamp_millis();
        let nodes = nodes.to_vec();
        let mut locks = vec![budgets::spend_lock(account_id)];
        if let Some(first) = nodes.first() {
            locks.push(capacity::counter_lock(
                Counted::Instances,
                &first.offer_key(),
                Pool::Cluster,
            ));
        }
        let (outcome, monthly_limited) = self
            .write_locked(locks, move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO clusters (id, account_id, status, generation, wake_at, doc, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    )
                    .bind(id)
                    .bind(account)
                    .bind(status)
                    .bind(generation)
                    .bind(wake_at)
                    .bind(doc)
                    .bind(created_at)
                    .execute(&mut *conn)
                    .await?;
                    for node in &nodes {
                        insert_instance_row(conn, node).await?;
                    }
                    if let Some(first) = nodes.first() {
                        if !capacity::reserve(
                            conn,
                            Counted::Instances,
                            &first.offer_key(),
                            Pool::Cluster,
                            nodes.len() as i64,
                            slots,
                        )
                        .await?
                        {
                            return Ok(Step::Undo((InsertOutcome::NoCapacity, None)));
                        }
                    }
                    let charge = nodes
                        .iter()
                        .map(|n| Charge::of(&n.instance))
                        .fold(Charge::default(), Charge::plus);
                    budgets::admit(conn, account_id, charge, cluster_created_at, spent).await
                })
            })
            .await?;
        self.learn_monthly_limit(account_id, monthly_limited);
        Ok(outcome)
    }

    /// Writes `rec` if nobody wrote it since it was read; bumps its
    /// generation on success.
    pub async fn update_cluster(&self, rec: &mut ClusterRecord, now_ms: i64) -> StoreResult<bool> {
        self.write_cluster(rec, now_ms, None).await
    }

    /// The one write of an existing cluster row: generation-checked, and
    /// for the reconciler also lease-checked (the write gives the lease
    /// back; a lost race hands it back too, so the cluster is not stuck
    /// until the lease expires).
    async fn write_cluster(
        &self,
        rec: &mut ClusterRecord,
        now_ms: i64,
        owner: Option<Uuid>,
    ) -> StoreResult<bool> {
        let status = rec.cluster.status.as_str();
        let wake_at = rec.wake_at;
        let doc = encode(rec)?;
        let id = rec.cluster.id.to_string();
        let generation = rec.generation;
        let owner = owner.map(|o| o.to_string());
        let (account, name) = (rec.account_id, rec.cluster.name.clone());
        let data = serde_json::to_value(&rec.cluster)?;
        // A lost race hands the lease back only because the write matched
        // nothing. A status change is recorded as a `cluster.status_changed`
        // event by the write that makes it.
        let written = self
            .write(move |conn| {
                Box::pin(async move {
                    let was: Option<String> = sqlx::query_scalar(
                        "SELECT status FROM clusters WHERE id = $1 AND generation = $2",
                    )
                    .bind(&id)
                    .bind(generation)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let res = match &owner {
                        None => sqlx::query(
                            "UPDATE clusters SET status = $1, generation = generation + 1, wake_at = $2, doc = $3, updated_at = $4
                             WHERE id = $5 AND generation = $6",
                        ),
                        Some(_) => sqlx::query(
                            "UPDATE clusters SET status = $1, generation = generation + 1, wake_at = $2, doc = $3, updated_at = $4,
                                lease_owner = NULL, lease_until = NULL
                             WHERE id = $5 AND generation = $6 AND lease_owner = $7",
                        ),
                    }
                    .bind(status)
                    .bind(wake_at)
                    .bind(doc)
                    .bind(now_ms)
                    .bind(&id)
                    .bind(generation);
                    let res = match &owner {
                        Some(o) => res.bind(o),
                        None => res,
                    };
                    if res.execute(&mut *conn).await?.rows_affected() == 1 {
                        if let Some(was) = was.filter(|w| w != status) {
                            let mut data = data;
                            data["from"] = serde_json::json!(was);
                            data["to"] = serde_json::json!(status);
                            let message = format!("cluster {name} went from {was} to {status}");
                            super::webhooks::insert_event(
                                Uuid::new_v4(),
                                account,
                                None,
                                "cluster.status_changed",
                                &message,
                                &data,
                                now_ms,
                            )?;
                        }
                        return Ok(Step::Commit(true));
                    }
                    if let Some(owner) = &owner {
                        sqlx::query(
                            "UPDATE clusters SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
                        )
                        .bind(&id)
                        .bind(owner)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(Step::Commit(false))
                })
            })
            .await?;
        if written {
            rec.generation += 1;
        }
        Ok(written)
    }

    /// Claims up to `limit` due clusters for `owner`, like
    /// [`Store::claim_due_instances`]: no two replicas step one cluster.
    pub async fn claim_due_clusters(
        &self,
        owner: Uuid,
        now_ms: i64,
        wall_now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClusterRecord>> {
        let rows = self
            .claim_rows(
                "clusters",
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
        out.sort_by_key(|r| r.wake_at);
        Ok(out)
    }

    /// The reconciler's cluster write: generation-checked, only while
    /// `owner` holds the lease, which it gives back.
    pub async fn update_leased_cluster(
        &self,
        rec: &mut ClusterRecord,
        now_ms: i64,
        owner: Uuid,
    ) -> StoreResult<bool> {
        self.write_cluster(rec, now_ms, Some(owner)).await
    }

    /// An account's cluster, unless deleted.
    pub async fn get_cluster(&self, account: Uuid, id: Uuid) -> StoreResult<Option<ClusterRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM clusters WHERE id = $1 AND account_id = $2 AND status <> 'deleted'"
        ))
        .bind(id.to_string())
        .bind(account.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Any cluster by id (reconciler).
    pub async fn get_cluster_any(&self, id: Uuid) -> StoreResult<Option<ClusterRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM clusters WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// An account's clusters that are not deleted, oldest first.
    pub async fn list_clusters(&self, account: Uuid) -> StoreResult<Vec<ClusterRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM clusters WHERE account_id = $1 AND status <> 'deleted' ORDER BY created_at, id"
        ))
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The earliest scheduled cluster reconcile.
    pub async fn next_cluster_wake(&self) -> StoreResult<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(wake_at) FROM clusters WHERE wake_at IS NOT NULL")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Brings a cluster's next reconcile forward (scheduling only, like
    /// [`Store::wake_instance`]).
    pub async fn wake_cluster(&self, id: Uuid, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE clusters SET wake_at = $1 WHERE id = $2 AND status <> 'deleted'")
            .bind(now_ms)
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Counts clusters by status (metrics, tests).
    pub async fn count_clusters_by_status(&self) -> StoreResult<Vec<(Status, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM clusters GROUP BY status")
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

fn encode(rec: &ClusterRecord) -> StoreResult<String> {
    let mut cluster = rec.cluster.clone();
    cluster.instances.clear();
    Ok(serde_json::to_string(&Doc {
        cluster,
        internal: rec.internal.clone(),
    })?)
}

fn decode(r: &sqlx::any::AnyRow) -> StoreResult<ClusterRecord> {
    let account: String = r.try_get(0)?;
    let doc: String = r.try_get(3)?;
    let doc: Doc = serde_json::from_str(&doc)?;
    Ok(ClusterRecord {
        account_id: parse_uuid(&account)?,
        generation: r.try_get(1)?,
        wake_at: r.try_get(2)?,
        cluster: doc.cluster,
        internal: doc.internal,
    })
}
