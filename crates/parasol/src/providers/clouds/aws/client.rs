//! The EC2 Query API client: form-encoded `POST`s signed with SigV4, XML
//! answers, EC2's error codes, and retries of throttling.
//!
//! Lean client versus `aws-sdk-ec2`, measured on the project's 2-core
//! machine (clean `nice -n 19 cargo build --release` of a scratch binary
//! outside the repo, own target dir, while four other engineers' builds
//! shared the machine, 2026-12-01): `aws-sigv4` (sign-http, http1) +
//! `aws-credential-types` + `roxmltree` + reqwest (rustls) + tokio, 121
//! crates: 269 s; `aws-sdk-ec2` + `aws-config` (rustls, rt-tokio), 170
//! crates: 3062 s, of which `aws-sdk-ec2` alone took over 25 minutes.
//! Parasol calls about twenty EC2 actions with a handful of parameters
//! each, so the lean client it is.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use rand::Rng;

use super::config::{AwsConfig, AwsCredentials};
use super::xml::Xml;
use crate::providers::clouds::short;
use crate::providers::ProviderError;

/// The EC2 API version every request names.
pub const API_VERSION: &str = "2016-11-15";
/// Attempts per call while EC2 throttles or fails with a 5xx.
pub const ATTEMPTS: u32 = 5;
/// First backoff after a throttle; doubles per attempt, plus up to as much
/// again of jitter.
const BACKOFF: Duration = Duration::from_millis(200);

/// An error EC2 answered: its code (`InsufficientInstanceCapacity`) and
/// message, with the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Ec2Error {
    /// Reads `<Response><Errors><Error><Code>..` (or a bare `<Error>`).
    pub fn parse(status: u16, body: &str) -> Ec2Error {
        let x = Xml::parse(body).ok();
        let err = x.as_ref().and_then(|x| {
            x.at(&["Errors", "Error"])
                .or_else(|| (x.name == "Error").then_some(x))
                .or_else(|| x.child("Error"))
        });
        match err {
            Some(e) => Ec2Error {
                status,
                code: e.text_at(&["Code"]).unwrap_or("Unknown").to_string(),
                message: e.text_at(&["Message"]).unwrap_or("").to_string(),
            },
            None => Ec2Error {
                status,
                code: format!("HTTP{status}"),
                message: short(body),
            },
        }
    }

    /// Whether waiting and sending again may succeed. EC2 answers
    /// capacity errors with a 5xx too; those move to another zone instead.
    pub fn retryable(&self) -> bool {
        if self.is_zone_capacity() {
            return false;
        }
        matches!(
            self.code.as_str(),
            "RequestLimitExceeded"
                | "Throttling"
                | "ThrottlingException"
                | "RequestThrottled"
                | "InternalError"
                | "ServiceUnavailable"
                | "Unavailable"
        ) || self.status >= 500
    }

    /// The credentials are wrong or lack a permission.
    pub fn is_auth(&self) -> bool {
        matches!(
            self.code.as_str(),
            "AuthFailure"
                | "UnauthorizedOperation"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "OptInRequired"
                | "Blocked"
        ) || self.status == 401
    }

    /// The zone cannot take this type now: another zone may.
    pub fn is_zone_capacity(&self) -> bool {
        matches!(
            self.code.as_str(),
            "InsufficientInstanceCapacity" | "Unsupported" | "InsufficientCapacity"
        )
    }

    /// An account quota stops the launch.
    pub fn quota(&self) -> Option<&'static str> {
        match self.code.as_str() {
            "VcpuLimitExceeded" => {
                Some("the account's On-Demand vCPU quota for this instance family")
            }
            "MaxSpotInstanceCountExceeded" => Some("the account's Spot Instance quota"),
            "InstanceLimitExceeded" => Some("the account's instance limit for this type"),
            _ => None,
        }
    }

    /// The error as Parasol's reconciler sees it.
    pub fn into_provider(self, action: &str) -> ProviderError {
        let detail = format!("{} ({}): {}", self.code, action, self.message);
        if self.is_auth() {
            ProviderError::Permanent(format!(
                "aws rejected the credentials or lacks a permission: {detail}"
            ))
        } else if let Some(q) = self.quota() {
            ProviderError::Permanent(format!("aws: {q} is exhausted: {detail}"))
        } else if self.is_zone_capacity() {
            ProviderError::Capacity(format!("aws: {detail}"))
        } else if self.retryable() {
            ProviderError::Transient(format!("aws: {detail}"))
        } else {
            ProviderError::Permanent(format!("aws refused {detail}"))
        }
    }
}

/// A failed call: EC2's error, or no answer at all.
#[derive(Debug, Clone)]
pub enum CallError {
    Ec2(Ec2Error),
    Unreachable(String),
}

impl CallError {
    /// EC2's error code, when EC2 answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Ec2(e) => Some(&e.code),
            CallError::Unreachable(_) => None,
        }
    }

    /// The error as Parasol's reconciler sees it.
    pub fn into_provider(self, action: &str) -> ProviderError {
        match self {
            CallError::Ec2(e) => e.into_provider(action),
            CallError::Unreachable(m) => {
                ProviderError::Transient(format!("aws unreachable on {action}: {m}"))
            }
        }
    }
}

/// Query parameters of one call, in order (`Filter.1.Name`, ...).
pub type Params = Vec<(String, String)>;

