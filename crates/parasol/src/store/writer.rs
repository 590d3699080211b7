//! Group commit: the store's writes that arrive together share one
//! transaction and one commit (one fsync on SQLite in durable mode).
//!
//! Each write is a *job*: a closure that runs its statements on the
//! writer's connection. One task takes the queued jobs, opens a
//! transaction, runs each job under its own SAVEPOINT (so a job's refusal
//! or error undoes only that job), commits once, and only then answers
//! every job's caller. A commit that fails fails every job in the batch:
//! nothing is acknowledged that was not committed.
//!
//! A job must only talk to the database: while it runs, the whole batch
//! (and every write queued behind it) waits. Provider calls, sleeps and
//! locks belong before the job is submitted.
//!
//! On PostgreSQL several replicas' writers run batches at once. What
//! keeps them apart (see [`batch`]):
//! - Events: a job's events are kept aside ([`defer_event`]) and inserted
//!   by the batch just before its commit, numbered under a lock held only
//!   for that insert and the commit, so numbers follow commit order.
//! - Counter rows (capacity, budgets): a job declares the ones it will
//!   change ([`Writer::submit_locked`]); a batch takes their advisory locks
//!   in sorted order before its first job, so two batches never wait on
//!   each other's counter rows in a cycle.

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::{AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot, Notify};

use super::{Backend, StoreError, StoreResult};

/// Most jobs in one transaction: bounds how long a commit keeps the
/// write lock and how many callers one failed commit fails.
pub const MAX_BATCH: usize = 256;

/// Most jobs waiting for the writer; beyond it a write is refused as
/// unavailable (503) instead of queueing without bound.
pub const QUEUE_DEPTH: usize = 8192;

/// A batch stops taking newly arrived jobs after this long, so that jobs
/// arriving steadily cannot postpone the commit of the first ones.
const MAX_BATCH_TIME: Duration = Duration::from_millis(10);

/// What a job's statements amount to.
#[derive(Debug)]
pub enum Step<T> {
    /// Keep the job's changes; answer `T` once they are committed.
    Commit(T),
    /// Roll the job's changes back (a refusal: no capacity, a lost race)
    /// and answer `T` once the batch is committed.
    Undo(T),
}

/// A queued job with its result type erased.
trait Job: Send {
    /// Whether the job needs a savepoint of its own (see [`Writer::submit_one`]).
    fn savepoint(&self) -> bool;
    /// The advisory locks (see [`lock_key`]) of the counter rows it changes.
    fn locks(&self) -> &[i64];
    /// Runs the job's statements; `true`: keep them.
    fn run<'c>(&'c mut self, conn: &'c mut AnyConnection) -> BoxFuture<'c, bool>;
    /// Answers the caller: its own result, or `failed` when the batch
    /// did not commit.
    fn answer(self: Box<Self>, failed: Option<&StoreError>);
}

struct Typed<T, F> {
    work: Option<F>,
    savepoint: bool,
    locks: Vec<i64>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, StoreResult<Step<T>>>
        + Send
        + 'static,
{
    fn savepoint(&self) -> bool {
        self.savepoint
    }

    fn locks(&self) -> &[i64] {
        &self.locks
    }

    fn run<'c>(&'c mut self, conn: &'c mut AnyConnection) -> BoxFuture<'c, bool> {
        let work = self.work.take();
        Box::pin(async move {
            let Some(work) = work else {
                self.result = Some(Err(StoreError::Other("a store job ran twice".into())));
                return false;
            };
            // A panicking job must not take the writer (and every queued
            // write) down with it: it fails alone, like an error.
            let outcome = AssertUnwindSafe(async move { work(conn).await })
                .catch_unwind()
                .await;
            let (keep, result) = match outcome {
                Ok(Ok(Step::Commit(v))) => (true, Ok(v)),
                Ok(Ok(Step::Undo(v))) => (false, Ok(v)),
                Ok(Err(e)) => (false, Err(e)),
                Err(_) => (
                    false,
                    Err(StoreError::Other("a store write panicked".into())),
                ),
            };
            self.result = Some(result);
            keep
        })
    }

    fn answer(self: Box<Self>, failed: Option<&StoreError>) {
        let result = match failed {
            Some(e) => Err(copy(e)),
            None => self
                .result
                .unwrap_or_else(|| Err(StoreError::Other("a store job never ran".into()))),
        };
        // The caller may have gone (a dropped request): nobody to tell.
        let _ = self.reply.send(result);
    }
}

pub(super) fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Other(m) => StoreError::Other(m.clone()),
    }
}

