//! Whole-store copies: `parasol backup` / `restore` (SQLite files) and
//! `parasol store copy --to postgres://...` (every row, any backend to
//! another).
//!
//! Every column of the schema is `BIGINT` or `TEXT` on both backends
//! (migrations.rs), so a row copies as a list of integers, strings and
//! nulls, whatever the table.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use serde_json::Value;
use sqlx::{Column, Row};

use super::{Backend, Store};

/// Every table's rows, each row keyed by column name, rows sorted: what
/// two stores are compared by.
pub type Dump = BTreeMap<String, Vec<BTreeMap<String, Value>>>;

/// Kept as the target wrote it: a copy is migrated by its own server, and
/// its replicas register themselves (auth_sync.rs).
const NOT_COPIED: &[&str] = &["schema_version", "replicas"];

impl Store {
    /// The tables of the schema, sorted.
    pub async fn table_names(&self) -> anyhow::Result<Vec<String>> {
        let q = match self.backend() {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
            }
        };
        Ok(sqlx::query_scalar(q).fetch_all(self.pool()).await?)
    }

    /// Every row of every table, read in one transaction so that a store
    /// in use yields a consistent snapshot.
    pub async fn dump(&self) -> anyhow::Result<Dump> {
        let tables = self.table_names().await?;
        let mut tx = self.pool().begin().await?;
        let mut out = Dump::new();
        for t in tables {
            let rows = sqlx::query(&format!("SELECT * FROM {t}"))
                .fetch_all(&mut *tx)
                .await
                .with_context(|| format!("reading table {t}"))?;
            let mut rows: Vec<BTreeMap<String, Value>> = rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| Ok((r.column(i).name().to_string(), value(r, i)?)))
                        .collect::<anyhow::Result<_>>()
                        .with_context(|| format!("reading a row of {t}"))
                })
                .collect::<anyhow::Result<_>>()?;
            rows.sort_by_cached_key(|r| serde_json::to_string(r).unwrap_or_default());
            out.insert(t, rows);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Copies every row of `source` into this store, which must hold no
    /// rows yet (a fresh database its first open has migrated). One
    /// transaction: on any failure nothing is left half-copied.
    pub async fn copy_from(&self, source: &Store) -> anyhow::Result<usize> {
        if self.count_accounts().await? > 0 {
            bail!("the target database is not empty (it has accounts); copy into a fresh database");
        }
        let dump = source.dump().await?;
        let target_tables = self.table_names().await?;
        let mut tx = self.pool().begin().await?;
        let mut copied = 0;
        for (table, rows) in &dump {
            if NOT_COPIED.contains(&table.as_str()) || rows.is_empty() {
                continue;
            }
            if !target_tables.contains(table) {
                bail!("the target has no table {table}: is it an older parasol schema?");
            }
            let types = self.column_types(table).await?;
            for row in rows {
                let names: Vec<&String> = row.keys().collect();
                let sql = format!(
                    "INSERT INTO {table} ({}) VALUES ({})",
                    names
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    super::marks(1, names.len())
                );
                let mut q = sqlx::query(&sql);
                for name in &names {
                    let text = types.get(*name).map(|t| t.as_str()) == Some("text");
                    q = match (&row[*name], text) {
                        (Value::Null, true) => q.bind(None::<String>),
                        (Value::Null, false) => q.bind(None::<i64>),
                        (Value::Number(n), false) => q.bind(n.as_i64()),
                        (Value::Number(n), true) => q.bind(n.to_string()),
                        (Value::String(s), true) => q.bind(s.clone()),
                        (Value::String(s), false) => {
                            q.bind(s.parse::<i64>().with_context(|| {
                                format!("{table}.{name}: {s:?} is not an integer")
                            })?)
                        }
                        (other, _) => bail!("{table}.{name}: unexpected value {other}"),
                    };
                }
                q.execute(&mut *tx)
                    .await
                    .with_context(|| format!("writing a row of {table}"))?;
                copied += 1;
            }
        }
        tx.commit().await?;
        Ok(copied)
    }

    /// Lower-case column types of `table`: `text` or an integer type.
    async fn column_types(&self, table: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let rows: Vec<(String, String)> = match self.backend() {
            Backend::Sqlite => sqlx::query_as(&format!(
                "SELECT name, lower(type) FROM pragma_table_info('{table}')"
            ))
            .fetch_all(self.pool())
            .await?,
            Backend::Postgres => sqlx::query_as(
                "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind(table)
            .fetch_all(self.pool())
            .await?,
        };
        Ok(rows.into_iter().collect())
    }

    /// Writes a consistent copy of this SQLite store to `file` (which must
    /// not exist), while other processes keep using it.
    pub async fn backup_to(&self, file: &std::path::Path) -> anyhow::Result<()> {
        if self.backend() != Backend::Sqlite {
            bail!(
                "parasol backup copies the embedded SQLite store; back PostgreSQL up with pg_dump"
            );
        }
        if file.exists() {
            bail!("{} already exists; choose a new file", file.display());
        }
        let path = file
            .to_str()
            .context("the backup path must be valid UTF-8")?;
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(self.pool())
            .await
            .with_context(|| format!("writing the backup {}", file.display()))?;
        Ok(())
    }
}

/// Column `i` of `r` as JSON: an integer, a string or null.
fn value(r: &sqlx::any::AnyRow, i: usize) -> anyhow::Result<Value> {
    if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
        return Ok(v.map(Value::from).unwrap_or(Value::Null));
    }
    if let Ok(v) = r.try_get::<Option<String>, _>(i) {
        return Ok(v.map(Value::from).unwrap_or(Value::Null));
    }
    bail!(
        "column {} is neither an integer nor text",
        r.column(i).name()
    )
}
