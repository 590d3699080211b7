//! A fake RunPod: the REST API v1 under `/v1` and the GraphQL API at
//! `/graphql`, bearer-key auth, pods that go from no public IP to a public
//! IP to a mapped SSH port, `TERMINATED` while being removed, then gone.
//! A create with no machine left answers as RunPod does: 500 with "There
//! are no longer any instances available ...".
//!
//! Network volumes (`/v1/networkvolumes`) live in a data center with
//! `storageSupport`, 0 to 4000 GB; a pod created with `networkVolumeId`
//! must be in the volume's data center and shows it as `networkVolume`.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use super::openapi::{docs, Document};
use super::{ip, Cloud, Recorded, Reply, Timing};

/// The key the fake accepts.
pub const KEY: &str = "runpod-test-key-4567";

/// A pod at the fake.
#[derive(Clone, Debug)]
pub struct Pod {
    pub id: String,
    pub name: String,
    pub gpu_type: String,
    pub gpu_count: i64,
    pub data_center: String,
    pub interruptible: bool,
    pub env: BTreeMap<String, String>,
    pub launched: Instant,
    pub terminated: Option<Instant>,
    pub restarts: u32,
    pub n: usize,
    /// The network volume mounted, by id.
    pub network_volume: Option<String>,
}

/// A network volume at the fake.
#[derive(Clone, Debug)]
pub struct NetworkVolume {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub data_center: String,
}

/// The fake's state and knobs.
#[derive(Default)]
pub struct Runpod {
    pub pods: Vec<Pod>,
    pub volumes: Vec<NetworkVolume>,
    /// Volumes made so far, for ids.
    pub volumes_made: u32,
    pub timing: Timing,
    /// `(gpu type id, data center)` pairs no machine is left for.
    pub no_capacity: Vec<(String, String)>,
}

/// A GPU type of the fake, with RunPod's published numbers (runpod.io
/// pricing, secure cloud; ids as the REST document's `gpuTypeIds` enum).
pub struct GpuType {
    pub id: &'static str,
    pub display_name: &'static str,
    pub manufacturer: &'static str,
    /// VRAM per GPU, GB.
    pub memory_in_gb: i64,
    pub max_gpu_count: i64,
    /// On-demand and lowest bid price per GPU, dollars per hour.
    pub price: f64,
    pub bid: f64,
    /// vCPUs and RAM (GB) a pod gets per GPU.
    pub vcpus: i64,
    pub ram: i64,
    /// Shadeform's name of the model; `None` for one it has no name for.
    pub shade: Option<&'static str>,
}

/// The GPU types.
pub const TYPES: &[GpuType] = &[
    GpuType {
        id: "NVIDIA RTX A6000",
        display_name: "RTX A6000",
        manufacturer: "NVIDIA",
        memory_in_gb: 48,
        max_gpu_count: 8,
        price: 0.49,
        bid: 0.25,
        vcpus: 9,
        ram: 50,
        shade: Some("A6000"),
    },
    GpuType {
        id: "NVIDIA H100 80GB HBM3",
        display_name: "H100 SXM",
        manufacturer: "NVIDIA",
        memory_in_gb: 80,
        max_gpu_count: 8,
        price: 2.69,
        bid: 1.75,
        vcpus: 20,
        ram: 125,
        shade: Some("H100"),
    },
    GpuType {
        id: "NVIDIA H100 PCIe",
        display_name: "H100 PCIe",
        manufacturer: "NVIDIA",
        memory_in_gb: 80,
        max_gpu_count: 8,
        price: 2.39,
        bid: 1.35,
        vcpus: 16,
        ram: 188,
        shade: Some("H100"),
    },
    GpuType {
        id: "NVIDIA H100 NVL",
        display_name: "H100 NVL",
        manufacturer: "NVIDIA",
        memory_in_gb: 94,
        max_gpu_count: 8,
        price: 2.59,
        bid: 1.55,
        vcpus: 16,
        ram: 94,
        shade: Some("H100"),
    },
    GpuType {
        id: "NVIDIA A100-SXM4-80GB",
        display_name: "A100 SXM",
        manufacturer: "NVIDIA",
        memory_in_gb: 80,
        max_gpu_count: 8,
        price: 1.49,
        bid: 0.95,
        vcpus: 16,
        ram: 125,
        shade: Some("A100_80G"),
    },
    GpuType {
        id: "NVIDIA GeForce RTX 4090",
        display_name: "RTX 4090",
        manufacturer: "NVIDIA",
        memory_in_gb: 24,
        max_gpu_count: 8,
        price: 0.69,
        bid: 0.35,
        vcpus: 6,
        ram: 41,
        shade: Some("RTX4090"),
    },
    GpuType {
        id: "AMD Instinct MI300X OAM",
        display_name: "MI300X",
        manufacturer: "AMD",
        memory_in_gb: 192,
        max_gpu_count: 8,
        price: 2.49,
        bid: 1.49,
        vcpus: 24,
        ram: 283,
        shade: Some("MI300X"),
    },
    GpuType {
        id: "NVIDIA RTX 2000 Ada Generation",
        display_name: "RTX 2000 Ada",
        manufacturer: "NVIDIA",
        memory_in_gb: 16,
        max_gpu_count: 4,
        price: 0.24,
        bid: 0.13,
        vcpus: 6,
        ram: 31,
        shade: None,
    },
];

