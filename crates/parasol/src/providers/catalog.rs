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

use parasol_api::{dollars, Availability, InstanceType, RentalType};

use super::{Capacity, Offer, Providers};
use crate::store::{OfferKey, Store, StoreResult};

/// How long a rendered catalog may be served without a re-count.
const RENDER_TTL: Duration = Duration::from_secs(1);

/// Offers of all providers and the rendered `/instances/types` list.
pub struct Catalog {
    providers: Providers,
    offers: RwLock<Arc<Vec<Offer>>>,
    /// The last good offers of each provider.
    by_provider: Mutex<HashMap<&'static str, Vec<Offer>>>,
    rendered: Mutex<Option<(Instant, Arc<Vec<InstanceType>>)>>,
    /// Why a provider's last refresh failed, for `/readyz` and the log.
    failures: Mutex<HashMap<&'static str, String>>,
}

impl Catalog {
    /// An empty catalog over the given providers; call [`Catalog::refresh`].
    pub fn new(providers: Providers) -> Self {
        Self {
            providers,
            offers: RwLock::new(Arc::new(Vec::new())),
            by_provider: Mutex::new(HashMap::new()),
            rendered: Mutex::new(None),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The providers behind this catalog.
    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// Asks every provider for its offers. A provider that fails keeps its
    /// previous offers, so one broken cloud does not empty the catalog.
    pub async fn refresh(&self) {
        let mut next = Vec::new();
        for p in self.providers.all() {
            let offers = match p.offers().await {
                Ok(offers) => {
                    self.failures.lock().expect("poisoned").remove(p.name());
                    offers
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
            self.by_provider
                .lock()
                .expect("poisoned")
                .insert(p.name(), offers.clone());
            next.extend(offers);
        }
        *self.offers.write().expect("poisoned") = Arc::new(next);
        self.invalidate();
    }

    /// Providers whose last refresh failed, with the reason.
    pub fn failures(&self) -> HashMap<&'static str, String> {
        self.failures.lock().expect("poisoned").clone()
    }

    /// The current offers.
    pub fn offers(&self) -> Arc<Vec<Offer>> {
        self.offers.read().expect("poisoned").clone()
    }

    /// The offer of `shade_instance_type` in `cloud`.
    pub fn find(&self, cloud: &str, shade_instance_type: &str) -> Option<Offer> {
        self.offers()
            .iter()
            .find(|o| o.cloud == cloud && o.shade_instance_type == shade_instance_type)
            .cloned()
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

/// Whether a region of an offer has room for one more machine.
pub fn has_room(capacity: Capacity, holding: i64) -> bool {
    match capacity {
        Capacity::Slots(n) => holding < n,
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
