//! OpenID Connect sign-in: the operator's identity providers, their
//! discovery documents and signing keys, ID-token checks, and the rules
//! that turn a signed-in person's groups and email into memberships.
//!
//! The flow (console/oidc.rs drives it) is the authorization code flow
//! with PKCE (S256) and a nonce. Provider metadata comes from
//! `<issuer>/.well-known/openid-configuration`, fetched on first use. ID
//! tokens are checked with `jsonwebtoken` (a maintained JOSE crate, on
//! ring as rustls is: no OpenSSL): the signature against the issuer's
//! JWKS (cached, and fetched again when a token names a key id the cache
//! lacks, as after a key rotation), `iss`, `aud`, `exp` and `iat` with
//! [`CLOCK_SKEW_S`] of leeway against the server's clock, and the nonce.
//! Only asymmetric algorithms are accepted: a token "signed" with the
//! client secret (HS256) or with `none` is refused.

use std::collections::HashMap;
use std::sync::RwLock;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parasol_api::Role;
use serde::Deserialize;
use serde_json::Value;

/// Leeway on `exp` and `iat`, for clocks that disagree a little.
pub const CLOCK_SKEW_S: i64 = 60;

/// One identity provider people may sign in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Its name in URLs (`/oidc/{id}/start`).
    pub id: String,
    /// What the sign-in button says after "Sign in with".
    pub name: String,
    /// The issuer, exactly as its ID tokens' `iss` says it.
    pub issuer: String,
    pub client_id: String,
    /// None: a public client (PKCE alone).
    pub client_secret: Option<String>,
    /// Space-separated scopes asked for.
    pub scopes: String,
    /// The ID-token claim listing the person's groups.
    pub groups_claim: String,
}

/// A config rule: people it matches are members of `account` with `role`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Only people of this provider (its `id`); any provider when absent.
    #[serde(default)]
    pub provider: Option<String>,
    /// Matches people in this group (the groups claim).
    #[serde(default)]
    pub group: Option<String>,
    /// Matches people whose verified email is at this domain.
    #[serde(default)]
    pub email_domain: Option<String>,
    /// The account's name.
    pub account: String,
    pub role: Role,
}

/// What a provider said about the person, once their ID token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider vouches for the email (`email_verified`; a
    /// provider that omits it is taken at its word, as Okta and Entra ID
    /// omit it for their own directories).
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

impl Rule {
    /// Whether the rule matches this person of `provider`.
    pub fn matches(&self, provider: &str, who: &Identity) -> bool {
        if self.provider.as_deref().is_some_and(|p| p != provider) {
            return false;
        }
        if self.group.is_none() && self.email_domain.is_none() {
            return false;
        }
        let group_ok = self
            .group
            .as_ref()
            .is_none_or(|g| who.groups.iter().any(|have| have == g));
        let domain_ok = self.email_domain.as_ref().is_none_or(|d| {
            who.email_verified
                && who.email.as_deref().is_some_and(|e| {
                    e.rsplit_once('@')
                        .is_some_and(|(_, host)| host.eq_ignore_ascii_case(d))
                })
        });
        group_ok && domain_ok
    }
}

/// The accounts (by name) and roles the rules grant: the highest role where
/// several rules name one account.
pub fn grants(rules: &[Rule], provider: &str, who: &Identity) -> Vec<(String, Role)> {
    let mut out: Vec<(String, Role)> = vec![];
    for r in rules.iter().filter(|r| r.matches(provider, who)) {
        match out.iter_mut().find(|(a, _)| *a == r.account) {
            Some((_, role)) => *role = (*role).max(r.role),
            None => out.push((r.account.clone(), r.role)),
        }
    }
    out
}

/// Sign-in settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidcSettings {
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    /// The console's address as browsers reach it (redirect URIs are made
    /// from it); none: from the request's Host.
    pub public_url: Option<String>,
    /// Whether the console's sign-in page offers the API-key form.
    pub key_sign_in: bool,
    /// Whom a person with no access should ask (shown on that page).
    pub contact: Option<String>,
}

/// What went wrong checking an ID token or talking to the provider: shown
/// to the person (never with a token in it) and logged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    #[error("the identity provider could not be reached or answered badly: {0}")]
    Provider(String),
    #[error("the ID token is not valid: {0}")]
    Token(String),
}

