//! The event log as the live stream reads it (`crate::event_stream`).
//!
//! Every event row carries `seq`, its place in the log. The jobs of a
//! batch only record their events; the batch inserts them just before
//! its commit, numbered from `MAX(seq) + 1` in the order they were
//! recorded (`webhooks::insert_pending`). Batches that do so run one at a
//! time from that statement to their commit (SQLite's write lock; on
//! PostgreSQL an advisory lock taken just before it, released only once
//! the commit is visible), so numbers are given in commit order: a reader
//! that sees event `n` already sees every event before it. That is what
//! lets a stream, or a client resuming with `Last-Event-ID`, continue from
//! a number without missing an event committed late. An event row is never
//! committed, nor seen by another transaction, without its number.

use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::{Store, StoreResult};

/// One event of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Its place in the log.
    pub seq: i64,
    pub id: Uuid,
    pub account_id: Uuid,
    pub instance_id: Option<Uuid>,
    /// As recorded (see `crate::webhooks::event_type` for its webhook type).
    pub kind: String,
    pub message: String,
    /// The object it is about; `None` for events recorded before webhooks.
    pub data: Option<Value>,
    /// Lifecycle ms.
    pub created_at: i64,
}

impl LoggedEvent {
    /// The object a subscriber receives: the recorded one, or, for events
    /// recorded before events kept one, what `record_event` writes.
    pub fn data(&self) -> Value {
        self.data.clone().unwrap_or_else(
            || serde_json::json!({ "instance_id": self.instance_id, "message": self.message }),
        )
    }
}

const LOGGED: &str = "seq, id, account_id, instance_id, kind, message, data, created_at";

fn decode_logged(r: &sqlx::any::AnyRow) -> StoreResult<LoggedEvent> {
    let inst: Option<String> = r.try_get(3)?;
    let data: Option<String> = r.try_get(6)?;
    Ok(LoggedEvent {
        seq: r.try_get(0)?,
        id: parse_uuid(&r.try_get::<String, _>(1)?)?,
        account_id: parse_uuid(&r.try_get::<String, _>(2)?)?,
        instance_id: inst.as_deref().map(parse_uuid).transpose()?,
        kind: r.try_get(4)?,
        message: r.try_get(5)?,
        data: data.as_deref().map(serde_json::from_str).transpose()?,
        created_at: r.try_get(7)?,
    })
}

impl Store {
    /// Up to `limit` events after `after` in log order, of one account or
    /// (`None`) of all.
    pub async fn events_after(
        &self,
        after: i64,
        account: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<LoggedEvent>> {
        let sql = match account {
            Some(_) => format!(
                "SELECT {LOGGED} FROM events WHERE account_id = $3 AND seq > $1
                 ORDER BY seq LIMIT $2"
            ),
            None => format!("SELECT {LOGGED} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"),
        };
        let mut q = sqlx::query(&sql).bind(after).bind(limit);
        if let Some(a) = account {
            q = q.bind(a.to_string());
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter().map(decode_logged).collect()
    }

    /// The events with these ids, in no particular order (one read).
    pub async fn events_by_id(&self, ids: &[Uuid]) -> StoreResult<Vec<LoggedEvent>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {LOGGED} FROM events WHERE id IN ({})",
            super::marks(1, ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id.to_string());
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter().map(decode_logged).collect()
    }

    /// The number of the last event in the log (0: none yet).
    pub async fn last_event_seq(&self) -> StoreResult<i64> {
        let n: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
            .fetch_one(self.pool())
            .await?;
        Ok(n.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{migrations, SqliteSync, StoreOptions};

    #[tokio::test]
    async fn events_stored_before_get_numbers_in_list_order_and_new_ones_follow() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            url: format!("sqlite://{}", dir.path().join("store.db").display()),
            max_connections: 1,
        };
        let numbered = migrations::version_running("ALTER TABLE events ADD COLUMN seq")
            .expect("a step numbers the events");
        let old = Store::open_at_version(&opts, SqliteSync::Full, numbered - 1)
            .await
            .unwrap();
        let account = Uuid::new_v4();
        // Inserted out of time order; two share a time, told apart by id.
        let ids = [Uuid::from_u128(3), Uuid::from_u128(1), Uuid::from_u128(2)];
        for (id, at) in ids.iter().zip([3000i64, 1000, 1000]) {
            sqlx::query(
                "INSERT INTO events (id, account_id, instance_id, kind, message, created_at)
                 VALUES ($1, $2, NULL, 'alert.spend_threshold', 'm', $3)",
            )
            .bind(id.to_string())
            .bind(account.to_string())
            .bind(at)
            .execute(old.pool())
            .await
            .unwrap();
        }
        old.close().await;

        let store = Store::open(&opts).await.unwrap();
        let new = store
            .record_event(account, None, "alert.date_threshold", "n", 500)
            .await
            .unwrap();
        let log = store.events_after(0, Some(account), 10).await.unwrap();
        assert_eq!(
            log.iter().map(|e| (e.seq, e.id)).collect::<Vec<_>>(),
            vec![
                (1, Uuid::from_u128(1)),
                (2, Uuid::from_u128(2)),
                (3, Uuid::from_u128(3)),
                // Numbered by when it was written, not by its time.
                (4, new),
            ]
        );
        assert_eq!(
            log[0].data(),
            serde_json::json!({"instance_id": null, "message": "m"})
        );
        assert_eq!(store.last_event_seq().await.unwrap(), 4);
        assert!(store
            .events_after(0, Some(Uuid::new_v4()), 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.events_after(2, None, 1).await.unwrap()[0].seq, 3);
    }
}
