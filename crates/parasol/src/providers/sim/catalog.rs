//! The sim's inventory: clouds, regions, GPU models and shapes.
//!
//! Prices are in the range of public list prices (late 2026) for each
//! model; each cloud applies its own factor, so the same type differs a
//! little between clouds as it does in real life. Everything here is fixed
//! data plus a seeded hash, so two servers with the same seed offer exactly
//! the same catalog.

use parasol_api::{BootTime, InstanceTypeConfiguration};

use crate::providers::{Capacity, ClusterOffer, Offer, RegionOffer, VolumeOffer};

/// A GPU model and what one GPU of it comes with.
pub(super) struct Gpu {
    /// `gpu_type` in the API.
    pub gpu_type: &'static str,
    /// Prefix of `shade_instance_type`.
    pub shade: &'static str,
    /// Lower-case token used in cloud-style type names.
    pub token: &'static str,
    pub vram: i64,
    /// On-demand cents per GPU-hour at a factor of 100.
    pub cents: i64,
    pub vcpus: i64,
    pub mem_gb: i64,
    pub disk_gb: i64,
    pub interconnect: &'static str,
    pub nvlink: bool,
    pub shapes: &'static [i64],
}

const GPUS: &[Gpu] = &[
    gpu(
        "H200",
        "H200",
        "h200",
        141,
        379,
        24,
        230,
        3000,
        "sxm5",
        true,
        &[1, 8],
    ),
    gpu(
        "H100",
        "H100_sxm5",
        "h100_sxm5",
        80,
        299,
        26,
        225,
        2750,
        "sxm5",
        true,
        &[1, 2, 4, 8],
    ),
    gpu(
        "H100",
        "H100",
        "h100_pcie",
        80,
        249,
        26,
        200,
        1000,
        "pcie",
        false,
        &[1, 2, 4, 8],
    ),
    gpu(
        "B200",
        "B200",
        "b200",
        180,
        549,
        28,
        280,
        3500,
        "sxm6",
        true,
        &[1, 8],
    ),
    gpu(
        "A100_80G",
        "A100_80G",
        "a100_80gb",
        80,
        179,
        30,
        225,
        1600,
        "sxm4",
        true,
        &[1, 2, 4, 8],
    ),
    gpu(
        "A100",
        "A100",
        "a100",
        40,
        129,
        30,
        200,
        512,
        "pcie",
        false,
        &[1, 2, 4, 8],
    ),
    gpu(
        "L40S",
        "L40S",
        "l40s",
        48,
        99,
        16,
        96,
        512,
        "pcie",
        false,
        &[1, 2, 4, 8],
    ),
    gpu(
        "L40",
        "L40",
        "l40",
        48,
        89,
        16,
        96,
        512,
        "pcie",
        false,
        &[1, 2, 4, 8],
    ),
    gpu(
        "A6000",
        "A6000",
        "a6000",
        48,
        80,
        14,
        100,
        512,
        "pcie",
        false,
        &[1, 2, 4, 8],
    ),
    gpu(
        "A5000",
        "A5000",
        "a5000",
        24,
        45,
        8,
        60,
        256,
        "pcie",
        false,
        &[1, 2, 4],
    ),
    gpu(
        "RTX4090",
        "RTX4090",
        "rtx4090",
        24,
        44,
        8,
        62,
        256,
        "pcie",
        false,
        &[1, 2, 4, 8],
    ),
    gpu(
        "A10",
        "A10",
        "a10",
        24,
        75,
        30,
        200,
        1400,
        "pcie",
        false,
        &[1],
    ),
];

#[allow(clippy::too_many_arguments)]
const fn gpu(
    gpu_type: &'static str,
    shade: &'static str,
    token: &'static str,
    vram: i64,
    cents: i64,
    vcpus: i64,
    mem_gb: i64,
    disk_gb: i64,
    interconnect: &'static str,
    nvlink: bool,
    shapes: &'static [i64],
) -> Gpu {
    Gpu {
        gpu_type,
        shade,
        token,
        vram,
        cents,
        vcpus,
        mem_gb,
        disk_gb,
        interconnect,
        nvlink,
        shapes,
    }
}

/// A simulated cloud.
pub(super) struct Cloud {
    pub name: &'static str,
    pub regions: &'static [(&'static str, &'static str)],
    /// `shade` prefixes of the GPU models it carries.
    pub gpus: &'static [&'static str],
    /// Price factor in percent.
    pub factor: i64,
    /// Spot discount in percent of on-demand, where the cloud sells spot.
    pub spot_percent: Option<i64>,
    pub boot: (i64, i64),
    pub deployment_type: &'static str,
    pub style: NameStyle,
}

