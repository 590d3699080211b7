//! API keys: several per account, each stored as its SHA-256 only, each
//! revocable. A revoked key stays listed (with when it was revoked) and
//! never authenticates again.
//!
//! Creating and revoking a key first touch the account's row, which locks
//! it until commit (a row lock on PostgreSQL, the write lock on SQLite):
//! the count of live keys each checks cannot change under it, so
//! concurrent creates never exceed [`MAX_LIVE_KEYS`] and concurrent
//! revokes never leave an account with no live key.

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use parasol_api::Role;

use super::accounts::parse_uuid;
use super::{Account, Store, StoreError, StoreResult};

/// Live (unrevoked) keys an account may hold, as on Shadeform.
pub const MAX_LIVE_KEYS: i64 = 10;

/// One key as listed: never the key, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub role: Role,
    /// Whose personal key it is.
    pub person_id: Option<Uuid>,
}

/// A live key and the account it belongs to: what a request's key
/// resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub account: Account,
    /// The key's id (`api_keys.id`).
    pub key_id: Uuid,
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    /// What the key may do in its account: a personal key's own role, capped
    /// by its person's membership.
    pub role: Role,
    /// The person whose personal key it is.
    pub person_id: Option<Uuid>,
}

/// A stored role; anything else means the row was written by something
/// other than Parasol.
pub(super) fn parse_role(s: &str) -> StoreResult<Role> {
    Role::parse(s).ok_or_else(|| StoreError::Other(format!("unknown role {s:?}")))
}

/// A key to store: what the caller decided about it.
#[derive(Debug, Clone, Copy)]
pub struct NewKey<'a> {
    pub name: &'a str,
    /// Hex SHA-256 of the key.
    pub key_hash: &'a str,
    pub role: Role,
    /// Whose personal key it is, if anyone's.
    pub person: Option<Uuid>,
}

/// What [`Store::create_api_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKeyOutcome {
    /// Stored under this id.
    Created(Uuid),
    /// The account already holds [`MAX_LIVE_KEYS`] live keys.
    TooMany,
    /// No such account (deleted meanwhile).
    NoAccount,
}

/// What [`Store::revoke_api_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked now.
    Revoked,
    /// It was revoked before; nothing changed.
    AlreadyRevoked,
    /// The account has no key with this id.
    NotFound,
    /// It is the account's last live key.
    LastKey,
}

/// Inserts a key row; the caller's transaction decides the rest.
pub(super) async fn insert_key(
    conn: &mut AnyConnection,
    id: Uuid,
    account: Uuid,
    key: NewKey<'_>,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, name, key_hash, created_at, role, person_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(account.to_string())
    .bind(key.name)
    .bind(key.key_hash)
    .bind(now_ms)
    .bind(key.role.as_str())
    .bind(key.person.map(|p| p.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks the account's row until the transaction ends; false when there
/// is no such account.
async fn lock_account(conn: &mut AnyConnection, account: Uuid) -> StoreResult<bool> {
    let res = sqlx::query("UPDATE accounts SET key_hash = key_hash WHERE id = $1")
        .bind(account.to_string())
        .execute(conn)
        .await?;
    Ok(res.rows_affected() > 0)
}

async fn live_keys(conn: &mut AnyConnection, account: Uuid) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL",
    )
    .bind(account.to_string())
    .fetch_one(conn)
    .await?)
}

