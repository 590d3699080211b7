//! What the real-cloud adapters share: credentials that never print, one
//! HTTP helper that turns a cloud's answers into [`ProviderError`]s (and
//! retries rate limits), a short-lived offers cache, the machine marker, and
//! the GPU naming that maps a cloud's GPU description onto Shadeform's.

use std::future::Future;
use std::time::{Duration, Instant};

use parasol_api::InstanceTypeConfiguration;
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{Offer, ProviderError};

/// A credential. Its `Debug` never shows the value, so settings and errors
/// can be logged whole.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Prefix of every machine name Parasol gives a cloud: the orphan sweep and
/// a retried launch find Parasol's machines by it.
pub const MARKER_PREFIX: &str = "parasol-";

/// The name of the machine of `instance_id` at any cloud.
pub fn marker(instance_id: Uuid) -> String {
    format!("{MARKER_PREFIX}{instance_id}")
}

/// The instance id carried by a machine name, if Parasol named it.
pub fn parse_marker(name: &str) -> Option<Uuid> {
    name.strip_prefix(MARKER_PREFIX)
        .and_then(|rest| Uuid::parse_str(rest).ok())
}

/// A short name for an SSH public key, the same every time: clouds that
/// register keys by name get one key per distinct public key.
pub fn key_name(public_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(public_key.trim().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{MARKER_PREFIX}{hex}")
}

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

    /// Sends the request `build` makes, again after a 429 (waiting as long
    /// as `Retry-After` says, or backing off), and returns the status and
    /// body of any other answer. Connection failures and timeouts are
    /// transient; everything else is left to the caller.
    pub async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(StatusCode, String), ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = build().send().await.map_err(|e| {
                ProviderError::Transient(format!("{} unreachable: {}", self.cloud, without_url(&e)))
            })?;
            let status = res.status();
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < RATE_LIMIT_ATTEMPTS {
                let wait = retry_after(res.headers())
                    .unwrap_or_else(|| Duration::from_millis(500 << attempt));
                tracing::debug!(
                    cloud = self.cloud,
                    wait_ms = wait.as_millis() as u64,
                    "rate limited; waiting"
                );
                tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
                continue;
            }
            let body = res.text().await.map_err(|e| {
                ProviderError::Transient(format!(
                    "{} answer unreadable: {}",
                    self.cloud,
                    without_url(&e)
                ))
            })?;
            return Ok((status, body));
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

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
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

/// A GPU model as Shadeform names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuModel {
    /// `gpu_type` in the API.
    pub gpu_type: &'static str,
    /// Prefix of `shade_instance_type`.
    pub shade: &'static str,
    pub vram: i64,
    pub interconnect: &'static str,
}

/// Recognizes a GPU from a cloud's description of it ("H100 (80 GB SXM5)",
/// "1x H100 SXM5 80GB", "A100-80G-PCIe", "RTX A6000"). The order matters:
/// longer names first, so "L40S" is not read as "L40".
pub fn gpu_model(description: &str) -> Option<GpuModel> {
    let d: String = description
        .to_ascii_uppercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect();
    let words: Vec<&str> = d.split_whitespace().collect();
    let has = |w: &str| words.contains(&w);
    let joined = words.concat();
    let sxm = joined.contains("SXM");
    let m = |gpu_type, shade, vram, interconnect| {
        Some(GpuModel {
            gpu_type,
            shade,
            vram,
            interconnect,
        })
    };
    if joined.contains("GH200") {
        return m("GH200", "GH200", 96, "nvlink-c2c");
    }
    if joined.contains("B200") {
        return m("B200", "B200", 180, "sxm6");
    }
    if joined.contains("H200") {
        return m("H200", "H200", 141, "sxm5");
    }
    if joined.contains("H100") {
        return if sxm {
            m("H100", "H100_sxm5", 80, "sxm5")
        } else {
            m("H100", "H100", 80, "pcie")
        };
    }
    if joined.contains("A100") {
        let big = joined.contains("80G");
        let ic = if sxm { "sxm4" } else { "pcie" };
        return if big {
            m("A100_80G", "A100_80G", 80, ic)
        } else {
            m("A100", "A100", 40, ic)
        };
    }
    if joined.contains("L40S") {
        return m("L40S", "L40S", 48, "pcie");
    }
    if joined.contains("L40") {
        return m("L40", "L40", 48, "pcie");
    }
    if joined.contains("6000ADA") || (joined.contains("RTX6000") && has("ADA")) {
        return m("RTX6000Ada", "RTX6000Ada", 48, "pcie");
    }
    if joined.contains("A6000") {
        return m("A6000", "A6000", 48, "pcie");
    }
    if joined.contains("A5000") {
        return m("A5000", "A5000", 24, "pcie");
    }
    if joined.contains("A4000") {
        return m("A4000", "A4000", 16, "pcie");
    }
    if joined.contains("A40") {
        return m("A40", "A40", 48, "pcie");
    }
    if joined.contains("A10") {
        return m("A10", "A10", 24, "pcie");
    }
    if joined.contains("V100") {
        return m("V100", "V100", 16, if sxm { "sxm2" } else { "pcie" });
    }
    if joined.contains("RTX6000") {
        return m("RTX6000", "RTX6000", 24, "pcie");
    }
    None
}

