//! The live event stream (issue 27): `GET /v1/events/stream` read as raw
//! server-sent events over real connections, and `parasol events --follow`.
//!
//! Bulk events are recorded straight into the server's store from the
//! test process, as another replica would: the stream must find them in
//! the log, since no write of its own process told it of them.

use std::collections::{HashSet, VecDeque};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::harness::{binary, Client, Opts, Server, ADMIN_KEY};

/// One block of a stream (the lines up to a blank line).
#[derive(Debug, Clone, Default)]
struct Block {
    id: Option<String>,
    event: Option<String>,
    data: String,
    retry: Option<String>,
    comment: Option<String>,
}

impl Block {
    fn parse(text: &str) -> Block {
        let mut b = Block::default();
        for line in text.lines() {
            if let Some(c) = line.strip_prefix(':') {
                b.comment = Some(c.to_string());
                continue;
            }
            let (k, v) = line.split_once(':').unwrap_or((line, ""));
            let v = v.strip_prefix(' ').unwrap_or(v).to_string();
            match k {
                "id" => b.id = Some(v),
                "event" => b.event = Some(v),
                "retry" => b.retry = Some(v),
                "data" => b.data.push_str(&v),
                other => panic!("unexpected field {other:?} in {text:?}"),
            }
        }
        b
    }

    fn body(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }

    fn seq(&self) -> i64 {
        self.id.as_deref().unwrap().parse().unwrap()
    }
}

/// A stream read over reqwest.
struct Stream {
    res: reqwest::Response,
    text: String,
    eof: bool,
}

impl Stream {
    async fn open(s: &Server, key: &str, query: &str, last: Option<i64>) -> Stream {
        let mut req = reqwest::Client::new()
            .get(format!("{}/v1/events/stream{query}", s.base))
            .header("X-API-KEY", key);
        if let Some(l) = last {
            req = req.header("Last-Event-ID", l.to_string());
        }
        Stream::of(req).await
    }

    /// A stream from `req`, once its first block (the `retry:`) is read.
    async fn of(req: reqwest::RequestBuilder) -> Stream {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut st = Stream {
            res,
            text: String::new(),
            eof: false,
        };
        let first = st.block(Duration::from_secs(10)).await.unwrap();
        assert_eq!(first.retry.as_deref(), Some("3000"), "{first:?}");
        st
    }

    /// The next block; `None` at the end of the stream.
    async fn block(&mut self, within: Duration) -> Option<Block> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.text.find("\n\n") {
                let b = self.text[..i].to_string();
                self.text.drain(..i + 2);
                return Some(Block::parse(&b));
            }
            if self.eof {
                assert!(self.text.is_empty(), "a cut-short event: {:?}", self.text);
                return None;
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .unwrap_or_else(|_| panic!("nothing in {within:?}; so far {:?}", self.text));
            match chunk {
                Ok(Some(c)) => self.text.push_str(std::str::from_utf8(&c).unwrap()),
                Ok(None) | Err(_) => self.eof = true,
            }
        }
    }

    /// The next event (not a heartbeat).
    async fn event(&mut self) -> Option<Block> {
        loop {
            let b = self.block(Duration::from_secs(30)).await?;
            if b.id.is_some() {
                return Some(b);
            }
        }
    }

    /// Events until (and with) the first that `last` holds of.
    async fn until(&mut self, last: impl Fn(&Block) -> bool) -> Vec<Block> {
        let mut out = Vec::new();
        loop {
            let b = self.event().await.expect("the stream ended early");
            let done = last(&b);
            out.push(b);
            if done {
                return out;
            }
        }
    }
}

/// The ids (body `id`) of an account's events of webhook types, in log
/// order, as the store has them.
async fn log_of(s: &Server, account: Option<Uuid>) -> Vec<(i64, String)> {
    let store = s.store().await;
    let all = store.events_after(0, account, 100_000).await.unwrap();
    store.pool().close().await;
    all.into_iter()
        .filter(|e| parasol::webhooks::event_type(&e.kind).is_some())
        .map(|e| (e.seq, e.id.to_string()))
        .collect()
}

