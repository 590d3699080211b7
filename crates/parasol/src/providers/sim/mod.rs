//! `sim`: a deterministic simulated multi-cloud.
//!
//! The zero-config default, the test double for everything above the
//! provider seam, and a product for people testing their own provisioning
//! code. Machines live in the `sim_machines` table of the store, so they
//! survive a restart and replicas share them; the table's primary key is
//! Parasol's instance id, which is what makes a repeated launch return the
//! machine already launched instead of renting a second one.
//!
//! Time drives the machine's progress: a machine launched at `t` with boot
//! delay `d` is provisioning until `t + d/2`, booting until `t + d`, and
//! running after. Delays and injected failures come from a seeded hash of the
//! instance id, so a run is reproducible. Tests drive the rest explicitly
//! through [`Sim::fail`] and [`Sim::preempt`] (exposed under `/admin/sim`).

mod agent;
mod catalog;

pub use agent::Steering;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{
    Capacity, ClusterOffer, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError,
    RegionOffer, VolumeOffer, VolumeRef, VolumeRequest, VolumeState,
};
use crate::clock::Clock;
use crate::store::capacity::{self, Counted, Pool};
use crate::store::{OfferKey, Step, Store};

/// How the simulated clouds behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds capacities, boot delays and failures.
    pub seed: u64,
    /// Mean boot delay; each machine takes between half and one and a half
    /// times this. Zero: machines run as soon as they are launched.
    pub boot_seconds: f64,
    /// Share of launches (0..=1) whose machine fails while booting.
    pub failure_rate: f64,
    /// Share of provider calls (0..=1) that fail with a transient error, to
    /// exercise retries.
    pub call_failure_rate: f64,
    /// Share of provider calls (0..=1), besides the failing ones, that hang
    /// for [`SimConfig::hang`] instead of answering, to exercise the
    /// reconciler's call timeout. A hung launch or terminate has already
    /// acted when it hangs: the answer is lost, not the request.
    pub call_timeout_rate: f64,
    /// How long a hung call hangs; longer than the caller's timeout.
    pub hang: std::time::Duration,
    /// Chance (0..=1) that a running spot machine is reclaimed each time
    /// it is described.
    pub preempt_rate: f64,
    /// Share of launches (0..=1) refused for capacity although a slot is
    /// free, as real clouds do when their catalog lags.
    pub capacity_failure_rate: f64,
    /// One capacity for every offer, replacing the seeded slot counts.
    pub capacity: Option<i64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            boot_seconds: 20.0,
            failure_rate: 0.0,
            call_failure_rate: 0.0,
            call_timeout_rate: 0.0,
            hang: std::time::Duration::from_secs(60),
            preempt_rate: 0.0,
            capacity_failure_rate: 0.0,
            capacity: None,
        }
    }
}

/// One simulated machine, as `/admin/sim/machines` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SimMachine {
    pub instance_id: Uuid,
    pub cloud: String,
    pub region: String,
    pub shade_instance_type: String,
    pub state: String,
    pub launched_at: i64,
    pub restarts: i64,
}

/// The simulated multi-cloud provider.
pub struct Sim {
    store: Store,
    clock: Arc<Clock>,
    cfg: SimConfig,
    offers: Vec<Offer>,
    clusters: Vec<ClusterOffer>,
    slots: HashMap<OfferKey, i64>,
    /// Node capacity of the cluster pools.
    cluster_slots: HashMap<OfferKey, i64>,
    /// Offers whose next launches are refused for capacity, each with how
    /// many more (`None`: until cleared). In memory: a test fault.
    capacity_failures: std::sync::Mutex<HashMap<OfferKey, Option<u32>>>,
}

