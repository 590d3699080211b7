//! Budgets: per-account counters of live GPUs and live $/h, kept like the
//! capacity counters (store/capacity.rs) and holding the budget's limits,
//! so admission is one conditional upsert that racing creates cannot both
//! win; and the month-to-date spend the monthly limit is checked against.
//!
//! The counter row (`account_spend`) carries the limits beside the counts:
//! the upsert reads them under the row's lock, so a budget changed on one
//! replica binds every replica's next create, and an account without a
//! budget pays only the upsert.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use parasol_api::{dollars, Budget};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::instances::{decode, holds, COLUMNS, HOLDING};
use super::{InsertOutcome, InstanceRecord, Step, Store, StoreError, StoreResult};
use crate::lifecycle::cost;

/// What one live instance counts against its account's budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub gpus: i64,
    /// Cents per hour.
    pub cents: i64,
}

impl Charge {
    /// The charge of an instance on its current offer and price.
    pub fn of(i: &parasol_api::Instance) -> Self {
        Charge {
            gpus: i.configuration.num_gpus,
            cents: i.hourly_price,
        }
    }

    /// The charge of an instance in `status`: nothing unless it holds a
    /// machine (the same statuses that hold capacity).
    pub fn held(self, status: parasol_api::Status) -> Self {
        if holds(status) {
            self
        } else {
            Charge::default()
        }
    }

    fn minus(self, o: Charge) -> Charge {
        Charge {
            gpus: self.gpus - o.gpus,
            cents: self.cents - o.cents,
        }
    }

    pub(super) fn plus(self, o: Charge) -> Charge {
        Charge {
            gpus: self.gpus + o.gpus,
            cents: self.cents + o.cents,
        }
    }

    pub fn is_zero(self) -> bool {
        self == Charge::default()
    }
}

/// A budget's limits in the units the counters use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub monthly_limit_cents: Option<i64>,
    pub max_hourly_cents: Option<i64>,
    pub max_gpus: Option<i64>,
}

/// An account as the admin API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSummary {
    pub id: Uuid,
    pub name: String,
    pub is_admin: bool,
    pub budget: Option<Budget>,
    pub live: Charge,
    pub live_instances: i64,
}

/// A budgeted account the reconciler watches (it has a monthly limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    pub account_id: Uuid,
    pub budget: Budget,
    pub monthly_limit_cents: i64,
    /// `YYYY-MM` of the last month its alert fired.
    pub alert_month: Option<String>,
    /// When the budget was last set (ms): a limit already passed then is
    /// enforced from then on, never retroactively.
    pub budget_set_at: i64,
}

/// Why an account delete did or did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteAccountOutcome {
    Deleted,
    NotFound,
    /// It still holds live instances or volumes (the message says which).
    Busy(String),
}

/// The first millisecond of `now`'s UTC month.
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// The first millisecond of the UTC month after `now`'s.
pub fn next_month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// Month-to-date spend of these instances as of `at`: the one accrual
/// function over each instance's part of the month.
pub fn spend_at(recs: &[InstanceRecord], at: DateTime<Utc>) -> i64 {
    let from = month_start(at);
    recs.iter()
        .map(|r| cost::instance_cents_within(r, from, at, at))
        .sum()
}

/// What admission learnt: the refusal, if any, and whether the account's
/// budget has a monthly limit (for [`Store::spent_before_admission`]).
pub(super) struct Admission {
    pub refused: Option<String>,
    pub monthly_limited: bool,
}

impl Store {
    /// The month-to-date spend of an account this process last saw with a
    /// monthly limit, read before the admission transaction so the scan
    /// does not hold the write lock; `None` for other accounts (admission
    /// then reads it in the transaction if the limit turns out to be set).
    /// Spend only grows with time and creates do not add to it at once, so
    /// a figure read a moment before the transaction is as good as one
    /// read inside it.
    pub(super) async fn spent_before_admission(
        &self,
        account: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        let known = self
            .monthly_limited
            .lock()
            .expect("poisoned")
            .contains(&account);
        if !known {
            return Ok(None);
        }
        Ok(Some(self.month_to_date_cents(account, now).await?))
    }

    /// Remembers what admission learnt about an account's monthly limit
    /// (`None`: the job ended before the budget was read).
    pub(super) fn learn_monthly_limit(&self, account: Uuid, limited: Option<bool>) {
        let mut set = self.monthly_limited.lock().expect("poisoned");
        match limited {
            Some(true) => {
                set.insert(account);
            }
            Some(false) => {
                set.remove(&account);
            }
            None => {}
        }
    }
}

