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

/// When the price table was checked, for the README and the log.
///
/// Sources, all read on 2026-12-07:
/// - SkyPilot's Google Cloud catalog, `catalogs/v8/gcp/vms.csv` in
///   github.com/skypilot-org/skypilot-catalog at commit
///   `8427bbff988abdd050a9f51addd314ef31cb4e85`. Its machine rows carry a machine
///   type's vCPU and memory price without GPUs, its accelerator rows the
///   price of N GPUs; the accelerator-optimized prices below are those two
///   added up for us-central1, on-demand and Spot.
/// - Google's pages (cloud.google.com/compute/gpus-pricing,
///   cloud.google.com/compute/vm-instance-pricing,
///   cloud.google.com/spot-vms/pricing) were searched for, but the stored
///   copies reachable here hold their introductions, not the price rows, so
///   no row below is checked against Google's own page.
///
/// A row marked "unconfirmed" could not be checked: the value is the
/// first author's, kept so the type stays offered, and the comment says
/// why.
///
/// In that catalog us-central1, us-east1 and us-west1 carry the same
/// on-demand and Spot price for every type here that the region offers,
/// so the table serves those three ([`PRICED_REGIONS`]); a region outside
/// them has no table price and offers nothing unless the API priced it.
/// Spot prices move (Google may change them once a day); these are the
/// ones of that catalog.
pub const PRICES_AS_OF: &str = "2026-12-07";

/// `(machine type, on-demand $/h, spot $/h)` of the accelerator-optimized
/// types, GPUs included.
pub const MACHINE_PRICES: &[(&str, f64, f64)] = &[
    // A2 with A100 40 GB: host (a2-highgpu-1g 0.73948 / 0.36975, linear in
    // GPUs) plus A100 rows (2.93391 / 1.4341 per GPU; the 16-GPU row
    // 46.94253 / 22.9456). Confirmed.
    ("a2-highgpu-1g", 3.67339, 1.80385),
    ("a2-highgpu-2g", 7.34677, 3.6077),
    ("a2-highgpu-4g", 14.69354, 7.2154),
    ("a2-highgpu-8g", 29.38708, 14.4308),
    ("a2-megagpu-16g", 55.73951, 27.34384),
    // A2 Ultra with A100 80 GB: unconfirmed. SkyPilot's us-central1
    // A100-80GB rows price the GPU on demand (1.8462) below its own Spot
    // price (1.964), so they are not a usable source.
    ("a2-ultragpu-1g", 5.0688, 1.6),
    ("a2-ultragpu-2g", 10.1376, 3.2),
    ("a2-ultragpu-4g", 20.2752, 6.4),
    ("a2-ultragpu-8g", 40.5504, 12.8),
    // A3 High with H100: Spot confirmed (host a3-highgpu-1g 0.34406,
    // -8g 2.75246, linear in GPUs; H100 rows 2.8501 per GPU). On-demand
    // unconfirmed: SkyPilot's us-central1 H100 on-demand row (4.20076 per
    // GPU) is less than half its us-east4 row (9.79655) for a host priced
    // the same in both (9.46006 for -8g), so it is not used.
    ("a3-highgpu-1g", 11.0612, 3.19416),
    ("a3-highgpu-2g", 22.1225, 6.38832),
    ("a3-highgpu-4g", 44.2450, 12.77663),
    ("a3-highgpu-8g", 88.4900, 25.55326),
    // A3 Mega: host 9.46006 / 2.75246 plus H100-MEGA x8 82.75421 /
    // 24.0768. Confirmed.
    ("a3-megagpu-8g", 92.21427, 26.82926),
    // A3 Edge: same host and GPU rows as a3-highgpu-8g; Spot confirmed,
    // on-demand unconfirmed as for A3 High.
    ("a3-edgegpu-8g", 88.4900, 25.55326),
    // A3 Ultra with H200: host 12.266 / 3.56978 plus H200 x8 74.49392 /
    // 37.2472. Confirmed.
    ("a3-ultragpu-8g", 86.75992, 40.81698),
    // A4 with B200: unconfirmed. SkyPilot lists the a4-highgpu-8g host at
    // 0.0, so only the GPUs' part (90.216 / 32.6064) is known.
    ("a4-highgpu-8g", 94.9800, 37.9920),
    // G2 with L4: host (g2-standard-4 0.14679 / 0.05874, -8 0.29358 /
    // 0.11747, -16 0.58717 / 0.23494, -24 0.88075 / 0.35242, -32 1.17434 /
    // 0.46989, -48 1.7615 / 0.70483) plus L4 rows (0.56004 / 0.2231 per
    // GPU). Confirmed, except the hosts of g2-standard-12 and -96, which
    // were not read and are taken as 3x g2-standard-4 and 2x -48 (G2 is
    // priced per vCPU and GB, and those shapes are exact multiples).
    ("g2-standard-4", 0.70683, 0.28184),
    ("g2-standard-8", 0.85362, 0.34057),
    ("g2-standard-12", 1.00041, 0.39932),
    ("g2-standard-16", 1.14721, 0.45804),
    ("g2-standard-24", 2.00083, 0.79862),
    ("g2-standard-32", 1.73438, 0.69299),
    ("g2-standard-48", 4.00166, 1.59723),
    ("g2-standard-96", 8.00332, 3.19446),
];

/// `(N1 shape, on-demand $/h, spot $/h)`, without GPUs: n1-standard-16 is
/// 0.76 / 0.2321 in the catalog above (confirmed); the others are scaled
/// from it per vCPU (N1 is priced per vCPU and GB and the shapes are exact
/// multiples; on-demand agrees with its n1-standard-1 row, 0.0475).
pub const N1_PRICES: &[(&str, f64, f64)] = &[
    ("n1-standard-8", 0.38, 0.11605),
    ("n1-standard-16", 0.76, 0.2321),
    ("n1-standard-32", 1.52, 0.4642),
    ("n1-standard-64", 3.04, 0.9284),
];

/// `(accelerator, on-demand $/h, spot $/h)` per attached GPU, from the
/// catalog's us-central1 one-GPU rows. Confirmed.
pub const GPU_PRICES: &[(&str, f64, f64)] = &[
    ("nvidia-tesla-t4", 0.35, 0.175),
    ("nvidia-tesla-v100", 2.48, 1.1458),
    ("nvidia-tesla-p100", 1.46, 0.6699),
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
        assert!((od - (0.76 + 0.70)).abs() < 1e-9, "{od}");
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