impl Sim {
    /// A sim over the given store.
    pub fn new(store: Store, clock: Arc<Clock>, cfg: SimConfig) -> Self {
        let offers = catalog::offers(cfg.seed, cfg.capacity);
        let slots = slot_map(offers.iter().flat_map(|o| {
            o.regions
                .iter()
                .map(|r| (&o.cloud, &o.shade_instance_type, r))
        }));
        let clusters = catalog::cluster_offers(cfg.seed, cfg.capacity);
        let cluster_slots = slot_map(clusters.iter().flat_map(|c| {
            c.regions
                .iter()
                .map(|r| (&c.cloud, &c.shade_instance_type, r))
        }));
        Self {
            store,
            clock,
            cfg,
            offers,
            clusters,
            slots,
            cluster_slots,
            capacity_failures: Default::default(),
        }
    }

    /// Makes the next `count` launches of an offer (every launch, with
    /// `None`, until cleared) fail for capacity, as a cloud whose catalog
    /// said "available" does when the last machine was just taken.
    pub fn fail_launches(&self, key: OfferKey, count: Option<u32>) {
        self.capacity_failures
            .lock()
            .expect("poisoned")
            .insert(key, count);
    }

    /// Stops the injected capacity failures of every offer matching the
    /// given fields (all offers, with none given); returns how many.
    pub fn clear_launch_failures(
        &self,
        cloud: Option<&str>,
        region: Option<&str>,
        shade_instance_type: Option<&str>,
    ) -> usize {
        let mut f = self.capacity_failures.lock().expect("poisoned");
        let before = f.len();
        f.retain(|k, _| {
            !(cloud.is_none_or(|c| c == k.cloud)
                && region.is_none_or(|r| r == k.region)
                && shade_instance_type.is_none_or(|t| t == k.shade_instance_type))
        });
        before - f.len()
    }

    /// The injected capacity failures, with how many launches each has left.
    pub fn launch_failures(&self) -> Vec<(OfferKey, Option<u32>)> {
        let f = self.capacity_failures.lock().expect("poisoned");
        let mut v: Vec<_> = f.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort();
        v
    }

    /// Whether this launch is to be refused for capacity: an injected
    /// failure of its offer (used up one at a time), or the configured
    /// share, drawn per instance and offer so a move to another offer draws
    /// again.
    fn refuses_for_capacity(&self, id: Uuid, key: &OfferKey) -> bool {
        {
            let mut f = self.capacity_failures.lock().expect("poisoned");
            if let Some(left) = f.get_mut(key) {
                match left {
                    None => return true,
                    Some(0) => {}
                    Some(n) => {
                        *n -= 1;
                        return true;
                    }
                }
            }
        }
        let salt = format!(
            "capacity:{}:{}:{}",
            key.cloud, key.region, key.shade_instance_type
        );
        self.unit(id, &salt) < self.cfg.capacity_failure_rate
    }

    /// The clouds the sim serves.
    pub fn clouds() -> Vec<String> {
        catalog::cloud_names()
    }

    /// Marks a machine failed, as if its hardware broke.
    pub async fn fail(&self, instance_id: Uuid, reason: &str) -> Result<bool, ProviderError> {
        self.set_state(instance_id, "failed", Some(reason)).await
    }

    /// Reclaims a machine, as a spot market would.
    pub async fn preempt(&self, instance_id: Uuid) -> Result<bool, ProviderError> {
        self.set_state(instance_id, "preempted", None).await
    }

