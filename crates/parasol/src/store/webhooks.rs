//! Webhook subscriptions and their delivery queue (see `crate::webhooks`).
//!
//! Recording an event ([`Store::record_event_with`]) queues one delivery
//! row per matching enabled subscription in the same transaction, so an
//! event is never recorded without its deliveries, nor queued without
//! being recorded. Delivery rows are claimed like the reconciler's
//! instances (store/leases.rs): `wake_at` on the lifecycle clock says when
//! the next attempt is due, `lease_owner`/`lease_until` (wall clock) which
//! replica is making it; a finished delivery's row is deleted and each
//! attempt is kept in `webhook_attempts`.

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

use parasol_api::Status;

use super::accounts::parse_uuid;
use super::{flag, InstanceRecord, Step, Store, StoreError, StoreResult};
use crate::clock::from_millis;

/// Subscriptions one account may have.
pub const MAX_WEBHOOKS: i64 = 20;

/// How a subscription's deliveries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Standard Webhooks envelope `{id, type, created_at, account_id,
    /// data}`.
    Standard,
    /// The body `--alert-webhook-url` has always received: the event's
    /// `data` alone.
    Alert,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Standard => "standard",
            Format::Alert => "alert",
        }
    }

    fn parse(s: &str) -> Format {
        if s == "alert" {
            Format::Alert
        } else {
            Format::Standard
        }
    }
}

/// One subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: Uuid,
    /// `None`: the server-level subscription of `--alert-webhook-url`.
    pub account_id: Option<Uuid>,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub all_accounts: bool,
    pub format: Format,
    /// `whsec_...`.
    pub secret: String,
    /// The secret before the last rotation, and until when it still signs.
    pub old_secret: Option<(String, i64)>,
    /// When the current run of failed attempts began (lifecycle ms).
    pub failing_since: Option<i64>,
    pub created_at: i64,
}

impl WebhookRecord {
    /// The API's view (never the secret).
    pub fn view(&self, now_ms: i64) -> parasol_api::Webhook {
        parasol_api::Webhook {
            id: self.id,
            url: self.url.clone(),
            events: self.events.clone(),
            description: self.description.clone(),
            enabled: self.enabled,
            all_accounts: self.all_accounts,
            created_at: from_millis(self.created_at),
            previous_secret_expires_at: self
                .old_secret
                .as_ref()
                .filter(|(_, until)| *until > now_ms)
                .map(|(_, until)| from_millis(*until)),
        }
    }

    /// The secrets that sign a delivery made at `now_ms`: the current one,
    /// and the previous one while it is still valid.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let Some((old, until)) = &self.old_secret {
            if *until > now_ms {
                out.push(old);
            }
        }
        out
    }
}

/// One queued delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    /// The exact bytes to POST (the signature covers them). Stored empty
    /// for an event's deliveries, which are made from the event's row
    /// (one copy of the object, not one per subscription);
    /// [`Store::fill_delivery_bodies`] makes them when they are claimed.
    pub body: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// When it was queued (lifecycle ms): retries stop 24 h after.
    pub created_at: i64,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub at: i64,
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delivered, or given up: the row goes.
    Done { success: bool },
    /// Try again at this lifecycle time.
    RetryAt(i64),
}

const COLUMNS: &str = "id, account_id, url, events, description, enabled, all_accounts, format, \
     secret, old_secret, old_secret_until, failing_since, created_at";

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_type, body, attempts, created_at";

/// Id of the server-level subscription `--alert-webhook-url` becomes.
pub const ALERT_WEBHOOK_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_a1e7_0001);

fn decode(r: &sqlx::any::AnyRow) -> StoreResult<WebhookRecord> {
    let account: Option<String> = r.try_get(1)?;
    let old: Option<String> = r.try_get(9)?;
    let old_until: Option<i64> = r.try_get(10)?;
    Ok(WebhookRecord {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        account_id: account.as_deref().map(parse_uuid).transpose()?,
        url: r.try_get(2)?,
        events: serde_json::from_str(&r.try_get::<String, _>(3)?)?,
        description: r.try_get(4)?,
        enabled: r.try_get::<i64, _>(5)? != 0,
        all_accounts: r.try_get::<i64, _>(6)? != 0,
        format: Format::parse(&r.try_get::<String, _>(7)?),
        secret: r.try_get(8)?,
        old_secret: old.zip(old_until),
        failing_since: r.try_get(11)?,
        created_at: r.try_get(12)?,
    })
}

