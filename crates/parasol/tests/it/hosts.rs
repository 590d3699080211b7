//! The hosts provider against a real `sshd` on 127.0.0.1.
//!
//! Each test starts its own OpenSSH server (`/usr/sbin/sshd`, installed by
//! `.ci/run`) on a free port, with a fresh host key, and logs in as the user
//! running the tests (root in CI). The server is pointed at files in the
//! test's temporary directory, so no test touches the machine's real
//! accounts:
//! - `AuthorizedKeysFile` lists `<home>/.ssh/authorized_keys` (where
//!   Parasol installs renters' keys) and a separate file holding only the
//!   management key;
//! - `SetEnv HOME=<home>` makes that temporary directory the login's home,
//!   so Parasol's `$HOME/.ssh/authorized_keys` and `$HOME/.parasol` are the
//!   test's own files;
//! - `SetEnv PATH=<dir>/bin:/usr/bin:/bin:/usr/sbin:/sbin` keeps tools
//!   installed under `/usr/local` (such as a `docker` CLI on a developer
//!   machine) out of the sessions, so what the host "has" is the same
//!   everywhere, and lets a test give the host stand-ins (an `nvidia-smi`)
//!   in `<dir>/bin` ([`Sshd::bin`]);
//! - `StrictModes no`, since the files live under the world-writable `/tmp`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{Client, Opts, Server};

/// An OpenSSH server of one test's own (the conformance suite uses it too).
pub(crate) struct Sshd {
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) user: String,
    child: Option<Child>,
}

impl Sshd {
    pub(crate) fn start() -> Sshd {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let user = String::from_utf8(run(Command::new("id").arg("-un")).stdout)
            .unwrap()
            .trim()
            .to_string();
        let mut s = Sshd {
            dir,
            port,
            user,
            child: None,
        };
        keygen(&s.path("host_key"));
        keygen(&s.path("mgmt_key"));
        std::fs::create_dir_all(s.home().join(".ssh")).unwrap();
        std::fs::create_dir_all(s.bin()).unwrap();
        std::fs::copy(s.path("mgmt_key.pub"), s.path("mgmt_authorized_keys")).unwrap();
        let host_pub = std::fs::read_to_string(s.path("host_key.pub")).unwrap();
        std::fs::write(
            s.path("known_hosts"),
            format!("[127.0.0.1]:{} {}", s.port, host_pub),
        )
        .unwrap();
        std::fs::write(
            s.path("sshd_config"),
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {hk}\n\
                 PidFile none\n\
                 AuthorizedKeysFile {home}/.ssh/authorized_keys {mgmt}\n\
                 StrictModes no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 SetEnv HOME={home} PATH={bin}:/usr/bin:/bin:/usr/sbin:/sbin\n",
                port = s.port,
                hk = s.path("host_key").display(),
                home = s.home().display(),
                mgmt = s.path("mgmt_authorized_keys").display(),
                bin = s.bin().display(),
            ),
        )
        .unwrap();
        s.resume();
        s
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The login's home as its sessions see it.
    fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// The first directory of the sessions' `PATH`: stand-ins for the
    /// host's tools go here.
    pub(crate) fn bin(&self) -> PathBuf {
        self.path("bin")
    }

    pub(crate) fn authorized_keys(&self) -> String {
        std::fs::read_to_string(self.home().join(".ssh/authorized_keys")).unwrap_or_default()
    }

    /// Starts (again) on the same port with the same host key.
    fn resume(&mut self) {
        // sshd refuses to start as root without its privilege-separation
        // directory, which a fresh container may lack.
        std::fs::create_dir_all("/run/sshd").ok();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("sshd.log"))
            .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd (.ci/run installs openssh-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen; log:\n{}",
                std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops listening; sessions already open end too.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// The config file of a Parasol serving this host, with `known_hosts`
    /// as the file its key is checked against.
    pub(crate) fn parasol_config(&self, known_hosts: &Path, port: u16) -> PathBuf {
        let path = self.path("parasol.toml");
        std::fs::write(
            &path,
            format!(
                "[[hosts]]\n\
                 address = \"127.0.0.1\"\n\
                 port = {port}\n\
                 user = \"{user}\"\n\
                 key_path = \"{key}\"\n\
                 known_hosts = \"{kh}\"\n\
                 region = \"lab\"\n\
                 region_display_name = \"The lab\"\n\
                 hourly_price = 125\n",
                user = self.user,
                key = self.path("mgmt_key").display(),
                kh = known_hosts.display(),
            ),
        )
        .unwrap();
        path
    }

    /// Parasol serving this host.
    fn parasol(&self) -> Server {
        let config = self.parasol_config(&self.path("known_hosts"), self.port);
        parasol_with(&config)
    }

    /// `ssh` into the host with `key`, checking the host key.
    fn ssh(&self, key: &Path, command: &str) -> Output {
        Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(key)
            .args(["-p", &self.port.to_string()])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.path("known_hosts").display()
            ))
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A renter's key pair; returns the private key's path and the public
    /// key line.
    fn user_key(&self, name: &str) -> (PathBuf, String) {
        let path = self.path(name);
        keygen(&path);
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        (path, public.trim().to_string())
    }

