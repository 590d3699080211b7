//! The machine side of the agent, run for real: the POSIX `sh` agent under
//! `dash`, and its installer as `GET /agent/install.sh` serves it, against
//! a real Parasol server.
//!
//! What the agent reads on a GPU machine is stood in for by executables on
//! its `PATH`: an `nvidia-smi` that answers the agent's query with the
//! figures of a real H100 or H200 (read from the `nvidia-smi -q` output in
//! `crates/hostinfo/tests/fixtures/hosts`), and a `dmesg` printing a kernel
//! log with an NVRM Xid line. The stand-in `nvidia-smi` answers only the
//! query NVIDIA documents for those fields, so an agent asking for a
//! misspelt field gets nvidia-smi's error, as it would on a machine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Opts, Server};

/// Writes an executable file.
pub(crate) fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Stops the background agent installed in a directory when dropped, so a
/// failing test leaves no agent running.
pub(crate) struct StopAgent(pub PathBuf);

impl Drop for StopAgent {
    fn drop(&mut self) {
        let stop = self.0.join("stop");
        if stop.exists() {
            let _ = Command::new("sh").arg(stop).status();
        }
    }
}

/// The per-GPU figures the agent reports, as one real GPU showed them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GpuFacts {
    pub bus_id: String,
    pub utilization_percent: f64,
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    pub temperature_c: f64,
    pub power_w: f64,
    pub ecc_uncorrectable: u64,
}

/// A fixture host's directory: real output of one machine.
fn fixture_dir(host: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hostinfo/tests/fixtures/hosts")
        .join(host)
}

/// The figures of the GPU of a fixture host (`nvidia-h100-x1`,
/// `nvidia-h200-x1`), read from its `nvidia-smi -q -x` output.
pub(crate) fn fixture_gpu(host: &str) -> GpuFacts {
    let path = fixture_dir(host).join("nvidia-smi-q.xml");
    let xml = std::fs::read_to_string(&path).unwrap();
    // nvidia-smi's XML names its DTD.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&xml, options).unwrap();
    let gpu = doc
        .descendants()
        .find(|n| n.has_tag_name("gpu"))
        .expect("a <gpu>");
    fn child<'a, 'i>(parent: roxmltree::Node<'a, 'i>, name: &str) -> roxmltree::Node<'a, 'i> {
        parent
            .children()
            .find(|n| n.has_tag_name(name))
            .unwrap_or_else(|| panic!("no <{name}> in the fixture"))
    }
    // "81559 MiB", "38 C", "109.90 W", "0 %": the number before the unit.
    let number = |parent: roxmltree::Node, name: &str| -> f64 {
        let text = child(parent, name).text().unwrap_or("").trim().to_string();
        text.split_whitespace().next().unwrap().parse().unwrap()
    };
    let memory = child(gpu, "fb_memory_usage");
    let volatile = child(child(gpu, "ecc_errors"), "volatile");
    GpuFacts {
        bus_id: child(child(gpu, "pci"), "pci_bus_id")
            .text()
            .unwrap()
            .to_string(),
        utilization_percent: number(child(gpu, "utilization"), "gpu_util"),
        memory_used_mib: number(memory, "used") as u64,
        memory_total_mib: number(memory, "total") as u64,
        temperature_c: number(child(gpu, "temperature"), "gpu_temp"),
        // power.draw is the one-second average on Ampere and newer.
        power_w: number(child(gpu, "gpu_power_readings"), "average_power_draw"),
        // ecc.errors.uncorrected.volatile.total: every volatile
        // uncorrectable counter together.
        ecc_uncorrectable: volatile
            .children()
            .filter(|n| n.is_element() && n.tag_name().name().contains("uncorrectable"))
            .map(|n| n.text().unwrap_or("0").trim().parse::<u64>().unwrap())
            .sum(),
    }
}

/// The query the agent must make: the fields as NVIDIA's `nvidia-smi
/// --help-query-gpu` names them.
const QUERY: &str = "--query-gpu=index,pci.bus_id,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,ecc.errors.uncorrected.volatile.total";