/// Builds `Params` from string pairs.
pub fn params<const N: usize>(pairs: [(&str, &str); N]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A signed EC2 client for every region.
#[derive(Clone)]
pub struct Ec2 {
    http: reqwest::Client,
    cfg: AwsConfig,
}

impl Ec2 {
    /// A client; it calls nothing until asked.
    pub fn new(cfg: AwsConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("parasol/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Self { http, cfg }
    }

    /// The configuration the client was made with.
    pub fn config(&self) -> &AwsConfig {
        &self.cfg
    }

    /// Calls `action` in `region`, retrying throttling and 5xx with
    /// exponential backoff and jitter.
    pub async fn call(&self, region: &str, action: &str, p: &Params) -> Result<Xml, CallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.once(region, action, p).await {
                Err(CallError::Ec2(e)) if e.retryable() && attempt < ATTEMPTS => {
                    let base = BACKOFF * 2u32.pow(attempt - 1);
                    let jitter = rand::rng().random_range(0..=base.as_millis() as u64);
                    let wait = base + Duration::from_millis(jitter);
                    tracing::debug!(region, action, code = %e.code, wait_ms = wait.as_millis() as u64, "aws throttled or failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn once(&self, region: &str, action: &str, p: &Params) -> Result<Xml, CallError> {
        let url = self.cfg.endpoint_for(region);
        let body = form(action, p);
        let headers = signed_headers(
            &self.cfg.credentials,
            region,
            &url,
            &body,
            SystemTime::now(),
        )
        .map_err(CallError::Unreachable)?;
        let mut req = self
            .http
            .post(format!("{url}/"))
            .header("content-type", FORM)
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let res = req.send().await.map_err(|e| {
            CallError::Unreachable(if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "connection failed".to_string()
            } else {
                "request failed".to_string()
            })
        })?;
        let status = res.status().as_u16();
        let text = res
            .text()
            .await
            .map_err(|_| CallError::Unreachable("answer unreadable".into()))?;
        if !(200..300).contains(&status) {
            return Err(CallError::Ec2(Ec2Error::parse(status, &text)));
        }
        Xml::parse(&text).map_err(|e| {
            CallError::Ec2(Ec2Error {
                status,
                code: "MalformedAnswer".into(),
                message: format!("{action} answered XML that does not parse: {e}"),
            })
        })
    }
}

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// The request body: `Action`, `Version`, then the parameters.
pub fn form(action: &str, p: &Params) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("Action", action)
        .append_pair("Version", API_VERSION);
    for (k, v) in p {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The headers SigV4 adds to a `POST` of `body` to `url` (Authorization,
/// X-Amz-Date, X-Amz-Security-Token when there is a session token).
pub fn signed_headers(
    c: &AwsCredentials,
    region: &str,
    url: &str,
    body: &str,
    at: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let identity = aws_credential_types::Credentials::new(
        c.access_key_id.clone(),
        c.secret_access_key.expose().to_string(),
        c.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "parasol",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ec2")
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let uri = format!("{url}/");
    let headers = [("host", host.as_str()), ("content-type", FORM)];
    let req = SignableRequest::new(
        "POST",
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| format!("signing: {e}"))?;
    let out = sign(req, &params).map_err(|e| format!("signing: {e}"))?;
    Ok(out
        .output()
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::clouds::Secret;

    #[test]
    fn errors_are_read_and_sorted_by_what_the_reconciler_does() {
        let body = "<?xml version=\"1.0\"?><Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>no p5 here</Message></Error></Errors><RequestID>r</RequestID></Response>";
        let e = Ec2Error::parse(500, body);
        assert_eq!(e.code, "InsufficientInstanceCapacity");
        assert!(e.is_zone_capacity());
        assert!(
            !e.retryable(),
            "a zone without capacity is not retried in place"
        );
        let auth = Ec2Error::parse(401, "<Response><Errors><Error><Code>AuthFailure</Code><Message>bad</Message></Error></Errors></Response>");
        assert!(
            matches!(auth.into_provider("RunInstances"), ProviderError::Permanent(m) if m.contains("credentials"))
        );
        let q = Ec2Error {
            status: 400,
            code: "VcpuLimitExceeded".into(),
            message: "m".into(),
        };
        assert!(
            matches!(q.into_provider("RunInstances"), ProviderError::Permanent(m) if m.contains("vCPU quota"))
        );
        let t = Ec2Error::parse(503, "<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>");
        assert!(t.retryable());
        let junk = Ec2Error::parse(502, "gateway down");
        assert_eq!(junk.code, "HTTP502");
        assert!(junk.retryable());
    }

    #[test]
    fn signing_adds_a_v4_authorization_for_the_region_and_the_token() {
        let c = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: Some(Secret::new("tok")),
            source: "test".into(),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        let h = signed_headers(
            &c,
            "eu-west-1",
            "https://ec2.eu-west-1.amazonaws.com",
            "Action=DescribeRegions&Version=2016-11-15",
            at,
        )
        .unwrap();
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/ec2/aws4_request"
            ),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date"),
            "{auth}"
        );
        assert!(!auth.contains("EXAMPLEKEY"));
        assert_eq!(get("x-amz-date").as_deref(), Some("20150830T123600Z"));
        assert_eq!(get("x-amz-security-token").as_deref(), Some("tok"));
    }
}