/// Shadeform's type name: the model, then `x<n>` for more than one GPU
/// (`A6000`, `H100_sxm5x8`).
pub fn shade_type(gpu: &GpuModel, n: i64) -> String {
    if n == 1 {
        gpu.shade.to_string()
    } else {
        format!("{}x{n}", gpu.shade)
    }
}

/// The configuration of an offer of `n` of `gpu`.
pub fn configuration(
    gpu: &GpuModel,
    n: i64,
    vcpus: i64,
    memory_in_gb: i64,
    storage_in_gb: i64,
    os_options: &[&str],
) -> InstanceTypeConfiguration {
    InstanceTypeConfiguration {
        memory_in_gb,
        storage_in_gb,
        vcpus,
        num_gpus: n,
        gpu_type: gpu.gpu_type.to_string(),
        interconnect: gpu.interconnect.to_string(),
        nvlink: n > 1 && gpu.interconnect.starts_with("sxm"),
        vram_per_gpu_in_gb: gpu.vram,
        os_options: os_options.iter().map(|s| s.to_string()).collect(),
        gpu_manufacturer: "nvidia".to_string(),
    }
}

/// Dollars (as a cloud writes them, `"2.49"` or `2.49`) to whole cents,
/// rounded to the nearest cent.
pub fn cents(dollars: f64) -> i64 {
    (dollars * 100.0).round() as i64
}

/// A number a cloud may send as a JSON number or as a string.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum Num {
    Number(f64),
    Text(#[serde(deserialize_with = "num_from_str")] f64),
}

impl Num {
    /// The value.
    pub fn get(self) -> f64 {
        match self {
            Num::Number(n) | Num::Text(n) => n,
        }
    }
}

fn num_from_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    s.trim().parse().map_err(serde::de::Error::custom)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_descriptions_of_each_cloud_map_to_shadeform_names() {
        let cases = [
            ("H100 (80 GB SXM5)", "H100_sxm5", 8, "H100_sxm5x8"),
            ("H100 (80 GB PCIe)", "H100", 1, "H100"),
            ("A100 (40 GB SXM4)", "A100", 1, "A100"),
            ("A100 (80 GB SXM4)", "A100_80G", 8, "A100_80Gx8"),
            ("RTX A6000 (48 GB)", "A6000", 1, "A6000"),
            ("A10 (24 GB PCIe)", "A10", 1, "A10"),
            ("1x H100 SXM5 80GB", "H100_sxm5", 1, "H100_sxm5"),
            ("8x H200 SXM5 141GB", "H200", 8, "H200x8"),
            ("A100-80G-PCIe", "A100_80G", 2, "A100_80Gx2"),
            ("RTX-A6000", "A6000", 4, "A6000x4"),
            ("L40S", "L40S", 1, "L40S"),
            ("L40", "L40", 1, "L40"),
            ("RTX 6000 Ada", "RTX6000Ada", 1, "RTX6000Ada"),
        ];
        for (desc, shade, n, name) in cases {
            let g = gpu_model(desc).unwrap_or_else(|| panic!("{desc} not recognized"));
            assert_eq!(g.shade, shade, "{desc}");
            assert_eq!(shade_type(&g, n), name, "{desc}");
        }
        assert_eq!(gpu_model("CPU only"), None);
    }

    #[test]
    fn markers_round_trip_and_reject_foreign_names() {
        let id = Uuid::new_v4();
        assert_eq!(parse_marker(&marker(id)), Some(id));
        assert_eq!(parse_marker("my-box"), None);
        assert_eq!(parse_marker("parasol-not-a-uuid"), None);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn prices_become_whole_cents() {
        assert_eq!(cents(2.49), 249);
        assert_eq!(cents(1.35), 135);
        let n: Num = serde_json::from_str("\"3.5\"").unwrap();
        assert_eq!(n.get(), 3.5);
    }
}
