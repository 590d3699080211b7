//! How the `aws` cloud is configured: credentials from AWS's standard
//! sources in AWS's order, the regions to serve, the endpoint override and
//! per-region AMI overrides.
//!
//! Credential order (as the AWS SDKs document it, minus the sources that
//! need a network: SSO, process, instance metadata):
//! 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 2. the profile `AWS_PROFILE`, else `[providers.aws] profile`, else
//!    `default`, from the shared credentials file
//!    (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`), then
//!    the shared config file (`AWS_CONFIG_FILE`, default `~/.aws/config`,
//!    where the section is `[profile NAME]`, or `[default]`).

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

use super::super::Secret;

/// Regions served when the configuration names none: the AWS regions that
/// carry most GPU families and that the shipped price table covers (a
/// region without prices would list nothing; see `catalog::US_PRICES`).
pub const DEFAULT_REGIONS: &[&str] = super::catalog::US_REGIONS;

/// `[providers.aws]` in the TOML file. Credentials are not read from
/// Parasol's file: AWS's own files hold them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAws {
    /// A profile of the shared AWS files.
    pub profile: Option<String>,
    pub regions: Option<Vec<String>>,
    /// AMI per region, instead of the Deep Learning Base AMI lookup.
    #[serde(default)]
    pub amis: BTreeMap<String, String>,
}

/// AWS credentials. Their `Debug` shows only where they came from and the
/// key id's last four characters.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// Where they came from, for the start log (`environment`, `profile x`).
    pub source: String,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.access_key_id.chars().count();
        let tail: String = self
            .access_key_id
            .chars()
            .skip(n.saturating_sub(4))
            .collect();
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &format!("***{tail}"))
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Everything the adapter needs.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub credentials: AwsCredentials,
    pub regions: Vec<String>,
    /// One endpoint for every region (moto, a proxy); `None`: the public
    /// regional endpoints.
    pub endpoint: Option<String>,
    pub amis: BTreeMap<String, String>,
}

impl AwsConfig {
    /// The URL requests for `region` go to.
    pub fn endpoint_for(&self, region: &str) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("https://ec2.{region}.amazonaws.com"),
        }
    }

    /// The endpoint for the start log.
    pub fn endpoint_display(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| "https://ec2.<region>.amazonaws.com".to_string())
    }
}

