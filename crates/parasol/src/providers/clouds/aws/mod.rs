//! `aws`: Amazon EC2, through the EC2 Query API (version 2016-11-15),
//! written from AWS's public EC2 API reference and tested against moto's
//! EC2 server.
//!
//! Actions used: DescribeInstanceTypes, DescribeInstanceTypeOfferings
//! (location type `availability-zone`), DescribeSpotPriceHistory for the
//! catalog; DescribeImages, DescribeKeyPairs, ImportKeyPair, DescribeVpcs,
//! DescribeSecurityGroups, CreateSecurityGroup,
//! AuthorizeSecurityGroupIngress, RunInstances, DescribeInstances,
//! RebootInstances and TerminateInstances for machines; CreateVolume,
//! DescribeVolumes, CreateTags, AttachVolume, DetachVolume and
//! DeleteVolume for volumes.
//!
//! A volume is a gp3 EBS volume, made at `/volumes/create` in one zone of
//! its region (the one offering the most GPU types) and tagged
//! `parasol:volume-id` and `parasol:deployment`. EBS mounts only in its own
//! zone, so an instance that mounts it launches in that zone; EC2 attaches
//! only to a running machine, so the launch tags the volume with the
//! instance and the describe that first sees the machine running attaches
//! it. Terminating the machine detaches it; the volume stays until its own
//! delete.
//!
//! Every machine is tagged `parasol:instance-id=<id>` and
//! `parasol:deployment=<deployment id>` (and `Name=parasol-<id>`, and
//! `parasol:zone=<zone>`); a running machine's zone is its instance's
//! `status_details` ("availability zone us-east-1b"). A launch
//! first looks the machine up by that tag, because `ClientToken`
//! idempotency is not something to rely on (moto ignores it). The zone is
//! Parasol's choice: the region's zones that offer the type, in order,
//! until one has capacity.
//!
//! State mapping (EC2 `instanceState.name` → [`MachineState`]):
//!
//! | EC2                         | public ip | MachineState                    |
//! |-----------------------------|-----------|---------------------------------|
//! | `pending`                   | any       | `Provisioning`                  |
//! | `running`                   | none      | `Booting`                       |
//! | `running`                   | set       | `Running`                       |
//! | `stopping`, `stopped`       | any       | `Failed` (Parasol never stops)  |
//! | `shutting-down`, `terminated` (describe: AWS did it) | any | spot: `Preempted`; else `Failed` with the state reason |
//! | `shutting-down` (terminate) | any       | `Terminating`                   |
//! | `terminated` (terminate)    | any       | `Gone`                          |
//!
//! The reconciler maps those onto the API: `Provisioning` is
//! `pending_provider`, `Booting` is `pending`, `Running` is `active`, a
//! terminate's `Gone` is `deleted`, `Failed` is `error`, `Preempted` is the
//! preemption path (`deleting`, `status_details: "preempted"`).

pub mod catalog;
pub mod client;
pub mod config;
pub mod xml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use parasol_api::RentalType;
use uuid::Uuid;

use self::client::{params, CallError, Ec2, Params};
use self::config::AwsConfig;
use self::xml::Xml;
use super::{configuration, key_name, shade_type, Marker, OffersCache};
use crate::providers::{
    Capacity, LaunchRequest, Launched, MachineState, Offer, Provider, ProviderError, RegionOffer,
    VolumeOffer, VolumeRef, VolumeRequest, VolumeState,
};

/// The cloud name in the API.
pub const CLOUD: &str = "aws";
/// Tag holding Parasol's instance id.
pub const TAG_INSTANCE: &str = "parasol:instance-id";
/// Tag holding the deployment id, so the orphan sweep touches only this
/// deployment's machines.
pub const TAG_DEPLOYMENT: &str = "parasol:deployment";
/// Tag holding the Parasol volume an EBS volume stands for.
pub const TAG_VOLUME: &str = "parasol:volume-id";
/// Tag holding the zone Parasol chose.
pub const TAG_ZONE: &str = "parasol:zone";
/// Name of the security group Parasol makes per region and VPC.
pub const SECURITY_GROUP: &str = "parasol-ssh";
/// The Deep Learning Base AMI (Ubuntu 22.04), by name; the newest wins.
pub const AMI_NAME: &str = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *";
/// The OS offered.
const OS: &str = "ubuntu22.04_cuda12_dlami";
/// How long a machine just launched may be missing from DescribeInstances
/// (EC2 is eventually consistent) before it counts as gone.
const LAUNCH_GRACE: Duration = Duration::from_secs(120);

/// Where one machine is.
#[derive(Debug, Clone)]
struct Known {
    region: String,
    ec2_id: String,
    launched: Option<Instant>,
}

/// The AWS adapter.
pub struct Aws {
    ec2: Ec2,
    deployment_id: String,
    offers: OffersCache,
    /// Zones of (region, instance type), from the last catalog refresh.
    zones: StdMutex<HashMap<(String, String), Vec<String>>>,
    known: StdMutex<HashMap<Uuid, Known>>,
    /// Key pairs known to exist, as (region, name).
    keys: StdMutex<HashSet<(String, String)>>,
    /// Security group id per region.
    groups: StdMutex<HashMap<String, String>>,
    /// AMI per region.
    amis: StdMutex<HashMap<String, String>>,
    /// Serializes key pair, security group and AMI set-up, so concurrent
    /// launches into a new region make each once.
    setup: tokio::sync::Mutex<()>,
}

/// A type's place in one region: the region, its zones, the on-demand
/// and the spot price in cents.
type RegionPrice = (String, Vec<String>, i64, Option<i64>);

