//! `parasol instances ...` and `parasol ssh`: shop, create (and wait),
//! inspect, change and delete instances.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use parasol_api::{
    AutoDelete, Confirmation, CreateRequest, CreateResponse, DockerConfiguration, Env, Instance,
    InstanceType, InstancesResponse, LaunchConfiguration, LaunchType, PortMappings, RentalType,
    ScriptConfiguration, Status, UpdateRequest,
};
use uuid::Uuid;

use super::client::{Answer, Api, CliError};
use super::output::{
    color_stdout, human_secs, paint, price, print_raw, status_cell, status_color, Format, Table,
};

/// `parasol instances` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum InstancesCommand {
    /// List the account's instances.
    List,
    /// Show one instance (by id or name).
    Get {
        /// Instance id or name.
        instance: String,
    },
    /// Rent a new instance.
    Create(Box<CreateArgs>),
    /// Rename an instance, or change its tags or auto-delete.
    Update(UpdateArgs),
    /// Restart an active instance.
    Restart {
        /// Instance id or name.
        instance: String,
    },
    /// Delete instances (billing stops at once).
    Delete {
        /// Instance ids or names.
        #[arg(required = true)]
        instances: Vec<String>,
        /// Wait until each is gone.
        #[arg(long)]
        wait: bool,
    },
    /// Shop for instance types: filters, sorted by price.
    Types(TypesArgs),
    /// What an instance's agent reported: GPU utilisation, memory,
    /// temperature, power, ECC errors and Xids, per sample.
    Metrics(super::top::MetricsArgs),
    /// A live table of the active instances: GPU utilisation, memory,
    /// temperature, idle minutes and health.
    Top(super::top::TopArgs),
}

/// `parasol instances create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Cloud to rent from (see `instances types`).
    #[arg(long)]
    pub cloud: String,
    /// Region of that cloud.
    #[arg(long)]
    pub region: String,
    /// Instance type (the TYPE column of `instances types`).
    #[arg(long = "type", value_name = "TYPE")]
    pub shade_instance_type: String,
    /// Name of the new instance.
    #[arg(long)]
    pub name: String,
    /// Rent as spot (cheaper, can be preempted).
    #[arg(long)]
    pub spot: bool,
    /// Operating system image; defaults to the type's first.
    #[arg(long)]
    pub os: Option<String>,
    /// SSH key id; defaults to the account's default key.
    #[arg(long)]
    pub ssh_key: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Environment variable NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub envs: Vec<String>,
    /// Run this container image once the machine is up.
    #[arg(long, conflicts_with = "script")]
    pub image: Option<String>,
    /// Arguments for the container.
    #[arg(long, requires = "image")]
    pub image_args: Option<String>,
    /// Port mapping HOST:CONTAINER for the container (repeatable).
    #[arg(long = "port", value_name = "HOST:CONTAINER", requires = "image")]
    pub ports: Vec<String>,
    /// Run this script file once the machine is up.
    #[arg(long, value_name = "FILE")]
    pub script: Option<std::path::PathBuf>,
    /// Delete automatically at this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub delete_at: Option<String>,
    /// Delete automatically once this many dollars are spent.
    #[arg(long, value_name = "DOLLARS")]
    pub delete_after_spend: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Waiting for a new instance.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Wait until the instance is active (or failed), showing progress.
    #[arg(long)]
    pub wait: bool,
    /// Longest wait, in seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub timeout: u64,
}

/// `parasol instances update`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Instance id or name.
    pub instance: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// Replace the tags with these (repeatable).
    #[arg(long = "tag", value_name = "TAG", conflicts_with = "clear_tags")]
    pub tags: Vec<String>,
    /// Remove every tag.
    #[arg(long)]
    pub clear_tags: bool,
    /// Delete automatically at this time (RFC 3339).
    #[arg(long, value_name = "TIME", conflicts_with = "clear_auto_delete")]
    pub delete_at: Option<String>,
    /// Delete automatically once this many dollars are spent.
    #[arg(long, value_name = "DOLLARS", conflicts_with = "clear_auto_delete")]
    pub delete_after_spend: Option<String>,
    /// Remove the auto-delete thresholds.
    #[arg(long)]
    pub clear_auto_delete: bool,
}