fn ids(blocks: &[Block]) -> Vec<(i64, String)> {
    blocks
        .iter()
        .map(|b| (b.seq(), b.body()["id"].as_str().unwrap().to_string()))
        .collect()
}

async fn account_id(c: &Client) -> Uuid {
    c.get("/v1/account").await.expect(200)["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Records `n` alert events for `account` straight into the store, `per`
/// at a time every `every`, each with its number in `data.n` (and `pad`
/// bytes of padding, as big as an instance's event when asked).
async fn record_alerts(
    s: &Server,
    account: Uuid,
    tag: &str,
    n: usize,
    per: usize,
    every: Duration,
    pad: usize,
) {
    let padding = "x".repeat(pad);
    let padding = &padding;
    let store = s.store().await;
    let mut done = 0;
    while done < n {
        let store = &store;
        let batch = (done..(done + per).min(n)).map(|i| async move {
            store
                .record_event_with(
                    account,
                    None,
                    "alert.spend_threshold",
                    &format!("{tag} {i}"),
                    json!({ "tag": tag, "n": i, "pad": padding }),
                    chrono::Utc::now().timestamp_millis(),
                )
                .await
        });
        for r in futures::future::join_all(batch).await {
            r.unwrap();
        }
        done = (done + per).min(n);
        tokio::time::sleep(every).await;
    }
    store.pool().close().await;
}

fn is_alert(tag: &str, n: usize) -> impl Fn(&Block) -> bool + '_ {
    move |b| b.body()["data"]["tag"] == tag && b.body()["data"]["n"] == n
}

fn is_active(instance: &str) -> impl Fn(&Block) -> bool + '_ {
    move |b| b.event.as_deref() == Some("instance.active") && b.body()["data"]["id"] == instance
}

#[tokio::test]
async fn resuming_with_last_event_id_after_a_dropped_connection_loses_nothing() {
    let s = Server::start(Opts::default());
    let a = s.client(&s.new_account("alpha"));
    let account = account_id(&a).await;

    let mut first = Stream::open(&s, a.key.as_deref().unwrap(), "", None).await;
    let one = a.create_instance("one").await;
    let got = first.until(is_active(&one)).await;
    let last = got.last().unwrap().seq();
    // The connection goes; what happens meanwhile is in the log only
    // (more than one page of it: the replay reads 500 at a time).
    drop(first);
    let two = a.create_instance("two").await;
    a.wait_status(&two, "active").await;
    record_alerts(&s, account, "gap", 1200, 400, Duration::ZERO, 0).await;

    let mut second = Stream::open(&s, a.key.as_deref().unwrap(), "", Some(last)).await;
    let mut rest = second.until(is_alert("gap", 1199)).await;
    // And it is live again after the replay.
    let three = a.create_instance("three").await;
    rest.extend(second.until(is_active(&three)).await);

    // The parameter, for clients that cannot set the header, does the same.
    let query = format!("?last_event_id={last}");
    let mut by_query = Stream::open(&s, a.key.as_deref().unwrap(), &query, None).await;
    assert_eq!(ids(&[by_query.event().await.unwrap()]), ids(&rest[..1]));

    let mut all = ids(&got);
    all.extend(ids(&rest));
    let log = log_of(&s, Some(account)).await;
    assert_eq!(all.len(), log.len(), "every event once");
    assert_eq!(all, log, "every event of the log, in its order, once");
    assert!(rest.iter().all(|b| b.seq() > last));
    let types: HashSet<_> = got.iter().map(|b| b.event.clone().unwrap()).collect();
    for t in [
        "instance.created",
        "instance.status_changed",
        "instance.active",
    ] {
        assert!(types.contains(t), "{t}: {types:?}");
    }
    // The body is the webhook body.
    let body = got[0].body();
    assert_eq!(body["account_id"], account.to_string());
    assert_eq!(body["type"], got[0].event.clone().unwrap());
    assert!(body["created_at"].is_string() && body["data"]["id"] == one);
}

