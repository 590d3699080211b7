//! `parasol keys ...`: the account's API keys (list, create, revoke).

use chrono::{DateTime, SecondsFormat, Utc};
use parasol_api::{ApiKeysResponse, Confirmation, CreateApiKeyRequest, CreateApiKeyResponse, Role};

use super::client::{Api, CliError};
use super::output::{print_raw, Format, Table};
use super::sshkeys::seg;

/// `parasol keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// List the account's API keys, revoked ones included (never the keys).
    List,
    /// Make a new API key; it is printed this once only.
    Create {
        /// What the key is for (`ci`, `laptop`).
        name: String,
        /// What the key may do: viewer (read-only), member or owner.
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// A personal key of yours (call with one of your personal keys):
        /// it ends with your membership.
        #[arg(long)]
        personal: bool,
    },
    /// Revoke a key: it is refused from the next request on (the last live
    /// key cannot be revoked).
    Revoke {
        /// Key id (the ID column of `keys list`).
        id: String,
    },
}

pub(super) fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?} is not a role; use viewer, member or owner"))
}

pub(super) fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

/// Runs one `keys` subcommand.
pub async fn run(api: &Api, format: Format, command: KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::List => {
            let answer = api.get("/account/keys").await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let list: ApiKeysResponse = answer.parse()?;
            let mut t = Table::new(&["ID", "NAME", "ROLE", "STATUS", "CREATED", "LAST USED"]);
            for k in &list.keys {
                let status = match k.revoked_at {
                    Some(at) => format!("revoked {}", when(Some(at))),
                    None => "live".into(),
                };
                t.row(vec![
                    k.id.to_string().into(),
                    k.name.clone().into(),
                    k.role.to_string().into(),
                    status.into(),
                    when(Some(k.created_at)).into(),
                    when(k.last_used_at).into(),
                ]);
            }
            t.print("No API keys.");
        }
        KeysCommand::Create {
            name,
            role,
            personal,
        } => {
            let path = if personal {
                "/account/keys/personal"
            } else {
                "/account/keys/create"
            };
            let answer = api
                .post(path, Some(&CreateApiKeyRequest { name, role }))
                .await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let made: CreateApiKeyResponse = answer.parse()?;
            println!(
                "Created API key {:?} ({}). The key, shown only this once:",
                made.name, made.id
            );
            println!("{}", made.api_key);
        }
        KeysCommand::Revoke { id } => {
            let answer = api
                .post::<()>(&format!("/account/keys/{}/revoke", seg(&id)), None)
                .await?;
            if format == Format::Json {
                print_raw(&answer);
            } else {
                let c: Confirmation = answer.parse()?;
                println!("API key {} {}.", c.id, c.status);
            }
        }
    }
    Ok(())
}
