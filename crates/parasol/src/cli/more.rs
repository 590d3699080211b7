//! `parasol clusters`, `parasol volumes` and `parasol templates`: the
//! other Shadeform resources, with the same table / `-o json` output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use parasol_api::{
    Cluster, ClusterTypesResponse, ClustersResponse, Confirmation, CreateClusterRequest,
    CreateResponse, CreateVolumeRequest, CreateVolumeResponse, Status, Template,
    TemplateCreateResponse, TemplateSaveRequest, TemplatesResponse, Volume, VolumesResponse,
    VolumesTypesResponse,
};
use uuid::Uuid;

use super::client::{Answer, Api, CliError};
use super::instances::{print_instances, ssh_command};
use super::output::{human_secs, price, print_raw, status_cell, Format, Table};
use super::sshkeys::seg;

/// `parasol clusters` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClustersCommand {
    /// List the account's clusters.
    List,
    /// Show one cluster and its nodes.
    Get {
        /// Cluster id or name.
        cluster: String,
    },
    /// Rent a multi-node cluster.
    Create {
        /// Cloud to rent from (see `clusters types`).
        #[arg(long)]
        cloud: String,
        /// Region.
        #[arg(long)]
        region: String,
        /// Node type (the TYPE column of `clusters types`).
        #[arg(long = "type", value_name = "TYPE")]
        cluster_type: String,
        /// Number of nodes.
        #[arg(long)]
        nodes: i64,
        /// Name of the cluster.
        #[arg(long)]
        name: String,
        /// SSH key id; defaults to the account's default key.
        #[arg(long)]
        ssh_key: Option<String>,
        /// Operating system image.
        #[arg(long)]
        os: Option<String>,
        /// Wait until every node is active (or the cluster fails).
        #[arg(long)]
        wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Delete a cluster and all its nodes.
    Delete {
        /// Cluster id or name.
        cluster: String,
    },
    /// The cluster shapes on offer, sorted by price.
    Types,
}

/// `parasol volumes` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VolumesCommand {
    /// List the account's volumes.
    List,
    /// Show one volume.
    Get {
        /// Volume id.
        id: String,
    },
    /// Create a volume.
    Create {
        #[arg(long)]
        cloud: String,
        #[arg(long)]
        region: String,
        /// Size in GB.
        #[arg(long)]
        size: i64,
        #[arg(long)]
        name: String,
    },
    /// Delete a volume.
    Delete {
        /// Volume id.
        id: String,
    },
    /// Where volumes can be created, and their price.
    Types,
}

/// `parasol templates` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TemplatesCommand {
    /// List the templates the account can use.
    List,
    /// List the featured templates Parasol ships.
    Featured,
    /// Show one template as JSON.
    Get {
        /// Template id.
        id: String,
    },
    /// Save a template from a JSON file (the `/templates/save` body).
    Save {
        /// JSON file.
        file: PathBuf,
    },
    /// Replace a template's settings from a JSON file.
    Update {
        /// Template id.
        id: String,
        /// JSON file.
        file: PathBuf,
    },
    /// Delete a template.
    Delete {
        /// Template id.
        id: String,
    },
}

fn confirm(format: Format, answer: &Answer, what: &str) -> Result<(), CliError> {
    if format == Format::Json {
        print_raw(answer);
    } else {
        let c: Confirmation = answer.parse()?;
        println!("{what} {}: {}.", c.id, c.status);
    }
    Ok(())
}

/// A cluster id from an id or a unique name.
async fn resolve_cluster(api: &Api, target: &str) -> Result<Uuid, CliError> {
    if let Ok(id) = Uuid::parse_str(target) {
        return Ok(id);
    }
    let all: ClustersResponse = api.get("/clusters").await?.parse()?;
    let found: Vec<&Cluster> = all.clusters.iter().filter(|c| c.name == target).collect();
    match found.as_slice() {
        [one] => Ok(one.id),
        [] => Err(CliError::new(format!(
            "not found: no cluster has the id or name {target:?}"
        ))),
        _ => Err(CliError::new(format!(
            "several clusters are named {target:?}; use an id"
        ))),
    }
}

