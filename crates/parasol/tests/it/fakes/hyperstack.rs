//! A fake Hyperstack Infrahub API under `/v1`: `api_key` header auth,
//! `{status, message, ...}` envelopes, flavors grouped by GPU with
//! per-region `stock_available`, a per-GPU pricebook, environments and
//! keypairs scoped to them, and machines that go `CREATING` → `BUILD` →
//! `ACTIVE` (floating ip possibly later) → `DELETING` → gone. Like the real
//! API it can refuse to delete a machine that is still being created.
//!
//! Volumes (`/core/volumes`): made in an environment (name at most 50
//! characters, type `Cloud-SSD`), `creating` for a moment then
//! `available`; a machine created with `volume_name` in the volume's
//! environment has it attached (`in-use`) until the machine is deleted; an
//! attached volume cannot be deleted. Volumes are listed a page at a time,
//! as machines are.

use std::time::Instant;

use serde_json::{json, Value};

use super::openapi::{docs, Document};
use super::{ip, Cloud, Recorded, Reply, Timing};

/// The key the fake accepts.
pub const KEY: &str = "hyperstack-test-key-0123";

/// A machine at the fake.
#[derive(Clone, Debug)]
pub struct Machine {
    pub id: i64,
    pub name: String,
    pub environment: String,
    pub flavor: String,
    pub key_name: String,
    pub launched: Instant,
    pub deleted: Option<Instant>,
    pub reboots: u32,
    /// The id of the volume attached at create.
    pub volume: Option<i64>,
}

/// A volume at the fake.
#[derive(Clone, Debug)]
pub struct Volume {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub environment: String,
    pub size: i64,
    pub made: Instant,
}

/// The fake's state and knobs.
#[derive(Default)]
pub struct Hyperstack {
    pub machines: Vec<Machine>,
    pub volumes: Vec<Volume>,
    /// (name, region)
    pub environments: Vec<(String, String)>,
    /// (name, environment, public key)
    pub keypairs: Vec<(String, String, String)>,
    pub timing: Timing,
    /// Refuse deletes while a machine is `CREATING` or `BUILD`.
    pub refuse_early_delete: bool,
    /// Flavors out of stock (launches fail even if the list said otherwise).
    pub out_of_stock: Vec<String>,
}

/// Machines or volumes per page when the request names no `pageSize`.
/// Hyperstack's document gives `page` and `pageSize` but no default; the
/// fake picks a small one so that a client reading only the first page
/// misses some.
pub const DEFAULT_PAGE_SIZE: usize = 10;

fn query<'a>(req: &'a Recorded, key: &str) -> Option<&'a str> {
    req.query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

impl Hyperstack {
    /// `GET /v1/core/flavors`: flavors per GPU and region, with stock.
    pub fn flavors(&self) -> Value {
        let a6000_stock = !self.out_of_stock.iter().any(|f| f == "n3-RTX-A6000x1");
        json!({"status": true, "message": "Getting flavors success", "data": [
            {"gpu": "RTX-A6000", "region_name": "CANADA-1", "flavors": [
                flavor("n3-RTX-A6000x1", "CANADA-1", "RTX-A6000", 1, 8, 57.0, a6000_stock),
            ]},
            {"gpu": "H100-80G-PCIe", "region_name": "CANADA-1", "flavors": [
                flavor("n3-H100x8", "CANADA-1", "H100-80G-PCIe", 8, 192, 1800.0, false),
            ]},
            {"gpu": "H100-80G-PCIe", "region_name": "NORWAY-1", "flavors": [
                flavor("n3-H100x8", "NORWAY-1", "H100-80G-PCIe", 8, 192, 1800.0, true),
            ]},
            {"gpu": "", "region_name": "CANADA-1", "flavors": [
                flavor("n1-cpu-small", "CANADA-1", "", 0, 4, 4.0, true),
            ]}
        ]})
    }

    /// `GET /core/virtual-machines`: one page (`page` counts from 1), with
    /// `count` the number of machines on every page together.
    fn list_machines(&self, req: &Recorded) -> Reply {
        let all: Vec<Value> = self
            .machines
            .iter()
            .filter_map(|m| self.render(m))
            .collect();
        paged(req, "instances", all)
    }

    /// Puts a machine at the fake as if launched outside this server.
    pub fn plant(&mut self, name: &str) -> i64 {
        let id = 1000 + self.machines.len() as i64;
        self.machines.push(Machine {
            id,
            name: name.into(),
            environment: "default-CANADA-1".into(),
            flavor: "n3-RTX-A6000x1".into(),
            key_name: "k".into(),
            launched: Instant::now() - self.timing.boot - self.timing.ip_after,
            deleted: None,
            reboots: 0,
            volume: None,
        });
        id
    }

