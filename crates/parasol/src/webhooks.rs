//! Events out: signed webhook deliveries.
//!
//! Every event Parasol records (store/volumes.rs, `record_event`) whose
//! kind is a webhook type ([`event_type`]) is queued, in the transaction
//! that records it, once for each enabled subscription that wants it
//! (store/webhooks.rs). The [`Deliverer`] of each replica claims due
//! deliveries with a lease, exactly as the reconciler claims instances, so
//! each attempt is made by one replica; a replica that dies mid-attempt
//! loses its lease and another makes the attempt again.
//!
//! Deliveries follow the Standard Webhooks specification: the headers
//! `webhook-id` (the event's id, the same on every retry),
//! `webhook-timestamp` (seconds, wall clock) and `webhook-signature`
//! (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under each valid
//! secret, space-separated during a rotation's grace period).
//!
//! Each attempt runs in a task with a [`TIMEOUT`], and at most
//! [`PER_ENDPOINT`] attempts to one endpoint are in flight per replica, so
//! a slow or dead endpoint holds up neither the lifecycle (which only
//! writes rows) nor other endpoints. A replica holds at most [`HOLD`]
//! claimed deliveries per endpoint: those beyond the attempts in flight
//! wait in memory, under their lease, for the endpoint's next free task,
//! and an endpoint at its hold is left out of the next claims, so a busy
//! endpoint's backlog costs no writes until it has room. 2xx is success; anything else is
//! retried on [`SCHEDULE`] with jitter for [`RETRY_FOR_MS`], after which the
//! delivery is given up; an endpoint failing for that long is disabled and
//! a `webhook.disabled` event recorded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::clock::Clock;
use crate::store::{
    wall_ms, Attempt, DeliveryRecord, Format, Next, Store, StoreResult, WebhookRecord,
};

/// Longest one attempt may take, response included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How long delivery attempts are listed before they are deleted.
pub const ATTEMPTS_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;

/// How often attempts past [`ATTEMPTS_KEPT_MS`] are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Longest a create or update waits for the URL's host to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of a response body read (and ignored) before the connection is
/// dropped.
const BODY_CAP: usize = 64 * 1024;

/// Attempts one replica has in flight to one endpoint at most.
pub const PER_ENDPOINT: usize = 8;

/// Claimed deliveries one replica holds for one endpoint at most: those in
/// flight and those waiting for a free task. Each claim is a write, which
/// waits its turn behind the lifecycle's under load, so a claim must move
/// many deliveries: the fan-out benchmark delivered about 2,000/s with a
/// hold of 16 and a claim of 64, while creates were running.
pub const HOLD: usize = 8 * PER_ENDPOINT;

/// Deliveries claimed per pass.
const BATCH: i64 = 512;

/// How long a claim lasts. A delivery to a quick endpoint starts well
/// within it; one held behind slow attempts whose lease would lapse before
/// its own could end is given back rather than started (see
/// [`Deliverer::work`]), so it needs no renewal.
const LEASE: Duration = Duration::from_secs(2 * TIMEOUT.as_secs() + 5);

/// Delay before each retry, after the failed attempt it follows (the first
/// attempt is made as soon as the event is recorded). Each delay varies by
/// up to ±10 % so that a recovering endpoint is not hit by every retry at
/// once. The last retry is made at [`RETRY_FOR_MS`] after the event.
pub const SCHEDULE: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
];

/// How long a delivery is retried, and how long an endpoint may fail
/// before it is disabled.
pub const RETRY_FOR_MS: i64 = 24 * 3600 * 1000;

/// How long the secret replaced by a rotation keeps signing.
pub const ROTATION_GRACE_MS: i64 = 24 * 3600 * 1000;

