//! The store: the single source of truth.
//!
//! One [`Store`] over an `sqlx` Any pool serves both backends: SQLite (a file
//! in the data directory, the embedded default) and PostgreSQL (scale-out).
//! Queries are written once in the subset both understand (`$n` parameters,
//! `BIGINT` and `TEXT` columns, `ON CONFLICT`, `RETURNING`). Flags are
//! `BIGINT` 0/1 and timestamps are milliseconds since the epoch, so no value
//! depends on a backend's own type mapping.
//!
//! Objects whose shape follows the API (instances) are kept as a JSON
//! document beside the few columns that queries filter on; every write of
//! such a row is conditional on its generation number.

mod accounts;
mod api_keys;
mod audit;
mod budgets;
pub use audit::AuditEntry;
pub use budgets::{
    month_start, next_month_start, spend_at, AccountSummary, Charge, DeleteAccountOutcome, Limits,
    Watched,
};
pub(crate) mod capacity;
mod clusters;
mod copy;
pub use copy::Dump;
mod instances;
mod leases;
mod migrations;
mod settings;
mod sshkeys;
mod templates;
mod volumes;

pub use accounts::Account;
pub use api_keys::{ApiKeyRecord, Credential, NewKeyOutcome, RevokeOutcome, MAX_LIVE_KEYS};
pub use clusters::{ClusterInternal, ClusterRecord};
pub use instances::{InsertOutcome, InstanceRecord, Internal, OfferKey};
pub use leases::{keep_leases, wall_ms};
pub use migrations::version_creating;
pub use sshkeys::DeleteKeyOutcome;
pub use templates::TemplateRecord;
pub use volumes::{DeleteVolumeOutcome, Event, VolumeRecord};

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

/// What can go wrong in the store, split by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded: retry later (503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupt data (500, logged).
    #[error("store error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                // SQLITE_BUSY / SQLITE_LOCKED and PostgreSQL's "cannot
                // connect now" / admin shutdown classes are transient.
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                if matches!(code.as_str(), "5" | "6" | "517" | "57P01" | "57P03")
                    || code.starts_with("08")
                {
                    StoreError::Unavailable(e.to_string())
                } else {
                    StoreError::Other(e.to_string())
                }
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Other(format!("corrupt document: {e}"))
    }
}

/// Longest a query waits for a connection. While the database is down the
/// pool keeps retrying the connect for this long, then the request fails
/// with 503: short enough that clients see the outage instead of hanging,
/// long enough to ride out a database restart or a brief overload.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Settings for opening the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://path` or `postgres://...`.
    pub url: String,
    /// Maximum pooled connections.
    pub max_connections: u32,
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Accounts this process last saw with a monthly limit (store/budgets.rs):
    /// their month-to-date spend is read before the admission transaction,
    /// not inside it while it holds the write lock.
    monthly_limited: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>>,
}

impl Store {
    /// Opens (creating if needed) the database and applies migrations.
    pub async fn open(opts: &StoreOptions) -> anyhow::Result<Store> {
        Self::open_at_version(opts, migrations::CURRENT).await
    }

    /// Opens the database migrated only up to schema version `version`,
    /// as an older parasol left it: for tests of what a later migration
    /// does to the rows it finds.
    #[doc(hidden)]
    pub async fn open_at_version(opts: &StoreOptions, version: i64) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if opts.url.starts_with("postgres:") || opts.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let mut url = opts.url.clone();
        if backend == Backend::Sqlite && !url.contains("mode=") {
            url.push_str(if url.contains('?') { "&" } else { "?" });
            url.push_str("mode=rwc");
        }
        let connect = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write; NORMAL
                        // sync is durable against a killed process (the OS
                        // keeps the log), which is the crash model here.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await?;
        let store = Store {
            pool,
            backend,
            monthly_limited: Default::default(),
        };
        migrations::apply_up_to(&store, version).await?;
        Ok(store)
    }

    /// The pool, for providers that keep their own tables (the sim).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Cheap round trip, for readiness checks.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Bool to the 0/1 the schema stores.
pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}