    /// Makes the renter's key pair and adds its public half to Parasol
    /// through `c`: the private key's path and the key's id.
    async fn add_renter_key(&self, c: &Client) -> (PathBuf, String) {
        let (path, public) = self.user_key("renter_key");
        let id = c
            .post(
                "/v1/sshkeys/add",
                json!({"name": "renter", "public_key": public}),
            )
            .await
            .expect(200)["id"]
            .as_str()
            .unwrap()
            .to_string();
        (path, id)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn parasol_with(config: &Path) -> Server {
    Server::start(Opts {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Opts::default()
    })
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path));
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The hosts offers in `/instances/types`.
async fn host_types(c: &Client) -> Vec<Value> {
    c.get("/v1/instances/types?cloud=hosts").await.expect(200)["instance_types"]
        .as_array()
        .unwrap()
        .clone()
}

/// The one host of `GET /admin/hosts`.
async fn host_status(c: &Client) -> Value {
    let body = c.get("/admin/hosts").await.expect(200);
    assert_eq!(body["hosts"].as_array().unwrap().len(), 1, "{body:#}");
    body["hosts"][0].clone()
}

/// Polls until `pred` holds on the instance's info.
async fn wait_for(c: &Client, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    c.wait_instance(id, what, |r| r.status == 200 && pred(&r.body))
        .await
        .body
}

/// Whether a process still runs; a killed process its parent never reaped
/// (a zombie) does not.
fn process_runs(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !state.is_some_and(|s| s.starts_with('Z'))
        }
    }
}

fn script_create(name: &str, shade_instance_type: &str, key_id: &str, script: &str) -> Value {
    json!({
        "cloud": "hosts",
        "region": "lab",
        "shade_instance_type": shade_instance_type,
        "shade_cloud": true,
        "name": name,
        "ssh_key_id": key_id,
        "launch_configuration": {
            "type": "script",
            "script_configuration": {
                "base64_script": base64::engine::general_purpose::STANDARD.encode(script),
            }
        },
        "envs": [{"name": "GREETING", "value": "hello from parasol"}],
    })
}

/// The one type the test host is offered as.
async fn the_type(c: &Client) -> String {
    let types = host_types(c).await;
    assert_eq!(types.len(), 1, "{types:#?}");
    types[0]["shade_instance_type"]
        .as_str()
        .unwrap()
        .to_string()
}

const OPERATOR_LINE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f operator";