/// The parts of a discovery document used here.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// Metadata and keys of every provider, fetched on first use.
#[derive(Default)]
pub struct Discovery {
    metadata: RwLock<HashMap<String, Metadata>>,
    keys: RwLock<HashMap<String, JwkSet>>,
}

fn provider_error(what: &str, e: impl std::fmt::Display) -> OidcError {
    OidcError::Provider(format!("{what}: {e}"))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, OidcError> {
    let res = http
        .get(url)
        .send()
        .await
        .map_err(|e| provider_error(url, e))?;
    if !res.status().is_success() {
        return Err(provider_error(url, res.status()));
    }
    res.json().await.map_err(|e| provider_error(url, e))
}

impl Discovery {
    /// The provider's discovery document, fetched once. Its issuer must be
    /// the configured one, exactly (OpenID Connect Discovery 1.0, 4.3).
    pub async fn metadata(
        &self,
        http: &reqwest::Client,
        p: &Provider,
    ) -> Result<Metadata, OidcError> {
        if let Some(m) = self.metadata.read().expect("poisoned").get(&p.id) {
            return Ok(m.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            p.issuer.trim_end_matches('/')
        );
        let m: Metadata = get_json(http, &url).await?;
        if m.issuer != p.issuer {
            return Err(OidcError::Provider(format!(
                "the discovery document names the issuer {:?}, not the configured {:?}",
                m.issuer, p.issuer
            )));
        }
        self.metadata
            .write()
            .expect("poisoned")
            .insert(p.id.clone(), m.clone());
        Ok(m)
    }

    /// The key with this id, from the cached JWKS, or from a fresh one when
    /// the cache lacks it (the provider rotated its keys) or `refresh` asks;
    /// with whether it was fetched just now.
    async fn key(
        &self,
        http: &reqwest::Client,
        p: &Provider,
        m: &Metadata,
        kid: Option<&str>,
        refresh: bool,
    ) -> Result<(DecodingKey, bool), OidcError> {
        let find = |set: &JwkSet| -> Option<Result<DecodingKey, OidcError>> {
            let jwk = match kid {
                Some(k) => set.find(k)?,
                // No kid: only an unambiguous set will do.
                None if set.keys.len() == 1 => &set.keys[0],
                None => return None,
            };
            Some(
                DecodingKey::from_jwk(jwk)
                    .map_err(|e| OidcError::Token(format!("the provider's key is unusable: {e}"))),
            )
        };
        if !refresh {
            let cached = self.keys.read().expect("poisoned");
            if let Some(found) = cached.get(&p.id).and_then(find) {
                return found.map(|k| (k, false));
            }
        }
        let set: JwkSet = get_json(http, &m.jwks_uri).await?;
        tracing::info!(provider = %p.id, keys = set.keys.len(), "fetched the provider's signing keys");
        let found = find(&set);
        self.keys
            .write()
            .expect("poisoned")
            .insert(p.id.clone(), set);
        match found {
            Some(k) => k.map(|k| (k, true)),
            None => Err(OidcError::Token(format!(
                "it is signed with a key ({}) the provider does not publish",
                kid.unwrap_or("no key id")
            ))),
        }
    }

    /// Checks an ID token from `p` and answers who it names: signature,
    /// `iss`, `aud`, `exp`, `iat` (against `now_ms`) and `nonce`.
    pub async fn verify(
        &self,
        http: &reqwest::Client,
        p: &Provider,
        id_token: &str,
        nonce: &str,
        now_ms: i64,
    ) -> Result<Identity, OidcError> {
        let m = self.metadata(http, p).await?;
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| OidcError::Token(format!("its header cannot be read: {e}")))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(OidcError::Token(format!(
                "it is signed with {:?}; only public-key signatures are accepted",
                header.alg
            )));
        }
        let kid = header.kid.as_deref();
        let (key, fetched) = self.key(http, p, &m, kid, false).await?;
        let claims = match check(id_token, header.alg, &key, p, nonce, now_ms) {
            // A token without a key id, or reusing one, after a rotation:
            // the cached key no longer verifies it; the published one may.
            Err(Checked::Signature(_)) if !fetched => {
                let (key, _) = self.key(http, p, &m, kid, true).await?;
                check(id_token, header.alg, &key, p, nonce, now_ms)
            }
            other => other,
        }
        .map_err(OidcError::from)?;
        identity(&claims, &p.groups_claim)
    }
}