/// Runs one `clusters` subcommand.
pub async fn clusters(
    api: &Api,
    format: Format,
    command: ClustersCommand,
) -> Result<ExitCode, CliError> {
    match command {
        ClustersCommand::List => {
            let answer = api.get("/clusters").await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(ExitCode::SUCCESS);
            }
            let list: ClustersResponse = answer.parse()?;
            let mut t = Table::new(&["ID", "NAME", "STATUS", "CLOUD", "REGION", "NODES", "$/HR"]);
            for c in &list.clusters {
                t.row(vec![
                    c.id.to_string().into(),
                    c.name.clone().into(),
                    status_cell(c.status),
                    c.cloud.clone().into(),
                    c.region_info.region.clone().into(),
                    c.instances.len().to_string().into(),
                    price(c.hourly_price).into(),
                ]);
            }
            t.print("No clusters.");
        }
        ClustersCommand::Get { cluster } => {
            let id = resolve_cluster(api, &cluster).await?;
            let answer = api.get(&format!("/clusters/{id}/info")).await?;
            if format == Format::Json {
                print_raw(&answer);
            } else {
                print_cluster(&answer.parse()?);
            }
        }
        ClustersCommand::Create {
            cloud,
            region,
            cluster_type,
            nodes,
            name,
            ssh_key,
            os,
            wait,
            timeout,
        } => {
            let req = CreateClusterRequest {
                name: name.clone(),
                cloud,
                region,
                cluster_type,
                num_instances: nodes,
                ssh_key_id: ssh_key,
                os,
            };
            let answer = api.post("/clusters/create", Some(&req)).await?;
            let created: CreateResponse = answer.parse()?;
            if !wait {
                if format == Format::Json {
                    print_raw(&answer);
                } else {
                    println!("Created cluster {name:?}: {}", created.id);
                }
                return Ok(ExitCode::SUCCESS);
            }
            return wait_cluster(api, format, created.id, &name, timeout).await;
        }
        ClustersCommand::Delete { cluster } => {
            let id = resolve_cluster(api, &cluster).await?;
            let answer = api
                .post::<()>(&format!("/clusters/{id}/delete"), None)
                .await?;
            confirm(format, &answer, "Cluster")?;
        }
        ClustersCommand::Types => {
            let answer = api.get("/clusters/types").await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(ExitCode::SUCCESS);
            }
            let mut types: ClusterTypesResponse = answer.parse()?;
            types.cluster_types.sort_by_key(|t| {
                (
                    t.cluster_type.hourly_price * t.num_instances,
                    t.cloud.clone(),
                )
            });
            let mut t = Table::new(&[
                "CLOUD",
                "TYPE",
                "NODES",
                "GPUS/NODE",
                "$/HR",
                "REGION",
                "AVAILABLE",
            ]);
            for ct in &types.cluster_types {
                let c = &ct.cluster_type.configuration;
                t.row(vec![
                    ct.cloud.clone().into(),
                    ct.cluster_type.shade_instance_type.clone().into(),
                    ct.num_instances.to_string().into(),
                    format!("{}x {}", c.num_gpus, c.gpu_type).into(),
                    price(ct.cluster_type.hourly_price * ct.num_instances).into(),
                    ct.availability.region.clone().into(),
                    (if ct.availability.available {
                        "yes"
                    } else {
                        "no"
                    })
                    .into(),
                ]);
            }
            t.print("No cluster types on offer.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_cluster(c: &Cluster) {
    println!("id        {}", c.id);
    println!("name      {}", c.name);
    println!("status    {}", c.status);
    if let Some(d) = &c.status_details {
        println!("details   {d}");
    }
    println!("cloud     {} ({})", c.cloud, c.region_info.region);
    println!("price     {}/hour", price(c.hourly_price));
    if let Some(cost) = &c.cost_estimate {
        println!("cost      {cost}");
    }
    println!();
    print_instances(&c.instances);
}

/// Polls a cluster until active or error, one plain line per change (the
/// instance spinner is for single machines; a cluster's line names its
/// node count).
async fn wait_cluster(
    api: &Api,
    format: Format,
    id: Uuid,
    name: &str,
    timeout: u64,
) -> Result<ExitCode, CliError> {
    let start = Instant::now();
    let mut last = None;
    loop {
        let answer = api.get(&format!("/clusters/{id}/info")).await?;
        let c: Cluster = answer.parse()?;
        let elapsed = start.elapsed().as_secs();
        if last != Some(c.status) {
            let active = c
                .instances
                .iter()
                .filter(|i| i.status == Status::Active)
                .count();
            eprintln!(
                "{name}: {} ({active}/{} nodes active, {})",
                c.status,
                c.instances.len(),
                human_secs(elapsed)
            );
            last = Some(c.status);
        }
        match c.status {
            Status::Active => {
                if format == Format::Json {
                    print_raw(&answer);
                } else {
                    println!(
                        "Cluster {name:?} ({id}) is active after {}.",
                        human_secs(elapsed)
                    );
                    for i in &c.instances {
                        if let Some(cmd) = ssh_command(i, None) {
                            println!("{}", cmd.join(" "));
                        }
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            Status::Error | Status::Deleting | Status::Deleted => {
                if format == Format::Json {
                    print_raw(&answer);
                }
                return Err(CliError::new(format!(
                    "cluster {name:?} ({id}) failed after {}: {}",
                    human_secs(elapsed),
                    c.status_details.as_deref().unwrap_or("no reason given")
                )));
            }
            _ if elapsed >= timeout => {
                return Err(CliError::new(format!(
                    "cluster {name:?} ({id}) is still {} after {}; stopped waiting",
                    c.status,
                    human_secs(timeout)
                )))
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Runs one `volumes` subcommand.
pub async fn volumes(api: &Api, format: Format, command: VolumesCommand) -> Result<(), CliError> {
    match command {
        VolumesCommand::List => {
            let answer = api.get("/volumes").await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let list: VolumesResponse = answer.parse()?;
            let mut t = Table::new(&[
                "ID",
                "NAME",
                "CLOUD",
                "REGION",
                "SIZE",
                "MOUNTED BY",
                "COST",
            ]);
            for v in &list.volumes {
                t.row(vec![
                    v.id.to_string().into(),
                    v.name.clone().into(),
                    v.cloud.clone().into(),
                    v.region.clone().into(),
                    format!("{} GB", v.size_in_gb).into(),
                    (if v.mounted_by.is_empty() {
                        "-"
                    } else {
                        &v.mounted_by
                    })
                    .into(),
                    format!("${}", v.cost_estimate).into(),
                ]);
            }
            t.print("No volumes.");
        }
        VolumesCommand::Get { id } => {
            let answer = api.get(&format!("/volumes/{}/info", seg(&id))).await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let v: Volume = answer.parse()?;
            println!("id          {}", v.id);
            println!("name        {}", v.name);
            println!("cloud       {} ({})", v.cloud, v.region);
            println!("size        {} GB", v.size_in_gb);
            println!("multi-mount {}", v.supports_multi_mount);
            println!(
                "mounted by  {}",
                if v.mounted_by.is_empty() {
                    "-"
                } else {
                    &v.mounted_by
                }
            );
            println!("cost        ${}", v.cost_estimate);
        }
        VolumesCommand::Create {
            cloud,
            region,
            size,
            name,
        } => {
            let req = CreateVolumeRequest {
                cloud,
                region,
                size_in_gb: size,
                name: name.clone(),
            };
            let answer = api.post("/volumes/create", Some(&req)).await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let created: CreateVolumeResponse = answer.parse()?;
            println!("Created volume {name:?}: {}", created.id);
        }
        VolumesCommand::Delete { id } => {
            let answer = api
                .post::<()>(&format!("/volumes/{}/delete", seg(&id)), None)
                .await?;
            confirm(format, &answer, "Volume")?;
        }
        VolumesCommand::Types => {
            let answer = api.get("/volumes/types").await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let types: VolumesTypesResponse = answer.parse()?;
            let mut t = Table::new(&["CLOUD", "REGION", "$/GB/HR", "MULTI-MOUNT", "FIXED SIZE"]);
            for v in &types.volume_types {
                t.row(vec![
                    v.cloud.clone().into(),
                    v.region.clone().into(),
                    format!("${}", v.price_per_gb_per_hour).into(),
                    (if v.supports_multi_mount { "yes" } else { "no" }).into(),
                    (if v.fixed_size { "yes" } else { "no" }).into(),
                ]);
            }
            t.print("No volume types on offer.");
        }
    }
    Ok(())
}

fn read_template(path: &PathBuf) -> Result<TemplateSaveRequest, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::new(format!("{} is not a template body: {e}", path.display())))
}

fn print_templates(list: &[Template]) {
    let mut t = Table::new(&["ID", "NAME", "PUBLIC", "IMAGE", "DESCRIPTION"]);
    for tp in list {
        let image = tp
            .launch_configuration
            .as_ref()
            .and_then(|l| l.docker_configuration.as_ref())
            .map(|d| d.image.clone())
            .unwrap_or_else(|| "-".into());
        t.row(vec![
            tp.id.to_string().into(),
            tp.name.clone().into(),
            (if tp.public { "yes" } else { "no" }).into(),
            image.into(),
            tp.description.clone().unwrap_or_default().into(),
        ]);
    }
    t.print("No templates.");
}

/// Runs one `templates` subcommand.
pub async fn templates(
    api: &Api,
    format: Format,
    command: TemplatesCommand,
) -> Result<(), CliError> {
    match command {
        TemplatesCommand::List | TemplatesCommand::Featured => {
            let path = if matches!(command, TemplatesCommand::List) {
                "/templates"
            } else {
                "/templates/featured"
            };
            let answer = api.get(path).await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            print_templates(&answer.parse::<TemplatesResponse>()?.templates);
        }
        TemplatesCommand::Get { id } => {
            let answer = api.get(&format!("/templates/{}/info", seg(&id))).await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            // A template is mostly nested launch settings: pretty JSON
            // reads better than any table.
            let t: Template = answer.parse()?;
            println!(
                "{}",
                serde_json::to_string_pretty(&t).unwrap_or_else(|_| answer.text())
            );
        }
        TemplatesCommand::Save { file } => {
            let req = read_template(&file)?;
            let answer = api.post("/templates/save", Some(&req)).await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let created: TemplateCreateResponse = answer.parse()?;
            println!("Saved template {:?}: {}", req.name, created.id);
        }
        TemplatesCommand::Update { id, file } => {
            let req = read_template(&file)?;
            let answer = api
                .post(&format!("/templates/{}/update", seg(&id)), Some(&req))
                .await?;
            confirm(format, &answer, "Template")?;
        }
        TemplatesCommand::Delete { id } => {
            let answer = api
                .post::<()>(&format!("/templates/{}/delete", seg(&id)), None)
                .await?;
            confirm(format, &answer, "Template")?;
        }
    }
    Ok(())
}
