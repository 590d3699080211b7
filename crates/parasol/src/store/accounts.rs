//! Accounts and their API keys (stored as SHA-256 hashes only).

use sqlx::Row;
use uuid::Uuid;

use super::{flag, Store, StoreResult};

/// A tenant. Every instance and key belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    /// Hex SHA-256 of the API key.
    pub key_hash: String,
    /// May use the `/admin` extensions (sim control, test clock).
    pub is_admin: bool,
    /// Its key may use only the read-only MCP tools (the HTTP API is not
    /// limited by it).
    pub mcp_read_only: bool,
}

impl Store {
    /// Creates an account for a key hash the caller computed.
    pub async fn create_account(
        &self,
        name: &str,
        key_hash: &str,
        is_admin: bool,
        mcp_read_only: bool,
        now_ms: i64,
    ) -> StoreResult<Account> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO accounts (id, name, key_hash, is_admin, mcp_read_only, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(key_hash)
        .bind(flag(is_admin))
        .bind(flag(mcp_read_only))
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(Account {
            id,
            name: name.to_string(),
            key_hash: key_hash.to_string(),
            is_admin,
            mcp_read_only,
        })
    }

    /// The account whose key hashes to `key_hash`.
    pub async fn account_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Account>> {
        let row = sqlx::query(
            "SELECT id, name, key_hash, is_admin, mcp_read_only FROM accounts WHERE key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Account {
                id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                name: r.try_get(1)?,
                key_hash: r.try_get(2)?,
                is_admin: r.try_get::<i64, _>(3)? != 0,
                mcp_read_only: r.try_get::<i64, _>(4)? != 0,
            })
        })
        .transpose()
    }

    /// How many accounts exist (zero on a fresh data directory).
    pub async fn count_accounts(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(self.pool())
            .await?)
    }
}

pub(super) fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| super::StoreError::Other(format!("bad uuid {s:?}: {e}")))
}
