//! `parasol instances metrics` and `parasol instances top`: what the
//! instances' agents report, as a table of samples or as a live view of the
//! whole account.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parasol_api::{
    HealthResponse, HealthStatus, IdleAction, IdlePolicy, Instance, InstancesResponse,
    MetricsResponse, Sample, Status,
};
use uuid::Uuid;

use super::client::{Api, CliError};
use super::instances::resolve;
use super::output::{ansi, color_stdout, print_raw, Cell, Format, Table};
use crate::lifecycle::idle;

/// `parasol instances metrics`.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// Instance id or name.
    pub instance: String,
    /// Oldest sample: an RFC 3339 time, or a duration back from now such
    /// as `30m`, `2h` or `3d`. The server's default is the last hour.
    #[arg(long, value_name = "TIME|DURATION")]
    pub since: Option<String>,
    /// `raw` (every report) or `1m` (the 1-minute history, kept for days).
    #[arg(long, value_parser = ["raw", "1m"])]
    pub resolution: Option<String>,
}

/// `parasol instances top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 5, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Print one table and exit.
    #[arg(long)]
    pub once: bool,
}

/// `--since` as the RFC 3339 time the API takes.
fn since_param(raw: &str, now: DateTime<Utc>) -> Result<String, CliError> {
    if DateTime::parse_from_rfc3339(raw).is_ok() {
        return Ok(raw.to_string());
    }
    let bad = || {
        CliError::new(format!(
            "invalid --since {raw:?}: expected an RFC 3339 time or a duration such as 30m, 2h or 3d"
        ))
    };
    let (n, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok((now - d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Runs `instances metrics`.
pub async fn metrics(api: &Api, format: Format, args: &MetricsArgs) -> Result<(), CliError> {
    let id = resolve(api, &args.instance).await?;
    let mut query = vec![];
    if let Some(s) = &args.since {
        query.push(("since", since_param(s, Utc::now())?));
    }
    if let Some(r) = &args.resolution {
        query.push(("resolution", r.clone()));
    }
    let answer = api
        .get_query(&format!("/instances/{id}/metrics"), &query)
        .await?;
    if format == Format::Json {
        print_raw(&answer);
        return Ok(());
    }
    let m: MetricsResponse = answer.parse()?;
    let Some(agent) = &m.agent else {
        println!("No report yet: the instance's agent has not been heard from.");
        return Ok(());
    };
    println!(
        "agent {} last seen {}",
        agent.version,
        agent
            .last_seen_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let mut t = Table::new(&[
        "TIME", "GPU", "UTIL%", "MEM MiB", "TEMP", "POWER", "ECC", "XID", "SSH",
    ]);
    for s in &m.samples {
        let at = s.at.format("%Y-%m-%d %H:%M:%S").to_string();
        if s.gpus.is_empty() {
            t.row(vec![
                at.clone().into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                s.ssh_sessions.to_string().into(),
            ]);
        }
        for g in &s.gpus {
            t.row(vec![
                at.clone().into(),
                g.index.to_string().into(),
                format!("{:.0}", g.utilization_percent).into(),
                format!("{}/{}", g.memory_used_mib, g.memory_total_mib).into(),
                g.temperature_c
                    .map(|c| format!("{c:.0}C"))
                    .unwrap_or_else(|| "-".into())
                    .into(),
                g.power_w
                    .map(|w| format!("{w:.0}W"))
                    .unwrap_or_else(|| "-".into())
                    .into(),
                g.ecc_uncorrectable.to_string().into(),
                if g.xid.is_empty() {
                    "-".to_string()
                } else {
                    g.xid
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }
                .into(),
                s.ssh_sessions.to_string().into(),
            ]);
        }
    }
    t.print("No samples in that window.");
    Ok(())
}

/// One instance's line of `top`.
struct Line {
    instance: Instance,
    latest: Option<Sample>,
    idle_minutes: Option<i64>,
    health: HealthResponse,
}

/// The policy `top` measures idleness by: the instance's own, or the
/// defaults an idle policy gets.
fn idle_measure(i: &Instance) -> IdlePolicy {
    i.idle_policy.clone().unwrap_or(IdlePolicy {
        max_gpu_utilization_percent: 5,
        minutes: 60,
        count_ssh_sessions: true,
        action: IdleAction::Alert,
    })
}

/// Minutes the instance has been idle as of its latest sample: since its
/// last busy sample, or since the oldest sample in view when none was busy.
/// `None` when it is busy now or there are no samples.
fn idle_minutes(p: &IdlePolicy, samples: &[Sample]) -> Option<i64> {
    let latest = samples.last()?;
    if idle::busy(p, latest) {
        return None;
    }
    let from = idle::last_busy(p, samples).or_else(|| samples.first().map(|s| s.at))?;
    Some((latest.at - from).num_minutes())
}

/// How many instances `top` asks about at once.
const CONCURRENT: usize = 8;

async fn line(api: &Api, i: Instance) -> Result<Line, CliError> {
    let m: MetricsResponse = api
        .get(&format!("/instances/{}/metrics", i.id))
        .await?
        .parse()?;
    let health: HealthResponse = api
        .get(&format!("/instances/{}/health", i.id))
        .await?
        .parse()?;
    Ok(Line {
        idle_minutes: idle_minutes(&idle_measure(&i), &m.samples),
        latest: m.samples.last().cloned(),
        instance: i,
        health,
    })
}

async fn gather(api: &Api) -> Result<Vec<Line>, CliError> {
    use futures::{StreamExt, TryStreamExt};
    let all: InstancesResponse = api.get("/instances").await?.parse()?;
    let active = all
        .instances
        .into_iter()
        .filter(|i| i.status == Status::Active);
    let mut lines: Vec<Line> = futures::stream::iter(active.map(|i| line(api, i)))
        .buffer_unordered(CONCURRENT)
        .try_collect()
        .await?;
    lines.sort_by(|a, b| a.instance.name.cmp(&b.instance.name));
    Ok(lines)
}

/// The colour of a health status.
pub fn health_color(h: HealthStatus) -> &'static str {
    match h {
        HealthStatus::Healthy => ansi::GREEN,
        HealthStatus::Degraded => ansi::YELLOW,
        HealthStatus::Failed => ansi::RED,
        HealthStatus::Unknown => ansi::DIM,
    }
}

fn short(id: Uuid) -> String {
    id.to_string()[..8].to_string()
}

/// The table of `top`.
fn table(lines: &[Line]) -> Table {
    let mut t = Table::new(&[
        "ID", "NAME", "TYPE", "GPUS", "UTIL%", "MEM GiB", "TEMP", "IDLE", "HEALTH", "CHECKS",
    ]);
    for l in lines {
        let i = &l.instance;
        let (util, mem, temp) = match &l.latest {
            Some(s) if !s.gpus.is_empty() => {
                let n = s.gpus.len() as f64;
                let util = s.gpus.iter().map(|g| g.utilization_percent).sum::<f64>() / n;
                let used: u64 = s.gpus.iter().map(|g| g.memory_used_mib).sum();
                let total: u64 = s.gpus.iter().map(|g| g.memory_total_mib).sum();
                let temp = s
                    .gpus
                    .iter()
                    .filter_map(|g| g.temperature_c)
                    .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.max(c))));
                (
                    format!("{util:.0}"),
                    format!("{:.1}/{:.0}", used as f64 / 1024.0, total as f64 / 1024.0),
                    temp.map(|c| format!("{c:.0}C"))
                        .unwrap_or_else(|| "-".into()),
                )
            }
            _ => ("-".into(), "-".into(), "-".into()),
        };
        let idle = match (&l.latest, l.idle_minutes) {
            (None, _) => "-".to_string(),
            (Some(_), None) => "busy".to_string(),
            (Some(_), Some(m)) => format!("{m}m"),
        };
        let problems: Vec<String> = l
            .health
            .checks
            .iter()
            .filter(|c| matches!(c.status, HealthStatus::Degraded | HealthStatus::Failed))
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        t.row(vec![
            short(i.id).into(),
            i.name.clone().into(),
            i.shade_instance_type.clone().into(),
            i.configuration.num_gpus.to_string().into(),
            util.into(),
            mem.into(),
            temp.into(),
            idle.into(),
            Cell {
                text: l.health.status.as_str().to_string(),
                color: Some(health_color(l.health.status)),
            },
            if problems.is_empty() {
                "ok".to_string()
            } else {
                problems.join("; ")
            }
            .into(),
        ]);
    }
    t
}

const EMPTY: &str = "No active instances.";

fn render(lines: &[Line], color: bool) -> String {
    let t = table(lines);
    if t.is_empty() {
        format!("{EMPTY}\n")
    } else {
        t.render(color)
    }
}

/// Runs `instances top`: on a terminal the table is redrawn in place (the
/// cursor goes home and each line is rewritten, then the rest of the
/// screen cleared); elsewhere each refresh prints a new table after a
/// timestamp line, so a log reads in order.
pub async fn top(api: &Api, format: Format, args: &TopArgs) -> Result<(), CliError> {
    let tty = std::io::stdout().is_terminal();
    let color = color_stdout();
    let mut first = true;
    loop {
        let lines = gather(api).await?;
        let mut out = std::io::stdout().lock();
        if format == Format::Json {
            let rows: Vec<serde_json::Value> = lines
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "instance": l.instance,
                        "latest": l.latest,
                        "idle_minutes": l.idle_minutes,
                        "health": l.health,
                    })
                })
                .collect();
            let _ = writeln!(out, "{}", serde_json::json!({ "instances": rows }));
        } else if tty && !args.once {
            let now = Utc::now().format("%H:%M:%S");
            let mut screen = format!(
                "parasol top  {now}  every {}s  (Ctrl-C to quit)\n\n",
                args.interval
            );
            screen.push_str(&render(&lines, color));
            // Home, then every line cleared to its end, then below cleared.
            let _ = write!(out, "\x1b[H");
            if first {
                let _ = write!(out, "\x1b[2J\x1b[H");
            }
            for l in screen.lines() {
                let _ = writeln!(out, "{l}\x1b[K");
            }
            let _ = write!(out, "\x1b[J");
        } else {
            if !args.once {
                let _ = writeln!(
                    out,
                    "{}",
                    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            let _ = write!(out, "{}", render(&lines, color));
            if !args.once {
                let _ = writeln!(out);
            }
        }
        let _ = out.flush();
        drop(out);
        first = false;
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parasol_api::GpuSample;

    fn sample(s: i64, util: f64, ssh: u32) -> Sample {
        Sample {
            at: DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap(),
            ssh_sessions: ssh,
            gpus: vec![GpuSample {
                index: 0,
                utilization_percent: util,
                memory_used_mib: 1,
                memory_total_mib: 2,
                temperature_c: None,
                power_w: None,
                ecc_uncorrectable: 0,
                xid: vec![],
            }],
        }
    }

    #[test]
    fn idle_minutes_count_from_the_last_busy_sample() {
        let p = IdlePolicy {
            max_gpu_utilization_percent: 5,
            minutes: 60,
            count_ssh_sessions: true,
            action: IdleAction::Alert,
        };
        assert_eq!(idle_minutes(&p, &[]), None);
        // Busy now: not idle.
        assert_eq!(
            idle_minutes(&p, &[sample(0, 0.0, 0), sample(60, 50.0, 0)]),
            None
        );
        // Idle since the busy sample at 60 s: 4 minutes at 300 s.
        let s = [
            sample(0, 0.0, 0),
            sample(60, 50.0, 0),
            sample(120, 1.0, 0),
            sample(300, 0.0, 0),
        ];
        assert_eq!(idle_minutes(&p, &s), Some(4));
        // Never busy in view: counted from the oldest sample.
        assert_eq!(
            idle_minutes(&p, &[sample(0, 0.0, 0), sample(600, 0.0, 0)]),
            Some(10)
        );
        // An ssh session keeps it busy, unless the policy says otherwise.
        assert_eq!(
            idle_minutes(&p, &[sample(0, 0.0, 0), sample(600, 0.0, 1)]),
            None
        );
        let p = IdlePolicy {
            count_ssh_sessions: false,
            ..p
        };
        assert_eq!(
            idle_minutes(&p, &[sample(0, 0.0, 0), sample(600, 0.0, 1)]),
            Some(10)
        );
    }

    #[test]
    fn since_takes_a_time_or_a_duration() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            since_param("2026-01-02T03:04:05Z", now).unwrap(),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            since_param("90m", now).unwrap(),
            (now - chrono::Duration::minutes(90))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        for bad in ["", "5", "m", "5w", "yesterday"] {
            assert!(since_param(bad, now).is_err(), "{bad}");
        }
    }
}
