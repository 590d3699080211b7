//! Volumes, their mounts, and the account event log.
//!
//! A volume row has a lifecycle like an instance's, driven by the
//! reconciler (`lifecycle::volumes`): the API stores it `creating` and due
//! now; the reconciler makes it at its cloud (`available`, with the cloud's
//! id) or records the cloud's refusal (`error`). A delete hides the row at
//! once (`deleted_at`) and leaves it `deleting`, due, until the reconciler
//! has deleted it at the cloud (`deleted`). Every write after the insert is
//! generation-checked, and the reconciler's also lease-checked.

use sqlx::Row;
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::budgets::{self, Charge};
use super::capacity::{self, Counted};
use super::instances::{insert_instance_row, InsertOutcome, HOLDING};
use super::{flag, InstanceRecord, Step, Store, StoreResult};

/// Where a volume is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeStatus {
    /// Stored; not made at the cloud yet.
    Creating,
    /// Made at the cloud; instances may mount it.
    Available,
    /// The cloud refused it; `status_details` says why.
    Error,
    /// Deleted by its account; still to be deleted at the cloud.
    Deleting,
    /// Gone at the cloud too.
    Deleted,
}

impl VolumeStatus {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeStatus::Creating => "creating",
            VolumeStatus::Available => "available",
            VolumeStatus::Error => "error",
            VolumeStatus::Deleting => "deleting",
            VolumeStatus::Deleted => "deleted",
        }
    }

    /// The status a stored name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        [
            VolumeStatus::Creating,
            VolumeStatus::Available,
            VolumeStatus::Error,
            VolumeStatus::Deleting,
            VolumeStatus::Deleted,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One volume as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub cloud: String,
    pub region: String,
    pub name: String,
    pub size_in_gb: i64,
    pub fixed_size: bool,
    pub multi_mount: bool,
    /// Millionths of a dollar per GB-hour.
    pub price_micros: i64,
    pub created_at: i64,
    /// Instances holding a machine that mount it, oldest first.
    pub mounted_by: Vec<Uuid>,
    pub status: VolumeStatus,
    /// Why it is in `error` (the cloud's reason), or what a retried call
    /// last failed with.
    pub status_details: Option<String>,
    /// The cloud's id, once the cloud has made it.
    pub cloud_assigned_id: Option<String>,
    /// Where in its region the cloud put it, where that matters for
    /// mounting (an AWS availability zone).
    pub zone: Option<String>,
    pub generation: i64,
    /// Failed calls in a row, for the backoff.
    pub attempts: i64,
    /// When the reconciler looks at it next; `None`: nothing to do.
    pub wake_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

impl VolumeRecord {
    /// A new volume of `account`, to be made at its cloud as soon as the
    /// reconciler runs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        account_id: Uuid,
        cloud: &str,
        region: &str,
        name: &str,
        size_in_gb: i64,
        fixed_size: bool,
        multi_mount: bool,
        price_micros: i64,
        now_ms: i64,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            account_id,
            cloud: cloud.to_string(),
            region: region.to_string(),
            name: name.to_string(),
            size_in_gb,
            fixed_size,
            multi_mount,
            price_micros,
            created_at: now_ms,
            mounted_by: Vec::new(),
            status: VolumeStatus::Creating,
            status_details: None,
            cloud_assigned_id: None,
            zone: None,
            generation: 0,
            attempts: 0,
            wake_at: Some(now_ms),
            deleted_at: None,
        }
    }

    /// The volume as a provider call names it.
    pub fn cloud_ref(&self) -> crate::providers::VolumeRef {
        crate::providers::VolumeRef {
            volume_id: self.id,
            region: self.region.clone(),
            cloud_assigned_id: self.cloud_assigned_id.clone(),
        }
    }
}

/// Why a volume delete did or did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteVolumeOutcome {
    Deleted,
    NotFound,
    Mounted,
}

/// Something that happened to an account's resources.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    pub id: Uuid,
    pub instance_id: Option<Uuid>,
    pub kind: String,
    pub message: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, account_id, cloud, region, name, size_in_gb, fixed_size, multi_mount, \
     price_micros, created_at, status, status_details, cloud_assigned_id, zone, generation, attempts, \
     wake_at, deleted_at";

