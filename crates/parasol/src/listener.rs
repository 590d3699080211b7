//! The accept loop: connection caps, header-read and idle timeouts, and a
//! backoff on accept errors, in front of the axum router.
//!
//! `axum::serve` holds a connection for as long as the client keeps it
//! open, whether it is sending half a header or nothing at all, so one
//! client could exhaust the file descriptors and starve everyone. Here each
//! connection is watched: it must finish each request head within the
//! header-read timeout, and an idle keep-alive connection is closed after
//! the idle timeout. hyper's own header timeout is not used because hyper
//! also runs it while a kept-alive connection waits for its next request,
//! which would make the two timeouts one.
//!
//! A request is in hand from its head until its response's body has been
//! sent, however long that takes (the event stream's never ends by
//! itself), so the idle timeout never cuts a response short; a response
//! whose client stops reading is cut after its writes have been blocked
//! for the idle timeout instead. At shutdown every request is told through
//! [`Draining`], so that endless responses end themselves and the
//! graceful shutdown, which waits for responses, can finish.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Connection limits, from the settings.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Longest a client may take to send a request's head (from the first
    /// byte, or from accepting the connection for its first request).
    pub header_read_timeout: Duration,
    /// Longest a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Open connections overall; past it new ones are refused.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_connections_per_address: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_connections_per_address: 256,
        }
    }
}

/// Open connections, overall and per client address.
#[derive(Default)]
struct Counts {
    total: usize,
    by_addr: HashMap<IpAddr, usize>,
}

/// A slot held while a connection is open; dropping it frees the slot.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().expect("poisoned");
        c.total -= 1;
        if let Some(n) = c.by_addr.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_addr.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Total,
    PerAddress,
}

fn take_slot(
    counts: &Arc<Mutex<Counts>>,
    ip: IpAddr,
    limits: &ConnLimits,
) -> Result<Slot, Refusal> {
    let mut c = counts.lock().expect("poisoned");
    if c.total >= limits.max_connections {
        return Err(Refusal::Total);
    }
    let n = c.by_addr.entry(ip).or_insert(0);
    if *n >= limits.max_connections_per_address {
        return Err(Refusal::PerAddress);
    }
    *n += 1;
    c.total += 1;
    Ok(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// Where a connection is in its request cycle, for the timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of the next request.
    Idle,
    /// Reading a request head.
    Head,
    /// A request is being handled; the handler bounds it.
    Busy,
}

/// The connection's phase and when it began, shared by its stream wrapper
/// (which sees bytes), its service (which sees requests) and the bodies of
/// its responses (which see a response end).
#[derive(Clone)]
struct Activity(Arc<ActivityInner>);

struct ActivityInner {
    state: Mutex<ActivityState>,
}

struct ActivityState {
    phase: Phase,
    since: Instant,
    /// Requests begun on the connection: a response that ends marks the
    /// connection idle only if no later request has begun.
    requests: u64,
    /// Since when a write has been waiting for the client to read.
    blocked: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        // A new connection owes its first request head at once.
        Self(Arc::new(ActivityInner {
            state: Mutex::new(ActivityState {
                phase: Phase::Head,
                since: Instant::now(),
                requests: 0,
                blocked: None,
            }),
        }))
    }

    /// A request's head is in: answers its number.
    fn begin_request(&self) -> u64 {
        let mut a = self.0.state.lock().expect("poisoned");
        a.requests += 1;
        a.phase = Phase::Busy;
        a.since = Instant::now();
        a.requests
    }

    /// Request `n`'s response has been sent (or abandoned).
    fn end_request(&self, n: u64) {
        let mut a = self.0.state.lock().expect("poisoned");
        if a.requests == n && a.phase == Phase::Busy {
            a.phase = Phase::Idle;
            a.since = Instant::now();
        }
    }

    fn read_bytes(&self) {
        let mut a = self.0.state.lock().expect("poisoned");
        if a.phase == Phase::Idle {
            a.phase = Phase::Head;
            a.since = Instant::now();
        }
    }

    fn wrote_bytes(&self) {
        let mut a = self.0.state.lock().expect("poisoned");
        a.blocked = None;
        if a.phase == Phase::Idle {
            // Bytes of a response still going out are not idleness.
            a.since = Instant::now();
        }
    }

    fn write_blocked(&self) {
        let mut a = self.0.state.lock().expect("poisoned");
        if a.blocked.is_none() {
            a.blocked = Some(Instant::now());
        }
    }

    /// When the connection is due to be closed: a busy one only once its
    /// writes have been blocked for the idle timeout.
    fn deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        let a = self.0.state.lock().expect("poisoned");
        match a.phase {
            Phase::Idle => Some(a.since + limits.idle_timeout),
            Phase::Head => Some(a.since + limits.header_read_timeout),
            Phase::Busy => a.blocked.map(|t| t + limits.idle_timeout),
        }
    }
}