/// Every event type a subscription may name (`ping` always reaches it
/// through `test`).
pub const TYPES: &[&str] = &[
    "instance.created",
    "instance.status_changed",
    "instance.active",
    "instance.deleted",
    "instance.error",
    "instance.preempted",
    "placement.moved",
    "placement.relaunched",
    "instance.health_changed",
    "cluster.status_changed",
    "volume.status_changed",
    "budget.alert",
    "budget.exceeded",
    "alert",
    "webhook.disabled",
    "ping",
];

/// The webhook type of a recorded event's kind; `None`: the event is only
/// recorded (the kinds Parasol recorded before webhooks keep their names
/// in `GET /v1/events`).
pub fn event_type(kind: &str) -> Option<&'static str> {
    match kind {
        // The idle and health policies' alerts reach the alert webhook
        // beside the thresholds' (lifecycle/policies.rs).
        "alert.date_threshold"
        | "alert.spend_threshold"
        | "idle.alert"
        | "idle.deleted"
        | "health.alert" => Some("alert"),
        "preempted" => Some("instance.preempted"),
        "budget.deleted" => Some("budget.exceeded"),
        k => TYPES.iter().copied().find(|t| *t == k),
    }
}

/// Whether a subscription's patterns take an event type: an exact name,
/// `prefix.*` for every type under `prefix.`, or `*`.
pub fn wants(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p == kind
            || p.strip_suffix(".*")
                .is_some_and(|pre| kind.strip_prefix(pre).is_some_and(|r| r.starts_with('.')))
    })
}

/// Whether a pattern can match any type (the API refuses those that
/// cannot, so a typo is an error rather than silence).
pub fn pattern_is_known(p: &str) -> bool {
    p == "*"
        || TYPES.contains(&p)
        || p.strip_suffix(".*").is_some_and(|pre| {
            TYPES
                .iter()
                .any(|t| t.strip_prefix(pre).is_some_and(|r| r.starts_with('.')))
        })
}

/// A fresh secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("whsec_{}", B64.encode(key))
}

/// The `v1,` signature of one delivery under one secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = B64.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// Whether an address is one a webhook may not reach without
/// `--webhook-allow-private`: loopback, private, link-local, unspecified,
/// shared (CGNAT), broadcast, multicast and their IPv6 counterparts.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// What the server allows webhook URLs to be.
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlPolicy {
    /// `--webhook-allow-http`.
    pub allow_http: bool,
    /// `--webhook-allow-private`.
    pub allow_private: bool,
}

impl UrlPolicy {
    /// Checks a URL's form: absolute, https (or http when allowed), a
    /// host, no credentials. The message says what is wrong.
    pub fn check_form(&self, raw: &str) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(
                    "must be https (this server does not allow http webhooks; see --webhook-allow-http)"
                        .into(),
                )
            }
            s => return Err(format!("must be https, not {s}")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("has no host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password".into());
        }
        Ok(url)
    }

    /// Checks where a URL leads: every address its host resolves to must
    /// be public unless private ones are allowed.
    pub async fn check_addresses(&self, url: &reqwest::Url) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        let host = url.host_str().unwrap_or("");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| {
                    format!(
                        "host {host} did not resolve within {} s",
                        RESOLVE_TIMEOUT.as_secs()
                    )
                })?
                .map_err(|e| format!("host {host} does not resolve: {e}"))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("host {host} does not resolve"));
        }
        if let Some(a) = addrs.iter().find(|a| is_private(a.ip())) {
            return Err(format!(
                "resolves to {}, a loopback, private or link-local address (see --webhook-allow-private)",
                a.ip()
            ));
        }
        Ok(())
    }

    /// Both checks.
    pub async fn check(&self, raw: &str) -> Result<reqwest::Url, String> {
        let url = self.check_form(raw)?;
        self.check_addresses(&url).await?;
        Ok(url)
    }
}

/// Resolves only to public addresses, so that a name which resolved to a
/// public address at create time and to a private one at delivery (DNS
/// rebinding) is refused there too.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves only to loopback, private or link-local addresses"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A claimed delivery, with its subscription as read at the claim.
struct Claimed {
    d: DeliveryRecord,
    /// `None`: the subscription is gone.
    hook: Option<Arc<WebhookRecord>>,
    /// Wall-clock ms when the claim lapses.
    lease_until: i64,
}