/// One GPU instance type as DescribeInstanceTypes lists it.
#[derive(Debug, Clone)]
struct TypeInfo {
    name: String,
    gpu_name: String,
    gpu_count: i64,
    gpu_memory_mib: i64,
    vcpus: i64,
    memory_mib: i64,
    storage_gb: i64,
}

fn num(x: &Xml, path: &[&str]) -> i64 {
    x.text_at(path)
        .and_then(|t| t.parse::<f64>().ok())
        .map(|f| f as i64)
        .unwrap_or(0)
}

fn type_info(item: &Xml) -> Option<TypeInfo> {
    let name = item.text_at(&["instanceType"])?.to_string();
    let gpu = item.items(&["gpuInfo", "gpus"]).into_iter().next()?;
    Some(TypeInfo {
        gpu_name: gpu.text_at(&["name"])?.to_string(),
        gpu_count: num(gpu, &["count"]),
        gpu_memory_mib: num(gpu, &["memoryInfo", "sizeInMiB"]),
        vcpus: num(item, &["vCpuInfo", "defaultVCpus"]),
        memory_mib: num(item, &["memoryInfo", "sizeInMiB"]),
        storage_gb: num(item, &["instanceStorageInfo", "totalSizeInGB"]),
        name,
    })
}

/// Adds `Filter.n.Name` and its values.
fn filter(p: &mut Params, n: usize, name: &str, values: &[&str]) {
    p.push((format!("Filter.{n}.Name"), name.to_string()));
    for (i, v) in values.iter().enumerate() {
        p.push((format!("Filter.{n}.Value.{}", i + 1), v.to_string()));
    }
}

/// The instances of a DescribeInstances answer.
fn instances(x: &Xml) -> Vec<Xml> {
    x.items(&["reservationSet"])
        .into_iter()
        .flat_map(|r| r.items(&["instancesSet"]))
        .cloned()
        .collect()
}

fn state_name(i: &Xml) -> &str {
    i.text_at(&["instanceState", "name"]).unwrap_or("")
}

fn is_dead(i: &Xml) -> bool {
    matches!(state_name(i), "shutting-down" | "terminated")
}

/// The machine's state as a describe reports it: a machine Parasol still
/// believes live.
fn live_state(i: &Xml) -> MachineState {
    let ip = i.text_at(&["ipAddress"]).map(str::to_string);
    let reason = i
        .text_at(&["stateReason", "message"])
        .or_else(|| i.text_at(&["reason"]))
        .unwrap_or("no reason given")
        .to_string();
    match (state_name(i), ip) {
        ("pending", _) => MachineState::Provisioning,
        ("running", Some(ip)) => MachineState::Running {
            ip,
            ssh_port: 22,
            ssh_user: "ubuntu".to_string(),
            placement: i
                .text_at(&["placement", "availabilityZone"])
                .map(|z| format!("availability zone {z}")),
        },
        ("running", None) => MachineState::Booting,
        ("shutting-down" | "terminated", _) => {
            let spot = i.text_at(&["instanceLifecycle"]) == Some("spot")
                || i.text_at(&["stateReason", "code"]) == Some("Server.SpotInstanceTermination");
            if spot {
                MachineState::Preempted
            } else {
                MachineState::Failed {
                    reason: format!("AWS terminated the machine: {reason}"),
                }
            }
        }
        ("stopping" | "stopped", _) => MachineState::Failed {
            reason: format!("the machine was stopped outside Parasol: {reason}"),
        },
        (other, _) => MachineState::Failed {
            reason: format!("AWS reports the machine in an unknown state {other:?}"),
        },
    }
}

/// The user data: [`super::first_boot_script`], base64.
fn user_data(req: &LaunchRequest) -> Result<Option<String>, ProviderError> {
    Ok(super::first_boot_script(req, "ubuntu")?
        .map(|text| base64::engine::general_purpose::STANDARD.encode(text)))
}

impl Aws {
    /// An adapter; it calls nothing until asked. `deployment_id` marks the
    /// machines this deployment owns.
    pub fn new(cfg: AwsConfig, deployment_id: String) -> Self {
        Self {
            ec2: Ec2::new(cfg),
            deployment_id,
            offers: OffersCache::new(Duration::from_secs(120)),
            zones: StdMutex::new(HashMap::new()),
            known: StdMutex::new(HashMap::new()),
            keys: StdMutex::new(HashSet::new()),
            groups: StdMutex::new(HashMap::new()),
            amis: StdMutex::new(HashMap::new()),
            setup: tokio::sync::Mutex::new(()),
        }
    }

    fn regions(&self) -> &[String] {
        &self.ec2.config().regions
    }

    async fn call(&self, region: &str, action: &str, p: &Params) -> Result<Xml, ProviderError> {
        self.ec2
            .call(region, action, p)
            .await
            .map_err(|e| e.into_provider(action))
    }

