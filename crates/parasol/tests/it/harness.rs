//! Starts the real `parasol` binary on an ephemeral port with its own data
//! directory, and talks to it over real HTTP. Every response a test
//! receives is checked against the Shadeform document (see
//! `conformance`), so no test can forget to.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::conformance;

/// The admin key every test server is started with.
pub const ADMIN_KEY: &str = "psl_test_admin_key_0123456789abcdef";

/// `--lease-timeout-ms` of every test server.
pub const LEASE_TIMEOUT_MS: u64 = 3000;

/// Arguments that turn the request rate limits off, for load tests: they
/// send far more than one client's fair share on purpose, and what they
/// check is not the limits (tests/it/rate_limits.rs checks those).
pub const UNLIMITED: &[&str] = &["--key-rate", "0", "--address-rate", "0"];

/// Path of the built binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_parasol")
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Opts {
    pub boot_seconds: f64,
    /// Sim capacity per offer; `None` keeps the seeded catalog capacities.
    pub capacity: Option<i64>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A database to share with other servers (replicas); `None`: a fresh
    /// one for this server, of the backend `PARASOL_TEST_BACKEND` names.
    pub database_url: Option<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            boot_seconds: 0.0,
            capacity: Some(1000),
            extra_args: vec![],
            env: vec![],
            database_url: None,
        }
    }
}

impl Opts {
    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|s| s.to_string()));
        self
    }
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    opts: Opts,
    pub stdout_lines: Vec<String>,
    /// `--database-url` given to the server; `None`: SQLite in the data dir.
    pub database_url: Option<String>,
    /// A database this server created and drops when done.
    own_database: Option<String>,
}

impl Server {
    /// Starts a server on a fresh data directory.
    pub fn start(opts: Opts) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().to_path_buf();
        let (database_url, own_database) = match (&opts.database_url, Backend::from_env()) {
            (Some(url), _) => (Some(url.clone()), None),
            (None, Backend::Sqlite) => (None, None),
            (None, Backend::Postgres) => {
                let (url, name) = fresh_pg_database();
                (Some(url), Some(name))
            }
        };
        let mut s = Server {
            child: None,
            base: String::new(),
            data_dir,
            _tmp: Some(tmp),
            opts,
            stdout_lines: vec![],
            database_url,
            own_database,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--sim-boot-seconds")
            .arg(self.opts.boot_seconds.to_string())
            .arg("--reconcile-period-ms")
            .arg("100")
            // Short leases: a server killed by a test hands its in-flight
            // work to its successor (or a replica) within seconds.
            .arg("--lease-timeout-ms")
            .arg(LEASE_TIMEOUT_MS.to_string())
            .args(
                self.opts
                    .capacity
                    .map(|c| vec!["--sim-capacity".to_string(), c.to_string()])
                    .unwrap_or_default(),
            )
            .args(&self.opts.extra_args)
            .args(
                self.database_url
                    .iter()
                    .flat_map(|u| ["--database-url".to_string(), u.clone()]),
            )
            .env("PARASOL_API_KEY", ADMIN_KEY)
            .env("PARASOL_LOG", "warn,parasol=info")
            .env_remove("PARASOL_CONFIG")
            .env_remove("PARASOL_DATABASE_URL")
            // AWS is enabled by whatever credentials the machine holds: a
            // test server sees none but those its test gives it.
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.data_dir.join("no-aws-credentials"),
            )
            .env("AWS_CONFIG_FILE", self.data_dir.join("no-aws-config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file(&self.data_dir)));
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_EC2",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn parasol");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("server did not start; log:\n{}", self.log()));
            self.stdout_lines.push(line.clone());
            if let Some(url) = line.strip_prefix("parasol listening on ") {
                self.base = url.trim().to_string();
                break;
            }
        }
        self.child = Some(child);
    }

    /// The server's own database, opened beside it (the tests' window on
    /// what the server stored).
    pub async fn store(&self) -> parasol::store::Store {
        let url = self
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("parasol.db").display()));
        parasol::store::Store::open(&parasol::store::StoreOptions {
            url,
            max_connections: 1,
        })
        .await
        .expect("opening the server's store")
    }

    /// Checks, on the server's own database, that every capacity counter
    /// matches a recount of the rows it mirrors.
    pub async fn assert_capacity_counts_agree(&self) {
        let store = self.store().await;
        let drift = store.capacity_drift().await.expect("recounting");
        store.pool().close().await;
        assert!(drift.is_empty(), "capacity counters drifted: {drift:#?}");
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    /// Sends `signal` (a name `kill` knows: STOP, CONT, ...) to the
    /// server's process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id();
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the server again on the same data directory (and database)
    /// with other options.
    pub fn restart_with(&mut self, opts: Opts) {
        self.kill();
        self.opts = opts;
        self.spawn();
    }

    /// A client with the admin key.
    pub fn admin(&self) -> Client {
        self.client(ADMIN_KEY)
    }

    /// A client with any key.
    pub fn client(&self, key: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            key: Some(key.to_string()),
        }
    }

    /// Creates an account with the CLI, as an operator would.
    pub fn new_account(&self, name: &str) -> String {
        self.new_account_with(name, &[])
    }

    /// Creates an account with `accounts create NAME FLAGS...`.
    pub fn new_account_with(&self, name: &str, flags: &[&str]) -> String {
        let out = Command::new(binary())
            .args(["accounts", "create", name])
            .args(flags)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(
                self.database_url
                    .iter()
                    .flat_map(|u| ["--database-url".to_string(), u.clone()]),
            )
            .env_remove("PARASOL_CONFIG")
            .env_remove("PARASOL_DATABASE_URL")
            .output()
            .expect("run accounts create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

fn log_file(dir: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log file")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if let Some(name) = self.own_database.take() {
            // Best effort: the cluster is a throwaway one anyway.
            pg_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).ok();
        }
    }
}

