//! Events out, live: `GET /v1/events/stream` (server-sent events).
//!
//! One [`EventHub`] per replica tails the event log (store/event_log.rs)
//! and broadcasts each event of a webhook type to the streams open on this
//! replica. It reads the log rather than hearing of events in memory, so a
//! stream sees the events every replica writes: it reads at once after a
//! commit of its own process ([`crate::store::Store::committed`]) and polls
//! every [`POLL`] for the others'. Polling was chosen over PostgreSQL's
//! LISTEN/NOTIFY because the store speaks through sqlx's Any driver, which
//! has no LISTEN, SQLite (one process) needs neither, and the log must be
//! read anyway to resume; one indexed read of nothing every [`POLL`] per
//! replica costs no more than the reconciler's own polling.
//!
//! A stream first replays the log after the client's `Last-Event-ID` (or
//! from now) in pages, then follows the hub's broadcast. It subscribes
//! before it reads the log, so whatever the hub sends from then on is
//! either in the replay or received, and it skips what it has already sent
//! by number. The broadcast keeps the last [`BUFFER`] events, so each
//! connection has at most that many events waiting: a client that falls
//! further behind is sent a final `resume` event naming the id to resume
//! from and the stream ends, so one slow reader never holds memory or the
//! hub. A replica shutting down ends its streams the same way.

use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::store::{envelope, LoggedEvent, Store, StoreResult};

/// Events a stream may fall behind the log before it is cut off.
pub const BUFFER: usize = 1024;

/// How soon a stream sees the events other replicas write.
pub const POLL: Duration = Duration::from_millis(250);

/// How often a stream with nothing to send sends a comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The reconnection delay clients are told (`retry:`).
pub const RETRY: Duration = Duration::from_secs(3);

/// Events read from the log at once.
const PAGE: i64 = 500;

/// One event as every stream sends it.
#[derive(Debug)]
pub struct StreamItem {
    pub seq: i64,
    pub account_id: Uuid,
    /// Its webhook type.
    pub kind: &'static str,
    /// The webhook body: `{id, type, created_at, account_id, data}`.
    pub body: String,
}

impl StreamItem {
    /// The item of a logged event; `None` for kinds that are only recorded.
    pub fn of(e: &LoggedEvent) -> Option<StreamItem> {
        let kind = crate::webhooks::event_type(&e.kind)?;
        let body = envelope(e.id, kind, Some(e.account_id), &e.data(), e.created_at);
        Some(StreamItem {
            seq: e.seq,
            account_id: e.account_id,
            kind,
            body: body.to_string(),
        })
    }

    fn event(&self) -> Event {
        Event::default()
            .id(self.seq.to_string())
            .event(self.kind)
            .data(&self.body)
    }
}

/// Which events a stream carries.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `None`: every account's (an admin key).
    pub account: Option<Uuid>,
    /// Subscription patterns (`instance.*`); `None`: every type.
    pub types: Option<Vec<String>>,
}

impl Filter {
    fn admits(&self, item: &StreamItem) -> bool {
        self.account.is_none_or(|a| a == item.account_id)
            && self
                .types
                .as_ref()
                .is_none_or(|t| crate::webhooks::wants(t, item.kind))
    }
}

/// The log's tail, shared by the streams of one replica.
pub struct EventHub {
    store: Store,
    tx: broadcast::Sender<Arc<StreamItem>>,
    /// The end of the log when the hub was made, where its tail starts.
    start: i64,
    /// Notified when a stream opens, so that a tail idling at its poll
    /// (no stream open) follows commits again at once.
    opened: tokio::sync::Notify,
}

impl EventHub {
    /// A hub whose tail starts at the end of the log as it is now; start
    /// the tail with [`EventHub::run`]. Made before any stream opens, so
    /// every stream's replay reaches where the tail starts.
    pub async fn new(store: Store) -> StoreResult<Self> {
        let (tx, _) = broadcast::channel(BUFFER);
        let start = store.last_event_seq().await?;
        Ok(Self {
            store,
            tx,
            start,
            opened: tokio::sync::Notify::new(),
        })
    }

