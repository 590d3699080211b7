//! Prometheus metrics: a small registry of labelled counters and
//! histograms, rendered in the text exposition format at `GET /metrics`.
//!
//! The registry is process-wide ([`global`]) so that any layer can count
//! without threading a handle through every constructor: the request log
//! counts requests, the reconciler counts provider calls. Gauges that
//! describe stored state (instances by status) are not kept here at all;
//! the scrape handler queries the store, so they can never drift from it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Label values, in the order of a family's label names.
#[derive(Clone)]
struct Labels(Vec<String>);

/// A set of label values as a map key, owned ([`Labels`]) or borrowed
/// ([`Borrowed`]), so that counting a request looks its labels up without
/// copying them (it runs on every request). Ordered as `Vec<String>` is.
trait LabelKey {
    fn value(&self, i: usize) -> Option<&str>;
}

impl LabelKey for Labels {
    fn value(&self, i: usize) -> Option<&str> {
        self.0.get(i).map(String::as_str)
    }
}

/// Label values as the caller has them.
struct Borrowed<'a>(&'a [&'a str]);

impl LabelKey for Borrowed<'_> {
    fn value(&self, i: usize) -> Option<&str> {
        self.0.get(i).copied()
    }
}

impl Ord for dyn LabelKey + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (0..)
            .map(|i| (self.value(i), other.value(i)))
            .find_map(|pair| match pair {
                (None, None) => Some(std::cmp::Ordering::Equal),
                (a, b) => Some(a.cmp(&b)).filter(|o| o.is_ne()),
            })
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for dyn LabelKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn LabelKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for dyn LabelKey + '_ {}

impl<'a> std::borrow::Borrow<dyn LabelKey + 'a> for Labels {
    fn borrow(&self) -> &(dyn LabelKey + 'a) {
        self
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self as &dyn LabelKey).cmp(other as &dyn LabelKey)
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Labels {}

/// The entry of `labels` in `values`, made (with `V`'s default) only when
/// it is new.
fn entry<'m, V: Default>(values: &'m mut BTreeMap<Labels, V>, labels: &[&str]) -> &'m mut V {
    let key = Borrowed(labels);
    if !values.contains_key(&key as &dyn LabelKey) {
        let owned = Labels(labels.iter().map(|s| s.to_string()).collect());
        return values.entry(owned).or_default();
    }
    values
        .get_mut(&key as &dyn LabelKey)
        .expect("looked up under the same lock")
}

/// A counter family: one monotonically increasing count per label set.
pub struct CounterFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Labels, u64>>,
}

impl CounterFamily {
    /// An empty family.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds one to the counter of `labels`.
    pub fn inc(&self, labels: &[&str]) {
        debug_assert_eq!(labels.len(), self.labels.len(), "{}", self.name);
        *entry(&mut self.values.lock().expect("poisoned"), labels) += 1;
    }

    /// The current count of `labels` (tests, readiness).
    pub fn get(&self, labels: &[&str]) -> u64 {
        self.values
            .lock()
            .expect("poisoned")
            .get(&Borrowed(labels) as &dyn LabelKey)
            .copied()
            .unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        for (labels, v) in self.values.lock().expect("poisoned").iter() {
            let _ = writeln!(
                out,
                "{}{} {v}",
                self.name,
                label_set(self.labels, &labels.0, None)
            );
        }
    }
}

#[derive(Clone, Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// A histogram family over [`LATENCY_BUCKETS`], in seconds.
pub struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Labels, Histogram>>,
}

impl HistogramFamily {
    /// An empty family.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, labels: &[&str], d: Duration) {
        debug_assert_eq!(labels.len(), self.labels.len(), "{}", self.name);
        let secs = d.as_secs_f64();
        let mut values = self.values.lock().expect("poisoned");
        let h = entry(&mut values, labels);
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        h.buckets[slot] += 1;
        h.sum += secs;
        h.count += 1;
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        for (labels, h) in self.values.lock().expect("poisoned").iter() {
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = LATENCY_BUCKETS
                    .get(i)
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "+Inf".to_string());
                let _ = writeln!(
                    out,
                    "{}_bucket{} {cumulative}",
                    self.name,
                    label_set(self.labels, &labels.0, Some(&le))
                );
            }
            let set = label_set(self.labels, &labels.0, None);
            let _ = writeln!(out, "{}_sum{set} {}", self.name, h.sum);
            let _ = writeln!(out, "{}_count{set} {}", self.name, h.count);
        }
    }
}

