//! What an instance's agent reports, for the console: the health badge and
//! its checks, and the GPU utilisation and memory charts, drawn as SVG on
//! the server like the spend chart, so the page needs no script to show them.

use axum::extract::{Path, State};
use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};
use parasol_api::{HealthResponse, HealthStatus, Instance, Sample, Status};

use super::{html, PageResult, Session};
use crate::agent::Resolution;
use crate::error::ApiError;
use crate::http::AppRef;
use crate::lifecycle::health;

/// How far back the instance page's charts reach.
const WINDOW: Duration = Duration::hours(1);
/// The shortest time the charts span.
const MIN_SPAN: Duration = Duration::minutes(5);
/// One colour per GPU index (wrapping), as on the spend chart.
const PALETTE: &[&str] = &[
    "#2f5bd3", "#11804a", "#d08a00", "#c22a2a", "#7a3fc4", "#0f8b9a", "#b5467a", "#5d6778",
];

/// An instance's health now and its agent's latest sample, for the list.
/// Only active instances have them: the others run no agent.
pub struct Glance {
    pub health: HealthResponse,
    pub latest: Option<Sample>,
}

/// The health and latest sample of `i`, or `None` when it is not active.
pub async fn glance(app: &AppRef, s: &Session, i: &Instance) -> Result<Option<Glance>, ApiError> {
    if i.status != Status::Active {
        return Ok(None);
    }
    let Some(rec) = app.store.get_instance(s.account.id, i.id).await? else {
        return Ok(None);
    };
    let evidence = health::gather(&app.store, &rec).await?;
    let latest = match &evidence.seen {
        // A window from the last report's own time holds it alone.
        Some(seen) => app
            .store
            .agent_samples(i.id, seen.last_seen_at, Resolution::Raw)
            .await?
            .pop(),
        None => None,
    };
    Ok(Some(Glance {
        health: health::evaluate(&evidence, app.clock.now()),
        latest,
    }))
}

/// The mean utilisation of a sample's GPUs.
pub fn mean_utilization(s: &Sample) -> Option<f64> {
    (!s.gpus.is_empty())
        .then(|| s.gpus.iter().map(|g| g.utilization_percent).sum::<f64>() / s.gpus.len() as f64)
}

/// A health status as a coloured badge.
pub fn badge(h: HealthStatus) -> Markup {
    html! { span class=(format!("hb hb-{}", h.as_str())) title="health" { (h.as_str()) } }
}

/// The health badge and, under it, every check with what it saw.
fn health_part(h: &HealthResponse) -> Markup {
    html! {
        div #health {
            h2 { "Health " (badge(h.status)) }
            table.checks #health-checks {
                thead { tr { th { "Check" } th { "Status" } th { "What it saw" } } }
                tbody {
                    @for c in &h.checks {
                        tr data-check=(c.name) { td { (c.name) } td { (badge(c.status)) } td { (c.detail) } }
                    }
                }
            }
        }
    }
}

/// One line per GPU over the window, of `value` (whose axis runs from 0 to
/// `top`), labelled with `unit`.
struct Chart<'a> {
    id: &'a str,
    label: &'a str,
    top: f64,
    unit: &'a str,
    value: &'a dyn Fn(&parasol_api::GpuSample) -> f64,
}

fn line_chart(c: &Chart, samples: &[Sample], from: DateTime<Utc>, to: DateTime<Utc>) -> Markup {
    let (w, h, left, bottom) = (900.0_f64, 200.0_f64, 56.0_f64, 24.0_f64);
    let span = (to - from).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| left + (t - from).num_milliseconds() as f64 / span * (w - left);
    let top = c.top.max(1.0);
    let y = |v: f64| h - bottom - v.clamp(0.0, top) / top * (h - bottom - 8.0);
    let gpus = samples.iter().map(|s| s.gpus.len()).max().unwrap_or(0);
    html! {
        svg.chart id=(c.id) viewBox=(format!("0 0 {w} {h}")) width="100%" role="img" aria-label=(c.label) {
            @for frac in [0.0, 0.5, 1.0] {
                @let gy = y(frac * top);
                line x1=(left) x2=(w) y1=(format!("{gy:.1}")) y2=(format!("{gy:.1}")) stroke="#dde2ea" {}
                text x=(left - 6.0) y=(format!("{:.1}", gy + 4.0)) text-anchor="end" { (format!("{:.0}", frac * top)) (c.unit) }
            }
            text x=(left) y=(h - 6.0) { (from.format("%H:%M")) }
            text x=(w) y=(h - 6.0) text-anchor="end" { (to.format("%H:%M")) " UTC" }
            @for g in 0..gpus {
                @let points: Vec<String> = samples.iter()
                    .filter_map(|s| s.gpus.get(g).map(|v| format!("{:.1},{:.1}", x(s.at), y((c.value)(v)))))
                    .collect();
                polyline.series data-gpu=(g) points=(points.join(" ")) fill="none" stroke-width="2"
                    stroke=(PALETTE[g % PALETTE.len()]) {
                    title { "GPU " (g) }
                }
            }
        }
    }
}

