//! The layer every request passes first: the audit trail, the request log
//! and the per-address rate limit, in one hand-written service.
//!
//! These were three `from_fn` layers. Each boxed its own future, cloned the
//! boxed service inside it and went through `Next` on every request, the
//! cheapest reads included; here the three share one future and call the
//! route's service directly. The order is unchanged: the audit entry sees
//! the answer as logged (its `x-request-id`), and a request refused by the
//! per-address bucket is logged and audited like any other.
//!
//! The request's log line is written by [`write_line`], which produces the
//! very bytes `tracing_subscriber`'s formatter gives the same event
//! (operators and the tests read them) without its field visitors and
//! styling, a tenth of a small cached answer's cost.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use chrono::Datelike;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{audit, auth, rate_limit, request_id, AppRef, RequestId, REQUEST_ID};
use crate::config::LogFormat;
use crate::log_writer::LogWriter;

/// The log target of request lines (the module they were first logged
/// from; operators filter on it).
const TARGET: &str = "parasol::http";

/// The server's log writer, and the format request lines are written in
/// when they bypass `tracing`'s formatter.
static LOG: OnceLock<(LogWriter, Option<LogFormat>)> = OnceLock::new();

/// Tells the request layer the writer of the global `tracing` subscriber
/// and, where `format` is given, has request lines written straight to it in that
/// format, which must be the subscriber's (without colours): the lines are
/// the same bytes that subscriber would write. Without this call (tests)
/// request lines go through `tracing`.
pub fn log_to(writer: LogWriter, format: Option<LogFormat>) {
    let _ = LOG.set((writer, format));
}

/// The layer: audit, log and the per-address limit, or only the log
/// (the MCP route, which the rest of the API audits and limits per call).
#[derive(Clone)]
pub(crate) struct RequestLayer {
    app: Option<AppRef>,
}

impl RequestLayer {
    /// Audit, log and the per-address limit.
    pub(crate) fn full(app: AppRef) -> Self {
        Self { app: Some(app) }
    }

    /// The request log only.
    pub(crate) fn log_only() -> Self {
        Self { app: None }
    }
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            app: self.app.clone(),
        }
    }
}

/// [`RequestLayer`] around one route's service.
#[derive(Clone)]
pub(crate) struct RequestService<S> {
    inner: S,
    app: Option<AppRef>,
}

impl<S> Service<Request> for RequestService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let audit = self.app.as_ref().and_then(|_| audit::Pending::begin(&req));
        let start = Instant::now();
        let method = req.method().clone();
        // Shared, not copied.
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let uri = req.uri().clone();
        let id = request_id(&req);
        req.extensions_mut().insert(RequestId(id.clone()));
        let span = tracing::info_span!(target: TARGET, "request", request_id = %id);
        let limited = self.app.as_ref().and_then(|app| {
            let ip = rate_limit::client_ip(&req)?;
            app.limits.address(ip).err()
        });
        let answer = match limited {
            Some(limited) => Answer::Refused(limited.into_response()),
            None => Answer::Route(span.in_scope(|| self.inner.call(req))),
        };
        let app = self.app.clone();
        Box::pin(async move {
            let mut res = match answer {
                Answer::Refused(res) => res,
                Answer::Route(fut) => match fut.instrument(span).await {
                    Ok(res) => res,
                    Err(never) => match never {},
                },
            };
            let took = start.elapsed();
            let status = res.status().as_u16();
            let route = matched.as_ref().map_or("unmatched", |p| p.as_str());
            crate::metrics::global().observe_request(method.as_str(), route, status, took);
            let mut account_buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let account: &str = match res.extensions().get::<auth::Caller>() {
                Some(c) => c.0.hyphenated().encode_lower(&mut account_buf),
                None => "",
            };
            write_line(&Line {
                method: method.as_str(),
                route,
                path: uri.path(),
                status,
                latency_ms: took.as_secs_f64() * 1000.0,
                request_id: &id,
                account,
            });
            // The id was checked as a header value when it was read or made.
            if let Ok(v) = HeaderValue::try_from(id) {
                res.headers_mut().insert(REQUEST_ID, v);
            }
            match (audit, app) {
                (Some(audit), Some(app)) => Ok(audit.finish(&app, res).await),
                _ => Ok(res),
            }
        })
    }
}

/// What the request gets: the route's answer, or a refusal before it.
enum Answer<F> {
    Route(F),
    Refused(Response),
}

/// One request's log line, as its fields.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    method: &'a str,
    route: &'a str,
    path: &'a str,
    status: u16,
    latency_ms: f64,
    request_id: &'a str,
    account: &'a str,
}

