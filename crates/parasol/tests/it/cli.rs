//! The CLI: the built `parasol` binary run as a user would, against a live
//! server, with its own config directory and no inherited settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    advance_clock, binary, public_key, wait_for_samples, Opts, Server, ADMIN_KEY,
};

/// One CLI user: a config directory, and optionally a server and key in
/// the environment.
struct User {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// What a command did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts a failure reported as exactly one line on stderr; returns it.
    #[track_caller]
    fn fails(self) -> String {
        assert_ne!(self.code, 0, "expected a failure; stdout:\n{}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(lines[0].starts_with("parasol: "), "{:?}", lines[0]);
        lines[0].to_string()
    }
}

impl User {
    /// A user with nothing configured.
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
            env: vec![],
        }
    }

    /// A user whose environment points at `s` with `key`.
    fn env(s: &Server, key: &str) -> User {
        let mut u = User::new();
        u.env.push(("PARASOL_URL".into(), s.base.clone()));
        u.env.push(("PARASOL_API_KEY".into(), key.into()));
        u
    }

    fn config_file(&self) -> PathBuf {
        self.home.path().join("config/parasol/config.toml")
    }

    /// `program` with this user's environment and nothing inherited.
    fn program(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.program(binary());
        cmd.args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        run_output(self.command(args).output().expect("run parasol"))
    }
}

