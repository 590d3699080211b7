//! The reconciler: the background task that owns every lifecycle transition.
//!
//! Each run takes no input: it asks the store which instances are due
//! (`wake_at <= now`), and gives each one step: at most one provider call
//! and one generation-checked write. A run that dies halfway is simply the
//! next run's starting point; a step that loses a race to the API is dropped
//! and the instance re-read next run. Errors do not retry inside a run: the
//! step sets a backoff in `wake_at`, and a later run is the retry.
//!
//! The task wakes when the API writes (a `Notify`), when the earliest
//! `wake_at` arrives, and at least every `period`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parasol_api::Status;
use tokio::sync::{watch, Notify};

use super::alerts;
use super::placement::{self, Attempt};
use super::{begin_delete, cost};
use crate::clock::Clock;
use crate::providers::catalog::Catalog;
use crate::providers::{LaunchRequest, LaunchVolume, MachineState, Provider, ProviderError};
use crate::store::{wall_ms, InstanceRecord, Store, StoreResult, VolumeStatus};

/// Reconciler settings.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Longest sleep between runs.
    pub period: Duration,
    /// Instances stepped concurrently within a run.
    pub concurrency: usize,
    /// Most instances taken per run.
    pub batch: i64,
    /// How often an active instance is checked with its provider.
    pub active_check: Duration,
    /// How often a booting or tearing-down machine is polled.
    pub poll: Duration,
    /// Transient launch failures tolerated before the instance errors.
    pub max_launch_attempts: u32,
    /// Longest a single provider call may take before it counts as a
    /// transient failure.
    pub call_timeout: Duration,
    /// How long a claim on an instance holds unless renewed: a replica
    /// renews its claims every third of this while it lives, and one that
    /// dies gives its instances up to the others after this long.
    pub lease_timeout: Duration,
    /// How long an offer that refused a launch for capacity is skipped by
    /// launches by requirements.
    pub capacity_cooldown: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(1),
            concurrency: 32,
            batch: 512,
            active_check: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            max_launch_attempts: 8,
            call_timeout: Duration::from_secs(30),
            lease_timeout: Duration::from_secs(15),
            capacity_cooldown: Duration::from_secs(300),
        }
    }
}

/// Counters an endpoint can show.
#[derive(Debug, Default)]
pub struct ReconcilerStats {
    pub runs: AtomicU64,
    pub run_errors: AtomicU64,
    pub steps: AtomicU64,
    pub transitions: AtomicU64,
    pub lost_races: AtomicU64,
    pub provider_errors: AtomicU64,
    /// Milliseconds since the epoch of the last finished run.
    pub last_run_ms: std::sync::atomic::AtomicI64,
}

/// The lifecycle engine.
pub struct Reconciler {
    pub(super) store: Store,
    pub(super) catalog: Arc<Catalog>,
    pub(super) clock: Arc<Clock>,
    pub(super) notify: Arc<Notify>,
    pub(super) cfg: ReconcilerConfig,
    /// This process's lease owner id, new at every start.
    pub replica: uuid::Uuid,
    /// Counters for metrics and readiness.
    pub stats: ReconcilerStats,
    /// When the budget watch runs next (ms): a period after the last, or
    /// when the next threshold falls due if that is sooner.
    budget_wake: std::sync::atomic::AtomicI64,
    /// Gives each launch its agent's bootstrap; `None`: agents are off.
    agent: Option<crate::agent::AgentLaunch>,
    /// Retention of the agents' samples.
    agent_settings: crate::agent::AgentSettings,
    /// When the agents' samples are next downsampled and pruned (ms).
    agent_wake: std::sync::atomic::AtomicI64,
}

