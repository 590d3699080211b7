//! Placement: launch by requirements.
//!
//! A launch names what it needs ([`Requirements`]); [`search`] ranks every
//! matching offer of every cloud, cheapest first, and the launch takes the
//! first one with capacity. The instance keeps its requirements
//! ([`Placement`], in the stored record), so when a provider refuses the
//! launch for capacity the reconciler moves the same instance to the next
//! candidate (see `reconciler::fail_over`), and the refused offer cools down
//! for every launch of this process for a while.
//!
//! Everything here is pure: the catalog's rendered types in, an ordered
//! list out, so the ranking is tested without a server.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use parasol_api::{
    Candidate, InstanceConfiguration, InstanceType, OnPreemption, RentalChoice, RentalTerms,
    RentalType, Requirements, Status,
};
use serde::{Deserialize, Serialize};

use crate::providers::Offer;
use crate::store::{InstanceRecord, Internal, OfferKey};

/// What an instance launched by requirements carries through its life.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Placement {
    pub requirements: Requirements,
    /// The OS the launch asked for; a candidate must offer it.
    #[serde(default)]
    pub os: Option<String>,
    /// `wait_for_capacity_seconds` as asked, for a relaunch's own deadline.
    #[serde(default)]
    pub wait_seconds: Option<i64>,
    /// Until when (ms since the epoch) to keep trying once no candidate has
    /// capacity; `None`: give up at once.
    #[serde(default)]
    pub wait_until_ms: Option<i64>,
    /// Set while the instance waits for capacity.
    #[serde(default)]
    pub waiting: bool,
    /// Consecutive waits, for the backoff between them.
    #[serde(default)]
    pub waits: u32,
    /// Every offer tried and why it was left, oldest first.
    #[serde(default)]
    pub tried: Vec<Attempt>,
    #[serde(default)]
    pub on_preemption: Option<OnPreemption>,
    /// The instance this one replaces after a preemption.
    #[serde(default)]
    pub relaunch_of: Option<uuid::Uuid>,
    /// A replacement was made for this one (so a repeated step makes none).
    #[serde(default)]
    pub relaunched: bool,
}

/// One offer a placement tried.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    pub cloud: String,
    pub region: String,
    pub shade_instance_type: String,
    pub rental_type: RentalType,
    pub reason: String,
}

impl Attempt {
    /// Whether this attempt was of `c`.
    pub fn is_of(&self, c: &Candidate) -> bool {
        self.cloud == c.cloud
            && self.region == c.region
            && self.shade_instance_type == c.shade_instance_type
            && self.rental_type == c.rental_type
    }
}

/// Checks requirements for what no search can fix: the field at fault and
/// why.
pub fn check(r: &Requirements) -> Result<(), (&'static str, String)> {
    let constrained = r.gpu_type.is_some()
        || r.num_gpus.is_some()
        || r.min_gpu_memory_gb.is_some()
        || r.min_vcpus.is_some()
        || r.min_memory_gb.is_some();
    if !constrained {
        return Err((
            "requirements",
            "requirements need at least one GPU or CPU constraint: gpu_type, num_gpus, \
             min_gpu_memory_gb, min_vcpus or min_memory_gb"
                .into(),
        ));
    }
    if let Some(t) = &r.gpu_type {
        if t.as_slice().is_empty() || t.as_slice().iter().any(|s| s.trim().is_empty()) {
            return Err((
                "requirements.gpu_type",
                "gpu_type must be a GPU type name or a non-empty list of them".into(),
            ));
        }
    }
    let counts = [
        ("requirements.num_gpus", r.num_gpus, 1),
        ("requirements.min_gpu_memory_gb", r.min_gpu_memory_gb, 0),
        ("requirements.min_vcpus", r.min_vcpus, 0),
        ("requirements.min_memory_gb", r.min_memory_gb, 0),
        ("requirements.max_hourly_price", r.max_hourly_price, 1),
    ];
    for (field, value, least) in counts {
        if let Some(v) = value {
            if v < least {
                return Err((field, format!("{field} must be at least {least}, got {v}")));
            }
        }
    }
    Ok(())
}

/// The outcome of a search.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Every offer that meets the requirements, in the order a launch tries
    /// them: available ones first, each group cheapest first.
    pub candidates: Vec<Candidate>,
    /// Why the other offers were left out: reason -> how many.
    pub excluded: BTreeMap<&'static str, usize>,
}

impl Search {
    /// The candidates a launch may try now.
    pub fn available(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates.iter().filter(|c| c.available)
    }

