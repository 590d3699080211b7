//! The HTTP plumbing every cloud adapter shares: one client whose answers
//! become [`ProviderError`]s (retrying rate limits), a short-lived offers
//! cache, and a pacer for clouds that limit how often one may launch.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::providers::{Offer, ProviderError};

/// Longest wait honoured from a `Retry-After` header inside one call; the
/// reconciler's call timeout bounds the whole call anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15);
/// Attempts per call when the cloud answers 429.
const RATE_LIMIT_ATTEMPTS: u32 = 4;

/// An HTTP answer that was not a success, kept whole so each adapter can
/// classify it by its own error codes.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub body: String,
}

/// One cloud's HTTP client.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    /// Cloud name for messages.
    pub cloud: &'static str,
}

impl Http {
    /// A client with timeouts short enough to fit in one reconciler step.
    pub fn new(cloud: &'static str) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("parasol/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Self { client, cloud }
    }

    /// A request to `path` under the cloud's base URL `base` (a trailing
    /// slash on `base` is dropped, so `path` always starts the rest).
    pub fn request(&self, method: reqwest::Method, base: &str, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", base.trim_end_matches('/')))
    }

    /// Sends the request `build` makes, again after a 429 (waiting as long
    /// as `Retry-After` says, or backing off with jitter), and returns the
    /// status and body of any other answer. Connection failures and
    /// timeouts are transient; everything else is left to the caller.
    pub async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(StatusCode, String), ProviderError> {
        let (status, _, body) = self.send_with_headers(build).await?;
        Ok((status, body))
    }

    /// [`Http::send`], answering the response's headers too (where a
    /// cloud says where to follow a long-running operation).
    pub async fn send_with_headers(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, String), ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = build().send().await.map_err(|e| {
                ProviderError::Transient(format!("{} unreachable: {}", self.cloud, without_url(&e)))
            })?;
            let status = res.status();
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < RATE_LIMIT_ATTEMPTS {
                // Jitter, so clients rate limited together do not retry
                // together.
                let wait = retry_after(res.headers()).unwrap_or_else(|| {
                    Duration::from_millis((500 << attempt) + rand::random::<u64>() % 250)
                });
                tracing::debug!(
                    cloud = self.cloud,
                    wait_ms = wait.as_millis() as u64,
                    "rate limited; waiting"
                );
                tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
                continue;
            }
            let headers = res.headers().clone();
            let body = res.text().await.map_err(|e| {
                ProviderError::Transient(format!(
                    "{} answer unreadable: {}",
                    self.cloud,
                    without_url(&e)
                ))
            })?;
            return Ok((status, headers, body));
        }
    }

    /// Like [`Http::send`], and parses a success as `T`; a failure goes to
    /// `classify`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
        classify: impl Fn(&Failure) -> ProviderError,
    ) -> Result<T, ProviderError> {
        let (status, body) = self.send(build).await?;
        if !status.is_success() {
            return Err(classify(&Failure { status, body }));
        }
        parse(self.cloud, what, &body)
    }
}

/// Parses a cloud's JSON, naming what did not match.
pub fn parse<T: DeserializeOwned>(cloud: &str, what: &str, body: &str) -> Result<T, ProviderError> {
    let de = &mut serde_json::Deserializer::from_str(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        ProviderError::Transient(format!(
            "{cloud} answered {what} with an unexpected shape at {}: {}",
            e.path(),
            e.inner()
        ))
    })
}

/// The answer to a `GET` of one resource: `None` when the cloud answers
/// 404 (it has no such resource), the parsed body on success, and else
/// what `classify` makes of the failure.
pub fn parse_found<T: DeserializeOwned>(
    cloud: &str,
    what: &str,
    status: StatusCode,
    body: String,
    classify: impl FnOnce(&str, &Failure) -> ProviderError,
) -> Result<Option<T>, ProviderError> {
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(classify(what, &Failure { status, body }));
    }
    parse(cloud, what, &body).map(Some)
}

/// The generic part of every adapter's classification: 429 left after the
/// retries and 5xx are transient, 401/403 mean the credentials are wrong.
pub fn generic_failure(cloud: &str, what: &str, f: &Failure, detail: &str) -> ProviderError {
    let status = f.status.as_u16();
    match status {
        401 | 403 => ProviderError::Permanent(format!(
            "{cloud} rejected the credentials ({status} on {what}): {detail}; check the configured API key"
        )),
        429 => ProviderError::Transient(format!("{cloud} is rate limiting {what}")),
        408 | 500..=599 => {
            ProviderError::Transient(format!("{cloud} failed {what} ({status}): {detail}"))
        }
        _ => ProviderError::Permanent(format!("{cloud} refused {what} ({status}): {detail}")),
    }
}

/// How long a 429 asks to wait: `Retry-After` (seconds), else the
/// `ratelimit-reset` of an exhausted `ratelimit-remaining`, which
/// DigitalOcean sends as a Unix time and the IETF draft as seconds from
/// now (told apart by size). `None`: back off.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let num = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    if let Some(s) = num("retry-after") {
        return Some(Duration::from_secs_f64(s));
    }
    if num("ratelimit-remaining") != Some(0.0) {
        return None;
    }
    let reset = num("ratelimit-reset")?;
    if reset < 1e9 {
        return Some(Duration::from_secs_f64(reset));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(Duration::from_secs_f64((reset - now).max(0.0)))
}

/// A reqwest error without the URL, which may carry a query string.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    if let Some(src) = std::error::Error::source(e) {
        msg.push_str(&format!(": {src}"));
    }
    msg
}