/// The handle jobs are submitted through; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer task on the current runtime.
    /// `committed` is notified after each commit.
    pub(crate) fn start(pool: AnyPool, backend: Backend, committed: Arc<Notify>) -> Writer {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        if backend == Backend::Sqlite {
            tokio::spawn(checkpoints(pool.clone(), queue.downgrade()));
        }
        tokio::spawn(run(pool, backend, jobs, committed));
        Writer { queue }
    }

    /// Runs `work` in the next batch and answers its result once the batch
    /// is committed.
    pub(crate) async fn submit<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, StoreResult<Step<T>>>
            + Send
            + 'static,
    {
        self.enqueue(true, work).await
    }

    /// Like [`Writer::submit`], for a job of ONE statement that answers
    /// [`Step::Undo`] only when that statement changed nothing. On SQLite
    /// it runs without a savepoint: a failed statement is undone by SQLite
    /// itself and leaves the transaction open, so the savepoint's two round
    /// trips would buy nothing. (An I/O error that ends the transaction
    /// makes the COMMIT fail, which fails the whole batch.) PostgreSQL
    /// aborts a transaction at any error, so there every job gets one.
    pub(crate) async fn submit_one<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, StoreResult<Step<T>>>
            + Send
            + 'static,
    {
        self.enqueue(false, work).await
    }

    /// Like [`Writer::submit`], for a job that changes counter rows that
    /// other replicas' batches change too: `locks` names them (one
    /// [`lock_key`] each). On PostgreSQL the batch takes their advisory
    /// locks, sorted, before its first job, so no two batches can each
    /// hold a counter row the other waits for. A job must declare every
    /// counter row it may change.
    pub(crate) async fn submit_locked<T, F>(&self, locks: Vec<i64>, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, StoreResult<Step<T>>>
            + Send
            + 'static,
    {
        self.enqueue_locked(true, locks, work).await
    }

    /// [`Writer::submit`] (`savepoint`) or [`Writer::submit_one`].
    pub(crate) async fn enqueue<T, F>(&self, savepoint: bool, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, StoreResult<Step<T>>>
            + Send
            + 'static,
    {
        self.enqueue_locked(savepoint, Vec::new(), work).await
    }

    /// [`Writer::enqueue`] with the counter rows' locks of
    /// [`Writer::submit_locked`].
    pub(crate) async fn enqueue_locked<T, F>(
        &self,
        savepoint: bool,
        locks: Vec<i64>,
        work: F,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, StoreResult<Step<T>>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Typed {
            work: Some(work),
            savepoint,
            locks,
            result: None,
            reply,
        });
        self.queue.try_send(job).map_err(refused)?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A write the queue would not take: full (503, retry) or closed.
pub(super) fn refused<T>(e: mpsc::error::TrySendError<T>) -> StoreError {
    match e {
        mpsc::error::TrySendError::Full(_) => {
            StoreError::Unavailable("too many writes are waiting for the store".into())
        }
        mpsc::error::TrySendError::Closed(_) => stopped(),
    }
}

/// The answer when the writer went away before answering.
pub(super) fn stopped() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

/// Key of the PostgreSQL advisory lock under which a batch numbers its
/// events and commits ("pslw"); the migrations use another ("psl").
const EVENT_LOCK: i64 = 0x70_73_6c_77;

/// The advisory lock key of one counter row, named by its table and key
/// columns: the same on every replica (FNV-1a, not a per-process hash).
/// Two rows sharing a key only make their batches take turns.
pub(crate) fn lock_key(parts: &[&str]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // Clear of the writer's and the migrations' own keys, which are small.
    (h | 1 << 62) as i64
}

/// An event a job recorded, inserted by its batch before the commit
/// (see [`defer_event`]).
#[derive(Debug)]
pub(super) struct PendingEvent {
    pub id: uuid::Uuid,
    pub account: uuid::Uuid,
    pub instance: Option<uuid::Uuid>,
    pub kind: String,
    pub message: String,
    /// JSON.
    pub data: String,
    pub at_ms: i64,
}

tokio::task_local! {
    /// The events of the job now running.
    static EVENTS: RefCell<Vec<PendingEvent>>;
}

/// Keeps `event` for the batch of the job now running, which inserts it
/// (numbered, with its webhook deliveries) just before its commit if the
/// job is kept. `false`: no job is running (events are only written by
/// jobs), and the event was dropped.
pub(super) fn defer_event(event: PendingEvent) -> bool {
    EVENTS.try_with(|e| e.borrow_mut().push(event)).is_ok()
}

/// How often the SQLite log is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints SQLite's write-ahead log from a connection of its own,
/// instead of SQLite's automatic checkpoint, which runs inside whichever
/// commit crosses the threshold: there it held up the writer and every
/// write queued behind it for the checkpoint's copy and fsync. PASSIVE
/// never waits for the writer or readers; it copies what it can (see
/// [`checkpoint`] for when it does more). Stops once the store is dropped
/// (no writer handle left) or closed.
async fn checkpoints(pool: AnyPool, writer: mpsc::WeakSender<Box<dyn Job>>) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if writer.upgrade().is_none() || pool.is_closed() {
            return;
        }
        if let Err(e) = checkpoint(&pool, WAL_LIMIT).await {
            tracing::debug!(error = %e, "WAL checkpoint failed; retrying later");
        }
    }
}

