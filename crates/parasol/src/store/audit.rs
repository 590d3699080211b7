//! The audit log: one row per state-changing request, kept for the
//! configured retention.

use sqlx::Row;

use super::{Step, Store, StoreResult};

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub id: String,
    /// When it was answered, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The account, when the key was valid.
    pub account_id: Option<String>,
    /// A short fingerprint of the key (the head of its SHA-256), never the
    /// key.
    pub key_id: Option<String>,
    pub client_addr: Option<String>,
    pub method: String,
    /// The route template, such as `/v1/instances/{id}/delete`.
    pub route: String,
    pub path: String,
    /// The object acted on: the path's id, or the id a create answered.
    pub object_id: Option<String>,
    pub status: i64,
    /// `ok`, `denied` (401, 403, 429), `rejected` (other 4xx) or `failed`.
    pub outcome: String,
    pub request_id: String,
    /// The person who acted (through their console session or personal
    /// key), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    /// How the person is named (their email), as read back; never stored
    /// here, so it follows the person's record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

impl Store {
    /// Appends an entry.
    pub async fn insert_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        // One per API request: through the group commit, so it shares the
        // request's own write's commit instead of costing a second one.
        let e = e.clone();
        self.write_one(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO audit_log (id, at_ms, account_id, key_id, client_addr, method, route, \
                     path, object_id, status, outcome, request_id, person_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&e.id)
                .bind(e.at_ms)
                .bind(&e.account_id)
                .bind(&e.key_id)
                .bind(&e.client_addr)
                .bind(&e.method)
                .bind(&e.route)
                .bind(&e.path)
                .bind(&e.object_id)
                .bind(e.status)
                .bind(&e.outcome)
                .bind(&e.request_id)
                .bind(&e.person_id)
                .execute(&mut *conn)
                .await?;
                Ok(Step::Commit(()))
            })
        })
        .await
    }

    /// Entries answered in `[since_ms, until_ms)`, newest first, at most
    /// `limit`.
    pub async fn audit_between(
        &self,
        since_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT l.id, l.at_ms, l.account_id, l.key_id, l.client_addr, l.method, l.route, \
             l.path, l.object_id, l.status, l.outcome, l.request_id, l.person_id, \
             COALESCE(p.email, p.name, p.subject) \
             FROM audit_log l LEFT JOIN people p ON p.id = l.person_id \
             WHERE l.at_ms >= $1 AND l.at_ms < $2 \
             ORDER BY l.at_ms DESC, l.id DESC LIMIT $3",
        )
        .bind(since_ms)
        .bind(until_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at_ms: r.try_get(1)?,
                    account_id: r.try_get(2)?,
                    key_id: r.try_get(3)?,
                    client_addr: r.try_get(4)?,
                    method: r.try_get(5)?,
                    route: r.try_get(6)?,
                    path: r.try_get(7)?,
                    object_id: r.try_get(8)?,
                    status: r.try_get(9)?,
                    outcome: r.try_get(10)?,
                    request_id: r.try_get(11)?,
                    person_id: r.try_get(12)?,
                    person: r.try_get(13)?,
                })
            })
            .collect()
    }

    /// Deletes entries answered before `before_ms`; returns how many.
    pub async fn prune_audit(&self, before_ms: i64) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM audit_log WHERE at_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