    /// The live machine a volume is attached to.
    pub fn attached_to(&self, volume: i64) -> Option<i64> {
        self.machines
            .iter()
            .find(|m| m.volume == Some(volume) && m.deleted.is_none())
            .map(|m| m.id)
    }

    fn render_volume(&self, v: &Volume) -> Value {
        let at = self.attached_to(v.id);
        let status = if at.is_some() {
            "in-use"
        } else if v.made.elapsed() < self.timing.boot / 2 {
            "creating"
        } else {
            "available"
        };
        let region = self
            .environments
            .iter()
            .find(|(n, _)| *n == v.environment)
            .map_or("", |(_, r)| r.as_str());
        json!({
            "id": v.id,
            "name": v.name,
            "description": v.description,
            "environment": {"name": v.environment, "region": region, "features": {}},
            "size": v.size,
            "status": status,
            "volume_type": "Cloud-SSD",
            "bootable": false,
            "attachments": at.map(|m| json!([{"id": 1, "instance_id": m, "device": "/dev/vdb",
                                              "status": "ATTACHED", "protected": false}]))
                .unwrap_or_else(|| json!([])),
            "created_at": "2026-11-27T10:00:00Z",
            "updated_at": "2026-11-27T10:00:00Z",
        })
    }

    /// Machines not gone yet.
    pub fn live(&self) -> Vec<&Machine> {
        self.machines
            .iter()
            .filter(|m| self.status(m).is_some())
            .collect()
    }

    fn status(&self, m: &Machine) -> Option<&'static str> {
        let age = m.launched.elapsed();
        match m.deleted {
            Some(t) if t.elapsed() >= self.timing.teardown => None,
            Some(_) => Some("DELETING"),
            None if age < self.timing.boot / 2 => Some("CREATING"),
            None if age < self.timing.boot => Some("BUILD"),
            None => Some("ACTIVE"),
        }
    }

    fn render(&self, m: &Machine) -> Option<Value> {
        let status = self.status(m)?;
        let fip = (status == "ACTIVE" && m.launched.elapsed() >= self.timing.ip_after)
            .then(|| ip(m.id as usize));
        let mut v = json!({
            "id": m.id,
            "name": m.name,
            "status": status,
            "power_state": if status == "ACTIVE" { "RUNNING" } else { "NOSTATE" },
            "vm_state": status.to_ascii_lowercase(),
            "fixed_ip": "10.0.0.5",
            "floating_ip_status": if fip.is_some() { "ATTACHED" } else { "NOT_ATTACHED" },
            "environment": {"name": m.environment, "region": "CANADA-1"},
            "flavor": {"name": m.flavor},
            "keypair": {"name": m.key_name},
            "volume_attachments": m.volume.and_then(|id| self.volumes.iter().find(|v| v.id == id))
                .map(|v| json!([{"volume": {"id": v.id, "name": v.name, "size": v.size,
                                            "volume_type": "Cloud-SSD", "bootable": false},
                                 "device": "/dev/vdb", "status": "ATTACHED"}]))
                .unwrap_or_else(|| json!([])),
            "created_at": "2026-11-27T10:00:00Z",
        });
        // The document types `floating_ip` as a string: none yet is no
        // field, not a null.
        if let Some(ip) = fip {
            v["floating_ip"] = json!(ip);
        }
        Some(v)
    }
}

/// One page of a listing (`instances`, `volumes`) as Hyperstack pages
/// them: `page` counts from 1, `pageSize` defaults to
/// [`DEFAULT_PAGE_SIZE`], and `count` is the number of items on every page
/// together.
fn paged(req: &Recorded, key: &str, all: Vec<Value>) -> Reply {
    let number = |name: &str, default: usize| match query(req, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| fail(400, &format!("{name} must be a positive integer"))),
    };
    let (page, size) = match (number("page", 1), number("pageSize", DEFAULT_PAGE_SIZE)) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let count = all.len();
    let items: Vec<Value> = all.into_iter().skip((page - 1) * size).take(size).collect();
    Reply::json(
        200,
        json!({"status": true, "message": "Success", key: items,
               "count": count, "page": page, "page_size": size}),
    )
}

fn fail(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({"status": false, "message": message}))
}

fn flavor(name: &str, region: &str, gpu: &str, n: i64, cpu: i64, ram: f64, stock: bool) -> Value {
    json!({
        "id": 90 + n,
        "name": name,
        "region_name": region,
        "cpu": cpu,
        "ram": ram,
        "disk": 100,
        "ephemeral": 750,
        "gpu": gpu,
        "gpu_count": n,
        "stock_available": stock,
        "created_at": "2026-05-06T16:04:09Z",
        "labels": [],
        "features": {}
    })
}

