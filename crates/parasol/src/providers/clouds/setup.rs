//! Which real clouds are enabled, from the environment and the `[providers]`
//! table of the config file, and their registration in [`Providers`].
//!
//! A cloud is enabled by its credentials; its URL defaults to the public
//! API, so nothing but an explicit override ever points an adapter
//! elsewhere (tests point them at fake servers this way).

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::aws::config::{self as aws_config, AwsConfig, FileAws};
use super::aws::{self, Aws};
use super::azure::{self, Azure, AzureAuth, AzureConfig};
use super::digitalocean::{self, DigitalOcean, DigitalOceanConfig};
use super::gcp::auth::{self as gcp_auth, FileGcp, GcpConfig};
use super::gcp::{self, Gcp};
use super::hyperstack::{self, Hyperstack, HyperstackConfig};
use super::lambda::{self, Lambda, LambdaConfig};
use super::runpod::{self, Runpod, RunpodConfig};
use super::vastai::{self, Vastai, VastaiConfig};
use super::verda::{self, Verda, VerdaConfig};
use super::Secret;
use crate::providers::{Provider, Providers};

/// Default period of the orphan sweep.
pub const DEFAULT_SWEEP: Duration = Duration::from_secs(300);

/// `[providers]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProviders {
    /// Seconds between orphan sweeps.
    pub sweep_seconds: Option<u64>,
    pub lambda: Option<FileLambda>,
    pub verda: Option<FileVerda>,
    pub hyperstack: Option<FileHyperstack>,
    pub runpod: Option<FileRunpod>,
    pub vastai: Option<FileVastai>,
    pub digitalocean: Option<FileDigitalOcean>,
    pub aws: Option<FileAws>,
    pub gcp: Option<FileGcp>,
    pub azure: Option<FileAzure>,
}

/// `[providers.lambda]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLambda {
    pub api_key: Option<Secret>,
    pub url: Option<String>,
    /// Least milliseconds between launch requests (Lambda documents 12 s).
    pub launch_interval_ms: Option<u64>,
}

/// `[providers.verda]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileVerda {
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub url: Option<String>,
}

/// `[providers.hyperstack]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHyperstack {
    pub api_key: Option<Secret>,
    pub url: Option<String>,
}

/// `[providers.runpod]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRunpod {
    pub api_key: Option<Secret>,
    pub url: Option<String>,
    pub graphql_url: Option<String>,
    pub catalog_url: Option<String>,
}

/// `[providers.vastai]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileVastai {
    pub api_key: Option<Secret>,
    pub url: Option<String>,
}

/// `[providers.digitalocean]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigitalOcean {
    pub token: Option<Secret>,
    pub url: Option<String>,
}

/// `[providers.azure]`: a service principal and where to reach Azure.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAzure {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub subscription_id: Option<String>,
    pub locations: Option<Vec<String>>,
    pub url: Option<String>,
    pub authority_host: Option<String>,
    pub prices_url: Option<String>,
    /// `publisher:offer:sku:version`.
    pub image: Option<String>,
    /// Tokens from the VM's managed identity instead of a client secret.
    pub managed_identity: Option<bool>,
    pub imds_url: Option<String>,
}

/// The real clouds to serve.
#[derive(Debug, Clone)]
pub struct CloudSettings {
    pub lambda: Option<LambdaConfig>,
    pub verda: Option<VerdaConfig>,
    pub hyperstack: Option<HyperstackConfig>,
    pub runpod: Option<RunpodConfig>,
    pub vastai: Option<VastaiConfig>,
    pub digitalocean: Option<DigitalOceanConfig>,
    pub aws: Option<AwsConfig>,
    pub gcp: Option<GcpConfig>,
    pub azure: Option<AzureConfig>,
    /// How often machines carrying Parasol's marker are checked against the
    /// store.
    pub sweep_interval: Duration,
}

impl CloudSettings {
    /// Whether any real cloud is enabled.
    pub fn any(&self) -> bool {
        self.lambda.is_some()
            || self.verda.is_some()
            || self.hyperstack.is_some()
            || self.runpod.is_some()
            || self.vastai.is_some()
            || self.digitalocean.is_some()
            || self.aws.is_some()
            || self.gcp.is_some()
            || self.azure.is_some()
    }