    /// Why nothing can be launched, for a 409 or an `error`.
    pub fn why_none(&self) -> String {
        let excluded = self
            .excluded
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect::<Vec<_>>()
            .join(", ");
        if self.candidates.is_empty() {
            if excluded.is_empty() {
                "no offer matches: the catalog is empty".into()
            } else {
                format!("no offer matches: {excluded}")
            }
        } else {
            format!(
                "{} matching offers, none with capacity now (see dry_run for them)",
                self.candidates.len()
            )
        }
    }
}

/// Ranks the offers of `types` against `r`. `cooling` says whether an
/// offer (cloud, region, type) is cooling down after a capacity error; such
/// offers are listed but not available.
pub fn search(
    types: &[InstanceType],
    r: &Requirements,
    os: Option<&str>,
    cooling: impl Fn(&str, &str, &str) -> bool,
) -> Search {
    let mut out = Search::default();
    let mut exclude = |why: &'static str| *out.excluded.entry(why).or_default() += 1;
    let rental = r.rental_type.unwrap_or_default();
    let mut ranked: Vec<(Candidate, i64)> = Vec::new();
    for t in types {
        let c = &t.configuration;
        if let Some(wanted) = &r.gpu_type {
            if !wanted
                .as_slice()
                .iter()
                .any(|w| w.trim().eq_ignore_ascii_case(&c.gpu_type))
            {
                exclude("types with another GPU");
                continue;
            }
        }
        if r.num_gpus.is_some_and(|n| n != c.num_gpus) {
            exclude("types with another GPU count");
            continue;
        }
        if r.min_gpu_memory_gb
            .is_some_and(|m| c.vram_per_gpu_in_gb < m)
        {
            exclude("types below min_gpu_memory_gb");
            continue;
        }
        if r.min_vcpus.is_some_and(|m| c.vcpus < m) {
            exclude("types below min_vcpus");
            continue;
        }
        if r.min_memory_gb.is_some_and(|m| c.memory_in_gb < m) {
            exclude("types below min_memory_gb");
            continue;
        }
        if os.is_some_and(|os| !c.os_options.iter().any(|o| o == os)) {
            exclude("types without the requested os");
            continue;
        }
        if r.clouds.as_ref().is_some_and(|cs| !cs.contains(&t.cloud))
            || r.exclude_clouds
                .as_ref()
                .is_some_and(|cs| cs.contains(&t.cloud))
        {
            exclude("types in excluded clouds");
            continue;
        }
        let boot = t.boot_time.map_or(i64::MAX, |b| b.max_boot_in_sec);
        for a in &t.availability {
            let wanted = matches!(
                (rental, a.rental_type),
                (RentalChoice::Any, RentalType::OnDemand | RentalType::Spot)
                    | (RentalChoice::OnDemand, RentalType::OnDemand)
                    | (RentalChoice::Spot, RentalType::Spot)
            );
            if !wanted {
                continue;
            }
            if r.regions.as_ref().is_some_and(|rs| !rs.contains(&a.region))
                || r.exclude_regions
                    .as_ref()
                    .is_some_and(|rs| rs.contains(&a.region))
            {
                exclude("regions excluded");
                continue;
            }
            let price = match a.rental_type {
                RentalType::Spot => match a
                    .hourly_price
                    .as_deref()
                    .and_then(|p| crate::validate::dollars_to_cents("hourly_price", p).ok())
                {
                    Some(p) => p,
                    None => continue,
                },
                RentalType::OnDemand | RentalType::Commitment => t.hourly_price,
            };
            if r.max_hourly_price.is_some_and(|m| price > m) {
                exclude("offers above max_hourly_price");
                continue;
            }
            let available = a.available && !cooling(&t.cloud, &a.region, &t.shade_instance_type);
            ranked.push((
                Candidate {
                    cloud: t.cloud.clone(),
                    region: a.region.clone(),
                    shade_instance_type: t.shade_instance_type.clone(),
                    rental_type: a.rental_type,
                    hourly_price: price,
                    available,
                },
                boot,
            ));
        }
    }
    if rental == RentalChoice::Spot && ranked.is_empty() && out.excluded.is_empty() {
        out.excluded
            .insert("types not offered as spot", types.len());
    }
    // Available first; then cheapest; spot before on-demand at one price;
    // then the shorter boot; then by name, so the order is stable.
    ranked.sort_by(|(a, boot_a), (b, boot_b)| {
        (
            !a.available,
            a.hourly_price,
            a.rental_type != RentalType::Spot,
            boot_a,
        )
            .cmp(&(
                !b.available,
                b.hourly_price,
                b.rental_type != RentalType::Spot,
                boot_b,
            ))
            .then_with(|| {
                (&a.cloud, &a.region, &a.shade_instance_type).cmp(&(
                    &b.cloud,
                    &b.region,
                    &b.shade_instance_type,
                ))
            })
    });
    out.candidates = ranked.into_iter().map(|(c, _)| c).collect();
    out
}