/// The database engine the suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `PARASOL_TEST_BACKEND`: `sqlite` (the default) or `postgres`.
    pub fn from_env() -> Backend {
        match std::env::var("PARASOL_TEST_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => Backend::Sqlite,
            Ok("postgres") => Backend::Postgres,
            Ok(other) => panic!("PARASOL_TEST_BACKEND must be sqlite or postgres, got {other:?}"),
        }
    }
}

/// The admin URL of the PostgreSQL cluster the tests may create databases
/// in (`PARASOL_TEST_PG_URL`; `.ci/run` and `scripts/test.sh` start one).
pub fn pg_admin_url() -> String {
    std::env::var("PARASOL_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect(
            "PARASOL_TEST_PG_URL is not set: this test needs PostgreSQL. Run scripts/test.sh \
             (it starts a throwaway cluster), or start one with scripts/pg.sh init DIR PORT and \
             export its URL",
        )
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..host_end])
}

/// Runs one statement on the admin database of the test cluster.
pub fn pg_admin(sql: &str) -> Result<(), String> {
    pg_exec(&pg_admin_url(), sql)
}

/// Runs one statement on a PostgreSQL database, from any thread (its own
/// runtime, since callers may be inside a test's runtime).
pub fn pg_exec(url: &str, sql: &str) -> Result<(), String> {
    let url = url.to_string();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::postgres::PgConnection::connect(&url)
                    .await
                    .map_err(|e| format!("connecting to {url}: {e}"))?;
                sqlx::query(&sql)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| format!("{sql}: {e}"))?;
                conn.close().await.ok();
                Ok(())
            })
    })
    .join()
    .unwrap()
}

/// The value of a sample of the server's `/metrics` (`name` with its
/// labels, as rendered), 0 when absent.
pub async fn metric(s: &Server, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Creates an empty database on the test cluster; returns its URL and name.
pub fn fresh_pg_database() -> (String, String) {
    let name = format!("parasol_t_{}", uuid::Uuid::new_v4().simple());
    pg_admin(&format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("{e}"));
    (with_database(&pg_admin_url(), &name), name)
}

/// A response: status and JSON body (the content type is asserted on
/// receipt).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
}

impl Resp {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {:#}",
            self.body
        );
        self.body
    }

    /// Asserts an error with this status and code; returns the error object.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["error"]["code"], code, "{body:#}");
        body["error"].clone()
    }
}

/// An HTTP client bound to one server and key.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub key: Option<String>,
}

impl Client {
    /// The same client without a key.
    pub fn anonymous(&self) -> Client {
        Client {
            key: None,
            ..self.clone()
        }
    }