const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why [`check`] refused a token: its signature (which a fresh JWKS may
/// yet verify), or anything else.
enum Checked {
    Signature(OidcError),
    Other(OidcError),
}

impl From<Checked> for OidcError {
    fn from(c: Checked) -> Self {
        match c {
            Checked::Signature(e) | Checked::Other(e) => e,
        }
    }
}

impl From<OidcError> for Checked {
    fn from(e: OidcError) -> Self {
        Checked::Other(e)
    }
}

/// The signature, issuer and audience by `jsonwebtoken`; the times against
/// the server's clock (which tests can move), and the nonce, here.
fn check(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    p: &Provider,
    nonce: &str,
    now_ms: i64,
) -> Result<Value, Checked> {
    let mut v = Validation::new(alg);
    v.set_issuer(&[&p.issuer]);
    v.set_audience(&[&p.client_id]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_required_spec_claims(&["iss", "aud", "sub", "exp", "iat"]);
    let data = jsonwebtoken::decode::<Value>(token, key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        let token = |m: String| OidcError::Token(m);
        match e.kind() {
            ErrorKind::InvalidAudience => Checked::Other(token(format!(
                "it was issued for another client, not {:?}",
                p.client_id
            ))),
            ErrorKind::InvalidIssuer => {
                Checked::Other(token(format!("it was not issued by {:?}", p.issuer)))
            }
            ErrorKind::InvalidSignature => {
                Checked::Signature(token("its signature does not verify".into()))
            }
            _ => Checked::Other(token(e.to_string())),
        }
    })?;
    let c = data.claims;
    let now_s = now_ms.div_euclid(1000);
    let exp = c["exp"].as_i64().unwrap_or(0);
    if now_s > exp + CLOCK_SKEW_S {
        return Err(OidcError::Token(format!("it expired {} seconds ago", now_s - exp)).into());
    }
    let iat = c["iat"].as_i64().unwrap_or(i64::MAX);
    if iat > now_s + CLOCK_SKEW_S {
        return Err(OidcError::Token("it was issued in the future".into()).into());
    }
    // An ID token carries several audiences only with an azp naming us.
    if c["aud"].as_array().is_some_and(|a| a.len() > 1)
        && c["azp"].as_str() != Some(p.client_id.as_str())
    {
        return Err(OidcError::Token(
            "it names several audiences but not this client as its authorized party".into(),
        )
        .into());
    }
    let sent = c["nonce"].as_str().unwrap_or("");
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        sent.as_bytes(),
        nonce.as_bytes(),
    )) || sent.is_empty()
    {
        return Err(OidcError::Token(
            "its nonce is not the one this sign-in sent (a replayed token?)".into(),
        )
        .into());
    }
    Ok(c)
}

