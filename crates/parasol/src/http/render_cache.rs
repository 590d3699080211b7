//! Rendered instances, kept between list requests.
//!
//! `GET /instances` answers with every live instance in full (the contract
//! has no pagination): with 10,000 instances that is 8.8 MB of JSON, and
//! reading, decoding and re-encoding each stored document made the request
//! take about 280 ms. Most instances do not change between two lists, so
//! each one's JSON is kept here, keyed by the generation it was rendered
//! from: any write bumps the generation, on whichever replica it happens,
//! so an entry can never be served stale. Only the cost moves with the
//! clock; it is spliced in at each request from the cached cost inputs.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Utc};
use parasol_api::{dollars, Instance};
use uuid::Uuid;

use crate::lifecycle::cost;
use crate::store::InstanceRecord;

/// Upper bound on the rendered bytes kept. A list of more than this
/// renders the rest each time, which keeps memory bounded (BENCHMARKS.md:
/// resident set with 100,000 instances stored).
const BUDGET_BYTES: usize = 48 << 20;

/// What the cost of an instance depends on, besides the clock.
#[derive(Debug, Clone, Copy)]
struct CostInputs {
    hourly_price: i64,
    active_at: Option<DateTime<Utc>>,
    billing_stopped_at: Option<DateTime<Utc>>,
}

impl CostInputs {
    fn cents(&self, now: DateTime<Utc>) -> i64 {
        cost::interval_cents(
            self.hourly_price,
            self.active_at,
            self.billing_stopped_at,
            now,
        )
    }
}

/// One instance's JSON, split where its cost goes.
#[derive(Debug)]
pub struct Rendered {
    generation: i64,
    /// The JSON up to the cost's value (inside its opening quote).
    head: Vec<u8>,
    /// The JSON after the cost's value (from its closing quote).
    tail: Vec<u8>,
    cost: CostInputs,
}

impl Rendered {
    /// Renders a stored instance (the generation it was read at).
    pub fn new(rec: &InstanceRecord) -> Self {
        let mut i: Instance = rec.instance.clone();
        i.cost_estimate = PLACEHOLDER.clone();
        let json = serde_json::to_vec(&i).expect("an instance always serializes");
        // The placeholder is a random token that serializes without
        // escapes, quoted; user text holding it would have its quotes
        // escaped, so the first quoted match is the cost field.
        let needle = format!("\"{}\"", *PLACEHOLDER);
        let at = json
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .expect("the placeholder is in the rendered instance");
        Self {
            generation: rec.generation,
            head: json[..at + 1].to_vec(),
            tail: json[at + needle.len() - 1..].to_vec(),
            cost: CostInputs {
                hourly_price: rec.instance.hourly_price,
                active_at: rec.instance.active_at,
                billing_stopped_at: rec.internal.billing_stopped_at,
            },
        }
    }

    /// Appends the instance's JSON, with its cost as of `now`.
    pub fn write(&self, out: &mut Vec<u8>, now: DateTime<Utc>) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(dollars(self.cost.cents(now)).as_bytes());
        out.extend_from_slice(&self.tail);
    }

    fn size(&self) -> usize {
        self.head.len() + self.tail.len() + std::mem::size_of::<Self>()
    }
}

/// Stands in for the cost while rendering, so the cost can be cut out.
static PLACEHOLDER: LazyLock<String> =
    LazyLock::new(|| format!("parasol-cost-{}", Uuid::new_v4().simple()));

/// Rendered instances by id, within a byte budget.
#[derive(Default)]
pub struct RenderCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<Uuid, Arc<Rendered>>,
    bytes: usize,
}

impl RenderCache {
    /// The renderings of `ids` that show exactly the given generation.
    pub fn get_all(&self, versions: &[(Uuid, i64)]) -> Vec<Option<Arc<Rendered>>> {
        let inner = self.inner.lock().expect("poisoned");
        versions
            .iter()
            .map(|(id, generation)| {
                inner
                    .by_id
                    .get(id)
                    .filter(|r| r.generation == *generation)
                    .cloned()
            })
            .collect()
    }

