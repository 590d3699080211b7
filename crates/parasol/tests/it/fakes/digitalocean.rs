//! A fake DigitalOcean API v2 under `/v2`: bearer-token auth, sizes with
//! `gpu_info`, regions, account SSH keys, droplets that go `new` →
//! `active` (the public IPv4 appears later) and are gone once deleted
//! (204, then 404). Errors are `{"id", "message"}`; a create without
//! capacity is a 422; a 429 carries `Retry-After` and DigitalOcean's
//! `ratelimit-*` headers.
//!
//! `GET /v2/droplets` filters as `droplets_list` documents: without `type`
//! (or with `type=droplets`) only droplets without GPUs, with `type=gpus`
//! only GPU droplets, with `tag_name` every droplet carrying the tag, with
//! `name` the exact name (case-insensitive); `tag_name` combined with
//! `type` or `name` is refused. Pages are `per_page` long (default 20, at
//! most 200), with `links.pages` holding `first`/`prev` after the first
//! page and `last`/`next` before the last, each keeping the query.
//!
//! Block storage volumes (`/v2/volumes`): names lowercase letters, digits
//! and `-`, at most 64, starting with a letter, unique per region; a
//! droplet create's `volumes` attaches volumes of its region that no
//! droplet holds (else 422), and deleting the droplet detaches them.

use std::time::Instant;

use serde_json::{json, Value};

use super::openapi::{docs, Document};
use super::{ip, Cloud, Recorded, Reply, Timing};

/// The token the fake accepts.
pub const TOKEN: &str = "dop_v1_test_token_cdef";

/// A droplet at the fake.
#[derive(Clone, Debug)]
pub struct Droplet {
    pub id: i64,
    pub name: String,
    pub region: String,
    pub size: String,
    pub tags: Vec<String>,
    pub launched: Instant,
    pub restarts: u32,
    pub n: usize,
}

/// A block storage volume at the fake.
#[derive(Clone, Debug)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub description: String,
    pub region: String,
    pub size_gigabytes: i64,
    pub tags: Vec<String>,
    pub droplet_ids: Vec<i64>,
}

/// The fake's state and knobs.
#[derive(Default)]
pub struct DigitalOcean {
    pub droplets: Vec<Droplet>,
    pub volumes: Vec<Volume>,
    /// Volumes made so far, for ids.
    pub volumes_made: u32,
    /// How many volumes the account may hold; a create beyond is refused.
    pub volume_limit: Option<usize>,
    pub keys: Vec<(i64, String, String)>,
    pub timing: Timing,
    /// `(size, region)` pairs whose creates get 422 for capacity.
    pub no_capacity: Vec<(String, String)>,
}

impl DigitalOcean {
    /// Puts an active GPU droplet at the fake as if created elsewhere.
    pub fn plant(&mut self, name: &str, tags: &[&str]) -> i64 {
        self.plant_sized(name, tags, "gpu-h100x1-80gb")
    }

    /// Puts an active droplet of size `size` at the fake.
    pub fn plant_sized(&mut self, name: &str, tags: &[&str], size: &str) -> i64 {
        let n = self.droplets.len();
        let id = 3000 + n as i64;
        self.droplets.push(Droplet {
            id,
            name: name.to_string(),
            region: "nyc2".into(),
            size: size.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            launched: Instant::now() - self.timing.boot - self.timing.ip_after,
            restarts: 0,
            n,
        });
        id
    }

    /// Droplets that exist.
    pub fn live(&self) -> Vec<&Droplet> {
        self.droplets.iter().collect()
    }

    fn render(&self, d: &Droplet) -> Value {
        let up = d.launched.elapsed();
        let status = if up < self.timing.boot {
            "new"
        } else {
            "active"
        };
        let v4 = if up >= self.timing.ip_after {
            json!([
                {"ip_address": "10.116.0.2", "netmask": "255.255.240.0", "gateway": "", "type": "private"},
                {"ip_address": ip(d.n), "netmask": "255.255.255.0", "gateway": "203.0.113.1", "type": "public"}
            ])
        } else {
            json!([])
        };
        json!({
            "id": d.id,
            "name": d.name,
            "status": status,
            "memory": 245760,
            "vcpus": 20,
            "disk": 720,
            "size_slug": d.size,
            // What the document requires of every droplet, as a droplet
            // fresh from a base image has it.
            "locked": false,
            "features": [],
            "backup_ids": [],
            "next_backup_window": null,
            "snapshot_ids": [],
            "volume_ids": [],
            "image": {"id": 1, "type": "base", "public": true, "status": "available"},
            "size": {
                "slug": d.size, "memory": 245760, "vcpus": 20, "disk": 720, "transfer": 15.0,
                "price_monthly": 2522.16, "price_hourly": 3.39, "regions": [d.region],
                "available": true, "description": ""
            },
            "region": {"slug": d.region, "name": region_name(&d.region), "features": [],
                       "available": true, "sizes": []},
            "networks": {"v4": v4, "v6": []},
            "tags": d.tags,
            "volume_ids": self.volumes.iter().filter(|v| v.droplet_ids.contains(&d.id)).map(|v| v.id.clone()).collect::<Vec<_>>(),
            "created_at": "2026-01-01T00:00:00Z",
        })
    }
}