/// Puts a stand-in `nvidia-smi` for `gpus` and a `dmesg` printing
/// `kernel_log` (a file, so a test can add lines) into `bin`. With
/// `discovery` (a fixture host), the stand-in also answers Parasol's
/// hardware discovery (`parasol_hostinfo::GPU_QUERY`, `TOPO_QUERY`) with
/// that host's real output, so the hosts provider sells it as that GPU.
pub(crate) fn stand_ins(bin: &Path, gpus: &[GpuFacts], kernel_log: &Path, discovery: Option<&str>) {
    std::fs::create_dir_all(bin).unwrap();
    let mut csv = String::new();
    for (i, g) in gpus.iter().enumerate() {
        csv.push_str(&format!(
            "{i}, {}, {}, {}, {}, {}, {:.2}, {}\n",
            g.bus_id,
            g.utilization_percent,
            g.memory_used_mib,
            g.memory_total_mib,
            g.temperature_c,
            g.power_w,
            g.ecc_uncorrectable
        ));
    }
    std::fs::write(bin.join("nvidia-smi.csv"), csv).unwrap();
    let mut answers = format!(
        "if [ \"$*\" = '{QUERY} --format=csv,noheader,nounits' ]; then exec cat \"$D/nvidia-smi.csv\"; fi\n"
    );
    if let Some(host) = discovery {
        let fixture = fixture_dir(host);
        for (query, file) in [
            (parasol_hostinfo::GPU_QUERY, "nvidia-smi-query.csv"),
            (parasol_hostinfo::TOPO_QUERY, "nvidia-smi-topo.txt"),
        ] {
            std::fs::copy(fixture.join(file), bin.join(file)).unwrap();
            let args = query.strip_prefix("nvidia-smi ").unwrap();
            answers.push_str(&format!(
                "if [ \"$*\" = '{args}' ]; then exec cat \"$D/{file}\"; fi\n"
            ));
        }
    }
    executable(
        &bin.join("nvidia-smi"),
        &format!(
            "#!/bin/sh\n\
             D=$(dirname \"$0\")\n\
             {answers}\
             echo \"stand-in nvidia-smi: unexpected arguments: $*\" >&2\n\
             exit 2\n"
        ),
    );
    executable(
        &bin.join("dmesg"),
        &format!("#!/bin/sh\nexec cat '{}'\n", kernel_log.display()),
    );
}

/// An Xid line as the NVIDIA driver writes it to the kernel log, for the
/// GPU at `bus_id` (`00000000:00:06.0` is logged as `PCI:0000:00:06`).
pub(crate) fn xid_line(uptime: &str, bus_id: &str, code: u32) -> String {
    let parts: Vec<&str> = bus_id.split(':').collect();
    let device = parts[2].split('.').next().unwrap();
    format!(
        "[{uptime}] NVRM: Xid (PCI:0000:{}:{device}): {code}, pid=0, name=python3, GPU has fallen off the bus.\n",
        parts[1]
    )
}

