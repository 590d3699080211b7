//! Accounts (their API keys are in api_keys.rs).

use uuid::Uuid;

use super::{flag, Store, StoreResult};

/// A tenant. Every instance and key belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    /// Hex SHA-256 of the account's first API key, as `accounts.key_hash`
    /// keeps it (a NOT NULL UNIQUE column since the first schema). Only a
    /// record: keys are looked up, and revoked, in `api_keys`.
    pub key_hash: String,
    /// May use the `/admin` extensions (sim control, test clock).
    pub is_admin: bool,
    /// Its key may use only the read-only MCP tools (the HTTP API is not
    /// limited by it).
    pub mcp_read_only: bool,
}

impl Store {
    /// Creates an account for a key hash the caller computed, and stores
    /// that key as its first API key (named `default`), in one transaction.
    pub async fn create_account(
        &self,
        name: &str,
        key_hash: &str,
        is_admin: bool,
        mcp_read_only: bool,
        now_ms: i64,
    ) -> StoreResult<Account> {
        let id = Uuid::new_v4();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO accounts (id, name, key_hash, is_admin, mcp_read_only, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(key_hash)
        .bind(flag(is_admin))
        .bind(flag(mcp_read_only))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        // An account's first key can do everything in it, as every key
        // could before roles.
        super::api_keys::insert_key(
            &mut tx,
            Uuid::new_v4(),
            id,
            super::NewKey {
                name: "default",
                key_hash,
                role: parasol_api::Role::Owner,
                person: None,
            },
            now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(Account {
            id,
            name: name.to_string(),
            key_hash: key_hash.to_string(),
            is_admin,
            mcp_read_only,
        })
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
