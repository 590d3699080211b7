//! A fake Verda (DataCrunch) public API under `/v1`: OAuth2 client
//! credentials at `/v1/oauth2/token`, bearer tokens, bare arrays as list
//! answers, created ids as plain text, `PUT /instances` actions, and
//! machines that go `ordered` → `provisioning` → `running` → `deleting` →
//! gone.
//!
//! Volumes (`/v1/volumes`): made in a location (`type` NVMe, HDD or
//! NVMe_Shared), `ordered` for a moment then `detached`; a machine created
//! with `existing_volumes` of its location has them `attached` until it is
//! deleted (without `volume_ids`, which would delete them too); an
//! attached volume cannot be deleted; `DELETE /volumes/{id}` without
//! `is_permanent` moves the volume to the trash (`deleted`), with it the
//! volume is gone.

use std::time::Instant;

use serde_json::{json, Value};

use super::{ip, Cloud, Recorded, Reply, Timing};

/// The credentials the fake accepts.
pub const CLIENT_ID: &str = "verda-client-id";
pub const CLIENT_SECRET: &str = "verda-client-secret-0123";

/// A machine at the fake.
#[derive(Clone, Debug)]
pub struct Machine {
    pub id: String,
    pub hostname: String,
    pub instance_type: String,
    pub location: String,
    pub ssh_key_ids: Vec<String>,
    pub launched: Instant,
    pub deleted: Option<Instant>,
    pub restarts: u32,
    pub n: usize,
    /// Ids of the volumes attached at create.
    pub volumes: Vec<String>,
}

/// A volume at the fake.
#[derive(Clone, Debug)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub size: i64,
    pub location: String,
    pub made: Instant,
    /// In the trash.
    pub trashed: bool,
}

/// The fake's state and knobs.
#[derive(Default)]
pub struct Verda {
    pub machines: Vec<Machine>,
    pub volumes: Vec<Volume>,
    pub keys: Vec<(String, String, String)>,
    pub tokens: Vec<String>,
    pub timing: Timing,
    /// `(type, location)` pairs out of stock.
    pub no_capacity: Vec<(String, String)>,
    /// Stored startup scripts: `(id, name, script)`.
    pub scripts: Vec<(String, String, String)>,
    pub scripts_made: usize,
}

impl Verda {
    /// `GET /v1/instance-availability`: the types in stock per location.
    pub fn availability(&self) -> Value {
        let fin: Vec<&str> = ["1A6000.10V", "CPU.4V.16G"]
            .into_iter()
            .filter(|t| {
                !self
                    .no_capacity
                    .iter()
                    .any(|(nt, l)| nt == t && l == "FIN-01")
            })
            .collect();
        json!([
            {"location_code": "FIN-01", "availabilities": fin},
            {"location_code": "ICE-01", "availabilities": ["8H100.80S.176V"]}
        ])
    }

    /// Puts a machine at the fake as if launched outside this server.
    pub fn plant(&mut self, hostname: &str) -> String {
        let n = self.machines.len();
        let id = format!("a3b1c2d4-0000-4000-8000-{n:012}");
        self.machines.push(Machine {
            id: id.clone(),
            hostname: hostname.into(),
            instance_type: "1A6000.10V".into(),
            location: "FIN-01".into(),
            ssh_key_ids: vec![],
            launched: Instant::now() - self.timing.boot - self.timing.ip_after,
            deleted: None,
            restarts: 0,
            n,
            volumes: vec![],
        });
        id
    }

    /// The live machine a volume is attached to.
    pub fn attached_to(&self, volume: &str) -> Option<&Machine> {
        self.machines
            .iter()
            .find(|m| m.deleted.is_none() && m.volumes.iter().any(|v| v == volume))
    }