/// Who the checked claims name; groups from `groups_claim` (an array of
/// strings, or one string).
pub fn identity(c: &Value, groups_claim: &str) -> Result<Identity, OidcError> {
    let subject = c["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OidcError::Token("it names no subject".into()))?
        .to_string();
    let groups = match &c[groups_claim] {
        Value::Array(a) => a
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        Value::String(g) => vec![g.clone()],
        _ => vec![],
    };
    Ok(Identity {
        subject,
        email: c["email"].as_str().map(str::to_string),
        email_verified: c["email_verified"].as_bool().unwrap_or(true),
        name: c["name"].as_str().map(str::to_string),
        groups,
    })
}

/// A PKCE verifier (RFC 7636: 43 characters of base64url) and its S256
/// challenge.
pub fn pkce() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes: [u8; 32] = rand::random();
    let verifier = b64.encode(bytes);
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// A random token for `state` and `nonce`.
pub fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

/// Trades the code for tokens and answers the ID token.
pub async fn redeem(
    http: &reqwest::Client,
    p: &Provider,
    m: &Metadata,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<String, OidcError> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    let mut req = http.post(&m.token_endpoint);
    match &p.client_secret {
        // client_secret_basic, the method every provider must support.
        Some(secret) => req = req.basic_auth(form_encode(&p.client_id), Some(form_encode(secret))),
        // A public client names itself in the form.
        None => form.push(("client_id", p.client_id.as_str())),
    }
    let res = req
        .form(&form)
        .send()
        .await
        .map_err(|e| provider_error("the token endpoint", e))?;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    if !status.is_success() {
        // The error body is the provider's JSON (error, error_description).
        let why: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        return Err(OidcError::Provider(format!(
            "the token endpoint refused the code ({status}): {}",
            why["error_description"]
                .as_str()
                .or(why["error"].as_str())
                .unwrap_or("no reason given")
        )));
    }
    let answer: TokenAnswer = serde_json::from_str(&body)
        .map_err(|e| provider_error("the token endpoint's answer", e))?;
    answer
        .id_token
        .ok_or_else(|| OidcError::Provider("the token endpoint sent no ID token".into()))
}

/// RFC 6749 2.3.1: the client id and secret are form-encoded before they
/// go into Basic authentication.
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(email: &str, groups: &[&str]) -> Identity {
        Identity {
            subject: "s".into(),
            email: Some(email.into()),
            email_verified: true,
            name: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn rule(group: Option<&str>, domain: Option<&str>, account: &str, role: Role) -> Rule {
        Rule {
            provider: None,
            group: group.map(str::to_string),
            email_domain: domain.map(str::to_string),
            account: account.into(),
            role,
        }
    }

    #[test]
    fn rules_match_groups_and_verified_email_domains_and_take_the_highest_role() {
        let rules = [
            rule(Some("ml-team"), None, "research", Role::Member),
            rule(None, Some("example.com"), "research", Role::Viewer),
            rule(Some("admins"), Some("example.com"), "infra", Role::Owner),
            rule(None, None, "everyone", Role::Owner),
        ];
        assert_eq!(
            grants(&rules, "okta", &who("ada@Example.com", &["ml-team"])),
            [("research".to_string(), Role::Member)]
        );
        assert_eq!(
            grants(&rules, "okta", &who("bob@elsewhere.org", &["admins"])),
            []
        );
        let mut unverified = who("eve@example.com", &[]);
        unverified.email_verified = false;
        assert_eq!(grants(&rules, "okta", &unverified), []);
        let mut scoped = rules[0].clone();
        scoped.provider = Some("google".into());
        assert_eq!(
            grants(&[scoped], "okta", &who("ada@example.com", &["ml-team"])),
            []
        );
    }

    #[test]
    fn groups_come_from_the_configured_claim_as_a_list_or_one_string() {
        let c = serde_json::json!({"sub": "u1", "roles": ["a", "b", 3], "team": "x"});
        assert_eq!(identity(&c, "roles").unwrap().groups, ["a", "b"]);
        assert_eq!(identity(&c, "team").unwrap().groups, ["x"]);
        assert!(identity(&c, "groups").unwrap().groups.is_empty());
        assert!(identity(&serde_json::json!({}), "groups").is_err());
    }

    #[test]
    fn pkce_challenges_are_the_s256_of_the_verifier() {
        let (v, c) = pkce();
        assert_eq!(v.len(), 43);
        use base64::Engine;
        use sha2::Digest;
        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(v.as_bytes()));
        assert_eq!(c, want);
        // RFC 7636 appendix B.
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(
            b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ));
        assert_eq!(b, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }
}

/// The sign-in flags of `parasol serve` (each also an environment
/// variable): one provider, beside any in the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OidcArgs {
    /// The OpenID provider's issuer URL (its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`).
    #[arg(long, env = "PARASOL_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// This server's client id at the provider.
    #[arg(long, env = "PARASOL_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// A file holding the client secret (or PARASOL_OIDC_CLIENT_SECRET);
    /// none: a public client.
    #[arg(long, env = "PARASOL_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<std::path::PathBuf>,
    /// Scopes asked for (default `openid email profile`).
    #[arg(long, env = "PARASOL_OIDC_SCOPES")]
    pub oidc_scopes: Option<String>,
    /// The ID-token claim listing the person's groups (default `groups`).
    #[arg(long, env = "PARASOL_OIDC_GROUPS_CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// The provider's name on the sign-in button (default: its host).
    #[arg(long, env = "PARASOL_OIDC_NAME")]
    pub oidc_name: Option<String>,
    /// The console's address as browsers reach it, such as
    /// `https://parasol.example.com`; redirect URIs are made from it.
    #[arg(long, env = "PARASOL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Whether the sign-in page offers the API-key form
    /// (`--console-key-sign-in=false` leaves the providers only).
    #[arg(long, env = "PARASOL_CONSOLE_KEY_SIGN_IN", action = clap::ArgAction::Set)]
    pub console_key_sign_in: Option<bool>,
}