    /// Keeps a rendering (replacing an older one), evicting others when over
    /// budget.
    pub fn put(&self, id: Uuid, rendered: Arc<Rendered>) {
        let mut inner = self.inner.lock().expect("poisoned");
        let size = rendered.size();
        if let Some(old) = inner.by_id.insert(id, rendered) {
            inner.bytes -= old.size();
        }
        inner.bytes += size;
        while inner.bytes > BUDGET_BYTES {
            let Some(victim) = inner.by_id.keys().next().copied() else {
                break;
            };
            if let Some(old) = inner.by_id.remove(&victim) {
                inner.bytes -= old.size();
            }
        }
    }

    /// Drops an instance's rendering (it was deleted).
    pub fn forget(&self, id: &Uuid) {
        let mut inner = self.inner.lock().expect("poisoned");
        if let Some(old) = inner.by_id.remove(id) {
            inner.bytes -= old.size();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spliced_json_is_the_instance_with_its_cost() {
        let doc = serde_json::json!({
            "id": "08bb8d26-af99-45a2-852f-3a5a1052d09b",
            "cloud": "massedcompute",
            "region": "us-central-1",
            "shade_instance_type": "A6000",
            "cloud_instance_type": "A6000-1x",
            "cloud_assigned_id": "massedcompute-08bb8d26af99",
            "shade_cloud": true,
            "name": "a \"quoted\" parasol-cost- name",
            "configuration": {
                "memory_in_gb": 100, "storage_in_gb": 512, "vcpus": 14, "num_gpus": 1,
                "gpu_type": "A6000", "interconnect": "pcie", "nvlink": false,
                "vram_per_gpu_in_gb": 48, "gpu_manufacturer": "nvidia",
                "os": "ubuntu22.04_cuda12.4_shade_os"
            },
            "ip": "198.19.108.185", "ssh_user": "shadeform", "ssh_port": 22,
            "status": "active", "cost_estimate": "0.00", "hourly_price": 120,
            "rental_terms": {"rental_type": "on_demand", "hourly_price": "1.20", "ending_at": null},
            "volume_ids": [], "tags": ["cost_estimate"], "envs": [], "port_mappings": [],
            "active_at": "2026-11-27T10:00:00Z",
            "created_at": "2026-11-27T09:59:00Z",
            "deleted_at": null,
            "boot_time": {"min_boot_in_sec": 120, "max_boot_in_sec": 240}
        });
        let instance: Instance = serde_json::from_value(doc).unwrap();
        let rec = InstanceRecord {
            account_id: Uuid::new_v4(),
            cluster_id: None,
            generation: 7,
            wake_at: None,
            stored_status: instance.status,
            stored_offer: crate::store::OfferKey::of(&instance),
            stored_charge: crate::store::Charge::of(&instance),
            instance,
            internal: Default::default(),
        };
        let r = Rendered::new(&rec);
        let now = "2026-11-27T12:30:00Z".parse().unwrap();
        let mut out = Vec::new();
        r.write(&mut out, now);
        let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let mut want = rec.instance.clone();
        want.cost_estimate = dollars(cost::instance_cents(&rec, now));
        assert_eq!(got, serde_json::to_value(&want).unwrap());
        assert_eq!(got["cost_estimate"], "3.00");
        assert_eq!(r.generation, 7);
    }

    #[test]
    fn the_cache_serves_only_the_generation_asked_for_and_keeps_to_its_budget() {
        let cache = RenderCache::default();
        let id = Uuid::new_v4();
        let rendered = |generation| {
            Arc::new(Rendered {
                generation,
                head: vec![b'x'; 1 << 20],
                tail: Vec::new(),
                cost: CostInputs {
                    hourly_price: 0,
                    active_at: None,
                    billing_stopped_at: None,
                },
            })
        };
        cache.put(id, rendered(1));
        assert!(cache.get_all(&[(id, 1)])[0].is_some());
        assert!(cache.get_all(&[(id, 2)])[0].is_none());
        for _ in 0..100 {
            cache.put(Uuid::new_v4(), rendered(1));
        }
        let inner = cache.inner.lock().unwrap();
        let (n, bytes) = (inner.by_id.len(), inner.bytes);
        drop(inner);
        assert!(bytes <= BUDGET_BYTES, "{bytes}");
        assert!(n < 100, "{n}");
        cache.forget(&id);
        assert!(cache.get_all(&[(id, 1)])[0].is_none());
    }
}
