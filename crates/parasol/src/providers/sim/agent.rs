//! The sim's simulated agent: every running simulated machine whose
//! instance is active reports as a real agent would, through the same
//! ingestion (checks and storage) as `POST /v1/agent/report`, at the
//! agent interval of the server's clock (so a test that moves the clock
//! gets reports at the moved time). When a machine last reported is read
//! from the store, so a restart or a second replica does not report twice.
//!
//! Its numbers follow a slow wave per machine (busy, not flat), with
//! memory, temperature and power that go with the utilisation. Tests and
//! demos steer a machine through `POST /admin/sim/agent`: a fixed
//! utilisation, SSH sessions, an ECC count, an Xid for the next report,
//! or silence. The steering is kept in `sim_agents`, so it outlives a
//! restart and every replica sees it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::watch;
use uuid::Uuid;

use super::{transient, Sim};
use crate::agent::{GpuSample, Ingest, IngestError, Report};
use crate::providers::ProviderError;

/// How often the simulated agents look whether a report is due (real
/// time); the interval itself is on the server's clock.
const TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// The version the simulated agent reports.
pub const VERSION: &str = "sim-1";

/// How a machine's simulated agent is steered. Absent fields: simulated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Steering {
    /// Every GPU at this utilisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_utilization_percent: Option<f64>,
    /// Xid codes the next report carries (then cleared, as an Xid is an
    /// event).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xid: Vec<u32>,
    /// Every GPU's volatile uncorrectable ECC count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecc_uncorrectable: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_sessions: Option<u32>,
    /// `false`: the agent is silent, as if the machine hung.
    pub reporting: bool,
}

impl Steering {
    fn simulated() -> Steering {
        Steering {
            reporting: true,
            ..Steering::default()
        }
    }
}

/// The part of a stored instance document the simulated agent reads.
#[derive(Deserialize)]
struct StoredDoc {
    instance: StoredInstance,
}

#[derive(Deserialize)]
struct StoredInstance {
    configuration: parasol_api::InstanceConfiguration,
}

/// A machine due a report: its instance and hardware.
struct Due {
    id: Uuid,
    ready_at: i64,
    gpus: u32,
    vram_gb: i64,
    gpu_type: String,
    steering: Steering,
    /// The stored steering text, to clear the Xids only if unchanged.
    stored: Option<String>,
}

/// A hash of the instance id, for each machine's own wave.
fn phase(id: Uuid) -> f64 {
    let b = id.as_bytes();
    f64::from(u16::from_le_bytes([b[0], b[1]])) / f64::from(u16::MAX) * std::f64::consts::TAU
}

/// Board power of a GPU model at full load, in watts (published TDPs).
fn max_power(gpu_type: &str) -> f64 {
    let t = gpu_type.to_ascii_uppercase();
    if t.contains("H100") || t.contains("H200") || t.contains("GH200") || t.contains("B200") {
        700.0
    } else if t.contains("A100") {
        400.0
    } else if t.contains("L40") {
        350.0
    } else if t.contains("A10") || t.contains("L4") {
        150.0
    } else {
        300.0
    }
}

