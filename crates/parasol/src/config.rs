//! Configuration: flags, environment, TOML file, defaults, in that order of
//! precedence. Every setting has a documented default, so `parasol serve`
//! with nothing set starts a working server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::lifecycle::reconciler::ReconcilerConfig;
use crate::providers::sim::SimConfig;

/// Options shared by every command that opens the store.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Directory for the embedded database and the admin key file.
    #[arg(long, env = "PARASOL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "PARASOL_CONFIG")]
    pub config: Option<PathBuf>,
    /// `postgres://...` for PostgreSQL, or a SQLite path or `sqlite://` URL.
    #[arg(long, env = "PARASOL_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Options of `parasol serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "PARASOL_LISTEN")]
    pub listen: Option<String>,
    /// Mean boot delay of simulated machines, in seconds (0: immediate).
    #[arg(long, env = "PARASOL_SIM_BOOT_SECONDS")]
    pub sim_boot_seconds: Option<f64>,
    /// Share of simulated launches that fail while booting (0 to 1).
    #[arg(long, env = "PARASOL_SIM_FAILURE_RATE")]
    pub sim_failure_rate: Option<f64>,
    /// Share of simulated provider calls that fail transiently (0 to 1).
    #[arg(long, env = "PARASOL_SIM_CALL_FAILURE_RATE")]
    pub sim_call_failure_rate: Option<f64>,
    /// Share of simulated provider calls (0 to 1) that hang past the
    /// provider call timeout instead of answering.
    #[arg(long, env = "PARASOL_SIM_CALL_TIMEOUT_RATE")]
    pub sim_call_timeout_rate: Option<f64>,
    /// Longest a single provider call may take before it counts as a
    /// transient failure, in milliseconds (default 30000).
    #[arg(long, env = "PARASOL_PROVIDER_CALL_TIMEOUT_MS")]
    pub provider_call_timeout_ms: Option<u64>,
    /// Chance (0 to 1) that a running spot machine is reclaimed at each
    /// check of it.
    #[arg(long, env = "PARASOL_SIM_PREEMPT_RATE")]
    pub sim_preempt_rate: Option<f64>,
    /// URL that receives a JSON POST when an alert threshold is crossed.
    #[arg(long, env = "PARASOL_ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
    /// Share of simulated launches (0 to 1) refused for capacity although
    /// the catalog showed room: the race that launches by requirements
    /// fail over from.
    #[arg(long, env = "PARASOL_SIM_CAPACITY_FAILURE_RATE")]
    pub sim_capacity_failure_rate: Option<f64>,
    /// How long an offer that refused a launch for capacity is skipped by
    /// launches by requirements, in seconds (default 300).
    #[arg(long, env = "PARASOL_CAPACITY_COOLDOWN_SECONDS")]
    pub capacity_cooldown_seconds: Option<u64>,
    /// Machines per type and region in every simulated cloud, replacing the
    /// seeded capacities.
    #[arg(long, env = "PARASOL_SIM_CAPACITY")]
    pub sim_capacity: Option<i64>,
    /// Longest pause between reconciler runs, in milliseconds.
    #[arg(long, env = "PARASOL_RECONCILE_PERIOD_MS")]
    pub reconcile_period_ms: Option<u64>,
    /// How often active instances are checked with their provider, in seconds.
    #[arg(long, env = "PARASOL_ACTIVE_CHECK_SECONDS")]
    pub active_check_seconds: Option<u64>,
    /// Database connections this process may hold (default 8).
    #[arg(long, env = "PARASOL_POOL_SIZE")]
    pub pool_size: Option<u32>,
    /// SQLite's `synchronous` setting: `full` (default: an acknowledged
    /// write survives a power loss) or `normal` (faster; survives a killed
    /// process but may lose the last writes on a power loss or OS crash).
    #[arg(long, env = "PARASOL_SQLITE_SYNCHRONOUS")]
    pub sqlite_synchronous: Option<String>,
    /// How long a replica's claim on an instance holds unless renewed, in
    /// milliseconds (default 15000): a replica that dies mid-step hands its
    /// instances to the others after this long.
    #[arg(long, env = "PARASOL_LEASE_TIMEOUT_MS")]
    pub lease_timeout_ms: Option<u64>,
    /// PEM certificate chain: serve HTTPS (with `--tls-key`).
    #[arg(long, env = "PARASOL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "PARASOL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Longest a client may take to send a request's head, in
    /// milliseconds (default 10000).
    #[arg(long, env = "PARASOL_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Longest an idle keep-alive connection is kept open, in milliseconds
    /// (default 60000).
    #[arg(long, env = "PARASOL_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Open connections overall (default 4096).
    #[arg(long, env = "PARASOL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open connections from one client address (default 256).
    #[arg(long, env = "PARASOL_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Requests per second one API key may make, sustained (default 100;
    /// 0: no limit).
    #[arg(long, env = "PARASOL_KEY_RATE")]
    pub key_rate: Option<f64>,
    /// Requests one API key may make at once above its rate (default 500).
    #[arg(long, env = "PARASOL_KEY_BURST")]
    pub key_burst: Option<f64>,
    /// Requests per second from one client address (default 200; 0: no
    /// limit).
    #[arg(long, env = "PARASOL_ADDRESS_RATE")]
    pub address_rate: Option<f64>,
    /// Requests from one client address at once above its rate (default
    /// 1000).
    #[arg(long, env = "PARASOL_ADDRESS_BURST")]
    pub address_burst: Option<f64>,
    /// Failed authentications per second from one client address (default
    /// 1; 0: no limit).
    #[arg(long, env = "PARASOL_FAILED_AUTH_RATE")]
    pub failed_auth_rate: Option<f64>,
    /// Failed authentications from one client address at once (default 20).
    #[arg(long, env = "PARASOL_FAILED_AUTH_BURST")]
    pub failed_auth_burst: Option<f64>,
    /// Days audit entries are kept (default 90).
    #[arg(long, env = "PARASOL_AUDIT_RETENTION_DAYS")]
    pub audit_retention_days: Option<u64>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "PARASOL_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Lets an admin key move the server's clock (`POST /admin/clock/advance`).
    /// For tests only.
    #[arg(long, env = "PARASOL_TEST_CLOCK")]
    pub test_clock: bool,
    /// Limits every MCP client (`/mcp`) to the read-only tools.
    #[arg(long, env = "PARASOL_MCP_READ_ONLY")]
    pub mcp_read_only: bool,
    /// Accepts `http://` webhook URLs (for local receivers); otherwise
    /// webhooks must be https.
    #[arg(long, env = "PARASOL_WEBHOOK_ALLOW_HTTP")]
    pub webhook_allow_http: bool,
    /// Lets webhooks reach loopback, private and link-local addresses,
    /// which are otherwise refused at create and at every delivery.
    #[arg(long, env = "PARASOL_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Seconds between two reports of a machine's agent (default 15).
    #[arg(long, env = "PARASOL_AGENT_INTERVAL")]
    pub agent_interval: Option<u32>,
    /// Minutes agent reports are kept at full resolution (default 60).
    #[arg(long, env = "PARASOL_AGENT_RAW_RETENTION_MINUTES")]
    pub agent_raw_retention_minutes: Option<u64>,
    /// Days the 1-minute history of agent reports is kept (default 7).
    #[arg(long, env = "PARASOL_AGENT_HISTORY_DAYS")]
    pub agent_history_days: Option<u64>,
    /// Launch machines without the Parasol agent.
    #[arg(long, env = "PARASOL_NO_AGENT")]
    pub no_agent: bool,
    /// Sign-in through OpenID Connect providers.
    #[command(flatten)]
    pub oidc: crate::oidc::OidcArgs,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_format: Option<String>,
    pub pool_size: Option<u32>,
    pub sqlite_synchronous: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub audit_retention_days: Option<u64>,
    #[serde(default)]
    pub sim: FileSim,
    #[serde(default)]
    pub reconciler: FileReconciler,
    /// `[providers]`: the real clouds (see `providers::clouds::setup`).
    #[serde(default)]
    pub providers: crate::providers::clouds::setup::FileProviders,
    /// `[[hosts]]`: the operator's own servers (see `providers::hosts`).
    #[serde(default)]
    pub hosts: Vec<crate::providers::hosts::HostConfig>,
    /// `[alerts]`: where alert notifications go.
    #[serde(default)]
    pub alerts: FileAlerts,
    /// `[mcp]`: the MCP server at `/mcp`.
    #[serde(default)]
    pub mcp: FileMcp,
    /// `[http]`: connection and rate limits.
    #[serde(default)]
    pub http: FileHttp,
    /// The console's address as browsers reach it (OIDC redirect URIs).
    pub public_url: Option<String>,
    /// `[console]`: the web console's sign-in page.
    #[serde(default)]
    pub console: crate::oidc::FileConsole,
    /// `[oidc]`: sign-in through OpenID Connect providers, and the rules
    /// that make people members of accounts.
    #[serde(default)]
    pub oidc: crate::oidc::FileOidc,
    /// Whether launched machines run the Parasol agent (default true).
    pub agent_enabled: Option<bool>,
    /// Seconds between two agent reports (default 15).
    pub agent_interval_s: Option<u32>,
    /// Minutes agent reports are kept at full resolution (default 60).
    pub agent_raw_retention_minutes: Option<u64>,
    /// Days the 1-minute history of agent reports is kept (default 7).
    pub agent_history_days: Option<u64>,
}

