//! Connection hygiene: slow and idle clients are cut off, and one client
//! address cannot take every connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{metric, Opts, Server};

/// Generous bound on waiting for the server to act; reaching it fails the
/// test (the server did not close), it is not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(20);

fn addr(s: &Server) -> SocketAddr {
    s.base.strip_prefix("http://").unwrap().parse().unwrap()
}

/// A connection from `source` (any 127.0.0.0/8 address is the loopback, so
/// tests can play several clients).
async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buf))
        .await
        .expect("the server kept the connection open")
        .ok();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn a_partial_request_head_is_closed_after_the_header_timeout() {
    let s = Server::start(Opts::default().args(&["--header-read-timeout-ms", "300"]));
    let mut conns = Vec::new();
    for _ in 0..5 {
        let mut c = TcpStream::connect(addr(&s)).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        conns.push(c);
    }
    // And one that sends nothing at all.
    conns.push(TcpStream::connect(addr(&s)).await.unwrap());
    for c in &mut conns {
        let got = read_until_closed(c).await;
        assert!(!got.contains("200 OK"), "answered a partial head: {got}");
    }
    assert!(metric(&s, "parasol_http_connections_timed_out_total").await >= 6.0);
    // A well-behaved client is still served.
    s.admin().get("/healthz").await.expect(200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = Server::start(Opts::default().args(&[
        "--idle-timeout-ms",
        "300",
        // Far longer, so that only the idle timeout can close it.
        "--header-read-timeout-ms",
        "60000",
    ]));
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, then the connection stays open (keep-alive) until
    // the idle timeout closes it.
    let got = read_until_closed(&mut c).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[tokio::test]
async fn a_kept_alive_connection_survives_past_the_header_timeout_while_idle() {
    // Idle waiting is governed by the idle timeout, not the header timeout.
    let s = Server::start(Opts::default().args(&[
        "--header-read-timeout-ms",
        "200",
        "--idle-timeout-ms",
        "60000",
    ]));
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    for _ in 0..2 {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // Several header timeouts long.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
}

#[tokio::test]
async fn the_per_address_cap_refuses_the_excess_while_another_client_is_served() {
    let s = Server::start(Opts::default().args(&[
        "--max-connections-per-address",
        "4",
        "--header-read-timeout-ms",
        "60000",
    ]));
    let to = addr(&s);
    // A hostile client at 127.0.0.2 holds its maximum, sending nothing.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from("127.0.0.2", to).await);
    }
    // Its next connection is refused with a JSON 503 and closed.
    let mut excess = connect_from("127.0.0.2", to).await;
    let got = read_until_closed(&mut excess).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("\"too_many_connections\""), "{got}");
    // Another address is served meanwhile, on a fresh connection.
    let mut other = connect_from("127.0.0.3", to).await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut other).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        metric(
            &s,
            "parasol_http_connections_refused_total{reason=\"per_address\"}"
        )
        .await
            >= 1.0
    );
    // Once the hostile client lets one go, it may connect again.
    drop(held.pop());
    let mut again = None;
    for _ in 0..100 {
        let mut c = connect_from("127.0.0.2", to).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_until_closed(&mut c).await;
        if got.starts_with("HTTP/1.1 200") {
            again = Some(got);
            break;
        }
        // The server may not have seen the close yet.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a freed slot was never reusable");
}

#[tokio::test]
async fn the_total_cap_refuses_new_connections_once_reached() {
    let s = Server::start(Opts::default().args(&[
        "--max-connections",
        "3",
        "--header-read-timeout-ms",
        "60000",
    ]));
    let to = addr(&s);
    let _held: Vec<TcpStream> = hold_from_many(to, 3).await;
    let mut excess = connect_from("127.0.0.4", to).await;
    let got = read_until_closed(&mut excess).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("connection limit"), "{got}");
}

async fn hold_from_many(to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(connect_from(&format!("127.0.1.{}", i + 1), to).await);
    }
    v
}
