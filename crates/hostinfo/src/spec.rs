use crate::system::os_release_pairs;
use crate::{
    normalize_gpu_type, parse_df_bytes, parse_free_bytes, parse_gpu_query, parse_lscpu,
    parse_os_release, parse_topology, OsRelease, ParseError, DF, FREE, GPU_QUERY, OS_RELEASE,
};

/// What Parasol advertises for a host: the fields of Shadeform's
/// `InstanceTypeConfiguration`, so the API layer can copy them across
/// one to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// Catalogue name from [`normalize_gpu_type`], or `"none"` for a host
    /// without GPUs.
    pub gpu_type: String,
    /// GPUs on the host; 0 for a CPU-only host.
    pub num_gpus: u32,
    /// Per-GPU memory in GB, rounded up from MiB/1024 so it matches the
    /// marketed size (143771 MiB is sold as 141 GB, 81559 MiB as 80 GB).
    pub vram_per_gpu_in_gb: u32,
    /// Logical CPUs.
    pub vcpus: u32,
    /// Installed RAM in GiB, rounded to the nearest: the kernel reserves a
    /// little of the installed memory, so `free` reports slightly less than
    /// the marketed amount, and rounding down would under-state it.
    pub memory_in_gb: u32,
    /// Root filesystem size in GiB (2^30 bytes), rounded down so the figure
    /// never promises space that is not there.
    pub storage_in_gb: u32,
    /// `"sxm"`, `"pcie"`, or `"none"` without GPUs; see
    /// [`Topology::interconnect`](crate::Topology::interconnect).
    pub interconnect: String,
    /// Whether the GPUs are joined by NVLink.
    pub nvlink: bool,
    /// `"nvidia"`, or `"none"` without GPUs (discovery only asks nvidia-smi).
    pub gpu_manufacturer: String,
    /// The images a renter can pick from; see [`os_options`].
    pub os_options: Vec<String>,
}

/// The captured standard output of each discovery command, keyed by the
/// constant naming the command.
///
/// `Default` gives empty strings, which is how a caller says "this host has
/// no GPUs" for the two nvidia-smi fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoveryOutput<'a> {
    /// Output of [`GPU_QUERY`](crate::GPU_QUERY); empty when the host has no
    /// GPUs.
    pub gpu_query: &'a str,
    /// Output of [`TOPO_QUERY`](crate::TOPO_QUERY); ignored when the host
    /// has no GPUs.
    pub topo: &'a str,
    /// Output of [`LSCPU`](crate::LSCPU).
    pub lscpu: &'a str,
    /// Output of [`FREE`](crate::FREE).
    pub free: &'a str,
    /// Output of [`DF`](crate::DF).
    pub df: &'a str,
    /// Output of [`OS_RELEASE`](crate::OS_RELEASE).
    pub os_release: &'a str,
}

const GIB: u64 = 1 << 30;

