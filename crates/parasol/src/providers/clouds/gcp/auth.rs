//! How the `gcp` cloud is configured and how it gets OAuth2 tokens.
//!
//! Credentials follow Application Default Credentials' order, minus the
//! gcloud user login: a service-account JSON key named by
//! `GOOGLE_APPLICATION_CREDENTIALS` (else `[providers.gcp]
//! credentials_file`), else, where a project is configured, the metadata
//! server of the GCE machine Parasol runs on.
//!
//! With a key, a JWT signed RS256 with the key's private key (claims `iss`
//! the service account, `scope` compute and read-only Cloud Billing, `aud`
//! Google's token endpoint) is
//! exchanged at the key's `token_uri` for an access token (RFC 7523's
//! `jwt-bearer` grant), which is cached until a minute before it expires.
//! Signing is `ring`'s (already the TLS stack's), so no OpenSSL.

use std::time::Duration;

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use super::super::http::TokenCache;
use super::super::{Http, Secret};
use crate::providers::ProviderError;

/// The public Compute Engine API.
pub const DEFAULT_URL: &str = "https://compute.googleapis.com/compute/v1";
/// The audience of every service-account JWT: Google's token endpoint by
/// its public name, whatever `token_uri` the request is sent to (Google's
/// server-to-server OAuth guide: "always https://oauth2.googleapis.com/token").
pub const JWT_AUDIENCE: &str = "https://oauth2.googleapis.com/token";
/// The OAuth2 scopes the adapter asks for: Compute Engine, and reading
/// the Cloud Billing catalog for prices.
pub const SCOPE: &str =
    "https://www.googleapis.com/auth/compute https://www.googleapis.com/auth/cloud-billing.readonly";
/// The metadata server's token URL, on a GCE machine.
pub const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";
/// Regions served when the configuration names none: the ones the shipped
/// price table covers.
pub const DEFAULT_REGIONS: &[&str] = super::catalog::PRICED_REGIONS;
/// A token is renewed this long before Google says it expires.
const EARLY: Duration = Duration::from_secs(60);

/// `[providers.gcp]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGcp {
    /// Path of a service-account JSON key.
    pub credentials_file: Option<String>,
    /// The project; else the key's `project_id`.
    pub project: Option<String>,
    pub regions: Option<Vec<String>>,
    /// The Compute Engine API root (tests point it at a fake).
    pub url: Option<String>,
    /// The Cloud Billing API root prices are read from.
    pub billing_url: Option<String>,
    /// The boot image (a family or image URL), instead of the Deep
    /// Learning VM family.
    pub image: Option<String>,
}

/// A service-account key, as Google writes it in its JSON key file. Its
/// `Debug` shows the account and key id, never the private key.
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct ServiceAccountKey {
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub private_key_id: String,
    pub private_key: Secret,
    pub client_email: String,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// Where tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A service-account key: a signed JWT exchanged at its `token_uri`.
    ServiceAccount(ServiceAccountKey),
    /// The metadata server of the GCE machine Parasol runs on.
    Metadata { token_url: String },
}

impl Credentials {
    /// Where they came from, for the start log.
    pub fn source(&self) -> String {
        match self {
            Credentials::ServiceAccount(k) => format!("service account {}", k.client_email),
            Credentials::Metadata { .. } => "the GCE metadata server".into(),
        }
    }
}

/// Everything the adapter needs.
#[derive(Debug, Clone)]
pub struct GcpConfig {
    pub credentials: Credentials,
    pub project: String,
    pub regions: Vec<String>,
    /// The API root, up to and including `/compute/v1`.
    pub url: String,
    /// The Cloud Billing API root, up to and including `/v1`.
    pub billing_url: String,
    /// The boot image; `None`: the Deep Learning VM family.
    pub image: Option<String>,
}

/// Resolves `[providers.gcp]` and the environment; `None` when no
/// credentials are configured.
pub fn resolve(
    file: Option<&FileGcp>,
    env: &impl Fn(&str) -> Option<String>,
    read: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<GcpConfig>> {
    let env = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let key_path = env("GOOGLE_APPLICATION_CREDENTIALS")
        .or_else(|| file.and_then(|f| f.credentials_file.clone()));
    let project = env("PARASOL_GCP_PROJECT").or_else(|| file.and_then(|f| f.project.clone()));
    let (credentials, project) = match key_path {
        Some(path) => {
            let text = read(&path)
                .with_context(|| format!("the Google credentials file {path} cannot be read"))?;
            let key =
                parse_key(&text).with_context(|| format!("the Google credentials file {path}"))?;
            let project = project
                .or_else(|| key.project_id.clone())
                .filter(|p| !p.is_empty());
            let Some(project) = project else {
                bail!("the Google key {path} names no project_id: set PARASOL_GCP_PROJECT or [providers.gcp] project");
            };
            (Credentials::ServiceAccount(key), project)
        }
        None => match project {
            Some(project) => (
                Credentials::Metadata {
                    token_url: env("PARASOL_GCP_METADATA_TOKEN_URL")
                        .unwrap_or_else(|| METADATA_TOKEN_URL.to_string()),
                },
                project,
            ),
            None => return Ok(None),
        },
    };
    let url = env("PARASOL_GCP_URL")
        .or_else(|| file.and_then(|f| f.url.clone()))
        .unwrap_or_else(|| DEFAULT_URL.to_string())
        .trim_end_matches('/')
        .to_string();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!("PARASOL_GCP_URL must be an http(s) URL, got {url:?}");
    }
    let billing_url = env("PARASOL_GCP_BILLING_URL")
        .or_else(|| file.and_then(|f| f.billing_url.clone()))
        .unwrap_or_else(|| super::billing::DEFAULT_URL.to_string())
        .trim_end_matches('/')
        .to_string();
    if !(billing_url.starts_with("https://") || billing_url.starts_with("http://")) {
        bail!("PARASOL_GCP_BILLING_URL must be an http(s) URL, got {billing_url:?}");
    }
    let regions: Vec<String> = match env("PARASOL_GCP_REGIONS") {
        Some(v) => v.split(',').map(|r| r.trim().to_string()).collect(),
        None => file
            .and_then(|f| f.regions.clone())
            .unwrap_or_else(|| DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect()),
    };
    let regions: Vec<String> = regions.into_iter().filter(|r| !r.is_empty()).collect();
    if regions.is_empty() {
        bail!("[providers.gcp] regions names no region");
    }
    Ok(Some(GcpConfig {
        credentials,
        project,
        regions,
        url,
        billing_url,
        image: env("PARASOL_GCP_IMAGE").or_else(|| file.and_then(|f| f.image.clone())),
    }))
}