/// One provider in the config file (`[oidc]` itself, or each of
/// `[[oidc.providers]]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProvider {
    /// Its name in URLs; default `default` for `[oidc]`.
    pub id: Option<String>,
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<std::path::PathBuf>,
    /// The environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    pub scopes: Option<String>,
    pub groups_claim: Option<String>,
}

/// `[oidc]` in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOidc {
    #[serde(flatten)]
    pub provider: FileProvider,
    /// Whom a person with no access should ask, shown to them.
    pub contact: Option<String>,
    #[serde(default)]
    pub providers: Vec<FileProvider>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// `[console]` in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConsole {
    pub key_sign_in: Option<bool>,
}

fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("reading the OIDC client secret file {}", path.display()))?;
    Ok(s.trim().to_string())
}

fn provider_from(
    f: &FileProvider,
    default_id: &str,
    secret: Option<String>,
) -> anyhow::Result<Option<Provider>> {
    use anyhow::bail;
    let (Some(issuer), Some(client_id)) = (&f.issuer, &f.client_id) else {
        if f.issuer.is_some() || f.client_id.is_some() {
            bail!("an OpenID provider needs both an issuer and a client id");
        }
        return Ok(None);
    };
    let url = reqwest::Url::parse(issuer)
        .map_err(|e| anyhow::anyhow!("the OIDC issuer {issuer:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        bail!("the OIDC issuer {issuer:?} must be an https URL");
    }
    let id = f.id.clone().unwrap_or_else(|| default_id.to_string());
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("an OIDC provider id must be letters, digits, - and _; got {id:?}");
    }
    let secret = match (&f.client_secret_file, &f.client_secret_env, secret) {
        (Some(path), _, _) => Some(read_secret(path)?),
        (None, Some(var), _) => Some(std::env::var(var).map_err(|_| {
            anyhow::anyhow!("the environment variable {var} (client_secret_env) is not set")
        })?),
        (None, None, s) => s,
    };
    Ok(Some(Provider {
        name: f
            .name
            .clone()
            .unwrap_or_else(|| url.host_str().unwrap_or(issuer).to_string()),
        id,
        issuer: issuer.clone(),
        client_id: client_id.clone(),
        client_secret: secret.filter(|s| !s.is_empty()),
        scopes: f
            .scopes
            .clone()
            .unwrap_or_else(|| "openid email profile".into()),
        groups_claim: f.groups_claim.clone().unwrap_or_else(|| "groups".into()),
    }))
}

