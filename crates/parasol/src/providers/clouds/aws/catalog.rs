//! What AWS sells, in Shadeform's terms: the GPU families served, the
//! mapping of EC2's `GpuInfo` onto Shadeform type names, and the shipped
//! on-demand price table.

use super::super::GpuModel;

/// Instance families served, as prefixes of the type name. EC2 lists the
/// rest of its types too; only these, and only with `GpuInfo`, are offered.
pub const FAMILIES: &[&str] = &[
    "g4dn.", "g5.", "g6.", "g6e.", "gr6.", "p4d.", "p4de.", "p5.", "p5e.", "p5en.", "p6-",
];

/// Whether `instance_type` belongs to a served family.
pub fn served_family(instance_type: &str) -> bool {
    FAMILIES.iter().any(|f| instance_type.starts_with(f))
}

/// GB of a GPU memory EC2 states in MiB. EC2 counts some GPUs' memory in
/// binary units (H100: 81920 MiB, 80 GiB) and others in decimal ones
/// (A10G: 22888 MiB, 24.0 GB; L40S: 45776 MiB, 48.0 GB), so the number is
/// read in whichever unit it is whole in (nearest a whole number; GiB on a
/// tie).
pub fn gpu_gb(mib: i64) -> i64 {
    let gib = mib as f64 / 1024.0;
    let gb = mib as f64 * 1.048576 / 1000.0;
    let off = |x: f64| (x - x.round()).abs();
    if off(gb) < off(gib) {
        gb.round() as i64
    } else {
        gib.round() as i64
    }
}

/// The Shadeform model of a GPU as EC2's `GpuInfo` names it, with EC2's
/// memory per GPU (which also tells the 40 and 80 GB A100s apart; see
/// [`gpu_gb`]). p-family GPUs are SXM parts joined by NVLink; g-family
/// ones are PCIe.
pub fn gpu(name: &str, memory_mib: i64, instance_type: &str) -> Option<GpuModel> {
    let sxm = instance_type.starts_with('p');
    let m = |gpu_type, shade, vram, interconnect| {
        Some(GpuModel {
            gpu_type,
            shade,
            vram,
            interconnect,
            manufacturer: super::super::gpus::NVIDIA,
        })
    };
    let vram = gpu_gb(memory_mib);
    let model = match name.to_ascii_uppercase().as_str() {
        "T4" => m("T4", "T4", 16, "pcie"),
        "A10G" => m("A10G", "A10G", 24, "pcie"),
        "L4" => m("L4", "L4", 24, "pcie"),
        "L40S" => m("L40S", "L40S", 48, "pcie"),
        "A100" if memory_mib > 50 * 1024 => m("A100_80G", "A100_80G", 80, "sxm4"),
        "A100" => m("A100", "A100", 40, "sxm4"),
        "H100" => m("H100", "H100", 80, if sxm { "sxm5" } else { "pcie" }),
        "H200" => m("H200", "H200", 141, "sxm5"),
        "B200" => m("B200", "B200", 180, "sxm6"),
        _ => None,
    };
    model.map(|g| g.with_vram(vram))
}

/// Regions whose prices the table lists, with their display names.
pub fn region_display(region: &str) -> String {
    match region {
        "us-east-1" => "US East (N. Virginia)".into(),
        "us-east-2" => "US East (Ohio)".into(),
        "us-west-2" => "US West (Oregon)".into(),
        "eu-west-1" => "Europe (Ireland)".into(),
        "ap-northeast-1" => "Asia Pacific (Tokyo)".into(),
        other => other.to_string(),
    }
}

