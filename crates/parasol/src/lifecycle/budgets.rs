//! Monthly limits at run time: the budget alert, and `on_exceed: "delete"`.
//!
//! Admission (store/budgets.rs) refuses creates once the limit is reached;
//! this pass, run by the reconciler on every run, watches the accounts whose
//! budget has a monthly limit. It fires the alert once per month when the
//! month-to-date spend crosses `alert_at_percent`, and with `on_exceed:
//! "delete"` deletes the account's running instances with billing stopped
//! at the exact millisecond the accrual reached the limit (so a late pass,
//! or a test clock that jumps past it, never bills beyond the limit). It
//! also says when the next of these falls due, so the reconciler wakes
//! then rather than up to a period late.

use chrono::{DateTime, Datelike, Utc};
use parasol_api::{dollars, OnExceed, Status};
use serde_json::json;

use super::begin_delete;
use crate::clock::from_millis;
use crate::store::{
    month_start, next_month_start, spend_at, InstanceRecord, Store, StoreResult, Watched,
};

/// The first millisecond in `lo..=hi` at which the month-to-date spend of
/// `recs` reaches `cents`, if it does by `hi` (spend only grows with time).
fn reaches(recs: &[InstanceRecord], cents: i64, lo: i64, hi: i64) -> Option<i64> {
    if spend_at(recs, from_millis(hi)) < cents {
        return None;
    }
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if spend_at(recs, from_millis(mid)) >= cents {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// The alert threshold in cents: `percent` of the limit, rounded up so the
/// alert never fires below the percentage.
fn alert_cents(limit: i64, percent: i64) -> i64 {
    ((i128::from(limit) * i128::from(percent) + 99) / 100) as i64
}

/// One pass over the watched accounts; returns when the next threshold
/// falls due (ms), if any does this month.
pub async fn enforce(store: &Store, now: DateTime<Utc>) -> StoreResult<Option<i64>> {
    let mut next: Option<i64> = None;
    for w in store.watched_accounts().await? {
        if let Some(t) = enforce_one(store, &w, now).await? {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    Ok(next)
}

async fn enforce_one(store: &Store, w: &Watched, now: DateTime<Utc>) -> StoreResult<Option<i64>> {
    let recs = store.instances_of_month(w.account_id, now).await?;
    let spent = spend_at(&recs, now);
    let limit = w.monthly_limit_cents;
    let month = format!("{:04}-{:02}", now.year(), now.month());
    let now_ms = now.timestamp_millis();
    let month_end = next_month_start(now).timestamp_millis() - 1;
    let mut next = Vec::new();
    if let Some(p) = w.budget.alert_at_percent {
        let at = alert_cents(limit, p);
        let fired = w.alert_month.as_deref() == Some(month.as_str());
        if !fired && spent >= at {
            if store.claim_budget_alert(w.account_id, &month).await? {
                let message = format!(
                    "spent ${} this month, {p}% of the monthly limit ${} reached",
                    dollars(spent),
                    dollars(limit)
                );
                // The data is the body `--alert-webhook-url` has always
                // received for a budget alert.
                let data = json!({
                    "event": "alert",
                    "kind": "budget_threshold",
                    "message": message,
                    "account_id": w.account_id,
                    "month_to_date_spend": dollars(spent),
                    "monthly_limit": dollars(limit),
                    "alert_at_percent": p,
                    "at": now,
                });
                store
                    .record_event_with(w.account_id, None, "budget.alert", &message, data, now_ms)
                    .await?;
                tracing::info!(account = %w.account_id, "budget alert fired");
            }
        } else if !fired {
            next.extend(reaches(&recs, at, now_ms, month_end));
        }
    }
    if w.budget.on_exceed == Some(OnExceed::Delete) {
        let start = month_start(now).timestamp_millis();
        match reaches(&recs, limit, start, now_ms) {
            Some(at) => delete_running(store, w, recs, at.max(w.budget_set_at), now_ms).await?,
            None => next.extend(reaches(&recs, limit, now_ms, month_end)),
        }
    }
    Ok(next.into_iter().min())
}

/// Deletes every instance of the account that is running or on its way,
/// billing stopped at `at` (when the limit was reached, or when the budget
/// was set if it was already past then). A write that loses
/// a race is left for the next pass.
async fn delete_running(
    store: &Store,
    w: &Watched,
    recs: Vec<InstanceRecord>,
    at: i64,
    now_ms: i64,
) -> StoreResult<()> {
    let stop = from_millis(at);
    for mut rec in recs {
        if !matches!(
            rec.instance.status,
            Status::Creating | Status::PendingProvider | Status::Pending | Status::Active
        ) {
            continue;
        }
        let reason = format!(
            "deleted: the account's monthly limit ${} was reached",
            dollars(w.monthly_limit_cents)
        );
        begin_delete(&mut rec, stop, Some(reason.clone()));
        rec.wake_at = Some(now_ms);
        if store.update_instance(&mut rec, now_ms).await? {
            let message = format!("instance {} {reason}", rec.instance.name);
            let mut data = serde_json::to_value(&rec.instance)?;
            data["message"] = json!(message);
            data["monthly_limit"] = json!(dollars(w.monthly_limit_cents));
            store
                .record_event_with(
                    w.account_id,
                    Some(rec.instance.id),
                    "budget.deleted",
                    &message,
                    data,
                    now_ms,
                )
                .await?;
            tracing::info!(instance = %rec.instance.id, account = %w.account_id, "deleted by budget");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alert_threshold_rounds_up() {
        assert_eq!(alert_cents(50_000, 80), 40_000);
        assert_eq!(alert_cents(101, 50), 51);
        assert_eq!(alert_cents(100, 100), 100);
    }
}
