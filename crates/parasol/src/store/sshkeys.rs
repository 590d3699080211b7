//! SSH keys: each account's public keys and its default.

use parasol_api::SshKey;
use sqlx::Row;
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::{Store, StoreResult};

/// Why a key delete did or did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteKeyOutcome {
    Deleted,
    NotFound,
    IsDefault,
    InUse,
}

/// Statuses in which an instance still holds its key.
const LIVE: &str = "('creating','pending_provider','pending','active','deleting')";

impl Store {
    /// Adds a key; the account's first key becomes its default, decided in
    /// the same statement so that two concurrent adds cannot both win.
    pub async fn add_ssh_key(
        &self,
        account: Uuid,
        name: &str,
        public_key: &str,
        now_ms: i64,
    ) -> StoreResult<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO ssh_keys (id, account_id, name, public_key, is_default, created_at)
             VALUES ($1, $2, $3, $4,
                     (SELECT CASE WHEN COUNT(*) = 0 THEN 1 ELSE 0 END FROM ssh_keys WHERE account_id = $2),
                     $5)",
        )
        .bind(id.to_string())
        .bind(account.to_string())
        .bind(name)
        .bind(public_key)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(id)
    }

    /// The account's keys, oldest first.
    pub async fn list_ssh_keys(&self, account: Uuid) -> StoreResult<Vec<SshKey>> {
        let rows = sqlx::query(
            "SELECT id, name, public_key, is_default FROM ssh_keys WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// One of the account's keys.
    pub async fn get_ssh_key(&self, account: Uuid, id: Uuid) -> StoreResult<Option<SshKey>> {
        let row = sqlx::query(
            "SELECT id, name, public_key, is_default FROM ssh_keys WHERE account_id = $1 AND id = $2",
        )
        .bind(account.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// The account's default key, if it has any key.
    pub async fn default_ssh_key(&self, account: Uuid) -> StoreResult<Option<SshKey>> {
        let row = sqlx::query(
            "SELECT id, name, public_key, is_default FROM ssh_keys WHERE account_id = $1 AND is_default = 1",
        )
        .bind(account.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Makes `id` the only default key. False when no such key.
    pub async fn set_default_ssh_key(&self, account: Uuid, id: Uuid) -> StoreResult<bool> {
        // One statement: the account never has zero or two defaults.
        let res = sqlx::query(
            "UPDATE ssh_keys SET is_default = CASE WHEN id = $2 THEN 1 ELSE 0 END
             WHERE account_id = $1 AND EXISTS (SELECT 1 FROM ssh_keys WHERE account_id = $1 AND id = $2)",
        )
        .bind(account.to_string())
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Deletes a key unless it is the default or a live instance uses it;
    /// the checks and the delete are one statement.
    pub async fn delete_ssh_key(&self, account: Uuid, id: Uuid) -> StoreResult<DeleteKeyOutcome> {
        let res = sqlx::query(&format!(
            "DELETE FROM ssh_keys WHERE account_id = $1 AND id = $2 AND is_default = 0
             AND NOT EXISTS (SELECT 1 FROM instances WHERE ssh_key_id = $2 AND status IN {LIVE})"
        ))
        .bind(account.to_string())
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        if res.rows_affected() > 0 {
            return Ok(DeleteKeyOutcome::Deleted);
        }
        Ok(match self.get_ssh_key(account, id).await? {
            None => DeleteKeyOutcome::NotFound,
            Some(k) if k.is_default => DeleteKeyOutcome::IsDefault,
            Some(_) => DeleteKeyOutcome::InUse,
        })
    }
}

fn key_from_row(r: &sqlx::any::AnyRow) -> StoreResult<SshKey> {
    Ok(SshKey {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        public_key: r.try_get(2)?,
        is_default: r.try_get::<i64, _>(3)? != 0,
    })
}