/// `[mcp]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMcp {
    /// Every MCP client may use only the read-only tools.
    pub read_only: Option<bool>,
}

/// `[http]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    pub header_read_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    pub key_rate: Option<f64>,
    pub key_burst: Option<f64>,
    pub address_rate: Option<f64>,
    pub address_burst: Option<f64>,
    pub failed_auth_rate: Option<f64>,
    pub failed_auth_burst: Option<f64>,
}

/// `[alerts]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAlerts {
    /// Receives a JSON POST for every alert of every account.
    pub webhook_url: Option<String>,
}

/// `[sim]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSim {
    /// Force the sim on or off; by default it is on while no real provider
    /// is configured.
    pub enabled: Option<bool>,
    pub seed: Option<u64>,
    pub boot_seconds: Option<f64>,
    pub failure_rate: Option<f64>,
    pub call_failure_rate: Option<f64>,
    pub call_timeout_rate: Option<f64>,
    pub preempt_rate: Option<f64>,
    pub capacity_failure_rate: Option<f64>,
    pub capacity: Option<i64>,
}

/// `[reconciler]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReconciler {
    pub period_ms: Option<u64>,
    pub concurrency: Option<usize>,
    pub active_check_seconds: Option<u64>,
    pub lease_timeout_ms: Option<u64>,
    pub call_timeout_ms: Option<u64>,
    pub capacity_cooldown_seconds: Option<u64>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub pool_size: u32,
    /// How SQLite syncs its log at commit (ignored on PostgreSQL).
    pub sqlite_synchronous: crate::store::SqliteSync,
    pub log_format: LogFormat,
    pub sim_enabled: bool,
    /// Real clouds enabled by their credentials.
    pub clouds: crate::providers::clouds::setup::CloudSettings,
    /// The operator's own servers.
    pub hosts: Vec<crate::providers::hosts::HostConfig>,
    pub sim: SimConfig,
    pub reconciler: ReconcilerConfig,
    pub test_clock: bool,
    /// Receives alert notifications; none: alerts are only recorded.
    pub alert_webhook_url: Option<String>,
    /// What webhook URLs may be.
    pub webhooks: crate::webhooks::UrlPolicy,
    /// The MCP server's guardrails.
    pub mcp: crate::mcp::McpSettings,
    /// Connection caps and timeouts.
    pub conn_limits: crate::listener::ConnLimits,
    /// Request rate limits.
    pub rate_limits: crate::http::rate_limit::RateConfig,
    /// Certificate chain and key files: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// Sign-in through OpenID Connect providers.
    pub oidc: crate::oidc::OidcSettings,
    /// The machines' agents: interval, retention.
    pub agent: crate::agent::AgentSettings,
}

