//! The `parasol` binary: the server (`serve`), the admin commands, and the
//! API client (`configure`, `instances`, `ssh-keys`, `ssh`, ...).

use clap::{Parser, Subcommand};
use parasol::cli::output::Format;
use parasol::cli::AccountsApi;
use parasol::config::{self, LogFormat, ServeArgs, StoreArgs};
use parasol::http::{hash_key, new_api_key};
use parasol::log_writer::LogWriter;
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
    /// Write a consistent copy of the SQLite store to FILE (works while the
    /// server runs).
    Backup {
        /// The backup file to create; it must not exist.
        file: std::path::PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put a backup made by `parasol backup` into an empty data directory.
    Restore {
        /// A file written by `parasol backup`.
        file: std::path::PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Whole-store operations.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    #[command(flatten)]
    Client(parasol::cli::Command),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every row of this store (the configured one, SQLite by
    /// default) into an empty database, such as PostgreSQL for replicas.
    /// Stop the server first, so no write lands after the copy.
    Copy {
        /// The target database URL (`postgres://...`); its schema is
        /// created if missing, and it must hold no data.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Recount the capacity counters from the instance and sim machine
    /// rows, and say which were wrong. Run it after editing those rows by
    /// hand, or once the last replica of a version from before the counters
    /// has stopped; it can run while servers do.
    RecountCapacity {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account and print its API key (only the key, on stdout).
    /// With store flags (or no server profile) it writes the store directly,
    /// as an operator on the server's machine does; otherwise it asks the
    /// configured server's admin API.
    Create {
        /// A name for the account.
        name: String,
        /// Its key may use only the read-only MCP tools (the HTTP API is
        /// not limited by it). Offline only.
        #[arg(long)]
        mcp_read_only: bool,
        /// An admin account (over the admin API only).
        #[arg(long)]
        admin: bool,
        /// Over the API: `table` prints only the key, `json` the answer.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List accounts with their budgets and spend (admin API).
    List {
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Rename an account or set its budget (admin API).
    Update {
        /// Account id.
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        budget: parasol::cli::accounts::BudgetArgs,
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Delete an account that holds no live instances or volumes (admin API).
    Delete {
        /// Account id.
        id: String,
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// The server's log, to stderr through [`LogWriter`]; flush it before
/// the process exits.
fn init_logs(format: LogFormat) -> LogWriter {
    let filter =
        EnvFilter::try_from_env("PARASOL_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let writer = LogWriter::stderr();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(colours).init(),
    }
    // The request lines' own formatter writes the same bytes, without
    // colours (a terminal's reader is not the hot path).
    let direct = (format == LogFormat::Json || !colours).then_some(format);
    parasol::http::middleware::log_to(writer.clone(), direct);
    writer
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Client(command) => return parasol::cli::run(command).await,
        Command::Serve(args) => match config::resolve(&args) {
            Ok(settings) => {
                let logs = init_logs(settings.log_format);
                let served = server::serve(settings).await;
                logs.flush();
                served
            }
            Err(e) => Err(e),
        },
        Command::Accounts { command } => {
            let api = match command {
                AccountsCommand::Create {
                    name,
                    mcp_read_only,
                    admin,
                    output,
                    store,
                } => {
                    let store_given = store.data_dir.is_some()
                        || store.config.is_some()
                        || store.database_url.is_some();
                    if store_given || mcp_read_only || !parasol::cli::has_profile() {
                        if admin {
                            eprintln!("parasol: --admin needs a server profile (the admin API); offline accounts are never admins");
                            return std::process::ExitCode::FAILURE;
                        }
                        return finish(create_account(&name, mcp_read_only, &store).await);
                    }
                    (output, AccountsApi::Create { name, admin })
                }
                AccountsCommand::List { output } => (output, AccountsApi::List),
                AccountsCommand::Update {
                    id,
                    name,
                    budget,
                    output,
                } => (output, AccountsApi::Update { id, name, budget }),
                AccountsCommand::Delete { id, output } => (output, AccountsApi::Delete { id }),
            };
            return parasol::cli::run_accounts(api.0, api.1).await;
        }
        Command::Backup { file, store } => backup(&file, &store).await,
        Command::Restore { file, store } => restore(&file, &store).await,
        Command::Store {
            command: StoreCommand::Copy { to, store },
        } => store_copy(&to, &store).await,
        Command::Store {
            command: StoreCommand::RecountCapacity { store },
        } => recount_capacity(&store).await,
    };
    finish(result)
}

fn finish(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parasol: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn create_account(name: &str, mcp_read_only: bool, args: &StoreArgs) -> anyhow::Result<()> {
    parasol::validate::name("name", name).map_err(|e| anyhow::anyhow!(e.message))?;
    let file = config::read_file(args.config.as_deref())?;
    let data_dir = config::data_dir(args, &file)?;
    let url = config::database_url(args, &file, &data_dir);
    let store = server::open_store(&data_dir, &url, 1).await?;
    let key = new_api_key();
    let hash = hash_key(&key);
    let now = Clock::system().now_ms();
    let account = store
        .create_account(name, &hash, false, mcp_read_only, now)
        .await?;
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
            person_id: None,
            person: None,
        })
        .await?;
    store.close().await;
    println!("{key}");
    Ok(())
}

/// The store the command-line options name.
async fn configured_store(args: &StoreArgs) -> anyhow::Result<(parasol::store::Store, String)> {
    let file = config::read_file(args.config.as_deref())?;
    let data_dir = config::data_dir(args, &file)?;
    let url = config::database_url(args, &file, &data_dir);
    Ok((server::open_store(&data_dir, &url, 2).await?, url))
}

async fn backup(file: &std::path::Path, args: &StoreArgs) -> anyhow::Result<()> {
    let (store, _) = configured_store(args).await?;
    let result = store.backup_to(file).await;
    store.close().await;
    result?;
    eprintln!("Wrote a backup of the store to {}", file.display());
    Ok(())
}

async fn restore(file: &std::path::Path, args: &StoreArgs) -> anyhow::Result<()> {
    let cfg = config::read_file(args.config.as_deref())?;
    let data_dir = config::data_dir(args, &cfg)?;
    let url = config::database_url(args, &cfg, &data_dir);
    let Some(path) = url.strip_prefix("sqlite://") else {
        anyhow::bail!(
            "parasol restore writes the embedded SQLite store; to move a backup into PostgreSQL, \
             restore it into a data directory, then run `parasol store copy --to postgres://...`"
        );
    };
    let path = std::path::PathBuf::from(path.split('?').next().unwrap_or(path));
    if path.exists() {
        anyhow::bail!(
            "{} already exists: restore only into an empty data directory",
            path.display()
        );
    }
    if !file.is_file() {
        anyhow::bail!("{} is not a backup file", file.display());
    }
    std::fs::create_dir_all(&data_dir)?;
    std::fs::copy(file, &path)
        .map_err(|e| anyhow::anyhow!("copying {} to {}: {e}", file.display(), path.display()))?;
    // Opening checks it is a Parasol store (and migrates an older one).
    let opened = server::open_store(&data_dir, &url, 1).await;
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            std::fs::remove_file(&path).ok();
            return Err(e.context(format!("{} is not a usable Parasol backup", file.display())));
        }
    };
    let accounts = store.count_accounts().await?;
    store.close().await;
    eprintln!(
        "Restored {} ({accounts} accounts) into {}",
        file.display(),
        path.display()
    );
    Ok(())
}

async fn recount_capacity(args: &StoreArgs) -> anyhow::Result<()> {
    let (store, _) = configured_store(args).await?;
    let repaired = store.repair_capacity_counts().await;
    store.close().await;
    let repaired = repaired?;
    if repaired.is_empty() {
        eprintln!("Every capacity counter agrees with the stored rows.");
    } else {
        eprintln!("Recounted {} capacity counters:", repaired.len());
        for r in repaired {
            eprintln!("  {r}");
        }
    }
    Ok(())
}

async fn store_copy(to: &str, args: &StoreArgs) -> anyhow::Result<()> {
    let (source, _) = configured_store(args).await?;
    let target = parasol::store::Store::open(&parasol::store::StoreOptions {
        url: to.to_string(),
        max_connections: 2,
    })
    .await
    .map_err(|e| e.context(format!("opening the target {}", server::redact_url(to))))?;
    let result = target.copy_from(&source).await;
    source.close().await;
    target.close().await;
    let rows = result?;
    eprintln!("Copied {rows} rows into {}", server::redact_url(to));
    Ok(())
}