impl Store {
    /// Stores a new volume.
    pub async fn insert_volume(&self, v: &VolumeRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO volumes (id, account_id, cloud, region, name, size_in_gb, fixed_size, multi_mount,
                price_micros, created_at, deleted_at, status, generation, attempts, wake_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, 0, 0, $12)",
        )
        .bind(v.id.to_string())
        .bind(v.account_id.to_string())
        .bind(&v.cloud)
        .bind(&v.region)
        .bind(&v.name)
        .bind(v.size_in_gb)
        .bind(flag(v.fixed_size))
        .bind(flag(v.multi_mount))
        .bind(v.price_micros)
        .bind(v.created_at)
        .bind(v.status.as_str())
        .bind(v.wake_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Any volume by id, deleted ones included (reconciler, sweep).
    pub async fn get_volume_any(&self, id: Uuid) -> StoreResult<Option<VolumeRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM volumes WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Claims up to `limit` due volumes for `owner`, like
    /// [`Store::claim_due_instances`].
    pub async fn claim_due_volumes(
        &self,
        owner: Uuid,
        now_ms: i64,
        wall_now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<VolumeRecord>> {
        let rows = self
            .claim_rows(
                "volumes",
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

    /// The reconciler's volume write: only if nobody wrote the row since it
    /// was read and `owner` still holds the lease, which it gives back (a
    /// lost race gives it back too). `false`: re-read.
    pub async fn update_leased_volume(
        &self,
        v: &mut VolumeRecord,
        owner: Uuid,
    ) -> StoreResult<bool> {
        let id = v.id.to_string();
        let owner = owner.to_string();
        let (status, details) = (v.status.as_str(), v.status_details.clone());
        let (cloud_id, zone) = (v.cloud_assigned_id.clone(), v.zone.clone());
        let (generation, attempts, wake_at) = (v.generation, v.attempts, v.wake_at);
        let written = self
            .write_one(move |conn| {
                Box::pin(async move {
                    let res = sqlx::query(
                        "UPDATE volumes SET status = $1, status_details = $2, cloud_assigned_id = $3,
                            zone = $4, attempts = $5, wake_at = $6, generation = generation + 1,
                            lease_owner = NULL, lease_until = NULL
                         WHERE id = $7 AND generation = $8 AND lease_owner = $9",
                    )
                    .bind(status)
                    .bind(details)
                    .bind(cloud_id)
                    .bind(zone)
                    .bind(attempts)
                    .bind(wake_at)
                    .bind(&id)
                    .bind(generation)
                    .bind(&owner)
                    .execute(&mut *conn)
                    .await?;
                    if res.rows_affected() == 1 {
                        return Ok(Step::Commit(true));
                    }
                    sqlx::query(
                        "UPDATE volumes SET lease_owner = NULL, lease_until = NULL
                         WHERE id = $1 AND lease_owner = $2",
                    )
                    .bind(&id)
                    .bind(&owner)
                    .execute(&mut *conn)
                    .await?;
                    Ok(Step::Commit(false))
                })
            })
            .await?;
        if written {
            v.generation += 1;
        }
        Ok(written)
    }

    /// The earliest scheduled volume step.
    pub async fn next_volume_wake(&self) -> StoreResult<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(wake_at) FROM volumes WHERE wake_at IS NOT NULL")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// An account's volume, unless deleted.
    pub async fn get_volume(&self, account: Uuid, id: Uuid) -> StoreResult<Option<VolumeRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM volumes WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL"
        ))
        .bind(id.to_string())
        .bind(account.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => {
                let mut v = decode(&r)?;
                v.mounted_by = self.mounted_by(v.id).await?;
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    /// An account's volumes, oldest first.
    pub async fn list_volumes(&self, account: Uuid) -> StoreResult<Vec<VolumeRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM volumes WHERE account_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
        ))
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut v = decode(r)?;
            v.mounted_by = self.mounted_by(v.id).await?;
            out.push(v);
        }
        Ok(out)
    }

