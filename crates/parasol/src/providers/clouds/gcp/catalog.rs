//! What Google Cloud sells, in Shadeform's terms: the machine families
//! served, the N1 shapes GPUs are attached to, the mapping of Compute
//! Engine's accelerator types onto Shadeform models, and the shipped price
//! table.

use super::super::gpus::NVIDIA;
use super::super::GpuModel;

/// Accelerator-optimized machine types served, as prefixes of the name:
/// A2 (A100 40 and 80 GB), A3 (H100), A3 Ultra (H200), A4 (B200) and G2
/// (L4). Their GPUs come with the machine type (its `accelerators`).
pub const FAMILIES: &[&str] = &[
    "a2-highgpu-",
    "a2-megagpu-",
    "a2-ultragpu-",
    "a3-highgpu-",
    "a3-megagpu-",
    "a3-edgegpu-",
    "a3-ultragpu-",
    "a4-highgpu-",
    "g2-standard-",
];

/// Whether `machine_type` belongs to a served family.
pub fn served_family(machine_type: &str) -> bool {
    FAMILIES.iter().any(|f| machine_type.starts_with(f))
}

/// GPUs attached to an N1 machine (`guestAccelerators`), and the counts
/// Google allows of each.
pub const ATTACHED: &[(&str, &[i64])] = &[
    ("nvidia-tesla-t4", &[1, 2, 4]),
    ("nvidia-tesla-v100", &[1, 2, 4, 8]),
    ("nvidia-tesla-p100", &[1, 2, 4]),
];

/// The N1 shape an offer of `gpus` attached GPUs runs on: 8 vCPUs per GPU
/// (`n1-standard-8` for one, `n1-standard-64` for eight). That fits the
/// most vCPUs Google allows beside each count of the three GPUs (V100, the
/// tightest: 12 for one, 24 for two, 48 for four, 96 for eight; P100: 16,
/// 32, 64; T4: 48, 48, 96), gives each GPU 8 cores for its data loading,
/// and keeps the catalog to one offer per GPU count.
pub fn n1_shape(gpus: i64) -> String {
    format!("n1-standard-{}", 8 * gpus)
}

/// The `cloud_instance_type` of an N1 offer: the shape, `+`, the count and
/// the accelerator (`n1-standard-16+2xnvidia-tesla-t4`).
pub fn n1_type(accelerator: &str, gpus: i64) -> String {
    format!("{}+{gpus}x{accelerator}", n1_shape(gpus))
}

/// An N1 offer's type read back: `(machine type, accelerator, count)`.
pub fn split_n1(cloud_type: &str) -> Option<(&str, &str, i64)> {
    let (shape, rest) = cloud_type.split_once('+')?;
    let (n, acc) = rest.split_once('x')?;
    Some((shape, acc, n.parse().ok()?))
}

/// The Shadeform model of a Compute Engine accelerator type. Google's
/// names state the memory where two sizes exist; the others' memory is
/// the one size Google sells (T4 16 GB, V100 16 GB, P100 16 GB, L4 24 GB).
/// A2, A3 and A4 GPUs are SXM parts on NVLink; L4, T4 and P100 are PCIe;
/// GCE's V100s are SXM2 with NVLink.
pub fn gpu(accelerator: &str) -> Option<GpuModel> {
    let m = |gpu_type, shade, vram, interconnect| {
        Some(GpuModel {
            gpu_type,
            shade,
            vram,
            interconnect,
            manufacturer: NVIDIA,
        })
    };
    match accelerator {
        "nvidia-tesla-a100" => m("A100", "A100", 40, "sxm4"),
        "nvidia-a100-80gb" => m("A100_80G", "A100_80G", 80, "sxm4"),
        "nvidia-h100-80gb" | "nvidia-h100-mega-80gb" => m("H100", "H100_sxm5", 80, "sxm5"),
        "nvidia-h200-141gb" => m("H200", "H200", 141, "sxm5"),
        "nvidia-b200" => m("B200", "B200", 180, "sxm6"),
        "nvidia-l4" => m("L4", "L4", 24, "pcie"),
        "nvidia-tesla-t4" => m("T4", "T4", 16, "pcie"),
        "nvidia-tesla-v100" => m("V100", "V100", 16, "sxm2"),
        "nvidia-tesla-p100" => m("P100", "P100", 16, "pcie"),
        _ => None,
    }
}

/// Regions the price table holds prices for, and so the default regions.
pub const PRICED_REGIONS: &[&str] = &["us-central1", "us-east1", "us-west1"];

/// Region display names.
pub fn region_display(region: &str) -> String {
    match region {
        "us-central1" => "Iowa (us-central1)".into(),
        "us-east1" => "South Carolina (us-east1)".into(),
        "us-east4" => "Northern Virginia (us-east4)".into(),
        "us-west1" => "Oregon (us-west1)".into(),
        "europe-west4" => "Netherlands (europe-west4)".into(),
        "asia-southeast1" => "Singapore (asia-southeast1)".into(),
        other => other.to_string(),
    }
}

/// Price table date and source, for the README and the log.
///
/// Source: Google's public Compute Engine pricing pages (GPU pricing,
/// accelerator-optimized and N1 machine type pricing), us-central1 list
/// prices in USD per hour, on-demand and Spot, as of 2025-06. Google
/// prices us-central1, us-east1 and us-west1 alike for these types, so
/// the table serves those three ([`PRICED_REGIONS`]); a region outside
/// them has no prices and offers nothing until one is added. Spot prices
/// move (Google may change them once a month); these are the ones of that
/// date. Refreshing from the Cloud Billing Catalog API is not built.
pub const PRICES_AS_OF: &str = "2025-06";