/// Puts `instance` on `candidate`'s offer: the offer's type, configuration,
/// login and price, keeping the OS the instance has (the search only
/// chose offers that have it).
pub fn place_on(instance: &mut parasol_api::Instance, offer: &Offer, candidate: &Candidate) {
    instance.cloud = offer.cloud.clone();
    instance.region = candidate.region.clone();
    instance.shade_instance_type = offer.shade_instance_type.clone();
    instance.cloud_instance_type = offer.cloud_instance_type.clone();
    instance.configuration =
        InstanceConfiguration::of_type(&offer.configuration, instance.configuration.os.clone());
    instance.ssh_user = offer.ssh_user.clone();
    instance.ssh_port = offer.ssh_port;
    instance.boot_time = offer.boot_time;
    instance.hourly_price = candidate.hourly_price;
    instance.rental_terms = RentalTerms {
        rental_type: candidate.rental_type,
        hourly_price: Some(parasol_api::dollars(candidate.hourly_price)),
        ending_at: None,
    };
}

/// Tag carried by an instance relaunched after a preemption: the id of the
/// instance it replaces follows it.
pub const RELAUNCH_TAG: &str = "parasol:relaunch-of=";

/// Tag carried by an instance started because the one it names failed its
/// health checks (`on_unhealthy: replace`).
pub const REPLACES_TAG: &str = "parasol:replaces=";

/// Why an instance is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacing {
    /// Its spot machine was reclaimed (`on_preemption: relaunch`).
    Preempted,
    /// It failed its health checks (`on_unhealthy: replace`).
    Unhealthy,
}

impl Replacing {
    fn seed(self) -> &'static str {
        match self {
            Replacing::Preempted => "relaunch",
            Replacing::Unhealthy => "replace",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Replacing::Preempted => RELAUNCH_TAG,
            Replacing::Unhealthy => REPLACES_TAG,
        }
    }

    fn details(self, old: uuid::Uuid) -> String {
        match self {
            Replacing::Preempted => format!("replacing preempted instance {old}"),
            Replacing::Unhealthy => format!("replacing failed instance {old}"),
        }
    }
}

/// The instance that replaces `old`, preempted: see [`replacement_for`].
pub fn replacement(old: &InstanceRecord, now: DateTime<Utc>) -> InstanceRecord {
    replacement_for(old, now, Replacing::Preempted)
}

/// The instance that replaces `old`: the same account, name, requirements
/// and settings, on the same offer for now; one launched by requirements
/// waits, so its first step searches for the best candidate again. Its id
/// is derived from the old one and the reason, so a repeated step finds
/// the replacement it made instead of making a second.
pub fn replacement_for(old: &InstanceRecord, now: DateTime<Utc>, why: Replacing) -> InstanceRecord {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}:{}", why.seed(), old.instance.id).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut instance = old.instance.clone();
    instance.id = id;
    instance.status = Status::Creating;
    instance.status_details = Some(why.details(old.instance.id));
    instance.cloud_assigned_id = String::new();
    instance.ip = None;
    instance.active_at = None;
    instance.deleted_at = None;
    instance.created_at = now;
    instance.cost_estimate = parasol_api::dollars(0);
    instance.port_mappings = Vec::new();
    instance.tags.retain(|t| !t.starts_with(why.tag()));
    instance
        .tags
        .push(format!("{}{}", why.tag(), old.instance.id));
    let placement = old.internal.placement.clone().map(|p| Placement {
        wait_until_ms: p
            .wait_seconds
            .filter(|s| *s > 0)
            .map(|s| now.timestamp_millis() + s * 1000),
        waiting: true,
        waits: 0,
        tried: Vec::new(),
        relaunch_of: Some(old.instance.id),
        relaunched: false,
        ..p
    });
    InstanceRecord {
        account_id: old.account_id,
        cluster_id: None,
        generation: 1,
        wake_at: Some(now.timestamp_millis()),
        stored_status: Status::Creating,
        stored_offer: OfferKey::of(&instance),
        stored_charge: crate::store::Charge::of(&instance),
        instance,
        internal: Internal {
            ssh_public_key: old.internal.ssh_public_key.clone(),
            placement,
            ..Internal::default()
        },
    }
}

/// `lambdalabs us-east-1 A100`, for messages.
pub fn describe(cloud: &str, region: &str, shade_instance_type: &str) -> String {
    format!("{cloud} {region} {shade_instance_type}")
}

#[cfg(test)]
mod tests {
    use parasol_api::{Availability, BootTime, GpuTypes, InstanceTypeConfiguration};

    use super::*;

