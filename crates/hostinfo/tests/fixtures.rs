//! Checks the parsers against output captured on real GPU servers
//! (`tests/fixtures/hosts/<host>/`, each with a README saying where and how).

use parasol_hostinfo::{
    build_spec, parse_gpu_query, parse_lscpu, parse_os_release, parse_topology, DiscoveryOutput,
    HostSpec,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hosts");

/// The captured output of one host, read at run time so a missing fixture
/// fails with its path rather than breaking the build.
struct Capture {
    gpu_query: String,
    topo: String,
    lscpu: String,
    host: Vec<(String, String)>,
}

impl Capture {
    fn load(host: &str) -> Self {
        let read = |file: &str| {
            let path = format!("{FIXTURES}/{host}/{file}");
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
        };
        Capture {
            gpu_query: read("nvidia-smi-query.csv"),
            topo: read("nvidia-smi-topo.txt"),
            lscpu: read("lscpu.txt"),
            host: sections(&read("host.txt")),
        }
    }

    fn section(&self, name: &str) -> &str {
        self.host
            .iter()
            .find(|(title, _)| title == name)
            .map(|(_, body)| body.as_str())
            .unwrap_or_else(|| panic!("host.txt has no `## {name}` section"))
    }

    fn output(&self) -> DiscoveryOutput<'_> {
        DiscoveryOutput {
            gpu_query: &self.gpu_query,
            topo: &self.topo,
            lscpu: &self.lscpu,
            free: self.section("free -b"),
            df: self.section("df -B1 /"),
            os_release: self.section("os-release"),
        }
    }
}

/// Splits host.txt, where each command's output follows a `## <command>`
/// line, into (command, output) pairs in file order.
fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            out.push((title.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

#[test]
fn the_section_splitter_keeps_every_section_including_empty_ones() {
    let parts = sections("## a\n1\n2\n## b\n## c\nx\n");
    assert_eq!(
        parts,
        [
            ("a".to_owned(), "1\n2\n".to_owned()),
            ("b".to_owned(), String::new()),
            ("c".to_owned(), "x\n".to_owned()),
        ]
    );
}

#[test]
fn h200_fixture_yields_one_h200_with_141_gb() {
    let capture = Capture::load("nvidia-h200-x1");
    let spec = build_spec(&capture.output()).unwrap();
    assert_eq!(
        spec,
        HostSpec {
            gpu_type: "H200".into(),
            num_gpus: 1,
            vram_per_gpu_in_gb: 141,
            vcpus: 16,
            memory_in_gb: 126,
            storage_in_gb: 251,
            interconnect: "pcie".into(),
            nvlink: false,
            gpu_manufacturer: "nvidia".into(),
            os_options: vec!["ubuntu24.04".into()],
        }
    );
}

#[test]
fn h100_fixture_yields_one_h100_with_80_gb() {
    let capture = Capture::load("nvidia-h100-x1");
    let spec = build_spec(&capture.output()).unwrap();
    assert_eq!(
        spec,
        HostSpec {
            gpu_type: "H100".into(),
            num_gpus: 1,
            vram_per_gpu_in_gb: 80,
            vcpus: 16,
            memory_in_gb: 126,
            storage_in_gb: 251,
            interconnect: "pcie".into(),
            nvlink: false,
            gpu_manufacturer: "nvidia".into(),
            os_options: vec!["ubuntu24.04".into()],
        }
    );
}

#[test]
fn h200_fixture_gpu_row_carries_the_raw_nvidia_smi_values() {
    let capture = Capture::load("nvidia-h200-x1");
    let gpus = parse_gpu_query(&capture.gpu_query).unwrap();
    assert_eq!(gpus.len(), 1);
    let gpu = &gpus[0];
    assert_eq!(gpu.index, 0);
    assert_eq!(gpu.name, "NVIDIA H200");
    assert_eq!(gpu.uuid, "GPU-b2908912-5b90-2eb5-b54b-e3985c245af4");
    assert_eq!(gpu.memory_total_mib, 143771);
    assert_eq!(gpu.memory_used_mib, Some(0));
    assert_eq!(gpu.driver_version, "580.159.04");
    assert_eq!(gpu.pci_bus_id, "00000000:00:06.0");
    assert_eq!(gpu.compute_cap, "9.0");
    assert_eq!(gpu.power_limit_watts, Some(700.0));
}

#[test]
fn h100_fixture_gpu_is_named_h100_80gb_hbm3_with_81559_mib() {
    let capture = Capture::load("nvidia-h100-x1");
    let gpus = parse_gpu_query(&capture.gpu_query).unwrap();
    assert_eq!(gpus.len(), 1);
    assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
    assert_eq!(gpus[0].memory_total_mib, 81559);
}

#[test]
fn fixture_topologies_with_underlined_headers_are_single_gpu_pcie() {
    for host in ["nvidia-h200-x1", "nvidia-h100-x1"] {
        let capture = Capture::load(host);
        assert!(
            capture.topo.contains('\u{1b}'),
            "{host} fixture lost its escape codes"
        );
        let topo = parse_topology(&capture.topo).unwrap();
        assert!(!topo.nvlink, "{host}");
        assert_eq!(topo.interconnect, "pcie", "{host}");
    }
}

#[test]
fn fixture_lscpu_agrees_with_the_captured_nproc() {
    for host in ["nvidia-h200-x1", "nvidia-h100-x1"] {
        let capture = Capture::load(host);
        let cpu = parse_lscpu(&capture.lscpu).unwrap();
        let nproc: u32 = capture.section("nproc").trim().parse().unwrap();
        assert_eq!(cpu.vcpus, nproc, "{host}");
        assert_eq!(cpu.model_name, "Intel(R) Xeon(R) Processor");
        assert_eq!(cpu.architecture, "x86_64");
        assert_eq!(cpu.sockets, Some(1));
        assert_eq!(cpu.threads_per_core, Some(1));
    }
}

#[test]
fn fixture_os_release_is_ubuntu_24_04() {
    let capture = Capture::load("nvidia-h200-x1");
    let os = parse_os_release(capture.section("os-release"));
    assert_eq!(os.id, "ubuntu");
    assert_eq!(os.version_id, "24.04");
    assert_eq!(os.pretty_name, "Ubuntu 24.04.3 LTS");
}

#[test]
fn fixture_output_cut_at_any_character_never_panics() {
    let capture = Capture::load("nvidia-h200-x1");
    let full = capture.output();
    let fields = [
        full.gpu_query,
        full.topo,
        full.lscpu,
        full.free,
        full.df,
        full.os_release,
    ];
    for (which, text) in fields.iter().enumerate() {
        for (cut, _) in text.char_indices() {
            let mut parts = fields;
            parts[which] = &text[..cut];
            let _ = build_spec(&DiscoveryOutput {
                gpu_query: parts[0],
                topo: parts[1],
                lscpu: parts[2],
                free: parts[3],
                df: parts[4],
                os_release: parts[5],
            });
        }
    }
}
