//! `parasol accounts list|create|update|delete` over the admin API, and
//! `parasol usage`. (`parasol accounts create` without a server profile,
//! or with store flags, stays the offline command of main.rs.)

use parasol_api::{
    AdminAccount, AdminAccountsResponse, Budget, CreateAccountRequest, CreateAccountResponse,
    OnExceed, UpdateAccountRequest, UsageResponse,
};

use super::client::{Api, CliError};
use super::output::{color_stdout, print_raw, Format, Table};
use super::sshkeys::seg;

/// Budget flags of `parasol accounts update`; any of them replaces the
/// whole budget with the limits given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BudgetArgs {
    /// Month-to-date spend at which creates are refused, in dollars.
    #[arg(long)]
    pub monthly_limit: Option<String>,
    /// Largest $/h of the account's live instances.
    #[arg(long)]
    pub max_hourly_spend: Option<String>,
    /// Largest number of GPUs its live instances may hold.
    #[arg(long)]
    pub max_gpus: Option<i64>,
    /// Percent of the monthly limit that fires the month's alert.
    #[arg(long)]
    pub alert_at_percent: Option<i64>,
    /// `block` or `delete` (delete the running instances) at the limit.
    #[arg(long, value_parser = ["block", "delete"])]
    pub on_exceed: Option<String>,
    /// Remove the account's budget.
    #[arg(long, conflicts_with_all = ["monthly_limit", "max_hourly_spend", "max_gpus", "alert_at_percent", "on_exceed"])]
    pub clear_budget: bool,
}

impl BudgetArgs {
    /// `None`: leave the budget; `Some(None)`: clear it.
    fn change(&self) -> Option<Option<Budget>> {
        if self.clear_budget {
            return Some(None);
        }
        let b = Budget {
            monthly_limit: self.monthly_limit.clone(),
            max_hourly_spend: self.max_hourly_spend.clone(),
            max_gpus: self.max_gpus,
            alert_at_percent: self.alert_at_percent,
            on_exceed: self.on_exceed.as_deref().map(|o| {
                if o == "delete" {
                    OnExceed::Delete
                } else {
                    OnExceed::Block
                }
            }),
        };
        (b != Budget::default()).then_some(Some(b))
    }
}

fn budget_text(b: &Option<Budget>) -> String {
    let Some(b) = b else { return "-".into() };
    let mut parts = Vec::new();
    if let Some(m) = &b.monthly_limit {
        parts.push(format!("${m}/month"));
    }
    if let Some(h) = &b.max_hourly_spend {
        parts.push(format!("${h}/h"));
    }
    if let Some(g) = b.max_gpus {
        parts.push(format!("{g} GPUs"));
    }
    if let Some(p) = b.alert_at_percent {
        parts.push(format!("alert {p}%"));
    }
    if b.on_exceed == Some(OnExceed::Delete) {
        parts.push("delete at limit".into());
    }
    parts.join(", ")
}

fn print_accounts(accounts: &[AdminAccount]) {
    let mut t = Table::new(&["ID", "NAME", "ADMIN", "LIVE", "$/H", "MONTH", "BUDGET"]);
    for a in accounts {
        t.row(vec![
            a.id.to_string().into(),
            a.name.clone().into(),
            (if a.admin { "yes" } else { "no" }).into(),
            a.live_instances.to_string().into(),
            a.hourly_spend.clone().into(),
            a.month_to_date_spend.clone().into(),
            budget_text(&a.budget).into(),
        ]);
    }
    print!("{}", t.render(color_stdout()));
}

/// `parasol accounts list`.
pub async fn list(api: &Api, format: Format) -> Result<(), CliError> {
    let answer = api.get("/admin/accounts").await?;
    if format == Format::Json {
        print_raw(&answer);
        return Ok(());
    }
    let r: AdminAccountsResponse = answer.parse()?;
    print_accounts(&r.accounts);
    Ok(())
}

/// `parasol accounts create NAME` with a server profile: prints only the
/// key (as the offline command does), or the answer with `-o json`.
pub async fn create(api: &Api, format: Format, name: &str, admin: bool) -> Result<(), CliError> {
    let answer = api
        .post(
            "/admin/accounts/create",
            Some(&CreateAccountRequest {
                name: name.to_string(),
                admin,
            }),
        )
        .await?;
    if format == Format::Json {
        print_raw(&answer);
        return Ok(());
    }
    let r: CreateAccountResponse = answer.parse()?;
    println!("{}", r.api_key);
    Ok(())
}

/// `parasol accounts update ID`.
pub async fn update(
    api: &Api,
    format: Format,
    id: &str,
    name: Option<String>,
    budget: &BudgetArgs,
) -> Result<(), CliError> {
    let req = UpdateAccountRequest {
        name,
        budget: budget.change(),
        idle_policy: None,
    };
    let answer = api
        .post(&format!("/admin/accounts/{}/update", seg(id)), Some(&req))
        .await?;
    if format == Format::Json {
        print_raw(&answer);
        return Ok(());
    }
    let a: AdminAccount = answer.parse()?;
    print_accounts(&[a]);
    Ok(())
}

/// `parasol accounts delete ID`.
pub async fn delete(api: &Api, format: Format, id: &str) -> Result<(), CliError> {
    let answer = api
        .post(&format!("/admin/accounts/{}/delete", seg(id)), None::<&()>)
        .await?;
    if format == Format::Json {
        print_raw(&answer);
    } else {
        println!("deleted account {id}");
    }
    Ok(())
}

/// Output of `parasol usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsageFormat {
    Table,
    Json,
    Csv,
}

/// Arguments of `parasol usage`.
#[derive(Debug, Clone, clap::Args)]
pub struct UsageArgs {
    /// Window start, RFC 3339 (default: the start of this UTC month).
    #[arg(long)]
    pub from: Option<String>,
    /// Window end, RFC 3339, exclusive (default: the start of next month).
    #[arg(long)]
    pub to: Option<String>,
    /// Admins: one account's usage.
    #[arg(long)]
    pub account_id: Option<String>,
    /// `table`, `json` (the API's JSON) or `csv` (the API's CSV).
    #[arg(short = 'o', long, value_enum, default_value_t = UsageFormat::Table)]
    pub output: UsageFormat,
}

/// `parasol usage`.
pub async fn usage(api: &Api, args: UsageArgs) -> Result<(), CliError> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(f) = args.from {
        q.push(("from", f));
    }
    if let Some(t) = args.to {
        q.push(("to", t));
    }
    if let Some(a) = args.account_id {
        q.push(("account_id", a));
    }
    if args.output == UsageFormat::Csv {
        q.push(("format", "csv".into()));
    }
    let answer = api.get_query("/usage", &q).await?;
    if args.output != UsageFormat::Table {
        print_raw(&answer);
        return Ok(());
    }
    let r: UsageResponse = answer.parse()?;
    let mut t = Table::new(&[
        "INSTANCE", "NAME", "CLOUD", "REGION", "TYPE", "$/H", "START", "END", "COST",
    ]);
    let time = |d: chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%d %H:%M").to_string();
    for l in &r.lines {
        t.row(vec![
            l.instance_id.to_string().into(),
            l.name.clone().into(),
            l.cloud.clone().into(),
            l.region.clone().into(),
            l.shade_instance_type.clone().into(),
            l.hourly_price.clone().into(),
            time(l.start).into(),
            time(l.end).into(),
            l.cost.clone().into(),
        ]);
    }
    print!("{}", t.render(color_stdout()));
    println!(
        "total ${} from {} to {}",
        r.total,
        r.from.to_rfc3339(),
        r.to.to_rfc3339()
    );
    Ok(())
}