/// Offers fetched from a cloud, reused for a while so that callers other
/// than the periodic refresh do not each hit the cloud.
pub struct OffersCache {
    ttl: Duration,
    slot: Mutex<Option<(Instant, Vec<Offer>)>>,
}

impl OffersCache {
    /// An empty cache.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slot: Mutex::new(None),
        }
    }

    /// The cached offers, or fresh ones from `fetch`. The lock is held while
    /// fetching, so concurrent callers wait for one fetch.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Vec<Offer>, ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Offer>, ProviderError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, offers)) = slot.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(offers.clone());
            }
        }
        let offers = fetch().await?;
        *slot = Some((Instant::now(), offers.clone()));
        Ok(offers)
    }

    /// Forgets the cached offers (after a capacity error proved them stale).
    pub async fn clear(&self) {
        *self.slot.lock().await = None;
    }
}

/// The first `n` characters of a cloud's error text, for messages.
pub fn short(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= 300 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(300).collect::<String>())
    }
}

/// Waits so launches are at least `interval` apart, handing out slots in
/// order. Gives up (transient) when the slot is further away than
/// `max_wait`, so one reconciler step never outlives its call timeout.
pub struct LaunchPacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl LaunchPacer {
    /// Launches at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: Mutex::new(None),
        }
    }

    /// Takes the next launch slot, sleeping until it comes.
    pub async fn wait(&self, cloud: &str, max_wait: Duration) -> Result<(), ProviderError> {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            if at - now > max_wait {
                return Err(ProviderError::Transient(format!(
                    "{cloud} allows one launch every {}s; waiting for a launch slot",
                    self.interval.as_secs_f64()
                )));
            }
            *next = Some(at + self.interval);
            at
        };
        tokio::time::sleep_until(at.into()).await;
        Ok(())
    }
}

/// A cloud's REST API as its adapter reaches it: how a request starts (the
/// base URL and the credentials) and how a failure reads. Sending through
/// [`Http`] (with its retries), attaching the query and JSON body, and
/// parsing are the same for every cloud and written once here.
pub(crate) trait RestApi: Sync {
    /// The cloud's client.
    fn http(&self) -> &Http;
    /// A request to `path` under the cloud's base URL, with credentials.
    fn req(&self, method: Method, path: &str) -> RequestBuilder;
    /// What a failed answer to `what` (`"GET /path"`) means.
    fn classify(&self, what: &str, f: &Failure) -> ProviderError;

    /// Sends `method path` with `query` and a JSON `body`; answers the
    /// status and body of whatever came back but a 429 or a lost
    /// connection (see [`Http::send`]).
    async fn call_query<V: AsRef<str> + Sync>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, V)],
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, String), ProviderError> {
        self.http()
            .send(|| {
                let r = self.req(method.clone(), path);
                let r = if query.is_empty() {
                    r
                } else {
                    let pairs: Vec<(&str, &str)> =
                        query.iter().map(|(k, v)| (*k, v.as_ref())).collect();
                    r.query(&pairs)
                };
                match body {
                    Some(b) => r.json(b),
                    None => r,
                }
            })
            .await
    }

    /// [`RestApi::call_query`] without a query.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, String), ProviderError> {
        self.call_query::<&str>(method, path, &[], body).await
    }

    /// Like [`RestApi::call_query`], and parses a success as `T`; a failure
    /// goes to [`RestApi::classify`].
    async fn json_query<T: DeserializeOwned, V: AsRef<str> + Sync>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, V)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, ProviderError> {
        let what = format!("{method} {path}");
        let (status, text) = self.call_query(method, path, query, body).await?;
        if !status.is_success() {
            return Err(self.classify(&what, &Failure { status, body: text }));
        }
        parse(self.http().cloud, &what, &text)
    }

    /// [`RestApi::json_query`] without a query.
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ProviderError> {
        self.json_query::<T, &str>(method, path, &[], body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_429_waits_for_retry_after_or_an_exhausted_rate_limits_reset() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", "3")
            ])),
            Some(Duration::from_secs(3))
        );
        let soon = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 5;
        let wait = retry_after(&headers(&[
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", &soon.to_string()),
        ]))
        .unwrap();
        assert!(
            wait <= Duration::from_secs(5) && wait >= Duration::from_secs(3),
            "{wait:?}"
        );
        assert_eq!(
            retry_after(&headers(&[
                ("ratelimit-remaining", "7"),
                ("ratelimit-reset", "3")
            ])),
            None,
            "a limit not exhausted says nothing about this 429"
        );
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}

/// A bearer token fetched when first needed and kept for as long as its
/// fetch says (each cloud keeps it until shortly before it expires). The
/// lock is held while fetching, so concurrent callers share one exchange.
/// Verda, Google Cloud and Azure keep theirs here.
#[derive(Default)]
pub struct TokenCache(Mutex<Option<(super::Secret, Instant)>>);

impl TokenCache {
    /// The kept token while it is good, else the one `fetch` gets, with
    /// how long to keep it.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<super::Secret, ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(super::Secret, Duration), ProviderError>>,
    {
        let mut slot = self.0.lock().await;
        if let Some((token, until)) = slot.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let (token, keep) = fetch().await?;
        *slot = Some((token.clone(), Instant::now() + keep));
        Ok(token)
    }

    /// Forgets the kept token (the cloud refused it before it expired).
    pub async fn clear(&self) {
        *self.0.lock().await = None;
    }
}
