//! Spend: cost per day over the last 30 days, split by cloud, drawn as a
//! stacked bar chart in SVG on the server; and the month-to-date total.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use maud::{html, Markup};

use super::layout::{self, empty, Nav};
use super::{html, money, PageResult, Session};
use crate::http::AppRef;
use crate::lifecycle::cost::instance_cents_within;
use crate::store::InstanceRecord;

/// Days the chart covers, today included.
const DAYS: i64 = 30;
const PALETTE: &[&str] = &[
    "#2f5bd3", "#11804a", "#d08a00", "#c22a2a", "#7a3fc4", "#0f8b9a", "#b5467a", "#5d6778",
];

/// Cents per day (oldest first) per cloud.
pub struct Spend {
    pub days: Vec<DateTime<Utc>>,
    pub by_cloud: BTreeMap<String, Vec<i64>>,
    pub month_to_date: i64,
}

fn day_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.from_utc_datetime(&t.date_naive().and_time(NaiveTime::MIN))
}

/// What `recs` cost per day and cloud over the last [`DAYS`] days.
pub fn tally(recs: &[InstanceRecord], now: DateTime<Utc>) -> Spend {
    let today = day_start(now);
    let days: Vec<DateTime<Utc>> = (0..DAYS).rev().map(|d| today - Duration::days(d)).collect();
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(today);
    let mut by_cloud: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut month_to_date = 0;
    for r in recs {
        let row = by_cloud
            .entry(r.instance.cloud.clone())
            .or_insert_with(|| vec![0; days.len()]);
        for (n, d) in days.iter().enumerate() {
            row[n] += instance_cents_within(r, *d, *d + Duration::days(1), now);
        }
        month_to_date += instance_cents_within(r, month_start, now, now);
    }
    by_cloud.retain(|_, v| v.iter().any(|c| *c > 0));
    Spend {
        days,
        by_cloud,
        month_to_date,
    }
}

fn chart(s: &Spend) -> Markup {
    let (w, h, left, bottom) = (900.0_f64, 260.0_f64, 56.0_f64, 24.0_f64);
    let totals: Vec<i64> = (0..s.days.len())
        .map(|n| s.by_cloud.values().map(|v| v[n]).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slot = (w - left) / s.days.len() as f64;
    let scale = (h - bottom - 8.0) / max;
    html! {
        svg.chart #spend-chart viewBox=(format!("0 0 {w} {h}")) width="100%" role="img"
            aria-label="Cost per day over the last 30 days, by cloud" {
            @for frac in [0.0, 0.5, 1.0] {
                @let y = h - bottom - frac * max * scale;
                line x1=(left) x2=(w) y1=(y) y2=(y) stroke="#dde2ea" {}
                text x=(left - 6.0) y=(y + 4.0) text-anchor="end" { "$" (money((frac * max) as i64)) }
            }
            @for (n, day) in s.days.iter().enumerate() {
                @let x = left + n as f64 * slot + 2.0;
                @let mut y = h - bottom;
                @for (c, (cloud, v)) in s.by_cloud.iter().enumerate() {
                    @if v[n] > 0 {
                        @let bh = v[n] as f64 * scale;
                        @let top = { y -= bh; y };
                        rect x=(format!("{x:.1}")) y=(format!("{top:.1}")) width=(format!("{:.1}", slot - 4.0)) height=(format!("{bh:.1}"))
                            fill=(PALETTE[c % PALETTE.len()]) {
                            title { (day.format("%b %d")) " " (cloud) ": $" (money(v[n])) }
                        }
                    }
                }
                @if n % 5 == 4 || n + 1 == s.days.len() {
                    @let last = n + 1 == s.days.len();
                    text x=(format!("{:.1}", if last { w } else { x + slot / 2.0 })) y=(h - 6.0)
                        text-anchor=(if last { "end" } else { "middle" }) { (day.format("%b %d")) }
                }
            }
        }
        div.legend {
            @for (c, cloud) in s.by_cloud.keys().enumerate() {
                span { svg.swatch width="10" height="10" { rect width="10" height="10" fill=(PALETTE[c % PALETTE.len()]) {} } (cloud) }
            }
        }
    }
}

/// `GET /spend`.
pub async fn page(State(app): State<AppRef>, session: Session) -> PageResult {
    let now = app.clock.now();
    let since = day_start(now) - Duration::days(DAYS);
    let recs = app
        .store
        .instances_since(session.account.id, since.timestamp_millis())
        .await?;
    let s = tally(&recs, now);
    let last30: i64 = s.by_cloud.values().flatten().sum();
    let body = html! {
        h1 { "Spend" }
        div.cards {
            div.card { div.muted.small { "Month to date" } div.big #month-to-date { "$" (money(s.month_to_date)) } }
            div.card { div.muted.small { "Last 30 days" } div.big { "$" (money(last30)) } }
        }
        @if s.by_cloud.is_empty() {
            (empty("Nothing spent in the last 30 days: costs start when an instance becomes active.", "/offers", "Browse offers"))
        } @else {
            (chart(&s))
            h2 { "By cloud" }
            table #spend-by-cloud {
                thead { tr { th { "Cloud" } th.num { "Last 30 days" } } }
                tbody { @for (cloud, v) in &s.by_cloud { tr { td { (cloud) } td.num { "$" (money(v.iter().sum())) } } } }
            }
        }
    };
    Ok(html(layout::page(
        &app,
        &session,
        Nav::Spend,
        "Spend",
        body,
    )))
}