/// The report a steered machine makes at `now_ms`.
fn report(d: &Due, now_ms: i64) -> Report {
    let t = now_ms as f64 / 1000.0;
    let total = (d.vram_gb.max(1) as u64) * 1024;
    let gpus = (0..d.gpus)
        .map(|i| {
            let util = d.steering.gpu_utilization_percent.unwrap_or_else(|| {
                // A 20-minute wave between about 20 % and 90 %, each GPU a
                // little apart, with a second faster ripple.
                let w =
                    (t / 1200.0 * std::f64::consts::TAU + phase(d.id) + f64::from(i) * 0.4).sin();
                let r = (t / 97.0 + f64::from(i)).sin();
                (55.0 + 35.0 * w + 4.0 * r).clamp(0.0, 100.0).round()
            });
            let used = ((0.08 + 0.8 * util / 100.0) * total as f64).round() as u64;
            let power = 60.0 + util / 100.0 * (max_power(&d.gpu_type) - 60.0);
            GpuSample {
                index: i,
                utilization_percent: util,
                memory_used_mib: used.min(total),
                memory_total_mib: total,
                temperature_c: Some((31.0 + util * 0.45).round()),
                power_w: Some((power * 10.0).round() / 10.0),
                ecc_uncorrectable: d.steering.ecc_uncorrectable.unwrap_or(0),
                xid: d.steering.xid.clone(),
            }
        })
        .collect();
    Report {
        instance_id: d.id,
        // Milliseconds of the server's clock: increasing across restarts
        // and replicas, as the real agent's `date +%s` counter is.
        seq: now_ms,
        agent_version: VERSION.into(),
        uptime_s: ((now_ms - d.ready_at).max(0) / 1000) as u64,
        ssh_sessions: d.steering.ssh_sessions.unwrap_or(0),
        gpus,
    }
}

impl Sim {
    /// Steers `instance_id`'s simulated agent; `false`: the sim has no such
    /// machine.
    pub async fn steer_agent(
        &self,
        instance_id: Uuid,
        steering: &Steering,
    ) -> Result<bool, ProviderError> {
        let known: Option<String> =
            sqlx::query_scalar("SELECT state FROM sim_machines WHERE instance_id = $1")
                .bind(instance_id.to_string())
                .fetch_optional(self.store.pool())
                .await
                .map_err(transient)?;
        if known.is_none() {
            return Ok(false);
        }
        let text = serde_json::to_string(steering).expect("steering serializes");
        sqlx::query(
            "INSERT INTO sim_agents (instance_id, steering) VALUES ($1, $2) \
             ON CONFLICT (instance_id) DO UPDATE SET steering = $2",
        )
        .bind(instance_id.to_string())
        .bind(text)
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(true)
    }

