//! A fake Lambda Cloud API v1 under `/api/v1`: bearer (or basic) API-key
//! auth, `{"data": ...}` envelopes, `{"error": {"code", "message"}}`
//! errors, machines that go `booting` → `active` → `terminating` → gone.
//!
//! Shared filesystems: listed at `GET /file-systems`, made at `POST
//! /filesystems` (name `^[a-zA-Z]+[0-9a-zA-Z-]*$`, at most 60, unique),
//! deleted at `DELETE /filesystems/{id}` unless a live machine mounts it
//! (`filesystems/filesystem-in-use`); a launch mounts them by name
//! (`file_system_names`), from its own region only.

use std::time::Instant;

use serde_json::{json, Value};

use super::openapi::{docs, Document};
use super::{ip, Cloud, Recorded, Reply, Timing};

/// The key the fake accepts.
pub const KEY: &str = "lambda-test-key-0123";

/// A machine at the fake.
#[derive(Clone, Debug)]
pub struct Machine {
    pub id: String,
    pub name: String,
    pub region: String,
    pub instance_type: String,
    pub ssh_key_names: Vec<String>,
    pub launched: Instant,
    pub terminated: Option<Instant>,
    pub restarts: u32,
    pub n: usize,
    /// Names of the filesystems mounted.
    pub file_system_names: Vec<String>,
}

/// A shared filesystem at the fake.
#[derive(Clone, Debug)]
pub struct Filesystem {
    pub id: String,
    pub name: String,
    pub region: String,
}

/// The fake's state and knobs.
#[derive(Default)]
pub struct Lambda {
    pub machines: Vec<Machine>,
    pub filesystems: Vec<Filesystem>,
    /// Filesystems made so far, for ids.
    pub filesystems_made: u32,
    pub keys: Vec<(String, String, String)>,
    pub timing: Timing,
    /// `(type, region)` pairs whose launches fail for capacity even though
    /// the catalog lists them.
    pub no_capacity: Vec<(String, String)>,
}

impl Lambda {
    /// Puts a machine at the fake as if launched outside this server.
    pub fn plant(&mut self, name: &str) -> String {
        let n = self.machines.len();
        let id = format!("0920582c7ff041399e34823a0be6{n:04x}");
        self.machines.push(Machine {
            id: id.clone(),
            name: name.to_string(),
            region: "us-west-1".into(),
            instance_type: "gpu_1x_a6000".into(),
            ssh_key_names: vec![],
            launched: Instant::now() - self.timing.boot - self.timing.ip_after,
            terminated: None,
            restarts: 0,
            n,
            file_system_names: vec![],
        });
        id
    }

    /// Machines not gone yet.
    pub fn live(&self) -> Vec<&Machine> {
        self.machines
            .iter()
            .filter(|m| self.status(m).is_some())
            .collect()
    }

    fn status(&self, m: &Machine) -> Option<&'static str> {
        match m.terminated {
            Some(t) if t.elapsed() >= self.timing.teardown => None,
            Some(_) => Some("terminating"),
            None if m.launched.elapsed() < self.timing.boot => Some("booting"),
            None => Some("active"),
        }
    }

    fn render(&self, m: &Machine) -> Option<Value> {
        let status = self.status(m)?;
        let up = status != "booting" && m.launched.elapsed() >= self.timing.ip_after;
        let can = |yes: bool| json!({ "available": yes });
        let mut v = json!({
            "id": m.id,
            "name": m.name,
            "status": status,
            "ssh_key_names": m.ssh_key_names,
            "file_system_names": m.file_system_names,
            "region": {"name": m.region, "description": region_description(&m.region)},
            "instance_type": instance_types()["data"][&m.instance_type]["instance_type"],
            "hostname": format!("{}.cloud.lambdalabs.com", m.id),
            "actions": {
                "migrate": can(false), "rebuild": can(false), "cold_reboot": can(false),
                "restart": can(status == "active"), "terminate": can(status != "terminating"),
            },
        });
        // The document types `ip` as a string: a machine without one yet
        // has no `ip` field, not a null.
        if up {
            v["ip"] = json!(ip(m.n));
        }
        Some(v)
    }
}

fn render_filesystem(f: &Filesystem, in_use: bool) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "mount_point": format!("/lambda/nfs/{}", f.name),
        "created": "2026-01-01T00:00:00+00:00",
        "created_by": {"id": "3da5a70a57a7422ea8a7203f98b2198b", "email": "me@example.com",
                       "status": "active"},
        "is_in_use": in_use,
        "region": {"name": f.region, "description": region_description(&f.region)},
        "bytes_used": 0,
    })
}

/// Lambda's rule for filesystem names.
fn valid_filesystem_name(name: &str) -> bool {
    let letters = name.chars().take_while(|c| c.is_ascii_alphabetic()).count();
    (1..=60).contains(&name.len())
        && letters > 0
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Lambda {
    fn in_use(&self, f: &Filesystem) -> bool {
        self.machines
            .iter()
            .any(|m| m.terminated.is_none() && m.file_system_names.contains(&f.name))
    }
}

fn region_description(r: &str) -> &'static str {
    match r {
        "us-west-1" => "California, USA",
        "us-east-1" => "Virginia, USA",
        _ => "Somewhere",
    }
}

