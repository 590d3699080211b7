//! `parasol events`: the account's events, listed, or followed live from
//! `GET /v1/events/stream`, resuming with `Last-Event-ID` whenever the
//! connection drops or the server ends the stream.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::client::{Api, CliError, StreamError};
use super::output::{print_raw, Format, Table};

/// `parasol events` options.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Keep printing events as they happen, reconnecting (and resuming
    /// where it stopped) when the connection drops, until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// With --follow: only these event types or patterns (`instance.*`,
    /// `budget.alert`); repeat or separate with commas.
    #[arg(
        long = "types",
        short = 't',
        value_delimiter = ',',
        requires = "follow"
    )]
    pub types: Vec<String>,
    /// With --follow: start after this event id (the `id` of a streamed
    /// event) instead of at the newest event.
    #[arg(long, requires = "follow")]
    pub after: Option<String>,
}

/// Runs `parasol events`.
pub async fn run(api: &Api, format: Format, args: EventsArgs) -> Result<ExitCode, CliError> {
    if args.follow {
        return follow(api, format, &args).await;
    }
    let answer = api.get("/events").await?;
    if format == Format::Json {
        print_raw(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let list: Value = answer.parse()?;
    let mut t = Table::new(&["CREATED", "KIND", "INSTANCE", "MESSAGE"]);
    for e in list["events"].as_array().into_iter().flatten() {
        t.row(vec![
            text(&e["created_at"]).into(),
            text(&e["kind"]).into(),
            text(&e["instance_id"]).into(),
            text(&e["message"]).into(),
        ]);
    }
    t.print("No events.");
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// Longest wait between attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

async fn follow(api: &Api, format: Format, args: &EventsArgs) -> Result<ExitCode, CliError> {
    let mut query = Vec::new();
    if !args.types.is_empty() {
        query.push(("types", args.types.join(",")));
    }
    let mut last = args.after.clone();
    // The server's `retry:` hint replaces it once one arrives.
    let mut retry = Duration::from_secs(3);
    let mut failures: u32 = 0;
    loop {
        match api
            .open_stream("/events/stream", &query, last.as_deref())
            .await
        {
            Ok(mut res) => {
                failures = 0;
                let mut parser = Parser::default();
                loop {
                    match res.chunk().await {
                        Ok(Some(bytes)) => {
                            for ev in parser.push(&bytes) {
                                if let Some(ms) = ev.retry {
                                    retry = Duration::from_millis(ms);
                                }
                                if let Some(id) = &ev.id {
                                    last = Some(id.clone());
                                }
                                show(format, &ev);
                            }
                        }
                        Ok(None) => {
                            eprintln!("parasol: the event stream ended; resuming");
                            break;
                        }
                        Err(e) => {
                            eprintln!(
                                "parasol: the event stream dropped ({}); resuming",
                                api.transport_error(&e)
                            );
                            break;
                        }
                    }
                }
            }
            Err(StreamError::Fatal(e)) => return Err(e),
            Err(StreamError::Transient(e)) => {
                failures += 1;
                eprintln!("parasol: {e}; retrying");
            }
        }
        // Back off while the server stays unreachable.
        let wait = retry
            .saturating_mul(1 << failures.min(4))
            .min(MAX_BACKOFF.max(retry));
        tokio::time::sleep(wait).await;
    }
}

fn show(format: Format, ev: &SseEvent) {
    if ev.data.is_empty() {
        return;
    }
    if ev.kind.as_deref() == Some("resume") {
        let v: Value = serde_json::from_str(&ev.data).unwrap_or_default();
        eprintln!(
            "parasol: the server ended the stream ({}); resuming after event {}",
            text(&v["reason"]),
            ev.id.as_deref().unwrap_or("-")
        );
        return;
    }
    if format == Format::Json {
        println!("{}", ev.data);
        return;
    }
    let v: Value = serde_json::from_str(&ev.data).unwrap_or_default();
    let data = &v["data"];
    let what = ["name", "message", "id"]
        .iter()
        .map(|k| &data[*k])
        .find(|x| x.is_string())
        .map(text)
        .unwrap_or_default();
    let change = match (data["from"].as_str(), data["to"].as_str()) {
        (Some(f), Some(t)) => format!(" ({f} -> {t})"),
        _ => String::new(),
    };
    println!(
        "{}  {:<24} {what}{change}",
        text(&v["created_at"]),
        text(&v["type"])
    );
}

/// One server-sent event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

/// Splits a server-sent event stream into events, across chunk borders.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    event: SseEvent,
    has_data: bool,
    fields: bool,
}

impl Parser {
    /// Feeds a chunk; answers the events it completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.fields {
                    out.push(std::mem::take(&mut self.event));
                }
                self.has_data = false;
                self.fields = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (name, value) = match line.split_once(':') {
                Some((n, v)) => (n.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
                None => (line, String::new()),
            };
            self.fields = true;
            match name.as_str() {
                "id" => self.event.id = Some(value),
                "event" => self.event.kind = Some(value),
                "retry" => self.event.retry = value.parse().ok(),
                "data" => {
                    if self.has_data {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(&value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_across_chunks_and_comments_skipped() {
        let mut p = Parser::default();
        assert!(p.push(b"retry: 3000\n").is_empty());
        let first = p.push(b"\n:heartbeat\n\nid: 7\nevent: instance.active\ndata: {\"a\"");
        assert_eq!(
            first,
            vec![SseEvent {
                retry: Some(3000),
                ..Default::default()
            }]
        );
        let second = p.push(b":1}\r\ndata: x\r\n\r\n");
        assert_eq!(
            second,
            vec![SseEvent {
                id: Some("7".into()),
                kind: Some("instance.active".into()),
                data: "{\"a\":1}\nx".into(),
                retry: None,
            }]
        );
    }
}