    /// How `instance_id`'s simulated agent is steered now.
    pub async fn agent_steering(&self, instance_id: Uuid) -> Result<Steering, ProviderError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT steering FROM sim_agents WHERE instance_id = $1")
                .bind(instance_id.to_string())
                .fetch_optional(self.store.pool())
                .await
                .map_err(transient)?;
        Ok(stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(Steering::simulated))
    }

    /// Running machines of active instances whose last report (the
    /// store's, so replicas and restarts agree) is `interval_ms` old, with
    /// their steering.
    async fn due_machines(&self, now_ms: i64, interval_ms: i64) -> Result<Vec<Due>, ProviderError> {
        let rows = sqlx::query(
            "SELECT m.instance_id, m.ready_at, i.doc, a.steering FROM sim_machines m \
             JOIN instances i ON i.id = m.instance_id \
             LEFT JOIN sim_agents a ON a.instance_id = m.instance_id \
             LEFT JOIN agent_state s ON s.instance_id = m.instance_id \
             WHERE m.state = 'running' AND m.ready_at <= $1 AND i.status = 'active' \
             AND (s.last_seen_at IS NULL OR s.last_seen_at <= $2)",
        )
        .bind(now_ms)
        .bind(now_ms - interval_ms)
        .fetch_all(self.store.pool())
        .await
        .map_err(transient)?;
        let mut due = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get(0).map_err(transient)?;
            let Ok(id) = Uuid::parse_str(&id) else {
                continue;
            };
            let doc: String = r.try_get(2).map_err(transient)?;
            let Ok(stored_doc) = serde_json::from_str::<StoredDoc>(&doc) else {
                continue;
            };
            let instance = stored_doc.instance;
            let stored: Option<String> = r.try_get(3).map_err(transient)?;
            let steering = stored
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_else(Steering::simulated);
            let c = &instance.configuration;
            due.push(Due {
                id,
                ready_at: r.try_get(1).map_err(transient)?,
                gpus: c.num_gpus.max(0) as u32,
                vram_gb: c.vram_per_gpu_in_gb,
                gpu_type: c.gpu_type.clone(),
                steering,
                stored,
            });
        }
        Ok(due)
    }

    /// Clears the Xids a report carried, unless the steering changed since.
    async fn xids_reported(&self, d: &Due) -> Result<(), ProviderError> {
        let Some(old) = &d.stored else {
            return Ok(());
        };
        let cleared = Steering {
            xid: Vec::new(),
            ..d.steering.clone()
        };
        sqlx::query("UPDATE sim_agents SET steering = $1 WHERE instance_id = $2 AND steering = $3")
            .bind(serde_json::to_string(&cleared).expect("steering serializes"))
            .bind(d.id.to_string())
            .bind(old)
            .execute(self.store.pool())
            .await
            .map_err(transient)?;
        Ok(())
    }

    /// Runs the simulated agents until `stop`: each reporting machine
    /// reports every `interval_s` of the server's clock.
    pub async fn run_agents(
        self: Arc<Self>,
        ingest: Arc<Ingest>,
        interval_s: u32,
        mut stop: watch::Receiver<bool>,
    ) {
        let interval_ms = i64::from(interval_s) * 1000;
        loop {
            if let Err(e) = self.agents_tick(&ingest, interval_ms).await {
                tracing::debug!(error = %e, "simulated agents could not report");
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn agents_tick(&self, ingest: &Ingest, interval_ms: i64) -> Result<(), ProviderError> {
        let now = self.clock.now_ms();
        for d in self.due_machines(now, interval_ms).await? {
            if !d.steering.reporting {
                continue;
            }
            // As JSON, so that it passes every check a posted report does.
            let body = serde_json::to_value(report(&d, now)).expect("a report serializes");
            match ingest.post_trusted(&body).await {
                Ok(_) if !d.steering.xid.is_empty() => self.xids_reported(&d).await?,
                Ok(_) => {}
                // Another replica's simulated agent reported first.
                Err(IngestError::TooSoon { .. } | IngestError::Replay { .. }) => {}
                Err(e) => tracing::debug!(instance = %d.id, error = %e, "simulated report refused"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(steering: Steering) -> Due {
        Due {
            id: Uuid::from_u128(7),
            ready_at: 1_800_000_000_000 - 3_600_000,
            gpus: 8,
            vram_gb: 80,
            gpu_type: "H100".into(),
            steering,
            stored: None,
        }
    }

    #[test]
    fn simulated_numbers_are_believable_and_steering_wins() {
        let mut seen = std::collections::BTreeSet::new();
        for t in (0..3600).step_by(97) {
            let r = report(&due(Steering::simulated()), 1_800_000_000_000 + t * 1000);
            assert_eq!(r.gpus.len(), 8);
            for g in &r.gpus {
                assert!((10.0..=100.0).contains(&g.utilization_percent), "{g:?}");
                assert!(g.memory_used_mib <= g.memory_total_mib);
                assert!(g.power_w.unwrap() <= 700.0 && g.power_w.unwrap() >= 60.0);
                assert!(g.xid.is_empty());
            }
            seen.insert(r.gpus[0].utilization_percent as i64);
        }
        assert!(seen.len() > 10, "a wave, not a constant: {seen:?}");
        let steered = report(
            &due(Steering {
                gpu_utilization_percent: Some(0.0),
                xid: vec![79],
                ecc_uncorrectable: Some(3),
                ssh_sessions: Some(2),
                reporting: true,
            }),
            1_800_000_000_000,
        );
        assert_eq!(steered.ssh_sessions, 2);
        for g in &steered.gpus {
            assert_eq!(
                (g.utilization_percent, g.ecc_uncorrectable, g.xid.as_slice()),
                (0.0, 3, &[79][..])
            );
        }
        // The report passes the same checks as a posted one.
        let json = serde_json::to_value(&steered).unwrap();
        assert_eq!(Report::from_json(&json).unwrap(), steered);
    }
}
