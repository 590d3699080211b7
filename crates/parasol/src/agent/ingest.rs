//! Ingestion: a report as an agent posts it, checked field by field (a bad
//! one is refused naming the field), checked against its instance (its
//! token, its type's GPU count, replays, the rate), then stored through
//! the group commit. The HTTP route and the sim's simulated agent both
//! come through here.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{AgentKeys, AgentSettings, GpuSample};
use crate::store::{ReportOutcome, Store, StoreError};

/// Largest report body accepted, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Most GPUs one report may list, whatever the type.
pub const MAX_GPUS: usize = 64;

/// Most Xid codes one GPU may list in one report.
pub const MAX_XIDS: usize = 64;

/// Longest `agent_version`.
const MAX_VERSION: usize = 32;

/// Largest memory a GPU may report, in MiB (16 TiB: well above any board).
const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024;

/// Largest uptime accepted: about 30 years.
const MAX_UPTIME_S: u64 = 1_000_000_000;

/// Most interactive sessions a machine may report.
const MAX_SSH_SESSIONS: u64 = 100_000;

/// Largest ECC count accepted.
const MAX_ECC: u64 = 1_000_000_000_000;

/// Largest Xid code accepted.
const MAX_XID: u64 = 65_535;

/// Highest `seq`: JSON numbers stay exact up to 2^53.
const MAX_SEQ: i64 = 1 << 53;

/// Type GPU counts remembered, beyond which the memo starts over.
const GPU_MEMO: usize = 200_000;

/// One report, checked field by field; serialises as the wire format.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub instance_id: Uuid,
    /// Strictly increasing per instance.
    pub seq: i64,
    pub agent_version: String,
    pub uptime_s: u64,
    pub ssh_sessions: u32,
    pub gpus: Vec<GpuSample>,
}

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// 400: `field` is missing, of the wrong type or out of range.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// 401: no token, a wrong one, or another instance's.
    #[error("{0}")]
    Unauthorized(String),
    /// 401: the instance's token, but the instance is deleted (or was
    /// never known to this deployment).
    #[error("the agent token is revoked: the instance is deleted")]
    Revoked,
    /// 409: `seq` is not above the last accepted one.
    #[error(
        "seq {seq} is not above the last accepted seq {last_seq}: a replayed or reordered report"
    )]
    Replay { seq: i64, last_seq: i64 },
    /// 413.
    #[error("a report is at most {MAX_BODY} bytes")]
    TooLarge,
    /// 429: the instance reported less than the minimum gap ago.
    #[error("too many reports for this instance; retry in {retry_after_s} s")]
    TooSoon { retry_after_s: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> IngestError {
    IngestError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A whole number in `0..=max` at `field`.
fn whole(obj: &Map<String, Value>, field: &str, path: &str, max: u64) -> Result<u64, IngestError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(invalid(path, "is required")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= max => Ok(v),
            Some(_) => Err(invalid(path, format!("must be at most {max}"))),
            None => Err(invalid(
                path,
                format!("must be a whole number from 0 to {max}"),
            )),
        },
        Some(_) => Err(invalid(path, "must be a number")),
    }
}

/// A number in `min..=max`, or `None` for `null` when `nullable`.
fn number(
    obj: &Map<String, Value>,
    field: &str,
    path: &str,
    (min, max): (f64, f64),
    nullable: bool,
) -> Result<Option<f64>, IngestError> {
    match obj.get(field) {
        Some(Value::Null) if nullable => Ok(None),
        None if nullable => Ok(None),
        None | Some(Value::Null) => Err(invalid(path, "is required")),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() && (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(invalid(path, format!("must be from {min} to {max}"))),
        },
        Some(_) => Err(invalid(
            path,
            if nullable {
                "must be a number or null"
            } else {
                "must be a number"
            },
        )),
    }
}

