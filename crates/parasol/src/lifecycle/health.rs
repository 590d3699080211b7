//! An instance's health, from what its agent reported (crate::agent).
//!
//! Pure: the store's answers in, the checks out, so every rule is tested
//! without a server. The reconciler evaluates it on each step of an active
//! instance (recording a `instance.health_changed` event when the status
//! changes), and `GET /v1/instances/{id}/health` evaluates it on demand.
//!
//! | check       | healthy                   | degraded                | failed                       |
//! |-------------|---------------------------|-------------------------|------------------------------|
//! | `heartbeat` | a report within 2 minutes | none for 2 minutes      | none for 10 minutes          |
//! | `gpu_count` | the type's GPUs reported  |                         | fewer GPUs than the type has |
//! | `xid`       | no critical Xid           |                         | a critical Xid               |
//! | `ecc`       | no uncorrectable error    | uncorrectable errors    |                              |
//!
//! Before the agent's first report every check, and the instance, is
//! `unknown`. Xid and ECC look back to the moment the machine last
//! (re)started ([`Evidence::since_start`]): the driver reports an Xid once,
//! and a GPU that logged a fatal one stays unusable until it is reset.

use chrono::{DateTime, Duration, Utc};
use parasol_api::{HealthCheck, HealthResponse, HealthStatus};

use crate::agent::{AgentSeen, AgentWindow};
use crate::store::{InstanceRecord, Store, StoreResult};

/// Without a report for this long, an instance is degraded.
pub const HEARTBEAT_DEGRADED: Duration = Duration::minutes(2);
/// Without a report for this long, an instance is failed.
pub const HEARTBEAT_FAILED: Duration = Duration::minutes(10);

/// Xid codes after which a GPU cannot be trusted until it is reset or its
/// machine rebooted. Source: NVIDIA's Xid catalogue for Ampere and newer
/// GPUs ("Analyzing Xid Errors with the Xid Catalog",
/// docs.nvidia.com/deploy/xid-errors), the codes whose immediate action is
/// a GPU reset or a node reboot rather than restarting the application,
/// cross-checked with the Xid checks NVIDIA's health validation marks
/// critical (docs.nvidia.com/health-validation/reference/checks/xid).
/// Application faults (13, 31, 43, 45, ...) are left out: they end one
/// process, not the machine.
pub const CRITICAL_XIDS: &[(u32, &str)] = &[
    (46, "GPU stopped processing"),
    (48, "double-bit ECC error"),
    (61, "internal micro-controller breakpoint"),
    (62, "internal micro-controller halt"),
    (63, "ECC page retirement or row remapping pending a reset"),
    (64, "ECC page retirement or row remapping failure"),
    (74, "NVLink error"),
    (79, "GPU has fallen off the bus"),
    (92, "high single-bit ECC error rate"),
    (94, "contained ECC error"),
    (95, "uncontained ECC error"),
    (119, "GSP RPC timeout"),
    (120, "GSP error"),
    (140, "unrecovered ECC error"),
    (143, "GPU initialization failure"),
    (154, "GPU recovery action: reset or reboot required"),
];

/// What a critical Xid means, or `None` for one that is not critical.
pub fn critical_xid(code: u32) -> Option<&'static str> {
    CRITICAL_XIDS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, what)| *what)
}

/// What the store knows about an instance's agent.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// `None`: the agent never reported.
    pub seen: Option<AgentSeen>,
    /// The latest report alone (a window that starts at it).
    pub latest: AgentWindow,
    /// Every report since the machine last (re)started.
    pub since_start: AgentWindow,
    /// GPUs the instance's type has.
    pub expected_gpus: u32,
}

