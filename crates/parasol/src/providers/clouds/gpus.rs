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
    pub vram: i64,
    pub interconnect: &'static str,
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
        })
    };
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
        gpu_manufacturer: "nvidia".to_string(),
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
        ];
        for (desc, shade, n, name) in cases {
            let g = gpu_model(desc).unwrap_or_else(|| panic!("{desc} not recognized"));
            assert_eq!(g.shade, shade, "{desc}");
            assert_eq!(shade_type(&g, n), name, "{desc}");
        }
        assert_eq!(gpu_model("CPU only"), None);
    }

    #[test]
    fn prices_become_whole_cents() {
        assert_eq!(cents(2.49), 249);
        assert_eq!(cents(1.35), 135);
        let n: Num = serde_json::from_str("\"3.5\"").unwrap();
        assert_eq!(n.get(), 3.5);
    }
}