    /// Registers every enabled cloud, after whatever `providers` holds, so
    /// a real cloud serves its name even when the sim also simulates it
    /// (the sim then stops offering that name, and the log says so).
    /// `deployment_id` goes into the marker of every machine, so that the
    /// orphan sweep touches only this deployment's machines.
    pub fn register(&self, providers: &mut Providers, deployment_id: &str) {
        if let Some(c) = &self.lambda {
            enable(
                providers,
                Arc::new(Lambda::new(c.clone(), deployment_id)),
                lambda::CLOUD,
                &c.url,
            );
        }
        if let Some(c) = &self.verda {
            enable(
                providers,
                Arc::new(Verda::new(c.clone(), deployment_id)),
                verda::CLOUD,
                &c.url,
            );
        }
        if let Some(c) = &self.hyperstack {
            enable(
                providers,
                Arc::new(Hyperstack::new(c.clone(), deployment_id)),
                hyperstack::CLOUD,
                &c.url,
            );
        }
        if let Some(c) = &self.runpod {
            enable(
                providers,
                Arc::new(Runpod::new(c.clone(), deployment_id)),
                runpod::CLOUD,
                &c.url,
            );
        }
        if let Some(c) = &self.vastai {
            enable(
                providers,
                Arc::new(Vastai::new(c.clone(), deployment_id)),
                vastai::CLOUD,
                &c.url,
            );
        }
        if let Some(c) = &self.digitalocean {
            enable(
                providers,
                Arc::new(DigitalOcean::new(c.clone(), deployment_id)),
                digitalocean::CLOUD,
                &c.url,
            );
        }
        if let Some(c) = &self.aws {
            tracing::info!(credentials = %c.credentials.source, regions = %c.regions.join(","), "aws credentials found");
            enable(
                providers,
                Arc::new(Aws::new(c.clone(), deployment_id.to_string())),
                aws::CLOUD,
                &c.endpoint_display(),
            );
        }
        if let Some(c) = &self.gcp {
            tracing::info!(credentials = %c.credentials.source(), project = %c.project, regions = %c.regions.join(","), "gcp credentials found");
            enable(
                providers,
                Arc::new(Gcp::new(c.clone(), deployment_id)),
                gcp::CLOUD,
                &c.url,
            );
        }
        if let Some(c) = &self.azure {
            enable(
                providers,
                Arc::new(Azure::new(c.clone(), deployment_id)),
                azure::CLOUD,
                &c.url,
            );
        }
    }
}

/// Registers one real cloud's adapter for its cloud name.
fn enable(providers: &mut Providers, adapter: Arc<dyn Provider>, cloud: &str, url: &str) {
    let name = adapter.name();
    for (cloud, previous) in providers.add(adapter, &[cloud.to_string()]) {
        tracing::warn!(
            cloud,
            provider = name,
            displaced = previous,
            "{cloud} is served by the real {name} adapter; the {previous} provider no longer offers it"
        );
    }
    tracing::info!(cloud, provider = name, url, "real cloud enabled");
}

