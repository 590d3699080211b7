//! `hosts`: the operator's own servers, rented out through the same API.
//!
//! Each `[[hosts]]` table of the config file names one machine and how to
//! reach it over SSH with a management key. Parasol discovers what the
//! machine is (GPUs, CPUs, memory, disk, OS) with the commands of the
//! `parasol-hostinfo` crate and sells it whole: one host is one instance.
//!
//! Instance types are named after what discovery finds, so that identical
//! machines pool into one type:
//! - one GPU: the GPU type (`H200`, `A100_80G`);
//! - several GPUs: type, `x`, count (`H100x8`);
//! - no GPU: `CPUx` and the logical CPU count (`CPUx16`).
//!
//! Hosts of the same cloud and type are one offer. Its configuration shows
//! the smallest figure any of them has (so it never promises more than the
//! host a renter gets), its OS options are the union, its price the highest
//! `hourly_price` among them, and each region offers a slot per host of the
//! type that is reachable or rented (the catalog subtracts the instances
//! holding rented ones). A free host that stops answering stays listed, with
//! no slot, so the catalog does not flicker; a host never reached is not
//! listed until it is. `GET /admin/hosts` says why a host is not offered.
//!
//! Allocation is durable: the `host_allocations` table maps Parasol's
//! instance id to the host, with the host as a unique key, so a retried
//! launch gets the same host again and two instances never share one.
//!
//! Parasol never stores the management key: the config names a file, and
//! only the `ssh` client reads it.

pub(crate) mod remote;
mod ssh;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use async_trait::async_trait;
use parasol_api::{BootTime, InstanceTypeConfiguration};
use parasol_hostinfo::{build_spec, HostSpec};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::{Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError};
use super::{ProviderError::Transient, RegionOffer};
use crate::clock::Clock;
use crate::store::Store;
use ssh::{SshError, Target};

/// How often hosts are examined again.
const DISCOVERY_PERIOD: Duration = Duration::from_secs(60);
/// Bound on one discovery session.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one setup, restart or teardown session; below the reconciler's
/// own 30 s bound on a provider call, so the answer is ours, not a timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// Bound on a boot-id probe of a rebooting host.
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// One `[[hosts]]` table of the config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Address Parasol and renters connect to.
    pub address: String,
    /// SSH port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The login user: Parasol manages the host as this user, and renters
    /// log in as this user.
    pub user: String,
    /// Private key Parasol manages the host with (read by `ssh` only).
    pub key_path: PathBuf,
    /// Known-hosts file the host's key must be in.
    pub known_hosts: PathBuf,
    /// The cloud name the host is sold under.
    #[serde(default = "default_cloud")]
    pub cloud: String,
    pub region: String,
    /// Defaults to `region`.
    pub region_display_name: Option<String>,
    /// Cents per hour.
    #[serde(default)]
    pub hourly_price: i64,
    /// Lets a restart reboot the host (with `sudo -n reboot` or `reboot`);
    /// otherwise a restart only restarts the launch configuration.
    #[serde(default)]
    pub allow_reboot: bool,
}

fn default_port() -> u16 {
    22
}

fn default_cloud() -> String {
    "hosts".to_owned()
}

impl HostConfig {
    /// The host's identity in the allocation table: address and port.
    pub fn id(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }

    fn target(&self) -> Target {
        Target {
            address: self.address.clone(),
            port: self.port,
            user: self.user.clone(),
            key_path: self.key_path.clone(),
            known_hosts: self.known_hosts.clone(),
        }
    }

    fn label(&self) -> String {
        self.target().label()
    }
}

/// Checks the `[[hosts]]` tables of a config file, naming the table at
/// fault.
pub fn validate(hosts: &[HostConfig]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, h) in hosts.iter().enumerate() {
        let at = format!("hosts[{i}] ({})", h.id());
        let word = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if h.address.trim().is_empty() || h.address.starts_with('-') {
            bail!("{at}: address must be a host name or IP address");
        }
        if h.user.is_empty() || h.user.starts_with('-') || !word(&h.user) {
            bail!("{at}: user must be a login name");
        }
        if !word(&h.cloud) {
            bail!("{at}: cloud must be letters, digits, '-', '_' or '.'");
        }
        if !word(&h.region) {
            bail!("{at}: region must be letters, digits, '-', '_' or '.'");
        }
        if h.hourly_price < 0 {
            bail!("{at}: hourly_price is in cents and must not be negative");
        }
        if h.port == 0 {
            bail!("{at}: port must be 1 to 65535");
        }
        if !seen.insert(h.id()) {
            bail!("{at}: the host is listed twice");
        }
    }
    Ok(())
}