/// `(machine type, on-demand $/h, spot $/h)` of the accelerator-optimized
/// types, GPUs included.
pub const MACHINE_PRICES: &[(&str, f64, f64)] = &[
    ("a2-highgpu-1g", 3.673477, 1.102043),
    ("a2-highgpu-2g", 7.346954, 2.204086),
    ("a2-highgpu-4g", 14.693908, 4.408172),
    ("a2-highgpu-8g", 29.387816, 8.816344),
    ("a2-megagpu-16g", 55.739504, 16.721851),
    ("a2-ultragpu-1g", 5.0688, 1.6),
    ("a2-ultragpu-2g", 10.1376, 3.2),
    ("a2-ultragpu-4g", 20.2752, 6.4),
    ("a2-ultragpu-8g", 40.5504, 12.8),
    ("a3-highgpu-1g", 11.0612, 3.6296),
    ("a3-highgpu-2g", 22.1225, 7.2592),
    ("a3-highgpu-4g", 44.2450, 14.5184),
    ("a3-highgpu-8g", 88.4900, 29.0368),
    ("a3-megagpu-8g", 92.0000, 30.3600),
    ("a3-edgegpu-8g", 88.4900, 29.0368),
    ("a3-ultragpu-8g", 84.8069, 33.9228),
    ("a4-highgpu-8g", 94.9800, 37.9920),
    ("g2-standard-4", 0.70683, 0.28273),
    ("g2-standard-8", 0.85362, 0.34145),
    ("g2-standard-12", 1.00041, 0.40016),
    ("g2-standard-16", 1.14721, 0.45888),
    ("g2-standard-24", 2.00081, 0.80032),
    ("g2-standard-32", 1.73438, 0.69375),
    ("g2-standard-48", 4.00163, 1.60065),
    ("g2-standard-96", 8.00326, 3.20130),
];

/// `(N1 shape, on-demand $/h, spot $/h)`, without GPUs.
pub const N1_PRICES: &[(&str, f64, f64)] = &[
    ("n1-standard-8", 0.379998, 0.080000),
    ("n1-standard-16", 0.759996, 0.160000),
    ("n1-standard-32", 1.519992, 0.320000),
    ("n1-standard-64", 3.039984, 0.640000),
];

/// `(accelerator, on-demand $/h, spot $/h)` per attached GPU.
pub const GPU_PRICES: &[(&str, f64, f64)] = &[
    ("nvidia-tesla-t4", 0.35, 0.14),
    ("nvidia-tesla-v100", 2.48, 0.992),
    ("nvidia-tesla-p100", 1.46, 0.584),
];

/// On-demand and spot dollars per hour of `cloud_type` in `region`:
/// an accelerator-optimized type's own price, or an N1 shape's plus its
/// attached GPUs'. `None` where the table has no price.
pub fn price(cloud_type: &str, region: &str) -> Option<(f64, f64)> {
    if !PRICED_REGIONS.contains(&region) {
        return None;
    }
    if let Some((shape, acc, n)) = split_n1(cloud_type) {
        let (_, m, ms) = N1_PRICES.iter().find(|(s, _, _)| *s == shape)?;
        let (_, g, gs) = GPU_PRICES.iter().find(|(a, _, _)| *a == acc)?;
        return Some((m + g * n as f64, ms + gs * n as f64));
    }
    MACHINE_PRICES
        .iter()
        .find(|(t, _, _)| *t == cloud_type)
        .map(|(_, p, s)| (*p, *s))
}

/// Whether a machine type boots only from Hyperdisk (A3 Ultra and A4 take
/// no Persistent Disk), so its boot disk and volumes are
/// `hyperdisk-balanced` instead of `pd-balanced`.
pub fn needs_hyperdisk(machine_type: &str) -> bool {
    machine_type.starts_with("a3-ultragpu-") || machine_type.starts_with("a4-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n1_types_round_trip_and_are_priced_with_their_gpus() {
        let t = n1_type("nvidia-tesla-t4", 2);
        assert_eq!(t, "n1-standard-16+2xnvidia-tesla-t4");
        assert_eq!(split_n1(&t), Some(("n1-standard-16", "nvidia-tesla-t4", 2)));
        let (od, spot) = price(&t, "us-central1").unwrap();
        assert!((od - (0.759996 + 0.70)).abs() < 1e-9, "{od}");
        assert!(spot < od);
        assert_eq!(price(&t, "mars-north1"), None);
        assert_eq!(split_n1("a2-highgpu-1g"), None);
        assert!(price("a2-highgpu-1g", "us-east1").is_some());
    }

    #[test]
    fn every_priced_type_is_served_and_every_accelerator_named() {
        for (t, od, spot) in MACHINE_PRICES {
            assert!(served_family(t), "{t}");
            assert!(*od > 0.0 && *spot > 0.0 && spot < od, "{t}");
        }
        for (acc, counts) in ATTACHED {
            assert!(gpu(acc).is_some(), "{acc}");
            for n in *counts {
                assert!(
                    price(&n1_type(acc, *n), "us-central1").is_some(),
                    "{acc} x{n}"
                );
            }
        }
    }
}
