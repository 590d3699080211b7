//! The `parasol` binary: the server (`serve`), the admin commands, and the
//! API client (`configure`, `instances`, `ssh-keys`, `ssh`, ...).

use clap::{Parser, Subcommand};
use parasol::config::{self, LogFormat, ServeArgs, StoreArgs};
use parasol::http::{hash_key, new_api_key};
use parasol::{clock::Clock, server};
use tracing_subscriber::EnvFilter;

/// Parasol: a self-hosted GPU cloud broker with a Shadeform-compatible API.
#[derive(Parser)]
#[command(name = "parasol", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server and the lifecycle engine.
    Serve(Box<ServeArgs>),
    /// Manage accounts (works while the server runs).
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    #[command(flatten)]
    Client(parasol::cli::Command),
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account and print its API key (only the key, on stdout).
    Create {
        /// A name for the account.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn init_logs(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("PARASOL_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Client(command) => return parasol::cli::run(command).await,
        Command::Serve(args) => match config::resolve(&args) {
            Ok(settings) => {
                init_logs(settings.log_format);
                server::serve(settings).await
            }
            Err(e) => Err(e),
        },
        Command::Accounts {
            command: AccountsCommand::Create { name, store },
        } => create_account(&name, &store).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parasol: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn create_account(name: &str, args: &StoreArgs) -> anyhow::Result<()> {
    parasol::validate::name("name", name).map_err(|e| anyhow::anyhow!(e.message))?;
    let file = config::read_file(args.config.as_deref())?;
    let data_dir = config::data_dir(args, &file)?;
    let url = config::database_url(args, &file, &data_dir);
    let store = server::open_store(&data_dir, &url, 1).await?;
    let key = new_api_key();
    let hash = hash_key(&key);
    let now = Clock::system().now_ms();
    let account = store.create_account(name, &hash, false, now).await?;
    // Made outside the API, so the API's audit layer never sees it.
    store
        .insert_audit(&parasol::store::AuditEntry {
            id: uuid::Uuid::new_v4().to_string(),
            at_ms: now,
            account_id: Some(account.id.to_string()),
            key_id: Some(hash[..12].to_string()),
            client_addr: None,
            method: "CLI".into(),
            route: "parasol accounts create".into(),
            path: format!("accounts/{name}"),
            object_id: Some(account.id.to_string()),
            status: 200,
            outcome: "ok".into(),
            request_id: String::new(),
        })
        .await?;
    store.close().await;
    println!("{key}");
    Ok(())
}
