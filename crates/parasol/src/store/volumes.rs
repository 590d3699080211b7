//! Volumes, their mounts, and the account event log.

use sqlx::Row;
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::budgets::{self, Charge};
use super::capacity::{self, Counted};
use super::instances::{insert_instance_row, InsertOutcome, HOLDING};
use super::{flag, InstanceRecord, Step, Store, StoreResult};

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

const COLUMNS: &str =
    "id, account_id, cloud, region, name, size_in_gb, fixed_size, multi_mount, price_micros, created_at";

impl Store {
    /// Stores a new volume.
    pub async fn insert_volume(&self, v: &VolumeRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO volumes (id, account_id, cloud, region, name, size_in_gb, fixed_size, multi_mount,
                price_micros, created_at, deleted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
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
        .execute(self.pool())
        .await?;
        Ok(())
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

    /// Deletes a volume unless a live instance mounts it (one statement).
    pub async fn delete_volume(
        &self,
        account: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> StoreResult<DeleteVolumeOutcome> {
        let res = sqlx::query(&format!(
            "UPDATE volumes SET deleted_at = $1 WHERE id = $2 AND account_id = $3 AND deleted_at IS NULL
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
        let (outcome, monthly_limited) = self
            .write(move |conn| {
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
    })
}