    /// Tails the log until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let woken = self.store.committed().clone();
        let mut cursor = self.start;
        loop {
            if *stop.borrow() {
                return;
            }
            let more = match self.step(&mut cursor).await {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the event log failed; retrying");
                    false
                }
            };
            if more {
                continue;
            }
            // With no stream open nobody waits for the tail: it reads only
            // at its poll, which keeps its cursor near the end of the log,
            // instead of after every commit (under a load of writes, a read
            // per batch for nothing). A stream that opens replays the log
            // itself and skips by number what the tail sends again, so a
            // tail that lags sends nothing twice and misses nothing.
            let following = self.tx.receiver_count() > 0;
            tokio::select! {
                _ = woken.notified(), if following => {}
                _ = self.opened.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Sends what the log has past `cursor`; `true`: there may be more.
    async fn step(&self, cursor: &mut i64) -> StoreResult<bool> {
        let page = self.store.events_after(*cursor, None, PAGE).await?;
        for e in &page {
            *cursor = e.seq;
            if self.tx.receiver_count() == 0 {
                continue;
            }
            if let Some(item) = StreamItem::of(e) {
                // No receiver left since: nobody to tell.
                let _ = self.tx.send(Arc::new(item));
            }
        }
        Ok(page.len() as i64 == PAGE)
    }

    /// Opens a stream of the events after `after` (`None`: from now) that
    /// `filter` admits, ending when `draining` turns true.
    pub async fn open(
        &self,
        filter: Filter,
        after: Option<i64>,
        draining: Option<watch::Receiver<bool>>,
    ) -> StoreResult<Stream> {
        // Subscribed first: see the module's doc.
        let rx = self.tx.subscribe();
        self.opened.notify_one();
        let end = self.store.last_event_seq().await?;
        // An id past the end of the log was not sent by this deployment
        // (or the store was restored from an older backup): the stream
        // starts at the end rather than wait for the log to reach it.
        let cursor = after.map_or(end, |a| a.min(end));
        Ok(Stream {
            store: self.store.clone(),
            rx,
            filter,
            cursor,
            replaying: true,
            live_seen: false,
            pending: std::collections::VecDeque::new(),
            draining,
            done: false,
            started: false,
        })
    }
}

/// Why a stream ended itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The client fell more than [`BUFFER`] events behind.
    SlowClient,
    /// The replica is shutting down.
    Shutdown,
    /// The log could not be read.
    Unavailable,
}

impl Cut {
    fn reason(self) -> &'static str {
        match self {
            Cut::SlowClient => "slow_client",
            Cut::Shutdown => "shutdown",
            Cut::Unavailable => "unavailable",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Cut::SlowClient => "the client fell too far behind the event log",
            Cut::Shutdown => "the server is shutting down",
            Cut::Unavailable => "the event log could not be read",
        }
    }
}

/// The final event of a stream that ends itself: `resume`, whose id (and
/// `last_event_id`) is where to reconnect from with `Last-Event-ID`.
pub fn resume_event(cut: Cut, cursor: i64) -> Event {
    let body = json!({
        "reason": cut.reason(),
        "message": format!("{}; reconnect with Last-Event-ID: {cursor} to resume", cut.message()),
        "last_event_id": cursor.to_string(),
    });
    Event::default()
        .id(cursor.to_string())
        .event("resume")
        .data(body.to_string())
}

/// One client's stream: the replay, then the broadcast.
pub struct Stream {
    store: Store,
    rx: broadcast::Receiver<Arc<StreamItem>>,
    filter: Filter,
    /// The last event sent or passed over: the stream resumes after it.
    cursor: i64,
    replaying: bool,
    /// Whether the broadcast has given this stream an event since its last
    /// replay: a lag before that is the replay's, not the client's.
    live_seen: bool,
    pending: std::collections::VecDeque<Event>,
    draining: Option<watch::Receiver<bool>>,
    done: bool,
    started: bool,
}

