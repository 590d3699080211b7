//! A fake Vast.ai API v0 under `/api/v0`: bearer-key auth, an offer search
//! that honours the `q` filters Parasol sends (`eq` on fields, the
//! `verified`/`rentable`/`rented` flags), accepting an offer turns it into
//! an instance labelled as asked, or answers `no_such_ask` when someone
//! else took it first. Instances start with no status, run without ports,
//! then with port 22 mapped; a destroyed instance is gone at once. Vast
//! sends 429 without `Retry-After`.

use std::time::Instant;

use serde_json::{json, Value};

use super::openapi::{docs, Document};
use super::{ip, Cloud, Recorded, Reply, Timing};

/// The key the fake accepts.
pub const KEY: &str = "vast-test-key-89ab";

/// An offer (an "ask") at the fake.
#[derive(Clone, Debug)]
pub struct Ask {
    pub id: i64,
    pub gpu_name: String,
    pub num_gpus: i64,
    pub dph_total: f64,
    pub min_bid: f64,
    pub geolocation: String,
    pub verified: bool,
    /// VRAM per GPU, MB, as the host reports it.
    pub gpu_ram: i64,
    pub cpu_cores_effective: f64,
    /// MB.
    pub cpu_ram: i64,
    pub disk_space: f64,
}

/// VRAM per GPU (MB) hosts report for each `gpu_name` the fake sells:
/// the cards' published sizes (RTX 4090 24 GB, H100 SXM 80 GB, A100 SXM4
/// 40 or 80 GB, Quadro RTX 8000 48 GB), as MiB the driver counts.
fn gpu_ram(gpu: &str, eighty: bool) -> i64 {
    match gpu {
        "RTX 4090" => 24564,
        "H100 SXM" => 81559,
        "A100 SXM4" if eighty => 81920,
        "A100 SXM4" => 40960,
        "Q RTX 8000" => 49152,
        other => panic!("the fake sells no {other}"),
    }
}

/// An instance at the fake.
#[derive(Clone, Debug)]
pub struct Instance {
    pub id: i64,
    pub label: Option<String>,
    pub ask: i64,
    pub is_bid: bool,
    pub body: Value,
    pub launched: Instant,
    pub restarts: u32,
    pub n: usize,
}

/// The fake's state and knobs.
pub struct Vastai {
    pub asks: Vec<Ask>,
    pub instances: Vec<Instance>,
    pub ssh_keys: Vec<String>,
    pub timing: Timing,
    /// The next N accepts find their offer taken by someone else (it
    /// leaves the market).
    pub taken_next: u32,
}

impl Default for Vastai {
    fn default() -> Self {
        let ask = |id, gpu: &str, n: i64, dph, bid, geo: &str, verified| Ask {
            id,
            gpu_name: gpu.into(),
            num_gpus: n,
            dph_total: dph,
            min_bid: bid,
            geolocation: geo.into(),
            verified,
            gpu_ram: gpu_ram(gpu, id % 2 == 0),
            // Hosts differ: each offer its own CPU share.
            cpu_cores_effective: (8 * n + id % 7) as f64,
            cpu_ram: 32768 * n + 1024 * (id % 5),
            disk_space: 250.5 * n as f64,
        };
        Self {
            asks: vec![
                ask(5001, "RTX 4090", 1, 0.40, 0.20, "California, US", true),
                ask(5002, "RTX 4090", 1, 0.35, 0.18, "Texas, US", true),
                ask(5003, "RTX 4090", 1, 0.31, 0.15, "Quebec, CA", true),
                ask(5004, "RTX 4090", 1, 0.30, 0.12, "Sweden, SE", true),
                // Cheapest of all, but unverified: never offered.
                ask(5005, "RTX 4090", 1, 0.10, 0.05, "Oregon, US", false),
                ask(5006, "H100 SXM", 8, 19.20, 12.0, "Norway, NO", true),
                ask(5007, "H100 SXM", 8, 21.60, 14.0, "Japan, JP", true),
                // One gpu_name, two sizes: even ids are the 80 GB part.
                ask(5008, "A100 SXM4", 8, 11.20, 7.0, "Texas, US", true),
                ask(5010, "A100 SXM4", 8, 10.40, 6.5, "Sweden, SE", true),
                ask(5009, "A100 SXM4", 8, 6.40, 4.0, "Texas, US", true),
                // No Shadeform name: counted, not offered.
                ask(5011, "Q RTX 8000", 1, 0.25, 0.12, "Oregon, US", true),
            ],
            instances: Vec::new(),
            ssh_keys: Vec::new(),
            timing: Timing::default(),
            taken_next: 0,
        }
    }
}

