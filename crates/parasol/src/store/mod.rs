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
mod agent;
pub use agent::{Downsampled, ReportOutcome, MAX_LATEST, MAX_SAMPLES, MINUTE_MS};
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
mod coalesce;
mod copy;
pub use copy::Dump;
mod event_log;
pub use event_log::LoggedEvent;
mod instances;
mod leases;
mod migrations;
mod people;
mod policies;
mod replicas;
pub use people::{
    normal_email, Invite, Member, Membership, PendingLogin, Person, SessionRow, Source,
};
pub use replicas::{ListenOptions, LiveReplica};
mod settings;
mod sshkeys;
mod templates;
mod volumes;
mod webhooks;
mod writer;

pub use accounts::Account;
pub use api_keys::{ApiKeyRecord, Credential, NewKey, NewKeyOutcome, RevokeOutcome, MAX_LIVE_KEYS};
pub use clusters::{ClusterInternal, ClusterRecord};
pub use instances::{InsertOutcome, InstanceRecord, Internal, OfferKey};
pub use leases::{keep_leases, wall_ms};
pub use migrations::version_creating;
pub use sshkeys::DeleteKeyOutcome;
pub use templates::TemplateRecord;
pub use volumes::{DeleteVolumeOutcome, Event, VolumeRecord, VolumeStatus};
pub use webhooks::{
    deliveries_queued, envelope, Attempt, DeliveryRecord, Format, Next, WebhookRecord,
    ALERT_WEBHOOK_ID, MAX_WEBHOOKS,
};
pub use writer::{Step, MAX_BATCH, QUEUE_DEPTH};

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
                // SQLITE_BUSY / SQLITE_LOCKED, PostgreSQL's "cannot
                // connect now" / admin shutdown classes, and its deadlock
                // and serialization failures (a batch of writes can lose
                // a lock-order race with another replica's) are transient.
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                if matches!(
                    code.as_str(),
                    "5" | "6" | "517" | "57P01" | "57P03" | "40P01" | "40001"
                ) || code.starts_with("08")
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

/// How SQLite syncs its write-ahead log at each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// `synchronous = FULL`: every commit is fsynced before it returns, so
    /// an acknowledged write survives a power loss or kernel crash. The
    /// default: a create lost after its machine was launched is an orphan.
    #[default]
    Full,
    /// `synchronous = NORMAL`: the log is fsynced only at checkpoints. A
    /// killed process loses nothing (the OS keeps the log), a power loss
    /// may lose the last commits. Opt-in, for speed over that guarantee.
    Normal,
}

impl SqliteSync {
    /// `full` or `normal`, any case.
    pub fn parse(s: &str) -> Option<SqliteSync> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Some(SqliteSync::Full),
            "normal" => Some(SqliteSync::Normal),
            _ => None,
        }
    }

    /// The value `PRAGMA synchronous` reads back for this setting.
    pub fn pragma_value(self) -> i64 {
        match self {
            SqliteSync::Full => 2,
            SqliteSync::Normal => 1,
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            SqliteSync::Full => "PRAGMA synchronous = FULL",
            SqliteSync::Normal => "PRAGMA synchronous = NORMAL",
        }
    }
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
    writer: writer::Writer,
    /// Notified after each commit of this process's writes, so that the
    /// event stream reads new events at once (see [`Store::committed`]).
    committed: std::sync::Arc<tokio::sync::Notify>,
    /// PostgreSQL: how to open a connection of its own that listens for
    /// notifications (the pool's connections cannot).
    listen: Option<ListenOptions>,
    /// The server's clock, once [`Store::use_clock`] gave it: the time
    /// agent reports are received at and windows are measured to.
    clock: std::sync::Arc<StoreClock>,
    /// Agents' reports, written in groups (store/agent.rs).
    reports: coalesce::Coalescer<agent::PendingReport, ReportOutcome>,
}

/// The clock a store reads: the system's until the server hands it its
/// own (which a test may move).
#[derive(Debug, Default)]
pub(crate) struct StoreClock(std::sync::OnceLock<std::sync::Arc<crate::clock::Clock>>);

impl StoreClock {
    pub(crate) fn now_ms(&self) -> i64 {
        self.0.get().map_or_else(wall_ms, |c| c.now_ms())
    }
}

impl Store {
    /// Opens (creating if needed) the database and applies migrations,
    /// durable to power loss ([`SqliteSync::Full`] on SQLite).
    pub async fn open(opts: &StoreOptions) -> anyhow::Result<Store> {
        Store::open_with(opts, SqliteSync::Full).await
    }

    /// Like [`Store::open`], with SQLite's commit sync chosen.
    pub async fn open_with(opts: &StoreOptions, sync: SqliteSync) -> anyhow::Result<Store> {
        Self::open_at_version(opts, sync, migrations::CURRENT).await
    }