impl Reconciler {
    /// A reconciler; start it with [`Reconciler::run`].
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        clock: Arc<Clock>,
        notify: Arc<Notify>,
        cfg: ReconcilerConfig,
    ) -> Self {
        Self {
            store,
            catalog,
            clock,
            notify,
            cfg,
            replica: uuid::Uuid::new_v4(),
            stats: ReconcilerStats::default(),
            budget_wake: std::sync::atomic::AtomicI64::new(0),
            agent: None,
            agent_settings: Default::default(),
            agent_wake: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Launches start the agent with `launch`'s bootstrap (`None`: agents
    /// are off), and the agents' samples are kept as `settings` says.
    pub fn with_agent(
        mut self,
        launch: Option<crate::agent::AgentLaunch>,
        settings: crate::agent::AgentSettings,
    ) -> Self {
        self.agent = launch;
        self.agent_settings = settings;
        self
    }

    /// Runs until `shutdown` turns true. A step in flight finishes first, so
    /// a graceful stop never abandons a provider call halfway.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let sleep = match self.run_once().await {
                Ok(taken) if taken as i64 >= self.cfg.batch => Duration::ZERO,
                Ok(_) => self.until_next_wake().await,
                Err(e) => {
                    self.stats.run_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "reconciler run failed; retrying");
                    self.cfg.period
                }
            };
            if sleep.is_zero() {
                continue;
            }
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn until_next_wake(&self) -> Duration {
        let next = match (
            self.store.next_wake().await,
            self.store.next_cluster_wake().await,
            self.store.next_volume_wake().await,
        ) {
            (Ok(a), Ok(b), Ok(c)) => {
                let budget = self.budget_wake.load(Ordering::Relaxed);
                let agents = self.agent_wake.load(Ordering::Relaxed);
                Ok(a.into_iter()
                    .chain(b)
                    .chain(c)
                    .chain([budget, agents])
                    .min())
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        };
        match next {
            Ok(Some(at)) => {
                let wait = (at - self.clock.now_ms()).max(0) as u64;
                Duration::from_millis(wait).min(self.cfg.period)
            }
            _ => self.cfg.period,
        }
    }

    /// One pass over every due instance; returns how many it took.
    pub async fn run_once(&self) -> StoreResult<usize> {
        // Budgets first: instances it deletes are due at once, so this
        // same pass starts their teardown. The watch costs a scan of each
        // watched account's month, so a busy loop runs it once a period, or
        // sooner when a threshold falls due.
        let now = self.clock.now_ms();
        if now >= self.budget_wake.load(Ordering::Relaxed) {
            // A failed watch is retried next period; it never holds up
            // the instances' own steps.
            let next = super::budgets::enforce(&self.store, self.clock.now())
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "budget watch failed; retrying");
                    None
                });
            let period = self.cfg.period.as_millis() as i64;
            self.budget_wake.store(
                next.map_or(now + period, |t| t.min(now + period)),
                Ordering::Relaxed,
            );
        }
        if now >= self.agent_wake.load(Ordering::Relaxed) {
            // Like the budget watch: a failure is retried a period later
            // and never holds up the instances' steps.
            let next = match crate::agent::upkeep(&self.store, now, &self.agent_settings).await {
                Ok(behind) if behind => now,
                Ok(_) => now + crate::agent::UPKEEP_EVERY_MS,
                Err(e) => {
                    tracing::warn!(error = %e, "downsampling agent samples failed; retrying");
                    now + self.cfg.period.as_millis() as i64
                }
            };
            self.agent_wake.store(next, Ordering::Relaxed);
        }
        let lease = self.cfg.lease_timeout.as_millis() as i64;
        let wall = wall_ms();
        let due = self
            .store
            .claim_due_instances(
                self.replica,
                self.clock.now_ms(),
                wall,
                wall + lease,
                self.cfg.batch,
            )
            .await?;
        let taken = due.len();
        futures::stream::iter(due)
            .for_each_concurrent(self.cfg.concurrency, |rec| async move {
                let id = rec.instance.id;
                if let Err(e) = self.step(rec).await {
                    tracing::warn!(instance = %id, error = %e, "reconcile step failed");
                    // A step that failed wrote nothing, so its lease would
                    // otherwise be renewed for as long as this replica
                    // lives and the instance never looked at again. Given
                    // back, the row is retried when due, here or elsewhere.
                    if let Err(e) = self.store.release_instance_lease(id, self.replica).await {
                        tracing::warn!(instance = %id, error = %e, "could not give the lease back");
                    }
                }
            })
            .await;
        // Clusters after their nodes, so a run that moved the last node
        // settles its cluster in the same pass.
        let wall = wall_ms();
        let clusters = self
            .store
            .claim_due_clusters(
                self.replica,
                self.clock.now_ms(),
                wall,
                wall + self.cfg.lease_timeout.as_millis() as i64,
                self.cfg.batch,
            )
            .await?;
        let taken = taken.max(clusters.len());
        let wall = wall_ms();
        let volumes = self
            .store
            .claim_due_volumes(
                self.replica,
                self.clock.now_ms(),
                wall,
                wall + self.cfg.lease_timeout.as_millis() as i64,
                self.cfg.batch,
            )
            .await?;
        let taken = taken.max(volumes.len());
        futures::stream::iter(volumes)
            .for_each_concurrent(self.cfg.concurrency, |v| async move {
                let id = v.id;
                if let Err(e) = self.step_volume(v).await {
                    tracing::warn!(volume = %id, error = %e, "volume step failed");
                    // As for an instance step: retried when due.
                    if let Err(e) = self.store.release_volume_lease(id, self.replica).await {
                        tracing::warn!(volume = %id, error = %e, "could not give the lease back");
                    }
                }
            })
            .await;
        futures::stream::iter(clusters)
            .for_each_concurrent(self.cfg.concurrency, |rec| async move {
                let id = rec.cluster.id;
                if let Err(e) = self.step_cluster(rec).await {
                    tracing::warn!(cluster = %id, error = %e, "cluster step failed");
                    // As for an instance step: retried when due.
                    if let Err(e) = self.store.release_cluster_lease(id, self.replica).await {
                        tracing::warn!(cluster = %id, error = %e, "could not give the lease back");
                    }
                }
            })
            .await;
        self.stats.runs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_run_ms
            .store(self.clock.now_ms(), Ordering::Relaxed);
        Ok(taken)
    }

    async fn step(&self, mut rec: InstanceRecord) -> StoreResult<()> {
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        let before = rec.instance.status;
        let Some(provider) = self
            .catalog
            .providers()
            .for_cloud(&rec.instance.cloud)
            .cloned()
        else {
            // The cloud's provider was configured away; keep the row and
            // look again later rather than guess what the cloud holds.
            tracing::warn!(instance = %rec.instance.id, cloud = %rec.instance.cloud, "no provider serves this cloud");
            rec.wake_at = Some(self.clock.now_ms() + 60_000);
            return self.write(rec, before).await;
        };
        match before {
            Status::Creating => self.launch(&mut rec, provider.as_ref()).await,
            Status::PendingProvider | Status::Pending => {
                self.watch_boot(&mut rec, provider.as_ref()).await
            }
            Status::Active => self.watch_active(&mut rec, provider.as_ref()).await,
            Status::Deleting | Status::Error => self.tear_down(&mut rec, provider.as_ref()).await,
            Status::Deleted => rec.wake_at = None,
        }
        self.write(rec, before).await
    }

    async fn write(&self, mut rec: InstanceRecord, before: Status) -> StoreResult<()> {
        let now = self.clock.now_ms();
        if self
            .store
            .update_leased_instance(&mut rec, now, self.replica)
            .await?
        {
            if rec.instance.status != before {
                self.stats.transitions.fetch_add(1, Ordering::Relaxed);
                self.catalog.invalidate();
                if let Some(cluster) = rec.cluster_id {
                    self.store.wake_cluster(cluster, now).await?;
                }
                tracing::info!(
                    instance = %rec.instance.id,
                    from = %before,
                    to = %rec.instance.status,
                    details = rec.instance.status_details.as_deref().unwrap_or(""),
                    "transition"
                );
            }
        } else {
            self.stats.lost_races.fetch_add(1, Ordering::Relaxed);
            self.store
                .release_instance_lease(rec.instance.id, self.replica)
                .await?;
            tracing::debug!(instance = %rec.instance.id, "lost a race with another writer; will re-read");
        }
        Ok(())
    }

    pub(super) async fn call<T>(
        &self,
        provider: &dyn Provider,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let start = std::time::Instant::now();
        let timed = tokio::time::timeout(self.cfg.call_timeout, fut).await;
        crate::metrics::global().observe_provider_call(
            provider.name(),
            operation,
            crate::metrics::outcome(timed.as_ref().ok()),
            start.elapsed(),
        );
        let res = match timed {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Transient("provider call timed out".into())),
        };
        if res.is_err() {
            self.stats.provider_errors.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    async fn launch(&self, rec: &mut InstanceRecord, provider: &dyn Provider) {
        if rec.internal.placement.as_ref().is_some_and(|p| p.waiting) {
            return self.place(rec, None).await;
        }
        let mut volumes = Vec::new();
        for v in &rec.instance.volume_ids {
            let Ok(v) = uuid::Uuid::parse_str(v) else {
                continue;
            };
            match self.store.get_volume(rec.account_id, v).await {
                Ok(Some(v)) => match (v.status, v.cloud_assigned_id) {
                    (VolumeStatus::Available, Some(cloud_assigned_id)) => {
                        volumes.push(LaunchVolume {
                            id: v.id,
                            size_in_gb: v.size_in_gb,
                            cloud_assigned_id,
                            zone: v.zone,
                        })
                    }
                    (VolumeStatus::Error, _) => {
                        let why = v.status_details.unwrap_or_default();
                        return self.fail(
                            rec,
                            format!("volume {} could not be made at {}: {why}", v.name, v.cloud),
                        );
                    }
                    // Still being made at the cloud: the machine launches
                    // once it can mount the volume.
                    _ => {
                        rec.instance.status_details = Some(format!(
                            "waiting for volume {} to be made at {}",
                            v.name, v.cloud
                        ));
                        rec.wake_at = Some(self.clock.now_ms() + self.cfg.poll.as_millis() as i64);
                        return;
                    }
                },
                // Deleted since the create: nothing to mount.
                Ok(None) => {}
                Err(e) => {
                    return self.back_off(rec, format!("reading the instance's volumes: {e}"))
                }
            }
        }
        let i = &rec.instance;
        let req = LaunchRequest {
            instance_id: i.id,
            name: i.name.clone(),
            cloud: i.cloud.clone(),
            region: i.region.clone(),
            shade_instance_type: i.shade_instance_type.clone(),
            cloud_instance_type: i.cloud_instance_type.clone(),
            os: i.configuration.os.clone(),
            rental_type: i.rental_terms.rental_type,
            ssh_public_key: rec.internal.ssh_public_key.clone(),
            launch_configuration: i.launch_configuration.clone(),
            envs: i.envs.clone(),
            cluster_id: rec.cluster_id,
            volumes,
            agent: self.agent.as_ref().map(|a| a.bootstrap(i.id)),
        };
        match self.call(provider, "launch", provider.launch(&req)).await {
            Ok(launched) => {
                rec.instance.cloud_assigned_id = launched.cloud_assigned_id;
                rec.instance.status = Status::PendingProvider;
                clear_retrying(rec);
                if rec
                    .instance
                    .status_details
                    .as_deref()
                    .is_some_and(|d| d.starts_with("waiting for volume"))
                {
                    rec.instance.status_details = None;
                }
                rec.internal.attempts = 0;
                rec.wake_at = Some(self.clock.now_ms());
            }
            Err(ProviderError::Transient(m))
                if rec.internal.attempts + 1 < self.cfg.max_launch_attempts =>
            {
                self.back_off(rec, m)
            }
            Err(e) => {
                if let ProviderError::Capacity(m) = &e {
                    let i = &rec.instance;
                    self.catalog
                        .mark_unavailable(&i.cloud, &i.region, &i.shade_instance_type);
                    if rec.internal.placement.is_some() {
                        return self.place(rec, Some(m.clone())).await;
                    }
                }
                self.fail(rec, launch_failure(&e))
            }
        }
    }

    /// Placement's failover, for an instance launched by requirements: the
    /// offer it is on refused it for capacity (`failed`), or it is waiting
    /// for capacity. Moves it to the best candidate it has not tried, as one
    /// write (the launch is the next step); with none left, waits until its
    /// deadline, then fails naming every offer tried.
    async fn place(&self, rec: &mut InstanceRecord, failed: Option<String>) {
        let now = self.clock.now_ms();
        let i = &rec.instance;
        let from = placement::describe(&i.cloud, &i.region, &i.shade_instance_type);
        if let Some(reason) = &failed {
            self.catalog
                .cool(rec.offer_key(), self.cfg.capacity_cooldown);
            let attempt = Attempt {
                cloud: i.cloud.clone(),
                region: i.region.clone(),
                shade_instance_type: i.shade_instance_type.clone(),
                rental_type: i.rental_terms.rental_type,
                reason: reason.clone(),
            };
            if let Some(p) = rec.internal.placement.as_mut() {
                p.tried.push(attempt);
            }
            self.event(
                rec,
                "placement.out_of_capacity",
                format!("{from} out of capacity: {reason}"),
            )
            .await;
        }
        let types = match self.catalog.instance_types(&self.store).await {
            Ok(t) => t,
            Err(e) => return self.back_off(rec, e.to_string()),
        };
        let Some(p) = rec.internal.placement.clone() else {
            return;
        };
        let search = placement::search(&types, &p.requirements, p.os.as_deref(), |c, r, t| {
            self.catalog.is_cooling(c, r, t)
        });
        // While waiting, an offer tried before may be tried again once it
        // is no longer cooling down; in one round of failover, never.
        let next = search
            .available()
            .filter(|c| p.waiting || !p.tried.iter().any(|a| a.is_of(c)))
            .find_map(|c| {
                self.catalog
                    .find(&c.cloud, &c.shade_instance_type)
                    .map(|o| (c.clone(), o))
            });
        match next {
            Some((c, offer)) => {
                let to = placement::describe(&c.cloud, &c.region, &c.shade_instance_type);
                let details = match failed {
                    Some(_) => format!("{from} out of capacity; trying {to}"),
                    None => format!("capacity found; trying {to}"),
                };
                placement::place_on(&mut rec.instance, &offer, &c);
                if let Some(p) = rec.internal.placement.as_mut() {
                    p.waiting = false;
                    p.waits = 0;
                }
                rec.instance.status_details = Some(details.clone());
                rec.internal.attempts = 0;
                rec.wake_at = Some(now);
                self.event(rec, "placement.moved", details).await;
            }
            None if p.wait_until_ms.is_some_and(|until| now < until) => {
                let until = p.wait_until_ms.unwrap_or(now);
                let waits = p.waits + 1;
                if let Some(p) = rec.internal.placement.as_mut() {
                    p.waiting = true;
                    p.waits = waits;
                }
                let delay = (500i64 << waits.min(6)).min(30_000).min(until - now);
                rec.instance.status_details = Some("waiting for capacity".into());
                rec.wake_at = Some(now + delay.max(50));
            }
            None => {
                // Each offer once (a wait may try one several times), with
                // the reason it last gave.
                let mut tried: Vec<String> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for a in p.tried.iter().rev() {
                    let what = placement::describe(&a.cloud, &a.region, &a.shade_instance_type);
                    if seen.insert(what.clone()) {
                        tried.push(format!("{what} ({})", a.reason));
                    }
                }
                tried.reverse();
                let why = if tried.is_empty() {
                    format!("no capacity for the requirements: {}", search.why_none())
                } else {
                    format!(
                        "no capacity for the requirements; tried {}",
                        tried.join("; ")
                    )
                };
                self.fail(rec, why)
            }
        }
    }

    /// A reclaimed spot machine: the instance is deleted, and one launched
    /// by requirements with `on_preemption: relaunch` is replaced by a new
    /// instance with the same requirements. The replacement's id follows
    /// from the old one, so a step repeated after a lost race finds the
    /// replacement it made instead of making a second.
    async fn preempted(&self, rec: &mut InstanceRecord) {
        let now = self.clock.now();
        let relaunch = rec.internal.placement.as_ref().is_some_and(|p| {
            p.on_preemption == Some(parasol_api::OnPreemption::Relaunch) && !p.relaunched
        });
        if relaunch {
            let new = placement::replacement(rec, now);
            let id = new.instance.id;
            let stored = match self.store.get_instance_any(id).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => self.store.insert_replacement(&new).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                return self.back_off(rec, format!("relaunching the preempted instance: {e}"));
            }
            if let Some(p) = rec.internal.placement.as_mut() {
                p.relaunched = true;
            }
            self.event(
                rec,
                "placement.relaunched",
                format!(
                    "instance {} was preempted; relaunched as {id}",
                    rec.instance.name
                ),
            )
            .await;
            self.notify.notify_one();
        }
        begin_delete(rec, now, Some("preempted".into()));
        self.record_preemption(rec).await;
    }

    /// Records an event about an instance, with the instance as the API
    /// shows it (plus `extra`) as its data; a failure is logged, not fatal.
    pub(super) async fn event_with(
        &self,
        rec: &InstanceRecord,
        kind: &str,
        message: String,
        extra: serde_json::Value,
    ) {
        let now = self.clock.now();
        let mut data =
            serde_json::to_value(crate::http::instances::render(rec, now)).unwrap_or_default();
        if let (Some(d), Some(x)) = (data.as_object_mut(), extra.as_object()) {
            d.extend(x.clone());
        }
        if let Err(e) = self
            .store
            .record_event_with(
                rec.account_id,
                Some(rec.instance.id),
                kind,
                &message,
                data,
                now.timestamp_millis(),
            )
            .await
        {
            tracing::warn!(instance = %rec.instance.id, kind, error = %e, "could not record an event");
        }
    }

    /// [`Reconciler::event_with`] with the message in the data.
    async fn event(&self, rec: &InstanceRecord, kind: &str, message: String) {
        let extra = serde_json::json!({ "message": message });
        self.event_with(rec, kind, message, extra).await
    }

    async fn watch_boot(&self, rec: &mut InstanceRecord, provider: &dyn Provider) {
        match self
            .call(provider, "describe", provider.describe(rec.instance.id))
            .await
        {
            Ok(MachineState::Provisioning) => self.poll_again(rec),
            Ok(MachineState::Booting) => {
                rec.instance.status = Status::Pending;
                self.poll_again(rec);
            }
            Ok(MachineState::Running {
                ip,
                ssh_port,
                ssh_user,
                placement,
            }) => {
                let now = self.clock.now();
                rec.instance.status = Status::Active;
                rec.instance.ip = Some(ip);
                rec.instance.ssh_port = ssh_port;
                rec.instance.ssh_user = ssh_user;
                rec.instance.active_at = Some(now);
                rec.instance.status_details = placement;
                rec.internal.attempts = 0;
                rec.wake_at = Some(self.next_active_check(rec, now.timestamp_millis()));
            }
            Ok(MachineState::Failed { reason }) => self.fail(rec, reason),
            Ok(MachineState::Preempted) => self.preempted(rec).await,
            Ok(MachineState::Terminating | MachineState::Gone) => self.fail(
                rec,
                "the provider lost the machine while it was booting".into(),
            ),
            Err(ProviderError::Transient(m)) => self.back_off(rec, m),
            Err(e) => self.fail(rec, e.to_string()),
        }
    }

    async fn watch_active(&self, rec: &mut InstanceRecord, provider: &dyn Provider) {
        let now = self.clock.now();
        let cents = cost::instance_cents(rec, now);
        if let Some(reason) = alerts::auto_delete_due(rec, now.timestamp_millis(), cents) {
            tracing::info!(instance = %rec.instance.id, reason, "auto-delete");
            let kind = if reason.contains("date") {
                "auto_delete.date_threshold"
            } else {
                "auto_delete.spend_threshold"
            };
            let message = format!("instance {} {reason}", rec.instance.name);
            self.event(rec, kind, message).await;
            return begin_delete(rec, now, Some(reason));
        }
        if self.fire_alerts(rec, cents).await.is_err() {
            // Lost a race or the store failed: the next step looks again.
            return;
        }
        if self.watch_policies(rec).await {
            return;
        }
        if rec.internal.restart_requested {
            match self
                .call(provider, "restart", provider.restart(rec.instance.id))
                .await
            {
                Ok(()) => {
                    rec.internal.restart_requested = false;
                    rec.internal.attempts = 0;
                    // A restart resets the GPUs: earlier Xids and ECC
                    // errors no longer say anything about them.
                    rec.internal.health_since = Some(self.clock.now());
                }
                Err(ProviderError::Transient(m)) => return self.back_off(rec, m),
                Err(e) => {
                    // The machine is still there; report and stop trying.
                    rec.internal.restart_requested = false;
                    rec.instance.status_details = Some(format!("restart failed: {e}"));
                }
            }
        }
        match self
            .call(provider, "describe", provider.describe(rec.instance.id))
            .await
        {
            Ok(
                MachineState::Running { .. } | MachineState::Booting | MachineState::Provisioning,
            ) => {
                clear_retrying(rec);
                rec.wake_at = Some(self.next_active_check(rec, now.timestamp_millis()));
            }
            Ok(MachineState::Preempted) => self.preempted(rec).await,
            Ok(MachineState::Failed { reason }) => self.fail(rec, reason),
            Ok(MachineState::Terminating | MachineState::Gone) => {
                self.fail(rec, "the provider no longer has the machine".into())
            }
            Err(ProviderError::Transient(m)) => self.back_off(rec, m),
            Err(e) => {
                tracing::warn!(instance = %rec.instance.id, error = %e, "describe failed");
                self.back_off(rec, e.to_string());
            }
        }
    }

    /// `deleting` and `error`: terminate until the provider says gone. A
    /// refusal is retried forever with backoff: giving up would leak a
    /// machine that keeps billing.
    async fn tear_down(&self, rec: &mut InstanceRecord, provider: &dyn Provider) {
        if !rec.internal.released {
            match self
                .call(provider, "terminate", provider.terminate(rec.instance.id))
                .await
            {
                Ok(MachineState::Gone) => {
                    rec.internal.released = true;
                    rec.internal.attempts = 0;
                    clear_retrying(rec);
                }
                Ok(_) => return self.poll_again(rec),
                Err(e) => return self.back_off(rec, e.to_string()),
            }
        }
        rec.wake_at = None;
        if rec.instance.status == Status::Deleting {
            rec.instance.status = Status::Deleted;
            rec.instance.deleted_at = Some(self.clock.now());
        }
    }

    /// Fires each crossed alert threshold once: the fired mark is written
    /// first (generation-checked), and only a successful write records the
    /// event and queues the webhook, so a race can never fire twice.
    async fn fire_alerts(&self, rec: &mut InstanceRecord, cents: i64) -> Result<(), ()> {
        let now = self.clock.now();
        let due = alerts::alerts_due(rec, now.timestamp_millis(), cents);
        if due.is_empty() {
            return Ok(());
        }
        for c in &due {
            rec.internal.alerts_fired.push(c.kind.to_string());
        }
        match self
            .store
            .update_instance(rec, now.timestamp_millis())
            .await
        {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(()),
        }
        for c in &due {
            let kind = format!("alert.{}_threshold", c.kind);
            // The data is the notification `--alert-webhook-url` receives.
            if let Err(e) = self
                .store
                .record_event_with(
                    rec.account_id,
                    Some(rec.instance.id),
                    &kind,
                    &c.message,
                    alerts::notification(rec, c, cents, now),
                    now.timestamp_millis(),
                )
                .await
            {
                tracing::warn!(instance = %rec.instance.id, error = %e, "could not record an alert event");
            }
            tracing::info!(instance = %rec.instance.id, kind, "alert fired");
        }
        Ok(())
    }

    /// When to look at an active instance next: its regular check, or its
    /// next threshold or policy moment if that comes first.
    fn next_active_check(&self, rec: &InstanceRecord, now_ms: i64) -> i64 {
        let check = now_ms + self.cfg.active_check.as_millis() as i64;
        let policy = rec.internal.policy_wake_ms.filter(|t| *t > now_ms);
        alerts::next_due_ms(rec)
            .into_iter()
            .chain(policy)
            .fold(check, i64::min)
    }

    fn poll_again(&self, rec: &mut InstanceRecord) {
        rec.internal.attempts = 0;
        rec.wake_at = Some(self.clock.now_ms() + self.cfg.poll.as_millis() as i64);
    }

    fn back_off(&self, rec: &mut InstanceRecord, message: String) {
        rec.internal.attempts += 1;
        let delay = (500i64 << rec.internal.attempts.min(7)).min(60_000);
        tracing::debug!(instance = %rec.instance.id, attempts = rec.internal.attempts, error = %message, "provider call failed; backing off");
        // The user sees why the instance is stuck, not only that it is;
        // an `error` keeps the reason it failed.
        if rec.instance.status != Status::Error {
            rec.instance.status_details = Some(format!("{RETRYING}{message}"));
        }
        rec.internal.last_error = Some(message);
        rec.wake_at = Some(self.clock.now_ms() + delay);
    }

    /// Into `error`: billing stops, and the next steps release the machine.
    /// Leaves a `preempted` event for the console's events page. A lost
    /// event is logged, never a reason to keep the machine.
    async fn record_preemption(&self, rec: &InstanceRecord) {
        let message = format!("instance {} was preempted by its cloud", rec.instance.name);
        self.event(rec, "preempted", message).await;
    }

    fn fail(&self, rec: &mut InstanceRecord, reason: String) {
        let now = self.clock.now();
        rec.instance.status = Status::Error;
        rec.instance.status_details = Some(reason);
        if rec.internal.billing_stopped_at.is_none() {
            rec.internal.billing_stopped_at = Some(now);
        }
        rec.internal.attempts = 0;
        rec.wake_at = Some(now.timestamp_millis());
    }
}

/// Prefix of the status_details a backoff writes; cleared once a call
/// succeeds again.
const RETRYING: &str = "retrying: ";

fn clear_retrying(rec: &mut InstanceRecord) {
    if rec
        .instance
        .status_details
        .as_deref()
        .is_some_and(|d| d.starts_with(RETRYING))
    {
        rec.instance.status_details = None;
    }
}

fn launch_failure(e: &ProviderError) -> String {
    match e {
        ProviderError::Capacity(m) => format!("insufficient capacity: {m}"),
        ProviderError::Permanent(m) => format!("launch refused: {m}"),
        ProviderError::Transient(m) => format!("launch failed after repeated errors: {m}"),
    }
}
