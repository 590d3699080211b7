//! The orphan sweep: machines at a provider that carry Parasol's marker but
//! that no live instance in the store accounts for are terminated.
//!
//! Such machines come from crashes between a provider's accepting a launch
//! and the store's recording it, from instances deleted while a provider
//! was unreachable, or from a store restored from an old backup. Each keeps
//! billing until someone notices; the sweep is that someone.

use std::time::Duration;

use tokio::sync::watch;

use super::{MachineState, Providers};
use crate::lifecycle::is_settled;
use crate::store::Store;

/// One pass over every provider; returns how many orphans were found.
pub async fn sweep_once(providers: &Providers, store: &Store) -> usize {
    let mut found = 0;
    for p in providers.all() {
        let marked = match p.list_marked().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(provider = p.name(), error = %e, "orphan sweep could not list machines; will try again");
                continue;
            }
        };
        for id in marked {
            let live = match store.get_instance_any(id).await {
                Ok(Some(rec)) => !is_settled(&rec),
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "orphan sweep could not read the store; skipping");
                    continue;
                }
            };
            if live {
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
                    "orphan sweep: terminating a machine that carries Parasol's marker but has no live instance"
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