/// Size of the write-ahead log past which a checkpoint also empties it.
///
/// A PASSIVE checkpoint copies the log into the database but never makes
/// it start over: SQLite restarts the log only when a writer begins while
/// every frame is already copied, which a steady stream of commits never
/// allows. Under sustained writes the file grew by 4 GB in five minutes
/// (BENCHMARKS.md, "Agents in").
const WAL_LIMIT: i64 = 64 << 20;

/// Longest a truncating checkpoint waits for the writer to finish its
/// batch and for readers of old snapshots; writes queue behind it
/// meanwhile. On timeout it is tried again at the next checkpoint.
const TRUNCATE_WAIT_MS: u32 = 200;

/// The busy timeout every pooled SQLite connection has (see `Store::open`).
pub(super) const BUSY_TIMEOUT_MS: u32 = 10_000;

/// One checkpoint: PASSIVE, then, when the log is still larger than
/// `limit` bytes, TRUNCATE, which copies the remaining frames and empties
/// the file. It holds writers off while it runs, so it is bounded by
/// [`TRUNCATE_WAIT_MS`] and happens only once per `limit` bytes written.
async fn checkpoint(pool: &AnyPool, limit: i64) -> Result<(), sqlx::Error> {
    use sqlx::Row;
    let mut conn = pool.acquire().await?;
    let passive = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await?;
    let frames: i64 = passive.try_get(1)?;
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    if frames.saturating_mul(page_size) <= limit {
        return Ok(());
    }
    sqlx::query(&format!("PRAGMA busy_timeout = {TRUNCATE_WAIT_MS}"))
        .execute(&mut *conn)
        .await?;
    let truncated = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut *conn)
        .await;
    if let Err(e) = sqlx::query(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"))
        .execute(&mut *conn)
        .await
    {
        // A pooled connection must not keep the short timeout.
        conn.close_on_drop();
        return Err(e);
    }
    truncated.map(|_| ())
}

async fn run(
    pool: AnyPool,
    backend: Backend,
    mut jobs: mpsc::Receiver<Box<dyn Job>>,
    committed: Arc<Notify>,
) {
    // Jobs a batch left for the next one (see `batch`).
    let mut carried: VecDeque<Box<dyn Job>> = VecDeque::new();
    loop {
        let mut waiting = std::mem::take(&mut carried);
        if waiting.is_empty() {
            match jobs.recv().await {
                Some(first) => waiting.push_back(first),
                None => return,
            }
        }
        while waiting.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => break,
            }
        }
        let (ok, left) = batch(&pool, backend, waiting, &mut jobs).await;
        carried = left;
        if ok {
            committed.notify_one();
        }
    }
}

/// The statements that end a job's savepoint: kept or rolled back.
fn end_savepoint(keep: bool) -> &'static str {
    if keep {
        "RELEASE SAVEPOINT job"
    } else {
        "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
    }
}