/// Combines every command's output into the configuration the host is
/// offered as.
///
/// A host is sold as exactly one instance type, so GPUs of different types
/// on one host are an error naming the models, and the smallest memory of
/// its GPUs is what each GPU is advertised with. A host without GPUs gets
/// `gpu_type` `"none"`, zero GPUs and VRAM, `interconnect` `"none"` and
/// `gpu_manufacturer` `"none"`, for the caller to offer as a CPU machine;
/// its topology output is not read.
pub fn build_spec(out: &DiscoveryOutput) -> Result<HostSpec, ParseError> {
    let gpus = parse_gpu_query(out.gpu_query)?;
    let cpu = parse_lscpu(out.lscpu)?;
    let memory_bytes = parse_free_bytes(out.free)?;
    let storage_bytes = parse_df_bytes(out.df)?;
    // Text without a single assignment is an error message from `cat`, and
    // the os-release defaults would hide that.
    if os_release_pairs(out.os_release).is_empty() {
        return Err(ParseError::new(
            OS_RELEASE,
            format!(
                "there is no KEY=value line: {}",
                crate::excerpt(out.os_release.trim())
            ),
        ));
    }
    let os = parse_os_release(out.os_release);

    let memory_in_gb = to_u32(
        memory_bytes / GIB + u64::from(memory_bytes % GIB >= GIB / 2),
        FREE,
        "memory",
    )?;
    let storage_in_gb = to_u32(storage_bytes / GIB, DF, "storage")?;
    let os_options = os_options(&os, !gpus.is_empty());

    let Some(first) = gpus.first() else {
        return Ok(HostSpec {
            gpu_type: "none".to_owned(),
            num_gpus: 0,
            vram_per_gpu_in_gb: 0,
            vcpus: cpu.vcpus,
            memory_in_gb,
            storage_in_gb,
            interconnect: "none".to_owned(),
            nvlink: false,
            gpu_manufacturer: "none".to_owned(),
            os_options,
        });
    };

    let gpu_type = normalize_gpu_type(&first.name);
    if gpus
        .iter()
        .any(|gpu| normalize_gpu_type(&gpu.name) != gpu_type)
    {
        let mut models: Vec<&str> = Vec::new();
        for gpu in &gpus {
            if !models.contains(&gpu.name.as_str()) {
                models.push(&gpu.name);
            }
        }
        return Err(ParseError::new(
            GPU_QUERY,
            format!(
                "the host mixes GPU models ({}); a host is offered as one instance type, so all its GPUs must be the same model",
                models.join(", ")
            ),
        ));
    }
    let smallest_mib = gpus
        .iter()
        .map(|gpu| gpu.memory_total_mib)
        .min()
        .unwrap_or_default();
    let vram_per_gpu_in_gb = to_u32(smallest_mib.div_ceil(1024), GPU_QUERY, "memory.total")?;
    let num_gpus = to_u32(gpus.len() as u64, GPU_QUERY, "the GPU count")?;
    let topology = parse_topology(out.topo)?;

    Ok(HostSpec {
        gpu_type,
        num_gpus,
        vram_per_gpu_in_gb,
        vcpus: cpu.vcpus,
        memory_in_gb,
        storage_in_gb,
        interconnect: topology.interconnect,
        nvlink: topology.nvlink,
        gpu_manufacturer: "nvidia".to_owned(),
        os_options,
    })
}

/// Rejects sizes too large for the API's 32-bit fields instead of wrapping,
/// since such a figure can only come from corrupt output.
fn to_u32(value: u64, command: &'static str, what: &str) -> Result<u32, ParseError> {
    u32::try_from(value)
        .map_err(|_| ParseError::new(command, format!("{what} ({value}) is implausibly large")))
}

