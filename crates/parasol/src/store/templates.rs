//! Templates: each account's saved launch settings, kept as the API
//! document. A public template is readable by every account; only its owner
//! may change or delete it, so every write is filtered on the owner.

use parasol_api::Template;
use sqlx::Row;
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::{flag, Store, StoreResult};

/// A stored template and the account that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    pub account_id: Uuid,
    pub template: Template,
}

impl Store {
    /// Saves a new template owned by `account`.
    pub async fn insert_template(
        &self,
        account: Uuid,
        t: &Template,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO templates (id, account_id, public, doc, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(t.id.to_string())
        .bind(account.to_string())
        .bind(flag(t.public))
        .bind(serde_json::to_string(t)?)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The account's own templates, private and public, oldest first.
    pub async fn list_templates(&self, account: Uuid) -> StoreResult<Vec<Template>> {
        let rows = sqlx::query(
            "SELECT account_id, doc FROM templates WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| record_from_row(r).map(|rec| rec.template))
            .collect()
    }

    /// A template `account` may read: one of its own, or another account's
    /// public one.
    pub async fn get_template(
        &self,
        account: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<TemplateRecord>> {
        let row = sqlx::query(
            "SELECT account_id, doc FROM templates WHERE id = $1 AND (account_id = $2 OR public = 1)",
        )
        .bind(id.to_string())
        .bind(account.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Replaces one of the account's own templates with `t` (same id).
    /// False when the account owns no template with that id.
    pub async fn replace_template(
        &self,
        account: Uuid,
        t: &Template,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE templates SET public = $1, doc = $2, updated_at = $3
             WHERE id = $4 AND account_id = $5",
        )
        .bind(flag(t.public))
        .bind(serde_json::to_string(t)?)
        .bind(now_ms)
        .bind(t.id.to_string())
        .bind(account.to_string())
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Deletes one of the account's own templates. False when the account
    /// owns no template with that id.
    pub async fn delete_template(&self, account: Uuid, id: Uuid) -> StoreResult<bool> {
        let res = sqlx::query("DELETE FROM templates WHERE id = $1 AND account_id = $2")
            .bind(id.to_string())
            .bind(account.to_string())
            .execute(self.pool())
            .await?;
        Ok(res.rows_affected() > 0)
    }
}

fn record_from_row(r: &sqlx::any::AnyRow) -> StoreResult<TemplateRecord> {
    let doc: String = r.try_get(1)?;
    Ok(TemplateRecord {
        account_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        template: serde_json::from_str(&doc)?,
    })
}