impl Vastai {
    /// Puts a running instance at the fake as if launched elsewhere.
    pub fn plant(&mut self, label: &str) -> i64 {
        let n = self.instances.len();
        let id = 9000 + n as i64;
        self.instances.push(Instance {
            id,
            label: Some(label.to_string()),
            ask: 0,
            is_bid: false,
            body: Value::Null,
            launched: Instant::now() - self.timing.boot - self.timing.ip_after,
            restarts: 0,
            n,
        });
        id
    }

    /// Instances that exist.
    pub fn live(&self) -> Vec<&Instance> {
        self.instances.iter().collect()
    }

    /// Removes every offer of `gpu` (as if all were rented).
    pub fn sell_out(&mut self, gpu: &str) {
        self.asks.retain(|a| a.gpu_name != gpu);
    }

    fn render(&self, i: &Instance) -> Value {
        let up = i.launched.elapsed();
        let status = if up < self.timing.boot {
            Value::Null
        } else {
            json!("running")
        };
        let ports = if up >= self.timing.ip_after {
            json!({"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": (41000 + i.n).to_string()}]})
        } else {
            json!({})
        };
        json!({
            "id": i.id,
            "label": i.label,
            "actual_status": status,
            "intended_status": "running",
            "cur_state": "running",
            "public_ipaddr": format!("{}\n", ip(i.n)),
            "ssh_host": format!("ssh{}.vast.ai", i.n % 9),
            "ssh_port": 20000 + i.n,
            "ports": ports,
            "is_bid": i.is_bid,
            "machine_id": 100 + i.ask,
        })
    }

    /// `GET /api/v1/instances/`: by id, `limit` a page (25 at most, as
    /// documented), `next_token` naming the last id shown while more follow.
    fn list_v1(&self, req: &Recorded) -> Reply {
        let mut limit = 25;
        let mut after = None;
        for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
            match &*k {
                "limit" => limit = v.parse::<usize>().unwrap_or(25).clamp(1, 25),
                "after_token" => match v.strip_prefix("after-").and_then(|n| n.parse::<i64>().ok())
                {
                    Some(n) => after = Some(n),
                    None => return err(400, "invalid_args", "invalid after_token"),
                },
                _ => {}
            }
        }
        let mut all: Vec<&Instance> = self
            .instances
            .iter()
            .filter(|i| after.is_none_or(|a| i.id > a))
            .collect();
        all.sort_by_key(|i| i.id);
        let page: Vec<Value> = all.iter().take(limit).map(|i| self.render(i)).collect();
        let next = (all.len() > limit).then(|| format!("after-{}", all[limit - 1].id));
        Reply::json(
            200,
            json!({"success": true, "instances_found": page.len(), "total_instances": self.instances.len(),
                   "next_token": next, "instances": page}),
        )
    }

    fn search(&self, q: &Value) -> Vec<Value> {
        let mut asks: Vec<&Ask> = self
            .asks
            .iter()
            .filter(|a| {
                let eq = |field: &str, v: Value| q[field]["eq"].is_null() || q[field]["eq"] == v;
                eq("verified", json!(a.verified))
                    && eq("gpu_name", json!(a.gpu_name))
                    && eq("num_gpus", json!(a.num_gpus))
            })
            .collect();
        asks.sort_by(|a, b| a.dph_total.total_cmp(&b.dph_total));
        asks.iter()
            .map(|a| {
                json!({
                    "id": a.id, "ask_contract_id": a.id, "gpu_name": a.gpu_name,
                    "num_gpus": a.num_gpus, "gpu_ram": a.gpu_ram,
                    "gpu_total_ram": a.gpu_ram * a.num_gpus,
                    "cpu_cores_effective": a.cpu_cores_effective,
                    "cpu_ram": a.cpu_ram, "disk_space": a.disk_space, "dph_total": a.dph_total,
                    "min_bid": a.min_bid, "geolocation": a.geolocation,
                    "verified": a.verified, "rentable": true, "rented": false,
                    "reliability2": 0.995
                })
            })
            .collect()
    }
}