fn run_output(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Splits an aligned table into its header and rows of cells (cells are
/// separated by two or more spaces).
fn table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let split = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let mut lines = text.lines();
    let header = split(lines.next().expect("a header line"));
    (header, lines.map(split).collect())
}

fn write_key(dir: &Path) -> PathBuf {
    let path = dir.join("id_ed25519.pub");
    std::fs::write(&path, format!("{}\n", public_key())).unwrap();
    path
}

#[tokio::test]
async fn configure_saves_url_and_key_owner_only_and_whoami_reports_the_account() {
    let s = Server::start(Opts::default());
    let u = User::new();
    let none = u.run(&["whoami"]).fails();
    assert!(none.contains("parasol configure"), "{none}");

    // A wrong key is refused before anything is saved.
    let bad = u
        .run(&["configure", "--url", &s.base, "--api-key", "psl_wrong"])
        .fails();
    assert!(bad.contains("401"), "{bad}");
    assert!(!u.config_file().exists());

    let out = u
        .run(&[
            "login",
            "--url",
            &format!("{}/v1/", s.base),
            "--api-key",
            ADMIN_KEY,
        ])
        .ok();
    assert!(out.contains("account admin"), "{out}");
    let text = std::fs::read_to_string(u.config_file()).unwrap();
    assert!(text.contains(ADMIN_KEY) && text.contains(&s.base), "{text}");
    assert!(!text.contains("/v1"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(u.config_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let who = u.run(&["whoami"]).ok();
    assert!(who.contains(&s.base), "{who}");
    assert!(who.contains("admin"), "{who}");
    assert!(
        !who.contains(ADMIN_KEY),
        "whoami must not print the key: {who}"
    );
    let json: Value = serde_json::from_str(&u.run(&["whoami", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["name"], "admin");
    assert_eq!(json["is_admin"], true);

    // The environment overrides the file: another account's key.
    let key = s.new_account("alice");
    let mut alice = User::new();
    alice.home = u.home;
    alice.env.push(("PARASOL_API_KEY".into(), key));
    let json: Value = serde_json::from_str(&alice.run(&["whoami", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["name"], "alice");
    assert_eq!(json["is_admin"], false);
    let who = alice.run(&["whoami"]).ok();
    assert!(who.contains("from PARASOL_API_KEY"), "{who}");
}

#[tokio::test]
async fn instances_types_is_a_price_sorted_shopping_table_with_filters() {
    let s = Server::start(Opts::default());
    let u = User::env(&s, ADMIN_KEY);
    let out = u
        .run(&[
            "instances",
            "types",
            "--gpu",
            "h100",
            "--num-gpus",
            "8",
            "--available",
        ])
        .ok();
    assert!(!out.contains('\x1b'), "no colour when piped: {out:?}");
    let (header, rows) = table(&out);
    assert_eq!(
        header,
        ["CLOUD", "TYPE", "GPUS", "VRAM", "VCPUS", "RAM", "$/HR", "REGIONS"]
    );
    assert!(rows.len() >= 3, "{out}");
    let prices: Vec<f64> = rows
        .iter()
        .map(|r| {
            assert_eq!(r[2], "8x H100", "{r:?}");
            assert!(r[3].ends_with(" GB") && r[5].ends_with(" GB"), "{r:?}");
            assert!(!r[7].is_empty() && !r[7].contains("none"), "{r:?}");
            r[6].strip_prefix('$').unwrap().parse().unwrap()
        })
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");

    // The same query through the API: same types, same order.
    let api = s
        .admin()
        .get("/v1/instances/types?gpu_type=h100&num_gpus=8&available=true&sort=price")
        .await
        .expect(200);
    let api_types = api["instance_types"].as_array().unwrap();
    assert_eq!(api_types.len(), rows.len());
    for (t, r) in api_types.iter().zip(&rows) {
        assert_eq!(t["cloud"], r[0].as_str());
        assert_eq!(t["shade_instance_type"], r[1].as_str());
    }
    // -o json is the API's JSON, unchanged.
    let json: Value = serde_json::from_str(
        &u.run(&[
            "instances",
            "types",
            "--gpu",
            "h100",
            "--num-gpus",
            "8",
            "--available",
            "-o",
            "json",
        ])
        .ok(),
    )
    .unwrap();
    assert_eq!(json, api);

    // Spot: only types with spot entries, priced at their spot price.
    let out = u
        .run(&["instances", "types", "--spot", "--cloud", "hyperstack"])
        .ok();
    let (_, rows) = table(&out);
    assert!(!rows.is_empty(), "{out}");
    let all = s
        .admin()
        .get("/v1/instances/types?cloud=hyperstack")
        .await
        .expect(200);
    for r in &rows {
        assert_eq!(r[0], "hyperstack");
        let t = all["instance_types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["shade_instance_type"] == r[1].as_str())
            .unwrap();
        let spot_min = t["availability"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rental_type"] == "spot")
            .map(|a| a["hourly_price"].as_str().unwrap().parse::<f64>().unwrap())
            .fold(f64::MAX, f64::min);
        let shown: f64 = r[6].strip_prefix('$').unwrap().parse().unwrap();
        assert!((shown - spot_min).abs() < 0.001, "{r:?} vs {spot_min}");
        assert!(shown * 100.0 < t["hourly_price"].as_f64().unwrap(), "{r:?}");
    }
    let bad = u.run(&["instances", "types", "--cloud", "nowhere"]).ok();
    assert!(bad.contains("No instance types match"), "{bad}");
}

#[tokio::test]
async fn ssh_keys_add_from_a_file_list_get_set_default_and_delete() {
    let s = Server::start(Opts::default());
    let u = User::env(&s, ADMIN_KEY);
    assert!(u.run(&["ssh-keys", "list"]).ok().contains("No SSH keys"));
    let path = write_key(u.home.path());
    let out = u.run(&["ssh-keys", "add", path.to_str().unwrap()]).ok();
    // Named after the key's comment.
    assert!(out.contains("\"parasol-test\""), "{out}");
    let first = out.trim().rsplit(' ').next().unwrap().to_string();
    let second: Value = serde_json::from_str(
        &u.run(&[
            "ssh-keys",
            "add",
            path.to_str().unwrap(),
            "--name",
            "laptop",
            "-o",
            "json",
        ])
        .ok(),
    )
    .unwrap();
    let second = second["id"].as_str().unwrap().to_string();

    let (header, rows) = table(&u.run(&["ssh-keys", "list"]).ok());
    assert_eq!(header, ["ID", "NAME", "DEFAULT", "KEY"]);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0][..3],
        [first.clone(), "parasol-test".into(), "yes".into()]
    );
    assert_eq!(rows[1][..2], [second.clone(), "laptop".into()]);

    let got: Value =
        serde_json::from_str(&u.run(&["ssh-keys", "get", &first, "-o", "json"]).ok()).unwrap();
    assert_eq!(got["public_key"], public_key());
    assert!(u
        .run(&["ssh-keys", "get", &second])
        .ok()
        .contains("default     no"));

    u.run(&["ssh-keys", "set-default", &second]).ok();
    let list: Value =
        serde_json::from_str(&u.run(&["ssh-keys", "list", "-o", "json"]).ok()).unwrap();
    let default: Vec<&Value> = list["ssh_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["is_default"] == true)
        .collect();
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["id"], second.as_str());

    let line = u.run(&["ssh-keys", "delete", &second]).fails();
    assert!(line.contains("409") && line.contains("default"), "{line}");
    assert!(u
        .run(&["ssh-keys", "delete", &first])
        .ok()
        .contains("deleted"));
    let line = u.run(&["ssh-keys", "get", &first]).fails();
    assert_eq!(line, "parasol: not found (404): ssh key not found");

    let private = u.home.path().join("id_ed25519");
    std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n").unwrap();
    let line = u
        .run(&["ssh-keys", "add", private.to_str().unwrap()])
        .fails();
    assert!(line.contains("private key"), "{line}");
}

#[tokio::test]
async fn members_list_invite_change_roles_and_remove_by_email_or_id() {
    use crate::oidc::{opts_for, Browser, Idp};
    let idp = Idp::start();
    let (opts, _dir) = opts_for(&idp, "", &[]);
    let s = Server::start(opts);
    let u = User::env(&s, ADMIN_KEY);
    let out = u
        .run(&["members", "invite", "Ada@Example.com", "--role", "member"])
        .ok();
    assert_eq!(out.trim(), "Invited ada@example.com as member.");
    let line = u
        .run(&["members", "invite", "nope", "--role", "viewer"])
        .fails();
    assert!(line.contains("(400)") && line.contains("email"), "{line}");
    u.run(&["members", "invite", "bob@example.com", "--role", "viewer"])
        .ok();

    // A personal key is a person's: the account's key cannot make one.
    let line = u.run(&["keys", "create", "mine", "--personal"]).fails();
    assert!(
        line.contains("(403)") && line.contains("made by a person"),
        "{line}"
    );

    // Ada signs in and becomes a member; Bob's invitation waits.
    idp.set_user(
        "ada",
        serde_json::json!({"email": "ada@example.com", "name": "Ada"}),
    )
    .await;
    let mut b = Browser::new(&s);
    assert_eq!(b.sign_in("ada").await.status, 200);
    let (header, rows) = table(&u.run(&["members", "list"]).ok());
    assert_eq!(
        header,
        ["ID", "EMAIL", "NAME", "ROLE", "FROM", "LAST SIGN-IN"]
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0][1..5],
        [
            "ada@example.com".to_string(),
            "Ada".into(),
            "member".into(),
            "invite".into()
        ]
    );
    assert!(rows[0][5].starts_with("20"), "{rows:?}");
    assert_eq!(rows[1][1], "bob@example.com");
    assert!(rows[1][4].starts_with("invited"), "{rows:?}");
    let ada = rows[0][0].clone();

    // By email, a member's role; by id too; an invitation's by its email.
    let out = u
        .run(&["members", "role", "ADA@example.com", "viewer"])
        .ok();
    assert_eq!(out.trim(), format!("Member {ada} is now viewer."));
    let changed: Value = serde_json::from_str(
        &u.run(&["members", "role", &ada, "owner", "-o", "json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(changed["id"], ada.as_str());
    assert_eq!(changed["status"], "updated");
    let out = u
        .run(&["members", "role", "bob@example.com", "member"])
        .ok();
    assert_eq!(out.trim(), "Invitation of bob@example.com is now member.");
    let listed: Value =
        serde_json::from_str(&u.run(&["members", "list", "-o", "json"]).ok()).unwrap();
    assert_eq!(listed["members"][0]["role"], "owner");
    assert_eq!(listed["invites"][0]["role"], "member");

    let line = u.run(&["members", "remove", "carol@example.com"]).fails();
    assert!(line.contains("no member or invitation"), "{line}");
    let out = u.run(&["members", "remove", "bob@example.com"]).ok();
    assert_eq!(out.trim(), "Invitation of bob@example.com withdrawn.");
    let out = u.run(&["members", "remove", &ada]).ok();
    assert_eq!(out.trim(), format!("Member {ada} removed."));
    let (_, rows) = table(&u.run(&["members", "list"]).ok());
    assert!(rows.is_empty(), "{rows:?}");
    // Her session ended with the membership.
    assert_eq!(
        b.get("/instances").await.location.as_deref(),
        Some("/login")
    );
}

#[tokio::test]
async fn keys_list_create_and_revoke_api_keys() {
    let s = Server::start(Opts::default());
    let u = User::env(&s, ADMIN_KEY);
    let (header, rows) = table(&u.run(&["keys", "list"]).ok());
    assert_eq!(
        header,
        ["ID", "NAME", "ROLE", "STATUS", "CREATED", "LAST USED"]
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0][1..4],
        ["default".to_string(), "owner".into(), "live".into()]
    );
    let first = rows[0][0].clone();

    let out = u.run(&["keys", "create", "laptop"]).ok();
    assert!(
        out.contains("\"laptop\"") && out.contains("only this once"),
        "{out}"
    );
    let key = out.trim().lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("psl_"), "{out}");
    let made: Value =
        serde_json::from_str(&u.run(&["keys", "create", "ci", "-o", "json"]).ok()).unwrap();
    assert_eq!(made["name"], "ci");
    assert!(made["api_key"].as_str().unwrap().starts_with("psl_"));
    // A read-only key for automation; the list shows its role.
    let dashboards: Value = serde_json::from_str(
        &u.run(&[
            "keys",
            "create",
            "dashboards",
            "--role",
            "viewer",
            "-o",
            "json",
        ])
        .ok(),
    )
    .unwrap();
    let (_, rows) = table(&u.run(&["keys", "list"]).ok());
    let viewer = rows.iter().find(|r| r[1] == "dashboards").unwrap();
    assert_eq!(viewer[2], "viewer", "{rows:?}");

    let laptop = User::env(&s, &key);
    assert!(laptop.run(&["whoami"]).ok().contains("admin"));
    let listed: Value =
        serde_json::from_str(&laptop.run(&["keys", "list", "-o", "json"]).ok()).unwrap();
    let listed = listed["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|k| k.get("api_key").is_none()));

    let out = laptop.run(&["keys", "revoke", &first]).ok();
    assert_eq!(out.trim(), format!("API key {first} revoked."));
    let line = u.run(&["keys", "list"]).fails();
    assert!(line.contains("(401)"), "{line}");
    let (_, rows) = table(&laptop.run(&["keys", "list"]).ok());
    assert!(rows[0][3].starts_with("revoked 20"), "{rows:?}");
    assert_eq!(
        rows[1][1..4],
        ["laptop".to_string(), "owner".into(), "live".into()]
    );

    let line = laptop
        .run(&["keys", "revoke", &uuid::Uuid::new_v4().to_string()])
        .fails();
    assert!(line.contains("(404)"), "{line}");
    let ci = User::env(&s, made["api_key"].as_str().unwrap());
    let laptop_id = listed[1]["id"].as_str().unwrap();
    ci.run(&["keys", "revoke", laptop_id]).ok();
    ci.run(&["keys", "revoke", dashboards["id"].as_str().unwrap()])
        .ok();
    let line = ci
        .run(&["keys", "revoke", made["id"].as_str().unwrap()])
        .fails();
    assert!(line.contains("(409)") && line.contains("last"), "{line}");
}

#[tokio::test]
async fn create_with_wait_reaches_active_prints_ssh_and_the_other_commands_work() {
    let s = Server::start(Opts {
        boot_seconds: 1.0,
        ..Opts::default()
    });
    let mut u = User::env(&s, ADMIN_KEY);
    let key_path = write_key(u.home.path());
    u.run(&["ssh-keys", "add", key_path.to_str().unwrap()]).ok();
    let started = Instant::now();
    let r = u.run(&[
        "instances",
        "create",
        "--cloud",
        "massedcompute",
        "--region",
        "us-central-1",
        "--type",
        "A6000",
        "--name",
        "trainer",
        "--tag",
        "exp1",
        "--wait",
    ]);
    let stderr = r.stderr.clone();
    let out = r.ok();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        out.contains("\"trainer\"") && out.contains("is active after"),
        "{out}"
    );
    let ssh_line = out.lines().last().unwrap();
    assert!(
        ssh_line.starts_with("ssh -p 22 shadeform@198."),
        "{ssh_line:?}"
    );
    // Not a terminal: plain progress lines, no spinner or colour codes.
    assert!(
        !stderr.contains('\x1b') && !out.contains('\x1b'),
        "{stderr:?}"
    );
    assert!(stderr.contains("trainer: pending"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("trainer: active"),
        "{stderr}"
    );

    // list: table and the API's JSON.
    let (header, rows) = table(&u.run(&["instances", "list"]).ok());
    assert_eq!(
        header,
        ["ID", "NAME", "STATUS", "CLOUD", "REGION", "TYPE", "IP", "$/HR", "COST"]
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1..4], ["trainer", "active", "massedcompute"]);
    let id = rows[0][0].clone();
    let listed: Value =
        serde_json::from_str(&u.run(&["instances", "list", "-o", "json"]).ok()).unwrap();
    assert_eq!(listed["instances"][0]["id"], id.as_str());
    assert_eq!(listed["instances"][0]["tags"][0], "exp1");

    // get by name or id.
    let by_name = u.run(&["instances", "get", "trainer"]).ok();
    assert!(
        by_name.contains(&id) && by_name.contains(ssh_line),
        "{by_name}"
    );
    let by_id: Value =
        serde_json::from_str(&u.run(&["instances", "get", &id, "-o", "json"]).ok()).unwrap();
    assert_eq!(by_id["name"], "trainer");

    // update, restart.
    u.run(&[
        "instances",
        "update",
        "trainer",
        "--name",
        "trainer2",
        "--tag",
        "a",
        "--tag",
        "b",
    ])
    .ok();
    let after: Value =
        serde_json::from_str(&u.run(&["instances", "get", &id, "-o", "json"]).ok()).unwrap();
    assert_eq!(after["name"], "trainer2");
    assert_eq!(after["tags"], serde_json::json!(["a", "b"]));
    let line = u.run(&["instances", "update", "trainer2"]).fails();
    assert!(line.contains("nothing to update"), "{line}");
    assert!(u
        .run(&["instances", "restart", "trainer2"])
        .ok()
        .contains("restarting"));

    // ssh runs the real `ssh` found on PATH; a stand-in records its args.
    let bin = u.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = u.home.path().join("ssh-args");
    let fake = bin.join("ssh");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" > {}\n", record.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let ip = after["ip"].as_str().unwrap();
    let out = u
        .command(&["ssh", "trainer2", "-i", "/keys/id", "--", "nvidia-smi"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().trim(),
        format!("-i /keys/id -p 22 shadeform@{ip} nvidia-smi")
    );
    let printed = u.run(&["ssh", &id, "--print"]).ok();
    assert_eq!(printed.trim(), format!("ssh -p 22 shadeform@{ip}"));

    // delete --wait, then it is gone.
    u.env.push(("NO_COLOR".into(), "1".into()));
    let out = u.run(&["instances", "delete", "trainer2", "--wait"]).ok();
    assert!(out.contains("is deleted"), "{out}");
    let line = u.run(&["instances", "get", &id]).fails();
    assert_eq!(line, "parasol: not found (404): instance not found");
    let line = u.run(&["ssh", "trainer2"]).fails();
    assert!(line.contains("no instance has the id or name"), "{line}");
    assert!(u.run(&["instances", "list"]).ok().contains("No instances"));
}

#[tokio::test]
async fn create_with_wait_exits_non_zero_with_the_reason_when_the_instance_fails() {
    // Boots take a minute, so the machine is certainly still booting when
    // the test breaks it.
    let s = Server::start(Opts {
        boot_seconds: 60.0,
        ..Opts::default()
    });
    let u = User::env(&s, ADMIN_KEY);
    let child = u
        .command(&[
            "instances",
            "create",
            "--cloud",
            "massedcompute",
            "--region",
            "us-central-1",
            "--type",
            "A6000",
            "--name",
            "doomed",
            "--wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let c = s.admin();
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let list = c.get("/v1/instances").await.expect(200);
        if let Some(i) = list["instances"].as_array().unwrap().first() {
            if i["status"] != "creating" {
                break i["id"].as_str().unwrap().to_string();
            }
        }
        assert!(Instant::now() < deadline, "the instance never launched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.post(
        &format!("/admin/sim/machines/{id}/fail"),
        serde_json::json!({"reason": "GPU fell off the bus"}),
    )
    .await
    .expect(200);
    let r = run_output(child.wait_with_output().unwrap());
    let stderr = r.stderr.clone();
    assert_ne!(r.code, 0);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("parasol: instance \"doomed\" ({id}) failed after"))
            && last.ends_with("GPU fell off the bus"),
        "{stderr}"
    );
    // Progress went to stderr as plain lines before the verdict (from
    // whichever status the first poll saw: the reconciler may be quicker).
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("doomed: ")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("doomed: error")),
        "{stderr}"
    );
}

#[tokio::test]
async fn create_with_wait_reports_a_sim_boot_failure() {
    let s = Server::start(Opts::default().args(&["--sim-failure-rate", "1"]));
    let u = User::env(&s, ADMIN_KEY);
    let line = u.run(&[
        "instances",
        "create",
        "--cloud",
        "massedcompute",
        "--region",
        "us-central-1",
        "--type",
        "A6000",
        "--name",
        "unlucky",
        "--wait",
        "-o",
        "json",
    ]);
    assert_ne!(line.code, 0);
    // With -o json the final info is still printed for scripts.
    let info: Value = serde_json::from_str(&line.stdout).unwrap();
    assert_eq!(info["status"], "error");
    let reason = info["status_details"].as_str().unwrap();
    assert!(line.stderr.trim_end().ends_with(reason), "{}", line.stderr);
}

#[tokio::test]
async fn errors_are_one_clear_line_on_stderr_with_a_non_zero_exit() {
    let s = Server::start(Opts::default());
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut down = User::new();
    down.env
        .push(("PARASOL_URL".into(), format!("http://127.0.0.1:{port}")));
    down.env.push(("PARASOL_API_KEY".into(), ADMIN_KEY.into()));
    let line = down.run(&["instances", "list"]).fails();
    assert!(
        line.starts_with(&format!(
            "parasol: cannot reach the Parasol server at http://127.0.0.1:{port}"
        )),
        "{line}"
    );

    let line = User::env(&s, "psl_not_a_key")
        .run(&["instances", "list"])
        .fails();
    assert!(line.contains("refused the API key (401)"), "{line}");
    assert!(!line.contains("psl_not_a_key"), "{line}");

    let u = User::env(&s, ADMIN_KEY);
    let line = u
        .run(&["instances", "get", "00000000-0000-0000-0000-000000000000"])
        .fails();
    assert_eq!(line, "parasol: not found (404): instance not found");
    let line = u.run(&["instances", "delete", "nosuchname"]).fails();
    assert!(
        line.contains("no instance has the id or name \"nosuchname\""),
        "{line}"
    );

    let create = |name: &str, region: &str| {
        u.run(&[
            "instances",
            "create",
            "--cloud",
            "massedcompute",
            "--region",
            region,
            "--type",
            "A6000",
            "--name",
            name,
        ])
    };
    let line = create("", "us-central-1").fails();
    assert!(line.starts_with("parasol: invalid name (400): "), "{line}");
    let line = create("ok", "mars-1").fails();
    assert!(
        line.starts_with("parasol: invalid region (400): "),
        "{line}"
    );
    let line = u
        .run(&[
            "instances",
            "create",
            "--cloud",
            "massedcompute",
            "--region",
            "us-central-1",
            "--type",
            "A6000",
            "--name",
            "x",
            "--env",
            "NOVALUE",
        ])
        .fails();
    assert!(line.contains("--env"), "{line}");
    let line = u.run(&["instances", "types", "--num-gpus", "0"]).ok();
    assert!(line.contains("No instance types match"), "{line}");

    let mut bad_url = User::new();
    bad_url
        .env
        .push(("PARASOL_URL".into(), "localhost:8080".into()));
    bad_url
        .env
        .push(("PARASOL_API_KEY".into(), ADMIN_KEY.into()));
    let line = bad_url.run(&["whoami"]).fails();
    assert!(line.contains("http://"), "{line}");

    // A corrupt config file names itself.
    let broken = User::new();
    std::fs::create_dir_all(broken.config_file().parent().unwrap()).unwrap();
    std::fs::write(broken.config_file(), "url = [").unwrap();
    let line = broken.run(&["whoami"]).fails();
    assert!(line.contains("config.toml"), "{line}");
}

#[tokio::test]
async fn on_a_terminal_wait_draws_a_spinner_and_statuses_are_coloured() {
    let s = Server::start(Opts {
        boot_seconds: 1.5,
        ..Opts::default()
    });
    let u = User::env(&s, ADMIN_KEY);
    // `script` runs the command on a pseudo-terminal, as a shell would.
    let under_tty = |args: &str| {
        let out = u
            .program("script")
            .env("TERM", "xterm")
            .args(["-qec", &format!("{} {args}", binary()), "/dev/null"])
            .output()
            .expect("run script");
        run_output(out)
    };
    let r = under_tty(
        "instances create --cloud massedcompute --region us-central-1 --type A6000 --name tty --wait",
    );
    let out = r.ok();
    // The spinner redraws one line in place: carriage return, erase line,
    // a braille frame, the name and the coloured status.
    assert!(out.contains("\r\x1b[2K⠋ tty  \x1b[33m"), "{out:?}");
    assert!(out.contains("is active after"), "{out:?}");
    let list = under_tty("instances list").ok();
    assert!(list.contains("\x1b[32mactive\x1b[0m"), "{list:?}");
    assert!(list.contains("\x1b[1mSTATUS\x1b[0m"), "{list:?}");
}

#[tokio::test]
async fn clusters_volumes_and_templates_have_their_command_groups() {
    let s = Server::start(Opts::default());
    let u = User::env(&s, ADMIN_KEY);
    let key_path = write_key(u.home.path());
    u.run(&["ssh-keys", "add", key_path.to_str().unwrap()]).ok();

    // Clusters: shop, create with --wait, list, get, delete.
    let (header, rows) = table(&u.run(&["clusters", "types"]).ok());
    assert_eq!(header[..3], ["CLOUD", "TYPE", "NODES"]);
    assert!(!rows.is_empty());
    let types: Value =
        serde_json::from_str(&u.run(&["clusters", "types", "-o", "json"]).ok()).unwrap();
    let pick = types["cluster_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["availability"]["available"] == true)
        .expect("an available cluster shape")
        .clone();
    let nodes = pick["num_instances"].as_i64().unwrap().to_string();
    let r = u.run(&[
        "clusters",
        "create",
        "--cloud",
        pick["cloud"].as_str().unwrap(),
        "--region",
        pick["availability"]["region"].as_str().unwrap(),
        "--type",
        pick["cluster_type"]["shade_instance_type"]
            .as_str()
            .unwrap(),
        "--nodes",
        &nodes,
        "--name",
        "ring",
        "--wait",
    ]);
    let out = r.ok();
    assert!(out.contains("Cluster \"ring\""), "{out}");
    let ssh_lines = out.lines().filter(|l| l.starts_with("ssh -p ")).count();
    assert_eq!(ssh_lines.to_string(), nodes, "{out}");
    let (_, rows) = table(&u.run(&["clusters", "list"]).ok());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1..3], ["ring", "active"]);
    let got = u.run(&["clusters", "get", "ring"]).ok();
    assert!(got.contains("status    active"), "{got}");
    u.run(&["clusters", "delete", "ring"]).ok();
    let info: Value =
        serde_json::from_str(&u.run(&["clusters", "list", "-o", "json"]).ok()).unwrap();
    let st = info["clusters"][0]["status"].as_str().unwrap_or("deleted");
    assert!(st == "deleting" || st == "deleted", "{info}");

    // Volumes.
    let vt: Value = serde_json::from_str(&u.run(&["volumes", "types", "-o", "json"]).ok()).unwrap();
    let v = &vt["volume_types"][0];
    let out = u
        .run(&[
            "volumes",
            "create",
            "--cloud",
            v["cloud"].as_str().unwrap(),
            "--region",
            v["region"].as_str().unwrap(),
            "--size",
            "100",
            "--name",
            "data",
        ])
        .ok();
    let vid = out.trim().rsplit(' ').next().unwrap().to_string();
    let (_, rows) = table(&u.run(&["volumes", "list"]).ok());
    assert_eq!(rows[0][..2], [vid.clone(), "data".into()]);
    assert!(u.run(&["volumes", "get", &vid]).ok().contains("100 GB"));
    u.run(&["volumes", "delete", &vid]).ok();
    let line = u.run(&["volumes", "get", &vid]).fails();
    assert!(line.contains("404"), "{line}");
    let line = u
        .run(&[
            "volumes", "create", "--cloud", "nowhere", "--region", "x", "--size", "1", "--name",
            "d",
        ])
        .fails();
    assert!(line.starts_with("parasol: invalid cloud (400)"), "{line}");

    // Templates.
    let (_, featured) = table(&u.run(&["templates", "featured"]).ok());
    assert!(!featured.is_empty());
    let file = u.home.path().join("t.json");
    std::fs::write(
        &file,
        r#"{"name": "mine", "description": "first", "launch_configuration": {"type": "docker", "docker_configuration": {"image": "vllm/vllm-openai:latest"}}}"#,
    )
    .unwrap();
    let out = u.run(&["templates", "save", file.to_str().unwrap()]).ok();
    let tid = out.trim().rsplit(' ').next().unwrap().to_string();
    let (_, rows) = table(&u.run(&["templates", "list"]).ok());
    assert!(
        rows.iter()
            .any(|r| r[0] == tid && r[3] == "vllm/vllm-openai:latest"),
        "{rows:?}"
    );
    std::fs::write(&file, r#"{"name": "mine", "description": "second"}"#).unwrap();
    u.run(&["templates", "update", &tid, file.to_str().unwrap()])
        .ok();
    let got: Value =
        serde_json::from_str(&u.run(&["templates", "get", &tid, "-o", "json"]).ok()).unwrap();
    assert_eq!(got["description"], "second");
    u.run(&["templates", "delete", &tid]).ok();
    assert!(u.run(&["templates", "get", &tid]).fails().contains("404"));
    std::fs::write(&file, "{").unwrap();
    let line = u
        .run(&["templates", "save", file.to_str().unwrap()])
        .fails();
    assert!(line.contains("not a template body"), "{line}");
}

#[tokio::test]
async fn offers_lists_the_candidates_and_launch_follows_a_failover_to_active() {
    // A boot long enough for `--wait` to see the instance on its new offer.
    let s = Server::start(Opts {
        boot_seconds: 3.0,
        ..Opts::default()
    });
    let u = User::env(&s, ADMIN_KEY);
    let json: Value =
        serde_json::from_str(&u.run(&["offers", "--gpu", "A6000:1", "-o", "json"]).ok()).unwrap();
    let candidates = json["candidates"].as_array().unwrap();
    let (header, rows) = table(&u.run(&["offers", "--gpu", "A6000:1"]).ok());
    assert_eq!(
        header,
        [
            "#",
            "CLOUD",
            "REGION",
            "TYPE",
            "RENTAL",
            "$/HR",
            "AVAILABLE"
        ]
    );
    assert_eq!(rows.len(), candidates.len());
    assert_eq!(rows[0][1], candidates[0]["cloud"].as_str().unwrap());
    assert_eq!(rows[0][2], candidates[0]["region"].as_str().unwrap());
    let line = u
        .run(&["offers", "--gpu", "A6000:1", "--max-price", "0.01"])
        .fails();
    assert!(line.contains("no offer matches"), "{line}");

    let c = s.admin();
    let first = &candidates[0];
    c.post(
        "/admin/sim/capacity-failures",
        serde_json::json!({"cloud": first["cloud"], "region": first["region"],
                           "shade_instance_type": first["shade_instance_type"]}),
    )
    .await
    .expect(200);
    let run = u.run(&["launch", "--gpu", "A6000:1", "--name", "tuner", "--wait"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let second = &candidates[1];
    let moved = format!(
        "out of capacity; trying {} {} {}",
        second["cloud"].as_str().unwrap(),
        second["region"].as_str().unwrap(),
        second["shade_instance_type"].as_str().unwrap()
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("tuner: ") && l.ends_with(&moved)),
        "the failover is shown in the progress: {}",
        run.stderr
    );
    assert!(
        run.stdout.contains(&format!(
            "is active on {} {}",
            second["cloud"].as_str().unwrap(),
            second["region"].as_str().unwrap()
        )),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn webhooks_create_list_test_deliveries_and_delete() {
    use crate::webhooks::{assert_all_verified, Receiver, LOCAL};
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL));
    let u = User::env(&s, ADMIN_KEY);
    let out = u
        .run(&[
            "webhooks",
            "create",
            &rx.url("/cli"),
            "--events",
            "instance.*,ping",
            "--description",
            "from the CLI",
        ])
        .ok();
    assert!(out.contains("only this once"), "{out}");
    let secret = out.trim().lines().last().unwrap().trim().to_string();
    assert!(secret.starts_with("whsec_"), "{out}");
    rx.set("/cli", serde_json::json!({"secrets": [secret]}))
        .await;
    let (header, rows) = table(&u.run(&["webhooks", "list"]).ok());
    assert_eq!(header, ["ID", "URL", "EVENTS", "ENABLED", "CREATED"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0][1..4],
        [rx.url("/cli"), "instance.*,ping".into(), "yes".into()]
    );
    let id = rows[0][0].clone();

    let out = u.run(&["webhooks", "test", &id]).ok();
    assert!(out.contains("queued"), "{out}");
    let got = rx.wait("/cli", "the CLI's ping", |r| !r.is_empty()).await;
    assert_all_verified(&got);
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let (header, rows) = table(&u.run(&["webhooks", "deliveries", &id]).ok());
        assert_eq!(header, ["AT", "EVENT", "TYPE", "ATTEMPT", "RESULT", "MS"]);
        if !rows.is_empty() {
            break rows;
        }
        assert!(Instant::now() < deadline, "no attempt listed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        rows[0][2..5],
        ["ping".to_string(), "1".into(), "200".into()]
    );
    let json: Value =
        serde_json::from_str(&u.run(&["webhooks", "deliveries", &id, "-o", "json"]).ok()).unwrap();
    assert_eq!(json["deliveries"][0]["event_type"], "ping");

    let line = u
        .run(&["webhooks", "create", "http://203.0.113.9/x", "-e", "*"])
        .ok();
    assert!(
        line.contains("only this once"),
        "http is allowed here: {line}"
    );
    let line = u
        .run(&[
            "webhooks",
            "create",
            "https://203.0.113.9/x",
            "-e",
            "nonsense",
        ])
        .fails();
    assert!(
        line.contains("(400)") && line.contains("nonsense"),
        "{line}"
    );

    let out = u.run(&["webhooks", "delete", &id]).ok();
    assert_eq!(out.trim(), format!("Webhook {id} deleted."));
    let line = u.run(&["webhooks", "delete", &id]).fails();
    assert!(line.contains("(404)"), "{line}");
}

#[tokio::test]
async fn instances_metrics_and_top_show_what_the_steered_agent_reports() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let c = s.admin();
    let id = c.create_instance("busy-box").await;
    let info = c.wait_status(&id, "active").await;
    let gpus = info["configuration"]["num_gpus"].as_u64().unwrap() as usize;
    let idle = c.create_instance("idle-box").await;
    c.wait_status(&idle, "active").await;
    wait_for_samples(&s, &id, 1).await;
    wait_for_samples(&s, &idle, 1).await;
    // One machine at 73 % with a session, the other idle for 3 reports
    // (30 s after its first steered one).
    for (who, util, ssh) in [(&id, 73, 1), (&idle, 0, 0)] {
        c.post(
            "/admin/sim/agent",
            serde_json::json!({"instance_id": who, "gpu_utilization_percent": util,
                               "ssh_sessions": ssh, "reporting": true}),
        )
        .await
        .expect(200);
    }
    for n in 2..=4 {
        advance_clock(&s, 15).await;
        wait_for_samples(&s, &id, n).await;
        wait_for_samples(&s, &idle, n).await;
    }
    let u = User::env(&s, ADMIN_KEY);

    // metrics: the API's JSON, and a table of one row per sample and GPU.
    let json: Value = serde_json::from_str(
        &u.run(&["instances", "metrics", "busy-box", "-o", "json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(json["instance_id"], id.as_str());
    let samples = json["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 4);
    assert_eq!(samples[3]["gpus"][0]["utilization_percent"], 73.0);
    let out = u.run(&["instances", "metrics", &id]).ok();
    let (first, rest) = out.split_once('\n').unwrap();
    assert!(first.starts_with("agent sim-1 last seen "), "{first}");
    let (header, rows) = table(rest);
    assert_eq!(
        header,
        ["TIME", "GPU", "UTIL%", "MEM MiB", "TEMP", "POWER", "ECC", "XID", "SSH"]
    );
    assert_eq!(rows.len(), 4 * gpus);
    let last = rows.last().unwrap();
    assert_eq!(last[1], (gpus - 1).to_string());
    assert_eq!(last[2], "73");
    assert_eq!(last[8], "1");
    // --since in the future: nothing; the 1-minute history answers too.
    let out = u
        .run(&[
            "instances",
            "metrics",
            &id,
            "--since",
            "2099-01-01T00:00:00Z",
        ])
        .ok();
    assert!(out.contains("No samples in that window."), "{out}");
    let by_minute: Value = serde_json::from_str(
        &u.run(&[
            "instances",
            "metrics",
            &id,
            "--resolution",
            "1m",
            "-o",
            "json",
        ])
        .ok(),
    )
    .unwrap();
    assert!(!by_minute["samples"].as_array().unwrap().is_empty());
    let line = u
        .run(&["instances", "metrics", &id, "--since", "yesterday"])
        .fails();
    assert!(line.contains("invalid --since \"yesterday\""), "{line}");
    assert!(u
        .run(&["instances", "metrics", &id, "--resolution", "5m"])
        .stderr
        .contains("invalid value '5m'"));

    // top --once: one plain table (not a terminal), sorted by name.
    let out = u.run(&["instances", "top", "--once"]).ok();
    assert!(!out.contains('\x1b'), "{out:?}");
    let (header, rows) = table(&out);
    assert_eq!(
        header,
        ["ID", "NAME", "TYPE", "GPUS", "UTIL%", "MEM GiB", "TEMP", "IDLE", "HEALTH", "CHECKS"]
    );
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0][1], "busy-box");
    assert_eq!(rows[0][0], id[..8]);
    assert_eq!(rows[0][3], gpus.to_string());
    assert_eq!(rows[0][4], "73");
    assert_eq!(rows[0][7], "busy");
    assert_eq!(rows[0][8], "healthy");
    assert_eq!(rows[0][9], "ok");
    assert!(
        rows[0][5].contains('/') && rows[0][6].ends_with('C'),
        "{out}"
    );
    assert_eq!(rows[1][1], "idle-box");
    assert_eq!(rows[1][4], "0");
    // Idle since the first sample (its unsteered report may be busy).
    assert!(rows[1][7] == "0m" || rows[1][7] == "1m", "{out}");

    // An Xid fails the machine's health; top says which check and why.
    c.post(
        "/admin/sim/agent",
        serde_json::json!({"instance_id": idle, "xid": 79, "reporting": true}),
    )
    .await
    .expect(200);
    advance_clock(&s, 15).await;
    wait_for_samples(&s, &idle, 5).await;
    let json: Value =
        serde_json::from_str(&u.run(&["instances", "top", "--once", "-o", "json"]).ok()).unwrap();
    let idle_row = &json["instances"][1];
    assert_eq!(idle_row["instance"]["name"], "idle-box");
    assert_eq!(idle_row["health"]["status"], "failed");
    let (_, rows) = table(&u.run(&["instances", "top", "--once"]).ok());
    assert_eq!(rows[1][8], "failed");
    assert!(rows[1][9].starts_with("xid: "), "{rows:?}");
    assert!(rows[1][9].contains("79"), "{rows:?}");

    // Without --once and not on a terminal: repeated plain tables, each
    // after a timestamp line.
    let mut child = u
        .command(&["instances", "top", "--interval", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    child.kill().unwrap();
    let out = run_output(child.wait_with_output().unwrap());
    assert!(!out.stdout.contains('\x1b'), "{:?}", out.stdout);
    assert!(
        out.stdout.matches("ID  ").count() >= 2,
        "at least two tables: {}",
        out.stdout
    );
    assert!(out.stdout.lines().next().unwrap().ends_with('Z'));

    // On a terminal: the screen is cleared once, then each refresh moves
    // the cursor home and rewrites the lines in place, health in colour.
    let out = u
        .program("timeout")
        .env("TERM", "xterm")
        .args([
            "2.5",
            "script",
            "-qec",
            &format!("{} instances top --interval 1", binary()),
            "/dev/null",
        ])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(screen.matches("\x1b[2J").count(), 1, "{screen:?}");
    assert!(screen.matches("\x1b[H").count() >= 3, "{screen:?}");
    assert!(screen.contains("parasol top  "), "{screen:?}");
    assert!(screen.contains("\x1b[31mfailed\x1b[0m"), "{screen:?}");
    assert!(screen.contains("\x1b[32mhealthy\x1b[0m"), "{screen:?}");
    assert!(
        screen.contains("\x1b[K\r\n"),
        "lines erased to their end: {screen:?}"
    );
    assert!(!screen.contains("Z\r\n"), "no timestamp lines: {screen:?}");
}