/// The sign-in settings from the flags (which win) and the file.
pub fn resolve(
    args: &OidcArgs,
    public_url: Option<&str>,
    console: &FileConsole,
    file: &FileOidc,
) -> anyhow::Result<OidcSettings> {
    use anyhow::bail;
    let mut first = file.provider.clone();
    first.issuer = args.oidc_issuer.clone().or(first.issuer);
    first.client_id = args.oidc_client_id.clone().or(first.client_id);
    first.client_secret_file = args
        .oidc_client_secret_file
        .clone()
        .or(first.client_secret_file);
    first.scopes = args.oidc_scopes.clone().or(first.scopes);
    first.groups_claim = args.oidc_groups_claim.clone().or(first.groups_claim);
    first.name = args.oidc_name.clone().or(first.name);
    let env_secret = std::env::var("PARASOL_OIDC_CLIENT_SECRET").ok();
    let mut providers: Vec<Provider> = provider_from(&first, "default", env_secret)?
        .into_iter()
        .collect();
    for (i, f) in file.providers.iter().enumerate() {
        match provider_from(f, &format!("provider-{}", i + 1), None)? {
            Some(p) => providers.push(p),
            None => bail!(
                "[[oidc.providers]] number {} needs an issuer and a client_id",
                i + 1
            ),
        }
    }
    for (i, p) in providers.iter().enumerate() {
        if providers[..i].iter().any(|q| q.id == p.id) {
            bail!(
                "two OIDC providers have the id {:?}; give each its own",
                p.id
            );
        }
    }
    for r in &file.rules {
        if r.group.is_none() && r.email_domain.is_none() {
            bail!(
                "the [[oidc.rules]] entry for account {:?} needs a group or an email_domain",
                r.account
            );
        }
        if let Some(p) = &r.provider {
            if !providers.iter().any(|q| &q.id == p) {
                bail!("an [[oidc.rules]] entry names the provider {p:?}, which is not configured");
            }
        }
    }
    let public_url = args
        .public_url
        .clone()
        .or(public_url.map(str::to_string))
        .map(|u| u.trim_end_matches('/').to_string());
    if let Some(u) = &public_url {
        if reqwest::Url::parse(u).is_err() {
            bail!("--public-url must be a URL such as https://parasol.example.com, got {u:?}");
        }
    }
    let key_sign_in = args
        .console_key_sign_in
        .or(console.key_sign_in)
        .unwrap_or(true);
    if !key_sign_in && providers.is_empty() {
        bail!("--console-key-sign-in=false needs an OpenID provider to sign in with");
    }
    Ok(OidcSettings {
        providers,
        rules: file.rules.clone(),
        public_url,
        key_sign_in,
        contact: file.contact.clone(),
    })
}

/// Sign-in as the server holds it: settings, what was discovered, and the
/// HTTP client that talks to providers.
pub struct Oidc {
    pub settings: OidcSettings,
    pub discovery: Discovery,
    pub http: reqwest::Client,
}