    fn ty(
        cloud: &str,
        shade: &str,
        gpu: &str,
        n: i64,
        price: i64,
        regions: &[(&str, bool, Option<&str>)],
    ) -> InstanceType {
        let mut availability = Vec::new();
        for (r, ok, spot) in regions {
            availability.push(Availability {
                region: r.to_string(),
                available: *ok,
                display_name: r.to_string(),
                rental_type: RentalType::OnDemand,
                hourly_price: None,
            });
            if let Some(s) = spot {
                availability.push(Availability {
                    region: r.to_string(),
                    available: *ok,
                    display_name: r.to_string(),
                    rental_type: RentalType::Spot,
                    hourly_price: Some(s.to_string()),
                });
            }
        }
        InstanceType {
            cloud: cloud.into(),
            shade_instance_type: shade.into(),
            cloud_instance_type: shade.to_lowercase(),
            configuration: InstanceTypeConfiguration {
                memory_in_gb: 64 * n,
                storage_in_gb: 500,
                vcpus: 8 * n,
                num_gpus: n,
                gpu_type: gpu.into(),
                interconnect: "pcie".into(),
                nvlink: false,
                vram_per_gpu_in_gb: 80,
                os_options: vec!["ubuntu22.04".into()],
                gpu_manufacturer: "nvidia".into(),
            },
            hourly_price: price,
            deployment_type: "vm".into(),
            availability,
            boot_time: Some(BootTime {
                min_boot_in_sec: 60,
                max_boot_in_sec: 120,
            }),
        }
    }

    fn catalog() -> Vec<InstanceType> {
        vec![
            ty(
                "alpha",
                "H100",
                "H100",
                1,
                250,
                &[("a-1", true, Some("1.20")), ("a-2", false, None)],
            ),
            ty("beta", "H100", "H100", 1, 199, &[("b-1", true, None)]),
            ty("gamma", "H100x8", "H100", 8, 2000, &[("g-1", true, None)]),
            ty("gamma", "A100", "A100", 1, 120, &[("g-1", true, None)]),
        ]
    }

    fn h100() -> Requirements {
        Requirements {
            gpu_type: Some(GpuTypes::One("h100".into())),
            num_gpus: Some(1),
            ..Requirements::default()
        }
    }

    fn names(s: &Search) -> Vec<String> {
        s.candidates
            .iter()
            .map(|c| format!("{} {} {}", c.cloud, c.region, c.available))
            .collect()
    }

    #[test]
    fn the_cheapest_available_offer_comes_first_and_unavailable_ones_last() {
        let s = search(&catalog(), &h100(), None, |_, _, _| false);
        assert_eq!(
            names(&s),
            ["beta b-1 true", "alpha a-1 true", "alpha a-2 false"]
        );
        assert_eq!(s.excluded["types with another GPU"], 1);
        assert_eq!(s.excluded["types with another GPU count"], 1);
    }

    #[test]
    fn any_rental_puts_spot_at_its_spot_price_and_spot_alone_excludes_on_demand() {
        let mut r = h100();
        r.rental_type = Some(RentalChoice::Any);
        let s = search(&catalog(), &r, None, |_, _, _| false);
        let first = &s.candidates[0];
        assert_eq!(
            (first.cloud.as_str(), first.rental_type, first.hourly_price),
            ("alpha", RentalType::Spot, 120)
        );
        r.rental_type = Some(RentalChoice::Spot);
        let s = search(&catalog(), &r, None, |_, _, _| false);
        assert_eq!(names(&s), ["alpha a-1 true"]);
    }

    #[test]
    fn exclusions_and_max_price_are_counted_for_the_message() {
        let mut r = h100();
        r.max_hourly_price = Some(200);
        r.exclude_regions = Some(vec!["b-1".into()]);
        let s = search(&catalog(), &r, None, |_, _, _| false);
        assert!(s.candidates.is_empty());
        let why = s.why_none();
        assert!(why.contains("2 offers above max_hourly_price"), "{why}");
        assert!(why.contains("1 regions excluded"), "{why}");
    }

    #[test]
    fn a_cooling_offer_is_listed_but_not_available() {
        let s = search(&catalog(), &h100(), None, |c, r, _| {
            c == "beta" && r == "b-1"
        });
        assert_eq!(
            names(&s),
            ["alpha a-1 true", "beta b-1 false", "alpha a-2 false"]
        );
    }

    #[test]
    fn requirements_need_a_constraint_and_sane_numbers() {
        assert_eq!(
            check(&Requirements::default()).unwrap_err().0,
            "requirements"
        );
        let mut r = h100();
        r.num_gpus = Some(0);
        assert_eq!(check(&r).unwrap_err().0, "requirements.num_gpus");
        assert!(check(&h100()).is_ok());
    }
}