/// Reads what the store knows about `rec`'s agent.
pub async fn gather(store: &Store, rec: &InstanceRecord) -> StoreResult<Evidence> {
    let id = rec.instance.id;
    let expected_gpus = u32::try_from(rec.instance.configuration.num_gpus).unwrap_or(0);
    let Some(seen) = store.agent_seen(id).await? else {
        return Ok(Evidence {
            expected_gpus,
            ..Evidence::default()
        });
    };
    // Reports are at least two seconds apart (ingestion's rate limit), so
    // a window opening a second before the last one holds it alone.
    let latest = store
        .agent_window(id, seen.last_seen_at - Duration::seconds(1))
        .await?;
    let start = rec
        .internal
        .health_since
        .or(rec.instance.active_at)
        .unwrap_or(seen.first_seen_at);
    let since_start = store.agent_window(id, start).await?;
    Ok(Evidence {
        seen: Some(seen),
        latest,
        since_start,
        expected_gpus,
    })
}

/// The checks and their worst status, as of `now`.
pub fn evaluate(e: &Evidence, now: DateTime<Utc>) -> HealthResponse {
    let check = |name: &str, status, detail: String| HealthCheck {
        name: name.to_string(),
        status,
        detail,
        at: now,
    };
    let Some(seen) = &e.seen else {
        let why = "the agent has not reported yet".to_string();
        return HealthResponse {
            status: HealthStatus::Unknown,
            checks: ["heartbeat", "gpu_count", "xid", "ecc"]
                .into_iter()
                .map(|n| check(n, HealthStatus::Unknown, why.clone()))
                .collect(),
        };
    };
    let silent = now - seen.last_seen_at;
    let heartbeat = if silent >= HEARTBEAT_FAILED {
        HealthStatus::Failed
    } else if silent >= HEARTBEAT_DEGRADED {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    let mut checks = vec![check(
        "heartbeat",
        heartbeat,
        format!(
            "last report at {} ({}s ago)",
            seen.last_seen_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            silent.num_seconds().max(0)
        ),
    )];

    checks.push(match e.latest.min_gpu_count {
        None => check(
            "gpu_count",
            HealthStatus::Unknown,
            "no recent report to count GPUs in".into(),
        ),
        Some(seen_gpus) if seen_gpus < e.expected_gpus => check(
            "gpu_count",
            HealthStatus::Failed,
            format!(
                "the last report lists {seen_gpus} GPUs; the type has {}",
                e.expected_gpus
            ),
        ),
        Some(seen_gpus) => check(
            "gpu_count",
            HealthStatus::Healthy,
            format!("{seen_gpus} of {} GPUs reported", e.expected_gpus),
        ),
    });

    let critical: Vec<String> = e
        .since_start
        .xids
        .iter()
        .filter_map(|x| critical_xid(*x).map(|what| format!("Xid {x} ({what})")))
        .collect();
    checks.push(if critical.is_empty() {
        let other = &e.since_start.xids;
        let detail = if other.is_empty() {
            "no Xid reported".to_string()
        } else {
            let list: Vec<String> = other.iter().map(u32::to_string).collect();
            format!("no critical Xid (seen: {})", list.join(", "))
        };
        check("xid", HealthStatus::Healthy, detail)
    } else {
        check("xid", HealthStatus::Failed, critical.join(", "))
    });

    let ecc = e.since_start.max_ecc_uncorrectable;
    checks.push(if ecc > 0 {
        check(
            "ecc",
            HealthStatus::Degraded,
            format!("{ecc} volatile uncorrectable ECC errors"),
        )
    } else {
        check(
            "ecc",
            HealthStatus::Healthy,
            "no uncorrectable ECC error".into(),
        )
    });

    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(HealthStatus::Unknown);
    HealthResponse { status, checks }
}

/// When the heartbeat check will next change by itself if no report comes
/// (ms), so the reconciler can look exactly then.
pub fn next_heartbeat_change_ms(seen: Option<&AgentSeen>, now: DateTime<Utc>) -> Option<i64> {
    let last = seen?.last_seen_at;
    [HEARTBEAT_DEGRADED, HEARTBEAT_FAILED]
        .into_iter()
        .map(|d| last + d)
        .find(|t| *t > now)
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn window(gpus: u32, xids: &[u32], ecc: u64) -> AgentWindow {
        AgentWindow {
            samples: 1,
            first_at: Some(t(0)),
            last_at: Some(t(0)),
            max_gpu_utilization_percent: Some(50.0),
            max_ssh_sessions: 0,
            min_gpu_count: Some(gpus),
            xids: xids.to_vec(),
            max_ecc_uncorrectable: ecc,
        }
    }

    fn evidence(last: i64, gpus: u32, xids: &[u32], ecc: u64) -> Evidence {
        Evidence {
            seen: Some(AgentSeen {
                first_seen_at: t(0),
                last_seen_at: t(last),
                version: "1".into(),
            }),
            latest: window(gpus, &[], 0),
            since_start: window(gpus, xids, ecc),
            expected_gpus: 8,
        }
    }

    fn status_of(r: &HealthResponse, name: &str) -> HealthStatus {
        r.checks.iter().find(|c| c.name == name).unwrap().status
    }

    #[test]
    fn unknown_until_the_first_report() {
        let r = evaluate(
            &Evidence {
                expected_gpus: 8,
                ..Evidence::default()
            },
            t(0),
        );
        assert_eq!(r.status, HealthStatus::Unknown);
        assert_eq!(r.checks.len(), 4);
        assert!(r.checks.iter().all(|c| c.status == HealthStatus::Unknown));
    }

    #[test]
    fn the_heartbeat_degrades_after_two_minutes_and_fails_after_ten() {
        let e = evidence(0, 8, &[], 0);
        assert_eq!(evaluate(&e, t(119)).status, HealthStatus::Healthy);
        assert_eq!(evaluate(&e, t(120)).status, HealthStatus::Degraded);
        assert_eq!(evaluate(&e, t(599)).status, HealthStatus::Degraded);
        let r = evaluate(&e, t(600));
        assert_eq!(r.status, HealthStatus::Failed);
        assert_eq!(status_of(&r, "heartbeat"), HealthStatus::Failed);
        assert_eq!(
            next_heartbeat_change_ms(e.seen.as_ref(), t(10)),
            Some(t(120).timestamp_millis())
        );
        assert_eq!(
            next_heartbeat_change_ms(e.seen.as_ref(), t(120)),
            Some(t(600).timestamp_millis())
        );
        assert_eq!(next_heartbeat_change_ms(e.seen.as_ref(), t(600)), None);
    }

    #[test]
    fn a_missing_gpu_fails() {
        let r = evaluate(&evidence(0, 7, &[], 0), t(1));
        assert_eq!(r.status, HealthStatus::Failed);
        assert_eq!(status_of(&r, "gpu_count"), HealthStatus::Failed);
        assert!(r.checks[1].detail.contains("7 GPUs"), "{:?}", r.checks[1]);
    }

    #[test]
    fn a_critical_xid_fails_and_another_does_not() {
        let r = evaluate(&evidence(0, 8, &[13, 79], 0), t(1));
        assert_eq!(r.status, HealthStatus::Failed);
        let xid = r.checks.iter().find(|c| c.name == "xid").unwrap();
        assert!(xid.detail.contains("Xid 79"), "{xid:?}");
        assert!(!xid.detail.contains("13"), "{xid:?}");
        let r = evaluate(&evidence(0, 8, &[13, 31], 0), t(1));
        assert_eq!(r.status, HealthStatus::Healthy);
        for code in [48, 63, 64, 74, 79, 92, 94, 95] {
            assert!(critical_xid(code).is_some(), "{code}");
        }
    }

    #[test]
    fn uncorrectable_ecc_degrades() {
        let r = evaluate(&evidence(0, 8, &[], 2), t(1));
        assert_eq!(r.status, HealthStatus::Degraded);
        assert_eq!(status_of(&r, "ecc"), HealthStatus::Degraded);
    }

    #[test]
    fn the_worst_check_wins() {
        let r = evaluate(&evidence(0, 8, &[48], 3), t(200));
        assert_eq!(r.status, HealthStatus::Failed);
        assert_eq!(status_of(&r, "heartbeat"), HealthStatus::Degraded);
        assert_eq!(status_of(&r, "ecc"), HealthStatus::Degraded);
    }
}