/// An attempt made, to record.
struct Finished {
    d: DeliveryRecord,
    hook: Arc<WebhookRecord>,
    attempt: Attempt,
    next: Next,
}

/// Attempts recorded in one transaction at most.
const RECORD_BATCH: usize = 512;

/// What one replica holds for one endpoint.
#[derive(Default)]
struct Held {
    in_flight: usize,
    waiting: std::collections::VecDeque<Claimed>,
}

/// The delivery worker of one replica.
pub struct Deliverer {
    store: Store,
    clock: Arc<Clock>,
    policy: UrlPolicy,
    /// This replica's lease owner id.
    replica: Uuid,
    /// For subscriptions: public addresses only, unless allowed.
    client: reqwest::Client,
    /// For the operator's `--alert-webhook-url`, which may be anywhere.
    operator_client: reqwest::Client,
    /// The claimed deliveries of each endpoint this replica holds.
    held: Mutex<HashMap<Uuid, Held>>,
    /// Attempts made and not yet recorded: one task records them in
    /// batches ([`Deliverer::record`]).
    finished: mpsc::UnboundedSender<Finished>,
    finished_rx: Mutex<Option<mpsc::UnboundedReceiver<Finished>>>,
    period: Duration,
}

fn client(public_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("parasol-webhooks/", env!("CARGO_PKG_VERSION")));
    if public_only {
        b = b.dns_resolver(Arc::new(PublicOnly));
    }
    b.build().unwrap_or_default()
}

impl Deliverer {
    /// A worker; start it with [`Deliverer::run`]. `period`: the longest
    /// pause between looks at the queue.
    pub fn new(store: Store, clock: Arc<Clock>, policy: UrlPolicy, period: Duration) -> Self {
        let (finished, finished_rx) = mpsc::unbounded_channel();
        Self {
            finished,
            finished_rx: Mutex::new(Some(finished_rx)),
            store,
            clock,
            policy,
            replica: Uuid::new_v4(),
            client: client(!policy.allow_private),
            operator_client: client(false),
            held: Mutex::new(HashMap::new()),
            period,
        }
    }