/// The last step of an admission job (an instance's or a cluster's):
/// takes `add` from the account's budget, and answers the outcome beside
/// whether the account has a monthly limit, for
/// [`Store::learn_monthly_limit`]. A refusal undoes the whole job.
pub(super) async fn admit(
    conn: &mut AnyConnection,
    account: Uuid,
    add: Charge,
    now: DateTime<Utc>,
    spent: Option<i64>,
) -> StoreResult<Step<(InsertOutcome, Option<bool>)>> {
    let admission = reserve(conn, account, add, now, spent).await?;
    let limited = Some(admission.monthly_limited);
    Ok(match admission.refused {
        Some(why) => Step::Undo((InsertOutcome::BudgetExceeded(why), limited)),
        None => Step::Commit((InsertOutcome::Stored, limited)),
    })
}

/// Takes `add` from an account's budget inside the transaction that stores
/// the instances it is for; `spent` is the month-to-date spend if the caller
/// read it already. A refusal means the caller rolls back.
pub(super) async fn reserve(
    conn: &mut AnyConnection,
    account: Uuid,
    add: Charge,
    now: DateTime<Utc>,
    spent: Option<i64>,
) -> StoreResult<Admission> {
    let refused = |why: String, monthly_limited: bool| {
        Ok(Admission {
            refused: Some(why),
            monthly_limited,
        })
    };
    // A new row has no limits (a budget is set through an upsert of the
    // row), so only an existing row's limits can refuse.
    let row = sqlx::query(
        "INSERT INTO account_spend (account_id, gpus, hourly_cents) VALUES ($1, $2, $3)
         ON CONFLICT (account_id) DO UPDATE
           SET gpus = account_spend.gpus + excluded.gpus,
               hourly_cents = account_spend.hourly_cents + excluded.hourly_cents
         WHERE (account_spend.max_gpus IS NULL
                OR account_spend.gpus <= account_spend.max_gpus - excluded.gpus)
           AND (account_spend.max_hourly_cents IS NULL
                OR account_spend.hourly_cents <= account_spend.max_hourly_cents - excluded.hourly_cents)
         RETURNING monthly_limit_cents",
    )
    .bind(account.to_string())
    .bind(add.gpus)
    .bind(add.cents)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        let r = sqlx::query(
            "SELECT gpus, hourly_cents, max_gpus, max_hourly_cents, monthly_limit_cents
             FROM account_spend WHERE account_id = $1",
        )
        .bind(account.to_string())
        .fetch_one(&mut *conn)
        .await?;
        let (gpus, cents): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
        let max_gpus: Option<i64> = r.try_get(2)?;
        let max_cents: Option<i64> = r.try_get(3)?;
        let limited = r.try_get::<Option<i64>, _>(4)?.is_some();
        if let Some(m) = max_gpus.filter(|m| gpus + add.gpus > *m) {
            return refused(
                format!(
                    "max_gpus {m} would be exceeded: {gpus} GPUs live + {} requested",
                    add.gpus
                ),
                limited,
            );
        }
        let m = max_cents.unwrap_or_default();
        return refused(
            format!(
                "max_hourly_spend ${} would be exceeded: ${}/h live + ${}/h requested",
                dollars(m),
                dollars(cents),
                dollars(add.cents)
            ),
            limited,
        );
    };
    let Some(limit) = row.try_get::<Option<i64>, _>(0)? else {
        return Ok(Admission {
            refused: None,
            monthly_limited: false,
        });
    };
    let spent = match spent {
        Some(s) => s,
        None => month_to_date(conn, account, now).await?,
    };
    if spent >= limit {
        return refused(
            format!(
                "monthly limit ${} reached: ${} spent this month",
                dollars(limit),
                dollars(spent)
            ),
            true,
        );
    }
    Ok(Admission {
        refused: None,
        monthly_limited: true,
    })
}

/// The lock a job declares for the account's counter row
/// (`account_spend`) that it changes (see `Store::write_locked`).
pub(crate) fn spend_lock(account: Uuid) -> i64 {
    super::writer::lock_key(&["account_spend", &account.to_string()])
}

/// Adds `delta` to an account's live counts, with no limit (an instance
/// already admitted entering, leaving or changing its charge).
pub(super) async fn adjust(
    conn: &mut AnyConnection,
    account: Uuid,
    delta: Charge,
) -> StoreResult<()> {
    if delta.is_zero() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO account_spend (account_id, gpus, hourly_cents) VALUES ($1, $2, $3)
         ON CONFLICT (account_id) DO UPDATE
           SET gpus = account_spend.gpus + excluded.gpus,
               hourly_cents = account_spend.hourly_cents + excluded.hourly_cents",
    )
    .bind(account.to_string())
    .bind(delta.gpus)
    .bind(delta.cents)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The change in an account's live counts when `rec` is written: what it
