//! Prices from the Cloud Billing Catalog API (`services.skus.list`, v1),
//! read at catalog refresh where the API answers; the shipped table
//! ([`super::catalog::price`]) prices whatever it does not.
//!
//! Compute Engine (service `6F81-5844-456A`) bills a machine in parts: its
//! vCPUs ("`<family> Instance Core`", per hour), its memory ("`<family>
//! Instance Ram`", per GiB-hour) and its GPUs ("`Nvidia <model> GPU`", per
//! hour), each as an on-demand SKU (`usageType: OnDemand`) and a Spot one
//! (`Preemptible`, described "Spot Preemptible ..." or "... attached to
//! Spot Preemptible VMs"), and each names the regions it prices in
//! `serviceRegions`. A machine's price is its vCPUs, memory and GPUs times
//! those; a type any part of which has no SKU keeps the table's price.
//!
//! The SKU names matched are [`HOSTS`] and [`GPUS`]. Those seen in public
//! material (dstack's and others' readers of this API) are A2, G2, `N1
//! Predefined` and `A3Plus` hosts and the Tesla A100, L4, Tesla T4, Tesla
//! V100, Tesla P100 and `H100 80GB Mega` GPUs; the others (A3, A3 Ultra,
//! A4 hosts; A100 80GB, H100 80GB, H200, B200 GPUs) follow the same
//! pattern but are assumed, so a name Google writes otherwise only leaves
//! that type on the table's price.

use std::collections::HashMap;

use serde::Deserialize;

/// The public Cloud Billing API root.
pub const DEFAULT_URL: &str = "https://cloudbilling.googleapis.com/v1";
/// Compute Engine's service in the catalog.
pub const SERVICE: &str = "services/6F81-5844-456A";
/// SKUs asked for per page (Google's default and most).
pub const PAGE_SIZE: u32 = 5000;