    /// Runs until `stop` turns true. Attempts in flight then are abandoned;
    /// their leases lapse and the deliveries are made again.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let finished = self
            .finished_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = finished {
            tokio::spawn(self.clone().record(rx, stop.clone()));
        }
        let mut pruned_at: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(Instant::now());
                let before = self.clock.now_ms() - ATTEMPTS_KEPT_MS;
                match self.store.prune_webhook_attempts(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned webhook attempts past 30 days"),
                    Err(e) => tracing::warn!(error = %e, "could not prune webhook attempts"),
                }
            }
            let sleep = match self.pass().await {
                Ok(n) if n as i64 >= BATCH => Duration::ZERO,
                Ok(_) => self.until_next().await,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook delivery pass failed; retrying");
                    self.period
                }
            };
            if sleep.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = crate::store::deliveries_queued().notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn until_next(&self) -> Duration {
        match self.store.next_delivery_wake().await {
            Ok(Some(at)) => {
                Duration::from_millis((at - self.clock.now_ms()).max(1) as u64).min(self.period)
            }
            _ => self.period,
        }
    }

    /// Records finished attempts, as many at once as have finished since
    /// the last write (the store's writes are what a busy fan-out waits
    /// on), until `stop` turns true. Attempts not recorded then are made
    /// again once their leases lapse: at least once.
    async fn record(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Finished>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let first = tokio::select! {
                f = rx.recv() => f,
                _ = stop.changed() => None,
            };
            let Some(first) = first else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < RECORD_BATCH {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            let hooks: HashMap<Uuid, Arc<WebhookRecord>> = batch
                .iter()
                .map(|f| (f.d.webhook_id, f.hook.clone()))
                .collect();
            let n = batch.len();
            let done = batch
                .into_iter()
                .map(|f| (f.d, f.attempt, f.next))
                .collect();
            match self.store.finish_deliveries(done, self.replica).await {
                Ok(failing) => {
                    let now = self.clock.now_ms();
                    for (id, since) in failing {
                        if now - since < RETRY_FOR_MS {
                            continue;
                        }
                        if let Some(hook) = hooks.get(&id) {
                            if let Err(e) = self.disable(hook, now).await {
                                tracing::warn!(webhook = %id, error = %e, "could not disable a failing webhook; the next failure tries again");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(attempts = n, error = %e, "webhook attempts could not be recorded; their deliveries will be made again");
                }
            }
        }
    }

    /// Claims what is due and starts an attempt for each, or queues it
    /// behind its endpoint's attempts in flight; returns how many it
    /// claimed.
    async fn pass(self: &Arc<Self>) -> StoreResult<usize> {
        let wall = wall_ms();
        let lease_until = wall + LEASE.as_millis() as i64;
        let full: Vec<Uuid> = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.iter()
                .filter(|(_, h)| h.in_flight + h.waiting.len() >= HOLD)
                .map(|(id, _)| *id)
                .collect()
        };
        let mut due = self
            .store
            .claim_due_deliveries(
                self.replica,
                self.clock.now_ms(),
                wall,
                lease_until,
                BATCH,
                &full,
            )
            .await?;
        let n = due.len();
        // Each subscription read once a pass, not once a delivery.
        let mut hooks: HashMap<Uuid, Option<Arc<WebhookRecord>>> = HashMap::new();
        for d in &due {
            if let std::collections::hash_map::Entry::Vacant(slot) = hooks.entry(d.webhook_id) {
                slot.insert(
                    self.store
                        .get_webhook_any(d.webhook_id)
                        .await?
                        .map(Arc::new),
                );
            }
        }
        self.store
            .fill_delivery_bodies(&mut due, |id| {
                hooks
                    .get(&id)
                    .and_then(|h| h.as_ref())
                    .map_or(Format::Standard, |h| h.format)
            })
            .await?;
        let mut start = Vec::new();
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            for d in due {
                let c = Claimed {
                    hook: hooks.get(&d.webhook_id).cloned().flatten(),
                    d,
                    lease_until,
                };
                let h = held.entry(c.d.webhook_id).or_default();
                if h.in_flight < PER_ENDPOINT {
                    h.in_flight += 1;
                    start.push(c);
                } else {
                    h.waiting.push_back(c);
                }
            }
        }
        for c in start {
            let me = self.clone();
            tokio::spawn(async move { me.work(c).await });
        }
        Ok(n)
    }

    /// Attempts `c`, then whatever waits for the same endpoint, until
    /// nothing does. A waiting delivery whose lease would run out during
    /// its attempt is put back instead (a claim made again by this or
    /// another replica would otherwise send it twice at once).
    async fn work(self: Arc<Self>, mut c: Claimed) {
        let hook = c.d.webhook_id;
        loop {
            if let Err(e) = self.attempt(&c).await {
                tracing::warn!(webhook = %hook, error = %e, "webhook delivery could not be recorded; it will be retried");
            }
            let mut late = Vec::new();
            let next = {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                let Some(h) = held.get_mut(&hook) else {
                    return;
                };
                let soonest_end = wall_ms() + TIMEOUT.as_millis() as i64;
                let mut next = None;
                while let Some(w) = h.waiting.pop_front() {
                    if w.lease_until > soonest_end {
                        next = Some(w);
                        break;
                    }
                    late.push(w);
                }
                if next.is_none() {
                    h.in_flight -= 1;
                    if h.in_flight == 0 && h.waiting.is_empty() {
                        held.remove(&hook);
                    }
                }
                next
            };
            for w in late {
                let at = self.clock.now_ms();
                if let Err(e) = self.store.defer_delivery(w.d.id, self.replica, at).await {
                    tracing::warn!(webhook = %hook, error = %e, "could not give back a delivery; its lease will lapse");
                }
            }
            match next {
                Some(n) => c = n,
                None => return,
            }
        }
    }

    /// One attempt of one delivery, and its bookkeeping. The subscription
    /// is as it was read when the delivery was claimed, at most a lease
    /// ago.
    async fn attempt(&self, c: &Claimed) -> StoreResult<()> {
        let d = &c.d;
        let Some(shared) = c.hook.clone().filter(|h| h.enabled) else {
            return self.store.drop_delivery(d.id).await;
        };
        let hook = shared.as_ref();
        let start = Instant::now();
        let result = self.post(hook, d).await;
        let now = self.clock.now_ms();
        let attempt = Attempt {
            status_code: result.as_ref().ok().copied(),
            error: result.as_ref().err().cloned(),
            duration_ms: start.elapsed().as_millis() as i64,
            at: now,
        };
        let success = matches!(result, Ok(c) if (200..300).contains(&c));
        let next = if success {
            Next::Done { success: true }
        } else {
            retry_at(d, now, rand::random::<f64>())
        };
        crate::metrics::global().observe_webhook_attempt(
            match next {
                Next::Done { success: true } => "delivered",
                Next::Done { success: false } => "given_up",
                Next::RetryAt(_) => "retry",
            },
            start.elapsed(),
        );
        if !success {
            tracing::info!(webhook = %hook.id, event = %d.event_id, attempt = d.attempts + 1,
                status = ?attempt.status_code, error = attempt.error.as_deref().unwrap_or(""),
                "webhook delivery failed");
        }
        // Recorded by `record`; a closed channel means the replica stops,
        // and the lease's lapse makes the delivery again.
        let _ = self.finished.send(Finished {
            d: d.clone(),
            hook: shared.clone(),
            attempt,
            next,
        });
        Ok(())
    }

    /// POSTs the delivery; the status code, or why there is none.
    async fn post(&self, hook: &WebhookRecord, d: &DeliveryRecord) -> Result<u16, String> {
        let client = match hook.format {
            Format::Alert => &self.operator_client,
            Format::Standard => {
                // Checked again at every attempt: the URL was fine when it
                // was saved, the address it leads to now may not be.
                let url = self.policy.check_form(&hook.url)?;
                if let Some(ip) = url
                    .host_str()
                    .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                    .and_then(|h| h.parse::<IpAddr>().ok())
                {
                    if !self.policy.allow_private && is_private(ip) {
                        return Err(format!(
                            "refused: {ip} is a loopback, private or link-local address"
                        ));
                    }
                }
                &self.client
            }
        };
        let id = d.event_id.to_string();
        let ts = wall_ms() / 1000;
        let signature = hook
            .signing_secrets(self.clock.now_ms())
            .into_iter()
            .filter_map(|s| sign(s, &id, ts, &d.body))
            .collect::<Vec<_>>()
            .join(" ");
        let res = client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(d.body.clone())
            .send()
            .await
            .map_err(describe)?;
        let status = res.status().as_u16();
        drain(res).await;
        Ok(status)
    }

    async fn disable(&self, hook: &WebhookRecord, now: i64) -> StoreResult<()> {
        if self.store.disable_webhook(hook, now).await? {
            tracing::warn!(webhook = %hook.id, url = %hook.url, "webhook endpoint failed for 24 h; disabled");
        }
        Ok(())
    }
}