    /// Every machine the sim has ever launched, oldest first.
    pub async fn machines(&self) -> Result<Vec<SimMachine>, ProviderError> {
        let rows = sqlx::query(
            "SELECT instance_id, cloud, region, shade_instance_type, state, launched_at, restarts
             FROM sim_machines WHERE cloud <> '' ORDER BY launched_at, instance_id",
        )
        .fetch_all(self.store.pool())
        .await
        .map_err(transient)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(transient)?;
                Ok(SimMachine {
                    instance_id: Uuid::parse_str(&id)
                        .map_err(|e| ProviderError::Permanent(e.to_string()))?,
                    cloud: r.try_get(1).map_err(transient)?,
                    region: r.try_get(2).map_err(transient)?,
                    shade_instance_type: r.try_get(3).map_err(transient)?,
                    state: r.try_get(4).map_err(transient)?,
                    launched_at: r.try_get(5).map_err(transient)?,
                    restarts: r.try_get(6).map_err(transient)?,
                })
            })
            .collect()
    }

    async fn set_state(
        &self,
        instance_id: Uuid,
        state: &str,
        detail: Option<&str>,
    ) -> Result<bool, ProviderError> {
        let res = sqlx::query(
            "UPDATE sim_machines SET state = $1, detail = $2, updated_at = $3
             WHERE instance_id = $4 AND state IN ('running','doomed')",
        )
        .bind(state)
        .bind(detail)
        .bind(self.clock.now_ms())
        .bind(instance_id.to_string())
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(res.rows_affected() > 0)
    }

    /// Where a simulated volume is. Its cloud id is `vol-` and the first
    /// twelve hex digits of Parasol's id, the shape of a cloud's own ids.
    async fn volume_state(&self, id: Uuid) -> Result<VolumeState, ProviderError> {
        let deleted: Option<Option<i64>> =
            sqlx::query_scalar("SELECT deleted_at FROM sim_volumes WHERE volume_id = $1")
                .bind(id.to_string())
                .fetch_optional(self.store.pool())
                .await
                .map_err(transient)?;
        Ok(match deleted {
            Some(None) => VolumeState::Available {
                cloud_assigned_id: format!("vol-{}", &id.simple().to_string()[..12]),
                zone: None,
            },
            _ => VolumeState::Gone,
        })
    }

    /// Simulated volumes that exist (tests).
    pub async fn volumes(&self) -> Result<Vec<Uuid>, ProviderError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT volume_id FROM sim_volumes WHERE deleted_at IS NULL ORDER BY created_at, volume_id",
        )
        .fetch_all(self.store.pool())
        .await
        .map_err(transient)?;
        ids.iter()
            .map(|s| Uuid::parse_str(s).map_err(|e| ProviderError::Transient(e.to_string())))
            .collect()
    }

    /// A random transient failure, when configured to inject them; `Ok(true)`
    /// when this call is to hang instead (see [`SimConfig::call_timeout_rate`]).
    fn injected_fault(&self, op: &str) -> Result<bool, ProviderError> {
        let (fail, hang) = (self.cfg.call_failure_rate, self.cfg.call_timeout_rate);
        if fail <= 0.0 && hang <= 0.0 {
            return Ok(false);
        }
        let roll = rand::random::<f64>();
        if roll < fail {
            return Err(ProviderError::Transient(format!("simulated {op} failure")));
        }
        Ok(roll < fail + hang)
    }

    /// A call that never answers in time: its caller's timeout drops it.
    async fn hang(&self) {
        tokio::time::sleep(self.cfg.hang).await;
    }

    fn unit(&self, id: Uuid, salt: &str) -> f64 {
        (catalog::fnv(self.cfg.seed, &[&id.to_string(), salt]) % 1_000_000) as f64 / 1_000_000.0
    }

    fn boot_ms(&self, id: Uuid) -> i64 {
        (self.cfg.boot_seconds * 1000.0 * (0.5 + self.unit(id, "boot"))).round() as i64
    }

    async fn row(
        &self,
        id: Uuid,
    ) -> Result<Option<(String, i64, i64, Option<String>, Option<String>)>, ProviderError> {
        let row = sqlx::query(
            "SELECT state, launched_at, ready_at, ip, detail FROM sim_machines WHERE instance_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.store.pool())
        .await
        .map_err(transient)?;
        row.map(|r| {
            Ok((
                r.try_get(0).map_err(transient)?,
                r.try_get(1).map_err(transient)?,
                r.try_get(2).map_err(transient)?,
                r.try_get(3).map_err(transient)?,
                r.try_get(4).map_err(transient)?,
            ))
        })
        .transpose()
    }

    /// Rolls the dice for a running machine: a spot machine is reclaimed
    /// with probability `preempt_rate` at each look.
    async fn reclaims_spot(&self, id: Uuid) -> Result<bool, ProviderError> {
        if self.cfg.preempt_rate <= 0.0 || rand::random::<f64>() >= self.cfg.preempt_rate {
            return Ok(false);
        }
        let res = sqlx::query(
            "UPDATE sim_machines SET state = 'preempted', updated_at = $1
             WHERE instance_id = $2 AND spot = 1 AND state = 'running'",
        )
        .bind(self.clock.now_ms())
        .bind(id.to_string())
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(res.rows_affected() > 0)
    }

    async fn finish_termination(&self, id: Uuid) -> Result<(), ProviderError> {
        // The state change and the freed slot in one transaction. The
        // slot's counter is declared to the writer (see
        // `Store::write_locked`), so its offer is read first; a machine's
        // offer never changes.
        let now = self.clock.now_ms();
        let offer = sqlx::query(
            "SELECT cloud, region, shade_instance_type, pool FROM sim_machines WHERE instance_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.store.pool())
        .await
        .map_err(transient)?;
        let mut locks = Vec::new();
        if let Some(r) = offer {
            let key = OfferKey {
                cloud: r.try_get(0).map_err(transient)?,
                region: r.try_get(1).map_err(transient)?,
                shade_instance_type: r.try_get(2).map_err(transient)?,
            };
            let pool: String = r.try_get(3).map_err(transient)?;
            let pool = Pool::of(pool == Pool::Cluster.as_str());
            locks.push(capacity::counter_lock(Counted::SimMachines, &key, pool));
        }
        self.store
            .write_locked(locks, move |conn| {
                Box::pin(async move {
                    let row = sqlx::query(
                        "UPDATE sim_machines SET state = 'terminated', updated_at = $1
                         WHERE instance_id = $2 AND state <> 'terminated'
                         RETURNING cloud, region, shade_instance_type, pool",
                    )
                    .bind(now)
                    .bind(id.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(r) = row {
                        let key = OfferKey {
                            cloud: r.try_get(0)?,
                            region: r.try_get(1)?,
                            shade_instance_type: r.try_get(2)?,
                        };
                        let pool: String = r.try_get(3)?;
                        capacity::adjust(
                            conn,
                            Counted::SimMachines,
                            &key,
                            Pool::of(pool == Pool::Cluster.as_str()),
                            -1,
                        )
                        .await?;
                    }
                    Ok(Step::Commit(()))
                })
            })
            .await
            .map_err(store_transient)
    }
}

fn slot_map<'a>(
    regions: impl Iterator<Item = (&'a String, &'a String, &'a RegionOffer)>,
) -> HashMap<OfferKey, i64> {
    regions
        .filter_map(|(cloud, shade, r)| match r.capacity {
            Capacity::Slots(n) => Some((
                OfferKey {
                    cloud: cloud.clone(),
                    region: r.region.clone(),
                    shade_instance_type: shade.clone(),
                },
                n,
            )),
            Capacity::Available(_) => None,
        })
        .collect()
}

fn transient(e: sqlx::Error) -> ProviderError {
    ProviderError::Transient(format!("sim inventory: {e}"))
}

fn store_transient(e: crate::store::StoreError) -> ProviderError {
    ProviderError::Transient(format!("sim inventory: {e}"))
}

fn ip_for(id: Uuid) -> String {
    // 198.18.0.0/15 is reserved for benchmarking (RFC 2544): it looks like
    // a public address but is never anyone's machine.
    let h = catalog::fnv(0, &[&id.to_string(), "ip"]);
    format!(
        "198.{}.{}.{}",
        18 + (h & 1),
        (h >> 1) & 0xff,
        1 + (h >> 9) % 254
    )
}

#[async_trait]
impl Provider for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        Ok(self.offers.clone())
    }

    async fn cluster_offers(&self) -> Result<Vec<ClusterOffer>, ProviderError> {
        Ok(self.clusters.clone())
    }

    async fn volume_offers(&self) -> Result<Vec<VolumeOffer>, ProviderError> {
        Ok(catalog::volume_offers())
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        let hang = self.injected_fault("launch")?;
        let key = OfferKey {
            cloud: req.cloud.clone(),
            region: req.region.clone(),
            shade_instance_type: req.shade_instance_type.clone(),
        };
        let pool = Pool::of(req.cluster_id.is_some());
        let slots = match pool {
            Pool::Cluster => self.cluster_slots.get(&key),
            Pool::Single => self.slots.get(&key),
        };
        let Some(&slots) = slots else {
            return Err(ProviderError::Permanent(format!(
                "{} does not offer {} in {}",
                req.cloud, req.shade_instance_type, req.region
            )));
        };
        let id = req.instance_id;
        // Only a first launch can be refused: a repeated one finds the
        // machine its first attempt made.
        if self.row(id).await?.is_none() && self.refuses_for_capacity(id, &key) {
            return Err(ProviderError::Capacity(format!(
                "{} has no {} left in {} (simulated)",
                req.cloud, req.shade_instance_type, req.region
            )));
        }
        let now = self.clock.now_ms();
        let doomed = self.unit(id, "fail") < self.cfg.failure_rate;
        // The machine and its slot in one transaction: two launches racing
        // for the last slot cannot both get it, and a repeated launch (the
        // row exists) takes no second slot.
        // Through the store's group commit, so launches share commits with
        // the reconciler's own writes instead of queueing for the lock.
        let (cloud, region, shade) = (
            req.cloud.clone(),
            req.region.clone(),
            req.shade_instance_type.clone(),
        );
        let (ready_at, ip) = (now + self.boot_ms(id), ip_for(id));
        let spot = i64::from(req.rental_type == parasol_api::RentalType::Spot);
        let locks = vec![capacity::counter_lock(Counted::SimMachines, &key, pool)];
        self.store
            .write_locked(locks, move |conn| {
                Box::pin(async move {
                    let inserted = sqlx::query(
                        "INSERT INTO sim_machines (instance_id, cloud, region, shade_instance_type, state,
                            launched_at, ready_at, ip, detail, restarts, updated_at, pool, spot)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $6, $10, $11)
                         ON CONFLICT (instance_id) DO NOTHING",
                    )
                    .bind(id.to_string())
                    .bind(cloud)
                    .bind(region)
                    .bind(shade)
                    .bind(if doomed { "doomed" } else { "running" })
                    .bind(now)
                    .bind(ready_at)
                    .bind(ip)
                    .bind(doomed.then_some("simulated hardware fault during boot"))
                    .bind(pool.as_str())
                    .bind(spot)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                        == 1;
                    if inserted
                        && !capacity::reserve(conn, Counted::SimMachines, &key, pool, 1, Some(slots))
                            .await?
                    {
                        return Ok(Step::Undo(()));
                    }
                    Ok(Step::Commit(()))
                })
            })
            .await
            .map_err(store_transient)?;
        if hang {
            self.hang().await;
        }
        match self.row(id).await? {
            None => Err(ProviderError::Capacity(format!(
                "{} has no {} left in {}",
                req.cloud, req.shade_instance_type, req.region
            ))),
            Some((state, ..)) if state == "terminated" => Err(ProviderError::Permanent(
                "the machine for this instance was already terminated".into(),
            )),
            Some(_) => Ok(Launched {
                cloud_assigned_id: format!("{}-{}", req.cloud, &id.simple().to_string()[..12]),
            }),
        }
    }

    async fn describe(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        if self.injected_fault("describe")? {
            self.hang().await;
        }
        let now = self.clock.now_ms();
        let Some((state, launched, ready, ip, detail)) = self.row(id).await? else {
            return Ok(MachineState::Gone);
        };
        Ok(match state.as_str() {
            "terminated" => MachineState::Gone,
            "terminating" if now >= ready => {
                self.finish_termination(id).await?;
                MachineState::Gone
            }
            "terminating" => MachineState::Terminating,
            "failed" => MachineState::Failed {
                reason: detail.unwrap_or_else(|| "machine failed".into()),
            },
            "preempted" => MachineState::Preempted,
            "doomed" if now >= ready => {
                self.set_state(id, "failed", detail.as_deref()).await?;
                MachineState::Failed {
                    reason: detail.unwrap_or_else(|| "machine failed".into()),
                }
            }
            _ if now < launched + (ready - launched) / 2 => MachineState::Provisioning,
            _ if now < ready => MachineState::Booting,
            _ if self.reclaims_spot(id).await? => MachineState::Preempted,
            _ => MachineState::Running {
                ip: ip.unwrap_or_else(|| ip_for(id)),
                ssh_port: 22,
                ssh_user: "shadeform".into(),
                placement: None,
            },
        })
    }

    async fn restart(&self, id: Uuid) -> Result<(), ProviderError> {
        if self.injected_fault("restart")? {
            self.hang().await;
        }
        let res = sqlx::query(
            "UPDATE sim_machines SET restarts = restarts + 1, updated_at = $1
             WHERE instance_id = $2 AND state = 'running'",
        )
        .bind(self.clock.now_ms())
        .bind(id.to_string())
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        if res.rows_affected() == 0 {
            return Err(ProviderError::Permanent(
                "the machine is not running".into(),
            ));
        }
        Ok(())
    }

    async fn create_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        let hang = self.injected_fault("create_volume")?;
        sqlx::query(
            "INSERT INTO sim_volumes (volume_id, cloud, region, size_in_gb, created_at, deleted_at)
             VALUES ($1, $2, $3, $4, $5, NULL)
             ON CONFLICT (volume_id) DO NOTHING",
        )
        .bind(req.volume_id.to_string())
        .bind(&req.cloud)
        .bind(&req.region)
        .bind(req.size_in_gb)
        .bind(self.clock.now_ms())
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        if hang {
            // Made, and the answer lost.
            self.hang().await;
        }
        self.volume_state(req.volume_id).await
    }

    async fn describe_volume(&self, v: &VolumeRef) -> Result<VolumeState, ProviderError> {
        self.injected_fault("describe_volume")?;
        self.volume_state(v.volume_id).await
    }

    async fn delete_volume(&self, v: &VolumeRef) -> Result<VolumeState, ProviderError> {
        self.injected_fault("delete_volume")?;
        // A tombstone for a volume never made, as for machines: a create
        // still in flight finds it and makes nothing.
        let now = self.clock.now_ms();
        sqlx::query(
            "INSERT INTO sim_volumes (volume_id, cloud, region, size_in_gb, created_at, deleted_at)
             VALUES ($1, '', '', 0, $2, $2)
             ON CONFLICT (volume_id) DO NOTHING",
        )
        .bind(v.volume_id.to_string())
        .bind(now)
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        sqlx::query(
            "UPDATE sim_volumes SET deleted_at = $1 WHERE volume_id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(v.volume_id.to_string())
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(VolumeState::Gone)
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        let hang = self.injected_fault("terminate")?;
        let now = self.clock.now_ms();
        // Teardown takes a quarter of a boot, so `deleting` can be watched.
        let teardown = self.boot_ms(id) / 4;
        // A tombstone for a machine never launched: a launch still in flight
        // for this id will find it and refuse, instead of leaking a machine.
        sqlx::query(
            "INSERT INTO sim_machines (instance_id, cloud, region, shade_instance_type, state,
                launched_at, ready_at, ip, detail, restarts, updated_at)
             VALUES ($1, '', '', '', 'terminated', $2, $2, NULL, 'never launched', 0, $2)
             ON CONFLICT (instance_id) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(now)
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        sqlx::query(
            "UPDATE sim_machines SET state = 'terminating', ready_at = $1, updated_at = $2
             WHERE instance_id = $3 AND state NOT IN ('terminating','terminated')",
        )
        .bind(now + teardown)
        .bind(now)
        .bind(id.to_string())
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        if hang {
            self.hang().await;
        }
        match self.row(id).await? {
            Some((state, _, ready, _, _)) if state == "terminating" && now < ready => {
                Ok(MachineState::Terminating)
            }
            Some((state, ..)) if state == "terminating" => {
                self.finish_termination(id).await?;
                Ok(MachineState::Gone)
            }
            _ => Ok(MachineState::Gone),
        }
    }
}
