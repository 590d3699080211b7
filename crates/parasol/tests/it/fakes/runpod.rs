//! A fake RunPod: the REST API v1 under `/v1` and the GraphQL API at
//! `/graphql`, bearer-key auth, pods that go from no public IP to a public
//! IP to a mapped SSH port, `TERMINATED` while being removed, then gone.
//! A create with no machine left answers as RunPod does: 500 with "There
//! are no longer any instances available ...".

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
}

/// The fake's state and knobs.
#[derive(Default)]
pub struct Runpod {
    pub pods: Vec<Pod>,
    pub timing: Timing,
    /// `(gpu type id, data center)` pairs no machine is left for.
    pub no_capacity: Vec<(String, String)>,
}

/// A GPU type of the fake: id, display name, on-demand and bid price per
/// GPU.
const TYPES: [(&str, &str, f64, f64); 3] = [
    ("NVIDIA RTX A6000", "RTX A6000", 0.49, 0.25),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 2.69, 1.75),
    ("AMD Instinct MI300X OAM", "MI300X", 2.49, 1.49),
];

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
        Some(json!({
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
        }))
    }

    fn graphql(&self, query: &str) -> Reply {
        if query.contains("dataCenters") {
            return Reply::json(
                200,
                json!({"data": {"dataCenters": [
                    {"id": "US-KS-2", "name": "US-KS-2", "location": "United States",
                     "storageSupport": true,
                     "gpuAvailability": [
                        {"gpuTypeId": "NVIDIA RTX A6000", "available": true, "stockStatus": "High"},
                        {"gpuTypeId": "NVIDIA H100 80GB HBM3", "available": false, "stockStatus": null}
                     ]},
                    {"id": "EU-RO-1", "name": "EU-RO-1", "location": "Romania",
                     "storageSupport": false,
                     "gpuAvailability": [
                        {"gpuTypeId": "NVIDIA RTX A6000", "available": true, "stockStatus": "Low"},
                        {"gpuTypeId": "NVIDIA H100 80GB HBM3", "available": true, "stockStatus": "Medium"}
                     ]}
                ]}}),
            );
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
                .filter(|(id, ..)| only.is_none_or(|o| o == *id))
                .map(|(id, name, price, bid)| {
                    json!({
                        "id": id, "displayName": name, "memoryInGb": 48, "maxGpuCount": 8,
                        "manufacturer": id.split(' ').next().unwrap_or(""),
                        "secureCloud": true, "communityCloud": true,
                        "lowestPrice": {
                            "uninterruptablePrice": price, "minimumBidPrice": bid,
                            "minVcpu": 9 * n, "minMemory": 50 * n, "stockStatus": "High"
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
                if self.no_capacity.iter().any(|(t, d)| t == gpu && d == dc) {
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
            ("GET", ["networkvolumes"]) => Reply::json(200, json!([])),
            _ => err(404, "not found"),
        }
    }
}