impl Report {
    /// Reads the body's `instance_id` only: the token is checked against
    /// it before anything else of the body is looked at.
    pub fn instance_of(body: &Value) -> Result<Uuid, IngestError> {
        match body.get("instance_id") {
            Some(Value::String(s)) => {
                Uuid::parse_str(s).map_err(|_| invalid("instance_id", "must be a UUID"))
            }
            None | Some(Value::Null) => Err(invalid("instance_id", "is required")),
            Some(_) => Err(invalid("instance_id", "must be a UUID string")),
        }
    }

    /// Checks every field of a parsed body.
    pub fn from_json(body: &Value) -> Result<Report, IngestError> {
        let Some(obj) = body.as_object() else {
            return Err(invalid("body", "must be a JSON object"));
        };
        let instance_id = Report::instance_of(body)?;
        let seq = match obj.get("seq") {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if (1..=MAX_SEQ).contains(&v) => v,
                _ => {
                    return Err(invalid(
                        "seq",
                        format!("must be a whole number from 1 to {MAX_SEQ}"),
                    ))
                }
            },
            None | Some(Value::Null) => return Err(invalid("seq", "is required")),
            Some(_) => return Err(invalid("seq", "must be a number")),
        };
        let agent_version = match obj.get("agent_version") {
            Some(Value::String(s))
                if !s.is_empty()
                    && s.len() <= MAX_VERSION
                    && s.chars().all(|c| c.is_ascii_graphic()) =>
            {
                s.clone()
            }
            None | Some(Value::Null) => return Err(invalid("agent_version", "is required")),
            Some(_) => {
                return Err(invalid(
                    "agent_version",
                    format!("must be 1 to {MAX_VERSION} printable ASCII characters"),
                ))
            }
        };
        let uptime_s = whole(obj, "uptime_s", "uptime_s", MAX_UPTIME_S)?;
        let ssh_sessions = whole(obj, "ssh_sessions", "ssh_sessions", MAX_SSH_SESSIONS)? as u32;
        let list = match obj.get("gpus") {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => return Err(invalid("gpus", "is required (may be empty)")),
            Some(_) => return Err(invalid("gpus", "must be a list")),
        };
        if list.len() > MAX_GPUS {
            return Err(invalid("gpus", format!("lists at most {MAX_GPUS} GPUs")));
        }
        let mut seen = BTreeSet::new();
        let mut gpus = Vec::with_capacity(list.len());
        for (i, g) in list.iter().enumerate() {
            let at = |f: &str| format!("gpus[{i}].{f}");
            let Some(g) = g.as_object() else {
                return Err(invalid(format!("gpus[{i}]"), "must be an object"));
            };
            let index = whole(g, "index", &at("index"), MAX_GPUS as u64 - 1)? as u32;
            if !seen.insert(index) {
                return Err(invalid(at("index"), format!("GPU {index} is listed twice")));
            }
            let utilization_percent = number(
                g,
                "utilization_percent",
                &at("utilization_percent"),
                (0.0, 100.0),
                false,
            )?
            .unwrap_or_default();
            let memory_total_mib = whole(
                g,
                "memory_total_mib",
                &at("memory_total_mib"),
                MAX_MEMORY_MIB,
            )?;
            let memory_used_mib =
                whole(g, "memory_used_mib", &at("memory_used_mib"), MAX_MEMORY_MIB)?;
            if memory_used_mib > memory_total_mib {
                return Err(invalid(
                    at("memory_used_mib"),
                    format!("{memory_used_mib} is more than memory_total_mib ({memory_total_mib})"),
                ));
            }
            let temperature_c = number(
                g,
                "temperature_c",
                &at("temperature_c"),
                (-50.0, 150.0),
                true,
            )?;
            let power_w = number(g, "power_w", &at("power_w"), (0.0, 5000.0), true)?;
            let ecc_uncorrectable =
                whole(g, "ecc_uncorrectable", &at("ecc_uncorrectable"), MAX_ECC)?;
            let xid = match g.get("xid") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(xs)) if xs.len() <= MAX_XIDS => {
                    let mut codes = BTreeSet::new();
                    for (j, x) in xs.iter().enumerate() {
                        match x.as_u64() {
                            Some(v) if v <= MAX_XID => codes.insert(v as u32),
                            _ => {
                                return Err(invalid(
                                    format!("gpus[{i}].xid[{j}]"),
                                    format!("must be a whole number from 0 to {MAX_XID}"),
                                ))
                            }
                        };
                    }
                    codes.into_iter().collect()
                }
                Some(Value::Array(_)) => {
                    return Err(invalid(
                        at("xid"),
                        format!("lists at most {MAX_XIDS} codes"),
                    ))
                }
                Some(_) => return Err(invalid(at("xid"), "must be a list of Xid codes")),
            };
            gpus.push(GpuSample {
                index,
                utilization_percent,
                memory_used_mib,
                memory_total_mib,
                temperature_c,
                power_w,
                ecc_uncorrectable,
                xid,
            });
        }
        gpus.sort_by_key(|g| g.index);
        Ok(Report {
            instance_id,
            seq,
            agent_version,
            uptime_s,
            ssh_sessions,
            gpus,
        })
    }
}