fn dash_n(path: &Path) {
    let out = Command::new("dash").arg("-n").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "dash -n {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_installer_is_served_without_a_key_and_parses_under_dash() {
    let s = Server::start(Opts::default());
    let anonymous = reqwest::Client::new();
    let r = anonymous
        .get(format!("{}/agent/install.sh", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/x-shellscript"));
    let text = r.text().await.unwrap();
    assert!(text.starts_with("#!/bin/sh\n"));
    assert!(
        text.contains("nvidia-smi --query-gpu="),
        "the agent is inside"
    );
    assert!(!text.contains("@@PARASOL_AGENT_SH@@"));
    let dir = tempfile::tempdir().unwrap();
    let installer = dir.path().join("install.sh");
    std::fs::write(&installer, &text).unwrap();
    dash_n(&installer);
    // Without its settings it refuses, naming the one missing, and
    // installs nothing.
    let out = Command::new("dash")
        .arg(&installer)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.path())
        .env("PARASOL_AGENT_DIR", dir.path().join("agent"))
        .env("PARASOL_URL", &s.base)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PARASOL_AGENT_TOKEN is not set"));
    assert!(!dir.path().join("agent").exists());
}

#[test]
fn the_fixture_gpus_read_as_nvidia_smi_showed_them() {
    let h100 = fixture_gpu("nvidia-h100-x1");
    assert_eq!(h100.bus_id, "00000000:00:06.0");
    assert_eq!(h100.memory_total_mib, 81559);
    assert_eq!(h100.temperature_c, 38.0);
    assert_eq!(h100.power_w, 109.90);
    let h200 = fixture_gpu("nvidia-h200-x1");
    assert_eq!(h200.memory_total_mib, 143771);
    assert_eq!(h200.temperature_c, 40.0);
    assert_eq!(
        xid_line("12.5", &h100.bus_id, 79),
        "[12.5] NVRM: Xid (PCI:0000:00:06): 79, pid=0, name=python3, GPU has fallen off the bus.\n"
    );
}

/// The agent script itself, for tests that run it directly.
pub(crate) fn agent_script(dir: &Path) -> PathBuf {
    let path = dir.join("parasol-agent.sh");
    std::fs::write(&path, parasol::agent::machine::AGENT_SH).unwrap();
    dash_n(&path);
    path
}

/// What a stand-in Parasol received: the `Authorization` header and the
/// body of each report, answered with the status codes queued in
/// `answers` (204 once they run out).
#[derive(Default)]
struct Recorder {
    reports: Vec<(String, serde_json::Value)>,
    answers: Vec<u16>,
}

type Shared = std::sync::Arc<std::sync::Mutex<Recorder>>;

async fn record(
    axum::extract::State(r): axum::extract::State<Shared>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let mut r = r.lock().unwrap();
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/json",
        "reports are JSON"
    );
    let body = serde_json::from_slice(&body).expect("the report is JSON");
    r.reports.push((auth, body));
    let code = if r.answers.is_empty() {
        204
    } else {
        r.answers.remove(0)
    };
    axum::http::StatusCode::from_u16(code).unwrap()
}

