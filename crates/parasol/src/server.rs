//! Wiring: opens the store, builds the providers, starts the reconciler and
//! serves the API until a shutdown signal.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::clock::Clock;
use crate::config::Settings;
use crate::http::{self, hash_key, new_api_key, AppState, KeyCache};
use crate::lifecycle::reconciler::Reconciler;
use crate::providers::catalog::Catalog;
use crate::providers::hosts::Hosts;
use crate::providers::sim::Sim;
use crate::providers::Providers;
use crate::store::{keep_leases, Backend, SqliteSync, Store, StoreOptions};

/// Name of the file in the data directory holding the first admin key.
pub const ADMIN_KEY_FILE: &str = "admin-api-key";

/// How often provider catalogs are re-fetched.
const CATALOG_REFRESH: Duration = Duration::from_secs(60);

/// Opens the store, creating the data directory first.
pub async fn open_store(data_dir: &Path, url: &str, pool_size: u32) -> anyhow::Result<Store> {
    open_store_with(data_dir, url, pool_size, SqliteSync::Full).await
}

/// Like [`open_store`], with SQLite's commit sync chosen.
pub async fn open_store_with(
    data_dir: &Path,
    url: &str,
    pool_size: u32,
    sync: SqliteSync,
) -> anyhow::Result<Store> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    Store::open_with(
        &StoreOptions {
            url: url.to_string(),
            max_connections: pool_size,
        },
        sync,
    )
    .await
    .with_context(|| format!("opening the database at {}", redact_url(url)))
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// On a fresh store, creates the admin account. A key Parasol made is
/// printed once (and written, mode 0600, to the data directory); a key the
/// operator chose with `PARASOL_API_KEY` is never printed nor written, since
/// stdout usually ends up in a log collector: the message says where it
/// came from instead.
pub async fn ensure_admin(store: &Store, data_dir: &Path, clock: &Clock) -> anyhow::Result<()> {
    if store.count_accounts().await? > 0 {
        return Ok(());
    }
    let chosen = std::env::var("PARASOL_API_KEY")
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    let from_operator = chosen.is_some();
    let key = chosen.unwrap_or_else(new_api_key);
    if let Err(e) = store
        .create_account("admin", &hash_key(&key), true, false, clock.now_ms())
        .await
    {
        // Replicas starting together on a fresh database race here; the
        // one that lost finds the winner's account (with the same key
        // when PARASOL_API_KEY is set).
        if store.count_accounts().await? > 0 {
            tracing::info!("another replica created the admin account");
            return Ok(());
        }
        return Err(e.into());
    }
    if from_operator {
        println!("Created the admin account with the API key from PARASOL_API_KEY (not shown).");
        return Ok(());
    }
    let path = data_dir.join(ADMIN_KEY_FILE);
    write_secret(&path, &format!("{key}\n"))?;
    println!(
        "Created the admin account. Its API key, shown only this once (also in {}):",
        path.display()
    );
    println!("{key}");
    Ok(())
}

