//! GPU naming: a cloud's description of its GPUs mapped onto Shadeform's
//! type names and configurations, and the number shapes clouds write
//! prices in.

use parasol_api::InstanceTypeConfiguration;

/// A GPU model as Shadeform names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuModel {
    /// `gpu_type` in the API.
    pub gpu_type: &'static str,
    /// Prefix of `shade_instance_type`.
    pub shade: &'static str,
    /// GB per GPU: the model's nominal size until [`GpuModel::with_vram`]
    /// sets the cloud's own number.
    pub vram: i64,
    pub interconnect: &'static str,
    /// `gpu_manufacturer` in the API: `nvidia` or `AMD`.
    pub manufacturer: &'static str,
}

/// `gpu_manufacturer` of NVIDIA GPUs.
pub const NVIDIA: &str = "nvidia";
/// `gpu_manufacturer` of AMD GPUs.
pub const AMD: &str = "AMD";

impl GpuModel {
    /// The model with the VRAM per GPU (GB) the cloud states for it. The
    /// cloud's number wins over the model's nominal size, and decides the
    /// variant where one name covers two (an "A100 SXM4" with 80 GB is the
    /// `A100_80G`): clouds name variants loosely, but count memory exactly.
    /// A number that is not positive leaves the model as it is.
    pub fn with_vram(mut self, vram_gb: i64) -> GpuModel {
        if vram_gb <= 0 {
            return self;
        }
        match self.gpu_type {
            "A100" if vram_gb > 40 => {
                self.gpu_type = "A100_80G";
                self.shade = "A100_80G";
            }
            "A100_80G" if vram_gb <= 40 => {
                self.gpu_type = "A100";
                self.shade = "A100";
            }
            _ => {}
        }
        self.vram = vram_gb;
        self
    }
}

/// Recognizes a GPU from a cloud's description of it ("H100 (80 GB SXM5)",
/// "1x H100 SXM5 80GB", "A100-80G-PCIe", "RTX A6000"). The order matters:
/// longer names first, so "L40S" is not read as "L40".
pub fn gpu_model(description: &str) -> Option<GpuModel> {
    let d: String = description
        .to_ascii_uppercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect();
    let words: Vec<&str> = d.split_whitespace().collect();
    let has = |w: &str| words.contains(&w);
    let joined = words.concat();
    let sxm = joined.contains("SXM");
    let m = |gpu_type, shade, vram, interconnect| {
        Some(GpuModel {
            gpu_type,
            shade,
            vram,
            interconnect,
            manufacturer: NVIDIA,
        })
    };
    let amd = |gpu_type, vram| {
        Some(GpuModel {
            gpu_type,
            shade: gpu_type,
            vram,
            interconnect: "infinity_fabric",
            manufacturer: AMD,
        })
    };
    // AMD Instinct parts: OAM modules joined by Infinity Fabric.
    if joined.contains("MI325X") {
        return amd("MI325X", 256);
    }
    if joined.contains("MI300X") {
        return amd("MI300X", 192);
    }
    if joined.contains("GH200") {
        return m("GH200", "GH200", 96, "nvlink-c2c");
    }
    if joined.contains("B200") {
        return m("B200", "B200", 180, "sxm6");
    }
    if joined.contains("H200") {
        return m("H200", "H200", 141, "sxm5");
    }
    if joined.contains("H100") {
        return if sxm {
            m("H100", "H100_sxm5", 80, "sxm5")
        } else {
            m("H100", "H100", 80, "pcie")
        };
    }
    if joined.contains("A100") {
        let big = joined.contains("80G");
        let ic = if sxm { "sxm4" } else { "pcie" };
        return if big {
            m("A100_80G", "A100_80G", 80, ic)
        } else {
            m("A100", "A100", 40, ic)
        };
    }
    if joined.contains("4090") {
        return m("RTX4090", "RTX4090", 24, "pcie");
    }
    if joined.contains("3090") {
        return m("RTX3090", "RTX3090", 24, "pcie");
    }
    if joined.contains("L40S") {
        return m("L40S", "L40S", 48, "pcie");
    }
    if joined.contains("L40") {
        return m("L40", "L40", 48, "pcie");
    }
    if joined.contains("6000ADA") || (joined.contains("RTX6000") && has("ADA")) {
        return m("RTX6000Ada", "RTX6000Ada", 48, "pcie");
    }
    if joined.contains("4000ADA") || (joined.contains("RTX4000") && has("ADA")) {
        return m("RTX4000Ada", "RTX4000Ada", 20, "pcie");
    }
    if joined.contains("A6000") {
        return m("A6000", "A6000", 48, "pcie");
    }
    if joined.contains("A5000") {
        return m("A5000", "A5000", 24, "pcie");
    }
    if joined.contains("A4000") {
        return m("A4000", "A4000", 16, "pcie");
    }
    if joined.contains("A40") {
        return m("A40", "A40", 48, "pcie");
    }
    if joined.contains("A10") {
        return m("A10", "A10", 24, "pcie");
    }
    if joined.contains("V100") {
        return m("V100", "V100", 16, if sxm { "sxm2" } else { "pcie" });
    }
    if joined.contains("RTX6000") {
        return m("RTX6000", "RTX6000", 24, "pcie");
    }
    None
}