/// Default listen address: loopback only, so a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Reads the config file named by the flags, if any.
pub fn read_file(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The data directory: flag or env, then file, then the user's data dir.
pub fn data_dir(args: &StoreArgs, file: &FileConfig) -> anyhow::Result<PathBuf> {
    if let Some(d) = args.data_dir.clone().or_else(|| file.data_dir.clone()) {
        return Ok(d);
    }
    dirs::data_dir()
        .map(|d| d.join("parasol"))
        .context("no data directory could be determined; pass --data-dir")
}

/// The database URL: flag or env, then file, then SQLite in the data dir.
pub fn database_url(args: &StoreArgs, file: &FileConfig, data_dir: &Path) -> String {
    match args
        .database_url
        .clone()
        .or_else(|| file.database_url.clone())
    {
        Some(u) if u.starts_with("postgres") || u.starts_with("sqlite:") => u,
        Some(path) => format!("sqlite://{path}"),
        None => format!("sqlite://{}", data_dir.join("parasol.db").display()),
    }
}

/// Resolves the settings of `parasol serve`.
pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
    let file = read_file(args.store.config.as_deref())?;
    let data_dir = data_dir(&args.store, &file)?;
    let database_url = database_url(&args.store, &file, &data_dir);
    let listen = args
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    if listen.parse::<SocketAddr>().is_err() && !listen.contains(':') {
        bail!("--listen must be an address such as 127.0.0.1:8080, got {listen:?}");
    }
    let log_format = match args
        .log_format
        .as_deref()
        .or(file.log_format.as_deref())
        .unwrap_or("text")
    {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => bail!("--log-format must be text or json, got {other:?}"),
    };
    let defaults = SimConfig::default();
    let sim = SimConfig {
        seed: file.sim.seed.unwrap_or(defaults.seed),
        boot_seconds: args
            .sim_boot_seconds
            .or(file.sim.boot_seconds)
            .unwrap_or(defaults.boot_seconds),
        failure_rate: args
            .sim_failure_rate
            .or(file.sim.failure_rate)
            .unwrap_or(defaults.failure_rate),
        call_failure_rate: args
            .sim_call_failure_rate
            .or(file.sim.call_failure_rate)
            .unwrap_or(defaults.call_failure_rate),
        call_timeout_rate: args
            .sim_call_timeout_rate
            .or(file.sim.call_timeout_rate)
            .unwrap_or(defaults.call_timeout_rate),
        hang: defaults.hang,
        preempt_rate: args
            .sim_preempt_rate
            .or(file.sim.preempt_rate)
            .unwrap_or(defaults.preempt_rate),
        capacity_failure_rate: args
            .sim_capacity_failure_rate
            .or(file.sim.capacity_failure_rate)
            .unwrap_or(defaults.capacity_failure_rate),
        capacity: args.sim_capacity.or(file.sim.capacity),
    };
    if !(sim.boot_seconds >= 0.0 && sim.boot_seconds.is_finite()) {
        bail!("sim boot seconds must be zero or more");
    }
    for (name, rate) in [
        ("failure rate", sim.failure_rate),
        ("call failure rate", sim.call_failure_rate),
        ("call timeout rate", sim.call_timeout_rate),
        ("preempt rate", sim.preempt_rate),
        ("capacity failure rate", sim.capacity_failure_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            bail!("sim {name} must be between 0 and 1, got {rate}");
        }
    }
    if sim.call_failure_rate + sim.call_timeout_rate > 1.0 {
        bail!("sim call failure rate and call timeout rate must add up to at most 1");
    }
    let mut reconciler = ReconcilerConfig::default();
    if let Some(ms) = args
        .provider_call_timeout_ms
        .or(file.reconciler.call_timeout_ms)
    {
        if ms < 10 {
            bail!("--provider-call-timeout-ms must be at least 10, got {ms}");
        }
        reconciler.call_timeout = Duration::from_millis(ms);
    }
    // A hung sim call outlasts the timeout that is meant to cut it off.
    let sim = SimConfig {
        hang: reconciler.call_timeout * 2,
        ..sim
    };
    if let Some(ms) = args.reconcile_period_ms.or(file.reconciler.period_ms) {
        reconciler.period = Duration::from_millis(ms.max(10));
        reconciler.poll = reconciler.period;
    }
    if let Some(s) = args
        .active_check_seconds
        .or(file.reconciler.active_check_seconds)
    {
        reconciler.active_check = Duration::from_secs(s.max(1));
    }
    if let Some(s) = args
        .capacity_cooldown_seconds
        .or(file.reconciler.capacity_cooldown_seconds)
    {
        reconciler.capacity_cooldown = Duration::from_secs(s);
    }
    if let Some(c) = file.reconciler.concurrency {
        reconciler.concurrency = c.max(1);
    }
    if let Some(ms) = args.lease_timeout_ms.or(file.reconciler.lease_timeout_ms) {
        if ms < 1000 {
            bail!("--lease-timeout-ms must be at least 1000, got {ms}");
        }
        reconciler.lease_timeout = Duration::from_millis(ms);
    }
    let pool_size = args.pool_size.or(file.pool_size).unwrap_or(8);
    if pool_size == 0 {
        bail!("--pool-size must be at least 1");
    }
    let sqlite_synchronous = match args
        .sqlite_synchronous
        .as_deref()
        .or(file.sqlite_synchronous.as_deref())
    {
        None => crate::store::SqliteSync::Full,
        Some(s) => crate::store::SqliteSync::parse(s).with_context(|| {
            format!("--sqlite-synchronous must be `full` or `normal`, got {s:?}")
        })?,
    };
    let conn_limits = conn_limits(args, &file.http)?;
    let rate_limits = rate_limits(args, &file.http)?;
    let tls = match (
        args.tls_cert.clone().or(file.tls_cert.clone()),
        args.tls_key.clone().or(file.tls_key.clone()),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together: give both or neither"),
    };
    let clouds =
        crate::providers::clouds::setup::resolve(&file.providers, |k| std::env::var(k).ok())?;
    crate::providers::hosts::validate(&file.hosts)?;
    let agent = agent_settings(args, &file)?;
    Ok(Settings {
        listen,
        data_dir,
        database_url,
        pool_size,
        sqlite_synchronous,
        log_format,
        // The sim stands in for the clouds only while no real one is
        // configured; `[sim] enabled` overrides either way.
        sim_enabled: file
            .sim
            .enabled
            .unwrap_or(!clouds.any() && file.hosts.is_empty()),
        clouds,
        hosts: file.hosts,
        sim,
        reconciler,
        test_clock: args.test_clock,
        alert_webhook_url: args.alert_webhook_url.clone().or(file.alerts.webhook_url),
        webhooks: crate::webhooks::UrlPolicy {
            allow_http: args.webhook_allow_http,
            allow_private: args.webhook_allow_private,
        },
        mcp: crate::mcp::McpSettings {
            read_only: args.mcp_read_only || file.mcp.read_only.unwrap_or(false),
        },
        conn_limits,
        rate_limits,
        tls,
        oidc: crate::oidc::resolve(
            &args.oidc,
            file.public_url.as_deref(),
            &file.console,
            &file.oidc,
        )?,
        agent,
        audit_retention: Duration::from_secs(
            86_400
                * match args.audit_retention_days.or(file.audit_retention_days) {
                    Some(0) => bail!("--audit-retention-days must be at least 1"),
                    Some(d) => d,
                    None => 90,
                },
        ),
    })
}