/// The ingestion: checks and stores reports.
pub struct Ingest {
    store: Store,
    keys: AgentKeys,
    settings: AgentSettings,
    /// GPUs of each instance's type, which never changes for an instance.
    gpus: Mutex<HashMap<Uuid, u32>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Ingestion into `store`, checking tokens with `keys`.
    pub fn new(store: Store, keys: AgentKeys, settings: AgentSettings) -> Ingest {
        Ingest {
            store,
            keys,
            settings,
            gpus: Mutex::new(HashMap::new()),
        }
    }

    /// The deployment's agent settings.
    pub fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    /// The deployment's keys (the lifecycle gives launches their tokens).
    pub fn keys(&self) -> &AgentKeys {
        &self.keys
    }

    /// A report as posted: `token` from its `Authorization` header, `body`
    /// as received. Answers when it was received.
    pub async fn post(
        &self,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<DateTime<Utc>, IngestError> {
        if body.len() > MAX_BODY {
            return Err(IngestError::TooLarge);
        }
        let Some(token) = token else {
            return Err(IngestError::Unauthorized(
                "an agent token is required (Authorization: Bearer pa_...)".into(),
            ));
        };
        let json: Value = serde_json::from_slice(body)
            .map_err(|e| invalid("body", format!("is not valid JSON: {e}")))?;
        let instance = Report::instance_of(&json)?;
        if !self.keys.verify(instance, token) {
            return Err(IngestError::Unauthorized(
                "the agent token is not this instance's".into(),
            ));
        }
        let report = Report::from_json(&json)?;
        self.accept(report).await
    }

    /// A report from a sender known to be its instance's agent (the sim's
    /// simulated agents), checked field by field as a posted one is.
    pub async fn post_trusted(&self, body: &Value) -> Result<DateTime<Utc>, IngestError> {
        self.accept(Report::from_json(body)?).await
    }

    /// Stores a checked report whose sender is known to be its instance's
    /// agent.
    pub async fn accept(&self, report: Report) -> Result<DateTime<Utc>, IngestError> {
        let Some(allowed) = self.type_gpus(report.instance_id).await? else {
            return Err(IngestError::Revoked);
        };
        if report.gpus.len() > allowed as usize {
            return Err(invalid(
                "gpus",
                format!(
                    "lists {} GPUs but the instance's type has {allowed}",
                    report.gpus.len()
                ),
            ));
        }
        match self
            .store
            .insert_agent_report(&report, self.settings.min_report_gap_ms)
            .await?
        {
            ReportOutcome::Accepted { at } => Ok(at),
            ReportOutcome::Revoked => Err(IngestError::Revoked),
            ReportOutcome::Replay { last_seq } => Err(IngestError::Replay {
                seq: report.seq,
                last_seq,
            }),
            ReportOutcome::TooSoon { retry_after_ms } => Err(IngestError::TooSoon {
                retry_after_s: ((retry_after_ms.max(1) + 999) / 1000) as u64,
            }),
        }
    }

    /// GPUs of the instance's type; `None` for an unknown instance.
    async fn type_gpus(&self, instance: Uuid) -> Result<Option<u32>, StoreError> {
        if let Some(n) = self.gpus.lock().expect("poisoned").get(&instance) {
            return Ok(Some(*n));
        }
        let Some(rec) = self.store.get_instance_any(instance).await? else {
            return Ok(None);
        };
        let n = rec.instance.configuration.num_gpus.max(0) as u32;
        let mut memo = self.gpus.lock().expect("poisoned");
        if memo.len() >= GPU_MEMO {
            memo.clear();
        }
        memo.insert(instance, n);
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"instance_id": Uuid::nil().to_string(), "seq": 1733600000, "agent_version": "1",
               "uptime_s": 1234, "ssh_sessions": 0,
               "gpus": [{"index": 0, "utilization_percent": 12, "memory_used_mib": 1024,
                         "memory_total_mib": 81559, "temperature_c": 38, "power_w": 119.5,
                         "ecc_uncorrectable": 0, "xid": [79]}]})
    }

    fn field_of(v: Value) -> String {
        match Report::from_json(&v) {
            Err(IngestError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_contract_example_is_accepted() {
        let r = Report::from_json(&good()).unwrap();
        assert_eq!(r.seq, 1733600000);
        assert_eq!(r.gpus[0].xid, vec![79]);
        assert_eq!(r.gpus[0].power_w, Some(119.5));
        let mut v = good();
        v["gpus"][0]["temperature_c"] = Value::Null;
        v["gpus"][0]["power_w"] = Value::Null;
        v["gpus"][0]["xid"] = json!([]);
        let r = Report::from_json(&v).unwrap();
        assert_eq!((r.gpus[0].temperature_c, r.gpus[0].power_w), (None, None));
        v["gpus"] = json!([]);
        assert!(Report::from_json(&v).unwrap().gpus.is_empty());
    }

    type Change = Box<dyn Fn(&mut Value)>;

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|v| v["instance_id"] = json!("nope")),
                "instance_id",
            ),
            (Box::new(|v| v["seq"] = json!(0)), "seq"),
            (Box::new(|v| v["seq"] = json!(1.5)), "seq"),
            (
                Box::new(|v| v["agent_version"] = json!("")),
                "agent_version",
            ),
            (Box::new(|v| v["uptime_s"] = json!(-1)), "uptime_s"),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("ssh_sessions");
                }),
                "ssh_sessions",
            ),
            (Box::new(|v| v["gpus"] = json!({})), "gpus"),
            (
                Box::new(|v| v["gpus"][0]["utilization_percent"] = json!(101)),
                "gpus[0].utilization_percent",
            ),
            (
                Box::new(|v| v["gpus"][0]["utilization_percent"] = json!("12")),
                "gpus[0].utilization_percent",
            ),
            (
                Box::new(|v| v["gpus"][0]["memory_used_mib"] = json!(90000)),
                "gpus[0].memory_used_mib",
            ),
            (
                Box::new(|v| v["gpus"][0]["temperature_c"] = json!(500)),
                "gpus[0].temperature_c",
            ),
            (
                Box::new(|v| v["gpus"][0]["power_w"] = json!(-3)),
                "gpus[0].power_w",
            ),
            (
                Box::new(|v| v["gpus"][0]["xid"] = json!([79, -1])),
                "gpus[0].xid[1]",
            ),
            (
                Box::new(|v| v["gpus"][0]["index"] = json!(64)),
                "gpus[0].index",
            ),
            (
                Box::new(|v| {
                    let g = v["gpus"][0].clone();
                    v["gpus"].as_array_mut().unwrap().push(g);
                }),
                "gpus[1].index",
            ),
            (Box::new(|v| v["gpus"] = json!(vec![json!(1); 65])), "gpus"),
        ];
        for (change, field) in cases {
            let mut v = good();
            change(&mut v);
            assert_eq!(field_of(v), field);
        }
        assert_eq!(field_of(json!([1])), "body");
    }
}
