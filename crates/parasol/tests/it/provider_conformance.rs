//! One set of provider properties, each written once as a generic function
//! over a [`Subject`] (a provider with a way to reach behind it: plant a
//! machine, inject a fault, see what is live), and run against every
//! provider by the `conformance!` macro, so nextest names each pair:
//! `provider_conformance::runpod::launch_twice_is_one_machine`.
//!
//! The properties drive the [`Provider`] trait directly, as the reconciler
//! does. The HTTP clouds run against their fakes (`fakes/`); adding a cloud
//! is one [`FakeCloud`] impl and one line in the macro call at the bottom.
//!
//! A subject hands out fresh adapters too ([`Subject::fresh_provider`]):
//! a new instance for the same deployment and the same provider, with
//! nothing remembered, as after a restart. `a_cold_restart_finds_every_machine`
//! drives every machine through one, since what a process remembers is
//! gone exactly when a provider must still find its machines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parasol::api::RentalType;
use parasol::clock::Clock;
use parasol::providers::clouds::aws::{self as aws_adapter, Aws as AwsAdapter};
use parasol::providers::clouds::azure::{Azure as AzureAdapter, AzureAuth, AzureConfig};
use parasol::providers::clouds::digitalocean::{DigitalOcean as DoAdapter, DigitalOceanConfig};
use parasol::providers::clouds::gcp::Gcp as GcpAdapter;
use parasol::providers::clouds::hyperstack::{Hyperstack as HsAdapter, HyperstackConfig};
use parasol::providers::clouds::lambda::{Lambda as LambdaAdapter, LambdaConfig};
use parasol::providers::clouds::runpod::{Runpod as RunpodAdapter, RunpodConfig};
use parasol::providers::clouds::vastai::{Vastai as VastAdapter, VastaiConfig};
use parasol::providers::clouds::verda::{Verda as VerdaAdapter, VerdaConfig};
use parasol::providers::clouds::{Marker, Secret};
use parasol::providers::hosts::{HostConfig, Hosts};
use parasol::providers::sim::{Sim, SimConfig};
use parasol::providers::{
    sweep, Capacity, LaunchRequest, LaunchVolume, MachineState, Offer, Provider, ProviderError,
    Providers, VolumeRef, VolumeRequest, VolumeState,
};
use uuid::Uuid;

use crate::fakes::aws_proxy::{Fault, Proxy, ANY_ACTION};
use crate::fakes::azure::{self as azf, Azure};
use crate::fakes::digitalocean::{self as dof, DigitalOcean};
use crate::fakes::gcp::{self as gcf, Gcp};
use crate::fakes::hyperstack::{self as hsf, Hyperstack};
use crate::fakes::lambda::{self as laf, Lambda};
use crate::fakes::moto::{self, Moto};
use crate::fakes::runpod::{self as rpf, Runpod};
use crate::fakes::vastai::{self as vaf, Vastai};
use crate::fakes::verda::{self as vef, Verda};
use crate::fakes::{Cloud, FakeServer, Timing};
use crate::harness::public_key;

/// The deployment every subject's adapter belongs to.
const DEPLOYMENT: &str = "c0ffee0042";
/// Another deployment on the same cloud account.
const OTHER_DEPLOYMENT: &str = "0123456789";

/// A provider under test, and the levers behind it. The fault levers are
/// for providers that talk HTTP; the others never get those properties.
#[async_trait::async_trait]
pub trait Subject: Send + Sync {
    /// The adapter, marking machines as [`DEPLOYMENT`]'s.
    fn provider(&self) -> Arc<dyn Provider>;
    /// A new adapter for the same deployment and provider, remembering
    /// nothing, as a restarted process makes.
    fn fresh_provider(&self) -> Arc<dyn Provider>;
    /// How many machines the provider can hold at once for [`Subject::request`].
    fn room(&self) -> usize {
        2
    }
    /// Whether [`Subject::plant`] can put a machine at the provider behind
    /// Parasol's back (the sim and hosts have no such machines).
    fn plants(&self) -> bool {
        true
    }
    /// A launch the provider accepts.
    fn request(&self, id: Uuid) -> LaunchRequest;
    /// Provider-side ids of the machines that exist and are not being torn
    /// down.
    async fn live(&self) -> Vec<String>;
    /// Puts a running machine named `name` at the provider, made by
    /// someone else; returns its provider-side id.
    async fn plant(&self, name: &str) -> String;
    /// Makes launches of `req`'s type and region fail for capacity.
    async fn refuse_capacity(&self, req: &LaunchRequest);
    /// The next launch is carried out but its answer is lost (500); false
    /// where the provider has no answer to lose.
    fn lose_next_launch_answer(&self) -> bool;
    /// The next request gets 429 (with `Retry-After` where the provider
    /// sends it).
    fn rate_limit_next(&self) {
        unimplemented!("only for HTTP providers")
    }
    /// The next request gets 500.
    fn server_error_next(&self) {
        unimplemented!("only for HTTP providers")
    }
    /// How many 429s are still to be served.
    fn rate_limits_pending(&self) -> u32 {
        unimplemented!("only for HTTP providers")
    }
    /// Whether a launch returns before the machine is up (clouds, the sim);
    /// the hosts provider sets a host up within the launch.
    fn boots_after_launch(&self) -> bool {
        true
    }
    /// Every GPU type the cloud lists, in its own numbers (clouds only).
    async fn listing(&self) -> Vec<Listed> {
        unimplemented!("only for clouds")
    }
    /// The first-boot script the cloud received for `id`'s machine, as the
    /// machine would run it (clouds only).
    async fn boot_script(&self, _id: Uuid) -> Option<String> {
        unimplemented!("only for clouds")
    }
    /// Whether the cloud's machines run the launch configuration: the
    /// container clouds (RunPod, Vast.ai) run only the agent.
    fn runs_launch_configuration(&self) -> bool {
        true
    }
}

/// One GPU type as a cloud lists it, in the cloud's own numbers (read from
/// what its fake serves, or from moto): what the catalog properties hold
/// the adapter's offers to.
#[derive(Debug, Clone)]
pub struct Listed {
    /// `cloud_instance_type` of the offer for it.
    pub cloud_type: String,
    /// Shadeform's `gpu_type` of its GPU; `None` for a GPU Shadeform has no
    /// name for, which the adapter counts as unmapped and does not offer.
    pub gpu: Option<&'static str>,
    /// `gpu_manufacturer`: `nvidia` or `AMD`.
    pub manufacturer: &'static str,
    pub gpus: i64,
    /// GB per GPU.
    pub vram: i64,
    pub vcpus: i64,
    /// GB.
    pub memory: i64,
    /// Regions where the cloud reports stock for the type.
    pub in_stock: Vec<String>,
}

/// A fake cloud the generic HTTP subject knows how to drive.
pub trait FakeCloud: Cloud + Default + Sized {
    /// The adapter, pointed at the fake's root URL.
    fn adapter(url: &str, deployment: &str) -> Arc<dyn Provider>;
    /// `(cloud, region, shade type, cloud type)` of a launch that fits.
    fn launchable() -> (&'static str, &'static str, &'static str, &'static str);
    fn set_timing(&mut self, t: Timing);
    fn plant_named(&mut self, name: &str) -> String;
    fn live_ids(&self) -> Vec<String>;
    fn refuse(&mut self, cloud_type: &str, region: &str);
    /// `"METHOD /path"` of the launch request.
    fn launch_line(&self) -> String;
    /// Whether the cloud sends `Retry-After` with its 429s.
    fn sends_retry_after() -> bool {
        true
    }
    /// Every GPU type the fake lists, in its own numbers.
    fn listing(&self) -> Vec<Listed>;
    /// The first-boot script a request body carries, in the cloud's field
    /// for it, decoded; `None` for other requests.
    fn boot_script_in(_body: &serde_json::Value) -> Option<String> {
        None
    }
    /// See [`Subject::runs_launch_configuration`].
    fn runs_launch_configuration() -> bool {
        true
    }
}

/// Slow enough that every boot phase is seen by polling.
fn timing() -> Timing {
    Timing {
        boot: Duration::from_millis(600),
        ip_after: Duration::from_millis(1200),
        teardown: Duration::from_millis(300),
    }
}

/// A fake cloud and its adapter.
pub struct Http<C: FakeCloud> {
    fake: FakeServer<C>,
    provider: Arc<dyn Provider>,
}

impl<C: FakeCloud> Http<C> {
    async fn start() -> Self {
        let mut cloud = C::default();
        cloud.set_timing(timing());
        let fake = FakeServer::start(cloud).await;
        let provider = C::adapter(&fake.url, DEPLOYMENT);
        Http { fake, provider }
    }
}

#[async_trait::async_trait]
impl<C: FakeCloud + Send> Subject for Http<C> {
    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn fresh_provider(&self) -> Arc<dyn Provider> {
        C::adapter(&self.fake.url, DEPLOYMENT)
    }

    fn request(&self, id: Uuid) -> LaunchRequest {
        let (cloud, region, shade, cloud_type) = C::launchable();
        LaunchRequest {
            instance_id: id,
            name: "conformance".into(),
            cloud: cloud.into(),
            region: region.into(),
            shade_instance_type: shade.into(),
            cloud_instance_type: cloud_type.into(),
            os: "ubuntu22.04".into(),
            rental_type: RentalType::OnDemand,
            ssh_public_key: Some(public_key()),
            launch_configuration: None,
            envs: vec![],
            cluster_id: None,
            volumes: vec![],
            agent: None,
        }
    }

    async fn live(&self) -> Vec<String> {
        self.fake.with(|c| c.live_ids())
    }

    async fn plant(&self, name: &str) -> String {
        self.fake.with(|c| c.plant_named(name))
    }

    async fn refuse_capacity(&self, req: &LaunchRequest) {
        self.fake
            .with(|c| c.refuse(&req.cloud_instance_type, &req.region));
    }

    fn lose_next_launch_answer(&self) -> bool {
        let line = self.fake.with(|c| c.launch_line());
        self.fake.faults(|f| {
            f.lose_answer.insert(line, 1);
        });
        true
    }

    fn rate_limit_next(&self) {
        self.fake.faults(|f| {
            f.rate_limit_next = 1;
            f.rate_limit_without_retry_after = !C::sends_retry_after();
        });
    }

    fn server_error_next(&self) {
        self.fake.faults(|f| f.server_error_next = 1);
    }

    fn rate_limits_pending(&self) -> u32 {
        self.fake.faults(|f| f.rate_limit_next)
    }

    async fn listing(&self) -> Vec<Listed> {
        self.fake.with(|c| c.listing())
    }

    async fn boot_script(&self, id: Uuid) -> Option<String> {
        self.fake
            .requests()
            .iter()
            .filter_map(|r| C::boot_script_in(&r.body))
            .find(|script| script.contains(&id.to_string()))
    }

    fn runs_launch_configuration(&self) -> bool {
        C::runs_launch_configuration()
    }
}

// ------------------------------------------------------------ properties

