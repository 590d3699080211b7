//! moto's EC2 server (PyPI `moto[server,ec2]`, from the test venv) as the
//! AWS the `aws` adapter talks to, and a small client to look at what moto
//! holds. One moto per test: each test process starts its own on a free
//! port, and the guard kills it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use parasol::providers::clouds::aws::xml::Xml;

/// Account id moto's resources are owned by, and the owner of the Deep
/// Learning AMIs seeded into it.
pub const DLAMI_OWNER: &str = "898082745236";
/// The AMI the adapter should pick (the newest of two of that name).
pub const NEWEST_DLAMI: &str = "ami-0dl000000000new01";
/// An older one of the same name.
pub const OLDER_DLAMI: &str = "ami-0dl000000000old01";

/// A running moto server; killed on drop.
pub struct Moto {
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv() -> PathBuf {
    match std::env::var_os("PARASOL_TEST_VENV") {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv"),
    }
}

/// The AMIs moto starts with: two Deep Learning Base AMIs under Amazon's
/// account (moto's own list predates that name).
fn amis_json() -> String {
    let ami = |id: &str, date: &str| {
        serde_json::json!({
            "ami_id": id,
            "name": format!("Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) {date}"),
            "description": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)",
            "owner_id": DLAMI_OWNER,
            "public": true,
            "state": "available",
            "architecture": "x86_64",
            "virtualization_type": "hvm",
            "root_device_type": "ebs",
            "root_device_name": "/dev/sda1",
            "image_type": "machine",
            "hypervisor": "xen",
            "creation_date": format!("{}-{}-{}T00:00:00.000Z", &date[0..4], &date[4..6], &date[6..8]),
        })
    };
    serde_json::json!([ami(OLDER_DLAMI, "20240101"), ami(NEWEST_DLAMI, "20250601")]).to_string()
}

/// Starts moto on a free port and waits until it answers.
pub fn start() -> Moto {
    let bin = venv().join("bin/moto_server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh (it installs moto[server,ec2] from scripts/requirements-test.txt) or set PARASOL_TEST_VENV",
        bin.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let amis = dir.path().join("amis.json");
    std::fs::write(&amis, amis_json()).expect("write amis");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_AMIS_PATH", &amis)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start moto_server");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moto did not start: {}",
            std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        url,
        child,
        _dir: dir,
        http: reqwest::Client::new(),
    }
}

impl Moto {
    /// Calls `action` in `region` the way a test inspects moto (moto does
    /// not check signatures; it reads the region from the credential
    /// scope). Panics on an error answer.
    pub async fn call(&self, region: &str, action: &str, params: &[(&str, &str)]) -> Xml {
        // Built before any await: the serializer is not `Send`.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action)
                .append_pair("Version", "2016-11-15");
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let res = self
            .http
            .post(format!("{}/", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=testing/20250101/{region}/ec2/aws4_request, SignedHeaders=host, Signature=0"),
            )
            .body(body)
            .send()
            .await
            .expect("moto answers");
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{action} -> {status}: {text}");
        Xml::parse(&text).expect("moto answers XML")
    }

    /// Every instance moto holds in `region`.
    pub async fn instances(&self, region: &str) -> Vec<Xml> {
        self.call(region, "DescribeInstances", &[])
            .await
            .items(&["reservationSet"])
            .into_iter()
            .flat_map(|r| r.items(&["instancesSet"]))
            .cloned()
            .collect()
    }

    /// The instances tagged with Parasol's instance id `id`.
    pub async fn tagged(&self, region: &str, id: &str) -> Vec<Xml> {
        self.instances(region)
            .await
            .into_iter()
            .filter(|i| i.tag("parasol:instance-id") == Some(id))
            .collect()
    }

    /// Polls until `pred` holds for the instances of `region`.
    pub async fn wait_for(
        &self,
        region: &str,
        what: &str,
        pred: impl Fn(&[Xml]) -> bool,
    ) -> Vec<Xml> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.instances(region).await;
            if pred(&all) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The state name of a described instance.
pub fn state(i: &Xml) -> &str {
    i.text_at(&["instanceState", "name"]).unwrap_or("")
}