    async fn region_types(&self, region: &str) -> Result<Vec<TypeInfo>, ProviderError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // Only the served families: all of EC2's types are megabytes.
            let mut p = params([("MaxResults", "100")]);
            let patterns: Vec<String> = catalog::FAMILIES.iter().map(|f| format!("{f}*")).collect();
            let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
            filter(&mut p, 1, "instance-type", &patterns);
            if let Some(t) = &token {
                p.push(("NextToken".into(), t.clone()));
            }
            let x = self.call(region, "DescribeInstanceTypes", &p).await?;
            out.extend(
                x.items(&["instanceTypeSet"])
                    .into_iter()
                    .filter(|i| {
                        i.text_at(&["instanceType"])
                            .is_some_and(catalog::served_family)
                    })
                    .filter_map(type_info),
            );
            token = x.text_at(&["nextToken"]).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Zones per type in `region`, for the given types.
    async fn region_zones(
        &self,
        region: &str,
        types: &[&str],
    ) -> Result<HashMap<String, Vec<String>>, ProviderError> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut p = params([
                ("LocationType", "availability-zone"),
                ("MaxResults", "1000"),
            ]);
            filter(&mut p, 1, "instance-type", types);
            if let Some(t) = &token {
                p.push(("NextToken".into(), t.clone()));
            }
            let x = self
                .call(region, "DescribeInstanceTypeOfferings", &p)
                .await?;
            for o in x.items(&["instanceTypeOfferingSet"]) {
                if let (Some(t), Some(z)) = (o.text_at(&["instanceType"]), o.text_at(&["location"]))
                {
                    out.entry(t.to_string()).or_default().push(z.to_string());
                }
            }
            token = x.text_at(&["nextToken"]).map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        for z in out.values_mut() {
            z.sort();
            z.dedup();
        }
        Ok(out)
    }

    /// The lowest current spot price per type in `region`, in cents (at
    /// least one: a price that rounds to nothing is still not free).
    async fn region_spot(
        &self,
        region: &str,
        types: &[&str],
    ) -> Result<HashMap<String, i64>, ProviderError> {
        let mut p = params([
            ("ProductDescription.1", "Linux/UNIX"),
            ("ProductDescription.2", "Linux/UNIX (Amazon VPC)"),
            (
                "StartTime",
                &chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
        ]);
        for (i, t) in types.iter().enumerate() {
            p.push((format!("InstanceType.{}", i + 1), t.to_string()));
        }
        let x = self.call(region, "DescribeSpotPriceHistory", &p).await?;
        let mut out: HashMap<String, i64> = HashMap::new();
        for s in x.items(&["spotPriceHistorySet"]) {
            let (Some(t), Some(price)) = (
                s.text_at(&["instanceType"]),
                s.text_at(&["spotPrice"])
                    .and_then(|p| p.parse::<f64>().ok()),
            ) else {
                continue;
            };
            let c = super::cents(price).max(1);
            out.entry(t.to_string())
                .and_modify(|v| *v = (*v).min(c))
                .or_insert(c);
        }
        Ok(out)
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>, ProviderError> {
        // Per type: its description, then per region its zones, price and
        // spot price.
        let mut infos: BTreeMap<String, TypeInfo> = BTreeMap::new();
        let mut per_region: BTreeMap<String, Vec<RegionPrice>> = BTreeMap::new();
        let mut zones_seen = HashMap::new();
        let mut failures = Vec::new();
        for region in self.regions() {
            let got = async {
                let types = self.region_types(region).await?;
                let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
                if names.is_empty() {
                    return Ok((types, HashMap::new(), HashMap::new()));
                }
                let zones = self.region_zones(region, &names).await?;
                let spot = self.region_spot(region, &names).await?;
                Ok::<_, ProviderError>((types, zones, spot))
            }
            .await;
            let (types, zones, spot) = match got {
                Ok(g) => g,
                // Wrong credentials are wrong everywhere: the whole
                // provider is unavailable.
                Err(e @ ProviderError::Permanent(_)) if e.to_string().contains("credentials") => {
                    return Err(e)
                }
                Err(e) => {
                    tracing::warn!(region = %region, error = %e, "aws: a region's catalog could not be read; leaving it out");
                    failures.push(format!("{region}: {e}"));
                    continue;
                }
            };
            for t in types {
                let z = zones.get(&t.name).cloned().unwrap_or_default();
                zones_seen.insert((region.clone(), t.name.clone()), z.clone());
                let Some(price) = catalog::price_cents(&t.name, region) else {
                    tracing::debug!(region = %region, instance_type = %t.name, "no shipped price; not offered here");
                    continue;
                };
                per_region.entry(t.name.clone()).or_default().push((
                    region.clone(),
                    z,
                    price,
                    spot.get(&t.name).copied(),
                ));
                infos.insert(t.name.clone(), t);
            }
        }
        if failures.len() == self.regions().len() {
            return Err(ProviderError::Transient(format!(
                "aws: no region's catalog could be read: {}",
                failures.join("; ")
            )));
        }
        *self.zones.lock().expect("poisoned") = zones_seen;

        let mut models = BTreeMap::new();
        for (name, t) in &infos {
            match catalog::gpu(&t.gpu_name, t.gpu_memory_mib, &t.name) {
                Some(gpu) => {
                    models.insert(name.clone(), gpu);
                }
                None => super::gpus::unmapped(CLOUD, name),
            }
        }
        let mut out = Vec::new();
        for (name, regions) in per_region {
            let t = &infos[&name];
            let Some(gpu) = models.get(&name) else {
                continue;
            };
            let hourly = regions.iter().map(|r| r.2).min().unwrap_or(0);
            out.push(Offer {
                cloud: CLOUD.to_string(),
                shade_instance_type: shade_type(gpu, t.gpu_count),
                cloud_instance_type: name.clone(),
                configuration: configuration(
                    gpu,
                    t.gpu_count,
                    t.vcpus,
                    (t.memory_mib as f64 / 1024.0).round() as i64,
                    t.storage_gb,
                    &[OS],
                ),
                hourly_price: hourly,
                deployment_type: "vm".to_string(),
                boot_time: None,
                regions: regions
                    .iter()
                    .map(|(region, zones, _, spot)| RegionOffer {
                        region: region.clone(),
                        display_name: catalog::region_display(region),
                        capacity: Capacity::Available(!zones.is_empty()),
                        spot_price: *spot,
                    })
                    .collect(),
                ssh_user: "ubuntu".to_string(),
                ssh_port: 22,
            });
        }
        // Every served type is an offer under a name of its own: the
        // smallest of a shape is `L4`, the others `L4_g6.2xlarge` ...
        super::gpus::unique_names(&mut out, |o| o.cloud_instance_type.clone());
        Ok(out)
    }

    /// The zones of `region` that offer `instance_type`.
    async fn zones_for(
        &self,
        region: &str,
        instance_type: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let key = (region.to_string(), instance_type.to_string());
        if let Some(z) = self.zones.lock().expect("poisoned").get(&key) {
            if !z.is_empty() {
                return Ok(z.clone());
            }
        }
        let z = self
            .region_zones(region, &[instance_type])
            .await?
            .remove(instance_type)
            .unwrap_or_default();
        self.zones.lock().expect("poisoned").insert(key, z.clone());
        Ok(z)
    }

    /// The machines tagged with `id` in `region`, live ones first.
    async fn tagged(&self, region: &str, id: Uuid) -> Result<Vec<Xml>, ProviderError> {
        let mut p = Params::new();
        filter(
            &mut p,
            1,
            &format!("tag:{TAG_INSTANCE}"),
            &[&id.to_string()],
        );
        let x = self.call(region, "DescribeInstances", &p).await?;
        let mut v = instances(&x);
        v.sort_by_key(is_dead);
        Ok(v)
    }

    /// The machine of `id`: where Parasol last saw it, or by tag in every
    /// served region. `Ok(None)` when there is none (or not yet visible
    /// after a launch: then `Err` is not right either, so a just-launched
    /// machine is reported as the `Known` without its description).
    async fn find(&self, id: Uuid) -> Result<Option<(Known, Option<Xml>)>, ProviderError> {
        let known = self.known.lock().expect("poisoned").get(&id).cloned();
        if let Some(k) = known {
            let found = self.tagged(&k.region, id).await?.into_iter().next();
            if found.is_none() && k.launched.is_none_or(|t| t.elapsed() >= LAUNCH_GRACE) {
                self.known.lock().expect("poisoned").remove(&id);
                return Ok(None);
            }
            return Ok(Some((k, found)));
        }
        for region in self.regions() {
            if let Some(i) = self.tagged(region, id).await?.into_iter().next() {
                let k = Known {
                    region: region.clone(),
                    ec2_id: i.text_at(&["instanceId"]).unwrap_or("").to_string(),
                    launched: None,
                };
                self.known.lock().expect("poisoned").insert(id, k.clone());
                return Ok(Some((k, Some(i))));
            }
        }
        Ok(None)
    }

    async fn ensure_key(&self, region: &str, public_key: &str) -> Result<String, ProviderError> {
        let name = key_name(public_key);
        let k = (region.to_string(), name.clone());
        if self.keys.lock().expect("poisoned").contains(&k) {
            return Ok(name);
        }
        let _one = self.setup.lock().await;
        let present = match self
            .ec2
            .call(region, "DescribeKeyPairs", &params([("KeyName.1", &name)]))
            .await
        {
            Ok(x) => !x.items(&["keySet"]).is_empty(),
            Err(e) if e.code() == Some("InvalidKeyPair.NotFound") => false,
            Err(e) => return Err(e.into_provider("DescribeKeyPairs")),
        };
        if !present {
            let material = base64::engine::general_purpose::STANDARD.encode(public_key.trim());
            match self
                .ec2
                .call(
                    region,
                    "ImportKeyPair",
                    &params([("KeyName", &name), ("PublicKeyMaterial", &material)]),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidKeyPair.Duplicate") => {}
                Err(e) => return Err(e.into_provider("ImportKeyPair")),
            }
        }
        self.keys.lock().expect("poisoned").insert(k);
        Ok(name)
    }

    async fn ensure_group(&self, region: &str) -> Result<String, ProviderError> {
        if let Some(g) = self.groups.lock().expect("poisoned").get(region) {
            return Ok(g.clone());
        }
        let _one = self.setup.lock().await;
        let mut p = Params::new();
        filter(&mut p, 1, "isDefault", &["true"]);
        let vpcs = self.call(region, "DescribeVpcs", &p).await?;
        let vpc = vpcs
            .items(&["vpcSet"])
            .first()
            .and_then(|v| v.text_at(&["vpcId"]))
            .map(str::to_string)
            .ok_or_else(|| {
                ProviderError::Permanent(format!(
                    "aws: {region} has no default VPC; Parasol launches into the default VPC"
                ))
            })?;
        let mut p = Params::new();
        filter(&mut p, 1, "group-name", &[SECURITY_GROUP]);
        filter(&mut p, 2, "vpc-id", &[&vpc]);
        let existing = self.call(region, "DescribeSecurityGroups", &p).await?;
        let id = match existing
            .items(&["securityGroupInfo"])
            .first()
            .and_then(|g| g.text_at(&["groupId"]))
        {
            Some(id) => id.to_string(),
            None => {
                let made = self
                    .call(
                        region,
                        "CreateSecurityGroup",
                        &params([
                            ("GroupName", SECURITY_GROUP),
                            ("GroupDescription", "Parasol: SSH to GPU instances"),
                            ("VpcId", &vpc),
                        ]),
                    )
                    .await?;
                let id = made
                    .text_at(&["groupId"])
                    .ok_or_else(|| {
                        ProviderError::Transient(
                            "aws: CreateSecurityGroup answered no groupId".into(),
                        )
                    })?
                    .to_string();
                match self
                    .ec2
                    .call(
                        region,
                        "AuthorizeSecurityGroupIngress",
                        &params([
                            ("GroupId", &id),
                            ("IpPermissions.1.IpProtocol", "tcp"),
                            ("IpPermissions.1.FromPort", "22"),
                            ("IpPermissions.1.ToPort", "22"),
                            ("IpPermissions.1.IpRanges.1.CidrIp", "0.0.0.0/0"),
                        ]),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code() == Some("InvalidPermission.Duplicate") => {}
                    Err(e) => return Err(e.into_provider("AuthorizeSecurityGroupIngress")),
                }
                id
            }
        };
        self.groups
            .lock()
            .expect("poisoned")
            .insert(region.to_string(), id.clone());
        Ok(id)
    }

    async fn ami(&self, region: &str) -> Result<String, ProviderError> {
        if let Some(a) = self.ec2.config().amis.get(region) {
            return Ok(a.clone());
        }
        if let Some(a) = self.amis.lock().expect("poisoned").get(region) {
            return Ok(a.clone());
        }
        let mut p = params([("Owner.1", "amazon")]);
        filter(&mut p, 1, "name", &[AMI_NAME]);
        filter(&mut p, 2, "state", &["available"]);
        filter(&mut p, 3, "architecture", &["x86_64"]);
        let x = self.call(region, "DescribeImages", &p).await?;
        let newest = x
            .items(&["imagesSet"])
            .into_iter()
            .filter_map(|i| Some((i.text_at(&["creationDate"]).unwrap_or(""), i.text_at(&["imageId"])?)))
            .max()
            .map(|(_, id)| id.to_string())
            .ok_or_else(|| {
                ProviderError::Permanent(format!(
                    "aws: no image named {AMI_NAME:?} owned by amazon in {region}; set [providers.aws.amis] {region} = \"ami-...\""
                ))
            })?;
        self.amis
            .lock()
            .expect("poisoned")
            .insert(region.to_string(), newest.clone());
        Ok(newest)
    }

    /// The EBS volumes made for the machine of `id`.
    async fn volumes_of(&self, region: &str, id: Uuid) -> Result<Vec<Xml>, ProviderError> {
        let mut p = Params::new();
        filter(
            &mut p,
            1,
            &format!("tag:{TAG_INSTANCE}"),
            &[&id.to_string()],
        );
        let x = self.call(region, "DescribeVolumes", &p).await?;
        Ok(x.items(&["volumeSet"]).into_iter().cloned().collect())
    }

    /// Marks the instance's volumes as the machine's (its instance tag),
    /// so the describe that sees it running attaches them; a volume that
    /// served an earlier machine is simply re-tagged.
    async fn claim_volumes(&self, region: &str, req: &LaunchRequest) -> Result<(), ProviderError> {
        if req.volumes.is_empty() {
            return Ok(());
        }
        let iid = req.instance_id.to_string();
        let mut p = params([("Tag.1.Key", TAG_INSTANCE), ("Tag.1.Value", iid.as_str())]);
        for (n, v) in req.volumes.iter().enumerate() {
            p.push((format!("ResourceId.{}", n + 1), v.cloud_assigned_id.clone()));
        }
        self.call(region, "CreateTags", &p).await?;
        Ok(())
    }

    /// The zone a new volume goes in: of the region's zones, the one that
    /// offers the most of the served GPU types, so the instances that
    /// mount it have the widest choice (ties: the first by name).
    async fn volume_zone(&self, region: &str) -> Result<String, ProviderError> {
        let counted = |zones: &HashMap<(String, String), Vec<String>>| {
            let mut n: BTreeMap<String, usize> = BTreeMap::new();
            for ((r, _), zs) in zones {
                if r == region {
                    for z in zs {
                        *n.entry(z.clone()).or_default() += 1;
                    }
                }
            }
            n.into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(z, _)| z)
        };
        if let Some(z) = counted(&self.zones.lock().expect("poisoned")) {
            return Ok(z);
        }
        // The zones come with the catalog.
        self.offers().await?;
        counted(&self.zones.lock().expect("poisoned")).ok_or_else(|| {
            ProviderError::Permanent(format!(
                "aws: no zone of {region} offers a GPU instance type"
            ))
        })
    }

    /// The EBS volume standing for Parasol's volume `r`: by its EBS id when
    /// known, else by its volume tag.
    async fn find_volume(&self, r: &VolumeRef) -> Result<Option<Xml>, ProviderError> {
        let p = match &r.cloud_assigned_id {
            Some(id) => params([("VolumeId.1", id.as_str())]),
            None => {
                let mut p = Params::new();
                filter(
                    &mut p,
                    1,
                    &format!("tag:{TAG_VOLUME}"),
                    &[&r.volume_id.to_string()],
                );
                p
            }
        };
        match self.ec2.call(&r.region, "DescribeVolumes", &p).await {
            Ok(x) => Ok(x
                .items(&["volumeSet"])
                .into_iter()
                .find(|v| v.text_at(&["status"]) != Some("deleted"))
                .cloned()),
            Err(e) if e.code() == Some("InvalidVolume.NotFound") => Ok(None),
            Err(e) => Err(e.into_provider("DescribeVolumes")),
        }
    }

    /// Attaches the machine's volumes that are not attached yet (EC2
    /// attaches only to a running machine), as /dev/sdf, /dev/sdg, ... in
    /// the order of their Parasol ids.
    async fn attach_volumes(
        &self,
        region: &str,
        id: Uuid,
        ec2_id: &str,
    ) -> Result<(), ProviderError> {
        let mut vols = self.volumes_of(region, id).await?;
        vols.sort_by(|a, b| a.tag(TAG_VOLUME).cmp(&b.tag(TAG_VOLUME)));
        for (n, v) in vols.iter().enumerate() {
            if v.text_at(&["status"]) != Some("available") {
                continue;
            }
            let device = format!("/dev/sd{}", (b'f' + (n as u8).min(20)) as char);
            let vol = v.text_at(&["volumeId"]).unwrap_or("");
            self.call(
                region,
                "AttachVolume",
                &params([
                    ("VolumeId", vol),
                    ("InstanceId", ec2_id),
                    ("Device", &device),
                ]),
            )
            .await?;
        }
        Ok(())
    }

    /// Detaches the machine's attached volumes, which outlive it (Parasol
    /// deletes a volume only when its own delete asks); true once none is
    /// attached.
    async fn release_volumes(&self, region: &str, id: Uuid) -> Result<bool, ProviderError> {
        let vols = self.volumes_of(region, id).await?;
        let mut left = false;
        for v in &vols {
            let vol = v.text_at(&["volumeId"]).unwrap_or("");
            match v.text_at(&["status"]).unwrap_or("") {
                "in-use" => {
                    left = true;
                    // InstanceId is optional in AWS's reference, but moto fails
                    // without it; AWS accepts it, so it is always sent.
                    let attached_to = v
                        .items(&["attachmentSet"])
                        .first()
                        .and_then(|a| a.text_at(&["instanceId"]))
                        .unwrap_or("")
                        .to_string();
                    match self
                        .ec2
                        .call(
                            region,
                            "DetachVolume",
                            &params([("VolumeId", vol), ("InstanceId", &attached_to)]),
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if e.code() == Some("IncorrectState") => {}
                        Err(e) => return Err(e.into_provider("DetachVolume")),
                    }
                }
                "available" | "deleted" | "deleting" | "error" => {}
                _ => left = true,
            }
        }
        Ok(!left)
    }

    fn run_params(
        &self,
        req: &LaunchRequest,
        zone: &str,
        image: &str,
        group: &str,
        key: Option<&str>,
        user_data: Option<&str>,
    ) -> Params {
        let id = req.instance_id.to_string();
        let name = Marker::new(&self.deployment_id).name(req.instance_id);
        // One token per zone: EC2 refuses a token reused with other
        // parameters (IdempotentParameterMismatch).
        let token = format!("{id}-{zone}");
        let mut p = params([
            ("ImageId", image),
            ("InstanceType", &req.cloud_instance_type),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("ClientToken", &token),
            ("Placement.AvailabilityZone", zone),
            ("SecurityGroupId.1", group),
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", TAG_INSTANCE),
            ("TagSpecification.1.Tag.1.Value", &id),
            ("TagSpecification.1.Tag.2.Key", TAG_DEPLOYMENT),
            ("TagSpecification.1.Tag.2.Value", &self.deployment_id),
            ("TagSpecification.1.Tag.3.Key", "Name"),
            ("TagSpecification.1.Tag.3.Value", &name),
            ("TagSpecification.1.Tag.4.Key", TAG_ZONE),
            ("TagSpecification.1.Tag.4.Value", zone),
        ]);
        if let Some(k) = key {
            p.push(("KeyName".into(), k.to_string()));
        }
        if let Some(u) = user_data {
            p.push(("UserData".into(), u.to_string()));
        }
        if req.rental_type == RentalType::Spot {
            p.extend(params([
                ("InstanceMarketOptions.MarketType", "spot"),
                (
                    "InstanceMarketOptions.SpotOptions.SpotInstanceType",
                    "one-time",
                ),
                (
                    "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
                    "terminate",
                ),
            ]));
        }
        p
    }
}