    async fn mounted_by(&self, volume: Uuid) -> StoreResult<Vec<Uuid>> {
        let rows = sqlx::query(&format!(
            "SELECT i.id FROM volume_mounts m JOIN instances i ON i.id = m.instance_id
             WHERE m.volume_id = $1 AND i.status IN {HOLDING} ORDER BY i.created_at, i.id"
        ))
        .bind(volume.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| parse_uuid(&r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Deletes a volume unless a live instance mounts it (one statement): it
    /// is hidden at once and due, so the reconciler deletes it at its cloud.
    pub async fn delete_volume(
        &self,
        account: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> StoreResult<DeleteVolumeOutcome> {
        let res = sqlx::query(&format!(
            "UPDATE volumes SET deleted_at = $1, status = 'deleting', status_details = NULL,
                wake_at = $1, attempts = 0, generation = generation + 1
             WHERE id = $2 AND account_id = $3 AND deleted_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM volume_mounts m JOIN instances i ON i.id = m.instance_id
                             WHERE m.volume_id = $2 AND i.status IN {HOLDING})"
        ))
        .bind(now_ms)
        .bind(id.to_string())
        .bind(account.to_string())
        .execute(self.pool())
        .await?;
        if res.rows_affected() > 0 {
            return Ok(DeleteVolumeOutcome::Deleted);
        }
        Ok(match self.get_volume(account, id).await? {
            None => DeleteVolumeOutcome::NotFound,
            Some(_) => DeleteVolumeOutcome::Mounted,
        })
    }

    /// Stores an instance and its volume mounts together, taking one slot
    /// of its offer if at most `slots` are then held (`None`: the provider
    /// keeps no count). Stores nothing when the offer is full or a
    /// single-mount volume is already mounted by an instance that holds a
    /// machine.
    pub async fn insert_instance_with_volumes(
        &self,
        rec: &InstanceRecord,
        volumes: &[VolumeRecord],
        slots: Option<i64>,
    ) -> StoreResult<InsertOutcome> {
        self.insert_instance_inner(rec, volumes, slots, true).await
    }

    /// Stores the instance that replaces a preempted one: counted against
    /// its account's budget but never refused by it, since it takes the
    /// place of a machine the budget already admitted (which still counts
    /// until its teardown ends).
    pub async fn insert_replacement(&self, rec: &InstanceRecord) -> StoreResult<InsertOutcome> {
        self.insert_instance_inner(rec, &[], None, false).await
    }

    async fn insert_instance_inner(
        &self,
        rec: &InstanceRecord,
        volumes: &[VolumeRecord],
        slots: Option<i64>,
        check_budget: bool,
    ) -> StoreResult<InsertOutcome> {
        let spent = if check_budget {
            self.spent_before_admission(rec.account_id, rec.instance.created_at)
                .await?
        } else {
            None
        };
        let rec = rec.clone();
        let account = rec.account_id;
        let mounts: Vec<(String, i64)> = volumes
            .iter()
            .map(|v| (v.id.to_string(), flag(v.multi_mount)))
            .collect();
        // The job answers whether the account has a monthly limit beside
        // the outcome, so this process learns it whatever the outcome.
        let locks = vec![
            capacity::counter_lock(Counted::Instances, &rec.offer_key(), rec.pool()),
            budgets::spend_lock(account),
        ];
        let (outcome, monthly_limited) = self
            .write_locked(locks, move |conn| {
                Box::pin(async move {
                    insert_instance_row(conn, &rec).await?;
                    let id = rec.instance.id.to_string();
                    for (volume, multi_mount) in &mounts {
                        // The check and the insert are one statement, so two
                        // creates racing for one volume cannot both mount it.
                        let res = sqlx::query(&format!(
                            "INSERT INTO volume_mounts (volume_id, instance_id)
                             SELECT $1, $2 WHERE $3 = 1 OR NOT EXISTS (
                                 SELECT 1 FROM volume_mounts m JOIN instances i ON i.id = m.instance_id
                                 WHERE m.volume_id = $1 AND i.id <> $2 AND i.status IN {HOLDING})"
                        ))
                        .bind(volume)
                        .bind(&id)
                        .bind(*multi_mount)
                        .execute(&mut *conn)
                        .await?;
                        if res.rows_affected() == 0 {
                            return Ok(Step::Undo((InsertOutcome::VolumeInUse, None)));
                        }
                    }
                    // Last, so the counter rows are locked for as short as
                    // possible.
                    if !capacity::reserve(
                        conn,
                        Counted::Instances,
                        &rec.offer_key(),
                        rec.pool(),
                        1,
                        slots,
                    )
                    .await?
                    {
                        return Ok(Step::Undo((InsertOutcome::NoCapacity, None)));
                    }
                    let charge = Charge::of(&rec.instance);
                    if !check_budget {
                        budgets::adjust(conn, rec.account_id, charge).await?;
                        return Ok(Step::Commit((InsertOutcome::Stored, None)));
                    }
                    budgets::admit(conn, account, charge, rec.instance.created_at, spent).await
                })
            })
            .await?;
        self.learn_monthly_limit(account, monthly_limited);
        Ok(outcome)
    }

    /// Records an event for an account; its webhook data names the
    /// instance and says what happened (see [`Store::record_event_with`]).
    pub async fn record_event(
        &self,
        account: Uuid,
        instance: Option<Uuid>,
        kind: &str,
        message: &str,
        now_ms: i64,
    ) -> StoreResult<Uuid> {
        let data = serde_json::json!({ "instance_id": instance, "message": message });
        self.record_event_with(account, instance, kind, message, data, now_ms)
            .await
    }

    /// An account's events, oldest first.
    pub async fn list_events(&self, account: Uuid) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT id, instance_id, kind, message, created_at FROM events WHERE account_id = $1
             ORDER BY created_at, id",
        )
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let inst: Option<String> = r.try_get(1)?;
                Ok(Event {
                    id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                    instance_id: inst.as_deref().map(parse_uuid).transpose()?,
                    kind: r.try_get(2)?,
                    message: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
    }
}

fn decode(r: &sqlx::any::AnyRow) -> StoreResult<VolumeRecord> {
    Ok(VolumeRecord {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        account_id: parse_uuid(&r.try_get::<String, _>(1)?)?,
        cloud: r.try_get(2)?,
        region: r.try_get(3)?,
        name: r.try_get(4)?,
        size_in_gb: r.try_get(5)?,
        fixed_size: r.try_get::<i64, _>(6)? != 0,
        multi_mount: r.try_get::<i64, _>(7)? != 0,
        price_micros: r.try_get(8)?,
        created_at: r.try_get(9)?,
        mounted_by: Vec::new(),
        status: {
            let s: String = r.try_get(10)?;
            VolumeStatus::parse(&s).ok_or_else(|| {
                super::StoreError::Other(format!("volume status {s:?} is not one Parasol writes"))
            })?
        },
        status_details: r.try_get(11)?,
        cloud_assigned_id: r.try_get(12)?,
        zone: r.try_get(13)?,
        generation: r.try_get(14)?,
        attempts: r.try_get(15)?,
        wake_at: r.try_get(16)?,
        deleted_at: r.try_get(17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{version_creating, SqliteSync, StoreOptions};

    fn sqlite(dir: &tempfile::TempDir) -> StoreOptions {
        StoreOptions {
            url: format!("sqlite://{}", dir.path().join("store.db").display()),
            max_connections: 1,
        }
    }

    #[tokio::test]
    async fn the_migration_makes_each_live_volume_due_to_be_made_at_its_cloud() {
        let dir = tempfile::tempdir().unwrap();
        let opts = sqlite(&dir);
        let before = version_creating("sim_volumes").expect("a step creates sim_volumes") - 1;
        let old = Store::open_at_version(&opts, SqliteSync::Full, before)
            .await
            .unwrap();
        let (live, gone, account) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for (id, deleted) in [(live, None), (gone, Some(2000i64))] {
            sqlx::query(
                "INSERT INTO volumes (id, account_id, cloud, region, name, size_in_gb, fixed_size,
                    multi_mount, price_micros, created_at, deleted_at)
                 VALUES ($1, $2, 'digitalocean', 'nyc2', 'v', 10, 0, 0, 137, 1000, $3)",
            )
            .bind(id.to_string())
            .bind(account.to_string())
            .bind(deleted)
            .execute(old.pool())
            .await
            .unwrap();
        }
        old.close().await;

        let store = Store::open(&opts).await.unwrap();
        let v = store.get_volume_any(live).await.unwrap().unwrap();
        assert_eq!(
            (v.status, v.wake_at, v.cloud_assigned_id.as_deref()),
            (VolumeStatus::Creating, Some(1000), None)
        );
        let g = store.get_volume_any(gone).await.unwrap().unwrap();
        assert_eq!((g.status, g.wake_at), (VolumeStatus::Deleted, None));
        let owner = Uuid::new_v4();
        let due = store
            .claim_due_volumes(owner, 5000, 0, i64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(due.iter().map(|v| v.id).collect::<Vec<_>>(), vec![live]);
    }

    #[tokio::test]
    async fn a_delete_during_a_step_wins_and_the_step_gives_its_lease_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&sqlite(&dir)).await.unwrap();
        let account = Uuid::new_v4();
        let v = VolumeRecord::new(
            account,
            "digitalocean",
            "nyc2",
            "v",
            10,
            false,
            false,
            137,
            1000,
        );
        store.insert_volume(&v).await.unwrap();
        let owner = Uuid::new_v4();
        let mut claimed = store
            .claim_due_volumes(owner, 1000, 0, i64::MAX, 10)
            .await
            .unwrap()
            .remove(0);
        assert!(
            store
                .claim_due_volumes(Uuid::new_v4(), 1000, 0, i64::MAX, 10)
                .await
                .unwrap()
                .is_empty(),
            "a leased volume is nobody else's"
        );
        assert_eq!(
            store.delete_volume(account, v.id, 2000).await.unwrap(),
            DeleteVolumeOutcome::Deleted
        );
        claimed.status = VolumeStatus::Available;
        claimed.cloud_assigned_id = Some("vol-1".into());
        claimed.wake_at = None;
        assert!(!store
            .update_leased_volume(&mut claimed, owner)
            .await
            .unwrap());
        let now = store.get_volume_any(v.id).await.unwrap().unwrap();
        assert_eq!(now.status, VolumeStatus::Deleting);
        assert_eq!(now.wake_at, Some(2000));
        let again = store
            .claim_due_volumes(Uuid::new_v4(), 2000, 0, i64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1, "the lost race gave the lease back");
        assert_eq!(again[0].status, VolumeStatus::Deleting);
    }
}
