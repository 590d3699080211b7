//! Schema migrations, applied in order at start.
//!
//! Each step is plain DDL both backends accept. The applied version is kept
//! in `schema_version`; a database newer than this binary is refused, since
//! an old binary writing a new schema could corrupt it.

use anyhow::{bail, Context};

use super::Store;

/// The migrations, oldest first. Never edit a released step: append one.
const STEPS: &[&[&str]] = &[&[
    "CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        is_admin BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE TABLE ssh_keys (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        public_key TEXT NOT NULL,
        is_default BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE INDEX ssh_keys_account ON ssh_keys (account_id, created_at)",
    "CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        cluster_id TEXT,
        cloud TEXT NOT NULL,
        region TEXT NOT NULL,
        shade_instance_type TEXT NOT NULL,
        ssh_key_id TEXT,
        status TEXT NOT NULL,
        generation BIGINT NOT NULL,
        wake_at BIGINT,
        doc TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX instances_account ON instances (account_id, status, created_at)",
    "CREATE INDEX instances_status ON instances (status)",
    "CREATE INDEX instances_wake ON instances (wake_at)",
    "CREATE INDEX instances_offer ON instances (cloud, region, shade_instance_type, status)",
    "CREATE TABLE sim_machines (
        instance_id TEXT PRIMARY KEY,
        cloud TEXT NOT NULL,
        region TEXT NOT NULL,
        shade_instance_type TEXT NOT NULL,
        state TEXT NOT NULL,
        launched_at BIGINT NOT NULL,
        ready_at BIGINT NOT NULL,
        ip TEXT,
        detail TEXT,
        restarts BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX sim_machines_offer ON sim_machines (cloud, region, shade_instance_type, state)",
]];

/// The schema version this binary writes.
pub const CURRENT: i64 = STEPS.len() as i64;

pub(super) async fn apply(store: &Store) -> anyhow::Result<()> {
    let pool = store.pool();
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .execute(pool)
        .await
        .context("creating schema_version")?;
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(pool)
        .await
        .context("reading schema_version")?;
    let version = version.unwrap_or(0);
    if version > CURRENT {
        bail!(
            "the database schema is version {version} but this parasol binary only knows \
             versions up to {CURRENT}; run a newer parasol (refusing to start rather than risk \
             corrupting it)"
        );
    }
    for (i, step) in STEPS.iter().enumerate().skip(version as usize) {
        let target = i as i64 + 1;
        let mut tx = pool.begin().await?;
        for stmt in step.iter() {
            sqlx::query(stmt)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("migration {target}"))?;
        }
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(target)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = target, "applied migration");
    }
    Ok(())
}