#[tokio::test]
async fn the_types_filter_narrows_and_no_other_accounts_events_appear() {
    let s = Server::start(Opts::default());
    let a = s.client(&s.new_account("alpha"));
    let b = s.client(&s.new_account("beta"));
    let (ida, idb) = (account_id(&a).await, account_id(&b).await);
    let key_a = a.key.clone().unwrap();

    let bad = a.get("/v1/events/stream?types=instance.activ").await;
    assert_eq!(bad.expect_error(400, "invalid_request")["field"], "types");
    let bad = a.get("/v1/events/stream?type=instance.active").await;
    assert_eq!(bad.expect_error(400, "invalid_request")["field"], "type");
    let bad = reqwest::Client::new()
        .get(format!("{}/v1/events/stream", s.base))
        .header("X-API-KEY", &key_a)
        .header("Last-Event-ID", "-3")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["field"], "Last-Event-ID");

    let mut active_only = Stream::open(&s, &key_a, "?types=instance.active", None).await;
    let mut instances = Stream::open(&s, &key_a, "?types=instance.*,budget.alert", None).await;
    let mut all_a = Stream::open(&s, &key_a, "", None).await;
    let mut all_b = Stream::open(&s, b.key.as_deref().unwrap(), "", None).await;
    let mut admin = Stream::open(&s, ADMIN_KEY, "", None).await;

    let b1 = b.create_instance("b-one").await;
    b.wait_status(&b1, "active").await;
    record_alerts(&s, idb, "b", 3, 3, Duration::ZERO, 0).await;
    let a1 = a.create_instance("a-one").await;
    a.wait_status(&a1, "active").await;
    record_alerts(&s, ida, "a", 3, 3, Duration::ZERO, 0).await;
    // The last event of all, for each stream to read up to.
    let a2 = a.create_instance("a-two").await;

    let got = active_only.until(is_active(&a2)).await;
    assert_eq!(
        got.iter()
            .map(|b| b.body()["data"]["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        [a1.clone(), a2.clone()],
        "only alpha's instance.active events"
    );
    assert!(got
        .iter()
        .all(|b| b.event.as_deref() == Some("instance.active")));

    let got = instances.until(is_active(&a2)).await;
    assert!(got
        .iter()
        .all(|b| b.event.as_deref().unwrap().starts_with("instance.")));
    assert!(got
        .iter()
        .all(|b| b.body()["account_id"] == ida.to_string()));

    let got = all_a.until(is_active(&a2)).await;
    assert!(
        got.iter()
            .all(|b| b.body()["account_id"] == ida.to_string()),
        "another account's event reached alpha's stream"
    );
    assert_eq!(
        got.iter()
            .filter(|b| b.event.as_deref() == Some("alert"))
            .count(),
        3
    );
    let log_a: Vec<_> = log_of(&s, Some(ida)).await;
    assert_eq!(ids(&got), log_a);

    let got = all_b.until(is_alert("b", 2)).await;
    assert!(got
        .iter()
        .all(|b| b.body()["account_id"] == idb.to_string()));
    // Nothing of alpha's follows beta's last event in beta's stream.
    let c = b.create_instance("b-two").await;
    let tail = all_b.until(is_active(&c)).await;
    assert!(tail
        .iter()
        .all(|b| b.body()["account_id"] == idb.to_string()));

    // An admin key sees every account's.
    let got = admin.until(is_active(&a2)).await;
    let accounts: HashSet<_> = got
        .iter()
        .map(|b| b.body()["account_id"].as_str().unwrap().to_string())
        .collect();
    assert!(accounts.contains(&ida.to_string()) && accounts.contains(&idb.to_string()));
}

/// Signs in to the console with `key`, as a browser would; the session
/// cookie (`name=value`).
async fn console_cookie(s: &Server, key: &str) -> String {
    let res = no_redirects()
        .post(format!("{}/login", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("api_key", key)]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let set = res.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_consoles_stream_needs_a_session_and_carries_only_the_accounts_events() {
    let s = Server::start(Opts::default());
    let a = s.client(&s.new_account("alpha"));
    let b = s.client(&s.new_account("beta"));
    let (ida, idb) = (account_id(&a).await, account_id(&b).await);
    let idadmin = account_id(&s.client(ADMIN_KEY)).await;
    let url = format!("{}/events/stream", s.base);

    // Without a session it is the sign-in page, never a stream; an API key
    // is no session, and a forged cookie neither.
    for (name, value) in [
        ("x-other", "none"),
        ("X-API-KEY", a.key.as_deref().unwrap()),
        ("cookie", "parasol_session=forged.value"),
    ] {
        let res = no_redirects()
            .get(&url)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "with {name}");
        assert_eq!(res.headers()["location"], "/login", "with {name}");
    }

    let cookie_a = console_cookie(&s, a.key.as_deref().unwrap()).await;
    // The API's rules for its parameters hold here too.
    let bad = no_redirects()
        .get(format!("{url}?types=nonsense"))
        .header("cookie", &cookie_a)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["field"], "types");

    let mut st_a = Stream::of(no_redirects().get(&url).header("cookie", &cookie_a)).await;
    let cookie_admin = console_cookie(&s, ADMIN_KEY).await;
    let mut st_admin = Stream::of(no_redirects().get(&url).header("cookie", &cookie_admin)).await;

    record_alerts(&s, idb, "b", 2, 2, Duration::ZERO, 0).await;
    record_alerts(&s, ida, "a", 2, 2, Duration::ZERO, 0).await;
    let a1 = a.create_instance("a-one").await;
    record_alerts(&s, idadmin, "admin", 1, 1, Duration::ZERO, 0).await;

    let got = st_a.until(is_active(&a1)).await;
    assert!(
        got.iter()
            .all(|b| b.body()["account_id"] == ida.to_string()),
        "another account's event reached alpha's console stream: {got:?}"
    );
    assert_eq!(ids(&got), log_of(&s, Some(ida)).await);

    // An admin's console follows its own account, not every account (the
    // API's admin stream does): its pages show its own things.
    let got = st_admin.until(is_alert("admin", 0)).await;
    assert_eq!(ids(&got), log_of(&s, Some(idadmin)).await);
    assert!(got
        .iter()
        .all(|b| b.body()["account_id"] == idadmin.to_string()));
}

/// Opens a stream on a socket with a small receive buffer and reads only
/// the response head, so that the server soon has nowhere to put events.
async fn stalled_stream(s: &Server, key: &str) -> tokio::net::TcpStream {
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut tcp = sock.connect(addr).await.unwrap();
    let req = format!(
        "GET /v1/events/stream HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {key}\r\naccept: text/event-stream\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp
}

/// The text of a chunked body that may be cut anywhere: the chunk sizes
/// are left in, which no check here looks for.
fn unchunk_lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Decodes a chunked body into text.
fn unchunk(raw: &[u8]) -> String {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_with_where_to_resume() {
    let s = Server::start(Opts::default());
    let a = s.client(&s.new_account("alpha"));
    let account = account_id(&a).await;
    let key = a.key.clone().unwrap();

    let mut stalled = stalled_stream(&s, &key).await;
    // A client that keeps up, reading all along.
    let mut keeping_up = Stream::open(&s, &key, "", None).await;
    let reader = tokio::spawn(async move { keeping_up.until(is_alert("burst", 5999)).await });
    // Far more than the 1,024 events a stream may fall behind plus what
    // the socket buffers hold (4 MiB at most here), at a pace any reading
    // client keeps up with.
    record_alerts(
        &s,
        account,
        "burst",
        6000,
        100,
        Duration::from_millis(40),
        2000,
    )
    .await;
    let kept = reader.await.unwrap();
    let log = log_of(&s, Some(account)).await;
    assert_eq!(
        ids(&kept),
        log,
        "the client that reads was not held up or cut"
    );

    // The stalled client now reads what reached it: a run of events from
    // the start, then the resume event, then the end of the response.
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut raw))
        .await
        .expect("the server kept the stalled stream open")
        .unwrap();
    let text = unchunk(&raw);
    assert!(
        raw.ends_with(b"0\r\n\r\n"),
        "the response was ended, not dropped"
    );
    let blocks: Vec<Block> = text
        .split("\n\n")
        .filter(|b| !b.is_empty())
        .map(Block::parse)
        .filter(|b| b.id.is_some())
        .collect();
    let (last, events) = blocks.split_last().unwrap();
    assert_eq!(last.event.as_deref(), Some("resume"), "{last:?}");
    let resume = last.body();
    assert_eq!(resume["reason"], "slow_client");
    assert!(events.len() < 6000, "{} events reached it", events.len());
    assert_eq!(
        ids(events),
        log[..events.len()],
        "what reached it has no gap"
    );
    assert_eq!(resume["last_event_id"], last.id.clone().unwrap());
    let from: i64 = last.seq();
    assert!(from >= events.last().map_or(0, Block::seq));

    // Resuming from there loses nothing.
    let mut again = Stream::open(&s, &key, "", Some(from)).await;
    let rest = again.until(is_alert("burst", 5999)).await;
    let mut all = ids(events);
    all.extend(ids(&rest));
    assert_eq!(all, log);

    let metrics = crate::metrics::scrape(&s).await;
    assert!(
        metrics.contains("parasol_event_stream_cuts_total{reason=\"slow_client\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn heartbeats_come_every_15_s_and_the_idle_timeout_leaves_a_stream_open() {
    // An idle timeout far shorter than the heartbeat: it applies to
    // connections between requests, not to a response still going out.
    let s = Server::start(Opts::default().args(&["--idle-timeout-ms", "1000"]));
    let a = s.client(&s.new_account("alpha"));
    let mut st = Stream::open(&s, a.key.as_deref().unwrap(), "", None).await;
    let opened = Instant::now();
    let beat = st
        .block(Duration::from_secs(20))
        .await
        .expect("the stream was closed while idle");
    let after = opened.elapsed();
    assert_eq!(
        beat.comment.as_deref().map(str::trim),
        Some("heartbeat"),
        "{beat:?}"
    );
    assert!(beat.id.is_none() && beat.data.is_empty());
    assert!(
        after >= Duration::from_secs(14) && after < Duration::from_secs(18),
        "the heartbeat came after {after:?}"
    );
    let one = a.create_instance("one").await;
    st.until(is_active(&one)).await;
}

#[tokio::test]
async fn a_shutdown_ends_open_streams_with_where_to_resume() {
    let mut s = Server::start(Opts::default());
    let a = s.client(&s.new_account("alpha"));
    let mut st = Stream::open(&s, a.key.as_deref().unwrap(), "", None).await;
    let one = a.create_instance("one").await;
    let got = st.until(is_active(&one)).await;
    let started = Instant::now();
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?} for the stream",
        started.elapsed()
    );
    let last = st.event().await.expect("no final event");
    assert_eq!(last.event.as_deref(), Some("resume"));
    assert_eq!(last.body()["reason"], "shutdown");
    assert_eq!(last.seq(), got.last().unwrap().seq());
    assert!(st.event().await.is_none(), "the stream ends after it");
}

/// A TCP relay in front of the server whose connections the test can cut.
struct Relay {
    addr: std::net::SocketAddr,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: &str) -> Relay {
        let to: std::net::SocketAddr = to.trim_start_matches("http://").parse().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Default::default();
        let list = conns.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                            .await
                            .ok();
                    }
                });
                list.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay {
            addr,
            conns,
            accept,
        }
    }

    /// Drops every connection open through it.
    fn cut(&self) -> usize {
        let conns: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        for c in &conns {
            c.abort();
        }
        conns.len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The next line the CLI prints, as JSON.
async fn next_json(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the CLI printed nothing for 30 s")
        .unwrap()
        .expect("the CLI exited");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[tokio::test]
async fn the_cli_follows_events_and_resumes_after_a_dropped_connection() {
    let s = Server::start(Opts::default());
    let key = s.new_account("alpha");
    let a = s.client(&key);
    let account = account_id(&a).await;
    let relay = Relay::start(&s.base).await;
    let home = tempfile::tempdir().unwrap();
    let mut cli = tokio::process::Command::new(binary())
        .args(["events", "--follow", "-o", "json"])
        .env_clear()
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("PARASOL_URL", format!("http://{}", relay.addr))
        .env("PARASOL_API_KEY", &key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(cli.stdout.take().unwrap()).lines();
    let mut printed: VecDeque<Value> = VecDeque::new();

    // The CLI is connected once the relay carries its connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.conns.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the CLI never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let one = a.create_instance("one").await;
    loop {
        let v = next_json(&mut lines).await;
        let done = v["type"] == "instance.active" && v["data"]["id"] == one;
        printed.push_back(v);
        if done {
            break;
        }
    }
    assert_eq!(relay.cut(), 1, "one connection, cut");
    // Events while it is away, which it must fetch when it resumes.
    let two = a.create_instance("two").await;
    a.wait_status(&two, "active").await;
    record_alerts(&s, account, "away", 5, 5, Duration::ZERO, 0).await;
    let three = a.create_instance("three").await;
    loop {
        let v = next_json(&mut lines).await;
        let done = v["type"] == "instance.active" && v["data"]["id"] == three;
        printed.push_back(v);
        if done {
            break;
        }
    }
    let got: Vec<String> = printed
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    let log: Vec<String> = log_of(&s, Some(account))
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        got, log,
        "every event printed once, in order, across the cut"
    );
    cli.kill().await.ok();
    let mut err = String::new();
    cli.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(err.contains("resuming"), "{err}");

    // Without --follow: the list.
    let out = Command::new(binary())
        .args(["events", "-o", "json"])
        .env_clear()
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("PARASOL_URL", &s.base)
        .env("PARASOL_API_KEY", &key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed["events"].as_array().unwrap().len() >= log.len());
}

#[tokio::test]
async fn a_client_that_reads_nothing_at_all_is_disconnected_after_the_idle_timeout() {
    let s = Server::start(Opts::default().args(&["--idle-timeout-ms", "2000"]));
    let a = s.client(&s.new_account("alpha"));
    let account = account_id(&a).await;
    let mut stalled = stalled_stream(&s, a.key.as_deref().unwrap()).await;
    // Enough to fill its socket buffers (4 MiB at most here), so that the
    // server's writes block; fewer events than a stream may fall behind,
    // so that the stream itself never ends.
    record_alerts(
        &s,
        account,
        "fill",
        600,
        100,
        Duration::from_millis(20),
        10_000,
    )
    .await;
    // Still reading nothing, past the idle timeout of blocked writes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // What the kernel held still arrives, then the end of the connection.
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut raw))
        .await
        .expect("the connection is still open")
        .ok();
    // Had the connection been open still, reading would have let the
    // server go on: the rest of its buffer, a resume event and the end of
    // the response. It was closed while blocked instead.
    let text = unchunk_lossy(&raw);
    assert!(text.contains("\"fill\""), "no event reached it");
    assert!(
        !text.contains("event: resume"),
        "it was not closed while blocked"
    );
    assert!(!raw.ends_with(b"0\r\n\r\n"), "it was dropped, not ended");
}