/// The VRAM per GPU a cloud's description of a GPU states, in GB ("RTX
/// A6000 (48 GB)", "A100-80G-PCIe", "H100 SXM5 80GB"): a number followed
/// by `GB`, `G` or `GiB`, in the same word or the next.
pub fn stated_vram(description: &str) -> Option<i64> {
    let d = description.to_ascii_uppercase();
    let words: Vec<&str> = d
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let unit = |u: &str| matches!(u, "GB" | "G" | "GIB");
    words.iter().enumerate().find_map(|(i, w)| {
        let digits = w.len() - w.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        let (n, rest) = w.split_at(digits);
        let stated = if rest.is_empty() {
            words.get(i + 1).is_some_and(|u| unit(u))
        } else {
            unit(rest)
        };
        stated.then(|| n.parse().ok()).flatten()
    })
}

/// Shadeform's type name: the model, then `x<n>` for more than one GPU
/// (`A6000`, `H100_sxm5x8`).
pub fn shade_type(gpu: &GpuModel, n: i64) -> String {
    if n == 1 {
        gpu.shade.to_string()
    } else {
        format!("{}x{n}", gpu.shade)
    }
}

/// The configuration of an offer of `n` of `gpu`.
pub fn configuration(
    gpu: &GpuModel,
    n: i64,
    vcpus: i64,
    memory_in_gb: i64,
    storage_in_gb: i64,
    os_options: &[&str],
) -> InstanceTypeConfiguration {
    InstanceTypeConfiguration {
        memory_in_gb,
        storage_in_gb,
        vcpus,
        num_gpus: n,
        gpu_type: gpu.gpu_type.to_string(),
        interconnect: gpu.interconnect.to_string(),
        nvlink: n > 1 && gpu.interconnect.starts_with("sxm"),
        vram_per_gpu_in_gb: gpu.vram,
        os_options: os_options.iter().map(|s| s.to_string()).collect(),
        gpu_manufacturer: gpu.manufacturer.to_string(),
    }
}

/// Makes the offers' names unique, so every type a cloud sells can be
/// ordered: where several share one Shadeform name (AWS's `g6.xlarge` and
/// `gr6.4xlarge` are both an `L4`; RunPod's "H100 PCIe" and "H100 NVL" both
/// an `H100`), the smallest (least VRAM per GPU, then fewest vCPUs, then
/// least memory, then the cloud's name) keeps the name, and each other one
/// becomes the name, `_`, and the cloud's own name for it as `cloud_name`
/// gives it (`L4_gr6.4xlarge`), with anything but letters, digits, `.` and
/// `-` as `-`. A name never changes meaning while the cloud's set of types
/// stays the same.
pub fn unique_names(
    offers: &mut [crate::providers::Offer],
    cloud_name: impl Fn(&crate::providers::Offer) -> String,
) {
    let mut by_name: std::collections::BTreeMap<String, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, o) in offers.iter().enumerate() {
        by_name
            .entry(o.shade_instance_type.clone())
            .or_default()
            .push(i);
    }
    for (plain, mut shared) in by_name {
        if shared.len() < 2 {
            continue;
        }
        shared.sort_by_key(|&i| {
            let o = &offers[i];
            let c = &o.configuration;
            (
                c.vram_per_gpu_in_gb,
                c.vcpus,
                c.memory_in_gb,
                o.cloud_instance_type.clone(),
            )
        });
        for &i in &shared[1..] {
            let own: String = cloud_name(&offers[i])
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            offers[i].shade_instance_type = format!("{plain}_{own}");
        }
    }
}

