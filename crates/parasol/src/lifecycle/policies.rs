//! The reconciler's side of the idle and health policies: on each step of
//! an active instance it evaluates health (health.rs) and idleness
//! (idle.rs) from the stored samples, records what changed, and acts.
//!
//! Nothing is kept in memory between steps: the health last found and
//! whether an idle alert fired are in the instance's record, and the idle
//! clock is the samples themselves, so a restart picks up where the last
//! process stopped. The step also says when the policies next need a look
//! (`Internal::policy_wake_ms`: a heartbeat deadline, the moment the idle
//! window would close), and the reconciler wakes the instance then, so a
//! policy acts within one pass of its moment.

use chrono::{DateTime, Duration, Utc};
use parasol_api::{HealthStatus, IdleAction, IdlePolicy, OnUnhealthy};
use serde_json::{json, Value};

use super::placement::{self, Replacing};
use super::reconciler::Reconciler;
use super::{begin_delete, health, idle};
use crate::agent::Resolution;
use crate::store::{InstanceRecord, StoreResult};

/// How often an idle window whose busy samples are only in the 1-minute
/// history is looked at again (the history's resolution).
const HISTORY_STEP: Duration = Duration::minutes(1);

/// The body `--alert-webhook-url` receives for a policy's alert, in the
/// shape of the threshold alerts (alerts.rs).
fn notification(rec: &InstanceRecord, kind: &str, message: &str, at: DateTime<Utc>) -> Value {
    json!({
        "event": "alert",
        "kind": kind,
        "message": message,
        "account_id": rec.account_id,
        "instance_id": rec.instance.id,
        "instance_name": rec.instance.name,
        "at": at,
    })
}

/// `instance x was idle for 30 minutes (...)`, for the idle events.
fn idle_message(rec: &InstanceRecord, p: &IdlePolicy) -> String {
    format!(
        "instance {} was idle for {} minutes (every GPU at or below {} %{})",
        rec.instance.name,
        p.minutes,
        p.max_gpu_utilization_percent,
        if p.count_ssh_sessions {
            ", no SSH session"
        } else {
            ""
        }
    )
}

impl Reconciler {
    /// The policies of an active instance; `true` when it began deleting
    /// it (idle `delete`, or a replacement). Store failures are logged and
    /// leave the policies for the next step.
    pub(super) async fn watch_policies(&self, rec: &mut InstanceRecord) -> bool {
        match self.policies(rec).await {
            Ok(deleting) => deleting,
            Err(e) => {
                tracing::warn!(instance = %rec.instance.id, error = %e, "could not evaluate the instance's policies");
                false
            }
        }
    }

    async fn policies(&self, rec: &mut InstanceRecord) -> StoreResult<bool> {
        let now = self.clock.now();
        let evidence = health::gather(&self.store, rec).await?;
        let report = health::evaluate(&evidence, now);
        let mut wake: Vec<DateTime<Utc>> = Vec::new();
        wake.extend(
            health::next_heartbeat_change_ms(evidence.seen.as_ref(), now)
                .and_then(DateTime::from_timestamp_millis),
        );

        let before = rec.internal.health.unwrap_or(HealthStatus::Unknown);
        if report.status != before {
            rec.internal.health = Some(report.status);
            let failing: Vec<String> = report
                .checks
                .iter()
                .filter(|c| c.status > HealthStatus::Healthy)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            let mut message = format!(
                "instance {} is {} (was {before})",
                rec.instance.name, report.status
            );
            if !failing.is_empty() {
                message = format!("{message}: {}", failing.join("; "));
            }
            tracing::info!(instance = %rec.instance.id, from = %before, to = %report.status, "health changed");
            self.event_with(
                rec,
                "instance.health_changed",
                message.clone(),
                json!({ "message": message, "health": report, "previous_health": before }),
            )
            .await;
            if report.status == HealthStatus::Failed
                && rec.instance.on_unhealthy == Some(OnUnhealthy::Alert)
            {
                self.record_alert(rec, "health.alert", "unhealthy", &message, now)
                    .await;
            }
        }
        if report.status == HealthStatus::Failed
            && rec.instance.on_unhealthy == Some(OnUnhealthy::Replace)
            && rec.internal.replaced_by.is_none()
        {
            // Retried on later steps until it is stored.
            return self.replace_unhealthy(rec, now).await;
        }

        let mut policies: Vec<IdlePolicy> = rec.instance.idle_policy.iter().cloned().collect();
        // Never idle without a report: no policy to read then.
        let bound = match evidence.seen {
            Some(_) => self.store.account_idle_policy(rec.account_id).await?,
            None => None,
        };
        if let Some(bound) = bound {
            // The account's binds instances made before it was set too.
            if !policies.contains(&bound) {
                policies.push(bound);
            }
        }
        let mut idle_under: Vec<IdlePolicy> = Vec::new();
        for p in policies {
            let (is_idle, next) = self.idle_state(rec, &evidence, &p, now).await?;
            if is_idle {
                idle_under.push(p);
            } else {
                wake.extend(next);
            }
        }
        if let Some(p) = idle_under.iter().find(|p| p.action == IdleAction::Delete) {
            let message = format!("{}; deleting it", idle_message(rec, p));
            tracing::info!(instance = %rec.instance.id, minutes = p.minutes, "idle: deleting");
            self.record_alert(rec, "idle.deleted", "idle_deleted", &message, now)
                .await;
            begin_delete(rec, now, Some(format!("idle for {} minutes", p.minutes)));
            return Ok(true);
        }
        match idle_under.first() {
            Some(p) if !rec.internal.idle_alerted => {
                let message = idle_message(rec, p);
                tracing::info!(instance = %rec.instance.id, minutes = p.minutes, "idle: alert");
                self.record_alert(rec, "idle.alert", "idle", &message, now)
                    .await;
                rec.internal.idle_alerted = true;
            }
            Some(_) => {}
            None => rec.internal.idle_alerted = false,
        }
        rec.internal.policy_wake_ms = wake
            .into_iter()
            .filter(|t| *t > now)
            .min()
            .map(|t| t.timestamp_millis());
        Ok(false)
    }