#[tokio::test]
async fn a_stream_on_one_replica_carries_the_events_written_by_another_in_log_order() {
    let (url, _name) = crate::harness::fresh_pg_database();
    let opts = || {
        Opts {
            database_url: Some(url.clone()),
            ..Opts::default()
        }
        .args(crate::harness::UNLIMITED)
    };
    let first = Server::start(opts());
    let second = Server::start(opts());
    let mut on_first = Stream::open(&first, ADMIN_KEY, "", None).await;
    let mut on_second = Stream::open(&second, ADMIN_KEY, "", None).await;
    let (c1, c2) = (first.admin(), second.admin());
    // Both replicas write at once, so their events interleave in the log.
    let (mut ids1, mut ids2) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let (n1, n2) = (format!("one-{i}"), format!("two-{i}"));
        let (x, y) = tokio::join!(c1.create_instance(&n1), c2.create_instance(&n2));
        ids1.push(x);
        ids2.push(y);
    }
    let last = c1.create_instance("last").await;
    let a = on_first.until(is_active(&last)).await;
    let b = on_second.until(is_active(&last)).await;
    let created = |got: &[Block]| -> HashSet<String> {
        got.iter()
            .filter(|b| b.event.as_deref() == Some("instance.created"))
            .map(|b| b.body()["data"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    for id in ids1.iter().chain(&ids2) {
        assert!(created(&a).contains(id) && created(&b).contains(id), "{id}");
    }
    // Each saw the whole log up to there, in its order, once.
    let log = log_of(&first, None).await;
    assert_eq!(ids(&a), log[..a.len()]);
    assert_eq!(ids(&a), ids(&b));
}