#[async_trait]
impl Provider for Aws {
    fn name(&self) -> &'static str {
        "aws"
    }

    async fn offers(&self) -> Result<Vec<Offer>, ProviderError> {
        self.offers.get(|| self.fetch_offers()).await
    }

    async fn volume_offers(&self) -> Result<Vec<VolumeOffer>, ProviderError> {
        Ok(self
            .regions()
            .iter()
            .map(|r| VolumeOffer {
                cloud: CLOUD.to_string(),
                region: r.clone(),
                supports_multi_mount: false,
                fixed_size: false,
                price_micros_per_gb_hour: catalog::GP3_MICROS_PER_GB_HOUR,
                min_size_gb: 1,
                max_size_gb: 16384,
                mount_rule: "an EBS volume mounts only on instances in its own region, which launch in its zone".to_string(),
            })
            .collect())
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, ProviderError> {
        let region = req.region.as_str();
        if !self.regions().iter().any(|r| r == region) {
            return Err(ProviderError::Permanent(format!(
                "aws: {region} is not a region this server serves"
            )));
        }
        // A retried launch (after a crash, a timeout, a lost answer) adopts
        // the machine an earlier attempt made.
        if let Some(i) = self
            .tagged(region, req.instance_id)
            .await?
            .into_iter()
            .next()
        {
            if is_dead(&i) {
                return Err(ProviderError::Permanent(
                    "the machine for this instance was already terminated".into(),
                ));
            }
            let ec2_id = i.text_at(&["instanceId"]).unwrap_or("").to_string();
            self.claim_volumes(region, req).await?;
            self.known.lock().expect("poisoned").insert(
                req.instance_id,
                Known {
                    region: region.to_string(),
                    ec2_id: ec2_id.clone(),
                    launched: Some(Instant::now()),
                },
            );
            return Ok(Launched {
                cloud_assigned_id: ec2_id,
            });
        }
        let user_data = user_data(req)?;
        let key = match req.ssh_public_key.as_deref() {
            Some(k) => Some(self.ensure_key(region, k).await?),
            None => None,
        };
        let group = self.ensure_group(region).await?;
        let image = self.ami(region).await?;
        let mut zones = self.zones_for(region, &req.cloud_instance_type).await?;
        // An EBS volume mounts only in its own zone: the machine goes there.
        if let Some(z) = req.volumes.iter().find_map(|v| v.zone.as_deref()) {
            if !zones.iter().any(|o| o == z) {
                return Err(ProviderError::Permanent(format!(
                    "aws: the instance's volume is in {z}, which does not offer {}; an EBS volume mounts only in its own zone",
                    req.cloud_instance_type
                )));
            }
            zones = vec![z.to_string()];
        }
        self.claim_volumes(region, req).await?;
        if zones.is_empty() {
            self.offers.clear().await;
            return Err(ProviderError::Capacity(format!(
                "aws: no zone of {region} offers {}",
                req.cloud_instance_type
            )));
        }
        let mut refusals = Vec::new();
        for zone in &zones {
            let p = self.run_params(
                req,
                zone,
                &image,
                &group,
                key.as_deref(),
                user_data.as_deref(),
            );
            match self.ec2.call(region, "RunInstances", &p).await {
                Ok(x) => {
                    let ec2_id = x
                        .items(&["instancesSet"])
                        .first()
                        .and_then(|i| i.text_at(&["instanceId"]))
                        .ok_or_else(|| {
                            ProviderError::Transient(
                                "aws: RunInstances answered no instance".into(),
                            )
                        })?
                        .to_string();
                    tracing::info!(instance = %req.instance_id, ec2_id = %ec2_id, zone = %zone, "aws: launched");
                    self.known.lock().expect("poisoned").insert(
                        req.instance_id,
                        Known {
                            region: region.to_string(),
                            ec2_id: ec2_id.clone(),
                            launched: Some(Instant::now()),
                        },
                    );
                    return Ok(Launched {
                        cloud_assigned_id: ec2_id,
                    });
                }
                Err(CallError::Ec2(e)) if e.is_zone_capacity() => {
                    tracing::info!(instance = %req.instance_id, zone = %zone, code = %e.code, "aws: no capacity in this zone; trying the next");
                    refusals.push(format!("{zone}: {} ({})", e.code, e.message));
                }
                Err(e) => return Err(e.into_provider("RunInstances")),
            }
        }
        self.offers.clear().await;
        Err(ProviderError::Capacity(format!(
            "aws: no zone of {region} has capacity for {} now ({})",
            req.cloud_instance_type,
            refusals.join("; ")
        )))
    }

    async fn describe(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        Ok(match self.find(id).await? {
            None => MachineState::Gone,
            Some((_, None)) => MachineState::Provisioning,
            Some((k, Some(i))) => {
                let state = live_state(&i);
                if let MachineState::Running { .. } = state {
                    self.attach_volumes(&k.region, id, &k.ec2_id).await?;
                }
                state
            }
        })
    }

    async fn restart(&self, id: Uuid) -> Result<(), ProviderError> {
        let Some((k, _)) = self.find(id).await? else {
            return Err(ProviderError::Permanent(
                "aws has no machine for this instance".into(),
            ));
        };
        self.call(
            &k.region,
            "RebootInstances",
            &params([("InstanceId.1", &k.ec2_id)]),
        )
        .await?;
        Ok(())
    }

    async fn terminate(&self, id: Uuid) -> Result<MachineState, ProviderError> {
        let Some((k, found)) = self.find(id).await? else {
            return Ok(MachineState::Gone);
        };
        match found.as_ref().map(state_name) {
            Some("terminated") => {
                if !self.release_volumes(&k.region, id).await? {
                    return Ok(MachineState::Terminating);
                }
                self.known.lock().expect("poisoned").remove(&id);
                return Ok(MachineState::Gone);
            }
            Some("shutting-down") => return Ok(MachineState::Terminating),
            _ => {}
        }
        // Detach first, so the volumes outlive the machine only as long
        // as it takes to delete them.
        self.release_volumes(&k.region, id).await?;
        match self
            .ec2
            .call(
                &k.region,
                "TerminateInstances",
                &params([("InstanceId.1", &k.ec2_id)]),
            )
            .await
        {
            Ok(_) => Ok(MachineState::Terminating),
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => {
                Ok(MachineState::Terminating)
            }
            Err(e) => Err(e.into_provider("TerminateInstances")),
        }
    }

    async fn create_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError> {
        let region = req.region.as_str();
        let r = VolumeRef {
            volume_id: req.volume_id,
            region: region.to_string(),
            cloud_assigned_id: None,
        };
        if let Some(v) = self.find_volume(&r).await? {
            return Ok(volume_state(&v));
        }
        let zone = self.volume_zone(region).await?;
        let vid = req.volume_id.to_string();
        let size = req.size_in_gb.to_string();
        let name = Marker::new(&self.deployment_id).name(req.volume_id);
        let x = self
            .call(
                region,
                "CreateVolume",
                &params([
                    ("AvailabilityZone", zone.as_str()),
                    ("Size", &size),
                    ("VolumeType", "gp3"),
                    ("ClientToken", &vid),
                    ("TagSpecification.1.ResourceType", "volume"),
                    ("TagSpecification.1.Tag.1.Key", TAG_VOLUME),
                    ("TagSpecification.1.Tag.1.Value", &vid),
                    ("TagSpecification.1.Tag.2.Key", TAG_DEPLOYMENT),
                    ("TagSpecification.1.Tag.2.Value", &self.deployment_id),
                    ("TagSpecification.1.Tag.3.Key", "Name"),
                    ("TagSpecification.1.Tag.3.Value", &name),
                ]),
            )
            .await?;
        tracing::info!(volume = %req.volume_id, zone = %zone, "aws: volume created");
        Ok(volume_state(&x))
    }

    async fn describe_volume(&self, r: &VolumeRef) -> Result<VolumeState, ProviderError> {
        Ok(self
            .find_volume(r)
            .await?
            .map_or(VolumeState::Gone, |v| volume_state(&v)))
    }

    async fn delete_volume(&self, r: &VolumeRef) -> Result<VolumeState, ProviderError> {
        let Some(v) = self.find_volume(r).await? else {
            return Ok(VolumeState::Gone);
        };
        let vol = v.text_at(&["volumeId"]).unwrap_or("").to_string();
        match v.text_at(&["status"]).unwrap_or("") {
            "in-use" => {
                // Its machine is gone or going; EBS deletes only a
                // detached volume.
                let to = v
                    .items(&["attachmentSet"])
                    .first()
                    .and_then(|a| a.text_at(&["instanceId"]))
                    .unwrap_or("")
                    .to_string();
                match self
                    .ec2
                    .call(
                        &r.region,
                        "DetachVolume",
                        &params([("VolumeId", vol.as_str()), ("InstanceId", &to)]),
                    )
                    .await
                {
                    Ok(_) => Ok(VolumeState::Deleting),
                    Err(e) if e.code() == Some("IncorrectState") => Ok(VolumeState::Deleting),
                    Err(e) => Err(e.into_provider("DetachVolume")),
                }
            }
            "available" | "error" => match self
                .ec2
                .call(
                    &r.region,
                    "DeleteVolume",
                    &params([("VolumeId", vol.as_str())]),
                )
                .await
            {
                Ok(_) => Ok(VolumeState::Deleting),
                Err(e) if e.code() == Some("InvalidVolume.NotFound") => Ok(VolumeState::Gone),
                Err(e) => Err(e.into_provider("DeleteVolume")),
            },
            _ => Ok(VolumeState::Deleting),
        }
    }

    async fn list_marked_volumes(&self) -> Result<Vec<VolumeRef>, ProviderError> {
        let mut out = Vec::new();
        for region in self.regions() {
            let mut p = Params::new();
            filter(
                &mut p,
                1,
                &format!("tag:{TAG_DEPLOYMENT}"),
                &[&self.deployment_id],
            );
            filter(&mut p, 2, "tag-key", &[TAG_VOLUME]);
            let x = self.call(region, "DescribeVolumes", &p).await?;
            out.extend(x.items(&["volumeSet"]).into_iter().filter_map(|v| {
                if v.text_at(&["status"]) == Some("deleted") {
                    return None;
                }
                Some(VolumeRef {
                    volume_id: Uuid::parse_str(v.tag(TAG_VOLUME)?).ok()?,
                    region: region.clone(),
                    cloud_assigned_id: v.text_at(&["volumeId"]).map(str::to_string),
                })
            }));
        }
        Ok(out)
    }

    async fn list_marked(&self) -> Result<Vec<Uuid>, ProviderError> {
        let mut out = Vec::new();
        for region in self.regions() {
            let mut p = Params::new();
            filter(
                &mut p,
                1,
                &format!("tag:{TAG_DEPLOYMENT}"),
                &[&self.deployment_id],
            );
            filter(
                &mut p,
                2,
                "instance-state-name",
                &["pending", "running", "stopping", "stopped"],
            );
            let x = self.call(region, "DescribeInstances", &p).await?;
            out.extend(
                instances(&x)
                    .iter()
                    .filter(|i| !is_dead(i))
                    .filter_map(|i| i.tag(TAG_INSTANCE))
                    .filter_map(|t| Uuid::parse_str(t).ok()),
            );
        }
        Ok(out)
    }
}