    /// GET `path` (relative to the server root, such as `/v1/instances`).
    pub async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(
            reqwest::Method::POST,
            path,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// POST raw bytes (with a JSON content type, as clients send).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Resp {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// POST with no body at all.
    pub async fn post_empty(&self, path: &str) -> Resp {
        self.send(reqwest::Method::POST, path, None).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> Resp {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(k) = &self.key {
            req = req.header("X-API-KEY", k);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = res.bytes().await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{method} {path} -> {status}: body is not JSON: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(content_type, "application/json", "{method} {path}");
        conformance::check(method.as_str(), path, status.as_u16(), &body);
        Resp { status, body }
    }

    /// Adds an SSH key and returns its id.
    pub async fn add_key(&self, name: &str) -> String {
        let body = self
            .post(
                "/v1/sshkeys/add",
                json!({"name": name, "public_key": public_key()}),
            )
            .await
            .expect(200);
        body["id"].as_str().unwrap().to_string()
    }

    /// Creates an instance of an available type and returns its id.
    pub async fn create_instance(&self, name: &str) -> String {
        let body = self
            .post("/v1/instances/create", default_create(name))
            .await
            .expect(200);
        body["id"].as_str().unwrap().to_string()
    }

    /// Polls an instance until `pred` holds on its info, or panics.
    pub async fn wait_instance(&self, id: &str, what: &str, pred: impl Fn(&Resp) -> bool) -> Resp {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.get(&format!("/v1/instances/{id}/info")).await;
            if pred(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "instance {id} never became {what}: {:#}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the instance has `status`.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_instance(id, status, |r| {
            r.status == 200 && r.body["status"] == status
        })
        .await
        .body
    }

    /// Polls until the instance answers 404 (deleted).
    pub async fn wait_gone(&self, id: &str) {
        self.wait_instance(id, "deleted", |r| r.status == 404).await;
    }

    /// The listed instances that carry `tag` (e.g. `parasol:replaces=ID`).
    pub async fn tagged(&self, tag: &str) -> Vec<Value> {
        let list = self.get("/v1/instances").await.expect(200);
        list["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["tags"].as_array().unwrap().iter().any(|t| t == tag))
            .cloned()
            .collect()
    }
}

/// A create body for a type the sim stocks with plenty of capacity in tests.
pub fn default_create(name: &str) -> Value {
    json!({
        "cloud": "massedcompute",
        "region": "us-central-1",
        "shade_instance_type": "A6000",
        "shade_cloud": true,
        "name": name,
    })
}

/// A real ed25519 public key (generated once per process with ssh-keygen
/// would need the binary; this one is a fixed valid key).
pub fn public_key() -> String {
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f parasol-test"
        .to_string()
}

/// A PostgreSQL cluster of a test's own (from `scripts/pg.sh`), for tests
/// that stop and start the database under a running server.
pub struct PgCluster {
    dir: PathBuf,
    /// The `postgres` database of the cluster, as an admin.
    pub url: String,
    _tmp: tempfile::TempDir,
}

impl PgCluster {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg.sh")
    }

    fn run(args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(Self::script())
            .args(args)
            .output()
            .expect("run scripts/pg.sh");
        assert!(
            out.status.success(),
            "scripts/pg.sh {args:?} failed (PostgreSQL's server binaries are needed: \
             apt-get install postgresql): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Creates and starts a cluster on a free local port.
    pub fn start() -> PgCluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        // As root the cluster runs as `postgres`, which must reach it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let dir = tmp.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Self::run(&["init", dir.to_str().unwrap(), &port.to_string()]);
        PgCluster {
            dir,
            url,
            _tmp: tmp,
        }
    }

    /// Stops the database (fast shutdown: sessions are cut).
    pub fn stop(&self) {
        Self::run(&["stop", self.dir.to_str().unwrap()]);
    }

    /// Starts it again on the same port and data.
    pub fn resume(&self) {
        Self::run(&["start", self.dir.to_str().unwrap()]);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        Command::new("bash")
            .arg(Self::script())
            .args(["stop", self.dir.to_str().unwrap()])
            .output()
            .ok();
    }
}

/// A route template with a fresh id in each `{param}`: nothing of the
/// caller's, so a request that got past a role check would be a 404 or
/// 400, never the 403 the role checks look for.
pub fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                uuid::Uuid::new_v4().to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Moves a `--test-clock` server's clock `seconds` on.
pub async fn advance_clock(s: &Server, seconds: i64) {
    s.admin()
        .post("/admin/clock/advance", json!({"seconds": seconds}))
        .await
        .expect(200);
}

/// Waits until instance `id` has at least `n` agent samples in the last
/// hour (the metrics route's default window).
pub async fn wait_for_samples(s: &Server, id: &str, n: usize) {
    wait_samples(&s.admin(), id, &format!("{n} samples"), |x| x.len() >= n).await;
}

/// Polls instance `id`'s metrics API (last hour) until `pred` holds on
/// its samples, and answers them; panics after 20 s naming `what`.
pub async fn wait_samples(
    c: &Client,
    id: &str,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = c
            .get(&format!("/v1/instances/{id}/metrics"))
            .await
            .expect(200);
        let samples = m["samples"].as_array().unwrap().clone();
        if pred(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {m:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