/// Data centers: id, name, network volume support.
pub const DATA_CENTERS: &[(&str, &str, bool)] = &[
    ("US-KS-2", "US Kansas 2", true),
    ("EU-RO-1", "EU Romania 1", false),
    ("AP-JP-1", "AP Japan 1", false),
    ("EU-SE-1", "EU Sweden 1", true),
];

/// Pod stock per GPU type and data center: the secure-cloud level (`None`
/// where the data center offers the type only on the community cloud) and
/// the community level. The RTX 4090 in AP-JP-1 and EU-SE-1 is community
/// stock only, as in the report of issue 25.
pub const STOCK: &[(&str, &str, Option<&str>, &str)] = &[
    ("NVIDIA RTX A6000", "US-KS-2", Some("HIGH"), "HIGH"),
    ("NVIDIA RTX A6000", "EU-RO-1", Some("LOW"), "NONE"),
    ("NVIDIA H100 80GB HBM3", "US-KS-2", Some("NONE"), "NONE"),
    ("NVIDIA H100 80GB HBM3", "EU-RO-1", Some("MEDIUM"), "NONE"),
    ("NVIDIA A100-SXM4-80GB", "US-KS-2", Some("LOW"), "NONE"),
    ("NVIDIA H100 PCIe", "US-KS-2", Some("LOW"), "LOW"),
    ("NVIDIA H100 NVL", "EU-RO-1", Some("HIGH"), "NONE"),
    ("NVIDIA GeForce RTX 4090", "US-KS-2", Some("HIGH"), "HIGH"),
    ("NVIDIA GeForce RTX 4090", "AP-JP-1", None, "HIGH"),
    ("NVIDIA GeForce RTX 4090", "EU-SE-1", None, "MEDIUM"),
    ("AMD Instinct MI300X OAM", "EU-RO-1", Some("LOW"), "NONE"),
    (
        "NVIDIA RTX 2000 Ada Generation",
        "EU-SE-1",
        Some("HIGH"),
        "HIGH",
    ),
];

/// Whether a secure-cloud pod of `gpu` can start in `dc` now.
pub fn secure_stock(gpu: &str, dc: &str) -> bool {
    STOCK
        .iter()
        .any(|(g, d, s, _)| *g == gpu && *d == dc && s.is_some_and(|s| s != "NONE"))
}

impl Runpod {
    /// Puts a running pod at the fake as if launched outside this server.
    pub fn plant(&mut self, name: &str) -> String {
        let n = self.pods.len();
        let id = format!("planted{n:04}");
        self.pods.push(Pod {
            id: id.clone(),
            name: name.to_string(),
            gpu_type: "NVIDIA RTX A6000".into(),
            gpu_count: 1,
            data_center: "US-KS-2".into(),
            interruptible: false,
            env: BTreeMap::new(),
            launched: Instant::now() - self.timing.boot - self.timing.ip_after,
            terminated: None,
            restarts: 0,
            n,
            network_volume: None,
        });
        id
    }

    /// Pods not gone yet.
    pub fn live(&self) -> Vec<&Pod> {
        self.pods
            .iter()
            .filter(|p| self.status(p).is_some_and(|s| s != "TERMINATED"))
            .collect()
    }