/// An EBS volume's state (CreateVolume's answer or a DescribeVolumes
/// item) in provider-neutral terms.
fn volume_state(v: &Xml) -> VolumeState {
    let id = v.text_at(&["volumeId"]).unwrap_or("").to_string();
    match v.text_at(&["status"]).unwrap_or("") {
        "creating" => VolumeState::Creating {
            cloud_assigned_id: id,
        },
        "available" | "in-use" => VolumeState::Available {
            cloud_assigned_id: id,
            zone: v.text_at(&["availabilityZone"]).map(str::to_string),
        },
        "deleting" => VolumeState::Deleting,
        "deleted" => VolumeState::Gone,
        other => VolumeState::Failed {
            reason: format!("aws: EBS volume {id} is {other:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(state: &str, ip: Option<&str>, extra: &str) -> Xml {
        let ip = ip
            .map(|i| format!("<ipAddress>{i}</ipAddress>"))
            .unwrap_or_default();
        Xml::parse(&format!(
            "<item><instanceId>i-1</instanceId><instanceState><name>{state}</name></instanceState>{ip}{extra}</item>"
        ))
        .unwrap()
    }

    #[test]
    fn ec2_states_map_onto_machine_states() {
        assert_eq!(
            live_state(&inst("pending", None, "")),
            MachineState::Provisioning
        );
        assert_eq!(
            live_state(&inst("running", None, "")),
            MachineState::Booting
        );
        assert!(matches!(
            live_state(&inst("running", Some("3.3.3.3"), "")),
            MachineState::Running { ip, placement: None, .. } if ip == "3.3.3.3"
        ));
        assert!(matches!(
            live_state(&inst(
                "running",
                Some("3.3.3.3"),
                "<placement><availabilityZone>us-east-1b</availabilityZone></placement>"
            )),
            MachineState::Running { placement: Some(p), .. } if p == "availability zone us-east-1b"
        ));
        assert_eq!(
            live_state(&inst(
                "terminated",
                None,
                "<stateReason><code>Server.SpotInstanceTermination</code><message>spot</message></stateReason>"
            )),
            MachineState::Preempted
        );
        assert_eq!(
            live_state(&inst(
                "shutting-down",
                None,
                "<instanceLifecycle>spot</instanceLifecycle>"
            )),
            MachineState::Preempted
        );
        assert!(matches!(
            live_state(&inst(
                "terminated",
                None,
                "<stateReason><code>Server.InternalError</code><message>Server.InternalError: host failed</message></stateReason>"
            )),
            MachineState::Failed { reason } if reason.contains("host failed")
        ));
        assert!(matches!(
            live_state(&inst("stopped", None, "")),
            MachineState::Failed { .. }
        ));
    }
}