thread_local! {
    /// Each worker formats its lines in one buffer, kept between requests.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Logs `line` at INFO under [`TARGET`]: straight to the log writer where
/// [`log_to`] named a format and no span is entered (a span would prefix
/// the line), through `tracing` otherwise. The filter (`PARASOL_LOG`)
/// applies either way.
fn write_line(line: &Line<'_>) {
    if let Some((writer, Some(format))) = LOG.get() {
        if !tracing::enabled!(kind: tracing::metadata::Kind::EVENT, target: TARGET, tracing::Level::INFO)
        {
            return;
        }
        let outside_spans = tracing::dispatcher::get_default(|d| d.current_span().id().is_none());
        if outside_spans {
            LINE.with_borrow_mut(|buf| {
                buf.clear();
                format_line(buf, *format, SystemTime::now(), line);
                writer.write_line(buf);
            });
            return;
        }
    }
    through_tracing(line);
}

/// Logs `line` as the `tracing` event it always was.
fn through_tracing(line: &Line<'_>) {
    tracing::info!(
        target: TARGET,
        method = %line.method,
        route = line.route,
        path = line.path,
        status = line.status,
        latency_ms = line.latency_ms,
        request_id = line.request_id,
        account = line.account,
        "request"
    );
}

/// `line` as `tracing_subscriber`'s formatter writes the event of
/// [`through_tracing`] outside any span: the full text format without
/// colours, or JSON.
fn format_line(buf: &mut Vec<u8>, format: LogFormat, now: SystemTime, line: &Line<'_>) {
    // Writing into a Vec cannot fail.
    match format {
        LogFormat::Text => {
            write_timestamp(buf, now);
            let _ = writeln!(
                buf,
                "  INFO {TARGET}: request method={} route={:?} path={:?} status={} \
                 latency_ms={:?} request_id={:?} account={:?}",
                line.method,
                line.route,
                line.path,
                line.status,
                line.latency_ms,
                line.request_id,
                line.account,
            );
        }
        LogFormat::Json => {
            buf.extend_from_slice(b"{\"timestamp\":\"");
            write_timestamp(buf, now);
            buf.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\"");
            for (name, value) in [
                ("method", line.method),
                ("route", line.route),
                ("path", line.path),
            ] {
                json_field(buf, name, value);
            }
            let _ = write!(buf, ",\"status\":{},\"latency_ms\":", line.status);
            let _ = serde_json::to_writer(&mut *buf, &line.latency_ms);
            json_field(buf, "request_id", line.request_id);
            json_field(buf, "account", line.account);
            let _ = writeln!(buf, "}},\"target\":\"{TARGET}\"}}");
        }
    }
}

fn json_field(buf: &mut Vec<u8>, name: &str, value: &str) {
    let _ = write!(buf, ",\"{name}\":");
    let _ = serde_json::to_writer(&mut *buf, value);
}

/// `now` in UTC as `tracing_subscriber`'s default timer writes it:
/// `2026-12-08T02:07:48.509071Z`.
fn write_timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    // A clock before 1970 is written as 1970 (the subscriber would write
    // the negative time; no server runs there).
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    // 1970-01-01 is day 719,163 of the common era.
    let date = i32::try_from(secs / 86_400)
        .ok()
        .and_then(|d| chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163))
        .unwrap_or_default();
    let of_day = secs % 86_400;
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        date.year(),
        date.month(),
        date.day(),
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_micros()
    );
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// Lines a `tracing_subscriber` formatter writes, as the server sets
    /// it up (main.rs) without colours.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn formatted_by_tracing(format: LogFormat, line: &Line<'_>) -> String {
        let out = Captured::default();
        let out2 = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || out2.clone())
            .with_ansi(false);
        let emit = || super::through_tracing(line);
        match format {
            LogFormat::Text => tracing::subscriber::with_default(builder.finish(), emit),
            LogFormat::Json => tracing::subscriber::with_default(builder.json().finish(), emit),
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn ours(format: LogFormat, line: &Line<'_>) -> String {
        let mut buf = Vec::new();
        format_line(&mut buf, format, SystemTime::now(), line);
        String::from_utf8(buf).unwrap()
    }

    /// The line less its timestamp, which differs between two calls.
    fn untimed(line: &str) -> String {
        let at = line.find(|c: char| c.is_ascii_digit()).unwrap();
        format!("{}{}", &line[..at], &line[at + 27..])
    }

    #[test]
    fn lines_are_the_bytes_tracing_writes() {
        let lines = [
            Line {
                method: "GET",
                route: "/v1/instances/types",
                path: "/v1/instances/types",
                status: 200,
                latency_ms: 0.005117,
                request_id: "7d84df00-143e-403a-bcd8-50d73df004fc",
                account: "4deee8d3-c0e2-4cbc-a307-1d6abd003cc4",
            },
            // Quotes, escapes and odd bytes in the path; a latency Debug
            // writes with an exponent; no account.
            Line {
                method: "POST",
                route: "unmatched",
                path: "/nope/%22q\"x\\y\u{7f}\u{e9}",
                status: 404,
                latency_ms: 0.000_012_5,
                request_id: "trace-abc:1.2_3",
                account: "",
            },
            Line {
                method: "DELETE",
                route: "/v1/instances/{id}/delete",
                path: "/v1/instances/abc/delete",
                status: 503,
                latency_ms: 4.578_343_999_999_999_5,
                request_id: "x",
                account: "",
            },
            Line {
                method: "GET",
                route: "/v1/instances",
                path: "/v1/instances",
                status: 200,
                latency_ms: 12_345.0,
                request_id: "y",
                account: "",
            },
        ];
        for format in [LogFormat::Text, LogFormat::Json] {
            for line in &lines {
                let want = formatted_by_tracing(format, line);
                let got = ours(format, line);
                assert_eq!(untimed(&got), untimed(&want), "{format:?}");
                assert_eq!(got.len(), want.len(), "{format:?}: {got} / {want}");
            }
        }
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        for (secs, micros) in [
            (0u64, 0u32),
            (951_782_400, 1),           // 2000-02-29
            (1_796_696_868, 509_071),   // 2026-12-08
            (4_107_542_399, 999_999),   // 2100-02-28 23:59:59
            (253_402_300_799, 123_456), // 9999-12-31 23:59:59
        ] {
            let at = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into());
            let mut buf = Vec::new();
            write_timestamp(&mut buf, at);
            let want = chrono::DateTime::<chrono::Utc>::from(at)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(String::from_utf8(buf).unwrap(), want);
        }
    }
}