fn err(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

fn not_found() -> Reply {
    err(
        404,
        "global/object-does-not-exist",
        "Specified instance does not exist.",
    )
}

/// `GET /api/v1/instance-types`: Lambda's published types (its price list's
/// numbers and its document's examples), with the regions that have
/// capacity now; instances show their type's entry.
pub fn instance_types() -> Value {
    json!({"data": {
        "gpu_1x_a6000": {
            "instance_type": {
                "name": "gpu_1x_a6000",
                "description": "1x RTX A6000 (48 GB)",
                "gpu_description": "RTX A6000 (48 GB)",
                "price_cents_per_hour": 80,
                "specs": {"vcpus": 14, "memory_gib": 46, "storage_gib": 512, "gpus": 1}
            },
            "regions_with_capacity_available": [
                {"name": "us-west-1", "description": "California, USA"}
            ]
        },
        "gpu_8x_h100_sxm5": {
            "instance_type": {
                "name": "gpu_8x_h100_sxm5",
                "description": "8x H100 (80 GB SXM5)",
                "gpu_description": "H100 (80 GB SXM5)",
                "price_cents_per_hour": 2392,
                "specs": {"vcpus": 208, "memory_gib": 1800, "storage_gib": 24780, "gpus": 8}
            },
            "regions_with_capacity_available": []
        },
        // The two types Lambda's document gives as examples.
        "gpu_8x_a100": {
            "instance_type": {
                "name": "gpu_8x_a100",
                "description": "8x A100 (40 GB SXM4)",
                "gpu_description": "A100 (40 GB SXM4)",
                "price_cents_per_hour": 1032,
                "specs": {"vcpus": 124, "memory_gib": 1800, "storage_gib": 6144, "gpus": 8}
            },
            "regions_with_capacity_available": []
        },
        "gpu_1x_gh200": {
            "instance_type": {
                "name": "gpu_1x_gh200",
                "description": "1x GH200 (96 GB)",
                "gpu_description": "GH200 (96 GB)",
                "price_cents_per_hour": 149,
                "specs": {"vcpus": 64, "memory_gib": 432, "storage_gib": 4096, "gpus": 1}
            },
            "regions_with_capacity_available": [
                {"name": "us-east-1", "description": "Virginia, USA"}
            ]
        },
        "gpu_1x_a10": {
            "instance_type": {
                "name": "gpu_1x_a10",
                "description": "1x A10 (24 GB PCIe)",
                "gpu_description": "A10 (24 GB PCIe)",
                "price_cents_per_hour": 75,
                "specs": {"vcpus": 30, "memory_gib": 200, "storage_gib": 1400, "gpus": 1}
            },
            "regions_with_capacity_available": [
                {"name": "us-east-1", "description": "Virginia, USA"},
                {"name": "us-west-1", "description": "California, USA"}
            ]
        }
    }})
}

impl Cloud for Lambda {
    fn rate_limited(&self) -> Value {
        json!({"error": {"code": "global/too-many-requests", "message": "Too many requests"}})
    }

    fn server_error(&self) -> Value {
        json!({"error": {"code": "global/unknown", "message": "An unknown error occurred"}})
    }

    fn documents(&self) -> Vec<&'static Document> {
        vec![docs::lambda()]
    }

    fn handle(&mut self, req: &Recorded) -> Reply {
        let auth = req.header("authorization").unwrap_or("");
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{KEY}:")
            )
        );
        if auth != format!("Bearer {KEY}") && auth != basic {
            // Lambda's document requires a suggestion with this error.
            return Reply::json(
                401,
                json!({"error": {
                    "code": "global/invalid-api-key",
                    "message": "API key was invalid, expired, or deleted.",
                    "suggestion": "Check your API key or create a new one, then try again."
                }}),
            );
        }
        let Some(path) = req.path.strip_prefix("/api/v1") else {
            return not_found();
        };
        match (req.method.as_str(), path) {
            ("GET", "/instance-types") => Reply::json(200, instance_types()),
            ("GET", "/instances") => {
                let data: Vec<Value> = self
                    .machines
                    .iter()
                    .filter_map(|m| self.render(m))
                    .collect();
                Reply::json(200, json!({ "data": data }))
            }
            ("GET", p) if p.starts_with("/instances/") => {
                let id = &p["/instances/".len()..];
                match self
                    .machines
                    .iter()
                    .find(|m| m.id == id)
                    .and_then(|m| self.render(m))
                {
                    Some(v) => Reply::json(200, json!({ "data": v })),
                    None => not_found(),
                }
            }
            ("POST", "/instance-operations/launch") => {
                let b = &req.body;
                let (Some(region), Some(ty), Some(keys)) = (
                    b["region_name"].as_str(),
                    b["instance_type_name"].as_str(),
                    b["ssh_key_names"].as_array(),
                ) else {
                    return err(400, "global/invalid-parameters", "Invalid request body");
                };
                if keys.len() != 1 {
                    return err(
                        400,
                        "global/invalid-parameters",
                        "Exactly one SSH key must be specified",
                    );
                }
                let key = keys[0].as_str().unwrap_or("");
                if !self.keys.iter().any(|(_, n, _)| n == key) {
                    return err(400, "global/invalid-parameters", "SSH key does not exist");
                }
                let fs: Vec<String> = b["file_system_names"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for name in &fs {
                    if !self
                        .filesystems
                        .iter()
                        .any(|f| &f.name == name && f.region == region)
                    {
                        return err(
                            400,
                            "global/invalid-parameters",
                            "File system does not exist in the launch region",
                        );
                    }
                }
                if self.no_capacity.iter().any(|(t, r)| t == ty && r == region) {
                    return err(
                        400,
                        "instance-operations/launch/insufficient-capacity",
                        "Not enough capacity to fulfill launch request.",
                    );
                }
                let n = self.machines.len();
                let id = format!("0920582c7ff041399e34823a0be6{n:04x}");
                self.machines.push(Machine {
                    id: id.clone(),
                    name: b["name"].as_str().unwrap_or("").to_string(),
                    region: region.into(),
                    instance_type: ty.into(),
                    ssh_key_names: vec![key.to_string()],
                    launched: Instant::now(),
                    terminated: None,
                    restarts: 0,
                    n,
                    file_system_names: fs,
                });
                Reply::json(200, json!({"data": {"instance_ids": [id]}}))
            }
            ("POST", op @ ("/instance-operations/terminate" | "/instance-operations/restart")) => {
                let ids: Vec<String> = req.body["instance_ids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut out = vec![];
                for id in &ids {
                    let Some(i) = self
                        .machines
                        .iter()
                        .position(|m| &m.id == id && m.terminated.is_none())
                    else {
                        return not_found();
                    };
                    if op.ends_with("terminate") {
                        self.machines[i].terminated = Some(Instant::now());
                    } else {
                        self.machines[i].restarts += 1;
                    }
                    out.push(self.render(&self.machines[i].clone()).unwrap());
                }
                let field = if op.ends_with("terminate") {
                    "terminated_instances"
                } else {
                    "restarted_instances"
                };
                Reply::json(200, json!({"data": { field: out }}))
            }
            ("GET", "/file-systems") => {
                let data: Vec<Value> = self
                    .filesystems
                    .iter()
                    .map(|f| render_filesystem(f, self.in_use(f)))
                    .collect();
                Reply::json(200, json!({ "data": data }))
            }
            ("POST", "/filesystems") => {
                let (Some(name), Some(region)) =
                    (req.body["name"].as_str(), req.body["region"].as_str())
                else {
                    return err(
                        400,
                        "global/invalid-parameters",
                        "name and region are required",
                    );
                };
                if !valid_filesystem_name(name) {
                    return err(400, "global/invalid-parameters", "Invalid filesystem name");
                }
                if self.filesystems.iter().any(|f| f.name == name) {
                    return err(
                        400,
                        "global/duplicate",
                        "A filesystem with this name already exists",
                    );
                }
                self.filesystems_made += 1;
                let f = Filesystem {
                    id: format!("398578a2336b49079e74043f0bd2{:04x}", self.filesystems_made),
                    name: name.into(),
                    region: region.into(),
                };
                let body = render_filesystem(&f, false);
                self.filesystems.push(f);
                Reply::json(200, json!({ "data": body }))
            }
            ("DELETE", p) if p.starts_with("/filesystems/") => {
                let id = &p["/filesystems/".len()..];
                let Some(i) = self.filesystems.iter().position(|f| f.id == id) else {
                    return err(
                        404,
                        "global/object-does-not-exist",
                        "Filesystem was not found.",
                    );
                };
                if self.in_use(&self.filesystems[i]) {
                    return err(
                        400,
                        "filesystems/filesystem-in-use",
                        "Filesystem is in use and cannot be deleted.",
                    );
                }
                self.filesystems.remove(i);
                Reply::json(200, json!({"data": {"deleted_ids": [id]}}))
            }
            ("GET", "/ssh-keys") => {
                let data: Vec<Value> = self
                    .keys
                    .iter()
                    .map(|(id, name, pk)| json!({"id": id, "name": name, "public_key": pk}))
                    .collect();
                Reply::json(200, json!({ "data": data }))
            }
            ("POST", "/ssh-keys") => {
                let (Some(name), Some(pk)) =
                    (req.body["name"].as_str(), req.body["public_key"].as_str())
                else {
                    return err(
                        400,
                        "global/invalid-parameters",
                        "name and public_key are required",
                    );
                };
                if self.keys.iter().any(|(_, n, _)| n == name) {
                    return err(
                        400,
                        "global/invalid-parameters",
                        "An SSH key with this name already exists",
                    );
                }
                let id = format!("ddf9a910ceb744a0bb95242cbba6{:04x}", self.keys.len());
                self.keys.push((id.clone(), name.into(), pk.into()));
                Reply::json(
                    200,
                    json!({"data": {"id": id, "name": name, "public_key": pk}}),
                )
            }
            _ => not_found(),
        }
    }
}