/// Resolves the clouds from `env` (the process environment in production)
/// over the file's `[providers]`.
pub fn resolve(
    file: &FileProviders,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<CloudSettings> {
    resolve_with_files(file, env, |p| std::fs::read_to_string(p).ok())
}

/// [`resolve`], reading AWS's shared files with `read`.
pub fn resolve_with_files(
    file: &FileProviders,
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<CloudSettings> {
    let aws = aws_config::resolve(file.aws.as_ref(), &env, &read)?;
    let gcp = gcp_auth::resolve(file.gcp.as_ref(), &env, &read)?;
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let secret = |name: &str, file: Option<&Secret>| {
        env(name)
            .map(|v| Secret::new(v.trim()))
            .or_else(|| file.cloned())
            .filter(|s| !s.expose().trim().is_empty())
    };
    let url = |name: &str, file: Option<&String>, default: &str| -> anyhow::Result<String> {
        let u = env(name)
            .or_else(|| file.cloned())
            .unwrap_or_else(|| default.to_string());
        let u = u.trim().trim_end_matches('/').to_string();
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            bail!("{name} must be an http(s) URL, got {u:?}");
        }
        Ok(u)
    };

    let fl = file.lambda.as_ref();
    let lambda = match secret(
        "PARASOL_LAMBDA_API_KEY",
        fl.and_then(|f| f.api_key.as_ref()),
    ) {
        Some(api_key) => {
            let ms = match env("PARASOL_LAMBDA_LAUNCH_INTERVAL_MS") {
                Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
                    anyhow::anyhow!("PARASOL_LAMBDA_LAUNCH_INTERVAL_MS must be a whole number of milliseconds, got {v:?}")
                })?),
                None => fl.and_then(|f| f.launch_interval_ms),
            };
            Some(LambdaConfig {
                api_key,
                url: url(
                    "PARASOL_LAMBDA_URL",
                    fl.and_then(|f| f.url.as_ref()),
                    lambda::DEFAULT_URL,
                )?,
                launch_interval: ms
                    .map(Duration::from_millis)
                    .unwrap_or(lambda::DEFAULT_LAUNCH_INTERVAL),
            })
        }
        None => None,
    };

    let fv = file.verda.as_ref();
    let client_id = env("PARASOL_VERDA_CLIENT_ID")
        .or_else(|| fv.and_then(|f| f.client_id.clone()))
        .filter(|s| !s.trim().is_empty());
    let client_secret = secret(
        "PARASOL_VERDA_CLIENT_SECRET",
        fv.and_then(|f| f.client_secret.as_ref()),
    );
    let verda = match (client_id, client_secret) {
        (Some(client_id), Some(client_secret)) => Some(VerdaConfig {
            client_id: client_id.trim().to_string(),
            client_secret,
            url: url(
                "PARASOL_VERDA_URL",
                fv.and_then(|f| f.url.as_ref()),
                verda::DEFAULT_URL,
            )?,
        }),
        (None, None) => None,
        (Some(_), None) => {
            bail!("Verda needs a client secret too: set PARASOL_VERDA_CLIENT_SECRET or [providers.verda] client_secret")
        }
        (None, Some(_)) => {
            bail!("Verda needs a client id too: set PARASOL_VERDA_CLIENT_ID or [providers.verda] client_id")
        }
    };

    let fh = file.hyperstack.as_ref();
    let hyperstack = match secret(
        "PARASOL_HYPERSTACK_API_KEY",
        fh.and_then(|f| f.api_key.as_ref()),
    ) {
        Some(api_key) => Some(HyperstackConfig {
            api_key,
            url: url(
                "PARASOL_HYPERSTACK_URL",
                fh.and_then(|f| f.url.as_ref()),
                hyperstack::DEFAULT_URL,
            )?,
        }),
        None => None,
    };

    let fr = file.runpod.as_ref();
    let runpod = match secret(
        "PARASOL_RUNPOD_API_KEY",
        fr.and_then(|f| f.api_key.as_ref()),
    ) {
        Some(api_key) => Some(RunpodConfig {
            api_key,
            url: url(
                "PARASOL_RUNPOD_URL",
                fr.and_then(|f| f.url.as_ref()),
                runpod::DEFAULT_URL,
            )?,
            graphql_url: url(
                "PARASOL_RUNPOD_GRAPHQL_URL",
                fr.and_then(|f| f.graphql_url.as_ref()),
                runpod::DEFAULT_GRAPHQL_URL,
            )?,
            catalog_url: url(
                "PARASOL_RUNPOD_CATALOG_URL",
                fr.and_then(|f| f.catalog_url.as_ref()),
                runpod::DEFAULT_CATALOG_URL,
            )?,
        }),
        None => None,
    };

    let fva = file.vastai.as_ref();
    let vastai = match secret(
        "PARASOL_VASTAI_API_KEY",
        fva.and_then(|f| f.api_key.as_ref()),
    ) {
        Some(api_key) => Some(VastaiConfig {
            api_key,
            url: url(
                "PARASOL_VASTAI_URL",
                fva.and_then(|f| f.url.as_ref()),
                vastai::DEFAULT_URL,
            )?,
        }),
        None => None,
    };

    let fd = file.digitalocean.as_ref();
    let digitalocean = match secret(
        "PARASOL_DIGITALOCEAN_TOKEN",
        fd.and_then(|f| f.token.as_ref()),
    ) {
        Some(token) => Some(DigitalOceanConfig {
            token,
            url: url(
                "PARASOL_DIGITALOCEAN_URL",
                fd.and_then(|f| f.url.as_ref()),
                digitalocean::DEFAULT_URL,
            )?,
        }),
        None => None,
    };

    let azure = resolve_azure(file.azure.as_ref(), &env, &url)?;

    let sweep_interval = match env("PARASOL_ORPHAN_SWEEP_SECONDS") {
        Some(v) => Duration::from_secs(v.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!(
                "PARASOL_ORPHAN_SWEEP_SECONDS must be a whole number of seconds, got {v:?}"
            )
        })?),
        None => file
            .sweep_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_SWEEP),
    }
    .max(Duration::from_secs(1));

    Ok(CloudSettings {
        lambda,
        verda,
        hyperstack,
        runpod,
        vastai,
        digitalocean,
        aws,
        gcp,
        azure,
        sweep_interval,
    })
}

