//! Where the CLI finds its server and key: `parasol configure` writes them
//! to `<config dir>/parasol/config.toml` (mode 0600, since it holds a
//! key), and `PARASOL_URL` / `PARASOL_API_KEY` override the file, so CI
//! can run the CLI without one.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use parasol_api::AccountInfo;
use serde::{Deserialize, Serialize};

use super::client::{normalize_url, Api, CliError};
use super::output::{print_raw, Format};

/// Environment variable overriding the configured server URL.
pub const URL_ENV: &str = "PARASOL_URL";
/// Environment variable overriding the configured API key.
pub const KEY_ENV: &str = "PARASOL_API_KEY";

/// The file `configure` writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    pub url: Option<String>,
    pub api_key: Option<String>,
}

/// A resolved server and key, with where each came from.
#[derive(Debug, Clone)]
pub struct Profile {
    pub url: String,
    pub api_key: String,
    pub url_source: String,
    pub key_source: String,
}

/// The config file's path: `$XDG_CONFIG_HOME/parasol/config.toml` on Linux.
pub fn config_path() -> Result<PathBuf, CliError> {
    dirs::config_dir()
        .map(|d| d.join("parasol").join("config.toml"))
        .ok_or_else(|| {
            CliError::new(
                "cannot find a config directory; set HOME, or PARASOL_URL and PARASOL_API_KEY",
            )
        })
}

fn read_file(path: &std::path::Path) -> Result<ConfigFile, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            CliError::new(format!(
                "{} is not a valid config file ({}); run `parasol configure` to rewrite it",
                path.display(),
                e.message()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(CliError::new(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Profile {
    /// The environment over the config file.
    pub fn load() -> Result<Profile, CliError> {
        let path = config_path()?;
        let file = read_file(&path)?;
        let from_file = format!("from {}", path.display());
        let (url, url_source) = match (env_value(URL_ENV), file.url) {
            (Some(u), _) => (u, format!("from {URL_ENV}")),
            (None, Some(u)) => (u, from_file.clone()),
            (None, None) => {
                return Err(CliError::new(format!(
                    "no server configured; run `parasol configure` or set {URL_ENV}"
                )))
            }
        };
        let (api_key, key_source) = match (env_value(KEY_ENV), file.api_key) {
            (Some(k), _) => (k, format!("from {KEY_ENV}")),
            (None, Some(k)) => (k, from_file),
            (None, None) => {
                return Err(CliError::new(format!(
                    "no API key configured; run `parasol configure` or set {KEY_ENV}"
                )))
            }
        };
        Ok(Profile {
            url,
            api_key,
            url_source,
            key_source,
        })
    }
}

/// Arguments of `parasol configure`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigureArgs {
    /// Server URL, such as http://127.0.0.1:8080 (prompted for when omitted
    /// on a terminal).
    #[arg(long)]
    pub url: Option<String>,
    /// API key (prompted for when omitted on a terminal).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Save without checking the key against the server.
    #[arg(long)]
    pub no_verify: bool,
}

/// `parasol configure`: asks for what is missing, checks the key against
/// the server (unless told not to), and saves both.
pub async fn configure(args: ConfigureArgs) -> Result<(), CliError> {
    let path = config_path()?;
    let current = read_file(&path)?;
    let interactive = std::io::stdin().is_terminal();
    let url = match args.url {
        Some(u) => u,
        None if interactive => prompt("Server URL", current.url.as_deref(), false)?,
        None => {
            return Err(CliError::new(
                "--url is required when stdin is not a terminal",
            ))
        }
    };
    let url = normalize_url(&url)?;
    let api_key = match args.api_key {
        Some(k) => k,
        None if interactive => prompt("API key", None, true)?,
        None => {
            return Err(CliError::new(
                "--api-key is required when stdin is not a terminal",
            ))
        }
    };
    let api_key = api_key.trim().to_string();
    if api_key.is_empty() {
        return Err(CliError::new("the API key is empty"));
    }
    let who = if args.no_verify {
        None
    } else {
        let api = Api::new(Profile {
            url: url.clone(),
            api_key: api_key.clone(),
            url_source: String::new(),
            key_source: String::new(),
        })?;
        Some(api.get("/account").await?.parse::<AccountInfo>()?)
    };
    save(
        &path,
        &ConfigFile {
            url: Some(url.clone()),
            api_key: Some(api_key),
        },
    )?;
    match who {
        Some(a) => println!(
            "Saved {} (account {}{}) to {}",
            url,
            a.name,
            if a.is_admin { ", admin" } else { "" },
            path.display()
        ),
        None => println!("Saved {} to {} (not verified)", url, path.display()),
    }
    Ok(())
}

/// Writes the config file readable by its owner only, including when it
/// already existed with wider permissions.
pub fn save(path: &std::path::Path, file: &ConfigFile) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::new(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = toml::to_string(file)
        .map_err(|e| CliError::new(format!("cannot encode the config file: {e}")))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        }
    }
    let mut f = opts.open(path).map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)
}

/// Reads one line from the terminal; with `secret`, without echo.
fn prompt(label: &str, default: Option<&str>, secret: bool) -> Result<String, CliError> {
    match default {
        Some(d) => eprint!("{label} [{d}]: "),
        None => eprint!("{label}: "),
    }
    std::io::stderr().flush().ok();
    // `stty` rather than a terminal crate: one call each way is all a
    // hidden prompt needs.
    let hide = secret && set_echo(false);
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if hide {
        set_echo(true);
        eprintln!();
    }
    read.map_err(|e| CliError::new(format!("cannot read the answer: {e}")))?;
    let line = line.trim().to_string();
    match (line.is_empty(), default) {
        (true, Some(d)) => Ok(d.to_string()),
        (true, None) => Err(CliError::new(format!("no {} given", label.to_lowercase()))),
        (false, _) => Ok(line),
    }
}

fn set_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// `parasol whoami`.
pub async fn whoami(api: &Api, format: Format) -> Result<(), CliError> {
    let answer = api.get("/account").await?;
    if format == Format::Json {
        print_raw(&answer);
        return Ok(());
    }
    let a: AccountInfo = answer.parse()?;
    let p = &api.profile;
    println!("server   {} ({})", api.base, p.url_source);
    println!(
        "account  {} ({}){}",
        a.name,
        a.id,
        if a.is_admin { ", admin" } else { "" }
    );
    println!("key      {} ({})", mask(&p.api_key), p.key_source);
    Ok(())
}

/// Enough of a key to tell two apart, not enough to use it.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "****".to_string();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_keys_keep_only_their_ends() {
        assert_eq!(mask("psl_abcdefghijklmnopqrstuvwxyz012345"), "psl_…2345");
        assert_eq!(mask("short"), "****");
    }
}