/// Notes a GPU type `cloud` lists that maps onto no Shadeform model, so it
/// is not offered: logged the first time this process sees it, and counted
/// in `/metrics` (`parasol_catalog_unmapped_types{cloud}`), so a GPU a
/// cloud adds is noticed instead of silently missing from the catalog.
pub fn unmapped(cloud: &str, cloud_type: &str) {
    if crate::metrics::global().note_unmapped_type(cloud, cloud_type) {
        tracing::warn!(
            cloud,
            cloud_type,
            "the cloud lists a GPU type that maps onto no Shadeform model; it is not offered"
        );
    }
}

/// A marketplace cloud's type name as Parasol writes it, `<gpu>:<count>`
/// (`NVIDIA A40:2`), split back into the GPU and the count; `cloud` names
/// the cloud in the error.
pub fn split_gpu_count<'a>(
    cloud: &str,
    cloud_type: &'a str,
) -> Result<(&'a str, i64), crate::providers::ProviderError> {
    cloud_type
        .rsplit_once(':')
        .and_then(|(t, n)| Some((t, n.parse().ok()?)))
        .ok_or_else(|| {
            crate::providers::ProviderError::Permanent(format!(
                "{cloud_type:?} is not a {cloud} type (expected <gpu>:<count>)"
            ))
        })
}

/// Dollars (as a cloud writes them, `"2.49"` or `2.49`) to whole cents,
/// rounded to the nearest cent.
pub fn cents(dollars: f64) -> i64 {
    (dollars * 100.0).round() as i64
}

/// A number a cloud may send as a JSON number or as a string.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum Num {
    Number(f64),
    Text(#[serde(deserialize_with = "num_from_str")] f64),
}

impl Num {
    /// The value.
    pub fn get(self) -> f64 {
        match self {
            Num::Number(n) | Num::Text(n) => n,
        }
    }
}