impl Store {
    /// The live key hashing to `key_hash`, with its account; a personal
    /// key only while its person is a member of the account.
    pub async fn credential_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Credential>> {
        let row = sqlx::query(
            "SELECT a.id, a.name, a.key_hash, a.is_admin, a.mcp_read_only, k.id, k.key_hash, k.role,
                    k.person_id, m.role
             FROM api_keys k JOIN accounts a ON a.id = k.account_id
             LEFT JOIN memberships m ON m.person_id = k.person_id AND m.account_id = k.account_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL
               AND (k.person_id IS NULL OR m.role IS NOT NULL)",
        )
        .bind(key_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Credential {
                account: Account {
                    id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                    name: r.try_get(1)?,
                    key_hash: r.try_get(2)?,
                    is_admin: r.try_get::<i64, _>(3)? != 0,
                    mcp_read_only: r.try_get::<i64, _>(4)? != 0,
                },
                key_id: parse_uuid(&r.try_get::<String, _>(5)?)?,
                key_hash: r.try_get(6)?,
                role: {
                    let own = parse_role(&r.try_get::<String, _>(7)?)?;
                    match r.try_get::<Option<String>, _>(9)? {
                        Some(member) => own.min(parse_role(&member)?),
                        None => own,
                    }
                },
                person_id: r
                    .try_get::<Option<String>, _>(8)?
                    .as_deref()
                    .map(parse_uuid)
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// The account's keys, revoked ones included, oldest first.
    pub async fn list_api_keys(&self, account: Uuid) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at, revoked_at, role, person_id FROM api_keys
             WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKeyRecord {
                    id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                    name: r.try_get(1)?,
                    created_at_ms: r.try_get(2)?,
                    last_used_at_ms: r.try_get(3)?,
                    revoked_at_ms: r.try_get(4)?,
                    role: parse_role(&r.try_get::<String, _>(5)?)?,
                    person_id: r
                        .try_get::<Option<String>, _>(6)?
                        .as_deref()
                        .map(parse_uuid)
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Adds a key for a hash the caller computed, unless the account
    /// already holds [`MAX_LIVE_KEYS`] live ones.
    pub async fn create_api_key(
        &self,
        account: Uuid,
        key: NewKey<'_>,
        now_ms: i64,
    ) -> StoreResult<NewKeyOutcome> {
        let mut tx = self.pool().begin().await?;
        if !lock_account(&mut tx, account).await? {
            tx.rollback().await?;
            return Ok(NewKeyOutcome::NoAccount);
        }
        if live_keys(&mut tx, account).await? >= MAX_LIVE_KEYS {
            tx.rollback().await?;
            return Ok(NewKeyOutcome::TooMany);
        }
        let id = Uuid::new_v4();
        insert_key(&mut tx, id, account, key, now_ms).await?;
        tx.commit().await?;
        Ok(NewKeyOutcome::Created(id))
    }

    /// Revokes one of the account's keys, unless it is its last live one.
    pub async fn revoke_api_key(
        &self,
        account: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> StoreResult<RevokeOutcome> {
        let mut tx = self.pool().begin().await?;
        if !lock_account(&mut tx, account).await? {
            tx.rollback().await?;
            return Ok(RevokeOutcome::NotFound);
        }
        let revoked: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM api_keys WHERE account_id = $1 AND id = $2")
                .bind(account.to_string())
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match revoked {
            None => Some(RevokeOutcome::NotFound),
            Some(Some(_)) => Some(RevokeOutcome::AlreadyRevoked),
            Some(None) if live_keys(&mut tx, account).await? <= 1 => Some(RevokeOutcome::LastKey),
            Some(None) => None,
        };
        if let Some(outcome) = outcome {
            tx.rollback().await?;
            return Ok(outcome);
        }
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RevokeOutcome::Revoked)
    }

    /// Records that the key was used at `now_ms` (never moving it back).
    pub async fn touch_api_key(&self, id: Uuid, now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
        )
        .bind(now_ms)
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{version_creating, SqliteSync, StoreOptions};

    fn sqlite(dir: &tempfile::TempDir, connections: u32) -> StoreOptions {
        StoreOptions {
            url: format!("sqlite://{}", dir.path().join("store.db").display()),
            max_connections: connections,
        }
    }

    #[tokio::test]
    async fn the_migration_makes_each_existing_accounts_key_its_first_api_key() {
        let dir = tempfile::tempdir().unwrap();
        let opts = sqlite(&dir, 1);
        let before = version_creating("api_keys").expect("a step creates api_keys") - 1;
        let old = Store::open_at_version(&opts, SqliteSync::Full, before)
            .await
            .unwrap();
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO accounts (id, name, key_hash, is_admin, mcp_read_only, created_at)
             VALUES ($1, 'old', 'feedface', 1, 0, 1234)",
        )
        .bind(id.to_string())
        .execute(old.pool())
        .await
        .unwrap();
        old.close().await;

        let store = Store::open(&opts).await.unwrap();
        let c = store
            .credential_by_key_hash("feedface")
            .await
            .unwrap()
            .expect("the old key still authenticates");
        assert_eq!((c.account.id, c.account.name.as_str()), (id, "old"));
        assert!(c.account.is_admin);
        assert_eq!(c.key_id, id);
        let keys = store.list_api_keys(id).await.unwrap();
        assert_eq!(
            keys,
            [ApiKeyRecord {
                id,
                name: "default".into(),
                created_at_ms: 1234,
                last_used_at_ms: None,
                revoked_at_ms: None,
                role: Role::Owner,
                person_id: None,
            }]
        );
    }

    #[tokio::test]
    async fn concurrent_creates_stop_at_the_limit_and_revokes_keep_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&sqlite(&dir, 4)).await.unwrap();
        let account = store
            .create_account("a", "h0", false, false, 1)
            .await
            .unwrap();
        let creates = (1..=20).map(|i| {
            let store = store.clone();
            async move {
                store
                    .create_api_key(
                        account.id,
                        NewKey {
                            name: "k",
                            key_hash: &format!("h{i}"),
                            role: Role::Owner,
                            person: None,
                        },
                        2,
                    )
                    .await
                    .unwrap()
            }
        });
        let outcomes = futures::future::join_all(creates).await;
        let created = outcomes
            .iter()
            .filter(|o| matches!(o, NewKeyOutcome::Created(_)))
            .count() as i64;
        assert_eq!(created, MAX_LIVE_KEYS - 1, "{outcomes:?}");
        assert!(outcomes.contains(&NewKeyOutcome::TooMany));

        let keys = store.list_api_keys(account.id).await.unwrap();
        let revokes = keys.iter().map(|k| {
            let store = store.clone();
            let id = k.id;
            async move { store.revoke_api_key(account.id, id, 3).await.unwrap() }
        });
        let outcomes = futures::future::join_all(revokes).await;
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == RevokeOutcome::LastKey)
                .count(),
            1,
            "{outcomes:?}"
        );
        let live: Vec<_> = store
            .list_api_keys(account.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.revoked_at_ms.is_none())
            .collect();
        assert_eq!(live.len(), 1);
        assert_eq!(
            store
                .revoke_api_key(account.id, keys[0].id, 4)
                .await
                .unwrap(),
            if live[0].id == keys[0].id {
                RevokeOutcome::LastKey
            } else {
                RevokeOutcome::AlreadyRevoked
            }
        );
        assert_eq!(
            store
                .revoke_api_key(Uuid::new_v4(), keys[0].id, 4)
                .await
                .unwrap(),
            RevokeOutcome::NotFound
        );
    }
}