/// A server that records reports at `/v1/agent/report`; its base URL.
async fn recorder() -> (String, Shared) {
    let shared: Shared = Default::default();
    let app = axum::Router::new()
        .route("/v1/agent/report", axum::routing::post(record))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

/// A figure as JSON writes it at its shortest (38, not 38.0), as the agent
/// does.
fn num(x: f64) -> serde_json::Value {
    serde_json::from_str(&x.to_string()).unwrap()
}

/// One run of the agent under dash in its one-report mode.
fn run_once(agent: &Path, bin: &Path, state: &Path, url: &str, id: &str) -> std::process::Output {
    Command::new("dash")
        .arg(agent)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", state)
        .env("PARASOL_URL", url)
        .env("PARASOL_AGENT_TOKEN", "pa_test-token")
        .env("PARASOL_INSTANCE_ID", id)
        .env("PARASOL_AGENT_STATE", state)
        .env("PARASOL_AGENT_ONCE", "1")
        .output()
        .unwrap()
}

// Two threads: the agent runs as a blocking child process while the
// recorder answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_under_dash_posts_the_contracts_report_with_the_fixture_numbers() {
    let (url, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = agent_script(dir.path());
    let bin = dir.path().join("bin");
    let state = dir.path().join("state");
    let kernel_log = dir.path().join("kmsg");
    let h100 = fixture_gpu("nvidia-h100-x1");
    std::fs::write(
        &kernel_log,
        format!(
            "[    5.000000] nvidia: loading out-of-tree module\n{}",
            xid_line("  812.345678", &h100.bus_id, 79)
        ),
    )
    .unwrap();
    stand_ins(&bin, std::slice::from_ref(&h100), &kernel_log, None);
    // Two interactive sessions (one by OpenSSH 9.8's process name), and
    // an sshd privilege-separation process and a session without a
    // terminal, which are not interactive.
    executable(
        &bin.join("ps"),
        "#!/bin/sh\nprintf '%s\\n' '/sbin/init' 'sshd: alice@pts/0' 'sshd-session: bob@pts/1' 'sshd: alice [priv]' 'sshd: carol@notty'\n",
    );
    let id = uuid::Uuid::new_v4().to_string();
    let before = chrono::Utc::now().timestamp();

    let out = run_once(&agent, &bin, &state, &url, &id);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (auth, first) = rec.lock().unwrap().reports[0].clone();
    assert_eq!(auth, "Bearer pa_test-token");
    let seq1 = first["seq"].as_i64().unwrap();
    assert!(seq1 >= before, "seq starts from the clock: {seq1}");
    assert!(first["uptime_s"].as_u64().unwrap() > 0);
    assert_eq!(
        first,
        serde_json::json!({
            "instance_id": id, "seq": seq1, "agent_version": "1",
            "uptime_s": first["uptime_s"], "ssh_sessions": 2,
            "gpus": [{"index": 0, "utilization_percent": num(h100.utilization_percent),
                      "memory_used_mib": h100.memory_used_mib,
                      "memory_total_mib": h100.memory_total_mib,
                      "temperature_c": num(h100.temperature_c), "power_w": num(h100.power_w),
                      "ecc_uncorrectable": h100.ecc_uncorrectable, "xid": [79]}]
        })
    );

    // The Xid was reported: the next report has none, and a higher seq.
    let out = run_once(&agent, &bin, &state, &url, &id);
    assert!(out.status.success());
    let second = rec.lock().unwrap().reports[1].1.clone();
    assert!(second["seq"].as_i64().unwrap() > seq1);
    assert_eq!(second["gpus"][0]["xid"], serde_json::json!([]));

    // New lines: an Xid on this GPU and one on a bus nvidia-smi no longer
    // lists (the GPU fell off it), which goes to the first GPU.
    let mut log = std::fs::read_to_string(&kernel_log).unwrap();
    log.push_str(&xid_line("  900.000000", &h100.bus_id, 48));
    log.push_str(&xid_line("  901.000000", "00000000:3b:00.0", 79));
    std::fs::write(&kernel_log, log).unwrap();
    // Parasol refuses this one (a replay, say): the agent says why and
    // fails this run; the next report carries a higher seq.
    rec.lock().unwrap().answers.push(409);
    let out = run_once(&agent, &bin, &state, &url, &id);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("report refused (409)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = rec.lock().unwrap().reports.clone();
    assert_eq!(reports[2].1["gpus"][0]["xid"], serde_json::json!([48, 79]));
    assert!(reports[2].1["seq"].as_i64().unwrap() > reports[1].1["seq"].as_i64().unwrap());

    // nvidia-smi's N/A placeholders: null temperature and power, zero for
    // the rest; and nothing listens any more: the run fails, saying so.
    std::fs::write(
        bin.join("nvidia-smi.csv"),
        "0, 00000000:00:06.0, [N/A], 10, 81559, [N/A], [Not Supported], [N/A]\n",
    )
    .unwrap();
    let out = run_once(&agent, &bin, &state, &url, &id);
    assert!(out.status.success());
    let last = rec.lock().unwrap().reports[3].1.clone();
    assert_eq!(
        last["gpus"][0],
        serde_json::json!({"index": 0, "utilization_percent": 0, "memory_used_mib": 10,
            "memory_total_mib": 81559, "temperature_c": null, "power_w": null,
            "ecc_uncorrectable": 0, "xid": []})
    );
    let dead = format!("http://127.0.0.1:{}", crate::hosts::free_port());
    let out = run_once(&agent, &bin, &state, &dead, &id);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    // The token never reached a file anyone else may read.
    let mode = std::fs::metadata(state.join("auth.hdr"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[test]
fn the_agent_and_its_installer_pass_shellcheck_as_posix_sh() {
    let venv = std::env::var("PARASOL_TEST_VENV").unwrap_or_else(|_| {
        panic!("PARASOL_TEST_VENV is not set: run scripts/setup.sh and export PARASOL_TEST_VENV=$PWD/target/test-venv (scripts/test.sh does both)")
    });
    let dir = tempfile::tempdir().unwrap();
    let installer = dir.path().join("install.sh");
    std::fs::write(&installer, parasol::agent::machine::installer()).unwrap();
    let agent = agent_script(dir.path());
    let out = Command::new(format!("{venv}/bin/shellcheck"))
        .args(["--shell=sh", "--severity=style"])
        .arg(&agent)
        .arg(&installer)
        .output()
        .expect("shellcheck from scripts/requirements-test.txt");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A `bin` directory holding only the tools the agent uses, linked from
/// the system's, so no GPU tool of the machine running the tests is seen.
fn bare_bin(bin: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    for tool in [
        "awk", "cat", "cp", "curl", "cut", "date", "grep", "head", "mkdir", "mv", "ps", "rm",
        "sed", "sleep", "tail",
    ] {
        let found = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} is not installed"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_amd_gpus_the_agent_reads_rocm_smi_by_column_name() {
    let (url, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = agent_script(dir.path());
    let bin = dir.path().join("bin");
    bare_bin(&bin);
    // rocm-smi's CSV, with its column names, junction before edge, bytes,
    // and N/A where a board reports nothing.
    executable(
        &bin.join("rocm-smi"),
        "#!/bin/sh\n\
         [ \"$*\" = '--showuse --showmeminfo vram --showtemp --showpower --csv' ] || exit 2\n\
         echo 'device,Temperature (Sensor junction) (C),Temperature (Sensor edge) (C),Average Graphics Package Power (W),GPU use (%),VRAM Total Memory (B),VRAM Total Used Memory (B)'\n\
         echo 'card0,52.0,45.0,312.0,87,206141652992,1073741824'\n\
         echo 'card1,N/A,N/A,N/A,0,206141652992,0'\n",
    );
    // By its path: the child's PATH holds only `bin`.
    let dash = ["/usr/bin/dash", "/bin/dash"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dash is installed");
    let out = Command::new(dash)
        .arg(&agent)
        .env_clear()
        .env("PATH", &bin)
        .env("PARASOL_URL", &url)
        .env("PARASOL_AGENT_TOKEN", "pa_amd")
        .env("PARASOL_INSTANCE_ID", "i")
        .env("PARASOL_AGENT_STATE", dir.path().join("state"))
        .env("PARASOL_AGENT_ONCE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = rec.lock().unwrap().reports[0].1.clone();
    assert_eq!(
        report["gpus"],
        serde_json::json!([
            {"index": 0, "utilization_percent": 87, "memory_used_mib": 1024,
             "memory_total_mib": 196592, "temperature_c": 45, "power_w": 312,
             "ecc_uncorrectable": 0, "xid": []},
            {"index": 1, "utilization_percent": 0, "memory_used_mib": 0,
             "memory_total_mib": 196592, "temperature_c": null, "power_w": null,
             "ecc_uncorrectable": 0, "xid": []}
        ])
    );
    // Neither dmesg nor journalctl answered: said once, in the log.
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the kernel log"));
}

/// The whole way in, as an operator would take it by hand: `curl
/// {url}/agent/install.sh | ... dash`, the installed agent reporting to a
/// real Parasol every 2 s, its samples in `GET /v1/instances/{id}/metrics`
/// with the H200's figures, and a token refused once the instance is
/// deleted.
#[tokio::test]
async fn the_installed_agent_reports_an_h200_to_a_real_server_under_dash() {
    let s = Server::start(Opts {
        boot_seconds: 1.0,
        ..Opts::default()
    });
    let c = s.admin();
    let id = c.create_instance("watched").await;
    // The sim's own simulated agent keeps quiet from before the machine
    // runs (its seq, in milliseconds, would be above this agent's): this
    // one reports.
    c.post(
        "/admin/sim/agent",
        serde_json::json!({"instance_id": id, "reporting": false}),
    )
    .await
    .expect(200);
    c.wait_status(&id, "active").await;
    let quiet = c
        .get(&format!("/v1/instances/{id}/metrics"))
        .await
        .expect(200);
    assert!(quiet["agent"].is_null(), "{quiet:#}");
    let instance: uuid::Uuid = id.parse().unwrap();
    let token = parasol::agent::AgentKeys::load(&s.store().await)
        .await
        .unwrap()
        .token(instance);

    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let kmsg = dir.path().join("kmsg");
    let h200 = fixture_gpu("nvidia-h200-x1");
    std::fs::write(&kmsg, xid_line("  3.141592", &h200.bus_id, 79)).unwrap();
    stand_ins(&bin, std::slice::from_ref(&h200), &kmsg, None);
    executable(
        &bin.join("ps"),
        "#!/bin/sh\nprintf '%s\\n' 'sshd-session: alice@pts/3'\n",
    );
    let agent_dir = dir.path().join("agent");
    let _stop = StopAgent(agent_dir.clone());
    let install = || {
        Command::new("dash")
            .arg("-c")
            .arg(format!("curl -fsS {}/agent/install.sh | dash", s.base))
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", dir.path())
            .env("PARASOL_URL", &s.base)
            .env("PARASOL_AGENT_TOKEN", token.expose())
            .env("PARASOL_INSTANCE_ID", &id)
            .env("PARASOL_AGENT_INTERVAL", "2")
            .env("PARASOL_AGENT_DIR", &agent_dir)
            .env("PARASOL_AGENT_SYSTEMD", "no")
            .output()
            .unwrap()
    };
    let out = install();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("running in the background"));
    let env = std::fs::read_to_string(agent_dir.join("env")).unwrap();
    assert!(env.contains("PARASOL_AGENT_INTERVAL='2'"), "{env}");

    let metrics = crate::hosts::wait_samples(&c, &id, 2).await;
    assert_eq!(metrics["instance_id"], id.as_str());
    assert_eq!(metrics["agent"]["version"], "1");
    let samples = metrics["samples"].as_array().unwrap();
    for sample in samples {
        assert_eq!(sample["ssh_sessions"], 1);
        let g = &sample["gpus"][0];
        assert_eq!(sample["gpus"].as_array().unwrap().len(), 1);
        assert_eq!(g["memory_total_mib"], h200.memory_total_mib);
        assert_eq!(g["memory_used_mib"], h200.memory_used_mib);
        assert_eq!(
            g["utilization_percent"].as_f64(),
            Some(h200.utilization_percent)
        );
        assert_eq!(g["temperature_c"].as_f64(), Some(h200.temperature_c));
        assert_eq!(g["power_w"].as_f64(), Some(h200.power_w));
        assert_eq!(g["ecc_uncorrectable"], h200.ecc_uncorrectable);
    }
    assert_eq!(samples[0]["gpus"][0]["xid"], serde_json::json!([79]));
    assert_eq!(samples[1]["gpus"][0]["xid"], serde_json::json!([]));

    // Installing again replaces the running agent: one agent, a new pid.
    let first_pid = std::fs::read_to_string(agent_dir.join("pid")).unwrap();
    let again = install();
    assert!(again.status.success());
    let second_pid = std::fs::read_to_string(agent_dir.join("pid")).unwrap();
    assert_ne!(first_pid, second_pid);
    assert!(
        !Path::new(&format!("/proc/{}", first_pid.trim())).exists()
            || !String::from_utf8_lossy(
                &std::fs::read(format!("/proc/{}/cmdline", first_pid.trim())).unwrap_or_default()
            )
            .contains("parasol-agent"),
        "the first agent stopped"
    );

    // Deleted, the instance's token is revoked: the agent is refused, says
    // so, and goes on trying.
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(agent_dir.join("log")).unwrap_or_default();
        if log.contains("report refused (401)") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