/// Azure, from the variables azure-identity reads (`AZURE_TENANT_ID`,
/// `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_AUTHORITY_HOST`) and
/// `AZURE_SUBSCRIPTION_ID`, over `[providers.azure]`. Enabled by a client
/// secret, the rest of the service principal coming with it; or, on an
/// Azure VM, by `PARASOL_AZURE_MANAGED_IDENTITY=true` (or
/// `managed_identity = true`), with `AZURE_CLIENT_ID` naming a
/// user-assigned identity where there is one. Where the platform sets
/// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` (App Service, Functions,
/// Container Apps), the managed identity's token comes from there, as
/// azure-identity's ManagedIdentityCredential prefers it, else from the
/// VM's instance metadata service.
fn resolve_azure(
    file: Option<&FileAzure>,
    env: &impl Fn(&str) -> Option<String>,
    url: &impl Fn(&str, Option<&String>, &str) -> anyhow::Result<String>,
) -> anyhow::Result<Option<AzureConfig>> {
    let secret = env("AZURE_CLIENT_SECRET")
        .map(|v| Secret::new(v.trim()))
        .or_else(|| file.and_then(|f| f.client_secret.clone()))
        .filter(|s| !s.expose().trim().is_empty());
    let managed = match env("PARASOL_AZURE_MANAGED_IDENTITY") {
        Some(v) => match v.trim() {
            "1" | "true" => true,
            "0" | "false" => false,
            other => bail!("PARASOL_AZURE_MANAGED_IDENTITY must be true or false, got {other:?}"),
        },
        None => file.and_then(|f| f.managed_identity).unwrap_or(false),
    };
    let field = |var: &str, key: &str, get: fn(&FileAzure) -> Option<&String>| {
        env(var)
            .or_else(|| file.and_then(get).cloned())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "Azure needs {var} (or [providers.azure] {key}) beside the client secret"
                )
            })
    };
    let identity_client = || {
        env("AZURE_CLIENT_ID")
            .or_else(|| file.and_then(|f| f.client_id.clone()))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let app_header = env("IDENTITY_HEADER")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let app_endpoint = env("IDENTITY_ENDPOINT").filter(|v| !v.trim().is_empty());
    let auth = match (secret, managed) {
        (_, true) if app_endpoint.is_some() && app_header.is_some() => {
            AzureAuth::AppServiceIdentity {
                endpoint: url("IDENTITY_ENDPOINT", None, "")?,
                header: Secret::new(app_header.unwrap_or_default()),
                client_id: identity_client(),
            }
        }
        (_, true) => AzureAuth::ManagedIdentity {
            endpoint: url(
                "PARASOL_AZURE_IMDS_URL",
                file.and_then(|f| f.imds_url.as_ref()),
                azure::DEFAULT_IMDS_URL,
            )?,
            client_id: identity_client(),
        },
        (Some(client_secret), false) => AzureAuth::ClientSecret {
            tenant_id: field("AZURE_TENANT_ID", "tenant_id", |f| f.tenant_id.as_ref())?,
            client_id: field("AZURE_CLIENT_ID", "client_id", |f| f.client_id.as_ref())?,
            client_secret,
        },
        (None, false) => return Ok(None),
    };
    let locations: Vec<String> = match env("PARASOL_AZURE_LOCATIONS") {
        Some(v) => v.split(',').map(|l| l.trim().to_string()).collect(),
        None => file.and_then(|f| f.locations.clone()).unwrap_or_else(|| {
            azure::DEFAULT_LOCATIONS
                .iter()
                .map(|l| l.to_string())
                .collect()
        }),
    };
    let locations: Vec<String> = locations.into_iter().filter(|l| !l.is_empty()).collect();
    if locations.is_empty() {
        bail!("PARASOL_AZURE_LOCATIONS names no location");
    }
    Ok(Some(AzureConfig {
        auth,
        subscription_id: field("AZURE_SUBSCRIPTION_ID", "subscription_id", |f| {
            f.subscription_id.as_ref()
        })?,
        locations,
        url: url(
            "PARASOL_AZURE_URL",
            file.and_then(|f| f.url.as_ref()),
            azure::DEFAULT_URL,
        )?,
        authority_host: url(
            "AZURE_AUTHORITY_HOST",
            file.and_then(|f| f.authority_host.as_ref()),
            azure::DEFAULT_AUTHORITY_HOST,
        )?,
        prices_url: url(
            "PARASOL_AZURE_PRICES_URL",
            file.and_then(|f| f.prices_url.as_ref()),
            azure::DEFAULT_PRICES_URL,
        )?,
        image: env("PARASOL_AZURE_IMAGE")
            .or_else(|| file.and_then(|f| f.image.clone()))
            .unwrap_or_else(AzureConfig::default_image),
    }))
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
    fn nothing_configured_enables_no_cloud() {
        let c = resolve_with_files(&FileProviders::default(), env(&[]), |_| None).unwrap();
        assert!(!c.any());
    }

    #[test]
    fn environment_wins_over_the_file_and_urls_default_to_the_public_apis() {
        let file: FileProviders = toml::from_str(
            "[lambda]\napi_key = \"from-file\"\n[hyperstack]\napi_key = \"hs\"\nurl = \"http://127.0.0.1:9/v1/\"\n",
        )
        .unwrap();
        let c = resolve(&file, env(&[("PARASOL_LAMBDA_API_KEY", "from-env")])).unwrap();
        let l = c.lambda.unwrap();
        assert_eq!(l.api_key.expose(), "from-env");
        assert_eq!(l.url, lambda::DEFAULT_URL);
        assert_eq!(l.launch_interval, lambda::DEFAULT_LAUNCH_INTERVAL);
        assert_eq!(c.hyperstack.unwrap().url, "http://127.0.0.1:9/v1");
        assert!(c.verda.is_none());
    }

    #[test]
    fn half_a_verda_credential_is_an_error_and_secrets_never_print() {
        let e = resolve(
            &FileProviders::default(),
            env(&[("PARASOL_VERDA_CLIENT_ID", "id")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("PARASOL_VERDA_CLIENT_SECRET"), "{e}");
        let c = resolve(
            &FileProviders::default(),
            env(&[
                ("PARASOL_VERDA_CLIENT_ID", "id"),
                ("PARASOL_VERDA_CLIENT_SECRET", "s3cr3t-value"),
            ]),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn runpod_vastai_and_digitalocean_are_enabled_by_their_credentials() {
        let file: FileProviders = toml::from_str("[digitalocean]\ntoken = \"do-file\"\n").unwrap();
        let c = resolve(
            &file,
            env(&[
                ("PARASOL_RUNPOD_API_KEY", "rp"),
                ("PARASOL_RUNPOD_URL", "http://127.0.0.1:9/v1"),
                ("PARASOL_VASTAI_API_KEY", "va"),
            ]),
        )
        .unwrap();
        let r = c.runpod.unwrap();
        assert_eq!(r.url, "http://127.0.0.1:9/v1");
        assert_eq!(r.graphql_url, runpod::DEFAULT_GRAPHQL_URL);
        assert_eq!(r.catalog_url, runpod::DEFAULT_CATALOG_URL);
        assert_eq!(c.vastai.unwrap().url, vastai::DEFAULT_URL);
        let d = c.digitalocean.unwrap();
        assert_eq!(d.token.expose(), "do-file");
        assert_eq!(d.url, digitalocean::DEFAULT_URL);
    }

    #[test]
    fn gcp_is_enabled_by_its_key_file_from_the_providers_table() {
        let file: FileProviders =
            toml::from_str("[gcp]\ncredentials_file = \"/k.json\"\nregions = [\"us-east1\"]\n")
                .unwrap();
        let key = r#"{"type": "service_account", "project_id": "p9", "private_key_id": "k",
            "private_key": "not a key", "client_email": "a@p9.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token"}"#;
        let e = resolve_with_files(&file, env(&[]), |p| (p == "/k.json").then(|| key.into()))
            .unwrap_err();
        assert!(format!("{e:#}").contains("private_key"), "{e:#}");
        assert!(!format!("{e:#}").contains("not a key"), "{e:#}");
        assert!(toml::from_str::<FileProviders>("[gcp]\nkey = \"x\"\n").is_err());
    }

    #[test]
    fn azure_is_enabled_by_a_service_principal_and_its_secret_never_prints() {
        let file: FileProviders =
            toml::from_str("[azure]\nsubscription_id = \"sub-file\"\nlocations = [\"eastus\"]\n")
                .unwrap();
        let e = resolve(&file, env(&[("AZURE_CLIENT_SECRET", "s3cr3t-value")])).unwrap_err();
        assert!(e.to_string().contains("AZURE_TENANT_ID"), "{e}");
        let c = resolve(
            &file,
            env(&[
                ("AZURE_CLIENT_SECRET", "s3cr3t-value"),
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9/"),
            ]),
        )
        .unwrap();
        let a = c.azure.clone().unwrap();
        assert_eq!(a.subscription_id, "sub-file");
        assert_eq!(a.locations, ["eastus"]);
        assert_eq!(a.url, azure::DEFAULT_URL);
        assert_eq!(a.prices_url, azure::DEFAULT_PRICES_URL);
        assert_eq!(a.authority_host, "http://127.0.0.1:9");
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        let none = resolve(&FileProviders::default(), env(&[("AZURE_TENANT_ID", "t")])).unwrap();
        assert!(none.azure.is_none(), "no secret, no Azure");
        let mi = resolve(
            &FileProviders::default(),
            env(&[
                ("PARASOL_AZURE_MANAGED_IDENTITY", "true"),
                ("AZURE_SUBSCRIPTION_ID", "s"),
            ]),
        )
        .unwrap()
        .azure
        .unwrap();
        assert!(matches!(
            mi.auth,
            AzureAuth::ManagedIdentity { ref endpoint, client_id: None } if endpoint == azure::DEFAULT_IMDS_URL
        ));
        // In App Service, the platform's endpoint and header; the header
        // never printed.
        let app = resolve(
            &FileProviders::default(),
            env(&[
                ("PARASOL_AZURE_MANAGED_IDENTITY", "true"),
                ("AZURE_SUBSCRIPTION_ID", "s"),
                ("IDENTITY_ENDPOINT", "http://localhost:42356/msi/token"),
                ("IDENTITY_HEADER", "853b9a84-hdr"),
                ("AZURE_CLIENT_ID", "uai"),
            ]),
        )
        .unwrap()
        .azure
        .unwrap();
        assert!(matches!(
            app.auth,
            AzureAuth::AppServiceIdentity { ref endpoint, ref header, client_id: Some(ref c) }
                if endpoint == "http://localhost:42356/msi/token" && header.expose() == "853b9a84-hdr" && c == "uai"
        ));
        assert!(!format!("{app:?}").contains("853b9a84-hdr"));
        // Only the header, not the endpoint: the VM's metadata service.
        let half = resolve(
            &FileProviders::default(),
            env(&[
                ("PARASOL_AZURE_MANAGED_IDENTITY", "true"),
                ("AZURE_SUBSCRIPTION_ID", "s"),
                ("IDENTITY_HEADER", "h"),
            ]),
        )
        .unwrap()
        .azure
        .unwrap();
        assert!(matches!(half.auth, AzureAuth::ManagedIdentity { .. }));
    }

    #[test]
    fn a_url_without_a_scheme_is_refused() {
        let e = resolve(
            &FileProviders::default(),
            env(&[
                ("PARASOL_HYPERSTACK_API_KEY", "k"),
                ("PARASOL_HYPERSTACK_URL", "localhost:1"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("PARASOL_HYPERSTACK_URL"), "{e}");
    }
}
