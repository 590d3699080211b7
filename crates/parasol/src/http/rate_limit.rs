//! Rate limits: token buckets per API key, per client address, and for
//! failed authentications per client address.
//!
//! The buckets live in this process, so with several replicas behind a
//! balancer each replica enforces the rates on its own (a client spread
//! over N replicas gets up to N times the rate). A failed-authentication
//! bucket that has run dry refuses every authentication from that address,
//! valid keys included, so that a guessing loop learns nothing while it is
//! throttled.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second; 0 turns the limit off.
    pub per_second: f64,
    /// Bucket size: requests allowed at once after a quiet period.
    pub burst: f64,
}

impl Rate {
    fn off(&self) -> bool {
        self.per_second <= 0.0
    }
}

/// The three limits, from the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    /// Requests per API key.
    pub per_key: Rate,
    /// Requests per client address, authenticated or not.
    pub per_address: Rate,
    /// Failed authentications per client address.
    pub failed_auth: Rate,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            per_key: Rate {
                per_second: 100.0,
                burst: 500.0,
            },
            per_address: Rate {
                per_second: 200.0,
                burst: 1000.0,
            },
            failed_auth: Rate {
                per_second: 1.0,
                burst: 20.0,
            },
        }
    }
}

/// Which bucket a request drew on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Key,
    Address,
    FailedAuth,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::Address => "address",
            Kind::FailedAuth => "failed_auth",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets past this many are pruned of the full ones, which a fresh
/// bucket would equal, so memory stays bounded under address churn.
const PRUNE_AT: usize = 100_000;

/// Every bucket of this process.
pub struct RateLimits {
    config: RateConfig,
    buckets: Mutex<HashMap<(Kind, String), Bucket>>,
}

impl RateLimits {
    /// Empty buckets for `config`.
    pub fn new(config: RateConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate(&self, kind: Kind) -> Rate {
        match kind {
            Kind::Key => self.config.per_key,
            Kind::Address => self.config.per_address,
            Kind::FailedAuth => self.config.failed_auth,
        }
    }

    /// Takes `cost` tokens (0 only looks), or says how long until there
    /// would be one.
    fn take(&self, kind: Kind, id: &str, cost: f64) -> Result<(), Duration> {
        let rate = self.rate(kind);
        if rate.off() {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("poisoned");
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|(k, _), b| {
                let r = self.rate(*k);
                b.tokens + now.duration_since(b.at).as_secs_f64() * r.per_second < r.burst
            });
        }
        let b = buckets.entry((kind, id.to_string())).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * rate.per_second).min(rate.burst);
        b.at = now;
        if b.tokens < 1.0 {
            let wait = (1.0 - b.tokens) / rate.per_second;
            return Err(Duration::from_secs_f64(wait));
        }
        b.tokens -= cost;
        Ok(())
    }

    /// One request by the key with this hash.
    pub fn key(&self, key_hash: &str) -> Result<(), Limited> {
        self.take(Kind::Key, key_hash, 1.0).map_err(|wait| Limited {
            kind: Kind::Key,
            wait,
        })
    }

    /// Whether `ip` may try to authenticate now.
    pub fn may_authenticate(&self, ip: Option<IpAddr>) -> Result<(), Limited> {
        match ip {
            Some(ip) => self
                .take(Kind::FailedAuth, &ip.to_string(), 0.0)
                .map_err(|wait| Limited {
                    kind: Kind::FailedAuth,
                    wait,
                }),
            None => Ok(()),
        }
    }

    /// Records a failed authentication from `ip`.
    pub fn failed_authentication(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.take(Kind::FailedAuth, &ip.to_string(), 1.0).ok();
        }
    }

    /// One request from `ip`.
    pub(crate) fn address(&self, ip: IpAddr) -> Result<(), Limited> {
        self.take(Kind::Address, &ip.to_string(), 1.0)
            .map_err(|wait| Limited {
                kind: Kind::Address,
                wait,
            })
    }
}

/// The client address of a request, when it came over a socket.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// A request refused by a bucket; answers 429 with `Retry-After`.
#[derive(Debug)]
pub struct Limited {
    kind: Kind,
    wait: Duration,
}

impl IntoResponse for Limited {
    fn into_response(self) -> Response {
        crate::metrics::global().count_rate_limited(self.kind.label());
        // Whole seconds, at least 1, as Retry-After takes.
        let secs = self.wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut res = ApiError::rate_limited(secs).into_response();
        res.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_wait() {
        let limits = RateLimits::new(RateConfig {
            per_key: Rate {
                per_second: 0.5,
                burst: 3.0,
            },
            ..RateConfig::default()
        });
        for _ in 0..3 {
            assert!(limits.take(Kind::Key, "k", 1.0).is_ok());
        }
        let wait = limits.take(Kind::Key, "k", 1.0).unwrap_err();
        assert!(wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2));
        // Another key has its own bucket.
        assert!(limits.take(Kind::Key, "other", 1.0).is_ok());
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let limits = RateLimits::new(RateConfig {
            per_key: Rate {
                per_second: 0.0,
                burst: 0.0,
            },
            ..RateConfig::default()
        });
        for _ in 0..10_000 {
            assert!(limits.take(Kind::Key, "k", 1.0).is_ok());
        }
    }
}