    /// Whether the instance is idle under `p` now, and if not, when it
    /// would be should every report from now on be idle.
    async fn idle_state(
        &self,
        rec: &InstanceRecord,
        evidence: &health::Evidence,
        p: &IdlePolicy,
        now: DateTime<Utc>,
    ) -> StoreResult<(bool, Option<DateTime<Utc>>)> {
        let Some(seen) = evidence.seen.as_ref() else {
            return Ok((false, None));
        };
        let id = rec.instance.id;
        let start = idle::window_start(p, now);
        let window = self.store.agent_window(id, start).await?;
        if idle::is_idle(p, Some(seen), &window, now) {
            return Ok((true, None));
        }
        let threshold = p.max_gpu_utilization_percent as f64;
        let busy = |w: &crate::agent::AgentWindow| {
            w.max_gpu_utilization_percent.is_some_and(|m| m > threshold)
                || (p.count_ssh_sessions && w.max_ssh_sessions > 0)
        };
        if !busy(&window) {
            // Idle so far, but not for long enough yet (or silent).
            return Ok((false, idle::idle_at(p, Some(seen), None)));
        }
        if busy(&evidence.latest) {
            // Busy right now, the common case: no need to read the samples
            // to know when the window could close.
            return Ok((false, idle::idle_at(p, Some(seen), evidence.latest.last_at)));
        }
        let samples = self.store.agent_samples(id, start, Resolution::Raw).await?;
        Ok(match idle::last_busy(p, &samples) {
            Some(b) => (false, idle::idle_at(p, Some(seen), Some(b))),
            // The busy reports are older than the raw ones kept: look
            // again at the history's resolution.
            None => (false, Some(now + HISTORY_STEP)),
        })
    }

    /// Records a policy's alert: an event whose data is the notification
    /// the alert webhook receives.
    async fn record_alert(
        &self,
        rec: &InstanceRecord,
        event: &str,
        kind: &str,
        message: &str,
        now: DateTime<Utc>,
    ) {
        if let Err(e) = self
            .store
            .record_event_with(
                rec.account_id,
                Some(rec.instance.id),
                event,
                message,
                notification(rec, kind, message, now),
                now.timestamp_millis(),
            )
            .await
        {
            tracing::warn!(instance = %rec.instance.id, event, error = %e, "could not record a policy event");
        }
    }

    /// `on_unhealthy: replace`: stores one replacement (its id follows
    /// from this instance's, so a repeated step finds it rather than make
    /// another), then deletes this instance. `false` when the replacement
    /// could not be stored; the next step tries again.
    async fn replace_unhealthy(
        &self,
        rec: &mut InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let new = placement::replacement_for(rec, now, Replacing::Unhealthy);
        let id = new.instance.id;
        if self.store.get_instance_any(id).await?.is_none() {
            self.store.insert_replacement(&new).await?;
        }
        rec.internal.replaced_by = Some(id);
        let message = format!(
            "instance {} failed its health checks; replaced by {id}",
            rec.instance.name
        );
        tracing::info!(instance = %rec.instance.id, replacement = %id, "unhealthy: replacing");
        self.event_with(
            rec,
            "health.replaced",
            message.clone(),
            json!({ "message": message, "replacement_id": id }),
        )
        .await;
        self.notify.notify_one();
        begin_delete(
            rec,
            now,
            Some(format!("failed its health checks; replaced by {id}")),
        );
        Ok(true)
    }
}