impl Stream {
    /// The next event to send; `None`: the stream is over.
    pub async fn next(&mut self) -> Option<Event> {
        if !self.started {
            self.started = true;
            return Some(Event::default().retry(RETRY));
        }
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            if self.draining.as_ref().is_some_and(|d| *d.borrow()) {
                return Some(self.cut(Cut::Shutdown));
            }
            if self.replaying {
                if let Err(e) = self.replay_page().await {
                    tracing::warn!(error = %e, "an event stream could not read the log");
                    return Some(self.cut(Cut::Unavailable));
                }
                continue;
            }
            let draining = async {
                match self.draining.as_mut() {
                    Some(d) => {
                        // A closed channel (the listener is gone) is a
                        // shutdown too.
                        let _ = d.wait_for(|v| *v).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let received = tokio::select! {
                biased;
                _ = draining => return Some(self.cut(Cut::Shutdown)),
                r = self.rx.recv() => r,
            };
            match received {
                Ok(item) => {
                    self.live_seen = true;
                    if item.seq <= self.cursor {
                        continue;
                    }
                    self.cursor = item.seq;
                    if self.filter.admits(&item) {
                        return Some(item.event());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) if !self.live_seen => {
                    // Overrun while it replayed: the log has what it missed.
                    self.rx = self.rx.resubscribe();
                    self.replaying = true;
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(
                        missed,
                        resume_from = self.cursor,
                        "an event stream's client fell behind; cut off"
                    );
                    return Some(self.cut(Cut::SlowClient));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    async fn replay_page(&mut self) -> StoreResult<()> {
        let page = self
            .store
            .events_after(self.cursor, self.filter.account, PAGE)
            .await?;
        for e in &page {
            self.cursor = e.seq;
            if let Some(item) = StreamItem::of(e).filter(|i| self.filter.admits(i)) {
                self.pending.push_back(item.event());
            }
        }
        if (page.len() as i64) < PAGE {
            self.replaying = false;
            self.live_seen = false;
        }
        Ok(())
    }

    fn cut(&mut self, cut: Cut) -> Event {
        self.done = true;
        crate::metrics::global().count_event_stream_cut(cut.reason());
        resume_event(cut, self.cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: i64, account: Uuid, kind: &'static str) -> StreamItem {
        StreamItem {
            seq,
            account_id: account,
            kind,
            body: "{}".into(),
        }
    }

    /// Events written while no stream is open are not followed commit by
    /// commit; a stream opened then still gets what is written next, once.
    #[tokio::test]
    async fn a_stream_opened_while_the_tail_idled_gets_what_follows_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::StoreOptions {
            url: format!("sqlite://{}", dir.path().join("s.db").display()),
            max_connections: 4,
        })
        .await
        .unwrap();
        let hub = Arc::new(EventHub::new(store.clone()).await.unwrap());
        let (_stop_tx, stop) = watch::channel(false);
        tokio::spawn(hub.clone().run(stop));
        let account = Uuid::new_v4();
        for i in 0..20 {
            store
                .record_event(account, None, "alert.date_threshold", &format!("b{i}"), 0)
                .await
                .unwrap();
        }
        let all = Filter {
            account: None,
            types: None,
        };
        let mut stream = hub.open(all, None, None).await.unwrap();
        assert!(stream.next().await.is_some(), "the retry hint");
        let mut written = Vec::new();
        for i in 0..3 {
            let id = store
                .record_event(account, None, "alert.date_threshold", &format!("a{i}"), 0)
                .await
                .unwrap();
            written.push(id);
        }
        for id in &written {
            let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("the stream follows the log")
                .unwrap();
            let e = format!("{e:?}");
            assert!(e.contains(&id.to_string()), "{id} expected, got {e}");
        }
        // Nothing is sent twice.
        let more = tokio::time::timeout(POLL * 3, stream.next()).await;
        assert!(more.is_err(), "{more:?}");
    }

    #[test]
    fn filters_take_the_account_and_the_patterns() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mine = Filter {
            account: Some(a),
            types: Some(vec!["instance.*".into()]),
        };
        assert!(mine.admits(&item(1, a, "instance.active")));
        assert!(!mine.admits(&item(2, b, "instance.active")));
        assert!(!mine.admits(&item(3, a, "budget.alert")));
        let all = Filter {
            account: None,
            types: None,
        };
        assert!(all.admits(&item(4, b, "budget.alert")));
    }
}