/// What the last look at a host found.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// The last configuration read; kept while the host is unreachable.
    spec: Option<HostSpec>,
    reachable: bool,
    /// Why the host is not offered, when it is not.
    detail: Option<String>,
    checked_at_ms: Option<i64>,
}

/// One host as `GET /admin/hosts` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostStatus {
    /// `address:port`, the key of the allocation table.
    pub host: String,
    pub cloud: String,
    pub region: String,
    pub ssh_user: String,
    /// Type the host is sold as; absent until discovery first succeeds.
    pub shade_instance_type: Option<String>,
    /// Whether the last discovery reached the host and read it.
    pub reachable: bool,
    /// Why not, in words.
    pub detail: Option<String>,
    /// When the host was last examined (ms since the epoch).
    pub checked_at: Option<i64>,
    /// The instance holding the host.
    pub instance_id: Option<Uuid>,
}

/// A host of an offer, with what discovery found.
type Member<'a> = (&'a HostConfig, &'a Seen, &'a HostSpec);

struct Inner {
    store: Store,
    clock: Arc<Clock>,
    hosts: Vec<HostConfig>,
    seen: Mutex<Vec<Seen>>,
    last_round: Mutex<Option<Instant>>,
    discovering: AtomicBool,
}

/// The hosts provider.
pub struct Hosts {
    inner: Arc<Inner>,
}

/// The name of a host's instance type; see the module documentation.
pub fn shade_instance_type(spec: &HostSpec) -> String {
    match spec.num_gpus {
        0 => format!("CPUx{}", spec.vcpus),
        1 => spec.gpu_type.clone(),
        n => format!("{}x{n}", spec.gpu_type),
    }
}

impl Hosts {
    /// A provider over the configured hosts; nothing is contacted until the
    /// first [`Provider::offers`].
    pub fn new(store: Store, clock: Arc<Clock>, hosts: Vec<HostConfig>) -> Self {
        let seen = vec![Seen::default(); hosts.len()];
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                hosts,
                seen: Mutex::new(seen),
                last_round: Mutex::new(None),
                discovering: AtomicBool::new(false),
            }),
        }
    }

    /// The clouds the configured hosts are sold under.
    pub fn clouds(hosts: &[HostConfig]) -> Vec<String> {
        let mut clouds: Vec<String> = hosts.iter().map(|h| h.cloud.clone()).collect();
        clouds.sort();
        clouds.dedup();
        clouds
    }

    /// Every configured host with what Parasol knows of it.
    pub async fn statuses(&self) -> Result<Vec<HostStatus>, ProviderError> {
        let allocations = self.inner.allocations().await?;
        let seen = self.inner.seen.lock().expect("poisoned").clone();
        Ok(self
            .inner
            .hosts
            .iter()
            .zip(seen)
            .map(|(h, s)| HostStatus {
                host: h.id(),
                cloud: h.cloud.clone(),
                region: h.region.clone(),
                ssh_user: h.user.clone(),
                shade_instance_type: s.spec.as_ref().map(shade_instance_type),
                reachable: s.reachable,
                detail: s.detail,
                checked_at: s.checked_at_ms,
                instance_id: allocations
                    .iter()
                    .find(|(_, host)| *host == h.id())
                    .map(|(id, _)| *id),
            })
            .collect())
    }
}