    fn status(&self, p: &Pod) -> Option<&'static str> {
        match p.terminated {
            Some(t) if t.elapsed() >= self.timing.teardown => None,
            Some(_) => Some("TERMINATED"),
            None => Some("RUNNING"),
        }
    }

    fn render(&self, p: &Pod) -> Option<Value> {
        let status = self.status(p)?;
        let up = p.launched.elapsed();
        let running = status == "RUNNING";
        let public_ip = (running && up >= self.timing.boot).then(|| ip(p.n));
        let ports: BTreeMap<String, i64> = if running && up >= self.timing.ip_after {
            BTreeMap::from([("22".to_string(), 40000 + p.n as i64)])
        } else {
            BTreeMap::new()
        };
        let mut v = json!({
            "id": p.id,
            "name": p.name,
            "desiredStatus": status,
            "publicIp": public_ip,
            "portMappings": ports,
            "interruptible": p.interruptible,
            "gpuCount": p.gpu_count,
            "imageName": "runpod/pytorch",
            "machine": {"dataCenterId": p.data_center, "gpuTypeId": p.gpu_type},
            "costPerHr": 0.49,
            "env": p.env,
        });
        // The document types `networkVolume` as an object: a pod without
        // one has no field, not a null.
        if let Some(nv) = p
            .network_volume
            .as_ref()
            .and_then(|id| self.volumes.iter().find(|v| &v.id == id))
        {
            v["networkVolume"] = render_volume(nv);
        }
        Some(v)
    }

    fn graphql(&self, query: &str) -> Reply {
        if query.contains("dataCenters") {
            // GraphQL's availability does not say which cloud it counts:
            // community stock shows here too.
            let dcs: Vec<Value> = DATA_CENTERS
                .iter()
                .map(|(id, name, storage)| {
                    let gpus: Vec<Value> = STOCK
                        .iter()
                        .filter(|(_, d, _, _)| d == id)
                        .map(|(g, _, secure, community)| {
                            let any = secure.is_some_and(|s| s != "NONE") || *community != "NONE";
                            json!({"gpuTypeId": g, "available": any,
                                   "stockStatus": if any { json!("High") } else { Value::Null }})
                        })
                        .collect();
                    json!({"id": id, "name": name, "location": name, "storageSupport": storage,
                           "gpuAvailability": gpus})
                })
                .collect();
            return Reply::json(200, json!({"data": {"dataCenters": dcs}}));
        }
        if query.contains("gpuTypes") {
            let n: i64 = query
                .split("gpuCount:")
                .nth(1)
                .and_then(|r| {
                    r.trim()
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or(1);
            // `gpuTypes(input: {id: "..."})` asks for one type, as the
            // official client's `get_gpu` does.
            let only = query
                .split_once("input: {id: \"")
                .and_then(|(_, rest)| rest.split('"').next());
            let types: Vec<Value> = TYPES
                .iter()
                .filter(|t| only.is_none_or(|o| o == t.id))
                .map(|t| {
                    json!({
                        "id": t.id, "displayName": t.display_name, "memoryInGb": t.memory_in_gb,
                        "maxGpuCount": t.max_gpu_count, "manufacturer": t.manufacturer,
                        "secureCloud": true, "communityCloud": true,
                        "lowestPrice": {
                            "uninterruptablePrice": t.price, "minimumBidPrice": t.bid,
                            "minVcpu": t.vcpus * n, "minMemory": t.ram * n, "stockStatus": "High"
                        }
                    })
                })
                .collect();
            return Reply::json(200, json!({"data": {"gpuTypes": types}}));
        }
        Reply::json(
            400,
            json!({"errors": [{"message": "Cannot query this field"}]}),
        )
    }

    /// `GET /v2/catalog/gpus`, with the v2 document's rules for its query:
    /// `include=AVAILABILITY` needs `product`, and `product`, `count` and
    /// `cloud` are valid only with it (400 either way).
    fn catalog_gpus(&self, req: &Recorded) -> Reply {
        let q: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let include = get("include") == Some("AVAILABILITY");
        if let Some(i) = get("include").filter(|i| *i != "AVAILABILITY") {
            return problem(400, "Bad Request", &format!("unknown include {i:?}"));
        }
        if include && get("product").is_none() {
            return problem(400, "Bad Request", "include=AVAILABILITY requires product");
        }
        if !include
            && ["product", "count", "cloud"]
                .iter()
                .any(|k| get(k).is_some())
        {
            return problem(
                400,
                "Bad Request",
                "product, count and cloud are valid only with include=AVAILABILITY",
            );
        }
        let count: i64 = match get("count").map(str::parse) {
            None => 1,
            Some(Ok(n)) if n >= 1 => n,
            Some(_) => return problem(400, "Bad Request", "count must be an integer >= 1"),
        };
        let secure = match get("cloud") {
            None | Some("SECURE") => true,
            Some("COMMUNITY") => false,
            Some(c) => return problem(400, "Bad Request", &format!("unknown cloud {c:?}")),
        };
        let gpus: Vec<Value> = TYPES
            .iter()
            .map(|t| {
                let mut g = json!({
                    "id": t.id, "name": t.display_name, "pool": null,
                    "manufacturer": t.manufacturer, "memory": t.memory_in_gb,
                    "secure": true, "community": true,
                    "price": {"secure": t.price, "community": t.price * 0.8},
                    "maxCount": {"secure": t.max_gpu_count, "community": t.max_gpu_count},
                });
                if include {
                    let dcs: Vec<Value> = STOCK
                        .iter()
                        .filter(|(g, _, _, _)| *g == t.id)
                        .filter(|_| count <= t.max_gpu_count)
                        .filter_map(|(_, dc, s, c)| {
                            let level = if secure { (*s)? } else { c };
                            let name = DATA_CENTERS.iter().find(|d| d.0 == *dc)?.1;
                            Some(json!({"id": dc, "name": name, "availability": level}))
                        })
                        .collect();
                    let best = ["HIGH", "MEDIUM", "LOW"]
                        .into_iter()
                        .find(|l| dcs.iter().any(|d| d["availability"] == *l))
                        .unwrap_or("NONE");
                    g["availability"] = json!(best);
                    if !dcs.is_empty() {
                        g["dataCenters"] = json!(dcs);
                    }
                }
                g
            })
            .collect();
        Reply::json(200, json!({ "gpus": gpus }))
    }
}

/// An error of RunPod's REST API v2, as its document gives them: an RFC
/// 9457 problem (`ErrorResponse`). (API v1's document gives no error body;
/// [`err`] answers as that API does.)
fn problem(status: u16, title: &str, detail: &str) -> Reply {
    Reply {
        content_type: "application/problem+json",
        ..Reply::json(
            status,
            json!({"title": title, "status": status, "detail": detail}),
        )
    }
}

fn render_volume(v: &NetworkVolume) -> Value {
    json!({"id": v.id, "name": v.name, "size": v.size, "dataCenterId": v.data_center})
}

/// Data centers of the fake that hold network volumes (`storageSupport`).
const STORAGE_DCS: [&str; 1] = ["US-KS-2"];

fn err(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({"error": message, "status": status}))
}