#[tokio::test]
async fn a_renter_logs_into_the_host_with_their_own_key_until_the_instance_is_deleted() {
    let sshd = Sshd::start();
    // A key the operator put there; it must survive the rental.
    std::fs::write(
        sshd.home().join(".ssh/authorized_keys"),
        format!("{OPERATOR_LINE}\n"),
    )
    .unwrap();
    let s = sshd.parasol();
    let c = s.admin();
    let shade = the_type(&c).await;

    let (user_key, key_id) = sshd.add_renter_key(&c).await;
    let marker = sshd.path("marker");
    let pid_file = sshd.path("script.pid");
    let script = format!(
        "#!/bin/sh\necho \"$GREETING\" > {m}\necho $$ > {p}\nexec sleep 300\n",
        m = marker.display(),
        p = pid_file.display()
    );
    let id = c
        .post(
            "/v1/instances/create",
            script_create("rented", &shade, &key_id, &script),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();

    let active = c.wait_status(&id, "active").await;
    assert_eq!(active["ip"], "127.0.0.1");
    assert_eq!(active["ssh_port"], sshd.port);
    assert_eq!(active["ssh_user"], sshd.user.as_str());
    assert_eq!(
        active["cloud_assigned_id"],
        format!("127.0.0.1:{}", sshd.port)
    );
    assert!(active["status_details"].is_null(), "{active:#}");

    // The renter's own key logs in and sees what the script wrote.
    let out = sshd.ssh(&user_key, &format!("cat {}", marker.display()));
    assert!(
        out.status.success(),
        "renter login failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from parasol\n");
    let script_pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(process_runs(&script_pid), "the script is running");
    let keys = sshd.authorized_keys();
    assert!(keys.starts_with(OPERATOR_LINE), "{keys}");
    assert!(keys.contains(&format!("parasol-instance={id}")), "{keys}");

    // A whole host per instance: the one host is taken.
    let status = host_status(&c).await;
    assert_eq!(status["instance_id"], id.as_str());
    assert_eq!(status["reachable"], true);
    let err = c
        .post(
            "/v1/instances/create",
            script_create("second", &shade, &key_id, "true"),
        )
        .await
        .expect_error(409, "insufficient_capacity");
    assert!(err["message"].as_str().unwrap().contains(&shade), "{err}");

    // A restart runs the launch configuration again, in a new process.
    c.post_empty(&format!("/v1/instances/{id}/restart"))
        .await
        .expect(200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let restarted_pid = loop {
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let pid = pid.trim();
        if !pid.is_empty() && pid != script_pid {
            break pid.to_string();
        }
        assert!(Instant::now() < deadline, "the script was not run again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!process_runs(&script_pid), "the first run still runs");
    assert!(
        process_runs(&restarted_pid),
        "the second run is not running"
    );

    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;

    let out = sshd.ssh(&user_key, "true");
    assert!(!out.status.success(), "the renter's key still logs in");
    assert!(!process_runs(&restarted_pid), "the script still runs");
    assert_eq!(sshd.authorized_keys(), format!("{OPERATOR_LINE}\n"));
    assert!(
        !sshd.home().join(".parasol").exists(),
        "instance files left"
    );
    assert!(host_status(&c).await["instance_id"].is_null());
    let types = host_types(&c).await;
    assert_eq!(types[0]["availability"][0]["available"], true);
}

#[tokio::test]
async fn discovery_offers_this_gpu_less_machine_as_a_cpu_type() {
    let sshd = Sshd::start();
    let s = sshd.parasol();
    let c = s.admin();
    let types = host_types(&c).await;
    assert_eq!(types.len(), 1, "{types:#?}");
    let t = &types[0];
    let vcpus = std::thread::available_parallelism().unwrap().get();
    let cfg = &t["configuration"];
    assert_eq!(cfg["num_gpus"], 0);
    assert_eq!(cfg["gpu_type"], "none");
    assert_eq!(cfg["vram_per_gpu_in_gb"], 0);
    assert_eq!(cfg["gpu_manufacturer"], "none");
    assert!(cfg["vcpus"].as_i64().unwrap() >= 1);
    assert!(cfg["memory_in_gb"].as_i64().unwrap() >= 1, "{cfg}");
    assert!(cfg["storage_in_gb"].as_i64().unwrap() >= 1, "{cfg}");
    // The machine may hide CPUs from this process (cgroups), never add.
    assert!(cfg["vcpus"].as_i64().unwrap() as usize >= vcpus, "{cfg}");
    assert_eq!(
        t["shade_instance_type"],
        format!("CPUx{}", cfg["vcpus"].as_i64().unwrap())
    );
    let os_id = std::fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("ID=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap();
    assert!(
        cfg["os_options"][0].as_str().unwrap().starts_with(&os_id),
        "{cfg}"
    );
    assert_eq!(t["hourly_price"], 125);
    assert_eq!(t["deployment_type"], "baremetal");
    let a = &t["availability"][0];
    assert_eq!(a["region"], "lab");
    assert_eq!(a["display_name"], "The lab");
    assert_eq!(a["available"], true);
    let status = host_status(&c).await;
    assert_eq!(status["shade_instance_type"], t["shade_instance_type"]);
    assert!(status["detail"].is_null());
}

#[tokio::test]
async fn an_unreachable_host_is_reported_and_offers_nothing() {
    let sshd = Sshd::start();
    let closed = free_port();
    let config = sshd.parasol_config(&sshd.path("known_hosts"), closed);
    let s = parasol_with(&config);
    let c = s.admin();
    let status = host_status(&c).await;
    assert_eq!(status["reachable"], false);
    let detail = status["detail"].as_str().unwrap();
    assert!(detail.contains("connection refused"), "{detail}");
    assert!(status["shade_instance_type"].is_null());
    assert!(host_types(&c).await.is_empty());
    let err = c
        .post(
            "/v1/instances/create",
            script_create("nowhere", "CPUx1", "x", "true"),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "cloud", "{err}");
}

#[tokio::test]
async fn a_host_whose_key_differs_from_known_hosts_is_never_used() {
    let sshd = Sshd::start();
    keygen(&sshd.path("impostor"));
    let impostor = std::fs::read_to_string(sshd.path("impostor.pub")).unwrap();
    let wrong = sshd.path("wrong_known_hosts");
    std::fs::write(&wrong, format!("[127.0.0.1]:{} {impostor}", sshd.port)).unwrap();
    let config = sshd.parasol_config(&wrong, sshd.port);
    let s = parasol_with(&config);
    let c = s.admin();
    let status = host_status(&c).await;
    assert_eq!(status["reachable"], false);
    let detail = status["detail"].as_str().unwrap();
    assert!(
        detail.contains("host key verification failed") && detail.contains("wrong_known_hosts"),
        "{detail}"
    );
    assert!(host_types(&c).await.is_empty());
    // The connection ended before authentication: nothing ran there.
    assert!(!sshd.home().join(".parasol").exists());
    assert_eq!(sshd.authorized_keys(), "");
}

#[tokio::test]
async fn a_host_lost_mid_create_and_mid_delete_is_retried_and_left_clean() {
    let mut sshd = Sshd::start();
    let s = sshd.parasol();
    let c = s.admin();
    let shade = the_type(&c).await;
    let (user_key, key_id) = sshd.add_renter_key(&c).await;

    // Discovery saw the host; then it goes away before the launch.
    sshd.stop();
    let id = c
        .post(
            "/v1/instances/create",
            script_create("flaky", &shade, &key_id, "exec sleep 300\n"),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stuck = wait_for(&c, &id, "retrying", |i| {
        i["status_details"]
            .as_str()
            .is_some_and(|d| d.contains("retrying"))
    })
    .await;
    assert_eq!(stuck["status"], "creating", "{stuck:#}");
    let details = stuck["status_details"].as_str().unwrap();
    assert!(
        details.contains("connection refused") && details.contains("installing the SSH key"),
        "{details}"
    );

    // Back: the retry finishes the launch.
    sshd.resume();
    let active = c.wait_status(&id, "active").await;
    assert!(active["status_details"].is_null(), "{active:#}");
    assert!(sshd.ssh(&user_key, "true").status.success());

    // Gone again while deleting: the instance says so and keeps trying.
    sshd.stop();
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    let deleting = wait_for(&c, &id, "retrying the delete", |i| {
        i["status_details"]
            .as_str()
            .is_some_and(|d| d.contains("removing the instance's SSH key"))
    })
    .await;
    assert_eq!(deleting["status"], "deleting", "{deleting:#}");
    assert_eq!(host_status(&c).await["instance_id"], id.as_str());

    sshd.resume();
    c.wait_gone(&id).await;
    assert!(!sshd.ssh(&user_key, "true").status.success());
    assert!(!sshd.authorized_keys().contains("parasol-instance"));
    assert!(!sshd.home().join(".parasol").exists());
    assert!(host_status(&c).await["instance_id"].is_null());
}

#[tokio::test]
async fn a_docker_launch_on_a_host_without_docker_errors_and_leaves_nothing() {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        assert!(
            !Path::new(dir).join("docker").exists(),
            "this test needs a host without docker on the sessions' PATH, but {dir}/docker exists"
        );
    }
    let sshd = Sshd::start();
    let s = sshd.parasol();
    let c = s.admin();
    let shade = the_type(&c).await;
    let (_, key_id) = sshd.add_renter_key(&c).await;
    let id = c
        .post(
            "/v1/instances/create",
            json!({
                "cloud": "hosts",
                "region": "lab",
                "shade_instance_type": shade,
                "shade_cloud": true,
                "name": "containers",
                "ssh_key_id": key_id,
                "launch_configuration": {
                    "type": "docker",
                    "docker_configuration": {"image": "nginx:latest"}
                },
            }),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = c.wait_status(&id, "error").await;
    let details = failed["status_details"].as_str().unwrap();
    assert!(details.contains("Docker is not installed"), "{details}");
    // The key installed before the check is taken away again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host_status(&c).await["instance_id"].is_null() {
        assert!(Instant::now() < deadline, "the host was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!sshd.authorized_keys().contains("parasol-instance"));
    assert!(!sshd.home().join(".parasol").exists());
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
}

/// Waits until the instance's metrics hold at least `n` samples; returns
/// the metrics.
pub(crate) async fn wait_samples(c: &Client, id: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.get(&format!("/v1/instances/{id}/metrics")).await;
        if r.status == 200 && r.body["samples"].as_array().is_some_and(|s| s.len() >= n) {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} samples: {} {:#}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_agent_installed_over_ssh_reports_the_hosts_gpu_until_the_instance_is_deleted() {
    use crate::agent_script::{fixture_gpu, stand_ins, xid_line};
    let sshd = Sshd::start();
    // The host is an H100 machine: discovery and the agent both read the
    // stand-in nvidia-smi, answering with that machine's real output; its
    // kernel log holds an Xid 79 of that GPU.
    let h100 = fixture_gpu("nvidia-h100-x1");
    let kmsg = sshd.path("kmsg");
    std::fs::write(&kmsg, xid_line("  77.000001", &h100.bus_id, 79)).unwrap();
    stand_ins(
        &sshd.bin(),
        std::slice::from_ref(&h100),
        &kmsg,
        Some("nvidia-h100-x1"),
    );
    let config = sshd.parasol_config(&sshd.path("known_hosts"), sshd.port);
    let s = Server::start(Opts {
        extra_args: vec![
            "--config".into(),
            config.display().to_string(),
            "--agent-interval".into(),
            "2".into(),
        ],
        ..Opts::default()
    });
    let c = s.admin();
    assert_eq!(the_type(&c).await, "H100");
    let (_, key_id) = sshd.add_renter_key(&c).await;
    let id = c
        .post(
            "/v1/instances/create",
            script_create("watched", "H100", &key_id, "#!/bin/sh\nexec sleep 300\n"),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_status(&id, "active").await;

    let metrics = wait_samples(&c, &id, 2).await;
    assert_eq!(metrics["agent"]["version"], "1", "{metrics:#}");
    let samples = metrics["samples"].as_array().unwrap();
    for sample in samples {
        let gpus = sample["gpus"].as_array().unwrap();
        assert_eq!(gpus.len(), 1, "{sample:#}");
        let g = &gpus[0];
        assert_eq!(g["index"], 0);
        assert_eq!(g["memory_total_mib"], h100.memory_total_mib);
        assert_eq!(g["memory_used_mib"], h100.memory_used_mib);
        assert_eq!(
            g["utilization_percent"].as_f64(),
            Some(h100.utilization_percent)
        );
        assert_eq!(g["temperature_c"].as_f64(), Some(h100.temperature_c));
        assert_eq!(g["power_w"].as_f64(), Some(h100.power_w));
        assert_eq!(g["ecc_uncorrectable"], h100.ecc_uncorrectable);
    }
    // The Xid is reported once, in the first sample.
    let xids: Vec<&Value> = samples.iter().map(|s| &s["gpus"][0]["xid"]).collect();
    assert_eq!(xids[0], &json!([79]), "{xids:?}");
    assert!(xids[1..].iter().all(|x| *x == &json!([])), "{xids:?}");

    // It runs in the instance's directory on the host, as the host's user.
    let agent_dir = sshd.home().join(format!(".parasol/instances/{id}/agent"));
    let pid = std::fs::read_to_string(agent_dir.join("pid")).unwrap();
    let pid = pid.trim().to_string();
    assert!(process_runs(&pid), "the agent runs");

    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    assert!(!process_runs(&pid), "the agent stopped with the instance");
    assert!(!agent_dir.exists(), "and left nothing behind");
}

/// Sets the utilisation the stand-in `nvidia-smi` in `bin` reports for
/// every GPU; renamed into place, so the agent reads the old file or the
/// new one, never half of one.
fn set_utilization(bin: &Path, percent: u32) {
    let csv = std::fs::read_to_string(bin.join("nvidia-smi.csv")).unwrap();
    let lines: Vec<String> = csv
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(", ").collect();
            let p = percent.to_string();
            f[2] = &p;
            f.join(", ")
        })
        .collect();
    let tmp = bin.join("nvidia-smi.csv.tmp");
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&tmp, bin.join("nvidia-smi.csv")).unwrap();
}

/// H100 hosts behind `sshds` whose stand-ins report 87 % utilisation and
/// read the kernel log from their `path("kmsg")` (empty at first), and a
/// test-clock Parasol serving them whose agents report every 2 s; with a
/// renter's key's id.
async fn watched_h100s(sshds: &[&Sshd]) -> (crate::policies::Rig, String) {
    use crate::agent_script::{fixture_gpu, stand_ins};
    let mut h100 = fixture_gpu("nvidia-h100-x1");
    h100.utilization_percent = 87.0;
    let mut config = String::new();
    for sshd in sshds {
        let kmsg = sshd.path("kmsg");
        std::fs::write(&kmsg, "").unwrap();
        stand_ins(
            &sshd.bin(),
            std::slice::from_ref(&h100),
            &kmsg,
            Some("nvidia-h100-x1"),
        );
        let one = sshd.parasol_config(&sshd.path("known_hosts"), sshd.port);
        config.push_str(&std::fs::read_to_string(one).unwrap());
    }
    let path = sshds[0].path("hosts.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.display().to_string();
    let r = crate::policies::Rig::start(&["--config", &path, "--agent-interval", "2"]);
    let types = host_types(&r.c).await;
    assert_eq!(types.len(), 1, "{types:#?}");
    assert_eq!(types[0]["shade_instance_type"], "H100");
    let (_, key_id) = sshds[0].add_renter_key(&r.c).await;
    (r, key_id)
}

/// Creates an H100 instance on the host with `extra` create fields and
/// waits until it is active.
async fn create_watched(c: &Client, key_id: &str, name: &str, extra: Value) -> String {
    let mut body = script_create(name, "H100", key_id, "#!/bin/sh\nexec sleep 300\n");
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let id = c.post("/v1/instances/create", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_status(&id, "active").await;
    id
}

/// Waits until the instance's metrics hold a sample that `pred` picks.
async fn wait_sample(c: &Client, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    crate::thresholds::wait_for(what, async || {
        let r = c.get(&format!("/v1/instances/{id}/metrics")).await;
        (r.status == 200)
            .then(|| r.body["samples"].as_array().cloned())
            .flatten()
            .and_then(|s| s.into_iter().find(|s| pred(s)))
    })
    .await
}

#[tokio::test]
async fn a_host_whose_gpu_falls_idle_is_deleted_at_the_end_of_the_window_on_the_test_clock() {
    let sshd = Sshd::start();
    let (r, key_id) = watched_h100s(&[&sshd]).await;
    let id = create_watched(
        &r.c,
        &key_id,
        "idler",
        json!({"idle_policy": {"max_gpu_utilization_percent": 5, "minutes": 1,
                                "action": "delete"}}),
    )
    .await;
    let util = |s: &Value| s["gpus"][0]["utilization_percent"].as_f64();
    wait_sample(&r.c, &id, "a busy sample", |s| util(s) == Some(87.0)).await;

    // The GPU goes idle; once a 0 % sample is in, no busy one follows.
    set_utilization(&sshd.bin(), 0);
    wait_sample(&r.c, &id, "an idle sample", |s| util(s) == Some(0.0)).await;
    let busy = crate::policies::last_report(&r.s, &id, |s| {
        s.gpus.iter().any(|g| g.utilization_percent > 5.0)
    })
    .await;
    let moment = busy + chrono::Duration::minutes(1);
    let now = r.advance(0).await;
    let to_go = (moment - now).num_seconds();
    assert!(to_go > 20, "{to_go}");

    // Shortly before the moment, with fresh idle reports in the window
    // (the test clock also runs in real time, hence the margin): there.
    let seen = r.last_seen(&id).await;
    r.advance(to_go - 10).await;
    r.report_after(&id, seen).await;
    r.passes().await;
    assert_eq!(r.status(&id).await, "active");
    assert!(r.events(&id, "idle.deleted").await.is_empty());
    assert!(r.advance(0).await < moment, "the margin was not enough");

    // Past it: deleted within the pass, and the host's agent with it.
    let pid = std::fs::read_to_string(
        sshd.home()
            .join(format!(".parasol/instances/{id}/agent/pid")),
    )
    .unwrap();
    r.advance(11).await;
    r.passes().await;
    let status = r.status(&id).await;
    assert!(
        status == "deleting" || status == "deleted",
        "{status} after the idle moment"
    );
    let events = r.events(&id, "idle.deleted").await;
    assert_eq!(events.len(), 1, "{events:?}");
    r.c.wait_gone(&id).await;
    assert!(!process_runs(pid.trim()), "the agent outlived the instance");
    assert!(host_status(&r.c).await["instance_id"].is_null());
}

#[tokio::test]
async fn an_xid_in_the_hosts_kernel_log_fails_the_instance_and_replace_starts_exactly_one() {
    use crate::agent_script::{fixture_gpu, xid_line};
    // Two H100 hosts, so the replacement has a free one while the failed
    // instance still holds its own.
    let first = Sshd::start();
    let second = Sshd::start();
    let (r, key_id) = watched_h100s(&[&first, &second]).await;
    let id = create_watched(
        &r.c,
        &key_id,
        "fragile",
        json!({"on_unhealthy": "replace", "tags": ["team-a"]}),
    )
    .await;
    let port =
        r.c.get(&format!("/v1/instances/{id}/info"))
            .await
            .expect(200)["ssh_port"]
            .as_u64()
            .unwrap();
    let sshd = if port == u64::from(first.port) {
        &first
    } else {
        &second
    };
    wait_sample(&r.c, &id, "a first sample", |_| true).await;
    let health = r.health(&id).await;
    assert_eq!(health["status"], "healthy", "{health:#}");

    // The driver logs an Xid 79 for the host's GPU.
    let bus = fixture_gpu("nvidia-h100-x1").bus_id;
    let kmsg = sshd.path("kmsg");
    std::fs::write(&kmsg, xid_line("  977.000001", &bus, 79)).unwrap();
    wait_sample(&r.c, &id, "the Xid reported", |s| {
        s["gpus"][0]["xid"] == json!([79])
    })
    .await;
    // The GPU is reset, so whichever host the replacement lands on (this
    // one, should the old instance leave it first) has a clean log: one
    // still holding the Xid would rightly fail the replacement too.
    std::fs::write(&kmsg, "").unwrap();
    // Past the active instance's regular check, which reads the report.
    r.advance(31).await;

    let failed = crate::thresholds::wait_for("the health change to failed", async || {
        r.events(&id, "instance.health_changed")
            .await
            .into_iter()
            .find(|e| e["message"].as_str().unwrap().contains(" is failed "))
    })
    .await;
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("xid") && message.contains("79"),
        "{message}"
    );

    let tag = format!("parasol:replaces={id}");
    let replacements = async || r.c.tagged(&tag).await;
    let new = crate::thresholds::wait_for("the replacement", async || {
        replacements().await.into_iter().next()
    })
    .await;
    let new_id = new["id"].as_str().unwrap().to_string();
    assert_eq!(new["name"], "fragile");
    assert_eq!(new["on_unhealthy"], "replace");
    assert!(new["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "team-a"));
    r.c.wait_gone(&id).await;
    r.c.wait_status(&new_id, "active").await;
    let hosts = r.c.get("/admin/hosts").await.expect(200);
    let held: Vec<&Value> = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["instance_id"].as_str().map(|_| &h["instance_id"]))
        .collect();
    assert_eq!(held, [&json!(new_id)], "{hosts:#}");

    // The replacement's own agent reports a healthy GPU; several more
    // passes start nothing else.
    let seen = r.last_seen(&new_id).await;
    r.report_after(&new_id, seen).await;
    for _ in 0..3 {
        let seen = r.last_seen(&new_id).await;
        r.advance(31).await;
        r.report_after(&new_id, seen).await;
        r.passes().await;
    }
    let health = r.health(&new_id).await;
    assert_eq!(health["status"], "healthy", "{health:#}");
    assert_eq!(replacements().await.len(), 1);
    assert_eq!(r.events(&id, "health.replaced").await.len(), 1);
    let list = r.c.get("/v1/instances").await.expect(200);
    assert_eq!(list["instances"].as_array().unwrap().len(), 1, "{list:#}");
}