impl Inner {
    /// Examines every host at once and records what each is.
    async fn discover_all(&self) {
        let results =
            futures::future::join_all(self.hosts.iter().map(|h| discover(h.target()))).await;
        let now = self.clock.now_ms();
        let mut seen = self.seen.lock().expect("poisoned");
        for ((h, result), s) in self.hosts.iter().zip(results).zip(seen.iter_mut()) {
            s.checked_at_ms = Some(now);
            match result {
                Ok(spec) => {
                    s.spec = Some(spec);
                    s.reachable = true;
                    s.detail = None;
                }
                Err(why) => {
                    if s.reachable || s.detail.as_deref() != Some(why.as_str()) {
                        tracing::warn!(host = %h.label(), reason = %why, "host is not offered");
                    }
                    s.reachable = false;
                    s.detail = Some(why);
                }
            }
        }
        *self.last_round.lock().expect("poisoned") = Some(Instant::now());
    }

    /// The offers, where `held` lists the hosts allocated to an instance.
    /// A held host counts as a slot even while unreachable, because the
    /// catalog subtracts the instance holding it; leaving it out as well
    /// would hide a free host of the same type.
    fn offers(&self, held: &[String]) -> Vec<Offer> {
        let seen = self.seen.lock().expect("poisoned").clone();
        // BTreeMap: a stable catalog order.
        let mut groups: BTreeMap<(String, String), Vec<Member>> = BTreeMap::new();
        for (h, s) in self.hosts.iter().zip(&seen) {
            if let Some(spec) = &s.spec {
                groups
                    .entry((h.cloud.clone(), shade_instance_type(spec)))
                    .or_default()
                    .push((h, s, spec));
            }
        }
        groups
            .into_iter()
            .map(|((cloud, shade), members)| {
                let min = |f: fn(&HostSpec) -> u32| {
                    i64::from(members.iter().map(|(_, _, s)| f(s)).min().unwrap_or(0))
                };
                let first = members[0].2;
                let mut os_options: Vec<String> = Vec::new();
                for (_, _, s) in &members {
                    for o in &s.os_options {
                        if !os_options.contains(o) {
                            os_options.push(o.clone());
                        }
                    }
                }
                let mut regions: Vec<RegionOffer> = Vec::new();
                for (h, s, _) in &members {
                    let slots = i64::from(s.reachable || held.contains(&h.id()));
                    match regions.iter_mut().find(|r| r.region == h.region) {
                        Some(r) => {
                            if let Capacity::Slots(n) = &mut r.capacity {
                                *n += slots;
                            }
                        }
                        None => regions.push(RegionOffer {
                            region: h.region.clone(),
                            display_name: h
                                .region_display_name
                                .clone()
                                .unwrap_or_else(|| h.region.clone()),
                            capacity: Capacity::Slots(slots),
                            spot_price: None,
                        }),
                    }
                }
                Offer {
                    cloud,
                    cloud_instance_type: shade.clone(),
                    shade_instance_type: shade,
                    configuration: InstanceTypeConfiguration {
                        memory_in_gb: min(|s| s.memory_in_gb),
                        storage_in_gb: min(|s| s.storage_in_gb),
                        vcpus: min(|s| s.vcpus),
                        num_gpus: i64::from(first.num_gpus),
                        gpu_type: first.gpu_type.clone(),
                        interconnect: first.interconnect.clone(),
                        nvlink: members.iter().all(|(_, _, s)| s.nvlink),
                        vram_per_gpu_in_gb: min(|s| s.vram_per_gpu_in_gb),
                        os_options,
                        gpu_manufacturer: first.gpu_manufacturer.clone(),
                    },
                    hourly_price: members
                        .iter()
                        .map(|(h, _, _)| h.hourly_price)
                        .max()
                        .unwrap_or(0),
                    deployment_type: "baremetal".to_owned(),
                    // The machine is already up: only the key and the
                    // launch configuration are installed.
                    boot_time: Some(BootTime {
                        min_boot_in_sec: 1,
                        max_boot_in_sec: 30,
                    }),
                    regions,
                    ssh_user: members[0].0.user.clone(),
                    ssh_port: i64::from(members[0].0.port),
                }
            })
            .collect()
    }

    fn host(&self, id: &str) -> Option<&HostConfig> {
        self.hosts.iter().find(|h| h.id() == id)
    }

    fn spec_of(&self, host: &HostConfig) -> Option<HostSpec> {
        let i = self.hosts.iter().position(|h| h == host)?;
        self.seen.lock().expect("poisoned")[i].spec.clone()
    }