/// Every metric the process counts as it goes.
pub struct Metrics {
    /// Requests by method, route template and status.
    pub http_requests: CounterFamily,
    /// Request latency by method and route template.
    pub http_duration: HistogramFamily,
    /// Provider calls by provider, operation and outcome.
    pub provider_calls: CounterFamily,
    /// Provider call latency by provider and operation.
    pub provider_duration: HistogramFamily,
    /// Connections refused at accept, by reason (`total`, `per_address`).
    pub connections_refused: CounterFamily,
    /// Connections closed by the header-read or idle timeout.
    pub connections_timed_out: CounterFamily,
    /// Failed accepts (such as running out of file descriptors).
    pub accept_errors: CounterFamily,
    /// Requests answered 429, by the bucket that ran dry.
    pub rate_limited: CounterFamily,
    /// Webhook delivery attempts by outcome.
    pub webhook_attempts: CounterFamily,
    /// Webhook attempt latency.
    pub webhook_duration: HistogramFamily,
    /// Event streams the server ended itself, by reason.
    pub event_stream_cuts: CounterFamily,
    /// GPU types each cloud lists that map onto no Shadeform model.
    unmapped_types: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl Metrics {
    const fn new() -> Self {
        Self {
            http_requests: CounterFamily::new(
                "parasol_http_requests_total",
                "HTTP requests answered, by method, route template and status.",
                &["method", "route", "status"],
            ),
            http_duration: HistogramFamily::new(
                "parasol_http_request_duration_seconds",
                "Time to answer an HTTP request, by method and route template.",
                &["method", "route"],
            ),
            provider_calls: CounterFamily::new(
                "parasol_provider_calls_total",
                "Provider calls made by the reconciler, by provider, operation and outcome (ok, capacity, transient, permanent, timeout).",
                &["provider", "operation", "outcome"],
            ),
            provider_duration: HistogramFamily::new(
                "parasol_provider_call_duration_seconds",
                "Time a provider call took, by provider and operation.",
                &["provider", "operation"],
            ),
            connections_refused: CounterFamily::new(
                "parasol_http_connections_refused_total",
                "Connections refused at accept because a cap was reached, by reason (total, per_address).",
                &["reason"],
            ),
            connections_timed_out: CounterFamily::new(
                "parasol_http_connections_timed_out_total",
                "Connections closed for sending a request head too slowly or idling too long.",
                &[],
            ),
            accept_errors: CounterFamily::new(
                "parasol_http_accept_errors_total",
                "Failed accepts (such as running out of file descriptors), each followed by a short backoff.",
                &[],
            ),
            rate_limited: CounterFamily::new(
                "parasol_http_rate_limited_total",
                "Requests answered 429 rate_limited, by the bucket that ran dry (key, address, failed_auth).",
                &["bucket"],
            ),
            webhook_attempts: CounterFamily::new(
                "parasol_webhook_attempts_total",
                "Webhook delivery attempts made by this replica, by outcome (delivered: 2xx; retry: failed, to be retried; given_up: failed for the last time).",
                &["outcome"],
            ),
            webhook_duration: HistogramFamily::new(
                "parasol_webhook_attempt_duration_seconds",
                "Time a webhook delivery attempt took, answer or timeout included.",
                &[],
            ),
            event_stream_cuts: CounterFamily::new(
                "parasol_event_stream_cuts_total",
                "Event streams (GET /v1/events/stream) the server ended with a resume event, by reason (slow_client: more than the buffer behind; shutdown; unavailable: the log could not be read).",
                &["reason"],
            ),
            unmapped_types: Mutex::new(BTreeMap::new()),
        }
    }

    /// Notes a GPU type of `cloud` that no Shadeform model fits; true the
    /// first time this process sees the pair.
    pub fn note_unmapped_type(&self, cloud: &str, cloud_type: &str) -> bool {
        self.unmapped_types
            .lock()
            .expect("poisoned")
            .entry(cloud.to_string())
            .or_default()
            .insert(cloud_type.to_string())
    }

    /// The GPU types of `cloud` noted as unmapped, in order.
    pub fn unmapped_types(&self, cloud: &str) -> Vec<String> {
        self.unmapped_types
            .lock()
            .expect("poisoned")
            .get(cloud)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Counts a connection refused at accept.
    pub fn count_refused_connection(&self, reason: &str) {
        self.connections_refused.inc(&[reason]);
    }

    /// Counts a connection closed by a timeout.
    pub fn count_timed_out_connection(&self) {
        self.connections_timed_out.inc(&[]);
    }

    /// Counts a failed accept.
    pub fn count_accept_error(&self) {
        self.accept_errors.inc(&[]);
    }

    /// Counts a request refused by a rate limit.
    pub fn count_rate_limited(&self, bucket: &str) {
        self.rate_limited.inc(&[bucket]);
    }

    /// Counts one answered request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut digits = [0u8; 5];
        let status = status_text(status, &mut digits);
        self.http_requests.inc(&[method, route, status]);
        self.http_duration.observe(&[method, route], took);
    }

    /// Counts one provider call.
    pub fn observe_provider_call(
        &self,
        provider: &str,
        operation: &str,
        outcome: &str,
        took: Duration,
    ) {
        self.provider_calls.inc(&[provider, operation, outcome]);
        self.provider_duration.observe(&[provider, operation], took);
    }

    /// Counts one webhook delivery attempt.
    pub fn observe_webhook_attempt(&self, outcome: &str, took: Duration) {
        self.webhook_attempts.inc(&[outcome]);
        self.webhook_duration.observe(&[], took);
    }

    /// Counts an event stream the server ended itself.
    pub fn count_event_stream_cut(&self, reason: &str) {
        self.event_stream_cuts.inc(&[reason]);
    }

    /// The families kept here, in the text format.
    pub fn render(&self, out: &mut String) {
        self.http_requests.render(out);
        self.http_duration.render(out);
        self.provider_calls.render(out);
        self.provider_duration.render(out);
        self.connections_refused.render(out);
        self.connections_timed_out.render(out);
        self.accept_errors.render(out);
        self.rate_limited.render(out);
        self.webhook_attempts.render(out);
        self.webhook_duration.render(out);
        self.event_stream_cuts.render(out);
        let unmapped = self.unmapped_types.lock().expect("poisoned");
        if !unmapped.is_empty() {
            header(
                out,
                "parasol_catalog_unmapped_types",
                "GPU types a cloud lists that map onto no Shadeform model and so are not offered (each logged once), by cloud.",
                "gauge",
            );
            for (cloud, types) in unmapped.iter() {
                sample(
                    out,
                    "parasol_catalog_unmapped_types",
                    &[("cloud", cloud)],
                    types.len(),
                );
            }
        }
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// The outcome label of a provider call: `None` when it timed out.
pub fn outcome<T>(res: Option<&Result<T, crate::providers::ProviderError>>) -> &'static str {
    use crate::providers::ProviderError;
    match res {
        None => "timeout",
        Some(Ok(_)) => "ok",
        Some(Err(ProviderError::Capacity(_))) => "capacity",
        Some(Err(ProviderError::Transient(_))) => "transient",
        Some(Err(ProviderError::Permanent(_))) => "permanent",
    }
}

/// `# HELP` and `# TYPE` lines of a family.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line of a gauge or counter computed at scrape time.
pub fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    let names: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
    let values: Vec<String> = labels.iter().map(|(_, v)| v.to_string()).collect();
    let _ = writeln!(out, "{name}{} {value}", label_set(&names, &values, None));
}

/// `{a="x",b="y"}` (with `le` last for histogram buckets), or nothing.
fn label_set(names: &[&str], values: &[String], le: Option<&str>) -> String {
    if names.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

/// `status` in decimal, written into `buf` (a label per request, with no
/// allocation).
fn status_text(status: u16, buf: &mut [u8; 5]) -> &str {
    let mut at = buf.len();
    let mut n = status;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).expect("ASCII digits")
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        let m = Metrics::new();
        m.observe_request("GET", "/v1/instances", 200, Duration::from_millis(3));
        m.observe_request("GET", "/v1/instances", 200, Duration::from_millis(30));
        m.observe_request("GET", "/v1/instances", 404, Duration::from_secs(20));
        assert_eq!(m.http_requests.get(&["GET", "/v1/instances", "200"]), 2);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("# TYPE parasol_http_requests_total counter\n"));
        assert!(out.contains(
            "parasol_http_requests_total{method=\"GET\",route=\"/v1/instances\",status=\"200\"} 2\n"
        ));
        let bucket = |le: &str| {
            format!("parasol_http_request_duration_seconds_bucket{{method=\"GET\",route=\"/v1/instances\",le=\"{le}\"}}")
        };
        // Buckets are cumulative: 3 ms and 30 ms are both under 50 ms;
        // the 20 s request only shows in +Inf.
        assert!(out.contains(&format!("{} 0\n", bucket("0.001"))));
        assert!(out.contains(&format!("{} 1\n", bucket("0.005"))));
        assert!(out.contains(&format!("{} 2\n", bucket("0.05"))));
        assert!(out.contains(&format!("{} 2\n", bucket("10"))));
        assert!(out.contains(&format!("{} 3\n", bucket("+Inf"))));
        assert!(out.contains(
            "parasol_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/instances\"} 3\n"
        ));
    }

    #[test]
    fn label_sets_are_counted_apart_and_render_in_vec_order() {
        let f = CounterFamily::new("c", "help", &["a", "b"]);
        let sets: [&[&str]; 6] = [
            &["b", ""],
            &["a", "zz"],
            &["a", "z"],
            &["ab", "a"],
            &["a", ""],
            &["a", "z"],
        ];
        for set in sets {
            f.inc(set);
        }
        assert_eq!(f.get(&["a", "z"]), 2);
        assert_eq!(f.get(&["a", "zz"]), 1);
        assert_eq!(f.get(&["a", "q"]), 0);
        let mut want: Vec<Vec<String>> = sets
            .iter()
            .map(|s| s.iter().map(|v| v.to_string()).collect())
            .collect();
        want.sort();
        want.dedup();
        let got: Vec<Vec<String>> = f
            .values
            .lock()
            .unwrap()
            .keys()
            .map(|k| k.0.clone())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn statuses_are_written_in_decimal() {
        for n in [0u16, 7, 42, 200, 404, 503, 65535] {
            let mut buf = [0u8; 5];
            assert_eq!(status_text(n, &mut buf), n.to_string());
        }
    }

    #[test]
    fn unmapped_gpu_types_are_counted_once_per_cloud() {
        let m = Metrics::new();
        assert!(m.note_unmapped_type("runpod", "NVIDIA RTX 2000 Ada Generation"));
        assert!(!m.note_unmapped_type("runpod", "NVIDIA RTX 2000 Ada Generation"));
        assert!(m.note_unmapped_type("runpod", "Tesla K80"));
        assert!(m.note_unmapped_type("vastai", "Tesla K80"));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("# TYPE parasol_catalog_unmapped_types gauge\n"));
        assert!(out.contains("parasol_catalog_unmapped_types{cloud=\"runpod\"} 2\n"));
        assert!(out.contains("parasol_catalog_unmapped_types{cloud=\"vastai\"} 1\n"));
        assert_eq!(m.unmapped_types("runpod").len(), 2);
        assert!(m.unmapped_types("lambdalabs").is_empty());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label_set(&["a"], &["x\"y\\z\nw".to_string()], None),
            "{a=\"x\\\"y\\\\z\\nw\"}"
        );
        let mut out = String::new();
        sample(&mut out, "g", &[], 3);
        assert_eq!(out, "g 3\n");
    }
}
