//! Idle policies: when an instance counts as idle, when it will, and which
//! policies a create may ask for under its account's.
//!
//! Idle means every GPU at or below the threshold in every sample of the
//! last `minutes`, and (with `count_ssh_sessions`) no interactive SSH
//! session in that time. Everything is computed from the stored samples,
//! never from state held in memory, so a restart (or a SIGKILL) does not
//! reset the clock: the reconciler asks the store again and finds the same
//! answer. An instance whose agent never reported is never idle, and one
//! whose agent has reported for less than `minutes` is not idle yet: there
//! is no evidence for the start of the window.
//!
//! Pure: the store's answers in, a decision out.

use chrono::{DateTime, Duration, Utc};
use parasol_api::{IdleAction, IdlePolicy};

use crate::agent::{AgentSeen, AgentWindow, Sample};

/// Longest `minutes` accepted: the 1-minute history's default retention
/// (7 days), beyond which the store could not answer for the window.
pub const MAX_MINUTES: i64 = 7 * 24 * 60;

/// Checks a policy's numbers; the field at fault (under `field`) and why.
pub fn check(field: &str, p: &IdlePolicy) -> Result<(), (String, String)> {
    if !(1..=MAX_MINUTES).contains(&p.minutes) {
        return Err((
            format!("{field}.minutes"),
            format!(
                "{field}.minutes must be between 1 and {MAX_MINUTES}, got {}",
                p.minutes
            ),
        ));
    }
    if !(0..=100).contains(&p.max_gpu_utilization_percent) {
        return Err((
            format!("{field}.max_gpu_utilization_percent"),
            format!(
                "{field}.max_gpu_utilization_percent must be between 0 and 100, got {}",
                p.max_gpu_utilization_percent
            ),
        ));
    }
    Ok(())
}

/// How `asked` loosens `account` (acts later or less often), naming the
/// field, or `None` when it is as tight or tighter in every respect.
pub fn loosens(account: &IdlePolicy, asked: &IdlePolicy) -> Option<String> {
    if asked.minutes > account.minutes {
        return Some(format!(
            "minutes {} is longer than the account's {}",
            asked.minutes, account.minutes
        ));
    }
    if asked.max_gpu_utilization_percent < account.max_gpu_utilization_percent {
        return Some(format!(
            "max_gpu_utilization_percent {} is below the account's {}",
            asked.max_gpu_utilization_percent, account.max_gpu_utilization_percent
        ));
    }
    if asked.count_ssh_sessions && !account.count_ssh_sessions {
        return Some(
            "count_ssh_sessions true lets SSH sessions keep the instance busy, which the \
             account's policy does not"
                .into(),
        );
    }
    if account.action == IdleAction::Delete && asked.action == IdleAction::Alert {
        return Some("action alert is weaker than the account's delete".into());
    }
    None
}

/// Whether one sample keeps the instance busy under `p`.
pub fn busy(p: &IdlePolicy, s: &Sample) -> bool {
    let threshold = p.max_gpu_utilization_percent as f64;
    s.gpus.iter().any(|g| g.utilization_percent > threshold)
        || (p.count_ssh_sessions && s.ssh_sessions > 0)
}

fn window_of(p: &IdlePolicy) -> Duration {
    Duration::minutes(p.minutes)
}

/// Where the window of `p` starts as of `now`.
pub fn window_start(p: &IdlePolicy, now: DateTime<Utc>) -> DateTime<Utc> {
    now - window_of(p)
}

/// Whether the instance is idle under `p` as of `now`, given what its
/// agent reported since [`window_start`].
pub fn is_idle(
    p: &IdlePolicy,
    seen: Option<&AgentSeen>,
    w: &AgentWindow,
    now: DateTime<Utc>,
) -> bool {
    let Some(seen) = seen else {
        return false;
    };
    if seen.first_seen_at > window_start(p, now) || w.samples == 0 {
        return false;
    }
    let threshold = p.max_gpu_utilization_percent as f64;
    if w.max_gpu_utilization_percent.is_some_and(|m| m > threshold) {
        return false;
    }
    !(p.count_ssh_sessions && w.max_ssh_sessions > 0)
}

/// When the instance becomes idle under `p` if every report from now on
/// is idle: `minutes` after its last busy sample (`last_busy`), or after
/// its agent's first report. `None` when the agent never reported.
pub fn idle_at(
    p: &IdlePolicy,
    seen: Option<&AgentSeen>,
    last_busy: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let seen = seen?;
    // The window includes its start, so it must start after the busy
    // sample to leave it out.
    let from = match last_busy {
        Some(b) => (b + Duration::milliseconds(1)).max(seen.first_seen_at),
        None => seen.first_seen_at,
    };
    Some(from + window_of(p))
}

