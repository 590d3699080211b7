//! The client half of the `parasol` binary: commands that talk to a Parasol
//! server over its HTTP API, in the spirit of Shadeform's `shade` CLI.
//!
//! Every command reads its server and key from [`profile`] (the config
//! file, overridden by `PARASOL_URL` / `PARASOL_API_KEY`), calls the API
//! through [`client`] with the wire types of `parasol-api`, and prints
//! either an aligned table ([`output`]) or, with `-o json`, the API's JSON
//! exactly as received. Every failure is one line on stderr and exit
//! status 1.

pub mod accounts;
pub mod client;
pub mod events;
pub mod instances;
pub mod keys;
pub mod launch;
pub mod mcp;
pub mod members;
pub mod more;
pub mod output;
pub mod profile;
pub mod sshkeys;
pub mod top;
pub mod webhooks;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use client::{Api, CliError};
use output::Format;

/// Options every API command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Output: `table` (aligned, for people) or `json` (the API's JSON,
    /// unchanged, for scripts).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The client commands, flattened into the binary's top level.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Save the server URL and API key for later commands.
    #[command(visible_alias = "login")]
    Configure(profile::ConfigureArgs),
    /// Show which server and account the CLI is using.
    Whoami(Common),
    /// Shop for GPU types, and create, inspect and delete instances.
    Instances {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: instances::InstancesCommand,
    },
    /// The offers a launch by requirements would try, cheapest first.
    Offers {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        requirements: launch::RequirementArgs,
    },
    /// Rent the cheapest instance of any cloud that meets the
    /// requirements, moving on when an offer is out of capacity.
    Launch {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: Box<launch::LaunchArgs>,
    },
    /// Manage the SSH keys put on new instances.
    #[command(name = "ssh-keys")]
    SshKeys {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: sshkeys::SshKeysCommand,
    },
    /// The account's API keys: list, create and revoke them.
    Keys {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// The people of the account (signed in through OpenID Connect) and
    /// their roles: list, invite, change a role, remove.
    Members {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: members::MembersCommand,
    },
    /// Webhook endpoints that receive the account's events, signed.
    Webhooks {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// What happened to the account's resources; `--follow` prints events
    /// live as they happen.
    Events {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: events::EventsArgs,
    },
    /// Multi-node clusters.
    Clusters {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: more::ClustersCommand,
    },
    /// Storage volumes.
    Volumes {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: more::VolumesCommand,
    },
    /// Saved launch settings.
    Templates {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: more::TemplatesCommand,
    },
    /// Open an SSH session to an active instance (by id or name).
    Ssh(instances::SshArgs),
    /// The usage ledger: what each instance cost in a window (this month
    /// by default).
    Usage(accounts::UsageArgs),
    /// Serve the server's MCP tools on stdio, for desktop AI agents: relays
    /// each message to the configured server's /mcp with the configured key.
    Mcp,
}

/// Runs a client command; errors become one line on stderr.
pub async fn run(command: Command) -> ExitCode {
    finish(dispatch(command).await)
}

/// The admin accounts commands that go over HTTP (main.rs decides which
/// `accounts create` runs offline).
#[derive(Debug)]
pub enum AccountsApi {
    List,
    Create {
        name: String,
        admin: bool,
    },
    Update {
        id: String,
        name: Option<String>,
        budget: accounts::BudgetArgs,
    },
    Delete {
        id: String,
    },
}

/// Runs an accounts command against the configured server.
pub async fn run_accounts(format: Format, command: AccountsApi) -> ExitCode {
    let result = async {
        let api = Api::from_profile()?;
        match command {
            AccountsApi::List => accounts::list(&api, format).await,
            AccountsApi::Create { name, admin } => {
                accounts::create(&api, format, &name, admin).await
            }
            AccountsApi::Update { id, name, budget } => {
                accounts::update(&api, format, &id, name, &budget).await
            }
            AccountsApi::Delete { id } => accounts::delete(&api, format, &id).await,
        }
    }
    .await;
    finish(result.map(|()| ExitCode::SUCCESS))
}

/// Whether a server profile (URL and key) is configured.
pub fn has_profile() -> bool {
    profile::Profile::load().is_ok()
}

fn finish(result: Result<ExitCode, CliError>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line, whatever the message embeds (parser errors span
            // several), so scripts can show or grep it.
            let line: Vec<&str> =
                e.0.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
            eprintln!("parasol: {}", line.join(" "));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Configure(args) => profile::configure(args).await.map(|()| ExitCode::SUCCESS),
        Command::Whoami(common) => {
            let api = Api::from_profile()?;
            profile::whoami(&api, common.output)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Instances { common, command } => {
            let api = Api::from_profile()?;
            instances::run(&api, common.output, command).await
        }
        Command::Offers {
            common,
            requirements,
        } => {
            let api = Api::from_profile()?;
            launch::offers(&api, common.output, requirements)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Launch { common, args } => {
            let api = Api::from_profile()?;
            launch::launch(&api, common.output, *args).await
        }
        Command::SshKeys { common, command } => {
            let api = Api::from_profile()?;
            sshkeys::run(&api, common.output, command)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Keys { common, command } => {
            let api = Api::from_profile()?;
            keys::run(&api, common.output, command)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Members { common, command } => {
            let api = Api::from_profile()?;
            members::run(&api, common.output, command)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Webhooks { common, command } => {
            let api = Api::from_profile()?;
            webhooks::run(&api, common.output, command)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Events { common, args } => {
            let api = Api::from_profile()?;
            events::run(&api, common.output, args).await
        }
        Command::Clusters { common, command } => {
            let api = Api::from_profile()?;
            more::clusters(&api, common.output, command).await
        }
        Command::Volumes { common, command } => {
            let api = Api::from_profile()?;
            more::volumes(&api, common.output, command)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Templates { common, command } => {
            let api = Api::from_profile()?;
            more::templates(&api, common.output, command)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Ssh(args) => {
            let api = Api::from_profile()?;
            instances::ssh(&api, args).await
        }
        Command::Usage(args) => {
            let api = Api::from_profile()?;
            accounts::usage(&api, args)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Mcp => {
            let api = Api::from_profile()?;
            mcp::run(&api).await
        }
    }
}