/// `GET /v1/pricebook`: price per GPU per hour.
pub fn pricebook() -> Value {
    json!([
        {"id": 1, "name": "RTX-A6000", "value": 0.50, "original_value": 0.50, "discount_applied": false},
        {"id": 2, "name": "H100-80G-PCIe", "value": 1.90, "original_value": 1.90, "discount_applied": false}
    ])
}

impl Cloud for Hyperstack {
    fn rate_limited(&self) -> Value {
        json!({"status": false, "message": "Too many requests"})
    }

    fn server_error(&self) -> Value {
        json!({"status": false, "message": "Internal server error"})
    }

    fn documents(&self) -> Vec<&'static Document> {
        vec![docs::hyperstack()]
    }

    fn handle(&mut self, req: &Recorded) -> Reply {
        if req.header("api_key") != Some(KEY) {
            return fail(401, "Invalid API key");
        }
        let Some(path) = req.path.strip_prefix("/v1") else {
            return fail(404, "Not found");
        };
        match (req.method.as_str(), path) {
            ("GET", "/core/flavors") => Reply::json(200, self.flavors()),
            ("GET", "/pricebook") => Reply::json(200, pricebook()),
            ("GET", "/core/environments") => {
                let envs: Vec<Value> = self
                    .environments
                    .iter()
                    .enumerate()
                    .map(|(i, (n, r))| json!({"id": i + 1, "name": n, "region": r, "created_at": "2026-11-27T10:00:00Z"}))
                    .collect();
                Reply::json(
                    200,
                    json!({"status": true, "message": "Success", "environments": envs}),
                )
            }
            ("POST", "/core/environments") => {
                let (Some(n), Some(r)) = (req.body["name"].as_str(), req.body["region"].as_str())
                else {
                    return fail(400, "name and region are required");
                };
                if self.environments.iter().any(|(e, _)| e == n) {
                    return fail(409, "Environment with this name already exists");
                }
                self.environments.push((n.into(), r.into()));
                Reply::json(
                    200,
                    json!({"status": true, "message": "Environment created", "environment": {"id": self.environments.len(), "name": n, "region": r}}),
                )
            }
            ("GET", "/core/keypairs") => {
                let kps: Vec<Value> = self
                    .keypairs
                    .iter()
                    .enumerate()
                    .map(|(i, (n, e, pk))| json!({"id": i + 1, "name": n, "environment": {"name": e}, "public_key": pk, "fingerprint": "aa:bb"}))
                    .collect();
                Reply::json(
                    200,
                    json!({"status": true, "message": "Success", "keypairs": kps}),
                )
            }
            ("POST", "/core/keypairs") => {
                let b = &req.body;
                let (Some(n), Some(e), Some(pk)) = (
                    b["name"].as_str(),
                    b["environment_name"].as_str(),
                    b["public_key"].as_str(),
                ) else {
                    return fail(400, "name, environment_name and public_key are required");
                };
                if !self.environments.iter().any(|(en, _)| en == e) {
                    return fail(404, "Environment not found");
                }
                self.keypairs.push((n.into(), e.into(), pk.into()));
                Reply::json(
                    200,
                    json!({"status": true, "message": "Keypair imported", "keypair": {"id": self.keypairs.len(), "name": n, "environment": {"name": e}}}),
                )
            }
            ("GET", "/core/virtual-machines") => self.list_machines(req),
            ("POST", "/core/virtual-machines") => {
                let b = &req.body;
                let (Some(name), Some(env), Some(flavor), Some(key), Some(_img)) = (
                    b["name"].as_str(),
                    b["environment_name"].as_str(),
                    b["flavor_name"].as_str(),
                    b["key_name"].as_str(),
                    b["image_name"].as_str(),
                ) else {
                    return fail(400, "missing required fields");
                };
                if !self.keypairs.iter().any(|(n, e, _)| n == key && e == env) {
                    return fail(404, "Keypair not found in this environment");
                }
                let volume = match b["volume_name"].as_str() {
                    None => None,
                    Some(n) => match self
                        .volumes
                        .iter()
                        .find(|v| v.name == n && v.environment == env)
                    {
                        Some(v) if self.attached_to(v.id).is_some() => {
                            return fail(409, &format!("Volume {n} is already attached"))
                        }
                        Some(v) => Some(v.id),
                        None => {
                            return fail(404, &format!("Volume {n} not found in environment {env}"))
                        }
                    },
                };
                if self.out_of_stock.iter().any(|f| f == flavor) {
                    return fail(400, &format!("Insufficient stock for flavor {flavor}"));
                }
                let id = 1000 + self.machines.len() as i64;
                let m = Machine {
                    id,
                    name: name.into(),
                    environment: env.into(),
                    flavor: flavor.into(),
                    key_name: key.into(),
                    launched: Instant::now(),
                    deleted: None,
                    reboots: 0,
                    volume,
                };
                self.machines.push(m.clone());
                let v = self.render(&m).unwrap();
                Reply::json(
                    200,
                    json!({"status": true, "message": "Creating 1 virtual machine", "instances": [v]}),
                )
            }
            ("GET", "/core/volumes") => {
                let vs: Vec<Value> = self.volumes.iter().map(|v| self.render_volume(v)).collect();
                paged(req, "volumes", vs)
            }
            ("POST", "/core/volumes") => {
                let b = &req.body;
                let (Some(name), Some(env), Some(size), Some(ty)) = (
                    b["name"].as_str(),
                    b["environment_name"].as_str(),
                    b["size"].as_i64(),
                    b["volume_type"].as_str(),
                ) else {
                    return fail(400, "missing required fields");
                };
                if name.len() > 50 {
                    return fail(400, "name: ensure this value has at most 50 characters");
                }
                if ty != "Cloud-SSD" {
                    return fail(400, &format!("Volume type {ty} does not exist"));
                }
                if !(1..=1_048_576).contains(&size) {
                    return fail(400, "size must be from 1 to 1048576 GB");
                }
                if !self.environments.iter().any(|(n, _)| n == env) {
                    return fail(404, &format!("Environment {env} not found"));
                }
                if self
                    .volumes
                    .iter()
                    .any(|v| v.name == name && v.environment == env)
                {
                    return fail(409, &format!("A volume named {name} already exists"));
                }
                let v = Volume {
                    id: 5000 + self.volumes.len() as i64,
                    name: name.into(),
                    description: b["description"].as_str().unwrap_or("").into(),
                    environment: env.into(),
                    size,
                    made: Instant::now(),
                };
                let body = self.render_volume(&v);
                self.volumes.push(v);
                Reply::json(
                    200,
                    json!({"status": true, "message": "Volume created", "volume": body}),
                )
            }
            (method, p) if p.starts_with("/core/volumes/") => {
                let id = &p["/core/volumes/".len()..];
                let Some(i) = id
                    .parse::<i64>()
                    .ok()
                    .and_then(|id| self.volumes.iter().position(|v| v.id == id))
                else {
                    return fail(404, "Volume not found");
                };
                match method {
                    "GET" => {
                        let v = self.render_volume(&self.volumes[i]);
                        Reply::json(
                            200,
                            json!({"status": true, "message": "Success", "volume": v}),
                        )
                    }
                    "DELETE" => {
                        if self.attached_to(self.volumes[i].id).is_some() {
                            return fail(400, "Volume is attached to a virtual machine");
                        }
                        self.volumes.remove(i);
                        Reply::json(200, json!({"status": true, "message": "Volume deleted"}))
                    }
                    _ => fail(405, "Method not allowed"),
                }
            }
            (method, p) if p.starts_with("/core/virtual-machines/") => {
                let rest = &p["/core/virtual-machines/".len()..];
                let (id, op) = rest.split_once('/').unwrap_or((rest, ""));
                let Some(i) = id.parse::<i64>().ok().and_then(|id| {
                    self.machines
                        .iter()
                        .position(|m| m.id == id && self.status(m).is_some())
                }) else {
                    return fail(404, "Virtual machine not found");
                };
                match (method, op) {
                    ("GET", "") => {
                        let v = self.render(&self.machines[i]).unwrap();
                        Reply::json(
                            200,
                            json!({"status": true, "message": "Success", "instance": v}),
                        )
                    }
                    ("GET", "hard-reboot") => {
                        self.machines[i].reboots += 1;
                        Reply::json(200, json!({"status": true, "message": "Rebooting"}))
                    }
                    ("DELETE", "") => {
                        let st = self.status(&self.machines[i]).unwrap();
                        if self.refuse_early_delete && matches!(st, "CREATING" | "BUILD") {
                            return fail(
                                400,
                                &format!(
                                    "Cannot delete a virtual machine while it is in {st} state"
                                ),
                            );
                        }
                        if self.machines[i].deleted.is_none() {
                            self.machines[i].deleted = Some(Instant::now());
                        }
                        Reply::json(
                            200,
                            json!({"status": true, "message": "Deleting virtual machine"}),
                        )
                    }
                    _ => fail(405, "Method not allowed"),
                }
            }
            _ => fail(404, "Not found"),
        }
    }
}