/// A response's body, which marks its request done when it has been sent
/// or dropped.
struct Tracked {
    inner: axum::body::Body,
    activity: Activity,
    request: u64,
    ended: bool,
}

impl Tracked {
    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.activity.end_request(self.request);
        }
    }
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) {
            self.end();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.end();
    }
}

/// Whether the server is shutting down, in every request's extensions.
/// A graceful shutdown waits for every response to be sent, so a response
/// that would never end by itself (the event stream) watches this and
/// ends when it turns true.
#[derive(Clone, Debug)]
pub struct Draining(pub watch::Receiver<bool>);

/// A stream that reports its traffic to an [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_bytes();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        match r {
            Poll::Ready(Ok(n)) if n > 0 => self.activity.wrote_bytes(),
            Poll::Pending => self.activity.write_blocked(),
            _ => {}
        }
        r
    }

    // hyper writes a response's head and body in one `writev` when the
    // stream says it can; otherwise it first copies the body behind the
    // head (a copy of the whole catalog per `/instances/types`).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        match r {
            Poll::Ready(Ok(n)) if n > 0 => self.activity.wrote_bytes(),
            Poll::Pending => self.activity.write_blocked(),
            _ => {}
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Turns an accepted TCP stream into the stream HTTP is spoken over (TLS
/// or plain), within the header-read timeout.
pub type Handshake = Arc<
    dyn Fn(TcpStream) -> Pin<Box<dyn std::future::Future<Output = io::Result<Stream>> + Send>>
        + Send
        + Sync,
>;

/// The stream a connection speaks HTTP over.
pub type Stream = Box<dyn Io>;

/// A bidirectional byte stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// open connections finish their requests (idle ones close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    handshake: Option<Handshake>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => break,
        };
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(a) => {
                backoff = ACCEPT_BACKOFF_MIN;
                a
            }
            Err(e) => {
                // Out of file descriptors (EMFILE) or similar: retrying at
                // once would spin; connections closing will free some.
                crate::metrics::global().count_accept_error();
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        tcp.set_nodelay(true).ok();
        let slot = match take_slot(&counts, peer.ip(), &limits) {
            Ok(s) => s,
            Err(why) => {
                crate::metrics::global().count_refused_connection(match why {
                    Refusal::Total => "total",
                    Refusal::PerAddress => "per_address",
                });
                conns.spawn(refuse(tcp, why));
                continue;
            }
        };
        conns.spawn(connection(
            tcp,
            peer,
            slot,
            router.clone(),
            limits.clone(),
            handshake.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    stop_tx.send(true).ok();
    while conns.join_next().await.is_some() {}
}

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Answers a refused connection with a short 503 and closes it, so the
/// client learns why instead of seeing a reset.
async fn refuse(mut tcp: TcpStream, why: Refusal) {
    let message = match why {
        Refusal::Total => "the server is at its connection limit; retry shortly",
        Refusal::PerAddress => "too many open connections from your address; close some and retry",
    };
    let body = serde_json::to_string(&crate::error::ApiError::too_many_connections(message).body())
        .expect("serializes");
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await
    };
    tokio::time::timeout(Duration::from_secs(1), write)
        .await
        .ok();
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
    router: Router,
    limits: ConnLimits,
    handshake: Option<Handshake>,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    let stream: Stream = match handshake {
        None => Box::new(tcp),
        Some(h) => match tokio::time::timeout(limits.header_read_timeout, h(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
    };
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let draining = Draining(stop.clone());
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let activity = service_activity.clone();
            let mut router = router.clone();
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(draining.clone());
            let request = activity.begin_request();
            async move {
                let res = tower_service::Service::call(&mut router, req).await;
                res.map(|r| {
                    r.map(|inner| Tracked {
                        inner,
                        activity,
                        request,
                        ended: false,
                    })
                })
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // The watch below enforces it, idle and head apart (module doc).
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    // The watch wakes on its own, never because a request came or went:
    // waking it on every phase change cost more than the rest of the
    // connection handling of a small request. It sleeps until the current
    // deadline or for `step` at most; any phase change at time t moves
    // the deadline to t + one of the timeouts at least, which is never
    // before the wake-up already set, so no deadline is missed.
    let step = limits
        .header_read_timeout
        .min(limits.idle_timeout)
        .max(Duration::from_millis(1));
    let sleep = tokio::time::sleep(step);
    tokio::pin!(sleep);
    loop {
        let now = Instant::now();
        let wake = match activity.deadline(&limits) {
            Some(d) if d <= now => {
                crate::metrics::global().count_timed_out_connection();
                return;
            }
            Some(d) => d.min(now + step),
            // Busy and sending freely (or not at all): the handler bounds it.
            None => now + step,
        };
        sleep.as_mut().reset(wake);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = &mut sleep => {}
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