fn err(status: u16, error: &str, msg: &str) -> Reply {
    Reply::json(
        status,
        json!({"success": false, "error": error, "msg": msg}),
    )
}

impl Cloud for Vastai {
    fn rate_limited(&self) -> Value {
        json!({"success": false, "error": "too_many_requests", "msg": "API requests too frequent; slow down"})
    }

    fn server_error(&self) -> Value {
        json!({"success": false, "error": "server_error", "msg": "Internal error"})
    }

    fn documents(&self) -> Vec<&'static Document> {
        vec![docs::vastai()]
    }

    fn handle(&mut self, req: &Recorded) -> Reply {
        if req.header("authorization") != Some(&*format!("Bearer {KEY}")) {
            return err(401, "invalid_user_key", "Invalid user key");
        }
        if req.method == "GET" && req.path.trim_end_matches('/') == "/api/v1/instances" {
            return self.list_v1(req);
        }
        let Some(path) = req.path.strip_prefix("/api/v0") else {
            return err(404, "not_found", "Not found");
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segs.as_slice()) {
            // The search query is the body (`searchOffers`).
            ("POST", ["bundles"]) => Reply::json(200, json!({"offers": self.search(&req.body)})),
            ("PUT", ["asks", id]) => {
                let Ok(id) = id.parse::<i64>() else {
                    return err(400, "invalid_args", "bad ask id");
                };
                // An offer gone is a 404 (`createInstance` lists 400 only
                // for invalid arguments and prices).
                let Some(pos) = self.asks.iter().position(|a| a.id == id) else {
                    return err(
                        404,
                        "no_such_ask",
                        &format!("Instance type {id} is no longer available."),
                    );
                };
                if self.taken_next > 0 {
                    self.taken_next -= 1;
                    self.asks.remove(pos);
                    return err(
                        404,
                        "no_such_ask",
                        &format!("Instance type {id} is no longer available."),
                    );
                }
                if req.body["image"].as_str().is_none_or(str::is_empty) {
                    return err(400, "invalid_args", "image is required");
                }
                self.asks.remove(pos);
                let n = self.instances.len();
                let contract = 7000 + n as i64;
                self.instances.push(Instance {
                    id: contract,
                    label: req.body["label"].as_str().map(str::to_string),
                    ask: id,
                    is_bid: req.body.get("price").is_some(),
                    body: req.body.clone(),
                    launched: Instant::now(),
                    restarts: 0,
                    n,
                });
                Reply::json(200, json!({"success": true, "new_contract": contract}))
            }
            ("DELETE", ["instances", id]) => {
                let before = self.instances.len();
                self.instances.retain(|i| i.id.to_string() != *id);
                if self.instances.len() == before {
                    return err(404, "no_such_instance", "Instance not found");
                }
                Reply::json(200, json!({"success": true}))
            }
            ("PUT", ["instances", "reboot", id]) => {
                match self.instances.iter_mut().find(|i| i.id.to_string() == *id) {
                    Some(i) => {
                        i.restarts += 1;
                        Reply::json(200, json!({"success": true}))
                    }
                    None => err(404, "no_such_instance", "Instance not found"),
                }
            }
            ("GET", ["ssh"]) => {
                let keys: Vec<Value> = self
                    .ssh_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| json!({"id": i + 1, "key": k}))
                    .collect();
                Reply::json(200, json!(keys))
            }
            ("POST", ["ssh"]) => {
                let Some(k) = req.body["ssh_key"].as_str() else {
                    return err(400, "invalid_args", "ssh_key is required");
                };
                self.ssh_keys.push(k.to_string());
                Reply::json(
                    200,
                    json!({"success": true, "key": {"id": self.ssh_keys.len(), "public_key": k}}),
                )
            }
            _ => err(404, "not_found", "Not found"),
        }
    }
}
