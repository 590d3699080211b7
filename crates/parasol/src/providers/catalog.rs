//! The catalog: what every provider offers, with live availability.
//!
//! Requests never wait on a provider: offers are fetched by the reconciler's
//! refresh task and kept here. Availability of offers with a known number of
//! slots is derived from the store (slots minus instances holding one), and
//! the rendered list is cached briefly and dropped whenever this process
//! creates or deletes, so `/instances/types` is cheap under load and fresh
//! after a local change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use parasol_api::{
    dollars, Availability, ClusterAvailability, ClusterType, InstanceType, RentalType,
};

use super::{Capacity, ClusterOffer, Offer, Providers, VolumeOffer};
use crate::store::{OfferKey, Store, StoreResult};

/// How long a rendered catalog may be served without a re-count.
const RENDER_TTL: Duration = Duration::from_secs(1);

/// Offers of all providers and the rendered `/instances/types` list.
pub struct Catalog {
    providers: Providers,
    offers: RwLock<Arc<Vec<Offer>>>,
    clusters: RwLock<Arc<Vec<ClusterOffer>>>,
    volumes: RwLock<Arc<Vec<VolumeOffer>>>,
    /// The last good offers of each provider.
    by_provider: Mutex<HashMap<&'static str, Fetched>>,
    rendered: Mutex<Option<(Instant, Arc<Vec<InstanceType>>)>>,
    /// Why a provider's last refresh failed, for `/readyz` and the log.
    failures: Mutex<HashMap<&'static str, String>>,
    /// Offers that refused a launch for capacity, until when placement
    /// leaves them alone.
    cooling: Mutex<HashMap<OfferKey, Instant>>,
}