impl Oidc {
    /// Ready to talk to the providers (nothing is fetched until a sign-in).
    pub fn new(settings: OidcSettings) -> anyhow::Result<Oidc> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            // A provider's answer is read, never followed elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Oidc {
            settings,
            discovery: Discovery::default(),
            http,
        })
    }

    /// The configured provider with this id.
    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.settings.providers.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    fn file(toml_text: &str) -> (FileConsole, FileOidc, Option<String>) {
        #[derive(Deserialize)]
        struct F {
            public_url: Option<String>,
            #[serde(default)]
            console: FileConsole,
            #[serde(default)]
            oidc: FileOidc,
        }
        let f: F = toml::from_str(toml_text).unwrap();
        (f.console, f.oidc, f.public_url)
    }

    #[test]
    fn flags_and_several_file_providers_resolve_and_mistakes_are_named() {
        let (console, oidc, public) = file(
            r#"
            public_url = "https://parasol.example.com/"
            [oidc]
            issuer = "https://sso.example.com/realms/acme"
            client_id = "parasol"
            [[oidc.providers]]
            id = "google"
            name = "Google"
            issuer = "https://accounts.google.com"
            client_id = "g"
            [[oidc.rules]]
            provider = "google"
            email_domain = "example.com"
            account = "research"
            role = "viewer"
            "#,
        );
        let args = OidcArgs {
            oidc_scopes: Some("openid email".into()),
            ..OidcArgs::default()
        };
        let s = resolve(&args, public.as_deref(), &console, &oidc).unwrap();
        let ids: Vec<&str> = s.providers.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["default", "google"]);
        assert_eq!(s.providers[0].name, "sso.example.com");
        assert_eq!(s.providers[0].scopes, "openid email");
        assert_eq!(s.providers[1].scopes, "openid email profile");
        assert_eq!(s.providers[1].groups_claim, "groups");
        assert_eq!(s.public_url.as_deref(), Some("https://parasol.example.com"));
        assert!(s.key_sign_in);

        // The flag turns the key form off; without any provider that is
        // refused, since nobody could sign in.
        let off = OidcArgs {
            console_key_sign_in: Some(false),
            ..OidcArgs::default()
        };
        assert!(!resolve(&off, None, &console, &oidc).unwrap().key_sign_in);
        let e = resolve(&off, None, &console, &FileOidc::default()).unwrap_err();
        assert!(e.to_string().contains("needs an OpenID provider"), "{e}");

        let (_, mut dup, _) = file(
            "[[oidc.providers]]\nid = \"a\"\nissuer = \"https://x\"\nclient_id = \"c\"\n\
             [[oidc.providers]]\nid = \"a\"\nissuer = \"https://y\"\nclient_id = \"c\"\n",
        );
        let e = resolve(&OidcArgs::default(), None, &console, &dup).unwrap_err();
        assert!(e.to_string().contains("two OIDC providers"), "{e}");
        dup.providers.pop();
        dup.rules.push(Rule {
            provider: Some("nope".into()),
            group: Some("g".into()),
            email_domain: None,
            account: "a".into(),
            role: Role::Viewer,
        });
        let e = resolve(&OidcArgs::default(), None, &console, &dup).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        assert!(toml::from_str::<FileOidc>("issuer = \"https://x\"\nclinet_id = \"c\"").is_err());
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::*;
    use base64::Engine;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use std::sync::{Arc, Mutex};

    /// An Ed25519 key pair: its PKCS#8 document and public JWK under `kid`.
    fn key(kid: &str) -> (Vec<u8>, Value) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key());
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"});
        (pkcs8.as_ref().to_vec(), jwk)
    }

    fn sign(pkcs8: &[u8], kid: &str, claims: &Value) -> String {
        let mut h = jsonwebtoken::Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, claims, &jsonwebtoken::EncodingKey::from_ed_der(pkcs8)).unwrap()
    }

    /// A provider that names its keys: discovery and a JWKS the test can
    /// change, counting the JWKS fetches.
    #[tokio::test]
    async fn a_token_naming_an_unknown_key_makes_the_jwks_be_fetched_again() {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(Vec::<Value>::new()));
        let fetches = Arc::new(Mutex::new(0));
        let meta = serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
        });
        let (keys, count) = (jwks.clone(), fetches.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(meta) }),
            )
            .route(
                "/jwks",
                get(move || {
                    let (keys, count) = (keys.clone(), count.clone());
                    async move {
                        *count.lock().unwrap() += 1;
                        axum::Json(serde_json::json!({"keys": *keys.lock().unwrap()}))
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let p = Provider {
            id: "default".into(),
            name: "Test".into(),
            issuer: issuer.clone(),
            client_id: "parasol".into(),
            client_secret: None,
            scopes: "openid".into(),
            groups_claim: "groups".into(),
        };
        let now_s = 1_900_000_000;
        let claims = serde_json::json!({
            "iss": issuer, "aud": "parasol", "sub": "ada", "nonce": "n",
            "iat": now_s, "exp": now_s + 300,
        });
        let (k1, j1) = key("k1");
        let (k2, j2) = key("k2");
        jwks.lock().unwrap().push(j1);
        let http = reqwest::Client::new();
        let d = Discovery::default();
        let now_ms = now_s * 1000;
        d.verify(&http, &p, &sign(&k1, "k1", &claims), "n", now_ms)
            .await
            .unwrap();
        d.verify(&http, &p, &sign(&k1, "k1", &claims), "n", now_ms)
            .await
            .unwrap();
        assert_eq!(
            *fetches.lock().unwrap(),
            1,
            "a known key is served from the cache"
        );

        // The provider rotates to k2: its first token names a key id the
        // cache lacks, and the fresh JWKS has it.
        *jwks.lock().unwrap() = vec![j2];
        let who = d
            .verify(&http, &p, &sign(&k2, "k2", &claims), "n", now_ms)
            .await
            .unwrap();
        assert_eq!(who.subject, "ada");
        assert_eq!(*fetches.lock().unwrap(), 2);
        // A key id nobody publishes is refused, after one more look.
        let (k3, _) = key("k3");
        let e = d
            .verify(&http, &p, &sign(&k3, "k3", &claims), "n", now_ms)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not publish"), "{e}");
        // HS256 with a shared secret is not a signature this accepts.
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"client-secret"),
        )
        .unwrap();
        let e = d.verify(&http, &p, &hs, "n", now_ms).await.unwrap_err();
        assert!(e.to_string().contains("only public-key"), "{e}");
    }
}
