//! Auto-delete and alert thresholds, and the webhook that carries alerts.
//!
//! Thresholds are checked by the reconciler on active instances, which it
//! wakes exactly when the next threshold falls due (a date, or the moment
//! the accrued cost reaches a spend), so an instance is deleted or an alert
//! fires within one reconciler pass of the threshold: well under a second
//! on an idle server, at most the reconciler period (default 1 s) plus the
//! time to work through the due queue on a busy one.
//!
//! A crossed alert is recorded as an event whose data is the notification
//! below; webhooks (crate::webhooks) deliver it, to the subscriptions that
//! take `alert` events and to `--alert-webhook-url`, from the store's
//! queue and never on the reconciler's time.

use serde_json::{json, Value};

use super::cost;
use crate::store::InstanceRecord;
use crate::validate;

/// A crossed threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossed {
    /// `date` or `spend`.
    pub kind: &'static str,
    pub message: String,
}

fn date_ms(t: &Option<String>) -> Option<i64> {
    t.as_deref()
        .and_then(|d| validate::rfc3339("date_threshold", d).ok())
        .map(|d| d.timestamp_millis())
}

fn spend_cents(t: &Option<String>) -> Option<i64> {
    t.as_deref()
        .and_then(|s| validate::dollars_to_cents("spend_threshold", s).ok())
}

/// Why the instance should be auto-deleted now, if it should.
pub fn auto_delete_due(rec: &InstanceRecord, now_ms: i64, cents: i64) -> Option<String> {
    let a = rec.instance.auto_delete.as_ref()?;
    if date_ms(&a.date_threshold).is_some_and(|d| now_ms >= d) {
        return Some("auto-deleted: date threshold reached".into());
    }
    if spend_cents(&a.spend_threshold).is_some_and(|s| cents >= s) {
        return Some("auto-deleted: spend threshold reached".into());
    }
    None
}

/// Alert thresholds crossed and not yet fired.
pub fn alerts_due(rec: &InstanceRecord, now_ms: i64, cents: i64) -> Vec<Crossed> {
    let Some(a) = rec.instance.alert.as_ref() else {
        return Vec::new();
    };
    let fired = |k: &str| rec.internal.alerts_fired.iter().any(|f| f == k);
    let mut out = Vec::new();
    if let Some(d) = &a.date_threshold {
        if !fired("date") && date_ms(&a.date_threshold).is_some_and(|t| now_ms >= t) {
            out.push(Crossed {
                kind: "date",
                message: format!("instance {} reached its alert date {d}", rec.instance.name),
            });
        }
    }
    if let Some(s) = &a.spend_threshold {
        if !fired("spend") && spend_cents(&a.spend_threshold).is_some_and(|t| cents >= t) {
            out.push(Crossed {
                kind: "spend",
                message: format!(
                    "instance {} has cost ${}, reaching its alert threshold of ${s}",
                    rec.instance.name,
                    parasol_api::dollars(cents)
                ),
            });
        }
    }
    out
}

/// When the next unfired threshold falls due, in ms.
pub fn next_due_ms(rec: &InstanceRecord) -> Option<i64> {
    let started = rec.instance.active_at?.timestamp_millis();
    let price = rec.instance.hourly_price;
    let spend_at =
        |s: &Option<String>| spend_cents(s).and_then(|c| cost::reaches_at_ms(price, started, c));
    let mut times = Vec::new();
    if let Some(a) = &rec.instance.auto_delete {
        times.extend(date_ms(&a.date_threshold));
        times.extend(spend_at(&a.spend_threshold));
    }
    if let Some(a) = &rec.instance.alert {
        let fired = |k: &str| rec.internal.alerts_fired.iter().any(|f| f == k);
        if !fired("date") {
            times.extend(date_ms(&a.date_threshold));
        }
        if !fired("spend") {
            times.extend(spend_at(&a.spend_threshold));
        }
    }
    times.into_iter().min()
}

/// The webhook body for a crossed alert.
pub fn notification(
    rec: &InstanceRecord,
    crossed: &Crossed,
    cents: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Value {
    json!({
        "event": "alert",
        "kind": format!("{}_threshold", crossed.kind),
        "message": crossed.message,
        "account_id": rec.account_id,
        "instance_id": rec.instance.id,
        "instance_name": rec.instance.name,
        "cost_estimate": parasol_api::dollars(cents),
        "at": at,
    })
}