/// holds now less what it held as last stored.
pub(super) fn delta_of(rec: &InstanceRecord) -> Charge {
    Charge::of(&rec.instance)
        .held(rec.instance.status)
        .minus(rec.stored_charge.held(rec.stored_status))
}

async fn instances_of_month(
    conn: &mut AnyConnection,
    account: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<Vec<InstanceRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM instances WHERE account_id = $1
         AND (status <> 'deleted' OR updated_at >= $2)"
    ))
    .bind(account.to_string())
    .bind(month_start(now).timestamp_millis())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(decode).collect()
}

async fn month_to_date(
    conn: &mut AnyConnection,
    account: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    Ok(spend_at(
        &instances_of_month(conn, account, now).await?,
        now,
    ))
}

/// Live counts recounted from the instance rows, per account.
async fn recount(conn: &mut AnyConnection) -> StoreResult<BTreeMap<String, Charge>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM instances WHERE status IN {HOLDING}"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<String, Charge> = BTreeMap::new();
    for r in &rows {
        let rec = decode(r)?;
        let e = out.entry(rec.account_id.to_string()).or_default();
        *e = e.plus(Charge::of(&rec.instance));
    }
    Ok(out)
}

/// The account counters that disagree with a recount, as
/// `(account, counter, rows)`.
pub(super) async fn drift(conn: &mut AnyConnection) -> StoreResult<Vec<(String, Charge, Charge)>> {
    let counters = sqlx::query("SELECT account_id, gpus, hourly_cents FROM account_spend")
        .fetch_all(&mut *conn)
        .await?;
    let mut both: BTreeMap<String, (Charge, Charge)> = BTreeMap::new();
    for r in &counters {
        both.entry(r.try_get(0)?).or_default().0 = Charge {
            gpus: r.try_get(1)?,
            cents: r.try_get(2)?,
        };
    }
    for (account, c) in recount(conn).await? {
        both.entry(account).or_default().1 = c;
    }
    Ok(both
        .into_iter()
        .filter(|(_, (a, b))| a != b)
        .map(|(k, (a, b))| (k, a, b))
        .collect())
}

/// Names a drifting account counter the way capacity drift is named.
pub(super) fn describe(account: &str, counter: Charge, rows: Charge) -> String {
    format!(
        "account_spend {account}: counter {}/{}, rows {}/{}",
        counter.gpus, counter.cents, rows.gpus, rows.cents
    )
}

/// Sets drifting account counters to their recount (inside the repair's
/// transaction).
pub(super) async fn repair(conn: &mut AnyConnection) -> StoreResult<Vec<String>> {
    let mut fixed = Vec::new();
    for (account, counter, rows) in drift(conn).await? {
        sqlx::query(
            "INSERT INTO account_spend (account_id, gpus, hourly_cents) VALUES ($1, $2, $3)
             ON CONFLICT (account_id) DO UPDATE
               SET gpus = excluded.gpus, hourly_cents = excluded.hourly_cents",
        )
        .bind(&account)
        .bind(rows.gpus)
        .bind(rows.cents)
        .execute(&mut *conn)
        .await?;
        fixed.push(describe(&account, counter, rows));
    }
    Ok(fixed)
}

fn decode_budget(raw: Option<String>) -> StoreResult<Option<Budget>> {
    raw.map(|b| serde_json::from_str(&b).map_err(StoreError::from))
        .transpose()
}