/// What a SKU prices.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Part {
    /// A vCPU-hour of a host family.
    Core(&'static str),
    /// A GiB-hour of memory of a host family.
    Ram(&'static str),
    /// An hour of one GPU of a Compute Engine accelerator type.
    Gpu(&'static str),
}

/// `(SKU family, host family)`: the `<family>` of "`<family> Instance
/// Core`" and the machine type families it prices (see [`host_family`]).
pub const HOSTS: &[(&str, &str)] = &[
    ("A2", "a2"),
    ("A3", "a3"),
    ("A3Plus", "a3-mega"),
    ("A3Ultra", "a3-ultra"),
    ("A4", "a4"),
    ("G2", "g2"),
    ("N1 Predefined", "n1"),
];

/// `(SKU model, accelerator type)`: the `<model>` of "`<model> GPU`".
pub const GPUS: &[(&str, &str)] = &[
    ("Nvidia Tesla A100", "nvidia-tesla-a100"),
    ("Nvidia A100 80GB", "nvidia-a100-80gb"),
    ("Nvidia H100 80GB", "nvidia-h100-80gb"),
    ("Nvidia H100 80GB Mega", "nvidia-h100-mega-80gb"),
    ("Nvidia H200 141GB", "nvidia-h200-141gb"),
    ("Nvidia B200", "nvidia-b200"),
    ("Nvidia L4", "nvidia-l4"),
    ("Nvidia Tesla T4", "nvidia-tesla-t4"),
    ("Nvidia Tesla V100", "nvidia-tesla-v100"),
    ("Nvidia Tesla P100", "nvidia-tesla-p100"),
];

/// The host family whose Core and Ram SKUs price `machine_type`.
pub fn host_family(machine_type: &str) -> Option<&'static str> {
    let prefixes: &[(&str, &str)] = &[
        ("a2-", "a2"),
        ("a3-megagpu-", "a3-mega"),
        ("a3-ultragpu-", "a3-ultra"),
        ("a3-", "a3"),
        ("a4-", "a4"),
        ("g2-", "g2"),
        ("n1-standard-", "n1"),
    ];
    prefixes
        .iter()
        .find(|(p, _)| machine_type.starts_with(p))
        .map(|(_, f)| *f)
}

/// What a SKU's description names, and whether it is the Spot form.
pub fn classify(description: &str) -> Option<(Part, bool)> {
    let (d, spot) = match description.strip_prefix("Spot Preemptible ") {
        Some(rest) => (rest, true),
        None => (description, false),
    };
    let (d, attached_to_spot) = match d.split_once(" attached to ") {
        Some((stem, to)) => (stem, to.starts_with("Spot Preemptible")),
        None => (d.split_once(" running in ").map_or(d, |(s, _)| s), false),
    };
    let spot = spot || attached_to_spot;
    if let Some(model) = d.strip_suffix(" GPU") {
        let (_, acc) = GPUS.iter().find(|(m, _)| *m == model)?;
        return Some((Part::Gpu(acc), spot));
    }
    let (family, part): (&str, fn(&'static str) -> Part) =
        if let Some(f) = d.strip_suffix(" Instance Core") {
            (f, Part::Core)
        } else if let Some(f) = d.strip_suffix(" Instance Ram") {
            (f, Part::Ram)
        } else {
            return None;
        };
    let (_, host) = HOSTS.iter().find(|(f, _)| *f == family)?;
    Some((part(host), spot))
}

/// One page of `services.skus.list`.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    #[serde(default)]
    pub skus: Vec<Sku>,
    #[serde(default)]
    pub next_page_token: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: Category,
    #[serde(default)]
    service_regions: Vec<String>,
    #[serde(default)]
    pricing_info: Vec<PricingInfo>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct Category {
    #[serde(default)]
    usage_type: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct PricingInfo {
    pricing_expression: PricingExpression,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct PricingExpression {
    #[serde(default)]
    usage_unit: String,
    #[serde(default)]
    tiered_rates: Vec<TierRate>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct TierRate {
    unit_price: Money,
}

/// Google's `Money`: whole `units` (an int64, as a JSON string) and
/// `nanos`.
#[derive(Deserialize, Debug)]
struct Money {
    #[serde(default)]
    units: Option<String>,
    #[serde(default)]
    nanos: i64,
}

impl Sku {
    /// Dollars per usage unit: the last pricing version's highest tier
    /// (the rate past any free tier), if it is in the unit the part is
    /// billed in.
    fn rate(&self, part: Part) -> Option<f64> {
        let e = &self.pricing_info.last()?.pricing_expression;
        let unit = match part {
            Part::Ram(_) => "GiBy.h",
            Part::Core(_) | Part::Gpu(_) => "h",
        };
        if e.usage_unit != unit {
            return None;
        }
        let m = &e.tiered_rates.last()?.unit_price;
        let units: f64 = m.units.as_deref().unwrap_or("0").parse().ok()?;
        Some(units + m.nanos as f64 / 1e9)
    }
}

/// Unit prices by (region, part, spot).
#[derive(Debug, Default, Clone)]
pub struct Prices {
    rates: HashMap<(String, Part, bool), f64>,
}

impl Prices {
    /// Takes the SKUs of one page that price a part of a served type in
    /// one of `regions`; commitments and other usage types are skipped.
    pub fn add(&mut self, page: &Page, regions: &[String]) {
        for sku in &page.skus {
            let spot = match sku.category.usage_type.as_str() {
                "OnDemand" => false,
                "Preemptible" => true,
                _ => continue,
            };
            let Some((part, named_spot)) = classify(&sku.description) else {
                continue;
            };
            if named_spot != spot {
                continue;
            }
            let Some(rate) = sku.rate(part) else {
                continue;
            };
            for region in sku.service_regions.iter().filter(|r| regions.contains(r)) {
                // Where two SKUs price the same part (a region's own and a
                // multi-region one), the dearer is kept, so an offer never
                // undersells.
                let e = self
                    .rates
                    .entry((region.clone(), part, spot))
                    .or_insert(rate);
                *e = e.max(rate);
            }
        }
    }

    /// How many unit prices were read.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// On-demand and spot dollars per hour of a machine of `machine_type`
    /// (`vcpus`, `memory_mb`) with `gpus` of `accelerator`, in `region`;
    /// `None` unless every part is priced.
    pub fn machine(
        &self,
        region: &str,
        machine_type: &str,
        vcpus: i64,
        memory_mb: i64,
        accelerator: &str,
        gpus: i64,
    ) -> Option<(f64, f64)> {
        let host = host_family(machine_type)?;
        let (_, acc) = GPUS.iter().find(|(_, a)| *a == accelerator)?;
        let gib = memory_mb as f64 / 1024.0;
        let one = |spot: bool| -> Option<f64> {
            let r = |p: Part| self.rates.get(&(region.to_string(), p, spot)).copied();
            Some(
                r(Part::Core(host))? * vcpus as f64
                    + r(Part::Ram(host))? * gib
                    + r(Part::Gpu(acc))? * gpus as f64,
            )
        };
        Some((one(false)?, one(true)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_their_part_and_spot_form() {
        assert_eq!(
            classify("Nvidia L4 GPU running in Americas"),
            Some((Part::Gpu("nvidia-l4"), false))
        );
        assert_eq!(
            classify("Nvidia H100 80GB Mega GPU attached to Spot Preemptible VMs running in Tokyo"),
            Some((Part::Gpu("nvidia-h100-mega-80gb"), true))
        );
        assert_eq!(
            classify("Spot Preemptible Nvidia Tesla T4 GPU running in Americas"),
            Some((Part::Gpu("nvidia-tesla-t4"), true))
        );
        assert_eq!(
            classify("Spot Preemptible A3Plus Instance Ram running in Tokyo"),
            Some((Part::Ram("a3-mega"), true))
        );
        assert_eq!(
            classify("N1 Predefined Instance Core running in Americas"),
            Some((Part::Core("n1"), false))
        );
        // Custom shapes, other families and commitments' names are not
        // a served part.
        assert_eq!(
            classify("N1 Custom Instance Core running in Americas"),
            None
        );
        assert_eq!(classify("E2 Instance Core running in Americas"), None);
        assert_eq!(classify("Nvidia Tesla K80 GPU running in Americas"), None);
        assert_eq!(host_family("a3-megagpu-8g"), Some("a3-mega"));
        assert_eq!(host_family("a3-highgpu-8g"), Some("a3"));
        assert_eq!(host_family("n1-standard-16"), Some("n1"));
    }

    #[test]
    fn a_machine_is_priced_only_when_every_part_is() {
        let sku = |d: &str, usage: &str, unit: &str, units: &str, nanos: i64| {
            serde_json::json!({
                "description": d, "category": {"usageType": usage},
                "serviceRegions": ["us-central1"],
                "pricingInfo": [{"pricingExpression": {"usageUnit": unit, "tieredRates": [
                    {"startUsageAmount": 0, "unitPrice": {"currencyCode": "USD", "units": units, "nanos": nanos}}]}}]
            })
        };
        let page: Page = serde_json::from_value(serde_json::json!({"skus": [
            sku("G2 Instance Core running in Americas", "OnDemand", "h", "0", 25_000_000),
            sku("G2 Instance Ram running in Americas", "OnDemand", "GiBy.h", "0", 3_000_000),
            sku("Nvidia L4 GPU running in Americas", "OnDemand", "h", "1", 0),
            sku("Spot Preemptible G2 Instance Core running in Americas", "Preemptible", "h", "0", 10_000_000),
            sku("Spot Preemptible G2 Instance Ram running in Americas", "Preemptible", "GiBy.h", "0", 1_000_000),
            sku("Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas", "Preemptible", "h", "0", 400_000_000),
            sku("Commitment v1: G2 Cpu in Americas for 1 Year", "Commit1Yr", "h", "0", 1),
        ]}))
        .unwrap();
        let mut p = Prices::default();
        p.add(&page, &["us-central1".to_string()]);
        assert_eq!(p.len(), 6);
        let (od, spot) = p
            .machine("us-central1", "g2-standard-4", 4, 16384, "nvidia-l4", 1)
            .unwrap();
        assert!(
            (od - (4.0 * 0.025 + 16.0 * 0.003 + 1.0)).abs() < 1e-9,
            "{od}"
        );
        assert!(
            (spot - (4.0 * 0.01 + 16.0 * 0.001 + 0.4)).abs() < 1e-9,
            "{spot}"
        );
        assert_eq!(
            p.machine("us-east1", "g2-standard-4", 4, 16384, "nvidia-l4", 1),
            None
        );
        assert_eq!(
            p.machine(
                "us-central1",
                "a2-highgpu-1g",
                12,
                87040,
                "nvidia-tesla-a100",
                1
            ),
            None
        );
    }
}