fn decode_delivery(r: &sqlx::any::AnyRow) -> StoreResult<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        webhook_id: parse_uuid(&r.try_get::<String, _>(1)?)?,
        event_id: parse_uuid(&r.try_get::<String, _>(2)?)?,
        event_type: r.try_get(3)?,
        body: r.try_get(4)?,
        attempts: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

/// The envelope a standard subscription receives for an event.
pub fn envelope(
    id: Uuid,
    kind: &str,
    account: Option<Uuid>,
    data: &Value,
    created_ms: i64,
) -> Value {
    json!({
        "id": id,
        "type": kind,
        "created_at": from_millis(created_ms),
        "account_id": account,
        "data": data,
    })
}

/// Notified whenever a write queues deliveries, so that this process's
/// delivery worker claims them at once rather than at its next poll. It is
/// notified before the write commits: the worker's claim is itself a write,
/// and the store's writes run in order, so the claim sees the rows (a write
/// that is undone wakes it for nothing). Other replicas' deliveries are
/// found by the worker's poll.
pub fn deliveries_queued() -> &'static tokio::sync::Notify {
    static QUEUED: tokio::sync::Notify = tokio::sync::Notify::const_new();
    &QUEUED
}

async fn insert_delivery(
    conn: &mut sqlx::AnyConnection,
    webhook: &str,
    event_id: Uuid,
    kind: &str,
    body: &str,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, body, attempts,
            wake_at, lease_owner, lease_until, created_at)
         VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, NULL, $6)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(webhook.to_string())
    .bind(event_id.to_string())
    .bind(kind.to_string())
    .bind(body.to_string())
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An event to record beside a write (see [`transition_events`]).
#[derive(Debug, Clone)]
pub(super) struct NewEvent {
    pub kind: &'static str,
    pub message: String,
    pub data: Value,
}

/// The events of an instance's status change, as the write that makes it
/// records them: `instance.status_changed` (data: the instance, with
/// `from` and `to`), and `instance.active`, `instance.deleted` or
/// `instance.error` on reaching those states. None when the status is
/// unchanged.
pub(super) fn transition_events(rec: &InstanceRecord, now_ms: i64) -> Vec<NewEvent> {
    let (from, to) = (rec.stored_status, rec.instance.status);
    if from == to {
        return Vec::new();
    }
    let mut instance = rec.instance.clone();
    instance.cost_estimate = parasol_api::dollars(crate::lifecycle::cost::instance_cents(
        rec,
        from_millis(now_ms),
    ));
    let data = serde_json::to_value(&instance).unwrap_or_default();
    let name = &rec.instance.name;
    let mut changed = data.clone();
    changed["from"] = json!(from);
    changed["to"] = json!(to);
    let mut out = vec![NewEvent {
        kind: "instance.status_changed",
        message: format!("instance {name} went from {from} to {to}"),
        data: changed,
    }];
    let reached = match to {
        Status::Active => Some(("instance.active", format!("instance {name} is active"))),
        Status::Deleted => Some(("instance.deleted", format!("instance {name} was deleted"))),
        Status::Error => Some((
            "instance.error",
            format!(
                "instance {name} failed: {}",
                rec.instance
                    .status_details
                    .as_deref()
                    .unwrap_or("unknown error")
            ),
        )),
        _ => None,
    };
    if let Some((kind, message)) = reached {
        out.push(NewEvent {
            kind,
            message,
            data,
        });
    }
    out
}

/// Records an event, with its webhook deliveries, in the transaction of
/// the job now running: kept aside and written by the job's batch just
/// before its commit, if the job is kept (see [`insert_pending`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_event(
    id: Uuid,
    account: Uuid,
    instance: Option<Uuid>,
    kind: &str,
    message: &str,
    data: &Value,
    now_ms: i64,
) -> StoreResult<()> {
    let deferred = super::writer::defer_event(super::writer::PendingEvent {
        id,
        account,
        instance,
        kind: kind.to_string(),
        message: message.to_string(),
        data: data.to_string(),
        at_ms: now_ms,
    });
    if !deferred {
        return Err(StoreError::Other(format!(
            "event {kind} recorded outside a store write"
        )));
    }
    Ok(())
}