impl Store {
    /// Every account with its budget and live counts, oldest first.
    pub async fn list_accounts(&self) -> StoreResult<Vec<AccountSummary>> {
        let rows = sqlx::query(&format!(
            "SELECT a.id, a.name, a.is_admin, a.budget, s.gpus, s.hourly_cents,
                    (SELECT COUNT(*) FROM instances i WHERE i.account_id = a.id AND i.status IN {HOLDING})
             FROM accounts a LEFT JOIN account_spend s ON s.account_id = a.id
             ORDER BY a.created_at, a.id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AccountSummary {
                    id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                    name: r.try_get(1)?,
                    is_admin: r.try_get::<i64, _>(2)? != 0,
                    budget: decode_budget(r.try_get(3)?)?,
                    live: Charge {
                        gpus: r.try_get::<Option<i64>, _>(4)?.unwrap_or(0),
                        cents: r.try_get::<Option<i64>, _>(5)?.unwrap_or(0),
                    },
                    live_instances: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// An account's month-to-date spend in cents, as of `now`.
    pub async fn month_to_date_cents(&self, account: Uuid, now: DateTime<Utc>) -> StoreResult<i64> {
        let mut conn = self.pool().acquire().await?;
        month_to_date(&mut conn, account, now).await
    }

    /// An account's instances that can have cost anything this month.
    pub async fn instances_of_month(
        &self,
        account: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<InstanceRecord>> {
        let mut conn = self.pool().acquire().await?;
        instances_of_month(&mut conn, account, now).await
    }

    /// Renames an account and/or sets (`Some(Some)`) or clears
    /// (`Some(None)`) its budget. `false`: no such account.
    pub async fn update_account(
        &self,
        id: Uuid,
        name: Option<&str>,
        budget: Option<Option<(&Budget, Limits)>>,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await?;
        let found = sqlx::query("UPDATE accounts SET name = COALESCE($1, name) WHERE id = $2")
            .bind(name)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if found {
            if let Some(budget) = budget {
                let (json, limits) = match budget {
                    Some((b, l)) => (Some(serde_json::to_string(b)?), l),
                    None => (None, Limits::default()),
                };
                sqlx::query("UPDATE accounts SET budget = $1 WHERE id = $2")
                    .bind(json)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO account_spend (account_id, gpus, hourly_cents, max_gpus,
                        max_hourly_cents, monthly_limit_cents, budget_set_at)
                     VALUES ($1, 0, 0, $2, $3, $4, $5)
                     ON CONFLICT (account_id) DO UPDATE SET max_gpus = excluded.max_gpus,
                        max_hourly_cents = excluded.max_hourly_cents,
                        monthly_limit_cents = excluded.monthly_limit_cents,
                        budget_set_at = excluded.budget_set_at",
                )
                .bind(id.to_string())
                .bind(limits.max_gpus)
                .bind(limits.max_hourly_cents)
                .bind(limits.monthly_limit_cents)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(found)
    }

    /// Deletes an account that holds no live instance and no volume, with
    /// its SSH keys, its counters and (once that table exists) its API keys.
    pub async fn delete_account(&self, id: Uuid) -> StoreResult<DeleteAccountOutcome> {
        let mut tx = self.pool().begin().await?;
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if exists == 0 {
            tx.rollback().await?;
            return Ok(DeleteAccountOutcome::NotFound);
        }
        let live: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM instances WHERE account_id = $1 AND status IN {HOLDING}"
        ))
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let volumes: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM volumes WHERE account_id = $1 AND deleted_at IS NULL",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if live > 0 || volumes > 0 {
            tx.rollback().await?;
            return Ok(DeleteAccountOutcome::Busy(format!(
                "the account still holds {live} live instance(s) and {volumes} volume(s); delete them first"
            )));
        }
        for sql in [
            "DELETE FROM accounts WHERE id = $1",
            "DELETE FROM account_spend WHERE account_id = $1",
            "DELETE FROM ssh_keys WHERE account_id = $1",
            "DELETE FROM api_keys WHERE account_id = $1",
            // A deleted account's endpoints receive nothing more.
            "DELETE FROM webhook_deliveries WHERE webhook_id IN
                (SELECT id FROM webhooks WHERE account_id = $1)",
            "DELETE FROM webhook_attempts WHERE webhook_id IN
                (SELECT id FROM webhooks WHERE account_id = $1)",
            "DELETE FROM webhooks WHERE account_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(DeleteAccountOutcome::Deleted)
    }

    /// Accounts whose budget has a monthly limit (the reconciler's watch).
    pub async fn watched_accounts(&self) -> StoreResult<Vec<Watched>> {
        let rows = sqlx::query(
            "SELECT s.account_id, a.budget, s.monthly_limit_cents, s.alert_month, s.budget_set_at
             FROM account_spend s JOIN accounts a ON a.id = s.account_id
             WHERE s.monthly_limit_cents IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let Some(budget) = decode_budget(r.try_get(1)?)? else {
                continue;
            };
            out.push(Watched {
                account_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                budget,
                monthly_limit_cents: r.try_get(2)?,
                alert_month: r.try_get(3)?,
                budget_set_at: r.try_get::<Option<i64>, _>(4)?.unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Marks an account's budget alert fired for `month` unless it already
    /// was: `true` for the one caller (on any replica) that marked it.
    pub async fn claim_budget_alert(&self, account: Uuid, month: &str) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE account_spend SET alert_month = $1
             WHERE account_id = $2 AND (alert_month IS NULL OR alert_month <> $1)",
        )
        .bind(month)
        .bind(account.to_string())
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Every instance (of one account, or all) that can have cost anything
    /// in `from..to`, oldest first.
    pub async fn instances_in_window(
        &self,
        account: Option<Uuid>,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<InstanceRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM instances
             WHERE ($1 = '' OR account_id = $1)
               AND (status <> 'deleted' OR updated_at >= $2) AND created_at < $3
             ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(account.map(|a| a.to_string()).unwrap_or_default())
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode).collect()
    }
}