    fn render_volume(&self, v: &Volume) -> Value {
        let at = self.attached_to(&v.id);
        let status = if v.trashed {
            "deleted"
        } else if at.is_some() {
            "attached"
        } else if v.made.elapsed() < self.timing.boot / 2 {
            "ordered"
        } else {
            "detached"
        };
        json!({
            "id": v.id,
            "status": status,
            "name": v.name,
            "size": v.size,
            "type": v.kind,
            "is_os_volume": false,
            "created_at": "2026-11-27T10:00:00.000Z",
            "target": at.map(|_| "vdb"),
            "location": v.location,
            "instance_id": at.map(|m| m.id.clone()),
            "ssh_key_ids": [],
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
            Some(_) => Some("deleting"),
            None if age < self.timing.boot / 2 => Some("ordered"),
            None if age < self.timing.boot => Some("provisioning"),
            None => Some("running"),
        }
    }

    fn render(&self, m: &Machine) -> Option<Value> {
        let status = self.status(m)?;
        let ip =
            (status == "running" && m.launched.elapsed() >= self.timing.ip_after).then(|| ip(m.n));
        Some(json!({
            "id": m.id,
            "instance_type": m.instance_type,
            "image": "ubuntu-22.04-cuda-12.4-docker",
            "price_per_hour": 0.79,
            "hostname": m.hostname,
            "description": m.hostname,
            "ip": ip,
            "status": status,
            "created_at": "2026-11-27T10:00:00.000Z",
            "ssh_key_ids": m.ssh_key_ids,
            "location": m.location,
            "is_spot": false,
        }))
    }
}

fn err(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"code": code, "message": message}))
}

/// `GET /v1/instance-types`: Verda's published instance types (prices and
/// sizes as its price list gives them).
pub fn instance_types() -> Value {
    json!([
        {
            "id": "2e5e2b5c-6d3e-4c8b-9d44-1a2b3c4d5e6f",
            "instance_type": "1A6000.10V",
            "price_per_hour": "0.79",
            "spot_price": "0.29",
            "description": "Dedicated Hardware Instance",
            "cpu": {"description": "10 CPU", "number_of_cores": 10},
            "gpu": {"description": "1x RTX A6000 48GB", "number_of_gpus": 1},
            "memory": {"description": "60GB RAM", "size_in_gigabytes": 60},
            "gpu_memory": {"description": "48GB VRAM", "size_in_gigabytes": 48},
            "storage": {"description": "dynamic"},
            "model": "RTX A6000",
            "name": "RTX A6000 48GB",
            "currency": "usd",
            "best_for": ["Gargantuan ML models", "Multi-GPU training"],
            "p2p": "",
            "manufacturer": "NVIDIA",
            "display_name": "RTX A6000",
            "supported_os": ["ubuntu-22.04-cuda-12.4-docker"]
        },
        {
            "id": "7a1c0d55-8a0f-4f3a-b3f2-5c6d7e8f9a0b",
            "instance_type": "8H100.80S.176V",
            "price_per_hour": 21.52,
            "spot_price": 8.0,
            "description": "Dedicated Hardware Instance",
            "cpu": {"description": "176 CPU", "number_of_cores": 176},
            "gpu": {"description": "8x H100 SXM5 80GB", "number_of_gpus": 8},
            "memory": {"description": "1480GB RAM", "size_in_gigabytes": 1480},
            "gpu_memory": {"description": "640GB VRAM", "size_in_gigabytes": 640},
            "storage": {"description": "dynamic"},
            "model": "H100",
            "name": "H100 SXM5 80GB",
            "currency": "usd",
            "best_for": ["Gargantuan ML models", "Multi-GPU training"],
            "p2p": "900 GB/s",
            "manufacturer": "NVIDIA",
            "display_name": "H100 SXM5",
            "supported_os": ["ubuntu-22.04-cuda-12.4-docker"]
        },
        {
            "id": "0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e",
            "instance_type": "CPU.4V.16G",
            "price_per_hour": "0.03",
            "spot_price": "0.01",
            "description": "CPU Node",
            "cpu": {"description": "4 CPU", "number_of_cores": 4},
            "gpu": {"description": "", "number_of_gpus": 0},
            "memory": {"description": "16GB RAM", "size_in_gigabytes": 16},
            "gpu_memory": {"description": "", "size_in_gigabytes": 0},
            "storage": {"description": "dynamic"},
            "model": "CPU Node",
            "name": "CPU Node",
            "currency": "usd",
            "best_for": ["Running services"],
            "p2p": "",
            "manufacturer": "AMD",
            "display_name": "CPU Node",
            "supported_os": ["ubuntu-22.04"]
        }
    ])
}

impl Cloud for Verda {
    fn rate_limited(&self) -> Value {
        json!({"code": "too_many_requests", "message": "Rate limit exceeded"})
    }

    fn server_error(&self) -> Value {
        json!({"code": "internal_server_error", "message": "Something went wrong"})
    }

