//! What the idle and health policies keep beside the instances: each
//! account's idle policy, and each instance's health as a column, so the
//! fleet gauges count instances by health with one query.

use parasol_api::{HealthStatus, IdlePolicy};
use uuid::Uuid;

use super::{Step, Store, StoreResult};

impl Store {
    /// The idle policy binding every instance of `account`, if it has one.
    pub async fn account_idle_policy(&self, account: Uuid) -> StoreResult<Option<IdlePolicy>> {
        let raw: Option<Option<String>> =
            sqlx::query_scalar("SELECT idle_policy FROM accounts WHERE id = $1")
                .bind(account.to_string())
                .fetch_optional(self.pool())
                .await?;
        Ok(raw
            .flatten()
            .map(|s| serde_json::from_str(&s))
            .transpose()?)
    }

    /// Sets (`None`: removes) an account's idle policy; `false` when there
    /// is no such account.
    pub async fn set_account_idle_policy(
        &self,
        account: Uuid,
        policy: Option<&IdlePolicy>,
    ) -> StoreResult<bool> {
        let json = policy.map(serde_json::to_string).transpose()?;
        let id = account.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                let n = sqlx::query("UPDATE accounts SET idle_policy = $1 WHERE id = $2")
                    .bind(json)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                Ok(Step::Commit(n == 1))
            })
        })
        .await
    }

    /// Active instances by health (unknown until the reconciler has
    /// evaluated one with a report).
    pub async fn count_active_by_health(&self) -> StoreResult<Vec<(HealthStatus, i64)>> {
        let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT health, COUNT(*) FROM instances WHERE status = 'active' GROUP BY health",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<(HealthStatus, i64)> = Vec::new();
        for (h, n) in rows {
            let h = h
                .as_deref()
                .and_then(HealthStatus::parse)
                .unwrap_or(HealthStatus::Unknown);
            match out.iter_mut().find(|(s, _)| *s == h) {
                Some((_, m)) => *m += n,
                None => out.push((h, n)),
            }
        }
        Ok(out)
    }
}
