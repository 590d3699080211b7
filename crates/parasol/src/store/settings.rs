//! Deployment-wide values made once and shared by every replica: the
//! deployment's id, keys the server signs with. Each is written by whichever
//! replica needs it first; the others read that one.

use super::{Store, StoreResult};

impl Store {
    /// The value stored under `name`, or `make()`'s, stored now if no replica
    /// stored one first (the first writer wins; every caller gets its value).
    pub async fn setting_or_init(
        &self,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> StoreResult<String> {
        if let Some(v) = self.setting(name).await? {
            return Ok(v);
        }
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(make())
        .execute(self.pool())
        .await?;
        Ok(self
            .setting(name)
            .await?
            .expect("a setting just written, or written by another replica, is there"))
    }

    /// The value stored under `name`.
    pub async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}