impl Cloud for Runpod {
    fn rate_limited(&self) -> Value {
        json!({"error": "rate limit exceeded", "status": 429})
    }

    fn server_error(&self) -> Value {
        json!({"error": "internal server error", "status": 500})
    }

    fn documents(&self) -> Vec<&'static Document> {
        vec![docs::runpod_v1(), docs::runpod_v2()]
    }

    /// RunPod publishes no document for its GraphQL API; the official
    /// `runpod` client drives this fake's catalog instead
    /// (`providers::runpod_graphql_answers_the_official_client`).
    fn undocumented(&self, path: &str) -> bool {
        path == "/graphql"
    }

    fn handle(&mut self, req: &Recorded) -> Reply {
        let v2 = req.path.starts_with("/v2/");
        if req.header("authorization") != Some(&*format!("Bearer {KEY}")) {
            if v2 {
                return problem(401, "Unauthorized", "invalid api key");
            }
            return err(401, "Unauthorized: invalid api key");
        }
        if req.path == "/graphql" {
            return self.graphql(req.body["query"].as_str().unwrap_or(""));
        }
        if req.method == "GET" && req.path == "/v2/catalog/gpus" {
            return self.catalog_gpus(req);
        }
        if v2 {
            return problem(404, "Not Found", "resource not found");
        }
        let Some(path) = req.path.strip_prefix("/v1") else {
            return err(404, "not found");
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segs.as_slice()) {
            ("GET", ["pods"]) => {
                let pods: Vec<Value> = self.pods.iter().filter_map(|p| self.render(p)).collect();
                Reply::json(200, json!(pods))
            }
            ("POST", ["pods"]) => {
                let b = &req.body;
                let (Some(name), Some(image), Some(gpu), Some(dc)) = (
                    b["name"].as_str(),
                    b["imageName"].as_str(),
                    b["gpuTypeIds"][0].as_str(),
                    b["dataCenterIds"][0].as_str(),
                ) else {
                    return err(
                        400,
                        "name, imageName, gpuTypeIds and dataCenterIds are required",
                    );
                };
                if image.is_empty() {
                    return err(400, "imageName is required");
                }
                let volume = b["networkVolumeId"].as_str().map(str::to_string);
                if let Some(id) = &volume {
                    let Some(v) = self.volumes.iter().find(|v| &v.id == id) else {
                        return err(400, "network volume not found");
                    };
                    if v.data_center != dc {
                        return err(
                            400,
                            "the network volume is in another data center than the pod",
                        );
                    }
                }
                // Parasol asks for the secure cloud, RunPod's default.
                let secure = b["cloudType"].as_str().is_none_or(|c| c == "SECURE");
                if self.no_capacity.iter().any(|(t, d)| t == gpu && d == dc)
                    || (secure && !secure_stock(gpu, dc))
                {
                    return err(
                        500,
                        "create pod: There are no longer any instances available with the requested specifications. Please refresh and try again.",
                    );
                }
                let n = self.pods.len();
                let env = b["env"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                self.pods.push(Pod {
                    id: format!("pod{n:04}xyz"),
                    name: name.into(),
                    gpu_type: gpu.into(),
                    gpu_count: b["gpuCount"].as_i64().unwrap_or(1),
                    data_center: dc.into(),
                    interruptible: b["interruptible"].as_bool().unwrap_or(false),
                    env,
                    launched: Instant::now(),
                    terminated: None,
                    restarts: 0,
                    n,
                    network_volume: volume,
                });
                let p = self.pods[n].clone();
                Reply::json(201, self.render(&p).unwrap())
            }
            (method, ["pods", id, rest @ ..]) => {
                let Some(i) = self
                    .pods
                    .iter()
                    .position(|p| p.id == *id && self.status(p).is_some())
                else {
                    return err(404, "pod not found");
                };
                match (method, rest) {
                    ("GET", []) => Reply::json(200, self.render(&self.pods[i].clone()).unwrap()),
                    ("DELETE", []) => {
                        if self.pods[i].terminated.is_none() {
                            self.pods[i].terminated = Some(Instant::now());
                        }
                        // The document's answer to a delete: 204, no body.
                        Reply::text(204, "")
                    }
                    ("POST", ["restart"]) if self.pods[i].terminated.is_none() => {
                        self.pods[i].restarts += 1;
                        Reply::text(200, "")
                    }
                    _ => err(404, "not found"),
                }
            }
            ("GET", ["networkvolumes"]) => Reply::json(
                200,
                json!(self.volumes.iter().map(render_volume).collect::<Vec<_>>()),
            ),
            ("POST", ["networkvolumes"]) => {
                let b = &req.body;
                let (Some(name), Some(size), Some(dc)) = (
                    b["name"].as_str(),
                    b["size"].as_i64(),
                    b["dataCenterId"].as_str(),
                ) else {
                    return err(400, "name, size and dataCenterId are required");
                };
                if !(0..=4000).contains(&size) {
                    return err(400, "size must be from 0 to 4000");
                }
                if !STORAGE_DCS.contains(&dc) {
                    return err(400, "this data center does not support network volumes");
                }
                self.volumes_made += 1;
                let v = NetworkVolume {
                    id: format!("nv{:08}", self.volumes_made),
                    name: name.into(),
                    size,
                    data_center: dc.into(),
                };
                let body = render_volume(&v);
                self.volumes.push(v);
                Reply::json(200, body)
            }
            (method, ["networkvolumes", id]) => {
                let Some(i) = self.volumes.iter().position(|v| v.id == *id) else {
                    return err(404, "network volume not found");
                };
                match method {
                    "GET" => Reply::json(200, render_volume(&self.volumes[i])),
                    "DELETE" => {
                        self.volumes.remove(i);
                        Reply::text(204, "")
                    }
                    _ => err(404, "not found"),
                }
            }
            _ => err(404, "not found"),
        }
    }
}