    async fn allocations(&self) -> Result<Vec<(Uuid, String)>, ProviderError> {
        let rows = sqlx::query("SELECT instance_id, host FROM host_allocations")
            .fetch_all(self.store.pool())
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(db)?;
                Ok((
                    Uuid::parse_str(&id).map_err(|e| ProviderError::Permanent(e.to_string()))?,
                    r.try_get(1).map_err(db)?,
                ))
            })
            .collect()
    }

    async fn allocation(&self, id: Uuid) -> Result<Option<Allocation>, ProviderError> {
        let row =
            sqlx::query("SELECT host, state, boot_id FROM host_allocations WHERE instance_id = $1")
                .bind(id.to_string())
                .fetch_optional(self.store.pool())
                .await
                .map_err(db)?;
        row.map(|r| {
            Ok(Allocation {
                host: r.try_get(0).map_err(db)?,
                state: r.try_get(1).map_err(db)?,
                boot_id: r.try_get(2).map_err(db)?,
            })
        })
        .transpose()
    }

    /// Claims `host` for `id`; a no-op when either already has a claim,
    /// so the caller reads back which claim won.
    async fn claim(&self, id: Uuid, host: &HostConfig) -> Result<(), ProviderError> {
        let now = self.clock.now_ms();
        sqlx::query(
            "INSERT INTO host_allocations (instance_id, host, state, boot_id, created_at, updated_at)
             VALUES ($1, $2, 'launching', NULL, $3, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(host.id())
        .bind(now)
        .execute(self.store.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn set_state(
        &self,
        id: Uuid,
        state: &str,
        boot_id: Option<&str>,
    ) -> Result<(), ProviderError> {
        sqlx::query(
            "UPDATE host_allocations SET state = $1, boot_id = $2, updated_at = $3 WHERE instance_id = $4",
        )
        .bind(state)
        .bind(boot_id)
        .bind(self.clock.now_ms())
        .bind(id.to_string())
        .execute(self.store.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn release(&self, id: Uuid) -> Result<(), ProviderError> {
        sqlx::query("DELETE FROM host_allocations WHERE instance_id = $1")
            .bind(id.to_string())
            .execute(self.store.pool())
            .await
            .map_err(db)?;
        Ok(())
    }

    /// The host allocated to `id`, claiming a free one first when there is
    /// none yet.
    async fn allocate(&self, req: &LaunchRequest) -> Result<&HostConfig, ProviderError> {
        if let Some(a) = self.allocation(req.instance_id).await? {
            return self.host(&a.host).ok_or_else(|| gone_host(&a.host));
        }
        let candidates: Vec<&HostConfig> = {
            let seen = self.seen.lock().expect("poisoned");
            self.hosts
                .iter()
                .zip(seen.iter())
                .filter(|(h, s)| {
                    h.cloud == req.cloud
                        && h.region == req.region
                        && s.reachable
                        && s.spec.as_ref().is_some_and(|spec| {
                            shade_instance_type(spec) == req.shade_instance_type
                                && (req.os.is_empty() || spec.os_options.contains(&req.os))
                        })
                })
                .map(|(h, _)| h)
                .collect()
        };
        for h in candidates {
            self.claim(req.instance_id, h).await?;
            if let Some(a) = self.allocation(req.instance_id).await? {
                return self.host(&a.host).ok_or_else(|| gone_host(&a.host));
            }
        }
        Err(ProviderError::Capacity(format!(
            "every {} host in {} is taken or unreachable",
            req.shade_instance_type, req.region
        )))
    }
}

struct Allocation {
    host: String,
    state: String,
    boot_id: Option<String>,
}

fn db(e: sqlx::Error) -> ProviderError {
    Transient(format!("host allocations: {e}"))
}

fn gone_host(host: &str) -> ProviderError {
    ProviderError::Permanent(format!(
        "host {host} was removed from Parasol's configuration"
    ))
}

/// Runs discovery on one host and reads its configuration.
async fn discover(target: Target) -> Result<HostSpec, String> {
    let out = ssh::run(&target, &remote::discovery_script(), DISCOVERY_TIMEOUT)
        .await
        .map_err(|e| match e {
            SshError::Connect(m) => m,
            other => format!("discovery on {} failed: {other}", target.label()),
        })?;
    let sections = remote::Sections::parse(&out);
    build_spec(&sections.as_discovery()).map_err(|e| {
        format!(
            "discovery on {} gave output Parasol cannot read: {e}",
            target.label()
        )
    })
}

/// A host that did not answer while Parasol was changing it: worth
/// retrying, and the message says what is pending.
fn unreachable(host: &HostConfig, doing: &str, e: &SshError) -> ProviderError {
    let why = match e {
        SshError::Connect(m) => m.clone(),
        other => format!("{}: {other}", host.label()),
    };
    Transient(format!(
        "{why}; {doing} is not finished and will be retried"
    ))
}

#[async_trait]
impl Provider for Hosts {
    fn name(&self) -> &'static str {
        "hosts"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        let last = *self.inner.last_round.lock().expect("poisoned");
        match last {
            // The first call waits, so the catalog is complete at start.
            None => self.inner.discover_all().await,
            Some(at) if at.elapsed() >= DISCOVERY_PERIOD => {
                if !self.inner.discovering.swap(true, Ordering::AcqRel) {
                    let inner = self.inner.clone();
                    tokio::spawn(async move {
                        inner.discover_all().await;
                        inner.discovering.store(false, Ordering::Release);
                    });
                }
            }
            Some(_) => {}
        }
        let held: Vec<String> = self
            .inner
            .allocations()
            .await?
            .into_iter()
            .map(|(_, host)| host)
            .collect();
        Ok(self.inner.offers(&held))
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        let inner = &self.inner;
        let host = inner.allocate(req).await?;
        let has_gpus = inner.spec_of(host).is_some_and(|s| s.num_gpus > 0);
        let workload = remote::workload(
            req.instance_id,
            req.launch_configuration.as_ref(),
            &req.envs,
            has_gpus,
        )
        .map_err(ProviderError::Permanent)?;
        let key = req
            .ssh_public_key
            .as_deref()
            .map(|k| remote::key_line(k, req.instance_id))
            .transpose()
            .map_err(ProviderError::Permanent)?;
        let script = remote::setup_script(req.instance_id, key.as_deref(), workload.as_ref());
        match ssh::run(&host.target(), &script, CALL_TIMEOUT).await {
            Ok(_) => {}
            Err(SshError::Exit { code, .. }) if code == remote::EXIT_NO_DOCKER => {
                return Err(ProviderError::Permanent(format!(
                    "Docker is not installed on host {}, and this instance's launch configuration is a docker one",
                    host.id()
                )));
            }
            Err(e) => {
                return Err(unreachable(
                    host,
                    "installing the SSH key and starting the launch configuration",
                    &e,
                ))
            }
        }
        inner.set_state(req.instance_id, "running", None).await?;
        Ok(Launched {
            cloud_assigned_id: host.id(),
        })
    }

    async fn describe(&self, instance_id: Uuid) -> Result<MachineState, ProviderError> {
        let inner = &self.inner;
        let Some(a) = inner.allocation(instance_id).await? else {
            return Ok(MachineState::Gone);
        };
        let Some(host) = inner.host(&a.host) else {
            return Ok(MachineState::Failed {
                reason: format!("host {} was removed from Parasol's configuration", a.host),
            });
        };
        let running = || MachineState::Running {
            ip: host.address.clone(),
            ssh_port: i64::from(host.port),
            ssh_user: host.user.clone(),
            placement: None,
        };
        match a.state.as_str() {
            "running" => Ok(running()),
            "rebooting" => {
                // Up again once the boot id differs from the one recorded
                // before the reboot; until then, and while it does not
                // answer, it is booting.
                let Ok(out) =
                    ssh::run(&host.target(), &remote::boot_id_script(), PROBE_TIMEOUT).await
                else {
                    return Ok(MachineState::Booting);
                };
                if a.boot_id.as_deref() == Some(out.trim()) {
                    return Ok(MachineState::Booting);
                }
                match ssh::run(
                    &host.target(),
                    &remote::start_script(instance_id),
                    CALL_TIMEOUT,
                )
                .await
                {
                    Ok(_) => {
                        inner.set_state(instance_id, "running", None).await?;
                        Ok(running())
                    }
                    Err(_) => Ok(MachineState::Booting),
                }
            }
            _ => Ok(MachineState::Provisioning),
        }
    }

    async fn restart(&self, instance_id: Uuid) -> Result<(), ProviderError> {
        let inner = &self.inner;
        let Some(a) = inner.allocation(instance_id).await? else {
            return Err(ProviderError::Permanent(
                "the instance holds no host".into(),
            ));
        };
        let host = inner.host(&a.host).ok_or_else(|| gone_host(&a.host))?;
        if host.allow_reboot {
            let out = ssh::run(
                &host.target(),
                &remote::reboot_script(instance_id),
                CALL_TIMEOUT,
            )
            .await
            .map_err(|e| unreachable(host, "the reboot", &e))?;
            let boot_id = out.lines().last().unwrap_or("").trim().to_owned();
            inner
                .set_state(instance_id, "rebooting", Some(&boot_id))
                .await
        } else {
            ssh::run(
                &host.target(),
                &remote::restart_script(instance_id),
                CALL_TIMEOUT,
            )
            .await
            .map_err(|e| unreachable(host, "restarting the launch configuration", &e))?;
            Ok(())
        }
    }

    async fn terminate(&self, instance_id: Uuid) -> Result<MachineState, ProviderError> {
        let inner = &self.inner;
        let Some(a) = inner.allocation(instance_id).await? else {
            return Ok(MachineState::Gone);
        };
        let Some(host) = inner.host(&a.host) else {
            // Nothing can reach it any more; keeping the claim would only
            // retry forever.
            tracing::warn!(instance = %instance_id, host = %a.host, "host no longer configured; releasing its allocation without cleaning it");
            inner.release(instance_id).await?;
            return Ok(MachineState::Gone);
        };
        ssh::run(
            &host.target(),
            &remote::teardown_script(instance_id),
            CALL_TIMEOUT,
        )
        .await
        .map_err(|e| {
            unreachable(
                host,
                "removing the instance's SSH key and stopping its launch configuration",
                &e,
            )
        })?;
        inner.release(instance_id).await?;
        Ok(MachineState::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(gpu_type: &str, num_gpus: u32, vcpus: u32) -> HostSpec {
        HostSpec {
            gpu_type: gpu_type.into(),
            num_gpus,
            vram_per_gpu_in_gb: if num_gpus > 0 { 80 } else { 0 },
            vcpus,
            memory_in_gb: 64,
            storage_in_gb: 500,
            interconnect: if num_gpus > 0 { "sxm" } else { "none" }.into(),
            nvlink: num_gpus > 1,
            gpu_manufacturer: if num_gpus > 0 { "nvidia" } else { "none" }.into(),
            os_options: vec!["ubuntu22.04".into()],
        }
    }

    #[test]
    fn types_are_named_after_gpu_type_and_count() {
        assert_eq!(shade_instance_type(&spec("H200", 1, 16)), "H200");
        assert_eq!(shade_instance_type(&spec("H100", 8, 192)), "H100x8");
        assert_eq!(shade_instance_type(&spec("none", 0, 16)), "CPUx16");
    }

    fn host(address: &str) -> HostConfig {
        toml::from_str(&format!(
            "address = \"{address}\"\nuser = \"ops\"\nkey_path = \"/k\"\nknown_hosts = \"/kh\"\nregion = \"rack-1\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_host_table_gets_the_documented_defaults() {
        let h = host("10.0.0.5");
        assert_eq!(h.port, 22);
        assert_eq!(h.cloud, "hosts");
        assert_eq!(h.hourly_price, 0);
        assert!(!h.allow_reboot);
        assert_eq!(h.region_display_name, None);
        validate(&[h]).unwrap();
        let unknown: Result<HostConfig, _> = toml::from_str(
            "address = \"a\"\nuser = \"u\"\nkey_path = \"/k\"\nknown_hosts = \"/kh\"\nregion = \"r\"\npassword = \"x\"\n",
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn duplicate_hosts_and_bad_fields_are_refused_by_name() {
        let err = validate(&[host("10.0.0.5"), host("10.0.0.5")]).unwrap_err();
        assert!(err.to_string().contains("hosts[1] (10.0.0.5:22)"), "{err}");
        let mut h = host("10.0.0.6");
        h.hourly_price = -1;
        assert!(validate(&[h])
            .unwrap_err()
            .to_string()
            .contains("hourly_price"));
        let mut h = host("10.0.0.7");
        h.user = "-oProxyCommand=x".into();
        assert!(validate(&[h]).unwrap_err().to_string().contains("user"));
    }

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(&crate::store::StoreOptions {
            url: format!("sqlite://{}", dir.path().join("t.db").display()),
            max_connections: 2,
        })
        .await
        .unwrap()
    }

    fn request(instance_id: Uuid) -> LaunchRequest {
        LaunchRequest {
            instance_id,
            name: "t".into(),
            cloud: "hosts".into(),
            region: "rack-1".into(),
            shade_instance_type: "CPUx16".into(),
            cloud_instance_type: "CPUx16".into(),
            os: "ubuntu22.04".into(),
            rental_type: parasol_api::RentalType::OnDemand,
            ssh_public_key: None,
            launch_configuration: None,
            envs: Vec::new(),
            cluster_id: None,
            volumes: Vec::new(),
            agent: None,
        }
    }

    #[tokio::test]
    async fn a_retried_launch_gets_its_host_again_and_no_host_serves_two_instances() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = Hosts::new(
            store(&dir).await,
            Arc::new(Clock::system()),
            vec![host("10.0.0.1"), host("10.0.0.2")],
        );
        {
            let mut seen = hosts.inner.seen.lock().unwrap();
            for s in seen.iter_mut() {
                s.spec = Some(spec("none", 0, 16));
                s.reachable = true;
            }
        }
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let first = hosts.inner.allocate(&request(a)).await.unwrap().id();
        assert_eq!(first, "10.0.0.1:22");
        assert_eq!(hosts.inner.allocate(&request(a)).await.unwrap().id(), first);
        let second = hosts.inner.allocate(&request(b)).await.unwrap().id();
        assert_eq!(second, "10.0.0.2:22");
        match hosts.inner.allocate(&request(c)).await {
            Err(ProviderError::Capacity(m)) => assert!(m.contains("CPUx16"), "{m}"),
            other => panic!("a third instance got {:?}", other.map(|h| h.id())),
        }
        // Freed by terminate, a host serves the next instance.
        hosts.inner.release(a).await.unwrap();
        assert_eq!(hosts.inner.allocate(&request(c)).await.unwrap().id(), first);
        let held = hosts.statuses().await.unwrap();
        assert_eq!(held[0].instance_id, Some(c));
        assert_eq!(held[1].instance_id, Some(b));
    }

    #[tokio::test]
    async fn identical_hosts_pool_into_one_offer_with_a_slot_per_reachable_host() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut a = host("10.0.0.1");
        a.hourly_price = 200;
        let mut b = host("10.0.0.2");
        b.hourly_price = 300;
        let c = host("10.0.0.3");
        let hosts = Hosts::new(store, Arc::new(Clock::system()), vec![a, b, c]);
        {
            let mut seen = hosts.inner.seen.lock().unwrap();
            let mut small = spec("H100", 8, 192);
            small.memory_in_gb = 32;
            seen[0] = Seen {
                spec: Some(spec("H100", 8, 192)),
                reachable: true,
                ..Seen::default()
            };
            seen[1] = Seen {
                spec: Some(small),
                reachable: false,
                detail: Some("down".into()),
                ..Seen::default()
            };
            seen[2] = Seen::default();
        }
        let offers = hosts.inner.offers(&[]);
        assert_eq!(offers.len(), 1, "the never-reached host is not listed");
        let o = &offers[0];
        assert_eq!(o.shade_instance_type, "H100x8");
        assert_eq!(o.hourly_price, 300);
        assert_eq!(o.configuration.memory_in_gb, 32);
        assert_eq!(o.regions.len(), 1);
        assert_eq!(o.regions[0].capacity, Capacity::Slots(1));
        assert_eq!(o.regions[0].display_name, "rack-1");
        // Rented and then unreachable, a host still counts: the catalog
        // subtracts its instance, and the other host stays available.
        let offers = hosts.inner.offers(&["10.0.0.2:22".to_string()]);
        assert_eq!(offers[0].regions[0].capacity, Capacity::Slots(2));
    }
}