/// How a cloud spells its own instance type names.
#[derive(Clone, Copy)]
pub(super) enum NameStyle {
    /// `gpu_8x_h100_sxm5`
    Lambda,
    /// `n3-H100x8`
    Hyperstack,
    /// `8H100.80S`
    DataCrunch,
    /// `H100_sxm5-8x`
    Generic,
}

pub(super) const CLOUDS: &[Cloud] = &[
    Cloud {
        name: "lambdalabs",
        regions: &[
            ("us-east-1", "US, Virginia"),
            ("us-west-1", "US, California"),
            ("us-south-1", "US, Texas"),
        ],
        gpus: &[
            "H100_sxm5",
            "H100",
            "A100_80G",
            "A100",
            "A6000",
            "A10",
            "B200",
            "H200",
        ],
        factor: 100,
        spot_percent: None,
        boot: (180, 300),
        deployment_type: "vm",
        style: NameStyle::Lambda,
    },
    Cloud {
        name: "hyperstack",
        regions: &[
            ("CANADA-1", "Canada, Montreal"),
            ("NORWAY-1", "Norway, Oslo"),
            ("US-1", "US, Minneapolis, MN"),
        ],
        gpus: &["H100_sxm5", "H100", "A100_80G", "L40", "A6000", "RTX4090"],
        factor: 95,
        spot_percent: Some(60),
        boot: (300, 600),
        deployment_type: "vm",
        style: NameStyle::Hyperstack,
    },
    Cloud {
        name: "denvr",
        regions: &[
            ("houston-usa-1", "US, Houston, TX"),
            ("calgary-canada-1", "Canada, Calgary, AB"),
        ],
        gpus: &["H100_sxm5", "A100_80G", "A100", "H200"],
        factor: 98,
        spot_percent: None,
        boot: (600, 1200),
        deployment_type: "baremetal",
        style: NameStyle::Generic,
    },
    Cloud {
        name: "datacrunch",
        regions: &[
            ("FIN-01", "Finland, Helsinki"),
            ("ICE-01", "Iceland, Keflavik"),
        ],
        gpus: &["H200", "H100_sxm5", "B200", "A100_80G", "L40S", "A6000"],
        factor: 92,
        spot_percent: Some(40),
        boot: (120, 300),
        deployment_type: "vm",
        style: NameStyle::DataCrunch,
    },
    Cloud {
        name: "massedcompute",
        regions: &[
            ("us-central-1", "US, Wichita, KS"),
            ("us-central-2", "US, Kansas City, MO"),
        ],
        gpus: &["A6000", "A5000", "L40S", "H100", "A100_80G", "RTX4090"],
        factor: 96,
        spot_percent: None,
        boot: (120, 240),
        deployment_type: "vm",
        style: NameStyle::Generic,
    },
    Cloud {
        name: "vultr",
        regions: &[
            ("ewr", "US, New Jersey"),
            ("ams", "Netherlands, Amsterdam"),
            ("nrt", "Japan, Tokyo"),
        ],
        gpus: &["H100_sxm5", "A100_80G", "L40S", "A100", "B200"],
        factor: 105,
        spot_percent: None,
        boot: (300, 500),
        deployment_type: "vm",
        style: NameStyle::Generic,
    },
    Cloud {
        name: "crusoe",
        regions: &[
            ("us-east1-a", "US, Virginia"),
            ("us-southcentral1-a", "US, Texas"),
            ("eu-iceland1-a", "Iceland, Reykjavik"),
        ],
        gpus: &["H200", "H100_sxm5", "B200", "A100_80G", "L40S"],
        factor: 102,
        spot_percent: Some(50),
        boot: (300, 600),
        deployment_type: "vm",
        style: NameStyle::Generic,
    },
    Cloud {
        name: "paperspace",
        regions: &[("ny2", "US, New York"), ("ams1", "Netherlands, Amsterdam")],
        gpus: &["A100", "A6000", "A5000", "H100", "RTX4090"],
        factor: 110,
        spot_percent: None,
        boot: (120, 300),
        deployment_type: "vm",
        style: NameStyle::Generic,
    },
];

/// OS images every simulated type offers; the first is the default.
const OS_OPTIONS: &[&str] = &[
    "ubuntu22.04_cuda12.4_shade_os",
    "ubuntu24.04_cuda12.8_shade_os",
    "ubuntu22.04",
    "ubuntu20.04",
];

