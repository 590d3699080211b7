//! Cost accrual: the one function every cost figure comes from.

use chrono::{DateTime, Utc};

use crate::store::InstanceRecord;

const MS_PER_HOUR: i128 = 3_600_000;

/// Cents accrued at `hourly_cents` per hour from `from_ms` to `to_ms`.
///
/// Rounded down to the whole cent: a user is never billed a fraction of a
/// cent they did not use up. Computed in 128-bit integers, so it is exact
/// for any price and duration that fit in an `i64`, and an interval that
/// ends before it starts costs nothing.
pub fn accrued_cents(hourly_cents: i64, from_ms: i64, to_ms: i64) -> i64 {
    accrued(i128::from(hourly_cents) * MICRO, from_ms, to_ms)
}

/// Millionths of a cent in a cent.
const MICRO: i128 = 1_000_000;

/// The accrual every figure goes through: a rate in millionths of a cent
/// per hour (fine enough for storage priced in millionths of a dollar per
/// GB-hour), integrated over `from_ms..to_ms` and rounded down to the cent.
pub fn accrued(rate_microcents_per_hour: i128, from_ms: i64, to_ms: i64) -> i64 {
    if to_ms <= from_ms || rate_microcents_per_hour <= 0 {
        return 0;
    }
    let micro = rate_microcents_per_hour.saturating_mul(i128::from(to_ms) - i128::from(from_ms))
        / MS_PER_HOUR;
    i64::try_from(micro / MICRO).unwrap_or(i64::MAX)
}

/// A volume's cost from `created_ms` to `to_ms`: size times the price per
/// GB-hour (in millionths of a dollar, that is 100 millionths of a cent).
pub fn volume_cents(
    size_gb: i64,
    price_micros_per_gb_hour: i64,
    created_ms: i64,
    to_ms: i64,
) -> i64 {
    let rate = i128::from(size_gb) * i128::from(price_micros_per_gb_hour) * 100;
    accrued(rate, created_ms, to_ms)
}

/// What a billed interval has cost by `now`: it starts at `started` (none:
/// not billing yet) and ends at `stopped` or now.
pub fn interval_cents(
    hourly_cents: i64,
    started: Option<DateTime<Utc>>,
    stopped: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> i64 {
    let Some(start) = started else { return 0 };
    let end = stopped.unwrap_or(now).min(now);
    accrued_cents(
        hourly_cents,
        start.timestamp_millis(),
        end.timestamp_millis(),
    )
}

/// An instance's accrued cost: from `active_at` until billing stopped.
pub fn instance_cents(rec: &InstanceRecord, now: DateTime<Utc>) -> i64 {
    interval_cents(
        rec.instance.hourly_price,
        rec.instance.active_at,
        rec.internal.billing_stopped_at,
        now,
    )
}

/// The part of an instance's billed time that falls within `from..to`, as
/// of `now`: from `active_at` until billing stopped, clipped to the window;
/// `None` if none of it does.
pub fn billed_within(
    rec: &InstanceRecord,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let start = rec.instance.active_at?.max(from);
    let end = rec
        .internal
        .billing_stopped_at
        .unwrap_or(now)
        .min(now)
        .min(to);
    (start < end).then_some((start, end))
}

/// The part of an instance's cost accrued within `from..to` (one day of
/// the console's spend chart, a usage window), as of `now`.
pub fn instance_cents_within(
    rec: &InstanceRecord,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> i64 {
    billed_within(rec, from, to, now).map_or(0, |(start, end)| {
        accrued_cents(
            rec.instance.hourly_price,
            start.timestamp_millis(),
            end.timestamp_millis(),
        )
    })
}

/// When an interval that started at `started` reaches `cents`, in ms.
pub fn reaches_at_ms(hourly_cents: i64, started_ms: i64, cents: i64) -> Option<i64> {
    if hourly_cents <= 0 {
        return None;
    }
    // Smallest t with hourly * t / H >= cents: t = ceil(cents * H / hourly).
    let t =
        (i128::from(cents) * MS_PER_HOUR + i128::from(hourly_cents) - 1) / i128::from(hourly_cents);
    i64::try_from(t).ok().map(|t| started_ms.saturating_add(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hour_costs_the_hourly_price() {
        assert_eq!(accrued_cents(249, 0, 3_600_000), 249);
    }

    #[test]
    fn partial_cents_round_down() {
        // 100 cents/h for 35 999 ms is 0.99997 cents.
        assert_eq!(accrued_cents(100, 0, 35_999), 0);
        assert_eq!(accrued_cents(100, 0, 36_000), 1);
    }

    #[test]
    fn reversed_or_free_intervals_cost_nothing() {
        assert_eq!(accrued_cents(100, 10, 5), 0);
        assert_eq!(accrued_cents(0, 0, 3_600_000), 0);
    }

    #[test]
    fn billing_stops_when_the_interval_is_closed() {
        use crate::clock::from_millis;
        let start = Some(from_millis(0));
        let stop = Some(from_millis(1_800_000));
        let later = from_millis(7_200_000);
        assert_eq!(interval_cents(200, start, stop, later), 100);
        assert_eq!(interval_cents(200, start, None, later), 400);
        assert_eq!(interval_cents(200, None, None, later), 0);
    }

    #[test]
    fn volumes_accrue_size_times_price_exactly() {
        // 1000 GB at $0.000137/GB-h for 10 h = $1.37.
        assert_eq!(volume_cents(1000, 137, 0, 36_000_000), 137);
        // 1 GB at $0.0001/GB-h for a day is 0.24 cents: nothing yet.
        assert_eq!(volume_cents(1, 100, 0, 86_400_000), 0);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        assert_eq!(accrued_cents(i64::MAX, 0, i64::MAX), i64::MAX);
    }

    #[test]
    fn reaches_at_is_the_first_millisecond_at_or_over_the_amount() {
        let t = reaches_at_ms(249, 1_000, 500).unwrap();
        assert!(accrued_cents(249, 1_000, t) >= 500);
        assert!(accrued_cents(249, 1_000, t - 1) < 500);
    }
}