fn num_from_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    s.trim().parse().map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_descriptions_of_each_cloud_map_to_shadeform_names() {
        let cases = [
            ("H100 (80 GB SXM5)", "H100_sxm5", 8, "H100_sxm5x8"),
            ("H100 (80 GB PCIe)", "H100", 1, "H100"),
            ("A100 (40 GB SXM4)", "A100", 1, "A100"),
            ("A100 (80 GB SXM4)", "A100_80G", 8, "A100_80Gx8"),
            ("RTX A6000 (48 GB)", "A6000", 1, "A6000"),
            ("A10 (24 GB PCIe)", "A10", 1, "A10"),
            ("1x H100 SXM5 80GB", "H100_sxm5", 1, "H100_sxm5"),
            ("8x H200 SXM5 141GB", "H200", 8, "H200x8"),
            ("A100-80G-PCIe", "A100_80G", 2, "A100_80Gx2"),
            ("RTX-A6000", "A6000", 4, "A6000x4"),
            ("L40S", "L40S", 1, "L40S"),
            ("L40", "L40", 1, "L40"),
            ("RTX 6000 Ada", "RTX6000Ada", 1, "RTX6000Ada"),
            ("RTX 4090", "RTX4090", 2, "RTX4090x2"),
            ("NVIDIA GeForce RTX 3090", "RTX3090", 1, "RTX3090"),
            ("nvidia h100 gpu-h100x8-640gb", "H100", 8, "H100x8"),
            ("amd mi300x gpu-mi300x8-1536gb", "MI300X", 8, "MI300Xx8"),
            ("AMD Instinct MI300X OAM", "MI300X", 1, "MI300X"),
            ("amd mi325x gpu-mi325x8-2048gb", "MI325X", 8, "MI325Xx8"),
            (
                "nvidia rtx 4000 ada gpu-4000adax1-20gb",
                "RTX4000Ada",
                1,
                "RTX4000Ada",
            ),
            (
                "NVIDIA RTX 4000 Ada Generation",
                "RTX4000Ada",
                1,
                "RTX4000Ada",
            ),
            ("NVIDIA RTX A4000", "A4000", 1, "A4000"),
        ];
        for (desc, shade, n, name) in cases {
            let g = gpu_model(desc).unwrap_or_else(|| panic!("{desc} not recognized"));
            assert_eq!(g.shade, shade, "{desc}");
            assert_eq!(shade_type(&g, n), name, "{desc}");
        }
        assert_eq!(gpu_model("CPU only"), None);
        let mi = gpu_model("AMD Instinct MI300X OAM").unwrap();
        assert_eq!((mi.manufacturer, mi.vram), (AMD, 192));
        assert_eq!(
            configuration(&mi, 8, 160, 1920, 0, &[]).gpu_manufacturer,
            "AMD"
        );
        assert_eq!(gpu_model("H100 SXM").unwrap().manufacturer, NVIDIA);
    }

    #[test]
    fn vram_is_read_where_a_description_states_it() {
        assert_eq!(stated_vram("RTX A6000 (48 GB)"), Some(48));
        assert_eq!(stated_vram("H100 (80 GB SXM5)"), Some(80));
        assert_eq!(stated_vram("A100-80G-PCIe"), Some(80));
        assert_eq!(stated_vram("8x H200 SXM5 141GB"), Some(141));
        assert_eq!(stated_vram("RTX-A6000"), None);
        assert_eq!(stated_vram("4x A100"), None);
    }

    #[test]
    fn the_clouds_vram_decides_the_variant_and_the_size() {
        // RunPod's "A100 SXM" and Vast.ai's "A100 SXM4" name no size.
        let a = gpu_model("A100 SXM").unwrap();
        assert_eq!((a.shade, a.vram), ("A100", 40));
        let big = a.clone().with_vram(80);
        assert_eq!(
            (big.gpu_type, big.shade, big.vram),
            ("A100_80G", "A100_80G", 80)
        );
        assert_eq!(shade_type(&big, 8), "A100_80Gx8");
        let small = gpu_model("A100-80G-PCIe").unwrap().with_vram(40);
        assert_eq!((small.gpu_type, small.vram), ("A100", 40));
        assert_eq!(gpu_model("H100 NVL").unwrap().with_vram(94).vram, 94);
        assert_eq!(a.clone().with_vram(0), a, "no number, no change");
    }

    fn offer(shade: &str, cloud_type: &str, vram: i64, vcpus: i64) -> crate::providers::Offer {
        let gpu = gpu_model("A10").unwrap();
        crate::providers::Offer {
            cloud: "c".into(),
            shade_instance_type: shade.into(),
            cloud_instance_type: cloud_type.into(),
            configuration: configuration(&gpu.with_vram(vram), 1, vcpus, 4 * vcpus, 0, &[]),
            hourly_price: 1,
            deployment_type: "vm".into(),
            boot_time: None,
            regions: vec![],
            ssh_user: "root".into(),
            ssh_port: 22,
        }
    }

    #[test]
    fn every_offer_of_a_shared_name_gets_its_own_and_the_smallest_the_plain_one() {
        let mut offers = vec![
            offer("L4", "g6.2xlarge", 24, 8),
            offer("L4", "gr6.4xlarge", 24, 16),
            offer("L4", "g6.xlarge", 24, 4),
            offer("H100", "NVIDIA H100 NVL:1", 94, 16),
            offer("H100", "NVIDIA H100 PCIe:1", 80, 16),
            offer("A10", "a10:1", 24, 30),
        ];
        unique_names(&mut offers, |o| {
            o.cloud_instance_type.split(':').next().unwrap().to_string()
        });
        let names: Vec<&str> = offers
            .iter()
            .map(|o| o.shade_instance_type.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "L4_g6.2xlarge",
                "L4_gr6.4xlarge",
                "L4",
                "H100_NVIDIA-H100-NVL",
                "H100",
                "A10"
            ]
        );
    }

    #[test]
    fn prices_become_whole_cents() {
        assert_eq!(cents(2.49), 249);
        assert_eq!(cents(1.35), 135);
        let n: Num = serde_json::from_str("\"3.5\"").unwrap();
        assert_eq!(n.get(), 3.5);
    }
}