    fn handle(&mut self, req: &Recorded) -> Reply {
        let Some(path) = req.path.strip_prefix("/v1") else {
            return err(404, "not_found", "Not found");
        };
        if (req.method.as_str(), path) == ("POST", "/oauth2/token") {
            let b = &req.body;
            if b["grant_type"] != "client_credentials"
                || b["client_id"] != CLIENT_ID
                || b["client_secret"] != CLIENT_SECRET
            {
                return err(401, "unauthorized_request", "Invalid client credentials");
            }
            let token = format!("verda-token-{}", self.tokens.len());
            self.tokens.push(token.clone());
            return Reply::json(
                200,
                json!({
                    "access_token": token,
                    "refresh_token": "refresh",
                    "scope": "cloud-api-v1",
                    "token_type": "Bearer",
                    "expires_in": 3600
                }),
            );
        }
        let auth = req.header("authorization").unwrap_or("");
        if !self.tokens.iter().any(|t| auth == format!("Bearer {t}")) {
            return err(
                401,
                "unauthorized_request",
                "Access token is invalid or expired",
            );
        }
        match (req.method.as_str(), path) {
            ("GET", "/instance-types") => Reply::json(200, instance_types()),
            ("GET", "/instance-availability") => Reply::json(200, self.availability()),
            ("GET", "/locations") => Reply::json(
                200,
                json!([
                    {"code": "FIN-01", "name": "Finland 1", "country_code": "FI"},
                    {"code": "ICE-01", "name": "Iceland 1", "country_code": "IS"}
                ]),
            ),
            ("GET", p) if p.starts_with("/instance-availability/") => {
                let ty = &p["/instance-availability/".len()..];
                let loc = req
                    .query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("location_code="))
                    .unwrap_or("FIN-01");
                let stocked = match loc {
                    "FIN-01" => ty == "1A6000.10V" || ty == "CPU.4V.16G",
                    "ICE-01" => ty == "8H100.80S.176V",
                    _ => false,
                };
                let out = stocked && !self.no_capacity.iter().any(|(t, l)| t == ty && l == loc);
                Reply::json(200, json!(out))
            }
            ("GET", "/instances") => {
                let data: Vec<Value> = self
                    .machines
                    .iter()
                    .filter_map(|m| self.render(m))
                    .collect();
                Reply::json(200, Value::Array(data))
            }
            ("GET", p) if p.starts_with("/instances/") => {
                let id = &p["/instances/".len()..];
                match self
                    .machines
                    .iter()
                    .find(|m| m.id == id)
                    .and_then(|m| self.render(m))
                {
                    Some(v) => Reply::json(200, v),
                    None => err(404, "not_found", "Instance not found"),
                }
            }
            ("POST", "/instances") => {
                let b = &req.body;
                let (Some(ty), Some(_image), Some(host)) = (
                    b["instance_type"].as_str(),
                    b["image"].as_str(),
                    b["hostname"].as_str(),
                ) else {
                    return err(
                        400,
                        "invalid_request",
                        "instance_type, image and hostname are required",
                    );
                };
                let loc = b["location_code"].as_str().unwrap_or("FIN-01");
                let volumes: Vec<String> = b["existing_volumes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for id in &volumes {
                    match self.volumes.iter().find(|v| &v.id == id && !v.trashed) {
                        None => return err(404, "not_found", "Volume not found"),
                        Some(v) if v.location != loc => {
                            return err(
                                400,
                                "invalid_request",
                                "Volume is in another location than the instance",
                            )
                        }
                        Some(v) if self.attached_to(&v.id).is_some() => {
                            return err(400, "invalid_request", "Volume is already attached")
                        }
                        Some(_) => {}
                    }
                }
                if let Some(script) = b["startup_script_id"].as_str() {
                    if !self.scripts.iter().any(|(id, _, _)| id == script) {
                        return err(404, "not_found", "Startup script not found");
                    }
                }
                if self.no_capacity.iter().any(|(t, l)| t == ty && l == loc) {
                    return err(
                        400,
                        "invalid_request",
                        "Not enough resources available to deploy this instance",
                    );
                }
                let n = self.machines.len();
                let id = format!("a3b1c2d4-0000-4000-8000-{n:012}");
                self.machines.push(Machine {
                    id: id.clone(),
                    hostname: host.into(),
                    instance_type: ty.into(),
                    location: loc.into(),
                    ssh_key_ids: b["ssh_key_ids"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    launched: Instant::now(),
                    deleted: None,
                    restarts: 0,
                    n,
                    volumes,
                });
                Reply::text(202, id)
            }
            ("PUT", "/instances") => {
                let b = &req.body;
                let ids: Vec<String> = match &b["id"] {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                    _ => return err(400, "invalid_request", "id is required"),
                };
                let action = b["action"].as_str().unwrap_or("");
                for id in ids {
                    let Some(i) = self
                        .machines
                        .iter()
                        .position(|m| m.id == id && m.deleted.is_none())
                    else {
                        return err(404, "not_found", "Instance not found");
                    };
                    match action {
                        "delete" => self.machines[i].deleted = Some(Instant::now()),
                        "restart" => self.machines[i].restarts += 1,
                        _ => return err(400, "invalid_request", "Unknown action"),
                    }
                }
                Reply::text(202, "")
            }
            ("GET", "/volumes") => {
                let data: Vec<Value> = self.volumes.iter().map(|v| self.render_volume(v)).collect();
                Reply::json(200, Value::Array(data))
            }
            ("POST", "/volumes") => {
                let b = &req.body;
                let (Some(kind), Some(name), Some(size), Some(loc)) = (
                    b["type"].as_str(),
                    b["name"].as_str(),
                    b["size"].as_i64(),
                    b["location_code"].as_str(),
                ) else {
                    return err(
                        400,
                        "invalid_request",
                        "type, name, size and location_code are required",
                    );
                };
                if !["NVMe", "HDD", "NVMe_Shared"].contains(&kind) {
                    return err(400, "invalid_request", "Unknown volume type");
                }
                if !["FIN-01", "FIN-02", "FIN-03", "ICE-01"].contains(&loc) {
                    return err(400, "invalid_request", "Unknown location");
                }
                if size < 1 {
                    return err(400, "invalid_request", "size must be positive");
                }
                let id = format!("7e2d9c4b-0000-4000-8000-{:012}", self.volumes.len());
                self.volumes.push(Volume {
                    id: id.clone(),
                    name: name.into(),
                    kind: kind.into(),
                    size,
                    location: loc.into(),
                    made: Instant::now(),
                    trashed: false,
                });
                Reply::text(202, id)
            }
            (method, p) if p.starts_with("/volumes/") => {
                let id = &p["/volumes/".len()..];
                let Some(i) = self.volumes.iter().position(|v| v.id == id) else {
                    return err(404, "not_found", "Volume not found");
                };
                match method {
                    "GET" => Reply::json(200, self.render_volume(&self.volumes[i])),
                    "DELETE" => {
                        if self.attached_to(id).is_some() {
                            return err(
                                400,
                                "invalid_request",
                                "Volume is attached to an instance; detach it first",
                            );
                        }
                        if req.body["is_permanent"] == true {
                            self.volumes.remove(i);
                        } else {
                            self.volumes[i].trashed = true;
                        }
                        Reply::text(202, "")
                    }
                    _ => err(405, "invalid_request", "Method not allowed"),
                }
            }
            ("GET", "/scripts") => {
                let data: Vec<Value> = self
                    .scripts
                    .iter()
                    .map(|(id, name, script)| json!({"id": id, "name": name, "script": script}))
                    .collect();
                Reply::json(200, Value::Array(data))
            }
            ("POST", "/scripts") => {
                let (Some(name), Some(script)) =
                    (req.body["name"].as_str(), req.body["script"].as_str())
                else {
                    return err(400, "invalid_request", "name and script are required");
                };
                let id = format!("7d2a9b3c-0000-4000-8000-{:012}", self.scripts_made);
                self.scripts_made += 1;
                self.scripts.push((id.clone(), name.into(), script.into()));
                Reply::text(201, id)
            }
            ("DELETE", "/scripts") => {
                let Some(ids) = req.body["scripts"].as_array() else {
                    return err(400, "invalid_request", "scripts is required");
                };
                self.scripts
                    .retain(|(id, _, _)| !ids.iter().any(|x| x.as_str() == Some(id)));
                Reply::text(200, "")
            }
            ("GET", "/sshkeys") => {
                let data: Vec<Value> = self
                    .keys
                    .iter()
                    .map(|(id, name, k)| json!({"id": id, "name": name, "key": k}))
                    .collect();
                Reply::json(200, Value::Array(data))
            }
            ("POST", "/sshkeys") => {
                let (Some(name), Some(k)) = (req.body["name"].as_str(), req.body["key"].as_str())
                else {
                    return err(400, "invalid_request", "name and key are required");
                };
                let id = format!("5c8e1f2a-0000-4000-8000-{:012}", self.keys.len());
                self.keys.push((id.clone(), name.into(), k.into()));
                Reply::text(201, id)
            }
            _ => err(404, "not_found", "Not found"),
        }
    }
}
