//! Volumes at their clouds: the reconciler's volume step.
//!
//! ```text
//! creating ─► available ─┐
//!     │                  ├─► deleting ─► deleted
//!     └─► error ─────────┘
//! ```
//!
//! `/volumes/create` stores the volume `creating` and answers at once, as
//! an instance create does; this step makes it at the cloud (the cloud's
//! id becomes `cloud_assigned_id`) or records the cloud's refusal as
//! `error` with the cloud's reason. A delete hides the volume at once and
//! leaves it `deleting`; this step deletes it at the cloud, retrying a
//! refusal forever, since a volume left behind keeps billing. Each step is
//! at most one provider call and one generation- and lease-checked write,
//! like an instance's. The cloud is asked by Parasol's volume id, carried
//! in the volume's marker name, so a create whose answer was lost is found
//! again instead of made twice.

use std::sync::atomic::Ordering;

use super::reconciler::Reconciler;
use crate::providers::{Provider, ProviderError, VolumeRequest, VolumeState};
use crate::store::{Store, StoreResult, VolumeRecord, VolumeStatus};

impl Reconciler {
    /// One step of one volume; see the module documentation.
    pub(super) async fn step_volume(&self, mut v: VolumeRecord) -> StoreResult<()> {
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        let before = v.status;
        let provider = self.catalog.providers().for_cloud(&v.cloud).cloned();
        match (v.status, provider) {
            (_, None) => {
                // Configured away: look again later rather than guess.
                tracing::warn!(volume = %v.id, cloud = %v.cloud, "no provider serves this volume's cloud");
                v.wake_at = Some(self.clock.now_ms() + 60_000);
            }
            (VolumeStatus::Creating, Some(p)) => self.make_volume(&mut v, p.as_ref()).await,
            (VolumeStatus::Deleting, Some(p)) => self.remove_volume(&mut v, p.as_ref()).await,
            (VolumeStatus::Available | VolumeStatus::Error | VolumeStatus::Deleted, Some(_)) => {
                v.wake_at = None
            }
        }
        if self
            .store
            .update_leased_volume(&mut v, self.replica)
            .await?
        {
            if v.status != before {
                self.stats.transitions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    volume = %v.id,
                    from = before.as_str(),
                    to = v.status.as_str(),
                    details = v.status_details.as_deref().unwrap_or(""),
                    "volume transition"
                );
                // Instances waiting for this volume launch now.
                self.notify.notify_one();
                record_transition(&self.store, &v, before, self.clock.now_ms()).await;
            }
        } else {
            self.stats.lost_races.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// `creating`: asks the cloud to make the volume (or, once it has an
    /// id, how the making goes).
    async fn make_volume(&self, v: &mut VolumeRecord, p: &dyn Provider) {
        let res = match &v.cloud_assigned_id {
            None => {
                let req = VolumeRequest {
                    volume_id: v.id,
                    name: v.name.clone(),
                    cloud: v.cloud.clone(),
                    region: v.region.clone(),
                    size_in_gb: v.size_in_gb,
                };
                self.call(p, "create_volume", p.create_volume(&req)).await
            }
            Some(_) => {
                let r = v.cloud_ref();
                self.call(p, "describe_volume", p.describe_volume(&r)).await
            }
        };
        match res {
            Ok(VolumeState::Available {
                cloud_assigned_id,
                zone,
            }) => {
                v.cloud_assigned_id = Some(cloud_assigned_id);
                v.zone = zone;
                v.status = VolumeStatus::Available;
                v.status_details = None;
                v.attempts = 0;
                v.wake_at = None;
            }
            Ok(VolumeState::Creating { cloud_assigned_id }) => {
                v.cloud_assigned_id = Some(cloud_assigned_id);
                v.attempts = 0;
                v.wake_at = Some(self.clock.now_ms() + self.cfg.poll.as_millis() as i64);
            }
            Ok(VolumeState::Failed { reason }) => volume_failed(v, reason),
            Ok(VolumeState::Deleting | VolumeState::Gone) => volume_failed(
                v,
                format!("{} no longer has the volume it was making", v.cloud),
            ),
            Err(ProviderError::Transient(m))
                if (v.attempts as u32) + 1 < self.cfg.max_launch_attempts =>
            {
                self.volume_back_off(v, m)
            }
            Err(e) => volume_failed(v, e.to_string()),
        }
    }

    /// `deleting`: deletes the volume at the cloud until it is gone.
    async fn remove_volume(&self, v: &mut VolumeRecord, p: &dyn Provider) {
        let r = v.cloud_ref();
        match self.call(p, "delete_volume", p.delete_volume(&r)).await {
            Ok(VolumeState::Gone) => {
                v.status = VolumeStatus::Deleted;
                v.status_details = None;
                v.attempts = 0;
                v.wake_at = None;
            }
            Ok(_) => {
                v.attempts = 0;
                v.wake_at = Some(self.clock.now_ms() + self.cfg.poll.as_millis() as i64);
            }
            Err(e) => self.volume_back_off(v, e.to_string()),
        }
    }

    fn volume_back_off(&self, v: &mut VolumeRecord, message: String) {
        v.attempts += 1;
        let delay = (500i64 << v.attempts.min(7)).min(60_000);
        tracing::debug!(volume = %v.id, attempts = v.attempts, error = %message, "volume call failed; backing off");
        v.status_details = Some(format!("retrying: {message}"));
        v.wake_at = Some(self.clock.now_ms() + delay);
    }
}

/// Into `error`, keeping the cloud's reason; nothing is left to do until
/// the volume is deleted.
fn volume_failed(v: &mut VolumeRecord, reason: String) {
    v.status = VolumeStatus::Error;
    v.status_details = Some(reason);
    v.attempts = 0;
    v.wake_at = None;
}

/// Records a written transition of `v` (now in its new status) as a
/// `volume.status_changed` event (data: the volume as the API shows it,
/// with `from` and `to`). The reconciler's steps and the API's delete both
/// record theirs here; a failure is logged, not fatal, as the transition
/// itself is already stored.
pub(crate) async fn record_transition(
    store: &Store,
    v: &VolumeRecord,
    before: VolumeStatus,
    now: i64,
) {
    let mut data = serde_json::to_value(crate::http::volumes::render(v, now)).unwrap_or_default();
    data["from"] = serde_json::json!(before.as_str());
    data["to"] = serde_json::json!(v.status.as_str());
    let message = format!(
        "volume {} went from {} to {}",
        v.name,
        before.as_str(),
        v.status.as_str()
    );
    if let Err(e) = store
        .record_event_with(
            v.account_id,
            None,
            "volume.status_changed",
            &message,
            data,
            now,
        )
        .await
    {
        tracing::warn!(volume = %v.id, error = %e, "could not record a volume event");
    }
}