/// A size as `GET /v2/sizes` lists it.
pub struct Size {
    pub slug: &'static str,
    /// MB.
    pub memory: i64,
    pub vcpus: i64,
    pub disk: i64,
    /// TB of outbound transfer included.
    pub transfer: f64,
    pub price_hourly: f64,
    pub regions: &'static [&'static str],
    pub available: bool,
    pub description: &'static str,
    /// `gpu_info`: count, the droplet's VRAM in GiB (all GPUs), model;
    /// and Shadeform's name of the model, for the catalog property.
    pub gpu: Option<(i64, i64, &'static str, &'static str)>,
}

/// The sizes, with the numbers of DigitalOcean's GPU Droplet plans and
/// price list (docs.digitalocean.com, Droplet pricing and GPU Droplet
/// plans): H100 $3.39 and 8x $23.92, MI300X $1.99 and 8x $15.92, L40S
/// $1.57, RTX 4000 Ada $0.76, RTX 6000 Ada $1.89 per hour.
pub const SIZES: &[Size] = &[
    Size {
        slug: "s-2vcpu-4gb",
        memory: 4096,
        vcpus: 2,
        disk: 80,
        transfer: 4.0,
        price_hourly: 0.03571,
        regions: &["nyc2", "tor1", "ams3"],
        available: true,
        description: "Basic",
        gpu: None,
    },
    Size {
        slug: "gpu-h100x1-80gb",
        memory: 245760,
        vcpus: 20,
        disk: 720,
        transfer: 15.0,
        price_hourly: 3.39,
        regions: &["nyc2", "tor1"],
        available: true,
        description: "H100 GPU - 1X",
        gpu: Some((1, 80, "nvidia_h100", "H100")),
    },
    Size {
        slug: "gpu-h100x8-640gb",
        memory: 1966080,
        vcpus: 160,
        disk: 2046,
        transfer: 60.0,
        price_hourly: 23.92,
        regions: &["nyc2"],
        available: false,
        description: "H100 GPU - 8X",
        gpu: Some((8, 640, "nvidia_h100", "H100")),
    },
    Size {
        slug: "gpu-l40sx1-48gb",
        memory: 65536,
        vcpus: 8,
        disk: 500,
        transfer: 10.0,
        price_hourly: 1.57,
        regions: &["tor1"],
        available: true,
        description: "L40S GPU - 1X",
        gpu: Some((1, 48, "nvidia_l40s", "L40S")),
    },
    Size {
        slug: "gpu-4000adax1-20gb",
        memory: 32768,
        vcpus: 8,
        disk: 500,
        transfer: 10.0,
        price_hourly: 0.76,
        regions: &["tor1", "atl1"],
        available: true,
        description: "RTX 4000 Ada GPU - 1X",
        gpu: Some((1, 20, "nvidia_rtx_4000_ada", "RTX4000Ada")),
    },
    Size {
        slug: "gpu-6000adax1-48gb",
        memory: 65536,
        vcpus: 8,
        disk: 500,
        transfer: 10.0,
        price_hourly: 1.89,
        regions: &["tor1"],
        available: true,
        description: "RTX 6000 Ada GPU - 1X",
        gpu: Some((1, 48, "nvidia_rtx_6000_ada", "RTX6000Ada")),
    },
    Size {
        slug: "gpu-mi300x1-192gb",
        memory: 245760,
        vcpus: 20,
        disk: 720,
        transfer: 15.0,
        price_hourly: 1.99,
        regions: &["atl1"],
        available: true,
        description: "AMD MI300X GPU - 1X",
        gpu: Some((1, 192, "amd_mi300x", "MI300X")),
    },
    Size {
        slug: "gpu-mi300x8-1536gb",
        memory: 1966080,
        vcpus: 160,
        disk: 2046,
        transfer: 60.0,
        price_hourly: 15.92,
        regions: &["atl1"],
        available: true,
        description: "AMD MI300X GPU - 8X",
        gpu: Some((8, 1536, "amd_mi300x", "MI300X")),
    },
];

