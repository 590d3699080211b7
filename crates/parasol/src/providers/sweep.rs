//! The orphan sweep: machines at a provider that carry Parasol's marker but
//! that no live instance in the store accounts for are terminated.
//!
//! Such machines come from crashes between a provider's accepting a launch
//! and the store's recording it, from instances deleted while a provider
//! was unreachable, or from a store restored from an old backup. Each keeps
//! billing until someone notices; the sweep is that someone.
//!
//! The marker names the deployment (`parasol-<deployment id>-<instance
//! id>`), so two deployments sharing a cloud account never sweep each
//! other's machines. Machines named under the legacy marker
//! (`parasol-<instance id>`, before deployments had ids) are adopted only
//! when this store holds their instance and it is settled: such a machine
//! was this deployment's, and its instance is gone. A legacy machine no
//! store here knows of is left alone (it may be another deployment's) and
//! logged once per pass, for an operator to remove by hand.
//!
//! Volumes are swept the same way: a volume at a cloud under this
//! deployment's marker whose row is missing (the row is stored before the
//! cloud is asked, so only a store restored from an old backup lacks it)
//! or says it was deleted is deleted.

use std::time::Duration;

use tokio::sync::watch;

use super::{MachineState, Provider, Providers, VolumeState};
use crate::lifecycle::is_settled;
use crate::store::{Store, VolumeStatus};

/// Deletes `p`'s volumes under this deployment's marker that no live
/// volume row accounts for; returns how many it found.
async fn sweep_volumes(p: &dyn Provider, store: &Store) -> usize {
    let marked = match p.list_marked_volumes().await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(provider = p.name(), error = %e, "orphan sweep could not list volumes; will try again");
            return 0;
        }
    };
    let mut found = 0;
    for r in marked {
        let orphan = match store.get_volume_any(r.volume_id).await {
            Ok(Some(v)) => v.status == VolumeStatus::Deleted,
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(volume = %r.volume_id, error = %e, "orphan sweep could not read the store; skipping");
                continue;
            }
        };
        if !orphan {
            continue;
        }
        found += 1;
        match p.delete_volume(&r).await {
            Ok(VolumeState::Gone) => tracing::warn!(
                provider = p.name(),
                volume = %r.volume_id,
                "orphan sweep: deleted a volume that carries this deployment's marker but has no live volume"
            ),
            Ok(_) => tracing::warn!(
                provider = p.name(),
                volume = %r.volume_id,
                "orphan sweep: deleting a volume that carries this deployment's marker but has no live volume"
            ),
            Err(e) => tracing::warn!(
                provider = p.name(),
                volume = %r.volume_id,
                error = %e,
                "orphan sweep: deleting an orphaned volume failed; will try again"
            ),
        }
    }
    found
}

/// One pass over every provider; returns how many orphans (machines and
/// volumes) were found.
pub async fn sweep_once(providers: &Providers, store: &Store) -> usize {
    let mut found = 0;
    for p in providers.all() {
        found += sweep_volumes(p.as_ref(), store).await;
        let marked = match p.list_marked().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(provider = p.name(), error = %e, "orphan sweep could not list machines; will try again");
                continue;
            }
        };
        let legacy = match p.list_legacy_marked().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(provider = p.name(), error = %e, "orphan sweep could not list machines; will try again");
                continue;
            }
        };
        let candidates = marked
            .into_iter()
            .map(|id| (id, false))
            .chain(legacy.into_iter().map(|id| (id, true)));
        for (id, legacy) in candidates {
            let orphan = match store.get_instance_any(id).await {
                Ok(Some(rec)) => is_settled(&rec),
                // A machine under this deployment's marker with no record
                // is an orphan (a crash between launch and record).
                Ok(None) if !legacy => true,
                Ok(None) => {
                    tracing::info!(
                        provider = p.name(),
                        instance = %id,
                        "orphan sweep: leaving a machine under the legacy marker that this deployment has no record of (another deployment's, or lost in a store restore); remove it by hand if it is yours"
                    );
                    false
                }
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "orphan sweep could not read the store; skipping");
                    continue;
                }
            };
            if !orphan {
                continue;
            }
            found += 1;
            match p.terminate(id).await {
                Ok(MachineState::Gone) => {
                    tracing::warn!(provider = p.name(), instance = %id, "orphan sweep: a machine with no live instance was already gone")
                }
                Ok(_) => tracing::warn!(
                    provider = p.name(),
                    instance = %id,
                    "orphan sweep: terminating a machine that carries this deployment's marker but has no live instance"
                ),
                Err(e) => tracing::warn!(
                    provider = p.name(),
                    instance = %id,
                    error = %e,
                    "orphan sweep: terminating an orphaned machine failed; will try again"
                ),
            }
        }
    }
    found
}

/// Sweeps every `interval` until `stop` turns true.
pub async fn run(
    providers: Providers,
    store: Store,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {
                sweep_once(&providers, &store).await;
            }
            _ = stop.changed() => return,
        }
    }
}