/// The part of an instance page that follows its agent: the health badge,
/// its checks and the two charts. It refreshes on the instance's events
/// (a health change among them) and at the agent's reporting interval, so
/// each new sample shows without a reload.
pub async fn part(app: &AppRef, s: &Session, i: &Instance) -> Result<Markup, ApiError> {
    let done = matches!(i.status, Status::Deleted);
    let every = app.agent.settings().interval_s.max(5);
    let Some(rec) = app.store.get_instance(s.account.id, i.id).await? else {
        return Err(ApiError::not_found("instance"));
    };
    let now = app.clock.now();
    let evidence = health::gather(&app.store, &rec).await?;
    let h = health::evaluate(&evidence, now);
    let samples = app
        .store
        .agent_samples(i.id, now - WINDOW, Resolution::Raw)
        .await?;
    // A machine that started reporting a moment ago gets a chart of that
    // moment, not a line squeezed against the right edge of an hour.
    let from = samples
        .first()
        .map_or(now - WINDOW, |s| s.at.min(now - MIN_SPAN));
    let latest = samples.last();
    let total_gib = latest
        .and_then(|l| l.gpus.iter().map(|g| g.memory_total_mib).max())
        .unwrap_or(0) as f64
        / 1024.0;
    let util = Chart {
        id: "gpu-util-chart",
        label: "GPU utilisation per GPU, percent",
        top: 100.0,
        unit: "%",
        value: &|g| g.utilization_percent,
    };
    let mem = Chart {
        id: "gpu-mem-chart",
        label: "GPU memory in use per GPU, GiB",
        top: total_gib.ceil(),
        unit: " GiB",
        value: &|g| g.memory_used_mib as f64 / 1024.0,
    };
    Ok(html! {
        div #gpu hx-get=[(!done).then(|| format!("/instances/{}/gpu", i.id))]
            hx-trigger=(format!("live, every {every}s")) hx-swap="outerHTML"
            data-live=[(!done).then_some("instance.")] data-live-id=(i.id) {
            (health_part(&h))
            h2 { "GPUs" }
            @match latest {
                None => p.muted #gpu-none { "No report from the instance's agent in the last hour: the charts start with its first report." },
                Some(l) => {
                    div.cards {
                        div.card { div.muted.small { "GPU utilisation" } div.big #gpu-util-now {
                            (mean_utilization(l).map(|u| format!("{u:.0}%")).unwrap_or_else(|| "—".into())) } }
                        div.card { div.muted.small { "GPU memory" } div.big #gpu-mem-now {
                            (format!("{:.1} / {:.0} GiB",
                                l.gpus.iter().map(|g| g.memory_used_mib).sum::<u64>() as f64 / 1024.0,
                                l.gpus.iter().map(|g| g.memory_total_mib).sum::<u64>() as f64 / 1024.0)) } }
                        div.card { div.muted.small { "Last report" } div.big { (l.at.format("%H:%M:%S")) } }
                    }
                    h3 { "Utilisation" }
                    (line_chart(&util, &samples, from, now))
                    h3 { "Memory" }
                    (line_chart(&mem, &samples, from, now))
                    div.legend {
                        @for g in 0..l.gpus.len() {
                            span { svg.swatch width="10" height="10" { rect width="10" height="10" fill=(PALETTE[g % PALETTE.len()]) {} } "GPU " (g) }
                        }
                    }
                }
            }
        }
    })
}

/// `GET /instances/{id}/gpu`: the part alone, for htmx.
pub async fn page(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let i = super::api(crate::http::instances::info(
        State(app.clone()),
        axum::Extension(session.account.clone()),
        Path(id),
    ))
    .await?;
    Ok(html(part(&app, &session, &i).await?))
}