impl Size {
    fn render(&self) -> Value {
        let mut v = json!({
            "slug": self.slug, "memory": self.memory, "vcpus": self.vcpus, "disk": self.disk,
            "transfer": self.transfer, "price_hourly": self.price_hourly,
            "price_monthly": (self.price_hourly * 730.0 * 100.0).round() / 100.0,
            "regions": self.regions, "available": self.available,
            "description": self.description,
        });
        if let Some((count, vram, model, _)) = self.gpu {
            v["gpu_info"] =
                json!({"count": count, "vram": {"amount": vram, "unit": "gib"}, "model": model});
        }
        v
    }
}

fn render_volume(v: &Volume) -> Value {
    json!({
        "id": v.id,
        "region": {"name": region_name(&v.region), "slug": v.region, "sizes": [],
                   "features": [], "available": true},
        "droplet_ids": v.droplet_ids,
        "name": v.name,
        "description": v.description,
        "size_gigabytes": v.size_gigabytes,
        "created_at": "2026-01-01T00:00:00Z",
        "filesystem_type": "ext4",
        "filesystem_label": "",
        "tags": v.tags,
    })
}

/// DigitalOcean's rule for volume names.
fn valid_volume_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The regions the fake has; block storage is in each of them.
const REGIONS: &[&str] = &["nyc2", "tor1", "ams3", "atl1"];

fn region_name(slug: &str) -> &'static str {
    match slug {
        "nyc2" => "New York 2",
        "tor1" => "Toronto 1",
        "ams3" => "Amsterdam 3",
        "atl1" => "Atlanta 1",
        _ => "Somewhere",
    }
}

/// Whether droplets of `size` have GPUs: DigitalOcean's GPU sizes (those
/// `/v2/sizes` gives `gpu_info`) are the `gpu-` slugs.
fn gpu_size(size: &str) -> bool {
    size.starts_with("gpu-")
}

fn err(status: u16, id: &str, message: &str) -> Reply {
    Reply::json(status, json!({"id": id, "message": message}))
}

fn query<'a>(req: &'a Recorded, key: &str) -> Option<&'a str> {
    req.query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

impl DigitalOcean {
    /// `GET /v2/droplets`, filtered and paged as documented.
    fn list_droplets(&self, req: &Recorded) -> Reply {
        let tag = query(req, "tag_name");
        let name = query(req, "name");
        let kind = query(req, "type");
        if tag.is_some() && (kind.is_some() || name.is_some()) {
            return err(
                400,
                "bad_request",
                "tag_name can not be combined with name or type",
            );
        }
        let gpus = match kind {
            None | Some("droplets") => false,
            Some("gpus") => true,
            Some(other) => {
                return err(
                    400,
                    "bad_request",
                    &format!("type must be droplets or gpus, not {other:?}"),
                )
            }
        };
        let all: Vec<Value> = self
            .droplets
            .iter()
            .filter(|d| match tag {
                Some(t) => d.tags.iter().any(|x| x == t),
                None => gpu_size(&d.size) == gpus,
            })
            .filter(|d| name.is_none_or(|n| d.name.eq_ignore_ascii_case(n)))
            .map(|d| self.render(d))
            .collect();
        paged(req, "droplets", all)
    }
}

/// One page of a listing (`droplets`, `volumes`) as DigitalOcean pages
/// them: `per_page` long (default 20, at most 200), `links.pages` holding
/// `first`/`prev` after the first page and `last`/`next` before the last,
/// each keeping the query.
fn paged(req: &Recorded, collection: &str, all: Vec<Value>) -> Reply {
    let number = |key: &str, default: usize| match query(req, key) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            err(
                400,
                "bad_request",
                &format!("{key} must be a positive integer, not {v:?}"),
            )
        }),
    };
    let per_page = match number("per_page", 20) {
        Ok(n) => n.min(200),
        Err(e) => return e,
    };
    let page = match number("page", 1) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let total = all.len();
    let list: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let last = total.div_ceil(per_page).max(1);
    // Each link keeps the query's filters, as DigitalOcean's do.
    let kept: Vec<&str> = req
        .query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("page="))
        .collect();
    let link = |p: usize| {
        let mut q = kept.clone();
        let page = format!("page={p}");
        q.push(&page);
        format!(
            "https://api.digitalocean.com/v2/{collection}?{}",
            q.join("&")
        )
    };
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link((page - 1).min(last))));
    }
    if page < last {
        pages.insert("last".into(), json!(link(last)));
        pages.insert("next".into(), json!(link(page + 1)));
    }
    let links = if pages.is_empty() {
        json!({})
    } else {
        json!({ "pages": pages })
    };
    Reply::json(
        200,
        json!({collection: list, "links": links, "meta": {"total": total}}),
    )
}