/// On-demand Linux prices, dollars per hour, by instance type, for the US
/// regions us-east-1, us-east-2 and us-west-2 (AWS prices these GPU types
/// the same in all three).
///
/// Source: the Amazon EC2 On-Demand Pricing page
/// (https://aws.amazon.com/ec2/pricing/on-demand/), Linux, shared tenancy,
/// as of 2025-06 (after AWS's June 2025 cut of P4d/P4de/P5/P5en prices).
/// p5e is sold through Capacity Blocks only and has no on-demand price.
/// Regions outside [`US_REGIONS`] have no entry yet: types there are not
/// offered until a price is added (the Price List API refresh is not built).
pub const US_PRICES: &[(&str, f64)] = &[
    ("g4dn.xlarge", 0.526),
    ("g4dn.2xlarge", 0.752),
    ("g4dn.4xlarge", 1.204),
    ("g4dn.8xlarge", 2.176),
    ("g4dn.12xlarge", 3.912),
    ("g4dn.16xlarge", 4.352),
    ("g4dn.metal", 7.824),
    ("g5.xlarge", 1.006),
    ("g5.2xlarge", 1.212),
    ("g5.4xlarge", 1.624),
    ("g5.8xlarge", 2.448),
    ("g5.12xlarge", 5.672),
    ("g5.16xlarge", 4.096),
    ("g5.24xlarge", 8.144),
    ("g5.48xlarge", 16.288),
    ("g6.xlarge", 0.8048),
    ("g6.2xlarge", 0.9776),
    ("g6.4xlarge", 1.3232),
    ("g6.8xlarge", 2.0144),
    ("g6.12xlarge", 4.6016),
    ("g6.16xlarge", 3.3968),
    ("g6.24xlarge", 6.6752),
    ("g6.48xlarge", 13.3504),
    ("g6e.xlarge", 1.861),
    ("g6e.2xlarge", 2.24208),
    ("g6e.4xlarge", 3.00424),
    ("g6e.8xlarge", 4.52856),
    ("g6e.12xlarge", 10.49264),
    ("g6e.16xlarge", 7.57719),
    ("g6e.24xlarge", 15.06559),
    ("g6e.48xlarge", 30.13118),
    ("gr6.4xlarge", 1.5392),
    ("gr6.8xlarge", 2.4464),
    ("p4d.24xlarge", 21.96),
    ("p4de.24xlarge", 27.447),
    ("p5.48xlarge", 55.04),
    ("p5en.48xlarge", 63.296),
    ("p6-b200.48xlarge", 113.9328),
];

/// The regions [`US_PRICES`] holds for.
pub const US_REGIONS: &[&str] = &["us-east-1", "us-east-2", "us-west-2"];

/// The shipped on-demand price of `instance_type` in `region`, in cents
/// per hour.
pub fn price_cents(instance_type: &str, region: &str) -> Option<i64> {
    if !US_REGIONS.contains(&region) {
        return None;
    }
    US_PRICES
        .iter()
        .find(|(t, _)| *t == instance_type)
        .map(|(_, d)| super::super::cents(*d))
}

/// gp3's price, millionths of a dollar per GB-hour: $0.08 per GB-month
/// (us-east-1, same source and date as [`US_PRICES`]) over AWS's 730-hour
/// month.
pub const GP3_MICROS_PER_GB_HOUR: i64 = 110;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::clouds::shade_type;

    #[test]
    fn ec2_gpu_names_map_to_shadeform_types() {
        let g = gpu("H100", 81920, "p5.48xlarge").unwrap();
        assert_eq!(shade_type(&g, 8), "H100x8");
        assert_eq!(g.interconnect, "sxm5");
        assert_eq!(
            shade_type(&gpu("A10G", 22888, "g5.12xlarge").unwrap(), 4),
            "A10Gx4"
        );
        assert_eq!(shade_type(&gpu("L4", 22888, "g6.xlarge").unwrap(), 1), "L4");
        assert_eq!(
            shade_type(&gpu("L40S", 45776, "g6e.48xlarge").unwrap(), 8),
            "L40Sx8"
        );
        assert_eq!(
            gpu("A100", 81920, "p4de.24xlarge").unwrap().shade,
            "A100_80G"
        );
        assert_eq!(gpu("A100", 40960, "p4d.24xlarge").unwrap().shade, "A100");
        assert_eq!(gpu("Radeon Pro V520", 8192, "g4ad.xlarge"), None);
        // EC2's own memory per GPU, in the unit it is whole in.
        assert_eq!(gpu("L40S", 45776, "g6e.xlarge").unwrap().vram, 48);
        assert_eq!(gpu("A10G", 22888, "g5.xlarge").unwrap().vram, 24);
        assert_eq!(gpu("H200", 144384, "p5en.48xlarge").unwrap().vram, 141);
        assert_eq!(gpu("T4", 16384, "g4dn.xlarge").unwrap().vram, 16);
        assert_eq!(gpu("A100", 40960, "p4d.24xlarge").unwrap().vram, 40);
        assert!(served_family("p6-b200.48xlarge") && served_family("g6e.xlarge"));
        assert!(!served_family("g4ad.xlarge") && !served_family("p3.2xlarge"));
    }

    #[test]
    fn the_table_prices_every_us_region_and_no_other() {
        assert_eq!(price_cents("p5.48xlarge", "us-east-1"), Some(5504));
        assert_eq!(price_cents("p5.48xlarge", "us-west-2"), Some(5504));
        assert_eq!(price_cents("p5.48xlarge", "eu-west-1"), None);
        assert_eq!(price_cents("m5.large", "us-east-1"), None);
        assert!(US_PRICES.iter().all(|(t, _)| served_family(t)));
    }
}