/// Rows per statement of [`insert_pending`] (8 parameters an event, 5 a
/// delivery: well under both databases' limits).
const PENDING_CHUNK: usize = 1000;

/// Writes a batch's events, in the order its jobs recorded them, and
/// queues their webhook deliveries, just before the batch commits.
///
/// Each event takes the next number of the log (see store/event_log.rs).
/// On PostgreSQL, where several replicas' batches run at once, `lock` is
/// the advisory lock taken first and held to the commit: the numbering
/// statement starts after the previous holder's commit is visible, so
/// numbers follow commit order. Only this statement and the commit run
/// under it. SQLite's write lock already serialises whole batches.
pub(super) async fn insert_pending(
    conn: &mut sqlx::AnyConnection,
    lock: Option<i64>,
    events: &[super::writer::PendingEvent],
) -> StoreResult<()> {
    // Deliveries first, outside the lock: they name events by id, and
    // nothing reads them before the commit.
    let accounts: std::collections::BTreeSet<String> =
        events.iter().map(|e| e.account.to_string()).collect();
    let accounts: Vec<String> = accounts.into_iter().collect();
    let mut hooks: Vec<(Option<String>, String, Vec<String>)> = Vec::new();
    for chunk in accounts.chunks(PENDING_CHUNK) {
        let sql = format!(
            "SELECT id, events, account_id, all_accounts FROM webhooks
             WHERE enabled = 1 AND (all_accounts = 1 OR account_id IN ({}))",
            super::marks(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for a in chunk {
            q = q.bind(a.clone());
        }
        for r in q.fetch_all(&mut *conn).await? {
            let id: String = r.try_get(0)?;
            let patterns: Vec<String> = serde_json::from_str(&r.try_get::<String, _>(1)?)?;
            let all: i64 = r.try_get(3)?;
            let account: Option<String> = if all == 1 { None } else { r.try_get(2)? };
            // All-account subscriptions come back once per chunk.
            if !hooks.iter().any(|(_, h, _)| *h == id) {
                hooks.push((account, id, patterns));
            }
        }
    }
    let mut deliveries: Vec<(String, Uuid, &'static str, i64)> = Vec::new();
    for e in events {
        let Some(t) = crate::webhooks::event_type(&e.kind) else {
            continue;
        };
        let account = e.account.to_string();
        for (owner, hook, patterns) in &hooks {
            if owner.as_ref().is_none_or(|o| *o == account) && crate::webhooks::wants(patterns, t) {
                deliveries.push((hook.clone(), e.id, t, e.at_ms));
            }
        }
    }
    for chunk in deliveries.chunks(PENDING_CHUNK) {
        // The body is left empty: it is made from the event's row when
        // the delivery is claimed.
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                // wake_at and created_at are the same parameter.
                let p = 5 * i;
                format!(
                    "({}, '', 0, ${at}, NULL, NULL, ${at})",
                    super::marks(p + 1, 4),
                    at = p + 5
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, body, attempts,
                wake_at, lease_owner, lease_until, created_at)
             VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (hook, event, t, at) in chunk {
            q = q
                .bind(Uuid::new_v4().to_string())
                .bind(hook.clone())
                .bind(event.to_string())
                .bind(t.to_string())
                .bind(*at);
        }
        q.execute(&mut *conn).await?;
    }
    if !deliveries.is_empty() {
        deliveries_queued().notify_one();
    }
    if let Some(key) = lock {
        // A statement of its own: the numbering statement's snapshot must
        // be taken after the lock is granted.
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS event_lock")
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    // The base is read once per statement (its snapshot does not see the
    // rows it inserts), and the rows of a later chunk see the earlier.
    for chunk in events.chunks(PENDING_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", super::marks(1 + 8 * i, 8)))
            .collect();
        let sql = format!(
            "INSERT INTO events (id, account_id, instance_id, kind, message, created_at, data, seq)
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7,
                    base.n + v.column8
             FROM (SELECT COALESCE(MAX(seq), 0) AS n FROM events) AS base,
                  (VALUES {}) AS v",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (i, e) in chunk.iter().enumerate() {
            q = q
                .bind(e.id.to_string())
                .bind(e.account.to_string())
                .bind(e.instance.map(|i| i.to_string()))
                .bind(e.kind.clone())
                .bind(e.message.clone())
                .bind(e.at_ms)
                .bind(e.data.clone())
                .bind(i as i64 + 1);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Store {
    /// Records an event for an account with the object it is about, and
    /// queues its webhook deliveries in the same transaction. `data` is
    /// what a subscriber receives (the object as the API shows it); events
    /// of a kind that is no webhook type are only recorded.
    pub async fn record_event_with(
        &self,
        account: Uuid,
        instance: Option<Uuid>,
        kind: &str,
        message: &str,
        data: Value,
        now_ms: i64,
    ) -> StoreResult<Uuid> {
        let id = Uuid::new_v4();
        let (kind, message) = (kind.to_string(), message.to_string());
        self.write(move |_conn| {
            Box::pin(async move {
                insert_event(id, account, instance, &kind, &message, &data, now_ms)?;
                Ok(Step::Commit(id))
            })
        })
        .await
    }

    /// Stores a new subscription unless the account already has
    /// [`MAX_WEBHOOKS`]; `false` when it has.
    pub async fn insert_webhook(&self, w: &WebhookRecord) -> StoreResult<bool> {
        let w = w.clone();
        self.write(move |conn| {
            Box::pin(async move {
                let account = w.account_id.map(|a| a.to_string());
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE account_id = $1")
                        .bind(account.clone())
                        .fetch_one(&mut *conn)
                        .await?;
                if n >= MAX_WEBHOOKS {
                    return Ok(Step::Undo(false));
                }
                insert_webhook_row(conn, &w).await?;
                Ok(Step::Commit(true))
            })
        })
        .await
    }

    /// Makes the server-level subscription of `--alert-webhook-url` match
    /// `url` (none: removes it). Every replica runs this at start with the
    /// same settings, so it is an idempotent upsert.
    pub async fn set_alert_webhook(&self, url: Option<&str>, now_ms: i64) -> StoreResult<()> {
        let url = url.map(str::to_string);
        self.write(move |conn| {
            Box::pin(async move {
                let id = ALERT_WEBHOOK_ID.to_string();
                let Some(url) = url else {
                    sqlx::query("DELETE FROM webhooks WHERE id = $1")
                        .bind(id.clone())
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                    return Ok(Step::Commit(()));
                };
                let updated = sqlx::query(
                    "UPDATE webhooks SET url = $2, enabled = 1, failing_since = NULL, updated_at = $3
                     WHERE id = $1",
                )
                .bind(id)
                .bind(url.clone())
                .bind(now_ms)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if updated == 0 {
                    let w = WebhookRecord {
                        id: ALERT_WEBHOOK_ID,
                        account_id: None,
                        url,
                        events: vec!["alert".into(), "budget.alert".into()],
                        description: Some("--alert-webhook-url".into()),
                        enabled: true,
                        all_accounts: true,
                        format: Format::Alert,
                        secret: crate::webhooks::new_secret(),
                        old_secret: None,
                        failing_since: None,
                        created_at: now_ms,
                    };
                    insert_webhook_row(conn, &w).await?;
                }
                Ok(Step::Commit(()))
            })
        })
        .await
    }

    /// An account's subscriptions, oldest first.
    pub async fn list_webhooks(&self, account: Uuid) -> StoreResult<Vec<WebhookRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE account_id = $1 ORDER BY created_at, id"
        ))
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// One of an account's subscriptions.
    pub async fn get_webhook(&self, account: Uuid, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
        Ok(self
            .get_webhook_any(id)
            .await?
            .filter(|w| w.account_id == Some(account)))
    }

    /// A subscription by id alone (the delivery worker).
    pub async fn get_webhook_any(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Writes a subscription's settings and secrets back; `false` when it
    /// is gone. Re-enabling clears its run of failures.
    pub async fn update_webhook(&self, w: &WebhookRecord, now_ms: i64) -> StoreResult<bool> {
        let w = w.clone();
        self.write_one(move |conn| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE webhooks SET url = $2, events = $3, description = $4, enabled = $5,
                        secret = $6, old_secret = $7, old_secret_until = $8, failing_since = $9,
                        updated_at = $10
                     WHERE id = $1",
                )
                .bind(w.id.to_string())
                .bind(w.url.clone())
                .bind(serde_json::to_string(&w.events)?)
                .bind(w.description.clone())
                .bind(flag(w.enabled))
                .bind(w.secret.clone())
                .bind(w.old_secret.as_ref().map(|(s, _)| s.clone()))
                .bind(w.old_secret.as_ref().map(|(_, t)| *t))
                .bind(w.failing_since)
                .bind(now_ms)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                Ok(if n == 0 {
                    Step::Undo(false)
                } else {
                    Step::Commit(true)
                })
            })
        })
        .await
    }

    /// Deletes one of an account's subscriptions and its queued
    /// deliveries (its attempts are pruned with everyone else's).
    pub async fn delete_webhook(&self, account: Uuid, id: Uuid) -> StoreResult<bool> {
        self.write(move |conn| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND account_id = $2")
                    .bind(id.to_string())
                    .bind(account.to_string())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Ok(Step::Undo(false));
                }
                sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                    .bind(id.to_string())
                    .execute(&mut *conn)
                    .await?;
                Ok(Step::Commit(true))
            })
        })
        .await
    }

    /// Queues one delivery for one subscription only (a `ping`).
    pub async fn queue_delivery(
        &self,
        webhook: Uuid,
        event_id: Uuid,
        kind: &str,
        body: &Value,
        now_ms: i64,
    ) -> StoreResult<()> {
        let (kind, body) = (kind.to_string(), body.to_string());
        self.write_one(move |conn| {
            Box::pin(async move {
                insert_delivery(conn, &webhook.to_string(), event_id, &kind, &body, now_ms).await?;
                deliveries_queued().notify_one();
                Ok(Step::Commit(()))
            })
        })
        .await
    }

    /// Claims up to `limit` deliveries due at `now_ms` (lifecycle clock)
    /// for `owner` until `lease_until` (wall clock), as the reconciler
    /// claims instances: no two replicas hold the same delivery. None to
    /// the subscriptions in `skip` (those this replica already holds
    /// enough for).
    pub async fn claim_due_deliveries(
        &self,
        owner: Uuid,
        now_ms: i64,
        wall_now: i64,
        lease_until: i64,
        limit: i64,
        skip: &[Uuid],
    ) -> StoreResult<Vec<DeliveryRecord>> {
        // Ids this process made, so safe to write into the statement.
        let also = if skip.is_empty() {
            String::new()
        } else {
            let ids: Vec<String> = skip.iter().map(|u| format!("'{u}'")).collect();
            format!("AND webhook_id NOT IN ({})", ids.join(", "))
        };
        let rows = self
            .claim_rows(
                "webhook_deliveries",
                DELIVERY_COLUMNS,
                &also,
                owner,
                now_ms,
                wall_now,
                lease_until,
                limit,
            )
            .await?;
        rows.iter().map(decode_delivery).collect()
    }

    /// Makes the bodies of claimed deliveries stored without one (an
    /// event's, see [`DeliveryRecord::body`]) from their events' rows, in
    /// the form of their subscription (`format_of`, by subscription id;
    /// the standard envelope when unknown). One read for the batch.
    pub async fn fill_delivery_bodies(
        &self,
        deliveries: &mut [DeliveryRecord],
        format_of: impl Fn(Uuid) -> Format,
    ) -> StoreResult<()> {
        let mut ids: Vec<Uuid> = deliveries
            .iter()
            .filter(|d| d.body.is_empty())
            .map(|d| d.event_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let events: std::collections::HashMap<Uuid, super::LoggedEvent> = self
            .events_by_id(&ids)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        // An event goes to every subscription that wants it: its body is
        // made once for each form, not once a delivery.
        let mut made: HashMap<(Uuid, Format), String> = HashMap::new();
        for d in deliveries.iter_mut().filter(|d| d.body.is_empty()) {
            let Some(e) = events.get(&d.event_id) else {
                // Events are never deleted; a delivery without one is a
                // hand edit. Sent as an empty object rather than stuck.
                d.body = "{}".into();
                continue;
            };
            let format = format_of(d.webhook_id);
            let body = made
                .entry((e.id, format))
                .or_insert_with(|| {
                    match format {
                        Format::Standard => envelope(
                            e.id,
                            &d.event_type,
                            Some(e.account_id),
                            &e.data(),
                            e.created_at,
                        ),
                        Format::Alert => e.data(),
                    }
                    .to_string()
                })
                .clone();
            d.body = body;
        }
        Ok(())
    }

    /// Records attempts, then retires or reschedules their deliveries and
    /// keeps each subscription's run of failures, in one transaction (a
    /// handful of statements for the whole batch: at a thousand events a
    /// second to ten endpoints, statements per attempt are what the store
    /// spends its time on). Answers, for each subscription whose last
    /// attempt here failed, since when it has been failing.
    pub async fn finish_deliveries(
        &self,
        done: Vec<(DeliveryRecord, Attempt, Next)>,
        owner: Uuid,
    ) -> StoreResult<HashMap<Uuid, i64>> {
        if done.is_empty() {
            return Ok(HashMap::new());
        }
        self.write(move |conn| {
            Box::pin(async move {
                let owner = owner.to_string();
                // Bound parameters per statement stay well under SQLite's
                // and PostgreSQL's limits.
                for chunk in done.chunks(100) {
                    let values: Vec<String> = (0..chunk.len())
                        .map(|i| format!("({})", super::marks(9 * i + 1, 9)))
                        .collect();
                    let sql = format!(
                        "INSERT INTO webhook_attempts (id, webhook_id, event_id, event_type, attempt,
                            status_code, error, duration_ms, at) VALUES {}",
                        values.join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for (d, a, _) in chunk {
                        q = q
                            .bind(Uuid::new_v4().to_string())
                            .bind(d.webhook_id.to_string())
                            .bind(d.event_id.to_string())
                            .bind(d.event_type.clone())
                            .bind(d.attempts + 1)
                            .bind(a.status_code.map(i64::from))
                            .bind(a.error.clone())
                            .bind(a.duration_ms)
                            .bind(a.at);
                    }
                    q.execute(&mut *conn).await?;
                    let gone: Vec<String> = chunk
                        .iter()
                        .filter(|(_, _, n)| matches!(n, Next::Done { .. }))
                        .map(|(d, _, _)| d.id.to_string())
                        .collect();
                    if !gone.is_empty() {
                        let sql = format!(
                            "DELETE FROM webhook_deliveries WHERE lease_owner = $1 AND id IN ({})",
                            super::marks(2, gone.len())
                        );
                        let mut q = sqlx::query(&sql).bind(&owner);
                        for id in gone {
                            q = q.bind(id);
                        }
                        q.execute(&mut *conn).await?;
                    }
                }
                for (d, _, next) in &done {
                    if let Next::RetryAt(at) = next {
                        sqlx::query(
                            "UPDATE webhook_deliveries SET attempts = attempts + 1, wake_at = $3,
                                lease_owner = NULL, lease_until = NULL
                             WHERE id = $1 AND lease_owner = $2",
                        )
                        .bind(d.id.to_string())
                        .bind(&owner)
                        .bind(*at)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                // Each subscription's run of failures, as its last attempt
                // in the batch left it.
                let mut last: HashMap<Uuid, (i64, bool)> = HashMap::new();
                for (d, a, next) in &done {
                    let ok = matches!(next, Next::Done { success: true });
                    let e = last.entry(d.webhook_id).or_insert((a.at, ok));
                    if a.at >= e.0 {
                        *e = (a.at, ok);
                    }
                }
                let mut failing = HashMap::new();
                for (hook, (at, ok)) in last {
                    if ok {
                        sqlx::query(
                            "UPDATE webhooks SET failing_since = NULL
                             WHERE id = $1 AND failing_since IS NOT NULL",
                        )
                        .bind(hook.to_string())
                        .execute(&mut *conn)
                        .await?;
                        continue;
                    }
                    sqlx::query(
                        "UPDATE webhooks SET failing_since = COALESCE(failing_since, $2) WHERE id = $1",
                    )
                    .bind(hook.to_string())
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                    let since: Option<Option<i64>> =
                        sqlx::query_scalar("SELECT failing_since FROM webhooks WHERE id = $1")
                            .bind(hook.to_string())
                            .fetch_optional(&mut *conn)
                            .await?;
                    if let Some(t) = since.flatten() {
                        failing.insert(hook, t);
                    }
                }
                Ok(Step::Commit(failing))
            })
        })
        .await
    }

    /// Disables a subscription that failed for [`crate::webhooks::RETRY_FOR_MS`]
    /// unless it already is; `true` when this call did. Only the flag is
    /// written, so a concurrent update of its other settings is kept. An
    /// account's subscription records its `webhook.disabled` event in the
    /// same transaction, so whoever sees it disabled finds the event too.
    pub async fn disable_webhook(&self, hook: &WebhookRecord, now_ms: i64) -> StoreResult<bool> {
        let id = hook.id;
        let event = hook.account_id.map(|account| {
            let mut disabled = hook.clone();
            disabled.enabled = false;
            let message = format!("webhook {} failed for 24 h and was disabled", hook.url);
            let data = serde_json::to_value(disabled.view(now_ms)).unwrap_or_default();
            (account, message, data)
        });
        self.write(move |conn| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE webhooks SET enabled = 0, updated_at = $2 WHERE id = $1 AND enabled = 1",
                )
                .bind(id.to_string())
                .bind(now_ms)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(Step::Undo(false));
                }
                if let Some((account, message, data)) = &event {
                    insert_event(
                        Uuid::new_v4(),
                        *account,
                        None,
                        "webhook.disabled",
                        message,
                        data,
                        now_ms,
                    )?;
                }
                Ok(Step::Commit(true))
            })
        })
        .await
    }

    /// Deletes the attempts made before `before_ms`; answers how many.
    pub async fn prune_webhook_attempts(&self, before_ms: i64) -> StoreResult<u64> {
        self.write_one(move |conn| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM webhook_attempts WHERE at < $1")
                    .bind(before_ms)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                Ok(if n == 0 {
                    Step::Undo(0)
                } else {
                    Step::Commit(n)
                })
            })
        })
        .await
    }

    /// Drops a delivery without an attempt (its subscription is gone or
    /// disabled).
    pub async fn drop_delivery(&self, id: Uuid) -> StoreResult<()> {
        self.write_one(move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM webhook_deliveries WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *conn)
                    .await?;
                Ok(Step::Commit(()))
            })
        })
        .await
    }

    /// Puts a claimed delivery back, due at `at`, without counting an
    /// attempt (this replica has too many in flight to its endpoint).
    pub async fn defer_delivery(&self, id: Uuid, owner: Uuid, at: i64) -> StoreResult<()> {
        self.write_one(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE webhook_deliveries SET wake_at = $3, lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND lease_owner = $2",
                )
                .bind(id.to_string())
                .bind(owner.to_string())
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(Step::Commit(()))
            })
        })
        .await
    }

    /// The earliest time a delivery falls due (lifecycle ms), if any is
    /// queued.
    pub async fn next_delivery_wake(&self) -> StoreResult<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(wake_at) FROM webhook_deliveries")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// A subscription's attempts, newest first.
    pub async fn list_attempts(
        &self,
        webhook: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<parasol_api::WebhookDelivery>> {
        let rows = sqlx::query(
            "SELECT event_id, event_type, attempt, status_code, error, duration_ms, at
             FROM webhook_attempts WHERE webhook_id = $1 ORDER BY at DESC, attempt DESC LIMIT $2",
        )
        .bind(webhook.to_string())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let code: Option<i64> = r.try_get(3)?;
                Ok(parasol_api::WebhookDelivery {
                    event_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                    event_type: r.try_get(1)?,
                    attempt: r.try_get(2)?,
                    status_code: code
                        .map(|c| u16::try_from(c).map_err(|e| StoreError::Other(e.to_string())))
                        .transpose()?,
                    error: r.try_get(4)?,
                    duration_ms: r.try_get(5)?,
                    at: from_millis(r.try_get(6)?),
                })
            })
            .collect()
    }
}

async fn insert_webhook_row(conn: &mut sqlx::AnyConnection, w: &WebhookRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhooks (id, account_id, url, events, description, enabled, all_accounts,
            format, secret, old_secret, old_secret_until, failing_since, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(w.id.to_string())
    .bind(w.account_id.map(|a| a.to_string()))
    .bind(w.url.clone())
    .bind(serde_json::to_string(&w.events)?)
    .bind(w.description.clone())
    .bind(flag(w.enabled))
    .bind(flag(w.all_accounts))
    .bind(w.format.as_str())
    .bind(w.secret.clone())
    .bind(w.old_secret.as_ref().map(|(s, _)| s.clone()))
    .bind(w.old_secret.as_ref().map(|(_, t)| *t))
    .bind(w.failing_since)
    .bind(w.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