/// FNV-1a, so capacities and boot delays are stable across releases and
/// platforms (std's hasher promises neither).
pub(super) fn fnv(seed: u64, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn shade_type(g: &Gpu, n: i64) -> String {
    if n == 1 {
        g.shade.to_string()
    } else {
        format!("{}x{n}", g.shade)
    }
}

fn cloud_type(style: NameStyle, g: &Gpu, n: i64) -> String {
    match style {
        NameStyle::Lambda => format!("gpu_{n}x_{}", g.token),
        NameStyle::Hyperstack => format!("n3-{}x{n}", g.shade),
        NameStyle::DataCrunch => format!("{n}{}.{}S", g.gpu_type, g.vram),
        NameStyle::Generic => format!("{}-{n}x", g.shade),
    }
}

/// How many machines of a type a region holds: a handful for small shapes,
/// one to three for 8-GPU boxes, and now and then none at all, so that both
/// `available: true` and `false` show up in the catalog.
fn slots(seed: u64, cloud: &str, region: &str, shade: &str, n: i64) -> i64 {
    let h = fnv(seed, &[cloud, region, shade]);
    if h.is_multiple_of(11) {
        return 0;
    }
    let base = match n {
        1 => 6,
        2 => 4,
        4 => 3,
        _ => 1,
    };
    base + (h >> 8) as i64 % (base + 2)
}

/// Builds every offer of every simulated cloud.
///
/// `capacity` replaces the per-region slot counts with one number (tests and
/// benchmarks that need thousands of machines).
pub(super) fn offers(seed: u64, capacity: Option<i64>) -> Vec<Offer> {
    let mut out = Vec::new();
    for c in CLOUDS {
        for g in GPUS.iter().filter(|g| c.gpus.contains(&g.shade)) {
            for &n in g.shapes {
                let shade = shade_type(g, n);
                let per_gpu = g.cents * c.factor / 100;
                let hourly_price = per_gpu * n;
                let regions = c
                    .regions
                    .iter()
                    // Not every region stocks every type.
                    .filter(|(r, _)| !fnv(seed, &[c.name, r, &shade, "stock"]).is_multiple_of(5))
                    .map(|(r, d)| RegionOffer {
                        region: r.to_string(),
                        display_name: d.to_string(),
                        capacity: Capacity::Slots(
                            capacity.unwrap_or_else(|| slots(seed, c.name, r, &shade, n)),
                        ),
                        spot_price: c.spot_percent.map(|p| (hourly_price * p + 99) / 100),
                    })
                    .collect::<Vec<_>>();
                if regions.is_empty() {
                    continue;
                }
                out.push(Offer {
                    cloud: c.name.to_string(),
                    shade_instance_type: shade.clone(),
                    cloud_instance_type: cloud_type(c.style, g, n),
                    configuration: InstanceTypeConfiguration {
                        memory_in_gb: g.mem_gb * n,
                        storage_in_gb: g.disk_gb * n,
                        vcpus: g.vcpus * n,
                        num_gpus: n,
                        gpu_type: g.gpu_type.to_string(),
                        interconnect: g.interconnect.to_string(),
                        nvlink: g.nvlink && n > 1,
                        vram_per_gpu_in_gb: g.vram,
                        os_options: OS_OPTIONS.iter().map(|s| s.to_string()).collect(),
                        gpu_manufacturer: "nvidia".to_string(),
                    },
                    hourly_price,
                    deployment_type: c.deployment_type.to_string(),
                    boot_time: Some(BootTime {
                        min_boot_in_sec: c.boot.0,
                        max_boot_in_sec: c.boot.1,
                    }),
                    regions,
                    ssh_user: "shadeform".to_string(),
                    ssh_port: 22,
                });
            }
        }
    }
    out
}

/// Where the sim sells multi-node clusters: 8-GPU NVLink nodes with a fast
/// fabric between them, in the first region of a few clouds.
const CLUSTERS: &[(&str, &[&str])] = &[
    ("denvr", &["H100_sxm5x8", "A100_80Gx8", "H200x8"]),
    ("lambdalabs", &["H100_sxm5x8", "B200x8"]),
    ("crusoe", &["H200x8", "B200x8", "H100_sxm5x8"]),
    ("datacrunch", &["H200x8", "B200x8"]),
];

/// Node counts every cluster shape comes in.
const CLUSTER_SIZES: &[i64] = &[2, 4, 8, 16];

/// Builds the cluster offers. Capacity is counted in nodes: enough for one
/// 16-node cluster and some more, so both `available` verdicts occur as
/// clusters are rented.
pub(super) fn cluster_offers(seed: u64, capacity: Option<i64>) -> Vec<ClusterOffer> {
    let mut out = Vec::new();
    for (cloud, types) in CLUSTERS {
        let Some(c) = CLOUDS.iter().find(|c| c.name == *cloud) else {
            continue;
        };
        let (region, display) = c.regions[0];
        for t in *types {
            out.push(ClusterOffer {
                cloud: cloud.to_string(),
                shade_instance_type: t.to_string(),
                node_counts: CLUSTER_SIZES.to_vec(),
                regions: vec![RegionOffer {
                    region: region.to_string(),
                    display_name: display.to_string(),
                    capacity: Capacity::Slots(capacity.unwrap_or_else(|| {
                        16 + (fnv(seed, &[cloud, region, t, "cluster"]) % 17) as i64
                    })),
                    spot_price: None,
                }],
            });
        }
    }
    out
}

/// Volume kinds per cloud: (multi-mount, fixed size, millionths of a dollar
/// per GB-hour). Network filesystems (multi-mount, elastic) on the clouds
/// that sell them, block volumes elsewhere; prices near public list prices
/// of $0.07 to $0.20 per GB-month.
const VOLUMES: &[(&str, bool, bool, i64)] = &[
    ("lambdalabs", true, false, 274),
    ("hyperstack", false, true, 110),
    ("denvr", false, true, 137),
    ("datacrunch", false, true, 137),
    ("massedcompute", false, true, 96),
    ("vultr", false, true, 137),
    ("crusoe", true, false, 164),
    ("paperspace", false, true, 400),
];

/// Builds the volume offers: every region of every cloud in [`VOLUMES`].
pub(super) fn volume_offers() -> Vec<VolumeOffer> {
    let mut out = Vec::new();
    for (cloud, multi, fixed, price) in VOLUMES {
        let Some(c) = CLOUDS.iter().find(|c| c.name == *cloud) else {
            continue;
        };
        for (region, _) in c.regions {
            out.push(VolumeOffer {
                cloud: cloud.to_string(),
                region: region.to_string(),
                supports_multi_mount: *multi,
                fixed_size: *fixed,
                price_micros_per_gb_hour: *price,
                min_size_gb: 1,
                max_size_gb: 16_384,
                mount_rule: "a volume mounts only on instances in its own cloud and region"
                    .to_string(),
            });
        }
    }
    out
}

/// Every cloud name the sim serves.
pub(super) fn cloud_names() -> Vec<String> {
    CLOUDS.iter().map(|c| c.name.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn catalog_spans_eight_clouds_and_twelve_gpu_models() {
        let offers = offers(0, None);
        let clouds: HashSet<_> = offers.iter().map(|o| o.cloud.as_str()).collect();
        assert!(clouds.len() >= 8, "{clouds:?}");
        let models: HashSet<_> = offers
            .iter()
            .map(|o| (&o.configuration.gpu_type, &o.configuration.interconnect))
            .collect();
        assert!(models.len() >= 12, "{models:?}");
        for shape in [1, 2, 4, 8] {
            assert!(offers.iter().any(|o| o.configuration.num_gpus == shape));
        }
    }

    #[test]
    fn catalog_is_deterministic_for_a_seed() {
        assert_eq!(offers(7, None), offers(7, None));
    }

    #[test]
    fn some_regions_are_full_and_some_sell_spot() {
        let offers = offers(0, None);
        let regions: Vec<_> = offers.iter().flat_map(|o| &o.regions).collect();
        assert!(regions.iter().any(|r| r.capacity == Capacity::Slots(0)));
        assert!(regions
            .iter()
            .any(|r| matches!(r.capacity, Capacity::Slots(n) if n > 0)));
        assert!(regions.iter().any(|r| r.spot_price.is_some()));
    }

    #[test]
    fn every_cluster_shape_has_a_node_type_and_room_for_sixteen_nodes() {
        let offers = offers(0, None);
        for c in cluster_offers(0, None) {
            let node = offers
                .iter()
                .find(|o| o.cloud == c.cloud && o.shade_instance_type == c.shade_instance_type)
                .unwrap_or_else(|| panic!("{} {}", c.cloud, c.shade_instance_type));
            assert_eq!(node.configuration.num_gpus, 8);
            assert!(node.configuration.nvlink);
            assert!(matches!(c.regions[0].capacity, Capacity::Slots(n) if n >= 16));
        }
    }

    #[test]
    fn prices_scale_with_gpu_count() {
        let offers = offers(0, None);
        let one = offers
            .iter()
            .find(|o| o.cloud == "lambdalabs" && o.shade_instance_type == "H100_sxm5")
            .unwrap();
        let eight = offers
            .iter()
            .find(|o| o.cloud == "lambdalabs" && o.shade_instance_type == "H100_sxm5x8")
            .unwrap();
        assert_eq!(eight.hourly_price, one.hourly_price * 8);
        assert_eq!(one.hourly_price, 299);
    }
}