/// When to retry a delivery whose attempt failed at `now`, or to give it
/// up; `jitter` in [0, 1) moves the delay by up to ±10 %.
pub fn retry_at(d: &DeliveryRecord, now: i64, jitter: f64) -> Next {
    let deadline = d.created_at + RETRY_FOR_MS;
    if now >= deadline {
        return Next::Done { success: false };
    }
    let i = (d.attempts as usize).min(SCHEDULE.len() - 1);
    let base = SCHEDULE[i].as_millis() as f64;
    let delay = (base * (0.9 + 0.2 * jitter)) as i64;
    Next::RetryAt((now + delay).min(deadline))
}

/// Reads up to [`BODY_CAP`] of a response and drops the rest.
async fn drain(mut res: reqwest::Response) {
    let mut read = 0;
    while read < BODY_CAP {
        match res.chunk().await {
            Ok(Some(c)) => read += c.len(),
            _ => return,
        }
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        format!("timed out after {} s", TIMEOUT.as_secs())
    } else if e.is_connect() {
        // The source names the cause (refused, unreachable, a private
        // address the resolver would not return).
        let mut s = String::from("could not connect");
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s = format!("could not connect: {inner}");
            src = inner.source();
        }
        s
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The example of the Standard Webhooks reference libraries.
        assert_eq!(
            sign(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            )
            .as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("not-a-secret", "a", 1, "b"), None);
    }

    #[test]
    fn patterns_match_types_and_prefixes() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&p(&["instance.*"]), "instance.active"));
        assert!(!wants(&p(&["instance.*"]), "instances.x"));
        assert!(!wants(&p(&["instance.*"]), "budget.alert"));
        assert!(wants(&p(&["budget.alert"]), "budget.alert"));
        assert!(wants(&p(&["*"]), "alert"));
        assert!(!wants(&p(&["alert"]), "budget.alert"));
        assert!(pattern_is_known("instance.*"));
        assert!(pattern_is_known("alert"));
        assert!(!pattern_is_known("instance.activ"));
        assert!(!pattern_is_known("nothing.*"));
    }

    #[test]
    fn private_ranges_are_recognised() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn retries_follow_the_schedule_and_stop_after_a_day() {
        let d = |attempts| DeliveryRecord {
            id: Uuid::nil(),
            webhook_id: Uuid::nil(),
            event_id: Uuid::nil(),
            event_type: "ping".into(),
            body: "{}".into(),
            attempts,
            created_at: 0,
        };
        assert_eq!(retry_at(&d(0), 0, 0.5), Next::RetryAt(5_000));
        assert_eq!(retry_at(&d(1), 5_000, 0.0), Next::RetryAt(5_000 + 270_000));
        assert_eq!(retry_at(&d(1), 5_000, 1.0), Next::RetryAt(5_000 + 330_000));
        // The last retry is made at the deadline, then it is given up.
        let late = RETRY_FOR_MS - 1000;
        assert_eq!(retry_at(&d(9), late, 0.5), Next::RetryAt(RETRY_FOR_MS));
        assert_eq!(
            retry_at(&d(10), RETRY_FOR_MS, 0.5),
            Next::Done { success: false }
        );
    }

    #[test]
    fn url_forms_are_checked() {
        let strict = UrlPolicy::default();
        assert!(strict.check_form("https://example.com/hook").is_ok());
        assert!(strict
            .check_form("http://example.com/hook")
            .unwrap_err()
            .contains("https"));
        assert!(strict.check_form("ftp://example.com").is_err());
        assert!(strict.check_form("https://u:p@example.com").is_err());
        assert!(strict.check_form("not a url").is_err());
        let lax = UrlPolicy {
            allow_http: true,
            allow_private: false,
        };
        assert!(lax.check_form("http://example.com/hook").is_ok());
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let strict = UrlPolicy::default();
        for u in [
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://localhost/x",
            "https://169.254.169.254/latest",
            "https://10.0.0.5/x",
        ] {
            let e = strict.check(u).await.unwrap_err();
            assert!(e.contains("private") || e.contains("resolve"), "{u}: {e}");
        }
        let open = UrlPolicy {
            allow_http: true,
            allow_private: true,
        };
        assert!(open.check("http://127.0.0.1:9/x").await.is_ok());
    }
}