/// The time of the last sample that keeps the instance busy under `p`.
pub fn last_busy(p: &IdlePolicy, samples: &[Sample]) -> Option<DateTime<Utc>> {
    samples.iter().filter(|s| busy(p, s)).map(|s| s.at).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::GpuSample;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn policy(minutes: i64) -> IdlePolicy {
        IdlePolicy {
            max_gpu_utilization_percent: 5,
            minutes,
            count_ssh_sessions: true,
            action: IdleAction::Delete,
        }
    }

    fn seen(first: i64) -> AgentSeen {
        AgentSeen {
            first_seen_at: t(first),
            last_seen_at: t(first),
            version: "1".into(),
        }
    }

    fn window(max_util: Option<f64>, ssh: u32) -> AgentWindow {
        AgentWindow {
            samples: 4,
            max_gpu_utilization_percent: max_util,
            max_ssh_sessions: ssh,
            min_gpu_count: Some(1),
            ..AgentWindow::default()
        }
    }

    fn sample(at: i64, util: f64, ssh: u32) -> Sample {
        Sample {
            at: t(at),
            ssh_sessions: ssh,
            gpus: vec![GpuSample {
                index: 0,
                utilization_percent: util,
                memory_used_mib: 0,
                memory_total_mib: 81559,
                temperature_c: None,
                power_w: None,
                ecc_uncorrectable: 0,
                xid: vec![],
            }],
        }
    }

    #[test]
    fn idle_needs_every_gpu_at_or_below_the_threshold() {
        let p = policy(10);
        let s = seen(0);
        assert!(is_idle(&p, Some(&s), &window(Some(5.0), 0), t(600)));
        assert!(!is_idle(&p, Some(&s), &window(Some(5.5), 0), t(600)));
        // No GPU at all: nothing busy.
        assert!(is_idle(&p, Some(&s), &window(None, 0), t(600)));
    }

    #[test]
    fn an_ssh_session_keeps_it_busy_only_when_counted() {
        let mut p = policy(10);
        let s = seen(0);
        assert!(!is_idle(&p, Some(&s), &window(Some(0.0), 1), t(600)));
        p.count_ssh_sessions = false;
        assert!(is_idle(&p, Some(&s), &window(Some(0.0), 1), t(600)));
    }

    #[test]
    fn never_idle_without_reports_or_before_a_whole_window_of_them() {
        let p = policy(10);
        assert!(!is_idle(&p, None, &window(Some(0.0), 0), t(600)));
        // Reporting for 9 minutes 59 s of a 10-minute window.
        assert!(!is_idle(&p, Some(&seen(1)), &window(Some(0.0), 0), t(600)));
        // Silent through the whole window.
        let empty = AgentWindow::default();
        assert!(!is_idle(&p, Some(&seen(0)), &empty, t(600)));
    }

    #[test]
    fn the_idle_moment_follows_the_last_busy_sample() {
        let p = policy(10);
        let s = seen(0);
        let samples = [sample(0, 90.0, 0), sample(15, 1.0, 1), sample(30, 2.0, 0)];
        let b = last_busy(&p, &samples);
        assert_eq!(b, Some(t(15)));
        assert_eq!(
            idle_at(&p, Some(&s), b),
            Some(t(615) + Duration::milliseconds(1))
        );
        // Never busy: a window after the first report.
        assert_eq!(idle_at(&p, Some(&seen(20)), None), Some(t(620)));
        assert_eq!(idle_at(&p, None, None), None);
        let mut quiet = p.clone();
        quiet.count_ssh_sessions = false;
        assert_eq!(last_busy(&quiet, &samples), Some(t(0)));
    }

    #[test]
    fn a_request_may_tighten_the_account_policy_but_not_loosen_it() {
        let account = policy(30);
        let mut asked = account.clone();
        assert_eq!(loosens(&account, &asked), None);
        asked.minutes = 10;
        asked.max_gpu_utilization_percent = 20;
        asked.count_ssh_sessions = false;
        assert_eq!(loosens(&account, &asked), None);
        asked.minutes = 31;
        assert!(loosens(&account, &asked).unwrap().contains("minutes"));
        asked.minutes = 30;
        asked.max_gpu_utilization_percent = 4;
        assert!(loosens(&account, &asked)
            .unwrap()
            .contains("max_gpu_utilization_percent"));
        asked.max_gpu_utilization_percent = 5;
        asked.action = IdleAction::Alert;
        assert!(loosens(&account, &asked).unwrap().contains("action"));
        let mut alerting = account.clone();
        alerting.action = IdleAction::Alert;
        alerting.count_ssh_sessions = false;
        let mut asked = alerting.clone();
        asked.action = IdleAction::Delete;
        assert_eq!(loosens(&alerting, &asked), None);
        asked.count_ssh_sessions = true;
        assert!(loosens(&alerting, &asked)
            .unwrap()
            .contains("count_ssh_sessions"));
    }

    #[test]
    fn minutes_and_threshold_are_range_checked() {
        let mut p = policy(0);
        assert_eq!(
            check("idle_policy", &p).unwrap_err().0,
            "idle_policy.minutes"
        );
        p.minutes = 1;
        assert!(check("idle_policy", &p).is_ok());
        p.max_gpu_utilization_percent = 101;
        assert_eq!(
            check("idle_policy", &p).unwrap_err().0,
            "idle_policy.max_gpu_utilization_percent"
        );
    }
}
