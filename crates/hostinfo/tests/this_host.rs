//! Runs the real discovery commands on the machine running the tests, which
//! has no GPU, to catch formats the captured fixtures do not cover (other
//! distributions, other util-linux and procps versions).

use std::process::Command;

use parasol_hostinfo::{build_spec, DiscoveryOutput, DF, FREE, LSCPU, OS_RELEASE};

/// Runs a command line the way Parasol's SSH session would, forcing the C
/// locale because the parsers read English labels.
fn run(command_line: &str) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(command_line)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{command_line}`: {e}"));
    assert!(
        output.status.success(),
        "`{command_line}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("command output is UTF-8")
}

#[test]
fn this_machine_without_gpus_is_described_as_a_cpu_host() {
    let lscpu = run(LSCPU);
    let free = run(FREE);
    let df = run(DF);
    let os_release = run(OS_RELEASE);
    let spec = build_spec(&DiscoveryOutput {
        gpu_query: "",
        topo: "",
        lscpu: &lscpu,
        free: &free,
        df: &df,
        os_release: &os_release,
    })
    .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(spec.num_gpus, 0);
    assert_eq!(spec.gpu_type, "none");
    assert_eq!(spec.gpu_manufacturer, "none");
    assert!(spec.memory_in_gb > 0, "{spec:?}");
    assert!(spec.storage_in_gb > 0, "{spec:?}");
    assert_eq!(spec.os_options.len(), 1);

    // lscpu counts every CPU present while the other two count the CPUs
    // this process may use (cgroup quota, affinity), so in a container
    // they can differ; any of them is an honest answer.
    let available = std::thread::available_parallelism().map_or(0, |n| n.get() as u32);
    let nproc: u32 = run("nproc").trim().parse().unwrap();
    let nproc_all: u32 = run("nproc --all").trim().parse().unwrap();
    assert!(
        [available, nproc, nproc_all].contains(&spec.vcpus),
        "lscpu says {} vCPUs; available_parallelism {available}, nproc {nproc}, nproc --all {nproc_all}",
        spec.vcpus
    );
}