impl Cloud for DigitalOcean {
    fn rate_limited(&self) -> Value {
        json!({"id": "too_many_requests", "message": "API Rate limit exceeded."})
    }

    fn server_error(&self) -> Value {
        json!({"id": "server_error", "message": "Unexpected server-side error"})
    }

    fn rate_limit_headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ratelimit-limit", "5000".into()),
            ("ratelimit-remaining", "0".into()),
            // A Unix time, as DigitalOcean sends it.
            (
                "ratelimit-reset",
                (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 1)
                .to_string(),
            ),
        ]
    }

    fn documents(&self) -> Vec<&'static Document> {
        vec![docs::digitalocean()]
    }

    fn handle(&mut self, req: &Recorded) -> Reply {
        if req.header("authorization") != Some(&*format!("Bearer {TOKEN}")) {
            return err(401, "unauthorized", "Unable to authenticate you");
        }
        let Some(path) = req.path.strip_prefix("/v2") else {
            return err(
                404,
                "not_found",
                "The resource you were accessing could not be found.",
            );
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segs.as_slice()) {
            ("GET", ["sizes"]) => {
                let sizes: Vec<Value> = SIZES.iter().map(Size::render).collect();
                let total = sizes.len();
                Reply::json(
                    200,
                    json!({"sizes": sizes, "links": {}, "meta": {"total": total}}),
                )
            }
            ("GET", ["regions"]) => {
                let regions: Vec<Value> = REGIONS
                    .iter()
                    .map(|s| {
                        json!({"slug": s, "name": region_name(s), "available": true,
                               "sizes": [], "features": []})
                    })
                    .collect();
                Reply::json(
                    200,
                    json!({"regions": regions, "links": {}, "meta": {"total": 4}}),
                )
            }
            ("GET", ["account", "keys"]) => {
                let keys: Vec<Value> = self
                    .keys
                    .iter()
                    .map(|(id, name, pk)| json!({"id": id, "name": name, "public_key": pk, "fingerprint": format!("fp:{id}")}))
                    .collect();
                let total = keys.len();
                Reply::json(
                    200,
                    json!({"ssh_keys": keys, "links": {}, "meta": {"total": total}}),
                )
            }
            ("POST", ["account", "keys"]) => {
                let (Some(name), Some(pk)) =
                    (req.body["name"].as_str(), req.body["public_key"].as_str())
                else {
                    return err(
                        422,
                        "unprocessable_entity",
                        "Name and public key are required",
                    );
                };
                if self.keys.iter().any(|(_, _, k)| k == pk) {
                    return err(
                        422,
                        "unprocessable_entity",
                        "SSH Key is already in use on your account",
                    );
                }
                let id = 512190 + self.keys.len() as i64;
                self.keys.push((id, name.into(), pk.into()));
                Reply::json(
                    201,
                    json!({"ssh_key": {"id": id, "name": name, "public_key": pk, "fingerprint": format!("fp:{id}")}}),
                )
            }
            ("GET", ["droplets"]) => self.list_droplets(req),
            ("POST", ["droplets"]) => {
                let b = &req.body;
                let (Some(name), Some(region), Some(size), Some(_image)) = (
                    b["name"].as_str(),
                    b["region"].as_str(),
                    b["size"].as_str(),
                    b["image"].as_str(),
                ) else {
                    return err(
                        422,
                        "unprocessable_entity",
                        "name, region, size and image are required",
                    );
                };
                let attach: Vec<String> = b["volumes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for id in &attach {
                    match self.volumes.iter().find(|v| &v.id == id) {
                        Some(v) if v.region != region => {
                            return err(
                                422,
                                "unprocessable_entity",
                                "Volume is not in the same region as the Droplet.",
                            )
                        }
                        Some(v) if !v.droplet_ids.is_empty() => {
                            return err(
                                422,
                                "unprocessable_entity",
                                "Volume is already attached to a Droplet.",
                            )
                        }
                        Some(_) => {}
                        None => return err(422, "unprocessable_entity", "Volume was not found."),
                    }
                }
                if self
                    .no_capacity
                    .iter()
                    .any(|(s, r)| s == size && r == region)
                {
                    return err(
                        422,
                        "unprocessable_entity",
                        "Size is not available in this region.",
                    );
                }
                let n = self.droplets.len();
                let id = 3000 + n as i64;
                self.droplets.push(Droplet {
                    id,
                    name: name.into(),
                    region: region.into(),
                    size: size.into(),
                    tags: b["tags"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    launched: Instant::now(),
                    restarts: 0,
                    n,
                });
                for v in self.volumes.iter_mut().filter(|v| attach.contains(&v.id)) {
                    v.droplet_ids.push(id);
                }
                let d = self.droplets[n].clone();
                Reply::json(
                    202,
                    json!({"droplet": self.render(&d), "links": {"actions": []}}),
                )
            }
            ("GET", ["volumes"]) => {
                let name = query(req, "name");
                let region = query(req, "region");
                let all: Vec<Value> = self
                    .volumes
                    .iter()
                    .filter(|v| name.is_none_or(|n| v.name == n))
                    .filter(|v| region.is_none_or(|r| v.region == r))
                    .map(render_volume)
                    .collect();
                paged(req, "volumes", all)
            }
            ("POST", ["volumes"]) => {
                let b = &req.body;
                let (Some(name), Some(region), Some(size)) = (
                    b["name"].as_str(),
                    b["region"].as_str(),
                    b["size_gigabytes"].as_i64(),
                ) else {
                    return err(
                        400,
                        "bad_request",
                        "name, region and size_gigabytes are required",
                    );
                };
                if !valid_volume_name(name) {
                    return err(
                        422,
                        "unprocessable_entity",
                        "Name must be lowercase, composed of letters, numbers and -, at most 64 characters, and begin with a letter.",
                    );
                }
                if !(1..=16_384).contains(&size) {
                    return err(
                        422,
                        "unprocessable_entity",
                        "size_gigabytes must be between 1 and 16384.",
                    );
                }
                if !REGIONS.contains(&region) {
                    return err(422, "unprocessable_entity", "Region is not available.");
                }
                if self.volume_limit.is_some_and(|n| self.volumes.len() >= n) {
                    return err(
                        422,
                        "unprocessable_entity",
                        "You have reached your volume limit. Contact support to raise it.",
                    );
                }
                if self
                    .volumes
                    .iter()
                    .any(|v| v.name == name && v.region == region)
                {
                    return err(
                        409,
                        "conflict",
                        "A volume with the same name already exists in this region.",
                    );
                }
                self.volumes_made += 1;
                let v = Volume {
                    id: format!("506f78a4-e098-11e5-ad9f-{:012x}", self.volumes_made),
                    name: name.into(),
                    description: b["description"].as_str().unwrap_or("").into(),
                    region: region.into(),
                    size_gigabytes: size,
                    tags: b["tags"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    droplet_ids: Vec::new(),
                };
                let body = json!({"volume": render_volume(&v)});
                self.volumes.push(v);
                Reply::json(201, body)
            }
            (method, ["volumes", id]) => {
                let Some(i) = self.volumes.iter().position(|v| v.id == *id) else {
                    return err(
                        404,
                        "not_found",
                        "The resource you were accessing could not be found.",
                    );
                };
                match method {
                    "GET" => Reply::json(200, json!({"volume": render_volume(&self.volumes[i])})),
                    "DELETE" => {
                        self.volumes.remove(i);
                        Reply::text(204, "")
                    }
                    _ => err(405, "method_not_allowed", "Method not allowed."),
                }
            }
            (method, ["droplets", id, rest @ ..]) => {
                let Some(i) = self.droplets.iter().position(|d| d.id.to_string() == *id) else {
                    return err(
                        404,
                        "not_found",
                        "The resource you were accessing could not be found.",
                    );
                };
                match (method, rest) {
                    ("GET", []) => Reply::json(
                        200,
                        json!({"droplet": self.render(&self.droplets[i].clone())}),
                    ),
                    ("DELETE", []) => {
                        let d = self.droplets.remove(i);
                        for v in &mut self.volumes {
                            v.droplet_ids.retain(|x| *x != d.id);
                        }
                        Reply::text(204, "")
                    }
                    ("POST", ["actions"]) if req.body["type"] == "reboot" => {
                        self.droplets[i].restarts += 1;
                        Reply::json(
                            201,
                            json!({"action": {"id": 1, "status": "in-progress", "type": "reboot"}}),
                        )
                    }
                    _ => err(422, "unprocessable_entity", "unsupported action"),
                }
            }
            _ => err(
                404,
                "not_found",
                "The resource you were accessing could not be found.",
            ),
        }
    }
}
