//! `parasol webhooks ...`: the account's webhook endpoints (list, create,
//! delete, test) and their delivery attempts.

use chrono::{DateTime, SecondsFormat, Utc};
use parasol_api::{
    Confirmation, CreateWebhookRequest, WebhookDeliveriesResponse, WebhookSecretResponse,
    WebhookTestResponse, WebhooksResponse,
};

use super::client::{Api, CliError};
use super::output::{print_raw, Format, Table};
use super::sshkeys::seg;

/// `parasol webhooks` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// List the account's webhook endpoints (never their secrets).
    List,
    /// Add an endpoint; its signing secret is printed this once only.
    Create {
        /// `https://...` (or `http://...` on a server run with
        /// `--webhook-allow-http`).
        url: String,
        /// Event types or patterns (`instance.*`, `budget.alert`, `*`);
        /// repeat or separate with commas.
        #[arg(long = "events", short = 'e', value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// What the endpoint is for.
        #[arg(long)]
        description: Option<String>,
        /// Admin keys only: receive every account's events.
        #[arg(long)]
        all_accounts: bool,
    },
    /// Delete an endpoint; its queued deliveries are dropped.
    Delete {
        /// Webhook id (the ID column of `webhooks list`).
        id: String,
    },
    /// Send the endpoint a `ping` event.
    Test {
        /// Webhook id.
        id: String,
    },
    /// The endpoint's delivery attempts, newest first.
    Deliveries {
        /// Webhook id.
        id: String,
        /// How many attempts (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

fn when(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Runs one `webhooks` subcommand.
pub async fn run(api: &Api, format: Format, command: WebhooksCommand) -> Result<(), CliError> {
    match command {
        WebhooksCommand::List => {
            let answer = api.get("/webhooks").await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let list: WebhooksResponse = answer.parse()?;
            let mut t = Table::new(&["ID", "URL", "EVENTS", "ENABLED", "CREATED"]);
            for w in &list.webhooks {
                t.row(vec![
                    w.id.to_string().into(),
                    w.url.clone().into(),
                    w.events.join(",").into(),
                    (if w.enabled { "yes" } else { "no" }).to_string().into(),
                    when(w.created_at).into(),
                ]);
            }
            t.print("No webhooks.");
        }
        WebhooksCommand::Create {
            url,
            events,
            description,
            all_accounts,
        } => {
            let req = CreateWebhookRequest {
                url,
                events,
                description,
                all_accounts,
            };
            let answer = api.post("/webhooks/create", Some(&req)).await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let made: WebhookSecretResponse = answer.parse()?;
            println!(
                "Created webhook {}. Its signing secret, shown only this once:",
                made.id
            );
            println!("{}", made.secret);
        }
        WebhooksCommand::Delete { id } => {
            let answer = api
                .post::<()>(&format!("/webhooks/{}/delete", seg(&id)), None)
                .await?;
            if format == Format::Json {
                print_raw(&answer);
            } else {
                let c: Confirmation = answer.parse()?;
                println!("Webhook {} {}.", c.id, c.status);
            }
        }
        WebhooksCommand::Test { id } => {
            let answer = api
                .post::<()>(&format!("/webhooks/{}/test", seg(&id)), None)
                .await?;
            if format == Format::Json {
                print_raw(&answer);
            } else {
                let r: WebhookTestResponse = answer.parse()?;
                println!(
                    "Ping {} {} for webhook {}; see `parasol webhooks deliveries {}`.",
                    r.event_id, r.status, r.id, r.id
                );
            }
        }
        WebhooksCommand::Deliveries { id, limit } => {
            let answer = api
                .get(&format!("/webhooks/{}/deliveries?limit={limit}", seg(&id)))
                .await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let list: WebhookDeliveriesResponse = answer.parse()?;
            let mut t = Table::new(&["AT", "EVENT", "TYPE", "ATTEMPT", "RESULT", "MS"]);
            for d in &list.deliveries {
                let result = match (d.status_code, &d.error) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "-".into(),
                };
                t.row(vec![
                    when(d.at).into(),
                    d.event_id.to_string().into(),
                    d.event_type.clone().into(),
                    d.attempt.to_string().into(),
                    result.into(),
                    d.duration_ms.to_string().into(),
                ]);
            }
            t.print("No delivery attempts yet.");
        }
    }
    Ok(())
}