/// Polls `describe` until `done` holds, returning every state seen.
async fn states_until(
    p: &dyn Provider,
    id: Uuid,
    done: impl Fn(&MachineState) -> bool,
) -> Vec<MachineState> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<MachineState> = Vec::new();
    loop {
        let s = p.describe(id).await.expect("describe");
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if done(&s) {
            return seen;
        }
        assert!(Instant::now() < deadline, "never done; saw {seen:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Terminates until the provider says the machine is gone.
async fn terminate_until_gone(p: &dyn Provider, id: Uuid) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match p.terminate(id).await {
            Ok(MachineState::Gone) => return,
            Ok(MachineState::Terminating) => {}
            Ok(other) => panic!("terminate answered {other:?}"),
            Err(ProviderError::Transient(_)) => {}
            Err(e) => panic!("terminate failed: {e}"),
        }
        assert!(Instant::now() < deadline, "never gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_not_live(s: &dyn Subject, machine: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.live().await.iter().any(|m| m == machine) {
        assert!(Instant::now() < deadline, "{machine} is still live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A launch with an agent carries it in the machine's first-boot script
/// (user data, startup script, `onstart`, start command), and that script,
/// run as the machine would run it, starts the agent and then the launch
/// configuration, which runs as it did without the agent (and not at all
/// on the container clouds, which never ran it).
pub async fn the_first_boot_script_starts_the_agent_and_the_launch_configuration(s: impl Subject) {
    use base64::Engine;
    let p = s.provider();
    let id = Uuid::new_v4();
    let mut req = s.request(id);
    let user_script = "#!/bin/sh\necho \"ran as $(id -un)\" > \"$HOME/user-script-ran\"\n";
    req.launch_configuration = Some(parasol::api::LaunchConfiguration {
        kind: parasol::api::LaunchType::Script,
        docker_configuration: None,
        script_configuration: Some(parasol::api::ScriptConfiguration {
            base64_script: base64::engine::general_purpose::STANDARD.encode(user_script),
        }),
    });
    // A port nothing listens on: this property is about starting, the
    // reports themselves are `agent_script`'s.
    let url = format!("http://127.0.0.1:{}", crate::hosts::free_port());
    req.agent = Some(parasol::agent::AgentBootstrap {
        url: url.clone(),
        token: Secret::new("pa_conformance-token"),
        interval_s: 30,
    });
    p.launch(&req).await.expect("launch");
    let mut script = s
        .boot_script(id)
        .await
        .expect("the launch carried a first-boot script naming the instance");
    assert!(
        script.contains("PARASOL_AGENT_TOKEN='pa_conformance-token'"),
        "{script}"
    );
    assert!(script.contains(&format!("PARASOL_INSTANCE_ID='{id}'")));
    if let Some(rest) = script.strip_suffix("exec /start.sh\n") {
        // RunPod: the image's own start command comes last, as the image
        // would have run it; there is no such command here.
        script = rest.to_string();
    }

    // Run it as cloud-init would, as root, with `sudo` standing in for the
    // switch to the image's user, and the agent kept out of systemd and in
    // the test's directory.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let bin = dir.path().join("bin");
    let agent = dir.path().join("agent");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    crate::agent_script::executable(
        &bin.join("sudo"),
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -u) shift 2 ;; -*) shift ;; *) break ;; esac; done\nexec \"$@\"\n",
    );
    std::fs::write(dir.path().join("boot"), &script).unwrap();
    let _stop = crate::agent_script::StopAgent(agent.clone());
    let out = std::process::Command::new("bash")
        .arg(dir.path().join("boot"))
        .env_clear()
        .env("HOME", &home)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", bin.display()),
        )
        .env("PARASOL_AGENT_SYSTEMD", "no")
        .env("PARASOL_AGENT_DIR", &agent)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the first-boot script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = std::fs::read_to_string(agent.join("pid")).expect("the agent recorded its pid");
    // The recorded pid is the started child, which may not have exec'd
    // the agent yet when the boot script returns on a busy machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("parasol-agent.sh") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the agent runs");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let env = std::fs::read_to_string(agent.join("env")).unwrap();
    assert!(env.contains(&format!("PARASOL_URL='{url}'")), "{env}");
    let ran = home.join("user-script-ran");
    if s.runs_launch_configuration() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ran.exists() {
            assert!(Instant::now() < deadline, "the user's script never ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !ran.exists(),
            "a container cloud ran the launch configuration"
        );
    }
    let stop = std::process::Command::new("sh")
        .arg(agent.join("stop"))
        .status()
        .unwrap();
    assert!(stop.success());
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
            || !String::from_utf8_lossy(
                &std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default()
            )
            .contains("parasol-agent"),
        "the agent stopped"
    );
}

/// A launch whose answer was lost, retried twice (the second time by a
/// restarted process), rents one machine.
pub async fn launch_twice_is_one_machine(s: impl Subject) {
    let p = s.provider();
    let req = s.request(Uuid::new_v4());
    if s.lose_next_launch_answer() {
        let first = p.launch(&req).await;
        assert!(
            matches!(first, Err(ProviderError::Transient(_))),
            "a lost answer is transient: {first:?}"
        );
    }
    let a = p.launch(&req).await.expect("the retry adopts the machine");
    let b = s
        .fresh_provider()
        .launch(&req)
        .await
        .expect("and so does a restarted process's");
    assert_eq!(a, b);
    let live = s.live().await;
    assert_eq!(live.len(), 1, "one machine: {live:?}");
}

/// A launched machine carries this deployment's marker, not the legacy one.
pub async fn a_launched_machine_carries_the_deployment_marker(s: impl Subject) {
    let p = s.provider();
    let id = Uuid::new_v4();
    p.launch(&s.request(id)).await.expect("launch");
    assert_eq!(p.list_marked().await.unwrap(), vec![id]);
    assert!(p.list_legacy_marked().await.unwrap().is_empty());
}

/// Describe goes Provisioning/Booting → Running, never backwards, with
/// somewhere to SSH to at the end.
pub async fn describe_follows_the_boot(s: impl Subject) {
    let p = s.provider();
    let id = Uuid::new_v4();
    assert_eq!(p.describe(id).await.unwrap(), MachineState::Gone);
    p.launch(&s.request(id)).await.expect("launch");
    let seen = states_until(&*p, id, |s| matches!(s, MachineState::Running { .. })).await;
    let rank = |s: &MachineState| match s {
        MachineState::Provisioning => 0,
        MachineState::Booting => 1,
        MachineState::Running { .. } => 2,
        other => panic!("unexpected state during boot: {other:?} in {seen:?}"),
    };
    let ranks: Vec<i32> = seen.iter().map(rank).collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    if s.boots_after_launch() {
        assert!(ranks.len() >= 2, "running at once: {seen:?}");
        assert!(
            ranks.contains(&1),
            "never booting without an address: {seen:?}"
        );
    } else {
        assert_eq!(ranks, [2], "set up within the launch: {seen:?}");
    }
    let Some(MachineState::Running {
        ip,
        ssh_port,
        ssh_user,
        ..
    }) = seen.last()
    else {
        unreachable!()
    };
    assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{ip}");
    assert!(*ssh_port > 0 && !ssh_user.is_empty());
}

/// Terminate goes on answering until gone, then keeps saying gone; a
/// machine never launched is gone at once.
pub async fn terminate_is_repeatable_until_gone(s: impl Subject) {
    let p = s.provider();
    assert_eq!(
        p.terminate(Uuid::new_v4()).await.unwrap(),
        MachineState::Gone
    );
    let id = Uuid::new_v4();
    let launched = p.launch(&s.request(id)).await.expect("launch");
    assert_eq!(s.live().await.len(), 1);
    terminate_until_gone(&*p, id).await;
    for _ in 0..2 {
        assert_eq!(p.terminate(id).await.unwrap(), MachineState::Gone);
    }
    assert_eq!(p.describe(id).await.unwrap(), MachineState::Gone);
    let live = s.live().await;
    assert!(live.is_empty(), "{launched:?} left {live:?}");
}

/// No capacity is a capacity error, and rents nothing.
pub async fn a_capacity_error_is_reported_as_capacity(s: impl Subject) {
    let p = s.provider();
    let req = s.request(Uuid::new_v4());
    s.refuse_capacity(&req).await;
    let before = s.live().await;
    match p.launch(&req).await {
        Err(ProviderError::Capacity(why)) => assert!(!why.is_empty()),
        other => panic!("expected a capacity error, got {other:?}"),
    }
    assert_eq!(s.live().await, before, "nothing rented");
}

/// A 429 is waited out inside the call.
pub async fn a_rate_limit_is_retried(s: impl Subject) {
    let p = s.provider();
    s.rate_limit_next();
    assert_eq!(
        p.describe(Uuid::new_v4())
            .await
            .expect("retried past the 429"),
        MachineState::Gone
    );
    assert_eq!(s.rate_limits_pending(), 0, "the 429 was served");
}

/// A 5xx is transient: the next call succeeds.
pub async fn a_server_error_is_transient(s: impl Subject) {
    let p = s.provider();
    s.server_error_next();
    let id = Uuid::new_v4();
    match p.describe(id).await {
        Err(ProviderError::Transient(_)) => {}
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert_eq!(p.describe(id).await.unwrap(), MachineState::Gone);
}

/// The sweep terminates a machine under this deployment's marker that the
/// store does not hold, and leaves alone an unmarked machine, another
/// deployment's and a legacy-named one the store does not know.
pub async fn the_sweep_removes_only_this_deployments_orphans(s: impl Subject) {
    let p = s.provider();
    let orphan = s.plant(&Marker::new(DEPLOYMENT).name(Uuid::new_v4())).await;
    let theirs = s
        .plant(&Marker::new(OTHER_DEPLOYMENT).name(Uuid::new_v4()))
        .await;
    let legacy = s.plant(&format!("parasol-{}", Uuid::new_v4())).await;
    let unmarked = s.plant("my-own-box").await;
    let (_dir, store) = empty_store().await;
    let mut providers = Providers::default();
    providers.add(p.clone(), &[s.request(Uuid::nil()).cloud]);
    assert_eq!(sweep::sweep_once(&providers, &store).await, 1);
    wait_not_live(&s, &orphan).await;
    let live = s.live().await;
    for kept in [&theirs, &legacy, &unmarked] {
        assert!(live.contains(kept), "{kept} was swept: {live:?}");
    }
}

/// A store of its own holding no instances, for the sweep.
pub async fn empty_store() -> (tempfile::TempDir, parasol::store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = parasol::store::Store::open(&parasol::store::StoreOptions {
        url: format!("sqlite://{}", dir.path().join("sweep.db").display()),
        max_connections: 2,
    })
    .await
    .unwrap();
    (dir, store)
}

/// After a restart: new adapters, remembering nothing, describe, restart
/// and terminate each machine an earlier adapter launched, and the sweep
/// (through another new adapter) terminates an orphan under this
/// deployment's marker.
pub async fn a_cold_restart_finds_every_machine(s: impl Subject) {
    let before = s.provider();
    let ids: Vec<Uuid> = (0..s.room()).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        before.launch(&s.request(*id)).await.expect("launch");
    }
    let machines = s.live().await;
    assert_eq!(machines.len(), ids.len(), "{machines:?}");
    for id in &ids {
        let cold = s.fresh_provider();
        let first = cold.describe(*id).await.expect("describe");
        assert_ne!(
            first,
            MachineState::Gone,
            "a new adapter does not see the machine of {id}"
        );
        states_until(&*cold, *id, |s| matches!(s, MachineState::Running { .. })).await;
    }
    for id in &ids {
        s.fresh_provider()
            .restart(*id)
            .await
            .unwrap_or_else(|e| panic!("a new adapter could not restart {id}: {e}"));
    }
    // A machine taken for gone without being torn down stays live below.
    for id in &ids {
        terminate_until_gone(&*s.fresh_provider(), *id).await;
    }
    for m in &machines {
        wait_not_live(&s, m).await;
    }
    if !s.plants() {
        return;
    }
    let orphan = s.plant(&Marker::new(DEPLOYMENT).name(Uuid::new_v4())).await;
    let (_dir, store) = empty_store().await;
    let mut providers = Providers::default();
    providers.add(s.fresh_provider(), &[s.request(Uuid::nil()).cloud]);
    assert_eq!(sweep::sweep_once(&providers, &store).await, 1);
    wait_not_live(&s, &orphan).await;
}