fn agent_settings(
    args: &ServeArgs,
    file: &FileConfig,
) -> anyhow::Result<crate::agent::AgentSettings> {
    let d = crate::agent::AgentSettings::default();
    let interval_s = args
        .agent_interval
        .or(file.agent_interval_s)
        .unwrap_or(d.interval_s);
    // Reports closer than the per-instance rate limit would be refused.
    let least = (d.min_report_gap_ms / 1000) as u32;
    if !(least..=3600).contains(&interval_s) {
        bail!("--agent-interval must be from {least} to 3600 seconds, got {interval_s}");
    }
    let raw = match args
        .agent_raw_retention_minutes
        .or(file.agent_raw_retention_minutes)
    {
        None => d.raw_retention,
        Some(m) if (1..=7 * 1440).contains(&m) => Duration::from_secs(60 * m),
        Some(m) => bail!("--agent-raw-retention-minutes must be from 1 to 10080, got {m}"),
    };
    let history = match args.agent_history_days.or(file.agent_history_days) {
        None => d.history_retention,
        Some(days) if (1..=366).contains(&days) => Duration::from_secs(86_400 * days),
        Some(days) => bail!("--agent-history-days must be from 1 to 366, got {days}"),
    };
    Ok(crate::agent::AgentSettings {
        enabled: !args.no_agent && file.agent_enabled.unwrap_or(true),
        interval_s,
        raw_retention: raw,
        history_retention: history,
        ..d
    })
}