/// Runs one batch: the `waiting` jobs, and those that arrive while it runs
/// until it is full or old; commits; answers. Answers whether it committed,
/// and the jobs it left for the next batch: on PostgreSQL, those that
/// arrived late needing counter locks it does not hold (a lock taken after
/// the first job could close a cycle with another replica's batch).
///
/// Round trips on PostgreSQL: `BEGIN` and the counter locks in one; per
/// job, the previous job's savepoint end and its own `SAVEPOINT` in one,
/// then its statements; then the events (see `super::webhooks::
/// insert_pending`) and the commit.
async fn batch(
    pool: &AnyPool,
    backend: Backend,
    mut waiting: VecDeque<Box<dyn Job>>,
    jobs: &mut mpsc::Receiver<Box<dyn Job>>,
) -> (bool, VecDeque<Box<dyn Job>>) {
    let pg = backend == Backend::Postgres;
    let mut carried = VecDeque::new();
    // The counter rows' locks, sorted: batches that share counter rows take
    // them in the same order, so they wait on each other without a cycle.
    // Taken before the first job, while the batch holds no row at all.
    let held: BTreeSet<i64> = if pg {
        waiting
            .iter()
            .flat_map(|j| j.locks().iter().copied())
            .collect()
    } else {
        BTreeSet::new()
    };
    // SQLite: take the write lock up front, so no statement of the batch
    // can fail to upgrade a read lock.
    let begin = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE".to_string(),
        Backend::Postgres => std::iter::once("BEGIN".to_string())
            .chain(held.iter().map(|k| {
                format!("SELECT 1 FROM (SELECT pg_advisory_xact_lock({k})) AS counter_lock")
            }))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let mut tx = match pool.begin_with(begin).await {
        Ok(tx) => tx,
        Err(e) => return (fail(waiting, Vec::new(), StoreError::from(e)), carried),
    };
    let started = Instant::now();
    let mut done: Vec<Box<dyn Job>> = Vec::with_capacity(waiting.len());
    let mut events: Vec<PendingEvent> = Vec::new();
    // The end of the last job's savepoint, sent with the next statement.
    let mut pending: Option<&'static str> = None;
    loop {
        let mut job = match waiting.pop_front() {
            Some(job) => job,
            None if done.len() + carried.len() < MAX_BATCH
                && started.elapsed() < MAX_BATCH_TIME =>
            {
                match jobs.try_recv() {
                    Ok(job) if !pg || job.locks().iter().all(|k| held.contains(k)) => job,
                    Ok(job) => {
                        carried.push_back(job);
                        continue;
                    }
                    Err(_) => break,
                }
            }
            None => break,
        };
        let savepoint = job.savepoint() || pg;
        let sql = match (pending.take(), savepoint) {
            (Some(end), true) => Some(format!("{end}; SAVEPOINT job")),
            (None, true) => Some("SAVEPOINT job".to_string()),
            (Some(end), false) => Some(end.to_string()),
            (None, false) => None,
        };
        if let Some(sql) = sql {
            if let Err(e) = (&mut *tx).execute(sql.as_str()).await {
                done.push(job);
                return (fail(waiting, done, e.into()), carried);
            }
        }
        let (keep, mut recorded) = EVENTS
            .scope(RefCell::new(Vec::new()), async {
                let keep = job.run(&mut tx).await;
                (keep, EVENTS.with(|e| e.take()))
            })
            .await;
        done.push(job);
        if keep {
            events.append(&mut recorded);
        }
        if savepoint {
            pending = Some(end_savepoint(keep));
        }
    }
    // A kept savepoint needs no release: COMMIT keeps it. A refused job's
    // changes are rolled back before anything else runs.
    let ended = match pending {
        Some(end) if end != end_savepoint(true) => (&mut *tx).execute(end).await.map(|_| ()),
        _ => Ok(()),
    };
    // The transaction is in an unknown state (SQLite rolls a whole
    // transaction back on some errors): fail the batch rather than
    // commit what may be half of it.
    if let Err(e) = ended {
        return (fail(waiting, done, e.into()), carried);
    }
    if !events.is_empty() {
        let lock = pg.then_some(EVENT_LOCK);
        if let Err(e) = super::webhooks::insert_pending(&mut tx, lock, &events).await {
            return (fail(waiting, done, e), carried);
        }
    }
    let jobs = done.len();
    match tx.commit().await {
        Ok(()) => {
            tracing::debug!(
                jobs,
                events = events.len(),
                took_us = started.elapsed().as_micros() as u64,
                "store writes committed"
            );
            for job in done {
                job.answer(None);
            }
            (true, carried)
        }
        Err(e) => (fail(waiting, done, e.into()), carried),
    }
}