/// `parasol instances types`.
#[derive(Debug, clap::Args)]
pub struct TypesArgs {
    /// GPU type, such as H100 or A6000 (case-insensitive).
    #[arg(long)]
    pub gpu: Option<String>,
    /// GPUs per instance.
    #[arg(long)]
    pub num_gpus: Option<u32>,
    /// Only this cloud.
    #[arg(long)]
    pub cloud: Option<String>,
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Only types with capacity now.
    #[arg(long)]
    pub available: bool,
    /// Spot prices and regions instead of on-demand.
    #[arg(long)]
    pub spot: bool,
}

/// `parasol ssh`.
#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// Instance id or name.
    pub instance: String,
    /// Private key file, passed to ssh as `-i`.
    #[arg(short = 'i', long, value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
    /// Print the ssh command instead of running it.
    #[arg(long)]
    pub print: bool,
    /// Extra arguments for ssh (after `--`), such as a remote command.
    #[arg(last = true)]
    pub ssh_args: Vec<String>,
}

/// Runs one `instances` subcommand.
pub async fn run(
    api: &Api,
    format: Format,
    command: InstancesCommand,
) -> Result<ExitCode, CliError> {
    match command {
        InstancesCommand::List => {
            let answer = api.get("/instances").await?;
            if format == Format::Json {
                print_raw(&answer);
            } else {
                print_instances(&answer.parse::<InstancesResponse>()?.instances);
            }
        }
        InstancesCommand::Get { instance } => {
            let id = resolve(api, &instance).await?;
            let answer = api.get(&format!("/instances/{id}/info")).await?;
            if format == Format::Json {
                print_raw(&answer);
            } else {
                print_instance(&answer.parse()?);
            }
        }
        InstancesCommand::Create(args) => return create(api, format, *args).await,
        InstancesCommand::Update(args) => {
            let id = resolve(api, &args.instance).await?;
            let req = update_request(&args)?;
            let answer = api
                .post(&format!("/instances/{id}/update"), Some(&req))
                .await?;
            confirm(format, &answer, "updated")?;
        }
        InstancesCommand::Restart { instance } => {
            let id = resolve(api, &instance).await?;
            let answer = api
                .post::<()>(&format!("/instances/{id}/restart"), None)
                .await?;
            confirm(format, &answer, "is restarting")?;
        }
        InstancesCommand::Delete { instances, wait } => {
            for name in &instances {
                let id = resolve(api, name).await?;
                let answer = api
                    .post::<()>(&format!("/instances/{id}/delete"), None)
                    .await?;
                confirm(format, &answer, "is being deleted")?;
                if wait {
                    wait_gone(api, id).await?;
                    if format == Format::Table {
                        println!("Instance {id} is deleted.");
                    }
                }
            }
        }
        InstancesCommand::Types(args) => types(api, format, &args).await?,
        InstancesCommand::Metrics(args) => super::top::metrics(api, format, &args).await?,
        InstancesCommand::Top(args) => super::top::top(api, format, &args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn confirm(format: Format, answer: &Answer, what: &str) -> Result<(), CliError> {
    if format == Format::Json {
        print_raw(answer);
    } else {
        let c: Confirmation = answer.parse()?;
        println!("Instance {} {what}.", c.id);
    }
    Ok(())
}

/// An instance id from an id or a name. Names are not unique, so a name
/// shared by several live instances is refused with their ids.
pub async fn resolve(api: &Api, target: &str) -> Result<Uuid, CliError> {
    if let Ok(id) = Uuid::parse_str(target) {
        return Ok(id);
    }
    let all: InstancesResponse = api.get("/instances").await?.parse()?;
    let matches: Vec<&Instance> = all
        .instances
        .iter()
        .filter(|i| i.name == target && i.status != Status::Deleted)
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.id),
        [] => Err(CliError::new(format!(
            "not found: no instance has the id or name {target:?}"
        ))),
        many => Err(CliError::new(format!(
            "{} instances are named {target:?}; use an id: {}",
            many.len(),
            many.iter()
                .map(|i| i.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Prints instances as a table.
pub fn print_instances(instances: &[Instance]) {
    let mut t = Table::new(&[
        "ID", "NAME", "STATUS", "CLOUD", "REGION", "TYPE", "IP", "$/HR", "COST",
    ]);
    for i in instances {
        t.row(vec![
            i.id.to_string().into(),
            i.name.clone().into(),
            status_cell(i.status),
            i.cloud.clone().into(),
            i.region.clone().into(),
            i.shade_instance_type.clone().into(),
            i.ip.clone().unwrap_or_else(|| "-".into()).into(),
            price(i.hourly_price).into(),
            format!("${}", i.cost_estimate).into(),
        ]);
    }
    t.print("No instances. Shop with `parasol instances types`, then `parasol instances create`.");
}

/// Prints one instance as aligned `key value` lines.
pub fn print_instance(i: &Instance) {
    let color = color_stdout();
    let c = &i.configuration;
    let mut lines: Vec<(&str, String)> = vec![
        ("id", i.id.to_string()),
        ("name", i.name.clone()),
        (
            "status",
            paint(i.status.as_str(), status_color(i.status), color),
        ),
    ];
    if let Some(d) = &i.status_details {
        lines.push(("details", d.clone()));
    }
    lines.extend([
        ("cloud", format!("{} ({})", i.cloud, i.region)),
        (
            "type",
            format!("{} ({})", i.shade_instance_type, i.cloud_instance_type),
        ),
        (
            "hardware",
            format!(
                "{}x {} {}GB, {} vCPUs, {}GB RAM, {}GB disk",
                c.num_gpus,
                c.gpu_type,
                c.vram_per_gpu_in_gb,
                c.vcpus,
                c.memory_in_gb,
                c.storage_in_gb
            ),
        ),
        ("os", c.os.clone()),
        ("rental", i.rental_terms.rental_type.as_str().to_string()),
        ("price", format!("{}/hour", price(i.hourly_price))),
        ("cost", format!("${}", i.cost_estimate)),
        ("ip", i.ip.clone().unwrap_or_else(|| "-".into())),
    ]);
    if let Some(cmd) = ssh_command(i, None) {
        lines.push(("ssh", cmd.join(" ")));
    }
    if !i.tags.is_empty() {
        lines.push(("tags", i.tags.join(", ")));
    }
    lines.push(("created", i.created_at.to_rfc3339()));
    if let Some(t) = i.active_at {
        lines.push(("active", t.to_rfc3339()));
    }
    for (k, v) in lines {
        println!("{k:<9} {v}");
    }
}

/// The ssh command line for an active instance with an ip.
pub fn ssh_command(i: &Instance, identity: Option<&std::path::Path>) -> Option<Vec<String>> {
    let ip = i.ip.as_deref().filter(|_| i.status == Status::Active)?;
    let mut cmd = vec!["ssh".to_string()];
    if let Some(key) = identity {
        cmd.push("-i".into());
        cmd.push(key.display().to_string());
    }
    cmd.push("-p".into());
    cmd.push(i.ssh_port.to_string());
    cmd.push(format!("{}@{ip}", i.ssh_user));
    Some(cmd)
}

fn create_request(args: &CreateArgs) -> Result<CreateRequest, CliError> {
    let envs = args
        .envs
        .iter()
        .map(|e| match e.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok(Env {
                name: name.to_string(),
                value: value.to_string(),
            }),
            _ => Err(CliError::new(format!(
                "invalid --env {:?}: expected NAME=VALUE",
                e.split('=').next().unwrap_or("")
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ports = args
        .ports
        .iter()
        .map(|p| {
            let parsed = p
                .split_once(':')
                .and_then(|(h, c)| Some((h.parse().ok()?, c.parse().ok()?)));
            parsed
                .map(|(host_port, container_port)| PortMappings {
                    host_port,
                    container_port,
                })
                .ok_or_else(|| {
                    CliError::new(format!("invalid --port {p:?}: expected HOST:CONTAINER"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let launch_configuration = match (&args.image, &args.script) {
        (Some(image), _) => Some(LaunchConfiguration {
            kind: LaunchType::Docker,
            docker_configuration: Some(DockerConfiguration {
                image: image.clone(),
                args: args.image_args.clone(),
                shared_memory_in_gb: None,
                envs: None,
                port_mappings: (!ports.is_empty()).then_some(ports),
                volume_mounts: None,
                registry_credentials: None,
            }),
            script_configuration: None,
        }),
        (None, Some(path)) => {
            let script = std::fs::read(path).map_err(|e| {
                CliError::new(format!("cannot read the script {}: {e}", path.display()))
            })?;
            Some(LaunchConfiguration {
                kind: LaunchType::Script,
                docker_configuration: None,
                script_configuration: Some(ScriptConfiguration {
                    base64_script: base64::engine::general_purpose::STANDARD.encode(script),
                }),
            })
        }
        (None, None) => None,
    };
    let auto_delete =
        (args.delete_at.is_some() || args.delete_after_spend.is_some()).then(|| AutoDelete {
            date_threshold: args.delete_at.clone(),
            spend_threshold: args.delete_after_spend.clone(),
        });
    Ok(CreateRequest {
        cloud: args.cloud.clone(),
        region: args.region.clone(),
        shade_instance_type: args.shade_instance_type.clone(),
        shade_cloud: true,
        name: args.name.clone(),
        rental_type: args.spot.then_some(RentalType::Spot),
        os: args.os.clone(),
        template_id: None,
        launch_configuration,
        volume_ids: None,
        ssh_key_id: args.ssh_key.clone(),
        auto_delete,
        alert: None,
        volume_mount: None,
        tags: (!args.tags.is_empty()).then(|| args.tags.clone()),
        envs: (!envs.is_empty()).then_some(envs),
        idle_policy: None,
        on_unhealthy: None,
    })
}

fn update_request(args: &UpdateArgs) -> Result<UpdateRequest, CliError> {
    let mut req = UpdateRequest::default();
    if let Some(n) = &args.name {
        req.name = Some(Some(n.clone()));
    }
    if args.clear_tags {
        req.tags = Some(None);
    } else if !args.tags.is_empty() {
        req.tags = Some(Some(args.tags.clone()));
    }
    if args.clear_auto_delete {
        req.auto_delete = Some(None);
    } else if args.delete_at.is_some() || args.delete_after_spend.is_some() {
        req.auto_delete = Some(Some(AutoDelete {
            date_threshold: args.delete_at.clone(),
            spend_threshold: args.delete_after_spend.clone(),
        }));
    }
    if req.name.is_none() && req.tags.is_none() && req.auto_delete.is_none() {
        return Err(CliError::new(
            "nothing to update: give --name, --tag, --clear-tags, --delete-at, --delete-after-spend or --clear-auto-delete",
        ));
    }
    Ok(req)
}

async fn create(api: &Api, format: Format, args: CreateArgs) -> Result<ExitCode, CliError> {
    let req = create_request(&args)?;
    let answer = api.post("/instances/create", Some(&req)).await?;
    let created: CreateResponse = answer.parse()?;
    if !args.wait.wait {
        if format == Format::Json {
            print_raw(&answer);
        } else {
            println!("Created instance {:?}: {}", args.name, created.id);
            println!(
                "Follow it with `parasol instances get {}`, or create with --wait.",
                created.id
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    follow(
        api,
        format,
        created.id,
        &args.name,
        args.wait.timeout,
        false,
    )
    .await
}

/// `--wait` after a create or launch: waits for the instance and reports
/// how it ended (with `placed`, where it ended up too), with the ssh
/// command when active and a failure naming the reason otherwise.
pub(super) async fn follow(
    api: &Api,
    format: Format,
    id: Uuid,
    label: &str,
    timeout: u64,
    placed: bool,
) -> Result<ExitCode, CliError> {
    let (final_answer, instance, elapsed) = wait_active(api, id, label, timeout).await?;
    if format == Format::Json {
        print_raw(&final_answer);
    }
    if instance.status == Status::Active {
        if format == Format::Table {
            let place = if placed {
                format!(
                    " on {} {} {} at {}/h",
                    instance.cloud,
                    instance.region,
                    instance.shade_instance_type,
                    price(instance.hourly_price)
                )
            } else {
                String::new()
            };
            println!(
                "Instance {:?} ({}) is active{place} after {}.",
                instance.name,
                instance.id,
                human_secs(elapsed.as_secs())
            );
            if let Some(cmd) = ssh_command(&instance, None) {
                println!("{}", cmd.join(" "));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    Err(CliError::new(format!(
        "instance {:?} ({}) failed after {}: {}",
        instance.name,
        instance.id,
        human_secs(elapsed.as_secs()),
        instance
            .status_details
            .as_deref()
            .unwrap_or("no reason given")
    )))
}

/// How often `--wait` polls.
const POLL: Duration = Duration::from_millis(500);

/// Polls until the instance is active or in error. On a terminal the
/// status and elapsed time redraw in place behind a spinner; otherwise
/// each status change is one plain line on stderr, so logs of CI jobs stay
/// readable.
async fn wait_active(
    api: &Api,
    id: Uuid,
    name: &str,
    timeout: u64,
) -> Result<(Answer, Instance, Duration), CliError> {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut progress = Progress::new(tty, name);
    let mut last: Option<(Status, Option<String>)> = None;
    loop {
        let answer = match api.get(&format!("/instances/{id}/info")).await {
            Ok(a) => a,
            Err(e) => {
                progress.clear();
                return Err(e);
            }
        };
        let instance: Instance = answer.parse()?;
        let elapsed = start.elapsed();
        match instance.status {
            Status::Active | Status::Error => {
                progress.clear();
                if !tty {
                    eprintln!(
                        "{name}: {} ({})",
                        instance.status,
                        human_secs(elapsed.as_secs())
                    );
                }
                return Ok((answer, instance, elapsed));
            }
            Status::Deleting | Status::Deleted => {
                progress.clear();
                return Err(CliError::new(format!(
                    "instance {name:?} ({id}) is being deleted ({}); stopped waiting",
                    instance.status_details.as_deref().unwrap_or("deleted")
                )));
            }
            s => {
                // A new status, or new details in one (a launch by
                // requirements moving to another offer), is a line of its
                // own; on a terminal the spinner redraws below it.
                let now = (s, instance.status_details.clone());
                if last.as_ref() != Some(&now) {
                    let details = match &now.1 {
                        Some(d) if !d.is_empty() => format!(": {d}"),
                        _ => String::new(),
                    };
                    if !tty && last.as_ref().map(|l| l.0) != Some(s) || !details.is_empty() {
                        progress.clear();
                        eprintln!("{name}: {s} ({}){details}", human_secs(elapsed.as_secs()));
                    }
                }
                if tty {
                    progress.draw(s, elapsed);
                }
                last = Some(now);
            }
        }
        if elapsed >= Duration::from_secs(timeout) {
            progress.clear();
            return Err(CliError::new(format!(
                "instance {name:?} ({id}) is still {} after {}; stopped waiting (it keeps going: `parasol instances get {id}`)",
                instance.status,
                human_secs(timeout)
            )));
        }
        // Redraw the spinner faster than the poll so it visibly turns.
        let next = Instant::now() + POLL;
        while tty && Instant::now() + Duration::from_millis(100) < next {
            tokio::time::sleep(Duration::from_millis(100)).await;
            progress.draw(instance.status, start.elapsed());
        }
        tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
    }
}

/// The one-line spinner of `--wait`, drawn on stderr.
struct Progress {
    tty: bool,
    name: String,
    frame: usize,
    drawn: bool,
}

impl Progress {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

    fn new(tty: bool, name: &str) -> Self {
        Progress {
            tty,
            name: name.to_string(),
            frame: 0,
            drawn: false,
        }
    }

    fn draw(&mut self, status: Status, elapsed: Duration) {
        if !self.tty {
            return;
        }
        let spin = Self::FRAMES[self.frame % Self::FRAMES.len()];
        self.frame += 1;
        let mut err = std::io::stderr().lock();
        // \r and "erase line" redraw in place.
        write!(
            err,
            "\r\x1b[2K{spin} {}  {}  {}",
            self.name,
            paint(status.as_str(), status_color(status), true),
            human_secs(elapsed.as_secs())
        )
        .ok();
        err.flush().ok();
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            std::io::stderr().flush().ok();
            self.drawn = false;
        }
    }
}

async fn wait_gone(api: &Api, id: Uuid) -> Result<(), CliError> {
    let start = Instant::now();
    loop {
        match api.get(&format!("/instances/{id}/info")).await {
            Err(e) if e.0.starts_with("not found (404)") => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) if start.elapsed() > Duration::from_secs(600) => {
                return Err(CliError::new(format!(
                    "instance {id} is still not deleted after 10m; stopped waiting"
                )))
            }
            Ok(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// One row of the shopping table: a type and what its regions offer for
/// the chosen rental type.
struct Shop<'a> {
    t: &'a InstanceType,
    cents: i64,
    regions: Vec<&'a str>,
}

fn shop_rows<'a>(types: &'a [InstanceType], spot: bool) -> Vec<Shop<'a>> {
    let want = if spot {
        RentalType::Spot
    } else {
        RentalType::OnDemand
    };
    let mut rows: Vec<Shop> = types
        .iter()
        .filter_map(|t| {
            let entries: Vec<_> = t
                .availability
                .iter()
                .filter(|a| a.rental_type == want)
                .collect();
            if entries.is_empty() {
                return None;
            }
            let cents = if spot {
                entries
                    .iter()
                    .filter_map(|a| a.hourly_price.as_deref().and_then(parse_dollars))
                    .min()?
            } else {
                t.hourly_price
            };
            let regions = entries
                .iter()
                .filter(|a| a.available)
                .map(|a| a.region.as_str())
                .collect();
            Some(Shop { t, cents, regions })
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.cents, &a.t.cloud, &a.t.shade_instance_type).cmp(&(
            b.cents,
            &b.t.cloud,
            &b.t.shade_instance_type,
        ))
    });
    rows
}

/// `"1.25"` → 125 cents.
fn parse_dollars(s: &str) -> Option<i64> {
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), "0"));
    let frac = format!("{frac:0<2}");
    Some(whole.parse::<i64>().ok()? * 100 + frac.get(..2)?.parse::<i64>().ok()?)
}

async fn types(api: &Api, format: Format, args: &TypesArgs) -> Result<(), CliError> {
    let mut query: Vec<(&str, String)> = vec![("sort", "price".into())];
    if let Some(g) = &args.gpu {
        query.push(("gpu_type", g.clone()));
    }
    if let Some(n) = args.num_gpus {
        query.push(("num_gpus", n.to_string()));
    }
    if let Some(c) = &args.cloud {
        query.push(("cloud", c.clone()));
    }
    if let Some(r) = &args.region {
        query.push(("region", r.clone()));
    }
    if args.available {
        query.push(("available", "true".into()));
    }
    let answer = api.get_query("/instances/types", &query).await?;
    if format == Format::Json && !args.spot {
        print_raw(&answer);
        return Ok(());
    }
    if format == Format::Json {
        // The API has no spot filter: drop non-spot entries from its JSON
        // and keep everything else as sent.
        let mut v: serde_json::Value = answer.parse()?;
        if let Some(list) = v["instance_types"].as_array_mut() {
            list.retain(|t| {
                t["availability"].as_array().is_some_and(|a| {
                    a.iter().any(|e| {
                        e["rental_type"] == "spot" && (!args.available || e["available"] == true)
                    })
                })
            });
        }
        println!("{v}");
        return Ok(());
    }
    let all: parasol_api::InstanceTypesResponse = answer.parse()?;
    let mut rows = shop_rows(&all.instance_types, args.spot);
    if args.available {
        rows.retain(|r| !r.regions.is_empty());
    }
    let mut t = Table::new(&[
        "CLOUD", "TYPE", "GPUS", "VRAM", "VCPUS", "RAM", "$/HR", "REGIONS",
    ]);
    for r in &rows {
        let c = &r.t.configuration;
        t.row(vec![
            r.t.cloud.clone().into(),
            r.t.shade_instance_type.clone().into(),
            format!("{}x {}", c.num_gpus, c.gpu_type).into(),
            format!("{} GB", c.vram_per_gpu_in_gb).into(),
            c.vcpus.to_string().into(),
            format!("{} GB", c.memory_in_gb).into(),
            price(r.cents).into(),
            if r.regions.is_empty() {
                "(none available)".to_string()
            } else {
                r.regions.join(",")
            }
            .into(),
        ]);
    }
    t.print("No instance types match.");
    Ok(())
}

/// `parasol ssh`: runs ssh in place of this process.
pub async fn ssh(api: &Api, args: SshArgs) -> Result<ExitCode, CliError> {
    let id = resolve(api, &args.instance).await?;
    let instance: Instance = api.get(&format!("/instances/{id}/info")).await?.parse()?;
    let Some(cmd) = ssh_command(&instance, args.identity.as_deref()) else {
        return Err(CliError::new(format!(
            "instance {:?} ({id}) is {}, not active; ssh needs an active instance with an ip",
            instance.name, instance.status
        )));
    };
    if args.print {
        let mut line = cmd;
        line.extend(args.ssh_args);
        println!("{}", line.join(" "));
        return Ok(ExitCode::SUCCESS);
    }
    let mut command = std::process::Command::new(&cmd[0]);
    command.args(&cmd[1..]).args(&args.ssh_args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = command.exec();
        Err(CliError::new(format!("cannot run ssh: {e}")))
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .map_err(|e| CliError::new(format!("cannot run ssh: {e}")))?;
        Ok(ExitCode::from(status.code().unwrap_or(1) as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_strings_become_cents() {
        assert_eq!(parse_dollars("1.25"), Some(125));
        assert_eq!(parse_dollars("2"), Some(200));
        assert_eq!(parse_dollars("0.5"), Some(50));
        assert_eq!(parse_dollars("x"), None);
    }

    #[test]
    fn envs_must_be_name_equals_value_and_never_echo_the_value() {
        let mut args = CreateArgs {
            cloud: "c".into(),
            region: "r".into(),
            shade_instance_type: "t".into(),
            name: "n".into(),
            spot: false,
            os: None,
            ssh_key: None,
            tags: vec![],
            envs: vec!["TOKEN".into()],
            image: None,
            image_args: None,
            ports: vec![],
            script: None,
            delete_at: None,
            delete_after_spend: None,
            wait: WaitArgs {
                wait: false,
                timeout: 1,
            },
        };
        let e = create_request(&args).unwrap_err();
        assert!(e.0.contains("--env \"TOKEN\""), "{e}");
        args.envs = vec!["TOKEN=a=b".into()];
        let req = create_request(&args).unwrap();
        assert_eq!(req.envs.unwrap()[0].value, "a=b");
    }
}