fn rate_limits(
    args: &ServeArgs,
    file: &FileHttp,
) -> anyhow::Result<crate::http::rate_limit::RateConfig> {
    use crate::http::rate_limit::Rate;
    let d = crate::http::rate_limit::RateConfig::default();
    let rate =
        |r: (Option<f64>, Option<f64>), b: (Option<f64>, Option<f64>), d: Rate, name: &str| {
            let per_second = r.0.or(r.1).unwrap_or(d.per_second);
            let burst = b.0.or(b.1).unwrap_or(d.burst);
            if !(per_second >= 0.0 && per_second.is_finite()) {
                bail!("--{name}-rate must be zero (no limit) or more, got {per_second}");
            }
            if per_second > 0.0 && !(burst >= 1.0 && burst.is_finite()) {
                bail!("--{name}-burst must be at least 1, got {burst}");
            }
            Ok(Rate { per_second, burst })
        };
    Ok(crate::http::rate_limit::RateConfig {
        per_key: rate(
            (args.key_rate, file.key_rate),
            (args.key_burst, file.key_burst),
            d.per_key,
            "key",
        )?,
        per_address: rate(
            (args.address_rate, file.address_rate),
            (args.address_burst, file.address_burst),
            d.per_address,
            "address",
        )?,
        failed_auth: rate(
            (args.failed_auth_rate, file.failed_auth_rate),
            (args.failed_auth_burst, file.failed_auth_burst),
            d.failed_auth,
            "failed-auth",
        )?,
    })
}