/// A machine launched under the legacy marker (before deployment ids) is
/// still found by its instance id, and can be terminated.
pub async fn a_legacy_named_machine_is_still_found(s: impl Subject) {
    let p = s.provider();
    let id = Uuid::new_v4();
    let machine = s.plant(&format!("parasol-{id}")).await;
    assert!(matches!(
        p.describe(id).await.unwrap(),
        MachineState::Running { .. }
    ));
    assert_eq!(p.list_legacy_marked().await.unwrap(), vec![id]);
    assert!(p.list_marked().await.unwrap().is_empty());
    terminate_until_gone(&*p, id).await;
    wait_not_live(&s, &machine).await;
}

/// The offer of a listed type: the one of its cloud type with its GPU.
fn offer_of<'a>(offers: &'a [Offer], l: &Listed) -> Option<&'a Offer> {
    offers.iter().find(|o| {
        o.cloud_instance_type == l.cloud_type && Some(o.configuration.gpu_type.as_str()) == l.gpu
    })
}

/// Catalog truth: every GPU type the cloud lists is offered with the
/// cloud's own model, count, VRAM per GPU, vCPUs and RAM, under a name of
/// its own; one whose GPU Shadeform has no name for is not offered, and is
/// counted in `parasol_catalog_unmapped_types`, never dropped silently.
pub async fn the_catalog_holds_the_clouds_own_numbers(s: impl Subject) {
    let offers = s.provider().offers().await.expect("offers");
    let listed = s.listing().await;
    let cloud = s.request(Uuid::nil()).cloud;
    assert!(!listed.is_empty(), "{cloud} lists nothing");
    let mut wrong = Vec::new();
    for l in &listed {
        let of_type: Vec<(&str, &str)> = offers
            .iter()
            .filter(|o| o.cloud_instance_type == l.cloud_type)
            .map(|o| {
                (
                    o.shade_instance_type.as_str(),
                    o.configuration.gpu_type.as_str(),
                )
            })
            .collect();
        let Some(gpu) = l.gpu else {
            if !of_type.is_empty() {
                wrong.push(format!(
                    "{}: Shadeform has no name for its GPU, yet it is offered as {of_type:?}",
                    l.cloud_type
                ));
            }
            continue;
        };
        let Some(o) = offer_of(&offers, l) else {
            wrong.push(format!(
                "{}: not offered as a {gpu}; offers of it (name, gpu): {of_type:?}",
                l.cloud_type
            ));
            continue;
        };
        let c = &o.configuration;
        let got = (
            c.gpu_manufacturer.as_str(),
            c.num_gpus,
            c.vram_per_gpu_in_gb,
            c.vcpus,
            c.memory_in_gb,
        );
        let want = (l.manufacturer, l.gpus, l.vram, l.vcpus, l.memory);
        if got != want {
            wrong.push(format!(
                "{} ({}): offered as (manufacturer, gpus, vram per gpu, vcpus, memory) {got:?}; the cloud says {want:?}",
                l.cloud_type, o.shade_instance_type
            ));
        }
    }
    let unmapped = parasol::metrics::global().unmapped_types(&cloud);
    let nameless: Vec<&Listed> = listed.iter().filter(|l| l.gpu.is_none()).collect();
    for l in &nameless {
        if !unmapped
            .iter()
            .any(|u| l.cloud_type.starts_with(u.as_str()))
        {
            wrong.push(format!(
                "{} is dropped without being counted as unmapped (counted: {unmapped:?})",
                l.cloud_type
            ));
        }
    }
    for u in &unmapped {
        if !nameless
            .iter()
            .any(|l| l.cloud_type.starts_with(u.as_str()))
        {
            wrong.push(format!(
                "{u} is counted as unmapped, but Shadeform has a name for its GPU"
            ));
        }
    }
    let names: std::collections::BTreeSet<&str> = offers
        .iter()
        .map(|o| o.shade_instance_type.as_str())
        .collect();
    if names.len() != offers.len() {
        wrong.push(format!("two offers share a name: {names:?}"));
    }
    assert!(
        wrong.is_empty(),
        "{cloud}'s catalog differs from what {cloud} lists:\n{}",
        wrong.join("\n")
    );
}