/// Resolves the `aws` cloud from `env` and the file; `Ok(None)` when no
/// credentials are found and none were asked for.
pub fn resolve(
    file: Option<&FileAws>,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<AwsConfig>> {
    let env = |n: &str| {
        env(n)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let named_profile = env("AWS_PROFILE").or_else(|| file.and_then(|f| f.profile.clone()));
    let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Some(AwsCredentials {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: env("AWS_SESSION_TOKEN").map(Secret::new),
            source: "environment".to_string(),
        }),
        (Some(_), None) => bail!("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
        (None, Some(_)) => bail!("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"),
        (None, None) => {
            let profile = named_profile.clone().unwrap_or_else(|| "default".into());
            let home = env("HOME");
            let path = |var: &str, leaf: &str| {
                env(var).or_else(|| home.as_ref().map(|h| format!("{h}/.aws/{leaf}")))
            };
            let creds_file = path("AWS_SHARED_CREDENTIALS_FILE", "credentials")
                .and_then(|p| read(&p))
                .unwrap_or_default();
            let config_file = path("AWS_CONFIG_FILE", "config")
                .and_then(|p| read(&p))
                .unwrap_or_default();
            let config_section = if profile == "default" {
                "default".to_string()
            } else {
                format!("profile {profile}")
            };
            let found = [
                (ini_section(&creds_file, &profile), "credentials file"),
                (ini_section(&config_file, &config_section), "config file"),
            ]
            .into_iter()
            .find_map(|(s, from)| {
                let s = s?;
                let id = s.get("aws_access_key_id")?.clone();
                let secret = s.get("aws_secret_access_key")?.clone();
                Some(AwsCredentials {
                    access_key_id: id,
                    secret_access_key: Secret::new(secret),
                    session_token: s.get("aws_session_token").cloned().map(Secret::new),
                    source: format!("profile {profile} ({from})"),
                })
            });
            match (found, &named_profile) {
                (Some(c), _) => Some(c),
                (None, Some(p)) => bail!(
                    "the AWS profile {p:?} has no aws_access_key_id and aws_secret_access_key in the shared credentials or config file"
                ),
                (None, None) => None,
            }
        }
    };
    let Some(credentials) = credentials else {
        return Ok(None);
    };
    let regions: Vec<String> = match env("PARASOL_AWS_REGIONS") {
        Some(v) => v.split(',').map(|r| r.trim().to_string()).collect(),
        None => file
            .and_then(|f| f.regions.clone())
            .unwrap_or_else(|| DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect()),
    };
    let regions: Vec<String> = regions.into_iter().filter(|r| !r.is_empty()).collect();
    if regions.is_empty() {
        bail!("[providers.aws] regions (or PARASOL_AWS_REGIONS) names no region");
    }
    if let Some(bad) = regions.iter().find(|r| !valid_region(r)) {
        bail!("{bad:?} is not an AWS region name (like us-east-1)");
    }
    let endpoint = match env("AWS_ENDPOINT_URL_EC2").or_else(|| env("AWS_ENDPOINT_URL")) {
        Some(u) => {
            let u = u.trim_end_matches('/').to_string();
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                bail!("AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL must be an http(s) URL, got {u:?}");
            }
            Some(u)
        }
        None => None,
    };
    Ok(Some(AwsConfig {
        credentials,
        regions,
        endpoint,
        amis: file.map(|f| f.amis.clone()).unwrap_or_default(),
    }))
}

fn valid_region(r: &str) -> bool {
    r.split('-').count() >= 3
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The keys of `[section]` of an INI file as AWS writes them (`key = value`,
/// `#` and `;` comments).
fn ini_section(text: &str, section: &str) -> Option<BTreeMap<String, String>> {
    let mut current: Option<bool> = None;
    let mut out: Option<BTreeMap<String, String>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let here = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            current = Some(here);
            if here && out.is_none() {
                out = Some(BTreeMap::new());
            }
            continue;
        }
        if current == Some(true) {
            if let Some((k, v)) = line.split_once('=') {
                out.get_or_insert_with(BTreeMap::new)
                    .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    out
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

    fn files<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        env(pairs)
    }

    #[test]
    fn nothing_found_disables_aws() {
        let c = resolve(None, &env(&[("HOME", "/h")]), &files(&[])).unwrap();
        assert!(c.is_none());
    }

    #[test]
    fn environment_comes_first_then_the_credentials_file_then_the_config_file() {
        let creds = "[default]\naws_access_key_id = FROMCREDS\naws_secret_access_key = s1\n\n[work]\naws_access_key_id=WORK\naws_secret_access_key=s2\naws_session_token = t2\n";
        let config = "[profile cfg]\naws_access_key_id = FROMCONFIG\naws_secret_access_key = s3\n";
        let on_disk = [("/h/.aws/credentials", creds), ("/h/.aws/config", config)];
        let fs = files(&on_disk);
        let c = resolve(
            None,
            &env(&[
                ("HOME", "/h"),
                ("AWS_ACCESS_KEY_ID", "ENV"),
                ("AWS_SECRET_ACCESS_KEY", "s0"),
            ]),
            &fs,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.credentials.access_key_id, "ENV");
        assert_eq!(c.credentials.source, "environment");
        assert_eq!(c.regions, DEFAULT_REGIONS);
        assert_eq!(
            c.endpoint_for("eu-west-1"),
            "https://ec2.eu-west-1.amazonaws.com"
        );

        let c = resolve(None, &env(&[("HOME", "/h")]), &fs)
            .unwrap()
            .unwrap();
        assert_eq!(c.credentials.access_key_id, "FROMCREDS");

        let c = resolve(None, &env(&[("HOME", "/h"), ("AWS_PROFILE", "work")]), &fs)
            .unwrap()
            .unwrap();
        assert_eq!(c.credentials.access_key_id, "WORK");
        assert_eq!(c.credentials.session_token.unwrap().expose(), "t2");

        let file = FileAws {
            profile: Some("cfg".into()),
            regions: Some(vec!["us-west-2".into()]),
            ..FileAws::default()
        };
        let c = resolve(Some(&file), &env(&[("HOME", "/h")]), &fs)
            .unwrap()
            .unwrap();
        assert_eq!(c.credentials.access_key_id, "FROMCONFIG");
        assert_eq!(c.regions, ["us-west-2"]);
        assert!(!format!("{c:?}").contains("s3"));
        assert!(!format!("{c:?}").contains("FROMCONFIG"));
    }

    #[test]
    fn a_named_profile_that_is_missing_and_bad_settings_are_errors() {
        let e = resolve(
            None,
            &env(&[("HOME", "/h"), ("AWS_PROFILE", "nope")]),
            &files(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let e = resolve(None, &env(&[("AWS_ACCESS_KEY_ID", "a")]), &files(&[])).unwrap_err();
        assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
        let base = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            v
        };
        let e = resolve(
            None,
            &env(&with(("PARASOL_AWS_REGIONS", "mars"))),
            &files(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("mars"), "{e}");
        let e = resolve(
            None,
            &env(&with(("AWS_ENDPOINT_URL", "localhost:5"))),
            &files(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("AWS_ENDPOINT_URL"), "{e}");
        let v = with(("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:5/"));
        let mut v2 = v.clone();
        v2.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:6"));
        let c = resolve(None, &env(&v2), &files(&[])).unwrap().unwrap();
        assert_eq!(c.endpoint_for("us-east-1"), "http://127.0.0.1:5");
    }
}