fn conn_limits(args: &ServeArgs, file: &FileHttp) -> anyhow::Result<crate::listener::ConnLimits> {
    let d = crate::listener::ConnLimits::default();
    let ms =
        |flag: Option<u64>, file: Option<u64>, default: Duration, name: &str| match flag.or(file) {
            None => Ok(default),
            Some(ms) if ms >= 10 => Ok(Duration::from_millis(ms)),
            Some(ms) => bail!("--{name} must be at least 10, got {ms}"),
        };
    let count = |flag: Option<usize>, file: Option<usize>, default: usize, name: &str| match flag
        .or(file)
    {
        None => Ok(default),
        Some(0) => bail!("--{name} must be at least 1"),
        Some(n) => Ok(n),
    };
    Ok(crate::listener::ConnLimits {
        header_read_timeout: ms(
            args.header_read_timeout_ms,
            file.header_read_timeout_ms,
            d.header_read_timeout,
            "header-read-timeout-ms",
        )?,
        idle_timeout: ms(
            args.idle_timeout_ms,
            file.idle_timeout_ms,
            d.idle_timeout,
            "idle-timeout-ms",
        )?,
        max_connections: count(
            args.max_connections,
            file.max_connections,
            d.max_connections,
            "max-connections",
        )?,
        max_connections_per_address: count(
            args.max_connections_per_address,
            file.max_connections_per_address,
            d.max_connections_per_address,
            "max-connections-per-address",
        )?,
    })
}