/// An offer is available in a region exactly where the cloud reports
/// stock for its type there.
pub async fn offers_are_available_only_where_the_cloud_reports_stock(s: impl Subject) {
    let offers = s.provider().offers().await.expect("offers");
    let listed = s.listing().await;
    let cloud = s.request(Uuid::nil()).cloud;
    let mut wrong = Vec::new();
    let mut available = 0;
    for l in &listed {
        let Some(o) = offer_of(&offers, l) else {
            continue;
        };
        for r in &o.regions {
            let offered = match r.capacity {
                Capacity::Available(a) => a,
                Capacity::Slots(n) => n > 0,
            };
            let stocked = l.in_stock.contains(&r.region);
            if offered != stocked {
                wrong.push(format!(
                    "{} in {}: available {offered}, but the cloud reports stock {stocked}",
                    o.shade_instance_type, r.region
                ));
            }
            available += usize::from(offered);
        }
        for r in &l.in_stock {
            if !o.regions.iter().any(|x| &x.region == r) {
                wrong.push(format!(
                    "{}: the cloud has stock in {r}, which the offer does not list",
                    o.shade_instance_type
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{cloud}'s availability differs from its stock:\n{}",
        wrong.join("\n")
    );
    assert!(available > 0, "{cloud}: nothing is available anywhere");
}

/// One test per property for one provider: `$cloud::$property`.
macro_rules! conformance {
    ($cloud:ident => $start:expr, [$($property:ident),* $(,)?]) => {
        mod $cloud {
            use super::*;
            $(
                #[tokio::test]
                async fn $property() {
                    super::$property($start.await).await
                }
            )*
        }
    };
}

/// Every property, for a cloud behind HTTP.
macro_rules! http_cloud {
    ($($cloud:ident => $fake:ty;)*) => {
        $(
            conformance!($cloud => Http::<$fake>::start(), [
                launch_twice_is_one_machine,
                a_launched_machine_carries_the_deployment_marker,
                describe_follows_the_boot,
                terminate_is_repeatable_until_gone,
                a_capacity_error_is_reported_as_capacity,
                a_rate_limit_is_retried,
                a_server_error_is_transient,
                the_sweep_removes_only_this_deployments_orphans,
                a_legacy_named_machine_is_still_found,
                the_catalog_holds_the_clouds_own_numbers,
                offers_are_available_only_where_the_cloud_reports_stock,
                a_cold_restart_finds_every_machine,
            ]);
        )*
    };
}

http_cloud! {
    lambda => Lambda;
    verda => Verda;
    hyperstack => Hyperstack;
    runpod => Runpod;
    vastai => Vastai;
    digitalocean => DigitalOcean;
    gcp => Gcp;
    azure => Azure;
}

// Every cloud carries the agent in what its machines run at first boot.
macro_rules! first_boot_agent {
    ($($cloud:ident => $start:expr;)*) => {
        mod first_boot_agent {
            use super::*;
            $(
                #[tokio::test]
                async fn $cloud() {
                    super::the_first_boot_script_starts_the_agent_and_the_launch_configuration(
                        $start.await,
                    )
                    .await
                }
            )*
        }
    };
}

first_boot_agent! {
    lambda => Http::<Lambda>::start();
    verda => Http::<Verda>::start();
    hyperstack => Http::<Hyperstack>::start();
    runpod => Http::<Runpod>::start();
    vastai => Http::<Vastai>::start();
    digitalocean => Http::<DigitalOcean>::start();
    gcp => Http::<Gcp>::start();
    azure => Http::<Azure>::start();
    aws => AwsSubject::start();
}

// The sim keeps its machines in the deployment's own store, behind no
// HTTP: it has no marker to sweep by, no answer to lose and no rate limit,
// so it runs the properties about machines only.
conformance!(sim => SimSubject::start(), [
    launch_twice_is_one_machine,
    describe_follows_the_boot,
    terminate_is_repeatable_until_gone,
    a_capacity_error_is_reported_as_capacity,
    a_cold_restart_finds_every_machine,
]);

// The hosts provider: one real sshd on 127.0.0.1 (see `hosts`), one host,
// so a second instance finds no capacity. Its machines are the operator's
// own, never swept, and it has no HTTP.
conformance!(hosts => HostsSubject::start(), [
    launch_twice_is_one_machine,
    describe_follows_the_boot,
    terminate_is_repeatable_until_gone,
    a_capacity_error_is_reported_as_capacity,
    a_cold_restart_finds_every_machine,
]);

// AWS, against moto behind the fault-injecting proxy (one moto per test).
// Left out:
// - describe_follows_the_boot: moto makes an instance `running` with its
//   public address within RunInstances, so there is no boot to watch; the
//   mapping of EC2's pending / running-without-address states is the unit
//   test `aws::tests::ec2_states_map_onto_machine_states`.
// - terminate_is_repeatable_until_gone: EC2 (and moto) go on listing a
//   terminated instance for a while, and the adapter describes a machine
//   it finds `terminated` as Failed ("AWS terminated the machine"), so a
//   describe after terminate answered Gone is Failed, not Gone. Terminate
//   itself stays Gone when repeated; describe would need to tell Parasol's
//   own termination from AWS's to hold.
// - a_legacy_named_machine_is_still_found: AWS came after deployment ids;
//   it finds machines by their `parasol:instance-id` tag, never by a name,
//   so there is no legacy-named AWS machine to find.
conformance!(aws => AwsSubject::start(), [
    launch_twice_is_one_machine,
    a_launched_machine_carries_the_deployment_marker,
    a_capacity_error_is_reported_as_capacity,
    a_rate_limit_is_retried,
    a_server_error_is_transient,
    the_sweep_removes_only_this_deployments_orphans,
    the_catalog_holds_the_clouds_own_numbers,
    offers_are_available_only_where_the_cloud_reports_stock,
    a_cold_restart_finds_every_machine,
]);

const AWS_REGION: &str = "us-east-1";

/// moto, the proxy in front of it, and the adapter pointed at the proxy.
pub struct AwsSubject {
    moto: Moto,
    proxy: Proxy,
    aws: Arc<AwsAdapter>,
    cfg: aws_adapter::config::AwsConfig,
}

impl AwsSubject {
    async fn start() -> Self {
        let moto = moto::start();
        let proxy = Proxy::start(&moto.url);
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKIDPARASOLTEST"),
            ("AWS_SECRET_ACCESS_KEY", "parasol-test-secret-value"),
            ("AWS_ENDPOINT_URL_EC2", proxy.url.as_str()),
            ("PARASOL_AWS_REGIONS", AWS_REGION),
        ];
        // Only these variables and no files: the machine's ~/.aws and
        // AWS_* environment never reach the adapter.
        let cfg = aws_adapter::config::resolve(
            None,
            &|k| {
                env.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            },
            &|_| None,
        )
        .expect("the AWS settings resolve")
        .expect("AWS is configured");
        let aws = Arc::new(AwsAdapter::new(cfg.clone(), DEPLOYMENT.to_string()));
        // Fills the adapter's zone cache before any fault is set.
        let offers = aws.offers().await.expect("the catalog");
        assert!(offers.iter().any(|o| o.shade_instance_type == "A10Gx4"));
        AwsSubject {
            moto,
            proxy,
            aws,
            cfg,
        }
    }
}

#[async_trait::async_trait]
impl Subject for AwsSubject {
    /// The user data of the RunInstances that launched it, base64.
    async fn boot_script(&self, id: Uuid) -> Option<String> {
        use base64::Engine;
        self.proxy
            .requests_for("RunInstances")
            .iter()
            .filter_map(|r| r.param("UserData"))
            .filter_map(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .filter_map(|b| String::from_utf8(b).ok())
            .find(|script| script.contains(&id.to_string()))
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.aws.clone()
    }

    fn fresh_provider(&self) -> Arc<dyn Provider> {
        Arc::new(AwsAdapter::new(self.cfg.clone(), DEPLOYMENT.to_string()))
    }

    fn request(&self, id: Uuid) -> LaunchRequest {
        LaunchRequest {
            instance_id: id,
            name: "conformance".into(),
            cloud: aws_adapter::CLOUD.into(),
            region: AWS_REGION.into(),
            shade_instance_type: "A10Gx4".into(),
            cloud_instance_type: "g5.12xlarge".into(),
            os: "ubuntu22.04_cuda12_dlami".into(),
            rental_type: RentalType::OnDemand,
            ssh_public_key: Some(public_key()),
            launch_configuration: None,
            envs: vec![],
            cluster_id: None,
            volumes: vec![],
            agent: None,
        }
    }

    async fn live(&self) -> Vec<String> {
        self.moto
            .instances(AWS_REGION)
            .await
            .iter()
            .filter(|i| !matches!(moto::state(i), "terminated" | "shutting-down"))
            .filter_map(|i| i.text_at(&["instanceId"]).map(str::to_string))
            .collect()
    }

    /// Tagged as the deployment whose marker `name` carries would tag it;
    /// any other name gets only a `Name` tag.
    async fn plant(&self, name: &str) -> String {
        let owner = [DEPLOYMENT, OTHER_DEPLOYMENT]
            .into_iter()
            .find_map(|d| Marker::new(d).ours(name).map(|id| (d, id.to_string())));
        let mut tags = vec![("Name", name.to_string())];
        if let Some((d, id)) = owner {
            tags.push((aws_adapter::TAG_INSTANCE, id));
            tags.push((aws_adapter::TAG_DEPLOYMENT, d.to_string()));
        }
        let keys: Vec<(String, String)> = tags
            .iter()
            .enumerate()
            .flat_map(|(n, (k, v))| {
                [
                    (
                        format!("TagSpecification.1.Tag.{}.Key", n + 1),
                        k.to_string(),
                    ),
                    (format!("TagSpecification.1.Tag.{}.Value", n + 1), v.clone()),
                ]
            })
            .collect();
        let mut params = vec![
            ("ImageId", moto::NEWEST_DLAMI),
            ("InstanceType", "g5.12xlarge"),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("TagSpecification.1.ResourceType", "instance"),
        ];
        params.extend(keys.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let x = self.moto.call(AWS_REGION, "RunInstances", &params).await;
        x.items(&["instancesSet"])
            .first()
            .and_then(|i| i.text_at(&["instanceId"]))
            .expect("moto launched the machine")
            .to_string()
    }

    /// Every zone refuses.
    async fn refuse_capacity(&self, _req: &LaunchRequest) {
        self.proxy.fault(Fault::error(
            "RunInstances",
            "InsufficientInstanceCapacity",
            500,
        ));
    }

    /// moto runs the instance and the proxy never answers: the client's
    /// timeout ends the call.
    fn lose_next_launch_answer(&self) -> bool {
        self.proxy.fault(Fault::hang("RunInstances").times(1));
        true
    }

    fn rate_limit_next(&self) {
        self.proxy
            .fault(Fault::error(ANY_ACTION, "RequestLimitExceeded", 503).times(1));
    }

    /// EC2's client retries a 5xx inside the call, as AWS advises, so a
    /// 500 reaches the caller only when it outlasts every attempt.
    fn server_error_next(&self) {
        self.proxy.fault(
            Fault::error(ANY_ACTION, "InternalError", 500).times(aws_adapter::client::ATTEMPTS),
        );
    }

    fn rate_limits_pending(&self) -> u32 {
        self.proxy.pending("RequestLimitExceeded")
    }
    /// moto's DescribeInstanceTypes (AWS's own data) for the served
    /// families, of the types the shipped price table sells, in stock in
    /// the region where some zone offers them.
    async fn listing(&self) -> Vec<Listed> {
        use aws_adapter::catalog::{price_cents, served_family, FAMILIES};
        let mut params: Vec<(String, String)> = vec![
            ("MaxResults".into(), "100".into()),
            ("Filter.1.Name".into(), "instance-type".into()),
        ];
        for (i, f) in FAMILIES.iter().enumerate() {
            params.push((format!("Filter.1.Value.{}", i + 1), format!("{f}*")));
        }
        let mut types = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut p = params.clone();
            if let Some(t) = &token {
                p.push(("NextToken".into(), t.clone()));
            }
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let x = self
                .moto
                .call(AWS_REGION, "DescribeInstanceTypes", &p)
                .await;
            types.extend(x.items(&["instanceTypeSet"]).into_iter().cloned());
            token = x.text_at(&["nextToken"]).map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut out = Vec::new();
        for t in types {
            let name = t.text_at(&["instanceType"]).unwrap().to_string();
            if !served_family(&name) || price_cents(&name, AWS_REGION).is_none() {
                continue;
            }
            let Some(g) = t.items(&["gpuInfo", "gpus"]).into_iter().next().cloned() else {
                continue;
            };
            let num = |x: &crate::fakes::moto::Xml, path: &[&str]| -> i64 {
                x.text_at(path).unwrap().parse().unwrap()
            };
            let mib = num(&g, &["memoryInfo", "sizeInMiB"]);
            let gpu = match g.text_at(&["name"]).unwrap() {
                "A100" if mib > 50 * 1024 => "A100_80G",
                "A100" => "A100",
                "T4" => "T4",
                "A10G" => "A10G",
                "L4" => "L4",
                "L40S" => "L40S",
                "H100" => "H100",
                "H200" => "H200",
                "B200" => "B200",
                other => panic!("no model written down for {other}"),
            };
            let offerings = self
                .moto
                .call(
                    AWS_REGION,
                    "DescribeInstanceTypeOfferings",
                    &[
                        ("LocationType", "availability-zone"),
                        ("Filter.1.Name", "instance-type"),
                        ("Filter.1.Value.1", &name),
                    ],
                )
                .await;
            let zones = offerings.items(&["instanceTypeOfferingSet"]).len();
            let gib = |m: i64| (m as f64 / 1024.0).round() as i64;
            // EC2 writes some GPUs' memory as MiB of decimal gigabytes
            // (A10G: 22888 MiB = 24.0 GB), others of binary ones (H100:
            // 81920 MiB = 80 GiB): the size is the one that is whole.
            let vram = {
                let (bin, dec) = (mib as f64 / 1024.0, mib as f64 * 1.048576 / 1000.0);
                let off = |x: f64| (x - x.round()).abs();
                if off(dec) < off(bin) {
                    dec.round() as i64
                } else {
                    bin.round() as i64
                }
            };
            out.push(Listed {
                cloud_type: name,
                gpu: Some(gpu),
                manufacturer: "nvidia",
                gpus: num(&g, &["count"]),
                vram,
                vcpus: num(&t, &["vCpuInfo", "defaultVCpus"]),
                memory: gib(num(&t, &["memoryInfo", "sizeInMiB"])),
                in_stock: if zones > 0 {
                    vec![AWS_REGION.to_string()]
                } else {
                    vec![]
                },
            });
        }
        out
    }
}

/// One host behind a test sshd.
pub struct HostsSubject {
    sshd: crate::hosts::Sshd,
    hosts: Arc<Hosts>,
    store: parasol::store::Store,
    host: HostConfig,
    shade: String,
    _dir: tempfile::TempDir,
}

impl HostsSubject {
    async fn start() -> Self {
        let sshd = crate::hosts::Sshd::start();
        let dir = tempfile::tempdir().unwrap();
        let store = parasol::store::Store::open(&parasol::store::StoreOptions {
            url: format!("sqlite://{}", dir.path().join("hosts.db").display()),
            max_connections: 2,
        })
        .await
        .unwrap();
        let host = HostConfig {
            address: "127.0.0.1".into(),
            port: sshd.port,
            user: sshd.user.clone(),
            key_path: sshd.path("mgmt_key"),
            known_hosts: sshd.path("known_hosts"),
            cloud: "hosts".into(),
            region: "lab".into(),
            region_display_name: None,
            hourly_price: 100,
            allow_reboot: false,
        };
        let hosts = Arc::new(Hosts::new(
            store.clone(),
            Arc::new(Clock::system()),
            vec![host.clone()],
        ));
        // The first catalog call waits for discovery.
        let offers = hosts.offers().await.expect("discovery");
        let shade = offers[0].shade_instance_type.clone();
        HostsSubject {
            sshd,
            hosts,
            store,
            host,
            shade,
            _dir: dir,
        }
    }
}

#[async_trait::async_trait]
impl Subject for HostsSubject {
    fn provider(&self) -> Arc<dyn Provider> {
        self.hosts.clone()
    }

    fn fresh_provider(&self) -> Arc<dyn Provider> {
        Arc::new(Hosts::new(
            self.store.clone(),
            Arc::new(Clock::system()),
            vec![self.host.clone()],
        ))
    }

    /// One host.
    fn room(&self) -> usize {
        1
    }

    fn plants(&self) -> bool {
        false
    }

    fn request(&self, id: Uuid) -> LaunchRequest {
        LaunchRequest {
            instance_id: id,
            name: "conformance".into(),
            cloud: "hosts".into(),
            region: "lab".into(),
            shade_instance_type: self.shade.clone(),
            cloud_instance_type: self.shade.clone(),
            os: String::new(),
            rental_type: RentalType::OnDemand,
            ssh_public_key: Some(public_key()),
            launch_configuration: None,
            envs: vec![],
            cluster_id: None,
            volumes: vec![],
            agent: None,
        }
    }

    /// The instances whose keys are installed on the host.
    async fn live(&self) -> Vec<String> {
        self.sshd
            .authorized_keys()
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .filter_map(|m| m.strip_prefix("parasol-instance="))
            .map(str::to_string)
            .collect()
    }

    async fn plant(&self, _name: &str) -> String {
        unimplemented!("the operator's hosts are never swept")
    }

    async fn refuse_capacity(&self, req: &LaunchRequest) {
        // The one host goes to another instance.
        let mut other = req.clone();
        other.instance_id = Uuid::new_v4();
        self.hosts.launch(&other).await.expect("the one host");
    }

    fn lose_next_launch_answer(&self) -> bool {
        false
    }

    fn boots_after_launch(&self) -> bool {
        false
    }
}

/// The sim over a store of its own, one machine per offer and region, with
/// boots slow enough to watch.
pub struct SimSubject {
    sim: Arc<Sim>,
    store: parasol::store::Store,
    cfg: SimConfig,
    offer: (String, String, String),
    _dir: tempfile::TempDir,
}

impl SimSubject {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = parasol::store::Store::open(&parasol::store::StoreOptions {
            url: format!("sqlite://{}", dir.path().join("sim.db").display()),
            max_connections: 2,
        })
        .await
        .unwrap();
        let cfg = SimConfig {
            boot_seconds: 1.2,
            capacity: Some(1),
            ..SimConfig::default()
        };
        let sim = Arc::new(Sim::new(
            store.clone(),
            Arc::new(Clock::system()),
            cfg.clone(),
        ));
        let o = sim.offers().await.unwrap().remove(0);
        let offer = (
            o.cloud.clone(),
            o.regions[0].region.clone(),
            o.shade_instance_type.clone(),
        );
        SimSubject {
            sim,
            store,
            cfg,
            offer,
            _dir: dir,
        }
    }
}

#[async_trait::async_trait]
impl Subject for SimSubject {
    fn provider(&self) -> Arc<dyn Provider> {
        self.sim.clone()
    }

    fn fresh_provider(&self) -> Arc<dyn Provider> {
        Arc::new(Sim::new(
            self.store.clone(),
            Arc::new(Clock::system()),
            self.cfg.clone(),
        ))
    }

    /// One machine per offer and region.
    fn room(&self) -> usize {
        1
    }

    fn plants(&self) -> bool {
        false
    }

    fn request(&self, id: Uuid) -> LaunchRequest {
        let (cloud, region, shade) = self.offer.clone();
        LaunchRequest {
            instance_id: id,
            name: "conformance".into(),
            cloud,
            region,
            shade_instance_type: shade.clone(),
            cloud_instance_type: shade,
            os: "ubuntu22.04".into(),
            rental_type: RentalType::OnDemand,
            ssh_public_key: Some(public_key()),
            launch_configuration: None,
            envs: vec![],
            cluster_id: None,
            volumes: vec![],
            agent: None,
        }
    }

    async fn live(&self) -> Vec<String> {
        self.sim
            .machines()
            .await
            .unwrap()
            .into_iter()
            .filter(|m| !matches!(m.state.as_str(), "terminating" | "terminated"))
            .map(|m| format!("{}-{}", m.cloud, &m.instance_id.simple().to_string()[..12]))
            .collect()
    }

    async fn plant(&self, _name: &str) -> String {
        unimplemented!("the sim has no machines outside the store")
    }

    async fn refuse_capacity(&self, req: &LaunchRequest) {
        // One slot per offer and region: another machine takes it.
        let mut other = req.clone();
        other.instance_id = Uuid::new_v4();
        self.sim.launch(&other).await.expect("the one slot");
    }

    fn lose_next_launch_answer(&self) -> bool {
        false
    }
}

// ------------------------------------------------- the clouds' levers

impl FakeCloud for Lambda {
    fn boot_script_in(body: &serde_json::Value) -> Option<String> {
        body["user_data"].as_str().map(str::to_string)
    }
    fn adapter(url: &str, deployment: &str) -> Arc<dyn Provider> {
        Arc::new(LambdaAdapter::new(
            LambdaConfig {
                api_key: Secret::new(laf::KEY),
                url: format!("{url}/api/v1"),
                launch_interval: Duration::ZERO,
            },
            deployment,
        ))
    }
    fn launchable() -> (&'static str, &'static str, &'static str, &'static str) {
        ("lambdalabs", "us-west-1", "A6000", "gpu_1x_a6000")
    }
    fn set_timing(&mut self, t: Timing) {
        self.timing = t;
    }
    fn plant_named(&mut self, name: &str) -> String {
        self.plant(name)
    }
    fn live_ids(&self) -> Vec<String> {
        self.live()
            .iter()
            .filter(|m| m.terminated.is_none())
            .map(|m| m.id.clone())
            .collect()
    }
    fn refuse(&mut self, cloud_type: &str, region: &str) {
        self.no_capacity.push((cloud_type.into(), region.into()));
    }
    fn launch_line(&self) -> String {
        "POST /api/v1/instance-operations/launch".into()
    }
    fn listing(&self) -> Vec<Listed> {
        let all = laf::instance_types();
        all["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, t)| {
                let it = &t["instance_type"];
                let specs = &it["specs"];
                // "RTX A6000 (48 GB)": the size Lambda states.
                let desc = it["gpu_description"].as_str().unwrap();
                let vram = desc.split('(').nth(1).and_then(|r| r.split(' ').next());
                Listed {
                    cloud_type: name.clone(),
                    gpu: Some(match name.as_str() {
                        "gpu_1x_a6000" => "A6000",
                        "gpu_8x_h100_sxm5" => "H100",
                        "gpu_1x_a10" => "A10",
                        "gpu_8x_a100" => "A100",
                        "gpu_1x_gh200" => "GH200",
                        other => panic!("no model written down for {other}"),
                    }),
                    manufacturer: "nvidia",
                    gpus: specs["gpus"].as_i64().unwrap(),
                    vram: vram.unwrap().parse().unwrap(),
                    vcpus: specs["vcpus"].as_i64().unwrap(),
                    memory: specs["memory_gib"].as_i64().unwrap(),
                    in_stock: t["regions_with_capacity_available"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["name"].as_str().unwrap().to_string())
                        .collect(),
                }
            })
            .collect()
    }
}

impl FakeCloud for Verda {
    /// A stored startup script (`POST /scripts`); the fake refuses a
    /// deploy naming one it does not hold.
    fn boot_script_in(body: &serde_json::Value) -> Option<String> {
        body["name"].as_str()?;
        body["script"].as_str().map(str::to_string)
    }
    fn adapter(url: &str, deployment: &str) -> Arc<dyn Provider> {
        Arc::new(VerdaAdapter::new(
            VerdaConfig {
                client_id: vef::CLIENT_ID.into(),
                client_secret: Secret::new(vef::CLIENT_SECRET),
                url: format!("{url}/v1"),
            },
            deployment,
        ))
    }
    fn launchable() -> (&'static str, &'static str, &'static str, &'static str) {
        ("datacrunch", "FIN-01", "A6000", "1A6000.10V")
    }
    fn set_timing(&mut self, t: Timing) {
        self.timing = t;
    }
    fn plant_named(&mut self, name: &str) -> String {
        self.plant(name)
    }
    fn live_ids(&self) -> Vec<String> {
        self.live()
            .iter()
            .filter(|m| m.deleted.is_none())
            .map(|m| m.id.clone())
            .collect()
    }
    fn refuse(&mut self, cloud_type: &str, region: &str) {
        self.no_capacity.push((cloud_type.into(), region.into()));
    }
    fn launch_line(&self) -> String {
        "POST /v1/instances".into()
    }
    fn listing(&self) -> Vec<Listed> {
        let avail = self.availability();
        vef::instance_types()
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["gpu"]["number_of_gpus"].as_i64().unwrap() > 0)
            .map(|t| {
                let name = t["instance_type"].as_str().unwrap();
                let n = t["gpu"]["number_of_gpus"].as_i64().unwrap();
                Listed {
                    cloud_type: name.to_string(),
                    gpu: Some(match name {
                        "1A6000.10V" => "A6000",
                        "8H100.80S.176V" => "H100",
                        other => panic!("no model written down for {other}"),
                    }),
                    manufacturer: "nvidia",
                    gpus: n,
                    vram: t["gpu_memory"]["size_in_gigabytes"].as_i64().unwrap() / n,
                    vcpus: t["cpu"]["number_of_cores"].as_i64().unwrap(),
                    memory: t["memory"]["size_in_gigabytes"].as_i64().unwrap(),
                    in_stock: avail
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|a| {
                            a["availabilities"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|x| x == name)
                        })
                        .map(|a| a["location_code"].as_str().unwrap().to_string())
                        .collect(),
                }
            })
            .collect()
    }
}

impl FakeCloud for Hyperstack {
    fn boot_script_in(body: &serde_json::Value) -> Option<String> {
        body["user_data"].as_str().map(str::to_string)
    }
    fn adapter(url: &str, deployment: &str) -> Arc<dyn Provider> {
        Arc::new(HsAdapter::new(
            HyperstackConfig {
                api_key: Secret::new(hsf::KEY),
                url: format!("{url}/v1"),
            },
            deployment,
        ))
    }
    fn launchable() -> (&'static str, &'static str, &'static str, &'static str) {
        ("hyperstack", "CANADA-1", "A6000", "n3-RTX-A6000x1")
    }
    fn set_timing(&mut self, t: Timing) {
        self.timing = t;
    }
    fn plant_named(&mut self, name: &str) -> String {
        self.plant(name).to_string()
    }
    fn live_ids(&self) -> Vec<String> {
        self.live()
            .iter()
            .filter(|m| m.deleted.is_none())
            .map(|m| m.id.to_string())
            .collect()
    }
    fn refuse(&mut self, cloud_type: &str, _region: &str) {
        self.out_of_stock.push(cloud_type.into());
    }
    fn launch_line(&self) -> String {
        "POST /v1/core/virtual-machines".into()
    }
    fn listing(&self) -> Vec<Listed> {
        let mut out: Vec<Listed> = Vec::new();
        let flavors = self.flavors();
        for f in flavors["data"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["flavors"].as_array().unwrap())
            .filter(|f| f["gpu_count"].as_i64().unwrap() > 0)
        {
            let name = f["name"].as_str().unwrap();
            // Hyperstack states no VRAM: the cards' published sizes.
            let (gpu, vram) = match f["gpu"].as_str().unwrap() {
                "RTX-A6000" => ("A6000", 48),
                "H100-80G-PCIe" => ("H100", 80),
                other => panic!("no model written down for {other}"),
            };
            let region = f["region_name"].as_str().unwrap().to_string();
            let stocked = f["stock_available"].as_bool().unwrap();
            if let Some(l) = out.iter_mut().find(|l| l.cloud_type == name) {
                if stocked {
                    l.in_stock.push(region);
                }
                continue;
            }
            out.push(Listed {
                cloud_type: name.to_string(),
                gpu: Some(gpu),
                manufacturer: "nvidia",
                gpus: f["gpu_count"].as_i64().unwrap(),
                vram,
                vcpus: f["cpu"].as_i64().unwrap(),
                memory: f["ram"].as_f64().unwrap().round() as i64,
                in_stock: if stocked { vec![region] } else { vec![] },
            });
        }
        out
    }
}

impl FakeCloud for Runpod {
    /// `bash -c <script>` as the container's start command.
    fn boot_script_in(body: &serde_json::Value) -> Option<String> {
        let cmd = body["dockerStartCmd"].as_array()?;
        assert_eq!(
            cmd[..2],
            [serde_json::json!("bash"), serde_json::json!("-c")],
            "{cmd:?}"
        );
        cmd.get(2)?.as_str().map(str::to_string)
    }
    fn runs_launch_configuration() -> bool {
        false
    }
    fn adapter(url: &str, deployment: &str) -> Arc<dyn Provider> {
        Arc::new(RunpodAdapter::new(
            RunpodConfig {
                api_key: Secret::new(rpf::KEY),
                url: format!("{url}/v1"),
                graphql_url: format!("{url}/graphql"),
                catalog_url: format!("{url}/v2"),
            },
            deployment,
        ))
    }
    fn launchable() -> (&'static str, &'static str, &'static str, &'static str) {
        ("runpod", "US-KS-2", "A6000", "NVIDIA RTX A6000:1")
    }
    fn set_timing(&mut self, t: Timing) {
        self.timing = t;
    }
    fn plant_named(&mut self, name: &str) -> String {
        self.plant(name)
    }
    fn live_ids(&self) -> Vec<String> {
        self.live().iter().map(|p| p.id.clone()).collect()
    }
    fn refuse(&mut self, cloud_type: &str, region: &str) {
        let gpu = cloud_type.rsplit_once(':').map_or(cloud_type, |(g, _)| g);
        self.no_capacity.push((gpu.into(), region.into()));
    }
    fn launch_line(&self) -> String {
        "POST /v1/pods".into()
    }
    fn listing(&self) -> Vec<Listed> {
        let mut out = Vec::new();
        for t in rpf::TYPES {
            for n in [1, 2, 4, 8].into_iter().filter(|n| *n <= t.max_gpu_count) {
                out.push(Listed {
                    cloud_type: format!("{}:{n}", t.id),
                    gpu: t.shade,
                    manufacturer: if t.manufacturer == "AMD" {
                        "AMD"
                    } else {
                        "nvidia"
                    },
                    gpus: n,
                    vram: t.memory_in_gb,
                    vcpus: t.vcpus * n,
                    memory: t.ram * n,
                    // Parasol launches on the secure cloud: its stock only.
                    in_stock: rpf::DATA_CENTERS
                        .iter()
                        .filter(|(dc, _, _)| rpf::secure_stock(t.id, dc))
                        .map(|(dc, _, _)| dc.to_string())
                        .collect(),
                });
            }
        }
        out
    }
}

impl FakeCloud for Vastai {
    fn boot_script_in(body: &serde_json::Value) -> Option<String> {
        body["onstart"].as_str().map(str::to_string)
    }
    fn runs_launch_configuration() -> bool {
        false
    }
    fn adapter(url: &str, deployment: &str) -> Arc<dyn Provider> {
        Arc::new(VastAdapter::new(
            VastaiConfig {
                api_key: Secret::new(vaf::KEY),
                url: format!("{url}/api/v0"),
            },
            deployment,
        ))
    }
    fn launchable() -> (&'static str, &'static str, &'static str, &'static str) {
        ("vastai", "north-america", "RTX4090", "RTX 4090:1")
    }
    fn set_timing(&mut self, t: Timing) {
        self.timing = t;
    }
    fn plant_named(&mut self, name: &str) -> String {
        self.plant(name).to_string()
    }
    fn live_ids(&self) -> Vec<String> {
        self.live().iter().map(|i| i.id.to_string()).collect()
    }
    fn refuse(&mut self, cloud_type: &str, _region: &str) {
        let gpu = cloud_type.rsplit_once(':').map_or(cloud_type, |(g, _)| g);
        self.sell_out(gpu);
    }
    fn launch_line(&self) -> String {
        // The cheapest verified RTX 4090 in North America (Quebec, CA).
        "PUT /api/v0/asks/5003/".into()
    }
    fn sends_retry_after() -> bool {
        false
    }
    /// Vast is a market: a type is each (GPU, count, VRAM) some verified
    /// host offers, with the numbers of the cheapest such offer, in stock
    /// in the regions Parasol groups the hosts' countries into.
    fn listing(&self) -> Vec<Listed> {
        let region = |geo: &str| match geo.rsplit(", ").next().unwrap() {
            "US" | "CA" => "north-america",
            "SE" | "NO" => "europe",
            "JP" => "asia-pacific",
            other => panic!("no region written down for {other}"),
        };
        let mut asks: Vec<_> = self.asks.iter().filter(|a| a.verified).collect();
        asks.sort_by(|a, b| a.dph_total.total_cmp(&b.dph_total));
        let mut out: Vec<(i64, Listed)> = Vec::new();
        for a in asks {
            let stocked = region(&a.geolocation).to_string();
            if let Some((_, l)) = out.iter_mut().find(|(ram, l)| {
                l.cloud_type == format!("{}:{}", a.gpu_name, a.num_gpus) && *ram == a.gpu_ram
            }) {
                if !l.in_stock.contains(&stocked) {
                    l.in_stock.push(stocked);
                }
                continue;
            }
            let gpu = match (a.gpu_name.as_str(), a.gpu_ram) {
                ("RTX 4090", _) => Some("RTX4090"),
                ("H100 SXM", _) => Some("H100"),
                ("A100 SXM4", r) if r > 50_000 => Some("A100_80G"),
                ("A100 SXM4", _) => Some("A100"),
                ("Q RTX 8000", _) => None,
                (other, _) => panic!("no model written down for {other}"),
            };
            out.push((
                a.gpu_ram,
                Listed {
                    cloud_type: format!("{}:{}", a.gpu_name, a.num_gpus),
                    gpu,
                    manufacturer: "nvidia",
                    gpus: a.num_gpus,
                    vram: (a.gpu_ram as f64 / 1024.0).round() as i64,
                    vcpus: a.cpu_cores_effective.floor() as i64,
                    memory: (a.cpu_ram as f64 / 1024.0).round() as i64,
                    in_stock: vec![stocked],
                },
            ));
        }
        out.into_iter().map(|(_, l)| l).collect()
    }
}

impl FakeCloud for DigitalOcean {
    fn boot_script_in(body: &serde_json::Value) -> Option<String> {
        body["user_data"].as_str().map(str::to_string)
    }
    fn adapter(url: &str, deployment: &str) -> Arc<dyn Provider> {
        Arc::new(DoAdapter::new(
            DigitalOceanConfig {
                token: Secret::new(dof::TOKEN),
                url: format!("{url}/v2"),
            },
            deployment,
        ))
    }
    fn launchable() -> (&'static str, &'static str, &'static str, &'static str) {
        ("digitalocean", "nyc2", "H100", "gpu-h100x1-80gb")
    }
    fn set_timing(&mut self, t: Timing) {
        self.timing = t;
    }
    fn plant_named(&mut self, name: &str) -> String {
        // A deployment tags what it names; a legacy or foreign droplet
        // carries no such tag.
        let tag = name
            .strip_prefix("parasol-")
            .and_then(|r| r.split_once('-'))
            .filter(|(d, rest)| d.len() == 10 && rest.len() == 36)
            .map(|(d, _)| format!("parasol-{d}"));
        let tags: Vec<&str> = tag.iter().map(String::as_str).collect();
        self.plant(name, &tags).to_string()
    }
    fn live_ids(&self) -> Vec<String> {
        self.live().iter().map(|d| d.id.to_string()).collect()
    }
    fn refuse(&mut self, cloud_type: &str, region: &str) {
        self.no_capacity.push((cloud_type.into(), region.into()));
    }
    fn launch_line(&self) -> String {
        "POST /v2/droplets".into()
    }
    fn listing(&self) -> Vec<Listed> {
        dof::SIZES
            .iter()
            .filter_map(|s| {
                let (count, vram, model, shade) = s.gpu?;
                Some(Listed {
                    cloud_type: s.slug.to_string(),
                    gpu: Some(shade),
                    manufacturer: if model.starts_with("amd") {
                        "AMD"
                    } else {
                        "nvidia"
                    },
                    gpus: count,
                    // The droplet's VRAM, all GPUs together.
                    vram: vram / count,
                    vcpus: s.vcpus,
                    memory: s.memory / 1024,
                    in_stock: if s.available {
                        s.regions.iter().map(|r| r.to_string()).collect()
                    } else {
                        vec![]
                    },
                })
            })
            .collect()
    }
}

/// The regions the `gcp` adapter under test serves: two priced ones and
/// one the price table does not cover.
pub const GCP_REGIONS: &[&str] = &["us-central1", "us-east1", "europe-west4"];

/// The `gcp` adapter with the test service account's key, pointed at the
/// fake `url` (API and token endpoint).
pub fn gcp_adapter(url: &str, deployment: &str) -> GcpAdapter {
    use parasol::providers::clouds::gcp::auth::{parse_key, Credentials, GcpConfig};
    GcpAdapter::new(
        GcpConfig {
            credentials: Credentials::ServiceAccount(
                parse_key(&gcf::key_json(url)).expect("the test key"),
            ),
            project: gcf::PROJECT.into(),
            regions: GCP_REGIONS.iter().map(|r| r.to_string()).collect(),
            url: format!("{url}/compute/v1"),
            billing_url: format!("{url}/v1"),
            image: None,
        },
        deployment,
    )
}

impl FakeCloud for Gcp {
    fn boot_script_in(body: &serde_json::Value) -> Option<String> {
        body["metadata"]["items"]
            .as_array()?
            .iter()
            .find(|i| i["key"] == "startup-script")?["value"]
            .as_str()
            .map(str::to_string)
    }
    fn adapter(url: &str, deployment: &str) -> Arc<dyn Provider> {
        Arc::new(gcp_adapter(url, deployment))
    }
    fn launchable() -> (&'static str, &'static str, &'static str, &'static str) {
        ("gcp", "us-central1", "L4", "g2-standard-4")
    }
    fn set_timing(&mut self, t: Timing) {
        self.timing = t;
    }
    /// Labelled as the deployment whose marker `name` carries labels its
    /// machines; any other name gets no labels.
    fn plant_named(&mut self, name: &str) -> String {
        let labels = [DEPLOYMENT, OTHER_DEPLOYMENT]
            .into_iter()
            .find_map(|d| {
                Marker::new(d).ours(name).map(|id| {
                    serde_json::json!({"parasol-deployment": d, "parasol-instance": id.to_string()})
                })
            })
            .unwrap_or_else(|| serde_json::json!({}));
        self.plant(name, labels)
    }
    fn live_ids(&self) -> Vec<String> {
        self.live()
            .iter()
            .map(|m| format!("{}/{}", m.zone, m.name))
            .collect()
    }
    /// Every zone of the region that lists the type is exhausted.
    fn refuse(&mut self, cloud_type: &str, region: &str) {
        let machine = cloud_type.split('+').next().unwrap();
        for (zone, t, ..) in gcf::MACHINE_TYPES {
            if *t == machine && zone.starts_with(&format!("{region}-")) {
                self.exhausted.push((cloud_type.into(), zone.to_string()));
            }
        }
    }
    fn launch_line(&self) -> String {
        format!(
            "POST /compute/v1/projects/{}/zones/us-central1-a/instances",
            gcf::PROJECT
        )
    }
    /// Google sends no `Retry-After` with its 429s.
    fn sends_retry_after() -> bool {
        false
    }
    /// The served families' machine types, and T4, V100 and P100 on the
    /// N1 shape per count, from the fake's aggregated lists, in stock in
    /// each served and priced region where a zone lists them.
    fn listing(&self) -> Vec<Listed> {
        use parasol::providers::clouds::gcp::{catalog, region_of};
        let model = |acc: &str| -> (&'static str, i64) {
            match acc {
                "nvidia-tesla-a100" => ("A100", 40),
                "nvidia-a100-80gb" => ("A100_80G", 80),
                "nvidia-h100-80gb" | "nvidia-h100-mega-80gb" => ("H100", 80),
                "nvidia-h200-141gb" => ("H200", 141),
                "nvidia-b200" => ("B200", 180),
                "nvidia-l4" => ("L4", 24),
                "nvidia-tesla-t4" => ("T4", 16),
                "nvidia-tesla-v100" => ("V100", 16),
                "nvidia-tesla-p100" => ("P100", 16),
                other => panic!("no model written down for {other}"),
            }
        };
        let mut by_type: std::collections::BTreeMap<String, Listed> = Default::default();
        let mut add = |t: String, acc: &str, n: i64, cpus: i64, mb: i64, zone: &str| {
            let region = region_of(zone).to_string();
            let (gpu, vram) = model(acc);
            let l = by_type.entry(t.clone()).or_insert_with(|| Listed {
                cloud_type: t.clone(),
                gpu: Some(gpu),
                manufacturer: "nvidia",
                gpus: n,
                vram,
                vcpus: cpus,
                memory: (mb as f64 / 1024.0).round() as i64,
                in_stock: vec![],
            });
            if GCP_REGIONS.contains(&region.as_str())
                && catalog::price(&t, &region).is_some()
                && !l.in_stock.contains(&region)
            {
                l.in_stock.push(region);
            }
        };
        for (zone, t, cpus, mb, acc) in gcf::MACHINE_TYPES {
            if let (Some((acc, n)), true) = (acc, catalog::served_family(t)) {
                add(t.to_string(), acc, *n, *cpus, *mb, zone);
            }
        }
        for (zone, acc, _) in gcf::ACCELERATOR_TYPES {
            let Some((_, counts)) = catalog::ATTACHED.iter().find(|(a, _)| a == acc) else {
                continue;
            };
            for n in *counts {
                let shape = catalog::n1_shape(*n);
                if let Some((_, _, cpus, mb, _)) = gcf::MACHINE_TYPES
                    .iter()
                    .find(|m| m.0 == *zone && m.1 == shape)
                {
                    add(catalog::n1_type(acc, *n), acc, *n, *cpus, *mb, zone);
                }
            }
        }
        by_type.into_values().collect()
    }
}

// ------------------------------------------------------------ volumes

/// A provider that sells volumes, with a way to see them behind it.
#[async_trait::async_trait]
pub trait VolumeSubject: Subject {
    /// `(cloud id, name)` of every volume at the provider.
    async fn volumes_at(&self) -> Vec<(String, String)>;
    /// Cloud ids of the volumes attached to the machine `machine` (its
    /// cloud id).
    async fn attached(&self, machine: &str) -> Vec<String>;
    /// The next volume create is carried out but its answer is lost.
    fn lose_next_volume_answer(&self);
}

/// The volume side of a fake cloud.
pub trait FakeVolumes: FakeCloud {
    /// `(cloud id, name)` of every volume at the fake.
    fn volumes_at(&self) -> Vec<(String, String)>;
    /// Cloud ids of the volumes attached to `machine`.
    fn attached(&self, machine: &str) -> Vec<String>;
    /// `"METHOD /path"` of the volume create request.
    fn volume_create_line(&self) -> String;
}

#[async_trait::async_trait]
impl<C: FakeVolumes + Send> VolumeSubject for Http<C> {
    async fn volumes_at(&self) -> Vec<(String, String)> {
        self.fake.with(|c| c.volumes_at())
    }
    async fn attached(&self, machine: &str) -> Vec<String> {
        self.fake.with(|c| c.attached(machine))
    }
    fn lose_next_volume_answer(&self) {
        let line = self.fake.with(|c| c.volume_create_line());
        self.fake.faults(|f| {
            f.lose_answer.insert(line, 1);
        });
    }
}

/// Asks until the volume is available; its cloud id and zone.
async fn until_available(
    p: &dyn Provider,
    r: &VolumeRef,
    first: VolumeState,
) -> (String, Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut state = first;
    loop {
        match state {
            VolumeState::Available {
                cloud_assigned_id,
                zone,
            } => return (cloud_assigned_id, zone),
            VolumeState::Creating { .. } => {}
            other => panic!("a volume being made went {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the volume never became available"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = p.describe_volume(r).await.expect("describe_volume");
    }
}

/// Deletes until the provider says the volume is gone.
async fn delete_until_gone(p: &dyn Provider, r: &VolumeRef) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match p.delete_volume(r).await {
            Ok(VolumeState::Gone) => return,
            Ok(VolumeState::Deleting) | Err(ProviderError::Transient(_)) => {}
            other => panic!("delete_volume answered {other:?}"),
        }
        assert!(Instant::now() < deadline, "the volume is never gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Create makes one volume at the cloud under Parasol's id (a create whose
/// answer was lost is found again, not made twice); a launch with it
/// gives the machine the volume; delete removes it at the cloud; and the
/// sweep deletes a volume under this deployment's marker that no store row
/// accounts for.
pub async fn volume_lifecycle(s: impl VolumeSubject) {
    let p = s.provider();
    let base = s.request(Uuid::nil());
    let vid = Uuid::new_v4();
    let vreq = VolumeRequest {
        volume_id: vid,
        name: "conformance data".into(),
        cloud: base.cloud.clone(),
        region: base.region.clone(),
        size_in_gb: 10,
    };
    let cold = VolumeRef {
        volume_id: vid,
        region: base.region.clone(),
        cloud_assigned_id: None,
    };
    assert_eq!(p.describe_volume(&cold).await.unwrap(), VolumeState::Gone);
    s.lose_next_volume_answer();
    let lost = p.create_volume(&vreq).await;
    assert!(
        matches!(lost, Err(ProviderError::Transient(_))),
        "a lost answer is transient: {lost:?}"
    );
    let first = p.create_volume(&vreq).await.expect("the retry adopts it");
    let (cloud_id, zone) = until_available(&*p, &cold, first).await;
    let at = s.volumes_at().await;
    let ours: Vec<_> = at
        .iter()
        .filter(|(_, name)| Marker::new(DEPLOYMENT).ours(name) == Some(vid))
        .collect();
    assert_eq!(ours.len(), 1, "one volume under our id: {at:?}");
    assert_eq!(ours[0].0, cloud_id, "{at:?}");
    let again = p.create_volume(&vreq).await.expect("create again");
    assert_eq!(until_available(&*p, &cold, again).await.0, cloud_id);
    assert_eq!(s.volumes_at().await.len(), at.len(), "no second volume");
    let marked: Vec<Uuid> = p
        .list_marked_volumes()
        .await
        .unwrap()
        .iter()
        .map(|r| r.volume_id)
        .collect();
    assert_eq!(marked, vec![vid]);

    let iid = Uuid::new_v4();
    let mut req = s.request(iid);
    req.volumes = vec![LaunchVolume {
        id: vid,
        size_in_gb: 10,
        cloud_assigned_id: cloud_id.clone(),
        zone,
    }];
    let machine = p.launch(&req).await.expect("launch with the volume");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Some clouds attach only once the machine runs (AWS).
        p.describe(iid).await.expect("describe");
        if s.attached(&machine.cloud_assigned_id)
            .await
            .contains(&cloud_id)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "machine {} never had volume {cloud_id} attached",
            machine.cloud_assigned_id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate_until_gone(&*p, iid).await;
    let known = VolumeRef {
        cloud_assigned_id: Some(cloud_id.clone()),
        ..cold.clone()
    };
    assert!(
        matches!(
            p.describe_volume(&known).await.unwrap(),
            VolumeState::Available { .. }
        ),
        "the volume outlives the machine"
    );
    delete_until_gone(&*p, &known).await;
    let at = s.volumes_at().await;
    assert!(
        !at.iter().any(|(c, _)| *c == cloud_id),
        "still there: {at:?}"
    );
    assert_eq!(p.describe_volume(&cold).await.unwrap(), VolumeState::Gone);
    assert_eq!(p.delete_volume(&known).await.unwrap(), VolumeState::Gone);

    let orphan = Uuid::new_v4();
    let oreq = VolumeRequest {
        volume_id: orphan,
        ..vreq.clone()
    };
    let oref = VolumeRef {
        volume_id: orphan,
        ..cold.clone()
    };
    let made = p.create_volume(&oreq).await.expect("create the orphan");
    let (orphan_id, _) = until_available(&*p, &oref, made).await;
    let dir = tempfile::tempdir().unwrap();
    let store = parasol::store::Store::open(&parasol::store::StoreOptions {
        url: format!("sqlite://{}", dir.path().join("sweep.db").display()),
        max_connections: 2,
    })
    .await
    .unwrap();
    let mut providers = Providers::default();
    providers.add(p.clone(), std::slice::from_ref(&base.cloud));
    assert_eq!(sweep::sweep_once(&providers, &store).await, 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.volumes_at().await.iter().any(|(c, _)| *c == orphan_id) {
        assert!(Instant::now() < deadline, "the orphan volume was not swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
        sweep::sweep_once(&providers, &store).await;
    }
}

/// The volume property, for clouds behind HTTP that sell volumes.
macro_rules! volume_cloud {
    ($($cloud:ident => $fake:ty;)*) => {
        $(
            mod $cloud {
                use super::*;
                #[tokio::test]
                async fn volume_lifecycle() {
                    super::super::volume_lifecycle(Http::<$fake>::start().await).await
                }
            }
        )*
    };
}

mod volumes {
    use super::*;
    volume_cloud! {
        digitalocean => DigitalOcean;
        gcp => Gcp;
        runpod => Runpod;
        lambda => Lambda;
        hyperstack => Hyperstack;
        verda => Verda;
        azure => Azure;
    }

    #[tokio::test]
    async fn aws_volume_lifecycle() {
        super::volume_lifecycle(AwsSubject::start().await).await
    }
}

#[async_trait::async_trait]
impl VolumeSubject for AwsSubject {
    async fn volumes_at(&self) -> Vec<(String, String)> {
        let x = self.moto.call(AWS_REGION, "DescribeVolumes", &[]).await;
        x.items(&["volumeSet"])
            .into_iter()
            .filter(|v| v.text_at(&["status"]) != Some("deleted"))
            .filter_map(|v| {
                Some((
                    v.text_at(&["volumeId"])?.to_string(),
                    v.tag("Name").unwrap_or("").to_string(),
                ))
            })
            .collect()
    }
    async fn attached(&self, machine: &str) -> Vec<String> {
        let x = self.moto.call(AWS_REGION, "DescribeVolumes", &[]).await;
        x.items(&["volumeSet"])
            .into_iter()
            .filter(|v| {
                v.items(&["attachmentSet"])
                    .iter()
                    .any(|a| a.text_at(&["instanceId"]) == Some(machine))
            })
            .filter_map(|v| v.text_at(&["volumeId"]).map(str::to_string))
            .collect()
    }
    /// moto makes the volume and the proxy never answers.
    fn lose_next_volume_answer(&self) {
        self.proxy.fault(Fault::hang("CreateVolume").times(1));
    }
}

impl FakeVolumes for Gcp {
    fn volumes_at(&self) -> Vec<(String, String)> {
        self.disks
            .iter()
            .map(|d| (format!("{}/{}", d.zone, d.name), d.name.clone()))
            .collect()
    }
    fn attached(&self, machine: &str) -> Vec<String> {
        self.machines
            .iter()
            .filter(|m| format!("{}/{}", m.zone, m.name) == machine)
            .flat_map(|m| m.attached())
            .collect()
    }
    fn volume_create_line(&self) -> String {
        format!(
            "POST /compute/v1/projects/{}/zones/us-central1-a/disks",
            gcf::PROJECT
        )
    }
}

impl FakeVolumes for DigitalOcean {
    fn volumes_at(&self) -> Vec<(String, String)> {
        self.volumes
            .iter()
            .map(|v| (v.id.clone(), v.name.clone()))
            .collect()
    }
    fn attached(&self, machine: &str) -> Vec<String> {
        self.volumes
            .iter()
            .filter(|v| v.droplet_ids.iter().any(|d| d.to_string() == machine))
            .map(|v| v.id.clone())
            .collect()
    }
    fn volume_create_line(&self) -> String {
        "POST /v2/volumes".into()
    }
}

impl FakeVolumes for Runpod {
    fn volumes_at(&self) -> Vec<(String, String)> {
        self.volumes
            .iter()
            .map(|v| (v.id.clone(), v.name.clone()))
            .collect()
    }
    fn attached(&self, machine: &str) -> Vec<String> {
        self.pods
            .iter()
            .filter(|p| p.id == machine && p.terminated.is_none())
            .filter_map(|p| p.network_volume.clone())
            .collect()
    }
    fn volume_create_line(&self) -> String {
        "POST /v1/networkvolumes".into()
    }
}

impl FakeVolumes for Lambda {
    fn volumes_at(&self) -> Vec<(String, String)> {
        self.filesystems
            .iter()
            .map(|f| (f.id.clone(), f.name.clone()))
            .collect()
    }
    fn attached(&self, machine: &str) -> Vec<String> {
        let Some(m) = self.machines.iter().find(|m| m.id == machine) else {
            return vec![];
        };
        self.filesystems
            .iter()
            .filter(|f| m.file_system_names.contains(&f.name))
            .map(|f| f.id.clone())
            .collect()
    }
    fn volume_create_line(&self) -> String {
        "POST /api/v1/filesystems".into()
    }
}

impl FakeVolumes for Hyperstack {
    fn volumes_at(&self) -> Vec<(String, String)> {
        // Hyperstack's names are too short for the marker, which the
        // volume carries as its description.
        self.volumes
            .iter()
            .map(|v| (v.id.to_string(), v.description.clone()))
            .collect()
    }
    fn attached(&self, machine: &str) -> Vec<String> {
        self.machines
            .iter()
            .filter(|m| m.id.to_string() == machine && m.deleted.is_none())
            .filter_map(|m| m.volume.map(|v| v.to_string()))
            .collect()
    }
    fn volume_create_line(&self) -> String {
        "POST /v1/core/volumes".into()
    }
}

impl FakeVolumes for Verda {
    fn volumes_at(&self) -> Vec<(String, String)> {
        self.volumes
            .iter()
            .map(|v| (v.id.clone(), v.name.clone()))
            .collect()
    }
    fn attached(&self, machine: &str) -> Vec<String> {
        self.machines
            .iter()
            .filter(|m| m.id == machine && m.deleted.is_none())
            .flat_map(|m| m.volumes.clone())
            .collect()
    }
    fn volume_create_line(&self) -> String {
        "POST /v1/volumes".into()
    }
}

/// The Azure adapter's settings for a fake at `url`: Resource Manager,
/// Entra ID and the Retail Prices API all on it.
pub fn azure_config(url: &str) -> AzureConfig {
    AzureConfig {
        auth: AzureAuth::ClientSecret {
            tenant_id: azf::TENANT.into(),
            client_id: azf::CLIENT_ID.into(),
            client_secret: Secret::new(azf::CLIENT_SECRET),
        },
        subscription_id: azf::SUBSCRIPTION.into(),
        locations: azf::LOCATIONS.iter().map(|l| l.to_string()).collect(),
        url: url.into(),
        authority_host: url.into(),
        prices_url: url.into(),
        image: AzureConfig::default_image(),
    }
}

impl FakeCloud for Azure {
    /// cloud-init's `customData`, base64.
    fn boot_script_in(body: &serde_json::Value) -> Option<String> {
        use base64::Engine;
        let data = body["properties"]["osProfile"]["customData"].as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()?;
        String::from_utf8(bytes).ok()
    }
    fn adapter(url: &str, deployment: &str) -> Arc<dyn Provider> {
        Arc::new(AzureAdapter::new(azure_config(url), deployment))
    }
    fn launchable() -> (&'static str, &'static str, &'static str, &'static str) {
        ("azure", "eastus", "A100_80G", "Standard_NC24ads_A100_v4")
    }
    fn set_timing(&mut self, t: Timing) {
        self.timing = t;
    }
    /// In this deployment's resource group where the name carries its
    /// marker (tagged as the adapter tags), elsewhere in one of its own.
    fn plant_named(&mut self, name: &str) -> String {
        let owner = [DEPLOYMENT, OTHER_DEPLOYMENT]
            .into_iter()
            .find_map(|d| Marker::new(d).ours(name).map(|id| (d, id)));
        match owner {
            Some((d, id)) => self.plant(
                &AzureAdapter::group_name(d, "eastus"),
                name,
                serde_json::json!({"parasol-instance": id.to_string(), "parasol-deployment": d}),
            ),
            None => self.plant("my-own-group", name, serde_json::json!({})),
        }
    }
    fn live_ids(&self) -> Vec<String> {
        self.live(azf::VM).iter().map(|r| r.id.clone()).collect()
    }
    /// Late, through the VM's create operation, as Azure reports an
    /// allocation failure as often as on the `PUT` (which
    /// `azure::a_refused_zone_falls_back_to_the_next` covers): the suite's
    /// "nothing rented" then holds only if the failed VMs are deleted.
    fn refuse(&mut self, cloud_type: &str, region: &str) {
        self.refuse_late
            .push((cloud_type.into(), region.into(), None));
    }
    fn launch_line(&self) -> String {
        format!(
            "PUT /subscriptions/{}/resourceGroups/{}/providers/{}/*",
            azf::SUBSCRIPTION,
            AzureAdapter::group_name(DEPLOYMENT, "eastus"),
            azf::VM
        )
    }
    /// Resource SKUs' GPU sizes: the served series (whole GPUs) and the
    /// M60 size Shadeform has no name for; stocked where no restriction
    /// covers the location or every zone.
    fn listing(&self) -> Vec<Listed> {
        azf::SKUS
            .iter()
            .filter(|s| s.gpus.is_some() && !s.name.starts_with("Standard_NV12ads"))
            .map(|s| {
                let (gpu, manufacturer, vram) = match s.name {
                    n if n.ends_with("_A100_v4") => (Some("A100_80G"), "nvidia", 80),
                    n if n.ends_with("_H100_v5") && n.starts_with("Standard_ND") => {
                        (Some("H100"), "nvidia", 80)
                    }
                    n if n.ends_with("_H100_v5") => (Some("H100"), "nvidia", 94),
                    n if n.ends_with("_MI300X_v5") => (Some("MI300X"), "AMD", 192),
                    n if n.ends_with("_T4_v3") => (Some("T4"), "nvidia", 16),
                    n if n.ends_with("_A10_v5") => (Some("A10"), "nvidia", 24),
                    "Standard_NV12s_v3" => (None, "nvidia", 8),
                    other => panic!("no model written down for {other}"),
                };
                Listed {
                    cloud_type: s.name.to_string(),
                    gpu,
                    manufacturer,
                    gpus: s.gpus.unwrap().parse().unwrap(),
                    vram,
                    vcpus: s.vcpus,
                    memory: s.memory_gb,
                    in_stock: s
                        .places
                        .iter()
                        .filter(|(_, zones, refused, whole)| {
                            !whole
                                && (zones.is_empty() || zones.iter().any(|z| !refused.contains(z)))
                        })
                        .map(|p| p.0.to_string())
                        .collect(),
                }
            })
            .collect()
    }
}

impl FakeVolumes for Azure {
    fn volumes_at(&self) -> Vec<(String, String)> {
        self.all(azf::DISK)
            .iter()
            .filter(|d| d.tag("parasol-volume").is_some())
            .filter(|d| d.deleting.is_none())
            .map(|d| (d.id.clone(), d.name.clone()))
            .collect()
    }
    fn attached(&self, machine: &str) -> Vec<String> {
        self.live(azf::VM)
            .iter()
            .filter(|v| v.id == machine)
            .flat_map(|v| {
                v.body["properties"]["storageProfile"]["dataDisks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|d| d["managedDisk"]["id"].as_str().map(str::to_string))
            .collect()
    }
    fn volume_create_line(&self) -> String {
        format!(
            "PUT /subscriptions/{}/resourceGroups/{}/providers/{}/*",
            azf::SUBSCRIPTION,
            AzureAdapter::group_name(DEPLOYMENT, "eastus"),
            azf::DISK
        )
    }
}