    /// Opens the database migrated only up to schema version `version`,
    /// as an older parasol left it: for tests of what a later migration
    /// does to the rows it finds.
    #[doc(hidden)]
    pub async fn open_at_version(
        opts: &StoreOptions,
        sync: SqliteSync,
        version: i64,
    ) -> anyhow::Result<Store> {
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
        let listen = match backend {
            Backend::Postgres => Some(ListenOptions::parse(&url)?),
            Backend::Sqlite => None,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write. The
                        // sync level is per connection, so every pooled
                        // connection sets it (see SqliteSync).
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query(sync.pragma()).execute(&mut *conn).await?;
                        // The writer's checkpointer copies the log into the
                        // database (see writer::checkpoints), so that no
                        // commit waits on a checkpoint's fsync.
                        sqlx::query("PRAGMA wal_autocheckpoint = 0")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query(&format!(
                            "PRAGMA busy_timeout = {}",
                            writer::BUSY_TIMEOUT_MS
                        ))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await?;
        let committed = std::sync::Arc::new(tokio::sync::Notify::new());
        let writer = writer::Writer::start(pool.clone(), backend, committed.clone());
        let clock = std::sync::Arc::new(StoreClock::default());
        let reports = agent::report_writer(writer.clone(), clock.clone());
        let store = Store {
            pool,
            backend,
            monthly_limited: Default::default(),
            writer,
            committed,
            listen,
            clock,
            reports,
        };
        migrations::apply_up_to(&store, version).await?;
        Ok(store)
    }

    /// What makes a commit durable on this connection, as the database
    /// reports it: `synchronous = full|normal|...` on SQLite,
    /// `synchronous_commit = on|off|...` on PostgreSQL.
    pub async fn durability(&self) -> StoreResult<String> {
        let mut conn = self.pool.acquire().await?;
        durability_of(&mut conn, self.backend).await
    }

    /// Runs `work` as one job of the next group commit (see `writer`): its
    /// statements share a transaction and a commit with the writes that
    /// arrive with it, under a savepoint of their own ([`Step::Undo`] or an
    /// error rolls back only them). Answers after the commit. `work` must
    /// only run statements on the connection it is given.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut sqlx::AnyConnection,
            ) -> futures::future::BoxFuture<'c, StoreResult<Step<T>>>
            + Send
            + 'static,
    {
        self.writer.submit(work).await
    }

    /// Like [`Store::write`], for a job that changes counter rows other
    /// replicas change too (capacity, budgets): `locks` names each one it
    /// may change ([`capacity::counter_lock`], [`budgets::spend_lock`]), so
    /// that batches take them in one order (see `writer`).
    pub(crate) async fn write_locked<T, F>(&self, locks: Vec<i64>, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut sqlx::AnyConnection,
            ) -> futures::future::BoxFuture<'c, StoreResult<Step<T>>>
            + Send
            + 'static,
    {
        self.writer.submit_locked(locks, work).await
    }

    /// Like [`Store::write`], for a job of ONE statement that answers
    /// [`Step::Undo`] only when that statement changed nothing; SQLite
    /// then runs it without a savepoint (see `writer`).
    pub(crate) async fn write_one<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut sqlx::AnyConnection,
            ) -> futures::future::BoxFuture<'c, StoreResult<Step<T>>>
            + Send
            + 'static,
    {
        self.writer.submit_one(work).await
    }

    /// Notified (one waiter) after each commit of this process's writes:
    /// the event stream's tail waits on it, and polls for other
    /// processes' writes.
    pub fn committed(&self) -> &std::sync::Arc<tokio::sync::Notify> {
        &self.committed
    }

    /// Makes the store read time from `clock` (the server's, which a test
    /// server may move) instead of the system's. Only the first call
    /// counts, for every clone of this store.
    pub fn use_clock(&self, clock: std::sync::Arc<crate::clock::Clock>) {
        let _ = self.clock.0.set(clock);
    }

    /// Now, by the store's clock, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
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

/// [`Store::durability`] on one connection.
pub(crate) async fn durability_of(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
) -> StoreResult<String> {
    Ok(match backend {
        Backend::Sqlite => {
            let v: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await?;
            let name = match v {
                0 => "off",
                1 => "normal",
                2 => "full",
                3 => "extra",
                _ => "unknown",
            };
            format!("synchronous = {name}")
        }
        Backend::Postgres => {
            let v: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&mut *conn)
                .await?;
            format!("synchronous_commit = {v}")
        }
    })
}

/// Bool to the 0/1 the schema stores.
/// `n` numbered placeholders from `$first` on, comma-separated, for an
/// `IN (…)` list or one row of a multi-row `VALUES`.
pub(crate) fn marks(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_number_placeholders_from_the_first() {
        assert_eq!(marks(1, 3), "$1, $2, $3");
        assert_eq!(marks(4, 2), "$4, $5");
        assert_eq!(marks(7, 0), "");
    }

    /// Holds every connection of the pool at once, so each one is asked.
    async fn sync_of_every_connection(sync: SqliteSync) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(
            &StoreOptions {
                url: format!("sqlite://{}", dir.path().join("s.db").display()),
                max_connections: 4,
            },
            sync,
        )
        .await
        .unwrap();
        let mut held = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut conn = store.pool().acquire().await.unwrap();
            seen.push(durability_of(&mut conn, Backend::Sqlite).await.unwrap());
            held.push(conn);
        }
        assert_eq!(store.pool().size(), 4, "not every connection was opened");
        seen
    }

    #[tokio::test]
    async fn durable_sync_is_the_default_on_every_pooled_connection() {
        assert_eq!(SqliteSync::default(), SqliteSync::Full);
        assert_eq!(
            sync_of_every_connection(SqliteSync::default()).await,
            vec!["synchronous = full"; 4]
        );
    }

    #[tokio::test]
    async fn normal_sync_when_chosen_is_on_every_pooled_connection() {
        assert_eq!(
            sync_of_every_connection(SqliteSync::Normal).await,
            vec!["synchronous = normal"; 4]
        );
    }

    #[test]
    fn sync_names_parse_and_others_are_refused() {
        assert_eq!(SqliteSync::parse("FULL"), Some(SqliteSync::Full));
        assert_eq!(SqliteSync::parse("normal"), Some(SqliteSync::Normal));
        assert_eq!(SqliteSync::parse("off"), None);
    }
}
