//! The lifecycle: how instances move through their states, and what they
//! cost on the way.
//!
//! ```text
//! creating ─► pending_provider ─► pending ─► active ─► deleting ─► deleted
//!     │              │               │          │
//!     └──────────────┴───────────────┴──────────┴─► error (machine released)
//! ```
//!
//! The API only ever moves an instance into `creating` (create) or
//! `deleting` (delete); every other transition belongs to the
//! [`reconciler`]. Each transition is a generation-checked write, so when
//! the API and the reconciler race, one of them re-reads instead of
//! overwriting the other.

pub mod alerts;
pub mod budgets;
pub mod clusters;
pub mod cost;
pub mod health;
pub mod idle;
pub mod placement;
mod policies;
pub mod reconciler;
pub mod volumes;

use parasol_api::Status;

use crate::store::InstanceRecord;

/// Whether the reconciler still has work to do for a status.
pub fn is_settled(rec: &InstanceRecord) -> bool {
    match rec.instance.status {
        Status::Deleted => true,
        Status::Error => rec.internal.released,
        Status::Creating
        | Status::PendingProvider
        | Status::Pending
        | Status::Active
        | Status::Deleting => false,
    }
}

/// Moves `rec` to `deleting` as the user asked: billing stops now.
pub fn begin_delete(
    rec: &mut InstanceRecord,
    now: chrono::DateTime<chrono::Utc>,
    details: Option<String>,
) {
    rec.instance.status = Status::Deleting;
    rec.instance.status_details = details;
    if rec.internal.billing_stopped_at.is_none() {
        rec.internal.billing_stopped_at = Some(now);
    }
    rec.internal.attempts = 0;
    rec.wake_at = Some(now.timestamp_millis());
}