/// Writes a file readable by its owner only.
pub fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let store = open_store_with(
        &settings.data_dir,
        &settings.database_url,
        settings.pool_size,
        settings.sqlite_synchronous,
    )
    .await?;
    let durability = store
        .durability()
        .await
        .context("reading the database's commit durability")?;
    if durability.ends_with("= off") {
        tracing::warn!(%durability, "acknowledged writes are NOT durable: the database does not flush them at commit");
    } else if durability == "synchronous = normal" {
        tracing::warn!(%durability, "acknowledged writes survive a killed process but not a power loss (--sqlite-synchronous normal)");
    } else {
        tracing::info!(%durability, "commit durability in force");
    }
    let clock = Arc::new(if settings.test_clock {
        Clock::movable()
    } else {
        Clock::system()
    });
    // Agent reports are received at, and windows measured to, this clock.
    store.use_clock(clock.clone());
    ensure_admin(&store, &settings.data_dir, &clock).await?;
    // Only when owed: a recount reads every holding row (store/capacity.rs).
    let repaired = store
        .recount_capacity_if_owed()
        .await
        .context("recounting capacity")?
        .unwrap_or_default();
    if !repaired.is_empty() {
        tracing::warn!(counters = ?repaired, "capacity counters disagreed with the stored rows (written by an older binary, or by hand); recounted");
    }

    // Every machine name at a cloud carries this id, so deployments that
    // share a cloud account never sweep each other's machines.
    let deployment_id = store
        .setting_or_init("deployment_id", crate::providers::clouds::new_deployment_id)
        .await
        .context("reading the deployment id")?;
    tracing::info!(deployment_id = %deployment_id, "deployment id");

    let mut providers = Providers::default();
    let sim = settings
        .sim_enabled
        .then(|| Arc::new(Sim::new(store.clone(), clock.clone(), settings.sim.clone())));
    if let Some(sim) = &sim {
        providers.add(sim.clone(), &Sim::clouds());
    }
    settings.clouds.register(&mut providers, &deployment_id);
    if sim.is_some() {
        let simulated: Vec<String> = providers
            .clouds()
            .into_iter()
            .filter(|(_, p)| *p == "sim")
            .map(|(c, _)| c)
            .collect();
        tracing::warn!(
            clouds = %simulated.join(","),
            boot_seconds = settings.sim.boot_seconds,
            "capacity is SIMULATED for these clouds: the sim provider serves them; no real machine will be rented there"
        );
    }
    let hosts = (!settings.hosts.is_empty()).then(|| {
        Arc::new(Hosts::new(
            store.clone(),
            clock.clone(),
            settings.hosts.clone(),
        ))
    });
    if let Some(h) = &hosts {
        let clouds = Hosts::clouds(&settings.hosts);
        if let Some(c) = clouds.iter().find(|c| providers.for_cloud(c).is_some()) {
            anyhow::bail!(
                "[[hosts]] cloud {c:?} is already served by another provider; give the hosts a cloud name of their own"
            );
        }
        providers.add(h.clone(), &clouds);
    }
    let catalog = Arc::new(Catalog::new(providers));
    catalog.refresh().await;

    let handshake = settings
        .tls
        .as_ref()
        .map(|(cert, key)| crate::tls::handshake(cert, key))
        .transpose()?;
    let scheme = if handshake.is_some() { "https" } else { "http" };
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.local_addr()?;

    // Machines report to the public URL; by default the address listened
    // on, which only machines that can reach it will.
    let agent_keys = crate::agent::AgentKeys::load(&store)
        .await
        .context("reading the agent secret")?;
    let agent_url = settings
        .oidc
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let ingest = Arc::new(crate::agent::Ingest::new(
        store.clone(),
        agent_keys.clone(),
        settings.agent.clone(),
    ));
    let agent_launch = settings.agent.enabled.then_some(crate::agent::AgentLaunch {
        keys: agent_keys,
        url: agent_url,
        interval_s: settings.agent.interval_s,
    });
    let notify = Arc::new(Notify::new());
    let reconciler = Arc::new(
        Reconciler::new(
            store.clone(),
            catalog.clone(),
            clock.clone(),
            notify.clone(),
            settings.reconciler.clone(),
        )
        .with_agent(agent_launch, settings.agent.clone()),
    );
    // `--alert-webhook-url` is a server-level subscription to the alert
    // events, delivered like every other.
    store
        .set_alert_webhook(settings.alert_webhook_url.as_deref(), clock.now_ms())
        .await
        .context("saving the alert webhook")?;
    let deliverer = Arc::new(crate::webhooks::Deliverer::new(
        store.clone(),
        clock.clone(),
        settings.webhooks,
        settings.reconciler.period,
    ));
    let events = Arc::new(
        crate::event_stream::EventHub::new(store.clone())
            .await
            .context("reading the event log")?,
    );
    let state = Arc::new(AppState {
        deployment_id: deployment_id.clone(),
        store: store.clone(),
        catalog: catalog.clone(),
        clock,
        notify,
        reconciler: reconciler.clone(),
        sim,
        hosts,
        keys: KeyCache::new(store.backend()),
        mcp: settings.mcp,
        rendered: Default::default(),
        limits: http::rate_limit::RateLimits::new(settings.rate_limits),
        tls: settings.tls.is_some(),
        audit_retention: settings.audit_retention,
        console_key: Default::default(),
        webhooks: settings.webhooks,
        events: events.clone(),
        oidc: Arc::new(crate::oidc::Oidc::new(settings.oidc.clone())?),
        agent: ingest.clone(),
    });

    // Scripts and tests read this line to find an ephemeral port.
    println!("parasol listening on {scheme}://{addr}");
    std::io::stdout().flush().ok();
    tracing::info!(%addr, database = %redact_url(&settings.database_url), "serving the API under /v1");

    let (stop_tx, stop_rx) = watch::channel(false);
    if store.backend() == Backend::Sqlite {
        // The embedded file has one server process, so any lease in it is
        // a previous run's: resume that work now, not when it expires.
        store.clear_all_leases().await?;
    }
    let leases_task = tokio::spawn(keep_leases(
        store.clone(),
        reconciler.replica,
        settings.reconciler.lease_timeout,
        stop_rx.clone(),
    ));
    let auth_task = tokio::spawn(crate::auth_sync::run(
        state.clone(),
        reconciler.replica,
        stop_rx.clone(),
    ));
    let reconciler_task = tokio::spawn(reconciler.run(stop_rx.clone()));
    let sweep_task = tokio::spawn(crate::providers::sweep::run(
        catalog.providers().clone(),
        store.clone(),
        settings.clouds.sweep_interval,
        stop_rx.clone(),
    ));
    let audit_task = tokio::spawn(prune_audit(
        store.clone(),
        state.clock.clone(),
        settings.audit_retention,
        stop_rx.clone(),
    ));
    let webhooks_task = tokio::spawn(deliverer.run(stop_rx.clone()));
    let events_task = tokio::spawn(events.run(stop_rx.clone()));
    // The sim's machines report as real agents would (unless agents are
    // off, where no machine would).
    let sim_agents_task = match (&state.sim, settings.agent.enabled) {
        (Some(sim), true) => Some(tokio::spawn(sim.clone().run_agents(
            ingest,
            settings.agent.interval_s,
            stop_rx.clone(),
        ))),
        _ => None,
    };
    let refresh_task = tokio::spawn(refresh_catalog(catalog, stop_rx));

    crate::listener::serve(
        listener,
        http::router(state),
        settings.conn_limits.clone(),
        handshake,
        shutdown,
    )
    .await;
    tracing::info!("shutting down: finishing in-flight reconciler steps");
    stop_tx.send(true).ok();
    reconciler_task.await.ok();
    leases_task.await.ok();
    refresh_task.await.ok();
    webhooks_task.await.ok();
    events_task.await.ok();
    auth_task.await.ok();
    if let Some(t) = sim_agents_task {
        t.await.ok();
    }
    audit_task.await.ok();
    sweep_task.await.ok();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// How often audit entries past their retention are deleted.
const AUDIT_PRUNE_PERIOD: Duration = Duration::from_secs(3600);

async fn prune_audit(
    store: Store,
    clock: Arc<Clock>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let before = clock.now_ms() - retention.as_millis() as i64;
        match store.prune_audit(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned audit entries past their retention"),
            Err(e) => tracing::warn!(error = %e, "could not prune the audit log"),
        }
        tokio::select! {
            _ = tokio::time::sleep(AUDIT_PRUNE_PERIOD) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn refresh_catalog(catalog: Arc<Catalog>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CATALOG_REFRESH) => catalog.refresh().await,
            _ = stop.changed() => return,
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// right after the "listening" line is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