impl Catalog {
    /// An empty catalog over the given providers; call [`Catalog::refresh`].
    pub fn new(providers: Providers) -> Self {
        Self {
            providers,
            offers: RwLock::new(Arc::new(Vec::new())),
            clusters: RwLock::new(Arc::new(Vec::new())),
            volumes: RwLock::new(Arc::new(Vec::new())),
            by_provider: Mutex::new(HashMap::new()),
            rendered: Mutex::new(None),
            failures: Mutex::new(HashMap::new()),
            cooling: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps placement off an offer for `period`, after its cloud refused a
    /// launch there for capacity: every launch by requirements in this
    /// process skips it meanwhile.
    pub fn cool(&self, key: OfferKey, period: Duration) {
        let mut cooling = self.cooling.lock().expect("poisoned");
        let now = Instant::now();
        cooling.retain(|_, until| *until > now);
        cooling.insert(key, now + period);
    }

    /// Whether an offer is cooling down (see [`Catalog::cool`]).
    pub fn is_cooling(&self, cloud: &str, region: &str, shade_instance_type: &str) -> bool {
        let cooling = self.cooling.lock().expect("poisoned");
        if cooling.is_empty() {
            return false;
        }
        let key = OfferKey {
            cloud: cloud.to_string(),
            region: region.to_string(),
            shade_instance_type: shade_instance_type.to_string(),
        };
        cooling
            .get(&key)
            .is_some_and(|until| *until > Instant::now())
    }

    /// The providers behind this catalog.
    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// Asks every provider for its offers. A provider that fails keeps its
    /// previous offers, so one broken cloud does not empty the catalog.
    pub async fn refresh(&self) {
        let mut all = Fetched::default();
        for p in self.providers.all() {
            let fetched = match fetch(p.as_ref()).await {
                Ok(f) => {
                    self.failures.lock().expect("poisoned").remove(p.name());
                    f
                }
                Err(e) => {
                    tracing::warn!(provider = p.name(), error = %e, "catalog refresh failed; keeping previous offers");
                    self.failures
                        .lock()
                        .expect("poisoned")
                        .insert(p.name(), e.to_string());
                    self.by_provider
                        .lock()
                        .expect("poisoned")
                        .get(p.name())
                        .cloned()
                        .unwrap_or_default()
                }
            };
            // A provider's offers count only for the clouds it serves: the
            // sim keeps simulating every name, but one a real cloud took
            // over is not the sim's to sell.
            let mut fetched = fetched;
            fetched
                .offers
                .retain(|o| self.providers.serves(p, &o.cloud));
            fetched
                .clusters
                .retain(|o| self.providers.serves(p, &o.cloud));
            fetched
                .volumes
                .retain(|o| self.providers.serves(p, &o.cloud));
            self.by_provider
                .lock()
                .expect("poisoned")
                .insert(p.name(), fetched.clone());
            all.offers.extend(fetched.offers);
            all.clusters.extend(fetched.clusters);
            all.volumes.extend(fetched.volumes);
        }
        *self.offers.write().expect("poisoned") = Arc::new(all.offers);
        *self.clusters.write().expect("poisoned") = Arc::new(all.clusters);
        *self.volumes.write().expect("poisoned") = Arc::new(all.volumes);
        self.invalidate();
    }

    /// The current volume offers.
    pub fn volume_offers(&self) -> Arc<Vec<VolumeOffer>> {
        self.volumes.read().expect("poisoned").clone()
    }

    /// Providers whose last refresh failed, with the reason.
    pub fn failures(&self) -> HashMap<&'static str, String> {
        self.failures.lock().expect("poisoned").clone()
    }

    /// The current offers.
    pub fn offers(&self) -> Arc<Vec<Offer>> {
        self.offers.read().expect("poisoned").clone()
    }

    /// The current cluster offers.
    pub fn cluster_offers(&self) -> Arc<Vec<ClusterOffer>> {
        self.clusters.read().expect("poisoned").clone()
    }

    /// Every cluster shape with its availability: one entry per node type,
    /// node count and region, as `/clusters/types` lists them.
    pub async fn cluster_types(&self, store: &Store) -> StoreResult<Vec<ClusterType>> {
        let holding: HashMap<OfferKey, i64> =
            store.holding_cluster_nodes().await?.into_iter().collect();
        let types = self.offers();
        let mut out = Vec::new();
        for c in self.cluster_offers().iter() {
            let Some(node) = types
                .iter()
                .find(|o| o.cloud == c.cloud && o.shade_instance_type == c.shade_instance_type)
            else {
                continue;
            };
            let node_type = render(std::slice::from_ref(node), &HashMap::new()).remove(0);
            for r in &c.regions {
                let key = OfferKey {
                    cloud: c.cloud.clone(),
                    region: r.region.clone(),
                    shade_instance_type: c.shade_instance_type.clone(),
                };
                let used = holding.get(&key).copied().unwrap_or(0);
                for &n in &c.node_counts {
                    out.push(ClusterType {
                        cloud: c.cloud.clone(),
                        num_instances: n,
                        availability: ClusterAvailability {
                            region: r.region.clone(),
                            display_name: r.display_name.clone(),
                            available: has_room_for(r.capacity, used, n),
                        },
                        cluster_type: node_type.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The offer of `shade_instance_type` in `cloud`.
    pub fn find(&self, cloud: &str, shade_instance_type: &str) -> Option<Offer> {
        self.offers()
            .iter()
            .find(|o| o.cloud == cloud && o.shade_instance_type == shade_instance_type)
            .cloned()
    }

    /// Marks a region of an offer unavailable until the next refresh, after
    /// its cloud refused a launch there for capacity. Offers whose capacity
    /// is a count of slots are left alone: the store counts those.
    pub fn mark_unavailable(&self, cloud: &str, region: &str, shade_instance_type: &str) {
        let mut offers = self.offers.write().expect("poisoned");
        let mut next = offers.as_ref().clone();
        for o in next
            .iter_mut()
            .filter(|o| o.cloud == cloud && o.shade_instance_type == shade_instance_type)
        {
            for r in o.regions.iter_mut().filter(|r| r.region == region) {
                if let Capacity::Available(_) = r.capacity {
                    r.capacity = Capacity::Available(false);
                }
            }
        }
        *offers = Arc::new(next);
        drop(offers);
        self.invalidate();
    }

    /// Drops the rendered list, after a write that changes availability.
    pub fn invalidate(&self) {
        *self.rendered.lock().expect("poisoned") = None;
    }

    /// Every instance type with its availability, in catalog order.
    pub async fn instance_types(&self, store: &Store) -> StoreResult<Arc<Vec<InstanceType>>> {
        if let Some((at, list)) = self.rendered.lock().expect("poisoned").as_ref() {
            if at.elapsed() < RENDER_TTL {
                return Ok(list.clone());
            }
        }
        let holding: HashMap<OfferKey, i64> = store.holding_counts().await?.into_iter().collect();
        let list = Arc::new(render(&self.offers(), &holding));
        *self.rendered.lock().expect("poisoned") = Some((Instant::now(), list.clone()));
        Ok(list)
    }
}

/// Everything one provider offers.
#[derive(Clone, Default)]
struct Fetched {
    offers: Vec<Offer>,
    clusters: Vec<ClusterOffer>,
    volumes: Vec<VolumeOffer>,
}

async fn fetch(p: &dyn super::Provider) -> Result<Fetched, super::ProviderError> {
    Ok(Fetched {
        offers: p.offers().await?,
        clusters: p.cluster_offers().await?,
        volumes: p.volume_offers().await?,
    })
}

/// Whether a region of an offer has room for one more machine.
pub fn has_room(capacity: Capacity, holding: i64) -> bool {
    has_room_for(capacity, holding, 1)
}

/// Whether a region of an offer has room for `wanted` more machines.
pub fn has_room_for(capacity: Capacity, holding: i64, wanted: i64) -> bool {
    match capacity {
        Capacity::Slots(n) => holding + wanted <= n,
        Capacity::Available(b) => b,
    }
}

fn render(offers: &[Offer], holding: &HashMap<OfferKey, i64>) -> Vec<InstanceType> {
    offers
        .iter()
        .map(|o| {
            let mut availability = Vec::with_capacity(o.regions.len() * 2);
            for r in &o.regions {
                let key = OfferKey {
                    cloud: o.cloud.clone(),
                    region: r.region.clone(),
                    shade_instance_type: o.shade_instance_type.clone(),
                };
                let available = has_room(r.capacity, holding.get(&key).copied().unwrap_or(0));
                availability.push(Availability {
                    region: r.region.clone(),
                    available,
                    display_name: r.display_name.clone(),
                    rental_type: RentalType::OnDemand,
                    hourly_price: None,
                });
                if let Some(spot) = r.spot_price {
                    availability.push(Availability {
                        region: r.region.clone(),
                        available,
                        display_name: r.display_name.clone(),
                        rental_type: RentalType::Spot,
                        hourly_price: Some(dollars(spot)),
                    });
                }
            }
            InstanceType {
                cloud: o.cloud.clone(),
                shade_instance_type: o.shade_instance_type.clone(),
                cloud_instance_type: o.cloud_instance_type.clone(),
                configuration: o.configuration.clone(),
                hourly_price: o.hourly_price,
                deployment_type: o.deployment_type.clone(),
                availability,
                boot_time: o.boot_time,
            }
        })
        .collect()
}