/// Answers every job of a batch that did not commit with its error. The
/// transaction, dropped by the caller, is rolled back by sqlx before its
/// connection is used again. Answers `false` (nothing committed).
fn fail(waiting: VecDeque<Box<dyn Job>>, done: Vec<Box<dyn Job>>, e: StoreError) -> bool {
    tracing::warn!(error = %e, jobs = waiting.len() + done.len(), "a batch of store writes failed");
    for job in done.into_iter().chain(waiting) {
        job.answer(Some(&e));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::{Store, StoreOptions};
    use super::*;

    async fn store(dir: &tempfile::TempDir, connections: u32) -> Store {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&StoreOptions {
            url,
            max_connections: connections,
        })
        .await
        .unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .execute(store.pool())
            .await
            .unwrap();
        store
    }

    /// Inserts `k` into `t` as one job, kept or undone.
    async fn insert(store: &Store, k: &'static str, keep: bool) -> StoreResult<&'static str> {
        store
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (k) VALUES ($1)")
                        .bind(k)
                        .execute(&mut *conn)
                        .await?;
                    Ok(if keep { Step::Commit(k) } else { Step::Undo(k) })
                })
            })
            .await
    }

    async fn keys(store: &Store) -> Vec<String> {
        sqlx::query_scalar("SELECT k FROM t ORDER BY k")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    /// Under writes that never pause, the log is emptied once it passes
    /// the limit; PASSIVE alone leaves it at its largest.
    #[tokio::test]
    async fn a_log_past_its_limit_is_emptied_while_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 4).await;
        sqlx::query("CREATE TABLE blobs (n INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .execute(store.pool())
            .await
            .unwrap();
        let wal = dir.path().join("t.db-wal");
        let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        const LIMIT: i64 = 1 << 20;
        // Four writers that never pause, as under steady load.
        let writers: Vec<_> = (0..4i64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..100i64 {
                        let n = w * 100 + i;
                        store
                            .write(move |conn| {
                                Box::pin(async move {
                                    sqlx::query(
                                        "INSERT INTO blobs (n, v) VALUES ($1, zeroblob(65536))",
                                    )
                                    .bind(n)
                                    .execute(&mut *conn)
                                    .await?;
                                    Ok(Step::Commit(()))
                                })
                            })
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        // How often a checkpoint found the log past the limit and left it
        // within it, while the writers were still going. A truncation may
        // time out on a loaded machine (it waits at most 200 ms for the
        // writer), so this counts successes rather than bounding the
        // largest size, which depends on the scheduler.
        let (mut past, mut emptied) = (0, 0);
        while !writers.iter().all(|w| w.is_finished()) {
            let before = wal_size();
            checkpoint(store.pool(), LIMIT).await.unwrap();
            if before > LIMIT as u64 {
                past += 1;
                if wal_size() <= LIMIT as u64 {
                    emptied += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for w in writers {
            w.await.unwrap();
        }
        // 25 MiB went through the log, 25 times the limit.
        assert!(past > 0, "the log never passed its limit");
        assert!(
            emptied > 0,
            "the log passed its limit {past} times and was never emptied while writes went on"
        );
        checkpoint(store.pool(), LIMIT).await.unwrap();
        assert!(
            wal_size() <= LIMIT as u64,
            "the log is {} bytes",
            wal_size()
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 400, "nothing written is lost");
    }

    // A current-thread runtime: every job of a `join!` is queued before the
    // writer task first runs, so they all land in one batch.
    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_failing_or_panicking_job_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 2).await;
        let failing = store.write(|conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO no_such_table (k) VALUES ('x')")
                    .execute(&mut *conn)
                    .await?;
                Ok(Step::Commit(()))
            })
        });
        let panicking = store.write(|conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (k) VALUES ('p')")
                    .execute(&mut *conn)
                    .await?;
                if conn.backend_name() != "none" {
                    panic!("a job panics after its first statement");
                }
                Ok(Step::Commit(()))
            })
        });
        // The duplicate of `a` fails on the primary key, after `a` is in.
        let (a, refused, failed, panicked, dup, c) = tokio::join!(
            insert(&store, "a", true),
            insert(&store, "b", false),
            failing,
            panicking,
            insert(&store, "a", true),
            insert(&store, "c", true),
        );
        assert_eq!(a.unwrap(), "a");
        assert_eq!(
            refused.unwrap(),
            "b",
            "an undone job still answers its value"
        );
        assert!(failed.is_err(), "{failed:?}");
        let panicked = panicked.unwrap_err().to_string();
        assert!(panicked.contains("panicked"), "{panicked}");
        assert!(dup.is_err(), "{dup:?}");
        assert_eq!(c.unwrap(), "c");
        assert_eq!(keys(&store).await, ["a", "c"]);
        // The writer lives on.
        insert(&store, "d", true).await.unwrap();
        assert_eq!(keys(&store).await, ["a", "c", "d"]);
    }

    /// On SQLite a kept job's savepoint stays open until the next job's
    /// starts; undoing a later job must still undo only that job, even
    /// with a one-statement job (no savepoint) between them.
    #[tokio::test(flavor = "current_thread")]
    async fn an_undone_job_after_kept_ones_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 2).await;
        let one = |k: &'static str| {
            store.write_one(move |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (k) VALUES ($1)")
                        .bind(k)
                        .execute(&mut *conn)
                        .await?;
                    Ok(Step::Commit(()))
                })
            })
        };
        // Two statements, then a refusal: both must go.
        let undone = store.write(|conn| {
            Box::pin(async move {
                for k in ["u1", "u2"] {
                    sqlx::query("INSERT INTO t (k) VALUES ($1)")
                        .bind(k)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(Step::Undo(()))
            })
        });
        let (a, b, c, u, d, e) = tokio::join!(
            insert(&store, "a", true),
            insert(&store, "b", true),
            one("c"),
            undone,
            one("d"),
            insert(&store, "e", false),
        );
        for r in [a, b, e] {
            r.unwrap();
        }
        c.unwrap();
        u.unwrap();
        d.unwrap();
        assert_eq!(keys(&store).await, ["a", "b", "c", "d"]);
        // The next batch starts with no savepoint left over.
        let (f, g) = tokio::join!(insert(&store, "f", false), insert(&store, "g", true));
        f.unwrap();
        g.unwrap();
        assert_eq!(keys(&store).await, ["a", "b", "c", "d", "g"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_commit_that_fails_fails_every_job_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        // One connection, so the writer's batch runs on the one where the
        // deferred foreign key is enforced.
        let store = store(&dir, 1).await;
        for sql in [
            "PRAGMA foreign_keys = ON",
            "CREATE TABLE parent (id TEXT PRIMARY KEY)",
            "CREATE TABLE child (id TEXT PRIMARY KEY,
                parent TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        ] {
            sqlx::query(sql).execute(store.pool()).await.unwrap();
        }
        // Each statement succeeds; only COMMIT finds the dangling child.
        let orphan = store.write(|conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO child (id, parent) VALUES ('c', 'missing')")
                    .execute(&mut *conn)
                    .await?;
                Ok(Step::Commit(()))
            })
        });
        let (a, orphan, b) =
            tokio::join!(insert(&store, "a", true), orphan, insert(&store, "b", true));
        assert!(a.is_err(), "acknowledged a write that was never committed");
        assert!(orphan.is_err());
        assert!(b.is_err(), "acknowledged a write that was never committed");
        assert!(keys(&store).await.is_empty());
        let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM child")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(children, 0);
        // The next batch starts clean on the same connection.
        insert(&store, "e", true).await.unwrap();
        assert_eq!(keys(&store).await, ["e"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_is_refused_as_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1).await;
        // Hold the only connection: the writer cannot begin its batch, so
        // it holds at most MAX_BATCH jobs and the queue fills behind them.
        let held = store.pool().acquire().await.unwrap();
        let mut waiting: futures::stream::FuturesUnordered<_> = (0..QUEUE_DEPTH + MAX_BATCH + 1)
            .map(|_| insert(&store, "q", true))
            .collect();
        // Nothing can be stored while the connection is held, so the first
        // answer is a refusal.
        let err = match futures::StreamExt::next(&mut waiting).await {
            Some(Err(e)) => e,
            Some(Ok(_)) => panic!("a write was stored while the writer had no connection"),
            None => panic!("no write was refused"),
        };
        assert!(
            matches!(&err, StoreError::Unavailable(m) if m.contains("too many writes")),
            "a full queue must answer unavailable (503): {err:?}"
        );
        drop(held);
        drop(waiting);
    }
}