/// The `os_options` a renter can choose from, in the Shadeform style of a
/// lowercase distribution id glued to its version, e.g. `ubuntu24.04`.
///
/// A host Parasol brokers runs exactly one operating system that nobody
/// reinstalls per rental, so there is exactly one option, and it names only
/// what os-release proves. Shadeform's image names also promise a CUDA
/// toolkit (`..._cuda12.x_shade_os`); nothing in the discovery output shows
/// one is installed, so `has_gpu` does not add such a suffix today. It is
/// part of the signature so callers need not change if GPU hosts later get
/// driver-specific names. Characters other than ASCII letters, digits, `.`,
/// `_` and `-` are dropped so the name is safe in URLs and filenames; an id
/// left empty becomes `linux`, and a missing version leaves just the id.
pub fn os_options(os: &OsRelease, has_gpu: bool) -> Vec<String> {
    let _ = has_gpu;
    let clean = |text: &str| -> String {
        text.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let mut id = clean(&os.id);
    if id.is_empty() {
        id = "linux".to_owned();
    }
    vec![format!("{id}{}", clean(&os.version_id))]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSCPU_16: &str =
        "Architecture: x86_64\nCPU(s): 16\nModel name: Intel(R) Xeon(R) Processor\n";
    const FREE_128G: &str = "               total        used        free\nMem:     135148564480   531636224 133847900160\nSwap: 0 0 0\n";
    const DF_252G: &str = "Filesystem        1B-blocks        Used   Available Use% Mounted on\n/dev/vda       270553174016 17286623232 68702314496  21% /\n";
    const UBUNTU: &str = "ID=ubuntu\nVERSION_ID=\"24.04\"\nPRETTY_NAME=\"Ubuntu 24.04.3 LTS\"\n";
    const TOPO_2X_NVLINK: &str =
        "\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tNV12\t0-15\nGPU1\tNV12\t X \t0-15\n";

    fn host<'a>(gpu_query: &'a str, topo: &'a str) -> DiscoveryOutput<'a> {
        DiscoveryOutput {
            gpu_query,
            topo,
            lscpu: LSCPU_16,
            free: FREE_128G,
            df: DF_252G,
            os_release: UBUNTU,
        }
    }

    #[test]
    fn a_host_without_gpus_is_described_as_a_cpu_machine() {
        let spec = build_spec(&host("", "garbage that is never read")).unwrap();
        assert_eq!(
            spec,
            HostSpec {
                gpu_type: "none".into(),
                num_gpus: 0,
                vram_per_gpu_in_gb: 0,
                vcpus: 16,
                memory_in_gb: 126,
                storage_in_gb: 251,
                interconnect: "none".into(),
                nvlink: false,
                gpu_manufacturer: "none".into(),
                os_options: vec!["ubuntu24.04".into()],
            }
        );
    }

    #[test]
    fn two_nvlinked_a100s_are_one_sxm_a100_80g_type() {
        let csv = "0, NVIDIA A100-SXM4-80GB, GPU-a, 81920, 0, 550.54, 00000000:07:00.0, 8.0, 400.00\n\
                   1, NVIDIA A100-SXM4-80GB, GPU-b, 81920, 0, 550.54, 00000000:0F:00.0, 8.0, 400.00\n";
        let spec = build_spec(&host(csv, TOPO_2X_NVLINK)).unwrap();
        assert_eq!(spec.gpu_type, "A100_80G");
        assert_eq!(spec.num_gpus, 2);
        assert_eq!(spec.vram_per_gpu_in_gb, 80);
        assert_eq!(spec.interconnect, "sxm");
        assert!(spec.nvlink);
        assert_eq!(spec.gpu_manufacturer, "nvidia");
    }

    #[test]
    fn mixed_gpu_models_are_an_error_naming_both_models() {
        let csv = "0, NVIDIA A100-SXM4-40GB, GPU-a, 40960, 0, 550.54, 00000000:07:00.0, 8.0, 400.00\n\
                   1, NVIDIA A100-SXM4-80GB, GPU-b, 81920, 0, 550.54, 00000000:0F:00.0, 8.0, 400.00\n";
        let err = build_spec(&host(csv, TOPO_2X_NVLINK)).unwrap_err();
        assert_eq!(err.command(), GPU_QUERY);
        assert!(
            err.reason()
                .contains("NVIDIA A100-SXM4-40GB, NVIDIA A100-SXM4-80GB"),
            "{err}"
        );
    }

    #[test]
    fn variants_of_one_type_advertise_the_smallest_memory() {
        let csv =
            "0, NVIDIA H100 80GB HBM3, GPU-a, 81559, 0, 580.1, 00000000:07:00.0, 9.0, 700.00\n\
                   1, NVIDIA H100 PCIe, GPU-b, 81000, 0, 580.1, 00000000:0F:00.0, 9.0, 350.00\n";
        let spec = build_spec(&host(csv, TOPO_2X_NVLINK)).unwrap();
        assert_eq!(spec.gpu_type, "H100");
        assert_eq!(spec.vram_per_gpu_in_gb, 80);
    }

    #[test]
    fn a_gpu_host_with_unreadable_topology_is_an_error() {
        let csv = "0, NVIDIA L4, GPU-a, 23034, 0, 550.54, 00000000:07:00.0, 8.9, 72.00\n";
        let err = build_spec(&host(csv, "")).unwrap_err();
        assert_eq!(err.command(), crate::TOPO_QUERY);
    }

    #[test]
    fn an_unreadable_os_release_is_an_error_rather_than_a_default() {
        let mut out = host("", "");
        out.os_release = "cat: /etc/os-release: No such file or directory\n";
        assert_eq!(build_spec(&out).unwrap_err().command(), OS_RELEASE);
    }

    #[test]
    fn memory_rounds_to_the_nearest_gib_and_storage_rounds_down() {
        let mut out = host("", "");
        let free = format!("total\nMem: {}\n", 3 * GIB / 2);
        let df = format!(
            "Filesystem 1B-blocks Used Available\n/dev/x {} 0 0\n",
            2 * GIB - 1
        );
        out.free = &free;
        out.df = &df;
        let spec = build_spec(&out).unwrap();
        assert_eq!(spec.memory_in_gb, 2);
        assert_eq!(spec.storage_in_gb, 1);
    }

    #[test]
    fn sizes_beyond_32_bits_of_gib_are_an_error() {
        let mut out = host("", "");
        let free = format!("total\nMem: {}\n", u64::MAX);
        out.free = &free;
        assert_eq!(build_spec(&out).unwrap_err().command(), FREE);
    }

    #[test]
    fn os_options_are_the_lowercase_id_followed_by_the_version() {
        let os = |id: &str, version_id: &str| OsRelease {
            id: id.into(),
            version_id: version_id.into(),
            pretty_name: String::new(),
        };
        assert_eq!(os_options(&os("ubuntu", "24.04"), true), ["ubuntu24.04"]);
        assert_eq!(os_options(&os("ubuntu", "24.04"), false), ["ubuntu24.04"]);
        assert_eq!(os_options(&os("debian", "12"), false), ["debian12"]);
        assert_eq!(
            os_options(&os("Rocky Linux", "9.4"), true),
            ["rockylinux9.4"]
        );
        assert_eq!(os_options(&os("arch", ""), false), ["arch"]);
        assert_eq!(os_options(&os("", "1"), false), ["linux1"]);
    }

    /// xorshift64*: a fixed-seed generator keeps the crate free of
    /// dependencies and the test reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Builds text from fragments the parsers look for, so random inputs
    /// reach deep into each parser rather than failing on the first byte.
    fn random_text(rng: &mut Rng) -> String {
        const PIECES: [&str; 40] = [
            "0",
            "1",
            "9",
            "143771",
            "18446744073709551616",
            ",",
            ", ",
            "\t",
            "\n",
            "\r\n",
            " ",
            "GPU",
            "GPU0",
            "GPU1",
            "NV",
            "NV18",
            " X ",
            "Legend:",
            "Mem:",
            "CPU(s):",
            ":",
            "=",
            "\"",
            "'",
            "\\",
            "\u{1b}",
            "\u{1b}[4m",
            "[N/A]",
            "é",
            "🦀",
            "NVIDIA",
            "RTX",
            "A100",
            "80GB",
            "-",
            "Filesystem",
            "ID",
            "VERSION_ID",
            "#",
            "NaN",
        ];
        let len = rng.below(60);
        (0..len).map(|_| PIECES[rng.below(PIECES.len())]).collect()
    }

    #[test]
    fn arbitrary_text_never_panics_any_parser() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let texts: Vec<String> = (0..6).map(|_| random_text(&mut rng)).collect();
            let _ = parse_gpu_query(&texts[0]);
            let _ = parse_topology(&texts[1]);
            let _ = parse_lscpu(&texts[2]);
            let _ = parse_free_bytes(&texts[3]);
            let _ = parse_df_bytes(&texts[4]);
            let _ = os_options(&parse_os_release(&texts[5]), true);
            let _ = normalize_gpu_type(&texts[0]);
            let _ = build_spec(&DiscoveryOutput {
                gpu_query: &texts[0],
                topo: &texts[1],
                lscpu: &texts[2],
                free: &texts[3],
                df: &texts[4],
                os_release: &texts[5],
            });
        }
    }

    #[test]
    fn truncating_valid_output_at_any_point_never_panics() {
        let csv = "0, NVIDIA H200, GPU-b29, 143771, 0, 580.159.04, 00000000:00:06.0, 9.0, 700.00\n";
        let inputs = [csv, TOPO_2X_NVLINK, LSCPU_16, FREE_128G, DF_252G, UBUNTU];
        for text in inputs {
            for (cut, _) in text.char_indices() {
                let part = &text[..cut];
                let _ = build_spec(&DiscoveryOutput {
                    gpu_query: part,
                    topo: part,
                    lscpu: part,
                    free: part,
                    df: part,
                    os_release: part,
                });
                let _ = parse_topology(part);
                let _ = parse_free_bytes(part);
                let _ = parse_df_bytes(part);
                let _ = parse_lscpu(part);
            }
        }
    }
}
