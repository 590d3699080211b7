//! The benchmarks' reference: the least an axum server can do to answer a
//! GET with a JSON body, namely hand back bytes already in memory. It runs
//! on the same runtime settings as Parasol (tokio's multi-threaded runtime,
//! one worker per core), so the ratio of Parasol's throughput to this one's
//! measures Parasol's own work per request on the same machine, in the
//! same run.
//!
//! ```text
//! reference_server LISTEN_ADDR PATH_AND_QUERY=FILE...
//! ```
//!
//! Each `PATH_AND_QUERY=FILE` serves the file's bytes (read once at start)
//! as `application/json` at exactly that path and query; anything else is
//! a 404. Prints `reference listening on http://ADDR` when ready.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

type Routes = Arc<HashMap<String, Bytes>>;

async fn serve(State(routes): State<Routes>, req: Request) -> Response {
    let key = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    match routes.get(key) {
        Some(body) => ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: reference_server LISTEN_ADDR PATH=FILE..."))?;
    let mut routes = HashMap::new();
    for spec in args {
        // The last `=`: a query string has its own.
        let (path, file) = spec
            .rsplit_once('=')
            .ok_or_else(|| anyhow::anyhow!("expected PATH_AND_QUERY=FILE, got {spec:?}"))?;
        routes.insert(path.to_string(), Bytes::from(std::fs::read(file)?));
    }
    let app = Router::new().fallback(serve).with_state(Arc::new(routes));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("reference listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