/// A service-account JSON key; any other kind of Google credential file
/// (an authorized user's, a workload identity config) is refused by name.
pub fn parse_key(text: &str) -> anyhow::Result<ServiceAccountKey> {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type", default)]
        kind: String,
    }
    let kind: Kind = serde_json::from_str(text).context("is not JSON")?;
    if kind.kind != "service_account" {
        bail!(
            "is a {:?} credential; Parasol takes a service-account key (\"type\": \"service_account\")",
            kind.kind
        );
    }
    let key: ServiceAccountKey =
        serde_json::from_str(text).context("is not a complete service-account key")?;
    signer(&key).context("its private_key")?;
    Ok(key)
}

/// The key's RSA key pair, from its PKCS#8 PEM.
fn signer(key: &ServiceAccountKey) -> anyhow::Result<ring::signature::RsaKeyPair> {
    let pem = key.private_key.expose();
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("is not PEM")?;
    ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| anyhow::anyhow!("is not a PKCS#8 RSA private key ({e})"))
}

/// The signed JWT a service account exchanges for a token, issued at
/// `now` (Unix seconds) and valid for an hour.
pub fn assertion(key: &ServiceAccountKey, now: u64) -> anyhow::Result<String> {
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key.private_key_id});
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let pair = signer(key)?;
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| anyhow::anyhow!("signing the JWT failed"))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "an_hour")]
    expires_in: u64,
}

fn an_hour() -> u64 {
    3600
}

/// Access tokens, fetched when needed and cached until shortly before
/// they expire.
pub struct Tokens {
    credentials: Credentials,
    http: Http,
    cached: TokenCache,
}

impl Tokens {
    /// Nothing fetched yet.
    pub fn new(credentials: Credentials, http: Http) -> Self {
        Self {
            credentials,
            http,
            cached: TokenCache::default(),
        }
    }

    /// A valid access token. The lock is held while fetching, so
    /// concurrent callers share one exchange.
    pub async fn get(&self) -> Result<Secret, ProviderError> {
        self.cached
            .get(|| async {
                let (token, lifetime) = self.fetch().await?;
                Ok((token, Duration::from_secs(lifetime).saturating_sub(EARLY)))
            })
            .await
    }

    /// Forgets the cached token (after Google refused it).
    pub async fn clear(&self) {
        self.cached.clear().await;
    }

    async fn fetch(&self) -> Result<(Secret, u64), ProviderError> {
        let (what, status, body) = match &self.credentials {
            Credentials::ServiceAccount(key) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let jwt = assertion(key, now).map_err(|e| {
                    ProviderError::Permanent(format!("gcp: the service-account key {e}"))
                })?;
                let form = [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", jwt.as_str()),
                ];
                let (status, body) = self
                    .http
                    .send(|| self.http.client.post(&key.token_uri).form(&form))
                    .await?;
                ("the token endpoint", status, body)
            }
            Credentials::Metadata { token_url } => {
                let (status, body) = self
                    .http
                    .send(|| {
                        self.http
                            .client
                            .get(token_url)
                            .header("Metadata-Flavor", "Google")
                    })
                    .await?;
                ("the metadata server", status, body)
            }
        };
        if status.is_server_error() {
            return Err(ProviderError::Transient(format!(
                "gcp: {what} failed ({status})"
            )));
        }
        if !status.is_success() {
            // The answer names the problem (`invalid_grant`, ...), never
            // the key.
            return Err(ProviderError::Permanent(format!(
                "gcp: {what} refused the credentials ({status}): {}; check the service-account key",
                super::super::short(&body)
            )));
        }
        let t: TokenAnswer = super::super::parse("gcp", what, &body)?;
        Ok((Secret::new(t.access_token), t.expires_in))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn nothing_configured_is_no_gcp_and_a_project_alone_is_the_metadata_server() {
        assert!(resolve(None, &env(&[]), &|_| None).unwrap().is_none());
        let c = resolve(None, &env(&[("PARASOL_GCP_PROJECT", "p1")]), &|_| None)
            .unwrap()
            .unwrap();
        assert_eq!(c.project, "p1");
        assert!(matches!(c.credentials, Credentials::Metadata { .. }));
        assert_eq!(c.url, DEFAULT_URL);
        assert_eq!(c.regions, DEFAULT_REGIONS);
    }

    #[test]
    fn a_key_file_that_is_not_a_service_account_key_is_refused_by_name() {
        let e = resolve(
            None,
            &env(&[("GOOGLE_APPLICATION_CREDENTIALS", "/k.json")]),
            &|_| Some(r#"{"type": "authorized_user", "client_id": "x"}"#.into()),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("authorized_user"), "{e:#}");
        let e = resolve(
            None,
            &env(&[("GOOGLE_APPLICATION_CREDENTIALS", "/missing.json")]),
            &|_| None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("/missing.json"), "{e:#}");
    }
}
